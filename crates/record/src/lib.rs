//! The flow log vocabulary: what a VPC flow log record is, and how it moves between text and Arrow.
//!
//! Everything else in flowscope speaks in the terms defined here. [`FIELDS`] is the registry of
//! every field AWS defines (versions 2 to 11) with its text name, its Parquet column name, the
//! version that introduced it and its type. A [`LogFormat`] is an ordered choice of fields, parsed
//! from the `${field} ...` strings of `create-flow-logs` or recognised from the header line of an
//! S3 file. [`TextDecoder`] turns lines into Arrow [`RecordBatch`](arrow_array::RecordBatch)es
//! with AWS's column names, rejecting bad lines with the field and the reason, and
//! [`write_lines`] turns batches back into lines byte for byte.
//!
//! The crate does no I/O: readers and writers of files and objects live in `flowscope-lake`, so
//! this crate stays small, fast to build, and easy to fuzz.

mod decode;
mod encode;
mod error;
mod field;
mod format;
pub mod net;
pub mod position;
pub mod protocol;
mod schema;
pub mod synth;
pub mod time;

pub use decode::{DEFAULT_BATCH_SIZE, TextDecoder};
pub use encode::write_lines;
pub use error::{Error, LineError, Reason, Rejection, Result};
pub use field::{FIELDS, FieldKind, FieldSpec, edit_distance, lookup, nearest, suggest};
pub use format::{DEFAULT_FORMAT, LogFormat};
pub use schema::{canonical_schema, conform, shared_null};
