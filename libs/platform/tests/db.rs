//! The savepoint attempt that bulk paths take before COPYing rows believed new.

use sqlx::Executor;
use xinyong_platform::db::{begin_attempt, settle_attempt};
use xinyong_platform::testing::TestDatabase;

#[tokio::test]
async fn a_unique_violation_rolls_back_to_the_savepoint_and_the_transaction_goes_on() {
    let database = TestDatabase::new().await;
    let pool = database.pool_of("registry").await;
    pool.execute("CREATE TABLE attempt (code TEXT PRIMARY KEY)").await.unwrap();
    pool.execute("INSERT INTO attempt VALUES ('taken')").await.unwrap();

    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO attempt VALUES ('before')").execute(&mut *transaction).await.unwrap();
    begin_attempt(&mut transaction).await.unwrap();
    let clash =
        sqlx::query("INSERT INTO attempt VALUES ('new'), ('taken')").execute(&mut *transaction).await.map(|_| ());
    assert!(!settle_attempt(&mut transaction, clash).await.unwrap(), "the unique index refused the attempt");
    begin_attempt(&mut transaction).await.unwrap();
    let fine = sqlx::query("INSERT INTO attempt VALUES ('after')").execute(&mut *transaction).await.map(|_| ());
    assert!(settle_attempt(&mut transaction, fine).await.unwrap());
    transaction.commit().await.unwrap();

    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM attempt ORDER BY code").fetch_all(&pool).await.unwrap();
    assert_eq!(codes, ["after", "before", "taken"], "work before the attempt stays; the refused attempt left nothing");

    let mut transaction = pool.begin().await.unwrap();
    begin_attempt(&mut transaction).await.unwrap();
    let other = sqlx::query("INSERT INTO missing_table VALUES (1)").execute(&mut *transaction).await.map(|_| ());
    assert!(settle_attempt(&mut transaction, other).await.is_err(), "other errors are not swallowed");
}
