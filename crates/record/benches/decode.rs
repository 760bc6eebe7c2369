//! Parsing flow log text into Arrow, and writing it back: the hot path of every ingest.
//!
//! `cargo bench -p flowscope-record --bench decode`; figures go to docs/benchmarks.md.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscope_record::synth::Synth;
use flowscope_record::{LogFormat, TextDecoder, write_lines};

const LINES: usize = 100_000;

/// A 25-field custom format of the kind people deploy: v3 ids, packet addresses, v4/v5 extras.
const CUSTOM_25: &str = "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} \
${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} \
${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status} ${region} \
${az-id} ${flow-direction} ${traffic-path}";

fn decode_all(format: &LogFormat, text: &[u8]) -> usize {
    let mut decoder = TextDecoder::new(format.clone(), 8192);
    let mut rows = 0;
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        decoder
            .decode_line(line)
            .expect("generated lines are valid");
        if decoder.is_full() {
            rows += decoder.flush().map_or(0, |b| b.num_rows());
        }
    }
    rows + decoder.flush().map_or(0, |b| b.num_rows())
}

fn bench(c: &mut Criterion) {
    for (name, format) in [
        ("default", LogFormat::default_format()),
        ("custom25", LogFormat::parse(CUSTOM_25).unwrap()),
    ] {
        let mut text = Vec::new();
        Synth::new(1).write_lines(&format, LINES, &mut text);

        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.throughput(Throughput::Elements(LINES as u64));
        group.bench_function("records", |b| b.iter(|| decode_all(&format, &text)));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("bytes", |b| b.iter(|| decode_all(&format, &text)));
        group.finish();

        let mut decoder = TextDecoder::new(format.clone(), LINES);
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            decoder.decode_line(line).unwrap();
        }
        let batch = decoder.flush().unwrap();
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Elements(LINES as u64));
        let mut out = Vec::with_capacity(text.len());
        group.bench_function("records", |b| {
            b.iter(|| {
                out.clear();
                write_lines(&batch, &format, &mut out).unwrap();
                out.len()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
