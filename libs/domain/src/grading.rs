//! Grading (信用分级分类) as a pure function: records + status + rule set + date → grade + reasons.
//! A grade is always computed from records by a versioned rule set and always comes with the
//! records that produced it.
//!
//! A rule set is a JSON document (see `data/schemes/`): the scheme's levels, its window, a default
//! grade, and ordered rules; the first rule whose condition holds decides the grade, and every rule
//! that holds at that grade is given as a reason. Conditions:
//!
//! - `{"records": {"natures": [...], "categories": [...], "penalty_kinds": [...], "at_least": N}}`:
//!   at least N counting records in the window match every given filter;
//! - `{"listed": {"categories": [...], "for_months_at_least": N}}`: a list record (e.g.
//!   `serious_dishonesty_list`) not removed (`removed_on` empty or later), listed for N months;
//! - `{"status": ["LICENCE_REVOKED", ...]}`: the subject's registration status;
//! - `{"any": [...]}`, `{"all": [...]}`.
//!
//! A record counts when it is active (not withdrawn or repaired), still inside its disclosure
//! window, and — for `records` conditions — decided inside the scheme's window. A disputed record
//! still counts and is named among the reason's disputed records (seed 000 art. 18).

use std::borrow::Cow;
use std::collections::BTreeSet;

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// The shipped schemes: the county public-credit evaluation (seed 001) and the district
/// supervision levels (seed 000).
pub const PUBLIC_CREDIT: &str = include_str!("../data/schemes/public_credit.json");
pub const DISTRICT_SUPERVISION: &str = include_str!("../data/schemes/district_supervision.json");

/// A grade letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grade {
    A,
    B,
    C,
    D,
}

/// A record as grading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFact {
    pub record_id: String,
    /// The catalogue's code, e.g. `penalty` (borrowed when it is one of the catalogue's seeded
    /// categories, as for nature below).
    pub category: Cow<'static, str>,
    /// `POSITIVE`, `NEUTRAL`, `MINOR`, `GENERAL_DISHONESTY`, `SERIOUS_DISHONESTY` (borrowed when
    /// it comes from a fixed table, as it does for millions of records in a recompute).
    pub nature: Cow<'static, str>,
    /// `FINE`, `LICENCE_REVOCATION`, … or empty.
    pub penalty_kind: Cow<'static, str>,
    pub decided_on: NaiveDate,
    /// Withdrawn or repaired records never count.
    pub active: bool,
    pub disputed: bool,
    /// Publication (and weight) ends on this day; `None`: no end.
    pub disclosure_until: Option<NaiveDate>,
    /// For list records: the day the subject was taken off the list.
    pub removed_on: Option<NaiveDate>,
}

/// What a rule set is evaluated for: a subject on a day.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `OPERATING`, `LICENCE_REVOKED`, `DEREGISTERED`, `MOVED_OUT`.
    pub status: &'a str,
    pub records: &'a [RecordFact],
    pub as_of: NaiveDate,
}

/// Why a subject has its grade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub text: String,
    pub record_ids: Vec<String>,
    pub disputed_record_ids: Vec<String>,
}

/// A grade with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub grade: Grade,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    grade: Grade,
    code: String,
    text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    grade: Grade,
    code: String,
    text: String,
    when: Condition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Condition {
    Records(RecordFilter),
    Listed(ListFilter),
    Status(Vec<String>),
    Any(Vec<Condition>),
    All(Vec<Condition>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFilter {
    #[serde(default)]
    natures: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    penalty_kinds: Vec<String>,
    at_least: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFilter {
    categories: Vec<String>,
    #[serde(default)]
    for_months_at_least: u32,
}

/// A validated rule set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    pub scheme: String,
    pub title: String,
    pub window_months: u32,
    /// Internal schemes (industry risk classes, seed 001 四) are never shown without permission.
    #[serde(default)]
    pub internal: bool,
    pub levels: Vec<Grade>,
    default: Outcome,
    rules: Vec<Rule>,
}

/// Why a rule set was refused: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {reason}")]
pub struct RuleSetError {
    pub place: String,
    pub reason: String,
}

const NATURES: &[&str] = &["POSITIVE", "NEUTRAL", "MINOR", "GENERAL_DISHONESTY", "SERIOUS_DISHONESTY"];
const PENALTY_KINDS: &[&str] = &[
    "WARNING",
    "FINE",
    "CONFISCATION",
    "LICENCE_SUSPENSION",
    "QUALIFICATION_DOWNGRADE",
    "LICENCE_REVOCATION",
    "BUSINESS_LICENCE_REVOCATION",
    "BUSINESS_RESTRICTION",
    "ORDER_TO_STOP",
    "ORDER_TO_CLOSE",
    "PRACTICE_RESTRICTION",
];
const STATUSES: &[&str] = &["OPERATING", "LICENCE_REVOKED", "DEREGISTERED", "MOVED_OUT"];

fn fault(place: impl Into<String>, reason: impl Into<String>) -> RuleSetError {
    RuleSetError { place: place.into(), reason: reason.into() }
}

fn check_names(place: &str, names: &[String], known: &[&str]) -> Result<(), RuleSetError> {
    for (index, name) in names.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(fault(format!("{place}[{index}]"), format!("`{name}` is not one of {}", known.join(", "))));
        }
    }
    Ok(())
}

fn check_condition(place: &str, condition: &Condition) -> Result<(), RuleSetError> {
    match condition {
        Condition::Records(filter) => {
            check_names(&format!("{place}.records.natures"), &filter.natures, NATURES)?;
            check_names(&format!("{place}.records.penalty_kinds"), &filter.penalty_kinds, PENALTY_KINDS)?;
            if filter.at_least == 0 {
                return Err(fault(
                    format!("{place}.records.at_least"),
                    "must be at least 1 (a rule that always holds belongs in `default`)",
                ));
            }
            if filter.natures.is_empty() && filter.categories.is_empty() && filter.penalty_kinds.is_empty() {
                return Err(fault(
                    format!("{place}.records"),
                    "needs at least one of natures, categories, penalty_kinds",
                ));
            }
        }
        Condition::Listed(filter) => {
            if filter.categories.is_empty() {
                return Err(fault(format!("{place}.listed.categories"), "names at least one list category"));
            }
        }
        Condition::Status(statuses) => {
            if statuses.is_empty() {
                return Err(fault(format!("{place}.status"), "names at least one status"));
            }
            check_names(&format!("{place}.status"), statuses, STATUSES)?;
        }
        Condition::Any(conditions) | Condition::All(conditions) => {
            let kind = if matches!(condition, Condition::Any(_)) { "any" } else { "all" };
            if conditions.is_empty() {
                return Err(fault(format!("{place}.{kind}"), "lists at least one condition"));
            }
            for (index, inner) in conditions.iter().enumerate() {
                check_condition(&format!("{place}.{kind}[{index}]"), inner)?;
            }
        }
    }
    Ok(())
}

impl RuleSet {
    /// Parse and validate a rule-set document.
    pub fn parse(document: &str) -> Result<RuleSet, RuleSetError> {
        let rule_set: RuleSet = serde_json::from_str(document)
            .map_err(|error| fault(format!("line {}, column {}", error.line(), error.column()), error.to_string()))?;
        if rule_set.scheme.is_empty()
            || !rule_set.scheme.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            return Err(fault("scheme", "use lower-case letters, digits and `_`"));
        }
        if rule_set.window_months == 0 || rule_set.window_months > 120 {
            return Err(fault("window_months", "must be between 1 and 120"));
        }
        if rule_set.levels.is_empty() {
            return Err(fault("levels", "lists the grades the scheme uses"));
        }
        if !rule_set.levels.contains(&rule_set.default.grade) {
            return Err(fault("default.grade", "is not one of the scheme's levels"));
        }
        let mut codes = BTreeSet::new();
        codes.insert(rule_set.default.code.as_str());
        for (index, rule) in rule_set.rules.iter().enumerate() {
            let place = format!("rules[{index}]");
            if !rule_set.levels.contains(&rule.grade) {
                return Err(fault(format!("{place}.grade"), "is not one of the scheme's levels"));
            }
            if rule.code.is_empty() || !codes.insert(rule.code.as_str()) {
                return Err(fault(format!("{place}.code"), "must be present and unique"));
            }
            check_condition(&format!("{place}.when"), &rule.when)?;
        }
        Ok(rule_set)
    }

    /// Evaluate the rule set for a subject.
    pub fn evaluate(&self, subject: &Subject<'_>) -> Evaluation {
        let window_start = subject.as_of.checked_sub_months(Months::new(self.window_months)).unwrap_or(NaiveDate::MIN);
        // Records that count at all today: active and still inside their disclosure window.
        let counting: Vec<&RecordFact> = subject
            .records
            .iter()
            .filter(|record| record.active && record.disclosure_until.is_none_or(|until| subject.as_of < until))
            .collect();
        let mut decided: Option<Grade> = None;
        let mut reasons = Vec::new();
        for rule in &self.rules {
            if decided.is_some_and(|grade| grade != rule.grade) {
                continue;
            }
            if let Some(matched) = matches(&rule.when, subject, &counting, window_start) {
                decided = Some(rule.grade);
                let mut record_ids: Vec<String> = matched.iter().map(|record| record.record_id.clone()).collect();
                record_ids.sort();
                record_ids.dedup();
                let mut disputed_record_ids: Vec<String> =
                    matched.iter().filter(|record| record.disputed).map(|record| record.record_id.clone()).collect();
                disputed_record_ids.sort();
                disputed_record_ids.dedup();
                reasons.push(Reason {
                    code: rule.code.clone(),
                    text: rule.text.clone(),
                    record_ids,
                    disputed_record_ids,
                });
            }
        }
        match decided {
            Some(grade) => Evaluation { grade, reasons },
            None => Evaluation {
                grade: self.default.grade,
                reasons: vec![Reason {
                    code: self.default.code.clone(),
                    text: self.default.text.clone(),
                    record_ids: Vec::new(),
                    disputed_record_ids: Vec::new(),
                }],
            },
        }
    }
}

impl RuleSet {
    /// The text of the rule (or the default) with this code: stored grades keep only the codes,
    /// and the text comes from the version that produced them.
    pub fn reason_text(&self, code: &str) -> Option<&str> {
        if self.default.code == code {
            return Some(&self.default.text);
        }
        self.rules.iter().find(|rule| rule.code == code).map(|rule| rule.text.as_str())
    }

    /// The first day after `subject.as_of` on which time alone may change the evaluation: a record
    /// leaves the window or its disclosure period, a listing is removed or reaches a duration a rule
    /// asks for. `None` when nothing will change by itself. Regrading on that day (or later, after
    /// downtime) is what the daily sweep does; an early regrade is harmless, a late one is not.
    pub fn next_review(&self, subject: &Subject<'_>) -> Option<NaiveDate> {
        let mut durations = Vec::new();
        for rule in &self.rules {
            listing_durations(&rule.when, &mut durations);
        }
        let window = Months::new(self.window_months);
        let mut next: Option<NaiveDate> = None;
        let mut consider = |day: Option<NaiveDate>| {
            if let Some(day) = day
                && day > subject.as_of
            {
                next = Some(next.map_or(day, |current| current.min(day)));
            }
        };
        for record in subject.records.iter().filter(|record| record.active) {
            consider(record.decided_on.checked_add_months(window));
            consider(record.disclosure_until);
            consider(record.removed_on);
            for months in &durations {
                consider(record.decided_on.checked_add_months(Months::new(*months)));
            }
        }
        next
    }
}

fn listing_durations(condition: &Condition, durations: &mut Vec<u32>) {
    match condition {
        Condition::Listed(filter) if filter.for_months_at_least > 0 => durations.push(filter.for_months_at_least),
        Condition::Any(conditions) | Condition::All(conditions) => {
            conditions.iter().for_each(|inner| listing_durations(inner, durations))
        }
        _ => {}
    }
}

/// The records that make `condition` hold (empty for a status condition), or `None` when it does not.
fn matches<'a>(
    condition: &Condition,
    subject: &Subject<'_>,
    counting: &[&'a RecordFact],
    window_start: NaiveDate,
) -> Option<Vec<&'a RecordFact>> {
    let within = |list: &[String], value: &str| list.is_empty() || list.iter().any(|item| item == value);
    match condition {
        Condition::Records(filter) => {
            let found: Vec<&RecordFact> = counting
                .iter()
                .copied()
                .filter(|record| record.decided_on > window_start)
                .filter(|record| within(&filter.natures, &record.nature))
                .filter(|record| within(&filter.categories, &record.category))
                .filter(|record| within(&filter.penalty_kinds, &record.penalty_kind))
                .collect();
            (found.len() >= filter.at_least).then_some(found)
        }
        Condition::Listed(filter) => {
            let found: Vec<&RecordFact> = counting
                .iter()
                .copied()
                .filter(|record| filter.categories.iter().any(|category| *category == record.category))
                .filter(|record| record.removed_on.is_none_or(|removed| removed > subject.as_of))
                .filter(|record| {
                    record
                        .decided_on
                        .checked_add_months(Months::new(filter.for_months_at_least))
                        .is_some_and(|listed_long_enough| listed_long_enough <= subject.as_of)
                })
                .collect();
            (!found.is_empty()).then_some(found)
        }
        Condition::Status(statuses) => statuses.iter().any(|status| status == subject.status).then(Vec::new),
        Condition::Any(conditions) => {
            let mut found = Vec::new();
            let mut any = false;
            for inner in conditions {
                if let Some(records) = matches(inner, subject, counting, window_start) {
                    any = true;
                    found.extend(records);
                }
            }
            any.then_some(found)
        }
        Condition::All(conditions) => {
            let mut found = Vec::new();
            for inner in conditions {
                found.extend(matches(inner, subject, counting, window_start)?);
            }
            Some(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    const AS_OF: &str = "2026-06-30";

    fn record(id: &str, nature: &str, decided_on: &str) -> RecordFact {
        RecordFact {
            record_id: id.into(),
            category: "penalty".into(),
            nature: nature.to_owned().into(),
            penalty_kind: "FINE".into(),
            decided_on: day(decided_on),
            active: true,
            disputed: false,
            disclosure_until: None,
            removed_on: None,
        }
    }

    fn general(count: usize) -> Vec<RecordFact> {
        (0..count).map(|index| record(&format!("g{index}"), "GENERAL_DISHONESTY", "2026-03-01")).collect()
    }

    fn grade(records: &[RecordFact], status: &str) -> Evaluation {
        let rule_set = RuleSet::parse(PUBLIC_CREDIT).unwrap();
        rule_set.evaluate(&Subject { status, records, as_of: day(AS_OF) })
    }

    /// Seed 001 三(一): "A类即企业1年内无失信行为记录".
    #[test]
    fn no_dishonesty_is_a() {
        let evaluation = grade(&[record("p", "POSITIVE", "2026-01-01")], "OPERATING");
        assert_eq!(evaluation.grade, Grade::A);
        assert_eq!(evaluation.reasons[0].code, "no_dishonesty");
    }

    /// "B类即企业1年内有5次以下(含5次)一般失信行为记录且未造成严重后果".
    #[test]
    fn up_to_five_general_records_is_b_and_six_is_c() {
        let five = grade(&general(5), "OPERATING");
        assert_eq!(five.grade, Grade::B);
        assert_eq!(five.reasons[0].record_ids.len(), 5, "the records behind the grade");
        let six = grade(&general(6), "OPERATING");
        assert_eq!(six.grade, Grade::C, "C类即企业1年内有5次以上一般失信行为记录");
        assert_eq!(six.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), ["general_dishonesty_over_5"]);
    }

    /// "…或存在严重失信行为记录".
    #[test]
    fn one_serious_record_is_c() {
        assert_eq!(grade(&[record("s", "SERIOUS_DISHONESTY", "2026-05-01")], "OPERATING").grade, Grade::C);
    }

    /// "被依法依规纳入严重失信主体名单且未移出".
    #[test]
    fn on_the_serious_dishonesty_list_and_not_removed_is_c() {
        let mut listed = record("l", "SERIOUS_DISHONESTY", "2023-01-01");
        listed.category = "serious_dishonesty_list".into();
        let evaluation = grade(std::slice::from_ref(&listed), "OPERATING");
        assert_eq!(evaluation.grade, Grade::C, "a listing counts however old, while not removed");
        assert_eq!(evaluation.reasons[0].code, "serious_dishonesty_listed");
        listed.removed_on = Some(day("2026-02-01"));
        assert_eq!(grade(&[listed], "OPERATING").grade, Grade::A, "removed, and its record is older than the window");
    }

    /// "吊销许可证件…其中,吊销许可证件不含吊销营业执照的情形" and "D类即企业已被依法吊销营业执照".
    #[test]
    fn a_licence_revoked_is_c_and_the_business_licence_revoked_is_d() {
        let mut revoked = record("r", "GENERAL_DISHONESTY", "2026-04-01");
        revoked.penalty_kind = "LICENCE_REVOCATION".into();
        let licence = grade(std::slice::from_ref(&revoked), "OPERATING");
        assert_eq!(licence.grade, Grade::C);
        assert_eq!(licence.reasons[0].code, "severe_penalty");
        revoked.penalty_kind = "BUSINESS_LICENCE_REVOCATION".into();
        assert_eq!(grade(&[revoked], "OPERATING").grade, Grade::D);
        let by_status = grade(&[], "LICENCE_REVOKED");
        assert_eq!(by_status.grade, Grade::D);
        assert!(by_status.reasons[0].record_ids.is_empty(), "the registry's status, not a record");
    }

    #[test]
    fn old_withdrawn_repaired_and_expired_records_are_ignored() {
        let old = record("old", "SERIOUS_DISHONESTY", "2025-06-30");
        let mut withdrawn = record("w", "SERIOUS_DISHONESTY", "2026-05-01");
        withdrawn.active = false;
        let mut expired = record("e", "SERIOUS_DISHONESTY", "2026-01-01");
        expired.disclosure_until = Some(day(AS_OF));
        assert_eq!(grade(&[old, withdrawn, expired], "OPERATING").grade, Grade::A);
        let inside = record("in", "SERIOUS_DISHONESTY", "2025-07-01");
        assert_eq!(grade(&[inside], "OPERATING").grade, Grade::C, "the window's first day counts");
    }

    #[test]
    fn a_disputed_record_still_counts_and_is_marked() {
        let mut records = general(2);
        records[1].disputed = true;
        let evaluation = grade(&records, "OPERATING");
        assert_eq!(evaluation.grade, Grade::B);
        assert_eq!(evaluation.reasons[0].disputed_record_ids, ["g1"]);
    }

    #[test]
    fn every_reason_at_the_decided_grade_is_given() {
        let mut records = general(7);
        records.push(record("s", "SERIOUS_DISHONESTY", "2026-05-01"));
        let evaluation = grade(&records, "OPERATING");
        assert_eq!(evaluation.grade, Grade::C);
        let codes: Vec<&str> = evaluation.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["serious_dishonesty", "general_dishonesty_over_5"]);
    }

    /// Seed 000 art. 10–11: D needs the serious list for more than a year; abnormal operation is B.
    #[test]
    fn the_district_scheme_grades_by_listing_and_violation() {
        let rule_set = RuleSet::parse(DISTRICT_SUPERVISION).unwrap();
        let mut listed = record("l", "SERIOUS_DISHONESTY", "2025-01-01");
        listed.category = "serious_dishonesty_list".into();
        let long = rule_set.evaluate(&Subject {
            status: "OPERATING",
            records: std::slice::from_ref(&listed),
            as_of: day(AS_OF),
        });
        assert_eq!(long.grade, Grade::D);
        listed.decided_on = day("2026-01-01");
        let short = rule_set.evaluate(&Subject { status: "OPERATING", records: &[listed], as_of: day(AS_OF) });
        assert_eq!(short.grade, Grade::C, "listed less than a year: a violation, not yet D");
        let mut abnormal = record("ab", "NEUTRAL", "2026-01-01");
        abnormal.category = "abnormal_operation_list".into();
        let warned = rule_set.evaluate(&Subject { status: "OPERATING", records: &[abnormal], as_of: day(AS_OF) });
        assert_eq!(warned.grade, Grade::B);
    }

    #[test]
    fn the_next_review_is_the_first_day_time_changes_something() {
        let rule_set = RuleSet::parse(PUBLIC_CREDIT).unwrap();
        let mut serious = record("s", "SERIOUS_DISHONESTY", "2026-05-01");
        serious.disclosure_until = Some(day("2027-05-01"));
        let subject =
            |records: &[RecordFact]| rule_set.next_review(&Subject { status: "OPERATING", records, as_of: day(AS_OF) });
        assert_eq!(subject(std::slice::from_ref(&serious)), Some(day("2027-05-01")), "leaves the 12-month window");
        serious.disclosure_until = Some(day("2026-08-01"));
        assert_eq!(subject(std::slice::from_ref(&serious)), Some(day("2026-08-01")), "disclosure ends first");
        let mut listed = record("l", "SERIOUS_DISHONESTY", "2020-01-01");
        listed.category = "serious_dishonesty_list".into();
        listed.removed_on = Some(day("2026-07-15"));
        assert_eq!(subject(&[serious.clone(), listed]), Some(day("2026-07-15")), "the listing ends");
        serious.active = false;
        assert_eq!(subject(&[serious]), None, "a withdrawn record never changes anything again");
        assert_eq!(subject(&[]), None);
        let evaluated_then_reviewed = {
            let mut old = record("o", "SERIOUS_DISHONESTY", "2025-07-10");
            old.disclosure_until = None;
            let records = [old];
            let review = rule_set.next_review(&Subject { status: "OPERATING", records: &records, as_of: day(AS_OF) });
            let before = rule_set.evaluate(&Subject { status: "OPERATING", records: &records, as_of: day(AS_OF) });
            let after = rule_set.evaluate(&Subject { status: "OPERATING", records: &records, as_of: review.unwrap() });
            (review, before.grade, after.grade)
        };
        assert_eq!(evaluated_then_reviewed, (Some(day("2026-07-10")), Grade::C, Grade::A));
        let district = RuleSet::parse(DISTRICT_SUPERVISION).unwrap();
        let mut recent = record("r", "SERIOUS_DISHONESTY", "2026-01-01");
        recent.category = "serious_dishonesty_list".into();
        recent.disclosure_until = Some(day("2029-01-01"));
        let review = district.next_review(&Subject { status: "OPERATING", records: &[recent], as_of: day(AS_OF) });
        assert_eq!(review, Some(day("2027-01-01")), "listed for a year: D from that day");
    }

    #[test]
    fn malformed_rule_sets_are_refused_with_the_place_and_the_reason() {
        let unknown_nature =
            PUBLIC_CREDIT.replace("[\"GENERAL_DISHONESTY\"], \"at_least\": 6", "[\"GENERAL\"], \"at_least\": 6");
        assert_eq!(
            RuleSet::parse(&unknown_nature).unwrap_err(),
            fault(
                "rules[4].when.records.natures[0]",
                "`GENERAL` is not one of POSITIVE, NEUTRAL, MINOR, GENERAL_DISHONESTY, SERIOUS_DISHONESTY"
            )
        );
        let bad_grade =
            PUBLIC_CREDIT.replace("\"levels\": [\"A\", \"B\", \"C\", \"D\"]", "\"levels\": [\"A\", \"B\", \"C\"]");
        assert_eq!(RuleSet::parse(&bad_grade).unwrap_err().place, "rules[0].grade");
        let typo = PUBLIC_CREDIT.replace("\"at_least\": 6", "\"at_leest\": 6");
        let error = RuleSet::parse(&typo).unwrap_err();
        assert!(error.place.starts_with("line "), "{error}");
        assert!(error.reason.contains("unknown field `at_leest`"), "{error}");
        assert_eq!(RuleSet::parse("{").unwrap_err().place, "line 1, column 1");
    }
}
