#!lua
-- Redlock extend on one node. KEYS[1] lock; ARGV[1] owner token, ARGV[2] ms,
-- ARGV[3] '1' to set the TTL to ms, '0' to add ms to what remains.
-- Returns the new TTL (> 0) when the key held the token; -ms when the key was absent and
-- was set again with the token (a node that restarted without it: the caller keeps it
-- only if a quorum of the others still held the token, and deletes it otherwise);
-- 0 when another owner holds it (left untouched).
local held = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if held == ARGV[1] then
    if ARGV[3] == '0' then
        local left = redis.call('PTTL', KEYS[1])
        if left > 0 then
            ttl = ttl + left
        end
    end
    redis.call('PEXPIRE', KEYS[1], ttl)
    return ttl
end
if not held then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
    return -ttl
end
return 0
