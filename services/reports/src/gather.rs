//! A report's parts, read from the services that own them, on behalf of the calling department:
//! each owner leaves out what that department may not see (internal schemes), as it would if the
//! department asked it directly. Reports keeps no copy of anyone's data: a report is issued rarely,
//! and must show the file as it is at that moment.

use std::future::Future;
use std::time::Duration;

use secrecy::SecretString;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use xinyong_domain::masking::mask_id_numbers_of;
use xinyong_platform::error::ApiError;
use xinyong_platform::identity::{Caller, InternalInterceptor, PERMISSION_INTERNAL_GRADES, PERMISSION_PERSONAL_DATA};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::grading::v1::{GetGradeRequest, GradeInfo, ListRuleSetsRequest};
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{ListRecordsRequest, Record};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, GetEntityRequest, get_entity_request};
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;
use xinyong_proto::sanctions::v1::{GetSubjectSanctionsRequest, GetSubjectSanctionsResponse};

/// The most records one report carries; a subject with more is refused rather than shown in part.
pub const MAX_RECORDS: usize = 5_000;
/// Records read per call to ingestion (its largest page).
const PAGE: i32 = 500;

/// Where the owners are.
pub struct Upstreams {
    pub registry: UpstreamConnection,
    pub ingestion: UpstreamConnection,
    pub grading: UpstreamConnection,
    pub sanctions: UpstreamConnection,
}

type Via = InterceptedService<UpstreamConnection, InternalInterceptor>;

/// The owners of a report's parts.
#[derive(Clone)]
pub struct Owners {
    upstreams: std::sync::Arc<Upstreams>,
    token: SecretString,
    timeout: Duration,
}

impl Owners {
    /// Fails when the internal token cannot be sent in a header.
    pub fn new(upstreams: Upstreams, token: &SecretString, timeout: Duration) -> Result<Owners, tonic::Status> {
        InternalInterceptor::new(token, None)?;
        Ok(Owners { upstreams: std::sync::Arc::new(upstreams), token: token.clone(), timeout })
    }

    fn via(&self, connection: &UpstreamConnection, caller: &Caller) -> Via {
        let interceptor = InternalInterceptor::new(&self.token, Some(caller.clone())).expect("checked in Owners::new");
        InterceptedService::new(connection.clone(), interceptor)
    }

    /// One owner's answer within the timeout; any failure but those `expected` handles is
    /// UNAVAILABLE naming the owner, so the caller knows to retry rather than to fix its request.
    async fn ask<T>(
        &self,
        owner: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!("{owner} did not answer in time"))),
        }
    }

    /// The subject as the registry has it, its ID numbers masked whatever the caller's rights: a
    /// report is handed on, to banks and tendering offices.
    pub async fn entity(&self, caller: &Caller, credit_code: &str) -> Result<Entity, ApiError> {
        let masked = Caller::new(
            caller.department_id.clone(),
            caller.permissions.iter().filter(|held| *held != PERMISSION_PERSONAL_DATA).cloned().collect(),
        );
        let mut client = RegistryServiceClient::new(self.via(&self.upstreams.registry, &masked));
        let request = GetEntityRequest {
            key: Some(get_entity_request::Key::CreditCode(credit_code.to_owned())),
            include_history: false,
        };
        match self.ask("registry", client.get_entity(request)).await {
            Ok(answer) => answer.entity.ok_or_else(|| ApiError::internal("registry answered without the entity")),
            Err(status) if status.code() == Code::NotFound => {
                Err(ApiError::NotFound { what: "subject", key: credit_code.to_owned() })
            }
            Err(status) => Err(unavailable("registry", &status)),
        }
    }

    /// The subject's grade under every scheme the caller may see; a scheme that has not graded it
    /// yet is left out.
    pub async fn grades(&self, caller: &Caller, credit_code: &str) -> Result<Vec<GradeInfo>, ApiError> {
        let mut client = GradingServiceClient::new(self.via(&self.upstreams.grading, caller));
        let rule_sets = self
            .ask("grading", client.list_rule_sets(ListRuleSetsRequest::default()))
            .await
            .map_err(|status| unavailable("grading", &status))?
            .rule_sets;
        let mut schemes: Vec<String> = rule_sets
            .into_iter()
            .filter(|rule_set| !rule_set.internal || caller.has(PERMISSION_INTERNAL_GRADES))
            .map(|rule_set| rule_set.scheme)
            .collect();
        schemes.sort_unstable();
        schemes.dedup();
        let mut grades = Vec::with_capacity(schemes.len());
        for scheme in schemes {
            let request = GetGradeRequest { credit_code: credit_code.to_owned(), scheme };
            match self.ask("grading", client.get_grade(request)).await {
                Ok(answer) => grades.extend(answer.grade),
                // Not graded under this scheme yet, or (an internal scheme) not the caller's to see.
                Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => {}
                Err(status) => return Err(unavailable("grading", &status)),
            }
        }
        Ok(grades)
    }

    /// The subject's listings and the sanctions pushed against it, ended ones included.
    pub async fn sanctions(&self, caller: &Caller, credit_code: &str) -> Result<GetSubjectSanctionsResponse, ApiError> {
        let mut client = SanctionsServiceClient::new(self.via(&self.upstreams.sanctions, caller));
        let request = GetSubjectSanctionsRequest { credit_code: credit_code.to_owned(), include_ended: true };
        self.ask("sanctions", client.get_subject_sanctions(request))
            .await
            .map_err(|status| unavailable("sanctions", &status))
    }

    /// Every record `query` selects, page after page, ID numbers masked; more than [`MAX_RECORDS`] is
    /// refused.
    pub async fn records(&self, caller: &Caller, mut query: ListRecordsRequest) -> Result<Vec<Record>, ApiError> {
        let mut client = IngestionServiceClient::new(self.via(&self.upstreams.ingestion, caller));
        query.page_size = PAGE;
        let mut records = Vec::new();
        loop {
            let page = self
                .ask("ingestion", client.list_records(query.clone()))
                .await
                .map_err(|status| unavailable("ingestion", &status))?;
            // A report is handed on (to banks, tendering offices): ID numbers in records are masked
            // even when ingestion showed them to the caller, who reported the record or may see them.
            records.extend(page.records.into_iter().map(|mut record| {
                record.fields.values_mut().for_each(mask_id_numbers_of);
                mask_id_numbers_of(&mut record.text);
                record
            }));
            if records.len() > MAX_RECORDS {
                return Err(ApiError::FailedPrecondition(format!(
                    "subject {} has more than {MAX_RECORDS} records for one report; ask for a special report of a shorter period",
                    query.credit_code
                )));
            }
            if page.next_page_token.is_empty() {
                return Ok(records);
            }
            query.page_token = page.next_page_token;
        }
    }
}

fn unavailable(owner: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(owner, code = ?status.code(), message = %status.message(), "a report's part could not be read");
    ApiError::Unavailable(format!(
        "{owner} did not answer ({:?}: {}); the report was not issued, retry later",
        status.code(),
        status.message()
    ))
}
