-- nginx app for the OpenResty cluster fault tests (tests/openresty/run_tests.py
-- --cluster-faults, beside harness.py run --cluster --servers 1 --replicas 1): the cosocket
-- driver through a live reshard and a master's failover, the faults themselves done by
-- run_tests.py (tests/harness/harness.py's RedisCluster) while a request loops here.
--   /ping                          up?
--   /reshard?ms=&ns=               a held lock (a rival kept out), a limiter subject checked
--                                  and the lock extended in a loop for ms; every failure,
--                                  then the limit's rest in one check and one refusal
--   /failover?ns=&subject=&wait_ms=  limiter checks until one fails (the master is killed
--                                  meanwhile), then lock cycles until one succeeds on the
--                                  same client, then 20 more
--   /command?key=&other=           client:command over cosockets: SET / GET routed by their
--                                  key, DBSIZE without a key (refused), with key and other
--   /auth?pw=&names=               with the password in the cluster URL: a lock cycle and a
--                                  check per name (names: one per master); without it and
--                                  with a wrong one: the acquire's error
--   /subscribe?url=&nodes=         a subscription over url (seeds in the order given), the
--                                  PUBSUB NUMSUB of its channel on each of nodes (plain
--                                  URLs), and a publish's receivers
local cjson = require "cjson.safe"
local redpat = require "redpat"

local ngx = ngx
local M = {}

local function now_ms()
    ngx.update_time()
    return ngx.now() * 1000
end

local function reply(body)
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
end

local function url()
    return assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not passed to nginx")
end

local routes = {}

routes["/ping"] = function()
    return reply({ pong = true })
end

routes["/reshard"] = function(args)
    local ms, ns = tonumber(args.ms or "3000"), args.ns or "or"
    local c = assert(redpat.connect(url(), { namespace = ns }))
    local o = assert(redpat.connect(url(), { namespace = ns }))
    local limit = 60000 -- (a sliding log's cost is at most 65536: the rest goes in one check)
    local lim = assert(c:ratelimiter("api", { algorithm = "sliding_log", limit = limit,
                                              window = 600000 }))
    local holder = assert(c:lock("orders", { ttl = 60000, fenced = true }))
    local rival = assert(o:lock("orders", { ttl = 60000, fenced = true }))
    local out = { errors = {}, rounds = 0, driver = c:driver() }
    local function fail(what, detail)
        out.errors[#out.errors + 1] = what .. ": " .. tostring(detail)
    end
    local acquired, fence = holder:acquire()
    out.acquired = acquired
    local checks = 0
    local t_end = now_ms() + ms
    while now_ms() < t_end and #out.errors < 5 do
        out.rounds = out.rounds + 1
        local d, err, detail
        if checks < limit - 1 then
            d, err, detail = lim:check("alice")
        end
        if checks >= limit - 1 then -- (the limit reached: the lock's calls go on)
        elseif not d then
            fail("check", detail or err)
        else
            checks = checks + 1
            if not d.allowed or d.remaining ~= limit - checks then
                fail("check", ("allowed %s, remaining %d after %d checks"):format(
                    tostring(d.allowed), d.remaining, checks))
            end
        end
        local busy, berr, bdetail = rival:acquire()
        if busy ~= false then
            fail("rival acquire", bdetail or berr or "acquired a held lock")
        end
        local ok, xerr, xdetail = holder:extend(60000)
        if not ok then
            fail("extend", xdetail or xerr)
        end
    end
    -- every decision counted once: the rest of the limit, then a refusal
    local d, _, rdetail = lim:check("alice", limit - checks)
    out.rest = d and (d.allowed and d.remaining == 0) or tostring(rdetail)
    d = lim:check("alice")
    out.refused = d and d.allowed == false
    out.released = holder:release() == true
    local again, fence2 = rival:acquire()
    out.rival_after = again == true and fence2 > fence
    rival:release()
    return reply(out)
end

routes["/failover"] = function(args)
    local ns, subject = args.ns or "of", assert(args.subject, "subject")
    local wait_ms = tonumber(args.wait_ms or "30000")
    local c = assert(redpat.connect(url(), { namespace = ns, connect_timeout = 500,
                                             command_timeout = 1000 }))
    local lock = assert(c:lock("fo", { ttl = 10000 }))
    local lim = assert(c:ratelimiter("fo", { limit = 1000000, window = 60000 }))
    local out = { checks = 0, failed_calls = 0 }
    local t0 = now_ms()
    while now_ms() - t0 < wait_ms do -- until the kill makes a call fail
        local d, err, detail = lim:check(subject)
        if d == nil then
            out.first_err, out.first_message = err, detail and detail.message
            break
        end
        out.checks = out.checks + 1
    end
    local t1 = now_ms()
    while out.first_err and now_ms() - t1 < wait_ms do
        local ok, err, detail = lock:acquire()
        if ok then
            out.recovered_ms = math.floor(now_ms() - t1)
            out.released = lock:release() == true
            break
        end
        out.failed_calls = out.failed_calls + 1
        out.last_err, out.last_message = err, detail and detail.message
        ngx.sleep(0.1)
    end
    if out.recovered_ms then
        out.after = 0
        for _ = 1, 20 do
            if lock:acquire() == true and lock:release() == true and lim:check(subject) then
                out.after = out.after + 1
            end
        end
    end
    return reply(out)
end

routes["/command"] = function(args)
    local c = assert(redpat.connect(url(), { namespace = "cc" }))
    local key, other = assert(args.key, "key"), assert(args.other, "other")
    local out = { set = c:command("SET", "cc:" .. key .. "a", "1"),
                  get = c:command("GET", "cc:" .. key .. "a") }
    local r, err, detail = c:command("DBSIZE")
    out.keyless = { result = r, err = err, message = detail and detail.message }
    out.dbsize = c:command("DBSIZE", { key = key })
    out.dbsize_other = c:command("DBSIZE", { key = other })
    local ok, why = pcall(c.command, c, "DBSIZE", { kee = "x" })
    out.unknown = { ok = ok, why = tostring(why) }
    return reply(out)
end

routes["/auth"] = function(args)
    local pw = assert(args.pw, "pw")
    local function with(password)
        return (url():gsub("^(rediss?%+cluster://)", "%1:" .. password .. "@"))
    end
    local c = assert(redpat.connect(with(pw), { namespace = "ca" }))
    local lim = assert(c:ratelimiter("l", { limit = 5, window = 10000 }))
    local out = { cycles = {}, refused = {} }
    for name in assert(args.names, "names"):gmatch("[^,]+") do
        local lock = assert(c:lock(name, { ttl = 5000 }))
        local acquired, _, adetail = lock:acquire()
        local released = acquired and lock:release()
        local d, _, ddetail = lim:check(name)
        out.cycles[#out.cycles + 1] = (acquired == true and released == true and d and d.allowed)
            or tostring(adetail or ddetail)
    end
    for _, u in ipairs({ url(), with("wrong") }) do
        -- (a pool of their own: a connection pooled before the password was set would
        -- still be authenticated)
        local b = assert(redpat.connect(u, { namespace = "ca", pool = "auth-test" }))
        local r, err, detail = assert(b:lock("x")):acquire()
        out.refused[#out.refused + 1] = { result = r, err = err, message = detail and detail.message }
    end
    return reply(out)
end

routes["/subscribe"] = function(args)
    local c = assert(redpat.connect(assert(args.url, "url"), { namespace = "sx" }))
    local sub = assert(c:subscribe{ channels = { "a" } })
    local msg, err, detail = sub:next(3000)
    local out = { first = msg and msg.kind or tostring(detail or err), numsub = {} }
    for u in assert(args.nodes, "nodes"):gmatch("%S+") do
        local r, _, rdetail = assert(redpat.connect(u)):command("PUBSUB", "NUMSUB", "a")
        out.numsub[#out.numsub + 1] = r and r[2] or tostring(rdetail)
    end
    local receivers, _, pdetail = c:publish("a", "hi")
    out.receivers = receivers or tostring(pdetail)
    msg = sub:next(3000)
    out.message = msg and msg.data
    sub:close()
    return reply(out)
end

function M.handle()
    local route = routes[ngx.var.uri]
    if not route then
        ngx.status = 404
        return reply({ error = "no route " .. ngx.var.uri })
    end
    local ok, err = pcall(route, ngx.req.get_uri_args())
    if not ok then
        ngx.status = 500
        return reply({ error = tostring(err) })
    end
end

return M
