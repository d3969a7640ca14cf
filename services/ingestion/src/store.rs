//! All SQL of ingestion.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;
use xinyong_domain::calendar::day_text;
use xinyong_platform::bus::{self, Announce};
use xinyong_platform::copy::{BinaryCopy, copy_in_binary};
use xinyong_platform::db;
use xinyong_proto::events::v1::{RecordCorrected, RecordFacts, RecordIngested, RecordWithdrawn, RecordsIngested};

use crate::rules::{Category, ValidRecord};

const PRODUCER: &str = "ingestion";

pub const COLUMNS: &str = "record_id, department_id, source_record_id, credit_code, category, nature, decided_on,
    document_number, fields, text, penalty_kind, version, state, disputed, disclosure_rule, published,
    disclosure_until, repair_allowed_from, report_due_on, reporting_delay_working_days, received_at, updated_at,
    change, changed_by, change_reason";

/// A stored record (also the shape of a version's snapshot).
#[derive(Debug, Clone, FromRow, Deserialize)]
pub struct RecordRow {
    pub record_id: Uuid,
    pub department_id: String,
    pub source_record_id: String,
    pub credit_code: String,
    pub category: String,
    pub nature: i16,
    pub decided_on: NaiveDate,
    pub document_number: String,
    #[sqlx(json)]
    pub fields: BTreeMap<String, String>,
    pub text: String,
    pub penalty_kind: i16,
    pub version: i32,
    pub state: i16,
    pub disputed: bool,
    pub disclosure_rule: String,
    pub published: bool,
    pub disclosure_until: Option<NaiveDate>,
    pub repair_allowed_from: Option<NaiveDate>,
    pub report_due_on: NaiveDate,
    pub reporting_delay_working_days: i32,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub change: String,
    pub changed_by: String,
    pub change_reason: String,
}

/// A validated record with what the platform derives for it.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub record_id: Uuid,
    pub valid: ValidRecord,
    pub disclosure_rule: &'static str,
    pub published: bool,
    pub disclosure_until: Option<NaiveDate>,
    pub repair_allowed_from: Option<NaiveDate>,
    pub report_due_on: NaiveDate,
    pub reporting_delay_working_days: i32,
    /// The department's signature, checked, when it signed the record.
    pub signed: Option<crate::signatures::Signed>,
}

impl NewRecord {
    fn ingested_event(&self, department_id: &str) -> RecordIngested {
        let facts = self.facts(1);
        RecordIngested {
            credit_code: self.valid.credit_code.clone(),
            record_id: self.record_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_owned(),
            department_id: department_id.to_owned(),
            category: facts.category.clone(),
            nature: self.valid.nature as i32,
            decided_on: facts.decided_on.clone(),
            facts: Some(facts),
        }
    }

    /// What grading needs of this record as version `version`.
    fn facts(&self, version: i32) -> RecordFacts {
        RecordFacts {
            category: self.valid.category.clone(),
            nature: self.valid.nature as i32,
            decided_on: day_text(self.valid.decided_on),
            penalty_kind: self.valid.penalty_kind as i32,
            published: self.published,
            disclosure_until: self.disclosure_until.map(day_text).unwrap_or_default(),
            removed_on: self.valid.fields.get("removed_on").cloned().unwrap_or_default(),
            version,
        }
    }
}

/// What submitting one record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted(Uuid),
    /// The same payload under the same source id, stored before.
    Duplicate(Uuid),
    /// Another payload under the same source id: a correction must go through CorrectRecord.
    Conflict(Uuid),
}

/// One superseded version.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub version: i32,
    pub change: String,
    pub changed_by: String,
    pub changed_at: DateTime<Utc>,
    pub reason: String,
    pub snapshot: sqlx::types::Json<RecordRow>,
}

/// Filters of a record list.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub credit_code: String,
    pub categories: Vec<String>,
    pub include_expired: bool,
    pub include_withdrawn: bool,
    pub include_history: bool,
    pub decided_from: Option<NaiveDate>,
    pub decided_to: Option<NaiveDate>,
    pub today: NaiveDate,
    /// Keyset: after (decided_on, record_id) in (decided_on desc, record_id) order.
    pub after: Option<(NaiveDate, Uuid)>,
    pub limit: i64,
}

/// Timeliness of one department in one category.
#[derive(Debug, Clone, FromRow)]
pub struct TimelinessRow {
    pub department_id: String,
    pub category: String,
    pub on_time: i64,
    pub late: i64,
    pub delay_sum: i64,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record `{0}` not found")]
    NotFound(String),
    #[error("record `{record_id}` was reported by {owner}; only that department may change it")]
    NotOwner { record_id: Uuid, owner: String },
    #[error("record `{0}` is withdrawn; it can no longer change")]
    Withdrawn(Uuid),
    #[error("record `{0}` is repaired (信用修复); it is no longer published or counted and can no longer change")]
    Repaired(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub async fn catalogue(&self) -> Result<HashMap<String, Category>, StoreError> {
        let categories: Vec<Category> = sqlx::query_as(
            "SELECT code, title, required_fields, optional_fields, default_nature, deadline_working_days, needs_penalty_kind
             FROM categories ORDER BY code",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(categories.into_iter().map(|category| (category.code.clone(), category)).collect())
    }

    /// Store records of one department in one transaction. Outcomes come in the order of `rows`.
    /// Two batches racing on the same source ids can deadlock; the loser runs again.
    pub async fn submit_batch(
        &self,
        rows: &[&NewRecord],
        department_id: &str,
        announce: Announce,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        let mut attempt = 0;
        loop {
            let mut transaction = self.pool.begin().await?;
            let result = match submit_in(&mut transaction, rows, department_id, announce).await {
                Ok(outcomes) => transaction.commit().await.map(|()| outcomes).map_err(StoreError::from),
                Err(error) => Err(error),
            };
            match result {
                Err(StoreError::Database(error)) if attempt < 3 && db::is_retryable(&error) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Objections' word on a record: marked disputed while an objection about it is open.
    pub async fn set_disputed(
        connection: &mut PgConnection,
        record_id: Uuid,
        disputed: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE records SET disputed = $2 WHERE record_id = $1")
            .bind(record_id)
            .bind(disputed)
            .execute(connection)
            .await
            .map(drop)
    }

    /// Objections approved a repair: the record stops being published and counted, as a new
    /// version whose trace names the repair. A record no longer in force stays as it is.
    pub async fn mark_repaired(
        connection: &mut PgConnection,
        record_id: Uuid,
        repair_id: &str,
    ) -> Result<(), sqlx::Error> {
        // Locked first, as a correction locks it: the snapshot and the new version agree.
        sqlx::query("SELECT 1 FROM records WHERE record_id = $1 FOR UPDATE")
            .bind(record_id)
            .execute(&mut *connection)
            .await?;
        sqlx::query(
            "INSERT INTO record_versions (record_id, version, change, changed_by, changed_at, reason, snapshot)
             SELECT record_id, version, change, changed_by, updated_at, change_reason, to_jsonb(r) - 'payload_digest'
             FROM records r WHERE record_id = $1 AND state = 1",
        )
        .bind(record_id)
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "UPDATE records SET state = $2, published = false, version = version + 1, change = 'repaired',
                 changed_by = 'objections', change_reason = $3, updated_at = now()
             WHERE record_id = $1 AND state = 1",
        )
        .bind(record_id)
        .bind(xinyong_proto::ingestion::v1::RecordState::Repaired as i16)
        .bind(format!("repair {repair_id} approved"))
        .execute(connection)
        .await
        .map(drop)
    }

    /// The department's signatures over a record's versions that it signed, by version.
    pub async fn signatures(&self, record_id: Uuid) -> Result<Vec<(i32, crate::signatures::Signed)>, StoreError> {
        let rows: Vec<VersionSigned> = sqlx::query_as(
            "SELECT s.version, s.certificate_sha256, c.certificate, s.signed_input, s.signature
             FROM record_signatures s JOIN signers c USING (certificate_sha256) WHERE s.record_id = $1",
        )
        .bind(record_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.version, row.signed)).collect())
    }

    pub async fn get(&self, record_id: Uuid) -> Result<RecordRow, StoreError> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM records WHERE record_id = $1"))
            .bind(record_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(record_id.to_string()))
    }

    /// Superseded versions, oldest first (the current one is the record itself).
    pub async fn versions(&self, record_id: Uuid) -> Result<Vec<VersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT version, change, changed_by, changed_at, reason, snapshot FROM record_versions
             WHERE record_id = $1 ORDER BY version",
        )
        .bind(record_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replace a record's content (a correction) or withdraw it, keeping the version it replaces.
    pub async fn change(
        &self,
        record_id: Uuid,
        department_id: &str,
        reason: &str,
        replacement: Option<&NewRecord>,
    ) -> Result<RecordRow, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let current: RecordRow =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM records WHERE record_id = $1 FOR UPDATE"))
                .bind(record_id)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| StoreError::NotFound(record_id.to_string()))?;
        if current.department_id != department_id {
            return Err(StoreError::NotOwner { record_id, owner: current.department_id });
        }
        if current.state == xinyong_proto::ingestion::v1::RecordState::Withdrawn as i16 {
            return Err(StoreError::Withdrawn(record_id));
        }
        if current.state == xinyong_proto::ingestion::v1::RecordState::Repaired as i16 {
            return Err(StoreError::Repaired(record_id));
        }
        sqlx::query(
            "INSERT INTO record_versions (record_id, version, change, changed_by, changed_at, reason, snapshot)
             SELECT record_id, version, change, changed_by, updated_at, change_reason, to_jsonb(r) - 'payload_digest'
             FROM records r WHERE record_id = $1",
        )
        .bind(record_id)
        .execute(&mut *transaction)
        .await?;
        let updated: RecordRow = match replacement {
            Some(new) => {
                let updated = sqlx::query_as(&format!(
                    "UPDATE records SET nature = $2, decided_on = $3, document_number = $4, fields = $5, text = $6,
                         penalty_kind = $7, payload_digest = $8, disclosure_rule = $9, published = $10,
                         disclosure_until = $11, repair_allowed_from = $12, version = version + 1,
                         change = 'corrected', changed_by = $13, change_reason = $14, updated_at = now()
                     WHERE record_id = $1 RETURNING {COLUMNS}"
                ))
                .bind(record_id)
                .bind(new.valid.nature as i16)
                .bind(new.valid.decided_on)
                .bind(&new.valid.document_number)
                .bind(sqlx::types::Json(&new.valid.fields))
                .bind(&new.valid.text)
                .bind(new.valid.penalty_kind as i16)
                .bind(&new.valid.digest)
                .bind(new.disclosure_rule)
                .bind(new.published)
                .bind(new.disclosure_until)
                .bind(new.repair_allowed_from)
                .bind(department_id)
                .bind(reason)
                .fetch_one(&mut *transaction)
                .await?;
                if let Some(signed) = &new.signed {
                    keep_signed_versions(&mut transaction, &[(record_id, current.version + 1, signed)]).await?;
                }
                let event = RecordCorrected {
                    credit_code: current.credit_code.clone(),
                    record_id: record_id.to_string(),
                    version: current.version + 1,
                    reason: reason.to_owned(),
                    facts: Some(new.facts(current.version + 1)),
                };
                bus::enqueue(&mut transaction, PRODUCER, &event).await?;
                updated
            }
            None => {
                let updated = sqlx::query_as(&format!(
                    "UPDATE records SET state = $2, version = version + 1, change = 'withdrawn', changed_by = $3,
                         change_reason = $4, updated_at = now()
                     WHERE record_id = $1 RETURNING {COLUMNS}"
                ))
                .bind(record_id)
                .bind(xinyong_proto::ingestion::v1::RecordState::Withdrawn as i16)
                .bind(department_id)
                .bind(reason)
                .fetch_one(&mut *transaction)
                .await?;
                let event = RecordWithdrawn {
                    credit_code: current.credit_code.clone(),
                    record_id: record_id.to_string(),
                    reason: reason.to_owned(),
                    version: current.version + 1,
                };
                bus::enqueue(&mut transaction, PRODUCER, &event).await?;
                updated
            }
        };
        transaction.commit().await?;
        Ok(updated)
    }

    /// A subject's records, newest decision first.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<RecordRow>, StoreError> {
        let (after_date, after_id) = query.after.map_or((None, None), |(date, id)| (Some(date), Some(id)));
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM records
             WHERE credit_code = $1
               AND (cardinality($2::text[]) = 0 OR category = ANY($2))
               -- withdrawn (2) and repaired (3) records only on request
               AND ($3 OR state = 1)
               -- a dishonesty record is shown while its window lasts; never-published ones never
               AND ($4 OR (published AND (disclosure_until IS NULL OR disclosure_until > $5)))
               -- records without a window (licences, rewards) of past calendar years are history
               AND ($6 OR disclosure_until IS NOT NULL OR decided_on >= date_trunc('year', $5::date)::date)
               AND ($7::date IS NULL OR decided_on >= $7)
               AND ($8::date IS NULL OR decided_on <= $8)
               AND ($9::date IS NULL OR decided_on < $9 OR (decided_on = $9 AND record_id > $10))
             ORDER BY decided_on DESC, record_id
             LIMIT $11"
        ))
        .bind(&query.credit_code)
        .bind(&query.categories)
        .bind(query.include_withdrawn)
        .bind(query.include_expired)
        .bind(query.today)
        .bind(query.include_history)
        .bind(query.decided_from)
        .bind(query.decided_to)
        .bind(after_date)
        .bind(after_id)
        .bind(query.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// On-time and late records per department and category for decisions in a period.
    pub async fn timeliness(
        &self,
        department_id: Option<&str>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<TimelinessRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT department_id, category,
                    count(*) FILTER (WHERE (received_at AT TIME ZONE 'Asia/Shanghai')::date <= report_due_on) AS on_time,
                    count(*) FILTER (WHERE (received_at AT TIME ZONE 'Asia/Shanghai')::date > report_due_on) AS late,
                    coalesce(sum(reporting_delay_working_days), 0)::bigint AS delay_sum
             FROM records
             WHERE ($1::text IS NULL OR department_id = $1)
               AND ($2::date IS NULL OR decided_on >= $2)
               AND ($3::date IS NULL OR decided_on <= $3)
             GROUP BY department_id, category
             ORDER BY department_id, category",
        )
        .bind(department_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The fresh rows of a batch, by binary COPY (see `xinyong_platform::copy`): Postgres parses no
/// text for their ids, days, numbers and digests.
async fn copy_records(
    connection: &mut PgConnection,
    rows: &[&NewRecord],
    department_id: &str,
) -> Result<(), sqlx::Error> {
    let mut data = BinaryCopy::new(rows.len() * 512);
    for row in rows {
        data.row(19)
            .uuid(row.record_id)
            .text(department_id)
            .text(&row.valid.source_record_id)
            .text(&row.valid.credit_code)
            .text(&row.valid.category)
            .int2(row.valid.nature as i16)
            .date(row.valid.decided_on)
            .text(&row.valid.document_number)
            .jsonb_of(&row.valid.fields)
            .map_err(|error| sqlx::Error::Encode(Box::new(error)))?
            .text(&row.valid.text)
            .int2(row.valid.penalty_kind as i16)
            .bytes(&row.valid.digest)
            .text(row.disclosure_rule)
            .boolean(row.published)
            .optional_date(row.disclosure_until)
            .optional_date(row.repair_allowed_from)
            .date(row.report_due_on)
            .int4(row.reporting_delay_working_days)
            .text(department_id);
    }
    copy_in_binary(connection, "COPY records (record_id, department_id, source_record_id, credit_code, category, nature, decided_on,
                 document_number, fields, text, penalty_kind, payload_digest, disclosure_rule, published, disclosure_until,
                 repair_allowed_from, report_due_on, reporting_delay_working_days, changed_by) FROM STDIN WITH (FORMAT binary)", data.finish()).await?;
    Ok(())
}

/// Insert rows, skipping those whose source id is taken (a racing writer); returns the source ids
/// inserted.
async fn insert_records(
    connection: &mut PgConnection,
    rows: &[&NewRecord],
    department_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    macro_rules! column {
        ($field:expr) => {
            rows.iter().map($field).collect::<Vec<_>>()
        };
    }
    let fields: Vec<sqlx::types::Json<&BTreeMap<String, String>>> =
        rows.iter().map(|row| sqlx::types::Json(&row.valid.fields)).collect();
    let query = sqlx::query_scalar::<_, String>(
        "INSERT INTO records (record_id, department_id, source_record_id, credit_code, category, nature, decided_on,
             document_number, fields, text, penalty_kind, payload_digest, disclosure_rule, published, disclosure_until,
             repair_allowed_from, report_due_on, reporting_delay_working_days, changed_by)
         SELECT id, $17, source, code, category, nature, decided, document, fields, text, penalty, digest, rule, published,
             until, repair, due, delay, $17
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::date[], $7::text[], $8::jsonb[],
             $9::text[], $10::smallint[], $11::bytea[], $12::text[], $13::bool[], $14::date[], $15::date[], $16::date[], $18::int[])
             AS t(id, source, code, category, nature, decided, document, fields, text, penalty, digest, rule, published,
                  until, repair, due, delay)
         ON CONFLICT (department_id, source_record_id) DO NOTHING RETURNING source_record_id",
    )
    .bind(column!(|row| row.record_id))
        .bind(column!(|row| row.valid.source_record_id.as_str()))
        .bind(column!(|row| row.valid.credit_code.as_str()))
        .bind(column!(|row| row.valid.category.as_str()))
        .bind(column!(|row| row.valid.nature as i16))
        .bind(column!(|row| row.valid.decided_on))
        .bind(column!(|row| row.valid.document_number.as_str()))
        .bind(fields)
        .bind(column!(|row| row.valid.text.as_str()))
        .bind(column!(|row| row.valid.penalty_kind as i16))
        .bind(column!(|row| row.valid.digest.as_slice()))
        .bind(column!(|row| row.disclosure_rule))
        .bind(column!(|row| row.published))
        .bind(column!(|row| row.disclosure_until))
        .bind(column!(|row| row.repair_allowed_from))
        .bind(column!(|row| row.report_due_on))
        .bind(department_id)
        .bind(column!(|row| row.reporting_delay_working_days));
    query.fetch_all(&mut *connection).await
}

/// Announce the records just accepted, in the same transaction: a `RecordIngested` each
/// (SubmitRecord) or one `RecordsIngested` (SubmitRecords).
async fn announce_accepted(
    connection: &mut PgConnection,
    accepted: &[&NewRecord],
    department_id: &str,
    how: Announce,
) -> Result<(), StoreError> {
    if accepted.is_empty() {
        return Ok(());
    }
    keep_signatures(connection, accepted).await?;
    match how {
        Announce::OneBatch => {
            let payload = records_ingested(accepted, department_id);
            bus::enqueue_encoded::<RecordsIngested>(connection, PRODUCER, "", payload).await?;
        }
        Announce::Each => {
            let events: Vec<RecordIngested> = accepted.iter().map(|row| row.ingested_event(department_id)).collect();
            bus::announce(connection, PRODUCER, how, events, |records| RecordsIngested { records }).await?;
        }
    }
    Ok(())
}

/// The signatures of the accepted records that were signed, as their first versions.
async fn keep_signatures(connection: &mut PgConnection, accepted: &[&NewRecord]) -> Result<(), StoreError> {
    let signed: Vec<(Uuid, i32, &crate::signatures::Signed)> =
        accepted.iter().filter_map(|row| row.signed.as_ref().map(|signed| (row.record_id, 1, signed))).collect();
    keep_signed_versions(connection, &signed).await
}

/// Signatures of record versions, with the certificates they were checked against (each kept
/// once): a batch's first versions, or a signed correction.
async fn keep_signed_versions(
    connection: &mut PgConnection,
    signed: &[(Uuid, i32, &crate::signatures::Signed)],
) -> Result<(), StoreError> {
    if signed.is_empty() {
        return Ok(());
    }
    let (fingerprints, certificates): (Vec<&[u8]>, Vec<&[u8]>) = signed
        .iter()
        .map(|(_, _, signed)| (signed.certificate_sha256.as_slice(), signed.certificate.as_slice()))
        .unzip();
    sqlx::query(
        "INSERT INTO signers (certificate_sha256, certificate) SELECT * FROM UNNEST($1::bytea[], $2::bytea[])
         ON CONFLICT (certificate_sha256) DO NOTHING",
    )
    .bind(&fingerprints)
    .bind(certificates)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO record_signatures (record_id, version, certificate_sha256, signed_input, signature)
         SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::bytea[], $4::bytea[], $5::bytea[])",
    )
    .bind(signed.iter().map(|(id, _, _)| *id).collect::<Vec<_>>())
    .bind(signed.iter().map(|(_, version, _)| *version).collect::<Vec<_>>())
    .bind(&fingerprints)
    .bind(signed.iter().map(|(_, _, signed)| signed.signed_input.as_slice()).collect::<Vec<_>>())
    .bind(signed.iter().map(|(_, _, signed)| signed.signature.as_slice()).collect::<Vec<_>>())
    .execute(connection)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct VersionSigned {
    version: i32,
    #[sqlx(flatten)]
    signed: crate::signatures::Signed,
}

/// The `RecordsIngested` of `rows`, encoded straight from them: the same bytes as building a
/// `RecordIngested` per row and encoding them (a test holds it to that), without the nine owned
/// strings each record took first, on the path of every row of a bulk load.
fn records_ingested(rows: &[&NewRecord], department_id: &str) -> Vec<u8> {
    use bus::wire::{element, number, text};
    let mut out = Vec::with_capacity(rows.len() * 200);
    let (mut record, mut facts) = (Vec::with_capacity(200), Vec::with_capacity(80));
    let mut id = Uuid::encode_buffer();
    for row in rows {
        let valid = &row.valid;
        let decided_on = day_text(valid.decided_on);
        facts.clear();
        text(1, &valid.category, &mut facts);
        number(2, valid.nature as i64, &mut facts);
        text(3, &decided_on, &mut facts);
        number(4, valid.penalty_kind as i64, &mut facts);
        number(5, i64::from(row.published), &mut facts);
        text(6, &row.disclosure_until.map(day_text).unwrap_or_default(), &mut facts);
        text(7, valid.fields.get("removed_on").map_or("", String::as_str), &mut facts);
        number(8, 1, &mut facts);
        record.clear();
        text(1, &valid.credit_code, &mut record);
        text(2, row.record_id.hyphenated().encode_lower(&mut id), &mut record);
        text(3, department_id, &mut record);
        text(4, &valid.category, &mut record);
        number(5, valid.nature as i64, &mut record);
        text(6, &decided_on, &mut record);
        element(7, &facts, &mut record);
        element(1, &record, &mut out);
    }
    out
}

/// Store records inside a transaction the caller holds (a consumer's, for records that other
/// services' events file).
pub async fn submit_on(
    connection: &mut PgConnection,
    rows: &[&NewRecord],
    department_id: &str,
) -> Result<Vec<SubmitOutcome>, StoreError> {
    submit_in(connection, rows, department_id, Announce::Each).await
}

async fn submit_in(
    connection: &mut PgConnection,
    rows: &[&NewRecord],
    department_id: &str,
    announce: Announce,
) -> Result<Vec<SubmitOutcome>, StoreError> {
    // A bulk load of records not seen before is the common case: COPY the whole batch without
    // first asking which source ids exist. A resent or overlapping batch fails the COPY whole at its
    // first clash and takes the careful path below in the same transaction.
    if announce == Announce::OneBatch && !rows.is_empty() {
        let mut distinct = HashSet::with_capacity(rows.len());
        if rows.iter().all(|row| distinct.insert(row.valid.source_record_id.as_str())) {
            db::begin_attempt(connection).await?;
            let copied = copy_records(connection, rows, department_id).await;
            if db::settle_attempt(connection, copied).await? {
                announce_accepted(connection, rows, department_id, announce).await?;
                return Ok(rows.iter().map(|row| SubmitOutcome::Accepted(row.record_id)).collect());
            }
        }
    }

    let sources: Vec<&str> = rows.iter().map(|row| row.valid.source_record_id.as_str()).collect();
    let existing: Vec<(String, Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT source_record_id, record_id, payload_digest FROM records WHERE department_id = $1 AND source_record_id = ANY($2)",
    )
    .bind(department_id)
    .bind(&sources)
    .fetch_all(&mut *connection)
    .await?;
    let mut known: HashMap<String, (Uuid, Vec<u8>)> =
        existing.into_iter().map(|(source, id, digest)| (source, (id, digest))).collect();

    let mut seen = HashSet::new();
    let fresh: Vec<&NewRecord> = rows
        .iter()
        .copied()
        .filter(|row| {
            !known.contains_key(&row.valid.source_record_id) && seen.insert(row.valid.source_record_id.as_str())
        })
        .collect();
    // COPY when every source id is new (far cheaper per row than INSERT); the careful INSERT when a
    // racing writer got there first.
    let inserted: HashSet<String> = if fresh.is_empty() {
        HashSet::new()
    } else {
        db::begin_attempt(connection).await?;
        let copied = copy_records(connection, &fresh, department_id).await;
        if db::settle_attempt(connection, copied).await? {
            fresh.iter().map(|row| row.valid.source_record_id.clone()).collect()
        } else {
            let inserted: HashSet<String> =
                insert_records(connection, &fresh, department_id).await?.into_iter().collect();
            // What a racing writer stored is compared like anything stored before.
            let raced: Vec<&str> = fresh
                .iter()
                .map(|row| row.valid.source_record_id.as_str())
                .filter(|source| !inserted.contains(*source))
                .collect();
            let stored: Vec<(String, Uuid, Vec<u8>)> = sqlx::query_as(
                "SELECT source_record_id, record_id, payload_digest FROM records WHERE department_id = $1 AND source_record_id = ANY($2)",
            )
            .bind(department_id)
            .bind(&raced)
            .fetch_all(&mut *connection)
            .await?;
            known.extend(stored.into_iter().map(|(source, id, digest)| (source, (id, digest))));
            inserted
        }
    };

    let accepted: Vec<&NewRecord> =
        fresh.iter().copied().filter(|row| inserted.contains(&row.valid.source_record_id)).collect();
    announce_accepted(connection, &accepted, department_id, announce).await?;

    let mut firsts: HashMap<&str, &NewRecord> = HashMap::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows.iter().copied() {
        let source = row.valid.source_record_id.as_str();
        if inserted.contains(source) && !firsts.contains_key(source) {
            firsts.insert(source, row);
            outcomes.push(SubmitOutcome::Accepted(row.record_id));
            continue;
        }
        let (record_id, digest) = match (firsts.get(source), known.get(source)) {
            (Some(first), _) => (first.record_id, first.valid.digest.as_slice()),
            (None, Some((record_id, digest))) => (*record_id, digest.as_slice()),
            (None, None) => return Err(StoreError::NotFound(source.to_owned())),
        };
        outcomes.push(if digest == row.valid.digest {
            SubmitOutcome::Duplicate(record_id)
        } else {
            SubmitOutcome::Conflict(record_id)
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use xinyong_proto::common::v1::Nature;
    use xinyong_proto::ingestion::v1::PenaltyKind;

    use super::*;

    fn record(source: &str, nature: Nature, penalty_kind: PenaltyKind, fields: &[(&str, &str)]) -> NewRecord {
        NewRecord {
            record_id: Uuid::now_v7(),
            valid: ValidRecord {
                credit_code: "91110000600037341L".to_owned(),
                source_record_id: source.to_owned(),
                category: "penalty".to_owned(),
                nature,
                decided_on: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
                document_number: "京海市监罚〔2026〕12号".to_owned(),
                fields: fields.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect(),
                text: String::new(),
                penalty_kind,
                digest: vec![7; 32],
            },
            disclosure_rule: "gov-2025-22",
            published: nature != Nature::Minor,
            disclosure_until: (nature != Nature::Positive).then(|| NaiveDate::from_ymd_opt(2027, 3, 2).unwrap()),
            repair_allowed_from: None,
            report_due_on: NaiveDate::from_ymd_opt(2026, 3, 11).unwrap(),
            reporting_delay_working_days: 3,
            signed: None,
        }
    }

    #[test]
    fn a_batch_event_encoded_from_the_rows_is_the_message_built_and_encoded() {
        let rows = [
            record("a", Nature::GeneralDishonesty, PenaltyKind::Fine, &[("content", "罚款5000元")]),
            record("b", Nature::SeriousDishonesty, PenaltyKind::Unspecified, &[("removed_on", "2026-06-01")]),
            record("c", Nature::Minor, PenaltyKind::Warning, &[]),
            record("d", Nature::Positive, PenaltyKind::Unspecified, &[]),
        ];
        let borrowed: Vec<&NewRecord> = rows.iter().collect();
        let built = RecordsIngested { records: rows.iter().map(|row| row.ingested_event("samr-110108")).collect() };
        assert_eq!(records_ingested(&borrowed, "samr-110108"), built.encode_to_vec());
        assert_eq!(records_ingested(&[], "samr-110108"), RecordsIngested::default().encode_to_vec());
    }
}
