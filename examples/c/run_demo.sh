#!/bin/sh
# make demo: starts a private redis-server (tests/harness/harness.py: free port, temporary
# directory, no external Redis), runs the C fenced-lock demo against it, stops the server.
#   sh examples/c/run_demo.sh BUILD_DIR
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bin=$build/examples/c/fenced_demo
[ -x "$bin" ] || { echo "run_demo.sh: $bin not built (make build)" >&2; exit 1; }
echo "Starting a private redis-server for the demo..."
python3 "$root/tests/harness/harness.py" run -- \
    sh -c 'echo "Redis is at $REDPAT_TEST_URL (it is stopped when the demo ends)"; echo; exec "$0" "$REDPAT_TEST_URL"' "$bin"
