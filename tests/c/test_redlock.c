/* Redlock over 5 real redis-server processes started here.
 *
 *  1. The timing facts: with 2 of 5 SIGSTOPped an acquire completes in about one round
 *     trip (well under half the per-node timeout of 1000 ms: a stopped node delays
 *     nothing while a majority answers), the release within one node timeout (it waits
 *     for every node); with 3 of 5 stopped an
 *     acquire fails (acquired 0, no error) within about one per-node timeout (< 2.5 x) and
 *     leaves no key on the 2 live nodes.
 *  2. The rules of lock.h against the servers' state: the key on every node with the
 *     token, validity in (0, ttl], a second owner refused, a node that lost the key re-taken
 *     by extend, extend with a majority lost is not owned and cleans up, release after
 *     expiry is not owned, a key another owner holds on 3 nodes refuses us and leaves no
 *     key of ours anywhere, queries by majority, scripts forgotten by every node (SCRIPT
 *     FLUSH) cost nothing, bad input refused before any I/O.
 *  3. 8 threads, each with its own client over the 5, contend for one Redlock: mutual
 *     exclusion checked with a shared counter inside the critical section.
 *  4. Allocation-failure sweep of a Redlock scenario (as test_lock_allocfail does for one
 *     instance): the Nth allocation fails, for every N; each call returns its normal
 *     status or RP_ENOMEM, and nothing leaks.
 * The servers run in this (single-threaded until part 3) process's harness; the threads of
 * part 3 use only their own redpat clients. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock_test_util.h"

#define NSERVERS 5
#define NODE_TIMEOUT_MS 1000
#define NTHREADS 8
#define CYCLES_PER_THREAD 50

static rp_hserver srv[NSERVERS];
static redisContext *side[NSERVERS]; /* side channels, for inspecting each node */
#define URLS_MAX (NSERVERS * sizeof srv[0].url + NSERVERS)

static rp_client *client_over(size_t n)
{
    char buf[URLS_MAX];
    size_t i, len = 0;
    buf[0] = '\0';
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? "," : "", srv[i].url);
    return lt_client(buf, 2000);
}

static rp_lock *redlock(rp_client *c, const char *name, int64_t ttl_ms, int64_t node_timeout_ms)
{
    rp_redlock_options o = RP_REDLOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    rp_error e;
    int rc;
    o.ttl_ms = ttl_ms;
    o.node_timeout_ms = node_timeout_ms;
    rc = rp_redlock_new(&l, c, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_redlock_new: %s (%s)", rp_status_name(rc), e.message);
    RP_CHECK(rp_lock_nodes(l) == NSERVERS, "nodes %zu", rp_lock_nodes(l));
    return l;
}

static void flush_all(void)
{
    for (int i = 0; i < NSERVERS; i++) {
        redisReply *r = rp_hcmd(side[i], "FLUSHALL");
        RP_CHECK(r && r->type == REDIS_REPLY_STATUS, "FLUSHALL on %d", i);
        freeReplyObject(r);
    }
}

/* 1: node i holds the lock's key with the handle's token; 0: no key; -1: another value. */
static int node_holds(int i, const char *name, const rp_lock *l)
{
    size_t tlen;
    const char *tok = l ? rp_lock_token(l, &tlen) : NULL;
    redisReply *r = rp_hcmd(side[i], "GET " LT_NS ":lock:{%s}", name);
    int v;
    RP_CHECK(r != NULL, "GET on node %d", i);
    if (r->type == REDIS_REPLY_NIL)
        v = 0;
    else
        v = (r->type == REDIS_REPLY_STRING && tok && r->len == tlen &&
             memcmp(r->str, tok, tlen) == 0) ? 1 : -1;
    freeReplyObject(r);
    return v;
}

/* node_holds once it equals want, or after SETTLE_MS. A round ends once a quorum decides:
 * the nodes not waited for were sent their request and run it a moment later (a new
 * connection is accepted before it is read, so a side-channel command may overtake it). */
#define SETTLE_MS 1000
static int settled(int i, const char *name, const rp_lock *l, int want)
{
    uint64_t until = rp_harness_now_ms() + SETTLE_MS;
    int v;
    while ((v = node_holds(i, name, l)) != want && rp_harness_now_ms() < until)
        rp_harness_sleep_ms(5);
    return v;
}

/* Before changing a node's key from the side channel: let the requests of the last op's
 * round that were not waited for run first, or one may undo the change (a late extend
 * re-takes a key just deleted). */
#define QUIESCE_MS 50
static void quiesce(void) { rp_harness_sleep_ms(QUIESCE_MS); }

static int holding(const char *name, const rp_lock *l)
{
    int n = 0;
    for (int i = 0; i < NSERVERS; i++)
        n += node_holds(i, name, l) == 1;
    return n;
}

static void acquire_once(rp_lock *l, rp_lock_acquisition *res, int *rc, rp_error *e,
                         uint64_t *elapsed_ms)
{
    uint64_t t0 = rp_harness_now_ms();
    *rc = rp_lock_acquire(l, NULL, res, e);
    *elapsed_ms = rp_harness_now_ms() - t0;
}

/* --- 1. the timing facts ------------------------------------------------------------- */

static void test_two_stopped(void)
{
    rp_client *c = client_over(NSERVERS);
    rp_lock *l = redlock(c, "two-stopped", 10000, NODE_TIMEOUT_MS);
    rp_lock_acquisition res;
    rp_error e;
    uint64_t ms;
    int rc;
    flush_all();
    RP_CHECK(rp_hserver_pause(&srv[3]) == 0 && rp_hserver_pause(&srv[4]) == 0, "SIGSTOP");
    acquire_once(l, &res, &rc, &e, &ms);
    RP_CHECK(rc == RP_OK && res.acquired, "acquire with 2 of 5 stopped: %s %d (%s)",
             rp_status_name(rc), res.acquired, e.message);
    RP_CHECK(ms < NODE_TIMEOUT_MS / 2, "acquire with 2 of 5 stopped took %" PRIu64 " ms: it "
             "waited for a stopped node (node timeout %d ms)", ms, NODE_TIMEOUT_MS);
    RP_CHECK(res.validity_ms > 0 && res.validity_ms <= 10000, "validity %" PRId64, res.validity_ms);
    for (int i = 0; i < 3; i++)
        RP_CHECK(node_holds(i, "two-stopped", l) == 1, "node %d lacks the key", i);
    uint64_t t0 = rp_harness_now_ms();
    rc = rp_lock_release(l, &e);
    ms = rp_harness_now_ms() - t0;
    RP_CHECK(rc == RP_OK, "release with 2 of 5 stopped: %s (%s)", rp_status_name(rc), e.message);
    /* a release waits for every node, each within the node timeout (no delete unsent) */
    RP_CHECK(ms < NODE_TIMEOUT_MS * 3 / 2, "release with 2 of 5 stopped took %" PRIu64 " ms", ms);
    for (int i = 0; i < 3; i++)
        RP_CHECK(node_holds(i, "two-stopped", NULL) == 0, "node %d kept the key", i);
    RP_CHECK(rp_hserver_resume(&srv[3]) == 0 && rp_hserver_resume(&srv[4]) == 0, "SIGCONT");
    rp_lock_free(l);
    rp_client_free(c);
    printf("ok: 2 of 5 stopped: acquire within one round trip, release within one node timeout\n");
}

static void test_three_stopped(void)
{
    rp_client *c = client_over(NSERVERS);
    rp_lock *l = redlock(c, "three-stopped", 10000, NODE_TIMEOUT_MS);
    rp_lock_acquisition res;
    rp_error e;
    uint64_t ms;
    int rc;
    flush_all();
    for (int i = 2; i < NSERVERS; i++)
        RP_CHECK(rp_hserver_pause(&srv[i]) == 0, "SIGSTOP %d", i);
    acquire_once(l, &res, &rc, &e, &ms);
    RP_CHECK(rc == RP_OK && !res.acquired, "acquire with 3 of 5 stopped: %s acquired %d (%s)",
             rp_status_name(rc), res.acquired, e.message);
    RP_CHECK(res.validity_ms == 0 && res.attempts == 1, "validity %" PRId64 " attempts %u",
             res.validity_ms, res.attempts);
    RP_CHECK(ms < NODE_TIMEOUT_MS * 5 / 2, "acquire with 3 of 5 stopped took %" PRIu64 " ms "
             "(node timeout %d ms)", ms, NODE_TIMEOUT_MS);
    RP_CHECK(ms >= NODE_TIMEOUT_MS - 50, "acquire with 3 of 5 stopped gave up after %" PRIu64
             " ms, before the node timeout of %d ms", ms, NODE_TIMEOUT_MS);
    RP_CHECK(rp_lock_token(l, NULL) == NULL, "a failed acquire left a token on the handle");
    for (int i = 0; i < 2; i++)
        RP_CHECK(node_holds(i, "three-stopped", NULL) == 0, "live node %d kept our key", i);
    for (int i = 2; i < NSERVERS; i++)
        RP_CHECK(rp_hserver_resume(&srv[i]) == 0, "SIGCONT %d", i);
    printf("ok: 3 of 5 stopped: acquire refused in %" PRIu64 " ms, no key left on the live nodes\n", ms);

    /* held, then 3 of 5 stop: the unreachable nodes decide, so the ops fail as they did
     * (timeout), each within about one node timeout; extend keeps the token (it may still
     * be held), release forgets it */
    rp_lock_free(l);
    l = redlock(c, "held-then-stopped", 10000, 200);
    rc = rp_lock_acquire(l, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired, "acquire: %s", rp_status_name(rc));
    for (int i = 2; i < NSERVERS; i++)
        RP_CHECK(rp_hserver_pause(&srv[i]) == 0, "SIGSTOP %d", i);
    {
        int v = -1;
        uint64_t t0 = rp_harness_now_ms();
        rc = rp_lock_owned(l, &v, &e);
        RP_CHECK(rc == RP_ETIMEOUT && strstr(e.message, "3 could not answer"),
                 "owned with 3 of 5 stopped: %s (%s)", rp_status_name(rc), e.message);
        rc = rp_lock_extend(l, 10000, 1, &e);
        RP_CHECK(rc == RP_ETIMEOUT && rp_lock_token(l, NULL) != NULL,
                 "extend with 3 of 5 stopped: %s (%s)", rp_status_name(rc), e.message);
        rc = rp_lock_release(l, &e);
        RP_CHECK(rc == RP_ETIMEOUT && rp_lock_token(l, NULL) == NULL,
                 "release with 3 of 5 stopped: %s (%s)", rp_status_name(rc), e.message);
        ms = rp_harness_now_ms() - t0;
        RP_CHECK(ms < 3 * 200 * 5 / 2, "3 ops with 3 of 5 stopped took %" PRIu64 " ms", ms);
        for (int i = 0; i < 2; i++)
            RP_CHECK(node_holds(i, "held-then-stopped", NULL) == 0, "node %d kept the key", i);
    }
    for (int i = 2; i < NSERVERS; i++)
        RP_CHECK(rp_hserver_resume(&srv[i]) == 0, "SIGCONT %d", i);
    rp_lock_free(l);
    rp_client_free(c);
    printf("ok: held, then 3 of 5 stopped: owned, extend, release fail with the nodes' timeout\n");
}

/* --- 2. the rules ------------------------------------------------------------------------ */

static void expect_rc(int rc, int want, const rp_error *e, const char *what)
{
    RP_CHECK(rc == want, "%s: got %s (%s), wanted %s", what, rp_status_name(rc), e->message,
             rp_status_name(want));
}

static void test_rules(void)
{
    rp_client *c = client_over(NSERVERS);
    rp_lock *a = redlock(c, "r", 5000, 200), *b = redlock(c, "r", 5000, 200);
    rp_lock_acquisition res;
    rp_lock_remaining rem;
    rp_error e;
    int rc, v;
    flush_all();

    /* acquire: everywhere, with the token; a second owner is refused */
    rc = rp_lock_acquire(a, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired && res.attempts == 1, "acquire: %s (%s)",
             rp_status_name(rc), e.message);
    RP_CHECK(holding("r", a) >= 3, "acquired, but only %d nodes hold the token", holding("r", a));
    RP_CHECK(res.validity_ms > 0 && res.validity_ms <= 5000 - 52, "validity %" PRId64
             " (ttl 5000, drift 52)", res.validity_ms);
    for (int i = 0; i < NSERVERS; i++)
        RP_CHECK(settled(i, "r", a, 1) == 1, "node %d lacks the token", i);
    rc = rp_lock_acquire(b, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && !res.acquired && res.validity_ms == 0, "second owner: %s %d",
             rp_status_name(rc), res.acquired);
    for (int i = 0; i < NSERVERS; i++)
        RP_CHECK(node_holds(i, "r", a) == 1, "the refused owner touched node %d", i);
    expect_rc(rp_lock_owned(a, &v, &e), RP_OK, &e, "owned");
    RP_CHECK(v == 1, "owned a %d", v);
    expect_rc(rp_lock_owned(b, &v, &e), RP_OK, &e, "owned b");
    RP_CHECK(v == 0, "owned b %d", v);
    expect_rc(rp_lock_locked(b, &v, &e), RP_OK, &e, "locked");
    RP_CHECK(v == 1, "locked %d", v);
    expect_rc(rp_lock_remaining_ms(a, &rem, &e), RP_OK, &e, "remaining");
    RP_CHECK(rem.owned && rem.remaining_ms > 0 && rem.remaining_ms <= 5000, "remaining %d %" PRId64,
             rem.owned, rem.remaining_ms);

    /* scripts forgotten everywhere: release and extend still take one round each */
    for (int i = 0; i < NSERVERS; i++)
        freeReplyObject(rp_hcmd(side[i], "SCRIPT FLUSH"));
    expect_rc(rp_lock_extend(a, 8000, 1, &e), RP_OK, &e, "extend after SCRIPT FLUSH");
    quiesce();

    /* extend re-takes a node that lost the key, when a majority still holds it */
    freeReplyObject(rp_hcmd(side[2], "DEL " LT_NS ":lock:{r}"));
    RP_CHECK(node_holds(2, "r", a) == 0, "DEL");
    expect_rc(rp_lock_extend(a, 8000, 1, &e), RP_OK, &e, "extend with one node lost");
    RP_CHECK(settled(2, "r", a, 1) == 1, "extend did not re-take node 2");
    {
        redisReply *r = rp_hcmd(side[2], "PTTL " LT_NS ":lock:{r}");
        RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 7000 && r->integer <= 8000,
                 "re-taken TTL %lld", r ? r->integer : -99);
        freeReplyObject(r);
    }
    quiesce();
    /* with 2 lost, 3 remain: locked and owned by majority */
    freeReplyObject(rp_hcmd(side[0], "DEL " LT_NS ":lock:{r}"));
    freeReplyObject(rp_hcmd(side[1], "DEL " LT_NS ":lock:{r}"));
    expect_rc(rp_lock_owned(a, &v, &e), RP_OK, &e, "owned on 3 of 5");
    RP_CHECK(v == 1, "owned on 3 of 5: %d", v);
    /* a majority lost: not owned, our keys deleted everywhere (the re-taken ones too) */
    freeReplyObject(rp_hcmd(side[3], "DEL " LT_NS ":lock:{r}"));
    expect_rc(rp_lock_owned(a, &v, &e), RP_OK, &e, "owned on 2 of 5");
    RP_CHECK(v == 0, "owned on 2 of 5: %d", v);
    expect_rc(rp_lock_locked(a, &v, &e), RP_OK, &e, "locked on 2 of 5");
    RP_CHECK(v == 0, "locked on 2 of 5: %d", v);
    expect_rc(rp_lock_extend(a, 8000, 0, &e), RP_ENOTOWNED, &e, "extend with a majority lost");
    RP_CHECK(rp_lock_token(a, NULL) == NULL, "not owned kept the token");
    for (int i = 0; i < NSERVERS; i++)
        RP_CHECK(settled(i, "r", NULL, 0) == 0, "node %d kept a key after the lost extend", i);
    quiesce();

    /* release after expiry is not owned */
    {
        rp_lock *s = redlock(c, "short", 100, 50);
        rc = rp_lock_acquire(s, NULL, &res, &e);
        RP_CHECK(rc == RP_OK && res.acquired && res.validity_ms > 0 && res.validity_ms <= 100 - 3,
                 "short acquire %s %d %" PRId64, rp_status_name(rc), res.acquired, res.validity_ms);
        rp_harness_sleep_ms(200);
        expect_rc(rp_lock_release(s, &e), RP_ENOTOWNED, &e, "release after expiry");
        RP_CHECK(strstr(e.message, "no longer owned"), "message: %s", e.message);
        rp_lock_free(s);
    }

    /* another owner on 3 nodes: refused, and no key of ours anywhere */
    for (int i = 0; i < 3; i++)
        freeReplyObject(rp_hcmd(side[i], "SET " LT_NS ":lock:{r} other PX 10000"));
    rc = rp_lock_acquire(a, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && !res.acquired, "acquire against 3 others: %s %d", rp_status_name(rc),
             res.acquired);
    for (int i = 0; i < NSERVERS; i++)
        RP_CHECK(settled(i, "r", NULL, i < 3 ? -1 : 0) == (i < 3 ? -1 : 0),
                 "node %d after the refusal", i);
    /* waiting: retried with backoff while the next attempt comes within the wait (it gives up
     * once a delay, at most retry_max, would end past it) */
    {
        rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
        uint64_t t0 = rp_harness_now_ms(), ms;
        ao.wait_ms = 300;
        ao.retry_min_ms = 20;
        ao.retry_max_ms = 40;
        rc = rp_lock_acquire(a, &ao, &res, &e);
        ms = rp_harness_now_ms() - t0;
        RP_CHECK(rc == RP_OK && !res.acquired && res.attempts >= 5 && ms > 300 - 40 && ms < 1000,
                 "waiting acquire: %s %d attempts %u in %" PRIu64 " ms", rp_status_name(rc),
                 res.acquired, res.attempts, ms);
        /* the other's key on node 0 expires soon: then a majority (0, 3, 4) is free */
        freeReplyObject(rp_hcmd(side[0], "PEXPIRE " LT_NS ":lock:{r} 150"));
        ao.wait_ms = 3000;
        rc = rp_lock_acquire(a, &ao, &res, &e);
        RP_CHECK(rc == RP_OK && res.acquired && res.attempts >= 2, "acquire once the other "
                 "left: %s %d attempts %u", rp_status_name(rc), res.acquired, res.attempts);
        expect_rc(rp_lock_release(a, &e), RP_OK, &e, "release");
        RP_CHECK(node_holds(2, "r", NULL) == -1, "release touched the other's key");
    }

    /* bad input, before any I/O */
    {
        rp_client *c4 = client_over(4), *c1 = client_over(1);
        rp_lock *l = NULL;
        rp_redlock_options o = RP_REDLOCK_OPTIONS_INIT;
        rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
        expect_rc(rp_redlock_new(&l, c4, "x", 1, NULL, &e), RP_EINVAL, &e, "4 endpoints");
        RP_CHECK(strstr(e.message, "got 4"), "message: %s", e.message);
        expect_rc(rp_redlock_new(&l, c1, "x", 1, NULL, &e), RP_EINVAL, &e, "1 endpoint");
        o.node_timeout_ms = 0;
        expect_rc(rp_redlock_new(&l, c, "x", 1, &o, &e), RP_EINVAL, &e, "node timeout 0");
        o.node_timeout_ms = o.ttl_ms + 1;
        expect_rc(rp_redlock_new(&l, c, "x", 1, &o, &e), RP_EINVAL, &e, "node timeout > ttl");
        o = (rp_redlock_options)RP_REDLOCK_OPTIONS_INIT;
        o.ttl_ms = 0;
        expect_rc(rp_redlock_new(&l, c, "x", 1, &o, &e), RP_EINVAL, &e, "ttl 0");
        expect_rc(rp_lock_new(&l, c, "x", 1, &lo, &e), RP_EINVAL, &e, "lock.new over 5");
        RP_CHECK(strstr(e.message, "redlock.new"), "message: %s", e.message);
        RP_CHECK(l == NULL, "a refused constructor made a handle");
        rp_client_free(c4);
        rp_client_free(c1);
    }

    /* no node answers at all (nothing listens): the acquire fails as the nodes did */
    {
        char down[URLS_MAX];
        size_t len = 0;
        rp_client *cd;
        rp_lock *l;
        for (int i = 0; i < NSERVERS; i++)
            len += (size_t)snprintf(down + len, sizeof down - len, "%sredis://127.0.0.1:%d",
                                    i ? "," : "", rp_harness_free_port());
        cd = lt_client(down, 2000);
        l = redlock(cd, "down", 1000, 100);
        rc = rp_lock_acquire(l, NULL, &res, &e);
        RP_CHECK(rc == RP_ETRANSPORT && strstr(e.message, "none of the 5 nodes answered yes or no"),
                 "acquire with every node down: %s (%s)", rp_status_name(rc), e.message);
        rp_lock_free(l);
        rp_client_free(cd);
    }
    rp_lock_free(a);
    rp_lock_free(b);
    rp_client_free(c);
    printf("ok: Redlock rules (quorum acquire, re-take, lost majority, expiry, queries, input)\n");
}

/* --- 3. mutual exclusion under contention ------------------------------------------------ */

static atomic_int inside;
static atomic_int overlaps;
static long counter; /* guarded by the Redlock only */

typedef struct worker {
    int idx;
    int acquired, errors;
    char msg[160];
} worker;

static void *contend(void *arg)
{
    worker *w = arg;
    rp_client *c = client_over(NSERVERS);
    rp_lock *l = redlock(c, "contended", 10000, 200);
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = 60000;
    ao.retry_min_ms = 1;
    ao.retry_max_ms = 20;
    for (int i = 0; i < CYCLES_PER_THREAD; i++) {
        rp_lock_acquisition res;
        rp_error e;
        int rc = rp_lock_acquire(l, &ao, &res, &e);
        if (rc != RP_OK || !res.acquired) {
            w->errors++;
            snprintf(w->msg, sizeof w->msg, "acquire: %s %d: %.100s", rp_status_name(rc),
                     res.acquired, e.message);
            continue;
        }
        if (atomic_fetch_add(&inside, 1) != 0)
            atomic_fetch_add(&overlaps, 1);
        long before = counter; /* a lost update shows any overlap the flag missed */
        rp_harness_sleep_ms(1);
        counter = before + 1;
        atomic_fetch_sub(&inside, 1);
        w->acquired++;
        if ((rc = rp_lock_release(l, &e)) != RP_OK) {
            w->errors++;
            snprintf(w->msg, sizeof w->msg, "release: %s: %.100s", rp_status_name(rc), e.message);
        }
    }
    rp_lock_free(l);
    rp_client_free(c);
    return NULL;
}

static void test_contention(void)
{
    pthread_t th[NTHREADS];
    worker w[NTHREADS];
    int total = 0;
    uint64_t t0 = rp_harness_now_ms();
    flush_all();
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].idx = i;
        RP_CHECK(pthread_create(&th[i], NULL, contend, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        RP_CHECK(w[i].errors == 0, "thread %d: %d errors, last: %s", i, w[i].errors, w[i].msg);
        total += w[i].acquired;
    }
    RP_CHECK(atomic_load(&overlaps) == 0, "%d overlapping holds", atomic_load(&overlaps));
    RP_CHECK(total == NTHREADS * CYCLES_PER_THREAD && counter == total,
             "acquired %d, counter %ld, wanted %d", total, counter, NTHREADS * CYCLES_PER_THREAD);
    for (int i = 0; i < NSERVERS; i++)
        RP_CHECK(settled(i, "contended", NULL, 0) == 0, "node %d kept a key at the end", i);
    printf("ok: %d threads x %d cycles, mutual exclusion held, in %" PRIu64 " ms\n", NTHREADS,
           CYCLES_PER_THREAD, rp_harness_now_ms() - t0);
}

/* --- 4. allocation failures ------------------------------------------------------------ */

#define MAX_SWEEP 20000
#define MAGIC 0x52504c4bu

typedef struct counting_alloc {
    unsigned long calls, fail_at; /* fail_at: 1-based call that returns NULL; 0: never */
    int injected, bad_free;
    int retried; /* the busy acquire made more than one attempt */
    long live;
} counting_alloc;

typedef struct header {
    uint32_t magic, pad;
    size_t size;
} header;
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
    header *h;
    if (should_fail(a) || size > SIZE_MAX - HDR || !(h = malloc(HDR + size)))
        return NULL;
    h->magic = MAGIC;
    h->size = size;
    a->live++;
    return (char *)h + HDR;
}

static void ca_free(void *ud, void *p)
{
    counting_alloc *a = ud;
    header *h;
    if (!p)
        return;
    h = (header *)(void *)((char *)p - HDR);
    if (h->magic != MAGIC) {
        a->bad_free = 1;
        return;
    }
    h->magic = 0;
    a->live--;
    free(h);
}

static void *ca_realloc(void *ud, void *p, size_t size)
{
    counting_alloc *a = ud;
    header *h, *n;
    if (!p)
        return ca_malloc(ud, size);
    if (should_fail(a) || size > SIZE_MAX - HDR)
        return NULL;
    h = (header *)(void *)((char *)p - HDR);
    if (h->magic != MAGIC) {
        a->bad_free = 1;
        return NULL;
    }
    if (!(n = realloc(h, HDR + size)))
        return NULL;
    n->size = size;
    return (char *)n + HDR;
}

/* want goes on, RP_ENOMEM ends the run cleanly (only after an injected failure), anything
 * else fails the test. */
#define STEP(name, want, expr)                                                             \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        if (rc_ == RP_ENOMEM && (want) != RP_ENOMEM) {                                     \
            RP_CHECK(a->injected, "N=%lu: %s returned no_memory but no allocation failed", \
                     a->fail_at, name);                                                    \
            *enomem = 1;                                                                   \
            goto done;                                                                     \
        }                                                                                  \
        RP_CHECK(rc_ == (want), "N=%lu: %s returned %s (%s)", a->fail_at, name,             \
                 rp_status_name(rc_), e.message);                                          \
    } while (0)

static void side_all(int from, int to, const char *fmt, const char *name)
{
    for (int i = from; i < to; i++)
        freeReplyObject(rp_hcmd(side[i], fmt, name));
}

/* Returns 1 when every step ran. */
static int alloc_scenario(counting_alloc *a, int *enomem)
{
    rp_allocator al = { ca_malloc, ca_realloc, ca_free, a };
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_lock_acquire_options wait = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_lock *l = NULL, *busy = NULL;
    rp_lock_acquisition res;
    rp_lock_remaining rem;
    rp_error e;
    char url[URLS_MAX], name[48], busy_name[64];
    size_t len = 0;
    int v, completed = 0;
    memset(&e, 0, sizeof e);
    for (int i = 0; i < NSERVERS; i++)
        len += (size_t)snprintf(url + len, sizeof url - len, "%s%s", i ? "," : "", srv[i].url);
    o.url = url;
    o.key_namespace = LT_NS;
    o.allocator = &al;
    ro.ttl_ms = 10000;
    ro.node_timeout_ms = 500;
    /* each run has its own locks: a run cut short may leave its keys behind */
    snprintf(name, sizeof name, "allocfail-%lu", a->fail_at);
    snprintf(busy_name, sizeof busy_name, "%s-busy", name);

    STEP("rp_client_new", RP_OK, rp_client_new(&c, &o, &e));
    STEP("rp_redlock_new", RP_OK, rp_redlock_new(&l, c, name, strlen(name), &ro, &e));
    STEP("acquire", RP_OK, rp_lock_acquire(l, NULL, &res, &e));
    RP_CHECK(res.acquired, "N=%lu: not acquired", a->fail_at);
    /* node 0 loses the key (a late SET of the acquire may restore it: then extend merely
     * extends it there) */
    side_all(0, 1, "DEL " LT_NS ":lock:{%s}", name);
    STEP("extend (re-takes node 0)", RP_OK, rp_lock_extend(l, 10000, 1, &e));
    STEP("owned", RP_OK, rp_lock_owned(l, &v, &e));
    RP_CHECK(v == 1, "N=%lu: not owned", a->fail_at);
    STEP("locked", RP_OK, rp_lock_locked(l, &v, &e));
    RP_CHECK(v == 1, "N=%lu: not locked", a->fail_at);
    STEP("remaining", RP_OK, rp_lock_remaining_ms(l, &rem, &e));
    RP_CHECK(rem.owned && rem.remaining_ms > 0, "N=%lu: remaining", a->fail_at);
    STEP("release", RP_OK, rp_lock_release(l, &e));
    /* a lost majority: extend cleans up and is not owned */
    STEP("acquire again", RP_OK, rp_lock_acquire(l, NULL, &res, &e));
    RP_CHECK(res.acquired, "N=%lu: not acquired again", a->fail_at);
    /* another owner's key, not a DEL: a SET of the acquire that runs late cannot undo it */
    side_all(0, 3, "SET " LT_NS ":lock:{%s} someone-else PX 60000", name);
    STEP("extend (majority lost)", RP_ENOTOWNED, rp_lock_extend(l, 10000, 1, &e));
    /* last, as its number of attempts varies: wait for a lock another owner holds on 3
     * nodes (each attempt's yes on the 2 others is cleaned up), and give up */
    side_all(0, 3, "SET " LT_NS ":lock:{%s} someone-else PX 60000", busy_name);
    STEP("rp_redlock_new (busy)", RP_OK, rp_redlock_new(&busy, c, busy_name, strlen(busy_name),
                                                        &ro, &e));
    wait.wait_ms = 25;
    wait.retry_min_ms = 5;
    wait.retry_max_ms = 10;
    STEP("acquire (busy, waiting)", RP_OK, rp_lock_acquire(busy, &wait, &res, &e));
    RP_CHECK(!res.acquired && res.attempts >= 1, "N=%lu: busy: acquired %d after %u",
             a->fail_at, res.acquired, res.attempts);
    /* on a loaded machine one attempt and its clean-up may outlast the wait: counted */
    if (res.attempts > 1)
        a->retried = 1;
    completed = 1;
done:
    rp_lock_free(busy);
    rp_lock_free(l);
    rp_client_free(c);
    return completed;
}

static void test_allocfail(void)
{
    counting_alloc base;
    unsigned long n, enomem_runs = 0, absorbed = 0, retried = 0, reached_busy = 0;
    int enomem = 0;
    memset(&base, 0, sizeof base);
    flush_all();
    RP_CHECK(alloc_scenario(&base, &enomem), "the scenario fails without injected failures");
    RP_CHECK(base.live == 0, "leak without failures: %ld blocks", base.live);
    for (n = 1; n <= MAX_SWEEP; n++) {
        counting_alloc a;
        int completed;
        memset(&a, 0, sizeof a);
        a.fail_at = n;
        enomem = 0;
        completed = alloc_scenario(&a, &enomem);
        RP_CHECK(!a.bad_free, "N=%lu: freed a pointer the allocator never gave", n);
        RP_CHECK(a.live == 0, "N=%lu: %ld blocks leaked", n, a.live);
        retried += (unsigned long)a.retried;
        reached_busy += (unsigned long)completed;
        if (enomem)
            enomem_runs++;
        else if (a.injected)
            absorbed++;
        if (!a.injected) {
            RP_CHECK(completed, "N=%lu: a run without failure did not complete", n);
            break;
        }
    }
    RP_CHECK(n <= MAX_SWEEP && enomem_runs > 0, "sweep: %lu runs, %lu no_memory", n, enomem_runs);
    RP_CHECK(retried * 2 > reached_busy, "the waiting acquire retried in only %lu of %lu runs",
             retried, reached_busy);
    printf("ok: allocation failures: %lu allocations per scenario; %lu runs, %lu ended in "
           "no_memory, %lu absorbed; no crash, no leak\n", base.calls, n, enomem_runs, absorbed);
}

int main(void)
{
    rp_harness_watchdog(300);
    for (int i = 0; i < NSERVERS; i++) {
        RP_CHECK(rp_hserver_start(&srv[i], 0) == 0, "cannot start redis-server %d", i);
        RP_CHECK((side[i] = rp_hserver_connect(&srv[i], 5000)) != NULL, "side channel %d", i);
    }
    test_two_stopped();
    test_three_stopped();
    test_rules();
    test_contention();
    test_allocfail();
    for (int i = 0; i < NSERVERS; i++) {
        redisFree(side[i]);
        rp_hserver_destroy(&srv[i]);
    }
    printf("test_redlock: all passed\n");
    return 0;
}
