//! Configuration of the `filelog` receiver, with the OpenTelemetry
//! Collector's keys for the subset sluice implements. See
//! `docs/components/receiver-filelog.md` for the reference.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sluice_core::{ComponentConfig, ExtensionRef, FieldError};

use super::glob::Pattern;

/// Default `poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default `max_log_size`: 1 MiB.
pub const DEFAULT_MAX_LOG_SIZE: u64 = 1024 * 1024;
/// Default `fingerprint_size`: 1 KiB.
pub const DEFAULT_FINGERPRINT_SIZE: u64 = 1024;
/// Default `force_flush_period`.
pub const DEFAULT_FORCE_FLUSH_PERIOD: Duration = Duration::from_millis(500);
/// Default `max_concurrent_files`.
pub const DEFAULT_MAX_CONCURRENT_FILES: usize = 1024;
/// Default `max_batch_size` (log records per batch handed downstream).
pub const DEFAULT_MAX_BATCH_SIZE: usize = 1024;
/// Default `max_batches_in_flight`.
pub const DEFAULT_MAX_BATCHES_IN_FLIGHT: usize = 8;
/// Smallest `fingerprint_size` accepted: shorter prefixes tell files apart
/// too poorly.
pub const MIN_FINGERPRINT_SIZE: u64 = 16;

/// `start_at`: where a file found at start-up is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written after the receiver started (the Collector's default).
    #[default]
    End,
    /// Everything already in the file.
    Beginning,
}

/// `encoding`: how the bytes of a line become the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Body is a string; invalid UTF-8 is replaced by U+FFFD and counted.
    #[default]
    Utf8,
    /// Body is the raw bytes (`bytes_value`), no decoding.
    Nop,
}

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" | "" => Ok(Encoding::Utf8),
            "nop" => Ok(Encoding::Nop),
            other => Err(serde::de::Error::custom(format!(
                "unsupported encoding {other:?}: sluice reads utf-8 (default) or nop (raw bytes)"
            ))),
        }
    }
}

/// A size in bytes: an integer, or a number with a unit (`1MiB`, `64kb`,
/// `16KiB`; case-insensitive; `kb`/`mb`/`gb` are powers of 1000, `kib`/`mib`/
/// `gib` powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let mult: u64 = match unit.as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "kib" | "ki" => 1 << 10,
            "mb" | "m" => 1_000_000,
            "mib" | "mi" => 1 << 20,
            "gb" | "g" => 1_000_000_000,
            "gib" | "gi" => 1 << 30,
            _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("invalid size {s:?}"));
        }
        Ok(bytes as u64)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `retry_on_failure`: what happens when the pipeline refuses a batch with a
/// retryable error. Unlike the Collector (where it is off by default and a
/// refused batch is dropped), sluice retries by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Default true. False: a refused batch is dropped and counted as refused.
    pub enabled: bool,
    /// First wait after a refusal. Default 1s.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between attempts (the wait doubles). Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch (drop it, counted as refused) after this long.
    /// Default 0: never give up; reading stops while a batch is refused.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::ZERO,
        }
    }
}

/// One entry of `operators`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operator {
    /// Parses the body as a JSON object into the record's attributes; the
    /// body is kept. A line that is not a JSON object is passed on unparsed
    /// and counted.
    JsonParser {
        /// Operator id (accepted for compatibility; unused).
        #[serde(default)]
        id: Option<String>,
        /// Where the parsed fields go: only `attributes` is supported.
        #[serde(default = "default_parse_to")]
        parse_to: String,
        /// What to do with a line that does not parse: `send` (default) or
        /// `drop` (counted). `send_quiet`/`drop_quiet` are the same without a
        /// log line.
        #[serde(default = "default_on_error")]
        on_error: String,
    },
}

fn default_parse_to() -> String {
    "attributes".to_string()
}
fn default_on_error() -> String {
    "send".to_string()
}

/// `receivers: filelog:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of the files to read (required). `*`, `?`, `[...]`,
    /// `{a,b}` and `**` (any number of directories).
    pub include: Vec<String>,
    /// Glob patterns of files not to read, even if `include` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where files found at start-up are read from: `end` (default) or
    /// `beginning`. Files that appear later are always read from their start;
    /// a file with a stored offset resumes there.
    #[serde(default)]
    pub start_at: StartAt,
    /// How often the globs are expanded and files checked for new data.
    /// Default 200ms.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest body; longer lines are cut to this size (at a UTF-8 character
    /// boundary) and counted. Default 1MiB.
    #[serde(default = "default_max_log_size")]
    pub max_log_size: ByteSize,
    /// How many leading bytes identify a file across renames. Default 1KiB.
    #[serde(default = "default_fingerprint_size")]
    pub fingerprint_size: ByteSize,
    /// A last line without newline is sent as it is once the file has not
    /// grown for this long. Default 500ms; 0 holds it until its newline comes.
    #[serde(default = "default_force_flush_period", with = "humantime_serde")]
    pub force_flush_period: Duration,
    /// `utf-8` (default) or `nop`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Add `log.file.name` (the file's base name). Default true.
    #[serde(default = "default_true")]
    pub include_file_name: bool,
    /// Add `log.file.path` (the path as matched). Default false.
    #[serde(default)]
    pub include_file_path: bool,
    /// Most files kept open at once. Default 1024.
    #[serde(default = "default_max_concurrent_files")]
    pub max_concurrent_files: usize,
    /// A storage extension id (`file_storage`) where read offsets are kept,
    /// so a restart resumes where the last run stopped. Default none.
    #[serde(default)]
    pub storage: Option<String>,
    /// Static attributes added to every record.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Static resource attributes of every batch.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Processing of each line: `json_parser` only.
    #[serde(default)]
    pub operators: Vec<Operator>,
    /// Behaviour when the pipeline refuses a batch.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// sluice: most log records per batch handed to the pipeline. Default 1024.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// sluice: batches handed to the pipeline and not yet accepted, at most.
    /// Reading pauses at this bound. Default 8.
    #[serde(default = "default_max_batches_in_flight")]
    pub max_batches_in_flight: usize,
}

fn default_true() -> bool {
    true
}
fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}
fn default_max_log_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_LOG_SIZE)
}
fn default_fingerprint_size() -> ByteSize {
    ByteSize(DEFAULT_FINGERPRINT_SIZE)
}
fn default_force_flush_period() -> Duration {
    DEFAULT_FORCE_FLUSH_PERIOD
}
fn default_max_concurrent_files() -> usize {
    DEFAULT_MAX_CONCURRENT_FILES
}
fn default_max_batch_size() -> usize {
    DEFAULT_MAX_BATCH_SIZE
}
fn default_max_batches_in_flight() -> usize {
    DEFAULT_MAX_BATCHES_IN_FLIGHT
}

impl Config {
    /// A config reading `include` with every other setting at its default.
    pub fn new(include: Vec<String>) -> Config {
        Config {
            include,
            exclude: Vec::new(),
            start_at: StartAt::End,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_log_size: ByteSize(DEFAULT_MAX_LOG_SIZE),
            fingerprint_size: ByteSize(DEFAULT_FINGERPRINT_SIZE),
            force_flush_period: DEFAULT_FORCE_FLUSH_PERIOD,
            encoding: Encoding::Utf8,
            include_file_name: true,
            include_file_path: false,
            max_concurrent_files: DEFAULT_MAX_CONCURRENT_FILES,
            storage: None,
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            operators: Vec::new(),
            retry_on_failure: RetryConfig::default(),
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_batches_in_flight: DEFAULT_MAX_BATCHES_IN_FLIGHT,
        }
    }

    /// True when a `json_parser` operator is configured.
    pub fn json_parser(&self) -> Option<&Operator> {
        self.operators.first()
    }
}

impl ComponentConfig for Config {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push(FieldError::new("include", "list at least one glob pattern"));
        }
        for (key, list) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in list.iter().enumerate() {
                if let Err(e) = Pattern::new(p) {
                    errors.push(FieldError::new(format!("{key}::{i}"), e));
                } else if key == "include" && !p.starts_with('/') {
                    errors.push(FieldError::new(
                        format!("{key}::{i}"),
                        format!("{p:?} must be an absolute path"),
                    ));
                }
            }
        }
        if self.poll_interval.is_zero() {
            errors.push(FieldError::new("poll_interval", "must be more than 0"));
        }
        if self.max_log_size.0 == 0 {
            errors.push(FieldError::new("max_log_size", "must be at least 1 byte"));
        } else if self.max_log_size.0 > 1 << 30 {
            errors.push(FieldError::new("max_log_size", "must be at most 1GiB"));
        }
        if self.fingerprint_size.0 < MIN_FINGERPRINT_SIZE {
            errors.push(FieldError::new(
                "fingerprint_size",
                format!("must be at least {MIN_FINGERPRINT_SIZE} bytes"),
            ));
        } else if self.fingerprint_size.0 > 1 << 20 {
            errors.push(FieldError::new("fingerprint_size", "must be at most 1MiB"));
        }
        if self.max_concurrent_files == 0 {
            errors.push(FieldError::new(
                "max_concurrent_files",
                "must be at least 1",
            ));
        }
        if self.max_batch_size == 0 {
            errors.push(FieldError::new("max_batch_size", "must be at least 1"));
        }
        if self.max_batches_in_flight == 0 {
            errors.push(FieldError::new(
                "max_batches_in_flight",
                "must be at least 1",
            ));
        }
        if let Some(s) = &self.storage {
            if let Err(e) = sluice_core::ComponentId::parse(s) {
                errors.push(FieldError::new("storage", e));
            }
        }
        let r = &self.retry_on_failure;
        if r.enabled && r.initial_interval.is_zero() {
            errors.push(FieldError::new(
                "retry_on_failure::initial_interval",
                "must be more than 0",
            ));
        }
        if r.enabled && r.max_interval < r.initial_interval {
            errors.push(FieldError::new(
                "retry_on_failure::max_interval",
                "must be at least initial_interval",
            ));
        }
        for (key, map) in [
            ("attributes", &self.attributes),
            ("resource", &self.resource),
        ] {
            for (k, v) in map {
                if v.trim_start().starts_with("EXPR(") {
                    errors.push(FieldError::new(
                        format!("{key}::{k}"),
                        "expressions (EXPR(...)) are not supported; use a plain string",
                    ));
                }
            }
        }
        if self.operators.len() > 1 {
            errors.push(FieldError::new(
                "operators",
                "at most one operator (json_parser) is supported",
            ));
        }
        for (i, op) in self.operators.iter().enumerate() {
            let Operator::JsonParser {
                parse_to, on_error, ..
            } = op;
            if parse_to != "attributes" {
                errors.push(FieldError::new(
                    format!("operators::{i}::parse_to"),
                    format!("only `attributes` is supported, got {parse_to:?}"),
                ));
            }
            if !matches!(
                on_error.as_str(),
                "send" | "send_quiet" | "drop" | "drop_quiet"
            ) {
                errors.push(FieldError::new(
                    format!("operators::{i}::on_error"),
                    format!("must be send, send_quiet, drop or drop_quiet, got {on_error:?}"),
                ));
            }
        }
        errors
    }

    fn extension_refs(&self) -> Vec<ExtensionRef> {
        self.storage
            .iter()
            .map(|id| ExtensionRef {
                path: "storage".to_string(),
                id: id.clone(),
            })
            .collect()
    }
}
