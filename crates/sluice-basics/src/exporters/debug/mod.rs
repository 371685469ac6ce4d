//! The `debug` exporter: writes what reaches it to sluice's own log, for
//! looking at a pipeline's data while building or troubleshooting it.
//!
//! # Guarantees
//!
//! - Output goes through `tracing` at `INFO` with target `sluice::debug`, so
//!   it follows the service's log configuration and format.
//! - `basic` writes one line per batch (signal, resource count, item count);
//!   `normal` adds one line per span, metric or log record; `detailed` adds
//!   the whole batch as one OTLP/JSON line. Values from the data are quoted
//!   and escaped, so one item is always one line.
//! - Sampling is the OpenTelemetry Collector's: in each one-second window the
//!   first `sampling_initial` batches are written, then every
//!   `sampling_thereafter`-th (none when it is 0). The decision is per batch:
//!   a written batch is written whole.
//! - Sending never fails; the queue is off by default, so batches are written
//!   before the pipeline call returns.
//!
//! # Limits
//!
//! - Not for production traffic: `detailed` logs every attribute and body.
//! - Metric data point values and span attributes appear only in `detailed`.

mod render;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::exporter_helper::{
    self, QueueSettings, RetrySettings, SendError, Sender, DEFAULT_TIMEOUT,
};
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, Exporter, ExporterFactory, FieldError, Registry,
    Signal, Stability,
};
use sluice_pdata::Batch;

pub use render::render;

/// The component type name in configuration.
pub const TYPE_NAME: &str = "debug";

/// The `tracing` target of the output.
pub const TARGET: &str = "sluice::debug";

/// Registers the `debug` exporter.
pub fn register(r: &mut Registry) {
    r.exporter(DebugExporterFactory);
}

/// How much of each batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Verbosity {
    /// One summary line per batch (the default).
    #[default]
    Basic,
    /// The summary, then one line per span, metric or log record.
    Normal,
    /// The summary, then the batch as OTLP/JSON.
    Detailed,
}

impl TryFrom<String> for Verbosity {
    type Error = String;

    /// Case-insensitive, as in the OpenTelemetry Collector.
    fn try_from(s: String) -> Result<Verbosity, String> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(Verbosity::Basic),
            "normal" => Ok(Verbosity::Normal),
            "detailed" => Ok(Verbosity::Detailed),
            _ => Err(format!(
                "unknown verbosity {s:?}: expected `basic`, `normal` or `detailed`"
            )),
        }
    }
}

fn default_sampling_initial() -> u64 {
    2
}

fn default_sampling_thereafter() -> u64 {
    1
}

fn default_queue() -> QueueSettings {
    QueueSettings {
        enabled: false,
        ..QueueSettings::default()
    }
}

/// Configuration of the `debug` exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// `basic` (default), `normal` or `detailed`.
    #[serde(default)]
    pub verbosity: Verbosity,
    /// Batches written in each second before sampling starts (default 2).
    #[serde(default = "default_sampling_initial")]
    pub sampling_initial: u64,
    /// After those, every this-many-th batch of the second is written
    /// (default 1: all; 0: none).
    #[serde(default = "default_sampling_thereafter")]
    pub sampling_thereafter: u64,
    /// The exporter helper's queue; off unless configured (then with the
    /// helper's defaults for the keys not given).
    #[serde(default = "default_queue")]
    pub sending_queue: QueueSettings,
}

impl Default for DebugExporterConfig {
    fn default() -> Self {
        DebugExporterConfig {
            verbosity: Verbosity::default(),
            sampling_initial: default_sampling_initial(),
            sampling_thereafter: default_sampling_thereafter(),
            sending_queue: default_queue(),
        }
    }
}

impl ComponentConfig for DebugExporterConfig {
    fn validate(&self) -> Vec<FieldError> {
        self.sending_queue.validate("sending_queue")
    }
}

/// Per-second sampling of batches, as zap's sampler in the OpenTelemetry
/// Collector: within each one-second window, the first `initial` pass, then
/// every `thereafter`-th.
pub(crate) struct Sampler {
    initial: u64,
    thereafter: u64,
    window: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    seen: u64,
}

const SAMPLING_WINDOW: Duration = Duration::from_secs(1);

impl Sampler {
    pub(crate) fn new(initial: u64, thereafter: u64) -> Sampler {
        Sampler {
            initial,
            thereafter,
            window: Mutex::new(Window {
                start: None,
                seen: 0,
            }),
        }
    }

    /// Whether the batch seen at `now` is written.
    pub(crate) fn sample(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let expired = match w.start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= SAMPLING_WINDOW,
        };
        if expired {
            w.start = Some(now);
            w.seen = 0;
        }
        w.seen = w.seen.saturating_add(1);
        let n = w.seen;
        if n <= self.initial {
            return true;
        }
        self.thereafter != 0 && (n - self.initial) % self.thereafter == 0
    }
}

/// Writes batches to the log.
pub(crate) struct DebugSender {
    id: String,
    verbosity: Verbosity,
    sampler: Sampler,
}

impl DebugSender {
    pub(crate) fn new(id: &str, config: &DebugExporterConfig) -> DebugSender {
        DebugSender {
            id: id.to_string(),
            verbosity: config.verbosity,
            sampler: Sampler::new(config.sampling_initial, config.sampling_thereafter),
        }
    }
}

#[async_trait]
impl Sender for DebugSender {
    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        if !self.sampler.sample(Instant::now()) {
            return Ok(());
        }
        for line in render(batch.payload(), self.verbosity) {
            tracing::info!(target: TARGET, exporter = %self.id, "{line}");
        }
        Ok(())
    }
}

/// Factory of the `debug` exporter.
pub struct DebugExporterFactory;

impl ExporterFactory for DebugExporterFactory {
    type Config = DebugExporterConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Development
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &DebugExporterConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let sender = DebugSender::new(&ctx.id.to_string(), config);
        exporter_helper::build(
            &ctx,
            Arc::new(sender),
            &config.sending_queue,
            &RetrySettings {
                enabled: false,
                ..RetrySettings::default()
            },
            DEFAULT_TIMEOUT,
        )
    }
}
