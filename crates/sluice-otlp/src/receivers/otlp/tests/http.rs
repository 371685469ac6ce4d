//! OTLP/HTTP: formats, encodings, refusals, limits, routing.

use super::*;

#[tokio::test]
async fn http_protobuf_traces_reach_the_pipeline() {
    let rec = Recorder::new();
    let rx = Running::start(http_only(), all_signals(&rec)).await;

    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        None,
        traces(4).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/x-protobuf");
    let body = resp.bytes().await.unwrap();
    assert_eq!(
        ExportTraceServiceResponse::decode(&body[..]).unwrap(),
        ExportTraceServiceResponse::default()
    );

    let got = rec.batches();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), &Payload::Traces(traces(4)));
    assert_eq!(rx.accepted("http", Signal::Traces), 4);
    rx.stop().await;
}

#[tokio::test]
async fn http_json_with_hex_ids_is_decoded_and_answered_in_json() {
    let rec = Recorder::new();
    let rx = Running::start(http_only(), all_signals(&rec)).await;

    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"x"}]}]}]}"#;
    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/json; charset=utf-8",
        None,
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer, serde_json::json!({}));

    let got = rec.batches();
    assert_eq!(got.len(), 1);
    let Payload::Traces(req) = got[0].payload() else {
        panic!("expected traces, got {:?}", got[0].payload());
    };
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id, hex("5b8efff798038103d269b633813fc60c"));
    assert_eq!(span.span_id, hex("eee19b7ec3c1b174"));
    assert_eq!(span.name, "x");
    assert_eq!(rx.accepted("http", Signal::Traces), 1);
    rx.stop().await;
}

#[tokio::test]
async fn http_gzip_and_deflate_bodies_are_decompressed() {
    let rec = Recorder::new();
    let rx = Running::start(http_only(), all_signals(&rec)).await;

    let resp = post(
        &rx.http_url("/v1/metrics"),
        "application/x-protobuf",
        Some("gzip"),
        gzip(&metrics(6).encode_to_vec()),
    )
    .await;
    assert_eq!(resp.status(), 200);

    let json = sluice_pdata::to_json(&Payload::Logs(logs(2)));
    let resp = post(
        &rx.http_url("/v1/logs"),
        "application/json",
        Some("deflate"),
        zlib(&json),
    )
    .await;
    assert_eq!(resp.status(), 200);

    let batches = rec.batches();
    // Protobuf is passed on encoded (never decoded here); JSON is decoded.
    assert!(batches[0].encoded().is_some() && !batches[0].is_decoded());
    assert!(batches[1].encoded().is_none());
    let got: Vec<Payload> = batches.into_iter().map(Batch::into_payload).collect();
    assert_eq!(
        got,
        vec![Payload::Metrics(metrics(6)), Payload::Logs(logs(2))]
    );
    assert_eq!(rx.accepted("http", Signal::Metrics), 6);
    assert_eq!(rx.accepted("http", Signal::Logs), 2);

    // A body that claims gzip but is not.
    let resp = post(
        &rx.http_url("/v1/metrics"),
        "application/x-protobuf",
        Some("gzip"),
        metrics(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    // An unknown coding.
    let resp = post(
        &rx.http_url("/v1/metrics"),
        "application/x-protobuf",
        Some("br"),
        metrics(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 415);
    assert_eq!(rec.calls(), 2);
    rx.stop().await;
}

#[tokio::test]
async fn http_retryable_refusals_are_503_or_429_with_retry_after() {
    let rec = Recorder::refusing(ConsumeError::unavailable("exporter down"));
    let rx = Running::start(http_only(), all_signals(&rec)).await;

    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        None,
        traces(3).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after"), "1");
    assert_eq!(header(&resp, "content-type"), "application/x-protobuf");
    let status = RpcStatus::decode(&resp.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(status.code, code::UNAVAILABLE);
    assert!(status.message.contains("exporter down"));
    assert_eq!(rx.refused("http", Signal::Traces), 3);

    *rec.refuse.lock().unwrap() = Some(ConsumeError::Retryable {
        reason: "memory limit".into(),
        retry_after: Some(Duration::from_millis(2500)),
        overloaded: true,
    });
    let resp = post(
        &rx.http_url("/v1/logs"),
        "application/json",
        None,
        sluice_pdata::to_json(&Payload::Logs(logs(2))),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "3");
    let status: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status["code"], code::UNAVAILABLE);
    assert_eq!(status["message"], "memory limit");
    assert_eq!(status["details"][0]["retryDelay"], "2.500000000s");
    assert_eq!(rx.refused("http", Signal::Logs), 2);
    assert_eq!(rx.accepted("http", Signal::Logs), 0);
    rx.stop().await;
}

#[tokio::test]
async fn http_permanent_refusal_is_400() {
    let rec = Recorder::refusing(ConsumeError::Permanent("schema violation".into()));
    let rx = Running::start(http_only(), all_signals(&rec)).await;
    let resp = post(
        &rx.http_url("/v1/metrics"),
        "application/json",
        None,
        sluice_pdata::to_json(&Payload::Metrics(metrics(2))),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "retry-after"), "");
    let status: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status["code"], code::INVALID_ARGUMENT);
    assert_eq!(status["message"], "schema violation");
    assert_eq!(rx.refused("http", Signal::Metrics), 2);
    rx.stop().await;
}

#[tokio::test]
async fn http_malformed_bodies_are_400_with_a_status() {
    let rec = Recorder::new();
    let rx = Running::start(http_only(), all_signals(&rec)).await;

    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/json",
        None,
        br#"{"resourceSpans": [ {"scopeSpans": 12 } ]"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "content-type"), "application/json");
    let status: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status["code"], code::INVALID_ARGUMENT);
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("invalid OTLP/JSON traces request"), "{msg}");

    // Invalid protobuf: a field tag with wire type 7 does not exist.
    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        None,
        vec![0x0f, 0xff, 0xff],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let status = RpcStatus::decode(&resp.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(status.code, code::INVALID_ARGUMENT);
    assert!(status
        .message
        .contains("invalid OTLP/protobuf traces request"));
    assert_eq!(rec.calls(), 0);
    // Bad input is never silent: both rejections are counted.
    let text = rx.telemetry.encode();
    assert!(
        text.contains(
            r#"sluice_receiver_rejected_requests_total{receiver="otlp",transport="http",reason="decode"} 2"#
        ),
        "{text}"
    );
    rx.stop().await;
}

#[tokio::test]
async fn http_unsupported_content_type_is_415() {
    let rec = Recorder::new();
    let rx = Running::start(http_only(), all_signals(&rec)).await;
    let resp = post(
        &rx.http_url("/v1/traces"),
        "text/plain",
        None,
        traces(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 415);
    let text = resp.text().await.unwrap();
    assert!(text.contains("text/plain"), "{text}");
    assert_eq!(rec.calls(), 0);
    rx.stop().await;
}

#[tokio::test]
async fn http_bodies_over_the_cap_are_413_before_and_after_decompression() {
    let rec = Recorder::new();
    let mut config = http_only();
    if let Some(h) = config.protocols.http.as_mut() {
        h.max_request_body_size = 4096;
    }
    let rx = Running::start(config, all_signals(&rec)).await;

    // Too large as sent.
    let mut big = traces(1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "y".repeat(5000);
    let raw = big.encode_to_vec();
    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        None,
        raw.clone(),
    )
    .await;
    assert_eq!(resp.status(), 413);

    // Small when compressed, too large once decompressed.
    let packed = gzip(&raw);
    assert!(packed.len() < 4096);
    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        Some("gzip"),
        packed,
    )
    .await;
    assert_eq!(resp.status(), 413);
    let status = RpcStatus::decode(&resp.bytes().await.unwrap()[..]).unwrap();
    assert!(status.message.contains("4096"), "{}", status.message);

    // Under the cap passes.
    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        Some("gzip"),
        gzip(&traces(2).encode_to_vec()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(rec.calls(), 1);
    rx.stop().await;
}

#[tokio::test]
async fn http_routing_methods_paths_and_empty_requests() {
    let rec = Recorder::refusing(ConsumeError::Permanent("must not be called".into()));
    let mut config = http_only();
    if let Some(h) = config.protocols.http.as_mut() {
        h.traces_url_path = "/custom/spans".into();
    }
    let rx = Running::start(config, all_signals(&rec)).await;

    let resp = post(
        &rx.http_url("/v1/traces"),
        "application/x-protobuf",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        resp.status(),
        404,
        "default path replaced by the custom one"
    );

    // An empty body is an empty request: success without the pipeline.
    let resp = post(
        &rx.http_url("/custom/spans"),
        "application/x-protobuf",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        &rx.http_url("/v1/logs"),
        "application/json",
        None,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");
    assert_eq!(rec.calls(), 0);

    let resp = reqwest::Client::new()
        .get(rx.http_url("/v1/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(header(&resp, "allow"), "POST");
    rx.stop().await;
}
