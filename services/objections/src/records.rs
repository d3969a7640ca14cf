//! The records objections and repairs are about, read from ingestion, which owns them. Objections
//! keeps no copy: an objection is filed rarely, and the answer must see the record as it is now
//! (whether the provider has corrected it since).

use std::time::Duration;

use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use xinyong_platform::error::ApiError;
use xinyong_platform::identity::InternalInterceptor;
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{GetRecordRequest, Record};

type Client = IngestionServiceClient<InterceptedService<UpstreamConnection, InternalInterceptor>>;

/// How long a read of a record may take before the call that needs it answers UNAVAILABLE.
const READ_WITHIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Records {
    client: Client,
}

impl Records {
    pub fn new(client: Client) -> Records {
        Records { client }
    }

    /// The record `record_id` as ingestion has it now.
    pub async fn get(&self, record_id: &str) -> Result<Record, ApiError> {
        let mut request = tonic::Request::new(GetRecordRequest { record_id: record_id.to_owned() });
        request.set_timeout(READ_WITHIN);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(READ_WITHIN, client.get_record(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("ingestion did not answer in time")));
        match answer {
            Ok(response) => response
                .into_inner()
                .record
                .ok_or_else(|| ApiError::internal(format!("ingestion answered record {record_id} without it"))),
            Err(status) if status.code() == Code::NotFound => {
                Err(ApiError::NotFound { what: "record", key: record_id.to_owned() })
            }
            Err(status) => {
                tracing::warn!(record = %record_id, code = ?status.code(), message = %status.message(), "ingestion did not answer");
                Err(ApiError::Unavailable(format!(
                    "record {record_id} cannot be read from ingestion now ({:?}); retry later",
                    status.code()
                )))
            }
        }
    }
}
