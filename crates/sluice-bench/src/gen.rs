//! Realistic OTLP export requests, built once and encoded once.
//!
//! * traces: one resource (13 attributes, as an instrumented service has),
//!   two scopes, spans grouped 8 to a trace with parent links, each span with
//!   10 attributes of mixed types (string, int, bool, double, string array)
//!   and 2 events with attributes;
//! * metrics: sums, gauges and histograms (10 buckets) in turn, 8 data points
//!   per metric with 3 attributes each; items are data points;
//! * logs: records with a text body of 80-200 bytes, severity, 5 attributes
//!   and trace context.
//!
//! Values vary by item and by `variant`, so the requests of a pool differ,
//! but generation is deterministic (a fixed xorshift seed).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use crate::wire::Signal;

/// Spans per trace in generated requests.
pub const SPANS_PER_TRACE: usize = 8;
/// Data points per generated metric.
pub const POINTS_PER_METRIC: usize = 8;

/// 2024-01-01T00:00:00Z in nanoseconds: a fixed, realistic timestamp base.
const BASE_TIME_NANOS: u64 = 1_704_067_200_000_000_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn b(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

fn d(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn string_array(key: &str, values: &[&str]) -> KeyValue {
    kv(
        key,
        any_value::Value::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue((*v).to_string())),
                })
                .collect(),
        }),
    )
}

const SERVICES: [&str; 8] = [
    "checkout", "cart", "payment", "shipping", "frontend", "ad", "quote", "email",
];
const ROUTES: [&str; 8] = [
    "/api/v1/orders/{id}",
    "/api/v1/cart",
    "/api/v1/products",
    "/api/v1/products/{id}",
    "/api/v1/checkout",
    "/api/v1/users/{id}/profile",
    "/healthz",
    "/api/v1/recommendations",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const TABLES: [&str; 4] = ["orders", "carts", "products", "users"];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
];

fn resource(rng: &mut Rng, variant: usize) -> Resource {
    let service = SERVICES[variant % SERVICES.len()];
    Resource {
        attributes: vec![
            s("service.name", service),
            s("service.namespace", "shop"),
            s(
                "service.version",
                format!("1.{}.{}", variant % 7, rng.below(20)),
            ),
            s(
                "service.instance.id",
                format!("{:016x}-{:04x}", rng.next(), variant),
            ),
            s("deployment.environment.name", "production"),
            s(
                "host.name",
                format!("ip-10-0-{}-{}.ec2.internal", variant % 4, rng.below(250)),
            ),
            s("host.arch", "amd64"),
            s("os.type", "linux"),
            i("process.pid", 1000 + rng.below(30_000) as i64),
            s("process.runtime.name", "OpenJDK Runtime Environment"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "java"),
            s("telemetry.sdk.version", "1.40.0"),
        ],
        ..Default::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: "2.6.0".to_string(),
        ..Default::default()
    }
}

/// Trace id `index` of a template: bytes 0..8 are overwritten per request by
/// the sender, bytes 8..16 tell traces of one request apart.
fn trace_id(variant: usize, index: usize) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[0] = 0xA0; // never all zero, even before patching
    id[8..12].copy_from_slice(&(variant as u32).to_be_bytes());
    id[12..16].copy_from_slice(&(index as u32).to_be_bytes());
    id.to_vec()
}

/// Span id `index` of a template: bytes 0..6 are overwritten per request,
/// bytes 6..8 tell spans of one request apart (up to 65536 per request).
fn span_id(index: usize) -> Vec<u8> {
    let mut id = [0u8; 8];
    id[0] = 0x5B;
    id[6..8].copy_from_slice(&(index as u16).to_be_bytes());
    id.to_vec()
}

/// An export request of `items` spans.
pub fn traces(items: usize, variant: usize) -> ExportTraceServiceRequest {
    let mut rng = Rng::new(0x7ACE + variant as u64);
    let resource = resource(&mut rng, variant);
    let mut http_spans = Vec::new();
    let mut db_spans = Vec::new();
    for n in 0..items {
        let in_trace = n % SPANS_PER_TRACE;
        let root = n - in_trace;
        let start = BASE_TIME_NANOS + (n as u64) * 1_000_000 + rng.below(1_000_000);
        let duration = 200_000 + rng.below(50_000_000);
        let method = rng.pick(&METHODS);
        let route = rng.pick(&ROUTES);
        let status_code: i64 = if rng.below(50) == 0 { 500 } else { 200 };
        let is_db = in_trace % 3 == 2;
        let (name, kind, attributes) = if is_db {
            let table = rng.pick(&TABLES);
            (
                format!("SELECT shop.{table}"),
                span::SpanKind::Client,
                vec![
                    s("db.system", "postgresql"),
                    s("db.namespace", "shop"),
                    s(
                        "db.query.text",
                        format!("SELECT * FROM {table} WHERE id = $1 AND tenant = $2 LIMIT 50"),
                    ),
                    s("db.operation.name", "SELECT"),
                    s("server.address", "db-primary.shop.svc.cluster.local"),
                    i("server.port", 5432),
                    i("db.response.returned_rows", rng.below(50) as i64),
                    b("db.statement.cached", rng.below(2) == 0),
                    d("db.client.connection.wait_ratio", rng.unit()),
                    string_array("db.query.parameters", &["$1", "$2"]),
                ],
            )
        } else {
            (
                format!("{method} {route}"),
                if in_trace == 0 {
                    span::SpanKind::Server
                } else {
                    span::SpanKind::Internal
                },
                vec![
                    s("http.request.method", method),
                    s("http.route", route),
                    s(
                        "url.path",
                        route.replace("{id}", &rng.below(100_000).to_string()),
                    ),
                    s("url.scheme", "https"),
                    i("http.response.status_code", status_code),
                    s("network.protocol.version", "1.1"),
                    s("user_agent.original", rng.pick(&AGENTS)),
                    i("http.request.body.size", rng.below(16_384) as i64),
                    b("http.request.resend", false),
                    d("http.server.queue_ratio", rng.unit()),
                ],
            )
        };
        let events = vec![
            span::Event {
                time_unix_nano: start + duration / 4,
                name: "message".to_string(),
                attributes: vec![
                    s("message.type", "SENT"),
                    i("message.id", n as i64),
                    i("message.uncompressed_size", rng.below(4096) as i64),
                ],
                ..Default::default()
            },
            span::Event {
                time_unix_nano: start + duration / 2,
                name: "cache.lookup".to_string(),
                attributes: vec![
                    s("cache.key", format!("k{}", rng.below(1_000_000))),
                    b("cache.hit", rng.below(3) != 0),
                ],
                ..Default::default()
            },
        ];
        let parent = if in_trace == 0 {
            Vec::new()
        } else {
            span_id(root + (in_trace - 1) / 2)
        };
        let span = Span {
            trace_id: trace_id(variant, n / SPANS_PER_TRACE),
            span_id: span_id(n),
            parent_span_id: parent,
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration,
            attributes,
            events,
            status: Some(Status {
                code: if status_code >= 500 {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
                ..Default::default()
            }),
            flags: 0x100 | 1,
            ..Default::default()
        };
        if is_db {
            db_spans.push(span);
        } else {
            http_spans.push(span);
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(scope("io.opentelemetry.servlet-5.0")),
                    spans: http_spans,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
                },
                ScopeSpans {
                    scope: Some(scope("io.opentelemetry.jdbc")),
                    spans: db_spans,
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
                },
            ],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
        }],
    }
}

fn point_attributes(rng: &mut Rng) -> Vec<KeyValue> {
    vec![
        s("http.request.method", rng.pick(&METHODS)),
        s("http.route", rng.pick(&ROUTES)),
        i(
            "http.response.status_code",
            if rng.below(20) == 0 { 500 } else { 200 },
        ),
    ]
}

/// An export request of `items` metric data points: sums, gauges and
/// histograms in turn, `POINTS_PER_METRIC` points per metric (the last
/// metric takes what remains).
pub fn metrics(items: usize, variant: usize) -> ExportMetricsServiceRequest {
    let mut rng = Rng::new(0x3E7 + variant as u64);
    let resource = resource(&mut rng, variant);
    let start = BASE_TIME_NANOS;
    let now = BASE_TIME_NANOS + 60_000_000_000;
    let mut metrics = Vec::new();
    let mut left = items;
    let mut m = 0usize;
    while left > 0 {
        let points = left.min(POINTS_PER_METRIC);
        left -= points;
        let number_points = |rng: &mut Rng, int: bool| -> Vec<NumberDataPoint> {
            (0..points)
                .map(|_| NumberDataPoint {
                    attributes: point_attributes(rng),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(if int {
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                            rng.below(1_000_000) as i64,
                        )
                    } else {
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                            rng.unit() * 100.0,
                        )
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let (name, unit, data) = match m % 3 {
            0 => (
                format!("http.server.request.count.{m}"),
                "{request}",
                metric::Data::Sum(Sum {
                    data_points: number_points(&mut rng, true),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            1 => (
                format!("process.runtime.jvm.cpu.utilization.{m}"),
                "1",
                metric::Data::Gauge(Gauge {
                    data_points: number_points(&mut rng, false),
                }),
            ),
            _ => {
                let bounds = vec![
                    5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
                ];
                let data_points = (0..points)
                    .map(|_| {
                        let counts: Vec<u64> =
                            (0..=bounds.len()).map(|_| rng.below(1000)).collect();
                        let count = counts.iter().sum();
                        HistogramDataPoint {
                            attributes: point_attributes(&mut rng),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count,
                            sum: Some(count as f64 * 42.5),
                            bucket_counts: counts,
                            explicit_bounds: bounds.clone(),
                            min: Some(0.4),
                            max: Some(2400.0),
                            ..Default::default()
                        }
                    })
                    .collect();
                (
                    format!("http.server.request.duration.{m}"),
                    "ms",
                    metric::Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    }),
                )
            }
        };
        metrics.push(Metric {
            name,
            description: "generated by sluice-loadgen".to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
        m += 1;
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope("io.opentelemetry.runtime-telemetry")),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn log_body(rng: &mut Rng) -> String {
    let a = rng.below(10_000_000);
    let u = rng.next() as u32;
    let c = rng.below(20);
    let x = rng.below(1000);
    let y = rng.below(100);
    match rng.below(5) {
        0 => format!("order {a} placed by user u-{u:08x} with {c} items, total EUR {x}.{y:02}"),
        1 => format!(
            "payment authorised for order {a} (user u-{u:08x}), {c} attempts, provider latency {x}.{y:02} ms"
        ),
        2 => format!(
            "cache miss for product {a} in region eu-west-{c}, fetched {x} rows from the primary in {y} ms"
        ),
        3 => format!(
            "request to /api/v1/cart for session {a} of user u-{u:08x} took longer than expected: {x} ms (budget {y} ms)"
        ),
        _ => format!("shipping quote {a} computed for user u-{u:08x}: {c} parcels, EUR {x}.{y:02}"),
    }
}

/// An export request of `items` log records.
pub fn logs(items: usize, variant: usize) -> ExportLogsServiceRequest {
    let mut rng = Rng::new(0x1065 + variant as u64);
    let resource = resource(&mut rng, variant);
    let severities = [
        (9, "INFO"),
        (9, "INFO"),
        (9, "INFO"),
        (13, "WARN"),
        (17, "ERROR"),
        (5, "DEBUG"),
    ];
    let log_records = (0..items)
        .map(|n| {
            let (number, text) = severities[rng.below(severities.len() as u64) as usize];
            let t = BASE_TIME_NANOS + (n as u64) * 250_000 + rng.below(250_000);
            LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t + 1_000_000,
                severity_number: number,
                severity_text: text.to_string(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(log_body(&mut rng))),
                }),
                attributes: vec![
                    s("code.function.name", "com.shop.checkout.OrderService.place"),
                    i("thread.id", rng.below(200) as i64),
                    s(
                        "thread.name",
                        format!("http-nio-8080-exec-{}", rng.below(50)),
                    ),
                    i("http.response.status_code", 200),
                    d("duration_ms", rng.unit() * 250.0),
                ],
                trace_id: trace_id(variant, n / SPANS_PER_TRACE),
                span_id: span_id(n),
                flags: 1,
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope("io.opentelemetry.logback-appender-1.0")),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The encoded export request of `signal` with `items` items.
pub fn encoded(signal: Signal, items: usize, variant: usize) -> Vec<u8> {
    match signal {
        Signal::Traces => traces(items, variant).encode_to_vec(),
        Signal::Metrics => metrics(items, variant).encode_to_vec(),
        Signal::Logs => logs(items, variant).encode_to_vec(),
    }
}
