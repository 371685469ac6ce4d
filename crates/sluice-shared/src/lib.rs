//! What several component families share and the core has no business
//! holding: the plumbing of push receivers (handing a decoded request to the
//! pipeline and counting it, the rejected-requests counter), the mapping of
//! a refusal to a gRPC or HTTP answer and of a backend's answer back to a
//! retry hint (`google.rpc.Status`), the gRPC server's size-limit answer,
//! and (feature `test-support`) the helpers the component crates' tests use.
//!
//! Component crates depend on this crate, on `sluice-core` and on
//! `sluice-pdata`, never on each other (docs/design/engine.md).

pub mod grpc;
pub mod receiver;
pub mod status;
#[cfg(feature = "test-support")]
pub mod test_support;
