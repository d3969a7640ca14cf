//! The SQL of inspectors, plans, draws and visits.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;
use xinyong_domain::draw::{Inspector, Subject, Visit};
use xinyong_platform::bus;
use xinyong_proto::events::v1::InspectionResultRecorded;

/// `Assignment.state` as stored.
pub const PENDING: i16 = 1;
pub const DONE: i16 = 2;
pub const PUBLISHED: i16 = 3;

pub fn state_name(state: i16) -> &'static str {
    match state {
        DONE => "done",
        PUBLISHED => "published",
        _ => "pending",
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct InspectorRow {
    pub inspector_id: String,
    pub name: String,
    pub department_id: String,
    pub qualifications: Vec<String>,
    pub recusals: Vec<String>,
    pub active: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    pub grade: i32,
    pub percent: f64,
}

#[derive(Debug, Clone, FromRow)]
pub struct PlanRow {
    pub plan_id: Uuid,
    pub title: String,
    pub departments: Vec<String>,
    pub items: Vec<String>,
    pub region_prefix: String,
    pub industry_prefix: String,
    pub kinds: Vec<i16>,
    pub ratios: Json<Vec<Ratio>>,
    pub default_percent: f64,
    /// Percent of the subjects on the abnormal-operation or serious-dishonesty list to draw,
    /// whatever their grade; `None`: they follow their grade.
    pub listed_percent: Option<f64>,
    pub scheme: String,
    pub inspectors_per_visit: i32,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub created_by: String,
    pub source_plan_id: String,
    pub created_at: DateTime<Utc>,
    /// Its draw, once drawn.
    pub draw_id: Option<Uuid>,
}

#[derive(Debug, Clone, FromRow)]
pub struct DrawRow {
    pub draw_id: Uuid,
    pub plan_id: Uuid,
    pub seed: String,
    pub inputs_digest: String,
    pub population: i64,
    pub subjects: Vec<String>,
    pub grades: Vec<i16>,
    /// The listed subjects of the population.
    pub listed: Vec<String>,
    pub inspectors: Json<Vec<Inspector>>,
}

impl DrawRow {
    pub fn population(&self) -> Vec<Subject> {
        self.subjects
            .iter()
            .zip(&self.grades)
            .map(|(code, grade)| Subject {
                credit_code: code.clone(),
                grade: i32::from(*grade),
                listed: self.listed.binary_search(code).is_ok(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct AssignmentRow {
    pub assignment_id: Uuid,
    pub draw_id: Uuid,
    pub plan_id: Uuid,
    pub credit_code: String,
    pub inspector_ids: Vec<String>,
    pub merged_plan_ids: Vec<Uuid>,
    pub state: i16,
    pub inspected_on: Option<NaiveDate>,
    pub outcome: String,
    pub problems_found: bool,
    pub details: String,
    pub recorded_by: String,
    pub publish_due_on: Option<NaiveDate>,
}

/// One plan's inspections, counted.
#[derive(Debug, Clone, FromRow)]
pub struct PlanTotals {
    pub plan_id: Uuid,
    pub title: String,
    pub departments: Vec<String>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub population: i64,
    pub drawn: i64,
    pub done: i64,
    pub problems_found: i64,
    pub published: i64,
    pub publication_overdue: i64,
}

/// A result as recorded.
pub struct NewResult<'a> {
    pub inspected_on: NaiveDate,
    pub outcome: &'a str,
    pub problems_found: bool,
    pub details: &'a str,
    pub recorded_by: &'a str,
    pub publish_due_on: NaiveDate,
}

const PLAN_COLUMNS: &str = "p.plan_id, p.title, p.departments, p.items, p.region_prefix, p.industry_prefix, p.kinds,
    p.ratios, p.default_percent, p.listed_percent, p.scheme, p.inspectors_per_visit, p.starts_on, p.ends_on, p.created_by,
    p.source_plan_id, p.created_at, d.draw_id";

const ASSIGNMENT_COLUMNS: &str = "assignment_id, draw_id, plan_id, credit_code, inspector_ids, merged_plan_ids, state,
    inspected_on, outcome, problems_found, details, recorded_by, publish_due_on";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    /// Create or replace an inspector; `true` when created.
    pub async fn upsert_inspector(&self, inspector: &InspectorRow) -> Result<(InspectorRow, bool), sqlx::Error> {
        sqlx::query_as::<_, (String, String, String, Vec<String>, Vec<String>, bool, DateTime<Utc>, bool)>(
            "INSERT INTO inspectors (inspector_id, name, department_id, qualifications, recusals, active)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (inspector_id) DO UPDATE SET name = excluded.name, department_id = excluded.department_id,
                 qualifications = excluded.qualifications, recusals = excluded.recusals, active = excluded.active,
                 updated_at = now()
             RETURNING inspector_id, name, department_id, qualifications, recusals, active, updated_at, xmax = 0",
        )
        .bind(&inspector.inspector_id)
        .bind(&inspector.name)
        .bind(&inspector.department_id)
        .bind(&inspector.qualifications)
        .bind(&inspector.recusals)
        .bind(inspector.active)
        .fetch_one(&self.pool)
        .await
        .map(|(inspector_id, name, department_id, qualifications, recusals, active, updated_at, created)| {
            (InspectorRow { inspector_id, name, department_id, qualifications, recusals, active, updated_at }, created)
        })
    }

    pub async fn inspector(&self, inspector_id: &str) -> Result<Option<InspectorRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT inspector_id, name, department_id, qualifications, recusals, active, updated_at
             FROM inspectors WHERE inspector_id = $1",
        )
        .bind(inspector_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Store a plan; `None` when the creator's id was taken meanwhile (a concurrent retry).
    pub async fn create_plan(&self, plan: &PlanRow) -> Result<Option<PlanRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "WITH p AS (
                 INSERT INTO plans (plan_id, title, departments, items, region_prefix, industry_prefix, kinds, ratios,
                     default_percent, scheme, inspectors_per_visit, starts_on, ends_on, created_by, source_plan_id,
                     listed_percent)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (created_by, source_plan_id) DO NOTHING
                 RETURNING *)
             SELECT {PLAN_COLUMNS} FROM p LEFT JOIN draws d ON false"
        ))
        .bind(plan.plan_id)
        .bind(&plan.title)
        .bind(&plan.departments)
        .bind(&plan.items)
        .bind(&plan.region_prefix)
        .bind(&plan.industry_prefix)
        .bind(&plan.kinds)
        .bind(&plan.ratios)
        .bind(plan.default_percent)
        .bind(&plan.scheme)
        .bind(plan.inspectors_per_visit)
        .bind(plan.starts_on)
        .bind(plan.ends_on)
        .bind(&plan.created_by)
        .bind(&plan.source_plan_id)
        .bind(plan.listed_percent)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn plan(&self, plan_id: Uuid) -> Result<Option<PlanRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans p LEFT JOIN draws d USING (plan_id) WHERE p.plan_id = $1"
        ))
        .bind(plan_id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn plan_by_source(&self, created_by: &str, source: &str) -> Result<Option<PlanRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {PLAN_COLUMNS} FROM plans p LEFT JOIN draws d USING (plan_id)
             WHERE p.created_by = $1 AND p.source_plan_id = $2"
        ))
        .bind(created_by)
        .bind(source)
        .fetch_optional(&self.pool)
        .await
    }

    /// The plan's population now: operating subjects in its region, industry and kinds, with their
    /// grade under its scheme (0 without one) and whether they stand on the abnormal-operation or
    /// serious-dishonesty list, in code order.
    pub async fn population(&self, plan: &PlanRow) -> Result<Vec<Subject>, sqlx::Error> {
        let rows: Vec<(String, i16, bool)> = sqlx::query_as(
            "SELECT s.credit_code, coalesce(g.grade, 0::int2),
                 EXISTS (SELECT 1 FROM listings l WHERE l.credit_code = s.credit_code AND l.list IN (1, 2) AND NOT l.ended)
             FROM subjects s LEFT JOIN subject_grades g ON g.scheme = $4 AND g.credit_code = s.credit_code
             WHERE s.status = 1
               AND starts_with(s.region_code, $1) AND starts_with(s.industry_code, $2)
               AND (cardinality($3::int2[]) = 0 OR s.kind = ANY($3))
             ORDER BY s.credit_code",
        )
        .bind(&plan.region_prefix)
        .bind(&plan.industry_prefix)
        .bind(&plan.kinds)
        .bind(&plan.scheme)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(credit_code, grade, listed)| Subject { credit_code, grade: i32::from(grade), listed })
            .collect())
    }

    /// The active inspectors of the plan's departments.
    pub async fn directory(&self, departments: &[String]) -> Result<Vec<Inspector>, sqlx::Error> {
        let rows: Vec<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
            "SELECT inspector_id, department_id, qualifications, recusals FROM inspectors
             WHERE active AND department_id = ANY($1) ORDER BY inspector_id",
        )
        .bind(departments)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(inspector_id, department_id, qualifications, recusals)| Inspector {
                inspector_id,
                department_id,
                qualifications,
                recusals,
            })
            .collect())
    }

    pub async fn draw(&self, draw_id: Uuid) -> Result<Option<DrawRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT draw_id, plan_id, seed, inputs_digest, population, subjects, grades, listed, inspectors
             FROM draws WHERE draw_id = $1",
        )
        .bind(draw_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Store a draw with the inputs it used and its visits, and join each visit with other plans'
    /// pending visits to the same subject whose periods overlap. `None` when the plan was drawn
    /// meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_draw(
        &self,
        plan: &PlanRow,
        seed: &str,
        inputs_digest: &str,
        population: &[Subject],
        inspectors: &[Inspector],
        visits: &[Visit],
        drawn_by: &str,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let draw_id = Uuid::now_v7();
        let codes: Vec<&str> = population.iter().map(|subject| subject.credit_code.as_str()).collect();
        let grades: Vec<i16> = population.iter().map(|subject| subject.grade as i16).collect();
        // Sorted, for `DrawRow::population`'s binary search.
        let mut listed: Vec<&str> =
            population.iter().filter(|subject| subject.listed).map(|subject| subject.credit_code.as_str()).collect();
        listed.sort_unstable();
        let stored = sqlx::query(
            "INSERT INTO draws (draw_id, plan_id, seed, inputs_digest, population, subjects, grades, inspectors, drawn_by,
                 listed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (plan_id) DO NOTHING",
        )
        .bind(draw_id)
        .bind(plan.plan_id)
        .bind(seed)
        .bind(inputs_digest)
        .bind(population.len() as i64)
        .bind(codes)
        .bind(grades)
        .bind(Json(inspectors))
        .bind(drawn_by)
        .bind(listed)
        .execute(&mut *transaction)
        .await?;
        if stored.rows_affected() == 0 {
            return Ok(None);
        }
        let ids: Vec<Uuid> = visits.iter().map(|_| Uuid::now_v7()).collect();
        let visit_codes: Vec<&str> = visits.iter().map(|visit| visit.credit_code.as_str()).collect();
        // Inspector lists as one text each: Postgres has no arrays of arrays of unequal length.
        let teams: Vec<String> = visits.iter().map(|visit| visit.inspector_ids.join("\u{1f}")).collect();
        sqlx::query(
            "INSERT INTO assignments (assignment_id, draw_id, plan_id, credit_code, inspector_ids)
             SELECT id, $2, $3, code, string_to_array(team, E'\\x1f')
             FROM unnest($1::uuid[], $4::text[], $5::text[]) AS v (id, code, team)",
        )
        .bind(&ids)
        .bind(draw_id)
        .bind(plan.plan_id)
        .bind(visit_codes)
        .bind(teams)
        .execute(&mut *transaction)
        .await?;
        // 进一次门、查多项事: both visits name each other's plan.
        sqlx::query(
            "WITH pairs AS (
                 SELECT mine.assignment_id AS mine, other.assignment_id AS other, other.plan_id AS other_plan
                 FROM assignments mine
                 JOIN assignments other ON other.credit_code = mine.credit_code AND other.state = 1
                     AND other.plan_id <> mine.plan_id
                 JOIN plans op ON op.plan_id = other.plan_id
                 WHERE mine.draw_id = $1 AND op.starts_on <= $3 AND op.ends_on >= $2
             ), theirs AS (
                 UPDATE assignments a SET merged_plan_ids = array_append(a.merged_plan_ids, $4)
                 FROM pairs WHERE a.assignment_id = pairs.other
             )
             UPDATE assignments a SET merged_plan_ids = merged.plans
             FROM (SELECT mine, array_agg(other_plan ORDER BY other_plan) AS plans FROM pairs GROUP BY mine) merged
             WHERE a.assignment_id = merged.mine",
        )
        .bind(draw_id)
        .bind(plan.starts_on)
        .bind(plan.ends_on)
        .bind(plan.plan_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(draw_id))
    }

    pub async fn draw_visits(&self, draw_id: Uuid) -> Result<Vec<AssignmentRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE draw_id = $1 ORDER BY credit_code"))
            .bind(draw_id)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn assignments(
        &self,
        plan_id: Option<Uuid>,
        inspector_id: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AssignmentRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
             WHERE ($1::uuid IS NULL OR plan_id = $1)
               AND ($2::text IS NULL OR inspector_ids @> ARRAY[$2::text])
               AND ($3::uuid IS NULL OR assignment_id > $3)
             ORDER BY assignment_id LIMIT $4"
        ))
        .bind(plan_id)
        .bind(inspector_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn assignment(&self, assignment_id: Uuid) -> Result<Option<AssignmentRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE assignment_id = $1"))
            .bind(assignment_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Record a pending visit's result and announce it (ingestion files it as the subject's
    /// inspection-result record). `None` when it was not pending.
    pub async fn record_result(
        &self,
        assignment: &AssignmentRow,
        result: &NewResult<'_>,
    ) -> Result<Option<AssignmentRow>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let row: Option<AssignmentRow> = sqlx::query_as(&format!(
            "UPDATE assignments SET state = 2, inspected_on = $2, outcome = $3, problems_found = $4, details = $5,
                 recorded_by = $6, recorded_at = now(), publish_due_on = $7
             WHERE assignment_id = $1 AND state = 1
             RETURNING {ASSIGNMENT_COLUMNS}"
        ))
        .bind(assignment.assignment_id)
        .bind(result.inspected_on)
        .bind(result.outcome)
        .bind(result.problems_found)
        .bind(result.details)
        .bind(result.recorded_by)
        .bind(result.publish_due_on)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(row) = &row {
            let event = InspectionResultRecorded {
                credit_code: row.credit_code.clone(),
                plan_id: row.plan_id.to_string(),
                assignment_id: row.assignment_id.to_string(),
                department_id: result.recorded_by.to_owned(),
                inspected_on: result.inspected_on.to_string(),
                outcome: result.outcome.to_owned(),
                problems_found: result.problems_found,
            };
            bus::enqueue(&mut transaction, crate::PRODUCER, &event).await?;
        }
        transaction.commit().await?;
        Ok(row)
    }

    /// Publish a plan's recorded results (一公开): (published now, still without a result).
    pub async fn publish(&self, plan_id: Uuid) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "WITH published AS (
                 UPDATE assignments SET state = 3, published_at = now()
                 WHERE plan_id = $1 AND state = 2 RETURNING 1)
             SELECT (SELECT count(*) FROM published),
                    (SELECT count(*) FROM assignments WHERE plan_id = $1 AND state = 1)",
        )
        .bind(plan_id)
        .fetch_one(&self.pool)
        .await
    }

    /// Per plan overlapping `from`–`to` (of `department` when given; of `caller`'s plans unless
    /// `sees_all`): its population, visits drawn, done, with problems, published, overdue.
    pub async fn statistics(
        &self,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        department: Option<&str>,
        caller: &str,
        sees_all: bool,
        today: NaiveDate,
    ) -> Result<Vec<PlanTotals>, sqlx::Error> {
        sqlx::query_as(
            "SELECT p.plan_id, p.title, p.departments, p.starts_on, p.ends_on,
                    coalesce(d.population, 0) AS population,
                    count(a.assignment_id) AS drawn,
                    count(a.assignment_id) FILTER (WHERE a.state >= 2) AS done,
                    count(a.assignment_id) FILTER (WHERE a.state >= 2 AND a.problems_found) AS problems_found,
                    count(a.assignment_id) FILTER (WHERE a.state = 3) AS published,
                    count(a.assignment_id) FILTER (WHERE a.state = 2 AND a.publish_due_on < $6) AS publication_overdue
             FROM plans p
             LEFT JOIN draws d USING (plan_id)
             LEFT JOIN assignments a USING (plan_id)
             WHERE ($1::date IS NULL OR p.ends_on >= $1)
               AND ($2::date IS NULL OR p.starts_on <= $2)
               AND ($3::text IS NULL OR $3 = ANY(p.departments))
               AND ($5 OR $4 = ANY(p.departments))
             GROUP BY p.plan_id, d.population
             ORDER BY p.starts_on, p.plan_id",
        )
        .bind(from)
        .bind(to)
        .bind(department)
        .bind(caller)
        .bind(sees_all)
        .bind(today)
        .fetch_all(&self.pool)
        .await
    }

    /// Each department with active inspectors, and when its list last changed.
    pub async fn inspector_lists(&self) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
        sqlx::query_as("SELECT department_id, max(updated_at) FROM inspectors WHERE active GROUP BY department_id")
            .fetch_all(&self.pool)
            .await
    }

    /// Recorded results past their publication day.
    pub async fn unpublished_overdue(&self, today: NaiveDate) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM assignments WHERE state = 2 AND publish_due_on < $1")
            .bind(today)
            .fetch_one(&self.pool)
            .await
    }
}
