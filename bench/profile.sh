#!/usr/bin/env bash
# Profiles Sluice in one scenario: one quick run under `perf record` (cpu-clock sampling, DWARF call
# graphs), then the top functions by inclusive cost (time in the function and what it calls) and by
# self cost. Needs perf (Debian: linux-perf) and target/release/sluice (cargo build --release).
#
#   bench/profile.sh W1 [more sluice-bench run flags, e.g. --samples 200000]
#   REPORT_ONLY=1 bench/profile.sh W1     # the tables again, from the last profile
set -euo pipefail

scenario=${1:?usage: bench/profile.sh W1|W2|W3 [sluice-bench run flags]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
out=${PROFILE_DIR:-$root/target/bench-profiles}
mkdir -p "$out"
cd "$root"
if [[ -z ${REPORT_ONLY:-} ]]; then  # REPORT_ONLY=1 summarizes the last profile again
  cargo build --release -p sluice-bench --quiet
  target/release/sluice-bench run "$scenario" --quick --rounds 1 --only sluice --perf "$out" "$@"
fi

data=$out/$scenario-sluice-1.data
# Runtime plumbing (tokio's scheduler, thread start, async wrappers, inlined copies) is in every
# stack or repeats a frame: it is left out.
report() {
  perf report -i "$data" "$1" --stdio --sort symbol -g none 2>/dev/null | python3 -c '
import re, sys
limit = int(sys.argv[1])
plumbing = re.compile(r"^(tokio::runtime|std::|core::ops::function|alloc::boxed::Box<dyn core::ops|<alloc::boxed::Box<dyn|<std::|"
    r"__rust_begin_short_backtrace|start_thread|clone3|catch_unwind|do_call|call_once|poll|\{|with|set|run|try_with|"
    r"enter_runtime|budget|coop|_start|main$|__libc_start)")
wrapper = re.compile(r"as core::future::future::Future>::poll$|^hyper::proto::h1::dispatch|^axum::serve::")
line = re.compile(r"^\s+([\d.]+)%\s+(?:[\d.]+%\s+)?\[(.)\]\s+(.*?)(?:\s+-\s+-)?\s*$")
shown = 0
for l in sys.stdin:
    m = line.match(l)
    if not m or "(inlined)" in m.group(3) or plumbing.match(m.group(3)) or wrapper.search(m.group(3)):
        continue
    kernel = " [kernel]" if m.group(2) == "k" else ""
    print(f"{float(m.group(1)):6.2f}%  {m.group(3)[:140]}{kernel}")
    shown += 1
    if shown == limit:
        break
sys.stdin.read()  # drain, so that perf does not die of a closed pipe
' "$2"
}
echo
echo "## $scenario: top functions by inclusive cost (% of Sluice's CPU samples)"
report --children 30
echo
echo "## $scenario: top functions by self cost"
report --no-children 20
echo
echo "## $scenario: self cost by area"
perf report -i "$data" --no-children --stdio --sort symbol -g none 2>/dev/null | python3 -c '
import re, sys
areas = [
    ("allocator (malloc/free, mimalloc)", r"malloc|_mi_|mi_free|_int_free|cfree|unlink_chunk|realloc|calloc|tcache|__rust_alloc|__rust_dealloc|__rdl_"),
    ("memcpy/memmove/memcmp", r"__mem(move|cpy|cmp|set)"),
    ("hashing (SipHash)", r"sip::Hasher|hash_one|BuildHasher"),
    ("protobuf (prost)", r"prost::"),
    ("snappy / gzip / zstd", r"snap::|flate|zlib|zstd|crc32|adler"),
    ("kernel", r"^\[k\]"),
]
line = re.compile(r"^\s+([\d.]+)%\s+\[(.)\]\s+(.*?)(?:\s+-\s+-)?\s*$")
totals = {name: 0.0 for name, _ in areas}
rest = 0.0
for l in sys.stdin:
    m = line.match(l)
    if not m:
        continue
    pct, sym = float(m.group(1)), ("[k] " if m.group(2) == "k" else "") + m.group(3)
    for name, pat in areas:
        if re.search(pat, sym):
            totals[name] += pct
            break
    else:
        rest += pct
for name, _ in areas:
    print(f"{totals[name]:6.2f}%  {name}")
print(f"{rest:6.2f}%  everything else")
'
