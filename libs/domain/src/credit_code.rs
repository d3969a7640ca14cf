//! The unified social credit code (统一社会信用代码, GB 32100-2015).
//!
//! 18 characters from `0123456789ABCDEFGHJKLMNPQRTUWXY`: registration authority (1), organisation
//! type (1), administrative region (6, GB/T 2260), organisation code (9, GB 11714, whose last
//! character is its own check), and a check character.

use std::fmt;

/// The 31 characters a credit code may use (no I, O, S, V, Z).
pub const CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
const ORGANISATION_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// The kind of subject the first two characters denote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Market regulation `9` + `1`.
    Enterprise,
    /// Market regulation `9` + `2` (个体工商户).
    IndividualBusiness,
    /// Market regulation `9` + `3` (农民专业合作社).
    FarmerCooperative,
    /// Civil affairs `5` + `1`, `2` or `3` (社会团体, 民办非企业单位, 基金会).
    SocialOrganisation,
    /// Any other authority or type.
    Other,
}

/// Why a code is not valid. The messages say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    #[error("must be 18 characters, found {0}")]
    Length(usize),
    #[error(
        "character `{character}` is not allowed at position {position} (allowed: 0-9 and A-Z without I, O, S, V, Z)"
    )]
    Character { character: char, position: usize },
    #[error(
        "organisation code (positions 9-17) check fails: its check character should be `{expected}`, found `{found}`"
    )]
    OrganisationCode { expected: char, found: char },
    #[error("check digit should be `{expected}`, found `{found}`")]
    CheckDigit { expected: char, found: char },
}

/// A valid credit code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreditCode(String);

/// Each ASCII character's value in [`CHARSET`] (`NOT_IN_SET` for the others): every check and
/// every parse of a code goes through this, on the hot path of every call that names a subject.
const VALUES: [u8; 128] = {
    let mut values = [NOT_IN_SET; 128];
    let set = CHARSET.as_bytes();
    let mut index = 0;
    while index < set.len() {
        values[set[index] as usize] = index as u8;
        index += 1;
    }
    values
};
const NOT_IN_SET: u8 = u8::MAX;

fn value(character: char) -> Option<u32> {
    match VALUES.get(character as usize) {
        Some(&value) if value != NOT_IN_SET => Some(u32::from(value)),
        _ => None,
    }
}

/// GB 11714 values: digits are themselves, letters A=10 … Z=35 (so M is 22 here, not its 21 in
/// the 31-character set: the trap DOMAIN.md warns of).
fn organisation_value(character: char) -> u32 {
    match character {
        '0'..='9' => character as u32 - '0' as u32,
        'A'..='Z' => character as u32 - 'A' as u32 + 10,
        _ => 0,
    }
}

/// The check character of the first 17 characters (which must be from [`CHARSET`]).
pub fn check_character(first17: &str) -> Option<char> {
    let mut sum = 0;
    for (character, weight) in first17.chars().zip(WEIGHTS) {
        sum += value(character)? * weight;
    }
    let check = (31 - sum % 31) % 31;
    CHARSET.chars().nth(check as usize)
}

/// The check character of an organisation code's first 8 characters.
pub fn organisation_check(first8: &str) -> char {
    let sum: u32 = first8.chars().zip(ORGANISATION_WEIGHTS).map(|(c, w)| organisation_value(c) * w).sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        digit => char::from_digit(digit, 10).unwrap_or('0'),
    }
}

impl CreditCode {
    /// Validate a code. Surrounding spaces are ignored and lower case is accepted.
    pub fn parse(input: &str) -> Result<CreditCode, CreditCodeError> {
        let code: String = input.trim().to_ascii_uppercase();
        let length = code.chars().count();
        if length != 18 {
            return Err(CreditCodeError::Length(length));
        }
        for (index, character) in code.chars().enumerate() {
            if value(character).is_none() {
                return Err(CreditCodeError::Character { character, position: index + 1 });
            }
        }
        let organisation = &code[8..17];
        let expected = organisation_check(&organisation[..8]);
        let found = organisation.chars().nth(8).unwrap_or(' ');
        if expected != found {
            return Err(CreditCodeError::OrganisationCode { expected, found });
        }
        let expected = check_character(&code[..17]).unwrap_or(' ');
        let found = code.chars().nth(17).unwrap_or(' ');
        if expected != found {
            return Err(CreditCodeError::CheckDigit { expected, found });
        }
        Ok(CreditCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code as an owned string, without copying it.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Registration authority code (登记管理部门代码), position 1.
    pub fn registration_authority(&self) -> char {
        self.0.as_bytes()[0] as char
    }

    /// Organisation type code (机构类别代码), position 2.
    pub fn organisation_type(&self) -> char {
        self.0.as_bytes()[1] as char
    }

    /// Administrative region code, positions 3–8.
    pub fn region_code(&self) -> &str {
        &self.0[2..8]
    }

    /// Organisation code (主体标识码), positions 9–17.
    pub fn organisation_code(&self) -> &str {
        &self.0[8..17]
    }

    pub fn check(&self) -> char {
        self.0.as_bytes()[17] as char
    }

    /// The subject kind the first two characters denote.
    pub fn kind(&self) -> CodeKind {
        match (self.registration_authority(), self.organisation_type()) {
            ('9', '1') => CodeKind::Enterprise,
            ('9', '2') => CodeKind::IndividualBusiness,
            ('9', '3') => CodeKind::FarmerCooperative,
            ('5', '1' | '2' | '3') => CodeKind::SocialOrganisation,
            _ => CodeKind::Other,
        }
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Complete 17 characters into a valid code by computing the organisation check (position 17 is
/// replaced) and the final check character. For generating test and benchmark data.
pub fn complete(first16: &str) -> Option<String> {
    if first16.len() != 16 || !first16.chars().all(|c| value(c).is_some()) {
        return None;
    }
    let organisation_check = organisation_check(&first16[8..16]);
    let first17 = format!("{first16}{organisation_check}");
    let check = check_character(&first17)?;
    Some(format!("{first17}{check}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Real codes listed in DOMAIN.md ("Real codes to test against").
    #[test]
    fn real_codes_validate_and_parse() {
        for code in [
            "91110000600037341L",
            "9144030071526726XG",
            "91310000631696382C",
            "914403001922038216",
            "91330100799655058B",
        ] {
            let parsed = CreditCode::parse(code).unwrap_or_else(|error| panic!("{code}: {error}"));
            assert_eq!(parsed.kind(), CodeKind::Enterprise);
        }
        let parsed = CreditCode::parse("91110000600037341L").unwrap();
        assert_eq!(parsed.registration_authority(), '9');
        assert_eq!(parsed.organisation_type(), '1');
        assert_eq!(parsed.region_code(), "110000");
        assert_eq!(parsed.organisation_code(), "600037341");
        assert_eq!(parsed.check(), 'L');
    }

    #[test]
    fn the_invalid_real_code_is_refused_for_its_last_character() {
        // `Z` is not one of the 31 characters; with a `3` there the code would be valid.
        assert_eq!(
            CreditCode::parse("91350100M000100Y4Z"),
            Err(CreditCodeError::Character { character: 'Z', position: 18 })
        );
        assert!(CreditCode::parse("91350100M000100Y43").is_ok());
    }

    #[test]
    fn organisation_code_letters_take_their_gb_11714_values() {
        // M000100Y4 checks only when M counts 22 (GB 11714), not 21 (its place in the 31-set).
        assert_eq!(organisation_check("M000100Y"), '4');
    }

    #[test]
    fn reasons_are_precise() {
        assert_eq!(CreditCode::parse("9111000060003734"), Err(CreditCodeError::Length(16)));
        assert_eq!(
            CreditCode::parse("91I10000600037341L"),
            Err(CreditCodeError::Character { character: 'I', position: 3 })
        );
        assert_eq!(
            CreditCode::parse("911100006000373421"),
            Err(CreditCodeError::OrganisationCode { expected: '1', found: '2' })
        );
        assert_eq!(
            CreditCode::parse("91110000600037341X"),
            Err(CreditCodeError::CheckDigit { expected: 'L', found: 'X' })
        );
        assert_eq!(
            CreditCode::parse("91110000600037341X").unwrap_err().to_string(),
            "check digit should be `L`, found `X`"
        );
    }

    #[test]
    fn lower_case_and_spaces_are_accepted() {
        assert_eq!(CreditCode::parse(" 91110000600037341l ").unwrap().as_str(), "91110000600037341L");
    }

    #[test]
    fn kinds_follow_the_first_two_characters() {
        let code =
            |prefix: &str| CreditCode::parse(&complete(&format!("{prefix}110108MA01AB2C")).unwrap()).unwrap().kind();
        assert_eq!(code("92"), CodeKind::IndividualBusiness);
        assert_eq!(code("93"), CodeKind::FarmerCooperative);
        assert_eq!(code("51"), CodeKind::SocialOrganisation);
        assert_eq!(code("11"), CodeKind::Other);
    }

    fn code_strategy() -> impl Strategy<Value = String> {
        let character = proptest::sample::select(CHARSET.chars().collect::<Vec<_>>());
        proptest::collection::vec(character, 16)
            .prop_map(|chars| complete(&chars.into_iter().collect::<String>()).unwrap())
    }

    proptest! {
        #[test]
        fn a_completed_code_always_validates(code in code_strategy()) {
            prop_assert!(CreditCode::parse(&code).is_ok(), "{}", code);
        }

        #[test]
        fn any_single_character_change_is_caught(code in code_strategy(), position in 0usize..18, replacement in proptest::sample::select(CHARSET.chars().collect::<Vec<_>>())) {
            let mut chars: Vec<char> = code.chars().collect();
            prop_assume!(chars[position] != replacement);
            chars[position] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert!(CreditCode::parse(&changed).is_err(), "{} → {} still validates", code, changed);
        }
    }
}
