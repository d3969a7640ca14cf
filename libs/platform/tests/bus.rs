//! The event bus over real Postgres and Redis: a failed handler is retried, and handled once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use xinyong_platform::bus::{self, Consumer, EventHandler, HandlerError, Relay};
use xinyong_platform::config::EventSettings;
use xinyong_platform::db::PLATFORM_MIGRATOR;
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;
use xinyong_platform::testing::{TestDatabase, redis_url};
use xinyong_proto::events::v1::{EntityStatusChanged, Envelope};

/// Fails the first delivery, then counts.
struct FailsOnce {
    calls: Arc<AtomicUsize>,
}

impl EventHandler for FailsOnce {
    async fn handle(&self, _: &mut sqlx::PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if bus::outbox::decode::<EntityStatusChanged>(envelope).is_none() {
            return Ok(());
        }
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(HandlerError::Other("a transient failure".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_handler_gets_the_event_again_without_a_restart() {
    let database = TestDatabase::new().await;
    let producer = database.pool_of("registry").await;
    let consumer_pool = database.pool_of("grading").await;
    PLATFORM_MIGRATOR.run(&producer).await.unwrap();
    PLATFORM_MIGRATOR.run(&consumer_pool).await.unwrap();
    let redis_settings = database.settings("registry", &redis_url()).redis;
    let redis = Redis::connect_and_wait(&redis_settings, Duration::from_secs(5)).await.unwrap();

    let mut transaction = producer.begin().await.unwrap();
    let event = EntityStatusChanged { credit_code: "91110000600037341L".into(), ..Default::default() };
    let event_id = bus::enqueue(&mut transaction, "registry", &event).await.unwrap();
    transaction.commit().await.unwrap();
    let relay =
        Relay::new(producer.clone(), redis.clone(), "registry", EventSettings::default(), Metrics::new("registry"));
    assert_eq!(relay.publish_batch().await.unwrap(), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let mut consumer = Consumer::new(
        consumer_pool.clone(),
        redis,
        "grading",
        &["registry"],
        FailsOnce { calls: calls.clone() },
        Metrics::new("grading"),
    );
    consumer.claim_idle = Duration::from_millis(200);
    consumer.block = Duration::from_millis(50);
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let task = tokio::spawn(consumer.run(async move { stopped.notified().await }));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let handled: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&consumer_pool)
            .await
            .unwrap();
        if handled == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the failed event was never retried");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "failed once, then handled once");
    stop.notify_one();
    task.await.unwrap();
}

/// Fails until told to succeed.
struct FailsUntil {
    succeed: Arc<std::sync::atomic::AtomicBool>,
    failed: Arc<AtomicUsize>,
}

impl EventHandler for FailsUntil {
    async fn handle(&self, _: &mut sqlx::PgConnection, _: &Envelope) -> Result<(), HandlerError> {
        if self.succeed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
        Err(HandlerError::Other("not yet".into()))
    }
}

/// The value of the consumer-lag gauge for `stream` in `metrics`, once it is `expected`.
async fn lag_becomes(metrics: &Metrics, stream: &str, expected: u64) {
    let line = format!(r#"xinyong_events_consumer_lag{{component="grading",stream="{stream}"}} {expected}"#);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !metrics.encode().lines().any(|sample| sample == line) {
        assert!(tokio::time::Instant::now() < deadline, "never saw {line} in\n{}", metrics.encode());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_consumer_lag_counts_events_not_handled_until_they_are() {
    let database = TestDatabase::new().await;
    let (producer, redis) = registry_outbox(&database).await;
    let consumer_pool = database.pool_of("grading").await;
    PLATFORM_MIGRATOR.run(&consumer_pool).await.unwrap();
    let mut transaction = producer.begin().await.unwrap();
    for code in ["91110000600037341L", "91110000600037342L", "91110000600037343L"] {
        let event = EntityStatusChanged { credit_code: code.into(), ..Default::default() };
        bus::enqueue(&mut transaction, "registry", &event).await.unwrap();
    }
    transaction.commit().await.unwrap();
    let relay =
        Relay::new(producer.clone(), redis.clone(), "registry", EventSettings::default(), Metrics::new("registry"));
    assert_eq!(relay.publish_batch().await.unwrap(), 3);

    let succeed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let metrics = Metrics::new("grading");
    let stream = redis.stream_key("registry");
    let mut consumer = Consumer::new(
        consumer_pool,
        redis,
        "grading",
        &["registry"],
        FailsUntil { succeed: succeed.clone(), failed: failed.clone() },
        metrics.clone(),
    );
    consumer.claim_idle = Duration::from_millis(200);
    consumer.block = Duration::from_millis(50);
    consumer.lag_every = Duration::from_millis(50);
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let task = tokio::spawn(consumer.run(async move { stopped.notified().await }));

    // Not read yet, then read and failed (pending): not handled either way. The gauge is read
    // again after all three failed, so it counts pending entries, not only unread ones.
    lag_becomes(&metrics, &stream, 3).await;
    while failed.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    lag_becomes(&metrics, &stream, 3).await;
    succeed.store(true, Ordering::SeqCst);
    lag_becomes(&metrics, &stream, 0).await;
    stop.notify_one();
    task.await.unwrap();
}

/// The registry's schema with the platform's tables, and its Redis.
async fn registry_outbox(database: &TestDatabase) -> (sqlx::PgPool, Redis) {
    let pool = database.pool_of("registry").await;
    PLATFORM_MIGRATOR.run(&pool).await.unwrap();
    let redis_settings = database.settings("registry", &redis_url()).redis;
    (pool, Redis::connect_and_wait(&redis_settings, Duration::from_secs(5)).await.unwrap())
}

/// A bulk batch's event is hundreds of kilobytes: Postgres stores it lz4-compressed (migration
/// 0003), and the relay still publishes it byte for byte.
#[tokio::test]
async fn a_batch_envelope_is_stored_compressed_and_published_unchanged() {
    use prost::Message;
    use xinyong_proto::events::v1::{EntitiesRegistered, EntityRegistered};

    let database = TestDatabase::new().await;
    let (pool, redis) = registry_outbox(&database).await;

    let batch = EntitiesRegistered {
        entities: (0..2_000)
            .map(|n| EntityRegistered {
                credit_code: format!("91110000{n:09}X"),
                name: format!("北京市第{n}号商贸有限公司"),
                ..Default::default()
            })
            .collect(),
    };
    let mut transaction = pool.begin().await.unwrap();
    let event_id = bus::enqueue(&mut transaction, "registry", &batch).await.unwrap();
    transaction.commit().await.unwrap();

    let (method, stored, length): (Option<String>, i32, i32) = sqlx::query_as(
        "SELECT pg_column_compression(envelope), pg_column_size(envelope), octet_length(envelope)
         FROM outbox WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(method.as_deref(), Some("lz4"));
    assert!(stored * 2 < length, "{length} bytes of envelope stored in {stored}");

    let relay = Relay::new(pool.clone(), redis.clone(), "registry", EventSettings::default(), Metrics::new("registry"));
    assert_eq!(relay.publish_batch().await.unwrap(), 1);
    let mut connection = redis.connection().await.unwrap();
    let published: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(redis.stream_key("registry"))
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(published.ids.len(), 1);
    let payload: Vec<u8> = published.ids[0].get("payload").unwrap();
    let envelope = Envelope::decode(payload.as_slice()).unwrap();
    assert_eq!(envelope.event_id, event_id.to_string());
    let decoded = bus::outbox::decode::<EntitiesRegistered>(&envelope).unwrap().unwrap();
    assert_eq!(decoded, batch, "the relay publishes the batch as it was enqueued");
}

/// Published rows go once older than the retention, in batches, oldest first; unpublished rows
/// stay however old, and a retention of 0 keeps everything.
#[tokio::test]
async fn the_relay_prunes_published_rows_past_their_retention_and_nothing_else() {
    let database = TestDatabase::new().await;
    let (pool, redis) = registry_outbox(&database).await;
    let insert = |published_hours_ago: Option<i32>, created_hours_ago: i32, count: i32| {
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, envelope, created_at, published_at)
             SELECT gen_random_uuid(), 'test', '\\x00', now() - make_interval(hours => $1),
                 now() - make_interval(hours => $2)
             FROM generate_series(1, $3)",
        )
        .bind(created_hours_ago)
        .bind(published_hours_ago)
        .bind(count)
        .execute(&pool)
    };
    // More than two statements' worth, so the batches follow one another.
    insert(Some(200), 201, 12_001).await.unwrap();
    insert(Some(1), 1, 1).await.unwrap();
    insert(None, 500, 1).await.unwrap();

    let metrics = Metrics::new("registry");
    let settings = EventSettings { outbox_retention_hours: 168, ..EventSettings::default() };
    let relay = Relay::new(pool.clone(), redis.clone(), "registry", settings, metrics.clone());
    assert_eq!(relay.prune().await.unwrap(), 12_001);
    assert_eq!(metrics.outbox_pruned.get(), 12_001);
    let left: Vec<(bool, f64)> = sqlx::query_as(
        "SELECT published_at IS NULL, extract(epoch FROM now() - created_at)::float8 / 3600 FROM outbox ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(left.len(), 2, "the recent published row and the old unpublished one stay: {left:?}");
    assert!(!left[0].0 && left[0].1 < 2.0);
    assert!(left[1].0 && left[1].1 > 499.0);
    assert_eq!(relay.prune().await.unwrap(), 0, "nothing more is due");

    insert(Some(10_000), 10_000, 1).await.unwrap();
    let keeping = EventSettings { outbox_retention_hours: 0, ..EventSettings::default() };
    let relay = Relay::new(pool.clone(), redis, "registry", keeping, Metrics::new("registry"));
    assert_eq!(relay.prune().await.unwrap(), 0);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 3, "a retention of 0 keeps every row");
}

/// With a stream retention, publishing also trims entries older than it; without one, only the
/// count bounds the stream.
#[tokio::test]
async fn publishing_trims_stream_entries_older_than_the_retention_when_one_is_set() {
    let database = TestDatabase::new().await;
    let (pool, redis) = registry_outbox(&database).await;
    let key = redis.stream_key("registry");
    let mut connection = redis.connection().await.unwrap();
    let entries = |mut connection: redis::aio::ConnectionManager| {
        let key = key.clone();
        async move {
            let reply: redis::streams::StreamRangeReply =
                redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut connection).await.unwrap();
            reply.ids.into_iter().map(|entry| entry.id).collect::<Vec<String>>()
        }
    };
    // An entry from 1970, as a week-old one would look to a retention of an hour.
    let _: String =
        redis::cmd("XADD").arg(&key).arg("1000-0").arg("id").arg("old").query_async(&mut connection).await.unwrap();
    let publish = |retention_hours: u64| {
        let (pool, redis) = (pool.clone(), redis.clone());
        async move {
            let mut transaction = pool.begin().await.unwrap();
            let event = EntityStatusChanged { credit_code: "91110000600037341L".into(), ..Default::default() };
            bus::enqueue(&mut transaction, "registry", &event).await.unwrap();
            transaction.commit().await.unwrap();
            let settings = EventSettings { stream_retention_hours: retention_hours, ..EventSettings::default() };
            let relay = Relay::new(pool, redis, "registry", settings, Metrics::new("registry"));
            assert_eq!(relay.publish_batch().await.unwrap(), 1);
        }
    };

    publish(0).await;
    let kept = entries(connection.clone()).await;
    assert_eq!(kept.len(), 2, "without a retention the old entry stays: {kept:?}");
    assert_eq!(kept[0], "1000-0");

    publish(1).await;
    let kept = entries(connection).await;
    assert_eq!(kept.len(), 2, "the old entry went, both new ones stayed: {kept:?}");
    assert!(kept.iter().all(|id| id != "1000-0"));
}

/// Counts the status events it handles.
struct Counting(Arc<AtomicUsize>);

impl EventHandler for Counting {
    async fn handle(&self, _: &mut sqlx::PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if bus::outbox::decode::<EntityStatusChanged>(envelope).is_some() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Redis loses its streams with events a consumer had not handled yet: publishing the outbox again
/// from before the loss brings those to the consumer once, and the ones it had handled not again.
#[tokio::test]
async fn events_lost_with_redis_are_published_again_from_the_outbox_and_handled_once() {
    let database = TestDatabase::new().await;
    let (producer, redis) = registry_outbox(&database).await;
    let consumer_pool = database.pool_of("grading").await;
    PLATFORM_MIGRATOR.run(&consumer_pool).await.unwrap();
    let relay =
        Relay::new(producer.clone(), redis.clone(), "registry", EventSettings::default(), Metrics::new("registry"));
    let enqueue = |codes: &'static [&'static str]| {
        let producer = producer.clone();
        async move {
            let mut transaction = producer.begin().await.unwrap();
            for code in codes {
                let event = EntityStatusChanged { credit_code: (*code).into(), ..Default::default() };
                bus::enqueue(&mut transaction, "registry", &event).await.unwrap();
            }
            transaction.commit().await.unwrap();
        }
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let start_consumer = || {
        let mut consumer = Consumer::new(
            consumer_pool.clone(),
            redis.clone(),
            "grading",
            &["registry"],
            Counting(handled.clone()),
            Metrics::new("grading"),
        );
        consumer.block = Duration::from_millis(50);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        (stop, tokio::spawn(consumer.run(async move { stopped.notified().await })))
    };
    let handled_becomes = |expected: usize| {
        let handled = handled.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while handled.load(Ordering::SeqCst) < expected {
                assert!(tokio::time::Instant::now() < deadline, "handled {handled:?}, expected {expected}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };

    // Three events handled.
    let before = chrono::Utc::now();
    enqueue(&["91110000600037341L", "91110000600037342L", "91110000600037343L"]).await;
    assert_eq!(relay.publish_batch().await.unwrap(), 3);
    let (stop, task) = start_consumer();
    handled_becomes(3).await;
    stop.notify_one();
    task.await.unwrap();
    // Two more published while the consumer is away; then Redis loses everything.
    enqueue(&["91110000600037344L", "91110000600037345L"]).await;
    assert_eq!(relay.publish_batch().await.unwrap(), 2);
    let mut connection = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let removed: i64 = redis::cmd("DEL").arg(redis.stream_key("registry")).query_async(&mut connection).await.unwrap();
    assert_eq!(removed, 1);

    // Published again from before the first: all five go out, in their order.
    let mut outbox = producer.acquire().await.unwrap();
    let republished = bus::outbox::republish_since(&mut outbox, before).await.unwrap();
    assert_eq!(republished.events, 5);
    assert!(republished.oldest_kept.is_some_and(|oldest| oldest >= before));
    assert_eq!(relay.publish_batch().await.unwrap(), 5);
    let (stop, task) = start_consumer();
    handled_becomes(5).await;
    // The two it never had are handled; the three it had are acknowledged, not handled again.
    let stream = redis.stream_key("registry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // XPENDING's summary: the count first, then the ids and consumers it spans.
        let pending: Vec<redis::Value> =
            redis::cmd("XPENDING").arg(&stream).arg("grading").query_async(&mut connection).await.unwrap();
        let pending = pending.first().and_then(|count| redis::from_redis_value_ref::<i64>(count).ok());
        let groups: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut connection).await.unwrap();
        let lag = groups[0].get("lag").and_then(|value| redis::from_redis_value_ref::<i64>(value).ok());
        if pending == Some(0) && lag == Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the republished events were never all acknowledged");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(handled.load(Ordering::SeqCst), 5, "each event handled once");
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events").fetch_one(&consumer_pool).await.unwrap();
    assert_eq!(recorded, 5);
    stop.notify_one();
    task.await.unwrap();
}

/// A consumer forgets the events it handled once they were written longer ago than the retention,
/// its own only, and nothing when the retention is off.
#[tokio::test]
async fn a_consumer_forgets_handled_events_past_the_retention_and_only_its_own() {
    let database = TestDatabase::new().await;
    let pool = database.pool_of("grading").await;
    PLATFORM_MIGRATOR.run(&pool).await.unwrap();
    let redis_settings = database.settings("grading", &redis_url()).redis;
    let redis = Redis::connect_and_wait(&redis_settings, Duration::from_secs(5)).await.unwrap();
    let written = |days_ago: i64| {
        let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
        let seconds = u64::try_from(at.timestamp()).unwrap();
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, seconds, 0))
    };
    let rows = [
        ("grading", written(40)),
        ("grading", written(31)),
        ("grading", written(29)),
        ("grading", written(0)),
        ("sanctions", written(40)),
    ];
    for (consumer, event_id) in rows {
        sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)")
            .bind(consumer)
            .bind(event_id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let metrics = Metrics::new("grading");
    let mut consumer =
        Consumer::new(pool.clone(), redis, "grading", &["registry"], Counting(Arc::default()), metrics.clone());
    consumer.processed_retention = None;
    assert_eq!(consumer.forget_processed().await.unwrap(), 0, "retention off");
    consumer.processed_retention =
        EventSettings { processed_retention_hours: 30 * 24, ..EventSettings::default() }.processed_retention();
    assert_eq!(consumer.forget_processed().await.unwrap(), 2);
    let kept: Vec<(String, uuid::Uuid)> =
        sqlx::query_as("SELECT consumer, event_id FROM processed_events ORDER BY consumer, event_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        [("grading".to_owned(), rows[2].1), ("grading".to_owned(), rows[3].1), ("sanctions".to_owned(), rows[4].1)]
    );
    assert_eq!(consumer.forget_processed().await.unwrap(), 0, "nothing more is past it");
    assert!(
        metrics.encode().lines().any(|line| line == r#"xinyong_events_processed_pruned_total{component="grading"} 2"#),
        "{}",
        metrics.encode()
    );
}
