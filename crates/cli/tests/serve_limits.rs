//! `flowscope serve` under hostile clients, heavy queries and a small open-file limit: bounded
//! load tests on 127.0.0.1 (each under 30 s), against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command as StdCommand};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The tests run one at a time: each measures how the server fares on these 2 cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(lake: &std::path::Path, prefix: &[&str], flags: &[&str]) -> Served {
    let mut command = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = StdCommand::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_flowscope"));
            c
        }
        None => StdCommand::new(env!("CARGO_BIN_EXE_flowscope")),
    };
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(lake)
        .args(flags);
    let (child, url, seen) =
        common::start_server(command, Duration::from_secs(60)).expect("server started");
    let addr = url.trim_start_matches("http://").to_string();
    assert!(!addr.is_empty(), "{seen}");
    Served { child, addr }
}

/// One request on its own connection; the status and body.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn sql(addr: &str, query: &str) -> (u16, String) {
    let body = serde_json::to_vec(&serde_json::json!({ "sql": query })).unwrap();
    request(addr, "POST", "/api/sql", &body)
}

fn delivery(id: usize) -> Vec<u8> {
    let line = format!(
        "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.{} 10.1.0.1 443 {} 6 3 180 1762070400 \
         1762070460 ACCEPT OK\n",
        id % 250,
        1024 + id
    );
    serde_json::to_vec(&serde_json::json!({
        "requestId": format!("load-{id}"),
        "timestamp": 1_762_070_460_000_i64,
        "records": [{"data": base64::engine::general_purpose::STANDARD.encode(line)}],
    }))
    .unwrap()
}

/// Peak resident memory of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// A query that keeps a core busy far longer than the tests' time limit.
const HEAVY: &str = "SELECT count(*) FROM (SELECT unnest(range(30000)) AS a) x \
                     CROSS JOIN (SELECT unnest(range(30000)) AS b) y WHERE (a * b) % 7 = 3";

#[test]
fn deliveries_are_answered_within_a_second_under_hostile_clients_and_heavy_queries() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let work = tempfile::tempdir().unwrap();
    let server = serve(
        &work.path().join("lake"),
        &[],
        &[
            "--flush-interval",
            "1",
            "--query-memory",
            "256",
            "--query-timeout",
            "3",
            "--max-queries",
            "2",
            "--header-timeout",
            "2",
            "--body-timeout",
            "2",
        ],
    );
    let addr = server.addr.clone();

    // A value sized by its arguments is refused before it is built.
    let (status, body) = sql(&addr, "SELECT length(repeat('x', 2000000000))");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("one value may be at most"), "{body}");

    // A body that stops part way is answered 408 once its time is up.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /firehose HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"requestId\":"
    )
    .unwrap();
    let clock = Instant::now();
    let mut answer = [0u8; 512];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = slow.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        clock.elapsed() < Duration::from_secs(5),
        "{:?}",
        clock.elapsed()
    );

    // Hostile clients: 300 connections that never send a byte, 20 that send headers one byte
    // every 300 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slowloris: Vec<_> = (0..20)
        .map(|_| {
            let (addr, stop, dropped) = (addr.clone(), Arc::clone(&stop), Arc::clone(&dropped));
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                let header = format!("POST /firehose HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
                let _ = stream.write_all(header.as_bytes());
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(300));
                    if stream.write_all(b"a").is_err() {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            })
        })
        .collect();

    // Heavy queries: two run (and are stopped at their time limit), a third is turned away.
    let heavy: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (addr.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    answers.push(sql(&addr, HEAVY));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = sql(&addr, "SELECT 1");
    assert_eq!(status, 429, "{body}");

    // Meanwhile, a delivery every 100 ms for 12 s.
    let mut latencies = Vec::new();
    let run = Instant::now();
    let mut id = 0;
    while run.elapsed() < Duration::from_secs(12) {
        let clock = Instant::now();
        let (status, body) = request(&addr, "POST", "/firehose", &delivery(id));
        latencies.push(clock.elapsed());
        assert_eq!(status, 200, "{body}");
        id += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let mut stopped = 0;
    for thread in heavy {
        for (status, body) in thread.join().unwrap() {
            assert!(status == 503 || status == 429, "{status} {body}");
            stopped += usize::from(status == 503);
        }
    }
    for thread in slowloris {
        thread.join().unwrap();
    }
    drop(idle);
    latencies.sort();
    let (median, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    let peak = peak_rss(server.child.id());
    eprintln!(
        "{id} deliveries under 300 idle + 20 slowloris clients and 2 heavy queries: median \
         {median:?}, max {max:?}; {stopped} heavy queries stopped at their limit; {} slowloris \
         clients disconnected; server peak RSS {} MiB",
        dropped.load(Ordering::SeqCst),
        peak >> 20
    );
    assert!(max < Duration::from_secs(1), "slowest delivery {max:?}");
    assert!(stopped >= 2, "{stopped}");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        20,
        "slow headers are cut off"
    );
    assert!(peak < 512 << 20, "server peak RSS {} MiB", peak >> 20);

    // Every delivery was taken once, and queries run again.
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = sql(&addr, "SELECT count(*) FROM flows");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("[[{id}]]")), "{id}: {body}");
}

#[test]
fn with_few_file_descriptors_connections_wait_and_commits_go_on() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let server = serve(
        &lake,
        &["prlimit", "--nofile=256:256"],
        &["--flush-interval", "1", "--header-timeout", "2"],
    );
    let addr = server.addr.clone();
    // More idle connections than the server may hold: the rest wait in the backlog.
    let idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let clock = Instant::now();
    let (status, body) = request(&addr, "POST", "/firehose", &delivery(1));
    assert_eq!(status, 200, "{body}");
    let waited = clock.elapsed();
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    drop(idle);
    // The periodic commit had files to open: the record is in the lake's files.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["sql", "--lake"])
            .arg(&lake)
            .args(["--format", "csv", "SELECT count(*) AS n FROM flows"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().nth(1) == Some("1") {
            break;
        }
        assert!(Instant::now() < deadline, "not committed: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("a delivery behind 400 idle connections, 256 descriptors: answered in {waited:?}");
}
