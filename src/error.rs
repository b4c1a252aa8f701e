//! The one error type that handlers and services return, and its Matrix JSON form.
//!
//! Internal errors (database, I/O) are logged with their detail and shown to the
//! client only as `M_UNKNOWN`, so no storage text ever reaches a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    /// Extra top-level fields (`retry_after_ms`, `soft_logout`, ...).
    pub extra: Map<String, Value>,
    /// User-interactive auth answers 401 with its own body, which has an
    /// errcode only when a stage failed.
    pub uia_body: Option<Value>,
}

impl Error {
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self { status, errcode, message: message.into(), extra: Map::new(), uia_body: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", message)
    }
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
    }
    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
    }
    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", message)
    }
    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "M_UNRECOGNIZED", message)
    }
    pub fn unknown_token(soft_logout: bool) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Unknown or expired access token")
            .with("soft_logout", soft_logout)
    }
    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token")
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", message)
    }
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests")
            .with("retry_after_ms", retry_after_ms)
    }

    /// An unexpected failure: logged in full, shown to the client as M_UNKNOWN.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Internal server error")
    }

    /// A 401 of user-interactive authentication: flows, params, session, completed.
    pub fn uia(body: Value) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", "Authentication needed");
        error.uia_body = Some(body);
        error
    }

    pub fn body(&self) -> Value {
        if let Some(body) = &self.uia_body {
            return body.clone();
        }
        let mut body = self.extra.clone();
        body.insert("errcode".into(), json!(self.errcode));
        body.insert("error".into(), json!(self.message));
        Value::Object(body)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.errcode, self.message)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Self {
        // PostgreSQL refuses a NUL in text (22021) and the escape \u0000 in
        // jsonb (22P05): what the client sent cannot be stored, and nothing was.
        if let crate::storage::StorageError::Database(sqlx::Error::Database(db)) = &e
            && matches!(db.code().as_deref(), Some("22021" | "22P05"))
        {
            return Self::bad_json("The request contains a NUL character, which cannot be stored");
        }
        Self::internal(e)
    }
}
