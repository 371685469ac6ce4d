//! `sluice-sink`: an OTLP receiver (gRPC and HTTP/protobuf) that counts the
//! items of every request with a tag walk and answers success.
//!
//! On start it prints one JSON line with the addresses it listens on
//! (`{"grpc":"127.0.0.1:PORT","http":"127.0.0.1:PORT","pid":N}`); `GET /stats`
//! on the HTTP address answers the counts so far as JSON; on SIGTERM, SIGINT
//! or after `--max-run` it prints the final counts as one JSON line (and
//! writes them to `--report-file` if given) and exits.

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};
use sluice_bench::codec::{CountCodec, Counted};
use sluice_bench::procfs;
use sluice_bench::wire::{count_items, Signal};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{http, Service};
use tonic::transport::server::TcpIncoming;
use tonic::Status;

/// Counts OTLP items received over gRPC and HTTP.
#[derive(Debug, Parser)]
#[command(name = "sluice-sink", version)]
struct Args {
    /// OTLP/gRPC listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    grpc: SocketAddr,
    /// OTLP/HTTP listen address, also serving `GET /stats`.
    #[arg(long, default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// Also write the final counts to this file.
    #[arg(long)]
    report_file: Option<PathBuf>,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Exit by itself after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    max_run: Duration,
    /// Largest request accepted, in MiB.
    #[arg(long, default_value_t = 64)]
    max_request_mib: usize,
}

#[derive(Default)]
struct SignalStats {
    requests: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Requests that came compressed (HTTP `Content-Encoding` or gRPC
    /// `grpc-encoding` other than identity), to check what a collector under
    /// test really sends.
    compressed: AtomicU64,
}

struct Stats {
    started: Instant,
    signals: [SignalStats; 3],
    /// Nanoseconds after `started` of the first and last counted request
    /// (0: none yet).
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            started: Instant::now(),
            signals: Default::default(),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        }
    }

    fn record(&self, signal: Signal, counted: Counted) {
        let s = &self.signals[signal.index()];
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.items.fetch_add(counted.items, Ordering::Relaxed);
        s.bytes.fetch_add(counted.bytes, Ordering::Relaxed);
        let now = (self.started.elapsed().as_nanos() as u64).max(1);
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(now, Ordering::Relaxed);
    }

    fn compressed(&self, signal: Signal) {
        self.signals[signal.index()]
            .compressed
            .fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, signal: Signal) {
        self.signals[signal.index()]
            .errors
            .fetch_add(1, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        let mut total = 0u64;
        for signal in Signal::ALL {
            let s = &self.signals[signal.index()];
            let items = s.items.load(Ordering::Relaxed);
            total += items;
            out.insert(
                signal.name().to_string(),
                json!({
                    "requests": s.requests.load(Ordering::Relaxed),
                    "items": items,
                    "bytes": s.bytes.load(Ordering::Relaxed),
                    "errors": s.errors.load(Ordering::Relaxed),
                    "compressed_requests": s.compressed.load(Ordering::Relaxed),
                }),
            );
        }
        let secs = |ns: u64| ns as f64 / 1e9;
        out.insert("items_total".into(), json!(total));
        out.insert(
            "uptime_s".into(),
            json!(self.started.elapsed().as_secs_f64()),
        );
        out.insert(
            "first_s".into(),
            json!(secs(self.first_ns.load(Ordering::Relaxed))),
        );
        out.insert(
            "last_s".into(),
            json!(secs(self.last_ns.load(Ordering::Relaxed))),
        );
        out.insert(
            "cpu_s".into(),
            json!(procfs::cpu_seconds(None).unwrap_or(f64::NAN)),
        );
        Value::Object(out)
    }
}

/// The unary handler behind tonic's gRPC machinery: records and answers.
#[derive(Clone)]
struct CountService {
    stats: Arc<Stats>,
    signal: Signal,
}

impl tonic::server::UnaryService<Counted> for CountService {
    type Response = ();
    type Future = std::future::Ready<Result<tonic::Response<()>, Status>>;

    fn call(&mut self, request: tonic::Request<Counted>) -> Self::Future {
        self.stats.record(self.signal, request.into_inner());
        std::future::ready(Ok(tonic::Response::new(())))
    }
}

/// Routes gRPC calls by path to the signal's counting service.
#[derive(Clone)]
struct GrpcRoutes {
    stats: Arc<Stats>,
    max_request: usize,
}

type RouteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl Service<http::Request<Body>> for GrpcRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> RouteFuture {
        let path = req.uri().path();
        let Some(signal) = Signal::ALL.into_iter().find(|s| s.grpc_path() == path) else {
            let status = Status::unimplemented(format!("unknown gRPC method {path}"));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        if req
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity")
        {
            self.stats.compressed(signal);
        }
        let service = CountService {
            stats: self.stats.clone(),
            signal,
        };
        let max_request = self.max_request;
        let stats = self.stats.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(CountCodec { signal })
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_request);
            let response = grpc.unary(service, req).await;
            if response
                .headers()
                .get(Status::GRPC_STATUS)
                .is_some_and(|v| v.as_bytes() != b"0")
            {
                // A request tonic refused before counting (bad frame, too
                // large, undecodable): its status is in the headers.
                stats.error(signal);
            }
            Ok(response)
        })
    }
}

#[derive(Clone)]
struct HttpState {
    stats: Arc<Stats>,
}

fn protobuf_ok() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Bytes::new(),
    )
        .into_response()
}

fn http_error(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

async fn export(state: HttpState, signal: Signal, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        state.stats.error(signal);
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("sluice-sink takes application/x-protobuf only, not {content_type:?}"),
        );
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        state.stats.compressed(signal);
    }
    let raw;
    let data: &[u8] = if gzip {
        match gunzip(&body) {
            Ok(d) => {
                raw = d;
                &raw
            }
            Err(e) => {
                state.stats.error(signal);
                return http_error(StatusCode::BAD_REQUEST, format!("bad gzip body: {e}"));
            }
        }
    } else {
        &body
    };
    match count_items(signal, data) {
        Ok(items) => {
            state.stats.record(
                signal,
                Counted {
                    items,
                    bytes: data.len() as u64,
                },
            );
            protobuf_ok()
        }
        Err(e) => {
            state.stats.error(signal);
            http_error(StatusCode::BAD_REQUEST, format!("bad protobuf: {e}"))
        }
    }
}

async fn stats(State(state): State<HttpState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        state.stats.to_json().to_string(),
    )
        .into_response()
}

fn http_router(state: HttpState, max_request: usize) -> axum::Router {
    let mut router = axum::Router::new().route("/stats", get(stats));
    for signal in Signal::ALL {
        router = router.route(
            signal.http_path(),
            post(
                move |State(state): State<HttpState>, headers: HeaderMap, body: Bytes| {
                    export(state, signal, headers, body)
                },
            ),
        );
    }
    router
        .layer(DefaultBodyLimit::max(max_request))
        .with_state(state)
}

async fn shutdown_signal(max_run: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            tokio::time::sleep(max_run).await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::time::sleep(max_run) => {}
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::new());
    let max_request = args.max_request_mib * 1024 * 1024;
    let grpc_listener = TcpListener::bind(args.grpc)
        .await
        .with_context(|| format!("listening on {} (gRPC)", args.grpc))?;
    let http_listener = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listening on {} (HTTP)", args.http))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    println!(
        "{}",
        json!({"grpc": grpc_addr.to_string(), "http": http_addr.to_string(), "pid": std::process::id()})
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_routes = GrpcRoutes {
        stats: stats.clone(),
        max_request,
    };
    let mut grpc_stop = stop_rx.clone();
    let grpc = tokio::spawn(async move {
        let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(grpc_routes, incoming, async move {
                let _ = grpc_stop.changed().await;
            })
            .await
    });
    let router = http_router(
        HttpState {
            stats: stats.clone(),
        },
        max_request,
    );
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await
    });

    shutdown_signal(args.max_run).await;
    let _ = stop_tx.send(true);
    // Open client connections may keep the servers up: give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = grpc.await;
        let _ = http.await;
    })
    .await;

    let report = stats.to_json().to_string();
    println!("{report}");
    if let Some(path) = &args.report_file {
        std::fs::write(path, format!("{report}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("sink")
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
