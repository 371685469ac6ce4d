//! The generated requests, the tag-walk counter and the id rewriting,
//! checked against a full prost decode.

use std::collections::HashSet;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use sluice_bench::gen;
use sluice_bench::template::{pool, Template};
use sluice_bench::wire::{count_items, fields, Signal, WireError};

fn metric_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

#[test]
fn counting_matches_a_full_decode() {
    for items in [1, 7, 512, 1000] {
        let t = gen::traces(items, 3).encode_to_vec();
        assert_eq!(count_items(Signal::Traces, &t), Ok(items as u64));
        let m = gen::metrics(items, 3);
        assert_eq!(metric_points(&m), items as u64);
        assert_eq!(
            count_items(Signal::Metrics, &m.encode_to_vec()),
            Ok(items as u64)
        );
        let l = gen::logs(items, 3).encode_to_vec();
        assert_eq!(count_items(Signal::Logs, &l), Ok(items as u64));
    }
    for signal in Signal::ALL {
        assert_eq!(count_items(signal, &[]), Ok(0));
    }
}

#[test]
fn spans_look_like_instrumented_services() {
    let req = gen::traces(64, 0);
    let rs = &req.resource_spans[0];
    assert!(rs.resource.as_ref().unwrap().attributes.len() >= 10);
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    assert_eq!(spans.len(), 64);
    for span in &spans {
        assert_eq!(span.attributes.len(), 10, "{}", span.name);
        assert_eq!(span.events.len(), 2);
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    }
    let logs = gen::logs(16, 0);
    for record in &logs.resource_logs[0].scope_logs[0].log_records {
        assert!(record.body.is_some());
        assert!(!record.attributes.is_empty());
    }
}

#[test]
fn truncated_requests_are_errors() {
    let t = gen::traces(4, 0).encode_to_vec();
    let cut = &t[..t.len() - 3];
    assert!(matches!(
        count_items(Signal::Traces, cut),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        count_items(Signal::Traces, &[0x0a, 0x80]),
        Err(WireError::TruncatedVarint(_))
    ));
    assert!(
        fields(&[0x0b]).next().unwrap().is_err(),
        "wire type 3 (group)"
    );
}

#[test]
fn every_request_gets_unique_ids_and_stays_valid() {
    let template = Template::generate(Signal::Traces, 512, 1);
    assert_eq!(template.items(), 512);
    // trace id, span id per span, parent span id for all but the roots
    assert_eq!(
        template.id_count(),
        512 * 2 + 512 - 512 / gen::SPANS_PER_TRACE
    );
    let mut trace_ids = HashSet::new();
    let mut span_ids = HashSet::new();
    for seq in [1u64, 2, 3, 1 << 40, (1 << 48) - 1] {
        let bytes = template.to_vec(seq);
        assert_eq!(bytes.len(), template.len());
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let spans: Vec<_> = req.resource_spans[0]
            .scope_spans
            .iter()
            .flat_map(|s| &s.spans)
            .collect();
        assert_eq!(spans.len(), 512);
        let own: HashSet<Vec<u8>> = spans.iter().map(|s| s.span_id.clone()).collect();
        for span in &spans {
            assert_eq!(&span.trace_id[..8], &seq.to_be_bytes());
            assert_eq!(&span.span_id[..6], &seq.to_be_bytes()[2..]);
            if !span.parent_span_id.is_empty() {
                assert!(
                    own.contains(&span.parent_span_id),
                    "parent in the same request"
                );
            }
            trace_ids.insert(span.trace_id.clone());
            assert!(span_ids.insert(span.span_id.clone()), "span id reused");
        }
    }
    assert_eq!(trace_ids.len(), 5 * 512 / gen::SPANS_PER_TRACE);

    let logs = Template::generate(Signal::Logs, 100, 0);
    assert_eq!(logs.id_count(), 200);
    let a = ExportLogsServiceRequest::decode(logs.to_vec(7).as_slice()).unwrap();
    let record = &a.resource_logs[0].scope_logs[0].log_records[5];
    assert_eq!(&record.trace_id[..8], &7u64.to_be_bytes());
    assert_eq!(&record.span_id[..6], &7u64.to_be_bytes()[2..]);

    let metrics = Template::generate(Signal::Metrics, 100, 0);
    assert_eq!(metrics.id_count(), 0);
    let m = ExportMetricsServiceRequest::decode(metrics.to_vec(9).as_slice()).unwrap();
    assert_eq!(metric_points(&m), 100);
}

#[test]
fn pool_variants_differ() {
    let p = pool(Signal::Logs, 32, 4);
    assert_eq!(p.len(), 4);
    let distinct: HashSet<Vec<u8>> = p.iter().map(|t| t.to_vec(1)).collect();
    assert_eq!(distinct.len(), 4);
}
