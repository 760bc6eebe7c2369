//! Deterministic synthetic flow log lines for benchmarks, fuzz seeds and property tests.
//!
//! The values are shaped like real VPC traffic (a few accounts, a few hundred interfaces,
//! private and public addresses, well-known server ports with ephemeral clients, mostly
//! `ACCEPT`, a sprinkling of `NODATA`), so parser and query timings mean something. The same seed
//! always gives the same lines.
//!
//! [`Traffic::Uniform`] (the default, which benchmarks rely on byte for byte) draws every record
//! on its own. [`Traffic::Realistic`] draws connections: a client picked with a heavy skew talks
//! to one of its own few services, the request is followed by its reply on the same interface,
//! almost everything inside is accepted, and the rejections are internet addresses knocking
//! once each — traffic in which a detection finding a sweep or a scan would be a false alarm.

use crate::field::FieldSpec;
use crate::format::LogFormat;

/// A seeded generator of flow log lines.
pub struct Synth {
    state: u64,
    /// Unix seconds from which `start` values are drawn.
    pub base_time: u64,
    /// `start` falls in `base_time .. base_time + window` seconds.
    pub window: u64,
    /// Sum of `packets` over the records written so far.
    pub packets: u64,
    /// Sum of `bytes` over the records written so far.
    pub bytes: u64,
    /// How records are drawn.
    pub traffic: Traffic,
    /// The reply of the last request drawn, written next ([`Traffic::Realistic`]).
    reply: Option<Flow>,
    digits: itoa::Buffer,
}

/// How [`Synth`] draws records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Traffic {
    /// Every record drawn on its own (the default; its output is fixed per seed).
    #[default]
    Uniform,
    /// Connections: skewed clients, a few services each, requests answered, rejections from
    /// the internet.
    Realistic,
}

/// One generated flow, rendered per field by [`Synth::write_line`].
#[derive(Clone)]
struct Flow {
    account: u64,
    eni: u64,
    src: [u8; 4],
    dst: [u8; 4],
    srcport: u16,
    dstport: u16,
    protocol: u8,
    packets: u64,
    bytes: u64,
    start: u64,
    end: u64,
    accept: bool,
    nodata: bool,
    egress: bool,
    tcp_flags: u8,
}

const SERVER_PORTS: [u16; 12] = [443, 80, 22, 3389, 53, 5432, 3306, 6379, 8080, 123, 25, 9200];

impl Synth {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            base_time: 1_700_000_000,
            window: 3_600,
            packets: 0,
            bytes: 0,
            traffic: Traffic::Uniform,
            reply: None,
            digits: itoa::Buffer::new(),
        }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn flow(&mut self) -> Flow {
        match self.traffic {
            Traffic::Uniform => self.uniform_flow(),
            Traffic::Realistic => self.realistic_flow(),
        }
    }

    /// A number below `n` with a heavy skew toward 0 (the cube of a uniform draw): a few
    /// values take most draws, as a few clients and services carry most traffic.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64 % n.max(1)
    }

    fn realistic_flow(&mut self) -> Flow {
        // 2,048 clients and 64 services (address and port) inside the VPC; each client uses
        // at most three services of its own and four shared ones.
        const CLIENTS: u64 = 2_048;
        const SERVICES: u64 = 64;
        if let Some(reply) = self.reply.take() {
            return reply;
        }
        let host = |i: u64| [10, 0, (i / 250) as u8, 1 + (i % 250) as u8];
        let start = self.base_time + self.below(self.window.max(1));
        let account = 123_456_789_000 + self.below(2);
        if self.below(100) < 3 {
            // The internet knocking: one attempt per address, refused.
            let h = self.next_u64();
            let target = self.below(CLIENTS + SERVICES);
            return Flow {
                account,
                eni: target,
                src: [
                    [45, 91, 185, 198][(h % 4) as usize],
                    (h >> 8) as u8,
                    (h >> 16) as u8,
                    1 + ((h >> 24) % 254) as u8,
                ],
                dst: host(target),
                srcport: 1_024 + self.below(64_000) as u16,
                dstport: [22, 3389, 23, 445, 1433][self.below(5) as usize],
                protocol: 6,
                packets: 1,
                bytes: 40 + self.below(20),
                start,
                end: start + self.below(5),
                accept: false,
                nodata: false,
                egress: false,
                tcp_flags: 2,
            };
        }
        let client = self.skewed(CLIENTS);
        let own = client
            .wrapping_mul(2_654_435_761)
            .wrapping_add(self.below(3) * 7)
            % SERVICES;
        // One request in eight goes to the four shared services (DNS and the like).
        let service = if self.below(8) == 0 {
            self.below(4)
        } else {
            own
        };
        let server = CLIENTS + service;
        // Services 0-3 are the shared ones (DNS, NTP, a proxy, a web tier); the rest are
        // applications. No SSH or RDP: a heavy client would look like a brute force.
        const PORTS: [u16; 12] = [
            53, 123, 3128, 443, 443, 80, 5432, 3306, 6379, 8080, 9200, 8443,
        ];
        let port = PORTS[(service % PORTS.len() as u64) as usize];
        let protocol = if port == 53 || port == 123 { 17 } else { 6 };
        let requests = 1 + self.skewed(200);
        let replies = requests + self.below(requests * 3 + 1);
        let request_bytes = requests * (60 + self.below(400));
        let reply_bytes = replies * (200 + self.below(1_260));
        let client_port = 32_768 + self.below(28_232) as u16;
        let end = start + self.below(60);
        let nodata = self.below(400) == 0;
        let request = Flow {
            account,
            eni: client,
            src: host(client),
            dst: host(server),
            srcport: client_port,
            dstport: port,
            protocol,
            packets: requests,
            bytes: request_bytes,
            start,
            end,
            accept: true,
            nodata,
            egress: true,
            tcp_flags: if protocol == 6 { 3 } else { 0 },
        };
        if !nodata {
            self.reply = Some(Flow {
                src: host(server),
                dst: host(client),
                srcport: port,
                dstport: client_port,
                packets: replies,
                bytes: reply_bytes,
                egress: false,
                tcp_flags: if protocol == 6 { 19 } else { 0 },
                ..request.clone()
            });
        }
        request
    }

    fn uniform_flow(&mut self) -> Flow {
        // Addresses come from bounded pools, as in a real VPC: 4,096 internal hosts and 65,536
        // external peers, half of all draws going to a popular 256 of each (heavy hitters).
        let pick = |s: &mut Self, pool: u64| {
            if s.below(2) == 0 {
                s.below(256)
            } else {
                s.below(pool)
            }
        };
        let private = |s: &mut Self| {
            let i = pick(s, 4_096);
            [
                10,
                (i / 1_024) as u8,
                ((i / 4) % 256) as u8,
                (4 + (i % 4) * 60) as u8,
            ]
        };
        let public = |s: &mut Self| {
            let h = pick(s, 65_536).wrapping_mul(2_654_435_761);
            [
                [52, 203, 198, 185, 45, 91][(h % 6) as usize],
                (h >> 8) as u8,
                (h >> 16) as u8,
                1 + ((h >> 24) % 254) as u8,
            ]
        };
        let egress = self.below(2) == 0;
        let local = private(self);
        let remote = if self.below(3) == 0 {
            public(self)
        } else {
            private(self)
        };
        let server = SERVER_PORTS[self.below(SERVER_PORTS.len() as u64) as usize];
        let client = 32_768 + self.below(28_232) as u16;
        let protocol = match self.below(20) {
            0 => 1,
            1..=3 => 17,
            _ => 6,
        };
        let (srcport, dstport) = match (protocol, egress) {
            (1, _) => (0, 0),
            (_, true) => (client, server),
            (_, false) => (server, client),
        };
        let packets = 1 + self.below(2_000);
        let start = self.base_time + self.below(self.window.max(1));
        Flow {
            account: 123_456_789_000 + self.below(4),
            eni: self.below(256),
            src: if egress { local } else { remote },
            dst: if egress { remote } else { local },
            srcport,
            dstport,
            protocol,
            packets,
            bytes: packets * (40 + self.below(1_460)),
            start,
            end: start + self.below(60),
            accept: self.below(10) != 0,
            nodata: self.below(200) == 0,
            egress,
            tcp_flags: [0, 2, 18, 3, 19, 1, 4][self.below(7) as usize],
        }
    }

    /// Appends one line in `format` (with its newline) to `out`.
    pub fn write_line(&mut self, format: &LogFormat, out: &mut Vec<u8>) {
        let flow = self.flow();
        if !flow.nodata {
            if format.position("packets").is_some() {
                self.packets += flow.packets;
            }
            if format.position("bytes").is_some() {
                self.bytes += flow.bytes;
            }
        }
        for (i, field) in format.fields().iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            self.write_field(field, &flow, format.version(), out);
        }
        out.push(b'\n');
    }

    /// Appends `count` lines in `format` to `out`.
    pub fn write_lines(&mut self, format: &LogFormat, count: usize, out: &mut Vec<u8>) {
        for _ in 0..count {
            self.write_line(format, out);
        }
    }

    fn int(&mut self, value: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.digits.format(value).as_bytes());
    }

    fn addr(&mut self, a: [u8; 4], out: &mut Vec<u8>) {
        for (i, octet) in a.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            self.int(u64::from(*octet), out);
        }
    }

    fn hex_id(&mut self, prefix: &str, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(format!("{:017x}", n.wrapping_mul(0x0123_4567_89ab)).as_bytes());
    }

    fn write_field(&mut self, field: &FieldSpec, flow: &Flow, version: u8, out: &mut Vec<u8>) {
        let nodata_blank = flow.nodata
            && matches!(
                field.name,
                "srcaddr"
                    | "dstaddr"
                    | "srcport"
                    | "dstport"
                    | "protocol"
                    | "packets"
                    | "bytes"
                    | "action"
            );
        if nodata_blank {
            out.push(b'-');
            return;
        }
        match field.name {
            "version" => self.int(u64::from(version), out),
            "account-id" => self.int(flow.account, out),
            "interface-id" => self.hex_id("eni-", flow.eni, out),
            "srcaddr" | "pkt-srcaddr" => self.addr(flow.src, out),
            "dstaddr" | "pkt-dstaddr" => self.addr(flow.dst, out),
            "srcport" => self.int(u64::from(flow.srcport), out),
            "dstport" => self.int(u64::from(flow.dstport), out),
            "protocol" => self.int(u64::from(flow.protocol), out),
            "packets" => self.int(flow.packets, out),
            "bytes" => self.int(flow.bytes, out),
            "start" => self.int(flow.start, out),
            "end" => self.int(flow.end, out),
            "action" => out.extend_from_slice(if flow.accept { b"ACCEPT" } else { b"REJECT" }),
            "log-status" => out.extend_from_slice(if flow.nodata { b"NODATA" } else { b"OK" }),
            "vpc-id" => self.hex_id("vpc-", flow.account, out),
            "subnet-id" => self.hex_id("subnet-", flow.eni / 32, out),
            "instance-id" => self.hex_id("i-", flow.eni, out),
            "tcp-flags" if flow.protocol == 6 => self.int(u64::from(flow.tcp_flags), out),
            "type" => out.extend_from_slice(b"IPv4"),
            "region" => out.extend_from_slice(b"us-east-1"),
            "az-id" => out.extend_from_slice(
                ["use1-az1", "use1-az2", "use1-az4"][(flow.eni % 3) as usize].as_bytes(),
            ),
            "flow-direction" => {
                out.extend_from_slice(if flow.egress { b"egress" } else { b"ingress" })
            }
            "traffic-path" if flow.egress => self.int(if flow.dst[0] == 10 { 1 } else { 8 }, out),
            "pkt-dst-aws-service" if flow.dst[0] == 52 => out.extend_from_slice(b"S3"),
            "pkt-src-aws-service" if flow.src[0] == 52 => out.extend_from_slice(b"S3"),
            "ecs-cluster-name" => out.extend_from_slice(b"prod"),
            "ecs-service-name" => out.extend_from_slice(b"web"),
            _ => out.push(b'-'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextDecoder;

    #[test]
    fn generated_lines_decode_cleanly_and_deterministically() {
        for format in [LogFormat::default_format(), LogFormat::all_fields()] {
            let mut a = Vec::new();
            Synth::new(7).write_lines(&format, 2_000, &mut a);
            let mut b = Vec::new();
            Synth::new(7).write_lines(&format, 2_000, &mut b);
            assert_eq!(a, b);
            let mut decoder = TextDecoder::new(format.clone(), 4096);
            for line in a.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                decoder.decode_line(line).unwrap();
            }
            assert_eq!(decoder.buffered_rows(), 2_000);
        }
    }

    #[test]
    fn realistic_traffic_answers_its_requests_and_clients_use_few_services() {
        use std::collections::{HashMap, HashSet};
        let format = LogFormat::default_format();
        let mut synth = Synth::new(3);
        synth.traffic = Traffic::Realistic;
        let mut text = Vec::new();
        synth.write_lines(&format, 20_000, &mut text);
        let text = String::from_utf8(text).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        let (src, dst, sport, dport, action) = (3, 4, 5, 6, 12);
        let mut requests = HashSet::new();
        let mut services: HashMap<&str, HashSet<(&str, &str)>> = HashMap::new();
        let mut rejected = 0;
        for r in &rows {
            if r[action] == "REJECT" {
                rejected += 1;
                assert!(
                    !r[src].starts_with("10."),
                    "rejections come from outside: {r:?}"
                );
            } else if r[src].starts_with("10.") && r[dport].parse::<u32>().unwrap() < 32_768 {
                requests.insert((r[src], r[dst], r[sport], r[dport]));
                services
                    .entry(r[src])
                    .or_default()
                    .insert((r[dst], r[dport]));
            }
        }
        // Every request has its reply, ports and addresses swapped.
        let replies = rows
            .iter()
            .filter(|r| requests.contains(&(r[dst], r[src], r[dport], r[sport])))
            .count();
        assert!(
            replies * 100 >= requests.len() * 99,
            "{replies} of {}",
            requests.len()
        );
        // Few services per client, and a few clients carry much of the traffic.
        let most = services.values().map(HashSet::len).max().unwrap();
        assert!(most <= 7, "a client used {most} services");
        let top = requests.iter().filter(|(s, ..)| *s == "10.0.0.1").count();
        assert!(
            top * 20 > requests.len(),
            "client 0 made {top} of {}",
            requests.len()
        );
        assert!(
            rejected > 0 && rejected * 20 < rows.len(),
            "{rejected} rejections"
        );
    }
}
