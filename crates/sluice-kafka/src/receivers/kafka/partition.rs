//! One task per assigned partition: decodes its messages in offset order,
//! hands them to the pipeline (several batches may be in the pipeline at
//! once), retries refused batches, and publishes the offset up to which
//! everything was accepted: the only offset the consumer ever commits.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{Batch, ComponentId, ConsumeError, ConsumerRef, Signal};
use sluice_pdata::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sluice_pdata::otlp::resource::v1::Resource;
use sluice_pdata::{haystack, Bytes, Payload};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::kafka::{decode, decode_haystack, DecodeError, Encoding};

/// How long revoked or stopping partitions wait for their batches in the
/// pipeline to be answered before giving them up (uncommitted).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A unit takes at most this much from what is already fetched.
const COALESCE_BYTES: usize = 4 << 20;
const COALESCE_MESSAGES: usize = 10_000;

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where a topic's messages go.
pub(crate) struct Route {
    pub signal: Signal,
    pub encoding: Encoding,
    pub consumer: ConsumerRef,
    pub metrics: ReceiverMetrics,
}

/// Counters shared by all partitions of a receiver.
pub(crate) struct Counters {
    pub messages: Counter,
    pub invalid: Counter,
}

/// One message as fetched, with its share of the in-flight budget.
pub(crate) struct Fetched {
    pub offset: i64,
    pub value: Bytes,
    /// The configured headers the message carries, as (name, value).
    pub headers: Vec<(String, String)>,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What a partition task tells the consumer thread.
#[derive(Default)]
pub(crate) struct Progress {
    /// Everything below this offset was accepted (or given up as invalid or
    /// permanently refused): the first offset still in the pipeline, or the
    /// one after the last message taken; -1 until a message is taken.
    pub commit: AtomicI64,
    /// A refused batch is being retried: the partition should be paused.
    pub blocked: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            commit: AtomicI64::new(-1),
            blocked: AtomicBool::new(false),
        }
    }
}

/// Consecutive messages handed to the pipeline as one batch.
struct Unit {
    first: i64,
    batch: Batch,
    attempt: u32,
    _permits: Vec<OwnedSemaphorePermit>,
}

enum Outcome {
    Answered(Result<(), ConsumeError>),
    /// A retry wait cut short by the stop signal: not sent again.
    Abandoned,
}

type Flight = Pin<Box<dyn Future<Output = (Unit, Outcome)> + Send>>;

/// The task of one partition.
pub(crate) struct PartitionTask {
    pub receiver: ComponentId,
    pub topic: String,
    pub partition: i32,
    pub route: Arc<Route>,
    pub rx: mpsc::UnboundedReceiver<Fetched>,
    pub progress: Arc<Progress>,
    pub stop: CancellationToken,
    pub counters: Arc<Counters>,
}

fn backoff(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_MAX)
}

impl PartitionTask {
    pub(crate) async fn run(mut self) {
        let mut flights: FuturesUnordered<Flight> = FuturesUnordered::new();
        // First offsets of units handed over and not yet finished.
        let mut pending: BTreeSet<i64> = BTreeSet::new();
        // One past the last offset taken from the channel.
        let mut taken: i64 = -1;
        let mut retrying = 0usize;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                Some((unit, outcome)) = flights.next(), if !flights.is_empty() => {
                    if unit.attempt > 0 {
                        retrying -= 1;
                    }
                    if let Some(retry) = self.finish(unit, outcome, &mut pending, true) {
                        retrying += 1;
                        flights.push(self.retry(retry));
                    }
                }
                fetched = self.rx.recv(), if retrying == 0 => {
                    let Some(first) = fetched else { break };
                    let (unit, next) = self.take(first);
                    taken = next;
                    if let Some(unit) = unit {
                        pending.insert(unit.first);
                        let mut flight = self.send(unit);
                        // Poll once now, so that this batch enters the
                        // pipeline before the next one does.
                        match futures::poll!(flight.as_mut()) {
                            Poll::Ready((unit, outcome)) => {
                                if let Some(retry) = self.finish(unit, outcome, &mut pending, true) {
                                    retrying += 1;
                                    flights.push(self.retry(retry));
                                }
                            }
                            Poll::Pending => flights.push(flight),
                        }
                    }
                }
            }
            self.publish(&pending, taken, retrying);
        }
        // Stopping: no new messages; batches already in the pipeline get
        // DRAIN_TIMEOUT to be answered; retries are given up.
        self.stop.cancel();
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if !flights.is_empty() {
                        tracing::warn!(
                            receiver = %self.receiver,
                            topic = %self.topic,
                            partition = self.partition,
                            batches = flights.len(),
                            "batches still unanswered by the pipeline when the partition was released; not committed"
                        );
                    }
                    break;
                }
                next = flights.next() => match next {
                    None => break,
                    Some((unit, outcome)) => {
                        self.finish(unit, outcome, &mut pending, false);
                        self.publish(&pending, taken, 0);
                    }
                },
            }
        }
        self.publish(&pending, taken, 0);
    }

    fn publish(&self, pending: &BTreeSet<i64>, taken: i64, retrying: usize) {
        let commit = pending.first().copied().unwrap_or(taken);
        self.progress.commit.store(commit, Ordering::Release);
        self.progress.blocked.store(retrying > 0, Ordering::Release);
    }

    /// Takes `first` and whatever else is already waiting (within limits),
    /// decoded into one batch. Returns the unit (none when nothing in it
    /// holds items) and the offset after the last message taken.
    fn take(&mut self, first: Fetched) -> (Option<Unit>, i64) {
        let mut fetched = vec![first];
        let mut bytes = fetched[0].value.len();
        while bytes < COALESCE_BYTES && fetched.len() < COALESCE_MESSAGES {
            match self.rx.try_recv() {
                Ok(f) => {
                    bytes += f.value.len();
                    fetched.push(f);
                }
                Err(_) => break,
            }
        }
        let first_offset = fetched[0].offset;
        let next = fetched.last().map_or(first_offset, |f| f.offset) + 1;
        self.counters.messages.inc_by(fetched.len() as u64);
        let mut permits = Vec::with_capacity(fetched.len());
        let batch =
            if self.route.encoding.is_haystack() && fetched.iter().all(|f| f.headers.is_empty()) {
                // One span per message: translate the run of spans at once, so
                // that spans of one service share one resource.
                let mut spans = Vec::with_capacity(fetched.len());
                for f in fetched {
                    permits.extend(f.permit);
                    match decode_haystack(self.route.encoding, &f.value) {
                        Ok(span) => spans.push(span),
                        Err(e) => self.invalid(f.offset, &e),
                    }
                }
                if spans.is_empty() {
                    return (None, next);
                }
                Batch::new(Payload::Traces(haystack::otlp_from_owned_spans(spans)))
            } else {
                let mut batches = Vec::with_capacity(fetched.len());
                for f in fetched {
                    permits.extend(f.permit);
                    match decode(self.route.signal, self.route.encoding, f.value) {
                        Ok(batch) if batch.items() == 0 => {}
                        Ok(batch) => batches.push(with_headers(batch, &f.headers)),
                        Err(e) => self.invalid(f.offset, &e),
                    }
                }
                if batches.is_empty() {
                    return (None, next);
                }
                // Every part was decoded for this route's signal, so concat
                // cannot find a part of another signal.
                Batch::concat(self.route.signal, batches)
                    .unwrap_or_else(|_| Batch::new(Payload::empty(self.route.signal)))
            };
        (
            Some(Unit {
                first: first_offset,
                batch,
                attempt: 0,
                _permits: permits,
            }),
            next,
        )
    }

    fn invalid(&self, offset: i64, e: &DecodeError) {
        self.counters.invalid.inc();
        tracing::warn!(
            receiver = %self.receiver,
            topic = %self.topic,
            partition = self.partition,
            offset,
            encoding = self.route.encoding.as_str(),
            error = %e,
            "skipping a message that is not valid for its topic's encoding"
        );
    }

    fn send(&self, unit: Unit) -> Flight {
        let consumer = self.route.consumer.clone();
        Box::pin(async move {
            let result = consumer.consume(unit.batch.clone()).await;
            (unit, Outcome::Answered(result))
        })
    }

    fn retry(&self, mut unit: Unit) -> Flight {
        let consumer = self.route.consumer.clone();
        let stop = self.stop.clone();
        let wait = backoff(unit.attempt);
        unit.attempt += 1;
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return (unit, Outcome::Abandoned),
            }
            let result = consumer.consume(unit.batch.clone()).await;
            (unit, Outcome::Answered(result))
        })
    }

    /// Counts an answer; returns the unit when it is to be retried.
    fn finish(
        &self,
        unit: Unit,
        outcome: Outcome,
        pending: &mut BTreeSet<i64>,
        may_retry: bool,
    ) -> Option<Unit> {
        let items = unit.batch.items() as u64;
        let m = &self.route.metrics;
        match outcome {
            Outcome::Answered(Ok(())) => {
                m.accepted.inc_by(items);
                pending.remove(&unit.first);
                None
            }
            Outcome::Answered(Err(e)) if e.is_retryable() => {
                m.refused.inc_by(items);
                tracing::debug!(
                    receiver = %self.receiver,
                    topic = %self.topic,
                    partition = self.partition,
                    offset = unit.first,
                    error = %e,
                    "the pipeline refused a batch; retrying it"
                );
                // Not retried while stopping: it stays uncommitted.
                may_retry.then_some(unit)
            }
            Outcome::Answered(Err(e)) => {
                m.refused.inc_by(items);
                tracing::error!(
                    receiver = %self.receiver,
                    topic = %self.topic,
                    partition = self.partition,
                    offset = unit.first,
                    items,
                    error = %e,
                    "the pipeline refused a batch for good; it is dropped"
                );
                pending.remove(&unit.first);
                None
            }
            Outcome::Abandoned => None,
        }
    }
}

/// Adds `kafka.header.<name>` resource attributes for the extracted headers.
fn with_headers(mut batch: Batch, headers: &[(String, String)]) -> Batch {
    if headers.is_empty() {
        return batch;
    }
    let attrs: Vec<KeyValue> = headers
        .iter()
        .map(|(k, v)| KeyValue {
            key: format!("kafka.header.{k}"),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        })
        .collect();
    let add = |resource: &mut Option<Resource>| {
        let r = resource.get_or_insert_with(Resource::default);
        for kv in &attrs {
            r.attributes.retain(|a| a.key != kv.key);
            r.attributes.push(kv.clone());
        }
    };
    {
        let mut p = batch.make_mut();
        match &mut *p {
            Payload::Traces(r) => r
                .resource_spans
                .iter_mut()
                .for_each(|x| add(&mut x.resource)),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter_mut()
                .for_each(|x| add(&mut x.resource)),
            Payload::Logs(r) => r
                .resource_logs
                .iter_mut()
                .for_each(|x| add(&mut x.resource)),
        }
    }
    batch
}
