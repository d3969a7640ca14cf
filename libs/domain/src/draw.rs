//! The draw of random inspections (双随机: random subjects, random inspectors; seed 002 art. 8,
//! 001 四(三)): which subjects of a plan's population are inspected, and by whom.
//!
//! A draw must be reproducible and checkable afterwards (DOMAIN.md "Random inspections"): it is a
//! pure function of a seed, the population (each subject with its grade), the inspector directory
//! and the plan's rules. Nothing depends on the order the inputs come in:
//! - subjects are drawn per grade (the plan's ratio for that grade), taking those whose
//!   SHA-256(seed, code) is lowest: a seeded random order that anyone can recompute. A plan may
//!   draw the subjects on the abnormal-operation or serious-dishonesty list as a group of their own
//!   at a ratio of its own (100% in some provinces, DOMAIN.md), whatever their grade;
//! - inspectors for each drawn subject, in code order, are those qualified for one of the plan's
//!   items and without a conflict of interest (回避), fewest visits so far first, ties by
//!   SHA-256(seed, code, inspector): the work is spread evenly and the choice is still random.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

/// A subject of the population, with its grade under the plan's scheme (`common.v1.Grade`'s
/// number; 0 when it has none yet), and whether it stands on the abnormal-operation or the
/// serious-dishonesty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub credit_code: String,
    pub grade: i32,
    pub listed: bool,
}

/// An active inspector of the directory, as the draw saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inspector {
    pub inspector_id: String,
    pub department_id: String,
    pub qualifications: Vec<String>,
    /// Credit codes the inspector must not inspect.
    pub recusals: Vec<String>,
}

/// What a plan asks of the draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Percent of each grade's subjects to draw; grades not listed use `default_percent`.
    pub ratios: Vec<(i32, f64)>,
    pub default_percent: f64,
    /// Percent of the listed subjects (`Subject::listed`) to draw, as a group of their own; `None`:
    /// they are drawn with their grade.
    pub listed_percent: Option<f64>,
    /// Inspection items; an inspector qualifies with any one of them (none: every inspector).
    pub items: Vec<String>,
    pub inspectors_per_visit: usize,
    /// The departments of a joint plan: each visit takes at least one inspector of each, so that
    /// every department's items are inspected in the one visit (进一次门、查多项事). Empty (or one
    /// department): any eligible inspector.
    pub departments: Vec<String>,
}

/// One visit: a subject and its inspectors (sorted by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub credit_code: String,
    pub inspector_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    #[error(
        "subject {credit_code} has {eligible} eligible inspectors (qualified for the plan's items, without a conflict \
         of interest) and the plan needs {needed} a visit"
    )]
    NotEnoughInspectors { credit_code: String, eligible: usize, needed: usize },
    #[error(
        "subject {credit_code} has no eligible inspector of {department}, and a joint plan's visit takes one of each \
         of its departments"
    )]
    DepartmentUnstaffed { credit_code: String, department: String },
}

/// How many of `count` subjects `percent` means: rounded up, so that a ratio above zero inspects
/// at least one of a small group (local rules ask for at least 5%, not less). Percent is taken to
/// a hundredth, in integers, so that the count never depends on floating-point rounding.
pub fn sample_size(count: usize, percent: f64) -> usize {
    let hundredths = (percent.clamp(0.0, 100.0) * 100.0).round() as u128;
    let wanted = (count as u128 * hundredths).div_ceil(10_000);
    (wanted as usize).min(count)
}

fn rank(seed: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((seed.len() as u64).to_be_bytes());
    hasher.update(seed);
    for part in parts {
        // Length-prefixed, so that no two different lists of parts hash the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The stratum of the listed subjects when a plan draws them apart: below every grade.
const LISTED: i32 = i32::MIN;

impl Rules {
    fn percent(&self, stratum: i32) -> f64 {
        if stratum == LISTED {
            return self.listed_percent.unwrap_or(self.default_percent);
        }
        self.ratios.iter().find(|(grade, _)| *grade == stratum).map_or(self.default_percent, |(_, percent)| *percent)
    }

    fn stratum(&self, subject: &Subject) -> i32 {
        if subject.listed && self.listed_percent.is_some() { LISTED } else { subject.grade }
    }

    fn qualifies(&self, inspector: &Inspector) -> bool {
        self.items.is_empty() || inspector.qualifications.iter().any(|held| self.items.contains(held))
    }
}

/// Draw the visits of a plan. The result is sorted by credit code.
pub fn draw(
    seed: &[u8],
    population: &[Subject],
    inspectors: &[Inspector],
    rules: &Rules,
) -> Result<Vec<Visit>, DrawError> {
    let mut strata: BTreeMap<i32, Vec<([u8; 32], &str)>> = BTreeMap::new();
    for subject in population {
        let key = rank(seed, &[b"subject", subject.credit_code.as_bytes()]);
        strata.entry(rules.stratum(subject)).or_default().push((key, &subject.credit_code));
    }
    let mut drawn: Vec<&str> = Vec::new();
    for (stratum, mut members) in strata {
        let wanted = sample_size(members.len(), rules.percent(stratum));
        members.sort_unstable();
        drawn.extend(members[..wanted].iter().map(|(_, code)| *code));
    }
    drawn.sort_unstable();
    drawn.dedup();

    let mut qualified: Vec<&Inspector> = inspectors.iter().filter(|inspector| rules.qualifies(inspector)).collect();
    qualified.sort_by(|left, right| left.inspector_id.cmp(&right.inspector_id));
    let departments: HashMap<&str, &str> =
        qualified.iter().map(|inspector| (inspector.inspector_id.as_str(), inspector.department_id.as_str())).collect();
    let mut visits_so_far: HashMap<&str, usize> = HashMap::new();
    let mut visits = Vec::with_capacity(drawn.len());
    for code in drawn {
        let mut eligible: Vec<(usize, [u8; 32], &str)> = qualified
            .iter()
            .filter(|inspector| !inspector.recusals.iter().any(|recused| recused == code))
            .map(|inspector| {
                let id = inspector.inspector_id.as_str();
                let load = visits_so_far.get(id).copied().unwrap_or(0);
                (load, rank(seed, &[b"inspector", code.as_bytes(), id.as_bytes()]), id)
            })
            .collect();
        if eligible.len() < rules.inspectors_per_visit {
            return Err(DrawError::NotEnoughInspectors {
                credit_code: code.to_owned(),
                eligible: eligible.len(),
                needed: rules.inspectors_per_visit,
            });
        }
        eligible.sort_unstable();
        // A joint plan's departments each first, their least loaded inspector; then the rest in order.
        let mut picked: Vec<&str> = Vec::with_capacity(rules.inspectors_per_visit);
        if rules.departments.len() > 1 {
            for department in &rules.departments {
                let first = eligible
                    .iter()
                    .map(|(_, _, id)| *id)
                    .find(|id| departments.get(id) == Some(&department.as_str()) && !picked.contains(id));
                match first {
                    Some(id) => picked.push(id),
                    None => {
                        return Err(DrawError::DepartmentUnstaffed {
                            credit_code: code.to_owned(),
                            department: department.clone(),
                        });
                    }
                }
            }
        }
        for (_, _, id) in &eligible {
            if picked.len() >= rules.inspectors_per_visit {
                break;
            }
            if !picked.contains(id) {
                picked.push(id);
            }
        }
        let mut chosen: Vec<String> = Vec::with_capacity(picked.len());
        for id in picked {
            *visits_so_far.entry(id).or_insert(0) += 1;
            chosen.push(id.to_owned());
        }
        chosen.sort_unstable();
        visits.push(Visit { credit_code: code.to_owned(), inspector_ids: chosen });
    }
    Ok(visits)
}

/// SHA-256 (hex) of what a draw used: the population with grades and the inspectors, each in a
/// canonical order, so that the same inputs always give the same digest. A draw's recorded inputs
/// that no longer match its digest have been altered.
pub fn inputs_digest(population: &[Subject], inspectors: &[Inspector]) -> String {
    let mut subjects: Vec<(&str, i32, bool)> =
        population.iter().map(|subject| (subject.credit_code.as_str(), subject.grade, subject.listed)).collect();
    subjects.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(b"xinyong-draw-inputs-v1\n");
    for (code, grade, listed) in subjects {
        // A listed subject says so; an unlisted one hashes as before the flag existed, so the
        // digests of earlier draws still verify.
        if listed {
            hasher.update(format!("s\t{code}\t{grade}\tlisted\n"));
        } else {
            hasher.update(format!("s\t{code}\t{grade}\n"));
        }
    }
    let mut sorted: Vec<&Inspector> = inspectors.iter().collect();
    sorted.sort_by(|left, right| left.inspector_id.cmp(&right.inspector_id));
    for inspector in sorted {
        let mut qualifications = inspector.qualifications.clone();
        qualifications.sort_unstable();
        let mut recusals = inspector.recusals.clone();
        recusals.sort_unstable();
        hasher.update(format!(
            "i\t{}\t{}\t{}\t{}\n",
            inspector.inspector_id,
            inspector.department_id,
            qualifications.join(","),
            recusals.join(",")
        ));
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(per_grade: &[(i32, usize)]) -> Vec<Subject> {
        let mut subjects = Vec::new();
        for (grade, count) in per_grade {
            for index in 0..*count {
                subjects.push(Subject { credit_code: format!("{grade}-{index:05}"), grade: *grade, listed: false });
            }
        }
        subjects
    }

    fn inspectors(count: usize) -> Vec<Inspector> {
        (0..count)
            .map(|index| Inspector {
                inspector_id: format!("insp-{index:03}"),
                department_id: if index % 2 == 0 { "samr".into() } else { "env".into() },
                qualifications: vec!["food".into()],
                recusals: vec![],
            })
            .collect()
    }

    fn rules() -> Rules {
        Rules {
            ratios: vec![(1, 5.0), (2, 20.0), (3, 60.0), (4, 100.0)],
            default_percent: 10.0,
            items: vec!["food".into()],
            inspectors_per_visit: 2,
            departments: vec![],
            listed_percent: None,
        }
    }

    #[test]
    fn listed_subjects_are_drawn_at_their_own_ratio_whatever_their_grade_when_the_plan_says_so() {
        let mut subjects = population(&[(1, 100), (3, 10)]);
        // Ten grade-A subjects stand on a list: at 5% for grade A, one of them at most.
        for subject in subjects.iter_mut().filter(|subject| subject.grade == 1).take(10) {
            subject.listed = true;
        }
        let listed: Vec<&str> =
            subjects.iter().filter(|subject| subject.listed).map(|subject| subject.credit_code.as_str()).collect();
        let all_listed = Rules { listed_percent: Some(100.0), ..rules() };
        let visits = draw(b"seed", &subjects, &inspectors(10), &all_listed).unwrap();
        let drawn: Vec<&str> = visits.iter().map(|visit| visit.credit_code.as_str()).collect();
        assert!(listed.iter().all(|code| drawn.contains(code)), "every listed subject: {drawn:?}");
        // The other 90 grade-A subjects at 5%: 5; grade C at 60%: 6.
        assert_eq!(drawn.len(), 10 + 5 + 6);
        // Without the rule the listed ones are just grade A: 5 of 100.
        let by_grade = draw(b"seed", &subjects, &inspectors(10), &rules()).unwrap();
        assert_eq!(by_grade.iter().filter(|visit| visit.credit_code.starts_with("1-")).count(), 5);
        // A listed subject changes the digest; the unlisted hash as before the flag existed.
        let unlisted = population(&[(1, 100), (3, 10)]);
        assert_ne!(inputs_digest(&subjects, &[]), inputs_digest(&unlisted, &[]));
        assert_eq!(
            inputs_digest(&unlisted[..1], &[]),
            {
                let mut hasher = Sha256::new();
                hasher.update(b"xinyong-draw-inputs-v1\n");
                hasher.update(b"s\t1-00000\t1\n");
                hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect::<String>()
            },
            "the digest of a draw made before the flag"
        );
    }

    #[test]
    fn each_grade_is_drawn_at_its_ratio_rounded_up() {
        let subjects = population(&[(1, 200), (2, 50), (3, 7), (4, 3), (0, 11)]);
        let visits = draw(b"seed", &subjects, &inspectors(10), &rules()).unwrap();
        let count = |prefix: &str| visits.iter().filter(|visit| visit.credit_code.starts_with(prefix)).count();
        assert_eq!((count("1-"), count("2-"), count("3-"), count("4-"), count("0-")), (10, 10, 5, 3, 2));
        assert_eq!(sample_size(3, 33.33), 1);
        assert_eq!(sample_size(100, 5.0), 5);
        assert_eq!(sample_size(101, 5.0), 6, "5.05 rounds up");
        assert_eq!(sample_size(10, 0.0), 0);
        assert_eq!(sample_size(10, 250.0), 10);
    }

    #[test]
    fn the_same_inputs_in_any_order_give_the_same_draw_and_another_seed_another() {
        let subjects = population(&[(1, 300), (3, 40)]);
        let staff = inspectors(9);
        let first = draw(b"2026-plan-7", &subjects, &staff, &rules()).unwrap();
        let mut reversed = subjects.clone();
        reversed.reverse();
        let mut staff_reversed = staff.clone();
        staff_reversed.reverse();
        assert_eq!(draw(b"2026-plan-7", &reversed, &staff_reversed, &rules()).unwrap(), first);
        assert_ne!(draw(b"2026-plan-8", &subjects, &staff, &rules()).unwrap(), first);
        assert_eq!(inputs_digest(&subjects, &staff), inputs_digest(&reversed, &staff_reversed));
        let mut changed = subjects.clone();
        changed[0].grade = 2;
        assert_ne!(inputs_digest(&changed, &staff), inputs_digest(&subjects, &staff));
    }

    #[test]
    fn inspectors_are_qualified_never_recused_distinct_and_evenly_loaded() {
        let subjects = population(&[(4, 30)]);
        let mut staff = inspectors(6);
        staff[0].recusals = subjects.iter().map(|subject| subject.credit_code.clone()).collect();
        staff[1].qualifications = vec!["tax".into()];
        let visits = draw(b"s", &subjects, &staff, &rules()).unwrap();
        assert_eq!(visits.len(), 30);
        let mut load: HashMap<&str, usize> = HashMap::new();
        for visit in &visits {
            assert_eq!(visit.inspector_ids.len(), 2);
            assert_ne!(visit.inspector_ids[0], visit.inspector_ids[1]);
            for id in &visit.inspector_ids {
                assert!(id != "insp-000" && id != "insp-001", "{id} is recused or unqualified");
                *load.entry(id).or_insert(0) += 1;
            }
        }
        assert_eq!(load.len(), 4);
        assert!(load.values().all(|visits| *visits == 15), "60 places over 4 inspectors: {load:?}");
    }

    #[test]
    fn a_joint_plans_visit_takes_an_inspector_of_each_department() {
        let subjects = population(&[(4, 20)]);
        // Three of samr (even ids), one of env (insp-001): without the rule most visits would be
        // samr's alone.
        let mut staff = inspectors(6);
        staff[3].department_id = "samr".into();
        staff[5].department_id = "samr".into();
        let joint = Rules { departments: vec!["env".into(), "samr".into()], ..rules() };
        let visits = draw(b"s", &subjects, &staff, &joint).unwrap();
        for visit in &visits {
            assert!(visit.inspector_ids.contains(&"insp-001".to_owned()), "{visit:?}");
            assert_eq!(visit.inspector_ids.len(), 2);
        }
        let mut without_env = staff.clone();
        without_env[1].recusals = vec!["4-00007".into()];
        let error = draw(b"s", &subjects, &without_env, &joint).unwrap_err();
        assert_eq!(error, DrawError::DepartmentUnstaffed { credit_code: "4-00007".into(), department: "env".into() });
    }

    #[test]
    fn too_few_eligible_inspectors_name_the_subject() {
        let subjects = population(&[(4, 2)]);
        let mut staff = inspectors(2);
        staff[1].recusals = vec!["4-00001".into()];
        let error = draw(b"s", &subjects, &staff, &rules()).unwrap_err();
        assert_eq!(error, DrawError::NotEnoughInspectors { credit_code: "4-00001".into(), eligible: 1, needed: 2 });
    }
}
