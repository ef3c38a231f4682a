//! The listings' keyset pages are planned once per pooled connection, on real Postgres. Their
//! `LIMIT $n` made Postgres cost the generic plan as if a tenth of the table came back, so every
//! execution of the prepared statement built a custom plan: every pooled session forces the
//! generic one (`tenantry_db::session_url`, `tenantry_db::platform_url`).

#![allow(clippy::unwrap_used, reason = "tests")]

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use tenantry_db::models::member::{self, MemberFilter};
use tenantry_db::models::organization::{ListFilter, list_page};
use tenantry_db::{Scope, set_scope};
use tenantry_testing::TestDb;
use uuid::Uuid;

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

/// Runs one statement of the test's setup.
async fn run(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap();
}

async fn seed(db: &TestDb, n: usize) {
    let mut conn = db.admin_conn().await;
    run(
        &mut conn,
        &format!(
            "INSERT INTO organizations (name, slug, email) \
             SELECT 'Plan ' || i, 'plan-' || i, 'owner' || i || '@plan.test' \
             FROM generate_series(1, {n}) AS i"
        ),
    )
    .await;
    run(&mut conn, "ANALYZE organizations").await;
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

const MEMBERS_PAGE: &str = "SELECT \"users\".\"id\"";

/// Ten pages of 20 members of `org` on `conn`, each in a tenant-scoped transaction as the
/// services run them; returns the session's plans of the page statement.
async fn ten_member_pages(conn: &mut AsyncPgConnection, org: Uuid) -> Plans {
    let mut after = None;
    for _ in 0..10 {
        let rows = conn
            .transaction(async |c| {
                set_scope(c, Scope::Tenant(org)).await?;
                member::list_page(c, org, &MemberFilter::default(), after, 21).await
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 21, "every page is full");
        assert!(
            rows.iter().all(|m| m.organization_id == org),
            "one tenant's rows"
        );
        let last = &rows[19];
        after = Some((last.created_at, last.id));
    }
    plans(conn, MEMBERS_PAGE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_tenant_scoped_session_plans_the_members_page_once() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    run(
        &mut admin,
        "INSERT INTO organizations (name, slug, email) VALUES \
         ('Plan A', 'plan-a', 'owner@plan-a.test'), ('Plan B', 'plan-b', 'owner@plan-b.test')",
    )
    .await;
    // 300 members in one tenant, 20,000 in the other: a big tenant makes a page's generic plan
    // look dear (a tenth of the average tenant), so without the option every execution is
    // planned afresh, as with the tenant list.
    run(
        &mut admin,
        "INSERT INTO users (organization_id, email, username) \
         SELECT o.id, 'u' || i || '@' || o.slug || '.test', 'user-' || o.slug || '-' || i \
         FROM organizations o, \
              generate_series(1, CASE o.slug WHEN 'plan-a' THEN 300 ELSE 20000 END) AS i",
    )
    .await;
    run(&mut admin, "ANALYZE users").await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let org = diesel::sql_query("SELECT id FROM organizations WHERE slug = 'plan-a'")
        .get_result::<Id>(&mut admin)
        .await
        .unwrap()
        .id;

    // A connection of the services' pool (every session opened with the option).
    let pool = tenantry_db::connect(&tenantry_db::PoolConfig::new(db.app_url.clone()))
        .await
        .unwrap();
    let mut pooled = pool.get().await.unwrap();
    let p = ten_member_pages(&mut pooled, org).await;
    assert_eq!(p.custom, 0, "no custom plan on a pooled session");
    assert!(p.generic >= 9, "one generic plan, reused: {}", p.generic);

    // The same pages on a session without it: a custom plan on every execution, as every
    // ListMembers call paid before.
    let mut plain = AsyncPgConnection::establish(&db.app_url).await.unwrap();
    let p = ten_member_pages(&mut plain, org).await;
    assert!(
        p.custom >= 10,
        "custom plans without the option: {}",
        p.custom
    );
}
