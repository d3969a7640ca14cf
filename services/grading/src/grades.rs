//! Regrading: load what a subject's grade is computed from (its status and record facts, from
//! grading's own projection), evaluate every scheme's current rule set, and store what changed —
//! the grade (the one it replaces moving into the history) and a `GradeChanged` — in the caller's
//! transaction.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool, Row};
use xinyong_domain::grading::{Grade, Reason, RecordFact, RuleSet, Subject};
use xinyong_platform::bus::{self, Announce};
use xinyong_platform::copy::{self, BinaryRow};
use xinyong_proto::events::v1::{GradeChanged, GradeReason, GradesChanged};

use crate::store::Store;

const PRODUCER: &str = "grading";

/// The current version of one scheme's rule set.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub name: String,
    pub version: i32,
    pub internal: bool,
    pub rules: RuleSet,
}

/// The current rule set of every scheme, shared by the handlers, the sweep and `Recompute`.
/// Refreshed when this process publishes and periodically (another replica may have published).
#[derive(Clone, Default)]
pub struct Schemes(Arc<RwLock<Loaded>>);

#[derive(Default)]
struct Loaded {
    latest: Arc<Vec<Scheme>>,
    /// Every version, for the texts of stored reasons.
    versions: HashMap<(String, i32), Arc<RuleSet>>,
}

impl Schemes {
    pub fn current(&self) -> Arc<Vec<Scheme>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).latest.clone()
    }

    /// The text of reason `code` under a scheme's version (empty if the version is unknown).
    pub fn reason_text(&self, scheme: &str, version: i32, code: &str) -> String {
        let loaded = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded
            .versions
            .get(&(scheme.to_owned(), version))
            .and_then(|rules| rules.reason_text(code))
            .unwrap_or_default()
            .to_owned()
    }

    pub fn get(&self, name: &str) -> Option<Scheme> {
        self.current().iter().find(|scheme| scheme.name == name).cloned()
    }

    /// Load the latest version of every scheme.
    pub async fn refresh(&self, store: &Store) -> Result<(), sqlx::Error> {
        let mut latest: Vec<Scheme> = Vec::new();
        let mut versions = HashMap::new();
        for row in store.list(None).await? {
            // Stored documents were validated when published; one that no longer parses (an
            // older engine's format) keeps the scheme at its last version that does.
            let Ok(rules) = RuleSet::parse(&row.document) else {
                tracing::error!(scheme = %row.scheme, version = row.version, "a stored rule set does not parse");
                continue;
            };
            versions.insert((row.scheme.clone(), row.version), Arc::new(rules.clone()));
            let scheme = Scheme { name: row.scheme, version: row.version, internal: row.internal, rules };
            match latest.iter_mut().find(|known| known.name == scheme.name) {
                Some(known) if known.version < scheme.version => *known = scheme,
                Some(_) => {}
                None => latest.push(scheme),
            }
        }
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Loaded { latest: Arc::new(latest), versions };
        Ok(())
    }
}

/// The grade letter as stored and sent (`common.v1.Grade`).
pub fn grade_number(grade: Grade) -> i16 {
    match grade {
        Grade::A => 1,
        Grade::B => 2,
        Grade::C => 3,
        Grade::D => 4,
    }
}

fn status_name(status: i16) -> &'static str {
    match status {
        2 => "LICENCE_REVOKED",
        3 => "DEREGISTERED",
        4 => "MOVED_OUT",
        _ => "OPERATING",
    }
}

fn nature_name(nature: i16) -> &'static str {
    match nature {
        1 => "POSITIVE",
        2 => "NEUTRAL",
        3 => "MINOR",
        4 => "GENERAL_DISHONESTY",
        5 => "SERIOUS_DISHONESTY",
        _ => "",
    }
}

fn penalty_kind_name(kind: i16) -> &'static str {
    match kind {
        1 => "WARNING",
        2 => "FINE",
        3 => "CONFISCATION",
        4 => "LICENCE_SUSPENSION",
        5 => "QUALIFICATION_DOWNGRADE",
        6 => "LICENCE_REVOCATION",
        7 => "BUSINESS_LICENCE_REVOCATION",
        8 => "BUSINESS_RESTRICTION",
        9 => "ORDER_TO_STOP",
        10 => "ORDER_TO_CLOSE",
        11 => "PRACTICE_RESTRICTION",
        _ => "",
    }
}

/// The categories ingestion's catalogue is seeded with: a fact of one of them borrows its name
/// rather than owning a copy (a recompute reads five million facts). A category added to the
/// catalogue later is owned, and works the same.
const SEEDED_CATEGORIES: [&str; 16] = [
    "licence",
    "penalty",
    "enforcement",
    "confirmation",
    "reward",
    "payment",
    "inspection_result",
    "abnormal_operation_list",
    "serious_dishonesty_list",
    "dishonest_judgment_debtor",
    "tax_arrears",
    "utility_arrears",
    "commitment_kept",
    "commitment_broken",
    "self_declared",
    "criminal_judgment",
];

fn category_name(category: &str) -> Cow<'static, str> {
    SEEDED_CATEGORIES
        .iter()
        .find(|seeded| **seeded == category)
        .map_or_else(|| Cow::Owned(category.to_owned()), |seeded| Cow::Borrowed(*seeded))
}

/// Hands out one allocation per distinct text among consecutive rows: the reads come in code
/// order, so a subject's facts and grades share its code, and the grades of a chunk share a
/// handful of scheme names. A recompute reads seven million such rows, and allocating each text
/// anew (with each category) cost a pass over grades in place about a tenth of the service's CPU
/// (docs/BENCHMARKS.md, fifteenth session).
#[derive(Default)]
struct SharedTexts {
    /// The texts last allocated, newest at the end. A hit does not move its text, so a scheme's
    /// name is allocated again once eight codes have come after it: once per few subjects.
    recent: Vec<Arc<str>>,
}

impl SharedTexts {
    /// Texts remembered: a code repeats in the next rows only, a scheme name every few rows.
    const KEPT: usize = 8;

    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.recent.iter().rev().find(|known| ***known == *text) {
            return known.clone();
        }
        if self.recent.len() == Self::KEPT {
            self.recent.remove(0);
        }
        let fresh: Arc<str> = Arc::from(text);
        self.recent.push(fresh.clone());
        fresh
    }
}

/// Decoded by position (see its `FromRow`): a recompute decodes millions.
#[derive(Debug)]
struct FactRow {
    credit_code: Arc<str>,
    record_id: String,
    category: Cow<'static, str>,
    nature: i16,
    penalty_kind: i16,
    decided_on: NaiveDate,
    active: bool,
    disputed: bool,
    published: bool,
    disclosure_until: Option<NaiveDate>,
    removed_on: Option<NaiveDate>,
}

/// The columns of a `FactRow`, in its order. The record id comes as its 16 bytes and nature,
/// penalty kind and the three flags packed in one `int4` (see `FactRow::unpacked`): each value
/// Postgres sends costs it a call and a buffer, and a recompute sends millions of rows. In psql,
/// a COPY of 5M facts took 3.5 s this way against 5.2 s as eleven values with the id as text.
const FACT_COLUMNS: &str = "credit_code, record_id, category,
    nature::int4 | (penalty_kind::int4 << 8) | (active::int4 << 16) | (disputed::int4 << 17)
        | (published::int4 << 18),
    decided_on, disclosure_until, removed_on";

impl<'r> FromRow<'r, PgRow> for FactRow {
    fn from_row(row: &'r PgRow) -> Result<FactRow, sqlx::Error> {
        Ok(FactRow::unpacked(
            Arc::from(row.try_get::<&str, _>(0)?),
            &row.try_get(1)?,
            category_name(row.try_get(2)?),
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
        ))
    }
}

impl FactRow {
    /// A row of the COPY of the same columns.
    fn from_binary(row: &mut BinaryRow<'_, '_>, codes: &mut SharedTexts) -> Result<FactRow, sqlx::Error> {
        Ok(FactRow::unpacked(
            codes.get(row.text()?),
            &row.uuid()?,
            category_name(row.text()?),
            row.int4()?,
            row.date()?,
            row.optional_date()?,
            row.optional_date()?,
        ))
    }

    fn unpacked(
        credit_code: Arc<str>,
        record_id: &uuid::Uuid,
        category: Cow<'static, str>,
        packed: i32,
        decided_on: NaiveDate,
        disclosure_until: Option<NaiveDate>,
        removed_on: Option<NaiveDate>,
    ) -> FactRow {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        FactRow {
            credit_code,
            record_id: record_id.hyphenated().encode_lower(&mut id).to_owned(),
            category,
            nature: (packed & 0xff) as i16,
            penalty_kind: ((packed >> 8) & 0xff) as i16,
            decided_on,
            active: packed & 1 << 16 != 0,
            disputed: packed & 1 << 17 != 0,
            published: packed & 1 << 18 != 0,
            disclosure_until,
            removed_on,
        }
    }

    fn into_fact(self) -> RecordFact {
        RecordFact {
            record_id: self.record_id,
            category: self.category,
            nature: Cow::Borrowed(nature_name(self.nature)),
            penalty_kind: Cow::Borrowed(penalty_kind_name(self.penalty_kind)),
            decided_on: self.decided_on,
            active: self.active,
            disputed: self.disputed,
            // A record that is never published has no public window, and so no weight (its
            // weight ends with publication, seed 000 art. 18(3)).
            disclosure_until: if self.published { self.disclosure_until } else { Some(self.decided_on) },
            removed_on: self.removed_on,
        }
    }
}

/// A reason as stored: its code and records. The text belongs to the rule set version, so it is
/// not repeated in a million rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReason {
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disputed_record_ids: Vec<String>,
}

/// A stored grade.
#[derive(Debug, Clone, FromRow)]
pub struct GradeRow {
    pub credit_code: String,
    pub scheme: String,
    pub grade: i16,
    pub rule_set_version: i32,
    pub reasons: Json<Vec<StoredReason>>,
    pub as_of: NaiveDate,
    pub graded_at: DateTime<Utc>,
    pub review_on: Option<NaiveDate>,
}

pub const GRADE_COLUMNS: &str = "credit_code, scheme, grade, rule_set_version, reasons, as_of, graded_at, review_on";

/// Where a row version lies in its table (Postgres's `ctid`): the page and the line on it.
///
/// A grade being replaced is rewritten where its regrade read it, found by this rather than by
/// its key: after a new version of a scheme, each of a recompute's million rewrites otherwise
/// cost two probes of the key's index, one to move the old grade into the history and one to
/// overwrite it (a chunk's write took about a fifth longer that way, measured in psql). That is
/// safe only because no other regrade can touch the row between the read and the write (see
/// [`Grader::regrade_locked`]); the write still checks the key and counts what it rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tid {
    block: u32,
    line: u16,
}

impl Tid {
    /// From `tid`'s binary form (`tidsend`): the page's number then the line's, big-endian.
    fn from_binary(value: &[u8]) -> Result<Tid, sqlx::Error> {
        let malformed = || sqlx::Error::Decode("a tid not of 6 bytes".into());
        let (block, line) = value.split_first_chunk::<4>().ok_or_else(malformed)?;
        let line: [u8; 2] = line.try_into().map_err(|_| malformed())?;
        Ok(Tid { block: u32::from_be_bytes(*block), line: u16::from_be_bytes(line) })
    }
}

impl sqlx::Type<sqlx::Postgres> for Tid {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("tid")
    }
}

impl sqlx::postgres::PgHasArrayType for Tid {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("_tid")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Tid {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.block.to_be_bytes());
        buf.extend_from_slice(&self.line.to_be_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

impl sqlx::Decode<'_, sqlx::Postgres> for Tid {
    fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Tid, sqlx::error::BoxDynError> {
        Ok(Tid::from_binary(value.as_bytes()?)?)
    }
}

/// What a regrade needs of the current grade to tell whether anything changed, and to replace it.
#[derive(Debug)]
struct CurrentGrade {
    credit_code: Arc<str>,
    scheme: Arc<str>,
    grade: i16,
    digest: i64,
    review_on: Option<NaiveDate>,
    tid: Tid,
}

impl<'r> FromRow<'r, PgRow> for CurrentGrade {
    fn from_row(row: &'r PgRow) -> Result<CurrentGrade, sqlx::Error> {
        Ok(CurrentGrade {
            credit_code: Arc::from(row.try_get::<&str, _>("credit_code")?),
            scheme: Arc::from(row.try_get::<&str, _>("scheme")?),
            grade: row.try_get("grade")?,
            digest: row.try_get("digest")?,
            review_on: row.try_get("review_on")?,
            tid: row.try_get("ctid")?,
        })
    }
}

impl CurrentGrade {
    /// A row of the COPY of the same columns.
    fn from_binary(row: &mut BinaryRow<'_, '_>, texts: &mut SharedTexts) -> Result<CurrentGrade, sqlx::Error> {
        Ok(CurrentGrade {
            credit_code: texts.get(row.text()?),
            scheme: texts.get(row.text()?),
            grade: row.int2()?,
            digest: row.int8()?,
            review_on: row.optional_date()?,
            tid: Tid::from_binary(row.optional_value()?.ok_or_else(|| sqlx::Error::Decode("a null ctid".into()))?)?,
        })
    }
}

/// A stable digest of a grade, its version and its reasons (stable across releases, unlike the
/// standard library's hasher: it is stored).
fn digest(grade: i16, version: i32, reasons: &[Reason]) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(grade.to_le_bytes());
    hasher.update(version.to_le_bytes());
    for reason in reasons {
        hasher.update(reason.code.as_bytes());
        for id in &reason.record_ids {
            hasher.update([1]);
            hasher.update(id.as_bytes());
        }
        for id in &reason.disputed_record_ids {
            hasher.update([2]);
            hasher.update(id.as_bytes());
        }
        hasher.update([3]);
    }
    let bytes: [u8; 32] = hasher.finalize().into();
    i64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
}

/// How a regrade reads the facts and grades of its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Exactly the listed codes.
    Listed,
    /// Every code from the first to the last: the caller's codes are all the subjects there
    /// are in that range (a recompute's chunk over the whole population).
    WholeRange,
}

/// What a regrade did.
#[derive(Debug, Default)]
pub struct Regraded {
    pub subjects: usize,
    /// The grades that changed, as now stored (to refresh the read model after commit): first
    /// the subjects' first grades under a scheme, then the grades that replaced one.
    pub changed: Vec<GradeRow>,
    /// How many of `changed` are first grades.
    pub first_grades: usize,
}

impl Regraded {
    /// The changed grades that replaced one: only those can have an entry in the read model,
    /// which holds grades found and never caches their absence, and grades are never deleted.
    pub fn replacing(&self) -> &[GradeRow] {
        &self.changed[self.first_grades..]
    }
}

#[derive(Clone)]
pub struct Grader {
    pub schemes: Schemes,
}

/// Taken by every regrade but a recompute's chunks, which take [`FENCE_FOR_CHUNKS`]: the two
/// modes conflict with each other and not with themselves (migration
/// `20261124000003_recompute_fence`), so no regrade interleaves with a chunk, while chunks run
/// beside chunks and regrades beside regrades. Held until the transaction ends.
pub const FENCE_FOR_REGRADES: &str = "LOCK TABLE recompute_fence IN ROW EXCLUSIVE MODE";

/// Taken by a recompute's chunk before it reads its subjects; see [`FENCE_FOR_REGRADES`].
pub const FENCE_FOR_CHUNKS: &str = "LOCK TABLE recompute_fence IN SHARE MODE";

impl Grader {
    pub fn new(schemes: Schemes) -> Grader {
        Grader { schemes }
    }

    /// Regrade `codes` as of `as_of` under every scheme (or only `only_scheme`), inside the
    /// caller's transaction. The recompute fence is taken first (a recompute's chunks under way
    /// finish before this reads anything, see [`FENCE_FOR_REGRADES`]), then the subject rows, in
    /// code order, so two regrades of one subject (an event and the sweep) never interleave.
    pub async fn regrade(
        &self,
        connection: &mut PgConnection,
        codes: &[String],
        as_of: NaiveDate,
        cause: &str,
        announce: Announce,
        only_scheme: Option<&str>,
    ) -> Result<Regraded, sqlx::Error> {
        if codes.is_empty() {
            return Ok(Regraded::default());
        }
        sqlx::query(FENCE_FOR_REGRADES).execute(&mut *connection).await?;
        let mut sorted = codes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let statuses: Vec<(String, i16)> = sqlx::query_as(
            "SELECT credit_code, status FROM subjects WHERE credit_code = ANY($1) ORDER BY credit_code FOR UPDATE",
        )
        .bind(&sorted)
        .fetch_all(&mut *connection)
        .await?;
        // Projection makes a subject's row before it regrades it; a code without one (yet) gets a
        // row now, so that every subject regraded is locked: a first grade is then written with a
        // plain insert (see `Changes::write`).
        let statuses = if statuses.len() < sorted.len() {
            sqlx::query("INSERT INTO subjects (credit_code) SELECT UNNEST($1::text[]) ON CONFLICT DO NOTHING")
                .bind(&sorted)
                .execute(&mut *connection)
                .await?;
            sqlx::query_as(
                "SELECT credit_code, status FROM subjects WHERE credit_code = ANY($1) ORDER BY credit_code FOR UPDATE",
            )
            .bind(&sorted)
            .fetch_all(&mut *connection)
            .await?
        } else {
            statuses
        };
        let statuses: HashMap<String, i16> = statuses.into_iter().collect();
        let subjects: Vec<(String, i16)> = sorted
            .into_iter()
            .map(|code| {
                let status = statuses.get(&code).copied().unwrap_or(1);
                (code, status)
            })
            .collect();
        self.regrade_locked(connection, &subjects, Read::Listed, as_of, cause, announce, only_scheme).await
    }

    /// Regrade subjects no other regrade can touch until the caller's transaction ends: their rows
    /// locked by [`Grader::regrade`], or, for a recompute's chunk, the recompute fence held in
    /// SHARE mode over a range of codes no other chunk covers (one recompute runs at a time). A
    /// subject's first grade is inserted without a conflict clause, which only that makes safe.
    /// `subjects` in code order, each with its status.
    #[allow(clippy::too_many_arguments)]
    pub async fn regrade_locked(
        &self,
        connection: &mut PgConnection,
        subjects: &[(String, i16)],
        read: Read,
        as_of: NaiveDate,
        cause: &str,
        announce: Announce,
        only_scheme: Option<&str>,
    ) -> Result<Regraded, sqlx::Error> {
        let schemes = self.schemes.current();
        let schemes: Vec<&Scheme> =
            schemes.iter().filter(|scheme| only_scheme.is_none_or(|only| only == scheme.name)).collect();
        let (Some((first, _)), Some((last, _))) = (subjects.first(), subjects.last()) else {
            return Ok(Regraded::default());
        };
        if schemes.is_empty() {
            return Ok(Regraded::default());
        }
        // The bounds let Postgres read a chunk of a recompute as one range of the index rather
        // than a probe per code; for a handful of codes they change nothing. When the chunk is the
        // whole range, the list is not even looked at: matching every row against 2,000 codes
        // doubled the reads' cost.
        let in_range = |select: &str, filter: &str| {
            format!("{select} WHERE credit_code BETWEEN $1 AND $2{filter} ORDER BY credit_code")
        };
        let select_facts = format!("SELECT {FACT_COLUMNS} FROM record_facts");
        const CURRENT: &str = "SELECT credit_code, scheme, grade, digest, review_on, ctid FROM grades";
        let (facts, current) = match read {
            Read::Listed => {
                let listed: Vec<&str> = subjects.iter().map(|(code, _)| code.as_str()).collect();
                let facts = sqlx::query_as::<_, FactRow>(&in_range(&select_facts, " AND credit_code = ANY($3)"))
                    .bind(first)
                    .bind(last)
                    .bind(&listed)
                    .fetch_all(&mut *connection)
                    .await?;
                let current = sqlx::query_as::<_, CurrentGrade>(&in_range(CURRENT, " AND credit_code = ANY($3)"))
                    .bind(first)
                    .bind(last)
                    .bind(&listed)
                    .fetch_all(&mut *connection)
                    .await?;
                (facts, current)
            }
            // A recompute's millions of rows come as COPY data, walked here by position: as query
            // rows, each cost a row object and a type check per column, half of the service's time
            // in a recompute over grades in place.
            Read::WholeRange => {
                let as_copy = |select: &str| {
                    let select =
                        select.replacen("$1", &copy::literal(first), 1).replacen("$2", &copy::literal(last), 1);
                    format!("COPY ({select}) TO STDOUT WITH (FORMAT binary)")
                };
                let mut texts = SharedTexts::default();
                let facts = copy::copy_out_rows(connection, &as_copy(&in_range(&select_facts, "")), 7, |row| {
                    FactRow::from_binary(row, &mut texts)
                })
                .await?;
                let current = copy::copy_out_rows(connection, &as_copy(&in_range(CURRENT, "")), 6, |row| {
                    CurrentGrade::from_binary(row, &mut texts)
                })
                .await?;
                (facts, current)
            }
        };
        // Both reads come in code order (bytewise, like `sorted`): each subject's rows are the next
        // run of them, taken without a map keyed by code.
        let mut facts = facts.into_iter().peekable();
        let mut current = current.into_iter().peekable();
        let mut changes = Changes::default();
        for (code, status) in subjects {
            let mut subject_records = Vec::new();
            let mut subject_grades = Vec::new();
            while let Some(row) = facts.next_if(|row| *row.credit_code <= **code) {
                if *row.credit_code == **code {
                    subject_records.push(row.into_fact());
                }
            }
            while let Some(row) = current.next_if(|row| *row.credit_code <= **code) {
                if *row.credit_code == **code {
                    subject_grades.push(row);
                }
            }
            let subject = Subject { status: status_name(*status), records: &subject_records, as_of };
            for scheme in &schemes {
                let evaluation = scheme.rules.evaluate(&subject);
                let review_on = scheme.rules.next_review(&subject);
                let grade = grade_number(evaluation.grade);
                let digest = digest(grade, scheme.version, &evaluation.reasons);
                let previous = subject_grades
                    .iter()
                    .position(|row| *row.scheme == *scheme.name)
                    .map(|index| subject_grades.swap_remove(index));
                let same = previous.as_ref().is_some_and(|previous| previous.digest == digest);
                if same {
                    if previous.as_ref().is_some_and(|previous| previous.review_on != review_on) {
                        changes.reviews.push((code.clone(), scheme.name.clone(), review_on));
                    }
                    continue;
                }
                // The reasons move into the row and their texts beside it: nothing of them is
                // copied (a recompute from no grades stores two million grades' reasons).
                let (stored, texts) = evaluation
                    .reasons
                    .into_iter()
                    .map(|reason| {
                        let Reason { code, text, record_ids, disputed_record_ids } = reason;
                        (StoredReason { code, record_ids, disputed_record_ids }, text)
                    })
                    .unzip();
                changes.changed.push(Change {
                    previous: previous.map(|previous| Previous { grade: previous.grade, tid: previous.tid }),
                    internal: scheme.internal,
                    digest,
                    texts,
                    row: GradeRow {
                        credit_code: code.clone(),
                        scheme: scheme.name.clone(),
                        grade,
                        rule_set_version: scheme.version,
                        reasons: Json(stored),
                        as_of,
                        graded_at: Utc::now(),
                        review_on,
                    },
                });
            }
        }
        let first_grades = changes.write(connection, cause, announce).await?;
        Ok(Regraded {
            subjects: subjects.len(),
            changed: changes.changed.into_iter().map(|change| change.row).collect(),
            first_grades,
        })
    }
}

/// The grade a change replaces: its grade, and where its row lies.
#[derive(Clone, Copy)]
struct Previous {
    grade: i16,
    tid: Tid,
}

struct Change {
    previous: Option<Previous>,
    internal: bool,
    digest: i64,
    /// The texts of `row`'s reasons, in their order, for the event.
    texts: Vec<String>,
    row: GradeRow,
}

#[derive(Default)]
struct Changes {
    changed: Vec<Change>,
    /// Unchanged grades whose next review day moved.
    reviews: Vec<(String, String, Option<NaiveDate>)>,
}

impl Changes {
    /// Store and announce the changes, first grades first; how many were first grades.
    async fn write(
        &mut self,
        connection: &mut PgConnection,
        cause: &str,
        announce: Announce,
    ) -> Result<usize, sqlx::Error> {
        if !self.reviews.is_empty() {
            let mut codes = Vec::with_capacity(self.reviews.len());
            let mut schemes = Vec::with_capacity(self.reviews.len());
            let mut days = Vec::with_capacity(self.reviews.len());
            for (code, scheme, day) in &self.reviews {
                codes.push(code.as_str());
                schemes.push(scheme.as_str());
                days.push(*day);
            }
            sqlx::query(
                "UPDATE grades g SET review_on = u.review_on
                 FROM UNNEST($1::text[], $2::text[], $3::date[]) AS u (credit_code, scheme, review_on)
                 WHERE g.credit_code = u.credit_code AND g.scheme = u.scheme",
            )
            .bind(codes)
            .bind(schemes)
            .bind(days)
            .execute(&mut *connection)
            .await?;
        }
        if self.changed.is_empty() {
            return Ok(0);
        }
        // The event lists the grades in the order they were evaluated, so it is made before the
        // sort below.
        let event = match announce {
            Announce::Each => Event::Each(self.changed.iter().map(Change::event).collect()),
            Announce::OneBatch => Event::Batch(grades_changed(&self.changed)),
        };
        // First grades, then grades that replace one, each in code order (the sort is stable).
        self.changed.sort_by_key(|change| change.previous.is_some());
        let split = self.changed.iter().take_while(|change| change.previous.is_none()).count();
        let (first, replacing) = self.changed.split_at(split);
        // As text, for a `json` column: bound as `Json`, they would be sent as `jsonb` and built
        // into it before being stored.
        let reasons_text = |row: &GradeRow| {
            serde_json::to_string(&row.reasons.0).map_err(|error| sqlx::Error::Encode(Box::new(error)))
        };
        // A first grade is only a row of `grades`: the current grade is the last entry of its
        // subject's history (the `grade_changes` view), and moves into `grade_history`, taking the
        // next id there, when a new grade replaces it — the same statement reads it there (every
        // part of a statement sees the rows as they were before it) and overwrites it here.
        // First grades go in by binary COPY, without a conflict clause (no other regrade can touch
        // their subjects meanwhile, see `regrade_locked`): Postgres then decodes no arrays,
        // materialises no `UNNEST` and casts no `text[]` to `json[]` (its CPU from no grades 11.6 s
        // against 13.6-13.8 s as `INSERT … SELECT FROM UNNEST`).
        if !first.is_empty() {
            let mut copy = copy::BinaryCopy::new(first.len() * 200);
            for change in first {
                let row = &change.row;
                copy.row(9)
                    .text(&row.credit_code)
                    .text(&row.scheme)
                    .int2(row.grade)
                    .int4(row.rule_set_version)
                    .text(&reasons_text(row)?)
                    .date(row.as_of)
                    .optional_date(row.review_on)
                    .int8(change.digest)
                    .text(cause);
            }
            copy::copy_in_binary(
                connection,
                "COPY grades (credit_code, scheme, grade, rule_set_version, reasons, as_of, review_on, digest, cause)
                 FROM STDIN WITH (FORMAT binary)",
                copy.finish(),
            )
            .await?;
        }
        if !replacing.is_empty() {
            let rows = replacing.iter().map(|change| &change.row);
            let codes: Vec<&str> = rows.clone().map(|row| row.credit_code.as_str()).collect();
            let schemes: Vec<&str> = rows.clone().map(|row| row.scheme.as_str()).collect();
            let grades: Vec<i16> = rows.clone().map(|row| row.grade).collect();
            let versions: Vec<i32> = rows.clone().map(|row| row.rule_set_version).collect();
            let reasons = rows.clone().map(reasons_text).collect::<Result<Vec<String>, _>>()?;
            let as_of: Vec<NaiveDate> = rows.clone().map(|row| row.as_of).collect();
            let reviews: Vec<Option<NaiveDate>> = rows.map(|row| row.review_on).collect();
            let digests: Vec<i64> = replacing.iter().map(|change| change.digest).collect();
            let tids: Vec<Tid> =
                replacing.iter().filter_map(|change| change.previous.map(|previous| previous.tid)).collect();
            // Each old row is found where it was read (a TID scan, see `Tid`) and its key checked
            // there as well.
            let rewritten = sqlx::query(
                "WITH fresh AS (
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int4[], $5::text[]::json[],
                         $6::date[], $7::date[], $8::int8[], $10::tid[])
                         AS u (credit_code, scheme, grade, rule_set_version, reasons, as_of, review_on, digest, tid)
                 ), replaced AS (
                     INSERT INTO grade_history (credit_code, scheme, old_grade, grade, rule_set_version, reasons,
                         as_of, graded_at, cause)
                     SELECT g.credit_code, g.scheme, g.old_grade, g.grade, g.rule_set_version, g.reasons, g.as_of,
                         g.graded_at, g.cause
                     FROM grades g JOIN fresh n
                         ON g.ctid = n.tid AND g.credit_code = n.credit_code AND g.scheme = n.scheme
                 )
                 UPDATE grades g SET grade = n.grade, rule_set_version = n.rule_set_version, reasons = n.reasons,
                     as_of = n.as_of, review_on = n.review_on, digest = n.digest, graded_at = now(),
                     old_grade = g.grade, cause = $9
                 FROM fresh n
                 WHERE g.ctid = n.tid AND g.credit_code = n.credit_code AND g.scheme = n.scheme",
            )
            .bind(codes)
            .bind(schemes)
            .bind(grades)
            .bind(versions)
            .bind(reasons)
            .bind(as_of)
            .bind(reviews)
            .bind(digests)
            .bind(cause)
            .bind(&tids)
            .execute(&mut *connection)
            .await?
            .rows_affected();
            // Only a writer that ignored the locks could have moved a row since it was read; were
            // one to, the regrade fails whole rather than losing that grade's change.
            if rewritten != tids.len() as u64 {
                return Err(sqlx::Error::Protocol(format!(
                    "{} of {} grades being replaced were no longer where they were read",
                    tids.len() as u64 - rewritten,
                    tids.len()
                )));
            }
        }
        // A `GradeChanged` each for a single subject's event; one `GradesChanged` for bulk
        // registrations, the sweep and a recompute.
        match event {
            Event::Each(events) => bus::enqueue_batch(connection, PRODUCER, &events).await.map(drop)?,
            Event::Batch(payload) => {
                bus::enqueue_encoded::<GradesChanged>(connection, PRODUCER, "", payload).await.map(drop)?
            }
        }
        Ok(split)
    }
}

/// The announcement of a write's changes.
enum Event {
    Each(Vec<GradeChanged>),
    /// An encoded `GradesChanged`.
    Batch(Vec<u8>),
}

/// The `GradesChanged` of `changes`, encoded straight from them: the same bytes as building a
/// `GradeChanged` per change and encoding them with each reason's text once (a test holds it to
/// that). Built as messages, a recompute's events were a fifth of grading's CPU in a pass from no
/// grades: two owned strings a grade, every reason's code and record ids copied, a length pass
/// and an encoding pass over them, and as many frees.
fn grades_changed(changes: &[Change]) -> Vec<u8> {
    use bus::wire::{element, number, text};
    let mut out = Vec::with_capacity(changes.len() * 160);
    let (mut grade, mut reason) = (Vec::with_capacity(256), Vec::with_capacity(128));
    // A handful of distinct texts: a scan beats hashing two million keys.
    let mut texts: Vec<(&str, i32, &str, &str)> = Vec::new();
    for change in changes {
        let row = &change.row;
        grade.clear();
        text(1, &row.credit_code, &mut grade);
        text(2, &row.scheme, &mut grade);
        number(3, change.previous.map_or(0, |previous| i64::from(previous.grade)), &mut grade);
        number(4, i64::from(row.grade), &mut grade);
        number(5, i64::from(row.rule_set_version), &mut grade);
        for (stored, reason_text) in row.reasons.0.iter().zip(&change.texts) {
            reason.clear();
            text(1, &stored.code, &mut reason);
            for id in &stored.record_ids {
                element(3, id.as_bytes(), &mut reason);
            }
            for id in &stored.disputed_record_ids {
                element(4, id.as_bytes(), &mut reason);
            }
            element(6, &reason, &mut grade);
            let known = texts.iter().any(|&(scheme, version, code, _)| {
                version == row.rule_set_version && code == stored.code && scheme == row.scheme
            });
            if !known {
                texts.push((&row.scheme, row.rule_set_version, &stored.code, reason_text));
            }
        }
        number(7, i64::from(change.internal), &mut grade);
        element(1, &grade, &mut out);
    }
    for (scheme, version, code, reason_text) in texts {
        reason.clear();
        text(1, scheme, &mut reason);
        number(2, i64::from(version), &mut reason);
        text(3, code, &mut reason);
        text(4, reason_text, &mut reason);
        element(2, &reason, &mut out);
    }
    out
}

/// The one event of many changes, each reason's text given once (see `GradesChanged`): what
/// [`grades_changed`] encodes.
#[cfg(test)]
fn texts_once(mut grades: Vec<GradeChanged>) -> GradesChanged {
    use xinyong_proto::events::v1::ReasonText;
    let mut reason_texts: Vec<ReasonText> = Vec::new();
    for grade in &mut grades {
        for reason in &mut grade.reasons {
            let text = std::mem::take(&mut reason.text);
            // A handful of distinct texts: a scan beats hashing two million keys.
            let known =
                reason_texts.iter().any(|known| known.is_for(&grade.scheme, grade.rule_set_version, &reason.code));
            if !known {
                reason_texts.push(ReasonText {
                    scheme: grade.scheme.clone(),
                    rule_set_version: grade.rule_set_version,
                    code: reason.code.clone(),
                    text,
                });
            }
        }
    }
    GradesChanged { grades, reason_texts }
}

impl Change {
    /// The change's own event.
    fn event(&self) -> GradeChanged {
        GradeChanged {
            credit_code: self.row.credit_code.clone(),
            scheme: self.row.scheme.clone(),
            old_grade: self.previous.map_or(0, |previous| i32::from(previous.grade)),
            new_grade: i32::from(self.row.grade),
            rule_set_version: self.row.rule_set_version,
            reasons: self
                .row
                .reasons
                .0
                .iter()
                .zip(&self.texts)
                .map(|(reason, text)| GradeReason {
                    code: reason.code.clone(),
                    text: text.clone(),
                    record_ids: reason.record_ids.clone(),
                    disputed_record_ids: reason.disputed_record_ids.clone(),
                })
                .collect(),
            internal: self.internal,
        }
    }
}

/// Read one stored grade.
pub async fn stored_grade(pool: &PgPool, credit_code: &str, scheme: &str) -> Result<Option<GradeRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {GRADE_COLUMNS} FROM grades WHERE credit_code = $1 AND scheme = $2"))
        .bind(credit_code)
        .bind(scheme)
        .fetch_optional(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_texts_hand_out_the_text_asked_for_and_share_repeats() {
        let mut texts = SharedTexts::default();
        let first = texts.get("91110000000000000A");
        let again = texts.get("91110000000000000A");
        assert!(Arc::ptr_eq(&first, &again), "a repeated code shares its allocation");
        let scheme = texts.get("public_credit");
        // More distinct texts than are kept: each still comes back as asked.
        for index in 0..3 * SharedTexts::KEPT {
            let code = format!("9111000000000{index:05}");
            assert_eq!(&*texts.get(&code), code);
            assert_eq!(&*texts.get("public_credit"), "public_credit");
        }
        assert_eq!(&*scheme, "public_credit");
        assert_eq!(&*texts.get("91110000000000000A"), "91110000000000000A");
    }

    /// A recompute's event is written without building its messages; consumers decode it as the
    /// `GradesChanged` it always was.
    #[test]
    fn a_batch_event_encodes_as_the_messages_would() {
        use prost::Message;
        let reason = |code: &str, ids: &[&str], disputed: &[&str]| StoredReason {
            code: code.to_owned(),
            record_ids: ids.iter().map(|id| id.to_string()).collect(),
            disputed_record_ids: disputed.iter().map(|id| id.to_string()).collect(),
        };
        let change = |code: &str,
                      scheme: &str,
                      version: i32,
                      old: Option<i16>,
                      grade: i16,
                      reasons: Vec<(StoredReason, &str)>| {
            let (reasons, texts): (Vec<StoredReason>, Vec<String>) =
                reasons.into_iter().map(|(reason, text)| (reason, text.to_owned())).unzip();
            Change {
                previous: old.map(|grade| Previous { grade, tid: Tid { block: 0, line: 1 } }),
                internal: scheme == "industry_risk",
                digest: 7,
                texts,
                row: GradeRow {
                    credit_code: code.to_owned(),
                    scheme: scheme.to_owned(),
                    grade,
                    rule_set_version: version,
                    reasons: Json(reasons),
                    as_of: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
                    graded_at: Utc::now(),
                    review_on: None,
                },
            }
        };
        let id = "0190f3a2-7c1e-7000-8000-000000000001";
        let other = "0190f3a2-7c1e-7000-8000-000000000002";
        let changes = vec![
            change(
                "91110108MA01A2B3C4",
                "public_credit",
                1,
                None,
                1,
                vec![(reason("no_dishonesty", &[], &[]), "无失信记录")],
            ),
            change(
                "91110108MA01A2B3C4",
                "district_supervision",
                3,
                Some(2),
                3,
                vec![
                    (reason("general_over_five", &[id, other], &[other]), "一般失信六条以上"),
                    (reason("serious", &[id], &[]), "严重失信"),
                ],
            ),
            // The same code under another version and another scheme: texts of their own.
            change(
                "91110108MA01A2B3C5",
                "public_credit",
                2,
                Some(1),
                4,
                vec![(reason("no_dishonesty", &[""], &[]), "")],
            ),
            change(
                "91110108MA01A2B3C6",
                "industry_risk",
                1,
                Some(4),
                1,
                vec![(reason("no_dishonesty", &[], &[]), "低风险")],
            ),
            change(
                "91110108MA01A2B3C7",
                "public_credit",
                1,
                None,
                1,
                vec![(reason("no_dishonesty", &[], &[]), "无失信记录")],
            ),
            change("91110108MA01A2B3C8", "public_credit", 1, None, 2, vec![]),
        ];
        let messages = texts_once(changes.iter().map(Change::event).collect());
        assert_eq!(messages.reason_texts.len(), 5, "one text per scheme, version and code");
        assert_eq!(grades_changed(&changes), messages.encode_to_vec());
    }

    #[test]
    fn a_seeded_category_is_borrowed_and_any_other_is_kept_as_given() {
        assert!(matches!(category_name("penalty"), Cow::Borrowed("penalty")));
        assert!(
            matches!(category_name("district_pilot_rating"), Cow::Owned(ref name) if name == "district_pilot_rating")
        );
    }
}
