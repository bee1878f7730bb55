-- The redpat rock: the C core + the generic Lua glue over its op descriptors (redpat.core)
-- + the Lua layer (methods made from the descriptors, idiom, the OpenResty driver).
-- One command builds and installs it from a checkout (README, "Install with LuaRocks"):
--   luarocks --lua-version 5.4 make lua/redpat-0.1.0-1.rockspec                # Lua 5.4
--   luarocks --lua-version 5.1 make lua/redpat-0.1.0-1.rockspec \
--       LUA_INCDIR=/usr/include/luajit-2.1                                      # LuaJIT 2.1 / OpenResty
-- make test builds both that way in clean copies of the tree and installs a packed source
-- rock in a fresh tree (mk/lua.mk, scripts/readme_recipes.sh).
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
   -- TLS (rediss://) of the blocking transport: core/src/tls.c
   OPENSSL = {
      header = "openssl/ssl.h",
      library = "ssl",
   },
}
build = {
   -- "make", not "builtin": builtin cannot run the generator that embeds the Redis-side
   -- scripts (core/scripts/embed.sh) and leaves an object beside every source (core/src/*.o
   -- in a checkout). lua/rock.mk compiles every core/src/*.c with the glue in one compiler
   -- run straight into the install directory, so nothing is written into the source directory.
   type = "make",
   makefile = "lua/rock.mk",
   build_pass = false, -- the install pass compiles: there is nothing to build beforehand
   build_variables = { CFLAGS = "$(CFLAGS)" }, -- unused, quiets LuaRocks' "CFLAGS not passed"
   install_variables = {
      CC = "$(CC)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LIBDIR = "$(LIBDIR)",
      -- the external_dependencies above: one -I and one -L -l per library
      DEP_CFLAGS = "-I$(HIREDIS_INCDIR) -I$(OPENSSL_INCDIR)",
      DEP_LIBS = "-L$(HIREDIS_LIBDIR) -lhiredis -L$(OPENSSL_LIBDIR) -lssl -lcrypto -lm"
         .. " -lpthread", -- pthread: drive.c's helper thread
   },
   install = {
      lua = {
         ["redpat"] = "lua/redpat/init.lua",
         ["redpat.cosocket"] = "lua/redpat/cosocket.lua",
      },
   },
}
