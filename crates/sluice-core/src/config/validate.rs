use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use sluice_pdata::Signal;

use super::{join, ConfigError, ConfigErrors};
use crate::component::{ComponentId, Kind};
use crate::factory::{ParsedConfig, Registry};
use crate::telemetry::MetricsLevel;

/// A pipeline id: `traces`, `metrics/2`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    pub signal: Signal,
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

/// A validated pipeline: ids only; the components are in [`ValidConfig`].
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: PipelineId,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
}

/// A component config parsed by its factory.
pub struct ValidComponent {
    pub kind: Kind,
    pub id: ComponentId,
    pub config: ParsedConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

fn default_log_level() -> String {
    "info".to_string()
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// `trace`, `debug`, `info` (default), `warn`, `error`, or a full
    /// `tracing` filter such as `info,sluice_core=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `console` (default, human-readable) or `json` (one object per line).
    #[serde(default)]
    pub encoding: LogEncoding,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            level: default_log_level(),
            encoding: LogEncoding::Console,
        }
    }
}

fn default_metrics_address() -> String {
    "127.0.0.1:8888".to_string()
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `none` turns the endpoint off; `basic`, `normal` (default), `detailed`.
    #[serde(default)]
    pub level: MetricsLevel,
    /// Where `/metrics` is served (default `127.0.0.1:8888`).
    #[serde(default = "default_metrics_address")]
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            level: MetricsLevel::default(),
            address: default_metrics_address(),
        }
    }
}

/// `service.telemetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub logs: LogsConfig,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The `service` section's scalar settings, parsed typed; `pipelines` and
/// `extensions` are checked by hand so each problem gets its own path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    #[serde(default)]
    extensions: Value,
    #[serde(default)]
    pipelines: Value,
    #[serde(default)]
    telemetry: TelemetryConfig,
    /// sluice addition: how long a shutdown may take to drain (default 30s).
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
}

/// Only rejects unknown keys in a pipeline; the lists are checked one by one
/// so that each problem gets its own path.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineKeys {
    #[serde(default, rename = "receivers")]
    _receivers: serde::de::IgnoredAny,
    #[serde(default, rename = "processors")]
    _processors: serde::de::IgnoredAny,
    #[serde(default, rename = "exporters")]
    _exporters: serde::de::IgnoredAny,
}

/// A configuration that passed every check; the engine builds from it.
pub struct ValidConfig {
    pub components: BTreeMap<(Kind, ComponentId), ValidComponent>,
    pub pipelines: Vec<Pipeline>,
    pub extensions: Vec<ComponentId>,
    pub telemetry: TelemetryConfig,
    pub shutdown_timeout: Duration,
    /// Components configured but used by no pipeline (logged, not built).
    pub unused: Vec<(Kind, ComponentId)>,
}

impl ValidConfig {
    pub fn component(&self, kind: Kind, id: &ComponentId) -> Option<&ValidComponent> {
        self.components.get(&(kind, id.clone()))
    }

    /// The signals of the pipelines that list a component, in signal order.
    pub fn signals_of(&self, kind: Kind, id: &ComponentId) -> Vec<Signal> {
        let mut out: Vec<Signal> = self
            .pipelines
            .iter()
            .filter(|p| match kind {
                Kind::Receiver => p.receivers.contains(id),
                Kind::Processor => p.processors.contains(id),
                Kind::Exporter => p.exporters.contains(id),
                Kind::Connector | Kind::Extension => false,
            })
            .map(|p| p.id.signal)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

const SECTIONS: [Kind; 5] = [
    Kind::Receiver,
    Kind::Processor,
    Kind::Exporter,
    Kind::Connector,
    Kind::Extension,
];

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Deserializes `value` into `T`, reporting the failing field's full path.
fn typed<T: serde::de::DeserializeOwned>(value: &Value, path: &str) -> Result<T, ConfigError> {
    let v = match value {
        Value::Null => Value::Mapping(Mapping::new()),
        v => v.clone(),
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let sub = if inner == "?" || inner == "." {
            String::new()
        } else {
            inner.replace('.', "::")
        };
        ConfigError::new(join(path, &sub), e.inner().to_string())
    })
}

fn id_list(value: &Value, path: &str, errors: &mut Vec<ConfigError>) -> Vec<ComponentId> {
    if value.is_null() {
        return Vec::new();
    }
    let items: Vec<String> = match typed(value, path) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in items {
        match ComponentId::parse(&s) {
            Ok(id) => {
                if !seen.insert(id.clone()) {
                    errors.push(ConfigError::new(path, format!("{id} is listed twice")));
                } else {
                    out.push(id);
                }
            }
            Err(msg) => errors.push(ConfigError::new(path, msg)),
        }
    }
    out
}

/// Checks the whole configuration against the registry and reports every
/// problem at once.
pub fn validate(root: &Value, registry: &Registry) -> Result<ValidConfig, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let empty = Mapping::new();
    let root_map = root.as_mapping().unwrap_or(&empty);

    for (k, _) in root_map {
        let key = key_name(k);
        let known = key == "service" || SECTIONS.iter().any(|s| s.section() == key);
        if !known {
            errors.push(ConfigError::new(
                key.clone(),
                "unknown top-level section (expected receivers, processors, exporters, connectors, extensions, service)",
            ));
        }
    }

    // 1. Every configured component: known type, valid config.
    let mut components = BTreeMap::new();
    for kind in SECTIONS {
        let section = kind.section();
        let Some(v) = root_map.get(section) else {
            continue;
        };
        let map = match v {
            Value::Null => continue,
            Value::Mapping(m) => m,
            _ => {
                errors.push(ConfigError::new(
                    section,
                    "must be a mapping of component ids to configs",
                ));
                continue;
            }
        };
        for (k, body) in map {
            let raw_id = key_name(k);
            let path = join(section, &raw_id);
            let id = match ComponentId::parse(&raw_id) {
                Ok(id) => id,
                Err(msg) => {
                    errors.push(ConfigError::new(path, msg));
                    continue;
                }
            };
            let Some(entry) = registry.get(kind, id.type_name()) else {
                let message = match registry.feature_for(kind, id.type_name()) {
                    Some(feature) => format!(
                        "{kind} type {:?} is not compiled into this binary: build sluice with the cargo feature `{feature}`",
                        id.type_name()
                    ),
                    None => format!(
                        "unknown {kind} type {:?} (`sluice components` lists the known ones)",
                        id.type_name()
                    ),
                };
                errors.push(ConfigError::new(path, message));
                continue;
            };
            match (entry.parse)(body) {
                Ok(config) => {
                    components.insert((kind, id.clone()), ValidComponent { kind, id, config });
                }
                Err(field_errors) => errors.extend(
                    field_errors
                        .into_iter()
                        .map(|fe| ConfigError::new(join(&path, &fe.path), fe.message)),
                ),
            }
        }
    }
    let defined = |kind: Kind, id: &ComponentId| -> bool {
        root_map
            .get(kind.section())
            .and_then(Value::as_mapping)
            .is_some_and(|m| {
                m.keys()
                    .any(|k| ComponentId::parse(&key_name(k)).ok().as_ref() == Some(id))
            })
    };

    // 2. The service section.
    let service_value = root_map.get("service").cloned().unwrap_or(Value::Null);
    let service: Option<ServiceSection> = match typed(&service_value, "service") {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if root_map.get("service").is_none() {
        errors.push(ConfigError::new(
            "service",
            "missing: a configuration needs a service section with pipelines",
        ));
    }

    let mut pipelines = Vec::new();
    let mut extensions = Vec::new();
    let mut used: BTreeSet<(Kind, ComponentId)> = BTreeSet::new();
    // (component, signal) pairs whose signal-specific errors were reported.
    let mut signal_checked: BTreeSet<(Kind, ComponentId, Signal)> = BTreeSet::new();
    if let Some(service) = &service {
        extensions = id_list(&service.extensions, "service::extensions", &mut errors);
        for id in &extensions {
            used.insert((Kind::Extension, id.clone()));
            if !defined(Kind::Extension, id) {
                errors.push(ConfigError::new(
                    "service::extensions",
                    format!("extension {id} is not configured in the extensions section"),
                ));
            }
        }

        match &service.pipelines {
            Value::Mapping(m) if !m.is_empty() => {
                for (k, body) in m {
                    let raw = key_name(k);
                    let path = join("service::pipelines", &raw);
                    let id = match ComponentId::parse(&raw) {
                        Ok(cid) => match Signal::parse(cid.type_name()) {
                            Some(signal) => PipelineId {
                                signal,
                                name: cid.name().map(str::to_string),
                            },
                            None => {
                                errors.push(ConfigError::new(
                                    path,
                                    format!(
                                        "unknown pipeline type {:?} (expected traces, metrics or logs)",
                                        cid.type_name()
                                    ),
                                ));
                                continue;
                            }
                        },
                        Err(msg) => {
                            errors.push(ConfigError::new(path, msg));
                            continue;
                        }
                    };
                    if let Err(e) = typed::<PipelineKeys>(body, &path) {
                        errors.push(e);
                        continue;
                    }
                    let body_map = body.as_mapping().cloned().unwrap_or_default();
                    let get = |key: &str| body_map.get(key).cloned().unwrap_or(Value::Null);
                    let mut lists = Vec::new();
                    for (key, kind) in [
                        ("receivers", Kind::Receiver),
                        ("processors", Kind::Processor),
                        ("exporters", Kind::Exporter),
                    ] {
                        let lpath = join(&path, key);
                        let ids = id_list(&get(key), &lpath, &mut errors);
                        if ids.is_empty() && kind != Kind::Processor {
                            errors.push(ConfigError::new(
                                &lpath,
                                format!("must list at least one {kind}"),
                            ));
                        }
                        for cid in &ids {
                            // A connector may stand as a receiver or exporter.
                            let as_connector = kind != Kind::Processor
                                && defined(Kind::Connector, cid)
                                && !defined(kind, cid);
                            if as_connector {
                                used.insert((Kind::Connector, cid.clone()));
                                continue;
                            }
                            used.insert((kind, cid.clone()));
                            if !defined(kind, cid) {
                                errors.push(ConfigError::new(
                                    &lpath,
                                    format!(
                                        "{kind} {cid} is not configured in the {} section",
                                        kind.section()
                                    ),
                                ));
                                continue;
                            }
                            if let Some(c) = components.get(&(kind, cid.clone())) {
                                let cpath = join(kind.section(), &cid.to_string());
                                if let Some(errs) = c.config.signal_errors.get(&id.signal) {
                                    if signal_checked.insert((kind, cid.clone(), id.signal)) {
                                        errors.extend(errs.iter().map(|fe| {
                                            ConfigError::new(
                                                join(&cpath, &fe.path),
                                                format!("{} (listed in {path})", fe.message),
                                            )
                                        }));
                                    }
                                }
                            }
                            if let Some(entry) = registry.get(kind, cid.type_name()) {
                                if !entry.info.signals.contains(&id.signal) {
                                    errors.push(ConfigError::new(
                                        &lpath,
                                        format!(
                                            "{kind} {cid} does not support {} (it supports: {})",
                                            id.signal,
                                            signal_list(entry.info.signals)
                                        ),
                                    ));
                                }
                            }
                        }
                        lists.push(ids);
                    }
                    let exporters = lists.pop().unwrap_or_default();
                    let processors = lists.pop().unwrap_or_default();
                    let receivers = lists.pop().unwrap_or_default();
                    pipelines.push(Pipeline {
                        id,
                        receivers,
                        processors,
                        exporters,
                    });
                }
            }
            Value::Null | Value::Mapping(_) => errors.push(ConfigError::new(
                "service::pipelines",
                "must define at least one pipeline (traces, metrics or logs)",
            )),
            _ => errors.push(ConfigError::new(
                "service::pipelines",
                "must be a mapping of pipeline ids to pipelines",
            )),
        }
    }

    // 3. References to extensions: configured and running.
    for (kind, id) in &used {
        let Some(c) = components.get(&(*kind, id.clone())) else {
            continue;
        };
        for r in &c.config.extension_refs {
            let path = join(&join(kind.section(), &id.to_string()), &r.path);
            match ComponentId::parse(&r.id) {
                Ok(ext) if !defined(Kind::Extension, &ext) => errors.push(ConfigError::new(
                    path,
                    format!("extension {ext} is not configured in the extensions section"),
                )),
                Ok(ext) if !extensions.contains(&ext) => errors.push(ConfigError::new(
                    path,
                    format!(
                        "extension {ext} is not listed in service::extensions, so it would not run"
                    ),
                )),
                Ok(_) => {}
                Err(msg) => errors.push(ConfigError::new(path, msg)),
            }
        }
    }

    // 4. Addresses: no two listeners on one port.
    let mut listeners: Vec<(String, String)> = Vec::new();
    for (kind, id) in &used {
        if let Some(c) = components.get(&(*kind, id.clone())) {
            for l in &c.config.listen {
                listeners.push((
                    join(&join(kind.section(), &id.to_string()), &l.path),
                    l.address.clone(),
                ));
            }
        }
    }
    if let Some(s) = &service {
        if s.telemetry.metrics.level != MetricsLevel::None {
            listeners.push((
                "service::telemetry::metrics::address".to_string(),
                s.telemetry.metrics.address.clone(),
            ));
        }
    }
    check_addresses(&listeners, &mut errors);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let service = service.expect("no errors means the service section parsed");
    let unused = components
        .keys()
        .filter(|k| !used.contains(*k))
        .cloned()
        .collect();
    Ok(ValidConfig {
        components,
        pipelines,
        extensions,
        telemetry: service.telemetry,
        shutdown_timeout: service.shutdown_timeout,
        unused,
    })
}

fn signal_list(signals: &[Signal]) -> String {
    if signals.is_empty() {
        return "none".to_string();
    }
    signals
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits `host:port`; returns None if it does not look like one.
fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "localhost" => "127.0.0.1",
        "::1" => "127.0.0.1",
        h => h,
    };
    Some((host.to_string(), port))
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::")
}

fn check_addresses(listeners: &[(String, String)], errors: &mut Vec<ConfigError>) {
    let parsed: Vec<_> = listeners
        .iter()
        .filter_map(|(p, a)| split_addr(a).map(|hp| (p, a, hp)))
        .collect();
    for (i, (path_a, addr_a, (host_a, port_a))) in parsed.iter().enumerate() {
        if *port_a == 0 {
            continue;
        }
        for (path_b, addr_b, (host_b, port_b)) in &parsed[..i] {
            let clash = port_a == port_b
                && (host_a == host_b || is_wildcard(host_a) || is_wildcard(host_b));
            if clash {
                errors.push(ConfigError::new(
                    (*path_a).clone(),
                    format!("address {addr_a} clashes with {addr_b} used by {path_b}: a port can be used by one listener only"),
                ));
            }
        }
    }
}
