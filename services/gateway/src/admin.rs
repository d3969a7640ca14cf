//! `gateway.v1.GatewayAdminService`: departments, credentials, permissions. Only the platform
//! administrator may call it.

use xinyong_platform::ApiError;
use xinyong_platform::identity::PERMISSION_ADMIN;
use xinyong_platform::timestamp;
use xinyong_proto::gateway::v1 as pb;
use xinyong_proto::gateway::v1::gateway_admin_service_server::GatewayAdminService;

use crate::auth::{Authenticator, Presented, fingerprint, new_credential_id, new_token};
use crate::store::{CredentialRow, DepartmentRow, Store, StoreError};

pub struct Admin {
    store: Store,
    auth: Authenticator,
    expiry: CertificateExpiry,
}

/// When the first of the departments' registered, unrevoked certificates stops being valid, as a
/// gauge for the alert that asks departments to renew in time: looked up every minute, and at once
/// when this replica registers or revokes one.
#[derive(Clone)]
pub struct CertificateExpiry {
    store: Store,
    gauge: prometheus_client::metrics::gauge::Gauge<i64>,
}

impl CertificateExpiry {
    pub fn new(store: Store, metrics: &xinyong_platform::metrics::Metrics) -> CertificateExpiry {
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        metrics.register(
            "gateway_client_certificate_first_expiry_timestamp_seconds",
            "when the first of the departments' registered, unrevoked client certificates stops being valid, in Unix seconds; 0 when none is registered",
            gauge.clone(),
        );
        CertificateExpiry { store, gauge }
    }

    pub async fn refresh(&self) {
        match self.store.first_certificate_expiry().await {
            Ok(first) => {
                self.gauge.set(first.map_or(0, |first| first.timestamp()));
            }
            Err(error) => {
                tracing::warn!(%error, "registered certificates' expiry not read; the next minute tries again")
            }
        }
    }
}

impl Admin {
    pub fn new(store: Store, auth: Authenticator, expiry: CertificateExpiry) -> Admin {
        Admin { store, auth, expiry }
    }

    /// A department as changed: its cached credentials forgotten, so that this replica applies
    /// the change at once (the others when their copies expire, `gateway.credential_cache_ms`),
    /// and its answer with its credentials.
    async fn changed(&self, row: DepartmentRow) -> Result<pb::Department, tonic::Status> {
        self.auth.forget_department(&row.department_id).await;
        let credentials = self.store.credentials_of(std::slice::from_ref(&row.department_id)).await.map_err(status)?;
        Ok(department(row, &credentials))
    }

    async fn require_admin<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let identity = self.auth.authenticate(&headers, || Presented::of(request.peer_certs())).await?;
        if identity.has(PERMISSION_ADMIN) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied {
                permission: PERMISSION_ADMIN.to_owned(),
                detail: "only the platform administrator manages departments".to_owned(),
            }
            .into())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::DepartmentNotFound(id) => ApiError::NotFound { what: "department", key: id },
            StoreError::CredentialNotFound(id) => ApiError::NotFound { what: "credential", key: id },
            StoreError::DepartmentConflict { id, existing } => ApiError::AlreadyExists(format!(
                "department `{id}` exists with the name `{existing}`; choose another id"
            )),
            StoreError::CertificateTaken(owner) => ApiError::AlreadyExists(format!(
                "the certificate is registered to department `{owner}`; a certificate names one department"
            )),
            StoreError::CertificateRevoked(id) => ApiError::FailedPrecondition(format!(
                "the certificate was registered as credential `{id}`, which has been revoked; register a new certificate"
            )),
            StoreError::Database(error) => error.into(),
        }
    }
}

fn status(error: StoreError) -> tonic::Status {
    ApiError::from(error).into()
}

fn database(error: sqlx::Error) -> tonic::Status {
    ApiError::from(error).into()
}

fn department(row: DepartmentRow, credentials: &[CredentialRow]) -> pb::Department {
    pb::Department {
        credentials: credentials
            .iter()
            .filter(|credential| credential.department_id == row.department_id)
            .map(|credential| pb::Credential {
                credential_id: credential.credential_id.clone(),
                issued_at: Some(timestamp(credential.issued_at)),
                revoked_at: credential.revoked_at.map(timestamp),
                certificate_sha256: credential.certificate_sha256.as_deref().map(hex::encode).unwrap_or_default(),
                expires_at: credential.certificate_not_after.map(timestamp),
            })
            .collect(),
        department_id: row.department_id,
        name: row.name,
        permissions: row.permissions,
        created_at: Some(timestamp(row.created_at)),
        calls_per_second: u32::try_from(row.calls_per_second).unwrap_or(0),
    }
}

/// A page's size as asked: 100 when unset, at most 1000.
fn page_size(asked: i32) -> Result<i64, ApiError> {
    match asked {
        0 => Ok(100),
        size if (1..=1000).contains(&size) => Ok(i64::from(size)),
        _ => Err(ApiError::invalid("page_size", "must be between 1 and 1000")),
    }
}

/// An entry whose hash was kept, as a request names it by two fields: none when both are empty.
fn kept_entry(seq: i64, hash: Vec<u8>, fields: (&str, &str)) -> Result<Option<crate::audit::Anchor>, ApiError> {
    match (seq, hash.len()) {
        (0, 0) => Ok(None),
        (seq, 32) if seq > 0 => Ok(Some(crate::audit::Anchor { seq, hash })),
        (seq, _) if seq <= 0 => Err(ApiError::invalid(fields.0, "an entry number, 1 or more")),
        _ => Err(ApiError::invalid(fields.1, "32 bytes, the entry's SHA-256")),
    }
}

/// The DER of the one X.509 certificate a PEM text holds.
fn certificate_der(pem: &str) -> Result<Vec<u8>, ApiError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let field = "certificate_pem";
    let mut found = CertificateDer::pem_slice_iter(pem.as_bytes());
    let der = match found.next() {
        Some(Ok(der)) => der,
        Some(Err(error)) => return Err(ApiError::invalid(field, format!("not readable PEM: {error}"))),
        None => return Err(ApiError::invalid(field, "holds no `-----BEGIN CERTIFICATE-----` block")),
    };
    if found.next().is_some() {
        return Err(ApiError::invalid(
            field,
            "holds more than one certificate; send the client's own certificate alone, not its chain",
        ));
    }
    // The handshake would refuse what does not parse as an end-entity certificate; say so now.
    webpki::EndEntityCert::try_from(&der)
        .map_err(|error| ApiError::invalid(field, format!("not an X.509 v3 end-entity certificate: {error}")))?;
    Ok(der.to_vec())
}

/// A request's timestamp as a time, or which field is out of range.
fn instant(at: prost_types::Timestamp, field: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    u32::try_from(at.nanos)
        .ok()
        .and_then(|nanos| chrono::DateTime::from_timestamp(at.seconds, nanos))
        .ok_or_else(|| ApiError::invalid(field, "not a valid timestamp"))
}

fn validate_department_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid("department_id", "use 1 to 64 lower-case letters, digits, `-` or `_`"))
    }
}

fn validate_permissions(permissions: &[String]) -> Result<(), ApiError> {
    for (index, permission) in permissions.iter().enumerate() {
        let known = matches!(permission.as_str(), "admin" | "personal_data" | "internal_grades")
            || permission.strip_prefix("call:").is_some_and(|method| method.contains('/'))
            || permission.strip_prefix("report:").is_some_and(|category| !category.is_empty());
        if !known {
            return Err(ApiError::invalid(
                format!("permissions[{index}]"),
                format!(
                    "unknown permission `{permission}`: use admin, personal_data, internal_grades or call:<package.Service>/<Method|*>"
                ),
            ));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl GatewayAdminService for Admin {
    async fn create_department(
        &self,
        request: tonic::Request<pb::CreateDepartmentRequest>,
    ) -> Result<tonic::Response<pb::CreateDepartmentResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        validate_department_id(&request.department_id)?;
        if request.name.trim().is_empty() {
            return Err(ApiError::invalid("name", "required").into());
        }
        validate_permissions(&request.permissions)?;
        let (row, created) = self
            .store
            .create_department(&request.department_id, request.name.trim(), &request.permissions)
            .await
            .map_err(status)?;
        let credentials = self.store.credentials_of(std::slice::from_ref(&row.department_id)).await.map_err(status)?;
        Ok(tonic::Response::new(pb::CreateDepartmentResponse {
            department: Some(department(row, &credentials)),
            created,
        }))
    }

    async fn issue_credential(
        &self,
        request: tonic::Request<pb::IssueCredentialRequest>,
    ) -> Result<tonic::Response<pb::IssueCredentialResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        validate_department_id(&request.department_id)?;
        let issued = new_token();
        self.store
            .insert_credential(&issued.credential_id, &request.department_id, &issued.secret_sha256)
            .await
            .map_err(status)?;
        tracing::info!(department = %request.department_id, credential = %issued.credential_id, "credential issued");
        Ok(tonic::Response::new(pb::IssueCredentialResponse {
            credential_id: issued.credential_id,
            token: issued.token,
        }))
    }

    async fn register_certificate(
        &self,
        request: tonic::Request<pb::RegisterCertificateRequest>,
    ) -> Result<tonic::Response<pb::RegisterCertificateResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        validate_department_id(&request.department_id)?;
        let certificate = certificate_der(&request.certificate_pem)?;
        let not_after = crate::x509::not_after(&certificate)
            .ok_or_else(|| ApiError::invalid("certificate_pem", "its validity period cannot be read"))?;
        if not_after <= chrono::Utc::now() {
            return Err(ApiError::invalid(
                "certificate_pem",
                format!("the certificate expired at {}; register its renewal", not_after.to_rfc3339()),
            )
            .into());
        }
        let certificate_sha256 = fingerprint(&certificate);
        let (credential_id, created) = self
            .store
            .register_certificate(&new_credential_id(), &request.department_id, &certificate_sha256, not_after)
            .await
            .map_err(status)?;
        let certificate_sha256 = hex::encode(certificate_sha256);
        self.expiry.refresh().await;
        if created {
            tracing::info!(department = %request.department_id, credential = %credential_id, sha256 = %certificate_sha256, "client certificate registered");
        }
        Ok(tonic::Response::new(pb::RegisterCertificateResponse {
            credential_id,
            certificate_sha256,
            created,
            expires_at: Some(timestamp(not_after)),
        }))
    }

    async fn revoke_credential(
        &self,
        request: tonic::Request<pb::RevokeCredentialRequest>,
    ) -> Result<tonic::Response<pb::RevokeCredentialResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let credential_id = request.into_inner().credential_id;
        if credential_id.is_empty() {
            return Err(ApiError::invalid("credential_id", "required").into());
        }
        let revoked = self.store.revoke_credential(&credential_id).await.map_err(status)?;
        self.auth.forget(&credential_id).await;
        self.expiry.refresh().await;
        tracing::info!(credential = %credential_id, "credential revoked");
        Ok(tonic::Response::new(pb::RevokeCredentialResponse { revoked }))
    }

    async fn list_departments(
        &self,
        request: tonic::Request<pb::ListDepartmentsRequest>,
    ) -> Result<tonic::Response<pb::ListDepartmentsResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let mut rows = self.store.departments(&request.page_token, page_size + 1).await.map_err(status)?;
        let next_page_token = if rows.len() as i64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|row| row.department_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let ids: Vec<String> = rows.iter().map(|row| row.department_id.clone()).collect();
        let credentials = self.store.credentials_of(&ids).await.map_err(status)?;
        Ok(tonic::Response::new(pb::ListDepartmentsResponse {
            departments: rows.into_iter().map(|row| department(row, &credentials)).collect(),
            next_page_token,
        }))
    }

    async fn set_permissions(
        &self,
        request: tonic::Request<pb::SetPermissionsRequest>,
    ) -> Result<tonic::Response<pb::SetPermissionsResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        validate_department_id(&request.department_id)?;
        validate_permissions(&request.permissions)?;
        let row = self.store.set_permissions(&request.department_id, &request.permissions).await.map_err(status)?;
        Ok(tonic::Response::new(pb::SetPermissionsResponse { department: Some(self.changed(row).await?) }))
    }

    async fn list_audit_entries(
        &self,
        request: tonic::Request<pb::ListAuditEntriesRequest>,
    ) -> Result<tonic::Response<pb::ListAuditEntriesResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)? as usize;
        if request.after_seq < 0 {
            return Err(ApiError::invalid("after_seq", "must not be negative").into());
        }
        // The newest entry first: every entry listed is then at or before it.
        let pool = self.store.pool();
        let (newest_seq, newest_hash) = crate::audit::newest(pool).await.map_err(database)?.unwrap_or_default();
        let since = request.since.map(|at| instant(at, "since")).transpose()?;
        let until = request.until.map(|at| instant(at, "until")).transpose()?;
        if let (Some(since), Some(until)) = (since, until)
            && since >= until
        {
            return Err(ApiError::invalid("until", "must be after `since`").into());
        }
        let wanted = crate::audit::Wanted {
            department_id: request.department_id.trim(),
            subject: request.subject.trim(),
            since,
            until,
        };
        let mut listed =
            crate::audit::entries(pool, request.after_seq, wanted, page_size + 1).await.map_err(database)?;
        let next_after_seq = if listed.len() > page_size {
            listed.truncate(page_size);
            listed.last().map_or(0, |listed| listed.seq)
        } else {
            0
        };
        let entries = listed
            .into_iter()
            .map(|listed| pb::AuditEntry {
                seq: listed.seq,
                at: Some(timestamp(listed.entry.at)),
                department_id: listed.entry.department_id,
                method: listed.entry.method,
                code: i32::from(listed.entry.code),
                subject: listed.entry.subject,
                previous_hash: listed.previous_hash.to_vec(),
                hash: listed.hash.to_vec(),
            })
            .collect();
        Ok(tonic::Response::new(pb::ListAuditEntriesResponse { entries, next_after_seq, newest_seq, newest_hash }))
    }

    async fn verify_audit_log(
        &self,
        request: tonic::Request<pb::VerifyAuditLogRequest>,
    ) -> Result<tonic::Response<pb::VerifyAuditLogResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        let anchor = kept_entry(request.anchor_seq, request.anchor_hash, ("anchor_seq", "anchor_hash"))?;
        let from = kept_entry(request.from_seq, request.from_hash, ("from_seq", "from_hash"))?;
        let verified =
            crate::audit::verify_from(self.store.pool(), from.as_ref(), anchor.as_ref()).await.map_err(database)?;
        let response = match verified {
            crate::audit::Verified::Intact { entries, last_seq, last_hash } => pb::VerifyAuditLogResponse {
                intact: true,
                entries: entries as i64,
                last_seq,
                last_hash,
                ..Default::default()
            },
            crate::audit::Verified::Broken { seq, reason } => {
                tracing::warn!(entry = seq, %reason, "the audit log does not verify");
                pb::VerifyAuditLogResponse { broken_at: seq, reason, ..Default::default() }
            }
        };
        Ok(tonic::Response::new(response))
    }

    async fn set_rate_limit(
        &self,
        request: tonic::Request<pb::SetRateLimitRequest>,
    ) -> Result<tonic::Response<pb::SetRateLimitResponse>, tonic::Status> {
        self.require_admin(&request).await?;
        let request = request.into_inner();
        validate_department_id(&request.department_id)?;
        let calls_per_second = i32::try_from(request.calls_per_second)
            .map_err(|_| ApiError::invalid("calls_per_second", format!("at most {} calls a second", i32::MAX)))?;
        let row = self.store.set_rate_limit(&request.department_id, calls_per_second).await.map_err(status)?;
        Ok(tonic::Response::new(pb::SetRateLimitResponse { department: Some(self.changed(row).await?) }))
    }
}
