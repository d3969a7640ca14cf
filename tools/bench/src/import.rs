//! `ImportEntities` of N generated subjects (validation, ID sealing, idempotent insert, status
//! history and an outbox event per subject, over gRPC) against a raw `COPY` of the same rows into
//! a table with the same columns and a primary key, in the same database.

use std::time::Instant;

use futures::StreamExt;
use secrecy::SecretString;
use sqlx::Executor;
use tonic::transport::Endpoint;
use xinyong_domain::{credit_code, resident_id};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{TestDatabase, redis_url};
use xinyong_proto::common::v1::{Person, SubjectKind};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, ImportEntitiesRequest, ImportOutcome};
use xinyong_registry::{RegistrySection, RegistrySettings};

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
    let code = credit_code::complete(&format!("9{organisation_type}{region}{:08}", index)).expect("valid prefix");
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
        name: format!("{}市第{}号商贸有限公司", region, index),
        kind: kind as i32,
        region_code: region.to_owned(),
        industry_code: INDUSTRIES[(index % INDUSTRIES.len() as u64) as usize].to_owned(),
        business_scope: "销售日用百货、食品经营；技术开发、技术咨询".to_owned(),
        established_on: format!("20{:02}-0{}-1{}", 10 + index % 15, 1 + index % 9, index % 9),
        registered_capital: format!("{}", 10 + index % 990),
        address: format!("{}区幸福路{}号", region, index % 2000),
        legal_representative: Some(Person { name: "张三".to_owned(), id_number: id, id_number_masked: false }),
        ..Default::default()
    }
}

fn subjects() -> u64 {
    std::env::var("BENCH_SUBJECTS").ok().and_then(|value| value.parse().ok()).unwrap_or(1_000_000)
}

/// A COPY text line of a subject, in the columns of `bench_copy`.
fn copy_line(entity: &Entity, out: &mut String) {
    use std::fmt::Write;
    let person = entity.legal_representative.as_ref().expect("generated with a person");
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
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
        1,
    );
}

pub async fn run() {
    let count = subjects();
    let database = TestDatabase::new().await;
    let mut platform = database.settings("registry", &redis_url());
    platform.events.relay_enabled = std::env::var("BENCH_RELAY").map_or(true, |value| value != "off");
    let token = platform.internal.token.clone();
    let settings = RegistrySettings {
        platform,
        registry: RegistrySection {
            personal_data_key: SecretString::from("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            import_batch: std::env::var("BENCH_BATCH").ok().and_then(|value| value.parse().ok()).unwrap_or(2000),
            ..RegistrySection::default()
        },
    };
    // The baseline first, on a quiet database: the same rows COPY'd into a table with the same
    // columns and a primary key. (Run after the import it would compete with autovacuum merging
    // the import's trigram index, and measure that instead.)
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!(
            "{}/{}",
            xinyong_platform::testing::admin_database_url().rsplit_once('/').expect("URL with a database").0,
            database.name
        ))
        .await
        .expect("admin connection to the bench database");
    admin
        .execute(
            "CREATE TABLE public.bench_copy (credit_code TEXT PRIMARY KEY, name TEXT, kind SMALLINT, region_code TEXT,
             industry_code TEXT, business_scope TEXT, established_on DATE, registered_capital NUMERIC(18,2), address TEXT,
             representative_name TEXT, representative_id TEXT, status SMALLINT)",
        )
        .await
        .expect("baseline table");
    let started = Instant::now();
    let mut connection = admin.acquire().await.expect("connection");
    let mut copy = connection.copy_in_raw("COPY public.bench_copy FROM STDIN").await.expect("COPY starts");
    let mut chunk = String::with_capacity(4 << 20);
    for index in 0..count {
        copy_line(&subject(index), &mut chunk);
        if chunk.len() > (4 << 20) - 4096 {
            copy.send(chunk.as_bytes()).await.expect("COPY data");
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await.expect("COPY data");
    let copied = copy.finish().await.expect("COPY ends");
    let copy_seconds = started.elapsed().as_secs_f64();
    assert_eq!(copied, count);
    let copy_rate = count as f64 / copy_seconds;
    eprintln!("import: raw COPY of the same {count} rows in {copy_seconds:.1} s = {copy_rate:.0} rows/s");
    drop(connection);
    // Start the import from a quiet database: nothing of the COPY left to flush.
    admin.execute("CHECKPOINT").await.expect("checkpoint");
    admin.close().await;
    let listener = xinyong_platform::server::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(xinyong_registry::run(
        settings,
        listener,
        None,
        Box::pin(async move {
            let _ = stopped.await;
        }),
    ));
    let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("endpoint");
    let channel = loop {
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let interceptor = InternalInterceptor::new(&token, Some(Caller::new("bench", vec![]))).expect("token");
    let mut client = RegistryServiceClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    eprintln!("import: streaming {count} generated subjects through ImportEntities");
    let started = Instant::now();
    let rows = tokio_stream::iter(
        (0..count).map(|index| ImportEntitiesRequest { row: index as i64, entity: Some(subject(index)) }),
    );
    let mut answers = client.import_entities(rows).await.expect("import starts").into_inner();
    let (mut created, mut other) = (0u64, 0u64);
    while let Some(answer) = answers.next().await {
        for result in answer.expect("import answer").results {
            if result.outcome == ImportOutcome::Created as i32 { created += 1 } else { other += 1 }
        }
    }
    let import_seconds = started.elapsed().as_secs_f64();
    assert_eq!(created, count, "every generated subject is created ({other} were not)");
    let import_rate = count as f64 / import_seconds;
    let peak = crate::peak_rss_mib();
    eprintln!(
        "import: {count} subjects in {import_seconds:.1} s = {import_rate:.0} subjects/s; peak RSS {peak:.0} MiB (server and client)"
    );

    // The directory of the same million, streamed: memory must not grow with the population.
    let started = Instant::now();
    let mut directory = client
        .stream_directory(xinyong_proto::registry::v1::StreamDirectoryRequest::default())
        .await
        .expect("directory starts")
        .into_inner();
    let mut streamed = 0u64;
    while let Some(entry) = directory.next().await {
        entry.expect("directory entry");
        streamed += 1;
    }
    let stream_seconds = started.elapsed().as_secs_f64();
    assert_eq!(streamed, count);
    let peak_after_stream = crate::peak_rss_mib();
    eprintln!(
        "directory: streamed {streamed} subjects in {stream_seconds:.1} s ({:.0}/s); peak RSS {peak:.0} MiB before, {peak_after_stream:.0} MiB after",
        streamed as f64 / stream_seconds
    );
    let _ = stop.send(());
    let _ = server.await;

    let ratio = import_rate / copy_rate;
    println!(
        "import: ratio {ratio:.3} (subjects/s vs COPY rows/s: {import_rate:.0} vs {copy_rate:.0}; {count} subjects; peak RSS {peak:.0} MiB)"
    );
}
