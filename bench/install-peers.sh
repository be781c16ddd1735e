#!/usr/bin/env bash
# Installs the peers the benchmarks compare Sluice with (idempotent; safe to re-run):
#   - vmagent (Debian package victoria-metrics), the remote_write relay of W1 and a scraper in W4;
#   - Prometheus (Debian package prometheus), run in agent mode in W4;
#   - rotel, the OTLP collector of W3: its PyPI wheel carries the `rotel-agent` binary, which is
#     extracted to target/bench-peers/rotel-agent (nothing is pip-installed).
# Also checks for taskset (util-linux), which pins the collector and the harness to CPUs.
set -euo pipefail

ROTEL_VERSION=${ROTEL_VERSION:-0.0.1a15}
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${CARGO_TARGET_DIR:-$root/target}/bench-peers

as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
apt_install() {
  local known
  known=$(apt-cache policy "$@" 2>/dev/null | grep -c 'Candidate: [0-9]' || true)
  if (( known < $# )); then
    "${as_root[@]}" apt-get update
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

[[ -x /usr/bin/vmagent ]] || apt_install victoria-metrics
[[ -x /usr/bin/prometheus ]] || apt_install prometheus
command -v taskset >/dev/null || apt_install util-linux

if [[ ! -x $dest/rotel-agent ]] || ! "$dest/rotel-agent" --version >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$tmp" "rotel==$ROTEL_VERSION"
  wheel=$(ls "$tmp"/rotel-*.whl)
  mkdir -p "$dest"
  python3 - "$wheel" "$dest/rotel-agent" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("rotel/rotel-agent") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$dest/rotel-agent"
fi

echo "bench peers: vmagent $(/usr/bin/vmagent -version 2>&1 | head -1);" \
  "$(/usr/bin/prometheus --version 2>&1 | head -1);" \
  "$("$dest/rotel-agent" --version) at $dest/rotel-agent"
