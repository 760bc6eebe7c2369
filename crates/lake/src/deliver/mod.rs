//! Delivery writers: records leave the emulator the way AWS delivers them.
//!
//! [`S3Delivery`] writes AWS's S3 layout (key prefixes, file names with the flow log ID, the
//! 5-minute window and a hash, a header line, gzip; or Parquet) to a folder or a bucket.
//! [`CloudWatchDelivery`] writes a log group as a folder with one stream file per interface.
//! [`FirehoseDelivery`] posts records to an HTTP endpoint in Firehose's request format, retrying
//! a failed request with the same request ID.

mod cloudwatch;
mod firehose;
mod s3;

pub use cloudwatch::CloudWatchDelivery;
pub use firehose::{FirehoseDelivery, FirehoseSettings};
pub use s3::{S3Delivery, S3Layout, S3Target};

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
