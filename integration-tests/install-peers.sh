#!/usr/bin/env bash
# Installs the real peers the integration tests talk to (idempotent; safe to re-run):
#   - the OpenTelemetry Python SDK and its OTLP exporters (PyPI), used as a real OTLP client;
#   - Debian's prometheus, victoria-metrics (victoria-metrics, vmagent) and prometheus-node-exporter:
#     remote_write senders and backends, and real runtime counters to scrape.
set -euo pipefail

debs=(prometheus victoria-metrics prometheus-node-exporter)
bins=(/usr/bin/prometheus /usr/bin/victoria-metrics /usr/bin/vmagent /usr/bin/prometheus-node-exporter)
missing=0
for b in "${bins[@]}"; do [[ -x $b ]] || missing=1; done
if (( missing )); then
  as_root=()
  [[ $(id -u) -eq 0 ]] || as_root=(sudo)
  # Refresh the package lists once, only when apt does not know every package yet.
  known=$(apt-cache policy "${debs[@]}" 2>/dev/null | grep -c 'Candidate: [0-9]' || true)
  if (( known < ${#debs[@]} )); then
    "${as_root[@]}" apt-get update
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${debs[@]}"
  # The downloaded packages are not needed once installed; disk can be short.
  "${as_root[@]}" apt-get clean
fi

python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  'opentelemetry-sdk~=1.45' \
  'opentelemetry-exporter-otlp-proto-grpc~=1.45' \
  'opentelemetry-exporter-otlp-proto-http~=1.45'

python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' \
  && echo "peers installed: OpenTelemetry Python SDK $(python3 -c 'from opentelemetry.sdk.version import __version__; print(__version__)')"
echo "peers installed: $(/usr/bin/prometheus --version 2>&1 | head -1);" \
  "victoria-metrics/vmagent $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null)"
