#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run on this machine. Results go to
# docs/BENCHMARKS.md by hand, with the machine and the command.
#
#   scripts/bench.sh            every benchmark
#   scripts/bench.sh import     ImportEntities vs raw COPY (BENCH_SUBJECTS, default 1000000)
#   scripts/bench.sh ingest     SubmitRecords vs raw COPY (BENCH_RECORDS, default 1000000, over BENCH_SUBJECTS=10000)
#   scripts/bench.sh recompute  full Recompute vs one SQL aggregation scan (BENCH_SUBJECTS, default 1000000,
#                               with BENCH_RECORDS_PER_SUBJECT=5 records each): every scheme from no
#                               grades (the ratio line), again in place, after a new version of
#                               public_credit, and public_credit alone from no grades (the scheme
#                               the scan counts for)
#   scripts/bench.sh grade-latency
#                               SubmitRecord to the new grade in GetGrade (BENCH_CHANGES, default 1000)
#   scripts/bench.sh check      CheckEntity direct vs a bare echo, through the gateway vs a bare proxy,
#                               and the gateway over TLS vs in clear (BENCH_SECONDS per run, default 10;
#                               BENCH_IN_FLIGHT, default 64); servers on core 0, the load on core 1
#
# Each ends with a line `<name>: ratio R (...)` that a script can check (check with three: check,
# check-gateway, check-tls). import and ingest also
# print the CPU a row on each side, recompute the CPU of each pass (Postgres's from /proc, so only
# when it runs on this machine).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

prepare
log "building the benchmark tool (release)"
cargo build --release --locked -q -p xinyong-bench
BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/xinyong-bench

run() { log "benchmark: $1"; RUST_LOG=${RUST_LOG:-warn} "$BENCH" "$1"; }
# The servers on core 0 and the load (a child process) on core 1, when taskset is there.
run_pinned() {
  if command -v taskset >/dev/null; then
    log "benchmark: $1 (servers on core 0, load on core 1)"
    RUST_LOG=${RUST_LOG:-warn} taskset -c 0 "$BENCH" "$1"
  else
    run "$1"
  fi
}

case ${1:-all} in
  import) run import ;;
  ingest) run ingest ;;
  recompute) run recompute ;;
  grade-latency) run grade-latency ;;
  check) run_pinned check ;;
  all) run import; run ingest; run recompute; run grade-latency; run_pinned check ;;
  *) die "unknown benchmark ${1} (import, ingest, recompute, grade-latency, check)" ;;
esac
