//! `ImportEntities` of N generated subjects (validation, ID sealing, idempotent insert, the trigram
//! name index, an outbox event per batch, over gRPC) against a raw `COPY` of the same rows into a
//! table with the same columns and a primary key, in the same database, taken first.

use std::time::Instant;

use futures::StreamExt;
use xinyong_domain::{credit_code, resident_id};
use xinyong_platform::testing::TestDatabase;
use xinyong_proto::common::v1::{Person, SubjectKind};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, ImportEntitiesRequest, ImportOutcome, StreamDirectoryRequest};

use crate::harness;

const REGIONS: &[&str] = &["110108", "110105", "310115", "440300", "330106", "510107", "420106", "610113"];
const INDUSTRIES: &[&str] = &["F5211", "H6210", "C3911", "I6510", "E4710", "L7212", "M7320", "O8010"];

/// The i-th generated subject: valid codes across regions and kinds.
pub fn subject(index: u64) -> Entity {
    let kind = match index % 10 {
        0..=5 => SubjectKind::Enterprise,
        6..=8 => SubjectKind::IndividualBusiness,
        _ => SubjectKind::FarmerCooperative,
    };
    let organisation_type = match kind {
        SubjectKind::IndividualBusiness => '2',
        SubjectKind::FarmerCooperative => '3',
        _ => '1',
    };
    let region = REGIONS[(index % REGIONS.len() as u64) as usize];
    let code = credit_code::complete(&format!("9{organisation_type}{region}{index:08}")).expect("valid prefix");
    let id = resident_id::complete(&format!(
        "{region}19{:02}{:02}{:02}{:03}",
        50 + index % 50,
        1 + index % 12,
        1 + index % 28,
        index % 1000
    ))
    .expect("digits");
    Entity {
        credit_code: code,
        name: format!("{region}市第{index}号商贸有限公司"),
        kind: kind as i32,
        region_code: region.to_owned(),
        industry_code: INDUSTRIES[(index % INDUSTRIES.len() as u64) as usize].to_owned(),
        business_scope: "销售日用百货、食品经营；技术开发、技术咨询".to_owned(),
        established_on: format!("20{:02}-0{}-1{}", 10 + index % 15, 1 + index % 9, index % 9),
        registered_capital: format!("{}", 10 + index % 990),
        address: format!("{region}区幸福路{}号", index % 2000),
        legal_representative: Some(Person { name: "张三".to_owned(), id_number: id, id_number_masked: false }),
        ..Default::default()
    }
}

/// Load `count` subjects through `ImportEntities`; returns how many were created.
pub async fn load(client: &mut RegistryServiceClient<harness::Intercepted>, count: u64) -> u64 {
    let rows = tokio_stream::iter(
        (0..count).map(|index| ImportEntitiesRequest { row: index as i64, entity: Some(subject(index)) }),
    );
    let mut answers = client.import_entities(rows).await.expect("import starts").into_inner();
    let mut created = 0;
    while let Some(answer) = answers.next().await {
        created += answer
            .expect("import answer")
            .results
            .iter()
            .filter(|result| result.outcome == ImportOutcome::Created as i32)
            .count() as u64;
    }
    created
}

fn copy_line(index: u64, out: &mut String) {
    use std::fmt::Write;
    let entity = subject(index);
    let person = entity.legal_representative.as_ref().expect("generated with a person");
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t1",
        entity.credit_code,
        entity.name,
        entity.kind,
        entity.region_code,
        entity.industry_code,
        entity.business_scope,
        entity.established_on,
        entity.registered_capital,
        entity.address,
        person.name,
        person.id_number,
    );
}

pub async fn run() {
    let count = harness::setting("BENCH_SUBJECTS", 1_000_000);
    let database = TestDatabase::new().await;
    let admin = harness::admin_pool(&database).await;
    let copy_rate = harness::copy_baseline(
        &admin,
        "CREATE TABLE public.bench_copy (credit_code TEXT PRIMARY KEY, name TEXT, kind SMALLINT, region_code TEXT,
         industry_code TEXT, business_scope TEXT, established_on DATE, registered_capital NUMERIC(18,2), address TEXT,
         representative_name TEXT, representative_id TEXT, status SMALLINT)",
        "public.bench_copy",
        count,
        copy_line,
    )
    .await;
    eprintln!("import: raw COPY of {count} rows: {copy_rate:.0} rows/s");

    let settings = harness::registry_settings(&database, harness::setting("BENCH_BATCH", 4000) as usize);
    let registry =
        harness::Running::start(|listener, stop| xinyong_registry::run(settings, listener, None, stop)).await;
    let mut client = RegistryServiceClient::with_interceptor(
        harness::connect(registry.address).await,
        harness::interceptor(&database, "bench"),
    );

    eprintln!("import: streaming {count} generated subjects through ImportEntities");
    let started = Instant::now();
    let created = load(&mut client, count).await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(created, count, "every generated subject is created");
    let rate = count as f64 / seconds;
    let peak = crate::peak_rss_mib();
    eprintln!(
        "import: {count} subjects in {seconds:.1} s = {rate:.0} subjects/s; peak RSS {peak:.0} MiB (server and client)"
    );

    // The directory of the same population, streamed: memory must not grow with it.
    let started = Instant::now();
    let mut directory =
        client.stream_directory(StreamDirectoryRequest::default()).await.expect("directory starts").into_inner();
    let mut streamed = 0u64;
    while let Some(entry) = directory.next().await {
        entry.expect("directory entry");
        streamed += 1;
    }
    let stream_seconds = started.elapsed().as_secs_f64();
    assert_eq!(streamed, count);
    eprintln!(
        "directory: streamed {streamed} subjects in {stream_seconds:.1} s ({:.0}/s); peak RSS {peak:.0} MiB before, {:.0} MiB after",
        streamed as f64 / stream_seconds,
        crate::peak_rss_mib()
    );
    registry.stop().await;
    admin.close().await;
    println!(
        "import: ratio {:.3} (subjects/s vs COPY rows/s: {rate:.0} vs {copy_rate:.0}; {count} subjects; peak RSS {peak:.0} MiB)",
        rate / copy_rate
    );
}
