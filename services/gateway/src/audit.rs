//! The audit log (ARCHITECTURE.md, "Identity and permissions"): every call through the gateway —
//! which department, which method, when, and how it was answered — appended to the log. Each
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
//! A batch is stored as one row of `audit_segments`, its entries as arrays: a row per entry cost
//! Postgres, on the cores that serve the calls, 4-8% of the gateway's rate. A segment keeps the
//! hash before its first entry and the hash of its last; the hashes between are recomputed when
//! the entries are read.
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
use xinyong_platform::metrics::{Metrics, answered_with};

use crate::auth::Authenticator;

/// Calls queued before the next one waits for room.
const QUEUE: usize = 65_536;
/// Entries written by one batch: one segment.
const BATCH: usize = 4_096;
/// How long after a batch began the next may begin, unless a full batch or shutdown is waiting.
/// Without it the writer woke for every few calls and paid a transaction each (a lock, a read, an
/// insert, a commit's flush): the gateway's CPU a call rose by 4.4 µs in the check benchmark.
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

/// Append `entries` to the chain in one transaction, as one segment.
async fn append(pool: &PgPool, entries: &[Entry]) -> Result<(), sqlx::Error> {
    let (Some(first_at), Some(last_at)) =
        (entries.iter().map(|entry| entry.at).min(), entries.iter().map(|entry| entry.at).max())
    else {
        return Ok(());
    };
    let mut transaction = pool.begin().await?;
    sqlx::query(CHAIN_LOCK).execute(&mut *transaction).await?;
    let (before, previous) = newest(&mut *transaction).await?.unwrap_or((0, GENESIS.to_vec()));
    let mut hash = chain_start(&previous);
    for (index, entry) in entries.iter().enumerate() {
        // Hashing a full batch takes a millisecond or two of the core the calls are served on; in
        // slices, the calls waiting meanwhile are not held up behind all of it.
        if index % 256 == 255 {
            tokio::task::yield_now().await;
        }
        hash = link(&hash, before + 1 + index as i64, entry);
    }
    sqlx::query(
        "INSERT INTO audit_segments (first_seq, last_seq, previous_hash, last_hash, first_at, last_at, at,
                                     department_ids, methods, codes, subjects)
         VALUES ($1, $2, $3, $4, $11, $5, $6, $7, $8, $9, $10)",
    )
    .bind(before + 1)
    .bind(before + entries.len() as i64)
    .bind(&previous)
    .bind(hash.as_slice())
    .bind(last_at)
    .bind(entries.iter().map(|entry| entry.at).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.department_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.method.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.code).collect::<Vec<_>>())
    .bind(entries.iter().map(|entry| entry.subject.as_str()).collect::<Vec<_>>())
    .bind(first_at)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}

/// A stored hash as the chain's starting point; one of another length (only a damaged row has
/// one) starts a chain that cannot match.
fn chain_start(hash: &[u8]) -> [u8; 32] {
    hash.try_into().unwrap_or([0xff; 32])
}

/// One segment of the log as stored: the entries `first_seq..=last_seq` in order.
struct Segment {
    first_seq: i64,
    last_seq: i64,
    previous_hash: Vec<u8>,
    last_hash: Vec<u8>,
    entries: Vec<Entry>,
    /// How many entries each array held: all `last_seq - first_seq + 1` unless the row was
    /// changed by hand.
    lengths: [usize; 5],
}

const SEGMENT_COLUMNS: &str =
    "first_seq, last_seq, previous_hash, last_hash, at, department_ids, methods, codes, subjects";

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Segment {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Segment, sqlx::Error> {
        let at: Vec<DateTime<Utc>> = row.try_get("at")?;
        let departments: Vec<String> = row.try_get("department_ids")?;
        let methods: Vec<String> = row.try_get("methods")?;
        let codes: Vec<i16> = row.try_get("codes")?;
        let subjects: Vec<String> = row.try_get("subjects")?;
        let lengths = [at.len(), departments.len(), methods.len(), codes.len(), subjects.len()];
        let entries = at
            .into_iter()
            .zip(departments)
            .zip(methods)
            .zip(codes)
            .zip(subjects)
            .map(|((((at, department_id), method), code), subject)| Entry { at, department_id, method, code, subject })
            .collect();
        Ok(Segment {
            first_seq: row.try_get("first_seq")?,
            last_seq: row.try_get("last_seq")?,
            previous_hash: row.try_get("previous_hash")?,
            last_hash: row.try_get("last_hash")?,
            entries,
            lengths,
        })
    }
}

impl Segment {
    /// Each entry with its number and hash, chained on from the segment's previous hash.
    fn chained(&self) -> impl Iterator<Item = (i64, &Entry, [u8; 32])> {
        let mut hash = chain_start(&self.previous_hash);
        self.entries.iter().zip(self.first_seq..).map(move |(entry, seq)| {
            hash = link(&hash, seq, entry);
            (seq, entry, hash)
        })
    }

    /// Why the segment's row does not hold what it says, if it does not.
    fn malformed(&self) -> Option<String> {
        let expected = self.last_seq - self.first_seq + 1;
        if expected < 1 {
            return Some(format!("its segment is numbered {} to {}", self.first_seq, self.last_seq));
        }
        let held = self.lengths.iter().copied().min().unwrap_or_default();
        (self.lengths.iter().any(|length| *length as i64 != expected)).then(|| {
            format!(
                "its segment holds {held} entries for the {expected} numbered {} to {}: entries were removed or slipped in",
                self.first_seq, self.last_seq
            )
        })
    }
}

/// An entry as listed: its number, what it records, the hash before it and its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub seq: i64,
    pub entry: Entry,
    pub previous_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Which entries a listing wants; an empty text or no time does not restrict.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    pub department_id: &'a str,
    pub subject: &'a str,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Wanted<'_> {
    fn matches(&self, entry: &Entry) -> bool {
        (self.department_id.is_empty() || entry.department_id == self.department_id)
            && (self.subject.is_empty() || entry.subject == self.subject)
            && self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at < until)
    }
}

/// Entries after `after_seq` that `wanted` matches, in order, at most `limit`: found by walking
/// the segments from the one holding `after_seq + 1`, past those whose times are all outside the
/// period (the segments' time ranges are indexed).
pub async fn entries(
    pool: &PgPool,
    after_seq: i64,
    wanted: Wanted<'_>,
    limit: usize,
) -> Result<Vec<Listed>, sqlx::Error> {
    // Only the conditions asked for, not optional ones: each listing gets the plan that suits it
    // (the key's order alone, or the time index's segments sorted by key). A condition on the key
    // from the start would only cost the time index's plan a scan of the whole key.
    let mut walk = sqlx::QueryBuilder::new(format!("SELECT {SEGMENT_COLUMNS} FROM audit_segments WHERE true"));
    if after_seq > 0 {
        walk.push(" AND first_seq >= COALESCE((SELECT max(first_seq) FROM audit_segments WHERE first_seq <= ")
            .push_bind(after_seq)
            .push(" + 1), 0)");
    }
    if wanted.since.is_some() || wanted.until.is_some() {
        walk.push(" AND tstzrange(first_at, last_at, '[]') && tstzrange(")
            .push_bind(wanted.since)
            .push(", ")
            .push_bind(wanted.until)
            .push(", '[)')");
    }
    walk.push(" ORDER BY first_seq");
    let mut segments = walk.build_query_as::<Segment>().fetch(pool);
    let mut listed = Vec::new();
    while let Some(segment) = segments.try_next().await? {
        let mut previous = chain_start(&segment.previous_hash);
        for (seq, entry, hash) in segment.chained() {
            if seq > after_seq && wanted.matches(entry) {
                listed.push(Listed { seq, entry: entry.clone(), previous_hash: previous, hash });
                if listed.len() == limit {
                    return Ok(listed);
                }
            }
            previous = hash;
        }
    }
    Ok(listed)
}

/// The newest entry's number and hash.
pub async fn newest<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<Option<(i64, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT last_seq, last_hash FROM audit_segments ORDER BY first_seq DESC LIMIT 1")
        .fetch_optional(executor)
        .await
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
        let certificates = crate::auth::certificates_of(request.extensions());
        let answer = self.inner.call(request);
        Box::pin(async move {
            // Before the answer runs (a future does nothing until polled): a caller revoking its
            // own credential is still known.
            let department = auth
                .authenticate(&headers, || crate::auth::Presented::of(certificates))
                .await
                .map(|identity| identity.department_id);
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
    verify_from(pool, None, anchor).await
}

/// [`verify`] from `start` on: an entry whose hash was kept (an earlier walk's last hash, a
/// listing's newest hash), so that a periodic check reads only what was appended since. The walk
/// begins with the segment holding `start` and checks `start`'s hash there, so an entry before
/// it in that segment changed shows too; entries of earlier segments are not read. `entries` counts
/// the entries after `start`.
pub async fn verify_from(
    pool: &PgPool,
    start: Option<&Anchor>,
    anchor: Option<&Anchor>,
) -> Result<Verified, sqlx::Error> {
    // One snapshot for the base and the walk: retention removing entries meanwhile would otherwise
    // move the base past the first segment read, and the walk would report a gap that is not there.
    let mut snapshot = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *snapshot).await?;
    let base: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log_base").fetch_optional(&mut *snapshot).await?;
    let (base_seq, base_hash) = base.unwrap_or((0, GENESIS.to_vec()));
    for kept in [start, anchor].into_iter().flatten() {
        if kept.seq <= base_seq {
            let reason = format!("entries up to {base_seq} were removed by retention; keep a newer hash");
            return Ok(Verified::Broken { seq: kept.seq, reason });
        }
    }
    let after = start.map_or(0, |start| start.seq);
    let walk = format!("SELECT {SEGMENT_COLUMNS} FROM audit_segments WHERE last_seq >= $1 ORDER BY first_seq");
    let mut segments = sqlx::query_as::<_, Segment>(&walk).bind(after).fetch(&mut *snapshot);
    let (mut expected_seq, mut previous) = (base_seq + 1, base_hash);
    let mut entries = 0_u64;
    let mut first = true;
    while let Some(segment) = segments.try_next().await? {
        if std::mem::take(&mut first) && start.is_some() {
            // The walk begins with the segment holding the start, on its own previous hash: the
            // start's hash, checked on the way, is what ties it to what was verified before.
            expected_seq = segment.first_seq;
            previous = segment.previous_hash.clone();
        }
        if segment.first_seq != expected_seq {
            let reason = format!("entry {expected_seq} is missing (the next is {})", segment.first_seq);
            return Ok(Verified::Broken { seq: expected_seq, reason });
        }
        if segment.previous_hash != previous {
            return Ok(Verified::Broken {
                seq: segment.first_seq,
                reason: "its previous hash is not the hash of the entry before".into(),
            });
        }
        if let Some(reason) = segment.malformed() {
            return Ok(Verified::Broken { seq: segment.first_seq, reason });
        }
        let mut differs = None;
        for (seq, _, hash) in segment.chained() {
            for kept in [start, anchor].into_iter().flatten() {
                if kept.seq == seq && kept.hash != hash {
                    differs.get_or_insert(seq);
                }
            }
            if seq > after {
                entries += 1;
            }
            previous = hash.to_vec();
        }
        // Only the segment's last hash is stored: an entry changed without it shows here,
        // somewhere in the segment.
        if previous != segment.last_hash {
            let reason = format!(
                "entries {} to {} do not lead to the hash stored after them: one of them was changed",
                segment.first_seq, segment.last_seq
            );
            return Ok(Verified::Broken { seq: segment.first_seq, reason });
        }
        if let Some(seq) = differs {
            return Ok(Verified::Broken {
                seq,
                reason: "its hash is not the one kept outside the platform: the chain was rewritten up to here".into(),
            });
        }
        expected_seq = segment.last_seq + 1;
    }
    drop(segments);
    if first && start.is_some() {
        expected_seq = newest(&mut *snapshot).await?.map_or(base_seq, |(seq, _)| seq) + 1;
    }
    for kept in [start, anchor].into_iter().flatten() {
        if kept.seq >= expected_seq {
            let reason = format!("the log ends at entry {}, before the entry whose hash was kept", expected_seq - 1);
            return Ok(Verified::Broken { seq: kept.seq, reason });
        }
    }
    Ok(Verified::Intact { entries, last_seq: expected_seq - 1, last_hash: previous })
}

/// Segments removed by one transaction of [`prune`] (up to 4,096 entries each).
const PRUNE_SEGMENTS: i64 = 16;

/// Remove entries recorded before `cutoff` from the start of the chain, remembering the last one
/// removed (its number and hash) so that the walk still verifies what remains. The newest entry is
/// never removed: the next batch continues the chain from it. Returns how many were removed.
///
/// Whole segments go while every entry of theirs is past the cutoff; the first segment with an
/// entry that is not loses the entries before that one, rewritten to start after them.
pub async fn prune(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    loop {
        let mut transaction = pool.begin().await?;
        // Under the writers' lock: the newest entry cannot change while its successor is decided.
        sqlx::query(CHAIN_LOCK).execute(&mut *transaction).await?;
        // First and last number, latest time, last hash, and whether it is the newest segment.
        type Heading = (i64, i64, DateTime<Utc>, Vec<u8>, bool);
        let oldest: Vec<Heading> = sqlx::query_as(
            "SELECT first_seq, last_seq, last_at, last_hash, first_seq = (SELECT max(first_seq) FROM audit_segments)
             FROM audit_segments ORDER BY first_seq LIMIT $1",
        )
        .bind(PRUNE_SEGMENTS)
        .fetch_all(&mut *transaction)
        .await?;
        let whole: Vec<_> =
            oldest.iter().take_while(|(_, _, last_at, _, newest)| *last_at < cutoff && !newest).collect();
        let base = if let Some((first_seq, last_seq, _, last_hash, _)) = whole.last() {
            sqlx::query("DELETE FROM audit_segments WHERE first_seq <= $1")
                .bind(first_seq)
                .execute(&mut *transaction)
                .await?;
            removed += whole.iter().map(|(first, last, ..)| (last - first + 1) as u64).sum::<u64>();
            (*last_seq, last_hash.clone())
        } else if let Some((first_seq, ..)) = oldest.first() {
            // Replicas' batches interleave slightly in time, and the chain must stay whole from its
            // base on: the segment's start up to its first entry at or after the cutoff.
            let Some((gone, base)) = cut_segment(&mut transaction, *first_seq, cutoff).await? else {
                return Ok(removed);
            };
            removed += gone;
            base
        } else {
            return Ok(removed);
        };
        sqlx::query(
            "INSERT INTO audit_log_base (seq, hash) VALUES ($1, $2)
             ON CONFLICT (singleton) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, pruned_at = now()",
        )
        .bind(base.0)
        .bind(&base.1)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        // After whole segments, the next may be partly past the cutoff; a cut segment is the end.
        if whole.is_empty() {
            return Ok(removed);
        }
    }
}

/// Remove from the segment starting at `first_seq` its entries before the first recorded at or
/// after `cutoff` (all but its last, if it is the newest): the segment then starts after them,
/// with the last one's hash as its previous hash. Returns how many went and that entry's number
/// and hash, or `None` when none did.
async fn cut_segment(
    transaction: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    first_seq: i64,
    cutoff: DateTime<Utc>,
) -> Result<Option<(u64, (i64, Vec<u8>))>, sqlx::Error> {
    let segment: Segment =
        sqlx::query_as(&format!("SELECT {SEGMENT_COLUMNS} FROM audit_segments WHERE first_seq = $1"))
            .bind(first_seq)
            .fetch_one(&mut **transaction)
            .await?;
    let past = segment.entries.iter().take_while(|entry| entry.at < cutoff).count();
    let gone = past.min(segment.entries.len().saturating_sub(1));
    if gone == 0 || segment.malformed().is_some() {
        // A segment changed by hand is left for the walk to report.
        return Ok(None);
    }
    let (last_gone, _, hash) = segment.chained().nth(gone - 1).expect("`gone` is within the segment");
    let last_at = segment.entries[gone..].iter().map(|entry| entry.at).max().expect("one entry stays");
    let first_at = segment.entries[gone..].iter().map(|entry| entry.at).min().expect("one entry stays");
    sqlx::query(
        "UPDATE audit_segments SET first_seq = $2, previous_hash = $3, first_at = $6, last_at = $4, at = at[$5:],
             department_ids = department_ids[$5:], methods = methods[$5:], codes = codes[$5:], subjects = subjects[$5:]
         WHERE first_seq = $1",
    )
    .bind(first_seq)
    .bind(last_gone + 1)
    .bind(hash.as_slice())
    .bind(last_at)
    .bind(gone as i32 + 1)
    .bind(first_at)
    .execute(&mut **transaction)
    .await?;
    Ok(Some((gone as u64, (last_gone, hash.to_vec()))))
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

    /// The example docs/gateway.md gives auditors who verify the chain with their own tools; the
    /// hashes were computed apart from this code (Python's hashlib).
    #[test]
    fn the_documented_example_hashes_as_documented() {
        let entry = Entry {
            at: DateTime::from_timestamp_micros(1_795_593_600_123_456).unwrap(),
            department_id: "samr-110108".into(),
            method: "xinyong.registry.v1.RegistryService/GetEntity".into(),
            code: 5,
            subject: "91110000600037341L".into(),
        };
        let hex = |hash: [u8; 32]| hash.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
        assert_eq!(hex(link(&GENESIS, 1, &entry)), "30fe89514ac7135a1d1c1aa179fb9d047f512472abd77684af7c12caafcdd59b");
        let without = Entry { subject: String::new(), ..entry };
        assert_eq!(
            hex(link(&GENESIS, 1, &without)),
            "d9e2a591f842c1525fe3c3404a9dd792e9bace01e23d8bc042f6c625effbd506"
        );
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
