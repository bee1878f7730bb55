# Python frontend (issues 3, 5 and 8): redpat installed non-editable into a fresh
# $(ROOT)/.venv, the check that its committed stubs are what scripts/gen_pyi.py makes from the
# core's descriptors, its matrix runners (sync and asyncio), pytest tests, mypy --strict on
# the package and the examples, the lock benchmark beside the C one and redis-py's, the
# rate limiter benchmark beside the PyPI `limits` package, Redlock beside the PyPI Redlocks
# (pottery, redlock-py, redlock-ng), pub/sub beside redis-py's PubSub, and the cache beside
# redis-py + json, dogpile.cache and cashews (with the C near-cache bench in the same run).
# Included by the top-level Makefile, which defines ROOT, BUILD, LOGS, HARNESS, bootstrap.
PY_VENV := $(ROOT)/.venv
PY := $(PY_VENV)/bin/python
# `build` for the sdist test; setuptools >= 77 as pyproject's build requirement (PEP 639
# license field), since test_packaging.py also runs setup.py with the venv's own setuptools
PY_TEST_DEPS := pytest mypy redis build 'setuptools>=77'
# Only the benches need these: `limits` with its Redis storage (over redis-py) for the rate
# limiters, `pottery` for the Redlocks, `dogpile.cache` (its Redis backend) and `cashews`
# for the cache (both over redis-py, whose version they accept: not apart).
PY_BENCH_DEPS := limits redis pottery dogpile.cache cashews
# Installed apart, each with pip --target into a directory of its own and run in a
# subprocess with PYTHONPATH=it: redlock-py and redlock-ng both install a top-level package
# called `redlock` (and pin their own redis-py); hiredis would change redis-py's parser for
# every other bench of the venv.
PY_BENCH_APART := redlock-py redlock-ng hiredis
PY_BENCH_PEERS := $(PY_VENV)/bench-peers
PY_BENCH_HARNESS5 := python3 $(ROOT)/tests/harness/harness.py run --servers 5 --

# The runners and tests run beside five servers: the matrix's cases over several servers
# (Redlock, the contract's) and the tests of parallel rounds use them.
PY_TEST_HARNESS5 := python3 $(ROOT)/tests/harness/harness.py run --servers 5 --

# Redis Cluster (issue 12): both runners against five independent 3-master clusters
# (matrix[python-cluster], matrix[python-asyncio-cluster]: the same N as single node), and
# tests/python/test_cluster*.py (reshard, ASK window, failover, cross-slot refusals) on one
# 3-master + 3-replica cluster they reshard and fail over (the main pytest run, over single
# servers, leaves them out: see conftest.py).
PY_CLUSTER_HARNESS5 := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 5 --
PY_CLUSTER_HARNESS_REPLICAS := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 1 --replicas 1 --

TEST_TARGETS += test-python test-python-cluster
BENCH_TARGETS += bench-python

.PHONY: python-venv test-python test-python-cluster bench-python

# A fresh virtualenv every time, with redpat built and installed from the checkout as a
# user would (`pip install .`, not editable); stale setuptools output is removed first so
# nothing from an older build can end up in the wheel.
python-venv: bootstrap
	rm -rf $(PY_VENV) $(ROOT)/build/python
	python3 -m venv $(PY_VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PY_TEST_DEPS)
	$(PY) -m pip install -q --disable-pip-version-check $(ROOT)
	cd / && $(PY) -c "import redpat, redpat.asyncio; print('python.mk: redpat', redpat.__version__, 'from', redpat.__file__)"

test-python: python-venv
	@mkdir -p $(LOGS)
	cd / && $(PY) $(ROOT)/scripts/gen_pyi.py --check 2>&1 | tee $(LOGS)/test-python-stubs.log
	cd $(ROOT) && $(PY_TEST_HARNESS5) $(PY) $(ROOT)/tests/python/matrix_runner.py 2>&1 | tee $(LOGS)/matrix-python.log
	cd $(ROOT) && $(PY_TEST_HARNESS5) $(PY) $(ROOT)/tests/python/matrix_runner_asyncio.py 2>&1 | tee $(LOGS)/matrix-python-asyncio.log
	cd $(ROOT) && REDPAT_EXPECT_INSTALLED=1 $(PY_TEST_HARNESS5) $(PY) -m pytest -p no:cacheprovider \
	  $(ROOT)/tests/python 2>&1 | tee $(LOGS)/test-python-pytest.log
	cd $(ROOT)/examples/python && $(PY) -m mypy --strict --no-incremental . 2>&1 | tee $(LOGS)/test-python-mypy.log
	cd / && $(PY) -m mypy --strict --no-incremental -p redpat 2>&1 | tee -a $(LOGS)/test-python-mypy.log
	cd $(ROOT) && $(PY_TEST_HARNESS5) sh -c 'for f in $(ROOT)/examples/python/*.py; do \
	  echo "== $$f"; REDPAT_URL=$$REDPAT_TEST_URL REDPAT_URLS=$$REDPAT_TEST_URLS $(PY) $$f || exit 1; done' 2>&1 | tee $(LOGS)/test-python-examples.txt

test-python-cluster: python-venv
	@mkdir -p $(LOGS)
	cd $(ROOT) && $(PY_CLUSTER_HARNESS5) $(PY) $(ROOT)/tests/python/matrix_runner.py 2>&1 | tee $(LOGS)/matrix-python-cluster.log
	cd $(ROOT) && $(PY_CLUSTER_HARNESS5) $(PY) $(ROOT)/tests/python/matrix_runner_asyncio.py 2>&1 | tee $(LOGS)/matrix-python-asyncio-cluster.log
	cd $(ROOT) && $(PY_CLUSTER_HARNESS_REPLICAS) $(PY) -m pytest -p no:cacheprovider \
	  $(ROOT)/tests/python/test_cluster.py $(ROOT)/tests/python/test_cluster_asyncio.py 2>&1 | tee $(LOGS)/test-python-cluster-pytest.log

bench-python: python-venv build
	@mkdir -p $(ROOT)/bench/results
	$(PY) -m pip install -q --disable-pip-version-check $(PY_BENCH_DEPS)
	$(HARNESS) $(PY) $(ROOT)/bench/python_lock.py --c-bench $(BUILD)/bench/bench_lock \
	  --out $(ROOT)/bench/results
	$(HARNESS) $(PY) $(ROOT)/bench/python_ratelimit.py --out $(ROOT)/bench/results
	for p in $(PY_BENCH_APART); do $(PY) -m pip install -q --disable-pip-version-check \
	  --target $(PY_BENCH_PEERS)/$$p $$p || exit 1; done
	$(PY_BENCH_HARNESS5) $(PY) $(ROOT)/bench/python_redlock.py --out $(ROOT)/bench/results \
	  --peer-dir redlock-py=$(PY_BENCH_PEERS)/redlock-py --peer-dir redlock-ng=$(PY_BENCH_PEERS)/redlock-ng
	$(HARNESS) $(PY) $(ROOT)/bench/python_pubsub.py --out $(ROOT)/bench/results \
	  --hiredis-dir $(PY_BENCH_PEERS)/hiredis
	$(HARNESS) $(PY) $(ROOT)/bench/python_cache.py --out $(ROOT)/bench/results \
	  --c-bench $(BUILD)/bench/bench_cache
