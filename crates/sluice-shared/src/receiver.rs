//! What every push receiver does with a request once it has decoded it:
//! hand it to the pipeline of its signal and count the outcome; and the one
//! counter of requests refused before their items reached the pipeline.

use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{Batch, ComponentId, ConsumeError, ConsumerRef, Signal, Telemetry};

/// One signal on one transport.
pub struct SignalHandler {
    id: ComponentId,
    transport: &'static str,
    signal: Signal,
    /// `None` when no pipeline of this signal lists the receiver.
    route: Option<(ConsumerRef, ReceiverMetrics)>,
}

impl SignalHandler {
    pub fn new(
        id: &ComponentId,
        telemetry: &Telemetry,
        transport: &'static str,
        signal: Signal,
        consumer: Option<ConsumerRef>,
    ) -> SignalHandler {
        // Counters exist only for served signals, so the metrics endpoint
        // does not show series that can never move.
        let route = consumer.map(|c| (c, telemetry.receiver(id, transport, signal)));
        SignalHandler {
            id: id.clone(),
            transport,
            signal,
            route,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// True when a pipeline takes this signal.
    pub fn is_served(&self) -> bool {
        self.route.is_some()
    }

    /// Hands `batch` downstream and waits until the pipeline accepted or
    /// refused it. A request without items is accepted without bothering the
    /// pipeline. Must only be called when [`Self::is_served`].
    pub async fn deliver(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Some((consumer, counters)) = &self.route else {
            // Callers check `is_served` first; answer as the pipeline would
            // for data it can never take rather than panicking.
            return Err(ConsumeError::Permanent(format!(
                "receiver {} takes no {}",
                self.id, self.signal
            )));
        };
        let items = batch.items();
        if items == 0 {
            return Ok(());
        }
        let count = u64::try_from(items).unwrap_or(u64::MAX);
        match consumer.consume(batch).await {
            Ok(()) => {
                counters.accepted.inc_by(count);
                Ok(())
            }
            Err(e) => {
                counters.refused.inc_by(count);
                tracing::debug!(
                    receiver = %self.id,
                    transport = self.transport,
                    signal = %self.signal,
                    items,
                    error = %e,
                    "export refused by the pipeline"
                );
                Err(e)
            }
        }
    }
}

/// `sluice_receiver_rejected_requests_total{receiver,transport,reason}`:
/// requests a push receiver answered with an error before their items
/// reached the pipeline. One definition for every receiver, so the name and
/// help text cannot drift apart.
pub fn rejected_requests(
    telemetry: &Telemetry,
    receiver: &ComponentId,
    transport: &str,
    reason: &str,
) -> Counter {
    telemetry.counter(
        "sluice_receiver_rejected_requests",
        "Requests answered with an error before their items reached the pipeline",
        &[
            ("receiver", &receiver.to_string()),
            ("transport", transport),
            ("reason", reason),
        ],
    )
}
