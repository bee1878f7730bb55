--- redpat.cosocket: the OpenResty driver. Runs the core's ops over ngx.socket.tcp
-- cosockets (connection pool via setkeepalive) and sleeps with ngx.sleep, so a request
-- handler never blocks its worker. The core formats every request and parses every reply:
-- this file only moves bytes, and reports socket failures to the op. It knows no op: any
-- op the core describes runs through M.run.
local core = require "redpat.core"

local ngx = ngx
local tcp = ngx.socket.tcp
local sleep = ngx.sleep
local IO, SLEEP = core.IO, core.SLEEP
local STATUS = core.status
local tostring, setmetatable = tostring, setmetatable

local M = {}

local RECV_MAX = 65536
local HANDSHAKE = core.descriptors["client.handshake"].index

--- Where to connect (from the client's URL, as the core parsed it), plus pool and timeout
-- settings.
function M.endpoint(client, url, opts)
    local ep, err, detail = core.endpoint(client)
    if not ep then
        return nil, err, detail
    end
    ep.connect_timeout = opts.connect_timeout or 2000
    ep.command_timeout = opts.command_timeout or 2000
    ep.keepalive_timeout = opts.keepalive_timeout or 60000
    ep.pool_size = opts.pool_size
    if ep.unix then
        ep.unix = "unix:" .. ep.unix
    end
    -- nginx fixes a pool's size when the pool is first used, so clients asking for
    -- different sizes get different pools by default
    ep.pool_opts = {
        pool = opts.pool or ("redpat:" .. url .. (opts.pool_size and ("#" .. opts.pool_size) or "")),
        pool_size = opts.pool_size,
        backlog = opts.backlog,
    }
    ep.handshake = ep.password ~= nil or ep.db ~= 0
    -- the client, for the handshake op; weak, so that the endpoint (kept per handle in a
    -- weak-keyed table) never keeps its client alive (LuaJIT has no ephemerons)
    ep.client = setmetatable({ client }, { __mode = "v" })
    return ep
end

local function socket_status(err)
    return err == "timeout" and "timeout" or "transport"
end

-- Sends op's request for node on sock and feeds the reply bytes back until the op has
-- all it is owed. Returns true, or nil, the socket's err, or nil, nil, true when the op
-- refused the bytes (it has already failed the node).
local function exchange(sock, op, node, req)
    local ok, err = sock:send(req)
    if not ok then
        return nil, err
    end
    while true do
        local data, rerr = sock:receiveany(RECV_MAX)
        if not data then
            return nil, rerr
        end
        local done = op:feed(node, data)
        if done then
            return true
        elseif done == nil then
            return nil, nil, true
        end
    end
end

-- Runs the client's handshake op (AUTH, SELECT) on a fresh socket; true or nil, why, status.
local function handshake(sock, client)
    local op, err, detail = core.begin(HANDSHAKE, false, client)
    if not op then
        return nil, detail.message, err
    end
    while true do
        local s, req = op:step()
        if s == IO then
            local ok, xerr, parse_failed = exchange(sock, op, 1, req)
            if not ok and not parse_failed then
                op:fail_node(1, STATUS[socket_status(xerr)], xerr)
            end
        else -- DONE, or ERROR (the handshake never sleeps)
            local ok, herr, hdetail = op:finish()
            if ok then
                return true
            end
            return nil, hdetail.message, herr
        end
    end
end

local function connect(ep)
    local sock = tcp()
    sock:settimeouts(ep.connect_timeout, ep.command_timeout, ep.command_timeout)
    local ok, err
    if ep.unix then
        ok, err = sock:connect(ep.unix, ep.pool_opts)
    else
        ok, err = sock:connect(ep.host, ep.port, ep.pool_opts)
    end
    if not ok then
        return nil, "connect: " .. tostring(err), socket_status(err)
    end
    if ep.handshake and sock:getreusedtimes() == 0 then
        local why, status
        ok, why, status = handshake(sock, ep.client[1])
        if not ok then
            sock:close()
            return nil, "handshake: " .. tostring(why), status
        end
    end
    return sock
end

-- One IO round for node: a pooled connection, request out, replies in, back to the pool.
local function io_round(ep, op, node, req)
    local sock, why, status = connect(ep)
    if not sock then
        op:fail_node(node, STATUS[status], why)
        return
    end
    local ok, err, parse_failed = exchange(sock, op, node, req)
    if ok then
        sock:setkeepalive(ep.keepalive_timeout, ep.pool_size)
    else
        sock:close() -- never pool a connection in an unknown state
        if not parse_failed then
            op:fail_node(node, STATUS[socket_status(err)], err)
        end
    end
end

--- Drives op to its end and frees it. Returns the op's results, or nil, err, detail.
function M.run(ep, op)
    while true do
        local s, x = op:step() -- IO: the request (false: none this round); SLEEP: the ms
        if s == IO then
            if x == nil then -- more than one node
                op:free()
                local why = "the cosocket driver runs single-node operations"
                return nil, "state", setmetatable({ name = "state", message = why,
                                                    code = STATUS.state }, core.metatables.error)
            end
            if x then
                io_round(ep, op, 1, x)
            end
        elseif s == SLEEP then
            sleep(x / 1000)
        else -- DONE or ERROR
            return op:finish()
        end
    end
end

return M
