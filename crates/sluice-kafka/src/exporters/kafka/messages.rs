//! From one batch to the Kafka messages that carry it: regrouped by topic
//! (`topic_from_attribute`) and key (trace id, resource attributes), then
//! encoded and split to fit `max_message_bytes`.

use std::collections::HashMap;

use sluice_pdata::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sluice_pdata::otlp::resource::v1::Resource;
use sluice_pdata::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use sluice_pdata::{
    haystack, split_off, Batch, Bytes, ExportLogsServiceRequest, ExportMetricsServiceRequest,
    ExportTraceServiceRequest, Payload, Signal,
};

use super::extra::{self, Route};
use super::KafkaExporterConfig;
use crate::kafka::{check_topic, encode_haystack, encode_otlp, Encoding};

/// One message to produce.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Bytes,
    /// Items (spans, points, records) it carries.
    pub items: usize,
    /// For a span's copy to an extra topic: the index of that topic in
    /// [`Plan::extra_topics`].
    pub extra: Option<usize>,
}

/// The messages of one batch, and what could not be put into any.
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub messages: Vec<Message>,
    /// Items dropped because one alone exceeds `max_message_bytes`.
    pub rejected: u64,
}

/// How batches become messages; fixed at build.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    topics: [String; 3],
    encodings: [Encoding; 3],
    topic_from_attribute: Option<String>,
    keyed: [bool; 3],
    max_message_bytes: usize,
    /// `extra_topics`, one route per distinct topic.
    extra: Vec<Route>,
}

/// Messages of one (topic, key) before encoding.
struct Group {
    topic: Option<String>,
    key: Option<Vec<u8>>,
    payload: Payload,
}

impl Plan {
    pub(crate) fn new(config: &KafkaExporterConfig) -> Plan {
        Plan {
            topics: Signal::ALL.map(|s| config.topic(s)),
            encodings: Signal::ALL.map(|s| config.encoding(s).1),
            topic_from_attribute: config.topic_from_attribute.clone(),
            keyed: [
                config.partition_traces_by_id,
                config.partition_metrics_by_resource_attributes,
                config.partition_logs_by_resource_attributes,
            ],
            max_message_bytes: config.max_message_bytes,
            extra: extra::routes(&config.extra_topics),
        }
    }

    /// The distinct extra topics, in the order [`Message::extra`] indexes.
    pub(crate) fn extra_topics(&self) -> impl Iterator<Item = &str> {
        self.extra.iter().map(|r| r.topic.as_str())
    }

    /// The messages carrying `batch`.
    pub(crate) fn build(&self, batch: &Batch) -> Built {
        let signal = batch.signal();
        let encoding = self.encodings[signal as usize];
        let keyed = self.keyed[signal as usize];
        let mut built = Built::default();
        if encoding.is_haystack() {
            self.haystack(batch, encoding, &mut built);
            return built;
        }
        if !keyed && self.topic_from_attribute.is_none() {
            self.whole(batch, encoding, &mut built);
            return built;
        }
        let attr = self.topic_from_attribute.as_deref();
        let groups = match batch.clone().into_payload() {
            Payload::Traces(req) => group_traces(req, attr, keyed),
            Payload::Metrics(req) => {
                group_resources(req.resource_metrics, |r| r.resource.as_ref(), attr, keyed)
                    .into_iter()
                    .map(|(topic, key, resource_metrics)| Group {
                        topic,
                        key,
                        payload: Payload::Metrics(ExportMetricsServiceRequest { resource_metrics }),
                    })
                    .collect()
            }
            Payload::Logs(req) => {
                group_resources(req.resource_logs, |r| r.resource.as_ref(), attr, keyed)
                    .into_iter()
                    .map(|(topic, key, resource_logs)| Group {
                        topic,
                        key,
                        payload: Payload::Logs(ExportLogsServiceRequest { resource_logs }),
                    })
                    .collect()
            }
        };
        for g in groups {
            let topic = g
                .topic
                .unwrap_or_else(|| self.topics[signal as usize].clone());
            self.fit(g.payload, encoding, &topic, g.key.as_deref(), &mut built);
        }
        built
    }

    /// One message per span, keyed by its trace id (as the Haystack span
    /// spells it: 32 lowercase hex digits for spans that came from OTLP),
    /// each followed by its copies to the extra topics it matches.
    fn haystack(&self, batch: &Batch, encoding: Encoding, built: &mut Built) {
        let default_topic = &self.topics[Signal::Traces as usize];
        // Read from the batch's own request: the spans are translated, never
        // the request changed, so it is not copied.
        let Payload::Traces(req) = batch.payload() else {
            // The factory refuses Haystack encodings for other signals.
            return;
        };
        let regrouped: Vec<(Option<String>, ExportTraceServiceRequest)>;
        let groups: Vec<(Option<String>, &ExportTraceServiceRequest)> =
            match self.topic_from_attribute.as_deref() {
                None => vec![(None, req)],
                Some(attr) => {
                    regrouped = group_resources(
                        req.resource_spans.clone(),
                        |r| r.resource.as_ref(),
                        Some(attr),
                        false,
                    )
                    .into_iter()
                    .map(|(topic, _, resource_spans)| {
                        (topic, ExportTraceServiceRequest { resource_spans })
                    })
                    .collect();
                    regrouped.iter().map(|(t, r)| (t.clone(), r)).collect()
                }
            };
        for (topic, req) in groups {
            let topic = topic.unwrap_or_else(|| default_topic.clone());
            for span in haystack::spans_from_otlp(req) {
                let value = encode_haystack(&span, encoding);
                if value.len() > self.max_message_bytes {
                    built.rejected += 1;
                    tracing::warn!(
                        topic,
                        bytes = value.len(),
                        max_message_bytes = self.max_message_bytes,
                        "a span is larger than max_message_bytes; it is dropped"
                    );
                    continue;
                }
                // A span goes to a topic once: an extra topic that is its
                // own (by `topic_from_attribute`) adds nothing.
                let copies: Vec<usize> = self
                    .extra
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.topic != topic && r.matches(&span))
                    .map(|(i, _)| i)
                    .collect();
                let key = span.trace_id.into_bytes();
                let value = Bytes::from(value);
                for &i in &copies {
                    built.messages.push(Message {
                        topic: self.extra[i].topic.clone(),
                        key: Some(key.clone()),
                        value: value.clone(),
                        items: 1,
                        extra: Some(i),
                    });
                }
                // The span's own message first, then its copies (all are
                // produced at once; the batch waits for every one).
                let own = built.messages.len() - copies.len();
                built.messages.insert(
                    own,
                    Message {
                        topic: topic.clone(),
                        key: Some(key),
                        value,
                        items: 1,
                        extra: None,
                    },
                );
            }
        }
    }

    /// The batch as it is, to the signal's topic without a key.
    fn whole(&self, batch: &Batch, encoding: Encoding, built: &mut Built) {
        let topic = &self.topics[batch.signal() as usize];
        if encoding == Encoding::OtlpProto && batch.encoded_len() <= self.max_message_bytes {
            // The held encoding when there is one: no copy, no encoding.
            built.messages.push(Message {
                topic: topic.clone(),
                key: None,
                value: batch.to_bytes(),
                items: batch.items(),
                extra: None,
            });
            return;
        }
        self.fit(batch.clone().into_payload(), encoding, topic, None, built);
    }

    /// Encodes `payload` into messages of at most `max_message_bytes`,
    /// halving it at item boundaries until each part fits.
    fn fit(
        &self,
        payload: Payload,
        encoding: Encoding,
        topic: &str,
        key: Option<&[u8]>,
        built: &mut Built,
    ) {
        let items = payload.item_count();
        let value = match encoding {
            // The length is known without encoding.
            Encoding::OtlpProto if payload.encoded_len() > self.max_message_bytes => None,
            _ => Some(encode_otlp(&payload, encoding)),
        };
        if let Some(v) = value.filter(|v| v.len() <= self.max_message_bytes) {
            built.messages.push(Message {
                topic: topic.to_string(),
                key: key.map(<[u8]>::to_vec),
                value: Bytes::from(v),
                items,
                extra: None,
            });
            return;
        }
        if items <= 1 {
            built.rejected += items as u64;
            tracing::warn!(
                topic,
                items,
                max_message_bytes = self.max_message_bytes,
                "an item is larger than max_message_bytes on its own; it is dropped"
            );
            return;
        }
        let mut rest = payload;
        let first = split_off(&mut rest, items / 2);
        self.fit(first, encoding, topic, key, built);
        self.fit(rest, encoding, topic, key, built);
    }
}

/// A string resource attribute.
fn string_attribute<'a>(resource: Option<&'a Resource>, key: &str) -> Option<&'a str> {
    resource?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
}

/// The topic a resource names in attribute `attr`, if it names a valid one.
/// An invalid name is logged and ignored: the data goes to the signal's
/// topic rather than failing for good.
fn topic_of(resource: Option<&Resource>, attr: Option<&str>) -> Option<String> {
    let name = string_attribute(resource, attr?)?;
    match check_topic(name) {
        Ok(()) => Some(name.to_string()),
        Err(reason) => {
            tracing::warn!(
                attribute = attr,
                %reason,
                "a resource names an invalid topic; its data goes to the signal's topic"
            );
            None
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
    out
}

/// A stable key for a resource: 16 hex digits of an FNV-1a hash over its
/// attributes sorted by key (order in the request does not matter).
pub(crate) fn resource_key(resource: Option<&Resource>) -> Vec<u8> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut attrs: Vec<&KeyValue> = resource
        .map(|r| r.attributes.iter().collect())
        .unwrap_or_default();
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for kv in attrs {
        feed(&(kv.key.len() as u64).to_le_bytes());
        feed(kv.key.as_bytes());
        let value = kv
            .value
            .as_ref()
            .map(|v: &AnyValue| prost::Message::encode_to_vec(v))
            .unwrap_or_default();
        feed(&(value.len() as u64).to_le_bytes());
        feed(&value);
    }
    hex(&h.to_be_bytes())
}

/// Resources under one (topic, key).
type ResourceGroup<R> = (Option<String>, Option<Vec<u8>>, Vec<R>);

/// Resources grouped by (topic attribute, resource key when `keyed`), in
/// order of first appearance.
fn group_resources<R>(
    resources: Vec<R>,
    resource_of: impl Fn(&R) -> Option<&Resource>,
    topic_attr: Option<&str>,
    keyed: bool,
) -> Vec<ResourceGroup<R>> {
    let mut index: HashMap<(Option<String>, Option<Vec<u8>>), usize> = HashMap::new();
    let mut groups: Vec<ResourceGroup<R>> = Vec::new();
    for r in resources {
        let res = resource_of(&r);
        let topic = topic_of(res, topic_attr);
        let key = keyed.then(|| resource_key(res));
        let i = *index
            .entry((topic.clone(), key.clone()))
            .or_insert_with(|| {
                groups.push((topic, key, Vec::new()));
                groups.len() - 1
            });
        groups[i].2.push(r);
    }
    groups
}

/// Spans grouped by (topic attribute, trace id when `by_trace`), keeping
/// each span under copies of its resource and scope.
fn group_traces(
    req: ExportTraceServiceRequest,
    topic_attr: Option<&str>,
    by_trace: bool,
) -> Vec<Group> {
    if !by_trace {
        return group_resources(
            req.resource_spans,
            |r| r.resource.as_ref(),
            topic_attr,
            false,
        )
        .into_iter()
        .map(|(topic, key, resource_spans)| Group {
            topic,
            key,
            payload: Payload::Traces(ExportTraceServiceRequest { resource_spans }),
        })
        .collect();
    }
    struct Building {
        topic: Option<String>,
        trace_id: Vec<u8>,
        req: ExportTraceServiceRequest,
        /// (resource index, scope index) of the last span added.
        last: (usize, usize),
    }
    let mut index: HashMap<(Option<String>, Vec<u8>), usize> = HashMap::new();
    let mut groups: Vec<Building> = Vec::new();
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        let topic = topic_of(rs.resource.as_ref(), topic_attr);
        let (resource, schema_url) = (rs.resource, rs.schema_url);
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let (scope, scope_schema) = (ss.scope, ss.schema_url);
            for span in ss.spans {
                let gi = *index
                    .entry((topic.clone(), span.trace_id.clone()))
                    .or_insert_with(|| {
                        groups.push(Building {
                            topic: topic.clone(),
                            trace_id: span.trace_id.clone(),
                            req: ExportTraceServiceRequest::default(),
                            last: (usize::MAX, usize::MAX),
                        });
                        groups.len() - 1
                    });
                let g = &mut groups[gi];
                if g.last.0 != ri {
                    g.req.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        schema_url: schema_url.clone(),
                        scope_spans: Vec::new(),
                    });
                    g.last = (ri, usize::MAX);
                }
                let rs_out = g.req.resource_spans.last_mut().expect("pushed above");
                if g.last.1 != si {
                    rs_out.scope_spans.push(ScopeSpans {
                        scope: scope.clone(),
                        schema_url: scope_schema.clone(),
                        spans: Vec::new(),
                    });
                    g.last.1 = si;
                }
                rs_out
                    .scope_spans
                    .last_mut()
                    .expect("pushed above")
                    .spans
                    .push(span);
            }
        }
    }
    groups
        .into_iter()
        .map(|g| Group {
            topic: g.topic,
            key: Some(hex(&g.trace_id)),
            payload: Payload::Traces(g.req),
        })
        .collect()
}
