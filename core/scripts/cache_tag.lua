#!lua
-- Tag invalidation. KEYS[1] the tag's version. ARGV[1] how long it lives (ms: as long as
-- an entry may), ARGV[2] channel ('': publish nothing), ARGV[3] the invalidation message.
-- The new version is the server's clock in microseconds, or one more than the last: it
-- never repeats, so no entry filled before can match it. Returns the new version.
local t = redis.call('TIME')
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local version = t[1] * 1000000 + t[2]
if version <= last then version = last + 1 end
version = string.format('%.0f', version)
redis.call('SET', KEYS[1], version, 'PX', ARGV[1])
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return version
