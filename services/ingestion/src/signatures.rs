//! Records a department signed (seed 002 art. 19: 谁产生、谁提供、谁负责, 可采用数字证书等安全手段).
//!
//! The department encodes its `RecordInput` itself and signs those bytes with the key of the
//! client certificate it authenticates with; the record is taken from the signed bytes. So the
//! platform never rebuilds what was signed from the fields (protobuf encodings differ between
//! implementations, maps most of all), and anyone holding the bytes, the signature and the
//! certificate can check them again, years later, without the platform.

use prost::Message;
use sha2::{Digest, Sha256};
use xinyong_platform::violation;
use xinyong_proto::common::v1::FieldViolation;
use xinyong_proto::ingestion::v1 as pb;

/// A signature checked, as it is stored with the record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Signed {
    pub certificate_sha256: Vec<u8>,
    /// DER.
    pub certificate: Vec<u8>,
    pub signed_input: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The record an input holds, with its signature checked when it is a signed one: then the record
/// is the one encoded in `signed_input`. `certificate` is the one the caller authenticated with.
pub fn open(
    input: pb::RecordInput,
    certificate: Option<&[u8]>,
) -> Result<(pb::RecordInput, Option<Signed>), Vec<FieldViolation>> {
    match (input.signed_input.is_empty(), input.signature.is_empty()) {
        (true, true) => return Ok((input, None)),
        (true, false) => return Err(vec![violation("signed_input", "required with a signature: the bytes signed")]),
        (false, true) => return Err(vec![violation("signature", "required with signed_input")]),
        (false, false) => {}
    }
    let outside = pb::RecordInput { signed_input: Vec::new(), signature: Vec::new(), ..input.clone() };
    if outside != pb::RecordInput::default() {
        return Err(vec![violation(
            "signed_input",
            "a signed record carries its fields in signed_input alone; leave the others empty",
        )]);
    }
    let certificate = certificate.ok_or_else(|| {
        vec![violation(
            "signature",
            "a signed record is submitted by a call authenticated with the department's client certificate (the gateway's TLS port, no bearer token)",
        )]
    })?;
    if !verifies(certificate, &input.signed_input, &input.signature) {
        return Err(vec![violation(
            "signature",
            "does not verify over signed_input with the key of the client certificate the call was authenticated with",
        )]);
    }
    let record = pb::RecordInput::decode(input.signed_input.as_slice())
        .map_err(|error| vec![violation("signed_input", format!("not an encoded RecordInput: {error}"))])?;
    if !record.signed_input.is_empty() || !record.signature.is_empty() {
        return Err(vec![violation("signed_input", "holds a signed record itself; sign the record's fields")]);
    }
    let signed = Signed {
        certificate_sha256: Sha256::digest(certificate).to_vec(),
        certificate: certificate.to_vec(),
        signed_input: input.signed_input,
        signature: input.signature,
    };
    Ok((record, Some(signed)))
}

/// Whether `signature` is a signature over `message` by the key of `certificate` (DER), under any
/// algorithm its key allows.
pub fn verifies(certificate: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let certificate = rustls_pki_types::CertificateDer::from(certificate);
    let Ok(certificate) = webpki::EndEntityCert::try_from(&certificate) else {
        return false;
    };
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .any(|algorithm| certificate.verify_signature(*algorithm, message, signature).is_ok())
}

/// A stored signature as the API shows it.
pub fn to_proto(signed: Signed) -> pb::RecordSignature {
    let pem = {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(&signed.certificate);
        let lines: Vec<&str> =
            text.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap_or_default()).collect();
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
    };
    pb::RecordSignature {
        signed_input: signed.signed_input,
        signature: signed.signature,
        certificate_pem: pem,
        certificate_sha256: hex::encode(&signed.certificate_sha256),
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tls/").to_owned() + name)
            .expect("a fixture")
    }

    fn certificate(name: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(&fixture(name)).expect("a fixture certificate").to_vec()
    }

    #[test]
    fn a_signature_made_by_openssl_verifies_with_its_certificate_only() {
        // tests/fixtures/tls/make.sh: `openssl dgst -sha256 -sign department.key`.
        let (message, signature) = (fixture("signed.txt"), fixture("department.sig"));
        assert!(verifies(&certificate("department.pem"), &message, &signature));
        assert!(!verifies(&certificate("unregistered.pem"), &message, &signature), "another key");
        let mut changed = message.clone();
        changed[0] ^= 1;
        assert!(!verifies(&certificate("department.pem"), &changed, &signature), "other bytes");
        assert!(!verifies(b"not a certificate", &message, &signature));
    }

    fn fields() -> pb::RecordInput {
        pb::RecordInput { credit_code: "91110000600037341L".into(), ..pb::RecordInput::default() }
    }

    fn reasons(result: Result<(pb::RecordInput, Option<Signed>), Vec<FieldViolation>>) -> Vec<(String, String)> {
        result.unwrap_err().into_iter().map(|violation| (violation.field, violation.reason)).collect()
    }

    #[test]
    fn an_unsigned_input_passes_as_it_is() {
        assert_eq!(open(fields(), None).unwrap(), (fields(), None));
    }

    #[test]
    fn a_signed_input_is_refused_naming_what_is_wrong() {
        let signed = |signed_input: Vec<u8>, signature: Vec<u8>| pb::RecordInput {
            signed_input,
            signature,
            ..pb::RecordInput::default()
        };
        let certificate = certificate("department.pem");
        let halves = [signed(vec![1], vec![]), signed(vec![], vec![1])];
        assert_eq!(reasons(open(halves[0].clone(), Some(&certificate)))[0].0, "signature");
        assert_eq!(reasons(open(halves[1].clone(), Some(&certificate)))[0].0, "signed_input");
        let both = pb::RecordInput { credit_code: "91110000600037341L".into(), ..signed(vec![1], vec![1]) };
        assert!(reasons(open(both, Some(&certificate)))[0].1.contains("leave the others empty"));
        let unauthenticated = reasons(open(signed(vec![1], vec![1]), None));
        assert!(unauthenticated[0].1.contains("client certificate"), "{unauthenticated:?}");
        let forged = reasons(open(signed(fields().encode_to_vec(), vec![1; 72]), Some(&certificate)));
        assert_eq!(forged[0].0, "signature");
        assert!(forged[0].1.contains("does not verify"), "{forged:?}");
    }
}
