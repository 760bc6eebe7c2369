//! `flowscope ingest`: flow log files into the Parquet lake.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowscope_lake::ingest::{self, IngestObserver, IngestOptions, IngestSummary};
use flowscope_lake::object::S3Options;
use flowscope_lake::{Error, TextOptions, input};
use flowscope_query::units::thousands;
use flowscope_record::{LogFormat, Rejection};
use flowscope_server::handoff::{Note, Reply, Request};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Outcome;
use super::served::{self, Writer};

/// Rejected lines printed before the rest are only counted.
const SHOWN_REJECTIONS: u64 = 100;

/// Ingest flow log files into a Parquet lake (hive-partitioned by hour, AWS column names).
///
/// Reads AWS text files (.log, .log.gz; each file's header line decides its format) and AWS
/// Parquet files, from files, directories (recursively) and globs. Ingesting the same file
/// again adds nothing; an interrupted ingest leaves the lake as it was or complete, and the next
/// run finishes the work (`--reingest` takes files again after `lake prune`). Exit status 1
/// when a file could not be read in full (its good records are kept), 2 with `--strict` when
/// anything was not taken. `s3://` sources use the AWS CLI's credentials chain and its
/// endpoint settings (`--endpoint-url`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`).
#[derive(clap::Args)]
pub struct Args {
    /// Files, directories, globs ('logs/**/*.log.gz') or s3://bucket/prefix URLs.
    #[arg(required = true, value_name = "SRC")]
    sources: Vec<String>,

    /// S3-compatible endpoint for s3:// sources (as the AWS CLI's --endpoint-url).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,

    /// Region for s3:// sources (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// The lake folder (created if missing).
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,

    /// The log format of files without a header line (default: the AWS default format).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,

    /// Rows buffered before they are written (bounds memory, about 300 bytes a row).
    #[arg(long, value_name = "ROWS", default_value_t = BUFFER_ROWS, hide = true)]
    buffer_rows: usize,

    /// Take a file whose key (its path from AWSLogs/ on) the lake has with other content, that is
    /// not a longer version of it, as a new source; without this it is refused, so that no
    /// record is taken twice. (A longer version, such as the complete object after a download
    /// that broke off, is always taken: only the lines after the earlier break.)
    #[arg(long)]
    allow_changed: bool,

    /// Take files the lake has taken before as new. The lake remembers every file it took (by
    /// name, size and checksum) and skips it next time, so that no record is counted twice;
    /// after `flowscope lake prune` removed a file's records, this brings them back. Records of
    /// those files still in the lake would be in it twice: prune first.
    #[arg(long)]
    reingest: bool,

    /// Exit with status 2 when the sources hold no flow log file, or a file is not a flow log,
    /// could not be read in full, or had a rejected line (the good records are still taken).
    #[arg(long)]
    strict: bool,

    /// No progress bar, no rejected-line messages; the summary line only.
    #[arg(long, short)]
    quiet: bool,
}

/// Rows buffered before they are written, unless `--buffer-rows` says otherwise.
const BUFFER_ROWS: usize = 1 << 20;

impl Args {
    /// An ingest of `sources` into `lake` with every other option at its default.
    pub(super) fn new(sources: Vec<String>, lake: PathBuf) -> Self {
        Self {
            sources,
            endpoint_url: None,
            region: None,
            lake,
            format: None,
            threads: 0,
            buffer_rows: BUFFER_ROWS,
            allow_changed: false,
            reingest: false,
            strict: false,
            quiet: false,
        }
    }
}

struct Progress {
    bar: ProgressBar,
    quiet: bool,
    /// Records and sources made durable by commits (the count an interrupted run keeps).
    committed: Arc<Committed>,
    records: AtomicU64,
    bytes: AtomicU64,
    shown: AtomicU64,
    start: Instant,
}

/// What commits have made durable so far.
#[derive(Default)]
struct Committed {
    records: AtomicU64,
    sources: AtomicU64,
}

impl Progress {
    fn message(&self) {
        let read = self.records.load(Ordering::Relaxed);
        let committed = self.committed.records.load(Ordering::Relaxed);
        let mb = self.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        let rate = read as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} records in the lake ({} read), {mb:.1} MB, {rate:.0} records/s",
            thousands(i128::from(committed)),
            thousands(i128::from(read)),
        ));
    }

    fn say(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
}

impl Progress {
    /// Prints `note` (rejected lines only the first [`SHOWN_REJECTIONS`], and neither those nor
    /// continuations with `--quiet`).
    fn tell(&self, note: Note) {
        let text = match note {
            Note::Rejected(text) => {
                if self.quiet || self.shown.fetch_add(1, Ordering::Relaxed) >= SHOWN_REJECTIONS {
                    return;
                }
                text
            }
            Note::Failed(error) => format!("flowscope: {error}"),
            Note::WithoutTime { key, records } => format!(
                "{key}: {records} records rejected: {}",
                flowscope_lake::partition::NO_TIME
            ),
            Note::Continued { key, lines } => {
                if self.quiet {
                    return;
                }
                format!(
                    "flowscope: {key}: a longer version of a source taken before; its first \
                     {lines} lines are in the lake already, the rest is taken now"
                )
            }
            Note::NotFlowLog(key) => format!(
                "flowscope: warning: {key}: not a flow log (no header line, and the first line \
                 is not a record of the format); skipped"
            ),
        };
        self.say(text);
    }
}

impl IngestObserver for Progress {
    fn records(&self, rows: u64) {
        self.records.fetch_add(rows, Ordering::Relaxed);
        self.message();
    }

    fn source_done(&self, _key: &str, bytes: u64, _skipped: bool) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.bar.inc(1);
        self.message();
    }

    fn rejected(&self, rejection: &Rejection) {
        if !self.quiet && self.shown.load(Ordering::Relaxed) < SHOWN_REJECTIONS {
            self.tell(Note::Rejected(rejection.to_string()));
        } else {
            self.shown.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &Error) {
        self.tell(Note::Failed(error.to_string()));
    }

    fn committed(&self, records: u64, sources: u64) {
        self.committed.records.fetch_add(records, Ordering::SeqCst);
        self.committed.sources.fetch_add(sources, Ordering::SeqCst);
        self.message();
    }

    fn without_time(&self, key: &str, records: u64) {
        self.tell(Note::WithoutTime {
            key: key.to_string(),
            records,
        });
    }

    fn continued(&self, key: &str, lines: u64) {
        self.tell(Note::Continued {
            key: key.to_string(),
            lines,
        });
    }

    fn not_flow_log(&self, key: &str) {
        self.tell(Note::NotFlowLog(key.to_string()));
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let format = args.format.as_deref().map(LogFormat::parse).transpose()?;
    let s3 = S3Options {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        ..S3Options::default()
    };
    let inputs = input::resolve(&args.sources, &s3)?;
    if inputs.is_empty() {
        eprintln!(
            "flowscope: warning: no flow log files found in {} (files named *.log, *.txt, their \
             .gz forms, or *.parquet); nothing was ingested",
            args.sources.join(", ")
        );
        return Ok(if args.strict {
            Outcome::StrictViolation
        } else {
            Outcome::Success
        });
    }
    let lake = match served::open(&args.lake)? {
        Writer::Local(lake) => Some(lake),
        Writer::Served => None,
    };
    let draw = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(inputs.len() as u64), draw);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} files  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let committed = Arc::new(Committed::default());
    // Dropped when this function returns: an interruption after that is not this ingest's.
    let _interrupt = lake.is_some().then(|| on_interrupt(Arc::clone(&committed)));
    let progress = Progress {
        bar,
        quiet: args.quiet,
        committed,
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        shown: AtomicU64::new(0),
        start: Instant::now(),
    };
    let options = IngestOptions {
        text: TextOptions {
            format,
            ..TextOptions::default()
        },
        threads: args.threads,
        buffer_rows: args.buffer_rows.max(1),
        allow_changed: args.allow_changed,
        reingest: args.reingest,
    };
    let summary = match &lake {
        Some(lake) => ingest::ingest(lake, &inputs, &options, &progress)?,
        None => {
            let (summary, notes, more) = hand_over(&args)?;
            for note in notes {
                progress.tell(note);
            }
            progress.shown.fetch_add(more, Ordering::Relaxed);
            summary
        }
    };
    progress.bar.finish_and_clear();
    let seconds = progress.start.elapsed().as_secs_f64();
    let hidden = progress
        .shown
        .load(Ordering::Relaxed)
        .saturating_sub(SHOWN_REJECTIONS);
    if hidden > 0 && !args.quiet {
        eprintln!("flowscope: {hidden} more rejected lines not shown");
    }
    eprintln!(
        "flowscope: ingested {} records from {} files ({} already in the lake, {} not flow logs, \
         {} failed); {} lines rejected; {:.1} MB in {seconds:.2} s ({:.0} records/s)",
        summary.records,
        summary.files,
        summary.skipped,
        summary.not_flow_logs,
        summary.failed,
        summary.rejected,
        summary.bytes as f64 / 1e6,
        summary.records as f64 / seconds.max(1e-3),
    );
    if summary.skipped > 0 && summary.records == 0 && !args.quiet {
        eprintln!(
            "flowscope: the lake has taken these files before and skips them, so that no record \
             is counted twice; after `flowscope lake prune` removed their records, \
             `--reingest` takes them again"
        );
    }
    if lake.is_none() && !args.quiet {
        eprintln!(
            "flowscope: the lake is served: the server took these files into it, and its \
             dashboard and queries have them now"
        );
    }
    let flawed = summary.failed > 0 || summary.rejected > 0 || summary.not_flow_logs > 0;
    Ok(if args.strict && flawed {
        Outcome::StrictViolation
    } else if summary.failed > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

/// On Ctrl-C (SIGINT): says what is in the lake and that running the command again completes
/// it, then exits with 130 as a shell expects of an interrupted command. Commits are atomic, so
/// stopping at any moment leaves the lake as it was after the last one.
/// The handler ends when the returned sender is dropped.
fn on_interrupt(committed: Arc<Committed>) -> Option<tokio::sync::oneshot::Sender<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let interrupted = runtime.block_on(async {
            tokio::select! {
                signal = tokio::signal::ctrl_c() => signal.is_ok(),
                _ = finished => false,
            }
        });
        if !interrupted {
            return;
        }
        eprintln!(
            "\nflowscope: interrupted. In the lake: {} records from {} files, committed before \
             the interruption; the rest was not taken. Run the same command again to complete \
             it: the files taken already are skipped, nothing is taken twice.",
            thousands(i128::from(committed.records.load(Ordering::SeqCst))),
            thousands(i128::from(committed.sources.load(Ordering::SeqCst))),
        );
        std::process::exit(130);
    });
    Some(done)
}

/// Hands the ingest to the server of the lake: local paths made absolute (the server runs
/// elsewhere), standard input refused (the server cannot read it).
fn hand_over(args: &Args) -> anyhow::Result<(IngestSummary, Vec<Note>, u64)> {
    let here = std::env::current_dir()?;
    let mut sources = Vec::new();
    for source in &args.sources {
        anyhow::ensure!(
            source != "-",
            "{} is served: its server cannot read this command's standard input; save it to a \
             file and ingest that",
            args.lake.display()
        );
        sources.push(if source.starts_with("s3://") {
            source.clone()
        } else {
            here.join(source).display().to_string()
        });
    }
    let request = Request::Ingest {
        sources,
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        format: args.format.clone(),
        allow_changed: args.allow_changed,
        reingest: args.reingest,
    };
    match served::send(&args.lake, &request)? {
        Reply::Ingested {
            summary,
            notes,
            more_notes,
        } => Ok((summary, notes, more_notes)),
        other => anyhow::bail!("the server answered an ingest with {other:?}"),
    }
}
