//! What lottery owes, on the admin port: inspection results past their 20 working days and not
//! published (一公开), and inspector lists not refreshed within 7 working days (DOMAIN.md: lists
//! are refreshed at least that often, so that draws pick from inspectors who are still there).

use std::future::Future;
use std::time::Duration;

use chrono::NaiveDate;
use prometheus_client::metrics::gauge::Gauge;
use xinyong_domain::calendar::{Calendar, day_at, today};
use xinyong_platform::metrics::Metrics;

use crate::store::Store;

/// Working days within which a department refreshes its inspector list.
pub const REFRESH_WITHIN_WORKING_DAYS: i64 = 7;

pub struct Backlog {
    unpublished: Gauge,
    stale_lists: Gauge,
    calendar: Calendar,
}

impl Backlog {
    pub fn register(metrics: &Metrics) -> Backlog {
        let (unpublished, stale_lists) = (Gauge::default(), Gauge::default());
        metrics.register(
            "lottery_results_unpublished_overdue",
            "inspection results past their publication day (20 working days) and not published",
            unpublished.clone(),
        );
        metrics.register(
            "lottery_inspector_lists_stale",
            "departments whose active inspectors were last updated more than 7 working days ago",
            stale_lists.clone(),
        );
        Backlog { unpublished, stale_lists, calendar: Calendar::official() }
    }

    /// Departments whose newest update is more than the allowed working days before `today`.
    pub fn stale(&self, newest: &[(String, NaiveDate)], today: NaiveDate) -> usize {
        newest
            .iter()
            .filter(|(_, updated)| self.calendar.working_days_between(*updated, today) > REFRESH_WITHIN_WORKING_DAYS)
            .count()
    }

    async fn count(&self, store: &Store, today: NaiveDate) -> Result<(), sqlx::Error> {
        self.unpublished.set(store.unpublished_overdue(today).await?);
        let newest: Vec<(String, NaiveDate)> =
            store.inspector_lists().await?.into_iter().map(|(department, at)| (department, day_at(at))).collect();
        self.stale_lists.set(self.stale(&newest, today) as i64);
        Ok(())
    }

    /// Count every `every` until `stop`, the first time at once.
    pub async fn run(self, store: Store, every: Duration, stop: impl Future<Output = ()>) {
        xinyong_platform::service::every(every, stop, || async {
            if let Err(error) = self.count(&store, today()).await {
                tracing::warn!(%error, "lottery backlog not counted for the metrics");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_stale_after_seven_working_days() {
        let backlog = Backlog::register(&Metrics::new("lottery"));
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        // 2026-11-13 (Friday) + 7 working days = 2026-11-24 (Tuesday).
        let lists = [("samr".to_owned(), day("2026-11-13")), ("env".to_owned(), day("2026-11-20"))];
        assert_eq!(backlog.stale(&lists, day("2026-11-24")), 0);
        assert_eq!(backlog.stale(&lists, day("2026-11-25")), 1);
    }
}
