//! What grading learns from the bus: subjects from registry, record facts from ingestion, disputes
//! and repairs from objections. Each event updates the projection and regrades the subjects it
//! names, in the consumer's transaction; the new grades reach Redis once that has committed.

use std::collections::HashMap;
use std::sync::Mutex;
use xinyong_domain::calendar::parse_day;

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;
use xinyong_platform::bus::consumer::{EventHandler, HandlerError};
use xinyong_platform::bus::outbox::decode;
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityRegistered, EntityStatusChanged, EntityUpdated, Envelope, RecordCorrected,
    RecordDisputeChanged, RecordFacts, RecordIngested, RecordRepaired, RecordWithdrawn, RecordsIngested,
};

use crate::cache::GradeCache;
use crate::grades::{GradeRow, Grader};
use xinyong_platform::bus::Announce;

/// The producers whose streams grading reads.
pub const PRODUCERS: &[&str] = &["registry", "ingestion", "objections"];

/// The consumer group.
pub const GROUP: &str = "grading";

pub struct Projection {
    grader: Grader,
    cache: GradeCache,
    /// Grades changed by an event whose transaction has not committed yet, by event id.
    pending: Mutex<HashMap<String, Vec<GradeRow>>>,
    today: fn() -> NaiveDate,
}

impl Projection {
    pub fn new(grader: Grader, cache: GradeCache, today: fn() -> NaiveDate) -> Projection {
        Projection { grader, cache, pending: Mutex::new(HashMap::new()), today }
    }

    async fn apply(&self, connection: &mut PgConnection, envelope: &Envelope) -> Result<Vec<GradeRow>, HandlerError> {
        let cause = envelope.event_type.rsplit('.').next().unwrap_or_default();
        let (codes, announce) = if let Some(event) = decode::<EntityRegistered>(envelope) {
            let event = event?;
            register(connection, std::slice::from_ref(&event)).await?;
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<EntitiesRegistered>(envelope) {
            let event = event?;
            register(connection, &event.entities).await?;
            (event.entities.into_iter().map(|entity| entity.credit_code).collect(), Announce::OneBatch)
        } else if let Some(event) = decode::<EntityUpdated>(envelope) {
            // Kind, region and industry place a subject in the statistics; they never move its
            // grade, so nothing is regraded.
            let event = event?;
            sqlx::query("UPDATE subjects SET kind = $2, region_code = $3, industry_code = $4 WHERE credit_code = $1")
                .bind(&event.credit_code)
                .bind(event.kind as i16)
                .bind(&event.region_code)
                .bind(&event.industry_code)
                .execute(&mut *connection)
                .await?;
            return Ok(Vec::new());
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
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<RecordIngested>(envelope) {
            let event = event?;
            ingest(connection, std::slice::from_ref(&event)).await?;
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<RecordsIngested>(envelope) {
            let event = event?;
            ingest(connection, &event.records).await?;
            (event.records.into_iter().map(|record| record.credit_code).collect(), Announce::OneBatch)
        } else if let Some(event) = decode::<RecordCorrected>(envelope) {
            let event = event?;
            if let Some(facts) = &event.facts {
                correct(connection, &event.record_id, facts).await?;
            }
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<RecordWithdrawn>(envelope) {
            let event = event?;
            deactivate(connection, &event.record_id, Some(event.version)).await?;
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<RecordRepaired>(envelope) {
            let event = event?;
            deactivate(connection, &event.record_id, None).await?;
            (vec![event.credit_code], Announce::Each)
        } else if let Some(event) = decode::<RecordDisputeChanged>(envelope) {
            let event = event?;
            sqlx::query("UPDATE record_facts SET disputed = $2 WHERE record_id = $1")
                .bind(parse_id(&event.record_id)?)
                .bind(event.disputed)
                .execute(&mut *connection)
                .await?;
            (vec![event.credit_code], Announce::Each)
        } else {
            return Ok(Vec::new());
        };
        let regraded = self.grader.regrade(connection, &codes, (self.today)(), cause, announce, None).await?;
        Ok(regraded.changed)
    }
}

impl EventHandler for Projection {
    async fn handle(&self, connection: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        let changed = self.apply(connection, envelope).await?;
        if !changed.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(envelope.event_id.clone(), changed);
        }
        Ok(())
    }

    async fn committed(&self, envelope: &Envelope) {
        let changed = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&envelope.event_id);
        if let Some(changed) = changed {
            self.cache.put_all(&changed).await;
        }
    }
}

fn parse_id(record_id: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(record_id).map_err(|_| HandlerError::Other(format!("record id `{record_id}` is not a UUID")))
}

async fn register(connection: &mut PgConnection, entities: &[EntityRegistered]) -> Result<(), sqlx::Error> {
    let codes: Vec<&str> = entities.iter().map(|entity| entity.credit_code.as_str()).collect();
    let kinds: Vec<i16> = entities.iter().map(|entity| entity.kind as i16).collect();
    let regions: Vec<&str> = entities.iter().map(|entity| entity.region_code.as_str()).collect();
    let industries: Vec<&str> = entities.iter().map(|entity| entity.industry_code.as_str()).collect();
    // An event from before the status field existed says 0: operating.
    let statuses: Vec<i16> = entities.iter().map(|entity| (entity.status as i16).max(1)).collect();
    sqlx::query(
        "INSERT INTO subjects (credit_code, kind, region_code, industry_code, status, registered)
         SELECT *, true FROM UNNEST($1::text[], $2::int2[], $3::text[], $4::text[], $5::int2[])
         ON CONFLICT (credit_code) DO UPDATE SET kind = excluded.kind, region_code = excluded.region_code,
             industry_code = excluded.industry_code, registered = true,
             -- a row made by a record event (streams are read independently) takes the registered
             -- status; a registered subject's status only changes by EntityStatusChanged
             status = CASE WHEN subjects.registered THEN subjects.status ELSE excluded.status END",
    )
    .bind(codes)
    .bind(kinds)
    .bind(regions)
    .bind(industries)
    .bind(statuses)
    .execute(connection)
    .await?;
    Ok(())
}

async fn ingest(connection: &mut PgConnection, records: &[RecordIngested]) -> Result<(), HandlerError> {
    let mut ids = Vec::with_capacity(records.len());
    let mut codes = Vec::with_capacity(records.len());
    let mut departments = Vec::with_capacity(records.len());
    let mut categories = Vec::with_capacity(records.len());
    let mut natures = Vec::with_capacity(records.len());
    let mut kinds = Vec::with_capacity(records.len());
    let mut decided = Vec::with_capacity(records.len());
    let mut published = Vec::with_capacity(records.len());
    let mut until = Vec::with_capacity(records.len());
    let mut removed = Vec::with_capacity(records.len());
    let mut versions = Vec::with_capacity(records.len());
    for record in records {
        let facts = record.facts.clone().unwrap_or_else(|| RecordFacts {
            // An event without facts (an older producer) still says what it is.
            category: record.category.clone(),
            nature: record.nature,
            decided_on: record.decided_on.clone(),
            published: true,
            version: 1,
            ..RecordFacts::default()
        });
        let Some(decided_on) = parse_day(&facts.decided_on) else {
            return Err(HandlerError::Other(format!("record {}: decided_on `{}`", record.record_id, facts.decided_on)));
        };
        ids.push(parse_id(&record.record_id)?);
        codes.push(record.credit_code.as_str());
        departments.push(record.department_id.as_str());
        categories.push(facts.category.clone());
        natures.push(facts.nature as i16);
        kinds.push(facts.penalty_kind as i16);
        decided.push(decided_on);
        published.push(facts.published);
        until.push(parse_day(&facts.disclosure_until));
        removed.push(parse_day(&facts.removed_on));
        versions.push(facts.version.max(1));
    }
    // Subjects a record names exist (ingestion checked); their registration may not have been
    // read yet, so make sure there is a row to lock and grade.
    sqlx::query("INSERT INTO subjects (credit_code) SELECT DISTINCT UNNEST($1::text[]) ON CONFLICT DO NOTHING")
        .bind(&codes)
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO record_facts (record_id, credit_code, department_id, category, nature, penalty_kind, decided_on,
             published, disclosure_until, removed_on, version)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::int2[], $7::date[],
             $8::bool[], $9::date[], $10::date[], $11::int4[])
         ON CONFLICT (record_id) DO NOTHING",
    )
    .bind(ids)
    .bind(codes)
    .bind(departments)
    .bind(categories)
    .bind(natures)
    .bind(kinds)
    .bind(decided)
    .bind(published)
    .bind(until)
    .bind(removed)
    .bind(versions)
    .execute(connection)
    .await?;
    Ok(())
}

async fn correct(connection: &mut PgConnection, record_id: &str, facts: &RecordFacts) -> Result<(), HandlerError> {
    let decided_on = parse_day(&facts.decided_on)
        .ok_or_else(|| HandlerError::Other(format!("record {record_id}: decided_on `{}`", facts.decided_on)))?;
    sqlx::query(
        "UPDATE record_facts SET category = $2, nature = $3, penalty_kind = $4, decided_on = $5, published = $6,
             disclosure_until = $7, removed_on = $8, version = $9
         WHERE record_id = $1 AND version < $9",
    )
    .bind(parse_id(record_id)?)
    .bind(&facts.category)
    .bind(facts.nature as i16)
    .bind(facts.penalty_kind as i16)
    .bind(decided_on)
    .bind(facts.published)
    .bind(parse_day(&facts.disclosure_until))
    .bind(parse_day(&facts.removed_on))
    .bind(facts.version)
    .execute(connection)
    .await?;
    Ok(())
}

/// Withdrawn (with its version) or repaired: kept, never counted again.
async fn deactivate(connection: &mut PgConnection, record_id: &str, version: Option<i32>) -> Result<(), HandlerError> {
    sqlx::query(
        "UPDATE record_facts SET active = false, version = greatest(version, coalesce($2, version))
         WHERE record_id = $1",
    )
    .bind(parse_id(record_id)?)
    .bind(version)
    .execute(connection)
    .await?;
    Ok(())
}
