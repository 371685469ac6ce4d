//! include / exclude for spans, log records and metrics.

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, NumberDataPoint, Sum,
};

use super::*;

/// The spans (by name) that got `touched`.
fn touched(p: &Payload) -> Vec<String> {
    spans_of(p)
        .into_iter()
        .filter(|s| get(&s.attributes, "touched").is_some())
        .map(|s| s.name.clone())
        .collect()
}

#[tokio::test]
async fn include_services_strict_processes_only_that_services_spans() {
    let h = Harness::new(
        r#"
include:
  match_type: strict
  services: [checkout]
actions:
  - { key: touched, action: insert, value: true }
"#,
        Signal::Traces,
    );
    let out = h
        .run_payload(traces(vec![
            ("checkout", vec![span("a", vec![]), span("b", vec![])]),
            ("checkout-v2", vec![span("c", vec![])]),
            ("billing", vec![span("d", vec![])]),
        ]))
        .await;
    assert_eq!(touched(&out), vec!["a", "b"]);
}

#[tokio::test]
async fn regexp_span_names_match_anywhere_and_exclude_wins_over_include() {
    let h = Harness::new(
        r#"
include:
  match_type: regexp
  span_names: ["^GET ", "health"]
exclude:
  match_type: strict
  attributes:
    - { key: http.status_code, value: 200 }
actions:
  - { key: touched, action: insert, value: 1 }
"#,
        Signal::Traces,
    );
    let out = h
        .run_payload(traces(vec![(
            "svc",
            vec![
                span("GET /a", attrs(&[("http.status_code", Val::IntValue(500))])),
                span("GET /b", attrs(&[("http.status_code", Val::IntValue(200))])),
                // A string "200" is not the int 200: not excluded.
                span("GET /c", attrs(&[("http.status_code", s("200"))])),
                span("/api/healthz", vec![]),
                span("POST /a", vec![]),
            ],
        )]))
        .await;
    assert_eq!(touched(&out), vec!["GET /a", "GET /c", "/api/healthz"]);
}

#[tokio::test]
async fn attributes_resources_libraries_and_span_kinds_must_all_match() {
    let h = Harness::new(
        r#"
include:
  match_type: strict
  span_kinds: [SPAN_KIND_SERVER]
  attributes:
    - { key: tenant }
  resources:
    - { key: service.name, value: svc }
  libraries:
    - { name: lib, version: "1.0" }
actions:
  - { key: touched, action: insert, value: yes }
"#,
        Signal::Traces,
    );
    let mut client = span("client", attrs(&[("tenant", s("t"))]));
    client.kind = 3;
    let out = h
        .run_payload(traces(vec![
            (
                "svc",
                vec![
                    span("server", attrs(&[("tenant", s("t"))])),
                    span("no-tenant", vec![]),
                    client,
                ],
            ),
            (
                "other",
                vec![span("other-service", attrs(&[("tenant", s("t"))]))],
            ),
        ]))
        .await;
    assert_eq!(touched(&out), vec!["server"]);

    // Another scope version: nothing matches.
    let mut p = traces(vec![(
        "svc",
        vec![span("server", attrs(&[("tenant", s("t"))]))],
    )]);
    if let Payload::Traces(r) = &mut p {
        r.resource_spans[0].scope_spans[0].scope = scope("lib", "2.0");
    }
    let out = h.run_payload(p).await;
    assert!(touched(&out).is_empty());
}

#[tokio::test]
async fn regexp_attribute_values_match_the_string_form_of_numbers() {
    let h = Harness::new(
        r#"
include:
  match_type: regexp
  attributes:
    - { key: http.status_code, value: "^5\\d\\d$" }
actions:
  - { key: touched, action: insert, value: true }
"#,
        Signal::Traces,
    );
    let out = h
        .run_payload(traces(vec![(
            "svc",
            vec![
                span(
                    "int-503",
                    attrs(&[("http.status_code", Val::IntValue(503))]),
                ),
                span("str-500", attrs(&[("http.status_code", s("500"))])),
                span(
                    "int-200",
                    attrs(&[("http.status_code", Val::IntValue(200))]),
                ),
                span(
                    "bytes",
                    attrs(&[("http.status_code", Val::BytesValue(b"500".to_vec()))]),
                ),
            ],
        )]))
        .await;
    assert_eq!(touched(&out), vec!["int-503", "str-500"]);
}

#[tokio::test]
async fn logs_match_bodies_severity_texts_and_attributes() {
    let h = Harness::new(
        r#"
include:
  match_type: regexp
  log_bodies: ["password"]
  log_severity_texts: ["^(WARN|ERROR)$"]
exclude:
  match_type: strict
  attributes:
    - { key: audited, value: true }
actions:
  - { key: user, action: hash }
  - { key: redacted, action: insert, value: true }
"#,
        Signal::Logs,
    );
    let out = h
        .run_payload(logs(
            "svc",
            vec![
                log("bad password for bob", "WARN", attrs(&[("user", s("abc"))])),
                log("bad password for eve", "INFO", attrs(&[("user", s("abc"))])),
                log("all good", "ERROR", attrs(&[("user", s("abc"))])),
                log(
                    "password reset",
                    "ERROR",
                    attrs(&[("user", s("abc")), ("audited", Val::BoolValue(true))]),
                ),
            ],
        ))
        .await;
    let records = log_records_of(&out);
    let redacted: Vec<bool> = records
        .iter()
        .map(|r| get(&r.attributes, "redacted").is_some())
        .collect();
    assert_eq!(redacted, vec![true, false, false, false]);
    assert_eq!(
        get(&records[0].attributes, "user"),
        Some(&s(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    assert_eq!(get(&records[1].attributes, "user"), Some(&s("abc")));
}

fn number_points(n: usize) -> Vec<NumberDataPoint> {
    (0..n)
        .map(|i| NumberDataPoint {
            attributes: attrs(&[("host", s(&format!("h{i}")))]),
            ..Default::default()
        })
        .collect()
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// For each metric, whether each of its data points has `team`.
fn teams(p: &Payload) -> Vec<(String, Vec<bool>)> {
    metrics_of(p)
        .into_iter()
        .map(|m| {
            let points: Vec<bool> = match &m.data {
                Some(Data::Gauge(g)) => g
                    .data_points
                    .iter()
                    .map(|d| get(&d.attributes, "team").is_some())
                    .collect(),
                Some(Data::Sum(s)) => s
                    .data_points
                    .iter()
                    .map(|d| get(&d.attributes, "team").is_some())
                    .collect(),
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .map(|d| get(&d.attributes, "team").is_some())
                    .collect(),
                _ => vec![],
            };
            (m.name.clone(), points)
        })
        .collect()
}

fn three_metrics() -> Vec<Metric> {
    vec![
        metric(
            "http.server.duration",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs(&[("route", s("/"))]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        metric(
            "http.server.active",
            Data::Gauge(Gauge {
                data_points: number_points(2),
            }),
        ),
        metric(
            "process.cpu",
            Data::Sum(Sum {
                data_points: number_points(2),
                ..Default::default()
            }),
        ),
    ]
}

#[tokio::test]
async fn metrics_match_by_metric_name_and_process_every_data_point() {
    let h = Harness::new(
        r#"
include:
  match_type: regexp
  metric_names: ["^http\\."]
actions:
  - { key: team, action: upsert, value: web }
"#,
        Signal::Metrics,
    );
    let out = h.run_payload(metrics("prod", three_metrics())).await;
    assert_eq!(
        teams(&out),
        vec![
            ("http.server.duration".to_string(), vec![true]),
            ("http.server.active".to_string(), vec![true, true]),
            ("process.cpu".to_string(), vec![false, false]),
        ]
    );
}

#[tokio::test]
async fn metrics_excluded_by_resource_are_untouched() {
    let h = Harness::new(
        r#"
exclude:
  match_type: strict
  resources:
    - { key: env, value: dev }
actions:
  - { key: team, action: insert, value: ops }
"#,
        Signal::Metrics,
    );
    let dev = h.run_payload(metrics("dev", three_metrics())).await;
    assert!(teams(&dev).iter().all(|(_, p)| p.iter().all(|t| !t)));
    let prod = h.run_payload(metrics("prod", three_metrics())).await;
    assert!(teams(&prod).iter().all(|(_, p)| p.iter().all(|t| *t)));
}

#[tokio::test]
async fn a_missing_service_name_matches_the_collectors_placeholder() {
    let h = Harness::new(
        r#"
include:
  match_type: strict
  services: ["<nil-service-name>"]
actions:
  - { key: touched, action: insert, value: true }
"#,
        Signal::Traces,
    );
    let mut p = traces(vec![("x", vec![span("anonymous", vec![])])]);
    if let Payload::Traces(r) = &mut p {
        r.resource_spans[0].resource = None;
    }
    let out = h.run_payload(p).await;
    assert_eq!(touched(&out), vec!["anonymous"]);
}
