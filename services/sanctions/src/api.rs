//! `sanctions.v1.SanctionsService`: the measures catalogue, check on every handling (逢办必查),
//! departments' inboxes (sanction pushes and lifts, precise push of registrations with its claim
//! pool, leads, notices to serve), notices before listing, and overdue work.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use chrono::{Datelike, NaiveDate, Utc};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use xinyong_domain::calendar::{Calendar, day_at, today};
use xinyong_domain::credit_code::CreditCode;
use xinyong_platform::error::{optional_day, violation};
use xinyong_platform::identity::PERMISSION_INTERNAL_GRADES;
use xinyong_platform::timestamp;
use xinyong_platform::{ApiError, Caller};
use xinyong_proto::common::v1::{DateRange, FieldViolation};
use xinyong_proto::sanctions::v1 as pb;
use xinyong_proto::sanctions::v1::sanctions_service_server::SanctionsService;

use crate::answers::{Asker, CheckAnswer};
use crate::listings;
use crate::notices;
use crate::state::SubjectState;
use crate::store::{HandlingRow, MeasureRow, NewCheck, Store};
use crate::tasks::{self, Inbox, NewTasks, TaskRow};
use crate::writer::CheckLog;

/// The catalogue in memory: every check matches against it.
#[derive(Clone, Default)]
pub struct Catalogue(Arc<RwLock<Arc<Vec<MeasureRow>>>>);

impl Catalogue {
    pub fn current(&self) -> Arc<Vec<MeasureRow>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub async fn refresh(&self, store: &Store) -> Result<(), sqlx::Error> {
        let measures = Arc::new(store.measures().await?);
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = measures;
        Ok(())
    }
}

#[derive(Clone)]
pub struct Sanctions {
    store: Store,
    checks: CheckLog,
    pool: PgPool,
    state: SubjectState,
    catalogue: Catalogue,
    calendar: Arc<Calendar>,
    report_within_working_days: u32,
    /// The last day a report was due by, for the day it was worked out on: the same for every
    /// check of a day, so worked out once a day instead of once a check.
    report_due: Arc<std::sync::Mutex<Option<(NaiveDate, NaiveDate)>>>,
    execute_within_working_days: u32,
    registration_authority: String,
}

impl Sanctions {
    pub fn new(
        store: Store,
        checks: CheckLog,
        pool: PgPool,
        state: SubjectState,
        catalogue: Catalogue,
        section: &crate::SanctionsSection,
    ) -> Sanctions {
        Sanctions {
            checks,
            store,
            pool,
            state,
            catalogue,
            calendar: Arc::new(Calendar::official()),
            report_within_working_days: section.report_within_working_days,
            report_due: Arc::default(),
            execute_within_working_days: section.execute_within_working_days,
            registration_authority: section.registration_authority.clone(),
        }
    }

    /// The day a check made `today` that requires measures must be reported on by.
    fn report_due_on(&self, today: NaiveDate) -> NaiveDate {
        let mut known = self.report_due.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *known {
            Some((day, due)) if day == today => due,
            _ => {
                let due = self.calendar.add_working_days(today, self.report_within_working_days);
                *known = Some((today, due));
                due
            }
        }
    }

    /// The deadline of a task pushed today (002 art. 9: 15 working days by default).
    fn due_on(&self) -> NaiveDate {
        self.calendar.add_working_days(today(), self.execute_within_working_days)
    }

    /// A task the caller may act on: it exists and is the caller's.
    async fn own_task(&self, caller: &Caller, task_id: &str) -> Result<TaskRow, Status> {
        let id = Uuid::parse_str(task_id).map_err(|_| ApiError::invalid("task_id", "not a task id"))?;
        let task = tasks::get(&self.pool, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "task", key: task_id.to_owned() })?;
        if task.department_id != caller.department_id {
            return Err(ApiError::PermissionDenied {
                permission: format!("department {}", task.department_id),
                detail: "a task is acted on by the department it was pushed to".to_owned(),
            }
            .into());
        }
        Ok(task)
    }

    /// Close an open task (complete or return); the same close again is a retry. `true` when
    /// this call closed it.
    async fn close(
        &self,
        caller: &Caller,
        task_id: &str,
        status: i16,
        field: &str,
        text: &str,
    ) -> Result<(TaskRow, bool), Status> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ApiError::invalid(field, "required").into());
        }
        let task = self.own_task(caller, task_id).await?;
        if let Some(closed) = tasks::close(&self.pool, task.task_id, status, text).await.map_err(internal)? {
            return Ok((closed, true));
        }
        if task.status == status && task.feedback == text {
            return Ok((task, false));
        }
        Err(ApiError::FailedPrecondition(format!(
            "task {task_id} is {} already",
            match task.status {
                tasks::COMPLETED => "completed",
                tasks::RETURNED => "returned",
                _ => "not open",
            }
        ))
        .into())
    }
}

fn day(date: Option<NaiveDate>) -> String {
    date.map(|date| date.to_string()).unwrap_or_default()
}

fn task_proto(row: &TaskRow, today: chrono::NaiveDate) -> pb::Task {
    pb::Task {
        task_id: row.task_id.to_string(),
        kind: i32::from(row.kind),
        status: i32::from(row.status),
        department_id: row.department_id.clone(),
        credit_code: row.credit_code.clone(),
        measure_code: row.measure_code.clone(),
        due_on: day(row.due_on),
        overdue: row.status == tasks::OPEN && row.due_on.is_some_and(|due| due < today),
        summary: row.summary.clone(),
        feedback: row.feedback.clone(),
        risk_level: i32::from(row.risk_level),
        urgency: i32::from(row.urgency),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        notice_id: row.notice_id.map(|id| id.to_string()).unwrap_or_default(),
        record_id: row.record_id.clone().unwrap_or_default(),
    }
}

fn internal(error: sqlx::Error) -> Status {
    Status::from(ApiError::internal(error))
}

fn to_proto(row: &MeasureRow) -> pb::Measure {
    pb::Measure {
        code: row.code.clone(),
        title: row.title.clone(),
        legal_basis: row.legal_basis.clone(),
        source: row.source.clone(),
        executing_departments: row.executing_departments.clone(),
        grades: row.grades.iter().map(|grade| i32::from(*grade)).collect(),
        lists: row.lists.iter().map(|list| i32::from(*list)).collect(),
        scheme: row.scheme.clone(),
        target: i32::from(row.target),
        matter_types: row.matter_types.iter().map(|matter| i32::from(*matter)).collect(),
        incentive: row.incentive,
    }
}

/// A measure a department submits, checked field by field.
fn from_proto(measure: pb::Measure) -> Result<MeasureRow, Vec<FieldViolation>> {
    let mut problems = Vec::new();
    let code_ok = !measure.code.is_empty()
        && measure.code.len() <= 64
        && measure.code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !code_ok {
        problems.push(violation("measure.code", "1 to 64 lower-case letters, digits and `-`"));
    }
    for (field, value) in [
        ("measure.title", &measure.title),
        ("measure.legal_basis", &measure.legal_basis),
        ("measure.source", &measure.source),
    ] {
        if value.trim().is_empty() {
            problems.push(violation(field, "required"));
        }
    }
    if measure.grades.is_empty() && measure.lists.is_empty() {
        problems.push(violation("measure.grades", "name the grades or the lists (`measure.lists`) it applies to"));
    }
    for (index, grade) in measure.grades.iter().enumerate() {
        if !(1..=4).contains(grade) {
            problems.push(violation(format!("measure.grades[{index}]"), "one of GRADE_A..GRADE_D"));
        }
    }
    for (index, list) in measure.lists.iter().enumerate() {
        if !(1..=4).contains(list) {
            problems.push(violation(format!("measure.lists[{index}]"), "a ListKind other than unspecified"));
        }
    }
    for (index, matter) in measure.matter_types.iter().enumerate() {
        if !(1..=10).contains(matter) {
            problems.push(violation(format!("measure.matter_types[{index}]"), "a MatterType other than unspecified"));
        }
    }
    if !(1..=2).contains(&measure.target) {
        problems.push(violation("measure.target", "ORGANISATION or LEGAL_REPRESENTATIVE"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(MeasureRow {
        code: measure.code,
        title: measure.title.trim().to_owned(),
        legal_basis: measure.legal_basis.trim().to_owned(),
        source: measure.source.trim().to_owned(),
        executing_departments: measure.executing_departments,
        grades: measure.grades.iter().map(|grade| *grade as i16).collect(),
        lists: measure.lists.iter().map(|list| *list as i16).collect(),
        scheme: if measure.scheme.is_empty() { "public_credit".to_owned() } else { measure.scheme },
        target: measure.target as i16,
        matter_types: measure.matter_types.iter().map(|matter| *matter as i16).collect(),
        incentive: measure.incentive,
    })
}

impl Sanctions {
    /// `CheckEntity`: what the calling department must do now about a subject, from the answer
    /// prepared for it (see `answers`), and the check queued for the check log.
    pub async fn check(&self, request: Request<pb::CheckEntityRequest>) -> Result<CheckAnswer, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let code = match CreditCode::parse(request.credit_code.trim()) {
            Ok(code) => Some(code.into_string()),
            Err(error) => {
                problems.push(violation("credit_code", error.to_string()));
                None
            }
        };
        if !(1..=10).contains(&request.matter_type) {
            problems.push(violation("matter_type", "the matter being handled (MATTER_TYPE_LICENSING, …)"));
        }
        let Some(code) = code.filter(|_| problems.is_empty()) else {
            return Err(ApiError::InvalidArgument(problems).into());
        };
        let matter = request.matter_type as i16;
        let subject = self.state.subject(&code).await.map_err(internal)?;
        let catalogue = self.catalogue.current();
        let asker = Asker {
            department_id: &caller.department_id,
            matter,
            see_internal: caller.has(PERMISSION_INTERNAL_GRADES),
        };
        let prepared = subject
            .answers
            .get_or_prepare(&code, &subject.subject, catalogue, &asker)
            .map_err(|error| Status::from(ApiError::internal(error)))?;
        let now = Utc::now();
        let check_id = Uuid::now_v7();
        let check = NewCheck {
            check_id,
            credit_code: code,
            department_id: caller.department_id,
            matter_type: matter,
            // A check with measures to apply owes a report (发起—响应—反馈).
            report_due_on: prepared.owes_report.then(|| self.report_due_on(day_at(now))),
            answer: prepared.stored.clone(),
            checked_at: now,
        };
        self.checks.record(check).await.map_err(|error| Status::from(ApiError::internal(error)))?;
        Ok(CheckAnswer { check_id: check_id.to_string(), checked_at: timestamp(now), prepared: Some(prepared) })
    }
}

#[tonic::async_trait]
impl SanctionsService for Sanctions {
    /// Served by [`crate::routes::SanctionsRoutes`], which sends the prepared answer's bytes as they are; this
    /// is the same answer as a message, for a caller of the generated server.
    async fn check_entity(
        &self,
        request: Request<pb::CheckEntityRequest>,
    ) -> Result<Response<pb::CheckEntityResponse>, Status> {
        Ok(Response::new(self.check(request).await?.into_response()))
    }

    async fn report_handling(
        &self,
        request: Request<pb::ReportHandlingRequest>,
    ) -> Result<Response<pb::ReportHandlingResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let check_id =
            Uuid::parse_str(&request.check_id).map_err(|_| ApiError::invalid("check_id", "not a check id"))?;
        let mut found = self.store.check(check_id).await.map_err(internal)?;
        if found.is_none() {
            // The check may still be queued in this replica's check log.
            self.checks.flush().await.map_err(|error| Status::from(ApiError::internal(error)))?;
            found = self.store.check(check_id).await.map_err(internal)?;
        }
        let (check, reported) =
            found.ok_or_else(|| ApiError::NotFound { what: "check", key: request.check_id.clone() })?;
        if check.department_id != caller.department_id {
            return Err(ApiError::PermissionDenied {
                permission: format!("department {}", check.department_id),
                detail: "only the department that checked reports the handling".to_owned(),
            }
            .into());
        }
        let expected: BTreeSet<&str> = check.answer.0.measures.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let mut handlings = Vec::new();
        for (index, handling) in request.handlings.into_iter().enumerate() {
            if !expected.contains(handling.measure_code.as_str()) {
                problems.push(violation(
                    format!("handlings[{index}].measure_code"),
                    format!("`{}` was not among the check's measures", handling.measure_code),
                ));
            } else if !seen.insert(handling.measure_code.clone()) {
                problems.push(violation(format!("handlings[{index}].measure_code"), "reported twice"));
            }
            if !handling.applied && handling.reason.trim().is_empty() {
                problems.push(violation(
                    format!("handlings[{index}].reason"),
                    "required when the measure was not applied: say why",
                ));
            }
            handlings.push(HandlingRow {
                measure_code: handling.measure_code,
                applied: handling.applied,
                reason: handling.reason.trim().to_owned(),
            });
        }
        let missing: Vec<&str> = expected.iter().filter(|code| !seen.contains(**code)).copied().collect();
        if !missing.is_empty() {
            problems.push(violation(
                "handlings",
                format!("every measure of the check is reported; missing: {}", missing.join(", ")),
            ));
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        handlings.sort_by(|left, right| left.measure_code.cmp(&right.measure_code));
        if check.reported_at.is_none()
            && self.store.report(&check, &handlings, &caller.department_id).await.map_err(internal)?
        {
            return Ok(Response::new(pb::ReportHandlingResponse { recorded: true }));
        }
        // Reported before (or by a concurrent call): the same report again is a retry and is
        // answered as recorded; a different one is refused, a report is final.
        let stored = if check.reported_at.is_some() {
            reported
        } else {
            self.store.check(check_id).await.map_err(internal)?.map(|(_, stored)| stored).unwrap_or_default()
        };
        if stored != handlings {
            return Err(ApiError::FailedPrecondition(format!(
                "check {check_id} was reported already, differently; a report is final"
            ))
            .into());
        }
        Ok(Response::new(pb::ReportHandlingResponse { recorded: true }))
    }

    async fn upsert_measure(
        &self,
        request: Request<pb::UpsertMeasureRequest>,
    ) -> Result<Response<pb::UpsertMeasureResponse>, Status> {
        let caller = Caller::of(&request)?;
        let measure = request.into_inner().measure.ok_or_else(|| ApiError::invalid("measure", "required"))?;
        let row = from_proto(measure).map_err(ApiError::InvalidArgument)?;
        let created = self.store.upsert_measure(&row, &caller.department_id).await.map_err(internal)?;
        self.catalogue.refresh(&self.store).await.map_err(internal)?;
        // Subjects already graded or listed get the new version's pushes (and lose the old one's)
        // now, not at their next grade event.
        let due_on = self.due_on();
        let subjects =
            tasks::reconcile_measure(&self.pool, &row, &self.catalogue.current(), due_on).await.map_err(internal)?;
        tracing::info!(measure = %row.code, created, subjects, by = %caller.department_id, "measure saved");
        Ok(Response::new(pb::UpsertMeasureResponse { measure: Some(to_proto(&row)), created }))
    }

    async fn list_measures(
        &self,
        request: Request<pb::ListMeasuresRequest>,
    ) -> Result<Response<pb::ListMeasuresResponse>, Status> {
        let request = request.into_inner();
        let catalogue = self.catalogue.current();
        let measures = catalogue
            .iter()
            .filter(|measure| request.grade == 0 || measure.grades.contains(&(request.grade as i16)))
            .filter(|measure| {
                request.matter_type == 0
                    || measure.matter_types.is_empty()
                    || measure.matter_types.contains(&(request.matter_type as i16))
            })
            .map(to_proto)
            .collect();
        Ok(Response::new(pb::ListMeasuresResponse { measures }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let limit = match request.page_size {
            0 => 50,
            size @ 1..=500 => i64::from(size),
            _ => return Err(ApiError::invalid("page_size", "between 1 and 500 (0 for 50)").into()),
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&request.page_token)
                    .map_err(|_| ApiError::invalid("page_token", "not a token this method gave"))?,
            )
        };
        let today = today();
        let inbox = Inbox {
            // The pool is everyone's and no one's: its tasks have no department yet.
            department_id: if request.pool { String::new() } else { caller.department_id.clone() },
            kinds: request.kinds.iter().map(|kind| *kind as i16).collect(),
            statuses: request.statuses.iter().map(|status| *status as i16).collect(),
            overdue_on: request.overdue_only.then_some(today),
            after,
            limit: limit + 1,
        };
        let rows = tasks::list(&self.pool, &inbox).await.map_err(internal)?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next_page_token =
            if more { rows.last().map(|row| row.task_id.to_string()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(pb::ListTasksResponse {
            tasks: rows.iter().map(|row| task_proto(row, today)).collect(),
            next_page_token,
        }))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (task, _) = self.close(&caller, &request.task_id, tasks::COMPLETED, "feedback", &request.feedback).await?;
        Ok(Response::new(pb::CompleteTaskResponse { task: Some(task_proto(&task, today())) }))
    }

    async fn return_task(
        &self,
        request: Request<pb::ReturnTaskRequest>,
    ) -> Result<Response<pb::ReturnTaskResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (task, newly) = self.close(&caller, &request.task_id, tasks::RETURNED, "reason", &request.reason).await?;
        if newly && task.kind == tasks::REGISTRATION {
            let due_on = self.due_on();
            tasks::return_to_authority(&self.pool, &task, &self.registration_authority, request.reason.trim(), due_on)
                .await
                .map_err(internal)?;
        }
        Ok(Response::new(pb::ReturnTaskResponse { task: Some(task_proto(&task, today())) }))
    }

    async fn claim_task(
        &self,
        request: Request<pb::ClaimTaskRequest>,
    ) -> Result<Response<pb::ClaimTaskResponse>, Status> {
        let caller = Caller::of(&request)?;
        let task_id = request.into_inner().task_id;
        let id = Uuid::parse_str(&task_id).map_err(|_| ApiError::invalid("task_id", "not a task id"))?;
        if let Some(task) = tasks::claim(&self.pool, id, &caller.department_id).await.map_err(internal)? {
            tracing::info!(task = %task_id, by = %caller.department_id, "task claimed");
            return Ok(Response::new(pb::ClaimTaskResponse { task: Some(task_proto(&task, today())) }));
        }
        let task = tasks::get(&self.pool, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "task", key: task_id.clone() })?;
        if task.department_id == caller.department_id {
            // A retry of a claim that went through.
            return Ok(Response::new(pb::ClaimTaskResponse { task: Some(task_proto(&task, today())) }));
        }
        Err(ApiError::FailedPrecondition(format!("task {task_id} is not in the pool: it is {}'s", task.department_id))
            .into())
    }

    async fn push_lead(&self, request: Request<pb::PushLeadRequest>) -> Result<Response<pb::PushLeadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let mut codes = Vec::new();
        if request.credit_codes.is_empty() || request.credit_codes.len() > 1000 {
            problems.push(violation("credit_codes", "1 to 1000 subjects"));
        }
        for (index, code) in request.credit_codes.iter().enumerate() {
            match CreditCode::parse(code.trim()) {
                Ok(code) => codes.push(code.as_str().to_owned()),
                Err(error) => problems.push(violation(format!("credit_codes[{index}]"), error.to_string())),
            }
        }
        let receivers: BTreeSet<&str> =
            request.to_departments.iter().map(|d| d.trim()).filter(|d| !d.is_empty()).collect();
        if receivers.is_empty() {
            problems.push(violation("to_departments", "at least one department"));
        }
        if receivers.contains(caller.department_id.as_str()) {
            problems.push(violation("to_departments", "a lead goes to other departments"));
        }
        if !(1..=3).contains(&request.risk_level) {
            problems.push(violation("risk_level", "1 (low) to 3 (high)"));
        }
        if !(1..=3).contains(&request.urgency) {
            problems.push(violation("urgency", "1 (normal) to 3 (urgent)"));
        }
        if request.summary.trim().is_empty() {
            problems.push(violation("summary", "required: what was found"));
        }
        if request.source_lead_id.trim().is_empty() {
            problems.push(violation("source_lead_id", "required: your id of the lead, so a retry creates nothing new"));
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let due_on = self.due_on();
        let mut new = NewTasks::default();
        let mut keys = Vec::new();
        for code in &codes {
            for receiver in &receivers {
                let key = format!("lead:{}:{}:{code}:{receiver}", caller.department_id, request.source_lead_id.trim());
                new.push(tasks::LEAD, receiver, code, "", request.summary.trim().to_owned(), due_on);
                new.mark(tasks::OPEN, request.risk_level as i16, request.urgency as i16, key.clone());
                keys.push(key);
            }
        }
        let mut connection = self.pool.acquire().await.map_err(internal)?;
        new.insert(&mut connection, &caller.department_id).await.map_err(internal)?;
        drop(connection);
        let stored = tasks::by_source_keys(&self.pool, &keys).await.map_err(internal)?;
        let today = today();
        Ok(Response::new(pb::PushLeadResponse { tasks: stored.iter().map(|row| task_proto(row, today)).collect() }))
    }

    async fn get_overdue(
        &self,
        request: Request<pb::GetOverdueRequest>,
    ) -> Result<Response<pb::GetOverdueResponse>, Status> {
        let request = request.into_inner();
        let department = (!request.department_id.is_empty()).then_some(request.department_id.as_str());
        let today = today();
        let (counts, overdue) = tasks::overdue(&self.pool, department, today).await.map_err(internal)?;
        let departments = counts
            .into_iter()
            .map(|(department_id, overdue_tasks, unreported_checks)| pb::DepartmentOverdue {
                tasks: overdue
                    .iter()
                    .filter(|task| task.department_id == department_id)
                    .map(|task| task_proto(task, today))
                    .collect(),
                department_id,
                overdue_tasks,
                unreported_checks,
            })
            .collect();
        Ok(Response::new(pb::GetOverdueResponse { departments }))
    }

    async fn get_subject_sanctions(
        &self,
        request: Request<pb::GetSubjectSanctionsRequest>,
    ) -> Result<Response<pb::GetSubjectSanctionsResponse>, Status> {
        let request = request.into_inner();
        let code = CreditCode::parse(request.credit_code.trim())
            .map_err(|error| ApiError::invalid("credit_code", error.to_string()))?;
        let code = code.as_str();
        let (listings, pushes) = tokio::try_join!(
            listings::of_subject(&self.pool, code, request.include_ended),
            tasks::pushes_of(&self.pool, code, request.include_ended),
        )
        .map_err(internal)?;
        let catalogue = self.catalogue.current();
        let listings = listings
            .into_iter()
            .map(|row| pb::Listing {
                list: i32::from(row.list),
                record_id: row.record_id,
                department_id: row.department_id,
                since: row.since.to_string(),
                until: day(row.until),
            })
            .collect();
        let pushes = pushes
            .into_iter()
            .map(|row| {
                let measure = catalogue.iter().find(|measure| measure.code == row.measure_code);
                pb::SanctionPush {
                    measure_title: measure.map(|measure| measure.title.clone()).unwrap_or_default(),
                    legal_basis: measure.map(|measure| measure.legal_basis.clone()).unwrap_or_default(),
                    measure_code: row.measure_code,
                    department_id: row.department_id,
                    pushed_on: day_at(row.created_at).to_string(),
                    executed: row.status == tasks::COMPLETED,
                    lifted_on: day(row.lifted_at.map(day_at)),
                }
            })
            .collect();
        Ok(Response::new(pb::GetSubjectSanctionsResponse { listings, pushes }))
    }

    async fn get_task_statistics(
        &self,
        request: Request<pb::GetTaskStatisticsRequest>,
    ) -> Result<Response<pb::GetTaskStatisticsResponse>, Status> {
        let request = request.into_inner();
        let today = today();
        let range = request.period.unwrap_or_default();
        let mut problems = Vec::new();
        let from = optional_day("period.from", &range.from, &mut problems);
        let to = optional_day("period.to", &range.to, &mut problems);
        let to = to.unwrap_or(today);
        let from = from.unwrap_or_else(|| today.with_day(1).unwrap_or(today));
        if problems.is_empty() && from > to {
            problems.push(violation("period.from", "is after period.to"));
        }
        ApiError::check(problems)?;
        let department = request.department_id.trim();
        let department = (!department.is_empty()).then_some(department);
        let rows = tasks::statistics(&self.pool, from, to, department, today).await.map_err(internal)?;
        let mut totals: Vec<tasks::TaskCountRow> = Vec::new();
        for row in &rows {
            let at = match totals.iter().position(|total| total.kind == row.kind) {
                Some(at) => at,
                None => {
                    totals.push(tasks::TaskCountRow { kind: row.kind, ..Default::default() });
                    totals.len() - 1
                }
            };
            let total = &mut totals[at];
            total.made += row.made;
            total.completed_on_time += row.completed_on_time;
            total.completed_late += row.completed_late;
            total.returned += row.returned;
            total.pooled += row.pooled;
            total.open += row.open;
            total.open_overdue += row.open_overdue;
        }
        totals.sort_by_key(|total| total.kind);
        let counts = |row: &tasks::TaskCountRow| pb::TaskCounts {
            department_id: row.department_id.clone(),
            kind: i32::from(row.kind),
            made: row.made,
            completed_on_time: row.completed_on_time,
            completed_late: row.completed_late,
            returned: row.returned,
            pooled: row.pooled,
            open: row.open,
            open_overdue: row.open_overdue,
        };
        Ok(Response::new(pb::GetTaskStatisticsResponse {
            period: Some(DateRange { from: from.to_string(), to: to.to_string() }),
            departments: rows.iter().map(counts).collect(),
            totals: totals.iter().map(counts).collect(),
        }))
    }

    async fn serve_notice(
        &self,
        request: Request<pb::ServeNoticeRequest>,
    ) -> Result<Response<pb::ServeNoticeResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let notice_id = Uuid::parse_str(&request.notice_id).ok();
        if notice_id.is_none() {
            problems.push(violation("notice_id", "not a notice id"));
        }
        let served_on = xinyong_domain::calendar::parse_day(&request.served_on);
        match served_on {
            None => problems.push(violation("served_on", "must be YYYY-MM-DD")),
            Some(day) if day > today() => problems.push(violation("served_on", "cannot be in the future")),
            Some(_) => {}
        }
        let method = request.method.trim();
        if method.is_empty() {
            problems.push(violation("method", "how it was served: direct, post, announcement, …"));
        }
        let (Some(notice_id), Some(served_on), true) = (notice_id, served_on, problems.is_empty()) else {
            return Err(ApiError::InvalidArgument(problems).into());
        };
        let mut transaction = self.pool.begin().await.map_err(internal)?;
        let served = notices::serve(&mut transaction, notice_id, served_on, method, &caller.department_id)
            .await
            .map_err(internal)?;
        let notice = match served {
            Some(notice) => {
                let due_on = self.due_on();
                let codes = [notice.credit_code.clone()];
                tasks::reconcile(&mut transaction, &codes, &self.catalogue.current(), due_on)
                    .await
                    .map_err(internal)?;
                transaction.commit().await.map_err(internal)?;
                self.state.refresh(&notice.credit_code).await.map_err(internal)?;
                tracing::info!(notice = %notice_id, subject = %notice.credit_code, by = %caller.department_id, "notice served; listed");
                notice
            }
            None => {
                let notice = notices::get(&mut transaction, notice_id)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::NotFound { what: "notice", key: request.notice_id.clone() })?;
                if notice.cancelled {
                    return Err(ApiError::FailedPrecondition(format!(
                        "notice {notice_id} was cancelled: its record was withdrawn or repaired"
                    ))
                    .into());
                }
                if notice.served_on != Some(served_on) || notice.served_method != method {
                    return Err(ApiError::FailedPrecondition(format!(
                        "notice {notice_id} was served already, on {}",
                        day(notice.served_on)
                    ))
                    .into());
                }
                notice
            }
        };
        Ok(Response::new(pb::ServeNoticeResponse { notice: Some(notice_proto(&notice)) }))
    }
}

fn notice_proto(row: &notices::NoticeRow) -> pb::Notice {
    pb::Notice {
        notice_id: row.notice_id.to_string(),
        credit_code: row.credit_code.clone(),
        list: i32::from(row.list),
        basis: row.basis.clone(),
        reason: row.reason.clone(),
        measure_codes: row.measure_codes.clone(),
        objection_rights: row.objection_rights.clone(),
        repair_guidance: row.repair_guidance.clone(),
        served_on: day(row.served_on),
    }
}
