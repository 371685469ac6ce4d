//! Configuration of the `kinesis` receiver.

use std::time::Duration;

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use serde::Deserialize;
use sluice_core::{ComponentConfig, ExtensionRef, FieldError};

use super::decode::Encoding;
use super::validate::ValidationConfig;

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InitialPosition {
    /// Records written after the receiver started (Haystack's default).
    #[default]
    #[serde(rename = "LATEST", alias = "latest")]
    Latest,
    /// The oldest record still in the stream.
    #[serde(rename = "TRIM_HORIZON", alias = "trim_horizon")]
    TrimHorizon,
    /// Records written at or after `initial_timestamp`.
    #[serde(rename = "AT_TIMESTAMP", alias = "at_timestamp")]
    AtTimestamp,
}

fn default_max_records() -> i32 {
    2000
}
fn default_idle() -> Duration {
    Duration::from_millis(500)
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_shard_sync_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_in_flight() -> usize {
    4
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(10)
}
fn default_lease_table() -> String {
    "sluice_kinesis_leases".to_string()
}

/// The `kinesis` receiver's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisReceiverConfig {
    /// The stream to read (required).
    pub stream_name: String,
    /// AWS region; default: the SDK's region chain (`AWS_REGION`, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (a Kinesis-compatible server); default (or
    /// empty): AWS's endpoint for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A role to assume (STS) with the standard chain's credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `LATEST` (default), `TRIM_HORIZON` or `AT_TIMESTAMP`.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// With `AT_TIMESTAMP`: an RFC 3339 time (`2026-11-01T00:00:00Z`).
    #[serde(default)]
    pub initial_timestamp: Option<String>,
    /// Records per GetRecords call, 1 to 10000 (default 2000).
    #[serde(default = "default_max_records")]
    pub max_records: i32,
    /// Wait between reads of a shard that is caught up (default 500ms).
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_time_between_reads: Duration,
    /// How often a shard's accepted position is written (default 15s).
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often the shard list is read for resharding (default 10s).
    #[serde(default = "default_shard_sync_interval", with = "humantime_serde")]
    pub shard_sync_interval: Duration,
    /// GetRecords results of one shard in the pipeline at once (default 4).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// What each (de-aggregated) record holds (default `haystack_proto`).
    #[serde(default)]
    pub encoding: Encoding,
    /// A storage extension (`file_storage`) keeping the checkpoints when
    /// there are no `leases`. Default none: checkpoints only in memory.
    #[serde(default)]
    pub storage: Option<String>,
    /// Haystack span validation (haystack encodings only).
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Shard leases shared by several sluice instances (default none: this
    /// instance reads every shard).
    #[serde(default)]
    pub leases: Option<LeaseConfig>,
}

/// Shard leases in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// PostgreSQL URL (`postgres://user@host:5432/db?sslmode=require`).
    pub postgres: String,
    /// Table of leases and checkpoints; created when missing
    /// (default `sluice_kinesis_leases`).
    #[serde(default = "default_lease_table")]
    pub table: String,
    /// Instances with the same `application` share a stream's shards;
    /// default: the stream name and the receiver id.
    #[serde(default)]
    pub application: Option<String>,
    /// This instance's name in the table; default host name, process id
    /// and a random suffix.
    #[serde(default)]
    pub owner: Option<String>,
    /// A lease not renewed for this long is taken over (default 10s).
    #[serde(default = "default_lease_duration", with = "humantime_serde")]
    pub lease_duration: Duration,
}

impl KinesisReceiverConfig {
    /// The endpoint override, `None` when absent or empty (so a config can
    /// say `endpoint: ${env:KINESIS_ENDPOINT:-}`).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref().filter(|e| !e.is_empty())
    }

    /// The parsed `initial_timestamp` (`None` when absent or invalid;
    /// `validate` reports the latter).
    pub fn initial_timestamp(&self) -> Option<DateTime> {
        self.initial_timestamp
            .as_deref()
            .and_then(|t| DateTime::from_str(t, DateTimeFormat::DateTime).ok())
    }
}

/// Valid PostgreSQL table name: letters, digits, `_`, not starting with a
/// digit (it is put into SQL text, so nothing else is allowed).
fn check_table(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a plain table name (letters, digits and '_', at most 63, not starting with a digit)"
        ))
    }
}

impl ComponentConfig for KinesisReceiverConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let name_ok = !self.stream_name.is_empty()
            && self.stream_name.len() <= 128
            && self
                .stream_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            errors.push(FieldError::new(
                "stream_name",
                "must be 1 to 128 of letters, digits, '_', '.' and '-'",
            ));
        }
        if matches!(self.region.as_deref(), Some("")) {
            errors.push(FieldError::new(
                "region",
                "must not be empty (leave it out to use the SDK's region chain)",
            ));
        }
        if let Some(e) = self.endpoint() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                errors.push(FieldError::new(
                    "endpoint",
                    format!("{e:?} must be a URL starting with http:// or https://"),
                ));
            }
        }
        if let Some(r) = &self.role_arn {
            if !r.starts_with("arn:") {
                errors.push(FieldError::new(
                    "role_arn",
                    format!("{r:?} is not an ARN (arn:aws:iam::<account>:role/<name>)"),
                ));
            }
        }
        match (self.initial_position, &self.initial_timestamp) {
            (InitialPosition::AtTimestamp, None) => errors.push(FieldError::new(
                "initial_timestamp",
                "is required with initial_position AT_TIMESTAMP",
            )),
            (InitialPosition::AtTimestamp, Some(t)) => {
                if DateTime::from_str(t, DateTimeFormat::DateTime).is_err() {
                    errors.push(FieldError::new(
                        "initial_timestamp",
                        format!("{t:?} is not an RFC 3339 time like 2026-11-01T00:00:00Z"),
                    ));
                }
            }
            (_, Some(_)) => errors.push(FieldError::new(
                "initial_timestamp",
                "is used only with initial_position AT_TIMESTAMP",
            )),
            (_, None) => {}
        }
        if !(1..=10_000).contains(&self.max_records) {
            errors.push(FieldError::new(
                "max_records",
                "must be between 1 and 10000 (the GetRecords limit)",
            ));
        }
        if self.checkpoint_interval.is_zero() {
            errors.push(FieldError::new(
                "checkpoint_interval",
                "must be greater than 0",
            ));
        }
        if self.shard_sync_interval.is_zero() {
            errors.push(FieldError::new(
                "shard_sync_interval",
                "must be greater than 0",
            ));
        }
        if self.max_in_flight == 0 {
            errors.push(FieldError::new("max_in_flight", "must be at least 1"));
        }
        if !self.encoding.is_haystack() && self.validation != ValidationConfig::default() {
            errors.push(FieldError::new(
                "validation",
                format!(
                    "applies to Haystack spans; encoding {} carries OTLP",
                    self.encoding.as_str()
                ),
            ));
        }
        if let Some(s) = &self.storage {
            if let Err(e) = sluice_core::ComponentId::parse(s) {
                errors.push(FieldError::new("storage", e));
            }
            if self.leases.is_some() {
                errors.push(FieldError::new(
                    "storage",
                    "with leases the checkpoints are kept in the lease table, which every instance reads; remove storage",
                ));
            }
        }
        if let Some(l) = &self.leases {
            if !(l.postgres.starts_with("postgres://") || l.postgres.starts_with("postgresql://")) {
                errors.push(FieldError::new(
                    "leases::postgres",
                    "must be a postgres:// URL",
                ));
            }
            if let Err(m) = check_table(&l.table) {
                errors.push(FieldError::new("leases::table", m));
            }
            if matches!(l.application.as_deref(), Some("")) {
                errors.push(FieldError::new("leases::application", "must not be empty"));
            }
            if matches!(l.owner.as_deref(), Some("")) {
                errors.push(FieldError::new("leases::owner", "must not be empty"));
            }
            if l.lease_duration < Duration::from_secs(1) {
                errors.push(FieldError::new(
                    "leases::lease_duration",
                    "must be at least 1s",
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
