//! `SubmitRecords`: per-row answers, and nothing lost or doubled when a client breaks off.

use futures::StreamExt;
use xinyong_proto::ingestion::v1::{SubmitOutcome, SubmitRecordsRequest, SubmitRowResult};

use crate::support::{fine, spawn_app};

fn row(index: i64, record: xinyong_proto::ingestion::v1::RecordInput) -> SubmitRecordsRequest {
    SubmitRecordsRequest { row: index, record: Some(record) }
}

async fn submit(app: &mut crate::support::App, rows: Vec<SubmitRecordsRequest>) -> Vec<SubmitRowResult> {
    let mut answers = app.market.submit_records(tokio_stream::iter(rows)).await.unwrap().into_inner();
    let mut results = Vec::new();
    while let Some(answer) = answers.next().await {
        results.extend(answer.unwrap().results);
    }
    results.sort_by_key(|result| result.row);
    results
}

#[tokio::test]
async fn a_mixed_batch_answers_every_row_and_lands_the_good_ones() {
    let mut app = spawn_app().await;
    let mut rows: Vec<SubmitRecordsRequest> = (0..500).map(|i| row(i, fine(&format!("B{i}"), "2025-09-26"))).collect();
    let mut no_subject = fine("X1", "2025-09-26");
    no_subject.credit_code = "91310000631696382C".into();
    rows.push(row(500, no_subject));
    let mut bad_category = fine("X2", "2025-09-26");
    bad_category.category = "gossip".into();
    rows.push(row(501, bad_category));
    rows.push(row(502, fine("B7", "2025-09-26")));
    let mut conflicting = fine("B8", "2025-09-26");
    conflicting.text = "另一份内容".into();
    rows.push(row(503, conflicting));

    let results = submit(&mut app, rows).await;
    assert_eq!(results.len(), 504);
    let outcome = |index: usize| SubmitOutcome::try_from(results[index].outcome).unwrap();
    assert!(
        (0..500).filter(|index| ![7, 8].contains(index)).all(|index| outcome(index) == SubmitOutcome::Accepted),
        "the good rows land"
    );
    assert_eq!((outcome(500), results[500].violations[0].field.as_str()), (SubmitOutcome::Rejected, "credit_code"));
    assert!(results[500].violations[0].reason.contains("no subject"));
    assert_eq!((outcome(501), results[501].violations[0].field.as_str()), (SubmitOutcome::Rejected, "category"));
    // Batches commit in parallel, so of two rows with one source id either may land first; exactly
    // one does. The same row twice: one accepted, one duplicate, one record.
    let twice = [outcome(7), outcome(502)];
    assert!(twice.contains(&SubmitOutcome::Accepted) && twice.contains(&SubmitOutcome::Duplicate), "{twice:?}");
    assert_eq!(results[502].record_id, results[7].record_id);
    // Other content under the same source id: one accepted, the other refused pointing to CorrectRecord.
    let clash = [outcome(8), outcome(503)];
    assert!(clash.contains(&SubmitOutcome::Accepted) && clash.contains(&SubmitOutcome::Rejected), "{clash:?}");
    let refused = if clash[0] == SubmitOutcome::Rejected { &results[8] } else { &results[503] };
    assert_eq!(refused.violations[0].field, "source_record_id");
    assert!(refused.violations[0].reason.contains("CorrectRecord"));

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM records").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 500);
    // A penalty decided on Friday 2025-09-26 was due seven working days later, across National Day.
    let due: chrono::NaiveDate =
        sqlx::query_scalar("SELECT DISTINCT report_due_on FROM records").fetch_one(&app.pool).await.unwrap();
    assert_eq!(due.to_string(), "2025-10-13");
    // Batches are announced once each, every record in them.
    let announced: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = 'xinyong.events.v1.RecordsIngested'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let count: usize = announced
        .iter()
        .map(|bytes| {
            use prost::Message;
            let envelope = xinyong_proto::events::v1::Envelope::decode(bytes.as_slice()).unwrap();
            xinyong_proto::events::v1::RecordsIngested::decode(envelope.payload.as_slice()).unwrap().records.len()
        })
        .sum();
    assert_eq!(count, 500);
    // The admin port counts the rows by outcome, where the gRPC metrics saw one call.
    for (outcome, rows) in
        [("accepted", 500), ("duplicate", 1), ("conflict", 1), ("invalid", 1), ("unknown_subject", 1)]
    {
        assert_eq!(app.rows_counted(outcome).await, Some(rows), "{outcome}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_breaks_off_keeps_every_acknowledged_row_and_its_resend_doubles_nothing() {
    let mut app = spawn_app().await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<SubmitRecordsRequest>(16);
    let mut answers =
        app.market.submit_records(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let all: Vec<SubmitRecordsRequest> = (0..1000).map(|i| row(i, fine(&format!("D{i}"), "2025-10-09"))).collect();
    // Send the first 600, read answers until 300 rows are acknowledged, then vanish.
    for request in all.iter().take(600).cloned() {
        sender.send(request).await.unwrap();
    }
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 300 {
        let answer = answers.next().await.expect("answers come").unwrap();
        acknowledged.extend(
            answer.results.into_iter().filter(|r| r.outcome == SubmitOutcome::Accepted as i32).map(|r| r.record_id),
        );
    }
    drop(answers);
    drop(sender);

    // Every acknowledged row is stored.
    let ids: Vec<uuid::Uuid> = acknowledged.iter().map(|id| uuid::Uuid::parse_str(id).unwrap()).collect();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM records WHERE record_id = ANY($1)")
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored as usize, acknowledged.len());

    // The resend of everything: the stored rows come back as duplicates, nothing is stored twice.
    let results = submit(&mut app, all).await;
    let duplicates = results.iter().filter(|r| r.outcome == SubmitOutcome::Duplicate as i32).count();
    let accepted = results.iter().filter(|r| r.outcome == SubmitOutcome::Accepted as i32).count();
    assert_eq!(duplicates + accepted, 1000);
    assert!(duplicates >= acknowledged.len());
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM records").fetch_one(&app.pool).await.unwrap();
    assert_eq!(total, 1000);
    app.stop().await;
}
