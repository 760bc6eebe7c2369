//! `flowscope serve`: the dashboard, the JSON API, the Firehose HTTP endpoint and CloudWatch
//! Logs subscription intake, and live alarms, over one lake.
//!
//! The server is the lake's only writer while it runs. Deliveries are written to an intake log
//! (fsynced) before they are acknowledged, are readable by queries at once, and are committed
//! to the lake in batches; a delivery seen before (the same Firehose `requestId`, the same
//! CloudWatch payload) is acknowledged and not written twice.

mod api;
mod dashboard;
pub mod delivery;
mod error;
pub mod findings;
pub mod follow;
pub mod handoff;
mod intake;
mod live;
mod metrics;
mod openapi;
mod queries;
mod tls;
pub mod updates;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flowscope_detect::Accumulator;
use flowscope_detect::AlarmsFile;
use flowscope_detect::{DetectConfig, ThreatIntel};
use flowscope_lake::deliver::FirehoseReply;
use flowscope_query::{Engine, TimeRange};
use flowscope_record::LogFormat;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use error::{ApiError, Error, Result};
use intake::{Intake, Taken};
use live::LiveAlarms;
pub use tls::TlsFiles;

/// Detections' settings for `/api/findings`.
#[derive(Debug, Clone, Default)]
pub struct DetectSettings {
    /// Thresholds, disabled detections, custom rules.
    pub config: DetectConfig,
    /// Known-bad networks.
    pub intel: ThreatIntel,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// The lake.
    pub lake: PathBuf,
    /// The key Firehose must send in `X-Amz-Firehose-Access-Key` (and `/cloudwatch` too);
    /// `None` takes deliveries from anyone who can reach the address.
    pub access_key: Option<String>,
    /// Metric filters and alarms evaluated as data arrives.
    pub alarms: Option<AlarmsFile>,
    /// Send alarm notifications.
    pub notify: bool,
    /// Detections for `/api/findings`.
    pub detect: DetectSettings,
    /// The format of delivered lines (Firehose records have no header); default format if
    /// `None`.
    pub log_format: Option<LogFormat>,
    /// Host names (besides IP addresses and `localhost`) requests may name in `Host`.
    pub allowed_hosts: Vec<String>,
    /// Largest request body taken, bytes (compressed size).
    pub max_body: usize,
    /// Largest decoded size of one request, bytes: the body inflated, and the text of all its
    /// records (gzip records inflated) together. Beyond it the request is answered 413.
    pub max_decoded: usize,
    /// Commit buffered deliveries at least this often.
    pub flush_interval: Duration,
    /// Commit as soon as this many records are buffered.
    pub flush_records: u64,
    /// Memory all API queries together may hold in their operators (aggregates, sorts, joins),
    /// bytes.
    pub query_memory: usize,
    /// Time an API query may run before it is stopped.
    pub query_timeout: Duration,
    /// API queries run at once; more are answered 429.
    pub max_queries: usize,
    /// Connections served at once; more wait to be accepted (lowered to what the open-file
    /// limit leaves room for).
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and, on a kept-alive connection, to
    /// start its next request) before the connection is closed.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body; a slower one is answered 408.
    pub body_timeout: Duration,
    /// HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Sources followed while serving (S3 by listing or through SQS).
    pub follow: Vec<follow::Follow>,
    /// CloudWatch Logs groups pulled while serving.
    pub log_groups: Vec<follow::LogGroup>,
    /// Remove the hour partitions older than this (checked hourly, and at start).
    pub retain: Option<Duration>,
    /// Merge each partition's files into one this often.
    pub compact_interval: Option<Duration>,
    /// Run the detections after the lake changes, at most this often (`None`: only when
    /// `/api/findings?fresh=true` asks).
    pub detect_interval: Option<Duration>,
}

impl Options {
    /// Defaults for a lake: no key, no alarms, 64 MiB bodies, commits every 60 s or 100,000
    /// records; API queries 4 at a time, 1 GiB of operator memory, 60 s each; 1024
    /// connections, 10 s for headers, 60 s for a body.
    pub fn new(lake: impl Into<PathBuf>) -> Self {
        Self {
            lake: lake.into(),
            access_key: None,
            allowed_hosts: Vec::new(),
            alarms: None,
            notify: true,
            detect: DetectSettings::default(),
            log_format: None,
            max_body: delivery::MAX_BODY,
            max_decoded: delivery::MAX_BODY,
            flush_interval: Duration::from_secs(60),
            flush_records: 100_000,
            query_memory: 1 << 30,
            query_timeout: Duration::from_secs(60),
            max_queries: 4,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            tls: None,
            follow: Vec::new(),
            log_groups: Vec::new(),
            retain: None,
            compact_interval: None,
            detect_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// What the handlers share.
pub struct App {
    /// Queries (the lake and the intake's buffer).
    pub engine: Engine,
    /// The lake's writer.
    pub intake: Intake,
    /// Live alarms, when configured.
    pub alarms: Option<LiveAlarms>,
    /// Detections' settings.
    pub detect: DetectSettings,
    /// Where API queries run, within their limits.
    pub queries: queries::Queries,
    /// The findings of the detections run as the lake changes.
    pub findings: std::sync::Mutex<findings::Store>,
    /// The intake's generation the latest detection run saw (`u64::MAX` before the first).
    pub detected_generation: std::sync::atomic::AtomicU64,
    /// Detection runs that failed.
    pub detection_errors: std::sync::atomic::AtomicU64,
    /// How long the latest detection run took, milliseconds.
    pub detection_ms: std::sync::atomic::AtomicU64,
    /// The detections' pass kept between runs, an hour partition at a time.
    pub incremental: tokio::sync::Mutex<flowscope_detect::Incremental>,
    /// Hours of records the detection runs read from the lake.
    pub hours_read: std::sync::atomic::AtomicU64,
    /// Hours the detection runs took, unchanged, from earlier runs.
    pub hours_kept: std::sync::atomic::AtomicU64,
    access_key: Option<String>,
    allowed_hosts: Vec<String>,
    max_body: usize,
    max_decoded: usize,
    flush_records: u64,
    flush_now: Notify,
    max_connections: usize,
    header_timeout: Duration,
    body_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    follow: Vec<follow::Follow>,
    log_groups: Vec<follow::LogGroup>,
    retain: Option<Duration>,
    compact_interval: Option<Duration>,
    detect_interval: Option<Duration>,
}

impl App {
    /// Opens the lake for serving: the engine, the intake (replaying and committing its log),
    /// and the alarms' metrics over the records already in the lake.
    ///
    /// # Errors
    /// When the lake cannot be opened or written, or the metrics cannot be computed.
    pub async fn open(options: &Options) -> Result<Arc<Self>> {
        // A certificate that cannot be used is found before the lake is taken.
        let tls = options.tls.as_ref().map(tls::acceptor).transpose()?;
        if !flowscope_lake::Lake::exists(&options.lake) {
            std::fs::create_dir_all(&options.lake).map_err(|e| Error::io(&options.lake, e))?;
            drop(flowscope_lake::Lake::open(&options.lake)?);
        }
        let (engine, pending) =
            Engine::open_with_pending_limited(&options.lake, options.query_memory).await?;
        let metrics = match &options.alarms {
            Some(file) => Some(Arc::new(std::sync::Mutex::new(Accumulator::new(
                &file.metric_filters,
            )?))),
            None => None,
        };
        let intake = Intake::open(engine.root(), pending, options.log_format.clone(), None)?;
        let findings = findings::Store::open(engine.root())?;
        intake.flush().await?;
        // The records already in the lake go through the filters once; deliveries from now on
        // are fed by the intake.
        let intake = match &metrics {
            Some(m) => {
                let computed = flowscope_detect::compute_metrics(
                    &engine,
                    &options.alarms.as_ref().expect("alarms").metric_filters,
                    TimeRange::default(),
                )
                .await?;
                m.lock().expect("metrics lock").metrics = computed;
                intake.with_metrics(Arc::clone(m))
            }
            None => intake,
        };
        let alarms = match (&options.alarms, &metrics) {
            (Some(file), Some(m)) => {
                let live = LiveAlarms::new(file, Arc::clone(m), options.notify);
                live.catch_up();
                Some(live)
            }
            _ => None,
        };
        let engine_root = engine.root().to_path_buf();
        Ok(Arc::new(Self {
            engine,
            intake,
            alarms,
            detect: options.detect.clone(),
            access_key: options.access_key.clone(),
            allowed_hosts: options.allowed_hosts.clone(),
            max_body: options.max_body,
            max_decoded: options.max_decoded,
            flush_records: options.flush_records,
            flush_now: Notify::new(),
            queries: queries::Queries::new(options.max_queries, options.query_timeout)?,
            max_connections: options.max_connections,
            header_timeout: options.header_timeout,
            body_timeout: options.body_timeout,
            tls,
            follow: options.follow.clone(),
            log_groups: options.log_groups.clone(),
            retain: options.retain,
            compact_interval: options.compact_interval,
            detect_interval: options.detect_interval,
            findings: std::sync::Mutex::new(findings),
            detected_generation: std::sync::atomic::AtomicU64::new(u64::MAX),
            detection_errors: std::sync::atomic::AtomicU64::new(0),
            detection_ms: std::sync::atomic::AtomicU64::new(0),
            incremental: tokio::sync::Mutex::new(flowscope_detect::Incremental::new(
                engine_root.as_path(),
            )),
            hours_read: std::sync::atomic::AtomicU64::new(0),
            hours_kept: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// 401 without a key, 403 with a wrong one, when a key is configured.
    fn check_key(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.access_key else {
            return Ok(());
        };
        match headers.get("x-amz-firehose-access-key") {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing X-Amz-Firehose-Access-Key",
            )),
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong X-Amz-Firehose-Access-Key",
            )),
        }
    }

    /// After a delivery: evaluate alarms, and wake the committer when the buffer is full.
    async fn after_delivery(&self) {
        self.evaluate_alarms();

        if self.intake.pending_records().await >= self.flush_records {
            self.flush_now.notify_one();
        }
    }
}

impl App {
    /// Evaluates the alarms (after new records), logging each change of state.
    fn evaluate_alarms(&self) {
        if let Some(a) = &self.alarms {
            for t in a.evaluate() {
                tracing::info!(alarm = %t.alarm_name, from = t.old_state.name(), to = t.new_state.name(), "alarm state changed");
            }
        }
    }

    /// An accumulator for the metric filters' counts of an ingest made straight into the lake
    /// (handed over, or of a followed source), `None` without alarms.
    pub(crate) fn metrics_counter(&self) -> Option<Accumulator> {
        self.intake
            .metrics
            .as_ref()
            .map(|m| m.lock().expect("metrics lock").fresh())
    }

    /// Adds what an ingest's records counted, once they are committed, and evaluates the
    /// alarms.
    pub(crate) fn counted(&self, counter: Option<Accumulator>) {
        if let (Some(counter), Some(metrics)) = (counter, &self.intake.metrics) {
            metrics.lock().expect("metrics lock").absorb(counter);
            self.evaluate_alarms();
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The wall clock in milliseconds: only for Firehose's response `timestamp` and for relative
/// times (`-1h`) in API requests; alarms and commits go by the records' own times.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Firehose's response: `{"requestId", "timestamp"}`, plus `errorMessage` on failure.
fn firehose_reply(status: StatusCode, request_id: &str, message: Option<String>) -> Response {
    let body = FirehoseReply {
        error_message: message.map(|mut m| {
            truncate_at_char(&mut m, 8192);
            m
        }),
        request_id: request_id.to_string(),
        timestamp: Some(now_ms().into()),
    };
    (status, axum::Json(body)).into_response()
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// The `requestId` of a body that is JSON but no valid delivery request, so that a refusal
/// still names the request it refuses.
fn salvaged_request_id(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(rename = "requestId")]
        request_id: Option<serde_json::Value>,
    }
    serde_json::from_slice::<IdOnly>(body)
        .ok()
        .and_then(|b| b.request_id)
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|id| id.len() <= 1024)
        .unwrap_or_default()
}

/// Reads a body up to the limit, inflating `Content-Encoding: gzip`.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let read = tokio::time::timeout(app.body_timeout, axum::body::to_bytes(body, app.max_body));
    let bytes = read
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:.0} s (--body-timeout)",
                    app.body_timeout.as_secs_f64()
                ),
            )
        })?
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes (or cut off)", app.max_body),
            )
        })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if gzip {
        delivery::gunzip(&bytes, app.max_decoded).map_err(|e| ApiError::from(&e.within("body")))
    } else {
        Ok(bytes.to_vec())
    }
}

/// `POST /firehose`.
async fn firehose(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let header_id = headers
        .get("x-amz-firehose-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Err(e) = app.check_key(&headers) {
        app.intake.refuse();
        return firehose_reply(e.status, &header_id, Some(e.message));
    }
    let bytes = match read_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(e) => {
            app.intake.refuse();
            return firehose_reply(e.status, &header_id, Some(e.message));
        }
    };
    let request = match delivery::firehose(&bytes, app.max_decoded) {
        Ok(r) => r,
        Err(e) => {
            app.intake.refuse();
            let id = if header_id.is_empty() {
                salvaged_request_id(&bytes)
            } else {
                header_id
            };
            return firehose_reply(e.status(), &id, Some(e.message().to_string()));
        }
    };
    if !header_id.is_empty() && header_id != request.request_id {
        app.intake.refuse();
        return firehose_reply(
            StatusCode::BAD_REQUEST,
            &request.request_id,
            Some("X-Amz-Firehose-Request-Id differs from the body's requestId".into()),
        );
    }
    let id = format!("firehose/{}", request.request_id);
    match app.intake.take(&id, request.text).await {
        Ok(taken) => {
            if matches!(taken, Taken::New(..)) {
                app.after_delivery().await;
            }
            firehose_reply(StatusCode::OK, &request.request_id, None)
        }
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "could not take a delivery");
            firehose_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &request.request_id,
                Some(e.to_string()),
            )
        }
    }
}

/// `POST /cloudwatch`.
async fn cloudwatch(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let refuse = |e: ApiError| {
        app.intake.refuse();
        e.into_response()
    };
    if let Err(e) = app.check_key(&headers) {
        return refuse(e);
    }
    let bytes = match read_body(&app, &headers, body).await {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    let (payload, lines) = match delivery::cloudwatch(&bytes, app.max_decoded) {
        Ok(p) => p,
        Err(e) => return refuse(ApiError::from(&e)),
    };
    if lines.is_empty() {
        return axum::Json(json!({"records": 0, "rejected": 0, "duplicate": false}))
            .into_response();
    }
    let id = format!("cloudwatch/{:016x}", xxhash_rust::xxh3::xxh3_64(&payload));
    match app.intake.take(&id, lines).await {
        Ok(Taken::New(records, rejected)) => {
            app.after_delivery().await;
            axum::Json(json!({"records": records, "rejected": rejected, "duplicate": false}))
                .into_response()
        }
        Ok(Taken::Duplicate) => {
            axum::Json(json!({"records": 0, "rejected": 0, "duplicate": true})).into_response()
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// Whether `host` (a `Host` header) may address this server: an IP literal or `localhost`,
/// with any port, or a name in `allowed`. A page that rebinds its own DNS name to 127.0.0.1
/// still sends that name, so it is refused.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// The media types each POST endpoint takes. Types a browser may send across origins without
/// asking first (`text/plain`, forms, multipart) are none of them, so a page elsewhere cannot
/// post to the server; a body without a type is refused for the same reason.
fn accepted_types(path: &str) -> &'static [&'static str] {
    match path {
        "/cloudwatch" => &[
            "application/json",
            "application/octet-stream",
            "application/gzip",
            "application/x-gzip",
        ],
        _ => &["application/json", "application/x-amz-json-1.1"],
    }
}

/// Refuses requests whose `Host` is not this server's (DNS rebinding) and POSTs whose
/// `Content-Type` the endpoint does not take (cross-site form posts).
async fn guard(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, &app.allowed_hosts) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host `{host}` is not this server's: use its address, localhost, or a name \
                 given with --allow-host"
            ),
        )
        .into_response();
    }
    if request.method() == axum::http::Method::POST {
        let path = request.uri().path();
        let given = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = given
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let accepted = accepted_types(path);
        if !accepted.contains(&essence.as_str()) {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{path} takes Content-Type {}; got `{given}`",
                    accepted.join(" or ")
                ),
            )
            .into_response();
        }
    }
    // Bodies the handlers read themselves (the JSON API's) get the same time to arrive; a
    // query's own time limit comes on top.
    let limit = app.body_timeout + app.queries.timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {:.0} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/api/sql", post(api::sql))
        .route("/api/insights", post(api::insights))
        .route("/api/findings", get(api::findings))
        .route("/api/diagnose", get(api::diagnoses))
        .route("/api/alarms", get(api::alarms))
        .route("/api/status", get(api::status))
        .route("/api/live", get(updates::live))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .route("/api/openapi.json", get(api::openapi))
        .route("/firehose", post(firehose))
        .route("/cloudwatch", post(cloudwatch))
        // Intake bodies are read with their own limit; the JSON API's bodies are small.
        .layer(DefaultBodyLimit::max(1 << 20))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            guard,
        ))
        .with_state(app)
}

/// Runs the task `make` makes, again (after a pause) whenever it panics: a fault in one
/// source stops neither the server nor the other sources. Aborting the returned task stops it.
fn supervise<F, Fut>(app: Arc<App>, name: String, make: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    /// Aborts the running attempt when the supervisor is aborted.
    struct Stop(tokio::task::AbortHandle);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    tokio::spawn(async move {
        loop {
            let attempt = tokio::spawn(make());
            let stop = Stop(attempt.abort_handle());
            let result = attempt.await;
            drop(stop);
            match result {
                Err(e) if e.is_panic() => {
                    let why = e
                        .into_panic()
                        .downcast::<String>()
                        .map(|s| *s)
                        .or_else(|p| p.downcast::<&str>().map(|s| (*s).to_string()))
                        .unwrap_or_else(|_| "a panic".to_string());
                    let error = format!("the follower failed ({why}); restarting it in 30 s");
                    tracing::error!(source = %name, "{error}");
                    app.intake.count_error(&name, error).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                _ => return,
            }
        }
    })
}

/// Serves on `listener` until `shutdown` completes, committing buffered deliveries every
/// `flush_interval`, when `flush_records` are buffered, and before returning.
///
/// At most the app's `max_connections` connections are served at once (fewer when the
/// open-file limit leaves room for fewer, so that commits always have files to open); a client
/// that does not send its headers within `header_timeout` is disconnected, and a failed accept
/// (no file descriptors left) is retried shortly.
///
/// # Errors
/// When the last commit fails.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    flush_interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let committer = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(flush_interval) => {}
                    () = app.flush_now.notified() => {}
                }
                if let Err(e) = app.intake.flush().await {
                    tracing::error!(error = %e, "commit failed; the deliveries stay in the intake log");
                }
            }
        })
    };
    let handoff = tokio::spawn(handoff::answer(
        Arc::clone(&app),
        handoff::bind(app.engine.root())?,
    ));
    let mut followers: Vec<_> = app
        .follow
        .iter()
        .map(|f| {
            let (app, f) = (Arc::clone(&app), f.clone());
            supervise(Arc::clone(&app), f.url.clone(), move || {
                follow::run(Arc::clone(&app), f.clone())
            })
        })
        .collect();
    followers.extend(app.log_groups.iter().map(|g| {
        let (app, g) = (Arc::clone(&app), g.clone());
        supervise(Arc::clone(&app), g.source(), move || {
            follow::logs::run(Arc::clone(&app), g.clone())
        })
    }));
    let maintenance = tokio::spawn(maintain(Arc::clone(&app)));
    let detections = tokio::spawn(detect_continuously(Arc::clone(&app)));
    let tls = app.tls.clone();
    let max_connections = connection_limit(app.max_connections);
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = hyper_util::service::TowerToHyperService::new(router(Arc::clone(&app)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: the connections in hand finish, then there is room.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
        let (tls, handshake_timeout) = (tls.clone(), app.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let served =
                match tls {
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        watcher.watch(builder.serve_connection(io, service)).await
                    }
                    Some(acceptor) => {
                        // The handshake gets the time headers get: a client that opens and stays
                        // silent holds a connection no longer than one that sends no headers.
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake did not finish in time");
                                    return;
                                }
                            };
                        let io = hyper_util::rt::TokioIo::new(stream);
                        watcher.watch(builder.serve_connection(io, service)).await
                    }
                };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
    committer.abort();
    handoff.abort();
    maintenance.abort();
    detections.abort();
    for follower in followers {
        follower.abort();
        // A follower stops between commits: what it had taken is committed.
        let _ = follower.await;
    }
    let _ = std::fs::remove_file(handoff::socket_path(app.engine.root()));
    app.intake.flush().await?;
    Ok(())
}

/// How often retention is applied.
const RETENTION_CHECK: Duration = Duration::from_secs(3600);

/// Runs retention (`retain`) and compaction (`compact_interval`) on their schedules, under the
/// intake's lock between commits, until stopped. Retention runs at start too.
/// Runs the detections whenever what queries see has changed, at most every
/// `--detect-interval`, and stores what they find.
async fn detect_continuously(app: Arc<App>) {
    let Some(every) = app.detect_interval else {
        return;
    };
    loop {
        let generation = app.intake.generation();
        if app
            .detected_generation
            .load(std::sync::atomic::Ordering::Relaxed)
            != generation
        {
            detect_now(&app, generation).await;
        }
        tokio::time::sleep(every).await;
    }
}

/// One detection run over the whole lake, merged into the stored findings: only the hours
/// whose files changed since the last run, and those with records not committed yet, are read
/// ([`flowscope_detect::Incremental`]).
async fn detect_now(app: &App, generation: u64) {
    use std::sync::atomic::Ordering;
    let clock = std::time::Instant::now();
    let detector = flowscope_detect::Detector::new(
        &app.engine,
        app.detect.config.clone(),
        app.detect.intel.clone(),
        TimeRange::default(),
    );
    let run = async {
        let unsettled = app.intake.pending_hours().await;
        let mut kept = app.incremental.lock().await;
        let report = detector.run_incremental(&mut kept, &unsettled).await?;
        drop(kept);
        if let Some(r) = report.reread {
            app.hours_read
                .fetch_add(r.hours_read as u64, Ordering::Relaxed);
            app.hours_kept
                .fetch_add(r.hours_kept as u64, Ordering::Relaxed);
            tracing::debug!(
                hours_read = r.hours_read,
                hours_kept = r.hours_kept,
                records_read = r.records_read,
                "detection pass"
            );
        }
        let newest = newest_end(&app.engine).await?;
        Ok::<_, Error>((report, newest))
    };
    match run.await {
        Ok((report, newest)) => {
            let merged = app.findings.lock().expect("findings lock").merge(
                report.findings,
                report.warnings,
                now_ms(),
                newest,
            );
            match merged {
                Ok(changes) => {
                    if changes.new > 0 || changes.resolved > 0 {
                        tracing::info!(
                            new = changes.new,
                            resolved = changes.resolved,
                            "findings changed"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not save the findings"),
            }
            app.detected_generation.store(generation, Ordering::Relaxed);
        }
        Err(e) => {
            app.detection_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "the detections failed; tried again later");
        }
    }
    app.detection_ms.store(
        u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The latest record end in the lake (and the buffer), Unix seconds; 0 when empty.
async fn newest_end(engine: &Engine) -> Result<i64> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let batches = engine
        .sql("SELECT CAST(max(\"end\") AS BIGINT) FROM flows")
        .await?
        .collect()
        .await
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| {
            let c = b
                .column(0)
                .as_primitive_opt::<arrow_array::types::Int64Type>()?;
            (!c.is_null(0)).then(|| c.value(0))
        })
        .unwrap_or(0))
}

async fn maintain(app: Arc<App>) {
    if app.retain.is_none() && app.compact_interval.is_none() {
        return;
    }
    let start = tokio::time::Instant::now();
    let mut next_prune = app.retain.map(|_| start);
    let mut next_compact = app.compact_interval.map(|every| start + every);
    loop {
        let Some(next) = next_prune.into_iter().chain(next_compact).min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        let now = tokio::time::Instant::now();
        if let (Some(at), Some(retain)) = (next_prune, app.retain)
            && at <= now
        {
            let cutoff = now_ms() / 1000 - i64::try_from(retain.as_secs()).unwrap_or(i64::MAX / 2);
            match app
                .intake
                .with_lake(|lake| flowscope_lake::maintenance::prune(lake, cutoff))
                .await
            {
                Ok(s) if s.partitions > 0 => {
                    tracing::info!(
                        partitions = s.partitions,
                        files = s.files,
                        rows = s.rows,
                        "retention: removed the partitions older than --retain"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention failed; tried again later"),
            }
            next_prune = Some(now + RETENTION_CHECK.min(retain));
        }
        if let (Some(at), Some(every)) = (next_compact, app.compact_interval)
            && at <= now
        {
            match app
                .intake
                .with_lake(flowscope_lake::maintenance::compact)
                .await
            {
                Ok(s) if s.partitions > 0 => {
                    tracing::info!(
                        partitions = s.partitions,
                        files_before = s.files_before,
                        files_after = s.files_after,
                        "compacted"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "compaction failed; tried again later"),
            }
            next_compact = Some(now + every);
        }
    }
}

/// File descriptors kept for the lake (commits, the intake log, query reads) beyond connections.
const RESERVED_FILES: u64 = 128;

/// Raises the open-file limit to its hard maximum and returns how many connections fit in it
/// beside [`RESERVED_FILES`] (at most `wanted`, at least 4).
fn connection_limit(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let room = limit
        .current
        .map_or(u64::MAX, |files| files.saturating_sub(RESERVED_FILES))
        .max(4);
    let connections = wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if connections < wanted {
        tracing::warn!(
            connections,
            wanted,
            "the open-file limit leaves room for fewer connections than --max-connections"
        );
    }
    connections
}

/// The address a listener is bound to, as a URL (`https` with TLS).
pub fn url_of(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}/")
}
