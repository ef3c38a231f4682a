//! The one error type of every handler and its single mapping to a gRPC status.
//!
//! - Validation → INVALID_ARGUMENT with a `google.rpc.BadRequest` naming each field.
//! - diesel `NotFound` → NOT_FOUND; unique violation → ALREADY_EXISTS; foreign-key violation →
//!   FAILED_PRECONDITION; check violation → INVALID_ARGUMENT (the constraint names the field);
//!   a lost connection or pool timeout → UNAVAILABLE.
//! - Anything else → INTERNAL with a generic message, logged once here (never the details to the
//!   caller).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A handler error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: (field, description) pairs.
    #[error("invalid argument")]
    InvalidArgument(Vec<(String, String)>),
    /// The thing does not exist, or belongs to another tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit would be passed.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Credentials are wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// A dependency (database, another service) is down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail is logged, not returned.
    #[error("internal: {0}")]
    Internal(String),
    /// A status from another service, passed through.
    #[error("{0}")]
    Status(Status),
}

/// A handler result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// One invalid field.
    #[must_use]
    pub fn field(field: &str, description: &str) -> Self {
        Self::InvalidArgument(vec![(field.to_owned(), description.to_owned())])
    }

    /// An internal error with a loggable detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}

impl From<DieselError> for ApiError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound("resource"),
            DieselError::DatabaseError(kind, info) => {
                let constraint = info.constraint_name().unwrap_or_default().to_owned();
                match kind {
                    DatabaseErrorKind::UniqueViolation => {
                        Self::AlreadyExists(format!("already exists ({constraint})"))
                    }
                    DatabaseErrorKind::ForeignKeyViolation => Self::FailedPrecondition(format!(
                        "a referenced row is missing ({constraint})"
                    )),
                    DatabaseErrorKind::CheckViolation => {
                        // Constraints are named `<table>_<field>...`.
                        let field = constraint
                            .split_once('_')
                            .map(|(_, f)| f.to_owned())
                            .unwrap_or(constraint.clone());
                        Self::InvalidArgument(vec![(field, format!("violates {constraint}"))])
                    }
                    DatabaseErrorKind::ClosedConnection => {
                        Self::Unavailable("the database is unavailable".into())
                    }
                    DatabaseErrorKind::SerializationFailure => {
                        Self::Unavailable("concurrent update: retry".into())
                    }
                    _ => Self::Internal(format!("database: {}", info.message())),
                }
            }
            other => Self::Internal(format!("database: {other}")),
        }
    }
}

impl From<tenantry_db::PoolError> for ApiError {
    fn from(e: tenantry_db::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool");
        Self::Unavailable("the database is unavailable".into())
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> Self {
        Self::Status(s)
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument(fields) => {
                let mut details = ErrorDetails::new();
                let mut message = String::new();
                for (field, description) in &fields {
                    details.add_bad_request_violation(field, description);
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&format!("{field}: {description}"));
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error")
            }
            ApiError::Status(s) => s,
        }
    }
}

/// Collects field violations, so one answer names every bad field.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation.
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push((field.to_owned(), description.into()));
    }

    /// Records a violation unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) {
        if !ok {
            self.add(field, description);
        }
    }

    /// Tells whether any violation was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ends validation.
    ///
    /// # Errors
    ///
    /// INVALID_ARGUMENT with every recorded violation.
    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }
}
