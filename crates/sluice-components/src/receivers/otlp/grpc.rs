//! OTLP/gRPC: the three collector services behind one tonic server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use sluice_core::{ComponentId, Payload};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::handler::SignalHandler;
use super::status::grpc_status_for;

/// Shared by the three service implementations.
struct Export(Arc<SignalHandler>);

impl Export {
    async fn run(&self, payload: Payload) -> Result<(), Status> {
        if !self.0.is_served() {
            return Err(Status::unimplemented(format!(
                "this receiver takes no {}: no {} pipeline lists it",
                self.0.signal(),
                self.0.signal()
            )));
        }
        self.0
            .deliver(payload)
            .await
            .map_err(|e| grpc_status_for(&e))
    }
}

#[tonic::async_trait]
impl TraceService for Export {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.run(Payload::Traces(request.into_inner())).await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Export {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.run(Payload::Metrics(request.into_inner())).await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Export {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.run(Payload::Logs(request.into_inner())).await?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

const TRACE_PREFIX: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/";
const METRICS_PREFIX: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/";
const LOGS_PREFIX: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/";

/// Routes a request to the service its path names. Every service is always
/// mounted; one whose signal has no pipeline answers `UNIMPLEMENTED` itself.
#[derive(Clone)]
struct Routes {
    traces: TraceServiceServer<Export>,
    metrics: MetricsServiceServer<Export>,
    logs: LogsServiceServer<Export>,
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
        let inner = if path.starts_with(TRACE_PREFIX) {
            self.traces.call(req)
        } else if path.starts_with(METRICS_PREFIX) {
            self.metrics.call(req)
        } else if path.starts_with(LOGS_PREFIX) {
            self.logs.call(req)
        } else {
            let status = Status::unimplemented(format!("unknown gRPC method {path}"));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        Box::pin(async move {
            let mut response = inner.await?;
            too_large_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// tonic answers a message over `max_decoding_message_size` with
/// `OUT_OF_RANGE`, which OTLP clients treat as retryable: they would resend
/// the same oversized message forever. gRPC-Go (and so the OpenTelemetry
/// Collector) answers `RESOURCE_EXHAUSTED`, which without a `RetryInfo` is
/// not retried. The services here never produce `OUT_OF_RANGE` themselves, so
/// every such answer is tonic's size check and is rewritten. The check fails
/// before the service runs, so the status sits in the response headers.
fn too_large_is_resource_exhausted(response: &mut http::Response<Body>) {
    let headers = response.headers_mut();
    let out_of_range = i32::from(tonic::Code::OutOfRange).to_string();
    if headers
        .get(Status::GRPC_STATUS)
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        headers.insert(
            Status::GRPC_STATUS,
            http::HeaderValue::from(i32::from(tonic::Code::ResourceExhausted)),
        );
    }
}

/// What the gRPC server needs, fixed at build time.
pub(crate) struct GrpcServer {
    routes: Routes,
}

impl GrpcServer {
    /// `handlers` are the traces, metrics and logs handlers, in that order.
    pub(crate) fn new(handlers: [Arc<SignalHandler>; 3], max_recv_msg_size: usize) -> GrpcServer {
        let [traces, metrics, logs] = handlers;
        let routes = Routes {
            traces: TraceServiceServer::new(Export(traces))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_recv_msg_size),
            metrics: MetricsServiceServer::new(Export(metrics))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_recv_msg_size),
            logs: LogsServiceServer::new(Export(logs))
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_recv_msg_size),
        };
        GrpcServer { routes }
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
