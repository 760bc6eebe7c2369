//! One pass over the lake that gathers what the built-in detections need.
//!
//! Each detection used to scan `flows` with its own GROUP BY; on lakes with millions of distinct
//! connections those group-bys (string keys, one hash table each) cost most of the run. The pass
//! reads the needed columns once — one task per partition of the plan, each decoding its Parquet
//! files and folding its records on its own core — and keeps per detection only what it needs,
//! with addresses and interfaces as numbers:
//!
//! - the fingerprints of all accepted records, so "was this answered?" (an accepted record with the
//!   reverse tuple) is a set lookup instead of a join;
//! - the rejected records (the candidates for rejected requests);
//! - the requests (source port above destination port), for the sweep;
//! - the SSH/RDP requests, the accepted outbound records to the internet (exfiltration), the
//!   accepted requests to the internet (beaconing), per (source, destination) the records with a
//!   listed address, and the accepted requests from the internet to sensitive ports.
//!
//! The partitions' states are merged, the kept records sorted on both cores, and each detection
//! groups its runs. What comes out is the same rows the detections' SQL used to return, so the
//! findings, their summaries and the SQL that shows their records are unchanged.
//!
//! A fingerprint is 64 bits of xxh3 over the tuple. A tuple taken for answered because another
//! tuple has its fingerprint is expected about `lookups × accepted records / 2^64` times: 10^-5
//! at 20 M records, 0.05 at a billion.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
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
    let mut b = [0u8; 21];
    b[..8].copy_from_slice(&src.to_le_bytes());
    b[8..16].copy_from_slice(&dst.to_le_bytes());
    b[16..18].copy_from_slice(&srcport.to_le_bytes());
    b[18..20].copy_from_slice(&dstport.to_le_bytes());
    b[20] = protocol;
    xxh3_64(&b)
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FingerprintSet = std::collections::HashSet<u64, BuildHasherDefault<Identity>>;

/// The accepted records' fingerprints, in two halves (by the top bit) built side by side.
struct Accepted {
    halves: [FingerprintSet; 2],
}

impl Accepted {
    fn build(fingerprints: Vec<u64>) -> Self {
        let fingerprints = &fingerprints;
        let halves = both(|half| {
            let mut set = FingerprintSet::with_capacity_and_hasher(
                fingerprints.len() / 2 + 1,
                BuildHasherDefault::default(),
            );
            set.extend(
                fingerprints
                    .iter()
                    .copied()
                    .filter(|f| (f >> 63) as usize == half),
            );
            set
        });
        Self { halves }
    }

    fn contains(&self, fingerprint: u64) -> bool {
        self.halves[(fingerprint >> 63) as usize].contains(&fingerprint)
    }
}

/// Runs `f(0)` and `f(1)` on two threads.
fn both<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 2] {
    let (a, b) = join(|| f(0), || f(1));
    [a, b]
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
#[derive(Debug, Clone, Copy)]
struct Rec {
    interface: u64,
    src: Addr,
    dst: Addr,
    srcport: u16,
    dstport: u16,
    protocol: u8,
    rejected: bool,
    packets: i64,
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
    accepted: Accepted,
    /// OK records in the range.
    pub records: u64,
    /// The first `start` and last `end` of those records.
    pub span: Option<(i64, i64)>,
    rejected: Vec<Rec>,
    /// Requests, in two halves (by the initiator's parity), each sorted by initiator, port,
    /// protocol and host.
    sweep: [Vec<Rec>; 2],
    brute: Vec<Rec>,
    /// Accepted outbound records to the internet, sorted by source, interface, destination,
    /// port and window.
    exfiltration: Vec<Rec>,
    window: i64,
    /// Accepted requests to the internet, sorted by source, destination, port and source port.
    beacons: Vec<Rec>,
    listed: Map<(Addr, Addr), Listed>,
    bad: BTreeMap<String, (String, String)>,
    exposed: Vec<Rec>,
}

/// The columns the pass reads.
const COLUMNS: &str = "interface_id, srcaddr, dstaddr, srcport, dstport, protocol, packets, bytes, start, \"end\", action";

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
        needs: needs.clone(),
        sensitive: thresholds.sensitive_ports.clone(),
        window: thresholds.exfiltration_window.max(1),
    });
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let context = Arc::clone(&context);
            tokio::spawn(async move {
                let mut pass = Pass::new(context);
                while let Some(batch) = stream.next().await {
                    pass.batch(&batch?)?;
                }
                Ok::<Pass, crate::Error>(pass)
            })
        })
        .collect();
    let mut merged: Option<Pass> = None;
    for task in tasks {
        let pass = task
            .await
            .map_err(|e| crate::Error::Invalid(format!("scan task failed: {e}")))??;
        merged = Some(match merged {
            Some(m) => m.merge(pass),
            None => pass,
        });
    }
    Ok(merged.unwrap_or_else(|| Pass::new(context)).finish())
}

/// What every partition's pass reads.
struct Context {
    range: TimeRange,
    intel: ThreatIntel,
    needs: Needs,
    sensitive: Vec<u16>,
    window: i64,
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
        if a & NAMED == 0 && is_private_v4(a as u32) {
            return false;
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
        let packets = column(batch, 6, &DataType::Int64)?;
        let bytes = column(batch, 7, &DataType::Int64)?;
        let starts = column(batch, 8, &DataType::Int64)?;
        let ends = column(batch, 9, &DataType::Int64)?;
        let actions = column(batch, 10, &view)?;
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
        let (packets, bytes, starts, ends) = (
            packets.as_primitive::<Int64Type>(),
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
                packets: if packets.is_null(i) {
                    0
                } else {
                    packets.value(i)
                },
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

    /// Folds one record in; `eni` is its interface id, numbered only if the record is kept.
    fn record(&mut self, context: &Context, mut r: Rec, accept: bool, eni: Option<&str>) {
        let needs = &context.needs;
        let keeps = (r.rejected && needs.rejected)
            || (r.srcport > r.dstport
                && (needs.brute_ports.contains(&r.dstport)
                    || (needs.exposed && context.sensitive.contains(&r.dstport))))
            || (r.srcport >= r.dstport && (needs.exfiltration || needs.intel));
        if keeps && let Some(eni) = eni {
            r.interface = self.names.interface(eni);
        }
        if r.rejected && needs.rejected {
            self.rejected.push(r);
        }
        if r.srcport > r.dstport {
            if needs.sweep {
                self.sweep.push(r);
            }
            if r.protocol == 6 && needs.brute_ports.contains(&r.dstport) {
                self.brute.push(r);
            }
            if accept && needs.beaconing && self.names.private(r.dst) == Some(false) {
                self.beacons.push(r);
            }
            if accept
                && needs.exposed
                && context.sensitive.contains(&r.dstport)
                && self.names.private(r.src) == Some(false)
            {
                self.exposed.push(r);
            }
        }
        if r.srcport >= r.dstport {
            if accept
                && needs.exfiltration
                && self.names.private(r.src) == Some(true)
                && self.names.private(r.dst) == Some(false)
            {
                self.exfiltration.push(r);
            }
            if needs.intel && (self.listed(context, r.src) | self.listed(context, r.dst)) {
                let l = self.listed.entry((r.src, r.dst)).or_default();
                l.ports.insert(r.dstport);
                l.totals.add(r.bytes, r.start, r.end);
                l.accepted += u64::from(accept);
                l.interfaces.insert(r.interface);
            }
        }
    }

    /// Adds another partition's state to this one.
    fn merge(mut self, o: Pass) -> Pass {
        self.names.addrs.extend(o.names.addrs);
        self.names.interfaces.extend(o.names.interfaces);
        self.bad.extend(o.bad);
        append(&mut self.accepted, o.accepted);
        self.records += o.records;
        self.span = match (self.span, o.span) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
        append(&mut self.rejected, o.rejected);
        append(&mut self.sweep, o.sweep);
        append(&mut self.brute, o.brute);
        append(&mut self.exfiltration, o.exfiltration);
        append(&mut self.beacons, o.beacons);
        for (key, l) in o.listed {
            let m = self.listed.entry(key).or_default();
            m.ports.extend(l.ports);
            m.totals.merge(&l.totals);
            m.accepted += l.accepted;
            m.interfaces.extend(l.interfaces);
        }
        append(&mut self.exposed, o.exposed);
        self
    }

    fn finish(self) -> Scan {
        let window = self.context.window;
        let needs_accepted = {
            let n = &self.context.needs;
            n.rejected || n.sweep || n.exposed
        };
        let (mut sweep, mut exfiltration, mut beacons) =
            (self.sweep, self.exfiltration, self.beacons);
        // Sort what is grouped later, on both cores: the sweep's requests in two halves by
        // initiator, the exfiltration and beaconing records side by side.
        let odd = partition(&mut sweep, |r| r.src % 2 == 0);
        let mut odd_half = sweep.split_off(odd);
        let sweep_key = |r: &Rec| (r.src, r.dstport, r.protocol, r.dst);
        join(
            || sweep.sort_unstable_by_key(sweep_key),
            || odd_half.sort_unstable_by_key(sweep_key),
        );
        join(
            || {
                exfiltration.sort_unstable_by_key(|r| {
                    (r.src, r.interface, r.dst, r.dstport, r.start / window)
                })
            },
            || beacons.sort_unstable_by_key(|r| (r.src, r.dst, r.dstport, r.srcport)),
        );
        Scan {
            names: self.names,
            accepted: Accepted::build(if needs_accepted {
                self.accepted
            } else {
                Vec::new()
            }),
            records: self.records,
            span: self.span,
            rejected: self.rejected,
            sweep: [sweep, odd_half],
            brute: self.brute,
            exfiltration,
            window,
            beacons,
            listed: self.listed,
            bad: self.bad,
            exposed: self.exposed,
        }
    }
}

/// Appends `more` to `to`, copying the shorter of the two.
fn append<T>(to: &mut Vec<T>, mut more: Vec<T>) {
    if more.len() > to.len() {
        std::mem::swap(to, &mut more);
    }
    to.append(&mut more);
}

/// Moves the items for which `first` holds to the front; returns how many there are.
fn partition<T>(items: &mut [T], first: impl Fn(&T) -> bool) -> usize {
    let mut n = 0;
    for i in 0..items.len() {
        if first(&items[i]) {
            items.swap(n, i);
            n += 1;
        }
    }
    n
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
    fn answered(&self, r: &Rec) -> bool {
        self.accepted
            .contains(tuple(r.dst, r.src, r.dstport, r.srcport, r.protocol))
    }

    fn interfaces(&self, set: &BTreeSet<u64>) -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .filter(|i| **i != 0)
            .map(|i| self.names.interface_text(*i))
            .collect();
        v.sort();
        v
    }

    /// The rejected records nobody answered, as a batch with the columns of
    /// [`crate::detect::REJECTED_REQUESTS`].
    ///
    /// # Errors
    /// [`crate::Error::Query`] when the batch cannot be built.
    pub fn rejected_requests(&self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("interface_id", DataType::Utf8View, true),
            Field::new("srcaddr", DataType::Utf8View, true),
            Field::new("dstaddr", DataType::Utf8View, true),
            Field::new("srcport", DataType::Int32, true),
            Field::new("dstport", DataType::Int32, true),
            Field::new("protocol", DataType::Int32, true),
            Field::new("packets", DataType::Int64, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("start", DataType::Int64, true),
            Field::new("end", DataType::Int64, true),
        ]));
        let middle = self.rejected.len() / 2;
        let halves = [&self.rejected[..middle], &self.rejected[middle..]];
        let [a, b] = both(|half| self.request_batches(halves[half], &schema));
        let mut batches = a?;
        batches.extend(b?);
        Ok((schema, batches))
    }

    fn request_batches(&self, rejected: &[Rec], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let requests: Vec<&Rec> = rejected.iter().filter(|r| !self.answered(r)).collect();
        for chunk in requests.chunks(65_536) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringViewArray::from_iter_values(
                    chunk.iter().map(|r| self.names.interface_text(r.interface)),
                )),
                Arc::new(StringViewArray::from_iter_values(
                    chunk.iter().map(|r| self.names.text(r.src)),
                )),
                Arc::new(StringViewArray::from_iter_values(
                    chunk.iter().map(|r| self.names.text(r.dst)),
                )),
                Arc::new(Int32Array::from_iter_values(
                    chunk.iter().map(|r| i32::from(r.srcport)),
                )),
                Arc::new(Int32Array::from_iter_values(
                    chunk.iter().map(|r| i32::from(r.dstport)),
                )),
                Arc::new(Int32Array::from_iter_values(
                    chunk.iter().map(|r| i32::from(r.protocol)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    chunk.iter().map(|r| r.packets),
                )),
                Arc::new(Int64Array::from_iter_values(
                    chunk.iter().map(|r| r.bytes as i64),
                )),
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.start))),
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.end))),
            ];
            batches.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        }
        Ok(batches)
    }

    /// Horizontal sweep: per (initiator, port, protocol) with at least `min_hosts` hosts that
    /// never answered or refused, the rows `srcaddr, dstport, protocol, hosts, unanswered,
    /// refused, records, bytes, first_seen, last_seen, destinations` (the unanswered hosts), most
    /// unanswered first, at most `limit`.
    pub fn sweep(&self, min_hosts: u64, limit: usize) -> Vec<Row> {
        // Each half is sorted by (initiator, port, protocol, host): a run is a group, a run
        // within it a host. Only groups with enough requests can have enough hosts, and a host
        // already unanswered needs no more lookups.
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
                        unanswered = unanswered || r.rejected || !self.answered(r);
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

    /// Brute force on `port`: busy windows of `window` seconds per source with at least
    /// `attempts` connections, three or more per host — rows `srcaddr, bucket, attempts, hosts,
    /// accepted, records, bytes, first_seen, last_seen` — and per busy source the destinations
    /// and interfaces of each window.
    pub fn brute_force(
        &self,
        port: u16,
        window: i64,
        attempts: u64,
    ) -> (Vec<Row>, BTreeMap<String, Vec<WindowLists>>) {
        let w = window.max(1);
        // Connections (source, destination, ephemeral port).
        let mut conns: Map<(Addr, Addr, u16), (Totals, bool)> = Map::default();
        for r in self.brute.iter().filter(|r| r.dstport == port) {
            let c = conns.entry((r.src, r.dst, r.srcport)).or_default();
            c.0.add(r.bytes, r.start, r.end);
            c.1 |= r.rejected;
        }
        // Hosts per window: attempts, accepted, totals.
        let mut hosts: Map<(Addr, i64, Addr), (u64, u64, Totals)> = Map::default();
        for ((src, dst, _), (t, refused)) in &conns {
            let h = hosts.entry((*src, t.first / w, *dst)).or_default();
            h.0 += 1;
            h.1 += u64::from(!refused);
            h.2.merge(t);
        }
        let mut windows: Map<(Addr, i64), (u64, u64, u64, Totals)> = Map::default();
        for ((src, bucket, _), (n, accepted, t)) in &hosts {
            let e = windows.entry((*src, *bucket)).or_default();
            e.0 += n;
            e.1 += 1;
            e.2 += accepted;
            e.3.merge(t);
        }
        let mut busy_sources = BTreeSet::new();
        let mut rows = Vec::new();
        for ((src, bucket), (n, hosts, accepted, t)) in windows {
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
        for r in self
            .brute
            .iter()
            .filter(|r| r.dstport == port && busy_sources.contains(&r.src))
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
    /// window of at least `min_bytes` — rows `interface_id, srcaddr, dstaddr, dstport, bucket,
    /// bytes, records, first_seen, last_seen`.
    pub fn exfiltration(&self, min_bytes: u64) -> Vec<Row> {
        let w = self.window;
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

    /// Beaconing: per (source, internet destination, port) with at least `connections`
    /// connections (source ports), the rhythm of their starts — rows `srcaddr, dstaddr, dstport,
    /// connections, median_gap, mean_gap, sd_gap, regular_gaps, gaps, mean_bytes, bytes,
    /// records, first_seen, last_seen` for those whose median interval lies in
    /// `[min, max]`. `jitter` is the share of the median an interval may differ by and still be
    /// regular.
    pub fn beaconing(&self, connections: u64, min: f64, max: f64, jitter: f64) -> Vec<Row> {
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
        for r in self.exposed.iter().filter(|r| self.answered(r)) {
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

    #[test]
    fn fingerprints_answer_membership_and_runs_split_groups() {
        let a = tuple(1, 2, 40_000, 443, 6);
        let accepted = Accepted::build(vec![a, tuple(3, 4, 5, 6, 17)]);
        assert!(accepted.contains(a));
        assert!(!accepted.contains(tuple(2, 1, 443, 40_000, 6)));
        assert_ne!(a, tuple(1, 2, 40_000, 443, 17));

        let items = [1, 1, 2, 3, 3, 3];
        assert_eq!(runs(&items, |x| *x), vec![0..2, 2..3, 3..6]);
        assert!(runs(&[] as &[u8], |x| *x).is_empty());

        let mut v = vec![1, 2, 3, 4, 5, 6, 7];
        let n = partition(&mut v, |x| x % 2 == 0);
        assert_eq!(n, 3);
        assert!(v[..n].iter().all(|x| x % 2 == 0));
        assert!(v[n..].iter().all(|x| x % 2 == 1));

        let mut to = vec![1];
        append(&mut to, vec![2, 3]);
        assert_eq!(to.len(), 3);
        assert!(to.contains(&1));
    }
}
