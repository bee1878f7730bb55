-- Publish and subscribe from plain Lua (5.4 or LuaJIT).
--   lua5.4 examples/lua/pubsub.lua [redis://127.0.0.1:6379/0]
local redpat = require "redpat"

local url = arg[1] or os.getenv("REDPAT_TEST_URL") or "redis://127.0.0.1:6379/0"
local client = assert(redpat.connect(url))

-- a subscription keeps a connection of its own (opened at its first sub:next)
local sub = assert(client:subscribe{ channels = { "news" }, patterns = { "ev:*" } })
for msg in sub:messages(2000) do -- each message, until none comes within 2 s
    if msg.kind == "psubscribe" then -- both confirmed: publishing now reaches us
        assert(client:publish("news", "hello") == 1)
        assert(client:publish("ev:login", "\0binary\r\n") == 1)
    elseif msg.kind == "message" then
        print(msg.channel .. ": " .. msg.data)
    elseif msg.kind == "pmessage" then
        print(msg.pattern .. " matched " .. msg.channel .. " (" .. #msg.data .. " bytes)")
        break
    end
end
sub:close()
