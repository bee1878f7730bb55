/* redpat.core — the Lua C glue, for Lua 5.4 and LuaJIT 2.1: ONE generic marshaller over the
 * core's op descriptors (describe.h); it knows no pattern. init.lua makes the methods from
 * core.descriptors and passes every argument in the descriptor's order (nil: absent):
 *   core.call(op, values, arg1, ..., argN) -> result | nil, err, detail: runs the op to its
 *     end over the core's own (blocking) connection. op: the descriptor's index in
 *     core.descriptors; values: a record comes back as multiple values, else as a table.
 *   core.begin(op, values, arg1, ..., argN) -> op | nil, err, detail: for a driver.
 *   core.pump(client, op, ms) -> message | nil, err, detail: a long-lived op's next message
 *     over client's own connections (plain Lua; nil, "timeout" when none came in ms).
 * A CALLBACK argument is a Lua function. core.call (and op:_run) run such ops with the
 * blocking driver (rp_client_drive): its call hook runs the function with lua_pcall in the
 * calling thread, the only one that touches the lua_State (the driver's helper thread only
 * steps the op's renewals); the core gets the function's first result when a string, and
 * its error's text when it raises. A driver of its own (cosocket.lua) gets the function from
 * op:step() (CALL) and answers with op:resume().
 * Arguments: bytes are Lua strings (binary-safe), INT / MS integers (math.huge: forever, for
 * MS), BOOL booleans, ENUM names, handles their userdata, lists tables. A wrong Lua type
 * raises a string naming the argument; a non-integral number and what the core refuses
 * (a required argument left out too) are nil, err, detail in the core's words (its names,
 * ms, list items counted from 1): err is the status name ("timeout"), detail a table
 * {name, message, code} that init.lua prints as "name: message".
 * Lifetimes: one userdata type wraps every handle (rp_kind, void *). A handle references the
 * handle it was made from (a lock keeps its client alive), an op the handles it borrows,
 * each counted as a borrower: close() or the collector frees the core's handle once nothing
 * borrows it, whatever order Lua finalizes them in. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "redpat/redpat.h"

#if defined(__GNUC__)
#define RPL_EXPORT __attribute__((visibility("default")))
#else
#define RPL_EXPORT
#endif

#define RPL_DETAIL_MT "redpat.error"
#define RPL_OP_MT "redpat.op"
/* The stack slot of an op's first argument in core.call / core.begin (after op, values). */
#define RPL_ARG1 3
/* Room for a list item's name in messages: "<arg name>[<index>]". */
#define RPL_NAME_CHARS 96
/* The most values a CALL hands its callback (none so far: rp_op_call says how many). */
#define RPL_CALL_VALUES_MAX 4

/* Lua users name arguments as the core does, in ms, and count list items from 1. */
static const rp_naming rpl_naming = { NULL, NULL, 0, 1 };

/* ---- Lua 5.1 (LuaJIT) / 5.4 differences */

#if LUA_VERSION_NUM >= 503
#define push_i64(L, v) lua_pushinteger(L, (lua_Integer)(v))
#else
#define push_i64(L, v) lua_pushnumber(L, (lua_Number)(v)) /* exact up to 2^53: the core's bounds */
#endif
#if LUA_VERSION_NUM < 502
#define lua_rawlen lua_objlen
#endif

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

/* Fields of the table on top. */
static void set_int(lua_State *L, const char *k, int64_t v) { push_i64(L, v); lua_setfield(L, -2, k); }
static void set_bool(lua_State *L, const char *k, int v) { lua_pushboolean(L, v); lua_setfield(L, -2, k); }
static void set_str(lua_State *L, const char *k, const char *s) {
    if (s) { lua_pushstring(L, s); lua_setfield(L, -2, k); }
}

/* ---- errors */

/* Raises a string for a wrong call, without a position (the caller's frame is one of
 * init.lua's wrappers, not the user's code). */
#define rpl_raise(L, ...) (lua_pushfstring(L, __VA_ARGS__), lua_error(L))

/* An error's details: {name = <status name>, message =, code = <rp_status>}. */
static void push_detail(lua_State *L, int code, const char *msg, size_t len) {
    lua_createtable(L, 0, 3);
    set_str(L, "name", rp_status_name(code));
    lua_pushlstring(L, msg ? msg : "", msg ? len : 0);
    lua_setfield(L, -2, "message");
    set_int(L, "code", code);
    luaL_setmetatable(L, RPL_DETAIL_MT);
}

/* An expected failure, as lua-resty-* libraries return one: nil, err (the status name, a
 * plain string, so that err == "timeout" works), detail. */
static int fail(lua_State *L, int code, const char *msg) {
    if (!code) code = RP_ESTATE;
    lua_pushnil(L);
    lua_pushstring(L, rp_status_name(code));
    push_detail(L, code, msg, strlen(msg));
    return 3;
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

/* ---- converting arguments */

typedef struct rpl_conv {
    int anchor; /* stack slot of the handles a begun op borrows (nil, one, or a table), or 0 */
    rp_error err;
} rpl_conv;

/* What a value of each argument type (RP_TYPE_NONE..RP_TYPE_LIST) is in Lua, for messages. */
static const char *const lua_words[] = { "a value", "a string", "an integer",
    "an integer number of ms", "a number", "a boolean", "a string", "a handle", "a table",
    "a value", "a value", "a function" };

/* Converts the Lua value at (absolute) idx to v for argument a; t is a->type, or a list's
 * item type. nil is an absent argument (the core's default, or its "is required") unless
 * item (a list's): then it is a wrong type. Values borrowed from Lua stay on the stack (or
 * in the list they came from) until the call returns. */
static int conv(lua_State *L, rpl_conv *c, int idx, const rp_arg_desc *a, rp_type t,
                const char *name, int item, rp_value *v) {
    int lt = lua_type(L, idx);
    memset(v, 0, sizeof *v);
    if (lt == LUA_TNIL && !item) return RP_OK;
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
                 lua_words[t], (double)lua_tonumber(L, idx));
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
            return rpl_raise(L, "%s must be a redpat %s (got %s)", name, rp_kind_name(a->kind),
                             luaL_typename(L, idx));
        if (!hd->h || hd->closed)
            return rpl_raise(L, "%s: the %s handle is closed", name, rp_kind_name(a->kind));
        *v = rp_value_handle(a->kind, hd->h);
        if (c->anchor) { /* a begun op borrows it: usually the only one, kept without a table */
            if (!lua_isnil(L, c->anchor) && !lua_istable(L, c->anchor)) {
                lua_createtable(L, 2, 0);
                lua_pushvalue(L, c->anchor);
                lua_rawseti(L, -2, 1);
                lua_replace(L, c->anchor);
            }
            lua_pushvalue(L, idx);
            if (lua_istable(L, c->anchor))
                lua_rawseti(L, c->anchor, (int)lua_rawlen(L, c->anchor) + 1);
            else lua_replace(L, c->anchor);
        }
        return RP_OK;
    }
    case RP_TYPE_LIST: {
        char item_name[RPL_NAME_CHARS];
        size_t i, n;
        rp_value *items;
        int rc = RP_OK;
        if (lt != LUA_TTABLE) break;
        n = (size_t)lua_rawlen(L, idx);
        luaL_checkstack(L, 4, NULL);
        items = (rp_value *)lua_newuserdata(L, n * sizeof *items); /* stays on the stack */
        for (i = 0; rc == RP_OK && i < n; i++) {
            snprintf(item_name, sizeof item_name, "%s[%zu]", name, i + 1);
            lua_rawgeti(L, idx, (int)i + 1);
            rc = conv(L, c, lua_gettop(L), a, a->item_type, item_name, 1, &items[i]);
            lua_pop(L, 1); /* the list keeps a string item alive */
        }
        *v = rp_value_list(items, n);
        return rc;
    }
    case RP_TYPE_CALLBACK: /* invoke keeps the function where the CALL hook finds it */
        if (lt != LUA_TFUNCTION) break;
        v->type = RP_TYPE_CALLBACK;
        return RP_OK;
    default:
        break;
    }
    return rpl_raise(L, "%s must be %s (got %s)", name, lua_words[t <= RP_TYPE_CALLBACK ? t : 0],
                     luaL_typename(L, idx));
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
    case RP_REPLY_ERROR: push_detail(L, rp_reply_error_status(r), r->str, r->len); break;
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
    case RP_TYPE_STATUS: /* nil when ok, else its detail */
        if (v->i == RP_OK) lua_pushnil(L);
        else push_detail(L, (int)v->i, v->bytes, v->len);
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

/* The message of an op that has just EMITted, as a table by the descriptor's message fields
 * (absent fields are nil; enums by name). */
static int push_message(lua_State *L, const rp_op *op, const rp_op_desc *d) {
    rp_value f[RP_DESC_FIELDS_MAX];
    size_t i;
    if (!d || d->nmessage_fields > RP_DESC_FIELDS_MAX || rp_op_message(op, f) != RP_OK)
        return fail(L, RP_ESTATE, "no message to read");
    lua_createtable(L, 0, (int)d->nmessage_fields);
    for (i = 0; i < d->nmessage_fields; i++) {
        push_value(L, &f[i]);
        lua_setfield(L, -2, d->message_fields[i].name);
    }
    return 1;
}

/* A DONE op's result: true (no result), a record, or a list of records (tables). */
static int push_result(lua_State *L, const rp_op *op, const rp_op_desc *d, int values) {
    rp_value f[RP_DESC_FIELDS_MAX];
    size_t i, n = rp_op_result_count(op);
    if (d->shape == RP_RESULT_NONE) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (d->shape == RP_RESULT_LIST) lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (i = 0; i < n; i++) {
        if (rp_op_result(op, i, f) != RP_OK) return fail(L, RP_ESTATE, "no such record");
        if (d->shape == RP_RESULT_RECORD) return push_record(L, d, f, values);
        push_record(L, d, f, 0);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return d->shape == RP_RESULT_LIST ? 1 : fail(L, RP_ESTATE, "no result");
}

/* ---- ops */

typedef struct rpl_op {
    rp_op *op;
    const rp_op_desc *d;
    int values;
    int anchor;         /* registry ref: the handle it borrows, or a table of them */
    int fns;            /* registry ref: its callbacks by argument index (from 1), or none */
    rp_client *client;  /* whose connection runs it (op:_run) */
} rpl_op;

/* The op at idx (live: not yet freed, else raises). */
static rpl_op *to_op(lua_State *L, int idx, int live) {
    rpl_op *o = (rpl_op *)luaL_checkudata(L, idx, RPL_OP_MT);
    if (live && !o->op) rpl_raise(L, "redpat: the op is freed");
    return o;
}

#define check_op(L, idx) (to_op(L, idx, 1)->op)

/* Counts an op in (1) or out (-1) as a borrower of the handle at idx, or of each handle in
 * the table at idx. */
static void borrow_all(lua_State *L, int idx, int delta) {
    size_t i, n = lua_istable(L, idx) ? (size_t)lua_rawlen(L, idx) : 1;
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
    if (o->anchor != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->anchor);
        borrow_all(L, lua_gettop(L), -1);
        lua_pop(L, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, o->anchor);
    o->anchor = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, o->fns);
    o->fns = LUA_NOREF;
}

/* The client whose connection runs a begun op: its self argument's (a list: its first
 * item's), or NULL. */
static rp_client *client_of(const rp_value *self) {
    if (self->type == RP_TYPE_LIST && self->count > 0) self = &self->items[0];
    return self->type == RP_TYPE_HANDLE ? rp_handle_client(self->kind, self->handle) : NULL;
}

/* The blocking driver's CALL hook: runs callback arg (from the table at stack slot fns) in
 * this, the calling, thread, protected; what it returned or raised stays in the table at
 * keep until the next call (the driver copies it at once). */
typedef struct rpl_call {
    lua_State *L;
    int fns, keep;
} rpl_call;

static void call_hook(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                      rp_value *result) {
    rpl_call *c = (rpl_call *)ud;
    lua_State *L = c->L;
    size_t i;
    (void)op;
    memset(result, 0, sizeof *result);
    lua_rawgeti(L, c->fns, (int)arg + 1);
    for (i = 0; i < count; i++) push_value(L, &values[i]);
    if (lua_pcall(L, (int)count, 1, 0) != 0) {
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
            lua_getglobal(L, "tostring"); /* an error object: its __tostring, if any */
            lua_insert(L, -2);
            if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
                lua_pop(L, 1);
                lua_pushliteral(L, "the callback raised a non-string error");
            }
        }
        result->type = RP_TYPE_STATUS;
        result->i = RP_ECALLBACK;
        result->bytes = lua_tolstring(L, -1, &result->len);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        result->type = RP_TYPE_BYTES;
        result->bytes = lua_tolstring(L, -1, &result->len);
    }
    lua_rawseti(L, c->keep, 1);
}

/* Runs op to its end in this call and pushes its result (or nil, err, detail); frees it.
 * fns: the stack slot of the op's callbacks (run through the CALL hook), or 0. */
static int run_now(lua_State *L, rp_op *op, const rp_op_desc *d, rp_client *client, int values,
                   int fns) {
    rp_error err;
    int rc = RP_ESTATE, n; /* unless the op runs: why it cannot */
    snprintf(err.message, sizeof err.message, "%s %s", d->name,
             d->io ? "has no client to run on" : "asked for I/O");
    if (d->io && client && fns) {
        rpl_call c;
        rp_drive_hooks hooks = { NULL, call_hook, NULL };
        lua_newtable(L);
        c.L = L, c.fns = fns, c.keep = lua_gettop(L);
        hooks.ud = &c;
        rc = rp_client_drive(client, op, &hooks, &err);
    } else if (d->io && client) {
        rc = rp_client_run(client, op, &err);
    } else if (!d->io) { /* answered from the handle: DONE at its first step, no connection */
        rp_step st = rp_op_step(op, rp_monotonic_ms());
        if (st == RP_STEP_DONE) rc = RP_OK;
        else if (st == RP_STEP_ERROR) rc = (err = *rp_op_error(op)).code;
    }
    /* should pushing the result raise (memory exhausted), the op would leak */
    n = rc == RP_OK ? push_result(L, op, d, values) : fail(L, rc, err.message);
    rp_op_free(op);
    return n;
}

/* A made handle (constructors), which borrows the one it was made from (at RPL_ARG1). */
static int make(lua_State *L, const rp_op_desc *d, const rp_value *args, rp_error *err) {
    rpl_handle *hd = (rpl_handle *)lua_newuserdata(L, sizeof *hd);
    memset(hd, 0, sizeof *hd);
    hd->kind = d->makes;
    hd->owner_ref = LUA_NOREF;
    lua_rawgeti(L, lua_upvalueindex(1), (int)d->makes);
    lua_setmetatable(L, -2);
    if (rp_desc_make(&hd->h, d, args, &rpl_naming, err) != RP_OK)
        return fail(L, err->code, err->message);
    if (args[0].type == RP_TYPE_HANDLE) {
        hd->owner = to_handle(L, RPL_ARG1, d->args[0].kind);
        hd->owner->borrowers++;
        lua_pushvalue(L, RPL_ARG1);
        hd->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 1;
}

/* The common body of core.call and core.begin. */
static int invoke(lua_State *L, int begin_only) {
    lua_Integer index = luaL_checkinteger(L, 1);
    const rp_op_desc *d = index >= 1 && (size_t)index <= rp_desc_count()
                              ? rp_desc_at((size_t)index - 1) : NULL;
    int values = lua_toboolean(L, 2);
    rp_value args[RP_DESC_ARGS_MAX];
    rpl_conv c;
    rpl_op *o;
    rp_op *op;
    size_t i;
    int fns = 0;

    if (!d || d->nargs > RP_DESC_ARGS_MAX) return luaL_argerror(L, 1, "no such op");
    lua_settop(L, RPL_ARG1 - 1 + (int)d->nargs);
    memset(args, 0, sizeof args);
    memset(&c, 0, sizeof c);
    if (begin_only && d->makes == RP_KIND_NONE) { /* the op outlives the call: anchor handles */
        lua_pushnil(L);
        c.anchor = lua_gettop(L);
    }
    for (i = 0; i < d->nargs; i++)
        if (conv(L, &c, RPL_ARG1 + (int)i, &d->args[i], d->args[i].type, d->args[i].name, 0,
                 &args[i]) != RP_OK)
            return fail(L, c.err.code, c.err.message);
    for (i = 0; i < d->nargs; i++) /* the callbacks, by argument index, for the CALL hook */
        if (args[i].type == RP_TYPE_CALLBACK) {
            if (!fns) lua_newtable(L), fns = lua_gettop(L);
            lua_pushvalue(L, RPL_ARG1 + (int)i);
            lua_rawseti(L, fns, (int)i + 1);
        }
    if (d->makes != RP_KIND_NONE) return make(L, d, args, &c.err);
    if (rp_desc_begin(&op, d, args, &rpl_naming, &c.err) != RP_OK)
        return fail(L, c.err.code, c.err.message);
    if (!begin_only) /* blocking, in this call: no userdata, nothing left for the collector */
        return run_now(L, op, d, client_of(&args[0]), values, fns);
    o = (rpl_op *)lua_newuserdata(L, sizeof *o);
    o->op = op;
    o->d = d;
    o->values = values;
    o->client = client_of(&args[0]);
    luaL_setmetatable(L, RPL_OP_MT);
    o->anchor = LUA_NOREF;
    o->fns = LUA_NOREF;
    if (fns) {
        lua_pushvalue(L, fns);
        o->fns = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (!lua_isnil(L, c.anchor)) {
        borrow_all(L, c.anchor, 1);
        lua_pushvalue(L, c.anchor);
        o->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 1;
}

static int l_call(lua_State *L) { return invoke(L, 0); }
static int l_begin(lua_State *L) { return invoke(L, 1); }
/* Lua counts nodes from 1 (node 0 becomes SIZE_MAX: the core refuses nodes out of range). */
#define check_node(L, idx) ((size_t)luaL_checkinteger(L, idx) - 1)

/* Pushes node's request of the current IO round: its bytes, or false when it has none. */
static int push_request(lua_State *L, const rp_op *op, size_t node) {
    const char *bytes = NULL;
    size_t len = 0;
    if (rp_op_request(op, node, &bytes, &len) == RP_OK && len > 0) lua_pushlstring(L, bytes, len);
    else lua_pushboolean(L, 0);
    return 1;
}

/* op:step() -> kind, and by kind:
 *   IO     request, timeout_ms, address: request is node 1's (false: none this round) for
 *          an op of one node, nil for more (read op:request(node)); timeout_ms: per target,
 *          0 = the driver's own; address: node 1's (op:target), for an op of one node
 *   SLEEP  ms (math.huge: until the running callback returns)
 *   CALL   arg (the callback argument's index in the descriptor's args), fn, values...
 *   EMIT   the message (a table by the descriptor's message fields) */
static int l_op_step(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1);
    rp_op *op = o->op;
    rp_step st = rp_op_step(op, rp_monotonic_ms());
    rp_value v[RPL_CALL_VALUES_MAX];
    size_t arg = 0, i, count = 0;
    lua_pushinteger(L, (lua_Integer)st);
    switch (st) {
    case RP_STEP_SLEEP:
        if (rp_op_sleep_ms(op) == RP_SLEEP_UNTIL_RESUMED) lua_pushnumber(L, (lua_Number)HUGE_VAL);
        else push_i64(L, (int64_t)rp_op_sleep_ms(op));
        return 2;
    case RP_STEP_IO: {
        rp_endpoint ep;
        int one = rp_op_nodes(op) == 1;
        if (one) push_request(L, op, 0);
        else lua_pushnil(L);
        push_i64(L, (int64_t)rp_op_timeout_ms(op));
        if (one && rp_op_target(op, 0, &ep) == RP_OK) lua_pushstring(L, ep.address);
        else lua_pushnil(L);
        return 4;
    }
    case RP_STEP_CALL:
        rp_op_call(op, &arg, v, RPL_CALL_VALUES_MAX, &count);
        push_i64(L, (int64_t)arg + 1);
        if (o->fns == LUA_NOREF) lua_pushnil(L);
        else {
            lua_rawgeti(L, LUA_REGISTRYINDEX, o->fns);
            lua_rawgeti(L, -1, (int)arg + 1);
            lua_remove(L, -2);
        }
        luaL_checkstack(L, (int)count, NULL);
        for (i = 0; i < count; i++) push_value(L, &v[i]);
        return 3 + (int)count;
    case RP_STEP_EMIT:
        return 1 + push_message(L, op, o->d);
    default:
        return 1;
    }
}

/* op:request(node) -> bytes | false (nothing for node this round) */
static int l_op_request(lua_State *L) { return push_request(L, check_op(L, 1), check_node(L, 2)); }

/* op:target(node) -> address (the pool key), host, port, unix path, password (nil when
 * none), tls (true: rediss://) | nil, err, detail */
static int l_op_target(lua_State *L) {
    rp_endpoint ep;
    if (rp_op_target(check_op(L, 1), check_node(L, 2), &ep) != RP_OK)
        return fail(L, RP_EINVAL, "no such target");
    lua_pushstring(L, ep.address);
    if (ep.is_unix) lua_pushnil(L), lua_pushnil(L), lua_pushstring(L, ep.path);
    else lua_pushstring(L, ep.host), push_i64(L, ep.port), lua_pushnil(L);
    if (ep.password) lua_pushstring(L, ep.password);
    else lua_pushnil(L);
    lua_pushboolean(L, ep.tls);
    return 6;
}

/* op:handshake(node) -> op (AUTH / SELECT for a fresh connection to node's target; DONE
 * without I/O when none is needed) | nil, err, detail. It borrows what op borrows. */
static int l_op_handshake(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1), *h;
    rp_endpoint ep;
    rp_error err;
    rp_op *hs;
    if (!o->client || rp_op_target(o->op, check_node(L, 2), &ep) != RP_OK)
        return fail(L, RP_EINVAL, "no such target");
    if (rp_endpoint_handshake_op(&hs, o->client, &ep, &err) != RP_OK)
        return fail(L, err.code, err.message);
    h = (rpl_op *)lua_newuserdata(L, sizeof *h);
    *h = *o;
    h->op = hs;
    h->d = rp_desc_find("client.handshake", 16);
    h->values = 0;
    h->anchor = h->fns = LUA_NOREF;
    luaL_setmetatable(L, RPL_OP_MT);
    if (o->anchor != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->anchor);
        borrow_all(L, lua_gettop(L), 1);
        h->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 1;
}

/* op:pending(node), op:listening(node), op:round_over(), op:long_lived() -> bool;
 * op:timeout_ms() -> ms (0: the driver's own): op.h says what each means */
#define RPL_QUERY(fn, push, expr) \
    static int fn(lua_State *L) { push(L, expr); return 1; }
RPL_QUERY(l_op_pending, lua_pushboolean, rp_op_pending(check_op(L, 1), check_node(L, 2)))
RPL_QUERY(l_op_listening, lua_pushboolean, rp_op_listening(check_op(L, 1), check_node(L, 2)))
RPL_QUERY(l_op_round_over, lua_pushboolean, rp_op_round_over(check_op(L, 1)))
RPL_QUERY(l_op_long_lived, lua_pushboolean, rp_op_long_lived(check_op(L, 1)))
RPL_QUERY(l_op_timeout_ms, push_i64, (int64_t)rp_op_timeout_ms(check_op(L, 1)))
RPL_QUERY(l_op_nodes, push_i64, (int64_t)rp_op_nodes(check_op(L, 1)))

/* op:resume(value) after the callback returned (value: its result when a string, else
 * nil), op:resume(nil, message) after it raised -> true | nil, err, detail */
static int l_op_resume(lua_State *L) {
    rp_op *op = check_op(L, 1);
    rp_value v;
    int rc;
    memset(&v, 0, sizeof v);
    if (!lua_isnoneornil(L, 3)) {
        v.type = RP_TYPE_STATUS;
        v.i = RP_ECALLBACK;
        v.bytes = luaL_checklstring(L, 3, &v.len);
    } else if (lua_type(L, 2) == LUA_TSTRING) {
        v.type = RP_TYPE_BYTES;
        v.bytes = lua_tolstring(L, 2, &v.len);
    }
    if ((rc = rp_op_resume(op, &v)) != RP_OK) return fail(L, rc, "the op has no callback running");
    lua_pushboolean(L, 1);
    return 1;
}

/* op:cancel(): the op cleans up (a lock.using releases) and ends in ERROR "cancelled" */
static int l_op_cancel(lua_State *L) {
    rp_op_cancel(check_op(L, 1));
    return 0;
}

/* op:feed(node, bytes) -> true (all replies in) | false (more needed) | nil, err, detail */
static int l_op_feed(lua_State *L) {
    size_t len;
    const char *buf = luaL_checklstring(L, 3, &len);
    int rc = rp_op_feed(check_op(L, 1), check_node(L, 2), buf, len);
    if (rc != RP_OK && rc != RP_MORE) return fail(L, rc, "the op refused the bytes for this node");
    lua_pushboolean(L, rc == RP_OK);
    return 1;
}

/* op:fail_node(node, status (core.status.*), why) */
static int l_op_fail_node(lua_State *L) {
    rp_op_fail_node(check_op(L, 1), check_node(L, 2), (int)luaL_checkinteger(L, 3),
                    luaL_optstring(L, 4, NULL));
    return 0;
}

/* op:fail_node_unsent(node, status, why): the same, before any byte of node's request was
 * written (a refused connect, a failed handshake): nothing of it can have run */
static int l_op_fail_node_unsent(lua_State *L) {
    rp_op_fail_node_unsent(check_op(L, 1), check_node(L, 2), (int)luaL_checkinteger(L, 3),
                           luaL_optstring(L, 4, NULL));
    return 0;
}

/* op:finish() -> after DONE what the method that began it returns, after ERROR nil, err,
 * detail; frees the op */
static int l_op_finish(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1);
    const rp_error *e = rp_op_error(o->op);
    int n = rp_op_done(o->op) ? push_result(L, o->op, o->d, o->values)
          : fail(L, e ? e->code : 0, e && e->code ? e->message : "the op is not done");
    op_release(L, o);
    return n;
}

/* op:_run() -> as op:finish(): blocking, over the connection of the client the op's
 * handles were made from; frees the op */
static int l_op_run(lua_State *L) {
    rpl_op *o = to_op(L, 1, 1);
    int n, fns = 0;
    if (o->fns != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, o->fns);
        fns = lua_gettop(L);
    }
    n = run_now(L, o->op, o->d, o->client, o->values, fns);
    o->op = NULL; /* run_now freed it */
    op_release(L, o);
    return n;
}

static int l_op_free(lua_State *L) {
    op_release(L, to_op(L, 1, 0));
    return 0;
}

/* core.pump(client, op, ms) -> message | nil, err, detail: steps a long-lived op over
 * client's connections (give each one a client of its own) until it EMITs, or ms pass
 * (nil, "timeout": the op lives on; math.huge: no limit), or it fails. */
static int l_pump(lua_State *L) {
    rpl_handle *hd = check_handle(L, 1, RP_KIND_CLIENT);
    rpl_op *o = to_op(L, 2, 1);
    lua_Number ms = luaL_checknumber(L, 3);
    rp_error err;
    int rc;
    if (!hd->h || hd->closed) return rpl_raise(L, "redpat: the client is closed");
    rc = rp_client_pump((rp_client *)hd->h, o->op,
                        ms >= (lua_Number)INT64_MAX ? UINT64_MAX : ms > 0 ? (uint64_t)ms : 0,
                        NULL, &err);
    return rc == RP_OK ? push_message(L, o->op, o->d) : fail(L, rc, err.message);
}

/* core.monotonic_ms() -> the core's monotonic clock (for tests and benchmarks) */
static int l_monotonic_ms(lua_State *L) {
    push_i64(L, (int64_t)rp_monotonic_ms());
    return 1;
}

/* ---- the descriptor table: what init.lua's methods and the generic runners use */

static void push_desc(lua_State *L, const rp_op_desc *d) {
    size_t i;
    lua_createtable(L, 0, 8);
    set_str(L, "name", d->name);
    set_str(L, "verb", d->verb);
    set_str(L, "makes", d->makes ? rp_kind_name(d->makes) : NULL);
    set_str(L, "shape", d->shape == RP_RESULT_LIST ? "list" : d->shape ? "record" : "none");
    set_bool(L, "io", d->io);
    lua_createtable(L, (int)d->nargs, 0); /* args, in order (init.lua adds "arg", by name) */
    for (i = 0; i < d->nargs; i++) {
        const rp_arg_desc *a = &d->args[i];
        lua_createtable(L, 0, 6);
        set_str(L, "name", a->name);
        set_str(L, "type", rp_type_name(a->type));
        set_str(L, "kind", a->kind ? rp_kind_name(a->kind) : NULL);
        set_bool(L, "required", (a->flags & RP_ARG_REQUIRED) != 0);
        set_bool(L, "self", (a->flags & RP_ARG_SELF) != 0);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "args");
    lua_createtable(L, (int)d->nfields, 0); /* fields, in order (init.lua: "field") */
    for (i = 0; i < d->nfields; i++) {
        lua_createtable(L, 0, 2);
        set_str(L, "name", d->fields[i].name);
        set_str(L, "type", rp_type_name(d->fields[i].type));
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "fields");
    set_bool(L, "long_lived", d->long_lived);
    lua_createtable(L, (int)d->nmessage_fields, 0); /* an EMITting op's message fields */
    for (i = 0; i < d->nmessage_fields; i++) {
        lua_createtable(L, 0, 2);
        set_str(L, "name", d->message_fields[i].name);
        set_str(L, "type", rp_type_name(d->message_fields[i].type));
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "message_fields");
}

/* ---- registration */

/* Fills the metatable on top: methods in its __index, gc its __gc (and __close on 5.4);
 * every function has the shared table (at ups) as upvalue 1. */
static void new_mt(lua_State *L, int ups, const luaL_Reg *methods, lua_CFunction gc) {
    lua_newtable(L);
    lua_pushvalue(L, ups);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, ups);
    lua_pushcclosure(L, gc, 1);
#if LUA_VERSION_NUM >= 504
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__close");
#endif
    lua_setfield(L, -2, "__gc");
}

RPL_EXPORT int luaopen_redpat_core(lua_State *L) {
    static const luaL_Reg handle_methods[] = {
        { "close", l_handle_close }, { "_closed", l_handle_closed }, { NULL, NULL } };
    static const luaL_Reg op_methods[] = {
        { "step", l_op_step }, { "feed", l_op_feed }, { "fail_node", l_op_fail_node }, { "fail_node_unsent", l_op_fail_node_unsent },
        { "finish", l_op_finish }, { "_run", l_op_run }, { "free", l_op_free },
        { "request", l_op_request }, { "nodes", l_op_nodes }, { "target", l_op_target },
        { "handshake", l_op_handshake }, { "pending", l_op_pending },
        { "listening", l_op_listening }, { "round_over", l_op_round_over },
        { "long_lived", l_op_long_lived }, { "timeout_ms", l_op_timeout_ms },
        { "resume", l_op_resume }, { "cancel", l_op_cancel }, { NULL, NULL } };
    static const luaL_Reg funcs[] = {
        { "call", l_call }, { "begin", l_begin }, { "pump", l_pump }, { "monotonic_ms", l_monotonic_ms }, { NULL, NULL } };
    size_t i, n = rp_desc_count();
    int ups, mts, k;

    lua_newtable(L); /* upvalue 1 of everything: kind -> its handles' metatable */
    ups = lua_gettop(L);
    lua_newtable(L);
    lua_pushvalue(L, ups);
    luaL_setfuncs(L, funcs, 1);
    lua_newtable(L); /* core.metatables */
    mts = lua_gettop(L);
    luaL_newmetatable(L, RPL_OP_MT);
    new_mt(L, ups, op_methods, l_op_free);
    lua_setfield(L, mts, "op");
    for (k = RP_KIND_CLIENT; strcmp(rp_kind_name((rp_kind)k), "unknown") != 0; k++) {
        lua_newtable(L); /* a metatable per kind, all one userdata type */
        new_mt(L, ups, handle_methods, l_handle_close);
        lua_pushfstring(L, "redpat.%s", rp_kind_name((rp_kind)k));
        lua_setfield(L, -2, "__name");
        set_int(L, "__kind", k);
        lua_pushvalue(L, -1);
        lua_rawseti(L, ups, k);
        lua_setfield(L, mts, rp_kind_name((rp_kind)k));
    }
    luaL_newmetatable(L, RPL_DETAIL_MT); /* init.lua gives it __tostring and __concat */
    lua_setfield(L, mts, "error");
    lua_setfield(L, -2, "metatables");

    lua_createtable(L, (int)n, 0); /* core.descriptors, in order (init.lua: by name) */
    for (i = 0; i < n; i++) {
        push_desc(L, rp_desc_at(i));
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "descriptors");
    lua_newtable(L); /* core.status: name -> rp_status, for op:fail_node and details */
    for (k = RP_OK; strcmp(rp_status_name(k), "unknown") != 0; k--)
        set_int(L, rp_status_name(k), k);
    lua_setfield(L, -2, "status");
    set_int(L, "IO", RP_STEP_IO);
    set_int(L, "SLEEP", RP_STEP_SLEEP);
    set_int(L, "DONE", RP_STEP_DONE);
    set_int(L, "ERROR", RP_STEP_ERROR);
    set_int(L, "CALL", RP_STEP_CALL);
    set_int(L, "EMIT", RP_STEP_EMIT);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    set_str(L, "version", RP_VERSION);
    return 1;
}
