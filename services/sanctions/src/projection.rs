//! What sanctions learns from grading: every subject's grade under every scheme, with the records
//! under dispute. Written in the consumer's transaction; the read model is refreshed after commit.

use sqlx::PgConnection;
use xinyong_domain::calendar::parse_day;
use xinyong_platform::bus::Event;
use xinyong_platform::bus::consumer::{EventHandler, HandlerError};
use xinyong_platform::bus::outbox::decode;
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityRegistered, EntityUpdated, Envelope, GradeChanged, GradesChanged, RecordCorrected,
    RecordIngested, RecordRepaired, RecordWithdrawn, RecordsIngested,
};

use std::sync::Arc;

use xinyong_domain::calendar::{Calendar, today};

use crate::api::Catalogue;
use crate::listings;
use crate::notices;
use crate::state::SubjectState;
use crate::tasks::{self, Registration};

pub const PRODUCERS: &[&str] = &["grading", "registry", "ingestion", "objections"];
pub const GROUP: &str = "sanctions";

pub struct Projection {
    state: SubjectState,
    catalogue: Catalogue,
    calendar: Arc<Calendar>,
    /// Working days a department has to execute a pushed sanction (seed 002 art. 9: 15).
    execute_within_working_days: u32,
}

impl Projection {
    pub fn new(state: SubjectState, catalogue: Catalogue, execute_within_working_days: u32) -> Projection {
        Projection { state, catalogue, calendar: Arc::new(Calendar::official()), execute_within_working_days }
    }

    async fn apply(&self, connection: &mut PgConnection, grades: &[GradeChanged]) -> Result<(), sqlx::Error> {
        store(connection, grades).await?;
        let mut codes: Vec<String> = grades.iter().map(|grade| grade.credit_code.clone()).collect();
        codes.sort_unstable();
        codes.dedup();
        let due_on = self.due_on();
        tasks::reconcile(connection, &codes, &self.catalogue.current(), due_on).await
    }
}

async fn store(connection: &mut PgConnection, grades: &[GradeChanged]) -> Result<(), sqlx::Error> {
    for grade in grades {
        let mut disputed: Vec<&str> =
            grade.reasons.iter().flat_map(|reason| reason.disputed_record_ids.iter().map(String::as_str)).collect();
        disputed.sort_unstable();
        disputed.dedup();
        sqlx::query(
            "INSERT INTO subject_grades (credit_code, scheme, grade, rule_set_version, internal, disputed_record_ids)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (credit_code, scheme) DO UPDATE SET grade = excluded.grade,
                 rule_set_version = excluded.rule_set_version, internal = excluded.internal,
                 disputed_record_ids = excluded.disputed_record_ids, updated_at = now()",
        )
        .bind(&grade.credit_code)
        .bind(&grade.scheme)
        .bind(grade.new_grade as i16)
        .bind(grade.rule_set_version)
        .bind(grade.internal)
        .bind(disputed)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

impl Projection {
    fn due_on(&self) -> chrono::NaiveDate {
        self.calendar.add_working_days(today(), self.execute_within_working_days)
    }

    /// Serious-dishonesty list records ask for a notice before the listing; abnormal-operation
    /// and judgment-debtor records list the subject at once (their authority decided and notified).
    async fn records(&self, connection: &mut PgConnection, records: &[RecordIngested]) -> Result<(), sqlx::Error> {
        let catalogue = self.catalogue.current();
        let mut listed = Vec::new();
        for record in records {
            let removed = record.facts.as_ref().and_then(|facts| parse_day(&facts.removed_on));
            if removed.is_some_and(|day| day <= today()) {
                continue;
            }
            if let Some(list) = notices::direct_list(&record.category) {
                let since = parse_day(&record.decided_on).unwrap_or_else(today);
                let reason =
                    format!("{}于{}作出列入决定（记录 {}）", record.department_id, record.decided_on, record.record_id);
                let (code, record_id, department) = (&record.credit_code, &record.record_id, &record.department_id);
                if notices::take_effect(connection, code, record_id, list, since, department, &reason).await? {
                    listed.push(record.credit_code.clone());
                }
                continue;
            }
            if record.category != notices::LIST_CATEGORY {
                continue;
            }
            listings::transferred(connection, &record.credit_code, &record.record_id).await?;
            notices::list_record(
                connection,
                &record.credit_code,
                &record.record_id,
                &record.department_id,
                &record.decided_on,
                &catalogue,
                self.due_on(),
            )
            .await?;
        }
        if !listed.is_empty() {
            tasks::reconcile(connection, &listed, &catalogue, self.due_on()).await?;
        }
        Ok(())
    }

    async fn end_listing(
        &self,
        connection: &mut PgConnection,
        record_id: &str,
        on: chrono::NaiveDate,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        if let Some(code) = notices::end(connection, record_id, on, reason).await? {
            tasks::reconcile(connection, &[code], &self.catalogue.current(), self.due_on()).await?;
        }
        Ok(())
    }

    async fn registrations(
        &self,
        connection: &mut PgConnection,
        registrations: Vec<(String, String)>,
    ) -> Result<(), sqlx::Error> {
        let due_on = self.due_on();
        tasks::push_registrations(connection, &registrations, Registration::New, due_on).await
    }
}

impl EventHandler for Projection {
    async fn handle(&self, connection: &mut PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if let Some(event) = decode::<GradeChanged>(envelope) {
            self.apply(connection, &[event?]).await?;
        } else if let Some(event) = decode::<GradesChanged>(envelope) {
            self.apply(connection, &event?.grades).await?;
        } else if let Some(event) = decode::<RecordIngested>(envelope) {
            self.records(connection, &[event?]).await?;
        } else if let Some(event) = decode::<RecordsIngested>(envelope) {
            self.records(connection, &event?.records).await?;
        } else if let Some(event) = decode::<RecordCorrected>(envelope) {
            let event = event?;
            let removed = event.facts.as_ref().and_then(|facts| parse_day(&facts.removed_on));
            if let Some(removed) = removed {
                self.end_listing(connection, &event.record_id, removed, "移出名单").await?;
            }
        } else if let Some(event) = decode::<RecordWithdrawn>(envelope) {
            let event = event?;
            self.end_listing(connection, &event.record_id, today(), "认定记录已撤销").await?;
        } else if let Some(event) = decode::<RecordRepaired>(envelope) {
            let event = event?;
            self.end_listing(connection, &event.record_id, today(), "信用修复").await?;
        } else if let Some(event) = decode::<EntityRegistered>(envelope) {
            let event = event?;
            self.registrations(connection, vec![(event.credit_code, event.business_scope)]).await?;
        } else if let Some(event) = decode::<EntitiesRegistered>(envelope) {
            let entities = event?.entities.into_iter().map(|entity| (entity.credit_code, entity.business_scope));
            self.registrations(connection, entities.collect()).await?;
        } else if let Some(event) = decode::<EntityUpdated>(envelope) {
            // A change registration that widens the business scope is told to the departments
            // approving what it adds, as a registration is (双告知).
            let event = event?;
            if event.changed_fields.iter().any(|field| field == "business_scope") {
                let changed = [(event.credit_code, event.business_scope)];
                tasks::push_registrations(connection, &changed, Registration::ScopeChanged, self.due_on()).await?;
            }
        }
        Ok(())
    }

    async fn committed(&self, envelope: &Envelope) {
        let records = if let Some(Ok(event)) = decode::<RecordIngested>(envelope) {
            vec![event]
        } else if let Some(Ok(event)) = decode::<RecordsIngested>(envelope) {
            event.records
        } else {
            Vec::new()
        };
        // Records of lists other authorities keep took effect in the transaction just committed.
        let listed: Vec<String> = records
            .into_iter()
            .filter(|record| notices::direct_list(&record.category).is_some())
            .map(|record| record.credit_code)
            .collect();
        if !listed.is_empty() {
            self.state.forget(&listed).await;
            return;
        }
        let ends_listing = [RecordCorrected::TYPE, RecordWithdrawn::TYPE, RecordRepaired::TYPE]
            .contains(&envelope.event_type.as_str());
        if ends_listing && !envelope.credit_code.is_empty() {
            if let Err(error) = self.state.refresh(&envelope.credit_code).await {
                tracing::warn!(%error, "subject not refreshed after a listing ended; it expires by TTL");
            }
        } else if let Some(Ok(event)) = decode::<GradeChanged>(envelope) {
            if let Err(error) = self.state.refresh(&event.credit_code).await {
                tracing::warn!(%error, "subject not refreshed after a grade change; it expires by TTL");
            }
        } else if let Some(Ok(event)) = decode::<GradesChanged>(envelope) {
            let codes: Vec<String> = event.grades.into_iter().map(|grade| grade.credit_code).collect();
            self.state.forget(&codes).await;
        }
    }
}
