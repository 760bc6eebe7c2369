//! `/metrics` in Prometheus's text format, `/healthz` and `/readyz`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::App;

/// `GET /metrics`: what came in per source, how far behind each source's newest record is,
/// commits and queries (Prometheus text format 0.0.4).
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (stats, refused) = app.intake.snapshot().await;
    let now = crate::now_ms() / 1000;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP flowscope_{name} {help}");
        let _ = writeln!(out, "# TYPE flowscope_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "flowscope_{name}{labels} {value}");
        }
    };
    let per_source = |value: &dyn Fn(&crate::intake::SourceStats) -> String| {
        stats
            .by_source
            .iter()
            .map(|(source, s)| (source_label(source), value(s)))
            .collect::<Vec<_>>()
    };
    let one = |value: String| vec![(String::new(), value)];
    family(
        "deliveries_total",
        "counter",
        "Deliveries taken in (for source=\"ingest\": ingests handed over by other commands).",
        per_source(&|s| s.deliveries.to_string()),
    );
    family(
        "duplicate_deliveries_total",
        "counter",
        "Deliveries answered again without taking them (a retried id or payload).",
        per_source(&|s| s.duplicates.to_string()),
    );
    family(
        "records_total",
        "counter",
        "Flow log records taken in.",
        per_source(&|s| s.records.to_string()),
    );
    family(
        "bytes_total",
        "counter",
        "Bytes of flow log text (or files) read.",
        per_source(&|s| s.bytes.to_string()),
    );
    family(
        "rejected_lines_total",
        "counter",
        "Lines rejected (kept out of the lake and reported).",
        per_source(&|s| s.rejected.to_string()),
    );
    family(
        "lag_seconds",
        "gauge",
        "Seconds between now and the newest record end a source delivered.",
        stats
            .by_source
            .iter()
            .filter(|(_, s)| s.newest_end > 0)
            .map(|(source, s)| {
                (
                    source_label(source),
                    (now - s.newest_end).max(0).to_string(),
                )
            })
            .collect(),
    );
    family(
        "source_errors_total",
        "counter",
        "Failures of a source: requests refused by AWS, objects that could not be read, messages naming missing objects.",
        per_source(&|s| s.errors.to_string()),
    );
    family(
        "refused_requests_total",
        "counter",
        "Delivery requests refused (key, body, size).",
        one(refused.to_string()),
    );
    family(
        "pending_records",
        "gauge",
        "Records taken in and readable, not committed to the lake's files yet.",
        one(stats.pending.to_string()),
    );
    family(
        "commits_total",
        "counter",
        "Commits of buffered deliveries to the lake.",
        one(stats.commits.to_string()),
    );
    family(
        "commit_seconds_total",
        "counter",
        "Seconds spent committing buffered deliveries.",
        one(format!("{:.6}", stats.commit_seconds)),
    );
    let q = app.queries.counts();
    family(
        "queries_total",
        "counter",
        "API queries by outcome: answered, refused (429, too many at once), timed_out (503).",
        vec![
            (
                "{outcome=\"answered\"}".into(),
                q.answered.load(Ordering::Relaxed).to_string(),
            ),
            (
                "{outcome=\"refused\"}".into(),
                q.refused.load(Ordering::Relaxed).to_string(),
            ),
            (
                "{outcome=\"timed_out\"}".into(),
                q.timed_out.load(Ordering::Relaxed).to_string(),
            ),
        ],
    );
    family(
        "query_seconds_total",
        "counter",
        "Seconds the answered API queries took, together.",
        one(format!(
            "{:.6}",
            q.micros.load(Ordering::Relaxed) as f64 / 1e6
        )),
    );
    let counts = app.findings.lock().expect("findings lock").counts();
    let mut by_severity = Vec::new();
    for severity in [
        flowscope_detect::Severity::Critical,
        flowscope_detect::Severity::High,
        flowscope_detect::Severity::Medium,
        flowscope_detect::Severity::Low,
    ] {
        for state in [
            crate::findings::State::New,
            crate::findings::State::Ongoing,
            crate::findings::State::Resolved,
        ] {
            by_severity.push((
                format!(
                    "{{severity=\"{}\",state=\"{}\"}}",
                    severity.name(),
                    state.name()
                ),
                counts
                    .get(&(severity, state))
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ));
        }
    }
    family(
        "findings",
        "gauge",
        "Stored findings by severity and state (new, ongoing, resolved).",
        by_severity,
    );
    let (runs, _, _) = app.findings.lock().expect("findings lock").last_run();
    family(
        "detection_runs_total",
        "counter",
        "Detection runs over the lake whose findings were stored.",
        one(runs.to_string()),
    );
    family(
        "detection_errors_total",
        "counter",
        "Detection runs that failed.",
        one(app.detection_errors.load(Ordering::Relaxed).to_string()),
    );
    family(
        "detection_hours_read_total",
        "counter",
        "Hour partitions the detection runs read from the lake (new or changed, or holding \
         records not committed yet).",
        one(app.hours_read.load(Ordering::Relaxed).to_string()),
    );
    family(
        "detection_hours_kept_total",
        "counter",
        "Hour partitions the detection runs took unchanged from earlier runs.",
        one(app.hours_kept.load(Ordering::Relaxed).to_string()),
    );
    family(
        "detection_seconds",
        "gauge",
        "How long the latest detection run took.",
        one(format!(
            "{:.3}",
            app.detection_ms.load(Ordering::Relaxed) as f64 / 1e3
        )),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `{source="…"}`, the value escaped as the text format wants (`\\`, `\"`, `\n`).
fn source_label(source: &str) -> String {
    let escaped = source
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{source=\"{escaped}\"}}")
}

/// `GET /healthz`: 200 while the server answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when deliveries can be taken, 503 while the intake log cannot be written
/// (a full disk: deliveries are refused until it can).
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.intake.writable() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the intake log cannot be written\n",
        )
            .into_response()
    }
}
