/* Causes kept (issue 10, finding 3) against a real server with requirepass: a check whose
 * handshake was refused (a wrong password) reports Redis' WRONGPASS with RP_EAUTH -- the
 * blocking transport's own handshake -- never "missing reply"; so do a degraded decision,
 * a batch, a lock acquire; a connection without AUTH reports NOAUTH. The matrix cannot
 * express these (its servers' URLs carry no password, and requirepass set by one case
 * would outlive a failing case), so they live here, on a private server. */
#include <stdio.h>
#include <string.h>

#include <redpat/redpat.h>

#include "rp_harness.h"

#define PASSWORD "sekret"

static rp_client *client_of(const char *url)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_error e;
    o.url = url;
    o.key_namespace = "hard";
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = 2000;
    RP_CHECK(rp_client_new(&c, &o, &e) == RP_OK, "client over %s: %s", url, e.message);
    return c;
}

static rp_ratelimit *limiter_of(rp_client *c, const char *name, rp_ratelimit_on_error p)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    rp_error e;
    o.algorithm = RP_RATELIMIT_FIXED_WINDOW;
    o.limit = 5;
    o.window_ms = 10000;
    o.on_error = p;
    RP_CHECK(rp_ratelimit_new(&rl, c, name, strlen(name), &o, &e) == RP_OK, "%s", e.message);
    return rl;
}

/* The failure is the handshake's: RP_EAUTH (issue 11, item 6) with Redis' words. */
static void expect_wrongpass(const char *what, int rc, const rp_error *e)
{
    RP_CHECK(rc == RP_EAUTH, "%s: wanted auth, got %s: %s", what, rp_status_name(rc), e->message);
    RP_CHECK(strstr(e->message, "WRONGPASS") != NULL, "%s: %s", what, e->message);
    RP_CHECK(strstr(e->message, "AUTH") != NULL, "%s: %s", what, e->message);
    RP_CHECK(strstr(e->message, "missing reply") == NULL, "%s: %s", what, e->message);
}

static void test_wrong_password(const rp_hserver *s)
{
    char url[128];
    rp_client *c;
    rp_ratelimit *report, *open, *closed;
    rp_ratelimit_decision d;
    rp_lock *l = NULL;
    rp_lock_acquisition a;
    rp_error e;
    const void *subjects[] = { "a", "b" };
    size_t lens[] = { 1, 1 };
    rp_op *op;
    int rc;
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0", s->port);
    c = client_of(url);
    report = limiter_of(c, "r", RP_RATELIMIT_REPORT);
    open = limiter_of(c, "o", RP_RATELIMIT_FAIL_OPEN);
    closed = limiter_of(c, "c", RP_RATELIMIT_FAIL_CLOSED);

    rc = rp_ratelimit_check(report, "u", 1, 1, &d, &e);
    expect_wrongpass("check", rc, &e);

    RP_CHECK(rp_ratelimit_check(open, "u", 1, 1, &d, &e) == RP_OK, "%s", e.message);
    RP_CHECK(d.degraded && d.allowed && d.error_code == RP_EAUTH &&
             strstr(d.error_message, "WRONGPASS"), "fail_open: %d %d %s: %s", d.degraded,
             d.allowed, rp_status_name(d.error_code), d.error_message);
    RP_CHECK(rp_ratelimit_check(closed, "u", 1, 1, &d, &e) == RP_OK, "%s", e.message);
    RP_CHECK(d.degraded && !d.allowed && d.error_code == RP_EAUTH &&
             strstr(d.error_message, "WRONGPASS"), "fail_closed: %s", d.error_message);

    RP_CHECK(rp_ratelimit_batch_op(&op, report, 2, subjects, lens, NULL, &e) == RP_OK, "%s", e.message);
    rc = rp_client_run(c, op, &e);
    expect_wrongpass("batch", rc, &e);
    rp_op_free(op);

    RP_CHECK(rp_lock_new(&l, c, "k", 1, NULL, &e) == RP_OK, "%s", e.message);
    rc = rp_lock_acquire(l, NULL, &a, &e);
    expect_wrongpass("lock.acquire", rc, &e);
    rp_lock_free(l);

    rp_ratelimit_free(report);
    rp_ratelimit_free(open);
    rp_ratelimit_free(closed);
    rp_client_free(c);
}

/* The right password works (the test above fails for its password, not its server). */
static void test_right_password(const rp_hserver *s)
{
    char url[128];
    rp_client *c;
    rp_ratelimit *rl;
    rp_ratelimit_decision d;
    rp_error e;
    snprintf(url, sizeof url, "redis://:" PASSWORD "@127.0.0.1:%d/0", s->port);
    c = client_of(url);
    rl = limiter_of(c, "r", RP_RATELIMIT_REPORT);
    RP_CHECK(rp_ratelimit_check(rl, "u", 1, 1, &d, &e) == RP_OK, "%s", e.message);
    RP_CHECK(d.allowed && !d.degraded && d.limit == 5 && d.remaining == 4, "decision");
    rp_ratelimit_free(rl);
    rp_client_free(c);
}

/* No password at all: Redis answers the request itself with NOAUTH, an authentication
 * failure like a refused AUTH (RP_EAUTH, as redis-py's AuthenticationError). */
static void test_no_password(const rp_hserver *s)
{
    rp_client *c = client_of(s->url);
    rp_lock *l = NULL;
    rp_lock_acquisition a;
    rp_error e;
    int rc;
    RP_CHECK(rp_lock_new(&l, c, "k", 1, NULL, &e) == RP_OK, "%s", e.message);
    rc = rp_lock_acquire(l, NULL, &a, &e);
    RP_CHECK(rc == RP_EAUTH && strstr(e.message, "NOAUTH"), "acquire: %s: %s",
             rp_status_name(rc), e.message);
    rp_lock_free(l);
    rp_client_free(c);
}

/* A request Redis refuses with "-ERR Protocol error" (an unauthenticated request of more than
 * 10 arguments: a multi-limit check's EVALSHA) is followed by Redis closing the connection:
 * it must not go back to the pool, or the next op fails "connection lost" instead of being
 * answered (NOAUTH / the same error) on a connection of its own. */
static void test_protocol_error_closes(const rp_hserver *s)
{
    rp_client *c = client_of(s->url);
    rp_ratelimit *a = limiter_of(c, "pa", RP_RATELIMIT_REPORT);
    rp_ratelimit *b = limiter_of(c, "pb", RP_RATELIMIT_REPORT);
    rp_ratelimit *both[2];
    rp_ratelimit_decision d;
    rp_error e;
    int i, rc;
    both[0] = a;
    both[1] = b;
    for (i = 0; i < 3; i++) {
        rc = rp_ratelimit_multi(both, 2, "u", 1, 1, &d, &e);
        /* "unauthenticated multibulk length": the missing password, so RP_EAUTH */
        RP_CHECK(rc == RP_EAUTH && strstr(e.message, "Protocol error"), "multi %d: %s: %s", i,
                 rp_status_name(rc), e.message);
    }
    rp_ratelimit_free(a);
    rp_ratelimit_free(b);
    rp_client_free(c);
}

int main(void)
{
    rp_hserver s;
    redisContext *side;
    redisReply *r;
    rp_harness_watchdog(120);
    RP_CHECK(rp_hserver_start(&s, 0) == 0, "server start");
    side = rp_hserver_connect(&s, 2000);
    RP_CHECK(side != NULL, "side connection");
    r = rp_hcmd(side, "CONFIG SET requirepass %s", PASSWORD);
    RP_CHECK(r && r->type == REDIS_REPLY_STATUS, "CONFIG SET requirepass");
    freeReplyObject(r);
    test_wrong_password(&s);
    test_right_password(&s);
    test_no_password(&s);
    test_protocol_error_closes(&s);
    redisFree(side);
    rp_hserver_destroy(&s);
    printf("test_hardening: ok\n");
    return 0;
}
