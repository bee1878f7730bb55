-- Floor for bench/server_cost.py: the least a sliding log that decides on the server clock
-- can do: the server's time and the entry that decides (a list, newest first, as the
-- `limits` package keeps it); when allowed, the new entry, the trim and the TTL. No
-- remaining, no retry_after, no encoding. KEYS[1] the log; ARGV: limit, window ms.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local limit, span = ARGV[1] + 0, ARGV[2] * 1000
local e = redis.call('LINDEX', KEYS[1], limit - 1)
if e and e + span > now then
    return -1
end
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
