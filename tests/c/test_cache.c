/* The cache against a real redis-server (REDPAT_TEST_URL from tests/harness/harness.py, or a
 * private server of the C harness when run alone), with threads:
 *  - stampede: 200 threads call get_or_load on one expired hot key, the loader (a C
 *    callback through rp_client_drive's hooks) taking 50 ms: it runs exactly once, in the
 *    lock mode and in swr (a hard miss, and a stale entry), and every thread gets the value;
 *    the waiters' latencies are printed (timing is the bench's job: only correctness is
 *    asserted, with a generous bound);
 *  - the stale-fill race, made deterministic: the loader deletes (or writes) the key
 *    through another cache handle before it returns: the loaded value is returned, not
 *    stored (versioned), or stored over the newer one (versioned off: the race the
 *    generation closes);
 *  - a holder that dies: its loader blocks past lock_ttl; the other callers fall back
 *    after about lock_ttl, one of them loads (loader count 2) and all get its value; in
 *    swr the others get the stale value at once meanwhile, and refresh after lock_ttl;
 *  - an entry stale by its tag under 200 callers (one reload), xfetch's recorded compute
 *    time and early recompute, none (negative entries), failing loaders and writers, and
 *    a full Redis (maxmemory: values returned, nothing stored, no lock left);
 *  - the near-cache fed by a real subscription (the frontends' part, in C): another
 *    handle's write reaches it; 16 readers share the handle while another writes; after
 *    the writes every key answers its last one (no stale near entry survives).
 * Each thread drives its ops over a client of its own; the cache handle (and the client
 * its ops are made from, which does no I/O itself) is shared by all of them. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock_test_util.h"

#define THREADS 200
#define LOAD_MS 50

static char url[256];

/* A failure that lets the other scenarios run (the test still fails at its end). */
static int late_failures;
#define LATE_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            late_failures++;                                                               \
        }                                                                                  \
    } while (0)

/* --- the side channel: plain commands over a client of the test's own ---------------- */

static rp_client *side;

static long long side_int(int argc, const char *const *argv)
{
    rp_reply *r = NULL;
    rp_error e;
    long long v = -1;
    int rc = rp_client_command(side, argc, argv, NULL, &r, &e);
    RP_CHECK(rc == RP_OK, "%s: %s", argv[0], e.message);
    if (r->type == RP_REPLY_INTEGER)
        v = r->integer;
    rp_reply_free(r);
    return v;
}

static void side_del(const char *key)
{
    const char *argv[] = { "DEL", key };
    side_int(2, argv);
}

static long long side_exists(const char *key)
{
    const char *argv[] = { "EXISTS", key };
    return side_int(2, argv);
}

/* --- the caches ---------------------------------------------------------------------- */

/* The client the cache (and so every op) is made from: the ops' namespace, scripts,
 * allocator and endpoint. It does no I/O itself (each thread lends its own connection); it
 * has the URL because an op's target is its maker's endpoint (a connectionless maker fails
 * every round: "the op's client has no endpoint for this target"). */
static rp_client *maker;

static rp_cache *cache_new(const char *name, rp_cache_stampede mode, int64_t ttl,
                           int64_t lock_ttl, int versioned)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    rp_error e;
    int rc;
    o.ttl_ms = ttl;
    o.stampede = mode;
    o.lock_ttl_ms = lock_ttl;
    o.versioned = versioned;
    rc = rp_cache_new(&c, maker, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_cache_new: %s", e.message);
    return c;
}

/* The loaders. Each call runs one in the thread that drives the op. */
typedef enum loader_kind {
    LOAD_SLOW,      /* sleeps LOAD_MS, returns "v<n>" (n: this cache's load count) */
    LOAD_BLOCK,     /* announces it runs, then blocks until released: a holder that died */
    LOAD_DELETE,    /* deletes the key through another handle, then returns "loaded" */
    LOAD_WRITE,     /* writes "newer" through another handle, then returns "loaded" */
    LOAD_NONE,      /* returns nothing: "none" (a negative entry) */
    LOAD_FAIL       /* fails (RP_ECALLBACK "no such row") */
} loader_kind;

typedef struct shared {
    int loads;                /* loader calls (atomic) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int blocked_running;      /* LOAD_BLOCK: the holder is in its loader */
    int release_blocked;      /* LOAD_BLOCK: let it return */
    rp_cache *other;          /* LOAD_DELETE / LOAD_WRITE: the other handle */
    rp_client *other_driver;  /* ... and the client its op runs over */
} shared;

typedef struct caller {
    shared *sh;
    loader_kind kind;
    rp_client *driver;
    rp_cache *cache;
    const char *key;
    const rp_cache_tags *tags;
    double random;            /* xfetch's draw (0: the core's) */
    pthread_barrier_t *start;
    /* out */
    int rc;
    char err[RP_ERROR_MESSAGE_MAX + 64];
    char value[64];
    int has_value;
    rp_cache_result r;
    uint64_t t0, t1;          /* ns */
    char loaded_buf[64];
} caller;

static void run_loader(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                       rp_value *result)
{
    caller *c = ud;
    shared *sh = c->sh;
    int n;
    (void)op;
    memset(result, 0, sizeof *result);
    if (arg == RP_CACHE_WRITER_ARG) { /* write-through's writer: (key, value) */
        int ok = count == 2 && values[0].type == RP_TYPE_BYTES &&
                 values[0].len == strlen(c->key) &&
                 memcmp(values[0].bytes, c->key, values[0].len) == 0 &&
                 (values[1].type == RP_TYPE_BYTES || values[1].type == RP_TYPE_NONE);
        __atomic_add_fetch(&sh->loads, 1, __ATOMIC_SEQ_CST);
        if (!ok || c->kind == LOAD_FAIL) {
            result->type = RP_TYPE_STATUS;
            result->i = RP_ECALLBACK;
            result->bytes = ok ? "the database refused" : "the writer's arguments";
            result->len = strlen(result->bytes);
        }
        return;
    }
    if (arg != RP_CACHE_LOADER_ARG || count != 1 || values[0].type != RP_TYPE_BYTES ||
        values[0].len != strlen(c->key) || memcmp(values[0].bytes, c->key, values[0].len) != 0) {
        result->type = RP_TYPE_STATUS;
        result->i = RP_ECALLBACK;
        result->bytes = "the loader was not called with the key";
        result->len = strlen(result->bytes);
        return;
    }
    n = __atomic_add_fetch(&sh->loads, 1, __ATOMIC_SEQ_CST);
    switch (c->kind) {
    case LOAD_SLOW:
        rp_harness_sleep_ms(LOAD_MS);
        snprintf(c->loaded_buf, sizeof c->loaded_buf, "v%d", n);
        break;
    case LOAD_BLOCK:
        pthread_mutex_lock(&sh->mu);
        sh->blocked_running = 1;
        pthread_cond_broadcast(&sh->cv);
        while (!sh->release_blocked)
            pthread_cond_wait(&sh->cv, &sh->mu);
        pthread_mutex_unlock(&sh->mu);
        snprintf(c->loaded_buf, sizeof c->loaded_buf, "from-the-dead");
        break;
    case LOAD_DELETE:
    case LOAD_WRITE: {
        rp_op *w = NULL;
        rp_error e;
        int rc = c->kind == LOAD_DELETE
                     ? rp_cache_delete_op(&w, sh->other, c->key, strlen(c->key), &e)
                     : rp_cache_set_op(&w, sh->other, c->key, strlen(c->key), "newer", 5, NULL,
                                       &e);
        if (rc == RP_OK)
            rc = rp_client_run(sh->other_driver, w, &e);
        rp_op_free(w);
        if (rc != RP_OK) {
            snprintf(c->err, sizeof c->err, "the loader's write: %s", e.message);
            result->type = RP_TYPE_STATUS;
            result->i = RP_ECALLBACK;
            result->bytes = c->err;
            result->len = strlen(c->err);
            return;
        }
        snprintf(c->loaded_buf, sizeof c->loaded_buf, "loaded");
        break;
    }
    case LOAD_NONE:
        return; /* nothing */
    case LOAD_FAIL:
        result->type = RP_TYPE_STATUS;
        result->i = RP_ECALLBACK;
        result->bytes = "no such row";
        result->len = strlen(result->bytes);
        return;
    }
    result->type = RP_TYPE_BYTES;
    result->bytes = c->loaded_buf;
    result->len = strlen(c->loaded_buf);
}

/* One get_or_load (or get: load 0) of c->key over c->driver; the outcome into c. */
static void call_once(caller *c, int load)
{
    rp_drive_hooks hooks;
    rp_op *op = NULL;
    rp_error e;
    int rc;
    memset(&hooks, 0, sizeof hooks);
    hooks.call = run_loader;
    hooks.ud = c;
    c->t0 = rp_harness_now_ns();
    rc = load ? rp_cache_load_op(&op, c->cache, c->key, strlen(c->key), c->tags, c->random, &e)
              : rp_cache_get_op(&op, c->cache, c->key, strlen(c->key), c->tags, &e);
    if (rc == RP_OK)
        rc = rp_client_drive(c->driver, op, &hooks, &e);
    c->t1 = rp_harness_now_ns();
    c->rc = rc;
    c->has_value = 0;
    if (rc != RP_OK) {
        snprintf(c->err, sizeof c->err, "%s: %s", rp_status_name(rc), e.message);
    } else {
        RP_CHECK(rp_cache_result_of(op, &c->r) == RP_OK, "result");
        if (c->r.value) {
            snprintf(c->value, sizeof c->value, "%.*s", (int)c->r.value_len, c->r.value);
            c->has_value = 1;
        }
        c->r.value = NULL; /* borrowed from the op */
    }
    rp_op_free(op);
}

static void *caller_main(void *arg)
{
    caller *c = arg;
    if (c->start)
        pthread_barrier_wait(c->start);
    call_once(c, 1);
    return NULL;
}

static caller *callers_new(size_t n, shared *sh, rp_cache *cache, const char *key)
{
    caller *cs = calloc(n, sizeof *cs);
    size_t i;
    RP_CHECK(cs != NULL, "calloc");
    for (i = 0; i < n; i++) {
        cs[i].sh = sh;
        cs[i].kind = LOAD_SLOW;
        cs[i].driver = lt_client(url, 10000);
        cs[i].cache = cache;
        cs[i].key = key;
    }
    return cs;
}

static void callers_free(caller *cs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        rp_client_free(cs[i].driver);
    free(cs);
}

/* Warms every caller's connection (a get of another key), so the start is the calls'. */
static void warm(caller *cs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        caller w = cs[i];
        w.key = "warm-up";
        call_once(&w, 0);
        RP_CHECK(w.rc == RP_OK, "warm-up: %s", w.err);
    }
}

/* Runs n callers at once (a barrier), joins them. */
static void run_all(caller *cs, size_t n)
{
    pthread_t *th = calloc(n, sizeof *th);
    pthread_barrier_t b;
    pthread_attr_t at;
    size_t i;
    RP_CHECK(th != NULL, "calloc");
    RP_CHECK(pthread_barrier_init(&b, NULL, (unsigned)n) == 0, "barrier");
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    for (i = 0; i < n; i++) {
        cs[i].start = &b;
        RP_CHECK(pthread_create(&th[i], &at, caller_main, &cs[i]) == 0, "pthread_create %zu", i);
    }
    for (i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_attr_destroy(&at);
    pthread_barrier_destroy(&b);
    free(th);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Latencies (ms) of the callers: p50, p99, max, printed under label; returns the max. */
static double report_latency(const char *label, const caller *cs, size_t n)
{
    uint64_t *v = calloc(n, sizeof *v);
    size_t i;
    double p50, p99, max;
    long long waits = 0;
    RP_CHECK(v != NULL, "calloc");
    for (i = 0; i < n; i++) {
        v[i] = cs[i].t1 - cs[i].t0;
        waits += cs[i].r.waits;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    p50 = (double)v[n / 2] / 1e6;
    p99 = (double)v[(n * 99) / 100 - (n >= 100 ? 1 : 0)] / 1e6;
    max = (double)v[n - 1] / 1e6;
    printf("%-34s %zu callers, loader %d ms: p50 %.1f ms, p99 %.1f ms, max %.1f ms, "
           "%lld polls in all\n", label, n, LOAD_MS, p50, p99, max, waits);
    free(v);
    return max;
}

static void entry_key(char *out, size_t size, const char *name, const char *key,
                      const char *suffix)
{
    snprintf(out, size, "%s:cache:{%s:%s}%s", LT_NS, name, key, suffix);
}

static void run_op(rp_client *d, rp_op *op, const char *what);

/* --- stampede --------------------------------------------------------------------------- */

/* An entry that expired: written with a 100 ms TTL through a second handle, waited out. */
static void expire_entry(const char *name, const char *key, rp_cache_stampede mode)
{
    rp_cache *shortlived = cache_new(name, mode, 100, 100, 1);
    rp_client *d = lt_client(url, 5000);
    rp_op *op = NULL;
    rp_error e;
    char k[256];
    int rc = rp_cache_set_op(&op, shortlived, key, strlen(key), "expired", 7, NULL, &e);
    RP_CHECK(rc == RP_OK && rp_client_run(d, op, &e) == RP_OK, "set: %s", e.message);
    rp_op_free(op);
    entry_key(k, sizeof k, name, key, "");
    RP_CHECK(side_exists(k) == 1, "the entry was written");
    /* swr keeps it ttl + stale (200 ms): wait that out too */
    rp_harness_sleep_ms(mode == RP_CACHE_SWR ? 320 : 220);
    RP_CHECK(side_exists(k) == 0, "the entry expired");
    rp_cache_free(shortlived);
    rp_client_free(d);
}

static void stampede_miss(rp_cache_stampede mode, const char *label)
{
    const char *name = mode == RP_CACHE_SWR ? "stampede-swr" : "stampede-lock";
    rp_cache *c = cache_new(name, mode, 10000, 5000, 1);
    shared sh;
    caller *cs;
    size_t i, loaded = 0;
    char lock[256];
    double max;
    memset(&sh, 0, sizeof sh);
    cs = callers_new(THREADS, &sh, c, "hot");
    warm(cs, THREADS);
    expire_entry(name, "hot", mode);
    run_all(cs, THREADS);
    for (i = 0; i < THREADS; i++) {
        RP_CHECK(cs[i].rc == RP_OK, "%s: caller %zu: %s", label, i, cs[i].err);
        RP_CHECK(cs[i].has_value && strcmp(cs[i].value, "v1") == 0,
                 "%s: caller %zu got \"%s\", not the one load's \"v1\"", label, i, cs[i].value);
        loaded += (size_t)cs[i].r.loaded;
        RP_CHECK(cs[i].r.loaded || cs[i].r.hit, "%s: caller %zu neither loaded nor hit", label, i);
    }
    RP_CHECK(sh.loads == 1, "%s: the loader ran %d times, not once", label, sh.loads);
    RP_CHECK(loaded == 1, "%s: %zu callers say they loaded", label, loaded);
    max = report_latency(label, cs, THREADS);
    /* generous: the one load plus polls capped at 10 ms, on a loaded 2-core machine; far
     * below lock_ttl (5 s), past which a waiter would load itself (counted above) */
    RP_CHECK(max < LOAD_MS + 4000, "%s: a waiter took %.0f ms", label, max);
    entry_key(lock, sizeof lock, name, "hot", ":lock");
    RP_CHECK(side_exists(lock) == 0, "%s: the load lock is left behind", label);
    callers_free(cs, THREADS);
    rp_cache_free(c);
}

/* swr: the entry is past its soft expiry but still there: one caller refreshes, the others
 * get the stale value at once. */
static void stampede_stale(void)
{
    const char *name = "stampede-stale";
    rp_cache *c = cache_new(name, RP_CACHE_SWR, 300, 5000, 1);
    rp_client *d = lt_client(url, 5000);
    shared sh;
    caller *cs;
    rp_op *op = NULL;
    rp_error e;
    size_t i, stale = 0, fresh = 0;
    int rc;
    memset(&sh, 0, sizeof sh);
    cs = callers_new(THREADS, &sh, c, "hot");
    warm(cs, THREADS);
    rc = rp_cache_set_op(&op, c, "hot", 3, "old", 3, NULL, &e);
    RP_CHECK(rc == RP_OK && rp_client_run(d, op, &e) == RP_OK, "set: %s", e.message);
    rp_op_free(op);
    rp_harness_sleep_ms(350); /* past the soft expiry (300 ms), before the hard one (600) */
    run_all(cs, THREADS);
    for (i = 0; i < THREADS; i++) {
        RP_CHECK(cs[i].rc == RP_OK, "swr stale: caller %zu: %s", i, cs[i].err);
        RP_CHECK(cs[i].has_value, "swr stale: caller %zu got no value", i);
        if (cs[i].r.loaded) {
            RP_CHECK(strcmp(cs[i].value, "v1") == 0 && cs[i].r.stored, "the refresh");
            fresh++;
        } else if (cs[i].r.stale) {
            RP_CHECK(strcmp(cs[i].value, "old") == 0, "swr stale: caller %zu got \"%s\" as "
                     "stale", i, cs[i].value);
            RP_CHECK(cs[i].r.waits == 0, "a stale answer never waits");
            stale++;
        } else {
            /* came after the refresh: its value, fresh */
            RP_CHECK(cs[i].r.hit && strcmp(cs[i].value, "v1") == 0,
                     "swr stale: caller %zu got \"%s\"", i, cs[i].value);
        }
    }
    RP_CHECK(sh.loads == 1 && fresh == 1, "swr stale: the loader ran %d times", sh.loads);
    report_latency("swr, a stale entry:", cs, THREADS);
    printf("%-34s %zu got the stale value at once, 1 refreshed, %zu the new value\n", "",
           stale, THREADS - stale - 1);
    /* the refreshed entry is fresh now */
    {
        caller g = cs[0];
        call_once(&g, 0);
        RP_CHECK(g.rc == RP_OK && g.r.hit && !g.r.stale && strcmp(g.value, "v1") == 0,
                 "after the refresh");
    }
    callers_free(cs, THREADS);
    rp_cache_free(c);
    rp_client_free(d);
}

/* --- the stale-fill race ------------------------------------------------------------- */

static void stale_fill(loader_kind kind, int versioned)
{
    const char *name = versioned ? "race" : "race-unversioned";
    rp_cache *c = cache_new(name, RP_CACHE_LOCK, 10000, 5000, versioned);
    shared sh;
    caller *cs, g;
    char k[256];
    const char *what = kind == LOAD_DELETE ? "delete" : "write";
    memset(&sh, 0, sizeof sh);
    sh.other = cache_new(name, RP_CACHE_LOCK, 10000, 5000, versioned); /* another process' */
    sh.other_driver = lt_client(url, 5000);
    cs = callers_new(1, &sh, c, "row");
    cs[0].kind = kind;
    entry_key(k, sizeof k, name, "row", "");
    side_del(k);
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK, "race: %s", cs[0].err);
    RP_CHECK(cs[0].r.loaded && cs[0].has_value && strcmp(cs[0].value, "loaded") == 0,
             "the loaded value is the caller's");
    g = cs[0];
    call_once(&g, 0);
    RP_CHECK(g.rc == RP_OK, "get: %s", g.err);
    if (versioned) {
        /* the invalidation during the load wins */
        RP_CHECK(!cs[0].r.stored, "a %s during the load: the old value was stored", what);
        if (kind == LOAD_DELETE)
            RP_CHECK(!g.r.hit && !g.has_value, "deleted: the next get must miss");
        else
            RP_CHECK(g.r.hit && strcmp(g.value, "newer") == 0, "written: the next get must "
                     "answer the write, not \"%s\"", g.value);
    } else {
        /* unversioned: the fill lands over the invalidation -- the race the generation
         * closes */
        RP_CHECK(cs[0].r.stored && g.r.hit && strcmp(g.value, "loaded") == 0,
                 "unversioned: the fill is written whatever came meanwhile");
    }
    printf("stale fill, %-11s during the load: stored %d, the next get %s%s%s\n",
           versioned ? (kind == LOAD_DELETE ? "a delete" : "a write")
                     : (kind == LOAD_DELETE ? "a delete*" : "a write*"),
           cs[0].r.stored, g.r.hit ? "hits \"" : "misses", g.r.hit ? g.value : "",
           g.r.hit ? "\"" : "");
    callers_free(cs, 1);
    rp_cache_free(sh.other);
    rp_client_free(sh.other_driver);
    rp_cache_free(c);
}

/* --- a holder that dies ---------------------------------------------------------------- */

#define DEAD_LOCK_TTL 500
#define DEAD_WAITERS 20

static void *holder_main(void *arg)
{
    call_once(arg, 1);
    return NULL;
}

static void dead_holder(void)
{
    const char *name = "dead-holder";
    rp_cache *c = cache_new(name, RP_CACHE_LOCK, 10000, DEAD_LOCK_TTL, 1);
    shared sh;
    caller *holder, *cs;
    pthread_t ht;
    uint64_t locked_at;
    size_t i;
    char k[256], lock[256];
    double min_after = 1e9, max_after = 0;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    entry_key(k, sizeof k, name, "hot", "");
    entry_key(lock, sizeof lock, name, "hot", ":lock");
    side_del(k);
    side_del(lock);
    holder = callers_new(1, &sh, c, "hot");
    holder[0].kind = LOAD_BLOCK;
    cs = callers_new(DEAD_WAITERS, &sh, c, "hot");
    warm(cs, DEAD_WAITERS);
    RP_CHECK(pthread_create(&ht, NULL, holder_main, holder) == 0, "pthread_create");
    pthread_mutex_lock(&sh.mu);
    while (!sh.blocked_running)
        pthread_cond_wait(&sh.cv, &sh.mu);
    pthread_mutex_unlock(&sh.mu);
    locked_at = rp_harness_now_ns();
    RP_CHECK(side_exists(lock) == 1, "the holder has the lock");
    run_all(cs, DEAD_WAITERS);
    /* the others are done while the holder is still stuck in its loader */
    for (i = 0; i < DEAD_WAITERS; i++) {
        double after = (double)(cs[i].t1 - locked_at) / 1e6;
        RP_CHECK(cs[i].rc == RP_OK, "waiter %zu: %s", i, cs[i].err);
        RP_CHECK(cs[i].has_value && strcmp(cs[i].value, "v2") == 0,
                 "waiter %zu got \"%s\", not the second load's", i, cs[i].value);
        if (after < min_after)
            min_after = after;
        if (after > max_after)
            max_after = after;
    }
    RP_CHECK(sh.loads == 2, "the loader ran %d times, not 2 (the dead holder's and one more)",
             sh.loads);
    /* nobody answered before the dead holder's lock expired (less a little: the clocks) */
    RP_CHECK(min_after >= DEAD_LOCK_TTL - 20, "a waiter was done %.0f ms after the lock was "
             "taken, before its %d ms TTL", min_after, DEAD_LOCK_TTL);
    RP_CHECK(max_after < DEAD_LOCK_TTL + LOAD_MS + 4000, "a waiter took %.0f ms", max_after);
    printf("dead holder: lock_ttl %d ms; %d waiters got the second load's value %.0f..%.0f ms "
           "after the holder took the lock; loader ran %d times\n", DEAD_LOCK_TTL,
           DEAD_WAITERS, min_after, max_after, sh.loads);
    /* the holder comes back: its value is returned to it; the lock is not its any more */
    pthread_mutex_lock(&sh.mu);
    sh.release_blocked = 1;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    pthread_join(ht, NULL);
    RP_CHECK(holder[0].rc == RP_OK && holder[0].r.loaded &&
             strcmp(holder[0].value, "from-the-dead") == 0, "the holder: %s", holder[0].err);
    RP_CHECK(side_exists(lock) == 0, "a lock is left behind");
    callers_free(cs, DEAD_WAITERS);
    callers_free(holder, 1);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    rp_cache_free(c);
}

/* swr, the refresher dies: the stale value keeps being served at once (no waits) while
 * its lock lives; after lock_ttl the next caller refreshes (loader count 2). */
static void dead_refresher(void)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    rp_client *d = lt_client(url, 5000);
    shared sh;
    caller *holder, *cs;
    pthread_t ht;
    rp_op *op = NULL;
    rp_error e;
    uint64_t locked_at;
    size_t i;
    double slowest = 0;
    o.ttl_ms = 300;
    o.stale_ms = 10000;
    o.stampede = RP_CACHE_SWR;
    o.lock_ttl_ms = DEAD_LOCK_TTL;
    RP_CHECK(rp_cache_new(&c, maker, "dead-refresher", 14, &o, &e) == RP_OK, "%s", e.message);
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    pthread_cond_init(&sh.cv, NULL);
    RP_CHECK(rp_cache_set_op(&op, c, "hot", 3, "old", 3, NULL, &e) == RP_OK, "set");
    run_op(d, op, "set");
    holder = callers_new(1, &sh, c, "hot");
    holder[0].kind = LOAD_BLOCK;
    cs = callers_new(DEAD_WAITERS, &sh, c, "hot");
    warm(cs, DEAD_WAITERS);
    rp_harness_sleep_ms(350); /* stale now */
    RP_CHECK(pthread_create(&ht, NULL, holder_main, holder) == 0, "pthread_create");
    pthread_mutex_lock(&sh.mu);
    while (!sh.blocked_running)
        pthread_cond_wait(&sh.cv, &sh.mu);
    pthread_mutex_unlock(&sh.mu);
    locked_at = rp_harness_now_ns();
    run_all(cs, DEAD_WAITERS); /* while the lock lives: the stale value at once */
    for (i = 0; i < DEAD_WAITERS; i++) {
        double ms = (double)(cs[i].t1 - cs[i].t0) / 1e6;
        RP_CHECK(cs[i].rc == RP_OK && cs[i].r.stale && !cs[i].r.loaded && cs[i].r.waits == 0 &&
                 strcmp(cs[i].value, "old") == 0, "swr, the refresher stuck: caller %zu got "
                 "\"%s\" (stale %d, waits %lld)", i, cs[i].value, cs[i].r.stale,
                 (long long)cs[i].r.waits);
        if (ms > slowest)
            slowest = ms;
    }
    RP_CHECK((double)(rp_harness_now_ns() - locked_at) / 1e6 < DEAD_LOCK_TTL,
             "too slow to check within the lock's life");
    rp_harness_sleep_ms(DEAD_LOCK_TTL + 50); /* the stuck refresher's lock expired */
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.loaded && cs[0].r.stored && strcmp(cs[0].value, "v2") == 0,
             "after lock_ttl the next caller refreshes: %s \"%s\"", cs[0].err, cs[0].value);
    RP_CHECK(sh.loads == 2, "the loader ran %d times", sh.loads);
    printf("swr, a dead refresher: %d callers got the stale value at once (slowest %.1f ms); "
           "after lock_ttl %d ms the next refreshed; loader ran %d times\n", DEAD_WAITERS,
           slowest, DEAD_LOCK_TTL, sh.loads);
    pthread_mutex_lock(&sh.mu);
    sh.release_blocked = 1;
    pthread_cond_broadcast(&sh.cv);
    pthread_mutex_unlock(&sh.mu);
    pthread_join(ht, NULL);
    RP_CHECK(holder[0].rc == RP_OK && holder[0].r.loaded, "the holder: %s", holder[0].err);
    callers_free(cs, DEAD_WAITERS);
    callers_free(holder, 1);
    pthread_mutex_destroy(&sh.mu);
    pthread_cond_destroy(&sh.cv);
    rp_cache_free(c);
    rp_client_free(d);
}

/* --- tags, xfetch, none, write-through, a full Redis ----------------------------------- */

static void run_op(rp_client *d, rp_op *op, const char *what)
{
    rp_error e;
    int rc = rp_client_run(d, op, &e);
    RP_CHECK(rc == RP_OK, "%s: %s", what, e.message);
    rp_op_free(op);
}

/* An entry whose tag was invalidated, read by 200 callers naming the tag: one loads again,
 * the others wait for its value (they re-read the entry on every poll). */
static void tag_stampede(void)
{
    static const char *const items[] = { "g" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    rp_cache *c = cache_new("tagged", RP_CACHE_LOCK, 60000, 5000, 1);
    rp_client *d = lt_client(url, 5000);
    shared sh;
    caller *cs, g;
    rp_op *op = NULL;
    rp_error e;
    size_t i;
    char k[256];
    memset(&sh, 0, sizeof sh);
    entry_key(k, sizeof k, "tagged", "hot", "");
    side_del(k);
    cs = callers_new(THREADS, &sh, c, "hot");
    for (i = 0; i < THREADS; i++)
        cs[i].tags = &tags;
    warm(cs, THREADS);
    call_once(&cs[0], 1); /* the first fill, with the tag's version */
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.stored && strcmp(cs[0].value, "v1") == 0, "fill");
    RP_CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, &e) == RP_OK, "%s", e.message);
    run_op(d, op, "invalidate_tags");
    run_all(cs, THREADS);
    for (i = 0; i < THREADS; i++) {
        RP_CHECK(cs[i].rc == RP_OK, "tagged: caller %zu: %s", i, cs[i].err);
        RP_CHECK(cs[i].has_value && strcmp(cs[i].value, "v1") != 0,
                 "tagged: caller %zu got \"%s\": the invalidated value", i, cs[i].value);
    }
    /* Once. (At 2d1497f it is 2, every run: a waiter's poll reads the entry -- still the
     * stale one while the loader works -- and then re-reads it "as a miss"
     * (cache_read.lua ARGV[3] '1' skips the entry) to take the lock; a waiter whose pair
     * straddles the loader's fill and unlock takes the now free lock and loads again. See
     * core-requests.md, ctest. Waiters that never re-read the entry, the bug ff0f18e fixed,
     * loaded one after the other: ~200.) */
    report_latency("lock, an entry stale by its tag:", cs, THREADS);
    printf("%-34s the loader ran %d time(s) after the invalidation\n", "", sh.loads - 1);
    LATE_CHECK(sh.loads - 1 == 1, "tagged: the loader ran %d times after the invalidation, not "
               "once", sh.loads - 1);
    /* a reader that names no tag learns the entry's in one more round: a hit */
    g = cs[0];
    g.tags = NULL;
    call_once(&g, 0);
    RP_CHECK(g.rc == RP_OK && g.r.hit && strcmp(g.value, "v1") != 0, "untagged read");
    callers_free(cs, THREADS);
    rp_cache_free(c);
    rp_client_free(d);
}

/* XFetch on a real entry: the fill records the load's time (delta); a draw of 1 never
 * recomputes, a tiny one (-ln: 690) makes delta * beta * 690 >= the TTL left: recompute. */
static void xfetch_real(void)
{
    rp_cache *c = cache_new("xf", RP_CACHE_XFETCH, 10000, 5000, 1);
    shared sh;
    caller *cs;
    char k[256];
    const char *argv[3];
    rp_reply *r = NULL;
    rp_error e;
    long long d;
    memset(&sh, 0, sizeof sh);
    entry_key(k, sizeof k, "xf", "k", "");
    side_del(k);
    cs = callers_new(1, &sh, c, "k");
    cs[0].random = 0.5;
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.loaded && cs[0].r.stored, "xfetch: the miss loads");
    argv[0] = "HGET";
    argv[1] = k;
    argv[2] = "d";
    RP_CHECK(rp_client_command(side, 3, argv, NULL, &r, &e) == RP_OK &&
             r->type == RP_REPLY_STRING, "HGET d");
    d = strtoll(r->str, NULL, 10);
    rp_reply_free(r);
    RP_CHECK(d >= LOAD_MS && d < LOAD_MS + 2000, "xfetch: the recorded delta is %lld ms", d);
    cs[0].random = 1.0;
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.hit && !cs[0].r.loaded && strcmp(cs[0].value, "v1") == 0,
             "xfetch: random 1 never recomputes");
    cs[0].random = 1e-300;
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.loaded && cs[0].r.stored &&
             strcmp(cs[0].value, "v2") == 0, "xfetch: a tiny draw recomputes early");
    printf("xfetch on a real entry: delta recorded %lld ms (loader %d ms); draw 1 -> hit, "
           "draw 1e-300 -> recomputed and stored\n", d, LOAD_MS);
    callers_free(cs, 1);
    rp_cache_free(c);
}

static void none_and_failures(void)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    shared sh;
    caller *cs, g;
    char k[256], lock[256];
    rp_error e;
    o.ttl_ms = 60000;
    o.negative_ttl_ms = 300;
    RP_CHECK(rp_cache_new(&c, maker, "neg", 3, &o, &e) == RP_OK, "%s", e.message);
    memset(&sh, 0, sizeof sh);
    entry_key(k, sizeof k, "neg", "row", "");
    entry_key(lock, sizeof lock, "neg", "row", ":lock");
    side_del(k);
    cs = callers_new(1, &sh, c, "row");
    /* the loader says none: a negative entry, answered as none until negative_ttl */
    cs[0].kind = LOAD_NONE;
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.loaded && cs[0].r.negative && cs[0].r.stored &&
             !cs[0].has_value, "none: %s", cs[0].err);
    g = cs[0];
    call_once(&g, 0);
    RP_CHECK(g.rc == RP_OK && g.r.hit && g.r.negative && !g.has_value && g.r.ttl_ms <= 300,
             "a negative hit");
    rp_harness_sleep_ms(350);
    call_once(&g, 0);
    RP_CHECK(g.rc == RP_OK && !g.r.hit && !g.r.negative, "the negative entry expired");
    /* the loader fails: its error, nothing stored, the lock given back */
    cs[0].kind = LOAD_FAIL;
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_ECALLBACK && strstr(cs[0].err, "no such row") != NULL,
             "a failing loader: %s", cs[0].err);
    RP_CHECK(side_exists(k) == 0 && side_exists(lock) == 0, "a failed load left state behind");
    /* write-through: the writer first; a failing writer leaves the cache untouched */
    {
        rp_drive_hooks hooks;
        rp_op *op = NULL;
        int rc;
        memset(&hooks, 0, sizeof hooks);
        hooks.call = run_loader;
        hooks.ud = &cs[0];
        cs[0].kind = LOAD_SLOW;
        RP_CHECK(rp_cache_write_op(&op, c, "row", 3, "db-value", 8, NULL, &e) == RP_OK, "write");
        rc = rp_client_drive(cs[0].driver, op, &hooks, &e);
        RP_CHECK(rc == RP_OK, "write: %s", e.message);
        rp_op_free(op);
        call_once(&g, 0);
        RP_CHECK(g.rc == RP_OK && g.r.hit && strcmp(g.value, "db-value") == 0, "written");
        cs[0].kind = LOAD_FAIL;
        op = NULL;
        RP_CHECK(rp_cache_write_op(&op, c, "row", 3, "refused", 7, NULL, &e) == RP_OK, "write");
        rc = rp_client_drive(cs[0].driver, op, &hooks, &e);
        RP_CHECK(rc == RP_ECALLBACK && strstr(e.message, "the database refused") != NULL,
                 "a failing writer: %s", e.message);
        rp_op_free(op);
        call_once(&g, 0);
        RP_CHECK(g.rc == RP_OK && g.r.hit && strcmp(g.value, "db-value") == 0,
                 "a failing writer changed the cache: \"%s\"", g.value);
    }
    printf("none cached negative_ttl 300 ms, then a miss; a failing loader / writer leaves "
           "the cache as it was\n");
    callers_free(cs, 1);
    rp_cache_free(c);
}

static void side_config(const char *name, const char *value)
{
    const char *argv[] = { "CONFIG", "SET", name, value };
    rp_reply *r = NULL;
    rp_error e;
    RP_CHECK(rp_client_command(side, 4, argv, NULL, &r, &e) == RP_OK &&
             r->type == RP_REPLY_STATUS, "CONFIG SET %s %s", name, value);
    rp_reply_free(r);
}

/* Redis full (maxmemory, noeviction): every caller still gets a value (its own load: nothing
 * can be stored), no lock is left behind; a set is refused. */
#define OOM_CALLERS 20
static void redis_full(void)
{
    rp_cache *c = cache_new("full", RP_CACHE_LOCK, 60000, 5000, 1);
    shared sh;
    caller *cs;
    size_t i, stored = 0;
    char lock[256], k[256];
    rp_op *op = NULL;
    rp_error e;
    int rc;
    memset(&sh, 0, sizeof sh);
    entry_key(k, sizeof k, "full", "hot", "");
    entry_key(lock, sizeof lock, "full", "hot", ":lock");
    side_del(k);
    cs = callers_new(OOM_CALLERS, &sh, c, "hot");
    warm(cs, OOM_CALLERS);
    side_config("maxmemory-policy", "noeviction");
    side_config("maxmemory", "1");
    run_all(cs, OOM_CALLERS);
    {
        rp_client *d = lt_client(url, 5000);
        RP_CHECK(rp_cache_set_op(&op, c, "hot", 3, "x", 1, NULL, &e) == RP_OK, "set");
        rc = rp_client_run(d, op, &e);
        rp_op_free(op);
        rp_client_free(d);
    }
    side_config("maxmemory", "0");
    RP_CHECK(rc == RP_EREPLY && strstr(e.message, "OOM") != NULL, "a set with Redis full: %s",
             e.message);
    for (i = 0; i < OOM_CALLERS; i++) {
        RP_CHECK(cs[i].rc == RP_OK && cs[i].has_value, "full: caller %zu: %s", i, cs[i].err);
        stored += (size_t)cs[i].r.stored;
    }
    RP_CHECK(stored == 0 && side_exists(k) == 0, "Redis full, yet %zu fills stored", stored);
    RP_CHECK(side_exists(lock) == 0, "Redis full: a load lock is left behind");
    report_latency("lock, Redis full (maxmemory 1):", cs, OOM_CALLERS);
    printf("%-34s the loader ran %d times for %d callers (each fill refused; the lock "
           "hands the load on)\n", "", sh.loads, OOM_CALLERS);
    callers_free(cs, OOM_CALLERS);
    rp_cache_free(c);
}

/* The same race made deterministic: the op is stepped by hand over a raw connection (the
 * test is its driver), and another caller's whole load and fill runs between the op's read
 * (which finds the entry stale by its tag) and its re-read "as a miss". The entry is fresh
 * by then: the op must answer it, not take the freed lock and load again. */
static int raw_connect(void)
{
    char host[128];
    int port = 0, fd;
    struct sockaddr_in a;
    RP_CHECK(sscanf(url, "redis://%127[^:]:%d", host, &port) == 2, "url %s", url);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    RP_CHECK(fd >= 0, "socket");
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    RP_CHECK(inet_pton(AF_INET, host, &a.sin_addr) == 1, "host %s", host);
    RP_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    return fd;
}

/* One IO round of op's node 0 over fd. */
static void raw_round(int fd, rp_op *op)
{
    const char *req;
    size_t len;
    char buf[65536];
    int rc = RP_MORE;
    RP_CHECK(rp_op_request(op, 0, &req, &len) == RP_OK && len > 0, "a request");
    RP_CHECK(lt_write_all(fd, req, len) == 0, "write");
    while (rc == RP_MORE) {
        ssize_t n = read(fd, buf, sizeof buf);
        RP_CHECK(n > 0, "read");
        rc = rp_op_feed(op, 0, buf, (size_t)n);
    }
    RP_CHECK(rc == RP_OK, "feed: %d", rc);
}

static void tag_race_by_hand(void)
{
    static const char *const items[] = { "g" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    rp_cache *c = cache_new("tag-race", RP_CACHE_LOCK, 60000, 5000, 1);
    rp_client *d = lt_client(url, 5000);
    shared sh;
    caller *cs;
    rp_op *op = NULL;
    rp_error e;
    rp_step st;
    rp_cache_result r;
    char k[256], v[64];
    int fd = raw_connect(), rounds = 0, loaded_again = 0;
    memset(&sh, 0, sizeof sh);
    entry_key(k, sizeof k, "tag-race", "row", "");
    side_del(k);
    cs = callers_new(1, &sh, c, "row");
    cs[0].tags = &tags;
    call_once(&cs[0], 1); /* v1, filled with the tag's version */
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.stored, "the first fill: %s", cs[0].err);
    RP_CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, &e) == RP_OK, "%s", e.message);
    run_op(d, op, "invalidate_tags");
    /* the op by hand: its read finds v1 stale by the tag */
    op = NULL;
    RP_CHECK(rp_cache_load_op(&op, c, "row", 3, &tags, 0, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO, "the read");
    raw_round(fd, op);
    st = rp_op_step(op, rp_monotonic_ms());
    RP_CHECK(st == RP_STEP_IO, "the re-read as a miss (step %d)", (int)st);
    /* meanwhile another caller reloads and fills (v2), and gives its lock back */
    call_once(&cs[0], 1);
    RP_CHECK(cs[0].rc == RP_OK && cs[0].r.loaded && cs[0].r.stored &&
             strcmp(cs[0].value, "v2") == 0, "the other caller's reload: %s", cs[0].err);
    /* the op goes on: the entry is fresh now */
    for (;;) {
        raw_round(fd, op);
        rounds++;
        st = rp_op_step(op, rp_monotonic_ms());
        if (st == RP_STEP_CALL) { /* it loads again: v3 */
            rp_value val = rp_value_bytes("v3", 2);
            loaded_again = 1;
            __atomic_add_fetch(&sh.loads, 1, __ATOMIC_SEQ_CST);
            RP_CHECK(rp_op_resume(op, &val) == RP_OK, "resume");
            st = rp_op_step(op, rp_monotonic_ms());
        }
        while (st == RP_STEP_SLEEP) {
            rp_harness_sleep_ms(rp_op_sleep_ms(op));
            st = rp_op_step(op, rp_monotonic_ms());
        }
        if (st != RP_STEP_IO)
            break;
        RP_CHECK(rounds < 10, "rounds");
    }
    RP_CHECK(st == RP_STEP_DONE, "step %d: %s", (int)st,
             st == RP_STEP_ERROR ? rp_op_error(op)->message : "");
    RP_CHECK(rp_cache_result_of(op, &r) == RP_OK, "result");
    snprintf(v, sizeof v, "%.*s", r.value ? (int)r.value_len : 0, r.value ? r.value : "");
    printf("tag race by hand: a fill between the stale read and the re-read; the op %s "
           "(\"%s\", loader %d times in all)\n", loaded_again ? "LOADED AGAIN" : "answered it",
           v, sh.loads);
    LATE_CHECK(!loaded_again && r.hit && strcmp(v, "v2") == 0, "the op loaded again (\"%s\") "
               "though the entry was refilled before its re-read (core-requests.md, ctest)", v);
    rp_op_free(op);
    close(fd);
    callers_free(cs, 1);
    rp_cache_free(c);
    rp_client_free(d);
}

/* --- the near-cache, kept coherent by a real subscription ------------------------------ */

#define NEAR_READERS 16
#define NEAR_KEYS 32
#define NEAR_ROUNDS 150

typedef struct near_sub {
    rp_cache *cache;
    rp_client *client;       /* the subscription's own */
    int stop;                /* atomic */
    long long applied, cleared;
} near_sub;

/* The frontend's part: every message the subscription emits goes to near_apply. */
static void *near_sub_main(void *arg)
{
    near_sub *ns = arg;
    const char *ch;
    size_t chl;
    rp_subscription *sub = NULL;
    rp_op *op = NULL;
    rp_error e;
    int rc;
    ch = rp_cache_channel(ns->cache, &chl);
    {
        const void *chans[1] = { ch };
        size_t lens[1] = { chl };
        rc = rp_subscription_new(&sub, ns->client, 1, chans, lens, 0, NULL, NULL, &e);
    }
    RP_CHECK(rc == RP_OK && rp_subscription_listen_op(&op, sub, &e) == RP_OK, "subscribe: %s",
             e.message);
    while (!__atomic_load_n(&ns->stop, __ATOMIC_ACQUIRE)) {
        rp_pubsub_message m;
        const char *kind;
        int64_t dropped;
        int cleared;
        rc = rp_client_pump(ns->client, op, 50, NULL, &e);
        if (rc == RP_ETIMEOUT)
            continue;
        RP_CHECK(rc == RP_OK, "pump: %s", e.message);
        RP_CHECK(rp_subscription_message(op, &m) == RP_OK, "message");
        kind = rp_pubsub_kind_name(m.kind);
        RP_CHECK(rp_cache_near_apply(ns->cache, kind, strlen(kind), m.data, m.data_len,
                                     &dropped, &cleared, &e) == RP_OK, "near_apply: %s",
                 e.message);
        ns->applied++;
        ns->cleared += cleared;
    }
    rp_op_free(op);
    rp_subscription_free(sub);
    return NULL;
}

typedef struct near_reader {
    rp_cache *cache;
    rp_client *driver;
    int *stop;
    long long gets, near_hits;
    int rc;
    char err[RP_ERROR_MESSAGE_MAX + 64];
} near_reader;

/* One get of key over driver: 1 with its value copied into out. */
static int near_read(rp_cache *c, rp_client *driver, const char *key, char *out, size_t size,
                     rp_cache_result *res, rp_error *e)
{
    rp_op *op = NULL;
    int rc = rp_cache_get_op(&op, c, key, strlen(key), NULL, e);
    if (rc == RP_OK)
        rc = rp_client_run(driver, op, e);
    if (rc == RP_OK) {
        RP_CHECK(rp_cache_result_of(op, res) == RP_OK, "result");
        snprintf(out, size, "%.*s", res->value ? (int)res->value_len : 0,
                 res->value ? res->value : "");
        res->value = NULL;
    }
    rp_op_free(op);
    return rc;
}

static void *near_reader_main(void *arg)
{
    near_reader *r = arg;
    unsigned seed = (unsigned)(uintptr_t)r;
    while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
        char key[16], v[64];
        rp_cache_result res;
        rp_error e;
        int rc;
        snprintf(key, sizeof key, "n%d", (int)(rand_r(&seed) % NEAR_KEYS));
        rc = near_read(r->cache, r->driver, key, v, sizeof v, &res, &e);
        if (rc != RP_OK) {
            r->rc = rc;
            snprintf(r->err, sizeof r->err, "%s", e.message);
            return NULL;
        }
        r->gets++;
        r->near_hits += res.near;
    }
    return NULL;
}

static void near_set(rp_cache *c, rp_client *d, const char *key, const char *value)
{
    rp_op *op = NULL;
    rp_error e;
    int rc = rp_cache_set_op(&op, c, key, strlen(key), value, strlen(value), NULL, &e);
    RP_CHECK(rc == RP_OK && rp_client_run(d, op, &e) == RP_OK, "set: %s", e.message);
    rp_op_free(op);
}

/* Reads key through near_cache until it answers want (the invalidation travelled);
 * returns the ms it took. */
static double until_seen(rp_cache *c, rp_client *d, const char *key, const char *want)
{
    uint64_t t0 = rp_harness_now_ns();
    for (;;) {
        char v[64];
        rp_cache_result res;
        rp_error e;
        RP_CHECK(near_read(c, d, key, v, sizeof v, &res, &e) == RP_OK, "get: %s", e.message);
        if (strcmp(v, want) == 0)
            return (double)(rp_harness_now_ns() - t0) / 1e6;
        RP_CHECK(rp_harness_now_ns() - t0 < 3000000000ull, "\"%s\" still answers \"%s\", not "
                 "\"%s\", 3 s after the write", key, v, want);
        rp_harness_sleep_ms(1);
    }
}

/* Reads key until the near-cache answers it, with want; fails after a few reads. */
static void until_near(rp_cache *c, rp_client *d, const char *key, const char *want)
{
    rp_cache_result res;
    rp_error e;
    char v[64];
    int i;
    for (i = 0; i < 20; i++) {
        RP_CHECK(near_read(c, d, key, v, sizeof v, &res, &e) == RP_OK && strcmp(v, want) == 0,
                 "a read of %s: \"%s\", not \"%s\"", key, v, want);
        if (res.near)
            return;
        rp_harness_sleep_ms(5);
    }
    RP_CHECK(0, "%s: no near hit after %d reads", key, i);
}

static void near_coherence(void)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *a = NULL, *b = NULL;   /* a: this process' near-cached handle; b: another's */
    rp_client *da = lt_client(url, 5000), *db = lt_client(url, 5000);
    near_sub ns;
    near_reader readers[NEAR_READERS];
    pthread_t st, rt[NEAR_READERS];
    rp_cache_result res;
    rp_error e;
    int armed = 0, stop = 0, round, i;
    int64_t entries;
    long long gets = 0, hits = 0;
    char v[64], key[16], want[32], last[NEAR_KEYS][32];
    double seen;
    o.ttl_ms = 600000;
    o.near_size = NEAR_KEYS * 2;
    o.near_ttl_ms = 600000; /* only invalidations take an entry out */
    RP_CHECK(rp_cache_new(&a, maker, "near", 4, &o, &e) == RP_OK, "%s", e.message);
    o.near_size = 0;
    RP_CHECK(rp_cache_new(&b, maker, "near", 4, &o, &e) == RP_OK, "%s", e.message);
    memset(&ns, 0, sizeof ns);
    ns.cache = a;
    ns.client = lt_client(url, 5000);
    RP_CHECK(pthread_create(&st, NULL, near_sub_main, &ns) == 0, "pthread_create");
    for (i = 0; i < 300 && !armed; i++) {
        rp_cache_near_stats(a, &entries, &armed);
        rp_harness_sleep_ms(10);
    }
    RP_CHECK(armed, "the subscription's confirmation did not arm the near-cache");

    /* one key: the second read is near; another handle's write reaches it */
    near_set(b, db, "n0", "first");
    RP_CHECK(near_read(a, da, "n0", v, sizeof v, &res, &e) == RP_OK && !res.near &&
             strcmp(v, "first") == 0, "the first read");
    /* the set's own invalidation may land after that read began (then the read keeps
     * nothing: it cannot tell it from a newer write): a later read keeps it */
    until_near(a, da, "n0", "first");
    near_set(b, db, "n0", "second");
    seen = until_seen(a, da, "n0", "second");
    until_near(a, da, "n0", "second");
    printf("near-cache: another handle's write seen %.1f ms later (the read after it was "
           "near until then)\n", seen);

    /* many readers on one shared handle while another process writes: once the writes
     * stop and their invalidations have arrived, every key answers its last write */
    for (i = 0; i < NEAR_KEYS; i++) {
        snprintf(key, sizeof key, "n%d", i);
        near_set(b, db, key, "0");
        snprintf(last[i], sizeof last[i], "0");
    }
    for (i = 0; i < NEAR_READERS; i++) {
        memset(&readers[i], 0, sizeof readers[i]);
        readers[i].cache = a;
        readers[i].driver = lt_client(url, 5000);
        readers[i].stop = &stop;
        RP_CHECK(pthread_create(&rt[i], NULL, near_reader_main, &readers[i]) == 0, "create");
    }
    for (round = 1; round <= NEAR_ROUNDS; round++) {
        snprintf(key, sizeof key, "n%d", round % NEAR_KEYS);
        snprintf(want, sizeof want, "%d", round);
        near_set(b, db, key, want);
        snprintf(last[round % NEAR_KEYS], sizeof last[0], "%s", want);
        if (round % 10 == 0)
            rp_harness_sleep_ms(2);
    }
    /* a last write, seen: every invalidation before it (one connection, in order) is in */
    near_set(b, db, "sentinel", "done");
    until_seen(a, da, "sentinel", "done");
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < NEAR_READERS; i++) {
        pthread_join(rt[i], NULL);
        RP_CHECK(readers[i].rc == RP_OK, "reader %d: %s", i, readers[i].err);
        gets += readers[i].gets;
        hits += readers[i].near_hits;
        rp_client_free(readers[i].driver);
    }
    for (i = 0; i < NEAR_KEYS; i++) {
        snprintf(key, sizeof key, "n%d", i);
        RP_CHECK(near_read(a, da, key, v, sizeof v, &res, &e) == RP_OK, "get: %s", e.message);
        RP_CHECK(strcmp(v, last[i]) == 0, "%s answers \"%s\" (near %d), not its last write "
                 "\"%s\": a stale near entry", key, v, res.near, last[i]);
    }
    __atomic_store_n(&ns.stop, 1, __ATOMIC_RELEASE);
    pthread_join(st, NULL); /* (its counters are read after it ended) */
    printf("near-cache: %d readers, %lld gets (%.0f%% near) during %d writes by another "
           "handle; afterwards every key answers its last write; %lld messages applied\n",
           NEAR_READERS, gets, gets ? 100.0 * (double)hits / (double)gets : 0.0, NEAR_ROUNDS,
           ns.applied);
    RP_CHECK(ns.cleared == 0, "the near-cache was cleared %lld times (a gap in a sequence)",
             ns.cleared);
    rp_client_free(ns.client);
    rp_cache_free(a);
    rp_cache_free(b);
    rp_client_free(da);
    rp_client_free(db);
}

int main(void)
{
    rp_hserver srv;
    const char *env = getenv("REDPAT_TEST_URL");
    rp_client_options mo = RP_CLIENT_OPTIONS_INIT;
    rp_error e;
    int own = 0;
    rp_harness_watchdog(300);
    if (env && *env) {
        snprintf(url, sizeof url, "%s", env);
    } else {
        RP_CHECK(rp_hserver_start(&srv, 0) == 0, "start redis-server");
        snprintf(url, sizeof url, "%s", srv.url);
        own = 1;
    }
    mo.url = url;
    mo.key_namespace = LT_NS;
    RP_CHECK(rp_client_new(&maker, &mo, &e) == RP_OK, "maker: %s", e.message);
    side = lt_client(url, 5000);

    stampede_miss(RP_CACHE_LOCK, "lock, an expired key:");
    stampede_miss(RP_CACHE_SWR, "swr, an expired key:");
    stampede_stale();
    stale_fill(LOAD_DELETE, 1);
    stale_fill(LOAD_WRITE, 1);
    stale_fill(LOAD_DELETE, 0);
    stale_fill(LOAD_WRITE, 0);
    dead_holder();
    dead_refresher();
    tag_stampede();
    tag_race_by_hand();
    xfetch_real();
    none_and_failures();
    redis_full();
    near_coherence();

    rp_client_free(side);
    rp_client_free(maker);
    if (own)
        rp_hserver_destroy(&srv);
    if (late_failures) {
        printf("test_cache: %d failure(s)\n", late_failures);
        return 1;
    }
    printf("test_cache: ok\n");
    return 0;
}
