//! The registry over real gRPC, against real Postgres and Redis.

mod support;

mod directory_and_import;
mod migrations;
mod registration;
mod search;
