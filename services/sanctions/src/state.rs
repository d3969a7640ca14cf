//! What `CheckEntity` needs about a subject — its grades under every scheme, the records under
//! dispute and the lists it stands on — read from an in-process cache, then Redis
//! (`<prefix>:sanctions:subject:<code>`, JSON), then Postgres. The replica that handles a change
//! refreshes its copy and Redis after the commit and publishes the subject on
//! `<prefix>:sanctions:changed`; every replica drops its copy when it hears that. A copy is trusted
//! only while this replica is subscribed (and at most `sanctions.local_cache_ms`): without the
//! subscription every check reads Redis or Postgres, so no replica answers from a stale copy.
//! With Redis down, answers come from Postgres.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;

use crate::answers::PreparedAnswers;
use crate::store::{Store, Subject};

const CACHE: &str = "sanctions_subject";

/// Entries the in-process cache holds before it starts over: about 300 bytes each, and about a
/// kilobyte more for each answer prepared from one (most are asked by one department about one
/// matter), so 150 MiB at most in the usual case.
const LOCAL_CAPACITY: usize = 100_000;

/// A subject as this replica knows it, with the answers prepared from it (see `answers`): they
/// are dropped with the copy, and a changed subject is a new copy that starts with none.
#[derive(Debug, Default)]
pub struct KnownSubject {
    pub subject: Subject,
    pub answers: PreparedAnswers,
}

pub type Known = Arc<KnownSubject>;

fn known(subject: Subject) -> Known {
    Arc::new(KnownSubject { subject, answers: PreparedAnswers::default() })
}

#[derive(Clone)]
pub struct SubjectState {
    store: Store,
    redis: Redis,
    metrics: Metrics,
    /// `xinyong_cache_lookups_total{cache="sanctions_local",outcome="hit"}`: counted on most checks.
    local_hits: Counter,
    /// Each copy with the moment it stops being trusted.
    local: Arc<Mutex<HashMap<String, (Instant, Known)>>>,
    local_ttl: Duration,
    /// Whether invalidations are being received (the copies may be trusted).
    listening: Arc<AtomicBool>,
    /// Counts invalidations: a copy read before one arrived is not kept.
    epoch: Arc<AtomicU64>,
    redis_ttl: Duration,
}

impl SubjectState {
    pub fn new(store: Store, redis: Redis, metrics: Metrics, local_ttl: Duration, redis_ttl: Duration) -> SubjectState {
        SubjectState {
            store,
            redis,
            local_hits: metrics.cache_counter("sanctions_local", "hit"),
            metrics,
            local: Arc::default(),
            local_ttl,
            redis_ttl,
            listening: Arc::default(),
            epoch: Arc::default(),
        }
    }

    fn channel(&self) -> String {
        self.redis.key("sanctions:changed")
    }

    /// Receive other replicas' changes until `stop`; reconnects by itself.
    pub async fn listen(self, stop: impl std::future::Future<Output = ()>) {
        use futures::StreamExt;
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(100);
        let channel = self.channel();
        loop {
            let subscribed = tokio::select! {
                () = &mut stop => return,
                subscribed = self.redis.subscribe(&channel) => subscribed,
            };
            match subscribed {
                Ok(mut pubsub) => {
                    backoff = Duration::from_millis(100);
                    // Whatever changed while unsubscribed is unknown: start from nothing.
                    self.drop_local(None);
                    self.listening.store(true, Ordering::SeqCst);
                    let mut messages = pubsub.on_message();
                    loop {
                        let message = tokio::select! {
                            () = &mut stop => {
                                self.listening.store(false, Ordering::SeqCst);
                                return;
                            }
                            message = messages.next() => message,
                        };
                        let Some(message) = message else { break };
                        let payload: String = message.get_payload().unwrap_or_default();
                        if payload == "*" {
                            self.drop_local(None);
                        } else {
                            self.drop_local(Some(payload.split(',').collect()));
                        }
                    }
                    self.listening.store(false, Ordering::SeqCst);
                    self.drop_local(None);
                    tracing::warn!("subject invalidations lost; checks read Redis or Postgres until resubscribed");
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot subscribe to subject invalidations yet");
                }
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn drop_local(&self, codes: Option<Vec<&str>>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match codes {
            None => local.clear(),
            Some(codes) => {
                for code in codes {
                    local.remove(code);
                }
            }
        }
    }

    async fn announce(&self, payload: String) {
        let Some(mut connection) = self.redis.connection().await else { return };
        let result: Result<i64, redis::RedisError> =
            redis::cmd("PUBLISH").arg(self.channel()).arg(payload).query_async(&mut connection).await;
        if let Err(error) = result {
            tracing::warn!(%error, "subject change not announced to the other replicas");
        }
    }

    fn key(&self, credit_code: &str) -> String {
        self.redis.key(&format!("sanctions:subject:{credit_code}"))
    }

    /// A subject's grades (none when grading has not graded it) and standing lists.
    pub async fn subject(&self, credit_code: &str) -> Result<Known, sqlx::Error> {
        let trusted = self.listening.load(Ordering::SeqCst);
        if trusted
            && let Some((until, subject)) =
                self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(credit_code)
            && Instant::now() < *until
        {
            self.local_hits.inc();
            return Ok(subject.clone());
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let subject = match self.cached(credit_code).await {
            Some(subject) => known(subject),
            None => {
                let subject = known(self.store.subject(credit_code).await?);
                self.cache(credit_code, &subject.subject).await;
                subject
            }
        };
        if trusted && self.epoch.load(Ordering::SeqCst) == epoch {
            self.remember(credit_code, subject.clone());
        }
        Ok(subject)
    }

    /// After a committed change: the subject as it is now, everywhere.
    pub async fn refresh(&self, credit_code: &str) -> Result<(), sqlx::Error> {
        let subject = known(self.store.subject(credit_code).await?);
        self.cache(credit_code, &subject.subject).await;
        self.announce(credit_code.to_owned()).await;
        self.remember(credit_code, subject);
        Ok(())
    }

    /// After a committed bulk change: forget the subjects here and in Redis; the next check reads
    /// Postgres (cheaper than refreshing thousands of entries that may never be asked for).
    pub async fn forget(&self, credit_codes: &[String]) {
        {
            let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for code in credit_codes {
                local.remove(code);
            }
        }
        if credit_codes.is_empty() {
            return;
        }
        self.announce(credit_codes.join(",")).await;
        self.redis.forget(credit_codes.iter().map(|code| self.key(code)).collect()).await;
    }

    fn remember(&self, credit_code: &str, subject: Known) {
        let mut local = self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if local.len() >= LOCAL_CAPACITY {
            local.clear();
        }
        // Each copy lives between three quarters of the TTL and all of it: copies made together
        // (a warm-up, a busy minute) would otherwise all expire in the same second and send every
        // check of that second to Redis at once, which showed as the tail of the latency.
        let lifetime = self.local_ttl.mul_f64(rand::random_range(0.75..=1.0));
        local.insert(credit_code.to_owned(), (Instant::now() + lifetime, subject));
    }

    async fn cached(&self, credit_code: &str) -> Option<Subject> {
        let key = self.key(credit_code);
        self.redis.lookup(&key, CACHE, &self.metrics, |bytes| serde_json::from_slice(bytes).ok()).await
    }

    async fn cache(&self, credit_code: &str, subject: &Subject) {
        if let Ok(bytes) = serde_json::to_vec(subject) {
            self.redis.store(&self.key(credit_code), bytes, self.redis_ttl).await;
        }
    }
}
