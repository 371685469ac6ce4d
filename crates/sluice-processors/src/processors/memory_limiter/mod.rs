//! The `memory_limiter` processor: refuses data while the process uses too
//! much memory, so that receivers answer "retry later" instead of the
//! process growing until the kernel kills it.
//!
//! **What it does.** A background task reads the process's resident set size
//! (`/proc/self/statm`, resident pages × page size) every `check_interval`.
//! While it is above the *soft limit* (`limit - spike`), `consume` refuses
//! every batch with a retryable, overloaded [`ConsumeError`] that names the
//! usage and the limit; receivers turn it into gRPC `UNAVAILABLE` / HTTP 429.
//! Refused items are counted in `otelcol_processor_refused_<items>`. Below
//! the soft limit, batches pass to the next consumer untouched.
//!
//! **Guarantees.** The limit is checked once synchronously in `start`, so the
//! state is right from the first batch. A refusal never drops data silently:
//! the client is told to retry. After `shutdown` every batch passes through,
//! so data accepted during shutdown reaches the exporters.
//!
//! **Limits.** Memory is sampled, not tracked: between two checks usage can
//! grow past the limit by whatever arrives meanwhile (that is what the spike
//! margin is for). Rust has no garbage collector to force, so there is no
//! separate hard-limit action. Percentages are of the cgroup limit
//! (`/sys/fs/cgroup/memory.max` for cgroup v2, then cgroup v1's
//! `memory.limit_in_bytes`) when it is below the machine's `MemTotal`, else
//! of `MemTotal`. Each instance (one per pipeline) samples on its own.
//! Linux only (it reads `/proc`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, ComponentError, ConsumeError, Consumer, ConsumerRef,
    FieldError, Lifecycle, Processor, ProcessorFactory, Registry, Stability,
};
use sluice_pdata::{Batch, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The configured type name.
pub const TYPE: &str = "memory_limiter";

const MIB: u64 = 1024 * 1024;

fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

/// Configuration of the `memory_limiter` processor. Exactly one of
/// `limit_mib` and `limit_percentage` must be set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// How often the process's memory is read. Default 1s; must be > 0.
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
    /// Memory limit in MiB (0 = not set).
    #[serde(default)]
    pub limit_mib: u64,
    /// Margin below `limit_mib` at which refusing starts, in MiB. Default
    /// (0): 20% of the limit. Must be below `limit_mib`.
    #[serde(default)]
    pub spike_limit_mib: u64,
    /// Memory limit as a percentage of total memory, 1-100 (0 = not set).
    #[serde(default)]
    pub limit_percentage: u64,
    /// Margin as a percentage of total memory. Default (0): 20% of the
    /// limit. Must be below `limit_percentage`.
    #[serde(default)]
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: default_check_interval(),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

impl ComponentConfig for MemoryLimiterConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.check_interval.is_zero() {
            errors.push(FieldError::new("check_interval", "must be greater than 0"));
        }
        match (self.limit_mib > 0, self.limit_percentage > 0) {
            (false, false) => errors.push(FieldError::new(
                "limit_mib",
                "one of limit_mib or limit_percentage must be set (greater than 0)",
            )),
            (true, true) => errors.push(FieldError::new(
                "limit_percentage",
                "set either limit_mib or limit_percentage, not both",
            )),
            (true, false) => {
                if self.spike_limit_mib >= self.limit_mib {
                    errors.push(FieldError::new(
                        "spike_limit_mib",
                        format!(
                            "must be less than limit_mib ({}), got {}",
                            self.limit_mib, self.spike_limit_mib
                        ),
                    ));
                }
                if self.spike_limit_percentage > 0 {
                    errors.push(FieldError::new(
                        "spike_limit_percentage",
                        "goes with limit_percentage; with limit_mib use spike_limit_mib",
                    ));
                }
            }
            (false, true) => {
                if self.limit_percentage > 100 {
                    errors.push(FieldError::new(
                        "limit_percentage",
                        format!("must be at most 100, got {}", self.limit_percentage),
                    ));
                }
                if self.spike_limit_percentage >= self.limit_percentage {
                    errors.push(FieldError::new(
                        "spike_limit_percentage",
                        format!(
                            "must be less than limit_percentage ({}), got {}",
                            self.limit_percentage, self.spike_limit_percentage
                        ),
                    ));
                }
                if self.spike_limit_mib > 0 {
                    errors.push(FieldError::new(
                        "spike_limit_mib",
                        "goes with limit_mib; with limit_percentage use spike_limit_percentage",
                    ));
                }
            }
        }
        errors
    }
}

/// The limits in bytes, resolved at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub limit: u64,
    pub spike: u64,
}

impl Limits {
    /// Usage above this is refused.
    pub fn soft(&self) -> u64 {
        self.limit.saturating_sub(self.spike)
    }

    /// Resolves `cfg` to bytes; `total` is asked for only with percentages.
    pub fn resolve(
        cfg: &MemoryLimiterConfig,
        total: impl FnOnce() -> Result<u64, String>,
    ) -> Result<Limits, String> {
        if cfg.limit_mib > 0 {
            let limit = cfg.limit_mib.saturating_mul(MIB);
            let spike = if cfg.spike_limit_mib > 0 {
                cfg.spike_limit_mib.saturating_mul(MIB)
            } else {
                limit / 5
            };
            return Ok(Limits { limit, spike });
        }
        if cfg.limit_percentage == 0 {
            return Err("neither limit_mib nor limit_percentage is set".into());
        }
        let total = total()?;
        let percent = |p: u64| (u128::from(total) * u128::from(p) / 100) as u64;
        let limit = percent(cfg.limit_percentage);
        let spike = if cfg.spike_limit_percentage > 0 {
            percent(cfg.spike_limit_percentage)
        } else {
            limit / 5
        };
        Ok(Limits { limit, spike })
    }
}

/// Where total memory is read from; the real files by default, others in
/// tests.
#[derive(Debug, Clone)]
pub(crate) struct MemorySources {
    pub cgroup_v2_max: PathBuf,
    pub cgroup_v1_limit: PathBuf,
    pub meminfo: PathBuf,
}

impl Default for MemorySources {
    fn default() -> Self {
        MemorySources {
            cgroup_v2_max: "/sys/fs/cgroup/memory.max".into(),
            cgroup_v1_limit: "/sys/fs/cgroup/memory/memory.limit_in_bytes".into(),
            meminfo: "/proc/meminfo".into(),
        }
    }
}

/// A number in a cgroup file (`max` and unreadable files give `None`).
fn read_cgroup_number(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

/// `MemTotal` of a `/proc/meminfo`-style file, in bytes.
fn read_mem_total(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        let factor = match parts.next() {
            Some("kB") | Some("KB") | Some("kb") => 1024,
            None => 1,
            Some(_) => return None,
        };
        Some(value.saturating_mul(factor))
    })
}

impl MemorySources {
    /// Total memory available to the process, in bytes: the cgroup limit
    /// (v2, else v1) when it is below `MemTotal`, else `MemTotal`.
    pub fn total_memory(&self) -> Result<u64, String> {
        let cgroup = read_cgroup_number(&self.cgroup_v2_max)
            .or_else(|| read_cgroup_number(&self.cgroup_v1_limit))
            .filter(|&n| n > 0);
        let mem_total = read_mem_total(&self.meminfo).filter(|&n| n > 0);
        match (cgroup, mem_total) {
            (Some(c), Some(m)) => Ok(c.min(m)),
            (Some(c), None) => Ok(c),
            (None, Some(m)) => Ok(m),
            (None, None) => Err(format!(
                "cannot determine total memory: no numeric limit in {} or {}, and no MemTotal in {}",
                self.cgroup_v2_max.display(),
                self.cgroup_v1_limit.display(),
                self.meminfo.display()
            )),
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Resident set size of this process, in bytes, from `/proc/self/statm`.
pub(crate) fn read_rss() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("cannot read /proc/self/statm: {e}"))?;
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected /proc/self/statm content {:?}", text.trim()))?;
    Ok(pages.saturating_mul(page_size()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Registers the `memory_limiter` processor.
pub fn register(r: &mut Registry) {
    r.processor(MemoryLimiterFactory);
}

/// Factory of the `memory_limiter` processor.
pub struct MemoryLimiterFactory;

impl ProcessorFactory for MemoryLimiterFactory {
    type Config = MemoryLimiterConfig;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &MemoryLimiterConfig,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        Ok(Arc::new(MemoryLimiter::new(
            &ctx,
            config,
            next,
            MemorySources::default(),
        )))
    }
}

/// State shared by the processor and its sampling task.
struct State {
    id: String,
    pipeline: String,
    limits: OnceLock<Limits>,
    refusing: AtomicBool,
    rss: AtomicU64,
}

impl State {
    /// Records a sample and logs a change of state.
    fn update(&self, rss: u64) {
        let Some(limits) = self.limits.get() else {
            return;
        };
        self.rss.store(rss, Ordering::Relaxed);
        let over = rss > limits.soft();
        let was = self.refusing.swap(over, Ordering::AcqRel);
        if over && !was {
            tracing::warn!(
                processor = %self.id,
                pipeline = %self.pipeline,
                usage_mib = format_args!("{:.1}", mib(rss)),
                soft_limit_mib = format_args!("{:.1}", mib(limits.soft())),
                limit_mib = format_args!("{:.1}", mib(limits.limit)),
                "memory usage is above the soft limit; refusing data"
            );
        } else if !over && was {
            tracing::info!(
                processor = %self.id,
                pipeline = %self.pipeline,
                usage_mib = format_args!("{:.1}", mib(rss)),
                soft_limit_mib = format_args!("{:.1}", mib(limits.soft())),
                "memory usage is back below the soft limit; accepting data"
            );
        }
    }

    fn check(&self) {
        match read_rss() {
            Ok(rss) => self.update(rss),
            Err(e) => {
                tracing::warn!(processor = %self.id, error = %e, "cannot read memory usage")
            }
        }
    }
}

/// One `memory_limiter` instance (one per pipeline).
pub struct MemoryLimiter {
    config: MemoryLimiterConfig,
    sources: MemorySources,
    next: ConsumerRef,
    state: Arc<State>,
    /// `otelcol_processor_refused_<items>`, by signal.
    refused: [Option<Counter>; 3],
    stop: CancellationToken,
    stopped: AtomicBool,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MemoryLimiter {
    pub(crate) fn new(
        ctx: &BuildContext,
        config: &MemoryLimiterConfig,
        next: ConsumerRef,
        sources: MemorySources,
    ) -> MemoryLimiter {
        let id = ctx.id.to_string();
        let pipeline = ctx.pipeline.clone().unwrap_or_default();
        let refused = Signal::ALL.map(|s| {
            if ctx.signal.is_some_and(|own| own != s) {
                return None;
            }
            let item = s.item_name();
            Some(ctx.telemetry.counter(
                &format!("otelcol_processor_refused_{item}"),
                &format!("Number of {item} refused by the processor"),
                &[("processor", id.as_str()), ("pipeline", pipeline.as_str())],
            ))
        });
        MemoryLimiter {
            config: config.clone(),
            sources,
            next,
            state: Arc::new(State {
                id,
                pipeline,
                limits: OnceLock::new(),
                refusing: AtomicBool::new(false),
                rss: AtomicU64::new(0),
            }),
            refused,
            stop: CancellationToken::new(),
            stopped: AtomicBool::new(false),
            task: tokio::sync::Mutex::new(None),
        }
    }

    /// The resolved limits, once started.
    #[cfg(test)]
    pub(crate) fn limits(&self) -> Option<Limits> {
        self.state.limits.get().copied()
    }

    fn refusal(&self) -> ConsumeError {
        let rss = self.state.rss.load(Ordering::Relaxed);
        let (soft, limit) = self
            .state
            .limits
            .get()
            .map_or((0, 0), |l| (l.soft(), l.limit));
        ConsumeError::overloaded(format!(
            "processor {}: memory usage {:.1} MiB is above the soft limit {:.1} MiB (limit {:.1} MiB)",
            self.state.id,
            mib(rss),
            mib(soft),
            mib(limit)
        ))
    }
}

#[async_trait]
impl Lifecycle for MemoryLimiter {
    async fn start(&self) -> Result<(), ComponentError> {
        let sources = self.sources.clone();
        let limits = Limits::resolve(&self.config, || sources.total_memory())
            .map_err(|e| ComponentError::new(format!("processor {}: {e}", self.state.id)))?;
        if limits.limit == 0 {
            return Err(ComponentError::new(format!(
                "processor {}: the memory limit resolves to 0 bytes",
                self.state.id
            )));
        }
        self.state.limits.set(limits).map_err(|_| {
            ComponentError::new(format!("processor {} started twice", self.state.id))
        })?;
        tracing::debug!(
            processor = %self.state.id,
            pipeline = %self.state.pipeline,
            limit_mib = format_args!("{:.1}", mib(limits.limit)),
            soft_limit_mib = format_args!("{:.1}", mib(limits.soft())),
            "memory limiter started"
        );
        self.state.check();

        let state = self.state.clone();
        let stop = self.stop.clone();
        let period = self.config.check_interval.max(Duration::from_millis(1));
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticks.tick() => state.check(),
                }
            }
        });
        *self.task.lock().await = Some(handle);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stopped.store(true, Ordering::Release);
        self.stop.cancel();
        if let Some(h) = self.task.lock().await.take() {
            let _ = h.await;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for MemoryLimiter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.state.refusing.load(Ordering::Acquire) && !self.stopped.load(Ordering::Acquire) {
            if let Some(c) = &self.refused[batch.signal() as usize] {
                c.inc_by(batch.items() as u64);
            }
            return Err(self.refusal());
        }
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
