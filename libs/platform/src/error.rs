//! One mapping from errors to `tonic::Status`, so every service answers alike: INVALID_ARGUMENT
//! names the fields (with `google.rpc.BadRequest` details), NOT_FOUND names the key,
//! FAILED_PRECONDITION names the state, PERMISSION_DENIED names the permission, and internal
//! failures are logged once here and answered without internals.

use tonic_types::{ErrorDetails, StatusExt};
use xinyong_proto::common::v1::FieldViolation;

/// An error a handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("permission `{permission}` is required: {detail}")]
    PermissionDenied { permission: String, detail: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A field violation.
pub fn violation(field: impl Into<String>, reason: impl Into<String>) -> FieldViolation {
    FieldViolation { field: field.into(), reason: reason.into() }
}

/// A required free text from a caller: trimmed; empty or longer than `max` characters pushes a
/// problem naming `field`.
pub fn required_text<'a>(field: &str, value: &'a str, max: usize, problems: &mut Vec<FieldViolation>) -> &'a str {
    let value = value.trim();
    if value.is_empty() {
        problems.push(violation(field, "required"));
    } else if value.chars().count() > max {
        problems.push(violation(field, format!("at most {max} characters")));
    }
    value
}

/// An optional day from a caller, `YYYY-MM-DD` (surrounding spaces allowed): `None` when empty, and
/// when it is not a day, which pushes a problem naming `field`.
pub fn optional_day(field: &str, text: &str, problems: &mut Vec<FieldViolation>) -> Option<chrono::NaiveDate> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if parsed.is_none() {
        problems.push(violation(field, "must be YYYY-MM-DD"));
    }
    parsed
}

/// A keyset page of a list whose ids are UUIDv7: the size (1–500, 0 for 50) and the id to start
/// after, from the token the previous page gave.
pub fn uuid_page(size: i32, token: &str) -> Result<(i64, Option<uuid::Uuid>), ApiError> {
    let limit = match size {
        0 => 50,
        size @ 1..=500 => i64::from(size),
        _ => return Err(ApiError::invalid("page_size", "between 1 and 500 (0 for 50)")),
    };
    if token.is_empty() {
        return Ok((limit, None));
    }
    let after =
        uuid::Uuid::parse_str(token).map_err(|_| ApiError::invalid("page_token", "not a token this method gave"))?;
    Ok((limit, Some(after)))
}

/// Cut `rows` (read with one more than `limit` to tell) to a page, and the token of the next page:
/// the last id listed, or empty when there is no more.
pub fn keyset_page<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> (Vec<T>, String) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() <= limit {
        return (rows, String::new());
    }
    rows.truncate(limit);
    let token = rows.last().map(|row| id(row).to_string()).unwrap_or_default();
    (rows, token)
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![violation(field, reason)])
    }

    /// `Ok` when no problem was found, else INVALID_ARGUMENT naming every one: the end of a
    /// request's validation.
    pub fn check(problems: Vec<FieldViolation>) -> Result<(), ApiError> {
        if problems.is_empty() { Ok(()) } else { Err(ApiError::InvalidArgument(problems)) }
    }

    /// An unexpected failure: logged here, once, answered as INTERNAL with a reference.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(error.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> ApiError {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                ApiError::Unavailable(format!("the database is unreachable, retry later ({error})"))
            }
            _ => ApiError::internal(error),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> tonic::Status {
        let message = error.to_string();
        match error {
            ApiError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for item in &violations {
                    details.add_bad_request_violation(item.field.clone(), item.reason.clone());
                }
                tonic::Status::with_error_details(tonic::Code::InvalidArgument, message, details)
            }
            ApiError::NotFound { .. } => tonic::Status::not_found(message),
            ApiError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            ApiError::AlreadyExists(_) => tonic::Status::already_exists(message),
            ApiError::PermissionDenied { .. } => tonic::Status::permission_denied(message),
            ApiError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            ApiError::Unavailable(_) => tonic::Status::unavailable(message),
            ApiError::Internal(detail) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = %detail, "internal error");
                tonic::Status::internal(format!("internal error, reference {reference}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field_in_message_and_details() {
        let status: tonic::Status = ApiError::InvalidArgument(vec![
            violation("credit_code", "check digit should be L, found X"),
            violation("name", "required"),
        ])
        .into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("credit_code: check digit should be L, found X"));
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[1].field, "name");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status: tonic::Status = ApiError::internal("password authentication failed for user x").into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("password"));
    }

    #[test]
    fn not_found_names_the_key() {
        let status: tonic::Status = ApiError::NotFound { what: "subject", key: "91110000600037341L".into() }.into();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "subject `91110000600037341L` not found");
    }
}
