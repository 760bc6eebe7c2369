//! Security group connection tracking, as the EC2 User Guide's *Amazon EC2 security group
//! connection tracking* page describes it: a packet the rules allow opens a tracked connection,
//! whose replies pass the groups whatever their rules, until the connection closes or has been
//! idle for longer than its protocol's timeout; after that, a packet is judged afresh by the rules.
//!
//! What AWS documents, and what is assumed where it gives no value (docs/simulate.md lists both):
//!
//! | protocol | state | idle timeout | source |
//! |---|---|---|---|
//! | TCP | established (the other side answered) | `tcp_established_timeout`, default 432,000 s | API `ConnectionTrackingSpecification` |
//! | TCP | opening (no answer yet) | 120 s | assumed (Linux conntrack's `SYN_SENT`) |
//! | TCP | closed by a FIN each way | 120 s grace | assumed (Linux conntrack's `TIME_WAIT`) |
//! | TCP | reset (RST) | 10 s grace | assumed (Linux conntrack's `CLOSE`) |
//! | UDP | one direction, or one request-response | `udp_timeout`, default 30 s | API |
//! | UDP | more than one request-response (a stream) | `udp_stream_timeout`, default 180 s | API |
//! | ICMP, ICMPv6 | any | 30 s | assumed (Linux conntrack's ICMP timeout) |
//! | other | any, by addresses and protocol only | 600 s | user guide |

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::rules::{Direction, Packet};

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An interface's idle timeouts, in seconds — the EC2 API's `ConnectionTrackingSpecification`
/// (`TcpEstablishedTimeout`, `UdpStreamTimeout`, `UdpTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Idle TCP connections in an established state.
    pub tcp_established: u32,
    /// Idle UDP flows that have seen more than one request-response transaction.
    pub udp_stream: u32,
    /// Idle UDP flows seen in one direction only, or in one request-response transaction.
    pub udp: u32,
}

impl Timeouts {
    /// What `tcp_established` may be: "Min: 60 seconds. Max: 432000 seconds (5 days)".
    pub const TCP_ESTABLISHED: RangeInclusive<u32> = 60..=432_000;
    /// What `udp_stream` may be: "Min: 60 seconds. Max: 180 seconds (3 minutes)".
    pub const UDP_STREAM: RangeInclusive<u32> = 60..=180;
    /// What `udp` may be: "Min: 30 seconds. Max: 60 seconds".
    pub const UDP: RangeInclusive<u32> = 30..=60;
}

impl Default for Timeouts {
    /// AWS's defaults: 432,000 s, 180 s and 30 s.
    fn default() -> Self {
        Self {
            tcp_established: 432_000,
            udp_stream: 180,
            udp: 30,
        }
    }
}

/// A TCP connection nobody has answered yet is forgotten after this long idle (assumed).
pub const TCP_OPENING_TIMEOUT: i64 = 120;
/// A TCP connection closed by a FIN each way passes its last packets (the final ACK, a
/// retransmitted FIN) for this long (assumed).
pub const TCP_FIN_GRACE: i64 = 120;
/// A TCP connection reset by an RST passes stragglers for this long (assumed).
pub const TCP_RST_GRACE: i64 = 10;
/// ICMP and ICMPv6 "connections" (an echo and its reply, say) are forgotten after this long
/// idle (assumed).
pub const ICMP_TIMEOUT: i64 = 30;
/// Other protocols: "If your instance sends traffic to another host, and the host sends the same
/// type of traffic to your instance within 600 seconds, the security group for your instance
/// accepts it regardless of inbound security group rules."
pub const OTHER_TIMEOUT: i64 = 600;

/// At most this many connections are tracked per interface; past it (after forgetting the
/// expired ones), a new connection is let through by its rule but not tracked, so its replies
/// face the rules. (AWS too limits the connections tracked per instance: its
/// `conntrack_allowance_exceeded` metric counts what that drops.)
pub const MAX_TRACKED: usize = 1 << 20;

/// When a packet passed, and its TCP flags (0 for other protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// Unix seconds.
    pub time: i64,
    /// The TCP flags byte as captured.
    pub tcp_flags: u8,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// A connection as the table keys it: the interface's side first. "For protocols other than
/// TCP, UDP, or ICMP, only the IP address and protocol number is tracked."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    local: IpAddr,
    local_port: u16,
    remote: IpAddr,
    remote_port: u16,
    protocol: u8,
}

impl Key {
    pub(crate) fn of(direction: Direction, packet: &Packet) -> Self {
        let (local, local_port, remote, remote_port) = match direction {
            Direction::Outbound => (packet.src, packet.src_port, packet.dst, packet.dst_port),
            Direction::Inbound => (packet.dst, packet.dst_port, packet.src, packet.src_port),
        };
        let ports = matches!(packet.protocol, 6 | 17);
        Self {
            local,
            local_port: if ports { local_port } else { 0 },
            remote,
            remote_port: if ports { remote_port } else { 0 },
            protocol: packet.protocol,
        }
    }
}

/// Where a hop last found its connection, so that most packets find it without hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Handle {
    slot: u32,
    /// 0: none.
    generation: u32,
}

#[derive(Debug, Clone)]
struct Conn {
    key: Key,
    /// Bumped each time the slot is freed; 0 never names a live connection.
    generation: u32,
    /// Second of the last packet.
    last: i64,
    /// The interface's side opened it.
    opened_outbound: bool,
    /// A packet came from the side that did not open it.
    answered: bool,
    /// Direction of the last packet (outbound = true), to count request-response transactions.
    last_outbound: bool,
    /// Request-response transactions seen (saturating).
    transactions: u8,
    fin_local: bool,
    fin_remote: bool,
    /// Closed (FIN each way, or RST) at this second, with this grace.
    closed: Option<(i64, i64)>,
}

impl Conn {
    /// Whether the connection still holds at `now`.
    fn alive(&self, now: i64, timeouts: &Timeouts) -> bool {
        if let Some((at, grace)) = self.closed {
            return now - at <= grace;
        }
        let idle = now - self.last;
        let limit = match self.key.protocol {
            6 if self.answered => i64::from(timeouts.tcp_established),
            6 => TCP_OPENING_TIMEOUT,
            17 if self.transactions > 1 => i64::from(timeouts.udp_stream),
            17 => i64::from(timeouts.udp),
            1 | 58 => ICMP_TIMEOUT,
            _ => OTHER_TIMEOUT,
        };
        idle <= limit
    }

    /// Counts a packet passing in `direction`.
    fn see(&mut self, direction: Direction, seen: Seen) {
        let outbound = direction == Direction::Outbound;
        self.last = self.last.max(seen.time);
        if outbound != self.opened_outbound {
            if !self.answered || self.last_outbound == self.opened_outbound {
                self.transactions = self.transactions.saturating_add(1);
            }
            self.answered = true;
        }
        self.last_outbound = outbound;
        if self.key.protocol != 6 || self.closed.is_some() {
            return;
        }
        if seen.tcp_flags & RST != 0 {
            self.closed = Some((seen.time, TCP_RST_GRACE));
            return;
        }
        if seen.tcp_flags & FIN != 0 {
            if outbound {
                self.fin_local = true;
            } else {
                self.fin_remote = true;
            }
            if self.fin_local && self.fin_remote {
                self.closed = Some((seen.time, TCP_FIN_GRACE));
            }
        }
    }
}

/// The connections one interface's security groups track.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    timeouts: Timeouts,
    slots: Vec<Conn>,
    index: Map<Key, u32>,
    free: Vec<u32>,
    /// Connections left by the last sweep.
    swept_to: usize,
}

impl Table {
    pub(crate) fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            ..Self::default()
        }
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Connections held (some may have expired and not yet been forgotten).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The common case, answered without hashing: the connection `handle` names is live at
    /// `seen` and the packet (no SYN, FIN or RST) changes nothing but its clock and direction.
    /// `false` when the full path ([`find`](Self::find)) must decide.
    pub(crate) fn refresh(&mut self, handle: Handle, direction: Direction, seen: Seen) -> bool {
        if handle.generation == 0 || seen.tcp_flags & (SYN | FIN | RST) != 0 {
            return false;
        }
        let timeouts = self.timeouts;
        match self.slots.get_mut(handle.slot as usize) {
            Some(c)
                if c.generation == handle.generation
                    && c.closed.is_none()
                    && c.alive(seen.time, &timeouts) =>
            {
                c.see(direction, seen);
                true
            }
            _ => false,
        }
    }

    /// The live connection of `key` at `seen`, if any; `handle` is tried first and updated.
    /// A connection found expired is forgotten, and so is a closing TCP connection that a new
    /// SYN reuses (the new connection is judged afresh).
    pub(crate) fn find(&mut self, key: &Key, seen: Seen, handle: &mut Handle) -> Option<u32> {
        let slot = match self.slots.get(handle.slot as usize) {
            Some(c) if handle.generation != 0 && c.generation == handle.generation => handle.slot,
            _ => {
                let slot = *self.index.get(key)?;
                *handle = Handle {
                    slot,
                    generation: self.slots[slot as usize].generation,
                };
                slot
            }
        };
        let conn = &self.slots[slot as usize];
        let reused =
            key.protocol == 6 && conn.closed.is_some() && seen.tcp_flags & (SYN | ACK) == SYN;
        if reused || !conn.alive(seen.time, &self.timeouts) {
            self.forget(slot);
            *handle = Handle::default();
            return None;
        }
        Some(slot)
    }

    /// Opens a connection for `key` by a packet passing in `direction`; `None` when the table
    /// is full.
    pub(crate) fn open(
        &mut self,
        key: Key,
        direction: Direction,
        seen: Seen,
        handle: &mut Handle,
    ) -> Option<u32> {
        if self.index.len() >= MAX_TRACKED {
            self.sweep(seen.time);
            if self.index.len() >= MAX_TRACKED * 7 / 8 {
                return None;
            }
        }
        let conn = Conn {
            key,
            generation: 0,
            last: seen.time,
            opened_outbound: direction == Direction::Outbound,
            answered: false,
            last_outbound: direction == Direction::Outbound,
            transactions: 0,
            fin_local: false,
            fin_remote: false,
            closed: None,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                let generation = self.slots[slot as usize].generation;
                self.slots[slot as usize] = Conn { generation, ..conn };
                slot
            }
            None => {
                self.slots.push(Conn {
                    generation: 1,
                    ..conn
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        *handle = Handle {
            slot,
            generation: self.slots[slot as usize].generation,
        };
        Some(slot)
    }

    /// Counts a packet of connection `slot` passing in `direction`.
    pub(crate) fn see(&mut self, slot: u32, direction: Direction, seen: Seen) {
        self.slots[slot as usize].see(direction, seen);
    }

    /// Forgets the connections that have expired by `now` when the table has doubled since it
    /// last did (so sweeping costs a constant per connection opened).
    pub(crate) fn sweep_if_grown(&mut self, now: i64) {
        if self.index.len() > 65_536 && self.index.len() >= 2 * self.swept_to {
            self.sweep(now);
        }
    }

    /// Forgets the connections that have expired by `now`.
    pub(crate) fn sweep(&mut self, now: i64) {
        let dead: Vec<u32> = self
            .index
            .values()
            .copied()
            .filter(|&s| !self.slots[s as usize].alive(now, &self.timeouts))
            .collect();
        for slot in dead {
            self.forget(slot);
        }
        self.swept_to = self.index.len();
    }

    /// Forgets every connection.
    pub(crate) fn clear(&mut self) {
        let slots: Vec<u32> = self.index.values().copied().collect();
        for slot in slots {
            self.forget(slot);
        }
    }

    fn forget(&mut self, slot: u32) {
        let conn = &mut self.slots[slot as usize];
        self.index.remove(&conn.key);
        conn.generation = conn.generation.wrapping_add(1).max(1);
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(protocol: u8) -> Packet {
        Packet {
            src: "10.0.1.5".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            protocol,
            src_port: 40000,
            dst_port: 53,
        }
    }

    fn at(time: i64) -> Seen {
        Seen { time, tcp_flags: 0 }
    }

    #[test]
    fn udp_turns_into_a_stream_after_two_transactions() {
        let mut t = Table::new(Timeouts::default());
        let p = packet(17);
        let key = Key::of(Direction::Outbound, &p);
        let mut h = Handle::default();
        let slot = t.open(key, Direction::Outbound, at(0), &mut h).unwrap();
        t.see(slot, Direction::Outbound, at(0));
        t.see(slot, Direction::Inbound, at(0));
        // One request-response: the 30 s timeout.
        assert!(t.find(&key, at(30), &mut h).is_some());
        let slot = t.find(&key, at(30), &mut h).unwrap();
        t.see(slot, Direction::Outbound, at(30));
        t.see(slot, Direction::Inbound, at(30));
        // Two: a stream, 180 s.
        assert!(t.find(&key, at(210), &mut h).is_some());
        assert!(t.find(&key, at(391), &mut h).is_none());
    }

    #[test]
    fn other_protocols_are_tracked_by_addresses_alone() {
        let mut gre = packet(47);
        let key = Key::of(Direction::Outbound, &gre);
        gre.src_port = 1;
        assert_eq!(Key::of(Direction::Outbound, &gre), key);
        let reply = Key::of(Direction::Inbound, &gre.reversed());
        assert_eq!(reply, key);
        let mut t = Table::new(Timeouts::default());
        let mut h = Handle::default();
        t.open(key, Direction::Outbound, at(0), &mut h).unwrap();
        assert!(t.find(&key, at(600), &mut Handle::default()).is_some());
        assert!(t.find(&key, at(601), &mut Handle::default()).is_none());
    }

    #[test]
    fn a_freed_slot_is_not_found_through_an_old_handle() {
        let mut t = Table::new(Timeouts::default());
        let a = Key::of(Direction::Outbound, &packet(1));
        let mut old = Handle::default();
        t.open(a, Direction::Outbound, at(0), &mut old).unwrap();
        assert!(t.find(&a, at(31), &mut old.clone()).is_none(), "ICMP: 30 s");
        let mut b_packet = packet(1);
        b_packet.dst = "198.51.100.8".parse().unwrap();
        let b = Key::of(Direction::Outbound, &b_packet);
        t.open(b, Direction::Outbound, at(40), &mut Handle::default())
            .unwrap();
        // The slot is reused by `b`; `a`'s old handle must not find it.
        assert!(t.find(&a, at(40), &mut old).is_none());
        assert_eq!(t.len(), 1);
    }
}
