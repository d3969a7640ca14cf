//! How long a dishonesty record is published (公示期限), by the rule in force on its decision date.
//! After the minimum the subject may apply for repair; at the maximum publication stops by itself,
//! and so does the record's weight in grading (seed 000 art. 18(3), 003 (13), 004 (三)).
//!
//! | rule | minor | general | serious |
//! |---|---|---|---|
//! | 发改办财金〔2019〕527号 | (no such class: as general) | 3 months to 1 year | 6 months to 3 years |
//! | 国办发〔2025〕22号; SAMR Order 107; NDRC Order 36 | not published, or at most 3 months; warning-only penalties not published | 3 months to 1 year | 1 to 3 years |

use chrono::{Months, NaiveDate};

/// How serious a dishonesty record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 轻微失信.
    Minor,
    /// 一般失信.
    General,
    /// 严重失信.
    Serious,
}

/// A publication window in months after the decision date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Repair may be requested from this many months after the decision.
    pub min_months: u32,
    /// Publication ends this many months after the decision.
    pub max_months: u32,
}

/// A disclosure rule and the date it applies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stored with each record, so a record is always judged under the rule it was decided under.
    pub version: &'static str,
    pub title: &'static str,
    /// Decisions on or after this date fall under this rule (until the next one).
    pub in_force_from: NaiveDate,
    /// `None`: minor records are not a separate class under this rule and count as general.
    pub minor: Option<Window>,
    pub general: Window,
    pub serious: Window,
    /// Whether penalties that are only a warning are left unpublished when minor.
    pub warnings_unpublished: bool,
}

const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid date in the rule table"),
    }
}

/// The rules, oldest first. The 2025 rule applies from the earliest in-force date DOMAIN.md names
/// (SAMR Order 107, 2025-12-25); NDRC Order 36 (2026-04-01) carries the same windows.
pub const RULES: &[Rule] = &[
    Rule {
        version: "ndrc-2019-527",
        title: "发改办财金〔2019〕527号",
        in_force_from: date(2019, 7, 1),
        minor: None,
        general: Window { min_months: 3, max_months: 12 },
        serious: Window { min_months: 6, max_months: 36 },
        warnings_unpublished: false,
    },
    Rule {
        version: "gov-2025-22",
        title: "国办发〔2025〕22号；国家市场监督管理总局令第107号；国家发展和改革委员会令第36号",
        in_force_from: date(2025, 12, 25),
        minor: Some(Window { min_months: 0, max_months: 3 }),
        general: Window { min_months: 3, max_months: 12 },
        serious: Window { min_months: 12, max_months: 36 },
        warnings_unpublished: true,
    },
];

/// The rule a decision falls under; decisions before the first rule fall under it too.
pub fn rule_in_force(decided_on: NaiveDate) -> &'static Rule {
    RULES.iter().rev().find(|rule| rule.in_force_from <= decided_on).unwrap_or(&RULES[0])
}

/// A record's disclosure, as stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disclosure {
    pub rule: &'static str,
    /// Publication ends on this day (exclusive); `None` when the record is never published.
    pub until: Option<NaiveDate>,
    /// Repair may be requested from this day; `None` when never published (nothing to repair).
    pub repair_from: Option<NaiveDate>,
}

impl Disclosure {
    /// Whether the record may be shown on `day`.
    pub fn published_on(&self, day: NaiveDate) -> bool {
        self.until.is_some_and(|until| day < until)
    }
}

/// The disclosure of a dishonesty record decided on `decided_on`. `warning_only`: the penalty is
/// only a warning (警告 / 通报批评).
pub fn disclosure(decided_on: NaiveDate, severity: Severity, warning_only: bool) -> Disclosure {
    let rule = rule_in_force(decided_on);
    let window = match severity {
        Severity::Minor if rule.warnings_unpublished && warning_only => None,
        Severity::Minor => Some(rule.minor.unwrap_or(rule.general)),
        Severity::General => Some(rule.general),
        Severity::Serious => Some(rule.serious),
    };
    let add = |months: u32| decided_on.checked_add_months(Months::new(months));
    match window {
        Some(window) => {
            Disclosure { rule: rule.version, until: add(window.max_months), repair_from: add(window.min_months) }
        }
        None => Disclosure { rule: rule.version, until: None, repair_from: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_rule_follows_the_decision_date() {
        assert_eq!(rule_in_force(day("2025-12-24")).version, "ndrc-2019-527");
        assert_eq!(rule_in_force(day("2025-12-25")).version, "gov-2025-22");
        assert_eq!(
            rule_in_force(day("2018-03-01")).version,
            "ndrc-2019-527",
            "older decisions fall under the first rule"
        );
    }

    #[test]
    fn serious_records_under_2019_publish_6_months_to_3_years() {
        let serious = disclosure(day("2025-06-01"), Severity::Serious, false);
        assert_eq!(
            serious,
            Disclosure { rule: "ndrc-2019-527", until: Some(day("2028-06-01")), repair_from: Some(day("2025-12-01")) }
        );
    }

    #[test]
    fn serious_records_under_2025_publish_1_to_3_years() {
        let serious = disclosure(day("2026-01-10"), Severity::Serious, false);
        assert_eq!(
            serious,
            Disclosure { rule: "gov-2025-22", until: Some(day("2029-01-10")), repair_from: Some(day("2027-01-10")) }
        );
    }

    #[test]
    fn general_records_publish_3_months_to_1_year_under_both() {
        for decided in ["2024-05-31", "2026-05-31"] {
            let general = disclosure(day(decided), Severity::General, false);
            assert_eq!(general.until, day(decided).checked_add_months(Months::new(12)));
            assert_eq!(general.repair_from, day(decided).checked_add_months(Months::new(3)));
        }
        // Month ends clamp: 31 May + 3 months is 31 August; 30 November + 3 months is 28 February.
        assert_eq!(disclosure(day("2026-11-30"), Severity::General, false).repair_from, Some(day("2027-02-28")));
    }

    #[test]
    fn minor_records_under_2025_publish_at_most_3_months_and_warnings_not_at_all() {
        let fine = disclosure(day("2026-02-01"), Severity::Minor, false);
        assert_eq!((fine.until, fine.repair_from), (Some(day("2026-05-01")), Some(day("2026-02-01"))));
        assert!(fine.published_on(day("2026-04-30")));
        assert!(!fine.published_on(day("2026-05-01")));
        let warning = disclosure(day("2026-02-01"), Severity::Minor, true);
        assert_eq!(warning.until, None);
        assert!(!warning.published_on(day("2026-02-01")));
    }

    #[test]
    fn minor_records_under_2019_count_as_general() {
        let minor = disclosure(day("2024-02-01"), Severity::Minor, true);
        assert_eq!(minor.until, Some(day("2025-02-01")));
    }
}
