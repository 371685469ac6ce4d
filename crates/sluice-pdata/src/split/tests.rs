use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::split_off;
use crate::{from_json, to_json, Batch, Payload, Signal};

/// Traces with `shape[r][s]` spans in resource r, scope s; span ids count up.
fn traces(shape: &[&[usize]]) -> Payload {
    let mut id = 0u64;
    let resource_spans = shape
        .iter()
        .map(|scopes| ResourceSpans {
            scope_spans: scopes
                .iter()
                .map(|&n| ScopeSpans {
                    spans: (0..n)
                        .map(|_| {
                            id += 1;
                            Span {
                                span_id: id.to_be_bytes().to_vec(),
                                trace_id: vec![7; 16],
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    Payload::Traces(ExportTraceServiceRequest { resource_spans })
}

fn span_ids(p: &Payload) -> Vec<u64> {
    let Payload::Traces(r) = p else {
        panic!("not traces")
    };
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| u64::from_be_bytes(s.span_id.clone().try_into().unwrap()))
        .collect()
}

#[test]
fn split_traces_keeps_every_span_in_order_for_every_cut() {
    let original = traces(&[&[3, 2], &[], &[4]]);
    let all = span_ids(&original);
    assert_eq!(original.item_count(), 9);
    for cut in 0..=10 {
        let mut rest = original.clone();
        let head = split_off(&mut rest, cut);
        assert_eq!(head.item_count(), cut.min(9), "cut {cut}");
        assert_eq!(rest.item_count(), 9 - cut.min(9), "cut {cut}");
        let mut joined = span_ids(&head);
        joined.extend(span_ids(&rest));
        assert_eq!(joined, all, "cut {cut}");
    }
}

#[test]
fn split_metrics_cuts_inside_a_metric_and_keeps_its_type() {
    let points = |n: usize| {
        (0..n)
            .map(|i| NumberDataPoint {
                time_unix_nano: i as u64,
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "g".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: points(3),
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "s".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: points(5),
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut rest = Payload::Metrics(req);
    assert_eq!(rest.item_count(), 8);
    let head = split_off(&mut rest, 5);
    assert_eq!(head.item_count(), 5);
    assert_eq!(rest.item_count(), 3);
    let Payload::Metrics(h) = &head else { panic!() };
    let m = &h.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(m[1].name, "s");
    match &m[1].data {
        Some(Data::Sum(s)) => {
            assert_eq!(s.data_points.len(), 2);
            assert!(s.is_monotonic);
            assert_eq!(s.aggregation_temporality, 2);
        }
        other => panic!("expected sum, got {other:?}"),
    }
}

#[test]
fn split_logs_and_append_round_trip() {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..6)
                    .map(|i| LogRecord {
                        severity_number: i,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let original = Payload::Logs(req);
    let mut rest = original.clone();
    let mut head = split_off(&mut rest, 4);
    assert_eq!((head.item_count(), rest.item_count()), (4, 2));
    head.append(rest).unwrap();
    assert_eq!(head.item_count(), 6);
    assert!(head.append(Payload::empty(Signal::Traces)).is_err());
}

#[test]
fn batch_copies_only_when_a_shared_batch_is_mutated() {
    let a = Batch::new(traces(&[&[2]]));
    let mut b = a.clone();
    assert!(!a.is_unique());
    {
        let mut p = b.make_mut();
        let Payload::Traces(r) = &mut *p else {
            panic!()
        };
        r.resource_spans[0].scope_spans[0].spans.pop();
    }
    assert_eq!(a.items(), 2, "the other holder keeps the original");
    assert_eq!(b.items(), 1, "the item count follows the mutation");
    assert!(a.is_unique() && b.is_unique());
}

#[test]
fn json_uses_hex_ids_and_round_trips() {
    let p = traces(&[&[1]]);
    let json = String::from_utf8(to_json(&p)).unwrap();
    assert!(json.contains("\"resourceSpans\""), "{json}");
    assert!(
        json.contains(&format!("\"spanId\":\"{}\"", "0000000000000001")),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"traceId\":\"{}\"", "07".repeat(16))),
        "{json}"
    );
    assert!(!json.contains("null"), "absent fields are left out: {json}");
    let back = from_json(Signal::Traces, json.as_bytes()).unwrap();
    assert_eq!(back, p);
    assert!(from_json(Signal::Traces, b"{\"resourceSpans\": 5}").is_err());
}

fn encoded(p: &Payload) -> Batch {
    Batch::from_encoded(p.signal(), p.encode_proto().into()).expect("valid")
}

#[test]
fn encoded_batch_counts_without_decoding_and_decodes_on_demand() {
    let p = traces(&[&[2, 3], &[4]]);
    let b = encoded(&p);
    assert_eq!(b.items(), 9);
    assert!(!b.is_decoded());
    assert_eq!(b.to_bytes(), p.encode_proto());
    assert_eq!(b.encoded_len(), p.encode_proto().len());
    let shared = b.clone();
    assert_eq!(b.payload(), &p);
    // Decoded once, for every holder.
    assert!(shared.is_decoded());
    assert!(Batch::from_encoded(Signal::Traces, vec![0x0a, 0x05, 0x12].into()).is_err());
}

#[test]
fn mutation_drops_the_encoding_and_leaves_other_holders_alone() {
    let p = traces(&[&[3]]);
    let mut b = encoded(&p);
    let other = b.clone();
    let head = split_off(&mut b.make_mut(), 1);
    assert_eq!(head.item_count(), 1);
    assert_eq!(b.items(), 2);
    assert!(b.encoded().is_none());
    assert_eq!(
        Payload::decode_proto(Signal::Traces, &b.to_bytes())
            .unwrap()
            .item_count(),
        2
    );
    assert_eq!(other.items(), 3);
    assert_eq!(other.to_bytes(), p.encode_proto());
}

#[test]
fn concat_joins_encodings_without_decoding_and_equals_appending() {
    let parts = [traces(&[&[1]]), traces(&[&[2, 1]]), traces(&[&[3]])];
    let mut want = parts[0].clone();
    for p in &parts[1..] {
        want.append(p.clone()).unwrap();
    }
    // All encoded: joined bytes, not decoded.
    let all = Batch::concat(Signal::Traces, parts.iter().map(encoded).collect()).unwrap();
    assert!(!all.is_decoded());
    assert_eq!(all.items(), 7);
    assert_eq!(all.payload(), &want);
    // Mixed: still bytes, the decoded part encoded for it.
    let mixed = vec![
        encoded(&parts[0]),
        Batch::new(parts[1].clone()),
        encoded(&parts[2]),
    ];
    let mixed = Batch::concat(Signal::Traces, mixed).unwrap();
    assert!(mixed.encoded().is_some() && !mixed.is_decoded());
    assert_eq!(mixed.items(), 7);
    assert_eq!(mixed.payload(), &want);
    // All decoded: payloads appended.
    let dec = Batch::concat(
        Signal::Traces,
        parts.iter().cloned().map(Batch::new).collect(),
    )
    .unwrap();
    assert!(dec.encoded().is_none());
    assert_eq!(dec.payload(), &want);
    // Another signal is refused, untouched.
    let wrong = vec![encoded(&parts[0]), Batch::new(Payload::empty(Signal::Logs))];
    assert_eq!(Batch::concat(Signal::Traces, wrong).unwrap_err().len(), 2);
}
