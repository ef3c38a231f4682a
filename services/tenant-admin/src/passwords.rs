//! Password hashing: bcrypt on tokio's blocking pool, with a semaphore that bounds how many
//! hashes run at once (one per CPU by default), so a burst of logins cannot starve the runtime
//! or queue unbounded work. Plain-text passwords are never logged or stored.

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

/// The bcrypt hasher shared by every handler.
#[derive(Debug)]
pub(crate) struct Passwords {
    cost: u32,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against for unknown users so that their answer
    /// takes as long as a wrong password.
    dummy: OnceCell<String>,
}

impl Passwords {
    /// A hasher with bcrypt `cost` and at most `concurrency` hashes at once.
    pub(crate) fn new(cost: u32, concurrency: usize) -> Self {
        Self {
            cost,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: OnceCell::new(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
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
        let p = Passwords::new(4, 2);
        let secret = SecretString::from("correct horse".to_owned());
        let h = p.hash(&secret).await.expect("hash");
        assert!(p.verify(&secret, &h).await.expect("verify"));
        let wrong = SecretString::from("wrong horse".to_owned());
        assert!(!p.verify(&wrong, &h).await.expect("verify"));
        assert!(!p.verify(&secret, "not a hash").await.expect("verify"));
        assert!(!p.verify_dummy(&secret).await.expect("dummy"));
        assert_eq!(generate().len(), 22);
    }
}
