-- Reference for bench/server_cost.py: the plain INCR+EXPIRE fixed window most projects
-- write (a counter that starts its window at the first hit). It returns only the count; the
-- caller compares it with its limit. KEYS[1] the counter; ARGV: window seconds, cost.
local current = redis.call('INCRBY', KEYS[1], ARGV[2])
if current == tonumber(ARGV[2]) then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return current
