//! `flowscope demo`: the whole system in one command — a simulated VPC with incidents, its
//! flow logs in AWS's S3 layout, a lake, detections, diagnoses, a short report and the
//! dashboard.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use arrow_cast::cast;
use arrow_schema::DataType;
use comfy_table::{ContentArrangement, Table, presets};
use flowscope_capture::scenario::ScenarioOptions;
use flowscope_detect::{
    AlarmsFile, Cause, DetectConfig, Detector, DiagnoseFilter, Diagnosis, Finding, human_bytes,
};
use flowscope_query::{Engine, TimeRange};
use flowscope_server::{DetectSettings, Options as ServerOptions};
use serde_json::Value;

use super::Outcome;
use super::detect::load_intel;
use super::output::{runtime, terminal_width};
use super::{ingest, serve, simulate};

/// The file that marks a folder as the demo's own, so a second run may replace it.
const MARKER: &str = ".flowscope-demo";
/// The example threat-intel list, written into the demo folder.
const THREAT_INTEL: &str = include_str!("../../../../testdata/threat-intel/example.txt");
/// The example metric filters and alarms, written into the demo folder for the dashboard.
const ALARMS: &str = include_str!("../../../../examples/alarms.toml");
/// Diagnoses listed one by one before the rest are summed up.
const SHOWN_DIAGNOSES: usize = 10;

/// The whole system in one command: simulates the `three-tier` VPC with its incidents (flow
/// logs in AWS's S3 layout), ingests them into a lake, runs the detections and the SG/NACL
/// diagnosis, prints a short report, then serves the dashboard on 127.0.0.1 (on a free port
/// when the one asked for is taken).
#[derive(clap::Args)]
pub struct Args {
    /// The folder to work in: DIR/vpc (the flow logs and truth.json), DIR/lake, and the
    /// threat-intel list and alarms used. Replaced if it holds an earlier demo.
    #[arg(long, value_name = "DIR", default_value = "flowscope-demo")]
    dir: PathBuf,
    /// How much traffic to simulate: 30m, 2h, 24h ...
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    duration: String,
    /// The scenario's seed: the same seed gives the same traffic.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Print the report and exit instead of serving the dashboard.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    listen: super::ListenArgs,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `flowscope demo`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    // Every argument is checked before anything on disk is touched: a mistyped one must not
    // cost the previous demo.
    let duration = flowscope_record::time::parse_duration(&args.duration)
        .filter(|d| *d > 0)
        .with_context(|| {
            format!(
                "--duration `{}`: use 30m, 2h, 1d ... (nothing was changed in {})",
                args.duration,
                dir.display()
            )
        })?;
    prepare(dir)?;
    let vpc = dir.join("vpc");
    let lake = dir.join("lake");
    let intel_file = dir.join("threat-intel.txt");
    let alarms_file = dir.join("alarms.toml");
    std::fs::write(&intel_file, THREAT_INTEL)
        .with_context(|| format!("cannot write {}", intel_file.display()))?;
    std::fs::write(&alarms_file, ALARMS)
        .with_context(|| format!("cannot write {}", alarms_file.display()))?;

    let batch = Instant::now();
    let mut steps: Vec<(&str, Duration)> = Vec::new();

    step(
        1,
        &format!(
            "simulating {} of the three-tier VPC with incidents -> {}",
            args.duration,
            vpc.display()
        ),
    );
    let started = Instant::now();
    let scenario = ScenarioOptions {
        start: simulate::DEFAULT_START,
        duration,
        seed: args.seed,
        incidents: true,
    };
    simulate::execute(simulate::Job::three_tier(scenario, &vpc)?)?;
    steps.push(("simulate", started.elapsed()));

    step(
        2,
        &format!("ingesting the S3 layout into the lake {}", lake.display()),
    );
    let started = Instant::now();
    let ingested = ingest::run(ingest::Args::new(
        vec![path(&vpc.join("AWSLogs"))],
        lake.clone(),
    ))?;
    if ingested != Outcome::Success {
        bail!("the ingest did not complete (see above)");
    }
    steps.push(("ingest", started.elapsed()));

    let truth: Value = serde_json::from_slice(
        &std::fs::read(vpc.join("truth.json")).context("cannot read truth.json")?,
    )
    .context("truth.json")?;
    let intel = load_intel(std::slice::from_ref(&intel_file))?;

    let report = runtime()?.block_on(async {
        let engine = Engine::open(&lake).await?;
        step(
            3,
            "detecting scans, brute force, exfiltration, beaconing ...",
        );
        let started = Instant::now();
        let detected = Detector::new(
            &engine,
            DetectConfig::default(),
            intel,
            TimeRange::default(),
        )
        .run()
        .await
        .context("detect")?;
        steps.push(("detect", started.elapsed()));

        step(
            4,
            "diagnosing rejected connections (security group or NACL)",
        );
        let started = Instant::now();
        let diagnoses = flowscope_detect::diagnose(&engine, &DiagnoseFilter::default())
            .await
            .context("diagnose")?;
        steps.push(("diagnose", started.elapsed()));

        step(5, "summing up the traffic");
        let started = Instant::now();
        let traffic = Traffic::of(&engine).await?;
        let talkers = Talker::top(&engine, 5).await?;
        steps.push(("report", started.elapsed()));
        anyhow::Ok(Report {
            traffic,
            talkers,
            findings: detected.findings,
            diagnoses,
        })
    })?;
    let batch = batch.elapsed();

    let mut out = std::io::stdout().lock();
    report.print(&mut out, &args, &truth, &steps, batch)?;
    out.flush()?;
    drop(out);

    if args.no_serve {
        return Ok(Outcome::Success);
    }
    let listen = free_or_any(args.listen.listen);
    let mut options = ServerOptions::new(&lake);
    options.access_key = std::env::var("FLOWSCOPE_FIREHOSE_ACCESS_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    options.alarms = Some(AlarmsFile::load(&alarms_file)?);
    options.detect = DetectSettings {
        config: DetectConfig::default(),
        intel: load_intel(std::slice::from_ref(&intel_file))?,
    };
    serve::start(&options, listen)
}

/// Makes `dir` ready: new, empty, or an earlier demo (whose outputs are removed).
fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .peekable();
        if entries.peek().is_some() && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a flowscope demo folder; choose another with --dir",
                dir.display()
            );
        }
        for sub in ["vpc", "lake"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove the earlier {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `flowscope demo`; the next demo in this folder replaces vpc/ and lake/\n",
    )?;
    Ok(())
}

fn step(n: u32, what: &str) {
    eprintln!("flowscope demo [{n}/5] {what}");
}

/// The address asked for if it is free, else the same address with a port the OS picks.
fn free_or_any(addr: SocketAddr) -> SocketAddr {
    match TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => {
            let any = SocketAddr::new(addr.ip(), 0);
            eprintln!("flowscope demo: {addr} is taken; using a free port");
            any
        }
    }
}

/// The whole lake in figures, for the report.
#[derive(Default)]
struct Traffic {
    records: i64,
    bytes: i64,
    packets: i64,
    interfaces: i64,
    rejected: i64,
    first: i64,
    last: i64,
}

/// A pair of addresses among those that sent most accepted bytes.
struct Talker {
    src: String,
    dst: String,
    bytes: i64,
    records: i64,
}

/// The batches of one query (read by column name with [`ints`] and [`texts`]).
async fn columns(engine: &Engine, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(engine.sql(sql).await?.collect().await?)
}

/// A column as integers, null as 0.
fn ints(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<i64>> {
    let column = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    let column = cast(column, &DataType::Int64)?;
    let column = column.as_primitive::<Int64Type>();
    Ok((0..column.len())
        .map(|i| {
            if column.is_null(i) {
                0
            } else {
                column.value(i)
            }
        })
        .collect())
}

/// A column as texts, null as empty.
fn texts(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<String>> {
    let column = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    let column = cast(column, &DataType::Utf8)?;
    let column = column.as_string::<i32>();
    Ok((0..column.len())
        .map(|i| {
            if column.is_null(i) {
                String::new()
            } else {
                column.value(i).to_string()
            }
        })
        .collect())
}

impl Traffic {
    async fn of(engine: &Engine) -> anyhow::Result<Self> {
        let batches = columns(
            engine,
            "SELECT count(*) AS records, sum(bytes) AS bytes, sum(packets) AS packets, \
             count(DISTINCT interface_id) AS interfaces, \
             sum(CASE WHEN action = 'REJECT' THEN 1 ELSE 0 END) AS rejected, \
             min(start) AS first, max(\"end\") AS last FROM flows",
        )
        .await?;
        let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(Self::default());
        };
        let one = |name| ints(b, name).map(|v| v[0]);
        Ok(Self {
            records: one("records")?,
            bytes: one("bytes")?,
            packets: one("packets")?,
            interfaces: one("interfaces")?,
            rejected: one("rejected")?,
            first: one("first")?,
            last: one("last")?,
        })
    }
}

impl Talker {
    async fn top(engine: &Engine, n: usize) -> anyhow::Result<Vec<Self>> {
        let batches = columns(
            engine,
            &format!(
                "SELECT srcaddr, dstaddr, sum(bytes) AS bytes, count(*) AS records FROM flows \
                 WHERE action = 'ACCEPT' GROUP BY srcaddr, dstaddr ORDER BY bytes DESC LIMIT {n}"
            ),
        )
        .await?;
        let mut out = Vec::new();
        for b in &batches {
            let (src, dst) = (texts(b, "srcaddr")?, texts(b, "dstaddr")?);
            let (bytes, records) = (ints(b, "bytes")?, ints(b, "records")?);
            for i in 0..b.num_rows() {
                out.push(Self {
                    src: src[i].clone(),
                    dst: dst[i].clone(),
                    bytes: bytes[i],
                    records: records[i],
                });
            }
        }
        Ok(out)
    }
}

struct Report {
    traffic: Traffic,
    talkers: Vec<Talker>,
    findings: Vec<Finding>,
    diagnoses: Vec<Diagnosis>,
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    if let Some(w) = terminal_width() {
        t.set_width(w);
    }
    t
}

fn indent(t: &Table) -> String {
    t.to_string()
        .lines()
        .map(|l| format!("  {}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn minute(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").chars().take(16).collect()
}

fn thousands(n: i64) -> String {
    flowscope_query::units::thousands(i128::from(n))
}

impl Report {
    fn print(
        &self,
        out: &mut impl Write,
        args: &Args,
        truth: &Value,
        steps: &[(&str, Duration)],
        batch: Duration,
    ) -> anyhow::Result<()> {
        let t = &self.traffic;
        let lake = args.dir.join("lake");
        let lake = lake.display();
        let (records, rejected) = (t.records, t.rejected);
        writeln!(out)?;
        writeln!(
            out,
            "flowscope demo: {} of the three-tier VPC, {} to {} UTC",
            args.duration,
            minute(&flowscope_record::time::rfc3339(t.first)),
            minute(&flowscope_record::time::rfc3339(t.last)),
        )?;
        writeln!(out)?;
        writeln!(out, "TRAFFIC")?;
        writeln!(
            out,
            "  {} flow log records from {} interfaces: {} packets, {}; {} records rejected ({:.1} %)",
            thousands(records),
            t.interfaces,
            thousands(t.packets),
            human_bytes(t.bytes.max(0) as u64),
            thousands(rejected),
            100.0 * rejected as f64 / records.max(1) as f64
        )?;
        writeln!(out)?;
        writeln!(out, "TOP TALKERS (accepted bytes)")?;
        let mut tt = table(&["source", "destination", "bytes", "records"]);
        for r in &self.talkers {
            tt.add_row(vec![
                r.src.clone(),
                r.dst.clone(),
                human_bytes(r.bytes.max(0) as u64),
                thousands(r.records),
            ]);
        }
        writeln!(out, "{}", indent(&tt))?;
        writeln!(out)?;

        writeln!(out, "FINDINGS ({})", self.findings.len())?;
        if self.findings.is_empty() {
            writeln!(out, "  none")?;
        } else {
            let mut ft = table(&["severity", "detection", "first seen", "summary"]);
            for f in &self.findings {
                ft.add_row(vec![
                    f.severity.to_string(),
                    f.detection.clone(),
                    minute(&f.first_seen),
                    f.summary.clone(),
                ]);
            }
            writeln!(out, "{}", indent(&ft))?;
        }
        writeln!(out)?;

        // Misconfigurations first: replies dropped by a NACL, and internal traffic refused.
        // Internet addresses refused at the edge are the controls doing their job: counted.
        let (inside, edge): (Vec<&Diagnosis>, Vec<&Diagnosis>) =
            self.diagnoses.iter().partition(|d| !d.at_edge());
        writeln!(
            out,
            "REJECTED CONNECTIONS EXPLAINED ({} inside the VPC or replies, {} from the internet)",
            inside.len(),
            edge.len()
        )?;
        let mut dt = table(&["interface", "connection", "cause", "records", "fix"]);
        for d in inside.iter().take(SHOWN_DIAGNOSES) {
            dt.add_row(vec![
                d.interface_id.clone(),
                format!("{} -> {}:{}", d.src, d.dst, d.dst_port),
                d.cause.name().to_string(),
                thousands(d.records as i64),
                d.fix.clone(),
            ]);
        }
        if !inside.is_empty() {
            writeln!(out, "{}", indent(&dt))?;
        }
        if inside.len() > SHOWN_DIAGNOSES {
            writeln!(
                out,
                "  ... {} more (flowscope diagnose --lake {lake})",
                inside.len() - SHOWN_DIAGNOSES
            )?;
        }
        if !edge.is_empty() {
            let attempts: u64 = edge.iter().map(|d| d.records).sum();
            let sources: std::collections::HashSet<&str> =
                edge.iter().map(|d| d.src.as_str()).collect();
            writeln!(
                out,
                "  {} internet addresses refused at the edge ({} records): security groups and \
                 NACLs doing their job",
                thousands(sources.len() as i64),
                thousands(attempts as i64)
            )?;
        }
        writeln!(out)?;

        let checks = self.check(truth);
        let found = checks.iter().filter(|c| c.found).count();
        writeln!(
            out,
            "INJECTED INCIDENTS (truth.json): {found} of {} found",
            checks.len()
        )?;
        let mut it = table(&["", "incident", "initiator", "found by"]);
        for c in &checks {
            it.add_row(vec![
                if c.found { "ok" } else { "MISSED" }.to_string(),
                c.kind.clone(),
                c.sources.clone(),
                c.by.clone(),
            ]);
        }
        writeln!(out, "{}", indent(&it))?;
        writeln!(out)?;

        let dir = args.dir.display();
        writeln!(out, "DIG DEEPER")?;
        for line in [
            format!(
                "flowscope detect --lake {lake} --threat-intel {dir}/threat-intel.txt --format json"
            ),
            format!("flowscope diagnose --lake {lake} --dst 10.0.30.11 --port 5432"),
            format!(
                "flowscope sql \"SELECT dstport, count(*) AS n FROM flows WHERE action = 'REJECT' GROUP BY 1 ORDER BY n DESC LIMIT 10\" --lake {lake}"
            ),
            format!(
                "flowscope insights 'filter action=\"REJECT\" | stats count(*) as rejections by srcAddr | sort rejections desc | limit 10' --lake {lake}"
            ),
            format!("flowscope top --lake {lake} --by pair --rank-by bytes"),
            format!("flowscope alarms --config {dir}/alarms.toml --lake {lake}"),
            format!(
                "flowscope serve --lake {lake} --alarms {dir}/alarms.toml --threat-intel {dir}/threat-intel.txt"
            ),
        ] {
            writeln!(out, "  {line}")?;
        }
        writeln!(out)?;
        let parts: Vec<String> = steps
            .iter()
            .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
            .collect();
        writeln!(
            out,
            "done in {:.1} s ({})",
            batch.as_secs_f64(),
            parts.join(", ")
        )?;
        Ok(())
    }

    /// Each injected incident, and what found it.
    fn check(&self, truth: &Value) -> Vec<Check> {
        let incidents = truth
            .get("incidents")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        incidents
            .iter()
            .map(|i| {
                let kind = i
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let list = |key: &str| -> Vec<String> {
                    i.get(key)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let sources = list("sources");
                let destinations = list("destinations");
                let detections: &[&str] = match kind.as_str() {
                    "rdp_attempts" => &["rdp_brute_force"],
                    "beaconing" => &["beaconing", "threat_intel"],
                    "vertical_port_scan" => &["vertical_port_scan"],
                    "horizontal_sweep" => &["horizontal_sweep"],
                    "ssh_brute_force" => &["ssh_brute_force"],
                    "data_exfiltration" => &["data_exfiltration"],
                    _ => &[],
                };
                let cause = match kind.as_str() {
                    "nacl_blocks_replies" => Some(Cause::NaclInboundReturn),
                    "sg_blocks_tier" => Some(Cause::InboundSgOrNacl),
                    _ => None,
                };
                // Every initiator must be found by one of the incident's detections (or, for
                // the SG/NACL incidents, explained by the right cause).
                let mut by: Vec<String> = Vec::new();
                let mut all = !sources.is_empty();
                for s in &sources {
                    let mut hit = false;
                    for f in &self.findings {
                        if detections.contains(&f.detection.as_str()) && f.src.as_deref() == Some(s)
                        {
                            hit = true;
                            if !by.contains(&f.detection) {
                                by.push(f.detection.clone());
                            }
                        }
                    }
                    if let Some(cause) = cause {
                        for d in &self.diagnoses {
                            if d.cause == cause
                                && &d.src == s
                                && (destinations.is_empty() || destinations.contains(&d.dst))
                            {
                                hit = true;
                                let name = format!("diagnose: {}", cause.name());
                                if !by.contains(&name) {
                                    by.push(name);
                                }
                            }
                        }
                    }
                    all &= hit;
                }
                Check {
                    kind,
                    sources: sources.join(", "),
                    found: all,
                    by: if by.is_empty() {
                        "-".into()
                    } else {
                        by.join(", ")
                    },
                }
            })
            .collect()
    }
}

struct Check {
    kind: String,
    sources: String,
    found: bool,
    by: String,
}
