//! Errors of sources and sinks.

use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading or writing flow logs; each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input or output file could not be opened, listed or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file broke off while being read (a truncated gzip stream, a read error); the lines
    /// before `line` were kept.
    #[error("{path}: read failed after line {line}: {source}")]
    Truncated {
        /// The file.
        path: String,
        /// The last line read in full.
        line: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A format or schema problem from the record layer.
    #[error("{path}: {source}")]
    Record {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: flowscope_record::Error,
    },
    /// A file that is not a flow log: no header line, and its first line is no record of the
    /// format.
    #[error(
        "{path}: not a flow log (no header line, and the first line is not a record of the format); skipped"
    )]
    NotFlowLog {
        /// The file.
        path: String,
    },
    /// Writing or reading Parquet failed.
    #[error("{path}: {source}")]
    Parquet {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Writing JSON or CSV failed.
    #[error("{path}: {source}")]
    Arrow {
        /// The file concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: arrow_schema::ArrowError,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the error is a closed pipe on output (`flowscope ... | head`), which is no failure.
    pub fn is_broken_pipe(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = source {
            if let Some(io) = error.downcast_ref::<io::Error>()
                && io.kind() == io::ErrorKind::BrokenPipe
            {
                return true;
            }
            source = error.source();
        }
        false
    }
}
