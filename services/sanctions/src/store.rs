//! All SQL of sanctions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;
use xinyong_platform::copy;

use crate::answers::StoredAnswer;

/// A measure as stored (enums as their proto numbers).
#[derive(Debug, Clone, FromRow)]
pub struct MeasureRow {
    pub code: String,
    pub title: String,
    pub legal_basis: String,
    pub source: String,
    pub executing_departments: Vec<String>,
    pub grades: Vec<i16>,
    pub lists: Vec<i16>,
    pub scheme: String,
    pub target: i16,
    pub matter_types: Vec<i16>,
    pub incentive: bool,
}

const MEASURE_COLUMNS: &str =
    "code, title, legal_basis, source, executing_departments, grades, lists, scheme, target, matter_types, incentive";

/// A subject's grade under one scheme, as sanctions knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct GradeRow {
    pub scheme: String,
    pub grade: i16,
    pub rule_set_version: i32,
    pub internal: bool,
    pub disputed_record_ids: Vec<String>,
}

/// What sanctions knows of a subject: its grades and the lists it stands on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub grades: Vec<GradeRow>,
    /// common.v1.ListKind of the standing listings.
    pub lists: Vec<i16>,
}

/// What a check answered, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub grades: Vec<GradeRow>,
    #[serde(default)]
    pub lists: Vec<i16>,
    pub measures: Vec<String>,
    pub disputed_record_ids: Vec<String>,
}

/// Digests of the answers the check log knows to be stored, so that a repeated answer costs a
/// check only its 32 bytes. Bounded: past [`KnownAnswers::LIMIT`] it starts again empty (an answer
/// forgotten is inserted again, and its insert does nothing).
#[derive(Debug, Default)]
pub struct KnownAnswers(std::collections::HashSet<[u8; 32]>);

impl KnownAnswers {
    pub const LIMIT: usize = 100_000;

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.contains(digest)
    }

    fn extend(&mut self, digests: impl ExactSizeIterator<Item = [u8; 32]>) {
        if self.0.len() + digests.len() > Self::LIMIT {
            self.0.clear();
        }
        self.0.extend(digests);
    }
}

/// A check to store: its answer as prepared, JSON and digest.
#[derive(Debug, Clone)]
pub struct NewCheck {
    pub check_id: Uuid,
    pub credit_code: String,
    pub department_id: String,
    pub matter_type: i16,
    pub answer: Arc<StoredAnswer>,
    pub checked_at: DateTime<Utc>,
    pub report_due_on: Option<NaiveDate>,
}

/// A stored check, read back.
#[derive(Debug, Clone, FromRow)]
pub struct CheckRow {
    pub check_id: Uuid,
    pub credit_code: String,
    pub department_id: String,
    pub matter_type: i16,
    pub answer: Json<Answer>,
    pub checked_at: DateTime<Utc>,
    pub report_due_on: Option<NaiveDate>,
    pub reported_at: Option<DateTime<Utc>>,
}

/// One reported handling.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct HandlingRow {
    pub measure_code: String,
    pub applied: bool,
    pub reason: String,
}

/// The longest a segment of the check log spans, in the milliseconds of its UUIDv7 ids.
const SEGMENT_SPAN_MS: u64 = 60_000;
// Element types of the segments' arrays (`pg_type` OIDs).
const UUID: u32 = 2950;
const TEXT: u32 = 25;
const INT2: u32 = 21;
const BYTEA: u32 = 17;
const TIMESTAMPTZ: u32 = 1184;
const DATE: u32 = 1082;

/// The Unix milliseconds of a UUIDv7 (its first 48 bits).
fn id_millis(id: Uuid) -> u64 {
    id.as_bytes()[..6].iter().fold(0, |millis, byte| millis << 8 | u64::from(*byte))
}

/// The greatest id a segment holding `id` can end with: one [`SEGMENT_SPAN_MS`] later (or the
/// greatest id there is, for an id whose first 48 bits are that close to their end: a random id of
/// a check stored before segments).
fn latest_segment_end(id: Uuid) -> Uuid {
    let mut bytes = [0xff; 16];
    let millis = (id_millis(id) + SEGMENT_SPAN_MS).min((1 << 48) - 1);
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// `checks` in id order.
fn in_id_order(checks: &[NewCheck]) -> Vec<&NewCheck> {
    let mut ordered: Vec<&NewCheck> = checks.iter().collect();
    ordered.sort_unstable_by_key(|check| check.check_id);
    ordered
}

/// `ordered` cut into segments wherever one would span more than [`SEGMENT_SPAN_MS`]: a check is
/// then found among the segments ending at most that long after its id.
fn segments<'a, 'c>(ordered: &'a [&'c NewCheck]) -> Vec<&'a [&'c NewCheck]> {
    let mut segments = Vec::new();
    let mut rest = ordered;
    while let Some(first) = rest.first() {
        let limit = id_millis(first.check_id) + SEGMENT_SPAN_MS;
        let length = rest.iter().take_while(|check| id_millis(check.check_id) <= limit).count();
        let (segment, after) = rest.split_at(length);
        segments.push(segment);
        rest = after;
    }
    segments
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub async fn measures(&self) -> Result<Vec<MeasureRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {MEASURE_COLUMNS} FROM measures ORDER BY code")).fetch_all(&self.pool).await
    }

    /// Create or replace a measure; `true` when it was created.
    pub async fn upsert_measure(&self, measure: &MeasureRow, by: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO measures (code, title, legal_basis, source, executing_departments, grades, lists, scheme,
                 target, matter_types, incentive, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (code) DO UPDATE SET title = excluded.title, legal_basis = excluded.legal_basis,
                 source = excluded.source, executing_departments = excluded.executing_departments,
                 grades = excluded.grades, lists = excluded.lists, scheme = excluded.scheme, target = excluded.target,
                 matter_types = excluded.matter_types, incentive = excluded.incentive,
                 updated_by = excluded.updated_by, updated_at = now()
             RETURNING xmax = 0",
        )
        .bind(&measure.code)
        .bind(&measure.title)
        .bind(&measure.legal_basis)
        .bind(&measure.source)
        .bind(&measure.executing_departments)
        .bind(&measure.grades)
        .bind(&measure.lists)
        .bind(&measure.scheme)
        .bind(measure.target)
        .bind(&measure.matter_types)
        .bind(measure.incentive)
        .bind(by)
        .fetch_one(&self.pool)
        .await
    }

    /// A subject's grades and standing lists, from Postgres (the read model's fallback).
    pub async fn subject(&self, credit_code: &str) -> Result<Subject, sqlx::Error> {
        let grades = sqlx::query_as(
            "SELECT scheme, grade, rule_set_version, internal, disputed_record_ids FROM subject_grades
             WHERE credit_code = $1 ORDER BY scheme",
        )
        .bind(credit_code)
        .fetch_all(&self.pool)
        .await?;
        let lists = sqlx::query_scalar(
            "SELECT DISTINCT list FROM listings WHERE credit_code = $1 AND until IS NULL ORDER BY list",
        )
        .bind(credit_code)
        .fetch_all(&self.pool)
        .await?;
        Ok(Subject { grades, lists })
    }

    /// Store new checks with one binary `COPY` (check ids are fresh UUIDv7s, so nothing can
    /// clash): Postgres parses no text for the ids, times and days of the hottest write there is.
    /// A check carries its answer's digest; answers not in `known` are inserted first, in the same
    /// transaction, and join `known` once committed. The checks that owe a report are added to
    /// `reports_owed` in the same transaction too, a row per department and day.
    pub async fn copy_checks(&self, checks: &[NewCheck], known: &mut KnownAnswers) -> Result<(), sqlx::Error> {
        let mut data = copy::BinaryCopy::new(checks.len() * 128);
        // Answers not stored yet, by digest: each once, however many checks of the batch carry it.
        let mut fresh: HashMap<[u8; 32], &str> = HashMap::new();
        // In key order, so that the check logs of several replicas lock the counters they share in
        // the same order and never wait on one another in a cycle.
        let mut owed: BTreeMap<(&str, NaiveDate), i64> = BTreeMap::new();
        for check in checks {
            let digest = &check.answer.digest;
            if !known.contains(digest) {
                fresh.entry(*digest).or_insert(&check.answer.json);
            }
            if let Some(due_on) = check.report_due_on {
                *owed.entry((check.department_id.as_str(), due_on)).or_default() += 1;
            }
        }
        let ordered = in_id_order(checks);
        let segments = segments(&ordered);
        // The segment's array columns after its first and last id: each an element type and how a
        // check writes its element.
        type Element = fn(&mut copy::BinaryCopy, &NewCheck);
        let columns: [(u32, Element); 7] = [
            (UUID, |out, check| {
                out.uuid(check.check_id);
            }),
            (TEXT, |out, check| {
                out.text(&check.credit_code);
            }),
            (TEXT, |out, check| {
                out.text(&check.department_id);
            }),
            (INT2, |out, check| {
                out.int2(check.matter_type);
            }),
            (BYTEA, |out, check| {
                out.bytes(&check.answer.digest);
            }),
            (TIMESTAMPTZ, |out, check| {
                out.timestamptz(check.checked_at);
            }),
            (DATE, |out, check| {
                out.optional_date(check.report_due_on);
            }),
        ];
        for segment in segments {
            data.row(9).uuid(segment[0].check_id).uuid(segment[segment.len() - 1].check_id);
            for (element_type, element) in columns {
                data.array(element_type, segment.len(), |out| segment.iter().for_each(|check| element(out, check)));
            }
        }
        const COPY: &str =
            "COPY check_segments (first_id, last_id, check_ids, credit_codes, department_ids, matter_types,
             answer_digests, checked_at, report_due_on) FROM STDIN WITH (FORMAT binary)";
        if fresh.is_empty() && owed.is_empty() {
            let mut connection = self.pool.acquire().await?;
            copy::copy_in_binary(&mut connection, COPY, data.finish()).await?;
            return Ok(());
        }
        let mut transaction = self.pool.begin().await?;
        if !fresh.is_empty() {
            let (digests, answers): (Vec<&[u8]>, Vec<&str>) =
                fresh.iter().map(|(digest, answer)| (digest.as_slice(), *answer)).unzip();
            sqlx::query(
                "INSERT INTO check_answers (digest, answer)
                 SELECT digest, answer::json FROM UNNEST($1::bytea[], $2::text[]) AS t(digest, answer)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&digests)
            .bind(&answers)
            .execute(&mut *transaction)
            .await?;
        }
        copy::copy_in_binary(&mut transaction, COPY, data.finish()).await?;
        if !owed.is_empty() {
            let mut departments = Vec::with_capacity(owed.len());
            let mut days = Vec::with_capacity(owed.len());
            let mut counts = Vec::with_capacity(owed.len());
            for ((department, day), count) in owed {
                departments.push(department);
                days.push(day);
                counts.push(count);
            }
            sqlx::query(
                "INSERT INTO reports_owed (department_id, due_on, owed)
                 SELECT * FROM UNNEST($1::text[], $2::date[], $3::bigint[])
                 ON CONFLICT (department_id, due_on) DO UPDATE SET owed = reports_owed.owed + EXCLUDED.owed",
            )
            .bind(&departments)
            .bind(&days)
            .bind(&counts)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        known.extend(fresh.into_keys());
        Ok(())
    }

    pub async fn check(&self, check_id: Uuid) -> Result<Option<(CheckRow, Vec<HandlingRow>)>, sqlx::Error> {
        let check: Option<CheckRow> = sqlx::query_as(
            "SELECT c.check_id, c.credit_code, c.department_id, c.matter_type, a.answer, c.checked_at, c.report_due_on,
                 r.reported_at
             FROM check_segments s
             CROSS JOIN LATERAL unnest(s.check_ids, s.credit_codes, s.department_ids, s.matter_types, s.answer_digests,
                                       s.checked_at, s.report_due_on)
                 AS c(check_id, credit_code, department_id, matter_type, answer_digest, checked_at, report_due_on)
             JOIN check_answers a ON a.digest = c.answer_digest
             LEFT JOIN check_reports r ON r.check_id = c.check_id
             WHERE s.last_id BETWEEN $1 AND $2 AND s.first_id <= $1 AND c.check_id = $1",
        )
        .bind(check_id)
        .bind(latest_segment_end(check_id))
        .fetch_optional(&self.pool)
        .await?;
        let Some(check) = check else { return Ok(None) };
        let handlings = sqlx::query_as(
            "SELECT measure_code, applied, reason FROM handlings WHERE check_id = $1 ORDER BY measure_code",
        )
        .bind(check_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((check, handlings)))
    }

    /// Record the handlings of a check once; `false` when it had been reported already (by a
    /// concurrent call).
    pub async fn report(&self, check: &CheckRow, handlings: &[HandlingRow], by: &str) -> Result<bool, sqlx::Error> {
        let check_id = check.check_id;
        let (department_id, due_on) = (&check.department_id, check.report_due_on);
        let mut transaction = self.pool.begin().await?;
        let claimed: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO check_reports (check_id) VALUES ($1) ON CONFLICT (check_id) DO NOTHING RETURNING check_id",
        )
        .bind(check_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if claimed.is_none() {
            return Ok(false);
        }
        if let Some(due_on) = due_on {
            // The check log counted it as owed when it stored it, in the same transaction.
            sqlx::query("UPDATE reports_owed SET reported = reported + 1 WHERE department_id = $1 AND due_on = $2")
                .bind(department_id)
                .bind(due_on)
                .execute(&mut *transaction)
                .await?;
        }
        let codes: Vec<&str> = handlings.iter().map(|handling| handling.measure_code.as_str()).collect();
        let applied: Vec<bool> = handlings.iter().map(|handling| handling.applied).collect();
        let reasons: Vec<&str> = handlings.iter().map(|handling| handling.reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO handlings (check_id, measure_code, applied, reason, reported_by)
             SELECT $1, * , $5 FROM UNNEST($2::text[], $3::bool[], $4::text[])",
        )
        .bind(check_id)
        .bind(codes)
        .bind(applied)
        .bind(reasons)
        .bind(by)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use uuid::{NoContext, Timestamp};

    use super::*;

    fn check_at(millis: u64) -> NewCheck {
        let timestamp = Timestamp::from_unix(NoContext, millis / 1000, (millis % 1000) as u32 * 1_000_000);
        NewCheck {
            check_id: Uuid::new_v7(timestamp),
            credit_code: "91110000600037341L".to_owned(),
            department_id: "samr-110108".to_owned(),
            matter_type: 3,
            answer: Arc::new(crate::answers::StoredAnswer { digest: [0; 32], json: "{}".to_owned() }),
            checked_at: Utc::now(),
            report_due_on: None,
        }
    }

    #[test]
    fn a_segment_never_spans_more_than_its_limit_and_every_check_is_within_reach_of_its_end() {
        let start = 1_763_900_000_000;
        let checks: Vec<NewCheck> =
            [start + 30_000, start, start + 59_999, start + 60_000, start + 60_001, start + 250_000]
                .into_iter()
                .map(check_at)
                .collect();
        let ordered = in_id_order(&checks);
        let cut: Vec<Vec<u64>> = segments(&ordered)
            .iter()
            .map(|segment| segment.iter().map(|check| id_millis(check.check_id) - start).collect())
            .collect();
        assert_eq!(cut, [vec![0, 30_000, 59_999, 60_000], vec![60_001], vec![250_000]]);
        for segment in segments(&ordered) {
            let last = segment[segment.len() - 1].check_id;
            for check in segment {
                assert!(last <= latest_segment_end(check.check_id), "the lookup's range reaches the segment's end");
            }
        }
        assert!(latest_segment_end(checks[1].check_id) < checks[4].check_id, "and no further than the limit");
        let near_the_end = Uuid::from_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(latest_segment_end(near_the_end) > near_the_end, "no wrap past the last millisecond");
    }
}
