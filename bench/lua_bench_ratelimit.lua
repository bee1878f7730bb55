-- lua_bench_ratelimit.lua URL CHECKS RUNS
-- Rate limit checks through the redpat Lua API (blocking driver), per algorithm: mean
-- microseconds per single check (each run's mean, then their median), Redis commands per
-- check from INFO commandstats (one EVALSHA per check is one round trip), and a batch of
-- 1000 checks (one pipelined round trip) in microseconds. Timed with the core's monotonic
-- clock (milliseconds: runs are long enough for its resolution).
-- Prints one JSON object: {"frontend": ..., "single": {alg: {"us", "roundtrips"}},
-- "batch_1000_us": median, "runs": ...}.
local redpat = require "redpat"
local core = require "redpat.core"

local url, checks, runs = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(url and checks and runs and checks > 0 and runs > 0, "usage: lua_bench_ratelimit.lua URL CHECKS RUNS")
local frontend = jit and "luajit" or "lua5.4"

local client = assert(redpat.connect(url, { namespace = "rlbench" }))
local admin = assert(redpat.connect(url, { namespace = "rlbench" }))
local ALGORITHMS = { "fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra" }

local function median(list)
    local s = {}
    for i, v in ipairs(list) do
        s[i] = v
    end
    table.sort(s)
    local n = #s
    return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

-- Script calls since the last CONFIG RESETSTAT (EVALSHA, plus EVAL/SCRIPT if the script
-- had to be loaded): one per check means one round trip per check.
local function script_calls()
    local stats = assert(admin:command("INFO", "commandstats"))
    local n = 0
    for name, calls in stats:gmatch("cmdstat_(%w+):calls=(%d+)") do
        if name == "evalsha" or name == "eval" or name == "script" then
            n = n + tonumber(calls)
        end
    end
    return n
end

local function check_loop(limiter, subject, n)
    for _ = 1, n do
        local d, _, detail = limiter:check(subject)
        if not d then
            error("check: " .. tostring(detail))
        elseif not d.allowed then
            error("check refused: the bench limit is too low")
        end
    end
end

local single = {}
for _, alg in ipairs(ALGORITHMS) do
    -- a limit no run reaches: every check is a full, allowed, consuming check
    local limiter = assert(client:ratelimiter("b-" .. alg, { algorithm = alg, limit = 1000000000, window = 60000 }))
    assert(limiter:reset("user:bench"))
    check_loop(limiter, "user:bench", math.max(100, math.floor(checks / 10))) -- warm-up
    assert(admin:command("CONFIG", "RESETSTAT"))
    local per_run = {}
    for r = 1, runs do
        local t0 = core.monotonic_ms()
        check_loop(limiter, "user:bench", checks)
        per_run[r] = (core.monotonic_ms() - t0) * 1000 / checks
    end
    local calls = script_calls()
    assert(limiter:reset("user:bench"))
    single[alg] = { us = median(per_run), roundtrips = calls / (checks * runs), runs = per_run }
end

-- A batch of 1000 different subjects, one pipelined round trip.
local limiter = assert(client:ratelimiter("b-batch", { algorithm = "gcra", limit = 1000000000, window = 60000 }))
local subjects = {}
for i = 1, 1000 do
    subjects[i] = "user:" .. i
end
local function batch()
    local list, _, detail = limiter:batch(subjects)
    if not list then
        error("batch: " .. tostring(detail))
    end
    assert(#list == 1000 and list[1000].allowed, "batch decisions")
end
for _ = 1, 5 do
    batch()
end
local batch_runs = {}
local nbatch = math.max(5, math.floor(checks / 200))
for r = 1, runs do
    local t0 = core.monotonic_ms()
    for _ = 1, nbatch do
        batch()
    end
    batch_runs[r] = (core.monotonic_ms() - t0) * 1000 / nbatch
end

local parts = {}
for _, alg in ipairs(ALGORITHMS) do
    parts[#parts + 1] = string.format('"%s": {"us": %.3f, "roundtrips": %.3f}', alg, single[alg].us, single[alg].roundtrips)
end
print(string.format('{"frontend": "%s", "checks": %d, "runs": %d, "single": {%s}, "batch_1000_us": %.1f}',
    frontend, checks, runs, table.concat(parts, ", "), median(batch_runs)))
