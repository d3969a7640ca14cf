//! Overdue work on the admin port: pushed sanctions, lifts, registrations, leads or notices past
//! their day, and reports owed after checks, are what the performance review weighs (seed 002
//! art. 17). A dashboard shows the totals; `GetOverdue` names the departments.

use std::future::Future;
use std::time::Duration;

use chrono::NaiveDate;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use xinyong_platform::metrics::Metrics;

use crate::tasks;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Every kind of task, as the gauge labels it.
const KINDS: [(i16, &str); 7] = [
    (tasks::SANCTION, "sanction"),
    (tasks::LIFT, "lift"),
    (tasks::REGISTRATION, "registration"),
    (tasks::LEAD, "lead"),
    (tasks::NOTICE, "notice"),
    (tasks::LISTING_WARNING, "listing_warning"),
    (tasks::LISTING_TRANSFER, "listing_transfer"),
];

#[derive(Clone)]
pub struct OverdueMetrics {
    tasks: Family<KindLabels, Gauge>,
    reports: Gauge,
}

impl OverdueMetrics {
    pub fn register(metrics: &Metrics) -> OverdueMetrics {
        let (tasks, reports) = (Family::<KindLabels, Gauge>::default(), Gauge::default());
        metrics.register("sanctions_tasks_overdue", "open tasks past their due day, by kind", tasks.clone());
        metrics.register(
            "sanctions_check_reports_overdue",
            "checks with measures whose handling report is past its due day",
            reports.clone(),
        );
        OverdueMetrics { tasks, reports }
    }

    /// Count what is overdue on `today`; a kind with nothing overdue shows 0.
    pub async fn count(&self, pool: &PgPool, today: NaiveDate) -> Result<(), sqlx::Error> {
        let (late, reports) = tasks::overdue_totals(pool, today).await?;
        for (kind, name) in KINDS {
            let count = late.iter().find(|(late_kind, _)| *late_kind == kind).map_or(0, |(_, count)| *count);
            self.tasks.get_or_create(&KindLabels { kind: name.to_owned() }).set(count);
        }
        self.reports.set(reports);
        Ok(())
    }

    /// Count every `every` until `stop`, the first time at once.
    pub async fn run(self, pool: PgPool, every: Duration, today: fn() -> NaiveDate, stop: impl Future<Output = ()>) {
        xinyong_platform::service::every(every, stop, || async {
            if let Err(error) = self.count(&pool, today()).await {
                tracing::warn!(%error, "overdue work not counted for the metrics");
            }
        })
        .await;
    }
}
