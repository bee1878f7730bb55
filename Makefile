# redpat — the two commands are `make demo` and `make test`; `make bench` measures.
# Each first runs the bootstrap (installs missing Debian packages, else does nothing).
ROOT := $(CURDIR)
BUILD := $(ROOT)/build
BUILD_ASAN := $(ROOT)/build-asan
HARNESS := python3 $(ROOT)/tests/harness/harness.py run --
# The shared matrix runs over five servers (cases with "servers": 1..5, stop/cont steps).
MATRIX_HARNESS := python3 $(ROOT)/tests/harness/harness.py run --servers 5 --
CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREDPAT_WERROR=ON
LOGS := $(BUILD)/logs
JOBS ?= 2
# Test output is also kept in $(LOGS) for the closing summary; pipefail keeps failures.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

# Frontends add their targets to these lists in mk/*.mk.
TEST_TARGETS := test-c test-c-sanitize test-c-hiredis1
BENCH_TARGETS := bench-c

.PHONY: all bootstrap build test demo bench test-c test-c-sanitize test-c-hiredis1 bench-c clean matrix-doc

all: build

bootstrap:
	@sh $(ROOT)/scripts/bootstrap.sh

build: bootstrap
	cmake -S $(ROOT) -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

test-c: build
	@mkdir -p $(LOGS)
	python3 $(ROOT)/scripts/gen_matrix_doc.py --check $(BUILD)/describe_json
	cd $(BUILD) && ctest --output-on-failure -j1 -E '^matrix_c$$' 2>&1 | tee $(LOGS)/test-c.log
	$(MATRIX_HARNESS) $(BUILD)/matrix_runner $(ROOT)/tests/matrix 2>&1 | tee $(LOGS)/matrix-c.log
	sh $(ROOT)/scripts/install_check.sh $(BUILD) 2>&1 | tee $(LOGS)/readme-c.log

# Rewrites tests/matrix/README.md's op table from the core's descriptors (test-c checks it).
matrix-doc: build
	python3 $(ROOT)/scripts/gen_matrix_doc.py $(BUILD)/describe_json

# The C tests again under AddressSanitizer + UBSan (leaks included).
test-c-sanitize: bootstrap
	cmake -S $(ROOT) -B $(BUILD_ASAN) $(CMAKE_FLAGS) -DREDPAT_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	@mkdir -p $(LOGS)
	cd $(BUILD_ASAN) && export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 && \
	  ctest --output-on-failure -j1 -E '^matrix_c$$' 2>&1 | tee $(LOGS)/test-c-sanitize.log && \
	  $(MATRIX_HARNESS) $(BUILD_ASAN)/matrix_runner $(ROOT)/tests/matrix 2>&1 | sed 's/^matrix\[c\]/matrix[c-asan]/' \
	  | tee $(LOGS)/matrix-c-sanitize.log

# The core against hiredis 1.x as well as Debian's 0.14.1.
test-c-hiredis1: bootstrap
	@mkdir -p $(LOGS)
	sh $(ROOT)/scripts/hiredis1_check.sh $(BUILD) 2>&1 | tee $(LOGS)/matrix-c-hiredis1.log

demo: build
	sh $(ROOT)/examples/c/run_demo.sh $(BUILD)

bench-c: build
	sh $(ROOT)/bench/run_c.sh $(BUILD)
	sh $(ROOT)/bench/run_ratelimit.sh $(BUILD)
	sh $(ROOT)/bench/run_redlock.sh $(BUILD)

-include $(ROOT)/mk/*.mk

test: bootstrap
	@rm -rf $(LOGS)
	$(MAKE) --no-print-directory $(TEST_TARGETS)
	@python3 $(ROOT)/scripts/summary.py $(LOGS)

bench: bootstrap $(BENCH_TARGETS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
