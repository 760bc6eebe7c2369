//! `flowscope serve` under hostile clients, heavy queries and a small open-file limit: bounded
//! load tests on 127.0.0.1 (each under 30 s), against the real binary; and the work other
//! commands hand to a running server.

mod common;

use common::{request, sql};
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

fn delivery(id: usize) -> Vec<u8> {
    delivery_at(id, 1_762_070_400)
}

/// A delivery of one record starting at `start` (Unix seconds).
fn delivery_at(id: usize, start: i64) -> Vec<u8> {
    let line = format!(
        "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.{} 10.1.0.1 443 {} 6 3 180 {start} {} ACCEPT OK\n",
        id % 250,
        1024 + id,
        start + 60
    );
    serde_json::to_vec(&serde_json::json!({
        "requestId": format!("load-{id}"),
        "timestamp": (start + 60) * 1000,
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

/// Runs `command` to its end, or fails the test after `limit` (a command that waits for the
/// lake's lock would otherwise hang it).
fn output_within(command: &mut StdCommand, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{command:?} still ran after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn count(addr: &str) -> i64 {
    let (status, body) = sql(addr, "SELECT count(*) AS n FROM flows");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["rows"][0][0].as_i64().unwrap()
}

/// While `serve` runs, `ingest`, `lake info`, `lake compact` and `lake prune` on its lake
/// finish through it instead of waiting for the lake's lock; queries see what they added at
/// once; a second ingest of the same files adds nothing; and a second server is refused at once
/// with the first one's process id.
#[test]
fn other_commands_hand_their_work_to_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/aws");
    // A relative path: the server, whose working folder is another, must get it absolute.
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::copy(
        testdata.join("default.log"),
        dir.path().join("logs/default.log"),
    )
    .unwrap();
    let served = serve(&lake, &[], &[]);
    let socket = lake.join("_flowscope/serve.sock");
    let ingest = |args: &[&str]| {
        let out = output_within(
            StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
                .current_dir(dir.path())
                .arg("ingest")
                .args(args)
                .arg("--lake")
                .arg(&lake),
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let first = ingest(&["logs", testdata.join("AWSLogs").to_str().unwrap()]);
    let added: i64 = first
        .split("ingested ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(
        added > 0 && first.contains("from 2 files") && first.contains("the lake is served"),
        "{first}"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is the lake owner's only");
    let n = count(&served.addr);
    assert_eq!(
        n, added,
        "queries see what the server took at once: {first}"
    );
    let again = ingest(&["logs"]);
    assert!(
        again.contains("ingested 0 records from 1 files (1 already"),
        "{again}"
    );
    assert_eq!(count(&served.addr), n);

    let lake_command = |args: &[&str]| {
        let out = output_within(
            StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
                .arg("lake")
                .args(args)
                .arg("--lake")
                .arg(&lake),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let info: serde_json::Value = serde_json::from_str(&lake_command(&["info", "--json"])).unwrap();
    assert_eq!(info["rows"].as_i64(), Some(n), "{info}");
    assert_eq!(info["sources"].as_i64(), Some(2), "{info}");
    let compacted = lake_command(&["compact"]);
    assert!(compacted.starts_with("compacted "), "{compacted}");
    assert_eq!(count(&served.addr), n, "a compaction keeps every record");
    let pruned = lake_command(&["prune", "--older-than", "5000w"]);
    assert!(pruned.starts_with("pruned 0 partitions"), "{pruned}");

    let second = output_within(
        StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
            .arg(&lake),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("served already by process {}", served.child.id())),
        "{stderr}"
    );
    assert_eq!(count(&served.addr), n, "the first server goes on");
}

/// `--tls-cert/--tls-key`: HTTPS with a certificate the test makes with openssl, checked by curl
/// against that certificate. A Firehose delivery over HTTPS is taken; a client without the
/// certificate is refused by its own check; plain HTTP on the port gets no HTTP answer; a client
/// that connects and stays silent is cut after --header-timeout; a key that does not fit the
/// certificate is refused at start, naming the file.
#[test]
fn https_with_a_certificate_of_the_tests_own() {
    use std::io::{BufRead, BufReader};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = StdCommand::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let lake = dir.path().join("lake");
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
        .args(["serve", "--listen", "127.0.0.1:0", "--header-timeout", "2"])
        .args(["--flush-interval", "1", "--lake"])
        .arg(&lake)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let served = Served {
        child,
        addr: String::new(),
    };
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no https:// address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    let addr = url.trim_start_matches("https://").to_string();
    let curl = |args: &[&str], path: &str| {
        StdCommand::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .arg(format!("{url}{path}"))
            .output()
            .unwrap()
    };
    let cacert = cert.to_str().unwrap();
    let status = curl(&["--cacert", cacert], "/api/status");
    assert!(
        status.status.success() && String::from_utf8_lossy(&status.stdout).contains("\"lake\""),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let untrusted = curl(&[], "/api/status");
    assert!(
        !untrusted.status.success(),
        "curl trusted a certificate it was not given"
    );

    let body = dir.path().join("delivery.json");
    std::fs::write(&body, delivery(7)).unwrap();
    let posted = curl(
        &[
            "--cacert",
            cacert,
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Amz-Firehose-Request-Id: load-7",
            "--data-binary",
            &format!("@{}", body.display()),
            "-w",
            "\n%{http_code}",
        ],
        "/firehose",
    );
    let answer = String::from_utf8_lossy(&posted.stdout).into_owned();
    assert!(
        answer.ends_with("\n200") && answer.contains("load-7"),
        "{answer}"
    );
    let sql = curl(
        &[
            "--cacert",
            cacert,
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"sql": "SELECT count(*) FROM flows"}"#,
        ],
        "/api/sql",
    );
    let rows: serde_json::Value = serde_json::from_slice(&sql.stdout).unwrap();
    assert_eq!(rows["rows"][0][0], 1, "{rows}");

    // Plain HTTP on the TLS port: no HTTP answer.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may close before the whole request is written (it takes it for a broken
    // handshake), so a failed write is an answer too.
    let _ = write!(plain, "GET /api/status HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A silent client is cut after the header timeout (2 s), not held.
    let mut silent = TcpStream::connect(&addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = silent.read_to_end(&mut sink);
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(1500) && held < Duration::from_secs(10),
        "a silent TLS client was held {held:?}"
    );
    drop(served);

    // A key of another certificate.
    let other = dir.path().join("other.pem");
    let made = StdCommand::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let refused = output_within(
        StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
            .arg(&lake)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&other),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("other.pem"),
        "{stderr}"
    );
}

/// The lake's data files (Parquet outside `_flowscope/`).
fn data_files(lake: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path, n: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|f| f == "_flowscope") {
                continue;
            }
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(lake, &mut n);
    n
}

/// `--retain` removes at start the partitions older than it (records of 2018 ingested before);
/// `--compact-interval` merges the files that commits of deliveries leave in a partition.
#[test]
fn retention_and_compaction_run_on_their_schedule() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/aws");
    let out = output_within(
        common::flowscope_process()
            .args(["ingest", "--lake"])
            .arg(&lake)
            .arg(testdata.join("default.log")),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = serve(
        &lake,
        &[],
        &[
            "--retain",
            "30d",
            "--compact-interval",
            "8s",
            "--flush-records",
            "1",
        ],
    );
    let waited = Instant::now();
    while count(&served.addr) != 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "old records kept"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Two commits in the current hour (each delivery commits at once): two files, then one
    // once the compaction, 8 s after start, has run.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let now = now - now % 3600 + 60;
    for id in 0..2 {
        let (status, body) = request(&served.addr, "POST", "/firehose", &delivery_at(id, now));
        assert_eq!(status, 200, "{body}");
        let waited = Instant::now();
        while data_files(&lake) != id + 1 {
            assert!(waited.elapsed() < Duration::from_secs(10), "no commit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let waited = Instant::now();
    while data_files(&lake) != 1 {
        assert!(waited.elapsed() < Duration::from_secs(20), "not compacted");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count(&served.addr), 2);
}
