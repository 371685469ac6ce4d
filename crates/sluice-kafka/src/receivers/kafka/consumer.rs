//! The consumer thread: one OS thread per receiver polls librdkafka (which
//! also runs the rebalance callbacks there, where they may block while
//! partitions drain), forwards each message to its partition's task within
//! the in-flight budget, pauses partitions that cannot take more, and
//! commits the offsets the partition tasks publish.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use regex::Regex;
use sluice_core::{
    BuildContext, ComponentError, ComponentId, Lifecycle, Signal, SignalConsumers, Telemetry,
};
use sluice_pdata::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::config::KafkaReceiverConfig;
use super::partition::{Counters, Fetched, PartitionTask, Progress, Route, DRAIN_TIMEOUT};

const LAG_METRIC: &str = "sluice_kafka_receiver_lag";

/// Topic -> route, by name or by pattern.
struct Routes {
    exact: HashMap<String, Arc<Route>>,
    patterns: Vec<(Regex, Arc<Route>)>,
}

impl Routes {
    fn get(&self, topic: &str) -> Option<Arc<Route>> {
        self.exact.get(topic).cloned().or_else(|| {
            self.patterns
                .iter()
                .find(|(re, _)| re.is_match(topic))
                .map(|(_, r)| r.clone())
        })
    }
}

/// One assigned partition, as the consumer thread sees it.
struct Assigned {
    tx: mpsc::UnboundedSender<Fetched>,
    /// Fetched messages waiting for budget (or for a retry to end); while
    /// there are any, the partition is paused in librdkafka.
    backlog: VecDeque<Fetched>,
    progress: Arc<Progress>,
    /// The last offset this process committed.
    committed: i64,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    lag: Gauge,
}

type Key = (String, i32);

/// State shared by the consumer thread and the librdkafka callbacks (which
/// run on that thread, inside `poll`).
struct State {
    id: ComponentId,
    runtime: tokio::runtime::Handle,
    routes: Routes,
    counters: Arc<Counters>,
    commit_failed: Counter,
    telemetry: Arc<Telemetry>,
    headers: Vec<String>,
    budget: Arc<Semaphore>,
    budget_kib: usize,
    partitions: Mutex<HashMap<Key, Assigned>>,
}

fn tpl_of(keys: &[(Key, Option<i64>)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in keys {
        let r = match offset {
            Some(o) => tpl.add_partition_offset(topic, *partition, Offset::Offset(*o)),
            None => {
                tpl.add_partition(topic, *partition);
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::warn!(topic, partition, error = %e, "cannot list a partition");
        }
    }
    tpl
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Assigned>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lag_labels<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
        partition: &'a str,
    ) -> [(&'a str, &'a str); 3] {
        [("receiver", id), ("topic", topic), ("partition", partition)]
    }

    /// Starts a task for each newly assigned partition.
    fn assign(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let mut parts = self.lock();
        let mut resume = Vec::new();
        for e in tpl.elements() {
            let key = (e.topic().to_string(), e.partition());
            if parts.contains_key(&key) {
                continue;
            }
            let Some(route) = self.routes.get(&key.0) else {
                tracing::error!(receiver = %self.id, topic = %key.0, "assigned a topic no signal is configured for; its messages are not read");
                continue;
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let progress = Arc::new(Progress::new());
            let stop = CancellationToken::new();
            let task = PartitionTask {
                receiver: self.id.clone(),
                topic: key.0.clone(),
                partition: key.1,
                route,
                rx,
                progress: progress.clone(),
                stop: stop.clone(),
                counters: self.counters.clone(),
            };
            let id = self.id.to_string();
            let p = key.1.to_string();
            let lag = self.telemetry.gauge(
                LAG_METRIC,
                "Messages after the consumer group's committed offset, per partition this receiver reads",
                &self.lag_labels(&id, &key.0, &p),
            );
            tracing::info!(receiver = %self.id, topic = %key.0, partition = key.1, "partition assigned");
            resume.push((key.clone(), None));
            parts.insert(
                key,
                Assigned {
                    tx,
                    backlog: VecDeque::new(),
                    progress,
                    committed: -1,
                    stop,
                    task: Some(self.runtime.spawn(task.run())),
                    lag,
                },
            );
        }
        drop(parts);
        // A partition paused under an earlier assignment starts unpaused.
        if !resume.is_empty() {
            let _ = consumer.resume(&tpl_of(&resume));
        }
    }

    /// Stops the tasks of `keys`, waits for their batches in the pipeline
    /// (bounded), and commits what they reached.
    fn release(&self, consumer: &BaseConsumer<Ctx>, keys: Vec<Key>) {
        let mut stopping = Vec::new();
        {
            let mut parts = self.lock();
            for key in keys {
                if let Some(a) = parts.remove(&key) {
                    a.stop.cancel();
                    stopping.push((key, a));
                }
            }
        }
        if stopping.is_empty() {
            return;
        }
        // The tasks drain concurrently; each wait below is bounded by theirs.
        for (_, a) in &mut stopping {
            if let Some(task) = a.task.take() {
                let _ = self.runtime.block_on(async {
                    tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), task).await
                });
            }
        }
        let offsets: Vec<(Key, Option<i64>)> = stopping
            .iter()
            .filter_map(|(k, a)| {
                let c = a.progress.commit.load(Ordering::Acquire);
                (c >= 0).then(|| (k.clone(), Some(c)))
            })
            .collect();
        let id = self.id.to_string();
        for ((topic, partition), _) in &stopping {
            let p = partition.to_string();
            self.telemetry
                .remove_gauge(LAG_METRIC, &self.lag_labels(&id, topic, &p));
            tracing::info!(receiver = %self.id, topic, partition, "partition released");
        }
        if offsets.is_empty() {
            return;
        }
        if consumer.assignment_lost() {
            tracing::warn!(receiver = %self.id, "the group membership was lost; offsets of released partitions cannot be committed (their messages will be read again)");
            return;
        }
        if let Err(e) = consumer.commit(&tpl_of(&offsets), CommitMode::Sync) {
            self.commit_failed.inc();
            tracing::warn!(receiver = %self.id, error = %e, "committing the offsets of released partitions failed (their messages will be read again)");
        }
    }

    /// Hands a fetched message to its partition's task, or keeps it and
    /// pauses the partition when there is no room.
    fn dispatch(&self, consumer: &BaseConsumer<Ctx>, m: &BorrowedMessage<'_>) {
        let key = (m.topic().to_string(), m.partition());
        let mut parts = self.lock();
        let Some(a) = parts.get_mut(&key) else {
            tracing::debug!(receiver = %self.id, topic = %key.0, partition = key.1, "message of a partition not assigned here; left for its owner");
            return;
        };
        let mut headers = Vec::new();
        if !self.headers.is_empty() {
            if let Some(hs) = m.headers() {
                for h in hs.iter() {
                    if self.headers.iter().any(|n| n == h.key) {
                        let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        headers.push((h.key.to_string(), v.into_owned()));
                    }
                }
            }
        }
        let fetched = Fetched {
            offset: m.offset(),
            value: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            headers,
            permit: None,
        };
        let was_paused = !a.backlog.is_empty();
        a.backlog.push_back(fetched);
        self.forward(&key.0, key.1, a);
        if !was_paused && !a.backlog.is_empty() {
            drop(parts);
            let _ = consumer.pause(&tpl_of(&[(key, None)]));
        }
    }

    /// Forwards a partition's backlog while budget allows and its task is
    /// not retrying.
    fn forward(&self, topic: &str, partition: i32, a: &mut Assigned) {
        while !a.progress.blocked.load(Ordering::Acquire) {
            let Some(f) = a.backlog.front() else { break };
            let kib = f.value.len().div_ceil(1024).clamp(1, self.budget_kib) as u32;
            let Ok(permit) = self.budget.clone().try_acquire_many_owned(kib) else {
                break;
            };
            let Some(mut f) = a.backlog.pop_front() else {
                break;
            };
            f.permit = Some(permit);
            if a.tx.send(f).is_err() {
                // The task has ended (the partition is being released).
                tracing::debug!(receiver = %self.id, topic, partition, "partition task gone");
                a.backlog.clear();
                break;
            }
        }
    }

    /// Retries the backlogs of paused partitions; resumes those emptied.
    fn flush(&self, consumer: &BaseConsumer<Ctx>) -> bool {
        let mut resume = Vec::new();
        let mut any_paused = false;
        {
            let mut parts = self.lock();
            for ((topic, partition), a) in parts.iter_mut() {
                if a.backlog.is_empty() {
                    continue;
                }
                self.forward(topic, *partition, a);
                if a.backlog.is_empty() {
                    resume.push(((topic.clone(), *partition), None));
                } else {
                    any_paused = true;
                }
            }
        }
        if !resume.is_empty() {
            let _ = consumer.resume(&tpl_of(&resume));
        }
        any_paused
    }

    /// Commits the offsets the tasks reached since the last commit.
    fn commit(&self, consumer: &BaseConsumer<Ctx>) {
        let mut offsets = Vec::new();
        for (key, a) in self.lock().iter_mut() {
            let c = a.progress.commit.load(Ordering::Acquire);
            if c >= 0 && c > a.committed {
                a.committed = c;
                offsets.push((key.clone(), Some(c)));
            }
        }
        if offsets.is_empty() {
            return;
        }
        if let Err(e) = consumer.commit(&tpl_of(&offsets), CommitMode::Async) {
            self.commit_failed.inc();
            tracing::warn!(receiver = %self.id, error = %e, "committing offsets failed; retried at the next interval");
            for (key, _) in offsets {
                if let Some(a) = self.lock().get_mut(&key) {
                    a.committed = -1;
                }
            }
        }
    }

    fn update_lag(&self, stats: &Statistics) {
        let parts = self.lock();
        for ((topic, partition), a) in parts.iter() {
            let Some(p) = stats
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
            else {
                continue;
            };
            // What this process will commit next is the group's offset a
            // moment from now; before it has taken anything, librdkafka's
            // own figure (from the committed offset) is the one there is.
            let ours = a.progress.commit.load(Ordering::Acquire);
            let lag = if p.hi_offset >= 0 && ours >= 0 {
                (p.hi_offset - ours).max(0)
            } else if p.consumer_lag >= 0 {
                p.consumer_lag
            } else {
                continue;
            };
            a.lag.set(lag);
        }
    }
}

/// The librdkafka context: rebalances, commits, statistics, errors.
struct Ctx {
    state: Arc<State>,
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: Statistics) {
        self.state.update_lag(&statistics);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(receiver = %self.state.id, error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let keys = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.state.release(consumer, keys);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(receiver = %self.state.id, error = %e, "consumer group rebalance error")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.state.assign(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.state.commit_failed.inc();
            tracing::warn!(receiver = %self.state.id, error = %e, "an offset commit failed");
        }
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    done: tokio::sync::oneshot::Receiver<()>,
    thread: JoinHandle<()>,
}

/// The `kafka` receiver.
pub struct KafkaReceiver {
    id: ComponentId,
    config: ClientConfig,
    subscription: Vec<String>,
    routes: Mutex<Option<Routes>>,
    counters: Arc<Counters>,
    commit_failed: Counter,
    telemetry: Arc<Telemetry>,
    headers: Vec<String>,
    budget_kib: usize,
    commit_interval: Duration,
    running: Mutex<Option<Running>>,
}

impl KafkaReceiver {
    /// Builds the receiver from a validated config; nothing connects until
    /// [`Lifecycle::start`].
    pub fn new(
        ctx: &BuildContext,
        config: &KafkaReceiverConfig,
        consumers: &SignalConsumers,
    ) -> Result<KafkaReceiver, String> {
        let mut exact: HashMap<String, (String, Arc<Route>)> = HashMap::new();
        let mut patterns = Vec::new();
        let mut subscription = Vec::new();
        for signal in Signal::ALL {
            let Some(consumer) = consumers.get(signal) else {
                continue;
            };
            let (enc_key, encoding) = config.encoding(signal);
            encoding
                .check(signal)
                .map_err(|m| format!("{enc_key}: {m}"))?;
            let (key, topics) = config.topics(signal);
            let route = Arc::new(Route {
                signal,
                encoding,
                consumer: consumer.clone(),
                metrics: ctx.telemetry.receiver(&ctx.id, "kafka", signal),
            });
            for t in topics {
                if t.starts_with('^') {
                    let re = Regex::new(&t).map_err(|e| format!("{key}: {t:?}: {e}"))?;
                    patterns.push((re, route.clone()));
                } else if let Some((other_key, other)) = exact.get(&t) {
                    return Err(format!(
                        "topic {t:?} is configured for both {} ({other_key}) and {signal} ({key}); a topic carries one signal",
                        other.signal
                    ));
                } else {
                    exact.insert(t.clone(), (key.clone(), route.clone()));
                }
                if !subscription.contains(&t) {
                    subscription.push(t);
                }
            }
        }
        if subscription.is_empty() {
            return Err("no pipeline takes data from this receiver".to_string());
        }
        let mut c = config.client().client_config(
            &[],
            &[
                ("group.id", config.group_id.clone()),
                ("enable.auto.commit", "false".to_string()),
                ("enable.auto.offset.store", "false".to_string()),
                (
                    "auto.offset.reset",
                    match config.initial_offset {
                        super::InitialOffset::Latest => "latest",
                        super::InitialOffset::Earliest => "earliest",
                    }
                    .to_string(),
                ),
                (
                    "partition.assignment.strategy",
                    config.group_rebalance_strategy.as_str().to_string(),
                ),
                ("statistics.interval.ms", "5000".to_string()),
                ("enable.partition.eof", "false".to_string()),
            ],
        );
        c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        c.create_native_config().map_err(|e| e.to_string())?;
        let id = ctx.id.to_string();
        let t = &ctx.telemetry;
        let labels = [("receiver", id.as_str())];
        Ok(KafkaReceiver {
            id: ctx.id.clone(),
            config: c,
            subscription,
            routes: Mutex::new(Some(Routes {
                exact: exact.into_iter().map(|(k, (_, r))| (k, r)).collect(),
                patterns,
            })),
            counters: Arc::new(Counters {
                messages: t.counter(
                    "sluice_kafka_receiver_messages",
                    "Kafka messages taken from the brokers",
                    &labels,
                ),
                invalid: t.counter(
                    "sluice_kafka_receiver_invalid_messages",
                    "Kafka messages skipped because they are not valid for their topic's encoding",
                    &labels,
                ),
            }),
            commit_failed: t.counter(
                "sluice_kafka_receiver_commit_failures",
                "Offset commits that failed (their messages may be read again)",
                &labels,
            ),
            telemetry: ctx.telemetry.clone(),
            headers: if config.header_extraction.extract_headers {
                config.header_extraction.headers.clone()
            } else {
                Vec::new()
            },
            budget_kib: config.max_in_flight_mib.saturating_mul(1024).max(1),
            commit_interval: config.commit_interval,
            running: Mutex::new(None),
        })
    }
}

impl Drop for KafkaReceiver {
    /// A receiver dropped without `shutdown` (another component failed to
    /// start) still stops its thread, which leaves the group.
    fn drop(&mut self) {
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            r.stop.store(true, Ordering::Release);
        }
    }
}

/// The consumer thread's loop.
fn poll_loop(
    consumer: BaseConsumer<Ctx>,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    commit_interval: Duration,
) {
    let mut last_commit = Instant::now();
    let mut any_paused = false;
    let mut last_error: Option<(String, Instant)> = None;
    while !stop.load(Ordering::Acquire) {
        let wait = if any_paused {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(wait) {
            Some(Ok(m)) => state.dispatch(&consumer, &m),
            Some(Err(e)) => {
                // The same error (an unknown topic, say) repeats with every
                // metadata refresh: log it once a minute.
                let text = e.to_string();
                let repeat = last_error
                    .as_ref()
                    .is_some_and(|(t, at)| *t == text && at.elapsed() < Duration::from_secs(60));
                if !repeat {
                    tracing::warn!(receiver = %state.id, error = %text, "Kafka consumer error");
                    last_error = Some((text, Instant::now()));
                }
            }
            None => {}
        }
        any_paused = state.flush(&consumer);
        if last_commit.elapsed() >= commit_interval {
            state.commit(&consumer);
            last_commit = Instant::now();
        }
    }
    // Stop every partition (their batches in the pipeline are answered,
    // bounded), commit, then leave the group.
    let keys: Vec<Key> = state.lock().keys().cloned().collect();
    state.release(&consumer, keys);
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(receiver = %state.id, "Kafka consumer closed");
}

#[async_trait]
impl Lifecycle for KafkaReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                ComponentError::new(format!("receiver {} was already started", self.id))
            })?;
        let state = Arc::new(State {
            id: self.id.clone(),
            runtime: tokio::runtime::Handle::current(),
            routes,
            counters: self.counters.clone(),
            commit_failed: self.commit_failed.clone(),
            telemetry: self.telemetry.clone(),
            headers: self.headers.clone(),
            budget: Arc::new(Semaphore::new(self.budget_kib)),
            budget_kib: self.budget_kib,
            partitions: Mutex::new(HashMap::new()),
        });
        let consumer: BaseConsumer<Ctx> = self
            .config
            .create_with_context(Ctx {
                state: state.clone(),
            })
            .map_err(|e| {
                ComponentError::new(format!(
                    "receiver {}: cannot create the Kafka consumer: {e}",
                    self.id
                ))
            })?;
        let topics: Vec<&str> = self.subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            ComponentError::new(format!(
                "receiver {}: cannot subscribe to {topics:?}: {e}",
                self.id
            ))
        })?;
        tracing::info!(receiver = %self.id, topics = ?self.subscription, "Kafka consumer subscribed");
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (s, interval) = (stop.clone(), self.commit_interval);
        let thread = std::thread::Builder::new()
            .name(format!("kafka-{}", self.id))
            .spawn(move || {
                poll_loop(consumer, state, s, interval);
                let _ = done_tx.send(());
            })
            .map_err(|e| {
                ComponentError::new(format!(
                    "receiver {}: cannot start its thread: {e}",
                    self.id
                ))
            })?;
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Running { stop, done, thread });
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        running.stop.store(true, Ordering::Release);
        let finished = running.done.await;
        let joined = tokio::task::spawn_blocking(move || running.thread.join()).await;
        match (finished, joined) {
            (Ok(()), Ok(Ok(()))) => Ok(()),
            _ => Err(ComponentError::new(format!(
                "receiver {}: the Kafka consumer thread failed",
                self.id
            ))),
        }
    }
}
