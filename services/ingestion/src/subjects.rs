//! Does a subject exist? Asked for every submitted record, so answered cheaply: codes seen recently
//! are remembered in the process; the others are looked up in one `MGET` of the registry's cache
//! in Redis; what is still unknown is asked of the registry (`GetEntity`), a few at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::RwLock;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xinyong_platform::identity::InternalInterceptor;
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{GetEntityRequest, get_entity_request};

pub type RegistryClient = RegistryServiceClient<InterceptedService<Channel, InternalInterceptor>>;

/// How many codes are remembered before the oldest are forgotten.
const REMEMBERED: usize = 200_000;

#[derive(Clone)]
pub struct Subjects {
    known: Arc<RwLock<HashMap<String, Instant>>>,
    remember_for: Duration,
    redis: Redis,
    registry: RegistryClient,
    metrics: Metrics,
}

/// The registry could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the registry cannot confirm subjects right now: {0}")]
pub struct Unavailable(pub tonic::Status);

impl Subjects {
    pub fn new(redis: Redis, registry: RegistryClient, remember_for: Duration, metrics: Metrics) -> Subjects {
        Subjects { known: Arc::default(), remember_for, redis, registry, metrics }
    }

    /// The codes among `codes` that no subject has.
    pub async fn unknown(&self, codes: &[&str]) -> Result<HashSet<String>, Unavailable> {
        let mut pending: Vec<&str> = {
            let known = self.known.read().await;
            let mut unique = HashSet::new();
            codes
                .iter()
                .copied()
                .filter(|code| unique.insert(*code))
                .filter(|code| known.get(*code).is_none_or(|at| at.elapsed() > self.remember_for))
                .collect()
        };
        if pending.is_empty() {
            return Ok(HashSet::new());
        }
        let mut confirmed = Vec::new();
        if let Some(mut connection) = self.redis.connection().await {
            let keys: Vec<String> = pending.iter().map(|code| self.redis.registry_entity_key(code)).collect();
            let cached: Result<Vec<Option<Vec<u8>>>, redis::RedisError> =
                redis::cmd("MGET").arg(&keys).query_async(&mut connection).await;
            match cached {
                Ok(values) => {
                    let mut still = Vec::new();
                    for (code, value) in pending.iter().zip(values) {
                        if value.is_some() {
                            confirmed.push(code.to_string());
                        } else {
                            still.push(*code);
                        }
                    }
                    self.metrics.cache.get_or_create(&lookup("hit")).inc_by(confirmed.len() as u64);
                    self.metrics.cache.get_or_create(&lookup("miss")).inc_by(still.len() as u64);
                    pending = still;
                }
                Err(error) => {
                    tracing::debug!(%error, "registry cache unavailable; asking the registry");
                    self.metrics.cache.get_or_create(&lookup("error")).inc();
                }
            }
        }
        let mut unknown = HashSet::new();
        let owned: Vec<String> = pending.into_iter().map(str::to_owned).collect();
        let lookups = owned.into_iter().map(|code: String| {
            let mut registry = self.registry.clone();
            async move {
                let request = GetEntityRequest {
                    key: Some(get_entity_request::Key::CreditCode(code.clone())),
                    include_history: false,
                };
                let answer = match registry.get_entity(request).await {
                    Ok(_) => Ok(true),
                    Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
                    Err(status) => Err(status),
                };
                (code, answer)
            }
        });
        let answers: Vec<(String, Result<bool, tonic::Status>)> =
            futures::stream::iter(lookups).buffer_unordered(8).collect().await;
        for (code, answer) in answers {
            match answer {
                Ok(true) => confirmed.push(code),
                Ok(false) => {
                    unknown.insert(code);
                }
                Err(status) => return Err(Unavailable(status)),
            }
        }
        let mut known = self.known.write().await;
        if known.len() + confirmed.len() > REMEMBERED {
            known.clear();
        }
        let now = Instant::now();
        for code in confirmed {
            known.insert(code, now);
        }
        Ok(unknown)
    }
}

fn lookup(outcome: &str) -> xinyong_platform::metrics::CacheLabels {
    xinyong_platform::metrics::CacheLabels { cache: "registry_subjects".to_owned(), outcome: outcome.to_owned() }
}
