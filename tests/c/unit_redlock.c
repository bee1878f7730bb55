/* Unit tests of Redlock's quorum logic (core/src/redlock.c): ops over 5 targets driven by
 * hand with canned replies, failed nodes and a fake clock -- when each round may end
 * (rp_op_round_over), what each outcome is, the exact validity (ttl - elapsed - drift),
 * which nodes a clean-up waits for, retries and cancellation. No server: the client's 5
 * URLs are never connected to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#include "internal.h"
#include "script.h"

#define N 5
#define T0 1000000u /* the fake clock's start */

static const char *const URLS = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3,"
                                "redis://127.0.0.1:4,redis://127.0.0.1:5";

static rp_client *client5(void) { return unit_client(URLS); }

static rp_lock *redlock(rp_client *c, int64_t ttl_ms, int64_t node_timeout_ms)
{
    rp_redlock_options o = RP_REDLOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    o.ttl_ms = ttl_ms;
    o.node_timeout_ms = node_timeout_ms;
    if (rp_redlock_new(&l, c, "r", 1, &o, NULL) != RP_OK)
        abort();
    return l;
}

static int request_has(rp_op *op, size_t node, const char *part) { return unit_request_has(op, node, part); }

/* Every node has a request containing part. */
static int all_have(rp_op *op, const char *part)
{
    for (size_t i = 0; i < N; i++)
        if (!request_has(op, i, part))
            return 0;
    return 1;
}

/* Every node's request runs the embedded script called name (EVALSHA of its SHA-1). */
static int all_run(rp_op *op, rp_client *c, const char *name)
{
    const rp_script *sc = rp_script__find(rp_client__scripts(c), name);
    return sc && all_have(op, "EVALSHA") && all_have(op, sc->sha1);
}

static int feed(rp_op *op, size_t node, const char *reply)
{
    return rp_op_feed(op, node, reply, strlen(reply));
}

static void fail_node(rp_op *op, size_t node) { rp_op_fail_node(op, node, RP_ETIMEOUT, "timed out"); }

/* The engine abandons the targets still pending once the round is over (as a driver closes
 * their connections). */
static int pending(rp_op *op, size_t node) { return rp_op_pending(op, node); }

static rp_lock *held(rp_client *c, int64_t ttl_ms)
{
    rp_lock *l = redlock(c, ttl_ms, 50);
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_lock_acquisition res;
    rp_op *op;
    o.token = "tok";
    o.token_len = 3;
    if (rp_lock_acquire_op(&op, l, &o, NULL) != RP_OK || rp_op_step(op, T0) != RP_STEP_IO)
        abort();
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$-1\r\n");
    if (rp_op_step(op, T0 + 1) != RP_STEP_DONE || rp_lock_acquire_result(op, &res) != RP_OK ||
        !res.acquired)
        abort();
    rp_op_free(op);
    return l;
}

static void test_acquire_at_quorum(void)
{
    rp_client *c = client5();
    rp_lock *l = redlock(c, 10000, 80);
    rp_op *op;
    rp_lock_acquisition res;
    rp_lock_remaining rem;
    CHECK(rp_lock_nodes(l) == N && rp_lock_node_timeout_ms(l) == 80 && !rp_lock_fenced(l));
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(rp_op_nodes(op) == N);
    CHECK(rp_op_timeout_ms(op) == 80); /* the per-node timeout bounds each target */
    CHECK(all_have(op, "SET") && all_have(op, "t:lock:{r}") && all_have(op, "NX") && all_have(op, "GET") &&
          all_have(op, "PX") && all_have(op, "10000"));
    CHECK(feed(op, 0, "$-1\r\n") == RP_OK);
    CHECK(feed(op, 3, "$-1\r\n") == RP_OK);
    CHECK(!rp_op_round_over(op)); /* 2 of 5: not decided */
    CHECK(feed(op, 4, "$-1\r\n") == RP_OK);
    CHECK(rp_op_round_over(op)); /* a quorum: nodes 1 and 2 are not waited for */
    CHECK(pending(op, 1) && pending(op, 2));
    CHECK(rp_op_step(op, T0 + 7) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK);
    /* validity = ttl - elapsed - drift = 10000 - 7 - (10000 / 100 + 2) */
    CHECK(res.acquired == 1 && res.attempts == 1 && res.fence == 0 && res.validity_ms == 9891);
    CHECK(rp_lock_token(l, NULL) != NULL);
    CHECK(rp_lock__acquired_ms(l) == T0 && rp_lock__renewed_ms(l) == T0);
    rp_op_free(op);

    /* remaining: the Q-th longest TTL among the nodes holding the token */
    CHECK(rp_lock_remaining_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0 + 10) == RP_STEP_IO && all_have(op, "EVAL"));
    feed(op, 0, ":9000\r\n");
    feed(op, 1, ":-2\r\n");
    feed(op, 2, ":7000\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 3, ":8000\r\n");
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 11) == RP_STEP_DONE);
    CHECK(rp_lock_remaining_result(op, &rem) == RP_OK && rem.owned && rem.remaining_ms == 7000);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* drift rounds up: ceil(ttl / 100) + 2 */
static void test_validity_and_drift(void)
{
    rp_client *c = client5();
    rp_lock *l = redlock(c, 150, 50);
    rp_op *op;
    rp_lock_acquisition res;
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$-1\r\n");
    CHECK(rp_op_step(op, T0 + 100) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired && res.validity_ms == 46);
    rp_op_free(op);
    rp_lock_free(l);

    /* a quorum said yes, but too late: validity 150 - 146 - 4 = 0 is no hold. The token
     * is deleted everywhere; the round waits for the nodes that said yes. */
    l = redlock(c, 150, 50);
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$-1\r\n");
    CHECK(rp_op_step(op, T0 + 146) == RP_STEP_IO);
    CHECK(all_run(op, c, "lock_release"));
    for (size_t i = 0; i < N - 1; i++)
        feed(op, i, ":1\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, N - 1, ":1\r\n");
    CHECK(rp_op_step(op, T0 + 147) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && !res.acquired && res.validity_ms == 0);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_acquire_refused(void)
{
    rp_client *c = client5();
    rp_lock *l = redlock(c, 10000, 50);
    rp_op *op;
    rp_lock_acquisition res;

    /* 3 busy: refused at the third; the 2 not waited for may have set our key: the clean-up
     * waits for them */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, "$5\r\nother\r\n");
    feed(op, 1, "$5\r\nother\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 2, "$5\r\nother\r\n");
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_IO);
    CHECK(all_have(op, "EVAL"));
    feed(op, 0, ":0\r\n");
    feed(op, 1, ":0\r\n");
    feed(op, 2, ":0\r\n");
    feed(op, 3, ":1\r\n");
    CHECK(!rp_op_round_over(op)); /* node 4 is awaited */
    feed(op, 4, ":0\r\n");
    CHECK(rp_op_step(op, T0 + 3) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && !res.acquired && res.attempts == 1);
    rp_op_free(op);

    /* every node answered busy: nothing to delete, no second round */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    rp_op_free(op);

    /* 2 yes, 3 timed out: the clean-up waits for the 2, not for the timed-out 3 */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, "$-1\r\n");
    feed(op, 1, "$-1\r\n");
    fail_node(op, 2);
    fail_node(op, 3);
    CHECK(!rp_op_round_over(op));
    fail_node(op, 4);
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_IO);
    CHECK(all_have(op, "EVAL")); /* sent to all 5, the timed-out ones too */
    feed(op, 1, ":1\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 0, ":1\r\n");
    CHECK(rp_op_round_over(op) && pending(op, 2) && pending(op, 3) && pending(op, 4));
    CHECK(rp_op_step(op, T0 + 51) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && !res.acquired);
    rp_op_free(op);

    /* no node answered: the op fails as they did */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        fail_node(op, i);
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_IO); /* best-effort clean-up first */
    for (size_t i = 0; i < N; i++)
        fail_node(op, i);
    CHECK(rp_op_step(op, T0 + 100) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ETIMEOUT);
    CHECK(strstr(rp_op_error(op)->message, "none of the 5 nodes answered yes or no") != NULL);
    rp_op_free(op);

    /* error replies are no answer either */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "-READONLY You can't write against a read only replica.\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EREPLY && strstr(rp_op_error(op)->message, "READONLY"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_acquire_retries(void)
{
    rp_client *c = client5();
    rp_lock *l = redlock(c, 10000, 50);
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_lock_acquisition res;
    rp_op *op;
    uint64_t sleep_ms;
    o.wait_ms = 1000;
    o.retry_min_ms = 40;
    o.retry_max_ms = 80;
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_SLEEP);
    sleep_ms = rp_op_sleep_ms(op);
    CHECK(sleep_ms >= 20 && sleep_ms <= 40); /* jittered to [d/2, d] */
    CHECK(rp_op_step(op, T0 + 1 + sleep_ms) == RP_STEP_IO && all_have(op, "SET"));
    for (size_t i = 0; i < 3; i++)
        feed(op, i, "$-1\r\n");
    CHECK(rp_op_step(op, T0 + 2 + sleep_ms) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired && res.attempts == 2);
    /* the hold began with the second attempt */
    CHECK(rp_lock__acquired_ms(l) == T0 + 1 + sleep_ms);
    CHECK(res.validity_ms == 10000 - 1 - 102);
    rp_op_free(op);
    rp_lock_free(l);

    /* the wait runs out: acquired 0 */
    l = redlock(c, 10000, 50);
    o.wait_ms = 30;
    o.retry_min_ms = o.retry_max_ms = 20; /* a delay of [10, 20] ms: within the wait */
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_SLEEP && rp_op_sleep_ms(op) <= 20);
    CHECK(rp_op_step(op, T0 + 30) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 31) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && !res.acquired && res.attempts == 2);
    rp_op_free(op);

    /* a delay that would end past the wait: it gives up at once (issue 11, item 4) */
    o.retry_min_ms = o.retry_max_ms = 60; /* [30, 60] ms > the 29 left */
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && !res.acquired && res.attempts == 1);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_acquire_cancelled(void)
{
    rp_client *c = client5();
    rp_lock *l = redlock(c, 10000, 50);
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op;
    o.wait_ms = 1000;
    /* cancelled while sleeping: nothing of ours is out there */
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$5\r\nother\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    /* cancelled right after a winning round: the keys are deleted, the lock not taken */
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, "$-1\r\n");
    rp_op_cancel(op);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && all_have(op, "EVAL"));
    for (size_t i = 0; i < N; i++)
        feed(op, i, ":1\r\n");
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_release(void)
{
    rp_client *c = client5();
    rp_lock *l = held(c, 10000);
    rp_op *op;

    /* a release waits for every node (no delete left unsent), each within its timeout */
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && all_have(op, "EVAL") && all_have(op, "tok"));
    for (size_t i = 0; i < 4; i++)
        feed(op, i, ":1\r\n");
    CHECK(!rp_op_round_over(op));
    fail_node(op, 4);
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_DONE);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_ENOTOWNED && op == NULL); /* no token */
    rp_lock_free(l);

    /* a quorum no longer holds it: not owned */
    l = held(c, 10000);
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, ":1\r\n");
    feed(op, 1, ":1\r\n");
    for (size_t i = 2; i < N; i++)
        feed(op, i, ":0\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ENOTOWNED);
    CHECK(strstr(rp_op_error(op)->message, "no longer owned") != NULL);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);

    /* the unreachable nodes decide: their failure, and the token is forgotten */
    l = held(c, 10000);
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, ":1\r\n");
    feed(op, 1, ":1\r\n");
    for (size_t i = 2; i < N; i++)
        fail_node(op, i);
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETIMEOUT);
    CHECK(strstr(rp_op_error(op)->message, "3 could not answer") != NULL);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_extend(void)
{
    rp_client *c = client5();
    rp_lock *l = held(c, 10000);
    rp_op *op;

    /* extended on 3 (one node re-taken, one not waited for): done at the third extension */
    CHECK(rp_lock_extend_op(&op, l, 6000, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0 + 100) == RP_STEP_IO);
    CHECK(all_run(op, c, "redlock_extend") && all_have(op, "6000"));
    feed(op, 0, ":6000\r\n");
    feed(op, 1, ":-6000\r\n"); /* lost the key; set again */
    feed(op, 2, ":6000\r\n");
    CHECK(!rp_op_round_over(op)); /* re-taken does not count towards the quorum */
    feed(op, 3, ":6000\r\n");
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 105) == RP_STEP_DONE);
    CHECK(rp_lock_token(l, NULL) != NULL && rp_lock__renewed_ms(l) == T0 + 100);
    CHECK(rp_lock__acquired_ms(l) == T0);
    rp_op_free(op);

    /* a quorum extended, but after the validity (6000 - 5999 - 62 < 0): lost, cleaned up */
    CHECK(rp_lock_extend_op(&op, l, 6000, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0 + 200) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, ":6000\r\n");
    CHECK(rp_op_step(op, T0 + 200 + 5999) == RP_STEP_IO && all_run(op, c, "lock_release"));
    for (size_t i = 0; i < N; i++)
        feed(op, i, ":1\r\n");
    CHECK(rp_op_step(op, T0 + 6200) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ENOTOWNED);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);

    /* a majority lost the key: not owned, after deleting the re-taken and extended keys */
    l = held(c, 10000);
    CHECK(rp_lock_extend_op(&op, l, 6000, 0, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, ":9000\r\n");
    feed(op, 1, ":-6000\r\n");
    feed(op, 2, ":-6000\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 3, ":0\r\n"); /* another owner's: left alone */
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && all_run(op, c, "lock_release"));
    feed(op, 0, ":1\r\n");
    feed(op, 1, ":1\r\n");
    feed(op, 2, ":1\r\n");
    CHECK(!rp_op_round_over(op)); /* node 4 was not waited for: it may hold our key */
    feed(op, 3, ":0\r\n");
    feed(op, 4, ":1\r\n");
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ENOTOWNED);
    CHECK(strstr(rp_op_error(op)->message, "only 1 of 5 nodes still held its token") != NULL);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);

    /* the unreachable nodes decide: their failure, the token kept (it may be held) */
    l = held(c, 10000);
    CHECK(rp_lock_extend_op(&op, l, 6000, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, ":6000\r\n");
    feed(op, 1, ":6000\r\n");
    feed(op, 2, ":0\r\n");
    fail_node(op, 3);
    CHECK(!rp_op_round_over(op));
    fail_node(op, 4);
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETIMEOUT);
    CHECK(rp_lock_token(l, NULL) != NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_queries(void)
{
    rp_client *c = client5();
    rp_lock *l = held(c, 10000), *other = redlock(c, 10000, 50);
    rp_op *op;
    int v = -1;

    /* owned: the token on a quorum (GET compares it) */
    CHECK(rp_lock_owned_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && all_have(op, "GET"));
    feed(op, 0, "$3\r\ntok\r\n");
    feed(op, 1, "$5\r\nother\r\n");
    feed(op, 2, "$5\r\nother\r\n");
    feed(op, 3, "$3\r\ntok\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 4, "$3\r\ntok\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    CHECK(rp_lock_query_result(op, &v) == RP_OK && v == 1);
    rp_op_free(op);

    /* locked: decided at the third "no" */
    CHECK(rp_lock_locked_op(&op, other, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && all_have(op, "EXISTS"));
    feed(op, 0, ":1\r\n");
    feed(op, 1, ":0\r\n");
    feed(op, 2, ":0\r\n");
    CHECK(!rp_op_round_over(op));
    feed(op, 3, ":0\r\n");
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    CHECK(rp_lock_query_result(op, &v) == RP_OK && v == 0);
    rp_op_free(op);

    /* neither side can reach a quorum any more: decided (an error) before the last node */
    CHECK(rp_lock_locked_op(&op, other, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, ":1\r\n");
    feed(op, 1, ":0\r\n");
    fail_node(op, 2);
    CHECK(!rp_op_round_over(op));
    fail_node(op, 3);
    CHECK(rp_op_round_over(op));
    CHECK(rp_op_step(op, T0 + 50) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETIMEOUT);
    rp_op_free(op);

    /* owned and remaining without a token: no I/O */
    CHECK(rp_lock_owned_op(&op, other, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_DONE);
    CHECK(rp_lock_query_result(op, &v) == RP_OK && v == 0);
    rp_op_free(op);
    {
        rp_lock_remaining rem;
        CHECK(rp_lock_remaining_op(&op, other, NULL) == RP_OK);
        CHECK(rp_op_step(op, T0) == RP_STEP_DONE);
        CHECK(rp_lock_remaining_result(op, &rem) == RP_OK && !rem.owned && rem.remaining_ms == 0);
        rp_op_free(op);
    }
    /* a key of ours without expiry is no answer to trust */
    CHECK(rp_lock_remaining_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (size_t i = 0; i < N; i++)
        feed(op, i, ":-1\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    rp_lock_free(other);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_bad_input(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_client *c4 = NULL, *c5 = client5(), *c0 = NULL;
    rp_lock *l = NULL;
    rp_error e;
    o.url = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3,redis://127.0.0.1:4";
    CHECK(rp_client_new(&c4, &o, NULL) == RP_OK);
    o.url = NULL;
    CHECK(rp_client_new(&c0, &o, NULL) == RP_OK);
    CHECK(rp_redlock_new(&l, c4, "r", 1, NULL, &e) == RP_EINVAL && strstr(e.message, "got 4"));
    CHECK(rp_redlock_new(&l, c0, "r", 1, NULL, &e) == RP_EINVAL && strstr(e.message, "got 0"));
    CHECK(rp_redlock_new(&l, c5, "", 0, NULL, &e) == RP_EINVAL && strstr(e.message, "name"));
    ro.node_timeout_ms = 0;
    CHECK(rp_redlock_new(&l, c5, "r", 1, &ro, &e) == RP_EINVAL && strstr(e.message, "node_timeout"));
    ro.node_timeout_ms = ro.ttl_ms + 1;
    CHECK(rp_redlock_new(&l, c5, "r", 1, &ro, &e) == RP_EINVAL);
    ro.node_timeout_ms = ro.ttl_ms;
    CHECK(rp_redlock_new(&l, c5, "r", 1, &ro, &e) == RP_OK && l);
    rp_lock_free(l);
    l = NULL;
    CHECK(rp_lock_new(&l, c5, "r", 1, NULL, &e) == RP_EINVAL && strstr(e.message, "redlock.new"));
    CHECK(l == NULL);
    /* a lock of one instance still works on a client of one URL, and of none (ops only) */
    CHECK(rp_lock_new(&l, c0, "r", 1, NULL, &e) == RP_OK && rp_lock_nodes(l) == 1);
    CHECK(rp_lock_node_timeout_ms(l) == 0);
    rp_lock_free(l);
    rp_client_free(c0);
    rp_client_free(c4);
    rp_client_free(c5);
}

int main(void)
{
    test_acquire_at_quorum();
    test_validity_and_drift();
    test_acquire_refused();
    test_acquire_retries();
    test_acquire_cancelled();
    test_release();
    test_extend();
    test_queries();
    test_bad_input();
    if (failures) {
        fprintf(stderr, "unit_redlock: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("unit_redlock: %d checks passed\n", checks);
    return 0;
}
