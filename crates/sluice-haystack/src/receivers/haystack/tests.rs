//! Tests over real connections on 127.0.0.1 (ports picked by the kernel):
//! reqwest for HTTP, a tonic client for gRPC.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    Batch, BuildContext, ComponentConfig, ComponentId, ConsumeError, Consumer, ConsumerRef, Health,
    Kind, Lifecycle, Payload, SignalConsumers, Telemetry,
};
use sluice_pdata::haystack::{DispatchResult, ResultCode, Span, SpanBatch, Tag};
use sluice_pdata::ExportTraceServiceRequest;
use tonic::Code;

use super::*;

// ---------------------------------------------------------------- helpers

/// Records accepted batches, or refuses every batch with a set error.
struct Recorder {
    accepted: Mutex<Vec<Batch>>,
    refuse: Option<ConsumeError>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: Mutex::new(Vec::new()),
            refuse: None,
        })
    }

    fn refusing(err: ConsumeError) -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: Mutex::new(Vec::new()),
            refuse: Some(err),
        })
    }

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|b| match b.payload() {
                Payload::Traces(t) => t.clone(),
                other => panic!("expected traces, got {other:?}"),
            })
            .collect()
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Some(e) = &self.refuse {
            return Err(e.clone());
        }
        self.accepted.lock().unwrap().push(batch);
        Ok(())
    }
}

fn traces_only(r: &Arc<Recorder>) -> SignalConsumers {
    let c: ConsumerRef = r.clone();
    SignalConsumers {
        traces: Some(c),
        metrics: None,
        logs: None,
    }
}

fn ctx(ty: &str, telemetry: &Arc<Telemetry>) -> BuildContext {
    BuildContext {
        id: ComponentId::new(ty, None),
        kind: Kind::Receiver,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: vec![sluice_core::Signal::Traces],
    }
}

struct Running {
    receiver: HaystackReceiver,
    telemetry: Arc<Telemetry>,
    ty: &'static str,
}

impl Running {
    async fn http(rec: &Arc<Recorder>) -> Running {
        Running::http_with(rec, 1024 * 1024).await
    }

    async fn http_with(rec: &Arc<Recorder>, max_request_body_size: u64) -> Running {
        let config = HttpConfig {
            endpoint: "127.0.0.1:0".into(),
            max_request_body_size,
        };
        assert!(config.validate().is_empty());
        let telemetry = Telemetry::new(MetricsLevel::Normal);
        let receiver =
            HaystackReceiver::http(&ctx(HTTP_TYPE, &telemetry), &config, &traces_only(rec));
        receiver.start().await.expect("receiver starts");
        Running {
            receiver,
            telemetry,
            ty: HTTP_TYPE,
        }
    }

    async fn grpc(rec: &Arc<Recorder>) -> Running {
        let config = GrpcConfig {
            endpoint: "127.0.0.1:0".into(),
            ..GrpcConfig::default()
        };
        assert!(config.validate().is_empty());
        let telemetry = Telemetry::new(MetricsLevel::Normal);
        let receiver =
            HaystackReceiver::grpc(&ctx(GRPC_TYPE, &telemetry), &config, &traces_only(rec));
        receiver.start().await.expect("receiver starts");
        Running {
            receiver,
            telemetry,
            ty: GRPC_TYPE,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.receiver.local_addr().expect("bound")
        )
    }

    fn counter(&self, transport: &str) -> (u64, u64) {
        let m = self.telemetry.receiver(
            &ComponentId::new(self.ty, None),
            transport,
            sluice_core::Signal::Traces,
        );
        (m.accepted.get(), m.refused.get())
    }

    fn rejected(&self, transport: &str, reason: &str) -> bool {
        let text = self.telemetry.encode();
        text.contains(&format!(
            "sluice_receiver_rejected_requests_total{{receiver=\"{}\",transport=\"{transport}\",reason=\"{reason}\"}} 1",
            self.ty
        ))
    }

    async fn stop(self) {
        self.receiver.shutdown().await.expect("clean shutdown");
    }
}

fn span(i: u32) -> Span {
    Span {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: format!("b7ad6b71692033{i:02x}"),
        parent_span_id: String::new(),
        service_name: "checkout".into(),
        operation_name: format!("GET /cart/{i}"),
        start_time: 1_700_000_000_000_000,
        duration: 1500,
        logs: vec![],
        tags: vec![
            Tag::string("http.method", "GET"),
            Tag::long("http.status_code", 200),
        ],
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Checks one request holds `span(i)` for each `i`, translated.
fn assert_spans(req: &ExportTraceServiceRequest, ids: &[u32]) {
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let resource = rs.resource.as_ref().expect("resource");
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&any_value::Value::StringValue("checkout".into()))
    );
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    assert_eq!(spans.len(), ids.len());
    for (s, i) in spans.iter().zip(ids) {
        assert_eq!(s.name, format!("GET /cart/{i}"));
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(s.end_time_unix_nano, 1_700_000_000_001_500_000);
        assert_eq!(
            attr(&s.attributes, "http.method"),
            Some(&any_value::Value::StringValue("GET".into()))
        );
        assert_eq!(
            attr(&s.attributes, "http.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
    }
}

async fn post(url: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request answered")
}

// ---------------------------------------------------------------- HTTP

#[tokio::test]
async fn http_protobuf_span_is_answered_202_and_arrives_as_otlp() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    for ct in ["application/octet-stream", "application/x-protobuf"] {
        let resp = post(&rx.url("/span"), ct, span(1).encode_to_vec()).await;
        assert_eq!(resp.status(), 202, "{ct}");
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    let got = rec.requests();
    assert_eq!(got.len(), 2);
    assert_spans(&got[0], &[1]);
    assert_eq!(rx.counter("http"), (2, 0));
    rx.stop().await;
}

#[tokio::test]
async fn http_json_span_is_accepted() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    let body = sluice_pdata::haystack::to_json(&span(3));
    let resp = post(&rx.url("/span"), "application/json; charset=utf-8", body).await;
    assert_eq!(resp.status(), 202);
    assert_spans(&rec.requests()[0], &[3]);
    rx.stop().await;
}

#[tokio::test]
async fn http_batches_arrive_as_one_request_in_protobuf_and_json() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    let batch = SpanBatch {
        spans: vec![span(1), span(2), span(3)],
    };
    let resp = post(
        &rx.url("/spans"),
        "application/octet-stream",
        batch.encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 202);

    let items: Vec<serde_json::Value> = [span(4), span(5)]
        .iter()
        .map(|s| serde_json::from_slice(&sluice_pdata::haystack::to_json(s)).unwrap())
        .collect();
    let wrapped = serde_json::to_vec(&serde_json::json!({ "spans": items })).unwrap();
    let resp = post(&rx.url("/spans"), "application/json", wrapped).await;
    assert_eq!(resp.status(), 202);
    let bare = serde_json::to_vec(&items).unwrap();
    let resp = post(&rx.url("/spans"), "application/json", bare).await;
    assert_eq!(resp.status(), 202);

    let got = rec.requests();
    assert_eq!(got.len(), 3);
    assert_spans(&got[0], &[1, 2, 3]);
    assert_spans(&got[1], &[4, 5]);
    assert_spans(&got[2], &[4, 5]);
    assert_eq!(rx.counter("http"), (7, 0));

    // An empty batch is accepted without reaching the pipeline.
    let resp = post(&rx.url("/spans"), "application/octet-stream", vec![]).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(rec.requests().len(), 3);
    rx.stop().await;
}

#[tokio::test]
async fn http_is_active_answers_active() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    let resp = reqwest::get(rx.url("/isActive")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ACTIVE");
    let resp = post(&rx.url("/isActive"), "application/json", vec![]).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    rx.stop().await;
}

#[tokio::test]
async fn http_bad_json_is_400_naming_the_field_and_counted() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    let resp = post(
        &rx.url("/span"),
        "application/json",
        br#"{"traceId":"t","startTime":"12x"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let msg = resp.text().await.unwrap();
    assert!(msg.contains("startTime"), "{msg}");
    assert!(rx.rejected("http", "decode"), "{}", rx.telemetry.encode());
    assert!(rec.requests().is_empty());
    assert_eq!(rx.counter("http"), (0, 0));
    rx.stop().await;
}

#[tokio::test]
async fn http_bad_batch_json_names_the_span() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    let body = br#"{"spans":[{"traceId":"a"},{"tags":[{"key":"k","vLong":"x"}]}]}"#.to_vec();
    let resp = post(&rx.url("/spans"), "application/json", body).await;
    assert_eq!(resp.status(), 400);
    let msg = resp.text().await.unwrap();
    assert!(msg.contains("spans[1]") && msg.contains("vLong"), "{msg}");
    assert!(rec.requests().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn http_bad_protobuf_and_empty_span_are_400() {
    let rec = Recorder::new();
    let rx = Running::http(&rec).await;
    // Field 1 (traceId, a string) sent as a varint.
    let resp = post(
        &rx.url("/span"),
        "application/octet-stream",
        vec![0x08, 0x05],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let msg = resp.text().await.unwrap();
    assert!(msg.contains("invalid Haystack Span protobuf"), "{msg}");
    assert!(rx.rejected("http", "decode"));

    let resp = post(&rx.url("/span"), "application/octet-stream", vec![]).await;
    assert_eq!(resp.status(), 400);
    assert!(rx.rejected("http", "empty"));
    assert!(rec.requests().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn http_wrong_content_type_path_and_size_are_refused_and_counted() {
    let rec = Recorder::new();
    let rx = Running::http_with(&rec, 64).await;
    let resp = post(&rx.url("/span"), "text/plain", b"x".to_vec()).await;
    assert_eq!(resp.status(), 415);
    assert!(rx.rejected("http", "unsupported_media_type"));

    let resp = post(&rx.url("/v1/traces"), "application/json", b"{}".to_vec()).await;
    assert_eq!(resp.status(), 404);
    assert!(rx.rejected("http", "not_found"));

    let resp = post(&rx.url("/span"), "application/octet-stream", vec![0; 65]).await;
    assert_eq!(resp.status(), 413);
    assert!(rx.rejected("http", "too_large"));

    let resp = reqwest::get(rx.url("/span")).await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(rx.rejected("http", "method_not_allowed"));
    assert!(rec.requests().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn http_pipeline_refusals_become_429_503_with_retry_after() {
    let rec = Recorder::refusing(ConsumeError::overloaded("memory limit"));
    let rx = Running::http(&rec).await;
    let resp = post(
        &rx.url("/span"),
        "application/x-protobuf",
        span(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.text().await.unwrap().contains("memory limit"));
    assert_eq!(rx.counter("http"), (0, 1));
    rx.stop().await;

    let rec = Recorder::refusing(ConsumeError::Retryable {
        reason: "backend down".into(),
        retry_after: Some(std::time::Duration::from_millis(2500)),
        overloaded: false,
    });
    let rx = Running::http(&rec).await;
    let resp = post(
        &rx.url("/span"),
        "application/x-protobuf",
        span(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    rx.stop().await;

    let rec = Recorder::refusing(ConsumeError::Permanent("rejected".into()));
    let rx = Running::http(&rec).await;
    let resp = post(
        &rx.url("/span"),
        "application/x-protobuf",
        span(1).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("retry-after").is_none());
    rx.stop().await;
}

// ---------------------------------------------------------------- gRPC

async fn dispatch<M: Message + Send + Sync + 'static>(
    rx: &Running,
    path: &str,
    msg: M,
) -> Result<DispatchResult, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(rx.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary::<M, DispatchResult, _>(
        tonic::Request::new(msg),
        path.parse().unwrap(),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn grpc_dispatch_answers_success_and_the_span_arrives_as_otlp() {
    let rec = Recorder::new();
    let rx = Running::grpc(&rec).await;
    let answer = dispatch(&rx, "/SpanAgent/dispatch", span(7)).await.unwrap();
    assert_eq!(answer.code, ResultCode::Success as i32);
    assert_eq!(answer.error_message, "");
    let got = rec.requests();
    assert_eq!(got.len(), 1);
    assert_spans(&got[0], &[7]);
    assert_eq!(rx.counter("grpc"), (1, 0));
    rx.stop().await;
}

#[tokio::test]
async fn grpc_retryable_refusal_is_rate_limit_error_and_permanent_is_unknown_error() {
    let rec = Recorder::refusing(ConsumeError::overloaded("queue full"));
    let rx = Running::grpc(&rec).await;
    let answer = dispatch(&rx, "/SpanAgent/dispatch", span(1)).await.unwrap();
    assert_eq!(answer.code, ResultCode::RateLimitError as i32);
    assert!(answer.error_message.contains("queue full"), "{answer:?}");
    assert_eq!(rx.counter("grpc"), (0, 1));
    rx.stop().await;

    let rec = Recorder::refusing(ConsumeError::Permanent("bad span".into()));
    let rx = Running::grpc(&rec).await;
    let answer = dispatch(&rx, "/SpanAgent/dispatch", span(1)).await.unwrap();
    assert_eq!(answer.code, ResultCode::UnknownError as i32);
    assert!(answer.error_message.contains("bad span"), "{answer:?}");
    rx.stop().await;
}

/// A message whose field 1 is a varint, where `Span` has a string.
#[derive(Clone, PartialEq, prost::Message)]
struct Bogus {
    #[prost(uint64, tag = "1")]
    x: u64,
}

#[tokio::test]
async fn grpc_malformed_span_is_invalid_argument_and_counted() {
    let rec = Recorder::new();
    let rx = Running::grpc(&rec).await;
    let err = dispatch(&rx, "/SpanAgent/dispatch", Bogus { x: 5 })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(rx.rejected("grpc", "decode"), "{}", rx.telemetry.encode());
    assert!(rec.requests().is_empty());
    rx.stop().await;
}

#[tokio::test]
async fn grpc_other_methods_are_unimplemented() {
    let rec = Recorder::new();
    let rx = Running::grpc(&rec).await;
    let err = dispatch(
        &rx,
        "/com.expedia.open.tracing.agent.api.SpanAgent/dispatch",
        span(1),
    )
    .await
    .expect_err("unknown path");
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("/SpanAgent/dispatch"), "{err:?}");
    rx.stop().await;
}

// ---------------------------------------------------------------- config

#[test]
fn configs_default_and_validate_with_field_paths() {
    let http: HttpConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(http.endpoint, "127.0.0.1:8080");
    assert_eq!(http.max_request_body_size, 4 * 1024 * 1024);
    let grpc: GrpcConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(grpc.endpoint, "127.0.0.1:35000");

    let bad: HttpConfig =
        serde_yaml_ng::from_str("{endpoint: 'nope', max_request_body_size: 0}").unwrap();
    let paths: Vec<_> = bad.validate().into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["endpoint", "max_request_body_size"]);
    let bad: GrpcConfig = serde_yaml_ng::from_str("{max_recv_msg_size_mib: 0}").unwrap();
    let paths: Vec<_> = bad.validate().into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["max_recv_msg_size_mib"]);
    assert!(serde_yaml_ng::from_str::<GrpcConfig>("{port: 1}").is_err());
}
