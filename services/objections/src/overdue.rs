//! The backlog on the admin port: objections past their 3 working days are what the performance
//! review weighs; applications awaiting a decision show whether repair keeps up.

use std::future::Future;
use std::time::Duration;

use chrono::NaiveDate;
use prometheus_client::metrics::gauge::Gauge;
use xinyong_platform::metrics::Metrics;

use crate::store::Store;

#[derive(Clone)]
pub struct OverdueMetrics {
    objections: Gauge,
    repairs: Gauge,
}

impl OverdueMetrics {
    pub fn register(metrics: &Metrics) -> OverdueMetrics {
        let (objections, repairs) = (Gauge::default(), Gauge::default());
        metrics.register("objections_overdue", "open objections past their answer day", objections.clone());
        metrics.register("objections_repairs_pending", "repair applications awaiting a decision", repairs.clone());
        OverdueMetrics { objections, repairs }
    }

    pub async fn count(&self, store: &Store, today: NaiveDate) -> Result<(), sqlx::Error> {
        let (overdue, pending) = store.backlog(today).await?;
        self.objections.set(overdue);
        self.repairs.set(pending);
        Ok(())
    }

    /// Count every `every` until `stop`, the first time at once.
    pub async fn run(self, store: Store, every: Duration, today: fn() -> NaiveDate, stop: impl Future<Output = ()>) {
        xinyong_platform::service::every(every, stop, || async {
            if let Err(error) = self.count(&store, today()).await {
                tracing::warn!(%error, "objections backlog not counted for the metrics");
            }
        })
        .await;
    }
}
