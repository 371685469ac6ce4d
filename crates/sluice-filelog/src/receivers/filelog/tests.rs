//! The receiver against real files in temporary directories, through its
//! public lifecycle, with a recording consumer as the pipeline.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentId, ConsumeError, Consumer, Extensions, Health, Kind, Lifecycle,
    Telemetry,
};
use sluice_pdata::{Batch, Payload, Signal};

use super::*;

/// One received log record: body and attributes.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    body: String,
    attrs: Vec<(String, String)>,
    observed: u64,
}

/// The pipeline: records what it accepted; can be told to refuse.
#[derive(Default)]
struct Recorder {
    recs: Mutex<Vec<Rec>>,
    refuse: Mutex<Option<ConsumeError>>,
    refusals: AtomicUsize,
}

impl Recorder {
    fn bodies(&self) -> Vec<String> {
        self.recs
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }
    fn count(&self) -> usize {
        self.recs.lock().unwrap().len()
    }
    fn refuse_with(&self, e: Option<ConsumeError>) {
        *self.refuse.lock().unwrap() = e;
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            self.refusals.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        let Payload::Logs(req) = batch.payload() else {
            panic!("filelog sent a non-log batch");
        };
        let mut recs = self.recs.lock().unwrap();
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let body = match r.body.as_ref().and_then(|b| b.value.clone()) {
                        Some(Value::StringValue(s)) => s,
                        Some(Value::BytesValue(b)) => format!("bytes:{b:?}"),
                        other => panic!("unexpected body {other:?}"),
                    };
                    let attrs = r
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                Some(Value::StringValue(s)) => s,
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect();
                    recs.push(Rec {
                        body,
                        attrs,
                        observed: r.observed_time_unix_nano,
                    });
                }
            }
        }
        Ok(())
    }
}

fn ctx(telemetry: &Arc<Telemetry>, extensions: Extensions) -> BuildContext {
    BuildContext {
        id: ComponentId::new("filelog", None),
        kind: Kind::Receiver,
        pipeline: None,
        signal: None,
        signals: vec![Signal::Logs],
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions,
    }
}

/// Fast polling, reading from the beginning, quick retries.
fn config(include: &str) -> Config {
    let mut c = Config::new(vec![include.to_string()]);
    c.poll_interval = Duration::from_millis(20);
    c.start_at = StartAt::Beginning;
    c.retry_on_failure.initial_interval = Duration::from_millis(20);
    c.retry_on_failure.max_interval = Duration::from_millis(100);
    c
}

struct Harness {
    receiver: FilelogReceiver,
    recorder: Arc<Recorder>,
    telemetry: Arc<Telemetry>,
}

async fn start_with(cfg: &Config, recorder: Arc<Recorder>, extensions: Extensions) -> Harness {
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let receiver =
        FilelogReceiver::new(&ctx(&telemetry, extensions), cfg, recorder.clone()).unwrap();
    receiver.start().await.unwrap();
    Harness {
        receiver,
        recorder,
        telemetry,
    }
}

async fn start(cfg: &Config) -> Harness {
    start_with(cfg, Arc::new(Recorder::default()), Extensions::default()).await
}

impl Harness {
    /// The value of a counter of this receiver, from the metrics text.
    fn counter(&self, name: &str) -> u64 {
        let text = self.telemetry.encode();
        text.lines()
            .find(|l| l.starts_with(&format!("{name}_total{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    async fn stop(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.receiver.shutdown())
            .await
            .expect("shutdown in time")
            .unwrap();
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `n` records arrived, then a little longer to catch extras.
async fn expect_count(h: &Harness, n: usize) {
    wait_until(&format!("{n} records"), || h.recorder.count() >= n).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.recorder.count(), n, "exactly {n} records, no duplicates");
}

/// Makes sure the receiver's first poll is over (so `start_at: end` has
/// taken effect): appends probe lines to `probe` until one arrives, then
/// forgets what was received.
async fn first_poll_done(h: &Harness, probe: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while h.recorder.count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe line arrived"
        );
        append(probe, "probe\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.recorder.recs.lock().unwrap().clear();
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}-{i}\n")).collect()
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn glob_in(dir: &Path, pattern: &str) -> String {
    format!("{}/{pattern}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_reads_only_appended_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    append(&log, "old-1\nold-2\n");
    let mut cfg = config(&glob_in(tmp.path(), "*.log"));
    cfg.start_at = StartAt::End;
    let h = start(&cfg).await;
    first_poll_done(&h, &log).await;
    let probes = h.counter("otelcol_receiver_accepted_log_records");
    append(&log, "new-1\r\nnew-2\n");
    expect_count(&h, 2).await;
    assert_eq!(
        h.recorder.bodies(),
        ["new-1", "new-2"],
        "\\r\\n is stripped too"
    );
    let rec = h.recorder.recs.lock().unwrap()[0].clone();
    assert_eq!(
        rec.attrs,
        [("log.file.name".to_string(), "a.log".to_string())]
    );
    assert!(
        rec.observed > 1_600_000_000_000_000_000,
        "observed time is set"
    );
    assert_eq!(
        h.counter("otelcol_receiver_accepted_log_records"),
        probes + 2
    );
    assert_eq!(h.counter("sluice_receiver_filelog_lines_read"), probes + 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_beginning_reads_everything_in_order_and_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    append(&log, &lines("a", 0..2500));
    let mut cfg = config(&glob_in(tmp.path(), "app.log"));
    cfg.max_batch_size = 100;
    cfg.include_file_path = true;
    cfg.attributes.insert("env".into(), "test".into());
    let h = start(&cfg).await;
    expect_count(&h, 2500).await;
    append(&log, &lines("b", 0..300));
    expect_count(&h, 2800).await;
    let mut want = names("a", 0..2500);
    want.extend(names("b", 0..300));
    assert_eq!(h.recorder.bodies(), want, "every line once, in order");
    let attrs = h.recorder.recs.lock().unwrap()[0].attrs.clone();
    assert_eq!(
        attrs,
        [
            ("log.file.name".to_string(), "app.log".to_string()),
            ("log.file.path".to_string(), log.display().to_string()),
            ("env".to_string(), "test".to_string()),
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_out_of_the_glob_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    let h = start(&config(&glob_in(tmp.path(), "app.log"))).await;
    // The writer keeps its handle across the rename, as a logger does until
    // it reopens.
    let mut w = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    w.write_all(lines("a", 0..100).as_bytes()).unwrap();
    expect_count(&h, 100).await;
    w.write_all(lines("b", 0..50).as_bytes()).unwrap();
    std::fs::rename(&log, tmp.path().join("app.log.1")).unwrap();
    w.write_all(lines("c", 0..50).as_bytes()).unwrap();
    drop(w);
    append(&log, &lines("d", 0..70));
    expect_count(&h, 270).await;
    let mut got = h.recorder.bodies();
    got.sort();
    let mut want: Vec<String> = names("a", 0..100);
    want.extend(names("b", 0..50));
    want.extend(names("c", 0..50));
    want.extend(names("d", 0..70));
    want.sort();
    assert_eq!(got, want);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_within_the_glob_follows_the_file_by_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    append(&log, &lines("a", 0..100));
    let h = start(&config(&glob_in(tmp.path(), "app.log*"))).await;
    expect_count(&h, 100).await;
    append(&log, &lines("b", 0..40));
    std::fs::rename(&log, tmp.path().join("app.log.1")).unwrap();
    append(&tmp.path().join("app.log.1"), &lines("c", 0..10));
    append(&log, &lines("d", 0..30));
    expect_count(&h, 180).await;
    let recs = h.recorder.recs.lock().unwrap().clone();
    let mut got: Vec<String> = recs.iter().map(|r| r.body.clone()).collect();
    got.sort();
    let mut want: Vec<String> = names("a", 0..100);
    want.extend(names("b", 0..40));
    want.extend(names("c", 0..10));
    want.extend(names("d", 0..30));
    want.sort();
    assert_eq!(got, want, "the renamed file is continued, not read again");
    let c0 = recs.iter().find(|r| r.body == "c-0").unwrap();
    assert_eq!(
        c0.attrs[0].1, "app.log.1",
        "lines read after the rename carry the new name"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_truncate_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    append(&log, &lines("a", 0..100));
    let h = start(&config(&glob_in(tmp.path(), "app.log*"))).await;
    expect_count(&h, 100).await;
    for round in 0..3 {
        // Lines the receiver may or may not have read before the copy.
        append(&log, &lines(&format!("b{round}"), 0..40));
        std::fs::copy(&log, tmp.path().join(format!("app.log.{round}"))).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, &lines(&format!("c{round}"), 0..30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_count(&h, 310).await;
    let mut got = h.recorder.bodies();
    got.sort();
    let mut want = names("a", 0..100);
    for round in 0..3 {
        want.extend(names(&format!("b{round}"), 0..40));
        want.extend(names(&format!("c{round}"), 0..30));
    }
    want.sort();
    assert_eq!(got, want);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_in_place_restarts_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    append(&log, &lines("a", 0..100));
    let h = start(&config(&glob_in(tmp.path(), "app.log"))).await;
    expect_count(&h, 100).await;
    // Shorter than before.
    std::fs::File::create(&log).unwrap();
    append(&log, "short-0\nshort-1\n");
    expect_count(&h, 102).await;
    // Truncated again and longer than the offset before the next poll sees
    // it: told apart by its leading bytes.
    tokio::time::sleep(Duration::from_millis(60)).await;
    std::fs::File::create(&log).unwrap();
    append(&log, &lines("long", 0..200));
    expect_count(&h, 302).await;
    let mut want = names("a", 0..100);
    want.extend(["short-0".to_string(), "short-1".to_string()]);
    want.extend(names("long", 0..200));
    assert_eq!(h.recorder.bodies(), want);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_line_waits_for_its_newline_or_the_flush_period() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    let mut cfg = config(&glob_in(tmp.path(), "a.log"));
    cfg.force_flush_period = Duration::ZERO;
    let h = start(&cfg).await;
    append(&log, "first\npart");
    expect_count(&h, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.recorder.count(), 1, "the partial line is held");
    append(&log, "ial\n");
    expect_count(&h, 2).await;
    assert_eq!(h.recorder.bodies(), ["first", "partial"]);
    h.stop().await;

    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("b.log");
    let mut cfg = config(&glob_in(tmp.path(), "b.log"));
    cfg.force_flush_period = Duration::from_millis(100);
    let h = start(&cfg).await;
    append(&log, "one\nno-newline");
    expect_count(&h, 2).await;
    append(&log, "\nthree\n");
    expect_count(&h, 3).await;
    assert_eq!(h.recorder.bodies(), ["one", "no-newline", "three"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_cut_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    let mut text = String::new();
    text.push_str(&"x".repeat(250));
    text.push('\n');
    // Longer than the read chunk: cut across reads.
    text.push_str(&"y".repeat(600 * 1024));
    text.push('\n');
    text.push_str(&"é".repeat(80)); // 160 bytes; the cut must not split a character
    text.push('\n');
    text.push_str("short\n");
    append(&log, &text);
    let mut cfg = config(&glob_in(tmp.path(), "a.log"));
    cfg.max_log_size = ByteSize(101);
    let h = start(&cfg).await;
    expect_count(&h, 4).await;
    let bodies = h.recorder.bodies();
    assert_eq!(bodies[0], "x".repeat(101));
    assert_eq!(bodies[1], "y".repeat(101));
    assert_eq!(bodies[2], "é".repeat(50), "cut at a character boundary");
    assert_eq!(bodies[3], "short");
    assert_eq!(h.counter("sluice_receiver_filelog_truncated_lines"), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    std::fs::write(&log, b"ok\n\n\r\nbad \xff\xfe here\n").unwrap();
    let h = start(&config(&glob_in(tmp.path(), "a.log"))).await;
    expect_count(&h, 2).await;
    assert_eq!(
        h.recorder.bodies(),
        ["ok", "bad \u{fffd}\u{fffd} here"],
        "empty lines make no record"
    );
    assert_eq!(h.counter("sluice_receiver_filelog_invalid_utf8_lines"), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_appearing_later_are_read_from_their_start_and_excludes_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = tmp.path().join("sub/deeper");
    let mut cfg = config(&glob_in(tmp.path(), "**/*.log"));
    cfg.start_at = StartAt::End;
    cfg.exclude = vec![glob_in(tmp.path(), "**/skip-*.log")];
    let h = start(&cfg).await;
    first_poll_done(&h, &tmp.path().join("probe.log")).await;
    std::fs::create_dir_all(&sub).unwrap();
    append(&sub.join("skip-me.log"), "excluded\n");
    append(&sub.join("new.log"), "n-0\nn-1\n");
    expect_count(&h, 2).await;
    assert_eq!(h.recorder.bodies(), ["n-0", "n-1"]);
    assert_eq!(h.recorder.recs.lock().unwrap()[0].attrs[0].1, "new.log");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_sent_again_and_reading_pauses() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    append(&log, &lines("a", 0..5000));
    let recorder = Arc::new(Recorder::default());
    recorder.refuse_with(Some(ConsumeError::overloaded("full")));
    let mut cfg = config(&glob_in(tmp.path(), "a.log"));
    cfg.max_batch_size = 100;
    cfg.max_batches_in_flight = 2;
    let h = start_with(&cfg, recorder.clone(), Extensions::default()).await;
    wait_until("refusals", || recorder.refusals.load(Ordering::SeqCst) >= 6).await;
    // Reading paused: at most the batches in flight plus the channel's and
    // the one being built have been read.
    let read = h.counter("sluice_receiver_filelog_lines_read");
    assert!(read <= 500, "reading must pause under refusal, read {read}");
    recorder.refuse_with(None);
    expect_count(&h, 5000).await;
    assert_eq!(
        h.recorder.bodies(),
        names("a", 0..5000),
        "the same lines, once each"
    );
    assert!(h.counter("otelcol_receiver_refused_log_records") >= 600);
    assert_eq!(h.counter("otelcol_receiver_accepted_log_records"), 5000);
    assert_eq!(h.counter("sluice_receiver_filelog_dropped_log_records"), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_drops_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    append(&log, "bad-0\nbad-1\n");
    let recorder = Arc::new(Recorder::default());
    recorder.refuse_with(Some(ConsumeError::Permanent("no".into())));
    let h = start_with(
        &config(&glob_in(tmp.path(), "a.log")),
        recorder.clone(),
        Extensions::default(),
    )
    .await;
    wait_until("the drop", || {
        h.counter("sluice_receiver_filelog_dropped_log_records") == 2
    })
    .await;
    recorder.refuse_with(None);
    append(&log, "good\n");
    expect_count(&h, 1).await;
    assert_eq!(h.recorder.bodies(), ["good"]);
    h.stop().await;
}

/// A started `file_storage` extension in `dir`, as the service would hand it.
async fn storage(dir: &Path) -> Extensions {
    sluice_shared::test_support::started_file_storage(dir).await
}

/// Starts, retrying while the previous run's store lock is being released.
async fn start_again(cfg: &Config, recorder: Arc<Recorder>, ext: Extensions) -> Harness {
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let receiver = FilelogReceiver::new(&ctx(&telemetry, ext), cfg, recorder.clone()).unwrap();
    let mut tries = 0;
    loop {
        match receiver.start().await {
            Ok(()) => break,
            Err(e) if tries < 100 && e.to_string().contains("in use") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    Harness {
        receiver,
        recorder,
        telemetry,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_offsets_resume_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("a.log");
    append(&log, &lines("a", 0..1500));
    let ext = storage(&tmp.path().join("state")).await;
    let mut cfg = config(&glob_in(&logs, "*.log"));
    cfg.storage = Some("file_storage".into());
    let h = start_again(&cfg, Arc::new(Recorder::default()), ext.clone()).await;
    expect_count(&h, 1500).await;
    h.stop().await;
    drop(h);

    // Written while stopped; a second file appears too.
    append(&log, &lines("b", 0..700));
    append(&logs.join("z.log"), &lines("z", 0..5));
    let h = start_again(&cfg, Arc::new(Recorder::default()), ext.clone()).await;
    expect_count(&h, 705).await;
    let mut want = names("b", 0..700);
    want.extend(names("z", 0..5));
    assert_eq!(
        h.recorder.bodies(),
        want,
        "resumed exactly where the first run stopped"
    );
    h.stop().await;
    assert!(
        tmp.path().join("state/receiver_filelog/offsets").is_file(),
        "offsets live in the storage directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_does_not_skip_files_that_appeared_while_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    append(&logs.join("old.log"), "before-start\n");
    let ext = storage(&tmp.path().join("state")).await;
    let mut cfg = config(&glob_in(&logs, "*.log"));
    cfg.start_at = StartAt::End;
    cfg.storage = Some("file_storage".into());
    let h = start_again(&cfg, Arc::new(Recorder::default()), ext.clone()).await;
    first_poll_done(&h, &logs.join("old.log")).await;
    append(&logs.join("old.log"), "live\n");
    expect_count(&h, 1).await;
    assert_eq!(h.recorder.bodies(), ["live"]);
    h.stop().await;
    drop(h);

    append(&logs.join("old.log"), "while-down\n");
    append(&logs.join("new.log"), "new-while-down\n");
    let h = start_again(&cfg, Arc::new(Recorder::default()), ext.clone()).await;
    expect_count(&h, 2).await;
    let mut got = h.recorder.bodies();
    got.sort();
    assert_eq!(got, ["new-while-down", "while-down"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_never_accepted_are_read_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    append(&log, &lines("a", 0..300));
    let ext = storage(&tmp.path().join("state")).await;
    let mut cfg = config(&glob_in(tmp.path(), "a.log"));
    cfg.storage = Some("file_storage".into());
    cfg.max_batch_size = 100;

    // First run: the first 100 lines are accepted, then the pipeline refuses.
    let recorder = Arc::new(Recorder::default());
    cfg.max_batches_in_flight = 1;
    let h = start_again(&cfg, recorder.clone(), ext.clone()).await;
    wait_until("first batch", || recorder.count() >= 100).await;
    recorder.refuse_with(Some(ConsumeError::unavailable("down")));
    append(&log, &lines("b", 0..50));
    wait_until("refusals", || recorder.refusals.load(Ordering::SeqCst) >= 2).await;
    // The service's shutdown deadline passes while the batch is refused.
    let stopped = tokio::time::timeout(Duration::from_millis(300), h.receiver.shutdown()).await;
    assert!(
        stopped.is_err(),
        "shutdown keeps retrying until its deadline"
    );
    let first = recorder.count();
    drop(h);

    let recorder2 = Arc::new(Recorder::default());
    let h = start_again(&cfg, recorder2.clone(), ext.clone()).await;
    let total = 350;
    expect_count(&h, total - first).await;
    let mut all = recorder.bodies();
    all.extend(recorder2.bodies());
    let mut want = names("a", 0..300);
    want.extend(names("b", 0..50));
    assert_eq!(all, want, "nothing lost, nothing accepted twice");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_parser_puts_fields_in_attributes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("a.log");
    append(&log, "{\"level\":\"info\",\"n\":3}\nnot json\n");
    let mut cfg = config(&glob_in(tmp.path(), "a.log"));
    cfg.include_file_name = false;
    cfg.operators = vec![Operator::JsonParser {
        id: None,
        parse_to: "attributes".into(),
        on_error: "send".into(),
    }];
    let h = start(&cfg).await;
    expect_count(&h, 2).await;
    let recs = h.recorder.recs.lock().unwrap().clone();
    assert_eq!(
        recs[0].attrs,
        [
            ("level".to_string(), "info".to_string()),
            ("n".to_string(), "Some(DoubleValue(3.0))".to_string())
        ]
    );
    assert_eq!(recs[1].body, "not json");
    assert!(recs[1].attrs.is_empty());
    assert_eq!(h.counter("sluice_receiver_filelog_parse_errors"), 1);
    h.stop().await;
}

fn parse(yaml: &str) -> Result<Config, Vec<sluice_core::FieldError>> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    parse_config::<Config>(&v).map(|p| {
        let _ = &p;
        serde_yaml_ng::from_str::<Config>(yaml).unwrap()
    })
}

#[test]
fn config_defaults_and_errors() {
    let c = parse("include: [/var/log/*.log]").unwrap();
    assert_eq!(c.start_at, StartAt::End);
    assert_eq!(c.poll_interval, Duration::from_millis(200));
    assert_eq!(c.max_log_size, ByteSize(1024 * 1024));
    assert_eq!(c.fingerprint_size, ByteSize(1024));
    assert!(c.include_file_name && !c.include_file_path);
    assert_eq!(c.encoding, Encoding::Utf8);
    assert_eq!(c.max_batch_size, 1024);

    let c = parse(
        "include: [/a/*.log]\nmax_log_size: 64KiB\nfingerprint_size: 2kb\nstart_at: beginning\nencoding: nop\nstorage: file_storage/x\n",
    )
    .unwrap();
    assert_eq!(c.max_log_size, ByteSize(65536));
    assert_eq!(c.fingerprint_size, ByteSize(2000));
    assert_eq!(c.encoding, Encoding::Nop);

    let first = |yaml: &str| parse(yaml).expect_err("invalid")[0].clone();
    let e = first("include: [/a/*.log]\nmultiline: {line_start_pattern: x}\n");
    assert!(e.message.contains("unknown field `multiline`"), "{e:?}");
    let e = first("include: []\n");
    assert_eq!(e.path, "include");
    let e = first("include: [\"/a/[b\"]\n");
    assert_eq!(e.path, "include::0");
    let e = first("include: [relative/*.log]\n");
    assert!(e.message.contains("absolute"), "{e:?}");
    let e = first("include: [/a]\nmax_log_size: 12 parsecs\n");
    assert_eq!(e.path, "max_log_size");
    let e = first("include: [/a]\nencoding: utf-16le\n");
    assert!(e.message.contains("unsupported encoding"), "{e:?}");
    let e = first("include: [/a]\noperators: [{type: regex_parser, regex: x}]\n");
    assert!(e.path.starts_with("operators"), "{e:?}");
    let e = first("include: [/a]\nfingerprint_size: 4\n");
    assert_eq!(e.path, "fingerprint_size");

    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("include: [/a]\nstorage: file_storage\n").unwrap();
    let p = parse_config::<Config>(&v).unwrap();
    assert_eq!(p.extension_refs[0].path, "storage");
    assert_eq!(p.extension_refs[0].id, "file_storage");
}

#[test]
fn store_names_are_safe_directory_names() {
    assert_eq!(
        store_name(&ComponentId::new("filelog", None)),
        "receiver_filelog"
    );
    assert_eq!(
        store_name(&ComponentId::new("filelog", Some("app/x y"))),
        "receiver_filelog_app_x_y"
    );
}
