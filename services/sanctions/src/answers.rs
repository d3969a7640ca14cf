//! What `CheckEntity` answers, prepared once and reused while nothing it depends on changes.
//!
//! An answer depends on the subject (its grades and lists), the catalogue, the asking department,
//! the matter and whether the caller may see internal grades, and on nothing else: between two
//! grade changes a subject asked about by one department for one matter gets the same answer, and
//! checks come in far more often than grades change. It was built on every call (the catalogue
//! filtered, grades and measures copied into the response), and its JSON written and hashed again
//! for the check log: half of the check log writer's CPU in the benchmark's profile.
//!
//! Prepared answers are kept with the subject's copy in the cache ([`crate::state::KnownSubject`]):
//! a changed subject is a new copy that starts without any, so an answer about an old state of the
//! subject cannot be served. Each holds the very catalogue it was built from (an `Arc`) and is
//! used only while the catalogue in force is that same one; holding it, the `Arc` cannot be freed
//! and reused for another catalogue while the answer exists.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prost::bytes::{Buf, BufMut};
use prost::{DecodeError, Message, encoding};
use sha2::{Digest, Sha256};
use xinyong_proto::sanctions::v1 as pb;

use crate::store::{Answer, MeasureRow, Subject};

/// What a check stores about its answer: the answer's JSON and its SHA-256 (the key it is stored
/// under in `check_answers`).
#[derive(Debug)]
pub struct StoredAnswer {
    pub digest: [u8; 32],
    pub json: String,
}

impl StoredAnswer {
    pub fn of(answer: &Answer) -> Result<StoredAnswer, serde_json::Error> {
        let json = serde_json::to_string(answer)?;
        Ok(StoredAnswer { digest: Sha256::digest(json.as_bytes()).into(), json })
    }
}

/// Who asks, about which matter, seeing what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker<'a> {
    pub department_id: &'a str,
    pub matter: i16,
    pub see_internal: bool,
}

/// An answer ready to send: the response lacks only its check id and time.
#[derive(Debug)]
pub struct Prepared {
    catalogue: Arc<Vec<MeasureRow>>,
    department_id: String,
    matter: i16,
    see_internal: bool,
    /// The `CheckEntityResponse` without `check_id` and `checked_at`, encoded: a call adds those
    /// two fields around these bytes ([`CheckAnswer`]) instead of copying every string of the
    /// response into a new message and encoding it again.
    encoded: Vec<u8>,
    /// Whether measures apply, so the check owes a report (发起—响应—反馈).
    pub owes_report: bool,
    pub stored: Arc<StoredAnswer>,
}

impl Prepared {
    /// Work out the answer for `asker` about the subject `credit_code` as `subject` describes it.
    pub fn new(
        credit_code: &str,
        subject: &Subject,
        catalogue: Arc<Vec<MeasureRow>>,
        asker: &Asker,
    ) -> Result<Prepared, serde_json::Error> {
        let visible: Vec<_> =
            subject.grades.iter().filter(|grade| asker.see_internal || !grade.internal).cloned().collect();
        let mut disputed: BTreeSet<String> = BTreeSet::new();
        for grade in &visible {
            disputed.extend(grade.disputed_record_ids.iter().cloned());
        }
        let mut answer = Answer {
            grades: visible,
            lists: subject.lists.clone(),
            measures: Vec::new(),
            disputed_record_ids: disputed.into_iter().collect(),
        };
        let measures: Vec<&MeasureRow> =
            catalogue.iter().filter(|measure| applies(measure, asker.department_id, asker.matter, &answer)).collect();
        answer.measures = measures.iter().map(|measure| measure.code.clone()).collect();
        let response = pb::CheckEntityResponse {
            check_id: String::new(),
            credit_code: credit_code.to_owned(),
            grades: answer
                .grades
                .iter()
                .map(|grade| pb::SchemeGrade {
                    scheme: grade.scheme.clone(),
                    grade: i32::from(grade.grade),
                    rule_set_version: grade.rule_set_version,
                })
                .collect(),
            lists: answer.lists.iter().map(|list| i32::from(*list)).collect(),
            measures: measures.iter().map(|measure| to_check_answer(measure)).collect(),
            disputed_record_ids: answer.disputed_record_ids.clone(),
            checked_at: None,
        };
        let owes_report = !measures.is_empty();
        let stored = Arc::new(StoredAnswer::of(&answer)?);
        Ok(Prepared {
            catalogue,
            department_id: asker.department_id.to_owned(),
            matter: asker.matter,
            see_internal: asker.see_internal,
            encoded: response.encode_to_vec(),
            owes_report,
            stored,
        })
    }

    /// The response as a message, without the check's id and time.
    pub fn response(&self) -> pb::CheckEntityResponse {
        pb::CheckEntityResponse::decode(self.encoded.as_slice())
            .expect("a prepared answer decodes: it was encoded here")
    }

    fn answers(&self, asker: &Asker) -> bool {
        // The numbers first: a subject's answers differ mostly by matter, and comparing those
        // spares most of the department names a compare.
        self.matter == asker.matter
            && self.see_internal == asker.see_internal
            && self.department_id == asker.department_id
    }

    fn built_from(&self, catalogue: &Arc<Vec<MeasureRow>>) -> bool {
        Arc::ptr_eq(&self.catalogue, catalogue)
    }
}

/// `CheckEntityResponse` as sent: the prepared answer's bytes with the check's id before them and
/// its time after, which is what prost would write for the same message (fields in number order).
#[derive(Debug, Default)]
pub struct CheckAnswer {
    pub check_id: String,
    pub checked_at: prost_types::Timestamp,
    pub prepared: Option<Arc<Prepared>>,
}

impl CheckAnswer {
    /// The same answer as a message.
    pub fn into_response(self) -> pb::CheckEntityResponse {
        let mut response = self.prepared.map(|prepared| prepared.response()).unwrap_or_default();
        response.check_id = self.check_id;
        response.checked_at = Some(self.checked_at);
        response
    }
}

impl Message for CheckAnswer {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::string::encode(1, &self.check_id, buf);
        if let Some(prepared) = &self.prepared {
            buf.put_slice(&prepared.encoded);
        }
        encoding::message::encode(7, &self.checked_at, buf);
    }

    /// Only ever sent; what a decoder would read is skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: encoding::WireType,
        buf: &mut impl Buf,
        ctx: encoding::DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        encoding::string::encoded_len(1, &self.check_id)
            + self.prepared.as_ref().map_or(0, |prepared| prepared.encoded.len())
            + encoding::message::encoded_len(7, &self.checked_at)
    }

    fn clear(&mut self) {
        *self = CheckAnswer::default();
    }
}

/// Whether `measure` is for `department` handling `matter` about a subject with the grades and
/// lists of `answer`.
fn applies(measure: &MeasureRow, department: &str, matter: i16, answer: &Answer) -> bool {
    let for_department =
        measure.executing_departments.is_empty() || measure.executing_departments.iter().any(|d| d == department);
    let for_matter = measure.matter_types.is_empty() || measure.matter_types.contains(&matter);
    let by_grade =
        answer.grades.iter().any(|grade| grade.scheme == measure.scheme && measure.grades.contains(&grade.grade));
    let by_list = answer.lists.iter().any(|list| measure.lists.contains(list));
    for_department && for_matter && (by_grade || by_list)
}

/// A measure as `CheckEntity` shows it: what to apply and on what basis. Which departments,
/// matters, grades and lists it is for are the catalogue's business (`ListMeasures`), and an
/// answer without them is a third smaller.
pub fn to_check_answer(row: &MeasureRow) -> pb::Measure {
    pb::Measure {
        code: row.code.clone(),
        title: row.title.clone(),
        legal_basis: row.legal_basis.clone(),
        source: row.source.clone(),
        target: i32::from(row.target),
        incentive: row.incentive,
        ..Default::default()
    }
}

/// The answers prepared from one copy of a subject, for the askers that asked. Few: a subject is
/// checked by the departments that handle its matters; past [`PreparedAnswers::LIMIT`] the oldest
/// goes.
#[derive(Debug, Default)]
pub struct PreparedAnswers(Mutex<Vec<Arc<Prepared>>>);

impl PreparedAnswers {
    pub const LIMIT: usize = 16;

    /// The answer prepared for `asker` from `catalogue`, if there is one.
    fn get(&self, catalogue: &Arc<Vec<MeasureRow>>, asker: &Asker) -> Option<Arc<Prepared>> {
        let held = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.iter().find(|prepared| prepared.answers(asker) && prepared.built_from(catalogue)).cloned()
    }

    /// The answer for `asker` about `subject` (this copy's subject), prepared now and kept when
    /// there is none from `catalogue` yet.
    pub fn get_or_prepare(
        &self,
        credit_code: &str,
        subject: &Subject,
        catalogue: Arc<Vec<MeasureRow>>,
        asker: &Asker,
    ) -> Result<Arc<Prepared>, serde_json::Error> {
        if let Some(prepared) = self.get(&catalogue, asker) {
            return Ok(prepared);
        }
        let prepared = Arc::new(Prepared::new(credit_code, subject, catalogue, asker)?);
        self.keep(prepared.clone());
        Ok(prepared)
    }

    /// Keep `prepared` for the next asker like it; answers from another catalogue go, as they
    /// will not be asked for again.
    fn keep(&self, prepared: Arc<Prepared>) {
        let mut held = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let asker = Asker {
            department_id: &prepared.department_id,
            matter: prepared.matter,
            see_internal: prepared.see_internal,
        };
        held.retain(|other| other.built_from(&prepared.catalogue) && !other.answers(&asker));
        if held.len() >= Self::LIMIT {
            held.remove(0);
        }
        held.push(prepared);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GradeRow;

    fn measure(code: &str, grades: &[i16], departments: &[&str]) -> MeasureRow {
        MeasureRow {
            code: code.to_owned(),
            title: format!("{code} title"),
            legal_basis: "basis".to_owned(),
            source: "000 art. 11".to_owned(),
            executing_departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            grades: grades.to_vec(),
            lists: Vec::new(),
            scheme: "public_credit".to_owned(),
            target: 1,
            matter_types: Vec::new(),
            incentive: false,
        }
    }

    fn subject(grade: i16) -> Subject {
        Subject {
            grades: vec![GradeRow {
                scheme: "public_credit".to_owned(),
                grade,
                rule_set_version: 1,
                internal: false,
                disputed_record_ids: vec!["r-1".to_owned()],
            }],
            lists: Vec::new(),
        }
    }

    const CODE: &str = "91110108MA01ABCD5X";

    fn asker(department_id: &str) -> Asker<'_> {
        Asker { department_id, matter: 3, see_internal: false }
    }

    fn prepared(grade: i16, catalogue: &Arc<Vec<MeasureRow>>, asker: &Asker) -> Arc<Prepared> {
        Arc::new(Prepared::new(CODE, &subject(grade), catalogue.clone(), asker).unwrap())
    }

    #[test]
    fn an_answer_is_reused_only_for_the_same_catalogue_and_asker() {
        let answers = PreparedAnswers::default();
        let catalogue = Arc::new(vec![measure("M1", &[3], &["samr"]), measure("M2", &[3], &["tax"])]);
        let first = prepared(3, &catalogue, &asker("samr"));
        assert_eq!(first.response().measures.len(), 1);
        assert_eq!(first.response().measures[0].code, "M1");
        assert!(first.owes_report);
        answers.keep(first.clone());

        let again = answers.get(&catalogue, &asker("samr")).expect("kept");
        assert!(Arc::ptr_eq(&again, &first));
        // Another department, another matter, the internal grades: not the same answer.
        assert!(answers.get(&catalogue, &asker("tax")).is_none());
        assert!(answers.get(&catalogue, &Asker { matter: 4, ..asker("samr") }).is_none());
        assert!(answers.get(&catalogue, &Asker { see_internal: true, ..asker("samr") }).is_none());
        // A changed catalogue, even one equal to the first, is another catalogue.
        let changed = Arc::new(catalogue.as_ref().clone());
        assert!(answers.get(&changed, &asker("samr")).is_none());
    }

    #[test]
    fn a_newer_answer_replaces_what_it_makes_stale_and_the_oldest_goes_past_the_limit() {
        let answers = PreparedAnswers::default();
        let catalogue = Arc::new(vec![measure("M1", &[3], &[])]);
        answers.keep(prepared(3, &catalogue, &asker("samr")));
        answers.keep(prepared(3, &catalogue, &asker("tax")));
        assert_eq!(answers.len(), 2);
        // The same asker again: replaced, not added.
        answers.keep(prepared(3, &catalogue, &asker("tax")));
        assert_eq!(answers.len(), 2);
        // Another catalogue: what came from the old one goes.
        let changed = Arc::new(vec![measure("M1", &[3, 4], &[])]);
        answers.keep(prepared(3, &changed, &asker("samr")));
        assert_eq!(answers.len(), 1);
        assert!(answers.get(&catalogue, &asker("tax")).is_none());
        let departments: Vec<String> = (0..PreparedAnswers::LIMIT + 1).map(|n| format!("department-{n}")).collect();
        for department in &departments {
            answers.keep(prepared(3, &changed, &asker(department)));
        }
        assert_eq!(answers.len(), PreparedAnswers::LIMIT);
        assert!(answers.get(&changed, &asker("samr")).is_none(), "the oldest went");
        assert!(answers.get(&changed, &asker(&departments[PreparedAnswers::LIMIT])).is_some());
    }

    #[test]
    fn a_check_answer_is_sent_as_the_same_bytes_as_the_generated_message() {
        let catalogue = Arc::new(vec![measure("M1", &[3], &["samr"])]);
        let answer = CheckAnswer {
            check_id: "0190f3a2-7c1e-7000-8000-000000000001".to_owned(),
            checked_at: prost_types::Timestamp { seconds: 1_763_900_000, nanos: 123_000 },
            prepared: Some(prepared(3, &catalogue, &asker("samr"))),
        };
        let sent = answer.encode_to_vec();
        assert_eq!(sent.len(), answer.encoded_len());
        let response = answer.into_response();
        assert_eq!(response.check_id, "0190f3a2-7c1e-7000-8000-000000000001");
        assert_eq!(response.credit_code, CODE);
        assert_eq!(response.measures[0].code, "M1");
        assert_eq!(response.grades[0].grade, 3);
        assert_eq!(response.disputed_record_ids, vec!["r-1".to_owned()]);
        assert_eq!(sent, response.encode_to_vec());
        assert_eq!(pb::CheckEntityResponse::decode(sent.as_slice()).unwrap(), response);
    }

    #[test]
    fn the_stored_digest_is_the_sha256_of_the_stored_json() {
        let prepared = prepared(1, &Arc::new(Vec::new()), &asker("samr"));
        assert!(prepared.response().measures.is_empty());
        assert!(!prepared.owes_report);
        let answer: Answer = serde_json::from_str(&prepared.stored.json).unwrap();
        assert_eq!(answer.grades[0].grade, 1);
        assert_eq!(answer.disputed_record_ids, vec!["r-1".to_owned()]);
        assert_eq!(prepared.stored.digest, <[u8; 32]>::from(Sha256::digest(prepared.stored.json.as_bytes())));
    }
}
