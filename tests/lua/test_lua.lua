-- Lua-specific tests of the redpat rock (blocking driver): handle GC and lifetimes, error
-- values, binary strings with NUL bytes, scoped use (lock:with, and <close> on Lua 5.4).
-- Run beside a private redis-server (REDPAT_TEST_URL):
--   lua5.4 tests/lua/test_lua.lua     luajit tests/lua/test_lua.lua
-- Prints `lua-tests[<frontend>]: N passed, F failed` and exits non-zero on a failure.
local redpat = require "redpat"
local core = require "redpat.core"

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
local url = assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not set")

local tests = {}
local function test(name, fn)
    tests[#tests + 1] = { name = name, fn = fn }
end

local function eq(got, want, what)
    if got ~= want then
        error(("%s: got %s, want %s"):format(what or "value", tostring(got), tostring(want)), 2)
    end
end

local function connect(ns)
    return assert(redpat.connect(url, { namespace = ns or "lt" }))
end

local admin = connect("lt")
assert(admin:command("FLUSHALL"))

-- Several cycles: a finalized handle is freed a cycle later, and on LuaJIT (no ephemerons)
-- what a weak-keyed entry's value holds is released one cycle after the key.
local function full_gc()
    for _ = 1, 4 do
        collectgarbage()
    end
end

-- Connections from this process's clients, by name (CLIENT SETNAME is per connection).
local function clients_named(name)
    local list = assert(admin:command("CLIENT", "LIST"))
    local n = 0
    for line in list:gmatch("[^\n]+") do
        if line:find(" name=" .. name .. " ", 1, true) then
            n = n + 1
        end
    end
    return n
end

-- The server sees a closed connection a moment after the client closes it: poll.
local function clients_named_settled(name, want)
    local n
    for _ = 1, 100 do
        n = clients_named(name)
        if n == want then
            break
        end
        core.sleep_ms(10)
    end
    return n
end

local function rss_kb()
    local f = io.open("/proc/self/statm", "r")
    local pages = f:read("*n")
    pages = f:read("*n") -- resident
    f:close()
    return pages * 4
end

-- ---- GC and lifetimes

test("a collected client closes its connection", function()
    local clients = {}
    for i = 1, 20 do
        clients[i] = connect()
        assert(clients[i]:command("CLIENT", "SETNAME", "gc-probe"))
    end
    eq(clients_named("gc-probe"), 20, "open connections")
    clients = nil -- luacheck: ignore
    full_gc()
    eq(clients_named_settled("gc-probe", 0), 0, "connections after GC")
end)

test("a lock handle keeps its client alive after the client handle is collected", function()
    -- each step in its own function: no stale stack slot keeps a handle reachable (LuaJIT)
    local function make()
        local c = connect()
        assert(c:command("CLIENT", "SETNAME", "gc-lock"))
        return { lock = assert(c:lock("keep", { ttl = 5000 })) }
    end
    local holder = make()
    full_gc()
    eq(clients_named("gc-lock"), 1, "connection while the lock lives")
    local function cycle()
        eq(holder.lock:acquire(), true, "acquire")
        eq(holder.lock:release(), true, "release")
    end
    cycle()
    holder.lock = nil
    full_gc()
    eq(clients_named_settled("gc-lock", 0), 0, "connection after the lock is collected")
end)

test("an op keeps its lock alive; ops collected in any order", function()
    local c = connect()
    local lock = assert(c:lock("op-order", { ttl = 5000 }))
    local op = assert(lock:_acquire_op({ token = "tok-" .. ("x"):rep(10) }))
    lock = nil -- luacheck: ignore
    full_gc()
    eq(redpat._run(c, op), true, "acquired through an op whose lock handle is gone")
    eq(admin:command("GET", "lt:lock:{op-order}"), "tok-xxxxxxxxxx", "token stored")
    -- abandoned ops, locks and clients in one heap, collected together
    local junk = {}
    for i = 1, 200 do
        local jc = connect()
        local jl = assert(jc:lock("j" .. i))
        junk[i] = { jc, jl, jl:_acquire_op(), jl:_locked_op(), core.command_op(jc, "PING") }
    end
    junk = nil -- luacheck: ignore
    full_gc()
end)

test("abandoned ops are freed by the collector (memory stays flat)", function()
    local c = connect()
    local lock = assert(c:lock("leak", { ttl = 5000 }))
    local function round()
        for _ = 1, 50000 do
            lock:_acquire_op({ token = ("t"):rep(400) })
            core.command_op(c, "SET", "k", ("v"):rep(300))
        end
        full_gc()
        return rss_kb()
    end
    round()
    local first = round()
    local last
    for _ = 1, 3 do
        last = round()
    end
    -- without __gc every round would keep 100000 ops (tens of MB)
    assert(last - first < 4096, ("RSS grew by %d kB over 3 rounds"):format(last - first))
end)

test("a closed client refuses use; its locks still work", function()
    local c = connect()
    local lock = assert(c:lock("closed", { ttl = 5000 }))
    c:close()
    c:close() -- idempotent
    local ok, msg = pcall(c.command, c, "PING")
    eq(ok, false, "command on a closed client raises")
    assert(tostring(msg):find("closed", 1, true), msg)
    eq(lock:acquire(), true, "the lock handle still holds the core client")
    eq(lock:release(), true, "release")
end)

-- ---- error values

test("not_owned is nil, err with the core's status name", function()
    local c = connect()
    local lock = assert(c:lock("never", { ttl = 1000 }))
    local ok, err = lock:release()
    eq(ok, nil, "release result")
    eq(err.name, "not_owned", "err.name")
    eq(err.code, -7, "err.code")
    assert(type(err.message) == "string" and #err.message > 0, "message")
    eq(tostring(err), "not_owned: " .. err.message, "tostring")
    eq("release: " .. err, "release: not_owned: " .. err.message, "concat")
    local ok2, err2 = lock:extend(1000)
    eq(ok2, nil, "extend result")
    eq(err2.name, "not_owned", "extend err.name")
end)

test("invalid arguments reach the core and come back as invalid_argument", function()
    local c = connect()
    local lock, err = c:lock("x", { ttl = 0 })
    eq(lock, nil, "lock with ttl 0")
    eq(err.name, "invalid_argument", "err.name")
    assert(err.message:find("ttl", 1, true), err.message)
    lock, err = c:lock("", { ttl = 1000 })
    eq(err.name, "invalid_argument", "empty name")
    lock, err = c:lock("x", { ttl = 1.5 })
    eq(err.name, "invalid_argument", "fractional ttl")
    local l = assert(c:lock("x"))
    local a, aerr = l:acquire({ wait = -1 })
    eq(a, nil, "negative wait")
    eq(aerr.name, "invalid_argument", "negative wait name")
    local accepted, ferr = c:fence_check("res", 0)
    eq(accepted, nil, "fence token 0")
    eq(ferr.name, "invalid_argument", "fence token 0 name")
    local bad, uerr = redpat.connect("http://example/", {})
    eq(bad, nil, "bad URL")
    eq(uerr.name, "invalid_argument", "bad URL name")
    bad, uerr = redpat.connect(url, { namespace = "" })
    eq(uerr and uerr.name, "invalid_argument", "empty namespace")
end)

test("wrong argument types raise", function()
    local c = connect()
    eq(pcall(c.lock, c, nil), false, "nil name")
    eq(pcall(c.lock, c, "x", { ttl = "soon" }), false, "string ttl")
    local l = assert(c:lock("x"))
    eq(pcall(l.acquire, l, { token = 42 }), false, "numeric token")
    eq(pcall(c.command, c, "SET", {}, "v"), false, "table argument")
    eq(pcall(redpat.connect, url, { driver = "carrier-pigeon" }), false, "unknown driver")
end)

test("transport and reply failures are nil, err", function()
    local dead = assert(redpat.connect("redis://127.0.0.1:1/0", { connect_timeout = 500 }))
    local l = assert(dead:lock("x"))
    local a, err = l:acquire()
    eq(a, nil, "acquire on a refused connection")
    eq(err.name, "transport", "err.name")
    local c = connect()
    assert(c:command("SET", "lt:str", "x"))
    local v, rerr = c:command("LPUSH", "lt:str", "y")
    eq(v, nil, "error reply")
    eq(rerr.name, "reply", "err.name")
    assert(rerr.message:find("WRONGTYPE", 1, true), rerr.message)
end)

test("a reply slower than command_timeout is a timeout; the client reconnects", function()
    local slow = assert(redpat.connect(url, { namespace = "lt", command_timeout = 100 }))
    local v, err = slow:command("DEBUG", "SLEEP", "0.4")
    eq(v, nil, "slow reply")
    eq(err.name, "timeout", "err.name")
    core.sleep_ms(500)
    eq(slow:command("PING"), "PONG", "next command on a fresh connection")
end)

test("busy is a result, not an error", function()
    local c = connect()
    local a = assert(c:lock("busy", { ttl = 5000 }))
    local b = assert(c:lock("busy", { ttl = 5000 }))
    eq(a:acquire(), true, "a")
    local acquired, fence, attempts = b:acquire({ wait = 30, retry_min = 5, retry_max = 10 })
    eq(acquired, false, "b busy")
    eq(fence, 0, "fence")
    assert(attempts >= 2, "retried: " .. tostring(attempts))
    eq(b:token(), nil, "b holds no token")
    eq(a:release(), true, "release a")
    eq(b:acquire({ wait = math.huge }), true, "wait forever on a free lock")
    eq(b:release(), true, "release b")
end)

-- ---- binary strings

test("lock names, tokens and resources with NUL, CRLF and non-UTF-8 bytes", function()
    local c = connect("lt")
    local name, token = "a\0b\r\n\255", "t\0k\r\n\254"
    local l = assert(c:lock(name, { ttl = 5000, fenced = true }))
    local acquired, fence = l:acquire({ token = token })
    eq(acquired, true, "acquired")
    assert(fence > 0, "fence")
    eq(l:token(), token, "token()")
    eq(l:name(), name, "name()")
    eq(l:fence(), fence, "fence()")
    eq(admin:command("GET", "lt:lock:{" .. name .. "}"), token, "stored token")
    local other = assert(c:lock("a\0c\r\n\255", { ttl = 5000 }))
    eq(other:acquire(), true, "a name differing after NUL is another lock")
    eq(other:release(), true, "release other")
    eq(l:owned(), true, "owned")
    eq(l:release(), true, "release")
    local accepted, highest = c:fence_check("r\0es", fence)
    eq(accepted, true, "fence accepted")
    eq(highest, fence, "highest")
    eq(admin:command("GET", "lt:fence:{r\0es}"), tostring(fence), "fence record key")
end)

test("raw commands are binary-safe and map replies", function()
    local c = connect()
    local v = "x\0y\r\n\128"
    eq(c:command("SET", "lt:bin", v), "OK", "status reply")
    eq(c:command("GET", "lt:bin"), v, "bulk reply")
    eq(c:command("GET", "lt:missing"), redpat.null, "nil reply")
    eq(c:command("INCRBY", "lt:n", 41), 41, "integer reply (numeric argument)")
    local arr = c:command("MGET", "lt:bin", "lt:missing", "lt:n")
    eq(#arr, 3, "array size")
    eq(arr[1], v, "array[1]")
    eq(arr[2], redpat.null, "array[2] is null")
    eq(arr[3], "41", "array[3]")
    local args = { "RPUSH", "lt:list" }
    for i = 1, 40 do
        args[#args + 1] = "e" .. i
    end
    local unpack = table.unpack or unpack -- luacheck: ignore
    eq(c:command(unpack(args)), 40, "40-argument command")
end)

-- ---- scoped use

test("lock:with releases on return and on error", function()
    local c = connect()
    local l = assert(c:lock("with", { ttl = 5000 }))
    local ok, a, b = l:with(nil, function(x, y)
        eq(l:owned(), true, "owned inside")
        return x + y, "z"
    end, 1, 2)
    eq(ok, true, "with result")
    eq(a, 3, "fn result 1")
    eq(b, "z", "fn result 2")
    eq(l:locked(), false, "released after with")
    local pok, perr = pcall(l.with, l, nil, function()
        error("boom", 0)
    end)
    eq(pok, false, "error propagates")
    eq(perr, "boom", "error value")
    eq(l:locked(), false, "released after an error")
    local other = assert(c:lock("with", { ttl = 5000 }))
    assert(other:acquire())
    eq(l:with(nil, function() end), false, "busy: fn not called")
    assert(other:release())
end)

if _VERSION >= "Lua 5.4" then
    test("<close> releases a held lock at scope exit and reports a lost one", function()
        local c = connect()
        local scoped = assert(load([[
            local c, name, ttl, pause = ...
            local l <close> = assert(c:lock(name, { ttl = ttl }))
            assert(l:acquire())
            assert(l:locked())
            if pause then pause() end
        ]]))
        scoped(c, "closing", 5000)
        local probe = assert(c:lock("closing"))
        eq(probe:locked(), false, "released by __close")
        local ok, err = pcall(scoped, c, "lost", 50, function()
            core.sleep_ms(120)
        end)
        eq(ok, false, "a lost lock raises at scope exit")
        eq(type(err) == "table" and err.name, "not_owned", "raised error")
    end)
end

local passed, failed = 0, 0
for _, t in ipairs(tests) do
    local ok, err = pcall(t.fn)
    if ok then
        passed = passed + 1
        print("ok   " .. t.name)
    else
        failed = failed + 1
        print("FAIL " .. t.name .. ": " .. tostring(err))
    end
end
print(("lua-tests[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
