/* redpat — what the cache's files share: the handle, its keys, its near-cache. */
#ifndef REDPAT_CACHE_INTERNAL_H
#define REDPAT_CACHE_INTERNAL_H

#include "op_internal.h"
#include "redpat/cache.h"

typedef struct rp_near rp_near;

/* "<16 hex digits>": a handle's publisher id in its invalidation messages. */
#define RP_CACHE_PUBLISHER_CHARS 16
/* "<ns>:cache:<name>:inv" */
#define RP_CACHE_CHANNEL_MAX (RP_CLIENT_NAMESPACE_MAX + RP_CACHE_NAME_MAX + 16)

struct rp_cache {
    rp_client *client;
    rp_cache_options o;         /* as checked: stale_ms resolved for swr */
    rp_cache_options given;     /* as the caller gave them */
    char name[RP_CACHE_NAME_MAX + 1];
    size_t name_len;
    char channel[RP_CACHE_CHANNEL_MAX + 1];
    size_t channel_len;
    char publisher[RP_CACHE_PUBLISHER_CHARS + 1];
    uint64_t seq;               /* the last invalidation's sequence number (atomic) */
    rp_near *near;              /* NULL without a near-cache */
};

/* <ns>:cache:{<name>:<id>}<suffix> into out (an entry's key with suffix "", ":gen",
 * ":lock"; a tag's with ":tag"). */
RP_INTERNAL int rp_cache__key(const rp_cache *c, const void *id, size_t len,
                              const char *suffix, rp_buf *out);
/* The next invalidation message "<publisher>:<seq>:<what>:<id>" (what: 'k' a key, 't' a
 * tag) into out. */
RP_INTERNAL int rp_cache__message(rp_cache *c, char what, const void *id, size_t len,
                                  rp_buf *out);
/* How long an entry may live at most (its version of a tag must outlive it). */
RP_INTERNAL int64_t rp_cache__max_lifetime(const rp_cache *c);

/* --- near-cache (cache_near.c) --- */
RP_INTERNAL int rp_near__new(rp_near **out, const rp_allocator *a, size_t capacity);
RP_INTERNAL void rp_near__free(rp_near *n);
/* A counter of the invalidations applied: a read that began before a change may not fill. */
RP_INTERNAL uint64_t rp_near__epoch(rp_near *n);
/* Looks key up at now_ms: 1 with a copy of the value appended to value (negative: *negative
 * 1, nothing appended) and its expiry left, 0 when absent, expired or not armed. */
RP_INTERNAL int rp_near__get(rp_near *n, const void *key, size_t len, uint64_t now_ms,
                             rp_buf *value, int *negative, int64_t *left_ms);
/* Keeps key's value (NULL: negative) until now_ms + ttl_ms unless an invalidation was
 * applied since epoch, or the near-cache is not armed. tags: what invalidates it too. */
RP_INTERNAL void rp_near__put(rp_near *n, uint64_t epoch, const void *key, size_t len,
                              const void *value, size_t value_len, const rp_buf *tags,
                              size_t ntags, uint64_t now_ms, int64_t ttl_ms);
/* Drops key (this handle's own write or delete). */
RP_INTERNAL void rp_near__drop(rp_near *n, const void *key, size_t len);
/* Drops every entry carrying tag. */
RP_INTERNAL void rp_near__drop_tag(rp_near *n, const void *tag, size_t len);
/* Applies a subscriber's message (rp_cache_near_apply). */
RP_INTERNAL int rp_near__apply(rp_near *n, const char *kind, size_t kind_len, const char *data,
                               size_t data_len, int64_t *dropped, int *cleared, rp_error *err);
RP_INTERNAL void rp_near__stats(rp_near *n, int64_t *entries, int *armed);

#endif
