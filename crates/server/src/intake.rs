//! Records arriving over HTTP (Firehose deliveries, CloudWatch Logs subscription payloads):
//! decoded, made durable in a write-ahead log before they are acknowledged, readable by queries
//! at once (the engine's [`Pending`] buffer), and committed to the lake in batches.
//!
//! Exactly once: every delivery has an id (Firehose's `requestId`; a checksum of the payload
//! for CloudWatch). An id already in the log or in the lake's manifest (a committed delivery is
//! a source of its commit) is acknowledged again and not taken twice. After a crash the log is
//! replayed at start-up; a delivery whose commit had completed is recognised by its id.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use flowscope_detect::Accumulator;
use flowscope_lake::ingest::{append, lake_batch};
use flowscope_lake::partition::{NO_TIME, with_time};
use flowscope_lake::{Lake, SourceEntry, SourceIdentity, TextOptions, TextReader};
use flowscope_query::Pending;
use flowscope_record::LogFormat;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// The checksum recorded for a delivery in the lake's manifest: its identity is its id alone.
const DELIVERY_CHECKSUM: &str = "delivery-id";

/// How every log entry begins (`LogEntry` serialises `id` first).
const ENTRY_START: &str = "{\"id\":";

/// Rejections kept for `/api/status`.
const KEPT_REJECTIONS: usize = 50;

/// One accepted delivery as the write-ahead log holds it.
#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    /// `firehose/<requestId>` or `cloudwatch/<checksum>`.
    id: String,
    /// The flow log lines, newline-separated.
    text: String,
}

/// Counters shown by `/api/status`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Deliveries taken in.
    pub deliveries: u64,
    /// Deliveries answered again without taking them (a retried id).
    pub duplicates: u64,
    /// Requests refused (bad key, bad body).
    pub refused: u64,
    /// Records taken in.
    pub records: u64,
    /// Lines rejected (kept out, reported).
    pub rejected: u64,
    /// Commits made to the lake.
    pub commits: u64,
    /// Records waiting in the buffer.
    pub pending: u64,
    /// The latest rejections: delivery, line, field and reason.
    pub last_rejections: Vec<String>,
    /// Per source (`firehose`, `cloudwatch`, `ingest` for work other commands hand over, and
    /// each followed source by its URL).
    #[serde(skip)]
    pub by_source: std::collections::BTreeMap<String, SourceStats>,
    /// Seconds spent committing, over all commits.
    #[serde(skip)]
    pub commit_seconds: f64,
}

/// What one source brought in.
#[derive(Debug, Default, Clone)]
pub struct SourceStats {
    /// Deliveries (or handed-over ingests) taken.
    pub deliveries: u64,
    /// Deliveries answered again without taking them.
    pub duplicates: u64,
    /// Records taken.
    pub records: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// Bytes of flow log text (or of files) read.
    pub bytes: u64,
    /// The latest `end` among its records, Unix seconds (0 before any).
    pub newest_end: i64,
    /// Failures (a request refused, an object that could not be read).
    pub errors: u64,
    /// The latest failure, for `/api/status`.
    pub last_error: Option<String>,
}

/// The source a delivery id names: `firehose/…` or `cloudwatch/…`.
fn source_of(id: &str) -> &'static str {
    if id.starts_with("cloudwatch/") {
        "cloudwatch"
    } else {
        "firehose"
    }
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Taken in: records, rejected lines.
    New(u64, u64),
    /// Already taken before.
    Duplicate,
}

struct Inner {
    lake: Lake,
    wal: File,
    wal_path: PathBuf,
    /// The log's length up to its last complete, fsynced entry: a failed append is cut back to
    /// it before anything else is written, so a torn entry never runs into the next one.
    wal_len: u64,
    /// An append failed and the log could not be cut back yet: nothing is acknowledged until
    /// it is.
    wal_torn: bool,
    seen: HashSet<SourceIdentity>,
    /// Lake-schema rows not committed yet, and the deliveries they came from.
    rows: Vec<RecordBatch>,
    sources: Vec<SourceEntry>,
    stats: Stats,
}

/// The lake's single writer while the server runs.
pub struct Intake {
    inner: Mutex<Inner>,
    pending: Pending,
    format: Option<LogFormat>,
    /// Metric filters fed as records arrive (live alarms).
    pub metrics: Option<Arc<std::sync::Mutex<Accumulator>>>,
    /// Total requests refused (outside the lock, for handlers that refuse early).
    refused: AtomicU64,
}

/// The latest `end` of the records of `batches` (0 when none has one).
fn newest_end(batches: &[RecordBatch]) -> i64 {
    use arrow_array::cast::AsArray;
    let mut newest = 0;
    for b in batches {
        let Some(ends) = b.column_by_name("end") else {
            continue;
        };
        let Ok(ends) = arrow_cast::cast(ends, &arrow_schema::DataType::Int64) else {
            continue;
        };
        let ends = ends.as_primitive::<arrow_array::types::Int64Type>();
        for end in ends.iter().flatten() {
            newest = newest.max(end);
        }
    }
    newest
}

fn identity(id: &str) -> SourceIdentity {
    SourceIdentity::new(id, 0, DELIVERY_CHECKSUM)
}

impl Intake {
    /// Takes the lake's write lock, replays the write-ahead log and commits what it held.
    ///
    /// # Errors
    /// [`Error::Lake`] when the lake cannot be opened for writing (another writer runs) or the
    /// log cannot be read or committed.
    pub fn open(
        root: &Path,
        pending: Pending,
        format: Option<LogFormat>,
        metrics: Option<Arc<std::sync::Mutex<Accumulator>>>,
    ) -> Result<Self> {
        let lake = crate::handoff::open_writer(root)?;
        let dir = root.join("_flowscope").join("intake");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let wal_path = dir.join("wal.jsonl");
        let seen = lake.ingested()?;
        let replay = read_log(&wal_path)?;
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(|e| Error::io(&wal_path, e))?;
        let wal_len = wal
            .metadata()
            .and_then(|m| complete_prefix(&wal_path, 0, m.len()))
            .map_err(|e| Error::io(&wal_path, e))?;
        let intake = Self {
            inner: Mutex::new(Inner {
                lake,
                wal,
                wal_path,
                wal_len,
                // A torn last entry (a crash mid-append) is cut off before the first append.
                wal_torn: true,
                seen,
                rows: Vec::new(),
                sources: Vec::new(),
                stats: Stats::default(),
            }),
            pending,
            format,
            metrics,
            refused: AtomicU64::new(0),
        };
        Ok(intake.with_replayed(replay))
    }

    fn with_replayed(self, entries: Vec<LogEntry>) -> Self {
        {
            let mut inner = self.inner.try_lock().expect("not shared yet");
            for e in entries {
                if inner.seen.contains(&identity(&e.id)) {
                    continue;
                }
                match self.decode(&e.id, e.text.as_bytes()) {
                    Ok((batches, records, rejected, _)) => {
                        inner.seen.insert(identity(&e.id));
                        inner.rows.extend(batches);
                        inner.sources.push(SourceEntry {
                            key: e.id.clone(),
                            size: 0,
                            checksum: DELIVERY_CHECKSUM.into(),
                            records,
                            rejected,
                        });
                        tracing::info!(delivery = %e.id, records, "replayed from the intake log");
                    }
                    Err(err) => tracing::warn!(delivery = %e.id, error = %err, "replay failed"),
                }
            }
        }
        self
    }

    /// Decodes flow log text into lake-schema batches: (batches, records, rejected lines,
    /// rejection messages).
    fn decode(&self, id: &str, text: &[u8]) -> Result<(Vec<RecordBatch>, u64, u64, Vec<String>)> {
        let options = TextOptions {
            format: self.format.clone(),
            ..TextOptions::default()
        };
        let mut reader = TextReader::from_bytes(id.to_string(), text.to_vec(), &options)?;
        let format = reader.format().clone();
        let mut batches = Vec::new();
        let mut records = 0;
        let mut without_time = 0;
        while let Some(batch) = reader.next_batch()? {
            let (kept, missing) = with_time(&lake_batch(&batch, &format)?, false)?;
            without_time += missing as u64;
            records += kept.num_rows() as u64;
            batches.push(kept);
        }
        let mut rejections: Vec<String> = reader
            .take_rejections()
            .iter()
            .map(ToString::to_string)
            .collect();
        if without_time > 0 {
            rejections.push(format!("{id}: {without_time} records rejected: {NO_TIME}"));
        }
        Ok((
            batches,
            records,
            reader.rejected() + without_time,
            rejections,
        ))
    }

    /// Feeds every delivery taken from now on to `metrics` (live alarms).
    pub fn with_metrics(mut self, metrics: Arc<std::sync::Mutex<Accumulator>>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts a request refused before it reached the intake.
    pub fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one delivery: decodes it, appends it to the write-ahead log (fsynced), makes its
    /// records readable, and answers. A known id is answered [`Taken::Duplicate`].
    ///
    /// # Errors
    /// [`Error::Lake`] / [`Error::Io`] when the log cannot be written: nothing was taken.
    pub async fn take(&self, id: &str, text: String) -> Result<Taken> {
        let mut inner = self.inner.lock().await;
        if inner.seen.contains(&identity(id)) {
            inner.stats.duplicates += 1;
            inner
                .stats
                .by_source
                .entry(source_of(id).to_string())
                .or_default()
                .duplicates += 1;
            return Ok(Taken::Duplicate);
        }
        let bytes = text.len() as u64;
        let (batches, records, rejected, rejections) = self.decode(id, text.as_bytes())?;
        let entry = serde_json::to_string(&LogEntry {
            id: id.to_string(),
            text,
        })
        .expect("log entries serialise");
        let path = inner.wal_path.clone();
        tokio::task::block_in_place(|| inner.append_to_log(entry.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        // Durable: now visible, and remembered.
        let table = batches
            .iter()
            .map(|b| self.pending.to_table(b))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.pending.extend(table).await;
        if let Some(m) = &self.metrics {
            let mut acc = m.lock().expect("metrics lock");
            for b in &batches {
                if let Err(e) = acc.add(b) {
                    tracing::warn!(error = %e, "metric filters could not read a delivery");
                }
            }
        }
        inner.seen.insert(identity(id));
        let newest_end = newest_end(&batches);
        inner.rows.extend(batches);
        inner.sources.push(SourceEntry {
            key: id.to_string(),
            size: 0,
            checksum: DELIVERY_CHECKSUM.into(),
            records,
            rejected,
        });
        let stats = &mut inner.stats;
        let source = stats
            .by_source
            .entry(source_of(id).to_string())
            .or_default();
        source.deliveries += 1;
        source.records += records;
        source.rejected += rejected;
        source.bytes += bytes;
        source.newest_end = source.newest_end.max(newest_end);
        stats.deliveries += 1;
        stats.records += records;
        stats.rejected += rejected;
        stats.pending += records;
        for r in rejections {
            tracing::warn!(delivery = id, "{r}");
            stats.last_rejections.push(r);
        }
        let excess = stats.last_rejections.len().saturating_sub(KEPT_REJECTIONS);
        stats.last_rejections.drain(..excess);
        Ok(Taken::New(records, rejected))
    }

    /// Records waiting to be committed.
    pub async fn pending_records(&self) -> u64 {
        self.inner.lock().await.stats.pending
    }

    /// Runs `work` on the lake under the intake's lock, between commits (deliveries wait for
    /// it): the work other commands hand to the server (see [`crate::handoff`]).
    pub async fn with_lake<R>(&self, work: impl FnOnce(&Lake) -> R) -> R {
        let inner = self.inner.lock().await;
        tokio::task::block_in_place(|| work(&inner.lake))
    }

    /// Commits the buffered records to the lake as one commit (the deliveries as its sources),
    /// then empties the log. Readers see the records throughout: the buffer is emptied in the
    /// same step that publishes the files.
    ///
    /// # Errors
    /// When the commit fails; the records stay buffered and logged.
    pub async fn flush(&self) -> Result<u64> {
        let started = std::time::Instant::now();
        let mut inner = self.inner.lock().await;
        if inner.sources.is_empty() {
            return Ok(0);
        }
        let rows = std::mem::take(&mut inner.rows);
        let sources = std::mem::take(&mut inner.sources);
        let n: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        let lake = &inner.lake;
        let result = self
            .pending
            .drain(|_| {
                tokio::task::block_in_place(|| append(lake, &rows, sources.clone()).map(drop))
            })
            .await;
        if let Err(e) = result {
            inner.rows = rows;
            inner.sources = sources;
            return Err(e.into());
        }
        // Committed: the log's entries are in the lake's manifest now.
        let path = inner.wal_path.clone();
        let wal = tokio::task::block_in_place(|| {
            let f = File::create(&path)?;
            f.sync_all()?;
            Ok::<_, std::io::Error>(f)
        });
        match wal {
            Ok(f) => {
                inner.wal = f;
                inner.wal_len = 0;
                inner.wal_torn = false;
            }
            // The entries are committed and known by id, so an old log replayed later adds
            // nothing; the next append cuts it back to a clean end first.
            Err(e) => {
                inner.wal_torn = true;
                tracing::warn!(log = %path.display(), error = %e, "could not empty the intake log");
            }
        }
        inner.stats.commits += 1;
        inner.stats.commit_seconds += started.elapsed().as_secs_f64();
        inner.stats.pending = 0;
        tracing::info!(records = n, "committed buffered deliveries to the lake");
        Ok(n)
    }

    /// Whether deliveries can be taken: the intake log is whole (not cut by a failed append).
    pub async fn writable(&self) -> bool {
        !self.inner.lock().await.wal_torn
    }

    /// Counts an ingest made straight into the lake (handed over by another command:
    /// `source` is `ingest`; or of a followed source) as `source`'s: `objects` taken in,
    /// `newest_end` the latest record end among them (0 when unknown).
    pub async fn count_ingest(
        &self,
        source: &str,
        summary: &flowscope_lake::ingest::IngestSummary,
        objects: u64,
        newest_end: i64,
    ) {
        let mut inner = self.inner.lock().await;
        let entry = inner.stats.by_source.entry(source.to_string()).or_default();
        entry.deliveries += objects;
        entry.records += summary.records;
        entry.rejected += summary.rejected;
        entry.bytes += summary.bytes;
        entry.newest_end = entry.newest_end.max(newest_end);
    }

    /// Counts a failure of `source` (logged by the caller), kept as its latest.
    pub async fn count_error(&self, source: &str, error: String) {
        let mut inner = self.inner.lock().await;
        let entry = inner.stats.by_source.entry(source.to_string()).or_default();
        entry.errors += 1;
        entry.last_error = Some(error);
    }

    /// The counters, per source too, and the requests refused before they reached the intake.
    pub async fn snapshot(&self) -> (Stats, u64) {
        let inner = self.inner.lock().await;
        let stats = Stats {
            last_rejections: Vec::new(),
            by_source: inner.stats.by_source.clone(),
            ..inner.stats
        };
        (
            stats,
            inner.stats.refused + self.refused.load(Ordering::Relaxed),
        )
    }

    /// The counters.
    pub async fn stats(&self) -> serde_json::Value {
        let inner = self.inner.lock().await;
        let mut v = serde_json::to_value(&inner.stats).expect("stats serialise");
        v["refused"] = (inner.stats.refused + self.refused.load(Ordering::Relaxed)).into();
        let now = crate::now_ms() / 1000;
        let sources: serde_json::Map<String, serde_json::Value> = inner
            .stats
            .by_source
            .iter()
            .map(|(name, s)| {
                let lag = (s.newest_end > 0).then(|| (now - s.newest_end).max(0));
                (
                    name.clone(),
                    serde_json::json!({
                        "deliveries": s.deliveries,
                        "records": s.records,
                        "rejected": s.rejected,
                        "bytes": s.bytes,
                        "errors": s.errors,
                        "last_error": s.last_error,
                        "lag_seconds": lag,
                    }),
                )
            })
            .collect();
        v["sources"] = sources.into();
        v
    }
}

impl Inner {
    /// Appends one entry and its newline, fsynced. On failure the log is cut back to its last
    /// complete entry; until that succeeds every append is refused, so an acknowledged entry
    /// never shares a line with a torn one.
    fn append_to_log(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.wal_torn {
            self.cut_back()?;
        }
        let written = self
            .wal
            .write_all(entry)
            .and_then(|()| self.wal.write_all(b"\n"))
            .and_then(|()| self.wal.sync_data());
        if let Err(e) = written {
            self.wal_torn = true;
            if let Err(cut) = self.cut_back() {
                tracing::warn!(log = %self.wal_path.display(), error = %cut, "could not cut the intake log back after a failed append");
            }
            return Err(e);
        }
        self.wal_len += entry.len() as u64 + 1;
        Ok(())
    }

    /// Truncates the log to its last complete entry (ending in a newline) and fsyncs it.
    fn cut_back(&mut self) -> std::io::Result<()> {
        let len = self.wal.metadata()?.len();
        if len != self.wal_len {
            // A torn tail from a crash (at open) or from a failed append: keep whole lines only.
            let keep = if len > self.wal_len {
                complete_prefix(&self.wal_path, self.wal_len, len)?
            } else {
                len
            };
            self.wal.set_len(keep)?;
            self.wal_len = keep;
        }
        self.wal.sync_all()?;
        self.wal_torn = false;
        Ok(())
    }
}

/// The length of the part of the log at `path` that ends with its last newline, looking no
/// further back than `from` (known to end a complete entry) from its length `len`.
fn complete_prefix(path: &Path, from: u64, len: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.take(len - from).read_to_end(&mut tail)?;
    Ok(from
        + tail
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i as u64 + 1))
}

/// Reads the log's complete entries. A torn entry (never acknowledged) is dropped; an entry
/// that a torn one ran into on the same line is still read, so a broken neighbour never costs
/// a complete entry.
fn read_log(path: &Path) -> Result<Vec<LogEntry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        // A torn entry may end inside a character; the rest of the line is still read.
        let line = String::from_utf8_lossy(&line);
        if let Ok(e) = serde_json::from_str::<LogEntry>(&line) {
            out.push(e);
            continue;
        }
        // Entries start with `{"id":`, which cannot occur inside one (quotes in its strings are
        // escaped): each piece from such a start is tried on its own.
        let starts: Vec<usize> = line.match_indices(ENTRY_START).map(|(i, _)| i).collect();
        for (k, &at) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(line.len());
            match serde_json::from_str::<LogEntry>(&line[at..end]) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(
                    log = %path.display(),
                    line = n + 1,
                    error = %e,
                    "skipping an incomplete intake log entry"
                ),
            }
        }
    }
    Ok(out)
}
