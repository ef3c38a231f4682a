//! Models and the queries that return them, one module per table group. Queries are `async fn`
//! taking `&mut AsyncPgConnection` inside a transaction whose [`crate::Scope`] is already set.

pub mod audit;
pub mod backup;
pub mod billing;
pub mod idempotency;
pub mod invitation;
pub mod member;
pub mod organization;
pub mod outbox;
pub mod provisioning;
pub mod settings;
pub mod usage;
pub mod user;
