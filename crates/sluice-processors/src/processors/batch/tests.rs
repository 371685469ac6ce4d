use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentId, ConsumeError, Consumer, Health, Kind, Processor, ProcessorFactory,
    Telemetry,
};
use sluice_pdata::{Batch, Payload, Signal};
use tokio::time::Instant;

use super::{BatchConfig, BatchFactory};

/// A next consumer that records what it accepted, and can be told to refuse.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Batch>>,
    refuse: Mutex<Option<ConsumeError>>,
}

impl Recorder {
    fn sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(Batch::items)
            .collect()
    }

    fn span_ids(&self) -> Vec<u64> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| span_ids(b.payload()))
            .collect()
    }

    fn refuse_with(&self, e: Option<ConsumeError>) {
        *self.refuse.lock().unwrap() = e;
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

/// Traces holding spans `first..first+n`, spread over two resources so that
/// merging and splitting cross resource boundaries.
fn spans(first: u64, n: usize) -> Batch {
    let make = |ids: std::ops::Range<u64>| ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: ids
                .map(|id| Span {
                    trace_id: vec![1; 16],
                    span_id: id.to_be_bytes().to_vec(),
                    name: format!("span-{id}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let half = (n / 2) as u64;
    let end = first + n as u64;
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![make(first..first + half), make(first + half..end)],
    }))
}

fn logs(n: usize) -> Batch {
    Batch::new(Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n).map(|_| LogRecord::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn span_ids(p: &Payload) -> Vec<u64> {
    let Payload::Traces(r) = p else {
        return Vec::new();
    };
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| u64::from_be_bytes(s.span_id.clone().try_into().unwrap()))
        .collect()
}

fn ctx(telemetry: &Arc<Telemetry>, pipeline: &str) -> BuildContext {
    BuildContext {
        id: ComponentId::new("batch", None),
        kind: Kind::Processor,
        pipeline: Some(pipeline.to_string()),
        signal: Some(Signal::Traces),
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    }
}

fn config(size: usize, max: usize, timeout: Duration) -> BatchConfig {
    BatchConfig {
        send_batch_size: size,
        send_batch_max_size: max,
        timeout,
    }
}

async fn build(
    cfg: &BatchConfig,
    telemetry: &Arc<Telemetry>,
    pipeline: &str,
) -> (Arc<dyn Processor>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let p = BatchFactory
        .create(ctx(telemetry, pipeline), cfg, rec.clone())
        .unwrap();
    p.start().await.unwrap();
    (p, rec)
}

/// Lets every task run until all wait on something other than a sleep of
/// under 1ms (time is paused, so this does not advance the clock much).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn spawn_consume(
    p: &Arc<dyn Processor>,
    batch: Batch,
) -> tokio::task::JoinHandle<Result<(), ConsumeError>> {
    let p = p.clone();
    tokio::spawn(async move { p.consume(batch).await })
}

/// The value of one series in the Prometheus text output.
fn metric(t: &Telemetry, series: &str) -> Option<f64> {
    t.encode().lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn size_trigger_sends_batches_of_send_batch_size() {
    let t = Telemetry::new(MetricsLevel::Detailed);
    let (p, rec) = build(&config(10, 0, HOUR), &t, "traces").await;
    let handles: Vec<_> = (0..25).map(|i| spawn_consume(&p, spans(i, 1))).collect();
    settle().await;

    assert_eq!(rec.sizes(), vec![10, 10]);
    let done = handles.iter().filter(|h| h.is_finished()).count();
    assert_eq!(done, 20, "exactly the flushed callers are answered");
    for h in handles.into_iter().take(20) {
        assert_eq!(h.await.unwrap(), Ok(()));
    }

    let labels = r#"{processor="batch",pipeline="traces"}"#;
    assert_eq!(
        metric(
            &t,
            &format!("otelcol_processor_batch_batch_size_trigger_send_total{labels}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &t,
            &format!("otelcol_processor_batch_timeout_trigger_send_total{labels}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &t,
            &format!("otelcol_processor_batch_batch_send_size_sum{labels}")
        ),
        Some(20.0)
    );
    assert_eq!(
        metric(
            &t,
            &format!("otelcol_processor_batch_batch_send_size_count{labels}")
        ),
        Some(2.0)
    );

    // The remaining 5 go at the timeout, counted as a timeout trigger.
    tokio::time::sleep(HOUR).await;
    assert_eq!(rec.sizes(), vec![10, 10, 5]);
    assert_eq!(
        metric(
            &t,
            &format!("otelcol_processor_batch_timeout_trigger_send_total{labels}")
        ),
        Some(1.0)
    );
    let mut ids = rec.span_ids();
    ids.sort_unstable();
    assert_eq!(ids, (0..25).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn one_large_batch_goes_at_once_without_max_size() {
    let t = Telemetry::new(MetricsLevel::Basic);
    let (p, rec) = build(&config(10, 0, HOUR), &t, "traces").await;
    assert_eq!(p.consume(spans(0, 37)).await, Ok(()));
    assert_eq!(rec.sizes(), vec![37]);
    assert_eq!(rec.span_ids(), (0..37).collect::<Vec<_>>());
    // No histogram below the normal level.
    assert!(!t
        .encode()
        .contains("otelcol_processor_batch_batch_send_size"));
}

#[tokio::test(start_paused = true)]
async fn max_size_splits_oversized_input_in_order() {
    let t = Telemetry::new(MetricsLevel::Detailed);
    let (p, rec) = build(&config(10, 12, HOUR), &t, "traces").await;
    let start = Instant::now();
    let h = spawn_consume(&p, spans(100, 41));
    settle().await;
    // 41 items: 12 + 12 + 12 by size, 5 wait for the timeout; the caller is
    // not answered before its last part is sent.
    assert_eq!(rec.sizes(), vec![12, 12, 12]);
    assert!(!h.is_finished());

    assert_eq!(h.await.unwrap(), Ok(()));
    assert!(start.elapsed() >= HOUR);
    assert_eq!(rec.sizes(), vec![12, 12, 12, 5]);
    assert!(rec.sizes().iter().all(|&s| s <= 12));
    assert_eq!(rec.span_ids(), (100..141).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn timeout_flushes_a_small_batch_and_only_then_answers() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let timeout = Duration::from_secs(10);
    let (p, rec) = build(&config(100, 0, timeout), &t, "traces").await;
    let start = Instant::now();
    let mut h = spawn_consume(&p, spans(0, 5));

    // Well before the timeout: nothing sent, caller still waiting.
    assert!(tokio::time::timeout(Duration::from_secs(9), &mut h)
        .await
        .is_err());
    assert!(rec.sizes().is_empty());

    assert_eq!(h.await.unwrap(), Ok(()));
    let waited = start.elapsed();
    assert!(waited >= timeout, "answered after {waited:?}");
    assert!(waited < timeout + Duration::from_secs(1));
    assert_eq!(rec.sizes(), vec![5]);
    assert_eq!(
        metric(
            &t,
            r#"otelcol_processor_batch_timeout_trigger_send_total{processor="batch",pipeline="traces"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn downstream_refusal_is_returned_to_the_callers_of_that_batch() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(4, 0, HOUR), &t, "traces").await;
    rec.refuse_with(Some(ConsumeError::Permanent("backend says no".into())));
    let a = spawn_consume(&p, spans(0, 2));
    let b = spawn_consume(&p, spans(2, 2));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a, Err(ConsumeError::Permanent("backend says no".into())));
    assert_eq!(b, a);

    // Downstream recovers: the next batch is accepted.
    rec.refuse_with(None);
    assert_eq!(p.consume(spans(4, 4)).await, Ok(()));
    assert_eq!(rec.sizes(), vec![4]);
}

#[tokio::test(start_paused = true)]
async fn a_split_batch_fails_if_any_of_its_parts_fails() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(10, 10, HOUR), &t, "traces").await;
    let h = spawn_consume(&p, spans(0, 15));
    settle().await;
    // The first 10 were accepted; the caller still waits for the other 5.
    assert_eq!(rec.sizes(), vec![10]);
    assert!(!h.is_finished());
    rec.refuse_with(Some(ConsumeError::overloaded("queue full")));
    let r = h.await.unwrap();
    assert_eq!(r, Err(ConsumeError::overloaded("queue full")));
    assert!(r.unwrap_err().is_retryable());

    // The other way round: the first part fails, the last one succeeds.
    let h = spawn_consume(&p, spans(15, 15));
    settle().await;
    assert!(!h.is_finished());
    rec.refuse_with(None);
    assert_eq!(
        h.await.unwrap(),
        Err(ConsumeError::overloaded("queue full"))
    );
    assert_eq!(rec.sizes(), vec![10, 5]);
    assert_eq!(rec.span_ids(), (0..10).chain(25..30).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn callers_sharing_a_flush_are_answered_by_that_flush() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(10, 10, HOUR), &t, "traces").await;
    // a: 6 items, b: 6 items -> flush 10 (a whole, b partly); b waits for
    // the rest at the timeout.
    let a = spawn_consume(&p, spans(0, 6));
    settle().await;
    let b = spawn_consume(&p, spans(6, 6));
    settle().await;
    assert_eq!(rec.sizes(), vec![10]);
    assert!(a.is_finished());
    assert!(!b.is_finished());
    assert_eq!(a.await.unwrap(), Ok(()));
    assert_eq!(b.await.unwrap(), Ok(()));
    assert_eq!(rec.sizes(), vec![10, 2]);
    assert_eq!(rec.span_ids(), (0..12).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn instances_do_not_share_buffers() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let cfg = config(10, 0, Duration::from_secs(5));
    let (p1, rec1) = build(&cfg, &t, "traces/a").await;
    let (p2, rec2) = build(&cfg, &t, "traces/b").await;
    let h1 = spawn_consume(&p1, spans(0, 5));
    let h2 = spawn_consume(&p2, spans(5, 5));
    settle().await;
    // Together they would reach send_batch_size; apart they do not.
    assert!(rec1.sizes().is_empty());
    assert!(rec2.sizes().is_empty());
    assert_eq!(h1.await.unwrap(), Ok(()));
    assert_eq!(h2.await.unwrap(), Ok(()));
    assert_eq!(rec1.span_ids(), (0..5).collect::<Vec<_>>());
    assert_eq!(rec2.span_ids(), (5..10).collect::<Vec<_>>());
    assert_eq!(
        metric(
            &t,
            r#"otelcol_processor_batch_timeout_trigger_send_total{processor="batch",pipeline="traces/a"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &t,
            r#"otelcol_processor_batch_timeout_trigger_send_total{processor="batch",pipeline="traces/b"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_then_passes_through() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(100, 0, HOUR), &t, "traces").await;
    let h = spawn_consume(&p, spans(0, 3));
    settle().await;
    assert!(rec.sizes().is_empty());

    let before = Instant::now();
    p.shutdown().await.unwrap();
    assert_eq!(rec.sizes(), vec![3]);
    assert_eq!(h.await.unwrap(), Ok(()));

    // Late data goes straight through, without waiting for any timeout.
    assert_eq!(p.consume(spans(3, 2)).await, Ok(()));
    assert_eq!(rec.sizes(), vec![3, 2]);
    assert!(before.elapsed() < Duration::from_secs(1));
    // And a refusal downstream is passed back as is.
    rec.refuse_with(Some(ConsumeError::unavailable("down")));
    assert_eq!(
        p.consume(spans(5, 1)).await,
        Err(ConsumeError::unavailable("down"))
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_without_start_flushes_what_was_queued() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let rec = Arc::new(Recorder::default());
    let p = BatchFactory
        .create(ctx(&t, "traces"), &config(100, 0, HOUR), rec.clone())
        .unwrap();
    let h = spawn_consume(&p, spans(0, 4));
    settle().await;
    p.shutdown().await.unwrap();
    assert_eq!(h.await.unwrap(), Ok(()));
    assert_eq!(rec.sizes(), vec![4]);
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_sends_immediately_cut_to_max_size() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(10, 10, Duration::ZERO), &t, "traces").await;
    let before = Instant::now();
    assert_eq!(p.consume(spans(0, 3)).await, Ok(()));
    assert_eq!(p.consume(spans(3, 25)).await, Ok(()));
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(rec.sizes(), vec![3, 10, 10, 5]);
    assert_eq!(rec.span_ids(), (0..28).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn empty_batches_are_answered_at_once_and_not_forwarded() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(10, 0, HOUR), &t, "traces").await;
    let before = Instant::now();
    assert_eq!(
        p.consume(Batch::new(Payload::empty(Signal::Traces))).await,
        Ok(())
    );
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert!(rec.sizes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_another_signal_flushes_the_buffer_first() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let (p, rec) = build(&config(10, 0, HOUR), &t, "traces").await;
    let a = spawn_consume(&p, spans(0, 3));
    settle().await;
    let b = spawn_consume(&p, logs(4));
    settle().await;
    assert_eq!(a.await.unwrap(), Ok(()));
    assert_eq!(rec.sizes(), vec![3]);
    assert_eq!(b.await.unwrap(), Ok(()));
    let signals: Vec<_> = rec
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(Batch::signal)
        .collect();
    assert_eq!(signals, vec![Signal::Traces, Signal::Logs]);
}

#[test]
fn config_defaults() {
    let cfg: BatchConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(cfg, BatchConfig::default());
    assert_eq!(cfg.send_batch_size, 8192);
    assert_eq!(cfg.send_batch_max_size, 0);
    assert_eq!(cfg.timeout, Duration::from_millis(200));

    let cfg: BatchConfig =
        serde_yaml_ng::from_str("send_batch_size: 5\nsend_batch_max_size: 9\ntimeout: 2s\n")
            .unwrap();
    assert_eq!(cfg, config(5, 9, Duration::from_secs(2)));
}

#[test]
fn config_validation() {
    let check = |yaml: &str| {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        parse_config::<BatchConfig>(&v).err().unwrap_or_default()
    };
    assert!(check("").is_empty());
    assert!(check("send_batch_size: 10\nsend_batch_max_size: 10").is_empty());
    assert!(check("send_batch_size: 10\nsend_batch_max_size: 0").is_empty());
    assert!(check("timeout: 0s").is_empty());

    let e = check("send_batch_size: 10\nsend_batch_max_size: 9");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "send_batch_max_size");
    assert!(
        e[0].message.contains("send_batch_size (10)"),
        "{}",
        e[0].message
    );

    let e = check("send_batch_size: 0");
    assert_eq!(e[0].path, "send_batch_size");

    let e = check("send_batch_sise: 10");
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("unknown field"), "{}", e[0].message);

    let e = check("timeout: soon");
    assert_eq!(e[0].path, "timeout");
}
