//! flowscope-simulate: the Flow Logs service as a library.
//!
//! A [`Simulation`] is the emulated VPC ([`flowscope_vpc::Emulator`]: verdicts, aggregation),
//! its flow log configurations and their deliveries ([`flowscope_lake::deliver::Delivery`]: S3
//! layouts, CloudWatch Logs log groups, Firehose streams, or a lake), driven by the clock of the
//! packets it is fed. Windows are delivered as they close, as AWS publishes them. The CLI's
//! `simulate` and `demo` run one; anything else that wants flow logs from packets can too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use flowscope_capture::scenario::{ScenarioOptions, ThreeTier, Truth};
use flowscope_capture::{CaptureStats, PcapSource};
use flowscope_lake::deliver::{
    CloudWatchDelivery, Delivery, DeliveryReport, FirehoseDelivery, FirehoseSettings, Kind,
    MAX_FILE_BYTES, Records, S3Delivery, S3Layout, S3Target, Window,
};
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::object::{Bucket, S3Options, parse_url};
use flowscope_lake::{Lake, input};
use flowscope_record::LogFormat;
use flowscope_vpc::topology::{FileFormat, LogDestination};
use flowscope_vpc::{ClosedWindow, Emulator, EmulatorStats, FlowRecord, Topology, WirePacket};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A delivery or the lake failed.
    #[error(transparent)]
    Lake(#[from] flowscope_lake::Error),
    /// A capture could not be read.
    #[error(transparent)]
    Capture(#[from] flowscope_capture::Error),
    /// The simulation cannot be set up (a destination, the staging folder).
    #[error("{0}")]
    Setup(String),
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where deliveries go.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The folder for S3 and CloudWatch Logs destinations without a location, and the base of
    /// relative locations.
    pub out: PathBuf,
    /// Every flow log's records to this lake instead of its destination.
    pub lake: Option<PathBuf>,
    /// How to reach `s3://` destinations.
    pub s3: S3Options,
    /// Draws each interface's capture-window phase: the same seed, the same windows.
    pub seed: u64,
}

/// Packets fed between deliveries of the windows that closed.
const DELIVER_EVERY: u64 = 1 << 16;

/// How far a simulation has come, as it tells now and then.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Packets fed so far.
    pub packets: u64,
    /// The last packet's second.
    pub second: i64,
    /// Records written so far.
    pub records: u64,
}

/// The Flow Logs service at work: an emulator, its flow logs and their deliveries.
pub struct Simulation {
    emulator: Emulator,
    /// The destinations (flow logs sharing a CloudWatch Logs log group share one).
    deliveries: Vec<Box<dyn Delivery>>,
    /// Per destination: the name its report goes under (the flow log ID, or `CloudWatch Logs`).
    labels: Vec<String>,
    /// Per flow log of the topology: its destination.
    routes: Vec<usize>,
    /// Lakes filled at the end: (lake, staged S3 layout).
    lakes: Vec<(PathBuf, PathBuf)>,
    /// The end of the last window delivered, ms: the time of the final delivery.
    clock_ms: i64,
    packets: u64,
    _staging: Option<tempfile::TempDir>,
}

/// What one destination, or a lake, received.
#[derive(Debug, Clone)]
pub enum Delivered {
    /// A destination's report.
    Destination {
        /// The flow log ID, or `CloudWatch Logs` for a log group.
        label: String,
        /// What its outputs are (`files`, `streams`, `Firehose requests`).
        unit: &'static str,
        /// What it wrote.
        report: DeliveryReport,
    },
    /// A lake filled from the staged records.
    Lake {
        /// The lake.
        dir: PathBuf,
        /// Records added.
        records: u64,
        /// Files read.
        files: u64,
        /// Files the lake had already.
        skipped: u64,
    },
}

/// One flow log's records of one window, as deliveries take them.
struct FlowLogWindow<'a> {
    id: &'a str,
    records: Vec<FlowRecord>,
    topology: &'a Topology,
    format: &'a LogFormat,
}

impl Records for FlowLogWindow<'_> {
    fn flow_log_id(&self) -> &str {
        self.id
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn format(&self) -> &LogFormat {
        self.format
    }

    fn span(&self, i: usize) -> (i64, i64) {
        (self.records[i].start, self.records[i].end)
    }

    fn interface_id(&self, i: usize) -> &str {
        &self.topology.interfaces[self.records[i].interface].id
    }

    fn batch(&self, rows: &[usize]) -> RecordBatch {
        if rows.len() == self.records.len() && rows.iter().enumerate().all(|(i, r)| i == *r) {
            return flowscope_vpc::to_batch(&self.records, self.topology, self.format);
        }
        let some: Vec<FlowRecord> = rows.iter().map(|i| self.records[*i].clone()).collect();
        flowscope_vpc::to_batch(&some, self.topology, self.format)
    }
}

/// The destinations of a topology's flow logs, opened.
struct Destinations {
    deliveries: Vec<Box<dyn Delivery>>,
    labels: Vec<String>,
    routes: Vec<usize>,
    lakes: Vec<(PathBuf, PathBuf)>,
    staging: Option<tempfile::TempDir>,
}

impl Destinations {
    fn open(topology: &Topology, options: &Options) -> Result<Self> {
        let mut d = Self {
            deliveries: Vec::new(),
            labels: Vec::new(),
            routes: Vec::new(),
            lakes: Vec::new(),
            staging: None,
        };
        let out = &options.out;
        let resolve = |location: &Option<String>| match location {
            None => out.clone(),
            Some(l) if Path::new(l).is_absolute() => PathBuf::from(l),
            Some(l) => out.join(l),
        };
        let needs_staging = options.lake.is_some()
            || topology
                .flow_logs
                .iter()
                .any(|f| matches!(f.destination, LogDestination::Lake { .. }));
        let staging = needs_staging
            .then(tempfile::tempdir)
            .transpose()
            .map_err(|e| Error::Setup(format!("cannot make a staging folder: {e}")))?;
        let mut groups: HashMap<PathBuf, usize> = HashMap::new();
        let mut buckets: HashMap<String, Arc<Bucket>> = HashMap::new();
        for def in &topology.flow_logs {
            let layout = |parquet, hive, hourly| S3Layout {
                account_id: topology.account_id.clone(),
                region: topology.region.clone(),
                flow_log_id: def.id.clone(),
                format: def.log_format.clone(),
                parquet,
                hive_compatible_partitions: hive,
                per_hour_partition: hourly,
                max_file_bytes: MAX_FILE_BYTES,
            };
            let mut stage = |lake_dir: PathBuf| -> Box<dyn Delivery> {
                let dir = staging.as_ref().expect("staging made").path().join(&def.id);
                d.lakes.push((lake_dir, dir.clone()));
                Box::new(S3Delivery::new(
                    S3Target::Folder(dir),
                    layout(false, false, false),
                ))
            };
            let delivery: Box<dyn Delivery> = if let Some(lake) = &options.lake {
                stage(lake.clone())
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
                                        let b =
                                            Arc::new(Bucket::connect(name, &options.s3).map_err(
                                                |e| Error::Setup(format!("s3://{name}: {e}")),
                                            )?);
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
                        Box::new(S3Delivery::new(
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
                        if let Some(i) = groups.get(&key) {
                            d.routes.push(*i);
                            continue;
                        }
                        groups.insert(key, d.deliveries.len());
                        d.routes.push(d.deliveries.len());
                        d.deliveries
                            .push(Box::new(CloudWatchDelivery::new(root, log_group_name)?));
                        d.labels.push("CloudWatch Logs".into());
                        continue;
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
                        Box::new(FirehoseDelivery::new(settings)?)
                    }
                }
            };
            d.routes.push(d.deliveries.len());
            d.deliveries.push(delivery);
            d.labels.push(def.id.clone());
        }
        d.staging = staging;
        Ok(d)
    }
}

impl Simulation {
    /// A simulation of `topology`, each flow log delivering to its destination (or all of
    /// them to `options.lake`).
    ///
    /// # Errors
    /// [`Error::Setup`] when the topology has no flow log, or a destination cannot be opened.
    pub fn new(topology: Topology, options: &Options) -> Result<Self> {
        if topology.flow_logs.is_empty() {
            return Err(Error::Setup(
                "the topology has no [[flow_log]]: nothing would be written".into(),
            ));
        }
        let d = Destinations::open(&topology, options)?;
        Ok(Self {
            emulator: Emulator::with_seed(topology, options.seed),
            deliveries: d.deliveries,
            labels: d.labels,
            routes: d.routes,
            lakes: d.lakes,
            clock_ms: 0,
            packets: 0,
            _staging: d.staging,
        })
    }

    /// The modelled network.
    pub fn topology(&self) -> &Topology {
        self.emulator.topology()
    }

    /// What the emulator has seen and written so far.
    pub fn stats(&self) -> &EmulatorStats {
        self.emulator.stats()
    }

    /// Starts the clock at `time` (Unix seconds): windows are counted from there.
    pub fn start_at(&mut self, time: i64) {
        self.emulator.start_at(time);
    }

    /// Feeds packets, in time order, delivering windows as they close; `progress` hears how far
    /// it has come now and then. Returns the last packet's second.
    ///
    /// # Errors
    /// When a delivery fails.
    pub fn feed(
        &mut self,
        packets: impl Iterator<Item = WirePacket>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<i64>> {
        let mut last = None;
        for p in packets {
            self.emulator.process(&p);
            let second = p.time_us.div_euclid(1_000_000);
            last = Some(second);
            self.packets += 1;
            if self.packets.is_multiple_of(DELIVER_EVERY) {
                self.deliver_closed()?;
                progress(Progress {
                    packets: self.packets,
                    second,
                    records: self.emulator.stats().records,
                });
            }
        }
        self.deliver_closed()?;
        Ok(last)
    }

    /// Stops the clock at `time`: every window still open closes and is delivered.
    ///
    /// # Errors
    /// When a delivery fails.
    pub fn finish_at(&mut self, time: i64) -> Result<()> {
        self.emulator.finish_at(time);
        self.deliver_closed()
    }

    /// Runs the built-in three-tier scenario (the topology should be
    /// [`flowscope_capture::scenario::THREE_TIER_TOPOLOGY`]) from its start for its duration;
    /// what was injected.
    ///
    /// # Errors
    /// When a delivery fails.
    pub fn run_scenario(
        &mut self,
        options: &ScenarioOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Truth> {
        let mut scenario = ThreeTier::new(options);
        self.start_at(options.start);
        self.feed(scenario.by_ref(), progress)?;
        self.finish_at(options.start + options.duration)?;
        Ok(scenario.truth().clone())
    }

    /// Replays captures, in order, closing every window after the last packet. A capture that
    /// breaks off gives the packets before the break and its error to `broken`.
    ///
    /// # Errors
    /// When a capture cannot be opened or a delivery fails.
    pub fn replay(
        &mut self,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(Progress),
        broken: &mut dyn FnMut(&Path, flowscope_capture::Error),
    ) -> Result<CaptureStats> {
        let mut last = None;
        let mut stats = CaptureStats::default();
        for path in paths {
            let mut source = PcapSource::open(path)?;
            let mut error = None;
            let packets = std::iter::from_fn(|| match source.next_packet()? {
                Ok(p) => Some(p),
                Err(e) => {
                    error = Some(e);
                    None
                }
            });
            last = self.feed(packets, progress)?.or(last);
            stats.add(source.stats());
            if let Some(e) = error {
                broken(path, e);
            }
        }
        if let Some(last) = last {
            self.emulator.finish_at(last + 1);
        }
        self.deliver_closed()?;
        Ok(stats)
    }

    /// Hands every closed window to its flow logs' destinations.
    fn deliver_closed(&mut self) -> Result<()> {
        let windows: Vec<ClosedWindow> = self.emulator.take_closed();
        // Per window: no record still to come ends before this — the windows after it (in order
        // of ends) and those still open may hold records that end earlier than it does.
        let mut settled = vec![0; windows.len()];
        let mut floor = self.emulator.open_since();
        for (k, w) in windows.iter().enumerate().rev() {
            settled[k] = floor.min(w.end);
            floor = floor.min(w.start);
        }
        let topology = self.emulator.topology();
        for (window, &settled) in windows.iter().zip(&settled) {
            let end = window.end;
            self.clock_ms = self.clock_ms.max(end * 1000);
            for (i, def) in topology.flow_logs.iter().enumerate() {
                let records = self.emulator.flow_log_records(i, window);
                if records.is_empty() {
                    continue;
                }
                let records = FlowLogWindow {
                    id: &def.id,
                    records,
                    topology,
                    format: &def.log_format,
                };
                self.deliveries[self.routes[i]].deliver(&Window {
                    records: &records,
                    end,
                    settled,
                })?;
            }
        }
        Ok(())
    }

    /// Finishes every delivery (the last files, requests and streams) and fills the lakes;
    /// what each destination received: flow logs' destinations in order, then log groups,
    /// then lakes.
    ///
    /// # Errors
    /// When a delivery or an ingest fails.
    pub fn finish(self) -> Result<Vec<Delivered>> {
        let now_ms = self.clock_ms;
        let mut reports = Vec::new();
        let mut groups = Vec::new();
        for (delivery, label) in self.deliveries.into_iter().zip(self.labels) {
            let kind = delivery.kind();
            let report = delivery.finish(now_ms)?;
            let delivered = Delivered::Destination {
                label,
                unit: kind.unit(),
                report,
            };
            if kind == Kind::CloudWatchLogs {
                groups.push(delivered);
            } else {
                reports.push(delivered);
            }
        }
        reports.extend(groups);
        for (dir, staged) in self.lakes {
            let lake = Lake::open(&dir)?;
            let inputs = if staged.exists() {
                input::expand(&[staged.display().to_string()])?
            } else {
                Vec::new()
            };
            let summary = ingest(&lake, &inputs, &IngestOptions::default(), &Quiet)?;
            reports.push(Delivered::Lake {
                dir,
                records: summary.records,
                files: summary.files,
                skipped: summary.skipped,
            });
        }
        Ok(reports)
    }
}
