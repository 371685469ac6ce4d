//! Configuration errors, each with its path: the component's own
//! (`parse_config`) and, through the whole-config validator, the errors that
//! depend on the pipeline's signal.

use serde_yaml_ng::Value;
use sluice_core::factory::parse_config;
use sluice_core::Registry;

use super::*;

/// The `(path, message)` of every error for this processor body.
fn errors(yaml: &str) -> Vec<(String, String)> {
    let raw: Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    match parse_config::<AttributesConfig>(&raw) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

/// Asserts one error at `path` whose message contains `needle`.
#[track_caller]
fn assert_error(errs: &[(String, String)], path: &str, needle: &str) {
    assert!(
        errs.iter().any(|(p, m)| p == path && m.contains(needle)),
        "want an error at {path} containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn a_valid_config_has_no_errors() {
    let errs = errors(
        r#"
actions:
  - { key: a, action: insert, value: 1 }
  - { key: b, action: update, from_attribute: a }
  - { key: c, action: upsert, default_value: x }
  - { key: d, action: delete }
  - { action: hash, pattern: "^secret" }
  - { key: e, action: extract, pattern: "(?P<x>.)" }
  - { key: f, action: convert, converted_type: double }
include:
  match_type: regexp
  span_names: ["^GET"]
exclude:
  match_type: strict
  resources: [{ key: env, value: dev }]
"#,
    );
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn action_errors_name_the_action_and_field() {
    let errs = errors(
        r#"
actions:
  - { key: a, action: insert }
  - { key: b, action: extract }
  - { key: c, action: extract, pattern: "(?P<x>[a-" }
  - { key: d, action: extract, pattern: "[a-z]+" }
  - { key: e, action: extract, pattern: "(?P<x>a)(b)" }
  - { key: f, action: convert, converted_type: float }
  - { key: g, action: convert }
  - { key: h, action: rename }
  - { key: i }
  - { action: update, value: 1 }
  - { action: delete }
  - { key: j, action: upsert, value: 1, from_attribute: k }
  - { key: l, action: delete, value: 1 }
  - { key: m, action: insert, value: 1, pattern: x }
  - { key: n, action: hash, pattern: "(" }
  - { key: o, action: insert, from_context: metadata.tenant }
  - { key: p, action: insert, value: 1, default_value: 2 }
  - { key: q, action: insert, value: 18446744073709551615 }
"#,
    );
    assert_error(&errs, "actions[0]", "needs a value source");
    assert_error(
        &errs,
        "actions[1]::pattern",
        "is required for action extract",
    );
    assert_error(&errs, "actions[2]::pattern", "invalid regular expression");
    assert_error(&errs, "actions[3]::pattern", "no named groups");
    assert_error(&errs, "actions[4]::pattern", "unnamed group");
    assert_error(
        &errs,
        "actions[5]::converted_type",
        "unknown type \"float\"",
    );
    assert_error(&errs, "actions[6]::converted_type", "is required");
    assert_error(&errs, "actions[7]::action", "unknown action \"rename\"");
    assert_error(&errs, "actions[8]::action", "is required");
    assert_error(&errs, "actions[9]::key", "is required for action update");
    assert_error(&errs, "actions[10]::key", "needs key, pattern or both");
    assert_error(&errs, "actions[11]", "not both");
    assert_error(&errs, "actions[12]::value", "is not used by action delete");
    assert_error(
        &errs,
        "actions[13]::pattern",
        "is not used by action insert",
    );
    assert_error(&errs, "actions[14]::pattern", "invalid regular expression");
    assert_error(&errs, "actions[15]::from_context", "not supported");
    assert_error(&errs, "actions[16]::default_value", "no effect");
    assert_error(&errs, "actions[17]::value", "out of range");
    assert_eq!(errs.len(), 18, "one error per bad action: {errs:#?}");
}

#[test]
fn no_actions_and_unknown_fields_are_errors() {
    assert_error(&errors("{}"), "actions", "at least one action");
    assert_error(&errors("actions:"), "actions", "at least one action");
    let errs = errors("actions: [{ key: a, action: delete, regex: x }]");
    assert!(
        errs.len() == 1
            && errs[0].0.starts_with("actions[0]")
            && errs[0].1.contains("unknown field `regex`"),
        "{errs:#?}"
    );
}

#[test]
fn match_property_errors_have_paths() {
    let errs = errors(
        r#"
actions: [{ key: a, action: delete }]
include:
  services: [a]
exclude:
  match_type: regexp
  span_names: ["ok", "(bad"]
  attributes:
    - { value: x }
    - { key: code, value: 200 }
  log_severity_number: { min: 9 }
  regexp: { cacheenabled: true }
"#,
    );
    assert_error(&errs, "include::match_type", "is required");
    assert_error(
        &errs,
        "exclude::span_names[1]",
        "invalid regular expression",
    );
    assert_error(&errs, "exclude::attributes[0]::key", "is required");
    assert_error(&errs, "exclude::attributes[1]::value", "must be a string");
    assert_error(&errs, "exclude::log_severity_number", "not supported");
    assert_error(&errs, "exclude::regexp", "not supported");

    let errs = errors(
        r#"
actions: [{ key: a, action: delete }]
include: { match_type: strict, span_kinds: [server] }
exclude: { match_type: strict }
"#,
    );
    assert_error(&errs, "include::span_kinds[0]", "unknown span kind");
    assert_error(&errs, "exclude", "sets no property");
    assert_error(
        &errors("actions: [{ key: a, action: delete }]\ninclude: { match_type: expr, metric_names: [x] }"),
        "include::match_type",
        "expr is not supported",
    );
}

/// The core's test receiver and exporter around this crate's processors.
fn registry() -> Registry {
    let (mut r, _) = sluice_core::testkit::registry();
    crate::register(&mut r);
    r
}

/// Validates a whole configuration; the `(path, message)` of every error.
fn validate(yaml: &str) -> Vec<(String, String)> {
    let root: Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    match sluice_core::config::validate(&root, &registry()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn with_pipeline(processor: &str, signal: &str) -> String {
    format!(
        r#"
receivers:
  testrecv:
processors:
  attributes/x:
{processor}
exporters:
  collect:
service:
  pipelines:
    {signal}:
      receivers: [testrecv]
      processors: [attributes/x]
      exporters: [collect]
  telemetry:
    metrics:
      level: none
"#
    )
}

#[test]
fn properties_that_do_not_apply_to_the_pipelines_signal_are_errors_with_full_paths() {
    let processor = r#"    actions: [{ key: a, action: delete }]
    include:
      match_type: strict
      span_names: [GET]
      attributes: [{ key: k }]"#;
    assert!(validate(&with_pipeline(processor, "traces")).is_empty());
    let errs = validate(&with_pipeline(processor, "logs"));
    assert_error(
        &errs,
        "processors::attributes/x::include::span_names",
        "does not apply to logs",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let errs = validate(&with_pipeline(processor, "metrics"));
    assert_error(
        &errs,
        "processors::attributes/x::include::span_names",
        "does not apply to metrics",
    );
    assert_error(
        &errs,
        "processors::attributes/x::include::attributes",
        "service::pipelines::metrics",
    );
}

#[test]
fn action_errors_carry_the_full_config_path() {
    let processor = r#"    actions:
      - { key: a, action: insert, value: 1 }
      - { key: b, action: delete }
      - { key: c, action: extract, pattern: "(?P<x" }"#;
    let errs = validate(&with_pipeline(processor, "traces"));
    assert_error(
        &errs,
        "processors::attributes/x::actions[2]::pattern",
        "invalid regular expression",
    );
}
