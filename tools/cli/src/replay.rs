//! `events-replay`: after Redis lost its streams, publish again the events each service published
//! since a given time (docs/operations.md, "Redis lost its data"). Consumers record every event
//! they handle, so those they had handled are acknowledged again without running their handlers.

use std::str::FromStr;

use sqlx::Connection;
use xinyong_platform::bus::outbox::{Republished, republish_since};

/// Mark the events each of `services` published at or after `since` unpublished, in the database
/// `database` of the server `admin_url` names, each service in its own transaction. `None` for a
/// service whose schema has no outbox.
pub async fn run(
    admin_url: &str,
    database: &str,
    services: &[&str],
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(String, Option<Republished>)>, String> {
    let options = sqlx::postgres::PgConnectOptions::from_str(admin_url).map_err(|error| error.to_string())?;
    let mut connection =
        sqlx::PgConnection::connect_with(&options.database(database)).await.map_err(|error| error.to_string())?;
    let mut done = Vec::with_capacity(services.len());
    for service in services {
        if !service.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!("`{service}` is not a service's schema name"));
        }
        let has_outbox: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{service}.outbox"))
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        if !has_outbox {
            done.push(((*service).to_owned(), None));
            continue;
        }
        let mut transaction = connection.begin().await.map_err(|error| error.to_string())?;
        sqlx::query(&format!("SET LOCAL search_path TO {service}"))
            .execute(&mut *transaction)
            .await
            .map_err(|error| error.to_string())?;
        let republished =
            republish_since(&mut transaction, since).await.map_err(|error| format!("{service}: {error}"))?;
        transaction.commit().await.map_err(|error| error.to_string())?;
        done.push(((*service).to_owned(), Some(republished)));
    }
    Ok(done)
}
