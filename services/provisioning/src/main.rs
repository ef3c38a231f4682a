//! provisioning: reads its configuration, starts tracing, serves.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tenantry_runtime::telemetry::init();
    provisioning::run(provisioning::Config::from_env()?).await
}
