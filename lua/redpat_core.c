/* redpat.core — the Lua C glue over redpat's op API. One source for Lua 5.4 and LuaJIT 2.1.
 *
 * It marshals values and owns handles; it holds no pattern logic. Every argument goes to
 * the core as given (the core validates); the glue refuses only what it cannot represent
 * (a non-integral or out-of-range number of milliseconds), as invalid_argument.
 *
 * Lifetimes: the core wants the client to outlive its locks and limiters, and a lock or
 * limiter to outlive its ops, but Lua's collector may finalize them in any order. So the C
 * objects live in small reference-counted boxes: every userdata, lock, limiter and op holds
 * a reference to what it borrows, and an object is freed when its last reference goes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "redpat/redpat.h"

#if defined(__GNUC__)
#define RPL_EXPORT __attribute__((visibility("default")))
#else
#define RPL_EXPORT
#endif

/* ---- compatibility shims, under our own names (LuaJIT reports 5.1 but has some 5.2 API) */

static void rpl_push_i64(lua_State *L, int64_t v) {
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v); /* exact up to 2^53, which fencing tokens fit in */
#endif
}

/* 1: *out set; 0: a number, but not an integer int64 can hold; -1: not a number. */
static int rpl_to_i64(lua_State *L, int idx, int64_t *out) {
    lua_Number n;
    if (lua_type(L, idx) != LUA_TNUMBER) return -1;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        *out = (int64_t)lua_tointeger(L, idx);
        return 1;
    }
#endif
    n = lua_tonumber(L, idx);
    if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0) || floor(n) != n) return 0;
    *out = (int64_t)n;
    return 1;
}

static void rpl_newlib(lua_State *L, const luaL_Reg *funcs) {
    lua_newtable(L);
    luaL_setfuncs(L, funcs, 0);
}

/* ---- names */

#define RPL_CLIENT_MT "redpat.client"
#define RPL_LOCK_MT "redpat.lock"
#define RPL_OP_MT "redpat.op"
#define RPL_LIMITER_MT "redpat.ratelimiter"
#define RPL_ERROR_MT "redpat.error"

/* ---- error values: tables {name, message, code} with __tostring and __concat */

static void rpl_new_error(lua_State *L, int code, const char *message) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, rp_status_name(code));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, message ? message : "");
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    luaL_setmetatable(L, RPL_ERROR_MT);
}

/* Pushes nil, err; returns 2 (the Lua habit for expected failures). */
static int rpl_fail(lua_State *L, int code, const char *message) {
    lua_pushnil(L);
    rpl_new_error(L, code, message);
    return 2;
}

static int rpl_fail_err(lua_State *L, const rp_error *e) {
    return rpl_fail(L, e->code ? e->code : RP_ESTATE, e->message);
}

static int l_error_tostring(lua_State *L) {
    const char *name, *message;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "name");
    lua_getfield(L, 1, "message");
    name = lua_tostring(L, -2);
    message = lua_tostring(L, -1);
    if (message && *message)
        lua_pushfstring(L, "%s: %s", name ? name : "unknown", message);
    else
        lua_pushstring(L, name ? name : "unknown");
    return 1;
}

static int is_error_value(lua_State *L, int idx) {
    int same;
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, RPL_ERROR_MT);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

static void rpl_tostring_any(lua_State *L, int idx) {
    luaL_checkstack(L, 2, NULL);
    if (is_error_value(L, idx))
        lua_pushcfunction(L, l_error_tostring);
    else
        lua_getglobal(L, "tostring");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
}

static int l_error_concat(lua_State *L) {
    rpl_tostring_any(L, 1);
    rpl_tostring_any(L, 2);
    lua_concat(L, 2);
    return 1;
}

static int status_from_lua(lua_State *L, int idx) {
    int code;
    const char *name;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx);
    name = luaL_checkstring(L, idx);
    for (code = 0; code >= -32; code--)
        if (strcmp(rp_status_name(code), name) == 0) return code;
    return luaL_argerror(L, idx, "unknown status name");
}

/* core.error(status, message) -> err */
static int l_new_error(lua_State *L) {
    int code = status_from_lua(L, 1);
    rpl_new_error(L, code, luaL_optstring(L, 2, ""));
    return 1;
}

/* core.status_name(code) -> name */
static int l_status_name(lua_State *L) {
    lua_pushstring(L, rp_status_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* ---- boxes */

typedef struct rpl_client_box {
    rp_client *client;
    unsigned refs;
} rpl_client_box;

typedef struct rpl_lock_box {
    rp_lock *lock;
    rpl_client_box *cb;
    unsigned refs;
} rpl_lock_box;

typedef struct rpl_limiter_box {
    rp_ratelimit *rl;
    rpl_client_box *cb;
    unsigned refs;
} rpl_limiter_box;

static void client_box_unref(rpl_client_box *cb) {
    if (cb && --cb->refs == 0) {
        rp_client_free(cb->client);
        free(cb);
    }
}

static void lock_box_unref(rpl_lock_box *lb) {
    if (lb && --lb->refs == 0) {
        rp_lock_free(lb->lock);
        client_box_unref(lb->cb);
        free(lb);
    }
}

static void limiter_box_unref(rpl_limiter_box *rb) {
    if (rb && --rb->refs == 0) {
        rp_ratelimit_free(rb->rl);
        client_box_unref(rb->cb);
        free(rb);
    }
}

typedef struct rpl_client_ud {
    rpl_client_box *cb;
} rpl_client_ud;

typedef struct rpl_lock_ud {
    rpl_lock_box *lb;
} rpl_lock_ud;

typedef struct rpl_limiter_ud {
    rpl_limiter_box *rb;
} rpl_limiter_ud;

enum {
    K_ACQUIRE = 1, K_RELEASE, K_EXTEND, K_LOCKED, K_OWNED, K_FENCE, K_COMMAND, K_HANDSHAKE,
    K_RL_CHECK, K_RL_BATCH, K_RL_RESET
};

typedef struct rpl_op_ud {
    rp_op *op;
    rpl_client_box *cb;
    rpl_lock_box *lb;
    rpl_limiter_box **rbs; /* the limiters a rate limit op borrows (malloc'd), or NULL */
    size_t nrb;
    int kind;
    int anchor; /* registry ref keeping borrowed Lua strings alive, or LUA_NOREF */
} rpl_op_ud;

static rpl_client_box *check_client(lua_State *L, int idx) {
    rpl_client_ud *u = (rpl_client_ud *)luaL_checkudata(L, idx, RPL_CLIENT_MT);
    if (!u->cb) luaL_error(L, "redpat: the client is closed");
    return u->cb;
}

static rpl_lock_box *check_lock(lua_State *L, int idx) {
    rpl_lock_ud *u = (rpl_lock_ud *)luaL_checkudata(L, idx, RPL_LOCK_MT);
    if (!u->lb) luaL_error(L, "redpat: the lock handle is freed");
    return u->lb;
}

static rpl_limiter_box *check_limiter(lua_State *L, int idx) {
    rpl_limiter_ud *u = (rpl_limiter_ud *)luaL_checkudata(L, idx, RPL_LIMITER_MT);
    if (!u->rb) luaL_error(L, "redpat: the limiter handle is freed");
    return u->rb;
}

static rpl_op_ud *check_op_ud(lua_State *L, int idx) {
    return (rpl_op_ud *)luaL_checkudata(L, idx, RPL_OP_MT);
}

static rp_op *check_op(lua_State *L, int idx) {
    rpl_op_ud *u = check_op_ud(L, idx);
    if (!u->op) luaL_error(L, "redpat: the op is freed");
    return u->op;
}

/* Reads an optional integer field of the table at tidx. Returns 0 when absent, 1 when *out
 * is set, -1 when present but not an integer (a type error is raised for non-numbers). */
static int opt_i64_field(lua_State *L, int tidx, const char *field, int64_t *out) {
    int rc;
    lua_getfield(L, tidx, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    rc = rpl_to_i64(L, -1, out);
    if (rc < 0) luaL_error(L, "redpat: option '%s' must be a number", field);
    lua_pop(L, 1);
    return rc ? 1 : -1;
}

static int fail_not_integer(lua_State *L, const char *what) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be an integer number of milliseconds", what);
    return rpl_fail(L, RP_EINVAL, msg);
}

/* ---- client */

/* core.client_new(url|nil, opts|nil) -> client | nil, err */
static int l_client_new(lua_State *L) {
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_error e;
    rpl_client_ud *u;
    rpl_client_box *cb;
    int64_t v;
    int rc;

    o.url = luaL_optstring(L, 1, NULL);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "namespace");
        if (!lua_isnil(L, -1)) {
            size_t len;
            o.key_namespace = luaL_checklstring(L, -1, &len);
            if (strlen(o.key_namespace) != len)
                return rpl_fail(L, RP_EINVAL, "namespace must not contain NUL bytes");
        }
        /* the string stays referenced by the options table for this call */
        lua_pop(L, 1);
        rc = opt_i64_field(L, 2, "connect_timeout", &v);
        if (rc < 0 || (rc > 0 && (v < 0 || v > UINT32_MAX)))
            return fail_not_integer(L, "connect_timeout (0..2^32-1)");
        if (rc > 0) o.connect_timeout_ms = (uint32_t)v;
        rc = opt_i64_field(L, 2, "command_timeout", &v);
        if (rc < 0 || (rc > 0 && (v < 0 || v > UINT32_MAX)))
            return fail_not_integer(L, "command_timeout (0..2^32-1)");
        if (rc > 0) o.command_timeout_ms = (uint32_t)v;
        lua_getfield(L, 2, "tcp_keepalive");
        if (!lua_isnil(L, -1)) o.tcp_keepalive = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }

    u = (rpl_client_ud *)lua_newuserdata(L, sizeof *u);
    u->cb = NULL;
    luaL_setmetatable(L, RPL_CLIENT_MT);
    cb = (rpl_client_box *)calloc(1, sizeof *cb);
    if (!cb) return rpl_fail(L, RP_ENOMEM, "out of memory");
    rp_error_clear(&e);
    if (rp_client_new(&cb->client, &o, &e) != RP_OK) {
        free(cb);
        return rpl_fail_err(L, &e);
    }
    cb->refs = 1;
    u->cb = cb;
    return 1;
}

static int l_client_gc(lua_State *L) {
    rpl_client_ud *u = (rpl_client_ud *)luaL_checkudata(L, 1, RPL_CLIENT_MT);
    client_box_unref(u->cb);
    u->cb = NULL;
    return 0;
}

/* client:_run(op) -> true | nil, err   (blocking, over the client's own connection) */
static int l_client_run(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    rp_op *op = check_op(L, 2);
    rp_error e;
    rp_error_clear(&e);
    if (rp_client_run(cb->client, op, &e) != RP_OK) return rpl_fail_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_client_disconnect(lua_State *L) {
    rp_client_disconnect(check_client(L, 1)->client);
    return 0;
}

static int l_client_namespace(lua_State *L) {
    lua_pushstring(L, rp_client_namespace(check_client(L, 1)->client));
    return 1;
}

/* client:_endpoint() -> { unix = path | host = h, port = p, user, password, db } | nil, err
 * Where the client's URL points, for drivers that open their own sockets. */
static int l_client_endpoint(lua_State *L) {
    rp_endpoint ep;
    if (rp_client_endpoint(check_client(L, 1)->client, &ep) != RP_OK)
        return rpl_fail(L, RP_EINVAL, "the client was made without a url");
    lua_createtable(L, 0, 6);
    if (ep.is_unix) {
        lua_pushstring(L, ep.path);
        lua_setfield(L, -2, "unix");
    } else {
        lua_pushstring(L, ep.host);
        lua_setfield(L, -2, "host");
        lua_pushinteger(L, ep.port);
        lua_setfield(L, -2, "port");
    }
    if (ep.user) {
        lua_pushstring(L, ep.user);
        lua_setfield(L, -2, "user");
    }
    if (ep.password) {
        lua_pushstring(L, ep.password);
        lua_setfield(L, -2, "password");
    }
    lua_pushinteger(L, ep.db);
    lua_setfield(L, -2, "db");
    return 1;
}

static int l_client_closed(lua_State *L) {
    rpl_client_ud *u = (rpl_client_ud *)luaL_checkudata(L, 1, RPL_CLIENT_MT);
    lua_pushboolean(L, u->cb == NULL);
    return 1;
}

/* ---- ops: common constructor plumbing */

static rpl_op_ud *new_op_ud(lua_State *L, int kind) {
    rpl_op_ud *u = (rpl_op_ud *)lua_newuserdata(L, sizeof *u);
    u->op = NULL;
    u->cb = NULL;
    u->lb = NULL;
    u->rbs = NULL;
    u->nrb = 0;
    u->kind = kind;
    u->anchor = LUA_NOREF;
    luaL_setmetatable(L, RPL_OP_MT);
    return u;
}

static void op_attach(rpl_op_ud *u, rpl_client_box *cb, rpl_lock_box *lb) {
    if (lb) {
        lb->refs++;
        u->lb = lb;
    } else if (cb) {
        cb->refs++;
        u->cb = cb;
    }
}

static void op_release(lua_State *L, rpl_op_ud *u) {
    rp_op_free(u->op);
    u->op = NULL;
    lock_box_unref(u->lb);
    u->lb = NULL;
    while (u->nrb > 0)
        limiter_box_unref(u->rbs[--u->nrb]);
    free(u->rbs);
    u->rbs = NULL;
    client_box_unref(u->cb);
    u->cb = NULL;
    if (u->anchor != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, u->anchor);
        u->anchor = LUA_NOREF;
    }
}

/* ---- locks */

/* core.lock_new(client, name, opts|nil) -> lock | nil, err */
static int l_lock_new(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    size_t name_len;
    const char *name = luaL_checklstring(L, 2, &name_len);
    rp_lock_options o = RP_LOCK_OPTIONS_INIT;
    rpl_lock_ud *u;
    rpl_lock_box *lb;
    rp_error e;
    int rc;

    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        rc = opt_i64_field(L, 3, "ttl", &o.ttl_ms);
        if (rc < 0) return fail_not_integer(L, "ttl");
        lua_getfield(L, 3, "fenced");
        o.fenced = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    u = (rpl_lock_ud *)lua_newuserdata(L, sizeof *u);
    u->lb = NULL;
    luaL_setmetatable(L, RPL_LOCK_MT);
    lb = (rpl_lock_box *)calloc(1, sizeof *lb);
    if (!lb) return rpl_fail(L, RP_ENOMEM, "out of memory");
    rp_error_clear(&e);
    if (rp_lock_new(&lb->lock, cb->client, name, name_len, &o, &e) != RP_OK) {
        free(lb);
        return rpl_fail_err(L, &e);
    }
    cb->refs++;
    lb->cb = cb;
    lb->refs = 1;
    u->lb = lb;
    return 1;
}

static int l_lock_gc(lua_State *L) {
    rpl_lock_ud *u = (rpl_lock_ud *)luaL_checkudata(L, 1, RPL_LOCK_MT);
    lock_box_unref(u->lb);
    u->lb = NULL;
    return 0;
}

/* lock:_acquire_op(opts|nil) -> op | nil, err.
 * opts: wait (ms; math.huge waits forever), retry_min, retry_max (ms), token (string). */
static int l_lock_acquire_op(lua_State *L) {
    rpl_lock_box *lb = check_lock(L, 1);
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rpl_op_ud *u;
    rp_error e;
    int token_idx = 0;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "wait");
        if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == HUGE_VAL) {
            o.wait_ms = RP_WAIT_FOREVER;
            lua_pop(L, 1);
        } else {
            lua_pop(L, 1);
            if (opt_i64_field(L, 2, "wait", &o.wait_ms) < 0) return fail_not_integer(L, "wait");
        }
        if (opt_i64_field(L, 2, "retry_min", &o.retry_min_ms) < 0)
            return fail_not_integer(L, "retry_min");
        if (opt_i64_field(L, 2, "retry_max", &o.retry_max_ms) < 0)
            return fail_not_integer(L, "retry_max");
        lua_getfield(L, 2, "token");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "redpat: option 'token' must be a string");
            o.token = lua_tolstring(L, -1, &o.token_len);
            token_idx = lua_gettop(L);
        } else {
            lua_pop(L, 1);
        }
    }
    u = new_op_ud(L, K_ACQUIRE);
    if (token_idx) {
        /* the op may read the token after this call: keep the string alive with the op */
        lua_pushvalue(L, token_idx);
        u->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    rp_error_clear(&e);
    if (rp_lock_acquire_op(&u->op, lb->lock, &o, &e) != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, NULL, lb);
    return 1;
}

typedef int (*simple_lock_op_fn)(rp_op **, rp_lock *, rp_error *);

static int lock_simple_op(lua_State *L, simple_lock_op_fn fn, int kind) {
    rpl_lock_box *lb = check_lock(L, 1);
    rpl_op_ud *u = new_op_ud(L, kind);
    rp_error e;
    rp_error_clear(&e);
    if (fn(&u->op, lb->lock, &e) != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, NULL, lb);
    return 1;
}

static int l_lock_release_op(lua_State *L) {
    return lock_simple_op(L, rp_lock_release_op, K_RELEASE);
}
static int l_lock_locked_op(lua_State *L) {
    return lock_simple_op(L, rp_lock_locked_op, K_LOCKED);
}
static int l_lock_owned_op(lua_State *L) {
    return lock_simple_op(L, rp_lock_owned_op, K_OWNED);
}

/* lock:_extend_op(ms, replace) -> op | nil, err */
static int l_lock_extend_op(lua_State *L) {
    rpl_lock_box *lb = check_lock(L, 1);
    int64_t ms;
    int rc = rpl_to_i64(L, 2, &ms);
    int replace = lua_toboolean(L, 3);
    rpl_op_ud *u;
    rp_error e;
    if (rc < 0) return luaL_argerror(L, 2, "number expected (milliseconds)");
    if (rc == 0) return fail_not_integer(L, "ms");
    u = new_op_ud(L, K_EXTEND);
    rp_error_clear(&e);
    if (rp_lock_extend_op(&u->op, lb->lock, ms, replace, &e) != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, NULL, lb);
    return 1;
}

/* lock:token() -> string | nil */
static int l_lock_token(lua_State *L) {
    size_t len;
    const char *t = rp_lock_token(check_lock(L, 1)->lock, &len);
    if (t)
        lua_pushlstring(L, t, len);
    else
        lua_pushnil(L);
    return 1;
}

static int l_lock_fence(lua_State *L) {
    rpl_push_i64(L, rp_lock_fence(check_lock(L, 1)->lock));
    return 1;
}

static int l_lock_name(lua_State *L) {
    size_t len;
    const char *n = rp_lock_name(check_lock(L, 1)->lock, &len);
    lua_pushlstring(L, n, len);
    return 1;
}

static int l_lock_ttl(lua_State *L) {
    rpl_push_i64(L, rp_lock_ttl_ms(check_lock(L, 1)->lock));
    return 1;
}

/* ---- rate limiters */

static size_t rpl_rawlen(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 502
    return (size_t)lua_rawlen(L, idx);
#else
    return lua_objlen(L, idx);
#endif
}

/* Reads an optional string option naming an enum value through the core's parser (which
 * names the option and its choices when the name is unknown). 1: set (or absent), 0: *err
 * filled; a non-string raises. */
typedef int (*rpl_enum_parser)(const char *, size_t, void *, rp_error *);

static int opt_enum_field(lua_State *L, int tidx, const char *field, rpl_enum_parser parse,
                          void *out, rp_error *err) {
    const char *s;
    size_t len;
    int rc;
    lua_getfield(L, tidx, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 1;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "redpat: option '%s' must be a string", field);
    s = lua_tolstring(L, -1, &len);
    rc = parse(s, len, out, err);
    lua_pop(L, 1);
    return rc == RP_OK;
}

static int parse_algorithm(const char *s, size_t len, void *out, rp_error *err) {
    return rp_ratelimit_algorithm_parse(s, len, (rp_ratelimit_algorithm *)out, err);
}

static int parse_on_error(const char *s, size_t len, void *out, rp_error *err) {
    return rp_ratelimit_on_error_parse(s, len, (rp_ratelimit_on_error *)out, err);
}

static int fail_not_int(lua_State *L, const char *what) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be an integer", what);
    return rpl_fail(L, RP_EINVAL, msg);
}

/* The optional cost at idx (absent: 1). 1: *cost set; 0: not an integer (the caller fails
 * with invalid_argument); a non-number raises. */
static int opt_cost(lua_State *L, int idx, int64_t *cost) {
    int rc;
    *cost = 1;
    if (lua_isnoneornil(L, idx)) return 1;
    rc = rpl_to_i64(L, idx, cost);
    if (rc < 0) luaL_argerror(L, idx, "number expected (cost)");
    return rc;
}

/* Takes a reference on each limiter the op borrows. 0: out of memory. */
static int op_attach_limiters(rpl_op_ud *u, rpl_limiter_box *const *rbs, size_t n) {
    size_t i;
    u->rbs = (rpl_limiter_box **)malloc((n ? n : 1) * sizeof *u->rbs);
    if (!u->rbs) return 0;
    for (i = 0; i < n; i++) {
        rbs[i]->refs++;
        u->rbs[i] = rbs[i];
    }
    u->nrb = n;
    return 1;
}

/* Finishes a rate limit op constructor: the core's status rc, then the references. */
static int limiter_op_made(lua_State *L, rpl_op_ud *u, int rc, const rp_error *e,
                           rpl_limiter_box *const *rbs, size_t n) {
    if (rc != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, e);
    }
    if (!op_attach_limiters(u, rbs, n)) {
        op_release(L, u);
        return rpl_fail(L, RP_ENOMEM, "out of memory");
    }
    return 1;
}

/* core.ratelimit_new(client, name, opts|nil) -> limiter | nil, err
 * opts: algorithm, on_error (strings), limit, burst (integers), window (ms). */
static int l_ratelimit_new(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    size_t name_len;
    const char *name = luaL_checklstring(L, 2, &name_len);
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rpl_limiter_ud *u;
    rpl_limiter_box *rb;
    rp_error e;

    if (strlen(name) != name_len)
        return rpl_fail(L, RP_EINVAL, "limiter name must not contain NUL bytes");
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        rp_error_clear(&e);
        if (!opt_enum_field(L, 3, "algorithm", parse_algorithm, &o.algorithm, &e) ||
            !opt_enum_field(L, 3, "on_error", parse_on_error, &o.on_error, &e))
            return rpl_fail_err(L, &e);
        if (opt_i64_field(L, 3, "limit", &o.limit) < 0) return fail_not_int(L, "limit");
        if (opt_i64_field(L, 3, "window", &o.window_ms) < 0) return fail_not_integer(L, "window");
        if (opt_i64_field(L, 3, "burst", &o.burst) < 0) return fail_not_int(L, "burst");
    }
    u = (rpl_limiter_ud *)lua_newuserdata(L, sizeof *u);
    u->rb = NULL;
    luaL_setmetatable(L, RPL_LIMITER_MT);
    rb = (rpl_limiter_box *)calloc(1, sizeof *rb);
    if (!rb) return rpl_fail(L, RP_ENOMEM, "out of memory");
    rp_error_clear(&e);
    if (rp_ratelimit_new(&rb->rl, cb->client, name, &o, &e) != RP_OK) {
        free(rb);
        return rpl_fail_err(L, &e);
    }
    cb->refs++;
    rb->cb = cb;
    rb->refs = 1;
    u->rb = rb;
    return 1;
}

static int l_limiter_gc(lua_State *L) {
    rpl_limiter_ud *u = (rpl_limiter_ud *)luaL_checkudata(L, 1, RPL_LIMITER_MT);
    limiter_box_unref(u->rb);
    u->rb = NULL;
    return 0;
}

/* limiter:_check_op(subject, cost|nil) -> op | nil, err */
static int l_limiter_check_op(lua_State *L) {
    rpl_limiter_box *rb = check_limiter(L, 1);
    size_t len;
    const char *subject = luaL_checklstring(L, 2, &len);
    int64_t cost;
    rpl_op_ud *u;
    rp_error e;
    int rc;
    if (!opt_cost(L, 3, &cost)) return fail_not_int(L, "cost");
    u = new_op_ud(L, K_RL_CHECK);
    rp_error_clear(&e);
    rc = rp_ratelimit_check_op(&u->op, rb->rl, subject, len, cost, &e);
    return limiter_op_made(L, u, rc, &e, &rb, 1);
}

/* limiter:_reset_op(subject) -> op | nil, err */
static int l_limiter_reset_op(lua_State *L) {
    rpl_limiter_box *rb = check_limiter(L, 1);
    size_t len;
    const char *subject = luaL_checklstring(L, 2, &len);
    rpl_op_ud *u = new_op_ud(L, K_RL_RESET);
    rp_error e;
    int rc;
    rp_error_clear(&e);
    rc = rp_ratelimit_reset_op(&u->op, rb->rl, subject, len, &e);
    return limiter_op_made(L, u, rc, &e, &rb, 1);
}

/* core.ratelimit_multi_op({limiter, ...}, subject, cost|nil) -> op | nil, err */
static int l_ratelimit_multi_op(lua_State *L) {
    size_t n, i, len;
    const char *subject;
    int64_t cost;
    rpl_limiter_box **rbs;
    rp_ratelimit **rls;
    rpl_op_ud *u;
    rp_error e;
    int rc, op_idx;

    luaL_checktype(L, 1, LUA_TTABLE);
    subject = luaL_checklstring(L, 2, &len);
    if (!opt_cost(L, 3, &cost)) return fail_not_int(L, "cost");
    n = rpl_rawlen(L, 1);
    u = new_op_ud(L, K_RL_CHECK);
    op_idx = lua_gettop(L);
    rbs = (rpl_limiter_box **)lua_newuserdata(L, (n ? n : 1) * sizeof *rbs);
    rls = (rp_ratelimit **)lua_newuserdata(L, (n ? n : 1) * sizeof *rls);
    for (i = 0; i < n; i++) {
        rpl_limiter_ud *lu;
        lua_rawgeti(L, 1, (int)(i + 1));
        lu = (rpl_limiter_ud *)luaL_testudata(L, -1, RPL_LIMITER_MT);
        if (!lu) return luaL_error(L, "redpat: limiters[%d] is not a rate limiter", (int)(i + 1));
        if (!lu->rb) return luaL_error(L, "redpat: limiters[%d] is freed", (int)(i + 1));
        rbs[i] = lu->rb;
        rls[i] = lu->rb->rl;
        lua_pop(L, 1);
    }
    rp_error_clear(&e);
    rc = rp_ratelimit_multi_op(&u->op, rls, n, subject, len, cost, &e);
    lua_settop(L, op_idx);
    return limiter_op_made(L, u, rc, &e, rbs, n);
}

/* limiter:_batch_op({subject, ...}, {cost, ...}|nil) -> op | nil, err */
static int l_limiter_batch_op(lua_State *L) {
    rpl_limiter_box *rb = check_limiter(L, 1);
    int has_costs = !lua_isnoneornil(L, 3);
    size_t n, i, *lens;
    const void **subjects;
    int64_t *costs;
    rpl_op_ud *u;
    rp_error e;
    int rc, op_idx;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (has_costs) luaL_checktype(L, 3, LUA_TTABLE);
    n = rpl_rawlen(L, 2);
    if (has_costs && rpl_rawlen(L, 3) != n) {
        char msg[160];
        snprintf(msg, sizeof msg, "costs must have one entry per subject (%zu subjects, %zu costs)",
                 n, rpl_rawlen(L, 3));
        return rpl_fail(L, RP_EINVAL, msg);
    }
    u = new_op_ud(L, K_RL_BATCH);
    op_idx = lua_gettop(L);
    subjects = (const void **)lua_newuserdata(L, (n ? n : 1) * sizeof *subjects);
    lens = (size_t *)lua_newuserdata(L, (n ? n : 1) * sizeof *lens);
    costs = (int64_t *)lua_newuserdata(L, (n ? n : 1) * sizeof *costs);
    /* The subject pointers stay valid while the table holds the strings: nothing below
     * allocates (no collection, no finalizer) until the core has copied them. */
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (int)(i + 1));
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "redpat: subjects[%d] must be a string", (int)(i + 1));
        subjects[i] = lua_tolstring(L, -1, &lens[i]);
        lua_pop(L, 1);
        if (has_costs) {
            lua_rawgeti(L, 3, (int)(i + 1));
            rc = rpl_to_i64(L, -1, &costs[i]);
            lua_pop(L, 1);
            if (rc < 0) return luaL_error(L, "redpat: costs[%d] must be a number", (int)(i + 1));
            if (rc == 0) {
                char what[40];
                snprintf(what, sizeof what, "costs[%d]", (int)(i + 1));
                return fail_not_int(L, what);
            }
        }
    }
    rp_error_clear(&e);
    rc = rp_ratelimit_batch_op(&u->op, rb->rl, n, subjects, lens, has_costs ? costs : NULL, &e);
    lua_settop(L, op_idx);
    return limiter_op_made(L, u, rc, &e, &rb, 1);
}

/* A decision as a table: allowed, limit, remaining, retry_after, reset_after (ms), degraded;
 * refused_by (1-based) when a multi check was refused; error (an err value naming the
 * status Redis failed with) when degraded. */
static void push_decision(lua_State *L, const rp_ratelimit_decision *d) {
    luaL_checkstack(L, 4, NULL);
    lua_createtable(L, 0, 8);
    lua_pushboolean(L, d->allowed);
    lua_setfield(L, -2, "allowed");
    rpl_push_i64(L, d->limit);
    lua_setfield(L, -2, "limit");
    rpl_push_i64(L, d->remaining);
    lua_setfield(L, -2, "remaining");
    rpl_push_i64(L, d->retry_after_ms);
    lua_setfield(L, -2, "retry_after");
    rpl_push_i64(L, d->reset_after_ms);
    lua_setfield(L, -2, "reset_after");
    lua_pushboolean(L, d->degraded);
    lua_setfield(L, -2, "degraded");
    if (d->refused_by >= 0) {
        lua_pushinteger(L, (lua_Integer)d->refused_by + 1);
        lua_setfield(L, -2, "refused_by");
    }
    if (d->degraded) {
        rpl_new_error(L, d->error_code ? d->error_code : RP_ESTATE,
                      d->error_message[0] ? d->error_message
                                          : "Redis failed; the limiter's on_error policy decided");
        lua_setfield(L, -2, "error");
    }
}

/* ---- fence check and raw commands */

/* core.fence_check_op(client, resource, token) -> op | nil, err */
static int l_fence_check_op(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    size_t rlen;
    const char *res = luaL_checklstring(L, 2, &rlen);
    int64_t token;
    int rc = rpl_to_i64(L, 3, &token);
    rpl_op_ud *u;
    rp_error e;
    if (rc < 0) return luaL_argerror(L, 3, "number expected (fencing token)");
    if (rc == 0) return rpl_fail(L, RP_EINVAL, "token must be an integer");
    u = new_op_ud(L, K_FENCE);
    lua_pushvalue(L, 2);
    u->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    rp_error_clear(&e);
    if (rp_fence_check_op(&u->op, cb->client, res, rlen, token, &e) != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, cb, NULL);
    return 1;
}

#define RPL_STACK_ARGS 16

/* core.command_op(client, arg1, ...) -> op | nil, err. Arguments: strings or numbers. */
static int l_command_op(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    int argc = lua_gettop(L) - 1, i;
    const char *sargv[RPL_STACK_ARGS];
    size_t slen[RPL_STACK_ARGS];
    const char **argv = sargv;
    size_t *argvlen = slen;
    rpl_op_ud *u;
    rp_error e;
    int rc;

    if (argc < 1) return luaL_error(L, "redpat: a command needs at least its name");
    if (argc > RPL_STACK_ARGS) {
        argv = (const char **)lua_newuserdata(L, (size_t)argc * sizeof *argv);
        argvlen = (size_t *)lua_newuserdata(L, (size_t)argc * sizeof *argvlen);
    }
    for (i = 0; i < argc; i++) {
        int t = lua_type(L, i + 2);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            return luaL_argerror(L, i + 2, "string or number expected");
        argv[i] = lua_tolstring(L, i + 2, &argvlen[i]);
    }
    u = new_op_ud(L, K_COMMAND);
    rp_error_clear(&e);
    rc = rp_command_op(&u->op, cb->client, argc, argv, argvlen, &e);
    if (rc != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, cb, NULL);
    return 1;
}

/* core.handshake_op(client) -> op | nil, err: AUTH/SELECT for a fresh connection, in one
 * round trip; DONE at once when the URL needs neither. */
static int l_handshake_op(lua_State *L) {
    rpl_client_box *cb = check_client(L, 1);
    rpl_op_ud *u = new_op_ud(L, K_HANDSHAKE);
    rp_error e;
    rp_error_clear(&e);
    if (rp_client_handshake_op(&u->op, cb->client, &e) != RP_OK) {
        op_release(L, u);
        return rpl_fail_err(L, &e);
    }
    op_attach(u, cb, NULL);
    return 1;
}

/* ---- op methods */

static int l_op_gc(lua_State *L) {
    op_release(L, check_op_ud(L, 1));
    return 0;
}

/* op:step([now_ms]) -> 1 IO, 2 SLEEP, 3 DONE, 4 ERROR. For IO on a single-node op, a
 * second value: the request bytes for node 1, or false when it has none this round. */
static int l_op_step(lua_State *L) {
    rp_op *op = check_op(L, 1);
    uint64_t now;
    rp_step step;
    if (lua_isnoneornil(L, 2)) {
        now = rp_monotonic_ms();
    } else {
        int64_t v;
        if (rpl_to_i64(L, 2, &v) != 1 || v < 0) return luaL_argerror(L, 2, "milliseconds expected");
        now = (uint64_t)v;
    }
    step = rp_op_step(op, now);
    lua_pushinteger(L, (lua_Integer)step);
    if (step == RP_STEP_IO && rp_op_nodes(op) == 1) {
        const char *bytes = NULL;
        size_t len = 0;
        /* the common case in one call: the request for the only node (false: none) */
        if (rp_op_request(op, 0, &bytes, &len) == RP_OK && len > 0)
            lua_pushlstring(L, bytes, len);
        else
            lua_pushboolean(L, 0);
        return 2;
    }
    return 1;
}

static size_t check_node(lua_State *L, int idx) {
    lua_Integer n = luaL_checkinteger(L, idx);
    if (n < 1) luaL_argerror(L, idx, "node numbers start at 1");
    return (size_t)(n - 1);
}

/* op:request(node) -> bytes | false (nothing for that node) | nil, err */
static int l_op_request(lua_State *L) {
    rp_op *op = check_op(L, 1);
    size_t node = check_node(L, 2), len = 0;
    const char *bytes = NULL;
    int rc = rp_op_request(op, node, &bytes, &len);
    if (rc != RP_OK) return rpl_fail(L, rc, "no request for this node now");
    if (len == 0)
        lua_pushboolean(L, 0);
    else
        lua_pushlstring(L, bytes, len);
    return 1;
}

/* op:feed(node, bytes) -> true (all replies in) | false (more needed) | nil, err */
static int l_op_feed(lua_State *L) {
    rp_op *op = check_op(L, 1);
    size_t node = check_node(L, 2), len;
    const char *buf = luaL_checklstring(L, 3, &len);
    int rc = rp_op_feed(op, node, buf, len);
    if (rc == RP_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == RP_MORE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    return rpl_fail(L, rc, "the reply could not be parsed");
}

/* op:fail_node(node, status (name or code), why) */
static int l_op_fail_node(lua_State *L) {
    rp_op *op = check_op(L, 1);
    size_t node = check_node(L, 2);
    int code = status_from_lua(L, 3);
    rp_op_fail_node(op, node, code, luaL_optstring(L, 4, NULL));
    return 0;
}

static int l_op_sleep_ms(lua_State *L) {
    rpl_push_i64(L, (int64_t)rp_op_sleep_ms(check_op(L, 1)));
    return 1;
}

static int l_op_nodes(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)rp_op_nodes(check_op(L, 1)));
    return 1;
}

static int l_op_name(lua_State *L) {
    lua_pushstring(L, rp_op_name(check_op(L, 1)));
    return 1;
}

/* op:error() -> err (after ERROR) */
static int l_op_error(lua_State *L) {
    const rp_error *e = rp_op_error(check_op(L, 1));
    if (e)
        rpl_new_error(L, e->code ? e->code : RP_ESTATE, e->message);
    else
        rpl_new_error(L, RP_ESTATE, "the op has not failed");
    return 1;
}

static int l_op_free(lua_State *L) {
    op_release(L, check_op_ud(L, 1));
    return 0;
}

static void push_reply(lua_State *L, const rp_reply *r, int depth) {
    size_t i;
    luaL_checkstack(L, 4, "redpat: reply nested too deeply");
    switch (r->type) {
    case RP_REPLY_STRING:
    case RP_REPLY_STATUS:
    case RP_REPLY_DOUBLE:
        lua_pushlstring(L, r->str, r->len);
        break;
    case RP_REPLY_INTEGER:
        rpl_push_i64(L, (int64_t)r->integer);
        break;
    case RP_REPLY_BOOL:
        lua_pushboolean(L, r->integer != 0);
        break;
    case RP_REPLY_ERROR: {
        lua_pushlstring(L, r->str, r->len);
        rpl_new_error(L, RP_EREPLY, lua_tostring(L, -1));
        lua_remove(L, -2);
        break;
    }
    case RP_REPLY_ARRAY:
        lua_createtable(L, r->elements > INT32_MAX ? 0 : (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], depth + 1);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    case RP_REPLY_NIL:
    default:
        lua_pushlightuserdata(L, NULL); /* redpat.null, equal to cjson.null and ngx.null */
        break;
    }
}

static const char *reply_type_name(int type) {
    switch (type) {
    case RP_REPLY_STRING: return "string";
    case RP_REPLY_ARRAY: return "array";
    case RP_REPLY_INTEGER: return "integer";
    case RP_REPLY_NIL: return "nil";
    case RP_REPLY_STATUS: return "status";
    case RP_REPLY_ERROR: return "error";
    case RP_REPLY_DOUBLE: return "double";
    case RP_REPLY_BOOL: return "bool";
    default: return "unknown";
    }
}

/* op:result() after DONE. By kind:
 *   acquire -> acquired (bool), fence (int, 0 unfenced), attempts
 *   release, extend -> true
 *   locked, owned -> bool
 *   fence check -> accepted (bool), highest (int)
 *   ratelimit check and multi -> decision (table, see push_decision); reset -> true;
 *   batch -> list of decisions
 *   command -> value, type name ("string", "status", "integer", "nil", "array", "error", ...)
 *              (nil is redpat.null; an error reply is an err value with name "reply")
 * On a state error: nil, err. */
static int push_result(lua_State *L, rpl_op_ud *u) {
    int rc;
    switch (u->kind) {
    case K_ACQUIRE: {
        rp_lock_acquisition r;
        rc = rp_lock_acquire_result(u->op, &r);
        if (rc != RP_OK) break;
        lua_pushboolean(L, r.acquired);
        rpl_push_i64(L, r.fence);
        lua_pushinteger(L, (lua_Integer)r.attempts);
        return 3;
    }
    case K_RELEASE:
    case K_EXTEND:
    case K_HANDSHAKE:
        if (rp_op_step(u->op, rp_monotonic_ms()) != RP_STEP_DONE) {
            rc = RP_ESTATE;
            break;
        }
        lua_pushboolean(L, 1);
        return 1;
    case K_LOCKED:
    case K_OWNED: {
        int v = 0;
        rc = rp_lock_query_result(u->op, &v);
        if (rc != RP_OK) break;
        lua_pushboolean(L, v);
        return 1;
    }
    case K_FENCE: {
        rp_fence_result r;
        rc = rp_fence_check_result(u->op, &r);
        if (rc != RP_OK) break;
        lua_pushboolean(L, r.accepted);
        rpl_push_i64(L, r.highest);
        return 2;
    }
    case K_COMMAND: {
        const rp_reply *r = NULL;
        rc = rp_command_result(u->op, &r);
        if (rc != RP_OK || !r) {
            if (rc == RP_OK) rc = RP_EPROTOCOL;
            break;
        }
        push_reply(L, r, 0);
        lua_pushstring(L, reply_type_name(r->type));
        return 2;
    }
    case K_RL_CHECK: {
        rp_ratelimit_decision d;
        rc = rp_ratelimit_check_result(u->op, &d);
        if (rc != RP_OK) break;
        push_decision(L, &d);
        return 1;
    }
    case K_RL_RESET: {
        rp_ratelimit_decision d;
        rc = rp_ratelimit_check_result(u->op, &d);
        if (rc != RP_OK) break;
        lua_pushboolean(L, 1);
        return 1;
    }
    case K_RL_BATCH: {
        size_t i, n = rp_ratelimit_batch_count(u->op);
        rp_ratelimit_decision d;
        if (n == 0) {
            rc = RP_ESTATE;
            break;
        }
        lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
        for (i = 0; i < n; i++) {
            if ((rc = rp_ratelimit_batch_result(u->op, i, &d)) != RP_OK) {
                lua_pop(L, 1);
                return rpl_fail(L, rc, "the batch has no decision here");
            }
            push_decision(L, &d);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        return 1;
    }
    default:
        rc = RP_ESTATE;
        break;
    }
    return rpl_fail(L, rc, "the op has no result (not DONE)");
}

static int l_op_result(lua_State *L) {
    rpl_op_ud *u = check_op_ud(L, 1);
    if (!u->op) return luaL_error(L, "redpat: the op is freed");
    return push_result(L, u);
}

/* op:finish() -> as op:result(), and frees the op */
static int l_op_finish(lua_State *L) {
    rpl_op_ud *u = check_op_ud(L, 1);
    int n;
    if (!u->op) return luaL_error(L, "redpat: the op is freed");
    n = push_result(L, u);
    op_release(L, u);
    return n;
}

/* op:_run() -> as op:result() | nil, err. Blocking, over the connection of the client the
 * op was made from (so a lock's ops run even after its client handle was closed); frees
 * the op either way. */
static int l_op_run(lua_State *L) {
    rpl_op_ud *u = check_op_ud(L, 1);
    rpl_client_box *cb;
    rp_error e;
    int n;
    if (!u->op) return luaL_error(L, "redpat: the op is freed");
    cb = u->lb ? u->lb->cb : u->nrb ? u->rbs[0]->cb : u->cb;
    rp_error_clear(&e);
    if (rp_client_run(cb->client, u->op, &e) != RP_OK)
        n = rpl_fail_err(L, &e);
    else
        n = push_result(L, u);
    op_release(L, u);
    return n;
}

/* ---- small helpers for drivers and tests */

static int l_monotonic_ms(lua_State *L) {
    rpl_push_i64(L, (int64_t)rp_monotonic_ms());
    return 1;
}

/* core.clock_us() -> monotonic microseconds (number), for benchmarks */
static int l_clock_us(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e6 + (lua_Number)ts.tv_nsec / 1e3);
    return 1;
}

/* core.sleep_ms(ms): blocking sleep, for plain Lua (never inside nginx) */
static int l_sleep_ms(lua_State *L) {
    int64_t ms;
    struct timespec ts;
    if (rpl_to_i64(L, 1, &ms) != 1 || ms < 0) return luaL_argerror(L, 1, "milliseconds expected");
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
    return 0;
}

/* ---- registration */

static void new_metatable(lua_State *L, const char *name, lua_CFunction gc,
                          const luaL_Reg *methods) {
    luaL_newmetatable(L, name);
    rpl_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
}

RPL_EXPORT int luaopen_redpat_core(lua_State *L) {
    static const luaL_Reg client_methods[] = {
        {"_run", l_client_run},
        {"_disconnect", l_client_disconnect},
        {"namespace", l_client_namespace},
        {"_endpoint", l_client_endpoint},
        {"_closed", l_client_closed},
        {"_close", l_client_gc},
        {NULL, NULL}};
    static const luaL_Reg lock_methods[] = {
        {"_acquire_op", l_lock_acquire_op},
        {"_release_op", l_lock_release_op},
        {"_extend_op", l_lock_extend_op},
        {"_locked_op", l_lock_locked_op},
        {"_owned_op", l_lock_owned_op},
        {"token", l_lock_token},
        {"fence", l_lock_fence},
        {"name", l_lock_name},
        {"ttl", l_lock_ttl},
        {"_free", l_lock_gc},
        {NULL, NULL}};
    static const luaL_Reg limiter_methods[] = {
        {"_check_op", l_limiter_check_op},
        {"_reset_op", l_limiter_reset_op},
        {"_batch_op", l_limiter_batch_op},
        {"_free", l_limiter_gc},
        {NULL, NULL}};
    static const luaL_Reg op_methods[] = {
        {"step", l_op_step},
        {"request", l_op_request},
        {"feed", l_op_feed},
        {"fail_node", l_op_fail_node},
        {"sleep_ms", l_op_sleep_ms},
        {"nodes", l_op_nodes},
        {"name", l_op_name},
        {"error", l_op_error},
        {"result", l_op_result},
        {"finish", l_op_finish},
        {"_run", l_op_run},
        {"free", l_op_free},
        {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"client_new", l_client_new},
        {"lock_new", l_lock_new},
        {"ratelimit_new", l_ratelimit_new},
        {"ratelimit_multi_op", l_ratelimit_multi_op},
        {"fence_check_op", l_fence_check_op},
        {"command_op", l_command_op},
        {"handshake_op", l_handshake_op},
        {"error", l_new_error},
        {"status_name", l_status_name},
        {"monotonic_ms", l_monotonic_ms},
        {"clock_us", l_clock_us},
        {"sleep_ms", l_sleep_ms},
        {NULL, NULL}};

    rpl_newlib(L, funcs);
    lua_createtable(L, 0, 5); /* metatables, for the Lua layer to add its methods */

    new_metatable(L, RPL_CLIENT_MT, l_client_gc, client_methods);
    lua_setfield(L, -2, "client");
    new_metatable(L, RPL_LOCK_MT, l_lock_gc, lock_methods);
    lua_setfield(L, -2, "lock");
    new_metatable(L, RPL_LIMITER_MT, l_limiter_gc, limiter_methods);
    lua_setfield(L, -2, "ratelimiter");
    new_metatable(L, RPL_OP_MT, l_op_gc, op_methods);
    lua_setfield(L, -2, "op");

    luaL_newmetatable(L, RPL_ERROR_MT);
    lua_pushcfunction(L, l_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_error_concat);
    lua_setfield(L, -2, "__concat");
    lua_pushstring(L, RPL_ERROR_MT);
    lua_setfield(L, -2, "__name");
    lua_setfield(L, -2, "error");

    lua_setfield(L, -2, "metatables");

    lua_pushinteger(L, RP_STEP_IO);
    lua_setfield(L, -2, "IO");
    lua_pushinteger(L, RP_STEP_SLEEP);
    lua_setfield(L, -2, "SLEEP");
    lua_pushinteger(L, RP_STEP_DONE);
    lua_setfield(L, -2, "DONE");
    lua_pushinteger(L, RP_STEP_ERROR);
    lua_setfield(L, -2, "ERROR");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushstring(L, RP_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
