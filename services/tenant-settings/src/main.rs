//! tenant-settings: reads its configuration, starts tracing, serves.

fn main() -> anyhow::Result<()> {
    tenantry_runtime::telemetry::init();
    // One worker per core, or TENANTRY_WORKER_THREADS (1: a current-thread runtime).
    let runtime = tenantry_runtime::rt::from_env()?;
    runtime.block_on(async { tenant_settings::run(tenant_settings::Config::from_env()?).await })
}
