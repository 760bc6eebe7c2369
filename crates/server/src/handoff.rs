//! Work other commands hand to the server of their lake.
//!
//! While `flowscope serve` runs it is the lake's only writer, so `flowscope ingest`,
//! `flowscope lake compact`, `lake prune` and `lake info` on a served lake do not wait for the
//! lock: they send their work to the server, which runs it under its own lock between its
//! commits, and they print the server's answer as they would their own.
//!
//! The server listens on a Unix socket, `LAKE/_flowscope/serve.sock`, made mode 0600 (only the
//! lake's owner can connect; the HTTP listener is not involved, so its key and host checks are
//! not needed here). One connection carries one request: a JSON line of at most
//! [`MAX_REQUEST`] bytes, answered by one JSON line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use flowscope_lake::info::LakeInfo;
use flowscope_lake::ingest::{IngestObserver, IngestOptions, IngestSummary};
use flowscope_lake::maintenance::{CompactSummary, PruneSummary};
use flowscope_lake::object::S3Options;
use flowscope_lake::{Lake, TextOptions};
use flowscope_record::{LogFormat, Rejection};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::App;
use crate::error::{Error, Result};

/// The socket's name in the lake's `_flowscope` folder.
pub const SOCKET: &str = "serve.sock";

/// The longest request line taken.
pub const MAX_REQUEST: usize = 1 << 20;

/// Notes an ingest's reply carries at most; past them only counts go back.
pub const MAX_NOTES: usize = 1_000;

/// The socket of the lake at `root`.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join("_flowscope").join(SOCKET)
}

/// Work for the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `flowscope ingest`: `sources` as the command takes them, local paths absolute.
    Ingest {
        /// Files, directories, globs and `s3://` URLs.
        sources: Vec<String>,
        /// The S3-compatible endpoint of `s3://` sources.
        endpoint_url: Option<String>,
        /// The Region of `s3://` sources.
        region: Option<String>,
        /// The format of files without a header line.
        format: Option<String>,
        /// Take a changed file as a new source.
        allow_changed: bool,
        /// Take files the lake has taken before again.
        #[serde(default)]
        reingest: bool,
    },
    /// `flowscope lake compact`.
    Compact,
    /// `flowscope lake prune`: partitions before `cutoff` (Unix seconds) go.
    Prune {
        /// Hours that start before it are removed.
        cutoff: i64,
        /// Only say what would be removed.
        #[serde(default)]
        dry_run: bool,
    },
    /// `flowscope lake info`.
    Info,
}

/// What an ingest reports as it goes, for the sender to print.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Note {
    /// A rejected line, as [`Rejection`] shows it.
    Rejected(String),
    /// A source that could not be read in full.
    Failed(String),
    /// A source with records without a start time.
    WithoutTime {
        /// The source.
        key: String,
        /// Its records rejected.
        records: u64,
    },
    /// A longer version of a source taken before.
    Continued {
        /// The source.
        key: String,
        /// Its lines taken before.
        lines: u64,
    },
    /// A file that is not a flow log.
    NotFlowLog(String),
}

/// The server's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The ingest's summary and its notes (the first [`MAX_NOTES`]; `more_notes` past them).
    Ingested {
        /// What the ingest did.
        summary: IngestSummary,
        /// What it reported.
        notes: Vec<Note>,
        /// Notes left out.
        more_notes: u64,
    },
    /// What a compaction did.
    Compacted(CompactSummary),
    /// What a prune did.
    Pruned(PruneSummary),
    /// The lake's summary.
    Info(LakeInfo),
    /// Why the work failed.
    Failed(String),
}

/// Sends `request` to the server of the lake at `root` and waits for its answer. `Ok(None)`
/// when no server listens there (no socket, or a socket left by one that is gone).
///
/// # Errors
/// [`Error::Io`] when the server takes the request but the answer does not come back whole.
pub fn send(root: &Path, request: &Request) -> Result<Option<Reply>> {
    let path = socket_path(root);
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&path) else {
        return Ok(None);
    };
    let io = |e| Error::io(&path, e);
    let mut line = serde_json::to_vec(request).map_err(|e| Error::Invalid(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|e| Error::Invalid(format!("{}: the server's answer: {e}", path.display())))
}

/// Whether a server listens on the lake at `root`.
pub fn served(root: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(root)).is_ok()
}

/// Opens the lake at `root` for the server: refused at once when another server has it (a lake
/// has one server), waiting while a shorter command (an ingest, a compaction) holds it.
///
/// # Errors
/// [`Error::Invalid`] naming the other server's process; [`Error::Lake`] when the lake
/// cannot be opened.
pub(crate) fn open_writer(root: &Path) -> Result<Lake> {
    let mut warned = false;
    loop {
        match Lake::try_open(root)? {
            Ok(lake) => return Ok(lake),
            Err(holder) if served(root) => {
                return Err(Error::Invalid(format!(
                    "{} is served already by {holder}: a lake has one server (stop that one, \
                     or use it)",
                    root.display()
                )));
            }
            Err(holder) => {
                if !warned {
                    tracing::warn!(lake = %root.display(), "{holder} is changing this lake; waiting for it");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Binds the socket of the lake at `root` (the caller holds the lake's lock, so a socket file
/// found there is left by a server that is gone) with mode 0600.
pub(crate) fn bind(root: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(root);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let listener = UnixListener::bind(&path).map_err(|e| Error::io(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&path, e))?;
    Ok(listener)
}

/// Answers requests on `listener` until the task is dropped; one at a time, as the lake has
/// one writer.
pub(crate) async fn answer(app: Arc<App>, listener: UnixListener) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the lake's socket failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (read, mut write) = stream.split();
        let mut line = Vec::new();
        let read = tokio::io::BufReader::new(AsyncReadExt::take(read, MAX_REQUEST as u64 + 1));
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            let mut read = read;
            read.read_until(b'\n', &mut line).await
        })
        .await;
        let reply = match got {
            // A command that only looked whether a server listens ([`served`]).
            Ok(Ok(0)) => continue,
            Ok(Ok(_)) if line.len() > MAX_REQUEST => {
                Reply::Failed(format!("request longer than {MAX_REQUEST} bytes"))
            }
            Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
                Ok(request) => {
                    tracing::info!(?request, "work handed over by another command");
                    run(&app, request).await
                }
                Err(e) => Reply::Failed(format!("not a request: {e}")),
            },
            Ok(Err(e)) => Reply::Failed(e.to_string()),
            Err(_) => Reply::Failed("the request did not arrive within 10 s".into()),
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_else(|e| {
            serde_json::to_vec(&Reply::Failed(e.to_string())).expect("a string serialises")
        });
        out.push(b'\n');
        if let Err(e) = write.write_all(&out).await {
            tracing::warn!(error = %e, "the command that handed work over left before its answer");
        }
    }
}

async fn run(app: &App, request: Request) -> Reply {
    let done = match request {
        Request::Ingest {
            sources,
            endpoint_url,
            region,
            format,
            allow_changed,
            reingest,
        } => {
            let format = match format.as_deref().map(LogFormat::parse).transpose() {
                Ok(f) => f,
                Err(e) => return Reply::Failed(format!("format: {e}")),
            };
            let s3 = S3Options {
                endpoint_url,
                region,
                ..S3Options::default()
            };
            let options = IngestOptions {
                text: TextOptions {
                    format,
                    ..TextOptions::default()
                },
                allow_changed,
                reingest,
                ..IngestOptions::default()
            };
            let counter = app.metrics_counter();
            app.intake
                .with_lake(move |lake| {
                    let inputs = flowscope_lake::input::resolve(&sources, &s3)?;
                    let mut notes = Notes {
                        metrics: counter.map(Mutex::new),
                        ..Notes::default()
                    };
                    let summary = flowscope_lake::ingest::ingest(lake, &inputs, &options, &notes)?;
                    app.counted(
                        notes
                            .metrics
                            .take()
                            .map(|m| m.into_inner().expect("notes lock")),
                    );
                    let (notes, more_notes) = notes.into_parts();
                    Ok(Reply::Ingested {
                        summary,
                        notes,
                        more_notes,
                    })
                })
                .await
        }
        Request::Compact => {
            app.intake
                .with_lake(|lake| {
                    Ok(Reply::Compacted(flowscope_lake::maintenance::compact(
                        lake,
                    )?))
                })
                .await
        }
        Request::Prune { cutoff, dry_run } => {
            app.intake
                .with_lake(move |lake| {
                    Ok(Reply::Pruned(if dry_run {
                        flowscope_lake::maintenance::prune_plan(lake, cutoff)?
                    } else {
                        flowscope_lake::maintenance::prune(lake, cutoff)?
                    }))
                })
                .await
        }
        Request::Info => {
            app.intake
                .with_lake(|lake| Ok(Reply::Info(flowscope_lake::info::info(lake)?)))
                .await
        }
    };
    if let Ok(Reply::Ingested { summary, .. }) = &done {
        let objects = summary.files - summary.skipped - summary.failed - summary.not_flow_logs;
        app.intake.count_ingest("ingest", summary, objects, 0).await;
        if summary.failed > 0 {
            let error = format!(
                "{} of the files handed over could not be read in full",
                summary.failed
            );
            app.intake.count_error("ingest", error).await;
        }
    }
    done.unwrap_or_else(|e: flowscope_lake::Error| Reply::Failed(e.to_string()))
}

/// An ingest's notes, the first [`MAX_NOTES`] of them.
#[derive(Default)]
struct Notes {
    kept: Mutex<(Vec<Note>, u64)>,
    /// The metric filters' counts of the records (live alarms).
    metrics: Option<Mutex<flowscope_detect::Accumulator>>,
}

impl Notes {
    fn add(&self, note: Note) {
        let mut kept = self.kept.lock().expect("notes lock");
        if kept.0.len() < MAX_NOTES {
            kept.0.push(note);
        } else {
            kept.1 += 1;
        }
    }

    fn into_parts(self) -> (Vec<Note>, u64) {
        self.kept.into_inner().expect("notes lock")
    }
}

impl IngestObserver for Notes {
    fn rows(&self, batch: &arrow_array::RecordBatch) {
        if let Some(m) = &self.metrics
            && let Err(e) = m.lock().expect("notes lock").add(batch)
        {
            tracing::warn!(error = %e, "metric filters could not read the records");
        }
    }

    fn rejected(&self, rejection: &Rejection) {
        self.add(Note::Rejected(rejection.to_string()));
    }

    fn failed(&self, error: &flowscope_lake::Error) {
        self.add(Note::Failed(error.to_string()));
    }

    fn without_time(&self, key: &str, records: u64) {
        self.add(Note::WithoutTime {
            key: key.to_string(),
            records,
        });
    }

    fn continued(&self, key: &str, lines: u64) {
        self.add(Note::Continued {
            key: key.to_string(),
            lines,
        });
    }

    fn not_flow_log(&self, key: &str) {
        self.add(Note::NotFlowLog(key.to_string()));
    }
}
