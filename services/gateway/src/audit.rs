//! The audit log (ARCHITECTURE.md, "Identity and permissions"): every call through the gateway —
//! which department, which method, when, and how it was answered — appended to `audit_log`. Each
//! entry carries the hash of the one before it and its own hash over both, so an entry changed,
//! removed or slipped in afterwards breaks the chain from that place on; [`verify`] (the command
//! `xinyong-cli audit-verify`) walks it.
//!
//! Entries are queued as calls are answered and written by one task per replica in batches, so a
//! call does not wait for Postgres; when the queue is full, calls wait for room rather than go
//! unrecorded. A batch that cannot be written is kept and tried again. Every replica appends to
//! the one chain: a batch takes a transaction-level advisory lock, reads the last entry and goes
//! on from it. Shutdown writes out the queue after the server has drained.
//!
//! With `gateway.audit_retention_days` set, [`prune`] removes the oldest entries once a day and
//! keeps the last one removed as the chain's base (`audit_log_base`).
//!
//! Of a request's content only its subject is recorded, for the methods that name one subject
//! (`subject`): the credit code, read from the request's first frame as it passes, never an ID
//! number. Nothing else is decoded.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use tonic::server::NamedService;
use xinyong_platform::batches::Gathered;
use xinyong_platform::copy::{self, BinaryCopy};
use xinyong_platform::metrics::{Metrics, answered_with};

use crate::auth::Authenticator;

/// Calls queued before the next one waits for room.
const QUEUE: usize = 65_536;
/// Entries written by one `COPY`.
const BATCH: usize = 4_096;
/// How long after a batch began the next may begin, unless a full batch or shutdown is waiting.
/// Without it the writer woke for every few calls and paid a transaction each (a lock, a read, a
/// `COPY`, a commit's flush): the gateway's CPU a call rose by 4.4 µs in the check benchmark.
const GATHER: Duration = Duration::from_millis(50);
/// Taken by the transaction that appends a batch: one replica appends at a time.
const CHAIN_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('gateway:audit'))";
/// What the first entry's `previous_hash` is.
const GENESIS: [u8; 32] = [0; 32];

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// Empty when the caller could not be authenticated.
    pub department_id: String,
    /// `package.Service/Method`.
    pub method: String,
    /// The gRPC status code the call was answered with.
    pub code: i16,
    /// The credit code of the subject the call was about, for the methods that name one
    /// (`subject::field_path`); empty otherwise, and for calls refused before forwarding.
    pub subject: String,
}

impl Entry {
    /// An entry of a call answered now. Takes its texts whole: on the forwarding path they are
    /// made once per call and moved here.
    pub fn now(department_id: String, method: String, code: tonic::Code) -> Entry {
        Entry { at: Utc::now(), department_id, method, code: code as i16, subject: String::new() }
    }

    /// The same entry, about `subject`.
    pub fn about(mut self, subject: String) -> Entry {
        self.subject = subject;
        self
    }
}

/// A call's method as the log records it: its gRPC path without the leading `/`.
pub fn method(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// The hash of entry `seq` following `previous`: SHA-256 over the previous hash, the sequence
/// number, the time in microseconds, the department and the method (each with its length, so no
/// two entries encode alike), the code and, when there is one, the subject (with its length).
/// Entries without a subject, all those written before it was recorded among them, hash as they
/// always did.
pub fn link(previous: &[u8], seq: i64, entry: &Entry) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(seq.to_be_bytes());
    hasher.update(entry.at.timestamp_micros().to_be_bytes());
    for text in [&entry.department_id, &entry.method] {
        hasher.update((text.len() as u32).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.update(entry.code.to_be_bytes());
    if !entry.subject.is_empty() {
        hasher.update((entry.subject.len() as u32).to_be_bytes());
        hasher.update(entry.subject.as_bytes());
    }
    hasher.finalize().into()
}

/// Queues entries for the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<Entry>,
    queued: Gauge,
}

/// The writer task, stopped by [`AuditTask::finish`].
pub struct AuditTask {
    task: tokio::task::JoinHandle<()>,
    stop: oneshot::Sender<()>,
    queued: Gauge,
}

impl AuditLog {
    pub fn start(pool: PgPool, metrics: &Metrics) -> (AuditLog, AuditTask) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let queued = Gauge::default();
        metrics.register("gateway_audit_queued", "calls answered and not yet in the audit log", queued.clone());
        let task = tokio::spawn(write(pool, receiver, stopped, queued.clone()));
        (AuditLog { sender, queued: queued.clone() }, AuditTask { task, stop, queued })
    }

    /// Queue an entry; waits only when the queue is full.
    pub async fn record(&self, entry: Entry) {
        self.queued.inc();
        if self.sender.send(entry).await.is_err() {
            self.queued.dec();
            tracing::error!("a call answered after the audit log stopped is not recorded");
        }
    }
}

impl AuditTask {
    /// Close the queue and wait, at most `within`, for the writer to store what is in it.
    pub async fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::error!(entries = self.queued.get(), "audit entries not stored before shutdown");
        }
    }
}

async fn write(pool: PgPool, receiver: mpsc::Receiver<Entry>, stop: oneshot::Receiver<()>, queued: Gauge) {
    let mut batches = Gathered::new(receiver, stop, BATCH, GATHER);
    let mut entries = Vec::with_capacity(BATCH);
    while batches.next(&mut entries, |_| false).await {
        let mut backoff = Duration::from_millis(100);
        while let Err(error) = append(&pool, &entries).await {
            tracing::warn!(%error, entries = entries.len(), "audit entries not stored yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        queued.dec_by(entries.len() as i64);
        entries.clear();
    }
}

/// Append `entries` to the chain in one transaction.
async fn append(pool: &PgPool, entries: &[Entry]) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(CHAIN_LOCK).execute(&mut *transaction).await?;
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *transaction)
        .await?;
    let (mut seq, mut previous) = last.map_or((0, GENESIS.to_vec()), |(seq, hash)| (seq, hash));
    let mut data = BinaryCopy::new(entries.len() * 160);
    for (index, entry) in entries.iter().enumerate() {
        // Hashing and encoding a full batch takes a millisecond or two of the core the calls are
        // served on; in slices, the calls waiting meanwhile are not held up behind all of it.
        if index % 256 == 255 {
            tokio::task::yield_now().await;
        }
        seq += 1;
        let hash = link(&previous, seq, entry);
        data.row(8)
            .int8(seq)
            .timestamptz(entry.at)
            .text(&entry.department_id)
            .text(&entry.method)
            .int2(entry.code)
            .text(&entry.subject)
            .bytes(&previous)
            .bytes(&hash);
        previous = hash.to_vec();
    }
    copy::copy_in_binary(
        &mut transaction,
        "COPY audit_log (seq, at, department_id, method, code, subject, previous_hash, hash) FROM STDIN WITH (FORMAT binary)",
        data.finish(),
    )
    .await?;
    transaction.commit().await
}

/// Records every call of a service the gateway serves itself (administration): the caller is
/// authenticated again for the record (these calls are rare; a refused one is recorded as the
/// department presented, or unknown), the answer read from its headers.
#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    auth: Authenticator,
    audit: AuditLog,
}

impl<S> Audited<S> {
    pub fn new(inner: S, auth: Authenticator, audit: AuditLog) -> Audited<S> {
        Audited { inner, auth, audit }
    }
}

impl<S: NamedService> NamedService for Audited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Audited<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (auth, audit) = (self.auth.clone(), self.audit.clone());
        let method = method(request.uri().path());
        let headers = request.headers().clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            // Before the answer runs (a future does nothing until polled): a caller revoking its
            // own credential is still known.
            let department = auth.authenticate(&headers).await.map(|identity| identity.department_id);
            let response = answer.await?;
            let code = answered_with(response.headers());
            audit.record(Entry::now(department.unwrap_or_default(), method, code)).await;
            Ok(response)
        })
    }
}

/// What [`verify`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// Every entry follows the one before it; this many, the last numbered and hashed so.
    Intact { entries: u64, last_seq: i64, last_hash: Vec<u8> },
    /// The chain breaks at entry `seq`, for `reason`.
    Broken { seq: i64, reason: String },
}

/// An entry's hash kept outside the platform (`ListAuditEntries` hands out the newest). The chain
/// alone cannot show a rewrite by someone who recomputed every hash after the entry they changed;
/// the hash kept elsewhere can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// Walk the whole chain in order, recomputing every hash, and check it against `anchor` if given.
/// The walk starts after the last entry retention removed, if any.
pub async fn verify(pool: &PgPool, anchor: Option<&Anchor>) -> Result<Verified, sqlx::Error> {
    let base: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log_base").fetch_optional(pool).await?;
    let (base_seq, base_hash) = base.unwrap_or((0, GENESIS.to_vec()));
    if let Some(anchor) = anchor
        && anchor.seq <= base_seq
    {
        let reason = format!("entries up to {base_seq} were removed by retention; keep a newer hash");
        return Ok(Verified::Broken { seq: anchor.seq, reason });
    }
    let mut rows = sqlx::query(
        "SELECT seq, at, department_id, method, code, subject, previous_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch(pool);
    let (mut expected_seq, mut previous) = (base_seq + 1, base_hash);
    let mut entries = 0_u64;
    while let Some(row) = rows.try_next().await? {
        let seq: i64 = row.try_get("seq")?;
        if seq != expected_seq {
            let reason = format!("entry {expected_seq} is missing (the next is {seq})");
            return Ok(Verified::Broken { seq: expected_seq, reason });
        }
        let previous_hash: Vec<u8> = row.try_get("previous_hash")?;
        if previous_hash != previous {
            return Ok(Verified::Broken {
                seq,
                reason: "its previous hash is not the hash of the entry before".into(),
            });
        }
        let entry = Entry {
            at: row.try_get("at")?,
            department_id: row.try_get("department_id")?,
            method: row.try_get("method")?,
            code: row.try_get("code")?,
            subject: row.try_get("subject")?,
        };
        let hash: Vec<u8> = row.try_get("hash")?;
        if hash != link(&previous, seq, &entry) {
            return Ok(Verified::Broken { seq, reason: "its hash does not match what it records".into() });
        }
        if let Some(anchor) = anchor
            && anchor.seq == seq
            && anchor.hash != hash
        {
            return Ok(Verified::Broken {
                seq,
                reason: "its hash is not the one kept outside the platform: the chain was rewritten up to here".into(),
            });
        }
        previous = hash;
        expected_seq += 1;
        entries += 1;
    }
    if let Some(anchor) = anchor
        && anchor.seq >= expected_seq
    {
        let reason = format!("the log ends at entry {}, before the entry whose hash was kept", expected_seq - 1);
        return Ok(Verified::Broken { seq: anchor.seq, reason });
    }
    Ok(Verified::Intact { entries, last_seq: expected_seq - 1, last_hash: previous })
}

/// Entries removed by one transaction of [`prune`].
const PRUNE_BATCH: i64 = 10_000;

/// Remove entries recorded before `cutoff` from the start of the chain, remembering the last one
/// removed (its number and hash) so that the walk still verifies what remains. The newest entry is
/// never removed: the next batch continues the chain from it. Returns how many were removed.
pub async fn prune(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    loop {
        let mut transaction = pool.begin().await?;
        // Under the writers' lock: the newest entry cannot change while its successor is decided.
        sqlx::query(CHAIN_LOCK).execute(&mut *transaction).await?;
        let oldest: Vec<(i64, DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, at, hash FROM audit_log
             WHERE seq < (SELECT max(seq) FROM audit_log) ORDER BY seq LIMIT $1",
        )
        .bind(PRUNE_BATCH)
        .fetch_all(&mut *transaction)
        .await?;
        // The chain's start up to the first entry recorded at or after the cutoff: replicas' batches
        // interleave slightly in time, and the chain must stay whole from its base on.
        let Some(last) = oldest.iter().take_while(|(_, at, _)| *at < cutoff).last() else {
            return Ok(removed);
        };
        let deleted =
            sqlx::query("DELETE FROM audit_log WHERE seq <= $1").bind(last.0).execute(&mut *transaction).await?;
        sqlx::query(
            "INSERT INTO audit_log_base (seq, hash) VALUES ($1, $2)
             ON CONFLICT (singleton) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, pruned_at = now()",
        )
        .bind(last.0)
        .bind(&last.2)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        removed += deleted.rows_affected();
        let whole_batch = oldest.len() as i64 == PRUNE_BATCH && oldest.iter().all(|(_, at, _)| *at < cutoff);
        if !whole_batch {
            return Ok(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(department: &str, method: &str) -> Entry {
        Entry {
            at: DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            department_id: department.into(),
            method: method.into(),
            code: 0,
            subject: String::new(),
        }
    }

    #[test]
    fn every_part_of_an_entry_and_its_place_change_its_hash() {
        let base = link(&GENESIS, 1, &entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity"));
        assert_ne!(base, link(&GENESIS, 2, &entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity")));
        assert_ne!(base, link(&[1; 32], 1, &entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity")));
        assert_ne!(base, link(&GENESIS, 1, &entry("samr-110107", "xinyong.registry.v1.RegistryService/GetEntity")));
        let mut answered = entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity");
        answered.code = 5;
        assert_ne!(base, link(&GENESIS, 1, &answered));
        // The lengths keep a department's end from passing for the method's start.
        assert_ne!(link(&GENESIS, 1, &entry("ab", "c")), link(&GENESIS, 1, &entry("a", "bc")));
        let about =
            entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity").about("91110000600037341L".into());
        assert_ne!(base, link(&GENESIS, 1, &about), "the subject counts");
        let other =
            entry("samr-110108", "xinyong.registry.v1.RegistryService/GetEntity").about("9144030071526726XG".into());
        assert_ne!(link(&GENESIS, 1, &about), link(&GENESIS, 1, &other));
    }
}
