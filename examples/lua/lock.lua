-- A fenced lock from plain Lua (5.4 or LuaJIT), with the blocking driver.
--   lua5.4 examples/lua/lock.lua [redis://127.0.0.1:6379/0]
local redpat = require "redpat"

local url = arg[1] or os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
local client = assert(redpat.connect(url, { namespace = "example" }))

-- Times are milliseconds. A fenced lock hands out a strictly increasing token per acquire.
local lock = assert(client:lock("invoice:42", { ttl = 10000, fenced = true }))

-- Expected failures are `nil, err, detail` as with lua-resty-* libraries: err is the core's
-- status name, a plain string ("timeout", "transport", "not_owned", ...), and detail a table
-- {name, message, code} that prints and concatenates as "name: message".
local acquired, fence_or_err, detail = lock:acquire({ wait = 2000 })
if acquired == nil then
    error("acquire failed: " .. detail) -- e.g. "acquire failed: timeout: ..."
elseif not acquired then
    print("busy: someone else holds invoice:42")
    os.exit(1)
end
local fence = fence_or_err
print(("acquired invoice:42 with fencing token %d"):format(fence))

-- The storage side checks the token before accepting a write: an older token means a
-- stale holder (paused, expired) and the write must be refused.
local accepted, highest, fdetail = client:fence_check("invoices-table", fence)
if accepted == nil then
    error("fence check failed: " .. fdetail) -- on failure highest is err, fdetail the detail
end
print(("write with token %d accepted: %s (highest seen %d)"):format(fence, tostring(accepted), highest))

assert(lock:extend(5000)) -- more time for the work
assert(lock:release())

-- Scoped use: released whatever fn does (an error is re-raised after the release).
local ok, total = lock:with({ wait = 2000 }, function(a, b)
    return a + b
end, 40, 2)
print("with:", ok, total)

-- A lock no longer held (released, expired, taken over): err == "not_owned".
local released, err, rdetail = lock:release()
if err ~= "not_owned" then
    error("a second release must be not_owned, got " .. tostring(rdetail or released))
end
print("second release:", released, err, tostring(rdetail))

-- Every op the core describes is also reachable by name, with the core's names and records
-- (redpat.descriptors lists them); what a lock handle knows needs no round trip.
local info = assert(redpat.perform("lock.info", lock))
print(("lock.info: name=%s ttl=%dms fenced=%s"):format(info.name, info.ttl, tostring(info.fenced)))

-- A misspelled option raises an error naming the valid ones (it is a bug, not a runtime
-- condition).
local ok, bad = pcall(client.lock, client, "invoice:43", { tll = 5000 })
print("misspelled option:", ok, tostring(bad))
