//! The running receiver: builds the AWS client, then one coordinator task
//! lists the stream's shards, decides which to read (see [`super::shards`]),
//! takes leases when configured (see [`super::leases`]) and runs one
//! [`super::reader`] task per shard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::config::{BehaviorVersion, Region};
use aws_sdk_kinesis::Client;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_core::{
    BuildContext, BuildError, ComponentError, ComponentId, ConsumerRef, Lifecycle, Storage,
};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::config::KinesisReceiverConfig;
use super::leases::{choose, LeaseTable};
use super::reader::{read_shard, Counters, Ended, Shared};
use super::shards::{plan, plan_all, Checkpoint, Plan, ShardInfo};
use super::store::{LocalStore, ShardStore};
use super::validate::Validator;

/// The store name of receiver `id` in the storage extension.
fn store_name(id: &ComponentId, stream: &str) -> String {
    sluice_core::file_storage::storage_safe(&format!("receiver_{id}_{stream}"))
}

/// Builds the Kinesis client: the standard credential chain, the region
/// from the config or the SDK's chain, an optional role to assume and an
/// optional endpoint.
pub(crate) async fn client(config: &KinesisReceiverConfig) -> Result<Client, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = &config.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let base = loader.load().await;
    if base.region().is_none() {
        return Err(
            "region: not set, and the SDK's region chain (AWS_REGION, the profile) has none"
                .to_string(),
        );
    }
    let mut b = aws_sdk_kinesis::config::Builder::from(&base);
    if let Some(role) = &config.role_arn {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .session_name("sluice")
            .configure(&base)
            .build()
            .await;
        b = b.credentials_provider(provider);
    }
    if let Some(e) = config.endpoint() {
        b = b.endpoint_url(e);
    }
    Ok(Client::from_conf(b.build()))
}

/// Every shard of the stream.
async fn list_shards(client: &Client, stream: &str) -> Result<HashMap<String, ShardInfo>, String> {
    let mut out = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let req = client.list_shards();
        let req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_name(stream),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string())?;
        for s in resp.shards() {
            let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            let closed = s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some();
            out.insert(
                s.shard_id().to_string(),
                ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                    closed,
                },
            );
        }
        match resp.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(out),
        }
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The `kinesis` receiver.
pub struct KinesisReceiver {
    id: ComponentId,
    config: KinesisReceiverConfig,
    consumer: ConsumerRef,
    ctx_telemetry: Arc<sluice_core::Telemetry>,
    storage: Option<Arc<dyn Storage>>,
    running: Mutex<Option<Running>>,
}

impl KinesisReceiver {
    pub(crate) fn new(
        ctx: &BuildContext,
        config: &KinesisReceiverConfig,
        consumer: ConsumerRef,
    ) -> Result<KinesisReceiver, BuildError> {
        let storage = match &config.storage {
            Some(s) => {
                let ext = ComponentId::parse(s)
                    .map_err(|e| BuildError::new(format!("receiver {}: storage: {e}", ctx.id)))?;
                Some(
                    ctx.extensions.storage(&ext).map_err(|e| {
                        BuildError::new(format!("receiver {}: storage: {e}", ctx.id))
                    })?,
                )
            }
            None => None,
        };
        Ok(KinesisReceiver {
            id: ctx.id.clone(),
            config: config.clone(),
            consumer,
            ctx_telemetry: ctx.telemetry.clone(),
            storage,
            running: Mutex::new(None),
        })
    }

    fn err(&self, m: impl std::fmt::Display) -> ComponentError {
        ComponentError::new(format!("receiver {}: {m}", self.id))
    }
}

#[async_trait]
impl Lifecycle for KinesisReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        let c = &self.config;
        let client = client(c).await.map_err(|e| self.err(e))?;
        // One listing now, so a wrong stream name stops the start with a
        // clear error; other failures (network) are retried in the
        // background.
        if let Err(e) = list_shards(&client, &c.stream_name).await {
            if e.contains("ResourceNotFound") {
                return Err(self.err(format!(
                    "stream_name: stream {:?} not found: {e}",
                    c.stream_name
                )));
            }
            tracing::warn!(receiver = %self.id, stream = %c.stream_name, error = %e,
                "cannot list the stream's shards yet; retrying in the background");
        }
        let mode = match &c.leases {
            Some(l) => {
                let application = l
                    .application
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", c.stream_name, self.id));
                let owner = l.owner.clone().unwrap_or_else(default_owner);
                let table = LeaseTable::connect(
                    &l.postgres,
                    &l.table,
                    &application,
                    &owner,
                    l.lease_duration,
                )
                .await
                .map_err(|e| self.err(format!("leases::postgres: {e}")))?;
                tracing::info!(receiver = %self.id, owner = %owner, application = %application,
                    "kinesis shard leases in PostgreSQL");
                Mode::Leases {
                    table: Arc::new(table),
                    duration: l.lease_duration,
                }
            }
            None => {
                let kv = match &self.storage {
                    Some(s) => Some(
                        s.open_store(&store_name(&self.id, &c.stream_name))
                            .map_err(|e| self.err(format!("storage: {e}")))?,
                    ),
                    None => {
                        tracing::warn!(receiver = %self.id,
                            "no storage: Kinesis checkpoints are kept in memory only, and a restart begins at initial_position");
                        None
                    }
                };
                Mode::Local(Arc::new(LocalStore::new(kv)))
            }
        };
        let t = &self.ctx_telemetry;
        let id = self.id.to_string();
        let shared = Arc::new(Shared {
            receiver: self.id.clone(),
            stream: c.stream_name.clone(),
            client,
            consumer: self.consumer.clone(),
            encoding: c.encoding,
            validator: Validator::new(c.validation.clone()),
            max_records: c.max_records,
            idle: c.idle_time_between_reads,
            checkpoint_interval: c.checkpoint_interval,
            max_in_flight: c.max_in_flight,
            counters: Counters::register(t, &id, &c.stream_name),
            metrics: t.receiver(&self.id, "kinesis", sluice_core::Signal::Traces),
            telemetry: t.clone(),
        });
        let labels = [
            ("receiver", id.as_str()),
            ("stream", c.stream_name.as_str()),
        ];
        let stop = CancellationToken::new();
        let coordinator = Coordinator {
            shared,
            config: c.clone(),
            mode,
            stop: stop.clone(),
            readers: HashMap::new(),
            tasks: JoinSet::new(),
            shards_reading: t.gauge(
                "sluice_kinesis_receiver_shards_reading",
                "Shards this instance is reading now",
                &labels,
            ),
            leases_taken: t.counter(
                "sluice_kinesis_receiver_leases_taken",
                "Shard leases this instance took (free, expired or rebalanced)",
                &labels,
            ),
            leases_lost: t.counter(
                "sluice_kinesis_receiver_leases_lost",
                "Shard leases this instance lost to another",
                &labels,
            ),
            child_shards: t.counter(
                "sluice_kinesis_receiver_child_shards",
                "Child shards learned from the ChildShards of a shard's last GetRecords",
                &labels,
            ),
        };
        let task = tokio::spawn(coordinator.run());
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { stop, task });
        tracing::info!(receiver = %self.id, stream = %c.stream_name, "kinesis receiver started");
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = running {
            r.stop.cancel();
            let _ = r.task.await;
        }
        Ok(())
    }
}

fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

enum Mode {
    Local(Arc<LocalStore>),
    Leases {
        table: Arc<LeaseTable>,
        duration: Duration,
    },
}

struct ReaderHandle {
    stop: CancellationToken,
    /// The lease counter, in lease mode.
    counter: Option<i64>,
}

struct Coordinator {
    shared: Arc<Shared>,
    config: KinesisReceiverConfig,
    mode: Mode,
    stop: CancellationToken,
    readers: HashMap<String, ReaderHandle>,
    tasks: JoinSet<(String, Ended)>,
    shards_reading: Gauge,
    leases_taken: Counter,
    leases_lost: Counter,
    child_shards: Counter,
}

impl Coordinator {
    async fn run(mut self) {
        let sync_every = self.config.shard_sync_interval;
        let lease_every = match &self.mode {
            Mode::Leases { duration, .. } => *duration / 3,
            Mode::Local(_) => sync_every,
        };
        let mut listed: HashMap<String, ShardInfo> = HashMap::new();
        let mut last_sync: Option<tokio::time::Instant> = None;
        let mut last_renew_ok = tokio::time::Instant::now();
        let mut resync = true;
        // Consecutive failed listings: the wait before the next one doubles
        // from 1 s up to shard_sync_interval while nothing is listed.
        let mut list_failures = 0u32;
        loop {
            let now = tokio::time::Instant::now();
            if resync || last_sync.is_none_or(|t| now >= t + sync_every) {
                match list_shards(&self.shared.client, &self.config.stream_name).await {
                    Ok(l) => {
                        listed = l;
                        last_sync = Some(now);
                        resync = false;
                        list_failures = 0;
                    }
                    Err(e) => {
                        self.shared.counters.read_errors.inc();
                        tracing::warn!(receiver = %self.shared.receiver, stream = %self.config.stream_name,
                            error = %e, "ListShards failed; retrying");
                        last_sync = Some(now);
                        list_failures = list_failures.saturating_add(1);
                    }
                }
            }
            if !listed.is_empty() {
                match &self.mode {
                    Mode::Local(store) => {
                        let store = store.clone();
                        self.assign_local(&store, &listed).await;
                    }
                    Mode::Leases { table, duration } => {
                        let (table, duration) = (table.clone(), *duration);
                        if self.renew(&table).await {
                            last_renew_ok = tokio::time::Instant::now();
                        } else if last_renew_ok.elapsed() > duration {
                            // Cannot confirm the leases: another instance
                            // may hold them by now.
                            tracing::warn!(receiver = %self.shared.receiver,
                                "lease renewals failing for longer than lease_duration; stopping every shard");
                            for r in self.readers.values() {
                                r.stop.cancel();
                            }
                        }
                        if let Err(e) = self.assign_leases(&table, &listed).await {
                            tracing::warn!(receiver = %self.shared.receiver, error = %e, "lease round failed");
                        }
                    }
                }
            }
            self.shards_reading.set(self.readers.len() as i64);
            let wait = if listed.is_empty() {
                Duration::from_secs(1)
                    .saturating_mul(1 << list_failures.saturating_sub(1).min(10))
                    .min(sync_every.max(Duration::from_secs(1)))
            } else {
                lease_every.min(sync_every)
            };
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok((shard, ended)) = done {
                        if let Ended::ShardEnd(children) = &ended {
                            // Plan the children at once from ChildShards;
                            // without them (an older server), list again.
                            resync |= children.is_empty();
                            for c in children {
                                self.child_shards.inc();
                                listed.entry(c.id.clone()).or_insert_with(|| c.clone());
                            }
                        }
                        self.reader_ended(&shard, ended).await;
                    }
                }
            }
        }
        // Stopping: every reader drains and stores its checkpoint; then the
        // leases are given back so other instances take over at once.
        for r in self.readers.values() {
            r.stop.cancel();
        }
        while let Some(done) = self.tasks.join_next().await {
            if let Ok((shard, ended)) = done {
                self.reader_ended(&shard, ended).await;
            }
        }
        self.shards_reading.set(0);
        if let Mode::Leases { table, .. } = &self.mode {
            table.close().await;
        }
    }

    /// Bookkeeping when a reader returns.
    async fn reader_ended(&mut self, shard: &str, ended: Ended) {
        let handle = self.readers.remove(shard);
        if let (
            Mode::Leases { table, .. },
            Some(ReaderHandle {
                counter: Some(c), ..
            }),
        ) = (&self.mode, &handle)
        {
            if ended == Ended::Lost {
                self.leases_lost.inc();
            } else if let Err(e) = table.release(shard, *c).await {
                tracing::warn!(receiver = %self.shared.receiver, shard, error = %e,
                    "could not release a lease; it expires by itself");
            }
        }
    }

    fn spawn(
        &mut self,
        shard: &str,
        start: super::shards::StartAt,
        store: ShardStore,
        counter: Option<i64>,
    ) {
        let stop = self.stop.child_token();
        tracing::info!(receiver = %self.shared.receiver, stream = %self.config.stream_name, shard, start = ?start,
            "reading shard");
        self.readers.insert(
            shard.to_string(),
            ReaderHandle {
                stop: stop.clone(),
                counter,
            },
        );
        let shared = self.shared.clone();
        let id = shard.to_string();
        self.tasks.spawn(async move {
            let ended = read_shard(shared, id.clone(), start, store, stop).await;
            (id, ended)
        });
    }

    async fn assign_local(&mut self, store: &Arc<LocalStore>, listed: &HashMap<String, ShardInfo>) {
        let ids: Vec<String> = listed.keys().cloned().collect();
        let checkpoints = store.load(&ids).await;
        let (skipped, read) = plan_all(
            listed,
            &checkpoints,
            self.config.initial_position,
            self.config.initial_timestamp(),
        );
        for s in skipped {
            if let Err(e) = store.save(&s, &Checkpoint::Skipped).await {
                tracing::warn!(receiver = %self.shared.receiver, shard = %s, error = ?e, "could not store SKIPPED");
            }
        }
        for (shard, start) in read {
            if !self.readers.contains_key(&shard) {
                self.spawn(&shard, start, ShardStore::Local(store.clone()), None);
            }
        }
    }

    /// Renews held leases, stopping readers whose lease is gone. `false`
    /// when the database could not be asked.
    async fn renew(&mut self, table: &Arc<LeaseTable>) -> bool {
        let mut ok = true;
        let held: Vec<(String, i64)> = self
            .readers
            .iter()
            .filter_map(|(s, r)| r.counter.map(|c| (s.clone(), c)))
            .collect();
        for (shard, counter) in held {
            match table.renew(&shard, counter).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(receiver = %self.shared.receiver, shard = %shard,
                        "shard lease taken by another instance; stopping its reader");
                    if let Some(r) = self.readers.get(&shard) {
                        r.stop.cancel();
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(receiver = %self.shared.receiver, shard = %shard, error = %e, "lease renewal failed");
                }
            }
        }
        ok
    }

    async fn assign_leases(
        &mut self,
        table: &Arc<LeaseTable>,
        listed: &HashMap<String, ShardInfo>,
    ) -> Result<(), String> {
        if self.stop.is_cancelled() {
            return Ok(());
        }
        let mut ids: Vec<String> = listed.keys().cloned().collect();
        ids.sort();
        table.ensure(&ids).await.map_err(|e| e.to_string())?;
        let rows = table.snapshot().await.map_err(|e| e.to_string())?;
        let checkpoints = checkpoints_of(&rows);
        let initial = self.config.initial_position;
        let at = self.config.initial_timestamp();
        // Shards needing a reader (or a SKIPPED mark, which is also written
        // under the lease).
        let readable: Vec<String> = ids
            .iter()
            .filter(|id| {
                matches!(
                    plan(&listed[*id], listed, &checkpoints, initial, at),
                    Plan::Read(_) | Plan::Skip
                )
            })
            .cloned()
            .collect();
        for (shard, seen) in choose(&rows, &readable, table.owner()) {
            if self.readers.contains_key(&shard) {
                continue;
            }
            let Some((counter, cp)) = table
                .acquire(&shard, seen)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            self.leases_taken.inc();
            let mut known = checkpoints.clone();
            match cp.as_deref().map(|s| (s, Checkpoint::decode(s))) {
                Some((_, Some(c))) => {
                    known.insert(shard.clone(), c);
                }
                Some((raw, None)) => {
                    tracing::error!(receiver = %self.shared.receiver, shard = %shard, value = raw,
                        "ignoring an unreadable checkpoint in the lease table");
                    known.remove(&shard);
                }
                None => {
                    known.remove(&shard);
                }
            }
            let store = ShardStore::Lease {
                table: table.clone(),
                counter,
            };
            match plan(&listed[&shard], listed, &known, initial, at) {
                Plan::Read(start) => self.spawn(&shard, start, store, Some(counter)),
                Plan::Skip => {
                    let _ = store.save(&shard, &Checkpoint::Skipped).await;
                    let _ = table.release(&shard, counter).await;
                }
                Plan::Finished | Plan::Waiting => {
                    let _ = table.release(&shard, counter).await;
                }
            }
        }
        Ok(())
    }
}

fn checkpoints_of(rows: &[super::leases::LeaseRow]) -> HashMap<String, Checkpoint> {
    rows.iter()
        .filter_map(|r| {
            let c = Checkpoint::decode(r.checkpoint.as_deref()?)?;
            Some((r.shard.clone(), c))
        })
        .collect()
}
