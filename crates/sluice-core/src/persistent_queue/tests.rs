//! Tests against real files in temporary directories.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt as _;

use super::*;

/// Every item in these tests has this many payload bytes...
const ITEM_LEN: usize = 11;
/// ...so every record takes this many bytes on disk.
const FRAME: u64 = segment::HEADER_LEN as u64 + ITEM_LEN as u64;

fn item(i: usize) -> Vec<u8> {
    let bytes = format!("record-{i:04}").into_bytes();
    assert_eq!(bytes.len(), ITEM_LEN);
    bytes
}

fn config(dir: &Path) -> QueueConfig {
    QueueConfig::new(dir, 1 << 20)
}

/// A config whose segments hold `records` test items each.
fn small_segments(dir: &Path, records: u64) -> QueueConfig {
    QueueConfig {
        segment_bytes: records * FRAME,
        ..config(dir)
    }
}

fn open(cfg: &QueueConfig) -> (PersistentQueue, Recovery) {
    PersistentQueue::open(cfg.clone()).expect("open")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

/// `next()` with a guard against hanging the test run (not a timing check).
async fn next(q: &PersistentQueue) -> Option<(Seq, Vec<u8>)> {
    tokio::time::timeout(Duration::from_secs(30), q.next())
        .await
        .expect("next() hung")
}

async fn take(q: &PersistentQueue, n: usize) -> Vec<(Seq, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(q).await.expect("a record"));
    }
    out
}

async fn push_items(q: &PersistentQueue, range: std::ops::Range<usize>) -> Vec<Seq> {
    let mut seqs = Vec::new();
    for i in range {
        seqs.push(q.push(&item(i)).await.expect("push"));
    }
    seqs
}

fn seqs(records: &[(Seq, Vec<u8>)]) -> Vec<Seq> {
    records.iter().map(|(s, _)| *s).collect()
}

/// Flips one bit of the byte at `offset` in `path`.
fn flip_byte(path: &Path, offset: usize) {
    let mut data = fs::read(path).expect("read");
    data[offset] ^= 0x20;
    fs::write(path, data).expect("write");
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

#[tokio::test]
async fn push_next_ack_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, recovery) = open(&config(dir.path()));
    assert_eq!(recovery, Recovery::default());
    assert!(q.is_empty());

    assert_eq!(push_items(&q, 0..5).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(q.len(), 5);
    assert_eq!(q.bytes(), 5 * FRAME);

    let got = take(&q, 5).await;
    for (i, (seq, payload)) in got.iter().enumerate() {
        assert_eq!(*seq, i as Seq);
        assert_eq!(payload, &item(i));
    }
    assert_eq!(q.len(), 5, "handed out but not acked still counts");
    for (seq, _) in got {
        q.ack(seq);
    }
    assert!(q.is_empty());
    assert_eq!(q.bytes(), 0);
}

#[tokio::test]
async fn out_of_order_acks_delete_full_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&small_segments(dir.path(), 2));
    push_items(&q, 0..6).await;
    take(&q, 6).await;
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3, "two records per segment: {files:?}");

    // Every segment keeps one unacked record: nothing can go.
    for seq in [5, 3, 1, 4] {
        q.ack(seq);
    }
    q.flush().await.expect("flush");
    assert_eq!(segment_files(dir.path()), files);

    q.ack(2);
    q.flush().await.expect("flush");
    assert_eq!(
        segment_files(dir.path()),
        vec![files[0].clone(), files[2].clone()]
    );

    q.ack(0);
    q.flush().await.expect("flush");
    assert_eq!(
        segment_files(dir.path()),
        vec![files[2].clone()],
        "the segment being appended to stays"
    );

    // The next push rolls to a new segment, and the old, fully acked,
    // active one goes.
    assert_eq!(q.push(&item(6)).await.expect("push"), 6);
    q.flush().await.expect("flush");
    let now = segment_files(dir.path());
    assert_eq!(now.len(), 1);
    assert_eq!(
        now[0].file_name().and_then(|n| n.to_str()),
        Some(segment::file_name(6).as_str())
    );
}

#[tokio::test]
async fn nack_redelivers_before_newer_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&config(dir.path()));
    push_items(&q, 0..4).await;
    assert_eq!(seqs(&take(&q, 2).await), vec![0, 1]);
    q.nack(1);
    q.nack(0);
    q.nack(0); // repeated: no effect
    let again = take(&q, 3).await;
    assert_eq!(seqs(&again), vec![0, 1, 2]);
    assert_eq!(again[1].1, item(1));
    q.nack(2);
    assert_eq!(seqs(&take(&q, 2).await), vec![2, 3]);
    assert_eq!(q.len(), 4);
}

#[tokio::test]
async fn reopen_replays_exactly_the_unacked_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_segments(dir.path(), 3);
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..10).await;
        // 0..=6 handed out; of those 0, 2, 4, 6 acked (out of order); 1, 3,
        // 5 were being sent when the process went away; 7..=9 never left.
        take(&q, 7).await;
        for seq in [4, 0, 6, 2] {
            q.ack(seq);
        }
    }
    let (q, recovery) = open(&cfg);
    assert_eq!(
        recovery,
        Recovery {
            records: 6,
            bytes: 6 * FRAME,
            corrupted_records: 0,
            corrupted_bytes: 0,
        }
    );
    assert_eq!(q.len(), 6);
    let replayed = take(&q, 6).await;
    assert_eq!(seqs(&replayed), vec![1, 3, 5, 7, 8, 9]);
    for (seq, payload) in &replayed {
        assert_eq!(payload, &item(*seq as usize));
    }
    // New records never reuse a sequence number still on disk.
    assert_eq!(q.push(&item(10)).await.expect("push"), 10);
    for (seq, _) in replayed {
        q.ack(seq);
    }
    drop(q);

    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 1, "only the last push is left");
    assert_eq!(next(&q).await.expect("record"), (10, item(10)));
}

#[tokio::test]
async fn sequence_numbers_are_not_reused_after_everything_was_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..3).await;
        for (seq, _) in take(&q, 3).await {
            q.ack(seq);
        }
    }
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 0);
    assert!(segment_files(dir.path()).is_empty(), "fully acked: deleted");
    assert_eq!(q.push(&item(3)).await.expect("push"), 3);
    drop(q);
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 1, "the new record is not taken as acked");
    assert_eq!(next(&q).await.expect("record"), (3, item(3)));
}

#[tokio::test]
async fn full_until_acks_free_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueueConfig {
        max_bytes: 3 * FRAME,
        ..config(dir.path())
    };
    let (q, _) = open(&cfg);
    push_items(&q, 0..3).await;
    match q.push(&item(3)).await {
        Err(QueueError::Full { max_bytes }) => assert_eq!(max_bytes, 3 * FRAME),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        q.push(&[0u8; 100]).await,
        Err(QueueError::TooLarge { len: 100, .. })
    ));
    assert_eq!(q.bytes(), 3 * FRAME);

    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.wait_for_space().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "no space was freed yet");

    let (seq, _) = next(&q).await.expect("record");
    assert!(!waiter.is_finished(), "handing out frees nothing");
    q.ack(seq);
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_for_space woke")
        .expect("task");
    assert_eq!(q.push(&item(3)).await.expect("push"), 3);
    assert_eq!(q.bytes(), 3 * FRAME);
}

#[tokio::test]
async fn wait_for_space_returns_at_once_when_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&config(dir.path()));
    push_items(&q, 0..2).await;
    tokio::time::timeout(Duration::from_secs(30), q.wait_for_space())
        .await
        .expect("room");
}

#[tokio::test]
async fn damaged_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_segments(dir.path(), 4);
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..10).await;
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3, "segments [0..3], [4..7], [8, 9]");
    // A payload byte of record 1, in the middle of the first segment.
    flip_byte(&files[0], FRAME as usize + segment::HEADER_LEN + 3);
    // Record 9, the last one, torn in the middle as by a crash mid-write.
    truncate(&files[2], FRAME + 15);

    let (q, recovery) = open(&cfg);
    assert_eq!(
        recovery,
        Recovery {
            records: 8,
            bytes: 8 * FRAME,
            corrupted_records: 2,
            corrupted_bytes: FRAME + 15,
        }
    );
    let replayed = take(&q, 8).await;
    assert_eq!(seqs(&replayed), vec![0, 2, 3, 4, 5, 6, 7, 8]);
    for (seq, payload) in &replayed {
        assert_eq!(payload, &item(*seq as usize));
    }
    drop(q);

    // Counted once: the torn tail was cut off and the lost record noted, so
    // the next open reports no new losses and replays the same records.
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 8);
    assert_eq!(recovery.corrupted_records, 0);
    assert_eq!(
        recovery.corrupted_bytes, FRAME,
        "the flipped record is still on disk"
    );
    assert_eq!(seqs(&take(&q, 8).await), vec![0, 2, 3, 4, 5, 6, 7, 8]);
}

#[tokio::test]
async fn a_damaged_length_does_not_lose_the_records_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..5).await;
    }
    let files = segment_files(dir.path());
    // The high byte of record 1's length: read naively it would swallow the
    // rest of the file.
    flip_byte(&files[0], FRAME as usize + 7);
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 4);
    assert_eq!(recovery.corrupted_records, 1);
    assert_eq!(recovery.corrupted_bytes, FRAME);
    assert_eq!(seqs(&take(&q, 4).await), vec![0, 2, 3, 4]);
}

#[tokio::test]
async fn garbage_between_records_and_a_garbage_segment_are_survived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_segments(dir.path(), 2);
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..6).await;
    }
    let files = segment_files(dir.path());
    // Overwrite the whole middle segment (records 2 and 3) with noise that
    // even contains the magic.
    let mut noise = segment::MAGIC.repeat(4);
    noise.resize(2 * FRAME as usize, 0xAB);
    fs::write(&files[1], &noise).expect("write");

    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 4);
    assert_eq!(recovery.corrupted_records, 2, "seqs 2 and 3 are known lost");
    assert_eq!(recovery.corrupted_bytes, 2 * FRAME);
    assert_eq!(seqs(&take(&q, 4).await), vec![0, 1, 4, 5]);
}

#[tokio::test]
async fn a_damaged_ack_log_only_means_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..3).await;
        for (seq, _) in take(&q, 3).await {
            q.ack(seq);
        }
        q.flush().await.expect("flush");
    }
    // Tear the last entry (the ack of record 2) in half.
    let acks = dir.path().join(acklog::FILE_NAME);
    let len = fs::metadata(&acks).expect("ack log").len();
    truncate(&acks, len - 8);

    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 1);
    assert_eq!(recovery.corrupted_records, 0, "no record was damaged");
    assert_eq!(next(&q).await.expect("record"), (2, item(2)));
}

#[tokio::test]
async fn the_ack_log_is_compacted_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let acks = dir.path().join(acklog::FILE_NAME);
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..50).await;
        for (seq, _) in take(&q, 50).await {
            if seq != 10 {
                q.ack(seq);
            }
        }
        q.flush().await.expect("flush");
        assert!(fs::metadata(&acks).expect("ack log").len() >= 49 * 16);
    }
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 1);
    // A floor at 10 plus the 39 acks above it, all in the surviving segment.
    assert_eq!(fs::metadata(&acks).expect("ack log").len(), 40 * 16);
    assert_eq!(next(&q).await.expect("record"), (10, item(10)));
    q.ack(10);
    drop(q);

    let (_q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 0);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(
        fs::metadata(&acks).expect("ack log").len(),
        16,
        "just a floor"
    );
}

#[tokio::test]
async fn the_ack_log_stays_small_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Segments of 8 records, so acked segments go and their acks with them.
    let cfg = small_segments(dir.path(), 8);
    let acks = dir.path().join(acklog::FILE_NAME);
    let (q, _) = open(&cfg);
    let mut largest = 0;
    for round in 0..40 {
        push_items(&q, round * 10..round * 10 + 10).await;
        for (seq, _) in take(&q, 10).await {
            q.ack(seq);
        }
        q.flush().await.expect("flush");
        largest = largest.max(fs::metadata(&acks).expect("ack log").len());
    }
    let bound = 2 * acklog::COMPACT_MIN_ENTRIES * 16;
    assert!(largest <= bound, "{largest} bytes after 400 acks");
    drop(q);
    let (_q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 0);
}

#[tokio::test]
async fn a_second_open_of_the_same_dir_fails_while_the_first_is_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (first, _) = open(&cfg);
    let err = PersistentQueue::open(cfg.clone()).expect_err("second open");
    match &err {
        QueueError::Locked { dir: locked, .. } => assert_eq!(locked, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("process {}", std::process::id())),
        "{msg}"
    );

    // A clone is the same queue, not a second open; the lock goes with the
    // last handle.
    let clone = first.clone();
    drop(first);
    assert!(PersistentQueue::open(cfg.clone()).is_err());
    drop(clone);
    open(&cfg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_with_fsync_are_all_durable() {
    const TASKS: usize = 16;
    const PER_TASK: usize = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueueConfig {
        fsync: true,
        segment_bytes: 40 * FRAME,
        ..config(dir.path())
    };
    {
        let (q, _) = open(&cfg);
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_TASK {
                    seqs.push(q.push(&item(t * 100 + i)).await.expect("push"));
                }
                seqs
            }));
        }
        let mut all = HashSet::new();
        for task in tasks {
            let seqs = task.await.expect("task");
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "one task's pushes keep their order"
            );
            all.extend(seqs);
        }
        assert_eq!(all.len(), TASKS * PER_TASK, "every push got its own seq");
        assert_eq!(q.len(), TASKS * PER_TASK);
    }

    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, (TASKS * PER_TASK) as u64);
    assert_eq!(recovery.corrupted_records, 0);
    let replayed = take(&q, TASKS * PER_TASK).await;
    let mut last_of_task = vec![None; TASKS];
    for (_, payload) in &replayed {
        let text = String::from_utf8(payload.clone()).expect("utf-8");
        let n: usize = text["record-".len()..].parse().expect("number");
        let (t, i) = (n / 100, n % 100);
        assert!(last_of_task[t] < Some(i), "replay keeps push order");
        last_of_task[t] = Some(i);
    }
    assert!(last_of_task.iter().all(|l| *l == Some(PER_TASK - 1)));
}

#[tokio::test]
async fn close_ends_next_and_refuses_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (q, _) = open(&cfg);
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.next().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "nothing to hand out yet");
    q.push(&item(0)).await.expect("push");
    let first = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the push")
        .expect("task");
    assert_eq!(first, Some((0, item(0))));
    push_items(&q, 1..3).await;

    let waiter = tokio::spawn({
        let q = q.clone();
        async move { (q.next().await, q.next().await) }
    });
    // Either both next() calls get records or they are still waiting; close
    // must end whichever is pending.
    q.close();
    let (a, b) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("close woke next()")
        .expect("task");
    let handed: Vec<Seq> = [a, b].into_iter().flatten().map(|(s, _)| s).collect();
    assert!(next(&q).await.is_none());
    assert!(matches!(q.push(&item(3)).await, Err(QueueError::Closed)));
    assert!(matches!(q.wait_for_space().now_or_never(), Some(())));
    // Acks still count after close; the rest stays on disk.
    q.ack(0);
    drop(q);
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 2);
    assert!(handed.iter().all(|s| [1, 2].contains(s)));
    assert_eq!(seqs(&take(&q, 2).await), vec![1, 2]);
}

#[tokio::test]
async fn fsync_false_data_survives_dropping_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = QueueConfig {
        fsync: false,
        ..config(dir.path())
    };
    {
        let (q, _) = open(&cfg);
        push_items(&q, 0..3).await;
    }
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 3);
    assert_eq!(seqs(&take(&q, 3).await), vec![0, 1, 2]);
}

#[tokio::test]
async fn a_cancelled_next_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&config(dir.path()));
    push_items(&q, 0..2).await;
    {
        let fut = q.next();
        tokio::pin!(fut);
        // One poll takes record 0 and starts reading it; then the caller
        // gives up.
        if let std::task::Poll::Ready(got) = futures::poll!(fut.as_mut()) {
            let (seq, _) = got.expect("record");
            q.nack(seq);
        }
    }
    assert_eq!(seqs(&take(&q, 2).await), vec![0, 1]);
}

#[tokio::test]
async fn a_record_damaged_after_open_is_dropped_not_retried_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&config(dir.path()));
    push_items(&q, 0..3).await;
    let files = segment_files(dir.path());
    flip_byte(&files[0], FRAME as usize + segment::HEADER_LEN);
    let got = take(&q, 2).await;
    assert_eq!(seqs(&got), vec![0, 2]);
    assert_eq!(q.len(), 2, "the unreadable record was dropped");
}

#[tokio::test]
async fn an_oversized_record_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = small_segments(dir.path(), 2);
    let big = vec![7u8; 10 * ITEM_LEN];
    {
        let (q, _) = open(&cfg);
        q.push(&item(0)).await.expect("push");
        q.push(&big).await.expect("push");
        q.push(&item(2)).await.expect("push");
        assert_eq!(segment_files(dir.path()).len(), 3);
    }
    let (q, recovery) = open(&cfg);
    assert_eq!(recovery.records, 3);
    let got = take(&q, 3).await;
    assert_eq!(got[1], (1, big));
}

#[test]
fn bad_configs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zero_segments = QueueConfig {
        segment_bytes: 0,
        ..config(dir.path())
    };
    assert!(matches!(
        PersistentQueue::open(zero_segments),
        Err(QueueError::Config(_))
    ));
    assert!(matches!(
        PersistentQueue::open(QueueConfig::new(dir.path(), 3)),
        Err(QueueError::Config(_))
    ));
}

#[test]
fn the_directory_is_created_and_foreign_files_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    let (q, _) = open(&config(&nested));
    drop(q);
    fs::write(nested.join("notes.txt"), b"mine").expect("write");
    let (_q, recovery) = open(&config(&nested));
    assert_eq!(recovery, Recovery::default());
    assert_eq!(fs::read(nested.join("notes.txt")).expect("kept"), b"mine");
}

#[test]
fn futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _) = open(&config(dir.path()));
    is_send(&q.push(b"x"));
    is_send(&q.next());
    is_send(&q.wait_for_space());
    is_send(&q.flush());
}
