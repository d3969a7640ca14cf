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

/// Postgres reads every `numeric` the binary COPY writes as the decimal it was given, with its
/// number of places.
#[tokio::test]
async fn numbers_copied_in_binary_read_back_as_the_same_decimals() {
    use xinyong_platform::copy::{BinaryCopy, copy_in_binary};
    let database = TestDatabase::new().await;
    let pool = database.pool_of("registry").await;
    pool.execute("CREATE TABLE amounts (at INT PRIMARY KEY, amount NUMERIC)").await.unwrap();
    let decimals = [
        ("0", "0"),
        ("0.00", "0.00"),
        ("7", "7"),
        ("56500", "56500"),
        ("56500.00", "56500.00"),
        ("10000", "10000"),
        ("100000000.05", "100000000.05"),
        ("12345.6", "12345.6"),
        ("0.0005", "0.0005"),
        ("0.00000005", "0.00000005"),
        ("9999.9999", "9999.9999"),
        ("-1.5", "-1.5"),
        ("-0", "0"),
        ("000123.40", "123.40"),
        ("1234567890123456.99", "1234567890123456.99"),
    ];
    let mut data = BinaryCopy::new(256);
    for (at, (decimal, _)) in decimals.iter().enumerate() {
        data.row(2).int4(at as i32).numeric(decimal).unwrap();
    }
    let mut connection = pool.acquire().await.unwrap();
    copy_in_binary(&mut connection, "COPY amounts (at, amount) FROM STDIN WITH (FORMAT binary)", data.finish())
        .await
        .unwrap();
    let read: Vec<String> =
        sqlx::query_scalar("SELECT amount::text FROM amounts ORDER BY at").fetch_all(&pool).await.unwrap();
    let expected: Vec<&str> = decimals.iter().map(|(_, shown)| *shown).collect();
    assert_eq!(read, expected);

    for bad in ["", "1.", ".5", "1e5", "1,000", "--1", "12a", "-"] {
        assert!(BinaryCopy::new(8).numeric(bad).is_err(), "{bad:?} is not decimal text");
    }
}
