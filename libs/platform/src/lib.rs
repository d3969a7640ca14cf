//! What every xinyong binary needs: configuration, telemetry and metrics, the server start with
//! health and graceful shutdown, Postgres bound to the service's schema, Redis, the event bus,
//! the caller's identity and one mapping from errors to `tonic::Status`.

pub mod batches;
pub mod bus;
pub mod coalescing;
pub mod config;
pub mod copy;
pub mod db;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod redis;
pub mod server;
pub mod service;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod upstream;

pub use config::PlatformSettings;
pub use error::{ApiError, violation};
pub use identity::Caller;
pub use server::Host;

/// Every xinyong binary allocates with mimalloc. A gRPC call allocates and frees dozens of small
/// buffers (headers, frames, messages, futures) across tasks; with glibc's allocator that was a
/// fifth of a busy server core (`_int_malloc`, `_int_free`, `malloc_consolidate`), and the
/// servers' CPU per `CheckEntity` fell from 29 to 23 µs with mimalloc (docs/BENCHMARKS.md). Set
/// here, in the crate every service, tool and test binary links, so all of them run on the same one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Build the tokio runtime with the configured number of worker threads (a pod's CPU limit is not
/// what tokio sees, so the chart sets it).
pub fn runtime(settings: &config::RuntimeSettings) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if settings.worker_threads > 0 {
        builder.worker_threads(settings.worker_threads);
    }
    builder.build()
}

/// The smallest UUID v7 made at `instant` or later. The platform's ids are UUID v7, whose first 48
/// bits are the millisecond they were made, so "made before `instant`" is a range of an index on
/// the id, and needs no index on a time of its own.
pub fn first_v7_at(instant: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    let millis = u64::try_from(instant.timestamp_millis()).unwrap_or(0).to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis[2..]);
    // Version 7, variant 0b10, every other bit zero.
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    uuid::Uuid::from_bytes(bytes)
}

/// A time as the contracts carry it (`google.protobuf.Timestamp`).
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}
