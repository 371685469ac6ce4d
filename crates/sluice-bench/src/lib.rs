//! sluice's benchmark harness: `sluice-loadgen` sends pre-encoded OTLP
//! requests, `sluice-sink` receives and counts them; `scripts/bench` runs
//! collectors between the two and compares them. See BENCHMARKS.md.

pub mod codec;
pub mod gen;
pub mod latency;
pub mod procfs;
pub mod template;
pub mod wire;
