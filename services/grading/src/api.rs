//! `grading.v1.GradingService`.

use std::pin::Pin;

use chrono::NaiveDate;
use futures::Stream;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use xinyong_domain::credit_code::CreditCode;
use xinyong_domain::grading::RuleSet;
use xinyong_platform::identity::PERMISSION_INTERNAL_GRADES;
use xinyong_platform::timestamp;
use xinyong_platform::{ApiError, Caller};
use xinyong_proto::grading::v1 as pb;
use xinyong_proto::grading::v1::grading_service_server::GradingService;

use crate::cache::GradeCache;
use crate::grades::{GradeRow, Grader, Scheme, Schemes, stored_grade};
use crate::jobs::{self, Scope};
use crate::store::{RuleSetRow, Store};

/// The scheme a request means when it names none.
pub const DEFAULT_SCHEME: &str = "public_credit";

/// The grading gRPC service.
#[derive(Clone)]
pub struct Grading {
    store: Store,
    pool: PgPool,
    grader: Grader,
    cache: GradeCache,
    recompute_chunk: i64,
    today: fn() -> NaiveDate,
}

impl Grading {
    pub fn new(
        store: Store,
        pool: PgPool,
        grader: Grader,
        cache: GradeCache,
        recompute_chunk: i64,
        today: fn() -> NaiveDate,
    ) -> Grading {
        Grading { store, pool, grader, cache, recompute_chunk, today }
    }

    /// The scheme a caller asks for: it exists, and an internal one needs `internal_grades`.
    fn scheme(&self, caller: &Caller, name: &str) -> Result<Scheme, ApiError> {
        let name = if name.is_empty() { DEFAULT_SCHEME } else { name };
        let scheme =
            self.grader.schemes.get(name).ok_or_else(|| ApiError::NotFound { what: "scheme", key: name.to_owned() })?;
        if scheme.internal && !caller.has(PERMISSION_INTERNAL_GRADES) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_INTERNAL_GRADES.to_owned(),
                detail: format!("scheme `{name}` is internal (industry risk classes, seed 001 四)"),
            });
        }
        Ok(scheme)
    }
}

fn internal(error: sqlx::Error) -> Status {
    Status::from(ApiError::internal(error))
}

fn credit_code(field: &str, value: &str) -> Result<String, Status> {
    CreditCode::parse(value.trim())
        .map(|code| code.as_str().to_owned())
        .map_err(|error| ApiError::invalid(field, error.to_string()).into())
}

/// A stored grade as the API and the read model show it, with the texts of its version's rules.
pub fn grade_info(row: &GradeRow, schemes: &Schemes) -> pb::GradeInfo {
    pb::GradeInfo {
        credit_code: row.credit_code.clone(),
        scheme: row.scheme.clone(),
        grade: i32::from(row.grade),
        rule_set_version: row.rule_set_version,
        reasons: row
            .reasons
            .0
            .iter()
            .map(|reason| pb::Reason {
                code: reason.code.clone(),
                text: schemes.reason_text(&row.scheme, row.rule_set_version, &reason.code),
                record_ids: reason.record_ids.clone(),
                disputed_record_ids: reason.disputed_record_ids.clone(),
            })
            .collect(),
        graded_at: Some(timestamp(row.graded_at)),
        as_of: row.as_of.to_string(),
    }
}

fn parse_day(field: &str, value: &str) -> Result<Option<NaiveDate>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::invalid(field, "must be YYYY-MM-DD").into())
}

/// Region and industry prefixes go into LIKE patterns: only the characters codes are made of.
fn prefix(field: &str, value: &str) -> Result<String, Status> {
    if value.chars().all(|c| c.is_ascii_alphanumeric()) && value.len() <= 12 {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(field, "letters and digits of a code prefix, at most 12").into())
    }
}

fn to_proto(row: RuleSetRow) -> pb::RuleSet {
    pb::RuleSet {
        scheme: row.scheme,
        version: row.version,
        document: row.document,
        internal: row.internal,
        published_at: Some(prost_types::Timestamp {
            seconds: row.published_at.timestamp(),
            nanos: row.published_at.timestamp_subsec_nanos() as i32,
        }),
        published_by: row.published_by,
    }
}

#[tonic::async_trait]
impl GradingService for Grading {
    async fn get_grade(&self, request: Request<pb::GetGradeRequest>) -> Result<Response<pb::GetGradeResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let code = credit_code("credit_code", &request.credit_code)?;
        let scheme = self.scheme(&caller, &request.scheme)?;
        if let Some(grade) = self.cache.get(&scheme.name, &code).await {
            return Ok(Response::new(pb::GetGradeResponse { grade: Some(grade) }));
        }
        let row = stored_grade(&self.pool, &code, &scheme.name)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::NotFound { what: "grade of subject", key: format!("{code} ({})", scheme.name) })?;
        self.cache.fill(&row).await;
        Ok(Response::new(pb::GetGradeResponse { grade: Some(grade_info(&row, &self.grader.schemes)) }))
    }

    async fn get_grade_history(
        &self,
        request: Request<pb::GetGradeHistoryRequest>,
    ) -> Result<Response<pb::GetGradeHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let code = credit_code("credit_code", &request.credit_code)?;
        let scheme = self.scheme(&caller, &request.scheme)?;
        let page_size = match request.page_size {
            0 => 50,
            size @ 1..=500 => i64::from(size),
            _ => return Err(ApiError::invalid("page_size", "between 1 and 500 (0 for 50)").into()),
        };
        let before: Option<i64> = if request.page_token.is_empty() {
            None
        } else {
            Some(
                request
                    .page_token
                    .parse()
                    .map_err(|_| ApiError::invalid("page_token", "not a token this method gave"))?,
            )
        };
        let rows: Vec<crate::store::HistoryRow> =
            self.store.history(&code, &scheme.name, before, page_size + 1).await.map_err(internal)?;
        let more = rows.len() as i64 > page_size;
        let rows = &rows[..rows.len().min(page_size as usize)];
        let next_page_token =
            if more { rows.last().map(|row| row.id.to_string()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(pb::GetGradeHistoryResponse {
            grades: rows.iter().map(|row| grade_info(&row.grade, &self.grader.schemes)).collect(),
            next_page_token,
        }))
    }

    async fn publish_rule_set(
        &self,
        request: Request<pb::PublishRuleSetRequest>,
    ) -> Result<Response<pb::PublishRuleSetResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let rule_set = RuleSet::parse(&request.document)
            .map_err(|error| Status::from(ApiError::invalid(format!("document ({})", error.place), error.reason)))?;
        if !request.scheme.is_empty() && request.scheme != rule_set.scheme {
            return Err(ApiError::invalid("scheme", format!("the document is for scheme `{}`", rule_set.scheme)).into());
        }
        if rule_set.internal && !caller.has(PERMISSION_INTERNAL_GRADES) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_INTERNAL_GRADES.to_owned(),
                detail: "publishing an internal scheme".to_owned(),
            }
            .into());
        }
        let (row, published) = self
            .store
            .publish(&rule_set.scheme, &rule_set.title, rule_set.internal, &request.document, &caller.department_id)
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        if published {
            tracing::info!(scheme = %row.scheme, version = row.version, by = %caller.department_id, "rule set published");
            // New grades use the new version from now on; past grades keep theirs.
            self.grader.schemes.refresh(&self.store).await.map_err(internal)?;
        }
        Ok(Response::new(pb::PublishRuleSetResponse { rule_set: Some(to_proto(row)) }))
    }

    async fn list_rule_sets(
        &self,
        request: Request<pb::ListRuleSetsRequest>,
    ) -> Result<Response<pb::ListRuleSetsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let scheme = request.into_inner().scheme;
        let rows = self
            .store
            .list((!scheme.is_empty()).then_some(scheme.as_str()))
            .await
            .map_err(|error| Status::from(ApiError::from(error)))?;
        // Internal schemes (industry risk classes, seed 001 四) exist only for those allowed to see them.
        let see_internal = caller.has(PERMISSION_INTERNAL_GRADES);
        let rule_sets = rows.into_iter().filter(|row| see_internal || !row.internal).map(to_proto).collect();
        Ok(Response::new(pb::ListRuleSetsResponse { rule_sets }))
    }

    type RecomputeStream = Pin<Box<dyn Stream<Item = Result<pb::RecomputeResponse, Status>> + Send>>;

    async fn recompute(
        &self,
        request: Request<pb::RecomputeRequest>,
    ) -> Result<Response<Self::RecomputeStream>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let scheme = if request.scheme.is_empty() {
            if !caller.has(PERMISSION_INTERNAL_GRADES) && self.grader.schemes.current().iter().any(|s| s.internal) {
                return Err(ApiError::PermissionDenied {
                    permission: PERMISSION_INTERNAL_GRADES.to_owned(),
                    detail: "recomputing every scheme includes internal ones; name a scheme".to_owned(),
                }
                .into());
            }
            None
        } else {
            Some(self.scheme(&caller, &request.scheme)?.name)
        };
        let region_prefix = prefix("region_prefix", &request.region_prefix)?;
        if !request.resume_after.is_empty() {
            credit_code("resume_after", &request.resume_after)?;
        }
        let scope = Scope { scheme, region_prefix, resume_after: request.resume_after };
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let service = self.clone();
        tracing::info!(by = %caller.department_id, scheme = ?scope.scheme, region = %scope.region_prefix,
            resume_after = %scope.resume_after, "recompute started");
        tokio::spawn(async move {
            let as_of = (service.today)();
            let progress_sender = sender.clone();
            let result = jobs::recompute(
                &service.pool,
                &service.grader,
                &service.cache,
                &scope,
                as_of,
                service.recompute_chunk,
                |progress, last| {
                    // A caller that went away stops the work; it resumes from the last code.
                    // A slow reader misses intermediate progress, never the end.
                    let sent = progress_sender.try_send(Ok(pb::RecomputeResponse {
                        subjects_done: progress.subjects as i64,
                        grades_changed: progress.changed as i64,
                        last_credit_code: last.to_owned(),
                        finished: false,
                    }));
                    !matches!(sent, Err(tokio::sync::mpsc::error::TrySendError::Closed(_)))
                },
            )
            .await;
            let last = match result {
                Ok(progress) => Ok(pb::RecomputeResponse {
                    subjects_done: progress.subjects as i64,
                    grades_changed: progress.changed as i64,
                    last_credit_code: String::new(),
                    finished: true,
                }),
                Err(error) => Err(internal(error)),
            };
            if let Ok(done) = &last {
                tracing::info!(subjects = done.subjects_done, changed = done.grades_changed, "recompute finished");
            }
            let _ = sender.send(last).await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn get_statistics(
        &self,
        request: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let scheme = self.scheme(&caller, &request.scheme)?;
        let region = prefix("region_prefix", &request.region_prefix)?;
        let industry = prefix("industry_prefix", &request.industry_prefix)?;
        let period = request.period.unwrap_or_default();
        let from = parse_day("period.from", &period.from)?;
        let to = parse_day("period.to", &period.to)?;
        let statistics = self.store.statistics(&scheme.name, &region, &industry, from, to).await.map_err(internal)?;
        Ok(Response::new(statistics))
    }
}
