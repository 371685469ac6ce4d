//! The part both transports share: hand a decoded request to the pipeline of
//! its signal and count the outcome.

use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{Batch, ComponentId, ConsumeError, ConsumerRef, Signal, Telemetry};

/// One signal on one transport.
pub(crate) struct SignalHandler {
    id: ComponentId,
    transport: &'static str,
    signal: Signal,
    /// `None` when no pipeline of this signal lists the receiver.
    route: Option<(ConsumerRef, ReceiverMetrics)>,
}

impl SignalHandler {
    pub(crate) fn new(
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

    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// True when a pipeline takes this signal.
    pub(crate) fn is_served(&self) -> bool {
        self.route.is_some()
    }

    /// Hands `batch` downstream and waits until the pipeline accepted or
    /// refused it. A request without items is accepted without bothering the
    /// pipeline. Must only be called when [`Self::is_served`].
    pub(crate) async fn deliver(&self, batch: Batch) -> Result<(), ConsumeError> {
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
