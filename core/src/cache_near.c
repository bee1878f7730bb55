/* The near-cache: an in-process LRU of a cache's entries (size- and TTL-bounded) that
 * answers without a round trip while its invalidation subscriber vouches for it, and the
 * bookkeeping of the invalidations' sequence numbers that tells it when it cannot. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"

/* Publishers whose sequence is followed; one past them evicts the least recently heard
 * (its next message is then taken as a fresh start: a gap of an evicted one goes unseen,
 * but a lost message needs a lost connection, which the subscriber sees as a reconnect). */
#define PUBLISHERS_MAX 256

typedef struct near_entry {
    struct near_entry *chain;      /* the bucket's next */
    struct near_entry *newer, *older;
    uint64_t hash;
    uint64_t expires_ms;
    int negative;
    size_t key_len, value_len, tags_len;
    char *key;                     /* key, value, then tags as (len, bytes) records */
} near_entry;

typedef struct publisher {
    char id[RP_CACHE_PUBLISHER_CHARS];
    uint64_t last;                 /* its last sequence number heard */
    uint64_t heard;                /* when (a tick of this table), for the eviction */
} publisher;

struct rp_near {
    const rp_allocator *a;
    pthread_mutex_t mu;
    near_entry **buckets;
    size_t nbuckets;               /* a power of two, >= 2 * capacity */
    size_t count, capacity;
    near_entry *newest, *oldest;
    uint64_t epoch;                /* invalidations applied (atomic reads) */
    int armed;
    publisher publishers[PUBLISHERS_MAX];
    size_t npublishers;
    uint64_t tick;
};

static uint64_t hash_bytes(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;
    for (i = 0; i < len; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

int rp_near__new(rp_near **out, const rp_allocator *a, size_t capacity)
{
    rp_near *n = rp_alloc__calloc(a, 1, sizeof *n);
    size_t nb = 16;
    if (!n)
        return RP_ENOMEM;
    while (nb < 2 * capacity)
        nb <<= 1;
    n->a = a;
    n->capacity = capacity;
    n->nbuckets = nb;
    if (!(n->buckets = rp_alloc__calloc(a, nb, sizeof *n->buckets)) ||
        pthread_mutex_init(&n->mu, NULL) != 0) {
        rp_alloc__free(a, n->buckets);
        rp_alloc__free(a, n);
        return RP_ENOMEM;
    }
    *out = n;
    return RP_OK;
}

static void unlink_entry(rp_near *n, near_entry *e)
{
    near_entry **p = &n->buckets[e->hash & (n->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    if (e->newer) e->newer->older = e->older; else n->newest = e->older;
    if (e->older) e->older->newer = e->newer; else n->oldest = e->newer;
    n->count--;
    rp_alloc__free(n->a, e);
}

static void clear_all(rp_near *n)
{
    while (n->oldest)
        unlink_entry(n, n->oldest);
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_RELEASE);
}

void rp_near__free(rp_near *n)
{
    if (!n)
        return;
    clear_all(n);
    pthread_mutex_destroy(&n->mu);
    rp_alloc__free(n->a, n->buckets);
    rp_alloc__free(n->a, n);
}

static near_entry *find(rp_near *n, const void *key, size_t len, uint64_t h)
{
    near_entry *e = n->buckets[h & (n->nbuckets - 1)];
    for (; e; e = e->chain)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static void to_front(rp_near *n, near_entry *e)
{
    if (n->newest == e)
        return;
    if (e->newer) e->newer->older = e->older;
    if (e->older) e->older->newer = e->newer; else n->oldest = e->newer;
    e->newer = NULL;
    e->older = n->newest;
    if (n->newest) n->newest->newer = e;
    n->newest = e;
    if (!n->oldest) n->oldest = e;
}

uint64_t rp_near__epoch(rp_near *n) { return __atomic_load_n(&n->epoch, __ATOMIC_ACQUIRE); }

int rp_near__get(rp_near *n, const void *key, size_t len, uint64_t now_ms, rp_buf *value,
                 int *negative, int64_t *left_ms)
{
    uint64_t h = hash_bytes(key, len);
    near_entry *e;
    int found = 0;
    pthread_mutex_lock(&n->mu);
    if (n->armed && (e = find(n, key, len, h)) != NULL) {
        if (e->expires_ms <= now_ms) {
            unlink_entry(n, e);
        } else if (rp_buf__append(n->a, value, e->key + e->key_len, e->value_len) == RP_OK) {
            to_front(n, e);
            *negative = e->negative;
            *left_ms = (int64_t)(e->expires_ms - now_ms);
            found = 1;
        }
    }
    pthread_mutex_unlock(&n->mu);
    return found;
}

void rp_near__put(rp_near *n, uint64_t epoch, const void *key, size_t len, const void *value,
                  size_t value_len, const rp_buf *tags, size_t ntags, uint64_t now_ms,
                  int64_t ttl_ms)
{
    uint64_t h = hash_bytes(key, len);
    size_t i, tags_len = 0, size;
    near_entry *e, *old;
    char *p;
    for (i = 0; i < ntags; i++)
        tags_len += sizeof(size_t) + tags[i].len;
    if (ttl_ms <= 0 || !rp_size__add(sizeof *e, len, &size) ||
        !rp_size__add(size, value_len, &size) || !rp_size__add(size, tags_len, &size))
        return;
    if (!(e = rp_alloc__malloc(n->a, size)))
        return; /* a near-cache is best effort: no room, no copy */
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->expires_ms = now_ms + (uint64_t)ttl_ms;
    e->negative = value == NULL;
    e->key_len = len;
    e->value_len = value ? value_len : 0;
    e->tags_len = tags_len;
    e->key = p = (char *)(e + 1);
    memcpy(p, key, len);
    if (e->value_len)
        memcpy(p + len, value, value_len);
    p += len + e->value_len;
    for (i = 0; i < ntags; i++) {
        memcpy(p, &tags[i].len, sizeof(size_t));
        memcpy(p + sizeof(size_t), tags[i].data, tags[i].len);
        p += sizeof(size_t) + tags[i].len;
    }
    pthread_mutex_lock(&n->mu);
    if (!n->armed || n->epoch != epoch) {
        /* an invalidation came since the read began: the value may be the old one */
        pthread_mutex_unlock(&n->mu);
        rp_alloc__free(n->a, e);
        return;
    }
    if ((old = find(n, key, len, h)) != NULL)
        unlink_entry(n, old);
    while (n->count >= n->capacity && n->oldest)
        unlink_entry(n, n->oldest);
    e->chain = n->buckets[h & (n->nbuckets - 1)];
    n->buckets[h & (n->nbuckets - 1)] = e;
    e->older = n->newest;
    if (n->newest) n->newest->newer = e;
    n->newest = e;
    if (!n->oldest) n->oldest = e;
    n->count++;
    pthread_mutex_unlock(&n->mu);
}

static int64_t drop_locked(rp_near *n, const void *key, size_t len)
{
    near_entry *e = find(n, key, len, hash_bytes(key, len));
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_RELEASE);
    if (!e)
        return 0;
    unlink_entry(n, e);
    return 1;
}

static int has_tag(const near_entry *e, const void *tag, size_t len)
{
    const char *p = e->key + e->key_len + e->value_len, *end = p + e->tags_len;
    size_t l;
    while (p < end) {
        memcpy(&l, p, sizeof l);
        if (l == len && memcmp(p + sizeof l, tag, len) == 0)
            return 1;
        p += sizeof l + l;
    }
    return 0;
}

static int64_t drop_tag_locked(rp_near *n, const void *tag, size_t len)
{
    near_entry *e = n->oldest, *next;
    int64_t dropped = 0;
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_RELEASE);
    for (; e; e = next) {
        next = e->newer;
        if (has_tag(e, tag, len)) {
            unlink_entry(n, e);
            dropped++;
        }
    }
    return dropped;
}

void rp_near__drop(rp_near *n, const void *key, size_t len)
{
    pthread_mutex_lock(&n->mu);
    drop_locked(n, key, len);
    pthread_mutex_unlock(&n->mu);
}

void rp_near__drop_tag(rp_near *n, const void *tag, size_t len)
{
    pthread_mutex_lock(&n->mu);
    drop_tag_locked(n, tag, len);
    pthread_mutex_unlock(&n->mu);
}

/* Follows the sequence of the message's publisher: 1 when a message went missing. */
static int gap(rp_near *n, const char *id, uint64_t seq)
{
    publisher *p = NULL;
    size_t i;
    n->tick++;
    for (i = 0; i < n->npublishers && !p; i++)
        if (memcmp(n->publishers[i].id, id, RP_CACHE_PUBLISHER_CHARS) == 0)
            p = &n->publishers[i];
    if (!p) { /* first heard since armed: its earlier messages came before, or never */
        if (n->npublishers < PUBLISHERS_MAX) {
            p = &n->publishers[n->npublishers++];
        } else {
            p = &n->publishers[0];
            for (i = 1; i < n->npublishers; i++)
                if (n->publishers[i].heard < p->heard)
                    p = &n->publishers[i];
        }
        memcpy(p->id, id, RP_CACHE_PUBLISHER_CHARS);
        p->last = seq;
        p->heard = n->tick;
        return 0;
    }
    p->heard = n->tick;
    if (seq <= p->last)
        return 0; /* overtaken by a later one (two threads' writes): already accounted */
    i = seq != p->last + 1;
    p->last = seq;
    return (int)i;
}

static int is_kind(const char *kind, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(kind, name, len) == 0;
}

/* "<16 hex>:<seq>:<k|t>:<id>" -> its parts; 0 when data is not one. */
static int parse(const char *data, size_t len, uint64_t *seq, char *what, const char **id,
                 size_t *id_len)
{
    size_t i = RP_CACHE_PUBLISHER_CHARS + 1;
    uint64_t v = 0;
    if (!data || len < i + 4 || data[i - 1] != ':')
        return 0;
    for (; i < len && data[i] >= '0' && data[i] <= '9' && v < UINT64_MAX / 10; i++)
        v = v * 10 + (uint64_t)(data[i] - '0');
    if (i + 3 > len || data[i] != ':' || (data[i + 1] != 'k' && data[i + 1] != 't') ||
        data[i + 2] != ':')
        return 0;
    *seq = v;
    *what = data[i + 1];
    *id = data + i + 3;
    *id_len = len - (i + 3);
    return 1;
}

int rp_near__apply(rp_near *n, const char *kind, size_t kind_len, const char *data,
                   size_t data_len, int64_t *dropped, int *cleared, rp_error *err)
{
    const char *id;
    size_t id_len;
    uint64_t seq;
    char what;
    (void)err;
    pthread_mutex_lock(&n->mu);
    if (is_kind(kind, kind_len, "subscribe") || is_kind(kind, kind_len, "psubscribe")) {
        n->armed = 1;
    } else if (is_kind(kind, kind_len, "message") || is_kind(kind, kind_len, "pmessage")) {
        if (!parse(data, data_len, &seq, &what, &id, &id_len)) {
            /* not ours: whatever it meant, nothing here can be vouched for */
            *dropped = (int64_t)n->count;
            clear_all(n);
            *cleared = 1;
        } else if (gap(n, data, seq)) {
            *dropped = (int64_t)n->count;
            clear_all(n);
            *cleared = 1;
        } else {
            /* (the handle's own messages drop too: its write dropped its copy when it
             * began, but a read of another thread may have refilled it from Redis before
             * the write got there) */
            *dropped = what == 'k' ? drop_locked(n, id, id_len) : drop_tag_locked(n, id, id_len);
        }
    } else {
        /* A reconnect notice comes once the subscription is live again (the listen op
         * re-subscribed first): what was published meanwhile was missed, so everything
         * goes, and the near-cache serves again from here. An unsubscribe (or anything
         * unknown) ends the vouching. */
        *dropped = (int64_t)n->count;
        clear_all(n);
        n->armed = is_kind(kind, kind_len, "reconnect");
        n->npublishers = 0;
        *cleared = 1;
    }
    pthread_mutex_unlock(&n->mu);
    return RP_OK;
}

void rp_near__stats(rp_near *n, int64_t *entries, int *armed)
{
    pthread_mutex_lock(&n->mu);
    if (entries)
        *entries = (int64_t)n->count;
    if (armed)
        *armed = n->armed;
    pthread_mutex_unlock(&n->mu);
}
