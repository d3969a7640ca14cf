//! Reports as issued (schema `reports`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// A report as stored.
#[derive(Debug, Clone, FromRow)]
pub struct ReportRow {
    pub report_id: Uuid,
    pub credit_code: String,
    pub kind: i16,
    pub issued_to: String,
    pub issued_at: DateTime<Utc>,
    pub digest: Vec<u8>,
    pub body: Vec<u8>,
}

const COLUMNS: &str = "report_id, credit_code, kind, issued_to, issued_at, digest, body";

/// A report as listed, without its body.
#[derive(Debug, Clone, FromRow)]
pub struct SummaryRow {
    pub report_id: Uuid,
    pub credit_code: String,
    pub kind: i16,
    pub issued_to: String,
    pub issued_at: DateTime<Utc>,
    pub digest: Vec<u8>,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub async fn get(&self, report_id: Uuid) -> Result<Option<ReportRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM reports WHERE report_id = $1"))
            .bind(report_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The reports issued to `issued_to`, about `credit_code` if given, newest first, before the
    /// report `before` if given.
    pub async fn list(
        &self,
        issued_to: &str,
        credit_code: Option<&str>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<SummaryRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT report_id, credit_code, kind, issued_to, issued_at, digest FROM reports
             WHERE issued_to = $1 AND ($2::text IS NULL OR credit_code = $2) AND ($3::uuid IS NULL OR report_id < $3)
             ORDER BY report_id DESC LIMIT $4",
        )
        .bind(issued_to)
        .bind(credit_code)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// The report `issued_to` was issued for its request `source_request_id`.
    pub async fn by_source(&self, issued_to: &str, source_request_id: &str) -> Result<Option<ReportRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM reports WHERE issued_to = $1 AND source_request_id = $2"))
            .bind(issued_to)
            .bind(source_request_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Keep an issued report. When the same request was issued meanwhile (two retries at once),
    /// nothing is kept and the report issued first is returned instead.
    pub async fn insert(&self, row: &ReportRow, source_request_id: Option<&str>) -> Result<ReportRow, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO reports (report_id, credit_code, kind, issued_to, issued_at, source_request_id, digest, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(row.report_id)
        .bind(&row.credit_code)
        .bind(row.kind)
        .bind(&row.issued_to)
        .bind(row.issued_at)
        .bind(source_request_id)
        .bind(&row.digest)
        .bind(&row.body)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        match (inserted, source_request_id) {
            (true, _) => Ok(row.clone()),
            (false, Some(source)) => self.by_source(&row.issued_to, source).await?.ok_or(sqlx::Error::RowNotFound),
            (false, None) => Err(sqlx::Error::RowNotFound),
        }
    }
}
