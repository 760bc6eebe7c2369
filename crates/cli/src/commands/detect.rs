//! `flowscope detect`: the built-in detections and custom rules over a lake.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};
use flowscope_detect::{DetectConfig, Detector, Finding, ThreatIntel};
use flowscope_query::Engine;

use super::Outcome;
use super::output::{TimeArgs, note, runtime, terminal_width};

/// Finds port scans, sweeps, SSH/RDP brute force, exfiltration, beaconing, traffic with
/// known-bad addresses, rejected-traffic spikes and sensitive ports open to the internet.
/// Each finding has a severity, an ATT&CK technique, a summary and the SQL that shows its
/// records. Exit status 0 whatever is found (use --fail-on to make findings fail a script).
#[derive(clap::Args)]
pub struct Args {
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    #[command(flatten)]
    time: TimeArgs,
    /// Threat-intelligence lists (one address or CIDR per line, CSV with a header, or
    /// Spamhaus DROP); repeat for several.
    #[arg(long = "threat-intel", value_name = "FILE")]
    threat_intel: Vec<PathBuf>,
    /// A rules file: thresholds, disabled detections and custom rules (docs/detect.md).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// table, or json (one finding per line).
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Only findings at or above this severity: low, medium, high, critical.
    #[arg(long, value_name = "SEVERITY", default_value = "low")]
    min_severity: flowscope_detect::Severity,
    /// Exit 3 when a finding at or above this severity is found.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<flowscope_detect::Severity>,
    /// Print each detection's time to standard error.
    #[arg(long)]
    timing: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let range = args.time.range()?;
    let config = match &args.rules {
        Some(path) => DetectConfig::load(path)?,
        None => DetectConfig::default(),
    };
    let intel = load_intel(&args.threat_intel)?;
    let report = runtime()?.block_on(async {
        let engine = Engine::open(&args.lake).await?;
        Detector::new(&engine, config, intel, range)
            .run()
            .await
            .context("detect")
    })?;
    for w in &report.warnings {
        note(w);
    }
    if args.timing {
        for (step, d) in &report.timings {
            eprintln!("{step:>24}  {:>8.3} s", d.as_secs_f64());
        }
        let total: f64 = report.timings.iter().map(|t| t.1.as_secs_f64()).sum();
        eprintln!("{:>24}  {total:>8.3} s", "total");
    }
    let findings: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.severity >= args.min_severity)
        .collect();
    let mut out = std::io::stdout().lock();
    if args.format == "json" {
        for f in &findings {
            serde_json::to_writer(&mut out, f)?;
            out.write_all(b"\n")?;
        }
    } else {
        print_table(&findings, &mut out)?;
    }
    out.flush()?;
    if let Some(level) = args.fail_on
        && findings.iter().any(|f| f.severity >= level)
    {
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Success)
}

fn print_table(findings: &[&Finding], out: &mut impl Write) -> anyhow::Result<()> {
    if findings.is_empty() {
        writeln!(out, "no findings")?;
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if let Some(w) = terminal_width() {
        table.set_width(w);
    }
    table.set_header(vec!["severity", "detection", "first seen", "summary"]);
    for f in findings {
        table.add_row(vec![
            f.severity.to_string(),
            f.detection.clone(),
            f.first_seen
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string(),
            f.summary.clone(),
        ]);
    }
    writeln!(
        out,
        "{}",
        flowscope_query::render::trimmed(&table.to_string())
    )?;
    writeln!(
        out,
        "{} finding{}; --format json shows each one's evidence and the SQL behind it",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

/// Reads threat-intel files, noting skipped lines on standard error.
pub fn load_intel(paths: &[PathBuf]) -> anyhow::Result<ThreatIntel> {
    let mut intel = ThreatIntel::new();
    for path in paths {
        let loaded = intel.load(path)?;
        for e in loaded.rejected.iter().take(5) {
            note(&format!("skipped: {e}"));
        }
        if loaded.rejected.len() > 5 {
            note(&format!(
                "{}: {} more lines skipped",
                path.display(),
                loaded.rejected.len() - 5
            ));
        }
        if loaded.entries == 0 {
            note(&format!("{}: no addresses read", path.display()));
        }
    }
    Ok(intel)
}
