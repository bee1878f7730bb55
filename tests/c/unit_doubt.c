/* Unit tests of an acquire whose attempt is in doubt (issue 10, finding 7's sibling): its
 * node timed out or its connection dropped with the SET unanswered, so Redis may have run
 * it (core/src/lock.c attempt_failed).
 * - The connection dropped (RP_ETRANSPORT): the acquire releases with the token it sent (a
 *   fresh connection: a new round) before it fails with the node's status and message plus
 *   what became of the attempt.
 * - It timed out (RP_ETIMEOUT): no release round (a call ends within its timeout); it fails
 *   at once with the node's message plus what may be held, and for how long.
 * A node that failed before its request was written (rp_op_fail_node_unsent: a refused
 * connect), an error reply or a bad reply fail as before, with no release round. Ops
 * stepped by hand with canned replies; no server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_acquire.h"

#define TIMED_OUT "127.0.0.1:1: timed out after 1000 ms waiting for the reply"
#define DROPPED "127.0.0.1:1: connection lost waiting for the reply: closed by peer"
#define REFUSED "127.0.0.1:1: cannot connect: Connection refused"

/* op ends in ERROR with code and exactly message. */
static int ended(rp_op *op, uint64_t now, int code, const char *message)
{
    rp_step st = rp_op_step(op, now);
    const rp_error *e = rp_op_error(op);
    if (st != RP_STEP_ERROR || e->code != code || strcmp(e->message, message) != 0) {
        fprintf(stderr, "  step %d, %s \"%s\"; wanted ERROR, %s \"%s\"\n", (int)st,
                rp_status_name(e->code), e->message, rp_status_name(code), message);
        return 0;
    }
    return 1;
}

/* The message of an attempt that timed out with its SET unanswered (lock "r", TTL_MS). */
#define MAY_HOLD "; the attempt in flight may have taken lock \"r\": it may stay held up " \
                 "to its ttl (30000 ms)"

/* The attempt timed out unanswered: no release round (it would most likely cost another
 * whole timeout); the op fails at once, RP_ETIMEOUT, with the node's words and what may stay
 * held. A waiting acquire does the same (no retry after an in-doubt attempt). */
static void test_timed_out_attempt_fails_at_once(int fenced, int64_t wait_ms)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && unit_request_has(op, 0, TOKEN));
    rp_op_fail_node(op, 0, RP_ETIMEOUT, TIMED_OUT);
    CHECK(ended(op, T0 + 1000, RP_ETIMEOUT, TIMED_OUT MAY_HOLD));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    /* a timeout after part of a reply came is still unanswered: the same */
    op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, fenced ? "*2\r\n:1" : "$") == RP_MORE);
    rp_op_fail_node(op, 0, RP_ETIMEOUT, TIMED_OUT);
    CHECK(ended(op, T0 + 1000, RP_ETIMEOUT, TIMED_OUT MAY_HOLD));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* The attempt's connection dropped unanswered: the release goes out with the same token;
 * the op ends with the node's status and words plus the release's outcome. A waiting
 * acquire does the same (no retry after an in-doubt attempt). */
static void test_dropped_attempt_is_released(int fenced, int64_t wait_ms)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && unit_request_has(op, 0, TOKEN));
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    CHECK(releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended(op, T0 + 2, RP_ETRANSPORT, DROPPED "; the attempt in flight was released"));
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);

    /* the release finds nothing of ours */
    op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":0\r\n") == RP_OK);
    CHECK(ended(op, T0 + 2, RP_ETRANSPORT,
                DROPPED "; the attempt in flight had not taken the lock"));
    rp_op_free(op);

    /* the release fails too (here: its connect timed out): the message says what may stay
     * held, for how long, why; the status stays the drop's */
    op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    rp_op_fail_node(op, 0, RP_ETIMEOUT, "127.0.0.1:1: timed out after 1000 ms connecting");
    CHECK(ended(op, T0 + 1001, RP_ETRANSPORT,
                DROPPED "; lock \"r\" may stay held up to its ttl (30000 ms): releasing it "
                "failed: 127.0.0.1:1: timed out after 1000 ms connecting"));
    rp_op_free(op);

    /* ... or Redis refuses it */
    op = acquire(l, wait_ms);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO);
    CHECK(feed(op, 0, "-BUSY Redis is busy running a script\r\n") == RP_OK);
    CHECK(ended(op, T0 + 2, RP_ETRANSPORT,
                DROPPED "; lock \"r\" may stay held up to its ttl (30000 ms): releasing it "
                "failed: BUSY Redis is busy running a script"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Nothing can have run: a node that failed before its request was written (connect refused
 * or timed out, the handshake refused), an error reply, a reply of the wrong shape. The op
 * fails with the node's status and words as it always did, with no release round. */
static void test_not_in_doubt_fails_at_once(int fenced)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock1(c, fenced);
    rp_op *op = acquire(l, 1000);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node_unsent(op, 0, RP_ETRANSPORT, REFUSED);
    CHECK(ended(op, T0 + 1, RP_ETRANSPORT, REFUSED));
    rp_op_free(op);

    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node_unsent(op, 0, RP_ETIMEOUT, "127.0.0.1:1: timed out after 1000 ms connecting");
    CHECK(ended(op, T0 + 1000, RP_ETIMEOUT, "127.0.0.1:1: timed out after 1000 ms connecting"));
    rp_op_free(op);

    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node_unsent(op, 0, RP_EREPLY, "127.0.0.1:1: AUTH failed: WRONGPASS invalid");
    CHECK(ended(op, T0 + 1, RP_EREPLY, "127.0.0.1:1: AUTH failed: WRONGPASS invalid"));
    rp_op_free(op);

    /* an unsent failure after the node already failed changes nothing (first cause wins):
     * a drop is still released, a timeout still reported in doubt */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    rp_op_fail_node_unsent(op, 0, RP_ETRANSPORT, REFUSED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended(op, T0 + 2, RP_ETRANSPORT, DROPPED "; the attempt in flight was released"));
    rp_op_free(op);

    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETIMEOUT, TIMED_OUT);
    rp_op_fail_node_unsent(op, 0, RP_ETRANSPORT, REFUSED);
    CHECK(ended(op, T0 + 1000, RP_ETIMEOUT, TIMED_OUT MAY_HOLD));
    rp_op_free(op);

    op = acquire(l, 1000);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
          == RP_OK);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EREPLY);
    rp_op_free(op);

    /* a broken reply fails the node with RP_EPROTOCOL: what came was an answer, not silence */
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(feed(op, 0, "?what\r\n") < 0);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* lock.using's acquire is the same op: a drop is released, a timeout reported, and
 * lock.using fails with the acquire's status and message (the function never runs). */
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
    rp_op_fail_node(op, 0, RP_ETRANSPORT, DROPPED);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO && releases_with_token(op, c, 0));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(ended(op, T0 + 2, RP_ETRANSPORT, DROPPED "; the attempt in flight was released"));
    rp_op_free(op);

    CHECK(rp_lock_using_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETIMEOUT, TIMED_OUT);
    CHECK(ended(op, T0 + 1000, RP_ETIMEOUT, TIMED_OUT MAY_HOLD));
    rp_op_free(op);

    CHECK(rp_lock_using_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    rp_op_fail_node_unsent(op, 0, RP_ETRANSPORT, REFUSED);
    CHECK(ended(op, T0 + 1, RP_ETRANSPORT, REFUSED));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Redlock already cleans up after a lost attempt: a node that timed out is sent the release
 * in the clean-up round with the others (not waited for: it is likely down); a node that
 * was never written to is not counted as holding anything. */
static void test_redlock_cleanup_includes_timed_out_node(void)
{
    rp_client *c = unit_client(URLS3);
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    rp_op *op;
    const char *y, *n;
    ro.ttl_ms = TTL_MS;
    ro.node_timeout_ms = 100;
    CHECK(rp_redlock_new(&l, c, "r", 1, &ro, NULL) == RP_OK);
    op = acquire(l, 0);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    y = unit_request_has(op, 0, "$3\r\nGET\r\n") ? "$-1\r\n" : "+OK\r\n";
    n = unit_request_has(op, 0, "$3\r\nGET\r\n") ? "$5\r\nother\r\n" : "$-1\r\n";
    CHECK(feed(op, 0, y) == RP_OK && feed(op, 1, n) == RP_OK);
    rp_op_fail_node(op, 2, RP_ETIMEOUT, "127.0.0.1:3: timed out after 100 ms waiting for the reply");
    CHECK(rp_op_step(op, T0 + 100) == RP_STEP_IO);
    CHECK(releases_with_token(op, c, 0) && releases_with_token(op, c, 2));
    CHECK(feed(op, 0, ":1\r\n") == RP_OK);
    CHECK(rp_op_round_over(op)); /* node 2 not waited for */
    CHECK(rp_op_step(op, T0 + 101) == RP_STEP_DONE);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

int main(void)
{
    test_timed_out_attempt_fails_at_once(0, 0);
    test_timed_out_attempt_fails_at_once(1, 0);
    test_timed_out_attempt_fails_at_once(0, 1000);
    test_timed_out_attempt_fails_at_once(1, 1000);
    test_dropped_attempt_is_released(0, 0);
    test_dropped_attempt_is_released(1, 0);
    test_dropped_attempt_is_released(0, 1000);
    test_dropped_attempt_is_released(1, 1000);
    test_not_in_doubt_fails_at_once(0);
    test_not_in_doubt_fails_at_once(1);
    test_using();
    test_redlock_cleanup_includes_timed_out_node();
    printf("unit_doubt: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
