--- The test and benchmark app that runs inside nginx (started by
-- tests/harness/nginx_harness.py). Every route runs redpat over cosockets in a request
-- handler. Routes (GET, JSON answers):
--   /ping                        liveness
--   /driver                      which driver redpat picked inside nginx
--   /matrix/list                 names of the shared matrix cases
--   /matrix/case?name=N          runs one case here; {ok, why}
--   /cycle?name=&n=&hold_ms=     n lock cycles on one name, checking exclusion
--   /nonblocking                 a waiting acquire must let other light threads run
--   /errors                      error values over cosockets (refused connection, db select)
--   /ratelimit/headers?who=      a check limited to 2 per 10 s per who, answered with the
--                                rate limit headers (429 with Retry-After when refused)
--   /ratelimit/errors            limiters over cosockets: Redis down under each on_error
--                                policy, bad input, binary subjects, batch and multi
--   /contract/parallel?urls=     a Redlock over servers that answer 0.1 s after being asked
--                                (tests/lua/sleepy_proxy.py): timings of acquire, release
--   /contract/stopped            Redlock with 2 of 5 servers SIGSTOPped, then 3 of 5
--   /contract/using              lock:using while fn (ngx.sleep) outlives the TTL, beside a
--                                ticker; Redlock:using; failures
--   /contract/auto_renew         lock:auto_renew from an ngx.timer; on_lost when the key goes
--   /contract/abort?name=        lock:using under redpat.cancel_on_abort (the test aborts)
--   /contract/abort_acquire?name=&kind=&urls=
--                                an acquire (plain, fenced, redlock, waiting, using) through a
--                                proxy holding its SET's reply; the test aborts mid-round
--   /contract/pubsub             a subscriber in an ngx.timer: messages, patterns, binary,
--                                reconnect after CLIENT KILL TYPE pubsub
--   /cache/stampede/prime?mode=&name=, /cache/stampede?mode=&name=, /cache/stampede/loads?name=
--                                an expired (lock) / stale (swr) hot key, one get_or_load of it
--                                with a 50 ms loader counting its runs, the count
--   /cache/calls                 the stale-fill race (the loader invalidates through another
--                                client), a loader / writer that raises
--   /cache/abort?name=           a load under redpat.cancel_on_abort (the test aborts)
--   /cache/kill                  a light thread killed mid-load: the lock's fate
--   /cache/near?name=&init=      this worker's near-cache (init=1: the one made in
--                                init_by_lua): a near hit, dropped by another client's write
--   /hostile?port=&password=&op=&cap=&timeout_ms=
--                                one op against a hostile server: how it ended, its time,
--                                the worker's memory growth
--   /bench/redpat?n=             lock cycle (try-acquire + release) through redpat
--   /bench/floor?n=              the same Redis commands by plain cosocket code
--   /bench/floor1?n=             the same, one pooled connection per cycle
--   /bench/ratelimit?n=          GCRA checks through redpat
--   /bench/rlfloor?n=            the same EVALSHA by plain cosocket code
local cjson = require "cjson.safe"
local redpat = require "redpat"
local matrix = require "matrix"

local ngx = ngx
local M = {}

-- Microseconds of nginx's clock (millisecond resolution: time many iterations).
local function clock_us()
    ngx.update_time()
    return ngx.now() * 1e6
end

local cases, by_name = {}, {}

local function test_url()
    return assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not passed to nginx")
end

local release_src -- the release script's text, for the floor to SCRIPT LOAD
local ratelimit_src -- the rate limit script's text, for its floor

function M.init()
    local sdir = os.getenv("REDPAT_SCRIPTS_DIR")
    if sdir then
        local f = assert(io.open(sdir .. "/lock_release.lua", "rb"))
        release_src = f:read("*a")
        f:close()
        f = assert(io.open(sdir .. "/ratelimit.lua", "rb"))
        ratelimit_src = f:read("*a")
        f:close()
    end
    -- a near-cache made before the fork (init_by_lua): each worker starts its subscriber
    -- at its first use of it (/cache/near?init=1)
    local url = os.getenv("REDPAT_TEST_URL")
    if url and os.getenv("REDPAT_TEST_CLUSTER") ~= "1" then
        local c = assert(redpat.connect(url, { namespace = "cs" }))
        M.init_near = assert(c:cache("near-init", { ttl = 60000, near_size = 1000, near_ttl = 60000 }))
    end
    local dir = os.getenv("REDPAT_MATRIX_DIR")
    if dir then
        cases = matrix.load(dir, require "cjson")
        for _, c in ipairs(cases) do
            by_name[c.name] = c
        end
    end
end

local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
end

local clients = {}
local function get_client(namespace, opts)
    local key = namespace .. "/" .. tostring(opts and opts.pool_size)
    local c = clients[key]
    if not c then
        local o = { namespace = namespace }
        for k, v in pairs(opts or {}) do
            o[k] = v
        end
        c = assert(redpat.connect(test_url(), o))
        clients[key] = c
    end
    return c
end

local routes = {}

routes["/ping"] = function()
    return reply(200, { pong = true })
end

routes["/driver"] = function()
    return reply(200, { driver = get_client("drv"):driver() })
end

routes["/matrix/list"] = function()
    local names = {}
    for i, c in ipairs(cases) do
        names[i] = c.name
    end
    return reply(200, { cases = names })
end

-- kill(2) through LuaJIT's FFI: SIGSTOP / SIGCONT a test server without a shell
local ffi = require "ffi"
ffi.cdef [[ int kill(int pid, int sig); ]]
local SIGNALS = { STOP = 19, CONT = 18 } -- Linux

local function matrix_env()
    local urls, pids, nodes = matrix.servers(os.getenv)
    return {
        redpat = redpat,
        urls = urls,
        pids = pids,
        cluster = nodes ~= nil, -- REDPAT_TEST_CLUSTER=1 (nginx.conf passes it and the nodes)
        nodes = nodes,
        sleep_ms = function(ms)
            ngx.sleep(ms / 1000)
        end,
        signal = function(pid, sig)
            ffi.C.kill(pid, SIGNALS[sig])
        end,
    }
end

routes["/matrix/case"] = function(args)
    local case = by_name[args.name or ""]
    if not case then
        return reply(404, { ok = false, why = "no such case: " .. tostring(args.name) })
    end
    local ok, why = matrix.run_case(case, matrix_env())
    return reply(200, { ok = ok, why = why })
end

-- n lock cycles on one name. Inside each critical section: a Redis counter of holders
-- (must read 1) and a deliberately non-atomic read-modify-write of a total (GET, yield,
-- SET), which loses updates unless the lock excludes. Returns the cycles done.
routes["/cycle"] = function(args)
    local name = assert(args.name, "name")
    local n = tonumber(args.n or "5")
    local hold = tonumber(args.hold_ms or "1") / 1000
    local client = get_client("cc", { pool_size = tonumber(args.pool_size or "256") })
    local inside_key, total_key = "cc:inside:{" .. name .. "}", "cc:total:{" .. name .. "}"
    local done, violations, errors = 0, 0, {}
    for _ = 1, n do
        local lock = assert(client:lock(name, { ttl = 10000 }))
        local acquired, _, detail = lock:acquire({ wait = 20000, retry_min = 2, retry_max = 20 })
        if not acquired then
            errors[#errors + 1] = "acquire: " .. tostring(detail or "busy")
        else
            local inside = client:command("INCR", inside_key)
            if inside ~= 1 then
                violations = violations + 1
            end
            local total = tonumber(client:command("GET", total_key)) or 0
            ngx.sleep(hold)
            client:command("SET", total_key, total + 1)
            client:command("DECR", inside_key)
            local released, _, rdetail = lock:release()
            if released then
                done = done + 1
            else
                errors[#errors + 1] = "release: " .. tostring(rdetail)
            end
        end
    end
    return reply(200, { cycles = done, violations = violations, errors = errors, pid = ngx.worker.pid() })
end

routes["/nonblocking"] = function()
    local client = get_client("nb")
    local name = "nb-" .. ngx.worker.pid() .. "-" .. tostring(ngx.now())
    local a = assert(client:lock(name, { ttl = 5000 }))
    local b = assert(client:lock(name, { ttl = 5000 }))
    assert(a:acquire())
    local ticks = 0
    local ticker = ngx.thread.spawn(function()
        for _ = 1, 40 do
            ngx.sleep(0.01)
            ticks = ticks + 1
        end
    end)
    local holder = ngx.thread.spawn(function()
        ngx.sleep(0.2)
        return a:release()
    end)
    local t0 = clock_us()
    local acquired, fence_or_err, attempts = b:acquire({ wait = 3000, retry_min = 5, retry_max = 20 })
    local waited_ms = (clock_us() - t0) / 1000
    local ticks_at = ticks
    local _, released = ngx.thread.wait(holder)
    ngx.thread.wait(ticker)
    if acquired then
        b:release()
    end
    return reply(200, {
        acquired = acquired,
        err = acquired == nil and tostring(fence_or_err) or nil,
        attempts = attempts,
        waited_ms = waited_ms,
        ticks_during_wait = ticks_at,
        holder_released = released,
    })
end

-- A failure as the route reports it: nil, err (a string), detail (its table).
local function failure(result, err, detail)
    return {
        result = result,
        err = err,
        err_is_string = type(err) == "string",
        name = type(detail) == "table" and detail.name or nil,
        message = type(detail) == "table" and detail.message or nil,
        text = detail ~= nil and tostring(detail) or nil,
    }
end

routes["/errors"] = function()
    local out = {}
    -- a refused connection: nil, "transport", detail
    local dead = assert(redpat.connect("redis://127.0.0.1:1/0", { connect_timeout = 500 }))
    local lock = assert(dead:lock("x"))
    out.refused = failure(lock:acquire())
    -- release of a lock never acquired: not_owned
    local c = get_client("er")
    local l2 = assert(c:lock("never"))
    out.not_owned = failure(l2:release())
    -- a lost lock (expired while held): release is nil, "not_owned", detail
    local lost = assert(c:lock("lost-" .. ngx.worker.pid(), { ttl = 50 }))
    assert(lost:acquire())
    ngx.sleep(0.15)
    local lok, lerr, ldetail = lost:release()
    out.lost = failure(lok, lerr, ldetail)
    out.lost.equal = lerr == "not_owned"
    -- a refused password (cosockets run the core's handshake op): nil, "auth", detail
    local bad = assert(redpat.connect((test_url():gsub("^redis://", "redis://:nope@")),
                                      { namespace = "er", pool = "redpat-test-auth" }))
    out.auth = failure(bad:command("PING"))
    out.auth_lock = failure(assert(bad:lock("x")):acquire())
    -- an error reply from a raw command
    c:command("SET", "er:str", "x")
    out.reply_error = failure(c:command("LPUSH", "er:str", "y"))
    -- a URL with a database: the cosocket driver must SELECT it on new connections
    local url3 = test_url():gsub("/%d+$", "") .. "/3"
    local c3 = assert(redpat.connect(url3, { namespace = "er", pool = "redpat-test-db3" }))
    local l3 = assert(c3:lock("db3"))
    local got3 = l3:acquire()
    local in0 = c:command("EXISTS", "er:lock:{db3}")
    local in3 = c3:command("EXISTS", "er:lock:{db3}")
    l3:release()
    out.select = { acquired = got3, exists_db0 = in0, exists_db3 = in3 }
    -- binary bytes through cosockets
    local bin = "a\0b\r\n\255"
    local lb = assert(c:lock(bin))
    local gotb = lb:acquire({ token = "t\0k\r\n" })
    local stored = c:command("GET", "er:lock:{" .. bin .. "}")
    lb:release()
    out.binary = { acquired = gotb, token_roundtrip = stored == "t\0k\r\n" }
    -- a reply slower than command_timeout: timeout, and the socket is not pooled
    local slow = assert(redpat.connect(test_url(), { namespace = "er", command_timeout = 100,
                                                      pool = "redpat-test-slow" }))
    out.timeout = failure(slow:command("DEBUG", "SLEEP", "0.4"))
    ngx.sleep(0.5)
    out.timeout.ping_after = slow:command("PING")
    -- a lock acquire while another connection holds Redis asleep: nil, "timeout", detail
    local sleeper = ngx.thread.spawn(function()
        return c:command("DEBUG", "SLEEP", "0.4")
    end)
    ngx.sleep(0.05)
    local slow_lock = assert(slow:lock("slow"))
    local t0 = clock_us()
    local sok, serr, sdetail = slow_lock:acquire()
    out.lock_timeout = failure(sok, serr, sdetail)
    out.lock_timeout.equal = serr == "timeout"
    out.lock_timeout.waited_ms = (clock_us() - t0) / 1000
    ngx.thread.wait(sleeper)
    -- ops answered from the handle (lock.info) need no socket, also under the cosocket driver
    local li = assert(c:lock("info", { ttl = 1234, fenced = true }))
    local info = li:info()
    out.info = { ttl = info.ttl, fenced = info.fenced, token = info.token == nil, ttl_accessor = li:ttl() }
    -- bad input in Lua's words: an unknown option raises a string naming the valid ones;
    -- a value the core refuses is nil, "invalid_argument", detail
    local rok, rerr = pcall(c.lock, c, "x", { tll = 5 })
    out.unknown_option = { raised = not rok, message = rerr }
    local _, terr, tdetail = c:lock("x", { ttl = -1 })
    out.words = { err = terr, text = "lock: " .. tdetail }
    -- the generic op API over cosockets: any described op by name
    local r = redpat.perform("fence.check", c, { resource = "er-generic", token = 3 })
    out.perform = { accepted = r and r.accepted, highest = r and r.highest }
    return reply(200, out)
end

-- ---- driver contract v2: parallel rounds, Redlock, lock:using, auto-renew, pub/sub

local function now_ms()
    return redpat.core.monotonic_ms()
end

local function servers()
    local urls, pids = matrix.servers(os.getenv)
    assert(#urls >= 5 and #pids >= 5, "the tests need harness.py run --servers 5")
    return urls, pids
end

local function signal_all(pids, list, sig)
    for _, i in ipairs(list) do
        ffi.C.kill(pids[i], SIGNALS[sig])
    end
end

local function admin(url, ns)
    return assert(redpat.connect(url, { namespace = ns or "ct" }))
end

routes["/contract/parallel"] = function(args)
    local c = assert(redpat.connect(assert(args.urls, "urls"), { namespace = "ct" }))
    local lock = assert(c:redlock("par-" .. ngx.worker.pid(), { ttl = 10000, node_timeout = 2000 }))
    local t0 = now_ms()
    local acquired, _, _, validity = lock:acquire()
    local acquire_ms = now_ms() - t0
    t0 = now_ms()
    local released, _, rdetail = lock:release()
    local release_ms = now_ms() - t0
    return reply(200, { acquired = acquired, validity = validity, acquire_ms = acquire_ms,
                        released = released, release_error = rdetail and tostring(rdetail),
                        release_ms = release_ms })
end

routes["/contract/stopped"] = function()
    local urls, pids = servers()
    local c = assert(redpat.client{ url = { urls[1], urls[2], urls[3], urls[4], urls[5] },
                                    namespace = "ct" })
    local name = "stop-" .. ngx.worker.pid()
    local out = {}
    local lock = assert(c:redlock(name, { ttl = 5000, node_timeout = 1000 }))
    signal_all(pids, { 4, 5 }, "STOP")
    local ok, err = pcall(function()
        local t0 = now_ms()
        local acquired, _, _, validity = lock:acquire()
        out.two = { acquired = acquired, ms = now_ms() - t0, validity = validity,
                    nodes = lock:info().nodes }
        out.two.on_first = admin(urls[1]):command("GET", "ct:lock:{" .. name .. "}") == lock:token()
        lock:release()
    end)
    signal_all(pids, { 4, 5 }, "CONT")
    assert(ok, err)
    local lock3 = assert(c:redlock(name .. "-3", { ttl = 5000, node_timeout = 200 }))
    signal_all(pids, { 3, 4, 5 }, "STOP")
    ok, err = pcall(function()
        local t0 = now_ms()
        local acquired, e = lock3:acquire()
        out.three = { acquired = acquired, err = e, ms = now_ms() - t0,
                      left = admin(urls[1]):command("EXISTS", "ct:lock:{" .. name .. "-3}")
                          + admin(urls[2]):command("EXISTS", "ct:lock:{" .. name .. "-3}") }
    end)
    signal_all(pids, { 3, 4, 5 }, "CONT")
    assert(ok, err)
    return reply(200, out)
end

routes["/contract/using"] = function()
    local urls = servers()
    local c = admin(urls[1])
    local name = "using-" .. ngx.worker.pid()
    local key = "ct:lock:{" .. name .. "}"
    local out = {}
    -- fn outlives the ttl three times over; a ticker in the same request keeps running
    local ticks = 0
    local ticker = ngx.thread.spawn(function()
        for _ = 1, 100 do
            ngx.sleep(0.01)
            ticks = ticks + 1
        end
    end)
    local lock = assert(c:lock(name, { ttl = 300 }))
    local seen = {}
    local t0 = now_ms()
    local a, b = lock:using(function(x)
        ngx.sleep(1)
        seen.pttl = c:command("PTTL", key)
        seen.token = c:command("GET", key)
        seen.ticks = ticks
        return x * 2, "b"
    end, 21)
    out.renewed = { a = a, b = b, pttl = seen.pttl, held = type(seen.token) == "string",
                    exists_after = c:command("EXISTS", key), ms = now_ms() - t0,
                    ticks = seen.ticks }
    ngx.thread.wait(ticker)
    -- a Redlock's using renews on the majority
    local all = assert(redpat.client{ url = table.concat(urls, ",", 1, 5), namespace = "ct" })
    local rl = assert(all:redlock(name .. "-r", { ttl = 300 }))
    local pttls = {}
    local r = rl:using(function()
        ngx.sleep(0.8)
        for i = 1, 5 do
            pttls[i] = admin(urls[i]):command("PTTL", "ct:lock:{" .. name .. "-r}")
        end
        return "r"
    end)
    out.redlock = { r = r, pttls = pttls }
    -- failures: busy, callback, lost
    local holder = assert(c:lock(name .. "-b", { ttl = 5000 }))
    assert(holder:acquire())
    local ran = false
    local _, berr = assert(c:lock(name .. "-b")):using(function()
        ran = true
    end)
    holder:release()
    local raised = { "a table" }
    local _, cerr, cdetail = assert(c:lock(name .. "-c")):using(function()
        ngx.sleep(0.01)
        error(raised)
    end)
    local _, lerr, ldetail = assert(c:lock(name .. "-l", { ttl = 100 })):using({ renew = false },
        function()
            ngx.sleep(0.3)
            return "late"
        end)
    out.failures = { busy = berr, ran = ran, callback = cerr, same_error = cdetail and cdetail.error == raised,
                     released = c:command("EXISTS", "ct:lock:{" .. name .. "-c}"),
                     lost = lerr, late = ldetail and ldetail.results and ldetail.results[1] }
    return reply(200, out)
end

routes["/contract/auto_renew"] = function()
    local urls = servers()
    local c = admin(urls[1])
    local name = "ar-" .. ngx.worker.pid()
    local out = {}
    local lock = assert(c:lock(name, { ttl = 300 }))
    assert(lock:acquire())
    assert(lock:auto_renew())
    ngx.sleep(1)
    out.renewed = { pttl = c:command("PTTL", "ct:lock:{" .. name .. "}") }
    out.renewed.released = lock:release()
    -- counted once release has returned: a renewal may finish while release waits on Redis
    out.renewed.renewals = lock:renewals()
    ngx.sleep(0.3)
    out.renewed.renewals_after = lock:renewals()
    -- a lost lock is reported in the timer
    local lost_sema = require("ngx.semaphore").new(0)
    local lost = {}
    local l2 = assert(c:lock(name .. "-lost", { ttl = 300 }))
    assert(l2:acquire())
    assert(l2:auto_renew{ on_lost = function(l, err, detail)
        lost.err, lost.message, lost.same = err, detail and detail.message, l == l2
        lost_sema:post(1)
    end })
    c:command("DEL", "ct:lock:{" .. name .. "-lost}")
    out.lost = { posted = lost_sema:wait(2) == true, err = lost.err, same = lost.same }
    local rok, rerr = pcall(lock.auto_renew, lock, { max_hld = 1 })
    out.bad_option = { raised = not rok, message = rerr }
    return reply(200, out)
end

-- A lock:using whose fn would run 3 s; the client aborts the request meanwhile. With
-- redpat.cancel_on_abort the op is cancelled: fn's thread is killed, the lock released at
-- once. What lock:using returned goes to Redis (ct:abort:<name>): nobody reads the reply.
routes["/contract/abort"] = function(args)
    local name = assert(args.name, "name")
    local c = admin(servers()[1])
    assert(redpat.cancel_on_abort())
    local lock = assert(c:lock(name, { ttl = 10000 }))
    local t0 = now_ms()
    local r, err = lock:using(function()
        c:command("SET", "ct:abort:" .. name .. ":in", "1")
        ngx.sleep(3)
        return "finished"
    end)
    c:command("SET", "ct:abort:" .. name, tostring(r) .. "/" .. tostring(err) .. "/" .. (now_ms() - t0))
    return reply(200, { r = r, err = err })
end

-- An acquire through tests/harness/delay_proxy.py, which lets its SET reach Redis but
-- holds the reply; the client aborts the request meanwhile. Under redpat.cancel_on_abort
-- the round is interrupted and the op releases what its SET took, before acquire returns
-- nil, "cancelled". The outcome goes to Redis (ct:abort:<name>): nobody reads the reply.
routes["/contract/abort_acquire"] = function(args)
    local name, kind = assert(args.name, "name"), args.kind or "plain"
    local c0 = admin(servers()[1])
    assert(redpat.cancel_on_abort())
    -- a command timeout far past the test: only the abort may end the wait for the reply
    local c = assert(redpat.connect(assert(args.urls, "urls"),
                                    { namespace = "ct", command_timeout = 20000 }))
    local lock
    if kind == "redlock" then
        lock = assert(c:redlock(name, { ttl = 30000, node_timeout = 20000 }))
    else
        lock = assert(c:lock(name, { ttl = 30000, fenced = kind == "fenced" }))
    end
    local t0 = now_ms()
    local r, err
    if kind == "using" then
        r, err = lock:using(function()
            c0:command("SET", "ct:abort:" .. name .. ":ran", "1") -- never: not acquired
            return "ran"
        end)
    else
        r, err = lock:acquire(kind == "waiting" and { wait = 10000 } or nil)
    end
    c0:command("SET", "ct:abort:" .. name, tostring(r) .. "/" .. tostring(err) .. "/"
               .. (now_ms() - t0) .. "/" .. tostring(lock:token()))
    return reply(200, { r = r, err = err })
end

-- The subscriber of /contract/pubsub lives in an ngx.timer (a long listener's usual home):
-- it reports each message through this worker-level state.
local pubsub_runs = {}

routes["/contract/pubsub"] = function()
    local urls = servers()
    local c = admin(urls[1])
    local id = "ps-" .. ngx.worker.pid() .. "-" .. now_ms()
    local run = { messages = {}, sema = require("ngx.semaphore").new(0) }
    pubsub_runs[id] = run
    local ok, terr = ngx.timer.at(0, function()
        local tc = admin(urls[1])
        local sub = assert(tc:subscribe{ channels = { id, id .. "\0b" }, patterns = { id .. ":*" } })
        while not run.stop do
            local m, err, detail = sub:next(200)
            if m then
                run.messages[#run.messages + 1] = m
                run.sema:post(1)
            elseif err ~= "timeout" then
                run.error = tostring(detail)
                run.sema:post(1)
                break
            end
        end
        sub:close()
        run.closed = true
        run.sema:post(1)
    end)
    assert(ok, terr)
    local function await(n) -- until n messages came
        local deadline = now_ms() + 5000
        while #run.messages < n and not run.error and now_ms() < deadline do
            run.sema:wait(0.5)
        end
        return #run.messages
    end
    local out = {}
    out.confirmed = await(3)
    out.receivers = { c:publish(id, "x\0y\r\n\255"), c:publish(id .. "\0b", "bin"),
                      c:publish(id .. ":1", "pat") }
    await(6)
    out.killed = c:command("CLIENT", "KILL", "TYPE", "pubsub")
    await(7)
    out.after = c:publish(id, "after")
    await(8)
    run.stop = true
    local deadline = now_ms() + 2000
    while not run.closed and now_ms() < deadline do
        run.sema:wait(0.2)
    end
    out.closed = run.closed
    out.error = run.error
    out.messages = {}
    for i, m in ipairs(run.messages) do
        out.messages[i] = { kind = m.kind, channel = m.channel and ngx.encode_base64(m.channel),
                            pattern = m.pattern, data = m.data and ngx.encode_base64(m.data),
                            count = m.count }
    end
    out.after_close = c:publish(id, "gone")
    pubsub_runs[id] = nil
    return reply(200, out)
end

-- ---- caches (issue 13): the stampede over concurrent requests, the stale-fill race, a
-- loader that raises, an aborted / killed load, the per-worker near-cache

-- This worker's caches (made once per worker, as an application would), by name.
local caches = {}
local function worker_cache(name, opts)
    local c = caches[name]
    if c == nil then
        c = assert(get_client("cs", { pool_size = 256 }):cache(name, opts))
        caches[name] = c
    end
    return c
end

local STAMPEDE = {
    lock = { ttl = 60000, stampede = "lock", serializer = false },
    swr = { ttl = 60000, stampede = "swr", stale = 60000, serializer = false },
}

-- /cache/stampede/prime?mode=&name=: an entry that has just expired (lock) or is past its
-- soft expiry (swr: still served stale), and a zeroed load counter.
routes["/cache/stampede/prime"] = function(args)
    local mode, name = assert(args.mode, "mode"), assert(args.name, "name")
    local c = get_client("cs", { pool_size = 256 })
    c:command("DEL", "cs:loads:" .. name)
    local short = assert(c:cache(name, { ttl = 100, stampede = mode, stale = 60000,
                                         serializer = false }))
    assert(short:set("hot", "old"))
    ngx.sleep(0.2)
    short:close()
    return reply(200, { exists = c:command("EXISTS", "cs:cache:{" .. name .. ":hot}") })
end

-- /cache/stampede?mode=&name=: one get_or_load of the hot key, a 50 ms loader counting its
-- runs in Redis.
routes["/cache/stampede"] = function(args)
    local mode, name = assert(args.mode, "mode"), assert(args.name, "name")
    local cache = worker_cache(name, STAMPEDE[mode])
    local c = get_client("cs", { pool_size = 256 })
    local t0 = now_ms()
    local v, err, rec = cache:get_or_load("hot", function()
        c:command("INCR", "cs:loads:" .. name)
        ngx.sleep(0.05)
        return "fresh"
    end)
    if err then
        return reply(500, { err = err, message = tostring(rec) })
    end
    return reply(200, { value = v, loaded = rec.loaded, stale = rec.stale, waits = rec.waits,
                        ms = now_ms() - t0, pid = ngx.worker.pid() })
end

routes["/cache/stampede/loads"] = function(args)
    local c = get_client("cs", { pool_size = 256 })
    return reply(200, { loads = tonumber(c:command("INCRBY", "cs:loads:" .. assert(args.name), "0")) })
end

-- /cache/calls: the stale-fill race (the loader deletes / sets the entry through another
-- client before returning the old row) and a loader that raises.
routes["/cache/calls"] = function()
    local out = {}
    local id = "cc" .. ngx.worker.pid() .. "-" .. now_ms()
    local c = get_client("cs")
    local c2 = assert(redpat.connect(test_url(), { namespace = "cs", pool = "redpat-cache-other" }))
    local readers = assert(c:cache(id, { ttl = 60000 }))
    local writer = assert(c2:cache(id, { ttl = 60000 }))
    local entry = "cs:cache:{" .. id .. ":row}"
    local v, err, rec = readers:get_or_load("row", function()
        local _, derr = writer:delete("row")
        assert(derr == nil, derr)
        return { name = "old" }
    end)
    out.race_delete = { value = v and v.name, err = err, loaded = rec and rec.loaded,
                        stored = rec and rec.stored, exists = c:command("EXISTS", entry) }
    local after, _, arec = readers:get("row")
    out.race_delete.after = { value = after, hit = arec.hit }
    v, err, rec = readers:get_or_load("row", function()
        assert(writer:set("row", { name = "new" }))
        return { name = "old" }
    end)
    out.race_set = { value = v and v.name, err = err, stored = rec and rec.stored,
                     after = readers:get("row").name }
    -- a loader that raises
    local lock_key = "cs:cache:{" .. id .. ":boom}:lock"
    local held
    local boom = { why = "db down" }
    v, err, rec = readers:get_or_load("boom", function()
        held = c:command("EXISTS", lock_key)
        error(setmetatable(boom, { __tostring = function() return "db down" end }))
    end)
    out.raise = { value = v, err = err, message = rec and rec.message, same = rec and rec.error == boom,
                  held = held, lock = c:command("EXISTS", lock_key),
                  entry = c:command("EXISTS", "cs:cache:{" .. id .. ":boom}") }
    out.raise.text = tostring(select(3, readers:get_or_load("boom", function() error("plain text", 0) end)))
    -- a writer that raises leaves the cache as it was
    assert(readers:set("w", "before"))
    v, err, rec = readers:write("w", "after", function() error("refused", 0) end)
    out.write = { err = err, message = rec and rec.message, value = readers:get("w") }
    readers:close()
    writer:close()
    c2:close()
    return reply(200, out)
end

-- /cache/abort?name=: a load under redpat.cancel_on_abort whose loader would run 3 s; the
-- test aborts the request. The outcome goes to Redis (cs:abort:<name>).
routes["/cache/abort"] = function(args)
    local name = assert(args.name, "name")
    local c = get_client("cs")
    assert(redpat.cancel_on_abort())
    local cache = assert(c:cache(name, { ttl = 60000, lock_ttl = 10000, serializer = false }))
    local t0 = now_ms()
    local v, err = cache:get_or_load("k", function()
        c:command("SET", "cs:abort:" .. name .. ":in", "1")
        ngx.sleep(3)
        c:command("SET", "cs:abort:" .. name .. ":ran", "1")
        return "finished"
    end)
    c:command("SET", "cs:abort:" .. name, tostring(v) .. "/" .. tostring(err) .. "/" .. (now_ms() - t0))
    return reply(200, { v = v, err = err })
end

-- /cache/kill: a light thread loading is killed (ngx.thread.kill) mid-load: nothing can
-- clean up, so the load lock stays until its lock_ttl; then the next caller loads.
routes["/cache/kill"] = function()
    local id = "ck" .. ngx.worker.pid() .. "-" .. now_ms()
    local c = get_client("cs")
    local cache = assert(c:cache(id, { ttl = 60000, lock_ttl = 300, serializer = false }))
    local lock_key = "cs:cache:{" .. id .. ":k}:lock"
    local out = {}
    local t = ngx.thread.spawn(function()
        return cache:get_or_load("k", function()
            ngx.sleep(0.6)
            c:command("SET", "cs:kill:" .. id .. ":ran", "1")
            return "from the killed load"
        end)
    end)
    ngx.sleep(0.1)
    out.held = c:command("EXISTS", lock_key)
    out.killed = ngx.thread.kill(t) == 1
    out.pttl = c:command("PTTL", lock_key)
    local t0 = now_ms()
    local v, err, rec = cache:get_or_load("k", function() return "reloaded" end)
    out.next = { value = v, err = err, loaded = rec and rec.loaded, waits = rec and rec.waits,
                 ms = now_ms() - t0 }
    ngx.sleep(0.7)
    out.orphan_ran = c:command("EXISTS", "cs:kill:" .. id .. ":ran")
    out.final = cache:get("k")
    cache:close()
    return reply(200, out)
end

-- /cache/near?name=: this worker's near-cache (near_size > 0, its subscriber in an
-- ngx.timer): a near hit after a first read, and another client's write drops it.
routes["/cache/near"] = function(args)
    local name = assert(args.name, "name")
    local near
    if args.init == "1" then
        name, near = "near-init", assert(M.init_near, "no cache made in init_by_lua")
    else
        near = worker_cache(name, { ttl = 60000, near_size = 1000, near_ttl = 60000 })
    end
    local other_client = assert(redpat.connect(test_url(), { namespace = "cs", pool = "redpat-cache-other" }))
    local other = assert(other_client:cache(name, { ttl = 60000 }))
    local out = { pid = ngx.worker.pid() }
    local t0 = now_ms()
    while not near:info().near_armed and now_ms() - t0 < 3000 do
        ngx.sleep(0.005)
    end
    out.armed_ms = now_ms() - t0
    out.armed = near:info().near_armed
    local key = "k" .. now_ms()
    assert(other:set(key, { v = 1 }))
    -- this write's own invalidation is on its way to the subscriber: let it land first (it
    -- would drop the copy the next read makes)
    ngx.sleep(0.05)
    local _, _, r1 = near:get(key)
    local v2, _, r2 = near:get(key)
    out.first = { near = r1.near, hit = r1.hit }
    out.second = { near = r2.near, value = v2 and v2.v }
    out.entries = near:info().near_entries
    assert(other:set(key, { v = 2 }))
    t0 = now_ms()
    local v, rec
    repeat
        v, _, rec = near:get(key)
        if v and v.v == 2 then
            break
        end
        ngx.sleep(0.001)
    until now_ms() - t0 > 2000
    out.dropped_ms = now_ms() - t0
    out.after = { value = v and v.v, near = rec.near }
    local _, _, r3 = near:get(key)
    out.again = r3.near
    -- a delete elsewhere drops it too
    assert(other:delete(key))
    t0 = now_ms()
    repeat
        v, _, rec = near:get(key)
        if v == nil then
            break
        end
        ngx.sleep(0.001)
    until now_ms() - t0 > 2000
    out.deleted = { value = v, hit = rec.hit, ms = now_ms() - t0 }
    -- the subscriber's connection killed: its reconnect clears the near-cache, and the
    -- subscribe after it arms it again
    assert(other:set(key, "x"))
    ngx.sleep(0.05)
    near:get(key)
    local _, _, before = near:get(key)
    local c = get_client("cs")
    local killed = c:command("CLIENT", "KILL", "TYPE", "pubsub")
    t0 = now_ms()
    local cleared
    repeat
        local _, _, r = near:get(key)
        if not r.near then
            cleared = now_ms() - t0
        end
        ngx.sleep(0.002)
    until cleared or now_ms() - t0 > 3000
    repeat
        ngx.sleep(0.005)
    until near:info().near_armed or now_ms() - t0 > 5000
    near:get(key)
    local _, _, again = near:get(key)
    out.reconnect = { before = before.near, killed = killed, cleared_ms = cleared,
                      rearmed = near:info().near_armed, near_again = again.near }
    other:close()
    other_client:close()
    return reply(200, out)
end

-- ---- rate limiters

routes["/ratelimit/headers"] = function(args)
    local client = get_client("rh")
    local limiter = assert(client:ratelimiter("hdr", { algorithm = "fixed_window", limit = 2, window = 10000 }))
    local who = assert(args.who, "who")
    local d, _, detail = limiter:check(who)
    if not d then
        return reply(500, { error = tostring(detail) })
    end
    redpat.ratelimit_headers(d)
    return reply(d.allowed and 200 or 429, d)
end

local function decision_or_error(d, err, detail)
    if d == nil then
        return { err = err, message = detail and detail.message }
    end
    local out = {}
    for k, v in pairs(d) do
        out[k] = v
    end
    out.error = d.error and d.error.name or nil
    return out
end

routes["/ratelimit/errors"] = function()
    local out = {}
    -- Redis down (a refused connection): each policy decides, a failure is never silent
    local dead = assert(redpat.connect("redis://127.0.0.1:1/0", { namespace = "re", connect_timeout = 500 }))
    local report = assert(dead:ratelimiter("r", { limit = 5, window = 1000 }))
    local open = assert(dead:ratelimiter("o", { limit = 5, window = 1000, on_error = "fail_open" }))
    local closed = assert(dead:ratelimiter("c", { limit = 5, window = 1000, on_error = "fail_closed" }))
    out.down_report = decision_or_error(report:check("u"))
    out.down_open = decision_or_error(open:check("u"))
    out.down_closed = decision_or_error(closed:check("u"))
    local list = assert(open:batch({ "a", "b" }))
    out.down_open_batch = { #list, list[1].allowed, list[2].degraded }
    out.down_multi = decision_or_error(dead:ratelimit_multi({ open, closed }, "u"))
    -- bad input names the argument
    local c = get_client("re")
    local _, _, e1 = c:ratelimiter("x", { algorithm = "leaky", limit = 5, window = 1000 })
    local l = assert(c:ratelimiter("x", { limit = 2, window = 10000 }))
    local _, _, e2 = l:check("u", 3)
    out.bad = { algorithm = e1 and tostring(e1), cost = e2 and tostring(e2) }
    -- binary subjects, batch and multi over cosockets
    assert(l:reset("a\0b\r\n\255"))
    local b1 = assert(l:check("a\0b\r\n\255"))
    local b2 = assert(l:check("a\0c\r\n\255"))
    out.binary = { first = b1.remaining, other = b2.remaining,
                   key = c:command("EXISTS", "re:rl:x:{a\0b\r\n\255}") }
    local batch = assert(l:batch({ "a\0b\r\n\255", "a\0b\r\n\255", "z" }))
    out.batch = { batch[1].allowed, batch[2].allowed, batch[3].allowed }
    local m = assert(c:ratelimiter("m", { algorithm = "gcra", limit = 10, window = 10000 }))
    assert(m:reset("z"))
    local md1 = assert(c:ratelimit_multi({ m, l }, "z")) -- l has 1 left for z after the batch
    local md2 = assert(c:ratelimit_multi({ m, l }, "z"))
    out.multi = { md1.allowed, md2.allowed, md2.refused_by, m:check("z", 0).remaining }
    assert(l:reset("a\0b\r\n\255"))
    assert(l:reset("a\0c\r\n\255"))
    assert(l:reset("z"))
    return reply(200, out)
end

-- ---- benchmarks

local function endpoint()
    local host, port = test_url():match("^redis://([^:/]+):(%d+)")
    return host, tonumber(port)
end

local function warmup_count(n)
    local w = math.floor(n / 10)
    return w < 100 and 100 or w
end

routes["/bench/redpat"] = function(args)
    local n = tonumber(args.n or "2000")
    local client = get_client("rpbench", { pool_size = 64 })
    local lock = assert(client:lock("cyc-o", { ttl = 30000 }))
    local function cycle()
        local acquired, _, detail = lock:acquire()
        if not acquired then
            error("acquire: " .. tostring(detail or "busy"))
        end
        local ok, _, rdetail = lock:release()
        if not ok then
            error("release: " .. tostring(rdetail))
        end
    end
    for _ = 1, warmup_count(n) do
        cycle()
    end
    local t0 = clock_us()
    for _ = 1, n do
        cycle()
    end
    local us = (clock_us() - t0) / n
    return reply(200, { cycle_us = us, cycles_per_s = 1e6 / us, n = n })
end

local tcp = ngx.socket.tcp
local format = string.format

-- The floor: the lock cycle's Redis commands written by hand over plain cosockets, as lean
-- as such code gets (constant RESP parts built once, one concatenation per request, line
-- reads as lua-resty-redis does): SET key token NX PX 30000, then EVALSHA of the same
-- release script redpat runs.
local FLOOR_KEY = "rpbench:lock:{cyc-f}" -- same shape and length as redpat's key
local POOL = { pool = "floor", pool_size = 64 }
local SET_HEAD = "*6\r\n$3\r\nSET\r\n$" .. #FLOOR_KEY .. "\r\n" .. FLOOR_KEY .. "\r\n$32\r\n"
local SET_TAIL = "\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"
local eval_head -- built once the script's SHA is known

local function floor_connect(host, port)
    local sock = tcp()
    sock:settimeouts(2000, 2000, 2000)
    local ok, err = sock:connect(host, port, POOL)
    if not ok then
        error("connect: " .. tostring(err))
    end
    return sock
end

local function floor_exchange(sock, req)
    local ok, err = sock:send(req)
    if not ok then
        error("send: " .. tostring(err))
    end
    local line, rerr = sock:receive()
    if not line then
        error("receive: " .. tostring(rerr))
    end
    return line
end

local function floor_setup(host, port)
    if eval_head then
        return
    end
    local src = assert(release_src, "REDPAT_SCRIPTS_DIR is not passed to nginx")
    local sock = floor_connect(host, port)
    local line = floor_exchange(sock, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$" .. #src .. "\r\n" .. src .. "\r\n")
    assert(line == "$40", "SCRIPT LOAD: " .. tostring(line))
    local sha = sock:receive(40)
    sock:receive() -- CRLF
    sock:setkeepalive(60000, 64)
    eval_head = "*5\r\n$7\r\nEVALSHA\r\n$40\r\n" .. sha .. "\r\n$1\r\n1\r\n$" .. #FLOOR_KEY .. "\r\n"
        .. FLOOR_KEY .. "\r\n$32\r\n"
end

-- Acquire and release each take a pooled connection (as a lock's acquire and release do,
-- with work between them); one_conn keeps one connection for the whole cycle.
local serial = 0
local token_prefix
local function floor_cycle(host, port, one_conn)
    serial = serial + 1
    token_prefix = token_prefix or format("%016x", ngx.worker.pid())
    local token = token_prefix .. format("%016x", serial)
    local sock = floor_connect(host, port)
    local line = floor_exchange(sock, SET_HEAD .. token .. SET_TAIL)
    if line ~= "+OK" then
        error("SET: " .. tostring(line))
    end
    if not one_conn then
        sock:setkeepalive(60000, 64)
        sock = floor_connect(host, port)
    end
    line = floor_exchange(sock, eval_head .. token .. "\r\n")
    if line ~= ":1" then
        error("EVALSHA: " .. tostring(line))
    end
    sock:setkeepalive(60000, 64)
end

local function bench_floor(args, one_conn)
    local n = tonumber(args.n or "2000")
    local host, port = endpoint()
    floor_setup(host, port)
    for _ = 1, warmup_count(n) do
        floor_cycle(host, port, one_conn)
    end
    local t0 = clock_us()
    for _ = 1, n do
        floor_cycle(host, port, one_conn)
    end
    local us = (clock_us() - t0) / n
    return reply(200, { cycle_us = us, cycles_per_s = 1e6 / us, n = n })
end

routes["/bench/floor"] = function(args)
    return bench_floor(args, false)
end

routes["/bench/floor1"] = function(args)
    return bench_floor(args, true)
end

-- Rate limit checks: GCRA with a limit no run reaches, so every check is allowed and
-- consumes. The floor sends the EVALSHA redpat sends (same script, key and arguments: one
-- limit of cost 1, "g" for GCRA, limit, window; the burst is the limit, not sent) and reads
-- its one-integer answer (>= 0: allowed).
local RL_LIMIT, RL_WINDOW = 1000000000, 60000

routes["/bench/ratelimit"] = function(args)
    local n = tonumber(args.n or "2000")
    local client = get_client("rpbench", { pool_size = 64 })
    local limiter = assert(client:ratelimiter("b-gcra", { algorithm = "gcra", limit = RL_LIMIT, window = RL_WINDOW }))
    local function check()
        local d, _, detail = limiter:check("user:bench")
        if not d or not d.allowed then
            error("check: " .. tostring(detail or "refused"))
        end
    end
    for _ = 1, warmup_count(n) do
        check()
    end
    local t0 = clock_us()
    for _ = 1, n do
        check()
    end
    local us = (clock_us() - t0) / n
    return reply(200, { check_us = us, checks_per_s = 1e6 / us, n = n })
end

local rl_request -- the whole EVALSHA request, built once the script's SHA is known

local function rl_floor_setup(host, port)
    if rl_request then
        return
    end
    local src = assert(ratelimit_src, "REDPAT_SCRIPTS_DIR is not passed to nginx")
    local sock = floor_connect(host, port)
    local line = floor_exchange(sock, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$" .. #src .. "\r\n" .. src .. "\r\n")
    assert(line == "$40", "SCRIPT LOAD: " .. tostring(line))
    local sha = sock:receive(40)
    sock:receive() -- CRLF
    sock:setkeepalive(60000, 64)
    local key = "rpbench:rl:f-gcra:{user:bench}" -- same shape and length as redpat's
    local argv = { "EVALSHA", sha, "1", key, "g", tostring(RL_LIMIT), tostring(RL_WINDOW) }
    local parts = { "*" .. #argv .. "\r\n" }
    for _, a in ipairs(argv) do
        parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
    end
    rl_request = table.concat(parts)
end

local function rl_floor_check(host, port)
    local sock = floor_connect(host, port)
    local line = floor_exchange(sock, rl_request)
    if not (line and line:match("^:%d+$")) then -- (":-..." would be a refusal)
        error("EVALSHA: " .. tostring(line))
    end
    sock:setkeepalive(60000, 64)
end

routes["/bench/rlfloor"] = function(args)
    local n = tonumber(args.n or "2000")
    local host, port = endpoint()
    rl_floor_setup(host, port)
    for _ = 1, warmup_count(n) do
        rl_floor_check(host, port)
    end
    local t0 = clock_us()
    for _ = 1, n do
        rl_floor_check(host, port)
    end
    local us = (clock_us() - t0) / n
    return reply(200, { check_us = us, checks_per_s = 1e6 / us, n = n })
end

-- /hostile?port=&password=&op=&cap=&timeout_ms=: one op (command | acquire | check) over
-- cosockets against a hostile server (tests/harness/hostile_server.py) on 127.0.0.1:port;
-- answers how it ended, how long it took and this worker's memory around it (kB).
local function proc_kb(field)
    local f = assert(io.open("/proc/self/status"))
    local text = f:read("*a")
    f:close()
    return tonumber(text:match(field .. ":%s*(%d+)"))
end

routes["/hostile"] = function(args)
    local timeout = tonumber(args.timeout_ms) or 1000
    local url = ("redis://%s127.0.0.1:%s/0"):format(
        args.password and (":" .. args.password .. "@") or "", args.port)
    local c = assert(redpat.connect(url, { namespace = "hostile", command_timeout = timeout,
        connect_timeout = timeout, max_reply_size = tonumber(args.cap) }))
    local f = io.open("/proc/self/clear_refs", "w") -- VmHWM back to the current RSS
    if f then
        f:write("5")
        f:close()
    end
    local before = proc_kb("VmRSS")
    ngx.update_time()
    local t0 = ngx.now()
    local result, err, detail
    if args.op == "command" then
        result, err, detail = c:command("PING")
    elseif args.op == "acquire" then
        result, err, detail = assert(c:lock("res", { ttl = 10000 })):acquire()
    else
        result, err, detail = assert(c:ratelimiter("api", { algorithm = "gcra", limit = 10,
            window = 1000 })):check("u")
    end
    ngx.update_time()
    return reply(200, { result = result ~= nil, err = err, message = detail and detail.message,
        took_ms = (ngx.now() - t0) * 1000, growth_kb = proc_kb("VmHWM") - before })
end

function M.handle()
    local route = routes[ngx.var.uri]
    if not route then
        return reply(404, { error = "no route " .. ngx.var.uri })
    end
    local ok, err = pcall(route, ngx.req.get_uri_args())
    if not ok then
        ngx.log(ngx.ERR, "route ", ngx.var.uri, " raised: ", tostring(err))
        return reply(500, { error = tostring(err) })
    end
end

return M
