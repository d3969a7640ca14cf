//! The event bus: transactional outbox → relay → Redis Streams → consumer groups with
//! deduplication. See docs/events.md for the guarantees and how to add an event.
//!
//! - [`outbox::enqueue`] writes an event in the caller's transaction: the event exists exactly when
//!   the change does.
//! - [`relay::Relay`] publishes unpublished outbox rows to `<prefix>:events:<producer>` (prefix `redis.key_prefix`, default `xinyong`) and marks
//!   them published. A crash between the two publishes a row again later (at least once).
//! - [`consumer::Consumer`] reads a stream in a consumer group and runs the handler in a
//!   transaction that also records the event id, so a redelivery is skipped (exactly once in effect).

pub mod consumer;
pub mod outbox;
pub mod relay;
pub mod wire;

pub use consumer::{Consumer, EventHandler, HandlerError};
pub use outbox::{Announce, Event, announce, enqueue, enqueue_batch, enqueue_encoded};
pub use relay::Relay;
