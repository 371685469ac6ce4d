use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::{ConfigError, ConfigErrors};

/// One configuration document and where it came from.
pub struct Source {
    /// Shown in errors: a file path or `<built-in default config>`.
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        std::fs::read_to_string(path)
            .map(|text| Source {
                name: path.display().to_string(),
                text,
            })
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))
    }
}

/// Parses one document. An empty document is an empty mapping.
pub fn load_str(source: &Source) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(&source.text).map_err(|e| {
        let place = match e.location() {
            Some(l) => format!("{}:{}:{}", source.name, l.line(), l.column()),
            None => source.name.clone(),
        };
        ConfigError::new(place, format!("invalid YAML: {e}"))
    })?;
    match value {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        v @ Value::Mapping(_) => Ok(v),
        _ => Err(ConfigError::new(
            source.name.clone(),
            "the configuration must be a mapping (receivers:, exporters:, service:, ...)",
        )),
    }
}

/// Parses and merges documents in order; reports every unreadable document.
pub fn load(sources: &[Source]) -> Result<Value, ConfigErrors> {
    let mut merged = Value::Mapping(Mapping::new());
    let mut errors = Vec::new();
    for s in sources {
        match load_str(s) {
            Ok(v) => merge(&mut merged, v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Merges `over` into `base`: mappings key by key (recursively), anything
/// else replaced by `over`'s value.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_mapping() && v.is_mapping() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
