#!/bin/sh
# Runs one fuzz harness: sh run.sh FAMILY BINARY SECONDS WORKDIR [extra libFuzzer flags]
#  1. replays tests/fuzz/regressions/FAMILY/* (every input that once found something);
#  2. fuzzes for SECONDS, starting from the checked-in seeds tests/fuzz/corpus/FAMILY (all of
#     them run first) plus what earlier runs found; new inputs go to WORKDIR/corpus only, so
#     the source tree is never written;
#  3. prints one line "fuzz[FAMILY]: N execs, K findings" and fails when K > 0 (the inputs
#     are in WORKDIR/artifacts).
set -u
fam=$1 bin=$2 secs=$3 work=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/corpus/$fam
regress=$here/regressions/$fam
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/fuzz.log
: > "$log"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
findings=0 execs=0 replayed=0
flags="-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"

if [ -d "$regress" ] && [ -n "$(ls -A "$regress" 2>/dev/null)" ]; then
    for f in "$regress"/*; do
        replayed=$((replayed + 1))
        if ! "$bin" $flags "$f" >>"$log" 2>&1; then
            echo "fuzz[$fam]: regression $(basename "$f") fails again:" >&2
            grep -E 'INVARIANT|ERROR: |SUMMARY' "$log" | tail -5 >&2
            findings=$((findings + 1))
        fi
    done
fi

"$bin" $flags -max_total_time="$secs" -artifact_prefix="$work/artifacts/" "$@" \
    "$work/corpus" "$seeds" >>"$log" 2>&1
rc=$?
execs=$(grep -E '^stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
execs=${execs:-0}
if [ $rc -ne 0 ]; then
    n=$(ls "$work/artifacts" 2>/dev/null | grep -cE '^(crash|leak|oom|timeout|slow-unit)-')
    [ "$n" -gt 0 ] || n=1
    findings=$((findings + n))
    grep -E 'INVARIANT|ERROR: |SUMMARY|Test unit written' "$log" | tail -8 >&2
fi
echo "fuzz[$fam]: $execs execs, $findings findings ($replayed regressions replayed, $(ls "$seeds" 2>/dev/null | wc -l) seeds)"
[ $findings -eq 0 ]
