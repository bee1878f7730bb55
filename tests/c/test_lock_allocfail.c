/* Allocation-failure sweep. A client gets an allocator that fails its Nth allocation
 * (malloc or realloc), for N = 1, 2, ... until a whole lock scenario runs without reaching
 * N. Every run must end cleanly: each call returns RP_OK or RP_ENOMEM (and RP_ENOMEM only
 * when an allocation really failed), nothing crashes, and once everything is freed the
 * allocator has no live block left. The allocator checks each pointer it is given back
 * (header magic), so a double free or a foreign pointer fails the test too.
 *
 * The scenario: client new, fenced lock new, acquire, extend, owned, release, fence check,
 * then a waiting acquire of a lock held by someone else (retries and sleeps). The script
 * cache is flushed before each run, so the NOSCRIPT -> EVAL fallback is swept as well.
 * hiredis' own buffers do not use this allocator (alloc.h); the AddressSanitizer run of
 * this test checks those for leaks. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock_test_util.h"

#define MAX_SWEEP 20000
#define MAGIC 0x5250414cu /* "RPAL" */

typedef struct counting_alloc {
    unsigned long calls;   /* allocations attempted (malloc + realloc) */
    unsigned long fail_at; /* 1-based: this call returns NULL; 0: never */
    int injected;          /* a failure was returned */
    long live;             /* blocks handed out and not freed */
    size_t live_bytes;
    int bad_free;          /* a pointer we never handed out came back */
} counting_alloc;

typedef struct header {
    uint32_t magic;
    uint32_t pad;
    size_t size;
} header;

/* Header padded so the user block stays max-aligned. */
#define HDR ((sizeof(header) + 15u) & ~(size_t)15u)

static int should_fail(counting_alloc *a)
{
    a->calls++;
    if (a->fail_at != 0 && a->calls == a->fail_at) {
        a->injected = 1;
        return 1;
    }
    return 0;
}

static void *ca_malloc(void *ud, size_t size)
{
    counting_alloc *a = ud;
    if (should_fail(a) || size > SIZE_MAX - HDR) return NULL;
    header *h = malloc(HDR + size);
    if (h == NULL) return NULL;
    h->magic = MAGIC;
    h->size = size;
    a->live++;
    a->live_bytes += size;
    return (char *)h + HDR;
}

static header *check_ptr(counting_alloc *a, void *p)
{
    header *h = (header *)(void *)((char *)p - HDR);
    if (h->magic != MAGIC) {
        a->bad_free = 1;
        return NULL;
    }
    return h;
}

static void ca_free(void *ud, void *p)
{
    counting_alloc *a = ud;
    if (p == NULL) return;
    header *h = check_ptr(a, p);
    if (h == NULL) return;
    h->magic = 0;
    a->live--;
    a->live_bytes -= h->size;
    free(h);
}

static void *ca_realloc(void *ud, void *p, size_t size)
{
    counting_alloc *a = ud;
    if (p == NULL) return ca_malloc(ud, size);
    if (should_fail(a) || size > SIZE_MAX - HDR) return NULL;
    header *h = check_ptr(a, p);
    if (h == NULL) return NULL;
    size_t old = h->size;
    header *n = realloc(h, HDR + size);
    if (n == NULL) return NULL;
    n->size = size;
    a->live_bytes = a->live_bytes - old + size;
    return (char *)n + HDR;
}

typedef struct run_result {
    int completed;          /* every step ran and succeeded */
    int enomem;             /* a step returned RP_ENOMEM */
    const char *failed_step;
} run_result;

/* A step result: RP_OK goes on, RP_ENOMEM ends the run cleanly, anything else fails. */
#define STEP(name, expr)                                                                   \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        if (rc_ == RP_ENOMEM) {                                                            \
            RP_CHECK(a->injected, "N=%lu: %s returned no_memory but no allocation failed", \
                     a->fail_at, name);                                                    \
            RP_CHECK(e.code == RP_ENOMEM, "N=%lu: %s: err.code %d", a->fail_at, name,       \
                     e.code);                                                              \
            r.enomem = 1;                                                                  \
            r.failed_step = name;                                                          \
            goto done;                                                                     \
        }                                                                                  \
        RP_CHECK(rc_ == RP_OK, "N=%lu: %s returned %s (%s)", a->fail_at, name,              \
                 rp_status_name(rc_), e.message);                                          \
    } while (0)

static redisContext *side;

/* Empties the server's script cache, so every run also takes the NOSCRIPT -> EVAL path
 * (and its allocations) once per script. */
static void script_flush(void)
{
    redisReply *r = rp_hcmd(side, "SCRIPT FLUSH");
    RP_CHECK(r != NULL && r->type == REDIS_REPLY_STATUS, "SCRIPT FLUSH");
    freeReplyObject(r);
}

static run_result scenario(const char *url, counting_alloc *a)
{
    run_result r = {0, 0, NULL};
    rp_error e;
    memset(&e, 0, sizeof e);
    rp_client *c = NULL;
    rp_lock *l = NULL, *other = NULL;
    rp_allocator al = {ca_malloc, ca_realloc, ca_free, a};
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = "rptest";
    o.allocator = &al;
    /* Each run uses its own lock: a run cut short may leave its lock behind. */
    char name[48];
    snprintf(name, sizeof name, "allocfail-%lu", a->fail_at);
    script_flush();

    STEP("rp_client_new", rp_client_new(&c, &o, &e));
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    lo.fenced = 1;
    lo.ttl_ms = 10000;
    STEP("rp_lock_new", rp_lock_new(&l, c, name, strlen(name), &lo, &e));
    rp_lock_acquisition res;
    STEP("rp_lock_acquire", rp_lock_acquire(l, NULL, &res, &e));
    RP_CHECK(res.acquired == 1 && res.fence > 0, "N=%lu: lock not acquired", a->fail_at);
    int64_t fence = res.fence;
    STEP("rp_lock_extend", rp_lock_extend(l, 5000, 0, &e));
    int owned = 0;
    STEP("rp_lock_owned", rp_lock_owned(l, &owned, &e));
    RP_CHECK(owned == 1, "N=%lu: not owned", a->fail_at);
    STEP("rp_lock_release", rp_lock_release(l, &e));
    rp_fence_result fr;
    STEP("rp_fence_check", rp_fence_check(c, name, strlen(name), fence, &fr, &e));
    RP_CHECK(fr.accepted == 1, "N=%lu: fence refused", a->fail_at);
    /* Last, as its number of attempts (and so of allocations) varies from run to run: wait
     * for a lock someone else holds (set from the side channel) and give up. This covers
     * the retry and sleep path. */
    char busy[64];
    snprintf(busy, sizeof busy, "%s-busy", name);
    redisReply *sr = rp_hcmd(side, "SET rptest:lock:{%s} someone-else PX 60000", busy);
    RP_CHECK(sr != NULL && sr->type == REDIS_REPLY_STATUS, "SET busy lock");
    freeReplyObject(sr);
    STEP("rp_lock_new (busy)", rp_lock_new(&other, c, busy, strlen(busy), &lo, &e));
    int locked = 0;
    STEP("rp_lock_locked", rp_lock_locked(other, &locked, &e));
    RP_CHECK(locked == 1, "N=%lu: not locked", a->fail_at);
    rp_lock_acquire_options wait = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    wait.wait_ms = 25;
    wait.retry_min_ms = 5;
    wait.retry_max_ms = 10;
    STEP("rp_lock_acquire (busy, waiting)", rp_lock_acquire(other, &wait, &res, &e));
    RP_CHECK(res.acquired == 0 && res.attempts > 1, "N=%lu: busy lock: acquired %d after %u",
             a->fail_at, res.acquired, res.attempts);
    r.completed = 1;
done:
    rp_lock_free(other);
    rp_lock_free(l);
    rp_client_free(c);
    return r;
}

int main(void)
{
    rp_harness_watchdog(300);
    rp_hserver srv;
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "cannot start redis-server");
    side = rp_hserver_connect(&srv, 2000);
    RP_CHECK(side != NULL, "side connection");

    /* The scenario without failures, to know it works and how many allocations it makes. */
    counting_alloc base;
    memset(&base, 0, sizeof base);
    run_result r0 = scenario(srv.url, &base);
    RP_CHECK(r0.completed, "scenario fails without injected failures");
    RP_CHECK(base.live == 0 && base.live_bytes == 0, "leak without failures: %ld blocks",
             base.live);
    RP_CHECK(base.calls > 0, "the client never used its allocator");

    unsigned long n;
    unsigned long enomem_runs = 0, survived = 0;
    for (n = 1; n <= MAX_SWEEP; n++) {
        counting_alloc a;
        memset(&a, 0, sizeof a);
        a.fail_at = n;
        run_result r = scenario(srv.url, &a);
        RP_CHECK(!a.bad_free, "N=%lu: freed a pointer the allocator never gave", n);
        RP_CHECK(a.live == 0 && a.live_bytes == 0,
                 "N=%lu: %ld blocks (%zu bytes) leaked after %s", n, a.live, a.live_bytes,
                 r.failed_step != NULL ? r.failed_step : "a completed run");
        if (r.enomem) enomem_runs++;
        else if (a.injected) survived++; /* the core coped with the failure by itself */
        if (!a.injected) {
            RP_CHECK(r.completed, "N=%lu: run without failure did not complete", n);
            break;
        }
    }
    RP_CHECK(n <= MAX_SWEEP, "sweep did not end after %d runs", MAX_SWEEP);
    RP_CHECK(enomem_runs > 0, "no run ever reported no_memory");
    printf("test_lock_allocfail: %lu allocations per scenario; %lu runs, %lu ended in "
           "no_memory, %lu absorbed the failure; no crash, no leak\n",
           base.calls, n, enomem_runs, survived);
    redisFree(side);
    rp_hserver_destroy(&srv);
    return 0;
}
