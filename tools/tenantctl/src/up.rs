//! `tenantctl up`: the whole suite, one command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use tenantry_auth::{AuthConfig, PlatformRole, Signer};
use tenantry_db::cluster::Cluster;
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::ServiceArg;
use crate::console::{self, Bootstrap};

/// Arguments of `tenantctl up`.
#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Folder for the private Postgres cluster, the generated JWT secret and secrets key, and
    /// logs.
    #[arg(long, env = "TENANTRY_DATA_DIR", default_value = ".tenantry")]
    data_dir: PathBuf,
    /// Address of tenant-admin.
    #[arg(long, env = "TENANT_ADMIN_ADDR", default_value = "127.0.0.1:50051")]
    admin_addr: String,
    /// Address of tenant-settings.
    #[arg(long, env = "TENANT_SETTINGS_ADDR", default_value = "127.0.0.1:50052")]
    settings_addr: String,
    /// Address of provisioning.
    #[arg(long, env = "PROVISIONING_ADDR", default_value = "127.0.0.1:50053")]
    provisioning_addr: String,
    /// How long to wait for the services to report SERVING.
    #[arg(long, default_value_t = 60)]
    ready_timeout_secs: u64,
    /// Serves no admin console (and does not build it).
    #[arg(long)]
    no_console: bool,
}

const SECRET_FILE: &str = "jwt-secret";

/// Reads the JWT secret `up` generated in `data_dir`.
pub(crate) fn read_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    let s = std::fs::read_to_string(data_dir.join(SECRET_FILE))?;
    Ok(SecretString::from(s.trim().to_owned()))
}

fn secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(s) = tenantry_runtime::config::var("TENANTRY_JWT_SECRET") {
        return Ok(SecretString::from(s));
    }
    if let Ok(s) = read_secret(data_dir) {
        return Ok(s);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&data_dir.join(SECRET_FILE), &s)?;
    Ok(SecretString::from(s))
}

/// The file that keeps the key of integration secrets `up` generated.
const SECRETS_KEY_FILE: &str = "secrets-key";

/// The key that encrypts integration secrets at rest (`TENANTRY_SECRETS_KEY` for
/// tenant-settings): the variable when set, else the one kept in `data_dir`, else a new random
/// one, kept there (0600) so that secrets stored by one `up` still decrypt in the next.
fn secrets_key(data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(s) = tenantry_runtime::config::var("TENANTRY_SECRETS_KEY") {
        return Ok(SecretString::from(s));
    }
    let path = data_dir.join(SECRETS_KEY_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(s.trim().to_owned()));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
    write_private(&path, &s)?;
    Ok(SecretString::from(s))
}

/// Writes a new file only its owner may read (0600 from the start on Unix).
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    tenantry_runtime::telemetry::init();
    let started = Instant::now();
    // Listen for Ctrl-C / SIGTERM from the start, so an interrupt during start-up still stops
    // what was started instead of leaving the private cluster running.
    let mut signal = tokio::spawn(tenantry_runtime::shutdown_signal());
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let secret = secret(&data_dir)?;
    let secrets_key = secrets_key(&data_dir)?;

    // The database: the configured one, or a private cluster.
    let mut cluster = None;
    let app_url = if let Some(url) = tenantry_runtime::config::var("DATABASE_URL") {
        if let Some(admin) = tenantry_runtime::config::var("DATABASE_ADMIN_URL") {
            let password =
                tenantry_runtime::config::var("TENANTRY_APP_DB_PASSWORD").unwrap_or_default();
            tenantry_db::migrate(&admin, &password).await?;
        }
        url
    } else {
        let base = data_dir.join("postgres");
        let c = tokio::task::spawn_blocking(move || Cluster::start(&base, true)).await??;
        println!(
            "postgres: private cluster on 127.0.0.1:{} ({})",
            c.port(),
            c.data_dir().display()
        );
        tenantry_db::ensure_database(&c.admin_url("postgres"), "tenantry").await?;
        tenantry_db::migrate(&c.admin_url("tenantry"), "").await?;
        let url =
            tenantry_db::urls::with_user(&c.admin_url("tenantry"), tenantry_db::APP_ROLE, "")?;
        cluster = Some(c);
        url
    };

    let exe = std::env::current_exe()?;
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;

    let console_dir = if args.no_console {
        None
    } else {
        console_dist(&logs).await
    };
    let login = match console::bootstrap_super_admin(&app_url, &data_dir).await {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("console: no bootstrap super admin: {e:#}");
            None
        }
    };
    let console_url = format!("http://{}/", browser_host(&args.admin_addr));
    // The console (served by tenant-admin) calls tenant-settings and provisioning from its own
    // origin: allow it there, besides any origin configured in TENANTRY_CORS_ORIGINS.
    let mut cors: Vec<String> = tenantry_runtime::config::var("TENANTRY_CORS_ORIGINS")
        .map(|v| v.split(',').map(|o| o.trim().to_owned()).collect())
        .unwrap_or_default();
    cors.extend(console_origins(&args.admin_addr));
    cors.retain(|o| !o.is_empty());
    let mut seen = std::collections::HashSet::new();
    cors.retain(|o| seen.insert(o.clone()));
    let cors = cors.join(",");
    let services = [
        (
            ServiceArg::TenantAdmin,
            "tenant-admin",
            args.admin_addr.as_str(),
        ),
        (
            ServiceArg::TenantSettings,
            "tenant-settings",
            args.settings_addr.as_str(),
        ),
        (
            ServiceArg::Provisioning,
            "provisioning",
            args.provisioning_addr.as_str(),
        ),
    ];
    let mut children: Vec<(&str, Child)> = Vec::new();
    let start_up = async {
        for (_, name, addr) in &services {
            let mut cmd = Command::new(&exe);
            cmd.arg("serve")
                .arg(name)
                .env("DATABASE_URL", &app_url)
                .env_remove("DATABASE_ADMIN_URL")
                .env("TENANTRY_JWT_SECRET", secret.expose_secret())
                // provisioning keeps welcome e-mails (.eml, without SMTP) and backups here.
                .env("TENANTRY_DATA_DIR", &data_dir)
                // Three services and Postgres on one machine: one thread each, unless the
                // caller sized them.
                .env(
                    "TENANTRY_WORKER_THREADS",
                    std::env::var("TENANTRY_WORKER_THREADS").unwrap_or_else(|_| "1".into()),
                )
                .env("TENANT_ADMIN_ADDR", &args.admin_addr)
                .env("TENANT_SETTINGS_ADDR", &args.settings_addr)
                .env("PROVISIONING_ADDR", &args.provisioning_addr)
                .env("TENANT_ADMIN_URL", format!("http://{}", args.admin_addr))
                .env(
                    "TENANT_SETTINGS_URL",
                    format!("http://{}", args.settings_addr),
                )
                .env(
                    "PROVISIONING_URL",
                    format!("http://{}", args.provisioning_addr),
                )
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(logs.join(format!("{name}.log")))?)
                .stderr(std::fs::File::create(logs.join(format!("{name}.err.log")))?)
                .kill_on_drop(true);
            match *name {
                "tenant-admin" => {
                    match &console_dir {
                        Some(dir) => cmd.env("TENANTRY_CONSOLE_DIR", dir),
                        None => cmd.env_remove("TENANTRY_CONSOLE_DIR"),
                    };
                    cmd.env(
                        "TENANTRY_CONSOLE_SETTINGS_URL",
                        format!("http://{}", browser_host(&args.settings_addr)),
                    )
                    .env(
                        "TENANTRY_CONSOLE_PROVISIONING_URL",
                        format!("http://{}", browser_host(&args.provisioning_addr)),
                    );
                }
                _ => {
                    cmd.env("TENANTRY_CORS_ORIGINS", &cors)
                        .env_remove("TENANTRY_CONSOLE_DIR");
                }
            }
            // Only tenant-settings holds the key of integration secrets.
            if *name == "tenant-settings" {
                cmd.env("TENANTRY_SECRETS_KEY", secrets_key.expose_secret());
            } else {
                cmd.env_remove("TENANTRY_SECRETS_KEY");
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start {name}"))?;
            println!("{name}: pid {} on {addr}", child.id().unwrap_or_default());
            children.push((name, child));
        }
        let deadline = Instant::now() + Duration::from_secs(args.ready_timeout_secs);
        for (_, name, addr) in &services {
            wait_serving(name, addr, deadline, &mut children, &logs).await?;
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = start_up => r,
        _ = &mut signal => Err(anyhow::anyhow!("interrupted during start-up")),
    };

    if let Err(e) = result {
        stop(&mut children, cluster.as_ref()).await;
        return Err(e);
    }

    let token = Signer::new(&AuthConfig::hs256(secret.expose_secret()))?.mint(
        "operator",
        Some(PlatformRole::SuperAdmin),
        None,
        12 * 3600,
    )?;
    let ready_ms = started.elapsed().as_millis();
    println!();
    println!("Tenantry is ready in {ready_ms} ms.");
    println!(
        "  tenant-admin     {}  (gRPC, grpc-web, health, reflection)",
        args.admin_addr
    );
    println!("  tenant-settings  {}", args.settings_addr);
    println!("  provisioning     {}", args.provisioning_addr);
    println!();
    if console_dir.is_some() {
        println!("Admin console: {console_url}");
    } else {
        println!(
            "Admin console: {}; gRPC and grpc-web are served as usual.",
            if args.no_console {
                "off (--no-console)"
            } else {
                "not built (see above)"
            }
        );
    }
    match &login {
        Some(Bootstrap::Created { email, password }) => {
            println!(
                "Console login (created now; shown once, also kept in {}): tenant slug empty, \
                 e-mail {email}, password {password}",
                data_dir.join(console::LOGIN_FILE).display()
            );
        }
        Some(Bootstrap::Existing { email }) => println!(
            "Console login: tenant slug empty, e-mail {email}, password in {}",
            data_dir.join(console::LOGIN_FILE).display()
        ),
        Some(Bootstrap::Foreign) => println!(
            "Console login: {} exists already in this database; `tenantctl create-super-admin` \
             creates another super admin.",
            console::BOOTSTRAP_EMAIL
        ),
        None => {}
    }
    println!();
    println!("A super-admin token (12 hours; `tenantctl token --help` mints others):");
    println!("export TOKEN={token}");
    println!();
    println!("Try:");
    println!("grpcurl -plaintext {} list", args.admin_addr);
    println!(
        "grpcurl -plaintext {} describe tenantry.settings.v1.TenantSettingsService",
        args.settings_addr
    );
    println!(
        "grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"service\": \"tenantry.provisioning.v1.ProvisioningService\"}}' {} grpc.health.v1.Health/Check",
        args.provisioning_addr
    );
    println!();
    println!(
        "Logs: {}. Welcome e-mails (no SMTP configured): {}. Ctrl-C stops everything.",
        logs.display(),
        data_dir.join("mail").display()
    );

    // Run until Ctrl-C / SIGTERM, or until a service dies.
    let died = async {
        loop {
            for (name, child) in &mut children {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!("{name} exited ({status})");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let reason = tokio::select! {
        _ = &mut signal => None,
        r = died => Some(r),
    };
    println!("stopping...");
    stop(&mut children, cluster.as_ref()).await;
    if let Some(r) = reason {
        bail!("{r}; see the logs in {}", logs.display());
    }
    println!("stopped");
    Ok(())
}

/// The built console to serve: `TENANTRY_CONSOLE_DIR` when set, else `web/console/dist` of this
/// checkout, built with npm first when it is missing or older than its sources. `None` (with a
/// message saying how to get it) when it cannot be built: the services run without it.
async fn console_dist(logs: &Path) -> Option<PathBuf> {
    if let Some(dir) = tenantry_runtime::config::var("TENANTRY_CONSOLE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let src = console::source_dir();
    if !src.join("package.json").is_file() {
        println!(
            "console: {} not found (tenantctl was not built from a checkout); set \
             TENANTRY_CONSOLE_DIR to a built console to serve one",
            src.display()
        );
        return None;
    }
    let src = src.canonicalize().ok()?;
    if console::needs_build(&src) {
        let log = logs.join("console-build.log");
        println!(
            "console: building {} (npm ci && npm run build; output in {})",
            src.display(),
            log.display()
        );
        if let Err(e) = console::build(&src, &log).await {
            println!(
                "console: not built: {e:#}. The console needs Node.js 20+ and npm \
                 (https://nodejs.org, or `apt-get install nodejs npm`); then run `tenantctl up` \
                 again, or build it by hand: cd {} && npm ci && npm run build",
                src.display()
            );
            return None;
        }
    }
    Some(src.join("dist"))
}

/// `addr` as a browser on this machine reaches it (`0.0.0.0` and `[::]` become `127.0.0.1`).
fn browser_host(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => addr.to_owned(),
    }
}

/// The origins a browser may load the console from: its address, and `localhost` for a
/// loopback one.
fn console_origins(admin_addr: &str) -> Vec<String> {
    let host = browser_host(admin_addr);
    let mut origins = vec![format!("http://{host}")];
    if let Some(("127.0.0.1", port)) = host.rsplit_once(':') {
        origins.push(format!("http://localhost:{port}"));
    }
    origins
}

async fn wait_serving(
    name: &str,
    addr: &str,
    deadline: Instant,
    children: &mut [(&str, Child)],
    logs: &Path,
) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500));
    loop {
        for (n, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let err =
                    std::fs::read_to_string(logs.join(format!("{n}.err.log"))).unwrap_or_default();
                let out =
                    std::fs::read_to_string(logs.join(format!("{n}.log"))).unwrap_or_default();
                bail!("{n} exited during start-up ({status}):\n{out}{err}");
            }
        }
        if let Ok(channel) = endpoint.connect().await {
            let mut client = HealthClient::new(channel);
            if let Ok(r) = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && r.get_ref().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{name} did not report SERVING on {addr} in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(children: &mut [(&str, Child)], cluster: Option<&Cluster>) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for (name, child) in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            tracing::warn!(service = *name, "did not stop in time: killing");
            let _ = child.kill().await;
        }
    }
    if let Some(c) = cluster {
        let c = c.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.stop()).await {
            eprintln!("stopping postgres: {e}");
        }
    }
}
