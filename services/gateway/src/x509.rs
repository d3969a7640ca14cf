//! The one thing the gateway reads from a certificate itself: when it stops being valid, so that
//! expiry can be watched (the gateway's own certificate) and shown (departments' registered ones).
//! The handshake (rustls) does the checking; this only reads `tbsCertificate.validity.notAfter`
//! (RFC 5280 4.1), walking the DER by hand rather than pulling in an X.509 parser for one field.

use chrono::{DateTime, NaiveDate, Utc};

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many bytes of length follow (at most 4 here).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0_usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`, present from X.509 v2 on.
const VERSION: u8 = 0xa0;

/// The end of a DER certificate's validity period; `None` when it is not a certificate as RFC
/// 5280 lays one out.
pub fn not_after(certificate: &[u8]) -> Option<DateTime<Utc>> {
    let (SEQUENCE, certificate, _) = element(certificate)? else { return None };
    let (SEQUENCE, tbs, _) = element(certificate)? else { return None };
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer: skipped.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else { return None };
    let not_before_and_after = element(validity)?.2;
    let (tag, time, _) = element(not_before_and_after)?;
    time_of(tag, std::str::from_utf8(time).ok()?)
}

/// `YYMMDDHHMMSSZ` (UTCTime, years 1950-2049) or `YYYYMMDDHHMMSSZ` (GeneralizedTime), as RFC 5280
/// requires them: in UTC, with seconds, without fractions.
fn time_of(tag: u8, text: &str) -> Option<DateTime<Utc>> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let short: i32 = digits[..2].parse().ok()?;
            (if short >= 50 { 1900 + short } else { 2000 + short }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |at: usize| rest[at..at + 2].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?
        .and_hms_opt(field(4)?, field(6)?, field(8)?)
        .map(|at| at.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tls/").to_owned() + name;
        CertificateDer::from_pem_file(path).expect("a fixture certificate").to_vec()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn reads_the_end_of_validity_as_openssl_prints_it() {
        // `openssl x509 -noout -enddate -in tests/fixtures/tls/department.pem`: a GeneralizedTime,
        // past 2049.
        assert_eq!(not_after(&fixture("department.pem")), Some(at("2126-12-31T00:00:00Z")));
        // `... -in expired.pem`: a UTCTime.
        assert_eq!(not_after(&fixture("expired.pem")), Some(at("2024-01-31T00:00:00Z")));
    }

    #[test]
    fn reads_both_time_forms() {
        assert_eq!(time_of(UTC_TIME, "491231235959Z"), Some(at("2049-12-31T23:59:59Z")));
        assert_eq!(time_of(UTC_TIME, "500101000000Z"), Some(at("1950-01-01T00:00:00Z")));
        assert_eq!(time_of(GENERALIZED_TIME, "20500101000000Z"), Some(at("2050-01-01T00:00:00Z")));
        assert_eq!(time_of(GENERALIZED_TIME, "20500101000000"), None, "only UTC");
        assert_eq!(time_of(UTC_TIME, "20500101000000Z"), None);
        assert_eq!(time_of(UTC_TIME, "491331235959Z"), None, "no thirteenth month");
    }

    #[test]
    fn what_is_not_a_certificate_has_no_end() {
        let certificate = fixture("department.pem");
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"\x30\x82\xff"), None);
        assert_eq!(not_after(&certificate[..certificate.len() / 3]), None);
        assert_eq!(not_after(b"\x02\x01\x05"), None);
    }
}
