//! `flowscope simulate`: the Flow Logs service emulated — packets from a built-in scenario or
//! from captures, through a modelled VPC, out as flow logs delivered the way AWS delivers them.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flowscope_capture::PcapSource;
use flowscope_capture::scenario::{ScenarioOptions, THREE_TIER_TOPOLOGY, ThreeTier};
use flowscope_lake::deliver::{
    CloudWatchDelivery, DeliveryReport, FirehoseDelivery, FirehoseSettings, S3_WINDOW, S3Delivery,
    S3Layout, S3Target,
};
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::object::{Bucket, S3Options, parse_url};
use flowscope_lake::{Lake, input};
use flowscope_record::{LogFormat, write_lines};
use flowscope_vpc::topology::{FileFormat, LogDestination};
use flowscope_vpc::{
    ClosedWindow, Emulator, Exclusion, FlowRecord, Topology, WirePacket, to_batch,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Outcome;

/// 2026-11-02T08:00:00Z: the default start of scenarios, so runs repeat byte for byte.
const DEFAULT_START: i64 = 1_793_606_400;

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

    /// Scenario seed: the same seed gives the same packets and records.
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

/// Where one flow log's records go.
enum Sink {
    S3(S3Delivery),
    CloudWatch(usize),
    Firehose(Box<FirehoseDelivery>),
}

struct Outputs {
    sinks: Vec<Sink>,
    groups: Vec<CloudWatchDelivery>,
    /// Folders to ingest into lakes at the end: (lake, staged S3 layout).
    lakes: Vec<(PathBuf, PathBuf)>,
    /// End of the last window delivered, ms (the time of the final Firehose request).
    clock_ms: i64,
    _staging: Option<tempfile::TempDir>,
}

/// Runs `flowscope simulate`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
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
        (Some(name), None) if name == "three-tier" => (
            Topology::from_toml(THREE_TIER_TOPOLOGY)
                .map_err(|m| anyhow::anyhow!("built-in topology: {m:?}"))?,
            "three-tier".to_string(),
        ),
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
    if topology.flow_logs.is_empty() {
        bail!("the topology has no [[flow_log]]: nothing would be written");
    }
    let mut outputs = open_outputs(&topology, &args, lake_override.as_deref())?;
    let mut emulator = Emulator::new(topology);

    let interactive = !args.quiet && std::io::stderr().is_terminal();
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
    if args.scenario.is_some() {
        let duration = flowscope_lake::maintenance::parse_duration(&args.duration)
            .filter(|d| *d > 0)
            .with_context(|| format!("--duration `{}`: use 30m, 2h, 1d ...", args.duration))?;
        let start = match &args.start {
            None => DEFAULT_START,
            Some(t) => flowscope_query::time::parse_time(t, crate::commands::output::now())?,
        };
        let options = ScenarioOptions {
            start,
            duration,
            seed: args.seed,
            incidents: !args.no_incidents,
        };
        bar.set_length(duration as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} s simulated, {msg}")
                .expect("template"),
        );
        let mut scenario = ThreeTier::new(&options);
        emulator.start_at(start);
        run_packets(
            &mut emulator,
            &mut outputs,
            scenario.by_ref(),
            &bar,
            Some(start),
        )?;
        emulator.finish_at(start + duration);
        deliver_closed(&mut emulator, &mut outputs)?;
        truth = Some(scenario.truth().clone());
    } else {
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
        let mut last = None;
        let mut stats = flowscope_capture::CaptureStats::default();
        for path in &args.pcap {
            let mut source = PcapSource::open(path)?;
            let mut error = None;
            let packets = std::iter::from_fn(|| match source.next_packet()? {
                Ok(p) => Some(p),
                Err(e) => {
                    error = Some(e);
                    None
                }
            });
            last = run_packets(&mut emulator, &mut outputs, packets, &bar, None)?.or(last);
            stats.add(source.stats());
            if let Some(e) = error {
                eprintln!("flowscope: {e} (the packets before it were used)");
            }
        }
        if let Some(last) = last {
            emulator.finish_at(last + 1);
        }
        deliver_closed(&mut emulator, &mut outputs)?;
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
    bar.finish_and_clear();

    let reports = finish_outputs(outputs, emulator.topology())?;
    let stats = emulator.stats();
    eprintln!(
        "simulated {label}: {} packets ({:.1} MB), {} records in {:.1} s",
        stats.packets,
        stats.bytes as f64 / 1e6,
        stats.records,
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
    for (id, report) in &reports {
        eprintln!("  {id}: {report}");
    }
    if let Some(truth) = truth {
        let json = serde_json::to_string_pretty(&truth)?;
        match &args.out {
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

/// Feeds packets, delivering windows as they close; the last packet's second.
fn run_packets(
    emulator: &mut Emulator,
    outputs: &mut Outputs,
    packets: impl Iterator<Item = WirePacket>,
    bar: &ProgressBar,
    start: Option<i64>,
) -> anyhow::Result<Option<i64>> {
    let mut last = None;
    let mut count = 0u64;
    for p in packets {
        emulator.process(&p);
        last = Some(p.time_us.div_euclid(1_000_000));
        count += 1;
        if count.is_multiple_of(1 << 16) {
            deliver_closed(emulator, outputs)?;
            if let (Some(start), Some(now)) = (start, last) {
                bar.set_position((now - start).max(0) as u64);
            }
            bar.set_message(format!(
                "{count} packets, {} records",
                emulator.stats().records
            ));
        }
    }
    deliver_closed(emulator, outputs)?;
    Ok(last)
}

fn open_outputs(topology: &Topology, args: &Args, lake: Option<&Path>) -> anyhow::Result<Outputs> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
    let resolve = |location: &Option<String>| match location {
        None => out.clone(),
        Some(l) if Path::new(l).is_absolute() => PathBuf::from(l),
        Some(l) => out.join(l),
    };
    let needs_staging = lake.is_some()
        || topology
            .flow_logs
            .iter()
            .any(|f| matches!(f.destination, LogDestination::Lake { .. }));
    let staging = needs_staging.then(tempfile::tempdir).transpose()?;
    let mut outputs = Outputs {
        sinks: Vec::new(),
        groups: Vec::new(),
        lakes: Vec::new(),
        clock_ms: 0,
        _staging: None,
    };
    let mut group_index: HashMap<PathBuf, usize> = HashMap::new();
    let mut buckets: HashMap<String, Arc<Bucket>> = HashMap::new();
    let s3_options = S3Options {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
    };
    for def in &topology.flow_logs {
        let layout = |parquet, hive, hourly| S3Layout {
            account_id: topology.account_id.clone(),
            region: topology.region.clone(),
            flow_log_id: def.id.clone(),
            format: def.log_format.clone(),
            parquet,
            hive_compatible_partitions: hive,
            per_hour_partition: hourly,
            max_file_bytes: 75_000_000,
        };
        let mut stage = |lake_dir: PathBuf| {
            let dir = staging.as_ref().expect("staging made").path().join(&def.id);
            outputs.lakes.push((lake_dir, dir.clone()));
            Sink::S3(S3Delivery::new(
                S3Target::Folder(dir),
                layout(false, false, false),
            ))
        };
        let sink = if let Some(lake) = lake {
            stage(lake.to_path_buf())
        } else {
            match &def.destination {
                LogDestination::Lake { location } => stage(resolve(location)),
                LogDestination::S3 {
                    location,
                    file_format,
                    hive_compatible_partitions,
                    per_hour_partition,
                } => {
                    let target = match location.as_deref().and_then(parse_url) {
                        Some((name, prefix)) => {
                            let bucket = match buckets.get(name) {
                                Some(b) => Arc::clone(b),
                                None => {
                                    let b = Arc::new(
                                        Bucket::connect(name, &s3_options)
                                            .map_err(|e| anyhow::anyhow!("s3://{name}: {e}"))?,
                                    );
                                    buckets.insert(name.to_string(), Arc::clone(&b));
                                    b
                                }
                            };
                            S3Target::Bucket {
                                bucket,
                                prefix: prefix.to_string(),
                            }
                        }
                        None => S3Target::Folder(resolve(location)),
                    };
                    let parquet = *file_format == FileFormat::Parquet;
                    Sink::S3(S3Delivery::new(
                        target,
                        layout(parquet, *hive_compatible_partitions, *per_hour_partition),
                    ))
                }
                LogDestination::CloudWatchLogs {
                    location,
                    log_group_name,
                } => {
                    let root = resolve(location);
                    let key = root.join(log_group_name.trim_start_matches('/'));
                    let i = match group_index.get(&key) {
                        Some(i) => *i,
                        None => {
                            outputs
                                .groups
                                .push(CloudWatchDelivery::new(root, log_group_name)?);
                            group_index.insert(key, outputs.groups.len() - 1);
                            outputs.groups.len() - 1
                        }
                    };
                    Sink::CloudWatch(i)
                }
                LogDestination::Firehose { url, options } => {
                    let settings = FirehoseSettings {
                        url: url.clone(),
                        access_key: options.access_key.clone(),
                        source_arn: options.delivery_stream_arn.clone().unwrap_or_else(|| {
                            format!(
                                "arn:aws:firehose:{}:{}:deliverystream/{}",
                                topology.region, topology.account_id, def.id
                            )
                        }),
                        common_attributes: options.common_attributes.clone(),
                        gzip: options.gzip,
                        retry_duration: Duration::from_secs(options.retry_duration),
                        initial_backoff: Duration::from_secs(1),
                        max_records: 500,
                        id_seed: def.id.clone(),
                    };
                    Sink::Firehose(Box::new(FirehoseDelivery::new(settings)?))
                }
            }
        };
        outputs.sinks.push(sink);
    }
    outputs._staging = staging;
    Ok(outputs)
}

/// Hands every closed window to the flow logs' sinks.
fn deliver_closed(emulator: &mut Emulator, outputs: &mut Outputs) -> anyhow::Result<()> {
    let windows: Vec<ClosedWindow> = emulator.take_closed();
    let topology = emulator.topology();
    for window in &windows {
        let window_end = window.start + i64::from(window.interval);
        outputs.clock_ms = outputs.clock_ms.max(window_end * 1000);
        for (i, def) in topology.flow_logs.iter().enumerate() {
            let records = emulator.flow_log_records(i, window);
            if records.is_empty() {
                continue;
            }
            match &mut outputs.sinks[i] {
                Sink::S3(delivery) => {
                    let mut by_file: BTreeMap<i64, Vec<_>> = BTreeMap::new();
                    for r in records {
                        by_file
                            .entry(r.end.div_euclid(S3_WINDOW) * S3_WINDOW)
                            .or_default()
                            .push(r);
                    }
                    for (file_window, records) in by_file {
                        delivery
                            .write(file_window, &to_batch(&records, topology, &def.log_format))?;
                    }
                    delivery.close_before(window_end)?;
                }
                Sink::CloudWatch(g) => {
                    let mut by_interface: BTreeMap<usize, Vec<_>> = BTreeMap::new();
                    for r in records {
                        by_interface.entry(r.interface).or_default().push(r);
                    }
                    for (interface, records) in by_interface {
                        let text = text_of(&records, topology, &def.log_format)?;
                        let events = records.iter().map(|r| r.start * 1000).zip(text.lines());
                        // CloudWatch Logs receives records about five minutes after the window.
                        outputs.groups[*g].append(
                            &topology.interfaces[interface].id,
                            events,
                            (window_end + 300) * 1000,
                        )?;
                    }
                }
                Sink::Firehose(delivery) => {
                    let text = text_of(&records, topology, &def.log_format)?;
                    delivery.send(text.lines(), window_end * 1000)?;
                }
            }
        }
    }
    Ok(())
}

/// The records as flow log lines (no header).
fn text_of(
    records: &[FlowRecord],
    topology: &Topology,
    format: &LogFormat,
) -> anyhow::Result<String> {
    let mut text = Vec::new();
    write_lines(&to_batch(records, topology, format), format, &mut text)?;
    Ok(String::from_utf8(text).expect("flow log text is ASCII"))
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

fn finish_outputs(outputs: Outputs, topology: &Topology) -> anyhow::Result<Vec<(String, String)>> {
    let mut reports = Vec::new();
    let now_ms = outputs.clock_ms;
    for (def, sink) in topology.flow_logs.iter().zip(outputs.sinks) {
        let text = match sink {
            Sink::S3(d) => describe(&d.finish()?, "files"),
            Sink::Firehose(d) => describe(&d.finish(now_ms)?, "Firehose requests"),
            Sink::CloudWatch(_) => continue,
        };
        reports.push((def.id.clone(), text));
    }
    for group in outputs.groups {
        let report = group.finish()?;
        reports.push(("CloudWatch Logs".to_string(), describe(&report, "streams")));
    }
    for (lake_dir, staged) in &outputs.lakes {
        let lake = Lake::open(lake_dir)?;
        let inputs = if staged.exists() {
            input::expand(&[staged.display().to_string()])?
        } else {
            Vec::new()
        };
        let summary = ingest(&lake, &inputs, &IngestOptions::default(), &Quiet)?;
        reports.push((
            format!("lake {}", lake_dir.display()),
            format!(
                "{} records added from {} files ({} already there)",
                summary.records, summary.files, summary.skipped
            ),
        ));
    }
    Ok(reports)
}
