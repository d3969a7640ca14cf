//! `lottery.v1.LotteryService`.

use std::sync::Arc;

use chrono::NaiveDate;
use rand::RngCore;
use sqlx::types::Json;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use xinyong_domain::calendar::{Calendar, parse_day, today};
use xinyong_domain::draw::{self, Rules};
use xinyong_platform::error::{ApiError, keyset_page, required_text, uuid_page, violation};
use xinyong_platform::identity::{Caller, PERMISSION_ADMIN};
use xinyong_platform::timestamp;
use xinyong_proto::common::v1::{FieldViolation, Grade, SubjectKind};
use xinyong_proto::lottery::v1 as pb;
use xinyong_proto::lottery::v1::lottery_service_server::LotteryService;

use crate::store::{AssignmentRow, DONE, InspectorRow, NewResult, PENDING, PlanRow, Ratio, Store, state_name};

const MAX_TEXT: usize = 2000;
const MAX_ID: usize = 128;
const MAX_LIST: usize = 200;
/// The scheme whose grades set a plan's ratios when it names none.
const DEFAULT_SCHEME: &str = "public_credit";

pub struct Lottery {
    store: Store,
    calendar: Arc<Calendar>,
    publish_within_working_days: u32,
}

impl Lottery {
    pub fn new(store: Store, publish_within_working_days: u32) -> Lottery {
        Lottery { store, calendar: Arc::new(Calendar::official()), publish_within_working_days }
    }

    /// The plan a request names by id.
    async fn plan_named(&self, plan_id: &str) -> Result<PlanRow, Status> {
        let id = Uuid::parse_str(plan_id).map_err(|_| ApiError::invalid("plan_id", "not a plan id"))?;
        self.plan_of(id).await
    }

    async fn plan_of(&self, plan_id: Uuid) -> Result<PlanRow, Status> {
        self.store
            .plan(plan_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "plan", key: plan_id.to_string() }.into())
    }
}

fn internal(error: sqlx::Error) -> Status {
    Status::from(ApiError::from(error))
}

/// Plans are acted on by the departments taking part, or an administrator.
fn takes_part(caller: &Caller, plan: &PlanRow) -> Result<(), Status> {
    if plan.departments.contains(&caller.department_id) || caller.has(PERMISSION_ADMIN) {
        return Ok(());
    }
    Err(ApiError::PermissionDenied {
        permission: format!("a department of plan {}", plan.plan_id),
        detail: format!("the plan is run by {}", plan.departments.join(", ")),
    }
    .into())
}

/// Names without blanks, each at most `MAX_ID` characters, no more than `MAX_LIST`, deduplicated.
fn names(field: &str, values: &[String], problems: &mut Vec<FieldViolation>) -> Vec<String> {
    if values.len() > MAX_LIST {
        problems.push(violation(field, format!("at most {MAX_LIST}")));
    }
    let mut cleaned: Vec<String> = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let value = required_text(&format!("{field}[{index}]"), value, MAX_ID, problems);
        if !cleaned.iter().any(|seen| seen == value) {
            cleaned.push(value.to_owned());
        }
    }
    cleaned
}

fn day(field: &str, value: &str, problems: &mut Vec<FieldViolation>) -> Option<NaiveDate> {
    let parsed = parse_day(value);
    if parsed.is_none() {
        problems.push(violation(field, if value.is_empty() { "required" } else { "must be YYYY-MM-DD" }));
    }
    parsed
}

fn percent(field: &str, value: f64, problems: &mut Vec<FieldViolation>) {
    if !(0.0..=100.0).contains(&value) {
        problems.push(violation(field, "a percentage from 0 to 100"));
    }
}

fn inspector_proto(row: &InspectorRow) -> pb::Inspector {
    pb::Inspector {
        inspector_id: row.inspector_id.clone(),
        name: row.name.clone(),
        department_id: row.department_id.clone(),
        qualifications: row.qualifications.clone(),
        recusals: row.recusals.clone(),
        active: row.active,
        updated_at: Some(timestamp(row.updated_at)),
    }
}

fn plan_proto(row: &PlanRow) -> pb::Plan {
    pb::Plan {
        plan_id: row.plan_id.to_string(),
        title: row.title.clone(),
        departments: row.departments.clone(),
        items: row.items.clone(),
        region_prefix: row.region_prefix.clone(),
        industry_prefix: row.industry_prefix.clone(),
        kinds: row.kinds.iter().map(|kind| i32::from(*kind)).collect(),
        ratios: row
            .ratios
            .0
            .iter()
            .map(|ratio| pb::GradeRatio { grade: ratio.grade, percent: ratio.percent })
            .collect(),
        default_percent: row.default_percent,
        listed_percent: row.listed_percent.unwrap_or(0.0),
        scheme: row.scheme.clone(),
        inspectors_per_visit: row.inspectors_per_visit,
        starts_on: row.starts_on.to_string(),
        ends_on: row.ends_on.to_string(),
        created_at: Some(timestamp(row.created_at)),
        source_plan_id: row.source_plan_id.clone(),
        created_by: row.created_by.clone(),
        draw_id: row.draw_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

fn assignment_proto(row: &AssignmentRow, today: NaiveDate) -> pb::Assignment {
    pb::Assignment {
        assignment_id: row.assignment_id.to_string(),
        plan_id: row.plan_id.to_string(),
        credit_code: row.credit_code.clone(),
        inspector_ids: row.inspector_ids.clone(),
        merged_plan_ids: row.merged_plan_ids.iter().map(Uuid::to_string).collect(),
        state: state_name(row.state).to_owned(),
        draw_id: row.draw_id.to_string(),
        inspected_on: row.inspected_on.map(|day| day.to_string()).unwrap_or_default(),
        outcome: row.outcome.clone(),
        problems_found: row.problems_found,
        details: row.details.clone(),
        publish_due_on: row.publish_due_on.map(|day| day.to_string()).unwrap_or_default(),
        overdue: row.state == DONE && row.publish_due_on.is_some_and(|due| due < today),
    }
}

fn rules(plan: &PlanRow) -> Rules {
    Rules {
        ratios: plan.ratios.0.iter().map(|ratio| (ratio.grade, ratio.percent)).collect(),
        default_percent: plan.default_percent,
        listed_percent: plan.listed_percent,
        items: plan.items.clone(),
        inspectors_per_visit: plan.inspectors_per_visit as usize,
        departments: plan.departments.clone(),
    }
}

/// What differs between a draw as stored and as run again, or `None`.
fn difference(stored: &[AssignmentRow], again: &[draw::Visit]) -> Option<String> {
    if stored.len() != again.len() {
        return Some(format!("{} visits were stored; the inputs give {}", stored.len(), again.len()));
    }
    stored.iter().zip(again).find_map(|(row, visit)| {
        if row.credit_code != visit.credit_code {
            Some(format!("visit to {} was stored where the inputs give {}", row.credit_code, visit.credit_code))
        } else if row.inspector_ids != visit.inspector_ids {
            Some(format!(
                "the visit to {} was stored with inspectors {:?}; the inputs give {:?}",
                row.credit_code, row.inspector_ids, visit.inspector_ids
            ))
        } else {
            None
        }
    })
}

#[tonic::async_trait]
impl LotteryService for Lottery {
    async fn upsert_inspector(
        &self,
        request: Request<pb::UpsertInspectorRequest>,
    ) -> Result<Response<pb::UpsertInspectorResponse>, Status> {
        let caller = Caller::of(&request)?;
        let inspector = request.into_inner().inspector.ok_or_else(|| ApiError::invalid("inspector", "required"))?;
        let mut problems = Vec::new();
        let inspector_id = required_text("inspector.inspector_id", &inspector.inspector_id, MAX_ID, &mut problems);
        let name = required_text("inspector.name", &inspector.name, MAX_ID, &mut problems);
        let department_id = if inspector.department_id.is_empty() {
            caller.department_id.clone()
        } else {
            inspector.department_id.trim().to_owned()
        };
        let qualifications = names("inspector.qualifications", &inspector.qualifications, &mut problems);
        let recusals = names("inspector.recusals", &inspector.recusals, &mut problems);
        for (index, code) in recusals.iter().enumerate() {
            if xinyong_domain::credit_code::CreditCode::parse(code).is_err() {
                problems.push(violation(format!("inspector.recusals[{index}]"), "not a unified social credit code"));
            }
        }
        ApiError::check(problems)?;
        let admin = caller.has(PERMISSION_ADMIN);
        if department_id != caller.department_id && !admin {
            return Err(ApiError::PermissionDenied {
                permission: format!("department {department_id}"),
                detail: "a department keeps its own inspectors in the directory".to_owned(),
            }
            .into());
        }
        if let Some(existing) = self.store.inspector(inspector_id).await.map_err(internal)?
            && existing.department_id != caller.department_id
            && !admin
        {
            return Err(ApiError::PermissionDenied {
                permission: format!("department {}", existing.department_id),
                detail: format!("inspector {inspector_id} belongs to {}", existing.department_id),
            }
            .into());
        }
        let row = InspectorRow {
            inspector_id: inspector_id.to_owned(),
            name: name.to_owned(),
            department_id,
            qualifications,
            recusals,
            active: inspector.active,
            updated_at: chrono::Utc::now(),
        };
        let (row, created) = self.store.upsert_inspector(&row).await.map_err(internal)?;
        Ok(Response::new(pb::UpsertInspectorResponse { inspector: Some(inspector_proto(&row)), created }))
    }

    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        let caller = Caller::of(&request)?;
        let plan = request.into_inner().plan.ok_or_else(|| ApiError::invalid("plan", "required"))?;
        let mut problems = Vec::new();
        let title = required_text("plan.title", &plan.title, MAX_TEXT, &mut problems);
        let source = required_text("plan.source_plan_id", &plan.source_plan_id, MAX_ID, &mut problems);
        let mut departments = names("plan.departments", &plan.departments, &mut problems);
        if departments.is_empty() {
            departments.push(caller.department_id.clone());
        }
        let items = names("plan.items", &plan.items, &mut problems);
        if !plan.region_prefix.chars().all(|c| c.is_ascii_digit()) || plan.region_prefix.len() > 6 {
            problems.push(violation("plan.region_prefix", "up to six digits of a GB/T 2260 region code"));
        }
        if plan.industry_prefix.len() > 5 || !plan.industry_prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(violation("plan.industry_prefix", "up to five characters of a GB/T 4754 industry code"));
        }
        let mut kinds = Vec::new();
        for (index, kind) in plan.kinds.iter().enumerate() {
            match SubjectKind::try_from(*kind) {
                Ok(SubjectKind::Unspecified) | Err(_) => {
                    problems.push(violation(format!("plan.kinds[{index}]"), "not a subject kind"))
                }
                Ok(kind) => kinds.push(kind as i16),
            }
        }
        let mut ratios: Vec<Ratio> = Vec::new();
        for (index, ratio) in plan.ratios.iter().enumerate() {
            if matches!(Grade::try_from(ratio.grade), Ok(Grade::Unspecified) | Err(_)) {
                problems.push(violation(format!("plan.ratios[{index}].grade"), "a grade, A to D"));
            } else if ratios.iter().any(|seen| seen.grade == ratio.grade) {
                problems.push(violation(format!("plan.ratios[{index}].grade"), "listed twice"));
            }
            percent(&format!("plan.ratios[{index}].percent"), ratio.percent, &mut problems);
            ratios.push(Ratio { grade: ratio.grade, percent: ratio.percent });
        }
        percent("plan.default_percent", plan.default_percent, &mut problems);
        percent("plan.listed_percent", plan.listed_percent, &mut problems);
        let inspectors_per_visit = match plan.inspectors_per_visit {
            0 => 2,
            count @ 2..=20 => count,
            _ => {
                problems.push(violation("plan.inspectors_per_visit", "from 2 to 20 (0 for 2): at least 2 a visit"));
                2
            }
        };
        if departments.len() > inspectors_per_visit as usize {
            problems.push(violation(
                "plan.inspectors_per_visit",
                format!("at least one a department: {} for this joint plan", departments.len()),
            ));
        }
        let starts_on = day("plan.starts_on", &plan.starts_on, &mut problems);
        let ends_on = day("plan.ends_on", &plan.ends_on, &mut problems);
        if let (Some(starts), Some(ends)) = (starts_on, ends_on)
            && ends < starts
        {
            problems.push(violation("plan.ends_on", "before starts_on"));
        }
        let scheme = match plan.scheme.trim() {
            "" => DEFAULT_SCHEME.to_owned(),
            scheme => scheme.to_owned(),
        };
        ApiError::check(problems)?;
        if !departments.contains(&caller.department_id) && !caller.has(PERMISSION_ADMIN) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_ADMIN.to_owned(),
                detail: "a department creates plans it takes part in".to_owned(),
            }
            .into());
        }
        let row = PlanRow {
            plan_id: Uuid::now_v7(),
            title: title.to_owned(),
            departments,
            items,
            region_prefix: plan.region_prefix.clone(),
            industry_prefix: plan.industry_prefix.clone(),
            kinds,
            ratios: Json(ratios),
            default_percent: plan.default_percent,
            listed_percent: (plan.listed_percent > 0.0).then_some(plan.listed_percent),
            scheme,
            inspectors_per_visit,
            starts_on: starts_on.unwrap_or_default(),
            ends_on: ends_on.unwrap_or_default(),
            created_by: caller.department_id.clone(),
            source_plan_id: source.to_owned(),
            created_at: chrono::Utc::now(),
            draw_id: None,
        };
        let same = |existing: &PlanRow| {
            existing.title == row.title
                && existing.departments == row.departments
                && existing.items == row.items
                && existing.region_prefix == row.region_prefix
                && existing.industry_prefix == row.industry_prefix
                && existing.kinds == row.kinds
                && existing.ratios.0 == row.ratios.0
                && existing.default_percent == row.default_percent
                && existing.listed_percent == row.listed_percent
                && existing.scheme == row.scheme
                && existing.inspectors_per_visit == row.inspectors_per_visit
                && (existing.starts_on, existing.ends_on) == (row.starts_on, row.ends_on)
        };
        let stored = match self.store.create_plan(&row).await.map_err(internal)? {
            Some(stored) => stored,
            None => {
                let existing = self
                    .store
                    .plan_by_source(&caller.department_id, source)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::internal("a plan's id was taken and then not found"))?;
                if !same(&existing) {
                    return Err(ApiError::AlreadyExists(format!(
                        "plan.source_plan_id `{source}` was used for plan {} with other content",
                        existing.plan_id
                    ))
                    .into());
                }
                existing
            }
        };
        Ok(Response::new(pb::CreatePlanResponse { plan: Some(plan_proto(&stored)) }))
    }

    async fn draw(&self, request: Request<pb::DrawRequest>) -> Result<Response<pb::DrawResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let plan = self.plan_named(&request.plan_id).await?;
        takes_part(&caller, &plan)?;
        let asked = request.seed.trim();
        if asked.chars().count() > MAX_ID {
            return Err(ApiError::invalid("seed", format!("at most {MAX_ID} characters")).into());
        }
        let today = today();
        let answer = |draw_id: Uuid, seed: String, digest: String, population: i64, visits: &[AssignmentRow]| {
            Response::new(pb::DrawResponse {
                draw_id: draw_id.to_string(),
                seed,
                inputs_digest: digest,
                population,
                assignments: visits.iter().map(|row| assignment_proto(row, today)).collect(),
            })
        };
        let earlier = |draw_id: Uuid| async move {
            let stored = self
                .store
                .draw(draw_id)
                .await
                .map_err(internal)?
                .ok_or_else(|| ApiError::internal("a plan's draw was not found"))?;
            if !asked.is_empty() && asked != stored.seed {
                return Err(Status::from(ApiError::FailedPrecondition(format!(
                    "plan {} was drawn already (draw {draw_id}) with another seed; a plan is drawn once",
                    stored.plan_id
                ))));
            }
            let visits = self.store.draw_visits(draw_id).await.map_err(internal)?;
            Ok(answer(draw_id, stored.seed, stored.inputs_digest, stored.population, &visits))
        };
        if let Some(draw_id) = plan.draw_id {
            return earlier(draw_id).await;
        }
        let seed = if asked.is_empty() {
            let mut bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            bytes.iter().map(|byte| format!("{byte:02x}")).collect()
        } else {
            asked.to_owned()
        };
        let population = self.store.population(&plan).await.map_err(internal)?;
        if population.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "plan {} has no operating subjects in its population (region `{}`, industry `{}`); nothing was drawn",
                plan.plan_id, plan.region_prefix, plan.industry_prefix
            ))
            .into());
        }
        let inspectors = self.store.directory(&plan.departments).await.map_err(internal)?;
        let visits = draw::draw(seed.as_bytes(), &population, &inspectors, &rules(&plan))
            .map_err(|error| Status::from(ApiError::FailedPrecondition(error.to_string())))?;
        let digest = draw::inputs_digest(&population, &inspectors);
        let stored = self
            .store
            .store_draw(&plan, &seed, &digest, &population, &inspectors, &visits, &caller.department_id)
            .await
            .map_err(internal)?;
        let Some(draw_id) = stored else {
            // Drawn meanwhile by another call.
            let plan = self.plan_of(plan.plan_id).await?;
            return earlier(plan.draw_id.ok_or_else(|| ApiError::internal("a drawn plan has no draw"))?).await;
        };
        tracing::info!(plan = %plan.plan_id, draw = %draw_id, population = population.len(), visits = visits.len(), "plan drawn");
        let rows = self.store.draw_visits(draw_id).await.map_err(internal)?;
        Ok(answer(draw_id, seed, digest, population.len() as i64, &rows))
    }

    async fn verify_draw(
        &self,
        request: Request<pb::VerifyDrawRequest>,
    ) -> Result<Response<pb::VerifyDrawResponse>, Status> {
        Caller::of(&request)?;
        let draw_id =
            Uuid::parse_str(&request.get_ref().draw_id).map_err(|_| ApiError::invalid("draw_id", "not a draw id"))?;
        let stored = self
            .store
            .draw(draw_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "draw", key: draw_id.to_string() })?;
        let plan = self
            .store
            .plan(stored.plan_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::internal("a draw's plan was not found"))?;
        let population = stored.population();
        let digest = draw::inputs_digest(&population, &stored.inspectors.0);
        let difference = if digest != stored.inputs_digest {
            Some(format!(
                "the recorded inputs give digest {digest}, not the {} recorded with the draw: they were altered",
                stored.inputs_digest
            ))
        } else {
            let visits = self.store.draw_visits(draw_id).await.map_err(internal)?;
            match draw::draw(stored.seed.as_bytes(), &population, &stored.inspectors.0, &rules(&plan)) {
                Ok(again) => difference(&visits, &again),
                Err(error) => Some(format!("the recorded inputs no longer draw: {error}")),
            }
        };
        Ok(Response::new(pb::VerifyDrawResponse {
            reproducible: difference.is_none(),
            difference: difference.unwrap_or_default(),
        }))
    }

    async fn list_assignments(
        &self,
        request: Request<pb::ListAssignmentsRequest>,
    ) -> Result<Response<pb::ListAssignmentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (limit, after) = uuid_page(request.page_size, &request.page_token)?;
        let plan_id = if request.plan_id.is_empty() {
            None
        } else {
            let plan = self.plan_named(&request.plan_id).await?;
            takes_part(&caller, &plan)?;
            Some(plan.plan_id)
        };
        let inspector_id = request.inspector_id.trim();
        let inspector = if inspector_id.is_empty() {
            None
        } else {
            let inspector = self
                .store
                .inspector(inspector_id)
                .await
                .map_err(internal)?
                .ok_or_else(|| ApiError::NotFound { what: "inspector", key: inspector_id.to_owned() })?;
            if inspector.department_id != caller.department_id && !caller.has(PERMISSION_ADMIN) {
                return Err(ApiError::PermissionDenied {
                    permission: format!("department {}", inspector.department_id),
                    detail: "an inspector's visits are shown to the inspector's department".to_owned(),
                }
                .into());
            }
            Some(inspector.inspector_id)
        };
        if plan_id.is_none() && inspector.is_none() {
            return Err(ApiError::invalid("plan_id", "a plan_id or an inspector_id is required").into());
        }
        let rows = self.store.assignments(plan_id, inspector.as_deref(), after, limit + 1).await.map_err(internal)?;
        let (rows, next_page_token) = keyset_page(rows, limit, |row| row.assignment_id);
        let today = today();
        Ok(Response::new(pb::ListAssignmentsResponse {
            assignments: rows.iter().map(|row| assignment_proto(row, today)).collect(),
            next_page_token,
        }))
    }

    async fn record_result(
        &self,
        request: Request<pb::RecordResultRequest>,
    ) -> Result<Response<pb::RecordResultResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let assignment_id = Uuid::parse_str(&request.assignment_id).ok();
        if assignment_id.is_none() {
            problems.push(violation("assignment_id", "not an assignment id"));
        }
        let inspected_on = day("inspected_on", &request.inspected_on, &mut problems);
        let today = today();
        if inspected_on.is_some_and(|day| day > today) {
            problems.push(violation("inspected_on", "in the future"));
        }
        let outcome = required_text("outcome", &request.outcome, MAX_ID, &mut problems);
        let details = request.details.trim();
        if details.chars().count() > MAX_TEXT {
            problems.push(violation("details", format!("at most {MAX_TEXT} characters")));
        }
        ApiError::check(problems)?;
        let (assignment_id, inspected_on) = (assignment_id.unwrap_or_default(), inspected_on.unwrap_or(today));
        let assignment = self
            .store
            .assignment(assignment_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "assignment", key: assignment_id.to_string() })?;
        let plan = self.plan_of(assignment.plan_id).await?;
        takes_part(&caller, &plan)?;
        let same = |row: &AssignmentRow| {
            row.inspected_on == Some(inspected_on)
                && row.outcome == outcome
                && row.problems_found == request.problems_found
                && row.details == details
        };
        let settled = |row: AssignmentRow| -> Result<Response<pb::RecordResultResponse>, Status> {
            if same(&row) {
                return Ok(Response::new(pb::RecordResultResponse { assignment: Some(assignment_proto(&row, today)) }));
            }
            Err(ApiError::FailedPrecondition(format!(
                "assignment {} has its result already ({}); a result is recorded once",
                row.assignment_id,
                state_name(row.state)
            ))
            .into())
        };
        if assignment.state != PENDING {
            return settled(assignment);
        }
        let result = NewResult {
            inspected_on,
            outcome,
            problems_found: request.problems_found,
            details,
            recorded_by: &caller.department_id,
            publish_due_on: self.calendar.add_working_days(inspected_on, self.publish_within_working_days),
        };
        match self.store.record_result(&assignment, &result).await.map_err(internal)? {
            Some(row) => {
                Ok(Response::new(pb::RecordResultResponse { assignment: Some(assignment_proto(&row, today)) }))
            }
            None => settled(
                self.store
                    .assignment(assignment_id)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::NotFound { what: "assignment", key: assignment_id.to_string() })?,
            ),
        }
    }

    async fn get_inspection_statistics(
        &self,
        request: Request<pb::GetInspectionStatisticsRequest>,
    ) -> Result<Response<pb::GetInspectionStatisticsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let optional_day = |field: &str, text: &str, problems: &mut Vec<FieldViolation>| {
            if text.is_empty() { None } else { day(field, text, problems) }
        };
        let from = optional_day("from", &request.from, &mut problems);
        let to = optional_day("to", &request.to, &mut problems);
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            problems.push(violation("to", "before from"));
        }
        ApiError::check(problems)?;
        let department = Some(request.department_id.trim()).filter(|id| !id.is_empty());
        let today = today();
        let rows = self
            .store
            .statistics(from, to, department, &caller.department_id, caller.has(PERMISSION_ADMIN), today)
            .await
            .map_err(internal)?;
        let mut response = pb::GetInspectionStatisticsResponse::default();
        for row in rows {
            response.drawn += row.drawn;
            response.done += row.done;
            response.problems_found += row.problems_found;
            response.published += row.published;
            response.publication_overdue += row.publication_overdue;
            response.plans.push(pb::PlanStatistics {
                plan_id: row.plan_id.to_string(),
                title: row.title,
                departments: row.departments,
                starts_on: row.starts_on.to_string(),
                ends_on: row.ends_on.to_string(),
                population: row.population,
                drawn: row.drawn,
                done: row.done,
                problems_found: row.problems_found,
                published: row.published,
                publication_overdue: row.publication_overdue,
            });
        }
        Ok(Response::new(response))
    }

    async fn publish_results(
        &self,
        request: Request<pb::PublishResultsRequest>,
    ) -> Result<Response<pb::PublishResultsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let plan = self.plan_named(&request.get_ref().plan_id).await?;
        takes_part(&caller, &plan)?;
        let (published, pending) = self.store.publish(plan.plan_id).await.map_err(internal)?;
        tracing::info!(plan = %plan.plan_id, published, pending, "results published");
        Ok(Response::new(pb::PublishResultsResponse { published, pending }))
    }
}
