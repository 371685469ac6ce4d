#!/usr/bin/env python3
"""Sends known telemetry to an OTLP endpoint with the official OpenTelemetry
Python SDK, then prints a JSON summary of what it sent on stdout.

    send.py grpc|http ENDPOINT SERVICE_NAME COUNT [none|gzip]

ENDPOINT is `host:port` for gRPC and a base URL (`http://host:port`) for
HTTP. The script creates COUNT spans, COUNT data points on each of two
metrics (a counter and a histogram) and COUNT log records, exports them with
the SDK's OTLP exporters of the chosen protocol, flushes and shuts the
providers down, and exits non-zero if any export did not succeed. The
optional last argument picks the exporters' compression (default none).

What each item carries (the end-to-end tests check all of it):
  spans   name `span-<i>`; attributes test.index (int), test.string (string),
          test.int (int), test.double (double), test.bool (bool); one event
          `checkpoint` with event.index (int); every odd span is a child of
          the span before it (same trace id, parentSpanId set)
  metrics counter `sluice.test.counter`: add(i + 1, {index: i});
          histogram `sluice.test.histogram`: record(i * 1.5, {index: i});
          collected exactly once (no periodic export), so COUNT points each
  logs    body `log record <i>`, severity INFO (9), attributes log.index (int)
          and log.kind (string), emitted in the context of span i (so its
          traceId and spanId are span i's)
Every resource has service.name = SERVICE_NAME and sluice.test.protocol.

This file is run by the Rust tests (tests/e2e_sdk.rs) with the venv that
scripts/test creates; it is not part of the sluice binary.
"""

import json
import math
import sys

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

COUNTER_NAME = "sluice.test.counter"
HISTOGRAM_NAME = "sluice.test.histogram"
SCOPE_NAME = "sluice.test.send"
EXPORT_TIMEOUT_SECONDS = 20


def exporters(protocol, endpoint, compression):
    """The three OTLP exporter classes and their constructor arguments."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        common = {
            "endpoint": endpoint,
            "insecure": True,
            "timeout": EXPORT_TIMEOUT_SECONDS,
            "compression": Compression.Gzip if compression == "gzip" else Compression.NoCompression,
        }
        return (
            (OTLPSpanExporter, dict(common)),
            (OTLPMetricExporter, dict(common)),
            (OTLPLogExporter, dict(common)),
        )
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        common = {
            "timeout": EXPORT_TIMEOUT_SECONDS,
            "compression": Compression.Gzip if compression == "gzip" else Compression.NoCompression,
        }
        return (
            (OTLPSpanExporter, dict(common, endpoint=base + "/v1/traces")),
            (OTLPMetricExporter, dict(common, endpoint=base + "/v1/metrics")),
            (OTLPLogExporter, dict(common, endpoint=base + "/v1/logs")),
        )
    raise SystemExit(f"unknown protocol {protocol!r}: expected grpc or http")


def checked(cls, signal, results):
    """A subclass of an SDK exporter that records every export's result, so a
    failed export fails the script instead of being logged and dropped."""

    class Checked(cls):
        def export(self, *args, **kwargs):
            try:
                result = super().export(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - reported, then re-raised
                results.append({"signal": signal, "result": f"exception: {error!r}"})
                raise
            results.append({"signal": signal, "result": getattr(result, "name", str(result))})
            return result

    Checked.__name__ = "Checked" + cls.__name__
    return Checked


def hex_trace_id(value):
    return format(value, "032x")


def hex_span_id(value):
    return format(value, "016x")


def main(argv):
    if len(argv) not in (5, 6):
        raise SystemExit(__doc__)
    protocol, endpoint, service_name, count = argv[1], argv[2], argv[3], int(argv[4])
    compression = argv[5] if len(argv) == 6 else "none"
    if compression not in ("none", "gzip"):
        raise SystemExit(f"unknown compression {compression!r}: expected none or gzip")
    if count < 1:
        raise SystemExit("COUNT must be at least 1")

    resource = Resource.create(
        {"service.name": service_name, "sluice.test.protocol": protocol}
    )
    results = []
    (span_cls, span_args), (metric_cls, metric_args), (log_cls, log_args) = exporters(
        protocol, endpoint, compression
    )
    span_exporter = checked(span_cls, "traces", results)(**span_args)
    metric_exporter = checked(metric_cls, "metrics", results)(**metric_args)
    log_exporter = checked(log_cls, "logs", results)(**log_args)

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    # An infinite interval means no periodic collection: the one force_flush
    # below collects and exports exactly once.
    metric_reader = PeriodicExportingMetricReader(
        metric_exporter, export_interval_millis=math.inf
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))

    tracer = tracer_provider.get_tracer(SCOPE_NAME)
    meter = meter_provider.get_meter(SCOPE_NAME)
    logger = logger_provider.get_logger(SCOPE_NAME)
    counter = meter.create_counter(COUNTER_NAME, unit="1", description="sluice e2e counter")
    histogram = meter.create_histogram(
        HISTOGRAM_NAME, unit="ms", description="sluice e2e histogram"
    )

    spans = []
    logs = []
    previous = None
    for i in range(count):
        parent_ctx = None
        if i % 2 == 1 and previous is not None:
            parent_ctx = trace_api.set_span_in_context(previous)
        span = tracer.start_span(
            f"span-{i}",
            context=parent_ctx,
            attributes={
                "test.index": i,
                "test.string": f"value-{i}",
                "test.int": i * 1000 + 7,
                "test.double": i + 0.25,
                "test.bool": i % 2 == 0,
            },
        )
        span.add_event("checkpoint", attributes={"event.index": i})
        ctx = span.get_span_context()
        parent = previous.get_span_context() if parent_ctx is not None else None
        spans.append(
            {
                "name": f"span-{i}",
                "index": i,
                "trace_id": hex_trace_id(ctx.trace_id),
                "span_id": hex_span_id(ctx.span_id),
                "parent_span_id": hex_span_id(parent.span_id) if parent else "",
            }
        )

        logger.emit(
            context=trace_api.set_span_in_context(span),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=f"log record {i}",
            attributes={"log.index": i, "log.kind": "e2e"},
        )
        logs.append(
            {
                "body": f"log record {i}",
                "index": i,
                "trace_id": hex_trace_id(ctx.trace_id),
                "span_id": hex_span_id(ctx.span_id),
            }
        )

        counter.add(i + 1, {"index": i})
        histogram.record(i * 1.5, {"index": i})
        span.end()
        previous = span

    flushed = {
        "traces": tracer_provider.force_flush(EXPORT_TIMEOUT_SECONDS * 1000),
        "metrics": meter_provider.force_flush(EXPORT_TIMEOUT_SECONDS * 1000),
        "logs": logger_provider.force_flush(EXPORT_TIMEOUT_SECONDS * 1000),
    }
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()

    exported = {r["signal"] for r in results}
    failed = [r for r in results if r["result"] != "SUCCESS"]
    summary = {
        "protocol": protocol,
        "compression": compression,
        "endpoint": endpoint,
        "service_name": service_name,
        "count": count,
        "spans": spans,
        "logs": logs,
        "metrics": {
            "counter": {
                "name": COUNTER_NAME,
                "points": [{"index": i, "value": i + 1} for i in range(count)],
            },
            "histogram": {
                "name": HISTOGRAM_NAME,
                "points": [{"index": i, "sum": i * 1.5, "count": 1} for i in range(count)],
            },
        },
        "flushed": flushed,
        "exports": results,
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()

    problems = []
    if failed:
        problems.append(f"exports that did not succeed: {failed}")
    missing = {"traces", "metrics", "logs"} - exported
    if missing:
        problems.append(f"no export was attempted for: {sorted(missing)}")
    not_flushed = [k for k, v in flushed.items() if not v]
    if not_flushed:
        problems.append(f"force_flush did not complete for: {not_flushed}")
    if problems:
        for p in problems:
            print(f"send.py: {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
