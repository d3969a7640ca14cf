//! `ingestion.v1.IngestionService`: translates requests to the rules and the store, and answers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures::Stream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Mutex, RwLock, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;
use xinyong_domain::calendar::Calendar;
use xinyong_domain::credit_code::CreditCode;
use xinyong_domain::masking::mask_id_numbers_of;
use xinyong_platform::batches::Batches;
use xinyong_platform::error::optional_day;
use xinyong_platform::identity::{PERMISSION_ADMIN, PERMISSION_PERSONAL_DATA};
use xinyong_platform::metrics::Metrics;
use xinyong_platform::timestamp;
use xinyong_platform::{ApiError, Caller, violation};
use xinyong_proto::common::v1::FieldViolation;
use xinyong_proto::ingestion::v1 as pb;
use xinyong_proto::ingestion::v1::ingestion_service_server::IngestionService;

use crate::rules::{self, Category, ValidRecord};
use crate::signatures;
use crate::store::{ListQuery, NewRecord, RecordRow, Store, StoreError, SubmitOutcome};
use crate::subjects::Subjects;
use xinyong_platform::bus::Announce;

pub use xinyong_domain::calendar::today;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(id) => ApiError::NotFound { what: "record", key: id },
            StoreError::NotOwner { .. } => {
                ApiError::PermissionDenied { permission: "reporting department".to_owned(), detail: error.to_string() }
            }
            StoreError::Withdrawn(_) | StoreError::Repaired(_) => ApiError::FailedPrecondition(error.to_string()),
            StoreError::Database(error) => error.into(),
        }
    }
}

fn status(error: StoreError) -> Status {
    ApiError::from(error).into()
}

/// The proto form of a stored record.
pub fn to_proto(row: &RecordRow) -> pb::Record {
    pb::Record {
        record_id: row.record_id.to_string(),
        credit_code: row.credit_code.clone(),
        department_id: row.department_id.clone(),
        source_record_id: row.source_record_id.clone(),
        category: row.category.clone(),
        nature: i32::from(row.nature),
        decided_on: row.decided_on.to_string(),
        document_number: row.document_number.clone(),
        fields: row.fields.clone().into_iter().collect(),
        text: row.text.clone(),
        penalty_kind: i32::from(row.penalty_kind),
        version: row.version,
        state: i32::from(row.state),
        disputed: row.disputed,
        disclosure_rule: row.disclosure_rule.clone(),
        disclosure_until: row.disclosure_until.map(|date| date.to_string()).unwrap_or_default(),
        repair_allowed_from: row.repair_allowed_from.map(|date| date.to_string()).unwrap_or_default(),
        reporting_delay_working_days: row.reporting_delay_working_days,
        on_time: (row.received_at + chrono::Duration::hours(8)).date_naive() <= row.report_due_on,
        received_at: Some(timestamp(row.received_at)),
        updated_at: Some(timestamp(row.updated_at)),
        signature: None,
    }
}

/// The proto form of a stored record as `caller` may see it: resident ID numbers in its fields and
/// text masked unless the caller reported it or holds `personal_data`. A department may write a
/// person's number into a penalty's fields (an individual business's operator, a party named in a
/// judgment); nothing else of a record is personal data the platform knows of.
pub fn shown_to(row: &RecordRow, caller: &Caller) -> pb::Record {
    let mut record = to_proto(row);
    if !sees_unmasked(row, caller) {
        record.fields.values_mut().for_each(mask_id_numbers_of);
        mask_id_numbers_of(&mut record.text);
    }
    record
}

fn sees_unmasked(row: &RecordRow, caller: &Caller) -> bool {
    caller.department_id == row.department_id || caller.has(PERMISSION_PERSONAL_DATA)
}

fn record_id(text: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text.trim())
        .map_err(|_| ApiError::invalid("record_id", "not a record id (a UUID from a previous answer)").into())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Batches of `SubmitRecords` committed side by side. More than the two cores: a writer spends part
/// of each batch waiting (its commit's flush, the registry's answer for unknown subjects), and
/// another keeps Postgres busy meanwhile (300k records in batches of 2000: two writers 0.41-0.42 of
/// a raw COPY, three 0.42-0.44, four 0.45-0.49, six no better).
const WRITERS: usize = 4;

/// What became of a submitted row, as the admin port counts it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Submitted rows by outcome (`xinyong_ingestion_rows_total`), through either channel: the gRPC
/// metrics count calls, and a stream of a million rows is one call. A department whose feed
/// breaks shows as `invalid` rising; registrations the registry does not have yet as
/// `unknown_subject` (a registry that cannot be asked fails the call instead, counting nothing).
#[derive(Clone)]
pub struct RowMetrics {
    accepted: Counter,
    duplicate: Counter,
    conflict: Counter,
    invalid: Counter,
    unknown_subject: Counter,
}

impl RowMetrics {
    pub fn register(metrics: &Metrics) -> RowMetrics {
        let rows = Family::<OutcomeLabels, Counter>::default();
        metrics.register(
            "ingestion_rows",
            "submitted rows by outcome: accepted, duplicate, conflict (the source id holds other content), \
             invalid (a field's problem), unknown_subject",
            rows.clone(),
        );
        let counter = |outcome| rows.get_or_create(&OutcomeLabels { outcome }).clone();
        RowMetrics {
            accepted: counter("accepted"),
            duplicate: counter("duplicate"),
            conflict: counter("conflict"),
            invalid: counter("invalid"),
            unknown_subject: counter("unknown_subject"),
        }
    }
}

/// The ingestion gRPC service.
#[derive(Clone)]
pub struct Ingestion {
    store: Store,
    subjects: Subjects,
    catalogue: Arc<RwLock<HashMap<String, Category>>>,
    calendar: Arc<Calendar>,
    deadline_override: Option<u32>,
    batch: usize,
    rows: RowMetrics,
}

impl Ingestion {
    pub fn new(
        store: Store,
        subjects: Subjects,
        catalogue: HashMap<String, Category>,
        deadline_override: Option<u32>,
        batch: usize,
        rows: RowMetrics,
    ) -> Ingestion {
        let ingestion = Ingestion {
            store,
            subjects,
            catalogue: Arc::new(RwLock::new(catalogue)),
            calendar: Arc::new(Calendar::official()),
            deadline_override,
            batch: batch.max(1),
            rows,
        };
        // Categories are data: ones added with an INSERT are picked up within a minute.
        let refresh = ingestion.clone();
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            every_minute.tick().await;
            loop {
                every_minute.tick().await;
                match refresh.store.catalogue().await {
                    Ok(catalogue) => *refresh.catalogue.write().await = catalogue,
                    Err(error) => tracing::warn!(%error, "catalogue refresh failed; keeping the one loaded"),
                }
            }
        });
        ingestion
    }

    /// A validated record with its derived facts: disclosure, deadline and delay as of today.
    fn derive(&self, valid: ValidRecord, category: &Category, today: NaiveDate) -> NewRecord {
        let disclosure = rules::disclosure_of(&valid);
        let published = rules::is_published(&valid, &disclosure);
        let report_due_on = rules::report_due_on(&self.calendar, category, self.deadline_override, valid.decided_on);
        let delay = self.calendar.working_days_between(valid.decided_on, today).max(0) as i32;
        NewRecord {
            record_id: Uuid::now_v7(),
            disclosure_rule: disclosure.rule,
            published,
            disclosure_until: disclosure.until,
            repair_allowed_from: disclosure.repair_from,
            report_due_on,
            reporting_delay_working_days: delay,
            valid,
            signed: None,
        }
    }

    /// Validate one input and derive its record.
    pub(crate) async fn prepare(
        &self,
        input: pb::RecordInput,
        caller: &Caller,
        today: NaiveDate,
    ) -> Result<NewRecord, Vec<FieldViolation>> {
        let catalogue = self.catalogue.read().await;
        self.prepare_in(&catalogue, input, caller, today)
    }

    /// [`Ingestion::prepare`] against a catalogue already at hand: a batch takes it once for all
    /// its rows.
    fn prepare_in(
        &self,
        catalogue: &HashMap<String, Category>,
        input: pb::RecordInput,
        caller: &Caller,
        today: NaiveDate,
    ) -> Result<NewRecord, Vec<FieldViolation>> {
        let (input, signed) = signatures::open(input, caller.certificate.as_deref())?;
        let valid = rules::validate(input, catalogue, &caller.permissions, today)?;
        // Borrowed from the catalogue, not cloned: this runs for every submitted row.
        let category = catalogue.get(&valid.category).ok_or_else(|| vec![violation("category", "unknown")])?;
        Ok(NewRecord { signed, ..self.derive(valid, category, today) })
    }
}

impl Ingestion {
    /// A record's signatures by version, for a caller who sees the record unmasked: the signed
    /// bytes hold the fields as reported, ID numbers too. None for anyone else.
    async fn signatures_shown(
        &self,
        row: &RecordRow,
        caller: &Caller,
    ) -> Result<HashMap<i32, pb::RecordSignature>, Status> {
        if !sees_unmasked(row, caller) {
            return Ok(HashMap::new());
        }
        let signed = self.store.signatures(row.record_id).await.map_err(status)?;
        Ok(signed.into_iter().map(|(version, signed)| (version, signatures::to_proto(signed))).collect())
    }
}

fn conflict_reason(record_id: Uuid) -> String {
    format!(
        "a record with this source_record_id exists with other content (record {record_id}); change it with CorrectRecord"
    )
}

#[tonic::async_trait]
impl IngestionService for Ingestion {
    async fn submit_record(
        &self,
        request: Request<pb::SubmitRecordRequest>,
    ) -> Result<Response<pb::SubmitRecordResponse>, Status> {
        let caller = Caller::of(&request)?.with_certificate(request.metadata());
        let invalid = |problems| {
            self.rows.invalid.inc();
            Status::from(ApiError::InvalidArgument(problems))
        };
        let input = request.into_inner().record.ok_or_else(|| invalid(vec![violation("record", "required")]))?;
        let new = self.prepare(input, &caller, today()).await.map_err(invalid)?;
        let unknown = self
            .subjects
            .unknown(&[new.valid.credit_code.as_str()])
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        if !unknown.is_empty() {
            self.rows.unknown_subject.inc();
            return Err(ApiError::NotFound { what: "subject", key: new.valid.credit_code.clone() }.into());
        }
        let outcome = self.store.submit_batch(&[&new], &caller.department_id, Announce::Each).await.map_err(status)?;
        let (record_id, outcome) = match outcome.into_iter().next() {
            Some(SubmitOutcome::Accepted(id)) => {
                self.rows.accepted.inc();
                (id, pb::SubmitOutcome::Accepted)
            }
            Some(SubmitOutcome::Duplicate(id)) => {
                self.rows.duplicate.inc();
                (id, pb::SubmitOutcome::Duplicate)
            }
            Some(SubmitOutcome::Conflict(id)) => {
                self.rows.conflict.inc();
                return Err(ApiError::AlreadyExists(format!("source_record_id: {}", conflict_reason(id))).into());
            }
            None => return Err(Status::internal("no outcome for the submission")),
        };
        let row = self.store.get(record_id).await.map_err(status)?;
        Ok(Response::new(pb::SubmitRecordResponse { record: Some(to_proto(&row)), outcome: outcome as i32 }))
    }

    type SubmitRecordsStream = BoxStream<pb::SubmitRecordsResponse>;

    async fn submit_records(
        &self,
        request: Request<Streaming<pb::SubmitRecordsRequest>>,
    ) -> Result<Response<Self::SubmitRecordsStream>, Status> {
        let caller = Caller::of(&request)?.with_certificate(request.metadata());
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(8);
        let (batches, pending) = mpsc::channel::<Vec<Row>>(2);
        let pending = Arc::new(Mutex::new(pending));
        tokio::spawn(read_batches(inbound, batches, self.clone(), caller.clone()));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(pending.clone(), sender.clone(), self.clone(), caller.department_id.clone()));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn correct_record(
        &self,
        request: Request<pb::CorrectRecordRequest>,
    ) -> Result<Response<pb::CorrectRecordResponse>, Status> {
        let caller = Caller::of(&request)?.with_certificate(request.metadata());
        let request = request.into_inner();
        let id = record_id(&request.record_id)?;
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::invalid("reason", "required: why the record is corrected").into());
        }
        let input = request
            .record
            .ok_or_else(|| Status::from(ApiError::invalid("record", "required: the corrected record")))?;
        let current = self.store.get(id).await.map_err(status)?;
        // Whose record it is decides first: another department learns nothing from validation.
        if current.department_id != caller.department_id {
            return Err(status(StoreError::NotOwner { record_id: id, owner: current.department_id }));
        }
        let new = self
            .prepare(input, &caller, today())
            .await
            .map_err(|problems| Status::from(ApiError::InvalidArgument(problems)))?;
        let mut problems = Vec::new();
        if new.valid.credit_code != current.credit_code {
            problems.push(violation(
                "record.credit_code",
                format!("cannot change (it is {}); withdraw the record and submit a new one", current.credit_code),
            ));
        }
        if new.valid.source_record_id != current.source_record_id {
            problems.push(violation(
                "record.source_record_id",
                format!("cannot change (it is {})", current.source_record_id),
            ));
        }
        if new.valid.category != current.category {
            problems.push(violation(
                "record.category",
                format!("cannot change (it is {}); withdraw the record and submit a new one", current.category),
            ));
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let row = self.store.change(id, &caller.department_id, reason, Some(&new)).await.map_err(status)?;
        tracing::info!(record = %id, department = %caller.department_id, version = row.version, "record corrected");
        Ok(Response::new(pb::CorrectRecordResponse { record: Some(to_proto(&row)) }))
    }

    async fn withdraw_record(
        &self,
        request: Request<pb::WithdrawRecordRequest>,
    ) -> Result<Response<pb::WithdrawRecordResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let id = record_id(&request.record_id)?;
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::invalid("reason", "required: why the record is withdrawn").into());
        }
        let row = self.store.change(id, &caller.department_id, reason, None).await.map_err(status)?;
        tracing::info!(record = %id, department = %caller.department_id, "record withdrawn");
        Ok(Response::new(pb::WithdrawRecordResponse { record: Some(to_proto(&row)) }))
    }

    async fn get_record(
        &self,
        request: Request<pb::GetRecordRequest>,
    ) -> Result<Response<pb::GetRecordResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = record_id(&request.into_inner().record_id)?;
        let row = self.store.get(id).await.map_err(status)?;
        let mut record = shown_to(&row, &caller);
        let mut signed = self.signatures_shown(&row, &caller).await?;
        record.signature = signed.remove(&row.version);
        Ok(Response::new(pb::GetRecordResponse { record: Some(record) }))
    }

    async fn list_records(
        &self,
        request: Request<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::ListRecordsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let code = CreditCode::parse(&request.credit_code)
            .map_err(|error| problems.push(violation("credit_code", error.to_string())))
            .ok();
        let page_size = match request.page_size {
            0 => 50,
            size @ 1..=500 => size,
            _ => {
                problems.push(violation("page_size", "must be between 1 and 500"));
                50
            }
        };
        let range = request.decided.unwrap_or_default();
        let decided_from = optional_day("decided.from", &range.from, &mut problems);
        let decided_to = optional_day("decided.to", &range.to, &mut problems);
        let after = if request.page_token.is_empty() {
            None
        } else {
            let parsed = hex::decode(&request.page_token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| {
                    let (date, id) = text.split_once('|')?;
                    Some((NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?, Uuid::parse_str(id).ok()?))
                });
            if parsed.is_none() {
                problems.push(violation("page_token", "not a token from a previous answer"));
            }
            parsed
        };
        let Some(code) = code.filter(|_| problems.is_empty()) else {
            return Err(ApiError::InvalidArgument(problems).into());
        };
        let query = ListQuery {
            credit_code: code.as_str().to_owned(),
            categories: request.categories,
            include_expired: request.include_expired,
            include_withdrawn: request.include_withdrawn,
            include_history: request.include_history,
            decided_from,
            decided_to,
            today: today(),
            after,
            limit: i64::from(page_size) + 1,
        };
        let mut rows = self.store.list(&query).await.map_err(status)?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last().map(|row| hex::encode(format!("{}|{}", row.decided_on, row.record_id))).unwrap_or_default()
        } else {
            String::new()
        };
        let records = rows.iter().map(|row| shown_to(row, &caller)).collect();
        Ok(Response::new(pb::ListRecordsResponse { records, next_page_token }))
    }

    async fn get_record_history(
        &self,
        request: Request<pb::GetRecordHistoryRequest>,
    ) -> Result<Response<pb::GetRecordHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = record_id(&request.into_inner().record_id)?;
        let current = self.store.get(id).await.map_err(status)?;
        let mut signed = self.signatures_shown(&current, &caller).await?;
        let mut versions: Vec<pb::RecordVersion> = self
            .store
            .versions(id)
            .await
            .map_err(status)?
            .into_iter()
            .map(|version| pb::RecordVersion {
                version: version.version,
                record: Some(pb::Record {
                    signature: signed.remove(&version.version),
                    ..shown_to(&version.snapshot.0, &caller)
                }),
                change: version.change,
                changed_by: version.changed_by,
                changed_at: Some(timestamp(version.changed_at)),
                reason: version.reason,
            })
            .collect();
        versions.push(pb::RecordVersion {
            version: current.version,
            change: current.change.clone(),
            changed_by: current.changed_by.clone(),
            changed_at: Some(timestamp(current.updated_at)),
            reason: current.change_reason.clone(),
            record: Some(pb::Record { signature: signed.remove(&current.version), ..shown_to(&current, &caller) }),
        });
        Ok(Response::new(pb::GetRecordHistoryResponse { versions }))
    }

    async fn get_timeliness(
        &self,
        request: Request<pb::GetTimelinessRequest>,
    ) -> Result<Response<pb::GetTimelinessResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        // A department sees its own timeliness; the whole table is for the platform's operators.
        let department = match request.department_id.trim() {
            "" if caller.has(PERMISSION_ADMIN) => None,
            "" => Some(caller.department_id.clone()),
            other if other == caller.department_id || caller.has(PERMISSION_ADMIN) => Some(other.to_owned()),
            _ => {
                return Err(ApiError::PermissionDenied {
                    permission: PERMISSION_ADMIN.to_owned(),
                    detail: "only operators see other departments' timeliness".to_owned(),
                }
                .into());
            }
        };
        let period = request.period.unwrap_or_default();
        let parse = |field: &str, text: &str| -> Result<Option<NaiveDate>, Status> {
            if text.is_empty() {
                return Ok(None);
            }
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| ApiError::invalid(field, "must be YYYY-MM-DD").into())
        };
        let rows = self
            .store
            .timeliness(department.as_deref(), parse("period.from", &period.from)?, parse("period.to", &period.to)?)
            .await
            .map_err(status)?;
        let mut departments: Vec<pb::DepartmentTimeliness> = Vec::new();
        let mut delays: Vec<(i64, i64)> = Vec::new();
        for row in rows {
            if departments.last().is_none_or(|last| last.department_id != row.department_id) {
                departments
                    .push(pb::DepartmentTimeliness { department_id: row.department_id.clone(), ..Default::default() });
                delays.push((0, 0));
            }
            let entry = departments.last_mut().expect("pushed above");
            let delay = delays.last_mut().expect("pushed above");
            entry.on_time += row.on_time;
            entry.late += row.late;
            delay.0 += row.delay_sum;
            delay.1 += row.on_time + row.late;
            entry.categories.push(pb::CategoryTimeliness {
                category: row.category,
                on_time: row.on_time,
                late: row.late,
            });
        }
        for (entry, (sum, count)) in departments.iter_mut().zip(delays) {
            entry.mean_delay_working_days = if count > 0 { sum as f64 / count as f64 } else { 0.0 };
        }
        Ok(Response::new(pb::GetTimelinessResponse { departments }))
    }

    async fn list_categories(
        &self,
        request: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        Caller::of(&request)?;
        let catalogue = self.catalogue.read().await;
        let mut categories: Vec<pb::Category> = catalogue
            .values()
            .map(|category| pb::Category {
                code: category.code.clone(),
                title: category.title.clone(),
                required_fields: category.required_fields.clone(),
                optional_fields: category.optional_fields.clone(),
                default_nature: i32::from(category.default_nature),
                deadline_working_days: if category.deadline_working_days > 0 {
                    self.deadline_override.map_or(category.deadline_working_days, |days| days as i32)
                } else {
                    0
                },
                monthly: category.deadline_working_days == 0,
            })
            .collect();
        categories.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(Response::new(pb::ListCategoriesResponse { categories }))
    }
}

/// One submitted row on its way.
struct Row {
    row: i64,
    record: Result<NewRecord, Vec<FieldViolation>>,
}

/// Read rows in batches (up to the configured size, or what arrived within 20 ms), validate them,
/// and hand them on.
async fn read_batches(
    inbound: Streaming<pb::SubmitRecordsRequest>,
    batches: mpsc::Sender<Vec<Row>>,
    service: Ingestion,
    caller: Caller,
) {
    let today = today();
    let mut inbound = Batches::new(inbound, service.batch, Duration::from_millis(20));
    while let Some(messages) = inbound.next().await {
        let batch: Vec<Row> = {
            let catalogue = service.catalogue.read().await;
            messages
                .into_iter()
                .map(|message| Row {
                    row: message.row,
                    record: match message.record {
                        Some(input) => service.prepare_in(&catalogue, input, &caller, today),
                        None => Err(vec![violation("record", "required")]),
                    },
                })
                .collect()
        };
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

async fn write_batches(
    pending: Arc<Mutex<mpsc::Receiver<Vec<Row>>>>,
    sender: mpsc::Sender<Result<pb::SubmitRecordsResponse, Status>>,
    service: Ingestion,
    department_id: String,
) {
    loop {
        let Some(batch) = pending.lock().await.recv().await else { return };
        let codes: Vec<&str> =
            batch.iter().filter_map(|row| row.record.as_ref().ok()).map(|new| new.valid.credit_code.as_str()).collect();
        let unknown = match service.subjects.unknown(&codes).await {
            Ok(unknown) => unknown,
            Err(error) => {
                let _ = sender.send(Err(Status::unavailable(error.to_string()))).await;
                return;
            }
        };
        let storable: Vec<&NewRecord> = batch
            .iter()
            .filter_map(|row| row.record.as_ref().ok())
            .filter(|new| !unknown.contains(&new.valid.credit_code))
            .collect();
        let outcomes = match service.store.submit_batch(&storable, &department_id, Announce::OneBatch).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                let _ = sender.send(Err(ApiError::from(error).into())).await;
                return;
            }
        };
        let mut outcomes = outcomes.into_iter();
        let results = batch
            .into_iter()
            .map(|row| {
                let (outcome, record_id, violations) = match row.record {
                    Err(violations) => {
                        service.rows.invalid.inc();
                        (pb::SubmitOutcome::Rejected, String::new(), violations)
                    }
                    Ok(new) if unknown.contains(&new.valid.credit_code) => {
                        service.rows.unknown_subject.inc();
                        let reason = format!("no subject `{}` is registered", new.valid.credit_code);
                        (pb::SubmitOutcome::Rejected, String::new(), vec![violation("credit_code", reason)])
                    }
                    Ok(_) => match outcomes.next() {
                        Some(SubmitOutcome::Accepted(id)) => {
                            service.rows.accepted.inc();
                            (pb::SubmitOutcome::Accepted, id.to_string(), Vec::new())
                        }
                        Some(SubmitOutcome::Duplicate(id)) => {
                            service.rows.duplicate.inc();
                            (pb::SubmitOutcome::Duplicate, id.to_string(), Vec::new())
                        }
                        Some(SubmitOutcome::Conflict(id)) => {
                            service.rows.conflict.inc();
                            let reason = conflict_reason(id);
                            (pb::SubmitOutcome::Rejected, id.to_string(), vec![violation("source_record_id", reason)])
                        }
                        None => (
                            pb::SubmitOutcome::Rejected,
                            String::new(),
                            vec![violation("record", "no outcome; resend it")],
                        ),
                    },
                };
                pb::SubmitRowResult { row: row.row, outcome: outcome as i32, record_id, violations }
            })
            .collect();

        if sender.send(Ok(pb::SubmitRecordsResponse { results })).await.is_err() {
            // The client left; what is committed stays, and a resend finds it a duplicate.
            return;
        }
    }
}
