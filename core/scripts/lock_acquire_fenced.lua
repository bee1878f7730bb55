-- Fenced acquire. KEYS[1] lock, KEYS[2] fencing counter (same slot).
-- ARGV[1] owner token, ARGV[2] ttl in ms.
-- Returns {1, fence} when acquired, {0, pttl} when busy.
-- The counter is bumped only when the lock is free, and before the lock is written, so
-- an error (say, a counter that is not an integer) leaves nothing half-done.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return {0, redis.call('PTTL', KEYS[1])}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, fence}
