//! Departments' inboxes. Sanction pushes and lifts follow the grades (seed 002 art. 9, 000 art.
//! 18): after every grade event the standing sanctions of its subjects are reconciled with what
//! the catalogue asks for now — missing ones pushed, ones that no longer apply lifted — so a
//! repeated or reordered event never pushes twice. Leads come from departments.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::store::MeasureRow;

pub const SANCTION: i16 = 1;
pub const LIFT: i16 = 2;
pub const REGISTRATION: i16 = 3;
pub const LEAD: i16 = 4;
pub const NOTICE: i16 = 5;
/// The abnormal-operation list's timer (`listings`): warn the subject, then decide the transfer.
pub const LISTING_WARNING: i16 = 6;
pub const LISTING_TRANSFER: i16 = 7;
pub const OPEN: i16 = 1;
pub const COMPLETED: i16 = 2;
pub const RETURNED: i16 = 3;
pub const POOLED: i16 = 4;

/// A stored task.
#[derive(Debug, Clone, FromRow)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub kind: i16,
    pub status: i16,
    pub department_id: String,
    pub credit_code: String,
    pub measure_code: String,
    pub summary: String,
    pub due_on: Option<NaiveDate>,
    pub feedback: String,
    pub risk_level: i16,
    pub urgency: i16,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub notice_id: Option<Uuid>,
    pub record_id: Option<String>,
}

pub const TASK_COLUMNS: &str = "task_id, kind, status, department_id, credit_code, measure_code, summary, due_on,
    feedback, risk_level, urgency, created_at, updated_at, notice_id, record_id";

/// Grades C and D (common.v1.Grade 3 and 4): the grades whose measures are pushed (002 art. 9).
fn pushes(grade: i16) -> bool {
    grade == 3 || grade == 4
}

/// Whether a measure is pushed to its departments: a restriction for grade C or D that names
/// who executes it (a measure for "every department" is applied at `CheckEntity` only).
fn pushed(measure: &MeasureRow) -> bool {
    !measure.incentive
        && !measure.executing_departments.is_empty()
        && (measure.grades.iter().any(|grade| pushes(*grade)) || !measure.lists.is_empty())
}

/// Reconcile the standing sanctions of `codes` with their grades and listings now, in the caller's
/// transaction.
pub async fn reconcile(
    connection: &mut PgConnection,
    codes: &[String],
    catalogue: &[MeasureRow],
    due_on: NaiveDate,
) -> Result<(), sqlx::Error> {
    let measures: Vec<&MeasureRow> = catalogue.iter().filter(|measure| pushed(measure)).collect();
    let grades: Vec<(String, String, i16)> =
        sqlx::query_as("SELECT credit_code, scheme, grade FROM subject_grades WHERE credit_code = ANY($1)")
            .bind(codes)
            .fetch_all(&mut *connection)
            .await?;
    let listed: Vec<(String, i16)> =
        sqlx::query_as("SELECT DISTINCT credit_code, list FROM listings WHERE credit_code = ANY($1) AND until IS NULL")
            .bind(codes)
            .fetch_all(&mut *connection)
            .await?;
    let listed: BTreeSet<(&str, i16)> = listed.iter().map(|(code, list)| (code.as_str(), *list)).collect();
    let mut grade_of: HashMap<(&str, &str), i16> = HashMap::new();
    for (code, scheme, grade) in &grades {
        grade_of.insert((code.as_str(), scheme.as_str()), *grade);
    }
    let mut wanted: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for code in codes {
        for measure in &measures {
            let by_grade = grade_of
                .get(&(code.as_str(), measure.scheme.as_str()))
                .is_some_and(|grade| measure.grades.contains(grade) && pushes(*grade));
            let by_list = measure.lists.iter().any(|list| listed.contains(&(code.as_str(), *list)));
            let applies = by_grade || by_list;
            if applies {
                for department in &measure.executing_departments {
                    wanted.insert((code.as_str(), measure.code.as_str(), department.as_str()));
                }
            }
        }
    }
    let standing: Vec<(Uuid, String, String, String)> = sqlx::query_as(
        "SELECT task_id, credit_code, measure_code, department_id FROM tasks
         WHERE kind = 1 AND lifted_at IS NULL AND credit_code = ANY($1)",
    )
    .bind(codes)
    .fetch_all(&mut *connection)
    .await?;
    let standing_keys: BTreeSet<(&str, &str, &str)> = standing
        .iter()
        .map(|(_, code, measure, department)| (code.as_str(), measure.as_str(), department.as_str()))
        .collect();
    // From the whole catalogue: a lifted measure may no longer be one that is pushed.
    let title = |code: &str| {
        catalogue.iter().find(|measure| measure.code == code).map(|measure| measure.title.as_str()).unwrap_or_default()
    };

    let mut new_tasks = NewTasks::default();
    for (code, measure, department) in wanted.difference(&standing_keys) {
        let title = title(measure);
        new_tasks.push(SANCTION, department, code, measure, format!("实施联合惩戒措施：{title}"), due_on);
    }
    let mut lifted = Vec::new();
    for (task_id, code, measure, department) in &standing {
        if !wanted.contains(&(code.as_str(), measure.as_str(), department.as_str())) {
            lifted.push(*task_id);
            let title = title(measure);
            new_tasks.push(LIFT, department, code, measure, format!("解除联合惩戒措施：{title}"), due_on);
        }
    }
    if !lifted.is_empty() {
        sqlx::query("UPDATE tasks SET lifted_at = now(), updated_at = now() WHERE task_id = ANY($1)")
            .bind(&lifted)
            .execute(&mut *connection)
            .await?;
    }
    new_tasks.insert(connection, "grading").await
}

/// Subjects reconciled per transaction when a measure changes.
const RECONCILE_CHUNK: usize = 500;

/// After `measure` was saved: reconcile every subject it may concern — those its grades or lists
/// now match, and those its earlier version was pushed for — in chunks, each its own transaction.
/// Returns how many subjects were reconciled.
pub async fn reconcile_measure(
    pool: &PgPool,
    measure: &MeasureRow,
    catalogue: &[MeasureRow],
    due_on: NaiveDate,
) -> Result<usize, sqlx::Error> {
    let sanction_grades: Vec<i16> = measure.grades.iter().copied().filter(|grade| pushes(*grade)).collect();
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT credit_code FROM subject_grades WHERE scheme = $1 AND grade = ANY($2)
         UNION SELECT credit_code FROM listings WHERE until IS NULL AND list = ANY($3)
         UNION SELECT credit_code FROM tasks WHERE kind = 1 AND lifted_at IS NULL AND measure_code = $4
         ORDER BY 1",
    )
    .bind(&measure.scheme)
    .bind(&sanction_grades)
    .bind(&measure.lists)
    .bind(&measure.code)
    .fetch_all(pool)
    .await?;
    for chunk in codes.chunks(RECONCILE_CHUNK) {
        let mut transaction = pool.begin().await?;
        reconcile(&mut transaction, chunk, catalogue, due_on).await?;
        transaction.commit().await?;
    }
    Ok(codes.len())
}

/// What a registration's business scope is pushed as: a new subject, or a change of its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    New,
    ScopeChanged,
}

/// Push registrations to the departments whose approval items their business scope names
/// (双告知). A new registration that names none goes to the pool departments claim from; a change
/// of scope (变更登记) reaches only the departments it names. Keyed by subject and department, so
/// a repeated event pushes nothing new, and a changed scope reaches only the departments the
/// subject was not pushed to before.
pub async fn push_registrations(
    connection: &mut PgConnection,
    registrations: &[(String, String)],
    how: Registration,
    due_on: NaiveDate,
) -> Result<(), sqlx::Error> {
    let items: Vec<(String, String, String)> =
        sqlx::query_as("SELECT keyword, item, department_id FROM approval_items ORDER BY keyword")
            .fetch_all(&mut *connection)
            .await?;
    let mut new = NewTasks::default();
    for (code, scope) in registrations {
        // Department → the items of the scope it approves.
        let mut matched: std::collections::BTreeMap<&str, BTreeSet<&str>> = std::collections::BTreeMap::new();
        for (keyword, item, department) in &items {
            if scope.contains(keyword.as_str()) {
                matched.entry(department.as_str()).or_default().insert(item.as_str());
            }
        }
        if matched.is_empty() && how == Registration::New {
            new.push(REGISTRATION, "", code, "", "新设立市场主体，经营范围未匹配审批事项，请认领".to_owned(), due_on);
            new.mark(POOLED, 0, 0, format!("registration:{code}:pool"));
        }
        let what = match how {
            Registration::New => "新设立市场主体涉及审批事项",
            Registration::ScopeChanged => "市场主体变更经营范围，涉及审批事项",
        };
        for (department, items) in matched {
            let items: Vec<&str> = items.into_iter().collect();
            new.push(REGISTRATION, department, code, "", format!("{what}：{}", items.join("、")), due_on);
            new.mark(OPEN, 0, 0, format!("registration:{code}:{department}"));
        }
    }
    new.insert(connection, "registry").await
}

/// Tasks to insert in one statement.
#[derive(Default)]
pub struct NewTasks {
    ids: Vec<Uuid>,
    kinds: Vec<i16>,
    departments: Vec<String>,
    codes: Vec<String>,
    measures: Vec<String>,
    summaries: Vec<String>,
    due: Vec<NaiveDate>,
    statuses: Vec<i16>,
    notices: Vec<Option<Uuid>>,
    records: Vec<Option<String>>,
    risk: Vec<i16>,
    urgency: Vec<i16>,
    source_keys: Vec<Option<String>>,
}

impl NewTasks {
    pub fn push(&mut self, kind: i16, department: &str, code: &str, measure: &str, summary: String, due_on: NaiveDate) {
        self.ids.push(Uuid::now_v7());
        self.kinds.push(kind);
        self.departments.push(department.to_owned());
        self.codes.push(code.to_owned());
        self.measures.push(measure.to_owned());
        self.summaries.push(summary);
        self.due.push(due_on);
        self.statuses.push(OPEN);
        self.notices.push(None);
        self.records.push(None);
        self.risk.push(0);
        self.urgency.push(0);
        self.source_keys.push(None);
    }

    /// Set the status, risk, urgency and source key of the task just pushed (a pooled
    /// registration, a lead deduplicated by its source).
    pub fn mark(&mut self, status: i16, risk: i16, urgency: i16, source_key: String) {
        if let (Some(last_status), Some(last_risk), Some(last_urgency), Some(last_key)) =
            (self.statuses.last_mut(), self.risk.last_mut(), self.urgency.last_mut(), self.source_keys.last_mut())
        {
            *last_status = status;
            *last_risk = risk;
            *last_urgency = urgency;
            *last_key = Some(source_key);
        }
    }

    /// The task just pushed asks to serve this notice.
    pub fn notice(&mut self, notice_id: Uuid) {
        if let Some(last) = self.notices.last_mut() {
            *last = Some(notice_id);
        }
    }

    /// The task just pushed is about the listing of `record_id`, made once per `source_key`.
    pub fn about(&mut self, record_id: &str, source_key: String) {
        if let (Some(last_record), Some(last_key)) = (self.records.last_mut(), self.source_keys.last_mut()) {
            *last_record = Some(record_id.to_owned());
            *last_key = Some(source_key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Insert; a standing sanction or a lead already pushed is skipped.
    pub async fn insert(self, connection: &mut PgConnection, by: &str) -> Result<(), sqlx::Error> {
        if self.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO tasks (task_id, kind, status, department_id, credit_code, measure_code, summary, due_on,
                 risk_level, urgency, source_key, created_by, notice_id, record_id)
             SELECT u.id, u.kind, u.status, u.department, u.code, u.measure, u.summary, u.due, u.risk, u.urgency,
                 u.source, $11, u.notice, u.record
             FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::text[], $5::text[], $6::text[], $7::date[],
                 $8::int2[], $9::int2[], $10::text[], $12::int2[], $13::uuid[], $14::text[])
                 AS u (id, kind, department, code, measure, summary, due, risk, urgency, source, status, notice, record)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.ids)
        .bind(self.kinds)
        .bind(self.departments)
        .bind(self.codes)
        .bind(self.measures)
        .bind(self.summaries)
        .bind(self.due)
        .bind(self.risk)
        .bind(self.urgency)
        .bind(self.source_keys)
        .bind(by)
        .bind(self.statuses)
        .bind(self.notices)
        .bind(self.records)
        .execute(connection)
        .await?;
        Ok(())
    }
}

/// A sanction pushed against a subject, as `GetSubjectSanctions` shows it.
#[derive(Debug, FromRow)]
pub struct PushRow {
    pub measure_code: String,
    pub department_id: String,
    pub created_at: DateTime<Utc>,
    pub status: i16,
    pub lifted_at: Option<DateTime<Utc>>,
}

/// The sanctions pushed against `credit_code`, by measure and department; lifted ones only if asked.
pub async fn pushes_of(pool: &PgPool, credit_code: &str, include_lifted: bool) -> Result<Vec<PushRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT measure_code, department_id, created_at, status, lifted_at FROM tasks
         WHERE kind = 1 AND credit_code = $1 AND ($2 OR lifted_at IS NULL) ORDER BY measure_code, department_id, task_id",
    )
    .bind(credit_code)
    .bind(include_lifted)
    .fetch_all(pool)
    .await
}

/// What became of the tasks of one kind made for one department in a period.
#[derive(Debug, Clone, Default, FromRow)]
pub struct TaskCountRow {
    pub department_id: String,
    pub kind: i16,
    pub made: i64,
    pub completed_on_time: i64,
    pub completed_late: i64,
    pub returned: i64,
    pub pooled: i64,
    pub open: i64,
    pub open_overdue: i64,
}

/// Midnight of `day` in China Standard Time, the zone deadlines are counted in.
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).map_or(DateTime::<Utc>::MIN_UTC, |midnight| midnight.and_utc())
        - chrono::Duration::hours(8)
}

/// What became of the tasks made from `from` to `to` (days, inclusive), per department and kind.
/// A task counts as completed on time when it was closed on or before its due day (in China
/// Standard Time); open ones past their day count as overdue against `today`.
pub async fn statistics(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    department_id: Option<&str>,
    today: NaiveDate,
) -> Result<Vec<TaskCountRow>, sqlx::Error> {
    let end = to.succ_opt().map_or(DateTime::<Utc>::MAX_UTC, start_of);
    sqlx::query_as(
        "SELECT department_id, kind, count(*) AS made,
             count(*) FILTER (WHERE status = 2 AND NOT late) AS completed_on_time,
             count(*) FILTER (WHERE status = 2 AND late) AS completed_late,
             count(*) FILTER (WHERE status = 3) AS returned,
             count(*) FILTER (WHERE status = 4) AS pooled,
             count(*) FILTER (WHERE status = 1) AS open,
             count(*) FILTER (WHERE status = 1 AND due_on < $4) AS open_overdue
         FROM (
             SELECT department_id, kind, status, due_on,
                 coalesce(((updated_at AT TIME ZONE 'UTC') + interval '8 hours')::date > due_on, false) AS late
             FROM tasks WHERE task_id >= $1 AND task_id < $2 AND ($3::text IS NULL OR department_id = $3)
         ) made
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    // Task ids are UUID v7: a period of making is a range of the primary key.
    .bind(xinyong_platform::first_v7_at(start_of(from)))
    .bind(xinyong_platform::first_v7_at(end))
    .bind(department_id)
    .bind(today)
    .fetch_all(pool)
    .await
}

/// Filters of an inbox.
#[derive(Debug, Default)]
pub struct Inbox {
    pub department_id: String,
    pub kinds: Vec<i16>,
    pub statuses: Vec<i16>,
    pub overdue_on: Option<NaiveDate>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// The caller's inbox, or the claim pool (`department_id` empty: pooled tasks).
pub async fn list(pool: &PgPool, inbox: &Inbox) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE department_id = $1 AND ($1 <> '' OR status = 4)
           AND (cardinality($2::int2[]) = 0 OR kind = ANY($2))
           AND (cardinality($3::int2[]) = 0 OR status = ANY($3))
           AND ($4::date IS NULL OR (status = 1 AND due_on < $4))
           AND ($5::uuid IS NULL OR task_id > $5)
         ORDER BY task_id LIMIT $6"
    ))
    .bind(&inbox.department_id)
    .bind(&inbox.kinds)
    .bind(&inbox.statuses)
    .bind(inbox.overdue_on)
    .bind(inbox.after)
    .bind(inbox.limit)
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, task_id: Uuid) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = $1"))
        .bind(task_id)
        .fetch_optional(pool)
        .await
}

/// Move an open task to `status` with `feedback`; `None` when it was not open any more.
pub async fn close(pool: &PgPool, task_id: Uuid, status: i16, feedback: &str) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE tasks SET status = $2, feedback = $3, updated_at = now() WHERE task_id = $1 AND status = 1
         RETURNING {TASK_COLUMNS}"
    ))
    .bind(task_id)
    .bind(status)
    .bind(feedback)
    .fetch_optional(pool)
    .await
}

/// Leads of one push (by their source keys), as stored.
pub async fn by_source_keys(pool: &PgPool, keys: &[String]) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE source_key = ANY($1) ORDER BY task_id"))
        .bind(keys)
        .fetch_all(pool)
        .await
}

/// Overdue work per department: open tasks past their day, checks without a report past theirs.
pub async fn overdue(
    pool: &PgPool,
    department_id: Option<&str>,
    today: NaiveDate,
) -> Result<(Vec<(String, i64, i64)>, Vec<TaskRow>), sqlx::Error> {
    let counts = sqlx::query_as(
        "SELECT department_id, sum(tasks)::bigint, sum(checks)::bigint FROM (
             SELECT department_id, count(*) AS tasks, 0 AS checks FROM tasks
             WHERE status = 1 AND due_on < $1 AND ($2::text IS NULL OR department_id = $2) GROUP BY 1
             UNION ALL
             SELECT department_id, 0, sum(owed - reported) FROM reports_owed
             WHERE due_on < $1 AND owed > reported AND ($2::text IS NULL OR department_id = $2) GROUP BY 1
         ) o GROUP BY 1 ORDER BY 1",
    )
    .bind(today)
    .bind(department_id)
    .fetch_all(pool)
    .await?;
    let tasks = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 1 AND due_on < $1 AND ($2::text IS NULL OR department_id = $2)
         ORDER BY department_id, due_on, task_id LIMIT 1000"
    ))
    .bind(today)
    .bind(department_id)
    .fetch_all(pool)
    .await?;
    Ok((counts, tasks))
}

/// Open tasks past their day, per kind, and checks whose report is past its day, over every
/// department: what [`overdue`] counts per department, for the admin port.
pub async fn overdue_totals(pool: &PgPool, today: NaiveDate) -> Result<(Vec<(i16, i64)>, i64), sqlx::Error> {
    let tasks = sqlx::query_as("SELECT kind, count(*) FROM tasks WHERE status = 1 AND due_on < $1 GROUP BY kind")
        .bind(today)
        .fetch_all(pool)
        .await?;
    let reports = sqlx::query_scalar(
        "SELECT coalesce(sum(owed - reported), 0)::bigint FROM reports_owed WHERE due_on < $1 AND owed > reported",
    )
    .bind(today)
    .fetch_one(pool)
    .await?;
    Ok((tasks, reports))
}

/// Take a pooled task; `None` when it is not in the pool (any more).
pub async fn claim(pool: &PgPool, task_id: Uuid, department_id: &str) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE tasks SET status = 1, department_id = $2, updated_at = now() WHERE task_id = $1 AND status = 4
         RETURNING {TASK_COLUMNS}"
    ))
    .bind(task_id)
    .bind(department_id)
    .fetch_optional(pool)
    .await
}

/// A registration task returned by `returned_by`: it goes back to the registration authority to
/// confirm by hand and push again (seed 002 art. 7).
pub async fn return_to_authority(
    pool: &PgPool,
    task: &TaskRow,
    authority: &str,
    reason: &str,
    due_on: NaiveDate,
) -> Result<(), sqlx::Error> {
    let mut new = NewTasks::default();
    new.push(
        REGISTRATION,
        authority,
        &task.credit_code,
        "",
        format!("{}退回：{reason}。请人工确认审批部门后重新推送（PushLead）", task.department_id),
        due_on,
    );
    new.mark(OPEN, 0, 0, format!("registration-return:{}", task.task_id));
    let mut connection = pool.acquire().await?;
    new.insert(&mut connection, &task.department_id).await
}
