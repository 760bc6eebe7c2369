//! The server's errors.

use std::path::Path;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::delivery::BadBody;

/// What can go wrong serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] flowscope_lake::Error),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] flowscope_query::Error),
    /// A detection, diagnosis or alarm failed.
    #[error(transparent)]
    Detect(#[from] flowscope_detect::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Something that should not happen with valid data.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request refused or failed: the HTTP status and what to tell the client, answered as
/// `{"error": message, "position": {"line", "column", "offset", "length"}}` (the position only
/// for a query with a located mistake). Every endpoint of the JSON API and the CloudWatch
/// endpoint answers its errors through this type; Firehose wraps the same status and message in
/// its own reply.
#[derive(Debug)]
pub struct ApiError {
    /// The status to answer with.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// Where in the request's query text, when known.
    pub position: Option<Value>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            position: None,
        }
    }

    /// A 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 500: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A query's mistake, located in `text` when the error knows where.
    pub fn query(e: &flowscope_query::Error, text: &str) -> Self {
        let mut error = Self::bad_request(e.to_string());
        error.position = e.position().map(|p| {
            let (line, column) = p.line_col(text);
            json!({"line": line, "column": column, "offset": p.offset, "length": p.len})
        });
        error
    }
}

impl From<&BadBody> for ApiError {
    fn from(e: &BadBody) -> Self {
        Self::new(e.status(), e.message())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.message));
        if let Some(p) = self.position {
            body.insert("position".into(), p);
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}
