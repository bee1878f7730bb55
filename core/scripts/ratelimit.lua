#!lua
-- Rate limit check for one subject against N limits, all-or-nothing, on the server clock.
-- KEYS: per limit i, KEYS[2i-1] its state and KEYS[2i] its sequence (sliding log member
--       ids); all hash-tagged on the subject, so one slot. (One limit: KEYS[2] only for a
--       sliding log.)
-- ARGV: cost, N, then per limit: algorithm, limit, window_ms, burst; for one limit: the
--       algorithm's letter followed by the cost unless it is 1 ("f", "t7", "l0"), limit,
--       window_ms[, burst: only for a token bucket or GCRA whose burst is not the limit].
--       algorithms: 1 (f) fixed window, 2 (l) sliding log,
--       3 (c) sliding window counter, 4 (t) token bucket, 5 (g) GCRA. cost 0 peeks: nothing
--       is consumed or written, and the decision is the one a request of cost 1 would get
--       now (refused when exhausted).
-- Returns {allowed, refused (1-based index of the first limit that refused, 0 if none),
--          then per limit: limit, remaining, retry_after_ms, reset_after_ms}; or, for one
--          limit and a cost >= 1, when the numbers fit, one integer v that the core reads
--          with the limit and window it sent: L = limit + 1 (the burst + 1 for a token
--          bucket or GCRA), R = window_ms + 2:
--            v >= 0 allowed: remaining v % L, reset_after v // L (retry_after 0);
--            v < 0 refused: u = -1 - v, remaining u % L, q = u // L; a fixed window's
--            retry_after = reset_after = q; the others' retry_after q % R, reset_after q // R.
--          It fits when v is below 2^53 as computed (then every step was exact in a double)
--          and a refusal's retry_after is below R (but a fixed window's).
-- Every limit is evaluated first; only when all allow are they all consumed, so a refusal
-- consumes nothing anywhere. Every key written gets a TTL.
--
-- Redis runs scripts one at a time, so their server time caps a whole fleet's checks per
-- second (bench/server_cost.py measures it): the common case, one limit and a cost >= 1,
-- runs first below, straight-line per algorithm with the fewest redis.call's (no closures,
-- no tables: the integer reply; a refusal writes nothing, but for a sliding log's expired
-- entries). Peeks and multi-limit checks take the general code after it, which computes
-- the same decisions (the matrix holds both to the same cases). What costs, measured on
-- Redis 7.0: a redis.call 0.4 us (ZCARD) to 2.4 us (ZRANGE), TIME ~0.8 us; a table reply
-- ~1.5 us more than one integer; each KEYS/ARGV string ~0.1 us; each tonumber ~0.2 us (so
-- the fast paths read numbers as s + 0: no global lookup and call).
local EXACT = 9007199254740992 -- 2^53
local cs, algo, cost = '1', ARGV[1], 1 -- (the usual cost, 1, is not even sent)
if #algo > 1 then cs, algo = string.sub(algo, 2), string.sub(algo, 1, 1); cost = cs + 0 end
-- (N limits: algo is the cost's first digit, none of the letters below)
if cost > 0 and algo == 'f' then -- fixed window: no clock needed, the key's TTL is the window
    local key = KEYS[1]
    local v = redis.call('GET', key)
    if not v then
        local limit, life = ARGV[2] + 0, ARGV[3] + 0 - 1 -- why: fixed_window
        if life < 1 then life = 1 end
        if cost <= limit then
            redis.call('SET', key, cs, 'PX', life)
            local r = (life + 1) * (limit + 1) + limit - cost
            if r < EXACT then return r end
            return { 1, 0, limit, limit - cost, 0, life + 1 }
        end
    else
        local ttl = redis.call('PTTL', key)
        local used = tonumber(v)
        -- (a key without a TTL, or 0 used, is a new window: the general code)
        if ttl >= 0 and used ~= 0 then
            local limit = ARGV[2] + 0
            ttl = ttl + 1
            if used + cost > limit then
                local remaining = limit - used
                if remaining < 0 then remaining = 0 end
                local r = ttl * (limit + 1) + remaining
                if r < EXACT then return -1 - r end
                return { 0, 1, limit, remaining, ttl, ttl }
            end
            redis.call('INCRBY', key, cs)
            local r = ttl * (limit + 1) + limit - used - cost
            if r < EXACT then return r end
            return { 1, 0, limit, limit - used - cost, 0, ttl }
        end
    end
elseif cost > 0 and (algo == 'l' or algo == 'c' or algo == 't' or algo == 'g') then
    local key, limit, window = KEYS[1], ARGV[2] + 0, ARGV[3] + 0
    local t = redis.call('TIME')
    local sec, usec = t[1] + 0, t[2] + 0
    local R = window + 2
    if algo == 'l' then -- sliding log (entries in whole µs: see sliding_log below)
        local now_us, span = sec * 1000000 + usec, window * 1000
        local floor_us = now_us - span -- an entry scored at or below it has left the window
        -- refused when the (limit - cost + 1)-th newest entry is still in the window; it is the
        -- one to wait for. A member reads as its score ("<µs>" or "<µs>.0<n>": the digits
        -- after ".0" are below a double's step there), so no WITHSCORES to format and parse
        -- (a member of another form: its score asked)
        local k = cost - limit - 1
        local oldest = redis.call('ZRANGE', key, k, k)[1]
        if oldest then oldest = tonumber(oldest) or tonumber(redis.call('ZSCORE', key, oldest)) end
        if oldest and oldest > floor_us then -- (nothing written: expired entries stay)
            local newest = redis.call('ZRANGE', key, -1, -1)[1]
            newest = tonumber(newest) or tonumber(redis.call('ZSCORE', key, newest))
            local remaining = 0 -- (cost 1: the limit's entries are all in the window)
            if cost > 1 then
                remaining = limit - redis.call('ZCOUNT', key, floor_us + 1, '+inf')
                if remaining < 0 then remaining = 0 end
            end
            local retry = math.ceil((oldest + span - now_us) / 1000)
            local reset = math.ceil((newest + span - now_us) / 1000)
            if retry < 0 then retry = 0 end
            if reset < 0 then reset = 0 end
            local r = (reset * R + retry) * (limit + 1) + remaining
            if retry < R and r < EXACT then return -1 - r end
            return { 0, 1, limit, remaining, retry, reset }
        end
        redis.call('ZREMRANGEBYSCORE', key, '-inf', floor_us)
        local count = redis.call('ZCARD', key)
        local us = t[1] .. string.sub('000000', #t[2] + 1) .. t[2]
        -- a unit's member is its microsecond; when another entry has it, or for more
        -- units, numbered ones as the general code makes
        if cost ~= 1 or redis.call('ZADD', key, now_us, us) == 0 then
            local seqkey = KEYS[2]
            local seq = redis.call('INCRBY', seqkey, cost) - cost
            local args = {}
            for j = 1, cost do
                args[#args + 1] = now_us
                -- %d: a number concatenated is written with %.14g, which repeats
                -- itself past 1e14 (ids would collide and the log under-count)
                args[#args + 1] = us .. '.0' .. string.format('%d', seq + j)
                if #args >= 1000 then redis.call('ZADD', key, unpack(args)); args = {} end
            end
            if #args > 0 then redis.call('ZADD', key, unpack(args)) end
            redis.call('PEXPIRE', seqkey, ARGV[3])
        end
        redis.call('PEXPIRE', key, ARGV[3])
        local r = window * (limit + 1) + limit - count - cost
        if r < EXACT then return r end
        return { 1, 0, limit, limit - count - cost, 0, window }
    end
    local now = sec * 1000 + usec / 1000
    if algo == 'c' then -- sliding window counter
        local idx = math.floor(now / window)
        local h = redis.call('HMGET', key, 'w', 'cur', 'prev')
        local w, cur, prev = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
        if w == nil or w < idx - 1 then cur, prev = 0, 0
        elseif w == idx - 1 then prev, cur = cur, 0 end
        local left = (idx + 1) * window - now -- ms left in the current window
        local estimate = prev * left / window + cur
        if estimate + cost > limit + 1e-6 then
            local retry
            if cur + cost <= limit then
                retry = left - (limit - cur - cost) * window / prev
            else
                local later = window - (limit - cost) * window / cur
                if later < 0 then later = 0 end
                retry = left + later
            end
            local reset = 0 -- until the estimate is back to 0
            if cur > 0 then reset = left + window elseif prev > 0 then reset = left end
            local remaining = limit - estimate
            if remaining > 0 then remaining = math.floor(remaining + 1e-6) else remaining = 0 end
            retry = math.ceil(retry)
            if retry < 0 then retry = 0 end
            reset = math.ceil(reset)
            local r = (reset * R + retry) * (limit + 1) + remaining
            if retry < R and r < EXACT then return -1 - r end
            return { 0, 1, limit, remaining, retry, reset }
        end
        redis.call('HSET', key, 'w', idx, 'cur', cur + cost, 'prev', prev)
        redis.call('PEXPIRE', key, 2 * window)
        local remaining = limit - estimate - cost
        if remaining > 0 then remaining = math.floor(remaining + 1e-6) else remaining = 0 end
        local reset = math.ceil(left + window)
        local r = reset * (limit + 1) + remaining
        if r < EXACT then return r end
        return { 1, 0, limit, remaining, 0, reset }
    elseif algo == 't' then -- token bucket
        local burst = limit -- (the usual burst: not sent)
        if ARGV[4] then burst = ARGV[4] + 0 end
        local rate = limit / window
        local h = redis.call('HMGET', key, 'tokens', 'ts')
        local tokens, ts = tonumber(h[1]), tonumber(h[2])
        if tokens == nil or ts == nil then tokens, ts = burst, now end
        if now > ts then tokens = tokens + (now - ts) * rate end
        if tokens > burst then tokens = burst end
        if tokens + 1e-6 < cost then
            local left = 0 -- floor0 below: counts forgive float's last bits
            if tokens > 0 then left = math.floor(tokens + 1e-6) end
            local retry, reset = math.ceil((cost - tokens) / rate), math.ceil((burst - tokens) / rate)
            local r = (reset * R + retry) * (burst + 1) + left
            if retry < R and r < EXACT then return -1 - r end
            return { 0, 1, burst, left, retry, reset }
        end
        local after = tokens - cost
        local refill = math.ceil((burst - after) / rate)
        if refill <= 0 then
            refill = 0
            redis.call('DEL', key) -- a full bucket is the same as no bucket
        else
            redis.call('HSET', key, 'tokens', after, 'ts', now)
            redis.call('PEXPIRE', key, refill)
        end
        local left = 0
        if after > 0 then left = math.floor(after + 1e-6) end
        local r = refill * (burst + 1) + left
        if r < EXACT then return r end
        return { 1, 0, burst, left, 0, refill }
    else -- GCRA (on offsets from now: see gcra below)
        local burst = limit
        if ARGV[4] then burst = ARGV[4] + 0 end
        local interval = window / limit
        local d = tonumber(redis.call('GET', key) or '0') - now
        if d < 0 then d = 0 end
        local room = interval * (burst - cost)
        if d > room then
            local left = burst - d / interval
            if left > 0 then left = math.floor(left + 1e-6) else left = 0 end
            local retry, reset = math.ceil(d - room), math.ceil(d)
            local r = (reset * R + retry) * (burst + 1) + left
            if retry < R and r < EXACT then return -1 - r end
            return { 0, 1, burst, left, retry, reset }
        end
        local new_d = d + interval * cost
        local reset = math.ceil(new_d)
        redis.call('SET', key, string.format('%.3f', now + new_d), 'PX', reset)
        local left = burst - cost - d / interval
        if left > 0 then left = math.floor(left + 1e-6) else left = 0 end
        local r = reset * (burst + 1) + left
        if r < EXACT then return r end
        return { 1, 0, burst, left, 0, reset }
    end
end
local single = ({ f = 1, l = 2, c = 3, t = 4, g = 5 })[algo] -- one limit: its algorithm
local n = 1
if not single then cost, n = tonumber(ARGV[1]), tonumber(ARGV[2]) end
local need = math.max(cost, 1) -- what the decision is about: a peek asks about cost 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 -- ms, microsecond precision
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) -- the same, in whole µs

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

-- A log's entries are scored in whole microseconds of the server clock: a small sorted set
-- keeps integer scores as integers, so Redis walking it (ZADD's insert, a range) parses no
-- float text per entry. One member per unit of cost, unique, and reading as its score: the
-- microsecond "<µs>" and, for more units or when another entry has that microsecond,
-- "<µs>.0<n>" numbered by the sequence key.
local function sliding_log(key, seqkey, limit, window)
    local span = window * 1000
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_us - span)
    local count = redis.call('ZCARD', key)
    if count + need > limit then
        -- wait until enough of the oldest entries have left the window
        local i = count + need - limit - 1
        local oldest = redis.call('ZRANGE', key, i, i, 'WITHSCORES')
        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        return false, math.max(0, limit - count), ceil((tonumber(oldest[2]) + span - now_us) / 1000),
            ceil((tonumber(newest[2]) + span - now_us) / 1000), nil
    end
    local reset = window
    if count > 0 and cost == 0 then
        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        reset = ceil((tonumber(newest[2]) + span - now_us) / 1000)
    elseif count == 0 and cost == 0 then
        reset = 0
    end
    return true, limit - count - cost, 0, reset, function()
        local seq = redis.call('INCRBY', seqkey, cost) - cost
        local args = {}
        for i = 1, cost do
            args[#args + 1] = now_us
            args[#args + 1] = t[1] .. string.sub('000000', #t[2] + 1) .. t[2] .. '.0'
                .. string.format('%d', seq + i) -- %d: exact to 2^53 (a concatenated number is %.14g)
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
    -- on d, how far the theoretical arrival time (the stored TAT) is ahead of now, so that no
    -- time is subtracted from itself: a fresh bucket's numbers are exact
    local d = tonumber(redis.call('GET', key) or '0') - now
    if d < 0 then d = 0 end
    local room = interval * (burst - need) -- how far ahead a request of cost need may find it
    if d > room then
        return false, floor0(burst - d / interval), ceil(d - room), ceil(d), nil
    end
    local new_d = d + interval * cost
    -- (counts from counts: burst - cost is exact, d / interval is 0 for an idle bucket)
    return true, floor0(burst - cost - d / interval), 0, ceil(new_d), function()
        if new_d > 0 then
            redis.call('SET', key, string.format('%.3f', now + new_d), 'PX', ceil(new_d))
        end
    end
end

local algorithms = { fixed_window, sliding_log, sliding_window, token_bucket, gcra }

local out = { 1, 0 }
local commits = {}
for i = 1, n do
    local a = 2 + (i - 1) * 4
    local algo = single
    if single then a = 0 else algo = tonumber(ARGV[a + 1]) end
    local limit, window, burst = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
        tonumber(ARGV[a + 4]) or tonumber(ARGV[a + 2])
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
