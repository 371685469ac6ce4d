//! Tests over real connections on 127.0.0.1 (ports picked by the kernel).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    Batch, BuildContext, ComponentConfig, ComponentId, ConsumeError, Consumer, ConsumerRef, Health,
    Kind, Lifecycle, Payload, Registry, Signal, SignalConsumers, Stability, Telemetry,
};
use sluice_pdata::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
};
use tokio::sync::{Notify, Semaphore};
use tonic::codec::CompressionEncoding;
use tonic::Code;

use super::*;
use sluice_shared::status::{code, RetryInfo, RpcStatus, RETRY_INFO_TYPE_URL};

mod grpc;
mod http;

// ---------------------------------------------------------------- helpers

/// A consumer that records what it accepted, and can be told to refuse or to
/// block until released.
struct Recorder {
    accepted: Mutex<Vec<Batch>>,
    calls: AtomicUsize,
    refuse: Mutex<Option<ConsumeError>>,
    blocking: AtomicBool,
    entered: Notify,
    release: Semaphore,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            accepted: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            refuse: Mutex::new(None),
            blocking: AtomicBool::new(false),
            entered: Notify::new(),
            release: Semaphore::new(0),
        })
    }

    fn refusing(err: ConsumeError) -> Arc<Recorder> {
        let r = Recorder::new();
        *r.refuse.lock().unwrap() = Some(err);
        r
    }

    fn blocking() -> Arc<Recorder> {
        let r = Recorder::new();
        r.blocking.store(true, Ordering::SeqCst);
        r
    }

    fn batches(&self) -> Vec<Batch> {
        self.accepted.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.blocking.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release
                .acquire()
                .await
                .expect("semaphore never closed")
                .forget();
        }
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        self.accepted.lock().unwrap().push(batch);
        Ok(())
    }
}

fn all_signals(r: &Arc<Recorder>) -> SignalConsumers {
    let c: ConsumerRef = r.clone();
    SignalConsumers {
        traces: Some(c.clone()),
        metrics: Some(c.clone()),
        logs: Some(c),
    }
}

fn id() -> ComponentId {
    ComponentId::new("otlp", None)
}

fn ctx(telemetry: &Arc<Telemetry>) -> BuildContext {
    BuildContext {
        id: id(),
        kind: Kind::Receiver,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    }
}

fn grpc_only() -> Config {
    Config {
        protocols: Protocols {
            grpc: Some(GrpcConfig {
                endpoint: "127.0.0.1:0".into(),
                ..GrpcConfig::default()
            }),
            http: None,
        },
    }
}

fn http_only() -> Config {
    Config {
        protocols: Protocols {
            grpc: None,
            http: Some(HttpConfig {
                endpoint: "127.0.0.1:0".into(),
                ..HttpConfig::default()
            }),
        },
    }
}

fn both() -> Config {
    Config {
        protocols: Protocols {
            grpc: grpc_only().protocols.grpc,
            http: http_only().protocols.http,
        },
    }
}

struct Running {
    receiver: Arc<OtlpReceiver>,
    telemetry: Arc<Telemetry>,
}

impl Running {
    async fn start(config: Config, consumers: SignalConsumers) -> Running {
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let telemetry = Telemetry::new(MetricsLevel::Normal);
        let receiver = Arc::new(OtlpReceiver::new(&ctx(&telemetry), &config, &consumers));
        receiver.start().await.expect("receiver starts");
        Running {
            receiver,
            telemetry,
        }
    }

    fn grpc_url(&self) -> String {
        format!(
            "http://{}",
            self.receiver.grpc_local_addr().expect("grpc bound")
        )
    }

    fn http_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.receiver.http_local_addr().expect("http bound")
        )
    }

    fn accepted(&self, transport: &str, signal: Signal) -> u64 {
        self.telemetry
            .receiver(&id(), transport, signal)
            .accepted
            .get()
    }

    fn refused(&self, transport: &str, signal: Signal) -> u64 {
        self.telemetry
            .receiver(&id(), transport, signal)
            .refused
            .get()
    }

    async fn stop(self) {
        self.receiver.shutdown().await.expect("clean shutdown");
    }
}

fn traces(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: vec![u8::try_from(i % 250).unwrap() + 1; 8],
            name: format!("span-{i}"),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(n: usize) -> ExportMetricsServiceRequest {
    let data_points = (0..n)
        .map(|i| NumberDataPoint {
            value: Some(number_data_point::Value::AsInt(i64::try_from(i).unwrap())),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(n: usize) -> ExportLogsServiceRequest {
    let log_records = (0..n)
        .map(|i| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn post(
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.expect("request answered")
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE_URL)?;
    let info = RetryInfo::decode(&any.value[..]).ok()?;
    let d = info.retry_delay?;
    Some(Duration::new(
        u64::try_from(d.seconds).ok()?,
        u32::try_from(d.nanos).ok()?,
    ))
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests_then_closes_the_ports() {
    let rec = Recorder::blocking();
    let rx = Running::start(both(), all_signals(&rec)).await;
    let http_addr = rx.receiver.http_local_addr().unwrap();
    let grpc_addr = rx.receiver.grpc_local_addr().unwrap();

    let url = rx.http_url("/v1/traces");
    let http_req = tokio::spawn(async move {
        post(
            &url,
            "application/x-protobuf",
            None,
            traces(1).encode_to_vec(),
        )
        .await
        .status()
    });
    rec.entered.notified().await;
    let mut tc = TraceServiceClient::connect(rx.grpc_url()).await.unwrap();
    let grpc_req = tokio::spawn(async move { tc.export(traces(2)).await.map(|_| ()) });
    rec.entered.notified().await;

    let receiver = rx.receiver.clone();
    let mut shutdown = tokio::spawn(async move { receiver.shutdown().await });
    // Both requests are held by the pipeline: shutdown must not return.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut shutdown).await;
    assert!(early.is_err(), "shutdown returned with requests in flight");
    assert!(!http_req.is_finished() && !grpc_req.is_finished());

    rec.release.add_permits(2);
    shutdown
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
    assert_eq!(http_req.await.unwrap(), 200);
    grpc_req.await.unwrap().expect("gRPC request answered OK");
    assert_eq!(rec.batches().len(), 2);
    assert_eq!(rx.accepted("http", Signal::Traces), 1);
    assert_eq!(rx.accepted("grpc", Signal::Traces), 2);

    for addr in [http_addr, grpc_addr] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts connections after shutdown"
        );
    }
    assert_eq!(rx.receiver.http_local_addr(), None);
}

#[tokio::test]
async fn start_fails_naming_an_endpoint_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let mut config = both();
    if let Some(h) = config.protocols.http.as_mut() {
        h.endpoint = addr.to_string();
    }
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let rec = Recorder::new();
    let receiver = OtlpReceiver::new(&ctx(&telemetry), &config, &all_signals(&rec));
    let err = receiver.start().await.expect_err("port is taken");
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("protocols::http::endpoint"), "{msg}");
    assert_eq!(receiver.grpc_local_addr(), None, "nothing left running");
    receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn factory_is_registered_and_builds_a_working_receiver() {
    let mut registry = Registry::new();
    register(&mut registry);
    let info = registry
        .list()
        .into_iter()
        .find(|i| i.kind == Kind::Receiver && i.type_name == "otlp")
        .expect("otlp receiver registered");
    assert_eq!(info.stability, Stability::Beta);
    assert_eq!(info.signals, &Signal::ALL[..]);

    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let rec = Recorder::new();
    let receiver = OtlpReceiverFactory
        .create(ctx(&telemetry), &http_only(), all_signals(&rec))
        .expect("built");
    receiver.start().await.expect("started");
    receiver.shutdown().await.expect("stopped");
    assert!(OtlpReceiverFactory
        .create(ctx(&telemetry), &Config::default(), all_signals(&rec))
        .is_err());
}

// ---------------------------------------------------------------- config

fn parse(yaml: &str) -> Result<sluice_core::factory::ParsedConfig, Vec<sluice_core::FieldError>> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    sluice_core::factory::parse_config::<Config>(&value)
}

#[test]
fn config_empty_protocol_key_enables_it_with_defaults() {
    let c: Config = serde_yaml_ng::from_str("protocols:\n  grpc:\n").unwrap();
    assert_eq!(c.protocols.grpc, Some(GrpcConfig::default()));
    assert_eq!(c.protocols.http, None);
    let g = GrpcConfig::default();
    assert_eq!(g.endpoint, "127.0.0.1:4317");
    assert_eq!(g.max_recv_msg_size_mib, 4);
    let h = HttpConfig::default();
    assert_eq!(h.endpoint, "127.0.0.1:4318");
    assert_eq!(
        (
            h.traces_url_path.as_str(),
            h.metrics_url_path.as_str(),
            h.logs_url_path.as_str()
        ),
        ("/v1/traces", "/v1/metrics", "/v1/logs")
    );
    assert_eq!(h.max_request_body_size, 20 * 1024 * 1024);

    let parsed = parse("protocols:\n  grpc:\n  http:\n    endpoint: 0.0.0.0:14318\n").unwrap();
    let listen: Vec<(String, String)> = parsed
        .listen
        .iter()
        .map(|l| (l.path.clone(), l.address.clone()))
        .collect();
    assert_eq!(
        listen,
        vec![
            (
                "protocols::grpc::endpoint".to_string(),
                "127.0.0.1:4317".to_string()
            ),
            (
                "protocols::http::endpoint".to_string(),
                "0.0.0.0:14318".to_string()
            ),
        ]
    );
}

#[test]
fn config_without_protocols_is_rejected() {
    for yaml in ["~", "protocols:", "protocols: {}"] {
        let errs = parse(yaml)
            .err()
            .unwrap_or_else(|| panic!("{yaml} accepted"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "protocols");
        assert!(errs[0].message.contains("at least one protocol"));
    }
}

#[test]
fn config_bad_endpoints_are_rejected_with_their_path() {
    let errs = parse(
        "protocols:\n  grpc:\n    endpoint: localhost\n  http:\n    endpoint: 127.0.0.1:99999\n",
    )
    .err()
    .unwrap();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["protocols::grpc::endpoint", "protocols::http::endpoint"]
    );
}

#[test]
fn config_unknown_fields_are_rejected_by_name() {
    let errs =
        parse("protocols:\n  grpc:\n    endpoint: 127.0.0.1:4317\n    max_recv_msg_size: 4\n")
            .err()
            .unwrap();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("max_recv_msg_size"), "{errs:?}");
    assert_eq!(
        errs[0].path, "protocols::grpc::max_recv_msg_size",
        "{errs:?}"
    );

    let errs = parse("protocols:\n  thrift:\n").err().unwrap();
    assert!(errs[0].message.contains("thrift"), "{errs:?}");
}

#[test]
fn config_http_paths_and_sizes_are_checked() {
    let errs = parse(
        "protocols:\n  http:\n    traces_url_path: v1/traces\n    logs_url_path: /v1/metrics\n    max_request_body_size: 0\n",
    )
    .err()
    .unwrap();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "protocols::http::traces_url_path",
            "protocols::http::logs_url_path",
            "protocols::http::max_request_body_size",
        ]
    );
    assert!(errs[1].message.contains("metrics_url_path"));

    let errs = parse("protocols:\n  grpc:\n    max_recv_msg_size_mib: 0\n")
        .err()
        .unwrap();
    assert_eq!(errs[0].path, "protocols::grpc::max_recv_msg_size_mib");
}
