--- The shared test matrix (tests/matrix/*.json), run through the redpat Lua API.
-- Used by the plain Lua runner (tests/lua/run_matrix.lua, Lua 5.4 and LuaJIT) and inside
-- nginx (tests/openresty/app.lua), so every Lua frontend runs the same code per case.
-- Format: tests/matrix/README.md. Generic: an op step is any op the core describes
-- (redpat.descriptors), performed by name with one call of the public redpat.perform;
-- results and errors are compared by the descriptor's field types. An op the core does not
-- describe fails the case (never a skip).
local M = {}

local unpack = table.unpack or unpack -- luacheck: ignore

--- Reads every *.json in dirs (one directory, or several separated by ':', e.g. to run
-- staged cases beside the shared ones). Returns a list of cases, each with its file's
-- namespace.
function M.load(dirs, cjson)
    local cases = {}
    local files = {}
    for dir in dirs:gmatch("[^:]+") do
        local ls = assert(io.popen('ls -1 "' .. dir .. '"'))
        local names = {}
        for name in ls:lines() do
            if name:match("%.json$") then
                names[#names + 1] = name
            end
        end
        ls:close()
        table.sort(names)
        for _, name in ipairs(names) do
            files[#files + 1] = { dir = dir, name = name }
        end
    end
    for _, file in ipairs(files) do
        local name = file.name
        local f = assert(io.open(file.dir .. "/" .. name, "rb"))
        local doc = cjson.decode(f:read("*a"))
        f:close()
        for _, case in ipairs(doc.cases) do
            case.namespace = doc.namespace
            case.file = name
            cases[#cases + 1] = case
        end
    end
    return cases
end

local function hex_decode(h)
    return (h:gsub("%x%x", function(x)
        return string.char(tonumber(x, 16))
    end))
end

--- Matrix bytes: a JSON string, {"hex": "..."} or {"repeat": ["s", n]} (s n times).
local function bytes(v)
    if type(v) == "table" and v.hex ~= nil then
        return hex_decode(v.hex)
    elseif type(v) == "table" and type(v["repeat"]) == "table" then
        return string.rep(v["repeat"][1], v["repeat"][2])
    end
    return v
end
M.bytes = bytes

local function show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    elseif type(v) == "table" and getmetatable(v) == nil then
        local parts = {}
        for i = 1, #v do
            parts[i] = show(v[i])
        end
        return "[" .. table.concat(parts, ", ") .. "]"
    end
    return tostring(v)
end

local function reply_equal(value, expected, null)
    if expected == null then
        return value == null
    elseif type(expected) == "number" then
        return type(value) == "number" and value == expected
    elseif type(expected) == "string" or (type(expected) == "table" and
            (expected.hex ~= nil or expected["repeat"] ~= nil)) then
        return type(value) == "string" and value == bytes(expected)
    elseif type(expected) == "table" then
        if type(value) ~= "table" or #value ~= #expected then
            return false
        end
        for i = 1, #expected do
            if not reply_equal(value[i], expected[i], null) then
                return false
            end
        end
        return true
    elseif type(expected) == "boolean" then
        return value == expected
    end
    return false
end

-- Lua keeps the core's argument names: the name an error must show is the core's own.
local function names(message, arg)
    local word = arg:gsub("%W", "%%%0")
    return tostring(message):find("%f[%w_]" .. word .. "%f[^%w_]") ~= nil
end

-- A failure is nil, err, detail: err the status name (a string), detail.message the text.
local function check_error(d, expect, err, detail)
    for key in pairs(expect) do
        if key ~= "error" and key ~= "message_contains" and key ~= "names_arg" then
            return "an error expectation has no key " .. key
        end
    end
    if err == nil then
        return "expected error " .. expect.error .. ", but it succeeded"
    end
    if type(err) ~= "string" or type(detail) ~= "table" or detail.name ~= err then
        return "a failure must be nil, err (a string), detail (its table), got "
            .. show(err) .. ", " .. show(detail)
    end
    if err ~= expect.error then
        return "expected error " .. expect.error .. ", got " .. tostring(detail)
    end
    local message = detail.message
    if expect.message_contains and not tostring(message):find(expect.message_contains, 1, true) then
        return "error message " .. show(message) .. " lacks " .. show(expect.message_contains)
    end
    if expect.names_arg then
        if d.arg[expect.names_arg] == nil then
            return "names_arg: " .. d.name .. " has no argument " .. expect.names_arg
        end
        if not names(message, expect.names_arg) then
            return "error message " .. show(message) .. " does not name " .. expect.names_arg
        end
    end
    return nil
end

-- Does result value got (a field of type ftype) match the expected JSON value?
local function matches(got, ftype, want, null)
    if type(want) == "table" and want.between ~= nil then
        return type(got) == "number" and got >= want.between[1] and got <= want.between[2]
    elseif want == null then
        return got == nil
    elseif ftype == "bytes" or ftype == "enum" then
        return type(got) == "string" and got == bytes(want)
    elseif ftype == "status" then -- nil when ok, else its detail table
        return (got == nil and want == "ok") or (type(got) == "table" and got.name == want)
    elseif ftype == "reply" then
        return reply_equal(got, want, null)
    end
    return got == want -- bool, int, ms, float
end

-- A step's expectation against what redpat.perform returned (result or nil, err, detail).
-- (A "calls" key is the runner's, checked before.)
local function check_expect(d, expect, result, err, detail, null)
    if expect ~= nil and expect.error ~= nil then
        return check_error(d, expect, err, detail)
    end
    if err ~= nil or result == nil then
        return "failed: " .. tostring(detail or err)
    end
    if expect == nil or next(expect) == nil then
        return nil
    end
    if d.makes or d.shape == "none" then
        return d.name .. " has no result to expect fields of"
    end
    for field, want in pairs(expect) do
        local f = d.field[field]
        if f == nil then
            return d.name .. " has no result field " .. field
        end
        if d.shape == "list" then -- each expected field: the list of it over the records
            if type(want) ~= "table" or #want ~= #result then
                return ("%s: %d records, expected %s for %s"):format(d.name, #result, show(want), field)
            end
            for i, rec in ipairs(result) do
                if not matches(rec[field], f.type, want[i], null) then
                    return ("%s[%d] = %s, expected %s"):format(field, i - 1, show(rec[field]), show(want[i]))
                end
            end
        elseif not matches(result[field], f.type, want, null) then
            return ("result %s = %s, expected %s"):format(field, show(result[field]), show(want))
        end
    end
    return nil
end

-- A matrix value as the Lua value the descriptor's argument type takes.
local function arg_value(a, v, null)
    if v == null then
        return nil
    elseif a ~= nil and (a.type == "bytes" or a.type == "enum") then
        return bytes(v)
    elseif a ~= nil and a.type == "list" and type(v) == "table" then
        local out = {}
        for i, item in ipairs(v) do
            out[i] = bytes(item) -- anything but {"hex": ...} / {"repeat": ...} as it is
        end
        return out
    end
    return v
end

-- The keys each step form may have (an op step also its handle argument's name).
local STEP_KEYS = {
    op = { op = true, as = true, args = true, call = true, expect = true, elapsed_max = true },
    redis = { redis = true, server = true, key = true, expect = true },
    sleep = { sleep = true },
    stop = { stop = true },
    cont = { cont = true },
    messages = { messages = true, count = true, timeout = true, expect = true },
    close = { close = true },
}
local STEP_ORDER = { "op", "redis", "sleep", "stop", "cont", "messages", "close" }

-- Which form step is, or nil and why not.
local function step_kind(step)
    local kind
    for _, k in ipairs(STEP_ORDER) do
        if step[k] ~= nil then
            if kind then
                return nil, "a step with both " .. kind .. " and " .. k
            end
            kind = k
        end
    end
    if kind == nil then
        return nil, "unknown step kind"
    end
    return kind
end

local function unknown_key(step, keys, extra)
    for k in pairs(step) do
        if not keys[k] and k ~= extra then
            return "unknown step key " .. tostring(k)
        end
    end
    return nil
end

local run_steps -- (ctx, steps, where) -> nil | why

-- The raw-command client of server i (0-based): the case's own client for server 0 (its
-- first endpoint), a client over that server alone for the others.
local function server_client(ctx, i)
    if type(i) ~= "number" or i < 0 or i >= ctx.nservers or i % 1 ~= 0 then
        return nil, "server " .. tostring(i) .. " is not one of the case's " .. ctx.nservers
    end
    if i == 0 then
        return ctx.client
    end
    local c = ctx.server_clients[i]
    if c == nil then
        local err, detail
        c, err, detail = ctx.env.redpat.connect(ctx.env.urls[i + 1], ctx.opts)
        if not c then
            return nil, "connect to server " .. i .. ": " .. tostring(detail or err)
        end
        ctx.server_clients[i] = c
    end
    return c
end

-- A callback answering each CALL with call's nested steps, then its return or raise. Counts
-- its runs in counter.n; a nested step's failure goes to counter.fail (and raises, so that
-- the op cleans up).
local function callback(ctx, call, counter)
    return function()
        counter.n = counter.n + 1
        local fail = run_steps(ctx, call.steps or {}, "in the callback, ")
        if fail then
            counter.fail = counter.fail or fail
            error("a step inside the callback failed: " .. fail, 0)
        end
        if call.raise ~= nil then
            error(call.raise, 0)
        end
        if call["return"] ~= nil then
            return bytes(call["return"])
        end
    end
end

local function check_call(call)
    if type(call) ~= "table" then
        return "call must be an object"
    end
    for k in pairs(call) do
        if k ~= "steps" and k ~= "return" and k ~= "raise" then
            return "unknown call key " .. tostring(k)
        end
    end
    if call["return"] ~= nil and call.raise ~= nil then
        return "a call with both return and raise"
    end
    return nil
end

--- One op step, for any op the core describes: handles by label, the other arguments by the
-- core's names, through redpat.perform (redpat.open for long-lived ops), the public API
-- every generated method uses.
local function run_op(ctx, step)
    local env, handles = ctx.env, ctx.handles
    local redpat, null = env.redpat, env.null
    local d = redpat.descriptors[step.op]
    if d == nil then
        return "this runner knows no op " .. tostring(step.op) .. " (not described by the core)"
    end
    local self
    local sa = d.args[1] and d.args[1].self and d.args[1] or nil
    local bad = unknown_key(step, STEP_KEYS.op, sa and sa.name)
    if bad then
        return bad
    end
    if sa then
        local label = step[sa.name]
        if sa.type == "list" then
            if type(label) ~= "table" then
                return "the step needs " .. sa.name .. " (a list of labels)"
            end
            self = {}
            for i, l in ipairs(label) do
                self[i] = handles[l]
                if self[i] == nil then
                    return "unknown handle label " .. tostring(l)
                end
            end
        elseif label ~= nil then
            self = handles[label]
            if self == nil then
                return "unknown handle label " .. tostring(label)
            end
        elseif sa.kind == "client" then
            self = ctx.client
        else
            return "the step needs " .. sa.name .. " (a label)"
        end
    end
    local args = {}
    for name, v in pairs(step.args or {}) do
        local a = d.arg[name]
        if a == nil or a.self then
            return d.name .. " has no argument " .. tostring(name)
        elseif a.type == "callback" then
            return "a callback (" .. name .. ") is answered by the step's call, not given in args"
        end
        args[name] = arg_value(a, v, null)
    end
    local expect = step.expect
    local counter = { n = 0 }
    if step.call ~= nil then
        local why = check_call(step.call)
        if why then
            return why
        end
        for _, a in ipairs(d.args) do
            if a.type == "callback" then
                args[a.name] = callback(ctx, step.call, counter)
            end
        end
    end
    if expect ~= nil and expect.calls ~= nil then
        if step.call == nil then
            return "expect.calls without a call"
        end
        local rest = {}
        for k, v in pairs(expect) do
            if k ~= "calls" then
                rest[k] = v
            end
        end
        expect = rest
    end
    if d.long_lived then
        if step.as == nil then
            return "a long-lived op needs \"as\""
        elseif step.call ~= nil or step.elapsed_max ~= nil then
            return "a long-lived op takes no call and no elapsed_max"
        elseif expect ~= nil and next(expect) ~= nil and expect.error == nil then
            return "a long-lived op may only expect an error (of beginning it)"
        end
        local ok, stream, err, detail = pcall(redpat.open, step.op, self, args)
        if not ok then
            stream, err, detail = nil, "invalid_argument", { name = "invalid_argument", message = stream }
        end
        if stream then
            if ctx.streams[step.as] then
                ctx.streams[step.as]:close()
            end
            ctx.streams[step.as] = { stream = stream, d = d }
        end
        if expect ~= nil and expect.error ~= nil then
            return check_error(d, expect, err, detail)
        end
        return stream == nil and ("failed: " .. tostring(detail or err)) or nil
    end
    -- wrong Lua types and unknown names raise a string: that is how this frontend fails
    -- them (as invalid arguments), so it is the step's error
    local t0 = env.now_ms()
    local ok, result, err, detail = pcall(redpat.perform, step.op, self, args)
    local elapsed = env.now_ms() - t0
    if not ok then
        if type(result) ~= "string" then
            return "raised: " .. tostring(result)
        end
        result, err, detail = nil, "invalid_argument", { name = "invalid_argument", message = result }
    end
    if d.makes and result ~= nil and step.as ~= nil then
        handles[step.as] = result
    end
    if counter.fail then
        return counter.fail
    end
    if step.elapsed_max ~= nil and elapsed > step.elapsed_max then
        return ("took %d ms, more than elapsed_max %d ms"):format(elapsed, step.elapsed_max)
    end
    if step.expect ~= nil and step.expect.calls ~= nil and counter.n ~= step.expect.calls then
        return ("the callback ran %d times, expected %d"):format(counter.n, step.expect.calls)
    end
    return check_expect(d, expect, result, err, detail, null)
end

local function run_redis(ctx, step)
    local null, handles = ctx.env.null, ctx.handles
    local bad = unknown_key(step, STEP_KEYS.redis)
    if bad then
        return bad
    end
    local client, cwhy = server_client(ctx, step.server or 0)
    if not client then
        return cwhy
    end
    if type(step.redis) ~= "table" or #step.redis == 0 then
        return "redis takes a command: a non-empty list"
    end
    local argv = {}
    for i, a in ipairs(step.redis) do
        if type(a) == "number" then -- (cjson may give 5 as 5.0: sent as "5")
            argv[i] = a % 1 == 0 and ("%d"):format(a) or tostring(a)
        else
            argv[i] = bytes(a)
        end
    end
    -- client.command by its descriptor, with the step's key (routes the command on a
    -- cluster: the hash slot of that key; a single node ignores it)
    local redpat = ctx.env.redpat
    local args = { argv = argv }
    if step.key ~= nil then
        local key = bytes(step.key)
        if type(key) ~= "string" then
            return "key must be bytes (a string, {\"hex\": ...} or {\"repeat\": ...})"
        end
        if redpat.descriptors["client.command"].arg.key ~= nil then
            args.key = key
        elseif ctx.env.cluster then
            return "this core's client.command takes no key: it cannot route " .. show(argv[1])
        end -- (a core without it: a single node needs none)
    end
    local called, r, err, detail = pcall(redpat.perform, "client.command", client, args)
    if not called then
        return "client.command raised: " .. tostring(r)
    end
    local value = r and r.reply
    if r ~= nil and getmetatable(value) == redpat.core.metatables.error then
        value, err, detail = nil, value.name, value -- an error reply
    end
    local expect = step.expect
    local cmd = tostring(argv[1])
    if expect == nil then
        if value == nil then
            return cmd .. " failed: " .. tostring(detail)
        end
        return nil
    end
    if expect.reply_error ~= nil then
        if value ~= nil then
            return cmd .. ": expected an error reply, got " .. show(value)
        end
        if err ~= "reply" or not tostring(detail.message):find(expect.reply_error, 1, true) then
            return cmd .. ": expected an error reply with " .. show(expect.reply_error) .. ", got "
                .. tostring(detail)
        end
        return nil
    end
    if value == nil then
        return cmd .. " failed: " .. tostring(detail)
    end
    if expect.reply ~= nil then
        if not reply_equal(value, expect.reply, null) then
            return cmd .. ": reply " .. show(value) .. ", expected " .. show(expect.reply)
        end
    elseif expect.reply_between ~= nil then
        local lo, hi = expect.reply_between[1], expect.reply_between[2]
        if type(value) ~= "number" or value < lo or value > hi then
            return cmd .. ": reply " .. show(value) .. " not in [" .. lo .. ", " .. hi .. "]"
        end
    elseif expect.reply_token_of ~= nil then
        local lock = handles[expect.reply_token_of]
        if lock == nil then
            return "unknown lock label " .. tostring(expect.reply_token_of)
        end
        local info = ctx.env.redpat.perform("lock.info", lock)
        local token = info and info.token
        if type(value) ~= "string" or value ~= token then
            return cmd .. ": reply " .. show(value) .. " is not the token of " .. expect.reply_token_of
                .. " (" .. show(token) .. ")"
        end
    else
        return "unknown redis expectation"
    end
    return nil
end

-- The pids of server i (0-based): on a cluster every node's, on a single node its one.
local function server_pids(env, i)
    local p = env.pids[i + 1]
    if type(p) == "table" then
        return p
    end
    return { p }
end

-- SIGSTOP / SIGCONT the servers listed (0-based indexes): every process of each.
local function signal(ctx, step, kind)
    local bad = unknown_key(step, STEP_KEYS[kind])
    if bad then
        return bad
    end
    local list = step[kind]
    if type(list) ~= "table" then
        return kind .. " takes a list of server indexes"
    end
    for _, i in ipairs(list) do
        if type(i) ~= "number" or i < 0 or i >= ctx.nservers or i % 1 ~= 0 then
            return "server " .. tostring(i) .. " is not one of the case's " .. ctx.nservers
        end
        local pids = server_pids(ctx.env, i)
        if #pids == 0 then
            return "no pid for server " .. i .. " (REDPAT_TEST_PIDS)"
        end
        for _, pid in ipairs(pids) do
            ctx.env.signal(pid, kind == "stop" and "STOP" or "CONT")
        end
    end
    return nil
end

-- Does message msg (a table by the op's message fields) match want?
local function message_fails(d, msg, want, null)
    for field, v in pairs(want) do
        local f
        for _, mf in ipairs(d.message_fields) do
            if mf.name == field then
                f = mf
            end
        end
        if f == nil then
            return d.name .. "'s messages have no field " .. tostring(field)
        end
        if not matches(msg[field], f.type, v, null) then
            return ("field %s = %s, expected %s"):format(field, show(msg[field]), show(v))
        end
    end
    return nil
end

local function show_message(d, msg)
    local parts = {}
    for _, f in ipairs(d.message_fields) do
        if msg[f.name] ~= nil then
            parts[#parts + 1] = f.name .. "=" .. show(msg[f.name])
        end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

local function run_messages(ctx, step)
    local env = ctx.env
    local bad = unknown_key(step, STEP_KEYS.messages)
    if bad then
        return bad
    end
    local l = ctx.streams[step.messages]
    if l == nil then
        return "no long-lived op labelled " .. tostring(step.messages)
    end
    local count, timeout = step.count, step.timeout
    if type(count) ~= "number" or type(timeout) ~= "number" then
        return "messages needs count and timeout"
    end
    local expect = step.expect
    if expect ~= nil and #expect ~= count then
        return ("expect lists %d messages, count is %d"):format(#expect, count)
    end
    local deadline = env.now_ms() + timeout
    if count == 0 then
        local msg, err, detail = l.stream:next(timeout)
        if msg ~= nil then
            return "expected no message within " .. timeout .. " ms, got " .. show_message(l.d, msg)
        elseif err ~= "timeout" then
            return "the op failed: " .. tostring(detail or err)
        end
        return nil
    end
    for i = 1, count do
        local left = deadline - env.now_ms()
        local msg, err, detail = l.stream:next(left > 0 and left or 0)
        if msg == nil then
            if err == "timeout" then
                return ("%d of %d messages within %d ms"):format(i - 1, count, timeout)
            end
            return "the op failed: " .. tostring(detail or err)
        end
        local why = expect and message_fails(l.d, msg, expect[i], env.null)
        if why then
            return ("message %d %s: %s"):format(i, show_message(l.d, msg), why)
        end
    end
    return nil
end

local function run_close(ctx, step)
    local bad = unknown_key(step, STEP_KEYS.close)
    if bad then
        return bad
    end
    local l = ctx.streams[step.close]
    if l == nil then
        return "no long-lived op labelled " .. tostring(step.close)
    end
    l.stream:close()
    ctx.streams[step.close] = nil
    return nil
end

function run_steps(ctx, steps, where)
    for i, step in ipairs(steps) do
        local kind, fail = step_kind(step)
        if kind == "op" then
            fail = run_op(ctx, step)
        elseif kind == "redis" then
            fail = run_redis(ctx, step)
        elseif kind == "sleep" then
            fail = unknown_key(step, STEP_KEYS.sleep)
            if not fail then
                ctx.env.sleep_ms(step.sleep)
            end
        elseif kind == "stop" or kind == "cont" then
            fail = signal(ctx, step, kind)
        elseif kind == "messages" then
            fail = run_messages(ctx, step)
        elseif kind == "close" then
            fail = run_close(ctx, step)
        end
        if fail then
            return ("%sstep %d (%s): %s"):format(where, i, tostring(step.op or kind or "?"), fail)
        end
    end
    return nil
end

--- A blocking sleep for plain Lua (never inside nginx: use ngx.sleep there).
function M.sleep_ms(ms)
    os.execute(("sleep %.3f"):format(ms / 1000))
end

--- Sends a signal ("STOP", "CONT") to a process, for plain Lua.
function M.signal(pid, sig)
    os.execute(("kill -%s %d"):format(sig, pid))
end

--- A ','-joined list of endpoint URLs split into its endpoints: a ',' starts a new one
-- only when what follows it has a "://" (a scheme); otherwise it continues the current
-- cluster URL's seed list ("redis+cluster://h:1,h:2,redis+cluster://h:3" is two).
function M.split_urls(s)
    local urls = {}
    for piece in (s or ""):gmatch("[^,]+") do
        if #urls == 0 or piece:find("://", 1, true) then
            urls[#urls + 1] = piece
        else
            urls[#urls] = urls[#urls] .. "," .. piece
        end
    end
    return urls
end

-- Per server (',') its items (' '): REDPAT_TEST_NODES / REDPAT_TEST_PIDS on a cluster.
local function groups(s, conv)
    local out = {}
    for group in (s or ""):gmatch("[^,]+") do
        local g = {}
        for item in group:gmatch("%S+") do
            g[#g + 1] = conv and conv(item) or item
        end
        out[#out + 1] = g
    end
    return out
end

--- The test servers from the harness's environment: urls, pids (lists, same order), and
-- on a cluster (REDPAT_TEST_CLUSTER=1) nodes: per server (a cluster) the list of its
-- nodes' plain URLs (masters first, then any replicas); pids is then per server the list
-- of its nodes' pids.
function M.servers(getenv)
    local urls = M.split_urls(getenv("REDPAT_TEST_URLS") or getenv("REDPAT_TEST_URL"))
    if getenv("REDPAT_TEST_CLUSTER") == "1" then
        return urls, groups(getenv("REDPAT_TEST_PIDS"), tonumber), groups(getenv("REDPAT_TEST_NODES"))
    end
    local pids = {}
    for p in (getenv("REDPAT_TEST_PIDS") or ""):gmatch("[^,]+") do
        pids[#pids + 1] = tonumber(p)
    end
    return urls, pids, nil
end

-- Clients of single cluster nodes (plain URLs), for the per-case reset: kept from case
-- to case (in nginx: per worker).
local node_clients = {}

-- A command sent to one node (url) directly. A cached client's connection that broke
-- meanwhile gets one more try on a fresh client. nil, why, err on failure.
local function node_command(env, url, ...)
    for attempt = 1, 2 do
        local c = node_clients[url]
        if c == nil then
            local err, detail
            c, err, detail = env.redpat.connect(url, env.connect_opts)
            if not c then
                return nil, "connect to " .. url .. ": " .. tostring(detail or err)
            end
            node_clients[url] = c
        end
        local v, err, detail = c:command(...)
        if v ~= nil then
            return v
        end
        if err == "reply" then
            return nil, tostring(detail), err
        end
        node_clients[url] = nil
        c:close()
        if attempt == 2 then
            return nil, tostring(detail or err), err
        end
    end
end

-- Every case starts from empty servers that accept writes (a failed case of oom.json may
-- have left maxmemory below the memory in use). On a cluster: every node of every server,
-- each directly (a replica, with --replicas, refuses FLUSHALL: its master's reaches it).
local function reset_cluster(env)
    for s, nodes in ipairs(env.nodes) do
        for _, url in ipairs(nodes) do
            for _, cmd in ipairs({ { "CONFIG", "SET", "maxmemory", "0" }, { "FLUSHALL" } }) do
                local ok, why, err = node_command(env, url, unpack(cmd))
                if not ok and not (err == "reply" and cmd[1] == "FLUSHALL"
                                   and why:find("READONLY", 1, true)) then
                    return ("%s on server %d's node %s failed: %s"):format(table.concat(cmd, " "),
                        s - 1, url, why)
                end
            end
        end
    end
    return nil
end

-- The same on single nodes: the case's servers, over its clients of them.
local function reset_servers(ctx)
    for i = 0, ctx.nservers - 1 do
        local c, cwhy = server_client(ctx, i)
        if not c then
            return cwhy
        end
        local reset, _, rdetail = c:command("CONFIG", "SET", "maxmemory", "0")
        if not reset then
            return ("CONFIG SET maxmemory 0 on server %d failed: %s"):format(i, tostring(rdetail))
        end
        local flushed, _, fdetail = c:command("FLUSHALL")
        if not flushed then
            return ("FLUSHALL on server %d failed: %s"):format(i, tostring(fdetail))
        end
    end
    return nil
end

local CASE_KEYS = { name = true, steps = true, servers = true, namespace = true, file = true }

--- Runs one case. env: redpat (the module), urls and pids (the test servers, as
-- M.servers gives them), cluster (true: the servers are clusters) and nodes (then: each
-- one's master nodes, from M.servers), sleep_ms(ms), signal(pid, sig), now_ms(),
-- connect_opts (table or nil). Returns true, or false and why.
function M.run_case(case, env)
    for k in pairs(case) do
        if not CASE_KEYS[k] then
            return false, "unknown case key " .. tostring(k)
        end
    end
    local n = case.servers or 1
    if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
        return false, "servers must be an integer >= 1"
    end
    if n > #env.urls then
        return false, ("the case needs %d servers, the harness started %d"):format(n, #env.urls)
    end
    if env.cluster and (type(env.nodes) ~= "table" or #env.nodes ~= #env.urls) then
        return false, "a cluster run needs the nodes of each of the servers (REDPAT_TEST_NODES)"
    end
    local opts = {}
    for k, v in pairs(env.connect_opts or {}) do
        opts[k] = v
    end
    opts.namespace = case.namespace
    env.null = env.redpat.null
    env.now_ms = env.now_ms or env.redpat.core.monotonic_ms
    local client, _, cdetail = env.redpat.connect(table.concat(env.urls, ",", 1, n), opts)
    if not client then
        return false, "connect: " .. tostring(cdetail)
    end
    local ctx = { env = env, client = client, nservers = n, opts = opts, handles = {},
                  streams = {}, server_clients = {} }
    local ok, why = pcall(function()
        local fail
        if env.cluster then
            fail = reset_cluster(env)
        else
            fail = reset_servers(ctx)
        end
        if fail then
            return fail
        end
        return run_steps(ctx, case.steps, "")
    end)
    for _, l in pairs(ctx.streams) do
        l.stream:close()
    end
    for i = 0, #env.pids - 1 do -- a step may have stopped one
        for _, pid in ipairs(server_pids(env, i)) do
            env.signal(pid, "CONT")
        end
    end
    for _, c in pairs(ctx.server_clients) do
        c:close()
    end
    client:close()
    if not ok then
        return false, "raised: " .. tostring(why)
    end
    if why ~= nil then
        return false, why
    end
    return true
end

return M
