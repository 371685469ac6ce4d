use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sluice_pdata::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_pdata::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_pdata::{Batch, Payload, Signal};

use super::*;
use crate::component::{BuildContext, ComponentId, Extensions, Health, Kind};
use crate::persistent_queue::{QueueConfig, Recovery};
use crate::telemetry::{MetricsLevel, Telemetry};

/// A sender that answers from a script, then succeeds; records what it got.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Result<(), SendError>>>,
    calls: AtomicUsize,
    sent: Mutex<Vec<Vec<String>>>,
    /// Once the script is used up: fail for ever instead of succeeding.
    down_for_ever: bool,
}

impl Script {
    fn new(answers: Vec<Result<(), SendError>>) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(answers.into()),
            ..Default::default()
        })
    }
    fn down() -> Arc<Script> {
        Arc::new(Script {
            down_for_ever: true,
            ..Default::default()
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn names(&self) -> Vec<Vec<String>> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sender for Script {
    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fallback = if self.down_for_ever {
            unavailable()
        } else {
            Ok(())
        };
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(fallback);
        if answer.is_ok() || matches!(answer, Err(SendError::PartialSuccess { .. })) {
            let Payload::Traces(r) = batch.payload() else {
                panic!("traces only")
            };
            let names = r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect();
            self.sent.lock().unwrap().push(names);
        }
        answer
    }
}

fn spans(prefix: &str, n: usize) -> Batch {
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("{prefix}{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn ctx(t: &Arc<Telemetry>, extensions: Extensions) -> BuildContext {
    BuildContext {
        id: ComponentId::new("test", None),
        kind: Kind::Exporter,
        pipeline: None,
        signal: None,
        signals: vec![Signal::Traces],
        telemetry: t.clone(),
        health: Health::default(),
        extensions,
    }
}

fn fast_retry(max_elapsed_ms: u64) -> RetrySettings {
    RetrySettings {
        enabled: true,
        initial_interval: Duration::from_millis(100),
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_interval: Duration::from_secs(1),
        max_elapsed_time: Duration::from_millis(max_elapsed_ms),
    }
}

fn counter(t: &Telemetry, name: &str) -> u64 {
    let text = t.encode();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn unavailable() -> Result<(), SendError> {
    Err(SendError::retryable("down"))
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_with_backoff_until_sent() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![unavailable(), unavailable(), unavailable()]);
    let exp = build(
        &ctx(&t, Extensions::default()),
        script.clone(),
        &QueueSettings::default(),
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    exp.consume(spans("a", 4)).await.unwrap();
    settle().await;
    assert_eq!(script.calls(), 1);
    tokio::time::advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(script.calls(), 2, "first retry after 100ms");
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert_eq!(script.calls(), 3, "second after 200ms more");
    tokio::time::advance(Duration::from_millis(400)).await;
    settle().await;
    assert_eq!(script.calls(), 4);
    assert_eq!(script.names(), vec![vec!["a0", "a1", "a2", "a3"]]);
    assert_eq!(counter(&t, "otelcol_exporter_sent_spans_total"), 4);
    assert_eq!(counter(&t, "sluice_exporter_retries_total"), 3);
    assert_eq!(counter(&t, "otelcol_exporter_send_failed_spans_total"), 0);
    exp.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_and_exhausted_retries_are_counted_not_retried() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![
        Err(SendError::Permanent("bad".into())),
        unavailable(),
        unavailable(),
        unavailable(),
    ]);
    let q = QueueSettings {
        num_consumers: 1,
        ..QueueSettings::default()
    };
    let exp = build(
        &ctx(&t, Extensions::default()),
        script.clone(),
        &q,
        &fast_retry(250),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    exp.consume(spans("p", 2)).await.unwrap();
    settle().await;
    assert_eq!(script.calls(), 1, "a permanent error is not retried");
    exp.consume(spans("r", 3)).await.unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    // 100ms then 200ms fit in 250ms? 100 fits, 100+200 does not: 2 attempts.
    assert_eq!(script.calls(), 3);
    assert_eq!(counter(&t, "otelcol_exporter_send_failed_spans_total"), 5);
    assert_eq!(counter(&t, "otelcol_exporter_sent_spans_total"), 0);
    exp.shutdown().await.unwrap();
}

#[tokio::test]
async fn partial_success_counts_rejected_items_and_does_not_retry() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![Err(SendError::PartialSuccess {
        rejected: 2,
        message: "no".into(),
    })]);
    let exp = build(
        &ctx(&t, Extensions::default()),
        script.clone(),
        &QueueSettings::default(),
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    exp.consume(spans("x", 5)).await.unwrap();
    exp.shutdown().await.unwrap();
    assert_eq!(script.calls(), 1);
    assert_eq!(counter(&t, "sluice_exporter_rejected_spans_total"), 2);
    assert_eq!(counter(&t, "otelcol_exporter_sent_spans_total"), 3);
}

#[tokio::test]
async fn items_sizer_refuses_what_does_not_fit_and_counts_it() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![]);
    let q = QueueSettings {
        queue_size: 10,
        sizer: Sizer::Items,
        ..QueueSettings::default()
    };
    // Not started: nothing drains the queue.
    let exp = build(
        &ctx(&t, Extensions::default()),
        script,
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.consume(spans("a", 6)).await.unwrap();
    exp.consume(spans("b", 4)).await.unwrap();
    let err = exp.consume(spans("c", 1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConsumeError::Retryable {
                overloaded: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        counter(&t, "otelcol_exporter_enqueue_failed_spans_total"),
        1
    );
    assert_eq!(counter(&t, "otelcol_exporter_queue_size"), 10);
    assert_eq!(counter(&t, "otelcol_exporter_queue_capacity"), 10);
}

#[tokio::test]
async fn bytes_sizer_bounds_the_encoded_size_held() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let a = spans("a", 6);
    let b = spans("b", 4);
    let (la, lb) = (a.encoded_len(), b.encoded_len());
    let q = QueueSettings {
        queue_size: la + lb,
        sizer: Sizer::Bytes,
        ..QueueSettings::default()
    };
    // Not started: nothing drains the queue.
    let exp = build(
        &ctx(&t, Extensions::default()),
        Script::new(vec![]),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.consume(a).await.unwrap();
    // Held encoded or decoded, a batch weighs its encoding.
    let encoded = Batch::from_encoded(Signal::Traces, b.to_bytes()).unwrap();
    exp.consume(encoded).await.unwrap();
    let err = exp.consume(spans("c", 1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(
        counter(&t, "otelcol_exporter_enqueue_failed_spans_total"),
        1
    );
    assert_eq!(counter(&t, "otelcol_exporter_queue_size"), (la + lb) as u64);
}

#[tokio::test]
async fn block_on_overflow_waits_for_room_instead_of_refusing() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![]);
    let q = QueueSettings {
        queue_size: 1,
        block_on_overflow: true,
        ..QueueSettings::default()
    };
    let exp = build(
        &ctx(&t, Extensions::default()),
        script.clone(),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.consume(spans("a", 1)).await.unwrap();
    let exp2 = exp.clone();
    let waiting = tokio::spawn(async move { exp2.consume(spans("b", 1)).await });
    settle().await;
    assert!(
        !waiting.is_finished(),
        "the second batch waits while the queue is full"
    );
    exp.start().await.unwrap();
    waiting.await.unwrap().unwrap();
    exp.shutdown().await.unwrap();
    assert_eq!(script.names(), vec![vec!["a0"], vec!["b0"]]);
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_the_caller_waits_for_retries_and_gets_the_outcome() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let script = Script::new(vec![
        unavailable(),
        unavailable(),
        unavailable(),
        unavailable(),
    ]);
    let q = QueueSettings {
        enabled: false,
        ..QueueSettings::default()
    };
    let exp = build(
        &ctx(&t, Extensions::default()),
        script.clone(),
        &q,
        &fast_retry(250),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    let err = exp.consume(spans("a", 1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(script.calls(), 2);
    let script2 = Script::new(vec![Err(SendError::Permanent("no".into()))]);
    let exp = build(
        &ctx(&t, Extensions::default()),
        script2,
        &q,
        &fast_retry(250),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    let err = exp.consume(spans("a", 1)).await.unwrap_err();
    assert!(matches!(err, ConsumeError::Permanent(_)), "{err:?}");
}

/// A storage extension over a temp directory.
struct TempStorage(std::path::PathBuf);

impl crate::component::Storage for TempStorage {
    fn open_queue(&self, name: &str) -> Result<(PersistentQueue, Recovery), ComponentError> {
        PersistentQueue::open(QueueConfig {
            dir: self.0.join(name),
            max_bytes: 1 << 20,
            segment_bytes: 1 << 16,
            fsync: false,
        })
        .map_err(ComponentError::new)
    }
}

struct StorageExt(Arc<TempStorage>);

#[async_trait]
impl Lifecycle for StorageExt {}

impl crate::component::Extension for StorageExt {
    fn storage(&self) -> Option<Arc<dyn crate::component::Storage>> {
        Some(self.0.clone())
    }
}

fn with_storage(dir: &std::path::Path) -> Extensions {
    let mut map: std::collections::BTreeMap<ComponentId, Arc<dyn crate::component::Extension>> =
        Default::default();
    map.insert(
        ComponentId::new("file_storage", None),
        Arc::new(StorageExt(Arc::new(TempStorage(dir.to_path_buf())))),
    );
    Extensions::new(map)
}

#[tokio::test(start_paused = true)]
async fn persistent_queue_keeps_unsent_batches_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let q = QueueSettings {
        storage: Some("file_storage".into()),
        num_consumers: 1,
        ..QueueSettings::default()
    };
    // First run: the backend is down; three batches are accepted (on disk).
    let t = Telemetry::new(MetricsLevel::Normal);
    let down = Script::down();
    let exp = build(
        &ctx(&t, with_storage(tmp.path())),
        down.clone(),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    for p in ["a", "b", "c"] {
        exp.consume(spans(p, 2)).await.unwrap();
    }
    settle().await;
    assert!(counter(&t, "sluice_exporter_persistent_queue_bytes") > 0);
    assert_eq!(counter(&t, "otelcol_exporter_queue_size"), 3);
    // Shutdown does not wait out the retry delay: the batches stay on disk.
    exp.shutdown().await.unwrap();
    assert!(down.names().is_empty());
    drop(exp);

    // Second run: the backend is up; everything is sent, in order.
    let t = Telemetry::new(MetricsLevel::Normal);
    let up = Script::new(vec![]);
    let exp = build(
        &ctx(&t, with_storage(tmp.path())),
        up.clone(),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    for _ in 0..100 {
        if up.names().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    exp.shutdown().await.unwrap();
    assert_eq!(
        up.names(),
        vec![vec!["a0", "a1"], vec!["b0", "b1"], vec!["c0", "c1"]]
    );
    assert_eq!(counter(&t, "otelcol_exporter_queue_size"), 0);
    drop(exp);

    // Third run: nothing left to replay.
    let t = Telemetry::new(MetricsLevel::Normal);
    let again = Script::new(vec![]);
    let exp = build(
        &ctx(&t, with_storage(tmp.path())),
        again.clone(),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    exp.start().await.unwrap();
    settle().await;
    exp.shutdown().await.unwrap();
    assert!(
        again.names().is_empty(),
        "acknowledged batches are not replayed"
    );
}

#[tokio::test]
async fn a_missing_storage_extension_is_a_build_error() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let q = QueueSettings {
        storage: Some("file_storage/none".into()),
        ..QueueSettings::default()
    };
    let err = build(
        &ctx(&t, Extensions::default()),
        Script::new(vec![]),
        &q,
        &fast_retry(0),
        DEFAULT_TIMEOUT,
    )
    .err()
    .expect("no such storage");
    assert!(err.to_string().contains("file_storage/none"), "{err}");
}
