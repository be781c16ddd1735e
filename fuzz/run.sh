#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, starting from the committed seeds
# (fuzz/seeds/<target>/) with a fixed libFuzzer seed; exits non-zero on the first crash, leak,
# timeout or out-of-memory. The input that failed is left in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [seconds per target, default 20] [target ...]   (default: every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes nightly-only flags;
# the stable compiler accepts them with RUSTC_BOOTSTRAP=1, set here. SLUICE_FUZZ_SANITIZER picks
# the sanitizer (default `address`; `none` where AddressSanitizer is not available).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-20}
shift || true
sanitizer=${SLUICE_FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# cargo-fuzz has no --locked: check here that fuzz/Cargo.lock is up to date, as CI does elsewhere.
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build --sanitizer "$sanitizer"

for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus (the first directory); the seeds are only read.
  work=target/fuzz-corpus/$t
  rm -rf "$work"
  mkdir -p "$work" "artifacts/$t"
  echo "== fuzz target $t: ${secs}s"
  log=target/fuzz-logs/$t.log
  mkdir -p target/fuzz-logs
  if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$work" "seeds/$t" -- \
    -max_total_time="$secs" -seed=1 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz target $t FAILED (full log: fuzz/$log); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
done
echo "fuzz: every target ran ${secs}s without a crash"
