#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run on this machine. Results go to
# docs/BENCHMARKS.md by hand, with the machine and the command.
#
#   scripts/bench.sh            every benchmark
#   scripts/bench.sh import     ImportEntities vs raw COPY (BENCH_SUBJECTS, default 1000000)
#   scripts/bench.sh ingest     SubmitRecords vs raw COPY (BENCH_RECORDS, default 1000000, over BENCH_SUBJECTS=10000)
#
# Each ends with a line `<name>: ratio R (...)` that a script can check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

prepare
log "building the benchmark tool (release)"
cargo build --release --locked -q -p xinyong-bench
BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/xinyong-bench

run() { log "benchmark: $1"; RUST_LOG=${RUST_LOG:-warn} "$BENCH" "$1"; }

case ${1:-all} in
  import) run import ;;
  ingest) run ingest ;;
  all) run import; run ingest ;;
  *) die "unknown benchmark ${1} (import, ingest)" ;;
esac
