//! Taking flow log files into the lake: in parallel, in bounded memory, exactly once.
//!
//! Worker threads each take a source, fingerprint it, skip it if the lake has it already, and
//! decode it into lake-schema batches. One writer (the calling thread) buffers rows by hour
//! partition and, once enough rows are buffered and no source is half in the buffer, writes them
//! as one commit. A source is in the manifest only together with all of its rows, so a rerun
//! after any failure neither loses nor duplicates records.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{Scope, ScopedJoinHandle};

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader, StringArray, new_null_array};
use flowscope_record::{LogFormat, Rejection, canonical_schema, conform};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::input::Input;
use crate::layout::{self, AwsObject};
use crate::partition::{self, Partition, PartitionBuffer, lake_schema, plan_files, write_files};
use crate::store::{Commit, Lake, SourceEntry, SourceIdentity, crash_point};
use crate::text::{TextOptions, TextReader};

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Decoding options (a fixed format, batch size).
    pub text: TextOptions,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Rows buffered before they are written out (bounds memory; about 300 bytes a row).
    pub buffer_rows: usize,
    /// Take a source whose key the lake has with other content that does not continue it, as a
    /// new source (else it is refused: [`Error::Changed`]).
    pub allow_changed: bool,
    /// Take sources the lake has taken before as if new (after a prune removed their records):
    /// only a source seen twice in this run is skipped. Records of theirs still in the lake are
    /// then in it twice.
    pub reingest: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            text: TextOptions::default(),
            threads: 0,
            buffer_rows: 1 << 20,
            allow_changed: false,
            reingest: false,
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestSummary {
    /// Sources looked at.
    pub files: u64,
    /// Sources skipped because the lake has them already.
    pub skipped: u64,
    /// Sources that could not be read in full (their good records were kept).
    pub failed: u64,
    /// Files skipped because they are not flow logs (neither a header line nor a record first).
    pub not_flow_logs: u64,
    /// Records added.
    pub records: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// Bytes of input read (as stored, compressed or not).
    pub bytes: u64,
    /// Commits made.
    pub commits: u64,
}

/// Hears about an ingest as it goes; the CLI draws its progress bar from it. Called from worker
/// threads.
pub trait IngestObserver: Sync {
    /// `rows` records were decoded.
    fn records(&self, _rows: u64) {}
    /// A source was finished (`skipped` when the lake had it), `bytes` its size.
    fn source_done(&self, _key: &str, _bytes: u64, _skipped: bool) {}
    /// A line was rejected.
    fn rejected(&self, _rejection: &Rejection) {}
    /// Records on their way into the lake (in the lake's schema), from the writer's thread;
    /// they are in the lake once [`ingest`] returns `Ok`.
    fn rows(&self, _batch: &RecordBatch) {}
    /// A commit made `records` records of `sources` sources durable in the lake: they stay
    /// whatever happens to the run after.
    fn committed(&self, _records: u64, _sources: u64) {}
    /// A source could not be read in full.
    fn failed(&self, _error: &Error) {}
    /// A file is not a flow log and was skipped.
    fn not_flow_log(&self, _key: &str) {}
    /// `records` records of a source had no start time and were rejected
    /// ([`partition::NO_TIME`]).
    fn without_time(&self, _key: &str, _records: u64) {}
    /// A source is a longer version of one taken before (a download that had broken off): its
    /// first `lines` lines were taken then, and only the rest is taken now.
    fn continued(&self, _key: &str, _lines: u64) {}
}

/// The sources the lake (and this run) has taken in: their identities, and the versions
/// (size, checksum) taken of each key.
struct Known {
    identities: HashSet<SourceIdentity>,
    versions: HashMap<String, Vec<(u64, String)>>,
}

impl Known {
    fn new(sources: Vec<SourceEntry>) -> Self {
        let mut known = Self {
            identities: HashSet::new(),
            versions: HashMap::new(),
        };
        for source in sources {
            known.add(&source.key, source.size, &source.checksum);
        }
        known
    }

    /// Remembers a version; false when it was known already.
    fn add(&mut self, key: &str, size: u64, checksum: &str) -> bool {
        if !self
            .identities
            .insert(SourceIdentity::new(key, size, checksum))
        {
            return false;
        }
        self.versions
            .entry(key.to_string())
            .or_default()
            .push((size, checksum.to_string()));
        true
    }

    fn forget(&mut self, key: &str, size: u64, checksum: &str) {
        self.identities
            .remove(&SourceIdentity::new(key, size, checksum));
        if let Some(versions) = self.versions.get_mut(key) {
            versions.retain(|(s, c)| !(*s == size && c == checksum));
        }
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl IngestObserver for Quiet {}

/// What the workers count, summed into the [`IngestSummary`] at the end.
#[derive(Default)]
struct Counters {
    skipped: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    not_flow_logs: AtomicU64,
}

/// Files up to this size are read into memory once, to be fingerprinted and parsed from there.
const WHOLE_FILE_MAX: u64 = 16 << 20;

/// Rows a worker gathers from one source before handing them to the writer.
const CHUNK_ROWS: usize = 256 * 1024;

enum Message {
    Rows {
        source: usize,
        batches: Vec<RecordBatch>,
        fallback: Partition,
    },
    Done {
        source: usize,
        entry: Option<SourceEntry>,
    },
}

/// Ingests `inputs` into `lake`.
///
/// # Errors
/// Only failures of the lake itself (writing files, committing); a bad source is reported to
/// `observer`, counted, and skipped.
pub fn ingest(
    lake: &Lake,
    inputs: &[Input],
    options: &IngestOptions,
    observer: &dyn IngestObserver,
) -> Result<IngestSummary> {
    let known = Mutex::new(Known::new(if options.reingest {
        Vec::new()
    } else {
        lake.sources()?
    }));
    let cores = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let threads = cores.min(inputs.len().max(1));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::sync_channel::<Message>(threads * 2);
    let mut summary = IngestSummary {
        files: inputs.len() as u64,
        ..IngestSummary::default()
    };
    let counters = Counters::default();

    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let sender = sender.clone();
            let (next, known, counters) = (&next, &known, &counters);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(input) = inputs.get(index) else {
                        break;
                    };
                    let entry = work(index, input, options, known, counters, observer, &sender);
                    if sender
                        .send(Message::Done {
                            source: index,
                            entry,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(sender);
        // If the writer fails, the receiver is dropped and the workers' sends fail: they stop.
        write(
            scope,
            cores,
            lake,
            receiver,
            options,
            observer,
            &mut summary,
        )
    })?;
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    let (skipped, failed) = (count(&counters.skipped), count(&counters.failed));
    let (bytes, not_flow_logs) = (count(&counters.bytes), count(&counters.not_flow_logs));
    summary.not_flow_logs = not_flow_logs;
    summary.skipped = skipped;
    summary.failed = failed;
    summary.bytes = bytes;
    Ok(summary)
}

/// The writer loop: buffer, spill at source boundaries, commit. A commit's I/O (waiting for its
/// files, the record, publishing) runs on its own thread while the next commit is gathered; one
/// commit is in flight at a time, and recovery copes with any crash in between.
fn write<'scope>(
    scope: &'scope Scope<'scope, '_>,
    encoders: usize,
    lake: &'scope Lake,
    receiver: mpsc::Receiver<Message>,
    options: &IngestOptions,
    observer: &'scope dyn IngestObserver,
    summary: &mut IngestSummary,
) -> Result<()> {
    let new_pending = || Pending::new(lake, lake.allocate_commit_id(), encoders);
    let mut pending = new_pending();
    let mut committing: Option<ScopedJoinHandle<'scope, Result<()>>> = None;
    let mut open: HashSet<usize> = HashSet::new();
    for message in receiver {
        match message {
            Message::Rows {
                source,
                batches,
                fallback,
            } => {
                open.insert(source);
                for batch in &batches {
                    observer.rows(batch);
                    pending.buffer.push(batch, fallback)?;
                }
                if pending.buffer.rows() >= options.buffer_rows {
                    pending.spill(scope)?;
                }
            }
            Message::Done { source, entry } => {
                open.remove(&source);
                if let Some(entry) = entry {
                    summary.records += entry.records;
                    summary.rejected += entry.rejected;
                    pending.rows += entry.records;
                    pending.sources.push(entry);
                }
                if open.is_empty() && pending.rows >= options.buffer_rows as u64 {
                    if let Some(previous) = committing.take() {
                        previous.join().expect("commits do not panic")?;
                    }
                    let ready = std::mem::replace(&mut pending, new_pending());
                    let (rows, sources) = (ready.rows, ready.sources.len() as u64);
                    committing = Some(scope.spawn(move || {
                        ready.commit(lake, scope)?;
                        observer.committed(rows, sources);
                        Ok(())
                    }));
                    summary.commits += 1;
                }
            }
        }
    }
    if let Some(previous) = committing.take() {
        previous.join().expect("commits do not panic")?;
    }
    if !pending.sources.is_empty() {
        let (rows, sources) = (pending.rows, pending.sources.len() as u64);
        pending.commit(lake, scope)?;
        observer.committed(rows, sources);
        summary.commits += 1;
    }
    Ok(())
}

/// A commit being gathered. Buffered rows are encoded on a background thread (one at a time)
/// while the writer goes on receiving, so parsing never waits for Parquet encoding.
struct Pending<'scope> {
    id: String,
    staging: PathBuf,
    buffer: PartitionBuffer,
    files: Vec<String>,
    sources: Vec<SourceEntry>,
    rows: u64,
    counter: usize,
    encoders: usize,
    encoding: Vec<ScopedJoinHandle<'scope, Result<Vec<String>>>>,
}

impl<'scope> Pending<'scope> {
    fn new(lake: &Lake, id: String, encoders: usize) -> Self {
        Self {
            staging: lake.staging_dir(&id),
            id,
            buffer: PartitionBuffer::default(),
            files: Vec::new(),
            sources: Vec::new(),
            rows: 0,
            counter: 0,
            encoders,
            encoding: Vec::new(),
        }
    }

    /// Hands the buffered rows to encoder threads (after the previous spill's finished).
    fn spill(&mut self, scope: &'scope Scope<'scope, '_>) -> Result<()> {
        let parts = self.buffer.take()?;
        if parts.is_empty() {
            return Ok(());
        }
        self.wait()?;
        for jobs in plan_files(parts, self.encoders, self.counter) {
            self.counter += jobs.len();
            let (dir, tag) = (self.staging.clone(), self.id.clone());
            self.encoding
                .push(scope.spawn(move || write_files(jobs, &dir, &tag)));
        }
        Ok(())
    }

    /// Waits for the encodings in progress.
    fn wait(&mut self) -> Result<()> {
        for encoding in std::mem::take(&mut self.encoding) {
            let written = encoding.join().expect("encoding does not panic")?;
            self.files.extend(written);
            crash_point("after-spill");
        }
        Ok(())
    }

    fn commit(mut self, lake: &Lake, scope: &'scope Scope<'scope, '_>) -> Result<()> {
        self.spill(scope)?;
        self.wait()?;
        let commit = Commit {
            id: self.id,
            kind: "ingest".into(),
            sources: self.sources,
            add: self.files,
            remove: Vec::new(),
        };
        lake.commit(&commit)
    }
}

/// Where a source's bytes are: a file to stream, or an object already fetched.
enum Payload {
    File(PathBuf),
    Bytes(Bytes),
}

/// A worker's handling of one source: fingerprint, skip or decode, send rows.
fn work(
    index: usize,
    input: &Input,
    options: &IngestOptions,
    known: &Mutex<Known>,
    counters: &Counters,
    observer: &dyn IngestObserver,
    sender: &mpsc::SyncSender<Message>,
) -> Option<SourceEntry> {
    let fail = |error: Error| {
        observer.failed(&error);
        counters.failed.fetch_add(1, Ordering::SeqCst);
    };
    let (key, size, checksum, earlier, payload) = match identify(input) {
        Ok(identified) => identified,
        Err(error) => {
            fail(error);
            return None;
        }
    };
    counters.bytes.fetch_add(size, Ordering::SeqCst);
    let others = {
        let mut known = known.lock().expect("not poisoned");
        let seen_as_earlier = earlier.as_deref().is_some_and(|c| {
            known
                .identities
                .contains(&SourceIdentity::new(&key, size, c))
        });
        if seen_as_earlier
            || known
                .identities
                .contains(&SourceIdentity::new(&key, size, &checksum))
        {
            None
        } else {
            let others = known.versions.get(&key).cloned().unwrap_or_default();
            known.add(&key, size, &checksum);
            Some(others)
        }
    };
    let Some(others) = others else {
        counters.skipped.fetch_add(1, Ordering::SeqCst);
        observer.source_done(&key, size, true);
        return None;
    };
    // Another version of this key was taken: go on from where it broke off when this one
    // continues it, else refuse (its records would be taken twice).
    let mut skip_lines = 0;
    if !others.is_empty() {
        match continuation(&payload, &others) {
            Ok(Some(lines)) => {
                skip_lines = lines;
                observer.continued(&key, lines);
            }
            Ok(None) if options.allow_changed => {}
            outcome => {
                known
                    .lock()
                    .expect("not poisoned")
                    .forget(&key, size, &checksum);
                fail(outcome.err().unwrap_or_else(|| Error::Changed {
                    path: input.name(),
                    key: key.clone(),
                    earlier: others.iter().map(|(s, _)| *s).max().unwrap_or(0),
                    size,
                }));
                observer.source_done(&key, size, false);
                return None;
            }
        }
    }
    let object = layout::parse(&key);
    let mut entry = SourceEntry {
        key: key.clone(),
        size,
        checksum,
        records: 0,
        rejected: 0,
    };
    let name = input.name();
    let is_parquet = object.as_ref().is_some_and(|o| o.parquet) || key.ends_with(".parquet");
    let mut chunk = Chunk::new(index, object.as_ref());
    let mut without_time = 0;
    let mut emit =
        |batch: RecordBatch, format: &LogFormat, entry: &mut SourceEntry| -> Result<()> {
            let lake = to_lake(&batch, format, object.as_ref())?;
            // A record without `start` goes to the hour in the file's AWS name, if it has one.
            let (lake, missing) = partition::with_time(&lake, object.is_some())?;
            without_time += missing;
            entry.rejected += missing as u64;
            observer.records(lake.num_rows() as u64);
            entry.records += lake.num_rows() as u64;
            chunk.push(lake, sender);
            Ok(())
        };
    let result = if is_parquet {
        read_parquet(&name, payload, &mut entry, &mut emit)
    } else {
        read_text(
            &name, payload, options, skip_lines, &mut entry, observer, &mut emit,
        )
    };
    chunk.flush(sender);
    if without_time > 0 {
        tracing::debug!(file = %name, records = without_time, "rejected: {}", partition::NO_TIME);
        observer.without_time(&name, without_time as u64);
    }
    if matches!(result, Err(Error::NotFlowLog { .. } | Error::Header { .. })) {
        // Not remembered: a file that becomes a flow log later is taken then.
        known
            .lock()
            .expect("not poisoned")
            .forget(&key, size, &entry.checksum);
    }
    if let Err(error @ Error::Header { .. }) = result {
        fail(error);
        observer.source_done(&key, size, false);
        return None;
    }
    if matches!(result, Err(Error::NotFlowLog { .. })) {
        counters.not_flow_logs.fetch_add(1, Ordering::SeqCst);
        observer.not_flow_log(&key);
        observer.source_done(&key, size, true);
        return None;
    }
    if let Err(error) = result {
        fail(error);
    }
    observer.source_done(&key, size, false);
    Some(entry)
}

/// The key, size and checksum a source is remembered by, the checksum earlier versions
/// remembered it by (if different), and where its bytes are.
///
/// The checksum is the xxh3 of the bytes wherever they come from, so a file taken from a local
/// copy and later from its bucket (same key from `AWSLogs/` on) is the same source.
fn identify(input: &Input) -> Result<(String, u64, String, Option<String>, Payload)> {
    match input {
        Input::File(path) => {
            let name = path.display().to_string();
            let size = crate::input::regular_file(path)?.len();
            if size > WHOLE_FILE_MAX {
                let (size, checksum) = fingerprint(path)?;
                return Ok((
                    source_key(path),
                    size,
                    checksum,
                    None,
                    Payload::File(path.clone()),
                ));
            }
            // Small enough to read once: fingerprint and parse the same bytes.
            let bytes = std::fs::read(path).map_err(|e| Error::io(&name, e))?;
            let checksum = xxh3_checksum(xxhash_rust::xxh3::xxh3_64(&bytes));
            Ok((
                source_key(path),
                bytes.len() as u64,
                checksum,
                None,
                Payload::Bytes(Bytes::from(bytes)),
            ))
        }
        Input::Object(object) => {
            let key = aws_relative(object.url());
            let bytes = object.fetch()?;
            let checksum = xxh3_checksum(xxhash_rust::xxh3::xxh3_64(&bytes));
            // Lakes written before the checksum was the content's remember objects by ETag.
            let earlier = object
                .etag
                .as_ref()
                .map(|etag| format!("etag:{}", etag.trim_matches('"')));
            Ok((
                key,
                bytes.len() as u64,
                checksum,
                earlier,
                Payload::Bytes(bytes),
            ))
        }
        Input::Stdin => Err(Error::io(
            "-",
            io::Error::other(
                "standard input cannot be ingested (it has no identity to remember); save it to a file first",
            ),
        )),
    }
}

type Emit<'a> = dyn FnMut(RecordBatch, &LogFormat, &mut SourceEntry) -> Result<()> + 'a;

fn read_text(
    name: &str,
    payload: Payload,
    options: &IngestOptions,
    skip_lines: u64,
    entry: &mut SourceEntry,
    observer: &dyn IngestObserver,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let mut reader = match payload {
        Payload::File(path) => TextReader::open(&Input::File(path), &options.text)?,
        Payload::Bytes(bytes) => TextReader::from_bytes(name, bytes, &options.text)?,
    };
    if !reader.is_recognised() {
        return Err(Error::NotFlowLog {
            path: name.to_string(),
        });
    }
    reader.skip_through(skip_lines);
    loop {
        let next = reader.next_batch();
        for rejection in reader.take_rejections() {
            observer.rejected(&rejection);
            entry.rejected += 1;
        }
        match next? {
            Some(batch) => {
                let format = reader.format().clone();
                emit(batch, &format, entry)?;
            }
            None => return Ok(()),
        }
    }
}

fn read_parquet(
    name: &str,
    payload: Payload,
    entry: &mut SourceEntry,
    emit: &mut Emit<'_>,
) -> Result<()> {
    let parquet = |source| Error::Parquet {
        path: name.to_string(),
        source,
    };
    let reader = match payload {
        Payload::File(path) => {
            let file = File::open(&path).map_err(|e| Error::io(name, e))?;
            ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(parquet)?
                .build()
                .map_err(parquet)?
        }
        Payload::Bytes(bytes) => ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(parquet)?
            .build()
            .map_err(parquet)?,
    };
    let columns: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let format = LogFormat::from_columns(
        columns
            .iter()
            .map(String::as_str)
            .filter(|c| flowscope_record::lookup(c).is_some()),
    )
    .map_err(|source| Error::Record {
        path: name.to_string(),
        source,
    })?;
    for batch in reader {
        let batch = batch.map_err(|source| Error::Arrow {
            path: name.to_string(),
            source,
        })?;
        emit(batch, &format, entry)?;
    }
    Ok(())
}

/// Rows of one source on their way to the writer.
struct Chunk {
    index: usize,
    fallback: Partition,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Chunk {
    fn new(index: usize, object: Option<&AwsObject>) -> Self {
        let fallback = object.map(|o| o.window_start.div_euclid(3_600));
        Self {
            index,
            fallback,
            batches: Vec::new(),
            rows: 0,
        }
    }

    fn push(&mut self, batch: RecordBatch, sender: &mpsc::SyncSender<Message>) {
        self.rows += batch.num_rows();
        self.batches.push(batch);
        if self.rows >= CHUNK_ROWS {
            self.flush(sender);
        }
    }

    fn flush(&mut self, sender: &mpsc::SyncSender<Message>) {
        if self.batches.is_empty() {
            return;
        }
        let batches = std::mem::take(&mut self.batches);
        self.rows = 0;
        // A closed channel means the writer failed; it reports why.
        let _ = sender.send(Message::Rows {
            source: self.index,
            batches,
            fallback: self.fallback,
        });
    }
}

/// Brings a decoded batch to the lake schema, filling `account_id` and `region` from the S3 name
/// when the format lacks them, and `flow_log_id`.
fn to_lake(
    batch: &RecordBatch,
    format: &LogFormat,
    object: Option<&AwsObject>,
) -> Result<RecordBatch> {
    let canonical = conform(batch, &LogFormat::all_fields()).map_err(|source| Error::Record {
        path: String::new(),
        source,
    })?;
    let rows = batch.num_rows();
    let constant = |value: Option<&str>| -> ArrayRef {
        match value {
            Some(v) => Arc::new(StringArray::from(vec![v; rows])),
            None => new_null_array(&arrow_schema::DataType::Utf8, rows),
        }
    };
    let mut columns: Vec<ArrayRef> = canonical.columns().to_vec();
    let schema = canonical_schema();
    for (name, value) in [
        ("account_id", object.map(|o| o.account_id.as_str())),
        ("region", object.map(|o| o.region.as_str())),
    ] {
        if format.position(name).is_none() && value.is_some() {
            let i = schema.index_of(name).expect("canonical column");
            debug_assert_eq!(columns[i].null_count(), rows);
            columns[i] = constant(value);
        }
    }
    columns.push(constant(object.map(|o| o.flow_log_id.as_str())));
    RecordBatch::try_new(lake_schema(), columns).map_err(|source| Error::Arrow {
        path: String::new(),
        source,
    })
}

/// When the source's bytes begin with the bytes of a shorter version taken before (the same
/// object, downloaded in full this time), the lines that version gave; `None` when no version is
/// such a beginning of it.
fn continuation(payload: &Payload, others: &[(u64, String)]) -> Result<Option<u64>> {
    let (name, total) = match payload {
        Payload::Bytes(bytes) => (String::new(), bytes.len() as u64),
        Payload::File(path) => {
            let name = path.display().to_string();
            let total = std::fs::metadata(path)
                .map_err(|e| Error::io(&name, e))?
                .len();
            (name, total)
        }
    };
    // The first `size` bytes, streamed: a large file's prefix is never held in memory.
    let prefix = |size: u64| -> Result<Box<dyn Read + '_>> {
        Ok(match payload {
            Payload::Bytes(bytes) => Box::new(&bytes[..size as usize]),
            Payload::File(path) => Box::new(
                File::open(path)
                    .map_err(|e| Error::io(&name, e))?
                    .take(size),
            ),
        })
    };
    let mut shorter: Vec<&(u64, String)> = others.iter().filter(|(s, _)| *s < total).collect();
    shorter.sort_by_key(|v| std::cmp::Reverse(v.0));
    for (size, checksum) in shorter {
        let (read, digest) = fingerprint_of(&name, prefix(*size)?)?;
        if read == *size && digest == *checksum {
            return Ok(Some(crate::text::complete_lines(prefix(*size)?)));
        }
    }
    Ok(None)
}

/// The key a local file is remembered by: its path from `AWSLogs/` on when inside such a tree
/// (so a synced copy anywhere is the same source), else its absolute path.
fn source_key(path: &std::path::Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    aws_relative(absolute.to_string_lossy().replace('\\', "/"))
}

/// A path or URL from its `AWSLogs/` folder on, when it has one; otherwise unchanged.
pub(crate) fn aws_relative(location: String) -> String {
    match location.find("/AWSLogs/") {
        Some(i) => location[i + 1..].to_string(),
        None => location,
    }
}

/// The checksum text of an xxh3 digest.
fn xxh3_checksum(digest: u64) -> String {
    format!("xxh3:{digest:016x}")
}

/// Size and xxh3 of a file's bytes.
fn fingerprint(path: &std::path::Path) -> Result<(u64, String)> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(&name, e))?;
    fingerprint_of(&name, file)
}

/// Size and xxh3 of the bytes of `reader` (`name` in errors), read in 1 MiB pieces.
fn fingerprint_of(name: &str, mut reader: impl Read) -> Result<(u64, String)> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buffer).map_err(|e| Error::io(name, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, xxh3_checksum(hasher.digest())))
}

/// Brings a batch decoded from text in `format` to the lake schema (`flow_log_id` null).
///
/// # Errors
/// When the batch does not fit the canonical schema.
pub fn lake_batch(batch: &RecordBatch, format: &LogFormat) -> Result<RecordBatch> {
    to_lake(batch, format, None)
}

/// Writes lake-schema `batches` as one commit that takes in `sources` (so the lake remembers
/// them, as [`Lake::ingested`] reports): files split by hour, sorted by `start`, written to the
/// commit's staging folder, fsynced, then published. Returns the commit.
///
/// # Errors
/// When a file cannot be written or the commit recorded; the lake is then as before.
pub fn append(lake: &Lake, batches: &[RecordBatch], sources: Vec<SourceEntry>) -> Result<Commit> {
    let id = lake.allocate_commit_id();
    let staging = lake.staging_dir(&id);
    let mut buffer = PartitionBuffer::default();
    for b in batches {
        buffer.push(b, None)?;
    }
    let mut files = Vec::new();
    for jobs in plan_files(buffer.take()?, 1, 0) {
        files.extend(write_files(jobs, &staging, &id)?);
    }
    let commit = Commit {
        id,
        kind: "ingest".into(),
        sources,
        add: files,
        remove: Vec::new(),
    };
    lake.commit(&commit)?;
    Ok(commit)
}
