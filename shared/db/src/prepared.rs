//! Keeping writes prepared.
//!
//! diesel keeps a connection's statements prepared, keyed by their SQL text, but leaves out
//! every `UPDATE`, every upsert and every `INSERT` that writes a `DEFAULT`: their text varies
//! with the values (which columns a changeset sets), so it cannot promise the cache stays small.
//! Such a statement is parsed, analysed and planned by Postgres on every call, one extra round
//! trip each. On the 2-core benchmark machine that was most of UpdateTenant's cost: Postgres
//! spent about 1 ms of CPU per call re-preparing the `UPDATE … RETURNING` (46 columns, with
//! row-level security) and the audit row.
//!
//! [`Cached`] keeps such a statement prepared under its full SQL text and bind types (diesel's
//! key for any statement without a static type id), so each distinct text is prepared once
//! per connection. The growth diesel guards against is bounded by the caller instead:
//!
//! - [`Cached::always`] for statements whose text the code fixes (a changeset of plain fields,
//!   a code path that always sets the same columns);
//! - [`Cached::within`] for statements whose text the request shapes (an update mask): a
//!   [`Shapes`] budget admits at most so many distinct shapes per call site, process-wide; past
//!   it a new shape runs unprepared, as diesel would run it, so a caller cycling through masks
//!   cannot grow the connections' caches (and Postgres backends' memory) without bound.

use std::sync::Mutex;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement kept in the connection's prepared-statement cache under its SQL text.
#[derive(Debug, Clone)]
pub struct Cached<Q> {
    query: Q,
    keep: bool,
}

impl<Q> Cached<Q> {
    /// `query`, whose SQL text the code fixes, kept prepared.
    pub const fn always(query: Q) -> Self {
        Self { query, keep: true }
    }

    /// `query`, whose SQL text depends on the request, kept prepared if its `shape` (any number
    /// that tells its distinct texts apart, e.g. a bit per column set) fits in `budget`.
    pub fn within(query: Q, budget: &Shapes, shape: u64) -> Self {
        Self {
            query,
            keep: budget.admit(shape),
        }
    }
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        if self.keep {
            // Still walk the query: a fragment that cannot be built fails here as before.
            self.query.is_safe_to_cache_prepared(backend).map(|_| true)
        } else {
            self.query.is_safe_to_cache_prepared(backend)
        }
    }
}

/// No static id: the cache keys the statement by its SQL text and bind types, which tell
/// every shape apart.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

/// The shape of a changeset that sets the columns flagged in `set`: a bit per column, in order.
#[must_use]
pub fn shape_of(set: &[bool]) -> u64 {
    set.iter()
        .enumerate()
        .fold(0, |bits, (i, on)| bits | (u64::from(*on) << i))
}

/// How many distinct shapes of one statement may be kept prepared (see [`Cached::within`]).
#[derive(Debug)]
pub struct Shapes {
    limit: usize,
    seen: Mutex<Vec<u64>>,
}

impl Shapes {
    /// A budget of `limit` shapes.
    #[must_use]
    pub const fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Whether `shape` is (or now becomes) one of the admitted shapes.
    pub fn admit(&self, shape: u64) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&shape) {
            return true;
        }
        if seen.len() < self.limit {
            seen.push(shape);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{Shapes, shape_of};

    #[test]
    fn a_shape_has_a_bit_per_column_set() {
        assert_eq!(shape_of(&[true, false, true]), 0b101);
        assert_eq!(shape_of(&[]), 0);
    }

    #[test]
    fn a_budget_admits_its_first_shapes_and_keeps_admitting_them() {
        let budget = Shapes::new(2);
        assert!(budget.admit(0b01));
        assert!(budget.admit(0b10));
        assert!(!budget.admit(0b11), "a third shape is over the budget");
        assert!(budget.admit(0b01), "an admitted shape stays admitted");
        assert!(!budget.admit(0b11));
    }
}
