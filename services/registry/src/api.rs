//! `registry.v1.RegistryService`: translates requests to the rules and the store, and answers.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xinyong_domain::credit_code::{CodeKind, CreditCode};
use xinyong_domain::{longer_than, registration_number};
use xinyong_platform::batches::Batches;
use xinyong_platform::bus::Announce;
use xinyong_platform::identity::PERMISSION_PERSONAL_DATA;
use xinyong_platform::timestamp;
use xinyong_platform::{ApiError, Caller, violation};
use xinyong_proto::common::v1::{EntityStatus, FieldViolation, Person, SubjectKind};
use xinyong_proto::registry::v1 as pb;
use xinyong_proto::registry::v1::registry_service_server::RegistryService;

use crate::cache::EntityCache;
use crate::personal::PersonalData;
use crate::rules::{self, ValidEntity};
use crate::store::{
    DIRECTORY_SQL, DirectoryRow, EntityRow, PreparedEntity, RegisterOutcome, SearchQuery, Store, StoreError,
};

/// The registry's gRPC service.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    cache: EntityCache,
    personal: PersonalData,
    import_batch: usize,
}

pub use xinyong_domain::calendar::today;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(code) => ApiError::NotFound { what: "subject", key: code },
            StoreError::Transition(reason) => ApiError::FailedPrecondition(reason),
            StoreError::RegistrationNumberTaken(_) => ApiError::FailedPrecondition(error.to_string()),
            StoreError::EffectiveBeforeCurrent { .. } => ApiError::invalid("effective_on", error.to_string()),
            StoreError::Database(error) => error.into(),
        }
    }
}

fn status(error: StoreError) -> Status {
    ApiError::from(error).into()
}

fn subject_kind(code: CodeKind) -> SubjectKind {
    match code {
        CodeKind::Enterprise => SubjectKind::Enterprise,
        CodeKind::IndividualBusiness => SubjectKind::IndividualBusiness,
        CodeKind::FarmerCooperative => SubjectKind::FarmerCooperative,
        CodeKind::SocialOrganisation => SubjectKind::SocialOrganisation,
        CodeKind::Other => SubjectKind::Other,
    }
}

/// A credit code from a request, or INVALID_ARGUMENT naming `field`.
fn credit_code(field: &str, text: &str) -> Result<CreditCode, Status> {
    CreditCode::parse(text).map_err(|error| ApiError::invalid(field, error.to_string()).into())
}

/// Page tokens are opaque to callers: hex of `score|code`.
fn encode_token(score: f64, code: &str) -> String {
    hex::encode(format!("{score}|{code}"))
}

fn decode_token(token: &str) -> Result<Option<(f64, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::from(ApiError::invalid("page_token", "not a token from a previous answer"));
    let text = String::from_utf8(hex::decode(token).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let (score, code) = text.split_once('|').ok_or_else(invalid)?;
    Ok(Some((score.parse().map_err(|_| invalid())?, code.to_owned())))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Registry {
    pub fn new(store: Store, cache: EntityCache, personal: PersonalData, import_batch: usize) -> Registry {
        Registry { store, cache, personal, import_batch: import_batch.max(1) }
    }

    /// The proto form of a stored subject; the ID number unmasked only for `personal_data` holders.
    fn to_proto(&self, row: &EntityRow, unmask: bool) -> pb::Entity {
        let id_number = if unmask {
            row.representative_id_sealed.as_deref().and_then(|sealed| self.personal.open(sealed))
        } else {
            None
        };
        let (id_number, id_number_masked) = match id_number {
            Some(clear) => (clear, false),
            None => (row.representative_id_masked.clone(), !row.representative_id_masked.is_empty()),
        };
        pb::Entity {
            credit_code: row.credit_code.clone(),
            name: row.name.clone(),
            kind: i32::from(row.kind),
            registration_number: row.registration_number.clone().unwrap_or_default(),
            region_code: row.region_code.clone(),
            industry_code: row.industry_code.clone(),
            business_scope: row.business_scope.clone(),
            established_on: row.established_on.to_string(),
            registered_capital: row.registered_capital.clone().unwrap_or_default(),
            address: row.address.clone(),
            legal_representative: Some(Person { name: row.representative_name.clone(), id_number, id_number_masked }),
            status: i32::from(row.status),
            status_since: row.status_since.to_string(),
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
        }
    }

    fn prepare(&self, entity: ValidEntity) -> PreparedEntity {
        let (id_masked, id_sealed, id_digest) = match &entity.representative_id {
            Some(id) => (id.masked(), Some(self.personal.seal(id.expose())), Some(self.personal.digest(id.expose()))),
            None => (String::new(), None, None),
        };
        PreparedEntity { entity, id_masked, id_sealed, id_digest }
    }

    async fn versions(&self, credit_code: &str) -> Result<Vec<pb::EntityVersion>, Status> {
        Ok(self
            .store
            .versions(credit_code)
            .await
            .map_err(status)?
            .into_iter()
            .map(|row| pb::EntityVersion {
                version: row.version,
                changes: row
                    .changes
                    .0
                    .into_iter()
                    .map(|change| pb::FieldChange { field: change.field, previous: change.previous })
                    .collect(),
                reason: row.reason,
                department_id: row.department_id,
                changed_at: Some(timestamp(row.changed_at)),
            })
            .collect())
    }

    async fn history(&self, credit_code: &str) -> Result<Vec<pb::StatusChange>, Status> {
        Ok(self
            .store
            .history(credit_code)
            .await
            .map_err(status)?
            .into_iter()
            .map(|row| pb::StatusChange {
                status: i32::from(row.status),
                effective_on: row.effective_on.to_string(),
                reason: row.reason,
                department_id: row.department_id,
                recorded_at: Some(timestamp(row.recorded_at)),
            })
            .collect())
    }
}

fn conflict_status(code: &str, outcome: &RegisterOutcome) -> Option<Status> {
    match outcome {
        RegisterOutcome::Conflict(fields) => Some(
            ApiError::FailedPrecondition(format!(
                "subject `{code}` is registered with different data in: {}; RegisterEntity does not change a registration, UpdateEntity does",
                fields.join(", ")
            ))
            .into(),
        ),
        RegisterOutcome::RegistrationNumberTaken(number) => {
            Some(ApiError::from(StoreError::RegistrationNumberTaken(number.clone())).into())
        }
        _ => None,
    }
}

#[tonic::async_trait]
impl RegistryService for Registry {
    async fn register_entity(
        &self,
        request: Request<pb::RegisterEntityRequest>,
    ) -> Result<Response<pb::RegisterEntityResponse>, Status> {
        let caller = Caller::of(&request)?;
        let entity =
            request.into_inner().entity.ok_or_else(|| Status::from(ApiError::invalid("entity", "required")))?;
        let valid = rules::validate(entity, today(), false)
            .map_err(|problems| Status::from(ApiError::InvalidArgument(problems)))?;
        let code = valid.credit_code.clone();
        let prepared = self.prepare(valid);
        let outcome = self
            .store
            .register_batch(&[&prepared], &caller.department_id, Announce::Each)
            .await
            .map_err(status)?
            .pop()
            .ok_or_else(|| Status::internal("no outcome for the registration"))?;
        if let Some(refusal) = conflict_status(&code, &outcome) {
            return Err(refusal);
        }
        let unmask = caller.has(PERMISSION_PERSONAL_DATA);
        let created = matches!(outcome, RegisterOutcome::Created);
        let row = self
            .store
            .get(&code)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::from(ApiError::NotFound { what: "subject", key: code.clone() }))?;
        if created {
            tracing::info!(credit_code = %code, department = %caller.department_id, "subject registered");
        }
        Ok(Response::new(pb::RegisterEntityResponse { entity: Some(self.to_proto(&row, unmask)), created }))
    }

    async fn update_entity_status(
        &self,
        request: Request<pb::UpdateEntityStatusRequest>,
    ) -> Result<Response<pb::UpdateEntityStatusResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let code = CreditCode::parse(&request.credit_code)
            .map_err(|error| problems.push(violation("credit_code", error.to_string())))
            .ok();
        let to = EntityStatus::try_from(request.status).unwrap_or(EntityStatus::Unspecified);
        if to == EntityStatus::Unspecified {
            problems.push(violation("status", "required: OPERATING, LICENCE_REVOKED, DEREGISTERED or MOVED_OUT"));
        }
        let effective_on = match rules::parse_date(&request.effective_on) {
            Some(date) if date > today() => {
                problems.push(violation("effective_on", "is in the future"));
                None
            }
            Some(date) => Some(date),
            None => {
                problems.push(violation("effective_on", "required, as YYYY-MM-DD"));
                None
            }
        };
        let reason = request.reason.trim();
        if reason.is_empty() {
            problems.push(violation("reason", "required: why the status changes, e.g. the decision document number"));
        } else if longer_than(reason, 500) {
            problems.push(violation("reason", "at most 500 characters"));
        }
        let (Some(code), Some(effective_on)) = (code, effective_on) else {
            return Err(ApiError::InvalidArgument(problems).into());
        };
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let (row, from) = self
            .store
            .update_status(code.as_str(), to, effective_on, reason, &caller.department_id)
            .await
            .map_err(status)?;
        self.cache.invalidate(&[code.as_str()]).await;
        tracing::info!(credit_code = %code, from = from.as_str_name(), to = to.as_str_name(), "status changed");
        let history = self.history(code.as_str()).await?;
        Ok(Response::new(pb::UpdateEntityStatusResponse {
            entity: Some(self.to_proto(&row, caller.has(PERMISSION_PERSONAL_DATA))),
            history,
        }))
    }

    async fn get_entity(
        &self,
        request: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::GetEntityResponse>, Status> {
        let caller = Caller::of(&request)?;
        let unmask = caller.has(PERMISSION_PERSONAL_DATA);
        let request = request.into_inner();
        // Only the masked summary is cached; reads that need more go to Postgres and leave the
        // cache alone, and a cache miss fills it.
        let cacheable = !unmask && !request.include_history;
        let mut missed_cache = false;
        let row = match request.key {
            Some(pb::get_entity_request::Key::CreditCode(text)) => {
                let code = credit_code("credit_code", &text)?;
                if cacheable {
                    if let Some(entity) = self.cache.get(code.as_str()).await {
                        return Ok(Response::new(pb::GetEntityResponse {
                            entity: Some(entity),
                            history: Vec::new(),
                            versions: Vec::new(),
                        }));
                    }
                    missed_cache = true;
                }
                self.store.get(code.as_str()).await.map_err(status)?.ok_or_else(|| {
                    Status::from(ApiError::NotFound { what: "subject", key: code.as_str().to_owned() })
                })?
            }
            Some(pb::get_entity_request::Key::RegistrationNumber(text)) => {
                let number = registration_number::validate(&text)
                    .map_err(|error| Status::from(ApiError::invalid("registration_number", error.to_string())))?;
                self.store.get_by_registration_number(&number).await.map_err(status)?.ok_or_else(|| {
                    Status::from(ApiError::NotFound { what: "registration number", key: number.clone() })
                })?
            }
            None => return Err(ApiError::invalid("credit_code", "give credit_code or registration_number").into()),
        };
        let entity = self.to_proto(&row, unmask);
        if missed_cache {
            self.cache.put(&entity).await;
        }
        let (history, versions) = if request.include_history {
            (self.history(&row.credit_code).await?, self.versions(&row.credit_code).await?)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Response::new(pb::GetEntityResponse { entity: Some(entity), history, versions }))
    }

    async fn update_entity(
        &self,
        request: Request<pb::UpdateEntityRequest>,
    ) -> Result<Response<pb::UpdateEntityResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let reason = request.reason.trim();
        if reason.is_empty() {
            problems.push(violation(
                "reason",
                "required: why the data changes, e.g. the change registration's document number",
            ));
        } else if longer_than(reason, 500) {
            problems.push(violation("reason", "at most 500 characters"));
        }
        let entity = request.entity.ok_or_else(|| Status::from(ApiError::invalid("entity", "required")))?;
        if entity.status != 0 || !entity.status_since.trim().is_empty() {
            problems.push(violation(
                "status",
                "changes only through UpdateEntityStatus, which keeps its own history; leave status and status_since unset",
            ));
        }
        let valid = match rules::validate(entity, today(), false) {
            Ok(valid) => Some(valid),
            Err(more) => {
                problems.extend(more);
                None
            }
        };
        let Some(valid) = valid.filter(|_| problems.is_empty()) else {
            return Err(ApiError::InvalidArgument(problems).into());
        };
        let prepared = self.prepare(valid);
        let (row, changed, version) =
            self.store.update_entity(&prepared, reason, &caller.department_id).await.map_err(status)?;
        if !changed.is_empty() {
            self.cache.invalidate(&[row.credit_code.as_str()]).await;
            tracing::info!(credit_code = %row.credit_code, fields = ?changed, version, "subject data changed");
        }
        Ok(Response::new(pb::UpdateEntityResponse {
            entity: Some(self.to_proto(&row, caller.has(PERMISSION_PERSONAL_DATA))),
            changed_fields: changed.iter().map(|field| (*field).to_owned()).collect(),
            version,
        }))
    }

    async fn search_entities(
        &self,
        request: Request<pb::SearchEntitiesRequest>,
    ) -> Result<Response<pb::SearchEntitiesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems: Vec<FieldViolation> = Vec::new();
        let page_size = match request.page_size {
            0 => 20,
            size @ 1..=200 => size,
            _ => {
                problems.push(violation("page_size", "must be between 1 and 200"));
                20
            }
        };
        if !request.region_prefix.chars().all(|c| c.is_ascii_digit()) || request.region_prefix.len() > 6 {
            problems.push(violation("region_prefix", "up to 6 digits of a region code"));
        }
        let industry_prefix = request.industry_prefix.trim().to_ascii_uppercase();
        if industry_prefix.len() > 5 {
            problems.push(violation("industry_prefix", "at most a section letter and 4 digits"));
        }
        let mut kinds = Vec::new();
        for (index, kind) in request.kinds.iter().enumerate() {
            match SubjectKind::try_from(*kind) {
                Ok(kind) if kind != SubjectKind::Unspecified => kinds.push(kind as i16),
                _ => problems.push(violation(format!("kinds[{index}]"), "not a subject kind")),
            }
        }
        let mut statuses = Vec::new();
        for (index, value) in request.statuses.iter().enumerate() {
            match EntityStatus::try_from(*value) {
                Ok(value) if value != EntityStatus::Unspecified => statuses.push(value as i16),
                _ => problems.push(violation(format!("statuses[{index}]"), "not an entity status")),
            }
        }
        let after = decode_token(&request.page_token)?;
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems).into());
        }
        let query = SearchQuery {
            name_normalised: xinyong_domain::name::normalise(&request.name),
            region_prefix: request.region_prefix,
            industry_prefix,
            kinds,
            statuses,
            after,
            limit: i64::from(page_size) + 1,
        };
        let mut rows = self.store.search(&query).await.map_err(status)?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last().map(|row| encode_token(row.score, &row.entity.credit_code)).unwrap_or_default()
        } else {
            String::new()
        };
        let unmask = caller.has(PERMISSION_PERSONAL_DATA);
        let hits = rows
            .iter()
            .map(|row| pb::SearchHit {
                entity: Some(self.to_proto(&row.entity, unmask)),
                score: row.score,
                r#match: row.match_kind.clone(),
            })
            .collect();
        Ok(Response::new(pb::SearchEntitiesResponse { hits, next_page_token }))
    }

    async fn validate_credit_code(
        &self,
        request: Request<pb::ValidateCreditCodeRequest>,
    ) -> Result<Response<pb::ValidateCreditCodeResponse>, Status> {
        let response = match CreditCode::parse(&request.into_inner().credit_code) {
            Ok(code) => pb::ValidateCreditCodeResponse {
                valid: true,
                reason: String::new(),
                parts: Some(pb::CreditCodeParts {
                    registration_authority: code.registration_authority().to_string(),
                    organisation_type: code.organisation_type().to_string(),
                    region_code: code.region_code().to_owned(),
                    organisation_code: code.organisation_code().to_owned(),
                    check_character: code.check().to_string(),
                    kind: subject_kind(code.kind()) as i32,
                }),
            },
            Err(error) => pb::ValidateCreditCodeResponse { valid: false, reason: error.to_string(), parts: None },
        };
        Ok(Response::new(response))
    }

    async fn check_subjects(
        &self,
        request: Request<pb::CheckSubjectsRequest>,
    ) -> Result<Response<pb::CheckSubjectsResponse>, Status> {
        Caller::of(&request)?;
        let codes = request.into_inner().credit_codes;
        if codes.len() > 5000 {
            return Err(ApiError::invalid(
                "credit_codes",
                format!("at most 5000 codes per call, {} given", codes.len()),
            )
            .into());
        }
        let registered = self.store.registered(&codes).await.map_err(status)?;
        Ok(Response::new(pb::CheckSubjectsResponse { registered }))
    }

    type StreamDirectoryStream = BoxStream<pb::StreamDirectoryResponse>;

    async fn stream_directory(
        &self,
        request: Request<pb::StreamDirectoryRequest>,
    ) -> Result<Response<Self::StreamDirectoryStream>, Status> {
        Caller::of(&request)?;
        let request = request.into_inner();
        let mut kinds = Vec::new();
        for (index, kind) in request.kinds.iter().enumerate() {
            match SubjectKind::try_from(*kind) {
                Ok(kind) if kind != SubjectKind::Unspecified => kinds.push(kind as i16),
                _ => return Err(ApiError::invalid(format!("kinds[{index}]"), "not a subject kind").into()),
            }
        }
        // A bounded channel: the database cursor advances only as fast as the client reads, so a
        // million subjects stream in constant memory.
        let (sender, receiver) = mpsc::channel(512);
        let pool = self.store.pool().clone();
        tokio::spawn(async move {
            let mut rows = sqlx::query_as::<_, DirectoryRow>(DIRECTORY_SQL)
                .bind(request.region_prefix)
                .bind(request.industry_prefix.to_ascii_uppercase())
                .bind(kinds)
                .bind(request.active_only)
                .fetch(&pool);
            while let Some(row) = rows.next().await {
                let item = row
                    .map(|row| pb::StreamDirectoryResponse {
                        credit_code: row.credit_code,
                        name: row.name,
                        region_code: row.region_code,
                        industry_code: row.industry_code,
                        kind: i32::from(row.kind),
                        status: i32::from(row.status),
                    })
                    .map_err(|error| Status::from(ApiError::from(error)));
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type ImportEntitiesStream = BoxStream<pb::ImportEntitiesResponse>;

    async fn import_entities(
        &self,
        request: Request<Streaming<pb::ImportEntitiesRequest>>,
    ) -> Result<Response<Self::ImportEntitiesStream>, Status> {
        let caller = Caller::of(&request)?;
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(8);
        let (batches, pending) = mpsc::channel::<Vec<ImportRow>>(2);
        // Decoding and validating the next rows overlaps the commits of earlier ones, and several
        // writers commit batches side by side (Postgres does the insert work on a core each).
        let pending = std::sync::Arc::new(tokio::sync::Mutex::new(pending));
        tokio::spawn(read_batches(inbound, batches, self.clone(), self.import_batch));
        for _ in 0..IMPORT_WRITERS {
            tokio::spawn(write_batches(
                pending.clone(),
                sender.clone(),
                self.store.clone(),
                caller.department_id.clone(),
            ));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// One imported row on its way: validated and prepared, or refused.
struct ImportRow {
    row: i64,
    credit_code: String,
    prepared: Result<PreparedEntity, Vec<FieldViolation>>,
}

/// Read rows in batches (up to `size`, or what arrived within 20 ms), validate them, and hand them on.
async fn read_batches(
    inbound: Streaming<pb::ImportEntitiesRequest>,
    batches: mpsc::Sender<Vec<ImportRow>>,
    registry: Registry,
    size: usize,
) {
    let today = today();
    let mut inbound = Batches::new(inbound, size, Duration::from_millis(20));
    while let Some(messages) = inbound.next().await {
        let batch = messages
            .into_iter()
            .map(|message| {
                let entity = message.entity.unwrap_or_default();
                let credit_code = entity.credit_code.trim().to_ascii_uppercase();
                let prepared = rules::validate(entity, today, true).map(|valid| registry.prepare(valid));
                ImportRow { row: message.row, credit_code, prepared }
            })
            .collect();
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// Batches committed at the same time by one import. Three, on two cores: while one writer's
/// transaction waits for its commit or for the next validated batch, another keeps Postgres busy
/// (300k-subject runs: two writers 0.30-0.31 of a raw COPY, three 0.31-0.32, four no better).
const IMPORT_WRITERS: usize = 3;

async fn write_batches(
    pending: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<ImportRow>>>>,
    sender: mpsc::Sender<Result<pb::ImportEntitiesResponse, Status>>,
    store: Store,
    department_id: String,
) {
    loop {
        let Some(batch) = pending.lock().await.recv().await else { return };
        let valid: Vec<&PreparedEntity> = batch.iter().filter_map(|row| row.prepared.as_ref().ok()).collect();
        let outcomes = match store.register_batch(&valid, &department_id, Announce::OneBatch).await {
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
                let (outcome, violations) = match row.prepared {
                    Err(violations) => (pb::ImportOutcome::Rejected, violations),
                    Ok(_) => match outcomes.next() {
                        Some(RegisterOutcome::Created) => (pb::ImportOutcome::Created, Vec::new()),
                        Some(RegisterOutcome::Unchanged) => (pb::ImportOutcome::Unchanged, Vec::new()),
                        Some(RegisterOutcome::Conflict(fields)) => (
                            pb::ImportOutcome::Rejected,
                            fields
                                .iter()
                                .map(|field| {
                                    violation(
                                        *field,
                                        "differs from the registered subject; change it with UpdateEntity",
                                    )
                                })
                                .collect(),
                        ),
                        Some(RegisterOutcome::RegistrationNumberTaken(_)) | None => (
                            pb::ImportOutcome::Rejected,
                            vec![violation("registration_number", "belongs to another subject")],
                        ),
                    },
                };
                pb::ImportRowResult { row: row.row, outcome: outcome as i32, credit_code: row.credit_code, violations }
            })
            .collect();
        if sender.send(Ok(pb::ImportEntitiesResponse { results })).await.is_err() {
            // The client left; what is committed stays, and a resend finds it unchanged.
            return;
        }
    }
}
