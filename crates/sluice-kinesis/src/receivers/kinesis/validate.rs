//! Validation of Haystack spans read from Kinesis, the rules of Haystack's
//! Kinesis collector, applied in this order:
//!
//! 1. **Size** (when `max_span_size` is set): a span whose protobuf encoding
//!    is larger either loses all tags but those in `keep_tags` and gets a
//!    `truncation_tag_key = true` tag (`oversize_action: truncate`), or is
//!    only logged (`oversize_action: log`). It is not dropped. Counted as
//!    `oversize`.
//! 2. `serviceName`, `operationName`, `spanId`, `traceId` must not be empty.
//! 3. `startTime` must be at least 31,536,000,000,000 µs (1971-01-01): an
//!    earlier value is almost always a sender writing milliseconds.
//! 4. `duration` must not be negative.
//!
//! A span failing 2–4 is dropped and counted under the first rule it fails.
//! A span that passes gets each configured `extra_tags` entry (as a string
//! tag) when it has no tag of that key.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prost::Message;
use serde::Deserialize;
use sluice_core::Telemetry;
use sluice_pdata::haystack::{Span, Tag};

/// Smallest accepted `startTime`: one year after the epoch, in µs.
pub const MIN_START_TIME_MICROS: i64 = 31_536_000_000_000;

/// What to do with a span larger than `max_span_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizeAction {
    /// Drop all tags not in `keep_tags` and add the truncation tag.
    #[default]
    Truncate,
    /// Log the span's ids and size, change nothing.
    Log,
}

fn default_truncation_tag_key() -> String {
    "sluice.tags_truncated".to_string()
}

/// The `validation` section of the `kinesis` receiver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Largest span (protobuf bytes) passed unchanged; 0 disables the
    /// check (default).
    #[serde(default)]
    pub max_span_size: usize,
    /// `truncate` (default) or `log`.
    #[serde(default)]
    pub oversize_action: OversizeAction,
    /// Tags kept when a span is truncated.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Key of the boolean tag marking a truncated span
    /// (default `sluice.tags_truncated`).
    #[serde(default = "default_truncation_tag_key")]
    pub truncation_tag_key: String,
    /// Tags added (as strings) to every valid span that lacks them.
    #[serde(default)]
    pub extra_tags: BTreeMap<String, String>,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            max_span_size: 0,
            oversize_action: OversizeAction::default(),
            keep_tags: Vec::new(),
            truncation_tag_key: default_truncation_tag_key(),
            extra_tags: BTreeMap::new(),
        }
    }
}

/// Why a span was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    ServiceName,
    OperationName,
    SpanId,
    TraceId,
    StartTime,
    Duration,
}

impl Invalid {
    pub const ALL: [Invalid; 6] = [
        Invalid::ServiceName,
        Invalid::OperationName,
        Invalid::SpanId,
        Invalid::TraceId,
        Invalid::StartTime,
        Invalid::Duration,
    ];

    /// The `reason` label of the drop counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::ServiceName => "missing_service_name",
            Invalid::OperationName => "missing_operation_name",
            Invalid::SpanId => "missing_span_id",
            Invalid::TraceId => "missing_trace_id",
            Invalid::StartTime => "start_time_too_small",
            Invalid::Duration => "negative_duration",
        }
    }
}

/// What the size check did to a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Unchanged,
    /// Over the size limit; tags were dropped.
    Truncated,
    /// Over the size limit; only logged.
    OversizeLogged,
}

/// The result of checking one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What the size limit did.
    pub size: Kept,
    /// The first rule the span fails (it is then dropped).
    pub invalid: Option<Invalid>,
}

/// Counters of the validation outcomes.
#[derive(Debug, Clone, Default)]
pub struct ValidationCounters {
    /// One per [`Invalid`], in [`Invalid::ALL`] order.
    pub invalid: [Counter; 6],
    pub oversize: Counter,
}

impl ValidationCounters {
    /// `sluice_kinesis_receiver_invalid_spans_total{receiver,reason}` and
    /// `sluice_kinesis_receiver_oversize_spans_total{receiver}`.
    pub fn register(t: &Telemetry, receiver: &str) -> ValidationCounters {
        let invalid = Invalid::ALL.map(|r| {
            t.counter(
                "sluice_kinesis_receiver_invalid_spans",
                "Haystack spans dropped by validation, by reason",
                &[("receiver", receiver), ("reason", r.as_str())],
            )
        });
        ValidationCounters {
            invalid,
            oversize: t.counter(
                "sluice_kinesis_receiver_oversize_spans",
                "Haystack spans over max_span_size (truncated or logged)",
                &[("receiver", receiver)],
            ),
        }
    }

    pub fn invalid(&self, reason: Invalid) -> &Counter {
        &self.invalid[reason as usize]
    }
}

/// Applies a [`ValidationConfig`].
#[derive(Debug, Clone)]
pub struct Validator {
    config: ValidationConfig,
}

impl Validator {
    pub fn new(config: ValidationConfig) -> Validator {
        Validator { config }
    }

    /// Checks one span, truncating it or adding extra tags in place.
    pub fn check(&self, span: &mut Span) -> Outcome {
        let mut size = Kept::Unchanged;
        let invalid = self.check_into(span, &mut size).err();
        Outcome { size, invalid }
    }

    fn check_into(&self, span: &mut Span, kept: &mut Kept) -> Result<(), Invalid> {
        let limit = self.config.max_span_size;
        if limit > 0 {
            let size = span.encoded_len();
            if size > limit {
                match self.config.oversize_action {
                    OversizeAction::Truncate => {
                        let keep = &self.config.keep_tags;
                        span.tags.retain(|t| keep.contains(&t.key));
                        span.tags
                            .push(Tag::bool(self.config.truncation_tag_key.clone(), true));
                        *kept = Kept::Truncated;
                    }
                    OversizeAction::Log => *kept = Kept::OversizeLogged,
                }
                tracing::warn!(
                    trace_id = %span.trace_id,
                    span_id = %span.span_id,
                    service = %span.service_name,
                    size,
                    limit,
                    truncated = *kept == Kept::Truncated,
                    "Haystack span over max_span_size"
                );
            }
        }
        if span.service_name.is_empty() {
            return Err(Invalid::ServiceName);
        }
        if span.operation_name.is_empty() {
            return Err(Invalid::OperationName);
        }
        if span.span_id.is_empty() {
            return Err(Invalid::SpanId);
        }
        if span.trace_id.is_empty() {
            return Err(Invalid::TraceId);
        }
        if span.start_time < MIN_START_TIME_MICROS {
            return Err(Invalid::StartTime);
        }
        if span.duration < 0 {
            return Err(Invalid::Duration);
        }
        for (key, value) in &self.config.extra_tags {
            if !span.tags.iter().any(|t| t.key == *key) {
                span.tags.push(Tag::string(key.clone(), value.clone()));
            }
        }
        Ok(())
    }

    /// Checks `spans`, keeping the valid ones and counting the rest.
    pub fn apply(&self, spans: &mut Vec<Span>, counters: &ValidationCounters) {
        spans.retain_mut(|span| {
            let outcome = self.check(span);
            if outcome.size != Kept::Unchanged {
                counters.oversize.inc();
            }
            match outcome.invalid {
                None => true,
                Some(reason) => {
                    counters.invalid(reason).inc();
                    tracing::debug!(
                        trace_id = %span.trace_id,
                        span_id = %span.span_id,
                        reason = reason.as_str(),
                        "dropped an invalid Haystack span"
                    );
                    false
                }
            }
        });
    }
}
