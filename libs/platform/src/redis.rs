//! Redis with short timeouts. Redis is a cache and the event transport, never the only copy of
//! anything, so a service starts and answers without it: [`Redis::connection`] is `None` until a
//! connection exists, and callers fall back to Postgres.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use tokio::sync::RwLock;

use crate::config::RedisSettings;

/// A shared, self-healing Redis connection.
#[derive(Clone)]
pub struct Redis {
    manager: Arc<RwLock<Option<ConnectionManager>>>,
    prefix: Arc<str>,
    client: redis::Client,
    timeout: Duration,
}

/// Errors building the client (a malformed URL); unreachability is not an error here.
#[derive(Debug, thiserror::Error)]
#[error("Redis URL is invalid: {0}")]
pub struct RedisUrlError(#[from] redis::RedisError);

impl Redis {
    /// Connect in the background: returns at once, retrying until Redis answers.
    pub fn connect(settings: &RedisSettings) -> Result<Redis, RedisUrlError> {
        let client = redis::Client::open(settings.url.expose_secret())?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        Ok(Redis::start(client, Arc::from(settings.key_prefix.as_str()), timeout, timeout))
    }

    /// Another connection to the same Redis, for blocking commands (`XREADGROUP … BLOCK`): on the
    /// shared connection they would hold up every other command behind them. Its responses may
    /// take `response_timeout`.
    pub fn dedicated(&self, response_timeout: Duration) -> Redis {
        Redis::start(self.client.clone(), self.prefix.clone(), self.timeout, response_timeout)
    }

    fn start(client: redis::Client, prefix: Arc<str>, timeout: Duration, response_timeout: Duration) -> Redis {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(response_timeout))
            // Commands wait for a reconnect in progress; a long retry series there would hold
            // every cache read up for seconds while Redis is down. One quick retry, then the
            // command fails and the caller answers from Postgres (the next command tries again).
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2));
        let redis = Redis { manager: Arc::new(RwLock::new(None)), prefix, client: client.clone(), timeout };
        let slot = redis.manager.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        *slot.write().await = Some(manager);
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Redis unreachable; answering from Postgres");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        redis
    }

    /// Connect and wait until connected or `wait` passes (start-up of consumers, tests).
    pub async fn connect_and_wait(settings: &RedisSettings, wait: Duration) -> Result<Redis, RedisUrlError> {
        let redis = Redis::connect(settings)?;
        let deadline = tokio::time::Instant::now() + wait;
        while redis.connection().await.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    /// A key under this platform's prefix: `key("events:registry")` is `xinyong:events:registry`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// The Redis Stream a producer publishes its events to.
    pub fn stream_key(&self, producer: &str) -> String {
        self.key(&format!("events:{producer}"))
    }

    /// The registry's cached summary of a subject (a protobuf `registry.v1.Entity`, masked), which
    /// other services read to learn that a subject exists without a call.
    pub fn registry_entity_key(&self, credit_code: &str) -> String {
        self.key(&format!("registry:entity:{credit_code}"))
    }

    /// A subscription connection of its own (pub/sub takes a connection over), subscribed to
    /// `channel` (a key under the prefix is the caller's choice).
    pub async fn subscribe(&self, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting for a subscription"))
        })??;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    }

    /// Read an entry of a read-through cache, counting the lookup under `cache`
    /// (`xinyong_cache_lookups_total`): `hit`, `miss`, or `error` when Redis cannot answer or
    /// `decode` refuses the value. `None` sends the caller to Postgres.
    pub async fn lookup<T>(
        &self,
        key: &str,
        cache: &str,
        metrics: &crate::metrics::Metrics,
        decode: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let Some(mut connection) = self.connection().await else {
            metrics.cache_lookup(cache, "error");
            return None;
        };
        let result: Result<Option<Vec<u8>>, redis::RedisError> =
            redis::cmd("GET").arg(key).query_async(&mut connection).await;
        match result {
            Ok(Some(bytes)) => {
                let value = decode(&bytes);
                metrics.cache_lookup(cache, if value.is_some() { "hit" } else { "error" });
                value
            }
            Ok(None) => {
                metrics.cache_lookup(cache, "miss");
                None
            }
            Err(error) => {
                tracing::debug!(%error, cache, "cache unavailable");
                metrics.cache_lookup(cache, "error");
                None
            }
        }
    }

    /// Write a cache entry that expires after `ttl`. A failure is only logged: the entry is a
    /// copy, and the TTL bounds how long an older one can outlive it.
    pub async fn store(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let Some(mut connection) = self.connection().await else { return };
        let result: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, key, "cache entry not written");
        }
    }

    /// Drop cache entries after a change. A failure is logged: the entries then live until their
    /// TTL.
    pub async fn forget(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let Some(mut connection) = self.connection().await else { return };
        let count = keys.len();
        let result: Result<(), redis::RedisError> = redis::cmd("UNLINK").arg(keys).query_async(&mut connection).await;
        if let Err(error) = result {
            tracing::warn!(%error, entries = count, "cache entries not dropped; they expire with their TTL");
        }
    }

    /// A connection handle, or `None` while Redis has never been reached. A handle may still fail
    /// per command when Redis goes away later; it reconnects by itself.
    pub async fn connection(&self) -> Option<ConnectionManager> {
        self.manager.read().await.clone()
    }
}
