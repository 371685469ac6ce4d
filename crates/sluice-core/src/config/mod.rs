//! The configuration model: OpenTelemetry-Collector-compatible YAML.
//!
//! Loading is three pure steps, each reporting every problem it finds:
//! 1. [`load`]: read each file, parse YAML (syntax errors carry file, line and
//!    column), merge the files in order (maps merge key by key, later files
//!    win; lists and scalars are replaced);
//! 2. [`expand`]: `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` in string
//!    values, `$$` for a literal `$`;
//! 3. [`validate`]: parse every component's config with its factory, check
//!    the service graph, and return a [`ValidConfig`] the engine builds from.
//!
//! `sluice validate` runs exactly these steps; `sluice run` runs them and then
//! builds. Errors name their place with `::`-joined paths, as the
//! OpenTelemetry Collector does (`exporters::otlp/2::endpoint`).

mod endpoint;
mod expand;
mod load;
mod validate;

pub use endpoint::check_endpoint;
pub use expand::expand;
pub use load::{load, load_str, merge, Source};
pub use validate::{
    validate, LogEncoding, LogsConfig, MetricsConfig, Pipeline, PipelineId, TelemetryConfig,
    ValidComponent, ValidConfig,
};

use std::fmt;

/// One problem in the configuration, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `::`-joined path (`receivers::otlp::protocols`), or a file name for
    /// problems that precede the model (unreadable file, YAML syntax).
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Joins a parent path and a child key with `::`.
pub(crate) fn join(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}::{child}"),
    }
}

#[cfg(test)]
mod tests;
