/* The descriptor table and the generic begin: every argument is checked against its
 * descriptor (type, bounds, choices) before the typed C API behind the op is called, and
 * errors name the argument in the user's words (rp_naming). */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "desc_internal.h"

/* A list bound this large is no bound a user meets: say "N or more", not the number. */
#define LIST_UNBOUNDED INT_MAX

typedef struct desc_group {
    const rp_op_desc *ops;
    const size_t *count;
} desc_group;

static const desc_group groups[] = {
    { rp_desc__client_ops, &rp_desc__client_count },
    { rp_desc__lock_ops, &rp_desc__lock_count },
    { rp_desc__using_ops, &rp_desc__using_count },
    { rp_desc__ratelimit_ops, &rp_desc__ratelimit_count },
    { rp_desc__pubsub_ops, &rp_desc__pubsub_count },
    { rp_desc__cache_ops, &rp_desc__cache_count },
};
#define NGROUPS (sizeof groups / sizeof groups[0])

size_t rp_desc_count(void)
{
    size_t g, n = 0;
    for (g = 0; g < NGROUPS; g++)
        n += *groups[g].count;
    return n;
}

const rp_op_desc *rp_desc_at(size_t index)
{
    size_t g;
    for (g = 0; g < NGROUPS; g++) {
        if (index < *groups[g].count)
            return &groups[g].ops[index];
        index -= *groups[g].count;
    }
    return NULL;
}

const rp_op_desc *rp_desc_find(const char *name, size_t len)
{
    size_t g, i;
    if (!name)
        return NULL;
    for (g = 0; g < NGROUPS; g++)
        for (i = 0; i < *groups[g].count; i++) {
            const rp_op_desc *d = &groups[g].ops[i];
            if (strlen(d->name) == len && memcmp(d->name, name, len) == 0)
                return d;
        }
    return NULL;
}

int rp_desc_arg_index(const rp_op_desc *d, const char *name)
{
    size_t i;
    for (i = 0; d && name && i < d->nargs; i++)
        if (strcmp(d->args[i].name, name) == 0)
            return (int)i;
    return -1;
}

int rp_desc_field_index(const rp_op_desc *d, const char *name)
{
    size_t i;
    for (i = 0; d && name && i < d->nfields; i++)
        if (strcmp(d->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *rp_type_name(rp_type t)
{
    switch (t) {
    case RP_TYPE_NONE: return "none";
    case RP_TYPE_BYTES: return "bytes";
    case RP_TYPE_INT: return "int";
    case RP_TYPE_MS: return "ms";
    case RP_TYPE_FLOAT: return "float";
    case RP_TYPE_BOOL: return "bool";
    case RP_TYPE_ENUM: return "enum";
    case RP_TYPE_HANDLE: return "handle";
    case RP_TYPE_LIST: return "list";
    case RP_TYPE_STATUS: return "status";
    case RP_TYPE_REPLY: return "reply";
    case RP_TYPE_CALLBACK: return "callback";
    }
    return "unknown";
}

const char *rp_kind_name(rp_kind k)
{
    switch (k) {
    case RP_KIND_NONE: return "none";
    case RP_KIND_CLIENT: return "client";
    case RP_KIND_LOCK: return "lock";
    case RP_KIND_RATELIMIT: return "ratelimit";
    case RP_KIND_SUBSCRIPTION: return "subscription";
    case RP_KIND_CACHE: return "cache";
    }
    return "unknown";
}

/* --- values ------------------------------------------------------------------------- */

rp_value rp_value_int(rp_type type, int64_t i)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    v.i = i;
    return v;
}

rp_value rp_value_bytes(const void *bytes, size_t len)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_BYTES;
    v.bytes = bytes;
    v.len = len;
    return v;
}

rp_value rp_value_float(double f)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_FLOAT;
    v.f = f;
    return v;
}

rp_value rp_value_handle(rp_kind kind, void *handle)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_HANDLE;
    v.kind = kind;
    v.handle = handle;
    return v;
}

rp_value rp_value_list(const rp_value *items, size_t count)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_LIST;
    v.items = items;
    v.count = count;
    return v;
}

rp_value rp_desc__bool(int b) { return rp_value_int(RP_TYPE_BOOL, b != 0); }

rp_value rp_desc__enum(int64_t index, const char *const *choices)
{
    rp_value v = rp_value_int(RP_TYPE_ENUM, index);
    v.bytes = choices[index];
    v.len = strlen(choices[index]);
    return v;
}

rp_value rp_desc__status(int code, const char *message)
{
    rp_value v = rp_value_int(RP_TYPE_STATUS, code);
    v.bytes = message ? message : "";
    v.len = strlen(v.bytes);
    return v;
}

/* --- naming ------------------------------------------------------------------------- */

const char *rp_desc__arg_name(const rp_naming *nm, const rp_op_desc *d, size_t i)
{
    const char *name = nm && nm->arg_name ? nm->arg_name(nm->ud, d, i) : NULL;
    return name ? name : d->args[i].name;
}

const char *rp_desc__duration(const rp_naming *nm, int64_t ms, char buf[RP_DESC_DURATION_CHARS])
{
    if (nm && nm->ms_in_seconds)
        snprintf(buf, RP_DESC_DURATION_CHARS, "%.15g seconds", (double)ms / 1000.0);
    else
        snprintf(buf, RP_DESC_DURATION_CHARS, "%" PRId64 " ms", ms);
    return buf;
}

/* The value v as the user gave it, for "(got ...)". */
static const char *value_text(const rp_naming *nm, rp_type type, int64_t v,
                              char buf[RP_DESC_DURATION_CHARS])
{
    const char *s;
    if (type != RP_TYPE_MS) {
        snprintf(buf, RP_DESC_DURATION_CHARS, "%" PRId64, v);
        return buf;
    }
    /* "-1 seconds" reads oddly after "must be > 0 seconds": quote the bare number. */
    rp_desc__duration(nm, v, buf);
    s = strchr(buf, ' ');
    if (s)
        buf[s - buf] = '\0';
    return buf;
}

/* " seconds" / " ms" after a bound of a duration, "" for plain integers. */
static const char *unit_of(const rp_naming *nm, rp_type type)
{
    if (type != RP_TYPE_MS)
        return "";
    return nm && nm->ms_in_seconds ? " seconds" : " ms";
}

/* --- checking one value ------------------------------------------------------------- */

typedef struct arg_ctx {
    const rp_naming *nm;
    const char *name; /* the user's name, with "[i]" for list items */
    rp_error *err;
} arg_ctx;

/* "<arg> must be <expected> (got <what>)": a value of the wrong type or kind. */
static int wrong(const arg_ctx *c, const char *expected, const char *got)
{
    return rp_error__set(c->err, RP_EINVAL, "%s must be %s (got %s)", c->name, expected, got);
}

static const char *type_word(rp_type t, rp_kind k)
{
    switch (t) {
    case RP_TYPE_BYTES: return "bytes";
    case RP_TYPE_INT: return "an integer";
    case RP_TYPE_MS: return "a duration";
    case RP_TYPE_FLOAT: return "a number";
    case RP_TYPE_BOOL: return "a boolean";
    case RP_TYPE_ENUM: return "a name";
    case RP_TYPE_HANDLE: return k == RP_KIND_LOCK ? "a lock" : k == RP_KIND_RATELIMIT
                                ? "a rate limiter" : k == RP_KIND_SUBSCRIPTION
                                ? "a subscription" : k == RP_KIND_CACHE ? "a cache" : "a client";
    case RP_TYPE_LIST: return "a list";
    case RP_TYPE_CALLBACK: return "a function";
    default: return "a value";
    }
}

static int check_int(const arg_ctx *c, rp_type type, int64_t v, int64_t lo, int64_t hi)
{
    char got[RP_DESC_DURATION_CHARS], bound[RP_DESC_DURATION_CHARS];
    if (v < lo) {
        if (lo == 1 || lo == 0) {
            return rp_error__set(c->err, RP_EINVAL, "%s must be %s 0%s (got %s)", c->name,
                                 lo == 1 ? ">" : ">=", unit_of(c->nm, type),
                                 value_text(c->nm, type, v, got));
        }
        value_text(c->nm, type, lo, bound);
        return rp_error__set(c->err, RP_EINVAL, "%s must be >= %s%s (got %s)", c->name, bound,
                             unit_of(c->nm, type), value_text(c->nm, type, v, got));
    }
    if (v > hi) {
        value_text(c->nm, type, hi, bound);
        return rp_error__set(c->err, RP_EINVAL, "%s must be <= %s%s (got %s)", c->name, bound,
                             unit_of(c->nm, type), value_text(c->nm, type, v, got));
    }
    return RP_OK;
}

static int check_bytes(const arg_ctx *c, size_t len, int64_t lo, int64_t hi)
{
    if ((int64_t)len < lo && lo == 1)
        return rp_error__set(c->err, RP_EINVAL, "%s must not be empty", c->name);
    if ((int64_t)len < lo || (uint64_t)len > (uint64_t)hi)
        return rp_error__set(c->err, RP_EINVAL, "%s must be %" PRId64 "..%" PRId64
                             " bytes (got %zu)", c->name, lo, hi, len);
    return RP_OK;
}

static int parse_enum(const arg_ctx *c, const char *const *choices, rp_value *v)
{
    char list[RP_ERROR_MESSAGE_MAX];
    size_t i, used = 0;
    if (v->type == RP_TYPE_ENUM) {
        for (i = 0; choices[i]; i++)
            if ((int64_t)i == v->i)
                break;
        if (!choices[i])
            return rp_error__set(c->err, RP_EINVAL, "%s: no choice %" PRId64, c->name, v->i);
        *v = rp_desc__enum(v->i, choices);
        return RP_OK;
    }
    for (i = 0; choices[i]; i++)
        if (strlen(choices[i]) == v->len && memcmp(choices[i], v->bytes, v->len) == 0) {
            *v = rp_desc__enum((int64_t)i, choices);
            return RP_OK;
        }
    list[0] = '\0';
    for (i = 0; choices[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 choices[i]);
    return rp_error__set(c->err, RP_EINVAL, "%s must be one of %s (got \"%.*s\")", c->name, list,
                         (int)(v->len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : v->len), v->bytes);
}

/* Checks one scalar value against type / kind / bounds; ENUM names become ENUM values. */
static int check_value(const arg_ctx *c, rp_type type, rp_kind kind, int64_t lo, int64_t hi,
                       const char *const *choices, rp_value *v)
{
    int ok;
    switch (type) {
    case RP_TYPE_MS:
        ok = v->type == RP_TYPE_MS || v->type == RP_TYPE_INT;
        break;
    case RP_TYPE_FLOAT:
        ok = v->type == RP_TYPE_FLOAT || v->type == RP_TYPE_INT;
        if (ok && v->type == RP_TYPE_INT)
            v->f = (double)v->i;
        break;
    case RP_TYPE_ENUM:
        ok = v->type == RP_TYPE_ENUM || v->type == RP_TYPE_BYTES;
        break;
    default:
        ok = v->type == type;
    }
    if (!ok)
        return wrong(c, type_word(type, kind), type_word(v->type, v->kind));
    v->type = type == RP_TYPE_ENUM ? v->type : type;
    switch (type) {
    case RP_TYPE_BYTES:
        if (!v->bytes && v->len)
            return rp_error__set(c->err, RP_EINVAL, "%s: no bytes for its length", c->name);
        return check_bytes(c, v->len, lo, hi);
    case RP_TYPE_INT:
    case RP_TYPE_MS:
        return check_int(c, type, v->i, lo, hi);
    case RP_TYPE_BOOL:
        if (v->i != 0 && v->i != 1)
            return wrong(c, "a boolean", "an integer");
        return RP_OK;
    case RP_TYPE_ENUM:
        return parse_enum(c, choices, v);
    case RP_TYPE_HANDLE:
        if (v->kind != kind)
            return wrong(c, type_word(type, kind),
                       type_word(type, v->kind));
        if (!v->handle)
            return wrong(c, type_word(type, kind), "NULL");
        return RP_OK;
    default:
        return RP_OK;
    }
}

/* The arguments as checked: defaults filled in, ENUM names resolved to their index. */
typedef struct arg_store {
    rp_value vals[RP_DESC_ARGS_MAX];
} arg_store;

static int check_arg(const rp_op_desc *d, size_t i, const rp_naming *nm, rp_value *v,
                     rp_error *err)
{
    const rp_arg_desc *a = &d->args[i];
    char item_name[RP_ERROR_MESSAGE_MAX];
    arg_ctx c;
    size_t k;
    int rc;
    c.nm = nm;
    c.name = rp_desc__arg_name(nm, d, i);
    c.err = err;
    if (v->type == RP_TYPE_NONE) {
        if (a->flags & RP_ARG_REQUIRED)
            return rp_error__set(err, RP_EINVAL, "%s is required", c.name);
        switch (a->type) {
        case RP_TYPE_INT:
        case RP_TYPE_MS:
        case RP_TYPE_BOOL:
            *v = rp_value_int(a->type, a->def);
            return RP_OK;
        case RP_TYPE_ENUM:
            *v = rp_desc__enum(a->def, a->choices);
            return RP_OK;
        default:
            return RP_OK; /* stays absent: the op's own default (random token, ...) */
        }
    }
    if (a->type != RP_TYPE_LIST)
        return check_value(&c, a->type, a->kind, a->min, a->max, a->choices, v);
    if (v->type != RP_TYPE_LIST)
        return wrong(&c, "a list", type_word(v->type, v->kind));
    if ((int64_t)v->count < a->min || (uint64_t)v->count > (uint64_t)a->max) {
        if (a->max >= LIST_UNBOUNDED)
            return rp_error__set(err, RP_EINVAL, "%s must have %" PRId64 " or more items "
                                 "(got %zu)", c.name, a->min, v->count);
        return rp_error__set(err, RP_EINVAL, "%s must have %" PRId64 "..%" PRId64
                             " items (got %zu)", c.name, a->min, a->max, v->count);
    }
    if (v->count && !v->items)
        return rp_error__set(err, RP_EINVAL, "%s: no items for its count", c.name);
    for (k = 0; k < v->count; k++) {
        rp_value item = v->items[k];
        arg_ctx ic = c;
        snprintf(item_name, sizeof item_name, "%s[%zu]", c.name,
                 k + (nm && nm->index_base > 0 ? (size_t)nm->index_base : 0));
        ic.name = item_name;
        if (a->item_type == RP_TYPE_ENUM)
            return rp_error__set(err, RP_ESTATE, "%s: lists of names are not supported", c.name);
        if ((rc = check_value(&ic, a->item_type, a->kind, a->min_item, a->max_item, NULL, &item)))
            return rc;
    }
    return RP_OK;
}

static int check_args(const rp_op_desc *d, const rp_value *in, const rp_naming *nm,
                      arg_store *st, rp_error *err)
{
    size_t i;
    int rc;
    if (d->nargs > RP_DESC_ARGS_MAX)
        return rp_error__set(err, RP_ESTATE, "%s: too many arguments in its descriptor", d->name);
    memset(st, 0, sizeof *st);
    for (i = 0; i < d->nargs; i++) {
        st->vals[i] = in ? in[i] : st->vals[i];
        if ((rc = check_arg(d, i, nm, &st->vals[i], err)))
            return rc;
    }
    return RP_OK;
}

/* What begin and make share: the descriptor is of the wanted sort, and its arguments pass.
 * want_make: 1 for rp_desc_make, 0 for rp_desc_begin. */
static int prepare(const rp_op_desc *d, int want_make, const rp_value *args,
                   const rp_naming *nm, arg_store *st, rp_error *err)
{
    if (!d)
        return rp_error__set(err, RP_EINVAL, "descriptor must not be NULL");
    if (want_make && !d->make)
        return rp_error__set(err, RP_EINVAL, "%s is an operation: use rp_desc_begin", d->name);
    if (!want_make && !d->begin)
        return rp_error__set(err, RP_EINVAL, "%s makes a handle: use rp_desc_make", d->name);
    return check_args(d, args, nm, st, err);
}

int rp_desc_begin(rp_op **out, const rp_op_desc *d, const rp_value *args, const rp_naming *nm,
                  rp_error *err)
{
    arg_store st;
    int rc;
    if (!out)
        return rp_error__set(err, RP_EINVAL, "out must not be NULL");
    *out = NULL;
    if ((rc = prepare(d, 0, args, nm, &st, err)) || (rc = d->begin(out, st.vals, nm, err)))
        return rc;
    rp_op__set_desc(*out, d);
    return RP_OK;
}

int rp_desc_make(void **out, const rp_op_desc *d, const rp_value *args, const rp_naming *nm,
                 rp_error *err)
{
    arg_store st;
    int rc;
    if (!out)
        return rp_error__set(err, RP_EINVAL, "out must not be NULL");
    *out = NULL;
    if ((rc = prepare(d, 1, args, nm, &st, err)))
        return rc;
    return d->make(out, st.vals, nm, err);
}

void rp_handle_free(rp_kind kind, void *h)
{
    switch (kind) {
    case RP_KIND_CLIENT: rp_client_free(h); break;
    case RP_KIND_LOCK: rp_lock_free(h); break;
    case RP_KIND_RATELIMIT: rp_ratelimit_free(h); break;
    case RP_KIND_SUBSCRIPTION: rp_subscription_free(h); break;
    case RP_KIND_CACHE: rp_cache_free(h); break;
    default: break;
    }
}

rp_client *rp_handle_client(rp_kind kind, void *h)
{
    if (!h)
        return NULL;
    switch (kind) {
    case RP_KIND_CLIENT: return h;
    case RP_KIND_LOCK: return rp_lock_client(h);
    case RP_KIND_RATELIMIT: return rp_ratelimit_client(h);
    case RP_KIND_SUBSCRIPTION: return rp_subscription_client(h);
    case RP_KIND_CACHE: return rp_cache_client(h);
    default: return NULL;
    }
}

/* --- messages (EMIT) ------------------------------------------------------------------ */

int rp_op_message(const rp_op *op, rp_value *fields)
{
    const rp_op_desc *d = rp_op_desc_of(op);
    size_t i;
    if (!d || !d->message || !rp_op__emitting(op))
        return RP_ESTATE;
    for (i = 0; i < d->nmessage_fields; i++)
        memset(&fields[i], 0, sizeof fields[i]);
    return d->message(op, fields);
}

/* --- results ------------------------------------------------------------------------ */

size_t rp_op_result_count(const rp_op *op)
{
    const rp_op_desc *d = rp_op_desc_of(op);
    if (!d || !rp_op_done(op))
        return 0;
    switch (d->shape) {
    case RP_RESULT_RECORD: return 1;
    case RP_RESULT_LIST: return d->result_count(op);
    default: return 0;
    }
}

int rp_op_result(const rp_op *op, size_t index, rp_value *fields)
{
    const rp_op_desc *d = rp_op_desc_of(op);
    if (!d || !rp_op_done(op) || !fields)
        return RP_ESTATE;
    if (index >= rp_op_result_count(op))
        return RP_EINVAL;
    memset(fields, 0, d->nfields * sizeof *fields);
    return d->result(op, index, fields);
}

/* --- ops answered from their handle ------------------------------------------------- */

typedef struct local_state {
    void *handle;
} local_state;

static int local_advance(rp_op *op, void *state, uint64_t now_ms)
{
    (void)state;
    (void)now_ms;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class local_class = { "local", sizeof(local_state), local_advance, NULL, 0, NULL, 0, 0, 0, 0
};

int rp_desc__local_op(rp_op **out, rp_client *client, void *handle, rp_error *err)
{
    local_state *s;
    int rc = rp_op__new(out, client, &local_class, 1, (void **)&s, err);
    if (rc == RP_OK)
        s->handle = handle;
    return rc;
}

void *rp_desc__local_handle(const rp_op *op)
{
    const local_state *s = rp_op__done_state(op, &local_class);
    return s ? s->handle : NULL;
}
