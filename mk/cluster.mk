# Redis Cluster, C (issue 12): the shared matrix on five 3-master clusters (matrix[c-cluster],
# the same N as matrix[c]) and tests/c/test_cluster.c on one 3-master + 3-replica cluster
# (routing, cross-slot refusal, ASK / MOVED while slots move under a loop, a master
# SIGKILLed and its replica promoted) and tests/c/test_cluster_tls.c on a TLS cluster (AUTH
# on every node); all again under AddressSanitizer + UBSan.
# test_cluster is in ctest's "cluster" configuration only (`ctest -C cluster -R
# test_cluster`), so the plain ctest runs of test-c / test-c-sanitize leave it out.
# Included by the top-level Makefile (ROOT, BUILD, BUILD_ASAN, CMAKE_FLAGS, JOBS, LOGS,
# bootstrap, build).
CLUSTER_HARNESS5 := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 5 --
CLUSTER_HARNESS_REPLICAS := python3 $(ROOT)/tests/harness/harness.py run --cluster --servers 1 --replicas 1 --
CLUSTER_HARNESS_TLS := python3 $(ROOT)/tests/harness/harness.py run --cluster --tls --servers 1 --

TEST_TARGETS += test-c-cluster test-c-cluster-sanitize

.PHONY: test-c-cluster test-c-cluster-sanitize

test-c-cluster: build
	@mkdir -p $(LOGS)
	python3 $(ROOT)/scripts/check_matrix_cluster.py 2>&1 | tee $(LOGS)/check-matrix-cluster.log
	$(CLUSTER_HARNESS5) $(BUILD)/matrix_runner $(ROOT)/tests/matrix 2>&1 | tee $(LOGS)/matrix-c-cluster.log
	$(CLUSTER_HARNESS_REPLICAS) $(BUILD)/tests/c/test_cluster 2>&1 | tee $(LOGS)/test-c-cluster.log
	$(CLUSTER_HARNESS_TLS) $(BUILD)/tests/c/test_cluster_tls 2>&1 | tee $(LOGS)/test-c-cluster-tls.log

test-c-cluster-sanitize: bootstrap
	cmake -S $(ROOT) -B $(BUILD_ASAN) $(CMAKE_FLAGS) -DREDPAT_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j$(JOBS) --target matrix_runner test_cluster test_cluster_tls
	@mkdir -p $(LOGS)
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 && \
	  $(CLUSTER_HARNESS5) $(BUILD_ASAN)/matrix_runner $(ROOT)/tests/matrix 2>&1 \
	  | sed 's/^matrix\[c-cluster\]/matrix[c-asan-cluster]/' \
	  | tee $(LOGS)/matrix-c-cluster-sanitize.log && \
	  $(CLUSTER_HARNESS_REPLICAS) $(BUILD_ASAN)/tests/c/test_cluster 2>&1 \
	  | sed 's/^test_cluster:/test_cluster[asan]:/' | tee $(LOGS)/test-c-cluster-sanitize.log && \
	  $(CLUSTER_HARNESS_TLS) $(BUILD_ASAN)/tests/c/test_cluster_tls 2>&1 \
	  | sed 's/^test_cluster_tls:/test_cluster_tls[asan]:/' | tee $(LOGS)/test-c-cluster-tls-sanitize.log
