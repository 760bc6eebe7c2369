//! Following a CloudWatch Logs group by pulling it (`FilterLogEvents`), for flow logs published
//! to CloudWatch Logs without a subscription.
//!
//! The position is kept on the events themselves, not on paging tokens (which do not survive a
//! restart): the ids of the events taken, with their timestamps, from a floor on. Each poll
//! reads the group from the floor, skips the events already taken, and takes the rest as one
//! delivery per page, whose write-ahead log entry carries their ids: the records and the
//! position move together. The floor follows the newest event taken less the overlap
//! (`lateness`), so an event ingested late, timestamped before newer ones already taken, is
//! still found while it is within the overlap.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flowscope_lake::aws::{Client, Service};
use flowscope_lake::object::S3Options;
use flowscope_record::LogFormat;
use serde_json::{Value, json};

use super::failed;
use crate::App;
use crate::intake::{Events, Taken};

/// Most pages read in one poll (10,000 events a page): the rest wait for the next poll.
const MAX_PAGES: usize = 1_000;

/// Most events asked for in one page (AWS's limit).
const PAGE_EVENTS: u32 = 10_000;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One log group to pull.
#[derive(Debug, Clone)]
pub struct LogGroup {
    /// The log group's name (`/aws/vpc/flowlogs`).
    pub name: String,
    /// Only streams whose names begin with this (`eni-0abc`), as `--log-stream-name-prefix`.
    pub stream_prefix: Option<String>,
    /// How to reach CloudWatch Logs: endpoint, region, profile.
    pub options: S3Options,
    /// The flow log's format when it is not the server's `--log-format` (events carry no
    /// header).
    pub format: Option<LogFormat>,
    /// How often the group is read.
    pub poll: Duration,
    /// How long after newer events an event may arrive and still be found.
    pub lateness: Duration,
}

impl LogGroup {
    /// Pulling `name` every minute, with an hour's lateness.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            stream_prefix: None,
            options: S3Options::default(),
            format: None,
            poll: Duration::from_secs(60),
            lateness: Duration::from_secs(3600),
        }
    }

    /// The source's name in logs, `/metrics` and `/api/status`: `log-group:NAME`, with
    /// `:PREFIX*` when only some streams are read.
    pub fn source(&self) -> String {
        match &self.stream_prefix {
            Some(p) => format!("log-group:{}:{p}*", self.name),
            None => format!("log-group:{}", self.name),
        }
    }

    /// The `FilterLogEvents` request for the events from `start` (Unix milliseconds) on.
    fn request(&self, start: i64, token: Option<&str>, limit: u32) -> Value {
        let mut input = json!({
            "logGroupName": self.name,
            "startTime": start.max(0),
            "limit": limit,
        });
        if let Some(prefix) = &self.stream_prefix {
            input["logStreamNamePrefix"] = prefix.clone().into();
        }
        if let Some(token) = token {
            input["nextToken"] = token.into();
        }
        input
    }

    /// Whether events of `stream` are read.
    fn covers(&self, stream: &str) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| stream.starts_with(p))
    }
}

/// One event of a `FilterLogEvents` page.
struct Event {
    id: String,
    at: i64,
    message: String,
}

/// The events of a page under the group's streams; malformed ones are counted.
fn events_of(group: &LogGroup, page: &Value, malformed: &mut u64) -> Vec<Event> {
    let Some(events) = page.get("events").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let stream = e.get("logStreamName").and_then(Value::as_str).unwrap_or("");
        if !group.covers(stream) {
            continue;
        }
        match (
            e.get("eventId").and_then(Value::as_str),
            e.get("timestamp").and_then(Value::as_i64),
            e.get("message").and_then(Value::as_str),
        ) {
            (Some(id), Some(at), Some(message)) => out.push(Event {
                id: id.to_string(),
                at,
                message: message.trim_end_matches(['\n', '\r']).to_string(),
            }),
            _ => *malformed += 1,
        }
    }
    out
}

/// Pulls `group` until the task is stopped; failures are logged, counted under the source's
/// name, and retried at the next poll.
pub async fn run(app: Arc<App>, group: LogGroup) {
    let name = group.source();
    let client = loop {
        match Client::new(Service::Logs, &group.options) {
            Ok(c) => break c,
            Err(e) => {
                failed(&app, &name, format!("cannot set up CloudWatch Logs: {e}")).await;
                tokio::time::sleep(group.poll.max(Duration::from_secs(5))).await;
            }
        }
    };
    let overlap_ms = i64::try_from(group.lateness.as_millis()).unwrap_or(i64::MAX / 4);
    loop {
        poll(&app, &group, &client, &name, overlap_ms).await;
        tokio::time::sleep(group.poll).await;
    }
}

/// Reads the group once from its floor, taking each page's new events as one delivery.
async fn poll(app: &App, group: &LogGroup, client: &Client, name: &str, overlap_ms: i64) {
    let checkpoint = app.intake.checkpoint(name).await;
    // Events taken earlier in this poll (the checkpoint above is from before it).
    let mut taken: HashSet<String> = HashSet::new();
    let mut token: Option<String> = None;
    let mut malformed = 0;
    for _ in 0..MAX_PAGES {
        let page = match client
            .call(
                "FilterLogEvents",
                &group.request(checkpoint.floor, token.as_deref(), PAGE_EVENTS),
                CALL_TIMEOUT,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                failed(app, name, format!("reading the log group failed: {e}")).await;
                return;
            }
        };
        let events: Vec<Event> = events_of(group, &page, &mut malformed)
            .into_iter()
            .filter(|e| !checkpoint.has(e.at, &e.id) && !taken.contains(&e.id))
            .collect();
        if !events.is_empty() {
            let mut text = String::new();
            for e in &events {
                text.push_str(&e.message);
                text.push('\n');
            }
            let ids: Vec<(i64, String)> = events.iter().map(|e| (e.at, e.id.clone())).collect();
            let mut hashed = Vec::new();
            for (_, id) in &ids {
                hashed.extend_from_slice(id.as_bytes());
                hashed.push(b'\n');
            }
            let id = format!("logs/{name}/{:016x}", xxhash_rust::xxh3::xxh3_64(&hashed));
            let delivery = Events {
                source: name.to_string(),
                ids,
                overlap_ms,
            };
            match app
                .intake
                .take_events(&id, text, group.format.as_ref(), delivery)
                .await
            {
                Ok(Taken::New(records, rejected)) => {
                    tracing::info!(
                        source = name,
                        events = events.len(),
                        records,
                        rejected,
                        "taken in"
                    );
                    app.after_delivery().await;
                }
                Ok(Taken::Duplicate) => {}
                Err(e) => {
                    failed(app, name, format!("taking events failed: {e}")).await;
                    return;
                }
            }
            taken.extend(events.into_iter().map(|e| e.id));
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => break,
        }
    }
    if malformed > 0 {
        failed(
            app,
            name,
            format!("{malformed} events without an id, a timestamp or a message skipped"),
        )
        .await;
    }
}

/// Tries what pulling `group` needs: one `FilterLogEvents` call (`logs:FilterLogEvents`).
pub async fn check(group: &LogGroup) -> Vec<super::Check> {
    let what = format!("read {}", group.source());
    let mut checks = Vec::new();
    let outcome = match Client::new(Service::Logs, &group.options) {
        Err(e) => Err(e),
        Ok(client) => {
            if let Some(check) = super::role_check(&group.options, client.credentials()).await {
                let failed = check.outcome.is_err();
                checks.push(check);
                if failed {
                    return checks;
                }
            }
            client
                .call("FilterLogEvents", &group.request(0, None, 1), CALL_TIMEOUT)
                .await
                .map(|page| {
                    let n = page
                        .get("events")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    if n == 0 {
                        "no events yet".to_string()
                    } else {
                        "events found".to_string()
                    }
                })
                .map_err(|e| e.to_string())
        }
    };
    checks.push(super::Check {
        what,
        permission: "logs:FilterLogEvents",
        outcome,
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_for_the_streams_asked() {
        let mut group = LogGroup::new("/aws/vpc/flowlogs");
        group.stream_prefix = Some("eni-1".into());
        assert_eq!(group.source(), "log-group:/aws/vpc/flowlogs:eni-1*");
        let page = json!({"events": [
            {"logStreamName": "eni-1-all", "eventId": "a", "timestamp": 5, "message": "2 x\n"},
            {"logStreamName": "eni-2-all", "eventId": "b", "timestamp": 6, "message": "2 y"},
            {"logStreamName": "eni-1-all", "timestamp": 7, "message": "2 z"},
        ]});
        let mut malformed = 0;
        let events = events_of(&group, &page, &mut malformed);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].id.as_str(), events[0].at), ("a", 5));
        assert_eq!(events[0].message, "2 x");
        assert_eq!(malformed, 1);
        let request = group.request(-3, Some("t"), 10);
        assert_eq!(request["startTime"], 0);
        assert_eq!(request["logStreamNamePrefix"], "eni-1");
        assert_eq!(request["nextToken"], "t");
    }
}
