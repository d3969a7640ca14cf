//! Decisions of the registry, as plain functions: what a valid subject is, whether a status may
//! follow another, and which fields differ between two registrations.

use chrono::NaiveDate;
use xinyong_domain::credit_code::{CodeKind, CreditCode};
use xinyong_domain::{longer_than, masking, name, registration_number, resident_id, trimmed};
use xinyong_platform::violation;
use xinyong_proto::common::v1::{EntityStatus, FieldViolation, SubjectKind};
use xinyong_proto::registry::v1::Entity;

/// A subject that passed validation, in the form the store keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEntity {
    pub credit_code: String,
    pub name: String,
    pub name_normalised: String,
    pub kind: SubjectKind,
    pub registration_number: Option<String>,
    pub region_code: String,
    pub industry_code: String,
    pub business_scope: String,
    pub established_on: NaiveDate,
    /// In 10,000 yuan, two decimals, e.g. `500.00`.
    pub registered_capital: Option<String>,
    pub address: String,
    pub representative_name: String,
    /// Never logged (see `Debug` of [`IdNumber`]).
    pub representative_id: Option<IdNumber>,
    pub status: EntityStatus,
    pub status_since: NaiveDate,
}

/// A validated resident ID number. Its `Debug` shows only the masked form, so a stray `{:?}`
/// cannot log it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        masking::mask_id_number(&self.0)
    }
}

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "IdNumber({})", self.masked())
    }
}

/// Parse a `YYYY-MM-DD` date (surrounding spaces allowed), the usual form without chrono's
/// format parser.
pub use xinyong_domain::calendar::parse_day as parse_date;

fn kind_agrees(code: CodeKind, kind: SubjectKind) -> bool {
    matches!(
        (code, kind),
        (CodeKind::Enterprise, SubjectKind::Enterprise)
            | (CodeKind::IndividualBusiness, SubjectKind::IndividualBusiness)
            | (CodeKind::FarmerCooperative, SubjectKind::FarmerCooperative)
            | (CodeKind::SocialOrganisation, SubjectKind::SocialOrganisation)
            | (CodeKind::Other, SubjectKind::Other)
    )
}

fn code_kind_words(code: CodeKind) -> &'static str {
    match code {
        CodeKind::Enterprise => "an enterprise (9 1)",
        CodeKind::IndividualBusiness => "an individual business (9 2)",
        CodeKind::FarmerCooperative => "a farmer co-operative (9 3)",
        CodeKind::SocialOrganisation => "a social organisation (5 1/2/3)",
        CodeKind::Other => "neither market regulation nor civil affairs (use kind OTHER)",
    }
}

/// GB/T 4754 industry code: a section letter A–T, optionally followed by 2, 3 or 4 digits
/// (division, group, class).
pub fn valid_industry_code(code: &str) -> bool {
    let mut chars = code.chars();
    let section_ok = chars.next().is_some_and(|c| ('A'..='T').contains(&c));
    let digits = code.len().saturating_sub(1);
    section_ok && chars.all(|c| c.is_ascii_digit()) && matches!(digits, 0 | 2 | 3 | 4)
}

/// A non-negative decimal with at most two decimals, normalised to two: `500` → `500.00`.
pub fn normalise_capital(text: &str) -> Option<String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let valid = !whole.is_empty()
        && whole.len() <= 16
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.len() <= 2
        && fraction.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    Some(format!("{}.{:0<2}", if whole.is_empty() { "0" } else { whole }, fraction))
}

/// Validate a subject as sent in `RegisterEntity` or `ImportEntities`. Every problem is reported,
/// each naming its field. `today` bounds dates; a status other than operating is accepted only
/// from imports (`allow_status`).
/// Takes the subject whole, so that its strings move into the valid subject instead of being
/// copied (an import validates a million).
pub fn validate(entity: Entity, today: NaiveDate, allow_status: bool) -> Result<ValidEntity, Vec<FieldViolation>> {
    let mut problems = Vec::new();

    let code = match CreditCode::parse(&entity.credit_code) {
        Ok(code) => Some(code),
        Err(error) => {
            problems.push(violation("credit_code", error.to_string()));
            None
        }
    };

    let name = trimmed(entity.name);
    if name.is_empty() {
        problems.push(violation("name", "required"));
    } else if longer_than(&name, 200) {
        problems.push(violation("name", "at most 200 characters"));
    }

    let kind = SubjectKind::try_from(entity.kind).unwrap_or(SubjectKind::Unspecified);
    if kind == SubjectKind::Unspecified {
        problems.push(violation(
            "kind",
            "required: ENTERPRISE, INDIVIDUAL_BUSINESS, FARMER_COOPERATIVE, SOCIAL_ORGANISATION or OTHER",
        ));
    } else if let Some(code) = &code
        && !kind_agrees(code.kind(), kind)
    {
        problems.push(violation(
            "kind",
            format!(
                "{} does not agree with the credit code, whose first two characters `{}{}` denote {}",
                kind.as_str_name(),
                code.registration_authority(),
                code.organisation_type(),
                code_kind_words(code.kind())
            ),
        ));
    }

    let registration_number = match entity.registration_number.trim() {
        "" => None,
        number => match registration_number::validate(number) {
            Ok(number) => {
                if let Some(code) = &code
                    && number[..6] != *code.region_code()
                {
                    problems.push(violation(
                        "registration_number",
                        format!(
                            "its first six digits `{}` should equal the credit code's region `{}`",
                            &number[..6],
                            code.region_code()
                        ),
                    ));
                }
                Some(number)
            }
            Err(error) => {
                problems.push(violation("registration_number", error.to_string()));
                None
            }
        },
    };

    let region_code = trimmed(entity.region_code);
    if region_code.len() != 6 || !region_code.chars().all(|c| c.is_ascii_digit()) {
        problems
            .push(violation("region_code", "must be the 6-digit administrative region code (GB/T 2260), e.g. 110107"));
    }

    let industry_code = entity.industry_code.trim().to_ascii_uppercase();
    if !valid_industry_code(&industry_code) {
        problems.push(violation(
            "industry_code",
            "must be a GB/T 4754 code: a section letter A-T, optionally with 2 to 4 digits, e.g. F5211",
        ));
    }

    let business_scope = trimmed(entity.business_scope);
    if longer_than(&business_scope, 4000) {
        problems.push(violation("business_scope", "at most 4000 characters"));
    }

    let established_on = match parse_date(&entity.established_on) {
        Some(date) if date > today => {
            problems.push(violation("established_on", "is in the future"));
            None
        }
        Some(date) if date.year_ce().1 < 1900 => {
            problems.push(violation("established_on", "is before 1900"));
            None
        }
        Some(date) => Some(date),
        None => {
            problems.push(violation("established_on", "required, as YYYY-MM-DD"));
            None
        }
    };

    let registered_capital = match entity.registered_capital.trim() {
        "" => None,
        text => match normalise_capital(text) {
            Some(capital) => Some(capital),
            None => {
                problems.push(violation(
                    "registered_capital",
                    "must be a non-negative amount in 10,000 yuan with at most two decimals, e.g. 500.00",
                ));
                None
            }
        },
    };

    let address = trimmed(entity.address);
    if longer_than(&address, 500) {
        problems.push(violation("address", "at most 500 characters"));
    }

    let representative = entity.legal_representative.unwrap_or_default();
    let representative_name = trimmed(representative.name);
    if longer_than(&representative_name, 100) {
        problems.push(violation("legal_representative.name", "at most 100 characters"));
    }
    let representative_id = match representative.id_number.trim() {
        "" => None,
        number => match resident_id::validate(number, today) {
            Ok(number) => Some(IdNumber(number)),
            Err(error) => {
                problems.push(violation("legal_representative.id_number", error.to_string()));
                None
            }
        },
    };
    if representative_id.is_some() && representative_name.is_empty() {
        problems.push(violation("legal_representative.name", "required with an ID number"));
    }

    let status = match EntityStatus::try_from(entity.status).unwrap_or(EntityStatus::Unspecified) {
        EntityStatus::Unspecified => EntityStatus::Operating,
        EntityStatus::Operating => EntityStatus::Operating,
        other if allow_status => other,
        _ => {
            problems.push(violation(
                "status",
                "a new registration is operating; change the status with UpdateEntityStatus",
            ));
            EntityStatus::Operating
        }
    };
    let status_since = match entity.status_since.trim() {
        "" => established_on,
        text => match parse_date(text) {
            Some(date) if date <= today => Some(date),
            _ => {
                problems.push(violation("status_since", "must be a date (YYYY-MM-DD) not in the future"));
                None
            }
        },
    };

    match (code, established_on) {
        (Some(code), Some(established_on)) if problems.is_empty() => Ok(ValidEntity {
            credit_code: code.into_string(),
            name_normalised: name::normalise(&name),
            name,
            kind,
            registration_number,
            region_code,
            industry_code,
            business_scope,
            established_on,
            registered_capital,
            address,
            representative_name,
            representative_id,
            status,
            status_since: status_since.unwrap_or(established_on),
        }),
        _ => Err(problems),
    }
}

use chrono::Datelike;

/// May a subject go from `from` to `to`? Deregistration (注销) is final; a revoked licence (吊销)
/// ends in deregistration or is restored (e.g. after reconsideration); a subject that moved out
/// may move back or be deregistered.
pub fn transition_allowed(from: EntityStatus, to: EntityStatus) -> Result<(), String> {
    use EntityStatus::*;
    if from == to {
        return Err(format!("the subject is already {}", from.as_str_name()));
    }
    let allowed = match from {
        Operating => matches!(to, LicenceRevoked | Deregistered | MovedOut),
        LicenceRevoked => matches!(to, Deregistered | Operating),
        MovedOut => matches!(to, Operating | Deregistered),
        Deregistered => false,
        Unspecified => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "a subject that is {} cannot become {}{}",
            from.as_str_name(),
            to.as_str_name(),
            if from == Deregistered { ": deregistration is final" } else { "" }
        ))
    }
}

/// The fields in which `new` differs from the stored `old`, by their request names.
pub fn differing_fields(
    old: &ValidEntity,
    old_id_digest: Option<&[u8]>,
    new: &ValidEntity,
    new_id_digest: Option<&[u8]>,
) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if old.name != new.name {
        fields.push("name");
    }
    if old.kind != new.kind {
        fields.push("kind");
    }
    if old.registration_number != new.registration_number {
        fields.push("registration_number");
    }
    if old.region_code != new.region_code {
        fields.push("region_code");
    }
    if old.industry_code != new.industry_code {
        fields.push("industry_code");
    }
    if old.business_scope != new.business_scope {
        fields.push("business_scope");
    }
    if old.established_on != new.established_on {
        fields.push("established_on");
    }
    if old.registered_capital != new.registered_capital {
        fields.push("registered_capital");
    }
    if old.address != new.address {
        fields.push("address");
    }
    if old.representative_name != new.representative_name {
        fields.push("legal_representative.name");
    }
    if old_id_digest != new_id_digest {
        fields.push("legal_representative.id_number");
    }
    fields
}

#[cfg(test)]
mod tests {
    use xinyong_proto::common::v1::Person;

    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    pub fn lenovo() -> Entity {
        Entity {
            credit_code: "91110000600037341L".into(),
            name: "联想(北京)有限公司".into(),
            kind: SubjectKind::Enterprise as i32,
            region_code: "110108".into(),
            industry_code: "C3911".into(),
            business_scope: "生产计算机及外部设备".into(),
            established_on: "1992-11-12".into(),
            registered_capital: "56500".into(),
            address: "北京市海淀区上地信息产业基地创业路6号".into(),
            legal_representative: Some(Person {
                name: "杨元庆".into(),
                id_number: "11010519491231002X".into(),
                id_number_masked: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_subject_validates_and_is_normalised() {
        let valid = validate(lenovo(), today(), false).unwrap();
        assert_eq!(valid.name_normalised, "联想北京有限公司");
        assert_eq!(valid.registered_capital.as_deref(), Some("56500.00"));
        assert_eq!(valid.status, EntityStatus::Operating);
        assert_eq!(valid.status_since, valid.established_on);
        assert_eq!(format!("{:?}", valid.representative_id), "Some(IdNumber(110105********002X))");
    }

    #[test]
    fn every_bad_field_is_named_with_its_reason() {
        let mut entity = lenovo();
        entity.credit_code = "91110000600037341X".into();
        entity.name = " ".into();
        entity.region_code = "11".into();
        entity.industry_code = "Z1".into();
        entity.established_on = "2099-01-01".into();
        entity.registered_capital = "-5".into();
        entity.legal_representative.as_mut().unwrap().id_number = "110105194912310021".into();
        let problems = validate(entity, today(), false).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "credit_code",
                "name",
                "region_code",
                "industry_code",
                "established_on",
                "registered_capital",
                "legal_representative.id_number"
            ]
        );
        assert_eq!(problems[0].reason, "check digit should be `L`, found `X`");
        assert!(!problems.iter().any(|p| p.reason.contains("110105194912310021")), "the ID number is not echoed");
    }

    #[test]
    fn the_kind_must_agree_with_the_code() {
        let mut entity = lenovo();
        entity.kind = SubjectKind::IndividualBusiness as i32;
        let problems = validate(entity, today(), false).unwrap_err();
        assert_eq!(problems[0].field, "kind");
        assert!(problems[0].reason.contains("`91`"), "{}", problems[0].reason);
    }

    #[test]
    fn industry_codes_follow_gb_t_4754() {
        for good in ["F", "F52", "F521", "F5211", "A0111"] {
            assert!(valid_industry_code(good), "{good}");
        }
        for bad in ["", "F5", "F52111", "U52", "52", "f52"] {
            assert!(!valid_industry_code(bad), "{bad}");
        }
    }

    #[test]
    fn status_transitions() {
        use EntityStatus::*;
        assert!(transition_allowed(Operating, LicenceRevoked).is_ok());
        assert!(transition_allowed(LicenceRevoked, Deregistered).is_ok());
        assert!(transition_allowed(MovedOut, Operating).is_ok());
        let final_ = transition_allowed(Deregistered, Operating).unwrap_err();
        assert!(final_.contains("final"), "{final_}");
        assert!(transition_allowed(Operating, Operating).unwrap_err().contains("already"));
    }

    #[test]
    fn differences_name_their_fields() {
        let old = validate(lenovo(), today(), false).unwrap();
        let mut changed = lenovo();
        changed.name = "联想（北京）有限公司".into();
        changed.address = "别处".into();
        let new = validate(changed, today(), false).unwrap();
        assert_eq!(differing_fields(&old, None, &new, None), ["name", "address"]);
        assert!(differing_fields(&old, Some(b"a"), &old, Some(b"a")).is_empty());
    }
}
