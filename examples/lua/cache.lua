-- Caches from plain Lua (5.4 or LuaJIT), with the blocking driver.
--   lua5.4 examples/lua/cache.lua [redis://127.0.0.1:6379/0]
local redpat = require "redpat"

local url = arg[1] or os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
local client = assert(redpat.connect(url, { namespace = "example" }))

-- The "database".
local rows = { ["user:1"] = { name = "ann" } }
local queries = 0
local function load_user(key)
    queries = queries + 1
    return rows[key] -- nil: no such row, kept as a negative entry
end

-- Entries live a minute plus up to 5 s of jitter; on a miss one caller loads (stampede lock).
local users = assert(client:cache("users", { ttl = 60000, jitter = 5000, stampede = "lock" }))
users:delete("user:1")
users:delete("user:404")

local user, _, rec = users:get_or_load("user:1", load_user)
print(("user:1 = %s (loaded: %s)"):format(user.name, tostring(rec.loaded)))
user, _, rec = users:get_or_load("user:1", load_user)
print(("user:1 = %s (hit: %s), %d database query"):format(user.name, tostring(rec.hit), queries))

-- A missing row: cached as "none", told from a miss by rec.negative.
local none
none, _, rec = users:get_or_load("user:404", load_user)
print("user:404 =", tostring(none), "negative:", tostring(rec.negative))
none, _, rec = users:get("user:404")
print("again, from the cache: negative", tostring(rec.negative), "hit", tostring(rec.hit))

-- A writer that commits while a reader loads: the reader gets the old row, the cache not.
local other = assert(client:cache("users", { ttl = 60000 }))
local old, _, r2 = users:get_or_load("user:2", function(key)
    local row = { name = "bob" }          -- read from the database ...
    rows[key] = { name = "bob", team = "red" }
    other:delete(key)                     -- ... while a writer commits and invalidates
    return row
end)
print(("reader got %s, stored: %s"):format(old.name, tostring(r2.stored)))
local _, _, r3 = users:get("user:2")
print("cached after the race: hit", tostring(r3.hit))

-- Write-through: the database first; a failed write leaves the cache untouched.
assert(users:write("user:1", { name = "ann", team = "blue" }, function(key, row)
    rows[key] = row
end))
local ok, err, detail = users:write("user:1", { name = "" }, function()
    error("a user needs a name")
end)
print("write refused:", tostring(ok), err, detail.message)
print("still cached:", users:get("user:1").team)

-- Tags: invalidating one misses every entry that carries it.
assert(users:set("user:1", rows["user:1"], { tags = { "team:blue" } }))
assert(users:invalidate_tags({ "team:blue" }))
local _, _, r4 = users:get("user:1")
print("after the tag's invalidation: hit", tostring(r4.hit))
