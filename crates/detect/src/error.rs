//! Errors of detections, diagnosis and alarms.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query failed (the lake, the engine, or a rule's query).
    #[error(transparent)]
    Query(#[from] flowscope_query::Error),
    /// A configuration or rules file is wrong: file, line, column and what is wrong.
    #[error("{file}:{line}:{column}: {message}")]
    Config {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A threat-intelligence file line that is not an address or CIDR block.
    #[error("{file}:{line}: {message}")]
    Intel {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A filter pattern that does not parse: the pattern and the character offset.
    #[error("filter pattern `{pattern}`, at character {offset}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// 0-based character offset of the problem.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// Arrow could not convert or show a column (its message, with the cause kept).
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The record crate could not write a record as a flow log line.
    #[error(transparent)]
    Record(#[from] flowscope_record::Error),
    /// Anything else that is invalid (a setting, an argument).
    #[error("{0}")]
    Invalid(String),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A notification could not be delivered.
    #[error("notification to {target}: {message}")]
    Notify {
        /// Where it was going.
        target: String,
        /// Why it failed.
        message: String,
    },
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Query(flowscope_query::Error::from(e))
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
