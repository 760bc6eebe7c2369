//! Delivery writers: the S3 layout read back by the ingest and by the layout parser, and
//! Firehose requests received by a real HTTP server that fails some of them.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use flowscope_lake::deliver::{
    FirehoseBody, FirehoseDelivery, FirehoseSettings, S3Delivery, S3Layout, S3Target,
};
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::{Lake, input, layout};
use flowscope_record::{LogFormat, TextDecoder};
use pretty_assertions::assert_eq;

fn batch(lines: &[String]) -> RecordBatch {
    let mut d = TextDecoder::new(LogFormat::default_format(), 1 << 16);
    for l in lines {
        d.decode_line(l.as_bytes()).unwrap();
    }
    d.flush().unwrap()
}

fn lines(n: usize, end: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "2 123456789012 eni-0a1 10.0.0.{} 198.51.100.7 {} 443 6 3 180 {} {end} ACCEPT OK",
                i % 250 + 1,
                40000 + i,
                end - 5
            )
        })
        .collect()
}

fn layout(parquet: bool, hive: bool, hourly: bool) -> S3Layout {
    S3Layout {
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        flow_log_id: "fl-0d1e2f3a4b5c6d7e8".into(),
        format: LogFormat::default_format(),
        parquet,
        hive_compatible_partitions: hive,
        per_hour_partition: hourly,
        max_file_bytes: 75_000_000,
    }
}

#[test]
fn s3_layout_is_what_aws_writes_and_ingest_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    // 2026-11-02 08:20:00 and 08:25:00 windows.
    let w1 = 1_793_607_600;
    let mut d = S3Delivery::new(S3Target::Folder(root.clone()), layout(false, false, false));
    d.write(w1, &batch(&lines(10, w1 + 100))).unwrap();
    d.write(w1 + 300, &batch(&lines(5, w1 + 350))).unwrap();
    d.close_before(w1 + 300).unwrap();
    let report = d.finish().unwrap();
    assert_eq!(report.records, 15);
    let first = &report.outputs[0];
    let rel = first.strip_prefix(&format!("{}/", root.display())).unwrap();
    assert!(
        rel.starts_with("AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/02/123456789012_vpcflowlogs_us-east-1_fl-0d1e2f3a4b5c6d7e8_20261102T0820Z_"),
        "{rel}"
    );
    let hash = rel
        .rsplit('_')
        .next()
        .unwrap()
        .strip_suffix(".log.gz")
        .unwrap();
    assert!(
        hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{rel}"
    );
    let parsed = layout::parse(rel).unwrap();
    assert_eq!(
        (parsed.flow_log_id.as_str(), parsed.window_start),
        ("fl-0d1e2f3a4b5c6d7e8", w1)
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(first).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut it = text.lines();
    assert_eq!(it.next().unwrap(), LogFormat::default_format().header());
    assert_eq!(it.collect::<Vec<_>>(), lines(10, w1 + 100));

    let lake = Lake::open(dir.path().join("lake")).unwrap();
    let inputs = input::expand(&[root.display().to_string()]).unwrap();
    let summary = ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
    assert_eq!((summary.records, summary.rejected), (15, 0));
}

#[test]
fn hive_hourly_parquet_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let w = 1_793_607_600;
    let mut d = S3Delivery::new(
        S3Target::Folder(dir.path().to_path_buf()),
        layout(true, true, true),
    );
    d.write(w, &batch(&lines(20, w + 10))).unwrap();
    let report = d.finish().unwrap();
    let rel = report.outputs[0]
        .strip_prefix(&format!("{}/", dir.path().display()))
        .unwrap();
    assert!(
        rel.starts_with("AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/year=2026/month=11/day=02/hour=08/123456789012_vpcflowlogs_us-east-1_fl-0d1e2f3a4b5c6d7e8_20261102T0820Z_"),
        "{rel}"
    );
    assert!(rel.ends_with(".log.parquet"));
    let file = std::fs::File::open(&report.outputs[0]).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = std::sync::Arc::clone(reader.schema());
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names[..4],
        ["version", "account_id", "interface_id", "srcaddr"]
    );
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 20);

    // A small size limit rotates the window's file: two files, two hashes, all records.
    let mut small = layout(false, false, false);
    small.max_file_bytes = 1_500;
    let dir2 = tempfile::tempdir().unwrap();
    let mut d = S3Delivery::new(S3Target::Folder(dir2.path().to_path_buf()), small);
    for chunk in lines(30, w + 10).chunks(10) {
        d.write(w, &batch(chunk)).unwrap();
    }
    let report = d.finish().unwrap();
    assert!(report.outputs.len() >= 2, "{:?}", report.outputs);
    let names: std::collections::HashSet<_> = report.outputs.iter().collect();
    assert_eq!(names.len(), report.outputs.len());
    assert_eq!(report.records, 30);

    // AWS: "The maximum file size for a log file is 75 MB. If the log file reaches the file
    // size limit within the 5-minute period, the flow log stops adding flow log records to it."
    // One batch far past the limit: every file within it (its text, header included), none
    // empty, every record once and in order.
    let mut small = layout(false, false, false);
    small.max_file_bytes = 1_000;
    let dir3 = tempfile::tempdir().unwrap();
    let mut d = S3Delivery::new(S3Target::Folder(dir3.path().to_path_buf()), small);
    let all = lines(95, w + 10);
    d.write(w, &batch(&all[..90])).unwrap();
    d.write(w, &batch(&all[90..])).unwrap();
    let report = d.finish().unwrap();
    let mut got = Vec::new();
    let mut short = 0;
    let longest = all.iter().map(|l| l.len() + 1).max().unwrap();
    for path in &report.outputs {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
            &mut text,
        )
        .unwrap();
        assert!(text.len() <= 1_000, "{path}: {} bytes", text.len());
        let mut file_lines = text.lines();
        assert_eq!(
            file_lines.next(),
            Some(LogFormat::default_format().header().as_str())
        );
        let records: Vec<String> = file_lines.map(String::from).collect();
        assert!(!records.is_empty(), "{path}");
        // Full, but for the window's last file: the next record would not have fitted.
        short += usize::from(text.len() + longest <= 1_000);
        got.extend(records);
    }
    assert!(short <= 1, "{short} files were cut early");
    let mut want = all.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(report.outputs.len() >= 9, "{} files", report.outputs.len());
}

#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, Bytes)>,
    failures_left: u32,
    refuse: bool,
}

async fn endpoint(
    State(state): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut s = state.lock().unwrap();
    s.requests.push((headers.clone(), body.clone()));
    if s.refuse {
        return (StatusCode::PAYLOAD_TOO_LARGE, String::new());
    }
    if s.failures_left > 0 {
        s.failures_left -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy".into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        StatusCode::OK,
        serde_json::json!({ "requestId": v["requestId"], "timestamp": 1 }).to_string(),
    )
}

fn serve(state: Arc<Mutex<Received>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/firehose", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new()
                .route("/firehose", post(endpoint))
                .with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

fn settings(url: String) -> FirehoseSettings {
    FirehoseSettings {
        url,
        access_key: Some("secret-key".into()),
        source_arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/flow-logs".into(),
        common_attributes: vec![("env".into(), "test".into())],
        gzip: false,
        retry_duration: Duration::from_secs(30),
        initial_backoff: Duration::from_millis(20),
        max_records: 40,
        id_seed: "fl-1".into(),
    }
}

#[test]
fn firehose_requests_are_retried_with_the_same_request_id() {
    let state = Arc::new(Mutex::new(Received {
        failures_left: 2,
        ..Default::default()
    }));
    let url = serve(Arc::clone(&state));
    let mut d = FirehoseDelivery::new(settings(url)).unwrap();
    let sent = lines(100, 1_793_607_700);
    d.send(sent.iter().map(String::as_str), 1_793_607_760_000)
        .unwrap();
    let report = d.finish(1_793_607_760_000).unwrap();
    assert_eq!(report.records, 100);
    assert_eq!(report.outputs.len(), 3, "40 + 40 + 20 records");

    let s = state.lock().unwrap();
    assert_eq!(s.requests.len(), 5, "the first batch took three attempts");
    let id = |h: &HeaderMap| h["x-amz-firehose-request-id"].to_str().unwrap().to_string();
    assert_eq!(id(&s.requests[0].0), id(&s.requests[2].0));
    assert_eq!(
        s.requests[0].1, s.requests[2].1,
        "a retry sends the same body"
    );
    assert_ne!(id(&s.requests[2].0), id(&s.requests[3].0));
    let h = &s.requests[0].0;
    assert_eq!(h["x-amz-firehose-protocol-version"], "1.0");
    assert_eq!(h["x-amz-firehose-access-key"], "secret-key");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["x-amz-firehose-common-attributes"],
        r#"{"commonAttributes":{"env":"test"}}"#
    );

    // Every line arrives exactly once once retries are removed by request ID.
    let mut seen = std::collections::BTreeMap::new();
    for (h, body) in &s.requests {
        let v: FirehoseBody = serde_json::from_slice(body).unwrap();
        assert_eq!(v.request_id, id(h));
        assert_eq!(v.timestamp, Some(1_793_607_760_000i64.into()));
        let data: Vec<String> = v
            .records
            .iter()
            .map(|r| String::from_utf8(r.decode().unwrap()).unwrap())
            .collect();
        seen.insert(id(h), data);
    }
    let got: Vec<String> = seen
        .values()
        .flatten()
        .map(|l| l.trim_end_matches('\n').to_string())
        .collect();
    let mut want = sent.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
}

#[test]
fn firehose_413_fails_at_once_and_retries_give_up() {
    let state = Arc::new(Mutex::new(Received {
        refuse: true,
        ..Default::default()
    }));
    let url = serve(Arc::clone(&state));
    let mut d = FirehoseDelivery::new(settings(url.clone())).unwrap();
    d.send(["2 1 eni-1 - - - - - - - 1 2 - NODATA"], 0).unwrap();
    let err = d.finish(0).unwrap_err().to_string();
    assert!(err.contains("413"), "{err}");
    assert_eq!(state.lock().unwrap().requests.len(), 1);

    let state = Arc::new(Mutex::new(Received {
        failures_left: 1_000,
        ..Default::default()
    }));
    let url = serve(Arc::clone(&state));
    let mut s = settings(url);
    s.retry_duration = Duration::from_millis(300);
    let mut d = FirehoseDelivery::new(s).unwrap();
    d.send(["2 1 eni-1 - - - - - - - 1 2 - NODATA"], 0).unwrap();
    let err = d.finish(0).unwrap_err().to_string();
    assert!(err.contains("failed") && err.contains("503"), "{err}");
    let attempts = state.lock().unwrap().requests.len();
    assert!(
        (3..=6).contains(&attempts),
        "{attempts} attempts in 300 ms with 20 ms doubling"
    );
}
