//! The totals of recent tenant listings (`ListTenants.total_size`), reused for a second.
//!
//! Counting every tenant that matches a listing's filters is the dearest statement of the
//! listing (a scan of the table's matching rows, milliseconds at 20,000 tenants); a console
//! polling its first page, or many operators at once, would otherwise count on every call. A
//! count taken in the last [`MAX_AGE`] for the same filters is reused; this replica's own
//! tenant writes forget every count at once, so only another replica's write can be missing
//! from a total, and for at most [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a count is reused.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);
/// Most filter combinations remembered (each entry is a fingerprint and a number).
const MAX_ENTRIES: usize = 256;

/// Recent counts by filters fingerprint.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    entries: Mutex<HashMap<String, (i64, Instant)>>,
    /// Bumped by every [`Totals::forget`]: a count that was being taken meanwhile may predate
    /// the write, and is not kept.
    generation: AtomicU64,
}

impl Totals {
    /// The count taken for `filters` in the last [`MAX_AGE`], if any.
    pub(crate) fn get(&self, filters: &str) -> Option<i64> {
        let entries = self.entries.lock().ok()?;
        let (n, at) = entries.get(filters)?;
        (at.elapsed() < MAX_AGE).then_some(*n)
    }

    /// The generation to pass to [`Totals::put`]: read it before counting.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers the count just taken for `filters`, unless a write was forgotten since
    /// `generation` was read.
    pub(crate) fn put(&self, filters: String, n: i64, generation: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, at)| at.elapsed() < MAX_AGE);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(filters, (n, Instant::now()));
        }
    }

    /// Forgets every count: a tenant was created, changed or deleted here.
    pub(crate) fn forget(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_reused_for_its_filters_until_forgotten_or_old() {
        let t = Totals::default();
        assert_eq!(t.get("a"), None);
        t.put("a".into(), 7, t.generation());
        assert_eq!(t.get("a"), Some(7));
        assert_eq!(t.get("b"), None, "other filters count on their own");
        t.forget();
        assert_eq!(t.get("a"), None);
        t.put("a".into(), 8, t.generation());
        std::thread::sleep(MAX_AGE + Duration::from_millis(20));
        assert_eq!(t.get("a"), None, "too old");
    }

    #[test]
    fn a_count_taken_across_a_write_is_not_kept() {
        let t = Totals::default();
        let before = t.generation();
        // A tenant is written while the count runs.
        t.forget();
        t.put("a".into(), 7, before);
        assert_eq!(t.get("a"), None);
        t.put("a".into(), 8, t.generation());
        assert_eq!(t.get("a"), Some(8));
    }

    #[test]
    fn it_stays_bounded() {
        let t = Totals::default();
        for i in 0..(MAX_ENTRIES * 3) {
            t.put(i.to_string(), 1, t.generation());
        }
        assert!(t.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX) <= MAX_ENTRIES);
        assert_eq!(t.get(&(MAX_ENTRIES * 3 - 1).to_string()), Some(1));
    }
}
