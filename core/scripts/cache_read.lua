#!lua flags=allow-oom
-- Cache read. KEYS[1] entry, KEYS[2] generation, KEYS[3] load lock.
-- ARGV[1] lock token ('': never lock), ARGV[2] lock TTL (ms), ARGV[3] '1': the entry is
-- known stale (its tags changed since its fill; ARGV[5..] the tag, version pairs it
-- recorded): answer a miss if it is still that fill; ARGV[4] when to read the
-- generation: '0' never, '1' when this caller is to load (a miss, a stale swr entry it
-- took the lock for), '2' always (xfetch may recompute any hit).
-- Returns {found, value, negative, pttl, delta, stale, locked, generation, now, tag,
-- version, ...}: found 1 with the entry's fields (value false when negative; stale 1 once
-- an swr entry's TTL left is within its stale window), else 0; locked 1 when this call
-- took the load lock (a miss, or a stale entry), 2 when Redis refused to store it;
-- generation false unless read; now the server's clock in ms when this caller may load (0
-- for a fresh hit, unless xfetch reads the generation); then the entry's tags and the
-- versions its fill recorded. (TIME only when it decides something: a fresh hit does not
-- ask for it.)
local function clock()
    local t = redis.call('TIME')
    return t[1] * 1000 + math.floor(t[2] / 1000)
end
-- 1: locked, 0: another holder has it, 2: Redis refused the write (out of memory: a Redis
-- older than 7 refuses it even here; the caller loads without the lock, nothing is stored)
local function lock()
    if ARGV[1] == '' then return 0 end
    local r = redis.pcall('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2])
    if type(r) == 'table' and r.err then return 2 end
    return r and 1 or 0
end
local function generation(loading)
    if ARGV[4] == '2' or (ARGV[4] == '1' and loading) then
        return redis.call('GET', KEYS[2]) or '0'
    end
    return false
end
local h = redis.call('HGETALL', KEYS[1])
if ARGV[3] == '1' and #h > 0 then
    -- the caller found this entry stale by its tags (ARGV[5..]: the tag, version pairs it
    -- recorded then): still that fill? then it is a miss; a fill that replaced it meanwhile
    -- is answered (the caller checks its tags again)
    local seen, n, same = {}, 0, true
    for j = 5, #ARGV, 2 do seen[ARGV[j]] = ARGV[j + 1] end
    for i = 1, #h, 2 do
        if string.sub(h[i], 1, 2) == 't:' then
            n = n + 1
            if seen[string.sub(h[i], 3)] ~= h[i + 1] then same = false end
        end
    end
    if same and 2 * n == #ARGV - 4 then h = {} end
end
if #h == 0 then
    local locked = lock()
    return {0, false, 0, 0, 0, 0, locked, generation(true), clock()}
end
local r = {1, false, 0, redis.call('PTTL', KEYS[1]), 0, 0, 0, false, 0}
local window
for i = 1, #h, 2 do
    local f = h[i]
    if f == 'v' then r[2] = h[i + 1]
    elseif f == 'n' then r[3] = 1
    elseif f == 'd' then r[5] = tonumber(h[i + 1])
    elseif f == 's' then window = tonumber(h[i + 1])
    elseif string.sub(f, 1, 2) == 't:' then
        r[#r + 1] = string.sub(f, 3)
        r[#r + 1] = h[i + 1]
    end
end
-- (s: swr's stale window: the entry is stale once its TTL left is at most that)
if ARGV[4] == '2' then r[9] = clock() end
if window and r[4] >= 0 and r[4] <= window then
    if r[9] == 0 then r[9] = clock() end
    r[6] = 1
    r[7] = lock()
end
r[8] = generation(r[7] == 1)
return r
