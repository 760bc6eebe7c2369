//! `three-tier`: internet -> load balancer -> web -> app -> database, with a bastion, NAT egress,
//! an in-VPC DNS resolver, the chatter AWS never logs, background scanning from the internet, and
//! optional incidents.

use std::net::{IpAddr, Ipv4Addr};

use flowscope_vpc::WirePacket;

use super::rng::Rng;
use super::traffic::{End, Schedule};
use super::{Incident, ScenarioOptions, Truth};

/// The scenario's topology file.
pub const THREE_TIER_TOPOLOGY: &str = include_str!("three-tier.toml");

const fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const LB_PUBLIC: [IpAddr; 2] = [ip(54, 210, 10, 20), ip(54, 210, 10, 21)];
const LB_PRIVATE: [IpAddr; 2] = [ip(10, 0, 0, 20), ip(10, 0, 1, 20)];
const BASTION_PUBLIC: IpAddr = ip(54, 210, 10, 30);
const BASTION: IpAddr = ip(10, 0, 0, 30);
const WEB: [IpAddr; 2] = [ip(10, 0, 10, 11), ip(10, 0, 10, 12)];
const APP: [IpAddr; 2] = [ip(10, 0, 20, 11), ip(10, 0, 20, 12)];
const DNS: IpAddr = ip(10, 0, 20, 53);
const REPORTING: IpAddr = ip(10, 0, 20, 40);
const DB: IpAddr = ip(10, 0, 30, 11);
const BATCH: IpAddr = ip(10, 0, 40, 11);
const NAT_PUBLIC: IpAddr = ip(3, 210, 44, 10);
const AMAZON_DNS: IpAddr = ip(10, 0, 0, 2);
const METADATA: IpAddr = ip(169, 254, 169, 254);
const TIME_SYNC: IpAddr = ip(169, 254, 169, 123);
const PARTNER_API: IpAddr = ip(52, 94, 1, 17);
const ADMIN: IpAddr = ip(198, 51, 100, 10);

const SCANNER: IpAddr = ip(198, 51, 100, 23);
const BRUTE_FORCER: IpAddr = ip(203, 0, 113, 77);
const RDP: [IpAddr; 4] = [
    ip(45, 155, 205, 11),
    ip(45, 155, 205, 12),
    ip(92, 63, 197, 40),
    ip(141, 98, 11, 5),
];
const EXFIL_DEST: IpAddr = ip(192, 0, 2, 99);
const BAD_C2: IpAddr = ip(185, 220, 101, 45);
const STORAGE: IpAddr = ip(52, 94, 2, 10);

const ENI_LB: [&str; 2] = ["eni-0a00000000000a020", "eni-0a00000000000b020"];
const ENI_BASTION: &str = "eni-0a00000000000a030";
const ENI_WEB1: &str = "eni-0a0000000000a1011";
const ENI_APP: [&str; 2] = ["eni-0a0000000000a2011", "eni-0a0000000000a2012"];
const ENI_DNS: &str = "eni-0a0000000000a2053";
const ENI_REPORTING: &str = "eni-0a0000000000a2040";
const ENI_DB: &str = "eni-0a0000000000a3011";
const ENI_BATCH: &str = "eni-0a0000000000a4011";
const ENI_NAT: &str = "eni-0a00000000000a010";

/// Scheduled incident windows, in seconds from the start.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
}

impl Window {
    fn at(duration: i64, from: f64, length: i64) -> Self {
        let start = (duration as f64 * from) as i64;
        Self {
            start,
            end: (start + length).min(duration - 1),
        }
    }

    fn contains(self, s: i64) -> bool {
        (self.start..=self.end).contains(&s)
    }
}

#[derive(Debug, Clone)]
struct Plan {
    port_scan: Window,
    sweep: Window,
    brute_force: Window,
    rdp: Window,
    exfiltration: Window,
    beaconing: Window,
    nacl: Window,
    sg: Window,
}

/// The `three-tier` packet stream, in time order.
#[derive(Debug)]
pub struct ThreeTier {
    rng: Rng,
    schedule: Schedule,
    start: i64,
    duration: i64,
    /// Next second to generate, from the start.
    second: i64,
    plan: Option<Plan>,
    truth: Truth,
    /// Persistent app -> database connections.
    db_connections: Vec<(End, End)>,
    /// Next beacon, seconds from the start.
    next_beacon: i64,
}

impl ThreeTier {
    /// The stream for `options`.
    pub fn new(options: &ScenarioOptions) -> Self {
        let mut rng = Rng::new(options.seed);
        let duration = options.duration.max(1);
        let db_connections = (0..4)
            .map(|i| {
                (
                    (APP[i % 2], 40_000 + rng.range(0, 20_000) as u16),
                    (DB, 5432),
                )
            })
            .collect();
        let plan = options.incidents.then(|| {
            // Short runs squeeze the incidents in; a 2-hour run spreads them out.
            let scale = |s: i64| s.min(duration / 10).max(5);
            Plan {
                port_scan: Window::at(duration, 0.10, scale(110)),
                sweep: Window::at(duration, 0.20, scale(60)),
                brute_force: Window::at(duration, 0.30, scale(600)),
                rdp: Window::at(duration, 0.40, scale(300)),
                exfiltration: Window::at(duration, 0.50, scale(1200)),
                beaconing: Window {
                    start: (duration as f64 * 0.05) as i64,
                    end: (duration as f64 * 0.95) as i64,
                },
                nacl: Window::at(duration, 0.65, scale(900)),
                sg: Window::at(duration, 0.80, scale(600)),
            }
        });
        let truth = Truth {
            scenario: "three-tier",
            seed: options.seed,
            start: options.start,
            end: options.start + duration,
            incidents: plan
                .as_ref()
                .map_or_else(Vec::new, |p| incidents(p, options.start)),
        };
        let next_beacon = plan.as_ref().map_or(i64::MAX, |p| p.beaconing.start);
        Self {
            rng,
            schedule: Schedule::default(),
            start: options.start,
            duration,
            second: 0,
            plan,
            truth,
            db_connections,
            next_beacon,
        }
    }

    /// What this run contains.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    fn client(&mut self) -> IpAddr {
        // Public client addresses outside private, shared and documentation ranges.
        const FIRST: [u8; 16] = [
            24, 31, 37, 46, 62, 68, 73, 81, 86, 98, 109, 151, 176, 188, 201, 212,
        ];
        let a = FIRST[self.rng.below(FIRST.len() as u64) as usize];
        ip(
            a,
            self.rng.below(256) as u8,
            self.rng.below(256) as u8,
            self.rng.range(1, 254) as u8,
        )
    }

    fn ephemeral(&mut self) -> u16 {
        self.rng.range(32_768, 60_999) as u16
    }

    fn rtt(&mut self, lo_ms: u64, hi_ms: u64) -> i64 {
        self.rng.range(lo_ms * 1000, hi_ms * 1000) as i64
    }

    /// Schedules every conversation that starts in second `s` (from the start).
    fn generate(&mut self, s: i64) {
        let base = (self.start + s) * 1_000_000;
        let at = |rng: &mut Rng| base + rng.below(1_000_000) as i64;
        // Web requests: a daily rhythm around 6 per second.
        let phase = (s as f64 / 3600.0 * std::f64::consts::PI / 6.0).sin();
        let requests = self.rng.poisson(6.0 + 2.0 * phase);
        for _ in 0..requests {
            let t = at(&mut self.rng);
            let lb = self.rng.below(2) as usize;
            let client = (self.client(), self.ephemeral());
            let rtt = self.rtt(20, 120);
            let response = self.rng.range(800, 60_000);
            self.schedule.tcp_session(
                t,
                client,
                (LB_PUBLIC[lb], 443),
                self.rng.range(300, 900),
                response,
                rtt,
            );
            let web = WEB[self.rng.below(2) as usize];
            let lb_port = self.rng.range(1024, 65_535) as u16;
            let inner = self.rtt(1, 3);
            self.schedule.tcp_session(
                t + rtt,
                (LB_PRIVATE[lb], lb_port),
                (web, 8080),
                700,
                response,
                inner,
            );
            if self.rng.chance(0.7) {
                let app = APP[self.rng.below(2) as usize];
                let port = self.ephemeral();
                self.schedule.tcp_session(
                    t + rtt + inner,
                    (web, port),
                    (app, 8443),
                    400,
                    response / 2,
                    inner,
                );
                // The app's query on a pooled database connection.
                let c = self.rng.below(self.db_connections.len() as u64) as usize;
                let (client, server) = self.db_connections[c];
                if client.0 == app {
                    self.schedule
                        .push(t + rtt + 2 * inner, client, server, 6, 0x18, 52 + 180);
                    self.schedule
                        .push(t + rtt + 3 * inner, server, client, 6, 0x18, 52 + 1_200);
                    self.schedule
                        .push(t + rtt + 3 * inner + 200, client, server, 6, 0x10, 52);
                }
            }
        }
        // DNS: to the in-VPC resolver (logged) and to the Amazon DNS server (never logged).
        for host in [WEB[0], WEB[1], APP[0], APP[1]] {
            if self.rng.chance(0.3) {
                let t = at(&mut self.rng);
                let port = self.ephemeral();
                self.schedule
                    .udp_exchange(t, (host, port), (DNS, 53), 40, 120, 800);
            }
            if self.rng.chance(0.2) {
                let t = at(&mut self.rng);
                let port = self.ephemeral();
                self.schedule
                    .udp_exchange(t, (host, port), (AMAZON_DNS, 53), 40, 120, 600);
            }
            // Instance metadata every 5 minutes, Time Sync every 64 s: never logged either.
            if s % 300 == 0 {
                let port = self.ephemeral();
                self.schedule.tcp_session(
                    base + 10_000,
                    (host, port),
                    (METADATA, 80),
                    120,
                    900,
                    200,
                );
            }
            if s % 64 == 0 {
                let port = self.ephemeral();
                self.schedule.udp_exchange(
                    base + 20_000,
                    (host, port),
                    (TIME_SYNC, 123),
                    48,
                    48,
                    200,
                );
            }
        }
        // The resolver forwards some lookups out through the NAT gateway.
        if self.rng.chance(0.1) {
            let t = at(&mut self.rng);
            let port = self.ephemeral();
            self.udp_via_nat(t, (DNS, port), (ip(8, 8, 8, 8), 53), 40, 200);
        }
        // App servers call a partner API through the NAT gateway every ~10 s.
        if self.rng.chance(0.1) {
            let t = at(&mut self.rng);
            let app = APP[self.rng.below(2) as usize];
            let port = self.ephemeral();
            let rtt = self.rtt(5, 30);
            self.session_via_nat(t, (app, port), (PARTNER_API, 443), 900, 4_000, rtt);
        }
        // Keep-alives on the pooled database connections every 30 s.
        if s % 30 == 0 {
            for (client, server) in self.db_connections.clone() {
                self.schedule
                    .push(base + 1_000, client, server, 6, 0x10, 52);
                self.schedule
                    .push(base + 1_400, server, client, 6, 0x10, 52);
            }
        }
        // An administrator logs in to the bastion every 30 minutes and hops to a web server.
        if s % 1800 == 120 {
            let port = self.ephemeral();
            self.schedule.tcp_session(
                base,
                (ADMIN, port),
                (BASTION_PUBLIC, 22),
                40_000,
                200_000,
                30_000,
            );
            let port = self.ephemeral();
            self.schedule.tcp_session(
                base + 2_000_000,
                (BASTION, port),
                (WEB[0], 22),
                20_000,
                90_000,
                1_000,
            );
        }
        // Internet background noise: probes of common ports on the public addresses.
        if self.rng.chance(0.3) {
            let t = at(&mut self.rng);
            const PORTS: [u16; 10] = [23, 445, 1433, 3306, 5900, 6379, 8080, 8443, 9200, 27017];
            let target = [LB_PUBLIC[0], LB_PUBLIC[1], BASTION_PUBLIC, NAT_PUBLIC]
                [self.rng.below(4) as usize];
            let port = PORTS[self.rng.below(PORTS.len() as u64) as usize];
            let source = (self.client(), self.ephemeral());
            self.schedule.tcp_refused(t, source, (target, port), 1);
        }
        if let Some(plan) = self.plan.clone() {
            self.incidents(&plan, s, base);
        }
    }

    /// A TCP session from a private host through the NAT gateway: replies come back to the
    /// gateway's Elastic IP.
    fn session_via_nat(
        &mut self,
        t: i64,
        client: End,
        server: End,
        request: u64,
        response: u64,
        rtt: i64,
    ) {
        // Requests leave from the private address; replies return to the Elastic IP.
        let seen = (NAT_PUBLIC, client.1);
        self.schedule
            .tcp_session_via(t, client, seen, server, request, response, rtt);
    }

    fn udp_via_nat(&mut self, t: i64, client: End, server: End, request: u32, response: u32) {
        self.schedule.push(t, client, server, 17, 0, 28 + request);
        self.schedule.push(
            t + 15_000,
            server,
            (NAT_PUBLIC, client.1),
            17,
            0,
            28 + response,
        );
    }

    fn incidents(&mut self, plan: &Plan, s: i64, base: i64) {
        // Vertical scan: ports 1-1024 of the bastion, ten a second.
        if plan.port_scan.contains(s) {
            let first = (s - plan.port_scan.start) * 10;
            for i in 0..10 {
                let port = first + i + 1;
                if port > 1024 {
                    break;
                }
                let t = base + i * 100_000;
                if port == 22 {
                    self.schedule.tcp_probe_open(
                        t,
                        (SCANNER, 61_000),
                        (BASTION_PUBLIC, 22),
                        40_000,
                    );
                } else {
                    self.schedule.tcp_refused(
                        t,
                        (SCANNER, 61_000),
                        (BASTION_PUBLIC, port as u16),
                        0,
                    );
                }
            }
        }
        // Horizontal sweep from a web server across the app subnet on port 22.
        if plan.sweep.contains(s) {
            let first = (s - plan.sweep.start) * 5;
            for i in 0..5 {
                let host = first + i + 4;
                if host > 254 {
                    break;
                }
                let port = self.ephemeral();
                self.schedule.tcp_refused(
                    base + i * 200_000,
                    (WEB[0], port),
                    (ip(10, 0, 20, host as u8), 22),
                    1,
                );
            }
        }
        // SSH brute force: a new login attempt every 2 seconds.
        if plan.brute_force.contains(s) && s % 2 == 0 {
            let port = self.ephemeral();
            self.schedule.tcp_session(
                base,
                (BRUTE_FORCER, port),
                (BASTION_PUBLIC, 22),
                1_200,
                2_400,
                60_000,
            );
        }
        // RDP attempts on the load balancers and the bastion.
        if plan.rdp.contains(s) && self.rng.chance(0.5) {
            let source = RDP[self.rng.below(RDP.len() as u64) as usize];
            let target = [LB_PUBLIC[0], LB_PUBLIC[1], BASTION_PUBLIC][self.rng.below(3) as usize];
            let port = self.ephemeral();
            self.schedule
                .tcp_refused(base, (source, port), (target, 3389), 2);
        }
        // Exfiltration: the database streams 600 KB/s out through the NAT gateway.
        if plan.exfiltration.contains(s) {
            let client = (DB, 51_515);
            let server = (EXFIL_DEST, 443);
            if s == plan.exfiltration.start {
                self.session_via_nat(base, client, server, 500, 200, 80_000);
            }
            self.schedule.tcp_stream(
                base + 300_000,
                client,
                server,
                (NAT_PUBLIC, 51_515),
                600_000,
            );
        }
        // Beaconing: a small HTTPS exchange with a known-bad address every 60 ± 2 seconds.
        if plan.beaconing.contains(s) && s >= self.next_beacon {
            let port = self.ephemeral();
            self.session_via_nat(base, (APP[1], port), (BAD_C2, 443), 300, 500, 90_000);
            self.next_beacon = s + 58 + self.rng.range(0, 4) as i64;
        }
        // The batch host uploads to storage every 30 s; its subnet's ACL drops the replies.
        if plan.nacl.contains(s) && s % 30 == 0 {
            let port = self.ephemeral();
            self.session_via_nat(base, (BATCH, port), (STORAGE, 443), 2_000, 600, 10_000);
        }
        // A reporting host the database's security group does not know tries to connect.
        if plan.sg.contains(s) && s % 60 == 0 {
            let port = self.ephemeral();
            self.schedule
                .tcp_refused(base, (REPORTING, port), (DB, 5432), 3);
        }
    }
}

impl Iterator for ThreeTier {
    type Item = WirePacket;

    fn next(&mut self) -> Option<WirePacket> {
        let end_us = (self.start + self.duration) * 1_000_000;
        loop {
            let ready = (self.start + self.second) * 1_000_000;
            if let Some(p) = self.schedule.pop_before(ready.min(end_us)) {
                return Some(p);
            }
            if self.second >= self.duration {
                return None;
            }
            let s = self.second;
            self.generate(s);
            self.second += 1;
        }
    }
}

fn incidents(p: &Plan, start: i64) -> Vec<Incident> {
    let at = |w: Window| (start + w.start, start + w.end);
    let s = |ips: &[IpAddr]| ips.iter().map(ToString::to_string).collect::<Vec<_>>();
    let e = |ids: &[&str]| ids.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    let (a, b) = at(p.port_scan);
    out.push(Incident {
        kind: "vertical_port_scan",
        description: "one internet address probes ports 1-1024 of the bastion's public address; only 22 answers".into(),
        start: a,
        end: b,
        sources: s(&[SCANNER]),
        destinations: s(&[BASTION_PUBLIC]),
        ports: (1..=1024).collect(),
        interfaces: e(&[ENI_BASTION]),
        expected_action: "REJECT",
    });
    let (a, b) = at(p.sweep);
    out.push(Incident {
        kind: "horizontal_sweep",
        description: "a web server connects to port 22 across the app subnet (10.0.20.4-254)".into(),
        start: a,
        end: b,
        sources: s(&[WEB[0]]),
        destinations: vec!["10.0.20.0/24".into()],
        ports: vec![22],
        interfaces: e(&[ENI_WEB1, ENI_APP[0], ENI_APP[1], ENI_DNS, ENI_REPORTING]),
        expected_action: "ACCEPT egress on the web server, REJECT ingress on the app subnet's interfaces",
    });
    let (a, b) = at(p.brute_force);
    out.push(Incident {
        kind: "ssh_brute_force",
        description: "one internet address opens an SSH session to the bastion every 2 seconds"
            .into(),
        start: a,
        end: b,
        sources: s(&[BRUTE_FORCER]),
        destinations: s(&[BASTION_PUBLIC]),
        ports: vec![22],
        interfaces: e(&[ENI_BASTION]),
        expected_action: "ACCEPT",
    });
    let (a, b) = at(p.rdp);
    out.push(Incident {
        kind: "rdp_attempts",
        description: "internet addresses try RDP (3389) on the load balancers and the bastion"
            .into(),
        start: a,
        end: b,
        sources: s(&RDP),
        destinations: s(&[LB_PUBLIC[0], LB_PUBLIC[1], BASTION_PUBLIC]),
        ports: vec![3389],
        interfaces: e(&[ENI_LB[0], ENI_LB[1], ENI_BASTION]),
        expected_action: "REJECT",
    });
    let (a, b) = at(p.exfiltration);
    out.push(Incident {
        kind: "data_exfiltration",
        description:
            "the database streams about 600 KB/s to an internet address through the NAT gateway"
                .into(),
        start: a,
        end: b,
        sources: s(&[DB]),
        destinations: s(&[EXFIL_DEST]),
        ports: vec![443],
        interfaces: e(&[ENI_DB, ENI_NAT]),
        expected_action: "ACCEPT",
    });
    let (a, b) = at(p.beaconing);
    out.push(Incident {
        kind: "beaconing",
        description: "an app server contacts a known-bad address every 60 +/- 2 seconds through the NAT gateway".into(),
        start: a,
        end: b,
        sources: s(&[APP[1]]),
        destinations: s(&[BAD_C2]),
        ports: vec![443],
        interfaces: e(&[ENI_APP[1], ENI_NAT]),
        expected_action: "ACCEPT",
    });
    let (a, b) = at(p.nacl);
    out.push(Incident {
        kind: "nacl_blocks_replies",
        description: "the batch subnet's network ACL has no inbound rule for ephemeral ports, so replies to the batch host's uploads are rejected".into(),
        start: a,
        end: b,
        sources: s(&[BATCH]),
        destinations: s(&[STORAGE]),
        ports: vec![443],
        interfaces: e(&[ENI_BATCH]),
        expected_action: "ACCEPT egress, REJECT ingress replies",
    });
    let (a, b) = at(p.sg);
    out.push(Incident {
        kind: "sg_blocks_tier",
        description: "a reporting host whose security group the database's group does not allow tries PostgreSQL every minute".into(),
        start: a,
        end: b,
        sources: s(&[REPORTING]),
        destinations: s(&[DB]),
        ports: vec![5432],
        interfaces: e(&[ENI_REPORTING, ENI_DB]),
        expected_action: "ACCEPT egress on the reporting host, REJECT ingress on the database",
    });
    out
}
