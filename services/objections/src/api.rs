//! `objections.v1.ObjectionService`.

use std::sync::Arc;

use chrono::NaiveDate;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use xinyong_domain::calendar::{Calendar, today};
use xinyong_domain::credit_code::CreditCode;
use xinyong_platform::error::{ApiError, keyset_page, required_text, uuid_page, violation};
use xinyong_platform::identity::{Caller, PERMISSION_ADMIN};
use xinyong_platform::timestamp;
use xinyong_proto::common::v1::{FieldViolation, Nature};
use xinyong_proto::ingestion::v1::{Record, RecordState};
use xinyong_proto::objections::v1 as pb;
use xinyong_proto::objections::v1::objection_service_server::ObjectionService;

use crate::records::Records;
use crate::store::{
    APPROVED, Listing, NewObjection, NewRepair, OPEN, ObjectionRow, PENDING, REFUSED, REJECTED, RepairConflict,
    RepairRow, Store, UPHELD,
};

/// Permission to decide any repair application (a credit office, 信用修复认定单位), besides the
/// department that provided the record.
pub const PERMISSION_CREDIT_REPAIR: &str = "credit_repair";

/// Longest statement, answer, commitment or decision, in characters.
const MAX_TEXT: usize = 2000;
/// Longest own id of an objection or application.
const MAX_SOURCE_ID: usize = 128;
const MAX_EVIDENCE: usize = 20;
const MAX_EVIDENCE_TEXT: usize = 500;

/// Categories that are lists: a subject leaves them by removal (a removal date from the listing
/// department), not by repair.
const LISTS: [&str; 3] = ["serious_dishonesty_list", "dishonest_judgment_debtor", "abnormal_operation_list"];

pub struct Objections {
    store: Store,
    records: Records,
    calendar: Arc<Calendar>,
    answer_within_working_days: u32,
}

impl Objections {
    pub fn new(store: Store, records: Records, answer_within_working_days: u32) -> Objections {
        Objections { store, records, calendar: Arc::new(Calendar::official()), answer_within_working_days }
    }
}

fn internal(error: sqlx::Error) -> Status {
    Status::from(ApiError::from(error))
}

fn id(field: &str, value: &str, what: &str, problems: &mut Vec<FieldViolation>) -> Option<Uuid> {
    let parsed = Uuid::parse_str(value).ok();
    if parsed.is_none() {
        problems
            .push(violation(field, if value.is_empty() { "required".to_owned() } else { format!("not a {what} id") }));
    }
    parsed
}

fn code(value: &str, problems: &mut Vec<FieldViolation>) -> String {
    match CreditCode::parse(value) {
        Ok(code) => code.into_string(),
        Err(error) => {
            problems.push(violation("credit_code", error.to_string()));
            String::new()
        }
    }
}

fn one_id(field: &str, value: &str, what: &str) -> Result<Uuid, Status> {
    let mut problems = Vec::new();
    let parsed = id(field, value, what, &mut problems);
    ApiError::check(problems)?;
    Ok(parsed.unwrap_or_default())
}

/// The record must be the subject's and still in force.
fn belongs(record: &Record, credit_code: &str) -> Result<(), Status> {
    if record.credit_code != credit_code {
        return Err(ApiError::invalid("record_id", format!("not a record of subject {credit_code}")).into());
    }
    match RecordState::try_from(record.state) {
        Ok(RecordState::Withdrawn) => Err(ApiError::FailedPrecondition(format!(
            "record {} is withdrawn: it is no longer published or counted",
            record.record_id
        ))
        .into()),
        Ok(RecordState::Repaired) => Err(ApiError::FailedPrecondition(format!(
            "record {} is repaired: it is no longer published or counted",
            record.record_id
        ))
        .into()),
        _ => Ok(()),
    }
}

fn objection_status(status: i16) -> &'static str {
    match status {
        UPHELD => "upheld",
        REJECTED => "rejected",
        _ => "open",
    }
}

fn objection_proto(row: &ObjectionRow, today: NaiveDate) -> pb::Objection {
    pb::Objection {
        objection_id: row.objection_id.to_string(),
        credit_code: row.credit_code.clone(),
        record_id: row.record_id.to_string(),
        ground: i32::from(row.ground),
        statement: row.statement.clone(),
        filed_by: row.filed_by.clone(),
        department_id: row.department_id.clone(),
        status: i32::from(row.status),
        answer_due_on: row.answer_due_on.to_string(),
        answer: row.answer.clone(),
        filed_at: Some(timestamp(row.filed_at)),
        answered_at: row.answered_at.map(timestamp),
        record_version: row.record_version,
        overdue: row.status == OPEN && row.answer_due_on < today,
        answered_by: row.answered_by.clone(),
    }
}

fn repair_proto(row: &RepairRow) -> pb::Repair {
    pb::Repair {
        repair_id: row.repair_id.to_string(),
        credit_code: row.credit_code.clone(),
        record_id: row.record_id.to_string(),
        commitment: row.commitment.clone(),
        evidence: row.evidence.clone(),
        status: i32::from(row.status),
        decision: row.decision.clone(),
        applied_at: Some(timestamp(row.applied_at)),
        decided_at: row.decided_at.map(timestamp),
        department_id: row.department_id.clone(),
        applied_by: row.applied_by.clone(),
        decided_by: row.decided_by.clone(),
    }
}

/// A retry of a filing must say what the first said; the filer's id names one objection.
fn same_objection(
    row: &ObjectionRow,
    credit_code: &str,
    record_id: Uuid,
    ground: i16,
    statement: &str,
) -> Result<(), Status> {
    if row.credit_code == credit_code
        && row.record_id == record_id
        && row.ground == ground
        && row.statement == statement
    {
        return Ok(());
    }
    Err(ApiError::AlreadyExists(format!(
        "source_objection_id `{}` was used for objection {} with other content",
        row.source_objection_id, row.objection_id
    ))
    .into())
}

fn same_repair(
    row: &RepairRow,
    credit_code: &str,
    record_id: Uuid,
    commitment: &str,
    evidence: &[String],
) -> Result<(), Status> {
    if row.credit_code == credit_code
        && row.record_id == record_id
        && row.commitment == commitment
        && row.evidence == evidence
    {
        return Ok(());
    }
    Err(ApiError::AlreadyExists(format!(
        "source_repair_id `{}` was used for repair {} with other content",
        row.source_repair_id, row.repair_id
    ))
    .into())
}

/// Whether a dishonesty record may be repaired on `today`, and if not, why.
fn repairable(record: &Record, today: NaiveDate) -> Result<(), Status> {
    let nature = Nature::try_from(record.nature).unwrap_or(Nature::Unspecified);
    if !matches!(nature, Nature::GeneralDishonesty | Nature::SeriousDishonesty) {
        return Err(ApiError::FailedPrecondition(format!(
            "record {} is not a dishonesty record: there is nothing to repair",
            record.record_id
        ))
        .into());
    }
    if LISTS.contains(&record.category.as_str()) {
        return Err(ApiError::FailedPrecondition(format!(
            "record {} is a listing ({}): it ends by removal from the list, not by repair",
            record.record_id, record.category
        ))
        .into());
    }
    let Some(from) = xinyong_domain::calendar::parse_day(&record.repair_allowed_from) else {
        return Err(ApiError::FailedPrecondition(format!(
            "record {} is not published: there is nothing to repair",
            record.record_id
        ))
        .into());
    };
    if today < from {
        return Err(ApiError::FailedPrecondition(format!(
            "repair of record {} may be requested from {from}, when its minimum disclosure period ends",
            record.record_id
        ))
        .into());
    }
    Ok(())
}

/// An optional subject filter: empty for every subject.
fn optional_code(text: &str) -> Result<Option<String>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let parsed = code(text, &mut problems);
    ApiError::check(problems)?;
    Ok(Some(parsed))
}

impl Objections {
    async fn objection_row(&self, objection_id: Uuid) -> Result<ObjectionRow, Status> {
        self.store
            .objection(objection_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "objection", key: objection_id.to_string() }.into())
    }

    async fn repair_row(&self, repair_id: Uuid) -> Result<RepairRow, Status> {
        self.store
            .repair(repair_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "repair", key: repair_id.to_string() }.into())
    }

    /// The objection `filed_by` filed under `source`, checked to say the same as this filing.
    async fn refiled(
        &self,
        filed_by: &str,
        source: &str,
        check: impl Fn(&ObjectionRow) -> Result<(), Status>,
    ) -> Result<Option<ObjectionRow>, Status> {
        let Some(row) = self.store.objection_by_source(filed_by, source).await.map_err(internal)? else {
            return Ok(None);
        };
        check(&row)?;
        Ok(Some(row))
    }

    async fn reapplied(
        &self,
        applied_by: &str,
        source: &str,
        check: impl Fn(&RepairRow) -> Result<(), Status>,
    ) -> Result<Option<RepairRow>, Status> {
        let Some(row) = self.store.repair_by_source(applied_by, source).await.map_err(internal)? else {
            return Ok(None);
        };
        check(&row)?;
        Ok(Some(row))
    }
}

#[tonic::async_trait]
impl ObjectionService for Objections {
    async fn file_objection(
        &self,
        request: Request<pb::FileObjectionRequest>,
    ) -> Result<Response<pb::FileObjectionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let credit_code = code(&request.credit_code, &mut problems);
        let record_id = id("record_id", &request.record_id, "record", &mut problems);
        let ground = pb::ObjectionGround::try_from(request.ground).unwrap_or(pb::ObjectionGround::Unspecified);
        if ground == pb::ObjectionGround::Unspecified {
            problems.push(violation("ground", "required: wrong, incomplete, privacy or expired"));
        }
        let statement = required_text("statement", &request.statement, MAX_TEXT, &mut problems);
        let source = required_text("source_objection_id", &request.source_objection_id, MAX_SOURCE_ID, &mut problems);
        ApiError::check(problems)?;
        let record_id = record_id.unwrap_or_default();
        let ground = ground as i16;
        let today = today();
        let same = |row: &ObjectionRow| same_objection(row, &credit_code, record_id, ground, statement);

        // A retry answers from what was stored, without asking ingestion again.
        if let Some(row) = self.refiled(&caller.department_id, source, same).await? {
            return Ok(Response::new(pb::FileObjectionResponse { objection: Some(objection_proto(&row, today)) }));
        }
        let record = self.records.get(&record_id.to_string()).await?;
        belongs(&record, &credit_code)?;
        let new = NewObjection {
            credit_code: &credit_code,
            record_id,
            record_version: record.version,
            ground,
            statement,
            filed_by: &caller.department_id,
            source_objection_id: source,
            department_id: &record.department_id,
            answer_due_on: self.calendar.add_working_days(today, self.answer_within_working_days),
        };
        let row = match self.store.file(&new).await.map_err(internal)? {
            Some(row) => {
                tracing::info!(objection = %row.objection_id, record = %record_id, by = %caller.department_id, "objection filed");
                row
            }
            None => self
                .refiled(&caller.department_id, source, same)
                .await?
                .ok_or_else(|| ApiError::internal("an objection's id was taken and then not found"))?,
        };
        Ok(Response::new(pb::FileObjectionResponse { objection: Some(objection_proto(&row, today)) }))
    }

    async fn respond_objection(
        &self,
        request: Request<pb::RespondObjectionRequest>,
    ) -> Result<Response<pb::RespondObjectionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let objection_id = id("objection_id", &request.objection_id, "objection", &mut problems);
        let answer = required_text("answer", &request.answer, MAX_TEXT, &mut problems);
        ApiError::check(problems)?;
        let objection_id = objection_id.unwrap_or_default();
        let today = today();
        let objection = self.objection_row(objection_id).await?;
        if objection.department_id != caller.department_id {
            return Err(ApiError::PermissionDenied {
                permission: format!("department {}", objection.department_id),
                detail: "an objection is answered by the department that provided the record".to_owned(),
            }
            .into());
        }
        let status = if request.upheld { UPHELD } else { REJECTED };
        let answered = |row: ObjectionRow| -> Result<Response<pb::RespondObjectionResponse>, Status> {
            if row.status == status && row.answer == answer {
                return Ok(Response::new(pb::RespondObjectionResponse {
                    objection: Some(objection_proto(&row, today)),
                }));
            }
            Err(ApiError::FailedPrecondition(format!(
                "objection {} was {} already{}",
                row.objection_id,
                objection_status(row.status),
                row.answered_at.map(|at| format!(" on {}", at.date_naive())).unwrap_or_default()
            ))
            .into())
        };
        if objection.status != OPEN {
            return answered(objection);
        }
        if request.upheld {
            // Only the provider changes its record (seed 000 art. 19); upholding says it has.
            let record = self.records.get(&objection.record_id.to_string()).await?;
            let unchanged = record.version <= objection.record_version
                && RecordState::try_from(record.state) == Ok(RecordState::Active);
            if unchanged {
                return Err(ApiError::FailedPrecondition(format!(
                    "record {} is unchanged since the objection was filed (version {}): correct it with CorrectRecord \
                     or withdraw it with WithdrawRecord, then uphold the objection",
                    objection.record_id, objection.record_version
                ))
                .into());
            }
        }
        match self.store.answer(&objection, status, answer, &caller.department_id).await.map_err(internal)? {
            Some(row) => {
                tracing::info!(objection = %row.objection_id, upheld = request.upheld, "objection answered");
                Ok(Response::new(pb::RespondObjectionResponse { objection: Some(objection_proto(&row, today)) }))
            }
            None => {
                let row = self.objection_row(objection_id).await?;
                answered(row)
            }
        }
    }

    async fn get_objection(
        &self,
        request: Request<pb::GetObjectionRequest>,
    ) -> Result<Response<pb::GetObjectionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let objection_id = one_id("objection_id", &request.get_ref().objection_id, "objection")?;
        let row = self.objection_row(objection_id).await?;
        if ![&row.filed_by, &row.department_id].contains(&&caller.department_id) && !caller.has(PERMISSION_ADMIN) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_ADMIN.to_owned(),
                detail: "an objection is shown to the department that filed it and the one that answers it".to_owned(),
            }
            .into());
        }
        Ok(Response::new(pb::GetObjectionResponse { objection: Some(objection_proto(&row, today())) }))
    }

    async fn list_objections(
        &self,
        request: Request<pb::ListObjectionsRequest>,
    ) -> Result<Response<pb::ListObjectionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (limit, after) = uuid_page(request.page_size, &request.page_token)?;
        let credit_code = optional_code(&request.credit_code)?;
        let statuses: Vec<i16> = request.statuses.iter().map(|status| *status as i16).collect();
        let listing = Listing {
            credit_code: credit_code.as_deref(),
            caller: &caller.department_id,
            own_only: request.to_answer,
            sees_all: caller.has(PERMISSION_ADMIN),
            statuses: &statuses,
            after,
            limit: limit + 1,
        };
        let rows = self.store.objections(&listing).await.map_err(internal)?;
        let (rows, next_page_token) = keyset_page(rows, limit, |row| row.objection_id);
        let today = today();
        Ok(Response::new(pb::ListObjectionsResponse {
            objections: rows.iter().map(|row| objection_proto(row, today)).collect(),
            next_page_token,
        }))
    }

    async fn apply_repair(
        &self,
        request: Request<pb::ApplyRepairRequest>,
    ) -> Result<Response<pb::ApplyRepairResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let credit_code = code(&request.credit_code, &mut problems);
        let record_id = id("record_id", &request.record_id, "record", &mut problems);
        let commitment = required_text("commitment", &request.commitment, MAX_TEXT, &mut problems);
        if request.evidence.len() > MAX_EVIDENCE {
            problems.push(violation("evidence", format!("at most {MAX_EVIDENCE} references")));
        }
        let evidence: Vec<String> = request
            .evidence
            .iter()
            .enumerate()
            .map(|(index, item)| {
                required_text(&format!("evidence[{index}]"), item, MAX_EVIDENCE_TEXT, &mut problems).to_owned()
            })
            .collect();
        let source = required_text("source_repair_id", &request.source_repair_id, MAX_SOURCE_ID, &mut problems);
        ApiError::check(problems)?;
        let record_id = record_id.unwrap_or_default();
        let same = |row: &RepairRow| same_repair(row, &credit_code, record_id, commitment, &evidence);

        if let Some(row) = self.reapplied(&caller.department_id, source, same).await? {
            return Ok(Response::new(pb::ApplyRepairResponse { repair: Some(repair_proto(&row)) }));
        }
        let record = self.records.get(&record_id.to_string()).await?;
        belongs(&record, &credit_code)?;
        repairable(&record, today())?;
        let new = NewRepair {
            credit_code: &credit_code,
            record_id,
            department_id: &record.department_id,
            commitment,
            evidence: &evidence,
            applied_by: &caller.department_id,
            source_repair_id: source,
        };
        let row = match self.store.apply(&new).await {
            Ok(Some(row)) => {
                tracing::info!(repair = %row.repair_id, record = %record_id, by = %caller.department_id, "repair applied for");
                row
            }
            Ok(None) => self
                .reapplied(&caller.department_id, source, same)
                .await?
                .ok_or_else(|| ApiError::internal("a repair's id was taken and then not found"))?,
            Err(RepairConflict::Pending(other)) => {
                return Err(ApiError::AlreadyExists(format!(
                    "repair {other} of record {record_id} is already under decision"
                ))
                .into());
            }
            Err(RepairConflict::Repaired(other)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "record {record_id} was repaired already (repair {other})"
                ))
                .into());
            }
            Err(RepairConflict::Database(error)) => return Err(internal(error)),
        };
        Ok(Response::new(pb::ApplyRepairResponse { repair: Some(repair_proto(&row)) }))
    }

    async fn decide_repair(
        &self,
        request: Request<pb::DecideRepairRequest>,
    ) -> Result<Response<pb::DecideRepairResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let repair_id = id("repair_id", &request.repair_id, "repair", &mut problems);
        let decision = required_text("decision", &request.decision, MAX_TEXT, &mut problems);
        ApiError::check(problems)?;
        let repair_id = repair_id.unwrap_or_default();
        let repair = self.repair_row(repair_id).await?;
        if repair.department_id != caller.department_id && !caller.has(PERMISSION_CREDIT_REPAIR) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_CREDIT_REPAIR.to_owned(),
                detail: format!(
                    "a repair is decided by the record's provider ({}) or a credit office",
                    repair.department_id
                ),
            }
            .into());
        }
        let status = if request.approved { APPROVED } else { REFUSED };
        let decided = |row: RepairRow| -> Result<Response<pb::DecideRepairResponse>, Status> {
            if row.status == status && row.decision == decision {
                return Ok(Response::new(pb::DecideRepairResponse { repair: Some(repair_proto(&row)) }));
            }
            Err(ApiError::FailedPrecondition(format!(
                "repair {} was {} already",
                row.repair_id,
                if row.status == APPROVED { "approved" } else { "refused" }
            ))
            .into())
        };
        if repair.status != PENDING {
            return decided(repair);
        }
        if request.approved {
            // The record may have been withdrawn or corrected since the application.
            let record = self.records.get(&repair.record_id.to_string()).await?;
            belongs(&record, &repair.credit_code)?;
            repairable(&record, today())?;
        }
        match self.store.decide(repair_id, status, decision, &caller.department_id).await.map_err(internal)? {
            Some(row) => {
                tracing::info!(repair = %row.repair_id, approved = request.approved, "repair decided");
                Ok(Response::new(pb::DecideRepairResponse { repair: Some(repair_proto(&row)) }))
            }
            None => {
                let row = self.repair_row(repair_id).await?;
                decided(row)
            }
        }
    }

    async fn get_repair(
        &self,
        request: Request<pb::GetRepairRequest>,
    ) -> Result<Response<pb::GetRepairResponse>, Status> {
        let caller = Caller::of(&request)?;
        let repair_id = one_id("repair_id", &request.get_ref().repair_id, "repair")?;
        let row = self.repair_row(repair_id).await?;
        let involved = [&row.applied_by, &row.department_id].contains(&&caller.department_id);
        if !involved && !caller.has(PERMISSION_ADMIN) && !caller.has(PERMISSION_CREDIT_REPAIR) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_CREDIT_REPAIR.to_owned(),
                detail: "a repair is shown to the department that applied and the one that decides".to_owned(),
            }
            .into());
        }
        Ok(Response::new(pb::GetRepairResponse { repair: Some(repair_proto(&row)) }))
    }

    async fn list_repairs(
        &self,
        request: Request<pb::ListRepairsRequest>,
    ) -> Result<Response<pb::ListRepairsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (limit, after) = uuid_page(request.page_size, &request.page_token)?;
        let credit_code = optional_code(&request.credit_code)?;
        let statuses: Vec<i16> = request.statuses.iter().map(|status| *status as i16).collect();
        let listing = Listing {
            credit_code: credit_code.as_deref(),
            caller: &caller.department_id,
            own_only: request.to_decide,
            sees_all: caller.has(PERMISSION_ADMIN) || caller.has(PERMISSION_CREDIT_REPAIR),
            statuses: &statuses,
            after,
            limit: limit + 1,
        };
        let rows = self.store.repairs(&listing).await.map_err(internal)?;
        let (rows, next_page_token) = keyset_page(rows, limit, |row| row.repair_id);
        Ok(Response::new(pb::ListRepairsResponse { repairs: rows.iter().map(repair_proto).collect(), next_page_token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(nature: Nature, category: &str, repair_allowed_from: &str) -> Record {
        Record {
            record_id: "r-1".into(),
            credit_code: "91110000600037341L".into(),
            category: category.into(),
            nature: nature as i32,
            state: RecordState::Active as i32,
            repair_allowed_from: repair_allowed_from.into(),
            ..Default::default()
        }
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn repair_needs_a_published_dishonesty_record_past_its_minimum_period() {
        let on = day("2026-11-25");
        assert!(repairable(&record(Nature::GeneralDishonesty, "penalty", "2026-11-25"), on).is_ok());
        assert!(repairable(&record(Nature::SeriousDishonesty, "penalty", "2026-01-01"), on).is_ok());
        let early = repairable(&record(Nature::GeneralDishonesty, "penalty", "2026-11-26"), on).unwrap_err();
        assert_eq!(early.code(), tonic::Code::FailedPrecondition);
        assert!(early.message().contains("from 2026-11-26"), "{}", early.message());
        let positive = repairable(&record(Nature::Positive, "reward", "2026-01-01"), on).unwrap_err();
        assert!(positive.message().contains("not a dishonesty record"), "{}", positive.message());
        let unpublished = repairable(&record(Nature::GeneralDishonesty, "penalty", ""), on).unwrap_err();
        assert!(unpublished.message().contains("not published"), "{}", unpublished.message());
        for list in LISTS {
            let listed = repairable(&record(Nature::SeriousDishonesty, list, "2026-01-01"), on).unwrap_err();
            assert!(listed.message().contains("removal from the list"), "{list}: {}", listed.message());
        }
    }

    #[test]
    fn a_record_of_another_subject_or_no_longer_in_force_is_refused() {
        let mut active = record(Nature::GeneralDishonesty, "penalty", "");
        assert!(belongs(&active, "91110000600037341L").is_ok());
        let other = belongs(&active, "9144030071526726XG").unwrap_err();
        assert_eq!(other.code(), tonic::Code::InvalidArgument);
        assert!(other.message().contains("record_id"), "{}", other.message());
        active.state = RecordState::Withdrawn as i32;
        assert_eq!(belongs(&active, "91110000600037341L").unwrap_err().code(), tonic::Code::FailedPrecondition);
        active.state = RecordState::Repaired as i32;
        let repaired = belongs(&active, "91110000600037341L").unwrap_err();
        assert!(repaired.message().contains("repaired"), "{}", repaired.message());
    }
}
