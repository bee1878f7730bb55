#!lua flags=no-writes
-- How long the lock has left, if it is held with this token. KEYS[1] lock; ARGV[1] owner token.
-- Returns the lock's PTTL in ms (> 0), or -2 when the lock is not held with this token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PTTL', KEYS[1])
end
return -2
