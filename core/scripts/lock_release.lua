#!lua flags=allow-oom
-- Owner-checked release. KEYS[1] lock; ARGV[1] owner token.
-- Returns 1 when deleted, 0 when the lock is not held with this token (left untouched).
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
