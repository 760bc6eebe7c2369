//! `flowscope simulate`: the Flow Logs service emulated — packets from a built-in scenario or
//! from captures, through a modelled VPC, out as flow logs delivered the way AWS delivers them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use flowscope_capture::scenario::{ScenarioOptions, THREE_TIER_TOPOLOGY};
use flowscope_lake::deliver::DeliveryReport;
use flowscope_lake::object::S3Options;
use flowscope_simulate::{Delivered, Options, Simulation};
use flowscope_vpc::{Exclusion, Topology};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Outcome;

/// 2026-11-02T08:00:00Z: the default start of scenarios, so runs repeat byte for byte.
pub(super) const DEFAULT_START: i64 = 1_793_606_400;

/// Emulate VPC Flow Logs: packets through a modelled VPC, out as AWS-exact flow logs.
///
/// Either a built-in scenario (`--scenario three-tier`: internet -> load balancer -> web -> app ->
/// database with NAT egress, DNS and background scanning, plus injected incidents described in
/// truth.json) or captures replayed through a topology file (`--topology FILE --pcap FILE...`).
/// Each flow log of the topology delivers to its destination; S3 and CloudWatch Logs layouts
/// without a location go under --out.
#[derive(clap::Args)]
pub struct Args {
    /// A built-in scenario: three-tier.
    #[arg(long, value_name = "NAME", conflicts_with = "topology")]
    scenario: Option<String>,

    /// A topology file (see `flowscope flow-logs validate`).
    #[arg(long, value_name = "FILE", requires = "pcap")]
    topology: Option<PathBuf>,

    /// pcap or pcapng files to replay through the topology, in order.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "topology")]
    pcap: Vec<PathBuf>,

    /// Scenario length: 30m, 2h, 1d ...
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    duration: String,

    /// Scenario start (2026-11-02T08:00:00Z, 2026-11-02, Unix seconds); default 2026-11-02T08:00:00Z.
    #[arg(long, value_name = "TIME")]
    start: Option<String>,

    /// Seed: the same seed gives the same scenario packets and the same capture windows (each
    /// interface's windows run on a phase drawn from it).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,

    /// Leave the incidents out of the scenario.
    #[arg(long)]
    no_incidents: bool,

    /// Output folder: S3 layouts (as bucket-and-prefix/AWSLogs/...), CloudWatch log groups and
    /// truth.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Send every flow log's records to a lake instead: lake:DIR.
    #[arg(long, value_name = "lake:DIR")]
    to: Option<String>,

    /// S3-compatible endpoint for s3:// destinations (as the AWS CLI's --endpoint-url).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,

    /// Region for s3:// destinations.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// No progress bar; the summary only.
    #[arg(long, short)]
    quiet: bool,
}

/// The packets a simulation is fed.
pub(super) enum Packets {
    /// The built-in three-tier scenario.
    Scenario(ScenarioOptions),
    /// Captures replayed in order.
    Captures(Vec<PathBuf>),
}

/// One simulation, in typed options: what `simulate`'s arguments say, or what `demo` asks for.
pub(super) struct Job {
    /// The modelled network and its flow logs.
    pub topology: Topology,
    /// What the summary calls it (the scenario, or the topology file).
    pub label: String,
    /// The packets.
    pub packets: Packets,
    /// Where the deliveries go.
    pub options: Options,
    /// Where the scenario's truth.json goes.
    pub truth_dir: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

impl Job {
    /// The three-tier scenario delivered under `out`, as its topology says.
    pub(super) fn three_tier(scenario: ScenarioOptions, out: &Path) -> anyhow::Result<Self> {
        let seed = scenario.seed;
        Ok(Self {
            topology: three_tier_topology()?,
            label: "three-tier".into(),
            packets: Packets::Scenario(scenario),
            options: Options {
                out: out.to_path_buf(),
                seed,
                ..Options::default()
            },
            truth_dir: Some(out.to_path_buf()),
            quiet: false,
        })
    }
}

fn three_tier_topology() -> anyhow::Result<Topology> {
    Topology::from_toml(THREE_TIER_TOPOLOGY)
        .map_err(|m| anyhow::anyhow!("built-in topology: {m:?}"))
}

/// Runs `flowscope simulate`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    execute(job_of(args)?)
}

/// The job the arguments describe.
fn job_of(args: Args) -> anyhow::Result<Job> {
    let lake_override = match &args.to {
        None => None,
        Some(to) => match to.strip_prefix("lake:") {
            Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
            _ => bail!("--to takes lake:DIR, not `{to}`"),
        },
    };
    if args.out.is_none() && lake_override.is_none() {
        bail!("give --out DIR (or --to lake:DIR)");
    }
    let (topology, label) = match (&args.scenario, &args.topology) {
        (Some(name), None) if name == "three-tier" => {
            (three_tier_topology()?, "three-tier".to_string())
        }
        (Some(name), None) => bail!("no scenario `{name}`; the built-in scenario is three-tier"),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let topology = Topology::from_toml(&text).map_err(|mistakes| {
                let list: Vec<String> = mistakes
                    .iter()
                    .map(|m| format!("{}:{m}", file.display()))
                    .collect();
                anyhow::anyhow!(
                    "{} mistake(s) in the topology:\n{}",
                    mistakes.len(),
                    list.join("\n")
                )
            })?;
            (topology, file.display().to_string())
        }
        _ => bail!("give --scenario three-tier, or --topology FILE --pcap FILE..."),
    };
    let packets = if args.scenario.is_some() {
        let duration = flowscope_record::time::parse_duration(&args.duration)
            .filter(|d| *d > 0)
            .with_context(|| format!("--duration `{}`: use 30m, 2h, 1d ...", args.duration))?;
        let start = match &args.start {
            None => DEFAULT_START,
            Some(t) => flowscope_query::time::parse_time(t, crate::commands::output::now())?,
        };
        Packets::Scenario(ScenarioOptions {
            start,
            duration,
            seed: args.seed,
            incidents: !args.no_incidents,
        })
    } else {
        Packets::Captures(args.pcap)
    };
    Ok(Job {
        topology,
        label,
        packets,
        options: Options {
            out: args.out.clone().unwrap_or_else(|| PathBuf::from(".")),
            lake: lake_override,
            s3: S3Options {
                endpoint_url: args.endpoint_url,
                region: args.region,
                ..S3Options::default()
            },
            seed: args.seed,
        },
        truth_dir: args.out,
        quiet: args.quiet,
    })
}

/// Runs a simulation and prints its summary.
pub(super) fn execute(job: Job) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let label = job.label;
    let mut simulation = Simulation::new(job.topology, &job.options)?;
    let interactive = !job.quiet && std::io::stderr().is_terminal();
    let bar = if interactive {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });

    let mut truth = None;
    let mut capture_note = String::new();
    match &job.packets {
        Packets::Scenario(options) => {
            bar.set_length(options.duration as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} s simulated, {msg}")
                    .expect("template"),
            );
            truth = Some(simulation.run_scenario(options, &mut |p| {
                bar.set_position((p.second - options.start).max(0) as u64);
                bar.set_message(format!("{} packets, {} records", p.packets, p.records));
            })?);
        }
        Packets::Captures(paths) => {
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
            let stats = simulation.replay(
                paths,
                &mut |p| bar.set_message(format!("{} packets, {} records", p.packets, p.records)),
                &mut |_, e| eprintln!("flowscope: {e} (the packets before it were used)"),
            )?;
            capture_note = format!(
                "{} frames read, {} IP packets; skipped {} (not IP {}, malformed {}, other link types {}, orphan fragments {})",
                stats.frames,
                stats.packets,
                stats.skipped(),
                stats.not_ip,
                stats.malformed,
                stats.unknown_link,
                stats.orphan_fragments
            );
        }
    }
    bar.finish_and_clear();

    let stats = simulation.stats().clone();
    let reports = simulation.finish()?;
    eprintln!(
        "simulated {label}: {} packets ({}), {} records in {:.1} s",
        flowscope_query::units::thousands(i128::from(stats.packets)),
        flowscope_query::units::bytes(stats.bytes as f64),
        flowscope_query::units::thousands(i128::from(stats.records)),
        started.elapsed().as_secs_f64()
    );
    if !capture_note.is_empty() {
        eprintln!("  capture: {capture_note}");
    }
    let excluded: Vec<String> = Exclusion::ALL
        .iter()
        .zip(stats.excluded)
        .filter(|(_, n)| *n > 0)
        .map(|(e, n)| format!("{} {n}", e.name()))
        .collect();
    if !excluded.is_empty() {
        eprintln!(
            "  not logged, as AWS does not log them: {} packets",
            excluded.join(", ")
        );
    }
    if stats.outside > 0 {
        eprintln!(
            "  {} packets touched no interface of the topology",
            stats.outside
        );
    }
    for delivered in &reports {
        match delivered {
            Delivered::Destination {
                label,
                unit,
                report,
            } => eprintln!("  {label}: {}", describe(report, unit)),
            Delivered::Lake {
                dir,
                records,
                files,
                skipped,
            } => eprintln!(
                "  lake {}: {records} records added from {files} files ({skipped} already there)",
                dir.display()
            ),
        }
    }
    if let Some(truth) = truth {
        let json = serde_json::to_string_pretty(&truth)?;
        match &job.truth_dir {
            Some(out) => {
                std::fs::create_dir_all(out)?;
                let path = out.join("truth.json");
                let mut file = flowscope_lake::AtomicFile::create(&path)?;
                std::io::Write::write_all(&mut file, json.as_bytes())?;
                file.commit()?;
                eprintln!(
                    "  truth: {} ({} incidents)",
                    path.display(),
                    truth.incidents.len()
                );
            }
            None => eprintln!(
                "  truth.json not written (no --out); {} incidents",
                truth.incidents.len()
            ),
        }
    }
    Ok(Outcome::Success)
}

fn describe(report: &DeliveryReport, what: &str) -> String {
    let shown: Vec<&str> = report.outputs.iter().take(2).map(String::as_str).collect();
    let more = report.outputs.len().saturating_sub(shown.len());
    let mut text = format!(
        "{} records in {} {what}",
        report.records,
        report.outputs.len()
    );
    if !shown.is_empty() {
        text.push_str(&format!(
            " ({}{})",
            shown.join(", "),
            if more > 0 {
                format!(", {more} more")
            } else {
                String::new()
            }
        ));
    }
    text
}
