//! Password hashing: bcrypt on threads of its own, with a semaphore that bounds how many
//! hashes run at once (one per CPU by default), so a burst of logins cannot starve the runtime
//! or queue unbounded work. Plain-text passwords are never logged or stored.
//!
//! The hashing threads run at a lower scheduling priority (nice [`HASHING_NICE`]) than the
//! threads serving calls: on a busy machine a hash takes the CPU the reads leave idle, instead
//! of half of it. On an idle machine a hash runs at full speed.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use tenantry_runtime::error::{ApiError, ApiResult, Violations};
use tokio::sync::{OnceCell, Semaphore};

/// Shortest password accepted.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// bcrypt reads at most 72 bytes; longer passwords are refused rather than truncated.
pub(crate) const MAX_PASSWORD_BYTES: usize = 72;

/// The "nice" value of the hashing threads (Linux; 0 is a serving thread's). At 10 a hashing
/// thread competing with a serving thread for one core gets about a tenth of it.
pub(crate) const HASHING_NICE: i32 = 10;

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// The bcrypt hasher shared by every handler.
#[derive(Debug)]
pub(crate) struct Passwords {
    cost: u32,
    permits: Arc<Semaphore>,
    /// The queue of the hashing threads (as many as permits); they end when it is dropped.
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    /// A hash of a random password, verified against for unknown users so that their answer
    /// takes as long as a wrong password.
    dummy: OnceCell<String>,
}

impl Passwords {
    /// A hasher with bcrypt `cost` and at most `concurrency` hashes at once.
    ///
    /// # Errors
    ///
    /// When the operating system refuses a new thread.
    pub(crate) fn new(cost: u32, concurrency: usize) -> std::io::Result<Self> {
        let concurrency = concurrency.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..concurrency {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(concurrency)),
            jobs: std::sync::Mutex::new(tx),
            dummy: OnceCell::new(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        // The permit goes with the job: a caller that gives up (its client went away) does not
        // free a slot while its hash still runs, so the queue stays bounded by the permits.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Box::new(move || {
                let out = work();
                drop(permit);
                let _ = tx.send(out);
            }))
            .map_err(ApiError::internal)?;
        rx.await.map_err(ApiError::internal)
    }

    /// Hashes a password at the configured cost.
    ///
    /// # Errors
    ///
    /// INTERNAL when bcrypt fails (it does not for a valid cost).
    pub(crate) async fn hash(&self, password: &SecretString) -> ApiResult<String> {
        let password = password.clone();
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(password.expose_secret(), cost))
            .await?
            .map_err(ApiError::internal)
    }

    /// Verifies a password against a bcrypt hash; a malformed hash verifies as false.
    ///
    /// # Errors
    ///
    /// INTERNAL when the blocking pool is gone.
    pub(crate) async fn verify(&self, password: &SecretString, hash: &str) -> ApiResult<bool> {
        let password = password.clone();
        let hash = hash.to_owned();
        self.blocking(move || bcrypt::verify(password.expose_secret(), &hash).unwrap_or(false))
            .await
    }

    /// Spends the time of one verification without a user (unknown user, locked account), so
    /// that every failed login takes about as long. Always false.
    ///
    /// # Errors
    ///
    /// INTERNAL when the blocking pool is gone.
    pub(crate) async fn verify_dummy(&self, password: &SecretString) -> ApiResult<bool> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                let random = SecretString::from(generate());
                self.hash(&random).await
            })
            .await?
            .clone();
        self.verify(password, &dummy).await.map(|_| false)
    }
}

/// Lowers the calling thread's scheduling priority to [`HASHING_NICE`] (Linux: a thread's nice
/// value is its own). Where that is refused, the thread keeps the default priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICE)
    {
        tracing::warn!(error = %e, "could not lower the priority of a bcrypt thread");
    }
}

/// A new random password: 16 random bytes, URL-safe base64 (22 characters).
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks the password policy: at least 8 characters, at most 72 bytes.
pub(crate) fn check_policy(v: &mut Violations, field: &str, password: &str) {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        v.add(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        );
    } else if password.len() > MAX_PASSWORD_BYTES {
        v.add(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies() {
        let p = Passwords::new(4, 2).expect("threads");
        let secret = SecretString::from("correct horse".to_owned());
        let h = p.hash(&secret).await.expect("hash");
        assert!(p.verify(&secret, &h).await.expect("verify"));
        let wrong = SecretString::from("wrong horse".to_owned());
        assert!(!p.verify(&wrong, &h).await.expect("verify"));
        assert!(!p.verify(&secret, "not a hash").await.expect("verify"));
        assert!(!p.verify_dummy(&secret).await.expect("dummy"));
        assert_eq!(generate().len(), 22);
    }

    /// The hashing runs on the `bcrypt-*` threads, at nice 10, and two hashes run at once.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_low_priority_threads_of_their_own() {
        let p = Passwords::new(4, 2).expect("threads");
        let seen = p
            .blocking(|| {
                let name = std::thread::current().name().map(str::to_owned);
                let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
                (name, nice.ok())
            })
            .await
            .expect("job");
        assert!(
            seen.0.as_deref().is_some_and(|n| n.starts_with("bcrypt-")),
            "{seen:?}"
        );
        assert_eq!(seen.1, Some(HASHING_NICE));
        // Two permits, two threads: two jobs that wait for each other both finish.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (a, b) = tokio::join!(
            p.blocking({
                let barrier = Arc::clone(&barrier);
                move || barrier.wait().is_leader()
            }),
            p.blocking({
                let barrier = Arc::clone(&barrier);
                move || barrier.wait().is_leader()
            }),
        );
        assert!(a.expect("a") ^ b.expect("b"), "one leader");
    }

    /// A call given up while its hash runs keeps its permit until the hash ends.
    #[tokio::test]
    async fn an_abandoned_hash_holds_its_slot_until_it_ends() {
        let p = Passwords::new(4, 1).expect("threads");
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let call = p.blocking(move || {
            let _ = started_tx.send(());
            let _ = wait.recv();
        });
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(50), async {
            tokio::join!(call, started).0
        })
        .await;
        assert!(abandoned.is_err(), "the job is still running");
        assert_eq!(p.permits.available_permits(), 0, "its slot is still taken");
        release.send(()).expect("job waits");
        let next = p.blocking(|| 7).await.expect("next job");
        assert_eq!(next, 7);
        assert_eq!(p.permits.available_permits(), 1);
    }
}
