//! Runs every command of the README, in order, in a scratch folder, so the README cannot drift
//! from the program.
//!
//! Fenced `sh` blocks run as bash scripts (`set -euo pipefail`) with `flowscope` on the PATH,
//! `examples/` and `testdata/` linked in, and `cargo run --release --` read as `flowscope`.
//! `console` blocks are transcripts: `$ ` lines run, the lines under them must appear in the
//! output (`...` stands for any lines). An HTML comment just above a block steers the run:
//! `<!-- readme-test: serve; with-server; s3 upload DIR to BUCKET/PREFIX; append ARGS;
//! expect "TEXT"; within 120s; skip — why -->`. `within` runs a block again, every two seconds,
//! until its expectations hold or the time is up (for what a server takes in the background).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// One fenced block and the directives above it.
#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    text: String,
    directives: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut directives = Vec::new();
    let mut lines = readme.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("<!-- readme-test:") {
            let rest = rest.trim_end_matches("-->").trim();
            directives = rest.split(';').map(|d| d.trim().to_string()).collect();
            continue;
        }
        if let Some(lang) = line.strip_prefix("```")
            && !lang.is_empty()
        {
            let mut text = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            if lang == "sh" || lang == "console" {
                out.push(Block {
                    line: n + 1,
                    lang: lang.to_string(),
                    text,
                    directives: std::mem::take(&mut directives),
                });
            }
            directives.clear();
            continue;
        }
        if !line.trim().is_empty() {
            directives.clear();
        }
    }
    out
}

fn directive<'a>(block: &'a Block, name: &str) -> Option<&'a str> {
    block.directives.iter().find_map(|d| {
        d.strip_prefix(name)
            .filter(|rest| rest.is_empty() || rest.starts_with(' '))
            .map(str::trim)
    })
}

fn expectations(block: &Block) -> Vec<String> {
    block
        .directives
        .iter()
        .filter_map(|d| d.strip_prefix("expect "))
        .map(|e| e.trim().trim_matches('"').to_string())
        .collect()
}

/// The scratch folder's shell: flowscope on the PATH, the checkout's examples and test data.
struct Tour {
    dir: tempfile::TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
    _moto: Option<common::Moto>,
}

impl Tour {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flowscope"), bin.join("flowscope")).unwrap();
        for linked in ["examples", "testdata"] {
            std::os::unix::fs::symlink(root().join(linked), dir.path().join(linked)).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self {
            dir,
            bin,
            env: vec![
                ("PATH".into(), path),
                ("FLOWSCOPE_LISTEN".into(), "127.0.0.1:0".into()),
            ],
            _moto: None,
        }
    }

    fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .current_dir(self.dir.path())
            .env(
                "READMETEST_ENV",
                self.bin.join("env.sh").display().to_string(),
            );
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn run(&self, block: &Block, script: &str) -> String {
        let out = self.bash(script).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "README.md:{}: failed ({}):\n{script}\n--- output ---\n{text}",
            block.line,
            out.status
        );
        text
    }

    /// Starts moto, points the AWS environment at it and uploads `dir` to `bucket/prefix`.
    fn s3(&mut self, spec: &str) {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let ["upload", local, "to", target] = words[..] else {
            panic!("s3 directive: upload DIR to BUCKET/PREFIX, not `{spec}`");
        };
        let (bucket, prefix) = target.split_once('/').unwrap();
        let moto = common::Moto::start();
        common::boto3(
            &moto.endpoint,
            "import os, sys\n\
             root, bucket, prefix = args\n\
             s3.create_bucket(Bucket=bucket)\n\
             for d, _, files in os.walk(root):\n\
             \x20   for f in files:\n\
             \x20       p = os.path.join(d, f)\n\
             \x20       s3.upload_file(p, bucket, prefix + '/' + os.path.relpath(p, root))\n",
            &[
                &self.dir.path().join(local).display().to_string(),
                bucket,
                prefix,
            ],
        );
        for (k, v) in [
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ] {
            self.env.push((k.into(), v.into()));
        }
        self._moto = Some(moto);
    }

    /// Starts a block whose last command serves until stopped; returns it and its base URL.
    fn serve(&self, block: &Block, script: &str) -> (Child, String, String) {
        let lines: Vec<&str> = script.lines().filter(|l| !l.trim().is_empty()).collect();
        let (last, setup) = lines.split_last().unwrap();
        let script = format!(
            "{}\nexport -p > \"$READMETEST_ENV\"\nexec {last}",
            setup.join("\n")
        );
        common::start_server(self.bash(&script), Duration::from_secs(900)).unwrap_or_else(|seen| {
            panic!(
                "README.md:{}: no address printed:\n{script}\n{seen}",
                block.line
            )
        })
    }
}

fn check(block: &Block, output: &str) {
    for e in expectations(block) {
        assert!(
            output.contains(&e),
            "README.md:{}: `{e}` not in the output:\n{output}",
            block.line
        );
    }
}

fn met(block: &Block, output: &str) -> bool {
    expectations(block).iter().all(|e| output.contains(e))
}

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// A transcript: each `$ ` command runs; the lines under it must appear in its output in
/// order, `...` standing for any lines.
fn console(tour: &Tour, block: &Block) {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.text.lines() {
        match line.strip_prefix("$ ") {
            Some(cmd) => steps.push((cmd.to_string(), Vec::new())),
            None => steps
                .last_mut()
                .expect("a transcript starts with `$ `")
                .1
                .push(line.to_string()),
        }
    }
    for (cmd, expected) in steps {
        let output = tour.run(block, &cmd);
        let lines: Vec<&str> = output.lines().collect();
        let mut at = 0;
        let mut gap = false;
        for e in expected.iter().filter(|e| !e.trim().is_empty()) {
            if e.trim() == "..." {
                gap = true;
                continue;
            }
            let found = lines[at..]
                .iter()
                .position(|l| l.trim_end() == e.trim_end());
            match found {
                Some(i) if gap || i == 0 => at += i + 1,
                _ => panic!(
                    "README.md:{}: `{cmd}`: expected line `{e}` not found in order:\n{output}",
                    block.line
                ),
            }
            gap = false;
        }
    }
}

#[test]
fn every_command_in_the_readme_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = blocks(&readme);
    assert!(blocks.len() >= 10, "{blocks:?}");
    let mut tour = Tour::new();
    let mut server: Option<(Child, String)> = None;
    let mut ran = 0;
    for block in &blocks {
        if directive(block, "with-server").is_none()
            && let Some((mut child, _)) = server.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(why) = directive(block, "skip") {
            // Only the test command may be skipped, and CI must run it as written.
            let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
            for line in block.text.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    ci.lines().any(|c| c.trim() == line.trim()),
                    "README.md:{}: skipped ({why}) but .ci/run does not run `{line}`",
                    block.line
                );
            }
            continue;
        }
        if let Some(spec) = directive(block, "s3") {
            tour.s3(spec);
        }
        let mut script = block.text.replace("cargo run --release --", "flowscope");
        if let Some(args) = directive(block, "append") {
            // A debug build runs the tests: the demo's 24 hours are shortened.
            let lines: Vec<&str> = script.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "append takes a one-command block");
            script = format!("{} {args}\n", lines[0]);
        }
        if block.lang == "console" {
            console(&tour, block);
        } else if directive(block, "serve").is_some() {
            let (child, url, seen) = tour.serve(block, &script);
            check(block, &seen);
            let (status, page) = get(&format!("{url}/"));
            assert_eq!(status, 200, "README.md:{}: {url}", block.line);
            assert!(page.contains("flowscope"), "{page}");
            server = Some((child, url));
        } else if directive(block, "with-server").is_some() {
            let (_, url) = server
                .as_ref()
                .unwrap_or_else(|| panic!("README.md:{}: no server running", block.line));
            let script = format!(
                "source \"$READMETEST_ENV\"\n{}",
                script.replace("http://127.0.0.1:8080", url)
            );
            let within = directive(block, "within").map(|d| {
                let secs = d.strip_suffix('s').and_then(|s| s.parse().ok());
                Duration::from_secs(secs.expect("within takes seconds, as `within 120s`"))
            });
            let start = std::time::Instant::now();
            loop {
                let output = tour.run(block, &script);
                match within {
                    Some(w) if !met(block, &output) && start.elapsed() < w => {
                        std::thread::sleep(Duration::from_secs(2))
                    }
                    _ => {
                        check(block, &output);
                        break;
                    }
                }
            }
        } else {
            let output = tour.run(block, &script);
            check(block, &output);
        }
        ran += 1;
    }
    if let Some((mut child, _)) = server.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ran >= 10, "only {ran} blocks ran");
}

#[test]
fn the_example_capture_is_what_its_generator_writes() {
    // examples/web.pcap is written by pcap-file (common::capture); it must stay that file.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("web.pcap");
    common::capture(&fresh);
    let mut want = Vec::new();
    std::fs::File::open(&fresh)
        .unwrap()
        .read_to_end(&mut want)
        .unwrap();
    let have = std::fs::read(root().join("examples/web.pcap")).unwrap_or_default();
    if std::env::var_os("FLOWSCOPE_BLESS").is_some() {
        std::fs::write(root().join("examples/web.pcap"), &want).unwrap();
        return;
    }
    assert_eq!(have, want, "regenerate with FLOWSCOPE_BLESS=1");
}

#[test]
fn readme_blocks_are_found_with_their_directives() {
    let text = "x\n<!-- readme-test: serve; expect \"a b\" -->\n```sh\nflowscope serve\n```\n\n```toml\nx = 1\n```\n```console\n$ ls\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert!(directive(&b[0], "serve").is_some());
    assert_eq!(expectations(&b[0]), vec!["a b".to_string()]);
    assert_eq!(b[1].lang, "console");
    assert!(b[1].directives.is_empty());
}
