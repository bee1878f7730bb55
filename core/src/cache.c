/* Caches: the handle, its options, its keys and its invalidation messages. The ops are in
 * cache_op.c, the near-cache in cache_near.c, the Redis side in core/scripts/cache_*.lua. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cache_internal.h"

const char *const rp_cache_stampede_names[] = { "none", "lock", "swr", "xfetch", NULL };

static int check_ms(const char *what, int64_t v, int64_t lo, int64_t hi, rp_error *err)
{
    if (v < lo || v > hi)
        return rp_error__set(err, RP_EINVAL, "%s must be %" PRId64 "..%" PRId64 " ms (got %"
                             PRId64 ")", what, lo, hi, v);
    return RP_OK;
}

static int check_options(const rp_cache_options *o, rp_error *err)
{
    int rc;
    if ((rc = check_ms("ttl", o->ttl_ms, 1, RP_CACHE_TTL_MS_MAX, err)) ||
        (rc = check_ms("negative_ttl", o->negative_ttl_ms, 0, RP_CACHE_TTL_MS_MAX, err)) ||
        (rc = check_ms("load_timeout", o->load_timeout_ms, 1, RP_CACHE_TTL_MS_MAX, err)) ||
        (rc = check_ms("lock_ttl", o->lock_ttl_ms, 1, RP_CACHE_TTL_MS_MAX, err)) ||
        (rc = check_ms("stale", o->stale_ms, 0, RP_CACHE_TTL_MS_MAX, err)) ||
        (rc = check_ms("near_ttl", o->near_ttl_ms, 1, RP_CACHE_TTL_MS_MAX, err)))
        return rc;
    if (o->jitter_ms < 0 || o->jitter_ms > o->ttl_ms)
        return rp_error__set(err, RP_EINVAL, "jitter must be 0..ttl (%" PRId64 " ms) (got %"
                             PRId64 " ms)", o->ttl_ms, o->jitter_ms);
    if (o->lock_ttl_ms > o->load_timeout_ms)
        return rp_error__set(err, RP_EINVAL, "lock_ttl must be <= load_timeout (got %" PRId64
                             " ms > %" PRId64 " ms): a load the lock waits for must be "
                             "cacheable", o->lock_ttl_ms, o->load_timeout_ms);
    if ((unsigned)o->stampede > RP_CACHE_XFETCH)
        return rp_error__set(err, RP_EINVAL, "stampede must be none, lock, swr or xfetch");
    if (!(o->beta > 0) || !isfinite(o->beta) || o->beta > 1e6)
        return rp_error__set(err, RP_EINVAL, "beta must be a number > 0 and <= 1e6 (got %g)",
                             o->beta);
    if (o->near_size < 0 || o->near_size > RP_CACHE_NEAR_MAX)
        return rp_error__set(err, RP_EINVAL, "near_size must be 0..%d entries (got %" PRId64
                             ")", RP_CACHE_NEAR_MAX, o->near_size);
    return RP_OK;
}

int rp_cache_new(rp_cache **out, rp_client *client, const void *name, size_t len,
                 const rp_cache_options *options, rp_error *err)
{
    static const char hex[] = "0123456789abcdef";
    const rp_allocator *a;
    unsigned char raw[RP_CACHE_PUBLISHER_CHARS / 2];
    rp_cache *c;
    size_t i;
    int rc;
    if (!out || !client || !options)
        return rp_error__set(err, RP_EINVAL, "out, client and options must not be NULL");
    *out = NULL;
    if (!name || len == 0 || len > RP_CACHE_NAME_MAX)
        return rp_error__set(err, RP_EINVAL, "cache name must be 1..%d bytes (got %zu)",
                             RP_CACHE_NAME_MAX, name ? len : 0);
    /* The name goes into key names as text: a brace would move the hash tag, a NUL end it. */
    if (memchr(name, '{', len) || memchr(name, '}', len) || memchr(name, '\0', len))
        return rp_error__set(err, RP_EINVAL, "cache name must not contain '{', '}' or NUL");
    if ((rc = check_options(options, err)))
        return rc;
    if (rp_random__bytes(raw, sizeof raw) != RP_OK)
        return rp_error__set(err, RP_ESTATE, "no randomness for the cache's publisher id");
    a = rp_client__allocator(client);
    if (!(c = rp_alloc__calloc(a, 1, sizeof *c)))
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the cache");
    c->client = client;
    c->given = c->o = *options;
    if (c->o.stampede == RP_CACHE_SWR && c->o.stale_ms == 0)
        c->o.stale_ms = c->o.ttl_ms;
    memcpy(c->name, name, len);
    c->name_len = len;
    c->channel_len = (size_t)snprintf(c->channel, sizeof c->channel, "%s:cache:%.*s:inv",
                                      rp_client_namespace(client), (int)len, (const char *)name);
    for (i = 0; i < sizeof raw; i++) {
        c->publisher[2 * i] = hex[raw[i] >> 4];
        c->publisher[2 * i + 1] = hex[raw[i] & 15];
    }
    if (c->o.near_size > 0 &&
        (rc = rp_near__new(&c->near, a, (size_t)c->o.near_size))) {
        rp_alloc__free(a, c);
        return rp_error__set(err, rc, "out of memory creating the near-cache");
    }
    *out = c;
    return RP_OK;
}

void rp_cache_free(rp_cache *c)
{
    if (!c)
        return;
    rp_near__free(c->near);
    rp_alloc__free(rp_client__allocator(c->client), c);
}

const rp_cache_options *rp_cache_options_of(const rp_cache *c) { return &c->given; }
rp_client *rp_cache_client(const rp_cache *c) { return c->client; }

const char *rp_cache_name(const rp_cache *c, size_t *len)
{
    if (len)
        *len = c->name_len;
    return c->name;
}

const char *rp_cache_channel(const rp_cache *c, size_t *len)
{
    if (len)
        *len = c->channel_len;
    return c->channel;
}

int rp_cache__key(const rp_cache *c, const void *id, size_t len, const char *suffix,
                  rp_buf *out)
{
    const rp_allocator *a = rp_client__allocator(c->client);
    const char *ns = rp_client_namespace(c->client);
    int rc;
    out->len = 0;
    if ((rc = rp_buf__append(a, out, ns, strlen(ns))) ||
        (rc = rp_buf__append(a, out, ":cache:{", 8)) ||
        (rc = rp_buf__append(a, out, c->name, c->name_len)) ||
        (rc = rp_buf__append(a, out, ":", 1)) ||
        (rc = rp_buf__append(a, out, id, len)) ||
        (rc = rp_buf__append(a, out, "}", 1)) ||
        (rc = rp_buf__append(a, out, suffix, strlen(suffix))))
        return rc;
    return RP_OK;
}

int rp_cache__message(rp_cache *c, char what, const void *id, size_t len, rp_buf *out)
{
    const rp_allocator *a = rp_client__allocator(c->client);
    char head[RP_CACHE_PUBLISHER_CHARS + RP_I64_CHARS + 8];
    uint64_t seq = __atomic_add_fetch(&c->seq, 1, __ATOMIC_RELAXED);
    size_t n = 0;
    int rc;
    memcpy(head, c->publisher, RP_CACHE_PUBLISHER_CHARS);
    n = RP_CACHE_PUBLISHER_CHARS;
    head[n++] = ':';
    n += rp_fmt__i64(head + n, (int64_t)(seq & INT64_MAX));
    head[n++] = ':';
    head[n++] = what;
    head[n++] = ':';
    out->len = 0;
    if ((rc = rp_buf__append(a, out, head, n)) || (rc = rp_buf__append(a, out, id, len)))
        return rc;
    return RP_OK;
}

int64_t rp_cache__max_lifetime(const rp_cache *c)
{
    int64_t ttl = c->o.ttl_ms > c->o.negative_ttl_ms ? c->o.ttl_ms : c->o.negative_ttl_ms;
    return ttl + c->o.jitter_ms + c->o.stale_ms;
}

int rp_cache_xfetch_early(int64_t delta_ms, double beta, int64_t ttl_ms, double random)
{
    if (ttl_ms <= 0)
        return 1;
    if (!(random > 0) || random > 1 || delta_ms <= 0)
        return 0;
    /* -ln(random) is exponential with mean 1: recompute with probability exp(-ttl/(d*beta)) */
    return (double)delta_ms * beta * -log(random) >= (double)ttl_ms;
}

int rp_cache_near_apply(rp_cache *c, const char *kind, size_t kind_len, const char *data,
                        size_t data_len, int64_t *dropped, int *cleared, rp_error *err)
{
    if (dropped)
        *dropped = 0;
    if (cleared)
        *cleared = 0;
    if (!c || !kind)
        return rp_error__set(err, RP_EINVAL, "cache and kind must not be NULL");
    if (!c->near)
        return RP_OK; /* nothing to keep coherent */
    return rp_near__apply(c->near, kind, kind_len, data, data_len, dropped, cleared, err);
}

void rp_cache_near_stats(rp_cache *c, int64_t *entries, int *armed)
{
    if (entries)
        *entries = 0;
    if (armed)
        *armed = 0;
    if (c && c->near)
        rp_near__stats(c->near, entries, armed);
}
