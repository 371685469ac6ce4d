//! The walk must accept exactly what prost decodes, and count what the
//! decoded request counts. Checked differentially on valid requests, on
//! thousands of mutations of them, and on hand-made edge cases.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

use super::validate;
use crate::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Payload,
    Signal,
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attrs() -> Vec<KeyValue> {
    vec![
        kv("s", Value::StringValue("välue".into())),
        kv("i", Value::IntValue(-42)),
        kv("d", Value::DoubleValue(1.5)),
        kv("b", Value::BoolValue(true)),
        kv("bytes", Value::BytesValue(vec![0, 1, 255])),
        kv(
            "arr",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("x".into())),
                }],
            }),
        ),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("k", Value::IntValue(7))],
            }),
        ),
    ]
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attrs(),
        dropped_attributes_count: 3,
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1".into(),
        attributes: attrs(),
        dropped_attributes_count: 1,
    })
}

fn traces() -> Payload {
    let span = |i: u8| Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        parent_span_id: vec![1; 8],
        trace_state: "a=b".into(),
        name: format!("op{i}"),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attrs(),
        events: vec![span::Event {
            time_unix_nano: 5,
            name: "ev".into(),
            attributes: attrs(),
            dropped_attributes_count: 0,
        }],
        links: vec![span::Link {
            trace_id: vec![2; 16],
            span_id: vec![2; 8],
            attributes: attrs(),
            flags: 1,
            ..Default::default()
        }],
        status: Some(Status {
            message: "m".into(),
            code: 2,
        }),
        flags: 0x100,
        ..Default::default()
    };
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(),
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope(),
                        spans: vec![span(1), span(2)],
                        schema_url: "u".into(),
                    },
                    ScopeSpans {
                        scope: None,
                        spans: vec![span(3)],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "r".into(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![span(4)],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    })
}

fn logs() -> Payload {
    let record = |i: u8| LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 2,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(format!("line {i}"))),
        }),
        attributes: attrs(),
        dropped_attributes_count: 1,
        flags: 1,
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        event_name: "e".into(),
    };
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![record(1), record(2), record(3)],
                schema_url: "s".into(),
            }],
            schema_url: String::new(),
        }],
    })
}

fn metrics() -> Payload {
    let exemplar = Exemplar {
        filtered_attributes: attrs(),
        time_unix_nano: 3,
        span_id: vec![1; 8],
        trace_id: vec![1; 16],
        value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsInt(4)),
    };
    let number = |v: f64| NumberDataPoint {
        attributes: attrs(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: vec![exemplar.clone()],
        flags: 1,
        value: Some(number_data_point::Value::AsDouble(v)),
    };
    let metric = |name: &str, data: Data| Metric {
        name: name.into(),
        description: "d".into(),
        unit: "1".into(),
        metadata: attrs(),
        data: Some(data),
    };
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![number(1.0), number(2.0)],
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: vec![number(3.0)],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs(),
                    count: 3,
                    sum: Some(4.5),
                    bucket_counts: vec![1, 2, 0],
                    explicit_bounds: vec![1.0, 2.0],
                    exemplars: vec![exemplar.clone()],
                    min: Some(0.1),
                    max: Some(9.0),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exp",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attrs(),
                    count: 5,
                    sum: Some(1.0),
                    scale: -3,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -2,
                        bucket_counts: vec![1, 300, 70000],
                    }),
                    negative: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![],
                    }),
                    zero_threshold: 0.5,
                    exemplars: vec![exemplar],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs(),
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 1.0,
                    }],
                    ..Default::default()
                }],
            }),
        ),
    ];
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    })
}

/// Asserts the walk and prost agree on `bytes`, and returns whether they
/// accepted it.
fn agree(signal: Signal, bytes: &[u8]) -> bool {
    let walked = validate(signal, bytes);
    let decoded = Payload::decode_proto(signal, bytes);
    match (&walked, &decoded) {
        (Ok(n), Ok(p)) => {
            assert_eq!(*n, p.item_count(), "count of {signal} {bytes:02x?}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!(
            "walk {walked:?} but prost {:?} for {signal} request {bytes:02x?}",
            decoded.map(|p| p.item_count())
        ),
    }
}

#[test]
fn valid_requests_are_accepted_and_counted() {
    for (payload, want) in [(traces(), 4), (logs(), 3), (metrics(), 6)] {
        let bytes = payload.encode_proto();
        assert_eq!(validate(payload.signal(), &bytes), Ok(want));
        assert!(agree(payload.signal(), &bytes));
    }
    for signal in Signal::ALL {
        assert_eq!(validate(signal, &[]), Ok(0));
    }
}

/// A tiny deterministic generator (no dependency needed for mutations).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_and_truncated_requests_agree_with_prost() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    let mut refused = 0;
    for payload in [traces(), logs(), metrics()] {
        let signal = payload.signal();
        let good = payload.encode_proto();
        for cut in 0..good.len() {
            if agree(signal, &good[..cut]) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        for _ in 0..6000 {
            let mut bytes = good.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes[at] ^= 1 << rng.below(8),
                    2 => {
                        bytes.insert(at, rng.next() as u8);
                    }
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            if agree(signal, &bytes) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Both outcomes must be well represented, or the test proves little.
    assert!(accepted > 1000 && refused > 1000, "{accepted} / {refused}");
}

/// An AnyValue nested `depth` arrays deep inside a log body.
fn nested_body(depth: usize) -> Vec<u8> {
    let mut value = AnyValue {
        value: Some(Value::IntValue(1)),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(value),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
    .encode_proto()
}

#[test]
fn nesting_limit_is_prosts() {
    let mut seen = (false, false);
    for depth in 40..60 {
        let ok = agree(Signal::Logs, &nested_body(depth));
        if ok {
            seen.0 = true;
        } else {
            seen.1 = true;
        }
    }
    assert_eq!(seen, (true, true), "the limit lies inside the range tried");
}

fn field(tag: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire)), &mut out);
    out
}

fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = field(tag, 2);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// `span` bytes inside one resource and scope.
fn in_span(span: &[u8]) -> Vec<u8> {
    len_field(1, &len_field(2, &len_field(2, span)))
}

#[test]
fn hand_made_edge_cases_agree() {
    let cases: Vec<Vec<u8>> = vec![
        // invalid UTF-8 in the span name; valid in a bytes field
        in_span(&len_field(5, &[0xff, 0xfe])),
        in_span(&len_field(1, &[0xff, 0xfe])),
        // wrong wire type for a known fixed64 and for a known message
        in_span(&[field(7, 0), vec![1]].concat()),
        in_span(&[field(9, 0), vec![1]].concat()),
        // unknown fields of every wire type, groups nested and mismatched
        in_span(&[field(99, 0), vec![1]].concat()),
        in_span(&[field(99, 5), vec![1, 2, 3, 4]].concat()),
        in_span(&[field(99, 1), vec![0; 8]].concat()),
        in_span(&[field(99, 3), field(98, 0), vec![5], field(99, 4)].concat()),
        in_span(&[field(99, 3), field(98, 3), field(98, 4), field(99, 4)].concat()),
        in_span(&[field(99, 3), field(97, 4)].concat()),
        in_span(&field(99, 4)),
        in_span(&field(99, 3)),
        // wire types 6 and 7, tag 0
        in_span(&[0x0e, 0]),
        in_span(&[0x0f, 0]),
        in_span(&[0x00, 0]),
        // ten-byte varints: last byte 1 and 2
        in_span(&[field(6, 0), vec![0xff; 9], vec![0x01]].concat()),
        in_span(&[field(6, 0), vec![0xff; 9], vec![0x02]].concat()),
        in_span(&[field(6, 0), vec![0xff; 10], vec![0x01]].concat()),
        // a key above u32::MAX
        in_span(&[vec![0xff; 5], vec![0x1f], vec![0]].concat()),
        // length running past the end of the span
        in_span(&[field(5, 2), vec![50, b'a']].concat()),
    ];
    for case in &cases {
        agree(Signal::Traces, case);
    }
    // Packed and unpacked repeated numbers in a histogram point and buckets.
    let point = |body: Vec<u8>| {
        let metric = len_field(9, &len_field(1, &body));
        len_field(1, &len_field(2, &len_field(2, &metric)))
    };
    let exp_point = |buckets: Vec<u8>| {
        let metric = len_field(10, &len_field(1, &len_field(8, &buckets)));
        len_field(1, &len_field(2, &len_field(2, &metric)))
    };
    let cases = vec![
        point(len_field(6, &[0; 16])),
        point(len_field(6, &[0; 12])),
        point([field(6, 1), vec![0; 8]].concat()),
        point([field(6, 0), vec![1]].concat()),
        point(len_field(7, &[0; 8])),
        exp_point(len_field(2, &[1, 0x80, 1])),
        exp_point(len_field(2, &[1, 0x80])),
        exp_point([field(2, 0), vec![3]].concat()),
        exp_point([field(2, 1), vec![0; 8]].concat()),
    ];
    for case in &cases {
        agree(Signal::Metrics, case);
    }
}

#[test]
fn metric_oneof_counts_like_the_decoded_metric() {
    let points = |n: usize| -> Vec<u8> { (0..n).flat_map(|_| len_field(1, &[])).collect() };
    // gauge(2) then sum(3): the sum replaces the gauge; sum(3) twice merges.
    for metric in [
        [len_field(5, &points(2)), len_field(7, &points(3))].concat(),
        [len_field(7, &points(3)), len_field(7, &points(1))].concat(),
        [
            len_field(7, &points(3)),
            len_field(5, &points(1)),
            len_field(7, &points(2)),
        ]
        .concat(),
    ] {
        let request = len_field(1, &len_field(2, &len_field(2, &metric)));
        assert!(agree(Signal::Metrics, &request));
    }
}
