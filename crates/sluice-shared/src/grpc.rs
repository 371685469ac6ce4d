//! gRPC server details every gRPC receiver shares.

use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

/// tonic answers a message over `max_decoding_message_size` with
/// `OUT_OF_RANGE`, which OTLP clients treat as retryable: they would resend
/// the same oversized message forever. gRPC-Go (and so the OpenTelemetry
/// Collector) answers `RESOURCE_EXHAUSTED`, which without a `RetryInfo` is
/// not retried. The services here never produce `OUT_OF_RANGE` themselves, so
/// every such answer is tonic's size check and is rewritten. The check fails
/// before the service runs, so the status sits in the response headers.
pub fn too_large_is_resource_exhausted(response: &mut http::Response<Body>) {
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
