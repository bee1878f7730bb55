-- The rock (blocking driver) against hostile servers (tests/harness/hostile_server.py, ports
-- in REDPAT_HOSTILE_<NAME>): a reply bomb ends at once as "protocol" naming max_reply_size,
-- the process' memory bounded; a trickling or silent server (in the AUTH handshake too)
-- ends the call as "timeout" within the command timeout + 10% (issue 10's bound), for a lock
-- acquire and a rate-limit check. Run:
--   python3 tests/harness/hostile_server.py run -- lua5.4 tests/lua/test_hostile.lua
-- Prints `lua-hostile[<frontend>]: N passed, F failed`; exits non-zero on a failure.
local redpat = require "redpat"
local core = require "redpat.core"

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
local TIMEOUT_MS = 1000
local BOUND_MS = TIMEOUT_MS * 1.1
local RSS_GROWTH_MAX_KB = 64 * 1024
local STREAM_CAP = 1024 * 1024 -- bombs that stream need a cap below the RSS bound

local passed, failed = 0, 0
local function check(ok, what)
    if ok then
        passed = passed + 1
    else
        failed = failed + 1
        io.stderr:write("FAIL ", what, "\n")
    end
end

local function status_kb(field)
    local f = assert(io.open("/proc/self/status"))
    local text = f:read("*a")
    f:close()
    return tonumber(text:match(field .. ":%s*(%d+)"))
end

local function reset_peak() -- VmHWM back to the current RSS (Linux >= 4.0)
    local f = io.open("/proc/self/clear_refs", "w")
    if f then
        f:write("5")
        f:close()
    end
end

local function url(name, password)
    local port = os.getenv("REDPAT_HOSTILE_" .. name:upper())
    if not port then
        io.stderr:write("REDPAT_HOSTILE_", name:upper(), " is not set: run under ",
            "tests/harness/hostile_server.py run --\n")
        os.exit(2)
    end
    return ("redis://%s127.0.0.1:%s/0"):format(password and (":" .. password .. "@") or "", port)
end

local function client(name, password, cap)
    return assert(redpat.connect(url(name, password), {
        namespace = "hostile", command_timeout = TIMEOUT_MS, connect_timeout = TIMEOUT_MS,
        max_reply_size = cap, driver = "blocking" }))
end

local ops = {
    command = function(c) return c:command("PING") end,
    acquire = function(c) return assert(c:lock("res", { ttl = 10000 })):acquire() end,
    check = function(c)
        return assert(c:ratelimiter("api", { algorithm = "gcra", limit = 10, window = 1000 }))
            :check("u")
    end,
}
local op_names = { "command", "acquire", "check" }

local function bomb(name, password, cap, what)
    for _, op in ipairs(op_names) do
        local label = ("%s%s %s"):format(name, password and " (AUTH)" or "", op)
        local c = client(name, password, cap)
        reset_peak()
        local before = status_kb("VmRSS")
        local result, err, detail = ops[op](c)
        local growth = status_kb("VmHWM") - before
        local message = detail and detail.message or ""
        check(result == nil and err == "protocol",
            ("%s: want nil, \"protocol\"; got %s, %s (%s)"):format(label, tostring(result),
                tostring(err), message))
        check(message:find("max_reply_size", 1, true) and message:find(what, 1, true),
            ("%s: message %q lacks max_reply_size / %q"):format(label, message, what))
        check(growth < RSS_GROWTH_MAX_KB, ("%s: peak RSS grew by %d kB"):format(label, growth))
    end
end

local function deadline(name, password)
    for _, op in ipairs({ "acquire", "check" }) do
        local label = ("%s%s %s"):format(name, password and " (AUTH)" or "", op)
        local c = client(name, password)
        local t0 = core.monotonic_ms()
        local result, err, detail = ops[op](c)
        local took = core.monotonic_ms() - t0
        check(result == nil and err == "timeout",
            ("%s: want nil, \"timeout\"; got %s, %s (%s)"):format(label, tostring(result),
                tostring(err), detail and detail.message or ""))
        check(took <= BOUND_MS, ("%s: took %d ms (timeout %d ms)"):format(label, took, TIMEOUT_MS))
    end
end

bomb("bomb_array", nil, nil, "an array of 2147483647 elements")
bomb("bomb_array", "pw", nil, "an array of 2147483647 elements")
bomb("bomb_array_100m", nil, nil, "an array of 100000000 elements")
bomb("bomb_bulk", nil, nil, "a string of 2147483647 bytes")
bomb("bomb_handshake", "pw", nil, "an array of 2147483647 elements")
bomb("bomb_nested", nil, STREAM_CAP, "max_reply_size")
bomb("bomb_line", nil, STREAM_CAP, "bytes of an unfinished item")

deadline("trickle", nil)
deadline("trickle", "pw")
deadline("trickle_handshake", "pw")
deadline("silent", nil)
deadline("silent", "pw")
deadline("slow_ok", "pw") -- AUTH and request each under the timeout, not both

do -- the option is checked like any other
    local c, err, detail = redpat.connect(url("silent"), { max_reply_size = 1023 })
    check(c == nil and err == "invalid_argument" and detail.message:find("max_reply_size", 1, true),
        "max_reply_size = 1023 refused: " .. tostring(detail))
end

print(("lua-hostile[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
