//! AWS's S3 layout for flow logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use flate2::Compression;
use flate2::write::GzEncoder;
use flowscope_record::{LogFormat, conform, write_lines};
use parquet::arrow::ArrowWriter;
use xxhash_rust::xxh3::xxh3_64;

use super::{Delivery, DeliveryReport, Kind, S3_WINDOW, Window, grouped};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::layout::AwsObject;
use crate::object::Bucket;
use crate::partition::delivery_writer_properties;

/// The size past which AWS does not let a flow log file grow — "The maximum file size for a log
/// file is 75 MB. If the log file reaches the file size limit within the 5-minute period, the
/// flow log stops adding flow log records to it" (AWS, Transit Gateway Flow Logs, *Flow log
/// files*). AWS does not say whether the size is the text's or the gzip object's: a text file
/// is cut on its text, which keeps both within it.
pub const MAX_FILE_BYTES: usize = 75_000_000;

/// Where the layout is written.
#[derive(Clone)]
pub enum S3Target {
    /// A local folder standing for `bucket-and-optional-prefix/`.
    Folder(PathBuf),
    /// A bucket and key prefix.
    Bucket {
        /// The bucket.
        bucket: Arc<Bucket>,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

/// How a flow log's S3 objects are named and shaped.
#[derive(Debug, Clone)]
pub struct S3Layout {
    /// Account in keys and names.
    pub account_id: String,
    /// Region in keys and names.
    pub region: String,
    /// Flow log ID in names.
    pub flow_log_id: String,
    /// The record format (header line, Parquet columns).
    pub format: LogFormat,
    /// Parquet objects instead of gzip text.
    pub parquet: bool,
    /// Hive-compatible prefixes.
    pub hive_compatible_partitions: bool,
    /// An hour level under the day.
    pub per_hour_partition: bool,
    /// Uncompressed size at which a file is closed and another started (AWS:
    /// [`MAX_FILE_BYTES`]).
    pub max_file_bytes: usize,
}

#[derive(Default)]
struct Pending {
    text: Vec<u8>,
    batches: Vec<RecordBatch>,
    bytes: usize,
    rows: u64,
    sequence: u32,
}

/// Writes one flow log's records in AWS's S3 layout, a file per 5-minute window.
pub struct S3Delivery {
    target: S3Target,
    layout: S3Layout,
    open: BTreeMap<i64, Pending>,
    /// Per 5-minute window published: the sequence number its next file takes.
    published: BTreeMap<i64, u32>,
    report: DeliveryReport,
}

impl S3Delivery {
    /// A delivery of `layout` to `target`.
    pub fn new(target: S3Target, layout: S3Layout) -> Self {
        Self {
            target,
            layout,
            open: BTreeMap::new(),
            published: BTreeMap::new(),
            report: DeliveryReport::default(),
        }
    }

    /// Adds `batch`, whose records all end in the 5-minute window starting at `window`.
    ///
    /// # Errors
    /// When the batch does not fit the format, or a full file cannot be written.
    pub fn write(&mut self, window: i64, batch: &RecordBatch) -> Result<()> {
        let window = window.div_euclid(S3_WINDOW) * S3_WINDOW;
        let name = self.layout.flow_log_id.clone();
        let record_error = |source| Error::Record {
            path: name.clone(),
            source,
        };
        if !self.layout.parquet {
            let mut text = Vec::new();
            write_lines(batch, &self.layout.format, &mut text).map_err(record_error)?;
            return self.append_text(window, &text, batch.num_rows() as u64);
        }
        let batch = conform(batch, &self.layout.format).map_err(record_error)?;
        let pending = self.pending(window);
        pending.rows += batch.num_rows() as u64;
        pending.bytes += batch.get_array_memory_size();
        pending.batches.push(batch);
        if pending.bytes >= self.layout.max_file_bytes {
            self.rotate(window)?;
        }
        Ok(())
    }

    /// The open file of `window`, opened with the next sequence number after those published.
    fn pending(&mut self, window: i64) -> &mut Pending {
        let sequence = self.published.get(&window).copied().unwrap_or(0);
        self.open.entry(window).or_insert_with(|| Pending {
            sequence,
            ..Pending::default()
        })
    }

    /// Adds record lines to the window's text file, starting another whenever the next line
    /// would take the file past [`S3Layout::max_file_bytes`] — counted on the text as written,
    /// header included, so a file is never more than the limit (and its gzip object less).
    fn append_text(&mut self, window: i64, mut text: &[u8], mut rows: u64) -> Result<()> {
        let header = self.layout.format.header();
        let max = self.layout.max_file_bytes;
        while !text.is_empty() {
            let pending = self.pending(window);
            if pending.text.is_empty() {
                pending.text.extend_from_slice(header.as_bytes());
                pending.text.push(b'\n');
            }
            // Mostly the whole batch fits.
            if pending.text.len() + text.len() <= max {
                pending.text.extend_from_slice(text);
                pending.rows += rows;
                pending.bytes = pending.text.len();
                return Ok(());
            }
            let room = max.saturating_sub(pending.text.len());
            // The lines that fit (all of them, mostly; at least one in an empty file).
            let mut take = 0;
            let mut lines = 0u64;
            for line in text.split_inclusive(|b| *b == b'\n') {
                if take + line.len() > room && (take > 0 || pending.rows > 0) {
                    break;
                }
                take += line.len();
                lines += 1;
            }
            if take == 0 {
                self.rotate(window)?;
                continue;
            }
            pending.text.extend_from_slice(&text[..take]);
            pending.rows += lines;
            pending.bytes = pending.text.len();
            rows = rows.saturating_sub(lines);
            text = &text[take..];
            if !text.is_empty() {
                self.rotate(window)?;
            }
        }
        Ok(())
    }

    /// Publishes the window's file as it is and opens the next of its sequence.
    fn rotate(&mut self, window: i64) -> Result<()> {
        let full = self.open.remove(&window).unwrap_or_default();
        let sequence = full.sequence;
        self.emit(window, full)?;
        self.open.entry(window).or_default().sequence = sequence + 1;
        Ok(())
    }

    /// Publishes the files of every window that ends at or before `time` (no later record can
    /// belong to them).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn close_before(&mut self, time: i64) -> Result<()> {
        let done: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|w| w + S3_WINDOW <= time)
            .collect();
        for window in done {
            let pending = self.open.remove(&window).expect("listed");
            let next = pending.sequence + 1;
            self.emit(window, pending)?;
            // A record that still comes for the window goes to a file of its own.
            self.published.insert(window, next);
        }
        Ok(())
    }

    /// Publishes what is left.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn finish(mut self) -> Result<DeliveryReport> {
        self.close_before(i64::MAX)?;
        Ok(self.report)
    }

    /// The key (below the target) of a file of `window`.
    fn key(&self, window: i64, sequence: u32) -> String {
        let l = &self.layout;
        let object = AwsObject {
            account_id: l.account_id.clone(),
            region: l.region.clone(),
            flow_log_id: l.flow_log_id.clone(),
            window_start: window,
            parquet: l.parquet,
        };
        let seed = format!("{}/{window}/{sequence}", l.flow_log_id);
        let hash = xxh3_64(seed.as_bytes()) as u32;
        object.key(hash, l.hive_compatible_partitions, l.per_hour_partition)
    }

    fn emit(&mut self, window: i64, pending: Pending) -> Result<()> {
        if pending.rows == 0 {
            return Ok(());
        }
        let key = self.key(window, pending.sequence);
        let body = if self.layout.parquet {
            let schema = self.layout.format.schema();
            let mut writer =
                ArrowWriter::try_new(Vec::new(), schema, Some(delivery_writer_properties()))
                    .map_err(|source| Error::Parquet {
                        path: key.clone(),
                        source,
                    })?;
            for batch in &pending.batches {
                writer.write(batch).map_err(|source| Error::Parquet {
                    path: key.clone(),
                    source,
                })?;
            }
            writer.into_inner().map_err(|source| Error::Parquet {
                path: key.clone(),
                source,
            })?
        } else {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&pending.text)
                .map_err(|e| Error::io(&key, e))?;
            gz.finish().map_err(|e| Error::io(&key, e))?
        };
        let written = match &self.target {
            S3Target::Folder(root) => {
                let path = root.join(&key);
                let name = path.display().to_string();
                let parent = path.parent().expect("keys have folders");
                std::fs::create_dir_all(parent).map_err(|e| Error::io(&name, e))?;
                let mut file = AtomicFile::create(&path).map_err(|e| Error::io(&name, e))?;
                file.write_all(&body).map_err(|e| Error::io(&name, e))?;
                file.commit().map_err(|e| Error::io(&name, e))?;
                name
            }
            S3Target::Bucket { bucket, prefix } => {
                let prefix = prefix.trim_matches('/');
                let full = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}/{key}")
                };
                bucket.put(&full, body)?;
                format!("s3://{}/{full}", bucket.name())
            }
        };
        self.report.outputs.push(written);
        self.report.records += pending.rows;
        Ok(())
    }
}

impl Delivery for S3Delivery {
    /// Each record goes to the file of the 5-minute window its `end` falls in; the files of the
    /// windows that ended are published.
    fn deliver(&mut self, window: &Window<'_>) -> Result<()> {
        let records = window.records;
        for (file_window, rows) in grouped(window, |i| {
            records.span(i).1.div_euclid(S3_WINDOW) * S3_WINDOW
        }) {
            self.write(file_window, &records.batch(&rows))?;
        }
        self.close_before(window.settled)
    }

    fn finish(self: Box<Self>, _now_ms: i64) -> Result<DeliveryReport> {
        S3Delivery::finish(*self)
    }

    fn kind(&self) -> Kind {
        Kind::S3
    }
}
