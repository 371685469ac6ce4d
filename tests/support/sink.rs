//! An in-process OTLP/gRPC trace backend for the reliability tests: a tonic
//! server on 127.0.0.1 that records every span it accepts (by trace id and
//! span id, a [`SpanId`]) and every export call it sees, and answers as the test tells it to: accept, `UNAVAILABLE`
//! (optionally with a gRPC `RetryInfo`) until an instant or until told
//! otherwise, `INVALID_ARGUMENT`, or accept with a `partial_success` that
//! rejects some spans. It can be stopped (the port is then closed: nothing
//! listens, open connections are dropped) and started again on the same port.
//!
//! Each period the sink is up runs on its own small tokio runtime; stopping
//! shuts that runtime down, which drops the listener and every connection
//! task at once, like a backend process going away.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use super::{free_addr, hex, wait_until, SpanSpec};

/// A span's (trace id, span id): what the sink records, 24 bytes a span so
/// that long soak runs stay small.
pub type SpanId = ([u8; 16], [u8; 8]);

/// The [`SpanId`] of a span the test built.
pub fn span_id(s: &SpanSpec) -> SpanId {
    (s.trace_id, s.span_id)
}

/// The [`SpanId`]s of `spans`.
pub fn span_ids(spans: &[SpanSpec]) -> Vec<SpanId> {
    spans.iter().map(span_id).collect()
}

/// `trace_id:span_id` in hex, for messages.
pub fn show(id: &SpanId) -> String {
    format!("{}:{}", hex(&id.0), hex(&id.1))
}

/// How the sink answers an export call.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Accept and record every span.
    Accept,
    /// Answer `UNAVAILABLE` (retryable), with a `RetryInfo` of `retry_delay`
    /// if set. With `until`, the sink accepts again once that instant has
    /// passed; without, until the mode is changed.
    Unavailable {
        until: Option<Instant>,
        retry_delay: Option<Duration>,
    },
    /// Answer `INVALID_ARGUMENT` (permanent).
    InvalidArgument,
    /// Accept and record the spans, but answer with a `partial_success`
    /// saying this many spans were rejected.
    PartialReject(i64),
}

/// One export call the sink received, whatever it answered.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    /// The spans of the request, in order.
    pub spans: Vec<SpanId>,
    /// True if the call was answered with success (full or partial).
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    attempts: Vec<Attempt>,
    /// Times each span was accepted.
    received: HashMap<SpanId, u32>,
}

#[derive(Clone)]
struct Handler {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

// google.rpc.Status, google.protobuf.Any, google.rpc.RetryInfo and
// google.protobuf.Duration: the messages a gRPC server puts into
// `grpc-status-details-bin` to tell the client when to retry.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

fn unavailable(retry_delay: Option<Duration>) -> Status {
    let message = "sink: unavailable (test)";
    let Some(delay) = retry_delay else {
        return Status::new(Code::Unavailable, message);
    };
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let details = RpcStatus {
        code: Code::Unavailable as i32,
        message: message.to_string(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.to_string(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(Code::Unavailable, message, details.encode_to_vec().into())
}

/// The ids of every span in `req` (ids of the wrong length are padded or
/// cut: the tests only send well-formed ones).
pub fn request_ids(req: &ExportTraceServiceRequest) -> Vec<SpanId> {
    fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        let n = b.len().min(N);
        out[..n].copy_from_slice(&b[..n]);
        out
    }
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| (fixed(&s.trace_id), fixed(&s.span_id)))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let keys = request_ids(request.get_ref());
        let now = Instant::now();
        let mut st = lock(&self.state);
        let mode = st.mode.clone().unwrap_or(Mode::Accept);
        let (accepted, answer) = match mode {
            Mode::Accept => (true, Ok(None)),
            Mode::Unavailable { until, .. } if until.is_some_and(|t| now >= t) => (true, Ok(None)),
            Mode::Unavailable { retry_delay, .. } => (false, Err(unavailable(retry_delay))),
            Mode::InvalidArgument => (
                false,
                Err(Status::new(
                    Code::InvalidArgument,
                    "sink: invalid argument (test)",
                )),
            ),
            Mode::PartialReject(n) => (true, Ok(Some(n))),
        };
        if accepted {
            for k in &keys {
                *st.received.entry(*k).or_default() += 1;
            }
        }
        st.attempts.push(Attempt {
            at: now,
            spans: keys,
            accepted,
        });
        drop(st);
        answer.map(|rejected| {
            Response::new(ExportTraceServiceResponse {
                partial_success: rejected.map(|n| ExportTracePartialSuccess {
                    rejected_spans: n,
                    error_message: "sink: spans rejected (test)".to_string(),
                }),
            })
        })
    }
}

/// A running server period: its runtime owns the listener and connections.
struct Running {
    runtime: tokio::runtime::Runtime,
}

/// The OTLP/gRPC trace sink. Dropping it stops the server.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Mutex<Option<Running>>,
}

impl Sink {
    /// A sink on a free 127.0.0.1 port, listening and accepting.
    pub fn start() -> Sink {
        let sink = Sink::down();
        sink.up();
        sink
    }

    /// A sink with a reserved 127.0.0.1 port that nothing listens on yet:
    /// a backend that is down. [`Sink::up`] starts it on that port.
    pub fn down() -> Sink {
        Sink {
            addr: free_addr(),
            state: Arc::default(),
            running: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, for an exporter's `endpoint`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn is_up(&self) -> bool {
        self.running.lock().unwrap().is_some()
    }

    /// Starts listening on the sink's port (no-op if it already is).
    /// Panics if the port cannot be bound within 10 s.
    pub fn up(&self) {
        let mut running = self.running.lock().unwrap();
        if running.is_some() {
            return;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sink")
            .enable_all()
            .build()
            .expect("build the sink's tokio runtime");
        let addr = self.addr;
        let listener = runtime.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let attempt = (|| {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.set_reuseaddr(true)?;
                    socket.bind(addr)?;
                    socket.listen(1024)
                })();
                match attempt {
                    Ok(l) => return l,
                    Err(e) if Instant::now() >= deadline => {
                        panic!("sink: cannot listen on {addr}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let handler = Handler {
            state: self.state.clone(),
        };
        let service = TraceServiceServer::new(handler)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 * 1024 * 1024);
        runtime.spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, std::future::pending::<()>())
                .await;
        });
        *running = Some(Running { runtime });
    }

    /// Stops listening and drops every open connection (no-op if down).
    pub fn stop(&self) {
        let taken = self.running.lock().unwrap().take();
        if let Some(r) = taken {
            r.runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }

    /// Sets how the sink answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = Some(mode);
    }

    pub fn accept(&self) {
        self.set_mode(Mode::Accept);
    }

    /// Answers `UNAVAILABLE` until `until` has passed, then accepts.
    pub fn unavailable_until(&self, until: Instant, retry_delay: Option<Duration>) {
        self.set_mode(Mode::Unavailable {
            until: Some(until),
            retry_delay,
        });
    }

    /// Answers `UNAVAILABLE` until the mode is changed.
    pub fn unavailable(&self, retry_delay: Option<Duration>) {
        self.set_mode(Mode::Unavailable {
            until: None,
            retry_delay,
        });
    }

    // ----------------------------------------------------------- records

    /// Every export call received so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.state).attempts.clone()
    }

    pub fn attempt_count(&self) -> usize {
        lock(&self.state).attempts.len()
    }

    /// Span -> how many times it was accepted.
    pub fn received(&self) -> HashMap<SpanId, u32> {
        lock(&self.state).received.clone()
    }

    /// Distinct spans accepted.
    pub fn unique(&self) -> usize {
        lock(&self.state).received.len()
    }

    /// Accepted span receipts beyond the first of each span.
    pub fn duplicates(&self) -> u64 {
        lock(&self.state)
            .received
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// How many of `keys` have not been accepted yet.
    pub fn missing_of<'a>(&self, keys: impl IntoIterator<Item = &'a SpanId>) -> usize {
        let st = lock(&self.state);
        keys.into_iter()
            .filter(|k| !st.received.contains_key(*k))
            .count()
    }

    /// Accepted spans that are not in `known`.
    pub fn unknown(&self, known: &HashSet<SpanId>) -> Vec<SpanId> {
        lock(&self.state)
            .received
            .keys()
            .filter(|k| !known.contains(*k))
            .cloned()
            .collect()
    }

    /// Waits until every key in `keys` has been accepted; false on timeout.
    pub fn wait_for_spans(&self, keys: &HashSet<SpanId>, timeout: Duration) -> bool {
        wait_until(timeout, || self.missing_of(keys) == 0)
    }

    /// Waits until at least `n` export calls have been received.
    pub fn wait_for_attempts(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.attempt_count() >= n)
    }

    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        let st = lock(&self.state);
        format!(
            "sink {}: up={} mode={:?} attempts={} (accepted {}) unique_spans={}",
            self.addr,
            self.running.lock().map(|r| r.is_some()).unwrap_or(false),
            st.mode,
            st.attempts.len(),
            st.attempts.iter().filter(|a| a.accepted).count(),
            st.received.len()
        )
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let taken = self.running.get_mut().ok().and_then(|r| r.take());
        if let Some(r) = taken {
            r.runtime.shutdown_background();
        }
    }
}
