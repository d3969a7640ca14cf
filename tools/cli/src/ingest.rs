//! `xinyong-cli ingest --file records.csv`: the file channel of seed 000 art. 7 (manual upload).
//!
//! Reads a CSV file (UTF-8, a byte-order mark is allowed) or JSON lines, streams the rows through
//! `SubmitRecords` at the gateway, shows progress, and writes every rejected row with its reasons to
//! a rejects file. The file is read as the server acknowledges, through a bounded channel: a
//! million-row file goes through in constant memory.
//!
//! CSV headers (order free, unknown headers refused): `credit_code`, `source_record_id`, `category`,
//! `decided_on` (required); `nature` (`POSITIVE`, `NEUTRAL`, `MINOR`, `GENERAL_DISHONESTY`,
//! `SERIOUS_DISHONESTY`), `document_number`, `penalty_kind` (`WARNING`, `FINE`, …), `text`; and one
//! `field.<name>` column per category field, e.g. `field.content`, `field.legal_basis`.
//! JSON lines: one object per line with the same names, the fields in an object `fields`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use xinyong_proto::common::v1::Nature;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput, SubmitOutcome, SubmitRecordsRequest};

/// What to ingest and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    /// The gateway, e.g. `http://127.0.0.1:50051`, or `https://…` where it speaks TLS.
    pub gateway: String,
    /// The department's bearer token; `None` when its client certificate (`tls`) stands for it.
    pub token: Option<String>,
    /// For an `https://` gateway.
    pub tls: Tls,
    /// Where rejected rows go; default `<file>.rejects.csv`.
    pub rejects: Option<PathBuf>,
    /// Print progress to stderr every this often; `None` for quiet.
    pub progress_every: Option<Duration>,
}

/// TLS to a gateway that speaks it: the system's trusted CAs, plus `ca_file`; and the department's
/// client certificate, which authenticates it once registered (docs/gateway.md).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// A CA certificate (PEM) to trust besides the system's: a platform's own CA.
    pub ca_file: Option<PathBuf>,
    /// The department's certificate and its key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Sign every record with the identity's key (docs/ingestion.md, "Signed records").
    pub sign: bool,
}

/// Signs records with a department's key: each row's `RecordInput` encoded, then signed, sent as
/// `signed_input` and `signature`.
pub struct RecordSigner {
    signer: Box<dyn rustls::sign::Signer>,
}

impl RecordSigner {
    pub fn load(key: &Path) -> Result<RecordSigner, IngestError> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let unusable = |reason: String| IngestError::Key { path: key.to_owned(), reason };
        let der = PrivateKeyDer::from_pem_file(key).map_err(|error| unusable(error.to_string()))?;
        let key = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|error| unusable(error.to_string()))?;
        // The scheme the key's type allows, as the platform checks them (webpki's algorithms).
        use rustls::SignatureScheme::*;
        let schemes = [ECDSA_NISTP256_SHA256, ECDSA_NISTP384_SHA384, ED25519, RSA_PSS_SHA256, RSA_PKCS1_SHA256];
        let signer = key.choose_scheme(&schemes).ok_or_else(|| unusable("no signature scheme for its type".into()))?;
        Ok(RecordSigner { signer })
    }

    pub fn sign(&self, record: RecordInput) -> Result<RecordInput, String> {
        use prost::Message;
        let signed_input = record.encode_to_vec();
        let signature = self.signer.sign(&signed_input).map_err(|error| format!("cannot be signed: {error}"))?;
        Ok(RecordInput { signed_input, signature, ..RecordInput::default() })
    }
}

impl Tls {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.identity.is_none()
    }

    fn signer(&self) -> Result<Option<RecordSigner>, IngestError> {
        match (&self.identity, self.sign) {
            (_, false) => Ok(None),
            (Some((_, key)), true) => RecordSigner::load(key).map(Some),
            (None, true) => Err(IngestError::NothingToSignWith),
        }
    }

    fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig, IngestError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|source| IngestError::Read { path: path.clone(), source });
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(ca_file) = &self.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca_file)?));
        }
        if let Some((certificate, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(certificate)?, read(key)?));
        }
        Ok(config)
    }
}

/// What happened to the file's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub rejects_file: PathBuf,
}

/// Why an ingest stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the rejects file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the file's header is not usable: {0}")]
    Header(String),
    #[error("cannot reach the gateway {gateway}: {source}")]
    Connect { gateway: String, source: tonic::transport::Error },
    #[error("the token is not a valid header value")]
    Token,
    #[error("a CA file or a client certificate needs an https:// gateway, not {0}")]
    PlainGateway(String),
    #[error("the key {path} cannot sign: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("signing needs the department's --certificate and --key")]
    NothingToSignWith,
    #[error("the platform refused the stream: {0}")]
    Refused(tonic::Status),
}

/// A row as read from the file: the record, or why it could not be read.
type ReadRow = (i64, Result<RecordInput, String>);

#[derive(Debug, Deserialize)]
struct JsonRecord {
    credit_code: String,
    source_record_id: String,
    category: String,
    decided_on: String,
    #[serde(default)]
    nature: String,
    #[serde(default)]
    document_number: String,
    #[serde(default)]
    penalty_kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

fn nature(text: &str) -> Result<i32, String> {
    if text.trim().is_empty() {
        return Ok(0);
    }
    let name = format!("NATURE_{}", text.trim().to_ascii_uppercase());
    Nature::from_str_name(&name).map(|nature| nature as i32).ok_or_else(|| {
        format!("nature `{text}` is not one of POSITIVE, NEUTRAL, MINOR, GENERAL_DISHONESTY, SERIOUS_DISHONESTY")
    })
}

fn penalty_kind(text: &str) -> Result<i32, String> {
    if text.trim().is_empty() {
        return Ok(0);
    }
    let name = format!("PENALTY_KIND_{}", text.trim().to_ascii_uppercase());
    PenaltyKind::from_str_name(&name)
        .map(|kind| kind as i32)
        .ok_or_else(|| format!("penalty_kind `{text}` is not a penalty kind (WARNING, FINE, CONFISCATION, …)"))
}

fn from_json(record: JsonRecord) -> Result<RecordInput, String> {
    Ok(RecordInput {
        nature: nature(&record.nature)?,
        penalty_kind: penalty_kind(&record.penalty_kind)?,
        credit_code: record.credit_code,
        source_record_id: record.source_record_id,
        category: record.category,
        decided_on: record.decided_on,
        document_number: record.document_number,
        fields: record.fields,
        text: record.text,
        ..RecordInput::default()
    })
}

const COLUMNS: &[&str] =
    &["credit_code", "source_record_id", "category", "decided_on", "nature", "document_number", "penalty_kind", "text"];

/// Read the file on a blocking thread, sending rows into `rows` (which blocks when full).
fn read_file(path: &Path, rows: mpsc::Sender<ReadRow>) -> Result<(), IngestError> {
    let read_error = |source| IngestError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::new(file);
    // A UTF-8 byte-order mark (Excel writes one) is not part of the first header.
    if reader.fill_buf().map_err(read_error)?.starts_with(&[0xEF, 0xBB, 0xBF]) {
        reader.consume(3);
    }
    let json_lines = path.extension().is_some_and(|extension| extension == "jsonl" || extension == "ndjson");
    if json_lines {
        for (index, line) in reader.lines().enumerate() {
            let line = line.map_err(read_error)?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str::<JsonRecord>(&line)
                .map_err(|error| format!("not a JSON record: {error}"))
                .and_then(from_json);
            if rows.blocking_send((index as i64 + 1, record)).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut csv = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
    let headers = csv.headers().map_err(|error| IngestError::Header(error.to_string()))?.clone();
    for header in &headers {
        if !COLUMNS.contains(&header) && !header.starts_with("field.") {
            return Err(IngestError::Header(format!(
                "unknown column `{header}`; use {} or field.<name>",
                COLUMNS.join(", ")
            )));
        }
    }
    for required in ["credit_code", "source_record_id", "category", "decided_on"] {
        if !headers.iter().any(|header| header == required) {
            return Err(IngestError::Header(format!("the column `{required}` is required")));
        }
    }
    for (index, record) in csv.records().enumerate() {
        // Line numbers as a spreadsheet shows them: the header is line 1.
        let line = index as i64 + 2;
        let row = match record {
            Ok(record) => {
                let value = |name: &str| {
                    headers
                        .iter()
                        .position(|header| header == name)
                        .and_then(|at| record.get(at))
                        .unwrap_or("")
                        .to_owned()
                };
                let fields: BTreeMap<String, String> = headers
                    .iter()
                    .zip(record.iter())
                    .filter_map(|(header, value)| {
                        header.strip_prefix("field.").map(|name| (name.to_owned(), value.to_owned()))
                    })
                    .filter(|(_, value)| !value.trim().is_empty())
                    .collect();
                from_json(JsonRecord {
                    credit_code: value("credit_code"),
                    source_record_id: value("source_record_id"),
                    category: value("category"),
                    decided_on: value("decided_on"),
                    nature: value("nature"),
                    document_number: value("document_number"),
                    penalty_kind: value("penalty_kind"),
                    text: value("text"),
                    fields,
                })
            }
            Err(error) => Err(format!("unreadable line: {error}")),
        };
        if rows.blocking_send((line, row)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Stream a file through `SubmitRecords` and write the rejects.
pub async fn run(options: Options) -> Result<Summary, IngestError> {
    let rejects_path = options.rejects.clone().unwrap_or_else(|| {
        let mut name = options.file.clone().into_os_string();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let write_error = |source| IngestError::Write { path: rejects_path.clone(), source };
    let mut rejects = csv::Writer::from_writer(std::fs::File::create(&rejects_path).map_err(write_error)?);
    rejects.write_record(["line", "source_record_id", "field", "reason"]).map_err(|error| write_error(error.into()))?;

    let signer = options.tls.signer()?;
    let unreachable = |source| IngestError::Connect { gateway: options.gateway.clone(), source };
    let mut endpoint = Endpoint::from_shared(options.gateway.clone()).map_err(unreachable)?;
    if options.gateway.starts_with("https://") {
        endpoint = endpoint.tls_config(options.tls.client_config()?).map_err(unreachable)?;
    } else if !options.tls.is_empty() {
        return Err(IngestError::PlainGateway(options.gateway.clone()));
    }
    let channel = endpoint.connect().await.map_err(unreachable)?;
    let token: Option<MetadataValue<_>> = match &options.token {
        Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| IngestError::Token)?),
        None => None,
    };
    let mut client = IngestionServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        if let Some(token) = &token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    });

    // File → (bounded) → rows that read well go to the server; rows that did not are rejected here.
    let (read_rows, mut read) = mpsc::channel::<ReadRow>(1024);
    let path = options.file.clone();
    let reader = tokio::task::spawn_blocking(move || read_file(&path, read_rows));
    let (to_server, outbound) = mpsc::channel::<SubmitRecordsRequest>(1024);
    let mut summary = Summary { rejects_file: rejects_path.clone(), ..Summary::default() };
    // Source ids of the rows sent and not yet answered, for the rejects file: bounded by the
    // channels and the server's batches, not by the file.
    let in_flight: std::sync::Arc<std::sync::Mutex<HashMap<i64, String>>> = std::sync::Arc::default();
    let (local_rejects_sender, mut local_rejects) = mpsc::unbounded_channel::<(i64, String)>();
    let sending = in_flight.clone();
    let forward = tokio::spawn(async move {
        while let Some((line, row)) = read.recv().await {
            let row = match &signer {
                Some(signer) => row.and_then(|record| {
                    let source = record.source_record_id.clone();
                    signer.sign(record).map(|signed| (signed, source))
                }),
                None => row.map(|record| {
                    let source = record.source_record_id.clone();
                    (record, source)
                }),
            };
            match row {
                Ok((record, source)) => {
                    sending.lock().expect("in-flight lock").insert(line, source);
                    if to_server.send(SubmitRecordsRequest { row: line, record: Some(record) }).await.is_err() {
                        break;
                    }
                }
                Err(reason) => {
                    let _ = local_rejects_sender.send((line, reason));
                }
            }
        }
    });

    let mut answers = client
        .submit_records(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .map_err(IngestError::Refused)?
        .into_inner();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while let Some(answer) = answers.next().await {
        let answer = answer.map_err(IngestError::Refused)?;
        for result in answer.results {
            summary.rows += 1;
            let source = in_flight.lock().expect("in-flight lock").remove(&result.row).unwrap_or_default();
            match SubmitOutcome::try_from(result.outcome).unwrap_or(SubmitOutcome::Unspecified) {
                SubmitOutcome::Accepted => summary.accepted += 1,
                SubmitOutcome::Duplicate => summary.duplicate += 1,
                _ => {
                    summary.rejected += 1;
                    for violation in &result.violations {
                        rejects
                            .write_record([
                                result.row.to_string().as_str(),
                                source.as_str(),
                                violation.field.as_str(),
                                violation.reason.as_str(),
                            ])
                            .map_err(|error| write_error(error.into()))?;
                    }
                }
            }
        }
        while let Ok((line, reason)) = local_rejects.try_recv() {
            summary.rows += 1;
            summary.rejected += 1;
            rejects
                .write_record([line.to_string().as_str(), "", "line", reason.as_str()])
                .map_err(|error| write_error(error.into()))?;
        }
        if let Some(every) = options.progress_every
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            let rate = summary.rows as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{} rows answered ({} accepted, {} duplicate, {} rejected), {rate:.0} rows/s",
                summary.rows, summary.accepted, summary.duplicate, summary.rejected
            );
        }
    }
    let _ = forward.await;
    while let Ok((line, reason)) = local_rejects.try_recv() {
        summary.rows += 1;
        summary.rejected += 1;
        rejects
            .write_record([line.to_string().as_str(), "", "line", reason.as_str()])
            .map_err(|error| write_error(error.into()))?;
    }
    reader
        .await
        .map_err(|error| IngestError::Read { path: options.file.clone(), source: std::io::Error::other(error) })??;
    rejects.flush().map_err(write_error)?;
    std::io::stderr().flush().ok();
    Ok(summary)
}
