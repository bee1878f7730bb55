#!lua
-- Rate limit check for one subject against N limits, all-or-nothing, on the server clock.
-- KEYS: per limit i, KEYS[2i-1] its state and KEYS[2i] its sequence (sliding log member
--       ids); all hash-tagged on the subject, so one slot.
-- ARGV: cost, N, then per limit: algorithm, limit, window_ms, burst.
--       algorithms: 1 fixed window, 2 sliding log, 3 sliding window counter,
--       4 token bucket, 5 GCRA. cost 0 peeks: nothing is consumed or written, and the
--       decision is the one a request of cost 1 would get now (refused when exhausted).
-- Returns {allowed, refused (1-based index of the first limit that refused, 0 if none),
--          then per limit: limit, remaining, retry_after_ms, reset_after_ms}.
-- Every limit is evaluated first; only when all allow are they all consumed, so a refusal
-- consumes nothing anywhere. Every key written gets a TTL.
local cost = tonumber(ARGV[1])
local need = math.max(cost, 1) -- what the decision is about: a peek asks about cost 1
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 -- ms, microsecond precision

local function ceil(x) if x <= 0 then return 0 end return math.ceil(x) end
-- counts come from float arithmetic on times: forgive the last bits (2.9999999 is 3)
local EPS = 1e-6
local function floor0(x) if x <= 0 then return 0 end return math.floor(x + EPS) end

-- Each returns allowed, remaining, retry_after, reset_after, commit(). retry_after is a
-- promise: a request of the same cost sent that many ms after the reply is allowed.

local function fixed_window(key, _, limit, window)
    local used = tonumber(redis.call('GET', key) or '0')
    -- Redis keeps a key through the millisecond in which PTTL reads 0, so a key is gone
    -- PTTL + 1 ms after the read, and one written with PX life lives life + 1 ms: the
    -- window's key gets PX window - 1, so the window lasts window ms (2 when window is 1)
    local life = math.max(window - 1, 1)
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then used = 0; ttl = life end
    ttl = ttl + 1
    if used + need > limit then
        -- (0, not less, when more was used than a lowered limit now allows)
        return false, math.max(0, limit - used), ttl, ttl, nil
    end
    local reset = ttl
    if used == 0 and cost == 0 then reset = 0 end -- a peek at an unused window
    return true, limit - used - cost, 0, reset, function()
        if used == 0 then
            redis.call('SET', key, cost, 'PX', life)
        else
            redis.call('INCRBY', key, cost)
        end
    end
end

local function sliding_log(key, seqkey, limit, window)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    if count + need > limit then
        -- wait until enough of the oldest entries have left the window
        local oldest = redis.call('ZRANGE', key, count + need - limit - 1, count + need - limit - 1, 'WITHSCORES')
        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        return false, math.max(0, limit - count), ceil(tonumber(oldest[2]) + window - now),
            ceil(tonumber(newest[2]) + window - now), nil
    end
    local reset = window
    if count > 0 and cost == 0 then
        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        reset = ceil(tonumber(newest[2]) + window - now)
    elseif count == 0 and cost == 0 then
        reset = 0
    end
    return true, limit - count - cost, 0, reset, function()
        local seq = redis.call('INCRBY', seqkey, cost) - cost
        local args = {}
        for i = 1, cost do
            args[#args + 1] = now
            args[#args + 1] = string.format('%.3f-%d', now, seq + i) -- unique even within 1 µs
            if #args >= 1000 then redis.call('ZADD', key, unpack(args)); args = {} end
        end
        if #args > 0 then redis.call('ZADD', key, unpack(args)) end
        redis.call('PEXPIRE', key, ceil(window))
        redis.call('PEXPIRE', seqkey, ceil(window))
    end
end

local function sliding_window(key, _, limit, window)
    local idx = math.floor(now / window)
    local h = redis.call('HMGET', key, 'w', 'cur', 'prev')
    local w, cur, prev = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if w == nil or w < idx - 1 then cur, prev = 0, 0
    elseif w == idx - 1 then prev, cur = cur, 0 end
    local left = (idx + 1) * window - now -- ms left in the current window
    local estimate = prev * left / window + cur
    local function reset_with(count) -- until the estimate is back to 0
        if count > 0 then return left + window elseif prev > 0 then return left end
        return 0
    end
    if estimate + need > limit + EPS then
        local retry
        if cur + need <= limit then
            -- later in this window the previous window's weight has shrunk enough
            retry = left - (limit - cur - need) * window / prev
        else
            -- in the next window, this window's count is the one that fades
            retry = left + math.max(0, window - (limit - need) * window / cur)
        end
        return false, floor0(limit - estimate), ceil(retry), ceil(reset_with(cur)), nil
    end
    return true, floor0(limit - estimate - cost), 0, ceil(reset_with(cur + cost)), function()
        redis.call('HSET', key, 'w', idx, 'cur', cur + cost, 'prev', prev)
        redis.call('PEXPIRE', key, ceil(2 * window))
    end
end

local function token_bucket(key, _, limit, window, burst)
    local rate = limit / window -- tokens per ms
    local h = redis.call('HMGET', key, 'tokens', 'ts')
    local tokens, ts = tonumber(h[1]), tonumber(h[2])
    if tokens == nil or ts == nil then tokens, ts = burst, now end
    tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
    if tokens + EPS < need then
        return false, floor0(tokens), ceil((need - tokens) / rate), ceil((burst - tokens) / rate), nil
    end
    local after = tokens - cost
    return true, floor0(after), 0, ceil((burst - after) / rate), function()
        local refill = ceil((burst - after) / rate)
        if refill <= 0 then
            redis.call('DEL', key) -- a full bucket is the same as no bucket
        else
            redis.call('HSET', key, 'tokens', after, 'ts', now)
            redis.call('PEXPIRE', key, refill)
        end
    end
end

local function gcra(key, _, limit, window, burst)
    local interval = window / limit -- ms between requests at the sustained rate
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local allow_at = tat + interval * (need - burst) -- when a request of cost need fits
    if now < allow_at then
        return false, floor0((now - (tat - interval * burst)) / interval), ceil(allow_at - now),
            ceil(tat - now), nil
    end
    local new_tat = tat + interval * cost
    return true, floor0((now - (new_tat - interval * burst)) / interval), 0, ceil(new_tat - now), function()
        if new_tat > now then
            redis.call('SET', key, string.format('%.3f', new_tat), 'PX', ceil(new_tat - now))
        end
    end
end

local algorithms = { fixed_window, sliding_log, sliding_window, token_bucket, gcra }

local out = { 1, 0 }
local commits = {}
for i = 1, n do
    local a = 2 + (i - 1) * 4
    local algo, limit, window, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
        tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local ok, remaining, retry, reset, commit =
        algorithms[algo](KEYS[2 * i - 1], KEYS[2 * i], limit, window, burst)
    if algo >= 4 then limit = burst end
    out[#out + 1] = limit
    out[#out + 1] = remaining
    out[#out + 1] = retry
    out[#out + 1] = reset
    if not ok and out[1] == 1 then
        out[1] = 0
        out[2] = i
    end
    commits[i] = commit
end
if out[1] == 1 and cost > 0 then
    for i = 1, n do commits[i]() end
end
return out
