//! The Haystack receivers in the real binary: a span over HTTP (JSON on
//! `/span`), a batch over HTTP (protobuf on `/spans`) and a span over gRPC
//! (`SpanAgent/dispatch`) all reach the file exporter as OTLP with their
//! service name and attributes; `/isActive` answers `ACTIVE`.

mod support;

use prost::Message;
use sluice_pdata::haystack::{to_json, DispatchResult, ResultCode, Span, SpanBatch, Tag};
use support::*;

fn span(name: &str, id: &str) -> Span {
    Span {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: id.into(),
        service_name: "checkout".into(),
        operation_name: name.into(),
        start_time: 1_700_000_000_000_000,
        duration: 2_000,
        tags: vec![Tag::string("http.method", "POST"), Tag::long("attempt", 2)],
        ..Default::default()
    }
}

#[test]
fn haystack_spans_over_http_and_grpc_reach_the_file_as_otlp() {
    let dir = TestDir::new();
    let (http, grpc) = (free_addr(), free_addr());
    let cfg = dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  haystack_http:
    endpoint: {http}
  haystack_grpc:
    endpoint: {grpc}
exporters:
  file:
    path: {out}
service:
  pipelines:
    traces:
      receivers: [haystack_http, haystack_grpc]
      exporters: [file]
  telemetry:
    metrics:
      address: {metrics}
"#,
            out = dir.file("out.jsonl"),
            metrics = free_addr(),
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "{}",
        sluice.describe()
    );
    assert!(
        wait_for_port(grpc, STARTUP_TIMEOUT),
        "{}",
        sluice.describe()
    );

    let active = http_get(http, "/isActive").expect("GET /isActive");
    assert_eq!((active.status, active.text()), (200, "ACTIVE".to_string()));

    let json = to_json(&span("json-span", "00000000000000a1"));
    let resp = http_request(
        http,
        "POST",
        "/span",
        &[("Content-Type", "application/json")],
        &json,
        DELIVERY_TIMEOUT,
    )
    .expect("POST /span");
    assert_eq!(resp.status, 202, "{}", resp.text());

    let batch = SpanBatch {
        spans: vec![
            span("batch-1", "00000000000000b1"),
            span("batch-2", "00000000000000b2"),
        ],
    };
    let resp = http_request(
        http,
        "POST",
        "/spans",
        &[("Content-Type", "application/octet-stream")],
        &batch.encode_to_vec(),
        DELIVERY_TIMEOUT,
    )
    .expect("POST /spans");
    assert_eq!(resp.status, 202, "{}", resp.text());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .expect("gRPC connect");
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        client
            .unary::<Span, DispatchResult, _>(
                tonic::Request::new(span("grpc-span", "00000000000000c1")),
                "/SpanAgent/dispatch".parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .expect("dispatch answered")
            .into_inner()
    });
    assert_eq!(answer.code, ResultCode::Success as i32, "{answer:?}");
    // Closes the client's connection: a connection left open (its runtime
    // no longer driven) would hold the server's graceful shutdown.
    drop(runtime);

    let out = dir.join("out.jsonl");
    assert!(
        wait_until(DELIVERY_TIMEOUT, || spans_in(&out).len() >= 4),
        "the file got {} of 4 spans; {}",
        spans_in(&out).len(),
        sluice.describe()
    );
    sluice.stop();

    let items = spans_in(&out);
    let mut names: Vec<String> = items.iter().map(|i| i.str_field("name")).collect();
    names.sort();
    assert_eq!(names, ["batch-1", "batch-2", "grpc-span", "json-span"]);
    for item in &items {
        assert_eq!(item.service_name().as_deref(), Some("checkout"));
        assert_eq!(
            item.str_field("traceId"),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let a = &item.record["attributes"];
        assert_eq!(
            attr(a, "http.method").and_then(|v| v["stringValue"].as_str()),
            Some("POST"),
            "{a}"
        );
        assert_eq!(
            attr(a, "attempt").and_then(|v| json_i64(&v["intValue"])),
            Some(2),
            "{a}"
        );
    }
}
