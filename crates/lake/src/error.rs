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
    /// The first line is plainly a header (field names) but names an unknown field or one twice;
    /// decoding the file in another format would swap its columns, so it is not read.
    #[error("{path}: line {line}: a header line that is not valid: {reason}")]
    Header {
        /// The file.
        path: String,
        /// The header's line number.
        line: u64,
        /// Which field is unknown (and the nearest known one) or repeated.
        reason: String,
    },
    /// The lake has another version of this source's key, and this one does not continue it
    /// (its first bytes are not that version's): taking it could take records twice.
    #[error(
        "{path}: the lake has another version of `{key}` ({earlier} bytes; this one has {size}) \
         and this one does not continue it; not taken, so that no record is taken twice \
         (if it is another log under the same name, ingest it with --allow-changed)"
    )]
    Changed {
        /// The file or object.
        path: String,
        /// The key sources are remembered by.
        key: String,
        /// The size of the longest version taken before.
        earlier: u64,
        /// This version's size.
        size: u64,
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
