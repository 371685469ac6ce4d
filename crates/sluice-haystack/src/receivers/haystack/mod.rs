//! The Haystack push receivers, traces only: `haystack_http` (Haystack's
//! HTTP span collector interface) and `haystack_grpc` (the Haystack agent's
//! `SpanAgent` gRPC service). Both translate Haystack spans to OTLP with
//! [`sluice_pdata::haystack::otlp_from_spans`] (see
//! `docs/design/haystack.md`) and hand each request to the traces pipelines
//! as one [`Batch`](sluice_core::Batch).
//!
//! # `haystack_http` (default `127.0.0.1:8080`)
//!
//! * `POST /span`: one `Span`; `POST /spans`: one `SpanBatch` (Haystack's
//!   `Batch` message, several spans in one request; JSON as `{"spans":
//!   [...]}` or a bare array). The body is protobuf with `Content-Type:
//!   application/octet-stream` (what Haystack clients send) or
//!   `application/x-protobuf`, or JSON with `application/json`.
//! * Answers `202 Accepted` (empty body) once the pipeline accepted the
//!   spans; `GET /isActive` answers `200 ACTIVE`.
//! * Errors are plain text: 400 (undecodable or empty `/span` body), 404,
//!   405, 413 (`max_request_body_size`, default 4 MiB; an announced
//!   `Content-Length` above it is refused before reading), 415 (other
//!   content types, any `Content-Encoding` but identity), and for pipeline
//!   refusals 429 (overloaded) / 503 with `Retry-After`, or 400 when the
//!   refusal is permanent.
//!
//! # `haystack_grpc` (default `127.0.0.1:35000`)
//!
//! * `/SpanAgent/dispatch` (the `.proto` declares no package), request
//!   `Span`, answer `DispatchResult`: `SUCCESS` once the pipeline accepted
//!   the span, `RATE_LIMIT_ERROR` when it refused retryably (overload, a
//!   full queue, an exporter down), `UNKNOWN_ERROR` when it refused for
//!   good; the gRPC status is OK in all three cases, as the Haystack agent
//!   answers. A malformed message is `INVALID_ARGUMENT`, a message over
//!   `max_recv_msg_size_mib` (default 4) `RESOURCE_EXHAUSTED`, another
//!   method `UNIMPLEMENTED`. Gzip-compressed requests are accepted.
//!
//! # Guarantees
//!
//! * Success is answered only after the whole pipeline accepted the spans;
//!   nothing is buffered in the receiver, so backpressure reaches clients.
//! * `otelcol_receiver_{accepted,refused}_spans{transport=http|grpc}` count
//!   spans; requests rejected before the pipeline are counted in
//!   `sluice_receiver_rejected_requests{transport, reason}`.
//! * `shutdown` closes the listener at once, then returns when every
//!   request already received has been answered.
//!
//! # Limits and decisions
//!
//! * Spans are translated, not validated: Haystack's span checks (ids,
//!   service name, times) belong to the Haystack Kafka/Kinesis paths, so a
//!   span missing its ids still arrives, with empty OTLP ids.
//! * An empty `/spans` body is an empty batch (202, nothing reaches the
//!   pipeline); an empty `/span` body is 400, since a client sending one
//!   span never means "no span".
//! * No TLS, authentication or compressed HTTP bodies.

mod config;
mod grpc;
mod http;
mod receiver;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_core::{
    BuildContext, BuildError, Receiver, ReceiverFactory, Registry, Signal, SignalConsumers,
    Stability,
};

pub use config::{GrpcConfig, HttpConfig};
pub use receiver::HaystackReceiver;

use sluice_shared::receiver::SignalHandler;

/// Type name of the HTTP receiver.
pub const HTTP_TYPE: &str = "haystack_http";
/// Type name of the gRPC receiver.
pub const GRPC_TYPE: &str = "haystack_grpc";

fn traces_handler(
    ctx: &BuildContext,
    transport: &'static str,
    consumers: &SignalConsumers,
) -> SignalHandler {
    SignalHandler::new(
        &ctx.id,
        &ctx.telemetry,
        transport,
        Signal::Traces,
        consumers.traces.clone(),
    )
}

impl HaystackReceiver {
    /// A `haystack_http` receiver; nothing is bound until `start`.
    pub fn http(ctx: &BuildContext, config: &HttpConfig, consumers: &SignalConsumers) -> Self {
        let server = http::HttpServer::new(
            &ctx.id,
            &ctx.telemetry,
            traces_handler(ctx, "http", consumers),
            config.max_body_bytes(),
        );
        HaystackReceiver::new(
            ctx.id.clone(),
            config.endpoint.clone(),
            "Haystack/HTTP",
            Arc::new(server),
        )
    }

    /// A `haystack_grpc` receiver; nothing is bound until `start`.
    pub fn grpc(ctx: &BuildContext, config: &GrpcConfig, consumers: &SignalConsumers) -> Self {
        let server = grpc::GrpcServer::new(
            &ctx.id,
            &ctx.telemetry,
            traces_handler(ctx, "grpc", consumers),
            config.max_recv_msg_size_bytes(),
        );
        HaystackReceiver::new(
            ctx.id.clone(),
            config.endpoint.clone(),
            "Haystack/gRPC",
            Arc::new(server),
        )
    }
}

fn needs_traces(ctx: &BuildContext, consumers: &SignalConsumers) -> Result<(), BuildError> {
    if consumers.traces.is_none() {
        return Err(BuildError::new(format!(
            "receiver {}: no traces pipeline lists it",
            ctx.id
        )));
    }
    Ok(())
}

/// Factory of the `haystack_http` receiver.
pub struct HaystackHttpReceiverFactory;

impl ReceiverFactory for HaystackHttpReceiverFactory {
    type Config = HttpConfig;

    fn type_name(&self) -> &'static str {
        HTTP_TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &HttpConfig,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        needs_traces(&ctx, &consumers)?;
        Ok(Arc::new(HaystackReceiver::http(&ctx, config, &consumers)))
    }
}

/// Factory of the `haystack_grpc` receiver.
pub struct HaystackGrpcReceiverFactory;

impl ReceiverFactory for HaystackGrpcReceiverFactory {
    type Config = GrpcConfig;

    fn type_name(&self) -> &'static str {
        GRPC_TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &GrpcConfig,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        needs_traces(&ctx, &consumers)?;
        Ok(Arc::new(HaystackReceiver::grpc(&ctx, config, &consumers)))
    }
}

/// Registers `haystack_http` and `haystack_grpc`.
pub fn register(r: &mut Registry) {
    r.receiver(HaystackHttpReceiverFactory);
    r.receiver(HaystackGrpcReceiverFactory);
}
