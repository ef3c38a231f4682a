//! Writes stay prepared on their connection, on real Postgres: an UpdateTenant-shaped UPDATE and
//! an audit row are parsed and planned once per connection, not on every call, and the number
//! of update shapes a connection keeps is bounded.

#![allow(clippy::unwrap_used, reason = "tests")]

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tenantry_db::models::audit::{NewAuditEvent, record_audit};
use tenantry_db::models::organization::{
    OrganizationChangeset, update_profile, update_profile_audited,
};
use tenantry_db::models::{outbox, settings};
use tenantry_testing::TestDb;
use uuid::Uuid;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Statements kept prepared on `conn` (its own session) whose text starts with `prefix`.
async fn kept(conn: &mut AsyncPgConnection, prefix: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE starts_with(statement, $1)",
    )
    .bind::<Text, _>(prefix)
    .get_result::<Count>(conn)
    .await
    .unwrap()
    .n
}

// One test function: the update shapes' budget is process-wide, so its steps must not
// interleave with another test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn writes_are_prepared_once_per_connection_and_update_shapes_are_bounded() {
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let tenant = diesel::sql_query(
        "INSERT INTO organizations (name, slug, email) \
         VALUES ('Prepared', 'prepared', 'owner@prepared.test') RETURNING id",
    )
    .get_result::<Id>(&mut conn)
    .await
    .unwrap()
    .id;

    // The same UPDATE three times: one statement prepared, and every call applied.
    for n in 0..3 {
        let name = format!("Display {n}");
        let org = update_profile(
            &mut conn,
            tenant,
            &OrganizationChangeset {
                display_name: Some(Some(&name)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(org.display_name.as_deref(), Some(name.as_str()));
    }
    assert_eq!(kept(&mut conn, "UPDATE \"organizations\"").await, 1);
    // Clearing the column is the same text (NULL is a bound value).
    let org = update_profile(
        &mut conn,
        tenant,
        &OrganizationChangeset {
            display_name: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(org.display_name, None);
    assert_eq!(kept(&mut conn, "UPDATE \"organizations\"").await, 1);

    // Audit rows with and without their optional columns: one INSERT text, NULLs written.
    for (actor, target) in [
        (Some("u-1"), Some("tenant")),
        (None, None),
        (Some("u-2"), None),
    ] {
        record_audit(
            &mut conn,
            &NewAuditEvent {
                organization_id: Some(tenant),
                actor_id: actor,
                actor_role: None,
                action: "tenantry.test/Prepared",
                target_type: target,
                target_id: None,
                metadata: serde_json::json!({}),
                request_id: None,
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(kept(&mut conn, "INSERT INTO \"audit_events\"").await, 1);
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'tenantry.test/Prepared' \
             AND actor_role IS NULL AND target_id IS NULL AND request_id IS NULL"
        )
        .await,
        3
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'tenantry.test/Prepared' \
             AND actor_id IS NULL AND target_type IS NULL"
        )
        .await,
        1
    );

    // UpdateTenant's one-statement change: the row, its locale settings and an audit row,
    // prepared once; an unknown id is NotFound and writes nothing.
    diesel::sql_query(
        "INSERT INTO tenant_settings (organization_id, timezone, locale) \
         VALUES ($1, 'Europe/Paris', 'fr-FR')",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant)
    .execute(&mut conn)
    .await
    .unwrap();
    let event = |id| NewAuditEvent {
        organization_id: Some(id),
        actor_id: Some("u-3"),
        actor_role: Some("super_admin"),
        action: "tenantry.test/Audited",
        target_type: Some("tenant"),
        target_id: Some(id.to_string()),
        metadata: serde_json::json!({ "changed_fields": ["description"] }),
        request_id: None,
    };
    for n in 0..2 {
        let text = format!("Described {n}");
        let changes = OrganizationChangeset {
            description: Some(Some(&text)),
            ..Default::default()
        };
        let (org, locale) = update_profile_audited(&mut conn, tenant, &changes, &event(tenant))
            .await
            .unwrap();
        assert_eq!(org.id, tenant);
        assert_eq!(org.description.as_deref(), Some(text.as_str()));
        assert_eq!(
            locale,
            Some(("Europe/Paris".to_owned(), "fr-FR".to_owned()))
        );
    }
    assert_eq!(
        kept(&mut conn, "WITH \"organizations\" AS (UPDATE").await,
        1
    );
    let unknown = Uuid::new_v4();
    let missing = update_profile_audited(
        &mut conn,
        unknown,
        &OrganizationChangeset {
            description: Some(Some("nobody")),
            ..Default::default()
        },
        &event(unknown),
    )
    .await;
    assert!(
        matches!(missing, Err(diesel::result::Error::NotFound)),
        "{missing:?}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'tenantry.test/Audited' \
             AND organization_id = '{tenant}' AND actor_role = 'super_admin' \
             AND metadata -> 'changed_fields' ? 'description'"
        ))
        .await,
        2
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE target_id = '{unknown}'"
        ))
        .await,
        0
    );

    // The settings writes every settings RPC makes: the settings row's insert-if-missing, a
    // feature decision's upsert and the version bump, each prepared once.
    let mut versions = Vec::new();
    for enabled in [true, false] {
        settings::lock_settings(&mut conn, tenant).await.unwrap();
        settings::upsert_feature(
            &mut conn,
            tenant,
            "advanced_analytics",
            enabled,
            "operator_override",
            None,
        )
        .await
        .unwrap();
        versions.push(settings::bump_version(&mut conn, tenant).await.unwrap());
    }
    assert_eq!(versions[1], versions[0] + 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM tenant_features WHERE organization_id = '{tenant}' \
             AND feature = 'advanced_analytics' AND NOT enabled AND source = 'operator_override'"
        ))
        .await,
        1
    );
    for prefix in [
        "INSERT INTO \"tenant_settings\"",
        "INSERT INTO \"tenant_features\"",
        "UPDATE \"tenant_settings\"",
    ] {
        assert_eq!(kept(&mut conn, prefix).await, 1, "{prefix}");
    }

    // The outbox's queueing and delivery writes: one INSERT and one UPDATE text each.
    let mut queued = Vec::new();
    for n in 0..2 {
        let message_id = format!("prepared-{n}@tenantry.test");
        let fresh = outbox::enqueue(
            &mut conn,
            &outbox::NewOutboxMessage {
                organization_id: tenant,
                message_id: &message_id,
                kind: "notification",
                to_address: "owner@prepared.test",
                subject: "Prepared",
                body_text: "Kept prepared.",
                payload: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
        assert!(fresh);
        queued.push(message_id);
    }
    for message_id in &queued {
        let msg = outbox::find_by_message_id(&mut conn, message_id)
            .await
            .unwrap()
            .unwrap();
        outbox::mark_sent(&mut conn, msg.id).await.unwrap();
    }
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM email_outbox WHERE organization_id = '{tenant}' \
             AND status = 'sent'"
        ))
        .await,
        2
    );
    assert_eq!(kept(&mut conn, "INSERT INTO \"email_outbox\"").await, 1);
    assert_eq!(kept(&mut conn, "UPDATE \"email_outbox\"").await, 1);

    // 70 distinct update shapes (each sets display_name plus another pair of columns): all
    // applied, but only the budget's 64 shapes (the first one included) stay prepared.
    let fields = 6;
    let mut shapes = 0;
    'outer: for a in 0..fields {
        for b in 0..fields {
            for c in 0..2 {
                if shapes == 70 {
                    break 'outer;
                }
                let name = format!("Shape {shapes}");
                let mut changes = OrganizationChangeset {
                    display_name: Some(Some(&name)),
                    ..Default::default()
                };
                set_field(&mut changes, a);
                set_field(&mut changes, fields + b);
                if c == 1 {
                    changes.tax_id = Some(Some("T-1"));
                }
                let before = changes.shape();
                let org = update_profile(&mut conn, tenant, &changes).await.unwrap();
                assert_eq!(org.display_name.as_deref(), Some(name.as_str()));
                assert_eq!(before, changes.shape());
                shapes += 1;
            }
        }
    }
    assert_eq!(shapes, 70);
    assert_eq!(kept(&mut conn, "UPDATE \"organizations\"").await, 64);
}

/// Sets one of 12 columns (0..6 nullable text columns set, 6..12 the same columns cleared or
/// other columns), so that pairs of them make distinct shapes.
fn set_field<'a>(changes: &mut OrganizationChangeset<'a>, i: usize) {
    match i {
        0 => changes.description = Some(Some("d")),
        1 => changes.website = Some(Some("https://example.test")),
        2 => changes.phone = Some(Some("+1 555 0100")),
        3 => changes.industry = Some(Some("education")),
        4 => changes.billing_email = Some(Some("billing@prepared.test")),
        5 => changes.name = Some("Prepared"),
        6 => changes.email = Some(Some("owner@prepared.test")),
        7 => changes.address = Some(serde_json::json!({})),
        8 => changes.billing_address = Some(serde_json::json!({})),
        9 => changes.organization_type = Some("education"),
        10 => changes.size_category = Some(None),
        _ => changes.updated_by = Some(None),
    }
}
