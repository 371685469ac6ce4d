//! Micro-benchmarks of the data path, per request of 512 realistic spans
//! (the load generator's requests, `sluice_bench::gen`), against a floor: a
//! plain prost decode + encode of the same request, which is what any
//! collector that decodes what it forwards pays at least.
//!
//! Run: `cargo bench -p sluice-bench --bench hot_path`. Criterion reports
//! time per iteration and throughput in spans; `scripts/bench` does not run
//! this (figures go to BENCHMARKS.md by hand, with the command).
//!
//! Groups:
//! - `floor`: prost decode, prost encode, decode + encode;
//! - `receive`: what sluice does with a received request: validate and count
//!   without decoding (`Batch::from_encoded`), and, for comparison, a full
//!   decode of the same batch (`Batch::payload`, paid only when a processor
//!   needs the structs);
//! - `merge_split`: the batch processor's merge of 4 requests into one
//!   (encoded: byte concatenation; decoded: payload append) and a split of
//!   2048 decoded spans into 512-span chunks;
//! - `fanout`: handing one batch to 3 exporters (an `Arc` clone each) against
//!   deep copies of the decoded request;
//! - `encode`: the exporter's body: `to_bytes` of an encoded batch (no copy)
//!   and of a decoded one (prost encode); gzip of a 2048-span body at level 1
//!   and 6 (tonic's fixed level);
//! - `pipeline`: sluice's whole in-process path for 4 requests — validate 4,
//!   concatenate, take the body — the figure compared with the floor.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use sluice_bench::gen;
use sluice_pdata::{split_off, Batch, Bytes, ExportTraceServiceRequest, Payload, Signal};
use std::hint::black_box;
use std::io::Write;

const SPANS: usize = 512;

fn requests() -> Vec<Bytes> {
    (0..4)
        .map(|v| Bytes::from(gen::traces(SPANS, v).encode_to_vec()))
        .collect()
}

fn floor(c: &mut Criterion) {
    let bytes = requests().remove(0);
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("prost_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&bytes[..])).unwrap())
    });
    let decoded = ExportTraceServiceRequest::decode(&bytes[..]).unwrap();
    g.bench_function("prost_encode", |b| {
        b.iter(|| black_box(&decoded).encode_to_vec())
    });
    g.bench_function("prost_decode_encode", |b| {
        b.iter(|| {
            ExportTraceServiceRequest::decode(black_box(&bytes[..]))
                .unwrap()
                .encode_to_vec()
        })
    });
    g.finish();
}

fn receive(c: &mut Criterion) {
    let bytes = requests().remove(0);
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("validate_and_count", |b| {
        b.iter(|| Batch::from_encoded(Signal::Traces, black_box(bytes.clone())).unwrap())
    });
    g.bench_function("validate_then_decode", |b| {
        b.iter(|| {
            let batch = Batch::from_encoded(Signal::Traces, bytes.clone()).unwrap();
            black_box(batch.payload());
        })
    });
    g.finish();
}

fn merge_split(c: &mut Criterion) {
    let reqs = requests();
    let encoded: Vec<Batch> = reqs
        .iter()
        .map(|b| Batch::from_encoded(Signal::Traces, b.clone()).unwrap())
        .collect();
    let decoded: Vec<Payload> = encoded.iter().map(|b| b.payload().clone()).collect();
    let mut g = c.benchmark_group("merge_split");
    g.throughput(Throughput::Elements(4 * SPANS as u64));
    g.bench_function("concat_4_encoded", |b| {
        b.iter_batched(
            || {
                encoded
                    .iter()
                    .map(|b| Batch::from_encoded(Signal::Traces, b.to_bytes()).unwrap())
                    .collect::<Vec<_>>()
            },
            |parts| Batch::concat(Signal::Traces, parts).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("append_4_decoded", |b| {
        b.iter_batched(
            || decoded.iter().cloned().map(Batch::new).collect::<Vec<_>>(),
            |parts| Batch::concat(Signal::Traces, parts).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let mut merged = decoded[0].clone();
    for p in &decoded[1..] {
        merged.append(p.clone()).unwrap();
    }
    g.bench_function("split_2048_decoded_into_512", |b| {
        b.iter_batched(
            || merged.clone(),
            |mut p| {
                while p.item_count() > 0 {
                    black_box(split_off(&mut p, SPANS));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let bytes = requests().remove(0);
    let batch = Batch::from_encoded(Signal::Traces, bytes).unwrap();
    let payload = batch.payload().clone();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("batch_to_3_exporters", |b| {
        b.iter(|| {
            let copies = [batch.clone(), batch.clone(), batch.clone()];
            black_box(copies);
        })
    });
    g.bench_function("deep_copy_to_3_exporters", |b| {
        b.iter(|| {
            let copies = [payload.clone(), payload.clone(), payload.clone()];
            black_box(copies);
        })
    });
    g.finish();
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(level),
    );
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn encode(c: &mut Criterion) {
    let reqs = requests();
    let parts: Vec<Batch> = reqs
        .iter()
        .map(|b| Batch::from_encoded(Signal::Traces, b.clone()).unwrap())
        .collect();
    let merged = Batch::concat(Signal::Traces, parts).unwrap();
    let decoded = Batch::new(merged.payload().clone());
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(4 * SPANS as u64));
    g.bench_function("to_bytes_encoded", |b| {
        b.iter(|| black_box(&merged).to_bytes())
    });
    g.bench_function("to_bytes_decoded", |b| {
        b.iter(|| black_box(&decoded).to_bytes())
    });
    let body = merged.to_bytes();
    g.bench_function("gzip_level_1", |b| b.iter(|| gzip(black_box(&body), 1)));
    g.bench_function("gzip_level_6", |b| b.iter(|| gzip(black_box(&body), 6)));
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let reqs = requests();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(4 * SPANS as u64));
    g.bench_function("sluice_receive_batch_body", |b| {
        b.iter(|| {
            let parts: Vec<Batch> = reqs
                .iter()
                .map(|r| Batch::from_encoded(Signal::Traces, r.clone()).unwrap())
                .collect();
            let merged = Batch::concat(Signal::Traces, parts).unwrap();
            black_box(merged.to_bytes())
        })
    });
    g.bench_function("floor_decode_merge_encode", |b| {
        b.iter(|| {
            let mut merged = ExportTraceServiceRequest::default();
            for r in &reqs {
                let req = ExportTraceServiceRequest::decode(&r[..]).unwrap();
                merged.resource_spans.extend(req.resource_spans);
            }
            black_box(merged.encode_to_vec())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    floor,
    receive,
    merge_split,
    fanout,
    encode,
    pipeline
);
criterion_main!(benches);
