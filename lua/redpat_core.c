/* redpat.core — the Lua C glue, for Lua 5.4 and LuaJIT 2.1: ONE generic marshaller over the
 * core's op descriptors (describe.h). It knows no pattern: an op is begun by descriptor, its
 * Lua arguments converted by the argument types, its result read as the named fields.
 * init.lua makes the methods from core.descriptors:
 *   core.sig(name, {positional names}, "values"|nil) -> sig    how a method passes arguments
 *   core.call(sig, self, ...) -> result | nil, err   the op, run to its end in this call over
 *                                                    the core's own (blocking) connection
 *   core.begin(sig, self, ...) -> op | nil, err      the op, for a driver (redpat.cosocket)
 * Arguments: bytes are Lua strings (binary-safe), INT / MS integers (math.huge: forever, for
 * MS), BOOL booleans, ENUM names, handles their userdata, lists tables. A wrong Lua type or
 * option name raises an error value (invalid_argument); a non-integral number, and what the
 * core refuses, are nil, err in the core's words (its names, ms, items counted from 1).
 * Lifetimes: one userdata type wraps every handle (rp_kind, void *). A handle references the
 * handle it was made from (a lock keeps its client alive), an op the handles it borrows,
 * each counted as a borrower: close() or the collector frees the core's handle once nothing
 * borrows it, whatever order Lua finalizes them in. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
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

#define RPL_ERROR_MT "redpat.error"
/* Keys of the table every function has as upvalue 1 (kinds 1.. map to their metatables). */
#define RPL_UP_SIG 100
#define RPL_UP_OP 101
/* List items converted into a stack array before spilling into a userdata. */
#define RPL_POOL_ITEMS 16
/* Room for a list item's name in messages: "<arg name>[<index>]". */
#define RPL_NAME_CHARS 96

/* Lua users name arguments as the core does, in ms, and count list items from 1. */
static const rp_naming rpl_naming = { NULL, NULL, 0, 1 };

/* ---- Lua 5.1 (LuaJIT) / 5.4 differences */

static void push_i64(lua_State *L, int64_t v) {
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v); /* exact up to 2^53, where the core bounds integers */
#endif
}

/* 1: *out set; 0: a number, but not an integer int64 holds. */
static int to_i64(lua_State *L, int idx, int64_t *out) {
    lua_Number n;
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

static size_t rawlen(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 502
    return (size_t)lua_rawlen(L, idx);
#else
    return lua_objlen(L, idx);
#endif
}

/* Fields of the table on top. */
static void set_int(lua_State *L, const char *k, int64_t v) { push_i64(L, v); lua_setfield(L, -2, k); }
static void set_bool(lua_State *L, const char *k, int v) { lua_pushboolean(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *s) {
    if (s) { lua_pushstring(L, s); lua_setfield(L, -2, k); }
}

/* ---- error values: {name, message, code} (init.lua prints them as "name: message") */

static void push_error(lua_State *L, int code, const char *msg, size_t len) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, rp_status_name(code));
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, msg ? msg : "", msg ? len : 0);
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    luaL_setmetatable(L, RPL_ERROR_MT);
}

static int fail(lua_State *L, int code, const char *msg) {
    lua_pushnil(L);
    push_error(L, code ? code : RP_ESTATE, msg, strlen(msg));
    return 2;
}

static int fail_err(lua_State *L, const rp_error *e) { return fail(L, e->code, e->message); }

/* Raises an invalid_argument error value: what no correct program passes. */
static int raise_arg(lua_State *L, const char *fmt, ...) {
    char msg[RP_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    push_error(L, RP_EINVAL, msg, strlen(msg));
    return lua_error(L);
}

static int status_of(lua_State *L, int idx) {
    const char *name;
    int code;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx);
    name = luaL_checkstring(L, idx);
    for (code = RP_OK; strcmp(rp_status_name(code), "unknown") != 0; code--)
        if (strcmp(rp_status_name(code), name) == 0) return code;
    return luaL_argerror(L, idx, "unknown status name");
}

/* core.error(status, message) -> err */
static int l_new_error(lua_State *L) {
    size_t len;
    const char *msg = luaL_optlstring(L, 2, "", &len);
    push_error(L, status_of(L, 1), msg, len);
    return 1;
}

/* ---- handles */

typedef struct rpl_handle {
    void *h;                  /* the core's handle; NULL once freed */
    rp_kind kind;
    struct rpl_handle *owner; /* the handle this one was made from, or NULL */
    int owner_ref;            /* registry reference keeping the owner's userdata alive */
    unsigned borrowers;       /* handles and ops using this one */
    int closed;               /* closed or collected: freed once nothing borrows it */
} rpl_handle;

/* The handle at idx if it is one of kind (RP_KIND_NONE: any kind), else NULL. */
static rpl_handle *to_handle(lua_State *L, int idx, rp_kind kind) {
    rpl_handle *hd = NULL;
    if (!lua_getmetatable(L, idx)) return NULL;
    if (kind == RP_KIND_NONE) {
        lua_getfield(L, -1, "__kind");
        kind = (rp_kind)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_rawgeti(L, lua_upvalueindex(1), (int)kind);
    if (kind != RP_KIND_NONE && lua_rawequal(L, -1, -2)) hd = (rpl_handle *)lua_touserdata(L, idx);
    lua_pop(L, 2);
    return hd;
}

static rpl_handle *check_handle(lua_State *L, int idx, rp_kind kind) {
    rpl_handle *hd = to_handle(L, idx, kind);
    if (!hd) luaL_argerror(L, idx, "a redpat handle expected");
    return hd;
}

static rp_client *check_client(lua_State *L) {
    rpl_handle *hd = check_handle(L, 1, RP_KIND_CLIENT);
    if (!hd->h || hd->closed) luaL_error(L, "redpat: the client is closed");
    return (rp_client *)hd->h;
}

/* Replaces the handle hd (its userdata on top) with the client it was made from. */
static rpl_handle *climb(lua_State *L, rpl_handle *hd) {
    while (hd->owner) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, hd->owner_ref);
        lua_remove(L, -2);
        hd = hd->owner;
    }
    return hd;
}

static void free_now(lua_State *L, rpl_handle *hd);

static void unborrow(lua_State *L, rpl_handle *hd) {
    if (hd->borrowers > 0) hd->borrowers--;
    if (hd->borrowers == 0 && hd->closed) free_now(L, hd);
}

/* Frees the core's handle first, then lets go of its owner (a client outlives its locks). */
static void free_now(lua_State *L, rpl_handle *hd) {
    if (!hd->h) return;
    rp_handle_free(hd->kind, hd->h);
    hd->h = NULL;
    if (!hd->owner) return;
    unborrow(L, hd->owner);
    hd->owner = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, hd->owner_ref);
}

/* handle:close() (and __gc, __close): unusable from now on; the core's handle is freed at
 * once, or when the last op or handle borrowing it goes. */
static int l_handle_close(lua_State *L) {
    rpl_handle *hd = check_handle(L, 1, RP_KIND_NONE);
    hd->closed = 1;
    if (hd->borrowers == 0) free_now(L, hd);
    return 0;
}

static int l_handle_closed(lua_State *L) {
    rpl_handle *hd = check_handle(L, 1, RP_KIND_NONE);
    lua_pushboolean(L, !hd->h || hd->closed);
    return 1;
}

/* handle:client() -> the client it was made from (a client: itself) */
static int l_handle_client(lua_State *L) {
    lua_pushvalue(L, 1);
    climb(L, check_handle(L, 1, RP_KIND_NONE));
    return 1;
}

/* ---- the client's own API (no pattern in it), for init.lua and the cosocket driver */

static int l_client_namespace(lua_State *L) {
    lua_pushstring(L, rp_client_namespace(check_client(L)));
    return 1;
}

/* client:_endpoint() -> {unix = path | host, port; user, password, db} | nil, err */
static int l_client_endpoint(lua_State *L) {
    rp_endpoint ep;
    if (rp_client_endpoint(check_client(L), &ep) != RP_OK)
        return fail(L, RP_EINVAL, "the client was made without a url");
    lua_createtable(L, 0, 6);
    set_str(L, "unix", ep.is_unix ? ep.path : NULL);
    set_str(L, "host", ep.is_unix ? NULL : ep.host);
    if (!ep.is_unix) set_int(L, "port", ep.port);
    set_str(L, "user", ep.user);
    set_str(L, "password", ep.password);
    set_int(L, "db", ep.db);
    return 1;
}

/* ---- signatures: how a method's Lua arguments map to the descriptor's */

typedef struct rpl_sig {
    const rp_op_desc *d;
    int values;                          /* a record comes back as multiple values */
    int opts;                            /* an options table follows the positional ones */
    size_t npos;                         /* positional arguments after self */
    unsigned char pos[RP_DESC_ARGS_MAX]; /* their argument indexes */
    unsigned char is_pos[RP_DESC_ARGS_MAX];
} rpl_sig;

static int is_option(const rpl_sig *s, size_t i) {
    return !(s->d->args[i].flags & RP_ARG_SELF) && !s->is_pos[i];
}

/* core.sig(op name, {positional argument names} | nil, "values" | nil) -> sig */
static int l_sig(lua_State *L) {
    size_t len, i, n = lua_istable(L, 2) ? rawlen(L, 2) : 0;
    const char *name = luaL_checklstring(L, 1, &len);
    const rp_op_desc *d = rp_desc_find(name, len);
    rpl_sig *s;
    if (!d || d->nargs > RP_DESC_ARGS_MAX) return luaL_error(L, "redpat: no op called '%s'", name);
    s = (rpl_sig *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    s->d = d;
    s->values = lua_type(L, 3) == LUA_TSTRING && strcmp(lua_tostring(L, 3), "values") == 0;
    lua_rawgeti(L, lua_upvalueindex(1), RPL_UP_SIG);
    lua_setmetatable(L, -2);
    for (i = 0; i < n && i < RP_DESC_ARGS_MAX; i++) {
        int k;
        lua_rawgeti(L, 2, (int)i + 1);
        k = rp_desc_arg_index(d, luaL_checkstring(L, -1));
        if (k < 0 || (d->args[k].flags & RP_ARG_SELF))
            return luaL_error(L, "redpat: %s has no argument '%s'", name, lua_tostring(L, -1));
        lua_pop(L, 1);
        s->pos[s->npos++] = (unsigned char)k;
        s->is_pos[k] = 1;
    }
    for (i = 0; i < d->nargs; i++) s->opts |= is_option(s, i);
    return 1;
}

/* ---- converting arguments */

typedef struct rpl_conv {
    const rpl_sig *s;
    rp_value pool[RPL_POOL_ITEMS]; /* list items, until they spill into a userdata */
    size_t used;
    int store;  /* stack slot: nil, or a table anchoring spilled item arrays */
    int keep;   /* the op outlives the call: anchor the handles it borrows */
    int anchor; /* stack slot: nil, the handle the op borrows, or a table of them */
    rp_error err;
} rpl_conv;

static rp_value *items_for(lua_State *L, rpl_conv *c, size_t n) {
    rp_value *items;
    if (n <= RPL_POOL_ITEMS - c->used) {
        c->used += n;
        return c->pool + c->used - n;
    }
    items = (rp_value *)lua_newuserdata(L, n * sizeof *items);
    if (lua_isnil(L, c->store)) {
        lua_newtable(L);
        lua_replace(L, c->store);
    }
    lua_rawseti(L, c->store, (int)rawlen(L, c->store) + 1);
    return items;
}

/* What a value of type t is in Lua, for messages. */
static const char *lua_words(rp_type t) {
    static const char *const words[] = { "a value", "a string", "an integer",
        "an integer number of ms", "a number", "a boolean", "a string", "a handle",
        "a table (a list)" };
    return (size_t)t < sizeof words / sizeof words[0] ? words[t] : words[0];
}

/* Converts the Lua value at (absolute) idx to v for argument a; t is a->type, or a list's
 * item type. nil is an absent argument (the core's default) unless must (list items,
 * required positional arguments): then it is a wrong type. */
static int conv(lua_State *L, rpl_conv *c, int idx, const rp_arg_desc *a, rp_type t,
                const char *name, int must, rp_value *v) {
    int lt = lua_type(L, idx);
    memset(v, 0, sizeof *v);
    if (lt == LUA_TNIL && !must) return RP_OK;
    switch (t) {
    case RP_TYPE_BYTES:
    case RP_TYPE_ENUM: /* by name: the core parses it and names the choices */
        if (lt != LUA_TSTRING) break;
        v->type = RP_TYPE_BYTES;
        v->bytes = lua_tolstring(L, idx, &v->len);
        return RP_OK;
    case RP_TYPE_INT:
    case RP_TYPE_MS:
        if (lt != LUA_TNUMBER) break;
        v->type = t;
        if (t == RP_TYPE_MS && lua_tonumber(L, idx) == HUGE_VAL) {
            v->i = INT64_MAX; /* forever, where the argument allows it */
            return RP_OK;
        }
        if (to_i64(L, idx, &v->i)) return RP_OK;
        snprintf(c->err.message, sizeof c->err.message, "%s must be %s (got %.14g)", name,
                 lua_words(t), (double)lua_tonumber(L, idx));
        return c->err.code = RP_EINVAL;
    case RP_TYPE_FLOAT:
        if (lt != LUA_TNUMBER) break;
        *v = rp_value_float((double)lua_tonumber(L, idx));
        return RP_OK;
    case RP_TYPE_BOOL:
        if (lt != LUA_TBOOLEAN) break;
        *v = rp_value_int(RP_TYPE_BOOL, lua_toboolean(L, idx));
        return RP_OK;
    case RP_TYPE_HANDLE: {
        rpl_handle *hd = to_handle(L, idx, a->kind);
        if (!hd)
            return raise_arg(L, "%s must be a redpat %s (got %s)", name, rp_kind_name(a->kind),
                             luaL_typename(L, idx));
        if (!hd->h || hd->closed)
            return raise_arg(L, "%s: the %s handle is closed", name, rp_kind_name(a->kind));
        *v = rp_value_handle(a->kind, hd->h);
        if (c->keep) { /* the op borrows it: usually the only one, kept without a table */
            if (!lua_isnil(L, c->anchor) && !lua_istable(L, c->anchor)) {
                lua_createtable(L, 2, 0);
                lua_pushvalue(L, c->anchor);
                lua_rawseti(L, -2, 1);
                lua_replace(L, c->anchor);
            }
            lua_pushvalue(L, idx);
            if (lua_istable(L, c->anchor)) lua_rawseti(L, c->anchor, (int)rawlen(L, c->anchor) + 1);
            else lua_replace(L, c->anchor);
        }
        return RP_OK;
    }
    case RP_TYPE_LIST: {
        char item[RPL_NAME_CHARS];
        size_t i, n;
        rp_value *items;
        int rc = RP_OK;
        if (lt != LUA_TTABLE) break;
        n = rawlen(L, idx);
        items = items_for(L, c, n);
        for (i = 0; rc == RP_OK && i < n; i++) {
            snprintf(item, sizeof item, "%s[%zu]", name, i + 1);
            lua_rawgeti(L, idx, (int)i + 1);
            rc = conv(L, c, lua_gettop(L), a, a->item_type, item, 1, &items[i]);
            lua_pop(L, 1); /* the table keeps a string item alive */
        }
        *v = rp_value_list(items, n);
        return rc;
    }
    default:
        break;
    }
    return raise_arg(L, "%s must be %s (got %s)", name, lua_words(t), luaL_typename(L, idx));
}

/* An option name the op does not have: raises, naming the valid ones. */
static int unknown_option(lua_State *L, const rpl_sig *s, const char *key) {
    char msg[RP_ERROR_MESSAGE_MAX];
    size_t i, n = 0, used = (size_t)snprintf(msg, sizeof msg, "unknown option '%s' (valid: ", key);
    for (i = 0; i < s->d->nargs && used < sizeof msg; i++)
        if (is_option(s, i))
            used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s", n++ ? ", " : "",
                                     s->d->args[i].name);
    return raise_arg(L, "%s)", msg);
}

/* The options table at idx: each key one of the op's options, each value converted. */
static int conv_opts(lua_State *L, rpl_conv *c, int idx, rp_value *args) {
    const rp_op_desc *d = c->s->d;
    int rc;
    if (lua_type(L, idx) != LUA_TTABLE)
        return raise_arg(L, "%s: options must be a table (got %s)", d->name, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        size_t i;
        if (!key) return raise_arg(L, "%s: option names must be strings", d->name);
        for (i = 0; i < d->nargs; i++)
            if (is_option(c->s, i) && strcmp(d->args[i].name, key) == 0) break;
        if (i == d->nargs) return unknown_option(L, c->s, key);
        if ((rc = conv(L, c, lua_gettop(L), &d->args[i], d->args[i].type, key, 0, &args[i])))
            return rc;
        lua_pop(L, 1);
    }
    return RP_OK;
}

/* The client whose connection runs the op: its self argument's (at idx; a list: its first
 * item's), or NULL. */
static rp_client *client_of(lua_State *L, const rp_op_desc *d, int idx) {
    const rp_arg_desc *a = d->nargs ? &d->args[0] : NULL;
    rpl_handle *hd = NULL;
    if (!a || !(a->flags & RP_ARG_SELF) || (a->type == RP_TYPE_LIST && !lua_istable(L, idx)))
        return NULL;
    if (a->type == RP_TYPE_LIST) lua_rawgeti(L, idx, 1);
    else lua_pushvalue(L, idx);
    hd = to_handle(L, lua_gettop(L), a->kind);
    lua_pop(L, 1);
    return hd && hd->h ? rp_handle_client(hd->kind, hd->h) : NULL;
}

/* ---- results */

static void push_reply(lua_State *L, const rp_reply *r) {
    size_t i;
    luaL_checkstack(L, 4, "redpat: reply nested too deeply");
    switch (r->type) {
    case RP_REPLY_STRING:
    case RP_REPLY_STATUS:
    case RP_REPLY_DOUBLE: lua_pushlstring(L, r->str, r->len); break;
    case RP_REPLY_INTEGER: push_i64(L, (int64_t)r->integer); break;
    case RP_REPLY_BOOL: lua_pushboolean(L, r->integer != 0); break;
    case RP_REPLY_ERROR: push_error(L, RP_EREPLY, r->str, r->len); break;
    case RP_REPLY_ARRAY:
        lua_createtable(L, r->elements > INT32_MAX ? 0 : (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i]);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    default: lua_pushlightuserdata(L, NULL); break; /* redpat.null (== cjson.null, ngx.null) */
    }
}

static void push_value(lua_State *L, const rp_value *v) {
    size_t i;
    switch (v->type) {
    case RP_TYPE_BYTES:
    case RP_TYPE_ENUM: lua_pushlstring(L, v->bytes ? v->bytes : "", v->len); break;
    case RP_TYPE_INT:
    case RP_TYPE_MS: push_i64(L, v->i); break;
    case RP_TYPE_FLOAT: lua_pushnumber(L, (lua_Number)v->f); break;
    case RP_TYPE_BOOL: lua_pushboolean(L, v->i != 0); break;
    case RP_TYPE_STATUS: /* nil when ok, else an error value */
        if (v->i == RP_OK) lua_pushnil(L);
        else push_error(L, (int)v->i, v->bytes, v->len);
        break;
    case RP_TYPE_REPLY:
        if (v->reply) push_reply(L, v->reply);
        else lua_pushnil(L);
        break;
    case RP_TYPE_LIST:
        lua_createtable(L, v->count > INT32_MAX ? 0 : (int)v->count, 0);
        for (i = 0; i < v->count; i++) {
            push_value(L, &v->items[i]);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    default: lua_pushnil(L); break; /* no value */
    }
}

/* A record: its fields as values (in the descriptor's order), or one table by name. */
static int push_record(lua_State *L, const rp_op_desc *d, const rp_value *f, int values) {
    size_t i;
    luaL_checkstack(L, (int)d->nfields + 4, NULL);
    if (!values) lua_createtable(L, 0, (int)d->nfields);
    for (i = 0; i < d->nfields; i++) {
        push_value(L, &f[i]);
        if (!values) lua_setfield(L, -2, d->fields[i].name);
    }
    return values ? (int)d->nfields : 1;
}

/* A DONE op's result: true (no result), a record, or a list of records (tables). */
static int push_result(lua_State *L, const rp_op *op, const rp_op_desc *d, int values) {
    rp_value f[RP_DESC_FIELDS_MAX];
    size_t i, n = rp_op_result_count(op);
    if (!rp_op_done(op)) return fail(L, RP_ESTATE, "the op is not done");
    if (d->shape == RP_RESULT_NONE) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (d->shape == RP_RESULT_RECORD)
        return n == 1 && rp_op_result(op, 0, f) == RP_OK ? push_record(L, d, f, values)
                                                         : fail(L, RP_ESTATE, "no result");
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (i = 0; i < n; i++) {
        if (rp_op_result(op, i, f) != RP_OK) return fail(L, RP_ESTATE, "no such record");
        push_record(L, d, f, 0);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

/* ---- ops */

typedef struct rpl_op {
    rp_op *op;
    const rp_op_desc *d;
    int values;
    int anchor;         /* registry ref: the handle it borrows, or a table of them */
    rp_client *client;  /* whose connection runs it (op:_run) */
} rpl_op;

/* The op at idx (live: not yet freed, else raises). */
static rpl_op *to_op(lua_State *L, int idx, int live) {
    rpl_op *o = NULL;
    if (lua_getmetatable(L, idx)) {
        lua_rawgeti(L, lua_upvalueindex(1), RPL_UP_OP);
        if (lua_rawequal(L, -1, -2)) o = (rpl_op *)lua_touserdata(L, idx);
        lua_pop(L, 2);
    }
    if (!o) luaL_argerror(L, idx, "a redpat op expected");
    if (live && !o->op) luaL_error(L, "redpat: the op is freed");
    return o;
}

#define check_op(L, idx) (to_op(L, idx, 1)->op)

/* Counts an op in (1) or out (-1) as a borrower of the handle at idx, or of each handle
 * in the table at idx. */
static void borrow_all(lua_State *L, int idx, int delta) {
    size_t i, n = lua_istable(L, idx) ? rawlen(L, idx) : 1;
    for (i = 1; i <= n; i++) {
        rpl_handle *hd;
        if (lua_istable(L, idx)) lua_rawgeti(L, idx, (int)i);
        else lua_pushvalue(L, idx);
        hd = (rpl_handle *)lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (delta > 0) hd->borrowers++;
        else unborrow(L, hd);
    }
}

/* Frees the op, then lets go of the handles it borrowed. */
static void op_release(lua_State *L, rpl_op *o) {
    rp_op_free(o->op);
    o->op = NULL;
    if (o->anchor == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, o->anchor);
    borrow_all(L, lua_gettop(L), -1);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, o->anchor);
    o->anchor = LUA_NOREF;
}

static int state_error(rp_error *e, const rp_op_desc *d, const char *why) {
    snprintf(e->message, sizeof e->message, "%s %s", d->name, why);
    return e->code = RP_ESTATE;
}

/* Runs op to its end in this call and pushes its result (or nil, err); frees the op. */
static int run_now(lua_State *L, rp_op *op, const rp_op_desc *d, rp_client *client, int values,
                   rp_error *err) {
    int rc, n;
    if (!d->io) { /* answered from the handle: DONE at its first step, no connection needed */
        rp_step st = rp_op_step(op, rp_monotonic_ms());
        if (st == RP_STEP_ERROR) *err = *rp_op_error(op);
        rc = st == RP_STEP_ERROR ? err->code
           : st != RP_STEP_DONE  ? state_error(err, d, "asked for I/O") : RP_OK;
    } else {
        rc = client ? rp_client_run(client, op, err) : state_error(err, d, "has no client to run on");
    }
    /* should pushing the result raise (memory exhausted), the op would leak */
    n = rc == RP_OK ? push_result(L, op, d, values) : fail_err(L, err);
    rp_op_free(op);
    return n;
}

/* The common body of core.call and core.begin. */
static int invoke(lua_State *L, int begin_only) {
    rpl_sig *s = (rpl_sig *)lua_touserdata(L, 1);
    const rp_op_desc *d;
    rp_value args[RP_DESC_ARGS_MAX];
    rpl_conv c;
    rp_client *client;
    rp_op *op = NULL;
    size_t i;
    int rc = RP_OK, self = 0, slot;

    if (!s || !lua_getmetatable(L, 1)) return luaL_argerror(L, 1, "a redpat sig expected");
    lua_rawgeti(L, lua_upvalueindex(1), RPL_UP_SIG);
    if (!lua_rawequal(L, -1, -2)) return luaL_argerror(L, 1, "a redpat sig expected");
    lua_pop(L, 2);
    d = s->d;
    lua_settop(L, 2 + (int)s->npos + s->opts); /* sig, self, positional, options */
    slot = lua_gettop(L);
    lua_pushnil(L); /* slot + 1: spilled list items */
    lua_pushnil(L); /* slot + 2: the handles a begun op borrows */
    client = client_of(L, d, 2);
    memset(args, 0, sizeof args);
    memset(&c.err, 0, sizeof c.err);
    c.s = s;
    c.used = 0;
    c.store = slot + 1;
    c.anchor = slot + 2;
    c.keep = begin_only && d->makes == RP_KIND_NONE;
    if (d->nargs && (d->args[0].flags & RP_ARG_SELF)) {
        if (lua_isnil(L, 2)) return raise_arg(L, "%s: %s is required (got nil)", d->name, d->args[0].name);
        rc = conv(L, &c, 2, &d->args[0], d->args[0].type, d->args[0].name, 0, &args[0]);
        self = d->args[0].type == RP_TYPE_HANDLE;
    }
    for (i = 0; rc == RP_OK && i < s->npos; i++) {
        const rp_arg_desc *a = &d->args[s->pos[i]];
        /* a required positional left out is a wrong call, as in the standard library */
        rc = conv(L, &c, 3 + (int)i, a, a->type, a->name, (a->flags & RP_ARG_REQUIRED) != 0,
                  &args[s->pos[i]]);
    }
    if (rc == RP_OK && s->opts && !lua_isnil(L, slot)) rc = conv_opts(L, &c, slot, args);
    if (rc != RP_OK) return fail_err(L, &c.err);

    if (d->makes != RP_KIND_NONE) {
        rpl_handle *hd = (rpl_handle *)lua_newuserdata(L, sizeof *hd);
        memset(hd, 0, sizeof *hd);
        hd->kind = d->makes;
        hd->owner_ref = LUA_NOREF;
        lua_rawgeti(L, lua_upvalueindex(1), (int)d->makes);
        lua_setmetatable(L, -2);
        if (rp_desc_make(&hd->h, d, args, &rpl_naming, &c.err) != RP_OK) return fail_err(L, &c.err);
        if (self) { /* the made handle borrows the one it was made from */
            hd->owner = to_handle(L, 2, d->args[0].kind);
            hd->owner->borrowers++;
            lua_pushvalue(L, 2);
            hd->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        return 1;
    }
    if (rp_desc_begin(&op, d, args, &rpl_naming, &c.err) != RP_OK) return fail_err(L, &c.err);
    if (!c.keep) /* blocking, in this call: no userdata, nothing left for the collector */
        return run_now(L, op, d, client, s->values, &c.err);
    { /* the op outlives this call: it borrows its handles */
        rpl_op *o = (rpl_op *)lua_newuserdata(L, sizeof *o);
        o->op = op;
        o->d = d;
        o->values = s->values;
        o->client = client;
        o->anchor = LUA_NOREF;
        lua_rawgeti(L, lua_upvalueindex(1), RPL_UP_OP);
        lua_setmetatable(L, -2);
        if (!lua_isnil(L, c.anchor)) {
            borrow_all(L, c.anchor, 1);
            lua_pushvalue(L, c.anchor);
            o->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
        }
    }
    return 1;
}

static int l_call(lua_State *L) { return invoke(L, 0); }
static int l_begin(lua_State *L) { return invoke(L, 1); }

/* op:step([now_ms]) -> IO | SLEEP | DONE | ERROR; on IO of a one-node op also the request
 * for node 1 (false: none this round). */
static int l_op_step(lua_State *L) {
    rp_op *op = check_op(L, 1);
    int64_t now = 0;
    rp_step st;
    if (!lua_isnoneornil(L, 2) && (lua_type(L, 2) != LUA_TNUMBER || !to_i64(L, 2, &now) || now < 0))
        return luaL_argerror(L, 2, "milliseconds expected");
    st = rp_op_step(op, lua_isnoneornil(L, 2) ? rp_monotonic_ms() : (uint64_t)now);
    lua_pushinteger(L, (lua_Integer)st);
    if (st == RP_STEP_IO && rp_op_nodes(op) == 1) {
        const char *bytes = NULL;
        size_t len = 0;
        if (rp_op_request(op, 0, &bytes, &len) == RP_OK && len > 0) lua_pushlstring(L, bytes, len);
        else lua_pushboolean(L, 0);
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
    const char *bytes = NULL;
    size_t len = 0;
    int rc = rp_op_request(check_op(L, 1), check_node(L, 2), &bytes, &len);
    if (rc != RP_OK) return fail(L, rc, "no request for this node now");
    if (len) lua_pushlstring(L, bytes, len);
    else lua_pushboolean(L, 0);
    return 1;
}

/* op:feed(node, bytes) -> true (all replies in) | false (more needed) | nil, err */
static int l_op_feed(lua_State *L) {
    size_t len;
    const char *buf = luaL_checklstring(L, 3, &len);
    int rc = rp_op_feed(check_op(L, 1), check_node(L, 2), buf, len);
    if (rc != RP_OK && rc != RP_MORE) return fail(L, rc, "the reply could not be parsed");
    lua_pushboolean(L, rc == RP_OK);
    return 1;
}

/* op:fail_node(node, status (name or code), why) */
static int l_op_fail_node(lua_State *L) {
    rp_op_fail_node(check_op(L, 1), check_node(L, 2), status_of(L, 3), luaL_optstring(L, 4, NULL));
    return 0;
}

static int l_op_sleep_ms(lua_State *L) {
    push_i64(L, (int64_t)rp_op_sleep_ms(check_op(L, 1)));
    return 1;
}

/* op:error() -> err (after ERROR) */
static int l_op_error(lua_State *L) {
    const rp_error *e = rp_op_error(check_op(L, 1));
    const char *msg = e && e->code ? e->message : "the op has not failed";
    push_error(L, e && e->code ? e->code : RP_ESTATE, msg, strlen(msg));
    return 1;
}

/* op:result() after DONE: what the method that began it returns */
static int l_op_result(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1);
    return push_result(L, o->op, o->d, o->values);
}

/* op:finish() -> as op:result(), and frees the op */
static int l_op_finish(lua_State *L) {
    int n = l_op_result(L);
    op_release(L, to_op(L, 1, 0));
    return n;
}

/* op:_run() -> as op:result() | nil, err: blocking, over the connection of the client the
 * op's handles were made from; frees the op */
static int l_op_run(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1);
    rp_error e;
    int n;
    rp_error_clear(&e);
    n = run_now(L, o->op, o->d, o->client, o->values, &e);
    o->op = NULL; /* run_now freed it */
    op_release(L, o);
    return n;
}

static int l_op_free(lua_State *L) {
    op_release(L, to_op(L, 1, 0));
    return 0;
}

/* ---- the descriptor table, for init.lua's methods and generic runners */

static void push_desc(lua_State *L, const rp_op_desc *d) {
    static const char *const shapes[] = { "none", "record", "list" };
    size_t i, k;
    lua_createtable(L, 0, 12);
    set_str(L, "name", d->name);
    set_str(L, "verb", d->verb);
    set_str(L, "doc", d->doc);
    set_str(L, "kind", d->kind ? rp_kind_name(d->kind) : NULL);
    set_str(L, "makes", d->makes ? rp_kind_name(d->makes) : NULL);
    set_str(L, "shape", shapes[d->shape <= RP_RESULT_LIST ? d->shape : 0]);
    set_bool(L, "io", d->io);
    lua_createtable(L, (int)d->nargs, 0); /* args, in order (init.lua adds "arg", by name) */
    for (i = 0; i < d->nargs; i++) {
        const rp_arg_desc *a = &d->args[i];
        lua_createtable(L, 0, 12);
        set_str(L, "name", a->name);
        set_str(L, "type", rp_type_name(a->type));
        set_str(L, "doc", a->doc);
        set_str(L, "item", a->type == RP_TYPE_LIST ? rp_type_name(a->item_type) : NULL);
        set_str(L, "kind", a->kind ? rp_kind_name(a->kind) : NULL);
        set_bool(L, "required", (a->flags & RP_ARG_REQUIRED) != 0);
        set_bool(L, "self", (a->flags & RP_ARG_SELF) != 0);
        set_int(L, "min", a->min);
        set_int(L, "max", a->max);
        if (a->type == RP_TYPE_INT || a->type == RP_TYPE_MS) set_int(L, "default", a->def);
        if (a->type == RP_TYPE_BOOL) set_bool(L, "default", a->def != 0);
        if (a->type == RP_TYPE_ENUM && a->choices) set_str(L, "default", a->choices[a->def]);
        if (a->choices) {
            lua_newtable(L);
            for (k = 0; a->choices[k]; k++) {
                lua_pushstring(L, a->choices[k]);
                lua_rawseti(L, -2, (int)k + 1);
            }
            lua_setfield(L, -2, "choices");
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "args");
    lua_createtable(L, (int)d->nfields, 0); /* fields, in order (init.lua: "field") */
    for (i = 0; i < d->nfields; i++) {
        lua_createtable(L, 0, 3);
        set_str(L, "name", d->fields[i].name);
        set_str(L, "type", rp_type_name(d->fields[i].type));
        set_str(L, "doc", d->fields[i].doc);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "fields");
}

/* ---- small helpers for tests and benchmarks */

static int l_clock_us(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e6 + (lua_Number)ts.tv_nsec / 1e3);
    return 1;
}

/* core.sleep_ms(ms): a blocking sleep, for plain Lua (never inside nginx) */
static int l_sleep_ms(lua_State *L) {
    int64_t ms = 0;
    struct timespec ts;
    if (lua_type(L, 1) != LUA_TNUMBER || !to_i64(L, 1, &ms) || ms < 0)
        return luaL_argerror(L, 1, "milliseconds expected");
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
    return 0;
}

/* ---- registration */

/* A metatable called name, methods in its __index, gc its __gc (and __close on 5.4); every
 * function has the shared table (at ups) as upvalue 1. */
static void new_mt(lua_State *L, int ups, const char *name, const luaL_Reg *methods,
                   lua_CFunction gc) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushvalue(L, ups);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    set_str(L, "__name", name);
    if (!gc) return;
    lua_pushvalue(L, ups);
    lua_pushcclosure(L, gc, 1);
#if LUA_VERSION_NUM >= 504
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__close");
#endif
    lua_setfield(L, -2, "__gc");
}

RPL_EXPORT int luaopen_redpat_core(lua_State *L) {
    static const luaL_Reg none[] = { { NULL, NULL } };
    static const luaL_Reg handle_methods[] = {
        { "close", l_handle_close }, { "_closed", l_handle_closed },
        { "client", l_handle_client }, { NULL, NULL } };
    static const luaL_Reg client_methods[] = {
        { "namespace", l_client_namespace },
        { "_endpoint", l_client_endpoint }, { NULL, NULL } };
    static const luaL_Reg op_methods[] = {
        { "step", l_op_step }, { "request", l_op_request }, { "feed", l_op_feed },
        { "fail_node", l_op_fail_node }, { "sleep_ms", l_op_sleep_ms },
        { "error", l_op_error }, { "result", l_op_result }, { "finish", l_op_finish },
        { "_run", l_op_run }, { "free", l_op_free }, { NULL, NULL } };
    static const luaL_Reg funcs[] = {
        { "sig", l_sig }, { "call", l_call }, { "begin", l_begin }, { "error", l_new_error },
        { "clock_us", l_clock_us },
        { "sleep_ms", l_sleep_ms }, { NULL, NULL } };
    static const struct { const char *name; int step; } steps[] = {
        { "IO", RP_STEP_IO }, { "SLEEP", RP_STEP_SLEEP }, { "DONE", RP_STEP_DONE },
        { "ERROR", RP_STEP_ERROR } };
    size_t i, n = rp_desc_count();
    int ups, mts, k;

    lua_newtable(L); /* upvalue 1 of everything: kind -> metatable, RPL_UP_* -> sig, op */
    ups = lua_gettop(L);
    lua_newtable(L);
    lua_pushvalue(L, ups);
    luaL_setfuncs(L, funcs, 1);
    lua_newtable(L); /* core.metatables */
    mts = lua_gettop(L);
    new_mt(L, ups, "redpat.sig", none, NULL);
    lua_rawseti(L, ups, RPL_UP_SIG);
    new_mt(L, ups, "redpat.op", op_methods, l_op_free);
    lua_pushvalue(L, -1);
    lua_rawseti(L, ups, RPL_UP_OP);
    lua_setfield(L, mts, "op");
    for (k = RP_KIND_CLIENT; strcmp(rp_kind_name((rp_kind)k), "unknown") != 0; k++) {
        char name[RPL_NAME_CHARS]; /* a metatable per kind of handle, all one userdata type */
        snprintf(name, sizeof name, "redpat.%s", rp_kind_name((rp_kind)k));
        new_mt(L, ups, name, handle_methods, l_handle_close);
        set_int(L, "__kind", k);
        if (k == RP_KIND_CLIENT) {
            lua_getfield(L, -1, "__index");
            lua_pushvalue(L, ups);
            luaL_setfuncs(L, client_methods, 1);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, ups, k);
        lua_setfield(L, mts, rp_kind_name((rp_kind)k));
    }
    luaL_newmetatable(L, RPL_ERROR_MT); /* init.lua gives it __tostring and __concat */
    lua_setfield(L, mts, "error");
    lua_setfield(L, -2, "metatables");

    lua_createtable(L, (int)n, 0); /* core.descriptors, in order (init.lua: by name) */
    for (i = 0; i < n; i++) {
        push_desc(L, rp_desc_at(i));
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "descriptors");
    for (i = 0; i < sizeof steps / sizeof steps[0]; i++) set_int(L, steps[i].name, steps[i].step);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    set_str(L, "version", RP_VERSION);
    return 1;
}
