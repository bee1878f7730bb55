--- The shared test matrix (tests/matrix/*.json), run through the redpat Lua API.
-- Used by the plain Lua runner (tests/lua/run_matrix.lua, Lua 5.4 and LuaJIT) and inside
-- nginx (tests/openresty/app.lua), so every Lua frontend runs the same code per case.
-- Format: tests/matrix/README.md. An operation this runner cannot perform fails.
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

--- Matrix bytes: a JSON string, or {"hex": "..."}.
local function bytes(v)
    if type(v) == "table" and v.hex ~= nil then
        return hex_decode(v.hex)
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
    elseif type(expected) == "string" or (type(expected) == "table" and expected.hex ~= nil) then
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

local function check_op_expect(expect, results, err)
    if expect == nil then
        if err ~= nil then
            return "failed: " .. tostring(err)
        end
        return nil
    end
    if expect.error ~= nil then
        if err == nil then
            return "expected error " .. expect.error .. ", but it succeeded"
        end
        if err.name ~= expect.error then
            return "expected error " .. expect.error .. ", got " .. tostring(err)
        end
        if expect.message_contains and not tostring(err.message):find(expect.message_contains, 1, true) then
            return "error message " .. show(err.message) .. " lacks " .. show(expect.message_contains)
        end
        return nil
    end
    if err ~= nil then
        return "failed: " .. tostring(err)
    end
    for field, want in pairs(expect) do
        local got = results[field]
        if got == nil then
            return "this operation has no result field " .. field
        end
        if type(want) == "table" and want.between ~= nil then
            local lo, hi = want.between[1], want.between[2]
            if type(got) ~= "number" or got < lo or got > hi then
                return ("result %s = %s, expected between %s and %s"):format(field, show(got), show(lo), show(hi))
            end
        elseif type(want) == "table" then
            -- a list (batch results): element by element
            local same = type(got) == "table" and #got == #want
            for i = 1, same and #want or 0 do
                same = same and got[i] == want[i]
            end
            if not same then
                return "result " .. field .. " = " .. show(got) .. ", expected " .. show(want)
            end
        elseif got ~= want then
            return "result " .. field .. " = " .. show(got) .. ", expected " .. show(want)
        end
    end
    return nil
end

-- A decision (redpat's table) as the matrix's result fields. refused_by: the matrix counts
-- from 0 and says -1 when allowed; Lua counts from 1 and leaves it out.
local function decision_fields(d, multi)
    local r = {
        allowed = d.allowed,
        limit = d.limit,
        remaining = d.remaining,
        retry_after = d.retry_after,
        reset_after = d.reset_after,
        degraded = d.degraded,
    }
    if multi then
        r.refused_by = d.refused_by and d.refused_by - 1 or -1
    end
    return r
end

local function run_ratelimit(client, limiters, step)
    local args = step.args or {}
    local op = step.op
    local results, err
    if op == "ratelimit.new" then
        local limiter
        limiter, err = client:ratelimiter(args.name, {
            algorithm = args.algorithm,
            limit = args.limit,
            window = args.window,
            burst = args.burst,
            on_error = args.on_error,
        })
        if limiter then
            if step.as == nil then
                return "ratelimit.new needs 'as'"
            end
            limiters[step.as] = limiter
            results = {}
        end
    elseif op == "ratelimit.multi" then
        local list = {}
        for i, label in ipairs(step.limiters or {}) do
            list[i] = limiters[label]
            if list[i] == nil then
                return "unknown limiter label " .. tostring(label)
            end
        end
        local d
        d, err = client:ratelimit_multi(list, bytes(args.subject), args.cost)
        if d then
            results = decision_fields(d, true)
        end
    else
        local limiter = limiters[step.limiter]
        if limiter == nil then
            return "unknown limiter label " .. tostring(step.limiter)
        end
        if op == "ratelimit.check" then
            local d
            d, err = limiter:check(bytes(args.subject), args.cost)
            if d then
                results = decision_fields(d, false)
            end
        elseif op == "ratelimit.reset" then
            local ok
            ok, err = limiter:reset(bytes(args.subject))
            if ok then
                results = { ok = ok }
            end
        elseif op == "ratelimit.batch" then
            local subjects = {}
            for i, s in ipairs(args.subjects or {}) do
                subjects[i] = bytes(s)
            end
            local list
            list, err = limiter:batch(subjects, args.costs)
            if list then
                local allowed, remaining = {}, {}
                for i, d in ipairs(list) do
                    allowed[i], remaining[i] = d.allowed, d.remaining
                end
                results = { allowed = allowed, remaining = remaining }
            end
        else
            return "this runner cannot perform " .. op
        end
    end
    return check_op_expect(step.expect, results, err)
end

local function run_op(client, locks, limiters, step)
    local args = step.args or {}
    local op = step.op
    local results, err
    if op:match("^ratelimit%.") then
        return run_ratelimit(client, limiters, step)
    elseif op == "lock.new" then
        local lock
        lock, err = client:lock(bytes(args.name), { ttl = args.ttl, fenced = args.fenced })
        if lock then
            if step.as == nil then
                return "lock.new needs 'as'"
            end
            locks[step.as] = lock
            results = {}
        end
    elseif op == "fence.check" then
        local accepted, highest = client:fence_check(bytes(args.resource), args.token)
        if accepted == nil then
            err = highest
        else
            results = { accepted = accepted, highest = highest }
        end
    elseif op:match("^lock%.") then
        local lock = locks[step.lock]
        if lock == nil then
            return "unknown lock label " .. tostring(step.lock)
        end
        if op == "lock.acquire" then
            local acquired, fence = lock:acquire({
                wait = args.wait,
                retry_min = args.retry_min,
                retry_max = args.retry_max,
                token = bytes(args.token),
            })
            if acquired == nil then
                err = fence
            else
                results = { acquired = acquired, fence = fence }
            end
        elseif op == "lock.release" or op == "lock.extend" then
            local ok
            if op == "lock.release" then
                ok, err = lock:release()
            else
                ok, err = lock:extend(args.ms, args.replace)
            end
            if ok then
                results = { ok = ok }
            end
        elseif op == "lock.locked" or op == "lock.owned" then
            local value
            if op == "lock.locked" then
                value, err = lock:locked()
            else
                value, err = lock:owned()
            end
            if value ~= nil then
                results = { value = value }
            end
        else
            return "this runner cannot perform " .. op
        end
    else
        return "this runner cannot perform " .. tostring(op)
    end
    return check_op_expect(step.expect, results, err)
end

local function run_redis(client, locks, step, null)
    local argv = {}
    for i, a in ipairs(step.redis) do
        argv[i] = bytes(a)
    end
    local value, err = client:command(unpack(argv, 1, #argv))
    local expect = step.expect
    local cmd = tostring(argv[1])
    if expect == nil then
        if value == nil then
            return cmd .. " failed: " .. tostring(err)
        end
        return nil
    end
    if expect.reply_error ~= nil then
        if value ~= nil then
            return cmd .. ": expected an error reply, got " .. show(value)
        end
        if err.name ~= "reply" or not tostring(err.message):find(expect.reply_error, 1, true) then
            return cmd .. ": expected an error reply with " .. show(expect.reply_error) .. ", got " .. tostring(err)
        end
        return nil
    end
    if value == nil then
        return cmd .. " failed: " .. tostring(err)
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
        local lock = locks[expect.reply_token_of]
        if lock == nil then
            return "unknown lock label " .. tostring(expect.reply_token_of)
        end
        local token = lock:token()
        if type(value) ~= "string" or value ~= token then
            return cmd .. ": reply " .. show(value) .. " is not the token of " .. expect.reply_token_of
                .. " (" .. show(token) .. ")"
        end
    else
        return "unknown redis expectation"
    end
    return nil
end

--- Runs one case. env: redpat (the module), url, sleep_ms(ms), connect_opts (table or nil).
-- Returns true, or false and why.
function M.run_case(case, env)
    local opts = {}
    for k, v in pairs(env.connect_opts or {}) do
        opts[k] = v
    end
    opts.namespace = case.namespace
    local client, cerr = env.redpat.connect(env.url, opts)
    if not client then
        return false, "connect: " .. tostring(cerr)
    end
    local locks, limiters = {}, {}
    local ok, why = pcall(function()
        local flushed, ferr = client:command("FLUSHALL")
        if not flushed then
            return "FLUSHALL failed: " .. tostring(ferr)
        end
        for i, step in ipairs(case.steps) do
            local fail
            if step.op ~= nil then
                fail = run_op(client, locks, limiters, step)
            elseif step.redis ~= nil then
                fail = run_redis(client, locks, step, env.redpat.null)
            elseif step.sleep ~= nil then
                env.sleep_ms(step.sleep)
            else
                fail = "unknown step kind"
            end
            if fail then
                return ("step %d (%s): %s"):format(i, tostring(step.op or (step.redis and "redis") or "?"), fail)
            end
        end
        return nil
    end)
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
