//! Helpers shared by the CLI tests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

/// The `flowscope` binary built for these tests, as an `assert_cmd` command.
pub fn flowscope() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("flowscope").unwrap();
    // Piped output is laid out for COLUMNS when it is set: tests see whole lines unless they
    // set it themselves.
    command.env_remove("COLUMNS");
    command
}

/// Runs `command` to its end and returns what it printed, failing the test with its standard
/// error when it did not succeed.
pub fn succeeds(command: &mut assert_cmd::Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `flowscope` binary built for these tests, as a plain process command.
pub fn flowscope_process() -> StdCommand {
    StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
}

/// A moto S3 server on 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Whether `python3` can import `module`.
pub fn python_has(module: &str) -> bool {
    StdCommand::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// moto, started; or, when it is not installed, a loud skip on a developer's machine (`None`:
/// the test returns) and a failure when `CI=true`. `scripts/test` installs it.
pub fn moto() -> Option<Moto> {
    moto_installed().then(Moto::start)
}

/// Whether moto is installed; when it is not, says so loudly (a failure when `CI=true`).
pub fn moto_installed() -> bool {
    if python_has("moto") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI: python3 cannot import moto (scripts/test installs it)"
    );
    eprintln!(
        "SKIPPED: this test needs moto, a real S3/SQS/CloudWatch Logs server, and python3 cannot \
         import it; run the tests with scripts/test, which installs it"
    );
    false
}

impl Moto {
    /// Starts moto on a port chosen by the OS and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Moto::start`] with these environment variables (`INITIAL_NO_AUTH_ACTION_COUNT` turns
    /// on moto's IAM checks after that many requests).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = StdCommand::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (installed by .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a boto3 snippet against `endpoint` (`s3` is the client; `args` are `sys.argv[1:]`).
pub fn boto3(endpoint: &str, code: &str, args: &[&str]) -> String {
    let script = format!(
        "import sys, boto3\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\nargs = sys.argv[2:]\n{code}\n"
    );
    let mut all = vec!["-c", &script, endpoint];
    all.extend_from_slice(args);
    let out = StdCommand::new("python3")
        .args(&all)
        .output()
        .expect("python3 with boto3");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes a small Ethernet capture with pcap-file: a client reaching 54.1.2.3:443 and its
/// reply from 10.0.1.10, then a scanner trying port 22 (November 2023).
pub fn capture(path: &std::path::Path) {
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w =
        pcap_file::pcap::PcapWriter::with_header(std::fs::File::create(path).unwrap(), header)
            .unwrap();
    let t0 = 1_700_000_000u64;
    let mut frame = |t: u64, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, syn: bool| {
        let mut b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1000);
        if syn {
            b = b.syn();
        } else {
            b = b.ack(1);
        }
        let mut f = Vec::new();
        b.write(&mut f, &[0; 100]).unwrap();
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::from_secs(t),
            f.len() as u32,
            &f,
        ))
        .unwrap();
    };
    // A client reaches the web server's public address on 443; a scanner tries 22.
    frame(t0, [198, 51, 100, 5], [54, 1, 2, 3], 40000, 443, true);
    frame(t0 + 1, [10, 0, 1, 10], [198, 51, 100, 5], 443, 40000, false);
    frame(t0 + 70, [203, 0, 113, 9], [54, 1, 2, 3], 50000, 22, true);
}

/// Spawns a server command and reads its standard output until it prints an `http://`
/// address; returns the child, the address (no trailing slash) and the lines printed before
/// it, or `Err` with those lines if none came within `timeout`.
pub fn start_server(
    command: StdCommand,
    timeout: Duration,
) -> Result<(Child, String, String), String> {
    start_server_logging(command, timeout, Stdio::null())
}

/// [`start_server`] with the server's standard error going to `log`.
pub fn start_server_logging(
    mut command: StdCommand,
    timeout: Duration,
    log: impl Into<Stdio>,
) -> Result<(Child, String, String), String> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(timeout) {
            Ok(line) => {
                if let Some(at) = line.find("http://") {
                    let url = line[at..].trim().trim_end_matches('/').to_string();
                    return Ok((child, url, seen));
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(seen);
            }
        }
    }
}

/// One request on its own connection; the status and body.
pub fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
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

/// `POST /api/sql` with `query`; the status and body.
pub fn sql(addr: &str, query: &str) -> (u16, String) {
    let body = serde_json::to_vec(&serde_json::json!({ "sql": query })).unwrap();
    request(addr, "POST", "/api/sql", &body)
}
