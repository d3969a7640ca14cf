//! Notices before listing (seed 004 二(二)) and the listings they make effective. A serious-
//! dishonesty list record generates a notice and a task for the reporting department to serve it;
//! `ServeNotice` records the service, and only then is the subject on the list: its list measures
//! apply at `CheckEntity`, their departments are pushed, and `ListingChanged` is announced. The
//! record withdrawn, repaired or given a removal date ends the listing (or cancels the notice).

use chrono::NaiveDate;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;
use xinyong_platform::bus;
use xinyong_proto::events::v1::ListingChanged;

use crate::store::MeasureRow;
use crate::tasks::{self, NewTasks};

/// The joint-sanction list (严重失信主体名单) and the record category that asks for it.
pub const SERIOUS_DISHONESTY_LIST: i16 = 2;
pub const LIST_CATEGORY: &str = "serious_dishonesty_list";

const BASIS: &str = "《国务院办公厅关于进一步完善失信约束制度构建诚信建设长效机制的指导意见》（国办发〔2020〕49号）；认定部门的严重失信主体名单认定决定";
const OBJECTION_RIGHTS: &str = "对认定所依据的信息有异议的，可自收到本告知书之日起向认定部门或本平台提出异议申请，并提交相关证明材料；异议处理期间，相关记录标注为异议中。";
const REPAIR_GUIDANCE: &str = "主动纠正失信行为、消除不良影响并达到最短公示期限后，可通过本平台申请信用修复；修复后相关记录停止公示，联合惩戒措施同步解除。";

/// A stored notice.
#[derive(Debug, Clone, FromRow)]
pub struct NoticeRow {
    pub notice_id: Uuid,
    pub credit_code: String,
    pub list: i16,
    pub record_id: String,
    pub basis: String,
    pub reason: String,
    pub measure_codes: Vec<String>,
    pub objection_rights: String,
    pub repair_guidance: String,
    pub served_on: Option<NaiveDate>,
    pub served_method: String,
    pub cancelled: bool,
}

pub const NOTICE_COLUMNS: &str = "notice_id, credit_code, list, record_id, basis, reason, measure_codes,
    objection_rights, repair_guidance, served_on, served_method, cancelled";

/// A list record came in: write its notice and the task to serve it.
pub async fn list_record(
    connection: &mut PgConnection,
    credit_code: &str,
    record_id: &str,
    department_id: &str,
    decided_on: &str,
    catalogue: &[MeasureRow],
    due_on: NaiveDate,
) -> Result<(), sqlx::Error> {
    let measures: Vec<String> = catalogue
        .iter()
        .filter(|measure| !measure.incentive && measure.lists.contains(&SERIOUS_DISHONESTY_LIST))
        .map(|measure| measure.code.clone())
        .collect();
    let notice_id = Uuid::now_v7();
    let created = sqlx::query(
        "INSERT INTO notices (notice_id, credit_code, list, record_id, basis, reason, measure_codes, objection_rights,
             repair_guidance)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (record_id) DO NOTHING",
    )
    .bind(notice_id)
    .bind(credit_code)
    .bind(SERIOUS_DISHONESTY_LIST)
    .bind(record_id)
    .bind(BASIS)
    .bind(format!("{department_id}于{decided_on}作出严重失信主体名单认定（记录 {record_id}），拟列入严重失信主体名单并实施联合惩戒"))
    .bind(&measures)
    .bind(OBJECTION_RIGHTS)
    .bind(REPAIR_GUIDANCE)
    .execute(&mut *connection)
    .await?
    .rows_affected()
        == 1;
    if created {
        let mut task = NewTasks::default();
        task.push(
            tasks::NOTICE,
            department_id,
            credit_code,
            "",
            "列入严重失信主体名单前书面告知：请送达告知书后调用 ServeNotice".to_owned(),
            due_on,
        );
        task.notice(notice_id);
        task.insert(connection, "ingestion").await?;
    }
    Ok(())
}

/// The record behind a listing was withdrawn, repaired or removed on `on`: cancel its unserved
/// notice, or end its listing and announce it. Returns the subject when a listing ended.
pub async fn end(
    connection: &mut PgConnection,
    record_id: &str,
    on: NaiveDate,
    reason: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("UPDATE notices SET cancelled = true WHERE record_id = $1 AND served_on IS NULL")
        .bind(record_id)
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "UPDATE tasks SET status = 2, feedback = 'record withdrawn or repaired before service', updated_at = now()
         WHERE kind = 5 AND status = 1 AND notice_id = (SELECT notice_id FROM notices WHERE record_id = $1)",
    )
    .bind(record_id)
    .execute(&mut *connection)
    .await?;
    let ended: Option<(String, i16)> = sqlx::query_as(
        "UPDATE listings SET until = $2 WHERE record_id = $1 AND until IS NULL RETURNING credit_code, list",
    )
    .bind(record_id)
    .bind(on)
    .fetch_optional(&mut *connection)
    .await?;
    let Some((credit_code, list)) = ended else { return Ok(None) };
    crate::listings::listing_ended(connection, &credit_code, record_id, reason).await?;
    let event = ListingChanged {
        credit_code: credit_code.clone(),
        list: i32::from(list),
        listed: false,
        effective_on: on.to_string(),
        reason: reason.to_owned(),
        record_id: record_id.to_owned(),
    };
    bus::enqueue(connection, "sanctions", &event).await?;
    Ok(Some(credit_code))
}

/// The lists other authorities keep, and the record categories that put a subject on them. Their
/// listing is decided (and notified) by that authority — the registration authority for abnormal
/// operation, the courts for judgment debtors — so it stands from the decision day, with no notice
/// here; the record withdrawn, repaired or given a removal date ends it.
pub const DIRECT_LISTS: [(&str, i16); 2] = [("abnormal_operation_list", 1), ("dishonest_judgment_debtor", 3)];

/// The list a record of `category` puts its subject on directly, if any.
pub fn direct_list(category: &str) -> Option<i16> {
    DIRECT_LISTS.iter().find(|(of, _)| *of == category).map(|(_, list)| *list)
}

/// A listing takes effect: stored and announced. Called when a notice is served and, for the lists
/// other authorities decide, when their record arrives. `department_id` decided it (the
/// abnormal-operation list's timer tells it). `true` when the listing is new (a repeated event
/// changes nothing).
pub async fn take_effect(
    connection: &mut PgConnection,
    credit_code: &str,
    record_id: &str,
    list: i16,
    since: NaiveDate,
    department_id: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let listed = sqlx::query(
        "INSERT INTO listings (record_id, credit_code, list, since, department_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(record_id)
    .bind(credit_code)
    .bind(list)
    .bind(since)
    .bind(department_id)
    .execute(&mut *connection)
    .await?
    .rows_affected()
        == 1;
    if listed {
        let event = ListingChanged {
            credit_code: credit_code.to_owned(),
            list: i32::from(list),
            listed: true,
            effective_on: since.to_string(),
            reason: reason.to_owned(),
            record_id: record_id.to_owned(),
        };
        bus::enqueue(connection, "sanctions", &event).await?;
    }
    Ok(listed)
}

/// Record a notice as served; the listing takes effect that day. `Ok(None)` when the notice was
/// not open (served before, or cancelled).
pub async fn serve(
    connection: &mut PgConnection,
    notice_id: Uuid,
    served_on: NaiveDate,
    method: &str,
    by: &str,
) -> Result<Option<NoticeRow>, sqlx::Error> {
    let notice: Option<NoticeRow> = sqlx::query_as(&format!(
        "UPDATE notices SET served_on = $2, served_method = $3, served_by = $4
         WHERE notice_id = $1 AND served_on IS NULL AND NOT cancelled RETURNING {NOTICE_COLUMNS}"
    ))
    .bind(notice_id)
    .bind(served_on)
    .bind(method)
    .bind(by)
    .fetch_optional(&mut *connection)
    .await?;
    let Some(notice) = notice else { return Ok(None) };
    take_effect(connection, &notice.credit_code, &notice.record_id, notice.list, served_on, by, &notice.reason).await?;
    sqlx::query("UPDATE tasks SET status = 2, feedback = $2, updated_at = now() WHERE kind = 5 AND status = 1 AND notice_id = $1")
        .bind(notice_id)
        .bind(format!("已送达（{method}，{served_on}）"))
        .execute(&mut *connection)
        .await?;
    Ok(Some(notice))
}

pub async fn get(connection: &mut PgConnection, notice_id: Uuid) -> Result<Option<NoticeRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE notice_id = $1"))
        .bind(notice_id)
        .fetch_optional(connection)
        .await
}
