#!/usr/bin/env python3
"""make bench (cluster part, issue 12 item 5): redpat on a 3-master Redis Cluster beside one
Redis node, same machine, same run.

    python3 bench/run_cluster.py BUILD_DIR [--single-only]

Starts its own private servers on free loopback ports (tests/harness): one plain
redis-server (RedisServer) and a 3-master cluster without replicas (start_cluster). Runs
BUILD_DIR/bench/cluster_bench over them (see its header: latency of a lock cycle and a GCRA
check, throughput of 48 client threads beside raw hiredis, the cost of a MOVED, server CPU
per command) and writes bench/results/cluster.json and the readable
bench/results/cluster.txt (printed too). Takes about two minutes.

Tuning (environment): REDPAT_BENCH_OPS (ops per side, kind and round for the latency
figures, default 2000), REDPAT_BENCH_ROUNDS (default 9), REDPAT_BENCH_THREADS (default 48),
REDPAT_BENCH_SECONDS (throughput window per side, kind and round, default 1.0),
REDPAT_BENCH_MOVES (slot moves per kind, default 15). REDPAT_BENCH_STRICT=1: exit status 1
when a target is missed. --single-only (development, before the core speaks cluster): the
"cluster" side is a second plain node, no MOVED figures, no targets checked.
"""
import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
import harness  # noqa: E402

MASTERS = 3


def env_num(name, default, kind=int):
    v = os.environ.get(name)
    return kind(v) if v else default


def start_cluster():
    """A converged 3-master cluster of the harness: (cluster URL, master node URLs, stop)."""
    c = harness.start_cluster(masters=MASTERS)
    return (c.url(), ["redis://%s" % n.addr for n in c.masters()],
            lambda: harness.stop_clusters([c]))


def fmt_table(r):
    out = []
    w = out.append
    L, T = r["latency"], r["throughput"]
    w("redpat cluster benchmark: redis %s, %d masters (%s) vs one node, %d cores, same run"
      % (r["redis_version"], r["masters"], "Redis Cluster" if r["cluster_mode"] else
         "NOT a cluster: --single-only", r["cores"]))
    w("latency: %d ops per side, kind and round, sides interleaved in chunks of %d; "
      "throughput: %d threads x 1 rp_client each, %.1f s windows; %d rounds; figures are "
      "medians of rounds, ratios medians of the per-round (paired) ratios"
      % (r["ops_per_round"], r["chunk"], r["threads"], r["window_s"], r["rounds"]))
    w("")
    w("1. single-op latency, one client (us), in two fixed placements of the processes:")
    w("   same core: the bench's client thread and every redis-server on one core (the CPU")
    w("   cost of the path; the target's figure); cross core: every server on another core")
    w("   than the client (each round trip also waits for the servers' vCPU to wake, ~100 us")
    w("   on this VM). Left to the scheduler, one side's servers share the client's core and")
    w("   the other's do not, by chance: a 5x difference that is neither side's doing.")
    w("%-12s %-10s %10s %10s %10s %10s %9s %9s" % (
        "op", "placement", "single p50", "clust p50", "single p99", "clust p99", "ratio p50",
        "ratio p99"))
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        for i, (key, label) in enumerate((("latency", "same core"),
                                          ("latency_cross_core", "cross core"))):
            if key not in r:
                continue
            x = r[key][k]
            w("%-12s %-10s %10.1f %10.1f %10.1f %10.1f %8.3fx %8.3fx" % (
                name if i == 0 else "", label, x["single"]["p50_us"], x["cluster"]["p50_us"],
                x["single"]["p99_us"], x["cluster"]["p99_us"], x["ratio_p50"], x["ratio_p99"]))
    w("")
    w("2. aggregate throughput, %d client threads (ops/s; CPU in cores: 1.00 = one core busy)"
      % r["threads"])
    w("   redpat: one rp_client per thread; hiredis: the floor, raw hiredis sending the same")
    w("   commands, each thread connected straight to the node of its key (no routing at all)")
    w("%-12s %-16s %10s %7s  %-17s %6s %7s %6s %6s  %s" % (
        "op", "client / side", "ops/s", "ratio", "server CPU each", "bench", "machine",
        "other", "(irq)", "calls per master"))
    variants = (("single", "redpat  1 node"), ("cluster", "redpat  cluster"),
                ("hiredis_single", "hiredis 1 node"), ("hiredis_cluster", "hiredis cluster"))
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        for i, (v, label) in enumerate(variants):
            x = T[k].get(v)
            if x is None:
                continue
            ratio = {"cluster": T[k]["ratio"], "hiredis_cluster": T[k].get("hiredis_ratio")}.get(v)
            w("%-12s %-16s %10.0f %7s  %-17s %6.2f %7.2f %6.2f %6.2f  %s" % (
                name if i == 0 else "", label, x["ops_per_s"],
                "%.2fx" % ratio if ratio is not None else "",
                " ".join("%.2f" % c for c in x["server_cpu"]), x["bench_cpu"],
                x["machine_busy"], x["other_cpu"], x.get("irq_cpu", 0),
                " ".join("%.2f" % c for c in x["server_calls_share"])))
    w("  server CPU: /proc/PID/stat utime+stime of each redis-server of the side; bench: the"
      " bench process (its %d client threads);" % r["threads"])
    w("  machine: busy cores of the whole machine (/proc/stat); other: machine - our servers -"
      " bench (other processes, kernel work charged to none); (irq): irq + softirq, part of"
      " machine")
    w("CPU per op (us of CPU per op; server: all redis-servers of the side)")
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        for i, (v, label) in enumerate(variants):
            x = T[k].get(v)
            if x is None:
                continue
            srv = sum(x["server_cpu"]) / x["ops_per_s"] * 1e6
            bench = x["bench_cpu"] / x["ops_per_s"] * 1e6
            w("  %-12s %-16s server %6.1f  bench %6.1f  -> %d cores / (server + bench) = %6.0f"
              " ops/s" % (name if i == 0 else "", label, srv, bench, r["cores"],
                          r["cores"] / (srv + bench) * 1e6))
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        one, many = T[k]["single"], T[k]["cluster"]
        busy = max(one["machine_busy"], many["machine_busy"])
        limits = []
        if busy >= 0.8 * r["cores"]:
            limits.append("the machine's %d cores: cluster side %.2f busy (bench %.2f, servers "
                          "%.2f, the rest %.2f), one node side %.2f (bench %.2f, server %.2f)"
                          % (r["cores"], many["machine_busy"], many["bench_cpu"],
                             sum(many["server_cpu"]), many["other_cpu"], one["machine_busy"],
                             one["bench_cpu"], one["server_cpu"][0]))
        if one["server_cpu"][0] >= 0.9:
            limits.append("the one node's redis-server is saturated (%.2f of its one core)"
                          % one["server_cpu"][0])
        if not limits:
            limits.append("neither the cores nor one server is saturated (latency-bound)")
        if "hiredis_ratio" in T[k]:
            limits.append("raw hiredis gets %.2fx on the same machine" % T[k]["hiredis_ratio"])
        w("  %s, what limits it: %s" % (name, "; ".join(limits)))
    w("  One redis-server runs commands on one thread: one node caps at 1e6 / its server us per")
    w("  op; 3 masters need 3 cores for themselves besides the client's. Estimates (not")
    w("  measured here) from the one node's server CPU per op:")
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        x = T[k]["single"]
        srv = sum(x["server_cpu"]) / x["ops_per_s"] * 1e6
        w("  %s: one node server-bound at ~%.0f ops/s, 3 masters at ~%.0f ops/s (%.1fx the"
          " one node measured here)" % (name, 1e6 / srv, 3e6 / srv, 3e6 / srv / x["ops_per_s"]))
    w("")
    if "moved" in r:
        w("3. the cost of a MOVED (cluster, same-core placement; the slot moved to another"
          " master while the client is idle, %d moves per op)" % r["moves"])
        w("%-12s %10s %10s %12s %7s %10s  %s" % ("op", "normal p50", "normal p99",
                                               "1st call", "ratio", "slow calls",
                                               "calls 1..6 after (median us)"))
        for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
            x = r["moved"][k]
            w("%-12s %10.1f %10.1f %12.1f %6.2fx %10d  %s" % (
                name, x["normal_p50_us"], x["normal_p99_us"], x["first_call_us"],
                x["first_call_ratio"], x["slow_calls"],
                " ".join("%.0f" % v for v in x["after_move_median_us"][:6])))
            if "after_control_move_median_us" in x:
                c = x["after_control_move_median_us"]
                w("%-12s %10s %10s %12.1f %6.2fx %10s  %s" % (
                    "  control", "", "", c[0], c[0] / x["normal_p50_us"], "",
                    " ".join("%.0f" % v for v in c[:6])))
        w("  (control: the same calls after another slot of the same two masters moved: the"
          " servers' own after-move work and the idle pause, no MOVED for the client)")
        for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
            x = r["moved"][k]
            c = x.get("after_control_move_median_us")
            if not c:
                continue
            a = x["after_move_median_us"]
            n = 0
            while n < len(a) and a[n] > 1.25 * c[n]:
                n += 1
            w("  %s: the MOVED itself costs %+.1f us on the first call (1st call - control's),"
              " %+.1f us on the second; calls slower than the control's (> 1.25x): %d"
              % (name, a[0] - c[0], a[1] - c[1], n))
        def cmds(s, only_extra=False):
            items = [(c, v) for c, v in sorted(s.items())
                     if not only_extra or c.startswith("cluster") or v["rejected"]]
            return ", ".join("%s %.2f%s" % (c, v["calls"], " (+%.2f rejected: MOVED)"
                                             % v["rejected"] if v["rejected"] else "")
                             for c, v in items) or "none"
        for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
            x = r["moved"][k]
            w("  %s, commands on the masters per move: first call: %s; calls 2..%d, beyond the"
              " ops' own: %s" % (name, cmds(x["first_call_server"]),
                                 len(x["after_move_median_us"]),
                                 cmds(x.get("later_calls_server", {}), True)))
        w("  (slow calls: the calls after the move, from the first on, whose median latency"
          " over the moves stays above 1.25x the median before the move; the next is normal)")
        w("")
    w("4. server CPU per command (INFO commandstats usec_per_call, median of the rounds;"
      " cluster: all masters; 1 client: same core)")
    w("%-12s %-22s %9s %9s %7s" % ("op", "command / phase", "single", "cluster", "ratio"))
    for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
        first = True
        for phase, src in (("1 client", L[k]), ("%d clients" % r["threads"], T[k])):
            # the lock cycle sends SET (acquire) and EVALSHA (release); a GCRA check
            # EVALSHA only (its SET runs inside the script)
            for cmd in (("set", "evalsha") if k == "lock_cycle" else ("evalsha",)):
                a = src["single"]["usec_per_call_median"].get(cmd)
                b = src["cluster"]["usec_per_call_median"].get(cmd)
                if not a or not b:
                    continue
                w("%-12s %-22s %9.2f %9.2f %6.2fx" % (
                    name if first else "", "%s, %s" % (cmd.upper(), phase), a, b, b / a))
                first = False
    w("  (Redis times each command on the wall clock: where more processes than cores run, a")
    w("  server preempted in a command counts the wait too; the 1-client figures are the clean ones)")
    w("")
    targets = []
    if r["cluster_mode"]:
        for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
            v = L[k]["ratio_p50"]
            targets.append(("%s p50 latency cluster/single <= 1.10x (same core)" % name,
                            v <= 1.10, "%.3fx" % v))
        for k, name in (("lock_cycle", "lock cycle"), ("gcra_check", "GCRA check")):
            v = T[k]["ratio"]
            targets.append(("%s throughput 3 masters / 1 node >= 2x" % name, v >= 2.0,
                            "%.2fx" % v))
    for text, ok, v in targets:
        w("target: %s ... %s (%s)" % (text, "met" if ok else "MISSED", v))
    return "\n".join(out) + "\n", all(ok for _, ok, _ in targets)


def main(argv):
    single_only = "--single-only" in argv
    args = [a for a in argv if a != "--single-only"]
    build = args[0] if args else os.path.join(ROOT, "build")
    binary = os.path.join(build, "bench", "cluster_bench")
    if not os.access(binary, os.X_OK):
        sys.exit("run_cluster.py: %s not built (make build)" % binary)
    ops = env_num("REDPAT_BENCH_OPS", 2000)
    rounds = env_num("REDPAT_BENCH_ROUNDS", 9)
    threads = env_num("REDPAT_BENCH_THREADS", 48)
    seconds = env_num("REDPAT_BENCH_SECONDS", 1.0, float)
    moves = 0 if single_only else env_num("REDPAT_BENCH_MOVES", 15)
    # --single-only is a development run: its figures stay in the build dir
    out_dir = build if single_only else os.path.join(ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)

    # a SIGTERM (make interrupted) still stops the servers: the finally below runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("run_cluster.py: terminated"))
    single = harness.RedisServer()
    single.start()
    stop = None
    try:
        if single_only:
            other = harness.RedisServer().start()
            cluster_url, node_urls = other.url, [other.url]
            stop = lambda: harness.stop_servers([other])  # noqa: E731
        else:
            cluster_url, node_urls, stop = start_cluster()
        nodes = ",".join(node_urls)
        proc = subprocess.run([binary, single.url, cluster_url, nodes, str(ops), str(rounds),
                               str(threads), str(seconds), str(moves),
                               os.path.join(ROOT, "core", "scripts")],
                              stdout=subprocess.PIPE)
        if proc.returncode != 0:
            sys.exit("run_cluster.py: cluster_bench failed (status %d)" % proc.returncode)
    finally:
        harness.stop_servers([single])
        if stop is not None:
            stop()
    result = json.loads(proc.stdout)
    with open(os.path.join(out_dir, "cluster.json.tmp"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    text, ok = fmt_table(result)
    suffix = "-single-only" if single_only else ""
    os.replace(os.path.join(out_dir, "cluster.json.tmp"),
               os.path.join(out_dir, "cluster%s.json" % suffix))
    with open(os.path.join(out_dir, "cluster%s.txt" % suffix), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    if not ok and os.environ.get("REDPAT_BENCH_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
