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

/// `value` in decimal, at least `width` digits (zeros in front).
fn push_number(out: &mut String, value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in digits.len() - at..width {
        out.push('0');
    }
    out.extend(digits[at..].iter().map(|digit| char::from(*digit)));
}

/// Text pieces and numbers joined without `format!`: the generator runs on the cores it measures,
/// and formatting was an eighth of the benchmark process's CPU.
pub(crate) fn joined(parts: &[Part]) -> String {
    let mut out = String::with_capacity(48);
    join_into(&mut out, parts);
    out
}

/// `parts` joined onto the end of `out`.
pub(crate) fn join_into(out: &mut String, parts: &[Part]) {
    for part in parts {
        match *part {
            Part::Text(text) => out.push_str(text),
            Part::Number(value, width) => push_number(out, value, width),
        }
    }
}

pub(crate) enum Part<'a> {
    Text(&'a str),
    Number(u64, usize),
}

/// The i-th generated subject: valid codes across regions and kinds.
pub fn subject(index: u64) -> Entity {
    use Part::{Number, Text};
    let kind = match index % 10 {
        0..=5 => SubjectKind::Enterprise,
        6..=8 => SubjectKind::IndividualBusiness,
        _ => SubjectKind::FarmerCooperative,
    };
    let organisation_type = match kind {
        SubjectKind::IndividualBusiness => "92",
        SubjectKind::FarmerCooperative => "93",
        _ => "91",
    };
    let region = REGIONS[(index % REGIONS.len() as u64) as usize];
    let code = credit_code::complete(&joined(&[Text(organisation_type), Text(region), Number(index, 8)]))
        .expect("valid prefix");
    let id = resident_id::complete(&joined(&[
        Text(region),
        Text("19"),
        Number(50 + index % 50, 2),
        Number(1 + index % 12, 2),
        Number(1 + index % 28, 2),
        Number(index % 1000, 3),
    ]))
    .expect("digits");
    Entity {
        credit_code: code,
        name: joined(&[Text(region), Text("市第"), Number(index, 1), Text("号商贸有限公司")]),
        kind: kind as i32,
        region_code: region.to_owned(),
        industry_code: INDUSTRIES[(index % INDUSTRIES.len() as u64) as usize].to_owned(),
        business_scope: "销售日用百货、食品经营；技术开发、技术咨询".to_owned(),
        established_on: joined(&[
            Text("20"),
            Number(10 + index % 15, 2),
            Text("-0"),
            Number(1 + index % 9, 1),
            Text("-1"),
            Number(index % 9, 1),
        ]),
        registered_capital: joined(&[Number(10 + index % 990, 1)]),
        address: joined(&[Text(region), Text("区幸福路"), Number(index % 2000, 1), Text("号")]),
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
    let cpu_before_copy = harness::CpuUse::now(&admin).await;
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
    let cpu_after_copy = harness::CpuUse::now(&admin).await;
    eprintln!("import: raw COPY of {count} rows: {copy_rate:.0} rows/s");

    let settings = harness::registry_settings(&database, harness::setting("BENCH_BATCH", 4000) as usize);
    let registry =
        harness::Running::start(|listener, stop| xinyong_registry::run(settings, listener, None, stop)).await;
    let mut client = RegistryServiceClient::with_interceptor(
        harness::connect(registry.address).await,
        harness::interceptor(&database, "bench"),
    );

    eprintln!("import: streaming {count} generated subjects through ImportEntities");
    let cpu_before = harness::CpuUse::now(&admin).await;
    let started = Instant::now();
    let created = load(&mut client, count).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = harness::CpuUse::now(&admin).await;
    harness::report_cpu(
        "import",
        "ImportEntities",
        (&cpu_before_copy, &cpu_after_copy),
        (&cpu_before, &cpu_after),
        count,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator writes what `format!` would: the benchmark's rows did not change with it.
    #[test]
    fn generated_subjects_are_spelled_as_before() {
        for index in [0u64, 7, 99, 12_345, 999_999, 99_999_999] {
            let entity = subject(index);
            let region = REGIONS[(index % REGIONS.len() as u64) as usize];
            assert_eq!(entity.name, format!("{region}市第{index}号商贸有限公司"));
            assert_eq!(entity.established_on, format!("20{:02}-0{}-1{}", 10 + index % 15, 1 + index % 9, index % 9));
            assert_eq!(entity.registered_capital, format!("{}", 10 + index % 990));
            assert_eq!(entity.address, format!("{region}区幸福路{}号", index % 2000));
            assert_eq!(&entity.credit_code[2..16], format!("{region}{index:08}"));
            let id = &entity.legal_representative.as_ref().unwrap().id_number;
            let expected = format!(
                "{region}19{:02}{:02}{:02}{:03}",
                50 + index % 50,
                1 + index % 12,
                1 + index % 28,
                index % 1000
            );
            assert_eq!(&id[..17], expected);
            assert!(xinyong_domain::credit_code::CreditCode::parse(&entity.credit_code).is_ok());
        }
    }
}
