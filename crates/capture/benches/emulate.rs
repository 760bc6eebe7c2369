//! Packets per second from a capture to flow log records.
//!
//! The capture is the built-in `three-tier` scenario (with incidents) written as a pcap of
//! Ethernet frames, so flows, verdicts, NAT and windows are those of a realistic VPC. Measured:
//! the emulator alone on decoded packets, and the whole path from the pcap file (read, decode,
//! judge, aggregate, close windows).

use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use flowscope_capture::PcapSource;
use flowscope_capture::scenario::{ScenarioOptions, THREE_TIER_TOPOLOGY, ThreeTier};
use flowscope_vpc::{Emulator, Topology, WirePacket};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

const SECONDS: i64 = 1800;

fn packets() -> Vec<WirePacket> {
    let options = ScenarioOptions {
        start: 1_762_070_400,
        duration: SECONDS,
        seed: 1,
        incidents: true,
    };
    ThreeTier::new(&options).collect()
}

fn frame(p: &WirePacket) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else {
        unreachable!("the scenario is IPv4")
    };
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
        src.octets(),
        dst.octets(),
        64,
    );
    let mut out = Vec::with_capacity(p.bytes as usize + 14);
    if p.protocol == 6 {
        let mut t = b.tcp(p.src_port, p.dst_port, 1, 65535);
        if p.tcp_flags & 2 != 0 {
            t = t.syn();
        }
        if p.tcp_flags & 16 != 0 {
            t = t.ack(1);
        }
        if p.tcp_flags & 1 != 0 {
            t = t.fin();
        }
        if p.tcp_flags & 4 != 0 {
            t = t.rst();
        }
        let payload = (p.bytes as usize).saturating_sub(40);
        t.write(&mut out, &vec![0; payload]).expect("frame");
    } else {
        let payload = (p.bytes as usize).saturating_sub(28);
        b.udp(p.src_port, p.dst_port)
            .write(&mut out, &vec![0; payload])
            .expect("frame");
    }
    out
}

fn bench(c: &mut Criterion) {
    let packets = packets();
    let topology = Topology::from_toml(THREE_TIER_TOPOLOGY).expect("built-in topology");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("three-tier.pcap");
    let short = dir.path().join("three-tier-snaplen128.pcap");
    for (file, snaplen) in [(&path, usize::MAX), (&short, 128)] {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: snaplen.min(65_535) as u32,
            ..Default::default()
        };
        let out = BufWriter::new(File::create(file).expect("pcap"));
        let mut w = PcapWriter::with_header(out, header).expect("pcap");
        for p in &packets {
            let f = frame(p);
            let ts = Duration::from_micros(p.time_us as u64);
            let kept = &f[..f.len().min(snaplen)];
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, kept))
                .expect("write");
        }
    }
    let mut group = c.benchmark_group("emulate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function("three-tier packets", |b| {
        b.iter(|| {
            let mut emulator = Emulator::new(topology.clone());
            for p in &packets {
                emulator.process(p);
            }
            emulator.finish();
            emulator.take_closed().len()
        })
    });
    for (name, file) in [
        ("three-tier pcap file", &path),
        ("three-tier pcap file, snaplen 128", &short),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut emulator = Emulator::new(topology.clone());
                let mut source = PcapSource::open(file).expect("open");
                while let Some(p) = source.next_packet() {
                    emulator.process(&p.expect("packet"));
                }
                emulator.finish();
                emulator.take_closed().len()
            })
        });
    }
    group.bench_function("three-tier pcap read and decode only", |b| {
        b.iter(|| {
            let mut source = PcapSource::open(&path).expect("open");
            let mut n = 0u64;
            while let Some(p) = source.next_packet() {
                n += u64::from(p.expect("packet").bytes);
            }
            n
        })
    });
    group.finish();
    eprintln!("{} packets in the capture", packets.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
