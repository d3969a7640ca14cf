//! Whom a call is about, for its audit entry. Over-privileged queries are an offence (seed 000 art.
//! 21), and an audit answers "who looked at this subject" only if the log says whom each call was
//! about. The gateway forwards calls without decoding them, so for the methods that name one
//! subject it looks at the request's first frame as it passes on, reads the credit code at a known
//! field, and keeps it only if it is a valid unified social credit code and not also a resident ID
//! number (personal data is never logged).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use xinyong_domain::credit_code::CreditCode;

/// Where the subject's credit code is in the request of each method that names one subject: the
/// field numbers from the message down (`[1, 1]`: field 1 of the message in field 1), the first
/// place that holds a code of those a method lists.
const SUBJECT_FIELDS: &[(&str, &[&[u32]])] = &[
    ("xinyong.registry.v1.RegistryService/RegisterEntity", &[&[1, 1]]),
    ("xinyong.registry.v1.RegistryService/UpdateEntity", &[&[1, 1]]),
    ("xinyong.registry.v1.RegistryService/UpdateEntityStatus", &[&[1]]),
    ("xinyong.registry.v1.RegistryService/GetEntity", &[&[1]]),
    // A signed record holds its fields in `signed_input` (10), bytes that are an encoded
    // `RecordInput`: read like a message in a field.
    ("xinyong.ingestion.v1.IngestionService/SubmitRecord", &[&[1, 1], &[1, 10, 1]]),
    ("xinyong.ingestion.v1.IngestionService/ListRecords", &[&[1]]),
    ("xinyong.grading.v1.GradingService/GetGrade", &[&[1]]),
    ("xinyong.grading.v1.GradingService/GetGradeHistory", &[&[1]]),
    ("xinyong.sanctions.v1.SanctionsService/CheckEntity", &[&[1]]),
    ("xinyong.sanctions.v1.SanctionsService/GetSubjectSanctions", &[&[1]]),
    ("xinyong.objections.v1.ObjectionService/FileObjection", &[&[1]]),
    ("xinyong.objections.v1.ObjectionService/ApplyRepair", &[&[1]]),
    ("xinyong.reports.v1.ReportService/IssueReport", &[&[1]]),
    ("xinyong.reports.v1.ReportService/ListReports", &[&[1]]),
];

/// The field paths of the subject in `method`'s request, if it names one.
pub fn field_path(method: &str) -> Option<&'static [&'static [u32]]> {
    SUBJECT_FIELDS.iter().find(|(known, _)| *known == method).map(|(_, paths)| *paths)
}

/// The subject at the first of `paths` in `message` that names one.
pub fn find_any<'a>(message: &'a [u8], paths: &[&[u32]]) -> Option<&'a str> {
    paths.iter().find_map(|path| find(message, path))
}

/// The subject named at `path` of an encoded protobuf `message`, if it is there whole and is a
/// credit code. A message cut short (a first frame that does not hold it all) names none.
pub fn find<'a>(message: &'a [u8], path: &[u32]) -> Option<&'a str> {
    let (&wanted, rest) = path.split_first()?;
    let mut at = 0;
    while at < message.len() {
        let key = varint(message, &mut at)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                varint(message, &mut at)?;
            }
            1 => at = at.checked_add(8)?,
            5 => at = at.checked_add(4)?,
            2 => {
                let length = usize::try_from(varint(message, &mut at)?).ok()?;
                let end = at.checked_add(length)?;
                let value = message.get(at..end)?;
                if field == u64::from(wanted) {
                    return if rest.is_empty() { credit_code(value) } else { find(value, rest) };
                }
                at = end;
            }
            // Groups (3, 4) are not in proto3.
            _ => return None,
        }
    }
    None
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `value` as a credit code, unless it is not one, or is a resident ID number too (a natural
/// person's number can pass the code's checks by chance; it must never reach the log).
fn credit_code(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let code = CreditCode::parse(text).ok()?;
    // Any birth date from 1900 on counts, the future's too: stricter than the registry, and no
    // clock read on the call's path.
    let looks_personal = xinyong_domain::resident_id::validate(text, chrono::NaiveDate::MAX).is_ok();
    (code.as_str() == text && !looks_personal).then_some(text)
}

/// A request body that reads the subject out of its first data frame (a gRPC message: a flag
/// byte, four bytes of length, the message) as the frame passes, into `seen`.
pub struct Tap<B> {
    inner: B,
    paths: Option<&'static [&'static [u32]]>,
    seen: Arc<OnceLock<String>>,
}

impl<B> Tap<B> {
    pub fn new(inner: B, paths: &'static [&'static [u32]], seen: Arc<OnceLock<String>>) -> Tap<B> {
        Tap { inner, paths: Some(paths), seen }
    }
}

impl<B: Body<Data = tonic::codegen::Bytes> + Unpin> Body for Tap<B> {
    type Data = tonic::codegen::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Some(paths) = self.paths.take()
            // Uncompressed (flag 0): the gateway does not inflate requests to look into them.
            && let [0, l1, l2, l3, l4, message @ ..] = data.as_ref()
        {
            let length = u32::from_be_bytes([*l1, *l2, *l3, *l4]) as usize;
            if let Some(subject) = find_any(&message[..length.min(message.len())], paths) {
                let _ = self.seen.set(subject.to_owned());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, value: &[u8]) -> Vec<u8> {
        let mut encoded = vec![((number << 3) | 2) as u8, value.len() as u8];
        encoded.extend_from_slice(value);
        encoded
    }

    #[test]
    fn the_subject_is_read_at_its_field_past_other_fields_and_inside_a_message() {
        let mut check = vec![0x10, 0x03]; // matter_type = 3 before the code
        check.extend(field(1, b"91110000600037341L"));
        assert_eq!(find(&check, &[1]), Some("91110000600037341L"));
        let mut record = field(3, b"penalty");
        record.extend(field(1, b"9144030071526726XG"));
        let submit = field(1, &record);
        assert_eq!(find(&submit, &[1, 1]), Some("9144030071526726XG"));
        assert_eq!(find(&submit, &[1]), None, "a message is not a code");
    }

    #[test]
    fn a_signed_record_names_its_subject_inside_the_signed_bytes() {
        let paths = field_path("xinyong.ingestion.v1.IngestionService/SubmitRecord").unwrap();
        let mut record = field(3, b"penalty");
        record.extend(field(1, b"9144030071526726XG"));
        let mut signed = field(10, &record);
        signed.extend(field(11, &[7; 70]));
        assert_eq!(find_any(&field(1, &signed), paths), Some("9144030071526726XG"));
        assert_eq!(find_any(&field(1, &record), paths), Some("9144030071526726XG"), "and a plain one");
    }

    #[test]
    fn nothing_is_kept_that_is_not_a_credit_code_or_that_is_a_resident_id() {
        assert_eq!(find(&field(1, b"91350100M000100Y4Z"), &[1]), None, "a bad check digit");
        assert_eq!(find(&field(1, b"2024-0001"), &[1]), None);
        assert_eq!(find(&field(2, b"91110000600037341L"), &[1]), None, "another field");
        let cut = field(1, b"91110000600037341L");
        assert_eq!(find(&cut[..10], &[1]), None, "cut short");
        assert_eq!(find(&[0xff, 0xff], &[1]), None, "not protobuf");
        // A resident ID number that passes the credit code's checks as well (one in a few
        // hundred does): personal data, never kept.
        let both = "110105199001030134";
        assert!(CreditCode::parse(both).is_ok());
        assert!(xinyong_domain::resident_id::validate(both, xinyong_domain::calendar::today()).is_ok());
        assert_eq!(find(&field(1, both.as_bytes()), &[1]), None);
    }

    #[test]
    fn only_the_methods_that_name_one_subject_are_looked_into() {
        assert_eq!(field_path("xinyong.sanctions.v1.SanctionsService/CheckEntity"), Some(&[&[1][..]][..]));
        assert!(field_path("xinyong.ingestion.v1.IngestionService/SubmitRecord").is_some());
        assert_eq!(field_path("xinyong.registry.v1.RegistryService/SearchEntities"), None);
    }
}
