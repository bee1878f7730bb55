# make bench (issue 12, item 5): redpat on a 3-master Redis Cluster beside one node, same
# machine, same run (~2 min): lock cycle and GCRA check latency (p50/p99, processes pinned
# to fixed cores), throughput of 48 client threads beside raw hiredis, the cost of a MOVED,
# server CPU per command. bench/run_cluster.py starts its own servers (tests/harness) and
# writes bench/results/cluster.txt (and .json); REDPAT_BENCH_STRICT=1 makes a missed target
# fail. Included by the top-level Makefile (ROOT, BUILD, build).
BENCH_TARGETS += bench-cluster

.PHONY: bench-cluster

bench-cluster: build
	python3 $(ROOT)/bench/run_cluster.py $(BUILD)
