--- redpat.cosocket: the OpenResty driver. Runs the core's ops over ngx.socket.tcp
-- cosockets and waits with ngx.sleep / ngx.semaphore, so a request handler (or a timer)
-- never blocks its worker. The core formats every request and parses every reply: this
-- file only moves bytes, reports socket failures to the op, and runs the user's callbacks.
-- It knows no op: any op the core describes runs through M.run (long-lived ones through
-- M.listener). The driver contract (core/include/redpat/op.h) as done here:
--
-- * Targets and pools. Each of an op's targets names its address (op:target), asked afresh
--   every round (on a cluster one target may go to another node from one round to the
--   next: a topology read from a seed, then the master of the keys' slot, a MOVED or ASK
--   destination; a listener follows it too); connections are pooled per address (the
--   nginx pool "<pool prefix>:<address>", with a digest of the password when there is one,
--   and "#<pool_size>" when a size is set: nginx fixes a pool's size when it is first
--   used). A fresh connection runs its target's handshake first (AUTH / SELECT:
--   op:handshake; on a cluster AUTH only, on every node).
-- * TLS (rediss:// targets). A fresh connection's TLS handshake (tcpsock:sslhandshake, with
--   the client certificate through tcpsock:setclientcert) comes before the AUTH one, within
--   the same deadline. nginx gives cosockets no per-connection CA: the CAs trusted are
--   nginx.conf's lua_ssl_trusted_certificate (and lua_ssl_verify_depth), so tls_ca_file is
--   refused with that advice. TLS connections pool apart from plain ones, and apart per
--   server name, verify setting and client certificate ("#tls:<digest>" in the pool name).
-- * Parallel rounds. An op of one target is served inline, in the calling light thread. An
--   op of several (Redlock) gets one light thread per target with a request
--   (ngx.thread.spawn), each connecting, sending and feeding replies back, so the round
--   costs the slowest answer needed, not the sum. Each read waits at most the round's
--   per-target timeout (op:timeout_ms), else the client's command timeout. Every request
--   is written before the round may end; it ends as soon as op:round_over() says so (a
--   quorum may end it early). A target still waiting then is abandoned: when none of its
--   reply has been read yet, its thread is *parked*: it reads the replies its request
--   still owes, throws them away and pools the socket (a Redlock minority that was just a
--   little slower costs no reconnect), and the next round's request to that address
--   waits for it a moment (PARK_GRACE_MS, without holding the round up), so two rounds'
--   requests to one node travel on one connection, in order (an acquire's SET could
--   otherwise land after the clean-up's DEL); a stuck server's requests go on connections
--   of their own after that moment. Anything else still pending is killed and its socket
--   closed. A socket goes back to its pool only after all its replies are in; one with a
--   request in flight, or that failed, is closed.
-- * CALL. The user's function runs in a light thread of its own while this thread keeps
--   stepping the op (a lock.using renews its lock meanwhile); a SLEEP then waits on an
--   ngx.semaphore that the function's thread posts when it returns, so the op resumes at
--   once (math.huge: wait for it). The op is resumed with the function's first result when
--   it is a string, or with the text of its error.
-- * Cancellation: under redpat.cancel_on_abort (M.cancel_on_abort) the client's abort
--   wakes the op's waits; the op is cancelled and cleans up (a callback's light thread is
--   killed first: the request it worked for is gone). An IO round is one of those waits:
--   while the abort is armed every round, even one target's, runs in light threads (one
--   spawn per round: the price of the opt-in); an abort kills the targets still pending,
--   closes their sockets and fails them "cancelled", and the op compensates (an acquire
--   whose SET may have run releases it with its token) in clean-up rounds on fresh
--   connections, which no abort interrupts.
-- * Long-lived ops (a subscription) keep one socket per target for themselves (never
--   pooled) in a listener, read by M.next with the user's own wait. Cosockets belong to the
--   request or timer that made them: use a listener within one request or ngx.timer.
local core = require "redpat.core"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local tcp = ngx.socket.tcp
local sleep = ngx.sleep
local spawn, wait, kill = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill
local IO, SLEEP, CALL, EMIT = core.IO, core.SLEEP, core.CALL, core.EMIT
local STATUS = core.status
local now_ms = core.monotonic_ms
local huge, min, floor = math.huge, math.min, math.floor
local tostring, type, pcall, pairs = tostring, type, pcall, pairs
local setmetatable, costatus, running = setmetatable, coroutine.status, coroutine.running

local M = {}

local RECV_MAX = 65536
local find, byte, sub, tonumber = string.find, string.byte, string.sub, tonumber
-- A wait "until the callback returns" waits on the semaphore this many seconds at a time.
local CALL_WAIT_S = 3600
-- How long a listener's read may wait when its user waits without limit (ms); it then just
-- reads again.
local LISTEN_SLICE_MS = 60000
-- How long (ms) a round's request waits for a parked socket to its target to drain before
-- it takes a connection of its own: a reply later than that is a stuck server's.
local PARK_GRACE_MS = 10
-- A listener wanting nothing (so without a connection) steps again this often (ms) to pick
-- up subscriptions asked for from another light thread.
local LISTEN_IDLE_MS = 100

local function failure(name, message)
    return nil, name, setmetatable({ name = name, message = message, code = STATUS[name] },
        core.metatables.error)
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local data = f:read("*a")
    f:close()
    return data
end

-- The client's tls_* options as cosockets take them (the core checked their types, that
-- the files are readable, both-or-neither and that some URL is rediss://): the client
-- certificate parsed once (ngx.ssl), the pool digest. nil, err, detail for what nginx
-- cannot do per connection.
local function tls_settings(opts)
    if opts.tls_ca_file ~= nil then
        return failure("invalid_argument", "tls_ca_file is not supported by the cosocket "
            .. "driver: nginx takes the CAs cosockets trust from nginx.conf only; set "
            .. "`lua_ssl_trusted_certificate <PEM file>;` (and `lua_ssl_verify_depth N;` "
            .. "for intermediate CAs) in the http block and leave tls_ca_file out")
    end
    local tls = { server_name = opts.tls_server_name, verify = opts.tls_verify ~= false }
    if opts.tls_cert_file ~= nil then
        local okssl, ssl = pcall(require, "ngx.ssl")
        if not okssl or not ssl.parse_pem_cert then
            return failure("invalid_argument", "tls_cert_file needs lua-resty-core's ngx.ssl "
                .. "(parse_pem_cert) and tcpsock:setclientcert (lua-nginx-module >= 0.10.22)")
        end
        for _, o in ipairs({ { "tls_cert_file", "chain", ssl.parse_pem_cert },
                             { "tls_key_file", "pkey", ssl.parse_pem_priv_key } }) do
            local path = opts[o[1]]
            local pem, err = read_file(path)
            local parsed
            if pem then
                parsed, err = o[3](pem)
            end
            if not parsed then
                return failure("invalid_argument", ("%s: cannot load \"%s\": %s")
                    :format(o[1], tostring(path), tostring(err)))
            end
            tls[o[2]] = parsed
        end
    end
    tls.pool = "#tls:" .. ngx.md5(table.concat({ tls.server_name or "", tls.verify and "1" or "0",
                                                 opts.tls_cert_file or "" }, "\0"))
    return tls
end

--- The driver's state for one client: timeouts, pool settings, TLS settings and the pool
-- of each target address seen so far. nil, err, detail for options it cannot honour.
function M.endpoint(opts)
    local tls, err, detail = tls_settings(opts)
    if not tls then
        return nil, err, detail
    end
    return {
        tls = tls,
        connect_timeout = opts.connect_timeout or 2000,
        command_timeout = opts.command_timeout or 2000,
        keepalive_timeout = opts.keepalive_timeout or 60000,
        pool_size = opts.pool_size,
        backlog = opts.backlog,
        pool = opts.pool or "redpat",
        targets = {},
        parked = {},   -- target -> its parked sockets still draining (see the top)
        drainers = setmetatable({}, { __mode = "k" }), -- light thread -> drainers it spawned
    }
end

local function socket_status(err)
    return err == "timeout" and STATUS.timeout or STATUS.transport
end

-- Where node's requests go (cached per address): connect arguments and the pool. address:
-- node's, when the caller knows it (op:step gives it for ops of one target).
-- A node's failure worded as the blocking transport words it (core/src/transport_hiredis.c),
-- "<address>: timed out after 500 ms waiting for the reply": the same in every frontend.
-- err: a cosocket error ("timeout", "closed", ...); doing: what the exchange was doing.
local function node_why(t, err, doing, timeout_ms)
    if err == "timeout" then
        return ("%s: timed out after %d ms %s"):format(t.address, floor(timeout_ms), doing)
    end
    return ("%s: connection lost %s: %s"):format(t.address, doing,
                                                   err == "closed" and "closed by peer" or tostring(err))
end

local WAITING, IN_HANDSHAKE = "waiting for the reply", "in the handshake (AUTH / SELECT)"

local function target(st, op, node, address)
    local t = address and st.targets[address]
    if t ~= nil then
        return t
    end
    local host, port, path, password, tls
    address, host, port, path, password, tls = op:target(node)
    t = address and st.targets[address]
    if t == nil then
        if not address then
            return nil
        end
        local name = st.pool .. ":" .. address
        if password ~= nil then -- connections authenticated otherwise never share a pool
            name = name .. "#" .. ngx.md5(password)
        end
        if tls then -- never a plain connection, nor one checked otherwise
            name = name .. st.tls.pool
        end
        if st.pool_size then
            name = name .. "#" .. st.pool_size
        end
        t = { address = address, host = host, port = port, unix = path and ("unix:" .. path),
              opts = { pool = name, pool_size = st.pool_size, backlog = st.backlog },
              tls = tls and (st.tls.server_name or host) or nil } -- the name checked
        st.targets[address] = t
    end
    return t
end

-- Where the RESP value starting at pos in buf ends (the position after it), nil while it
-- is incomplete, false if it is not RESP. For parked connections only: the core parses
-- everything else.
local function resp_end(buf, pos)
    local eol = find(buf, "\r\n", pos, true)
    if not eol then
        return nil
    end
    local kind = byte(buf, pos)
    if kind == 36 or kind == 42 then -- '$' bulk string, '*' array
        local n = tonumber(sub(buf, pos + 1, eol - 1))
        if not n then
            return false
        elseif kind == 36 then
            if n < 0 then
                return eol + 2
            end
            return #buf >= eol + 3 + n and eol + 4 + n or nil
        end
        local p = eol + 2
        for _ = 1, n do
            p = resp_end(buf, p)
            if not p then
                return p
            end
        end
        return p
    end
    return eol + 2 -- a one-line value: + - :
end

-- Bounds sock's next send or receive by what is left of deadline (ms of now_ms): one
-- deadline per exchange, so a server trickling a byte at a time cannot stretch it. false
-- when nothing is left.
local function within(sock, deadline)
    local left = deadline - now_ms()
    if left < 1 then
        return false
    end
    sock:settimeout(left)
    return true
end

-- Reads the replies a parked socket's request (req) still owes, starting with buf, and
-- throws them away. true when they all came and nothing else did: the socket is clean.
local function drain(sock, req, buf, deadline)
    local owed, p = 0, 1
    while p <= #req do
        p = resp_end(req, p)
        if not p then
            return false
        end
        owed = owed + 1
    end
    local got, pos = 0, 1
    while true do
        while got < owed do
            local e = resp_end(buf, pos)
            if e == false then
                return false
            elseif e == nil then
                break
            end
            pos, got = e, got + 1
        end
        if got == owed then
            return pos == #buf + 1
        end
        local data = within(sock, deadline) and sock:receiveany(RECV_MAX)
        if not data then
            return false
        end
        buf = sub(buf, pos) .. data
        pos = 1
    end
end

-- Reads replies for node from sock into op until it has all it is owed, by deadline.
-- Returns true, or nil and the socket's err, or nil, nil, true when the op refused the
-- bytes (it has then failed the node itself). ctl (parallel rounds): ctl.fed once bytes
-- went to the op; once the round's owner sets ctl.parked, the bytes read are returned (4th
-- value) unfed.
local function read_replies(sock, op, node, ctl, deadline)
    while true do
        local data, err
        if within(sock, deadline) then
            data, err = sock:receiveany(RECV_MAX)
        else
            err = "timeout"
        end
        if ctl then
            if ctl.parked then
                return nil, err, nil, data
            end
            ctl.fed = true
        end
        if not data then
            return nil, err
        end
        local done = op:feed(node, data)
        if done then
            return true
        elseif done == nil then
            return nil, nil, true
        end
    end
end

-- A failed sslhandshake's err worded as the blocking transport words it (core/src/tls.c):
-- "20: unable to get local issuer certificate" is a verify result code and its text.
local function tls_why(err, name)
    local code, text = tostring(err):match("^(%d+): (.*)$")
    if code then
        return ("certificate verify failed (%s; the cosocket driver trusts nginx.conf's "
                .. "lua_ssl_trusted_certificate)"):format(text)
    elseif err == "certificate host mismatch" then
        return ("certificate verify failed (the certificate is not valid for '%s'%s)"):format(name,
            (name:find("^[%d.]+$") or name:find(":", 1, true))
            and "; nginx checks a certificate's DNS names, never its IP addresses: give "
                .. "tls_server_name, the name the certificate has" or "")
    elseif err == "closed" then
        return "connection closed by the server (does it speak TLS on this port?)"
    end
    return tostring(err)
end

-- The verify error a handshake that returned true may still hold. lua-nginx-module before
-- openresty/lua-nginx-module#2506 (2026-06; Debian 12 has 0.10.23) loses it when the
-- handshake completes at once: sslhandshake(false, ...) answers true although the
-- certificate failed verification, and nginx closes the connection. The error is still in
-- the socket's state: ask for it (as the fixed lua-resty-core does), before any byte of
-- the request (an AUTH password) is written. nil: no error (or no way to ask).
local handshake_error
do
    local okf, ffi = pcall(require, "ffi")
    local okb, base = pcall(require, "resty.core.base")
    local C = okf and ffi.C
    local function declared() return C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result end
    if okb and pcall(declared) then
        local sess, errmsg, code = ffi.new("void *[1]"), ffi.new("char *[1]"), ffi.new("int[1]")
        handshake_error = function(sock)
            local r, u = base.get_request(), sock[1] -- [1]: the socket's upstream (resty.core)
            if r == nil or u == nil then
                return nil
            end
            code[0], errmsg[0] = 0, nil
            if C.ngx_http_lua_ffi_socket_tcp_get_sslhandshake_result(r, u, sess, errmsg, code)
                    ~= base.FFI_ERROR then
                return nil
            end
            local text = errmsg[0] ~= nil and ffi.string(errmsg[0]) or "handshake failed"
            return code[0] ~= 0 and (code[0] .. ": " .. text) or text
        end
    end
end

-- The TLS handshake of a fresh socket to t, by deadline (the exchange's, as the AUTH
-- handshake after it). true, or nil, why, status.
local function tls_handshake(st, sock, t, deadline, timeout)
    local left = deadline - now_ms()
    if left >= 1 then
        local tls = st.tls
        -- sslhandshake waits with the connect timeout; bound every wait by the deadline
        sock:settimeouts(left, left, left)
        local ok, err = true, nil
        if tls.chain then
            ok, err = sock:setclientcert(tls.chain, tls.pkey)
        end
        if ok then
            ok, err = sock:sslhandshake(false, t.tls, tls.verify)
            if ok and tls.verify and handshake_error then
                err = handshake_error(sock)
                ok = err == nil
            end
        elseif err then
            return nil, ("%s: TLS client certificate: %s"):format(t.address, err), STATUS.transport
        end
        if ok then
            return true
        elseif err ~= "timeout" then
            return nil, ("%s: TLS handshake failed: %s"):format(t.address, tls_why(err, t.tls)),
                STATUS.transport
        end
    end
    return nil, ("%s: timed out after %d ms in the TLS handshake"):format(t.address,
        floor(timeout)), STATUS.timeout
end

-- Runs a handshake op (one target: the socket's) over a fresh socket, by deadline (the
-- exchange's: the request after it gets what is left). true, or nil, why, status.
local function handshake(sock, hs, deadline, t, timeout)
    while true do
        local s, req = hs:step()
        if s == IO then
            if req then
                local ok, err, parse_failed = within(sock, deadline), "timeout", nil
                if ok then
                    ok, err = sock:send(req)
                end
                if ok then
                    ok, err, parse_failed = read_replies(sock, hs, 1, nil, deadline)
                end
                if not ok and not parse_failed then
                    hs:fail_node(1, socket_status(err), node_why(t, err, IN_HANDSHAKE, timeout))
                end
            end
        else -- DONE or ERROR (a handshake never sleeps)
            local ok, _, detail = hs:finish()
            return ok, ok == nil and detail.message or nil, ok == nil and detail.code or nil
        end
    end
end

-- A connection to node's target (pooled, or fresh and handshaken); timeout ms bounds the
-- exchange from the moment the socket connected: handshake, request and replies together.
-- Returns the socket, nil, nil, the target and that deadline (ms of now_ms), or nil, why,
-- status.
local function connect(st, op, node, timeout, ctl, address)
    local t = target(st, op, node, address)
    if t == nil then
        return nil, "no such target", STATUS.invalid_argument
    end
    local parked = ctl and st.parked[t]
    if parked then
        -- a parked socket to t is draining: take it once it is back in the pool, so this
        -- request follows the parked one on the same connection. The round does not wait
        -- for that (a stopped server must delay nothing): should it end meanwhile, this
        -- thread is parked in turn, and still writes its request, then drains. A drain not
        -- done within PARK_GRACE_MS is a stuck server's: go ahead on a connection of its own.
        ctl.sent:post(1)
        ctl.sent_early = true
        parked.waiters = parked.waiters + 1
        local t0 = now_ms()
        parked.sema:wait(min(timeout, PARK_GRACE_MS) / 1000)
        timeout = timeout - (now_ms() - t0)
        if timeout < 1 then
            timeout = 1
        end
    end
    local sock = tcp()
    sock:settimeouts(st.connect_timeout, timeout, timeout)
    local ok, err
    if t.unix then
        ok, err = sock:connect(t.unix, t.opts)
    else
        ok, err = sock:connect(t.host, t.port, t.opts)
    end
    if not ok then
        local why = err == "timeout" and ("%s: timed out after %d ms connecting"):format(t.address, floor(st.connect_timeout))
                    or ("%s: cannot connect: %s"):format(t.address, tostring(err))
        return nil, why, socket_status(err), t
    end
    local deadline = now_ms() + timeout
    if sock:getreusedtimes() == 0 then
        if ctl and ctl.parked then -- the round (and maybe its op) is over: no handshake now
            sock:close()
            return nil, "abandoned", STATUS.transport, t
        end
        local why, status
        if t.tls then
            ok, why, status = tls_handshake(st, sock, t, deadline, timeout)
            if not ok then
                sock:close()
                return nil, why, status, t
            end
        end
        local hs, herr, hdetail = op:handshake(node)
        if hs then
            ok, why, status = handshake(sock, hs, deadline, t, timeout)
        else
            ok, why = nil, tostring(hdetail or herr)
        end
        if not ok then
            sock:close()
            -- its own status: a silent server during AUTH is a timeout
            return nil, "handshake: " .. tostring(why), status or STATUS.transport, t
        end
    end
    return sock, nil, nil, t, deadline
end

-- A parked socket (see the top) has drained: pooled (clean) or closed; wake the rounds
-- waiting for its target.
local function unpark(st, t, sock, clean)
    if clean then
        sock:setkeepalive(st.keepalive_timeout, st.pool_size)
    elseif sock then
        sock:close()
    end
    local parked = st.parked[t]
    parked.count = parked.count - 1
    parked.sema:post(parked.waiters)
    parked.waiters = 0
    if parked.count == 0 then
        st.parked[t] = nil
    end
end

-- One target's share of a round: connect, send, read until all replies are in, pool the
-- socket; or close it and fail the node. ctl (parallel rounds): ctl.sock lets the round's
-- owner close the socket of a target it abandons, ctl.sent is posted once the request is
-- written (or could not be), ctl.parked turns the thread into a drainer (above).
local function serve(st, op, node, req, timeout, ctl, address)
    local sock, why, status, t, deadline = connect(st, op, node, timeout, ctl, address)
    local sent = ctl and not ctl.sent_early and ctl.sent
    if not sock then
        if sent then
            sent:post(1)
        end
        if ctl and ctl.parked then
            unpark(st, t, nil, false)
        else
            -- no socket, or its handshake failed: nothing of the request was written
            op:fail_node_unsent(node, status, why)
        end
        return node
    end
    if ctl then
        ctl.sock = sock
    end
    local ok, err, parse_failed = within(sock, deadline), "timeout", nil
    local unsent = not ok -- out of time before the request went out
    if ok then
        ok, err, parse_failed = sock:send(req)
    end
    if sent then
        sent:post(1)
    end
    local late
    if ok then
        ok, err, parse_failed, late = read_replies(sock, op, node, ctl, deadline)
    end
    if ctl then
        ctl.sock = nil
        if ctl.parked then -- abandoned before any reply was read: drain, then pool
            unpark(st, t, sock, ok ~= false and late ~= nil and drain(sock, req, late, deadline))
            return node
        end
    end
    if ok then
        sock:setkeepalive(st.keepalive_timeout, st.pool_size)
    else
        sock:close() -- never pool a connection in an unknown state
        if unsent then
            op:fail_node_unsent(node, socket_status(err), node_why(t, err, "writing the request", timeout))
        elseif not parse_failed then
            op:fail_node(node, socket_status(err), node_why(t, err, WAITING, timeout))
        end
    end
    return node
end

-- Waits on sema up to seconds; true when ab (an abort state watched, or nil) saw the
-- request aborted meanwhile (the abort handler posts every semaphore waited on).
local function wait_or_abort(ab, sema, seconds)
    if not ab then
        sema:wait(seconds)
        return false
    end
    if ab.aborted then
        return true
    end
    ab.waiting[sema] = true
    sema:wait(seconds)
    ab.waiting[sema] = nil
    return ab.aborted
end

-- The request was aborted mid-round: every target still pending is killed, its socket
-- closed (its request may be in flight: never pooled) and failed "cancelled" to the op,
-- which then cleans up (an acquire releases what its SET may have taken) over fresh
-- connections.
local function abandon_round(op, threads, ctls)
    for node, t in pairs(threads) do
        local ctl = ctls[node]
        if ctl.ended then
            wait(t)
        else
            kill(t)
            if ctl.sock then
                ctl.sock:close()
            end
        end
        if op:pending(node) then
            op:fail_node(node, STATUS.cancelled, "cancelled")
        end
    end
end

-- A round over several targets, in parallel (one light thread each). Every request is
-- written before the round may end: even a round over at once (a clean-up that waits for
-- no answer) must reach every target it asks. ab (an abort state, or nil): an abort ends
-- the round at once (abandon_round); true is returned then.
local function parallel_round(st, op, timeout, ab)
    local threads, ctls, live = {}, {}, 0
    local sent = semaphore.new(0)
    local me = running()
    local drainers = st.drainers[me]
    if drainers then -- reap the drainers this thread left that have ended
        for t in pairs(drainers) do
            if costatus(t) == "dead" then
                wait(t)
                drainers[t] = nil
            end
        end
    end
    -- Threads report through semaphores, never through ngx.thread.wait on several of them
    -- (a thread waited for once stays "waited by its parent": when a parked one ended later
    -- it would resume the parent in the middle of whatever it waits for then).
    local ended = semaphore.new(0)
    for node = 1, op:nodes() do
        local req = op:request(node)
        if req then
            local ctl = { sent = sent }
            ctls[node] = ctl
            threads[node] = spawn(function()
                local ok, why = pcall(serve, st, op, node, req, timeout, ctl)
                if not ok and not ctl.parked and op:pending(node) then
                    op:fail_node(node, STATUS.transport, "the driver's thread failed: " .. tostring(why))
                end
                ctl.ended = true
                ended:post(1)
            end)
            live = live + 1
        end
    end
    -- each thread posts once its request is out (or failed): bounded by its connect,
    -- handshake and send timeouts; so is each thread's whole share of the round
    local wait_s = (st.connect_timeout + 3 * timeout) / 1000
    for _ = 1, live do
        if wait_or_abort(ab, sent, wait_s) then
            abandon_round(op, threads, ctls)
            return true
        end
    end
    while live > 0 and not op:round_over() do
        if wait_or_abort(ab, ended, wait_s) then
            abandon_round(op, threads, ctls)
            return true
        end
        for node, t in pairs(threads) do
            if ctls[node].ended then
                wait(t) -- dead already (it posted last): reaps it
                threads[node] = nil
                live = live - 1
            end
        end
    end
    -- abandoned targets (the round had enough): their replies would come to nobody
    for node, t in pairs(threads) do
        local ctl = ctls[node]
        if ctl.ended then -- done meanwhile (its socket pooled or closed): reap it
            wait(t)
        elseif not ctl.fed then -- nothing read yet (or not even sent): park it
            ctl.parked = true
            local target_of = target(st, op, node)
            local parked = st.parked[target_of]
            if parked == nil then
                parked = { count = 0, waiters = 0, sema = semaphore.new(0) }
                st.parked[target_of] = parked
            end
            parked.count = parked.count + 1
            drainers = drainers or {}
            st.drainers[me] = drainers
            drainers[t] = true
        else
            kill(t)
            if ctl.sock then
                ctl.sock:close()
            end
        end
    end
end

-- The user's function in a light thread of its own; the op's driver thread waits for it
-- on c.sema during its sleeps.
local function start_call(fn, ...)
    local c = { sema = semaphore.new(0), done = false }
    local function body(...)
        c.res = { pcall(fn, ...) }
        c.done = true
        c.sema:post(1)
    end
    c.thread = spawn(body, ...)
    return c
end

local function end_call(op, c)
    wait(c.thread)
    local ok, v = c.res[1], c.res[2]
    if ok then
        op:resume(type(v) == "string" and v or nil)
    else
        op:resume(nil, tostring(v))
    end
end

-- ---- cancellation: an aborted request (redpat.cancel_on_abort)

--- Makes the ops of this request cancellable by the client's abort: needs
-- `lua_check_client_abort on;`. On abort, an op waiting (a retry's backoff, a callback, a
-- round's replies) is cancelled (rp_op_cancel): it cleans up (a lock.using kills its fn's
-- light thread and releases the lock; an acquire releases what its attempt in flight may
-- have taken) and ends nil, "cancelled". An op begun after the abort (the handler
-- reporting, cleaning up) runs its rounds as usual. true | nil, err, detail.
function M.cancel_on_abort()
    local ctx = ngx.ctx
    if ctx.redpat_abort then
        return true
    end
    local ab = { aborted = false, waiting = {} }
    local ok, err = ngx.on_abort(function()
        ab.aborted = true
        for sema in pairs(ab.waiting) do
            sema:post(1)
        end
    end)
    if not ok then
        return failure("state", "ngx.on_abort: " .. tostring(err))
    end
    ctx.redpat_abort = ab
    return true
end

-- Waits seconds, or until sema (when given) is posted; true once the request was aborted
-- (ab: its abort state, false when nothing can abort it).
local function pause(ab, sema, seconds)
    if not ab then
        if sema then
            sema:wait(seconds)
        else
            sleep(seconds)
        end
        return false
    end
    if ab.aborted then
        return true
    end
    sema = sema or semaphore.new(0)
    ab.waiting[sema] = true
    sema:wait(seconds)
    ab.waiting[sema] = nil
    return ab.aborted
end

--- Drives op to its end and frees it. Returns the op's results, or nil, err, detail.
-- Fails the targets of op's round still pending "cancelled" (the round is not sent).
local function cancel_round(op)
    for node = 1, op:nodes() do
        if op:pending(node) then
            op:fail_node(node, STATUS.cancelled, "cancelled")
        end
    end
end

function M.run(st, op)
    local call, ab, late, cancelled
    while true do
        -- IO: a1 is the address of an op of one target; CALL: a1.. the callback's arguments
        local s, x, y, a1, a2, a3, a4 = op:step()
        if s == IO then
            local timeout = (y and y > 0) and y or st.command_timeout
            if ab == nil then
                ab = ngx.ctx.redpat_abort or false
                -- begun after the abort (the handler reporting, or cleaning up): its rounds
                -- are not interrupted
                late = ab and ab.aborted
            end
            -- under cancel_on_abort (until the op is cancelled: its clean-up must run), an
            -- abort interrupts the round: one target's round then runs in a light thread
            -- too, so that the wait for it can be woken
            local watch = ab and not late and not cancelled and ab or nil
            if watch and ab.aborted then -- aborted between two rounds: not this one too
                cancel_round(op)
            elseif x and not watch then
                serve(st, op, 1, x, timeout, nil, a1)
            elseif x or x == nil then
                parallel_round(st, op, timeout, watch)
            end
            if watch and ab.aborted then -- before, during, or just as the round ended
                cancelled = true
                op:cancel() -- the op compensates for what the round may have done
            end
        elseif s == SLEEP then
            if ab == nil then -- looked up only by ops that wait
                ab = ngx.ctx.redpat_abort or false
            end
            local aborted
            if call == nil then
                aborted = pause(ab, nil, x / 1000)
            elseif not call.done then
                if x == huge then
                    repeat
                        aborted = pause(ab, call.sema, CALL_WAIT_S)
                    until call.done or aborted
                else
                    aborted = pause(ab, call.sema, x / 1000)
                end
            end
            if aborted then
                if call and not call.done then
                    kill(call.thread) -- the request is gone: so is the work done for it
                    call = nil
                end
                cancelled = true
                op:cancel() -- ends a running callback too; the op cleans up
            end
        elseif s == CALL then
            if y == nil then
                cancelled = true
                op:cancel() -- nothing to run: the op cleans up and ends
            else
                call = start_call(y, a1, a2, a3, a4)
            end
        elseif s == EMIT then
            op:free()
            return failure("state", "a long-lived op runs through a listener (redpat.open)")
        else -- DONE or ERROR
            if call and not call.done then
                wait(call.thread)
            end
            return op:finish()
        end
        if call and call.done then
            end_call(op, call)
            call = nil
        end
    end
end

-- ---- long-lived ops

--- A listener for long-lived op: its own sockets (and each one's address), read with the
-- user's waits (M.next).
function M.listener(st, op)
    return { st = st, op = op, socks = {}, addrs = {}, wake_at = nil }
end

local function drop(l, node, status, why)
    local sock = l.socks[node]
    l.socks[node] = nil
    if sock then
        sock:close()
    end
    l.op:fail_node(node, status, why)
end

-- Sends node's request of this round, if any, over the listener's socket to the round's
-- target (opened when there is none). false when the node failed.
local function listen_send(l, node)
    local op = l.op
    local req = op:request(node)
    if not req then
        return true
    end
    local sock = l.socks[node]
    local address = op:target(node)
    if sock ~= nil and address ~= nil and address ~= l.addrs[node] then
        -- the op's target moved (on a cluster: after reading the topology from a seed, the
        -- subscription goes to the node the core picks): a socket of its own to the new one
        l.socks[node] = nil
        sock:close()
        sock = nil
    end
    if sock == nil then
        local why, status
        sock, why, status = connect(l.st, op, node, l.st.command_timeout)
        if not sock then
            op:fail_node(node, status, why)
            return false
        end
        l.socks[node], l.addrs[node] = sock, address
    end
    local ok, err = sock:send(req)
    if not ok then
        drop(l, node, socket_status(err), err)
        return false
    end
    return true
end

--- The next message of the listener's op within ms (math.huge: no limit): the message, or
-- nil, "timeout" (the op lives on: nothing is lost), or nil, err, detail when it failed.
function M.next(l, ms)
    local op = l.op
    if op == nil then
        return failure("state", "the listener is closed")
    end
    local deadline = ms == huge and huge or now_ms() + ms
    while true do
        if l.wake_at then -- a sleep the op asked for (reconnect backoff) is still on
            local left = min(l.wake_at, deadline) - now_ms()
            if left > 0 then
                sleep(left / 1000)
            end
            if now_ms() < l.wake_at then
                return failure("timeout", "no message within the wait")
            end
            l.wake_at = nil
        end
        local s, x, y = op:step()
        if s == EMIT then
            return x
        elseif s == SLEEP then
            l.wake_at = now_ms() + (x == huge and LISTEN_SLICE_MS or x)
        elseif s == IO then
            for node = 1, op:nodes() do
                listen_send(l, node)
            end
            for node = 1, op:nodes() do
                while op:pending(node) do
                    local sock = l.socks[node]
                    local listening = op:listening(node)
                    if sock == nil and listening then
                        -- nothing wanted yet, so no connection: wait a slice, then step
                        -- again for what the user may have asked meanwhile
                        local left = min(deadline - now_ms(), LISTEN_IDLE_MS)
                        if left < 1 then
                            return failure("timeout", "no message within the wait")
                        end
                        sleep(left / 1000)
                        break
                    elseif sock == nil then
                        op:fail_node(node, STATUS.transport, "no connection")
                        break
                    end
                    local wait_ms
                    if listening then
                        wait_ms = min(deadline - now_ms(), LISTEN_SLICE_MS)
                        if wait_ms < 1 then
                            return failure("timeout", "no message within the wait")
                        end
                    else
                        wait_ms = (y and y > 0) and y or l.st.command_timeout
                    end
                    sock:settimeouts(l.st.connect_timeout, l.st.command_timeout, wait_ms)
                    local data, err = sock:receiveany(RECV_MAX)
                    if data then
                        if op:feed(node, data) == nil then -- the op failed the node itself
                            local dead = l.socks[node]
                            l.socks[node] = nil
                            dead:close()
                        end
                    elseif err == "timeout" and listening then
                        if now_ms() >= deadline then
                            return failure("timeout", "no message within the wait")
                        end
                    else
                        drop(l, node, socket_status(err), err)
                    end
                end
            end
        elseif s == CALL then
            op:cancel()
        else -- DONE or ERROR: a long-lived op ends only by failing
            l.op = nil
            local r, err, detail = op:finish()
            M.close(l)
            return r, err, detail
        end
    end
end

-- QUIT, then read until the server closes: Redis drops a client's subscriptions before it
-- closes its socket, so once this returns nobody counts the listener as a receiver.
local QUIT = "*1\r\n$4\r\nQUIT\r\n"

--- Frees the listener's op and closes its sockets (a subscribed connection is never
-- pooled), waiting at most the command timeout for the server to let go of each.
function M.close(l)
    for node, sock in pairs(l.socks) do
        l.socks[node] = nil
        sock:settimeouts(l.st.connect_timeout, l.st.command_timeout, l.st.command_timeout)
        if sock:send(QUIT) then
            local deadline = now_ms() + l.st.command_timeout
            while now_ms() < deadline and sock:receiveany(RECV_MAX) do -- messages, then +OK
            end
        end
        sock:close()
    end
    if l.op then
        l.op:free()
        l.op = nil
    end
end

return M
