# Fuzzing (issue 10, finding 8): libFuzzer harnesses over every op family, built with clang
# (Debian's clang 14 + libclang-rt-14-dev, installed by scripts/bootstrap.sh) under ASan +
# UBSan. Each harness feeds arbitrary reply bytes (whole, byte by byte, cut at random) to
# the ops of its family and asserts the invariants of tests/fuzz/fuzz_ops.c.
#   make fuzz        each harness for FUZZ_SECONDS (600) s
#   make test-fuzz   each for FUZZ_TEST_SECONDS (30) s after replaying tests/fuzz/regressions
#                    and the seeds (part of make test), JOBS (2) harnesses at a time
# Everything the fuzz build writes (objects, binaries, the grown corpus, findings) goes to
# $(FUZZ_BUILD); tests/fuzz/ is only read. Included by the top-level Makefile.
FUZZ_BUILD ?= $(BUILD)/fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 30
FUZZ_FAMILIES := locks redlock ratelimit pubsub client cache
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -g -O1 -std=gnu99 $(FUZZ_SAN) $(shell pkg-config --cflags hiredis openssl 2>/dev/null) \
  -I$(ROOT)/core/include -I$(ROOT)/core/src
FUZZ_WARN := -Wall -Wextra -Wshadow -Wconversion -Werror
FUZZ_LIBS := $(shell pkg-config --libs hiredis openssl 2>/dev/null || echo -lhiredis -lssl -lcrypto) -lpthread -lm
FUZZ_CORE_SRC := $(wildcard $(ROOT)/core/src/*.c)
FUZZ_CORE_OBJ := $(patsubst $(ROOT)/core/src/%.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_CORE_SRC)) \
  $(FUZZ_BUILD)/obj/rp_scripts_gen.o
FUZZ_HEADERS := $(wildcard $(ROOT)/core/src/*.h $(ROOT)/core/include/redpat/*.h)
FUZZ_BINS := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_FAMILIES))

TEST_TARGETS += test-fuzz

.PHONY: fuzz fuzz-build test-fuzz
# objects of pattern rules are kept (not intermediates make deletes)
.SECONDARY: $(FUZZ_CORE_OBJ) $(FUZZ_BUILD)/gen/rp_scripts_gen.c

$(FUZZ_BUILD)/obj/%.o: $(ROOT)/core/src/%.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	@echo "fuzz: CC $(notdir $<)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

# SHA-1 (every new client hashes its embedded scripts) reads no reply: built without
# coverage or sanitizers, it would otherwise take ~90% of every run.
$(FUZZ_BUILD)/obj/sha1.o: $(ROOT)/core/src/sha1.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	@echo "fuzz: CC $(notdir $<) (uninstrumented)"
	@$(FUZZ_CC) -g -O2 -std=gnu99 -I$(ROOT)/core/include -I$(ROOT)/core/src -c $< -o $@

$(FUZZ_BUILD)/gen/rp_scripts_gen.c: $(wildcard $(ROOT)/core/scripts/*.lua) $(ROOT)/core/scripts/embed.sh
	@mkdir -p $(dir $@)
	@sh $(ROOT)/core/scripts/embed.sh $@ $(ROOT)/core/scripts

$(FUZZ_BUILD)/obj/rp_scripts_gen.o: $(FUZZ_BUILD)/gen/rp_scripts_gen.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	@echo "fuzz: CC $(notdir $<)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(ROOT)/tests/fuzz/fuzz_ops.c $(FUZZ_CORE_OBJ)
	@echo "fuzz: LD $(notdir $@)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WARN) -fsanitize=fuzzer \
	  -DFUZZ_FAMILY=FAMILY_$(shell echo $* | tr a-z A-Z) $< $(FUZZ_CORE_OBJ) $(FUZZ_LIBS) -o $@

fuzz-build: bootstrap
	@$(MAKE) --no-print-directory -s -j$(JOBS) $(FUZZ_BINS)

# One summary line per harness (each run.sh prints its own, at its end); the harnesses run
# $(JOBS) at a time; any finding fails, after every harness has run.
FUZZ_TEST_RUNS := $(patsubst %,fuzz-test-%,$(FUZZ_FAMILIES))
FUZZ_LONG_RUNS := $(patsubst %,fuzz-long-%,$(FUZZ_FAMILIES))
.PHONY: $(FUZZ_TEST_RUNS) $(FUZZ_LONG_RUNS)

$(FUZZ_TEST_RUNS): fuzz-test-%:
	@sh $(ROOT)/tests/fuzz/run.sh $* $(FUZZ_BUILD)/fuzz_$* $(FUZZ_TEST_SECONDS) $(FUZZ_BUILD)/run/$*

$(FUZZ_LONG_RUNS): fuzz-long-%:
	@sh $(ROOT)/tests/fuzz/run.sh $* $(FUZZ_BUILD)/fuzz_$* $(FUZZ_SECONDS) $(FUZZ_BUILD)/run/$*

test-fuzz: fuzz-build
	@mkdir -p $(LOGS)
	@$(MAKE) --no-print-directory -k -j$(JOBS) $(FUZZ_TEST_RUNS) 2>&1 | tee $(LOGS)/test-fuzz.log

fuzz: fuzz-build
	@$(MAKE) --no-print-directory -k -j$(JOBS) $(FUZZ_LONG_RUNS)
