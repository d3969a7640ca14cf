//! The commands of `xinyong-cli` as a library, so that tests run exactly what operators run.

pub mod ingest;
pub mod replay;
