//! A bounded load test on 127.0.0.1: concurrent Firehose deliveries (some retried), commits
//! happening while they arrive; everything sent is counted in the lake exactly once. Prints the
//! throughput (`cargo test -p flowscope-server --release --test load -- --nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flowscope_server::{App, Options};
use serde_json::json;

const CLIENTS: usize = 8;
const DELIVERIES: usize = 40;
const RECORDS: usize = 250;

fn body(client: usize, delivery: usize) -> Vec<u8> {
    let t0 = 1_762_070_400 + (delivery as i64) * 60;
    let text: String = (0..RECORDS)
        .map(|i| {
            format!(
                "2 123456789012 eni-0a1b2c3d4e5f6{client:04} 10.0.{client}.1 10.1.0.2 {} {} 6 3 180 {} {} ACCEPT OK\n",
                10_000 + i,
                1_000 + delivery,
                t0 + i as i64 % 60,
                t0 + 60
            )
        })
        .collect();
    // Two Firehose records per request.
    let half = text.len() / 2;
    let cut = text[..half].rfind('\n').unwrap() + 1;
    serde_json::to_vec(&json!({
        "requestId": format!("load-{client}-{delivery}"),
        "timestamp": 1_700_000_000_000_i64,
        "records": [{"data": STANDARD.encode(&text[..cut])}, {"data": STANDARD.encode(&text[cut..])}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_deliveries_are_all_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path().join("lake"));
    options.access_key = Some("k".into());
    options.flush_records = 20_000;
    let app = App::open(&options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/firehose", listener.local_addr().unwrap());
    let server = tokio::spawn(flowscope_server::serve(
        Arc::clone(&app),
        listener,
        Duration::from_millis(500),
        std::future::pending(),
    ));
    let clock = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = 0;
            for d in 0..DELIVERIES {
                let b = body(c, d);
                // Every tenth delivery is retried, as Firehose does when an answer is lost.
                let tries = if d % 10 == 0 { 2 } else { 1 };
                for _ in 0..tries {
                    let resp = http
                        .post(&url)
                        .header("X-Amz-Firehose-Access-Key", "k")
                        .header("content-type", "application/json")
                        .body(b.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                }
                sent += RECORDS;
            }
            sent
        }));
    }
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let requests = CLIENTS * (DELIVERIES + DELIVERIES / 10);
    println!(
        "load: {sent} records in {requests} requests from {CLIENTS} clients in {elapsed:.2} s: \
         {:.0} records/s, {:.0} requests/s (every request fsynced before its answer)",
        sent as f64 / elapsed,
        requests as f64 / elapsed
    );
    let frame = app
        .engine
        .sql(
            "SELECT count(*) AS n, count(DISTINCT concat(srcaddr, ':', CAST(srcport AS VARCHAR), \
             ':', CAST(dstport AS VARCHAR))) AS d FROM flows",
        )
        .await
        .unwrap();
    let batches = frame.collect().await.unwrap();
    let value = |i| arrow_cast::display::array_value_to_string(batches[0].column(i), 0).unwrap();
    assert_eq!(value(0), sent.to_string(), "every record sent is there");
    assert_eq!(value(1), sent.to_string(), "and none twice");
    // Commits happened during the run (20,000-record threshold), the rest on the next flush.
    app.intake.flush().await.unwrap();
    let stats = app.intake.stats().await;
    assert!(stats["commits"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(
        stats["duplicates"].as_u64().unwrap(),
        (CLIENTS * DELIVERIES / 10) as u64
    );
    server.abort();
    drop(app);
    let engine = flowscope_query::Engine::open(dir.path().join("lake"))
        .await
        .unwrap();
    let batches = engine
        .sql("SELECT count(*) FROM flows")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        arrow_cast::display::array_value_to_string(batches[0].column(0), 0).unwrap(),
        sent.to_string(),
        "all committed to the lake's files"
    );
}
