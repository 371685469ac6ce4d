//! The `attributes` processor: inserts, updates, deletes, hashes, extracts
//! and converts attributes of spans, log records and metric data points,
//! configured as the OpenTelemetry Collector's `attributesprocessor`.
//!
//! **What it does.** `actions` run in order on the attributes of every span
//! (traces), log record (logs) and data point (metrics) — not on resource,
//! scope, event or link attributes, as in the Collector:
//! - `insert` adds `key` when it is missing; `update` changes it when it
//!   exists; `upsert` does either. The value is `value` (typed by the YAML:
//!   string, int, double, bool, list, map) or a copy of `from_attribute`
//!   (nothing happens when that attribute is missing, unless
//!   `default_value` is set).
//! - `delete` removes `key` and every key matching `pattern`.
//! - `hash` replaces those values with the lowercase hex SHA-256 of their
//!   bytes (as the Collector since v0.78: string bytes; a bool as one byte;
//!   an int or a double's IEEE bits as 8 little-endian bytes; other types
//!   and the empty string become "").
//! - `extract` matches `pattern` against the string value of `key` and
//!   writes each named group as a string attribute (overwriting).
//! - `convert` turns `key` into `string`, `int` or `double`; a value that
//!   cannot be converted ("abc" to int) is left as it is and counted in
//!   `sluice_processor_attributes_convert_failed`.
//!
//! `include`/`exclude` restrict which items are processed: an item is
//! processed when it matches `include` (if set) and does not match
//! `exclude` (if set). For metrics the whole metric is matched (name,
//! resource) and all its data points are processed.
//!
//! **Guarantees.** Nothing is dropped: the processor only edits attributes
//! and always passes the batch on. A batch that still holds its protobuf
//! encoding is searched for the keys the configuration depends on; when
//! none can be present, the batch passes through without being decoded
//! (and keeps its encoding for the exporters). Regular expressions are
//! compiled once, when the configuration is read.
//!
//! **Limits and differences from the Collector.** `from_context` is refused
//! (sluice does not hand request metadata to processors), as are
//! `log_severity_number` and the `regexp` cache settings of include/exclude
//! and `match_type: expr`. Properties that do not apply to a pipeline's
//! signal (`span_names` in a logs pipeline, `services` in a metrics
//! pipeline) are validation errors; the Collector ignores some of them for
//! metrics. Regular expressions use the `regex` crate (RE2-like syntax, but
//! `\d`, `\w` and `\b` are Unicode-aware where Go's are ASCII-only). An
//! attribute matched by both `key` and `pattern` of one `hash` action is
//! hashed once (the Collector hashes it twice). `delete` by `key` removes
//! every attribute with that key, duplicates included. Converting a double
//! to int truncates toward zero and saturates out of range (NaN gives 0).

mod actions;
mod config;
mod matcher;
mod values;

use std::sync::Arc;

use async_trait::async_trait;
use memchr::memmem::Finder;
use prometheus_client::metrics::counter::Counter;
use sluice_core::{
    BuildContext, BuildError, ConsumeError, Consumer, ConsumerRef, Lifecycle, Processor,
    ProcessorFactory, Registry, Stability,
};
use sluice_pdata::{Batch, Payload, Signal};

use actions::{apply, Action, Scratch};
use matcher::Filter;

pub use config::{ActionConfig, AttributeConfig, AttributesConfig, LibraryConfig, MatchConfig};

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;

/// The configured type name.
pub const TYPE: &str = "attributes";

/// Registers the `attributes` processor.
pub fn register(r: &mut Registry) {
    r.processor(AttributesFactory);
}

/// Factory of the `attributes` processor.
pub struct AttributesFactory;

impl ProcessorFactory for AttributesFactory {
    type Config = AttributesConfig;

    fn type_name(&self) -> &'static str {
        TYPE
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
        config: &AttributesConfig,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        Ok(Arc::new(Attributes::new(&ctx, config, next)?))
    }
}

/// Decides, from a request's encoding alone, that the processor would
/// change nothing in it.
struct Gate {
    /// Keys every included item has (from `include`): one missing from the
    /// whole request means no item is included.
    required: Vec<Finder<'static>>,
    /// Set when every action needs some key to exist to do anything: none
    /// of them in the request means no action does anything.
    any_of: Option<Vec<Finder<'static>>>,
}

impl Gate {
    fn new(actions: &[Action], filter: &Filter) -> Gate {
        let finder = |k: &str| Finder::new(k.as_bytes()).into_owned();
        let required = filter
            .include
            .iter()
            .flat_map(|m| m.required_keys())
            .filter(|k| !k.is_empty())
            .map(finder)
            .collect();
        let any_of = actions
            .iter()
            .map(|a| a.gate().filter(|k| !k.is_empty()).map(finder))
            .collect();
        Gate { required, any_of }
    }

    /// True when a request encoded as `bytes` would come out unchanged.
    fn unchanged(&self, bytes: &[u8]) -> bool {
        self.required.iter().any(|f| f.find(bytes).is_none())
            || self
                .any_of
                .as_ref()
                .is_some_and(|keys| keys.iter().all(|f| f.find(bytes).is_none()))
    }
}

/// One `attributes` instance (one per pipeline).
pub struct Attributes {
    actions: Vec<Action>,
    filter: Filter,
    gate: Gate,
    next: ConsumerRef,
    convert_failed: Counter,
}

impl Attributes {
    fn new(
        ctx: &BuildContext,
        config: &AttributesConfig,
        next: ConsumerRef,
    ) -> Result<Attributes, BuildError> {
        let compiled = config.compile().map_err(|errors| {
            BuildError::new(format!(
                "processor {}: {}",
                ctx.id,
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let filter = Filter {
            include: compiled.include,
            exclude: compiled.exclude,
        };
        let gate = Gate::new(&compiled.actions, &filter);
        let id = ctx.id.to_string();
        let pipeline = ctx.pipeline.clone().unwrap_or_default();
        let convert_failed = ctx.telemetry.counter(
            "sluice_processor_attributes_convert_failed",
            "Attribute values the convert action could not convert (left unchanged)",
            &[("processor", id.as_str()), ("pipeline", pipeline.as_str())],
        );
        Ok(Attributes {
            actions: compiled.actions,
            filter,
            gate,
            next,
            convert_failed,
        })
    }

    /// Applies the actions to every item the filter lets through.
    fn process(&self, payload: &mut Payload, scratch: &mut Scratch) {
        let f = &self.filter;
        let filtered = !f.is_empty();
        match payload {
            Payload::Traces(r) => {
                for rs in &mut r.resource_spans {
                    let level = f.resource(rs.resource.as_ref());
                    if level.none() {
                        continue;
                    }
                    for ss in &mut rs.scope_spans {
                        let level = f.scope(level, ss.scope.as_ref());
                        if level.none() {
                            continue;
                        }
                        for span in &mut ss.spans {
                            if !filtered || f.item(level, |m| m.span(span)) {
                                apply(&self.actions, &mut span.attributes, scratch);
                            }
                        }
                    }
                }
            }
            Payload::Logs(r) => {
                for rl in &mut r.resource_logs {
                    let level = f.resource(rl.resource.as_ref());
                    if level.none() {
                        continue;
                    }
                    for sl in &mut rl.scope_logs {
                        let level = f.scope(level, sl.scope.as_ref());
                        if level.none() {
                            continue;
                        }
                        for log in &mut sl.log_records {
                            if !filtered || f.item(level, |m| m.log(log)) {
                                apply(&self.actions, &mut log.attributes, scratch);
                            }
                        }
                    }
                }
            }
            Payload::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    // Scope properties (libraries) are refused for metrics.
                    let level = f.resource(rm.resource.as_ref());
                    if level.none() {
                        continue;
                    }
                    for sm in &mut rm.scope_metrics {
                        for metric in &mut sm.metrics {
                            if !filtered || f.item(level, |m| m.metric(metric)) {
                                self.data_points(metric, scratch);
                            }
                        }
                    }
                }
            }
        }
    }

    fn data_points(&self, metric: &mut Metric, scratch: &mut Scratch) {
        let actions = &self.actions;
        match &mut metric.data {
            Some(Data::Gauge(g)) => g
                .data_points
                .iter_mut()
                .for_each(|p| apply(actions, &mut p.attributes, scratch)),
            Some(Data::Sum(s)) => s
                .data_points
                .iter_mut()
                .for_each(|p| apply(actions, &mut p.attributes, scratch)),
            Some(Data::Histogram(h)) => h
                .data_points
                .iter_mut()
                .for_each(|p| apply(actions, &mut p.attributes, scratch)),
            Some(Data::ExponentialHistogram(h)) => h
                .data_points
                .iter_mut()
                .for_each(|p| apply(actions, &mut p.attributes, scratch)),
            Some(Data::Summary(s)) => s
                .data_points
                .iter_mut()
                .for_each(|p| apply(actions, &mut p.attributes, scratch)),
            None => {}
        }
    }
}

#[async_trait]
impl Lifecycle for Attributes {}

#[async_trait]
impl Consumer for Attributes {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let unchanged = batch.encoded().is_some_and(|b| self.gate.unchanged(b));
        if !unchanged && batch.items() > 0 {
            let mut scratch = Scratch::new(&self.actions);
            self.process(&mut batch.make_mut(), &mut scratch);
            if scratch.convert_failed > 0 {
                self.convert_failed.inc_by(scratch.convert_failed);
            }
        }
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
