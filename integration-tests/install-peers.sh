#!/usr/bin/env bash
# Installs the real peers the integration tests talk to (idempotent; safe to re-run):
#   - the OpenTelemetry Python SDK and its OTLP exporters (PyPI), used as a real OTLP client.
set -euo pipefail

python3 -m pip install --quiet --disable-pip-version-check \
  'opentelemetry-sdk~=1.45' \
  'opentelemetry-exporter-otlp-proto-grpc~=1.45' \
  'opentelemetry-exporter-otlp-proto-http~=1.45'

python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' \
  && echo "peers installed: OpenTelemetry Python SDK $(python3 -c 'from opentelemetry.sdk.version import __version__; print(__version__)')"
