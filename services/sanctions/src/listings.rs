//! The abnormal-operation list's timer (DOMAIN.md, "Lists with timers"): a subject still on the
//! list (经营异常名录) three years after it was put there moves to the serious-violation list
//! (严重违法失信名单), and is warned in the last 60 days before. Both are decisions of the
//! registration authority, not of this platform, so the sweep makes tasks, not listings: a warning
//! task for the department that listed the subject, due on the day the three years are up, and
//! on that day a transfer task, due like any pushed work. The department reports its decision as a
//! `serious_dishonesty_list` record, which goes through the notice before listing as any other;
//! that record, or the end of the abnormal-operation listing, closes the open tasks.
//!
//! The sweep is idempotent (each task has a source key per listing record) and catches up after
//! downtime: it asks what is due on the day it runs, not what fell due since it last ran. Every
//! replica may run it.

use chrono::{Days, Months, NaiveDate};
use sqlx::{PgConnection, PgPool};
use xinyong_platform::bus;
use xinyong_proto::events::v1::ListingChanged;

use crate::tasks::{self, NewTasks};

/// The list the timer runs on (common.v1.ListKind `ABNORMAL_OPERATION`).
pub const ABNORMAL_OPERATION: i16 = 1;
/// How long a subject may stand on it before it moves on.
const TRANSFER_AFTER: Months = Months::new(36);
/// How long before that day the subject is warned.
const WARN_DAYS_BEFORE: u64 = 60;
/// Listings read per statement.
const PAGE: i64 = 1000;

/// The day a listing that began on `since` has stood three years (满三年).
pub fn transfer_on(since: NaiveDate) -> NaiveDate {
    since.checked_add_months(TRANSFER_AFTER).unwrap_or(NaiveDate::MAX)
}

/// The first day of the warning period of a listing that began on `since`.
pub fn warn_from(since: NaiveDate) -> NaiveDate {
    transfer_on(since).checked_sub_days(Days::new(WARN_DAYS_BEFORE)).unwrap_or(NaiveDate::MIN)
}

/// Announce every standing listing again, with its record, as `ListingChanged` (listed), in pages
/// of their own transactions, and return how many. Consumers keep listings by record (lottery), so
/// a listing announced again is still one, and one that ended meanwhile stays ended.
pub async fn announce_standing(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let (mut after, mut announced) = (String::new(), 0);
    loop {
        let mut transaction = pool.begin().await?;
        let page: Vec<(String, String, i16, NaiveDate)> = sqlx::query_as(
            "SELECT record_id, credit_code, list, since FROM listings
             WHERE until IS NULL AND record_id > $1 ORDER BY record_id LIMIT $2",
        )
        .bind(&after)
        .bind(PAGE)
        .fetch_all(&mut *transaction)
        .await?;
        let Some(last) = page.last() else { return Ok(announced) };
        after = last.0.clone();
        let events: Vec<ListingChanged> = page
            .iter()
            .map(|(record_id, credit_code, list, since)| ListingChanged {
                credit_code: credit_code.clone(),
                list: i32::from(*list),
                listed: true,
                effective_on: since.to_string(),
                reason: "announced again: the listing stands".to_owned(),
                record_id: record_id.clone(),
            })
            .collect();
        bus::enqueue_batch(&mut transaction, "sanctions", &events).await?;
        transaction.commit().await?;
        announced += page.len() as u64;
    }
}

/// [`announce_standing`], if it was asked for: once after the upgrade that added record ids to
/// `ListingChanged`, and whenever an operator deletes the row of `listings_announced` (a consumer
/// deployed after sanctions' stream dropped its oldest listings; docs/operations.md). One replica at
/// a time; `None` when not asked or another replica is at it.
pub async fn announce_if_asked(pool: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    let mut held = pool.begin().await?;
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('sanctions:announce-listings'))")
        .fetch_one(&mut *held)
        .await?;
    let done: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM listings_announced)").fetch_one(&mut *held).await?;
    if !free || done {
        return Ok(None);
    }
    let announced = announce_standing(pool).await?;
    sqlx::query("INSERT INTO listings_announced (listings) VALUES ($1)")
        .bind(announced as i64)
        .execute(&mut *held)
        .await?;
    held.commit().await?;
    Ok(Some(announced))
}

/// Ask for [`announce_standing`] again and make it now (`xinyong-cli listings-announce`); `None`
/// when another replica is announcing, which then finishes what was asked.
pub async fn announce_again(pool: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    sqlx::query("DELETE FROM listings_announced").execute(pool).await?;
    announce_if_asked(pool).await
}

/// What a sweep made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub warnings: usize,
    pub transfers: usize,
}

/// What a sweep needs besides the day.
pub struct Sweep<'a> {
    pub calendar: &'a xinyong_domain::calendar::Calendar,
    /// Working days a transfer task is given (the service's `execute_within_working_days`).
    pub execute_within_working_days: u32,
    /// Where the tasks of a listing stored without its department go.
    pub registration_authority: &'a str,
}

#[derive(sqlx::FromRow)]
struct Standing {
    record_id: String,
    credit_code: String,
    department_id: String,
    since: NaiveDate,
    warned: bool,
}

impl Sweep<'_> {
    /// Make the warning and transfer tasks due on `today`; those made before are not made again.
    pub async fn run(&self, pool: &PgPool, today: NaiveDate) -> Result<Swept, sqlx::Error> {
        // Month arithmetic does not invert exactly at month ends (2024-02-29 + 36 months is
        // 2027-02-28), so the index bound is a few days generous and each row is checked exactly.
        let bound = today
            .checked_add_days(Days::new(WARN_DAYS_BEFORE + 3))
            .and_then(|day| day.checked_sub_months(TRANSFER_AFTER))
            .unwrap_or(NaiveDate::MIN);
        let mut swept = Swept::default();
        let mut after: Option<(NaiveDate, String)> = None;
        loop {
            let (after_since, after_record) = after.clone().unzip();
            let page: Vec<Standing> = sqlx::query_as(
                "SELECT l.record_id, l.credit_code, l.department_id, l.since,
                     EXISTS (SELECT 1 FROM tasks t WHERE t.source_key = 'listing-warning:' || l.record_id) AS warned
                 FROM listings l
                 WHERE l.until IS NULL AND l.list = $1 AND l.since <= $2
                   AND ($3::date IS NULL OR (l.since, l.record_id) > ($3, $4))
                   AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.source_key = 'listing-transfer:' || l.record_id)
                 ORDER BY l.since, l.record_id LIMIT $5",
            )
            .bind(ABNORMAL_OPERATION)
            .bind(bound)
            .bind(after_since)
            .bind(after_record)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.since, last.record_id.clone()));
            let full = page.len() as i64 == PAGE;
            let mut new = NewTasks::default();
            for listing in &page {
                let department = match listing.department_id.as_str() {
                    "" => self.registration_authority,
                    department => department,
                };
                let transfer_on = transfer_on(listing.since);
                if transfer_on <= today {
                    new.push(
                        tasks::LISTING_TRANSFER,
                        department,
                        &listing.credit_code,
                        "",
                        format!(
                            "列入经营异常名录（{}起，记录 {}）已满三年仍未移出：请依法作出列入严重违法失信名单的决定，并以 serious_dishonesty_list 记录报送（报送后平台发出列入前告知书）",
                            listing.since, listing.record_id
                        ),
                        self.calendar.add_working_days(today, self.execute_within_working_days),
                    );
                    new.about(&listing.record_id, format!("listing-transfer:{}", listing.record_id));
                    swept.transfers += 1;
                } else if warn_from(listing.since) <= today && !listing.warned {
                    new.push(
                        tasks::LISTING_WARNING,
                        department,
                        &listing.credit_code,
                        "",
                        format!(
                            "列入经营异常名录（{}起，记录 {}）将于{transfer_on}届满三年：请提醒市场主体，届满仍未移出的将列入严重违法失信名单",
                            listing.since, listing.record_id
                        ),
                        transfer_on,
                    );
                    new.about(&listing.record_id, format!("listing-warning:{}", listing.record_id));
                    swept.warnings += 1;
                }
            }
            let mut connection = pool.acquire().await?;
            new.insert(&mut connection, "sanctions").await?;
            if !full {
                break;
            }
        }
        Ok(swept)
    }
}

/// The listing of `record_id` ended: its open warning and transfer tasks have nothing left to do.
pub async fn listing_ended(
    connection: &mut PgConnection,
    credit_code: &str,
    record_id: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = $4, feedback = $3, updated_at = now()
         WHERE credit_code = $1 AND record_id = $2 AND status = $5 AND kind IN ($6, $7)",
    )
    .bind(credit_code)
    .bind(record_id)
    .bind(format!("名单已移出：{reason}"))
    .bind(tasks::COMPLETED)
    .bind(tasks::OPEN)
    .bind(tasks::LISTING_WARNING)
    .bind(tasks::LISTING_TRANSFER)
    .execute(connection)
    .await?;
    Ok(())
}

/// A serious-violation listing of `credit_code` was reported (`record_id`): the transfer it was
/// asked to decide is done.
pub async fn transferred(connection: &mut PgConnection, credit_code: &str, record_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tasks SET status = $3, feedback = $2, updated_at = now()
         WHERE credit_code = $1 AND status = $4 AND kind = $5 AND record_id IS NOT NULL",
    )
    .bind(credit_code)
    .bind(format!("已报送严重违法失信名单认定（记录 {record_id}）"))
    .bind(tasks::COMPLETED)
    .bind(tasks::OPEN)
    .bind(tasks::LISTING_TRANSFER)
    .execute(connection)
    .await?;
    Ok(())
}

/// A subject's time on a list, as `GetSubjectSanctions` shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct ListingRow {
    pub list: i16,
    pub record_id: String,
    pub department_id: String,
    pub since: NaiveDate,
    pub until: Option<NaiveDate>,
}

/// The listings of `credit_code`, oldest first; ended ones only if asked.
pub async fn of_subject(pool: &PgPool, credit_code: &str, include_ended: bool) -> Result<Vec<ListingRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT list, record_id, department_id, since, until FROM listings
         WHERE credit_code = $1 AND ($2 OR until IS NULL) ORDER BY since, record_id",
    )
    .bind(credit_code)
    .bind(include_ended)
    .fetch_all(pool)
    .await
}
