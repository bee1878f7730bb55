#!lua
-- Fence check for storage that receives fenced writes. KEYS[1] highest token seen;
-- ARGV[1] the writer's token. Accepts a token >= the highest seen (the same holder may
-- write again) and records it; refuses an older one.
-- Returns {1, highest} when accepted, {0, highest} when refused.
local token = tonumber(ARGV[1])
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
if highest == nil then
    return redis.error_reply('ERR fence record is not an integer')
end
if token < highest then
    return {0, highest}
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, token}
