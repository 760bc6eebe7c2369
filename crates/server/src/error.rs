//! The server's errors.

use std::path::Path;

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
