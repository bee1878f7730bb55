/* Unit tests of cancellation with a request in flight (issue 10, finding 7): ops stepped by
 * hand with canned replies, cancelled as a driver cancels them mid-round (the pending
 * targets failed with RP_ECANCELED, then rp_op_cancel). An acquire whose attempt may have
 * taken the key releases it with the token it sent before it ends RP_ECANCELED, and says
 * what happened; one that has nothing in flight ends at once; a rate-limit check says its
 * request may have been counted. No server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_acquire.h"

/* What a driver does when the task stepping op is cancelled mid-round. */
static void cancel_mid_round(rp_op *op)
{
    for (size_t i = 0; i < rp_op_nodes(op); i++)
        if (rp_op_pending(op, i))
            rp_op_fail_node(op, i, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
}

static int message_has(const rp_op *op, const char *part)
{
    const rp_error *e = rp_op_error(op);
    if (!strstr(e->message, part)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e->message, part);
        return 0;
    }
    return 1;
}

static int ended_cancelled(rp_op *op, uint64_t now)
{
    return rp_op_step(op, now) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED;
}

/* The replies meaning "acquired" and "busy" to the attempt in op's request: SET NX PX
 * answers +OK / nil; SET NX PX GET (Redis >= 7) answers nil / the holder's token; the
 * fenced script answers {1, fence} / {0, pttl}. */
static const char *acquired_reply(rp_op *op, int fenced)
{
    if (fenced)
        return "*2\r\n:1\r\n:7\r\n";
    return unit_request_has(op, 0, "$3\r\nGET\r\n") ? "$-1\r\n" : "+OK\r\n";
}

static const char *busy_reply(rp_op *op, int fenced)
{
    if (fenced)
        return "*2\r\n:0\r\n:500\r\n";
    return unit_request_has(op, 0, "$3\r\nGET\r\n") ? "$5\r\nother\r\n" : "$-1\r\n";
}

/* A Redlock node's yes / no to the SET in op's request (the same forms as a plain lock's). */
static const char *yes(rp_op *op) { return acquired_reply(op, 0); }
static const char *no(rp_op *op) { return busy_reply(op, 0); }

/* Cancelled with the attempt sent and unanswered: the release goes out with the same token,
 * then the op ends RP_ECANCELED saying so. */
static void test_unanswered_attempt_is_released(int fenced)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && unit_request_has(op, 0, TOKEN));
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    CHECK(releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.acquire: cancelled; the attempt in flight was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    /* the release finds nothing of ours: the attempt had not taken the key */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":0\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.acquire: cancelled; the attempt in flight had not taken the lock"));
    rp_op_free(op);

    /* the release itself fails: the message says what may stay held, for how long, why */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    rp_op_fail_node(op, 0, RP_ETIMEOUT, "no reply within 1s");
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.acquire: cancelled; lock \"r\" may stay held up to its ttl "
                          "(30000 ms): releasing it failed: no reply within 1s"));
    rp_op_free(op);

    /* ... or Redis refuses it */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    CHECK(feed(op, 0, "-BUSY Redis is busy running a script\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "may stay held up to its ttl (30000 ms): releasing it failed: BUSY"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Answered "acquired" but cancelled before the op read it: given back the same way. */
static void test_acquired_then_cancelled_is_released(int fenced)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, acquired_reply(op, fenced)) == RP_OK);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "the attempt in flight was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Nothing of ours out there: a busy reply, a backoff sleep, not started. No release. */
static void test_nothing_in_flight_ends_at_once(int fenced)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, busy_reply(op, fenced)) == RP_OK);
    cancel_mid_round(op);
    CHECK(ended_cancelled(op, T0 + 1));
    CHECK(message_has(op, "lock.acquire: cancelled"));
    rp_op_free(op);

    op = acquire(l, 1000); /* a waiting acquire, cancelled in its backoff */
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, busy_reply(op, fenced)) == RP_OK);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(strcmp(rp_op_error(op)->message, "lock.acquire: cancelled") == 0);
    rp_op_free(op);

    op = acquire(l, 1000); /* cancelled before its first step */
    rp_op_cancel(op);
    CHECK(ended_cancelled(op, T0));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Redlock: every node that may hold the key (said yes, or was cancelled unanswered) is sent
 * the release and waited for. */
static void test_redlock(void)
{
    rp_client *c = unit_client(URLS3);
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    const char *y, *n;
    rp_op *op;
    ro.ttl_ms = TTL_MS;
    ro.node_timeout_ms = 100;
    CHECK(rp_redlock_new(&l, c, "r", 1, &ro, NULL) == RP_OK);

    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 2, yes(op)) == RP_OK); /* one yes; two still unanswered */
    CHECK(!rp_op_round_over(op));
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    for (size_t i = 0; i < 3; i++)
        CHECK(releases_with_token(op, c, i));
    for (size_t i = 0; i < 3; i++)
        CHECK(feed(op, i, i == 0 ? ":0\r\n" : ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.acquire: cancelled; the attempt in flight was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    /* one node's release fails: it may stay held there */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    CHECK(feed(op, 0, ":1\r\n") == RP_OK && feed(op, 2, ":1\r\n") == RP_OK);
    rp_op_fail_node(op, 1, RP_ETIMEOUT, "no reply within 0.1s");
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.acquire: cancelled; lock \"r\" may stay held up to its ttl "
                          "(30000 ms) on 1 of 3 nodes: releasing it failed: node 1"));
    CHECK(message_has(op, "no reply within 0.1s"));
    rp_op_free(op);

    /* cancelled during its own clean-up round (after a lost attempt): the clean-up is sent
     * again, on fresh connections, to the nodes that had not answered it */
    op = acquire(l, 1000);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    y = yes(op); /* read from the request before it is answered */
    n = no(op);
    CHECK(feed(op, 0, y) == RP_OK);
    CHECK(feed(op, 1, n) == RP_OK && feed(op, 2, n) == RP_OK);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(rp_op_pending(op, 0) && !rp_op_pending(op, 1) && !rp_op_pending(op, 2));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 3));
    CHECK(message_has(op, "the attempt in flight was released"));
    rp_op_free(op);

    /* a no from every node: nothing to release */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    n = no(op);
    for (size_t i = 0; i < 3; i++)
        CHECK(feed(op, i, n) == RP_OK);
    rp_op_cancel(op);
    CHECK(ended_cancelled(op, T0 + 1));
    CHECK(strcmp(rp_op_error(op)->message, "lock.acquire: cancelled") == 0);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* lock.using cancelled while its acquire's attempt is in flight: the acquire compensates. */
static void test_using(void)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, 0);
    rp_lock_using_options o = RP_LOCK_USING_OPTIONS_INIT;
    rp_op *op = NULL;
    o.acquire.token = TOKEN;
    o.acquire.token_len = strlen(TOKEN);
    CHECK(rp_lock_using_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.using: cancelled; the attempt in flight was released"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* A rate-limit check cancelled in flight says the request may have been counted. */
static void test_ratelimit(void)
{
    rp_client *c = unit_client(NULL);
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    const void *subjects[] = { "a", "b" };
    size_t lens[] = { 1, 1 };
    int64_t costs[] = { 1, 1 };
    rp_op *op = NULL;
    o.limit = 10;
    o.window_ms = 1000;
    CHECK(rp_ratelimit_new(&rl, c, "api", 3, &o, NULL) == RP_OK);
    CHECK(rp_ratelimit_check_op(&op, rl, "u", 1, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(ended_cancelled(op, T0 + 1));
    CHECK(message_has(op, "ratelimit.check: cancelled with its request in flight: it may have "
                          "been counted"));
    rp_op_free(op);

    o.on_error = RP_RATELIMIT_FAIL_OPEN; /* a cancel is not an outage: no fail-open decision */
    rp_ratelimit_free(rl);
    CHECK(rp_ratelimit_new(&rl, c, "api", 3, &o, NULL) == RP_OK);
    CHECK(rp_ratelimit_batch_op(&op, rl, 2, subjects, lens, costs, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(ended_cancelled(op, T0 + 1));
    CHECK(message_has(op, "ratelimit.batch: cancelled with its requests in flight: they may "
                          "have been counted"));
    rp_op_free(op);

    CHECK(rp_ratelimit_check_op(&op, rl, "u", 1, 1, NULL) == RP_OK);
    rp_op_cancel(op); /* before anything was sent */
    CHECK(ended_cancelled(op, T0));
    CHECK(strcmp(rp_op_error(op)->message, "ratelimit.check: cancelled") == 0);
    rp_op_free(op);
    rp_ratelimit_free(rl);
    rp_client_free(c);
}

/* A held lock (acquired by hand) for the release tests. */
static rp_lock *held_lock(rp_client *c)
{
    rp_lock *l = lock1(c, 0);
    rp_op *op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, acquired_reply(op, 0)) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_DONE && rp_lock_token(l, NULL) != NULL);
    rp_op_free(op);
    return l;
}

static rp_op *release(rp_lock *l)
{
    rp_op *op = NULL;
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    return op;
}

/* A release cancelled with its request in flight (issue 11, item 5): the handle's token
 * follows what became of the lock. */
static void test_release(void)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = held_lock(c);
    rp_op *op = release(l);
    /* in doubt: asked again with the same token; afterwards it holds nothing */
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && releases_with_token(op, c, 0));
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":0\r\n") == RP_OK); /* the first one had run */
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "lock.release: cancelled; this handle's token holds nothing"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);

    l = held_lock(c); /* in doubt, and the second ask is the one that deletes it */
    op = release(l);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended_cancelled(op, T0 + 2) && message_has(op, "the lock was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    l = (rp_lock_free(l), held_lock(c)); /* the reply was in: applied, nothing asked again */
    op = release(l);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    rp_op_cancel(op);
    CHECK(ended_cancelled(op, T0 + 1) && message_has(op, "the lock was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    l = (rp_lock_free(l), held_lock(c)); /* cancelled before anything went out: still held */
    op = release(l);
    rp_op_cancel(op);
    CHECK(ended_cancelled(op, T0) && message_has(op, "this handle still holds the lock"));
    CHECK(rp_lock_token(l, NULL) != NULL);
    rp_op_free(op);

    op = release(l); /* in doubt, and asking again fails: the token stays (may be held) */
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    cancel_mid_round(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection refused");
    CHECK(ended_cancelled(op, T0 + 2));
    CHECK(message_has(op, "and asking again failed (connection refused): the lock may stay "
                          "held up to its ttl (30000 ms)"));
    CHECK(rp_lock_token(l, NULL) != NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

int main(void)
{
    test_unanswered_attempt_is_released(0);
    test_unanswered_attempt_is_released(1);
    test_acquired_then_cancelled_is_released(0);
    test_acquired_then_cancelled_is_released(1);
    test_nothing_in_flight_ends_at_once(0);
    test_nothing_in_flight_ends_at_once(1);
    test_redlock();
    test_using();
    test_ratelimit();
    test_release();
    printf("unit_cancel: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
