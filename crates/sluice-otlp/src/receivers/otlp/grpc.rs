//! OTLP/gRPC: the three collector services behind one tonic server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use sluice_core::{Batch, ComponentId, Signal, Telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::{Grpc, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use sluice_shared::grpc::too_large_is_resource_exhausted;
use sluice_shared::receiver::SignalHandler;
use sluice_shared::status::grpc_status_for;

/// The gRPC codec of the three export methods. Requests are not decoded:
/// the message bytes are validated against the OTLP schema and counted
/// ([`Batch::from_encoded`]) and travel on as they are, so a request that
/// only passes through is never decoded nor re-encoded. A malformed message
/// is answered `INVALID_ARGUMENT` and counted. Every export response is an
/// empty message (no `partial_success`), whose encoding is zero bytes.
#[derive(Clone)]
struct ExportCodec {
    signal: Signal,
    malformed: Counter,
}

impl Codec for ExportCodec {
    type Encode = ();
    type Decode = Batch;
    type Encoder = EmptyResponse;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> EmptyResponse {
        EmptyResponse
    }

    fn decoder(&mut self) -> ExportCodec {
        self.clone()
    }
}

impl Decoder for ExportCodec {
    type Item = Batch;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Batch>, Status> {
        use prost::bytes::Buf;
        let bytes = src.copy_to_bytes(src.remaining());
        match Batch::from_encoded(self.signal, bytes) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                self.malformed.inc();
                Err(Status::invalid_argument(e.to_string()))
            }
        }
    }
}

struct EmptyResponse;

impl Encoder for EmptyResponse {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, _item: (), _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

/// One export method: hands the batch to its signal's pipeline.
struct Export(Arc<SignalHandler>);

type ExportFuture = Pin<Box<dyn Future<Output = Result<Response<()>, Status>> + Send + 'static>>;

impl UnaryService<Batch> for Export {
    type Response = ();
    type Future = ExportFuture;

    fn call(&mut self, request: Request<Batch>) -> ExportFuture {
        let handler = self.0.clone();
        Box::pin(async move {
            handler
                .deliver(request.into_inner())
                .await
                .map_err(|e| grpc_status_for(&e))?;
            Ok(Response::new(()))
        })
    }
}

const TRACE_PREFIX: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/";
const METRICS_PREFIX: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/";
const LOGS_PREFIX: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/";

/// One signal's service: its handler and codec.
#[derive(Clone)]
struct Method {
    handler: Arc<SignalHandler>,
    codec: ExportCodec,
    max_recv_msg_size: usize,
}

/// Routes a request to the service its path names. Every service is always
/// mounted; one whose signal has no pipeline answers `UNIMPLEMENTED` itself.
#[derive(Clone)]
struct Routes {
    /// Traces, metrics and logs, in that order.
    methods: Arc<[Method; 3]>,
}

type RouteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> RouteFuture {
        let path = req.uri().path();
        let (prefix, index) = if path.starts_with(TRACE_PREFIX) {
            (TRACE_PREFIX, 0)
        } else if path.starts_with(METRICS_PREFIX) {
            (METRICS_PREFIX, 1)
        } else if path.starts_with(LOGS_PREFIX) {
            (LOGS_PREFIX, 2)
        } else {
            let status = Status::unimplemented(format!("unknown gRPC method {path}"));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        if &path[prefix.len()..] != "Export" {
            let status = Status::unimplemented(format!("unknown gRPC method {path}"));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = self.methods[index].clone();
        if !method.handler.is_served() {
            let signal = method.handler.signal();
            let status = Status::unimplemented(format!(
                "this receiver takes no {signal}: no {signal} pipeline lists it"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(async move {
            let mut grpc = Grpc::new(method.codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(method.max_recv_msg_size);
            let mut response = grpc.unary(Export(method.handler), req).await;
            too_large_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// What the gRPC server needs, fixed at build time.
pub(crate) struct GrpcServer {
    routes: Routes,
}

impl GrpcServer {
    /// `handlers` are the traces, metrics and logs handlers, in that order.
    pub(crate) fn new(
        id: &ComponentId,
        telemetry: &Telemetry,
        handlers: [Arc<SignalHandler>; 3],
        max_recv_msg_size: usize,
    ) -> GrpcServer {
        let malformed = sluice_shared::receiver::rejected_requests(telemetry, id, "grpc", "decode");
        let methods = handlers.map(|handler| Method {
            codec: ExportCodec {
                signal: handler.signal(),
                malformed: malformed.clone(),
            },
            handler,
            max_recv_msg_size,
        });
        GrpcServer {
            routes: Routes {
                methods: Arc::new(methods),
            },
        }
    }

    /// Serves on `listener` until `stop` fires, then stops accepting and
    /// returns once every open connection has answered its requests.
    pub(crate) async fn serve(
        &self,
        id: ComponentId,
        listener: TcpListener,
        stop: CancellationToken,
    ) {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(self.routes.clone(), incoming, stop.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(receiver = %id, address = ?local, error = %e, "OTLP/gRPC server failed");
        }
    }
}
