-- Lua-specific tests of the redpat rock (blocking driver): handle GC and lifetimes, errors
-- as `nil, err, detail` (err a status name string, detail its table), binary strings with
-- NUL bytes, scoped use (lock:with, and <close> on Lua 5.4), bad input in Lua's words
-- (unknown option names, wrong types), the descriptor-made API.
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

-- A blocking sleep (plain Lua has none; the rock exports only the core's clock).
local function sleep_ms(ms)
    os.execute(("sleep %.3f"):format(ms / 1000))
end

-- A failure as the library returns one: nil, err (the status name, a string), detail (a
-- table {name = err, message, code} printing as "name: message"). Returns the detail.
local function failed(want, what, result, err, detail, ...)
    if result ~= nil then
        error(("%s: expected nil, %s, detail; got the result %s"):format(what, want, tostring(result)), 2)
    end
    if select("#", ...) > 0 then
        error(what .. ": more than nil, err, detail", 2)
    end
    if type(err) ~= "string" or err ~= want then
        error(("%s: err = %s (%s), want the string %q"):format(what, tostring(err), type(err), want), 2)
    end
    if type(detail) ~= "table" or detail.name ~= err or type(detail.message) ~= "string"
        or math.type and math.type(detail.code) ~= "integer" or detail.code ~= core.status[err] then
        error(what .. ": detail is not {name = err, message, code}: " .. tostring(detail), 2)
    end
    if tostring(detail) ~= (detail.message == "" and err or err .. ": " .. detail.message) then
        error(what .. ": tostring(detail) = " .. tostring(detail), 2)
    end
    return detail
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
        sleep_ms(10)
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
    local op = assert(redpat.begin("lock.acquire", lock, { token = "tok-" .. ("x"):rep(10) }))
    lock = nil -- luacheck: ignore
    full_gc()
    eq(assert(redpat.run(op)).acquired, true, "acquired through an op whose lock handle is gone")
    eq(admin:command("GET", "lt:lock:{op-order}"), "tok-xxxxxxxxxx", "token stored")
    -- abandoned ops, locks and clients in one heap, collected together
    local junk = {}
    for i = 1, 200 do
        local jc = connect()
        local jl = assert(jc:lock("j" .. i))
        junk[i] = { jc, jl, redpat.begin("lock.acquire", jl), redpat.begin("lock.locked", jl),
                    redpat.begin("client.command", jc, { argv = { "PING" } }) }
    end
    junk = nil -- luacheck: ignore
    full_gc()
end)

test("close() frees a handle once no op borrows it; a closed handle refuses use", function()
    local c = connect()
    local l = assert(c:lock("close-borrowed", { ttl = 5000 }))
    local op = assert(redpat.begin("lock.acquire", l, { token = "tok-close" }))
    l:close()
    eq(l:_closed(), true, "closed")
    local ok, err = pcall(l.acquire, l)
    eq(ok, false, "a closed lock raises")
    assert(tostring(err):find("closed", 1, true), tostring(err))
    -- the op still holds the core's lock: it runs, then lets it go
    eq(assert(redpat.run(op)).acquired, true, "the borrowed lock still works")
    eq(admin:command("GET", "lt:lock:{close-borrowed}"), "tok-close", "acquired in Redis")
    l:close() -- idempotent
    full_gc()
end)

test("abandoned ops are freed by the collector (memory stays flat)", function()
    local c = connect()
    local lock = assert(c:lock("leak", { ttl = 5000 }))
    local limiter = assert(c:ratelimiter("leak", { limit = 5, window = 1000 }))
    local other = assert(c:ratelimiter("leak2", { limit = 5, window = 1000 })) -- one name once
    local subject, subjects = ("s"):rep(300), { ("a"):rep(100), ("b"):rep(100) }
    local function round()
        for _ = 1, 50000 do
            redpat.begin("lock.acquire", lock, { token = ("t"):rep(400) })
            redpat.begin("client.command", c, { argv = { "SET", "k", ("v"):rep(300) } })
            redpat.begin("ratelimit.check", limiter, { subject = subject })
            redpat.begin("ratelimit.batch", limiter, { subjects = subjects })
            redpat.begin("ratelimit.multi", { limiter, other }, { subject = subject })
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
    -- without __gc every round would keep 250000 ops (tens of MB)
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

-- ---- errors: nil, err, detail

test("not_owned is nil, \"not_owned\", detail; err is a plain string", function()
    local c = connect()
    local lock = assert(c:lock("never", { ttl = 1000 }))
    local ok, err, detail = lock:release()
    eq(ok, nil, "release result")
    eq(type(err), "string", "err is a string")
    eq(err == "not_owned", true, "err == \"not_owned\"")
    eq(detail.name, "not_owned", "detail.name")
    eq(detail.code, core.status.not_owned, "detail.code")
    eq(detail.code, -7, "detail.code is the rp_status")
    assert(type(detail.message) == "string" and #detail.message > 0, "message")
    eq(tostring(detail), "not_owned: " .. detail.message, "tostring(detail)")
    eq("release: " .. err, "release: not_owned", "err concatenates as the name")
    eq("release: " .. detail, "release: not_owned: " .. detail.message, "detail concatenates")
    failed("not_owned", "extend", lock:extend(1000))
end)

test("a lost lock: release and extend are nil, \"not_owned\", detail", function()
    local c = connect()
    local lock = assert(c:lock("lost", { ttl = 50 }))
    eq(lock:acquire(), true, "acquired for 50 ms")
    sleep_ms(150)
    eq(admin:command("EXISTS", "lt:lock:{lost}"), 0, "expired in Redis")
    local ok, err, detail = lock:release()
    eq(ok, nil, "release of a lost lock")
    eq(err, "not_owned", "err")
    failed("not_owned", "release", ok, err, detail)
    eq(tostring(detail), "not_owned: " .. detail.message, "tostring(detail)")
    assert(detail.message:find("no longer owned", 1, true), detail.message)
    local other = assert(c:lock("lost", { ttl = 5000 }))
    eq(lock:acquire(), true, "acquired again")
    sleep_ms(10)
    assert(admin:command("DEL", "lt:lock:{lost}"))
    eq(other:acquire(), true, "someone else holds it now")
    local e = failed("not_owned", "extend of a lock another holder took", lock:extend(1000))
    eq("extend: " .. e, "extend: not_owned: " .. e.message, "concatenation")
    assert(other:release())
    -- lock:with passes the triple on when the lock is lost while fn runs
    local w = assert(c:lock("lost-with", { ttl = 50 }))
    local r1, r2, r3 = w:with(nil, function()
        sleep_ms(150)
        return "done"
    end)
    eq(r1, nil, "with: lost")
    eq(r2, "not_owned", "with: err")
    eq(r3 and r3.name, "not_owned", "with: detail")
    failed("not_owned", "with", r1, r2, r3)
end)

test("a reply slower than command_timeout: nil, \"timeout\", detail", function()
    local port = assert(os.getenv("REDPAT_TEST_PORT"), "REDPAT_TEST_PORT is not set")
    local slow = assert(redpat.connect(url, { namespace = "lt", command_timeout = 100 }))
    local lock = assert(slow:lock("slow", { ttl = 5000 }))
    -- another connection puts the whole server to sleep for 0.6 s
    assert(os.execute("redis-cli -p " .. port .. " DEBUG SLEEP 0.6 >/dev/null 2>&1 &"))
    sleep_ms(100)
    local t0 = core.monotonic_ms()
    local acquired, err, detail = lock:acquire()
    local waited = core.monotonic_ms() - t0
    eq(acquired, nil, "acquire while Redis sleeps")
    eq(err == "timeout", true, "err == \"timeout\" (got " .. tostring(err) .. ")")
    failed("timeout", "acquire", acquired, err, detail)
    eq(tostring(detail), "timeout: " .. detail.message, "tostring(detail)")
    eq("acquire failed: " .. detail, "acquire failed: timeout: " .. detail.message, "concat")
    assert(waited < 450, ("answered after %d ms, not within the command timeout"):format(waited))
    sleep_ms(700)
    eq(slow:command("PING"), "PONG", "a fresh connection once Redis is back")
end)

test("invalid arguments reach the core and come back as invalid_argument", function()
    local c = connect()
    local d = failed("invalid_argument", "ttl 0", c:lock("x", { ttl = 0 }))
    assert(d.message:find("ttl", 1, true), d.message)
    failed("invalid_argument", "empty name", c:lock("", { ttl = 1000 }))
    failed("invalid_argument", "fractional ttl", c:lock("x", { ttl = 1.5 }))
    d = failed("invalid_argument", "nil name", c:lock(nil))
    eq(d.message, "name is required", "a required argument left out")
    local l = assert(c:lock("x"))
    failed("invalid_argument", "negative wait", l:acquire({ wait = -1 }))
    failed("invalid_argument", "fence token 0", c:fence_check("res", 0))
    failed("invalid_argument", "bad URL", redpat.connect("http://example/", {}))
    failed("invalid_argument", "empty namespace", redpat.connect(url, { namespace = "" }))
end)

test("wrong argument types raise", function()
    local c = connect()
    eq(pcall(c.lock, c, "x", { ttl = "soon" }), false, "string ttl")
    local l = assert(c:lock("x"))
    eq(pcall(l.acquire, l, { token = 42 }), false, "numeric token")
    eq(pcall(c.command, c, "SET", {}, "v"), false, "table argument")
    eq(pcall(redpat.connect, url, { driver = "carrier-pigeon" }), false, "unknown driver")
end)

-- ---- bad input in Lua's words: the core's names, milliseconds, Lua's type names

-- The message a call raises (a string: a wrong call, no correct program makes it).
local function raises(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then
        error("did not raise", 2)
    end
    if type(err) ~= "string" then
        error("raised " .. tostring(err) .. " (" .. type(err) .. "), not a string", 2)
    end
    return err
end

test("command's trailing options table: key (routes on a cluster) changes nothing on one node", function()
    local c = connect()
    eq(c:command("SET", "lt:keyed", "v", { key = "{elsewhere}" }), "OK", "SET with a key")
    eq(c:command("GET", "lt:keyed", { key = "lt:keyed" }), "v", "GET with its own key")
    eq(c:command("EXISTS", "lt:keyed", { key = "" }), 1, "an empty key")
    local msg = raises(c.command, c, "PING", { kee = "x" })
    assert(msg:find("unknown option 'kee'", 1, true), msg)
end)

-- The message of an invalid_argument failure (nil, "invalid_argument", detail).
local function message(...)
    return failed("invalid_argument", "bad input", ...).message
end

test("an unknown option name raises, naming it and the valid ones", function()
    local c = connect()
    eq(raises(c.lock, c, "x", { tll = 5 }), "unknown option 'tll' (valid: ttl, fenced)", "lock")
    eq(raises(redpat.connect, url, { namepsace = "x" }),
        "unknown option 'namepsace' (valid: namespace, connect_timeout, command_timeout, "
        .. "tcp_keepalive, max_reply_size, tls_ca_file, tls_cert_file, tls_key_file, "
        .. "tls_server_name, tls_verify, driver, pool, pool_size, backlog, keepalive_timeout)",
        "connect")
    local l = assert(c:lock("unknown-opt"))
    eq(raises(l.acquire, l, { wiat = 100 }),
        "unknown option 'wiat' (valid: wait, retry_min, retry_max, token)", "acquire")
    -- a positional argument is not also an option
    eq(raises(c.lock, c, "x", { name = "y" }), "unknown option 'name' (valid: ttl, fenced)",
        "lock's name in its options")
    eq(raises(c.ratelimiter, c, "x", { limt = 5, window = 1000 }),
        "unknown option 'limt' (valid: algorithm, limit, window, burst, on_error)", "ratelimiter")
    -- the generic op API takes every argument by name
    eq(raises(redpat.perform, "lock.new", c, { name = "x", tll = 1 }),
        "unknown option 'tll' (valid: name, ttl, fenced)", "perform")
    assert(raises(l.acquire, l, { 5 }):find("option names must be strings", 1, true), "key 1")
    eq(l:locked(), false, "nothing was sent")
end)

test("err compares and concatenates as a string; detail prints as \"name: message\"", function()
    local c = connect()
    local l = assert(c:lock("concat", { ttl = 1000 }))
    local ok, err, detail = l:release()
    eq(ok, nil, "release of a lock never held")
    eq(err, "not_owned", "err is the core's status name")
    eq(err == "not_owned" and err ~= "timeout", true, "compares as a string")
    eq(err .. "!", "not_owned!", "concatenates as a string")
    eq(("%s"):format(err), "not_owned", "formats as a string")
    eq(detail.name, err, "detail.name")
    eq(detail.code, -7, "detail.code, the rp_status")
    assert(type(detail.message) == "string" and #detail.message > 0, "detail.message")
    local text = "not_owned: " .. detail.message
    eq(tostring(detail), text, "tostring(detail)")
    eq("release: " .. detail, "release: " .. text, "string .. detail")
    eq(detail .. " (retrying)", text .. " (retrying)", "detail .. string")
    eq(1 .. detail, "1" .. text, "number .. detail")
    eq(detail .. detail, text .. text, "detail .. detail")
    -- assert(f()) raises err, the status name, as with lua-resty-* libraries
    local aok, raised = pcall(function()
        return assert(l:release())
    end)
    eq(aok, false, "assert raises")
    -- (Lua 5.4's assert adds the position, LuaJIT's does not)
    assert(type(raised) == "string" and (raised == "not_owned" or raised:find(": not_owned$")),
        "assert raises err: " .. tostring(raised))
    -- redpat.error(...) makes the same triple, for code that wraps redpat's operations
    local none, merr, made = redpat.error("timeout", "took too long")
    eq(none, nil, "redpat.error: nil first")
    eq(merr, "timeout", "redpat.error: err")
    eq(made.code, -4, "made.code")
    eq("op: " .. made, "op: timeout: took too long", "made concatenates")
    local _, _, bare = redpat.error("cancelled")
    eq(tostring(bare), "cancelled", "no message: the name alone")
end)

test("bad input is nil, err, detail (or raises, for a wrong Lua type) in Lua's words", function()
    local c = connect()
    -- the core's checks: its names, milliseconds
    eq(message(c:lock("x", { ttl = -1 })), "ttl must be > 0 ms (got -1)", "negative ttl")
    eq(message(c:lock("x", { ttl = 0 })), "ttl must be > 0 ms (got 0)", "zero ttl")
    eq(message(c:lock("", {})), "name must not be empty", "empty name")
    local l = assert(c:lock("words"))
    local m = message(l:acquire({ wait = -1 }))
    assert(m:find("^wait ") and m:find(" ms ", 1, true), m)
    m = message(l:acquire({ wait = 100, retry_min = 50, retry_max = 10 }))
    assert(m:find("^retry_max must be >= retry_min") and m:find("ms", 1, true), m)
    eq(message(l:extend(0)), "ms must be > 0 ms (got 0)", "extend by 0")
    m = message(c:ratelimiter("x", { algorithm = "leaky", limit = 5, window = 1000 }))
    eq(m, 'algorithm must be one of fixed_window, sliding_log, sliding_window, token_bucket, '
        .. 'gcra (got "leaky")', "unknown algorithm")
    m = message(c:fence_check("res", 0))
    assert(m:find("^token must be > 0"), m)
    -- math.huge is forever where the core allows it, out of bounds elsewhere
    m = message(c:lock("x", { ttl = math.huge }))
    assert(m:find("^ttl must be <= %d+ ms"), m)
    eq(l:acquire({ wait = math.huge }), true, "wait = math.huge on a free lock")
    assert(l:release())
    -- numbers the core cannot take as integers: nil, err from the glue, same words
    eq(message(c:lock("x", { ttl = 1.5 })), "ttl must be an integer number of ms (got 1.5)",
        "fractional ttl")
    local r = assert(c:ratelimiter("words", { limit = 2, window = 1000 }))
    eq(message(r:check("u", 0.5)), "cost must be an integer (got 0.5)", "fractional cost")
    eq(message(r:batch({ "a", "b" }, { 1, 1.5 })), "costs[2] must be an integer (got 1.5)",
        "list items count from 1")
    eq(message(r:batch({ "a", "" })), "subjects[2] must not be empty", "also in the core's checks")
    -- a wrong Lua type raises, naming the argument and the Lua type given
    eq(raises(c.lock, c, "x", { ttl = "soon" }), "ttl must be an integer number of ms (got string)",
        "string ttl")
    eq(message(c:lock(nil)), "name is required", "required positional left out")
    eq(raises(l.acquire, l, { token = 42 }), "token must be a string (got number)", "numeric token")
    eq(raises(c.lock, c, "x", { fenced = 1 }), "fenced must be a boolean (got number)", "bool")
    eq(raises(r.batch, r, { "a", 2 }), "subjects[2] must be a string (got number)", "list item")
    eq(raises(c.ratelimit_multi, c, { r, "x" }, "u"),
        "limiters[2] must be a redpat ratelimit (got string)", "a string among the limiters")
    -- a boolean is not an integer (Python's bool is an int: refused there too)
    eq(raises(r.check, r, "u", true), "cost must be an integer (got boolean)", "boolean cost")
    eq(raises(c.ratelimiter, c, "b", { limit = true, window = 1000 }),
        "limit must be an integer (got boolean)", "boolean limit")
    eq(raises(r.batch, r, { "a", "b" }, { 1, false }), "costs[2] must be an integer (got boolean)",
        "boolean cost in a list")
    -- the same limiter twice in one multi check, counted from 1 as Lua counts
    eq(message(c:ratelimit_multi({ r, assert(c:ratelimiter("w2", { limit = 2, window = 1000 })), r }, "u")),
        'limiters[3] is the same limiter as limiters[1] (name "words"): one check cannot count it twice',
        "the same limiter twice")
    eq(raises(c.ratelimiter, c, "x", { algorithm = 1, limit = 5, window = 1000 }),
        "algorithm must be a string (got number)", "enum by name")
    eq(admin:command("EXISTS", "lt:lock:{x}", "lt:rl:words:{u}"), 0, "nothing reached Redis")
end)

test("the API is made from the core's descriptor table", function()
    local c = connect()
    local D = redpat.descriptors
    assert(#D >= 17, "descriptors: " .. #D)
    for i, d in ipairs(D) do
        eq(D[d.name], d, "by name: " .. d.name)
        assert(type(d.verb) == "string" and d.shape and d.args and d.fields, d.name)
        eq(i, i, d.name)
    end
    local new = D["lock.new"]
    eq(new.makes, "lock", "lock.new makes a lock")
    eq(new.args[1].self and new.args[1].kind, "client", "on a client")
    eq(new.arg.ttl.type, "ms", "ttl is ms")
    eq(new.arg.name.required, true, "name is required")
    eq(D["ratelimit.new"].arg.algorithm.type, "enum", "algorithm is an enum")
    eq(D["ratelimit.batch"].shape, "list", "batch: a list of records")
    eq(D["ratelimit.check"].field.refused_by.type, "int", "fields by name")
    eq(D["lock.info"].io, false, "lock.info answers from the handle")
    -- methods from the table: a one-field record is its value, an io-free op's fields are
    -- accessors, other records are tables
    local l = assert(c:lock("desc", { ttl = 4000, fenced = true }))
    local info = l:info()
    eq(info.name, "desc", "lock:info().name")
    eq(info.ttl, 4000, "lock:info().ttl")
    eq(info.fenced, true, "lock:info().fenced")
    eq(info.token, nil, "no token when not held")
    eq(l:ttl(), 4000, "accessor")
    local acquired, fence = l:acquire()
    eq(acquired, true, "acquire")
    eq(l:fence(), fence, "lock:fence()")
    eq(l:token(), l:info().token, "lock:token()")
    eq(l:owned(), true, "one-field record: its value")
    local rem = assert(l:remaining())
    eq(rem.owned, true, "lock:remaining(): a record table")
    assert(rem.remaining > 0 and rem.remaining <= 4000, "remaining " .. tostring(rem.remaining))
    assert(l:release())
    -- a client made by the generic API is its own client
    local pc = assert(redpat.perform("client.new", nil, { url = url, namespace = "lt" }))
    eq(pc:client(), pc, "client:client()")
    eq(assert(pc:lock("pc")):client(), pc, "its lock's client")
    pc:close()
    local r = assert(c:ratelimiter("desc", { algorithm = "token_bucket", limit = 5, window = 1000,
                                             burst = 2 }))
    local ri = r:info()
    eq(ri.algorithm, "token_bucket", "limiter:info().algorithm")
    eq(ri.on_error, "report", "limiter:info().on_error")
    eq(r:burst(), 2, "limiter:burst()")
    eq(r:client(), c, "limiter:client()")
    eq(l:client(), c, "lock:client()")
    -- redpat.perform gives the core's records as they are (0-based indexes, -1: none)
    eq(redpat.perform("ratelimit.check", r, { subject = "u" }).refused_by, -1, "perform: raw")
    eq(r:check("u").refused_by, nil, "method: Lua's idiom")
    eq(redpat.perform("lock.owned", l).value, false, "perform: a record table")
    eq(redpat.perform("ratelimit.reset", r, { subject = "u" }), true, "perform: no result")
    eq(pcall(redpat.perform, "lock.nope", l), false, "an op the core does not describe")
end)

test("transport and reply failures are nil, err, detail", function()
    local dead = assert(redpat.connect("redis://127.0.0.1:1/0", { connect_timeout = 500 }))
    local l = assert(dead:lock("x"))
    failed("transport", "acquire on a refused connection", l:acquire())
    local c = connect()
    assert(c:command("SET", "lt:str", "x"))
    local d = failed("reply", "error reply", c:command("LPUSH", "lt:str", "y"))
    assert(d.message:find("WRONGTYPE", 1, true), d.message)
    -- an error reply inside an array is a detail in it
    local arr = assert(c:command("EVAL", "return {1, redis.error_reply('boom')}", "0"))
    eq(arr[1], 1, "array[1]")
    eq(getmetatable(arr[2]), core.metatables.error, "array[2] is a detail")
    eq(arr[2].name, "reply", "array[2].name")
    assert(arr[2].message:find("boom", 1, true), arr[2].message)
    eq(tostring(arr[2]), "reply: " .. arr[2].message, "array[2] prints")
end)

test("a refused password is nil, \"auth\", detail with Redis' words (issue 11, item 6)", function()
    assert(admin:command("ACL", "SETUSER", "lt-user", "on", ">right", "~*", "+@all"))
    local cases = {
        { url:gsub("^redis://", "redis://:nope@"), "without any password configured" },
        { url:gsub("^redis://", "redis://lt-user:wrong@"), "WRONGPASS" },
    }
    for _, case in ipairs(cases) do
        local c = assert(redpat.connect(case[1], { namespace = "lt" }))
        local d = failed("auth", "command with " .. case[2], c:command("PING"))
        assert(d.message:find(case[2], 1, true), d.message)
        assert(not d.message:find("nope", 1, true) and not d.message:find("wrong", 1, true),
               "the password is not in the message: " .. d.message)
        local l = assert(c:lock("x"))
        failed("auth", "acquire with " .. case[2], l:acquire())
    end
    local ok = assert(redpat.connect((url:gsub("^redis://", "redis://lt-user:right@")), { namespace = "lt" }))
    eq(ok:command("PING"), "PONG", "the right password")
    assert(admin:command("ACL", "DELUSER", "lt-user"))
end)

test("a reply slower than command_timeout is a timeout; the client reconnects", function()
    local slow = assert(redpat.connect(url, { namespace = "lt", command_timeout = 100 }))
    local d = failed("timeout", "slow reply", slow:command("DEBUG", "SLEEP", "0.4"))
    eq(tostring(d), "timeout: " .. d.message, "tostring(detail)")
    sleep_ms(500)
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
            sleep_ms(120)
        end)
        eq(ok, false, "a lost lock raises at scope exit")
        eq(getmetatable(err), core.metatables.error, "it raises the detail")
        eq(err.name, "not_owned", "raised detail.name")
        eq(tostring(err), "not_owned: " .. err.message, "raised detail prints")
    end)
end

if _VERSION >= "Lua 5.4" then
    test("<close> on a client closes it; its locks keep working", function()
        local scoped = assert(load([[
            local redpat, url = ...
            local c <close> = assert(redpat.connect(url, { namespace = "lt" }))
            return c, assert(c:lock("client-close", { ttl = 5000 }))
        ]]))
        local c, l = scoped(redpat, url)
        eq(c:_closed(), true, "closed at scope exit")
        eq(pcall(c.command, c, "PING"), false, "a closed client refuses use")
        eq(l:acquire(), true, "its lock still works")
        eq(l:release(), true, "release")
    end)
end

-- ---- rate limiters

local is_integer = math.type and function(v)
    return math.type(v) == "integer"
end or function(v)
    return type(v) == "number" and v == math.floor(v)
end

local DECISION_FIELDS = { "limit", "remaining", "retry_after", "reset_after" }

local function check_decision(d, what)
    eq(type(d), "table", what .. ": decision type")
    eq(type(d.allowed), "boolean", what .. ": allowed type")
    eq(type(d.degraded), "boolean", what .. ": degraded type")
    for _, f in ipairs(DECISION_FIELDS) do
        assert(is_integer(d[f]) and d[f] >= 0,
            ("%s: %s = %s is not a non-negative integer"):format(what, f, tostring(d[f])))
    end
end

test("rate limit decisions are tables of integer milliseconds", function()
    local c = connect("lr")
    local l = assert(c:ratelimiter("dec", { algorithm = "fixed_window", limit = 3,
                                            window = 10000 }))
    eq(l:client(), c, "limiter:client()")
    local d = assert(l:check("u"))
    check_decision(d, "first")
    eq(d.allowed, true, "allowed")
    eq(d.limit, 3, "limit")
    eq(d.remaining, 2, "remaining")
    eq(d.retry_after, 0, "retry_after when allowed")
    assert(d.reset_after > 9000 and d.reset_after <= 10000, "reset_after " .. d.reset_after)
    eq(d.degraded, false, "degraded")
    eq(d.refused_by, nil, "no refused_by on a single check")
    eq(d.error, nil, "no error when not degraded")
    eq(l:check("u", 2).remaining, 0, "cost 2")
    local refused = assert(l:check("u"))
    check_decision(refused, "refused")
    eq(refused.allowed, false, "refused")
    assert(refused.retry_after > 9000 and refused.retry_after <= 10000,
        "retry_after " .. refused.retry_after)
    eq(l:check("u", 0).remaining, 0, "cost 0 peeks")
    eq(l:reset("u"), true, "reset")
    eq(l:check("u", 0).remaining, 3, "after reset")
    -- token bucket: burst is the decision's limit
    local tb = assert(c:ratelimiter("tb", { algorithm = "token_bucket", limit = 10, window = 1000,
                                            burst = 4 }))
    local td = assert(tb:check("u", 4))
    eq(td.limit, 4, "token bucket limit is the burst")
    eq(td.remaining, 0, "bucket drained")
    local t2 = assert(tb:check("u"))
    eq(t2.allowed, false, "empty bucket refuses")
    assert(t2.retry_after >= 1 and t2.retry_after <= 100,
        "refill in about 100 ms: " .. t2.retry_after)
end)

test("multi: refused_by is the 1-based index of the refusing limiter; nothing consumed", function()
    local c = connect("lr")
    local fast = assert(c:ratelimiter("m-fast", { algorithm = "gcra", limit = 5, window = 10000 }))
    local slow = assert(c:ratelimiter("m-slow", { algorithm = "sliding_log", limit = 2,
                                                  window = 60000 }))
    local d = assert(c:ratelimit_multi({ fast, slow }, "u"))
    check_decision(d, "multi")
    eq(d.allowed, true, "allowed")
    eq(d.refused_by, nil, "refused_by when allowed")
    eq(d.limit, 2, "the limit with least remaining")
    eq(d.remaining, 1, "remaining")
    assert(c:ratelimit_multi({ fast, slow }, "u"))
    local r = assert(c:ratelimit_multi({ fast, slow }, "u"))
    eq(r.allowed, false, "third refused")
    eq(r.refused_by, 2, "refused by the second limiter")
    eq(r.limit, 2, "the refusing limit's numbers")
    eq(fast:check("u", 0).remaining, 3, "the refusal took nothing from the first limiter")
    -- limiters of another client are refused before any I/O
    local other = connect("lr")
    local foreign = assert(other:ratelimiter("m-x", { limit = 5, window = 1000 }))
    local d2 = failed("invalid_argument", "foreign limiter", c:ratelimit_multi({ fast, foreign }, "u"))
    assert(d2.message:find("limiters", 1, true), d2.message)
    failed("invalid_argument", "no limiters", c:ratelimit_multi({}, "u"))
end)

test("batch: a list of decisions in subject order, one round trip", function()
    local c = connect("lr")
    local l = assert(c:ratelimiter("batch", { algorithm = "sliding_window", limit = 2,
                                              window = 10000 }))
    local list = assert(l:batch({ "a", "b", "a", "a" }))
    eq(#list, 4, "decisions")
    for i, d in ipairs(list) do
        check_decision(d, "batch " .. i)
    end
    eq(list[1].allowed and list[2].allowed and list[3].allowed, true, "first three allowed")
    eq(list[4].allowed, false, "fourth refused")
    eq(list[3].remaining, 0, "a exhausted")
    local costed = assert(l:batch({ "b", "c" }, { 1, 2 }))
    eq(costed[1].remaining, 0, "b cost 1")
    eq(costed[2].remaining, 0, "c cost 2")
    -- one round trip: the server sees one EVALSHA per check, in one connection read
    assert(admin:command("CONFIG", "RESETSTAT"))
    assert(l:batch({ "x1", "x2", "x3", "x4", "x5" }))
    local stats = assert(admin:command("INFO", "commandstats"))
    local calls = tonumber(stats:match("cmdstat_evalsha:calls=(%d+)"))
    eq(calls, 5, "EVALSHA calls")
end)

test("rate limiter bad input is invalid_argument naming the argument", function()
    local c = connect("lr")
    local function bad(what, word, ...)
        local d = failed("invalid_argument", what, ...)
        assert(d.message:find(word, 1, true), what .. ": message lacks " .. word .. ": " .. d.message)
    end
    bad("limit 0", "limit", c:ratelimiter("x", { limit = 0, window = 1000 }))
    bad("no limit", "limit", c:ratelimiter("x", { window = 1000 }))
    bad("fractional limit", "limit", c:ratelimiter("x", { limit = 1.5, window = 1000 }))
    bad("window 0", "window", c:ratelimiter("x", { limit = 1, window = 0 }))
    bad("fractional window", "window", c:ratelimiter("x", { limit = 1, window = 0.5 }))
    bad("burst on fixed window", "burst",
        c:ratelimiter("x", { algorithm = "fixed_window", limit = 5, window = 1000, burst = 3 }))
    bad("negative burst", "burst",
        c:ratelimiter("x", { algorithm = "gcra", limit = 5, window = 1000, burst = -1 }))
    bad("unknown algorithm", "algorithm",
        c:ratelimiter("x", { algorithm = "leaky", limit = 5, window = 1000 }))
    local _, _, adetail = c:ratelimiter("x", { algorithm = "leaky", limit = 5, window = 1000 })
    assert(adetail.message:find("leaky", 1, true), "the given name is quoted: " .. adetail.message)
    bad("unknown on_error", "on_error",
        c:ratelimiter("x", { limit = 5, window = 1000, on_error = "maybe" }))
    bad("empty name", "name", c:ratelimiter("", { limit = 5, window = 1000 }))
    bad("hash tag in name", "name", c:ratelimiter("a{b}", { limit = 5, window = 1000 }))
    bad("NUL in name", "name", c:ratelimiter("a\0b", { limit = 5, window = 1000 }))
    local l = assert(c:ratelimiter("x", { algorithm = "token_bucket", limit = 5, window = 1000,
                                          burst = 3 }))
    bad("cost above the burst", "cost", l:check("u", 4))
    bad("negative cost", "cost", l:check("u", -1))
    bad("fractional cost", "cost", l:check("u", 0.5))
    bad("empty subject", "subject", l:check(""))
    bad("subject too long", "subject", l:check(("s"):rep(65537)))
    bad("empty subject on reset", "subject", l:reset(""))
    bad("empty batch", "subject", l:batch({}))
    bad("costs not one per subject", "costs", l:batch({ "a", "b" }, { 1 }))
    bad("fractional batch cost", "costs[2]", l:batch({ "a", "b" }, { 1, 1.5 }))
    bad("batch cost above the burst", "cost", l:batch({ "a", "b" }, { 1, 9 }))
    bad("multi cost above a limit", "cost", c:ratelimit_multi({ l }, "u", 4))
    -- nothing reached Redis
    eq(admin:command("EXISTS", "lr:rl:x:{u}", "lr:rl:x:{a}"), 0, "no keys written")
end)

test("rate limiter wrong argument types raise", function()
    local c = connect("lr")
    eq(pcall(c.ratelimiter, c, 1, { limit = 1, window = 1 }), false, "numeric name")
    eq(pcall(c.ratelimiter, c, "x", { algorithm = 1, limit = 1, window = 1 }), false,
        "numeric algorithm")
    eq(pcall(c.ratelimiter, c, "x", { limit = "ten", window = 1 }), false, "string limit")
    eq(pcall(c.ratelimiter, c, "x", "fixed_window"), false, "options not a table")
    local l = assert(c:ratelimiter("x", { limit = 5, window = 1000 }))
    eq(pcall(l.check, l, {}), false, "table subject")
    failed("invalid_argument", "nil subject: the core says it is required", l:check(nil))
    eq(pcall(l.check, l, "u", "1"), false, "string cost")
    eq(pcall(l.batch, l, { "a", 2 }), false, "numeric subject in a batch")
    eq(pcall(l.batch, l, "a"), false, "subjects not a table")
    eq(pcall(c.ratelimit_multi, c, { l, "x" }, "u"), false, "a string among the limiters")
end)

test("Redis down: report is nil, err; fail_open allows, fail_closed refuses, degraded", function()
    local dead = assert(redpat.connect("redis://127.0.0.1:1/0",
                                       { namespace = "lr", connect_timeout = 500 }))
    local report = assert(dead:ratelimiter("r", { limit = 5, window = 1000 }))
    local open = assert(dead:ratelimiter("o", { limit = 5, window = 1000, on_error = "fail_open" }))
    local closed = assert(dead:ratelimiter("c", { algorithm = "gcra", limit = 5, window = 1000,
                                                  burst = 7, on_error = "fail_closed" }))
    failed("transport", "report: no decision", report:check("u"))
    failed("transport", "report: batch", report:batch({ "a", "b" }))
    local d
    d = assert(open:check("u"))
    check_decision(d, "fail_open")
    eq(d.allowed, true, "fail_open allows")
    eq(d.degraded, true, "fail_open degraded")
    eq(d.error.name, "transport", "fail_open: the failure is named")
    eq(d.limit, 5, "fail_open limit")
    d = assert(closed:check("u"))
    eq(d.allowed, false, "fail_closed refuses")
    eq(d.degraded, true, "fail_closed degraded")
    eq(d.error.name, "transport", "fail_closed: the failure is named")
    eq(d.limit, 7, "fail_closed limit is the burst")
    local list = assert(open:batch({ "a", "b", "c" }))
    eq(#list, 3, "fail_open batch decisions")
    for i = 1, 3 do
        eq(list[i].allowed and list[i].degraded, true, "fail_open batch " .. i)
    end
    list = assert(closed:batch({ "a", "b" }))
    eq(list[1].allowed or list[2].allowed, false, "fail_closed batch refuses")
    -- multi: the strictest policy applies
    d = assert(dead:ratelimit_multi({ open, closed }, "u"))
    eq(d.allowed, false, "open + closed: closed")
    eq(d.degraded, true, "multi degraded")
    d = assert(dead:ratelimit_multi({ open }, "u"))
    eq(d.allowed, true, "open alone")
    failed("transport", "open + report: report", dead:ratelimit_multi({ open, report }, "u"))
    -- a reset is never decided by the policy
    failed("transport", "reset on a dead server", open:reset("u"))
end)

test("Redis slower than command_timeout: the policy decides, marked as a timeout", function()
    local port = assert(os.getenv("REDPAT_TEST_PORT"), "REDPAT_TEST_PORT is not set")
    local c = assert(redpat.connect(url, { namespace = "lr", command_timeout = 100 }))
    local open = assert(c:ratelimiter("slow-o", { limit = 5, window = 10000,
                                                  on_error = "fail_open" }))
    local closed = assert(c:ratelimiter("slow-c", { limit = 5, window = 10000,
                                                    on_error = "fail_closed" }))
    eq(open:check("u").degraded, false, "before: a real decision")
    eq(closed:check("u").degraded, false, "before: a real decision (closed)")
    -- another connection puts the whole server to sleep for a second
    assert(os.execute("redis-cli -p " .. port .. " DEBUG SLEEP 1 >/dev/null 2>&1 &"))
    sleep_ms(150)
    local t0 = core.monotonic_ms()
    local d = assert(open:check("u"))
    local waited = core.monotonic_ms() - t0
    eq(d.allowed, true, "fail_open allows")
    eq(d.degraded, true, "fail_open degraded")
    eq(d.error.name, "timeout", "the failure is a timeout")
    assert(waited < 500, ("answered after %.0f ms, not within the command timeout"):format(waited))
    d = assert(closed:check("u"))
    eq(d.allowed, false, "fail_closed refuses")
    eq(d.error.name, "timeout", "closed: the failure is a timeout")
    sleep_ms(1000)
    d = assert(open:check("u"))
    eq(d.degraded, false, "after the pause: real decisions again")
    -- the timed-out script was sent and may have run once the server woke up: a timeout
    -- leaves it unknown whether that request counted (never counted twice)
    assert(d.remaining == 2 or d.remaining == 3, "remaining " .. d.remaining)
end)

test("binary subjects: NUL, CRLF and non-UTF-8 bytes are distinct subjects and keys", function()
    local c = connect("lr")
    local l = assert(c:ratelimiter("bin", { algorithm = "sliding_log", limit = 1, window = 10000 }))
    local s1, s2 = "a\0b\r\n\255", "a\0c\r\n\255"
    eq(l:check(s1).allowed, true, "s1 first")
    eq(l:check(s2).allowed, true, "s2 is another subject")
    eq(l:check(s1).allowed, false, "s1 second")
    eq(admin:command("EXISTS", "lr:rl:bin:{" .. s1 .. "}"), 1, "s1 key, byte-exact")
    eq(admin:command("EXISTS", "lr:rl:bin:{a}"), 0, "not truncated at NUL")
    local ttl = admin:command("PTTL", "lr:rl:bin:{" .. s1 .. "}")
    assert(ttl > 0 and ttl <= 10000, "the key has a TTL: " .. tostring(ttl))
    local list = assert(l:batch({ s1, s2, "\0" }))
    eq(list[1].allowed or list[2].allowed, false, "batch: s1 and s2 exhausted")
    eq(list[3].allowed, true, "batch: a NUL byte subject")
    eq(l:reset(s1), true, "reset s1")
    eq(admin:command("EXISTS", "lr:rl:bin:{" .. s1 .. "}", "lr:rl:bin:{" .. s1 .. "}:seq"), 0,
        "s1 keys gone")
    eq(l:check(s1).allowed, true, "s1 after reset")
    eq(l:check(s2, 0).remaining, 0, "s2 untouched by the reset")
end)

test("limiter and op lifetimes: handles collected in any order", function()
    local function make()
        local c = connect("lr")
        assert(c:command("CLIENT", "SETNAME", "gc-limiter"))
        local a = assert(c:ratelimiter("gc-a", { limit = 5, window = 10000 }))
        local b = assert(c:ratelimiter("gc-b", { algorithm = "gcra", limit = 5, window = 10000 }))
        return { a = a, c = c, op = assert(redpat.begin("ratelimit.multi", { a, b }, { subject = "u" })) }
    end
    local h = make()
    local c = h.c
    h.c = nil
    -- the op alone keeps both limiters (and the client) alive
    local op = h.op
    h.op = nil
    h.a = nil
    full_gc()
    eq(clients_named("gc-limiter"), 1, "connection while the op lives")
    local d = assert(redpat.run(op))
    eq(d.allowed, true, "a multi op whose limiter handles are gone")
    eq(admin:command("EXISTS", "lr:rl:gc-a:{u}", "lr:rl:gc-b:{u}"), 2, "both limits consumed")
    c = nil -- luacheck: ignore
    full_gc()
    eq(clients_named_settled("gc-limiter", 0), 0, "connection after everything is collected")
    -- abandoned limiters and ops, collected together
    local junk = {}
    for i = 1, 200 do
        local jc = connect("lr")
        local jl = assert(jc:ratelimiter("j" .. i, { limit = 5, window = 1000 }))
        junk[i] = { jc, jl, redpat.begin("ratelimit.check", jl, { subject = "u" }),
                    redpat.begin("ratelimit.batch", jl, { subjects = { "a", "b" } }),
                    redpat.begin("ratelimit.reset", jl, { subject = "u" }),
                    redpat.begin("ratelimit.multi", { jl, jl }, { subject = "u" }) }
    end
    junk = nil -- luacheck: ignore
    full_gc()
end)

test("ratelimit_headers: Limit, Remaining, Reset, Retry-After (s, rounded up)", function()
    local h = redpat.ratelimit_headers({ allowed = false, limit = 10, remaining = 0,
                                         retry_after = 1200, reset_after = 59001,
                                         degraded = false }, {})
    eq(h["X-RateLimit-Limit"], "10", "limit")
    eq(h["X-RateLimit-Remaining"], "0", "remaining")
    eq(h["X-RateLimit-Reset"], "60", "reset rounded up")
    eq(h["Retry-After"], "2", "retry-after rounded up")
    h = redpat.ratelimit_headers({ allowed = false, limit = 3, remaining = 0, retry_after = 0,
                                   reset_after = 0, degraded = true }, {})
    eq(h["Retry-After"], "1", "a refusal never says retry now")
    h["Retry-After"] = "5"
    redpat.ratelimit_headers({ allowed = true, limit = 3, remaining = 2, retry_after = 0,
                               reset_after = 1000, degraded = false }, h)
    eq(h["Retry-After"], nil, "allowed clears Retry-After")
    eq(h["X-RateLimit-Reset"], "1", "1000 ms is 1 s")
    -- from a real decision
    local c = connect("lr")
    local l = assert(c:ratelimiter("hdr", { limit = 1, window = 2500 }))
    assert(l:check("u"))
    h = redpat.ratelimit_headers(assert(l:check("u")), {})
    eq(h["X-RateLimit-Limit"], "1", "real limit")
    eq(h["Retry-After"], "3", "2.5 s window rounds up to 3")
    eq(pcall(redpat.ratelimit_headers, { allowed = true, limit = 1, remaining = 1,
                                         retry_after = 0, reset_after = 0 }), false,
        "no headers table outside nginx")
end)

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
