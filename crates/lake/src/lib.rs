//! Where flow log records come from and where they go.
//!
//! Sources turn files into streams of Arrow batches: [`input::expand`] finds the files a command
//! was pointed at, [`TextReader`] decodes one plain or gzip text file (the header line choosing
//! the format, bad lines skipped and reported, a truncated file keeping what came before the
//! break). Sinks take batches back out: [`sink::open`] writes text, JSON lines, CSV or Parquet to
//! standard output or to an [`AtomicFile`] that appears only when complete.
//!
//! Readers stream: memory is bounded by the batch size, never by the size of the input.

mod atomic;
pub mod aws;
pub mod deliver;
mod error;
pub mod info;
pub mod ingest;
pub mod input;
pub mod layout;
pub mod maintenance;
pub mod object;
pub mod partition;
pub mod sink;
pub mod snapshot;
mod store;
pub mod synthetic;
mod text;

pub use atomic::AtomicFile;
pub use error::{Error, Result};
pub use input::Input;
pub use sink::{Destination, OutputKind, RecordSink, SinkOptions};
pub use store::{Commit, Holder, Lake, RETIRED_GRACE, SourceEntry, SourceIdentity};
pub use text::{MAX_LINE, TextOptions, TextReader, Wrapping};
