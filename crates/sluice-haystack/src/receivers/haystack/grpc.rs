//! `haystack_grpc`: the Haystack agent's `SpanAgent` gRPC service.
//!
//! Haystack's `spanAgent.proto` declares no protobuf package, so the one
//! method's path is `/SpanAgent/dispatch` (request `Span`, answer
//! `DispatchResult`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use prost::Message;
use sluice_core::{Batch, ComponentId, ConsumeError, Payload, Telemetry};
use sluice_pdata::haystack::{self, DispatchResult, ResultCode, Span};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::{Grpc, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::receiver::{Serve, ServeFuture};
use sluice_shared::grpc::too_large_is_resource_exhausted;
use sluice_shared::receiver::SignalHandler;

/// The path of `SpanAgent.dispatch`.
pub(crate) const DISPATCH_PATH: &str = "/SpanAgent/dispatch";

/// Decodes `Span`, encodes `DispatchResult`. A malformed span is answered
/// `INVALID_ARGUMENT` and counted.
#[derive(Clone)]
struct DispatchCodec {
    malformed: Counter,
}

impl Codec for DispatchCodec {
    type Encode = DispatchResult;
    type Decode = Span;
    type Encoder = ResultEncoder;
    type Decoder = DispatchCodec;

    fn encoder(&mut self) -> ResultEncoder {
        ResultEncoder
    }

    fn decoder(&mut self) -> DispatchCodec {
        self.clone()
    }
}

impl Decoder for DispatchCodec {
    type Item = Span;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Span>, Status> {
        match Span::decode(src) {
            Ok(span) => Ok(Some(span)),
            Err(e) => {
                self.malformed.inc();
                Err(Status::invalid_argument(format!(
                    "invalid Haystack Span protobuf: {e}"
                )))
            }
        }
    }
}

struct ResultEncoder;

impl Encoder for ResultEncoder {
    type Item = DispatchResult;
    type Error = Status;

    fn encode(&mut self, item: DispatchResult, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding DispatchResult failed: {e}")))
    }
}

/// The answer for a pipeline outcome: `SUCCESS`, `RATE_LIMIT_ERROR` when
/// retrying may help, `UNKNOWN_ERROR` when it cannot.
fn dispatch_result(outcome: Result<(), ConsumeError>) -> DispatchResult {
    match outcome {
        Ok(()) => DispatchResult {
            code: ResultCode::Success as i32,
            error_message: String::new(),
        },
        Err(ConsumeError::Retryable { reason, .. }) => DispatchResult {
            code: ResultCode::RateLimitError as i32,
            error_message: format!("span refused by the pipeline, retry later: {reason}"),
        },
        Err(ConsumeError::Permanent(reason)) => DispatchResult {
            code: ResultCode::UnknownError as i32,
            error_message: format!("span refused by the pipeline: {reason}"),
        },
    }
}

struct Dispatch(Arc<SignalHandler>);

type DispatchFuture =
    Pin<Box<dyn Future<Output = Result<Response<DispatchResult>, Status>> + Send + 'static>>;

impl UnaryService<Span> for Dispatch {
    type Response = DispatchResult;
    type Future = DispatchFuture;

    fn call(&mut self, request: Request<Span>) -> DispatchFuture {
        let handler = self.0.clone();
        Box::pin(async move {
            let span = request.into_inner();
            let batch = Batch::new(Payload::Traces(haystack::otlp_from_owned_spans(vec![span])));
            Ok(Response::new(dispatch_result(handler.deliver(batch).await)))
        })
    }
}

#[derive(Clone)]
struct Routes {
    handler: Arc<SignalHandler>,
    codec: DispatchCodec,
    max_recv_msg_size: usize,
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
        if path != DISPATCH_PATH {
            let status = Status::unimplemented(format!(
                "unknown gRPC method {path}; this receiver serves {DISPATCH_PATH}"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if !self.handler.is_served() {
            let status =
                Status::unimplemented("this receiver takes no traces: no traces pipeline lists it");
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let routes = self.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(routes.codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(routes.max_recv_msg_size);
            let mut response = grpc.unary(Dispatch(routes.handler), req).await;
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
    pub(crate) fn new(
        id: &ComponentId,
        telemetry: &Telemetry,
        handler: SignalHandler,
        max_recv_msg_size: usize,
    ) -> GrpcServer {
        let malformed = sluice_shared::receiver::rejected_requests(telemetry, id, "grpc", "decode");
        GrpcServer {
            routes: Routes {
                handler: Arc::new(handler),
                codec: DispatchCodec { malformed },
                max_recv_msg_size,
            },
        }
    }
}

impl Serve for GrpcServer {
    fn serve(
        &self,
        id: ComponentId,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> ServeFuture {
        let routes = self.routes.clone();
        Box::pin(async move {
            let local: Option<SocketAddr> = listener.local_addr().ok();
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let result = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(routes, incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = result {
                tracing::error!(receiver = %id, address = ?local, error = %e, "Haystack/gRPC server failed");
            }
        })
    }
}
