-- Reference for bench/server_cost.py: the plain INCR+EXPIRE fixed window of
-- ref_fixed_window.lua, made to answer what redpat's does (one PTTL more, the same six-field
-- reply: allowed, refused-by, limit, remaining, retry_after, reset_after). It still counts
-- refused hits, as the plain one does. KEYS[1] the counter; ARGV: window seconds, cost, limit.
local cost, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local current = redis.call('INCRBY', KEYS[1], cost)
if current == cost then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if current > limit then
    return { 0, 1, limit, 0, ttl, ttl }
end
return { 1, 0, limit, limit - current, 0, ttl }
