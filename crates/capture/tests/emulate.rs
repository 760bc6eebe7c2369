//! The emulator end to end: pcap files written here with a pcap library, read by
//! `PcapSource`, judged and aggregated by `Emulator`, written as flow log lines — compared with
//! the records AWS documents (SPEC §5 and §6).

use std::borrow::Cow;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use flowscope_capture::PcapSource;
use flowscope_capture::scenario::{ScenarioOptions, THREE_TIER_TOPOLOGY, ThreeTier};
use flowscope_record::{LogFormat, TextDecoder, write_lines};
use flowscope_vpc::{Emulator, Exclusion, Topology, WirePacket};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use pretty_assertions::assert_eq;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// A TCP frame; `flags` is a string of S, A, F, R, P.
fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: &str, payload: usize) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(v4(src), v4(dst), 64)
        .tcp(sport, dport, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; payload]).unwrap();
    out
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(v4(src), v4(dst), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; payload]).unwrap();
    out
}

fn ping(src: &str, dst: &str, reply: bool, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(v4(src), v4(dst), 64);
    let b = if reply {
        b.icmpv4_echo_reply(7, seq)
    } else {
        b.icmpv4_echo_request(7, seq)
    };
    let mut out = Vec::new();
    b.write(&mut out, &[0u8; 56]).unwrap();
    out
}

/// IP length of an Ethernet frame built above.
fn ip_len(frame: &[u8]) -> u64 {
    u64::from(u16::from_be_bytes([frame[16], frame[17]]))
}

fn write_pcap(path: &Path, frames: &[(f64, Vec<u8>)]) {
    let header = pcap_file::pcap::PcapHeader {
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for (t, frame) in frames {
        let ts = Duration::from_micros((t * 1e6).round() as u64);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
            .unwrap();
    }
}

/// Runs `pcap` through the emulator of `topology`, windows aligned to multiples of their
/// interval as the hand-made expectations below assume; the lines each flow log writes.
fn emulate(topology: &str, pcap: &Path) -> (Vec<Vec<String>>, Emulator) {
    let topology = Topology::from_toml(topology).unwrap_or_else(|m| panic!("{m:?}"));
    run_pcap(Emulator::aligned(topology), pcap)
}

/// Runs `pcap` through `emulator`; the lines each flow log writes.
fn run_pcap(mut emulator: Emulator, pcap: &Path) -> (Vec<Vec<String>>, Emulator) {
    let mut source = PcapSource::open(pcap).unwrap();
    let mut last = 0;
    while let Some(p) = source.next_packet() {
        let p = p.unwrap();
        last = p.time_us / 1_000_000;
        emulator.process(&p);
    }
    emulator.advance_to(last + 1);
    emulator.finish();
    (lines(&mut emulator), emulator)
}

fn lines(emulator: &mut Emulator) -> Vec<Vec<String>> {
    let windows = emulator.take_closed();
    let mut out = Vec::new();
    for (i, def) in emulator.topology().flow_logs.iter().enumerate() {
        let mut text = Vec::new();
        for w in &windows {
            if let Some(batch) = emulator.flow_log_batch(i, w) {
                write_lines(&batch, &def.log_format, &mut text).unwrap();
            }
        }
        out.push(
            String::from_utf8(text)
                .unwrap()
                .lines()
                .map(String::from)
                .collect(),
        );
    }
    out
}

const VPC_172: &str = include_str!("../../../testdata/topology/vpc-172.toml");

fn topology(rest: &str) -> String {
    format!(
        "{VPC_172}{rest}\n[[flow_log]]\nid = \"fl-1\"\nresource_type = \"VPC\"\nresource_ids = [\"vpc-abcdefab012345678\"]\ntraffic_type = \"ALL\"\nlog_destination_type = \"s3\"\n"
    )
}

/// `text` with the base VPC's instance marked as not Nitro-based.
fn not_nitro(text: &str) -> String {
    let line = "instance_id = \"i-01234567890123456\"";
    assert!(text.contains(line));
    text.replace(line, &format!("{line}\nnitro = false"))
}

const SG_ICMP_IN: &str = r#"
[[security_group]]
id = "sg-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ protocol = "icmp", cidr_block = "0.0.0.0/0" }]
"#;

/// SPEC §5 example 5: the SG allows the ping in and (statefully) its reply out; the NACL allows
/// ICMP in but not out, so the reply is rejected.
#[test]
fn stateless_nacl_rejects_the_reply_a_stateful_sg_would_pass() {
    let dir = tempfile::tempdir().unwrap();
    let acl = r#"
[[network_acl]]
id = "acl-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ rule_number = 100, protocol = "icmp", cidr_block = "0.0.0.0/0", rule_action = "allow" }]
outbound = [{ rule_number = 100, protocol = "tcp", port_range = "443", cidr_block = "0.0.0.0/0", rule_action = "allow" }]
"#;
    // Four echo requests; the replies are sent at the times of AWS's example record.
    let requests: [f64; 4] = [1432917027.2, 1432917060.0, 1432917094.0, 1432917142.0];
    let replies = [1432917094.1, 1432917110.0, 1432917126.0, 1432917142.5];
    let mut frames: Vec<(f64, Vec<u8>)> = Vec::new();
    for (i, (q, r)) in requests.iter().zip(replies).enumerate() {
        frames.push((*q, ping("203.0.113.12", "172.31.16.139", false, i as u16)));
        frames.push((r, ping("172.31.16.139", "203.0.113.12", true, i as u16)));
    }
    frames.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pcap = dir.path().join("ping.pcap");
    write_pcap(&pcap, &frames);

    // AWS's example records span 115 s: the instance in AWS's example is not Nitro-based (on
    // Nitro no record spans more than 60 s).
    let topology = |rest: &str| not_nitro(&topology(rest));
    let (lines, _) = emulate(&topology(&format!("{SG_ICMP_IN}{acl}")), &pcap);
    assert_eq!(
        lines[0],
        [
            "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK",
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 203.0.113.12 0 0 1 4 336 1432917094 1432917142 REJECT OK",
        ]
    );

    // With ICMP allowed out too: two ACCEPT records.
    let open = acl.replace(
        r#"protocol = "tcp", port_range = "443""#,
        r#"protocol = "icmp""#,
    );
    let (lines, _) = emulate(&topology(&format!("{SG_ICMP_IN}{open}")), &pcap);
    assert!(
        lines[0].iter().all(|l| l.ends_with("ACCEPT OK")),
        "{lines:?}"
    );
    assert_eq!(lines[0].len(), 2);

    // With a security group that does not allow ICMP in: the request is rejected, and the
    // host never answers, so a capture of the same exchange holds only the requests.
    let no_icmp = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\n";
    let only_requests: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f[30..34] == v4("172.31.16.139"))
        .cloned()
        .collect();
    write_pcap(&pcap, &only_requests);
    let (lines, _) = emulate(&topology(&format!("{no_icmp}{open}")), &pcap);
    assert_eq!(
        lines[0],
        [
            "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 REJECT OK"
        ]
    );
}

const DEFAULT_ACL: &str = r#"
[[network_acl]]
id = "acl-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ rule_number = 100, protocol = "all", cidr_block = "0.0.0.0/0", rule_action = "allow" }]
outbound = [{ rule_number = 100, protocol = "all", cidr_block = "0.0.0.0/0", rule_action = "allow" }]
"#;

/// A group with no inbound rules still lets the replies to its own connection in; an
/// unsolicited packet from the same server to another port is rejected.
#[test]
fn stateful_security_group_accepts_replies() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\n";
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp(me, server, 40000, 443, "S", 0)),
        (t + 0.1, tcp(server, me, 443, 40000, "SA", 0)),
        (t + 0.2, tcp(me, server, 40000, 443, "A", 0)),
        (t + 0.3, tcp(server, me, 443, 40000, "PA", 500)),
        (t + 1.0, tcp(server, me, 443, 40001, "S", 0)),
    ];
    let pcap = dir.path().join("sg.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&topology(&format!("{sg}{DEFAULT_ACL}")), &pcap);
    let w = 1_700_000_000 / 600 * 600;
    assert_eq!(
        lines[0],
        [
            format!(
                "2 123456789010 eni-1235b8ca123456789 {me} {server} 40000 443 6 2 80 1700000000 1700000000 ACCEPT OK"
            ),
            format!(
                "2 123456789010 eni-1235b8ca123456789 {server} {me} 443 40000 6 2 580 1700000000 1700000000 ACCEPT OK"
            ),
            format!(
                "2 123456789010 eni-1235b8ca123456789 {server} {me} 443 40001 6 1 40 1700000001 1700000001 REJECT OK"
            ),
        ],
        "window starts at {w}"
    );
}

/// SPEC §6: inbound SSH allowed by the NACL and the SG, the NACL's outbound rules lack the
/// ephemeral range: ingress ACCEPT, egress REJECT on the same tuple reversed.
#[test]
fn nacl_without_ephemeral_ports_rejects_outbound_replies() {
    let dir = tempfile::tempdir().unwrap();
    let sg = r#"
[[security_group]]
id = "sg-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ protocol = "tcp", port_range = 22, cidr_block = "192.0.2.0/24" }]
"#;
    let acl = r#"
[[network_acl]]
id = "acl-1"
vpc = "vpc-abcdefab012345678"
inbound = [
  { rule_number = 120, protocol = "tcp", port_range = "22", cidr_block = "192.0.2.0/24", rule_action = "allow" },
  { rule_number = 140, protocol = "tcp", port_range = "32768-65535", cidr_block = "0.0.0.0/0", rule_action = "allow" },
]
outbound = [
  { rule_number = 100, protocol = "tcp", port_range = "80", cidr_block = "0.0.0.0/0", rule_action = "allow" },
  { rule_number = 110, protocol = "tcp", port_range = "443", cidr_block = "0.0.0.0/0", rule_action = "allow" },
]
"#;
    let me = "172.31.16.139";
    let admin = "192.0.2.44";
    let t = 1_700_000_100.0;
    let frames = vec![
        (t, tcp(admin, me, 50000, 22, "S", 0)),
        (t + 0.05, tcp(me, admin, 22, 50000, "SA", 0)),
        (t + 1.05, tcp(me, admin, 22, 50000, "SA", 0)),
        (t + 3.0, tcp(admin, me, 50000, 22, "S", 0)),
    ];
    let pcap = dir.path().join("ssh.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&topology(&format!("{sg}{acl}")), &pcap);
    assert_eq!(
        lines[0],
        [
            format!(
                "2 123456789010 eni-1235b8ca123456789 {admin} {me} 50000 22 6 2 80 1700000100 1700000103 ACCEPT OK"
            ),
            format!(
                "2 123456789010 eni-1235b8ca123456789 {me} {admin} 22 50000 6 2 80 1700000100 1700000101 REJECT OK"
            ),
        ]
    );
}

/// SPEC §5's TCP flag sequences: SYN 2 in and SYN-ACK 18 out; a connection closing in the next
/// window shows FIN 1 each way; a short connection within one window shows 3 and 19; ACK-only
/// traffic shows 0.
#[test]
fn tcp_flags_are_ored_per_window_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let sg = r#"
[[security_group]]
id = "sg-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ protocol = "tcp", port_range = 5001, cidr_block = "0.0.0.0/0" }]
"#;
    let format = "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status}";
    let text = topology(&format!("{sg}{DEFAULT_ACL}")).replace(
        "traffic_type = \"ALL\"",
        &format!("traffic_type = \"ALL\"\nmax_aggregation_interval = 60\nlog_format = '{format}'"),
    );
    let c = "52.213.180.42";
    let s = "172.31.16.139";
    let t = 1_566_848_880.0; // window 1566848880-1566848939
    let frames = vec![
        // Long connection: opened in the first window, closed in the second.
        (t, tcp(c, s, 43418, 5001, "S", 0)),
        (t + 0.01, tcp(s, c, 5001, 43418, "SA", 0)),
        (t + 0.02, tcp(c, s, 43418, 5001, "A", 0)),
        (t + 1.0, tcp(c, s, 43418, 5001, "PA", 1000)),
        (t + 1.01, tcp(s, c, 5001, 43418, "A", 0)),
        // Short connection inside the first window.
        (t + 2.0, tcp(c, s, 43638, 5001, "S", 0)),
        (t + 2.01, tcp(s, c, 5001, 43638, "SA", 0)),
        (t + 2.02, tcp(c, s, 43638, 5001, "A", 0)),
        (t + 2.03, tcp(c, s, 43638, 5001, "FA", 0)),
        (t + 2.04, tcp(s, c, 5001, 43638, "FA", 0)),
        (t + 2.05, tcp(c, s, 43638, 5001, "A", 0)),
        // Second window: data then FIN each way on the long connection.
        (t + 70.0, tcp(c, s, 43418, 5001, "PA", 200)),
        (t + 71.0, tcp(s, c, 5001, 43418, "FA", 0)),
        (t + 71.5, tcp(c, s, 43418, 5001, "FA", 0)),
        (t + 72.0, tcp(s, c, 5001, 43418, "A", 0)),
        // An ACK-only exchange on another established flow (seen mid-stream): flags 0.
        (t + 80.0, tcp(s, c, 5001, 43999, "A", 0)),
    ];
    let pcap = dir.path().join("flags.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&text, &pcap);
    let prefix = "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4";
    let flags: Vec<(String, String)> = lines[0]
        .iter()
        .map(|l| {
            assert!(l.starts_with(prefix), "{l}");
            let f: Vec<&str> = l.split(' ').collect();
            (format!("{}>{}", f[9], f[10]), f[19].to_string())
        })
        .collect();
    let want = [
        ("43418>5001", "2"),
        ("5001>43418", "18"),
        ("43638>5001", "3"),
        ("5001>43638", "19"),
        ("43418>5001", "1"),
        ("5001>43418", "1"),
        ("5001>43999", "0"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(flags, want);
    // The first line in full (bytes before packets in this format).
    assert_eq!(
        lines[0][0],
        format!("{prefix} {c} {s} 43418 5001 {c} {s} 6 1120 3 1566848880 1566848881 ACCEPT 2 OK")
    );
}

/// An interface covered by the flow log with no traffic in a window gets a NODATA record; one
/// that exceeds its capacity gets a SKIPDATA record in place of the extra flows.
#[test]
fn nodata_and_skipdata_records() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"all\", cidr_block = \"0.0.0.0/0\" }]\n";
    let second = r#"
[[network_interface]]
id = "eni-11111111aaaaaaaaa"
subnet = "subnet-aaaaaaaa012345678"
private_ip_addresses = ["172.31.16.140"]
instance_id = "i-2"
security_groups = ["sg-1"]
flow_capacity = 2
"#;
    let t = 1_431_280_800.0;
    let mut frames = vec![(t + 76.0, udp("198.51.100.1", "172.31.16.139", 5000, 53, 10))];
    for port in 1..=3 {
        frames.push((
            t + 80.0 + f64::from(port),
            udp("198.51.100.1", "172.31.16.140", 6000 + port, 53, 10),
        ));
    }
    let pcap = dir.path().join("idle.pcap");
    write_pcap(&pcap, &frames);
    // Ten-minute windows, as AWS's example: instances that are not Nitro-based.
    let text = not_nitro(&topology(&format!("{sg}{DEFAULT_ACL}{second}"))).replace(
        "instance_id = \"i-2\"",
        "instance_id = \"i-2\"\nnitro = false",
    );
    let (lines, emulator) = emulate(&text, &pcap);
    assert_eq!(
        lines[0],
        [
            "2 123456789010 eni-1235b8ca123456789 198.51.100.1 172.31.16.139 5000 53 17 1 38 1431280876 1431280876 ACCEPT OK",
            "2 123456789010 eni-11111111aaaaaaaaa 198.51.100.1 172.31.16.140 6001 53 17 1 38 1431280881 1431280881 ACCEPT OK",
            "2 123456789010 eni-11111111aaaaaaaaa 198.51.100.1 172.31.16.140 6002 53 17 1 38 1431280882 1431280882 ACCEPT OK",
            "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280800 1431281399 - SKIPDATA",
        ]
    );
    assert_eq!(emulator.stats().skipped_flows, 1);

    // A second window with traffic on one interface only: the other reports NODATA.
    frames.push((
        t + 700.0,
        udp("198.51.100.1", "172.31.16.140", 7000, 53, 10),
    ));
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&text, &pcap);
    assert_eq!(
        lines[0][4..],
        [
            "2 123456789010 eni-11111111aaaaaaaaa 198.51.100.1 172.31.16.140 7000 53 17 1 38 1431281500 1431281500 ACCEPT OK",
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431281400 1431281999 - NODATA",
        ]
    );
}

/// Metadata, Time Sync, Amazon DNS (VPC + 2), DHCP and the VPC router are never logged, and
/// are counted as such; other DNS is logged.
#[test]
fn traffic_aws_never_logs_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\n";
    let me = "172.31.16.139";
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp(me, "169.254.169.254", 40000, 80, "S", 0)),
        (t, tcp("169.254.169.254", me, 80, 40000, "SA", 0)),
        (t + 1.0, udp(me, "169.254.169.123", 40001, 123, 48)),
        (t + 2.0, udp(me, "172.31.0.2", 40002, 53, 40)),
        (t + 2.1, udp("172.31.0.2", me, 53, 40002, 120)),
        (t + 3.0, udp("0.0.0.0", "255.255.255.255", 68, 67, 300)),
        (t + 4.0, udp(me, "172.31.16.1", 40003, 7, 4)),
        (t + 5.0, udp(me, "9.9.9.9", 40004, 53, 40)),
    ];
    let pcap = dir.path().join("excluded.pcap");
    write_pcap(&pcap, &frames);
    let (lines, emulator) = emulate(&topology(&format!("{sg}{DEFAULT_ACL}")), &pcap);
    assert_eq!(
        lines[0],
        [format!(
            "2 123456789010 eni-1235b8ca123456789 {me} 9.9.9.9 40004 53 17 1 68 1700000005 1700000005 ACCEPT OK"
        )]
    );
    let excluded = emulator.stats().excluded;
    let count = |e: Exclusion| excluded[Exclusion::ALL.iter().position(|x| *x == e).unwrap()];
    assert_eq!(count(Exclusion::InstanceMetadata), 2);
    assert_eq!(count(Exclusion::TimeSync), 1);
    assert_eq!(count(Exclusion::AmazonDns), 2);
    assert_eq!(count(Exclusion::Dhcp), 1);
    assert_eq!(count(Exclusion::DefaultRouter), 1);
}

/// A second VPC with an IPv6 block and one dual-stack subnet.
const V6_NETWORK: &str = r#"
[[vpc]]
id = "vpc-0000000000000v6"
cidr_blocks = ["10.9.0.0/16"]
ipv6_cidr_blocks = ["2001:db8:1234:a100::/56"]

[[subnet]]
id = "subnet-v6"
vpc = "vpc-0000000000000v6"
cidr_block = "10.9.1.0/24"
ipv6_cidr_block = "2001:db8:1234:a102::/64"
az_id = "use1-az1"
"#;

/// Every IP packet in a capture — VLAN-tagged, fragmented, IPv6 — is counted once in the
/// records of the one interface it passes: packets and bytes are conserved. ARP is skipped
/// and counted.
#[test]
fn packets_and_bytes_are_conserved_from_pcap_to_records() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"all\", cidr_block = \"0.0.0.0/0\" }, { protocol = \"all\", cidr_block = \"::/0\" }]\n";
    let v6 = V6_NETWORK.to_string()
        + r#"
[[security_group]]
id = "sg-v6"
vpc = "vpc-0000000000000v6"
inbound = [{ protocol = "tcp", port_range = 22, cidr_block = "::/0" }]

[[network_interface]]
id = "eni-v6"
subnet = "subnet-v6"
private_ip_addresses = ["10.9.1.10"]
ipv6_addresses = ["2001:db8:1234:a102:3304:8879:34cf:4071"]
instance_id = "i-v6"
security_groups = ["sg-v6"]
"#;
    let me = "172.31.16.139";
    let peer = "198.51.100.9";
    let t = 1_700_000_000.0;
    let mut frames: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut expected_packets = 0u64;
    let mut expected_bytes = 0u64;
    for i in 0..200u16 {
        let f = if i % 2 == 0 {
            tcp(
                peer,
                me,
                50000 + i % 7,
                443,
                "PA",
                usize::from(i) * 7 % 1400,
            )
        } else {
            tcp(me, peer, 443, 50000 + i % 7, "A", usize::from(i) * 3 % 1400)
        };
        expected_packets += 1;
        expected_bytes += ip_len(&f);
        frames.push((t + f64::from(i) * 0.5, f));
    }
    // A VLAN-tagged UDP packet.
    let mut vlan = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(etherparse::VlanId::try_new(42).unwrap())
        .ipv4(v4(peer), v4(me), 64)
        .udp(999, 514)
        .write(&mut vlan, &[1u8; 100])
        .unwrap();
    expected_packets += 1;
    expected_bytes += 128;
    frames.push((t + 120.0, vlan));
    // A UDP datagram of 3,000 bytes in two IPv4 fragments (the second without ports).
    for frame in fragments(peer, me, 777, 3000, 1504) {
        expected_packets += 1;
        expected_bytes += ip_len(&frame);
        frames.push((t + 121.0, frame));
    }
    // ARP: not IP, skipped.
    let mut arp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &MAC_A,
                &v4(peer),
                &[0; 6],
                &v4(me),
            )
            .unwrap(),
        )
        .write(&mut arp)
        .unwrap();
    frames.push((t + 122.0, arp));
    // IPv6 SSH to the second VPC (SPEC example 6's addresses).
    let c6: [u8; 16] = "2001:db8:1234:a100:8d6e:3477:df66:f105"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let s6: [u8; 16] = "2001:db8:1234:a102:3304:8879:34cf:4071"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let mut six = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(c6, s6, 64)
        .tcp(34892, 22, 1, 100)
        .syn()
        .write(&mut six, &[])
        .unwrap();
    frames.push((t + 123.0, six));

    let pcap = dir.path().join("mixed.pcap");
    write_pcap(&pcap, &frames);
    let text = topology(&format!("{sg}{DEFAULT_ACL}{v6}")).replace(
        r#"resource_ids = ["vpc-abcdefab012345678"]"#,
        r#"resource_ids = ["vpc-abcdefab012345678", "vpc-0000000000000v6"]"#,
    );
    let (lines, emulator) = emulate(&text, &pcap);
    let mut packets = 0;
    let mut bytes = 0;
    let mut ipv6 = Vec::new();
    for l in &lines[0] {
        let f: Vec<&str> = l.split(' ').collect();
        if f[2] == "eni-1235b8ca123456789" {
            packets += f[8].parse::<u64>().unwrap();
            bytes += f[9].parse::<u64>().unwrap();
        } else if l.ends_with(" OK") {
            ipv6.push(l.clone());
        } else {
            // The minutes the IPv6 interface (a Nitro instance's) was idle.
            assert!(l.ends_with(" NODATA"), "{l}");
            let span: i64 = f[11].parse::<i64>().unwrap() - f[10].parse::<i64>().unwrap();
            assert_eq!(span, 59, "{l}");
        }
    }
    assert_eq!((packets, bytes), (expected_packets, expected_bytes));
    assert!(
        lines[0].iter().any(|l| l.contains(" 4500 4500 17 2 3048 ")),
        "fragments kept their ports: {lines:?}"
    );
    assert_eq!(
        ipv6,
        [
            "2 123456789010 eni-v6 2001:db8:1234:a100:8d6e:3477:df66:f105 2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 1 60 1700000123 1700000123 ACCEPT OK"
        ]
    );
    assert_eq!(emulator.stats().packets, expected_packets + 1);
}

const NAT_TOPOLOGY: &str = include_str!("../../../testdata/topology/nat-gateway.toml");

/// SPEC §5's NAT gateway example: the four records of the NAT gateway's interface and the two
/// of the instance's, with pkt-srcaddr/pkt-dstaddr showing the addresses behind the NAT.
#[test]
fn nat_gateway_records_match_the_documented_example() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp("10.0.1.5", "203.0.113.5", 41000, 443, "S", 0)),
        (t + 0.1, tcp("203.0.113.5", "3.3.3.3", 443, 41000, "SA", 0)),
    ];
    let pcap = dir.path().join("nat.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(
        &format!("{NAT_TOPOLOGY}log_destination_type = \"s3\"\n"),
        &pcap,
    );
    let mut got = lines[0].clone();
    got.sort();
    let mut want = vec![
        "- eni-1235b8ca123456789 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5",
        "- eni-1235b8ca123456789 10.0.0.220 203.0.113.5 10.0.0.220 203.0.113.5",
        "- eni-1235b8ca123456789 203.0.113.5 10.0.0.220 203.0.113.5 10.0.0.220",
        "- eni-1235b8ca123456789 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5",
        "i-01234567890123456 eni-1111aaaa2222bbbb3 10.0.1.5 203.0.113.5 10.0.1.5 203.0.113.5",
        "i-01234567890123456 eni-1111aaaa2222bbbb3 203.0.113.5 10.0.1.5 203.0.113.5 10.0.1.5",
    ];
    want.sort();
    assert_eq!(got, want);
}

/// Two instances behind one NAT gateway use the same source port to the same server, one after
/// the other: the gateway's port then maps to the second, so the server's replies reach the
/// second instance, not the first (whose connection has closed, so they would be rejected).
#[test]
fn a_nat_port_reused_by_another_host_sends_the_replies_there() {
    let t = 1_700_000_000.0;
    let (a, b, server, nat) = ("10.0.1.5", "10.0.1.6", "203.0.113.5", "3.3.3.3");
    let mut frames = Vec::new();
    for (at, host) in [(t, a), (t + 10.0, b)] {
        frames.extend([
            (at, tcp(host, server, 41000, 443, "S", 0)),
            (at + 0.1, tcp(server, nat, 443, 41000, "SA", 0)),
            (at + 0.2, tcp(host, server, 41000, 443, "FA", 0)),
            (at + 0.3, tcp(server, nat, 443, 41000, "FA", 0)),
            (at + 0.4, tcp(host, server, 41000, 443, "A", 0)),
        ]);
    }
    let second = "[[network_interface]]\nid = \"eni-2222aaaa2222bbbb3\"\nsubnet = \"subnet-private\"\n\
                  private_ip_addresses = [\"10.0.1.6\"]\ninstance_id = \"i-02\"\n\
                  security_groups = [\"sg-1\"]\n\n[[flow_log]]";
    let text = format!("{NAT_TOPOLOGY}log_destination_type = \"s3\"\n").replacen(
        "[[flow_log]]",
        second,
        1,
    );
    let (lines, _) = emulate_frames(&text, &frames);
    let into = |host: &str| {
        lines[0]
            .iter()
            .filter(|l| l.contains(&format!(" {server} {host} {server} {host}")))
            .count()
    };
    assert_eq!((into(a), into(b)), (1, 1), "{:#?}", lines[0]);
}

/// Capture filters: an ACCEPT-only and a REJECT-only flow log on the same interface split its
/// records between them; traffic-path, flow-direction and pkt-*-aws-service follow SPEC §1.
#[test]
fn traffic_type_filters_and_v5_fields() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\n";
    let s3 = "\n[[aws_ip_range]]\ncidr_block = \"52.95.128.0/21\"\nservice = \"S3\"\n";
    let v5 = "${flow-direction} ${traffic-path} ${srcaddr} ${dstaddr} ${action} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${tcp-flags}";
    let logs = format!(
        "\n[[flow_log]]\nid = \"fl-a\"\nresource_type = \"NetworkInterface\"\nresource_ids = [\"eni-1235b8ca123456789\"]\ntraffic_type = \"ACCEPT\"\nlog_format = '{v5}'\nlog_destination_type = \"s3\"\n\n[[flow_log]]\nid = \"fl-r\"\nresource_type = \"Subnet\"\nresource_ids = [\"subnet-aaaaaaaa012345678\"]\ntraffic_type = \"REJECT\"\nlog_format = '{v5}'\nlog_destination_type = \"s3\"\n"
    );
    let text = format!("{VPC_172}{sg}{DEFAULT_ACL}{s3}{logs}");
    let me = "172.31.16.139";
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp(me, "52.95.128.179", 34210, 80, "S", 0)),
        (t + 0.1, tcp("52.95.128.179", me, 80, 34210, "SA", 0)),
        (t + 0.2, tcp("52.95.128.179", me, 80, 9999, "S", 0)),
    ];
    let pcap = dir.path().join("filters.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&text, &pcap);
    assert_eq!(
        lines[0],
        [
            format!("egress 8 {me} 52.95.128.179 ACCEPT - S3 2"),
            format!("ingress - 52.95.128.179 {me} ACCEPT S3 - 18"),
        ]
    );
    assert_eq!(
        lines[1],
        [format!("ingress - 52.95.128.179 {me} REJECT S3 - 2")]
    );
}

/// pcapng with nanosecond timestamps (if_tsresol = 9) gives the same records as pcap.
#[test]
fn pcapng_timestamps_follow_the_interface_resolution() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::{Block, PcapNgWriter};
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"udp\", port_range = 53, cidr_block = \"0.0.0.0/0\" }]\n";
    let path = dir.path().join("x.pcapng");
    let mut w = PcapNgWriter::new(File::create(&path).unwrap()).unwrap();
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_block(&Block::InterfaceDescription(idb)).unwrap();
    for (secs, frame) in [
        (
            1_700_000_007u64,
            udp("198.51.100.1", "172.31.16.139", 5353, 53, 20),
        ),
        (
            1_700_000_019u64,
            udp("198.51.100.1", "172.31.16.139", 5353, 53, 20),
        ),
    ] {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            // Raw units of 1 ns (pcap-file stores the raw value as a Duration's nanoseconds).
            timestamp: Duration::from_nanos(secs * 1_000_000_000 + 123),
            original_len: frame.len() as u32,
            data: Cow::Owned(frame),
            options: vec![],
        };
        w.write_block(&Block::EnhancedPacket(epb)).unwrap();
    }
    drop(w);
    let (lines, _) = emulate(&topology(&format!("{sg}{DEFAULT_ACL}")), &path);
    assert_eq!(
        lines[0],
        [
            "2 123456789010 eni-1235b8ca123456789 198.51.100.1 172.31.16.139 5353 53 17 2 96 1700000007 1700000019 ACCEPT OK"
        ]
    );
}

/// A corrupt capture: the packets before the damage are kept, the error names the file and frame.
#[test]
fn truncated_pcap_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cut.pcap");
    let frames: Vec<_> = (0..10)
        .map(|i| {
            (
                1_700_000_000.0 + f64::from(i),
                udp("198.51.100.1", "172.31.16.139", 1, 2, 30),
            )
        })
        .collect();
    write_pcap(&pcap, &frames);
    let bytes = std::fs::read(&pcap).unwrap();
    std::fs::write(&pcap, &bytes[..bytes.len() - 20]).unwrap();
    let mut source = PcapSource::open(&pcap).unwrap();
    let mut good = 0;
    let mut error = None;
    while let Some(p) = source.next_packet() {
        match p {
            Ok(_) => good += 1,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    assert_eq!(good, 9);
    let error = error.expect("the cut is reported");
    assert!(
        error.contains("cut.pcap") && error.contains("frame 10"),
        "{error}"
    );
    std::fs::write(&pcap, b"not a capture at all").unwrap();
    let err = PcapSource::open(&pcap).err().expect("refused").to_string();
    assert!(err.contains("cut.pcap"), "{err}");
}

fn scenario_lines(
    seed: u64,
    incidents: bool,
    duration: i64,
) -> (
    Vec<String>,
    flowscope_capture::scenario::Truth,
    flowscope_vpc::EmulatorStats,
) {
    let options = ScenarioOptions {
        start: 1_762_070_400,
        duration,
        seed,
        incidents,
    };
    let topology = Topology::from_toml(THREE_TIER_TOPOLOGY).unwrap();
    let mut emulator = Emulator::new(topology);
    emulator.start_at(options.start);
    let mut scenario = ThreeTier::new(&options);
    let mut previous = 0;
    for p in scenario.by_ref() {
        assert!(p.time_us >= previous, "packets come in time order");
        previous = p.time_us;
        emulator.process(&p);
    }
    emulator.advance_to(options.start + duration);
    let lines = lines(&mut emulator).remove(0);
    (lines, scenario.truth().clone(), emulator.stats().clone())
}

/// The built-in scenario: reproducible from its seed, read back by the codec with no rejected
/// line, every incident visible in the records.
#[test]
fn three_tier_scenario_is_reproducible_and_shows_its_incidents() {
    let (lines, truth, stats) = scenario_lines(7, true, 1200);
    let (again, _, _) = scenario_lines(7, true, 1200);
    assert_eq!(lines, again, "same seed, same records");
    let (other, _, _) = scenario_lines(8, true, 1200);
    assert_ne!(lines, other, "another seed, other records");
    assert_eq!(truth.incidents.len(), 8);
    assert!(
        stats.excluded.iter().sum::<u64>() > 0,
        "metadata/DNS chatter was left out"
    );

    // The codec reads every line back.
    let mut decoder = TextDecoder::new(LogFormat::default_format(), 1 << 20);
    for l in &lines {
        decoder
            .decode_line(l.as_bytes())
            .unwrap_or_else(|e| panic!("{l}: {e:?}"));
    }
    assert_eq!(decoder.flush().map_or(0, |b| b.num_rows()), lines.len());

    // Twenty 60-second windows, each with NODATA only for idle interfaces, never for busy ones.
    assert!(lines.iter().any(|l| l.ends_with("NODATA")));
    let has = |needle: &[&str]| lines.iter().any(|l| needle.iter().all(|n| l.contains(n)));
    // Port scan: rejected probes of the bastion from the scanner.
    assert!(has(&[
        "eni-0a00000000000a030 198.51.100.23 10.0.0.30",
        "REJECT"
    ]));
    // Brute force: accepted SSH sessions from the brute forcer.
    assert!(has(&[
        "eni-0a00000000000a030 203.0.113.77 10.0.0.30",
        " 22 6 ",
        "ACCEPT"
    ]));
    // NACL incident: replies to the batch host rejected on its interface.
    assert!(has(&[
        "eni-0a0000000000a4011 52.94.2.10 10.0.40.11 443",
        "REJECT"
    ]));
    assert!(has(&[
        "eni-0a0000000000a4011 10.0.40.11 52.94.2.10",
        "443 6",
        "ACCEPT"
    ]));
    // SG incident: the database rejects the reporting host.
    assert!(has(&[
        "eni-0a0000000000a3011 10.0.20.40 10.0.30.11",
        " 5432 6 ",
        "REJECT"
    ]));
    // Exfiltration through the NAT gateway: large egress on its interface.
    let exfil: u64 = lines
        .iter()
        .filter(|l| l.contains("eni-0a00000000000a010 10.0.0.10 192.0.2.99"))
        .map(|l| l.split(' ').nth(9).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(exfil > 50_000_000, "exfiltrated bytes {exfil}");

    let (clean, truth, _) = scenario_lines(7, false, 1200);
    assert!(truth.incidents.is_empty());
    // Connections end (FIN, RST, idle timeouts) yet no ordinary connection's reply is rejected:
    // what the clean run rejects is the internet's probes of service ports.
    let rejected_replies: Vec<&String> = clean
        .iter()
        .filter(|l| l.ends_with("REJECT OK"))
        .filter(|l| l.split(' ').nth(6).unwrap().parse::<u16>().unwrap() >= 32768)
        .collect();
    assert_eq!(rejected_replies, Vec::<&String>::new());
    assert!(clean.iter().any(|l| l.ends_with("REJECT OK")));
    assert!(
        !clean
            .iter()
            .any(|l| l.contains("198.51.100.23") || l.contains("192.0.2.99"))
    );
}

#[test]
fn wire_packet_is_small() {
    assert!(std::mem::size_of::<WirePacket>() <= 64);
}

/// A capture cut to 54 bytes a frame (`tcpdump -s 54`): records still count the packets'
/// full IP lengths.
#[test]
fn snap_length_truncated_captures_count_full_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"tcp\", port_range = 443, cidr_block = \"0.0.0.0/0\" }]\n";
    let path = dir.path().join("short.pcap");
    let header = pcap_file::pcap::PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 54,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap();
    let mut total = 0;
    for i in 0..5u64 {
        let f = tcp("198.51.100.3", "172.31.16.139", 41000, 443, "PA", 1000);
        total += ip_len(&f);
        let ts = Duration::from_secs(1_700_000_000 + i);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, &f[..54]))
            .unwrap();
    }
    drop(w);
    let (lines, _) = emulate(&topology(&format!("{sg}{DEFAULT_ACL}")), &path);
    assert_eq!(total, 5 * 1040);
    assert_eq!(
        lines[0],
        [format!(
            "2 123456789010 eni-1235b8ca123456789 198.51.100.3 172.31.16.139 41000 443 6 5 {total} 1700000000 1700000004 ACCEPT OK"
        )]
    );
}

/// AWS (EC2 API reference, CreateFlowLogs `MaxAggregationInterval`): "When a network interface
/// is attached to a Nitro-based instance, the aggregation interval is always 60 seconds or less,
/// regardless of the value that you specify." A 600-s flow log over one connection that
/// sends a packet every 30 s for five minutes: on a Nitro instance (the default) no record spans
/// more than 60 s; on an instance that is not (`nitro = false`), one record spans the traffic.
#[test]
fn nitro_instances_aggregate_over_a_minute_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let sg = r#"
[[security_group]]
id = "sg-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ protocol = "tcp", port_range = 443, cidr_block = "0.0.0.0/0" }]
"#;
    let c = "52.213.180.42";
    let s = "172.31.16.139";
    let t = 1_566_849_000.0; // a multiple of 600: one 600-s window holds it all
    let frames: Vec<(f64, Vec<u8>)> = (0..10)
        .map(|i| (t + 30.0 * f64::from(i), tcp(c, s, 43418, 443, "PA", 100)))
        .collect();
    let pcap = dir.path().join("slow.pcap");
    write_pcap(&pcap, &frames);
    let nitro = topology(&format!("{sg}{DEFAULT_ACL}")).replace(
        "traffic_type = \"ALL\"",
        "traffic_type = \"ALL\"\nmax_aggregation_interval = 600",
    );
    assert!(nitro.contains("max_aggregation_interval = 600"));
    let spans = |lines: &[String]| -> Vec<(i64, i64, u64)> {
        lines
            .iter()
            .filter(|l| l.ends_with("ACCEPT OK"))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (
                    f[10].parse().unwrap(),
                    f[11].parse().unwrap(),
                    f[8].parse().unwrap(),
                )
            })
            .collect()
    };
    let (lines, _) = emulate(&nitro, &pcap);
    let on_nitro = spans(&lines[0]);
    assert_eq!(on_nitro.len(), 5, "{:#?}", lines[0]);
    for (start, end, packets) in &on_nitro {
        assert!(end - start < 60, "{start}..{end}");
        assert_eq!(start.div_euclid(60), end.div_euclid(60));
        assert_eq!(*packets, 2);
    }
    assert_eq!(on_nitro.iter().map(|r| r.2).sum::<u64>(), 10);
    let xen = not_nitro(&nitro);
    assert_ne!(xen, nitro);
    let (lines, _) = emulate(&xen, &pcap);
    assert_eq!(
        spans(&lines[0]),
        [(1_566_849_000, 1_566_849_270, 10)],
        "{:#?}",
        lines[0]
    );
}

/// AWS, *Flow log limitations*: "If your network interface has multiple IPv4 addresses and
/// traffic is sent to a secondary private IPv4 address, the flow log displays the primary
/// private IPv4 address in the dstaddr field. To capture the original destination IP address,
/// create a flow log with the pkt-dstaddr field." AWS says this of secondary private IPv4
/// addresses only: traffic to a second IPv6 address of the interface shows that address.
#[test]
fn secondary_ipv4_shows_the_primary_and_secondary_ipv6_shows_itself() {
    let dir = tempfile::tempdir().unwrap();
    let vpc = V6_NETWORK.to_string()
        + r#"
[[security_group]]
id = "sg-v6"
vpc = "vpc-0000000000000v6"
inbound = [{ protocol = "tcp", port_range = 22, cidr_block = "0.0.0.0/0" }, { protocol = "tcp", port_range = 22, cidr_block = "::/0" }]

[[network_interface]]
id = "eni-two"
subnet = "subnet-v6"
private_ip_addresses = ["10.9.1.10", "10.9.1.11"]
ipv6_addresses = ["2001:db8:1234:a102::10", "2001:db8:1234:a102::11"]
instance_id = "i-two"
security_groups = ["sg-v6"]

[[flow_log]]
id = "fl-1"
resource_type = "NetworkInterface"
resource_ids = ["eni-two"]
traffic_type = "ALL"
max_aggregation_interval = 60
log_destination_type = "s3"
log_format = "${interface-id} ${srcaddr} ${dstaddr} ${pkt-srcaddr} ${pkt-dstaddr} ${dstport} ${action}"
"#;
    let six = |src: &str, dst: &str| {
        let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            (src.parse().unwrap(), dst.parse().unwrap());
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(s.octets(), d.octets(), 64)
            .tcp(40_000, 22, 1, 100)
            .syn()
            .write(&mut f, &[])
            .unwrap();
        f
    };
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp("198.51.100.7", "10.9.1.10", 40_000, 22, "S", 0)),
        (
            t + 1.0,
            tcp("198.51.100.7", "10.9.1.11", 40_000, 22, "S", 0),
        ),
        (t + 2.0, six("2001:db8:ffff::7", "2001:db8:1234:a102::10")),
        (t + 3.0, six("2001:db8:ffff::7", "2001:db8:1234:a102::11")),
    ];
    let pcap = dir.path().join("secondary.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(
        &format!("account_id = \"123456789010\"\nregion = \"us-east-1\"\n{vpc}"),
        &pcap,
    );
    assert_eq!(
        lines[0],
        [
            "eni-two 198.51.100.7 10.9.1.10 198.51.100.7 10.9.1.10 22 ACCEPT",
            "eni-two 198.51.100.7 10.9.1.10 198.51.100.7 10.9.1.11 22 ACCEPT",
            "eni-two 2001:db8:ffff::7 2001:db8:1234:a102::10 2001:db8:ffff::7 2001:db8:1234:a102::10 22 ACCEPT",
            "eni-two 2001:db8:ffff::7 2001:db8:1234:a102::11 2001:db8:ffff::7 2001:db8:1234:a102::11 22 ACCEPT",
        ]
    );
}

/// AWS, *Flow log records* (`account-id`): "If the network interface is created by an AWS
/// service, for example when creating a VPC endpoint or Network Load Balancer, the record may
/// display unknown for this field." A topology says which interfaces are such.
#[test]
fn interfaces_an_aws_service_created_may_show_account_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = r#"
[[security_group]]
id = "sg-1"
vpc = "vpc-abcdefab012345678"
inbound = [{ protocol = "tcp", port_range = 443, cidr_block = "0.0.0.0/0" }]

[[network_interface]]
id = "eni-0endpoint000000001"
subnet = "subnet-aaaaaaaa012345678"
private_ip_addresses = ["172.31.16.50"]
interface_type = "vpc_endpoint"
account_id = "unknown"
security_groups = ["sg-1"]
"#;
    let t = 1_700_000_000.0;
    let frames = vec![(t, tcp("172.31.16.139", "172.31.16.50", 40_000, 443, "S", 0))];
    let pcap = dir.path().join("endpoint.pcap");
    write_pcap(&pcap, &frames);
    let (lines, _) = emulate(&topology(&format!("{endpoint}{DEFAULT_ACL}")), &pcap);
    let ok: Vec<&String> = lines[0].iter().filter(|l| l.ends_with(" OK")).collect();
    assert_eq!(ok.len(), 2, "{lines:?}");
    assert!(
        ok.iter()
            .any(|l| l.starts_with("2 123456789010 eni-1235b8ca123456789 ")),
        "{ok:?}"
    );
    assert!(
        ok.iter()
            .any(|l| l.starts_with("2 unknown eni-0endpoint000000001 ")),
        "{ok:?}"
    );
    // Anything else than 12 digits or `unknown` is a located mistake.
    let bad = topology(&format!("{endpoint}{DEFAULT_ACL}")).replace("\"unknown\"", "\"12345\"");
    let mistakes = Topology::from_toml(&bad).unwrap_err();
    let text = format!("{mistakes:?}");
    assert!(
        text.contains("account_id must be 12 digits, or `unknown`"),
        "{text}"
    );
}

/// The fragments of one UDP datagram as IPv4 frames: `(offset in the UDP part, piece, more)`.
fn fragments(src: &str, dst: &str, id: u16, size: usize, piece: usize) -> Vec<Vec<u8>> {
    let mut datagram = Vec::new();
    PacketBuilder::ipv4(v4(src), v4(dst), 64)
        .udp(4500, 4500)
        .write(&mut datagram, &vec![7u8; size])
        .unwrap();
    let udp_part = &datagram[20..];
    udp_part
        .chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * piece;
            let more = offset + chunk.len() < udp_part.len();
            let mut h =
                Ipv4Header::new(chunk.len() as u16, 64, IpNumber::UDP, v4(src), v4(dst)).unwrap();
            h.identification = id;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
            let mut frame = Vec::new();
            etherparse::Ethernet2Header {
                source: MAC_A,
                destination: MAC_B,
                ether_type: etherparse::EtherType::IPV4,
            }
            .write(&mut frame)
            .unwrap();
            h.write(&mut frame).unwrap();
            frame.extend_from_slice(chunk);
            frame
        })
        .collect()
}

/// A first fragment that arrives after the later ones: every fragment counts, in packets and
/// bytes, with the datagram's ports (which only the first carries). A later fragment whose
/// first never comes is counted as an orphan, not as a packet of some flow.
#[test]
fn fragments_out_of_order_are_counted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"udp\", port_range = 4500, cidr_block = \"0.0.0.0/0\" }]\n";
    let (peer, me) = ("198.51.100.9", "172.31.16.139");
    let pieces = fragments(peer, me, 4242, 4000, 1480);
    assert_eq!(pieces.len(), 3);
    let bytes: u64 = pieces.iter().map(|f| ip_len(f)).sum();
    let t = 1_700_000_000.0;
    let mut frames = vec![
        (t, pieces[2].clone()),
        (t + 0.001, pieces[1].clone()),
        (t + 0.002, pieces[0].clone()),
    ];
    // A lone later fragment of another datagram, whose first never comes.
    let lone = fragments(peer, me, 4343, 3000, 1480);
    frames.push((t + 1.0, lone[1].clone()));
    let pcap = dir.path().join("fragments.pcap");
    write_pcap(&pcap, &frames);
    let (lines, emulator) = emulate(&topology(&format!("{sg}{DEFAULT_ACL}")), &pcap);
    let udp: Vec<&String> = lines[0].iter().filter(|l| l.contains(" 17 ")).collect();
    assert_eq!(udp.len(), 1, "{lines:?}");
    assert!(
        udp[0].contains(&format!(" {peer} {me} 4500 4500 17 3 {bytes} ")),
        "{udp:?}"
    );
    assert_eq!(emulator.stats().packets, 3);

    // The capture's own count says what happened to the lone one.
    let mut source = PcapSource::open(&pcap).unwrap();
    let mut packets = 0;
    while let Some(p) = source.next_packet() {
        p.unwrap();
        packets += 1;
    }
    assert_eq!(packets, 3);
    assert_eq!(source.stats().frames, 4);
    assert_eq!(source.stats().orphan_fragments, 1);
}

/// Runs `frames` (written as a pcap) through the emulator of `topology`.
fn emulate_frames(topology: &str, frames: &[(f64, Vec<u8>)]) -> (Vec<Vec<String>>, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("frames.pcap");
    write_pcap(&pcap, frames);
    emulate(topology, &pcap)
}

/// The REJECT records of `lines`: (srcaddr, srcport, dstaddr, dstport, packets, start).
fn rejects(lines: &[String]) -> Vec<(String, u16, String, u16, u64, i64)> {
    lines
        .iter()
        .filter(|l| l.ends_with("REJECT OK"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[3].to_string(),
                f[5].parse().unwrap(),
                f[4].to_string(),
                f[6].parse().unwrap(),
                f[8].parse().unwrap(),
                f[10].parse().unwrap(),
            )
        })
        .collect()
}

/// `sg-1` with no inbound rules (and AWS's default outbound rule): only replies get in.
const SG_NO_INBOUND: &str =
    "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\n";

/// A whole HTTPS connection from the instance, closed by a FIN each way and the last ACK.
fn closed_connection(t: f64, me: &str, server: &str) -> Vec<(f64, Vec<u8>)> {
    vec![
        (t, tcp(me, server, 40000, 443, "S", 0)),
        (t + 0.1, tcp(server, me, 443, 40000, "SA", 0)),
        (t + 0.2, tcp(me, server, 40000, 443, "A", 0)),
        (t + 0.3, tcp(server, me, 443, 40000, "PA", 500)),
        (t + 0.4, tcp(me, server, 40000, 443, "FA", 0)),
        (t + 0.5, tcp(server, me, 443, 40000, "FA", 0)),
        (t + 0.6, tcp(me, server, 40000, 443, "A", 0)),
    ]
}

/// AWS, *Logging IP traffic using VPC Flow Logs* (`action`): REJECT includes "packets arrived
/// after the connection was closed". A connection closed by a FIN each way passes its last
/// packets for a grace of 120 s (assumed: AWS gives no value; Linux conntrack's TIME_WAIT), so
/// an ordinary close adds no REJECT; a packet after that is judged afresh by the rules, and
/// with no inbound rule it is rejected. An RST closes with a 10 s grace (assumed).
#[test]
fn packets_after_the_connection_closed_are_rejected() {
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let mut frames = closed_connection(t, me, server);
    // A retransmitted FIN within the grace passes; one after it does not.
    frames.push((t + 60.0, tcp(server, me, 443, 40000, "FA", 0)));
    frames.push((t + 121.0, tcp(server, me, 443, 40000, "FA", 0)));
    // A second connection reset by the server: a straggler 5 s later passes, one 11 s later not.
    frames.extend([
        (t + 200.0, tcp(me, server, 40001, 443, "S", 0)),
        (t + 200.1, tcp(server, me, 443, 40001, "SA", 0)),
        (t + 200.2, tcp(server, me, 443, 40001, "R", 0)),
        (t + 205.2, tcp(server, me, 443, 40001, "RA", 0)),
        (t + 211.5, tcp(server, me, 443, 40001, "RA", 0)),
    ]);
    let (lines, _) = emulate_frames(&topology(&format!("{SG_NO_INBOUND}{DEFAULT_ACL}")), &frames);
    let s = server.to_string();
    let m = me.to_string();
    assert_eq!(
        rejects(&lines[0]),
        [
            (s.clone(), 443, m.clone(), 40000, 1, 1_700_000_121),
            (s, 443, m, 40001, 1, 1_700_000_211),
        ],
        "{:#?}",
        lines[0]
    );
    // Everything else was accepted: 7 + 1 packets of the first connection, 4 of the second.
    let accepted: u64 = lines[0]
        .iter()
        .filter(|l| l.ends_with("ACCEPT OK"))
        .map(|l| l.split(' ').nth(8).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(accepted, 12);
}

/// A new SYN on the ports of a closing connection starts a new connection, judged by the
/// rules: the instance's own new connection is let out and its replies in.
#[test]
fn a_new_connection_may_reuse_the_ports_of_a_closed_one() {
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let mut frames = closed_connection(t, me, server);
    frames.extend(closed_connection(t + 5.0, me, server));
    frames.extend(closed_connection(t + 300.0, me, server));
    let (lines, _) = emulate_frames(&topology(&format!("{SG_NO_INBOUND}{DEFAULT_ACL}")), &frames);
    assert_eq!(rejects(&lines[0]), [], "{:#?}", lines[0]);
}

/// AWS, API `ConnectionTrackingSpecification`: `udpTimeout` "Timeout (in seconds) for idle UDP
/// flows that have seen traffic only in a single direction or a single request-response
/// transaction. Min: 30 seconds. Max: 60 seconds. Default: 30 seconds."; `udpStreamTimeout`
/// "... for idle UDP flows classified as streams which have seen more than one request-response
/// transaction. Min: 60 seconds. Max: 180 seconds (3 minutes). Default: 180 seconds." An answer
/// after the flow idled out is judged afresh, and with no inbound rule rejected; an interface's
/// `connection_tracking_specification` changes the timeouts.
#[test]
fn idle_udp_flows_time_out_as_documented_and_per_interface() {
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let frames = vec![
        // One request-response, then a late answer 40 s after it: past 30 s.
        (t, udp(me, server, 5000, 514, 100)),
        (t + 0.1, udp(server, me, 514, 5000, 100)),
        (t + 40.1, udp(server, me, 514, 5000, 100)),
        // Two request-responses (a stream), then an answer 100 s later: within 180 s.
        (t + 200.0, udp(me, server, 5001, 514, 100)),
        (t + 200.1, udp(server, me, 514, 5001, 100)),
        (t + 201.0, udp(me, server, 5001, 514, 100)),
        (t + 201.1, udp(server, me, 514, 5001, 100)),
        (t + 301.1, udp(server, me, 514, 5001, 100)),
        // ... and one 181 s after that: past 180 s.
        (t + 482.2, udp(server, me, 514, 5001, 100)),
    ];
    let base = topology(&format!("{SG_NO_INBOUND}{DEFAULT_ACL}"));
    let (lines, _) = emulate_frames(&base, &frames);
    let late: Vec<(u16, i64)> = rejects(&lines[0]).iter().map(|r| (r.3, r.5)).collect();
    assert_eq!(
        late,
        [(5000, 1_700_000_040), (5001, 1_700_000_482)],
        "{:#?}",
        lines[0]
    );
    // udp_timeout = 60 keeps the first flow for the late answer; udp_stream_timeout = 60
    // loses the stream before its answer 100 s later.
    let line = "security_groups = [\"sg-1\"]";
    let tuned = base.replace(
        line,
        &format!(
            "{line}\nconnection_tracking_specification = {{ udp_timeout = 60, udp_stream_timeout = 60 }}"
        ),
    );
    assert_ne!(tuned, base);
    let (lines, _) = emulate_frames(&tuned, &frames);
    let late: Vec<(u16, i64)> = rejects(&lines[0]).iter().map(|r| (r.3, r.5)).collect();
    assert_eq!(
        late,
        [(5001, 1_700_000_301), (5001, 1_700_000_482)],
        "{:#?}",
        lines[0]
    );
}

/// AWS, API `ConnectionTrackingSpecification`: `tcpEstablishedTimeout` "Timeout (in seconds)
/// for idle TCP connections in an established state. Min: 60 seconds. Max: 432000 seconds (5
/// days). Default: 432000 seconds." With 60 s, the server's data after 61 idle seconds is
/// judged afresh and rejected; with the default it is a reply. A value out of range is a
/// mistake shown where it is.
#[test]
fn idle_tcp_connections_time_out_after_the_interface_timeout() {
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, tcp(me, server, 40000, 443, "S", 0)),
        (t + 0.1, tcp(server, me, 443, 40000, "SA", 0)),
        (t + 0.2, tcp(me, server, 40000, 443, "A", 0)),
        (t + 61.2, tcp(server, me, 443, 40000, "PA", 100)),
    ];
    let base = topology(&format!("{SG_NO_INBOUND}{DEFAULT_ACL}"));
    let (lines, _) = emulate_frames(&base, &frames);
    assert_eq!(rejects(&lines[0]), [], "{:#?}", lines[0]);
    let line = "security_groups = [\"sg-1\"]";
    let with = |spec: &str| base.replace(line, &format!("{line}\n{spec}"));
    let (lines, _) = emulate_frames(
        &with("connection_tracking_specification = { tcp_established_timeout = 60 }"),
        &frames,
    );
    assert_eq!(
        rejects(&lines[0]),
        [(
            server.to_string(),
            443,
            me.to_string(),
            40000,
            1,
            1_700_000_061
        )]
    );
    let wrong = with("connection_tracking_specification = { tcp_established_timeout = 30 }");
    let mistakes = Topology::from_toml(&wrong).unwrap_err();
    let shown: Vec<String> = mistakes.iter().map(ToString::to_string).collect();
    let at = wrong.lines().position(|l| l.contains("= 30 }")).unwrap() + 1;
    assert!(
        shown.iter().any(
            |m| m.contains("tcp_established_timeout must be 60-432000 seconds")
                && m.starts_with(&format!("line {at},"))
        ),
        "{shown:?}"
    );
    let unknown = with("connection_tracking_specification = { tcp_timeout = 60 }");
    assert!(Topology::from_toml(&unknown).is_err());
}

/// AWS, *Amazon EC2 security group connection tracking*: "ICMP traffic is always tracked." An
/// echo's reply passes as a reply; AWS gives no ICMP timeout, so 30 s is assumed (Linux
/// conntrack's): a reply 31 s after the echo is judged afresh and, with no inbound ICMP rule,
/// rejected.
#[test]
fn icmp_is_always_tracked_for_thirty_seconds() {
    let me = "172.31.16.139";
    let server = "198.51.100.7";
    let t = 1_700_000_000.0;
    let frames = vec![
        (t, ping(me, server, false, 1)),
        (t + 0.01, ping(server, me, true, 1)),
        (t + 31.0, ping(server, me, true, 1)),
    ];
    let (lines, _) = emulate_frames(&topology(&format!("{SG_NO_INBOUND}{DEFAULT_ACL}")), &frames);
    assert_eq!(
        rejects(&lines[0]),
        [(server.to_string(), 0, me.to_string(), 0, 1, 1_700_000_031)],
        "{:#?}",
        lines[0]
    );
}

/// AWS's windows are not cut by a wall clock: its NODATA example spans 1431280876 →
/// 1431280934 and its records 1566848875 → 1566848933 (*Flow log record examples*), and
/// records of one interval never span more than it. Each interface's windows open at the first
/// packet (or the run's start), close at most one interval later at a phase of the
/// interface's own, drawn from the seed, and follow back to back: records start at their
/// flow's first packet in the window and end at its last, within the window.
#[test]
fn capture_windows_run_per_interface_on_a_seeded_phase() {
    let sg = "\n[[security_group]]\nid = \"sg-1\"\nvpc = \"vpc-abcdefab012345678\"\ninbound = [{ protocol = \"all\", cidr_block = \"0.0.0.0/0\" }]\n";
    let second = "\n[[network_interface]]\nid = \"eni-11111111aaaaaaaaa\"\nsubnet = \"subnet-aaaaaaaa012345678\"\n\
                  private_ip_addresses = [\"172.31.16.140\"]\ninstance_id = \"i-2\"\nsecurity_groups = [\"sg-1\"]\n";
    let text = topology(&format!("{sg}{DEFAULT_ACL}{second}"));
    let t = 1_700_000_000.0; // a multiple of 20, not of 60
    let mut frames = Vec::new();
    for s in 0..300 {
        for dst in ["172.31.16.139", "172.31.16.140"] {
            frames.push((t + f64::from(s), udp("198.51.100.1", dst, 5000, 53, 10)));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("steady.pcap");
    write_pcap(&pcap, &frames);
    let run = |emulator: fn(Topology) -> Emulator| {
        let topology = Topology::from_toml(&text).unwrap();
        run_pcap(emulator(topology), &pcap).0.remove(0)
    };
    // Per interface: the (start, end) of its records, in order.
    let spans = |lines: &[String], eni: &str| -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = lines
            .iter()
            .filter(|l| l.contains(eni) && l.ends_with("ACCEPT OK"))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[10].parse().unwrap(), f[11].parse().unwrap())
            })
            .collect();
        v.sort_unstable();
        v
    };
    let first = 1_700_000_000;
    let last = first + 299;
    let check = |lines: &[String]| -> Vec<i64> {
        let mut phases = Vec::new();
        for eni in ["eni-1235b8ca123456789", "eni-11111111aaaaaaaaa"] {
            let spans = spans(lines, eni);
            assert_eq!(spans[0].0, first, "opens at the first packet");
            assert_eq!(spans.last().unwrap().1, last);
            assert!(spans[0].1 - spans[0].0 < 60);
            for w in spans.windows(2) {
                assert_eq!(w[1].0, w[0].1 + 1, "back to back: {spans:?}");
            }
            for (i, (start, end)) in spans.iter().enumerate() {
                assert!(end - start < 60, "{spans:?}");
                if i > 0 && i + 1 < spans.len() {
                    assert_eq!(end - start, 59, "a whole window: {spans:?}");
                }
            }
            phases.push((spans[0].1 + 1).rem_euclid(60));
        }
        phases
    };
    let seeded = |seed| {
        let topology = Topology::from_toml(&text).unwrap();
        run_pcap(Emulator::with_seed(topology, seed), &pcap)
            .0
            .remove(0)
    };
    let one = seeded(1);
    assert_eq!(one, seeded(1), "the same seed, the same windows");
    let phases = check(&one);
    assert_ne!(phases[0], phases[1], "interfaces have phases of their own");
    assert!(phases.iter().any(|p| *p != 0), "not cut on the minute");
    let other = seeded(2);
    assert_ne!(check(&other), phases, "another seed, other phases");
    assert_eq!(check(&run(Emulator::new)), check(&seeded(0)));
    // Aligned: every window ends on the minute.
    assert_eq!(check(&run(Emulator::aligned)), [0, 0]);
}
