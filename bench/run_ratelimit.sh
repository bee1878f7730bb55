#!/bin/sh
# make bench (C rate limiters): bench_ratelimit against a private redis-server; writes
# bench/results/c_ratelimit.json and the readable bench/results/c_ratelimit.txt.
#   sh bench/run_ratelimit.sh BUILD_DIR
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bench/bench_ratelimit
out=$root/bench/results
[ -x "$bin" ] || { echo "run_ratelimit.sh: $bin not built (make build)" >&2; exit 1; }
mkdir -p "$out"
python3 "$root/tests/harness/harness.py" run -- \
    sh -c 'exec "$0" "$REDPAT_TEST_URL" "$1" "$2" "$3"' "$bin" \
    "${REDPAT_BENCH_CHECKS:-5000}" "${REDPAT_BENCH_RUNS:-7}" "$root/core/scripts" \
    > "$out/c_ratelimit.json.tmp"
mv "$out/c_ratelimit.json.tmp" "$out/c_ratelimit.json"
python3 - "$out/c_ratelimit.json" > "$out/c_ratelimit.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("redpat C rate limiters: %d checks x %d runs, medians; floor = raw hiredis sending the"
      " same EVALSHA (interleaved)" % (r["checks"], r["runs"]))
print()
print("%-15s %10s %11s %7s %12s %16s" % ("algorithm", "redpat us", "hiredis us", "ratio",
                                         "round trips", "bytes/subject"))
for name, s in r["single"].items():
    print("%-15s %10.2f %11.2f %6.3fx %12.3f %16d" % (name, s["redpat_us"], s["hiredis_us"],
          s["ratio"], s["roundtrips"], s["memory_bytes_per_subject_after_100"]))
b = r["batch_1000"]
print()
print("batch of %d checks in one pipeline: redpat %.0f us, raw pipelined floor %.0f us:"
      " %.2fx the floor's throughput (target >= 0.5: %s)" % (r["batch"], b["redpat_us"],
      b["pipelined_floor_us"], b["throughput_vs_floor"],
      "met" if b["throughput_vs_floor"] >= 0.5 else "MISSED"))
rts = [s["roundtrips"] for s in r["single"].values()]
print("one round trip per check: %s" % ("met" if all(abs(x - 1) < 1e-9 for x in rts) else "MISSED"))
PY
cat "$out/c_ratelimit.txt"
