//! Row-level security, as the services' role `tenantry_app`: a transaction sees nothing
//! without a scope, only its tenant's rows with `Scope::Tenant`, cannot write into or touch
//! another tenant, and the scope never outlives its transaction. The catalog checks that every
//! tenant table forces RLS and that `tenantry_app` can bypass none of it.

#![allow(clippy::unwrap_used, reason = "tests")]

use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tenantry_db::{Scope, set_scope};
use tenantry_testing::TestDb;
use uuid::Uuid;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(diesel::QueryableByName)]
struct UserRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    organization_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    first_name: Option<String>,
}

/// Two tenants with one user each.
struct Tenants {
    a: Uuid,
    b: Uuid,
    user_a: Uuid,
    user_b: Uuid,
}

/// Inserts organizations A and B and a user in each, in platform scope, as `tenantry_app`.
async fn seed(conn: &mut AsyncPgConnection) -> Tenants {
    let t = Tenants {
        a: Uuid::new_v4(),
        b: Uuid::new_v4(),
        user_a: Uuid::new_v4(),
        user_b: Uuid::new_v4(),
    };
    let (a, b, user_a, user_b) = (t.a, t.b, t.user_a, t.user_b);
    conn.transaction(async move |conn| {
        set_scope(conn, Scope::Platform).await?;
        for (id, slug) in [(a, "org-a"), (b, "org-b")] {
            diesel::sql_query("INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $2)")
                .bind::<diesel::sql_types::Uuid, _>(id)
                .bind::<Text, _>(slug)
                .execute(conn)
                .await?;
        }
        for (id, org, name) in [(user_a, a, "alice"), (user_b, b, "bob")] {
            diesel::sql_query(
                "INSERT INTO users (id, organization_id, email, username) \
                 VALUES ($1, $2, $3 || '@example.test', $3)",
            )
            .bind::<diesel::sql_types::Uuid, _>(id)
            .bind::<diesel::sql_types::Uuid, _>(org)
            .bind::<Text, _>(name)
            .execute(conn)
            .await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .unwrap();
    t
}

/// Runs `sql` (a `SELECT count(*) AS n ...` with optional `$1` uuid) in a transaction of its
/// own, with `scope` set first unless it is `None`.
async fn count_in(
    conn: &mut AsyncPgConnection,
    scope: Option<Scope>,
    sql: &'static str,
    param: Option<Uuid>,
) -> i64 {
    conn.transaction(async move |conn| {
        if let Some(scope) = scope {
            set_scope(conn, scope).await?;
        }
        let c: Count = match param {
            Some(p) => {
                diesel::sql_query(sql)
                    .bind::<diesel::sql_types::Uuid, _>(p)
                    .get_result(conn)
                    .await?
            }
            None => diesel::sql_query(sql).get_result(conn).await?,
        };
        Ok::<_, diesel::result::Error>(c.n)
    })
    .await
    .unwrap()
}

/// Runs one statement in a transaction with `scope` set, returning the affected rows or the
/// error (the transaction is rolled back on error).
async fn execute_in(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    sql: &'static str,
    params: [Uuid; 2],
) -> diesel::QueryResult<usize> {
    conn.transaction(async move |conn| {
        set_scope(conn, scope).await?;
        diesel::sql_query(sql)
            .bind::<diesel::sql_types::Uuid, _>(params[0])
            .bind::<diesel::sql_types::Uuid, _>(params[1])
            .execute(conn)
            .await
    })
    .await
}

async fn names(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(sql).load(conn).await.unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

async fn flag(conn: &mut AsyncPgConnection, sql: &str) -> bool {
    let f: Flag = diesel::sql_query(sql).get_result(conn).await.unwrap();
    f.flag
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_scope_sees_every_tenant() {
    let db = TestDb::new().await;
    let mut conn = db.app_conn().await;
    let t = seed(&mut conn).await;
    let platform = Some(Scope::Platform);
    assert_eq!(
        count_in(&mut conn, platform, "SELECT count(*) AS n FROM users", None).await,
        2
    );
    assert_eq!(
        count_in(
            &mut conn,
            platform,
            "SELECT count(*) AS n FROM organizations",
            None
        )
        .await,
        2
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM users WHERE organization_id IN ('{}', '{}')",
            t.a, t.b
        ))
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_scope_sees_nothing() {
    let db = TestDb::new().await;
    let mut conn = db.app_conn().await;
    seed(&mut conn).await;
    for scope in [None, Some(Scope::Nobody)] {
        for sql in [
            "SELECT count(*) AS n FROM users",
            "SELECT count(*) AS n FROM organizations",
        ] {
            assert_eq!(
                count_in(&mut conn, scope, sql, None).await,
                0,
                "{scope:?}: {sql}"
            );
        }
    }
    // Outside any explicit transaction too.
    let c: Count = diesel::sql_query("SELECT count(*) AS n FROM users")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(c.n, 0);
    // The rows are there: the superuser sees them.
    assert_eq!(db.count("SELECT count(*) AS n FROM users").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_scope_sees_only_its_own_rows() {
    let db = TestDb::new().await;
    let mut conn = db.app_conn().await;
    let t = seed(&mut conn).await;
    let scope = Some(Scope::Tenant(t.a));
    assert_eq!(
        count_in(&mut conn, scope, "SELECT count(*) AS n FROM users", None).await,
        1
    );
    assert_eq!(
        count_in(
            &mut conn,
            scope,
            "SELECT count(*) AS n FROM users WHERE id = $1",
            Some(t.user_a)
        )
        .await,
        1
    );
    assert_eq!(
        count_in(
            &mut conn,
            scope,
            "SELECT count(*) AS n FROM users WHERE organization_id = $1",
            Some(t.b)
        )
        .await,
        0
    );
    assert_eq!(
        count_in(
            &mut conn,
            scope,
            "SELECT count(*) AS n FROM users WHERE id = $1",
            Some(t.user_b)
        )
        .await,
        0
    );
    let a = t.a;
    let visible: Vec<Uuid> = conn
        .transaction(async move |conn| {
            set_scope(conn, Scope::Tenant(a)).await?;
            #[derive(diesel::QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::Uuid)]
                id: Uuid,
            }
            let rows: Vec<Id> = diesel::sql_query("SELECT id FROM organizations")
                .load(conn)
                .await?;
            Ok::<_, diesel::result::Error>(rows.into_iter().map(|r| r.id).collect())
        })
        .await
        .unwrap();
    assert_eq!(visible, vec![t.a]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_scope_cannot_write_into_or_touch_another_tenant() {
    let db = TestDb::new().await;
    let mut conn = db.app_conn().await;
    let t = seed(&mut conn).await;
    let scope = Scope::Tenant(t.a);

    // INSERT into B: refused by WITH CHECK.
    let err = execute_in(
        &mut conn,
        scope,
        "INSERT INTO users (id, organization_id, email, username) \
         VALUES ($1, $2, 'mallory@example.test', 'mallory')",
        [Uuid::new_v4(), t.b],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("row-level security"),
        "unexpected error: {err}"
    );

    // Moving A's user into B: refused by WITH CHECK too.
    let err = execute_in(
        &mut conn,
        scope,
        "UPDATE users SET organization_id = $2 WHERE id = $1",
        [t.user_a, t.b],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("row-level security"),
        "unexpected error: {err}"
    );

    // UPDATE and DELETE of B's rows: nothing matches.
    for sql in [
        "UPDATE users SET first_name = 'hacked' WHERE organization_id = $2 OR id = $1",
        "UPDATE organizations SET name = 'hacked' WHERE id = $2 OR id = $1",
        "DELETE FROM users WHERE organization_id = $2 OR id = $1",
        "DELETE FROM organizations WHERE id = $2 OR id = $1",
    ] {
        let n = execute_in(&mut conn, scope, sql, [t.user_b, t.b])
            .await
            .unwrap();
        assert_eq!(n, 0, "{sql}");
    }
    // Control: the same UPDATE on A's own row does change it.
    let n = execute_in(
        &mut conn,
        scope,
        "UPDATE users SET first_name = 'own' WHERE organization_id = $2 OR id = $1",
        [t.user_a, t.a],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);

    // The superuser sees B untouched, and no stray row.
    let mut admin = db.admin_conn().await;
    let b_users: Vec<UserRow> =
        diesel::sql_query("SELECT organization_id, first_name FROM users WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(t.user_b)
            .load(&mut admin)
            .await
            .unwrap();
    assert_eq!(b_users.len(), 1);
    assert_eq!(b_users[0].organization_id, t.b);
    assert_eq!(b_users[0].first_name, None);
    let b_name: Name = diesel::sql_query("SELECT name FROM organizations WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(t.b)
        .get_result(&mut admin)
        .await
        .unwrap();
    assert_eq!(b_name.name, "org-b");
    let a_user: UserRow =
        diesel::sql_query("SELECT organization_id, first_name FROM users WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(t.user_a)
            .get_result(&mut admin)
            .await
            .unwrap();
    assert_eq!(a_user.organization_id, t.a);
    assert_eq!(a_user.first_name.as_deref(), Some("own"));
    assert_eq!(db.count("SELECT count(*) AS n FROM users").await, 2);
    assert_eq!(db.count("SELECT count(*) AS n FROM organizations").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tenant_table_forces_row_level_security() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    let unforced = names(
        &mut admin,
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE a.attname = 'organization_id' AND NOT a.attisdropped AND c.relkind = 'r' \
           AND c.relnamespace = 'public'::regnamespace \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity) \
         ORDER BY 1",
    )
    .await;
    assert!(
        unforced.is_empty(),
        "tables with organization_id without forced RLS: {unforced:?}"
    );
    let tenant_tables = names(
        &mut admin,
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE a.attname = 'organization_id' AND NOT a.attisdropped AND c.relkind = 'r' \
           AND c.relnamespace = 'public'::regnamespace \
         ORDER BY 1",
    )
    .await;
    assert!(
        tenant_tables.len() >= 10,
        "expected at least 10 tenant tables, found {tenant_tables:?}"
    );
    assert!(tenant_tables.iter().any(|t| t == "users"));
    assert!(
        flag(
            &mut admin,
            "SELECT relrowsecurity AND relforcerowsecurity AS flag FROM pg_class \
             WHERE oid = 'public.organizations'::regclass",
        )
        .await,
        "organizations must force RLS"
    );
    // Every forced table also has a policy (RLS without a policy would hide every row, but a
    // table should never rely on that by accident).
    let without_policy = names(
        &mut admin,
        "SELECT c.relname::text AS name FROM pg_class c \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace \
           AND c.relrowsecurity \
           AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) \
         ORDER BY 1",
    )
    .await;
    assert!(without_policy.is_empty(), "{without_policy:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_role_cannot_bypass_rls() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    assert_eq!(
        db.count("SELECT count(*) AS n FROM pg_roles WHERE rolname = 'tenantry_app'")
            .await,
        1
    );
    assert!(
        !flag(
            &mut admin,
            "SELECT rolsuper AS flag FROM pg_roles WHERE rolname = 'tenantry_app'"
        )
        .await,
        "tenantry_app is a superuser"
    );
    assert!(
        !flag(
            &mut admin,
            "SELECT rolbypassrls AS flag FROM pg_roles WHERE rolname = 'tenantry_app'"
        )
        .await,
        "tenantry_app bypasses RLS"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM pg_class WHERE relowner = \
             (SELECT oid FROM pg_roles WHERE rolname = 'tenantry_app')"
        )
        .await,
        0,
        "tenantry_app owns relations"
    );
    // The tables belong to the owner role (the check above is not vacuous).
    assert!(
        flag(
            &mut admin,
            "SELECT pg_get_userbyid(relowner) = 'tenantry_owner' AS flag FROM pg_class \
             WHERE oid = 'public.users'::regclass",
        )
        .await
    );
    assert!(
        !flag(
            &mut admin,
            "SELECT pg_has_role('tenantry_app', 'tenantry_owner', 'MEMBER') AS flag"
        )
        .await,
        "tenantry_app is a member of tenantry_owner"
    );
    // And from its own session: it is who it claims, and may not become the owner.
    let mut app = db.app_conn().await;
    assert!(flag(&mut app, "SELECT current_user = 'tenantry_app' AS flag").await);
    let err = diesel::sql_query("SET ROLE tenantry_owner")
        .execute(&mut app)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_does_not_leak_across_transactions() {
    let db = TestDb::new().await;
    let mut conn = db.app_conn().await;
    let t = seed(&mut conn).await;
    for scope in [Scope::Tenant(t.a), Scope::Platform] {
        let seen = count_in(
            &mut conn,
            Some(scope),
            "SELECT count(*) AS n FROM users",
            None,
        )
        .await;
        assert!(seen >= 1, "{scope:?} saw {seen}");
        assert_eq!(
            count_in(&mut conn, None, "SELECT count(*) AS n FROM users", None).await,
            0,
            "after {scope:?}"
        );
        assert_eq!(
            count_in(
                &mut conn,
                None,
                "SELECT count(*) AS n FROM organizations",
                None
            )
            .await,
            0,
            "after {scope:?}"
        );
    }
    // A rolled-back transaction does not leave its scope behind either.
    let a = t.a;
    let rolled_back = conn
        .transaction(async move |conn| {
            set_scope(conn, Scope::Tenant(a)).await?;
            Err::<(), _>(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    assert_eq!(
        count_in(&mut conn, None, "SELECT count(*) AS n FROM users", None).await,
        0
    );
}
