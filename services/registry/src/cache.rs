//! Read-through cache of entity summaries in Redis, for the registry's own reads and for the
//! other services. Only the masked form is cached: no clear ID number ever reaches Redis.
//! Every Redis failure falls back to Postgres and is counted (`xinyong_cache_lookups_total{outcome="error"}`).

use std::time::Duration;

use prost::Message;
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;
use xinyong_proto::registry::v1::Entity;

const CACHE: &str = "registry_entity";

#[derive(Clone)]
pub struct EntityCache {
    redis: Redis,
    metrics: Metrics,
    ttl: Duration,
}

impl EntityCache {
    pub fn new(redis: Redis, metrics: Metrics, ttl: Duration) -> EntityCache {
        EntityCache { redis, metrics, ttl }
    }

    /// The key other services read: `<prefix>:registry:entity:<credit code>`, a protobuf `registry.v1.Entity`.
    pub fn key(&self, credit_code: &str) -> String {
        self.redis.registry_entity_key(credit_code)
    }

    pub async fn get(&self, credit_code: &str) -> Option<Entity> {
        let Some(mut connection) = self.redis.connection().await else {
            self.metrics.cache_lookup(CACHE, "error");
            return None;
        };
        let result: Result<Option<Vec<u8>>, redis::RedisError> =
            redis::cmd("GET").arg(self.key(credit_code)).query_async(&mut connection).await;
        match result {
            Ok(Some(bytes)) => match Entity::decode(bytes.as_slice()) {
                Ok(entity) => {
                    self.metrics.cache_lookup(CACHE, "hit");
                    Some(entity)
                }
                Err(_) => {
                    self.metrics.cache_lookup(CACHE, "error");
                    None
                }
            },
            Ok(None) => {
                self.metrics.cache_lookup(CACHE, "miss");
                None
            }
            Err(error) => {
                tracing::debug!(%error, "entity cache unavailable");
                self.metrics.cache_lookup(CACHE, "error");
                None
            }
        }
    }

    /// Store a masked entity.
    pub async fn put(&self, entity: &Entity) {
        debug_assert!(
            entity
                .legal_representative
                .as_ref()
                .is_none_or(|person| person.id_number_masked || person.id_number.is_empty())
        );
        let Some(mut connection) = self.redis.connection().await else { return };
        let result: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(self.key(&entity.credit_code))
            .arg(entity.encode_to_vec())
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "entity cache not updated");
        }
    }

    /// Forget changed subjects. A failed delete is logged: the entry then lives until its TTL.
    pub async fn invalidate(&self, credit_codes: &[&str]) {
        if credit_codes.is_empty() {
            return;
        }
        let Some(mut connection) = self.redis.connection().await else { return };
        let keys: Vec<String> = credit_codes.iter().map(|code| self.key(code)).collect();
        let result: Result<(), redis::RedisError> = redis::cmd("DEL").arg(keys).query_async(&mut connection).await;
        if let Err(error) = result {
            tracing::warn!(%error, "entity cache invalidation failed; entries expire with their TTL");
        }
    }
}
