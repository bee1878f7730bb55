-- Runs every case of the shared test matrix through the redpat Lua API (blocking driver).
-- Usage (beside private redis-servers, see tests/harness/harness.py run --servers 5):
--   lua5.4 tests/lua/run_matrix.lua [frontend]     -> matrix[lua5.4]: N passed, F failed, S skipped
--   luajit tests/lua/run_matrix.lua [frontend]     -> matrix[luajit]: ...
-- Env: REDPAT_TEST_URLS and REDPAT_TEST_PIDS (the servers; REDPAT_TEST_URL alone runs the
-- cases of one server), REDPAT_MATRIX_DIR (default tests/matrix; several
-- directories separated by ':' run together, e.g. tests/matrix:/other/cases).
-- On clusters (harness.py run --cluster --servers 5: REDPAT_TEST_CLUSTER=1, the cluster
-- URLs, REDPAT_TEST_NODES and the pids per cluster) the line is matrix[<frontend>-cluster].
-- REDPAT_MATRIX_ONLY=TEXT runs just the cases whose name contains TEXT (when debugging).
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local cjson = require "cjson"
local redpat = require "redpat"
local matrix = require "matrix"

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
local urls, pids, nodes = matrix.servers(os.getenv)
assert(#urls > 0, "REDPAT_TEST_URLS (or REDPAT_TEST_URL) is not set")
local dir = os.getenv("REDPAT_MATRIX_DIR") or (here .. "/../matrix")

local cases = matrix.load(dir, cjson)
local only = os.getenv("REDPAT_MATRIX_ONLY")
if only and only ~= "" then
    local picked = {}
    for _, case in ipairs(cases) do
        if case.name:find(only, 1, true) then
            picked[#picked + 1] = case
        end
    end
    cases = picked
end
local env = { redpat = redpat, urls = urls, pids = pids, cluster = nodes ~= nil, nodes = nodes,
              sleep_ms = matrix.sleep_ms, signal = matrix.signal }
if env.cluster then
    frontend = frontend .. "-cluster"
end
local passed, failed = 0, 0
for _, case in ipairs(cases) do
    local ok, why = matrix.run_case(case, env)
    if ok then
        passed = passed + 1
    else
        failed = failed + 1
        io.stderr:write(("FAIL [%s] %s: %s\n"):format(frontend, case.name, tostring(why)))
    end
end
io.stdout:write(("matrix[%s]: %d passed, %d failed, 0 skipped\n"):format(frontend, passed, failed))
io.stdout:flush()
os.exit((failed == 0 and passed > 0) and 0 or 1)
