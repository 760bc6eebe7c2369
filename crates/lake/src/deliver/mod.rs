//! Delivery writers: records leave the emulator the way AWS delivers them.
//!
//! Every destination implements [`Delivery`]: it is handed each aggregation window's records
//! ([`Window`]) as the window closes, and finished once at the end.
//!
//! [`S3Delivery`] writes AWS's S3 layout (key prefixes, file names with the flow log ID, the
//! 5-minute window and a hash, a header line, gzip; or Parquet) to a folder or a bucket.
//! [`CloudWatchDelivery`] writes a log group as a folder with one stream file per interface.
//! [`FirehoseDelivery`] posts records to an HTTP endpoint in Firehose's request format, retrying
//! a failed request with the same request ID.

mod cloudwatch;
mod firehose;
mod s3;

use arrow_array::RecordBatch;
use flowscope_record::LogFormat;

use crate::error::Result;

pub use cloudwatch::{CLOUDWATCH_LAG, CloudWatchDelivery};
pub use firehose::{
    FirehoseBody, FirehoseDelivery, FirehoseRecord, FirehoseReply, FirehoseSettings,
};
pub use s3::{MAX_FILE_BYTES, S3Delivery, S3Layout, S3Target};

/// The length of an S3 delivery window, seconds: a file holds the records whose `end` falls in
/// one 5-minute window.
pub const S3_WINDOW: i64 = 300;

/// What a delivery wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Files, objects, streams or HTTP requests written.
    pub outputs: Vec<String>,
    /// Records delivered.
    pub records: u64,
}

/// The records of one flow log in one aggregation window, as a delivery takes them: each
/// delivery groups them its own way (by 5-minute file, by interface) and asks for batches.
pub trait Records {
    /// The flow log's ID (`fl-…`), which errors name.
    fn flow_log_id(&self) -> &str;

    /// How many records.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow log's format.
    fn format(&self) -> &LogFormat;

    /// Record `i`'s `start` and `end`, Unix seconds.
    fn span(&self, i: usize) -> (i64, i64);

    /// Record `i`'s interface ID (the name of its CloudWatch Logs stream).
    fn interface_id(&self, i: usize) -> &str;

    /// Records `rows`, in that order, as a batch in the flow log's format.
    fn batch(&self, rows: &[usize]) -> RecordBatch;
}

/// One closed aggregation window of one flow log.
pub struct Window<'a> {
    /// Its records.
    pub records: &'a dyn Records,
    /// The window's end, Unix seconds: when AWS publishes its records.
    pub end: i64,
    /// No record still to come ends before this second (windows of other interfaces may still
    /// be open): what a destination may publish for good.
    pub settled: i64,
}

/// One destination of flow logs: an S3 layout, a CloudWatch Logs log group, a Firehose stream.
pub trait Delivery: Send {
    /// Takes a closed window's records (several flow logs may deliver to one destination).
    ///
    /// # Errors
    /// When a file, object or request cannot be written.
    fn deliver(&mut self, window: &Window<'_>) -> Result<()>;

    /// Delivers what is left; `now_ms` is the time of the last delivery.
    ///
    /// # Errors
    /// When a file, object or request cannot be written.
    fn finish(self: Box<Self>, now_ms: i64) -> Result<DeliveryReport>;

    /// Which of AWS's three destinations it is.
    fn kind(&self) -> Kind;
}

/// The three destinations AWS delivers flow logs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Objects in AWS's S3 layout.
    S3,
    /// Log streams of a CloudWatch Logs log group.
    CloudWatchLogs,
    /// Requests to an Amazon Data Firehose HTTP endpoint.
    Firehose,
}

impl Kind {
    /// What its outputs are called in a report: `files`, `streams`, `Firehose requests`.
    pub fn unit(self) -> &'static str {
        match self {
            Self::S3 => "files",
            Self::CloudWatchLogs => "streams",
            Self::Firehose => "Firehose requests",
        }
    }
}

/// The records of `window` grouped by `key`, each group's rows in order, groups in key order.
fn grouped<K: Ord>(window: &Window<'_>, key: impl Fn(usize) -> K) -> Vec<(K, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<K, Vec<usize>> = std::collections::BTreeMap::new();
    for i in 0..window.records.len() {
        groups.entry(key(i)).or_default().push(i);
    }
    groups.into_iter().collect()
}

/// Records `rows` as flow log lines in the records' format (no header).
fn lines_of(records: &dyn Records, rows: &[usize]) -> Result<String> {
    let mut text = Vec::new();
    flowscope_record::write_lines(&records.batch(rows), records.format(), &mut text).map_err(
        |source| crate::Error::Record {
            path: format!("flow log {}", records.flow_log_id()),
            source,
        },
    )?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}
