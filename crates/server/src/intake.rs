//! Records arriving over HTTP (Firehose deliveries, CloudWatch Logs subscription payloads):
//! decoded, made durable in a write-ahead log before they are acknowledged, readable by queries
//! at once (the engine's [`Pending`] buffer), and committed to the lake in batches.
//!
//! Exactly once: every delivery has an id (Firehose's `requestId`; a checksum of the payload
//! for CloudWatch). An id already in the log or in the lake's manifest (a committed delivery is
//! a source of its commit) is acknowledged again and not taken twice. After a crash the log is
//! replayed at start-up; a delivery whose commit had completed is recognised by its id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Most event ids a pulled log group's checkpoint keeps (the oldest go first, raising its
/// floor).
const MAX_CHECKPOINT_IDS: usize = 100_000;

/// One accepted delivery as the write-ahead log holds it.
#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    /// `firehose/<requestId>`, `cloudwatch/<checksum>` or `logs/<source>/<checksum>`.
    id: String,
    /// The flow log lines, newline-separated.
    text: String,
    /// The format of lines without a header, when not the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    /// The pulled events the lines came from (their position in the log group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Events>,
}

/// Events pulled from a CloudWatch Logs group and taken as one delivery: the group's position
/// moves with them, in the same write-ahead log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Events {
    /// The source's name (`log-group:NAME`).
    pub source: String,
    /// Each event's timestamp (Unix milliseconds) and id.
    pub ids: Vec<(i64, String)>,
    /// How far back from the newest event ids are kept, milliseconds: events arriving later
    /// than that after newer ones are not looked for again.
    pub overlap_ms: i64,
}

/// Where a pulled log group stands: the events taken, by id, from `floor` on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every event timestamped before this (Unix milliseconds) is taken (or was too late).
    pub floor: i64,
    /// The id and timestamp of every event taken at or after `floor`.
    pub ids: HashMap<String, i64>,
}

impl Checkpoint {
    /// Adds the events of `events`, then forgets those more than its overlap before the
    /// newest, and the oldest beyond [`MAX_CHECKPOINT_IDS`].
    pub fn absorb(&mut self, events: &Events) {
        for (at, id) in &events.ids {
            if *at >= self.floor {
                self.ids.insert(id.clone(), *at);
            }
        }
        let Some(newest) = self.ids.values().copied().max() else {
            return;
        };
        let mut floor = self
            .floor
            .max(newest.saturating_sub(events.overlap_ms.max(0)));
        if self.ids.len() > MAX_CHECKPOINT_IDS {
            let mut times: Vec<i64> = self.ids.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() - MAX_CHECKPOINT_IDS];
            // Ties at the cut are kept unless keeping them would double the budget.
            let tied = times.iter().filter(|&&t| t >= cut).count();
            floor = floor.max(if tied > 2 * MAX_CHECKPOINT_IDS {
                cut + 1
            } else {
                cut
            });
        }
        if floor > self.floor {
            self.floor = floor;
            self.ids.retain(|_, at| *at >= floor);
        }
    }

    /// Whether the event `id` at `at` is taken already (or too old to be looked for).
    pub fn has(&self, at: i64, id: &str) -> bool {
        at < self.floor || self.ids.contains_key(id)
    }
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
    /// Where each pulled log group stands (its taken events), saved beside the log at each
    /// commit.
    checkpoints: BTreeMap<String, Checkpoint>,
    /// The checkpoints changed since they were last saved.
    checkpoints_dirty: bool,
    checkpoints_path: PathBuf,
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
    /// The counters, apart from the lake's lock so that `/metrics` and `/api/status` answer
    /// during a long commit (never held across an await).
    stats: std::sync::Mutex<Stats>,
    /// An append to the log failed and it could not be cut back yet (`/readyz` says so
    /// without waiting for the lock).
    failing: AtomicBool,
    /// Counts changes to what queries see (deliveries taken, commits, work on the lake).
    generation: AtomicU64,
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
        let checkpoints_path = dir.join("log-groups.json");
        let checkpoints = read_checkpoints(&checkpoints_path)?;
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
                checkpoints,
                checkpoints_dirty: false,
                checkpoints_path,
            }),
            pending,
            format,
            metrics,
            refused: AtomicU64::new(0),
            stats: std::sync::Mutex::new(Stats::default()),
            failing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        };
        Ok(intake.with_replayed(replay))
    }

    fn with_replayed(self, entries: Vec<LogEntry>) -> Self {
        {
            let mut inner = self.inner.try_lock().expect("not shared yet");
            for e in entries {
                // A committed entry's events still move its group's position: the commit may
                // have come before the checkpoints were saved.
                if let Some(events) = &e.events {
                    inner.absorb(events);
                }
                if inner.seen.contains(&identity(&e.id)) {
                    continue;
                }
                let format = match e.format.as_deref().map(LogFormat::parse).transpose() {
                    Ok(f) => f,
                    Err(err) => {
                        tracing::warn!(delivery = %e.id, error = %err, "replay failed");
                        continue;
                    }
                };
                match self.decode(&e.id, e.text.as_bytes(), format.as_ref()) {
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
    fn decode(
        &self,
        id: &str,
        text: &[u8],
        format: Option<&LogFormat>,
    ) -> Result<(Vec<RecordBatch>, u64, u64, Vec<String>)> {
        let options = TextOptions {
            format: format.or(self.format.as_ref()).cloned(),
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
        self.take_from(source_of(id), id, text, None, None).await
    }

    /// Takes events pulled from a log group as one delivery `id`, lines in `format` (else the
    /// server's): the group's checkpoint moves with them, atomically with their records.
    ///
    /// # Errors
    /// As [`take`](Self::take).
    pub async fn take_events(
        &self,
        id: &str,
        text: String,
        format: Option<&LogFormat>,
        events: Events,
    ) -> Result<Taken> {
        let source = events.source.clone();
        self.take_from(&source, id, text, format, Some(events))
            .await
    }

    /// Where the pulled log group `source` stands.
    pub async fn checkpoint(&self, source: &str) -> Checkpoint {
        self.inner
            .lock()
            .await
            .checkpoints
            .get(source)
            .cloned()
            .unwrap_or_default()
    }

    async fn take_from(
        &self,
        source_name: &str,
        id: &str,
        text: String,
        format: Option<&LogFormat>,
        events: Option<Events>,
    ) -> Result<Taken> {
        let mut inner = self.inner.lock().await;
        if inner.seen.contains(&identity(id)) {
            if let Some(events) = &events {
                inner.absorb(events);
            }
            let mut stats = self.stats.lock().expect("stats lock");
            stats.duplicates += 1;
            stats
                .by_source
                .entry(source_name.to_string())
                .or_default()
                .duplicates += 1;
            return Ok(Taken::Duplicate);
        }
        let bytes = text.len() as u64;
        let (batches, records, rejected, rejections) = self.decode(id, text.as_bytes(), format)?;
        let entry = LogEntry {
            id: id.to_string(),
            text,
            format: format.map(ToString::to_string),
            events,
        };
        let line = serde_json::to_string(&entry).expect("log entries serialise");
        let path = inner.wal_path.clone();
        let appended = tokio::task::block_in_place(|| inner.append_to_log(line.as_bytes()));
        self.failing.store(inner.wal_torn, Ordering::Relaxed);
        appended.map_err(|e| Error::io(&path, e))?;
        if let Some(events) = entry.events {
            inner.absorb(&events);
        }
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
        self.generation.fetch_add(1, Ordering::Relaxed);
        let newest_end = newest_end(&batches);
        inner.rows.extend(batches);
        inner.sources.push(SourceEntry {
            key: id.to_string(),
            size: 0,
            checksum: DELIVERY_CHECKSUM.into(),
            records,
            rejected,
        });
        let mut stats = self.stats.lock().expect("stats lock");
        let source = stats.by_source.entry(source_name.to_string()).or_default();
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

    /// The hours (start of each, Unix seconds) of the records waiting to be committed.
    pub async fn pending_hours(&self) -> std::collections::BTreeSet<i64> {
        self.pending.hours().await
    }

    /// Records waiting to be committed.
    pub async fn pending_records(&self) -> u64 {
        self.stats.lock().expect("stats lock").pending
    }

    /// Runs `work` on the lake under the intake's lock, between commits (deliveries wait for
    /// it): the work other commands hand to the server (see [`crate::handoff`]).
    pub async fn with_lake<R>(&self, work: impl FnOnce(&Lake) -> R) -> R {
        let inner = self.inner.lock().await;
        let result = tokio::task::block_in_place(|| work(&inner.lake));
        self.generation.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// A number that changes whenever what queries see may have changed: a delivery taken, a
    /// commit, work done on the lake.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
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
        self.generation.fetch_add(1, Ordering::Relaxed);
        // Committed: the log's entries are in the lake's manifest now. Their groups' positions
        // are saved before the log is emptied (a crash in between replays them again).
        if inner.checkpoints_dirty {
            let saved = tokio::task::block_in_place(|| {
                save_checkpoints(&inner.checkpoints_path, &inner.checkpoints)
            });
            match saved {
                Ok(()) => inner.checkpoints_dirty = false,
                Err(e) => {
                    // The log keeps the positions until they are saved.
                    tracing::warn!(file = %inner.checkpoints_path.display(), error = %e, "could not save the log groups' positions");
                    let mut stats = self.stats.lock().expect("stats lock");
                    stats.commits += 1;
                    stats.commit_seconds += started.elapsed().as_secs_f64();
                    stats.pending = 0;
                    return Ok(n);
                }
            }
        }
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
        self.failing.store(inner.wal_torn, Ordering::Relaxed);
        let mut stats = self.stats.lock().expect("stats lock");
        stats.commits += 1;
        stats.commit_seconds += started.elapsed().as_secs_f64();
        stats.pending = 0;
        drop(stats);
        tracing::info!(records = n, "committed buffered deliveries to the lake");
        Ok(n)
    }

    /// Whether deliveries can be taken: the intake log is whole (not cut by a failed append).
    pub fn writable(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
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
        let mut stats = self.stats.lock().expect("stats lock");
        let entry = stats.by_source.entry(source.to_string()).or_default();
        entry.deliveries += objects;
        entry.records += summary.records;
        entry.rejected += summary.rejected;
        entry.bytes += summary.bytes;
        entry.newest_end = entry.newest_end.max(newest_end);
    }

    /// Counts a failure of `source` (logged by the caller), kept as its latest.
    pub async fn count_error(&self, source: &str, error: String) {
        let mut stats = self.stats.lock().expect("stats lock");
        let entry = stats.by_source.entry(source.to_string()).or_default();
        entry.errors += 1;
        entry.last_error = Some(error);
    }

    /// The counters, per source too, and the requests refused before they reached the intake.
    pub async fn snapshot(&self) -> (Stats, u64) {
        let inner = self.stats.lock().expect("stats lock");
        let stats = Stats {
            last_rejections: Vec::new(),
            by_source: inner.by_source.clone(),
            ..*inner
        };
        let refused = inner.refused + self.refused.load(Ordering::Relaxed);
        (stats, refused)
    }

    /// The counters.
    pub async fn stats(&self) -> serde_json::Value {
        let inner = self.stats.lock().expect("stats lock");
        let mut v = serde_json::to_value(&*inner).expect("stats serialise");
        v["refused"] = (inner.refused + self.refused.load(Ordering::Relaxed)).into();
        let now = crate::now_ms() / 1000;
        let sources: serde_json::Map<String, serde_json::Value> = inner
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
    /// Moves a pulled log group's position by `events` (saved at the next commit).
    fn absorb(&mut self, events: &Events) {
        self.checkpoints
            .entry(events.source.clone())
            .or_default()
            .absorb(events);
        self.checkpoints_dirty = true;
    }

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

/// The saved positions of the pulled log groups (none before the first).
fn read_checkpoints(path: &Path) -> Result<BTreeMap<String, Checkpoint>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Saves the positions of the pulled log groups, whole or not at all.
fn save_checkpoints(
    path: &Path,
    checkpoints: &BTreeMap<String, Checkpoint>,
) -> std::io::Result<()> {
    let mut file = flowscope_lake::AtomicFile::create(path)?;
    serde_json::to_writer(&mut file, checkpoints).map_err(std::io::Error::other)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(ids: &[(i64, &str)], overlap_ms: i64) -> Events {
        Events {
            source: "log-group:g".into(),
            ids: ids.iter().map(|(t, i)| (*t, (*i).to_string())).collect(),
            overlap_ms,
        }
    }

    #[test]
    fn a_checkpoint_keeps_the_overlap_and_no_more() {
        let mut c = Checkpoint::default();
        c.absorb(&events(&[(1_000, "a"), (5_000, "b"), (9_000, "c")], 5_000));
        // Newest 9,000 less 5,000: `a` is behind the floor, `b` and `c` are kept.
        assert_eq!(c.floor, 4_000);
        assert_eq!(c.ids.len(), 2);
        assert!(c.has(1_000, "a") && c.has(5_000, "b") && c.has(9_000, "c"));
        // A late event within the overlap is new; one behind the floor is not looked for.
        assert!(!c.has(6_000, "d"));
        assert!(c.has(3_999, "e"));
        c.absorb(&events(&[(6_000, "d")], 5_000));
        assert!(c.has(6_000, "d"));
        assert_eq!(c.floor, 4_000);
        // An event behind the floor is not kept.
        c.absorb(&events(&[(2_000, "old")], 5_000));
        assert!(!c.ids.contains_key("old"));
    }

    #[test]
    fn a_checkpoint_is_bounded() {
        let mut c = Checkpoint::default();
        let many: Vec<(i64, String)> = (0..MAX_CHECKPOINT_IDS as i64 + 10)
            .map(|i| (i, format!("e{i}")))
            .collect();
        c.absorb(&Events {
            source: "log-group:g".into(),
            ids: many,
            overlap_ms: i64::MAX,
        });
        assert_eq!(c.ids.len(), MAX_CHECKPOINT_IDS);
        assert_eq!(c.floor, 10);
        // The same timestamp for all: kept up to twice the budget, then the floor passes them.
        let mut tied = Checkpoint::default();
        let same: Vec<(i64, String)> = (0..2 * MAX_CHECKPOINT_IDS + 1)
            .map(|i| (7, format!("e{i}")))
            .collect();
        tied.absorb(&Events {
            source: "log-group:g".into(),
            ids: same,
            overlap_ms: 0,
        });
        assert_eq!((tied.floor, tied.ids.len()), (8, 0));
    }
}
