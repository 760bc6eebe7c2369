//! The query commands end to end: `generate` -> `ingest` -> `sql` / `insights` / `top` / `shell`,
//! checked against the generator's own totals and against each other.

mod common;

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use pretty_assertions::assert_eq;

use common::{flowscope, succeeds};

/// Generates 30,000 records in 6 files, ingests them, and returns (tempdir, lake, totals JSON).
fn lake() -> (tempfile::TempDir, PathBuf, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let lake = dir.path().join("lake");
    let out = flowscope()
        .args([
            "generate",
            "--records",
            "30000",
            "--files",
            "6",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    flowscope()
        .arg("ingest")
        .arg(&src)
        .arg("--lake")
        .arg(&lake)
        .arg("--quiet")
        .assert()
        .success();
    (dir, lake, totals)
}

fn run(lake: &Path, args: &[&str]) -> String {
    let out = flowscope()
        .args(args)
        .arg("--lake")
        .arg(lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sql_totals_match_the_generator_in_every_format() {
    let (_dir, lake, totals) = lake();
    let q = "SELECT count(*) AS records, sum(packets) AS packets, sum(bytes) AS bytes FROM flows";
    let csv = run(&lake, &["sql", q, "--format", "csv"]);
    assert_eq!(
        csv,
        format!(
            "records,packets,bytes\n{},{},{}\n",
            totals["records"], totals["packets"], totals["bytes"]
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&lake, &["sql", q, "--format", "json"])).unwrap();
    assert_eq!(json[0]["records"], totals["records"]);
    assert_eq!(json[0]["bytes"], totals["bytes"]);
    let empty = "SELECT srcaddr FROM flows WHERE bytes < 0";
    assert_eq!(run(&lake, &["sql", empty, "--format", "json"]), "[]\n");
    assert_eq!(run(&lake, &["sql", empty, "--format", "csv"]), "srcaddr\n");
    let jsonl = run(&lake, &["sql", q, "--format", "jsonl"]);
    let row: serde_json::Value = serde_json::from_str(jsonl.trim()).unwrap();
    assert_eq!(row["packets"], totals["packets"]);
    // The table view reads as people do: counts with thousands separators, bytes in kB/MB/GB.
    let table = run(&lake, &["sql", q]);
    let records = totals["records"].as_i64().unwrap();
    let bytes = totals["bytes"].as_f64().unwrap();
    assert!(
        table.contains(&flowscope_query::units::thousands(i128::from(records))),
        "{table}"
    );
    assert!(
        table.contains(&flowscope_query::units::bytes(bytes)),
        "{table}"
    );

    // Parquet to a file, format taken from the extension.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("by_action.parquet");
    run(
        &lake,
        &[
            "sql",
            "SELECT action, count(*) AS n FROM flows GROUP BY action",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert!(rows >= 2, "ACCEPT, REJECT and maybe NODATA rows: {rows}");
}

#[test]
fn several_statements_and_explain() {
    let (_dir, lake, _) = lake();
    let out = run(
        &lake,
        &["sql", "SELECT 1 AS a; SELECT 2 AS b", "--format", "csv"],
    );
    assert_eq!(out, "a\n1\nb\n2\n");
    let explain = run(
        &lake,
        &[
            "sql",
            "SELECT count(*) FROM flows WHERE start >= 4102444800",
            "--explain",
        ],
    );
    assert!(
        explain.contains("logical plan:") && explain.contains("physical plan:"),
        "{explain}"
    );
}

#[test]
fn errors_show_the_query_and_a_caret() {
    let (_dir, lake, _) = lake();
    flowscope()
        .args(["sql", "SELECT srcadr FROM flows", "--lake"])
        .arg(&lake)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "SELECT srcadr FROM flows\n         ^^^^^^",
        ));
    flowscope()
        .args(["insights", "stats count(*) by srcAdr", "--lake"])
        .arg(&lake)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("did you mean `srcAddr`?"))
        .stderr(predicate::str::contains("^^^^^^"));
    flowscope()
        .args(["sql", "SELECT 1", "--lake", "/nonexistent/lake"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a flowscope lake"));
}

#[test]
fn insights_and_sql_agree() {
    let (_dir, lake, _) = lake();
    let insights = run(
        &lake,
        &[
            "insights",
            "filter action = 'REJECT' | stats count(*) as n, sum(bytes) as b by dstPort | sort n desc, dstPort asc | limit 5",
            "--format",
            "csv",
        ],
    );
    let sql = run(
        &lake,
        &[
            "sql",
            "SELECT dstport AS \"dstPort\", count(*) AS n, sum(bytes) AS b FROM flows \
             WHERE action = 'REJECT' GROUP BY dstport ORDER BY n DESC, dstport ASC LIMIT 5",
            "--format",
            "csv",
        ],
    );
    assert_eq!(insights, sql);
    assert_eq!(insights.lines().count(), 6);
}

#[test]
fn insights_time_range_and_default_limit() {
    let (_dir, lake, _) = lake();
    // The generator starts at 1700000100 by default, 5-minute files.
    let all = run(
        &lake,
        &["insights", "stats count(*) as n", "--format", "csv"],
    );
    let part = run(
        &lake,
        &[
            "insights",
            "stats count(*) as n",
            "--start",
            "1700000400",
            "--end",
            "2023-11-14T22:25:00Z",
            "--format",
            "csv",
        ],
    );
    let n = |s: &str| s.lines().nth(1).unwrap().parse::<u64>().unwrap();
    assert_eq!(n(&all), 30_000);
    assert!(n(&part) > 0 && n(&part) < 30_000, "{part}");
    let out = flowscope()
        .args(["insights", "fields srcAddr", "--format", "csv", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        10_001
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("first 10000 rows"));
}

#[test]
fn top_by_keys_and_by_rule() {
    let (dir, lake, _) = lake();
    let out = run(
        &lake,
        &[
            "top",
            "--by",
            "pair",
            "--rank-by",
            "packets",
            "-n",
            "3",
            "--format",
            "csv",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "rank,srcaddr,dstaddr,packets,percent");
    assert_eq!(lines.len(), 4);
    let check = run(
        &lake,
        &[
            "sql",
            "SELECT srcaddr, dstaddr, sum(packets) AS p FROM flows WHERE srcaddr IS NOT NULL \
             GROUP BY 1, 2 ORDER BY p DESC, srcaddr, dstaddr LIMIT 1",
            "--format",
            "csv",
        ],
    );
    let best = check.lines().nth(1).unwrap();
    assert!(
        lines[1].starts_with(&format!("1,{best}")),
        "{} vs {best}",
        lines[1]
    );

    let rule = dir.path().join("rule.json");
    std::fs::write(
        &rule,
        r#"{"Schema":{"Name":"CloudWatchLogRule","Version":1},"LogGroupNames":["/aws/containerinsights/sample-cluster-name/flowlogs"],"LogFormat":"CLF","Fields":{"5":"destination address","7":"destination port","9":"packet count"},"Contribution":{"Keys":["destination address"],"ValueOf":"packet count","Filters":[{"Match":"destination port","EqualTo":443}]},"AggregateOn":"Sum"}"#,
    )
    .unwrap();
    let by_rule = run(
        &lake,
        &[
            "top",
            "--rule",
            rule.to_str().unwrap(),
            "-n",
            "1",
            "--format",
            "csv",
        ],
    );
    let sql = run(
        &lake,
        &[
            "sql",
            "SELECT dstaddr, sum(packets) AS p FROM flows WHERE dstport = 443 \
             GROUP BY 1 ORDER BY p DESC, dstaddr LIMIT 1",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        by_rule.lines().next().unwrap(),
        "rank,destination address,packets,percent"
    );
    assert!(
        by_rule
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("1,{}", sql.lines().nth(1).unwrap())),
        "{by_rule} vs {sql}"
    );
}

#[test]
fn shell_reads_statements_from_standard_input() {
    let (dir, lake, totals) = lake();
    let script = "\\format csv\nSELECT count(*) AS n\nFROM flows;\nstats sum(bytes) as b\n\nSELECT nosuch FROM flows;\nSELECT 42 AS answer;\n\\q\n";
    let out = flowscope()
        .args(["shell", "--no-history", "--lake"])
        .arg(&lake)
        .write_stdin(script)
        .output()
        .unwrap();
    // One statement failed: the rest ran, and the script's exit status says so.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 statement of the script failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "n\n{}\nb\n{}\nanswer\n42\n",
            totals["records"], totals["bytes"]
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    // A reader that stops early (`| head`) is no failure of the script.
    let script = dir.path().join("many.sql");
    std::fs::write(
        &script,
        "\\format csv\nSELECT srcaddr FROM flows;\nSELECT srcaddr FROM flows;\n",
    )
    .unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#""$0" shell --no-history --lake "$1" < "$2" | head -1; echo "status=${PIPESTATUS[0]}""#)
        .arg(env!("CARGO_BIN_EXE_flowscope"))
        .arg(&lake)
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("status=0\n"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drives `flowscope shell` at a real terminal (a pty, from Python's `pty` module): the
/// continuation prompt, Ctrl-C cancelling a running query and coming back to the prompt,
/// history written as it goes, and `selec 1` suggesting SELECT.
#[test]
fn shell_at_a_terminal_cancels_on_ctrl_c_and_keeps_its_history() {
    let (dir, lake, _) = lake();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let driver = r#"
import os, pty, select, sys, time
binary, lake = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "shell", "--lake", lake])
seen = b""
def until(text, timeout=120):
    global seen
    deadline = time.time() + timeout
    while text.encode() not in seen:
        if time.time() > deadline:
            sys.exit("timed out waiting for %r; the terminal showed:\n%s" % (text, seen.decode(errors="replace")))
        if select.select([fd], [], [], 0.2)[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
def send(text):
    os.write(fd, text.encode())
until("flowscope> ")
send("SELECT count(*) AS n\r")
until("...> ")
send("FROM flows;\r")
until("30,000")
with open(os.path.join(os.environ["HOME"], ".flowscope_history")) as h:
    print("HISTORY-WHILE-RUNNING:" + h.read().replace("\n", "|"))
seen = b""
send("SELECT count(*) FROM flows a JOIN flows b ON a.action = b.action JOIN flows c ON b.action = c.action;\r")
time.sleep(3)
started = time.time()
send("\x03")
until("cancelled", timeout=60)
until("flowscope> ", timeout=60)
print("CANCELLED-IN:%.1f" % (time.time() - started))
def cpu():
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
before = cpu()
time.sleep(3)
print("CPU-AFTER-CANCEL:%.2f" % (cpu() - before))
seen = b""
send("selec 1;\r")
until("did you mean", timeout=60)
print("TYPO:" + seen.decode(errors="replace").replace("\r", "").replace("\n", "|"))
send("\\q\r")
os.waitpid(pid, 0)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", driver, env!("CARGO_BIN_EXE_flowscope")])
        .arg(&lake)
        .env("HOME", &home)
        .env("TERM", "dumb")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The statement is in the history before the shell ends.
    assert!(
        stdout.contains("HISTORY-WHILE-RUNNING:") && stdout.contains("FROM flows;"),
        "{stdout}"
    );
    let cancelled: f64 = stdout
        .split("CANCELLED-IN:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(cancelled < 30.0, "{stdout}");
    // The cancelled query stopped: the idle shell used (almost) no CPU in the 3 s after it.
    let after: f64 = stdout
        .split("CPU-AFTER-CANCEL:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        after < 0.5,
        "the cancelled query went on: {after} s of CPU in 3 s\n{stdout}"
    );
    assert!(stdout.contains("did you mean SELECT?"), "{stdout}");
}

#[test]
fn query_mistakes_read_as_sentences() {
    let (_dir, lake, _) = lake();
    let err = |args: &[&str]| {
        let out = flowscope()
            .args(args)
            .arg("--lake")
            .arg(&lake)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = err(&["sql", "SELEC 1"]);
    assert!(
        e.contains("expected an SQL statement, found `SELEC`; did you mean SELECT?"),
        "{e}"
    );
    assert!(!e.contains("ParserError"), "{e}");
    let e = err(&["sql", "SELECT count(*) FROM vpc_flow_log"]);
    assert!(
        e.contains("there is no table `vpc_flow_log`") && e.contains("`flows`"),
        "{e}"
    );
    assert!(e.contains("did you mean `vpc_flow_logs`?"), "{e}");
    let e = err(&[
        "sql",
        "SELECT count(*) FROM flows WHERE start > '2026-11-02'",
    ]);
    assert!(e.contains("write 1793577600"), "{e}");
    // A misspelt clause keyword is named, and the caret is under it, not under what follows.
    let e = err(&["sql", "SELECT srcaddr FORM flows"]);
    assert!(e.contains("did you mean FROM instead of `FORM`?"), "{e}");
    assert!(e.contains("\n                 ^^^^"), "{e}");
    let e = err(&["sql", "SELECT srcaddr FROM flows GRUOP BY 1"]);
    assert!(e.contains("did you mean GROUP instead of `GRUOP`?"), "{e}");
    // A column that is nearly there is suggested, as Logs Insights fields are.
    let e = err(&["sql", "SELECT srcadr FROM flows"]);
    assert!(e.contains("did you mean `srcaddr`?"), "{e}");
    // A pipe gets whole lines, unless COLUMNS says how wide to be (as `ls` reads it).
    let out = succeeds(
        flowscope()
            .args(["sql", "SELECT * FROM flows LIMIT 3", "--lake"])
            .arg(&lake)
            .env("COLUMNS", "80"),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() > 3, "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    // --output is a file: the AWS CLI's `--output json` is refused with the flag it meant.
    let work = tempfile::tempdir().unwrap();
    let out = flowscope()
        .current_dir(work.path())
        .args(["sql", "SELECT 1", "--output", "json", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--format json"), "{e}");
    assert!(!work.path().join("json").exists());
    // After `stats count(*)`, `sort count(*) desc` means that column, as in AWS.
    let out = run(
        &lake,
        &[
            "insights",
            "stats count(*) by dstPort | sort count(*) desc | limit 3",
            "--format",
            "csv",
        ],
    );
    let counts: Vec<u64> = out
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 3, "{out}");
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{out}");
}

#[test]
fn sql_takes_its_lake_from_flowscope_lake_and_says_what_range_it_holds() {
    let (_dir, lake, totals) = lake();
    let out = succeeds(
        flowscope()
            .args(["sql", "--format", "csv", "SELECT count(*) AS n FROM flows"])
            .env("FLOWSCOPE_LAKE", &lake),
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("n\n{}\n", totals["records"])
    );
    // A range outside the data: no rows, and a note of the range the lake holds.
    let out = flowscope()
        .args([
            "sql",
            "SELECT srcaddr FROM flows LIMIT 5",
            "--start",
            "2001-01-01",
            "--end",
            "2001-01-02",
        ])
        .env("FLOWSCOPE_LAKE", &lake)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2023-11-14"), "{err}");
}
