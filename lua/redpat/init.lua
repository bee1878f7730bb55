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
--   local users = assert(client:cache("users", { ttl = 60000, stampede = "lock" }))
--   local user, err, rec = users:get_or_load(id, function(key) return db_row(key) end)
--   -- user: the value (JSON by default), nil with rec.negative for "none"; err on failure
--   users:set(id, user); users:write(id, user, save_row); users:delete(id)
--
-- Every method comes from the core's op descriptors (redpat.descriptors): the C glue
-- (redpat.core) converts arguments and results by them, so this file holds only Lua idiom:
-- which arguments are positional and which go in a trailing options table, records
-- unpacked into multiple returns, 1-based indexes, `nil, err, detail`, scoped use
-- (lock:with, lock:using, <close>), subscriptions as iterators, values through a
-- serializer and the near-cache's subscriber (caches), the OpenResty driver and headers
-- helper.
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
-- "cosocket" | "blocking". Ops that take a function (lock.using's fn, a cache's loader and
-- writer) take a Lua function; long-lived ops (a subscription's listen) run through
-- redpat.open on connections of their own.
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
    ["cache.new"] = false,                            -- client:cache(name, opts)
    ["cache.get"] = false,                            -- cache:get(key, opts), cache:lookup
    ["cache.get_or_load"] = false,                    -- cache:get_or_load(key, loader, opts)
    ["cache.set"] = false,                            -- cache:set(key, value, opts)
    ["cache.write"] = false,                          -- cache:write(key, value, writer, opts)
    ["cache.delete"] = false,                         -- cache:delete(key)
    ["cache.invalidate_tags"] = { pos = { "tags" } }, -- cache:invalidate_tags(tags) -> true
    ["cache.near_apply"] = { pos = { "kind", "data" }, accessors = false },
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

-- ---- caches: client:cache(name, opts) -> cache; cache:get(key, opts) -> value, nil, rec;
-- cache:lookup(key, opts) -> rec; cache:get_or_load(key, loader, opts) -> value, nil, rec;
-- cache:set(key, value, opts), cache:write(key, value, writer, opts) -> true, nil, rec;
-- cache:delete(key) -> existed, nil, rec; cache:invalidate_tags(tags) -> true;
-- cache:info() (no I/O); cache:near_pump(ms) (plain Lua); cache:near_apply(kind, data).
--
-- Every decision is the core's (cache.h): the keys, the stampede modes, versioned fills,
-- tags and the near-cache. This layer only turns Lua values into bytes (the serializer)
-- and runs the near-cache's subscriber.
--
-- Returns. Like lua-resty-mlcache's `value, err, hit_level`, a cache op returns its value,
-- nil, and then the core's record (rec) of what happened: rec.hit (answered from the cache,
-- Redis or near, without loading), rec.negative (the answer is "none": a negative entry, or
-- the loader returned nil), rec.stale (swr: a stale value while another caller refreshes),
-- rec.loaded (this call ran the loader), rec.stored (what was loaded or written went to the
-- cache; false after an invalidation since the miss, a load past load_timeout, or
-- negative_ttl 0), rec.near (answered from the near-cache: no round trip), rec.ttl (ms left
-- in Redis), rec.waits (polls while another caller loaded), and rec.value (the value,
-- decoded). A failure is nil, err, detail as everywhere in redpat. So
--   local user, err, rec = users:get(id)
--   if err then ... elseif user == nil then -- a miss (rec.hit false) or a negative hit
--   (rec.negative) -- end
-- A value is never nil on a hit: a negative hit returns nil without err, told from a miss
-- by rec.negative (or rec.hit).
--
-- Values. opts.serializer: a table with encode(v) -> string and decode(s) -> v, called
-- on every value written and read (a loader's result, set's and write's value); default
-- redpat.json (lua-cjson, an instance of its own: cjson.new()). lua-cjson is not a
-- dependency of the rock (OpenResty bundles it; in plain Lua install lua-cjson): without
-- it there is no default, and client:cache raises unless opts.serializer is given.
-- serializer = false: values are Lua strings, stored as they are (any bytes). A serializer
-- that raises fails the op with err "callback" (detail.message says which of encode and
-- decode, detail.error is what it raised), as the user's other functions do.
--
-- Callbacks. get_or_load's loader(key) returns the value, or nil for "none" (stored as a
-- negative entry for negative_ttl). write's writer(key, value) is the system of record's
-- write, run first (value nil: a negative write); the cache is written only when it
-- returns. A loader or writer that raises: nothing is cached, the load lock is released,
-- and the op returns nil, "callback", detail (detail.message: the error's text;
-- detail.error: the value raised, to re-raise with error(detail.error, 0)). In plain Lua
-- the function runs in the calling thread (it may use any redpat client, this one too);
-- in OpenResty in a light thread of its own. Under redpat.cancel_on_abort an aborted
-- request cancels a load in flight: its light thread is killed, the lock released, and
-- the op ends nil, "cancelled". A request (or light thread) killed outright while it loads
-- cannot run any clean-up: its load lock then expires after lock_ttl, after which the
-- next caller loads.
--
-- The near-cache (near_size > 0) lives in the C handle: an LRU of near_size entries kept
-- at most near_ttl ms, answering get / lookup / get_or_load without a round trip (rec.near)
-- and without decoding the bytes again in C (Lua decodes what it hands out). The core
-- serves from it only while its subscriber runs ("armed"): something must read the
-- invalidations published on cache:info().channel and hand every message to the core
-- (cache:near_apply(kind, data)). Which something:
--   OpenResty: per nginx worker. A cache with near_size > 0 starts, in each worker that
--     uses it, an ngx.timer running a subscription to the channel on a connection of its
--     own; every message it gets (the subscribe confirmation that arms, invalidations, a
--     reconnect that clears) goes to the core. The near-cache is the handle's,
--     so per worker, not a lua_shared_dict: the core's LRU, its TTLs and its sequenced
--     invalidations (a gap in a publisher's sequence clears it) are one C implementation
--     shared by every frontend, serving the value's bytes with no (de)serialization and no
--     lock shared between workers; a shared dict would need that logic again in Lua, with
--     every hit paying a shdict lookup, its mutex and a copy out of shared memory, and the
--     dict would still need one subscriber to keep it coherent. The cost: each worker
--     fills its own copy (worker count times the misses) and holds one subscription
--     connection per cache. Make caches once (a module-level table, init_by_lua or
--     init_worker_by_lua), not per request; a cache made before the fork gets its
--     subscriber in each worker at that worker's first use of it (any method, info()
--     too). cache:close() stops the subscriber (within a second).
--   Plain Lua (blocking driver): there is no event loop to run the subscriber in, so call
--     cache:near_pump(ms) from your own loop: it reads the invalidations that came (for up
--     to ms) and hands them to the core. Until the first near_pump the near-cache never
--     serves (it is not armed); between two pumps an entry may be served up to near_ttl
--     after another process changed it (the bound near_ttl always sets).
local Cache = mts.cache.__index

local cjson_lib -- loaded on first use: false when lua-cjson is not installed
local function json_lib()
    if cjson_lib == nil then
        local ok, m = pcall(require, "cjson")
        cjson_lib = ok and (m.new and m.new() or m) or false
    end
    return cjson_lib
end

--- redpat.json: the default serializer (lua-cjson): encode(v) -> string, decode(s) -> v.
M.json = {
    encode = function(v)
        local j = json_lib() or error("redpat.json needs lua-cjson (not installed)", 2)
        return j.encode(v)
    end,
    decode = function(s)
        local j = json_lib() or error("redpat.json needs lua-cjson (not installed)", 2)
        return j.decode(s)
    end,
}

-- Each cache's state: ser (its serializer, or false) and near (its near-cache subscriber).
local cache_state = setmetatable({}, { __mode = "k" })

local function cache_failure(name, message, raised)
    local _, e, detail = M.error(name, message)
    detail.error = raised
    return nil, e, detail
end

-- The bytes of value v under ser (raises for a wrong Lua type under serializer = false),
-- or nil, err, detail when the serializer failed.
local function encode(ser, v, what)
    if not ser then
        if type(v) ~= "string" then
            error(("%s must be a string with serializer = false (got %s)"):format(what, type(v)), 3)
        end
        return v
    end
    local ok, s = pcall(ser.encode, v)
    if not ok then
        return cache_failure("callback", "serializer.encode raised: " .. tostring(s), s)
    elseif type(s) ~= "string" then
        return cache_failure("callback",
            "serializer.encode returned " .. type(s) .. ", not a string")
    end
    return s
end

-- The record with its value decoded; returns value, nil, rec | nil, err, detail.
local function decoded(ser, rec, err, detail)
    if rec == nil then
        return nil, err, detail
    end
    local v = rec.value
    if v ~= nil and ser then
        local ok, d = pcall(ser.decode, v)
        if not ok then
            return cache_failure("callback", "serializer.decode raised: " .. tostring(d), d)
        end
        v = d
        rec.value = v
    end
    return v, nil, rec
end

local function run_of(name, npos)
    local s = spec(core.descriptors[name], npos)
    return s, performer(s, false)
end

local get_spec, run_get = run_of("cache.get", 1)
local load_spec, run_load = run_of("cache.get_or_load", 2)
local set_spec, run_set = run_of("cache.set", 2)
local write_spec, run_write = run_of("cache.write", 3)
local _, run_delete = run_of("cache.delete", 1)
local cache_spec = spec(core.descriptors["cache.new"], 1, { "serializer" })
local make_cache = performer(cache_spec, false)
local near_apply_run = performer(spec(core.descriptors["cache.near_apply"], 0), false)

local ensure_near -- (cache, st): the OpenResty subscriber, started in this worker

-- The state of a cache (its serializer), starting its near-cache's subscriber when this
-- worker has none yet (OpenResty).
local function state_of(self)
    local st = cache_state[self]
    if st == nil then -- a handle made by redpat.perform("cache.new"): strings as they are
        st = { ser = false }
        cache_state[self] = st
    end
    local w = st.near
    if w and not w.stopped and (not w.running or w.pid ~= w.worker_pid()) then
        ensure_near(self, st) -- a worker forked after the cache was made, or it failed
    end
    return st
end

--- client:cache(name, opts) -> cache | nil, err, detail
-- opts (the core's names, times in ms): ttl (required), negative_ttl (default 30000; 0:
-- "none" is not cached), jitter (<= ttl), stampede ("lock" (default) | "none" | "swr" |
-- "xfetch"), lock_ttl (5000), stale (swr: how long past ttl a stale value is served; 0 =
-- ttl), beta (xfetch, 1.0), load_timeout (60000: a fill later than this is not cached),
-- versioned (true), near_size (0: no near-cache), near_ttl (1000); and serializer (see
-- above). An unknown option name raises.
function Client:cache(name, opts)
    local ser
    if type(opts) == "table" then
        ser = opts.serializer
    end
    if ser == nil then
        if not json_lib() then
            error("client:cache: lua-cjson is not installed, so there is no default serializer: "
                .. "give serializer = false (values are strings) or { encode = f, decode = g }", 2)
        end
        ser = M.json
    elseif ser ~= false
        and not (type(ser) == "table" and ser.encode ~= nil and ser.decode ~= nil) then
        error("client:cache: serializer must be false or a table with encode and decode (got "
            .. type(ser) .. ")", 2)
    end
    local h, err, detail
    if opts == nil then
        h, err, detail = make_cache(self, name)
    else
        h, err, detail = make_cache(arguments(cache_spec, self, name, opts))
    end
    if not h then
        return nil, err, detail
    end
    local st = { ser = ser }
    cache_state[h] = st
    if driver_of[h] and h:near_size() > 0 then
        ensure_near(h, st)
    end
    return h
end

--- cache:get(key, opts) -> value, nil, rec | nil, nil, rec (a miss or a negative hit) |
-- nil, err, detail. opts.tags: the tags the entry must carry (a list of strings).
function Cache:get(key, opts)
    local st = state_of(self)
    if opts == nil then
        return decoded(st.ser, run_get(self, key))
    end
    return decoded(st.ser, run_get(arguments(get_spec, self, key, opts)))
end

do -- cache:info() (no I/O) starts this worker's near-cache subscriber too, as any op does
    local info = Cache.info
    function Cache:info()
        state_of(self)
        return info(self)
    end
end

--- cache:lookup(key, opts) -> rec | nil, err, detail: the core's record of a read (fields
-- above; rec.value decoded).
function Cache:lookup(key, opts)
    local v, err, rec = self:get(key, opts)
    if err ~= nil then
        return v, err, rec
    end
    return rec
end

--- cache:get_or_load(key, loader, opts) -> value, nil, rec | nil, err, detail
-- loader(key) -> value | nil ("none": a negative entry). opts.tags: the entry's tags;
-- opts.random: xfetch's draw in (0, 1] (default: the core draws). The value of a load is
-- the loader's own Lua value; others are decoded from the cache.
function Cache:get_or_load(key, loader, opts)
    if type(loader) ~= "function" then
        error("cache:get_or_load: loader must be a function (got " .. type(loader) .. ")", 2)
    end
    local st = state_of(self)
    local ser = st.ser
    local raised, result
    local function load(k)
        local ok, v = pcall(loader, k)
        if not ok then
            raised = { v }
            error(v, 0)
        elseif v == nil then
            return nil
        end
        local bytes, _, detail = encode(ser, v, "the loader's value")
        if bytes == nil then
            raised = { detail.error }
            error(detail.message, 0)
        end
        result = { v }
        return bytes
    end
    local rec, err, detail
    if opts == nil then
        rec, err, detail = run_load(self, key, load)
    else
        rec, err, detail = run_load(arguments(load_spec, self, key, load, opts))
    end
    if rec == nil then
        if err == "callback" and raised then
            detail.error = raised[1]
        end
        return nil, err, detail
    end
    if rec.loaded and result and rec.value ~= nil then
        rec.value = result[1]
        return result[1], nil, rec
    end
    return decoded(ser, rec)
end

--- cache:set(key, value, opts) -> true, nil, rec | nil, err, detail
-- Stores value (nil: a negative entry) under key; opts.tags: its tags. Bumps the entry's
-- generation (a load in flight will not overwrite it) and publishes the invalidation.
function Cache:set(key, value, opts)
    local st = state_of(self)
    local bytes, err, detail
    if value ~= nil then
        bytes, err, detail = encode(st.ser, value, "value")
        if bytes == nil then
            return nil, err, detail
        end
    end
    local rec
    if opts == nil then
        rec, err, detail = run_set(self, key, bytes)
    else
        rec, err, detail = run_set(arguments(set_spec, self, key, bytes, opts))
    end
    if rec == nil then
        return nil, err, detail
    end
    rec.value = value
    return true, nil, rec
end

--- cache:write(key, value, writer, opts) -> true, nil, rec | nil, err, detail
-- Write-through: writer(key, value) first (your database's write; value nil: a negative
-- write); only when it returns is the cache written, as set. A writer that raises leaves
-- the cache untouched: nil, "callback", detail (detail.error: what it raised).
function Cache:write(key, value, writer, opts)
    if type(writer) ~= "function" then
        error("cache:write: writer must be a function (got " .. type(writer) .. ")", 2)
    end
    local st = state_of(self)
    local bytes, err, detail
    if value ~= nil then
        bytes, err, detail = encode(st.ser, value, "value")
        if bytes == nil then
            return nil, err, detail
        end
    end
    local raised
    local function write(k)
        local ok, why = pcall(writer, k, value)
        if not ok then
            raised = { why }
            error(why, 0)
        end
    end
    local rec
    if opts == nil then
        rec, err, detail = run_write(self, key, bytes, write)
    else
        rec, err, detail = run_write(arguments(write_spec, self, key, bytes, write, opts))
    end
    if rec == nil then
        if err == "callback" and raised then
            detail.error = raised[1]
        end
        return nil, err, detail
    end
    rec.value = value
    return true, nil, rec
end

--- cache:delete(key) -> existed (bool), nil, rec | nil, err, detail
-- UNLINKs the entry, bumps its generation (a load in flight will not cache its old value),
-- publishes the invalidation.
function Cache:delete(key)
    state_of(self)
    local rec, err, detail = run_delete(self, key)
    if rec == nil then
        return nil, err, detail
    end
    return rec.hit, nil, rec
end

-- ---- the near-cache's subscriber

local NEAR_SLICE_MS = 1000  -- how often the subscriber looks at whether to stop (ms)
local NEAR_BACKOFF_MS = 100 -- the first wait before subscribing again after a failure
local NEAR_BACKOFF_MAX_MS = 5000
local NEAR_SUBSCRIBE_WAIT_MS = 2000 -- near_pump: the longest wait for a subscription's confirmation

-- The subscriber's cache, looked up afresh from the weak reference each time (so the
-- subscriber never keeps its cache alive); nil once it is closed or collected.
local function near_cache(w)
    local c = w.ref[1]
    if c == nil or c:_closed() then
        return nil
    end
    return c
end

-- Hands one subscription message to the core. false: the cache is gone.
local function near_feed(w, kind, data)
    local c = near_cache(w)
    if c == nil then
        return false
    end
    near_apply_run(c, kind, data)
    return true
end

local function near_timer(premature, w)
    local backoff = NEAR_BACKOFF_MS
    local exiting = ngx.worker.exiting
    while not premature and not w.stopped and not exiting() do
        local sub = w.client:subscribe{ channels = { w.channel } }
        local failed = sub == nil
        while not failed and not w.stopped and not exiting() do
            local msg, err = sub:next(NEAR_SLICE_MS)
            if msg then
                backoff = NEAR_BACKOFF_MS
                if not near_feed(w, msg.kind, msg.data) then
                    w.stopped = true
                end
            elseif err ~= "timeout" then
                failed = true
            elseif near_cache(w) == nil then
                w.stopped = true
            end
        end
        if sub then
            sub:close()
        end
        near_feed(w, "unsubscribe") -- stopped or failed: nothing vouches for the entries
        if failed and not w.stopped then
            ngx.sleep(backoff / 1000)
            backoff = math.min(backoff * 2, NEAR_BACKOFF_MAX_MS)
        end
    end
    w.running = false
end

-- Starts the subscriber of cache (OpenResty) in this worker, unless it runs already.
function ensure_near(cache, st)
    local w = st.near
    local pid = ngx.worker.pid()
    if w and w.pid == pid and (w.running or w.stopped) then
        return true
    end
    if w == nil then
        w = { ref = setmetatable({ cache }, { __mode = "v" }), client = client_of(cache),
              channel = cache:channel(), worker_pid = ngx.worker.pid }
        st.near = w
    end
    w.pid, w.running, w.stopped = pid, true, false
    local called, ok, err = pcall(ngx.timer.at, 0, function(premature)
        local fine, why = pcall(near_timer, premature, w)
        if not fine then
            w.running = false
            ngx.log(ngx.ERR, "redpat: the near-cache subscriber of ", w.channel, " raised: ",
                tostring(why))
        end
    end)
    if not (called and ok) then -- e.g. in init_by_lua: the first op in a worker tries again
        w.running = false
        w.pid = nil
        return nil, called and err or ok
    end
    return true
end

--- cache:near_pump(ms) -> messages | nil, err, detail (plain Lua)
-- Runs the near-cache's subscriber for up to ms (default 0: just what has come): reads the
-- invalidations published on the cache's channel and hands each to the core. The first
-- call subscribes (on a connection of its own) and waits for the confirmation (at most 2 s
-- more), which arms the near-cache; call it from your
-- loop at least every near_ttl ms. Returns how many messages it handled. On a failure the
-- near-cache is cleared and disarmed, and the next call subscribes again. Under the
-- cosocket driver a timer does this by itself, and this raises.
function Cache:near_pump(ms)
    if driver_of[self] then
        error("cache:near_pump: under the cosocket driver (OpenResty) an ngx.timer runs the "
            .. "near-cache's subscriber by itself", 2)
    end
    ms = ms or 0
    if type(ms) ~= "number" or ms < 0 then
        error("cache:near_pump: ms must be a number >= 0 (got " .. tostring(ms) .. ")", 2)
    end
    local st = state_of(self)
    local now = core.monotonic_ms
    local deadline, n = now() + ms, 0
    while true do
        local sub = st.sub
        if sub == nil then
            local err, detail
            sub, err, detail = client_of(self):subscribe{ channels = { self:channel() } }
            if not sub then
                return nil, err, detail
            end
            st.sub = sub
            -- a fresh subscription: wait for its confirmation (which arms the near-cache)
            local first = now() + NEAR_SUBSCRIBE_WAIT_MS
            if first > deadline then
                deadline = first
            end
        end
        local left = deadline - now()
        local msg, err, detail = sub:next(left > 1 and left or 1)
        if msg then
            near_apply_run(self, msg.kind, msg.data)
            n = n + 1
            if msg.kind == "subscribe" and deadline > now() + ms then
                deadline = now() + ms -- armed: the caller's own wait from here
            end
        elseif err == "timeout" then
            return n
        else
            near_apply_run(self, "unsubscribe")
            st.sub = nil
            sub:close()
            return nil, err, detail
        end
    end
end

do -- close stops the near-cache's subscriber
    local close = Cache.close
    function Cache:close()
        local st = cache_state[self]
        if st then
            if st.near then
                st.near.stopped = true
            end
            if st.sub then
                st.sub:close()
                st.sub = nil
            end
        end
        return close(self)
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
