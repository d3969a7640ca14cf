//! Writing events into the service's outbox, inside the caller's transaction.

use prost::Message;
use sqlx::PgConnection;
use xinyong_proto::events::v1 as events;

/// An event message and its stable type name.
pub trait Event: Message + Default {
    /// Fully qualified protobuf name, e.g. `xinyong.events.v1.EntityRegistered`.
    const TYPE: &'static str;
    /// The subject the event is about.
    fn credit_code(&self) -> &str;
}

macro_rules! events {
    ($($name:ident),* $(,)?) => {
        $(
            impl Event for events::$name {
                const TYPE: &'static str = concat!("xinyong.events.v1.", stringify!($name));
                fn credit_code(&self) -> &str {
                    &self.credit_code
                }
            }
        )*
    };
}

events!(
    EntityRegistered,
    EntityUpdated,
    EntityStatusChanged,
    RecordIngested,
    RecordCorrected,
    RecordWithdrawn,
    RecordDisputeChanged,
    RecordRepaired,
    GradeChanged,
    ListingChanged,
    InspectionResultRecorded,
);

impl Event for events::RecordsIngested {
    const TYPE: &'static str = "xinyong.events.v1.RecordsIngested";
    /// A batch is about many subjects, so it names none.
    fn credit_code(&self) -> &str {
        ""
    }
}

impl Event for events::GradesChanged {
    const TYPE: &'static str = "xinyong.events.v1.GradesChanged";
    /// A batch is about many subjects, so it names none.
    fn credit_code(&self) -> &str {
        ""
    }
}

impl Event for events::EntitiesRegistered {
    const TYPE: &'static str = "xinyong.events.v1.EntitiesRegistered";
    /// A batch is about many subjects, so it names none.
    fn credit_code(&self) -> &str {
        ""
    }
}

/// Decode an envelope's payload as `E`; `None` when the envelope carries another type.
pub fn decode<E: Event>(envelope: &events::Envelope) -> Option<Result<E, prost::DecodeError>> {
    (envelope.event_type == E::TYPE).then(|| E::decode(envelope.payload.as_slice()))
}

/// The W3C `traceparent` of the current span, when tracing exports to OpenTelemetry.
fn current_traceparent() -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return String::new();
    }
    format!("00-{}-{}-{:02x}", span_context.trace_id(), span_context.span_id(), span_context.trace_flags().to_u8())
}

pub(crate) fn envelope<E: Event>(
    event_id: uuid::Uuid,
    producer: &str,
    event: &E,
    traceparent: &str,
) -> events::Envelope {
    envelope_of(event_id, producer, E::TYPE, event.credit_code(), traceparent, event.encode_to_vec())
}

fn envelope_of(
    event_id: uuid::Uuid,
    producer: &str,
    event_type: &str,
    credit_code: &str,
    traceparent: &str,
    payload: Vec<u8>,
) -> events::Envelope {
    events::Envelope {
        event_id: event_id.to_string(),
        event_type: event_type.to_owned(),
        producer: producer.to_owned(),
        occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        credit_code: credit_code.to_owned(),
        traceparent: traceparent.to_owned(),
        payload,
    }
}

/// Write many events of one type in one statement (bulk loads); same guarantees as [`enqueue`].
pub async fn enqueue_batch<E: Event>(
    connection: &mut PgConnection,
    producer: &str,
    events: &[E],
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let traceparent = current_traceparent();
    let ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let codes: Vec<&str> = events.iter().map(Event::credit_code).collect();
    let envelopes: Vec<Vec<u8>> = ids
        .iter()
        .zip(events)
        .map(|(id, event)| envelope(*id, producer, event, &traceparent).encode_to_vec())
        .collect();
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, credit_code, envelope)
         SELECT id, $2, code, envelope FROM UNNEST($1::uuid[], $3::text[], $4::bytea[]) AS t(id, code, envelope)",
    )
    .bind(&ids)
    .bind(E::TYPE)
    .bind(&codes)
    .bind(&envelopes)
    .execute(connection)
    .await?;
    Ok(ids)
}

/// Write `event` into the outbox of the schema `connection` is bound to. Call it inside the
/// transaction that makes the change; returns the event id.
pub async fn enqueue<E: Event>(
    connection: &mut PgConnection,
    producer: &str,
    event: &E,
) -> Result<uuid::Uuid, sqlx::Error> {
    let event_id = uuid::Uuid::now_v7();
    let envelope = envelope(event_id, producer, event, &current_traceparent());
    sqlx::query("INSERT INTO outbox (event_id, event_type, credit_code, envelope) VALUES ($1, $2, $3, $4)")
        .bind(event_id)
        .bind(E::TYPE)
        .bind(event.credit_code())
        .bind(envelope.encode_to_vec())
        .execute(connection)
        .await?;
    Ok(event_id)
}

/// Like [`enqueue`], for an event of type `E` already encoded as `payload`: a bulk batch's event
/// written straight from the rows it announces, without building thousands of owned messages to
/// encode them once.
pub async fn enqueue_encoded<E: Event>(
    connection: &mut PgConnection,
    producer: &str,
    credit_code: &str,
    payload: Vec<u8>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let event_id = uuid::Uuid::now_v7();
    let envelope = envelope_of(event_id, producer, E::TYPE, credit_code, &current_traceparent(), payload);
    sqlx::query("INSERT INTO outbox (event_id, event_type, credit_code, envelope) VALUES ($1, $2, $3, $4)")
        .bind(event_id)
        .bind(E::TYPE)
        .bind(credit_code)
        .bind(envelope.encode_to_vec())
        .execute(connection)
        .await?;
    Ok(event_id)
}

/// How the events of one write are announced: an event each (a single call's change), or one
/// event carrying them all (a bulk load, a sweep: one outbox row and one stream message instead of
/// thousands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Each,
    OneBatch,
}

/// Enqueue `events` as `how` says; `batch` wraps them into the one event of [`Announce::OneBatch`].
/// Nothing is enqueued for no events.
pub async fn announce<E: Event, B: Event>(
    connection: &mut PgConnection,
    producer: &str,
    how: Announce,
    events: Vec<E>,
    batch: impl FnOnce(Vec<E>) -> B,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    match how {
        Announce::Each => enqueue_batch(connection, producer, &events).await.map(drop),
        Announce::OneBatch => enqueue(connection, producer, &batch(events)).await.map(drop),
    }
}

/// What [`republish_since`] did in one service's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Republished {
    /// Events marked unpublished again; the relay publishes them in their commit order.
    pub events: u64,
    /// When the oldest event the outbox still holds was written: nothing older can be replayed
    /// (`events.outbox_retention_hours` pruned it). `None` when the outbox is empty.
    pub oldest_kept: Option<chrono::DateTime<chrono::Utc>>,
}

/// Publish again every event published at or after `since` (in the schema `connection` is bound
/// to). For when Redis lost its streams — a failover to a replica without the latest writes, a
/// restart without persistence, a flush: the events it held that a consumer had not handled yet
/// are gone from Redis, while their rows stay here for `events.outbox_retention_hours`. Consumers
/// record every event they handle (`processed_events`, kept for good), so the events they had
/// handled are acknowledged again without running their handlers: pick `since` generously.
pub async fn republish_since(
    connection: &mut PgConnection,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Republished, sqlx::Error> {
    let events = sqlx::query("UPDATE outbox SET published_at = NULL WHERE published_at >= $1")
        .bind(since)
        .execute(&mut *connection)
        .await?
        .rows_affected();
    let oldest_kept = sqlx::query_scalar("SELECT created_at FROM outbox ORDER BY seq LIMIT 1")
        .fetch_optional(&mut *connection)
        .await?;
    Ok(Republished { events, oldest_kept })
}
