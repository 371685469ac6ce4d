//! One task per shard being read: GetRecords in a loop, each non-empty
//! result translated into one batch and handed to the pipeline, and the
//! shard's checkpoint moved only over results the pipeline accepted.
//!
//! - Up to `max_in_flight` results may be in the pipeline at once. The
//!   checkpoint is the last sequence number of the longest run of results,
//!   from the oldest, that were all accepted (or dropped for good: invalid
//!   records, permanent refusals, all counted). It is written every
//!   `checkpoint_interval`, when the shard ends, and when the reader stops.
//! - A refused (retryable) batch is sent again with backoff (100 ms doubling
//!   to 5 s) until accepted; it keeps its slot, so at most
//!   `max_in_flight - 1` results go ahead of it.
//! - A shard that is caught up (a short result, or `MillisBehindLatest` 0)
//!   is read again after `idle_time_between_reads`; one that is behind
//!   after 200 ms (Kinesis allows five GetRecords per second per shard).
//! - A closed shard is read to its end (`NextShardIterator` absent); once
//!   everything is accepted its checkpoint becomes `SHARD_END`, which lets
//!   its children be read.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use aws_sdk_kinesis::Client;
use futures::stream::{FuturesUnordered, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{Batch, ComponentId, ConsumerRef, Signal, Telemetry};
use sluice_pdata::{haystack, Bytes, Payload};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decode::{decode, Decoded, Encoding};
use super::kpl::{self, Deaggregated, PlainReason};
use super::shards::{Checkpoint, ShardInfo, StartAt};
use super::store::{SaveError, ShardStore};
use super::validate::{ValidationCounters, Validator};

/// How long a stopping reader waits for its batches in the pipeline.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two GetRecords of one shard.
const MIN_READ_GAP: Duration = Duration::from_millis(200);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

fn backoff(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_MAX)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Counters shared by every shard of a receiver.
pub(crate) struct Counters {
    pub records: Counter,
    pub user_records: Counter,
    pub aggregated: Counter,
    /// Records with the KPL magic bytes that were still taken as plain:
    /// [too short, bad digest, bad protobuf].
    pub kpl_fallback: [Counter; 3],
    pub invalid_records: Counter,
    pub validation: ValidationCounters,
    pub read_errors: Counter,
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
}

impl Counters {
    pub(crate) fn register(t: &Telemetry, receiver: &str, stream: &str) -> Counters {
        let l = [("receiver", receiver), ("stream", stream)];
        let fallback = |reason: &str| {
            t.counter(
                "sluice_kinesis_receiver_kpl_fallback_records",
                "Records starting with the KPL magic bytes taken as plain records, by reason",
                &[
                    ("receiver", receiver),
                    ("stream", stream),
                    ("reason", reason),
                ],
            )
        };
        Counters {
            records: t.counter(
                "sluice_kinesis_receiver_records",
                "Kinesis records read",
                &l,
            ),
            user_records: t.counter(
                "sluice_kinesis_receiver_user_records",
                "User records read (after KPL de-aggregation)",
                &l,
            ),
            aggregated: t.counter(
                "sluice_kinesis_receiver_aggregated_records",
                "Kinesis records that were KPL aggregates",
                &l,
            ),
            kpl_fallback: [
                fallback("too_short"),
                fallback("bad_digest"),
                fallback("bad_protobuf"),
            ],
            invalid_records: t.counter(
                "sluice_kinesis_receiver_invalid_records",
                "User records dropped because they are not valid for the encoding",
                &l,
            ),
            validation: ValidationCounters::register(t, receiver),
            read_errors: t.counter(
                "sluice_kinesis_receiver_read_errors",
                "Failed GetShardIterator or GetRecords calls (retried)",
                &l,
            ),
            checkpoints: t.counter(
                "sluice_kinesis_receiver_checkpoints",
                "Checkpoints written",
                &l,
            ),
            checkpoint_failures: t.counter(
                "sluice_kinesis_receiver_checkpoint_failures",
                "Checkpoint writes that failed (retried at the next interval)",
                &l,
            ),
        }
    }
}

/// What every reader of a receiver shares.
pub(crate) struct Shared {
    pub receiver: ComponentId,
    pub stream: String,
    pub client: Client,
    pub consumer: ConsumerRef,
    pub encoding: Encoding,
    pub validator: Validator,
    pub max_records: i32,
    pub idle: Duration,
    pub checkpoint_interval: Duration,
    pub max_in_flight: usize,
    pub counters: Counters,
    pub metrics: ReceiverMetrics,
    pub telemetry: Arc<Telemetry>,
}

/// Why a reader returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Read to the end, everything accepted, `SHARD_END` stored; the
    /// children the last GetRecords named (`ChildShards`).
    ShardEnd(Vec<ShardInfo>),
    /// Stopped by the receiver (final checkpoint written if possible).
    Stopped,
    /// This instance no longer holds the shard's lease.
    Lost,
}

impl Shared {
    /// Translates one GetRecords result into a batch (none when nothing in
    /// it is valid), counting what it drops.
    pub(crate) fn translate(&self, records: &[Record]) -> Option<Batch> {
        let c = &self.counters;
        c.records.inc_by(records.len() as u64);
        let mut spans: Vec<haystack::Span> = Vec::new();
        let mut batches: Vec<Batch> = Vec::new();
        for record in records {
            let d = kpl::deaggregate(record.data().as_ref());
            match &d {
                Deaggregated::Aggregated(_) => {
                    c.aggregated.inc();
                }
                Deaggregated::Plain(_, PlainReason::NoMagic) => {}
                Deaggregated::Plain(_, r) => {
                    let i = match r {
                        PlainReason::TooShort => 0,
                        PlainReason::BadDigest => 1,
                        _ => 2,
                    };
                    c.kpl_fallback[i].inc();
                }
            }
            c.user_records.inc_by(d.len() as u64);
            d.for_each(|data| self.decode_one(record, data, &mut spans, &mut batches));
        }
        if self.encoding.is_haystack() {
            self.validator.apply(&mut spans, &c.validation);
            if spans.is_empty() {
                return None;
            }
            return Some(Batch::new(Payload::Traces(
                haystack::otlp_from_owned_spans(spans),
            )));
        }
        if batches.is_empty() {
            return None;
        }
        // Every part holds traces, so concat cannot refuse.
        Batch::concat(Signal::Traces, batches).ok()
    }

    fn decode_one(
        &self,
        record: &Record,
        data: &[u8],
        spans: &mut Vec<haystack::Span>,
        batches: &mut Vec<Batch>,
    ) {
        let result = if self.encoding == Encoding::OtlpProto {
            // Kept encoded: validated and counted in one walk, forwarded as is.
            Batch::from_encoded(Signal::Traces, Bytes::copy_from_slice(data))
                .map(|b| batches.push(b))
                .map_err(|e| e.to_string())
        } else {
            match decode(self.encoding, data) {
                Ok(Decoded::Spans(s)) => {
                    spans.extend(s);
                    Ok(())
                }
                Ok(Decoded::Otlp(r)) => {
                    batches.push(Batch::new(Payload::Traces(r)));
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(error) = result {
            self.counters.invalid_records.inc();
            tracing::warn!(
                receiver = %self.receiver,
                stream = %self.stream,
                sequence_number = record.sequence_number(),
                encoding = self.encoding.as_str(),
                %error,
                "dropping a record that is not valid for the encoding"
            );
        }
    }
}

/// One GetRecords result on its way through the pipeline.
struct Slot {
    index: u64,
    last_sequence: String,
    /// Arrival time (ms) of its last record, for the processing lag.
    arrival_ms: Option<i64>,
    done: bool,
}

enum Delivered {
    /// Accepted, or given up for good (counted): the checkpoint may pass it.
    Settled,
    /// A retry cut short by the stop signal: the checkpoint stays before it.
    Abandoned,
}

type Flight = Pin<Box<dyn Future<Output = (u64, Delivered)> + Send>>;

/// A running shard's gauges, removed when the reader returns.
struct ShardGauges {
    telemetry: Arc<Telemetry>,
    labels: [(String, String); 3],
    behind: Gauge,
    lag: Gauge,
}

const BEHIND: &str = "sluice_kinesis_receiver_millis_behind_latest";
const LAG: &str = "sluice_kinesis_receiver_processing_lag_milliseconds";

impl ShardGauges {
    fn new(s: &Shared, shard: &str) -> ShardGauges {
        let labels = [
            ("receiver".to_string(), s.receiver.to_string()),
            ("stream".to_string(), s.stream.clone()),
            ("shard".to_string(), shard.to_string()),
        ];
        let pairs = labels.each_ref().map(|(k, v)| (k.as_str(), v.as_str()));
        ShardGauges {
            behind: s.telemetry.gauge(
                BEHIND,
                "How far the last GetRecords of a shard was behind the tip of the stream (ms)",
                &pairs,
            ),
            lag: s.telemetry.gauge(
                LAG,
                "Time from a record's arrival in Kinesis to the pipeline accepting it, for the last accepted result of a shard (ms)",
                &pairs,
            ),
            telemetry: s.telemetry.clone(),
            labels,
        }
    }
}

impl Drop for ShardGauges {
    fn drop(&mut self) {
        let pairs = self
            .labels
            .each_ref()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        self.telemetry.remove_gauge(BEHIND, &pairs);
        self.telemetry.remove_gauge(LAG, &pairs);
    }
}

/// Reads one shard until it ends, the lease is lost, or `stop`.
pub(crate) async fn read_shard(
    shared: Arc<Shared>,
    shard: String,
    start: StartAt,
    store: ShardStore,
    stop: CancellationToken,
) -> Ended {
    let mut reader = Reader {
        gauges: ShardGauges::new(&shared, &shard),
        s: shared,
        shard,
        store,
        stop,
        accepted: None,
        saved: None,
        children: Vec::new(),
    };
    reader.run(start).await
}

struct Reader {
    s: Arc<Shared>,
    shard: String,
    store: ShardStore,
    stop: CancellationToken,
    gauges: ShardGauges,
    /// Last sequence number up to which everything was settled.
    accepted: Option<String>,
    /// Last sequence number stored.
    saved: Option<String>,
    /// The shard's children, from the GetRecords answer that ended it.
    children: Vec<ShardInfo>,
}

enum ReadError {
    Expired,
    Other(String),
}

impl Reader {
    async fn run(&mut self, start: StartAt) -> Ended {
        let mut start = start;
        if start == StartAt::Latest {
            // Remember when reading began, so a crash before the first
            // checkpoint resumes here rather than at a later tip.
            let at = now_ms();
            match self
                .store
                .save(&self.shard, &Checkpoint::StartedAt(at))
                .await
            {
                Ok(()) => {}
                Err(SaveError::Lost) => return Ended::Lost,
                Err(SaveError::Failed(e)) => {
                    self.s.counters.checkpoint_failures.inc();
                    tracing::warn!(receiver = %self.s.receiver, shard = %self.shard, error = %e,
                        "could not store the start time of a shard read from LATEST; a crash before its first checkpoint would resume at the tip");
                }
            }
        }
        let Some(mut iterator) = self.iterator(&start).await else {
            return Ended::Stopped;
        };
        let mut flights: FuturesUnordered<Flight> = FuturesUnordered::new();
        let mut window: VecDeque<Slot> = VecDeque::new();
        let mut next_index = 0u64;
        let mut end_reached = false;
        let mut next_read = Instant::now();
        let mut errors = 0u32;
        let mut tick = tokio::time::interval(self.s.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            if end_reached && flights.is_empty() {
                return self.finish_shard().await;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                Some((index, delivered)) = flights.next(), if !flights.is_empty() => {
                    self.settle(&mut window, index, delivered);
                }
                _ = tick.tick() => {
                    if self.checkpoint().await == Err(SaveError::Lost) {
                        return Ended::Lost;
                    }
                }
                _ = tokio::time::sleep_until(next_read),
                    if !end_reached && flights.len() < self.s.max_in_flight => {
                    match self.get_records(&iterator).await {
                        Ok((records, next, behind)) => {
                            errors = 0;
                            if let Some(b) = behind {
                                self.gauges.behind.set(b);
                            }
                            let short = records.len() < self.s.max_records as usize;
                            if let Some(last) = records.last() {
                                let slot = Slot {
                                    index: next_index,
                                    last_sequence: last.sequence_number().to_string(),
                                    arrival_ms: last.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()),
                                    done: false,
                                };
                                start = StartAt::After(slot.last_sequence.clone());
                                next_index += 1;
                                match self.s.translate(&records) {
                                    Some(batch) => {
                                        window.push_back(slot);
                                        flights.push(self.send(next_index - 1, batch));
                                    }
                                    None => {
                                        window.push_back(Slot { done: true, ..slot });
                                        self.advance(&mut window);
                                    }
                                }
                            }
                            match next {
                                Some(n) => iterator = n,
                                None => end_reached = true,
                            }
                            let caught_up = short || behind == Some(0);
                            next_read = Instant::now() + if caught_up { self.s.idle.max(MIN_READ_GAP) } else { MIN_READ_GAP };
                        }
                        Err(e) => {
                            self.s.counters.read_errors.inc();
                            let wait = backoff(errors);
                            errors += 1;
                            match e {
                                ReadError::Expired => {
                                    tracing::debug!(receiver = %self.s.receiver, shard = %self.shard, "shard iterator expired; getting a new one");
                                }
                                ReadError::Other(m) => {
                                    tracing::warn!(receiver = %self.s.receiver, stream = %self.s.stream, shard = %self.shard, error = %m, retry_in = ?wait, "GetRecords failed");
                                }
                            }
                            // A fresh iterator after the last record read.
                            match self.iterator(&start).await {
                                Some(i) => iterator = i,
                                None => break,
                            }
                            next_read = Instant::now() + wait;
                        }
                    }
                }
            }
        }
        // Stopping: batches in the pipeline get DRAIN_TIMEOUT to be
        // answered, then what was accepted is stored.
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        while !flights.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(receiver = %self.s.receiver, shard = %self.shard, batches = flights.len(),
                        "batches still unanswered by the pipeline when the shard was released; they will be read again");
                    break;
                }
                Some((index, delivered)) = flights.next() => self.settle(&mut window, index, delivered),
            }
        }
        match self.checkpoint().await {
            Err(SaveError::Lost) => Ended::Lost,
            _ => Ended::Stopped,
        }
    }

    fn settle(&mut self, window: &mut VecDeque<Slot>, index: u64, delivered: Delivered) {
        if let Delivered::Abandoned = delivered {
            return;
        }
        if let Some(front) = window.front() {
            let pos = (index - front.index) as usize;
            if let Some(slot) = window.get_mut(pos) {
                slot.done = true;
            }
        }
        self.advance(window);
    }

    fn advance(&mut self, window: &mut VecDeque<Slot>) {
        let mut last = None;
        while window.front().is_some_and(|s| s.done) {
            last = window.pop_front();
        }
        if let Some(slot) = last {
            if let Some(arrival) = slot.arrival_ms {
                self.gauges.lag.set((now_ms() - arrival).max(0));
            }
            self.accepted = Some(slot.last_sequence);
        }
    }

    /// Stores the accepted position if it moved.
    async fn checkpoint(&mut self) -> Result<(), SaveError> {
        let Some(seq) = self.accepted.clone() else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(&seq) {
            return Ok(());
        }
        match self
            .store
            .save(&self.shard, &Checkpoint::Sequence(seq.clone()))
            .await
        {
            Ok(()) => {
                self.s.counters.checkpoints.inc();
                self.saved = Some(seq);
                Ok(())
            }
            Err(SaveError::Failed(e)) => {
                self.s.counters.checkpoint_failures.inc();
                tracing::warn!(receiver = %self.s.receiver, shard = %self.shard, error = %e,
                    "checkpoint write failed; retried at the next interval");
                Err(SaveError::Failed(e))
            }
            Err(SaveError::Lost) => {
                tracing::info!(receiver = %self.s.receiver, shard = %self.shard,
                    "shard lease lost to another instance; stopped reading it");
                Err(SaveError::Lost)
            }
        }
    }

    /// The shard is read to its end and everything settled.
    async fn finish_shard(&mut self) -> Ended {
        let mut attempt = 0;
        loop {
            match self.store.save(&self.shard, &Checkpoint::ShardEnd).await {
                Ok(()) => {
                    self.s.counters.checkpoints.inc();
                    tracing::info!(receiver = %self.s.receiver, stream = %self.s.stream, shard = %self.shard,
                        "shard read to its end");
                    return Ended::ShardEnd(std::mem::take(&mut self.children));
                }
                Err(SaveError::Lost) => return Ended::Lost,
                Err(SaveError::Failed(e)) => {
                    self.s.counters.checkpoint_failures.inc();
                    tracing::warn!(receiver = %self.s.receiver, shard = %self.shard, error = %e,
                        "could not store SHARD_END; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                        _ = self.stop.cancelled() => {
                            let _ = self.checkpoint().await;
                            return Ended::Stopped;
                        }
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn send(&self, index: u64, batch: Batch) -> Flight {
        let consumer = self.s.consumer.clone();
        let stop = self.stop.clone();
        let shared = self.s.clone();
        let shard = self.shard.clone();
        Box::pin(async move {
            let items = batch.items() as u64;
            let mut attempt = 0;
            loop {
                match consumer.consume(batch.clone()).await {
                    Ok(()) => {
                        shared.metrics.accepted.inc_by(items);
                        return (index, Delivered::Settled);
                    }
                    Err(e) if e.is_retryable() => {
                        shared.metrics.refused.inc_by(items);
                        tracing::debug!(receiver = %shared.receiver, shard = %shard, error = %e,
                            "the pipeline refused a batch; retrying it");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff(attempt)) => {}
                            _ = stop.cancelled() => return (index, Delivered::Abandoned),
                        }
                        attempt += 1;
                    }
                    Err(e) => {
                        shared.metrics.refused.inc_by(items);
                        tracing::error!(receiver = %shared.receiver, shard = %shard, items, error = %e,
                            "the pipeline refused a batch for good; it is dropped");
                        return (index, Delivered::Settled);
                    }
                }
            }
        })
    }

    /// A shard iterator at `start`, retried with backoff; `None` when
    /// stopped first.
    async fn iterator(&self, start: &StartAt) -> Option<String> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .s
                .client
                .get_shard_iterator()
                .stream_name(&self.s.stream)
                .shard_id(&self.shard);
            req = match start {
                StartAt::After(seq) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
                StartAt::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                StartAt::At(t) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(*t),
            };
            let result = tokio::select! {
                r = req.send() => r,
                _ = self.stop.cancelled() => return None,
            };
            match result {
                Ok(out) => {
                    if let Some(it) = out.shard_iterator() {
                        return Some(it.to_string());
                    }
                    tracing::warn!(receiver = %self.s.receiver, shard = %self.shard,
                        "GetShardIterator returned no iterator");
                }
                Err(e) => {
                    self.s.counters.read_errors.inc();
                    tracing::warn!(receiver = %self.s.receiver, stream = %self.s.stream, shard = %self.shard,
                        error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "GetShardIterator failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = self.stop.cancelled() => return None,
            }
            attempt += 1;
        }
    }

    async fn get_records(
        &mut self,
        iterator: &str,
    ) -> Result<(Vec<Record>, Option<String>, Option<i64>), ReadError> {
        let result = self
            .s
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(self.s.max_records)
            .send()
            .await;
        match result {
            Ok(out) => {
                let next = out.next_shard_iterator().map(str::to_string);
                let behind = out.millis_behind_latest();
                if next.is_none() {
                    self.children = out
                        .child_shards()
                        .iter()
                        .map(|c| ShardInfo {
                            id: c.shard_id().to_string(),
                            parents: c.parent_shards().to_vec(),
                            closed: false,
                        })
                        .collect();
                }
                Ok((out.records, next, behind))
            }
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_expired_iterator_exception())
                {
                    Err(ReadError::Expired)
                } else {
                    Err(ReadError::Other(
                        aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
                    ))
                }
            }
        }
    }
}
