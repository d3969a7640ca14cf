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
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_max_delay(Duration::from_secs(2));
        let redis = Redis { manager: Arc::new(RwLock::new(None)), prefix: Arc::from(settings.key_prefix.as_str()) };
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
        Ok(redis)
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

    /// A connection handle, or `None` while Redis has never been reached. A handle may still fail
    /// per command when Redis goes away later; it reconnects by itself.
    pub async fn connection(&self) -> Option<ConnectionManager> {
        self.manager.read().await.clone()
    }
}
