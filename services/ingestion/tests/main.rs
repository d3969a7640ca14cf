//! Ingestion over real gRPC against real Postgres and Redis, with a real registry beside it.

mod support;

mod records;
mod streams;
