//! `tenantctl create-super-admin`: creates a platform admin account (table `platform_admins`),
//! who signs in with `AuthService.Login` and an empty `tenant_slug`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand::RngCore as _;
use tenantry_db::diesel::result::{DatabaseErrorKind, Error as DieselError};
use tenantry_db::diesel_async::{AsyncConnection as _, AsyncPgConnection};
use tenantry_db::models::user::{self, NewPlatformAdmin};
use tenantry_db::{Scope, set_scope};

/// Shortest password accepted (as for members).
const MIN_PASSWORD_CHARS: usize = 8;
/// bcrypt reads at most 72 bytes; longer passwords are refused rather than truncated.
const MAX_PASSWORD_BYTES: usize = 72;

/// Arguments of `tenantctl create-super-admin`.
#[derive(clap::Args)]
pub(crate) struct CreateSuperAdminArgs {
    /// E-mail address of the account (its login name; unique, case-insensitive).
    #[arg(long)]
    email: String,
    /// Reads the password from the first line of standard input. Without it a random password
    /// is generated and printed once.
    #[arg(long)]
    password_stdin: bool,
    /// Data folder of `tenantctl up`: its private Postgres is used when neither DATABASE_URL nor
    /// DATABASE_ADMIN_URL is set.
    #[arg(long, env = "TENANTRY_DATA_DIR", default_value = ".tenantry")]
    data_dir: PathBuf,
}

/// The database to write to: DATABASE_URL (the services' role), else DATABASE_ADMIN_URL, else
/// the private cluster of `tenantctl up` in `data_dir`.
fn database_url(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(url) = tenantry_runtime::config::var("DATABASE_URL") {
        return Ok(url);
    }
    if let Some(url) = tenantry_runtime::config::var("DATABASE_ADMIN_URL") {
        return Ok(url);
    }
    let port_file = data_dir.join("postgres").join("port");
    let port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .with_context(|| {
            format!(
                "no DATABASE_URL, no DATABASE_ADMIN_URL and no private cluster of `tenantctl up` \
                 ({} not found)",
                port_file.display()
            )
        })?;
    let admin = format!("postgres://postgres@127.0.0.1:{port}/tenantry");
    Ok(tenantry_db::urls::with_user(
        &admin,
        tenantry_db::APP_ROLE,
        "",
    )?)
}

/// The password: the first line of stdin, or a generated one (16 random bytes, URL-safe).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let generated = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        return Ok((generated, true));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!("password must be at most {MAX_PASSWORD_BYTES} bytes");
    }
    Ok((password, false))
}

pub(crate) async fn run(args: CreateSuperAdminArgs) -> anyhow::Result<()> {
    let email = args.email.trim().to_owned();
    if email.is_empty() {
        bail!("--email is required");
    }
    let cost = tenant_admin::Tuning::from_env()?.bcrypt_cost;
    let url = database_url(&args.data_dir)?;
    let (password, generated) = password(args.password_stdin)?;
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??
    };

    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .context("cannot connect to the database")?;
    let inserted = conn
        .transaction::<_, DieselError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            user::insert_platform_admin(
                conn,
                &NewPlatformAdmin {
                    email: &email,
                    password_hash: &hash,
                },
            )
            .await
        })
        .await;
    let admin = match inserted {
        Ok(a) => a,
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            bail!("a platform admin with email {email} already exists")
        }
        Err(DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, _)) => {
            bail!("email {email:?} is not a valid e-mail address")
        }
        Err(e) => return Err(e).context("cannot create the platform admin"),
    };
    println!("created super admin {} (id {})", admin.email, admin.id);
    if generated {
        println!("password (shown once, store it now): {password}");
    }
    Ok(())
}
