//! `flowscope serve`: the dashboard, the JSON API, the Firehose HTTP endpoint and live alarms.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flowscope_detect::AlarmsFile;
use flowscope_detect::DetectConfig;
use flowscope_lake::object::S3Options;
use flowscope_record::LogFormat;
use flowscope_server::follow::{Defaults, Follow, LogGroup, Sources};
use flowscope_server::{App, DetectSettings, Options, TlsFiles, serve, url_of};

use super::Outcome;
use super::detect::load_intel;
use super::output::runtime;

/// Serve the dashboard, the JSON API (/api/…), the Firehose HTTP endpoint (/firehose) and
/// CloudWatch Logs subscription intake (/cloudwatch) over a lake.
#[derive(clap::Args)]
pub struct Args {
    /// The lake (made if missing); the server is its writer while it runs.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    #[command(flatten)]
    listen: super::ListenArgs,
    /// The key Firehose sends in X-Amz-Firehose-Access-Key (also required on /cloudwatch).
    /// Without it, anyone who can reach the address can deliver records.
    #[arg(long, value_name = "KEY", env = "FLOWSCOPE_FIREHOSE_ACCESS_KEY")]
    firehose_access_key: Option<String>,
    /// Metric filters and alarms (docs/alarms.md), evaluated as records arrive.
    #[arg(long, value_name = "FILE")]
    alarms: Option<PathBuf>,
    /// Do not send alarm notifications (states still change and show).
    #[arg(long)]
    no_notify: bool,
    /// Threat-intel lists for the findings (as `flowscope detect --threat-intel`).
    #[arg(long, value_name = "FILE")]
    threat_intel: Vec<PathBuf>,
    /// Detection rules file (as `flowscope detect --rules`).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The format of delivered lines, as given to `aws ec2 create-flow-logs --log-format`
    /// (Firehose records carry no header); the default format if not given.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Serve HTTPS with this certificate (PEM: the certificate, then its intermediates), as
    /// Firehose delivers only to HTTPS endpoints. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS #8, PKCS #1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Commit buffered deliveries to the lake at least this often (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    flush_interval: u64,
    /// Commit as soon as this many records are buffered.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    flush_records: u64,
    /// A host name clients use to reach the server (the `Host` they send), besides its IP
    /// addresses and localhost; repeat for more. Other names are refused (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// Largest request body taken, in bytes (Firehose sends up to 64 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = flowscope_server::delivery::MAX_BODY)]
    max_body: usize,
    /// Largest decoded size of one request, in bytes: the body inflated and the text of all its
    /// records (gzip records inflated) together; beyond it the request is answered 413.
    #[arg(long, value_name = "BYTES", default_value_t = flowscope_server::delivery::MAX_BODY)]
    max_decoded: usize,
    /// Memory all API queries together may hold in aggregates, sorts and joins, in MiB (sorts
    /// spill to disk; a query needing more is answered 400).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    query_memory: usize,
    /// Seconds an API query may run before it is stopped (answered 503).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    query_timeout: u64,
    /// API queries (SQL, Insights, findings, diagnoses) run at once; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_queries: usize,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (or, kept alive, to start its next
    /// request) before it is disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client has to send a request's body (answered 408 past it).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    body_timeout: u64,
    /// Remove the hour partitions older than this (as `flowscope lake prune --older-than`),
    /// at start and every hour, e.g. 90d.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    retain: Option<Duration>,
    /// Merge each partition's files into one (as `flowscope lake compact`) this often; `off`
    /// never.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_or_off)]
    compact_interval: Every,
    /// Run the detections after the lake changes, at most this often, and keep what they
    /// find (the dashboard and /api/findings read it); `off` never.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_or_off)]
    detect_interval: Every,
    /// Test the credentials and permissions of every source (--follow, --log-group-name and
    /// the sources file: assuming a role, listing, reading an object, the queue, reading a log
    /// group), say which permission is missing, and exit (1 if any failed) without serving.
    #[arg(long)]
    check_sources: bool,
    /// How the server's log on standard error is written: `text` for people, `json` (one
    /// object a line: timestamp, level, message and fields) for a log shipper.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_output: String,
    #[command(flatten)]
    follow: FollowArgs,
}

impl Args {
    /// Whether the log is to be JSON (`--log-output json`).
    pub fn json_logs(&self) -> bool {
        self.log_output == "json"
    }
}

/// How often something runs, if at all.
#[derive(Debug, Clone, Copy)]
struct Every(Option<Duration>);

/// A duration, or `off`.
fn duration_or_off(text: &str) -> Result<Every, String> {
    if text == "off" {
        Ok(Every(None))
    } else {
        duration(text).map(|d| Every(Some(d)))
    }
}

/// Sources to follow while serving.
#[derive(clap::Args)]
#[command(next_help_heading = "Following S3 and CloudWatch Logs")]
pub struct FollowArgs {
    /// Keep the lake current from flow logs in S3 (s3://bucket/prefix): new objects are taken
    /// as they arrive, each once, through --sqs-queue-url or else by listing. Repeat for more.
    #[arg(long, value_name = "URL")]
    follow: Vec<String>,
    /// Every bucket and log group to follow, each with its own endpoint, region, profile and
    /// pace, in a TOML file (`[[s3]]` and `[[log_group]]` tables; see docs/serve.md). The flags
    /// below give what a source leaves out.
    #[arg(long, value_name = "FILE")]
    sources: Option<std::path::PathBuf>,
    /// Keep the lake current from flow logs published to this CloudWatch Logs group, read
    /// with FilterLogEvents (no subscription needed), each event once. Repeat for more.
    #[arg(long, value_name = "NAME")]
    log_group_name: Vec<String>,
    /// Read only the log streams whose names begin with this (for every --log-group-name).
    #[arg(long, value_name = "PREFIX")]
    log_stream_name_prefix: Option<String>,
    /// An SQS queue receiving the bucket's s3:ObjectCreated:* event notifications (directly,
    /// through SNS, or through EventBridge): objects are taken as their events arrive, and a
    /// message is deleted once its objects are committed. For one --follow.
    #[arg(long, value_name = "URL")]
    sqs_queue_url: Option<String>,
    /// S3-compatible endpoint for --follow (and SQS), as the AWS CLI's --endpoint-url.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Region for --follow (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// The AWS profile whose credentials --follow uses (default: the AWS_* variables, else
    /// AWS_PROFILE, else default).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// How often a followed bucket is listed, or a log group read (a queue is waited on, up
    /// to 20 s a receive).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    follow_interval: Duration,
    /// How long after the time in its name an object may be uploaded (or after newer events an
    /// event may arrive) and still be found.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    lateness: Duration,
    /// How often the whole prefix is listed (new flow logs, accounts and regions are found
    /// then).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = duration)]
    rescan: Duration,
    /// How long a received message stays hidden from other receivers (extended while its
    /// objects are taken).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    visibility_timeout: Duration,
}

/// A duration as `30s`, `5m`, `1h`, `7d`.
fn duration(text: &str) -> Result<Duration, String> {
    flowscope_server::follow::sources::parse_duration(text)
}

impl FollowArgs {
    /// The sources to follow: the flags' and the sources file's.
    fn sources(&self, log_format: Option<&LogFormat>) -> anyhow::Result<Sources> {
        if self.sqs_queue_url.is_some() && self.follow.len() != 1 {
            anyhow::bail!(
                "--sqs-queue-url goes with exactly one --follow (the bucket its events come from)"
            );
        }
        let defaults = Defaults {
            reach: S3Options {
                endpoint_url: self.endpoint_url.clone(),
                region: self.region.clone(),
                profile: self.profile.clone(),
                ..S3Options::default()
            },
            interval: self.follow_interval,
            lateness: self.lateness,
            rescan: self.rescan,
            visibility: self.visibility_timeout,
            log_format: log_format.cloned(),
        };
        let mut sources = match &self.sources {
            Some(path) => Sources::load(path, &defaults)?,
            None => Sources::default(),
        };
        for url in &self.follow {
            let mut follow = Follow::new(url).map_err(|e| anyhow::anyhow!("--follow: {e}"))?;
            follow.s3 = defaults.reach.clone();
            follow.queue_url = self.sqs_queue_url.clone();
            follow.poll = self.follow_interval;
            follow.lateness = self.lateness;
            follow.rescan = self.rescan;
            follow.visibility = self.visibility_timeout;
            if sources.s3.iter().any(|s| s.url == follow.url) {
                anyhow::bail!("--follow {url}: the sources file follows it already");
            }
            sources.s3.push(follow);
        }
        for name in &self.log_group_name {
            let mut group = LogGroup::new(name);
            group.stream_prefix = self
                .log_stream_name_prefix
                .clone()
                .filter(|p| !p.is_empty());
            group.options = defaults.reach.clone();
            group.format = defaults.log_format.clone();
            group.poll = self.follow_interval;
            group.lateness = self.lateness;
            if sources
                .log_groups
                .iter()
                .any(|g| g.source() == group.source())
            {
                anyhow::bail!("--log-group-name {name}: the sources file follows it already");
            }
            sources.log_groups.push(group);
        }
        Ok(sources)
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut options = Options::new(&args.lake);
    options.access_key = args.firehose_access_key.filter(|k| !k.is_empty());
    options.alarms = args.alarms.as_deref().map(AlarmsFile::load).transpose()?;
    options.notify = !args.no_notify;
    options.detect = DetectSettings {
        config: match &args.rules {
            Some(path) => DetectConfig::load(path)?,
            None => DetectConfig::default(),
        },
        intel: load_intel(&args.threat_intel)?,
    };
    options.log_format = args
        .log_format
        .as_deref()
        .map(LogFormat::parse)
        .transpose()
        .context("--log-format")?;
    options.allowed_hosts = args.allow_host.clone();
    options.max_body = args.max_body;
    options.max_decoded = args.max_decoded;
    options.flush_interval = Duration::from_secs(args.flush_interval.max(1));
    options.flush_records = args.flush_records.max(1);
    options.query_memory = args.query_memory.max(1).saturating_mul(1 << 20);
    options.query_timeout = Duration::from_secs(args.query_timeout.max(1));
    options.max_queries = args.max_queries.max(1);
    options.max_connections = args.max_connections.max(1);
    options.header_timeout = Duration::from_secs(args.header_timeout.max(1));
    options.body_timeout = Duration::from_secs(args.body_timeout.max(1));
    options.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let sources = args.follow.sources(options.log_format.as_ref())?;
    if args.check_sources {
        return check_sources(&sources);
    }
    options.follow = sources.s3;
    options.log_groups = sources.log_groups;
    options.retain = args.retain;
    options.compact_interval = args.compact_interval.0;
    options.detect_interval = args.detect_interval.0;
    start(&options, args.listen.listen)
}

/// `--check-sources`: one line per permission tried.
fn check_sources(sources: &Sources) -> anyhow::Result<Outcome> {
    if sources.s3.is_empty() && sources.log_groups.is_empty() {
        anyhow::bail!(
            "--check-sources: no source to check (give --follow, --log-group-name or --sources)"
        );
    }
    let mut failed = 0;
    let mut show = |check: &flowscope_server::follow::Check| match &check.outcome {
        Ok(found) => println!("  ok      {:<24} {}: {found}", check.permission, check.what),
        Err(why) => {
            failed += 1;
            println!("  FAILED  {:<24} {}: {why}", check.permission, check.what);
        }
    };
    runtime()?.block_on(async {
        for source in &sources.s3 {
            println!("{}", source.url);
            for check in flowscope_server::follow::check(source).await {
                show(&check);
            }
        }
        for group in &sources.log_groups {
            println!("{}", group.source());
            for check in flowscope_server::follow::logs::check(group).await {
                show(&check);
            }
        }
    });
    if failed == 0 {
        println!("every source can be followed");
        Ok(Outcome::Success)
    } else {
        println!(
            "{failed} check(s) failed: the permission named is missing or the resource is not there"
        );
        Ok(Outcome::Partial)
    }
}

/// Serves the lake of `options` at `listen` until Ctrl-C.
pub(super) fn start(options: &Options, listen: SocketAddr) -> anyhow::Result<Outcome> {
    let lake = &options.lake;
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        if options.access_key.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "listening on {addr}, beyond this machine, needs --firehose-access-key (or \
                 FLOWSCOPE_FIREHOSE_ACCESS_KEY): without it anyone who can reach the address \
                 could deliver records"
            );
        }
        let app = App::open(options)
            .await
            .with_context(|| format!("cannot serve {}", lake.display()))?;
        println!(
            "flowscope: serving {} at {}",
            lake.display(),
            url_of(addr, options.tls.is_some())
        );
        if options.access_key.is_none() {
            tracing::warn!(
                "no --firehose-access-key: /firehose and /cloudwatch take deliveries from anyone who can reach {addr}"
            );
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(app, listener, options.flush_interval, shutdown).await?;
        tracing::info!("stopped; buffered deliveries committed");
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}
