/* Unit tests of pure logic: ops driven by hand with canned replies and a fake clock,
 * URL parsing, SHA-1. No server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "internal.h"
#include "script.h"
#include "url.h"

static int failures, checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

static rp_client *offline_client(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    o.key_namespace = "t";
    if (rp_client_new(&c, &o, NULL) != RP_OK)
        abort();
    return c;
}

static int request_is(rp_op *op, const char *want)
{
    const char *bytes;
    size_t len;
    if (rp_op_request(op, 0, &bytes, &len) != RP_OK)
        return 0;
    return len == strlen(want) && memcmp(bytes, want, len) == 0;
}

static int request_contains(rp_op *op, const char *part)
{
    const char *bytes;
    size_t len, n = strlen(part), i;
    if (rp_op_request(op, 0, &bytes, &len) != RP_OK)
        return 0;
    for (i = 0; i + n <= len; i++)
        if (memcmp(bytes + i, part, n) == 0)
            return 1;
    return 0;
}

/* Feeds s one byte at a time: replies split anywhere must still parse. */
static int feed_bytewise(rp_op *op, const char *s)
{
    size_t i, n = strlen(s);
    int rc = RP_MORE;
    for (i = 0; i < n; i++) {
        rc = rp_op_feed(op, 0, s + i, 1);
        if (i + 1 < n && rc != RP_MORE)
            return rc == RP_OK ? -100 : rc;
    }
    return rc;
}

static void test_acquire_try_once(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    rp_lock_acquisition res;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    size_t tlen;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    o.token = "tok";
    o.token_len = 3;
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_lock_acquire_result(op, &res) == RP_ESTATE);
    CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
    CHECK(request_is(op, "*6\r\n$3\r\nSET\r\n$10\r\nt:lock:{r}\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n"));
    CHECK(feed_bytewise(op, "+OK\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1001) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK);
    CHECK(res.acquired == 1 && res.attempts == 1 && res.fence == 0);
    CHECK(rp_lock_token(l, &tlen) && tlen == 3);
    CHECK(rp_op_step(op, 1002) == RP_STEP_DONE);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_acquire_waits_with_backoff(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    rp_lock_acquisition res;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    uint64_t now = 5000, slept = 0;
    int attempts = 0;
    o.wait_ms = 100;
    o.retry_min_ms = 8;
    o.retry_max_ms = 32;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    for (;;) {
        rp_step s = rp_op_step(op, now);
        if (s == RP_STEP_IO) {
            attempts++;
            CHECK(rp_op_feed(op, 0, "$-1\r\n", 5) == RP_OK);
        } else if (s == RP_STEP_SLEEP) {
            uint64_t ms = rp_op_sleep_ms(op);
            CHECK(ms >= 1 && ms <= 32);
            now += ms;
            slept += ms;
        } else {
            CHECK(s == RP_STEP_DONE);
            break;
        }
    }
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK);
    CHECK(res.acquired == 0);
    CHECK((int)res.attempts == attempts && attempts >= 4);
    CHECK(slept == 100); /* the last sleep is cut to the deadline, never past it */
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_fenced_acquire_reply(void)
{
    rp_client *c = offline_client();
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock *l;
    rp_op *op;
    rp_lock_acquisition res;
    lo.fenced = 1;
    CHECK(rp_lock_new(&l, c, "r", 1, &lo, NULL) == RP_OK);
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_contains(op, "EVALSHA") && request_contains(op, "t:lock:{r}:fence"));
    CHECK(feed_bytewise(op, "*2\r\n:1\r\n:7\r\n") == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired && res.fence == 7);
    CHECK(rp_lock_fence(l) == 7);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static rp_lock *held_lock(rp_client *c)
{
    rp_lock *l;
    rp_op *op;
    if (rp_lock_new(&l, c, "r", 1, NULL, NULL) || rp_lock_acquire_op(&op, l, NULL, NULL))
        abort();
    rp_op_step(op, 0);
    rp_op_feed(op, 0, "+OK\r\n", 5);
    rp_op_step(op, 0);
    rp_op_free(op);
    return l;
}

static void test_noscript_falls_back_to_eval(void)
{
    rp_client *c = offline_client();
    rp_lock *l = held_lock(c);
    rp_op *op;
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_contains(op, "EVALSHA"));
    CHECK(rp_op_feed(op, 0, "-NOSCRIPT No matching script.\r\n", 31) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_contains(op, "$4\r\nEVAL\r\n") && request_contains(op, "redis.call('DEL'"));
    CHECK(rp_op_feed(op, 0, ":1\r\n", 4) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    CHECK(rp_lock_token(l, NULL) == NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_release_not_owned_and_error_reply(void)
{
    rp_client *c = offline_client();
    rp_lock *l = held_lock(c);
    rp_op *op;
    rp_error e;
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, ":0\r\n", 4) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ENOTOWNED);
    rp_op_free(op);
    /* the handle forgot its token: a second release fails before any I/O */
    CHECK(rp_lock_release_op(&op, l, &e) == RP_ENOTOWNED && op == NULL);
    rp_lock_free(l);

    l = held_lock(c);
    CHECK(rp_lock_extend_op(&op, l, 1000, 0, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "-WRONGTYPE Operation against a key\r\n", 36) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EREPLY && strstr(rp_op_error(op)->message, "WRONGTYPE"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_protocol_and_driver_errors(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "?what\r\n", 7) == RP_EPROTOCOL);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "+OK\r\n+OK\r\n", 10) == RP_EPROTOCOL);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "+O", 2) == RP_MORE);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ESTATE);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    rp_op_fail_node(op, 0, RP_ETIMEOUT, "timed out");
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETIMEOUT);
    CHECK(strcmp(rp_op_error(op)->message, "timed out") == 0);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    {
        const char *b;
        size_t n;
        CHECK(rp_op_request(op, 0, &b, &n) == RP_ESTATE); /* not stepped yet */
        rp_op_step(op, 0);
        CHECK(rp_op_request(op, 1, &b, &n) == RP_EINVAL);
    }
    CHECK(rp_client_run(c, op, NULL) == RP_EINVAL); /* offline client: no connection */
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_bad_arguments(void)
{
    rp_client *c = offline_client();
    rp_lock *l = NULL;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_client *c2 = NULL;
    rp_op *op = NULL;
    rp_error e;
    CHECK(rp_lock_new(&l, c, "", 0, NULL, &e) == RP_EINVAL && strstr(e.message, "name"));
    lo.ttl_ms = 0;
    CHECK(rp_lock_new(&l, c, "r", 1, &lo, &e) == RP_EINVAL && strstr(e.message, "ttl"));
    CHECK(l == NULL);
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, &e) == RP_OK);
    ao.wait_ms = -1;
    CHECK(rp_lock_acquire_op(&op, l, &ao, &e) == RP_EINVAL && strstr(e.message, "wait"));
    ao.wait_ms = 0;
    ao.retry_min_ms = 0;
    CHECK(rp_lock_acquire_op(&op, l, &ao, &e) == RP_EINVAL && strstr(e.message, "retry_min"));
    ao.retry_min_ms = 10;
    ao.retry_max_ms = 5;
    CHECK(rp_lock_acquire_op(&op, l, &ao, &e) == RP_EINVAL && strstr(e.message, "retry_max"));
    CHECK(rp_fence_check_op(&op, c, "x", 1, 0, &e) == RP_EINVAL && strstr(e.message, "token"));
    CHECK(rp_fence_check_op(&op, c, "", 0, 1, &e) == RP_EINVAL && strstr(e.message, "resource"));
    CHECK(op == NULL);
    co.key_namespace = "a{b";
    CHECK(rp_client_new(&c2, &co, &e) == RP_EINVAL && strstr(e.message, "key_namespace"));
    co.key_namespace = "";
    CHECK(rp_client_new(&c2, &co, &e) == RP_EINVAL && strstr(e.message, "key_namespace"));
    co.key_namespace = NULL;
    co.command_timeout_ms = 0;
    CHECK(rp_client_new(&c2, &co, &e) == RP_EINVAL && strstr(e.message, "command_timeout"));
    co.command_timeout_ms = 100;
    co.url = "http://localhost";
    CHECK(rp_client_new(&c2, &co, &e) == RP_EINVAL && strstr(e.message, "url"));
    CHECK(c2 == NULL);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_urls(void)
{
    const rp_allocator *a = rp_allocator_default();
    rp_url u;
    rp_error e;
    CHECK(rp_url__parse(&u, "redis://localhost", a, &e) == RP_OK);
    CHECK(!u.is_unix && strcmp(u.host, "localhost") == 0 && u.port == 6379 && u.db == 0 && !u.password);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "redis://me:p%40ss@10.0.0.1:6380/3", a, &e) == RP_OK);
    CHECK(strcmp(u.user, "me") == 0 && strcmp(u.password, "p@ss") == 0 && u.port == 6380 && u.db == 3);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "redis://:secret@[::1]:7000", a, &e) == RP_OK);
    CHECK(!u.user && strcmp(u.password, "secret") == 0 && strcmp(u.host, "::1") == 0 && u.port == 7000);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix:///run/redis.sock?db=2", a, &e) == RP_OK);
    CHECK(u.is_unix && strcmp(u.path, "/run/redis.sock") == 0 && u.db == 2);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "redis://host:0", a, &e) == RP_EINVAL && strstr(e.message, "port"));
    CHECK(rp_url__parse(&u, "redis://host:99999", a, &e) == RP_EINVAL);
    CHECK(rp_url__parse(&u, "redis://host/x", a, &e) == RP_EINVAL && strstr(e.message, "database"));
    CHECK(rp_url__parse(&u, "redis://:pa%zzss@host", a, &e) == RP_EINVAL);
    CHECK(rp_url__parse(&u, "redis://", a, &e) == RP_EINVAL && strstr(e.message, "host"));
    CHECK(rp_url__parse(&u, "rediss://host", a, &e) == RP_EINVAL && strstr(e.message, "TLS"));
    CHECK(rp_url__parse(&u, "unix://relative", a, &e) == RP_EINVAL);
    CHECK(rp_url__parse(&u, "", a, &e) == RP_EINVAL);
}

static void test_endpoint_and_handshake(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c;
    rp_endpoint ep;
    rp_op *op;
    o.url = "redis://u:p@h:1/3";
    CHECK(rp_client_new(&c, &o, NULL) == RP_OK);
    CHECK(rp_client_endpoint(c, &ep) == RP_OK);
    CHECK(!ep.is_unix && strcmp(ep.host, "h") == 0 && ep.port == 1 && ep.db == 3);
    CHECK(strcmp(ep.user, "u") == 0 && strcmp(ep.password, "p") == 0 && !ep.path);
    CHECK(rp_client_handshake_op(&op, c, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_is(op, "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"));
    CHECK(rp_op_feed(op, 0, "+OK\r\n", 5) == RP_MORE);
    CHECK(rp_op_feed(op, 0, "+OK\r\n", 5) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    rp_op_free(op);
    CHECK(rp_client_handshake_op(&op, c, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "-WRONGPASS invalid\r\n+OK\r\n", 25) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EREPLY);
    rp_op_free(op);
    rp_client_free(c);

    o.url = "unix:///tmp/r.sock";
    CHECK(rp_client_new(&c, &o, NULL) == RP_OK);
    CHECK(rp_client_endpoint(c, &ep) == RP_OK && ep.is_unix && strcmp(ep.path, "/tmp/r.sock") == 0);
    CHECK(rp_client_handshake_op(&op, c, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE); /* nothing to say: no round trip */
    rp_op_free(op);
    rp_client_free(c);

    c = offline_client();
    CHECK(rp_client_transport(c) == NULL);
    CHECK(rp_client_endpoint(c, &ep) == RP_EINVAL);
    CHECK(rp_client_handshake_op(&op, c, NULL) == RP_EINVAL);
    rp_client_free(c);
}

static rp_ratelimit *limiter(rp_client *c, const char *name, rp_ratelimit_on_error policy)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    o.limit = 10;
    o.window_ms = 1000;
    o.on_error = policy;
    if (rp_ratelimit_new(&rl, c, name, strlen(name), &o, NULL) != RP_OK)
        abort();
    return rl;
}

static void test_ratelimit_decisions(void)
{
    rp_client *c = offline_client();
    rp_ratelimit *report = limiter(c, "r", RP_RATELIMIT_REPORT);
    rp_ratelimit *open = limiter(c, "o", RP_RATELIMIT_FAIL_OPEN);
    rp_ratelimit *closed = limiter(c, "c", RP_RATELIMIT_FAIL_CLOSED);
    rp_ratelimit *both[2];
    rp_ratelimit_decision d;
    rp_op *op;
    rp_error e;

    CHECK(rp_ratelimit_check_op(&op, report, "u", 1, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_contains(op, "t:rl:r:{u}") && request_contains(op, "t:rl:r:{u}:seq"));
    CHECK(feed_bytewise(op, "*6\r\n:1\r\n:0\r\n:10\r\n:9\r\n:0\r\n:1000\r\n") == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    CHECK(rp_ratelimit_check_result(op, &d) == RP_OK);
    CHECK(d.allowed && d.limit == 10 && d.remaining == 9 && d.retry_after_ms == 0 &&
          d.reset_after_ms == 1000 && d.refused_by == -1 && !d.degraded);
    rp_op_free(op);

    /* Redis unreachable: report fails, fail-open allows, fail-closed refuses; both say so */
    CHECK(rp_ratelimit_check_op(&op, report, "u", 1, 1, NULL) == RP_OK);
    rp_op_step(op, 0);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection refused");
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETRANSPORT);
    CHECK(strstr(rp_op_error(op)->message, "refused") != NULL);
    rp_op_free(op);
    CHECK(rp_ratelimit_check_op(&op, open, "u", 1, 1, NULL) == RP_OK);
    rp_op_step(op, 0);
    rp_op_fail_node(op, 0, RP_ETIMEOUT, "timed out");
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE && rp_ratelimit_check_result(op, &d) == RP_OK);
    CHECK(d.allowed && d.degraded && d.error_code == RP_ETIMEOUT);
    CHECK(strcmp(d.error_message, "timeout: timed out") == 0);
    rp_op_free(op);
    CHECK(rp_ratelimit_check_op(&op, closed, "u", 1, 1, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "-OOM command not allowed\r\n", 26) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE && rp_ratelimit_check_result(op, &d) == RP_OK);
    CHECK(!d.allowed && d.degraded && d.error_code == RP_EREPLY);
    CHECK(strcmp(d.error_message, "reply: OOM command not allowed") == 0);
    rp_op_free(op);

    /* multi: the refusing limit's numbers, and its index */
    both[0] = report;
    both[1] = open;
    CHECK(rp_ratelimit_multi_op(&op, both, 2, "u", 1, 1, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(feed_bytewise(op, "*10\r\n:0\r\n:2\r\n:10\r\n:5\r\n:0\r\n:900\r\n:3\r\n:0\r\n:250\r\n:700\r\n") == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE && rp_ratelimit_check_result(op, &d) == RP_OK);
    CHECK(!d.allowed && d.refused_by == 1 && d.limit == 3 && d.retry_after_ms == 250);
    rp_op_free(op);

    /* bad input, before any I/O */
    CHECK(rp_ratelimit_check_op(&op, report, "u", 1, 11, &e) == RP_EINVAL && strstr(e.message, "cost"));
    CHECK(rp_ratelimit_check_op(&op, report, "u", 1, -1, &e) == RP_EINVAL && strstr(e.message, "cost"));
    CHECK(rp_ratelimit_check_op(&op, report, "", 0, 1, &e) == RP_EINVAL && strstr(e.message, "subject"));
    {
        rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
        rp_ratelimit *rl = NULL;
        o.limit = 0;
        o.window_ms = 1000;
        CHECK(rp_ratelimit_new(&rl, c, "x", 1, &o, &e) == RP_EINVAL && strstr(e.message, "limit"));
        o.limit = 5;
        o.window_ms = 0;
        CHECK(rp_ratelimit_new(&rl, c, "x", 1, &o, &e) == RP_EINVAL && strstr(e.message, "window"));
        o.window_ms = 10;
        o.algorithm = RP_RATELIMIT_FIXED_WINDOW;
        o.burst = 3;
        CHECK(rp_ratelimit_new(&rl, c, "x", 1, &o, &e) == RP_EINVAL && strstr(e.message, "burst"));
        o.burst = 0;
        CHECK(rp_ratelimit_new(&rl, c, "x{y}", 4, &o, &e) == RP_EINVAL && strstr(e.message, "name"));
        o.algorithm = (rp_ratelimit_algorithm)9;
        CHECK(rp_ratelimit_new(&rl, c, "x", 1, &o, &e) == RP_EINVAL && strstr(e.message, "algorithm"));
        CHECK(rp_ratelimit_algorithm_parse("leaky", 5, &o.algorithm, &e) == RP_EINVAL &&
              strstr(e.message, "algorithm must be one of") && strstr(e.message, "\"leaky\""));
        CHECK(rp_ratelimit_algorithm_parse("gcra", 4, &o.algorithm, &e) == RP_OK &&
              o.algorithm == RP_RATELIMIT_GCRA);
        CHECK(rp_ratelimit_algorithm_parse("gcr", 3, &o.algorithm, &e) == RP_EINVAL);
        CHECK(rp_ratelimit_on_error_parse("fail_open", 9, &o.on_error, &e) == RP_OK &&
              o.on_error == RP_RATELIMIT_FAIL_OPEN);
        CHECK(rp_ratelimit_on_error_parse("open", 4, &o.on_error, &e) == RP_EINVAL &&
              strstr(e.message, "on_error"));
        CHECK(strcmp(rp_ratelimit_algorithm_name(RP_RATELIMIT_SLIDING_LOG), "sliding_log") == 0);
        CHECK(rp_ratelimit_on_error_name((rp_ratelimit_on_error)7) == NULL);
        CHECK(rl == NULL);
    }
    rp_ratelimit_free(report);
    rp_ratelimit_free(open);
    rp_ratelimit_free(closed);
    rp_client_free(c);
}

static size_t count_of(rp_op *op, const char *part)
{
    const char *bytes;
    size_t len, n = strlen(part), i, count = 0;
    if (rp_op_request(op, 0, &bytes, &len) != RP_OK)
        return 0;
    for (i = 0; i + n <= len; i++)
        if (memcmp(bytes + i, part, n) == 0)
            count++;
    return count;
}

/* NOSCRIPT inside a pipeline: only the commands Redis refused go again, as EVAL, and each
 * reply lands in its own slot. */
static void test_noscript_in_a_pipeline(void)
{
    rp_client *c = offline_client();
    rp_ratelimit *rl = limiter(c, "p", RP_RATELIMIT_REPORT);
    const void *subjects[] = { "a", "b", "c" };
    size_t lens[] = { 1, 1, 1 };
    rp_ratelimit_decision d;
    rp_op *op;
    CHECK(rp_ratelimit_batch_op(&op, rl, 3, subjects, lens, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(count_of(op, "$7\r\nEVALSHA\r\n") == 3);
    CHECK(feed_bytewise(op, "*6\r\n:1\r\n:0\r\n:10\r\n:9\r\n:0\r\n:1000\r\n"
                            "-NOSCRIPT No matching script.\r\n"
                            "*6\r\n:0\r\n:1\r\n:10\r\n:0\r\n:700\r\n:900\r\n") == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(count_of(op, "$4\r\nEVAL\r\n") == 1 && count_of(op, "EVALSHA") == 0);
    CHECK(request_contains(op, "t:rl:p:{b}") && !request_contains(op, "t:rl:p:{a}"));
    CHECK(feed_bytewise(op, "*6\r\n:1\r\n:0\r\n:10\r\n:5\r\n:0\r\n:1000\r\n") == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    CHECK(rp_ratelimit_batch_count(op) == 3);
    CHECK(rp_ratelimit_batch_result(op, 0, &d) == RP_OK && d.allowed && d.remaining == 9);
    CHECK(rp_ratelimit_batch_result(op, 1, &d) == RP_OK && d.allowed && d.remaining == 5);
    CHECK(rp_ratelimit_batch_result(op, 2, &d) == RP_OK && !d.allowed && d.retry_after_ms == 700);
    CHECK(rp_ratelimit_batch_result(op, 3, &d) == RP_EINVAL);
    rp_op_free(op);
    rp_ratelimit_free(rl);
    rp_client_free(c);
}

static void test_sha1(void)
{
    char out[41];
    rp_sha1__hex("", 0, out);
    CHECK(strcmp(out, "da39a3ee5e6b4b0d3255bfef95601890afd80709") == 0);
    rp_sha1__hex("abc", 3, out);
    CHECK(strcmp(out, "a9993e364706816aba3e25717850c26c9cd0d89d") == 0);
    rp_sha1__hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
    CHECK(strcmp(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1") == 0);
}

static void test_integer_text(void)
{
    char buf[RP_I64_CHARS];
    CHECK(rp_fmt__i64(buf, 0) == 1 && memcmp(buf, "0", 1) == 0);
    CHECK(rp_fmt__i64(buf, 30000) == 5 && memcmp(buf, "30000", 5) == 0);
    CHECK(rp_fmt__i64(buf, -42) == 3 && memcmp(buf, "-42", 3) == 0);
    CHECK(rp_fmt__i64(buf, INT64_MAX) == 19 && memcmp(buf, "9223372036854775807", 19) == 0);
    CHECK(rp_fmt__i64(buf, INT64_MIN) == 20 && memcmp(buf, "-9223372036854775808", 20) == 0);
}

static void test_status_names(void)
{
    CHECK(strcmp(rp_status_name(RP_ENOTOWNED), "not_owned") == 0);
    CHECK(strcmp(rp_status_name(RP_EINVAL), "invalid_argument") == 0);
    CHECK(strcmp(rp_status_name(12345), "unknown") == 0);
}

int main(void)
{
    test_acquire_try_once();
    test_acquire_waits_with_backoff();
    test_fenced_acquire_reply();
    test_noscript_falls_back_to_eval();
    test_release_not_owned_and_error_reply();
    test_protocol_and_driver_errors();
    test_bad_arguments();
    test_urls();
    test_endpoint_and_handshake();
    test_ratelimit_decisions();
    test_noscript_in_a_pipeline();
    test_sha1();
    test_status_names();
    test_integer_text();
    printf("unit_op: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
