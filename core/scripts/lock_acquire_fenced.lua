#!lua
-- Fenced acquire. KEYS[1] lock, KEYS[2] fencing counter (same slot).
-- ARGV[1] owner token, ARGV[2] ttl in ms.
-- Returns {1, fence} when acquired (fence >= 1), {0, pttl} when busy, and a WRONGTYPE
-- error when the lock key holds something else than a string (it is not a lock: looking
-- busy would keep a waiting acquire retrying until its wait runs out).
-- The counter is bumped only when the lock is free, and before the lock is written, so
-- an error (say, a counter that is not an integer, or not a positive one) leaves the lock
-- untouched.
if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
        return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
    end
    return {0, redis.call('PTTL', KEYS[1])}
end
local fence = redis.call('INCR', KEYS[2])
if fence < 1 then
    return redis.error_reply('ERR fencing counter is not a positive integer (' .. fence .. ')')
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, fence}
