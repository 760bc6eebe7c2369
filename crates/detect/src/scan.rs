//! One pass over the lake that gathers what the built-in detections need.
//!
//! Each detection used to scan `flows` with its own GROUP BY; on lakes with millions of distinct
//! connections those group-bys (string keys, one hash table each) cost most of the run. The pass
//! reads the needed columns once — one task per partition of the plan, each decoding its Parquet
//! files and folding its records on its own core — and keeps per detection only what it needs,
//! with addresses and interfaces as numbers:
//!
//! - the fingerprints of all accepted records, to tell which records were answered (an accepted
//!   record with the reverse tuple) without a join;
//! - the rejected records (the candidates for rejected requests: those nobody answered);
//! - the requests (source port above destination port), for the sweep;
//! - the SSH/RDP requests, the accepted outbound records to the internet (exfiltration), the
//!   accepted requests to the internet (beaconing), per (source, destination) the records with a
//!   listed address, and the accepted requests from the internet to sensitive ports.
//!
//! Then, on both cores, each partition's records straight from where its pass left them:
//! - the accepted fingerprints are sorted, and "answered?" is found for all the records that ask
//!   at once, by sorting their reverse tuples' fingerprints and walking both lists in order — on
//!   lakes far larger than the cache, millions of hash-set lookups each cost a cache miss;
//! - the sweep's requests are sorted so that each (initiator, port, protocol) group is one run;
//! - for brute force, exfiltration and beaconing, a table of counts per group (sized to stay in
//!   the cache) first drops the records of the groups that cannot reach the threshold, and only
//!   the rest is sorted;
//! - the vertical scan and the rejected-traffic spike group the rejected requests in memory.
//!
//! What comes out is the same rows the detections' SQL used to return, so the findings, their
//! summaries and the SQL that shows their records are unchanged.
//!
//! A fingerprint is 64 bits of xxh3 over the tuple. A tuple taken for answered because another
//! tuple has its fingerprint is expected about `lookups × accepted records / 2^64` times: 10^-5
//! at 20 M records, 0.05 at a billion.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use flowscope_query::{Engine, TimeRange};
use flowscope_record::net::{is_private, is_private_v4};
use futures::StreamExt;
use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64;

use crate::config::Thresholds;
use crate::error::Result;
use crate::intel::ThreatIntel;
use crate::rows::Row;

/// Seconds around the time range in which the other side of a connection is looked for.
pub const SLACK: i64 = 900;

/// `AND start >= .. AND start < ..` for `range`, widened by `slack` seconds, on columns of
/// `alias` (`""` for none).
pub(crate) fn range_sql(range: &TimeRange, alias: &str, slack: i64) -> String {
    let mut s = String::new();
    if let Some(lo) = range.start {
        s.push_str(&format!(" AND {alias}start >= {}", lo - slack));
    }
    if let Some(hi) = range.end {
        s.push_str(&format!(" AND {alias}start < {}", hi + slack));
    }
    s
}

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An address as a number: an IPv4 address is its value; anything else (IPv6, or text that is
/// not an address) is the xxh3 of its text with the top bit set, its text kept in [`Names`].
type Addr = u64;
const NAMED: u64 = 1 << 63;

/// Which detections the pass gathers for.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Rejected requests (vertical scan, rejected spike).
    pub rejected: bool,
    /// Horizontal sweep.
    pub sweep: bool,
    /// SSH / RDP brute force: the destination ports.
    pub brute_ports: Vec<u16>,
    /// Data exfiltration.
    pub exfiltration: bool,
    /// Beaconing.
    pub beaconing: bool,
    /// Threat intel (only with a non-empty list).
    pub intel: bool,
    /// Exposed sensitive ports.
    pub exposed: bool,
}

#[derive(Default)]
struct Named {
    text: String,
    ip: Option<IpAddr>,
}

/// The texts behind numbered addresses and interfaces.
#[derive(Default)]
struct Names {
    addrs: Map<u64, Named>,
    interfaces: Map<u64, String>,
}

/// A dotted-quad IPv4 address in its canonical form (no leading zeros), without the general
/// parser's cost; anything else is `None`.
fn dotted_quad(text: &[u8]) -> Option<u32> {
    let (mut value, mut octet, mut digits, mut dots) = (0u32, 0u32, 0u32, 0u32);
    for &c in text {
        if c.is_ascii_digit() {
            if digits == 1 && octet == 0 {
                return None;
            }
            octet = octet * 10 + u32::from(c - b'0');
            digits += 1;
            if octet > 255 {
                return None;
            }
        } else if c == b'.' && digits > 0 && dots < 3 {
            value = (value << 8) | octet;
            (octet, digits) = (0, 0);
            dots += 1;
        } else {
            return None;
        }
    }
    (dots == 3 && digits > 0).then_some((value << 8) | octet)
}

impl Names {
    fn addr(&mut self, text: &str) -> Addr {
        if let Some(v4) = dotted_quad(text.as_bytes()) {
            return u64::from(v4);
        }
        let key = xxh3_64(text.as_bytes()) | NAMED;
        self.addrs.entry(key).or_insert_with(|| Named {
            text: text.to_string(),
            ip: text.parse().ok(),
        });
        key
    }

    fn interface(&mut self, text: &str) -> u64 {
        let key = xxh3_64(text.as_bytes());
        self.interfaces
            .entry(key)
            .or_insert_with(|| text.to_string());
        key
    }

    fn ip(&self, a: Addr) -> Option<IpAddr> {
        if a & NAMED == 0 {
            Some(IpAddr::V4(Ipv4Addr::from(a as u32)))
        } else {
            self.addrs.get(&a).and_then(|n| n.ip)
        }
    }

    /// Whether `a` is a private address; `None` when it is not an address.
    fn private(&self, a: Addr) -> Option<bool> {
        if a & NAMED == 0 {
            Some(is_private_v4(a as u32))
        } else {
            self.ip(a).map(is_private)
        }
    }

    fn text(&self, a: Addr) -> String {
        if a & NAMED == 0 {
            Ipv4Addr::from(a as u32).to_string()
        } else {
            self.addrs
                .get(&a)
                .map(|n| n.text.clone())
                .unwrap_or_default()
        }
    }

    fn interface_text(&self, i: u64) -> String {
        self.interfaces.get(&i).cloned().unwrap_or_default()
    }
}

/// The fingerprint of one direction of a connection.
fn tuple(src: Addr, dst: Addr, srcport: u16, dstport: u16, protocol: u8) -> u64 {
    let ports = (u64::from(srcport) << 24) | (u64::from(dstport) << 8) | u64::from(protocol);
    group(src, dst, ports)
}

/// Sorts the items of `parts` so that equal `key`s are together, in order of the top byte of
/// their `hash` and then of `key` (with `hash` the identity on a uniform hash, simply sorted).
/// One pass places the items by the hash's top byte (each part on its own core, straight from
/// where the partition's pass left it), then each of the 256 runs is sorted while it is in the
/// cache, half of them on each core. Returns the items and where each top byte's run starts
/// (`bounds[b]..bounds[b + 1]`).
fn sort_hashed<T, K>(
    parts: Vec<Vec<T>>,
    hash: impl Fn(&T) -> u64 + Sync,
    key: impl Fn(&T) -> K + Sync,
) -> (Vec<T>, [usize; 257])
where
    T: Copy + Default + Send + Sync,
    K: Ord,
{
    let top = |item: &T| (hash(item) >> 56) as usize;
    let top = &top;
    let counts: Vec<[usize; 256]> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                s.spawn(move || {
                    let mut c = [0usize; 256];
                    for item in part {
                        c[top(item)] += 1;
                    }
                    c
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sort worker panicked"))
            .collect()
    });
    let mut bounds = [0usize; 257];
    for b in 0..256 {
        bounds[b + 1] = bounds[b] + counts.iter().map(|c| c[b]).sum::<usize>();
    }
    let mut sorted = vec![T::default(); bounds[256]];
    // Each part gets its own slice of each run, so the parts are placed side by side.
    let mut slices: Vec<Vec<&mut [T]>> = parts.iter().map(|_| Vec::with_capacity(256)).collect();
    let mut rest: &mut [T] = &mut sorted;
    for b in 0..256 {
        for (p, c) in counts.iter().enumerate() {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(c[b]);
            slices[p].push(head);
            rest = tail;
        }
    }
    std::thread::scope(|s| {
        for (part, mut runs) in parts.iter().zip(slices) {
            s.spawn(move || {
                let mut cursor = [0usize; 256];
                for item in part {
                    let b = top(item);
                    runs[b][cursor[b]] = *item;
                    cursor[b] += 1;
                }
            });
        }
    });
    drop(parts);
    let (low, high) = sorted.split_at_mut(bounds[128]);
    let sort_runs = |part: &mut [T], bounds: &[usize]| {
        let base = bounds[0];
        for w in bounds.windows(2) {
            part[w[0] - base..w[1] - base].sort_unstable_by_key(&key);
        }
    };
    join(
        || sort_runs(low, &bounds[..=128]),
        || sort_runs(high, &bounds[128..]),
    );
    (sorted, bounds)
}

/// The accepted records' fingerprints, sorted: whether records were answered is found for all
/// of them at once by sorting their reverse tuples' fingerprints and walking both lists — reads
/// in order, where millions of lookups in a hash set each miss the cache.
struct Accepted {
    sorted: Vec<u64>,
    bounds: [usize; 257],
}

impl Accepted {
    fn build(parts: Vec<Vec<u64>>) -> Self {
        let (sorted, bounds) = sort_hashed(parts, |f| *f, |f| *f);
        Self { sorted, bounds }
    }

    /// Marks the records of `records` whose reverse tuple was accepted as answered.
    fn mark(&self, records: &mut [Rec]) {
        // The reverse tuples' fingerprints, in two parts so both cores place them.
        let middle = records.len() / 2;
        let records_ref = &*records;
        let parts = both(|half| {
            let range = if half == 0 {
                0..middle
            } else {
                middle..records_ref.len()
            };
            records_ref[range.clone()]
                .iter()
                .zip(range)
                .map(|(r, i)| (tuple(r.dst, r.src, r.dstport, r.srcport, r.protocol), i))
                .collect::<Vec<(u64, usize)>>()
        });
        let (queries, bounds) = sort_hashed(parts.into(), |q| q.0, |q| q.0);
        let found = both(|half| {
            let (b0, b1) = (half * 128, half * 128 + 128);
            let accepted = &self.sorted[self.bounds[b0]..self.bounds[b1]];
            let mut found = Vec::new();
            let mut j = 0;
            for &(f, i) in &queries[bounds[b0]..bounds[b1]] {
                while j < accepted.len() && accepted[j] < f {
                    j += 1;
                }
                if accepted.get(j) == Some(&f) {
                    found.push(i);
                }
            }
            found
        });
        // Through a small table of flags (it stays in the cache) rather than straight into the
        // records, which would be written in random order.
        let mut answered = vec![false; records.len()];
        for i in found.into_iter().flatten() {
            answered[i] = true;
        }
        for (r, a) in records.iter_mut().zip(answered) {
            r.answered = a;
        }
    }
}

/// Runs `f(0)` and `f(1)` on two threads.
fn both<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 2] {
    let (a, b) = join(|| f(0), || f(1));
    [a, b]
}

/// The hash of a group of records (up to three numbers).
fn group(a: u64, b: u64, c: u64) -> u64 {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..16].copy_from_slice(&b.to_le_bytes());
    bytes[16..].copy_from_slice(&c.to_le_bytes());
    xxh3_64(&bytes)
}

/// The items whose group (`key`, a hash) may weigh at least `min` in all: most groups of a busy
/// network are far below a detection's threshold, and sorting only the others is much cheaper
/// than sorting everything.
///
/// The weights are summed per slot of a table indexed by the group's hash (16 MB at most, so
/// it stays in the cache). A slot holds at least the weight of each group in it, so no group at
/// or over `min` is dropped; a light group that shares a slot with others may pass, and the
/// exact grouping that follows drops it. Built on both cores: each counts half of the slots,
/// then each keeps from half of the items.
fn crowded<T: Copy + Send + Sync>(
    parts: &[Vec<T>],
    min: u64,
    key: impl Fn(&T) -> u64 + Sync,
    weight: impl Fn(&T) -> u64 + Sync,
) -> Vec<T> {
    if min <= 1 {
        return parts.concat();
    }
    let items = parts.iter().map(Vec::len).sum::<usize>();
    let half_slots = (items.next_power_of_two() / 2).clamp(1 << 9, 1 << 21);
    let mask = half_slots as u64 - 1;
    let tables = both(|half| {
        let mut table = vec![0u32; half_slots];
        for item in parts.iter().flatten() {
            let h = key(item);
            if (h >> 63) as usize == half {
                let slot = &mut table[(h & mask) as usize];
                *slot = slot.saturating_add(u32::try_from(weight(item)).unwrap_or(u32::MAX));
            }
        }
        table
    });
    // A full slot may hold more than it shows: it always passes.
    let min = u32::try_from(min).unwrap_or(u32::MAX);
    let keep = |part: &[T]| -> Vec<T> {
        part.iter()
            .filter(|item| {
                let h = key(item);
                tables[(h >> 63) as usize][(h & mask) as usize] >= min
            })
            .copied()
            .collect()
    };
    let mut kept = Vec::new();
    for pair in parts.chunks(2) {
        let (a, b) = join(|| keep(&pair[0]), || pair.get(1).map(|p| keep(p)));
        kept.extend(a);
        kept.extend(b.unwrap_or_default());
    }
    kept
}

/// Totals of a group of records.
#[derive(Debug, Clone, Copy)]
struct Totals {
    records: u64,
    bytes: u64,
    first: i64,
    last: i64,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            records: 0,
            bytes: 0,
            first: i64::MAX,
            last: i64::MIN,
        }
    }
}

impl Totals {
    fn add(&mut self, bytes: u64, start: i64, end: i64) {
        self.records += 1;
        self.bytes += bytes;
        self.first = self.first.min(start);
        self.last = self.last.max(end);
    }

    fn merge(&mut self, o: &Totals) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

/// One record, as the detections that keep records need it.
#[derive(Debug, Clone, Copy, Default)]
struct Rec {
    interface: u64,
    src: Addr,
    dst: Addr,
    srcport: u16,
    dstport: u16,
    protocol: u8,
    rejected: bool,
    /// Whether an accepted record has the reverse tuple (set where it is needed).
    answered: bool,
    bytes: u64,
    start: i64,
    end: i64,
}

/// A sweep: one (initiator, port, protocol) with enough hosts that never answered or refused.
struct Sweep {
    src: Addr,
    port: u16,
    protocol: u8,
    totals: Totals,
    hosts: u64,
    unanswered: u64,
    refused: u64,
    destinations: Vec<Addr>,
}

/// The runs of equal `key` in `items` (sorted by it), as index ranges.
fn runs<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let k = key(&items[i]);
        let mut j = i + 1;
        while j < items.len() && key(&items[j]) == k {
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// One window of a source: its number, the destinations and the interfaces seen in it.
pub type WindowLists = (i64, Vec<String>, Vec<String>);

/// An exposed port's internet sources, totals and interfaces.
type Exposure = (BTreeSet<Addr>, Totals, BTreeSet<u64>);

/// Records with a listed address, per (source, destination).
#[derive(Debug, Default)]
struct Listed {
    ports: BTreeSet<u16>,
    totals: Totals,
    accepted: u64,
    interfaces: BTreeSet<u64>,
}

/// What the pass gathered.
pub struct Scan {
    names: Names,
    /// OK records in the range.
    pub records: u64,
    /// The first `start` and last `end` of those records.
    pub span: Option<(i64, i64)>,
    thresholds: Thresholds,
    /// Rejected records nobody answered (no accepted record with the reverse tuple).
    requests: Vec<Rec>,
    /// Requests in two halves (by the hash of their initiator, port and protocol), each sorted
    /// by that hash's top byte and then initiator, port, protocol and host.
    sweep: [Vec<Rec>; 2],
    /// SSH/RDP requests of the sources that may reach the brute-force threshold.
    brute: Vec<Rec>,
    /// Accepted outbound records to the internet of the sources that may have a window over
    /// the exfiltration threshold, sorted by source, interface, destination, port and window.
    exfiltration: Vec<Rec>,
    /// Accepted requests to the internet of the (source, destination, port) groups that may
    /// reach the beaconing threshold, sorted by source, destination, port and source port.
    beacons: Vec<Rec>,
    listed: Map<(Addr, Addr), Listed>,
    bad: BTreeMap<String, (String, String)>,
    exposed: Vec<Rec>,
}

/// The columns the pass reads.
const COLUMNS: &str =
    "interface_id, srcaddr, dstaddr, srcport, dstport, protocol, bytes, start, \"end\", action";

/// Reads the lake once for `needs`, records starting in `range` (and, for the other side of a
/// connection, [`SLACK`] seconds around it).
///
/// # Errors
/// [`crate::Error::Query`] when the lake cannot be read.
pub async fn scan(
    engine: &Engine,
    range: TimeRange,
    thresholds: &Thresholds,
    intel: &ThreatIntel,
    needs: &Needs,
) -> Result<Scan> {
    let filter = range_sql(&range, "", SLACK);
    let sql = format!("SELECT {COLUMNS} FROM flows WHERE log_status = 'OK'{filter}");
    // One task per partition of the plan: each decodes its files and folds its records into
    // its own state, on its own core; the states are merged at the end.
    let streams = engine.sql(&sql).await?.execute_stream_partitioned().await?;
    let context = Arc::new(Context {
        range,
        intel: intel.clone(),
        listed_v4: intel.v4_ranges(),
        needs: needs.clone(),
        brute_ports: Ports::of(&needs.brute_ports),
        sensitive: Ports::of(if needs.exposed {
            &thresholds.sensitive_ports
        } else {
            &[]
        }),
        thresholds: thresholds.clone(),
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let context = Arc::clone(&context);
            tokio::spawn(async move {
                let mut pass = Pass::new(context);
                let (mut reading, mut folding) = (Duration::ZERO, Duration::ZERO);
                loop {
                    let clock = Instant::now();
                    let Some(batch) = stream.next().await else {
                        break;
                    };
                    reading += clock.elapsed();
                    let clock = Instant::now();
                    pass.batch(&batch?)?;
                    folding += clock.elapsed();
                }
                tracing::debug!(?reading, ?folding, records = pass.records, "scan partition");
                Ok::<Pass, crate::Error>(pass)
            })
        })
        .collect();
    let mut passes = Vec::new();
    for task in tasks {
        passes.push(
            task.await
                .map_err(|e| crate::Error::Invalid(format!("scan task failed: {e}")))??,
        );
    }
    Ok(finish(context, passes))
}

/// What every partition's pass reads.
struct Context {
    range: TimeRange,
    intel: ThreatIntel,
    /// The list's IPv4 networks as sorted, disjoint ranges: most addresses are on no list, and
    /// this answers them without a lookup.
    listed_v4: Vec<(u32, u32)>,
    thresholds: Thresholds,
    needs: Needs,
    /// The brute-force detections' ports.
    brute_ports: Ports,
    /// The sensitive ports, when exposed ports are looked for.
    sensitive: Ports,
}

/// A set of ports, one bit each.
struct Ports(Vec<u64>);

impl Ports {
    fn of(ports: &[u16]) -> Self {
        let mut bits = vec![0u64; 1024];
        for p in ports {
            bits[usize::from(*p) / 64] |= 1 << (p % 64);
        }
        Self(bits)
    }

    fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }
}

/// The state of one partition's pass while batches arrive.
struct Pass {
    context: Arc<Context>,
    names: Names,
    listed_cache: Map<Addr, bool>,
    bad: BTreeMap<String, (String, String)>,
    accepted: Vec<u64>,
    records: u64,
    span: Option<(i64, i64)>,
    rejected: Vec<Rec>,
    sweep: Vec<Rec>,
    brute: Vec<Rec>,
    exfiltration: Vec<Rec>,
    beacons: Vec<Rec>,
    listed: Map<(Addr, Addr), Listed>,
    exposed: Vec<Rec>,
}

fn column(batch: &RecordBatch, i: usize, to: &DataType) -> Result<ArrayRef> {
    let c = batch.column(i);
    Ok(if c.data_type() == to {
        Arc::clone(c)
    } else {
        cast(c, to)?
    })
}

impl Pass {
    fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            names: Names::default(),
            listed_cache: Map::default(),
            bad: BTreeMap::new(),
            accepted: Vec::new(),
            records: 0,
            span: None,
            rejected: Vec::new(),
            sweep: Vec::new(),
            brute: Vec::new(),
            exfiltration: Vec::new(),
            beacons: Vec::new(),
            listed: Map::default(),
            exposed: Vec::new(),
        }
    }

    fn in_range(&self, start: i64) -> bool {
        let range = &self.context.range;
        range.start.is_none_or(|lo| start >= lo) && range.end.is_none_or(|hi| start < hi)
    }

    /// Whether `a` is a public address on the threat-intel list (looked up once per address).
    fn listed(&mut self, context: &Context, a: Addr) -> bool {
        if a & NAMED == 0 {
            let v4 = a as u32;
            if is_private_v4(v4) || !ThreatIntel::v4_listed(&context.listed_v4, v4) {
                return false;
            }
        }
        if let Some(known) = self.listed_cache.get(&a) {
            return *known;
        }
        let hit = match self.names.ip(a) {
            Some(ip) if !is_private(ip) => context.intel.lookup(ip).map(|(label, cidr)| {
                (
                    label.to_string(),
                    format!("{}/{}", cidr.network(), cidr.prefix()),
                )
            }),
            _ => None,
        };
        let listed = hit.is_some();
        if let Some(entry) = hit {
            self.bad.insert(self.names.text(a), entry);
        }
        self.listed_cache.insert(a, listed);
        listed
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let context = Arc::clone(&self.context);
        let view = DataType::Utf8View;
        let interfaces = column(batch, 0, &view)?;
        let srcs = column(batch, 1, &view)?;
        let dsts = column(batch, 2, &view)?;
        let srcports = column(batch, 3, &DataType::Int32)?;
        let dstports = column(batch, 4, &DataType::Int32)?;
        let protocols = column(batch, 5, &DataType::Int32)?;
        let bytes = column(batch, 6, &DataType::Int64)?;
        let starts = column(batch, 7, &DataType::Int64)?;
        let ends = column(batch, 8, &DataType::Int64)?;
        let actions = column(batch, 9, &view)?;
        let (interfaces, srcs, dsts, actions) = (
            interfaces.as_string_view(),
            srcs.as_string_view(),
            dsts.as_string_view(),
            actions.as_string_view(),
        );
        let (srcports, dstports, protocols) = (
            srcports.as_primitive::<Int32Type>(),
            dstports.as_primitive::<Int32Type>(),
            protocols.as_primitive::<Int32Type>(),
        );
        let (bytes, starts, ends) = (
            bytes.as_primitive::<Int64Type>(),
            starts.as_primitive::<Int64Type>(),
            ends.as_primitive::<Int64Type>(),
        );
        for i in 0..batch.num_rows() {
            if starts.is_null(i) {
                continue;
            }
            let start = starts.value(i);
            let in_range = self.in_range(start);
            let end = if ends.is_null(i) {
                start
            } else {
                ends.value(i)
            };
            if in_range {
                self.records += 1;
                self.span = Some(match self.span {
                    Some((lo, hi)) => (lo.min(start), hi.max(end)),
                    None => (start, end),
                });
            }
            if srcs.is_null(i)
                || dsts.is_null(i)
                || srcports.is_null(i)
                || dstports.is_null(i)
                || protocols.is_null(i)
                || actions.is_null(i)
            {
                continue;
            }
            let action = actions.value(i);
            let (accept, reject) = (action == "ACCEPT", action == "REJECT");
            let src = self.names.addr(srcs.value(i));
            let dst = self.names.addr(dsts.value(i));
            let (sp, dp) = (srcports.value(i) as u16, dstports.value(i) as u16);
            let protocol = protocols.value(i) as u8;
            if accept {
                self.accepted.push(tuple(src, dst, sp, dp, protocol));
            }
            if !in_range {
                continue;
            }
            let rec = Rec {
                interface: 0,
                src,
                dst,
                srcport: sp,
                dstport: dp,
                protocol,
                rejected: reject,
                answered: false,
                bytes: if bytes.is_null(i) {
                    0
                } else {
                    bytes.value(i).max(0) as u64
                },
                start,
                end,
            };
            let eni = (!interfaces.is_null(i)).then(|| interfaces.value(i));
            self.record(&context, rec, accept, eni);
        }
        Ok(())
    }

    /// Folds one record in; `eni` is its interface id, numbered only for the records whose
    /// detections show interfaces.
    fn record(&mut self, context: &Context, mut r: Rec, accept: bool, eni: Option<&str>) {
        let needs = &context.needs;
        let (request, outbound) = (r.srcport > r.dstport, r.srcport >= r.dstport);
        let rejected = r.rejected && needs.rejected;
        let sweep = request && needs.sweep;
        let brute = request && r.protocol == 6 && context.brute_ports.contains(r.dstport);
        let beacon =
            request && accept && needs.beaconing && self.names.private(r.dst) == Some(false);
        let exposed = request
            && accept
            && context.sensitive.contains(r.dstport)
            && self.names.private(r.src) == Some(false);
        let exfiltration = outbound
            && accept
            && needs.exfiltration
            && self.names.private(r.src) == Some(true)
            && self.names.private(r.dst) == Some(false);
        let listed =
            outbound && needs.intel && (self.listed(context, r.src) | self.listed(context, r.dst));
        if (rejected || brute || exposed || exfiltration || listed)
            && let Some(eni) = eni
        {
            r.interface = self.names.interface(eni);
        }
        for (keep, to) in [
            (rejected, &mut self.rejected),
            (sweep, &mut self.sweep),
            (brute, &mut self.brute),
            (beacon, &mut self.beacons),
            (exposed, &mut self.exposed),
            (exfiltration, &mut self.exfiltration),
        ] {
            if keep {
                to.push(r);
            }
        }
        if listed {
            let l = self.listed.entry((r.src, r.dst)).or_default();
            l.ports.insert(r.dstport);
            l.totals.add(r.bytes, r.start, r.end);
            l.accepted += u64::from(accept);
            l.interfaces.insert(r.interface);
        }
    }

    /// Adds another partition's small state (names, listed addresses, counts) to this one.
    fn absorb(&mut self, o: &mut Pass) {
        self.names.addrs.extend(std::mem::take(&mut o.names.addrs));
        self.names
            .interfaces
            .extend(std::mem::take(&mut o.names.interfaces));
        self.bad.append(&mut o.bad);
        self.records += o.records;
        self.span = match (self.span, o.span) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        for (key, l) in std::mem::take(&mut o.listed) {
            let m = self.listed.entry(key).or_default();
            m.ports.extend(l.ports);
            m.totals.merge(&l.totals);
            m.accepted += l.accepted;
            m.interfaces.extend(l.interfaces);
        }
    }
}

/// The kept records of every partition, by detection.
#[derive(Default)]
struct Parts {
    accepted: Vec<Vec<u64>>,
    rejected: Vec<Vec<Rec>>,
    sweep: Vec<Vec<Rec>>,
    brute: Vec<Vec<Rec>>,
    exfiltration: Vec<Vec<Rec>>,
    beacons: Vec<Vec<Rec>>,
    exposed: Vec<Vec<Rec>>,
}

/// Brings the partitions' passes together: the small state merged, the kept records sorted and
/// grouped (each partition's records placed straight from where its pass left them).
fn finish(context: Arc<Context>, passes: Vec<Pass>) -> Scan {
    let clock = Instant::now();
    let t = &context.thresholds;
    let window = t.exfiltration_window.max(1);
    let mut merged = Pass::new(Arc::clone(&context));
    let mut parts = Parts::default();
    for mut pass in passes {
        merged.absorb(&mut pass);
        parts.accepted.push(pass.accepted);
        parts.rejected.push(pass.rejected);
        parts.sweep.push(pass.sweep);
        parts.brute.push(pass.brute);
        parts.exfiltration.push(pass.exfiltration);
        parts.beacons.push(pass.beacons);
        parts.exposed.push(pass.exposed);
    }
    let needs_accepted = {
        let n = &context.needs;
        n.rejected || n.sweep || n.exposed
    };
    let accepted = Accepted::build(if needs_accepted {
        parts.accepted
    } else {
        Vec::new()
    });
    let built = clock.elapsed();
    // The rejected records nobody answered.
    let mut requests = parts.rejected.concat();
    accepted.mark(&mut requests);
    requests.retain(|r| !r.answered);
    // Requests by (initiator, port, protocol, host), each group within one half.
    let (mut sweep, bounds) = sort_hashed(
        parts.sweep,
        |r| group(r.src, u64::from(r.dstport), u64::from(r.protocol)),
        |r| (r.src, r.dstport, r.protocol, r.dst),
    );
    accepted.mark(&mut sweep);
    let sweep_halves = bounds[128];
    let mut exposed = parts.exposed.concat();
    accepted.mark(&mut exposed);
    drop(accepted);
    let sorted = clock.elapsed();
    // Only the groups that may reach a threshold are kept and sorted.
    let brute = crowded(
        &parts.brute,
        t.brute_force_attempts,
        |r| group(r.src, u64::from(r.dstport), 0),
        |_| 1,
    );
    let mut beacons = crowded(
        &parts.beacons,
        t.beacon_connections,
        |r| group(r.src, r.dst, u64::from(r.dstport)),
        |_| 1,
    );
    let mut exfiltration = {
        let heavy = crowded(
            &parts.exfiltration,
            t.exfiltration_bytes,
            |r| {
                group(
                    r.src ^ r.interface.rotate_left(17),
                    r.dst,
                    (u64::from(r.dstport) << 48) ^ (r.start / window) as u64,
                )
            },
            |r| r.bytes,
        );
        let sources: std::collections::HashSet<Addr> = heavy.iter().map(|r| r.src).collect();
        let mut kept = Vec::new();
        for part in parts.exfiltration {
            kept.extend(part.into_iter().filter(|r| sources.contains(&r.src)));
        }
        kept
    };
    join(
        || {
            exfiltration
                .sort_unstable_by_key(|r| (r.src, r.interface, r.dst, r.dstport, r.start / window))
        },
        || beacons.sort_unstable_by_key(|r| (r.src, r.dst, r.dstport, r.srcport)),
    );
    tracing::debug!(
        ?built,
        sorted = ?(sorted - built),
        kept = ?(clock.elapsed() - sorted),
        requests = requests.len(),
        sweep = sweep.len(),
        brute = brute.len(),
        beacons = beacons.len(),
        exfiltration = exfiltration.len(),
        "scan finished"
    );
    let second_half = sweep.split_off(sweep_halves);
    Scan {
        names: merged.names,
        records: merged.records,
        span: merged.span,
        thresholds: t.clone(),
        requests,
        sweep: [sweep, second_half],
        brute,
        exfiltration,
        beacons,
        listed: merged.listed,
        bad: merged.bad,
        exposed,
    }
}

/// Runs `a` and `b` on two threads.
fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let other = s.spawn(b);
        let first = a();
        (first, other.join().expect("scan worker panicked"))
    })
}

fn row(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

impl Scan {
    fn interfaces(&self, set: &BTreeSet<u64>) -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .filter(|i| **i != 0)
            .map(|i| self.names.interface_text(*i))
            .collect();
        v.sort();
        v
    }

    /// Vertical port scans: per (source, destination) refused on at least the threshold's
    /// number of distinct ports, rows `srcaddr, dstaddr, ports, records, bytes, first_seen,
    /// last_seen, interfaces, lo, hi` (the lowest and highest port), most ports first.
    pub fn vertical_scans(&self) -> Vec<Row> {
        let min = self.thresholds.vertical_scan_ports;
        let mut pairs = crowded(
            std::slice::from_ref(&self.requests),
            min,
            |r| group(r.src, r.dst, 0),
            |_| 1,
        );
        pairs.sort_unstable_by_key(|r| (r.src, r.dst, r.dstport));
        let mut found = Vec::new();
        for pair in runs(&pairs, |r| (r.src, r.dst)) {
            let rs = &pairs[pair];
            let ports = runs(rs, |r| r.dstport).len();
            if (ports as u64) < min {
                continue;
            }
            let mut totals = Totals::default();
            let mut interfaces = BTreeSet::new();
            for r in rs {
                totals.add(r.bytes, r.start, r.end);
                interfaces.insert(r.interface);
            }
            let (src, dst) = (self.names.text(rs[0].src), self.names.text(rs[0].dst));
            let (lo, hi) = (rs[0].dstport, rs[rs.len() - 1].dstport);
            found.push((ports, src, dst, totals, interfaces, lo, hi));
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2))));
        found
            .into_iter()
            .map(|(ports, src, dst, t, interfaces, lo, hi)| {
                row(json!({
                    "srcaddr": src,
                    "dstaddr": dst,
                    "ports": ports,
                    "records": t.records,
                    "bytes": t.bytes,
                    "first_seen": t.first,
                    "last_seen": t.last,
                    "interfaces": self.interfaces(&interfaces),
                    "lo": lo,
                    "hi": hi,
                }))
            })
            .collect()
    }

    /// Rejected requests per window of `window` seconds — rows `bucket, records, bytes,
    /// sources, first_seen, last_seen, interfaces` in window order.
    pub fn rejected_windows(&self, window: i64) -> Vec<Row> {
        let w = window.max(1);
        // Per window: its totals, distinct sources and interfaces. Windows are few; the
        // (window, source) pairs can be many and are counted by sorting.
        let mut slots: Map<i64, u32> = Map::default();
        let mut windows: Vec<(i64, Totals, u64, BTreeSet<u64>)> = Vec::new();
        let mut sources: Vec<(u32, Addr)> = Vec::with_capacity(self.requests.len());
        let mut interfaces: Map<(u32, u64), ()> = Map::default();
        for r in &self.requests {
            let bucket = r.start / w;
            let slot = *slots.entry(bucket).or_insert_with(|| {
                windows.push((bucket, Totals::default(), 0, BTreeSet::new()));
                (windows.len() - 1) as u32
            });
            windows[slot as usize].1.add(r.bytes, r.start, r.end);
            sources.push((slot, r.src));
            interfaces.insert((slot, r.interface), ());
        }
        sources.sort_unstable();
        sources.dedup();
        for (slot, _) in sources {
            windows[slot as usize].2 += 1;
        }
        for (slot, interface) in interfaces.into_keys() {
            windows[slot as usize].3.insert(interface);
        }
        windows.sort_unstable_by_key(|w| w.0);
        windows
            .into_iter()
            .map(|(bucket, t, sources, interfaces)| {
                row(json!({
                    "bucket": bucket,
                    "records": t.records,
                    "bytes": t.bytes,
                    "sources": sources,
                    "first_seen": t.first,
                    "last_seen": t.last,
                    "interfaces": self.interfaces(&interfaces),
                }))
            })
            .collect()
    }

    /// The `n` sources with the most rejected requests starting in `[first, last]` — rows
    /// `srcaddr, n`, most first.
    pub fn top_sources(&self, first: i64, last: i64, n: usize) -> Vec<Row> {
        let mut counts: Map<Addr, u64> = Map::default();
        for r in self
            .requests
            .iter()
            .filter(|r| r.start >= first && r.start <= last)
        {
            *counts.entry(r.src).or_default() += 1;
        }
        let mut top: Vec<(u64, String)> = counts
            .into_iter()
            .map(|(src, count)| (count, self.names.text(src)))
            .collect();
        top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        top.truncate(n);
        top.into_iter()
            .map(|(count, src)| row(json!({ "srcaddr": src, "n": count })))
            .collect()
    }

    /// Horizontal sweep: per (initiator, port, protocol) with at least the threshold's number
    /// of hosts that never answered or refused, the rows `srcaddr, dstport, protocol, hosts, unanswered,
    /// refused, records, bytes, first_seen, last_seen, destinations` (the unanswered hosts), most
    /// unanswered first, at most `limit`.
    pub fn sweep(&self, limit: usize) -> Vec<Row> {
        let min_hosts = self.thresholds.horizontal_sweep_hosts;
        // Each half holds whole groups, each sorted by (initiator, port, protocol, host): a run
        // is a group, a run within it a host. Only groups with enough requests can have enough
        // hosts.
        let [mut found, other] = both(|half| {
            let requests = &self.sweep[half];
            let mut out = Vec::new();
            for group in runs(requests, |r| (r.src, r.dstport, r.protocol)) {
                if (group.len() as u64) < min_hosts {
                    continue;
                }
                let rs = &requests[group];
                let mut sweep = Sweep {
                    src: rs[0].src,
                    port: rs[0].dstport,
                    protocol: rs[0].protocol,
                    totals: Totals::default(),
                    hosts: 0,
                    unanswered: 0,
                    refused: 0,
                    destinations: Vec::new(),
                };
                for host in runs(rs, |r| r.dst) {
                    let (mut refused, mut unanswered) = (false, false);
                    for r in &rs[host.clone()] {
                        sweep.totals.add(r.bytes, r.start, r.end);
                        refused |= r.rejected;
                        unanswered = unanswered || r.rejected || !r.answered;
                    }
                    sweep.hosts += 1;
                    sweep.refused += u64::from(refused);
                    if unanswered {
                        sweep.unanswered += 1;
                        sweep.destinations.push(rs[host.start].dst);
                    }
                }
                if sweep.unanswered >= min_hosts {
                    out.push(sweep);
                }
            }
            out
        });
        found.extend(other);
        let mut found: Vec<(String, Sweep)> = found
            .into_iter()
            .map(|f| (self.names.text(f.src), f))
            .collect();
        found.sort_by(|a, b| {
            b.1.unanswered
                .cmp(&a.1.unanswered)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| (a.1.port, a.1.protocol).cmp(&(b.1.port, b.1.protocol)))
        });
        found.truncate(limit);
        found
            .into_iter()
            .map(|(src, f)| {
                row(json!({
                    "srcaddr": src,
                    "dstport": f.port,
                    "protocol": f.protocol,
                    "hosts": f.hosts,
                    "unanswered": f.unanswered,
                    "refused": f.refused,
                    "records": f.totals.records,
                    "bytes": f.totals.bytes,
                    "first_seen": f.totals.first,
                    "last_seen": f.totals.last,
                    "destinations": f.destinations.iter().map(|d| self.names.text(*d)).collect::<Vec<_>>(),
                }))
            })
            .collect()
    }

    /// Brute force on `port`: busy windows (of the threshold's seconds) per source with at least
    /// the threshold's number of connections, three or more per host — rows `srcaddr, bucket, attempts, hosts,
    /// accepted, records, bytes, first_seen, last_seen` — and per busy source the destinations
    /// and interfaces of each window.
    pub fn brute_force(&self, port: u16) -> (Vec<Row>, BTreeMap<String, Vec<WindowLists>>) {
        // Two halves by source, side by side.
        let [(mut rows, mut lists), (more_rows, more_lists)] = both(|half| {
            let attempts: Vec<Rec> = self
                .brute
                .iter()
                .filter(|r| r.dstport == port && (r.src % 2) as usize == half)
                .copied()
                .collect();
            self.brute_force_of(attempts)
        });
        rows.extend(more_rows);
        lists.extend(more_lists);
        (rows, lists)
    }

    /// [`Scan::brute_force`] over the attempts of some sources.
    fn brute_force_of(
        &self,
        mut attempts_to_port: Vec<Rec>,
    ) -> (Vec<Row>, BTreeMap<String, Vec<WindowLists>>) {
        let w = self.thresholds.brute_force_window.max(1);
        let attempts = self.thresholds.brute_force_attempts;
        // Connections (source, destination, ephemeral port), sorted by source, window of their
        // first record and destination: a run is a host in a window, a run of those a window.
        attempts_to_port.sort_unstable_by_key(|r| (r.src, r.dst, r.srcport));
        let mut conns: Vec<(Addr, i64, Addr, Totals, bool)> =
            runs(&attempts_to_port, |r| (r.src, r.dst, r.srcport))
                .into_iter()
                .map(|c| {
                    let rs = &attempts_to_port[c];
                    let mut t = Totals::default();
                    for r in rs {
                        t.add(r.bytes, r.start, r.end);
                    }
                    let refused = rs.iter().any(|r| r.rejected);
                    (rs[0].src, t.first / w, rs[0].dst, t, refused)
                })
                .collect();
        conns.sort_unstable_by_key(|c| (c.0, c.1, c.2));
        let mut busy_sources = BTreeSet::new();
        let mut rows = Vec::new();
        for window in runs(&conns, |c| (c.0, c.1)) {
            let cs = &conns[window];
            let (src, bucket) = (cs[0].0, cs[0].1);
            let n = cs.len() as u64;
            let hosts = runs(cs, |c| c.2).len() as u64;
            let accepted = cs.iter().filter(|c| !c.4).count() as u64;
            let mut t = Totals::default();
            for c in cs {
                t.merge(&c.3);
            }
            if n >= attempts && n >= 3 * hosts {
                busy_sources.insert(src);
                rows.push(row(json!({
                    "srcaddr": self.names.text(src),
                    "bucket": bucket,
                    "attempts": n,
                    "hosts": hosts,
                    "accepted": accepted,
                    "records": t.records,
                    "bytes": t.bytes,
                    "first_seen": t.first,
                    "last_seen": t.last,
                })));
            }
        }
        let mut lists: Map<(Addr, i64), (BTreeSet<Addr>, BTreeSet<u64>)> = Map::default();
        for r in attempts_to_port
            .iter()
            .filter(|r| busy_sources.contains(&r.src))
        {
            let e = lists.entry((r.src, r.start / w)).or_default();
            e.0.insert(r.dst);
            e.1.insert(r.interface);
        }
        let mut out: BTreeMap<String, Vec<WindowLists>> = BTreeMap::new();
        for ((src, bucket), (dsts, enis)) in lists {
            out.entry(self.names.text(src)).or_default().push((
                bucket,
                dsts.iter().map(|d| self.names.text(*d)).collect(),
                self.interfaces(&enis),
            ));
        }
        (rows, out)
    }

    /// Exfiltration: every window of accepted outbound traffic from a private to a public
    /// address, per (interface, source, destination, port, window), of the sources that have a
    /// window of at least the threshold's bytes — rows `interface_id, srcaddr, dstaddr, dstport, bucket,
    /// bytes, records, first_seen, last_seen`.
    pub fn exfiltration(&self) -> Vec<Row> {
        let t = &self.thresholds;
        let (w, min_bytes) = (t.exfiltration_window.max(1), t.exfiltration_bytes);
        let mut rows = Vec::new();
        for source in runs(&self.exfiltration, |r| r.src) {
            let rs = &self.exfiltration[source];
            let windows: Vec<(&Rec, Totals)> =
                runs(rs, |r| (r.interface, r.dst, r.dstport, r.start / w))
                    .into_iter()
                    .map(|g| {
                        let mut t = Totals::default();
                        for r in &rs[g.clone()] {
                            t.add(r.bytes, r.start, r.end);
                        }
                        (&rs[g.start], t)
                    })
                    .collect();
            if !windows.iter().any(|(_, t)| t.bytes >= min_bytes) {
                continue;
            }
            for (r, t) in windows {
                rows.push(row(json!({
                    "interface_id": self.names.interface_text(r.interface),
                    "srcaddr": self.names.text(r.src),
                    "dstaddr": self.names.text(r.dst),
                    "dstport": r.dstport,
                    "bucket": r.start / w,
                    "bytes": t.bytes,
                    "records": t.records,
                    "first_seen": t.first,
                    "last_seen": t.last,
                })));
            }
        }
        rows
    }

    /// Beaconing: per (source, internet destination, port) with at least the threshold's
    /// connections (source ports), the rhythm of their starts — rows `srcaddr, dstaddr, dstport,
    /// connections, median_gap, mean_gap, sd_gap, regular_gaps, gaps, mean_bytes, bytes,
    /// records, first_seen, last_seen` for those whose median interval lies in
    /// the threshold's `[min, max]`; an interval differing from the median by at most the
    /// threshold's jitter (a share of the median) is regular.
    pub fn beaconing(&self) -> Vec<Row> {
        let t = &self.thresholds;
        let (connections, min, max, jitter) = (
            t.beacon_connections,
            t.beacon_min_interval,
            t.beacon_max_interval,
            t.beacon_jitter,
        );
        let mut rows = Vec::new();
        for group in runs(&self.beacons, |r| (r.src, r.dst, r.dstport)) {
            let rs = &self.beacons[group];
            // One connection per source port.
            let mut conns: Vec<Totals> = runs(rs, |r| r.srcport)
                .into_iter()
                .map(|c| {
                    let mut t = Totals::default();
                    for r in &rs[c] {
                        t.add(r.bytes, r.start, r.end);
                    }
                    t
                })
                .collect();
            if (conns.len() as u64) < connections {
                continue;
            }
            let (src, dst, port) = (rs[0].src, rs[0].dst, rs[0].dstport);
            conns.sort_by_key(|c| c.first);
            let gaps: Vec<i64> = conns.windows(2).map(|p| p[1].first - p[0].first).collect();
            if gaps.is_empty() {
                continue;
            }
            let mut sorted = gaps.clone();
            sorted.sort_unstable();
            let mid = sorted.len() / 2;
            // The median as the query engine gives it for integers: the lower middle plus half
            // the distance to the upper one, rounded down.
            let median = if sorted.len() % 2 == 1 {
                sorted[mid]
            } else {
                sorted[mid - 1] + (sorted[mid] - sorted[mid - 1]) / 2
            };
            let med = median as f64;
            if med < min || med > max {
                continue;
            }
            let regular: Vec<f64> = gaps
                .iter()
                .map(|g| *g as f64)
                .filter(|g| (g - med).abs() <= jitter * med)
                .collect();
            let n = regular.len() as f64;
            let mean = (n > 0.0).then(|| regular.iter().sum::<f64>() / n);
            let sd = (n > 1.0).then(|| {
                let m = mean.unwrap_or(0.0);
                (regular.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / (n - 1.0)).sqrt()
            });
            let bytes: u64 = conns.iter().map(|c| c.bytes).sum();
            rows.push(row(json!({
                "srcaddr": self.names.text(src),
                "dstaddr": self.names.text(dst),
                "dstport": port,
                "connections": conns.len(),
                "median_gap": median,
                "mean_gap": mean,
                "sd_gap": sd,
                "regular_gaps": regular.len(),
                "gaps": gaps.len(),
                "mean_bytes": bytes as f64 / conns.len() as f64,
                "bytes": bytes,
                "records": conns.iter().map(|c| c.records).sum::<u64>(),
                "first_seen": conns.iter().map(|c| c.first).min(),
                "last_seen": conns.iter().map(|c| c.last).max(),
            })));
        }
        rows
    }

    /// The listed addresses seen (address text -> list label, listed network).
    pub fn listed_addresses(&self) -> &BTreeMap<String, (String, String)> {
        &self.bad
    }

    /// Threat intel: per (source, destination) with a listed address among requests (source
    /// port not below destination port) — rows `srcaddr, dstaddr, ports, records, bytes,
    /// accepted, first_seen, last_seen, interfaces`.
    pub fn threat_intel(&self) -> Vec<Row> {
        self.listed
            .iter()
            .map(|((src, dst), l)| {
                row(json!({
                    "srcaddr": self.names.text(*src),
                    "dstaddr": self.names.text(*dst),
                    "ports": l.ports.iter().collect::<Vec<_>>(),
                    "records": l.totals.records,
                    "bytes": l.totals.bytes,
                    "accepted": l.accepted,
                    "first_seen": l.totals.first,
                    "last_seen": l.totals.last,
                    "interfaces": self.interfaces(&l.interfaces),
                }))
            })
            .collect()
    }

    /// Exposed sensitive ports: accepted requests from internet addresses that the host
    /// answered, per (destination, port) — rows `dstaddr, dstport, sources, records, bytes,
    /// first_seen, last_seen, srcs, interfaces`.
    pub fn exposed(&self) -> Vec<Row> {
        // (destination, port) -> sources, totals, interfaces
        let mut groups: BTreeMap<(Addr, u16), Exposure> = BTreeMap::new();
        for r in self.exposed.iter().filter(|r| r.answered) {
            let g = groups.entry((r.dst, r.dstport)).or_default();
            g.0.insert(r.src);
            g.1.add(r.bytes, r.start, r.end);
            g.2.insert(r.interface);
        }
        groups
            .into_iter()
            .map(|((dst, port), (srcs, t, enis))| {
                row(json!({
                    "dstaddr": self.names.text(dst),
                    "dstport": port,
                    "sources": srcs.len(),
                    "records": t.records,
                    "bytes": t.bytes,
                    "first_seen": t.first,
                    "last_seen": t.last,
                    "srcs": srcs.iter().map(|s| self.names.text(*s)).collect::<Vec<_>>(),
                    "interfaces": self.interfaces(&enis),
                }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_read_like_the_standard_parser() {
        for text in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.168.10.200",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "2001:db8::1",
            "-",
            "",
            "1.2.3.0400",
        ] {
            let std = text.parse::<Ipv4Addr>().ok().map(u32::from);
            assert_eq!(dotted_quad(text.as_bytes()), std, "{text:?}");
        }
        // Many texts made of digits and dots (and a few other bytes), valid or not.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789012345678901234..... a:";
        let mut valid = 0;
        for _ in 0..300_000 {
            let len = (next() % 18) as usize;
            let text: String = (0..len)
                .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                .collect();
            let std = text.parse::<Ipv4Addr>().ok().map(u32::from);
            valid += usize::from(std.is_some());
            assert_eq!(dotted_quad(text.as_bytes()), std, "{text:?}");
        }
        for _ in 0..100_000 {
            let a = Ipv4Addr::from(next() as u32 >> (next() % 32));
            assert_eq!(dotted_quad(a.to_string().as_bytes()), Some(u32::from(a)));
        }
        assert!(valid > 100, "{valid} valid texts drawn");
    }

    #[test]
    fn names_keep_text_and_classify_addresses() {
        let mut names = Names::default();
        let v4 = names.addr("10.1.2.3");
        let v6 = names.addr("2001:db8::7");
        let junk = names.addr("not-an-address");
        assert_eq!(v4, u64::from(u32::from(Ipv4Addr::new(10, 1, 2, 3))));
        assert_eq!(names.text(v4), "10.1.2.3");
        assert_eq!(names.text(v6), "2001:db8::7");
        assert_eq!(names.text(junk), "not-an-address");
        assert_eq!(names.private(v4), Some(true));
        let public = names.addr("198.51.100.1");
        assert_eq!(names.private(public), Some(false));
        assert_eq!(names.private(v6), Some(false));
        let unique_local = names.addr("fd00::1");
        assert_eq!(names.private(unique_local), Some(true));
        assert_eq!(names.private(junk), None);
        let eni = names.interface("eni-0abc");
        assert_eq!(names.interface_text(eni), "eni-0abc");
    }

    fn rec(src: Addr, dst: Addr, srcport: u16, dstport: u16, protocol: u8) -> Rec {
        Rec {
            interface: 0,
            src,
            dst,
            srcport,
            dstport,
            protocol,
            rejected: false,
            answered: false,
            bytes: 1,
            start: 0,
            end: 0,
        }
    }

    #[test]
    fn records_are_answered_by_accepted_reverse_tuples() {
        // Many fingerprints, so that every top byte has a run of them.
        let mut fingerprints: Vec<u64> = (0..50_000u64)
            .map(|i| tuple(i, i + 1, 40_000, 443, 6))
            .collect();
        fingerprints.push(tuple(9, 8, 53, 50_000, 17));
        let (first, second) = fingerprints.split_at(20_000);
        let accepted = Accepted::build(vec![first.to_vec(), second.to_vec()]);
        assert!(accepted.sorted.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(accepted.bounds[256], 50_001);
        let mut records = vec![
            rec(1, 0, 443, 40_000, 6),  // reply of an accepted request: answered
            rec(1, 0, 443, 40_000, 17), // other protocol: not
            rec(0, 1, 40_000, 443, 6),  // the accepted request itself: not its own reply
            rec(8, 9, 50_000, 53, 17),  // answered
            rec(8, 9, 50_001, 53, 17),  // other port: not
            rec(50_000, 49_999, 443, 40_000, 6), // the last one: answered
        ];
        accepted.mark(&mut records);
        let answered: Vec<bool> = records.iter().map(|r| r.answered).collect();
        assert_eq!(answered, [true, false, false, true, false, true]);
        let mut none: Vec<Rec> = Vec::new();
        Accepted::build(Vec::new()).mark(&mut none);
        let mut lonely = vec![rec(1, 0, 443, 40_000, 6)];
        Accepted::build(Vec::new()).mark(&mut lonely);
        assert!(!lonely[0].answered);
    }

    #[test]
    fn crowded_keeps_every_group_at_or_over_the_threshold() {
        // 3 000 groups of 1 to 12 items; the ones with at least 10 must all pass.
        let items: Vec<(u64, u64)> = (0..3_000u64)
            .flat_map(|g| (0..(g % 12 + 1)).map(move |i| (g, i)))
            .collect();
        let (a, b) = items.split_at(items.len() / 3);
        let parts = [a.to_vec(), b.to_vec()];
        let kept = crowded(&parts, 10, |(g, _)| group(*g, 0, 0), |_| 1);
        let mut kept_groups: BTreeMap<u64, usize> = BTreeMap::new();
        for (g, _) in &kept {
            *kept_groups.entry(*g).or_default() += 1;
        }
        for g in 0..3_000u64 {
            let size = (g % 12 + 1) as usize;
            if size >= 10 {
                assert_eq!(kept_groups.get(&g), Some(&size), "group {g}");
            }
        }
        // Most light groups are dropped (a few may share a slot with heavy ones).
        let light = kept_groups.keys().filter(|g| *g % 12 + 1 < 10).count();
        assert!(light < 2_250 / 4, "{light} of 2250 light groups kept");
        // By weight: one heavy item is enough.
        let kept = crowded(
            &parts,
            5_000,
            |(g, _)| group(*g, 0, 0),
            |(g, i)| {
                if *g == 7 && *i == 0 { 6_000 } else { 1 }
            },
        );
        assert_eq!(kept.iter().filter(|(g, _)| *g == 7).count(), 8);
        assert!(kept.len() < 8 + 50, "{} kept", kept.len());
        assert_eq!(crowded(&parts, 1, |(g, _)| *g, |_| 1).len(), items.len());
    }

    #[test]
    fn sorting_by_hash_keeps_groups_together() {
        assert_ne!(tuple(1, 2, 40_000, 443, 6), tuple(1, 2, 40_000, 443, 17));

        let items = [1, 1, 2, 3, 3, 3];
        assert_eq!(runs(&items, |x| *x), vec![0..2, 2..3, 3..6]);
        assert!(runs(&[] as &[u8], |x| *x).is_empty());

        // Parts sorted together: equal keys side by side, runs by the hash's top byte.
        let parts: Vec<Vec<(u64, u32)>> = vec![
            (0..1_000u64).map(|i| (i % 97, i as u32)).collect(),
            (0..700u64).map(|i| (i % 89, i as u32)).collect(),
            Vec::new(),
        ];
        let hash = |x: &(u64, u32)| group(x.0, 0, 0);
        let (sorted, bounds) = sort_hashed(parts, hash, |x| *x);
        assert_eq!(sorted.len(), 1_700);
        assert_eq!(bounds[256], 1_700);
        for b in 0..256 {
            let run = &sorted[bounds[b]..bounds[b + 1]];
            assert!(run.iter().all(|x| (hash(x) >> 56) as usize == b));
            assert!(run.windows(2).all(|w| w[0] <= w[1]));
        }
        let groups = runs(&sorted, |x| x.0);
        assert_eq!(groups.len(), 97);
    }
}
