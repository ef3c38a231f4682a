//! Input checks shared by the handlers. Each adds field violations to a
//! [`Violations`](tenantry_runtime::error::Violations) so one answer names every bad field.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tenantry_runtime::error::{ApiError, ApiResult, Violations};
use uuid::Uuid;

/// Default page size of every list.
pub(crate) const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page size of every list.
pub(crate) const MAX_PAGE_SIZE: i64 = 100;

/// Length in characters.
pub(crate) fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Checks that `s` has between `min` and `max` characters.
pub(crate) fn length(v: &mut Violations, field: &str, s: &str, min: usize, max: usize) {
    let n = chars(s);
    if n < min {
        if min == 1 {
            v.add(field, "is required");
        } else {
            v.add(field, format!("must be at least {min} characters"));
        }
    } else if n > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

/// Checks an optional text field: empty is fine, else at most `max` characters.
pub(crate) fn max_length(v: &mut Violations, field: &str, s: &str, max: usize) {
    if chars(s) > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

/// Tells whether `s` is a slug: `^[a-z0-9]+(-[a-z0-9]+)*$`.
pub(crate) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a slug: 2–100 characters of lowercase words joined by single hyphens.
pub(crate) fn slug(v: &mut Violations, field: &str, s: &str) {
    if s.is_empty() {
        v.add(field, "is required");
    } else if !(2..=100).contains(&s.len()) {
        v.add(field, "must be 2 to 100 characters");
    } else if !is_slug(s) {
        v.add(
            field,
            "must be lowercase letters and digits in words joined by single hyphens",
        );
    }
}

/// Tells whether `s` looks like an e-mail address (the schema's rule: one `@`, no spaces, a
/// dot in the domain).
pub(crate) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// Checks an e-mail address (≤255 characters); `required` says whether empty is an error.
pub(crate) fn email(v: &mut Violations, field: &str, s: &str, required: bool) {
    if s.is_empty() {
        if required {
            v.add(field, "is required");
        }
    } else if chars(s) > 255 {
        v.add(field, "must be at most 255 characters");
    } else if !is_email(s) {
        v.add(field, "must be an e-mail address");
    }
}

/// Parses a required UUID field.
pub(crate) fn uuid(v: &mut Violations, field: &str, s: &str) -> Option<Uuid> {
    let s = s.trim();
    if s.is_empty() {
        v.add(field, "is required");
        return None;
    }
    match Uuid::parse_str(s) {
        Ok(u) => Some(u),
        Err(_) => {
            v.add(field, "must be a uuid");
            None
        }
    }
}

/// Checks a required idempotency key (1–128 characters).
pub(crate) fn request_id(v: &mut Violations, field: &str, s: &str, required: bool) {
    if s.is_empty() {
        if required {
            v.add(field, "is required");
        }
    } else {
        max_length(v, field, s, 128);
    }
}

/// Resolves a page size: 0 → 50; 1–100 as given; otherwise a violation.
pub(crate) fn page_size(v: &mut Violations, field: &str, n: i32) -> i64 {
    match i64::from(n) {
        0 => DEFAULT_PAGE_SIZE,
        n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        _ => {
            v.add(field, "must be between 0 and 100");
            DEFAULT_PAGE_SIZE
        }
    }
}

/// A keyset position `(created_at, id)` bound to the filters it was issued with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// `created_at` of the last row returned.
    pub(crate) created_at: DateTime<Utc>,
    /// `id` of the last row returned.
    pub(crate) id: Uuid,
}

/// A short fingerprint of a list's filters, so a token cannot be replayed with others.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Encodes an opaque page token.
pub(crate) fn encode_token(cursor: Cursor, filters: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "v1|{}|{}|{filters}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    ))
}

/// Like [`encode_token`], also carrying the total the listing counted on its first page.
pub(crate) fn encode_token_with_total(cursor: Cursor, filters: &str, total: i64) -> String {
    encode_token(cursor, &format!("{filters}~{total}"))
}

/// Reads a token of [`encode_token_with_total`]: the cursor and the carried total.
///
/// # Errors
///
/// INVALID_ARGUMENT naming `page_token` when it is malformed or was issued for other filters.
pub(crate) fn decode_token_with_total(
    token: &str,
    filters: &str,
) -> ApiResult<Option<(Cursor, i64)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || ApiError::field("page_token", "is malformed");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let raw = String::from_utf8(raw).map_err(|_| malformed())?;
    let (_, carried) = raw.rsplit_once('|').ok_or_else(malformed)?;
    let (fp, total) = carried.split_once('~').ok_or_else(malformed)?;
    let total: i64 = total.parse().map_err(|_| malformed())?;
    if total < 0 {
        return Err(malformed());
    }
    let cursor = decode_token(token, &format!("{fp}~{total}"))?.ok_or_else(malformed)?;
    if fp != filters {
        return Err(ApiError::field(
            "page_token",
            "was issued for other filters; start again without a token",
        ));
    }
    Ok(Some((cursor, total)))
}

/// Cuts the `limit + 1` rows a keyset query returned into one page and the token of the next
/// page (empty on the last page).
pub(crate) fn page_of<T>(
    mut rows: Vec<T>,
    limit: i64,
    filters: &str,
    cursor: impl Fn(&T) -> Cursor,
) -> (Vec<T>, String) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match rows.last() {
        Some(last) if more => encode_token(cursor(last), filters),
        _ => String::new(),
    };
    (rows, next)
}

/// Decodes a page token; empty means the first page.
///
/// # Errors
///
/// INVALID_ARGUMENT on `page_token` when it is malformed or was issued for other filters.
pub(crate) fn decode_token(token: &str, filters: &str) -> ApiResult<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || ApiError::field("page_token", "is malformed");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let raw = String::from_utf8(raw).map_err(|_| malformed())?;
    let mut parts = raw.splitn(4, '|');
    let (Some("v1"), Some(micros), Some(id), Some(f)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let micros: i64 = micros.parse().map_err(|_| malformed())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(malformed)?;
    let id = Uuid::parse_str(id).map_err(|_| malformed())?;
    if f != filters {
        return Err(ApiError::field(
            "page_token",
            "was issued for other filters; start again without a token",
        ));
    }
    Ok(Some(Cursor { created_at, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "acme-schools", "a1-b2-c3", "x9"] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "Ab", "a_b", "a b", "é"] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_email("admin@acmeschools.edu"));
        for bad in ["", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b@c.d", "a@.c"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_bind_filters() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("valid time"),
            id: Uuid::new_v4(),
        };
        let t = encode_token(c, "abc");
        assert_eq!(decode_token(&t, "abc").expect("decodes"), Some(c));
        assert!(decode_token(&t, "abd").is_err());
        assert!(decode_token("!!", "abc").is_err());
        assert_eq!(decode_token("", "abc").expect("empty"), None);
    }
}
