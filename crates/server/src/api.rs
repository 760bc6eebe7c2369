//! The JSON API: SQL and Logs Insights queries, findings, diagnoses, alarms, status, and the
//! OpenAPI document that describes them.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use datafusion::dataframe::DataFrame;
use flowscope_detect::{Detector, Severity};
use flowscope_detect::{DiagnoseFilter, diagnose};
use flowscope_query::TimeRange;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::ApiError;

/// Rows a query answer holds at most unless the request asks for fewer.
pub const MAX_ROWS: usize = 10_000;

/// The most an answer's values may take (text bytes, 8 a number); rows past it are left out
/// and the answer says `"truncated": true`.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        _ => 8,
    }
}

/// A column's values as JSON: numbers as numbers, booleans as booleans, nulls as null,
/// everything else as its text.
fn column_values(array: &dyn Array, out: &mut [Vec<Value>]) -> Result<(), String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    macro_rules! numbers {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            for (i, row) in out.iter_mut().enumerate() {
                row.push(if a.is_null(i) {
                    Value::Null
                } else {
                    json!(a.value(i))
                });
            }
        }};
    }
    match array.data_type() {
        DataType::Int8 => numbers!(Int8Type),
        DataType::Int16 => numbers!(Int16Type),
        DataType::Int32 => numbers!(Int32Type),
        DataType::Int64 => numbers!(Int64Type),
        DataType::UInt8 => numbers!(UInt8Type),
        DataType::UInt16 => numbers!(UInt16Type),
        DataType::UInt32 => numbers!(UInt32Type),
        DataType::UInt64 => numbers!(UInt64Type),
        DataType::Float32 => numbers!(Float32Type),
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            for (i, row) in out.iter_mut().enumerate() {
                let v = a.value(i);
                row.push(if a.is_null(i) || !v.is_finite() {
                    Value::Null
                } else {
                    json!(v)
                });
            }
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            for (i, row) in out.iter_mut().enumerate() {
                row.push(if a.is_null(i) {
                    Value::Null
                } else {
                    json!(a.value(i))
                });
            }
        }
        _ => {
            let f = ArrayFormatter::try_new(array, &FormatOptions::default())
                .map_err(|e| e.to_string())?;
            for (i, row) in out.iter_mut().enumerate() {
                row.push(if array.is_null(i) {
                    Value::Null
                } else {
                    Value::String(f.value(i).to_string())
                });
            }
        }
    }
    Ok(())
}

/// Runs a planned query into `{"columns", "rows", "truncated", "elapsed_ms"}`, reading at most
/// `limit` rows (the rest are not computed).
async fn answer(frame: DataFrame, limit: usize, clock: Instant) -> Result<Response, ApiError> {
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut truncated = false;
    let mut bytes = 0;
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch.map_err(|e| ApiError::bad_request(e.to_string()))?;
        let take = batch.num_rows().min(limit - rows.len());
        let batch = batch.slice(0, take);
        let mut new: Vec<Vec<Value>> = vec![Vec::with_capacity(columns.len()); take];
        for c in batch.columns() {
            column_values(c.as_ref(), &mut new).map_err(ApiError::internal)?;
        }
        for row in new {
            bytes += row.iter().map(value_size).sum::<usize>();
            if bytes > MAX_ANSWER_BYTES {
                truncated = true;
                break;
            }
            rows.push(row);
        }
        if truncated || rows.len() >= limit {
            truncated = true;
            break;
        }
    }
    Ok(Json(json!({
        "columns": columns,
        "rows": rows,
        "truncated": truncated,
        "elapsed_ms": clock.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response())
}

/// `POST /api/sql` body.
#[derive(Deserialize)]
pub struct SqlRequest {
    sql: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/sql`: one SQL statement over `flows`.
pub async fn sql(
    State(app): State<Arc<App>>,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let clock = Instant::now();
    let limit = req.limit.unwrap_or(MAX_ROWS).clamp(1, MAX_ROWS);
    let worker = Arc::clone(&app);
    app.queries
        .run(async move {
            match worker.engine.query_only(&req.sql).await {
                Ok(frame) => answer(frame, limit, clock).await.into_response(),
                Err(e) => ApiError::query(&e, &req.sql).into_response(),
            }
        })
        .await
}

/// A time given as Unix seconds or as text (`-1h`, RFC 3339).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum TimeArg {
    /// Unix seconds.
    Seconds(i64),
    /// Text, as `--start` takes it.
    Text(String),
}

impl TimeArg {
    fn text(&self) -> String {
        match self {
            Self::Seconds(s) => s.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

fn range(start: Option<&TimeArg>, end: Option<&TimeArg>) -> Result<TimeRange, ApiError> {
    let now = crate::now_ms() / 1000;
    let (s, e) = (start.map(TimeArg::text), end.map(TimeArg::text));
    TimeRange::parse(s.as_deref(), e.as_deref(), now)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST /api/insights` body.
#[derive(Deserialize)]
pub struct InsightsRequest {
    query: String,
    #[serde(default)]
    start: Option<TimeArg>,
    #[serde(default)]
    end: Option<TimeArg>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/insights`: a CloudWatch Logs Insights query.
pub async fn insights(
    State(app): State<Arc<App>>,
    body: Result<Json<InsightsRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let clock = Instant::now();
    let range = match range(req.start.as_ref(), req.end.as_ref()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let limit = req.limit.unwrap_or(MAX_ROWS).clamp(1, MAX_ROWS);
    let worker = Arc::clone(&app);
    app.queries
        .run(async move {
            match worker.engine.insights(&req.query, range).await {
                Ok(plan) => answer(plan.frame, limit, clock).await.into_response(),
                Err(e) => ApiError::query(&e, &req.query).into_response(),
            }
        })
        .await
}

/// Query string of `GET /api/findings`.
#[derive(Deserialize)]
pub struct FindingsQuery {
    start: Option<String>,
    end: Option<String>,
    min_severity: Option<String>,
    state: Option<String>,
    fresh: Option<bool>,
}

/// `GET /api/findings`: the stored findings (see [`crate::findings`]) whose records overlap the
/// range, of at least `min_severity`, in `state` (`new`, `ongoing`, `resolved`, or `active` for
/// the first two), active ones first, most severe first; `fresh=true` runs the detections over
/// the range instead.
pub async fn findings(State(app): State<Arc<App>>, Query(q): Query<FindingsQuery>) -> Response {
    let clock = Instant::now();
    let range = match range(
        q.start.map(TimeArg::Text).as_ref(),
        q.end.map(TimeArg::Text).as_ref(),
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let min = match q.min_severity.as_deref().map(str::parse::<Severity>) {
        None => Severity::Low,
        Some(Ok(s)) => s,
        Some(Err(e)) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    if q.fresh == Some(true) {
        let worker = Arc::clone(&app);
        return app
            .queries
            .run(async move { findings_of(&worker, range, min, clock).await })
            .await;
    }
    let states: &[crate::findings::State] = {
        use crate::findings::State::{New, Ongoing, Resolved};
        match q.state.as_deref() {
            None => &[New, Ongoing, Resolved],
            Some("active") => &[New, Ongoing],
            Some("new") => &[New],
            Some("ongoing") => &[Ongoing],
            Some("resolved") => &[Resolved],
            Some(other) => {
                return ApiError::bad_request(format!(
                    "state {other:?}: expected new, ongoing, resolved or active"
                ))
                .into_response();
            }
        }
    };
    let store = app.findings.lock().expect("findings lock");
    let found: Vec<_> = store
        .list(min, range.start, range.end)
        .into_iter()
        .filter(|f| states.contains(&f.state))
        .collect();
    let (runs, detected_at, warnings) = store.last_run();
    let generation = app.intake.generation();
    let seen = app
        .detected_generation
        .load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({
        "findings": found,
        "warnings": warnings,
        "runs": runs,
        "detected_at": detected_at.map(|ms| flowscope_record::time::rfc3339(ms / 1000)),
        "up_to_date": seen == generation,
        "elapsed_ms": clock.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response()
}

async fn findings_of(app: &App, range: TimeRange, min: Severity, clock: Instant) -> Response {
    let detector = Detector::new(
        &app.engine,
        app.detect.config.clone(),
        app.detect.intel.clone(),
        range,
    );
    match detector.run().await {
        Ok(report) => {
            let findings: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.severity >= min)
                .collect();
            Json(json!({
                "findings": findings,
                "warnings": report.warnings,
                "elapsed_ms": clock.elapsed().as_secs_f64() * 1000.0,
            }))
            .into_response()
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// Query string of `GET /api/diagnose`.
#[derive(Deserialize)]
pub struct DiagnoseQuery {
    src: Option<String>,
    dst: Option<String>,
    port: Option<u16>,
    start: Option<String>,
    end: Option<String>,
}

/// `GET /api/diagnose`: why connections are rejected.
pub async fn diagnoses(State(app): State<Arc<App>>, Query(q): Query<DiagnoseQuery>) -> Response {
    let range = match range(
        q.start.map(TimeArg::Text).as_ref(),
        q.end.map(TimeArg::Text).as_ref(),
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    for a in [&q.src, &q.dst].into_iter().flatten() {
        if a.parse::<std::net::IpAddr>().is_err() {
            return ApiError::bad_request(format!("{a:?} is not an IP address")).into_response();
        }
    }
    let filter = DiagnoseFilter {
        src: q.src,
        dst: q.dst,
        port: q.port,
        range,
    };
    let worker = Arc::clone(&app);
    app.queries
        .run(async move {
            match diagnose(&worker.engine, &filter).await {
                Ok(d) => {
                    // Requests from the internet refused on the way in are the controls doing
                    // their job: flagged, and counted, so a page can fold them as the CLI does.
                    let edge: Vec<&flowscope_detect::Diagnosis> =
                        d.iter().filter(|x| x.at_edge()).collect();
                    let sources: std::collections::HashSet<&str> =
                        edge.iter().map(|x| x.src.as_str()).collect();
                    let rows: Vec<Value> = d
                        .iter()
                        .map(|x| {
                            let mut v = serde_json::to_value(x).unwrap_or(Value::Null);
                            if let Value::Object(m) = &mut v {
                                m.insert("at_edge".into(), Value::Bool(x.at_edge()));
                            }
                            v
                        })
                        .collect();
                    Json(json!({
                        "diagnoses": rows,
                        "refused_at_edge": {
                            "sources": sources.len(),
                            "records": edge.iter().map(|x| x.records).sum::<u64>(),
                        },
                    }))
                    .into_response()
                }
                Err(e) => ApiError::internal(e.to_string()).into_response(),
            }
        })
        .await
}

/// `GET /api/alarms`: the live alarms' states.
pub async fn alarms(State(app): State<Arc<App>>) -> Response {
    match &app.alarms {
        Some(a) => Json(a.snapshot()).into_response(),
        None => Json(json!({ "alarms": [] })).into_response(),
    }
}

/// `GET /api/status`: intake counters and the lake's path.
pub async fn status(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "lake": app.engine.root().display().to_string(),
        "intake": app.intake.stats().await,
        "firehose_access_key": app.access_key.is_some(),
    }))
    .into_response()
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}
