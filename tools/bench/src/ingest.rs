//! `SubmitRecords` of N generated penalty records (validation against the catalogue, the subject
//! check, idempotency, disclosure and delay, the insert with its indexes, an outbox event per batch,
//! answers per row, over gRPC) against a raw `COPY` of the same rows into a table with the same
//! columns and a primary key, in the same database, taken first.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use prost::bytes::BufMut;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstDecoder;
use xinyong_ingestion::{IngestionSection, IngestionSettings};
use xinyong_platform::testing::{TestDatabase, redis_url};
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput, SubmitOutcome, SubmitRecordsResponse};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::harness;
use crate::import::Part::{self, Number, Text};
use crate::import::{self, join_into, joined};

/// The legal basis and the deciding authority of every generated fine.
const LEGAL_BASIS: &str = "《中华人民共和国食品安全法》第一百二十六条第一款";
const AUTHORITY: &str = "北京市海淀区市场监督管理局";

/// The parts of the generated record `index`'s texts that vary with it.
struct Spelling<'a> {
    source_record_id: [Part<'a>; 2],
    decided_on: [Part<'a>; 4],
    document_number: [Part<'a>; 3],
    content: [Part<'a>; 3],
}

fn spelling(index: u64) -> Spelling<'static> {
    Spelling {
        source_record_id: [Text("BENCH-"), Number(index, 9)],
        decided_on: [Text("2025-"), Number(1 + (index / 28) % 12, 2), Text("-"), Number(1 + index % 28, 2)],
        document_number: [Text("京海市监罚〔2025〕"), Number(index, 1), Text("号")],
        content: [Text("罚款"), Number(1000 + index % 9000, 1), Text("元")],
    }
}

/// The i-th generated record, about `credit_code`: a fine with the 双公示 fields (the load's codes
/// are made once, not per record: the load shares the two cores with the services it measures).
pub fn record(index: u64, credit_code: &str) -> RecordInput {
    let spelling = spelling(index);
    RecordInput {
        credit_code: credit_code.to_owned(),
        source_record_id: joined(&spelling.source_record_id),
        category: "penalty".to_owned(),
        nature: 0,
        decided_on: joined(&spelling.decided_on),
        document_number: joined(&spelling.document_number),
        fields: [
            ("content", joined(&spelling.content)),
            ("legal_basis", LEGAL_BASIS.to_owned()),
            ("authority", AUTHORITY.to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
        text: String::new(),
        penalty_kind: PenaltyKind::Fine as i32,
        ..RecordInput::default()
    }
}

/// The streaming load's codec: a row goes in as its index and is written straight into tonic's
/// buffer as the bytes prost would write for `SubmitRecordsRequest { row, record: record(row, …) }`
/// (a test holds them equal), so the service receives exactly what it did before. A department's
/// client runs on its own machine; this one shares the two cores with the services it measures,
/// and building each request's seven strings and its map and encoding them through prost was a
/// seventh of the benchmark process's CPU.
struct Load {
    codes: Arc<Vec<String>>,
}

impl Codec for Load {
    type Encode = u64;
    type Decode = SubmitRecordsResponse;
    type Encoder = LoadEncoder;
    type Decoder = ProstDecoder<SubmitRecordsResponse>;

    fn encoder(&mut self) -> LoadEncoder {
        LoadEncoder { codes: self.codes.clone(), scratch: Scratch::default() }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

struct LoadEncoder {
    codes: Arc<Vec<String>>,
    scratch: Scratch,
}

impl Encoder for LoadEncoder {
    type Item = u64;
    type Error = Status;

    fn encode(&mut self, index: u64, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let code = &self.codes[(index % self.codes.len() as u64) as usize];
        dst.put_slice(self.scratch.request(index, code));
        Ok(())
    }
}

/// Buffers reused from row to row.
#[derive(Default)]
struct Scratch {
    text: String,
    entry: Vec<u8>,
    record: Vec<u8>,
    request: Vec<u8>,
}

impl Scratch {
    /// The protobuf encoding of row `index`'s `SubmitRecordsRequest`: fields in number order, the
    /// map's entries in key order, fields at their default left out — as prost writes them.
    fn request(&mut self, index: u64, credit_code: &str) -> &[u8] {
        use xinyong_platform::bus::wire::{element, number, text};
        let spelling = spelling(index);
        let Scratch { text: buffer, entry, record, request } = self;
        record.clear();
        text(1, credit_code, record);
        buffer.clear();
        join_into(buffer, &spelling.source_record_id);
        text(2, buffer, record);
        text(3, "penalty", record);
        buffer.clear();
        join_into(buffer, &spelling.decided_on);
        text(5, buffer, record);
        buffer.clear();
        join_into(buffer, &spelling.document_number);
        text(6, buffer, record);
        buffer.clear();
        join_into(buffer, &spelling.content);
        for (name, value) in [("authority", AUTHORITY), ("content", buffer.as_str()), ("legal_basis", LEGAL_BASIS)] {
            entry.clear();
            text(1, name, entry);
            text(2, value, entry);
            element(7, entry, record);
        }
        number(9, PenaltyKind::Fine as i64, record);

        request.clear();
        number(1, index as i64, request);
        element(2, record, request);
        request
    }
}

/// The baseline's columns of record `index` as COPY text, without the line's end.
fn copy_columns(index: u64, codes: &[String], out: &mut String) {
    use std::fmt::Write;
    let record = record(index, &codes[(index % codes.len() as u64) as usize]);
    let fields = format!(
        "{{\"content\": \"{}\", \"authority\": \"{}\", \"legal_basis\": \"{}\"}}",
        record.fields["content"], record.fields["authority"], record.fields["legal_basis"]
    );
    let _ = write!(
        out,
        "{:032x}\tbench\t{}\t{}\tpenalty\t4\t{}\t{}\t{}",
        u128::from(index),
        record.source_record_id,
        record.credit_code,
        record.decided_on,
        record.document_number,
        fields,
    );
}

fn copy_line(index: u64, codes: &[String], out: &mut String) {
    copy_columns(index, codes, out);
    out.push_str("\t2\n");
}

/// The baseline's columns with every other column of `ingestion.records` too, as the service fills
/// them for these rows (a digest, the disclosure window, the reporting delay, who and when).
fn own_table_line(index: u64, codes: &[String], out: &mut String) {
    use std::fmt::Write;
    copy_columns(index, codes, out);
    // `text` comes before the penalty kind in the records table.
    let _ = writeln!(
        out,
        "\t\t2\t\\\\x{:032x}{:032x}\t1\t1\tf\t2021\tt\t2028-06-30\t2026-06-30\t2025-06-30\t3\t2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00\tsubmitted\tbench\t",
        u128::from(index),
        u128::from(!index)
    );
}

pub async fn run() {
    let count = harness::setting("BENCH_RECORDS", 1_000_000);
    let subjects = harness::setting("BENCH_SUBJECTS", 10_000);
    let database = TestDatabase::new().await;
    let admin = harness::admin_pool(&database).await;
    let codes: Arc<Vec<String>> = Arc::new((0..subjects).map(|index| import::subject(index).credit_code).collect());
    let before_copy = harness::wal_and_checkpoints(&admin).await;
    let cpu_before_copy = harness::CpuUse::now(&admin).await;
    let copy_rate = harness::copy_baseline(
        &admin,
        "CREATE TABLE public.bench_copy (record_id UUID PRIMARY KEY, department_id TEXT, source_record_id TEXT,
         credit_code TEXT, category TEXT, nature SMALLINT, decided_on DATE, document_number TEXT, fields JSONB,
         penalty_kind SMALLINT)",
        "public.bench_copy",
        count,
        |index, out| copy_line(index, &codes, out),
    )
    .await;
    let after_copy = harness::wal_and_checkpoints(&admin).await;
    let cpu_after_copy = harness::CpuUse::now(&admin).await;
    eprintln!("ingest: raw COPY of {count} rows: {copy_rate:.0} rows/s");

    let settings = harness::registry_settings(&database, 2000);
    let registry =
        harness::Running::start(|listener, stop| xinyong_registry::run(settings, listener, None, stop)).await;
    let mut registry_client = RegistryServiceClient::with_interceptor(
        harness::connect(registry.address).await,
        harness::interceptor(&database, "bench"),
    );
    let loaded = import::load(&mut registry_client, subjects).await;
    assert_eq!(loaded, subjects);

    let settings = IngestionSettings {
        platform: database.settings("ingestion", &redis_url()),
        ingestion: IngestionSection {
            registry_url: format!("http://{}", registry.address),
            batch: harness::setting("BENCH_BATCH", IngestionSection::default().batch as u64) as usize,
            ..IngestionSection::default()
        },
    };
    let ingestion =
        harness::Running::start(|listener, stop| xinyong_ingestion::run(settings, listener, None, stop)).await;
    // Serving means migrated: the table below is made like its `records`.
    let mut client = tonic::client::Grpc::new(tonic::service::interceptor::InterceptedService::new(
        xinyong_platform::testing::connect_when_serving(ingestion.address, "xinyong.ingestion.v1.IngestionService")
            .await,
        harness::interceptor(&database, "bench"),
    ));

    // What storing these rows costs before any service work: the same rows, every column filled as
    // the service fills it, `COPY`'d straight into a table made like the service's own (its
    // defaults and its three indexes). The service shares the two cores with this work and adds
    // its own, so the ratio can only go above this one by running on both cores at once.
    let own_table_rate = harness::copy_baseline(
        &admin,
        "CREATE TABLE public.bench_records (LIKE ingestion.records INCLUDING ALL)",
        "public.bench_records",
        count,
        |index, out| own_table_line(index, &codes, out),
    )
    .await;
    eprintln!(
        "ingest: raw COPY of the same rows into a table like ingestion.records: {own_table_rate:.0} rows/s, {:.3} of the baseline",
        own_table_rate / copy_rate
    );

    eprintln!("ingest: streaming {count} generated records over {subjects} subjects through SubmitRecords");
    let before = harness::wal_and_checkpoints(&admin).await;
    let cpu_before = harness::CpuUse::now(&admin).await;
    let started = Instant::now();
    client.ready().await.expect("the ingestion service takes calls");
    let mut answers = client
        .streaming(
            tonic::Request::new(tokio_stream::iter(0..count)),
            PathAndQuery::from_static("/xinyong.ingestion.v1.IngestionService/SubmitRecords"),
            Load { codes: codes.clone() },
        )
        .await
        .expect("submission starts")
        .into_inner();
    let (mut accepted, mut other) = (0u64, 0u64);
    while let Some(answer) = answers.next().await {
        for result in answer.expect("answer").results {
            if result.outcome == SubmitOutcome::Accepted as i32 {
                accepted += 1;
            } else {
                other += 1;
                if other < 5 {
                    eprintln!("ingest: row {} not accepted: {:?}", result.row, result.violations);
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = harness::wal_and_checkpoints(&admin).await;
    let cpu_after = harness::CpuUse::now(&admin).await;
    harness::report_cpu(
        "ingest",
        "SubmitRecords",
        (&cpu_before_copy, &cpu_after_copy),
        (&cpu_before, &cpu_after),
        count,
    );
    eprintln!(
        "ingest: write-ahead log a row: raw COPY {} bytes, SubmitRecords {} bytes; checkpoints requested: {} and {}",
        (after_copy.0 - before_copy.0) / (count * harness::baseline_runs()) as i64,
        (after.0 - before.0) / count as i64,
        after_copy.1 - before_copy.1,
        after.1 - before.1
    );
    assert_eq!(accepted, count, "every generated record is accepted ({other} were not)");
    let rate = count as f64 / seconds;
    let peak = crate::peak_rss_mib();
    eprintln!(
        "ingest: {count} records in {seconds:.1} s = {rate:.0} records/s; peak RSS {peak:.0} MiB (services and client)"
    );
    ingestion.stop().await;
    registry.stop().await;
    admin.close().await;
    println!(
        "ingest: ratio {:.3} (records/s vs COPY rows/s, peak RSS: {rate:.0} vs {copy_rate:.0}; {count} records; {peak:.0} MiB)",
        rate / copy_rate
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator writes what `format!` would: the benchmark's rows did not change with it.
    #[test]
    fn generated_records_are_spelled_as_before() {
        for index in [0u64, 27, 28, 335, 9_999, 999_999_999] {
            let record = record(index, "91110000600037341L");
            let day = 1 + index % 28;
            assert_eq!(record.source_record_id, format!("BENCH-{index:09}"));
            assert_eq!(record.decided_on, format!("2025-{:02}-{day:02}", 1 + (index / 28) % 12));
            assert_eq!(record.document_number, format!("京海市监罚〔2025〕{index}号"));
            assert_eq!(record.fields["content"], format!("罚款{}元", 1000 + index % 9000));
        }
    }

    /// The streaming load sends, byte for byte, what prost encodes for the generated record.
    #[test]
    fn the_load_writes_the_bytes_prost_writes() {
        use prost::Message;
        use xinyong_proto::ingestion::v1::SubmitRecordsRequest;
        let mut scratch = Scratch::default();
        for index in [0u64, 1, 27, 28, 127, 128, 335, 9_999, 16_384, 999_999, 999_999_999] {
            let code = if index % 2 == 0 { "91110000600037341L" } else { "92310115MA1H2K3L4X" };
            let expected = SubmitRecordsRequest { row: index as i64, record: Some(record(index, code)) };
            assert_eq!(scratch.request(index, code), expected.encode_to_vec(), "row {index}");
        }
    }
}
