//! Does a subject exist? Asked for every submitted record, so answered cheaply: codes confirmed
//! recently are remembered in the process, and the rest of a batch is asked of the registry in one
//! `CheckSubjects` call (an indexed lookup there), not one call per code.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use tonic::service::interceptor::InterceptedService;
use xinyong_platform::identity::InternalInterceptor;
use xinyong_platform::metrics::{CacheLabels, Metrics};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::registry::v1::CheckSubjectsRequest;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

pub type RegistryClient = RegistryServiceClient<InterceptedService<UpstreamConnection, InternalInterceptor>>;

/// How many codes are remembered before they are all forgotten at once (cheaper than an LRU, and
/// forgetting only costs one more registry call per batch).
const REMEMBERED: usize = 500_000;
/// Codes per `CheckSubjects` call (the registry's limit).
const PER_CALL: usize = 5000;

#[derive(Clone)]
pub struct Subjects {
    known: Arc<RwLock<HashMap<String, Instant>>>,
    remember_for: Duration,
    registry: RegistryClient,
    metrics: Metrics,
}

/// The registry could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the registry cannot confirm subjects right now: {0}")]
pub struct Unavailable(pub tonic::Status);

impl Subjects {
    pub fn new(registry: RegistryClient, remember_for: Duration, metrics: Metrics) -> Subjects {
        Subjects { known: Arc::default(), remember_for, registry, metrics }
    }

    fn count(&self, outcome: &str, by: usize) {
        let labels = CacheLabels { cache: "known_subjects".to_owned(), outcome: outcome.to_owned() };
        self.metrics.cache.get_or_create(&labels).inc_by(by as u64);
    }

    /// The codes among `codes` that no subject has.
    pub async fn unknown(&self, codes: &[&str]) -> Result<HashSet<String>, Unavailable> {
        // Most codes of a bulk submission are known: one lookup each against one clock reading;
        // only the rest are de-duplicated.
        let pending: Vec<String> = {
            let known = self.known.read().await;
            let now = Instant::now();
            let mut unique = HashSet::new();
            codes
                .iter()
                .copied()
                .filter(|code| known.get(*code).is_none_or(|at| now.saturating_duration_since(*at) > self.remember_for))
                .filter(|code| unique.insert(*code))
                .map(str::to_owned)
                .collect()
        };
        self.count("hit", codes.len() - pending.len());
        self.count("miss", pending.len());
        if pending.is_empty() {
            return Ok(HashSet::new());
        }
        let mut registered = HashSet::new();
        for chunk in pending.chunks(PER_CALL) {
            let mut registry = self.registry.clone();
            let answer = registry
                .check_subjects(CheckSubjectsRequest { credit_codes: chunk.to_vec() })
                .await
                .map_err(Unavailable)?;
            registered.extend(answer.into_inner().registered);
        }
        let unknown: HashSet<String> = pending.iter().filter(|code| !registered.contains(*code)).cloned().collect();
        let mut known = self.known.write().await;
        if known.len() + registered.len() > REMEMBERED {
            known.clear();
        }
        let now = Instant::now();
        for code in registered {
            known.insert(code, now);
        }
        Ok(unknown)
    }
}
