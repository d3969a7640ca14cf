//! What ingestion hears from objections: a record under an open objection is marked disputed, and
//! an approved repair ends the record's publication (a new version, traced to the repair). The
//! record stays ingestion's; objections only asks for these two changes through its events.

use sqlx::PgConnection;
use uuid::Uuid;
use xinyong_platform::bus::outbox::decode;
use xinyong_platform::bus::{EventHandler, HandlerError};
use xinyong_proto::events::v1::{Envelope, RecordDisputeChanged, RecordRepaired};

use crate::store::Store;

/// The consumer group.
pub const GROUP: &str = "ingestion";
/// The streams read.
pub const PRODUCERS: &[&str] = &["objections"];

pub struct Projection;

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
        }
        Ok(())
    }
}
