/* Descriptors of the cache ops (cache.new ... cache.info), over the typed API in cache.h. */
#include <inttypes.h>
#include <string.h>

#include "cache_internal.h"
#include "desc_internal.h"

#define N(a) (sizeof a / sizeof a[0])
#define SELF_CACHE { "cache", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CACHE, \
                     RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, "the cache" }
#define KEY { "key", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, \
              RP_CACHE_KEY_MAX, 0, 0, NULL, "the entry's key (binary-safe)" }
#define TAGS(doc) { "tags", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, 0, 0, 0, \
                    RP_CACHE_TAGS_MAX, 1, RP_CACHE_KEY_MAX, NULL, doc }
#define VALUE(doc) { "value", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, \
                     RP_CACHE_VALUE_MAX, 0, 0, NULL, doc }
#define TTL_MAX RP_CACHE_TTL_MS_MAX

/* --- cache.new ----------------------------------------------------------------------- */

enum { NEW_NAME = 1, NEW_TTL, NEW_NEGATIVE_TTL, NEW_JITTER, NEW_STAMPEDE, NEW_LOCK_TTL,
       NEW_STALE, NEW_BETA, NEW_LOAD_TIMEOUT, NEW_VERSIONED, NEW_NEAR_SIZE, NEW_NEAR_TTL };

static const rp_arg_desc new_args[] = {
    { "client", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CLIENT, RP_ARG_SELF | RP_ARG_REQUIRED, 0,
      0, 0, 0, 0, NULL, "the client the cache is made from" },
    { "name", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_CACHE_NAME_MAX, 0, 0, NULL, "keeps caches apart in Redis (no '{', '}' or NUL)" },
    { "ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, TTL_MAX, 0, 0, NULL,
      "how long an entry lives (swr: how long it is fresh)" },
    { "negative_ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 30000, 0, TTL_MAX, 0, 0, NULL,
      "how long a negative entry (the loader found none) lives; 0: none is not cached" },
    { "jitter", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, TTL_MAX, 0, 0, NULL,
      "each TTL gets a uniform [0, jitter] added, so entries written together do not expire "
      "together (at most ttl)" },
    { "stampede", RP_TYPE_ENUM, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_CACHE_LOCK, 0, 0, 0, 0,
      rp_cache_stampede_names, "how concurrent misses are kept from all loading: none, lock "
      "(one loads, the others wait for its value), swr (serve stale while one refreshes), "
      "xfetch (recompute early with a probability)" },
    { "lock_ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 5000, 1, TTL_MAX, 0, 0, NULL,
      "the load lock's TTL: how long waiters wait for a loader that died (<= load_timeout)" },
    { "stale", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, TTL_MAX, 0, 0, NULL,
      "swr: how long past ttl a stale value is served while one caller refreshes (0: ttl)" },
    { "beta", RP_TYPE_FLOAT, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, 0, 0, 0, NULL,
      "xfetch: > 0, default 1.0; larger recomputes earlier" },
    { "load_timeout", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 60000, 1, TTL_MAX, 0, 0, NULL,
      "a value loaded longer than this after its miss is returned but not cached" },
    { "versioned", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 1, 0, 1, 0, 0, NULL,
      "a fill is written only if no write or delete of the key came since the miss" },
    { "near_size", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_CACHE_NEAR_MAX, 0, 0,
      NULL, "entries of the in-process near-cache (0: none); it serves while its invalidation "
      "subscriber vouches for it (cache.near_apply)" },
    { "near_ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 1000, 1, TTL_MAX, 0, 0, NULL,
      "the longest a near-cache entry is served" },
};

static int cache_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__cache_ops[0];
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    char x[RP_DESC_DURATION_CHARS], y[RP_DESC_DURATION_CHARS];
    o.ttl_ms = a[NEW_TTL].i;
    o.negative_ttl_ms = a[NEW_NEGATIVE_TTL].i;
    o.jitter_ms = a[NEW_JITTER].i;
    o.stampede = (rp_cache_stampede)a[NEW_STAMPEDE].i;
    o.lock_ttl_ms = a[NEW_LOCK_TTL].i;
    o.stale_ms = a[NEW_STALE].i;
    if (a[NEW_BETA].type != RP_TYPE_NONE)
        o.beta = a[NEW_BETA].f;
    o.load_timeout_ms = a[NEW_LOAD_TIMEOUT].i;
    o.versioned = (int)a[NEW_VERSIONED].i;
    o.near_size = a[NEW_NEAR_SIZE].i;
    o.near_ttl_ms = a[NEW_NEAR_TTL].i;
    /* the bounds across arguments, named and in units as the user gave them */
    if (o.jitter_ms > o.ttl_ms)
        return rp_error__set(err, RP_EINVAL, "%s must be <= %s (got %s > %s)",
                             rp_desc__arg_name(nm, d, NEW_JITTER),
                             rp_desc__arg_name(nm, d, NEW_TTL),
                             rp_desc__duration(nm, o.jitter_ms, x),
                             rp_desc__duration(nm, o.ttl_ms, y));
    if (o.lock_ttl_ms > o.load_timeout_ms)
        return rp_error__set(err, RP_EINVAL, "%s must be <= %s (got %s > %s): a load the "
                             "lock waits for must be cacheable",
                             rp_desc__arg_name(nm, d, NEW_LOCK_TTL),
                             rp_desc__arg_name(nm, d, NEW_LOAD_TIMEOUT),
                             rp_desc__duration(nm, o.lock_ttl_ms, x),
                             rp_desc__duration(nm, o.load_timeout_ms, y));
    if (!(o.beta > 0) || o.beta > 1e6)
        return rp_error__set(err, RP_EINVAL, "%s must be a number > 0 and <= 1e6 (got %g)",
                             rp_desc__arg_name(nm, d, NEW_BETA), o.beta);
    return rp_cache_new((rp_cache **)out, a[0].handle, a[NEW_NAME].bytes, a[NEW_NAME].len, &o,
                        err);
}

/* --- the ops' shared pieces -------------------------------------------------------- */

/* A list argument as rp_cache_tags (borrowing the values' bytes). */
typedef struct tag_args {
    const void *items[RP_CACHE_TAGS_MAX];
    size_t lens[RP_CACHE_TAGS_MAX];
    rp_cache_tags tags;
} tag_args;

static const rp_cache_tags *tags_of(const rp_value *v, tag_args *t)
{
    size_t i;
    if (v->type != RP_TYPE_LIST)
        return NULL;
    for (i = 0; i < v->count && i < RP_CACHE_TAGS_MAX; i++) {
        t->items[i] = v->items[i].bytes ? v->items[i].bytes : "";
        t->lens[i] = v->items[i].len;
    }
    t->tags.items = t->items;
    t->tags.lens = t->lens;
    t->tags.count = v->count;
    return &t->tags;
}

static const rp_field_desc result_fields[] = {
    { "value", RP_TYPE_BYTES, "the value; absent when the answer is none (negative) or a miss" },
    { "hit", RP_TYPE_BOOL, "answered from the cache without loading (delete: an entry existed)" },
    { "negative", RP_TYPE_BOOL, "the answer is none: a negative entry, or the loader said none" },
    { "stale", RP_TYPE_BOOL, "swr: a stale value, served while another caller refreshes" },
    { "loaded", RP_TYPE_BOOL, "this call ran the loader" },
    { "stored", RP_TYPE_BOOL, "the loaded or written value went to the cache (false: a write or "
      "delete came since the miss, the load outlasted load_timeout, or none is not cached)" },
    { "near", RP_TYPE_BOOL, "answered from the in-process near-cache: no round trip" },
    { "ttl", RP_TYPE_MS, "the entry's TTL left when read (0: none)" },
    { "waits", RP_TYPE_INT, "how many times this call polled while another caller loaded" },
};

static int cache_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_cache_result r;
    int rc = rp_cache_result_of(op, &r);
    (void)index;
    if (rc != RP_OK)
        return rc;
    memset(&f[0], 0, sizeof f[0]);
    if (r.value)
        f[0] = rp_value_bytes(r.value, r.value_len);
    f[1] = rp_desc__bool(r.hit);
    f[2] = rp_desc__bool(r.negative);
    f[3] = rp_desc__bool(r.stale);
    f[4] = rp_desc__bool(r.loaded);
    f[5] = rp_desc__bool(r.stored);
    f[6] = rp_desc__bool(r.near);
    f[7] = rp_value_int(RP_TYPE_MS, r.ttl_ms);
    f[8] = rp_value_int(RP_TYPE_INT, r.waits);
    return RP_OK;
}

/* --- cache.get, cache.get_or_load ----------------------------------------------------- */

static const rp_arg_desc get_args[] = {
    SELF_CACHE, KEY,
    TAGS("the tags the entry is expected to carry: their versions are read in the same round "
         "(an entry with others costs one more)"),
};

static int get_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    tag_args t;
    (void)nm;
    return rp_cache_get_op(out, a[0].handle, a[1].bytes, a[1].len, tags_of(&a[2], &t), err);
}

/* RP_CACHE_LOADER_ARG is 2: the loader's place here. */
static const rp_arg_desc load_args[] = {
    SELF_CACHE, KEY,
    { "loader", RP_TYPE_CALLBACK, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 0, 0, 0, 0,
      NULL, "called with the key on a miss: returns the value, or nothing for none" },
    TAGS("the entry's tags: a fill records their versions; invalidating one misses it"),
    { "random", RP_TYPE_FLOAT, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, 0, 0, 0, NULL,
      "xfetch: the uniform draw in (0, 1] to decide by (absent: the core draws one)" },
};

static int load_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__cache_ops[2];
    tag_args t;
    double random = a[4].type == RP_TYPE_NONE ? 0 : a[4].f;
    if (a[4].type != RP_TYPE_NONE && !(random > 0 && random <= 1))
        return rp_error__set(err, RP_EINVAL, "%s must be in (0, 1] (got %g)",
                             rp_desc__arg_name(nm, d, 4), random);
    return rp_cache_load_op(out, a[0].handle, a[1].bytes, a[1].len, tags_of(&a[3], &t), random,
                            err);
}

/* --- cache.set, cache.write, cache.delete -------------------------------------------- */

static const rp_arg_desc set_args[] = {
    SELF_CACHE, KEY,
    VALUE("the value (binary-safe); absent: a negative entry (none)"),
    TAGS("the entry's tags"),
};

static int set_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    tag_args t;
    (void)nm;
    return rp_cache_set_op(out, a[0].handle, a[1].bytes, a[1].len,
                           a[2].type == RP_TYPE_NONE ? NULL : (a[2].bytes ? a[2].bytes : ""),
                           a[2].len, tags_of(&a[3], &t), err);
}

/* RP_CACHE_WRITER_ARG is 3: the writer's place here. */
static const rp_arg_desc write_args[] = {
    SELF_CACHE, KEY,
    VALUE("the value to write (binary-safe); absent: none (the row was deleted)"),
    { "writer", RP_TYPE_CALLBACK, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 0, 0, 0, 0,
      NULL, "the database write, called with the key and the value first; if it fails the "
      "cache is untouched" },
    TAGS("the entry's tags"),
};

static int write_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    tag_args t;
    (void)nm;
    return rp_cache_write_op(out, a[0].handle, a[1].bytes, a[1].len,
                             a[2].type == RP_TYPE_NONE ? NULL : (a[2].bytes ? a[2].bytes : ""),
                             a[2].len, tags_of(&a[4], &t), err);
}

static const rp_arg_desc delete_args[] = { SELF_CACHE, KEY };

static int delete_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_cache_delete_op(out, a[0].handle, a[1].bytes, a[1].len, err);
}

/* --- cache.invalidate_tags -------------------------------------------------------------- */

static const rp_arg_desc tags_args[] = {
    SELF_CACHE,
    { "tags", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_CACHE_TAGS_MAX, 1, RP_CACHE_KEY_MAX, NULL, "the tags to invalidate" },
};

static int tags_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    tag_args t;
    (void)nm;
    return rp_cache_invalidate_tags_op(out, a[0].handle, tags_of(&a[1], &t), err);
}

/* --- cache.near_apply ---------------------------------------------------------------- */

static const rp_arg_desc apply_args[] = {
    SELF_CACHE,
    { "kind", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, 64, 0, 0, NULL,
      "the subscription message's kind: message, subscribe, unsubscribe, reconnect, ..." },
    { "data", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_CACHE_KEY_MAX + 64, 0, 0,
      NULL, "the message's payload (message kinds)" },
};

static const rp_field_desc apply_fields[] = {
    { "dropped", RP_TYPE_INT, "near-cache entries dropped" },
    { "cleared", RP_TYPE_BOOL, "the whole near-cache was cleared (a reconnect, or a message "
      "missed: a gap in a publisher's sequence)" },
};

typedef struct apply_state {
    int64_t dropped;
    int cleared;
} apply_state;

static int apply_advance(rp_op *op, void *state, uint64_t now_ms)
{
    (void)state;
    (void)now_ms;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class apply_class = {
    "cache.near_apply", sizeof(apply_state), apply_advance, NULL, 0, NULL, 0, 0, 0, 0
};

static int apply_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    rp_cache *c = a[0].handle;
    apply_state *s;
    int rc;
    (void)nm;
    if ((rc = rp_op__new(out, rp_cache_client(c), &apply_class, 1, (void **)&s, err)))
        return rc;
    return rp_cache_near_apply(c, a[1].bytes, a[1].len, a[2].bytes, a[2].len, &s->dropped,
                               &s->cleared, err);
}

static int apply_result(const rp_op *op, size_t index, rp_value *f)
{
    const apply_state *s = rp_op__done_state(op, &apply_class);
    (void)index;
    if (!s)
        return RP_ESTATE;
    f[0] = rp_value_int(RP_TYPE_INT, s->dropped);
    f[1] = rp_desc__bool(s->cleared);
    return RP_OK;
}

/* --- cache.info ---------------------------------------------------------------------- */

static const rp_arg_desc self_args[] = { SELF_CACHE };

static const rp_field_desc info_fields[] = {
    { "name", RP_TYPE_BYTES, "the cache's name" },
    { "channel", RP_TYPE_BYTES, "the channel its invalidations are published on" },
    { "ttl", RP_TYPE_MS, "an entry's TTL" },
    { "negative_ttl", RP_TYPE_MS, "a negative entry's TTL (0: none is not cached)" },
    { "jitter", RP_TYPE_MS, "the most added to each TTL" },
    { "stampede", RP_TYPE_ENUM, "the stampede protection" },
    { "lock_ttl", RP_TYPE_MS, "the load lock's TTL" },
    { "stale", RP_TYPE_MS, "swr: how long a stale value is served (as given; 0: ttl)" },
    { "beta", RP_TYPE_FLOAT, "xfetch's beta" },
    { "load_timeout", RP_TYPE_MS, "the longest load whose value is cached" },
    { "versioned", RP_TYPE_BOOL, "fills check the generation" },
    { "near_size", RP_TYPE_INT, "the near-cache's capacity (0: none)" },
    { "near_ttl", RP_TYPE_MS, "the longest a near entry is served" },
    { "near_entries", RP_TYPE_INT, "the near-cache's entries now" },
    { "near_armed", RP_TYPE_BOOL, "the near-cache serves: its subscriber confirmed" },
};

static int info_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_desc__local_op(out, rp_cache_client(a[0].handle), a[0].handle, err);
}

static int info_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_cache *c = rp_desc__local_handle(op);
    const rp_cache_options *o;
    const char *p;
    size_t len;
    int64_t entries;
    int armed;
    (void)index;
    if (!c)
        return RP_ESTATE;
    o = rp_cache_options_of(c);
    p = rp_cache_name(c, &len);
    f[0] = rp_value_bytes(p, len);
    p = rp_cache_channel(c, &len);
    f[1] = rp_value_bytes(p, len);
    f[2] = rp_value_int(RP_TYPE_MS, o->ttl_ms);
    f[3] = rp_value_int(RP_TYPE_MS, o->negative_ttl_ms);
    f[4] = rp_value_int(RP_TYPE_MS, o->jitter_ms);
    f[5] = rp_desc__enum((int64_t)o->stampede, rp_cache_stampede_names);
    f[6] = rp_value_int(RP_TYPE_MS, o->lock_ttl_ms);
    f[7] = rp_value_int(RP_TYPE_MS, o->stale_ms);
    f[8] = rp_value_float(o->beta);
    f[9] = rp_value_int(RP_TYPE_MS, o->load_timeout_ms);
    f[10] = rp_desc__bool(o->versioned);
    f[11] = rp_value_int(RP_TYPE_INT, o->near_size);
    f[12] = rp_value_int(RP_TYPE_MS, o->near_ttl_ms);
    rp_cache_near_stats(c, &entries, &armed);
    f[13] = rp_value_int(RP_TYPE_INT, entries);
    f[14] = rp_desc__bool(armed);
    return RP_OK;
}

#define RESULT RP_RESULT_RECORD, result_fields, N(result_fields)

/* The order matters to cache_make (index 0) and load_begin (index 2). */
const rp_op_desc rp_desc__cache_ops[] = {
    { "cache.new", "new", RP_KIND_CLIENT, RP_KIND_CACHE, 0, new_args, N(new_args),
      RP_RESULT_NONE, NULL, 0, "a cache (no I/O): cache-aside with versioned fills, stampede "
      "protection, tags and an optional near-cache (cache.h)", NULL, cache_make, NULL, NULL,
      RP_DESC_PLAIN },
    { "cache.get", "get", RP_KIND_CACHE, RP_KIND_NONE, 1, get_args, N(get_args), RESULT,
      "reads key: one round trip (a near-cache hit: none); a miss is not an error",
      get_begin, NULL, NULL, cache_result, RP_DESC_PLAIN },
    { "cache.get_or_load", "get_or_load", RP_KIND_CACHE, RP_KIND_NONE, 1, load_args,
      N(load_args), RESULT, "reads key; on a miss (or by the stampede mode) runs the loader and "
      "stores its value unless a write or delete came meanwhile", load_begin, NULL, NULL,
      cache_result, RP_DESC_PLAIN },
    { "cache.set", "set", RP_KIND_CACHE, RP_KIND_NONE, 1, set_args, N(set_args), RESULT,
      "stores value under key (TTL always), bumping its generation and publishing the "
      "invalidation", set_begin, NULL, NULL, cache_result, RP_DESC_PLAIN },
    { "cache.write", "write", RP_KIND_CACHE, RP_KIND_NONE, 1, write_args, N(write_args), RESULT,
      "write-through: the writer (the database) first, then the cache; a failed writer leaves "
      "the cache untouched", write_begin, NULL, NULL, cache_result, RP_DESC_PLAIN },
    { "cache.delete", "delete", RP_KIND_CACHE, RP_KIND_NONE, 1, delete_args, N(delete_args),
      RESULT, "UNLINKs key's entry, bumps its generation (a load in flight will not store) and "
      "publishes the invalidation", delete_begin, NULL, NULL, cache_result, RP_DESC_PLAIN },
    { "cache.invalidate_tags", "invalidate_tags", RP_KIND_CACHE, RP_KIND_NONE, 1, tags_args,
      N(tags_args), RP_RESULT_NONE, NULL, 0, "bumps each tag's version: every entry filled "
      "with an older one reads as a miss", tags_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "cache.near_apply", "near_apply", RP_KIND_CACHE, RP_KIND_NONE, 0, apply_args,
      N(apply_args), RP_RESULT_RECORD, apply_fields, N(apply_fields),
      "hands the near-cache a message of its invalidation subscriber (no I/O)", apply_begin,
      NULL, NULL, apply_result, RP_DESC_PLAIN },
    { "cache.info", "info", RP_KIND_CACHE, RP_KIND_NONE, 0, self_args, N(self_args),
      RP_RESULT_RECORD, info_fields, N(info_fields), "the cache's settings and its near-cache "
      "(no I/O)", info_begin, NULL, NULL, info_result, RP_DESC_PLAIN },
};

const size_t rp_desc__cache_count = N(rp_desc__cache_ops);
