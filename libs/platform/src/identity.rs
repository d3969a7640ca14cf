//! Who is calling. The gateway authenticates a department and passes its identity to the services
//! in metadata, together with the internal token that proves the call came from inside the
//! platform. Services trust these headers only because the internal-auth layer has checked the token.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tonic::metadata::{MetadataMap, MetadataValue};

/// Proves a call comes from the gateway or a sibling service.
pub const INTERNAL_TOKEN_HEADER: &str = "x-xinyong-internal-token";
/// The calling department's id.
pub const DEPARTMENT_HEADER: &str = "x-xinyong-department";
/// The calling department's permissions, comma-separated.
pub const PERMISSIONS_HEADER: &str = "x-xinyong-permissions";
/// The client certificate (its DER in standard base64) the calling department authenticated with,
/// when it authenticated by certificate: what its signatures are checked against.
pub const CLIENT_CERTIFICATE_HEADER: &str = "x-xinyong-client-certificate";
/// Headers a caller from outside must never be able to set; the gateway strips them.
pub const RESERVED_HEADERS: &[&str] =
    &[INTERNAL_TOKEN_HEADER, DEPARTMENT_HEADER, PERMISSIONS_HEADER, CLIENT_CERTIFICATE_HEADER];

/// The certificate the caller authenticated with ([`CLIENT_CERTIFICATE_HEADER`]), as DER.
pub fn client_certificate(metadata: &MetadataMap) -> Option<Vec<u8>> {
    use base64::Engine;
    let value = metadata.get(CLIENT_CERTIFICATE_HEADER)?.to_str().ok()?;
    base64::engine::general_purpose::STANDARD.decode(value).ok()
}

/// The header value that carries a certificate.
pub fn certificate_header_value(certificate: &[u8]) -> Option<http::HeaderValue> {
    use base64::Engine;
    http::HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(certificate)).ok()
}

/// Permission to see personal data unmasked.
pub const PERMISSION_PERSONAL_DATA: &str = "personal_data";
/// Permission to see internal schemes (industry risk classes).
pub const PERMISSION_INTERNAL_GRADES: &str = "internal_grades";
/// Permission to administer the platform.
pub const PERMISSION_ADMIN: &str = "admin";

/// The authenticated caller of a request, as the gateway established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub department_id: String,
    pub permissions: Vec<String>,
    /// The client certificate (DER) the department authenticated with through the gateway, when
    /// it did so by certificate ([`Caller::with_certificate`]); what its signatures are checked
    /// against. Not passed on to sibling services.
    pub certificate: Option<Vec<u8>>,
}

impl Caller {
    pub fn new(department_id: impl Into<String>, permissions: Vec<String>) -> Caller {
        Caller { department_id: department_id.into(), permissions, certificate: None }
    }

    /// Read the caller from request metadata. Missing identity is UNAUTHENTICATED: every public
    /// call passes the gateway, which always sets it.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Caller, tonic::Status> {
        let department_id = metadata
            .get(DEPARTMENT_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                tonic::Status::unauthenticated("the call carries no department identity; call through the gateway")
            })?;
        let permissions = metadata
            .get(PERMISSIONS_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Caller::new(department_id, permissions))
    }

    /// The caller with the certificate it authenticated with, for the calls that check
    /// signatures (the others need not decode it).
    pub fn with_certificate(self, metadata: &MetadataMap) -> Caller {
        Caller { certificate: client_certificate(metadata), ..self }
    }

    /// Read the caller from a tonic request.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
        Caller::from_metadata(request.metadata())
    }

    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|held| held == permission)
    }

    /// Write this identity into outgoing metadata (sibling calls on behalf of a caller).
    pub fn write(&self, metadata: &mut MetadataMap) {
        if let Ok(value) = MetadataValue::try_from(self.department_id.as_str()) {
            metadata.insert(DEPARTMENT_HEADER, value);
        }
        if let Ok(value) = MetadataValue::try_from(self.permissions.join(",")) {
            metadata.insert(PERMISSIONS_HEADER, value);
        }
    }
}

/// Compare two SHA-256 digests in time independent of where they differ.
pub fn digests_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A secret every call is checked against (the internal token, the bootstrap administrator's
/// token), kept as its SHA-256: a check hashes only what was presented, not the secret as well.
/// An empty secret matches nothing.
#[derive(Clone)]
pub struct ExpectedSecret(Option<[u8; 32]>);

impl ExpectedSecret {
    pub fn new(secret: &SecretString) -> ExpectedSecret {
        let secret = secret.expose_secret();
        ExpectedSecret((!secret.is_empty()).then(|| Sha256::digest(secret.as_bytes()).into()))
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_ref().is_some_and(|expected| digests_equal(&Sha256::digest(presented), expected))
    }
}

/// Adds the internal token (and optionally a caller identity) to every call of a sibling client.
#[derive(Clone)]
pub struct InternalInterceptor {
    token: MetadataValue<tonic::metadata::Ascii>,
    caller: Option<Caller>,
}

impl InternalInterceptor {
    pub fn new(token: &SecretString, caller: Option<Caller>) -> Result<InternalInterceptor, tonic::Status> {
        let token = MetadataValue::try_from(token.expose_secret())
            .map_err(|_| tonic::Status::internal("internal token is not valid ASCII"))?;
        Ok(InternalInterceptor { token, caller })
    }
}

impl tonic::service::Interceptor for InternalInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, self.token.clone());
        if let Some(caller) = &self.caller {
            caller.write(request.metadata_mut());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_round_trips_through_metadata() {
        let caller = Caller::new("samr-110107", vec!["personal_data".into(), "admin".into()]);
        let mut metadata = MetadataMap::new();
        caller.write(&mut metadata);
        let read = Caller::from_metadata(&metadata).unwrap();
        assert_eq!(read, caller);
        assert!(read.has(PERMISSION_PERSONAL_DATA));
        assert!(!read.has(PERMISSION_INTERNAL_GRADES));
    }

    #[test]
    fn missing_identity_is_unauthenticated() {
        let status = Caller::from_metadata(&MetadataMap::new()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(digests_equal(&Sha256::digest(b"abc"), &Sha256::digest(b"abc")));
        assert!(!digests_equal(&Sha256::digest(b"abc"), &Sha256::digest(b"abd")));
        assert!(!digests_equal(&Sha256::digest(b"abc"), &Sha256::digest(b"abc")[..31]));
        let expected = ExpectedSecret::new(&SecretString::from("abc"));
        assert!(expected.matches(b"abc"));
        assert!(!expected.matches(b"abd") && !expected.matches(b"") && !expected.matches(b"abcd"));
        assert!(!ExpectedSecret::new(&SecretString::from("")).matches(b""), "an empty secret matches nothing");
    }
}
