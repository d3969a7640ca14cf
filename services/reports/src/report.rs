//! What a report says, worked out from its parts: pure, so the rules of the special report are
//! tested without the owners running.

use chrono::{Months, NaiveDate};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use xinyong_platform::error::{optional_day, violation};
use xinyong_proto::common::v1::{DateRange, FieldViolation, ListKind};
use xinyong_proto::ingestion::v1::{Record, RecordState};
use xinyong_proto::reports::v1::{CreditReport, RepairedRecord, Section};
use xinyong_proto::sanctions::v1::Listing;

/// The areas a special report covers (发改财金〔2025〕565号: "at least administrative penalties,
/// summary ones included, administrative enforcement, the serious-dishonesty list and criminal
/// judgments"), with the record category of each, in the order the report shows them.
pub const SPECIAL_AREAS: [(&str, &str); 4] = [
    ("penalty", "行政处罚"),
    ("enforcement", "行政强制"),
    ("serious_dishonesty_list", "严重失信主体名单"),
    ("criminal_judgment", "刑事裁判"),
];

/// A special report's period when the request names none: the three years up to the day of issue.
const DEFAULT_PERIOD: Months = Months::new(36);
/// The longest period a special report covers.
const LONGEST_PERIOD: Months = Months::new(120);

/// The report number: the day of issue (China Standard Time) and the report's id, e.g.
/// `XY20261125-0190f3a27c1e70008000000000000001`.
pub fn report_no(id: Uuid, issued_on: NaiveDate) -> String {
    format!("XY{}-{}", issued_on.format("%Y%m%d"), id.simple())
}

/// The id inside a report number; `None` when it is not one of ours.
pub fn report_id(report_no: &str) -> Option<Uuid> {
    let (day, id) = report_no.trim().strip_prefix("XY")?.split_once('-')?;
    NaiveDate::parse_from_str(day, "%Y%m%d").ok()?;
    Uuid::try_parse(id).ok()
}

/// SHA-256 of the report encoded with its digest empty. Every map in a report is sorted (see
/// libs/proto/build.rs), so the report decoded and encoded again gives the same digest.
pub fn digest(report: &CreditReport) -> [u8; 32] {
    let mut unsigned = report.clone();
    unsigned.digest.clear();
    Sha256::digest(unsigned.encode_to_vec()).into()
}

/// The period of a special report: the request's, or the three years up to `today`.
pub fn special_period(
    range: Option<&DateRange>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), Vec<FieldViolation>> {
    let mut problems = Vec::new();
    let mut day = |field: &str, text: &str| -> Option<NaiveDate> {
        let day = optional_day(field, text, &mut problems)?;
        if day > today {
            problems.push(violation(field, "is in the future"));
            return None;
        }
        Some(day)
    };
    let to = range.and_then(|range| day("period.to", &range.to));
    let from = range.and_then(|range| day("period.from", &range.from));
    if !problems.is_empty() {
        return Err(problems);
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or_else(|| {
        to.checked_sub_months(DEFAULT_PERIOD).and_then(|day| day.succ_opt()).unwrap_or(NaiveDate::MIN)
    });
    if from > to {
        return Err(vec![violation("period.from", "is after period.to")]);
    }
    if to.checked_sub_months(LONGEST_PERIOD).is_some_and(|earliest| from < earliest) {
        return Err(vec![violation("period", "covers more than ten years")]);
    }
    Ok((from, to))
}

/// The sections of a special report over `[from, to]` and the records behind them: the records of
/// each area decided in the period, and for the serious-dishonesty list also the listings that
/// stood for any day of it, whenever they were decided. `area_records` holds the penalty,
/// enforcement and criminal-judgment records decided in the period; `list_records` every
/// serious-dishonesty list record of the subject.
pub fn special_sections(
    area_records: Vec<Record>,
    list_records: Vec<Record>,
    listings: &[Listing],
    from: NaiveDate,
    to: NaiveDate,
) -> (Vec<Record>, Vec<Section>) {
    let in_period = |day: &str| day_of(day).is_some_and(|day| from <= day && day <= to);
    let stood_in_period = |record_id: &str| {
        listings.iter().any(|listing| {
            listing.record_id == record_id
                && listing.list == ListKind::SeriousDishonesty as i32
                && day_of(&listing.since).is_some_and(|since| since <= to)
                && (listing.until.is_empty() || day_of(&listing.until).is_some_and(|until| until >= from))
        })
    };
    let mut records: Vec<Record> = area_records.into_iter().filter(|record| in_period(&record.decided_on)).collect();
    records.extend(
        list_records.into_iter().filter(|record| in_period(&record.decided_on) || stood_in_period(&record.record_id)),
    );
    newest_first(&mut records);
    let sections = SPECIAL_AREAS
        .iter()
        .map(|(category, title)| {
            let record_ids: Vec<String> = records
                .iter()
                .filter(|record| record.category == *category)
                .map(|record| record.record_id.clone())
                .collect();
            let statement = match record_ids.len() {
                0 => format!("报告期内（{from}至{to}）无{title}记录"),
                count => format!("报告期内（{from}至{to}）有{count}条{title}记录"),
            };
            Section { category: (*category).to_owned(), title: (*title).to_owned(), record_ids, statement }
        })
        .collect();
    (records, sections)
}

/// The repaired records among `records`, with only what shows that they were repaired: a repaired
/// record is no longer published.
pub fn repairs(records: &[Record]) -> Vec<RepairedRecord> {
    records
        .iter()
        .filter(|record| record.state == RecordState::Repaired as i32)
        .map(|record| RepairedRecord {
            record_id: record.record_id.clone(),
            category: record.category.clone(),
            nature: record.nature,
            decided_on: record.decided_on.clone(),
            repaired_at: record.updated_at,
        })
        .collect()
}

/// Newest decision first, then by id, so that a report lists its records the same way each time.
pub fn newest_first(records: &mut [Record]) {
    records.sort_by(|a, b| b.decided_on.cmp(&a.decided_on).then_with(|| a.record_id.cmp(&b.record_id)));
}

fn day_of(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn record(id: &str, category: &str, decided_on: &str) -> Record {
        Record {
            record_id: id.into(),
            category: category.into(),
            decided_on: decided_on.into(),
            state: RecordState::Active as i32,
            ..Default::default()
        }
    }

    fn listing(record_id: &str, since: &str, until: &str) -> Listing {
        Listing {
            list: ListKind::SeriousDishonesty as i32,
            record_id: record_id.into(),
            since: since.into(),
            until: until.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_report_number_carries_its_id_and_day_and_nothing_else_parses() {
        let id = Uuid::parse_str("0190f3a2-7c1e-7000-8000-000000000001").unwrap();
        let number = report_no(id, day("2026-11-25"));
        assert_eq!(number, "XY20261125-0190f3a27c1e70008000000000000001");
        assert_eq!(report_id(&number), Some(id));
        for wrong in [
            "",
            "XY-0190f3a27c1e70008000000000000001",
            "XY20261325-0190f3a27c1e70008000000000000001",
            "AB20261125-0190f3a27c1e70008000000000000001",
            "XY20261125-nope",
        ] {
            assert_eq!(report_id(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn the_digest_ignores_the_digest_field_and_changes_with_any_content() {
        let mut report = CreditReport { credit_code: "91110000600037341L".into(), ..Default::default() };
        report.records.push(record("r-1", "penalty", "2026-01-05"));
        report.records[0].fields.insert("content".into(), "罚款".into());
        report.records[0].fields.insert("authority".into(), "市监局".into());
        let signed = digest(&report);
        report.digest = "anything".into();
        assert_eq!(digest(&report), signed);
        let again = CreditReport::decode(report.encode_to_vec().as_slice()).unwrap();
        assert_eq!(digest(&again), signed, "decoded and encoded again");
        report.records[0].fields.insert("content".into(), "警告".into());
        assert_ne!(digest(&report), signed);
    }

    #[test]
    fn a_special_period_defaults_to_three_years_and_refuses_the_future_and_inverted_or_long_ones() {
        let today = day("2026-11-25");
        assert_eq!(special_period(None, today).unwrap(), (day("2023-11-26"), today));
        let range = |from: &str, to: &str| DateRange { from: from.into(), to: to.into() };
        assert_eq!(
            special_period(Some(&range("2025-01-01", "2025-12-31")), today).unwrap(),
            (day("2025-01-01"), day("2025-12-31"))
        );
        let field = |result: Result<(NaiveDate, NaiveDate), Vec<FieldViolation>>| result.unwrap_err()[0].field.clone();
        assert_eq!(field(special_period(Some(&range("", "2026-11-26")), today)), "period.to");
        assert_eq!(field(special_period(Some(&range("2026-13-01", "")), today)), "period.from");
        assert_eq!(field(special_period(Some(&range("2026-02-01", "2026-01-01")), today)), "period.from");
        assert_eq!(field(special_period(Some(&range("2016-11-24", "")), today)), "period");
        assert!(special_period(Some(&range("2016-11-25", "")), today).is_ok(), "ten years to the day");
    }

    #[test]
    fn a_special_report_covers_its_period_and_listings_that_stood_in_it_and_says_none_where_none() {
        let (from, to) = (day("2024-01-01"), day("2025-12-31"));
        let areas = vec![
            record("p-in", "penalty", "2024-01-01"),
            record("p-edge", "penalty", "2025-12-31"),
            record("p-before", "penalty", "2023-12-31"),
            record("e-in", "enforcement", "2025-06-30"),
        ];
        let lists = vec![
            record("l-decided-in", "serious_dishonesty_list", "2025-03-01"),
            record("l-stood-in", "serious_dishonesty_list", "2022-05-01"),
            record("l-ended-before", "serious_dishonesty_list", "2021-05-01"),
        ];
        let listings =
            [listing("l-stood-in", "2022-05-20", "2024-01-01"), listing("l-ended-before", "2021-06-01", "2023-12-31")];
        let (records, sections) = special_sections(areas, lists, &listings, from, to);
        let ids: Vec<&str> = records.iter().map(|record| record.record_id.as_str()).collect();
        assert_eq!(ids, ["p-edge", "e-in", "l-decided-in", "p-in", "l-stood-in"], "newest first");
        let of = |category: &str| sections.iter().find(|section| section.category == category).unwrap();
        assert_eq!(of("penalty").record_ids, ["p-edge", "p-in"]);
        assert_eq!(of("penalty").statement, "报告期内（2024-01-01至2025-12-31）有2条行政处罚记录");
        assert_eq!(of("serious_dishonesty_list").record_ids, ["l-decided-in", "l-stood-in"]);
        assert!(of("criminal_judgment").record_ids.is_empty());
        assert_eq!(of("criminal_judgment").statement, "报告期内（2024-01-01至2025-12-31）无刑事裁判记录");
        let order: Vec<&str> = sections.iter().map(|section| section.category.as_str()).collect();
        assert_eq!(order, ["penalty", "enforcement", "serious_dishonesty_list", "criminal_judgment"]);
    }

    #[test]
    fn only_repaired_records_are_repairs_and_they_carry_no_content() {
        let mut repaired = record("r-1", "penalty", "2025-02-02");
        repaired.state = RecordState::Repaired as i32;
        repaired.fields.insert("content".into(), "罚款".into());
        let mut withdrawn = record("w-1", "penalty", "2025-02-03");
        withdrawn.state = RecordState::Withdrawn as i32;
        let repairs = repairs(&[repaired, withdrawn, record("a-1", "penalty", "2025-02-04")]);
        assert_eq!(repairs.len(), 1);
        assert_eq!((repairs[0].record_id.as_str(), repairs[0].decided_on.as_str()), ("r-1", "2025-02-02"));
    }
}
