//! The `filelog` receiver: tails files matched by globs and turns each line
//! into one log record, with the OpenTelemetry Collector's `filelog` keys
//! for the common subset.
//!
//! # What it does
//!
//! A reader thread expands `include` (minus `exclude`) every `poll_interval`,
//! tells files apart by their first `fingerprint_size` bytes (not by path),
//! reads what is new in 256 KiB chunks, splits lines with `memchr`, and
//! encodes them straight into the protobuf form of an
//! `ExportLogsServiceRequest` (no per-record structs or allocations): body =
//! the line without `\n` / `\r\n` as a string, `observed_time_unix_nano` =
//! when the chunk was read, attributes `log.file.name` (default) and
//! `log.file.path` (optional), resource and scope empty unless `resource` /
//! `attributes` are configured. Batches of `max_batch_size` lines (or 4 MiB)
//! go to the committer task, which hands them to the pipeline with up to
//! `max_batches_in_flight` outstanding.
//!
//! # Guarantees
//!
//! * **At least once.** A file's committed offset moves past a line only
//!   when the batch holding it, and every batch before it, was accepted by
//!   the pipeline (`consume` returned `Ok`). With `storage`, the committed
//!   offsets are written to the storage extension after each advance
//!   (coalesced), and a restart resumes from them: a crash re-sends at most
//!   the batches that were in flight, a clean shutdown re-sends nothing.
//! * **Refusals.** A retryable refusal is retried with exponential backoff
//!   (`retry_on_failure`), the same batch again, for as long as it takes by
//!   default; reading pauses once `max_batches_in_flight` batches are
//!   outstanding, so nothing is buffered without bound. A permanent refusal
//!   (or a retryable one past `max_elapsed_time`, or with retries disabled)
//!   drops the batch, counted in `sluice_receiver_filelog_dropped_log_records`.
//! * **Rotation.** A file renamed (within the globs or out of them) is read
//!   to its end through the handle kept from the previous poll, then the new
//!   file at the path is read from its start. Truncation in place
//!   (copytruncate) is seen as a size below the offset, or as changed leading
//!   bytes; the file is then read from its start. A file deleted while open
//!   is read to its end. Files that appear after start-up are read from their
//!   start; `start_at` only applies to files found by the first poll, and
//!   not at all when stored offsets were found (a file without a stored
//!   offset then appeared while sluice was down, and is read whole).
//! * **Partial lines.** A last line without newline is held (its bytes are
//!   re-read, not copied) until the newline comes, or sent as it is once the
//!   file has not grown for `force_flush_period` (default 500ms, as the
//!   Collector; 0 waits for the newline forever).
//! * **Long lines** are cut at `max_log_size` (at a UTF-8 character
//!   boundary); the rest of the line is skipped, and the cut is counted in
//!   `sluice_receiver_filelog_truncated_lines`.
//! * **Invalid UTF-8** is replaced by U+FFFD (the line is kept) and counted
//!   in `sluice_receiver_filelog_invalid_utf8_lines`; `encoding: nop` sends
//!   bodies as bytes instead.
//! * `otelcol_receiver_{accepted,refused}_log_records{transport="file"}`
//!   count records per attempt; `sluice_receiver_filelog_lines_read` counts
//!   records read.
//!
//! # Limits and decisions
//!
//! * No `multiline`, `header`, `compression`, `ordering_criteria`,
//!   `delete_after_read`, `exclude_older_than`, resolved-name attributes or
//!   operators other than one `json_parser` (to attributes): those keys are
//!   refused as unknown.
//! * Batches of several files interleave; lines of one file keep their order
//!   except after a refusal, when later batches may be accepted before the
//!   retried one.
//! * Rotation between two polls that renames a file away *and* the new file
//!   receives more than the old one's leading bytes before the next poll is
//!   handled; a file truncated and rewritten past its old offset, with the
//!   same leading bytes, within one poll interval cannot be told from a file
//!   that grew (as with the Collector).
//! * Globs need absolute paths; `**` does not follow links to directories.

mod commit;
mod config;
mod encode;
mod glob;
mod reader;
mod state;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{
    BuildContext, BuildError, ComponentError, ComponentId, ConsumerRef, Lifecycle, Receiver,
    ReceiverFactory, Registry, Signal, SignalConsumers, Stability, Storage,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{ByteSize, Config, Encoding, Operator, RetryConfig, StartAt};

use commit::{Committed, Committer};
use reader::{Reader, ReaderMetrics, Settings};

/// The configured type name.
pub const TYPE: &str = "filelog";

/// Batches the reader may have finished ahead of the committer.
const CHANNEL_CAPACITY: usize = 2;

/// Factory of the `filelog` receiver.
pub struct FilelogReceiverFactory;

impl ReceiverFactory for FilelogReceiverFactory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Logs]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &Config,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        let consumer = consumers
            .logs
            .ok_or_else(|| BuildError::new(format!("receiver {}: no logs pipeline", ctx.id)))?;
        Ok(Arc::new(FilelogReceiver::new(&ctx, config, consumer)?))
    }
}

/// Registers the `filelog` receiver.
pub fn register(r: &mut Registry) {
    r.receiver(FilelogReceiverFactory);
}

struct Running {
    stop_flag: Arc<AtomicBool>,
    stop: CancellationToken,
    abort: CancellationToken,
    reader: std::thread::JoinHandle<()>,
    committer: JoinHandle<()>,
    persister: Option<JoinHandle<()>>,
}

/// The running receiver.
pub struct FilelogReceiver {
    id: ComponentId,
    config: Config,
    consumer: ConsumerRef,
    storage: Option<Arc<dyn Storage>>,
    metrics: ReceiverMetrics,
    reader_metrics: ReaderMetrics,
    dropped: Counter,
    store_errors: Counter,
    running: Mutex<Option<Running>>,
}

/// The store name of receiver `id`: `receiver_filelog[_name]`.
fn store_name(id: &ComponentId) -> String {
    sluice_core::file_storage::storage_safe(&format!("receiver_{id}"))
}

impl FilelogReceiver {
    pub fn new(
        ctx: &BuildContext,
        config: &Config,
        consumer: ConsumerRef,
    ) -> Result<FilelogReceiver, BuildError> {
        Settings::new(config).map_err(BuildError::new)?;
        let storage = match &config.storage {
            Some(s) => {
                let ext =
                    ComponentId::parse(s).map_err(|e| BuildError::new(format!("storage: {e}")))?;
                Some(
                    ctx.extensions
                        .storage(&ext)
                        .map_err(|e| BuildError::new(format!("storage: {e}")))?,
                )
            }
            None => None,
        };
        let t = &ctx.telemetry;
        let id = ctx.id.to_string();
        let l = [("receiver", id.as_str())];
        let c = |name: &str, help: &str| t.counter(name, help, &l);
        let reader_metrics = ReaderMetrics {
            lines: c(
                "sluice_receiver_filelog_lines_read",
                "Log records read from files",
            ),
            truncated: c(
                "sluice_receiver_filelog_truncated_lines",
                "Lines cut at max_log_size",
            ),
            invalid_utf8: c(
                "sluice_receiver_filelog_invalid_utf8_lines",
                "Lines whose invalid UTF-8 was replaced by U+FFFD",
            ),
            parse_errors: c(
                "sluice_receiver_filelog_parse_errors",
                "Lines the json_parser operator could not parse",
            ),
            dropped: c(
                "sluice_receiver_filelog_dropped_lines",
                "Lines dropped by an operator (json_parser on_error: drop)",
            ),
            read_errors: c(
                "sluice_receiver_filelog_read_errors",
                "Files that could not be opened or read",
            ),
        };
        Ok(FilelogReceiver {
            id: ctx.id.clone(),
            config: config.clone(),
            consumer,
            storage,
            metrics: t.receiver(&ctx.id, "file", Signal::Logs),
            reader_metrics,
            dropped: c(
                "sluice_receiver_filelog_dropped_log_records",
                "Log records given up on after the pipeline refused them",
            ),
            store_errors: c(
                "sluice_receiver_filelog_store_errors",
                "Failed writes of the read offsets to the storage extension",
            ),
            running: Mutex::new(None),
        })
    }

    fn with_running<T>(&self, f: impl FnOnce(&mut Option<Running>) -> T) -> T {
        let mut g = self.running.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

#[async_trait]
impl Lifecycle for FilelogReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        if self.with_running(|r| r.is_some()) {
            return Err(ComponentError::new(format!(
                "receiver {} is already running",
                self.id
            )));
        }
        let settings = Settings::new(&self.config)
            .map_err(|e| ComponentError::new(format!("receiver {}: {e}", self.id)))?;
        let (store, mut restored) = match &self.storage {
            Some(storage) => {
                let store = storage.open_store(&store_name(&self.id)).map_err(|e| {
                    ComponentError::new(format!("receiver {}: storage: {e}", self.id))
                })?;
                let files = commit::load(&self.id, store.as_ref())
                    .map_err(|e| ComponentError::new(format!("receiver {}: {e}", self.id)))?;
                (Some(store), files)
            }
            None => (None, Vec::new()),
        };
        for (i, f) in restored.iter_mut().enumerate() {
            f.key = i as u64 + 1;
        }
        if !restored.is_empty() {
            tracing::info!(receiver = %self.id, files = restored.len(), "resuming from stored offsets");
        }
        let committed: Committed = Arc::new(Mutex::new(
            restored
                .iter()
                .map(|f| (f.key, f.clone()))
                .collect::<BTreeMap<_, _>>(),
        ));

        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let reader = Reader::new(
            self.id.to_string(),
            settings,
            restored,
            tx,
            stop_flag.clone(),
            self.reader_metrics.clone(),
        );
        let reader_id = self.id.clone();
        let reader = std::thread::Builder::new()
            .name(format!("filelog-{}", self.id))
            .spawn(move || {
                // A bug in the reader must not end reading silently.
                let run = std::panic::AssertUnwindSafe(move || reader.run());
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!(receiver = %reader_id, "the filelog reader failed; this receiver reads no more until restarted");
                }
            })
            .map_err(|e| {
                ComponentError::new(format!(
                    "receiver {}: cannot start the reader: {e}",
                    self.id
                ))
            })?;

        let (changed_tx, changed_rx) = watch::channel(0u64);
        let persister = store.map(|store| {
            tokio::spawn(commit::persist(
                self.id.clone(),
                store,
                committed.clone(),
                changed_rx,
                self.store_errors.clone(),
            ))
        });
        let committer = Committer {
            id: self.id.clone(),
            consumer: self.consumer.clone(),
            metrics: self.metrics.clone(),
            dropped: self.dropped.clone(),
            retry: self.config.retry_on_failure.clone(),
            max_in_flight: self.config.max_batches_in_flight,
            committed,
            changed: changed_tx,
        };
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let committer = tokio::spawn(committer.run(rx, stop.clone(), abort.clone()));
        tracing::info!(receiver = %self.id, include = ?self.config.include, "filelog receiver started");
        self.with_running(|r| {
            *r = Some(Running {
                stop_flag,
                stop,
                abort,
                reader,
                committer,
                persister,
            })
        });
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let Some(running) = self.with_running(Option::take) else {
            return Ok(());
        };
        // If the service's deadline drops this future, stop retrying at once.
        let _abort_on_drop = running.abort.clone().drop_guard();
        running.stop_flag.store(true, Ordering::Release);
        running.reader.thread().unpark();
        running.stop.cancel();
        let mut failure = None;
        if let Err(e) = running.committer.await {
            failure = Some(format!("the committer failed: {e}"));
        }
        if let Some(p) = running.persister {
            if let Err(e) = p.await {
                failure = Some(format!("the offset writer failed: {e}"));
            }
        }
        let reader = running.reader;
        if tokio::task::spawn_blocking(move || reader.join())
            .await
            .is_err()
        {
            failure = Some("the reader thread could not be joined".to_string());
        }
        tracing::info!(receiver = %self.id, "filelog receiver stopped");
        failure.map_or(Ok(()), |f| {
            Err(ComponentError::new(format!("receiver {}: {f}", self.id)))
        })
    }
}
