-- Floor for bench/server_cost.py: the least a fixed window that answers its decision on
-- the server clock can do. Reading the count and what is left of the window (its TTL) takes
-- two calls; the hit is counted when allowed. Nothing else: no argument checks, no encoding,
-- no remaining. KEYS[1] the counter; ARGV: limit, window ms.
local v = redis.call('GET', KEYS[1])
if not v then
    redis.call('SET', KEYS[1], 1, 'PX', ARGV[2])
    return 1
end
local ttl = redis.call('PTTL', KEYS[1])
if v + 1 > ARGV[1] + 0 then
    return -ttl
end
redis.call('INCR', KEYS[1])
return ttl
