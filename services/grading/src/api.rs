//! `grading.v1.GradingService`. Rule sets are built; grades arrive with the rest of issue #5.

use tonic::{Request, Response, Status};
use xinyong_domain::grading::RuleSet;
use xinyong_platform::identity::PERMISSION_INTERNAL_GRADES;
use xinyong_platform::{ApiError, Caller};
use xinyong_proto::grading::v1 as pb;
use xinyong_proto::grading::v1::grading_service_server::GradingService;

use crate::store::{RuleSetRow, Store};

/// The grading gRPC service.
#[derive(Clone)]
pub struct Grading {
    store: Store,
}

impl Grading {
    pub fn new(store: Store) -> Grading {
        Grading { store }
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

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not built yet: grades arrive with issue #5 (rule sets are built)"))
}

#[tonic::async_trait]
impl GradingService for Grading {
    async fn get_grade(&self, _: Request<pb::GetGradeRequest>) -> Result<Response<pb::GetGradeResponse>, Status> {
        Err(not_yet("GetGrade"))
    }

    async fn get_grade_history(
        &self,
        _: Request<pb::GetGradeHistoryRequest>,
    ) -> Result<Response<pb::GetGradeHistoryResponse>, Status> {
        Err(not_yet("GetGradeHistory"))
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

    type RecomputeStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::RecomputeResponse, Status>> + Send>>;

    async fn recompute(&self, _: Request<pb::RecomputeRequest>) -> Result<Response<Self::RecomputeStream>, Status> {
        Err(not_yet("Recompute"))
    }

    async fn get_statistics(
        &self,
        _: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        Err(not_yet("GetStatistics"))
    }
}
