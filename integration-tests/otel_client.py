#!/usr/bin/env python3
"""Export metrics to an OTLP endpoint with the real OpenTelemetry Python SDK
and record exactly what was exported.

Usage:
    python3 otel_client.py --protocol grpc|http --endpoint URL --record FILE
                           [--service NAME] [--rounds N] [--timeout SECONDS]
                           [--header K=V ...] [--attr K=V ...]

  --endpoint  grpc: e.g. http://127.0.0.1:4317 (http:// => plaintext channel)
              http: full URL, e.g. http://127.0.0.1:4318/v1/metrics
  --header    an extra request header (gRPC metadata) on every export; repeatable
              (gRPC metadata keys are sent lowercased, as gRPC requires)
  --attr      an extra attribute on every measurement (data point); repeatable

Every call the SDK makes to the exporter goes through RecordingMetricExporter,
which first appends the OTLP ExportMetricsServiceRequest for that batch
(``encode_metrics(metrics_data).SerializeToString()``, i.e. the same bytes the
real OTLP exporters put on the wire) to the record file, then hands the batch
to the real OTLP exporter.

Record file format: a sequence of records, each a 4-byte big-endian unsigned
length followed by that many bytes of serialized
opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest.
The file is truncated at start-up. One record per export call, in order.

Each round records measurements and then force-flushes, so --rounds N gives
exactly N export calls (the reader never exports on its own; shutdown does
not export again). All instruments use cumulative temporality (the OTLP
exporters' default unless OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE
is set).

Prints "exported N requests" on stdout at the end. Exits 1 if any export
returned FAILURE (or raised), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
from typing import BinaryIO, Iterable

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

SCOPE_NAME = "sluice.e2e"
SCOPE_VERSION = "1.2.3"
HISTOGRAM_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]


class RecordingMetricExporter(MetricExporter):
    """Wraps a real exporter; records each batch before delegating to it."""

    def __init__(self, inner: MetricExporter, record: BinaryIO) -> None:
        # Report exactly the same temporality/aggregation preferences as the
        # inner exporter; PeriodicExportingMetricReader reads these from us.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._record = record
        self.exports = 0
        self.failures = 0

    def export(
        self,
        metrics_data: MetricsData,
        timeout_millis: float = 10_000,
        **kwargs,
    ) -> MetricExportResult:
        payload = encode_metrics(metrics_data).SerializeToString()
        self._record.write(struct.pack(">I", len(payload)))
        self._record.write(payload)
        self._record.flush()
        self.exports += 1
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:  # the reader would swallow it; count it instead
            print(f"otel_client: export #{self.exports} raised: {exc!r}", file=sys.stderr)
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.failures += 1
            print(f"otel_client: export #{self.exports} returned {result}", file=sys.stderr)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        # PeriodicExportingMetricReader calls shutdown(timeout=...), so pass
        # kwargs through untouched.
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def build_inner_exporter(
    protocol: str, endpoint: str, timeout: float, headers: dict[str, str] | None = None
) -> MetricExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        grpc_headers = {k.lower(): v for k, v in headers.items()} if headers else None
        return OTLPMetricExporter(endpoint=endpoint, timeout=timeout, headers=grpc_headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, timeout=timeout, headers=headers or None)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=("grpc", "http"), required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--record", required=True, help="file to write length-prefixed export requests to")
    p.add_argument("--service", default="pay-gateway", help="service.name resource attribute")
    p.add_argument("--rounds", type=int, default=3, help="number of record+flush rounds (export calls)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-export timeout in seconds")
    p.add_argument(
        "--header", type=key_value, action="append", default=[], metavar="K=V",
        help="extra request header on every export (repeatable)",
    )
    p.add_argument(
        "--attr", type=key_value, action="append", default=[], metavar="K=V",
        help="extra attribute on every measurement (repeatable)",
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    resource = Resource.create(
        {
            "service.name": args.service,
            "service.namespace": "payments",
            "service.instance.id": "inst-1",
            "deployment.environment": "test",
            "host.cpus": 4,
            "test.flag": True,
        }
    )

    # Spans are only needed to give measurements a sampled span context, so
    # the (trace-based) exemplar filter attaches exemplars with trace/span ids.
    tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    tracer = tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)

    record = open(args.record, "wb")
    exporter = RecordingMetricExporter(
        build_inner_exporter(args.protocol, args.endpoint, args.timeout, dict(args.header)),
        record,
    )
    # Infinite interval: no background thread, so nothing is exported except
    # by our explicit force_flush(), and shutdown() does not export again.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        exemplar_filter=TraceBasedExemplarFilter(),
        shutdown_on_exit=False,
        views=[
            View(
                instrument_name="http.server.request.duration",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=HISTOGRAM_BOUNDARIES),
            )
        ],
    )
    meter = provider.get_meter(SCOPE_NAME, SCOPE_VERSION)

    requests = meter.create_counter(
        "http.server.requests", unit="{request}", description="Number of HTTP server requests"
    )
    queue_depth = meter.create_up_down_counter(
        "queue.depth", unit="{item}", description="Items waiting in the work queue"
    )
    duration = meter.create_histogram(
        "http.server.request.duration", unit="s", description="HTTP server request duration"
    )
    bytes_sent = meter.create_counter("bytes.sent", unit="By", description="Bytes sent to clients")

    extra = dict(args.attr)

    def attrs(a: dict) -> dict:
        return {**a, **extra}

    state = {"round": 0}

    def memory_usage(options: CallbackOptions) -> Iterable[Observation]:
        r = state["round"]
        return [
            Observation(1_048_576 * (100 + r), attrs({"memory.state": "used"})),
            Observation(1_048_576 * (400 - r), attrs({"memory.state": "free"})),
        ]

    meter.create_observable_gauge(
        "process.memory.usage", callbacks=[memory_usage], unit="By", description="Process memory usage"
    )

    get_ok = attrs({"http.method": "GET", "http.route": "/pay", "http.status_code": 200})
    post_ok = attrs({"http.method": "POST", "http.route": "/pay", "http.status_code": 201})
    post_err = attrs({"http.method": "POST", "http.route": "/refund", "http.status_code": 500})

    flush_ok = True
    for r in range(1, args.rounds + 1):
        state["round"] = r

        # Outside any span: no exemplars for these measurements.
        requests.add(2, get_ok)
        duration.record(0.003, attrs({"http.route": "/pay"}))
        queue_depth.add(5, attrs({"queue": "settlements"}))

        # Inside sampled spans: exemplars carrying trace_id/span_id.
        with tracer.start_as_current_span("work"):
            requests.add(1, post_ok)
            requests.add(r, post_err)
            duration.record(0.042, attrs({"http.route": "/pay"}))
            duration.record(0.1, attrs({"http.route": "/pay"}))  # exactly on a boundary
            duration.record(0.75 * r, attrs({"http.route": "/refund"}))
            duration.record(3.7, attrs({"http.route": "/refund"}))  # overflow bucket
            bytes_sent.add(1536.5 * r, attrs({"direction": "egress"}))
            queue_depth.add(-2, attrs({"queue": "settlements"}))

        flush_ok = provider.force_flush(timeout_millis=args.timeout * 1000 + 5000) and flush_ok
        if r < args.rounds:
            time.sleep(0.1)

    provider.shutdown()
    tracer_provider.shutdown()
    record.close()

    print(f"exported {exporter.exports} requests")
    if exporter.failures or not flush_ok:
        print(
            f"otel_client: {exporter.failures} of {exporter.exports} exports failed"
            + ("" if flush_ok else " (force_flush reported failure)"),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
