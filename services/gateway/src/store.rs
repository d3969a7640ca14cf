//! All SQL of the gateway: departments and credentials.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// A department row.
#[derive(Debug, Clone, FromRow)]
pub struct DepartmentRow {
    pub department_id: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// 0: the platform's default.
    pub calls_per_second: i32,
}

const DEPARTMENT_COLUMNS: &str = "department_id, name, permissions, created_at, calls_per_second";

const LOOKUP: &str = "SELECT c.credential_id, c.department_id, c.secret_sha256, c.revoked_at IS NOT NULL AS revoked,
         d.permissions, d.calls_per_second
     FROM credentials c JOIN departments d USING (department_id)";

/// A credential row, without the hash.
#[derive(Debug, Clone, FromRow)]
pub struct CredentialRow {
    pub credential_id: String,
    pub department_id: String,
    pub issued_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set for a client certificate: its fingerprint.
    pub certificate_sha256: Option<Vec<u8>>,
    /// And when it stops being valid.
    pub certificate_not_after: Option<DateTime<Utc>>,
}

/// What authentication needs to know about a credential.
#[derive(Debug, Clone, FromRow)]
pub struct CredentialLookup {
    pub credential_id: String,
    pub department_id: String,
    /// None for a client certificate.
    pub secret_sha256: Option<Vec<u8>>,
    pub revoked: bool,
    pub permissions: Vec<String>,
    pub calls_per_second: i32,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("department `{0}` not found")]
    DepartmentNotFound(String),
    #[error("department `{id}` exists with another name (`{existing}`)")]
    DepartmentConflict { id: String, existing: String },
    #[error("credential `{0}` not found")]
    CredentialNotFound(String),
    #[error("the certificate is registered to department `{0}`")]
    CertificateTaken(String),
    #[error("the certificate was registered as credential `{0}`, which has been revoked")]
    CertificateRevoked(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A credential's insert failed: for want of its department (the foreign key), or otherwise.
fn of_department(error: sqlx::Error, department_id: &str) -> StoreError {
    match error {
        sqlx::Error::Database(error) if error.code().as_deref() == Some("23503") => {
            StoreError::DepartmentNotFound(department_id.to_owned())
        }
        error => error.into(),
    }
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// The pool, for the audit log (`audit::entries`, `audit::verify_from`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    /// Create a department; `Ok((row, false))` when it existed with the same name.
    pub async fn create_department(
        &self,
        id: &str,
        name: &str,
        permissions: &[String],
    ) -> Result<(DepartmentRow, bool), StoreError> {
        let inserted: Option<DepartmentRow> = sqlx::query_as(&format!(
            "INSERT INTO departments (department_id, name, permissions) VALUES ($1, $2, $3)
             ON CONFLICT (department_id) DO NOTHING
             RETURNING {DEPARTMENT_COLUMNS}"
        ))
        .bind(id)
        .bind(name)
        .bind(permissions)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let existing = self.department(id).await?;
        if existing.name != name {
            return Err(StoreError::DepartmentConflict { id: id.to_owned(), existing: existing.name });
        }
        Ok((existing, false))
    }

    pub async fn department(&self, id: &str) -> Result<DepartmentRow, StoreError> {
        sqlx::query_as(&format!("SELECT {DEPARTMENT_COLUMNS} FROM departments WHERE department_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::DepartmentNotFound(id.to_owned()))
    }

    pub async fn set_permissions(&self, id: &str, permissions: &[String]) -> Result<DepartmentRow, StoreError> {
        sqlx::query_as(&format!(
            "UPDATE departments SET permissions = $2 WHERE department_id = $1 RETURNING {DEPARTMENT_COLUMNS}"
        ))
        .bind(id)
        .bind(permissions)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::DepartmentNotFound(id.to_owned()))
    }

    pub async fn set_rate_limit(&self, id: &str, calls_per_second: i32) -> Result<DepartmentRow, StoreError> {
        sqlx::query_as(&format!(
            "UPDATE departments SET calls_per_second = $2 WHERE department_id = $1 RETURNING {DEPARTMENT_COLUMNS}"
        ))
        .bind(id)
        .bind(calls_per_second)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::DepartmentNotFound(id.to_owned()))
    }

    /// Departments after `after` in id order.
    pub async fn departments(&self, after: &str, limit: i64) -> Result<Vec<DepartmentRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {DEPARTMENT_COLUMNS} FROM departments WHERE department_id > $1 ORDER BY department_id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Credentials of the given departments, newest first.
    pub async fn credentials_of(&self, department_ids: &[String]) -> Result<Vec<CredentialRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT credential_id, department_id, issued_at, revoked_at, certificate_sha256, certificate_not_after
             FROM credentials
             WHERE department_id = ANY($1) ORDER BY issued_at DESC",
        )
        .bind(department_ids)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn insert_credential(
        &self,
        credential_id: &str,
        department_id: &str,
        secret_sha256: &[u8],
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("INSERT INTO credentials (credential_id, department_id, secret_sha256) VALUES ($1, $2, $3)")
                .bind(credential_id)
                .bind(department_id)
                .bind(secret_sha256)
                .execute(&self.pool)
                .await;
        result.map(drop).map_err(|error| of_department(error, department_id))
    }

    /// Revoke; `Ok(false)` when it was revoked already.
    pub async fn revoke_credential(&self, credential_id: &str) -> Result<bool, StoreError> {
        let revoked =
            sqlx::query("UPDATE credentials SET revoked_at = now() WHERE credential_id = $1 AND revoked_at IS NULL")
                .bind(credential_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
        if revoked {
            return Ok(true);
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM credentials WHERE credential_id = $1)")
            .bind(credential_id)
            .fetch_one(&self.pool)
            .await?;
        if exists { Ok(false) } else { Err(StoreError::CredentialNotFound(credential_id.to_owned())) }
    }

    /// When the first of the registered certificates still in use stops being valid.
    pub async fn first_certificate_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT min(certificate_not_after) FROM credentials WHERE revoked_at IS NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn lookup_credential(&self, credential_id: &str) -> Result<Option<CredentialLookup>, StoreError> {
        Ok(sqlx::query_as(&format!("{LOOKUP} WHERE c.credential_id = $1"))
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn lookup_certificate(&self, fingerprint: &[u8]) -> Result<Option<CredentialLookup>, StoreError> {
        Ok(sqlx::query_as(&format!("{LOOKUP} WHERE c.certificate_sha256 = $1"))
            .bind(fingerprint)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Register a client certificate (its fingerprint) as a credential of a department. Again for
    /// the same department: `Ok((its credential id, false))`. A certificate belongs to one
    /// department, and one revoked stays revoked: its holder gets a new certificate.
    pub async fn register_certificate(
        &self,
        credential_id: &str,
        department_id: &str,
        fingerprint: &[u8],
        not_after: DateTime<Utc>,
    ) -> Result<(String, bool), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO credentials (credential_id, department_id, certificate_sha256, certificate_not_after)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (certificate_sha256) WHERE certificate_sha256 IS NOT NULL DO NOTHING",
        )
        .bind(credential_id)
        .bind(department_id)
        .bind(fingerprint)
        .bind(not_after)
        .execute(&self.pool)
        .await;
        if inserted.map_err(|error| of_department(error, department_id))?.rows_affected() == 1 {
            return Ok((credential_id.to_owned(), true));
        }
        let (existing_id, owner, revoked): (String, String, bool) = sqlx::query_as(
            "SELECT credential_id, department_id, revoked_at IS NOT NULL FROM credentials WHERE certificate_sha256 = $1",
        )
        .bind(fingerprint)
        .fetch_one(&self.pool)
        .await?;
        if owner != department_id {
            Err(StoreError::CertificateTaken(owner))
        } else if revoked {
            Err(StoreError::CertificateRevoked(existing_id))
        } else {
            Ok((existing_id, false))
        }
    }
}
