//! Small helpers to derive connection strings from one another.

use url::Url;

/// Returns `url` with its database name replaced.
///
/// # Errors
///
/// A parse error for a string that is not a URL.
pub fn with_database(url: &str, database: &str) -> Result<String, url::ParseError> {
    let mut u = Url::parse(url)?;
    u.set_path(&format!("/{database}"));
    Ok(u.to_string())
}

/// Returns `url` with its user and password replaced (an empty password removes it).
///
/// # Errors
///
/// A parse error for a string that is not a URL, or one that cannot carry credentials.
pub fn with_user(url: &str, user: &str, password: &str) -> Result<String, url::ParseError> {
    let mut u = Url::parse(url)?;
    u.set_username(user)
        .map_err(|()| url::ParseError::EmptyHost)?;
    u.set_password((!password.is_empty()).then_some(password))
        .map_err(|()| url::ParseError::EmptyHost)?;
    Ok(u.to_string())
}

/// Returns the database name of `url`, if any.
#[must_use]
pub fn database_of(url: &str) -> Option<String> {
    let u = Url::parse(url).ok()?;
    let db = u.path().trim_start_matches('/');
    (!db.is_empty()).then(|| db.to_owned())
}
