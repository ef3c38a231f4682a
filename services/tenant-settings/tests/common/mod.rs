//! Helpers shared by the tenant-settings integration tests.

#![allow(dead_code, reason = "each test file uses a subset")]

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_testing::{Suite, TestDb, TestServer};
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

/// A client of the suite's tenant-settings.
pub(crate) async fn client(server: &TestServer) -> TenantSettingsServiceClient<Channel> {
    TenantSettingsServiceClient::new(server.channel().await)
}

/// Inserts a tenant row directly (tenant-admin is built elsewhere) and returns its id.
pub(crate) async fn create_tenant(db: &TestDb, tier: &str, status: &str) -> Uuid {
    let id = Uuid::new_v4();
    let slug = format!("t-{}", &id.simple().to_string()[..12]);
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO organizations (id, name, slug, subscription_tier, status, trial_days) \
         VALUES ($1::uuid, $2, $3, $4, $5, 14)",
    )
    .bind::<Text, _>(id.to_string())
    .bind::<Text, _>(format!("Tenant {slug}"))
    .bind::<Text, _>(slug)
    .bind::<Text, _>(tier)
    .bind::<Text, _>(status)
    .execute(&mut conn)
    .await
    .expect("insert tenant");
    id
}

/// Runs SQL as the superuser.
pub(crate) async fn exec(db: &TestDb, sql: &str) {
    let mut conn = db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
}

/// The fields named by the BadRequest details of a status.
pub(crate) fn bad_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Starts a suite.
pub(crate) async fn suite() -> Suite {
    Suite::start().await
}

/// Starts another tenant-settings replica on the suite's database.
pub(crate) async fn second_replica(suite: &Suite) -> TestServer {
    let common = tenantry_testing::common_config(&suite.db);
    TestServer::start(move |l, stop| async move {
        let config = tenant_settings::Config {
            listen_addr: l.local_addr().expect("addr"),
            common,
            secrets_key: tenantry_testing::secrets_key(),
        };
        tenant_settings::serve(config, l, stop)
            .await
            .map_err(|e| Box::new(format!("{e:#}")) as Box<dyn std::fmt::Display + Send>)
    })
    .await
}

/// A token for `tenant` with `role` and a known subject: (subject, token).
pub(crate) fn member_as(tenant: Uuid, role: tenantry_auth::OrgRole) -> (String, String) {
    let subject = Uuid::new_v4().to_string();
    let token = tenantry_testing::signer()
        .mint(&subject, None, Some((tenant, role)), 600)
        .expect("mint");
    (subject, token)
}

/// The fully-qualified name of a tenant-settings RPC (the audit `action`).
pub(crate) fn rpc(method: &str) -> String {
    format!("tenantry.settings.v1.TenantSettingsService/{method}")
}

/// One audit event, as the tests read it.
#[derive(Debug, diesel::QueryableByName)]
pub(crate) struct AuditRow {
    #[diesel(sql_type = Text)]
    pub(crate) action: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub(crate) actor_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub(crate) actor_role: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub(crate) target_type: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub(crate) target_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub(crate) request_id: Option<String>,
    /// `metadata` as JSON text.
    #[diesel(sql_type = Text)]
    pub(crate) metadata: String,
}

impl AuditRow {
    /// The metadata as JSON.
    pub(crate) fn details(&self) -> serde_json::Value {
        serde_json::from_str(&self.metadata).expect("metadata is JSON")
    }
}

/// The tenant's audit events, oldest first (read as the superuser).
pub(crate) async fn audit_events(db: &TestDb, tenant: Uuid) -> Vec<AuditRow> {
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "SELECT action, actor_id, actor_role, target_type, target_id, request_id, \
         metadata::text AS metadata FROM audit_events WHERE organization_id = $1::uuid \
         ORDER BY created_at, id",
    )
    .bind::<Text, _>(tenant.to_string())
    .load(&mut conn)
    .await
    .expect("audit events")
}

/// Asserts that `events` is exactly one event of `method` by (`actor`, `role`) on `target`.
pub(crate) fn assert_one_event<'a>(
    events: &'a [AuditRow],
    method: &str,
    actor: &str,
    role: &str,
    target: (&str, &str),
) -> &'a AuditRow {
    assert_eq!(events.len(), 1, "exactly one event: {events:?}");
    let e = &events[0];
    assert_eq!(e.action, rpc(method), "{e:?}");
    assert_eq!(e.actor_id.as_deref(), Some(actor), "{e:?}");
    assert_eq!(e.actor_role.as_deref(), Some(role), "{e:?}");
    assert_eq!(e.target_type.as_deref(), Some(target.0), "{e:?}");
    assert_eq!(e.target_id.as_deref(), Some(target.1), "{e:?}");
    e
}
