//! Tests of the `otlp` exporter against a real OTLP/gRPC server on
//! 127.0.0.1, started inside each test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::factory::parse_config;
use sluice_core::{ExporterFactory, Signal};
use sluice_pdata::{
    Batch, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    Payload,
};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use super::*;
use sluice_shared::status::{ProtoAny, ProtoDuration, RetryInfo, RpcStatus, RETRY_INFO_TYPE_URL};
use sluice_shared::test_support::{self, build_context, yaml};

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    Ok,
    /// Fail with this code; with `Some(d)`, attach a `RetryInfo` of `d`.
    Fail(Code, Option<Duration>),
    /// Accept, reporting this many rejected spans.
    Partial(i64),
}

/// One call the server received.
#[derive(Debug, Clone)]
struct Received {
    payload: Payload,
    metadata: HashMap<String, String>,
}

#[derive(Clone)]
struct State {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

impl State {
    fn record<T>(&self, request: &Request<T>, payload: Payload) -> Result<(), Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.received
            .lock()
            .unwrap()
            .push(Received { payload, metadata });
        match self.answer.lock().unwrap().clone() {
            Answer::Ok | Answer::Partial(_) => Ok(()),
            Answer::Fail(code, retry) => Err(failure(code, retry)),
        }
    }

    fn rejected(&self) -> i64 {
        match *self.answer.lock().unwrap() {
            Answer::Partial(n) => n,
            _ => 0,
        }
    }
}

fn failure(code: Code, retry: Option<Duration>) -> Status {
    let Some(delay) = retry else {
        return Status::new(code, "test failure");
    };
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: "test failure".into(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.into(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(code, "test failure", details.encode_to_vec().into())
}

#[tonic::async_trait]
impl TraceService for State {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let payload = Payload::Traces(request.get_ref().clone());
        self.record(&request, payload)?;
        let rejected = self.rejected();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: "spans too old".into(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for State {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let payload = Payload::Metrics(request.get_ref().clone());
        self.record(&request, payload)?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for State {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let payload = Payload::Logs(request.get_ref().clone());
        self.record(&request, payload)?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// An OTLP/gRPC server on 127.0.0.1 that accepts gzip, records every call
/// and answers as told.
struct Server {
    addr: SocketAddr,
    state: State,
    stop: CancellationToken,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = State {
            received: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Ok)),
        };
        let stop = CancellationToken::new();
        // The generated servers are tower services; an axum router serves
        // them over HTTP/2 (h2c) like any gRPC server would.
        let router = axum::Router::new()
            .route_service(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                TraceServiceServer::new(state.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .route_service(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                MetricsServiceServer::new(state.clone())
                    .accept_compressed(CompressionEncoding::Gzip),
            )
            .route_service(
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                LogsServiceServer::new(state.clone()).accept_compressed(CompressionEncoding::Gzip),
            );
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Server { addr, state, stop }
    }

    fn answer(&self, a: Answer) {
        *self.state.answer.lock().unwrap() = a;
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` calls have been received.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..1000 {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the server received {} calls, expected {n}",
            self.received().len()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config(body: &str) -> OtlpExporterConfig {
    let raw = yaml(body);
    let parsed: OtlpExporterConfig = serde_yaml_ng::from_value(raw.clone()).unwrap();
    let errors = parsed.validate();
    assert!(errors.is_empty(), "unexpected config errors: {errors:?}");
    parsed
}

fn sender(body: &str) -> GrpcSender {
    GrpcSender::new("otlp", &config(body)).unwrap()
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn every_signal_arrives_intact_with_headers_and_gzip() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: http://{}\nheaders:\n  X-Tenant: acme\n  authorization: Bearer s3cret\n",
        server.addr
    ));
    s.start().await.unwrap();
    let batches = [
        test_support::traces(),
        test_support::metrics(),
        test_support::logs(),
    ];
    for b in &batches {
        s.send(b).await.unwrap();
    }
    let got = server.received();
    assert_eq!(got.len(), 3);
    for (b, r) in batches.iter().zip(&got) {
        assert_eq!(&r.payload, b.payload(), "payload changed on the way");
        assert_eq!(r.payload.item_count(), b.items());
        assert_eq!(r.metadata.get("x-tenant").map(String::as_str), Some("acme"));
        assert_eq!(
            r.metadata.get("authorization").map(String::as_str),
            Some("Bearer s3cret")
        );
        assert_eq!(
            r.metadata.get("grpc-encoding").map(String::as_str),
            Some("gzip"),
            "gzip is the default compression"
        );
        assert!(r.metadata.contains_key("grpc-timeout"));
        let ua = r.metadata.get("user-agent").cloned().unwrap_or_default();
        assert!(ua.starts_with("sluice/"), "user-agent {ua:?}");
    }
    // Spot-check the ids of the spans.
    let Payload::Traces(t) = &got[0].payload else {
        panic!("first call was not traces")
    };
    let spans: Vec<_> = t
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[2].trace_id, vec![0x02; 16]);
    assert_eq!(spans[2].span_id, vec![0x0c; 8]);
    assert_eq!(spans[2].name, "handle");
}

#[tokio::test]
async fn compression_none_sends_uncompressed() {
    let server = Server::start().await;
    for spelling in ["none", "\"\""] {
        let s = sender(&format!(
            "endpoint: http://{}\ncompression: {spelling}\n",
            server.addr
        ));
        s.send(&test_support::logs()).await.unwrap();
    }
    let got = server.received();
    assert_eq!(got.len(), 2);
    for r in got {
        assert_eq!(r.metadata.get("grpc-encoding"), None);
        assert_eq!(r.payload, *test_support::logs().payload());
    }
}

#[tokio::test]
async fn bare_host_port_with_insecure_connects_in_plaintext() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: {}\ntls:\n  insecure: true\n",
        server.addr
    ));
    s.send(&test_support::metrics()).await.unwrap();
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn user_agent_header_is_prepended_to_the_transport_one() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: http://{}\nheaders:\n  User-Agent: my-agent/2\n",
        server.addr
    ));
    s.send(&test_support::traces()).await.unwrap();
    let ua = server.received()[0]
        .metadata
        .get("user-agent")
        .cloned()
        .unwrap_or_default();
    assert!(ua.starts_with("my-agent/2"), "user-agent {ua:?}");
}

#[tokio::test]
async fn server_statuses_map_to_retryable_or_permanent() {
    let server = Server::start().await;
    let s = sender(&format!("endpoint: http://{}\n", server.addr));
    let batch = test_support::traces();

    server.answer(Answer::Fail(Code::Unavailable, None));
    match s.send(&batch).await {
        Err(SendError::Retryable {
            message,
            retry_after,
        }) => {
            assert!(message.contains("UNAVAILABLE"), "{message}");
            assert_eq!(retry_after, None);
        }
        other => panic!("UNAVAILABLE gave {other:?}"),
    }

    server.answer(Answer::Fail(Code::InvalidArgument, None));
    match s.send(&batch).await {
        Err(SendError::Permanent(message)) => {
            assert!(message.contains("INVALID_ARGUMENT"), "{message}");
            assert!(message.contains("test failure"), "{message}");
        }
        other => panic!("INVALID_ARGUMENT gave {other:?}"),
    }

    server.answer(Answer::Fail(Code::ResourceExhausted, None));
    assert!(
        matches!(s.send(&batch).await, Err(SendError::Permanent(_))),
        "RESOURCE_EXHAUSTED without RetryInfo is permanent"
    );

    server.answer(Answer::Fail(
        Code::ResourceExhausted,
        Some(Duration::from_millis(3500)),
    ));
    assert_eq!(
        s.send(&batch).await,
        Err(SendError::Retryable {
            message: "backend answered RESOURCE_EXHAUSTED: test failure".into(),
            retry_after: Some(Duration::from_millis(3500)),
        })
    );

    server.answer(Answer::Fail(
        Code::Unavailable,
        Some(Duration::from_secs(2)),
    ));
    match s.send(&batch).await {
        Err(SendError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)))
        }
        other => panic!("UNAVAILABLE with RetryInfo gave {other:?}"),
    }

    server.answer(Answer::Fail(Code::Unauthenticated, None));
    assert!(matches!(s.send(&batch).await, Err(SendError::Permanent(_))));

    // Every call reached the server.
    assert_eq!(server.received().len(), 6);
}

#[test]
fn every_code_is_classified_as_specified() {
    let retryable = [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ];
    let all = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];
    for code in all {
        let got = classify_status(&Status::new(code, "x"));
        let want_retryable = retryable.contains(&code);
        assert_eq!(
            matches!(got, SendError::Retryable { .. }),
            want_retryable,
            "{code:?} -> {got:?}"
        );
    }
}

#[test]
fn malformed_status_details_count_as_no_retry_info() {
    let s = Status::with_details(Code::ResourceExhausted, "x", vec![0xff, 0xff, 0xff].into());
    assert!(matches!(classify_status(&s), SendError::Permanent(_)));
    // A negative delay is ignored too.
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: -1,
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: 8,
        message: String::new(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.into(),
            value: info.encode_to_vec(),
        }],
    };
    let s = Status::with_details(Code::ResourceExhausted, "x", details.encode_to_vec().into());
    assert!(matches!(classify_status(&s), SendError::Permanent(_)));
}

#[tokio::test]
async fn a_down_backend_does_not_fail_start_and_sends_are_retryable() {
    let port = closed_port().await;
    let (ctx, _) = build_context("otlp/down");
    let exporter = OtlpExporterFactory
        .create(
            ctx,
            &config(&format!("endpoint: http://127.0.0.1:{port}\n")),
        )
        .unwrap();
    exporter.start().await.unwrap();
    exporter.shutdown().await.unwrap();

    let s = sender(&format!("endpoint: http://127.0.0.1:{port}\n"));
    s.start().await.unwrap();
    match s.send(&test_support::traces()).await {
        Err(SendError::Retryable { message, .. }) => {
            assert!(message.contains("UNAVAILABLE"), "{message}")
        }
        other => panic!("an unreachable backend gave {other:?}"),
    }
}

#[tokio::test]
async fn partial_success_reports_the_rejected_items() {
    let server = Server::start().await;
    server.answer(Answer::Partial(2));
    let s = sender(&format!("endpoint: http://{}\n", server.addr));
    // The helper counts these as rejected and does not retry them.
    assert_eq!(
        s.send(&test_support::traces()).await,
        Err(SendError::PartialSuccess {
            rejected: 2,
            message: "spans too old".into()
        })
    );
}

#[tokio::test]
async fn the_factory_built_exporter_queues_sends_and_counts() {
    let server = Server::start().await;
    let (ctx, telemetry) = build_context("otlp/backend");
    let exporter = OtlpExporterFactory
        .create(ctx, &config(&format!("endpoint: http://{}\n", server.addr)))
        .unwrap();
    exporter.start().await.unwrap();
    exporter.consume(test_support::traces()).await.unwrap();
    exporter.consume(test_support::logs()).await.unwrap();
    let got = server.wait_for(2).await;
    exporter.shutdown().await.unwrap();
    let mut signals: Vec<Signal> = got.iter().map(|r| r.payload.signal()).collect();
    signals.sort();
    assert_eq!(signals, vec![Signal::Traces, Signal::Logs]);
    let text = telemetry.encode();
    assert!(
        text.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp/backend\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("otelcol_exporter_sent_log_records_total{exporter=\"otlp/backend\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn with_the_queue_disabled_errors_reach_the_pipeline() {
    let server = Server::start().await;
    server.answer(Answer::Fail(
        Code::Unavailable,
        Some(Duration::from_secs(4)),
    ));
    let (ctx, _) = build_context("otlp");
    let exporter = OtlpExporterFactory
        .create(
            ctx,
            &config(&format!(
                "endpoint: http://{}\nsending_queue:\n  enabled: false\nretry_on_failure:\n  enabled: false\n",
                server.addr
            )),
        )
        .unwrap();
    exporter.start().await.unwrap();
    let err = exporter.consume(test_support::metrics()).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(matches!(
        err,
        sluice_core::ConsumeError::Retryable {
            retry_after: Some(d),
            ..
        } if d == Duration::from_secs(4)
    ));
    exporter.shutdown().await.unwrap();
}

// ---- configuration ----

fn errors(body: &str) -> Vec<FieldError> {
    match parse_config::<OtlpExporterConfig>(&yaml(body)) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

fn has_error(errors: &[FieldError], path: &str, needle: &str) -> bool {
    errors
        .iter()
        .any(|e| e.path == path && e.message.contains(needle))
}

#[test]
fn defaults() {
    let c: OtlpExporterConfig =
        serde_yaml_ng::from_value(yaml("endpoint: http://localhost:4317")).unwrap();
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert!(!c.tls.insecure);
    assert!(c.headers.is_empty());
    assert!(c.sending_queue.enabled);
    assert_eq!(c.sending_queue.queue_size, 1000);
    assert_eq!(c.sending_queue.num_consumers, 10);
    assert!(c.validate().is_empty());
}

#[test]
fn full_config_parses() {
    let c = config(
        "endpoint: collector:4317\n\
         tls:\n  insecure: true\n\
         headers:\n  x-scope: team-a\n\
         compression: none\n\
         timeout: 250ms\n\
         sending_queue:\n  num_consumers: 2\n  queue_size: 50\n  block_on_overflow: true\n",
    );
    assert_eq!(c.timeout, Duration::from_millis(250));
    assert_eq!(c.compression, Compression::None);
    assert_eq!(c.sending_queue.queue_size, 50);
    assert!(c.sending_queue.block_on_overflow);
}

#[test]
fn missing_endpoint_is_an_error() {
    let e = errors("timeout: 1s");
    assert!(has_error(&e, "endpoint", "required"), "{e:?}");
    let e = errors("");
    assert!(has_error(&e, "endpoint", "required"), "{e:?}");
}

#[test]
fn tls_configs_are_refused_with_a_hint() {
    let e = errors("endpoint: https://collector:4317");
    assert!(
        has_error(&e, "endpoint", "TLS is not supported yet"),
        "{e:?}"
    );
    assert!(has_error(&e, "endpoint", "tls.insecure: true"), "{e:?}");
    // https stays TLS even with insecure.
    let e = errors("endpoint: https://collector:4317\ntls:\n  insecure: true");
    assert!(
        has_error(&e, "endpoint", "TLS is not supported yet"),
        "{e:?}"
    );
    let e = errors("endpoint: collector:4317");
    assert!(
        has_error(&e, "tls::insecure", "TLS is not supported yet"),
        "{e:?}"
    );
    assert!(
        has_error(&e, "tls::insecure", "tls.insecure: true"),
        "{e:?}"
    );
    assert!(errors("endpoint: collector:4317\ntls:\n  insecure: true").is_empty());
    assert!(errors("endpoint: http://collector:4317").is_empty());
    assert!(errors("endpoint: http://[::1]:4317/").is_empty());
}

#[test]
fn malformed_endpoints_are_errors() {
    for (endpoint, needle) in [
        ("http://collector", "no port"),
        ("http://collector:4317/v1/traces", "no path"),
        ("unix:///tmp/sock", "unsupported scheme"),
        ("http://user:pw@collector:4317", "credentials"),
        ("http://coll ector:4317", "not a valid"),
        ("http://:4317", "host"),
    ] {
        let e = errors(&format!("endpoint: \"{endpoint}\"\ntls:\n  insecure: true"));
        assert!(has_error(&e, "endpoint", needle), "{endpoint}: {e:?}");
    }
}

#[test]
fn bad_headers_are_errors() {
    let e = errors("endpoint: http://c:4317\nheaders:\n  \"bad header\": x");
    assert!(has_error(&e, "headers::bad header", "not a valid"), "{e:?}");
    let e = errors("endpoint: http://c:4317\nheaders:\n  x-a: \"line\\nbreak\"");
    assert!(has_error(&e, "headers::x-a", "printable ASCII"), "{e:?}");
    let e = errors("endpoint: http://c:4317\nheaders:\n  trace-bin: abc");
    assert!(has_error(&e, "headers::trace-bin", "binary"), "{e:?}");
    let e = errors("endpoint: http://c:4317\nheaders:\n  grpc-timeout: 1S");
    assert!(
        has_error(&e, "headers::grpc-timeout", "cannot be configured"),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4317\nheaders:\n  X-A: 1x\n  x-a: 2x");
    assert!(has_error(&e, "headers::x-a", "twice"), "{e:?}");
}

#[test]
fn unknown_fields_and_bad_values_are_errors() {
    let e =
        errors("endpoint: http://c:4317\nretry_on_failure:\n  enabled: true\n  max_intervall: 1s");
    assert!(
        e.iter().any(|e| e.path == "retry_on_failure::max_intervall"
            && e.message.contains("unknown field `max_intervall`")),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4317\nretry_on_failure:\n  multiplier: 0.5");
    assert!(
        has_error(&e, "retry_on_failure::multiplier", "at least 1"),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4317\ntls:\n  ca_file: /x.pem");
    assert!(
        e.iter()
            .any(|e| e.path == "tls::ca_file" && e.message.contains("unknown field `ca_file`")),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4317\ncompression: zstd");
    assert!(
        e.iter()
            .any(|e| e.path == "compression" && e.message.contains("zstd")),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4317\ntimeout: 0s");
    assert!(has_error(&e, "timeout", "greater than 0"), "{e:?}");
    let e = errors("endpoint: http://c:4317\ntimeout: soon");
    assert!(e.iter().any(|e| e.path == "timeout"), "{e:?}");
    let e = errors("endpoint: http://c:4317\nsending_queue:\n  queue_size: 0");
    assert!(
        has_error(&e, "sending_queue::queue_size", "at least 1"),
        "{e:?}"
    );
}

#[test]
fn factory_metadata() {
    let f = OtlpExporterFactory;
    assert_eq!(f.type_name(), "otlp");
    assert_eq!(f.signals(), &Signal::ALL);
    assert_eq!(f.stability(), sluice_core::Stability::Beta);
}

#[test]
fn the_sender_refuses_a_tls_config_without_panicking() {
    let mut c = config("endpoint: http://c:4317");
    c.endpoint = "https://c:4317".into();
    assert!(GrpcSender::new("otlp", &c).is_err());
    c.endpoint = "c:4317".into();
    assert!(GrpcSender::new("otlp", &c).is_err());
    c.endpoint = "garbage:port".into();
    assert!(GrpcSender::new("otlp", &c).is_err());
}

#[test]
fn batch_helpers_count_items() {
    // Guards the fixtures the assertions above rely on.
    assert_eq!(test_support::traces().items(), 3);
    assert_eq!(test_support::metrics().items(), 3);
    assert_eq!(test_support::logs().items(), 2);
    let _: Batch = test_support::traces();
}

#[test]
fn gzip_level_is_checked_and_defaults_to_the_fastest() {
    for bad in ["0", "10", "-1"] {
        let e = errors(&format!(
            "endpoint: http://c:4317\ncompression_params:\n  level: {bad}"
        ));
        assert!(
            has_error(&e, "compression_params::level", "not a gzip level"),
            "{bad}: {e:?}"
        );
    }
    assert!(errors("endpoint: http://c:4317\ncompression_params:\n  level: 9").is_empty());
    assert_eq!(
        config("endpoint: http://c:4317\n")
            .compression_params
            .gzip_level(),
        1
    );
    assert_eq!(
        config("endpoint: http://c:4317\ncompression_params:\n  level: 6\n")
            .compression_params
            .gzip_level(),
        6
    );
}
