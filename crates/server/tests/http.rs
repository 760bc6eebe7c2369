//! HTTP tests of every endpoint, against a real server on 127.0.0.1 (a port the OS picks).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flowscope_detect::AlarmsFile;
use flowscope_server::{App, Options, router};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const KEY: &str = "test-key-0123";

/// A default-format line (version 2) at `start`.
fn line(src: &str, dst: &str, sport: u16, dport: u16, action: &str, start: i64) -> String {
    format!(
        "2 123456789012 eni-0a1b2c3d4e5f60001 {src} {dst} {sport} {dport} 6 4 240 {start} {} {action} OK",
        start + 30
    )
}

fn firehose_body(id: &str, records: &[String]) -> Vec<u8> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| json!({"data": STANDARD.encode(r)}))
        .collect();
    serde_json::to_vec(
        &json!({"requestId": id, "timestamp": 1_700_000_000_000_i64, "records": records}),
    )
    .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Server {
    url: String,
    app: Arc<App>,
    task: JoinHandle<()>,
    http: reqwest::Client,
}

impl Server {
    async fn start(options: Options) -> Self {
        let app = App::open(&options).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = router(Arc::clone(&app));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            url,
            app,
            task,
            http: reqwest::Client::new(),
        }
    }

    /// Stops without committing: what a crash leaves behind.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
        drop(self.app);
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn deliver(&self, id: &str, records: &[String]) -> (u16, Value) {
        self.post(
            "/firehose",
            &[
                ("X-Amz-Firehose-Access-Key", KEY),
                ("X-Amz-Firehose-Request-Id", id),
            ],
            firehose_body(id, records),
        )
        .await
    }

    async fn sql(&self, sql: &str) -> Value {
        let (status, v) = self
            .post(
                "/api/sql",
                &[],
                serde_json::to_vec(&json!({"sql": sql})).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn count(&self) -> i64 {
        self.sql("SELECT count(*) FROM flows").await["rows"][0][0]
            .as_i64()
            .unwrap()
    }
}

fn options(lake: &Path) -> Options {
    let mut o = Options::new(lake);
    o.access_key = Some(KEY.into());
    o.max_body = 256 * 1024;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_deliveries_land_exactly_once_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let s = Server::start(options(&lake)).await;
    let t0 = 1_762_070_400; // 2025-11-02T08:00:00Z
    let batch: Vec<String> = (0..5)
        .map(|i| {
            line(
                "10.0.1.5",
                "10.0.2.9",
                40000 + i,
                443,
                "ACCEPT",
                t0 + i as i64,
            )
        })
        .collect();

    // Keys: none, wrong, right.
    let body = firehose_body("r-1", &batch);
    let (status, v) = s.post("/firehose", &[], body.clone()).await;
    assert_eq!(status, 401, "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains("missing"));
    let (status, v) = s
        .post(
            "/firehose",
            &[("X-Amz-Firehose-Access-Key", "nope")],
            body.clone(),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(s.count().await, 0, "refused deliveries leave nothing");

    let (status, v) = s.deliver("r-1", &batch).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["requestId"], "r-1");
    assert!(v["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(v.get("errorMessage").is_none());
    // Visible at once, before any commit.
    assert_eq!(s.count().await, 5);
    let v = s
        .sql("SELECT date, hour, srcaddr FROM flows WHERE dstport = 443 LIMIT 1")
        .await;
    assert_eq!(v["rows"][0], json!(["2025-11-02", 8, "10.0.1.5"]));
    // A retry of the same request is answered 200 and not taken twice.
    let (status, _) = s.deliver("r-1", &batch).await;
    assert_eq!(status, 200);
    assert_eq!(s.count().await, 5);

    // Hostile and malformed bodies: 400 and no effect.
    let k = [("X-Amz-Firehose-Access-Key", KEY)];
    for (body, needle) in [
        (
            b"{\"requestId\": \"x\", \"records\": [".to_vec(),
            "not a Firehose delivery request",
        ),
        (br#"{"records": []}"#.to_vec(), "requestId"),
        (
            br#"{"requestId": "b", "records": [{"data": "***"}]}"#.to_vec(),
            "records[0].data is not base64",
        ),
        (b"\xff\xfe".to_vec(), "not a Firehose delivery request"),
    ] {
        let (status, v) = s.post("/firehose", &k, body).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["errorMessage"].as_str().unwrap().contains(needle), "{v}");
    }
    let (status, v) = s
        .post(
            "/firehose",
            &[
                ("X-Amz-Firehose-Access-Key", KEY),
                ("X-Amz-Firehose-Request-Id", "other"),
            ],
            firehose_body("r-9", &batch),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    // Oversized: plain, and a small gzip body that inflates past the limit of 64 MiB.
    let big = firehose_body(
        "big",
        &[line("10.0.1.5", "10.0.2.9", 1, 2, "ACCEPT", t0).repeat(3000)],
    );
    let (status, _) = s.post("/firehose", &k, big).await;
    assert_eq!(status, 413);
    let bomb = gzip(&vec![b' '; 70 << 20]);
    assert!(bomb.len() < 256 * 1024);
    let (status, v) = s
        .post(
            "/firehose",
            &[
                ("X-Amz-Firehose-Access-Key", KEY),
                ("Content-Encoding", "gzip"),
            ],
            bomb,
        )
        .await;
    assert_eq!(status, 413, "{v}");
    // A gzip-encoded delivery is taken.
    let zipped = gzip(&firehose_body("r-2", &batch[..2]));
    let (status, v) = s
        .post(
            "/firehose",
            &[
                ("X-Amz-Firehose-Access-Key", KEY),
                ("Content-Encoding", "gzip"),
            ],
            zipped,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.count().await, 7);
    // Bad lines are rejected and counted; the good ones in the same delivery kept.
    let mixed = vec![
        line("10.0.1.6", "10.0.2.9", 40001, 22, "REJECT", t0 + 60),
        "2 123456789012 eni-x 10.0.1.6 not-an-address 1 2 6 1 1 1 1 ACCEPT OK".to_string(),
    ];
    let (status, _) = s.deliver("r-3", &mixed).await;
    assert_eq!(status, 200);
    assert_eq!(s.count().await, 8);
    let (_, status_body) = s.get("/api/status").await;
    let st: Value = serde_json::from_str(&status_body).unwrap();
    assert_eq!(st["intake"]["deliveries"], 3);
    assert_eq!(st["intake"]["duplicates"], 1);
    assert_eq!(st["intake"]["records"], 8);
    assert_eq!(st["intake"]["rejected"], 1);
    assert!(st["intake"]["refused"].as_u64().unwrap() >= 8, "{st}");
    let why = st["intake"]["last_rejections"][0].as_str().unwrap();
    assert!(why.starts_with("firehose/r-3:2: dstaddr"), "{why}");

    // Crash before any commit: the intake log brings every acknowledged record back, once.
    s.crash().await;
    let s = Server::start(options(&lake)).await;
    assert_eq!(s.count().await, 8);
    let (status, _) = s.deliver("r-1", &batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.count().await,
        8,
        "a retried delivery after the restart is not taken again"
    );
    // Committed to the lake: readable without the server.
    s.app.intake.flush().await.unwrap();
    s.crash().await;
    let engine = flowscope_query::Engine::open(&lake).await.unwrap();
    let n = engine
        .sql("SELECT count(*) AS n FROM flows")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        arrow_cast::display::array_value_to_string(n[0].column(0), 0).unwrap(),
        "8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_payloads_queries_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(options(&dir.path().join("lake"))).await;
    let t0 = 1_762_070_400;
    let events: Vec<Value> = (0..4)
        .map(|i| {
            json!({"id": i.to_string(), "timestamp": (t0 + i) * 1000,
            "message": line("10.0.3.7", "198.51.100.23", 50000 + i as u16, 443, "ACCEPT", t0 + i)})
        })
        .collect();
    let payload = serde_json::to_vec(
        &json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "vpc-flow-logs", "logStream": "eni-0a1b2c3d4e5f60001-all",
        "subscriptionFilters": ["all"], "logEvents": events}),
    )
    .unwrap();
    let k = [("X-Amz-Firehose-Access-Key", KEY)];
    let (status, v) = s.post("/cloudwatch", &[], gzip(&payload)).await;
    assert_eq!(status, 401, "{v}");
    let (status, v) = s.post("/cloudwatch", &k, gzip(&payload)).await;
    assert_eq!((status, v["records"].as_i64()), (200, Some(4)), "{v}");
    let (status, v) = s
        .post(
            "/cloudwatch",
            &k,
            STANDARD.encode(gzip(&payload)).into_bytes(),
        )
        .await;
    assert_eq!((status, &v["duplicate"]), (200, &json!(true)), "{v}");
    let (status, v) = s.post("/cloudwatch", &k, b"not a payload".to_vec()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(s.count().await, 4);

    // SQL: numbers as numbers, errors with positions.
    let v = s
        .sql("SELECT dstport, sum(bytes) AS b, avg(packets) AS p, min(srcaddr) AS a FROM flows GROUP BY dstport")
        .await;
    assert_eq!(v["columns"], json!(["dstport", "b", "p", "a"]));
    assert_eq!(v["rows"], json!([[443, 960, 4.0, "10.0.3.7"]]));
    let (status, v) = s
        .post(
            "/api/sql",
            &[],
            br#"{"sql": "SELECT srcaddr,\n  nosuch FROM flows"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["position"]["line"], 2, "{v}");
    assert_eq!(v["position"]["column"], 3, "{v}");
    // SQL from the network reads; it never changes the session or writes files.
    for statement in [
        "DROP TABLE flows",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/hostname'",
        "COPY (SELECT 1) TO '/tmp/flowscope-api-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, v) = s
            .post(
                "/api/sql",
                &[],
                serde_json::to_vec(&json!({"sql": statement})).unwrap(),
            )
            .await;
        assert_eq!(status, 400, "{statement}: {v}");
    }
    assert!(!Path::new("/tmp/flowscope-api-copy.csv").exists());
    assert_eq!(s.count().await, 4, "flows still there");
    let (status, v) = s.post("/api/sql", &[], b"{\"sql\": ".to_vec()).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].is_string());
    // Logs Insights with a range.
    let body = json!({"query": "filter dstPort = 443 | stats count(*) as n by srcAddr",
        "start": t0, "end": t0 + 2});
    let (status, v) = s
        .post("/api/insights", &[], serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(status, 200, "{v}");
    let n_index = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "n")
        .unwrap();
    assert_eq!(v["rows"][0][n_index], 2);
    let (status, v) = s
        .post(
            "/api/insights",
            &[],
            br#"{"query": "stats count(* by"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["position"]["column"].as_i64().is_some(), "{v}");

    // Findings, diagnoses, alarms, status, OpenAPI, dashboard.
    let (status, body) = s.get("/api/findings").await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["findings"].is_array());
    let (status, _) = s.get("/api/findings?min_severity=extreme").await;
    assert_eq!(status, 400);
    let (status, body) = s.get("/api/diagnose?src=10.0.3.7").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s.get("/api/diagnose?src=nonsense").await;
    assert_eq!(status, 400);
    let (status, body) = s.get("/api/alarms").await;
    assert_eq!((status, body.as_str()), (200, r#"{"alarms":[]}"#));
    let (status, body) = s.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/api/sql",
        "/api/insights",
        "/api/findings",
        "/api/diagnose",
        "/api/alarms",
        "/firehose",
        "/cloudwatch",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let (status, html) = s.get("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("/assets/uPlot.iife.min.js") && html.contains("/assets/app.js"));
    let (status, js) = s.get("/assets/uPlot.iife.min.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("uPlot"));
    assert_eq!(s.get("/assets/nope.js").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_change_state_as_deliveries_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("lake"));
    // A webhook that collects the notifications.
    let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let hook = {
        let received = Arc::clone(&received);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let received = Arc::clone(&received);
                async move {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    "ok"
                }
            }),
        )
    };
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hook_listener, hook).await.unwrap() });
    let alarms = r#"
[[metric_filters]]
filter_name = "rejected-ssh"
filter_pattern = '[version, account, eni, source, destination, srcport, destport="22", protocol="6", packets, bytes, windowstart, windowend, action="REJECT", flowlogstatus]'
metric_name = "RejectedSSH"
metric_namespace = "flowscope"
metric_value = "1"

[[alarms]]
alarm_name = "ssh-probes"
metric_name = "RejectedSSH"
namespace = "flowscope"
statistic = "Sum"
period = 60
threshold = 3
comparison_operator = "GreaterThanOrEqualToThreshold"
evaluation_periods = 1
treat_missing_data = "notBreaching"
alarm_actions = ["hook"]
ok_actions = ["hook"]

[[notifications]]
name = "hook"
webhook = "HOOK"
"#
    .replace("HOOK", &hook_url);
    o.alarms = Some(AlarmsFile::parse(&alarms, "alarms.toml").unwrap());
    o.notify = true;
    let s = Server::start(o).await;
    let state = |v: &Value| v["alarms"][0]["state"].as_str().unwrap().to_string();
    let alarms_now =
        || async { serde_json::from_str::<Value>(&s.get("/api/alarms").await.1).unwrap() };
    assert_eq!(state(&alarms_now().await), "INSUFFICIENT_DATA");
    let t0 = 1_762_070_400;
    // Minute 0: quiet. Minute 1: four rejected SSH attempts. Minute 3: quiet again.
    s.deliver(
        "a",
        &[line("10.0.1.5", "10.0.2.9", 40000, 443, "ACCEPT", t0)],
    )
    .await;
    let probes: Vec<String> = (0..4)
        .map(|i| {
            line(
                "203.0.113.5",
                "10.0.2.9",
                41000 + i,
                22,
                "REJECT",
                t0 + 60 + i as i64,
            )
        })
        .collect();
    s.deliver("b", &probes).await;
    // Minute 1 is complete only once a later record arrives.
    assert_eq!(state(&alarms_now().await), "OK");
    s.deliver(
        "c",
        &[line("10.0.1.5", "10.0.2.9", 40001, 443, "ACCEPT", t0 + 120)],
    )
    .await;
    let v = alarms_now().await;
    assert_eq!(state(&v), "ALARM", "{v}");
    assert!(
        v["alarms"][0]["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("[4]"),
        "{v}"
    );
    // With missing data, CloudWatch evaluates the newest datapoints in the evaluation range
    // (N + 2 periods): the breaching minute 1 counts until minutes 2 to 4 are all missing.
    s.deliver(
        "d",
        &[line("10.0.1.5", "10.0.2.9", 40002, 443, "ACCEPT", t0 + 240)],
    )
    .await;
    assert_eq!(state(&alarms_now().await), "ALARM");
    s.deliver(
        "e",
        &[line("10.0.1.5", "10.0.2.9", 40003, 443, "ACCEPT", t0 + 300)],
    )
    .await;
    let v = alarms_now().await;
    assert_eq!(state(&v), "OK", "{v}");
    let transitions: Vec<&str> = v["alarms"][0]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["new_state"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, ["OK", "ALARM", "OK"]);
    // Each transition was sent to the webhook, SNS-shaped, in order.
    for _ in 0..100 {
        if received.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    let states: Vec<String> = got
        .iter()
        .map(|m| {
            let inner: Value = serde_json::from_str(m["Message"].as_str().unwrap()).unwrap();
            assert_eq!(inner["AlarmName"], "ssh-probes");
            inner["NewStateValue"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = states.clone();
    sorted.sort();
    assert_eq!(sorted, ["ALARM", "OK", "OK"], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_deliveries_stay_visible_to_every_view() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(options(&dir.path().join("lake"))).await;
    let t0 = 1_762_070_400;
    let (status, _) = s
        .deliver(
            "c-1",
            &[line("10.0.1.5", "10.0.2.9", 40000, 443, "ACCEPT", t0)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.count().await, 1, "buffered");
    s.app.intake.flush().await.unwrap();
    assert_eq!(s.count().await, 1, "committed: read from the lake now");
    let (status, _) = s
        .deliver(
            "c-2",
            &[line(
                "10.0.1.5",
                "10.0.2.9",
                40001,
                443,
                "ACCEPT",
                t0 + 7_200,
            )],
        )
        .await;
    assert_eq!(status, 200);
    s.app.intake.flush().await.unwrap();
    assert_eq!(s.count().await, 2, "a second commit, in a new partition");
    let (status, body) = s.get("/api/findings").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_times_are_refused_or_survived() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(options(&dir.path().join("lake"))).await;
    for path in [
        "/api/findings?start=0&end=9000000000000000000",
        "/api/findings?start=-5",
        "/api/diagnose?start=0&end=253402300800",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("out of range") || body.contains("not a time"),
            "{body}"
        );
    }
    // A record dated at the end of time, among ordinary ones: every view still answers.
    let t0 = 1_762_070_400;
    let mut records: Vec<String> = (0..30)
        .map(|i| {
            line(
                "10.0.1.5",
                "198.51.100.9",
                40000 + i,
                443,
                "REJECT",
                t0 + i as i64,
            )
        })
        .collect();
    records.push(format!(
        "2 123456789012 eni-0a1b2c3d4e5f60001 10.0.1.5 198.51.100.9 1 2 6 1 1 {t0} {} REJECT OK",
        i64::MAX
    ));
    records.push(format!(
        "2 123456789012 eni-0a1b2c3d4e5f60001 10.0.1.5 198.51.100.9 1 2 6 1 1 {} {} ACCEPT OK",
        i64::MAX - 10,
        i64::MAX
    ));
    let (status, v) = s.deliver("late", &records).await;
    assert_eq!(status, 200, "{v}");
    // A line without times is rejected; the rest of its delivery is taken.
    let before = s.count().await;
    let nodata = "2 123456789012 eni-0a1b2c3d4e5f60001 - - - - - - - - - NODATA".to_string();
    let (status, v) = s
        .deliver(
            "nodata",
            &[nodata, line("10.0.1.9", "10.0.2.9", 1, 2, "ACCEPT", t0)],
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.count().await, before + 1);
    s.app.intake.flush().await.unwrap();
    assert_eq!(s.count().await, before + 1);
    for path in ["/api/findings", "/api/diagnose", "/api/status", "/"] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_gzip_and_refusals_name_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir.path().join("lake"));
    o.max_decoded = 1 << 20;
    let s = Server::start(o).await;
    let k = ("X-Amz-Firehose-Access-Key", KEY);
    // Records that are gzip'd CloudWatch payloads, together inflating past the budget.
    let event = json!({"id": "1", "timestamp": 1, "message": line("10.0.1.5", "10.0.2.9", 1, 2, "ACCEPT", 1_762_070_400)});
    let payload = json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g",
        "logStream": "s", "subscriptionFilters": ["f"], "logEvents": vec![event; 4_000]});
    let record = STANDARD.encode(gzip(&serde_json::to_vec(&payload).unwrap()));
    let records: Vec<Value> = (0..20).map(|_| json!({"data": record})).collect();
    let body = serde_json::to_vec(&json!({"requestId": "nest-1", "records": records})).unwrap();
    assert!(body.len() < 256 * 1024, "{} bytes", body.len());
    let (status, v) = s.post("/firehose", &[k], body).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["requestId"], "nest-1", "the refusal names the request");
    assert!(
        v["errorMessage"].as_str().unwrap().contains("more than"),
        "{v}"
    );
    // A malformed request still names its requestId.
    let (status, v) = s
        .post(
            "/firehose",
            &[k],
            br#"{"requestId": "bad-1", "records": [{"data": "***"}]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["requestId"], "bad-1");
    // A gzip bomb on /cloudwatch is too large, not malformed.
    let (status, v) = s
        .post("/cloudwatch", &[k], gzip(&vec![b' '; 8 << 20]))
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(s.count().await, 0);
}

/// A small tmpfs for disk-full tests, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount(8)");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `filler` until it is full, then frees `free` bytes.
fn fill(filler: &Path, free: usize) {
    let mut f = std::fs::File::create(filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);
    let len = std::fs::metadata(filler).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(filler)
        .unwrap();
    f.set_len(len.saturating_sub(free as u64)).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_costs_an_acknowledged_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "4m");
    let lake = disk.0.join("lake");
    let s = Server::start(options(&lake)).await;
    let t0 = 1_762_070_400;
    let big: Vec<String> = (0..600)
        .map(|i| {
            line(
                "10.0.1.5",
                "10.0.2.9",
                1000 + i,
                443,
                "ACCEPT",
                t0 + i as i64,
            )
        })
        .collect();
    let small: Vec<String> = (0..5)
        .map(|i| {
            line(
                "10.0.1.7",
                "10.0.2.9",
                2000 + i,
                443,
                "ACCEPT",
                t0 + i as i64,
            )
        })
        .collect();
    let filler = disk.0.join("filler");
    // Room for part of the big delivery only: it fails, and is not acknowledged.
    fill(&filler, 16 * 1024);
    let (status, v) = s.deliver("full-1", &big).await;
    assert_eq!(status, 500, "{v}");
    // Room again: the next delivery is acknowledged...
    std::fs::remove_file(&filler).unwrap();
    let (status, v) = s.deliver("after-1", &small).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.count().await, 5);
    // ... and survives a crash: the log holds it whole, on a line of its own.
    s.crash().await;
    let s = Server::start(options(&lake)).await;
    assert_eq!(s.count().await, 5, "the acknowledged delivery came back");
    let v = s
        .sql("SELECT count(*) FROM flows WHERE srcaddr = '10.0.1.7'")
        .await;
    assert_eq!(v["rows"][0][0], 5);
    // The refused one can be sent again and is taken then.
    let (status, _) = s.deliver("full-1", &big).await;
    assert_eq!(status, 200);
    assert_eq!(s.count().await, 605);
    s.app.intake.flush().await.unwrap();
    assert_eq!(s.count().await, 605);
    s.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_can_neither_post_nor_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path().join("lake"));
    o.allowed_hosts = vec!["flows.internal".into()];
    let s = Server::start(o).await;
    let record = line("10.0.1.5", "10.0.2.9", 40000, 443, "ACCEPT", 1_762_070_400);
    let body = firehose_body("x-1", std::slice::from_ref(&record));
    // What a page elsewhere can send without a preflight: refused, nothing taken.
    for kind in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        for path in ["/firehose", "/cloudwatch", "/api/sql"] {
            let mut req = s.http.post(format!("{}{path}", s.url)).body(body.clone());
            if !kind.is_empty() {
                req = req.header("content-type", kind);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 415, "{path} with `{kind}`");
        }
    }
    assert_eq!(s.count().await, 0);
    // A rebound name in Host: refused on every endpoint; addresses, localhost and allowed
    // names pass.
    for (host, want) in [
        ("evil.example", 421),
        ("evil.example:8080", 421),
        ("127.0.0.1:8080", 200),
        ("localhost", 200),
        ("[::1]:8080", 200),
        ("flows.internal:443", 200),
    ] {
        let resp = s
            .http
            .get(format!("{}/api/status", s.url))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "Host: {host}");
    }
    let resp = s
        .http
        .post(format!("{}/api/sql", s.url))
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .body(r#"{"sql":"SELECT 1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 421);
    // The right type is taken.
    let (status, v) = s.deliver("x-1", &[record]).await;
    assert_eq!(status, 200, "{v}");
}

/// `/metrics` read by Prometheus's own parser (the `prometheus_client` package): records,
/// bytes, rejected lines, duplicates and lag per source; refused requests; pending records and
/// commits; queries. `/healthz` and `/readyz` answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_per_source_read_by_prometheus_parser() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(options(&dir.path().join("lake"))).await;
    let t0 = 1_762_070_400;
    let lines: Vec<String> = (0..3)
        .map(|i| line("10.0.3.7", "198.51.100.23", 50000 + i, 443, "ACCEPT", t0))
        .collect();
    let mut with_bad = lines.clone();
    with_bad.push("2 123 not a record".into());
    assert_eq!(s.deliver("m-1", &with_bad).await.0, 200);
    assert_eq!(s.deliver("m-1", &with_bad).await.0, 200);
    let events: Vec<Value> = (0..2)
        .map(|i| {
            json!({"id": i.to_string(), "timestamp": (t0 + 60) * 1000,
            "message": line("10.0.3.8", "198.51.100.24", 40000 + i, 443, "ACCEPT", t0 + 60)})
        })
        .collect();
    let payload = serde_json::to_vec(&json!({"messageType": "DATA_MESSAGE",
        "owner": "123456789012", "logGroup": "g", "logStream": "eni-0a1b2c3d4e5f60001-all",
        "subscriptionFilters": ["all"], "logEvents": events}))
    .unwrap();
    let k = [("X-Amz-Firehose-Access-Key", KEY)];
    assert_eq!(s.post("/cloudwatch", &k, gzip(&payload)).await.0, 200);
    assert_eq!(s.post("/cloudwatch", &[], gzip(&payload)).await.0, 401);
    assert_eq!(s.count().await, 5);

    let read = |text: String| {
        let script = "import sys, json\n\
            from prometheus_client.parser import text_string_to_metric_families\n\
            out = {}\n\
            for family in text_string_to_metric_families(sys.stdin.read()):\n\
            \x20   for x in family.samples:\n\
            \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(x.labels.items()))\n\
            \x20       out[x.name + ('{' + labels + '}' if labels else '')] = x.value\n\
            print(json.dumps(out))\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let resp = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let m = read(resp.text().await.unwrap());
    let f = |name: &str| {
        m[name]
            .as_f64()
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    assert_eq!(f("flowscope_records_total{source=firehose}"), 3.0);
    assert_eq!(f("flowscope_records_total{source=cloudwatch}"), 2.0);
    assert_eq!(f("flowscope_rejected_lines_total{source=firehose}"), 1.0);
    assert_eq!(f("flowscope_rejected_lines_total{source=cloudwatch}"), 0.0);
    assert_eq!(f("flowscope_deliveries_total{source=firehose}"), 1.0);
    assert_eq!(
        f("flowscope_duplicate_deliveries_total{source=firehose}"),
        1.0
    );
    assert!(f("flowscope_bytes_total{source=firehose}") > 100.0, "{m}");
    assert!(f("flowscope_refused_requests_total") >= 1.0, "{m}");
    assert_eq!(f("flowscope_pending_records"), 5.0);
    assert_eq!(f("flowscope_commits_total"), 0.0);
    assert_eq!(f("flowscope_queries_total{outcome=answered}"), 1.0);
    // The records end in 2025: the lag is from then to now.
    let lag = f("flowscope_lag_seconds{source=cloudwatch}");
    let firehose_lag = f("flowscope_lag_seconds{source=firehose}");
    assert!(lag > 3.0e7 && firehose_lag - lag >= 59.0, "{m}");

    s.app.intake.flush().await.unwrap();
    let m = read(s.get("/metrics").await.1);
    assert_eq!(m["flowscope_commits_total"], 1.0, "{m}");
    assert_eq!(m["flowscope_pending_records"], 0.0, "{m}");
    assert!(
        m["flowscope_commit_seconds_total"].as_f64().unwrap() > 0.0,
        "{m}"
    );
    assert_eq!(s.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(s.get("/readyz").await, (200, "ready\n".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_and_a_closed_one_frees_its_place() {
    use flowscope_server::updates::MAX_STREAMS;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(options(&dir.path().join("lake"))).await;
    let open = || async {
        s.http
            .get(format!("{}/api/live", s.url))
            .send()
            .await
            .unwrap()
    };
    let mut streams = Vec::new();
    for _ in 0..MAX_STREAMS {
        let mut r = open().await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        // Each stream tells its page what it shows at once.
        let first = r.chunk().await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&first);
        assert!(text.starts_with("event: update\ndata: {"), "{text}");
        streams.push(r);
    }
    let refused = open().await;
    assert_eq!(refused.status().as_u16(), 503);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains(&format!("{MAX_STREAMS} live streams are open already")),
        "{body}"
    );
    // The other endpoints still answer.
    assert_eq!(s.get("/healthz").await.0, 200);
    // A page that goes away gives its place to the next (the server notices at its next
    // write, within the keep-alive interval).
    drop(streams.pop());
    let started = std::time::Instant::now();
    loop {
        let r = open().await;
        if r.status().as_u16() == 200 {
            streams.push(r);
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "a closed stream's place was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(open().await.status().as_u16(), 503);
}
