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
            out[i] = bytes(item) -- anything but {"hex": ...} as it is
        end
        return out
    end
    return v
end

--- One op step, for any op the core describes: handles by label, the other arguments by the
-- core's names, through redpat.perform (the public API every generated method uses).
local function run_op(env, client, handles, step)
    local redpat, null = env.redpat, env.null
    local d = redpat.descriptors[step.op]
    if d == nil then
        return "this runner knows no op " .. tostring(step.op) .. " (not described by the core)"
    end
    local self
    local sa = d.args[1] and d.args[1].self and d.args[1] or nil
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
            self = client
        else
            return "the step needs " .. sa.name .. " (a label)"
        end
    end
    local args = {}
    for name, v in pairs(step.args or {}) do
        args[name] = arg_value(d.arg[name], v, null)
    end
    -- wrong Lua types and unknown names raise a string: that is how this frontend fails
    -- them (as invalid arguments), so it is the step's error
    local ok, result, err, detail = pcall(redpat.perform, step.op, self, args)
    if not ok then
        if type(result) ~= "string" then
            return "raised: " .. tostring(result)
        end
        result, err, detail = nil, "invalid_argument", { name = "invalid_argument", message = result }
    end
    if d.makes and result ~= nil and step.as ~= nil then
        handles[step.as] = result
    end
    return check_expect(d, step.expect, result, err, detail, null)
end

local function run_redis(env, client, handles, step)
    local null = env.null
    local argv = {}
    for i, a in ipairs(step.redis) do
        argv[i] = bytes(a)
    end
    local value, err, detail = client:command(unpack(argv, 1, #argv))
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
        local info = env.redpat.perform("lock.info", lock)
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

--- A blocking sleep for plain Lua (never inside nginx: use ngx.sleep there).
function M.sleep_ms(ms)
    os.execute(("sleep %.3f"):format(ms / 1000))
end

--- Runs one case. env: redpat (the module), url, sleep_ms(ms), connect_opts (table or nil).
-- Returns true, or false and why.
function M.run_case(case, env)
    local opts = {}
    for k, v in pairs(env.connect_opts or {}) do
        opts[k] = v
    end
    opts.namespace = case.namespace
    local client, _, cdetail = env.redpat.connect(env.url, opts)
    if not client then
        return false, "connect: " .. tostring(cdetail)
    end
    local handles = {}
    env.null = env.redpat.null
    local ok, why = pcall(function()
        local flushed, _, fdetail = client:command("FLUSHALL")
        if not flushed then
            return "FLUSHALL failed: " .. tostring(fdetail)
        end
        for i, step in ipairs(case.steps) do
            local fail
            if step.op ~= nil then
                fail = run_op(env, client, handles, step)
            elseif step.redis ~= nil then
                fail = run_redis(env, client, handles, step)
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
