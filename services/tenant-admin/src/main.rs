//! tenant-admin: reads its configuration, starts tracing, serves.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenantry_runtime::telemetry::init();
    tenant_admin::run(tenant_admin::Config::from_env()?).await
}
