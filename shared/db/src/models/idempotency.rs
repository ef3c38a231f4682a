//! Request ids (AIP-155) of creates and provisioning (table `idempotency_keys`).
//!
//! Use inside the transaction that does the work:
//!
//! 1. [`claim`] the `(method, key)` with a hash of the request (minus `request_id`, minus any
//!    secret). A concurrent claim of the same key waits on the unique index until the first
//!    transaction ends.
//! 2. On [`Claim::Fresh`] do the work, then [`complete`] with the encoded response (never a
//!    secret: clear one-time passwords before storing). On [`Claim::Replay`] decode and return
//!    the stored response; on [`Claim::Mismatch`] answer INVALID_ARGUMENT on `request_id`.
//!
//! If the work fails the transaction rolls back and the claim with it, so a retry runs again.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: do the work and [`complete`] it.
    Fresh,
    /// The same request ran before: this is its encoded response.
    Replay(Vec<u8>),
    /// The key was used with another payload.
    Mismatch,
    /// The key was claimed but has no response (a crashed run that committed only the claim).
    Pending,
}

/// Claims `(method, key)` for a request whose payload hashes to `request_hash`.
///
/// # Errors
///
/// The database error.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    method: &str,
    key: &str,
    organization_id: Option<Uuid>,
    request_hash: &[u8],
) -> QueryResult<Claim> {
    use crate::schema::idempotency_keys::dsl as k;
    let inserted = diesel::insert_into(k::idempotency_keys)
        .values((
            k::method.eq(method),
            k::key.eq(key),
            k::organization_id.eq(organization_id),
            k::request_hash.eq(request_hash),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let (hash, response): (Vec<u8>, Option<Vec<u8>>) = k::idempotency_keys
        .find((method, key))
        .select((k::request_hash, k::response))
        .first(conn)
        .await?;
    Ok(if hash != request_hash {
        Claim::Mismatch
    } else if let Some(r) = response {
        Claim::Replay(r)
    } else {
        Claim::Pending
    })
}

/// Stores the response of a fresh claim (and the tenant it acted on, so a hard delete of the
/// tenant removes the key with it).
///
/// # Errors
///
/// The database error.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    method: &str,
    key: &str,
    organization_id: Option<Uuid>,
    response: &[u8],
) -> QueryResult<()> {
    use crate::schema::idempotency_keys::dsl as k;
    diesel::update(k::idempotency_keys.find((method, key)))
        .set((
            k::response.eq(Some(response)),
            k::organization_id.eq(organization_id),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
