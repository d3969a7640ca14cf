//! All SQL of the registry.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use xinyong_domain::calendar::day_text;
use xinyong_platform::bus::{self, Announce};
use xinyong_platform::copy::{BinaryCopy, copy_in_binary};
use xinyong_platform::db;
use xinyong_proto::common::v1::{EntityStatus, SubjectKind};
use xinyong_proto::events::v1::{EntitiesRegistered, EntityRegistered, EntityStatusChanged, EntityUpdated};

use crate::rules::{self, ValidEntity};

const PRODUCER: &str = "registry";

const COLUMNS: &str = "credit_code, name, kind, registration_number, region_code, industry_code, business_scope,
    established_on, registered_capital::text AS registered_capital, address, representative_name,
    representative_id_masked, representative_id_sealed, representative_id_digest, status, status_since,
    registered_status, registered_status_since, registered_by, created_at, updated_at";

/// A stored subject.
#[derive(Debug, Clone, FromRow)]
pub struct EntityRow {
    pub credit_code: String,
    pub name: String,
    pub kind: i16,
    pub registration_number: Option<String>,
    pub region_code: String,
    pub industry_code: String,
    pub business_scope: String,
    pub established_on: NaiveDate,
    pub registered_capital: Option<String>,
    pub address: String,
    pub representative_name: String,
    pub representative_id_masked: String,
    pub representative_id_sealed: Option<Vec<u8>>,
    pub representative_id_digest: Option<Vec<u8>>,
    pub status: i16,
    pub status_since: NaiveDate,
    pub registered_status: i16,
    pub registered_status_since: NaiveDate,
    pub registered_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EntityRow {
    pub fn status(&self) -> EntityStatus {
        EntityStatus::try_from(i32::from(self.status)).unwrap_or(EntityStatus::Unspecified)
    }

    /// The stored fields in the form new registrations are compared with (no ID number: compare
    /// `representative_id_digest` instead).
    pub fn as_valid(&self) -> ValidEntity {
        ValidEntity {
            credit_code: self.credit_code.clone(),
            name: self.name.clone(),
            name_normalised: String::new(),
            kind: SubjectKind::try_from(i32::from(self.kind)).unwrap_or(SubjectKind::Unspecified),
            registration_number: self.registration_number.clone(),
            region_code: self.region_code.clone(),
            industry_code: self.industry_code.clone(),
            business_scope: self.business_scope.clone(),
            established_on: self.established_on,
            registered_capital: self.registered_capital.clone(),
            address: self.address.clone(),
            representative_name: self.representative_name.clone(),
            representative_id: None,
            status: self.status(),
            status_since: self.status_since,
        }
    }
}

/// A subject ready to store: validated, its ID number sealed.
#[derive(Debug, Clone)]
pub struct PreparedEntity {
    pub entity: ValidEntity,
    pub id_masked: String,
    pub id_sealed: Option<Vec<u8>>,
    pub id_digest: Option<Vec<u8>>,
}

impl PreparedEntity {
    pub fn registered_event(&self) -> EntityRegistered {
        EntityRegistered {
            credit_code: self.entity.credit_code.clone(),
            name: self.entity.name.clone(),
            kind: self.entity.kind as i32,
            region_code: self.entity.region_code.clone(),
            industry_code: self.entity.industry_code.clone(),
            business_scope: self.entity.business_scope.clone(),
            established_on: day_text(self.entity.established_on),
            status: self.entity.status as i32,
        }
    }
}

/// One status change.
#[derive(Debug, Clone, FromRow)]
pub struct StatusRow {
    pub id: i64,
    pub status: i16,
    pub effective_on: NaiveDate,
    pub reason: String,
    pub department_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// One field an update replaced, with its value before (an ID number masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub previous: String,
}

/// A version of a subject's data that an update replaced.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub version: i32,
    pub changes: Json<Vec<FieldChange>>,
    pub reason: String,
    pub department_id: String,
    pub changed_at: DateTime<Utc>,
}

/// The stored value of `field` (a name of [`rules::differing_fields`]) as `UpdateEntity` shows
/// what it replaced: text as in `registry.v1.Entity`, the ID number masked.
fn stored_value(row: &EntityRow, field: &str) -> String {
    match field {
        "name" => row.name.clone(),
        "kind" => SubjectKind::try_from(i32::from(row.kind))
            .map_or_else(|_| row.kind.to_string(), |kind| kind.as_str_name().to_owned()),
        "registration_number" => row.registration_number.clone().unwrap_or_default(),
        "region_code" => row.region_code.clone(),
        "industry_code" => row.industry_code.clone(),
        "business_scope" => row.business_scope.clone(),
        "established_on" => day_text(row.established_on),
        "registered_capital" => row.registered_capital.clone().unwrap_or_default(),
        "address" => row.address.clone(),
        "legal_representative.name" => row.representative_name.clone(),
        "legal_representative.id_number" => row.representative_id_masked.clone(),
        _ => String::new(),
    }
}

/// What registering one subject came to.
#[derive(Debug)]
pub enum RegisterOutcome {
    Created,
    /// Registered before with the same data.
    Unchanged,
    /// Registered before with other data in these fields.
    Conflict(Vec<&'static str>),
    /// The registration number belongs to another subject.
    RegistrationNumberTaken(String),
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("subject `{0}` not found")]
    NotFound(String),
    #[error("{0}")]
    Transition(String),
    #[error("registration_number `{0}` belongs to another subject")]
    RegistrationNumberTaken(String),
    #[error("the effective date {effective_on} is before the current status's date {since}")]
    EffectiveBeforeCurrent { effective_on: NaiveDate, since: NaiveDate },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A page of search hits with their scores.
#[derive(Debug, FromRow)]
pub struct SearchRow {
    #[sqlx(flatten)]
    pub entity: EntityRow,
    pub score: f64,
    pub match_kind: String,
}

/// Search filters.
#[derive(Debug, Default)]
pub struct SearchQuery {
    pub name_normalised: String,
    pub region_prefix: String,
    pub industry_prefix: String,
    pub kinds: Vec<i16>,
    pub statuses: Vec<i16>,
    /// Keyset: hits after (score, code) in (score desc, code asc) order.
    pub after: Option<(f64, String)>,
    pub limit: i64,
}

/// A directory entry.
#[derive(Debug, FromRow)]
pub struct DirectoryRow {
    pub credit_code: String,
    pub name: String,
    pub region_code: String,
    pub industry_code: String,
    pub kind: i16,
    pub status: i16,
}

/// `name_core_length` of a normalised name (see migration 20261123000001).
fn core_length(normalised: &str) -> i16 {
    // Names are at most 200 characters (rules::validate).
    xinyong_domain::name::core_length(normalised) as i16
}

/// Escape `%`, `_` and `\` for LIKE.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn get(&self, credit_code: &str) -> Result<Option<EntityRow>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM entities WHERE credit_code = $1"))
            .bind(credit_code)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn get_by_registration_number(&self, number: &str) -> Result<Option<EntityRow>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM entities WHERE registration_number = $1"))
            .bind(number)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The status history, oldest first: the registration, then every change.
    /// The codes among `codes` that are registered.
    pub async fn registered(&self, codes: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT credit_code FROM entities WHERE credit_code = ANY($1)")
            .bind(codes)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn history(&self, credit_code: &str) -> Result<Vec<StatusRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT registered_status AS status, registered_status_since AS effective_on, 'registered' AS reason,
                    registered_by AS department_id, created_at AS recorded_at, 0::bigint AS id
             FROM entities WHERE credit_code = $1
             UNION ALL
             SELECT status, effective_on, reason, department_id, recorded_at, id FROM entity_status_history
             WHERE credit_code = $1
             ORDER BY id",
        )
        .bind(credit_code)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The versions of a subject's data that updates replaced, oldest first.
    pub async fn versions(&self, credit_code: &str) -> Result<Vec<VersionRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT version, changes, reason, department_id, changed_at FROM entity_versions
             WHERE credit_code = $1 ORDER BY version",
        )
        .bind(credit_code)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Change a registered subject's data to `new` (its status stays): keep what the change
    /// replaced as a version, and announce it. Returns the subject as it is now, the fields that
    /// changed (none: `new` is what is stored, and nothing is written) and the data's version.
    pub async fn update_entity(
        &self,
        new: &PreparedEntity,
        reason: &str,
        department_id: &str,
    ) -> Result<(EntityRow, Vec<&'static str>, i32), StoreError> {
        let code = new.entity.credit_code.as_str();
        let mut transaction = self.pool.begin().await?;
        let current: EntityRow =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM entities WHERE credit_code = $1 FOR UPDATE"))
                .bind(code)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| StoreError::NotFound(code.to_owned()))?;
        let replaced: i64 = sqlx::query_scalar("SELECT count(*) FROM entity_versions WHERE credit_code = $1")
            .bind(code)
            .fetch_one(&mut *transaction)
            .await?;
        let version = replaced as i32 + 1;
        let changed = rules::differing_fields(
            &current.as_valid(),
            current.representative_id_digest.as_deref(),
            &new.entity,
            new.id_digest.as_deref(),
        );
        if changed.is_empty() {
            return Ok((current, changed, version));
        }
        let changes: Vec<FieldChange> = changed
            .iter()
            .map(|field| FieldChange { field: (*field).to_owned(), previous: stored_value(&current, field) })
            .collect();
        sqlx::query(
            "INSERT INTO entity_versions (credit_code, version, changes, reason, department_id) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code)
        .bind(version)
        .bind(Json(&changes))
        .bind(reason)
        .bind(department_id)
        .execute(&mut *transaction)
        .await?;
        let entity = &new.entity;
        let updated = sqlx::query_as::<_, EntityRow>(&format!(
            "UPDATE entities SET name = $2, name_normalised = $3, name_core_length = $4, kind = $5,
                 registration_number = $6, region_code = $7, industry_code = $8, business_scope = $9,
                 established_on = $10, registered_capital = $11::numeric, address = $12, representative_name = $13,
                 representative_id_masked = $14, representative_id_sealed = $15, representative_id_digest = $16,
                 updated_at = now()
             WHERE credit_code = $1 RETURNING {COLUMNS}"
        ))
        .bind(code)
        .bind(&entity.name)
        .bind(&entity.name_normalised)
        .bind(core_length(&entity.name_normalised))
        .bind(entity.kind as i16)
        .bind(&entity.registration_number)
        .bind(&entity.region_code)
        .bind(&entity.industry_code)
        .bind(&entity.business_scope)
        .bind(entity.established_on)
        .bind(&entity.registered_capital)
        .bind(&entity.address)
        .bind(&entity.representative_name)
        .bind(&new.id_masked)
        .bind(&new.id_sealed)
        .bind(&new.id_digest)
        .fetch_one(&mut *transaction)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(database) if database.constraint() == Some("entities_registration_number") => {
                StoreError::RegistrationNumberTaken(entity.registration_number.clone().unwrap_or_default())
            }
            _ => StoreError::Database(error),
        })?;
        let event = EntityUpdated {
            credit_code: code.to_owned(),
            name: entity.name.clone(),
            kind: entity.kind as i32,
            region_code: entity.region_code.clone(),
            industry_code: entity.industry_code.clone(),
            business_scope: entity.business_scope.clone(),
            changed_fields: changed.iter().map(|field| (*field).to_owned()).collect(),
        };
        bus::enqueue(&mut transaction, PRODUCER, &event).await?;
        transaction.commit().await?;
        Ok((updated, changed, version + 1))
    }

    /// Register many subjects in one transaction: new ones are inserted (their first status and
    /// registering department on the row itself) and announced; the others are compared with what is stored. Outcomes come in the order of
    /// `rows`. Two batches racing on the same codes can deadlock; the loser is retried.
    pub async fn register_batch(
        &self,
        rows: &[&PreparedEntity],
        department_id: &str,
        announce: Announce,
    ) -> Result<Vec<RegisterOutcome>, StoreError> {
        let mut attempt = 0;
        loop {
            let mut transaction = self.pool.begin().await?;
            let result = match register_in(&mut transaction, rows, department_id, announce).await {
                Ok(outcomes) => transaction.commit().await.map(|()| outcomes).map_err(StoreError::from),
                Err(error) => Err(error),
            };
            match result {
                Err(StoreError::Database(error)) if attempt < 3 && db::is_retryable(&error) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Change a subject's status, keep the history and announce it.
    pub async fn update_status(
        &self,
        credit_code: &str,
        to: EntityStatus,
        effective_on: NaiveDate,
        reason: &str,
        department_id: &str,
    ) -> Result<(EntityRow, EntityStatus), StoreError> {
        let mut transaction = self.pool.begin().await?;
        let current: EntityRow =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM entities WHERE credit_code = $1 FOR UPDATE"))
                .bind(credit_code)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| StoreError::NotFound(credit_code.to_owned()))?;
        let from = current.status();
        rules::transition_allowed(from, to).map_err(StoreError::Transition)?;
        if effective_on < current.status_since {
            return Err(StoreError::EffectiveBeforeCurrent { effective_on, since: current.status_since });
        }
        let updated: EntityRow = sqlx::query_as(&format!(
            "UPDATE entities SET status = $2, status_since = $3, updated_at = now() WHERE credit_code = $1 RETURNING {COLUMNS}"
        ))
        .bind(credit_code)
        .bind(to as i16)
        .bind(effective_on)
        .fetch_one(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO entity_status_history (credit_code, status, effective_on, reason, department_id) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(credit_code)
        .bind(to as i16)
        .bind(effective_on)
        .bind(reason)
        .bind(department_id)
        .execute(&mut *transaction)
        .await?;
        let event = EntityStatusChanged {
            credit_code: credit_code.to_owned(),
            old_status: from as i32,
            new_status: to as i32,
            effective_on: effective_on.to_string(),
            reason: reason.to_owned(),
        };
        bus::enqueue(&mut transaction, PRODUCER, &event).await?;
        transaction.commit().await?;
        Ok((updated, from))
    }

    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchRow>, StoreError> {
        let values = SearchValues::of(query);
        Ok(values.bind(sqlx::query_as(&search_sql())).fetch_all(&self.pool).await?)
    }

    /// Postgres's plan for `search`, one line per row of `EXPLAIN`: whether names are found
    /// through the trigram index is a property of the statement and the index together, which a
    /// test holds.
    pub async fn explain_search(&self, query: &SearchQuery) -> Result<Vec<String>, StoreError> {
        let values = SearchValues::of(query);
        let sql = format!("EXPLAIN {}", search_sql());
        let rows: Vec<(String,)> = values.bind(sqlx::query_as(&sql)).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(line,)| line).collect())
    }
}

/// The search statement. The trigram index holds only each name's core (its company-form tail cut
/// off), so the index finds candidates by the core and the full name decides: a name containing
/// the text has the text's `core_of_contained` in its core (libs/domain name.rs, with a property
/// test), and similarity is that of the cores, which a shared 有限公司 does not inflate.
fn search_sql() -> String {
    format!(
        "WITH scored AS (
            SELECT {COLUMNS},
                CASE WHEN $1 = '' THEN 0.0::float8
                     WHEN name_normalised = $1 THEN 1.0::float8
                     WHEN name_normalised LIKE $2 THEN 0.9::float8
                     WHEN name_normalised LIKE $3 THEN 0.8::float8
                     ELSE (similarity({CORE}, $11) * 0.7)::float8 END AS score,
                CASE WHEN $1 = '' THEN 'filter'
                     WHEN name_normalised = $1 THEN 'exact'
                     WHEN name_normalised LIKE $2 THEN 'prefix'
                     WHEN name_normalised LIKE $3 THEN 'contains'
                     ELSE 'similar' END AS match_kind
            FROM entities
            WHERE ($1 = '' OR ({CORE} LIKE $12 AND name_normalised LIKE $3) OR {CORE} % $11)
              AND ($4 = '' OR region_code LIKE $4)
              AND ($5 = '' OR industry_code LIKE $5)
              AND (cardinality($6::smallint[]) = 0 OR kind = ANY($6))
              AND (cardinality($7::smallint[]) = 0 OR status = ANY($7))
        )
        SELECT * FROM scored
        WHERE $8::float8 IS NULL OR score < $8 OR (score = $8 AND credit_code > $9)
        ORDER BY score DESC, credit_code
        LIMIT $10"
    )
}

/// The parameters of `search_sql` for one query.
struct SearchValues<'a> {
    query: &'a SearchQuery,
    prefix: String,
    contains: String,
    region: String,
    industry: String,
    after_score: Option<f64>,
    after_code: Option<&'a str>,
    core: &'a str,
    core_contains: String,
}

impl<'a> SearchValues<'a> {
    fn of(query: &'a SearchQuery) -> SearchValues<'a> {
        let name = query.name_normalised.as_str();
        let escaped = like_escape(name);
        let starting =
            |prefix: &str| if prefix.is_empty() { String::new() } else { format!("{}%", like_escape(prefix)) };
        SearchValues {
            query,
            prefix: format!("{escaped}%"),
            contains: format!("%{escaped}%"),
            region: starting(&query.region_prefix),
            industry: starting(&query.industry_prefix),
            after_score: query.after.as_ref().map(|(score, _)| *score),
            after_code: query.after.as_ref().map(|(_, code)| code.as_str()),
            core: xinyong_domain::name::core(name),
            core_contains: format!("%{}%", like_escape(xinyong_domain::name::core_of_contained(name))),
        }
    }

    fn bind<'q, O>(
        &'q self,
        statement: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        statement
            .bind(&self.query.name_normalised)
            .bind(&self.prefix)
            .bind(&self.contains)
            .bind(&self.region)
            .bind(&self.industry)
            .bind(&self.query.kinds)
            .bind(&self.query.statuses)
            .bind(self.after_score)
            .bind(self.after_code)
            .bind(self.query.limit)
            .bind(self.core)
            .bind(&self.core_contains)
    }
}

/// A name's core as the trigram index holds it (migration 20261123000001).
const CORE: &str = "left(name_normalised, name_core_length)";

/// The directory query: filters in SQL, ordered by code, streamed row by row.
pub const DIRECTORY_SQL: &str = "SELECT credit_code, name, region_code, industry_code, kind, status FROM entities
    WHERE ($1 = '' OR region_code LIKE $1 || '%')
      AND ($2 = '' OR industry_code LIKE $2 || '%')
      AND (cardinality($3::smallint[]) = 0 OR kind = ANY($3))
      AND (NOT $4 OR status = 1)
    ORDER BY credit_code";

/// New subjects by binary COPY (see `xinyong_platform::copy`): Postgres parses no text for their
/// days, capital and sealed ID. A clash with a unique key fails it whole.
async fn copy_entities(
    connection: &mut PgConnection,
    rows: &[&PreparedEntity],
    department_id: &str,
) -> Result<(), sqlx::Error> {
    let mut data = BinaryCopy::new(rows.len() * 512);
    for row in rows {
        let entity = &row.entity;
        data.row(21)
            .text(&entity.credit_code)
            .text(&entity.name)
            .text(&entity.name_normalised)
            .int2(core_length(&entity.name_normalised))
            .int2(entity.kind as i16)
            .optional_text(entity.registration_number.as_deref())
            .text(&entity.region_code)
            .text(&entity.industry_code)
            .text(&entity.business_scope)
            .date(entity.established_on);
        match &entity.registered_capital {
            Some(capital) => data.numeric(capital).map_err(|error| sqlx::Error::Encode(Box::new(error)))?,
            None => data.null(),
        };
        data.text(&entity.address)
            .text(&entity.representative_name)
            .text(&row.id_masked)
            .optional_bytes(row.id_sealed.as_deref())
            .optional_bytes(row.id_digest.as_deref())
            .int2(entity.status as i16)
            .date(entity.status_since)
            .int2(entity.status as i16)
            .date(entity.status_since)
            .text(department_id);
    }
    copy_in_binary(connection, "COPY entities (credit_code, name, name_normalised, name_core_length, kind, registration_number, region_code, industry_code,
                 business_scope, established_on, registered_capital, address, representative_name, representative_id_masked,
                 representative_id_sealed, representative_id_digest, status, status_since, registered_status,
                 registered_status_since, registered_by) FROM STDIN WITH (FORMAT binary)", data.finish()).await?;
    Ok(())
}

/// Insert subjects, skipping those that clash with a unique key; returns the codes inserted.
async fn insert_entities(
    connection: &mut PgConnection,
    rows: &[&PreparedEntity],
    department_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    macro_rules! column {
        ($field:expr) => {
            rows.iter().map($field).collect::<Vec<_>>()
        };
    }
    let query = sqlx::query_scalar::<_, String>(
        "INSERT INTO entities (credit_code, name, name_normalised, name_core_length, kind, registration_number, region_code,
             industry_code, business_scope, established_on, registered_capital, address, representative_name,
             representative_id_masked, representative_id_sealed, representative_id_digest, status, status_since,
             registered_status, registered_status_since, registered_by)
         SELECT code, name, normalised, core_length, kind, number, region, industry, scope, established, capital::numeric,
             address, rep_name, rep_masked, rep_sealed, rep_digest, status, since, status, since, $18
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[], $7::text[], $8::text[],
             $9::date[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bytea[], $15::bytea[], $16::smallint[], $17::date[],
             $19::smallint[])
             AS t(code, name, normalised, kind, number, region, industry, scope, established, capital, address,
                  rep_name, rep_masked, rep_sealed, rep_digest, status, since, core_length)
         ON CONFLICT DO NOTHING RETURNING credit_code",
    )
    .bind(column!(|row| row.entity.credit_code.as_str()))
        .bind(column!(|row| row.entity.name.as_str()))
        .bind(column!(|row| row.entity.name_normalised.as_str()))
        .bind(column!(|row| row.entity.kind as i16))
        .bind(column!(|row| row.entity.registration_number.as_deref()))
        .bind(column!(|row| row.entity.region_code.as_str()))
        .bind(column!(|row| row.entity.industry_code.as_str()))
        .bind(column!(|row| row.entity.business_scope.as_str()))
        .bind(column!(|row| row.entity.established_on))
        .bind(column!(|row| row.entity.registered_capital.as_deref()))
        .bind(column!(|row| row.entity.address.as_str()))
        .bind(column!(|row| row.entity.representative_name.as_str()))
        .bind(column!(|row| row.id_masked.as_str()))
        .bind(column!(|row| row.id_sealed.as_deref()))
        .bind(column!(|row| row.id_digest.as_deref()))
        .bind(column!(|row| row.entity.status as i16))
        .bind(column!(|row| row.entity.status_since))
        .bind(department_id)
        .bind(column!(|row| core_length(&row.entity.name_normalised)));
    query.fetch_all(&mut *connection).await
}

/// Announce the subjects just inserted, in the same transaction: an `EntityRegistered` each
/// (RegisterEntity) or one `EntitiesRegistered` (ImportEntities).
async fn announce_new(
    connection: &mut PgConnection,
    new_rows: &[&PreparedEntity],
    how: Announce,
) -> Result<(), StoreError> {
    if new_rows.is_empty() {
        return Ok(());
    }
    match how {
        Announce::OneBatch => {
            bus::enqueue_encoded::<EntitiesRegistered>(connection, PRODUCER, "", entities_registered(new_rows)).await?;
        }
        Announce::Each => {
            let registered: Vec<EntityRegistered> = new_rows.iter().map(|row| row.registered_event()).collect();
            bus::enqueue_batch(connection, PRODUCER, &registered).await?;
        }
    }
    Ok(())
}

/// The `EntitiesRegistered` of `rows`, encoded straight from them: the same bytes as building an
/// `EntityRegistered` per row and encoding them, without cloning seven strings a subject first
/// (an import announces every subject it creates).
fn entities_registered(rows: &[&PreparedEntity]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int32, key_len, string};
    let days: Vec<String> = rows.iter().map(|row| day_text(row.entity.established_on)).collect();
    let text = |tag: u32, value: &String| if value.is_empty() { 0 } else { string::encoded_len(tag, value) };
    let number = |tag: u32, value: i32| if value == 0 { 0 } else { int32::encoded_len(tag, &value) };
    let lengths: Vec<usize> = rows
        .iter()
        .zip(&days)
        .map(|(row, day)| {
            let entity = &row.entity;
            text(1, &entity.credit_code)
                + text(2, &entity.name)
                + number(3, entity.kind as i32)
                + text(4, &entity.region_code)
                + text(5, &entity.industry_code)
                + text(6, &entity.business_scope)
                + text(7, day)
                + number(8, entity.status as i32)
        })
        .collect();
    let total: usize = lengths.iter().map(|length| key_len(1) + encoded_len_varint(*length as u64) + length).sum();
    let mut out = Vec::with_capacity(total);
    for ((row, day), length) in rows.iter().zip(&days).zip(lengths) {
        let entity = &row.entity;
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(length as u64, &mut out);
        for (tag, value) in [(1, &entity.credit_code), (2, &entity.name)] {
            if !value.is_empty() {
                string::encode(tag, value, &mut out);
            }
        }
        if entity.kind as i32 != 0 {
            int32::encode(3, &(entity.kind as i32), &mut out);
        }
        for (tag, value) in
            [(4, &entity.region_code), (5, &entity.industry_code), (6, &entity.business_scope), (7, day)]
        {
            if !value.is_empty() {
                string::encode(tag, value, &mut out);
            }
        }
        if entity.status as i32 != 0 {
            int32::encode(8, &(entity.status as i32), &mut out);
        }
    }
    out
}

async fn register_in(
    connection: &mut PgConnection,
    rows: &[&PreparedEntity],
    department_id: &str,
    announce: Announce,
) -> Result<Vec<RegisterOutcome>, StoreError> {
    // A bulk load of subjects not stored yet is the common case: COPY the whole batch without
    // first asking which codes exist (that lookup was a tenth of Postgres's time in the import
    // benchmark). A retried or overlapping import fails the COPY whole at its first clash, and the
    // batch takes the careful path below in the same transaction.
    if announce == Announce::OneBatch && !rows.is_empty() {
        let mut distinct = HashSet::with_capacity(rows.len());
        if rows.iter().all(|row| distinct.insert(row.entity.credit_code.as_str())) {
            db::begin_attempt(connection).await?;
            let copied = copy_entities(connection, rows, department_id).await;
            if db::settle_attempt(connection, copied).await? {
                announce_new(connection, rows, announce).await?;
                return Ok(rows.iter().map(|_| RegisterOutcome::Created).collect());
            }
        }
    }

    // Codes already stored are compared, not inserted. The others go in by COPY, far cheaper per
    // row than INSERT (and than ON CONFLICT's speculative insertion); if a racing writer or a taken
    // registration number trips a unique index, the careful INSERT runs instead.
    let codes: Vec<&str> = rows.iter().map(|row| row.entity.credit_code.as_str()).collect();
    let existing: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT credit_code FROM entities WHERE credit_code = ANY($1)")
            .bind(&codes)
            .fetch_all(&mut *connection)
            .await?
            .into_iter()
            .collect();
    let mut seen = HashSet::new();
    let fresh: Vec<&PreparedEntity> = rows
        .iter()
        .copied()
        .filter(|row| !existing.contains(&row.entity.credit_code) && seen.insert(row.entity.credit_code.as_str()))
        .collect();
    let created: Vec<String> = if fresh.is_empty() {
        Vec::new()
    } else {
        db::begin_attempt(connection).await?;
        let copied = copy_entities(connection, &fresh, department_id).await;
        if db::settle_attempt(connection, copied).await? {
            fresh.iter().map(|row| row.entity.credit_code.clone()).collect()
        } else {
            insert_entities(connection, &fresh, department_id).await?
        }
    };
    let created: HashSet<String> = created.into_iter().collect();

    // The rows that were inserted: the first of each created code, in request order.
    let mut inserted: HashMap<&str, &PreparedEntity> = HashMap::new();
    let mut new_rows: Vec<&PreparedEntity> = Vec::new();
    for row in rows.iter().copied() {
        let code = row.entity.credit_code.as_str();
        if created.contains(code) && !inserted.contains_key(code) {
            inserted.insert(code, row);
            new_rows.push(row);
        }
    }
    announce_new(connection, &new_rows, announce).await?;

    // Only what was not inserted is read back and compared with what is stored (a bulk load of new
    // subjects reads nothing back).
    let codes: Vec<&str> = codes.into_iter().filter(|code| !created.contains(*code)).collect();
    let stored: Vec<EntityRow> = if codes.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM entities WHERE credit_code = ANY($1)"))
            .bind(&codes)
            .fetch_all(&mut *connection)
            .await?
    };
    let stored: HashMap<&str, &EntityRow> = stored.iter().map(|row| (row.credit_code.as_str(), row)).collect();

    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows.iter().copied() {
        let code = row.entity.credit_code.as_str();
        let differing = match (inserted.get(code), stored.get(code)) {
            // This very row was inserted.
            (Some(first), _) if std::ptr::eq(*first, row) => {
                outcomes.push(RegisterOutcome::Created);
                continue;
            }
            // An earlier row of this batch inserted the code.
            (Some(first), _) => rules::differing_fields(
                &first.entity,
                first.id_digest.as_deref(),
                &row.entity,
                row.id_digest.as_deref(),
            ),
            (None, Some(existing)) => rules::differing_fields(
                &existing.as_valid(),
                existing.representative_id_digest.as_deref(),
                &row.entity,
                row.id_digest.as_deref(),
            ),
            // Not inserted and not there: the other unique key, the registration number, is taken.
            (None, None) => {
                outcomes.push(RegisterOutcome::RegistrationNumberTaken(
                    row.entity.registration_number.clone().unwrap_or_default(),
                ));
                continue;
            }
        };
        outcomes.push(if differing.is_empty() {
            RegisterOutcome::Unchanged
        } else {
            RegisterOutcome::Conflict(differing)
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn prepared(code: &str, name: &str, scope: &str, status: EntityStatus) -> PreparedEntity {
        PreparedEntity {
            entity: ValidEntity {
                credit_code: code.to_owned(),
                name: name.to_owned(),
                name_normalised: xinyong_domain::name::normalise(name),
                kind: SubjectKind::Enterprise,
                registration_number: None,
                region_code: "110108".to_owned(),
                industry_code: "C3911".to_owned(),
                business_scope: scope.to_owned(),
                established_on: NaiveDate::from_ymd_opt(1992, 11, 12).unwrap(),
                registered_capital: None,
                address: String::new(),
                representative_name: String::new(),
                representative_id: None,
                status,
                status_since: NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
            },
            id_masked: String::new(),
            id_sealed: None,
            id_digest: None,
        }
    }

    /// The batch event written straight from the rows is what prost makes of the same events.
    #[test]
    fn a_batch_event_encodes_as_prost_would() {
        let scope = "生产计算机及外部设备；食品经营".repeat(20);
        let rows = [
            prepared("91110000600037341L", "联想(北京)有限公司", &scope, EntityStatus::Operating),
            prepared("9144030071526726XG", "华为技术有限公司", "", EntityStatus::LicenceRevoked),
            prepared("91310000631696382C", "", "", EntityStatus::Unspecified),
        ];
        let borrowed: Vec<&PreparedEntity> = rows.iter().collect();
        let expected = EntitiesRegistered { entities: rows.iter().map(PreparedEntity::registered_event).collect() }
            .encode_to_vec();
        assert_eq!(entities_registered(&borrowed), expected);
        let decoded = EntitiesRegistered::decode(expected.as_slice()).unwrap();
        assert_eq!(decoded.entities[0].business_scope, scope);
        assert_eq!(decoded.entities[1].established_on, "1992-11-12");
    }
}
