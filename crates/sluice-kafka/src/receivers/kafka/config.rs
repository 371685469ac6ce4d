//! Configuration of the `kafka` receiver.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sluice_core::{ComponentConfig, FieldError, Signal};

use crate::exporters::kafka::DEFAULT_TOPICS;
use crate::kafka::client::default_client_id;
use crate::kafka::{check_topic, AuthSettings, ClientSettings, Encoding, PropertyValue};

fn default_group_id() -> String {
    "sluice".to_string()
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_in_flight_mib() -> usize {
    64
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    /// New messages only (default, as in the OpenTelemetry Collector).
    #[default]
    Latest,
    /// From the oldest message the broker keeps.
    Earliest,
}

/// The partition assignor of the consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum RebalanceStrategy {
    /// Incremental: only partitions that move are stopped (default).
    #[default]
    #[serde(rename = "cooperative-sticky")]
    CooperativeSticky,
    /// Eager: every member stops all its partitions on each rebalance.
    #[serde(rename = "range")]
    Range,
    /// Eager, partitions dealt round-robin.
    #[serde(rename = "roundrobin")]
    RoundRobin,
}

impl RebalanceStrategy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RebalanceStrategy::CooperativeSticky => "cooperative-sticky",
            RebalanceStrategy::Range => "range",
            RebalanceStrategy::RoundRobin => "roundrobin",
        }
    }
}

/// `traces`, `metrics`, `logs`: one signal's topics and encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalTopics {
    /// Topics (or `^patterns`) carrying this signal (default: `topics`, else
    /// `otlp_spans`, `otlp_metrics` or `otlp_logs`).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Encoding of those topics (default: `encoding`).
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

/// `header_extraction`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderExtraction {
    /// Copy message headers into resource attributes (default false).
    #[serde(default)]
    pub extract_headers: bool,
    /// The headers to copy; each becomes the resource attribute
    /// `kafka.header.<name>` (string, the header's value as UTF-8).
    #[serde(default)]
    pub headers: Vec<String>,
}

/// Configuration of the `kafka` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiverConfig {
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
    /// librdkafka consumer properties passed through (default none), e.g.
    /// `session.timeout.ms: 6000`. Properties set by a field here are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    /// The consumer group (default `sluice`). Receivers sharing it share the
    /// partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topics for every signal the receiver serves, unless the signal's own
    /// `topics` is set. An entry starting with `^` is a regular expression.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Encoding for every signal, unless the signal's own is set
    /// (default `otlp_proto`).
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub traces: SignalTopics,
    #[serde(default)]
    pub metrics: SignalTopics,
    #[serde(default)]
    pub logs: SignalTopics,
    /// Where a partition without a committed offset starts: `latest`
    /// (default) or `earliest`.
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// `cooperative-sticky` (default), `range` or `roundrobin`.
    #[serde(default)]
    pub group_rebalance_strategy: RebalanceStrategy,
    /// How often accepted offsets are committed (default 1s); they are also
    /// committed on rebalances and at shutdown.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Message bytes held between librdkafka and the pipeline's answer
    /// (default 64 MiB); beyond it, partitions are paused.
    #[serde(default = "default_max_in_flight_mib")]
    pub max_in_flight_mib: usize,
    /// Message headers copied into resource attributes (default none).
    #[serde(default)]
    pub header_extraction: HeaderExtraction,
}

/// Consumer properties this receiver sets itself, and why.
const RESERVED: &[(&str, &str)] = &[
    ("group.id", "group_id"),
    (
        "enable.auto.commit",
        "nothing: offsets are committed once the pipeline accepted their data",
    ),
    (
        "enable.auto.offset.store",
        "nothing: offsets are committed once the pipeline accepted their data",
    ),
    ("auto.offset.reset", "initial_offset"),
    ("partition.assignment.strategy", "group_rebalance_strategy"),
    ("auto.commit.interval.ms", "commit_interval"),
    (
        "statistics.interval.ms",
        "nothing: sluice reads lag from the statistics every 5s",
    ),
    (
        "enable.partition.eof",
        "nothing: sluice does not use end-of-partition events",
    ),
];

impl KafkaReceiverConfig {
    /// The client settings shared with the exporter.
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            auth: self.auth.clone(),
            properties: self.properties.clone(),
        }
    }

    fn signal_topics(&self, signal: Signal) -> (&'static str, &SignalTopics) {
        match signal {
            Signal::Traces => ("traces", &self.traces),
            Signal::Metrics => ("metrics", &self.metrics),
            Signal::Logs => ("logs", &self.logs),
        }
    }

    /// The topics of `signal` and the config key they came from.
    pub fn topics(&self, signal: Signal) -> (String, Vec<String>) {
        let (name, s) = self.signal_topics(signal);
        match (&s.topics, &self.topics) {
            (Some(t), _) => (format!("{name}::topics"), t.clone()),
            (None, Some(t)) => ("topics".to_string(), t.clone()),
            (None, None) => (
                format!("{name}::topics"),
                vec![DEFAULT_TOPICS[signal as usize].to_string()],
            ),
        }
    }

    /// The encoding of `signal` and the config key it came from.
    pub fn encoding(&self, signal: Signal) -> (String, Encoding) {
        let (name, s) = self.signal_topics(signal);
        match (s.encoding, self.encoding) {
            (Some(e), _) => (format!("{name}::encoding"), e),
            (None, Some(e)) => ("encoding".to_string(), e),
            (None, None) => ("encoding".to_string(), Encoding::OtlpProto),
        }
    }
}

/// Checks one `topics` entry: a topic name or a `^pattern`.
pub(crate) fn check_topic_entry(entry: &str) -> Result<(), String> {
    if entry.starts_with('^') {
        regex::Regex::new(entry)
            .map(|_| ())
            .map_err(|e| format!("{entry:?} is not a valid regular expression: {e}"))
    } else {
        check_topic(entry)
    }
}

impl ComponentConfig for KafkaReceiverConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = self.client().validate(RESERVED);
        if self.group_id.trim().is_empty() {
            errors.push(FieldError::new("group_id", "must not be empty"));
        }
        let mut check_list = |key: &str, topics: &[String]| {
            if topics.is_empty() {
                errors.push(FieldError::new(key, "must name at least one topic"));
            }
            for (i, t) in topics.iter().enumerate() {
                if let Err(m) = check_topic_entry(t) {
                    errors.push(FieldError::new(format!("{key}::{i}"), m));
                }
            }
        };
        if let Some(t) = &self.topics {
            check_list("topics", t);
        }
        for signal in Signal::ALL {
            let (name, s) = self.signal_topics(signal);
            if let Some(t) = &s.topics {
                check_list(&format!("{name}::topics"), t);
            }
        }
        for signal in Signal::ALL {
            let (name, s) = self.signal_topics(signal);
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
        if self.commit_interval.is_zero() {
            errors.push(FieldError::new("commit_interval", "must be greater than 0"));
        }
        if self.max_in_flight_mib == 0 {
            errors.push(FieldError::new("max_in_flight_mib", "must be at least 1"));
        }
        let h = &self.header_extraction;
        if h.extract_headers && h.headers.is_empty() {
            errors.push(FieldError::new(
                "header_extraction::headers",
                "name the headers to extract",
            ));
        }
        for (i, name) in h.headers.iter().enumerate() {
            if name.is_empty() {
                errors.push(FieldError::new(
                    format!("header_extraction::headers::{i}"),
                    "must not be empty",
                ));
            }
        }
        errors
    }
}
