#!/bin/sh
# make bench (C part): runs bench_lock against a private redis-server (tests/harness),
# writes bench/results/c_lock.json and a readable table bench/results/c_lock.txt.
#   sh bench/run_c.sh BUILD_DIR
# REDPAT_BENCH_ITERATIONS (default 20000) and REDPAT_BENCH_RUNS (default 7) tune it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bench/bench_lock
iters=${REDPAT_BENCH_ITERATIONS:-20000}
runs=${REDPAT_BENCH_RUNS:-7}
out=$root/bench/results
[ -x "$bin" ] || { echo "run_c.sh: $bin not built (make build)" >&2; exit 1; }
mkdir -p "$out"
python3 "$root/tests/harness/harness.py" run -- \
    sh -c 'exec "$0" "$REDPAT_TEST_URL" "$1" "$2" "$3"' "$bin" "$iters" "$runs" "$root/core/scripts" \
    > "$out/c_lock.json.tmp"
mv "$out/c_lock.json.tmp" "$out/c_lock.json"
python3 - "$out/c_lock.json" > "$out/c_lock.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("redpat C lock benchmark: redis %s, hiredis %s, %d ops x %d runs (median of runs)"
      % (r["redis_version"], r["hiredis_version"], r["iterations"], r["runs"]))
print("floor = raw hiredis sending the same commands (SET NX PX + EVALSHA release; EVALSHA fenced acquire)")
print("ratio = median of the per-run ratios (the two sides run interleaved in chunks of %d ops)"
      % r.get("interleave_chunk", 0))
print()
print("%-34s %10s %11s %7s %12s" % ("operation", "redpat us", "hiredis us", "ratio", "round trips"))
print("%-34s %10.2f %11.2f %6.3fx %12.3f" % ("lock cycle (acquire + release)", r["redpat_cycle_us"],
      r["hiredis_cycle_us"], r["cycle_ratio"], r["roundtrips_per_cycle"]))
print("%-34s %10.2f %11.2f %6.3fx %12.3f" % ("fenced acquire", r["redpat_fenced_us"],
      r["hiredis_fenced_us"], r["fenced_ratio"], r["roundtrips_per_fenced_acquire"]))
print()
print("server CPU (INFO commandstats usec): lock cycle %.2f us (floor %.2f), fenced acquire %.2f us (floor %.2f)"
      % (r["server_usec_per_cycle"], r["hiredis_server_usec_per_cycle"],
         r["server_usec_per_fenced_acquire"], r["hiredis_server_usec_per_fenced_acquire"]))
print()
ok_cycle = r["cycle_ratio"] <= 1.10
ok_rt = abs(r["roundtrips_per_fenced_acquire"] - 1.0) < 1e-9
print("target: lock cycle within 1.10x of raw hiredis ... %s (%.3fx)"
      % ("met" if ok_cycle else "MISSED", r["cycle_ratio"]))
print("target: fenced acquire in exactly 1 round trip ... %s (%.3f)"
      % ("met" if ok_rt else "MISSED", r["roundtrips_per_fenced_acquire"]))
print()
print("per-run means (us):")
for k, v in r["runs_us"].items():
    print("  %-15s %s" % (k, " ".join("%.2f" % x for x in v)))
PY
cat "$out/c_lock.txt"
