-- TLS (rediss://, issue 11 item 8) from plain Lua 5.4 and LuaJIT: the blocking driver runs
-- the C transport, whose TLS (OpenSSL over its own sockets) takes the connect options
-- tls_ca_file, tls_cert_file + tls_key_file, tls_server_name, tls_verify. Run under
--   python3 tests/harness/harness.py run --tls --servers 3 -- lua5.4 tests/lua/test_tls.lua
-- (rediss:// URLs in REDPAT_TEST_URLS, certificates in REDPAT_TEST_TLS_DIR). Server 3 is told
-- to require client certificates half-way. Prints `lua-tls[<frontend>]: N passed, F failed`
-- and exits non-zero on a failure.
local redpat = require "redpat"

local frontend = arg[1] or (jit and "luajit" or "lua5.4")
local dir = assert(os.getenv("REDPAT_TEST_TLS_DIR"), "run under harness.py run --tls")
local urls = {}
for u in assert(os.getenv("REDPAT_TEST_URLS"), "REDPAT_TEST_URLS is not set"):gmatch("[^,]+") do
    urls[#urls + 1] = u
end
assert(#urls >= 3 and urls[1]:match("^rediss://"), "3 rediss:// URLs")

local passed, failed = 0, 0
local function test(name, fn)
    local ok, why = pcall(fn)
    if ok then
        passed = passed + 1
    else
        failed = failed + 1
        io.stderr:write("FAIL ", name, ": ", tostring(why), "\n")
    end
end

local function file(name) return dir .. "/" .. name end

local function connect(url, opts)
    opts = opts or {}
    opts.namespace = "tls"
    opts.driver = "blocking"
    if opts.tls_ca_file == nil then opts.tls_ca_file = file("ca.crt") end
    if opts.tls_ca_file == false then opts.tls_ca_file = nil end
    return redpat.connect(url, opts)
end

-- nil, err, detail whose message holds words (plain find)
local function fails(want, words, result, err, detail)
    assert(result == nil, "expected a failure, got " .. tostring(result))
    assert(err == want, ("err %s, want %s: %s"):format(tostring(err), want, tostring(detail)))
    assert(tostring(detail):find(words, 1, true), tostring(detail))
end

test("lock, limiter and raw commands over TLS", function()
    local c = assert(connect(urls[1]))
    assert(c:command("PING") == "PONG")
    local lock = assert(c:lock("job", { ttl = 5000 }))
    assert(lock:acquire() == true, "acquire")
    assert(assert(c:lock("job", { ttl = 5000 })):acquire() == false, "busy")
    assert(lock:release() == true, "release")
    local api = assert(c:ratelimiter("api", { algorithm = "fixed_window", limit = 2, window = 60000 }))
    local got = {}
    for i = 1, 3 do got[i] = assert(api:check("u")).allowed end
    assert(got[1] and got[2] and not got[3], "2 of 3 allowed")
end)

test("redlock over three TLS servers", function()
    local c = assert(redpat.client { url = { urls[1], urls[2], urls[3] }, namespace = "tls",
                                     tls_ca_file = file("ca.crt"), driver = "blocking" })
    local red = assert(c:redlock("red", { ttl = 5000 }))
    assert(red:acquire() == true, "redlock acquire")
    assert(red:release() == true, "redlock release")
end)

test("verification is on by default", function()
    local c = assert(connect(urls[1], { tls_ca_file = false }))
    fails("transport", "TLS handshake failed: certificate verify failed (", c:command("PING"))
end)

test("another CA fails clearly", function()
    local c = assert(connect(urls[1], { tls_ca_file = file("other-ca.crt") }))
    fails("transport", "127.0.0.1:", c:lock("x", { ttl = 5000 }):acquire())
end)

test("tls_verify = false: no check", function()
    local c = assert(connect(urls[1], { tls_ca_file = false, tls_verify = false }))
    assert(c:command("PING") == "PONG")
end)

test("server name", function()
    local c = assert(connect(urls[1], { tls_server_name = "wrong.example" }))
    fails("transport", "certificate verify failed (hostname mismatch)", c:command("PING"))
    c = assert(connect(urls[1], { tls_server_name = "localhost" }))
    assert(c:command("PING") == "PONG")
end)

test("redis:// to a TLS port fails cleanly", function()
    local plain = "redis://" .. urls[1]:sub(#"rediss://" + 1)
    local c = assert(redpat.connect(plain, { command_timeout = 1000, driver = "blocking" }))
    local ok, err = c:command("PING")
    assert(ok == nil and (err == "transport" or err == "timeout"), tostring(err))
end)

test("options are checked before any I/O", function()
    fails("invalid_argument", "tls_ca_file given but no url is rediss://",
          redpat.connect("redis://127.0.0.1:1/0", { tls_ca_file = file("ca.crt") }))
    fails("invalid_argument", "tls_cert_file given without tls_key_file",
          connect(urls[1], { tls_cert_file = file("client.crt") }))
    fails("invalid_argument", "tls_key_file given without tls_cert_file",
          connect(urls[1], { tls_key_file = file("client.key") }))
    fails("invalid_argument", "tls_ca_file: cannot read",
          connect(urls[1], { tls_ca_file = file("missing.crt") }))
end)

test("client certificate where the server requires one", function()
    local with = assert(connect(urls[3], { tls_cert_file = file("client.crt"),
                                           tls_key_file = file("client.key") }))
    assert(with:command("CONFIG", "SET", "tls-auth-clients", "yes") == "OK")
    with:close()
    with = assert(connect(urls[3], { tls_cert_file = file("client.crt"),
                                     tls_key_file = file("client.key") }))
    assert(with:command("PING") == "PONG")
    local without = assert(connect(urls[3]))
    fails("transport", "127.0.0.1:", without:command("PING"))
end)

print(("lua-tls[%s]: %d passed, %d failed"):format(frontend, passed, failed))
os.exit(failed == 0 and 0 or 1)
