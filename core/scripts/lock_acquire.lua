#!lua
-- Plain acquire for a Redis older than 7.0, which refuses SET with both NX and GET.
-- KEYS[1] lock; ARGV[1] owner token, ARGV[2] ttl in ms.
-- Answers as SET key token NX PX ttl GET does on Redis 7: nil when acquired, the holder's
-- token when busy, and a WRONGTYPE error when the key holds something else than a string
-- (a busy look would keep a waiting acquire retrying until its wait runs out).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return false
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
return redis.call('GET', KEYS[1])
