//! The grade read model in Redis: `<prefix>:grading:grade:<scheme>:<credit code>` holds a protobuf
//! `grading.v1.GradeInfo`, written after every committed change and filled on a miss. A Redis
//! failure is counted (`xinyong_cache_lookups_total{cache="grading_grade"}`) and the answer comes
//! from Postgres. Entries expire after `grading.cache_ttl_seconds`, which bounds how long a value
//! can be stale when a refresh was lost while Redis was unreachable.

use std::time::Duration;

use prost::Message;
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;
use xinyong_proto::grading::v1::GradeInfo;

use crate::grades::{GradeRow, Schemes};

const CACHE: &str = "grading_grade";

#[derive(Clone)]
pub struct GradeCache {
    redis: Redis,
    metrics: Metrics,
    ttl: Duration,
    /// For the texts of the reasons the cached answers carry.
    schemes: Schemes,
}

impl GradeCache {
    pub fn new(redis: Redis, metrics: Metrics, ttl: Duration, schemes: Schemes) -> GradeCache {
        GradeCache { redis, metrics, ttl, schemes }
    }

    pub fn key(&self, scheme: &str, credit_code: &str) -> String {
        self.redis.key(&format!("grading:grade:{scheme}:{credit_code}"))
    }

    pub async fn get(&self, scheme: &str, credit_code: &str) -> Option<GradeInfo> {
        let key = self.key(scheme, credit_code);
        self.redis.lookup(&key, CACHE, &self.metrics, |bytes| GradeInfo::decode(bytes).ok()).await
    }

    /// Write grades as stored, in one round trip.
    pub async fn put_all(&self, rows: &[GradeRow]) {
        if rows.is_empty() {
            return;
        }
        let Some(mut connection) = self.redis.connection().await else { return };
        let mut pipeline = redis::pipe();
        for row in rows {
            pipeline.add_command(self.set(row, false)).ignore();
        }
        let result: Result<(), redis::RedisError> = pipeline.query_async(&mut connection).await;
        if let Err(error) = result {
            tracing::warn!(%error, grades = rows.len(), "grade cache not refreshed; entries expire by TTL");
        }
    }

    /// Fill the read model after a miss, unless an entry appeared meanwhile: the grade was read
    /// from Postgres before this, and a change committed since then has written its own, newer
    /// entry, which an unconditional write would replace with the older grade for a whole TTL.
    pub async fn fill(&self, row: &GradeRow) {
        let Some(mut connection) = self.redis.connection().await else { return };
        let result: Result<(), redis::RedisError> = self.set(row, true).query_async(&mut connection).await;
        if let Err(error) = result {
            tracing::debug!(%error, "grade cache not filled");
        }
    }

    /// `SET` of a grade's entry with the TTL; with `only_if_absent`, `NX`.
    fn set(&self, row: &GradeRow, only_if_absent: bool) -> redis::Cmd {
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(&row.scheme, &row.credit_code))
            .arg(crate::api::grade_info(row, &self.schemes).encode_to_vec());
        if only_if_absent {
            command.arg("NX");
        }
        command.arg("EX").arg(self.ttl.as_secs().max(1));
        command
    }

    /// Drop grades from the read model (bulk work: a recompute changes up to every grade; writing
    /// each back would cost more than the few that are read before the next miss fills them).
    pub async fn forget_all(&self, rows: &[GradeRow]) {
        self.redis.forget(rows.iter().map(|row| self.key(&row.scheme, &row.credit_code)).collect()).await;
    }
}
