//! Each action on span attributes, with its edge cases.

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};

use super::*;

const TRACES: Signal = Signal::Traces;

#[tokio::test]
async fn insert_adds_a_missing_key_typed_by_the_yaml_and_leaves_an_existing_one() {
    let h = Harness::new(
        r#"
actions:
  - { key: s, action: insert, value: text }
  - { key: i, action: insert, value: 42 }
  - { key: d, action: INSERT, value: 2.5 }
  - { key: b, action: insert, value: true }
  - { key: q, action: insert, value: "7" }
  - { key: list, action: insert, value: [1, two] }
  - { key: kept, action: insert, value: replaced }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[("kept", s("original"))])))
        .await;
    let a = only_attrs(&out);
    assert_eq!(get(a, "s"), Some(&s("text")));
    assert_eq!(get(a, "i"), Some(&Val::IntValue(42)));
    assert_eq!(get(a, "d"), Some(&Val::DoubleValue(2.5)));
    assert_eq!(get(a, "b"), Some(&Val::BoolValue(true)));
    assert_eq!(get(a, "q"), Some(&s("7")), "a quoted number stays a string");
    assert_eq!(
        get(a, "list"),
        Some(&Val::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Val::IntValue(1))
                },
                AnyValue {
                    value: Some(s("two"))
                },
            ]
        }))
    );
    assert_eq!(
        get(a, "kept"),
        Some(&s("original")),
        "insert never overwrites"
    );
    assert_eq!(keys(a).iter().filter(|k| **k == "kept").count(), 1);
}

#[tokio::test]
async fn insert_from_attribute_copies_and_does_nothing_when_the_source_is_missing() {
    let h = Harness::new(
        r#"
actions:
  - { key: copy, action: insert, from_attribute: src }
  - { key: nothing, action: insert, from_attribute: absent }
  - { key: fallback, action: insert, from_attribute: absent, default_value: dflt }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[("src", Val::IntValue(5))])))
        .await;
    let a = only_attrs(&out);
    assert_eq!(get(a, "copy"), Some(&Val::IntValue(5)));
    assert_eq!(get(a, "src"), Some(&Val::IntValue(5)), "the source is kept");
    assert!(!keys(a).contains(&"nothing"));
    assert_eq!(get(a, "fallback"), Some(&s("dflt")));
}

#[tokio::test]
async fn update_changes_an_existing_key_and_never_adds_a_missing_one() {
    let h = Harness::new(
        r#"
actions:
  - { key: env, action: update, value: prod }
  - { key: missing, action: update, value: x }
  - { key: level, action: update, from_attribute: other }
  - { key: env2, action: update, from_attribute: absent }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[
            ("env", s("dev")),
            ("level", s("low")),
            ("other", Val::BoolValue(false)),
            ("env2", s("same")),
        ])))
        .await;
    let a = only_attrs(&out);
    assert_eq!(get(a, "env"), Some(&s("prod")));
    assert_eq!(get(a, "level"), Some(&Val::BoolValue(false)));
    assert_eq!(
        get(a, "env2"),
        Some(&s("same")),
        "missing source: unchanged"
    );
    assert!(!keys(a).contains(&"missing"));
    assert_eq!(a.len(), 4);
}

#[tokio::test]
async fn upsert_inserts_when_missing_and_updates_when_present() {
    let h = Harness::new(
        r#"
actions:
  - { key: region, action: upsert, value: eu }
"#,
        TRACES,
    );
    let out = h
        .run_payload(traces(vec![(
            "svc",
            vec![
                span("has", attrs(&[("region", Val::IntValue(1))])),
                span("lacks", attrs(&[("x", s("y"))])),
            ],
        )]))
        .await;
    let spans = spans_of(&out);
    assert_eq!(get(&spans[0].attributes, "region"), Some(&s("eu")));
    assert_eq!(spans[0].attributes.len(), 1);
    assert_eq!(get(&spans[1].attributes, "region"), Some(&s("eu")));
    assert_eq!(keys(&spans[1].attributes), vec!["x", "region"]);
}

#[tokio::test]
async fn delete_by_key_and_by_pattern() {
    let h = Harness::new(
        r#"
actions:
  - { key: password, action: delete }
  - { action: delete, pattern: "^secret\\." }
  - { key: not.there, action: delete }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[
            ("password", s("p")),
            ("secret.a", s("1")),
            ("keep", s("k")),
            ("secret.b", Val::IntValue(2)),
            ("not.secret.c", s("3")),
        ])))
        .await;
    assert_eq!(keys(only_attrs(&out)), vec!["keep", "not.secret.c"]);
}

#[tokio::test]
async fn hash_writes_the_sha256_hex_of_strings_ints_doubles_and_bools() {
    // Expected digests computed independently (Python hashlib): SHA-256 of
    // b"abc", of 42 as 8 little-endian bytes, of 2.5's IEEE bits, of b"\x01"
    // and b"\x00".
    let h = Harness::new(
        r#"
actions:
  - { key: str, action: hash }
  - { key: int, action: hash }
  - { key: dbl, action: hash }
  - { action: hash, pattern: "^flag" }
  - { key: empty, action: hash }
  - { key: raw, action: hash }
  - { key: absent, action: hash }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[
            ("str", s("abc")),
            ("int", Val::IntValue(42)),
            ("dbl", Val::DoubleValue(2.5)),
            ("flag.on", Val::BoolValue(true)),
            ("flag.off", Val::BoolValue(false)),
            ("empty", s("")),
            ("raw", Val::BytesValue(vec![1, 2, 3])),
            ("other", s("abc")),
        ])))
        .await;
    let a = only_attrs(&out);
    assert_eq!(
        get(a, "str"),
        Some(&s(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    assert_eq!(
        get(a, "int"),
        Some(&s(
            "ed049108bc18f2c64369e8d0ea42850bdd1a7d1dd340cfde716315579702a76c"
        ))
    );
    assert_eq!(
        get(a, "dbl"),
        Some(&s(
            "5caaabe50da77f59f448b3edf650d68fbca7b858390664c251c52b3f458a881c"
        ))
    );
    assert_eq!(
        get(a, "flag.on"),
        Some(&s(
            "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
        ))
    );
    assert_eq!(
        get(a, "flag.off"),
        Some(&s(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        ))
    );
    assert_eq!(
        get(a, "empty"),
        Some(&s("")),
        "the empty string stays empty"
    );
    assert_eq!(
        get(a, "raw"),
        Some(&s("")),
        "bytes hash to the empty string"
    );
    assert_eq!(get(a, "other"), Some(&s("abc")), "not named: untouched");
    assert!(!keys(a).contains(&"absent"));
}

#[tokio::test]
async fn extract_writes_named_groups_and_keeps_the_source() {
    let h = Harness::new(
        r#"
actions:
  - key: url
    action: extract
    pattern: '^(?P<scheme>[a-z]+)://(?P<host>[^/:]+)(?::(?P<port>\d+))?(?P<path>/[^?]*)'
"#,
        TRACES,
    );
    let out = h
        .run_payload(traces(vec![(
            "svc",
            vec![
                span(
                    "match",
                    attrs(&[
                        ("url", s("https://example.com/a/b?q=1")),
                        ("host", s("overwritten")),
                    ]),
                ),
                span("no-match", attrs(&[("url", s("not a url"))])),
                span("not-a-string", attrs(&[("url", Val::IntValue(3))])),
            ],
        )]))
        .await;
    let spans = spans_of(&out);
    let a = &spans[0].attributes;
    assert_eq!(get(a, "url"), Some(&s("https://example.com/a/b?q=1")));
    assert_eq!(get(a, "scheme"), Some(&s("https")));
    assert_eq!(
        get(a, "host"),
        Some(&s("example.com")),
        "an existing key is overwritten"
    );
    assert_eq!(
        get(a, "port"),
        Some(&s("")),
        "a group that took no part gives \"\""
    );
    assert_eq!(get(a, "path"), Some(&s("/a/b")));
    assert_eq!(keys(a).iter().filter(|k| **k == "host").count(), 1);
    assert_eq!(keys(&spans[1].attributes), vec!["url"]);
    assert_eq!(keys(&spans[2].attributes), vec!["url"]);
}

#[tokio::test]
async fn extract_into_its_own_key_replaces_the_source() {
    let h = Harness::new(
        r#"
actions:
  - { key: id, action: extract, pattern: "^user-(?P<id>\\d+)$" }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[("id", s("user-981"))])))
        .await;
    assert_eq!(get(only_attrs(&out), "id"), Some(&s("981")));
}

#[tokio::test]
async fn convert_changes_types_and_leaves_unconvertible_values_counting_them() {
    let h = Harness::new(
        r#"
actions:
  - { key: a, action: convert, converted_type: int }
  - { key: b, action: convert, converted_type: int }
  - { key: c, action: convert, converted_type: int }
  - { key: d, action: convert, converted_type: int }
  - { key: e, action: convert, converted_type: double }
  - { key: f, action: convert, converted_type: double }
  - { key: g, action: convert, converted_type: double }
  - { key: h, action: convert, converted_type: string }
  - { key: i, action: convert, converted_type: string }
  - { key: j, action: convert, converted_type: string }
  - { key: k, action: convert, converted_type: string }
  - { key: l, action: convert, converted_type: int }
  - { key: missing, action: convert, converted_type: int }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(attrs(&[
            ("a", s("123")),
            ("b", s("abc")),
            ("c", Val::DoubleValue(-3.9)),
            ("d", Val::BoolValue(true)),
            ("e", Val::IntValue(7)),
            ("f", s("1e400")),
            ("g", s(" 2.5")),
            ("h", Val::IntValue(42)),
            ("i", Val::DoubleValue(1e21)),
            ("j", Val::BoolValue(false)),
            ("k", Val::DoubleValue(0.000_000_15)),
            ("l", Val::BytesValue(vec![1])),
        ])))
        .await;
    let a = only_attrs(&out);
    assert_eq!(get(a, "a"), Some(&Val::IntValue(123)));
    assert_eq!(get(a, "b"), Some(&s("abc")), "not a number: left as it was");
    assert_eq!(
        get(a, "c"),
        Some(&Val::IntValue(-3)),
        "truncates toward zero"
    );
    assert_eq!(get(a, "d"), Some(&Val::IntValue(1)));
    assert_eq!(get(a, "e"), Some(&Val::DoubleValue(7.0)));
    assert_eq!(
        get(a, "f"),
        Some(&s("1e400")),
        "out of range: left as it was"
    );
    assert_eq!(get(a, "g"), Some(&s(" 2.5")), "spaces are not trimmed");
    assert_eq!(get(a, "h"), Some(&s("42")));
    assert_eq!(get(a, "i"), Some(&s("1e+21")), "Go's AsString form");
    assert_eq!(get(a, "j"), Some(&s("false")));
    assert_eq!(get(a, "k"), Some(&s("1.5e-7")));
    assert_eq!(get(a, "l"), Some(&Val::BytesValue(vec![1])));
    assert!(!keys(a).contains(&"missing"));
    assert_eq!(
        h.metric("sluice_processor_attributes_convert_failed_total"),
        Some(4.0),
        "abc, 1e400, \" 2.5\" and bytes could not be converted"
    );
}

#[tokio::test]
async fn actions_apply_in_order_each_seeing_the_previous_ones_result() {
    let h = Harness::new(
        r#"
actions:
  - { key: user.copy, action: insert, from_attribute: user }
  - { key: user, action: hash }
  - { key: user.copy, action: extract, pattern: "^(?P<initial>.)" }
  - { key: user.copy, action: delete }
"#,
        TRACES,
    );
    let out = h.run_payload(one_span(attrs(&[("user", s("abc"))]))).await;
    let a = only_attrs(&out);
    assert_eq!(
        get(a, "user"),
        Some(&s(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    assert_eq!(get(a, "initial"), Some(&s("a")), "extracted from the copy");
    assert_eq!(
        keys(a),
        vec!["user", "initial"],
        "the copy was deleted last"
    );
}

#[tokio::test]
async fn a_key_with_no_value_counts_as_present_and_empty() {
    let h = Harness::new(
        r#"
actions:
  - { key: k, action: insert, value: new }
  - { key: k, action: convert, converted_type: string }
"#,
        TRACES,
    );
    let out = h
        .run_payload(one_span(vec![KeyValue {
            key: "k".into(),
            value: None,
            ..Default::default()
        }]))
        .await;
    let a = only_attrs(&out);
    assert_eq!(a.len(), 1, "insert saw the key and did nothing");
    assert_eq!(
        get(a, "k"),
        Some(&s("")),
        "the empty value converts to \"\""
    );
}
