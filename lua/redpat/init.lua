--- redpat: production-grade Redis patterns, written once in C (the core); this is the Lua API.
--
--   local redpat = require "redpat"
--   local client = assert(redpat.connect("redis://127.0.0.1:6379/0", { namespace = "app" }))
--   local lock = assert(client:lock("orders:42", { ttl = 10000, fenced = true }))
--   local acquired, fence = lock:acquire({ wait = 2000 })
--   if acquired then ... lock:release() end
--   local total, err = lock:using(function() return work() end) -- renewed while work() runs
--   local api = assert(client:ratelimiter("api", { algorithm = "gcra", limit = 100,
--                                                  window = 60000 }))
--   local d = api:check(user_id)   -- d.allowed, d.remaining, d.retry_after, ...
--   local five = assert(redpat.client{ url = { url1, url2, url3, url4, url5 } })
--   local rl = assert(five:redlock("orders:42", { ttl = 10000 }))   -- a lock, by quorum
--   client:publish("news", payload)
--   local sub = assert(client:subscribe{ channels = { "news" }, patterns = { "ev:*" } })
--   for msg in sub:messages(1000) do ... msg.kind, msg.channel, msg.data ... end
--
-- Every method comes from the core's op descriptors (redpat.descriptors): the C glue
-- (redpat.core) converts arguments and results by them, so this file holds only Lua idiom:
-- which arguments are positional and which go in a trailing options table, records
-- unpacked into multiple returns, 1-based indexes, `nil, err, detail`, scoped use
-- (lock:with, lock:using, <close>), subscriptions as iterators, the OpenResty driver and
-- headers helper.
--
-- Names and units are the core's: options are called as the descriptors call them (ttl,
-- wait, retry_min, ...) and every time is integer milliseconds (math.huge: forever, where
-- the core allows it). Expected failures return `nil, err, detail`, as lua-resty-*
-- libraries do: err is the core's status name, a plain string ("timeout", "not_owned",
-- "invalid_argument", "transport", "reply", "protocol", "no_memory", "state",
-- "cancelled", "callback", "lost", "auth" (the server refused the password); and "busy"
-- from lock:using), so `err == "timeout"`
-- works; detail is {name = err, message = <text>, code = <rp_status>}, which prints and
-- concatenates as "name: message". Normal outcomes (a busy lock, a refused fencing token, a
-- refused rate limit check) are results, not errors. A value of the wrong Lua type and an
-- unknown option name raise a string naming it (and the valid options), like the standard
-- library raises on a bad argument; a value the core refuses, or a required one left out,
-- is `nil, "invalid_argument", detail`.
--
-- Drivers: inside nginx (OpenResty / lua-nginx-module) a client moves the core's bytes over
-- ngx.socket.tcp cosockets (redpat.cosocket: one light thread per target of a parallel
-- round, callbacks in light threads of their own) and waits with ngx.sleep; elsewhere it
-- uses the core's own blocking driver (parallel rounds over its own pool; a callback runs in
-- the calling thread while a helper thread renews). Choose explicitly with opts.driver =
-- "cosocket" | "blocking". Ops that take a function (lock.using's fn) take a Lua function;
-- long-lived ops (a subscription's listen) run through redpat.open on connections of their
-- own.
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
    IO = core.IO, SLEEP = core.SLEEP, DONE = core.DONE, ERROR = core.ERROR,
    CALL = core.CALL, EMIT = core.EMIT,
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
-- How each client was made (url, options), for the clients of their own that long-lived
-- ops get under the blocking driver.
local made_with = setmetatable({}, { __mode = "k" })

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
    ["redlock.new"] = { method = "redlock", pos = { "name" } },
    ["lock.using"] = false,                           -- lock:using(opts, fn, ...)
    ["lock.renewal"] = { accessors = false },         -- lock:renewal(opts) -> plan
    ["subscription.new"] = { method = "subscription" },
    ["subscription.listen"] = false,                  -- sub:next(), sub:messages()
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
    if idiom ~= false and self_arg and not d.long_lived then
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
        if not d.io and d.shape == "record" and idiom.accessors ~= false then
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
-- handles' driver, and frees it. (A long-lived op never ends: redpat.open it instead.)
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
-- url: "redis://[[user]:password@]host[:port][/db]" (rediss://: over TLS) or
--      "unix://[[user]:password@]/path[?db=N][&password=...]";
--      default "redis://127.0.0.1:6379/0".
-- opts: namespace (key prefix, default "redpat"), connect_timeout and command_timeout
--       (ms, default 2000; command_timeout bounds each exchange with a server: a new
--       connection's handshake, the request and its whole reply), tcp_keepalive (bool),
--       max_reply_size (bytes, default 512 MiB, at least 1024: a larger reply, or a header
--       announcing one, fails "protocol" naming max_reply_size), for rediss:// URLs (TLS)
--       tls_ca_file, tls_cert_file + tls_key_file, tls_server_name, tls_verify (default
--       true), driver ("blocking" | "cosocket";
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
    made_with[client] = { url = url, opts = opts }
    if driver == "cosocket" then
        cosocket = cosocket or require "redpat.cosocket"
        local st, serr, sdetail = cosocket.endpoint(opts or {}) -- nil: an option it cannot do
        if not st then
            return nil, serr, sdetail
        end
        driver_of[client] = st
    end
    return client
end

--- redpat.client(opts) -> client | nil, err, detail
-- As redpat.connect(opts.url, <the other options>), where opts.url may also be a list of
-- URLs: a client over several independent endpoints (a Redlock's), e.g.
--   redpat.client{ url = { "redis://10.0.0.1:6379", "redis://10.0.0.2:6379", ... },
--                  namespace = "app" }
-- A ','-joined string works too. Patterns of one instance use the first endpoint.
function M.client(opts)
    if type(opts) ~= "table" then
        error("redpat.client: options must be a table (got " .. type(opts) .. ")", 2)
    end
    local url, rest = opts.url, {}
    for k, v in pairs(opts) do
        if k ~= "url" then
            rest[k] = v
        end
    end
    if type(url) == "table" then
        for i = 1, #url do
            if type(url[i]) ~= "string" then
                error(("redpat.client: url[%d] must be a string (got %s)"):format(i, type(url[i])), 2)
            end
        end
        url = concat(url, ",")
    end
    return M.connect(url, rest)
end

--- redpat.cancel_on_abort() -> true | nil, err, detail (OpenResty, in a request handler)
-- With `lua_check_client_abort on;`: when the client aborts the request, redpat's ops
-- waiting for it (a retry's backoff, a callback) are cancelled and clean up: a lock:using
-- kills fn's light thread, releases the lock and returns nil, "cancelled"; an acquire
-- waiting for a busy lock gives up. It registers the request's ngx.on_abort handler.
function M.cancel_on_abort()
    if not in_nginx() then
        error("redpat.cancel_on_abort: only inside nginx", 2)
    end
    cosocket = cosocket or require "redpat.cosocket"
    return cosocket.cancel_on_abort()
end

--- client:driver() -> "blocking" | "cosocket"
function Client:driver()
    return driver_of[self] and "cosocket" or "blocking"
end

-- client:close() (from the C glue): the handle is unusable from now on; the connection
-- closes once no lock or limiter made from it is left.

local command_spec = spec(core.descriptors["client.command"], 1)
local run_command = performer(command_spec, true)

--- client:command(name, ..., [opts]) -> reply | nil, err, detail
-- A raw Redis command (binary-safe; numbers are sent as their decimal text). Replies:
-- strings (bulk and status), integers, arrays (tables; a nil inside is redpat.null),
-- redpat.null for nil. An error reply is nil, "reply", detail (detail.message: Redis's
-- text); an error reply inside an array is a detail table. On a cluster the command goes
-- to the master of its keys' hash slot; a trailing table gives the key to route by
-- instead, which a command without keys needs there (no effect on one node):
--   client:command("DBSIZE", { key = "{orders}" })
function Client:command(...)
    local n = select("#", ...)
    local argv = { ... }
    local opts -- the descriptor's arguments after argv, by name (key)
    if n > 0 and type(argv[n]) == "table" then
        opts, argv[n], n = argv[n], nil, n - 1
    end
    for i = 1, n do
        local a = argv[i]
        if type(a) == "number" then
            argv[i] = tostring(a)
        elseif a == nil then
            error(("redpat: client:command: argument #%d is nil"):format(i), 2)
        end
    end
    local v, err, detail
    if opts then
        v, err, detail = run_command(arguments(command_spec, self, argv, opts))
    else
        v, err, detail = run_command(self, argv)
    end
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

-- ---- lock.using: the lock held (and renewed) while a function runs

local using_spec = spec(core.descriptors["lock.using"], 1)
local run_using = performer(using_spec, false)

--- lock:using(fn, ...) / lock:using(opts, fn, ...) -> fn's results | nil, err, detail
-- Takes the lock (opts.wait: how long to keep trying, default 0: once; retry_min,
-- retry_max as for acquire), calls fn(...) while the lock is renewed every ttl/3
-- (opts.renew = false: not renewed; opts.max_hold: renew for at most this long), then
-- releases it whatever fn did, and returns what fn returned. The renewals run beside fn:
-- in plain Lua on the C driver's helper thread (fn runs in the calling thread, as usual;
-- the helper has connections of its own, so fn may use the same client); in OpenResty fn
-- runs in an ngx.thread while the request's thread renews over cosockets.
-- Failures (nil, err, detail), after the lock is released:
--   "busy"      the lock stayed held by another owner for the whole wait; fn never ran
--               (detail.code is nil: busy is a normal outcome, not a core status)
--   "callback"  fn raised: detail.message is its message as text, detail.error the value it
--               raised (re-raise with error(detail.error, 0) to propagate it)
--   "lost"      a renewal failed (or the lock expired under fn): fn ran, but for a while
--               without the lock; detail.results holds what it returned (packed, with n)
--   and the acquire's own failures ("timeout", "transport", ...): fn never ran.
-- Since fn may return nil, tell success by err == nil: local r, err = lock:using(fn).
function Lock:using(a, ...)
    local opts, fn, args
    if type(a) == "function" then
        fn, args = a, pack(...)
    else
        opts, fn, args = a, (...), pack(select(2, ...))
    end
    if type(fn) ~= "function" then
        error("lock:using: fn must be a function (got " .. type(fn) .. ")", 2)
    end
    local results, raised
    local function body()
        local r = pack(pcall(fn, unpack(args, 1, args.n)))
        if not r[1] then
            raised = { r[2] }
            error(r[2], 0)
        end
        results = r
        return r[2] -- to the core, when a string (a loader's value, for ops that keep it)
    end
    local rec, err, detail
    if opts == nil then
        rec, err, detail = run_using(self, body)
    else
        rec, err, detail = run_using(arguments(using_spec, self, body, opts))
    end
    if rec == nil then
        if err == "callback" and raised then
            detail.error = raised[1]
        elseif err == "lost" and results then
            detail.results = { n = results.n - 1, unpack(results, 2, results.n) }
        end
        return nil, err, detail
    end
    if not rec.acquired then
        return M.error("busy", "the lock is held by another owner")
    end
    return unpack(results, 2, results.n)
end

-- ---- auto-renew (OpenResty): the core's renewal plan run by an ngx.timer

-- The watchdog of each lock that has one, and how many times each lock was renewed by one.
local watchdog_of = setmetatable({}, { __mode = "k" })
local renewals_of = setmetatable({}, { __mode = "k" })
local auto_renew_options = { max_hold = true, on_lost = true }

local function stop_watchdog(lock)
    local w = watchdog_of[lock]
    if w == nil then
        return
    end
    watchdog_of[lock] = nil
    w.stopped = true
    if w.busy then -- an extend is in flight: let it land before the caller's next op
        w.idle = w.idle or require("ngx.semaphore").new(0)
        w.idle:wait(w.wait_s)
    end
end

--- lock:auto_renew(opts) -> true | nil, err, detail (OpenResty only)
-- Keeps a held lock alive from an ngx.timer, by the core's plan (lock:renewal): renew every
-- ttl/3 with extend(ttl, true), up to opts.max_hold ms after the acquire (default 0: while
-- the lock is held). Stops when the lock is released (lock:release stops it first), closed,
-- the cap is reached (the lock then expires by its ttl), or a renewal fails: then
-- opts.on_lost(lock, err, detail) is called in the timer (losing a lock is never silent).
-- Release (or close) the lock when done: without max_hold a lock nobody releases is renewed
-- for as long as the worker lives. In plain Lua there is no timer to run it: use
-- lock:using, whose renewals run on the C driver's helper thread. This raises there.
function Lock:auto_renew(opts)
    local st = driver_of[self]
    if st == nil then
        error("lock:auto_renew needs the cosocket driver (OpenResty); in plain Lua use "
            .. "lock:using, which renews from the C driver's helper thread", 2)
    end
    opts = opts or {}
    for k in pairs(opts) do
        if not auto_renew_options[k] then
            error(("unknown option '%s' (valid: max_hold, on_lost)"):format(tostring(k)), 2)
        end
    end
    local on_lost = opts.on_lost
    if on_lost ~= nil and type(on_lost) ~= "function" then
        error("lock:auto_renew: on_lost must be a function (got " .. type(on_lost) .. ")", 2)
    end
    local plan_opts = { max_hold = opts.max_hold }
    local first, err, detail = self:renewal(plan_opts) -- checks max_hold now
    if not first then
        return nil, err, detail
    end
    if not first.renew then
        return M.error("not_owned", "the lock is not held")
    end
    stop_watchdog(self)
    local w = { stopped = false, wait_s = 2 * st.command_timeout / 1000 }
    local lock = self
    local function lost(lerr, ldetail)
        if on_lost and not w.stopped then
            local ok, why = pcall(on_lost, lock, lerr, ldetail)
            if not ok then
                ngx.log(ngx.ERR, "redpat: lock:auto_renew on_lost raised: ", tostring(why))
            end
        end
    end
    local function loop(premature)
        while not premature and not w.stopped do
            local plan, perr, pdetail = lock:renewal(plan_opts)
            if not plan then
                return lost(perr, pdetail)
            elseif not plan.renew then
                return
            end
            ngx.sleep(plan.delay / 1000)
            if w.stopped or lock:_closed() then
                return
            end
            w.busy = true
            local ok, eerr, edetail = lock:extend(plan.ttl, true)
            w.busy = false
            if w.idle then
                w.idle:post(1)
            end
            if not ok then
                return lost(eerr, edetail)
            end
            renewals_of[lock] = (renewals_of[lock] or 0) + 1
            premature = ngx.worker.exiting()
        end
    end
    local ok, terr = ngx.timer.at(0, loop)
    if not ok then
        return M.error("state", "cannot start the renewal timer: " .. tostring(terr))
    end
    watchdog_of[self] = w
    return true
end

--- lock:renewals() -> how many times auto-renew watchdogs renewed the lock (0: none)
function Lock:renewals()
    return renewals_of[self] or 0
end

do -- release (and close) stop the watchdog first
    local release, close = Lock.release, Lock.close
    function Lock:release(...)
        if watchdog_of[self] then
            stop_watchdog(self)
        end
        return release(self, ...)
    end
    function Lock:close()
        if watchdog_of[self] then
            stop_watchdog(self)
        end
        return close(self)
    end
end

-- ---- long-lived ops: a stream of messages (a subscription's listen)

local pump = core.pump
local Stream = {}
Stream.__index = Stream

-- A long-lived op, begun, as a stream: under the cosocket driver a listener with sockets of
-- its own; under the blocking driver a client of its own (the op's connection is its).
local function stream(op, self)
    local st = driver_for(self)
    local s = { op = op }
    if st then
        s.listener = cosocket.listener(st, op)
    else
        local client = self
        if type(client) == "table" then
            client = client[1]
        end
        local made = made_with[client_of(client)]
        if made == nil then
            op:free()
            return M.error("state", "the handle's client was not made by redpat.connect")
        end
        local opts = {}
        for k, v in pairs(made.opts or {}) do
            opts[k] = v
        end
        opts.driver = "blocking"
        local own, err, detail = M.connect(made.url, opts)
        if not own then
            op:free()
            return nil, err, detail
        end
        s.client = own
    end
    return setmetatable(s, Stream)
end

--- redpat.open(name, self, args) -> stream | nil, err, detail
-- Begins a long-lived op (its descriptor's long_lived: a subscription's listen) with args
-- by the core's names, on a connection of its own. stream:next(ms) -> the next message (a
-- table by the descriptor's message_fields) | nil, "timeout" when none came within ms
-- (default math.huge: no limit; the op lives on) | nil, err, detail; stream:close().
function M.open(name, self, args)
    local s = spec_for(name)
    if not s.d.long_lived then
        error("redpat.open: " .. name .. " is not a long-lived op (use redpat.perform)", 2)
    end
    local op, err, detail = begin(s.op, false, arguments(s, self, args))
    if not op then
        return nil, err, detail
    end
    return stream(op, self)
end

function Stream:next(ms)
    if ms == nil then
        ms = math.huge
    elseif type(ms) ~= "number" or ms < 0 then
        error("stream:next: ms must be a number >= 0 (got " .. tostring(ms) .. ")", 2)
    end
    if self.op == nil then
        return M.error("state", "the stream is closed")
    end
    if self.listener then
        local msg, err, detail = cosocket.next(self.listener, ms)
        if msg == nil and err ~= "timeout" then
            self.op = nil -- the listener has freed it
        end
        return msg, err, detail
    end
    local msg, err, detail = pump(self.client, self.op, ms)
    if msg == nil and err ~= "timeout" then
        self:close()
    end
    return msg, err, detail
end

function Stream:close()
    if self.listener then
        cosocket.close(self.listener)
        self.listener = nil
    elseif self.op then
        self.op:free()
    end
    self.op = nil
    if self.client then
        self.client:close()
        self.client = nil
    end
end
Stream.__gc = Stream.close -- Lua 5.4 (LuaJIT's tables have no __gc: the op and client do)
Stream.__close = Stream.close

-- ---- pub/sub: client:publish(channel, message) -> receivers; client:subscribe(opts) ->
-- sub; sub:next(ms), sub:messages(ms), sub:subscribe(opts), sub:unsubscribe(opts),
-- sub:close().

-- A subscription as the user holds it: the core's subscription handle (what it wants) and,
-- once it is read, the stream of its listen op. Only the user holds this table, so when
-- it is dropped the collector takes the stream (its op and connection) and the handle with
-- it; the handle alone (client:subscription(), generated) has no messages.
local Sub = {}
Sub.__index = Sub

--- client:subscribe{ channels = {...}, patterns = {...} } -> sub | nil, err, detail
-- A subscription on a connection of its own (opened at the first sub:next). Messages are
-- tables: kind ("message", "pmessage", "subscribe", "unsubscribe", "psubscribe",
-- "punsubscribe", "reconnect"), channel, pattern (pmessage and p(un)subscribe), data
-- (message, pmessage), count (subscriptions now, for the (un)subscribe kinds). After its
-- connection drops, the subscription reconnects by itself (with backoff), subscribes again
-- to everything, and hands out one "reconnect" message (a near-cache's cue to clear
-- itself). Messages published meanwhile are lost: that is Pub/Sub. Names and payloads are
-- binary-safe strings. In OpenResty use a subscription within the request or timer that
-- made it (an ngx.timer is the usual home of a long listener).
function Client:subscribe(opts)
    if Client.subscription == nil then
        error("redpat: this core has no pub/sub", 2)
    end
    local h, err, detail = self:subscription(opts)
    if not h then
        return nil, err, detail
    end
    return setmetatable({ handle = h }, Sub)
end

--- sub:next(ms) -> message | nil, "timeout" (none within ms; default: no limit; nothing is
-- lost) | nil, err, detail
function Sub:next(ms)
    local s = self.stream
    if s == nil then
        if self.handle:_closed() then
            return M.error("state", "the subscription is closed")
        end
        local err, detail
        s, err, detail = M.open("subscription.listen", self.handle)
        if not s then
            return nil, err, detail
        end
        self.stream = s
    end
    local msg, err, detail = s:next(ms)
    if msg == nil and err ~= "timeout" then
        self.stream = nil
    end
    return msg, err, detail
end

--- for msg in sub:messages(ms) do ... end: each message until none comes within ms
-- (default: no limit); another failure raises its detail.
function Sub:messages(ms)
    return function()
        local msg, err, detail = self:next(ms)
        if msg == nil and err ~= "timeout" then
            error(detail, 2)
        end
        return msg
    end
end

--- sub:subscribe{channels =, patterns =}, sub:unsubscribe{...} (both absent: everything)
-- -> true | nil, err, detail: what the subscription wants; sent at the next sub:next.
function Sub:subscribe(opts)
    return self.handle:subscribe(opts)
end
function Sub:unsubscribe(opts)
    return self.handle:unsubscribe(opts)
end

--- sub:close(): closes its connection (which unsubscribes); unusable afterwards.
function Sub:close()
    if self.stream then
        self.stream:close()
        self.stream = nil
    end
    self.handle:close()
end
Sub.__close = Sub.close
Sub.__gc = Sub.close -- Lua 5.4 (in LuaJIT the op, client and handle userdata do it)

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
