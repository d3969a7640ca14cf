//! Postgres: a pool bound to the service's own schema, migrations at start, and provisioning of
//! the database, one role per service and one schema per role.
//!
//! Ownership is enforced by Postgres, not by convention: each service logs in as its own role,
//! which owns its schema and has no usage right on any other, so reading a sibling's table is
//! "permission denied".

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use crate::config::DatabaseSettings;

/// The platform's own migrations (outbox and processed events), run in every service's schema
/// before the service's migrations. Platform migrations use versions below 1000; services use
/// dated versions (`20261122000000`), so both sets live in one `_sqlx_migrations` table.
pub static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is invalid: {0}")]
    Url(sqlx::Error),
    #[error("cannot connect to Postgres: {0}")]
    Connect(sqlx::Error),
    #[error(
        "schema `{schema}` does not exist and this role cannot create it ({source}); run scripts/up.sh or create it"
    )]
    Schema { schema: String, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid name `{0}`: use lower-case letters, digits and `_`")]
    Name(String),
    #[error("provisioning failed: {0}")]
    Provision(sqlx::Error),
}

/// A Postgres identifier we build SQL from: checked, never quoted user input.
pub fn checked_identifier(name: &str) -> Result<&str, DbError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid { Ok(name) } else { Err(DbError::Name(name.to_owned())) }
}

/// Connection options for `settings`, with `search_path` set to the service's schema at login,
/// so no query names a schema and no extra round trip is needed per connection.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    let schema = checked_identifier(&settings.schema)?;
    let options = PgConnectOptions::from_str(settings.url.expose_secret()).map_err(DbError::Url)?;
    // `extensions` holds pg_trgm (provisioned once per database), usable by every service role.
    Ok(options.options([("search_path", format!("{schema},extensions"))]).application_name("xinyong"))
}

/// Connect the pool, make sure the schema exists, and run the platform's and the service's
/// migrations.
pub async fn connect_and_migrate(settings: &DatabaseSettings, service: &Migrator) -> Result<PgPool, DbError> {
    let options = connect_options(settings)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)?;
    ensure_schema(&pool, &settings.schema).await?;
    migrate(&pool, service).await?;
    Ok(pool)
}

async fn ensure_schema(pool: &PgPool, schema: &str) -> Result<(), DbError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
        .map_err(DbError::Connect)?;
    if !exists {
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", checked_identifier(schema)?).as_str())
            .await
            .map_err(|source| DbError::Schema { schema: schema.to_owned(), source })?;
    }
    Ok(())
}

/// Run the platform's migrations, then the service's.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), DbError> {
    // Each set must ignore the other's versions in the shared `_sqlx_migrations` table.
    for migrator in [&PLATFORM_MIGRATOR, service] {
        let lenient = Migrator { migrations: migrator.migrations.clone(), ignore_missing: true, ..Migrator::DEFAULT };
        lenient.run(pool).await?;
    }
    Ok(())
}

/// Whether Postgres aborted a transaction to resolve a deadlock (40P01) or a serialization
/// conflict (40001): running it again is the remedy.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if matches!(error.code().as_deref(), Some("40P01" | "40001")))
}

/// Before a statement that fails whole on a unique violation (a COPY of rows believed new):
/// a savepoint to fall back to. Settle it with [`settle_attempt`].
pub async fn begin_attempt(connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SAVEPOINT unique_attempt").execute(connection).await.map(|_| ())
}

/// After the statement: `Ok(true)` when it went through; `Ok(false)` when a unique index refused
/// it (a concurrent writer got there first) and it was rolled back, so the caller takes its careful
/// path in the same transaction. Other errors are returned.
pub async fn settle_attempt(
    connection: &mut sqlx::PgConnection,
    outcome: Result<(), sqlx::Error>,
) -> Result<bool, sqlx::Error> {
    match outcome {
        Ok(()) => {
            sqlx::query("RELEASE SAVEPOINT unique_attempt").execute(connection).await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
            sqlx::query("ROLLBACK TO SAVEPOINT unique_attempt").execute(connection).await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Roles and URLs created by [`provision`].
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub database: String,
    /// `(service, url)` for each service: the URL logs in as the service's own role.
    pub urls: Vec<(String, String)>,
}

impl Provisioned {
    pub fn url_of(&self, service: &str) -> Option<&str> {
        self.urls.iter().find(|(name, _)| name == service).map(|(_, url)| url.as_str())
    }
}

/// The role a service logs in as.
pub fn role_name(database: &str, service: &str) -> String {
    format!("{database}_{service}")
}

/// Create `database` (if missing) and, for each service, a login role `<database>_<service>` with
/// `password` that owns schema `<service>` and may use nothing else. Idempotent; passwords are reset.
pub async fn provision(
    admin_url: &str,
    database: &str,
    services: &[&str],
    password: &str,
) -> Result<Provisioned, DbError> {
    let database = checked_identifier(database)?;
    let admin = PgConnectOptions::from_str(admin_url).map_err(DbError::Url)?;
    let maintenance =
        PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await.map_err(DbError::Connect)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&maintenance)
        .await
        .map_err(DbError::Provision)?;
    if !exists {
        maintenance.execute(format!("CREATE DATABASE {database}").as_str()).await.map_err(DbError::Provision)?;
    }
    maintenance.close().await;

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin.clone().database(database))
        .await
        .map_err(DbError::Connect)?;
    let quoted_password = password.replace('\'', "''");
    // Nobody but the owning roles may create or read anything in the public schema either.
    pool.execute(
        format!("REVOKE ALL ON SCHEMA public FROM PUBLIC; REVOKE ALL ON DATABASE {database} FROM PUBLIC").as_str(),
    )
    .await
    .map_err(DbError::Provision)?;
    // Extensions need a privileged role to create; services only use them (search_path has `extensions`).
    for statement in
        ["CREATE SCHEMA IF NOT EXISTS extensions", "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions"]
    {
        pool.execute(statement).await.map_err(DbError::Provision)?;
    }
    let mut urls = Vec::new();
    for service in services {
        let schema = checked_identifier(service)?;
        let role = role_name(database, schema);
        let role = checked_identifier(&role)?;
        let role_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&pool)
            .await
            .map_err(DbError::Provision)?;
        let statement = if role_exists {
            format!("ALTER ROLE {role} LOGIN PASSWORD '{quoted_password}'")
        } else {
            format!("CREATE ROLE {role} LOGIN PASSWORD '{quoted_password}'")
        };
        pool.execute(statement.as_str()).await.map_err(DbError::Provision)?;
        pool.execute(
            format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};
                 CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role};
                 ALTER SCHEMA {schema} OWNER TO {role};
                 REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
                 GRANT USAGE ON SCHEMA extensions TO {role};"
            )
            .as_str(),
        )
        .await
        .map_err(DbError::Provision)?;
        urls.push(((*service).to_owned(), service_url(admin_url, role, password, database)));
    }
    pool.close().await;
    Ok(Provisioned { database: database.to_owned(), urls })
}

/// Build a service URL from the admin URL: same host and port, the role's credentials, the database.
fn service_url(admin_url: &str, role: &str, password: &str, database: &str) -> String {
    let options = PgConnectOptions::from_str(admin_url).ok();
    let host = options.as_ref().map(|o| o.get_host().to_owned()).unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = options.as_ref().map(|o| o.get_port()).unwrap_or(5432);
    let host = if host.starts_with('/') { format!("localhost:{port}?host={host}") } else { format!("{host}:{port}") };
    let (authority, query) = host.split_once('?').map_or((host.as_str(), None), |(a, q)| (a, Some(q)));
    let mut url = format!("postgres://{role}:{}@{authority}/{database}", percent_encode(password));
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Drop a database made by [`provision`] and its roles (tests clean up with this).
pub async fn drop_provisioned(admin_url: &str, database: &str, services: &[&str]) -> Result<(), DbError> {
    let database = checked_identifier(database)?;
    let admin = PgConnectOptions::from_str(admin_url).map_err(DbError::Url)?;
    let pool = PgPoolOptions::new().max_connections(1).connect_with(admin).await.map_err(DbError::Connect)?;
    pool.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await
        .map_err(DbError::Provision)?;
    for service in services {
        let role = role_name(database, checked_identifier(service)?);
        pool.execute(format!("DROP ROLE IF EXISTS {}", checked_identifier(&role)?).as_str())
            .await
            .map_err(DbError::Provision)?;
    }
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(checked_identifier("registry").is_ok());
        assert!(checked_identifier("xyt_01_registry").is_ok());
        assert!(checked_identifier("Registry").is_err());
        assert!(checked_identifier("a;drop").is_err());
        assert!(checked_identifier("1abc").is_err());
        assert!(checked_identifier("").is_err());
    }

    #[test]
    fn service_urls_keep_host_and_port() {
        let url = service_url("postgres://postgres@10.1.2.3:6543/postgres", "xinyong_registry", "p@ss word", "xinyong");
        assert_eq!(url, "postgres://xinyong_registry:p%40ss%20word@10.1.2.3:6543/xinyong");
    }
}
