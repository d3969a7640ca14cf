//! End-to-end tests: the platform as an integrator sees it, through the gateway.

mod support;

mod certificates;
mod files;
mod foundation;
mod grading;
mod ingestion;
mod lottery;
mod objections;
mod registry;
mod reports;
mod sanctions;
