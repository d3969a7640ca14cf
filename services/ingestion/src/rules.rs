//! Decisions of ingestion as plain functions: what a valid record is, its idempotency digest, its
//! reporting deadline and delay, and its disclosure window.

use std::collections::{BTreeMap, HashMap};
use xinyong_domain::calendar::parse_day;
use xinyong_domain::{longer_than, trimmed};

use chrono::{Datelike, Months, NaiveDate};
use sha2::{Digest, Sha256};
use xinyong_domain::calendar::Calendar;
use xinyong_domain::credit_code::CreditCode;
use xinyong_domain::disclosure::{self, Disclosure, Severity};
use xinyong_platform::violation;
use xinyong_proto::common::v1::{FieldViolation, Nature};
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput};

/// A category of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Category {
    pub code: String,
    pub title: String,
    pub required_fields: Vec<String>,
    pub optional_fields: Vec<String>,
    pub default_nature: i16,
    pub deadline_working_days: i32,
    pub needs_penalty_kind: bool,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord {
    pub credit_code: String,
    pub source_record_id: String,
    pub category: String,
    pub nature: Nature,
    pub decided_on: NaiveDate,
    pub document_number: String,
    pub fields: BTreeMap<String, String>,
    pub text: String,
    pub penalty_kind: PenaltyKind,
    /// SHA-256 of the canonical form: equal payloads, equal digests.
    pub digest: Vec<u8>,
}

/// Where the permission to report categories comes from: the gateway passes `report:<category>`
/// permissions; a department holding none may report every category.
pub fn may_report(permissions: &[String], category: &str) -> bool {
    let mut restricted = false;
    for permission in permissions {
        if let Some(allowed) = permission.strip_prefix("report:") {
            restricted = true;
            if allowed == category {
                return true;
            }
        }
    }
    !restricted
}

/// The canonical form of a record for the idempotency digest: fields in a fixed order, the
/// resolved nature, names sorted. Written into one buffer and hashed once: the same bytes as
/// feeding the hasher part by part, without its buffering step for each of a dozen short parts
/// on every row of a bulk load.
fn digest(record: &ValidRecord) -> Vec<u8> {
    let mut canonical = Vec::with_capacity(256);
    for part in [
        record.credit_code.as_str(),
        record.source_record_id.as_str(),
        record.category.as_str(),
        &(record.nature as i32).to_string(),
        &xinyong_domain::calendar::day_text(record.decided_on),
        record.document_number.as_str(),
        record.text.as_str(),
        &(record.penalty_kind as i32).to_string(),
    ] {
        canonical.extend_from_slice(part.as_bytes());
        canonical.push(0x1f);
    }
    for (name, value) in &record.fields {
        canonical.extend_from_slice(name.as_bytes());
        canonical.push(0x1e);
        canonical.extend_from_slice(value.as_bytes());
        canonical.push(0x1f);
    }
    Sha256::digest(&canonical).to_vec()
}

/// Validate a submission against the catalogue. Every problem is reported, each naming its field.
/// Takes the submission whole: its strings (six and the fields, for every row of a bulk load)
/// move into the record instead of being copied.
pub fn validate(
    input: RecordInput,
    catalogue: &HashMap<String, Category>,
    permissions: &[String],
    today: NaiveDate,
) -> Result<ValidRecord, Vec<FieldViolation>> {
    let mut problems = Vec::new();
    let credit_code = match CreditCode::parse(&input.credit_code) {
        Ok(code) => Some(code.into_string()),
        Err(error) => {
            problems.push(violation("credit_code", error.to_string()));
            None
        }
    };
    let source_record_id = trimmed(input.source_record_id);
    if source_record_id.is_empty() {
        problems.push(violation(
            "source_record_id",
            "required: your own id of the record, the key that makes a resend harmless",
        ));
    } else if longer_than(&source_record_id, 128) {
        problems.push(violation("source_record_id", "at most 128 characters"));
    }
    let category = catalogue.get(input.category.trim());
    match category {
        None => {
            let mut known: Vec<&str> = catalogue.keys().map(String::as_str).collect();
            known.sort_unstable();
            problems.push(violation(
                "category",
                format!("unknown category `{}`; known: {}", input.category, known.join(", ")),
            ));
        }
        Some(category) if !may_report(permissions, &category.code) => {
            problems.push(violation(
                "category",
                format!(
                    "your department may not report `{}` (permission report:{} is required)",
                    category.code, category.code
                ),
            ));
        }
        Some(_) => {}
    }
    let nature = match Nature::try_from(input.nature) {
        Ok(Nature::Unspecified) => {
            category.and_then(|category| Nature::try_from(i32::from(category.default_nature)).ok())
        }
        Ok(nature) => Some(nature),
        Err(_) => {
            problems.push(violation(
                "nature",
                "not a nature: POSITIVE, NEUTRAL, MINOR, GENERAL_DISHONESTY or SERIOUS_DISHONESTY",
            ));
            None
        }
    };
    let decided_on = match parse_day(&input.decided_on) {
        Some(date) if date > today => {
            problems.push(violation("decided_on", "is in the future"));
            None
        }
        Some(date) if date.year() < 1990 => {
            problems.push(violation("decided_on", "is before 1990"));
            None
        }
        Some(date) => Some(date),
        None => {
            problems.push(violation("decided_on", "required, as YYYY-MM-DD"));
            None
        }
    };
    let document_number = trimmed(input.document_number);
    if longer_than(&document_number, 200) {
        problems.push(violation("document_number", "at most 200 characters"));
    }
    // One look at every entry decides whether anything needs dropping or trimming; a bulk load's
    // fields rarely do, and rebuilding the map for every row would cost a walk and a new tree.
    // The map is sorted by name already (the message's map is a BTreeMap); trimming keeps the
    // order but for names with surrounding spaces, so the map is rebuilt to put those in place.
    let mut fields = input.fields;
    let clean = fields.iter().all(|(name, value)| {
        let kept = value.trim();
        !kept.is_empty() && kept.len() == value.len() && name.trim().len() == name.len()
    });
    if !clean {
        fields = fields
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| (trimmed(name), trimmed(value)))
            .collect();
    }
    if let Some(category) = category {
        for required in &category.required_fields {
            let present =
                if required == "document_number" { !document_number.is_empty() } else { fields.contains_key(required) };
            if !present {
                let field = if required == "document_number" { required.clone() } else { format!("fields.{required}") };
                problems.push(violation(field, format!("required for category {}", category.code)));
            }
        }
        for name in fields.keys() {
            if !category.required_fields.contains(name) && !category.optional_fields.contains(name) {
                let mut known: Vec<&str> = category
                    .required_fields
                    .iter()
                    .chain(&category.optional_fields)
                    .filter(|known| *known != "document_number")
                    .map(String::as_str)
                    .collect();
                known.sort_unstable();
                problems.push(violation(
                    format!("fields.{name}"),
                    format!("not a field of category {}; its fields: {}", category.code, known.join(", ")),
                ));
            }
        }
        // Dates other services read (grading reads `removed_on` to know a listing has ended).
        for name in ["valid_until", "removed_on"] {
            if let Some(value) = fields.get(name)
                && parse_day(value).is_none()
            {
                problems.push(violation(format!("fields.{name}"), "must be YYYY-MM-DD"));
            }
        }
    }
    let penalty_kind = PenaltyKind::try_from(input.penalty_kind).unwrap_or(PenaltyKind::Unspecified);
    if category.is_some_and(|category| category.needs_penalty_kind) && penalty_kind == PenaltyKind::Unspecified {
        problems
            .push(violation("penalty_kind", "required for penalties: the most severe kind imposed (WARNING, FINE, …)"));
    }
    let text = trimmed(input.text);
    if longer_than(&text, 4000) {
        problems.push(violation("text", "at most 4000 characters"));
    }
    match (credit_code, category, nature, decided_on) {
        (Some(credit_code), Some(category), Some(nature), Some(decided_on)) if problems.is_empty() => {
            let mut record = ValidRecord {
                credit_code,
                source_record_id,
                category: category.code.clone(),
                nature,
                decided_on,
                document_number,
                fields,
                text,
                penalty_kind,
                digest: Vec::new(),
            };
            record.digest = digest(&record);
            Ok(record)
        }
        _ => Err(problems),
    }
}

/// The day a record was due: `deadline_working_days` after the decision, or, for monthly
/// categories, the last day of the month after the decision's month.
pub fn report_due_on(
    calendar: &Calendar,
    category: &Category,
    deadline_override: Option<u32>,
    decided_on: NaiveDate,
) -> NaiveDate {
    if category.deadline_working_days > 0 {
        let days = deadline_override.unwrap_or(category.deadline_working_days as u32);
        calendar.add_working_days(decided_on, days)
    } else {
        let first_of_month = decided_on.with_day(1).unwrap_or(decided_on);
        first_of_month.checked_add_months(Months::new(2)).and_then(|next| next.pred_opt()).unwrap_or(decided_on)
    }
}

/// The disclosure window of a record: dishonesty records by their rule; positive and neutral
/// records are public without end (their own validity is in their fields).
pub fn disclosure_of(record: &ValidRecord) -> Disclosure {
    let severity = match record.nature {
        Nature::Minor => Some(Severity::Minor),
        Nature::GeneralDishonesty => Some(Severity::General),
        Nature::SeriousDishonesty => Some(Severity::Serious),
        _ => None,
    };
    match severity {
        Some(severity) => {
            disclosure::disclosure(record.decided_on, severity, record.penalty_kind == PenaltyKind::Warning)
        }
        None => {
            Disclosure { rule: disclosure::rule_in_force(record.decided_on).version, until: None, repair_from: None }
        }
    }
}

/// Whether a record with this disclosure is shown at all (a never-published minor warning is not).
pub fn is_published(record: &ValidRecord, disclosure: &Disclosure) -> bool {
    disclosure.until.is_some() || matches!(record.nature, Nature::Positive | Nature::Neutral)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn catalogue() -> HashMap<String, Category> {
        let penalty = Category {
            code: "penalty".into(),
            title: "行政处罚".into(),
            required_fields: vec!["document_number".into(), "content".into(), "legal_basis".into(), "authority".into()],
            optional_fields: vec!["valid_until".into(), "amount_yuan".into()],
            default_nature: 4,
            deadline_working_days: 7,
            needs_penalty_kind: true,
        };
        let tax = Category {
            code: "tax_arrears".into(),
            title: "欠税".into(),
            required_fields: vec!["content".into(), "authority".into()],
            optional_fields: vec![],
            default_nature: 4,
            deadline_working_days: 0,
            needs_penalty_kind: false,
        };
        HashMap::from([(penalty.code.clone(), penalty), (tax.code.clone(), tax)])
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    pub fn fine() -> RecordInput {
        RecordInput {
            credit_code: "91110000600037341L".into(),
            source_record_id: "JH-2026-0001".into(),
            category: "penalty".into(),
            nature: 0,
            decided_on: "2026-03-02".into(),
            document_number: "京海市监罚〔2026〕12号".into(),
            fields: [
                ("content", "罚款5000元"),
                ("legal_basis", "《食品安全法》第一百二十六条"),
                ("authority", "北京市海淀区市场监督管理局"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            text: String::new(),
            penalty_kind: PenaltyKind::Fine as i32,
            ..RecordInput::default()
        }
    }

    #[test]
    fn a_penalty_with_its_fields_validates_and_takes_the_default_nature() {
        let record = validate(fine(), &catalogue(), &[], today()).unwrap();
        assert_eq!(record.nature, Nature::GeneralDishonesty);
        assert_eq!(record.digest.len(), 32);
    }

    /// A blank value is no value: a required field left blank is missing, an optional one is
    /// dropped and digested as if never sent. Limits count characters, not bytes.
    #[test]
    fn blank_fields_are_dropped_and_limits_count_characters() {
        let mut blank = fine();
        blank.fields.insert("valid_until".into(), " \u{3000}".into());
        let record = validate(blank, &catalogue(), &[], today()).unwrap();
        assert!(!record.fields.contains_key("valid_until"));
        assert_eq!(record.digest, validate(fine(), &catalogue(), &[], today()).unwrap().digest);
        let mut missing = fine();
        missing.fields.insert("legal_basis".into(), "  ".into());
        let problems = validate(missing, &catalogue(), &[], today()).unwrap_err();
        assert_eq!(problems[0].field, "fields.legal_basis");

        let mut long = fine();
        long.source_record_id = "号".repeat(128);
        assert!(validate(long.clone(), &catalogue(), &[], today()).is_ok(), "128 characters, 384 bytes");
        long.source_record_id.push('号');
        let problems = validate(long, &catalogue(), &[], today()).unwrap_err();
        assert_eq!(
            (problems[0].field.as_str(), problems[0].reason.as_str()),
            ("source_record_id", "at most 128 characters")
        );
    }

    #[test]
    fn every_problem_is_named() {
        let mut input = fine();
        input.credit_code = "123".into();
        input.fields.remove("legal_basis");
        input.fields.insert("legal_bassis".into(), "typo".into());
        input.document_number = String::new();
        input.penalty_kind = 0;
        input.decided_on = "2027-01-01".into();
        let problems = validate(input, &catalogue(), &[], today()).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "credit_code",
                "decided_on",
                "document_number",
                "fields.legal_basis",
                "fields.legal_bassis",
                "penalty_kind"
            ]
        );
        assert!(
            problems[4].reason.contains("its fields: amount_yuan, authority, content, legal_basis, valid_until"),
            "{}",
            problems[4].reason
        );
    }

    #[test]
    fn reporting_rights_follow_report_permissions() {
        assert!(may_report(&[], "penalty"));
        assert!(may_report(&["report:penalty".into()], "penalty"));
        assert!(!may_report(&["report:licence".into()], "penalty"));
        let problems = validate(fine(), &catalogue(), &["report:licence".into()], today()).unwrap_err();
        assert_eq!(problems[0].field, "category");
        assert!(problems[0].reason.contains("report:penalty"));
    }

    #[test]
    fn the_digest_ignores_field_order_and_spaces_but_not_content() {
        let first = validate(fine(), &catalogue(), &[], today()).unwrap();
        let mut reordered = fine();
        let fields = std::mem::take(&mut reordered.fields);
        for (name, value) in fields.into_iter().rev() {
            reordered.fields.insert(format!(" {name}"), format!("{value} "));
        }
        assert_eq!(validate(reordered, &catalogue(), &[], today()).unwrap().digest, first.digest);
        let mut changed = fine();
        changed.fields.insert("content".into(), "罚款6000元".into());
        assert_ne!(validate(changed, &catalogue(), &[], today()).unwrap().digest, first.digest);
    }

    /// Digests are stored: a resend is a duplicate only if today's digest of it equals the one
    /// computed when it first came, maybe years and releases ago. How the digest is computed may
    /// change; the bytes it hashes may not.
    #[test]
    fn the_digest_of_a_record_is_the_one_stored_by_earlier_releases() {
        let record = validate(fine(), &catalogue(), &[], today()).unwrap();
        assert_eq!(hex::encode(&record.digest), "d48747edabdbf16a19dc81491220cd218fc81a8b646d63c4b74f86e33decfa72");
    }

    #[test]
    fn deadlines_count_working_days_or_run_to_the_end_of_next_month() {
        let calendar = Calendar::official();
        let catalogue = catalogue();
        let decided = NaiveDate::from_ymd_opt(2025, 9, 26).unwrap();
        assert_eq!(
            report_due_on(&calendar, &catalogue["penalty"], None, decided),
            NaiveDate::from_ymd_opt(2025, 10, 13).unwrap()
        );
        assert_eq!(
            report_due_on(&calendar, &catalogue["penalty"], Some(10), decided),
            NaiveDate::from_ymd_opt(2025, 10, 16).unwrap()
        );
        assert_eq!(
            report_due_on(&calendar, &catalogue["tax_arrears"], None, decided),
            NaiveDate::from_ymd_opt(2025, 10, 31).unwrap()
        );
        let january = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        assert_eq!(
            report_due_on(&calendar, &catalogue["tax_arrears"], None, january),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
    }

    #[test]
    fn disclosure_follows_the_nature_and_the_rule() {
        let mut record = validate(fine(), &catalogue(), &[], today()).unwrap();
        let general = disclosure_of(&record);
        assert_eq!(general.rule, "gov-2025-22");
        assert_eq!(general.until, NaiveDate::from_ymd_opt(2027, 3, 2));
        record.nature = Nature::Minor;
        record.penalty_kind = PenaltyKind::Warning;
        let warning = disclosure_of(&record);
        assert!(!is_published(&record, &warning), "a minor warning is not published under the 2025 rules");
        record.nature = Nature::Neutral;
        assert!(is_published(&record, &disclosure_of(&record)));
    }
}
