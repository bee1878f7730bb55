-- OpenResty example: a lock around a critical section inside a request handler. The
-- client uses cosockets (pooled with setkeepalive) and ngx.sleep: the worker never blocks.
--
--   http {
--     lua_package_path  "/path/to/tree/share/lua/5.1/?.lua;/path/to/tree/share/lua/5.1/?/init.lua;;";
--     lua_package_cpath "/path/to/tree/lib/lua/5.1/?.so;;";
--     server {
--       listen 8080;
--       location /work { content_by_lua_block { require("lock_example").handle() } }
--     }
--   }
local redpat = require "redpat"
local cjson = require "cjson.safe"

local M = {}

local client -- one per worker; it holds no connection (each operation takes one from the pool)

local function get_client()
    if not client then
        local url = os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
        client = assert(redpat.connect(url, { namespace = "example", pool_size = 64 }))
    end
    return client
end

function M.handle()
    local c = get_client()
    local lock = assert(c:lock("report", { ttl = 5000, fenced = true }))
    local ok, fence_or_err, detail = lock:acquire({ wait = 1000 }) -- retries sleep with ngx.sleep
    if ok == nil then -- fence_or_err: "timeout", "transport", ...; detail: "name: message"
        ngx.log(ngx.ERR, "lock: ", detail)
        ngx.status = 503
        ngx.say(cjson.encode({ error = fence_or_err }))
        return
    elseif not ok then
        ngx.status = 409
        ngx.say(cjson.encode({ busy = true }))
        return
    end
    local fence = fence_or_err
    local accepted = c:fence_check("reports", fence)
    ngx.sleep(0.005) -- the critical section's work
    local released, err = lock:release() -- err == "not_owned": the lock was lost meanwhile
    ngx.say(cjson.encode({
        driver = c:driver(),
        fence = fence,
        accepted = accepted,
        released = released == true,
        release_error = err,
    }))
end

return M
