#!lua flags=allow-oom
-- Owner-checked extend. KEYS[1] lock; ARGV[1] owner token, ARGV[2] ms,
-- ARGV[3] '1' to set the TTL to ms, '0' to add ms to what remains.
-- Returns the new TTL in ms, or 0 when the lock is not held with this token.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local ttl = tonumber(ARGV[2])
if ARGV[3] == '0' then
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
        ttl = ttl + left
    end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return ttl
