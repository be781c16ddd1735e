#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/<target>/ (run it again after changing it).

Plain Python 3, no packages: the protobuf messages are encoded by hand below, field numbers from
core/proto/. Each seed is small (a few hundred bytes) and reaches one feature: every OTLP metric
type, attributes of every value type, exemplars; remote_write samples, native histograms (integer,
float and custom buckets), exemplars, metadata; a few config files. The fuzzer finds the rest.
"""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"


# --- protobuf, by hand -------------------------------------------------------------------------


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return (n << 1) ^ (n >> 63)


def key(field, wire):
    return varint(field << 3 | wire)


def uint(field, n):
    return key(field, 0) + varint(n) if n else b""


def sint(field, n):
    return uint(field, zigzag(n))


def double(field, x):
    return key(field, 1) + struct.pack("<d", x)


def fixed64(field, n):
    return key(field, 1) + struct.pack("<Q", n)


def msg(field, body):
    return key(field, 2) + varint(len(body)) + body


def string(field, s):
    return msg(field, s.encode() if isinstance(s, str) else s)


def packed_uint(field, ns):
    return msg(field, b"".join(varint(n) for n in ns)) if ns else b""


def packed_sint(field, ns):
    return packed_uint(field, [zigzag(n) for n in ns])


def packed_double(field, xs):
    return msg(field, b"".join(struct.pack("<d", x) for x in xs)) if xs else b""


def snappy(data):
    """Snappy block format with literals only (valid, if not compressed), plus one copy at the
    end when the data allows it, so that the decompressor's copy path is seeded too."""
    out = bytearray(varint(len(data)))
    i = 0
    while i < len(data):
        chunk = data[i : i + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
        i += len(chunk)
    return bytes(out)


def snappy_with_copy(data):
    """`data` followed by a repeat of its last 4 bytes, as a 1-byte-offset copy."""
    assert len(data) >= 4
    body = snappy(data)[len(varint(len(data))) :]
    copy = bytes([0b01 | (4 - 4) << 2, 4])  # tag 01, length 4, offset 4
    return varint(len(data) + 4) + body + copy


# --- OTLP --------------------------------------------------------------------------------------

NS = 1_700_000_000_000_000_000


def any_value(v):
    if isinstance(v, bool):
        return uint(2, 1) if v else key(2, 0) + b"\x00"
    if isinstance(v, int):
        return key(3, 0) + varint(v)
    if isinstance(v, float):
        return double(4, v)
    if isinstance(v, bytes):
        return string(7, v)
    if isinstance(v, list):
        return msg(5, b"".join(msg(1, any_value(x)) for x in v))
    if isinstance(v, dict):
        return msg(6, b"".join(msg(1, kv(k, x)) for k, x in v.items()))
    return string(1, v)


def kv(k, v):
    return string(1, k) + msg(2, any_value(v))


def attrs(field, d):
    return b"".join(msg(field, kv(k, v)) for k, v in d.items())


def exemplar(value):
    return (
        fixed64(2, NS + 5)
        + double(3, value)
        + string(4, bytes(range(8)))
        + string(5, bytes(range(16)))
        + attrs(7, {"trace": "x"})
    )


def number_point(value, a=None, ex=False):
    p = attrs(7, a or {"host": "a"}) + fixed64(2, NS - 10) + fixed64(3, NS)
    p += double(4, value) if isinstance(value, float) else key(6, 1) + struct.pack("<q", value)
    return p + (msg(5, exemplar(1.5)) if ex else b"")


def histogram_point():
    return (
        attrs(9, {"le_style": "explicit"})
        + fixed64(2, NS - 10)
        + fixed64(3, NS)
        + fixed64(4, 6)
        + double(5, 12.5)
        + msg(6, struct.pack("<QQQ", 1, 2, 3))
        + msg(7, struct.pack("<dd", 1.0, 5.0))
        + msg(8, exemplar(2.0))
    )


def exp_histogram_point():
    buckets = lambda off, counts: sint(1, off) + packed_uint(2, counts)
    return (
        attrs(1, {"k": "v"})
        + fixed64(2, NS - 10)
        + fixed64(3, NS)
        + fixed64(4, 10)
        + double(5, 3.5)
        + sint(6, 2)
        + fixed64(7, 1)
        + msg(8, buckets(-2, [1, 2, 3]))
        + msg(9, buckets(1, [1, 2]))
        + double(14, 0.001)
    )


def summary_point():
    q = lambda quantile, v: double(1, quantile) + double(2, v)
    return (
        attrs(7, {"k": "v"})
        + fixed64(2, NS - 10)
        + fixed64(3, NS)
        + fixed64(4, 4)
        + double(5, 10.0)
        + msg(6, q(0.5, 2.0))
        + msg(6, q(0.99, 4.0))
    )


def metric(name, data_field, data, unit="", desc=""):
    return string(1, name) + string(2, desc) + string(3, unit) + msg(data_field, data)


def otlp_request(metrics, resource=None):
    res = attrs(1, resource or {"service.name": "seed", "service.instance.id": "i-1"})
    scope = string(1, "seed.scope") + string(2, "1.0") + attrs(3, {"scope.attr": 1})
    sm = msg(1, scope) + b"".join(msg(2, m) for m in metrics)
    rm = msg(1, res) + msg(2, sm) + string(3, "https://opentelemetry.io/schemas/1.21.0")
    return msg(1, rm)


def otlp_seeds():
    gauge = metric("g", 5, msg(1, number_point(1.5, ex=True)) + msg(1, number_point(7)))
    sum_ = metric(
        "requests", 7, msg(1, number_point(3.0)) + uint(2, 2) + uint(3, 1), unit="1"
    )
    hist = metric("latency", 9, msg(1, histogram_point()) + uint(2, 2), unit="s")
    exp = metric("exp", 10, msg(1, exp_histogram_point()) + uint(2, 1))
    summ = metric("summary", 11, msg(1, summary_point()))
    every_value = metric(
        "attrs",
        5,
        msg(
            1,
            number_point(
                float("nan"),
                {
                    "s": "text",
                    "b": True,
                    "i": 42,
                    "d": 0.25,
                    "bytes": b"\x00\xff",
                    "arr": ["x", 1],
                    "kvl": {"inner": "y"},
                },
            ),
        ),
    )
    bad_hist = metric(
        "bad", 9, msg(1, fixed64(4, 1) + msg(6, struct.pack("<Q", 1)) + msg(7, struct.pack("<d", 1.0)))
    )
    nameless = metric("", 5, msg(1, number_point(1.0)))
    return {
        "gauge": otlp_request([gauge]),
        "sum": otlp_request([sum_]),
        "histogram": otlp_request([hist]),
        "exponential": otlp_request([exp]),
        "summary": otlp_request([summ]),
        "attributes": otlp_request([every_value]),
        "invalid": otlp_request([bad_hist, nameless, gauge]),
        "everything": otlp_request([gauge, sum_, hist, exp, summ]),
    }


def otlp_json_seeds():
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": "seed"}}]}
    point = {
        "attributes": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "i", "value": {"intValue": "7"}},
            {"key": "d", "value": {"doubleValue": 0.5}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "y", "value": {"bytesValue": "AP8="}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "z"}]}}},
            {"key": "m", "value": {"kvlistValue": {"values": [{"key": "k", "value": {}}]}}},
        ],
        "startTimeUnixNano": str(NS - 10),
        "timeUnixNano": str(NS),
        "asDouble": "NaN",
        "exemplars": [
            {
                "timeUnixNano": str(NS),
                "asInt": "3",
                "traceId": "000102030405060708090a0b0c0d0e0f",
                "spanId": "0001020304050607",
            }
        ],
        "flags": 1,
    }

    def req(metrics):
        return {
            "resourceMetrics": [
                {"resource": res, "scopeMetrics": [{"scope": {"name": "s"}, "metrics": metrics}]}
            ]
        }

    gauge = {"name": "g", "unit": "1", "gauge": {"dataPoints": [point]}}
    sum_ = {
        "name": "c",
        "sum": {
            "dataPoints": [dict(point, asDouble=1.5)],
            "aggregationTemporality": 2,
            "isMonotonic": True,
        },
    }
    hist = {
        "name": "h",
        "histogram": {
            "dataPoints": [
                {
                    "timeUnixNano": str(NS),
                    "count": "6",
                    "sum": 12.5,
                    "bucketCounts": ["1", "2", "3"],
                    "explicitBounds": [1, "Infinity"],
                    "min": "-Infinity",
                }
            ],
            "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
        },
    }
    exp = {
        "name": "e",
        "exponentialHistogram": {
            "dataPoints": [
                {
                    "timeUnixNano": str(NS),
                    "count": 3,
                    "scale": -1,
                    "zeroCount": "1",
                    "positive": {"offset": -2, "bucketCounts": [1, "1"]},
                    "zeroThreshold": 1e-300,
                }
            ]
        },
    }
    summ = {
        "name": "s",
        "summary": {
            "dataPoints": [
                {
                    "timeUnixNano": str(NS),
                    "count": "2",
                    "sum": 3,
                    "quantileValues": [{"quantile": 0.5, "value": 1}],
                }
            ]
        },
    }
    return {
        "gauge.json": req([gauge]),
        "sum.json": req([sum_]),
        "histogram.json": req([hist]),
        "exponential.json": req([exp]),
        "summary.json": req([summ]),
        "empty.json": {},
        "nameless.json": req([{"name": "", "gauge": {"dataPoints": [point]}}]),
    }


# --- remote_write ------------------------------------------------------------------------------

MS = 1_700_000_000_000


def label(k, v):
    return string(1, k) + string(2, v)


def spans(field, ss):
    return b"".join(msg(field, sint(1, o) + uint(2, n)) for o, n in ss)


def native_histogram(float_counts=False, custom=False, v2=False):
    h = b""
    if float_counts:
        h += double(2, 6.0) + double(7, 1.0)
        h += spans(11, [(0, 2), (1, 1)]) + packed_double(13, [1.0, 2.0, 2.0])
    else:
        h += uint(1, 6) + uint(6, 1)
        h += spans(11, [(0, 2), (1, 1)]) + packed_sint(12, [1, 1, 0])
        h += spans(8, [(-1, 1)]) + packed_sint(9, [1])
    h += double(3, 12.5) + sint(4, -53 if custom else 3) + double(5, 0.001)
    if custom:
        h += packed_double(16, [0.1, 1.0, 10.0])
    h += uint(14, 2) + uint(15, MS)
    if v2:
        h += uint(17, MS - 1000)
    return h


def v1_request(series, metadata=()):
    out = b""
    for labels, samples, exemplars, histograms in series:
        ts = b"".join(msg(1, label(k, v)) for k, v in labels)
        ts += b"".join(msg(2, double(1, v) + uint(2, t)) for v, t in samples)
        ts += b"".join(
            msg(3, b"".join(msg(1, label(k, v)) for k, v in el) + double(2, v) + uint(3, t))
            for el, v, t in exemplars
        )
        ts += b"".join(msg(4, h) for h in histograms)
        out += msg(1, ts)
    for typ, name, help_, unit in metadata:
        out += msg(3, uint(1, typ) + string(2, name) + string(4, help_) + string(5, unit))
    return out


STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def v1_seeds():
    base = [("__name__", "up"), ("instance", "a:9100"), ("job", "node")]
    return {
        "samples": v1_request([(base, [(1.0, MS), (0.0, MS + 15000)], [], [])]),
        "counter": v1_request(
            [([("__name__", "http_requests_total"), ("code", "200"), ("job", "api/web")], [(5.0, MS)], [], [])],
            [(1, "http_requests_total", "Requests.", "")],
        ),
        "classic_histogram": v1_request(
            [
                ([("__name__", "rpc_seconds_bucket"), ("le", "0.1")], [(1.0, MS)], [], []),
                ([("__name__", "rpc_seconds_bucket"), ("le", "+Inf")], [(2.0, MS)], [], []),
                ([("__name__", "rpc_seconds_sum")], [(0.3, MS)], [], []),
                ([("__name__", "rpc_seconds_count")], [(2.0, MS)], [], []),
            ],
            [(3, "rpc_seconds", "RPC latency.", "seconds")],
        ),
        "native_histograms": v1_request(
            [
                ([("__name__", "nh")], [], [], [native_histogram()]),
                ([("__name__", "nhf")], [], [], [native_histogram(float_counts=True)]),
                ([("__name__", "nhc")], [], [], [native_histogram(custom=True)]),
            ]
        ),
        "exemplars": v1_request(
            [(base, [(1.0, MS)], [([("trace_id", "abc")], 1.0, MS)], [])]
        ),
        "stale_and_unsorted": v1_request(
            [([("job", "j"), ("__name__", "g"), ("a", "")], [(STALE_NAN, MS), (float("inf"), MS + 1)], [], [])]
        ),
        "invalid": v1_request(
            [
                ([("__name__", "d"), ("a", "1"), ("a", "2")], [(1.0, MS)], [], []),
                ([("", "x"), ("__name__", "e")], [(1.0, MS)], [], []),
                ([("x", "y")], [(1.0, -1)], [], []),
            ]
        ),
    }


def v2_request(symbols, series):
    out = b"".join(string(4, s) for s in symbols)
    for refs, samples, exemplars, histograms, meta in series:
        ts = packed_uint(1, refs)
        ts += b"".join(msg(2, double(1, v) + uint(2, t) + uint(3, st)) for v, t, st in samples)
        ts += b"".join(msg(3, h) for h in histograms)
        ts += b"".join(msg(4, packed_uint(1, r) + double(2, v) + uint(3, t)) for r, v, t in exemplars)
        if meta:
            typ, help_ref, unit_ref = meta
            ts += msg(5, uint(1, typ) + uint(3, help_ref) + uint(4, unit_ref))
        out += msg(5, ts)
    return out


def v2_seeds():
    sy = ["", "__name__", "up", "job", "node", "instance", "a:9100", "Help text.", "seconds", "trace_id", "abc"]
    return {
        "samples": v2_request(sy, [([1, 2, 3, 4, 5, 6], [(1.0, MS, MS - 60000)], [], [], (2, 7, 0))]),
        "histograms": v2_request(
            sy,
            [
                ([1, 2], [], [], [native_histogram(v2=True)], (3, 7, 8)),
                ([1, 4], [], [], [native_histogram(float_counts=True, v2=True)], (4, 0, 0)),
                ([1, 6], [], [], [native_histogram(custom=True, v2=True)], (3, 0, 0)),
            ],
        ),
        "exemplars": v2_request(sy, [([1, 2], [(1.0, MS, 0)], [([9, 10], 1.0, MS)], [], (1, 0, 0))]),
        "bad_refs": v2_request(
            sy,
            [
                ([1, 2, 3], [(1.0, MS, 0)], [], [], None),
                ([1, 99], [(1.0, MS, 0)], [], [], None),
                ([1, 2], [(1.0, MS, 0)], [([9, 77], 1.0, MS)], [], (1, 55, 0)),
                ([1, 2], [], [([9, 10], 1.0, MS)], [], None),
            ],
        ),
        "bad_symbols": v2_request(["x", "__name__"], [([1, 0], [(1.0, MS, 0)], [], [], None)]),
    }


# --- config ------------------------------------------------------------------------------------

CONFIGS = {
    "minimal.yaml": """receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:4317" }
      http:
exporters:
  debug: {}
service:
  pipelines:
    metrics: { receivers: [otlp], exporters: [debug] }
""",
    "full.yaml": """receivers:
  otlp:
    protocols:
      grpc: { endpoint: "0.0.0.0:4317" }
      http: { endpoint: "0.0.0.0:4318" }
    max_request_bytes: 4MiB
  prometheus_remote_write:
    endpoint: "0.0.0.0:9201"
  prometheus/scrape:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 15s
          static_configs: [{ targets: ["localhost:9100"] }]
  runtime: {}
processors:
  batch: { send_batch_size: 1000, timeout: 200ms }
  normalize: {}
  labels:
    set: { env: prod }
exporters:
  otlp/next:
    endpoint: "http://collector:4317"
    compression: gzip
    sending_queue: { queue_size: 1000 }
    retry_on_failure: { initial_interval: 1s, max_elapsed_time: 5m }
  otlp_http: { endpoint: "http://collector:4318", encoding: json }
  prometheus_remote_write:
    endpoint: "http://prometheus:9090/api/v1/write"
    protobuf_message: io.prometheus.write.v2.Request
  prometheus: { endpoint: "127.0.0.1:9464" }
service:
  telemetry: { metrics: { address: "127.0.0.1:8888" }, logs: { level: info } }
  pipelines:
    metrics:
      receivers: [otlp, prometheus_remote_write, prometheus/scrape, runtime]
      processors: [normalize, labels, batch]
      exporters: [otlp/next, otlp_http, prometheus_remote_write, prometheus]
""",
    "errors.yaml": """receivers:
  otlp:
    protocols: { grpc: { endpoint: "nowhere" } }
    unknown_key: 1
exporters:
  debug: { verbosity: loud }
extensions: {}
service:
  pipelines:
    metrics: { receivers: [otlp, missing], exporters: [] }
""",
    "env.yaml": """receivers:
  otlp:
    protocols:
      grpc: { endpoint: "${env:SLUICE_FUZZ_UNSET:-127.0.0.1:4317}" }
exporters:
  debug: {}
service:
  pipelines:
    metrics: { receivers: [otlp], exporters: [debug] }
""",
    "anchors.yaml": """x: &a { endpoint: "127.0.0.1:1" }
receivers: { otlp: { protocols: { grpc: *a, http: { <<: *a } } } }
""",
}


# --- exposition --------------------------------------------------------------------------------

EXPOSITION = {
    "text.txt": """# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
""",
    "openmetrics.txt": """# TYPE foo histogram
# UNIT foo seconds
foo_bucket{le="0.1"} 8 # {trace_id="abc"} 0.05 123.456
foo_bucket{le="+Inf"} 17
foo_count 17
foo_sum 324789.3
foo_created 1520430000.123
# TYPE s stateset
s{s="a"} 1
# TYPE i info
i_info{v="1"} 1
# EOF
""",
}


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def main():
    for name, body in otlp_seeds().items():
        write("otlp_protobuf", name, body)
    for name, body in otlp_json_seeds().items():
        write("otlp_json", name, json.dumps(body, indent=None))
    # remote_write: first byte even = protobuf as is, odd = snappy body (see the targets).
    for target, seeds in (("remote_write_v1", v1_seeds()), ("remote_write_v2", v2_seeds())):
        for name, body in seeds.items():
            write(target, name, b"\x00" + body)
            write(target, name + ".snappy", b"\x01" + snappy(body))
        write(target, "copy.snappy", b"\x01" + snappy_with_copy(list(seeds.values())[0]))
        write(target, "bomb.snappy", b"\x01" + varint(1 << 40) + b"\x00")
    for name, text in CONFIGS.items():
        write("config", name, text)
    for name, text in EXPOSITION.items():
        write("exposition", name, text)


if __name__ == "__main__":
    main()
