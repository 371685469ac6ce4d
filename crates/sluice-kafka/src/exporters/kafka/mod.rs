//! The `kafka` exporter: produces every batch to Kafka topics, as OTLP
//! protobuf or OTLP/JSON export requests, or as Haystack spans (protobuf or
//! JSON, one span per message), through librdkafka (the `rdkafka` crate,
//! statically linked).
//!
//! # Guarantees
//!
//! - A batch is acknowledged to the exporter helper only when **every**
//!   message made from it has been acknowledged by the brokers (librdkafka
//!   delivery reports) with `acks=all` and the idempotent producer on. So a
//!   batch in a persistent `sending_queue` stays on disk until Kafka has it,
//!   and a failed send is retried from the queue with backoff.
//! - A retried batch is produced again whole: messages of it that did reach
//!   the broker in the failed attempt are duplicated (at-least-once).
//! - `partition_traces_by_id`: spans are grouped by trace id, one message per
//!   trace per batch, keyed by the trace id (32 lowercase hex digits), so a
//!   trace's spans always land on one partition (librdkafka's `murmur2_random`
//!   partitioner by default, the Java client's choice, so other producers
//!   keying by the same id agree). `partition_{metrics,logs}_by_resource_attributes`:
//!   one message per distinct resource, keyed by a hash of its attributes.
//!   Unkeyed messages go to a random partition.
//! - Haystack encodings: one message per span, keyed by its trace id as the
//!   Haystack span spells it (32 lowercase hex digits for spans that came
//!   from OTLP), so a trace stays on one partition whatever
//!   `partition_traces_by_id` says. The translation is `sluice_pdata::haystack`.
//! - `topic_from_attribute`: each resource goes to the topic named by that
//!   resource attribute (a string); resources without it go to the signal's
//!   topic.
//! - `extra_topics` (Haystack encodings only): a span is also written, with
//!   the same key and value, to each extra topic whose `match_tags` it
//!   matches (see [`extra`]); the copies are part of the batch, so the batch
//!   is acknowledged only when they are delivered too.
//! - `max_message_bytes`: a message over the limit is split in halves at item
//!   boundaries until every part fits. An item that does not fit on its own is
//!   dropped, logged and counted in `sluice_exporter_rejected_<items>`.
//! - A batch that holds its protobuf encoding and needs no splitting or
//!   regrouping is produced from those bytes (no re-encoding).
//!
//! # Limits
//!
//! - Message ordering across batches follows the helper's concurrent senders
//!   (`sending_queue::num_consumers`): with more than one, batches may reach
//!   a partition in another order than they were received.
//! - `timeout` is librdkafka's `message.timeout.ms`: after it, an
//!   undelivered message fails and the batch is retried from the queue.
//! - The topic's and broker's size limit (`max.message.bytes`) must be at
//!   least `max_message_bytes`; a broker refusing a message as too large is a
//!   permanent failure (the batch is dropped and counted).

pub mod extra;
mod messages;
mod sender;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_core::exporter_helper::{self, QueueSettings, RetrySettings};
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, Exporter, ExporterFactory, ExtensionRef, FieldError,
    Registry, Signal, Stability,
};

use crate::kafka::client::default_client_id;
use crate::kafka::{check_topic, AuthSettings, ClientSettings, Encoding, PropertyValue};
pub use extra::ExtraTopic;
pub(crate) use messages::Plan;
pub(crate) use sender::KafkaSender;

/// The component type name in configuration.
pub const TYPE_NAME: &str = "kafka";

/// Registers the `kafka` exporter.
pub fn register(r: &mut Registry) {
    r.exporter(KafkaExporterFactory);
}

/// Default topics, per signal (the OpenTelemetry Collector's).
pub const DEFAULT_TOPICS: [&str; 3] = ["otlp_spans", "otlp_metrics", "otlp_logs"];

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_message_bytes() -> usize {
    1_000_000
}

/// Compression of produced message batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression (default, as in the OpenTelemetry Collector).
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `traces`, `metrics`, `logs`: one signal's topic and encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSettings {
    /// Topic of this signal (default: `topic`, else `otlp_spans`,
    /// `otlp_metrics` or `otlp_logs`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Encoding of this signal (default: `encoding`).
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// Configuration of the `kafka` exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaExporterConfig {
    /// `host:port` of one or more brokers to bootstrap from (required). An
    /// entry may hold several, comma-separated (handy with `${env:...}`).
    #[serde(default)]
    pub brokers: Vec<String>,
    /// The client id brokers see (default `sluice`).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// SASL (PLAIN, SCRAM) and TLS (default: plaintext, no authentication).
    #[serde(default)]
    pub auth: AuthSettings,
    /// librdkafka producer properties passed through (default none), e.g.
    /// `linger.ms: 20`. Properties set by a field here are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// Topic for every signal, unless the signal's own `topic` is set
    /// (default `otlp_spans`, `otlp_metrics`, `otlp_logs`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Encoding for every signal, unless the signal's own is set:
    /// `otlp_proto` (default), `otlp_json`, `haystack_proto`,
    /// `haystack_json` (the last two for traces only).
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalSettings,
    #[serde(default)]
    pub metrics: SignalSettings,
    #[serde(default)]
    pub logs: SignalSettings,
    /// A resource attribute naming the topic of that resource's data
    /// (default none: the signal's topic).
    #[serde(default)]
    pub topic_from_attribute: Option<String>,
    /// Topics each span is also written to when its tags match (default
    /// none). Haystack encodings only: an OTLP message carries many spans.
    #[serde(default)]
    pub extra_topics: Vec<ExtraTopic>,
    /// Key trace messages by trace id, one message per trace (default false).
    #[serde(default)]
    pub partition_traces_by_id: bool,
    /// Key metric messages by a hash of the resource attributes (default false).
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    /// Key log messages by a hash of the resource attributes (default false).
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// Largest message value produced, in bytes (default 1000000, Kafka's
    /// default limit); larger batches are split.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long a message may take to be acknowledged, librdkafka's retries
    /// included (default 30s: broker fail-overs take seconds).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The exporter helper's queue (defaults: enabled, 10 consumers, 1000
    /// batches, refuse when full).
    #[serde(default)]
    pub sending_queue: QueueSettings,
    /// Retries of failed sends (defaults: on, 5s first wait growing 1.5x to
    /// 30s, jitter 0.5, give up after 300s).
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
}

/// Producer properties this exporter sets itself, and why.
const RESERVED: &[(&str, &str)] = &[
    (
        "enable.idempotence",
        "nothing: the idempotent producer is always on",
    ),
    ("acks", "nothing: acks is always `all`"),
    ("request.required.acks", "nothing: acks is always `all`"),
    ("compression.codec", "compression"),
    ("compression.type", "compression"),
    ("message.max.bytes", "max_message_bytes"),
    ("message.timeout.ms", "timeout"),
    ("delivery.timeout.ms", "timeout"),
    (
        "transactional.id",
        "nothing: transactions are not supported",
    ),
];

impl KafkaExporterConfig {
    /// The client settings shared with the receiver.
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            auth: self.auth.clone(),
            properties: self.properties.clone(),
        }
    }

    fn signal_settings(&self, signal: Signal) -> (&'static str, &SignalSettings) {
        match signal {
            Signal::Traces => ("traces", &self.traces),
            Signal::Metrics => ("metrics", &self.metrics),
            Signal::Logs => ("logs", &self.logs),
        }
    }

    /// The topic `signal` goes to, when no resource attribute says otherwise.
    pub fn topic(&self, signal: Signal) -> String {
        let (_, s) = self.signal_settings(signal);
        s.topic
            .clone()
            .or_else(|| self.topic.clone())
            .unwrap_or_else(|| DEFAULT_TOPICS[signal as usize].to_string())
    }

    /// The encoding of `signal`, and the config key it came from.
    pub fn encoding(&self, signal: Signal) -> (String, Encoding) {
        let (name, s) = self.signal_settings(signal);
        match (s.encoding, self.encoding) {
            (Some(e), _) => (format!("{name}::encoding"), e),
            (None, Some(e)) => ("encoding".to_string(), e),
            (None, None) => ("encoding".to_string(), Encoding::OtlpProto),
        }
    }
}

impl ComponentConfig for KafkaExporterConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.client().validate(RESERVED);
        if let Some(t) = &self.topic {
            if let Err(m) = check_topic(t) {
                errors.push(FieldError::new("topic", m));
            }
        }
        for signal in Signal::ALL {
            let (name, s) = self.signal_settings(signal);
            if let Some(t) = &s.topic {
                if let Err(m) = check_topic(t) {
                    errors.push(FieldError::new(format!("{name}::topic"), m));
                }
            }
            // A top-level encoding meant for traces (haystack) must not be
            // blamed on the other signals: they are checked at build, when
            // it is known which signals this exporter carries.
            if let Some(e) = s.encoding {
                if let Err(m) = e.check(signal) {
                    errors.push(FieldError::new(format!("{name}::encoding"), m));
                }
            }
        }
        if let Some(e) = self.encoding {
            if e.is_haystack() {
                if let Err(m) = e.check(Signal::Traces) {
                    errors.push(FieldError::new("encoding", m));
                }
            }
        }
        if let Some(a) = &self.topic_from_attribute {
            if a.is_empty() {
                errors.push(FieldError::new(
                    "topic_from_attribute",
                    "must not be empty (leave it out to use the signal's topic)",
                ));
            }
        }
        if !self.extra_topics.is_empty() {
            let (key, encoding) = self.encoding(Signal::Traces);
            if !encoding.is_haystack() {
                errors.push(FieldError::new(
                    "extra_topics",
                    format!(
                        "needs a Haystack encoding of traces (`{key}` is {}): a span is copied \
                         to an extra topic as its own message, and an OTLP message carries \
                         many spans; set `traces::encoding: haystack_proto` or `haystack_json`",
                        encoding.as_str()
                    ),
                ));
            }
            errors.extend(extra::validate(
                &self.extra_topics,
                &self.topic(Signal::Traces),
            ));
        }
        if self.max_message_bytes < 1000 {
            errors.push(FieldError::new(
                "max_message_bytes",
                "must be at least 1000 (librdkafka's minimum)",
            ));
        } else if self.max_message_bytes > 1_000_000_000 {
            errors.push(FieldError::new(
                "max_message_bytes",
                "must be at most 1000000000 (librdkafka's maximum)",
            ));
        }
        errors.extend(exporter_helper::validate_settings(
            self.timeout,
            &self.sending_queue,
            &self.retry_on_failure,
        ));
        errors
    }

    fn extension_refs(&self) -> Vec<ExtensionRef> {
        self.sending_queue.extension_refs("sending_queue")
    }
}

/// Factory of the `kafka` exporter.
pub struct KafkaExporterFactory;

impl ExporterFactory for KafkaExporterFactory {
    type Config = KafkaExporterConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &KafkaExporterConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        for &signal in &ctx.signals {
            let (key, encoding) = config.encoding(signal);
            if let Err(m) = encoding.check(signal) {
                return Err(BuildError::new(format!("exporter {}: {key}: {m}", ctx.id)));
            }
        }
        if !config.extra_topics.is_empty() && !ctx.signals.contains(&Signal::Traces) {
            return Err(BuildError::new(format!(
                "exporter {}: extra_topics: applies to spans only, and no traces pipeline uses \
                 this exporter",
                ctx.id
            )));
        }
        let sender = KafkaSender::new(&ctx, config)
            .map_err(|e| BuildError::new(format!("exporter {}: {e}", ctx.id)))?;
        // librdkafka fails an undelivered message at `timeout`; the helper's
        // own deadline comes a little later so that librdkafka's reason is
        // the one reported.
        exporter_helper::build(
            &ctx,
            Arc::new(sender),
            &config.sending_queue,
            &config.retry_on_failure,
            config.timeout + Duration::from_secs(5),
        )
    }
}
