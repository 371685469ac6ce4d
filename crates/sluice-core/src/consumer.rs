//! The consumer contract: how a batch moves from one stage to the next.
//!
//! `consume` resolves when the next stage has *accepted* the batch (for an
//! exporter: when it sits in the exporter's queue). Awaiting it is the
//! backpressure: a stage that cannot take more makes its caller wait or
//! refuses with a retryable error. There is no unbounded buffer between stages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use sluice_pdata::Batch;

/// Why a batch was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// The data may be sent again later: a queue is full, memory is short, a
    /// backend is down. Receivers answer gRPC `UNAVAILABLE` / HTTP 503, or
    /// HTTP 429 when `overloaded`.
    #[error("{reason} (retryable)")]
    Retryable {
        reason: String,
        /// Hint for the client's retry, passed on as `Retry-After`/`RetryInfo`.
        retry_after: Option<Duration>,
        /// True when the refusal is about load (memory, full queue) rather than
        /// an unreachable backend.
        overloaded: bool,
    },
    /// Sending the same data again will fail again (malformed, rejected).
    #[error("{0} (permanent)")]
    Permanent(String),
}

impl ConsumeError {
    pub fn overloaded(reason: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            overloaded: true,
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            overloaded: false,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumeError::Retryable { .. })
    }
}

/// Something that accepts batches: a processor, an exporter, a fan-out.
#[async_trait]
pub trait Consumer: Send + Sync {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;
}

/// Shared handle to a consumer.
pub type ConsumerRef = Arc<dyn Consumer>;

/// Hands every batch to each of several consumers and accepts only when all
/// of them accepted. The batch is shared (`Arc`), so a consumer that mutates
/// it copies it first and the others never see the change.
///
/// When some consumers refuse, the error returned is retryable if any refusal
/// was retryable: the client will send again, and consumers that did accept
/// will see the data twice (at-least-once, never silently lost).
pub struct FanOut {
    consumers: Vec<ConsumerRef>,
}

impl FanOut {
    /// A consumer for `consumers`; a single consumer is returned as is.
    pub fn of(mut consumers: Vec<ConsumerRef>) -> ConsumerRef {
        if consumers.len() == 1 {
            return consumers.pop().expect("one consumer");
        }
        Arc::new(FanOut { consumers })
    }
}

#[async_trait]
impl Consumer for FanOut {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let results = join_all(self.consumers.iter().map(|c| c.consume(batch.clone()))).await;
        let mut permanent = None;
        for r in results {
            match r {
                Ok(()) => {}
                Err(e @ ConsumeError::Retryable { .. }) => return Err(e),
                Err(e) => permanent = Some(e),
            }
        }
        permanent.map_or(Ok(()), Err)
    }
}
