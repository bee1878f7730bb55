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
-- which arguments are positional and which go in a trailing options table, records
-- unpacked into multiple returns, 1-based indexes, `nil, err, detail`, scoped use
-- (lock:with, <close>), the OpenResty driver and headers helper.
--
-- Names and units are the core's: options are called as the descriptors call them (ttl,
-- wait, retry_min, ...) and every time is integer milliseconds (math.huge: forever, where
-- the core allows it). Expected failures return `nil, err, detail`, as lua-resty-*
-- libraries do: err is the core's status name, a plain string ("timeout", "not_owned",
-- "invalid_argument", "transport", "reply", "protocol", "no_memory", "state",
-- "cancelled"), so `err == "timeout"` works; detail is {name = err, message = <text>,
-- code = <rp_status>}, which prints and concatenates as "name: message". Normal outcomes
-- (a busy lock, a refused fencing token, a refused rate limit check) are results, not
-- errors. A value of the wrong Lua type and an unknown option name raise a string naming
-- it (and the valid options), like the standard library raises on a bad argument; a value
-- the core refuses, or a required one left out, is `nil, "invalid_argument", detail`.
--
-- Drivers: inside nginx (OpenResty / lua-nginx-module) a client moves the core's bytes over
-- ngx.socket.tcp cosockets and waits with ngx.sleep; elsewhere it uses the core's own
-- blocking connection. Choose explicitly with opts.driver = "cosocket" | "blocking".
local core = require "redpat.core"

local call, begin = core.call, core.begin
local select, error, type, pairs = select, error, type, pairs
local getmetatable, setmetatable = getmetatable, setmetatable
local concat = table.concat
local unpack = table.unpack or unpack -- luacheck: ignore

local M = {
    null = core.null,               -- a Redis nil inside replies (== cjson.null, ngx.null)
    version = core.version,
    core = core,                    -- the op API, for people who bring their own I/O loop
    descriptors = core.descriptors, -- every op: name, args, result fields (by index and name)
    IO = core.IO, SLEEP = core.SLEEP, DONE = core.DONE,
}

-- The descriptors by name too, and their arguments and fields; d.index is what core.call
-- and core.begin take.
for i, d in ipairs(core.descriptors) do
    core.descriptors[d.name] = d
    d.index, d.arg, d.field = i, {}, {}
    for _, a in ipairs(d.args) do
        d.arg[a.name] = a
    end
    for _, f in ipairs(d.fields) do
        d.field[f.name] = f
    end
end

local mts = core.metatables
local Client, detail_mt = mts.client.__index, mts.error

-- Details print and concatenate as "name: message" ("name" alone without a message).
function detail_mt.__tostring(e)
    local name, message = tostring(e.name), e.message
    return (message ~= nil and message ~= "") and name .. ": " .. tostring(message) or name
end
function detail_mt.__concat(a, b)
    return tostring(a) .. tostring(b)
end

--- redpat.error(name, message) -> nil, name, detail: an expected failure as the library
-- returns one (name: a core status name), for code that wraps redpat's operations.
function M.error(name, message)
    return nil, name, setmetatable({ name = name, message = message or "", code = core.status[name] },
        detail_mt)
end

-- The cosocket driver's endpoint (redpat.cosocket) of every handle made from a client that
-- uses it, and of ops begun on them; anything absent here runs on the core's own blocking
-- connection, in one call of the C glue.
local driver_of = setmetatable({}, { __mode = "k" })
local cosocket -- loaded on first use (it needs ngx)
-- The handle each handle was made from (a lock's client), for handle:client().
local maker_of = setmetatable({}, { __mode = "k" })

local function driver_for(self) -- self: a handle, or a list of handles (its first decides)
    if type(self) == "table" then
        self = self[1]
    end
    return self ~= nil and driver_of[self] or nil
end

local function drive(st, op, err, detail)
    if not op then
        return nil, err, detail
    end
    return cosocket.run(st, op)
end

-- ---- arguments: positional ones, then an options table

-- How a method takes op d's arguments: after self (if the op has one) the first npos of
-- the others positionally, then a table of the rest by name. extra: option names that are
-- not the core's (the drivers'), accepted and left out.
local function spec(d, npos, extra)
    local first = (d.args[1] and d.args[1].self) and 2 or 1
    local s = { d = d, op = d.index, first = first, npos = npos, nargs = #d.args, option = {} }
    local valid = {}
    for i = first + npos, #d.args do
        s.option[d.args[i].name] = i
        valid[#valid + 1] = d.args[i].name
    end
    for _, name in ipairs(extra or {}) do
        s.option[name] = false
        valid[#valid + 1] = name
    end
    s.valid = concat(valid, ", ")
    return s
end

-- The values of all of s's arguments in the descriptor's order, from the method's own: self
-- (if any), the positional ones, then the options table (nil: none). An unknown option name
-- raises, naming the valid ones.
local function arguments(s, ...)
    local v = { ... }
    local at = s.first + s.npos -- where the options table is
    local opts = v[at]
    for i = at, s.nargs do
        v[i] = nil
    end
    if opts ~= nil then
        if type(opts) ~= "table" then
            error(("%s: options must be a table (got %s)"):format(s.d.name, type(opts)), 0)
        end
        for k, value in pairs(opts) do
            if type(k) ~= "string" then
                error(("%s: option names must be strings (got %s)"):format(s.d.name, type(k)), 0)
            end
            local i = s.option[k]
            if i == nil then
                error(("unknown option '%s' (valid: %s)"):format(k, s.valid), 0)
            elseif i then
                v[i] = value
            end
        end
    end
    return unpack(v, 1, s.nargs)
end

-- ---- methods from the descriptors

-- Performs op s.d with its arguments in order (self first) over self's driver. A made
-- handle uses its maker's driver; an op answered from its handle (io = false) needs none.
local function performer(s, values)
    local op, d = s.op, s.d
    if d.makes then
        local has_self = s.first == 2 -- client.new has none
        return function(self, ...)
            local h, err, detail = call(op, values, self, ...)
            if h and has_self then
                driver_of[h], maker_of[h] = driver_for(self), self
            end
            return h, err, detail
        end
    elseif not d.io then
        return function(...)
            return call(op, values, ...)
        end
    end
    return function(self, ...)
        local st = driver_for(self)
        if st then
            return drive(st, begin(op, values, self, ...))
        end
        return call(op, values, self, ...)
    end
end

-- A method: self and its positional arguments go to the core as they are, an options
-- table is spread into the descriptor's order first.
local function method(s, values)
    local run, npos, op, d = performer(s, values), s.npos, s.op, s.d
    if d.io and not d.makes and d.args[1].type == "handle" then
        -- the hot path (lock:acquire(), limiter:check(subject)): as run, in one call
        return function(self, ...)
            if select("#", ...) > npos then
                return run(arguments(s, self, ...))
            end
            local st = driver_of[self]
            if st then
                return drive(st, begin(op, values, self, ...))
            end
            return call(op, values, self, ...)
        end
    end
    return function(self, ...)
        if select("#", ...) <= npos then
            return run(self, ...)
        end
        return run(arguments(s, self, ...))
    end
end

-- Idiom per op: the method's name when not its verb, the arguments taken positionally
-- (default: the required ones that come first; the rest by name in a trailing options
-- table), and whether a record is returned as multiple values (default: a one-field record
-- is its value, any other record a table). false: written by hand below.
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

-- How many of d's arguments after self a method takes positionally: the idiom's names
-- (which must be the next ones, in order), or the leading required ones.
local function positional(d, idiom)
    if idiom.pos == nil then
        local n = 0
        while d.args[n + 2] and d.args[n + 2].required do
            n = n + 1
        end
        return n
    end
    for i, name in ipairs(idiom.pos) do
        local a = d.args[i + 1]
        if a == nil or a.name ~= name then
            error(("redpat: %s's argument %d is %s, not %s"):format(d.name, i + 1,
                tostring(a and a.name), name))
        end
    end
    return #idiom.pos
end

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
    return function(r, err, detail) -- a result (a record, or a list of them) or nil, err, detail
        if r and d.shape == "list" then
            for i = 1, #r do
                fix(r[i])
            end
        elseif r then
            fix(r)
        end
        return r, err, detail
    end
end

-- Ops answered from the handle (io = false, e.g. lock.info) also give one accessor per
-- field: lock:token(), lock:fence(), limiter:limit(), ...
local function accessors(host, d)
    for i, f in ipairs(d.fields) do
        if host[f.name] == nil then
            host[f.name] = function(self)
                return (select(i, call(d.index, true, self)))
            end
        end
    end
end

--- handle:client() -> the client a lock or limiter was made from (a client: itself)
local function client_of(self)
    while maker_of[self] ~= nil do
        self = maker_of[self]
    end
    return self
end
for _, mt in pairs(mts) do
    if mt.__kind then
        mt.__index.client = client_of
    end
end

for _, d in ipairs(core.descriptors) do
    local idiom = IDIOM[d.name]
    local self_arg = d.args[1] and d.args[1].self and d.args[1] or nil
    if idiom ~= false and self_arg then
        idiom = idiom or {}
        local values = idiom.values or (d.shape == "record" and #d.fields == 1)
        local m = method(spec(d, positional(d, idiom)), values)
        local post = not values and index_fixer(d)
        if post then
            local plain = m
            m = function(...)
                return post(plain(...))
            end
        end
        local family = d.name:match("^([^.]+)")
        local host = mts[self_arg.kind].__index
        -- the verb (constructors: the kind made); an op on a list of handles is the client's:
        -- client:ratelimit_multi({limiter, ...}, ...)
        local name = idiom.method or d.makes or d.verb
        if self_arg.type == "list" then
            local on_list = m
            host, name = Client, family .. "_" .. d.verb
            m = function(_, ...)
                return on_list(...)
            end
        end
        host[name] = m
        if not d.io and d.shape == "record" then
            accessors(host, d)
        end
    end
end

-- ---- the generic op API: any described op by name, records as the core gives them

local specs = {}
local function spec_for(name) -- every argument by name
    local s = specs[name]
    if s == nil then
        local d = type(name) == "string" and core.descriptors[name] or nil
        if d == nil then
            error("redpat: no op called " .. tostring(name), 3)
        end
        s = spec(d, 0)
        s.run = performer(s, false)
        specs[name] = s
    end
    return s
end

--- redpat.perform(name, self, args) -> result | nil, err, detail
-- Performs any described op (redpat.descriptors[name]) on self (its handle, a list of
-- handles, or nil for client.new) with args by the core's names. Constructors return the
-- handle; ops a record table (the core's field names and values: ms, 0-based indexes), a
-- list of records, or true.
function M.perform(name, self, args)
    local s = spec_for(name)
    if s.first == 1 then -- no self: every argument is in args
        return s.run(arguments(s, args))
    end
    return s.run(arguments(s, self, args))
end

--- redpat.begin(name, self, args) -> op | nil, err, detail: the op, not yet run (see
-- redpat.run).
function M.begin(name, self, args)
    local s = spec_for(name)
    local op, err, detail
    if s.first == 1 then
        op, err, detail = begin(s.op, false, arguments(s, args))
    else
        op, err, detail = begin(s.op, false, arguments(s, self, args))
    end
    if op then
        driver_of[op] = driver_for(self)
    end
    return op, err, detail
end

--- redpat.run(op) -> as redpat.perform | nil, err, detail: runs a begun op over its
-- handles' driver, and frees it.
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
local connect_spec = spec(core.descriptors["client.new"], 1,
    { "driver", "pool", "pool_size", "backlog", "keepalive_timeout" })

--- redpat.connect(url, opts) -> client | nil, err, detail
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
    -- checks the url and options, no I/O
    local client, err, detail = call(connect_spec.op, false, arguments(connect_spec, url, opts))
    if not client then
        return nil, err, detail
    end
    if driver == "cosocket" then
        cosocket = cosocket or require "redpat.cosocket"
        local st, perr, pdetail = cosocket.endpoint(client, url, opts or {})
        if not st then
            client:close()
            return nil, perr, pdetail
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

local run_command = performer(spec(core.descriptors["client.command"], 1), true)

--- client:command(name, ...) -> reply | nil, err, detail
-- A raw Redis command (binary-safe; numbers are sent as their decimal text). Replies:
-- strings (bulk and status), integers, arrays (tables; a nil inside is redpat.null),
-- redpat.null for nil. An error reply is nil, "reply", detail (detail.message: Redis's
-- text); an error reply inside an array is a detail table.
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
    local v, err, detail = run_command(self, argv)
    if v == nil then
        return nil, err, detail
    end
    if getmetatable(v) == detail_mt then
        return nil, v.name, v
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

--- lock:with(opts, fn, ...) -> true, fn's results | false (busy) | nil, err, detail
-- Scoped use: acquires (opts as for acquire), calls fn(...), releases whatever happens.
-- An error in fn is re-raised after the release. A release that fails (the lock was lost
-- while fn ran) returns nil, err, detail: losing a lock is never silent.
function Lock:with(opts, fn, ...)
    local acquired, err, detail = self:acquire(opts)
    if acquired == nil then
        return nil, err, detail
    end
    if not acquired then
        return false
    end
    local res = pack(pcall(fn, ...))
    local released, rerr, rdetail = self:release()
    if not res[1] then
        error(res[2], 0)
    end
    if not released then
        return nil, rerr, rdetail
    end
    return true, unpack(res, 2, res.n)
end

if _VERSION >= "Lua 5.4" then
    -- local lock <close> = client:lock(...): at scope exit the lock is released if held and
    -- the handle closed. A failed release raises its detail (unless the scope is already
    -- unwinding).
    mts.lock.__close = function(lock, unwinding)
        if lock:_closed() then
            return
        end
        local ok, _, detail = true, nil, nil
        if lock:token() ~= nil then
            ok, _, detail = lock:release()
        end
        lock:close()
        if not ok and unwinding == nil then
            error(detail, 2)
        end
    end
end

-- ---- rate limiters: limiter:check(subject, cost) -> decision; limiter:batch(subjects,
-- costs) -> {decision, ...}; limiter:reset(subject) -> true; client:ratelimit_multi(
-- {limiter, ...}, subject, cost) -> decision; limiter:info() (no I/O). A decision is
-- {allowed, limit, remaining, retry_after, reset_after (ms), degraded, refused_by (multi:
-- the refusing limiter's index in the list, from 1), error (degraded: how Redis failed, a
-- detail: error.name, error.message)}.

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
