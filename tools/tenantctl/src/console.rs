//! The admin console for `tenantctl up`: builds `web/console` with npm when its `dist/` is
//! missing or older than its sources, and creates the bootstrap super admin who signs in to it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand::RngCore as _;
use tenantry_db::diesel::result::{DatabaseErrorKind, Error as DieselError};
use tenantry_db::diesel_async::{AsyncConnection as _, AsyncPgConnection};
use tenantry_db::models::user::{self, NewPlatformAdmin};
use tenantry_db::{Scope, set_scope};
use tokio::process::Command;

/// The console's sources in this checkout (`web/console`), found from where tenantctl was
/// built.
pub(crate) fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/console")
}

/// The newest modification time of the files under `path` (skipping `skip` folders).
fn newest(path: &Path, skip: &[&str], newest_so_far: &mut SystemTime) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            newest(&entry.path(), skip, newest_so_far);
        }
    } else if let Ok(m) = meta.modified()
        && m > *newest_so_far
    {
        *newest_so_far = m;
    }
}

/// Whether `dist/` is missing or older than a source of the console (its own files or
/// `proto/`, which its client is generated from).
pub(crate) fn needs_build(src: &Path) -> bool {
    let built = ["index.html", "app.js", "app.css"]
        .iter()
        .map(|f| std::fs::metadata(src.join("dist").join(f)).and_then(|m| m.modified()))
        .collect::<Result<Vec<_>, _>>();
    let Some(built) = built.ok().and_then(|v| v.into_iter().min()) else {
        return true;
    };
    let mut sources = SystemTime::UNIX_EPOCH;
    for f in [
        "index.html",
        "package.json",
        "package-lock.json",
        "build.mjs",
        "buf.gen.yaml",
        "tsconfig.json",
    ] {
        newest(&src.join(f), &[], &mut sources);
    }
    newest(&src.join("src"), &["gen"], &mut sources);
    newest(&src.join("../../proto"), &[], &mut sources);
    sources > built
}

/// Runs `npm ci` (when `node_modules` is missing or older than the lockfile) and
/// `npm run build` in `src`, appending their output to `log`. One build at a time per checkout
/// (an exclusive lock on `src/.build.lock`).
///
/// # Errors
///
/// npm is missing, or a step fails (its output is in `log`).
pub(crate) async fn build(src: &Path, log: &Path) -> anyhow::Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(src.join(".build.lock"))
        .with_context(|| format!("cannot open {}", src.join(".build.lock").display()))?;
    let _lock = tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock the console build: {e}"))
    })
    .await??;
    // Someone else may have built it while this one waited for the lock.
    if !needs_build(src) {
        return Ok(());
    }
    let installed = std::fs::metadata(src.join("node_modules/.package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    let lockfile = std::fs::metadata(src.join("package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    let mut steps: Vec<&[&str]> = Vec::new();
    if installed.is_none() || installed < lockfile {
        steps.push(&["ci", "--no-audit", "--no-fund"]);
    }
    steps.push(&["run", "build"]);
    for args in steps {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let status = Command::new("npm")
            .args(args)
            .current_dir(src)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .await;
        match status {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("npm is not installed")
            }
            Err(e) => return Err(e).context("cannot run npm"),
            Ok(s) if !s.success() => bail!("`npm {}` failed ({s})", args.join(" ")),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The file that keeps the bootstrap super admin's e-mail and password (0600).
pub(crate) const LOGIN_FILE: &str = "console-login";
/// The bootstrap super admin's e-mail.
pub(crate) const BOOTSTRAP_EMAIL: &str = "admin@tenantry.local";

/// The bootstrap super admin: created on the first `up` of a data folder.
pub(crate) enum Bootstrap {
    /// Created now; the password is printed once.
    Created { email: String, password: String },
    /// Created by an earlier `up`; its password is in the login file.
    Existing { email: String },
    /// An account with that e-mail exists but this data folder has no login file.
    Foreign,
}

/// Creates the bootstrap super admin unless `data_dir` already has its login file.
///
/// # Errors
///
/// The database refuses the account, or the login file cannot be written.
pub(crate) async fn bootstrap_super_admin(
    database_url: &str,
    data_dir: &Path,
) -> anyhow::Result<Bootstrap> {
    let file = data_dir.join(LOGIN_FILE);
    if let Ok(s) = std::fs::read_to_string(&file) {
        let email = s
            .lines()
            .find_map(|l| l.strip_prefix("email="))
            .unwrap_or(BOOTSTRAP_EMAIL)
            .to_owned();
        return Ok(Bootstrap::Existing { email });
    }
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let cost = tenant_admin::Tuning::from_env()?.bcrypt_cost;
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??
    };
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .context("cannot connect to the database")?;
    let inserted = conn
        .transaction::<_, DieselError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            user::insert_platform_admin(
                conn,
                &NewPlatformAdmin {
                    email: BOOTSTRAP_EMAIL,
                    password_hash: &hash,
                },
            )
            .await
        })
        .await;
    match inserted {
        Ok(_) => {}
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            return Ok(Bootstrap::Foreign);
        }
        Err(e) => return Err(e).context("cannot create the bootstrap super admin"),
    }
    crate::up::write_private(
        &file,
        &format!("email={BOOTSTRAP_EMAIL}\npassword={password}\n"),
    )?;
    Ok(Bootstrap::Created {
        email: BOOTSTRAP_EMAIL.to_owned(),
        password,
    })
}
