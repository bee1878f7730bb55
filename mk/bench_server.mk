# make bench (issue 11, item 14): the server CPU of each rate limit check, redpat's scripts
# beside reference scripts doing the same job (bench/server_cost.py), in one run on a private
# redis-server: prints bench/results/server_cost.txt with the targets and PASS/FAIL per
# algorithm (REDPAT_BENCH_STRICT=1: a missed target fails the target). Needs only redis-py and
# the PyPI `limits` package, in a venv of its own (no redpat build: it sends the scripts of
# core/scripts as the core does). Included by the top-level Makefile (ROOT, BUILD, HARNESS,
# bootstrap).
BENCH_SERVER_VENV := $(BUILD)/bench-server-venv

BENCH_TARGETS += bench-server-cost

.PHONY: bench-server-cost

bench-server-cost: bootstrap
	@mkdir -p $(ROOT)/bench/results
	[ -x $(BENCH_SERVER_VENV)/bin/python ] || python3 -m venv $(BENCH_SERVER_VENV)
	$(BENCH_SERVER_VENV)/bin/python -m pip install -q --disable-pip-version-check limits redis
	$(HARNESS) $(BENCH_SERVER_VENV)/bin/python $(ROOT)/bench/server_cost.py --out $(ROOT)/bench/results
