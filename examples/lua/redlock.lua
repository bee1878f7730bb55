-- Redlock over several independent servers, and lock:using (the lock renewed while a
-- function runs), from plain Lua (5.4 or LuaJIT) with the blocking driver.
--   lua5.4 examples/lua/redlock.lua redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003
local redpat = require "redpat"

local urls = arg[1] or os.getenv("REDPAT_TEST_URLS")
    or "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003"
-- a client over every URL (a list, or one ','-joined string): one endpoint per server
local client = assert(redpat.client{ url = urls, namespace = "example" })

-- every node is asked in one parallel round; the lock is ours on a majority
local lock = assert(client:redlock("report:daily", { ttl = 300, node_timeout = 50 }))
local acquired, detail = lock:acquire({ wait = 1000 })
assert(acquired, "acquire: " .. tostring(detail))
lock:release()

-- lock:using takes the lock, runs the function while the core renews the lock every ttl/3
-- (from the C driver's helper thread: the function may block), releases it whatever the
-- function did, and returns the function's results; failures are nil, err, detail
-- ("busy": never ran; "callback": it raised; "lost": a renewal failed)
local function slow_report()
    local t = os.clock() + 0.7 -- longer than the TTL: only renewals keep the lock ours
    while os.clock() < t do end
    return "report done"
end
local result, err, why = lock:using(slow_report)
if err ~= nil then
    error("using: " .. tostring(why))
end
print(result .. " under the lock (held past its 300 ms TTL by renewals)")
