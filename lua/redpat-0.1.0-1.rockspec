-- The redpat rock: the C core + the generic Lua glue over its op descriptors (redpat.core)
-- + the Lua layer (methods made from the descriptors, idiom, the OpenResty driver).
-- Build from the repository root (make builds it for Lua 5.4 and LuaJIT: mk/lua.mk):
--   sh core/scripts/embed.sh build/lua/gen/rp_scripts_gen.c     # embeds core/scripts/*.lua
--   luarocks make lua/redpat-0.1.0-1.rockspec                   # Lua 5.4
--   luarocks --lua-version 5.1 make lua/redpat-0.1.0-1.rockspec \
--       LUA_INCDIR=/usr/include/luajit-2.1                      # LuaJIT 2.1 / OpenResty
rockspec_format = "3.0"
package = "redpat"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/redpat.git",
   tag = "v0.1.0",
}
description = {
   summary = "Production-grade Redis patterns (locks with fencing tokens, Redlock, rate limiters, pub/sub), written once in C",
   detailed = [[
redpat's patterns are small sans-IO state machines in C. This rock exposes them to
Lua 5.4 and LuaJIT 2.1: a blocking driver for plain Lua and an OpenResty driver that
moves the core's bytes over ngx.socket.tcp cosockets without blocking the worker.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1, < 5.5",
}
external_dependencies = {
   HIREDIS = {
      header = "hiredis/hiredis.h",
      library = "hiredis",
   },
}
build = {
   type = "builtin",
   modules = {
      ["redpat"] = "lua/redpat/init.lua",
      ["redpat.cosocket"] = "lua/redpat/cosocket.lua",
      ["redpat.core"] = {
         sources = {
            "lua/redpat_core.c",
            "core/src/alloc.c",
            "core/src/client.c",
            "core/src/command.c",
            "core/src/desc_client.c",
            "core/src/desc_lock.c",
            "core/src/desc_pubsub.c",
            "core/src/desc_ratelimit.c",
            "core/src/desc_using.c",
            "core/src/describe.c",
            "core/src/drive.c",
            "core/src/error.c",
            "core/src/fence.c",
            "core/src/key.c",
            "core/src/lock.c",
            "core/src/lock_using.c",
            "core/src/op.c",
            "core/src/pubsub.c",
            "core/src/random.c",
            "core/src/ratelimit.c",
            "core/src/redlock.c",
            "core/src/reply.c",
            "core/src/reply_check.c",
            "core/src/script.c",
            "core/src/sha1.c",
            "core/src/transport_hiredis.c",
            "core/src/url.c",
            "build/lua/gen/rp_scripts_gen.c",
         },
         incdirs = { "core/include", "core/src", "$(HIREDIS_INCDIR)" },
         libdirs = { "$(HIREDIS_LIBDIR)" },
         libraries = { "hiredis", "pthread" }, -- pthread: drive.c's helper thread
      },
   },
}
