# Compiles redpat.core for the rock: LuaRocks runs `make -f lua/rock.mk install VAR=...` from
# the source root with the variables lua/redpat-0.1.0-1.rockspec passes (its build table).
# One compiler run goes from the sources straight to the installed module, with the
# Redis-side scripts embedded into a temporary directory on the way, so a `luarocks make` in
# a checkout builds from nothing but tracked files and leaves nothing behind in it (the
# compiler's objects are temporary files of its own). Every core/src/*.c is compiled, as
# CMake does. POSIX make: LuaRocks calls the system's make.
CC = cc
CFLAGS = -O2 -fPIC
LIBFLAG = -shared
LUA_INCDIR = /usr/include
LIBDIR = .
DEP_CFLAGS =
DEP_LIBS =

all:

install:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	sh core/scripts/embed.sh "$$tmp/rp_scripts_gen.c" core/scripts && \
	mkdir -p "$(LIBDIR)/redpat" && \
	$(CC) $(CFLAGS) $(LIBFLAG) -Icore/include -Icore/src -I"$(LUA_INCDIR)" $(DEP_CFLAGS) \
	  -o "$(LIBDIR)/redpat/core.so" lua/redpat_core.c core/src/*.c "$$tmp/rp_scripts_gen.c" $(DEP_LIBS)

.PHONY: all install
