-- Reference for bench/server_cost.py: the straightforward token bucket script (HMGET the
-- bucket, refill for the time since, take the cost if it fits, HMSET it back, expire it when
-- it would be full again), on the server clock like redpat's. Returns {allowed, tokens left}.
-- KEYS[1] the bucket; ARGV: capacity, tokens per ms, cost[, now ms: the client's clock
-- instead of the server's, the variant most examples show; measured for the record].
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
    local t = redis.call('TIME')
    now = t[1] * 1000 + t[2] / 1000
end
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or capacity
local ts = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
end
redis.call('HMSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1)
return { allowed, math.floor(tokens) }
