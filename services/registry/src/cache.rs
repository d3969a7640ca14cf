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
        self.redis.lookup(&self.key(credit_code), CACHE, &self.metrics, |bytes| Entity::decode(bytes).ok()).await
    }

    /// Store a masked entity.
    pub async fn put(&self, entity: &Entity) {
        debug_assert!(
            entity
                .legal_representative
                .as_ref()
                .is_none_or(|person| person.id_number_masked || person.id_number.is_empty())
        );
        self.redis.store(&self.key(&entity.credit_code), entity.encode_to_vec(), self.ttl).await;
    }

    /// Forget changed subjects. A failed delete is logged: the entry then lives until its TTL.
    pub async fn invalidate(&self, credit_codes: &[&str]) {
        self.redis.forget(credit_codes.iter().map(|code| self.key(code)).collect()).await;
    }
}
