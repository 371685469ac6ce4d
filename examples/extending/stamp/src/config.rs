//! Configuration of the `stamp` processor.

use serde::Deserialize;
use sluice_core::{ComponentConfig, FieldError};

/// Configuration of the `stamp` processor:
///
/// ```yaml
/// processors:
///   stamp:
///     key: deployment.environment
///     value: production
/// ```
///
/// Both fields are required; there are no defaults. Unknown keys are
/// rejected, so a misspelt field is an error rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampConfig {
    /// The resource attribute to set. Required; must not be empty.
    ///
    /// Read with a default (the empty string) so that a missing `key` is
    /// reported by [`ComponentConfig::validate`] with its field path, together
    /// with every other problem, instead of stopping at serde's first
    /// "missing field".
    #[serde(default)]
    pub key: String,
    /// The string value to give it. Required; may be empty (`value: ""`).
    /// Write numbers and booleans quoted (`value: "42"`): the attribute is
    /// always a string, and an unquoted YAML number is refused.
    ///
    /// An `Option` only to tell a missing `value` (an error) from an empty
    /// one; after validation it is always `Some`.
    #[serde(default)]
    pub value: Option<String>,
}

impl ComponentConfig for StampConfig {
    /// Pure checks, no I/O. Paths are relative to the component; the
    /// validator prefixes them (`processors::stamp::key`).
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.key.is_empty() {
            errors.push(FieldError::new(
                "key",
                "required: the resource attribute to set (a non-empty string)",
            ));
        }
        if self.value.is_none() {
            errors.push(FieldError::new(
                "value",
                "required: the string value to set (write \"\" for an empty one)",
            ));
        }
        errors
    }
}
