//! Authentication of departments by bearer credential or client certificate, and their permission
//! to call a method.
//!
//! A token is `<credential_id>.<secret>`. The gateway stores SHA-256 of the secret only. A client
//! certificate, presented in the TLS handshake and checked there against `gateway.tls.client_ca_file`,
//! names a department once its SHA-256 is registered (`RegisterCertificate`). Verified credentials
//! are cached for a short time (`gateway.credential_cache_ms`) so the hot path does not query
//! Postgres per call; a revocation through this gateway takes effect at once, through another
//! replica within that time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use rand::RngCore;
use rustls_pki_types::CertificateDer;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use xinyong_platform::identity::{
    ExpectedSecret, PERMISSION_ADMIN, PERMISSION_INTERNAL_GRADES, PERMISSION_PERSONAL_DATA, digests_equal,
};

use crate::store::{CredentialLookup, Store, StoreError};

/// The department id the bootstrap administrator acts as.
pub const ADMIN_DEPARTMENT: &str = "platform-admin";

/// An authenticated caller, with the header values the gateway passes on built once (when the
/// credential is verified), not on every forwarded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub department_id: String,
    pub permissions: Vec<String>,
    /// When the department authenticated by client certificate: that certificate, passed on so
    /// that services can check the department's signatures against it.
    pub certificate_header: Option<HeaderValue>,
    /// The department's own rate limit (0: the platform's default); `None` for the bootstrap
    /// administrator, who is not a department and is never held back.
    pub calls_per_second: Option<u32>,
    pub department_header: HeaderValue,
    pub permissions_header: HeaderValue,
}

impl Identity {
    pub fn new(department_id: String, permissions: Vec<String>) -> Result<Identity, tonic::Status> {
        let unusable = |_| tonic::Status::internal("the department's identity cannot be passed on in a header");
        Ok(Identity {
            department_header: HeaderValue::from_str(&department_id).map_err(unusable)?,
            permissions_header: HeaderValue::from_str(&permissions.join(",")).map_err(unusable)?,
            department_id,
            permissions,
            calls_per_second: Some(0),
            certificate_header: None,
        })
    }

    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|held| held == permission)
    }

    /// May this caller call `/package.Service/Method`? A department without any `call:` permission
    /// may call every public method; with some, only those.
    pub fn may_call(&self, path: &str) -> Result<(), tonic::Status> {
        let method = path.trim_start_matches('/');
        let mut restricted = false;
        for permission in &self.permissions {
            let Some(pattern) = permission.strip_prefix("call:") else {
                continue;
            };
            restricted = true;
            let allowed = match pattern.strip_suffix("/*") {
                Some(service) => method.split_once('/').is_some_and(|(called, _)| called == service),
                None => pattern == method,
            };
            if allowed {
                return Ok(());
            }
        }
        if restricted && !self.has(PERMISSION_ADMIN) {
            return Err(tonic::Status::permission_denied(format!(
                "permission `call:{method}` is required; ask the platform administrator"
            )));
        }
        Ok(())
    }
}

/// A newly issued token.
pub struct IssuedToken {
    pub credential_id: String,
    pub token: String,
    pub secret_sha256: Vec<u8>,
}

/// A new random credential id, public: a token's first part, or a certificate's name.
pub fn new_credential_id() -> String {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

/// Make a new random credential.
pub fn new_token() -> IssuedToken {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let credential_id = new_credential_id();
    let secret = hex::encode(secret);
    IssuedToken {
        token: format!("{credential_id}.{secret}"),
        secret_sha256: Sha256::digest(secret.as_bytes()).to_vec(),
        credential_id,
    }
}

/// SHA-256 of a certificate's DER: its fingerprint as `openssl x509 -noout -fingerprint -sha256`
/// prints it, and its key among the credentials.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(certificate: &[u8]) -> Fingerprint {
    Sha256::digest(certificate).into()
}

/// The client certificate a call's connection presented in its TLS handshake, which checked it
/// against `gateway.tls.client_ca_file`: the leaf and its fingerprint.
#[derive(Debug, Clone)]
pub struct Presented {
    pub fingerprint: Fingerprint,
    chain: Arc<Vec<CertificateDer<'static>>>,
}

impl Presented {
    /// None over plain HTTP/2 and when the client presented none.
    pub fn of(certificates: Option<Arc<Vec<CertificateDer<'static>>>>) -> Option<Presented> {
        let chain = certificates?;
        let fingerprint = fingerprint(chain.first()?.as_ref());
        Some(Presented { fingerprint, chain })
    }

    pub fn leaf(&self) -> &[u8] {
        self.chain.first().map_or(&[], |leaf| leaf.as_ref())
    }
}

/// The certificates a raw HTTP request's connection presented (the forwarding path), for
/// [`Presented::of`].
pub fn certificates_of(extensions: &http::Extensions) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs)
}

#[derive(Clone)]
struct Cached {
    /// Empty for a certificate: the lookup was by the certificate's fingerprint itself.
    secret_sha256: Vec<u8>,
    credential_id: String,
    identity: Identity,
    at: Instant,
}

/// Checks bearer tokens and client certificates.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    admin_token: ExpectedSecret,
    /// Tokens by credential id.
    cache: Arc<RwLock<HashMap<String, Cached>>>,
    certificates: Arc<RwLock<HashMap<Fingerprint, Cached>>>,
    cache_for: Duration,
}

fn unavailable(error: StoreError) -> tonic::Status {
    match error {
        StoreError::Database(error) => {
            tracing::error!(%error, "credential lookup failed");
            tonic::Status::unavailable("credentials cannot be checked right now; retry")
        }
        other => tonic::Status::internal(other.to_string()),
    }
}

/// The identity a looked-up credential gives.
fn identity_of(lookup: CredentialLookup) -> Result<Identity, tonic::Status> {
    let mut identity = Identity::new(lookup.department_id, lookup.permissions)?;
    identity.calls_per_second = Some(u32::try_from(lookup.calls_per_second).unwrap_or(0));
    Ok(identity)
}

impl Authenticator {
    pub fn new(store: Store, admin_token: &SecretString, cache_for: Duration) -> Authenticator {
        let admin_token = ExpectedSecret::new(admin_token);
        Authenticator { store, admin_token, cache: Arc::default(), certificates: Arc::default(), cache_for }
    }

    /// Authenticate a call: by its `authorization` header when it has one, else by the client
    /// certificate its connection presented. A token decides even over a certificate, so a
    /// department whose certificate only secures the connection still calls as its token says.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        certificate: impl FnOnce() -> Option<Presented>,
    ) -> Result<Identity, tonic::Status> {
        let Some(header) = headers.get(http::header::AUTHORIZATION) else {
            // Only now: a call with a token never hashes its connection's certificate.
            return match certificate() {
                Some(certificate) => self.authenticate_certificate(&certificate).await,
                None => Err(tonic::Status::unauthenticated(
                    "no credential: send `authorization: Bearer <token>`, or present a registered client certificate over TLS",
                )),
            };
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| tonic::Status::unauthenticated("the authorization header must be `Bearer <token>`"))?;
        self.authenticate_token(token).await
    }

    pub async fn authenticate_token(&self, token: &str) -> Result<Identity, tonic::Status> {
        if self.admin_token.matches(token.as_bytes()) {
            let mut administrator = Identity::new(
                ADMIN_DEPARTMENT.to_owned(),
                vec![
                    PERMISSION_ADMIN.to_owned(),
                    PERMISSION_PERSONAL_DATA.to_owned(),
                    PERMISSION_INTERNAL_GRADES.to_owned(),
                ],
            )?;
            administrator.calls_per_second = None;
            return Ok(administrator);
        }
        let invalid = || tonic::Status::unauthenticated("the credential is not valid");
        let (credential_id, secret) = token.split_once('.').ok_or_else(invalid)?;
        let presented = Sha256::digest(secret.as_bytes());

        if let Some(cached) = self.cache.read().await.get(credential_id)
            && cached.at.elapsed() < self.cache_for
        {
            return if digests_equal(&presented, &cached.secret_sha256) {
                Ok(cached.identity.clone())
            } else {
                Err(invalid())
            };
        }

        let lookup = self.store.lookup_credential(credential_id).await.map_err(unavailable)?.ok_or_else(invalid)?;
        // A certificate's credential has no secret: no token names it.
        let secret_sha256 = lookup.secret_sha256.clone().ok_or_else(invalid)?;
        if !digests_equal(&presented, &secret_sha256) {
            return Err(invalid());
        }
        if lookup.revoked {
            self.cache.write().await.remove(credential_id);
            return Err(tonic::Status::unauthenticated("the credential has been revoked"));
        }
        let identity = identity_of(lookup)?;
        self.cache.write().await.insert(
            credential_id.to_owned(),
            Cached {
                secret_sha256,
                credential_id: credential_id.to_owned(),
                identity: identity.clone(),
                at: Instant::now(),
            },
        );
        Ok(identity)
    }

    /// Authenticate by a client certificate the handshake accepted: it must be registered to a
    /// department and not revoked.
    pub async fn authenticate_certificate(&self, presented: &Presented) -> Result<Identity, tonic::Status> {
        let certificate = &presented.fingerprint;
        if let Some(cached) = self.certificates.read().await.get(certificate)
            && cached.at.elapsed() < self.cache_for
        {
            return Ok(cached.identity.clone());
        }
        let lookup = self.store.lookup_certificate(certificate).await.map_err(unavailable)?.ok_or_else(|| {
            tonic::Status::unauthenticated(format!(
                "the client certificate (SHA-256 {}) is not registered to a department; the platform administrator registers it with RegisterCertificate",
                hex::encode(certificate)
            ))
        })?;
        if lookup.revoked {
            self.certificates.write().await.remove(certificate);
            return Err(tonic::Status::unauthenticated(format!(
                "the client certificate (credential {}) has been revoked",
                lookup.credential_id
            )));
        }
        let credential_id = lookup.credential_id.clone();
        let mut identity = identity_of(lookup)?;
        // Built once, with the identity it is cached with; a certificate too large for a header
        // (none a CA issues) only goes without.
        identity.certificate_header = xinyong_platform::identity::certificate_header_value(presented.leaf());
        self.certificates.write().await.insert(
            *certificate,
            Cached { secret_sha256: Vec::new(), credential_id, identity: identity.clone(), at: Instant::now() },
        );
        Ok(identity)
    }

    /// Forget a credential at once (revocation).
    pub async fn forget(&self, credential_id: &str) {
        self.cache.write().await.remove(credential_id);
        self.certificates.write().await.retain(|_, cached| cached.credential_id != credential_id);
    }

    /// Forget every cached credential of a department (its permissions changed).
    pub async fn forget_department(&self, department_id: &str) {
        self.cache.write().await.retain(|_, cached| cached.identity.department_id != department_id);
        self.certificates.write().await.retain(|_, cached| cached.identity.department_id != department_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(permissions: &[&str]) -> Identity {
        Identity::new("d".into(), permissions.iter().map(|p| p.to_string()).collect()).unwrap()
    }

    #[test]
    fn without_call_permissions_every_method_is_allowed() {
        assert!(identity(&[]).may_call("/xinyong.registry.v1.RegistryService/GetEntity").is_ok());
    }

    #[test]
    fn call_permissions_restrict_to_their_methods() {
        let caller = identity(&[
            "call:xinyong.registry.v1.RegistryService/*",
            "call:xinyong.grading.v1.GradingService/GetGrade",
        ]);
        assert!(caller.may_call("/xinyong.registry.v1.RegistryService/GetEntity").is_ok());
        assert!(caller.may_call("/xinyong.grading.v1.GradingService/GetGrade").is_ok());
        let denied = caller.may_call("/xinyong.grading.v1.GradingService/PublishRuleSet").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("call:xinyong.grading.v1.GradingService/PublishRuleSet"));
    }

    #[test]
    fn tokens_are_unique_and_only_their_hash_is_kept() {
        let first = new_token();
        let second = new_token();
        assert_ne!(first.token, second.token);
        let (id, secret) = first.token.split_once('.').unwrap();
        assert_eq!(id, first.credential_id);
        assert_eq!(Sha256::digest(secret.as_bytes()).to_vec(), first.secret_sha256);
        assert!(!first.secret_sha256.is_empty() && !hex::encode(&first.secret_sha256).contains(secret));
    }
}
