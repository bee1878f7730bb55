/* redpat — caching: cache-aside with negative entries and versioned fills, stampede
 * protection (lock, stale-while-revalidate, XFetch), write-through, tag invalidation, and an
 * in-process near-cache kept coherent by published invalidations.
 *
 * Keys (hash-tagged on the cache's name and the entry's key, so every key of one entry
 * shares a cluster slot; the name is never empty, so neither is the tag):
 *   <ns>:cache:{<name>:<key>}        the entry: a hash (v value | n negative, s swr's stale
 *                                    window, d compute time, t:<tag> tag versions), TTL always
 *   <ns>:cache:{<name>:<key>}:gen    the entry's generation, bumped by every write and
 *                                    delete (lives load_timeout after the last one)
 *   <ns>:cache:{<name>:<key>}:lock   the load lock of the stampede modes (lock_ttl)
 *   <ns>:cache:{<name>:<tag>}:tag    a tag's version (lives as long as an entry may)
 * and the channel <ns>:cache:<name>:inv carries invalidations to near-caches.
 *
 * Reads. A read is first the entry's HGETALL and PTTL (and its tags' GETs) as plain commands:
 * a fresh hit ends there, one round trip at a fraction of a script's server time. A miss, a
 * stale entry or an early recompute goes on to the read script, which re-checks the entry
 * atomically and takes the load lock and the generation with it.
 *
 * Versioned fills. A miss reads the entry's generation (and the server's time) in the same
 * script; the fill after the load is written only if the generation is unchanged and the
 * load took at most load_timeout. A writer's invalidation during the load therefore wins:
 * the loaded (old) value is returned to its caller but not cached. Generations are the
 * server's clock in microseconds, or the last one + 1, so they never repeat even after their
 * key expired.
 *
 * Stampede modes (all take the load lock on a hard miss, so one caller loads):
 *   none    every caller that misses loads (versioned fills still apply)
 *   lock    on a miss one caller takes the lock in the same script that found the miss (so
 *           its re-check is atomic) and loads; the others poll with backoff (2 ms doubling
 *           to 10 ms, jittered) and get the value as soon as it is written; when the holder
 *           fails it releases the lock, when it dies the lock expires, and the next poll of
 *           a waiter takes it and loads itself
 *   swr     entries live ttl + stale and are fresh for ttl: once their TTL left is within
 *           stale (on the server's clock: PTTL), the first caller takes the lock and
 *           refreshes, the others get the stale value at once
 *   xfetch  the entry keeps its compute time delta; a reader recomputes early when
 *           delta * beta * -ln(random) >= the entry's remaining TTL (Vattani et al.)
 *
 * Tags. An entry records, at its fill, the versions of its tags (read in the miss round); a
 * read compares them with the tags' versions read in the same round, and a mismatch is a
 * miss. Invalidating a tag bumps its version: one command per tag, no set of members, so
 * nothing grows with the entries, and each script stays in one slot.
 *
 * Near-cache (near_size > 0): an LRU of at most near_size entries in the handle, each kept
 * at most near_ttl, answering get / get_or_load without a round trip. It serves only while
 * the handle is "armed": a subscriber of rp_cache_channel feeds every message it gets to
 * rp_cache_near_apply; its subscribe confirmation arms, a reconnect notice (the
 * subscription is live again, but messages were missed) clears and stays armed, an
 * unsubscribe clears and disarms. Invalidations carry <publisher id>:<sequence>, so a
 * message that shows a gap in a publisher's sequence clears the near-cache too. A handle's
 * own writes drop its own copy at once, and again when their message comes back (another
 * thread's read may have refilled it meanwhile). The near-cache is guarded by a mutex: one
 * handle may be shared by threads.
 */
#ifndef REDPAT_CACHE_H
#define REDPAT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_cache rp_cache;

typedef enum rp_cache_stampede {
    RP_CACHE_NONE = 0,
    RP_CACHE_LOCK = 1,
    RP_CACHE_SWR = 2,
    RP_CACHE_XFETCH = 3
} rp_cache_stampede;

#define RP_CACHE_NAME_MAX 128
#define RP_CACHE_KEY_MAX 65536
/* The largest value: Redis' own largest string (proto-max-bulk-len's default). */
#define RP_CACHE_VALUE_MAX (512 * 1024 * 1024)
/* The most tags of one entry / one invalidation (each is a key read in the same round). */
#define RP_CACHE_TAGS_MAX 16
/* TTLs and timeouts: the scripts add them to the server's clock in ms, in doubles. */
#define RP_CACHE_TTL_MS_MAX ((int64_t)1 << 40)
/* The most entries of a near-cache. */
#define RP_CACHE_NEAR_MAX 10000000

typedef struct rp_cache_options {
    int64_t ttl_ms;          /* 1..RP_CACHE_TTL_MS_MAX: an entry's TTL (swr: its freshness) */
    int64_t negative_ttl_ms; /* 0..: a negative entry's TTL; 0: "none" is not cached */
    int64_t jitter_ms;       /* 0..ttl: each TTL gets a uniform [0, jitter] added */
    rp_cache_stampede stampede;
    int64_t lock_ttl_ms;     /* 1..load_timeout: the load lock's TTL (a dead loader's wait) */
    int64_t stale_ms;        /* swr: how long past ttl a stale value is served; 0: ttl */
    double beta;             /* xfetch: > 0; 1.0 is the paper's; larger recomputes earlier */
    int64_t load_timeout_ms; /* 1..: a fill this long after its miss is not cached */
    int versioned;           /* non-zero (default): fills check the generation */
    int64_t near_size;       /* 0..RP_CACHE_NEAR_MAX entries; 0: no near-cache */
    int64_t near_ttl_ms;     /* 1..: the longest a near entry is served */
} rp_cache_options;

#define RP_CACHE_OPTIONS_INIT { 0, 30000, 0, RP_CACHE_LOCK, 5000, 0, 1.0, 60000, 1, 0, 1000 }

/* Makes a cache handle over client (borrowed: it must outlive the cache). name: 1..
 * RP_CACHE_NAME_MAX bytes without '{', '}' or NUL. Every option is checked; no I/O. */
int rp_cache_new(rp_cache **out, rp_client *client, const void *name, size_t len,
                 const rp_cache_options *options, rp_error *err);
void rp_cache_free(rp_cache *cache);
const rp_cache_options *rp_cache_options_of(const rp_cache *cache);
const char *rp_cache_name(const rp_cache *cache, size_t *len);
rp_client *rp_cache_client(const rp_cache *cache);
/* The channel invalidations are published on (NUL-terminated; borrowed from the handle). */
const char *rp_cache_channel(const rp_cache *cache, size_t *len);
/* The stampede modes' names ("none", "lock", "swr", "xfetch"), NULL-terminated. */
extern const char *const rp_cache_stampede_names[];

/* Tags of an entry or an invalidation: count (ptr, len) pairs, each 1..RP_CACHE_KEY_MAX. */
typedef struct rp_cache_tags {
    const void *const *items;
    const size_t *lens;
    size_t count; /* 0..RP_CACHE_TAGS_MAX */
} rp_cache_tags;

typedef struct rp_cache_result {
    const char *value; /* the value (borrowed from the op); NULL when negative or a miss */
    size_t value_len;
    int hit;           /* answered from the cache (Redis or near) without loading */
    int negative;      /* the answer is "none": a negative entry, or the loader said none */
    int stale;         /* swr: a stale value, served while another caller refreshes */
    int loaded;        /* this call ran the loader */
    int stored;        /* the loaded / written value went to the cache (0: an invalidation
                          since the miss, a load past load_timeout, or negative_ttl 0) */
    int near;          /* answered from the near-cache: no round trip */
    int64_t ttl_ms;    /* the entry's Redis TTL left when read (0: none) */
    int64_t waits;     /* lock / swr: polls while another caller loaded */
} rp_cache_result;

/* The callback arguments the ops CALL (descriptor indexes: desc_cache.c keeps them). */
#define RP_CACHE_LOADER_ARG 2 /* get_or_load: loader(key) -> value, or nothing for "none" */
#define RP_CACHE_WRITER_ARG 3 /* write: writer(key, value) -> anything; fails to refuse */

/* Reads key: one round trip of plain commands (near-cache hit: none). tags: the tags the reader expects the
 * entry to carry (may be NULL): their versions are read in the same round; an entry with
 * other tags costs one more round. DONE with a miss, a hit, or a negative hit. */
int rp_cache_get_op(rp_op **out, rp_cache *cache, const void *key, size_t len,
                    const rp_cache_tags *tags, rp_error *err);
/* Reads key; on a miss (or a stale / early-expiring entry, by the stampede mode) CALLs the
 * loader with the key, stores what it returns (nothing: a negative entry) with the tags'
 * versions, and answers it. random: xfetch's uniform draw in (0, 1] (0: the core draws).
 * A loader that fails (RP_ECALLBACK) or is cancelled releases the lock and stores nothing. */
int rp_cache_load_op(rp_op **out, rp_cache *cache, const void *key, size_t len,
                     const rp_cache_tags *tags, double random, rp_error *err);
/* Stores value (NULL: a negative entry) under key with the tags' versions, bumping its
 * generation (a load in flight will not overwrite it) and publishing the invalidation. */
int rp_cache_set_op(rp_op **out, rp_cache *cache, const void *key, size_t len,
                    const void *value, size_t value_len, const rp_cache_tags *tags,
                    rp_error *err);
/* Write-through: CALLs the writer with (key, value) first; only when it succeeds, stores as
 * rp_cache_set_op. A failed writer (RP_ECALLBACK) leaves the cache untouched. */
int rp_cache_write_op(rp_op **out, rp_cache *cache, const void *key, size_t len,
                      const void *value, size_t value_len, const rp_cache_tags *tags,
                      rp_error *err);
/* UNLINKs key's entry, bumps its generation, publishes the invalidation. result.hit: an
 * entry existed. */
int rp_cache_delete_op(rp_op **out, rp_cache *cache, const void *key, size_t len,
                       rp_error *err);
/* Bumps each tag's version (every entry filled with an older one reads as a miss) and
 * publishes the invalidations. */
int rp_cache_invalidate_tags_op(rp_op **out, rp_cache *cache, const rp_cache_tags *tags,
                                rp_error *err);
/* The result of a DONE get / load / set / write / delete op. */
int rp_cache_result_of(const rp_op *op, rp_cache_result *out);

/* What a subscriber of rp_cache_channel got, for the near-cache: kind is the subscription
 * message's kind ("message", "subscribe", "unsubscribe", "reconnect", ...), data its payload.
 * No I/O. *dropped: near entries dropped; *cleared: the whole near-cache was cleared (a
 * reconnect, or a gap in a publisher's sequence; a message that is not one of this
 * library's invalidations clears it too: it cannot vouch for what that meant). */
int rp_cache_near_apply(rp_cache *cache, const char *kind, size_t kind_len, const char *data,
                        size_t data_len, int64_t *dropped, int *cleared, rp_error *err);
/* The near-cache's entries now, and whether it is armed. */
void rp_cache_near_stats(rp_cache *cache, int64_t *entries, int *armed);

/* XFetch's decision: recompute now when delta_ms * beta * -ln(random) >= ttl_ms (random in
 * (0, 1]). Exposed for tests over a simulated clock. */
int rp_cache_xfetch_early(int64_t delta_ms, double beta, int64_t ttl_ms, double random);

#ifdef __cplusplus
}
#endif
#endif
