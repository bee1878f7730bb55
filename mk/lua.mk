# Lua frontend (issues 4, 8, 9, 13): the redpat rock for Lua 5.4 and LuaJIT in local trees, its
# tests (matrix runners, Lua-specific tests, the driver contract's tests over five servers,
# OpenResty tests in a private nginx) and benchmarks.
# Included by the top-level Makefile, which defines ROOT, BUILD, LOGS, HARNESS, bootstrap.
LUA_TREES := $(ROOT)/.luarocks
LUA_TREE_54 := $(LUA_TREES)/5.4
LUA_TREE_JIT := $(LUA_TREES)/luajit
LUA_STAGE := $(ROOT)/build/lua
LUA_ROCK_CFLAGS := -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Wshadow -Wconversion
# The matrix directories the Lua runners read (several separated by ':'), e.g.
#   make test-lua LUA_MATRIX_DIRS=$PWD/tests/matrix:/other/cases
LUA_MATRIX_DIRS ?= $(ROOT)/tests/matrix
# The Lua glue's budget: issue 8 gave it 680 lines (of bindings/*.i + lua/*.c <= 1500);
# issue 9's driver contract v2 added ~220 generic ones (and removed core.endpoint): the call
# hook that runs a Lua function for the blocking driver, pump and message records for
# long-lived ops, and the op methods the cosocket driver needs (targets, per-target
# handshakes, per-node requests, pending / round_over / timeouts / listening, resume,
# cancel). Issue 10 added `fail_node_unsent` (a target that failed before its request was
# written: nothing of it can have run, so nothing is compensated). Still no pattern code:
# the check below keeps it that way.
LUA_GLUE_MAX_LINES := 920
# The matrix's multi-server cases, the Redlock and the parallel-round tests need five.
LUA_HARNESS := python3 $(ROOT)/tests/harness/harness.py run --servers 5 --
# Redis Cluster (issue 12): the matrix against five independent 3-master clusters (server I
# of a case = cluster I; see tests/harness/harness.py run --cluster).
LUA_CLUSTER_HARNESS := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 5 --
# The fault tests (a reshard, a master killed): one cluster with a replica per master, a
# fresh one per run (the failover leaves it changed).
LUA_FAILOVER_HARNESS := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 1 --replicas 1 --
# TLS (issue 11 item 8): TLS-only servers, certificates made at test time (tests/lua/test_tls.lua).
LUA_TLS_HARNESS := python3 $(ROOT)/tests/harness/harness.py run --tls --servers 3 --

# Environments that make `require "redpat"` load the rock from each local tree.
LUA_ENV_54 := LUA_PATH_5_4="$(LUA_TREE_54)/share/lua/5.4/?.lua;$(LUA_TREE_54)/share/lua/5.4/?/init.lua;;" \
	LUA_CPATH_5_4="$(LUA_TREE_54)/lib/lua/5.4/?.so;;"
LUA_ENV_JIT := LUA_PATH="$(LUA_TREE_JIT)/share/lua/5.1/?.lua;$(LUA_TREE_JIT)/share/lua/5.1/?/init.lua;;" \
	LUA_CPATH="$(LUA_TREE_JIT)/lib/lua/5.1/?.so;;"

TEST_TARGETS += test-lua test-lua-rock test-lua-cluster
BENCH_TARGETS += bench-lua

.PHONY: lua-rock lua-rock-5.4 lua-rock-luajit test-lua test-lua-rock bench-lua \
	test-lua-cluster test-lua-cluster-5.4 test-lua-cluster-luajit test-lua-cluster-openresty \
	test-lua-cluster-faults

lua-rock: lua-rock-5.4 lua-rock-luajit

# Builds each tree with the README's recipe for it (its "Install with LuaRocks" blocks, run
# as written by scripts/readme_recipes.sh in a fresh copy of the tracked tree, installing into
# the tree through a LuaRocks config): one `luarocks make`, and the copy must be left without
# a single new file. The rockspec compiles every core/src/*.c (lua/rock.mk), as CMake does.
# $(1): tree name, $(2): the README's recipe
define lua_rock_build
	@! grep -nE 'rp_(lock|redlock|ratelimit|fence|pubsub|subscription|cache)_[a-z_]+ *\(' $(ROOT)/lua/*.c || \
	  { echo "lua.mk: the Lua glue calls pattern functions; it must go through the descriptors" >&2; exit 1; }
	@n=$$(cat $(ROOT)/lua/*.c | wc -l); [ $$n -le $(LUA_GLUE_MAX_LINES) ] || \
	  { echo "lua.mk: lua/*.c is $$n lines, over its budget of $(LUA_GLUE_MAX_LINES)" >&2; exit 1; }
	@mkdir -p $(LOGS)
	sh $(ROOT)/scripts/readme_recipes.sh --work $(LUA_STAGE)/stage-$(1) --tree $(LUA_TREES)/$(1) \
	  --cflags "$(LUA_ROCK_CFLAGS)" $(2) 2>&1 | tee $(LOGS)/readme-$(2).log
	@echo "lua.mk: built the redpat rock into $(LUA_TREES)/$(1)"
endef

lua-rock-5.4: bootstrap
	$(call lua_rock_build,5.4,lua-54)

lua-rock-luajit: bootstrap
	$(call lua_rock_build,luajit,luajit)

# The README's source-rock recipe: `luarocks pack` (its git source.url sent to a committed,
# tagged copy of the tree), then `luarocks install` of the .src.rock into a fresh tree for
# Lua 5.4 and LuaJIT, each of which then takes a lock on a private redis-server.
test-lua-rock: bootstrap
	@mkdir -p $(LOGS)
	sh $(ROOT)/scripts/readme_recipes.sh --work $(LUA_STAGE)/src-rock lua-src-rock 2>&1 | \
	  tee $(LOGS)/readme-lua-src-rock.log

test-lua: lua-rock
	@mkdir -p $(LOGS)
	$(LUA_HARNESS) env $(LUA_ENV_54) REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) lua5.4 $(ROOT)/tests/lua/run_matrix.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-matrix-lua5.4.log
	$(LUA_HARNESS) env $(LUA_ENV_JIT) REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) luajit $(ROOT)/tests/lua/run_matrix.lua luajit 2>&1 | tee $(LOGS)/test-lua-matrix-luajit.log
	$(HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_lua.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-specific-lua5.4.log
	$(HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_lua.lua luajit 2>&1 | tee $(LOGS)/test-lua-specific-luajit.log
	$(HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_cache.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-cache-lua5.4.log
	$(HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_cache.lua luajit 2>&1 | tee $(LOGS)/test-lua-cache-luajit.log
	$(LUA_HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_contract.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-contract-lua5.4.log
	$(LUA_HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_contract.lua luajit 2>&1 | tee $(LOGS)/test-lua-contract-luajit.log
	$(HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/examples/lua/lock.lua 2>&1 | tee $(LOGS)/test-lua-example.log
	$(HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/examples/lua/ratelimit.lua 2>&1 | tee $(LOGS)/test-lua-example-ratelimit.log
	$(LUA_HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/examples/lua/redlock.lua 2>&1 | tee $(LOGS)/test-lua-example-redlock.log
	$(HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/examples/lua/pubsub.lua 2>&1 | tee $(LOGS)/test-lua-example-pubsub.log
	$(HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/examples/lua/cache.lua 2>&1 | tee $(LOGS)/test-lua-example-cache.log
	$(LUA_HARNESS) env REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) python3 $(ROOT)/tests/openresty/run_tests.py --tree $(LUA_TREE_JIT) 2>&1 | tee $(LOGS)/test-lua-openresty.log
	$(LUA_TLS_HARNESS) python3 $(ROOT)/tests/openresty/run_tests.py --tls --tree $(LUA_TREE_JIT) 2>&1 | tee $(LOGS)/test-lua-openresty-tls.log
	python3 $(ROOT)/tests/harness/hostile_server.py run -- env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_hostile.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-hostile-lua5.4.log
	python3 $(ROOT)/tests/harness/hostile_server.py run -- env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_hostile.lua luajit 2>&1 | tee $(LOGS)/test-lua-hostile-luajit.log
	$(LUA_TLS_HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_tls.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-tls-lua5.4.log
	$(LUA_TLS_HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_tls.lua luajit 2>&1 | tee $(LOGS)/test-lua-tls-luajit.log

# The matrix on clusters, each frontend beside its own five clusters: matrix[lua5.4-cluster],
# matrix[luajit-cluster], matrix[openresty-cluster] (the same cases, so the same N, as the
# single-node lines). The rock is lua-rock's, built once per make run.
test-lua-cluster: test-lua-cluster-5.4 test-lua-cluster-luajit test-lua-cluster-openresty \
	test-lua-cluster-faults

test-lua-cluster-5.4: lua-rock
	@mkdir -p $(LOGS)
	$(LUA_CLUSTER_HARNESS) env $(LUA_ENV_54) REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) lua5.4 $(ROOT)/tests/lua/run_matrix.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-matrix-lua5.4-cluster.log

test-lua-cluster-luajit: lua-rock
	@mkdir -p $(LOGS)
	$(LUA_CLUSTER_HARNESS) env $(LUA_ENV_JIT) REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) luajit $(ROOT)/tests/lua/run_matrix.lua luajit 2>&1 | tee $(LOGS)/test-lua-matrix-luajit-cluster.log

test-lua-cluster-openresty: lua-rock
	@mkdir -p $(LOGS)
	$(LUA_CLUSTER_HARNESS) env REDPAT_MATRIX_DIR=$(LUA_MATRIX_DIRS) python3 $(ROOT)/tests/openresty/run_tests.py --tree $(LUA_TREE_JIT) 2>&1 | tee $(LOGS)/test-lua-openresty-cluster.log

# AUTH on every node, a live reshard of a held lock's and a limiter subject's slots, then a
# master SIGKILLed and its replica promoted: tests/lua/test_cluster.lua (blocking driver:
# lua-cluster-tests[lua5.4|luajit]) and run_tests.py --cluster-faults (cosockets, and a
# subscription's target: openresty-cluster-tests).
test-lua-cluster-faults: lua-rock
	@mkdir -p $(LOGS)
	$(LUA_FAILOVER_HARNESS) env $(LUA_ENV_54) lua5.4 $(ROOT)/tests/lua/test_cluster.lua lua5.4 2>&1 | tee $(LOGS)/test-lua-cluster-faults-lua5.4.log
	$(LUA_FAILOVER_HARNESS) env $(LUA_ENV_JIT) luajit $(ROOT)/tests/lua/test_cluster.lua luajit 2>&1 | tee $(LOGS)/test-lua-cluster-faults-luajit.log
	$(LUA_FAILOVER_HARNESS) python3 $(ROOT)/tests/openresty/run_tests.py --cluster-faults --tree $(LUA_TREE_JIT) 2>&1 | tee $(LOGS)/test-lua-cluster-faults-openresty.log

# Starts its own pinned redis-servers and nginx (see bench/lua_bench.py); needs the C
# bench binary from `build`.
bench-lua: lua-rock build
	@mkdir -p $(ROOT)/bench/results
	python3 $(ROOT)/bench/lua_bench.py --build $(BUILD) --tree-54 $(LUA_TREE_54) \
	  --tree-luajit $(LUA_TREE_JIT) --out $(ROOT)/bench/results
