//! Per-department rate limits (ARCHITECTURE.md: the gateway "rate-limits" each caller): a token
//! bucket per department in each replica, so that one department's runaway feed cannot take the
//! platform from the others. A department's own limit (`SetRateLimit`) or the platform's default
//! (`gateway.calls_per_second`); buckets hold `gateway.burst_seconds` of calls.
//!
//! Per replica, not shared: a shared bucket would cost every call a round trip to Redis, and the
//! replicas share the load evenly enough behind a Service that the limit is the replica's times
//! their number (docs/gateway.md says so).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic_types::{ErrorDetails, StatusExt};
use xinyong_platform::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepartmentLabels {
    department: String,
}

struct Bucket {
    /// The limit this bucket was filled for: a changed limit starts a full bucket.
    per_second: u32,
    tokens: f64,
    at: Instant,
}

#[derive(Clone)]
pub struct RateLimits {
    default_per_second: u32,
    burst_seconds: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
    refused: Family<DepartmentLabels, Counter>,
}

impl RateLimits {
    pub fn new(default_per_second: u32, burst_seconds: f64, metrics: &Metrics) -> RateLimits {
        let refused = Family::<DepartmentLabels, Counter>::default();
        metrics.register(
            "gateway_rate_limited",
            "calls refused with RESOURCE_EXHAUSTED because their department was over its rate limit",
            refused.clone(),
        );
        RateLimits { default_per_second, burst_seconds: burst_seconds.max(0.0), buckets: Arc::default(), refused }
    }

    /// Admit one call of `department`, whose own limit is `own` (0: the platform's default).
    pub fn admit(&self, department: &str, own: u32) -> Result<(), tonic::Status> {
        self.admit_at(department, own, Instant::now())
    }

    fn admit_at(&self, department: &str, own: u32, now: Instant) -> Result<(), tonic::Status> {
        let per_second = if own > 0 { own } else { self.default_per_second };
        if per_second == 0 {
            return Ok(());
        }
        let capacity = (f64::from(per_second) * self.burst_seconds).max(1.0);
        let short = {
            let mut buckets = self.buckets.lock().expect("rate limit buckets lock");
            let bucket = match buckets.get_mut(department) {
                Some(bucket) => bucket,
                None => {
                    buckets.entry(department.to_owned()).or_insert(Bucket { per_second, tokens: capacity, at: now })
                }
            };
            if bucket.per_second != per_second {
                *bucket = Bucket { per_second, tokens: capacity, at: now };
            }
            let refilled = now.saturating_duration_since(bucket.at).as_secs_f64() * f64::from(per_second);
            bucket.tokens = (bucket.tokens + refilled).min(capacity);
            bucket.at = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return Ok(());
            }
            1.0 - bucket.tokens
        };
        self.refused.get_or_create(&DepartmentLabels { department: department.to_owned() }).inc();
        let retry_in = Duration::from_secs_f64(short / f64::from(per_second)).max(Duration::from_millis(1));
        Err(tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "department `{department}` is over its limit of {per_second} calls a second; retry in {} ms, or ask \
                 the platform administrator for a higher limit",
                retry_in.as_millis()
            ),
            ErrorDetails::with_retry_info(Some(retry_in)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(default: u32, burst_seconds: f64) -> RateLimits {
        RateLimits::new(default, burst_seconds, &Metrics::new("gateway-test"))
    }

    #[test]
    fn a_burst_is_admitted_then_calls_wait_for_the_bucket_to_refill() {
        let limits = limits(0, 1.0);
        let start = Instant::now();
        let admitted = (0..20).filter(|_| limits.admit_at("samr-110108", 10, start).is_ok()).count();
        assert_eq!(admitted, 10, "a second's worth at once");
        let refused = limits.admit_at("samr-110108", 10, start).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("samr-110108") && refused.message().contains("10 calls a second"));
        let retry = refused.get_error_details().retry_info().and_then(|info| info.retry_delay).unwrap();
        assert_eq!(retry, Duration::from_millis(100), "one call's worth of refill");
        let later = start + Duration::from_millis(250);
        let refilled = (0..20).filter(|_| limits.admit_at("samr-110108", 10, later).is_ok()).count();
        assert_eq!(refilled, 2, "a quarter second's worth, two and a half calls");
    }

    #[test]
    fn departments_have_buckets_of_their_own_and_no_limit_admits_everything() {
        let limits = limits(5, 1.0);
        assert_eq!((0..10).filter(|_| limits.admit("busy", 0).is_ok()).count(), 5, "the default applies");
        assert!(limits.admit("quiet", 0).is_ok(), "another department is not held back");
        let unlimited = super::RateLimits::new(0, 1.0, &Metrics::new("gateway-test"));
        assert!((0..10_000).all(|_| unlimited.admit("busy", 0).is_ok()));
    }

    #[test]
    fn a_changed_limit_applies_at_once() {
        let limits = limits(0, 1.0);
        assert_eq!((0..10).filter(|_| limits.admit("d", 2).is_ok()).count(), 2);
        assert_eq!((0..10).filter(|_| limits.admit("d", 5).is_ok()).count(), 5, "a new limit starts a full bucket");
    }
}
