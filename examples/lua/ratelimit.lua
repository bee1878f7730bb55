-- Rate limiters from plain Lua (5.4 or LuaJIT), with the blocking driver.
--   lua5.4 examples/lua/ratelimit.lua [redis://127.0.0.1:6379/0]
local redpat = require "redpat"

local url = arg[1] or os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
local client = assert(redpat.connect(url, { namespace = "example" }))

-- 5 requests per second per user, bursts of up to 5 (GCRA); the window is in milliseconds.
-- on_error says what a check answers when Redis fails: "report" (default: nil, err),
-- "fail_open" (allowed) or "fail_closed" (refused), the latter two marked degraded.
local per_second = assert(client:ratelimiter("api:per-second", {
    algorithm = "gcra", limit = 5, window = 1000, on_error = "fail_open",
}))
assert(per_second:reset("user:42")) -- a fresh start for the example

for i = 1, 7 do
    local d, _, detail = per_second:check("user:42")
    if not d then
        error("check failed: " .. detail) -- "name: message"
    end
    print(("request %d: allowed=%s remaining=%d retry_after=%dms reset_after=%dms%s"):format(
        i, tostring(d.allowed), d.remaining, d.retry_after, d.reset_after,
        d.degraded and " (degraded: Redis failed)" or ""))
end

-- Several limits at once, all or nothing: 5/s and 100/h. A refusal consumes nothing and
-- names the refusing limiter (its index in the list).
local per_hour = assert(client:ratelimiter("api:per-hour", {
    algorithm = "sliding_window", limit = 100, window = 3600000,
}))
assert(per_hour:reset("user:7"))
assert(per_second:reset("user:7"))
local d = assert(client:ratelimit_multi({ per_second, per_hour }, "user:7", 5))
print(("multi, cost 5: allowed=%s remaining=%d (limit %d)"):format(tostring(d.allowed), d.remaining, d.limit))
d = assert(client:ratelimit_multi({ per_second, per_hour }, "user:7"))
print(("multi again: allowed=%s refused_by=%s retry_after=%dms"):format(
    tostring(d.allowed), tostring(d.refused_by), d.retry_after))

-- Many subjects in one pipelined round trip.
local decisions = assert(per_hour:batch({ "user:1", "user:2", "user:3" }))
for i, bd in ipairs(decisions) do
    print(("batch %d: allowed=%s remaining=%d"):format(i, tostring(bd.allowed), bd.remaining))
end

-- Bad input is nil, "invalid_argument", detail naming the argument.
local none, err, detail = client:ratelimiter("api", { algorithm = "leaky_bucket", limit = 5, window = 1000 })
print("bad algorithm:", none, err, detail.message)
