//! Tests of the `otlphttp` exporter against a real HTTP server on
//! 127.0.0.1, started inside each test.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{HeaderName as AxumHeaderName, HeaderValue as AxumHeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::factory::parse_config;
use sluice_core::{ExporterFactory, Signal};
use sluice_pdata::{Batch, Payload};
use tokio_util::sync::CancellationToken;

use super::*;
use sluice_shared::status::RpcStatus;
use sluice_shared::test_support::{self, build_context, yaml};

/// One request the server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body after undoing `Content-Encoding`.
    fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(self.body.as_slice())
                    .read_to_end(&mut out)
                    .expect("the body is valid gzip");
                out
            }
            None => self.body.clone(),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }

    /// The body decoded as an OTLP request of `signal`, by content type.
    fn payload(&self, signal: Signal) -> Payload {
        let body = self.decoded();
        match self.header("content-type") {
            Some("application/x-protobuf") => Payload::decode_proto(signal, &body).unwrap(),
            Some("application/json") => sluice_pdata::from_json(signal, &body).unwrap(),
            other => panic!("unexpected content-type {other:?}"),
        }
    }
}

/// What the server answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

#[derive(Clone)]
struct AppState {
    received: Arc<Mutex<Vec<Received>>>,
    reply: Arc<Mutex<Reply>>,
}

async fn handle(
    AxumState(state): AxumState<AppState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    state.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers,
        body,
    });
    let reply = state.reply.lock().unwrap().clone();
    let mut response = axum::response::Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in reply.headers {
        response.headers_mut().insert(
            AxumHeaderName::from_static(k),
            AxumHeaderValue::from_str(&v).unwrap(),
        );
    }
    response
}

/// An HTTP server on 127.0.0.1 that records every request and answers as
/// told (200 with an empty body by default).
struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: CancellationToken,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState {
            received: Arc::default(),
            reply: Arc::new(Mutex::new(Reply::status(200))),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Server { addr, state, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn reply(&self, r: Reply) {
        *self.state.reply.lock().unwrap() = r;
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..1000 {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the server received {} requests, expected {n}",
            self.received().len()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config(body: &str) -> OtlpHttpExporterConfig {
    let parsed: OtlpHttpExporterConfig = serde_yaml_ng::from_value(yaml(body)).unwrap();
    let errors = parsed.validate();
    assert!(errors.is_empty(), "unexpected config errors: {errors:?}");
    parsed
}

fn sender(body: &str) -> HttpSender {
    HttpSender::new("otlphttp", &config(body)).unwrap()
}

fn batch(signal: Signal) -> Batch {
    match signal {
        Signal::Traces => test_support::traces(),
        Signal::Metrics => test_support::metrics(),
        Signal::Logs => test_support::logs(),
    }
}

#[tokio::test]
async fn default_is_gzipped_protobuf_to_the_signal_paths() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: {}\nheaders:\n  X-Tenant: acme\n",
        server.url()
    ));
    for signal in Signal::ALL {
        s.send(&batch(signal)).await.unwrap();
    }
    let got = server.received();
    assert_eq!(got.len(), 3);
    for (signal, r) in Signal::ALL.into_iter().zip(&got) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/v1/{signal}"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("x-tenant"), Some("acme"));
        assert!(
            r.header("user-agent").unwrap_or("").starts_with("sluice/"),
            "{:?}",
            r.header("user-agent")
        );
        assert_eq!(&r.payload(signal), batch(signal).payload());
    }
    // The ids survive the trip.
    let Payload::Traces(t) = got[0].payload(Signal::Traces) else {
        panic!("not traces")
    };
    let span = &t.resource_spans[1].scope_spans[0].spans[0];
    assert_eq!(span.trace_id, vec![0x02; 16]);
    assert_eq!(span.span_id, vec![0x0c; 8]);
}

#[tokio::test]
async fn json_encoding_without_compression() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: {}/\nencoding: json\ncompression: none\n",
        server.url()
    ));
    s.send(&test_support::logs()).await.unwrap();
    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        r.path, "/v1/logs",
        "a trailing slash on the base is not doubled"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), None);
    // Plain JSON on the wire, as OTLP/JSON spells it.
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(text.contains("\"resourceLogs\""), "{text}");
    assert!(text.contains("disk full"), "{text}");
    assert_eq!(r.payload(Signal::Logs), *test_support::logs().payload());
}

#[tokio::test]
async fn per_signal_urls_override_the_base() {
    let server = Server::start().await;
    let s = sender(&format!(
        "endpoint: {0}/base\ntraces_endpoint: {0}/custom/traces\n",
        server.url()
    ));
    s.send(&test_support::traces()).await.unwrap();
    s.send(&test_support::metrics()).await.unwrap();
    let paths: Vec<String> = server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/custom/traces", "/base/v1/metrics"]);
}

#[tokio::test]
async fn a_signal_without_url_fails_permanently() {
    let server = Server::start().await;
    let s = sender(&format!("logs_endpoint: {}/logs\n", server.url()));
    s.send(&test_support::logs()).await.unwrap();
    match s.send(&test_support::traces()).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("traces_endpoint"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn retryable_statuses_carry_retry_after() {
    let server = Server::start().await;
    let s = sender(&format!("endpoint: {}\n", server.url()));
    let b = test_support::traces();

    server.reply(Reply {
        status: 503,
        headers: vec![("retry-after", "7".into())],
        body: Vec::new(),
    });
    match s.send(&b).await {
        Err(SendError::Retryable {
            message,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("503"), "{message}");
        }
        other => panic!("503 gave {other:?}"),
    }

    for status in [429, 502, 504] {
        server.reply(Reply::status(status));
        assert_eq!(
            s.send(&b).await,
            Err(SendError::Retryable {
                message: format!(
                    "backend answered HTTP {}",
                    StatusCode::from_u16(status).unwrap()
                ),
                retry_after: None,
            }),
            "status {status}"
        );
    }

    // An HTTP date is not understood: no hint, still retryable.
    server.reply(Reply {
        status: 429,
        headers: vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".into())],
        body: Vec::new(),
    });
    assert!(matches!(
        s.send(&b).await,
        Err(SendError::Retryable {
            retry_after: None,
            ..
        })
    ));
}

#[tokio::test]
async fn other_statuses_are_permanent_with_the_backend_message() {
    let server = Server::start().await;
    let s = sender(&format!("endpoint: {}\n", server.url()));
    let b = test_support::metrics();

    let status = RpcStatus {
        code: 3,
        message: "bad data: metric name empty".into(),
        details: Vec::new(),
    };
    server.reply(Reply {
        status: 400,
        headers: vec![("content-type", "application/x-protobuf".into())],
        body: status.encode_to_vec(),
    });
    match s.send(&b).await {
        Err(SendError::Permanent(m)) => {
            assert!(m.contains("400"), "{m}");
            assert!(m.contains("bad data: metric name empty"), "{m}");
        }
        other => panic!("400 gave {other:?}"),
    }

    server.reply(Reply {
        status: 401,
        headers: vec![("content-type", "application/json".into())],
        body: br#"{"code":16,"message":"token expired"}"#.to_vec(),
    });
    match s.send(&b).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("token expired"), "{m}"),
        other => panic!("401 gave {other:?}"),
    }

    for status in [404, 413, 500, 301] {
        server.reply(Reply::status(status));
        assert!(
            matches!(s.send(&b).await, Err(SendError::Permanent(_))),
            "status {status}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_backend_is_retryable() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let s = sender(&format!("endpoint: http://127.0.0.1:{port}\n"));
    match s.send(&test_support::traces()).await {
        Err(SendError::Retryable { message, .. }) => {
            assert!(message.contains("request failed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn partial_success_reports_the_rejected_items() {
    let server = Server::start().await;
    let s = sender(&format!("endpoint: {}\n", server.url()));

    // Protobuf answer.
    let answer = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "spans too old".into(),
        }),
    };
    server.reply(Reply {
        status: 200,
        headers: vec![("content-type", "application/x-protobuf".into())],
        body: answer.encode_to_vec(),
    });
    assert_eq!(
        s.send(&test_support::traces()).await,
        Err(SendError::PartialSuccess {
            rejected: 2,
            message: "spans too old".into()
        })
    );

    // JSON answer, gzipped, with the int64 written as a string.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(br#"{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"too big"}}"#)
        .unwrap();
    server.reply(Reply {
        status: 200,
        headers: vec![
            ("content-type", "application/json".into()),
            ("content-encoding", "gzip".into()),
        ],
        body: enc.finish().unwrap(),
    });
    assert_eq!(
        s.send(&test_support::logs()).await,
        Err(SendError::PartialSuccess {
            rejected: 1,
            message: "too big".into()
        })
    );
}

#[tokio::test]
async fn a_garbage_success_body_is_still_success() {
    let server = Server::start().await;
    server.reply(Reply {
        status: 200,
        headers: vec![("content-type", "application/x-protobuf".into())],
        body: vec![0xff; 32],
    });
    let s = sender(&format!("endpoint: {}\n", server.url()));
    s.send(&test_support::traces()).await.unwrap();
}

#[tokio::test]
async fn the_factory_built_exporter_queues_sends_and_counts() {
    let server = Server::start().await;
    let (ctx, telemetry) = build_context("otlphttp/backend");
    let exporter = OtlpHttpExporterFactory
        .create(ctx, &config(&format!("endpoint: {}\n", server.url())))
        .unwrap();
    exporter.start().await.unwrap();
    exporter.consume(test_support::metrics()).await.unwrap();
    let got = server.wait_for(1).await;
    exporter.shutdown().await.unwrap();
    assert_eq!(got[0].path, "/v1/metrics");
    let text = telemetry.encode();
    assert!(
        text.contains("otelcol_exporter_sent_metric_points_total{exporter=\"otlphttp/backend\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn with_the_queue_disabled_errors_reach_the_pipeline() {
    let server = Server::start().await;
    server.reply(Reply::status(400));
    let (ctx, _) = build_context("otlphttp");
    let exporter = OtlpHttpExporterFactory
        .create(
            ctx,
            &config(&format!(
                "endpoint: {}\nsending_queue:\n  enabled: false\n",
                server.url()
            )),
        )
        .unwrap();
    exporter.start().await.unwrap();
    let err = exporter.consume(test_support::traces()).await.unwrap_err();
    assert!(
        matches!(err, sluice_core::ConsumeError::Permanent(_)),
        "{err:?}"
    );
    exporter.shutdown().await.unwrap();
}

// ---- pure helpers ----

#[test]
fn retry_after_parsing() {
    let mut h = reqwest::header::HeaderMap::new();
    assert_eq!(client::parse_retry_after(&h), None);
    h.insert("retry-after", " 12 ".parse().unwrap());
    assert_eq!(client::parse_retry_after(&h), Some(Duration::from_secs(12)));
    h.insert("retry-after", "-3".parse().unwrap());
    assert_eq!(client::parse_retry_after(&h), None);
}

// ---- configuration ----

fn errors(body: &str) -> Vec<FieldError> {
    match parse_config::<OtlpHttpExporterConfig>(&yaml(body)) {
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
    let c = config("endpoint: http://localhost:4318");
    assert_eq!(c.compression, Compression::Gzip);
    assert_eq!(c.encoding, Encoding::Proto);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert!(c.sending_queue.enabled);
    assert_eq!(
        c.signal_url(Signal::Traces).unwrap().unwrap().as_str(),
        "http://localhost:4318/v1/traces"
    );
    assert_eq!(
        c.signal_url(Signal::Logs).unwrap().unwrap().as_str(),
        "http://localhost:4318/v1/logs"
    );
}

#[test]
fn an_endpoint_is_required() {
    let e = errors("");
    assert!(has_error(&e, "endpoint", "required"), "{e:?}");
    assert!(errors("metrics_endpoint: http://m:4318/v1/metrics").is_empty());
}

#[test]
fn https_and_malformed_urls_are_errors() {
    let e = errors("endpoint: https://collector:4318");
    assert!(
        has_error(&e, "endpoint", "TLS is not supported yet"),
        "{e:?}"
    );
    let e = errors("endpoint: https://collector:4318\ntls:\n  insecure: true");
    assert!(
        has_error(&e, "endpoint", "TLS is not supported yet"),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4318\ntraces_endpoint: https://t/v1/traces");
    assert!(
        has_error(&e, "traces_endpoint", "TLS is not supported yet"),
        "{e:?}"
    );
    let e = errors("endpoint: collector:4318");
    assert!(has_error(&e, "endpoint", "http://"), "{e:?}");
    let e = errors("endpoint: \"http://\"");
    assert!(e.iter().any(|e| e.path == "endpoint"), "{e:?}");
    let e = errors("endpoint: http://c:4318/?tenant=a");
    assert!(has_error(&e, "endpoint", "no query"), "{e:?}");
    // A full per-signal URL may carry a query.
    assert!(errors("traces_endpoint: http://c:4318/v1/traces?tenant=a").is_empty());
    let e = errors("logs_endpoint: http://u:p@c:4318/v1/logs");
    assert!(has_error(&e, "logs_endpoint", "credentials"), "{e:?}");
}

#[test]
fn bad_headers_and_values_are_errors() {
    let e = errors("endpoint: http://c:4318\nheaders:\n  \"a b\": x");
    assert!(has_error(&e, "headers::a b", "not a valid"), "{e:?}");
    let e = errors("endpoint: http://c:4318\nheaders:\n  x-a: \"1\\n2\"");
    assert!(has_error(&e, "headers::x-a", "printable"), "{e:?}");
    let e = errors("endpoint: http://c:4318\nheaders:\n  Content-Type: text/plain");
    assert!(
        has_error(&e, "headers::Content-Type", "set by the exporter"),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4318\nencoding: xml");
    assert!(
        e.iter()
            .any(|e| e.path == "encoding" && e.message.contains("xml")),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4318\nproxy_url: http://p");
    assert!(
        e.iter()
            .any(|e| e.message.contains("unknown field `proxy_url`")),
        "{e:?}"
    );
    let e = errors("endpoint: http://c:4318\ntimeout: 0s");
    assert!(has_error(&e, "timeout", "greater than 0"), "{e:?}");
    let e = errors("endpoint: http://c:4318\nsending_queue:\n  num_consumers: 0");
    assert!(
        has_error(&e, "sending_queue::num_consumers", "at least 1"),
        "{e:?}"
    );
}

#[test]
fn factory_metadata() {
    let f = OtlpHttpExporterFactory;
    assert_eq!(f.type_name(), "otlphttp");
    assert_eq!(f.signals(), &Signal::ALL);
    assert_eq!(f.stability(), sluice_core::Stability::Beta);
}
