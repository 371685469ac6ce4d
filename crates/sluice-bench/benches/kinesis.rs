//! Throughput of the Kinesis path, per core: what sluice does with the
//! records of one `GetRecords` answer before they reach Kafka. Run:
//!
//! ```sh
//! cargo bench -p sluice-bench --bench kinesis
//! ```
//!
//! (no server needed; figures go to BENCHMARKS.md via
//! scripts/lib/bench/notes.md, with the command).
//!
//! One iteration takes 1,000 Haystack spans (realistic: 12 services, about
//! 10 typed tags, one or two logs, UUID ids, 300-500 bytes of protobuf each)
//! through:
//!
//! 1. `kpl::deaggregate` of every Kinesis record;
//! 2. `decode::decode(HaystackProto, ..)` of every user record;
//! 3. `validate::Validator::apply` (with `max_span_size` set, so every span
//!    is measured, and one `extra_tags` entry);
//! 4. `haystack::otlp_from_spans` into one batch (what the receiver hands
//!    the pipeline);
//! 5. the `kafka` exporter's message building with `encoding:
//!    haystack_proto` (one message per span, keyed by trace id).
//!
//! The spans arrive either as 10 KPL-aggregated records of 100 user records
//! (`kpl_100`) or as 1,000 plain records of one span each (`plain`).
//! Throughput is in Kinesis records (criterion's `elem/s`); spans/s is that
//! times the spans per record (100 for `kpl_100`, 1 for `plain`). The
//! `stage` group times each step alone over the same 1,000 spans (in spans),
//! and the end-to-end path once more with an `extra_topics` entry that one
//! span in ten matches. Criterion runs on one thread: the figures are per
//! core.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use sluice_kafka::bench_support::KafkaMessages;
use sluice_kafka::exporters::kafka::KafkaExporterConfig;
use sluice_kinesis::receivers::kinesis::decode::{self, Decoded, Encoding};
use sluice_kinesis::receivers::kinesis::kpl;
use sluice_kinesis::receivers::kinesis::validate::{
    ValidationConfig, ValidationCounters, Validator,
};
use sluice_pdata::haystack::{self, Log, Span, Tag};
use sluice_pdata::{Batch, Payload};

const SPANS: usize = 1000;
const PER_AGGREGATE: usize = 100;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random UUID in its usual text form, as Haystack clients write ids.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

const SERVICES: &[&str] = &[
    "checkout-api",
    "cart-service",
    "pricing-engine",
    "inventory",
    "payments-gateway",
    "user-profile",
    "search-frontend",
    "recommendations",
    "shipping-quotes",
    "loyalty-points",
    "fraud-check",
    "notification-dispatcher",
];
const OPERATIONS: &[&str] = &[
    "GET /v2/cart/{cartId}",
    "POST /v1/checkout",
    "PricingService.quote",
    "SELECT inventory_levels",
    "PaymentAuthorize",
    "GET /users/{id}/preferences",
    "redis GET session",
    "kafka.produce order-events",
    "ShippingQuote.compute",
    "LoyaltyLedger.credit",
];
const REGIONS: &[&str] = &["us-west-2", "us-east-1", "eu-west-1"];
const KINDS: &[&str] = &["server", "client", "producer"];

/// `n` realistic Haystack spans, in traces of 1 to 8 spans.
fn spans(n: usize) -> Vec<Span> {
    let mut rng = Rng(0x5eed);
    let mut out = Vec::with_capacity(n);
    let mut trace_id = rng.uuid();
    let mut parent = String::new();
    let mut left_in_trace = 0;
    for i in 0..n {
        if left_in_trace == 0 {
            trace_id = rng.uuid();
            parent.clear();
            left_in_trace = 1 + rng.below(8);
        }
        left_in_trace -= 1;
        let span_id = rng.uuid();
        let start = 1_760_000_000_000_000 + i as i64 * 1_300 + rng.below(1000) as i64;
        let status = [200, 200, 200, 201, 204, 404, 500][rng.below(7) as usize];
        let mut tags = vec![
            Tag::string("span.kind", rng.pick(KINDS)),
            Tag::string("component", rng.pick(&["spring-web", "jdbc", "okhttp"])),
            Tag::string("http.method", rng.pick(&["GET", "POST", "PUT"])),
            Tag::string(
                "http.url",
                format!(
                    "https://api.example.com/v2/cart/{}/items?page={}",
                    rng.below(1_000_000),
                    rng.below(20)
                ),
            ),
            Tag::long("http.status_code", status),
            Tag::string("peer.service", rng.pick(SERVICES)),
            Tag::string("env", rng.pick(&["prod", "prod", "prod", "staging"])),
            Tag::string("region", rng.pick(REGIONS)),
            Tag::long("request.size", rng.below(64 * 1024) as i64),
            Tag::bool("cache.hit", rng.below(2) == 0),
        ];
        if status >= 500 {
            tags.push(Tag::bool("error", true));
        }
        let mut logs = vec![Log {
            timestamp: start + 120,
            fields: vec![
                Tag::string("event", "cs"),
                Tag::string("message", "request sent"),
            ],
        }];
        if rng.below(2) == 0 {
            logs.push(Log {
                timestamp: start + 900,
                fields: vec![
                    Tag::string("event", "cr"),
                    Tag::long("bytes", rng.below(10_000) as i64),
                ],
            });
        }
        out.push(Span {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            parent_span_id: parent.clone(),
            service_name: rng.pick(SERVICES).to_string(),
            operation_name: rng.pick(OPERATIONS).to_string(),
            start_time: start,
            duration: 500 + rng.below(250_000) as i64,
            logs,
            tags,
        });
        parent = span_id;
    }
    out
}

/// The Kinesis records carrying `spans`: KPL aggregates of `per` user
/// records (partition key: the trace id), or plain records when `per` is 1.
fn records(spans: &[Span], per: usize) -> Vec<Vec<u8>> {
    let encoded: Vec<(String, Vec<u8>)> = spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.encode_to_vec()))
        .collect();
    if per == 1 {
        return encoded.into_iter().map(|(_, data)| data).collect();
    }
    encoded
        .chunks(per)
        .map(|chunk| kpl::aggregate(chunk.iter().map(|(k, d)| (k.as_str(), d.as_slice()))))
        .collect()
}

fn validator() -> Validator {
    Validator::new(ValidationConfig {
        max_span_size: 64 * 1024,
        extra_tags: BTreeMap::from([("collector".to_string(), "sluice".to_string())]),
        ..ValidationConfig::default()
    })
}

fn exporter(extra: &str) -> KafkaMessages {
    let config: KafkaExporterConfig = serde_yaml_ng::from_str(&format!(
        "brokers: [k:9092]\nencoding: haystack_proto\ntraces: {{topic: proto-spans}}\n{extra}"
    ))
    .expect("exporter config");
    KafkaMessages::new(&config)
}

/// Steps 1-3: the valid spans of `records`.
fn read(records: &[Vec<u8>], validator: &Validator, counters: &ValidationCounters) -> Vec<Span> {
    let mut spans = Vec::with_capacity(SPANS);
    let mut undecodable = 0u64;
    for r in records {
        kpl::deaggregate(r).for_each(|data| match decode::decode(Encoding::HaystackProto, data) {
            Ok(Decoded::Spans(s)) => spans.extend(s),
            Ok(Decoded::Otlp(_)) | Err(_) => undecodable += 1,
        });
    }
    assert_eq!(undecodable, 0);
    validator.apply(&mut spans, counters);
    spans
}

/// The whole path: steps 1-5; returns (messages, bytes).
fn path(
    records: &[Vec<u8>],
    validator: &Validator,
    counters: &ValidationCounters,
    exporter: &KafkaMessages,
) -> (usize, usize) {
    let spans = read(records, validator, counters);
    let batch = Batch::new(Payload::Traces(haystack::otlp_from_owned_spans(spans)));
    let (messages, bytes, rejected) = exporter.build(&batch);
    debug_assert_eq!(rejected, 0);
    (messages, bytes)
}

fn kinesis(c: &mut Criterion) {
    let spans = spans(SPANS);
    let sizes: Vec<usize> = spans.iter().map(|s| s.encoded_len()).collect();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    assert!(
        (300..=500).contains(&mean),
        "spans are meant to be 300-500 bytes, are {mean} on average"
    );
    let aggregated = records(&spans, PER_AGGREGATE);
    let plain = records(&spans, 1);
    eprintln!(
        "{SPANS} spans of {min}-{max} bytes (mean {mean}); {} KPL records of {} bytes on average; {} plain records",
        aggregated.len(),
        aggregated.iter().map(Vec::len).sum::<usize>() / aggregated.len(),
        plain.len()
    );
    let validator = validator();
    let counters = ValidationCounters::default();
    let kafka = exporter("");
    // Sanity: every span arrives and becomes one message.
    for recs in [&aggregated, &plain] {
        assert_eq!(path(recs, &validator, &counters, &kafka).0, SPANS);
    }
    let kafka_extra =
        exporter("extra_topics: [{topic: errors-only, match_tags: {error: \"true\"}}]");

    let mut g = c.benchmark_group("kinesis_path");
    for (name, recs) in [("kpl_100", &aggregated), ("plain", &plain)] {
        g.throughput(Throughput::Elements(recs.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| path(black_box(recs), &validator, &counters, &kafka))
        });
    }
    g.throughput(Throughput::Elements(aggregated.len() as u64));
    g.bench_function("kpl_100_extra_topic", |b| {
        b.iter(|| path(black_box(&aggregated), &validator, &counters, &kafka_extra))
    });
    g.finish();

    // Each step alone, in spans.
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("deaggregate_kpl_100", |b| {
        b.iter(|| {
            black_box(&aggregated)
                .iter()
                .map(|r| kpl::deaggregate(r).len())
                .sum::<usize>()
        })
    });
    let user_records: Vec<&[u8]> = plain.iter().map(Vec::as_slice).collect();
    g.bench_function("decode_haystack_proto", |b| {
        b.iter(|| {
            black_box(&user_records)
                .iter()
                .map(|d| match decode::decode(Encoding::HaystackProto, d) {
                    Ok(Decoded::Spans(s)) => s.len(),
                    _ => 0,
                })
                .sum::<usize>()
        })
    });
    g.bench_function("validate", |b| {
        b.iter_batched(
            || spans.clone(),
            |mut s| {
                validator.apply(&mut s, &counters);
                s
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("otlp_from_spans", |b| {
        b.iter(|| haystack::otlp_from_spans(black_box(&spans)))
    });
    let batch = Batch::new(Payload::Traces(haystack::otlp_from_spans(&spans)));
    g.bench_function("kafka_haystack_proto_messages", |b| {
        b.iter(|| kafka.build(black_box(&batch)))
    });
    g.finish();
}

criterion_group!(benches, kinesis);
criterion_main!(benches);
