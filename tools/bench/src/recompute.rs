//! A full `Recompute` (every scheme, every subject: load the facts, evaluate, store each changed
//! grade, the one it replaces moving into the history, announce, refresh Redis, over gRPC with
//! progress) of N subjects with 5N records, against one SQL aggregation scan over the same records
//! in the same database: the least any grading of those records must read. The scan counts what
//! `public_credit` asks about, so the run ends with that scheme alone from no grades as well.
//!
//! The subjects and records are put into grading's projection with `COPY`, as the events from
//! registry and ingestion would have left them; that load is not measured.

use std::time::Instant;

use chrono::{Duration, NaiveDate};
use futures::StreamExt;
use sqlx::Executor;
use xinyong_grading::{GradingSection, GradingSettings};
use xinyong_platform::testing::{TestDatabase, redis_url};
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::grading::v1::{PublishRuleSetRequest, RecomputeRequest, RecomputeResponse};

use crate::harness::{self, CpuUse};
use crate::import;

/// A small deterministic mixer, so that every run grades the same population.
fn mix(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^ (value >> 33)
}

/// Record `index` of subject `subject`: mostly neutral and positive, a third general dishonesty,
/// a few serious, severe penalties and list entries; decided over the last two years.
fn record_line(subject: u64, index: u64, today: NaiveDate, out: &mut String) {
    use std::fmt::Write;
    let random = mix(subject * 8 + index);
    let (category, nature, penalty_kind) = match random % 100 {
        0..=49 => ("licence", 2, 0),
        50..=54 => ("reward", 1, 0),
        55..=84 => ("penalty", 4, 2),
        85..=89 => ("penalty", 3, 1),
        90..=94 => ("penalty", 5, 2),
        95..=97 => ("penalty", 4, 6),
        _ => ("serious_dishonesty_list", 5, 0),
    };
    let decided_on = today - Duration::days((random >> 8) as i64 % 730);
    let months = if nature == 5 { 36 } else { 12 };
    let until = decided_on.checked_add_months(chrono::Months::new(months)).unwrap_or(decided_on);
    let code = import::subject(subject).credit_code;
    let record_id = u128::from(subject) << 8 | u128::from(index);
    let _ = writeln!(
        out,
        "{record_id:032x}\t{code}\tbench-{}\t{category}\t{nature}\t{penalty_kind}\t{decided_on}\tt\tf\tt\t{until}\t\\N\t1",
        random % 7
    );
}

/// The baseline: one pass over every record, counting per subject what the public-credit scheme
/// asks about (dishonesty by nature inside the window, severe penalties, open listings). Counted
/// in Postgres, so the benchmark's own memory does not hold a million result rows.
const PUBLIC_CREDIT_COUNTS: &str = "
        count(*) FILTER (WHERE nature = 4 AND decided_on > $1),
        count(*) FILTER (WHERE nature = 5 AND decided_on > $1),
        count(*) FILTER (WHERE penalty_kind IN (4, 5, 6, 8, 9, 10, 11) AND decided_on > $1),
        count(*) FILTER (WHERE category = 'serious_dishonesty_list' AND removed_on IS NULL)";

/// Not the baseline: what `district_supervision` asks about besides (listings open a year or
/// more, dishonesty of either nature, open abnormal-operation listings), so that the pass over
/// every scheme can be set against a scan that counts as much.
const DISTRICT_SUPERVISION_COUNTS: &str = "
        count(*) FILTER (WHERE category = 'serious_dishonesty_list' AND removed_on IS NULL AND decided_on <= $1),
        count(*) FILTER (WHERE nature IN (4, 5) AND decided_on > $1),
        count(*) FILTER (WHERE category = 'abnormal_operation_list' AND removed_on IS NULL)";

/// The scan counting `counts` per subject over the records that may count.
fn scan_counting(counts: &str) -> String {
    format!(
        "SELECT count(*) FROM (SELECT credit_code, {counts}
         FROM grading.record_facts
         WHERE active AND (disclosure_until IS NULL OR disclosure_until > $2)
         GROUP BY credit_code) per_subject"
    )
}

/// The faster of two runs of `query` (the first warms the cache the way the recompute will find
/// it), and what that run cost.
async fn scan(
    admin: &sqlx::PgPool,
    query: String,
    window_start: NaiveDate,
    today: NaiveDate,
    subjects: u64,
) -> (f64, String) {
    let mut seconds = f64::MAX;
    let mut spent = String::new();
    for _ in 0..2 {
        let cpu = CpuUse::now(admin).await;
        let started = Instant::now();
        let graded: i64 =
            sqlx::query_scalar(&query).bind(window_start).bind(today).fetch_one(admin).await.expect("scan");
        seconds = seconds.min(started.elapsed().as_secs_f64());
        spent = cpu.spent_until(&CpuUse::now(admin).await);
        assert!(graded as u64 <= subjects);
    }
    (seconds, spent)
}

/// What a pass cost besides its time: the CPU on each side, and the log it wrote with the
/// checkpoints it set off (`max_wal_size` outgrown). Each checkpoint is followed by full-page
/// images of every page touched again, the first suspect when one run of a pass is much slower
/// than another.
struct PassCost {
    cpu: CpuUse,
    log: (i64, i64),
}

impl PassCost {
    async fn start(admin: &sqlx::PgPool) -> PassCost {
        PassCost { cpu: CpuUse::now(admin).await, log: harness::wal_and_checkpoints(admin).await }
    }

    async fn spent(self, admin: &sqlx::PgPool) -> String {
        let cpu = self.cpu.spent_until(&CpuUse::now(admin).await);
        let log = harness::wal_and_checkpoints(admin).await;
        format!("{cpu}; log {} MB, {} checkpoints", (log.0 - self.log.0) >> 20, log.1 - self.log.1)
    }
}

/// One `Recompute` of every subject under `scheme` (every scheme when empty), followed to its end:
/// its seconds, what it cost and its final progress.
async fn pass(
    client: &mut GradingServiceClient<harness::Intercepted>,
    admin: &sqlx::PgPool,
    scheme: &str,
) -> (f64, String, RecomputeResponse) {
    let cost = PassCost::start(admin).await;
    let started = Instant::now();
    let mut progress = client
        .recompute(RecomputeRequest { scheme: scheme.into(), ..RecomputeRequest::default() })
        .await
        .expect("recompute starts")
        .into_inner();
    let mut last = None;
    let mut reported = Instant::now();
    while let Some(message) = progress.next().await {
        let message = message.expect("progress");
        if reported.elapsed().as_secs() >= 10 {
            reported = Instant::now();
            eprintln!("recompute: {} subjects, {} grades changed", message.subjects_done, message.grades_changed);
        }
        last = Some(message);
    }
    let seconds = started.elapsed().as_secs_f64();
    let last = last.expect("a final message");
    assert!(last.finished);
    (seconds, cost.spent(admin).await, last)
}

pub async fn run() {
    let subjects = harness::setting("BENCH_SUBJECTS", 1_000_000);
    let per_subject = harness::setting("BENCH_RECORDS_PER_SUBJECT", 5);
    let database = TestDatabase::new().await;
    let admin = harness::admin_pool(&database).await;

    // Grading migrates its schema at start; then its projection is loaded as events would have.
    let mut settings = GradingSettings {
        platform: database.settings("grading", &redis_url()),
        grading: GradingSection {
            recompute_chunk: harness::setting("BENCH_CHUNK", GradingSection::default().recompute_chunk as u64) as i64,
            ..GradingSection::default()
        },
    };
    // A deployment's pool, not the tests' smaller one: a recompute runs as many chunks at once as
    // half of it allows.
    settings.platform.database.max_connections = xinyong_platform::config::DatabaseSettings::default().max_connections;
    let grading = harness::Running::start(|listener, stop| xinyong_grading::run(settings, listener, None, stop)).await;
    let mut client = GradingServiceClient::with_interceptor(
        xinyong_platform::testing::connect_when_serving(grading.address, "xinyong.grading.v1.GradingService").await,
        harness::interceptor(&database, "bench"),
    );
    let today = xinyong_domain::calendar::today();
    eprintln!(
        "recompute: loading {subjects} subjects and {} records into grading's projection",
        subjects * per_subject
    );
    let loading = Instant::now();
    harness::copy_lines(
        &admin,
        "COPY grading.subjects (credit_code, kind, region_code, industry_code, status, registered) FROM STDIN",
        subjects,
        |index, out| {
            use std::fmt::Write;
            let subject = import::subject(index);
            // One in a thousand has had its business licence revoked.
            let status = if mix(index).is_multiple_of(1000) { 2 } else { 1 };
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{status}\tt",
                subject.credit_code, subject.kind, subject.region_code, subject.industry_code
            );
        },
    )
    .await;
    harness::copy_lines(
        &admin,
        "COPY grading.record_facts (record_id, credit_code, department_id, category, nature, penalty_kind, decided_on,
             active, disputed, published, disclosure_until, removed_on, version) FROM STDIN",
        subjects * per_subject,
        |index, out| record_line(index / per_subject, index % per_subject, today, out),
    )
    .await;
    admin.execute("VACUUM ANALYZE grading.subjects").await.expect("vacuum");
    admin.execute("VACUUM ANALYZE grading.record_facts").await.expect("vacuum");
    admin.execute("CHECKPOINT").await.expect("checkpoint");
    eprintln!("recompute: loaded in {:.1} s", loading.elapsed().as_secs_f64());

    let window_start = today - Duration::days(365);
    let (every_scheme_scan_seconds, every_scheme_scan_cpu) = scan(
        &admin,
        scan_counting(&format!("{PUBLIC_CREDIT_COUNTS},{DISTRICT_SUPERVISION_COUNTS}")),
        window_start,
        today,
        subjects,
    )
    .await;
    let (scan_seconds, scan_cpu) =
        scan(&admin, scan_counting(PUBLIC_CREDIT_COUNTS), window_start, today, subjects).await;
    eprintln!(
        "recompute: aggregation scan over {} records: {scan_seconds:.2} s ({scan_cpu}, the second run); counting what every scheme asks: {every_scheme_scan_seconds:.2} s ({every_scheme_scan_cpu})",
        subjects * per_subject
    );

    let (seconds, first_cost, last) = pass(&mut client, &admin, "").await;
    assert_eq!(last.subjects_done as u64, subjects);
    let grades: Vec<(i16, i64)> = sqlx::query_as(
        "SELECT grade, count(*) FROM grading.grades WHERE scheme = 'public_credit' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .expect("grade counts");
    eprintln!(
        "recompute: {subjects} subjects, {} grades written in {seconds:.1} s = {:.0} subjects/s ({first_cost}); public_credit A..D: {grades:?}; peak RSS {:.0} MiB; against the scan counting what every scheme asks, ratio {:.3}",
        last.grades_changed,
        subjects as f64 / seconds,
        crate::peak_rss_mib(),
        every_scheme_scan_seconds / seconds
    );
    // Again, with every grade in place: what a periodic recompute that changes little costs.
    let (again_seconds, again_cost, again) = pass(&mut client, &admin, "").await;
    eprintln!(
        "recompute: again with every grade in place: {again_seconds:.1} s ({again_cost}), {} changed (ratio {:.3})",
        again.grades_changed,
        scan_seconds / again_seconds
    );
    // A new version of a scheme, and the recompute an operator runs after publishing it: every
    // grade of that scheme is rewritten (it names the version it was computed under).
    let stricter = xinyong_domain::grading::PUBLIC_CREDIT.replace("\"at_least\": 6", "\"at_least\": 5");
    client
        .publish_rule_set(PublishRuleSetRequest { scheme: "public_credit".into(), document: stricter })
        .await
        .expect("a new version of public_credit");
    let (republished_seconds, republished_cost, republished) = pass(&mut client, &admin, "public_credit").await;
    assert_eq!(republished.grades_changed as u64, subjects, "every public_credit grade names the new version");
    eprintln!(
        "recompute: public_credit after a new version: {republished_seconds:.1} s ({republished_cost}), {} grades rewritten (ratio {:.3})",
        republished.grades_changed,
        scan_seconds / republished_seconds
    );
    let size: String = sqlx::query_scalar(
        "SELECT pg_size_pretty(pg_total_relation_size('grading.grades')) || ' grades ('
             || pg_size_pretty(pg_relation_size('grading.grades')) || ' heap, '
             || pg_size_pretty(pg_indexes_size('grading.grades')) || ' indexes), '
             || pg_size_pretty(pg_total_relation_size('grading.grade_history')) || ' history, '
             || pg_size_pretty(pg_total_relation_size('grading.outbox')) || ' outbox; a grade row '
             || (SELECT avg(pg_column_size(g.*))::int || ' B, its reasons '
                 || avg(pg_column_size(reasons))::int || ' B' FROM grading.grades g)",
    )
    .fetch_one(&admin)
    .await
    .expect("table sizes");
    eprintln!("recompute: on disk {size}");
    // The scan counts what `public_credit` asks about, while the passes above grade under both
    // schemes. The matched comparison: `public_credit` alone, from no grades again, starting as the
    // first pass did (after a checkpoint). It grades under the stricter version published above,
    // which reads and writes as much as the first.
    admin.execute("TRUNCATE grading.grades, grading.grade_history").await.expect("grades emptied");
    admin.execute("CHECKPOINT").await.expect("checkpoint");
    let (alone_seconds, alone_cost, alone) = pass(&mut client, &admin, "public_credit").await;
    assert_eq!(alone.grades_changed as u64, subjects, "every subject gets its first public_credit grade");
    eprintln!(
        "recompute: public_credit alone from no grades, the scheme the scan counts for: {alone_seconds:.1} s ({alone_cost}), {} grades written (ratio {:.3})",
        alone.grades_changed,
        scan_seconds / alone_seconds
    );
    grading.stop().await;

    // What the pass from no grades costs without a service around it: its reads and evaluation
    // (the pass in place), then its grades written, here two rows a subject with reasons of about
    // the average size `COPY`'d straight into a table made like `grades` (its key and fillfactor),
    // no events. Only overlapping the two on both cores takes the pass below their sum.
    let options: Option<String> = sqlx::query_scalar(
        "SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = 'grading.grades'::regclass",
    )
    .fetch_one(&admin)
    .await
    .expect("the grades' storage options");
    let with = options.map(|options| format!(" WITH ({options})")).unwrap_or_default();
    let rows = subjects * 2;
    // In code order, as the pass writes them, so the key is appended to as in the pass.
    let mut codes: Vec<String> = (0..subjects).map(|index| import::subject(index).credit_code).collect();
    codes.sort_unstable();
    let copy_rate = harness::copy_baseline(
        &admin,
        &format!("CREATE TABLE public.bench_grades (LIKE grading.grades INCLUDING ALL){with}"),
        "public.bench_grades",
        rows,
        |index, out| {
            use std::fmt::Write;
            let code = &codes[(index / 2) as usize];
            let scheme = if index % 2 == 0 { "district_supervision" } else { "public_credit" };
            let _ = writeln!(
                out,
                "{}\t{scheme}\t2\t1\t[{{\"code\":\"general_dishonesty\",\"record_ids\":[\"0190f3a2-7c1e-7000-8000-{index:012}\"]}}]\t{index}\t2026-11-24\t2026-11-24 00:00:00+00\t2027-03-01\t\\N\trecompute",
                code
            );
        },
    )
    .await;
    let copy_seconds = rows as f64 / copy_rate;
    eprintln!(
        "recompute: raw COPY of {rows} grade rows into a table like grading.grades: {copy_seconds:.1} s; after the pass in place, {:.1} s (ratio {:.3}), what the pass from no grades costs if its reads and writes do not overlap",
        again_seconds + copy_seconds,
        scan_seconds / (again_seconds + copy_seconds)
    );
    admin.close().await;
    println!(
        "recompute: ratio {:.3} (seconds vs scan seconds: {seconds:.1} s recompute from no grades, {scan_seconds:.2} s scan, {again_seconds:.1} s again with grades in place, {republished_seconds:.1} s for a new version of one scheme, {alone_seconds:.1} s for public_credit alone from no grades; {subjects} subjects, {} records)",
        scan_seconds / seconds,
        subjects * per_subject
    );
}
