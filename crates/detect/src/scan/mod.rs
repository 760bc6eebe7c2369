//! One pass over the lake that keeps the kinds of records the detections read.
//!
//! The pass knows kinds of records, not detections: each detection says which kinds it reads
//! ([`Wants`]) and the pass keeps the union. It reads the needed columns once — one task per
//! partition of the plan, each decoding its Parquet files and folding its records on its own
//! core — with addresses and interfaces as numbers ([`names`]), and keeps:
//!
//! - the fingerprints of all accepted records, to tell which records were answered (an accepted
//!   record with the reverse tuple) without a join, when a kind asks whether it was answered;
//! - the rejected requests nobody answered;
//! - the requests (source port above destination port), grouped by initiator, port and protocol;
//! - the TCP requests to some ports, the accepted outbound records from private to public
//!   addresses, the accepted requests to public addresses, per (source, destination) the records
//!   with an address on the threat-intel list, and the accepted requests from public addresses
//!   to some ports.
//!
//! Then, on both cores, each partition's records straight from where its pass left them
//! ([`group`]): the accepted fingerprints are sorted, and "answered?" is found for all the
//! records that ask at once, by sorting their reverse tuples' fingerprints and walking both
//! lists in order — on lakes far larger than the cache, millions of hash-set lookups each cost
//! a cache miss; the requests are sorted so that each (initiator, port, protocol) group is one
//! run. What each detection does with its records (thresholds, grouping) lives with the
//! detection, in [`crate::builtin`].
//!
//! A fingerprint is 64 bits of xxh3 over the tuple. A tuple taken for answered because another
//! tuple has its fingerprint is expected about `lookups × accepted records / 2^64` times: 10^-5
//! at 20 M records, 0.05 at a billion.

pub(crate) mod group;
pub(crate) mod names;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use flowscope_query::{Engine, TimeRange};
use flowscope_record::net::{is_private, is_private_v4};
use futures::StreamExt;

use crate::error::Result;
use crate::intel::ThreatIntel;
use group::{both, group, sort_hashed};
pub(crate) use names::{Addr, NAMED, Names};

/// Seconds around the time range in which the other side of a connection is looked for.
pub const SLACK: i64 = 900;

pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The kinds of records a detection reads from the pass (none: an empty `Wants`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Wants {
    /// Rejected requests nobody answered (no accepted record with the reverse tuple).
    pub rejected_requests: bool,
    /// Requests (source port above destination port), answered or not.
    pub requests: bool,
    /// TCP requests to these destination ports.
    pub tcp_requests_to: Vec<u16>,
    /// Accepted records from a private to a public address, source port not below the
    /// destination port.
    pub outbound_to_internet: bool,
    /// Accepted requests to public addresses.
    pub requests_to_internet: bool,
    /// Records (source port not below destination port) with a public address on the
    /// threat-intel list, per (source, destination).
    pub listed: bool,
    /// Accepted requests from public addresses to these ports, answered or not.
    pub requests_from_internet_to: Vec<u16>,
}

impl Wants {
    /// What any of `wants` reads.
    pub(crate) fn union<'a>(wants: impl IntoIterator<Item = &'a Wants>) -> Self {
        let mut all = Self::default();
        for w in wants {
            all.rejected_requests |= w.rejected_requests;
            all.requests |= w.requests;
            all.outbound_to_internet |= w.outbound_to_internet;
            all.requests_to_internet |= w.requests_to_internet;
            all.listed |= w.listed;
            for (to, from) in [
                (&mut all.tcp_requests_to, &w.tcp_requests_to),
                (
                    &mut all.requests_from_internet_to,
                    &w.requests_from_internet_to,
                ),
            ] {
                for p in from {
                    if !to.contains(p) {
                        to.push(*p);
                    }
                }
            }
        }
        all
    }

    /// Whether some kind needs to know which records were answered.
    fn answers(&self) -> bool {
        self.rejected_requests || self.requests || !self.requests_from_internet_to.is_empty()
    }
}

/// The fingerprint of one direction of a connection.
pub(crate) fn tuple(src: Addr, dst: Addr, srcport: u16, dstport: u16, protocol: u8) -> u64 {
    let ports = (u64::from(srcport) << 24) | (u64::from(dstport) << 8) | u64::from(protocol);
    group(src, dst, ports)
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

/// Totals of a group of records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub records: u64,
    pub bytes: u64,
    pub first: i64,
    pub last: i64,
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
    pub(crate) fn add(&mut self, bytes: u64, start: i64, end: i64) {
        self.records += 1;
        self.bytes += bytes;
        self.first = self.first.min(start);
        self.last = self.last.max(end);
    }

    pub(crate) fn merge(&mut self, o: &Totals) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

/// One record, as the detections that keep records need it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rec {
    pub interface: u64,
    pub src: Addr,
    pub dst: Addr,
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub rejected: bool,
    /// Whether an accepted record has the reverse tuple (set where it is needed).
    pub answered: bool,
    pub bytes: u64,
    pub start: i64,
    pub end: i64,
}

/// Records with a listed address, per (source, destination).
#[derive(Debug, Default, Clone)]
pub(crate) struct Listed {
    pub ports: BTreeSet<u16>,
    pub totals: Totals,
    pub accepted: u64,
    pub interfaces: BTreeSet<u64>,
}

/// What the pass kept, by kind ([`Wants`]); a kind nobody asked for is empty.
pub(crate) struct Gathered {
    /// The texts behind the numbered addresses and interfaces.
    pub names: Names,
    /// OK records in the range.
    pub records: u64,
    /// The first `start` and last `end` of those records.
    pub span: Option<(i64, i64)>,
    /// Rejected requests nobody answered.
    pub rejected_requests: Vec<Rec>,
    /// Requests in two halves (by the hash of their initiator, port and protocol), each sorted
    /// by that hash's top byte and then initiator, port, protocol and host: each group is one
    /// run, within one half. `answered` is set.
    pub requests: [Vec<Rec>; 2],
    /// TCP requests to the wanted ports, per partition of the pass.
    pub tcp_requests: Vec<Vec<Rec>>,
    /// Accepted outbound records from private to public addresses, per partition.
    pub outbound_to_internet: Vec<Vec<Rec>>,
    /// Accepted requests to public addresses, per partition.
    pub requests_to_internet: Vec<Vec<Rec>>,
    /// Records with a listed address, per (source, destination).
    pub listed: Map<(Addr, Addr), Listed>,
    /// The listed addresses seen: address text -> (list label, listed network).
    pub listed_addresses: BTreeMap<String, (String, String)>,
    /// Accepted requests from public addresses to the wanted ports; `answered` is set.
    pub requests_from_internet: Vec<Rec>,
}

impl Gathered {
    /// The texts of numbered interfaces, sorted (0, an unnumbered interface, left out).
    pub(crate) fn interfaces(&self, set: &BTreeSet<u64>) -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .filter(|i| **i != 0)
            .map(|i| self.names.interface_text(*i))
            .collect();
        v.sort();
        v
    }

    /// Frees the kinds of records that `still` does not read (the detections left to finish).
    pub(crate) fn keep_only(&mut self, still: &Wants) {
        if !still.rejected_requests {
            self.rejected_requests = Vec::new();
        }
        if !still.requests {
            self.requests = [Vec::new(), Vec::new()];
        }
        if still.tcp_requests_to.is_empty() {
            self.tcp_requests = Vec::new();
        }
        if !still.outbound_to_internet {
            self.outbound_to_internet = Vec::new();
        }
        if !still.requests_to_internet {
            self.requests_to_internet = Vec::new();
        }
        if !still.listed {
            self.listed = Map::default();
        }
        if still.requests_from_internet_to.is_empty() {
            self.requests_from_internet = Vec::new();
        }
    }
}

/// The columns the pass reads.
const COLUMNS: &str =
    "interface_id, srcaddr, dstaddr, srcport, dstport, protocol, bytes, start, \"end\", action";

/// Reads the lake once for `wants`, records starting in `range` (and, for the other side of a
/// connection, [`SLACK`] seconds around it).
///
/// # Errors
/// [`crate::Error::Query`] when the lake cannot be read.
pub(crate) async fn gather(
    engine: &Engine,
    range: TimeRange,
    intel: &ThreatIntel,
    wants: &Wants,
) -> Result<Gathered> {
    let filter = range.sql("", SLACK);
    let sql = format!("SELECT {COLUMNS} FROM flows WHERE log_status = 'OK'{filter}");
    let context = Context::new(range, intel, wants);
    let passes = fold_partitions(engine, &sql, {
        let context = Arc::clone(&context);
        move || Pass::new(Arc::clone(&context))
    })
    .await?;
    Ok(finish(&context, passes))
}

/// What a partition's task folds batches into.
trait Fold: Send + 'static {
    fn fold(&mut self, batch: &RecordBatch) -> Result<()>;
}

impl Fold for Pass {
    fn fold(&mut self, batch: &RecordBatch) -> Result<()> {
        self.batch(batch)
    }
}

/// Runs `sql` with one task per partition of the plan: each decodes its files and folds its
/// records into its own state (made by `new`), on its own core; the states are returned.
async fn fold_partitions<S: Fold>(
    engine: &Engine,
    sql: &str,
    new: impl Fn() -> S,
) -> Result<Vec<S>> {
    let streams = engine.sql(sql).await?.execute_stream_partitioned().await?;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let mut state = new();
            tokio::spawn(async move {
                let (mut reading, mut folding) = (Duration::ZERO, Duration::ZERO);
                loop {
                    let clock = Instant::now();
                    let Some(batch) = stream.next().await else {
                        break;
                    };
                    reading += clock.elapsed();
                    let clock = Instant::now();
                    state.fold(&batch?)?;
                    folding += clock.elapsed();
                }
                tracing::debug!(?reading, ?folding, "scan partition");
                Ok::<S, crate::Error>(state)
            })
        })
        .collect();
    let mut states = Vec::new();
    for task in tasks {
        states.push(
            task.await
                .map_err(|e| crate::Error::Invalid(format!("scan task failed: {e}")))??,
        );
    }
    Ok(states)
}

/// What every partition's pass reads.
struct Context {
    range: TimeRange,
    intel: ThreatIntel,
    /// The list's IPv4 networks as sorted, disjoint ranges: most addresses are on no list, and
    /// this answers them without a lookup.
    listed_v4: Vec<(u32, u32)>,
    wants: Wants,
    /// The ports of the wanted TCP requests.
    tcp_ports: Ports,
    /// The ports of the wanted requests from public addresses.
    from_internet_ports: Ports,
}

impl Context {
    fn new(range: TimeRange, intel: &ThreatIntel, wants: &Wants) -> Arc<Self> {
        Arc::new(Self {
            range,
            intel: intel.clone(),
            listed_v4: intel.v4_ranges(),
            wants: wants.clone(),
            tcp_ports: Ports::of(&wants.tcp_requests_to),
            from_internet_ports: Ports::of(&wants.requests_from_internet_to),
        })
    }
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

/// The state of one partition's pass while batches arrive (or of one hour's records, kept
/// between runs by [`Incremental`]).
#[derive(Clone)]
struct Pass {
    context: Arc<Context>,
    names: Names,
    listed_cache: Map<Addr, bool>,
    bad: BTreeMap<String, (String, String)>,
    accepted: Vec<u64>,
    records: u64,
    span: Option<(i64, i64)>,
    rejected: Vec<Rec>,
    requests: Vec<Rec>,
    tcp_requests: Vec<Rec>,
    outbound_to_internet: Vec<Rec>,
    requests_to_internet: Vec<Rec>,
    listed: Map<(Addr, Addr), Listed>,
    requests_from_internet: Vec<Rec>,
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
            requests: Vec::new(),
            tcp_requests: Vec::new(),
            outbound_to_internet: Vec::new(),
            requests_to_internet: Vec::new(),
            listed: Map::default(),
            requests_from_internet: Vec::new(),
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

    /// Folds one record in; `eni` is its interface id, numbered only for the kinds of records
    /// whose findings show interfaces.
    fn record(&mut self, context: &Context, mut r: Rec, accept: bool, eni: Option<&str>) {
        let wants = &context.wants;
        let (request, outbound) = (r.srcport > r.dstport, r.srcport >= r.dstport);
        let rejected = r.rejected && wants.rejected_requests;
        let any_request = request && wants.requests;
        let tcp = request && r.protocol == 6 && context.tcp_ports.contains(r.dstport);
        let to_internet = request
            && accept
            && wants.requests_to_internet
            && self.names.private(r.dst) == Some(false);
        let from_internet = request
            && accept
            && context.from_internet_ports.contains(r.dstport)
            && self.names.private(r.src) == Some(false);
        let out = outbound
            && accept
            && wants.outbound_to_internet
            && self.names.private(r.src) == Some(true)
            && self.names.private(r.dst) == Some(false);
        let listed =
            outbound && wants.listed && (self.listed(context, r.src) | self.listed(context, r.dst));
        if (rejected || tcp || from_internet || out || listed)
            && let Some(eni) = eni
        {
            r.interface = self.names.interface(eni);
        }
        for (keep, to) in [
            (rejected, &mut self.rejected),
            (any_request, &mut self.requests),
            (tcp, &mut self.tcp_requests),
            (to_internet, &mut self.requests_to_internet),
            (from_internet, &mut self.requests_from_internet),
            (out, &mut self.outbound_to_internet),
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
        self.names.absorb(&mut o.names);
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

/// Brings the partitions' passes together: the small state merged, the answered records marked
/// and the requests grouped (each partition's records placed straight from where its pass left
/// them).
fn finish(context: &Arc<Context>, passes: Vec<Pass>) -> Gathered {
    let clock = Instant::now();
    let mut merged = Pass::new(Arc::clone(context));
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut requests = Vec::new();
    let mut tcp_requests = Vec::new();
    let mut outbound_to_internet = Vec::new();
    let mut requests_to_internet = Vec::new();
    let mut from_internet = Vec::new();
    for mut pass in passes {
        merged.absorb(&mut pass);
        accepted.push(pass.accepted);
        rejected.push(pass.rejected);
        requests.push(pass.requests);
        tcp_requests.push(pass.tcp_requests);
        outbound_to_internet.push(pass.outbound_to_internet);
        requests_to_internet.push(pass.requests_to_internet);
        from_internet.push(pass.requests_from_internet);
    }
    let accepted = Accepted::build(if context.wants.answers() {
        accepted
    } else {
        Vec::new()
    });
    let built = clock.elapsed();
    let mut rejected_requests = rejected.concat();
    accepted.mark(&mut rejected_requests);
    rejected_requests.retain(|r| !r.answered);
    // Requests by (initiator, port, protocol, host), each group within one half.
    let (mut requests, bounds) = sort_hashed(
        requests,
        |r| group::group(r.src, u64::from(r.dstport), u64::from(r.protocol)),
        |r| (r.src, r.dstport, r.protocol, r.dst),
    );
    accepted.mark(&mut requests);
    let second_half = requests.split_off(bounds[128]);
    let mut requests_from_internet = from_internet.concat();
    accepted.mark(&mut requests_from_internet);
    drop(accepted);
    tracing::debug!(
        ?built,
        sorted = ?(clock.elapsed() - built),
        rejected_requests = rejected_requests.len(),
        requests = requests.len() + second_half.len(),
        "scan finished"
    );
    Gathered {
        names: merged.names,
        records: merged.records,
        span: merged.span,
        rejected_requests,
        requests: [requests, second_half],
        tcp_requests,
        outbound_to_internet,
        requests_to_internet,
        listed: merged.listed,
        listed_addresses: merged.bad,
        requests_from_internet,
    }
}

impl Pass {
    /// Adds all of another pass (records too) to this one.
    fn append(&mut self, mut o: Pass) {
        self.absorb(&mut o);
        self.accepted.append(&mut o.accepted);
        self.rejected.append(&mut o.rejected);
        self.requests.append(&mut o.requests);
        self.tcp_requests.append(&mut o.tcp_requests);
        self.outbound_to_internet
            .append(&mut o.outbound_to_internet);
        self.requests_to_internet
            .append(&mut o.requests_to_internet);
        self.requests_from_internet
            .append(&mut o.requests_from_internet);
    }

    /// About how much memory the pass holds, bytes.
    fn size(&self) -> usize {
        let recs = self.rejected.len()
            + self.requests.len()
            + self.tcp_requests.len()
            + self.outbound_to_internet.len()
            + self.requests_to_internet.len()
            + self.requests_from_internet.len();
        recs * std::mem::size_of::<Rec>()
            + self.accepted.len() * 8
            + self.listed.len() * 160
            + self.names.count() * 96
            + 1024
    }
}

/// The passes of one partition's records, one per hour of their `start`.
struct Hours {
    context: Arc<Context>,
    hours: BTreeMap<i64, Pass>,
}

impl Fold for Hours {
    fn fold(&mut self, batch: &RecordBatch) -> Result<()> {
        for (hour, part) in by_hour(batch)? {
            self.hours
                .entry(hour)
                .or_insert_with(|| Pass::new(Arc::clone(&self.context)))
                .batch(&part)?;
        }
        Ok(())
    }
}

/// The rows of `batch` by the hour of their `start` (rows without one left out). A batch of
/// one file's rows (sorted by `start`) is mostly one hour, passed on as it is.
fn by_hour(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
    let starts = column(batch, 7, &DataType::Int64)?;
    let starts = starts.as_primitive::<Int64Type>();
    let hour = |i: usize| starts.value(i).div_euclid(3_600) * 3_600;
    let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    let valid = (0..batch.num_rows()).filter(|i| starts.is_valid(*i));
    let first = valid.clone().next().map(hour);
    if valid.clone().all(|i| Some(hour(i)) == first) {
        return Ok(first.map(|h| (h, batch.clone())).into_iter().collect());
    }
    for i in valid {
        rows.entry(hour(i))
            .or_default()
            .push(u32::try_from(i).expect("a batch has fewer than 2^32 rows"));
    }
    rows.into_iter()
        .map(|(h, rows)| {
            let rows = datafusion::arrow::array::UInt32Array::from(rows);
            Ok((
                h,
                datafusion::arrow::compute::take_record_batch(batch, &rows)?,
            ))
        })
        .collect()
}

/// Most memory the passes kept between runs may hold, bytes; the hours past it are read again
/// on every run.
pub const INCREMENTAL_BUDGET: usize = 256 << 20;

/// What an incremental run read and what it took from earlier runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reread {
    /// Hours of records read from the lake by this run.
    pub hours_read: usize,
    /// Hours taken from earlier runs, unchanged since.
    pub hours_kept: usize,
    /// Records (log-status OK) read by this run.
    pub records_read: u64,
}

/// The pass kept between detection runs over one lake, one hour partition at a time, so a run
/// reads only the hours whose files changed since the last (new records, late records into an
/// old hour, a compaction or a prune) and the hours with records not yet committed. What the
/// detections see is the whole lake's pass, exactly as a run that reads everything would make
/// it: only the reading is saved. For one detection configuration (what the detections read,
/// and the threat-intel list); a run with another starts over.
pub struct Incremental {
    snapshots: flowscope_lake::snapshot::Snapshots,
    made_for: Option<MadeFor>,
    hours: BTreeMap<i64, Kept>,
    budget: usize,
}

/// What kept passes were made for: what the detections read, and the threat-intel list (its
/// IPv4 ranges and its size).
type MadeFor = (Wants, Vec<(u32, u32)>, usize);

/// One hour's pass and the files it was read from.
struct Kept {
    files: Vec<String>,
    pass: Pass,
}

impl Incremental {
    /// Nothing kept yet, for the lake at `root` (its files are those its commits name), with
    /// at most [`INCREMENTAL_BUDGET`] bytes kept.
    pub fn new(root: &std::path::Path) -> Self {
        Self::with_budget(root, INCREMENTAL_BUDGET)
    }

    /// As [`new`](Self::new), with at most `budget` bytes kept.
    pub fn with_budget(root: &std::path::Path, budget: usize) -> Self {
        Self {
            snapshots: flowscope_lake::snapshot::Snapshots::new(root),
            made_for: None,
            hours: BTreeMap::new(),
            budget,
        }
    }

    /// Hours kept.
    pub fn hours_kept(&self) -> usize {
        self.hours.len()
    }
}

/// The lake's whole pass for `wants`, reading only the hours `kept` does not hold unchanged
/// and the hours in `unsettled` (those with records not committed yet: the buffer is not in
/// the files, so an hour with buffered records is never kept from an earlier run).
pub(crate) async fn gather_incremental(
    engine: &Engine,
    intel: &ThreatIntel,
    wants: &Wants,
    kept: &mut Incremental,
    unsettled: &BTreeSet<i64>,
) -> Result<(Gathered, Reread)> {
    let made_for = Some((wants.clone(), intel.v4_ranges(), intel.len()));
    if kept.made_for != made_for {
        kept.hours.clear();
        kept.made_for = made_for;
    }
    // The files before anything is read: a commit while reading makes the hours it touched
    // differ from what is kept under these, so they are read again next time.
    let mut files: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for rel in kept
        .snapshots
        .current()
        .map_err(|e| crate::Error::Invalid(e.to_string()))?
        .iter()
    {
        if let Some(hour) = flowscope_lake::maintenance::partition_start(rel) {
            files.entry(hour).or_default().push(rel.clone());
        }
    }
    kept.hours
        .retain(|hour, k| files.get(hour) == Some(&k.files) && !unsettled.contains(hour));
    let context = Context::new(TimeRange::default(), intel, wants);
    let new = || Hours {
        context: Arc::clone(&context),
        hours: BTreeMap::new(),
    };
    let base = format!("SELECT {COLUMNS} FROM flows WHERE log_status = 'OK'");
    let mut read: Vec<Hours> = Vec::new();
    if kept.hours.is_empty() {
        read = fold_partitions(engine, &base, new).await?;
    } else {
        let stale: BTreeSet<i64> = files
            .keys()
            .filter(|h| !kept.hours.contains_key(h))
            .chain(unsettled)
            .copied()
            .collect();
        // One query per run of consecutive hours, each pruned to its folders.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for h in stale {
            match runs.last_mut() {
                Some((_, end)) if *end == h => *end = h + 3_600,
                _ => runs.push((h, h + 3_600)),
            }
        }
        for (from, to) in runs {
            let sql = format!("{base} AND start >= {from} AND start < {to}");
            read.extend(fold_partitions(engine, &sql, new).await?);
        }
    }
    // The partitions' passes of each hour together.
    let mut fresh: BTreeMap<i64, Pass> = BTreeMap::new();
    for part in read {
        for (hour, pass) in part.hours {
            match fresh.entry(hour) {
                std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().append(pass),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(pass);
                }
            }
        }
    }
    let reread = Reread {
        hours_read: fresh.len(),
        hours_kept: kept.hours.len(),
        records_read: fresh.values().map(|p| p.records).sum(),
    };
    // Two passes for `finish`, each half of the hours (both cores place and sort them).
    let mut two = [
        Pass::new(Arc::clone(&context)),
        Pass::new(Arc::clone(&context)),
    ];
    let mut i = 0;
    for k in kept.hours.values() {
        two[i % 2].append(k.pass.clone());
        i += 1;
    }
    let mut held: usize = kept.hours.values().map(|k| k.pass.size()).sum();
    for (hour, pass) in fresh {
        if let Some(f) = files.get(&hour)
            && !unsettled.contains(&hour)
            && held + pass.size() <= kept.budget
        {
            held += pass.size();
            two[i % 2].append(pass.clone());
            kept.hours.insert(
                hour,
                Kept {
                    files: f.clone(),
                    pass,
                },
            );
        } else {
            two[i % 2].append(pass);
        }
        i += 1;
    }
    Ok((finish(&context, two.into()), reread))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn fingerprints_tell_protocols_apart() {
        assert_ne!(tuple(1, 2, 40_000, 443, 6), tuple(1, 2, 40_000, 443, 17));
    }

    #[test]
    fn wants_add_up() {
        let a = Wants {
            tcp_requests_to: vec![22],
            rejected_requests: true,
            ..Wants::default()
        };
        let b = Wants {
            tcp_requests_to: vec![3389, 22],
            requests_from_internet_to: vec![22],
            ..Wants::default()
        };
        let all = Wants::union([&a, &b]);
        assert_eq!(all.tcp_requests_to, [22, 3389]);
        assert!(all.rejected_requests && !all.requests && all.answers());
        assert!(!a.answers() || a.rejected_requests);
        assert_eq!(Wants::union([]), Wants::default());
        assert!(!Wants::default().answers());
    }
}
