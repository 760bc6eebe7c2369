//! Packet patterns: TCP sessions, refused connection attempts, UDP exchanges, in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use flowscope_vpc::WirePacket;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
/// IPv4 (20) plus TCP with timestamps (32).
const TCP_HEADERS: u32 = 52;
const MSS: u64 = 1448;

/// An endpoint: address and port.
pub type End = (IpAddr, u16);

/// Packets waiting to be emitted, ordered by time (then by insertion, for ties).
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(i64, u64, Slot)>>,
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    bytes: u32,
}

impl Schedule {
    /// Queues one packet.
    pub fn push(&mut self, time_us: i64, from: End, to: End, protocol: u8, flags: u8, bytes: u32) {
        self.seq += 1;
        self.heap.push(Reverse((
            time_us,
            self.seq,
            Slot {
                src: from.0,
                dst: to.0,
                protocol,
                src_port: from.1,
                dst_port: to.1,
                flags,
                bytes,
            },
        )));
    }

    /// The next packet due before `until_us`.
    pub fn pop_before(&mut self, until_us: i64) -> Option<WirePacket> {
        let Reverse((time, _, _)) = self.heap.peek()?;
        if *time >= until_us {
            return None;
        }
        let Reverse((time_us, _, s)) = self.heap.pop()?;
        Some(WirePacket {
            time_us,
            src: s.src,
            dst: s.dst,
            protocol: s.protocol,
            src_port: s.src_port,
            dst_port: s.dst_port,
            tcp_flags: s.flags,
            bytes: s.bytes,
        })
    }

    /// A whole TCP session from `client` to `server` starting at `t`: handshake, `request`
    /// bytes up, `response` bytes down (acknowledged every other segment), FIN both ways.
    pub fn tcp_session(
        &mut self,
        t: i64,
        client: End,
        server: End,
        request: u64,
        response: u64,
        rtt_us: i64,
    ) {
        self.tcp_session_via(t, client, client, server, request, response, rtt_us);
    }

    /// [`tcp_session`](Self::tcp_session) whose server answers to `back` (the address the client
    /// is seen as, such as a NAT gateway's Elastic IP).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp_session_via(
        &mut self,
        t: i64,
        client: End,
        back: End,
        server: End,
        request: u64,
        response: u64,
        rtt_us: i64,
    ) {
        let half = rtt_us / 2;
        let mut now = t;
        self.push(now, client, server, 6, SYN, 60);
        now += half;
        self.push(now, server, back, 6, SYN | ACK, 60);
        now += half;
        self.push(now, client, server, 6, ACK, TCP_HEADERS);
        for chunk in chunks(request) {
            self.push(now, client, server, 6, PSH | ACK, TCP_HEADERS + chunk);
            now += 50;
        }
        now += half;
        self.push(now, server, back, 6, ACK, TCP_HEADERS);
        for (i, chunk) in chunks(response).enumerate() {
            now += 120;
            self.push(now, server, back, 6, PSH | ACK, TCP_HEADERS + chunk);
            if i % 2 == 1 {
                self.push(now + half, client, server, 6, ACK, TCP_HEADERS);
            }
        }
        now += half;
        self.push(now, client, server, 6, FIN | ACK, TCP_HEADERS);
        now += half;
        self.push(now, server, back, 6, FIN | ACK, TCP_HEADERS);
        now += half;
        self.push(now, client, server, 6, ACK, TCP_HEADERS);
    }

    /// A connection attempt nobody answers: a SYN and `retries` retransmissions (1 s, 2 s,
    /// 4 s ... apart).
    pub fn tcp_refused(&mut self, t: i64, client: End, server: End, retries: u32) {
        let mut now = t;
        let mut gap = 1_000_000;
        for _ in 0..=retries {
            self.push(now, client, server, 6, SYN, 60);
            now += gap;
            gap *= 2;
        }
    }

    /// A SYN answered by SYN-ACK and torn down by the client's RST (a port scanner's probe of an
    /// open port).
    pub fn tcp_probe_open(&mut self, t: i64, client: End, server: End, rtt_us: i64) {
        self.push(t, client, server, 6, SYN, 60);
        self.push(t + rtt_us / 2, server, client, 6, SYN | ACK, 60);
        self.push(t + rtt_us, client, server, 6, RST, 40);
    }

    /// Data sent on an established connection for one second: `bytes` in full segments from
    /// `from`, acknowledged every other segment to `back` (`from` as the receiver sees it).
    pub fn tcp_stream(&mut self, t: i64, from: End, to: End, back: End, bytes: u64) {
        let n = bytes.div_ceil(MSS).max(1);
        let step = 1_000_000 / n as i64;
        for (i, chunk) in chunks(bytes).enumerate() {
            let at = t + i as i64 * step;
            self.push(at, from, to, 6, ACK, TCP_HEADERS + chunk);
            if i % 2 == 1 {
                self.push(at + 500, to, back, 6, ACK, TCP_HEADERS);
            }
        }
    }

    /// A UDP request and its answer.
    pub fn udp_exchange(
        &mut self,
        t: i64,
        client: End,
        server: End,
        request: u32,
        response: u32,
        rtt_us: i64,
    ) {
        self.push(t, client, server, 17, 0, 28 + request);
        self.push(t + rtt_us, server, client, 17, 0, 28 + response);
    }
}

/// Segment payload sizes for `bytes` bytes.
fn chunks(bytes: u64) -> impl Iterator<Item = u32> {
    let full = bytes / MSS;
    let rest = bytes % MSS;
    (0..full)
        .map(|_| MSS as u32)
        .chain((rest > 0).then_some(rest as u32))
}
