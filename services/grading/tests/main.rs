//! Grading over real gRPC against real Postgres and Redis: rule sets, and grades that follow the
//! events registry, ingestion and objections put on the bus (published here as their relays would).

mod support;

mod grades;
mod rule_sets;
