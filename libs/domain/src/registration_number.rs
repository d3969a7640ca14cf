//! The old 15-digit registration number (注册号, GS 15-2006), checked with ISO 7064 MOD 11,10.
//! Its first six digits are the registering authority's region code.

/// Why a registration number is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationNumberError {
    #[error("must be 15 digits, found {0} characters")]
    Length(usize),
    #[error("character `{character}` is not allowed at position {position} (digits only)")]
    Character { character: char, position: usize },
    #[error("check digit should be `{expected}`, found `{found}`")]
    CheckDigit { expected: char, found: char },
}

/// ISO 7064 MOD 11,10 over the first 14 digits: P = 10; for each digit S = (P + d) mod 10 (0 read
/// as 10), P = 2S mod 11; the check c makes (P + c) mod 10 = 1.
pub fn check_digit(first14: &[u32]) -> u32 {
    let mut product = 10;
    for digit in first14 {
        let mut sum = (product + digit) % 10;
        if sum == 0 {
            sum = 10;
        }
        product = (2 * sum) % 11;
    }
    (11 - product) % 10
}

/// Validate a 15-digit registration number; returns it trimmed.
pub fn validate(input: &str) -> Result<String, RegistrationNumberError> {
    let number = input.trim();
    let length = number.chars().count();
    if length != 15 {
        return Err(RegistrationNumberError::Length(length));
    }
    let mut digits = Vec::with_capacity(15);
    for (index, character) in number.chars().enumerate() {
        match character.to_digit(10) {
            Some(digit) => digits.push(digit),
            None => return Err(RegistrationNumberError::Character { character, position: index + 1 }),
        }
    }
    let expected = check_digit(&digits[..14]);
    if expected != digits[14] {
        return Err(RegistrationNumberError::CheckDigit {
            expected: char::from_digit(expected, 10).unwrap_or('0'),
            found: char::from_digit(digits[14], 10).unwrap_or('0'),
        });
    }
    Ok(number.to_owned())
}

/// Complete 14 digits with their check digit (test and benchmark data).
pub fn complete(first14: &str) -> Option<String> {
    let digits: Option<Vec<u32>> = first14.chars().map(|c| c.to_digit(10)).collect();
    let digits = digits.filter(|digits| digits.len() == 14)?;
    Some(format!("{first14}{}", check_digit(&digits)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_check_digit_follows_mod_11_10() {
        // After the 14 digits P = 8 (worked by hand), so c = (11 − 8) mod 10 = 3.
        assert_eq!(complete("11000045000000"), Some("110000450000003".to_owned()));
        assert!(validate("110000450000003").is_ok());
    }

    #[test]
    fn reasons_are_precise() {
        assert_eq!(validate("1100004500000"), Err(RegistrationNumberError::Length(13)));
        assert_eq!(
            validate("11000045000000A"),
            Err(RegistrationNumberError::Character { character: 'A', position: 15 })
        );
        assert_eq!(validate("110000450000002"), Err(RegistrationNumberError::CheckDigit { expected: '3', found: '2' }));
    }

    proptest! {
        #[test]
        fn completed_numbers_validate_and_one_digit_changes_are_caught(digits in "[0-9]{14}", position in 0usize..15, replacement in 0u32..10) {
            let number = complete(&digits).unwrap();
            prop_assert!(validate(&number).is_ok());
            let mut chars: Vec<char> = number.chars().collect();
            let new = char::from_digit(replacement, 10).unwrap();
            prop_assume!(chars[position] != new);
            chars[position] = new;
            let changed: String = chars.into_iter().collect();
            prop_assert!(validate(&changed).is_err(), "{} → {}", number, changed);
        }
    }
}
