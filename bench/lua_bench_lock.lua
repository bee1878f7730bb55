-- lua_bench_lock.lua URL ITERATIONS RUNS
-- The Lua lock cycle (try-acquire + release through the redpat Lua API, blocking driver),
-- measured like build/bench/bench_lock measures the C one: same namespace, key shape, TTL
-- and warm-up; each run's mean microseconds per cycle, and their median. Timed with the
-- core's monotonic clock (milliseconds: lua_bench.py runs enough iterations per run that
-- its resolution stays well under the 10% target).
-- Prints one JSON object: {"frontend": ..., "redpat_cycle_us": median, "runs": [...]}.
local redpat = require "redpat"
local core = require "redpat.core"

local url, iters, runs = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(url and iters and runs and iters > 0 and runs > 0, "usage: lua_bench_lock.lua URL ITERATIONS RUNS")
local frontend = jit and "luajit" or "lua5.4"

local client = assert(redpat.connect(url, { namespace = "rpbench" }))
local lock = assert(client:lock("cyc-l", { ttl = 30000 }))

local function cycle()
    local acquired, _, detail = lock:acquire()
    if not acquired then
        error("acquire: " .. tostring(detail or "busy"))
    end
    local ok, _, rdetail = lock:release()
    if not ok then
        error("release: " .. tostring(rdetail))
    end
end

local warm = math.floor(iters / 10)
if warm < 100 then
    warm = 100
end
for _ = 1, warm do
    cycle()
end

local results = {}
for r = 1, runs do
    local t0 = core.monotonic_ms()
    for _ = 1, iters do
        cycle()
    end
    results[r] = (core.monotonic_ms() - t0) * 1000 / iters
end
local sorted = {}
for i, v in ipairs(results) do
    sorted[i] = v
end
table.sort(sorted)
local median = (#sorted % 2 == 1) and sorted[(#sorted + 1) / 2]
    or (sorted[#sorted / 2] + sorted[#sorted / 2 + 1]) / 2
local parts = {}
for i, v in ipairs(results) do
    parts[i] = string.format("%.3f", v)
end
print(string.format('{"frontend": "%s", "redpat_cycle_us": %.3f, "iterations": %d, "runs": [%s]}',
    frontend, median, iters, table.concat(parts, ", ")))
