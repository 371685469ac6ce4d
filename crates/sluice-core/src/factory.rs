//! Factories and the registry that maps a configured `type` to one.
//!
//! A component implements one of the typed factory traits with its own config
//! struct. The registry stores them behind object-safe adapters, so the core
//! parses and builds components it has never heard of. Registration happens
//! in one place, the binary (`sluice::registry()`); the core names no
//! concrete component.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use sluice_pdata::Signal;

use crate::component::{
    BuildContext, Exporter, Extension, Kind, Processor, Receiver, SignalConsumers, Stability,
};
use crate::consumer::ConsumerRef;

/// A problem in one component's configuration. `path` is relative to the
/// component (`protocols::grpc::endpoint`); the validator prefixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// An address a component will listen on, for the whole-graph port check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Config path relative to the component, e.g. `protocols::grpc::endpoint`.
    pub path: String,
    /// `host:port` as configured.
    pub address: String,
}

/// A component's typed configuration. Structs use `#[serde(deny_unknown_fields)]`
/// and document their defaults; `validate` is pure (no I/O).
pub trait ComponentConfig: DeserializeOwned + Send + Sync + 'static {
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }
    fn listen_addresses(&self) -> Vec<Listen> {
        Vec::new()
    }
    /// Extensions this component uses (e.g. `sending_queue::storage`); the
    /// validator checks each is configured and listed in `service::extensions`.
    fn extension_refs(&self) -> Vec<ExtensionRef> {
        Vec::new()
    }
    /// Problems that exist only in a pipeline of `signal` (a setting that has
    /// no meaning for that signal). The validator reports them for each
    /// signal whose pipelines list the component; paths as in `validate`.
    fn validate_for_signal(&self, _signal: Signal) -> Vec<FieldError> {
        Vec::new()
    }
}

/// A reference from a component's config to an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionRef {
    /// Config path relative to the component, e.g. `sending_queue::storage`.
    pub path: String,
    /// The extension id as written.
    pub id: String,
}

/// A failure to build a component from a valid config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    pub fn new(msg: impl std::fmt::Display) -> Self {
        BuildError(msg.to_string())
    }
}

pub trait ReceiverFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    fn type_name(&self) -> &'static str;
    fn signals(&self) -> &'static [Signal];
    fn stability(&self) -> Stability;
    fn create(
        &self,
        ctx: BuildContext,
        config: &Self::Config,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError>;
}

pub trait ProcessorFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    fn type_name(&self) -> &'static str;
    fn signals(&self) -> &'static [Signal];
    fn stability(&self) -> Stability;
    /// Called once per pipeline that lists the processor; `next` is the rest
    /// of that pipeline. `ctx.pipeline` and `ctx.signal` are set.
    fn create(
        &self,
        ctx: BuildContext,
        config: &Self::Config,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError>;
}

pub trait ExporterFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    fn type_name(&self) -> &'static str;
    fn signals(&self) -> &'static [Signal];
    fn stability(&self) -> Stability;
    /// Called once per exporter id, however many pipelines list it.
    fn create(
        &self,
        ctx: BuildContext,
        config: &Self::Config,
    ) -> Result<Arc<dyn Exporter>, BuildError>;
}

pub trait ExtensionFactory: Send + Sync + 'static {
    type Config: ComponentConfig;
    fn type_name(&self) -> &'static str;
    fn stability(&self) -> Stability;
    fn create(
        &self,
        ctx: BuildContext,
        config: &Self::Config,
    ) -> Result<Arc<dyn Extension>, BuildError>;
}

/// A parsed and validated component config, type-erased.
pub struct ParsedConfig {
    value: Box<dyn Any + Send + Sync>,
    pub listen: Vec<Listen>,
    pub extension_refs: Vec<ExtensionRef>,
    /// [`ComponentConfig::validate_for_signal`] for every signal.
    pub signal_errors: BTreeMap<Signal, Vec<FieldError>>,
}

impl ParsedConfig {
    fn get<C: 'static>(&self) -> Result<&C, BuildError> {
        self.value
            .downcast_ref::<C>()
            .ok_or_else(|| BuildError::new("internal: config handed to the wrong factory"))
    }
}

/// Parses a component's YAML into its config type and validates it. An empty
/// body (`batch:`) is read as an empty mapping, so defaults apply.
pub fn parse_config<C: ComponentConfig>(raw: &Value) -> Result<ParsedConfig, Vec<FieldError>> {
    let value = match raw {
        Value::Null => Value::Mapping(Default::default()),
        other => other.clone(),
    };
    let cfg: C = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string().replace('.', "::");
        // serde_path_to_error names the root `.` (or `?` when unknown).
        let path = if path == "?" || path == "::" {
            String::new()
        } else {
            path
        };
        vec![FieldError::new(path, e.inner().to_string())]
    })?;
    let errors = cfg.validate();
    if !errors.is_empty() {
        return Err(errors);
    }
    let signal_errors = Signal::ALL
        .into_iter()
        .map(|s| (s, cfg.validate_for_signal(s)))
        .filter(|(_, e)| !e.is_empty())
        .collect();
    Ok(ParsedConfig {
        listen: cfg.listen_addresses(),
        signal_errors,
        extension_refs: cfg.extension_refs(),
        value: Box::new(cfg),
    })
}

/// What `sluice components` lists.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub kind: Kind,
    pub type_name: &'static str,
    pub signals: &'static [Signal],
    pub stability: Stability,
}

type ParseFn = fn(&Value) -> Result<ParsedConfig, Vec<FieldError>>;

type ReceiverBuild = dyn Fn(BuildContext, &ParsedConfig, SignalConsumers) -> Result<Arc<dyn Receiver>, BuildError>
    + Send
    + Sync;
type ProcessorBuild = dyn Fn(BuildContext, &ParsedConfig, ConsumerRef) -> Result<Arc<dyn Processor>, BuildError>
    + Send
    + Sync;
type ExporterBuild =
    dyn Fn(BuildContext, &ParsedConfig) -> Result<Arc<dyn Exporter>, BuildError> + Send + Sync;
type ExtensionBuild =
    dyn Fn(BuildContext, &ParsedConfig) -> Result<Arc<dyn Extension>, BuildError> + Send + Sync;

pub(crate) enum Builder {
    Receiver(Box<ReceiverBuild>),
    Processor(Box<ProcessorBuild>),
    Exporter(Box<ExporterBuild>),
    Extension(Box<ExtensionBuild>),
}

pub(crate) struct Entry {
    pub info: ComponentInfo,
    pub parse: ParseFn,
    pub build: Builder,
}

/// Every component type the binary knows, by kind and type name; and the
/// types it knows of but was built without, with the cargo feature that
/// builds them, so a config naming one is told what to build.
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<(Kind, &'static str), Entry>,
    not_compiled: BTreeMap<(Kind, &'static str), &'static str>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, entry: Entry) {
        let key = (entry.info.kind, entry.info.type_name);
        assert!(
            self.entries.insert(key, entry).is_none(),
            "component {key:?} registered twice"
        );
    }

    pub fn receiver<F: ReceiverFactory>(&mut self, f: F) -> &mut Self {
        let f = Arc::new(f);
        self.insert(Entry {
            info: ComponentInfo {
                kind: Kind::Receiver,
                type_name: f.type_name(),
                signals: f.signals(),
                stability: f.stability(),
            },
            parse: parse_config::<F::Config>,
            build: Builder::Receiver(Box::new(move |ctx, cfg, next| {
                f.create(ctx, cfg.get::<F::Config>()?, next)
            })),
        });
        self
    }

    pub fn processor<F: ProcessorFactory>(&mut self, f: F) -> &mut Self {
        let f = Arc::new(f);
        self.insert(Entry {
            info: ComponentInfo {
                kind: Kind::Processor,
                type_name: f.type_name(),
                signals: f.signals(),
                stability: f.stability(),
            },
            parse: parse_config::<F::Config>,
            build: Builder::Processor(Box::new(move |ctx, cfg, next| {
                f.create(ctx, cfg.get::<F::Config>()?, next)
            })),
        });
        self
    }

    pub fn exporter<F: ExporterFactory>(&mut self, f: F) -> &mut Self {
        let f = Arc::new(f);
        self.insert(Entry {
            info: ComponentInfo {
                kind: Kind::Exporter,
                type_name: f.type_name(),
                signals: f.signals(),
                stability: f.stability(),
            },
            parse: parse_config::<F::Config>,
            build: Builder::Exporter(Box::new(move |ctx, cfg| {
                f.create(ctx, cfg.get::<F::Config>()?)
            })),
        });
        self
    }

    pub fn extension<F: ExtensionFactory>(&mut self, f: F) -> &mut Self {
        let f = Arc::new(f);
        self.insert(Entry {
            info: ComponentInfo {
                kind: Kind::Extension,
                type_name: f.type_name(),
                signals: &[],
                stability: f.stability(),
            },
            parse: parse_config::<F::Config>,
            build: Builder::Extension(Box::new(move |ctx, cfg| {
                f.create(ctx, cfg.get::<F::Config>()?)
            })),
        });
        self
    }

    /// Records that `type_name` exists but is not in this binary: the
    /// cargo feature `feature` of the `sluice` binary builds it.
    pub fn not_compiled(
        &mut self,
        kind: Kind,
        type_name: &'static str,
        feature: &'static str,
    ) -> &mut Self {
        self.not_compiled.insert((kind, type_name), feature);
        self
    }

    /// The feature that builds `type_name`, when it is known but absent.
    pub fn feature_for(&self, kind: Kind, type_name: &str) -> Option<&'static str> {
        self.not_compiled
            .iter()
            .find(|((k, t), _)| *k == kind && *t == type_name)
            .map(|(_, f)| *f)
    }

    pub(crate) fn get(&self, kind: Kind, type_name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|((k, t), _)| *k == kind && *t == type_name)
            .map(|(_, e)| e)
    }

    /// Every registered component, ordered by kind then type.
    pub fn list(&self) -> Vec<ComponentInfo> {
        self.entries.values().map(|e| e.info.clone()).collect()
    }
}
