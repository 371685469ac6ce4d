//! OTLP/gRPC: exports, refusals, limits.

use super::*;

#[tokio::test]
async fn grpc_gzip_exports_of_every_signal_reach_the_pipeline() {
    let rec = Recorder::new();
    let rx = Running::start(grpc_only(), all_signals(&rec)).await;

    let mut tc = TraceServiceClient::connect(rx.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let mut mc = MetricsServiceClient::connect(rx.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let mut lc = LogsServiceClient::connect(rx.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);

    tc.export(traces(3)).await.expect("traces accepted");
    mc.export(metrics(4)).await.expect("metrics accepted");
    lc.export(logs(5)).await.expect("logs accepted");

    let batches = rec.batches();
    // Passed on as received: encoded, never decoded by the receiver.
    assert!(batches
        .iter()
        .all(|b| b.encoded().is_some() && !b.is_decoded()));
    let got: Vec<Payload> = batches.into_iter().map(Batch::into_payload).collect();
    assert_eq!(
        got,
        vec![
            Payload::Traces(traces(3)),
            Payload::Metrics(metrics(4)),
            Payload::Logs(logs(5)),
        ]
    );
    assert_eq!(rx.accepted("grpc", Signal::Traces), 3);
    assert_eq!(rx.accepted("grpc", Signal::Metrics), 4);
    assert_eq!(rx.accepted("grpc", Signal::Logs), 5);
    assert_eq!(rx.refused("grpc", Signal::Traces), 0);
    let text = rx.telemetry.encode();
    assert!(
        text.contains(
            "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 3"
        ),
        "{text}"
    );
    rx.stop().await;
}

#[tokio::test]
async fn grpc_signal_without_pipeline_is_unimplemented() {
    let rec = Recorder::new();
    let consumers = SignalConsumers {
        traces: Some(rec.clone() as ConsumerRef),
        ..Default::default()
    };
    let rx = Running::start(both(), consumers).await;

    let mut mc = MetricsServiceClient::connect(rx.grpc_url()).await.unwrap();
    let err = mc
        .export(metrics(1))
        .await
        .expect_err("no metrics pipeline");
    assert_eq!(err.code(), Code::Unimplemented);

    let resp = post(
        &rx.http_url("/v1/logs"),
        "application/x-protobuf",
        None,
        logs(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 404);

    // The served signal still works.
    let mut tc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    tc.export(traces(1)).await.expect("traces served");
    assert_eq!(rec.calls(), 1);
    rx.stop().await;
}

#[tokio::test]
async fn grpc_retryable_refusal_is_unavailable_with_retry_info() {
    let rec = Recorder::refusing(ConsumeError::Retryable {
        reason: "queue is full".into(),
        retry_after: Some(Duration::from_millis(2500)),
        overloaded: true,
    });
    let rx = Running::start(grpc_only(), all_signals(&rec)).await;

    let mut tc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    let err = tc.export(traces(2)).await.expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("queue is full"), "{}", err.message());
    assert_eq!(retry_delay(&err), Some(Duration::from_millis(2500)));
    assert_eq!(rx.refused("grpc", Signal::Traces), 2);
    assert_eq!(rx.accepted("grpc", Signal::Traces), 0);

    // Without a hint there is no RetryInfo detail, but still UNAVAILABLE.
    *rec.refuse.lock().unwrap() = Some(ConsumeError::unavailable("backend down"));
    let mut lc = LogsServiceClient::connect(rx.grpc_url()).await.unwrap();
    let err = lc.export(logs(3)).await.expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(retry_delay(&err), None);
    assert_eq!(rx.refused("grpc", Signal::Logs), 3);
    rx.stop().await;
}

#[tokio::test]
async fn grpc_permanent_refusal_is_invalid_argument() {
    let rec = Recorder::refusing(ConsumeError::Permanent("bad data".into()));
    let rx = Running::start(grpc_only(), all_signals(&rec)).await;
    let mut mc = MetricsServiceClient::connect(rx.grpc_url()).await.unwrap();
    let err = mc.export(metrics(2)).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bad data"));
    assert_eq!(rx.refused("grpc", Signal::Metrics), 2);
    rx.stop().await;
}

#[tokio::test]
async fn grpc_message_over_the_size_limit_is_refused_before_the_pipeline() {
    let rec = Recorder::new();
    let mut config = grpc_only();
    if let Some(g) = config.protocols.grpc.as_mut() {
        g.max_recv_msg_size_mib = 1;
    }
    let rx = Running::start(config, all_signals(&rec)).await;

    let mut big = traces(1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(1024 * 1024 + 10);
    let mut tc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    let err = tc.export(big.clone()).await.expect_err("too large");
    // RESOURCE_EXHAUSTED (not tonic's OUT_OF_RANGE, which OTLP clients retry).
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Compressed it is small on the wire; the limit applies after decompression.
    let mut gz = TraceServiceClient::connect(rx.grpc_url())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let err = gz
        .export(big)
        .await
        .expect_err("too large once decompressed");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(rec.calls(), 0);

    // Just under the limit passes.
    let mut ok = traces(1);
    ok.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(1024 * 1024 - 200);
    tc.export(ok).await.expect("fits");
    assert_eq!(rec.calls(), 1);
    rx.stop().await;
}

#[tokio::test]
async fn grpc_empty_request_succeeds_without_the_pipeline() {
    let rec = Recorder::refusing(ConsumeError::Permanent("must not be called".into()));
    let rx = Running::start(grpc_only(), all_signals(&rec)).await;
    let mut tc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    tc.export(ExportTraceServiceRequest::default())
        .await
        .expect("empty request accepted");
    tc.export(traces(0)).await.expect("resource without spans");
    assert_eq!(rec.calls(), 0);
    rx.stop().await;
}

/// A request message that is encoded as the given bytes, whatever they are.
#[derive(Clone, PartialEq, Default)]
struct RawMessage(Vec<u8>);

impl std::fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawMessage({} bytes)", self.0.len())
    }
}

impl prost::Message for RawMessage {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

#[tokio::test]
async fn grpc_malformed_message_is_invalid_argument_and_counted() {
    let rec = Recorder::new();
    let rx = Running::start(grpc_only(), all_signals(&rec)).await;
    let channel = tonic::transport::Endpoint::from_shared(rx.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    // A span whose name (field 5) is not UTF-8, inside resource and scope.
    let span = [0x2a, 0x02, 0xff, 0xfe];
    let scope = [&[0x12, span.len() as u8][..], &span].concat();
    let resource = [&[0x12, scope.len() as u8][..], &scope].concat();
    let bad = [&[0x0a, resource.len() as u8][..], &resource].concat();
    for _ in 0..2 {
        grpc.ready().await.unwrap();
        let err = grpc
            .unary::<_, ExportTraceServiceResponse, _>(
                tonic::Request::new(RawMessage(bad.clone())),
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                    .parse()
                    .unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .expect_err("malformed");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("UTF-8"), "{}", err.message());
    }
    assert_eq!(rec.calls(), 0);
    let text = rx.telemetry.encode();
    assert!(
        text.contains(
            "sluice_receiver_rejected_requests_total{receiver=\"otlp\",transport=\"grpc\",reason=\"decode\"} 2"
        ),
        "{text}"
    );
    // The same bytes with a valid name pass.
    let good = [0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x2a, 0x02, b'o', b'k'];
    grpc.ready().await.unwrap();
    grpc.unary::<_, ExportTraceServiceResponse, _>(
        tonic::Request::new(RawMessage(good.to_vec())),
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            .parse()
            .unwrap(),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect("valid");
    assert_eq!(rec.calls(), 1);
    rx.stop().await;
}
