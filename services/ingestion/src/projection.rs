//! What ingestion hears from other services:
//! - objections: a record under an open objection is marked disputed, and an approved repair ends
//!   the record's publication (a new version, traced to the repair). The record stays ingestion's;
//!   objections only asks for these two changes through its events.
//! - lottery: an inspection's result becomes the subject's `inspection_result` record (双随机、一公开:
//!   results become records), filed under the department that recorded it, with the visit's
//!   assignment as its source id, so a redelivered event files nothing twice.

use sqlx::PgConnection;
use uuid::Uuid;
use xinyong_domain::calendar::today;
use xinyong_platform::bus::outbox::decode;
use xinyong_platform::bus::{EventHandler, HandlerError};
use xinyong_platform::identity::Caller;
use xinyong_proto::events::v1::{Envelope, InspectionResultRecorded, RecordDisputeChanged, RecordRepaired};
use xinyong_proto::ingestion::v1::RecordInput;

use crate::api::Ingestion;
use crate::store::{self, Store, SubmitOutcome};

/// The consumer group.
pub const GROUP: &str = "ingestion";
/// The streams read.
pub const PRODUCERS: &[&str] = &["objections", "lottery"];

pub struct Projection {
    pub ingestion: Ingestion,
}

/// The record an inspection result files.
fn inspection_record(event: &InspectionResultRecorded) -> RecordInput {
    let content =
        if event.problems_found { format!("{}（发现问题）", event.outcome) } else { event.outcome.clone() };
    RecordInput {
        credit_code: event.credit_code.clone(),
        source_record_id: format!("lottery-{}", event.assignment_id),
        category: "inspection_result".to_owned(),
        decided_on: event.inspected_on.clone(),
        fields: [
            ("content", content),
            ("authority", event.department_id.clone()),
            ("plan_id", event.plan_id.clone()),
            ("outcome", event.outcome.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
        ..Default::default()
    }
}

fn record_id(text: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(text).map_err(|_| HandlerError::Other(format!("`{text}` is not a record id")))
}

impl EventHandler for Projection {
    async fn handle(&self, connection: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if let Some(event) = decode::<RecordDisputeChanged>(envelope) {
            let event = event?;
            Store::set_disputed(connection, record_id(&event.record_id)?, event.disputed).await?;
        } else if let Some(event) = decode::<RecordRepaired>(envelope) {
            let event = event?;
            Store::mark_repaired(connection, record_id(&event.record_id)?, &event.repair_id).await?;
        } else if let Some(event) = decode::<InspectionResultRecorded>(envelope) {
            let event = event?;
            let caller = Caller::new(event.department_id.clone(), vec![]);
            // Lottery checked the result before announcing it; one that does not validate here
            // would fail the same way on every retry, so it is logged and left, not retried.
            let new = match self.ingestion.prepare(inspection_record(&event), &caller, today()).await {
                Ok(new) => new,
                Err(problems) => {
                    tracing::error!(assignment = %event.assignment_id, ?problems, "inspection result not filed as a record");
                    return Ok(());
                }
            };
            let outcomes =
                store::submit_on(connection, &[&new], &event.department_id).await.map_err(|error| match error {
                    store::StoreError::Database(error) => HandlerError::Database(error),
                    other => HandlerError::Other(other.to_string()),
                })?;
            if let Some(SubmitOutcome::Conflict(record_id)) = outcomes.first() {
                tracing::error!(assignment = %event.assignment_id, record = %record_id, "inspection result differs from the record filed for it");
            }
        }
        Ok(())
    }
}
