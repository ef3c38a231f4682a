use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::caller::{Caller, OrgRole, PlatformRole};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// The one algorithm family a deployment accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret (development).
    Hs256,
    /// Ed25519 public keys, chosen by `kid`.
    EdDsa,
    /// RSA-SHA256 public keys, chosen by `kid`.
    Rs256,
}

impl Algorithm {
    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(Self::Hs256),
            "EDDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            other => Err(KeyError::Config(format!(
                "unsupported jwt algorithm {other:?}: use HS256, EdDSA or RS256"
            ))),
        }
    }
}

/// Key material and claim expectations, read from the environment by each service.
#[derive(Clone)]
pub struct AuthConfig {
    /// The accepted algorithm family.
    pub algorithm: Algorithm,
    /// The HS256 secret (HS256 only).
    pub hs256_secret: Option<SecretString>,
    /// Public keys in PEM, by `kid` (EdDSA and RS256).
    pub public_keys: Vec<(String, String)>,
    /// The private key (PEM) and its `kid` used to sign service tokens (EdDSA and RS256).
    pub signing_key: Option<(String, SecretString)>,
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud`.
    pub audience: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm)
            .field(
                "public_keys",
                &self.public_keys.iter().map(|k| &k.0).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Builds a development configuration with an HS256 secret and the default issuer and
    /// audience (`tenantry`).
    #[must_use]
    pub fn hs256(secret: impl Into<String>) -> Self {
        Self {
            algorithm: Algorithm::Hs256,
            hs256_secret: Some(SecretString::from(secret.into())),
            public_keys: Vec::new(),
            signing_key: None,
            issuer: "tenantry".into(),
            audience: "tenantry".into(),
        }
    }
}

/// A key or configuration problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The configuration is incomplete or inconsistent.
    #[error("auth configuration: {0}")]
    Config(String),
    /// A PEM key could not be read.
    #[error("auth key {kid:?}: {source}")]
    Key {
        /// The key id.
        kid: String,
        /// The parser's error.
        source: jsonwebtoken::errors::Error,
    },
}

/// Why a token was refused. Every variant maps to UNAUTHENTICATED; the reason is logged, never
/// sent to the caller in detail beyond a short message.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not a well-formed JWT, or its header names another algorithm.
    #[error("malformed token or unsupported algorithm")]
    Malformed,
    /// The token names a `kid` this service does not know.
    #[error("unknown key id")]
    UnknownKey,
    /// Signature, `exp`, `nbf`, `iss` or `aud` failed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The claims are inconsistent (unknown role, `org_role` without `org`...).
    #[error("invalid claims: {0}")]
    Claims(&'static str),
}

/// The claims of a Tenantry access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject: user id, or service name.
    pub sub: String,
    /// Platform role: `super_admin`, `service`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Role inside the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Claims {
    /// Builds claims valid from now for `ttl_secs`.
    #[must_use]
    pub fn new(
        config: &AuthConfig,
        sub: impl Into<String>,
        role: Option<PlatformRole>,
        tenant: Option<(Uuid, OrgRole)>,
        ttl_secs: i64,
    ) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            sub: sub.into(),
            role: role.map(|r| r.as_str().to_owned()),
            org: tenant.map(|t| t.0.to_string()),
            org_role: tenant.map(|t| t.1.as_str().to_owned()),
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            exp: now + ttl_secs,
            nbf: now,
            iat: now,
            jti: Some(Uuid::new_v4().to_string()),
        }
    }

    fn into_caller(self) -> Result<Caller, TokenError> {
        let platform_role = match self.role.as_deref() {
            None | Some("") => None,
            Some(r) => Some(r.parse().map_err(|()| TokenError::Claims("unknown role"))?),
        };
        let tenant_id = match self.org.as_deref() {
            None | Some("") => None,
            Some(o) => {
                Some(Uuid::parse_str(o).map_err(|_| TokenError::Claims("org is not a uuid"))?)
            }
        };
        let org_role = match self.org_role.as_deref() {
            None | Some("") => None,
            Some(r) => Some(
                r.parse()
                    .map_err(|()| TokenError::Claims("unknown org_role"))?,
            ),
        };
        if org_role.is_some() && tenant_id.is_none() {
            return Err(TokenError::Claims("org_role without org"));
        }
        if self.sub.is_empty() {
            return Err(TokenError::Claims("empty sub"));
        }
        Ok(Caller {
            subject: self.sub,
            platform_role,
            tenant_id,
            org_role,
            token_id: self.jti,
            actor: None,
        })
    }
}

/// Verifies bearer tokens against the configured keys.
#[derive(Clone)]
pub struct Verifier {
    algorithm: Algorithm,
    hs256: Option<DecodingKey>,
    by_kid: HashMap<String, DecodingKey>,
    validation: Validation,
    /// Tokens whose signature and claims were already verified, with their validity window:
    /// backend services send the same token on every call, and checking a signature again
    /// (HMAC, and far more so RSA or Ed25519) would be most of a cached read's cost. A hit
    /// needs the exact token text, and is refused once outside `nbf..exp` (with the leeway).
    verified: Arc<RwLock<HashMap<Box<str>, Verified>>>,
}

/// A verified token's caller and validity window.
#[derive(Debug, Clone)]
struct Verified {
    caller: Caller,
    nbf: i64,
    exp: i64,
}

/// Most tokens kept verified; the map is emptied when it is full (hits resume at once for the
/// tokens in use).
const VERIFIED_CAPACITY: usize = 8_192;

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the configuration lacks the key its algorithm needs, or a PEM key does
    /// not parse.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut validation = Validation::new(config.algorithm.jwt());
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);

        let mut hs256 = None;
        let mut by_kid = HashMap::new();
        match config.algorithm {
            Algorithm::Hs256 => {
                let secret = config
                    .hs256_secret
                    .as_ref()
                    .ok_or_else(|| KeyError::Config("HS256 needs TENANTRY_JWT_SECRET".into()))?;
                if secret.expose_secret().len() < 32 {
                    return Err(KeyError::Config(
                        "the HS256 secret must be at least 32 bytes".into(),
                    ));
                }
                hs256 = Some(DecodingKey::from_secret(secret.expose_secret().as_bytes()));
            }
            Algorithm::EdDsa | Algorithm::Rs256 => {
                if config.public_keys.is_empty() {
                    return Err(KeyError::Config(
                        "EdDSA and RS256 need at least one public key (TENANTRY_JWT_PUBLIC_KEYS)"
                            .into(),
                    ));
                }
                for (kid, pem) in &config.public_keys {
                    let key = match config.algorithm {
                        Algorithm::EdDsa => DecodingKey::from_ed_pem(pem.as_bytes()),
                        _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
                    }
                    .map_err(|source| KeyError::Key {
                        kid: kid.clone(),
                        source,
                    })?;
                    by_kid.insert(kid.clone(), key);
                }
            }
        }
        Ok(Self {
            algorithm: config.algorithm,
            hs256,
            by_kid,
            validation,
            verified: Arc::new(RwLock::new(HashMap::new())),
        })
    }

    /// Verifies a token and returns its caller.
    ///
    /// # Errors
    ///
    /// [`TokenError`] for any token that is not valid now.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if let Ok(map) = self.verified.read()
            && let Some(v) = map.get(token)
            && now - leeway < v.exp
            && v.nbf <= now + leeway
        {
            return Ok(v.caller.clone());
        }
        self.verify_uncached(token)
    }

    fn verify_uncached(&self, token: &str) -> Result<Caller, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.algorithm.jwt() {
            return Err(TokenError::Malformed);
        }
        let key = match &self.hs256 {
            Some(k) => k,
            None => header
                .kid
                .as_deref()
                .and_then(|kid| self.by_kid.get(kid))
                .ok_or(TokenError::UnknownKey)?,
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let (nbf, exp) = (data.claims.nbf, data.claims.exp);
        let caller = data.claims.into_caller()?;
        if let Ok(mut map) = self.verified.write() {
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
            map.insert(
                token.into(),
                Verified {
                    caller: caller.clone(),
                    nbf,
                    exp,
                },
            );
        }
        Ok(caller)
    }
}

/// Signs tokens with the configured private key (service tokens, `tenantctl token`, login).
#[derive(Clone)]
pub struct Signer {
    config: AuthConfig,
    key: EncodingKey,
    header: Header,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.header.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds a signer.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the configuration has no signing key for its algorithm.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut header = Header::new(config.algorithm.jwt());
        let key = match config.algorithm {
            Algorithm::Hs256 => {
                let secret = config
                    .hs256_secret
                    .as_ref()
                    .ok_or_else(|| KeyError::Config("HS256 needs TENANTRY_JWT_SECRET".into()))?;
                EncodingKey::from_secret(secret.expose_secret().as_bytes())
            }
            Algorithm::EdDsa | Algorithm::Rs256 => {
                let (kid, pem) = config.signing_key.as_ref().ok_or_else(|| {
                    KeyError::Config("signing needs TENANTRY_JWT_SIGNING_KEY".into())
                })?;
                header.kid = Some(kid.clone());
                match config.algorithm {
                    Algorithm::EdDsa => EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()),
                    _ => EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()),
                }
                .map_err(|source| KeyError::Key {
                    kid: kid.clone(),
                    source,
                })?
            }
        };
        Ok(Self {
            config: config.clone(),
            key,
            header,
        })
    }

    /// Returns the configuration the signer was built from.
    #[must_use]
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Signs arbitrary claims.
    ///
    /// # Errors
    ///
    /// The encoder's error (it does not fail for well-formed keys).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
    }

    /// Mints a token for a subject with the given roles, valid for `ttl_secs`.
    ///
    /// # Errors
    ///
    /// The encoder's error.
    pub fn mint(
        &self,
        sub: &str,
        role: Option<PlatformRole>,
        tenant: Option<(Uuid, OrgRole)>,
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&Claims::new(&self.config, sub, role, tenant, ttl_secs))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn config() -> AuthConfig {
        AuthConfig::hs256("a-test-secret-of-at-least-32-bytes!!")
    }

    /// A token whose validity (leeway included) ends `secs` from now.
    fn token_valid_for(secs: i64) -> String {
        let config = config();
        let mut claims = Claims::new(&config, "svc", Some(PlatformRole::Service), None, 60);
        let leeway = i64::try_from(LEEWAY_SECS).unwrap();
        claims.exp = chrono::Utc::now().timestamp() - leeway + secs;
        Signer::new(&config).unwrap().sign(&claims).unwrap()
    }

    #[test]
    fn a_verified_token_is_answered_from_the_cache_and_still_expires() {
        let verifier = Verifier::new(&config()).unwrap();
        let token = token_valid_for(2);
        let first = verifier.verify(&token).unwrap();
        assert!(
            verifier
                .verified
                .read()
                .unwrap()
                .contains_key(token.as_str())
        );
        assert_eq!(verifier.verify(&token).unwrap(), first);
        std::thread::sleep(std::time::Duration::from_millis(3_100));
        // The cached entry must not outlive the token.
        assert!(verifier.verify(&token).is_err());
    }

    #[test]
    fn only_the_exact_token_text_hits_the_cache() {
        let verifier = Verifier::new(&config()).unwrap();
        let token = token_valid_for(60);
        verifier.verify(&token).unwrap();
        // Same claims, tampered signature: verified afresh, and refused.
        let at = token.len() - 10;
        let c = token.as_bytes()[at];
        let forged = format!(
            "{}{}{}",
            &token[..at],
            if c == b'A' { 'B' } else { 'A' },
            &token[at + 1..]
        );
        assert!(verifier.verify(&forged).is_err());
        assert!(
            !verifier
                .verified
                .read()
                .unwrap()
                .contains_key(forged.as_str())
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let verifier = Verifier::new(&config()).unwrap();
        for _ in 0..(VERIFIED_CAPACITY + 10) {
            verifier.verify(&token_valid_for(60)).unwrap();
        }
        assert!(verifier.verified.read().unwrap().len() <= VERIFIED_CAPACITY);
    }
}
