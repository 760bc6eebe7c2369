//! Sources `serve` follows: S3 buckets (or prefixes), read through an SQS queue of S3 event
//! notifications or by listing.
//!
//! The lake's manifest is the checkpoint: an object is taken in one commit with its records,
//! remembered by its key, and never taken again. After a crash (or kill -9) the follower lists
//! again, or receives the messages it had not deleted again, and skips what the manifest has.
//! A queue message is deleted only once every object it names is committed (or cannot be
//! taken: gone, not a flow log).

mod events;
mod listing;
pub mod logs;
mod queue;
pub mod sources;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flowscope_lake::Input;
use flowscope_lake::ingest::{IngestObserver, IngestOptions, IngestSummary};
use flowscope_lake::object::{ObjectInput, S3Options};

pub use events::{Created, Said, decode_key};
pub use logs::LogGroup;
pub use sources::{Defaults, Sources};

use crate::App;

/// Most bytes of objects taken in one commit. A chunk is downloaded before the lake's lock is
/// taken and held in memory while it is parsed, so deliveries and handed-over work wait only for
/// one chunk's parsing and commit (a catch-up of a large bucket is many commits).
const CHUNK_BYTES: u64 = 64 << 20;

/// Rows a followed chunk's ingest buffers before writing them out (about 150 MB).
const FOLLOW_BUFFER_ROWS: usize = 512 << 10;

/// Objects downloaded at once before a chunk is taken.
const DOWNLOADS: usize = 4;

/// Most objects taken in one commit.
const CHUNK_OBJECTS: usize = 2_000;

/// One source to follow.
#[derive(Debug, Clone)]
pub struct Follow {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// How to reach the bucket (and the queue): endpoint, region, profile.
    pub s3: S3Options,
    /// An SQS queue receiving the bucket's `s3:ObjectCreated:*` notifications; without one
    /// the bucket is listed.
    pub queue_url: Option<String>,
    /// How often the bucket is listed (and how long a receive waits for messages, at most
    /// 20 s).
    pub poll: Duration,
    /// How late an object may be uploaded after the time in its name and still be found by
    /// the listings between full ones.
    pub lateness: Duration,
    /// How often the whole prefix is listed (finding new flow logs, accounts, regions).
    pub rescan: Duration,
    /// How long a received message stays hidden from other receivers; extended while its
    /// objects are being taken.
    pub visibility: Duration,
}

impl Follow {
    /// Following `url` (`s3://bucket/prefix`) by listing every minute, with an hour's
    /// lateness, a full listing every 15 minutes, and 5 minutes' visibility for messages.
    ///
    /// # Errors
    /// A message when `url` is not an `s3://bucket/prefix` URL.
    pub fn new(url: &str) -> Result<Self, String> {
        if flowscope_lake::object::parse_url(url).is_none() {
            return Err(format!("{url:?} is not an s3://bucket/prefix URL"));
        }
        Ok(Self {
            url: url.to_string(),
            s3: S3Options::default(),
            queue_url: None,
            poll: Duration::from_secs(60),
            lateness: Duration::from_secs(3600),
            rescan: Duration::from_secs(900),
            visibility: Duration::from_secs(300),
        })
    }

    /// The bucket and the prefix (without a trailing `/`).
    fn bucket_and_prefix(&self) -> (String, String) {
        let (bucket, prefix) =
            flowscope_lake::object::parse_url(&self.url).expect("checked by Follow::new");
        (bucket.to_string(), prefix.trim_end_matches('/').to_string())
    }

    /// Whether `key` is under the prefix.
    fn covers(&self, key: &str) -> bool {
        let (_, prefix) = self.bucket_and_prefix();
        prefix.is_empty()
            || key
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `objects` with their content downloaded, [`DOWNLOADS`] at a time, outside the lake's lock;
/// one that cannot be downloaded is left to the ingest, which reports why.
async fn download(objects: Vec<ObjectInput>) -> Vec<ObjectInput> {
    use futures::StreamExt;
    futures::stream::iter(objects.into_iter().map(|object| async move {
        let kept = object.clone();
        tokio::task::spawn_blocking(move || object.prefetch())
            .await
            .unwrap_or(kept)
    }))
    .buffered(DOWNLOADS)
    .collect()
    .await
}

/// Follows `follow` until the task is stopped; failures are logged, counted in `/metrics`
/// under the source's URL, and retried.
pub async fn run(app: Arc<App>, follow: Follow) {
    let name = follow.url.clone();
    let (bucket_name, _) = follow.bucket_and_prefix();
    let bucket = loop {
        match flowscope_lake::object::Bucket::connect(&bucket_name, &follow.s3) {
            Ok(b) => break Arc::new(b),
            Err(e) => {
                failed(&app, &name, format!("cannot set up the bucket: {e}")).await;
                tokio::time::sleep(follow.poll.max(Duration::from_secs(5))).await;
            }
        }
    };
    let taken = match app
        .intake
        .with_lake(|lake| {
            lake.sources()
                .map(|s| s.into_iter().map(|e| e.key).collect())
        })
        .await
    {
        Ok(keys) => keys,
        Err(e) => {
            failed(&app, &name, format!("cannot read the lake's manifest: {e}")).await;
            HashSet::new()
        }
    };
    let mut taker = Taker {
        app,
        name,
        taken,
        ignored: HashSet::new(),
    };
    match follow.queue_url.clone() {
        Some(queue_url) => queue::run(&mut taker, &follow, &bucket, &queue_url).await,
        None => listing::run(&mut taker, &follow, &bucket).await,
    }
}

/// Logs and counts a failure of source `name`.
async fn failed(app: &App, name: &str, error: String) {
    // One line per failure (AWS's XML answers carry newlines).
    let error = error.replace(['\r', '\n'], " ");
    tracing::error!(source = name, "{error}");
    app.intake.count_error(name, error).await;
}

/// Takes objects into the lake, remembering which it has.
struct Taker {
    app: Arc<App>,
    /// The source's name (its URL) in logs and metrics.
    name: String,
    /// The keys the lake's manifest has (as [`ObjectInput::source_key`] gives them).
    taken: HashSet<String>,
    /// Keys that are not flow logs: not fetched again.
    ignored: HashSet<String>,
}

/// What became of the objects given to [`Taker::take`].
#[derive(Debug, Default)]
struct Outcome {
    /// Keys now in the lake, or never to be taken (not flow logs).
    done: HashSet<String>,
    /// Objects that could not be read; tried again later.
    failed: u64,
}

impl Taker {
    /// Whether an object needs taking.
    fn wants(&self, object: &ObjectInput) -> bool {
        let key = object.source_key();
        !self.taken.contains(&key) && !self.ignored.contains(object.key())
    }

    /// Takes `objects` (none of them taken before), in commits of at most [`CHUNK_BYTES`],
    /// telling `progress` after each. Failures are logged and counted; objects that failed
    /// are not in [`Outcome::done`].
    async fn take(
        &mut self,
        objects: Vec<ObjectInput>,
        mut progress: impl FnMut(usize, usize),
    ) -> Outcome {
        let total = objects.len();
        let mut outcome = Outcome::default();
        let mut chunk: Vec<ObjectInput> = Vec::new();
        let mut bytes = 0;
        let mut done = 0;
        let mut objects = objects.into_iter().peekable();
        while let Some(object) = objects.next() {
            bytes += object.size;
            chunk.push(object);
            let full = bytes >= CHUNK_BYTES || chunk.len() >= CHUNK_OBJECTS;
            if full || objects.peek().is_none() {
                done += chunk.len();
                let part = std::mem::take(&mut chunk);
                bytes = 0;
                self.take_chunk(part, &mut outcome).await;
                progress(done, total);
            }
        }
        outcome
    }

    async fn take_chunk(&mut self, objects: Vec<ObjectInput>, outcome: &mut Outcome) {
        let newest = objects
            .iter()
            .filter_map(|o| flowscope_lake::layout::parse(o.key()))
            .map(|o| o.window_start)
            .max()
            .unwrap_or(0);
        let wanted: Vec<(String, String)> = objects
            .iter()
            .map(|o| (o.key().to_string(), o.source_key()))
            .collect();
        let inputs: Vec<Input> = download(objects)
            .await
            .into_iter()
            .map(Input::Object)
            .collect();
        // Objects in S3 begin with their header line: each says its own format. Half the
        // buffer of a `flowscope ingest`: the server holds the chunk's objects and its own
        // state besides.
        let options = IngestOptions {
            buffer_rows: FOLLOW_BUFFER_ROWS,
            ..IngestOptions::default()
        };
        let observer = Observer {
            metrics: self.app.metrics_counter().map(std::sync::Mutex::new),
            ..Observer::default()
        };
        let result = self
            .app
            .intake
            .with_lake(|lake| {
                let summary = flowscope_lake::ingest::ingest(lake, &inputs, &options, &observer)?;
                let keys: HashSet<String> = lake.sources()?.into_iter().map(|s| s.key).collect();
                Ok::<(IngestSummary, HashSet<String>), flowscope_lake::Error>((summary, keys))
            })
            .await;
        let (summary, keys) = match result {
            Ok(done) => {
                let counter = observer
                    .metrics
                    .map(|m| m.into_inner().expect("observer lock"));
                self.app.counted(counter);
                done
            }
            Err(e) => {
                failed(&self.app, &self.name, format!("taking objects failed: {e}")).await;
                outcome.failed += wanted.len() as u64;
                return;
            }
        };
        let not_flow_logs = observer.not_flow_logs.into_inner().expect("observer lock");
        for (key, source_key) in wanted {
            if keys.contains(&source_key) {
                outcome.done.insert(key);
                self.taken.insert(source_key);
            } else if not_flow_logs.contains(&source_key) {
                tracing::warn!(source = %self.name, object = %key, "not a flow log; skipped");
                outcome.done.insert(key.clone());
                self.ignored.insert(key);
            } else {
                outcome.failed += 1;
            }
        }
        for error in observer.failures.into_inner().expect("observer lock") {
            failed(&self.app, &self.name, error).await;
        }
        let objects = summary.files - summary.skipped - summary.failed - summary.not_flow_logs;
        self.app
            .intake
            .count_ingest(&self.name, &summary, objects, newest)
            .await;
        if summary.records > 0 {
            tracing::info!(
                source = %self.name,
                objects,
                records = summary.records,
                rejected = summary.rejected,
                "taken in"
            );
        }
    }
}

/// Gathers what an ingest says about objects that could not be taken.
#[derive(Default)]
struct Observer {
    failures: std::sync::Mutex<Vec<String>>,
    not_flow_logs: std::sync::Mutex<Vec<String>>,
    rejections_logged: std::sync::Mutex<u32>,
    /// The metric filters' counts of the records (live alarms).
    metrics: Option<std::sync::Mutex<flowscope_detect::Accumulator>>,
}

/// Rejected lines logged per commit (all are counted in `/metrics`).
const LOGGED_REJECTIONS: u32 = 20;

impl IngestObserver for Observer {
    fn rows(&self, batch: &arrow_array::RecordBatch) {
        if let Some(m) = &self.metrics
            && let Err(e) = m.lock().expect("observer lock").add(batch)
        {
            tracing::warn!(error = %e, "metric filters could not read the records");
        }
    }

    fn failed(&self, error: &flowscope_lake::Error) {
        let mut failures = self.failures.lock().expect("observer lock");
        if failures.len() < 100 {
            failures.push(error.to_string());
        }
    }

    fn not_flow_log(&self, key: &str) {
        self.not_flow_logs
            .lock()
            .expect("observer lock")
            .push(key.to_string());
    }

    fn rejected(&self, rejection: &flowscope_record::Rejection) {
        let mut logged = self.rejections_logged.lock().expect("observer lock");
        if *logged < LOGGED_REJECTIONS {
            *logged += 1;
            tracing::warn!("{rejection}");
        }
    }
}

/// One permission a source needs, as `--check-sources` tried it.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was tried (`list s3://bucket/prefix`).
    pub what: String,
    /// The permission it needs (`s3:ListBucket`).
    pub permission: &'static str,
    /// What it found, or why it failed.
    pub outcome: Result<String, String>,
}

/// With a role to assume (the source's `role_arn`, or its profile's), whether STS gives its
/// credentials (`sts:AssumeRole`).
async fn role_check(
    options: &flowscope_lake::object::S3Options,
    credentials: object_store::aws::AwsCredentialProvider,
) -> Option<Check> {
    let role = flowscope_lake::object::role_of(options)?;
    let outcome = credentials
        .get_credential()
        .await
        .map(|_| "assumed".to_string())
        .map_err(|e| e.to_string());
    Some(Check {
        what: format!("assume {role}"),
        permission: "sts:AssumeRole",
        outcome,
    })
}

/// Tries what following `follow` needs, one request per permission: listing the prefix
/// (`s3:ListBucket`), reading its first object (`s3:GetObject`), and with a queue, reading
/// the queue's attributes (`sqs:GetQueueAttributes`) and receiving without hiding anything
/// (`sqs:ReceiveMessage`, visibility 0). Nothing is taken or deleted.
pub async fn check(follow: &Follow) -> Vec<Check> {
    let (bucket_name, prefix) = follow.bucket_and_prefix();
    let mut checks = Vec::new();
    let bucket = match flowscope_lake::object::Bucket::connect(&bucket_name, &follow.s3) {
        Ok(b) => Arc::new(b),
        Err(e) => {
            checks.push(Check {
                what: format!("credentials for s3://{bucket_name}"),
                permission: "credentials",
                outcome: Err(e),
            });
            return checks;
        }
    };
    if let Some(check) = role_check(&follow.s3, bucket.credentials()).await {
        let failed = check.outcome.is_err();
        checks.push(check);
        if failed {
            return checks;
        }
    }
    let listed = bucket.list_after(&prefix, None, "").await;
    let first = listed.as_ref().ok().and_then(|l| l.first().cloned());
    checks.push(Check {
        what: format!("list {}", follow.url),
        permission: "s3:ListBucket",
        outcome: listed
            .map(|l| format!("{} flow log objects", l.len()))
            .map_err(|e| e.to_string()),
    });
    if let Some(object) = first {
        let url = object.url();
        let got = tokio::task::spawn_blocking(move || object.fetch().map(|b| b.len())).await;
        checks.push(Check {
            what: format!("read {url}"),
            permission: "s3:GetObject",
            outcome: match got {
                Ok(Ok(n)) => Ok(format!("{n} bytes")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        });
    }
    if let Some(queue_url) = &follow.queue_url {
        let sqs =
            match flowscope_lake::aws::Client::new(flowscope_lake::aws::Service::Sqs, &follow.s3) {
                Ok(c) => c,
                Err(e) => {
                    checks.push(Check {
                        what: format!("credentials for {queue_url}"),
                        permission: "credentials",
                        outcome: Err(e),
                    });
                    return checks;
                }
            };
        let timeout = Duration::from_secs(20);
        let attributes = sqs
            .call(
                "GetQueueAttributes",
                &serde_json::json!({"QueueUrl": queue_url, "AttributeNames": ["ApproximateNumberOfMessages"]}),
                timeout,
            )
            .await;
        checks.push(Check {
            what: format!("look at {queue_url}"),
            permission: "sqs:GetQueueAttributes",
            outcome: attributes
                .map(|a| {
                    let n = a["Attributes"]["ApproximateNumberOfMessages"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string();
                    format!("{n} messages waiting")
                })
                .map_err(|e| e.to_string()),
        });
        let received = sqs
            .call(
                "ReceiveMessage",
                &serde_json::json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 0, "VisibilityTimeout": 0}),
                timeout,
            )
            .await;
        checks.push(Check {
            what: format!("receive from {queue_url}"),
            permission: "sqs:ReceiveMessage",
            outcome: received
                .map(|_| "received (nothing hidden, nothing deleted)".to_string())
                .map_err(|e| e.to_string()),
        });
    }
    checks
}
