-- Redis Cluster through the Lua rock (blocking driver): AUTH on every node (a password set
-- on every node for the test), a live reshard of the slots of a held lock and of a
-- limiter's subject (ASK while the keys move, MOVED after), then a master SIGKILLed and its
-- replica promoted. Run beside one cluster with replicas:
--   python3 tests/harness/harness.py run --cluster --servers 1 --replicas 1 -- \
--     lua5.4 tests/lua/test_cluster.lua [frontend]          (luajit too)
-- The reshard runs in a background shell script (redis-cli: CLUSTER SETSLOT IMPORTING /
-- MIGRATING, MIGRATE, SETSLOT NODE, a pause after each stage) while this thread loops on
-- the calls, so that they meet every state of it: migrating with the keys still on the
-- source (TRYAGAIN for a check's missing second key), with the keys moved (ASK), and moved
-- (MOVED); the servers' error counts show which were met.
-- Prints `lua-cluster-tests[<frontend>]: N passed, F failed`; exits non-zero on a failure.
local redpat = require "redpat"
local unpack = table.unpack or unpack -- luacheck: ignore

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
assert(os.getenv("REDPAT_TEST_CLUSTER") == "1", "run it under harness.py run --cluster")
local url = assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not set")

-- The nodes of the (first) cluster: masters first, then replicas, with their pids.
local node_urls, node_pids = {}, {}
for u in ((os.getenv("REDPAT_TEST_NODES") or ""):match("^[^,]*")):gmatch("%S+") do
    node_urls[#node_urls + 1] = u
end
for p in ((os.getenv("REDPAT_TEST_PIDS") or ""):match("^[^,]*")):gmatch("%S+") do
    node_pids[#node_pids + 1] = tonumber(p)
end
assert(#node_urls >= 3 and #node_urls == #node_pids, "REDPAT_TEST_NODES / _PIDS: one cluster's nodes")

local function sleep_ms(ms)
    os.execute(("sleep %.3f"):format(ms / 1000))
end

local function now_ms()
    return redpat.core.monotonic_ms()
end

local tests = {}
local function test(name, fn)
    tests[#tests + 1] = { name = name, fn = fn }
end

local function eq(got, want, what)
    if got ~= want then
        error(("%s: got %s, want %s"):format(what or "value", tostring(got), tostring(want)), 2)
    end
end

-- ---- the nodes, directly (plain redis:// clients: no routing)

local admins = {}
local admin_password -- the nodes' requirepass while the AUTH test runs
local function admin(node_url)
    local c = admins[node_url]
    if c == nil then
        local u = admin_password and node_url:gsub("^redis://", "redis://:" .. admin_password .. "@")
            or node_url
        c = assert(redpat.connect(u, { connect_timeout = 500, command_timeout = 2000 }))
        admins[node_url] = c
    end
    return c
end

local function cmd(node_url, ...)
    local v, err, detail = admin(node_url):command(...)
    if v == nil then
        admins[node_url] = nil -- a dead node's client goes
        error(("%s on %s: %s"):format(table.concat({ ... }, " "), node_url, tostring(detail or err)), 2)
    end
    return v
end

local dead = {} -- node url -> true once killed

-- CLUSTER NODES as seen by a live node: by address "127.0.0.1:P", {id, url, master (bool),
-- failed (bool), slots = {{start, end}, ...}}.
local function topology()
    for _, u in ipairs(node_urls) do
        if not dead[u] then
            local ok, text = pcall(cmd, u, "CLUSTER", "NODES")
            if ok then
                local nodes = {}
                for line in text:gmatch("[^\n]+") do
                    local f = {}
                    for w in line:gmatch("%S+") do
                        f[#f + 1] = w
                    end
                    local addr = f[2]:match("^([^@,]+)")
                    local n = { id = f[1], addr = addr, url = "redis://" .. addr,
                                master = f[3]:find("master", 1, true) ~= nil,
                                failed = f[3]:find("fail", 1, true) ~= nil, slots = {} }
                    for i = 9, #f do
                        local a, b = f[i]:match("^(%d+)%-(%d+)$")
                        if a then
                            n.slots[#n.slots + 1] = { tonumber(a), tonumber(b) }
                        elseif f[i]:match("^%d+$") then
                            n.slots[#n.slots + 1] = { tonumber(f[i]), tonumber(f[i]) }
                        end
                    end
                    nodes[addr] = n
                end
                return nodes
            end
        end
    end
    error("no live node answers CLUSTER NODES")
end

local function owner(slot)
    for _, n in pairs(topology()) do
        if n.master and not n.failed then
            for _, r in ipairs(n.slots) do
                if slot >= r[1] and slot <= r[2] then
                    return n
                end
            end
        end
    end
    error("no master serves slot " .. slot)
end

local function slot_of(key)
    for _, u in ipairs(node_urls) do
        if not dead[u] then
            return cmd(u, "CLUSTER", "KEYSLOT", key)
        end
    end
end

local function pid_of(node_url)
    for i, u in ipairs(node_urls) do
        if u == node_url then
            return node_pids[i]
        end
    end
    error("no pid for " .. node_url)
end

-- ---- raw commands

test("client:command on a cluster: keys route it; a keyless one needs { key = ... }; "
     .. "keys in two slots are refused before I/O", function()
    local c = assert(redpat.connect(url, { namespace = "cc" }))
    eq(c:command("SET", "cc:{k}a", "1"), "OK", "SET routed by its key")
    eq(c:command("GET", "cc:{k}a"), "1", "GET routed by its key")
    local r, err, detail = c:command("DBSIZE")
    eq(r, nil, "DBSIZE without a key")
    eq(err, "invalid_argument", "its error")
    assert(tostring(detail.message):find("key", 1, true), tostring(detail))
    -- the node of "{k}" counts its one key; another slot's node none of them
    local home = owner(slot_of("{k}"))
    eq(c:command("DBSIZE", { key = "{k}" }), 1, "DBSIZE on the node of {k}")
    eq(cmd(home.url, "DBSIZE"), 1, "that node, directly")
    for i = 1, 100 do
        if owner(slot_of("{o" .. i .. "}")).id ~= home.id then
            eq(c:command("DBSIZE", { key = "{o" .. i .. "}" }), 0, "DBSIZE on another node")
            break
        end
    end
    eq(c:command("PING", { key = "x" }), "PONG", "PING given a key")
    r, err = c:command("MGET", "cc:{a}", "cc:{b}")
    eq(err, "invalid_argument", "keys in two slots (" .. tostring(r) .. ")")
    local ok, why = pcall(c.command, c, "DBSIZE", { kee = "x" })
    eq(ok, false, "an unknown option raises")
    assert(tostring(why):find("unknown option 'kee' (valid: key)", 1, true), why)
    ok, why = pcall(c.command, c, "DBSIZE", { key = 5 })
    eq(ok, false, "a key that is not a string raises")
    c:close()
end)

-- ---- AUTH on every node

test("AUTH on every node: a password in the cluster URL reaches every master; none, or a "
     .. "wrong one, fails \"auth\"", function()
    local pw = "lua-cl-s3cret"
    local set = {}
    local function unset() -- over connections authenticated with the password
        for _, u in ipairs(set) do
            local a = assert(redpat.connect((u:gsub("^redis://", "redis://:" .. pw .. "@"))))
            a:command("CONFIG", "SET", "requirepass", "")
            a:command("CONFIG", "SET", "masterauth", "")
            a:close()
        end
        admin_password, admins = nil, {}
    end
    local ok, why = pcall(function()
        for _, u in ipairs(node_urls) do -- replicas too (they keep syncing with masterauth)
            cmd(u, "CONFIG", "SET", "masterauth", pw)
            cmd(u, "CONFIG", "SET", "requirepass", pw)
            set[#set + 1] = u
        end
        admin_password, admins = pw, {}
        local with = url:gsub("^(rediss?%+cluster://)", "%1:" .. pw .. "@")
        local c = assert(redpat.connect(with, { namespace = "ca" }))
        -- names until each master holds one of them: every master's connection ran AUTH
        local masters, seen, names = 0, {}, {}
        for _, n in pairs(topology()) do
            if n.master then
                masters = masters + 1
            end
        end
        for i = 1, 1000 do
            local name = "n" .. i
            local o = owner(slot_of("ca:lock:{" .. name .. "}")).id
            if not seen[o] then
                seen[o], names[#names + 1] = true, name
            end
            if #names == masters then
                break
            end
        end
        eq(#names, masters, "a lock name per master")
        for _, name in ipairs(names) do
            local lock = assert(c:lock(name, { ttl = 5000 }))
            eq((assert(lock:acquire())), true, "acquire " .. name)
            eq((assert(lock:release())), true, "release " .. name)
            local lim = assert(c:ratelimiter("l", { limit = 5, window = 10000 }))
            eq(assert(lim:check(name)).allowed, true, "check " .. name)
        end
        for _, bad in ipairs({ url, (url:gsub("^(rediss?%+cluster://)", "%1:wrong@")) }) do
            local b = assert(redpat.connect(bad, { namespace = "ca" }))
            local r, err, detail = assert(b:lock(names[1])):acquire()
            eq(r, nil, "acquire without the password")
            eq(err, "auth", "its error (" .. tostring(detail) .. ")")
            b:close()
        end
        c:close()
    end)
    unset()
    assert(ok, why)
end)

-- ---- a live reshard: the lock's slot and the subject's slot each move to another master

-- A shell script (redis-cli) moving each slot of moves ({slot, src, dst} with nodes from
-- topology()) as redis-cli --cluster reshard does: SETSLOT IMPORTING on the destination,
-- MIGRATING on the source, MIGRATE of the slot's keys, SETSLOT NODE on every master (the
-- destination first); a
-- pause after each stage, so that the client's calls meet each. It writes "done" (or what
-- failed) to marker at the end.
local function reshard_script(moves, masters, marker, pause_s)
    -- (the marker is written whole, then renamed: a reader never sees it half written)
    local lines = { "C='redis-cli -h 127.0.0.1'",
                    "fail() { echo \"$*\" > " .. marker .. ".tmp; mv " .. marker .. ".tmp " .. marker .. "; exit 1; }",
                    "expect() { want=$1; shift; out=$($C \"$@\" 2>&1); "
                    .. "[ \"$out\" = \"$want\" ] || fail \"$* answered: $out\"; }" }
    for _, m in ipairs(moves) do
        local sp, dp = m.src.addr:match(":(%d+)$"), m.dst.addr:match(":(%d+)$")
        lines[#lines + 1] = ("expect OK -p %s CLUSTER SETSLOT %d IMPORTING %s"):format(dp, m.slot, m.src.id)
        lines[#lines + 1] = ("expect OK -p %s CLUSTER SETSLOT %d MIGRATING %s"):format(sp, m.slot, m.dst.id)
        lines[#lines + 1] = ("sleep %.3f"):format(pause_s)
        lines[#lines + 1] = ("keys=$($C -p %s CLUSTER GETKEYSINSLOT %d 1000)"):format(sp, m.slot)
        lines[#lines + 1] = ("[ -n \"$keys\" ] || fail 'slot %d holds no key'"):format(m.slot)
        lines[#lines + 1] = ("expect OK -p %s MIGRATE 127.0.0.1 %s '' 0 5000 KEYS $keys"):format(sp, dp)
        lines[#lines + 1] = ("sleep %.3f"):format(pause_s)
        -- the destination first, then the source, then the others (redis-cli's order: a
        -- source told first would send the client to a destination still importing,
        -- which sends it back)
        local order = { m.dst, m.src }
        for _, n in ipairs(masters) do
            if n.id ~= m.dst.id and n.id ~= m.src.id then
                order[#order + 1] = n
            end
        end
        for _, n in ipairs(order) do
            lines[#lines + 1] = ("expect OK -p %s CLUSTER SETSLOT %d NODE %s"):format(
                n.addr:match(":(%d+)$"), m.slot, m.dst.id)
        end
        lines[#lines + 1] = ("sleep %.3f"):format(pause_s)
    end
    lines[#lines + 1] = "echo done > " .. marker .. ".tmp && mv " .. marker .. ".tmp " .. marker
    return table.concat(lines, "\n") .. "\n"
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local data = f:read("*a")
    f:close()
    return data
end

test("a live reshard moving a held lock's slot and a limiter subject's slot: every call "
     .. "succeeds, no decision lost or doubled", function()
    local c = assert(redpat.connect(url, { namespace = "cr" }))
    local other = assert(redpat.connect(url, { namespace = "cr" }))
    local limit = 50000
    local lim = assert(c:ratelimiter("api", { algorithm = "sliding_log", limit = limit,
                                              window = 600000 }))
    local holder = assert(c:lock("orders", { ttl = 60000, fenced = true }))
    local rival = assert(other:lock("orders", { ttl = 60000, fenced = true }))
    local acquired, fence = holder:acquire()
    eq(acquired, true, "holder acquires")
    local checks = 0
    local function check(stage)
        if checks >= limit - 1 then -- (the limit reached: the lock's calls go on)
            return
        end
        local d, err, detail = lim:check("alice")
        assert(d, ("%s: check %d failed: %s"):format(stage, checks + 1, tostring(detail or err)))
        checks = checks + 1
        eq(d.allowed, true, stage .. ": check " .. checks .. " allowed")
        eq(d.remaining, limit - checks, stage .. ": remaining after check " .. checks)
    end
    local rounds = 0
    local function calls(stage)
        rounds = rounds + 1
        check(stage)
        local busy, err, detail = rival:acquire()
        assert(busy ~= nil, ("%s: rival acquire failed: %s"):format(stage, tostring(detail or err)))
        eq(busy, false, stage .. ": the held lock is busy for the rival")
        local ok, eerr, edetail = holder:extend(60000)
        assert(ok, ("%s: extend failed: %s"):format(stage, tostring(edetail or eerr)))
    end
    calls("before")
    -- the moves, planned from the topology now
    local moves, masters = {}, {}
    for _, n in pairs(topology()) do
        if n.master and not n.failed then
            masters[#masters + 1] = n
        end
    end
    table.sort(masters, function(a, b) return a.addr < b.addr end)
    for _, key in ipairs({ "cr:lock:{orders}", "cr:rl:api:{alice}" }) do
        local slot = slot_of(key)
        if not (moves[1] and moves[1].slot == slot) then
            local src = owner(slot)
            local dst
            for _, n in ipairs(masters) do
                if n.id ~= src.id and not dst then
                    dst = n
                end
            end
            moves[#moves + 1] = { slot = slot, src = src, dst = dst }
        end
    end
    for _, n in ipairs(masters) do
        cmd(n.url, "CONFIG", "RESETSTAT")
    end
    local marker = os.tmpname()
    os.remove(marker)
    local script = os.tmpname()
    local f = assert(io.open(script, "wb"))
    f:write(reshard_script(moves, masters, marker, 0.2))
    f:close()
    os.execute(("sh %s >/dev/null 2>&1 &"):format(script))
    local t0 = now_ms()
    local state
    repeat
        calls("during the reshard")
        state = read_file(marker)
        assert(now_ms() - t0 < 30000, "the reshard did not end within 30 s")
    until state
    os.remove(marker)
    os.remove(script)
    eq(state, "done\n", "the reshard script")
    for _, m in ipairs(moves) do
        eq(owner(m.slot).id, m.dst.id, "slot " .. m.slot .. "'s new master")
    end
    for _ = 1, 5 do
        calls("after")
    end
    -- the redirects the calls met (the servers' error counts)
    local seen = { ASK = 0, MOVED = 0, TRYAGAIN = 0 }
    for _, n in ipairs(masters) do
        local info = cmd(n.url, "INFO", "errorstats")
        for name, count in info:gmatch("errorstat_(%u+):count=(%d+)") do
            if seen[name] then
                seen[name] = seen[name] + tonumber(count)
            end
        end
    end
    assert(seen.ASK > 0 and seen.MOVED > 0, ("the calls met ASK %d and MOVED %d times"):format(
        seen.ASK, seen.MOVED))
    -- every decision counted once: the rest of the limit (in one batch of costs), then a
    -- refusal
    local d = assert(lim:check("alice", limit - checks))
    eq(d.allowed, true, "the rest of the limit at once")
    eq(d.remaining, 0, "nothing left")
    d = assert(lim:check("alice"))
    eq(d.allowed, false, "the limit+1-th check")
    eq((assert(holder:release())), true, "release after the reshard")
    local again, fence2 = rival:acquire()
    eq(again, true, "the rival acquires once released")
    assert(fence2 > fence, "fences only grow")
    rival:release()
    print(("  reshard: %d rounds of calls (check, busy acquire, extend) in %d ms while %d slots "
           .. "moved, redirected ASK %d, MOVED %d, TRYAGAIN %d times"):format(rounds,
        now_ms() - t0, #moves, seen.ASK, seen.MOVED, seen.TRYAGAIN))
    c:close()
    other:close()
end)

-- ---- a master killed, its replica promoted

test("a master SIGKILLed mid-calls: the call in flight fails with a clear error, later calls "
     .. "succeed on the same client once its replica took over", function()
    assert(tonumber(os.getenv("REDPAT_TEST_CLUSTER_REPLICAS") or "0") >= 1, "needs --replicas 1")
    local c = assert(redpat.connect(url, { namespace = "cf", connect_timeout = 500,
                                           command_timeout = 1000 }))
    local lock = assert(c:lock("fo", { ttl = 10000 }))
    local lim = assert(c:ratelimiter("fo", { limit = 1000000, window = 60000 }))
    eq((assert(lock:acquire())), true, "acquire before")
    eq((assert(lock:release())), true, "release before")
    local victim = owner(slot_of("cf:lock:{fo}"))
    local subject -- a subject on the same master
    for i = 1, 10000 do
        if owner(slot_of("cf:rl:fo:{s" .. i .. "}")).id == victim.id then
            subject = "s" .. i
            break
        end
    end
    assert(lim:check(subject))
    -- the kill lands while this thread loops on calls to the master
    os.execute(("(sleep 0.2; kill -KILL %d) >/dev/null 2>&1 &"):format(pid_of(victim.url)))
    local t_kill = now_ms()
    local first_err, first_detail
    while now_ms() - t_kill < 5000 do
        local d, err, detail = lim:check(subject)
        if d == nil then
            first_err, first_detail = err, detail
            break
        end
    end
    dead[victim.url] = true
    assert(first_err, "no call failed within 5 s of the kill")
    assert(first_err == "transport" or first_err == "timeout",
           "the call in flight fails transport / timeout, got " .. tostring(first_detail))
    assert(tostring(first_detail.message):find(victim.addr, 1, true),
           "the error names the node: " .. tostring(first_detail))
    -- later calls: the same client, once the replica is promoted (node timeout 2 s)
    local t0, errors, last = now_ms(), 0, nil
    while true do
        local ok, err, detail = lock:acquire()
        if ok then
            break
        end
        assert(ok == nil, "a busy lock nobody holds")
        assert(type(err) == "string" and detail and detail.message ~= "",
               "every failure is clear: " .. tostring(detail))
        errors, last = errors + 1, detail
        assert(now_ms() - t0 < 30000, "no success within 30 s of the kill; last: " .. tostring(last))
        sleep_ms(100)
    end
    local took = now_ms() - t0
    eq((assert(lock:release())), true, "release after the failover")
    for i = 1, 20 do
        eq((assert(lock:acquire())), true, "acquire " .. i .. " after the failover")
        eq((assert(lock:release())), true, "release " .. i .. " after the failover")
        assert(lim:check(subject), "check " .. i .. " after the failover")
    end
    local promoted = owner(slot_of("cf:lock:{fo}"))
    assert(promoted.id ~= victim.id, "the slot has a new master")
    print(("  failover: first error %q; success %d ms later after %d failed calls (last: %s); "
           .. "slot now on %s"):format(tostring(first_detail), took, errors, tostring(last),
        promoted.addr))
    c:close()
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
print(("lua-cluster-tests[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
