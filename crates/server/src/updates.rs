//! `GET /api/live`: a stream of server-sent events telling a dashboard what changed, so that it
//! follows the traffic without being reloaded.
//!
//! Every two seconds the server looks at what a page shows — the intake's generation (records
//! taken or committed), the stored findings, the alarms' states, each source's records, errors
//! and lag — and sends an `update` event with it when any of it changed (at least every 15 s a
//! comment keeps the connection open through proxies). At most [`MAX_STREAMS`] streams are open
//! at once; one more is answered 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{ApiError, App};

/// Most live streams open at once.
pub const MAX_STREAMS: usize = 64;

/// How often the server looks for changes.
const TICK: Duration = Duration::from_secs(2);

/// Streams open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Counts a stream as open until dropped.
struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a page shows, as one update.
async fn state(app: &App) -> Value {
    let stats = app.intake.stats().await;
    let (active, runs) = {
        let store = app.findings.lock().expect("findings lock");
        let active = store
            .counts()
            .iter()
            .filter(|((_, state), _)| *state != crate::findings::State::Resolved)
            .map(|(_, n)| n)
            .sum::<u64>();
        (active, store.last_run().0)
    };
    let alarms: Vec<Value> = app
        .alarms
        .as_ref()
        .map(|a| a.snapshot())
        .and_then(|s| s.get("alarms").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .map(|a| json!({"alarm_name": a["alarm_name"], "state": a["state"]}))
        .collect();
    json!({
        "generation": app.intake.generation(),
        "records": stats["records"],
        "pending": stats["pending"],
        "findings": {"active": active, "runs": runs},
        "alarms": alarms,
        "sources": stats["sources"],
    })
}

/// `GET /api/live`.
pub async fn live(State(app): State<Arc<App>>) -> Response {
    if OPEN.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} live streams are open already; try again later"),
        )
        .into_response();
    }
    let open = Open;
    let stream = futures::stream::unfold(
        (app, None::<Value>, open, true),
        |(app, last, open, first)| async move {
            loop {
                if !first || last.is_some() {
                    tokio::time::sleep(TICK).await;
                }
                let now = state(&app).await;
                if last.as_ref() != Some(&now) {
                    let event = Event::default().event("update").data(now.to_string());
                    return Some((Ok::<_, Infallible>(event), (app, Some(now), open, false)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
