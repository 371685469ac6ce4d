use std::collections::HashMap;

use serde_yaml_ng::Value;

use super::*;
use crate::testkit;
use crate::Kind;

fn src(text: &str) -> Source {
    Source {
        name: "test.yaml".into(),
        text: text.into(),
    }
}

fn check(text: &str) -> Result<ValidConfig, ConfigErrors> {
    let (registry, _) = testkit::registry();
    let mut v = load(&[src(text)])?;
    expand(&mut v, &|_| None).map_err(ConfigErrors)?;
    validate(&v, &registry)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match check(text) {
        Ok(_) => panic!("expected the config to be invalid:\n{text}"),
        Err(ConfigErrors(e)) => e,
    }
}

fn has(errs: &[ConfigError], path: &str, word: &str) -> bool {
    errs.iter()
        .any(|e| e.path == path && e.message.contains(word))
}

const GOOD: &str = r#"
receivers:
  testrecv:
    endpoint: 127.0.0.1:4317
processors:
  rename:
    suffix: "-a"
exporters:
  collect:
service:
  pipelines:
    traces:
      receivers: [testrecv]
      processors: [rename]
      exporters: [collect]
"#;

#[test]
fn a_good_config_validates_with_defaults_applied() {
    let cfg = check(GOOD).expect("valid");
    assert_eq!(cfg.pipelines.len(), 1);
    assert_eq!(cfg.pipelines[0].id.to_string(), "traces");
    assert_eq!(cfg.telemetry.metrics.address, "127.0.0.1:8888");
    assert_eq!(cfg.shutdown_timeout, std::time::Duration::from_secs(30));
    assert!(cfg.unused.is_empty());
}

#[test]
fn unknown_component_type_names_its_path() {
    let e = errors(&GOOD.replace("  collect:\n", "  collect:\n  nope/x:\n"));
    assert!(
        has(&e, "exporters::nope/x", "unknown exporter type \"nope\""),
        "{e:?}"
    );
}

#[test]
fn a_type_built_by_a_missing_feature_names_the_feature() {
    let (mut registry, _) = testkit::registry();
    registry.not_compiled(Kind::Exporter, "kafka", "kafka");
    let text = GOOD.replace("  collect:\n", "  collect:\n  kafka/x:\n");
    let value = load(&[src(&text)]).expect("yaml");
    let e = validate(&value, &registry).err().expect("invalid").0;
    assert!(
        has(
            &e,
            "exporters::kafka/x",
            "exporter type \"kafka\" is not compiled into this binary: build sluice with the cargo feature `kafka`"
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_field_names_the_field_and_path() {
    let e = errors(&GOOD.replace("suffix: \"-a\"", "suffix: \"-a\"\n    sufix: 1"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "processors::rename::sufix", "{e:?}");
    assert!(e[0].message.contains("unknown field `sufix`"), "{e:?}");
}

#[test]
fn wrong_type_names_the_nested_field() {
    let e = errors(&GOOD.replace("suffix: \"-a\"", "suffix: [1]"));
    assert!(
        e.iter().any(|e| e.path == "processors::rename::suffix"),
        "{e:?}"
    );
}

#[test]
fn component_validate_errors_are_prefixed() {
    let e = errors(&GOOD.replace("endpoint: 127.0.0.1:4317", "must_be_positive: -1"));
    assert!(
        has(&e, "receivers::testrecv::must_be_positive", "negative"),
        "{e:?}"
    );
}

#[test]
fn pipeline_naming_an_undefined_component() {
    let e = errors(&GOOD.replace(
        "exporters: [collect]",
        "exporters: [collect, collect/missing]",
    ));
    assert!(
        has(
            &e,
            "service::pipelines::traces::exporters",
            "collect/missing is not configured"
        ),
        "{e:?}"
    );
}

#[test]
fn component_that_does_not_support_the_signal() {
    let text = GOOD.replace("  collect:\n", "  collect:\n  tracesonly:\n")
        + "    metrics:\n      receivers: [testrecv]\n      exporters: [tracesonly]\n";
    let e = errors(&text);
    assert!(
        has(
            &e,
            "service::pipelines::metrics::exporters",
            "does not support metrics"
        ),
        "{e:?}"
    );
    // The processor supports traces only as well.
    let text = GOOD.to_string() + "    logs:\n      receivers: [testrecv]\n      processors: [rename]\n      exporters: [collect]\n";
    let e = errors(&text);
    assert!(
        has(
            &e,
            "service::pipelines::logs::processors",
            "does not support logs"
        ),
        "{e:?}"
    );
}

#[test]
fn empty_receiver_and_exporter_lists() {
    let e = errors(
        &GOOD
            .replace("receivers: [testrecv]", "receivers: []")
            .replace("exporters: [collect]", "exporters: []"),
    );
    assert!(
        has(
            &e,
            "service::pipelines::traces::receivers",
            "at least one receiver"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "service::pipelines::traces::exporters",
            "at least one exporter"
        ),
        "{e:?}"
    );
}

#[test]
fn port_used_twice_is_reported_with_both_places() {
    let text = GOOD
        .replace(
            "    endpoint: 127.0.0.1:4317\n",
            "    endpoint: 127.0.0.1:4317\n  testrecv/2:\n    endpoint: 0.0.0.0:4317\n",
        )
        .replace("receivers: [testrecv]", "receivers: [testrecv, testrecv/2]");
    let e = errors(&text);
    let clash = e
        .iter()
        .find(|e| e.path == "receivers::testrecv/2::endpoint")
        .unwrap_or_else(|| panic!("{e:?}"));
    assert!(
        clash.message.contains("receivers::testrecv::endpoint"),
        "{clash:?}"
    );

    // The metrics endpoint counts too.
    let text = GOOD.replace("127.0.0.1:4317", "localhost:8888");
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|e| e.path == "service::telemetry::metrics::address"),
        "{e:?}"
    );

    // Different ports, or port 0, do not clash.
    let ok = GOOD
        .replace(
            "    endpoint: 127.0.0.1:4317\n",
            "    endpoint: 127.0.0.1:0\n  testrecv/2:\n    endpoint: 127.0.0.1:0\n",
        )
        .replace("receivers: [testrecv]", "receivers: [testrecv, testrecv/2]");
    check(&ok).expect("port 0 never clashes");
}

#[test]
fn bad_pipeline_ids_and_unknown_keys() {
    let e = errors(&GOOD.replace("    traces:\n", "    bogus/1:\n"));
    assert!(
        has(&e, "service::pipelines::bogus/1", "unknown pipeline type"),
        "{e:?}"
    );
    let e = errors(&GOOD.replace(
        "      processors: [rename]\n",
        "      processor: [rename]\n",
    ));
    assert!(
        has(
            &e,
            "service::pipelines::traces::processor",
            "unknown field `processor`"
        ),
        "{e:?}"
    );
    let e = errors(&(GOOD.to_string() + "extra: 1\n"));
    assert!(has(&e, "extra", "unknown top-level section"), "{e:?}");
}

#[test]
fn missing_service_or_pipelines() {
    let e = errors("receivers:\n  testrecv:\n");
    assert!(e.iter().any(|e| e.path == "service"), "{e:?}");
    let e = errors("service:\n  pipelines: {}\n");
    assert!(
        has(&e, "service::pipelines", "at least one pipeline"),
        "{e:?}"
    );
}

#[test]
fn undefined_extension() {
    let e = errors(&GOOD.replace("service:\n", "service:\n  extensions: [health_check]\n"));
    assert!(
        has(&e, "service::extensions", "health_check is not configured"),
        "{e:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
receivers:
  nope:
  testrecv:
    bogus: 1
exporters:
  collect:
service:
  pipelines:
    traces:
      receivers: []
      exporters: [collect, missing]
    wrong:
      receivers: [testrecv]
      exporters: [collect]
"#;
    let e = errors(text);
    assert!(e.len() >= 5, "expected every problem, got {e:#?}");
    assert!(e.iter().any(|e| e.path == "receivers::nope"));
    assert!(e.iter().any(|e| e.path.starts_with("receivers::testrecv")));
    assert!(e
        .iter()
        .any(|e| e.path == "service::pipelines::traces::receivers"));
    assert!(e
        .iter()
        .any(|e| e.path == "service::pipelines::traces::exporters"));
    assert!(e.iter().any(|e| e.path == "service::pipelines::wrong"));
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let e = load(&[src("receivers:\n  otlp: [\n  bad")]).unwrap_err();
    assert!(e.0[0].path.starts_with("test.yaml:"), "{e:?}");
    assert!(e.0[0].message.contains("invalid YAML"), "{e:?}");
}

#[test]
fn files_merge_in_order() {
    let a = src("receivers:\n  testrecv:\n    endpoint: 1.2.3.4:1\nexporters:\n  collect:\n");
    let b = Source {
        name: "b".into(),
        text: "receivers:\n  testrecv:\n    endpoint: 127.0.0.1:9\nservice:\n  pipelines:\n    traces:\n      receivers: [testrecv]\n      exporters: [collect]\n".into(),
    };
    let v = load(&[a, b]).unwrap();
    assert_eq!(
        v["receivers"]["testrecv"]["endpoint"],
        Value::String("127.0.0.1:9".into())
    );
    assert!(
        v["exporters"]["collect"].is_null(),
        "keys only in the first file stay"
    );
    assert!(v["service"]["pipelines"]["traces"].is_mapping());
}

#[test]
fn env_expansion_forms() {
    let env: HashMap<&str, &str> =
        [("HOST", "127.0.0.1"), ("PORT", "4317"), ("FLAG", "true")].into();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let mut v: Value = serde_yaml_ng::from_str(
        r#"
a: ${env:HOST}:${PORT}
b: ${env:PORT}
c: ${env:MISSING:-fallback}
d: ${MISSING}
e: "$$HOME and ${FLAG}"
f: ${env:FLAG}
g: [ "${HOST}" ]
"#,
    )
    .unwrap();
    let warnings = expand(&mut v, &lookup).unwrap();
    assert_eq!(v["a"], Value::String("127.0.0.1:4317".into()));
    assert_eq!(
        v["b"],
        Value::Number(4317.into()),
        "a lone reference takes its YAML type"
    );
    assert_eq!(v["c"], Value::String("fallback".into()));
    assert_eq!(v["d"], Value::String(String::new()));
    assert_eq!(v["e"], Value::String("$HOME and true".into()));
    assert_eq!(v["f"], Value::Bool(true));
    assert_eq!(v["g"][0], Value::String("127.0.0.1".into()));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("d: ") && warnings[0].contains("MISSING"));

    let mut bad: Value =
        serde_yaml_ng::from_str("x:\n  y: ${file:/etc/passwd}\n  z: ${OPEN\n").unwrap();
    let errs = expand(&mut bad, &lookup).unwrap_err();
    assert!(errs
        .iter()
        .any(|e| e.path == "x::y" && e.message.contains("unsupported config provider")));
    assert!(errs
        .iter()
        .any(|e| e.path == "x::z" && e.message.contains("unterminated")));
}

#[test]
fn expanded_values_are_validated() {
    let (registry, _) = testkit::registry();
    let mut v = load(&[src(
        &GOOD.replace("endpoint: 127.0.0.1:4317", "must_be_positive: ${env:N}")
    )])
    .unwrap();
    expand(&mut v, &|_| Some("-5".into())).unwrap();
    let Err(e) = validate(&v, &registry) else {
        panic!("expected an error")
    };
    assert!(
        has(&e.0, "receivers::testrecv::must_be_positive", "negative"),
        "{e:?}"
    );
}
