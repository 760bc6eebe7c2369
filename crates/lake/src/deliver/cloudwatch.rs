//! A CloudWatch Logs log group as a folder: one file per stream (`eni-…-all.jsonl`), one JSON
//! event per line, as `aws logs get-log-events` shows them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::{Delivery, DeliveryReport, Kind, Window, grouped, lines_of};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// How long after its aggregation window ends CloudWatch Logs receives a record, seconds:
/// flow logs publish to CloudWatch Logs about every 5 minutes.
pub const CLOUDWATCH_LAG: i64 = 300;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    timestamp: i64,
    message: &'a str,
    ingestion_time: i64,
}

/// Writes the events of one log group; several flow logs may share it (their records then share
/// one stream per interface, as in CloudWatch Logs).
pub struct CloudWatchDelivery {
    folder: PathBuf,
    streams: BTreeMap<String, AtomicFile>,
    report: DeliveryReport,
}

impl CloudWatchDelivery {
    /// The log group `log_group_name` under `root`.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(root: PathBuf, log_group_name: &str) -> Result<Self> {
        let folder = root.join(log_group_name.trim_start_matches('/'));
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(folder.display().to_string(), e))?;
        Ok(Self {
            folder,
            streams: BTreeMap::new(),
            report: DeliveryReport::default(),
        })
    }

    /// Appends events to the stream of `interface_id` (`eni-…-all`): `(timestamp ms, message)`,
    /// received by CloudWatch Logs at `ingestion_ms`.
    ///
    /// # Errors
    /// When the stream file cannot be written.
    pub fn append<'a>(
        &mut self,
        interface_id: &str,
        events: impl IntoIterator<Item = (i64, &'a str)>,
        ingestion_ms: i64,
    ) -> Result<()> {
        let stream = format!("{interface_id}-all");
        let path = self.folder.join(format!("{stream}.jsonl"));
        let name = path.display().to_string();
        if !self.streams.contains_key(&stream) {
            let file = AtomicFile::create(&path).map_err(|e| Error::io(&name, e))?;
            self.streams.insert(stream.clone(), file);
        }
        let file = self.streams.get_mut(&stream).expect("inserted");
        let mut events: Vec<(i64, &str)> = events.into_iter().collect();
        events.sort_by_key(|(t, _)| *t);
        for (timestamp, message) in events {
            let event = Event {
                timestamp,
                message,
                ingestion_time: ingestion_ms,
            };
            serde_json::to_writer(&mut *file, &event).map_err(|e| Error::io(&name, e.into()))?;
            file.write_all(b"\n").map_err(|e| Error::io(&name, e))?;
            self.report.records += 1;
        }
        Ok(())
    }

    /// Makes every stream file visible.
    ///
    /// # Errors
    /// When a file cannot be committed.
    pub fn finish(mut self) -> Result<DeliveryReport> {
        for (_, file) in std::mem::take(&mut self.streams) {
            let name = file.path().display().to_string();
            self.report.outputs.push(name.clone());
            file.commit().map_err(|e| Error::io(&name, e))?;
        }
        Ok(self.report)
    }
}

impl Delivery for CloudWatchDelivery {
    /// Each record goes to its interface's stream, received [`CLOUDWATCH_LAG`] seconds after the
    /// window's end.
    fn deliver(&mut self, window: &Window<'_>) -> Result<()> {
        let records = window.records;
        for (interface, rows) in grouped(window, |i| records.interface_id(i)) {
            let text = lines_of(records, &rows)?;
            let events = rows
                .iter()
                .map(|i| records.span(*i).0 * 1000)
                .zip(text.lines());
            self.append(interface, events, (window.end + CLOUDWATCH_LAG) * 1000)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _now_ms: i64) -> Result<DeliveryReport> {
        CloudWatchDelivery::finish(*self)
    }

    fn kind(&self) -> Kind {
        Kind::CloudWatchLogs
    }
}
