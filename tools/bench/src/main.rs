//! `xinyong-bench <name>`: one benchmark, measured against a baseline in the same run on the same
//! machine, ending with a line `<name>: ratio R (...)` that scripts can check.

mod check;
mod harness;
mod import;
mod ingest;
mod latency;
mod recompute;

use std::process::ExitCode;

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    // The servers here log as the services do, through the global subscriber (`RUST_LOG`, `warn`
    // from scripts/bench.sh). Without one, every span the libraries open at trace level (h2 opens
    // several per frame) is still built and offered to the `log` crate: 3% of a busy core.
    let _telemetry = xinyong_platform::telemetry::init("bench", &Default::default());
    // The check load is pinned to one core, where a multi-thread runtime's cross-thread wake-ups
    // and parking bought nothing and cost the load a fifth of its CPU per call.
    let runtime = if name == "check-load" {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("runtime");
    match name.as_str() {
        "import" => runtime.block_on(import::run()),
        "ingest" => runtime.block_on(ingest::run()),
        "recompute" => runtime.block_on(recompute::run()),
        "grade-latency" => runtime.block_on(latency::run()),
        "check" => runtime.block_on(check::run()),
        "check-load" => runtime.block_on(check::load_child()),
        _ => {
            eprintln!("usage: xinyong-bench import|ingest|recompute|grade-latency|check");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
