//! The listing's keyset page is planned once per platform-mode connection, on real Postgres.
//! Its `LIMIT $n` made Postgres cost the generic plan as if a tenth of the table came back, so
//! every execution of the prepared statement built a custom plan: platform-mode sessions force
//! the generic one (`tenantry_db::platform_url`).

#![allow(clippy::unwrap_used, reason = "tests")]

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use tenantry_db::models::organization::{ListFilter, list_page};
use tenantry_testing::TestDb;

#[derive(diesel::QueryableByName)]
struct Plans {
    #[diesel(sql_type = BigInt)]
    generic: i64,
    #[diesel(sql_type = BigInt)]
    custom: i64,
}

/// The generic and custom plans `conn` (its own session) has built for its prepared statements
/// whose text starts with `prefix`.
async fn plans(conn: &mut AsyncPgConnection, prefix: &str) -> Plans {
    diesel::sql_query(
        "SELECT coalesce(sum(generic_plans), 0)::bigint AS generic, \
         coalesce(sum(custom_plans), 0)::bigint AS custom \
         FROM pg_prepared_statements WHERE starts_with(statement, $1)",
    )
    .bind::<Text, _>(prefix)
    .get_result::<Plans>(conn)
    .await
    .unwrap()
}

async fn seed(db: &TestDb, n: usize) {
    let mut conn = db.admin_conn().await;
    diesel::sql_query(format!(
        "INSERT INTO organizations (name, slug, email) \
         SELECT 'Plan ' || i, 'plan-' || i, 'owner' || i || '@plan.test' \
         FROM generate_series(1, {n}) AS i"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE organizations")
        .execute(&mut conn)
        .await
        .unwrap();
}

const PAGE: &str = "SELECT \"organizations\".\"id\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_platform_mode_session_plans_the_listing_page_once() {
    let db = TestDb::new().await;
    seed(&db, 2_000).await;
    let filter = ListFilter {
        status: None,
        tier: None,
        active_only: true,
        query: None,
    };

    let mut platform = AsyncPgConnection::establish(&tenantry_db::platform_url(&db.app_url))
        .await
        .unwrap();
    let mut after = None;
    for _ in 0..10 {
        let rows = list_page(&mut platform, &filter, after, 51).await.unwrap();
        assert_eq!(rows.len(), 51, "every page is full");
        let last = &rows[49];
        after = Some((last.created_at, last.id));
    }
    let p = plans(&mut platform, PAGE).await;
    assert_eq!(p.custom, 0, "no custom plan on a platform-mode session");
    assert!(p.generic >= 9, "one generic plan, reused: {}", p.generic);

    // The same statements on a session without the option: Postgres builds a custom plan on
    // every execution (what every ListTenants call paid before), so the check above is the
    // option's doing.
    let mut plain = AsyncPgConnection::establish(&db.admin_url).await.unwrap();
    let mut after = None;
    for _ in 0..10 {
        let rows = list_page(&mut plain, &filter, after, 51).await.unwrap();
        assert_eq!(rows.len(), 51);
        let last = &rows[49];
        after = Some((last.created_at, last.id));
    }
    let p = plans(&mut plain, PAGE).await;
    assert!(
        p.custom >= 10,
        "custom plans without the option: {}",
        p.custom
    );
}
