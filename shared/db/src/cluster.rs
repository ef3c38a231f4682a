//! A private Postgres cluster in a folder, for `tenantctl up` and for tests when no database is
//! configured.
//!
//! It uses the installed Postgres server binaries (`PG_BIN`, else `pg_config --bindir`, else the
//! newest `/usr/lib/postgresql/*/bin`). Postgres refuses to run as root, so when the current
//! user is root every server command runs as the `postgres` account through `runuser`, with a
//! folder that account owns. Layout of the base folder: `pgdata/` (the cluster), `port` (the
//! port it listens on, 127.0.0.1 only), `postgres.log`, `lock` (serializes concurrent starts).

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// Errors of the private cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No Postgres server binaries were found.
    #[error(
        "no Postgres server binaries found: install PostgreSQL (postgresql-15 or newer) or set PG_BIN"
    )]
    NoBinaries,
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// What ran.
        command: String,
        /// Its output.
        detail: String,
    },
    /// File system error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A running private cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    base: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds the Postgres server binaries.
///
/// # Errors
///
/// [`ClusterError::NoBinaries`] when none is installed.
pub fn bin_dir() -> Result<PathBuf, ClusterError> {
    if let Ok(p) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return Ok(p);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, p)) = found.pop() {
        return Ok(p);
    }
    which("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or(ClusterError::NoBinaries)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}

impl Cluster {
    /// Starts (initializing it first when needed) the cluster in `base`, or attaches to it when
    /// it already runs. `durable = false` turns off fsync for throwaway test clusters.
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when a Postgres command fails.
    pub fn start(base: &Path, durable: bool) -> Result<Self, ClusterError> {
        Self::start_with(base, durable, "")
    }

    /// Like [`Cluster::start`], with `extra_conf` (lines of `postgresql.conf`, such as
    /// `shared_preload_libraries = 'pg_stat_statements'`) appended when the cluster is
    /// initialized.
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when a Postgres command fails.
    pub fn start_with(base: &Path, durable: bool, extra_conf: &str) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(base)?;
        let base = base.canonicalize()?;
        let as_postgres = is_root();
        if as_postgres {
            chown_postgres(&base)?;
        }
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join("lock"))?;
        let _lock =
            Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;

        let bin = bin_dir()?;
        let mut cluster = Self {
            base: base.clone(),
            bin,
            port: 0,
            as_postgres,
        };
        let data = cluster.data_dir();
        if !data.join("PG_VERSION").exists() {
            if data.exists() {
                std::fs::remove_dir_all(&data)?;
            }
            let data_s = data.display().to_string();
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &data_s,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )?;
            let mut conf = String::from(
                "\n# written by tenantry\nlisten_addresses = '127.0.0.1'\nmax_connections = 300\nshared_buffers = 128MB\n",
            );
            if !durable {
                conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
            }
            conf.push_str(extra_conf);
            conf.push('\n');
            let conf_path = data.join("postgresql.conf");
            let mut existing = std::fs::read_to_string(&conf_path)?;
            existing.push_str(&conf);
            std::fs::write(&conf_path, existing)?;
        }
        let port_file = base.join("port");
        if cluster.running() {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                cluster.port = port;
                return Ok(cluster);
            }
            cluster.stop()?;
        }
        cluster.port = free_port()?;
        std::fs::write(&port_file, cluster.port.to_string())?;
        let opts = format!("-p {} -k {}", cluster.port, base.display());
        let data_s = data.display().to_string();
        let log = base.join("postgres.log").display().to_string();
        cluster.run(
            "pg_ctl",
            &[
                "-D", &data_s, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        )?;
        Ok(cluster)
    }

    /// The data folder.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("pgdata")
    }

    /// The port the cluster listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL for database `db`.
    #[must_use]
    pub fn admin_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Tells whether the server runs.
    #[must_use]
    pub fn running(&self) -> bool {
        let data_s = self.data_dir().display().to_string();
        self.command("pg_ctl", &["-D", &data_s, "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Stops the server (fast shutdown: open sessions are ended).
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let data_s = self.data_dir().display().to_string();
        self.run("pg_ctl", &["-D", &data_s, "-m", "fast", "-w", "stop"])
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path).args(args);
            c
        } else {
            let mut c = Command::new(path);
            c.args(args);
            c
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), ClusterError> {
        let out = self
            .command(program, args)
            .current_dir(&self.base)
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ClusterError::Command {
                command: format!("{program} {}", args.join(" ")),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }
}

fn chown_postgres(path: &Path) -> Result<(), ClusterError> {
    let out = Command::new("chown")
        .args(["-R", "postgres:"])
        .arg(path)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Command {
            command: format!("chown -R postgres: {}", path.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
