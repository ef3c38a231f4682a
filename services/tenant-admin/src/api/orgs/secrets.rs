//! Secrets: invitation tokens and access tokens (passwords: `crate::passwords`). None of them
//! is ever logged; an invitation token is stored only as its SHA-256.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use tenantry_auth::{OrgRole, Signer};
use tenantry_runtime::{ApiError, ApiResult};

use uuid::Uuid;

pub(crate) use crate::api::auth::ACCESS_TOKEN_TTL_SECS;

/// A new invitation token (32 random bytes, URL-safe base64) and its SHA-256.
pub(crate) fn new_invitation_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of an invitation token.
pub(crate) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Mints an access token for a member of `tenant`.
///
/// # Errors
///
/// INTERNAL when signing fails.
pub(crate) fn access_token(
    signer: &Signer,
    user: Uuid,
    tenant: Uuid,
    role: OrgRole,
) -> ApiResult<String> {
    signer
        .mint(
            &user.to_string(),
            None,
            Some((tenant, role)),
            ACCESS_TOKEN_TTL_SECS,
        )
        .map_err(ApiError::internal)
}
