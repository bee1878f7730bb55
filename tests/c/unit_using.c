/* Unit tests of lock.using and the renewal plan: the op driven by hand with canned replies
 * and a fake clock (CALL, renewals while the callback runs, release, each way it can end). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"
#include "internal.h"

static rp_client *offline_client(void) { return unit_client(NULL); }

static int request_contains(rp_op *op, const char *part) { return unit_request_has(op, 0, part); }

static int feed(rp_op *op, const char *reply) { return rp_op_feed(op, 0, reply, strlen(reply)); }

static rp_op *using_op(rp_lock *l, int renew, int64_t max_hold)
{
    rp_lock_using_options o = RP_LOCK_USING_OPTIONS_INIT;
    rp_op *op = NULL;
    o.acquire.token = "tok";
    o.acquire.token_len = 3;
    o.renew = renew;
    o.max_hold_ms = max_hold;
    CHECK(rp_lock_using_op(&op, l, &o, NULL) == RP_OK);
    return op;
}

/* Acquire at t=1000 and reach the CALL. */
static void acquire_to_call(rp_op *op)
{
    size_t arg = 99;
    CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
    CHECK(request_contains(op, "NX"));
    CHECK(feed(op, "$-1\r\n") == RP_OK); /* SET NX GET: nil, it was free */
    CHECK(rp_op_step(op, 1001) == RP_STEP_CALL);
    CHECK(rp_op_call(op, &arg, NULL, 0, NULL) == RP_OK);
    CHECK(arg == 1);
}

static void test_renews_while_the_callback_runs(void)
{
    rp_client *c = offline_client();
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock *l;
    rp_op *op;
    rp_lock_using_result r;
    lo.ttl_ms = 300;
    CHECK(rp_lock_new(&l, c, "r", 1, &lo, NULL) == RP_OK);
    op = using_op(l, 1, 0);
    acquire_to_call(op);
    /* the callback runs: the op sleeps until a third of the TTL after the acquire */
    CHECK(rp_op_step(op, 1001) == RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) == 99);
    CHECK(rp_op_step(op, 1100) == RP_STEP_IO);
    CHECK(request_contains(op, "EVALSHA"));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1101) == RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) == 99);
    /* the callback returns during that sleep */
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK(rp_op_resume(op, NULL) == RP_ESTATE); /* only once */
    CHECK(rp_op_step(op, 1150) == RP_STEP_IO);  /* the release */
    CHECK(request_contains(op, "EVALSHA"));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1151) == RP_STEP_DONE);
    CHECK(rp_lock_using_result_of(op, &r) == RP_OK);
    CHECK(r.acquired == 1 && r.renewals == 1 && r.fence == 0);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_callback_error_releases(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    rp_value v;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    op = using_op(l, 1, 0);
    acquire_to_call(op);
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_STATUS;
    v.i = RP_ECALLBACK;
    v.bytes = "boom";
    v.len = 4;
    CHECK(rp_op_resume(op, &v) == RP_OK); /* before any step: allowed */
    CHECK(rp_op_step(op, 1002) == RP_STEP_IO);
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1003) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK);
    CHECK(strcmp(rp_op_error(op)->message, "boom") == 0);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_failed_renewal_is_lost(void)
{
    rp_client *c = offline_client();
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock *l;
    rp_op *op;
    lo.ttl_ms = 300;
    CHECK(rp_lock_new(&l, c, "r", 1, &lo, NULL) == RP_OK);
    op = using_op(l, 1, 0);
    acquire_to_call(op);
    CHECK(rp_op_step(op, 1001) == RP_STEP_SLEEP);
    CHECK(rp_op_step(op, 1100) == RP_STEP_IO);
    CHECK(feed(op, ":0\r\n") == RP_OK); /* not ours any more */
    /* nothing more to renew: wait for the callback */
    CHECK(rp_op_step(op, 1101) == RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) == RP_SLEEP_UNTIL_RESUMED);
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    /* the token is gone: no release is sent */
    CHECK(rp_op_step(op, 1200) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ELOST);
    CHECK(strstr(rp_op_error(op)->message, "lost") != NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_cancel_releases(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    op = using_op(l, 1, 0);
    acquire_to_call(op);
    CHECK(rp_op_step(op, 1001) == RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK(rp_op_step(op, 1002) == RP_STEP_IO); /* the release still goes out */
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1003) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_busy_never_calls(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    rp_lock_using_result r;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    op = using_op(l, 1, 0);
    CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
    CHECK(feed(op, "$5\r\nother\r\n") == RP_OK); /* busy: the holder's token */
    CHECK(rp_op_step(op, 1001) == RP_STEP_DONE);
    CHECK(rp_lock_using_result_of(op, &r) == RP_OK);
    CHECK(r.acquired == 0 && r.renewals == 0);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_plan(void)
{
    rp_client *c = offline_client();
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock_renewal p;
    rp_lock *l;
    rp_op *op;
    lo.ttl_ms = 3000;
    CHECK(rp_lock_new(&l, c, "r", 1, &lo, NULL) == RP_OK);
    rp_lock_renewal_plan(l, 0, 5000, &p);
    CHECK(p.renew == 0); /* not held */
    op = using_op(l, 1, 0);
    acquire_to_call(op); /* held since t=1000 */
    rp_lock_renewal_plan(l, 0, 1500, &p);
    CHECK(p.renew == 1 && p.delay_ms == 500 && p.ttl_ms == 3000);
    rp_lock_renewal_plan(l, 0, 2500, &p);
    CHECK(p.renew == 1 && p.delay_ms == 0 && p.ttl_ms == 3000);
    rp_lock_renewal_plan(l, 2500, 1500, &p); /* renewal at 2000 may last to 3500 */
    CHECK(p.renew == 1 && p.delay_ms == 500 && p.ttl_ms == 1500);
    rp_lock_renewal_plan(l, 1000, 1500, &p); /* the cap comes before the renewal */
    CHECK(p.renew == 0);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

int main(void)
{
    test_renews_while_the_callback_runs();
    test_callback_error_releases();
    test_failed_renewal_is_lost();
    test_cancel_releases();
    test_busy_never_calls();
    test_plan();
    printf("unit_using: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
