//! Log setup: `service.telemetry.logs` picks level and encoding; a `RUST_LOG`
//! environment variable, when set, overrides the level filter.

use std::io::IsTerminal;

use sluice_core::config::{LogEncoding, LogsConfig};
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &LogsConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => EnvFilter::try_new(&s)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={s:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(&cfg.level).map_err(|e| {
            anyhow::anyhow!(
                "service::telemetry::logs::level: {:?} is not a valid level or filter: {e}",
                cfg.level
            )
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into files or pipes.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match cfg.encoding {
        LogEncoding::Console => builder.try_init(),
        LogEncoding::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
