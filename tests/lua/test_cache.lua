-- The cache family's Lua-specific tests (blocking driver): client:cache's idiom (values
-- through the serializer, `value, nil, rec`, negative hits told from misses, unknown
-- options), the CALL paths (a loader or writer that raises: nothing cached, the lock gone,
-- err "callback" with the message and the value raised), the stale-fill race made
-- deterministic (the loader itself invalidates the entry before returning the old row),
-- the near-cache pumped by cache:near_pump, and a stampede of separate processes on one
-- expired key (the loader runs once).
-- Run beside a private redis-server (REDPAT_TEST_URL):
--   lua5.4 tests/lua/test_cache.lua     luajit tests/lua/test_cache.lua
-- Prints `lua-cache-tests[<frontend>]: N passed, F failed`; exits non-zero on a failure.
-- (With --child ... it is one of the stampede's processes: see the stampede test.)
local redpat = require "redpat"

local url = assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not set")
local now_ms = redpat.core.monotonic_ms
local NS = "lc"

local function connect(ns)
    return assert(redpat.connect(url, { namespace = ns or NS }))
end

-- ---- a stampede process: waits for the go, then one get_or_load with a 50 ms loader that
-- counts its runs in Redis; prints "<value> <loaded> <waits> <ms>"
if arg[1] == "--child" then
    local name, key, mode = arg[2], arg[3], arg[4]
    local c = assert(redpat.connect(url, { namespace = NS, command_timeout = 15000 }))
    local cache = assert(c:cache(name, { ttl = 60000, stampede = mode, serializer = false }))
    assert(c:command("INCR", NS .. ":ready:" .. name))
    assert(c:command("BLPOP", NS .. ":go:" .. name, "10"))
    local t0 = now_ms()
    local v, err, rec = cache:get_or_load(key, function()
        c:command("INCR", NS .. ":loads:" .. name)
        os.execute("sleep 0.05")
        return "fresh"
    end)
    if err then
        io.write("ERR ", tostring(rec), "\n")
    else
        io.write(("%s %s %d %d\n"):format(tostring(v), tostring(rec.loaded), rec.waits, now_ms() - t0))
    end
    os.exit(0)
end

local frontend = arg[1] or (jit and "luajit" or "lua5.4")

local tests = {}
local function test(name, fn)
    tests[#tests + 1] = { name = name, fn = fn }
end

local function eq(got, want, what)
    if got ~= want then
        error(("%s: got %s, want %s"):format(what or "value", tostring(got), tostring(want)), 2)
    end
end

local function raises(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then
        error("did not raise", 2)
    end
    return tostring(err)
end

local admin = connect()
assert(admin:command("FLUSHALL"))

local function exists(key)
    return admin:command("EXISTS", key)
end

local function entry(name, key)
    return NS .. ":cache:{" .. name .. ":" .. key .. "}"
end

-- ---- the idiom

test("values go through the JSON serializer; a hit is value, nil, rec", function()
    local c = connect()
    local users = assert(c:cache("users", { ttl = 60000 }))
    local v, err, rec = users:get("1")
    eq(v, nil, "a miss")
    eq(err, nil, "a miss is no error")
    eq(rec.hit, false, "miss: hit")
    eq(rec.negative, false, "miss: negative")
    local row = { id = 1, name = "Ada", tags = { "x", "y" } }
    v, err, rec = users:get_or_load("1", function(k)
        eq(k, "1", "the loader's key")
        return row
    end)
    assert(v == row, "a load returns the loader's own value")
    eq(err, nil, "load err")
    eq(rec.loaded, true, "loaded")
    eq(rec.stored, true, "stored")
    local stored = require("cjson").decode(admin:command("HGET", entry("users", "1"), "v"))
    eq(stored.name, "Ada", "the stored JSON")
    v, err, rec = users:get("1")
    eq(v.name, "Ada", "a hit decodes")
    eq(v.tags[2], "y", "nested")
    eq(rec.hit, true, "hit")
    eq(rec.value, v, "rec.value is the decoded value")
    rec = assert(users:lookup("1"))
    eq(rec.hit, true, "lookup: hit")
    eq(rec.value.name, "Ada", "lookup: decoded value")
    assert(rec.ttl > 59000 and rec.ttl <= 60000, "lookup: ttl in ms " .. tostring(rec.ttl))
    local calls = 0
    v, err, rec = users:get_or_load("1", function()
        calls = calls + 1
        return {}
    end)
    eq(calls, 0, "no load on a hit")
    eq(v.name, "Ada", "get_or_load hit")
    eq(rec.loaded, false, "not loaded")
end)

test("a negative entry: nil without err, told from a miss by rec.negative", function()
    local c = connect()
    local cache = assert(c:cache("neg", { ttl = 60000, negative_ttl = 2000 }))
    local v, err, rec = cache:get_or_load("gone", function() return nil end)
    eq(v, nil, "none")
    eq(err, nil, "none is no error")
    eq(rec.negative, true, "negative")
    eq(rec.stored, true, "stored")
    local pttl = admin:command("PTTL", entry("neg", "gone"))
    assert(pttl > 1000 and pttl <= 2000, "negative_ttl " .. pttl)
    v, err, rec = cache:get("gone")
    eq(v, nil, "negative hit value")
    eq(err, nil, "negative hit err")
    eq(rec.hit, true, "negative hit: hit")
    eq(rec.negative, true, "negative hit: negative")
    local calls = 0
    v, err, rec = cache:get_or_load("gone", function() calls = calls + 1 return "x" end)
    eq(calls, 0, "a negative hit does not load")
    eq(rec.negative and v == nil and err == nil, true, "get_or_load negative hit")
    -- set(key, nil) writes a negative entry too
    assert(cache:set("other", nil))
    v, err, rec = cache:get("other")
    eq(rec.negative and rec.hit and v == nil, true, "set(key, nil)")
    -- JSON null is a value, not none
    assert(cache:set("null", redpat.null))
    v, err, rec = cache:get("null")
    eq(rec.negative, false, "null is a value")
    eq(v, redpat.null, "null comes back as redpat.null")
end)

test("serializer = false: strings as they are, any bytes; other values raise", function()
    local c = connect()
    local raw = assert(c:cache("raw", { ttl = 60000, serializer = false }))
    local bin = "a\0b\r\n\255"
    assert(raw:set(bin, bin .. bin))
    eq(raw:get(bin), bin .. bin, "binary round trip")
    eq(admin:command("HGET", entry("raw", bin), "v"), bin .. bin, "stored as is")
    local msg = raises(raw.set, raw, "k", 5)
    assert(msg:find("string", 1, true), msg)
    local v, err, rec = raw:get_or_load("t", function() return { 1 } end)
    eq(v, nil, "a loader's table under serializer = false")
    eq(err, "callback", "fails the load")
    assert(rec.message:find("string", 1, true), rec.message)
    eq(exists(entry("raw", "t")), 0, "nothing cached")
end)

test("a serializer of one's own; one that raises fails the op \"callback\"", function()
    local c = connect()
    local rev = { encode = function(v) return v:reverse() end, decode = function(s) return s:reverse() end }
    local cache = assert(c:cache("rev", { ttl = 60000, serializer = rev }))
    assert(cache:set("k", "abc"))
    eq(admin:command("HGET", entry("rev", "k"), "v"), "cba", "encoded")
    eq(cache:get("k"), "abc", "decoded")
    local bad = { encode = function() error("no encode") end, decode = function() error({ why = 1 }) end }
    local b = assert(c:cache("rev", { ttl = 60000, serializer = bad }))
    local v, err, detail = b:set("k2", "x")
    eq(v, nil, "encode failure")
    eq(err, "callback", "encode failure err")
    assert(detail.message:find("no encode", 1, true), detail.message)
    v, err, detail = b:get("k")
    eq(err, "callback", "decode failure err")
    eq(detail.error.why, 1, "detail.error: what decode raised")
    v, err, detail = b:get_or_load("k3", function() return "x" end)
    eq(err, "callback", "an encode failure in a load")
    eq(exists(entry("rev", "k3") .. ":lock"), 0, "lock released")
    eq(exists(entry("rev", "k3")), 0, "nothing cached")
end)

test("bad options raise in Lua's words; values the core refuses are invalid_argument", function()
    local c = connect()
    local msg = raises(c.cache, c, "x", { ttl = 1000, tll = 5 })
    assert(msg:find("unknown option 'tll'", 1, true) and msg:find("serializer", 1, true), msg)
    msg = raises(c.cache, c, "x", { ttl = 1000, serializer = "json" })
    assert(msg:find("serializer", 1, true), msg)
    local _, err, detail = c:cache("x", { ttl = 0 })
    eq(err, "invalid_argument", "ttl 0")
    assert(detail.message:find("ttl", 1, true), detail.message)
    _, err = c:cache("x")
    eq(err, "invalid_argument", "ttl is required")
    _, err = c:cache("a{b", { ttl = 1000 })
    eq(err, "invalid_argument", "a name with a brace")
    _, err = c:cache("x", { ttl = 1000, stampede = "dogpile" })
    eq(err, "invalid_argument", "unknown stampede mode")
    local cache = assert(c:cache("x", { ttl = 1000 }))
    msg = raises(cache.get, cache, "k", { tag = { "a" } })
    assert(msg:find("unknown option 'tag' (valid: tags)", 1, true), msg)
    msg = raises(cache.get_or_load, cache, "k", { tags = { "a" } })
    assert(msg:find("loader must be a function", 1, true), msg)
    msg = raises(cache.get_or_load, cache, "k", function() end, { random = 0.5, ttl = 1 })
    assert(msg:find("valid: tags, random", 1, true), msg)
    local info = cache:info()
    eq(info.ttl, 1000, "info.ttl")
    eq(info.stampede, "lock", "info.stampede")
    eq(info.channel, NS .. ":cache:x:inv", "info.channel")
    eq(cache:negative_ttl(), 30000, "accessor")
end)

test("delete says whether an entry existed; tags invalidate; write-through", function()
    local c = connect()
    local cache = assert(c:cache("ops", { ttl = 60000 }))
    assert(cache:set("k", { n = 1 }, { tags = { "t1", "t2" } }))
    eq(cache:get("k", { tags = { "t1", "t2" } }).n, 1, "tagged hit")
    eq(cache:invalidate_tags({ "t2" }), true, "invalidate_tags")
    local v, _, rec = cache:get("k", { tags = { "t1", "t2" } })
    eq(v == nil and not rec.hit, true, "a miss after its tag was invalidated")
    assert(cache:set("d", "x"))
    eq(cache:delete("d"), true, "delete: existed")
    eq(cache:delete("d"), false, "delete: did not exist")
    eq(exists(entry("ops", "d")), 0, "deleted")
    local seen
    local ok, err, wrec = cache:write("w", { id = 7 }, function(k, value)
        seen = { k, value }
    end)
    eq(ok, true, "write")
    eq(err, nil, "write err")
    eq(wrec.stored, true, "write stored")
    eq(seen[1], "w", "the writer's key")
    eq(seen[2].id, 7, "the writer gets the Lua value")
    eq(cache:get("w").id, 7, "written through")
    local boom = { "db down" }
    ok, err, wrec = cache:write("w", { id = 8 }, function() error(boom) end)
    eq(ok, nil, "a failed writer")
    eq(err, "callback", "a failed writer's err")
    assert(wrec.error == boom, "detail.error is what the writer raised")
    eq(cache:get("w").id, 7, "the cache untouched by a failed write")
end)

test("xfetch: opts.random reaches the core (an early recompute, or none)", function()
    local c = connect()
    local cache = assert(c:cache("xf", { ttl = 60000, stampede = "xfetch", beta = 1000, serializer = false }))
    assert(cache:get_or_load("k", function()
        os.execute("sleep 0.05")
        return "v1"
    end))
    -- delta ~50 ms * beta 1000 * -ln(random) against ~60000 ms left
    local _, _, rec = cache:get_or_load("k", function() return "v2" end, { random = 1 })
    eq(rec.loaded, false, "random 1: -ln(1) = 0, no early recompute")
    local v
    v, _, rec = cache:get_or_load("k", function() return "v2" end, { random = 0.01 })
    eq(rec.loaded, true, "random 0.01: recomputed early")
    eq(v, "v2", "the recomputed value")
end)

-- ---- CALL paths

test("a loader that raises: nothing cached, the lock gone, err \"callback\" with its message", function()
    local c = connect()
    local cache = assert(c:cache("boom", { ttl = 60000, lock_ttl = 5000 }))
    local v, err, detail = cache:get_or_load("k", function()
        eq(exists(entry("boom", "k") .. ":lock"), 1, "the lock is held while loading")
        error("db down")
    end)
    eq(v, nil, "no value")
    eq(err, "callback", "err")
    assert(detail.message:find("db down", 1, true), detail.message)
    assert(tostring(detail):find("^callback: "), tostring(detail))
    eq(exists(entry("boom", "k")), 0, "nothing cached")
    eq(exists(entry("boom", "k") .. ":lock"), 0, "the lock released")
    local why = setmetatable({}, { __tostring = function() return "custom error" end })
    v, err, detail = cache:get_or_load("k", function() error(why) end)
    eq(err, "callback", "an error object")
    assert(detail.error == why, "detail.error is the value raised")
    eq(detail.message, "custom error", "its text")
    -- the next caller loads
    v = cache:get_or_load("k", function() return "ok" end)
    eq(v, "ok", "a later load")
end)

test("the stale-fill race: the loader's row is returned, not cached, after a delete meanwhile", function()
    local c, c2 = connect(), connect()
    local readers = assert(c:cache("race", { ttl = 60000, serializer = false }))
    local writer = assert(c2:cache("race", { ttl = 60000, serializer = false }))
    local v, err, rec = readers:get_or_load("row", function()
        -- the writer commits and invalidates while the reader's load is in flight
        local _, err = writer:delete("row")
        assert(err == nil, err)
        return "old"
    end)
    eq(err, nil, "the load succeeds")
    eq(v, "old", "the old row is returned to its caller")
    eq(rec.loaded, true, "loaded")
    eq(rec.stored, false, "but not cached")
    eq(exists(entry("race", "row")), 0, "no entry")
    v, err, rec = readers:get("row")
    eq(v == nil and not rec.hit, true, "a miss, not the old row")
    -- a set meanwhile (the same client, inside the loader): the writer's value stays
    v, err, rec = readers:get_or_load("row2", function()
        assert(readers:set("row2", "new"))
        return "old"
    end)
    eq(v, "old", "returned")
    eq(rec.stored, false, "not stored")
    eq(readers:get("row2"), "new", "the set's value stays cached")
    -- without the race it is stored
    v, err, rec = readers:get_or_load("row3", function() return "v" end)
    eq(rec.stored, true, "stored")
end)

-- ---- the near-cache

test("near-cache: serves only once pumped (armed); another client's write drops it", function()
    local c, c2 = connect(), connect()
    local near = assert(c:cache("near", { ttl = 60000, near_size = 100, near_ttl = 60000 }))
    local other = assert(c2:cache("near", { ttl = 60000 }))
    assert(near:set("k", "v1"))
    local _, _, rec = near:get("k")
    _, _, rec = near:get("k")
    eq(rec.near, false, "never pumped: never served near")
    eq(near:info().near_armed, false, "not armed")
    local n = assert(near:near_pump(0))
    assert(n >= 1, "the subscribe confirmation")
    eq(near:info().near_armed, true, "armed")
    local v
    v, _, rec = near:get("k")
    eq(v, "v1", "from Redis")
    v, _, rec = near:get("k")
    eq(v, "v1", "near value")
    eq(rec.near, true, "a near hit")
    eq(rec.hit, true, "a hit")
    assert(other:set("k", "v2"))
    local t0 = now_ms()
    repeat
        assert(near:near_pump(5))
        v, _, rec = near:get("k")
    until v == "v2" or now_ms() - t0 > 2000
    eq(v, "v2", "the other client's write reached the near-cache")
    eq(rec.near, false, "dropped, then read from Redis")
    v, _, rec = near:get("k")
    eq(rec.near, true, "cached near again")
    -- the subscription's connection killed: its reconnect clears the near-cache; the
    -- near-cache serves again once pumped
    assert(admin:command("CLIENT", "KILL", "TYPE", "pubsub") >= 1)
    t0 = now_ms()
    repeat
        assert(near:near_pump(10))
    until near:info().near_entries == 0 or now_ms() - t0 > 3000
    eq(near:info().near_entries, 0, "cleared by the reconnect")
    t0 = now_ms()
    repeat
        assert(near:near_pump(10))
    until near:info().near_armed or now_ms() - t0 > 3000
    eq(near:info().near_armed, true, "armed again after the reconnect")
    near:get("k")
    v, _, rec = near:get("k")
    eq(rec.near and v == "v2", true, "near hits again")
    -- a reconnect notice clears and keeps serving; an unsubscribe clears and disarms
    near:near_apply("reconnect")
    eq(near:info().near_armed, true, "still armed after a reconnect notice")
    eq(near:info().near_entries, 0, "cleared")
    near:get("k")
    near:near_apply("unsubscribe", near:info().channel)
    eq(near:info().near_armed, false, "disarmed by an unsubscribe")
    eq(near:info().near_entries, 0, "cleared")
    local msg = raises(near.near_pump, near, -1)
    assert(msg:find("ms", 1, true), msg)
    near:close()
end)

-- ---- the stampede: separate processes

test("stampede (lock): 12 processes on an expired key, the 50 ms loader runs once", function()
    local interp = arg[-1] or (jit and "luajit" or "lua5.4")
    local script = arg[0]
    local n = 12
    local name = "st" .. tostring(now_ms())
    local key = "hot"
    local c = connect()
    -- an entry that has just expired
    local short = assert(c:cache(name, { ttl = 20, serializer = false }))
    assert(short:set(key, "old"))
    os.execute("sleep 0.05")
    eq(exists(entry(name, key)), 0, "expired")
    local procs = {}
    for i = 1, n do
        procs[i] = assert(io.popen(("%s %s --child %s %s lock"):format(interp, script, name, key)))
    end
    local deadline = now_ms() + 20000
    while admin:command("INCRBY", NS .. ":ready:" .. name, "0") < n do
        assert(now_ms() < deadline, "the processes did not start")
        os.execute("sleep 0.01")
    end
    local go = { "RPUSH", NS .. ":go:" .. name }
    for i = 1, n do
        go[#go + 1] = tostring(i)
    end
    assert(admin:command((table.unpack or unpack)(go)))
    local loaded, values, worst = 0, {}, 0
    for i = 1, n do
        local line = procs[i]:read("*l") or "(none)"
        procs[i]:close()
        local v, l, _, ms = line:match("^(%S+) (%S+) (%d+) (%d+)$")
        assert(v, "process " .. i .. ": " .. line)
        values[v] = (values[v] or 0) + 1
        if l == "true" then
            loaded = loaded + 1
        end
        worst = math.max(worst, tonumber(ms))
    end
    eq(admin:command("GET", NS .. ":loads:" .. name), "1", "the loader ran once")
    eq(loaded, 1, "one process loaded")
    eq(values.fresh, n, "every process got the fresh value")
    io.write(("  stampede: %d processes, 1 load, slowest %d ms\n"):format(n, worst))
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
print(("lua-cache-tests[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
