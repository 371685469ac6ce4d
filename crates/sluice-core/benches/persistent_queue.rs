//! Throughput, fsync cost and recovery time of the persistent queue, for the
//! figures in docs/reliability.md. Run: `cargo bench -p sluice-core --bench
//! persistent_queue` (optionally with `QUEUE_BENCH_DIR=/path/on/the/disk`).
//!
//! Records are 64 KiB, about one batch of 200-300 realistic spans. Pushes
//! come from 8 tasks at once, as from 8 pipeline callers; each record is
//! acknowledged as soon as it is handed out, as a healthy backend would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::persistent_queue::{PersistentQueue, QueueConfig};

const RECORD: usize = 64 * 1024;
const PUSHERS: usize = 8;

fn config(dir: &Path, fsync: bool) -> QueueConfig {
    QueueConfig {
        dir: dir.to_path_buf(),
        max_bytes: 4 << 30,
        segment_bytes: 8 << 20,
        fsync,
    }
}

fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("QUEUE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sluice-queue-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Pushes `total` records from PUSHERS tasks while one consumer acks them.
async fn push_and_drain(fsync: bool, total: usize) -> (Duration, f64) {
    let dir = scratch(if fsync { "fsync" } else { "nofsync" });
    let (q, _) = PersistentQueue::open(config(&dir, fsync)).expect("open");
    let payload = Arc::new(vec![0x5au8; RECORD]);
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while n < total {
                match q.next().await {
                    Some((seq, _)) => {
                        q.ack(seq);
                        n += 1;
                    }
                    None => break,
                }
            }
        })
    };
    let start = Instant::now();
    let mut pushers = Vec::new();
    for _ in 0..PUSHERS {
        let (q, p) = (q.clone(), payload.clone());
        pushers.push(tokio::spawn(async move {
            for _ in 0..total / PUSHERS {
                q.push(&p).await.expect("push");
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    let pushed = start.elapsed();
    consumer.await.unwrap();
    drop(q);
    let _ = std::fs::remove_dir_all(&dir);
    let mib = (total * RECORD) as f64 / (1024.0 * 1024.0);
    (pushed, mib / pushed.as_secs_f64())
}

/// Fills a queue with `mib` MiB of unacknowledged records, then times open.
async fn recovery(mib: usize) -> (Duration, u64) {
    let dir = scratch("recovery");
    {
        let (q, _) = PersistentQueue::open(config(&dir, false)).expect("open");
        let payload = vec![0x33u8; RECORD];
        for _ in 0..mib * 1024 * 1024 / RECORD {
            q.push(&payload).await.expect("push");
        }
    }
    let start = Instant::now();
    let (q, rec) = PersistentQueue::open(config(&dir, false)).expect("reopen");
    let took = start.elapsed();
    drop(q);
    let _ = std::fs::remove_dir_all(&dir);
    (took, rec.records)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("persistent queue: {RECORD}-byte records, {PUSHERS} concurrent pushers, one acking consumer");
        for fsync in [false, true] {
            let total = if fsync { 2_000 } else { 8_000 };
            let (t, mibs) = push_and_drain(fsync, total).await;
            println!(
                "push fsync={fsync:<5} records={total} time={:.2}s throughput={mibs:.0} MiB/s ({:.0} records/s)",
                t.as_secs_f64(),
                total as f64 / t.as_secs_f64()
            );
        }
        for mib in [64, 256] {
            let (t, records) = recovery(mib).await;
            println!(
                "recovery unacked={mib} MiB records={records} open={:.0} ms",
                t.as_secs_f64() * 1000.0
            );
        }
    });
}
