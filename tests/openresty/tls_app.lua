--- The OpenResty TLS test app (issue 11 item 8), served by its own nginx that
-- tests/openresty/run_tests.py --tls starts with `lua_ssl_trusted_certificate` set to the
-- test CA (tests/harness/harness.py run --tls made it: REDPAT_TEST_TLS_DIR). Routes (GET,
-- JSON answers):
--   /ping                     liveness
--   /tls?strict=&plain=&foreign=
--                             every TLS case over cosockets, each answered as a table: the
--                             TLS servers of the harness (REDPAT_TEST_URL, rediss://); strict:
--                             a TLS server requiring client certificates; plain: a plaintext
--                             server; foreign: a TLS server whose certificate another CA
--                             signed (the URLs are given by run_tests.py)
local cjson = require "cjson.safe"
local redpat = require "redpat"

local ngx = ngx
local M = {}

local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
end

local function tls_dir()
    return assert(os.getenv("REDPAT_TEST_TLS_DIR"), "REDPAT_TEST_TLS_DIR is not passed to nginx")
end

-- How an attempt ended: {ok = true, value} or {err, message}.
local function outcome(result, err, detail)
    if result ~= nil then
        return { ok = true, value = result }
    end
    return { err = err, message = type(detail) == "table" and detail.message or tostring(detail) }
end

local function connect(url, opts)
    local o = { namespace = "tls", connect_timeout = 2000, command_timeout = 2000 }
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    return redpat.connect(url, o)
end

-- PING through a new client of url with opts: outcome.
local function ping(url, opts)
    local c, err, detail = connect(url, opts)
    if not c then
        return outcome(nil, err, detail)
    end
    return outcome(c:command("PING"))
end

local function client_id(c)
    local id = c:command("CLIENT", "ID")
    return id
end

local routes = {}

routes["/ping"] = function()
    return reply(200, { pong = true })
end

routes["/tls"] = function(args)
    local url = assert(os.getenv("REDPAT_TEST_URL"), "REDPAT_TEST_URL is not passed to nginx")
    local dir = tls_dir()
    -- cosockets resolve names through nginx's resolver only: the URLs are 127.0.0.1, and
    -- the certificate's name (localhost) is given
    local named = { tls_server_name = "localhost" }
    local cert = { tls_server_name = "localhost", tls_cert_file = dir .. "/client.crt",
                   tls_key_file = dir .. "/client.key" }
    local out = {}

    -- a lock and a limiter over TLS; one pooled connection
    local c = assert(connect(url, named))
    local lock = assert(c:lock("job", { ttl = 5000 }))
    local other = assert(c:lock("job", { ttl = 5000 }))
    local got = lock:acquire()
    local busy, busy_err = other:acquire()
    local released = lock:release()
    local api = assert(c:ratelimiter("api", { algorithm = "fixed_window", limit = 2,
                                              window = 60000 }))
    local checks, subject = {}, ("u-%d-%d"):format(ngx.worker.pid(), ngx.now() * 1000)
    for i = 1, 3 do
        local d = api:check(subject)
        checks[i] = d and d.allowed
    end
    out.lock = { acquired = got == true, busy = busy == nil and busy_err or busy,
                 released = released == true, limiter = checks }
    -- the same connection each time: pooled, handshaken once
    out.pooled = { first = client_id(c), second = client_id(c) }

    -- a Redlock over every TLS server of the harness: one light thread per target
    local rc = assert(redpat.client({ url = os.getenv("REDPAT_TEST_URLS"), namespace = "tls",
                                      tls_server_name = "localhost" }))
    local rl = assert(rc:redlock("r-" .. ngx.worker.pid(), { ttl = 5000, node_timeout = 1000 }))
    out.redlock = { acquired = rl:acquire() == true, released = rl:release() == true }

    -- the URL's IP address: nginx checks DNS names only (not the certificate's SAN IP), so
    -- it fails, saying to give tls_server_name
    out.by_ip = ping(url)
    out.server_name = ping(url, named)
    out.wrong_name = ping(url, { tls_server_name = "wrong.example" })
    -- verify off: a name the certificate does not have still connects
    out.verify_off = ping(url, { tls_server_name = "wrong.example", tls_verify = false })
    -- ... and its pooled connection is not one a verifying client may get
    out.wrong_name_after = ping(url, { tls_server_name = "wrong.example" })
    -- a certificate the trusted CA (lua_ssl_trusted_certificate) did not sign
    out.foreign = ping(args.foreign, named)
    -- plaintext to the TLS port: the server drops it, and no pooled TLS connection is
    -- handed to a plain client
    out.plain_to_tls = ping((url:gsub("^rediss://", "redis://")))
    -- TLS to a plaintext port: never a plaintext conversation
    out.tls_to_plain = ping((args.plain:gsub("^redis://", "rediss://")), { command_timeout = 500 })
    -- a server requiring a client certificate
    out.strict_without = ping(args.strict, named)
    out.strict_with = ping(args.strict, cert)
    local sc = assert(connect(args.strict, cert))
    local sl = assert(sc:lock("strict", { ttl = 5000 }))
    out.strict_lock = { acquired = sl:acquire() ~= nil, released = sl:release() ~= nil }
    -- what cosockets cannot do per connection, and files that are not what they say
    out.ca_file = ping(url, { tls_ca_file = dir .. "/ca.crt" })
    out.bad_cert = ping(url, { tls_cert_file = dir .. "/openssl.cnf",
                               tls_key_file = dir .. "/client.key" })
    return reply(200, out)
end

function M.handle()
    local route = routes[ngx.var.uri]
    if not route then
        return reply(404, { error = "no route " .. ngx.var.uri })
    end
    local ok, err = pcall(route, ngx.req.get_uri_args())
    if not ok then
        ngx.log(ngx.ERR, "route ", ngx.var.uri, " raised: ", tostring(err))
        return reply(500, { error = tostring(err) })
    end
end

return M
