-- Lua tests of driver contract v2 through the blocking driver (plain Lua 5.4 and LuaJIT):
-- parallel rounds over several servers, Redlock with stopped servers, lock:using renewing
-- on the C driver's helper thread while fn runs in the calling thread, pub/sub (patterns,
-- binary payloads, the iterator, reconnecting after CLIENT KILL TYPE pubsub).
-- Run beside five private redis-servers:
--   python3 tests/harness/harness.py run --servers 5 -- lua5.4 tests/lua/test_contract.lua
-- Prints `lua-contract-tests[<frontend>]: N passed, F failed`; exits non-zero on a failure.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local redpat = require "redpat"
local matrix = require "matrix"

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
local urls, pids = matrix.servers(os.getenv)
assert(#urls >= 5 and #pids >= 5, "run under harness.py run --servers 5")
local now = redpat.core.monotonic_ms

local tests = {}
local function test(name, fn)
    tests[#tests + 1] = { name = name, fn = fn }
end

local function eq(got, want, what)
    if got ~= want then
        error(("%s: got %s, want %s"):format(what or "value", tostring(got), tostring(want)), 2)
    end
end

local function between(v, lo, hi, what)
    if type(v) ~= "number" or v < lo or v > hi then
        error(("%s: %s not in [%s, %s]"):format(what, tostring(v), lo, hi), 2)
    end
end

local function sleep_ms(ms)
    os.execute(("sleep %.3f"):format(ms / 1000))
end

local function admin(i) -- a client of server i (1-based) alone
    return assert(redpat.connect(urls[i], { namespace = "ct" }))
end

local admins = {}
for i = 1, 5 do
    admins[i] = admin(i)
end
local function flush()
    for i = 1, 5 do
        assert(admins[i]:command("FLUSHALL"))
    end
end

local function all(n)
    return assert(redpat.client{ url = table.concat(urls, ",", 1, n), namespace = "ct" })
end

local function signal(list, sig)
    for _, i in ipairs(list) do
        matrix.signal(pids[i], sig)
    end
end

-- ---- parallel rounds

test("a 5-target round costs about its slowest target, not the sum", function()
    flush()
    -- each server answers 0.1 s after being asked (a DEBUG SLEEP pipelined before each
    -- request): asking them one by one would take 0.5 s
    local p = assert(io.popen(("exec python3 %s/sleepy_proxy.py --sleep 0.1 --lifetime 60 %s")
        :format(here, table.concat(urls, ",", 1, 5))))
    local line = assert(p:read("*l"), "the proxy did not start")
    local proxied, pid = line:match("^(%S+) (%d+)$")
    local ok, err = pcall(function()
        local c = assert(redpat.connect(proxied, { namespace = "ct" }))
        local lock = assert(c:redlock("par", { ttl = 10000, node_timeout = 2000 }))
        local t0 = now()
        local acquired, _, _, validity = lock:acquire()
        local took = now() - t0
        eq(acquired, true, "acquired through five slow servers")
        between(took, 95, 300, "acquire ms (one round ~ 100 ms; the sum would be 500)")
        between(validity, 9000, 10000, "validity")
        t0 = now()
        assert(lock:release())
        between(now() - t0, 95, 300, "release ms (every target answers: the slowest decides)")
        for i = 1, 5 do
            eq(admins[i]:command("EXISTS", "ct:lock:{par}"), 0, "released on server " .. i)
        end
        c:close()
    end)
    os.execute("kill " .. pid)
    p:close()
    assert(ok, err)
end)

-- ---- Redlock

test("Redlock acquires in about one round trip with 2 of 5 servers stopped", function()
    flush()
    local lock = assert(all(5):redlock("stop2", { ttl = 5000, node_timeout = 1000 }))
    signal({ 4, 5 }, "STOP")
    local ok, err = pcall(function()
        local t0 = now()
        local acquired, _, _, validity = lock:acquire()
        local took = now() - t0
        eq(acquired, true, "a majority is up")
        assert(took < 200, ("acquire took %d ms: the stopped servers held it up (node_timeout "
            .. "1000)"):format(took))
        assert(validity > 4000, "validity " .. tostring(validity))
        eq(lock:info().nodes, 5, "info.nodes")
        for i = 1, 3 do
            eq(admins[i]:command("GET", "ct:lock:{stop2}"), lock:token(), "the token on server " .. i)
        end
    end)
    signal({ 4, 5 }, "CONT")
    assert(ok, err)
    assert(lock:release())
end)

test("Redlock with 3 of 5 stopped fails within about one node timeout, leaving no key", function()
    flush()
    local lock = assert(all(5):redlock("stop3", { ttl = 5000, node_timeout = 200 }))
    signal({ 3, 4, 5 }, "STOP")
    local ok, err = pcall(function()
        local t0 = now()
        local acquired, e1, e2 = lock:acquire()
        local took = now() - t0
        assert(acquired ~= true, "acquired without a majority")
        assert(took < 700, ("gave up after %d ms (node_timeout 200)"):format(took))
        for i = 1, 2 do
            eq(admins[i]:command("EXISTS", "ct:lock:{stop3}"), 0, "no key left on server " .. i)
        end
        return e1, e2
    end)
    signal({ 3, 4, 5 }, "CONT")
    assert(ok, err)
end)

-- ---- lock:using

test("lock:using renews while fn outlives the TTL (the C driver's helper thread)", function()
    flush()
    local c = admins[1]
    local lock = assert(c:lock("renewed", { ttl = 300 }))
    local seen = {}
    local a, b, n = lock:using(function(x, y)
        -- blocks the calling thread for 1 s (> 3 TTLs): only the helper thread renews
        sleep_ms(1000)
        seen.token = c:command("GET", "ct:lock:{renewed}") -- fn may use the same client
        seen.pttl = c:command("PTTL", "ct:lock:{renewed}")
        return x + y, "two", nil
    end, 40, 2)
    eq(a, 42, "fn's first result")
    eq(b, "two", "fn's second result")
    eq(n, nil, "fn's third result")
    eq(seen.token, lock:token() or seen.token, "the key held the lock's token under fn")
    assert(type(seen.token) == "string", "the key existed after 1 s with ttl 300")
    between(seen.pttl, 1, 300, "PTTL under fn")
    eq(c:command("EXISTS", "ct:lock:{renewed}"), 0, "released afterwards")
end)

test("Redlock:using renews on every server of the majority", function()
    flush()
    local lock = assert(all(5):redlock("ru", { ttl = 300, node_timeout = 50 }))
    local pttls = {}
    local r = lock:using({ max_hold = 5000 }, function()
        sleep_ms(800)
        for i = 1, 5 do
            pttls[i] = admins[i]:command("PTTL", "ct:lock:{ru}")
        end
        return "ok"
    end)
    eq(r, "ok", "fn's result")
    for i = 1, 5 do
        between(pttls[i], 1, 300, "PTTL on server " .. i .. " after 800 ms")
        eq(admins[i]:command("EXISTS", "ct:lock:{ru}"), 0, "released on server " .. i)
    end
end)

test("lock:using failures: busy, callback (the raised value kept), lost", function()
    flush()
    local c = admins[1]
    local holder = assert(c:lock("uf", { ttl = 5000 }))
    assert(holder:acquire())
    local calls = 0
    local r, err, detail = assert(c:lock("uf")):using(function()
        calls = calls + 1
    end)
    eq(r, nil, "busy result")
    eq(err, "busy", "busy err")
    eq(detail.name, "busy", "busy detail")
    eq(calls, 0, "fn never ran")
    assert(holder:release())

    local raised = { why = "a table error" }
    r, err, detail = assert(c:lock("uf")):using(function()
        error(raised)
    end)
    eq(err, "callback", "callback err")
    eq(detail.error, raised, "detail.error is the raised value")
    assert(type(detail.message) == "string", "detail.message")
    eq(c:command("EXISTS", "ct:lock:{uf}"), 0, "released after fn raised")
    r, err, detail = assert(c:lock("uf")):using(function()
        error("boom", 0)
    end)
    eq(detail.message:find("boom", 1, true) ~= nil, true, "the message: " .. detail.message)

    local short = assert(c:lock("uf", { ttl = 200 }))
    r, err, detail = short:using({ renew = false }, function()
        sleep_ms(400)
        return "late", 7
    end)
    eq(r, nil, "lost result")
    eq(err, "lost", "lost err")
    eq(detail.results.n, 2, "fn's results kept")
    eq(detail.results[1], "late", "fn's first result")
    eq(detail.results[2], 7, "fn's second result")
    local ok = pcall(short.using, short, { renw = true }, function() end)
    eq(ok, false, "an unknown option raises")
    eq(pcall(short.using, short, {}), false, "no fn raises")
end)

test("lock:auto_renew is for OpenResty: plain Lua renews inside lock:using", function()
    local lock = assert(admins[1]:lock("ar"))
    local ok, msg = pcall(lock.auto_renew, lock)
    eq(ok, false, "raises")
    assert(tostring(msg):find("lock:using", 1, true), msg)
end)

-- ---- pub/sub

local function next_kind(sub, kind, ms)
    local m, err, detail = sub:next(ms or 2000)
    assert(m, "no " .. kind .. " message: " .. tostring(detail or err))
    eq(m.kind, kind, "message kind")
    return m
end

test("pub/sub: channels, patterns, binary payloads, (un)subscribe, the iterator", function()
    flush()
    local c = admins[1]
    local sub = assert(c:subscribe{ channels = { "news", "a\0b" }, patterns = { "ev:*" } })
    local confirmed = {}
    for _ = 1, 3 do
        local m = assert(sub:next(2000))
        confirmed[m.kind .. ":" .. (m.pattern or m.channel)] = m.count
    end
    assert(confirmed["subscribe:news"] and confirmed["subscribe:a\0b"] and confirmed["psubscribe:ev:*"],
        "three confirmations")
    eq(select(2, sub:next(50)), "timeout", "nothing more")
    local payload = "x\0y\r\n\255"
    eq(c:publish("news", payload), 1, "one receiver")
    eq(c:publish("a\0b", "bin"), 1, "binary channel")
    eq(c:publish("ev:1", "pat"), 1, "pattern")
    local m = next_kind(sub, "message")
    eq(m.channel, "news", "channel")
    eq(m.data, payload, "binary payload")
    eq(m.pattern, nil, "no pattern")
    eq(next_kind(sub, "message").channel, "a\0b", "binary channel name")
    m = next_kind(sub, "pmessage")
    eq(m.pattern, "ev:*", "pattern")
    eq(m.channel, "ev:1", "channel of a pmessage")
    eq(m.data, "pat", "pmessage data")
    assert(sub:unsubscribe{ channels = { "news" } })
    m = next_kind(sub, "unsubscribe")
    eq(m.channel, "news", "unsubscribed channel")
    eq(m.count, 2, "subscriptions left")
    eq(c:publish("news", "gone"), 0, "no receiver now")
    assert(sub:subscribe{ channels = { "more" } })
    next_kind(sub, "subscribe")
    for i = 1, 5 do
        c:publish("more", "m" .. i)
    end
    local got = {}
    for msg in sub:messages(300) do
        got[#got + 1] = msg.data
    end
    eq(table.concat(got, ","), "m1,m2,m3,m4,m5", "the iterator, in order")
    sub:close()
    eq(select(2, sub:next(10)), "state", "a closed subscription")
    eq(c:publish("more", "x"), 0, "closing unsubscribed")
end)

test("a subscription reconnects after CLIENT KILL TYPE pubsub and says so", function()
    flush()
    local c = admins[1]
    local sub = assert(c:subscribe{ channels = { "rc" } })
    next_kind(sub, "subscribe")
    assert(c:command("CLIENT", "KILL", "TYPE", "pubsub") >= 1, "killed the subscriber")
    local m = next_kind(sub, "reconnect", 5000)
    eq(m.data, nil, "no data")
    eq(c:publish("rc", "after"), 1, "subscribed again")
    eq(next_kind(sub, "message").data, "after", "a message after the reconnect")
    sub:close()
end)

test("a collected subscription closes its connection", function()
    flush()
    local c = admins[1]
    local function subscribe() -- its own frame: no stale stack slot keeps sub (LuaJIT)
        local sub = assert(c:subscribe{ channels = { "gc" } })
        next_kind(sub, "subscribe")
    end
    subscribe()
    for _ = 1, 4 do
        collectgarbage()
    end
    local n
    for _ = 1, 100 do
        n = c:command("PUBSUB", "NUMSUB", "gc")[2]
        if n == 0 then
            break
        end
        sleep_ms(10)
    end
    eq(n, 0, "subscribers of gc after the collector ran")
end)

test("redpat.client takes a list of URLs or a ','-joined string", function()
    local c = assert(redpat.client{ url = urls, namespace = "ct" })
    local l = assert(c:redlock("lst"))
    eq(l:info().nodes, #urls, "one node per URL")
    local c2 = assert(redpat.client{ url = table.concat(urls, ",", 1, 3) })
    eq(assert(c2:redlock("x")):info().nodes, 3, "joined string")
    eq(pcall(redpat.client, { url = { urls[1], 5 } }), false, "a non-string URL raises")
    local _, err = c:lock("single")
    eq(err, "invalid_argument", "a single-node lock on a multi-URL client")
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
signal({ 1, 2, 3, 4, 5 }, "CONT")
print(("lua-contract-tests[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
