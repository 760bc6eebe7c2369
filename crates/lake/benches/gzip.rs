//! Gzip decoding of flow log text: the first cost of every ingest.
//!
//! Compares flate2's streaming decoder (zlib-rs backend, what the reader uses) with libdeflate
//! (whole-buffer). libdeflate is about twice as fast, but the safe `libdeflater` API decodes only
//! the first member of a concatenated gzip file and reports success, which would silently drop
//! records; see docs/benchmarks.md. `cargo bench -p flowscope-lake --bench gzip`.

#![allow(missing_docs)]

use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flowscope_record::LogFormat;
use flowscope_record::synth::Synth;

fn bench(c: &mut Criterion) {
    let mut text = Vec::new();
    Synth::new(3).write_lines(&LogFormat::default_format(), 200_000, &mut text);
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    encoder.write_all(&text).unwrap();
    let gz = encoder.finish().unwrap();

    let mut group = c.benchmark_group("gunzip");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("flate2-zlib-rs-stream", |b| {
        let mut out = Vec::with_capacity(text.len());
        b.iter(|| {
            out.clear();
            MultiGzDecoder::new(gz.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            out.len()
        })
    });
    group.bench_function("libdeflate-buffer", |b| {
        let mut out = vec![0u8; text.len()];
        let mut decompressor = libdeflater::Decompressor::new();
        b.iter(|| decompressor.gzip_decompress(&gz, &mut out).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
