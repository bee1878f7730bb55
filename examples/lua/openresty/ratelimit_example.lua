-- OpenResty example: rate limiting requests per client address, with the usual headers
-- (X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, and Retry-After on a 429).
-- The check is one round trip over a pooled cosocket; the worker never blocks.
--
--   http {
--     lua_package_path  "/path/to/tree/share/lua/5.1/?.lua;/path/to/tree/share/lua/5.1/?/init.lua;;";
--     lua_package_cpath "/path/to/tree/lib/lua/5.1/?.so;;";
--     server {
--       listen 8080;
--       location /api {
--         access_by_lua_block { require("ratelimit_example").access() }
--         content_by_lua_block { ngx.say("hello") }
--       }
--     }
--   }
local redpat = require "redpat"
local cjson = require "cjson.safe"

local M = {}

local limiter -- one per worker; it holds no connection (each check takes one from the pool)

local function get_limiter()
    if not limiter then
        local url = os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
        local client = assert(redpat.connect(url, { namespace = "example", pool_size = 64 }))
        -- 3 requests per 10 s per address; if Redis is down, let requests through
        limiter = assert(client:ratelimiter("per-ip", {
            algorithm = "sliding_window", limit = 3, window = 10000, on_error = "fail_open",
        }))
    end
    return limiter
end

-- For access_by_lua: refuses with 429 when the limit is reached.
function M.access(subject)
    local d, _, detail = get_limiter():check(subject or ngx.var.remote_addr)
    if not d then -- only with on_error = "report"
        ngx.log(ngx.ERR, "rate limit check failed: ", tostring(detail))
        return ngx.exit(503)
    end
    redpat.ratelimit_headers(d) -- sets the headers on ngx.header
    if not d.allowed then
        return ngx.exit(429)
    end
end

-- The whole request in one handler (the test harness runs every location through handle):
-- GET /api?who=NAME limits by NAME instead of the address.
function M.handle()
    if ngx.var.uri == "/ping" then
        return ngx.say("pong")
    end
    M.access(ngx.var.arg_who)
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode({ hello = ngx.var.arg_who or ngx.var.remote_addr }))
end

return M
