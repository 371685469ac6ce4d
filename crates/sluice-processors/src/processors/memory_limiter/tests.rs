use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentId, ConsumeError, Consumer, Health, Kind, Lifecycle, ProcessorFactory,
    Telemetry,
};
use sluice_pdata::{Batch, Payload, Signal};

use super::{
    read_rss, Limits, MemoryLimiter, MemoryLimiterConfig, MemoryLimiterFactory, MemorySources, MIB,
};

#[derive(Default)]
struct Recorder {
    items: Mutex<Vec<usize>>,
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.items.lock().unwrap().push(batch.items());
        Ok(())
    }
}

fn spans(n: usize) -> Batch {
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n).map(|_| Span::default()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn ctx(t: &Arc<Telemetry>) -> BuildContext {
    BuildContext {
        id: ComponentId::new("memory_limiter", None),
        kind: Kind::Processor,
        pipeline: Some("traces".into()),
        signal: Some(Signal::Traces),
        telemetry: t.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    }
}

fn mib_config(limit: u64) -> MemoryLimiterConfig {
    MemoryLimiterConfig {
        limit_mib: limit,
        ..Default::default()
    }
}

fn metric(t: &Telemetry, series: &str) -> Option<f64> {
    t.encode().lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

const REFUSED: &str =
    r#"otelcol_processor_refused_spans_total{processor="memory_limiter",pipeline="traces"}"#;

#[tokio::test]
async fn a_tiny_limit_refuses_with_a_retryable_overloaded_error_and_counts() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let rec = Arc::new(Recorder::default());
    let p = MemoryLimiterFactory
        .create(ctx(&t), &mib_config(1), rec.clone())
        .unwrap();
    p.start().await.unwrap();

    let err = p.consume(spans(3)).await.unwrap_err();
    match &err {
        ConsumeError::Retryable {
            reason, overloaded, ..
        } => {
            assert!(*overloaded);
            assert!(reason.contains("memory usage"), "{reason}");
            assert!(reason.contains("soft limit 0.8 MiB"), "{reason}");
            assert!(reason.contains("limit 1.0 MiB"), "{reason}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(p.consume(spans(4)).await.unwrap_err().is_retryable());
    assert!(rec.items.lock().unwrap().is_empty());
    assert_eq!(metric(&t, REFUSED), Some(7.0));

    // After shutdown, late data passes through even though memory is high.
    p.shutdown().await.unwrap();
    assert_eq!(p.consume(spans(2)).await, Ok(()));
    assert_eq!(*rec.items.lock().unwrap(), vec![2]);
    assert_eq!(metric(&t, REFUSED), Some(7.0));
}

#[tokio::test]
async fn a_huge_limit_passes_batches_through() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let rec = Arc::new(Recorder::default());
    let p = MemoryLimiterFactory
        .create(ctx(&t), &mib_config(1 << 30), rec.clone())
        .unwrap();
    p.start().await.unwrap();
    assert_eq!(p.consume(spans(5)).await, Ok(()));
    assert_eq!(p.consume(spans(1)).await, Ok(()));
    assert_eq!(*rec.items.lock().unwrap(), vec![5, 1]);
    assert_eq!(metric(&t, REFUSED), Some(0.0));
    p.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusing_follows_the_sampled_usage() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let rec = Arc::new(Recorder::default());
    let cfg = MemoryLimiterConfig {
        limit_mib: 1 << 30,
        spike_limit_mib: 100,
        ..Default::default()
    };
    let p = MemoryLimiter::new(&ctx(&t), &cfg, rec.clone(), MemorySources::default());
    p.start().await.unwrap();
    let soft = p.limits().unwrap().soft();
    assert_eq!(soft, ((1 << 30) - 100) * MIB);

    p.state.update(soft + 1);
    assert!(p.consume(spans(1)).await.unwrap_err().is_retryable());
    p.state.update(soft);
    assert_eq!(p.consume(spans(1)).await, Ok(()));
    p.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_background_task_samples_every_check_interval() {
    let t = Telemetry::new(MetricsLevel::Normal);
    let rec = Arc::new(Recorder::default());
    let cfg = MemoryLimiterConfig {
        check_interval: Duration::from_secs(5),
        limit_mib: 1 << 30,
        ..Default::default()
    };
    let p = MemoryLimiter::new(&ctx(&t), &cfg, rec.clone(), MemorySources::default());
    p.start().await.unwrap();
    // Pretend usage spiked; the next sample (real, far below the limit)
    // must clear it.
    p.state.update(u64::MAX);
    assert!(p.consume(spans(1)).await.is_err());
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(p.consume(spans(1)).await, Ok(()));
    p.shutdown().await.unwrap();
}

#[test]
fn rss_is_read_from_proc() {
    let rss = read_rss().unwrap();
    // A running test binary has more than a megabyte resident and less than
    // a terabyte.
    assert!(rss > MIB, "{rss}");
    assert!(rss < (1 << 40), "{rss}");
}

fn write(dir: &std::path::Path, name: &str, content: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

const MEMINFO: &str = "MemTotal:       16318788 kB\nMemFree:         1234567 kB\n";
const MEMINFO_BYTES: u64 = 16318788 * 1024;

#[test]
fn total_memory_prefers_a_numeric_cgroup_v2_limit() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemorySources {
        cgroup_v2_max: write(dir.path(), "memory.max", "536870912\n"),
        cgroup_v1_limit: write(dir.path(), "limit_in_bytes", "1073741824\n"),
        meminfo: write(dir.path(), "meminfo", MEMINFO),
    };
    assert_eq!(src.total_memory(), Ok(512 * MIB));
}

#[test]
fn total_memory_falls_back_to_cgroup_v1_then_meminfo() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = MemorySources {
        cgroup_v2_max: write(dir.path(), "memory.max", "max\n"),
        cgroup_v1_limit: write(dir.path(), "limit_in_bytes", "1073741824\n"),
        meminfo: write(dir.path(), "meminfo", MEMINFO),
    };
    assert_eq!(src.total_memory(), Ok(1024 * MIB));

    // cgroup v1's "unlimited" is a huge number: MemTotal is the bound.
    src.cgroup_v1_limit = write(dir.path(), "limit_in_bytes", "9223372036854771712\n");
    assert_eq!(src.total_memory(), Ok(MEMINFO_BYTES));

    src.cgroup_v1_limit = dir.path().join("absent");
    assert_eq!(src.total_memory(), Ok(MEMINFO_BYTES));

    src.meminfo = write(dir.path(), "meminfo", "garbage\n");
    let err = src.total_memory().unwrap_err();
    assert!(err.contains("MemTotal"), "{err}");
}

#[test]
fn percentages_are_of_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let src = MemorySources {
        cgroup_v2_max: write(dir.path(), "memory.max", "1073741824\n"),
        cgroup_v1_limit: dir.path().join("absent"),
        meminfo: write(dir.path(), "meminfo", MEMINFO),
    };
    let cfg = MemoryLimiterConfig {
        limit_percentage: 50,
        spike_limit_percentage: 10,
        ..Default::default()
    };
    let l = Limits::resolve(&cfg, || src.total_memory()).unwrap();
    assert_eq!(l.limit, 512 * MIB);
    assert_eq!(l.spike, 1024 * MIB / 10);

    // Without a spike percentage, the spike is 20% of the limit.
    let cfg = MemoryLimiterConfig {
        limit_percentage: 50,
        ..Default::default()
    };
    let l = Limits::resolve(&cfg, || src.total_memory()).unwrap();
    assert_eq!(l.spike, l.limit / 5);
}

#[test]
fn percentages_of_the_real_machine() {
    let real = MemorySources::default();
    let total = real.total_memory().unwrap();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(total > 0);
    assert!(total <= kb * 1024);
    let cfg = MemoryLimiterConfig {
        limit_percentage: 80,
        ..Default::default()
    };
    let l = Limits::resolve(&cfg, || real.total_memory()).unwrap();
    assert_eq!(l.limit, (total as u128 * 80 / 100) as u64);
}

#[test]
fn mib_limits_and_default_spike() {
    let l = Limits::resolve(&mib_config(1000), || unreachable!()).unwrap();
    assert_eq!(l.limit, 1000 * MIB);
    assert_eq!(l.spike, 200 * MIB);
    assert_eq!(l.soft(), 800 * MIB);
}

#[test]
fn config_validation() {
    let check = |yaml: &str| -> Vec<(String, String)> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        parse_config::<MemoryLimiterConfig>(&v)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    };
    let paths = |yaml: &str| check(yaml).into_iter().map(|(p, _)| p).collect::<Vec<_>>();

    assert!(check("limit_mib: 400").is_empty());
    assert!(check("limit_mib: 400\nspike_limit_mib: 100\ncheck_interval: 5s").is_empty());
    assert!(check("limit_percentage: 80\nspike_limit_percentage: 20").is_empty());

    assert_eq!(paths(""), vec!["limit_mib"]);
    assert_eq!(paths("limit_mib: 0"), vec!["limit_mib"]);
    assert_eq!(
        paths("limit_mib: 100\nlimit_percentage: 50"),
        vec!["limit_percentage"]
    );
    assert_eq!(
        paths("limit_mib: 100\nspike_limit_mib: 100"),
        vec!["spike_limit_mib"]
    );
    assert_eq!(
        paths("limit_percentage: 50\nspike_limit_percentage: 60"),
        vec!["spike_limit_percentage"]
    );
    assert_eq!(paths("limit_percentage: 150"), vec!["limit_percentage"]);
    assert_eq!(
        paths("limit_mib: 100\nspike_limit_percentage: 10"),
        vec!["spike_limit_percentage"]
    );
    assert_eq!(
        paths("limit_percentage: 50\nspike_limit_mib: 10"),
        vec!["spike_limit_mib"]
    );
    assert_eq!(
        paths("limit_mib: 100\ncheck_interval: 0s"),
        vec!["check_interval"]
    );
    assert_eq!(paths("limit_mib: 100\nballast_size_mib: 10").len(), 1);

    let cfg: MemoryLimiterConfig = serde_yaml_ng::from_str("limit_mib: 10").unwrap();
    assert_eq!(cfg.check_interval, Duration::from_secs(1));
    assert_eq!(cfg.spike_limit_mib, 0);
}
