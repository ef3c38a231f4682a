//! Encryption at rest of integration secrets: AES-256-GCM with a random 96-bit nonce per value.
//!
//! A stored secret is `v1:<base64(nonce || ciphertext || tag)>` (standard alphabet, padded). The
//! associated data binds a value to its tenant, integration and secret name, so a ciphertext
//! copied into another tenant's row (or under another name) does not decrypt. The key is
//! `TENANTRY_SECRETS_KEY`, the base64 of 32 random bytes (`openssl rand -base64 32`); it lives
//! in a [`SecretBox`] (zeroed on drop, redacted in `Debug`), and the cipher's key schedule is
//! zeroed on drop too (`aes-gcm`'s `zeroize` feature).
//!
//! Nothing in tenant-settings decrypts today (responses only say whether a secret is set);
//! [`Sealer::open`] is the one way back, for the code that will use a secret.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use uuid::Uuid;

/// Prefix of a value sealed with format version 1.
pub const PREFIX_V1: &str = "v1:";
/// Length of an AES-GCM nonce, bytes.
const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag, bytes.
const TAG_LEN: usize = 16;

/// The 256-bit key that encrypts integration secrets. Cloning shares it; `Debug` redacts it.
#[derive(Clone)]
pub struct SecretsKey(Arc<SecretBox<[u8; 32]>>);

impl SecretsKey {
    /// Parses the base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    ///
    /// # Errors
    ///
    /// A description of what is wrong (never the key itself).
    pub fn from_base64(encoded: &str) -> Result<Self, String> {
        let encoded = encoded.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| "must be base64 (e.g. `openssl rand -base64 32`)".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "must be the base64 of 32 bytes, not of {}",
                bytes.len()
            ));
        }
        Ok(Self(Arc::new(SecretBox::init_with_mut(
            |key: &mut [u8; 32]| key.copy_from_slice(&bytes),
        ))))
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey([REDACTED])")
    }
}

/// Why a stored secret did not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not `v1:` + base64 of at least a nonce and a tag.
    #[error("not a sealed secret")]
    Malformed,
    /// Wrong key, wrong context, or tampered ciphertext.
    #[error("the secret does not decrypt with this key")]
    Decrypt,
}

/// Where a secret belongs; part of the associated data of its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    /// Tenant id.
    pub tenant: Uuid,
    /// Integration name.
    pub integration: &'a str,
    /// Secret name.
    pub name: &'a str,
}

impl SecretContext<'_> {
    fn aad(&self) -> Vec<u8> {
        // Names are restricted to [a-z0-9_-], so '/' cannot be forged inside a part.
        format!(
            "tenantry/integration-secret/v1/{}/{}/{}",
            self.tenant, self.integration, self.name
        )
        .into_bytes()
    }
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

impl Sealer {
    /// A sealer with `key`.
    #[must_use]
    pub fn new(key: &SecretsKey) -> Self {
        let key: &Key<Aes256Gcm> = key.0.expose_secret().into();
        Self {
            cipher: Aes256Gcm::new(key),
        }
    }

    /// Tells whether a stored value is sealed (rather than a legacy plaintext).
    #[must_use]
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX_V1)
    }

    /// Encrypts `plaintext` with a fresh random nonce: `v1:<base64(nonce || ciphertext)>`.
    #[must_use]
    pub fn seal(&self, context: &SecretContext<'_>, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = context.aad();
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // Only fails for messages beyond 64 GiB; secrets are at most 4 KiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX_V1}{}", STANDARD.encode(out))
    }

    /// Decrypts a value [`Sealer::seal`] produced for the same context.
    ///
    /// # Errors
    ///
    /// [`OpenError::Malformed`] for anything but a sealed value, [`OpenError::Decrypt`] for a
    /// wrong key, another context or a tampered value.
    pub fn open(
        &self,
        context: &SecretContext<'_>,
        stored: &str,
    ) -> Result<SecretString, OpenError> {
        let encoded = stored.strip_prefix(PREFIX_V1).ok_or(OpenError::Malformed)?;
        let raw = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
        let aad = context.aad();
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Decrypt)?;
        let text = std::str::from_utf8(&plain).map_err(|_| OpenError::Decrypt)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const KEY: &str = "dGVuYW50cnktdGVzdC1zZWNyZXRzLWtleS0zMmJ5dGU=";
    const OTHER: &str = "b3RoZXItdGVuYW50cnktc2VjcmV0cy1rZXktMzJieXQ=";

    fn ctx(tenant: Uuid) -> SecretContext<'static> {
        SecretContext {
            tenant,
            integration: "stripe",
            name: "api_key",
        }
    }

    #[test]
    fn seals_and_opens() {
        let sealer = Sealer::new(&SecretsKey::from_base64(KEY).unwrap());
        let tenant = Uuid::new_v4();
        let sealed = sealer.seal(&ctx(tenant), "sk_live_very_secret");
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains("sk_live_very_secret"));
        let opened = sealer.open(&ctx(tenant), &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "sk_live_very_secret");
        // A fresh nonce each time: the same plaintext never seals to the same value.
        assert_ne!(sealed, sealer.seal(&ctx(tenant), "sk_live_very_secret"));
        // nonce (12) + plaintext (19) + tag (16), base64.
        let raw = STANDARD.decode(&sealed[PREFIX_V1.len()..]).unwrap();
        assert_eq!(raw.len(), 12 + 19 + 16);
    }

    #[test]
    fn a_wrong_key_a_wrong_context_or_tampering_fails() {
        let sealer = Sealer::new(&SecretsKey::from_base64(KEY).unwrap());
        let other = Sealer::new(&SecretsKey::from_base64(OTHER).unwrap());
        let tenant = Uuid::new_v4();
        let sealed = sealer.seal(&ctx(tenant), "hunter2");
        assert_eq!(
            other.open(&ctx(tenant), &sealed).unwrap_err(),
            OpenError::Decrypt
        );
        assert_eq!(
            sealer.open(&ctx(Uuid::new_v4()), &sealed).unwrap_err(),
            OpenError::Decrypt
        );
        let renamed = SecretContext {
            name: "webhook_secret",
            ..ctx(tenant)
        };
        assert_eq!(
            sealer.open(&renamed, &sealed).unwrap_err(),
            OpenError::Decrypt
        );
        let mut raw = STANDARD.decode(&sealed[PREFIX_V1.len()..]).unwrap();
        raw[20] ^= 1;
        let tampered = format!("{PREFIX_V1}{}", STANDARD.encode(raw));
        assert_eq!(
            sealer.open(&ctx(tenant), &tampered).unwrap_err(),
            OpenError::Decrypt
        );
        for bad in ["hunter2", "v1:", "v1:!!", "v1:AAAA"] {
            assert_eq!(
                sealer.open(&ctx(tenant), bad).unwrap_err(),
                OpenError::Malformed
            );
        }
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(SecretsKey::from_base64(KEY).is_ok());
        // URL-safe without padding is accepted too.
        assert!(SecretsKey::from_base64(KEY.trim_end_matches('=')).is_ok());
        assert!(
            SecretsKey::from_base64("c2hvcnQ=")
                .unwrap_err()
                .contains("of 5")
        );
        assert!(SecretsKey::from_base64("not base64 at all!").is_err());
        let debug = format!("{:?}", SecretsKey::from_base64(KEY).unwrap());
        assert!(!debug.contains(KEY) && debug.contains("REDACTED"));
    }
}
