//! Bulk import with per-row answers, and the directory stream.

use futures::StreamExt;
use xinyong_proto::common::v1::{EntityStatus, SubjectKind};
use xinyong_proto::registry::v1::{ImportEntitiesRequest, ImportOutcome, StreamDirectoryRequest};

use crate::support::{generated, lenovo, spawn_app};

async fn import(
    app: &mut crate::support::App,
    rows: Vec<ImportEntitiesRequest>,
) -> Vec<xinyong_proto::registry::v1::ImportRowResult> {
    let mut answers = app.clerk.import_entities(tokio_stream::iter(rows)).await.unwrap().into_inner();
    let mut results = Vec::new();
    while let Some(answer) = answers.next().await {
        results.extend(answer.unwrap().results);
    }
    results.sort_by_key(|result| result.row);
    results
}

/// Subjects announced by the outbox's `EntitiesRegistered` batch events.
async fn announced(app: &crate::support::App) -> usize {
    use prost::Message;
    let envelopes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = 'xinyong.events.v1.EntitiesRegistered'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    envelopes
        .iter()
        .map(|bytes| {
            let envelope = xinyong_proto::events::v1::Envelope::decode(bytes.as_slice()).unwrap();
            xinyong_proto::events::v1::EntitiesRegistered::decode(envelope.payload.as_slice()).unwrap().entities.len()
        })
        .sum()
}

#[tokio::test]
async fn an_import_answers_every_row_lands_the_good_ones_and_is_idempotent() {
    let mut app = spawn_app().await;
    let mut rows = Vec::new();
    for serial in 0..3000u32 {
        let kind = if serial % 3 == 0 { SubjectKind::IndividualBusiness } else { SubjectKind::Enterprise };
        let mut entity =
            generated(if serial % 2 == 0 { "110108" } else { "310115" }, serial, &format!("导入企业{serial}"), kind);
        if serial == 10 {
            entity.credit_code.replace_range(17..18, "0");
            entity.credit_code = entity.credit_code.replace("0", "O");
        }
        if serial == 11 {
            entity.established_on = String::new();
        }
        if serial == 12 {
            entity.status = EntityStatus::Deregistered as i32;
            entity.status_since = "2020-01-01".into();
        }
        rows.push(ImportEntitiesRequest { row: i64::from(serial), entity: Some(entity) });
    }
    let mut changed = generated("110108", 20, "改名企业", SubjectKind::Enterprise);
    changed.name = "另一个名字".into();
    rows.push(ImportEntitiesRequest { row: 3000, entity: Some(lenovo()) });
    rows.push(ImportEntitiesRequest { row: 3001, entity: Some(changed) });

    let results = import(&mut app, rows.clone()).await;
    assert_eq!(results.len(), 3002, "every row answered");
    let outcome = |row: usize| ImportOutcome::try_from(results[row].outcome).unwrap();
    assert_eq!(outcome(0), ImportOutcome::Created);
    assert_eq!(outcome(10), ImportOutcome::Rejected);
    assert_eq!(results[10].violations[0].field, "credit_code");
    assert_eq!(outcome(11), ImportOutcome::Rejected);
    assert_eq!(results[11].violations[0].field, "established_on");
    assert_eq!(outcome(12), ImportOutcome::Created, "imports keep a subject's historic status");
    assert_eq!(outcome(3000), ImportOutcome::Created);
    // The same code twice with other data: batches commit in parallel, so either row may land
    // first; exactly one does, and the other is refused naming the differing field.
    let pair = [outcome(20), outcome(3001)];
    assert!(pair.contains(&ImportOutcome::Created) && pair.contains(&ImportOutcome::Rejected), "{pair:?}");
    let refused = if pair[0] == ImportOutcome::Rejected { &results[20] } else { &results[3001] };
    assert_eq!(refused.violations[0].field, "name");

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM entities").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 2999, "3000 generated + Lenovo − 2 bad rows");
    assert_eq!(announced(&app).await, 2999, "every created subject is announced once");
    let status: i16 = sqlx::query_scalar("SELECT status FROM entities WHERE credit_code = $1")
        .bind(&generated("110108", 12, "", SubjectKind::IndividualBusiness).credit_code)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, EntityStatus::Deregistered as i16);

    // The same file again: nothing new.
    let again = import(&mut app, rows).await;
    let created = again.iter().filter(|result| result.outcome == ImportOutcome::Created as i32).count();
    let unchanged = again.iter().filter(|result| result.outcome == ImportOutcome::Unchanged as i32).count();
    assert_eq!((created, unchanged), (0, 2999));
    assert_eq!(announced(&app).await, 2999, "a repeated import announces nothing");
    app.stop().await;
}

#[tokio::test]
async fn the_directory_streams_a_filtered_population_in_code_order() {
    let mut app = spawn_app().await;
    let mut rows = Vec::new();
    for serial in 0..4000u32 {
        let kind = if serial % 4 == 0 { SubjectKind::FarmerCooperative } else { SubjectKind::Enterprise };
        let mut entity =
            generated(if serial % 2 == 0 { "110108" } else { "310115" }, serial, &format!("名录企业{serial}"), kind);
        if serial % 10 == 1 {
            entity.status = EntityStatus::Deregistered as i32;
        }
        rows.push(ImportEntitiesRequest { row: i64::from(serial), entity: Some(entity) });
    }
    let mut answers = app.clerk.import_entities(tokio_stream::iter(rows)).await.unwrap().into_inner();
    while answers.next().await.is_some() {}

    let mut stream = app
        .clerk
        .stream_directory(StreamDirectoryRequest {
            region_prefix: "3101".into(),
            active_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut codes = Vec::new();
    while let Some(entry) = stream.next().await {
        let entry = entry.unwrap();
        assert!(entry.region_code.starts_with("3101"));
        assert_eq!(entry.status, EntityStatus::Operating as i32);
        codes.push(entry.credit_code);
    }
    // Odd serials are in 310115; of those, serial % 10 == 1 are deregistered: 2000 − 400.
    assert_eq!(codes.len(), 1600);
    assert!(codes.windows(2).all(|pair| pair[0] < pair[1]), "ordered by code");

    let mut cooperatives = app
        .clerk
        .stream_directory(StreamDirectoryRequest {
            kinds: vec![SubjectKind::FarmerCooperative as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut count = 0;
    while let Some(entry) = cooperatives.next().await {
        assert_eq!(entry.unwrap().kind, SubjectKind::FarmerCooperative as i32);
        count += 1;
    }
    assert_eq!(count, 1000);
    app.stop().await;
}
