//! All SQL of grading.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};

/// A published rule set.
#[derive(Debug, Clone, FromRow)]
pub struct RuleSetRow {
    pub scheme: String,
    pub version: i32,
    pub document: String,
    pub internal: bool,
    pub title: String,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    /// Publish a document as the scheme's next version; the same document as the latest version
    /// is not published again (`Ok((row, false))`).
    pub async fn publish(
        &self,
        scheme: &str,
        title: &str,
        internal: bool,
        document: &str,
        by: &str,
    ) -> Result<(RuleSetRow, bool), sqlx::Error> {
        let digest = Sha256::digest(document.as_bytes()).to_vec();
        let mut transaction = self.pool.begin().await?;
        // One publisher per scheme at a time, so versions are consecutive.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rule_sets:' || $1))")
            .bind(scheme)
            .execute(&mut *transaction)
            .await?;
        let latest: Option<(RuleSetRow, Vec<u8>)> = sqlx::query_as::<_, RuleSetRow>(
            "SELECT scheme, version, document, internal, title, published_at, published_by FROM rule_sets
             WHERE scheme = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(scheme)
        .fetch_optional(&mut *transaction)
        .await?
        .map(|row| {
            let digest = Sha256::digest(row.document.as_bytes()).to_vec();
            (row, digest)
        });
        if let Some((row, latest_digest)) = latest.as_ref()
            && *latest_digest == digest
        {
            return Ok((row.clone(), false));
        }
        let version = latest.map_or(1, |(row, _)| row.version + 1);
        let row: RuleSetRow = sqlx::query_as(
            "INSERT INTO rule_sets (scheme, version, document, digest, internal, title, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING scheme, version, document, internal, title, published_at, published_by",
        )
        .bind(scheme)
        .bind(version)
        .bind(document)
        .bind(&digest)
        .bind(internal)
        .bind(title)
        .bind(by)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((row, true))
    }

    /// Every version, by scheme then version.
    pub async fn list(&self, scheme: Option<&str>) -> Result<Vec<RuleSetRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT scheme, version, document, internal, title, published_at, published_by FROM rule_sets
             WHERE $1::text IS NULL OR scheme = $1 ORDER BY scheme, version",
        )
        .bind(scheme)
        .fetch_all(&self.pool)
        .await
    }
}
