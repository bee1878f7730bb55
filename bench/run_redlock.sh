#!/bin/sh
# make bench (C Redlock): bench_redlock over 5 private redis-servers (tests/harness), writes
# bench/results/c_redlock.json and the readable bench/results/c_redlock.txt.
#   sh bench/run_redlock.sh BUILD_DIR
# REDPAT_BENCH_CYCLES (default 5000) and REDPAT_BENCH_RUNS (default 7) tune it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/bench/bench_redlock
out=$root/bench/results
[ -x "$bin" ] || { echo "run_redlock.sh: $bin not built (make build)" >&2; exit 1; }
mkdir -p "$out"
python3 "$root/tests/harness/harness.py" run --servers 5 -- \
    sh -c 'exec "$0" "$REDPAT_TEST_URLS" "$1" "$2"' "$bin" \
    "${REDPAT_BENCH_CYCLES:-5000}" "${REDPAT_BENCH_RUNS:-7}" > "$out/c_redlock.json.tmp"
mv "$out/c_redlock.json.tmp" "$out/c_redlock.json"
python3 - "$out/c_redlock.json" > "$out/c_redlock.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["medians_us"]
print("redpat C Redlock benchmark: %d local servers, redis %s, hiredis %s, %d cycles x %d runs"
      % (r["servers"], r["redis_version"], r["hiredis_version"], r["iterations"], r["runs"]))
print("every side interleaved in chunks of %d cycles; figures are medians of the runs, ratios"
      " the medians of the per-run ratios; Redlock per-node timeout %d ms"
      % (r["interleave_chunk"], r["node_timeout_ms"]))
print()
print("%-46s %10s %8s" % ("acquire (try once) + release", "us/cycle", "ratio"))
print("%-46s %10.2f %7.3fx" % ("single-node lock (1 server)", m["single_cycle"], 1.0))
print("%-46s %10.2f %7.3fx" % ("Redlock(%d)" % r["servers"], m["redlock_cycle"],
                               r["redlock_over_single_ratio"]))
print()
print("%-46s %10s %8s %12s" % ("lock.using(empty fn) vs a bare cycle", "us/cycle", "ratio",
                               "overhead us"))
print("%-46s %10.2f %7.3fx %12.2f" % ("single-node: rp_lock_using", m["single_using"],
      r["single_using_over_cycle_ratio"], r["single_using_overhead_us"]))
print("%-46s %10.2f %7.3fx %12.2f" % ("Redlock(%d): rp_lock_using" % r["servers"],
      m["redlock_using"], r["redlock_using_over_cycle_ratio"], r["redlock_using_overhead_us"]))
print()
print("round trips (IO rounds the client drove; a round writes to every server before reading):")
print("  Redlock acquire %.3f, release %.3f; single-node acquire %.3f"
      % (r["redlock_rounds_per_acquire"], r["redlock_rounds_per_release"],
         r["single_rounds_per_acquire"]))
print("  commands each server ran per Redlock acquire (INFO commandstats): %.3f .. %.3f"
      % (r["redlock_calls_per_acquire_per_server_min"], r["redlock_calls_per_acquire_per_server_max"]))
for name in ("redlock_acquire", "redlock_release"):
    print("    %-16s %s" % (name, r["passes"][name]["calls_per_op_by_server"][0]))
print("server CPU per cycle (INFO commandstats usec, all servers): Redlock %.2f us, single-node %.2f us"
      % (r["redlock_server_usec_per_cycle"], r["single_server_usec_per_cycle"]))
cc = r["client_cpu_us"]
print("client CPU per cycle (getrusage, this process): Redlock %.2f us, single-node %.2f us;"
      " using: Redlock %.2f us, single-node %.2f us" % (cc["redlock_cycle"], cc["single_cycle"],
                                                       cc["redlock_using"], cc["single_using"]))
print("connections opened per cycle (INFO stats total_connections_received, all servers):"
      " Redlock %.3f, single-node %.3f" % (r["redlock_connections_per_cycle"],
                                          r["single_connections_per_cycle"]))
print("keys left behind by %d releases (DBSIZE, all servers): Redlock %d, single-node %d"
      % (r["counted_ops"], r["redlock_keys_left_after_release"],
         r["single_keys_left_after_release"]))
print()
ok_ratio = r["redlock_over_single_ratio"] <= 1.5
# One round, and no server ran more than the one SET per acquire (a server may run fewer:
# a round that ends at its quorum closes the connections still waiting, and a request the
# server had not read yet is dropped with them).
ok_rt = (abs(r["redlock_rounds_per_acquire"] - 1) < 1e-9
         and r["redlock_calls_per_acquire_per_server_max"] <= 1 + 1e-9)
print("target: Redlock(%d) cycle within 1.50x of the single-node cycle ... %s (%.3fx)"
      % (r["servers"], "met" if ok_ratio else "MISSED", r["redlock_over_single_ratio"]))
print("target: Redlock acquire in one parallel round (at most 1 SET per server) ... %s (%.3f rounds)"
      % ("met" if ok_rt else "MISSED", r["redlock_rounds_per_acquire"]))
print()
print("per-run means (us):")
for k, v in r["runs_us"].items():
    print("  %-15s %s" % (k, " ".join("%.2f" % x for x in v)))
PY
cat "$out/c_redlock.txt"
