#!lua
-- Cache writes. KEYS[1] entry, KEYS[2] generation, KEYS[3] load lock.
-- ARGV[1] mode: 'f' a fill after a miss (written only if the generation is still ARGV[2],
-- '' meaning unversioned, and the miss at server time ARGV[3] ms is at most ARGV[4] ms
-- ago); 'w' a write (bumps the generation); 'd' a delete (UNLINK; bumps the generation).
-- ARGV[4] load timeout (ms): how long a bumped generation lives. ARGV[5] the load lock's
-- token ('': none held): released if still ours. ARGV[6] TTL (ms), ARGV[7] swr's stale
-- window (ms; 0: none): the entry is stale once its TTL left is at most that, ARGV[8]
-- compute time (ms), ARGV[9] 'v' value / 'n' negative, ARGV[10] the value,
-- ARGV[11] channel ('': publish nothing), ARGV[12] the invalidation message, then tag,
-- version pairs. Returns 1 when the entry was written (d: when one existed), else 0.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local mode = ARGV[1]
local result = 1
if mode == 'f' then
    if (ARGV[2] ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2])
        or now - tonumber(ARGV[3]) > tonumber(ARGV[4]) then
        result = 0
    end
else
    -- The server's clock in microseconds, or one more than the last: never repeats, even
    -- after the key expired (a load that read the old value fails its check).
    local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
    local gen = t[1] * 1000000 + t[2]
    if gen <= last then gen = last + 1 end
    redis.call('SET', KEYS[2], string.format('%.0f', gen), 'PX', ARGV[4])
    if ARGV[11] ~= '' then redis.call('PUBLISH', ARGV[11], ARGV[12]) end
end
if mode == 'd' then
    result = redis.call('UNLINK', KEYS[1])
elseif result == 1 then
    redis.call('DEL', KEYS[1])
    local fields = {ARGV[9], ARGV[9] == 'v' and ARGV[10] or '1', 'd', ARGV[8]}
    if ARGV[7] ~= '0' then
        fields[#fields + 1] = 's'
        fields[#fields + 1] = ARGV[7]
    end
    for i = 13, #ARGV, 2 do
        fields[#fields + 1] = 't:' .. ARGV[i]
        fields[#fields + 1] = ARGV[i + 1]
    end
    redis.call('HSET', KEYS[1], unpack(fields))
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) == ARGV[5] then
    redis.call('DEL', KEYS[3])
end
return result
