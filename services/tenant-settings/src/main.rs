//! tenant-settings: reads its configuration, starts tracing, serves.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenantry_runtime::telemetry::init();
    tenant_settings::run(tenant_settings::Config::from_env()?).await
}
