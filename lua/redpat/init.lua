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
-- Times are integer milliseconds everywhere (ttl, wait, retry_min, retry_max, extend,
-- window, retry_after, reset_after, timeouts), as in the core and the shared test matrix.
-- Expected failures come back as `nil, err`: err is a table {name = <core status name>,
-- message = <text>, code = <rp_status>} that prints as "name: message". Normal outcomes
-- (a busy lock, a refused fencing token, a refused rate limit check) are results, not
-- errors. Wrong argument types raise, as in Lua's standard library.
--
-- Drivers: inside nginx (OpenResty / lua-nginx-module) the client moves the core's bytes
-- over ngx.socket.tcp cosockets and waits with ngx.sleep; elsewhere it uses the core's own
-- blocking connection. Choose explicitly with opts.driver = "cosocket" | "blocking".
local core = require "redpat.core"

local IO, SLEEP, DONE = core.IO, core.SLEEP, core.DONE
local select, error, type, setmetatable = select, error, type, setmetatable
local unpack = table.unpack or unpack -- luacheck: ignore

local M = {
    null = core.null,      -- a Redis nil inside replies (equal to cjson.null and ngx.null)
    version = core.version,
    core = core,           -- the op API, for people who bring their own I/O loop
}

local mts = core.metatables
local Client = mts.client.__index
local Lock = mts.lock.__index
local Limiter = mts.ratelimiter.__index

-- Per-client driver state and per-lock (per-limiter) client, keyed weakly by the handles.
local driver_of = setmetatable({}, { __mode = "k" })
local client_of = setmetatable({}, { __mode = "k" })

local cosocket -- loaded on first use (it needs ngx)

local function in_nginx()
    return type(ngx) == "table" and type(ngx.socket) == "table" and ngx.socket.tcp ~= nil
end

--- Runs op to its end over client's driver. Returns the op's results, or nil, err.
-- The op is freed here in every case.
local function run(client, op)
    local st = driver_of[client]
    if st == nil or st.blocking then
        return op:_run() -- the core's own connection; result read and op freed in C
    end
    return cosocket.run(st, client, op)
end
M._run = run

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
    opts = opts or {}
    local driver = opts.driver or (in_nginx() and "cosocket" or "blocking")
    if driver ~= "blocking" and driver ~= "cosocket" then
        error("redpat.connect: driver must be \"blocking\" or \"cosocket\"", 2)
    end
    local client, err = core.client_new(url, opts) -- validates url and options, no I/O
    if not client then
        return nil, err
    end
    if driver == "cosocket" then
        cosocket = cosocket or require "redpat.cosocket"
        local st, perr = cosocket.endpoint(client, url, opts)
        if not st then
            client:_close()
            return nil, perr
        end
        driver_of[client] = st
    else
        driver_of[client] = { blocking = true }
    end
    return client
end

--- client:driver() -> "blocking" | "cosocket"
function Client:driver()
    local st = driver_of[self]
    return (st == nil or st.blocking) and "blocking" or "cosocket"
end

--- client:close(): drops this handle; the connection closes once no lock handle uses it.
function Client:close()
    if not self:_closed() then
        self:_close()
    end
end

--- client:lock(name, opts) -> lock | nil, err
-- name: bytes (binary-safe). opts: ttl (ms, default 30000), fenced (bool).
function Client:lock(name, opts)
    local lock, err = core.lock_new(self, name, opts)
    if not lock then
        return nil, err
    end
    client_of[lock] = self
    return lock
end

--- client:fence_check(resource, token) -> accepted, highest | nil, err
-- For storage receiving fenced writes: records token as the highest seen for resource
-- unless an older one (accepted == false: refuse the write).
function Client:fence_check(resource, token)
    local op, err = core.fence_check_op(self, resource, token)
    if not op then
        return nil, err
    end
    return run(self, op)
end

--- client:command(name, ...) -> reply | nil, err
-- A raw Redis command (binary-safe). Replies: strings (bulk and status), integers,
-- arrays (tables; a nil inside is redpat.null), redpat.null for nil. An error reply is
-- nil, err with err.name == "reply".
function Client:command(...)
    local op, err = core.command_op(self, ...)
    if not op then
        return nil, err
    end
    local value, kind = run(self, op)
    if value == nil then
        return nil, kind
    end
    if kind == "error" then
        return nil, value
    end
    return value
end

local function lock_run(lock, op, err)
    if not op then
        return nil, err
    end
    return run(client_of[lock], op)
end

--- lock:acquire(opts) -> acquired, fence, attempts | nil, err
-- opts: wait (ms; absent or 0: try once; math.huge: until acquired), retry_min and
-- retry_max (ms, jittered exponential backoff between attempts), token (owner token
-- bytes; default 128 random bits). acquired is false when the lock stayed busy.
-- fence is the fencing token (fenced locks), else 0.
function Lock:acquire(opts)
    return lock_run(self, self:_acquire_op(opts))
end

--- lock:release() -> true | nil, err   (err.name == "not_owned" if the lock was lost)
function Lock:release()
    return lock_run(self, self:_release_op())
end

--- lock:extend(ms, replace) -> true | nil, err
-- Adds ms to the remaining TTL, or sets the TTL to ms when replace is true.
function Lock:extend(ms, replace)
    return lock_run(self, self:_extend_op(ms, replace))
end

--- lock:locked() -> bool | nil, err   (anyone holds it)
function Lock:locked()
    return lock_run(self, self:_locked_op())
end

--- lock:owned() -> bool | nil, err    (this handle holds it)
function Lock:owned()
    return lock_run(self, self:_owned_op())
end

--- lock:client() -> the client the handle was made from
function Lock:client()
    return client_of[self]
end

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
    -- local lock <close> = client:lock(...): the lock is released at scope exit if held.
    -- A failed release raises (unless the scope is already unwinding an error).
    mts.lock.__close = function(lock, unwinding)
        if lock:token() ~= nil then
            local ok, err = lock:release()
            if not ok and unwinding == nil then
                error(err, 2)
            end
        end
    end
    mts.client.__close = function(client)
        client:close()
    end
end

-- ---- rate limiters

--- client:ratelimiter(name, opts) -> limiter | nil, err
-- name: 1..128 bytes without '{' or '}' (keeps limiters apart in Redis).
-- opts: algorithm ("gcra" (default), "fixed_window", "sliding_log", "sliding_window",
--       "token_bucket"), limit (requests per window), window (ms), burst (token
--       bucket and GCRA: most requests at once; default limit), on_error ("report"
--       (default): a Redis failure is nil, err; "fail_open": allowed; "fail_closed":
--       refused; either way marked degraded).
-- Bad values come back as nil, err with err.name == "invalid_argument" naming the option.
function Client:ratelimiter(name, opts)
    local limiter, err = core.ratelimit_new(self, name, opts)
    if not limiter then
        return nil, err
    end
    client_of[limiter] = self
    return limiter
end

local function limiter_run(limiter, op, err)
    if not op then
        return nil, err
    end
    return run(client_of[limiter], op)
end

--- limiter:check(subject, cost) -> decision | nil, err
-- subject: bytes (binary-safe, 1..65536). cost: default 1; 0 peeks without consuming; a
-- cost above the limit (burst) is invalid_argument, as it could never be allowed.
-- decision: { allowed (bool), limit, remaining (requests of cost 1 left now),
--   retry_after (ms until this request would be allowed; 0 when allowed), reset_after (ms
--   until the full allowance is back), degraded (bool: Redis failed and on_error decided;
--   then error is an err value naming the failure) }. Decided on the Redis server's clock
--   in one round trip.
function Limiter:check(subject, cost)
    return limiter_run(self, self:_check_op(subject, cost))
end

--- limiter:reset(subject) -> true | nil, err   (forgets everything about subject)
function Limiter:reset(subject)
    return limiter_run(self, self:_reset_op(subject))
end

--- limiter:batch(subjects, costs) -> { decision, ... } | nil, err
-- One check per subject (costs: a list as long as subjects, or nil for all 1), pipelined
-- in one round trip. With on_error "report" any Redis failure fails the whole batch;
-- otherwise each failed check gets the policy's degraded decision.
function Limiter:batch(subjects, costs)
    return limiter_run(self, self:_batch_op(subjects, costs))
end

--- limiter:client() -> the client the limiter was made from
function Limiter:client()
    return client_of[self]
end

--- client:ratelimit_multi({limiter, ...}, subject, cost) -> decision | nil, err
-- All-or-nothing over several limits (e.g. 10 per second and 1000 per hour) in one
-- script: allowed only if every limiter allows, and then cost is taken from each; a
-- refusal takes nothing. A refused decision carries the refusing limit's numbers and
-- refused_by, its index in the list (1-based); an allowed one the numbers of the limit
-- with the least remaining. The limiters must come from this client; the strictest
-- on_error applies (fail_closed > report > fail_open).
function Client:ratelimit_multi(limiters, subject, cost)
    if type(limiters) == "table" then
        for i, limiter in ipairs(limiters) do
            if client_of[limiter] ~= nil and client_of[limiter] ~= self then
                return nil, core.error("invalid_argument",
                    ("limiters[%d] was made by another client"):format(i))
            end
        end
    end
    local op, err = core.ratelimit_multi_op(limiters, subject, cost)
    if not op then
        return nil, err
    end
    return run(self, op)
end

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

--- redpat.error(name, message) -> err   (an error value, as the library returns them)
M.error = core.error

M.IO, M.SLEEP, M.DONE = IO, SLEEP, DONE

return M
