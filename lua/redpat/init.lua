--- redpat: production-grade Redis patterns, written once in C (the core); this is the Lua API.
--
--   local redpat = require "redpat"
--   local client = assert(redpat.connect("redis://127.0.0.1:6379/0", { namespace = "app" }))
--   local lock = assert(client:lock("orders:42", { ttl = 10000, fenced = true }))
--   local acquired, fence = lock:acquire({ wait = 2000 })
--   if acquired then ... lock:release() end
--   local api = assert(client:ratelimiter("api", { algorithm = "gcra", limit = 100,
--                                                  window = 60000 }))
--   local d = api:check(user_id)   -- d.allowed, d.remaining, d.retry_after, ...
--
-- Every method comes from the core's op descriptors (redpat.descriptors): the C glue
-- (redpat.core) converts arguments and results by them, so this file holds only Lua idiom:
-- which arguments are positional, records unpacked into multiple returns, 1-based indexes,
-- `nil, err`, scoped use (lock:with, <close>), the OpenResty driver and headers helper.
--
-- Names and units are the core's: options are called as the descriptors call them (ttl,
-- wait, retry_min, ...) and every time is integer milliseconds (math.huge: forever, where
-- the core allows it). Expected failures are `nil, err`: err is an error value
-- {name = <core status name>, message = <text>, code = <rp_status>} that prints and
-- concatenates as "name: message". Normal outcomes (a busy lock, a refused fencing token, a
-- refused rate limit check) are results, not errors. A value of the wrong Lua type and an
-- unknown option name raise an error value (name "invalid_argument"), like the standard
-- library raises on a bad argument; a value the core refuses is `nil, err`.
--
-- Drivers: inside nginx (OpenResty / lua-nginx-module) a client moves the core's bytes over
-- ngx.socket.tcp cosockets and waits with ngx.sleep; elsewhere it uses the core's own
-- blocking connection. Choose explicitly with opts.driver = "cosocket" | "blocking".
local core = require "redpat.core"

local call, begin = core.call, core.begin
local select, error, type, pcall, getmetatable, pairs = select, error, type, pcall, getmetatable, pairs
local unpack = table.unpack or unpack -- luacheck: ignore

local M = {
    null = core.null,               -- a Redis nil inside replies (== cjson.null, ngx.null)
    version = core.version,
    core = core,                    -- the op API, for people who bring their own I/O loop
    descriptors = core.descriptors, -- every op: name, args, result fields (by index and name)
    error = core.error,             -- redpat.error(name, message) -> an error value
    IO = core.IO, SLEEP = core.SLEEP, DONE = core.DONE,
}

-- The descriptors by name too, and their arguments and fields.
for _, d in ipairs(core.descriptors) do
    core.descriptors[d.name] = d
    d.arg, d.field = {}, {}
    for _, a in ipairs(d.args) do
        d.arg[a.name] = a
    end
    for _, f in ipairs(d.fields) do
        d.field[f.name] = f
    end
end

local mts = core.metatables
local Client, error_mt = mts.client.__index, mts.error

-- Error values print and concatenate as "name: message" ("name" alone without a message).
function error_mt.__tostring(e)
    local name, message = tostring(e.name), e.message
    return (message ~= nil and message ~= "") and name .. ": " .. tostring(message) or name
end
function error_mt.__concat(a, b)
    return tostring(a) .. tostring(b)
end

-- The cosocket driver's endpoint (redpat.cosocket) of every handle made from a client that
-- uses it, and of ops begun on them; anything absent here runs on the core's own blocking
-- connection, in one call of the C glue.
local driver_of = setmetatable({}, { __mode = "k" })
local cosocket -- loaded on first use (it needs ngx)

local function driver_for(self) -- self: a handle, or a list of handles (its first decides)
    if type(self) == "table" then
        self = self[1]
    end
    return self ~= nil and driver_of[self] or nil
end

local function drive(st, op, err)
    if not op then
        return nil, err
    end
    return cosocket.run(st, op)
end

-- Performs op d (sig: how its arguments are passed) on self over self's driver. A made
-- handle uses its maker's driver; an op answered from its handle (io = false) needs none.
local function perform(sig, d, self, ...)
    if d.makes then
        local h, err = call(sig, self, ...)
        if h then
            driver_of[h] = driver_for(self)
        end
        return h, err
    end
    local st = d.io and driver_for(self)
    if st then
        return drive(st, begin(sig, self, ...))
    end
    return call(sig, self, ...)
end

-- ---- methods from the descriptors

-- Idiom per op: the method's name when not its verb, the arguments taken positionally
-- (default: the required ones; the rest by name in a trailing options table), and whether
-- a record is returned as multiple values (default: a one-field record is its value, any
-- other record a table). false: written by hand below.
local IDIOM = {
    ["client.new"] = false,     -- redpat.connect(url, opts)
    ["client.command"] = false, -- client:command(...)
    ["lock.new"] = { method = "lock", pos = { "name" } },
    ["lock.acquire"] = { values = true },             -- acquired, fence, attempts
    ["lock.extend"] = { pos = { "ms", "replace" } },
    ["fence.check"] = { values = true },              -- accepted, highest
    ["ratelimit.new"] = { method = "ratelimiter", pos = { "name" } },
    ["ratelimit.check"] = { pos = { "subject", "cost" } },
    ["ratelimit.multi"] = { pos = { "subject", "cost" } },
    ["ratelimit.batch"] = { pos = { "subjects", "costs" } },
}

-- Result fields that index an argument list: the core counts from 0 (-1: none), Lua from 1.
local INDEX_FIELDS = { refused_by = true }

local function index_fixer(d)
    local names = {}
    for _, f in ipairs(d.fields) do
        if INDEX_FIELDS[f.name] then
            names[#names + 1] = f.name
        end
    end
    if #names == 0 then
        return nil
    end
    local function fix(r)
        for i = 1, #names do
            local v = r[names[i]]
            if v ~= nil then
                r[names[i]] = v >= 0 and v + 1 or nil
            end
        end
    end
    return function(r, err) -- a result (a record, or a list of them) or nil, err
        if r and d.shape == "list" then
            for i = 1, #r do
                fix(r[i])
            end
        elseif r then
            fix(r)
        end
        return r, err
    end
end

-- One method: self (or, for an op on a list of handles, the list after the client) and the
-- positional arguments and options go to the core as they are; post fixes up a record.
local function method(sig, d, post, on_list)
    if post and on_list then
        return function(_, ...)
            return post(perform(sig, d, ...))
        end
    elseif post then
        return function(self, ...)
            return post(perform(sig, d, self, ...))
        end
    elseif on_list then
        return function(_, ...)
            return perform(sig, d, ...)
        end
    elseif d.makes or not d.io then
        return function(self, ...)
            return perform(sig, d, self, ...)
        end
    end
    return function(self, ...) -- the hot path: a handle's op
        local st = driver_of[self]
        if st then
            return drive(st, begin(sig, self, ...))
        end
        return call(sig, self, ...)
    end
end

-- Ops answered from the handle (io = false, e.g. lock.info) also give one accessor per
-- field: lock:token(), lock:fence(), limiter:limit(), ...
local function accessors(host, d)
    local vsig = core.sig(d.name, nil, "values")
    for i, f in ipairs(d.fields) do
        if host[f.name] == nil then
            host[f.name] = function(self)
                return (select(i, call(vsig, self)))
            end
        end
    end
end

for _, d in ipairs(core.descriptors) do
    local idiom = IDIOM[d.name]
    local self_arg = d.args[1] and d.args[1].self and d.args[1] or nil
    if idiom ~= false and self_arg then
        idiom = idiom or {}
        local pos = idiom.pos
        if not pos then
            pos = {}
            for i = 2, #d.args do
                if d.args[i].required then
                    pos[#pos + 1] = d.args[i].name
                end
            end
        end
        local values = idiom.values or (d.shape == "record" and #d.fields == 1)
        local sig = core.sig(d.name, pos, values and "values" or nil)
        local family = d.name:match("^([^.]+)")
        local on_list = self_arg.type == "list"
        local host = on_list and Client or mts[self_arg.kind].__index
        -- the verb (constructors: the kind made); an op on a list of handles is the client's
        local name = idiom.method or d.makes or (on_list and family .. "_" .. d.verb) or d.verb
        host[name] = method(sig, d, not values and index_fixer(d), on_list)
        if not d.io and d.shape == "record" then
            accessors(host, d)
        end
    end
end

-- ---- the generic op API: any described op by name, records as the core gives them

local sigs = {}
local function sig_for(name) -- every argument by name
    local s = sigs[name]
    if s == nil then
        if type(name) ~= "string" or core.descriptors[name] == nil then
            error("redpat: no op called " .. tostring(name), 3)
        end
        s = core.sig(name)
        sigs[name] = s
    end
    return s, core.descriptors[name]
end

--- redpat.perform(name, self, args) -> result | nil, err
-- Performs any described op (redpat.descriptors[name]) on self (its handle, a list of
-- handles, or nil for client.new) with args by the core's names. Constructors return the
-- handle; ops a record table (the core's field names and values: ms, 0-based indexes), a
-- list of records, or true.
function M.perform(name, self, args)
    local sig, d = sig_for(name)
    return perform(sig, d, self, args)
end

--- redpat.begin(name, self, args) -> op | nil, err: the op, not yet run (see redpat.run).
function M.begin(name, self, args)
    local op, err = begin(sig_for(name), self, args)
    if op then
        driver_of[op] = driver_for(self)
    end
    return op, err
end

--- redpat.run(op) -> as redpat.perform | nil, err: runs a begun op over its handles'
-- driver, and frees it.
function M.run(op)
    local st = driver_of[op]
    if st then
        return cosocket.run(st, op)
    end
    return op:_run()
end

-- ---- clients

local function in_nginx()
    return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.socket.tcp ~= nil
end

-- Options of redpat.connect that are the Lua drivers', not the core's.
local DRIVER_OPTIONS = { "driver", "pool", "pool_size", "backlog", "keepalive_timeout" }
local connect_sig = core.sig("client.new", { "url" })

-- The core's options of opts (the rest are the drivers'); an unknown name raises, naming
-- every valid one.
local function make_client(url, opts)
    if type(opts) ~= "table" then
        return call(connect_sig, nil, url, opts)
    end
    local own = {}
    for k, v in pairs(opts) do
        own[k] = v
    end
    for _, k in ipairs(DRIVER_OPTIONS) do
        own[k] = nil
    end
    local ok, client, err = pcall(call, connect_sig, nil, url, own)
    if not ok then
        if getmetatable(client) == error_mt and client.message:find("^unknown option") then
            client.message = client.message:gsub("%)$", ", " .. table.concat(DRIVER_OPTIONS, ", ") .. ")")
        end
        error(client, 3)
    end
    return client, err
end

--- redpat.connect(url, opts) -> client | nil, err
-- url: "redis://[[user]:password@]host[:port][/db]" or "unix:///path[?db=N]";
--      default "redis://127.0.0.1:6379/0".
-- opts: namespace (key prefix, default "redpat"), connect_timeout and command_timeout
--       (ms, default 2000), tcp_keepalive (bool), driver ("blocking" | "cosocket";
--       default: cosocket inside nginx), and for the cosocket driver pool (pool name),
--       pool_size (fixed when a pool is first used; by default each URL and pool_size
--       gets its own pool), backlog, keepalive_timeout (ms idle in the pool, default 60000).
function M.connect(url, opts)
    url = url or "redis://127.0.0.1:6379/0"
    local driver = type(opts) == "table" and opts.driver or (in_nginx() and "cosocket" or "blocking")
    if driver ~= "blocking" and driver ~= "cosocket" then
        error("redpat.connect: driver must be \"blocking\" or \"cosocket\"", 2)
    end
    local client, err = make_client(url, opts) -- checks url and options, no I/O
    if not client then
        return nil, err
    end
    if driver == "cosocket" then
        cosocket = cosocket or require "redpat.cosocket"
        local st, perr = cosocket.endpoint(client, url, opts or {})
        if not st then
            client:close()
            return nil, perr
        end
        driver_of[client] = st
    end
    return client
end

--- client:driver() -> "blocking" | "cosocket"
function Client:driver()
    return driver_of[self] and "cosocket" or "blocking"
end

-- client:close() (from the C glue): the handle is unusable from now on; the connection
-- closes once no lock or limiter made from it is left.

local command_sig = core.sig("client.command", { "argv" }, "values")
local command_desc = core.descriptors["client.command"]

--- client:command(name, ...) -> reply | nil, err
-- A raw Redis command (binary-safe; numbers are sent as their decimal text). Replies:
-- strings (bulk and status), integers, arrays (tables; a nil inside is redpat.null),
-- redpat.null for nil. An error reply is nil, err with err.name == "reply".
function Client:command(...)
    local n = select("#", ...)
    local argv = { ... }
    for i = 1, n do
        local a = argv[i]
        if type(a) == "number" then
            argv[i] = tostring(a)
        elseif a == nil then
            error(("redpat: client:command: argument #%d is nil"):format(i), 2)
        end
    end
    local v, err = perform(command_sig, command_desc, self, argv)
    if v == nil then
        return nil, err
    end
    if getmetatable(v) == error_mt then
        return nil, v
    end
    return v
end

-- ---- locks: lock:acquire(opts) -> acquired, fence, attempts; lock:release() -> true;
-- lock:extend(ms, replace) -> true; lock:locked(), lock:owned() -> bool; lock:info(),
-- lock:token(), lock:fence(), lock:name(), lock:ttl() (no I/O); lock:client().

local Lock = mts.lock.__index

local function pack(...)
    return { n = select("#", ...), ... }
end

--- lock:with(opts, fn, ...) -> true, fn's results | false (busy) | nil, err
-- Scoped use: acquires (opts as for acquire), calls fn(...), releases whatever happens.
-- An error in fn is re-raised after the release. A release that fails (the lock was lost
-- while fn ran) returns nil, err: losing a lock is never silent.
function Lock:with(opts, fn, ...)
    local acquired, err = self:acquire(opts)
    if acquired == nil then
        return nil, err
    end
    if not acquired then
        return false
    end
    local res = pack(pcall(fn, ...))
    local released, rerr = self:release()
    if not res[1] then
        error(res[2], 0)
    end
    if not released then
        return nil, rerr
    end
    return true, unpack(res, 2, res.n)
end

if _VERSION >= "Lua 5.4" then
    -- local lock <close> = client:lock(...): at scope exit the lock is released if held and
    -- the handle closed. A failed release raises (unless the scope is already unwinding).
    mts.lock.__close = function(lock, unwinding)
        if lock:_closed() then
            return
        end
        local ok, err = true, nil
        if lock:token() ~= nil then
            ok, err = lock:release()
        end
        lock:close()
        if not ok and unwinding == nil then
            error(err, 2)
        end
    end
end

-- ---- rate limiters: limiter:check(subject, cost) -> decision; limiter:batch(subjects,
-- costs) -> {decision, ...}; limiter:reset(subject) -> true; client:ratelimit_multi(
-- {limiter, ...}, subject, cost) -> decision; limiter:info() (no I/O). A decision is
-- {allowed, limit, remaining, retry_after, reset_after (ms), degraded, refused_by (multi:
-- the refusing limiter's index in the list, from 1), error (degraded: how Redis failed)}.

local ceil, format = math.ceil, string.format

--- redpat.ratelimit_headers(decision, headers) -> headers
-- Sets the usual rate limit response headers from a decision: X-RateLimit-Limit,
-- X-RateLimit-Remaining, X-RateLimit-Reset (seconds until the full allowance is back,
-- rounded up) and, when the request was refused, Retry-After (seconds, rounded up, at least
-- 1); an allowed decision clears Retry-After. headers: default ngx.header (inside nginx,
-- call it before the response is sent); any table works, e.g. for other servers.
function M.ratelimit_headers(decision, headers)
    if headers == nil then
        if type(ngx) ~= "table" or ngx.header == nil then
            error("redpat.ratelimit_headers: no headers table given and not inside nginx", 2)
        end
        headers = ngx.header
    end
    headers["X-RateLimit-Limit"] = format("%d", decision.limit)
    headers["X-RateLimit-Remaining"] = format("%d", decision.remaining)
    headers["X-RateLimit-Reset"] = format("%d", ceil(decision.reset_after / 1000))
    if decision.allowed then
        headers["Retry-After"] = nil
    else
        local s = ceil(decision.retry_after / 1000)
        headers["Retry-After"] = format("%d", s < 1 and 1 or s)
    end
    return headers
end

return M
