//! The SQL of objections and repairs, and the events written beside each change.
//!
//! A record stays marked disputed while any objection about it is open. Filing and answering take
//! a transaction-scoped advisory lock on the record, so that two objections about one record,
//! filed or answered at once, agree on whether theirs was the first to open or the last to close,
//! and exactly one `RecordDisputeChanged` says so.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;
use xinyong_platform::bus;
use xinyong_proto::events::v1::{RecordDisputeChanged, RecordRepaired};

use crate::PRODUCER;

/// `objections.v1.ObjectionStatus` and `RepairStatus` as stored.
pub const OPEN: i16 = 1;
pub const UPHELD: i16 = 2;
pub const REJECTED: i16 = 3;
pub const PENDING: i16 = 1;
pub const APPROVED: i16 = 2;
pub const REFUSED: i16 = 3;

const OBJECTION_COLUMNS: &str = "objection_id, credit_code, record_id, record_version, ground, statement, filed_by,
    source_objection_id, department_id, status, answer_due_on, answer, answered_by, filed_at, answered_at";

const REPAIR_COLUMNS: &str = "repair_id, credit_code, record_id, department_id, commitment, evidence, applied_by,
    source_repair_id, status, decision, decided_by, applied_at, decided_at";

#[derive(Debug, Clone, FromRow)]
pub struct ObjectionRow {
    pub objection_id: Uuid,
    pub credit_code: String,
    pub record_id: Uuid,
    pub record_version: i32,
    pub ground: i16,
    pub statement: String,
    pub filed_by: String,
    pub source_objection_id: String,
    pub department_id: String,
    pub status: i16,
    pub answer_due_on: NaiveDate,
    pub answer: String,
    pub answered_by: String,
    pub filed_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct RepairRow {
    pub repair_id: Uuid,
    pub credit_code: String,
    pub record_id: Uuid,
    pub department_id: String,
    pub commitment: String,
    pub evidence: Vec<String>,
    pub applied_by: String,
    pub source_repair_id: String,
    pub status: i16,
    pub decision: String,
    pub decided_by: String,
    pub applied_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A new objection, checked against its record.
pub struct NewObjection<'a> {
    pub credit_code: &'a str,
    pub record_id: Uuid,
    pub record_version: i32,
    pub ground: i16,
    pub statement: &'a str,
    pub filed_by: &'a str,
    pub source_objection_id: &'a str,
    pub department_id: &'a str,
    pub answer_due_on: NaiveDate,
}

/// A new repair application, checked against its record.
pub struct NewRepair<'a> {
    pub credit_code: &'a str,
    pub record_id: Uuid,
    pub department_id: &'a str,
    pub commitment: &'a str,
    pub evidence: &'a [String],
    pub applied_by: &'a str,
    pub source_repair_id: &'a str,
}

/// What a list may show and which page.
pub struct Listing<'a> {
    pub credit_code: Option<&'a str>,
    /// The caller's department.
    pub caller: &'a str,
    /// Only those the caller answers (objections) or decides (repairs).
    pub own_only: bool,
    /// The caller may see everyone's, not only those it filed or must act on.
    pub sees_all: bool,
    pub statuses: &'a [i16],
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Why an application could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum RepairConflict {
    #[error("repair {0} of this record is already under decision")]
    Pending(Uuid),
    #[error("the record has been repaired already (repair {0})")]
    Repaired(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// Serialises the objections of one record within the transaction.
async fn lock_record(connection: &mut PgConnection, record_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(record_id)
        .execute(connection)
        .await
        .map(drop)
}

async fn open_objections(connection: &mut PgConnection, record_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM objections WHERE record_id = $1 AND status = 1")
        .bind(record_id)
        .fetch_one(connection)
        .await
}

async fn announce_dispute(
    connection: &mut PgConnection,
    row: &ObjectionRow,
    disputed: bool,
) -> Result<(), sqlx::Error> {
    let event = RecordDisputeChanged {
        credit_code: row.credit_code.clone(),
        record_id: row.record_id.to_string(),
        objection_id: row.objection_id.to_string(),
        disputed,
    };
    bus::enqueue(connection, PRODUCER, &event).await.map(drop)
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub async fn objection(&self, objection_id: Uuid) -> Result<Option<ObjectionRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {OBJECTION_COLUMNS} FROM objections WHERE objection_id = $1"))
            .bind(objection_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The objection `filed_by` filed under its own id `source`, if any: a retry's.
    pub async fn objection_by_source(&self, filed_by: &str, source: &str) -> Result<Option<ObjectionRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {OBJECTION_COLUMNS} FROM objections WHERE filed_by = $1 AND source_objection_id = $2"
        ))
        .bind(filed_by)
        .bind(source)
        .fetch_optional(&self.pool)
        .await
    }

    /// Store a new objection and mark its record disputed, unless another objection has it marked
    /// already. `None` when the filer's id was taken meanwhile (a concurrent retry): read that one.
    pub async fn file(&self, new: &NewObjection<'_>) -> Result<Option<ObjectionRow>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        lock_record(&mut transaction, new.record_id).await?;
        let already_disputed = open_objections(&mut transaction, new.record_id).await? > 0;
        let row: Option<ObjectionRow> = sqlx::query_as(&format!(
            "INSERT INTO objections (objection_id, credit_code, record_id, record_version, ground, statement, filed_by,
                 source_objection_id, department_id, answer_due_on)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (filed_by, source_objection_id) DO NOTHING
             RETURNING {OBJECTION_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new.credit_code)
        .bind(new.record_id)
        .bind(new.record_version)
        .bind(new.ground)
        .bind(new.statement)
        .bind(new.filed_by)
        .bind(new.source_objection_id)
        .bind(new.department_id)
        .bind(new.answer_due_on)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = &row
            && !already_disputed
        {
            announce_dispute(&mut transaction, row, true).await?;
        }
        transaction.commit().await?;
        Ok(row)
    }

    /// Answer an open objection; the record stops being disputed when no other objection about it
    /// is open. `None` when it was not open (answered meanwhile).
    pub async fn answer(
        &self,
        objection: &ObjectionRow,
        status: i16,
        answer: &str,
        answered_by: &str,
    ) -> Result<Option<ObjectionRow>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        lock_record(&mut transaction, objection.record_id).await?;
        let row: Option<ObjectionRow> = sqlx::query_as(&format!(
            "UPDATE objections SET status = $2, answer = $3, answered_by = $4, answered_at = now()
             WHERE objection_id = $1 AND status = 1
             RETURNING {OBJECTION_COLUMNS}"
        ))
        .bind(objection.objection_id)
        .bind(status)
        .bind(answer)
        .bind(answered_by)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = &row
            && open_objections(&mut transaction, row.record_id).await? == 0
        {
            announce_dispute(&mut transaction, row, false).await?;
        }
        transaction.commit().await?;
        Ok(row)
    }

    pub async fn objections(&self, listing: &Listing<'_>) -> Result<Vec<ObjectionRow>, sqlx::Error> {
        self.listed(OBJECTION_COLUMNS, "objections", "objection_id", "filed_by", listing).await
    }

    /// A page of `table`: the caller's own (it acts on them, or `party` is the caller), or all
    /// when it sees all; ids are UUIDv7, so pages run in filing order.
    async fn listed<T>(
        &self,
        columns: &str,
        table: &str,
        id: &str,
        party: &str,
        listing: &Listing<'_>,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        sqlx::query_as(&format!(
            "SELECT {columns} FROM {table}
             WHERE ($1::text IS NULL OR credit_code = $1)
               AND (NOT $2 OR department_id = $3)
               AND ($4 OR department_id = $3 OR {party} = $3)
               AND (cardinality($5::int2[]) = 0 OR status = ANY($5))
               AND ($6::uuid IS NULL OR {id} > $6)
             ORDER BY {id} LIMIT $7"
        ))
        .bind(listing.credit_code)
        .bind(listing.own_only)
        .bind(listing.caller)
        .bind(listing.sees_all)
        .bind(listing.statuses)
        .bind(listing.after)
        .bind(listing.limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn repair(&self, repair_id: Uuid) -> Result<Option<RepairRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {REPAIR_COLUMNS} FROM repairs WHERE repair_id = $1"))
            .bind(repair_id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn repair_by_source(&self, applied_by: &str, source: &str) -> Result<Option<RepairRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {REPAIR_COLUMNS} FROM repairs WHERE applied_by = $1 AND source_repair_id = $2"))
            .bind(applied_by)
            .bind(source)
            .fetch_optional(&self.pool)
            .await
    }

    /// Store a new application. `Ok(None)` when the applicant's id was taken meanwhile (a
    /// concurrent retry).
    pub async fn apply(&self, new: &NewRepair<'_>) -> Result<Option<RepairRow>, RepairConflict> {
        let inserted = sqlx::query_as(&format!(
            "INSERT INTO repairs (repair_id, credit_code, record_id, department_id, commitment, evidence, applied_by,
                 source_repair_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (applied_by, source_repair_id) DO NOTHING
             RETURNING {REPAIR_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new.credit_code)
        .bind(new.record_id)
        .bind(new.department_id)
        .bind(new.commitment)
        .bind(new.evidence)
        .bind(new.applied_by)
        .bind(new.source_repair_id)
        .fetch_optional(&self.pool)
        .await;
        let constraint = match &inserted {
            Err(sqlx::Error::Database(error)) => error.constraint().map(str::to_owned),
            _ => None,
        };
        let status = match constraint.as_deref() {
            Some("repairs_one_pending") => PENDING,
            Some("repairs_one_approved") => APPROVED,
            _ => return Ok(inserted?),
        };
        let other: Uuid = sqlx::query_scalar("SELECT repair_id FROM repairs WHERE record_id = $1 AND status = $2")
            .bind(new.record_id)
            .bind(status)
            .fetch_one(&self.pool)
            .await?;
        Err(if status == PENDING { RepairConflict::Pending(other) } else { RepairConflict::Repaired(other) })
    }

    /// Decide a pending application; an approval announces the repair in the same transaction.
    /// `None` when it was not pending (decided meanwhile).
    pub async fn decide(
        &self,
        repair_id: Uuid,
        status: i16,
        decision: &str,
        decided_by: &str,
    ) -> Result<Option<RepairRow>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let row: Option<RepairRow> = sqlx::query_as(&format!(
            "UPDATE repairs SET status = $2, decision = $3, decided_by = $4, decided_at = now()
             WHERE repair_id = $1 AND status = 1
             RETURNING {REPAIR_COLUMNS}"
        ))
        .bind(repair_id)
        .bind(status)
        .bind(decision)
        .bind(decided_by)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = &row
            && row.status == APPROVED
        {
            let event = RecordRepaired {
                credit_code: row.credit_code.clone(),
                record_id: row.record_id.to_string(),
                repair_id: row.repair_id.to_string(),
            };
            bus::enqueue(&mut transaction, PRODUCER, &event).await?;
        }
        transaction.commit().await?;
        Ok(row)
    }

    pub async fn repairs(&self, listing: &Listing<'_>) -> Result<Vec<RepairRow>, sqlx::Error> {
        self.listed(REPAIR_COLUMNS, "repairs", "repair_id", "applied_by", listing).await
    }

    /// Open objections past their answer day, and applications awaiting a decision.
    pub async fn backlog(&self, today: NaiveDate) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM objections WHERE status = 1 AND answer_due_on < $1),
                    (SELECT count(*) FROM repairs WHERE status = 1)",
        )
        .bind(today)
        .fetch_one(&self.pool)
        .await
    }
}
