//! What lottery keeps of other services' data, from their events: the subject directory (registry),
//! every subject's grade under every scheme, internal ones included (industry risk classes exist to
//! plan inspections, seed 001 四), and the lists subjects stand on (sanctions). A draw reads only
//! these tables.

use sqlx::PgConnection;
use xinyong_platform::bus::outbox::decode;
use xinyong_platform::bus::{EventHandler, HandlerError};
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityRegistered, EntityStatusChanged, EntityUpdated, Envelope, GradeChanged, GradesChanged,
    ListingChanged,
};

pub const GROUP: &str = "lottery";
pub const PRODUCERS: &[&str] = &["registry", "grading", "sanctions"];

pub struct Projection;

async fn register(connection: &mut PgConnection, entities: &[EntityRegistered]) -> Result<(), sqlx::Error> {
    let codes: Vec<&str> = entities.iter().map(|entity| entity.credit_code.as_str()).collect();
    let kinds: Vec<i16> = entities.iter().map(|entity| entity.kind as i16).collect();
    let regions: Vec<&str> = entities.iter().map(|entity| entity.region_code.as_str()).collect();
    let industries: Vec<&str> = entities.iter().map(|entity| entity.industry_code.as_str()).collect();
    // An entity registered with no status was operating.
    let statuses: Vec<i16> = entities.iter().map(|entity| (entity.status as i16).max(1)).collect();
    // A subject named twice in one batch would make the upsert touch its row twice, an error that
    // would stop the consumer on this event for good: the last mention wins.
    sqlx::query(
        "INSERT INTO subjects (credit_code, kind, region_code, industry_code, status)
         SELECT DISTINCT ON (code) code, kind, region, industry, status
         FROM unnest($1::text[], $2::int2[], $3::text[], $4::text[], $5::int2[])
             WITH ORDINALITY AS e (code, kind, region, industry, status, n)
         ORDER BY code, n DESC
         ON CONFLICT (credit_code) DO UPDATE SET kind = excluded.kind, region_code = excluded.region_code,
             industry_code = excluded.industry_code, status = excluded.status",
    )
    .bind(codes)
    .bind(kinds)
    .bind(regions)
    .bind(industries)
    .bind(statuses)
    .execute(connection)
    .await
    .map(drop)
}

async fn grades(connection: &mut PgConnection, grades: &[GradeChanged]) -> Result<(), sqlx::Error> {
    let codes: Vec<&str> = grades.iter().map(|grade| grade.credit_code.as_str()).collect();
    let schemes: Vec<&str> = grades.iter().map(|grade| grade.scheme.as_str()).collect();
    let values: Vec<i16> = grades.iter().map(|grade| grade.new_grade as i16).collect();
    // As for subjects: a subject and scheme named twice in a batch, the last word wins.
    sqlx::query(
        "INSERT INTO subject_grades (credit_code, scheme, grade)
         SELECT DISTINCT ON (scheme, code) code, scheme, grade
         FROM unnest($1::text[], $2::text[], $3::int2[]) WITH ORDINALITY AS g (code, scheme, grade, n)
         ORDER BY scheme, code, n DESC
         ON CONFLICT (scheme, credit_code) DO UPDATE SET grade = excluded.grade",
    )
    .bind(codes)
    .bind(schemes)
    .bind(values)
    .execute(connection)
    .await
    .map(drop)
}

impl EventHandler for Projection {
    async fn handle(&self, connection: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if let Some(event) = decode::<EntityRegistered>(envelope) {
            register(connection, &[event?]).await?;
        } else if let Some(event) = decode::<EntitiesRegistered>(envelope) {
            register(connection, &event?.entities).await?;
        } else if let Some(event) = decode::<EntityUpdated>(envelope) {
            let event = event?;
            sqlx::query(
                "INSERT INTO subjects (credit_code, kind, region_code, industry_code) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (credit_code) DO UPDATE SET kind = excluded.kind, region_code = excluded.region_code,
                     industry_code = excluded.industry_code",
            )
            .bind(&event.credit_code)
            .bind(event.kind as i16)
            .bind(&event.region_code)
            .bind(&event.industry_code)
            .execute(&mut *connection)
            .await?;
        } else if let Some(event) = decode::<EntityStatusChanged>(envelope) {
            let event = event?;
            sqlx::query(
                "INSERT INTO subjects (credit_code, status) VALUES ($1, $2)
                 ON CONFLICT (credit_code) DO UPDATE SET status = excluded.status",
            )
            .bind(&event.credit_code)
            .bind(event.new_status as i16)
            .execute(&mut *connection)
            .await?;
        } else if let Some(event) = decode::<GradeChanged>(envelope) {
            grades(connection, &[event?]).await?;
        } else if let Some(event) = decode::<GradesChanged>(envelope) {
            grades(connection, &event?.grades).await?;
        } else if let Some(event) = decode::<ListingChanged>(envelope) {
            // Kept by record: a listing announced again is still one, and an ended one stays ended
            // whatever arrives after it. An event without its record (sent before sanctions named
            // it) is left: sanctions announces every standing listing again after that upgrade.
            let event = event?;
            if event.record_id.is_empty() {
                tracing::debug!("a listing change without its record is passed over");
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO listings (record_id, credit_code, list, ended) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (record_id) DO UPDATE SET ended = listings.ended OR excluded.ended",
            )
            .bind(&event.record_id)
            .bind(&event.credit_code)
            .bind(event.list as i16)
            .bind(!event.listed)
            .execute(&mut *connection)
            .await?;
        }
        Ok(())
    }
}
