//! What `CheckEntity` answers, prepared once and reused while nothing it depends on changes.
//!
//! An answer depends on the subject (its grades and lists), the catalogue, the asking department,
//! the matter and whether the caller may see internal grades, and on nothing else: between two
//! grade changes a subject asked about by one department for one matter gets the same answer, and
//! checks come in far more often than grades change. Building it every time (filtering the
//! catalogue, copying grades and measures into the response) and then writing its JSON and
//! hashing that for the check log was a fifth of the service's CPU a check in the benchmark.
//!
//! A prepared answer holds the very subject and catalogue it was built from (`Arc`s), and is used
//! only while the cache hands out those same ones: a changed subject or catalogue is a new `Arc`,
//! so a stale answer can never be served, and the `Arc`s it holds cannot be freed and reused for
//! something else while it exists.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use xinyong_proto::sanctions::v1 as pb;

use crate::state::Known;
use crate::store::{Answer, MeasureRow};

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
    subject: Known,
    catalogue: Arc<Vec<MeasureRow>>,
    department_id: String,
    matter: i16,
    see_internal: bool,
    pub response: pb::CheckEntityResponse,
    /// Whether measures apply, so the check owes a report (发起—响应—反馈).
    pub owes_report: bool,
    pub stored: Arc<StoredAnswer>,
}

impl Prepared {
    /// Work out the answer for `asker` about the subject `credit_code` as `subject` knows it.
    pub fn new(
        credit_code: &str,
        subject: Known,
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
            subject,
            catalogue,
            department_id: asker.department_id.to_owned(),
            matter: asker.matter,
            see_internal: asker.see_internal,
            response,
            owes_report,
            stored,
        })
    }

    fn answers(&self, asker: &Asker) -> bool {
        self.department_id == asker.department_id
            && self.matter == asker.matter
            && self.see_internal == asker.see_internal
    }

    fn built_from(&self, subject: &Known, catalogue: &Arc<Vec<MeasureRow>>) -> bool {
        Arc::ptr_eq(&self.subject, subject) && Arc::ptr_eq(&self.catalogue, catalogue)
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

/// Prepared answers by credit code. Bounded: past [`Answers::CAPACITY`] answers it starts again
/// empty, like the subject cache it follows.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<Mutex<Held>>);

#[derive(Debug, Default)]
struct Held {
    by_code: HashMap<String, Vec<Arc<Prepared>>>,
    count: usize,
}

impl Answers {
    /// About 1 KiB each: 20 MiB at most.
    pub const CAPACITY: usize = 20_000;

    /// The answer prepared for `asker` from this very `subject` and `catalogue`, if there is one.
    pub fn get(
        &self,
        credit_code: &str,
        subject: &Known,
        catalogue: &Arc<Vec<MeasureRow>>,
        asker: &Asker,
    ) -> Option<Arc<Prepared>> {
        let held = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.by_code
            .get(credit_code)?
            .iter()
            .find(|prepared| prepared.answers(asker) && prepared.built_from(subject, catalogue))
            .cloned()
    }

    /// Keep `prepared` for the next asker like it; answers built from another subject or
    /// catalogue than it are dropped, as they will not be asked for again.
    pub fn keep(&self, credit_code: &str, prepared: Arc<Prepared>) {
        let mut held = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.count >= Self::CAPACITY {
            held.by_code.clear();
            held.count = 0;
        }
        let Held { by_code, count } = &mut *held;
        let kept = by_code.entry(credit_code.to_owned()).or_default();
        let before = kept.len();
        kept.retain(|other| {
            other.built_from(&prepared.subject, &prepared.catalogue)
                && !other.answers(&Asker {
                    department_id: &prepared.department_id,
                    matter: prepared.matter,
                    see_internal: prepared.see_internal,
                })
        });
        kept.push(prepared);
        *count = *count + kept.len() - before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GradeRow, Subject};

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

    fn subject(grade: i16) -> Known {
        Arc::new(Subject {
            grades: vec![GradeRow {
                scheme: "public_credit".to_owned(),
                grade,
                rule_set_version: 1,
                internal: false,
                disputed_record_ids: vec!["r-1".to_owned()],
            }],
            lists: Vec::new(),
        })
    }

    const CODE: &str = "91110108MA01ABCD5X";

    fn asker(department_id: &str) -> Asker<'_> {
        Asker { department_id, matter: 3, see_internal: false }
    }

    #[test]
    fn an_answer_is_reused_only_for_the_same_subject_catalogue_and_asker() {
        let answers = Answers::default();
        let catalogue = Arc::new(vec![measure("M1", &[3], &["samr"])]);
        let graded_c = subject(3);
        let prepared = Arc::new(Prepared::new(CODE, graded_c.clone(), catalogue.clone(), &asker("samr")).unwrap());
        assert_eq!(prepared.response.measures.len(), 1);
        assert!(prepared.owes_report);
        answers.keep(CODE, prepared.clone());

        let again = answers.get(CODE, &graded_c, &catalogue, &asker("samr")).expect("kept");
        assert!(Arc::ptr_eq(&again, &prepared));
        // Another department, another matter, the internal grades: not the same answer.
        assert!(answers.get(CODE, &graded_c, &catalogue, &asker("tax")).is_none());
        assert!(answers.get(CODE, &graded_c, &catalogue, &Asker { matter: 4, ..asker("samr") }).is_none());
        assert!(answers.get(CODE, &graded_c, &catalogue, &Asker { see_internal: true, ..asker("samr") }).is_none());
        // The same grades read again are another state of the subject: prepared anew.
        assert!(answers.get(CODE, &subject(3), &catalogue, &asker("samr")).is_none());
        // A changed catalogue too.
        let changed = Arc::new(vec![measure("M1", &[3, 4], &["samr"])]);
        assert!(answers.get(CODE, &graded_c, &changed, &asker("samr")).is_none());
    }

    #[test]
    fn a_newer_answer_replaces_what_it_makes_stale() {
        let answers = Answers::default();
        let catalogue = Arc::new(vec![measure("M1", &[3], &[])]);
        let graded_c = subject(3);
        for department in ["samr", "tax"] {
            let prepared = Prepared::new(CODE, graded_c.clone(), catalogue.clone(), &asker(department)).unwrap();
            answers.keep(CODE, Arc::new(prepared));
        }
        assert_eq!(answers.0.lock().unwrap().count, 2);
        let graded_a = subject(1);
        let prepared = Arc::new(Prepared::new(CODE, graded_a.clone(), catalogue.clone(), &asker("samr")).unwrap());
        assert!(prepared.response.measures.is_empty());
        assert!(!prepared.owes_report);
        answers.keep(CODE, prepared);
        // Both answers about the C grade are gone; only the new one is held.
        assert_eq!(answers.0.lock().unwrap().count, 1);
        assert!(answers.get(CODE, &graded_c, &catalogue, &asker("tax")).is_none());
        assert!(answers.get(CODE, &graded_a, &catalogue, &asker("samr")).is_some());
    }

    #[test]
    fn the_stored_digest_is_the_sha256_of_the_stored_json() {
        let prepared = Prepared::new(CODE, subject(3), Arc::new(Vec::new()), &asker("samr")).unwrap();
        let answer: Answer = serde_json::from_str(&prepared.stored.json).unwrap();
        assert_eq!(answer.grades[0].grade, 3);
        assert_eq!(answer.disputed_record_ids, vec!["r-1".to_owned()]);
        assert_eq!(prepared.stored.digest, <[u8; 32]>::from(Sha256::digest(prepared.stored.json.as_bytes())));
    }
}
