//! A batch still in its protobuf encoding is not decoded when the
//! configuration cannot change it.

use sluice_pdata::Bytes;

use super::*;

fn encoded(p: &Payload) -> Batch {
    Batch::from_encoded(p.signal(), Bytes::from(p.encode_proto())).expect("valid request")
}

fn sample() -> Payload {
    traces(vec![(
        "svc",
        vec![span(
            "op",
            attrs(&[("http.method", s("GET")), ("user.id", s("u1"))]),
        )],
    )])
}

#[tokio::test]
async fn key_gated_actions_skip_a_request_without_their_keys_undecoded() {
    let h = Harness::new(
        r#"
actions:
  - { key: password, action: delete }
  - { key: card.number, action: hash }
  - { key: retries, action: convert, converted_type: int }
  - { key: url, action: extract, pattern: "(?P<host>[a-z.]+)" }
  - { key: env, action: update, value: prod }
"#,
        Signal::Traces,
    );
    let input = encoded(&sample());
    let bytes = input.encoded().cloned().expect("encoded");
    let out = h.run(input).await;
    assert!(!out.is_decoded(), "nothing could change: not decoded");
    assert_eq!(out.encoded(), Some(&bytes), "the same bytes pass on");
}

#[tokio::test]
async fn a_present_key_makes_the_request_processed() {
    let h = Harness::new(
        r#"
actions:
  - { key: password, action: delete }
  - { key: user.id, action: hash }
"#,
        Signal::Traces,
    );
    let out = h.run(encoded(&sample())).await;
    assert!(
        out.encoded().is_none(),
        "changed: the old encoding is dropped"
    );
    let p = out.into_payload();
    // SHA-256 of "u1", computed with Python's hashlib.
    assert_eq!(
        get(only_attrs(&p), "user.id"),
        Some(&s(
            "bb82030dbc2bcaba32a90bf2e207a84a856fc5f033b77c480836ab6f77f40f19"
        ))
    );
}

#[tokio::test]
async fn an_include_key_missing_from_the_request_skips_it_undecoded() {
    let h = Harness::new(
        r#"
include:
  match_type: strict
  attributes:
    - { key: tenant }
actions:
  - { key: touched, action: insert, value: true }
"#,
        Signal::Traces,
    );
    let out = h.run(encoded(&sample())).await;
    assert!(!out.is_decoded(), "no span can be included: not decoded");
}

#[tokio::test]
async fn an_action_that_always_applies_decodes_and_changes() {
    let h = Harness::new(
        r#"
actions:
  - { key: password, action: delete }
  - { key: env, action: upsert, value: prod }
"#,
        Signal::Traces,
    );
    let out = h.run(encoded(&sample())).await.into_payload();
    assert_eq!(get(only_attrs(&out), "env"), Some(&s("prod")));
}

#[tokio::test]
async fn a_pattern_action_always_decodes() {
    let h = Harness::new(
        r#"
actions:
  - { action: delete, pattern: "^user\\." }
"#,
        Signal::Traces,
    );
    let out = h.run(encoded(&sample())).await.into_payload();
    assert_eq!(keys(only_attrs(&out)), vec!["http.method"]);
}
