//! Errors of the record vocabulary.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors that are the caller's or the data's fault; nothing here is an internal bug.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A log format string that AWS would not accept.
    #[error("invalid log format: {reason}")]
    Format {
        /// What is wrong, with a suggestion where one helps.
        reason: String,
    },
    /// A record that could not be parsed, located in its file.
    #[error("{0}")]
    Record(#[from] Rejection),
    /// A batch whose columns do not fit the format it is written with.
    #[error("cannot write column `{column}` as a flow log field: {reason}")]
    Column {
        /// The offending column.
        column: String,
        /// Why it cannot be written.
        reason: String,
    },
}

/// Why a value or a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Digits were expected.
    NotANumber,
    /// A number outside the field's range.
    OutOfRange {
        /// Largest accepted value.
        max: i64,
    },
    /// Neither an IPv4 nor an IPv6 address.
    InvalidAddress,
    /// Not `ACCEPT` or `REJECT`.
    UnknownAction,
    /// Not `OK`, `NODATA` or `SKIPDATA`.
    UnknownLogStatus,
    /// The line has more or fewer fields than the format.
    FieldCount {
        /// Fields in the format.
        expected: usize,
        /// Fields on the line.
        found: usize,
    },
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is longer than any flow log record can be.
    TooLong {
        /// The limit in bytes.
        max: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotANumber => f.write_str("not a number"),
            Reason::OutOfRange { max } => write!(f, "out of range (0 to {max})"),
            Reason::InvalidAddress => f.write_str("not an IPv4 or IPv6 address"),
            Reason::UnknownAction => f.write_str("unknown action (expected ACCEPT or REJECT)"),
            Reason::UnknownLogStatus => {
                f.write_str("unknown log status (expected OK, NODATA or SKIPDATA)")
            }
            Reason::FieldCount { expected, found } => {
                write!(
                    f,
                    "wrong field count: the format has {expected} fields, the line {found}"
                )
            }
            Reason::NotUtf8 => f.write_str("not valid UTF-8"),
            Reason::TooLong { max } => write!(f, "longer than {max} bytes"),
        }
    }
}

/// Why one line could not be decoded, without its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The field whose value is bad; `None` for faults of the whole line.
    pub field: Option<&'static str>,
    /// The offending value (truncated for display), empty for whole-line faults.
    pub value: String,
    /// What is wrong.
    pub reason: Reason,
}

impl LineError {
    /// An error of the whole line rather than of one field.
    pub fn line(reason: Reason) -> Self {
        Self {
            field: None,
            value: String::new(),
            reason,
        }
    }

    pub(crate) fn field(field: &'static str, value: &[u8], reason: Reason) -> Self {
        const SHOWN: usize = 64;
        let shown = &value[..value.len().min(SHOWN)];
        let mut text = String::from_utf8_lossy(shown).into_owned();
        if value.len() > SHOWN {
            text.push('…');
        }
        Self {
            field: Some(field),
            value: text,
            reason,
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field}: {} (`{}`)", self.reason, self.value),
            None => write!(f, "line: {}", self.reason),
        }
    }
}

/// A rejected line with its location: `FILE:LINE: field: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {error}")]
pub struct Rejection {
    /// The file (or `-` for standard input) the line came from.
    pub file: String,
    /// The 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub error: LineError,
}
