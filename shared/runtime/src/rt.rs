//! The tokio runtime a service runs on, sized by `TENANTRY_WORKER_THREADS`.
//!
//! - Unset: one worker thread per core the process may use (tokio's default; it honours a
//!   container's CPU quota).
//! - `1`: a current-thread runtime. Every call runs on one thread, with no work stealing and
//!   no cross-thread wake-ups; bcrypt still runs on the blocking pool. This is the layout for a
//!   machine the services share with Postgres and each other: on the 2-core benchmark machine
//!   it served the cached read at the same rate with a third of the p99 of two workers
//!   (`docs/benchmarks.md`).
//! - `N` ≥ 2: a multi-thread runtime with `N` workers.

use tokio::runtime::{Builder, Runtime};

/// The heap every process linking this crate allocates from (each service, `tenantctl`, the
/// bench and its served processes): mimalloc (its 2.x line) instead of glibc's malloc. Under
/// S2's load (`docs/benchmarks.md`) a third of tenant-admin's CPU was glibc's `malloc`,
/// `free`, their consolidation and the copies of `realloc`; tonic, h2 and prost allocate and
/// free small buffers on every call, which mimalloc's per-thread free lists serve without
/// locks. It is built without transparent huge pages (`no_thp`): mimalloc otherwise asks for
/// them on its arenas, and each idle service held 8 MiB more in 2 MiB pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::config::{self, ConfigError};

/// The worker threads asked for by `TENANTRY_WORKER_THREADS` (`None`: one per core).
///
/// # Errors
///
/// [`ConfigError::Invalid`] when it is not a whole number of at least 1.
pub fn worker_threads() -> Result<Option<usize>, ConfigError> {
    parse_workers(config::var("TENANTRY_WORKER_THREADS").as_deref())
}

fn parse_workers(value: Option<&str>) -> Result<Option<usize>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(ConfigError::Invalid {
            name: "TENANTRY_WORKER_THREADS",
            detail: format!("{value:?} is not a whole number of at least 1"),
        }),
    }
}

/// Builds the runtime for `workers` (see [`worker_threads`]).
///
/// # Errors
///
/// The I/O error of a runtime that cannot start (threads, the I/O driver).
pub fn build(workers: Option<usize>) -> std::io::Result<Runtime> {
    let mut builder = match workers {
        Some(1) => Builder::new_current_thread(),
        Some(n) => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Builds the runtime `TENANTRY_WORKER_THREADS` asks for.
///
/// # Errors
///
/// An invalid variable, or a runtime that cannot start.
pub fn from_env() -> anyhow::Result<Runtime> {
    Ok(build(worker_threads()?)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_variable_is_a_whole_number_of_at_least_one() {
        assert_eq!(parse_workers(None).unwrap(), None);
        assert_eq!(parse_workers(Some("1")).unwrap(), Some(1));
        assert_eq!(parse_workers(Some(" 4 ")).unwrap(), Some(4));
        for bad in ["0", "-1", "two", "1.5"] {
            let e = parse_workers(Some(bad)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("TENANTRY_WORKER_THREADS is invalid"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn one_worker_is_a_current_thread_runtime_and_more_are_multi_thread() {
        use tokio::runtime::RuntimeFlavor;
        let one = build(Some(1)).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        // Blocking work (bcrypt) still has its own pool.
        let hashed = one
            .block_on(async { tokio::task::spawn_blocking(|| 6 * 7).await })
            .unwrap();
        assert_eq!(hashed, 42);
        let three = build(Some(3)).unwrap();
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let default = build(None).unwrap();
        assert_eq!(
            default.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
    }
}
