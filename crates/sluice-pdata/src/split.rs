//! Splitting a request at an item boundary, keeping the resource and scope
//! that each item belongs to (they are copied into both halves).

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;

use crate::batch::data_point_count;
use crate::Payload;

/// Removes the first `max` items from `payload` and returns them as a new
/// request of the same signal. If `payload` holds `max` items or fewer, all of
/// it is moved out and `payload` is left empty.
pub fn split_off(payload: &mut Payload, max: usize) -> Payload {
    match payload {
        Payload::Traces(req) => {
            let mut out = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
            let mut left = max;
            while left > 0 && !req.resource_spans.is_empty() {
                let rs = &mut req.resource_spans[0];
                let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                if n <= left {
                    left -= n;
                    out.resource_spans.push(req.resource_spans.remove(0));
                    continue;
                }
                let mut part = opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                    resource: rs.resource.clone(),
                    schema_url: rs.schema_url.clone(),
                    scope_spans: Vec::new(),
                };
                while left > 0 {
                    let ss = &mut rs.scope_spans[0];
                    if ss.spans.len() <= left {
                        left -= ss.spans.len();
                        part.scope_spans.push(rs.scope_spans.remove(0));
                    } else {
                        part.scope_spans
                            .push(opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                                scope: ss.scope.clone(),
                                schema_url: ss.schema_url.clone(),
                                spans: ss.spans.drain(..left).collect(),
                            });
                        left = 0;
                    }
                }
                out.resource_spans.push(part);
            }
            Payload::Traces(out)
        }
        Payload::Logs(req) => {
            let mut out =
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::default(
                );
            let mut left = max;
            while left > 0 && !req.resource_logs.is_empty() {
                let rl = &mut req.resource_logs[0];
                let n: usize = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
                if n <= left {
                    left -= n;
                    out.resource_logs.push(req.resource_logs.remove(0));
                    continue;
                }
                let mut part = opentelemetry_proto::tonic::logs::v1::ResourceLogs {
                    resource: rl.resource.clone(),
                    schema_url: rl.schema_url.clone(),
                    scope_logs: Vec::new(),
                };
                while left > 0 {
                    let sl = &mut rl.scope_logs[0];
                    if sl.log_records.len() <= left {
                        left -= sl.log_records.len();
                        part.scope_logs.push(rl.scope_logs.remove(0));
                    } else {
                        part.scope_logs
                            .push(opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                                scope: sl.scope.clone(),
                                schema_url: sl.schema_url.clone(),
                                log_records: sl.log_records.drain(..left).collect(),
                            });
                        left = 0;
                    }
                }
                out.resource_logs.push(part);
            }
            Payload::Logs(out)
        }
        Payload::Metrics(req) => {
            let mut out = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::default();
            let mut left = max;
            while left > 0 && !req.resource_metrics.is_empty() {
                let rm = &mut req.resource_metrics[0];
                let n: usize = rm
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .map(data_point_count)
                    .sum();
                if n <= left {
                    left -= n;
                    out.resource_metrics.push(req.resource_metrics.remove(0));
                    continue;
                }
                let mut part = opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
                    resource: rm.resource.clone(),
                    schema_url: rm.schema_url.clone(),
                    scope_metrics: Vec::new(),
                };
                while left > 0 {
                    let sm = &mut rm.scope_metrics[0];
                    let n: usize = sm.metrics.iter().map(data_point_count).sum();
                    if n <= left {
                        left -= n;
                        part.scope_metrics.push(rm.scope_metrics.remove(0));
                        continue;
                    }
                    let mut scope_part = opentelemetry_proto::tonic::metrics::v1::ScopeMetrics {
                        scope: sm.scope.clone(),
                        schema_url: sm.schema_url.clone(),
                        metrics: Vec::new(),
                    };
                    while left > 0 {
                        let m = &mut sm.metrics[0];
                        let n = data_point_count(m);
                        if n <= left {
                            left -= n;
                            scope_part.metrics.push(sm.metrics.remove(0));
                        } else {
                            scope_part.metrics.push(split_metric(m, left));
                            left = 0;
                        }
                    }
                    part.scope_metrics.push(scope_part);
                }
                out.resource_metrics.push(part);
            }
            Payload::Metrics(out)
        }
    }
}

/// Moves the first `n` data points of `m` into a new metric with the same
/// name, description, unit and metadata.
fn split_metric(m: &mut Metric, n: usize) -> Metric {
    let data = match &mut m.data {
        Some(Data::Gauge(g)) => Some(Data::Gauge(
            opentelemetry_proto::tonic::metrics::v1::Gauge {
                data_points: g.data_points.drain(..n).collect(),
            },
        )),
        Some(Data::Sum(s)) => Some(Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
            data_points: s.data_points.drain(..n).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        })),
        Some(Data::Histogram(h)) => Some(Data::Histogram(
            opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::ExponentialHistogram(h)) => Some(Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::Summary(s)) => Some(Data::Summary(
            opentelemetry_proto::tonic::metrics::v1::Summary {
                data_points: s.data_points.drain(..n).collect(),
            },
        )),
        None => None,
    };
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data,
    }
}

#[cfg(test)]
mod tests;
