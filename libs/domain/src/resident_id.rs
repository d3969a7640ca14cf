//! The 18-character resident identity number (公民身份号码, GB 11643-1999), ISO 7064 MOD 11-2.
//! Personal data: never log it, store it protected, show it masked (see [`crate::masking`]).

use chrono::NaiveDate;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECKS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Why an ID number is not valid. Messages never repeat the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResidentIdError {
    #[error("must be 18 characters, found {0}")]
    Length(usize),
    #[error("position {0} must be a digit")]
    Character(usize),
    #[error("the birth date (positions 7-14) is not a plausible date")]
    BirthDate,
    #[error("check character is wrong")]
    CheckDigit,
}

/// The check character of the first 17 digits.
pub fn check_character(first17: &[u32]) -> char {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(digit, weight)| digit * weight).sum();
    CHECKS[(sum % 11) as usize]
}

/// Validate an ID number against `today` (birth dates in the future or before 1900 are refused);
/// returns it upper-cased.
pub fn validate(input: &str, today: NaiveDate) -> Result<String, ResidentIdError> {
    let number = input.trim().to_ascii_uppercase();
    let length = number.chars().count();
    if length != 18 {
        return Err(ResidentIdError::Length(length));
    }
    let mut digits = Vec::with_capacity(17);
    for (index, character) in number.chars().take(17).enumerate() {
        digits.push(character.to_digit(10).ok_or(ResidentIdError::Character(index + 1))?);
    }
    birth_date(&digits, today).ok_or(ResidentIdError::BirthDate)?;
    let last = number.chars().nth(17).unwrap_or(' ');
    if check_character(&digits) != last {
        return Err(ResidentIdError::CheckDigit);
    }
    Ok(number)
}

/// The birth date digits 7–14 of a number's first digits give, if it is plausible: a day that
/// exists, from 1900 to `today`. `None` for fewer than 14 digits.
pub fn birth_date(digits: &[u32], today: NaiveDate) -> Option<NaiveDate> {
    // Read directly rather than through chrono's format parser, which reads its format string
    // again on every call (a bulk import checks a million).
    let value = |range: std::ops::Range<usize>| {
        digits.get(range).map(|part| part.iter().fold(0, |value, digit| value * 10 + digit))
    };
    let birth = NaiveDate::from_ymd_opt(value(6..10)? as i32, value(10..12)?, value(12..14)?)?;
    (NaiveDate::from_ymd_opt(1900, 1, 1)? <= birth && birth <= today).then_some(birth)
}

/// Complete 17 digits with their check character (test data).
pub fn complete(first17: &str) -> Option<String> {
    let digits: Option<Vec<u32>> = first17.chars().map(|c| c.to_digit(10)).collect();
    let digits = digits.filter(|digits| digits.len() == 17)?;
    Some(format!("{first17}{}", check_character(&digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn the_standards_example_validates() {
        // The worked example of GB 11643-1999 appendix: 11010519491231002X.
        assert_eq!(validate("11010519491231002x", today()), Ok("11010519491231002X".to_owned()));
    }

    #[test]
    fn reasons_are_precise_and_never_echo_the_number() {
        assert_eq!(validate("1101051949123100", today()), Err(ResidentIdError::Length(16)));
        assert_eq!(validate("11010519491231A02X", today()), Err(ResidentIdError::Character(15)));
        assert_eq!(validate("110105194913310021", today()), Err(ResidentIdError::BirthDate));
        assert_eq!(validate(&complete("11010520301231002").unwrap(), today()), Err(ResidentIdError::BirthDate));
        for no_such_day in ["11010519900230002", "11010519900431002", "11010519900001002", "11010518991231002"] {
            let number = complete(no_such_day).unwrap();
            assert_eq!(validate(&number, today()), Err(ResidentIdError::BirthDate), "{no_such_day}");
        }
        assert!(validate(&complete("11010520000229002").unwrap(), today()).is_ok(), "a leap day");
        let wrong = validate("110105194912310021", today()).unwrap_err();
        assert_eq!(wrong, ResidentIdError::CheckDigit);
        assert!(!wrong.to_string().contains("1101051949"));
    }
}
