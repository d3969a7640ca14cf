//! `xinyong-node <service>`: the same start as the service's own binary (`xinyong-<service>`).

use std::process::ExitCode;

use xinyong_platform::service::main as run_service;

fn main() -> ExitCode {
    let service = std::env::args().nth(1).unwrap_or_default();
    match service.as_str() {
        "gateway" => run_service("gateway", xinyong_gateway::run),
        "registry" => run_service("registry", xinyong_registry::run),
        "ingestion" => run_service("ingestion", xinyong_ingestion::run),
        "grading" => run_service("grading", xinyong_grading::run),
        "sanctions" => run_service("sanctions", xinyong_sanctions::run),
        "lottery" => run_service("lottery", xinyong_lottery::run),
        "objections" => run_service("objections", xinyong_objections::run),
        "reports" => run_service("reports", xinyong_reports::run),
        _ => {
            eprintln!("usage: xinyong-node gateway|registry|ingestion|grading|sanctions|lottery|objections|reports");
            ExitCode::from(2)
        }
    }
}
