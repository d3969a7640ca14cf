//! All SQL of grading.

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool};
use xinyong_proto::grading::v1 as pb;

use crate::grades::{GRADE_COLUMNS, GradeRow};

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

/// One row of a subject's grade history.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub id: i64,
    pub grade: GradeRow,
}

impl Store {
    /// A subject's grades under a scheme, newest first, before history id `before`.
    pub async fn history(
        &self,
        credit_code: &str,
        scheme: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, sqlx::Error> {
        let rows: Vec<HistoryFields> = sqlx::query_as(&format!(
            "SELECT id, {GRADE_COLUMNS} FROM (
                 SELECT id, credit_code, scheme, grade, rule_set_version, reasons, as_of, graded_at,
                        NULL::date AS review_on
                 FROM grade_changes
                 WHERE credit_code = $1 AND scheme = $2 AND ($3::bigint IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4) h"
        ))
        .bind(credit_code)
        .bind(scheme)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| HistoryRow { id: row.id, grade: row.grade }).collect())
    }

    /// The regular statistics (seed 000 art. 13) of one scheme.
    pub async fn statistics(
        &self,
        scheme: &str,
        region_prefix: &str,
        industry_prefix: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<pb::GetStatisticsResponse, sqlx::Error> {
        let region = format!("{region_prefix}%");
        let industry = format!("{industry_prefix}%");
        let grades: Vec<(i16, String, String, i16, i64)> = sqlx::query_as(
            "SELECT g.grade, s.region_code, s.industry_code, s.kind, count(*)
             FROM grades g JOIN subjects s USING (credit_code)
             WHERE g.scheme = $1 AND s.region_code LIKE $2 AND s.industry_code LIKE $3
             GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4, 1",
        )
        .bind(scheme)
        .bind(&region)
        .bind(&industry)
        .fetch_all(&self.pool)
        .await?;
        let changes: Vec<(Option<i16>, i16, i64)> = sqlx::query_as(
            "SELECT h.old_grade, h.grade, count(*)
             FROM grade_changes h JOIN subjects s USING (credit_code)
             WHERE h.scheme = $1 AND s.region_code LIKE $2 AND s.industry_code LIKE $3
               AND h.old_grade IS DISTINCT FROM h.grade
               AND ($4::date IS NULL OR h.as_of >= $4) AND ($5::date IS NULL OR h.as_of <= $5)
             GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2",
        )
        .bind(scheme)
        .bind(&region)
        .bind(&industry)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let records: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT f.category, f.department_id, count(*)
             FROM record_facts f JOIN subjects s USING (credit_code)
             WHERE s.region_code LIKE $1 AND s.industry_code LIKE $2
               AND ($3::date IS NULL OR f.decided_on >= $3) AND ($4::date IS NULL OR f.decided_on <= $4)
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(&region)
        .bind(&industry)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(pb::GetStatisticsResponse {
            grades: grades
                .into_iter()
                .map(|(grade, region_code, industry_code, kind, subjects)| pb::GradeCount {
                    grade: i32::from(grade),
                    region_code,
                    industry_code,
                    kind: i32::from(kind),
                    subjects,
                })
                .collect(),
            changes: changes
                .into_iter()
                .map(|(from_grade, to_grade, changes)| pb::GradeChangeCount {
                    from_grade: from_grade.map_or(0, i32::from),
                    to_grade: i32::from(to_grade),
                    changes,
                })
                .collect(),
            records: records
                .into_iter()
                .map(|(category, department_id, records)| pb::RecordCount { category, department_id, records })
                .collect(),
        })
    }
}

#[derive(FromRow)]
struct HistoryFields {
    id: i64,
    #[sqlx(flatten)]
    grade: GradeRow,
}
