//! Migrations that rewrite rows already stored, run over such rows.

use xinyong_platform::db;
use xinyong_platform::testing::TestDatabase;
use xinyong_registry::MIGRATOR;

/// Rows stored before the name index held cores get their core's length from the migration's
/// own rule, and that core is what the service's `name::core` finds.
#[tokio::test]
async fn names_stored_before_the_core_index_get_their_core_length() {
    let database = TestDatabase::new().await;
    let pool = database.pool_before("registry", &MIGRATOR, 20261123000001).await;
    let names = ["华为技术有限公司", "中国平安保险集团股份有限公司", "公司", "海淀餐饮店01", "联想北京"];
    for (index, name) in names.iter().enumerate() {
        sqlx::query(
            "INSERT INTO entities (credit_code, name, name_normalised, kind, region_code, industry_code, established_on,
                 status_since, registered_status, registered_status_since, registered_by)
             VALUES ($1, $2, $2, 1, '110108', 'C3911', '2020-01-01', '2020-01-01', 1, '2020-01-01', 'test')",
        )
        .bind(format!("code-{index}"))
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    }

    db::migrate(&pool, &MIGRATOR).await.unwrap();
    let stored: Vec<(String, i16)> =
        sqlx::query_as("SELECT name_normalised, name_core_length FROM entities ORDER BY credit_code")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(String, i16)> =
        names.iter().map(|name| (name.to_string(), xinyong_domain::name::core_length(name) as i16)).collect();
    assert_eq!(stored, expected);
    pool.close().await;
}
