/* Unit tests of pure logic: ops driven by hand with canned replies and a fake clock,
 * URL parsing, SHA-1. No server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#include "internal.h"
#include "op_internal.h"
#include "script.h"
#include "url.h"

static rp_client *offline_client(void) { return unit_client(NULL); }

static int request_is(rp_op *op, const char *want)
{
    const char *bytes;
    size_t len;
    if (rp_op_request(op, 0, &bytes, &len) != RP_OK)
        return 0;
    return len == strlen(want) && memcmp(bytes, want, len) == 0;
}

static int request_contains(rp_op *op, const char *part) { return unit_request_has(op, 0, part); }

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
    CHECK(request_is(op, "*7\r\n$3\r\nSET\r\n$10\r\nt:lock:{r}\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n$3\r\nGET\r\n"));
    CHECK(feed_bytewise(op, "$-1\r\n") == RP_OK); /* SET NX GET: nil, it was free */
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
            CHECK(rp_op_feed(op, 0, "$5\r\nother\r\n", 11) == RP_OK); /* the holder's token */
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
    /* it gives up when the next delay (<= 32) would pass the deadline: never sleeps past it */
    CHECK(slept <= 100 && slept > 100 - 32);
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
    rp_op_feed(op, 0, "$-1\r\n", 5);
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

/* A target not known to have a script gets it with EVAL at once; once it answered, EVALSHA;
 * after a NOSCRIPT (the server forgot it), EVAL again. */
static void test_script_cache(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_lock *l;
    rp_op *op;
    int round;
    o.key_namespace = "t";
    CHECK(rp_client_new(&c, &o, NULL) == RP_OK); /* nothing known yet */
    for (round = 0; round < 4; round++) {
        l = held_lock(c);
        CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
        CHECK(rp_op_step(op, 0) == RP_STEP_IO);
        if (round == 0 || round == 3) {
            CHECK(request_contains(op, "$4\r\nEVAL\r\n") && !request_contains(op, "EVALSHA"));
            CHECK(rp_op_feed(op, 0, ":1\r\n", 4) == RP_OK);
        } else if (round == 1) {
            CHECK(request_contains(op, "EVALSHA"));
            CHECK(rp_op_feed(op, 0, ":1\r\n", 4) == RP_OK);
        } else { /* the server restarted: NOSCRIPT, EVAL in the same op, forgotten after */
            CHECK(request_contains(op, "EVALSHA"));
            CHECK(rp_op_feed(op, 0, "-NOSCRIPT No matching script.\r\n", 31) == RP_OK);
            CHECK(rp_op_step(op, 0) == RP_STEP_IO && request_contains(op, "$4\r\nEVAL\r\n"));
            CHECK(rp_op_feed(op, 0, ":0\r\n", 4) == RP_OK); /* not owned: still loaded */
        }
        rp_op_step(op, 0);
        rp_op_free(op);
        rp_lock_free(l);
        if (round == 2) {
            /* the retry's answer taught it again: force "forgotten" to see round 3's EVAL */
            rp_script__learn(rp_script__find(rp_client__scripts(c), "lock_release"), 0, 0);
        }
    }
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
    CHECK(rp_op_feed(op, 0, "$-1\r\n$-1\r\n", 10) == RP_EPROTOCOL);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "+O", 2) == RP_MORE);
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ESTATE);
    rp_op_free(op);

    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    rp_op_step(op, 0);
    /* timed out connecting (nothing sent): the node's status and words; a timeout with the
     * SET unanswered releases first (unit_doubt.c) */
    rp_op_fail_node_unsent(op, 0, RP_ETIMEOUT, "timed out");
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
    /* issue 11 item 8: rediss:// is redis:// over TLS (was refused); plain URLs are not */
    CHECK(rp_url__parse(&u, "rediss://:pw@host:6380/2", a, &e) == RP_OK);
    CHECK(u.tls && !u.is_unix && strcmp(u.host, "host") == 0 && u.port == 6380 && u.db == 2 &&
          strcmp(u.password, "pw") == 0);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "redis://host", a, &e) == RP_OK && !u.tls);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "rediss://host/0?x=1", a, &e) == RP_EINVAL &&
          strstr(e.message, "rediss:// URLs"));
    CHECK(rp_url__parse(&u, "unixs:///p", a, &e) == RP_EINVAL && strstr(e.message, "rediss://"));
    CHECK(rp_url__parse(&u, "unix://relative", a, &e) == RP_EINVAL);
    CHECK(rp_url__parse(&u, "", a, &e) == RP_EINVAL);
    /* issue 11 item 9: a query on a redis:// URL is named as such, also after the db */
    CHECK(rp_url__parse(&u, "redis://h:1/0?x=1", a, &e) == RP_EINVAL && strstr(e.message, "query strings"));
    CHECK(rp_url__parse(&u, "redis://h/3#frag", a, &e) == RP_EINVAL && strstr(e.message, "query strings"));
    CHECK(rp_url__parse(&u, "redis://h:1/0x", a, &e) == RP_EINVAL && strstr(e.message, "database"));
    /* unix:// with a password: in the user info or as ?password= */
    CHECK(rp_url__parse(&u, "unix://:pw@/run/redis.sock", a, &e) == RP_OK);
    CHECK(u.is_unix && !u.user && strcmp(u.password, "pw") == 0 && strcmp(u.path, "/run/redis.sock") == 0 && u.db == 0);
    CHECK(strcmp(u.address, "unix:/run/redis.sock") == 0); /* no stray "/0" after the path */
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix://me:p%40w@/run/r.sock?db=4", a, &e) == RP_OK);
    CHECK(strcmp(u.user, "me") == 0 && strcmp(u.password, "p@w") == 0 && u.db == 4);
    CHECK(strcmp(u.address, "me@unix:/run/r.sock?db=4") == 0);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix:///run/r.sock?password=p%26w&db=2", a, &e) == RP_OK);
    CHECK(!u.user && strcmp(u.password, "p&w") == 0 && strcmp(u.path, "/run/r.sock") == 0 && u.db == 2);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix:///run/r.sock?db=2&password=pw", a, &e) == RP_OK);
    CHECK(strcmp(u.password, "pw") == 0 && u.db == 2);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix:///tmp/a@b.sock", a, &e) == RP_OK); /* '@' in the path */
    CHECK(strcmp(u.path, "/tmp/a@b.sock") == 0 && !u.password);
    rp_url__free(&u, a);
    CHECK(rp_url__parse(&u, "unix:///r.sock?db=1&db=2", a, &e) == RP_EINVAL && strstr(e.message, "twice"));
    CHECK(rp_url__parse(&u, "unix://:a@/r.sock?password=b", a, &e) == RP_EINVAL && strstr(e.message, "password"));
    CHECK(rp_url__parse(&u, "unix:///r.sock?user=x", a, &e) == RP_EINVAL && strstr(e.message, "password="));
    CHECK(rp_url__parse(&u, "unix:///r.sock?password=", a, &e) == RP_EINVAL && strstr(e.message, "password"));
    CHECK(rp_url__parse(&u, "unix:///r.sock?password=%zz", a, &e) == RP_EINVAL && strstr(e.message, "escape"));
    CHECK(rp_url__parse(&u, "unix:///r.sock?db=x", a, &e) == RP_EINVAL && strstr(e.message, "db"));
    CHECK(rp_url__parse(&u, "unix://:pw@relative", a, &e) == RP_EINVAL);
    CHECK(rp_url__parse(&u, "unix://pw/r.sock", a, &e) == RP_EINVAL);
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
    CHECK(rp_op_step(op, 0) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EAUTH);
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
    CHECK(request_contains(op, "t:rl:r:{u}") && !request_contains(op, "t:rl:r:{u}:seq"));
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

/* --- the engine's v2 paths: quorum rounds, listening, CALL, cancel -------------------- */

#define QUORUM_NODES 5

/* PING every endpoint of the client; enough once `quorum` have answered. */
typedef struct quorum_state {
    int sent;
    size_t quorum;
    int status[QUORUM_NODES];
    char why[QUORUM_NODES][RP_ERROR_MESSAGE_MAX];
    int answered[QUORUM_NODES];
} quorum_state;

static int quorum_advance(rp_op *op, void *state, uint64_t now_ms)
{
    static const char *const ping[] = { "PING" };
    quorum_state *s = state;
    size_t i;
    int rc;
    (void)now_ms;
    if (!s->sent) {
        s->sent = 1;
        rp_op__timeout(op, 50);
        for (i = 0; i < rp_op_nodes(op); i++)
            if ((rc = rp_op__command(op, i, 1, ping, NULL)))
                return rc;
        return RP_OK;
    }
    for (i = 0; i < QUORUM_NODES; i++) {
        s->status[i] = rp_op__node_status(op, i);
        snprintf(s->why[i], sizeof s->why[i], "%s", rp_op__node_why(op, i));
        s->answered[i] = rp_op__reply(op, i, 0) != NULL;
    }
    rp_op__done(op);
    return RP_OK;
}

static int quorum_enough(const rp_op *op, const void *state)
{
    const quorum_state *s = state;
    size_t i, n = 0;
    for (i = 0; i < rp_op_nodes(op); i++)
        n += rp_op__reply(op, i, 0) != NULL;
    return n >= s->quorum;
}

static const rp_op_class quorum_class = {
    .name = "test.quorum",
    .state_size = sizeof(quorum_state),
    .advance = quorum_advance,
    .tolerates_node_failures = 1,
    .enough = quorum_enough,
};

static void test_quorum_early_end(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c;
    rp_endpoint ep;
    rp_op *op;
    void *state;
    const quorum_state *s;
    size_t i;
    o.url = "redis://h1:1,redis://h2:2,redis://h3:3,redis://h4:4,redis://h5:5";
    CHECK(rp_client_new(&c, &o, NULL) == RP_OK); /* no I/O: nothing connects */
    CHECK(rp_op__new(&op, c, &quorum_class, QUORUM_NODES, &state, NULL) == RP_OK);
    ((quorum_state *)state)->quorum = 3;
    CHECK(rp_op_round_over(op) == 1); /* not in a round */
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(rp_op_timeout_ms(op) == 50);
    CHECK(rp_op_target(op, 2, &ep) == RP_OK && strcmp(ep.address, "h3:3/0") == 0);
    CHECK(rp_op_target(op, QUORUM_NODES, &ep) == RP_EINVAL);
    for (i = 0; i < QUORUM_NODES; i++)
        CHECK(rp_op_pending(op, i) == 1);
    CHECK(rp_op_round_over(op) == 0);
    CHECK(rp_op_feed(op, 0, "+PONG\r\n", 7) == RP_OK);
    CHECK(rp_op_pending(op, 0) == 0 && rp_op_round_over(op) == 0);
    CHECK(rp_op_feed(op, 1, "+PO", 3) == RP_MORE);
    CHECK(rp_op_pending(op, 1) == 1);
    CHECK(rp_op_feed(op, 1, "NG\r\n", 4) == RP_OK);
    rp_op_fail_node(op, 2, RP_ETIMEOUT, "h3:3/0: timed out after 50 ms waiting for the reply");
    CHECK(rp_op_pending(op, 2) == 0 && rp_op_round_over(op) == 0); /* a failure is no answer */
    CHECK(rp_op_feed(op, 3, "+PONG\r\n", 7) == RP_OK);
    CHECK(rp_op_round_over(op) == 1); /* three answered: enough */
    CHECK(rp_op_pending(op, 4) == 1); /* still in flight: the driver closes its connection */
    CHECK(rp_op_step(op, 1) == RP_STEP_DONE);
    s = rp_op__done_state(op, &quorum_class);
    CHECK(s && s->answered[0] && s->answered[1] && !s->answered[2] && s->answered[3] &&
          !s->answered[4]);
    CHECK(s && s->status[2] == RP_ETIMEOUT && strstr(s->why[2], "h3:3/0"));
    CHECK(s && s->status[4] == RP_ECANCELED && strstr(s->why[4], "not waited for"));
    CHECK(s && s->status[0] == RP_OK && s->status[3] == RP_OK);
    rp_op_free(op);

    /* without enough answers, stepping early is the driver's bug */
    CHECK(rp_op__new(&op, c, &quorum_class, QUORUM_NODES, &state, NULL) == RP_OK);
    ((quorum_state *)state)->quorum = 3;
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "+PONG\r\n", 7) == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ESTATE);
    rp_op_free(op);
    rp_client_free(c);
}

/* SUBSCRIBE once, then listen; records the replies of each round. */
typedef struct listen_state {
    int subscribed;
    size_t rounds, last_count, total;
    char last_data[64];
} listen_state;

static int listen_advance(rp_op *op, void *state, uint64_t now_ms)
{
    static const char *const sub[] = { "SUBSCRIBE", "c" };
    listen_state *s = state;
    size_t i, n;
    (void)now_ms;
    rp_op__listen(op, 0);
    if (!s->subscribed) {
        s->subscribed = 1;
        return rp_op__command(op, 0, 2, sub, NULL);
    }
    n = rp_op__replies(op, 0);
    s->rounds++;
    s->last_count = n;
    s->total += n;
    for (i = 0; i < n; i++) {
        const rp_reply *r = rp_op__reply(op, 0, i);
        if (r && r->type == RP_REPLY_ARRAY && r->elements == 3 && r->element[2]->str)
            snprintf(s->last_data, sizeof s->last_data, "%s", r->element[2]->str);
    }
    return RP_OK;
}

static const rp_op_class listen_class = {
    .name = "test.listen",
    .state_size = sizeof(listen_state),
    .advance = listen_advance,
    .long_lived = 1,
};

#define MSG_HI "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"
#define MSG_YO "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nyo\r\n"

static void test_listening_feed(void)
{
    static const char confirm[] = "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
    static const char three[] = MSG_HI MSG_HI MSG_YO "*3\r\n$7\r\nmes";
    static const char rest[] = "sage\r\n$1\r\nc\r\n$4\r\nlast\r\n";
    rp_client *c = offline_client();
    rp_op *op;
    void *state;
    listen_state *s;
    const char *b;
    size_t n;
    CHECK(rp_op__new(&op, c, &listen_class, 1, &state, NULL) == RP_OK);
    s = state;
    CHECK(rp_op_long_lived(op) == 1);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(rp_op_listening(op, 0) == 1 && rp_op_pending(op, 0) == 1);
    CHECK(request_contains(op, "SUBSCRIBE")); /* a listening round sends what was queued */
    /* 0 messages: nothing fed, or only part of one */
    CHECK(rp_op_feed(op, 0, "", 0) == RP_MORE);
    CHECK(rp_op_round_over(op) == 0);
    CHECK(rp_op_feed(op, 0, confirm, sizeof confirm - 5) == RP_MORE);
    CHECK(rp_op_round_over(op) == 0);
    /* 1 message */
    CHECK(rp_op_feed(op, 0, confirm + sizeof confirm - 5, 4) == RP_OK);
    CHECK(rp_op_round_over(op) == 1 && rp_op_pending(op, 0) == 0);
    CHECK(rp_op_step(op, 1) == RP_STEP_IO);
    CHECK(s->rounds == 1 && s->last_count == 1);
    CHECK(rp_op_request(op, 0, &b, &n) == RP_OK && n == 0); /* listens with nothing to send */
    CHECK(rp_op_listening(op, 0) == 1 && rp_op_round_over(op) == 0);
    /* stepped early with nothing read: a poll, the op listens again */
    CHECK(rp_op_step(op, 2) == RP_STEP_IO);
    CHECK(s->rounds == 2 && s->last_count == 0);
    /* 3 whole messages and part of a 4th in one read */
    CHECK(rp_op_feed(op, 0, three, sizeof three - 1) == RP_OK);
    CHECK(rp_op_step(op, 3) == RP_STEP_IO);
    CHECK(s->rounds == 3 && s->last_count == 3 && strcmp(s->last_data, "yo") == 0);
    /* the partial one is kept across rounds (and across an early step) */
    CHECK(rp_op_step(op, 4) == RP_STEP_IO && s->last_count == 0);
    CHECK(rp_op_feed(op, 0, rest, sizeof rest - 1) == RP_OK);
    CHECK(rp_op_step(op, 5) == RP_STEP_IO);
    CHECK(s->last_count == 1 && strcmp(s->last_data, "last") == 0 && s->total == 5);
    /* a failed listening node fails the op (this class does not tolerate failures) */
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection lost");
    CHECK(rp_op_round_over(op) == 1);
    CHECK(rp_op_step(op, 6) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ETRANSPORT);
    rp_op_free(op);

    /* a bad message fails the node */
    CHECK(rp_op__new(&op, c, &listen_class, 1, &state, NULL) == RP_OK);
    rp_op_step(op, 0);
    CHECK(rp_op_feed(op, 0, "?bad\r\n", 6) == RP_EPROTOCOL);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    rp_client_free(c);
}

/* CALLs callback argument 1; while it runs, one PING "renewal"; then reads the result. */
typedef struct call_state {
    int stage;
    int renewals;
    int status;
    int has_value; /* the result had bytes (NULL: the callback returned nothing) */
    char text[64];
} call_state;

static int call_advance(rp_op *op, void *state, uint64_t now_ms)
{
    static const char *const ping[] = { "PING" };
    call_state *s = state;
    const char *bytes;
    size_t len;
    (void)now_ms;
    if (s->stage == 0) {
        s->stage = 1;
        rp_op__call(op, 1);
        return RP_OK;
    }
    if (rp_op__call_running(op)) {
        if (s->stage == 1) {
            s->stage = 2;
            s->renewals++;
            return rp_op__command(op, 0, 1, ping, NULL);
        }
        return RP_OK; /* nothing to do: the driver waits for the callback */
    }
    s->status = rp_op__call_result(op, &bytes, &len);
    s->has_value = bytes != NULL;
    snprintf(s->text, sizeof s->text, "%.*s", (int)len, bytes ? bytes : "");
    if (s->status != RP_OK)
        return rp_op__fail(op, s->status, "%s", s->text);
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class call_class = {
    .name = "test.call",
    .state_size = sizeof(call_state),
    .advance = call_advance,
};

static void test_call_and_resume(void)
{
    rp_client *c = offline_client();
    rp_value v[2], res;
    rp_op *op;
    void *state;
    call_state *s;
    size_t arg = 9, count = 9;
    CHECK(rp_op__new(&op, c, &call_class, 1, &state, NULL) == RP_OK);
    s = state;
    CHECK(rp_op_call(op, &arg, v, 2, &count) == RP_ESTATE); /* no CALL yet */
    CHECK(rp_op_resume(op, NULL) == RP_ESTATE);
    CHECK(rp_op_step(op, 0) == RP_STEP_CALL);
    CHECK(rp_op_call(op, &arg, v, 2, &count) == RP_OK && arg == 1 && count == 0);
    /* stepped on while the callback runs: a renewal round, then a wait for the callback */
    CHECK(rp_op_step(op, 1) == RP_STEP_IO && s->renewals == 1);
    CHECK(rp_op_resume(op, NULL) == RP_ESTATE); /* not during a round */
    CHECK(rp_op_feed(op, 0, "+PONG\r\n", 7) == RP_OK);
    CHECK(rp_op_step(op, 2) == RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) == RP_SLEEP_UNTIL_RESUMED);
    CHECK(rp_op_step(op, 3) == RP_STEP_SLEEP); /* woken early: still waiting */
    memset(&res, 0, sizeof res);
    res.type = RP_TYPE_INT;
    CHECK(rp_op_resume(op, &res) == RP_EINVAL); /* NONE, BYTES or STATUS only */
    res = rp_value_bytes("hello", 5);
    CHECK(rp_op_resume(op, &res) == RP_OK);
    CHECK(rp_op_resume(op, &res) == RP_ESTATE); /* it has ended already */
    res.bytes = "XXXXX"; /* the op copied the value */
    CHECK(rp_op_step(op, 4) == RP_STEP_DONE);
    CHECK(s->status == RP_OK && s->has_value && strcmp(s->text, "hello") == 0);
    rp_op_free(op);

    /* the callback returned nothing */
    CHECK(rp_op__new(&op, c, &call_class, 1, &state, NULL) == RP_OK);
    s = state;
    CHECK(rp_op_step(op, 0) == RP_STEP_CALL);
    CHECK(rp_op_resume(op, NULL) == RP_OK); /* before the op was stepped on at all */
    CHECK(rp_op_step(op, 1) == RP_STEP_DONE && s->status == RP_OK && !s->has_value);
    rp_op_free(op);

    /* the callback raised */
    CHECK(rp_op__new(&op, c, &call_class, 1, &state, NULL) == RP_OK);
    s = state;
    CHECK(rp_op_step(op, 0) == RP_STEP_CALL);
    memset(&res, 0, sizeof res);
    res.type = RP_TYPE_STATUS;
    res.i = RP_ECALLBACK;
    res.bytes = "boom";
    res.len = 4;
    CHECK(rp_op_resume(op, &res) == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK && strcmp(rp_op_error(op)->message, "boom") == 0);
    rp_op_free(op);

    /* cancelled while the callback runs: the op sees RP_ECANCELED as the call's end */
    CHECK(rp_op__new(&op, c, &call_class, 1, &state, NULL) == RP_OK);
    s = state;
    CHECK(rp_op_step(op, 0) == RP_STEP_CALL);
    rp_op_cancel(op);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    rp_client_free(c);
}

/* Sleeps; once cancelled, sends one clean-up command, then fails with RP_ECANCELED. */
typedef struct tidy_state {
    int cleaned;
} tidy_state;

static int tidy_advance(rp_op *op, void *state, uint64_t now_ms)
{
    static const char *const del[] = { "DEL", "k" };
    tidy_state *s = state;
    (void)now_ms;
    if (rp_op__cancelled(op)) {
        if (!s->cleaned) {
            s->cleaned = 1;
            return rp_op__command(op, 0, 2, del, NULL);
        }
        return rp_op__fail(op, RP_ECANCELED, "cancelled (cleaned up)");
    }
    rp_op__sleep(op, 1000);
    return RP_OK;
}

static const rp_op_class tidy_class = {
    .name = "test.tidy",
    .state_size = sizeof(tidy_state),
    .advance = tidy_advance,
    .handles_cancel = 1,
};

static void test_cancel(void)
{
    rp_client *c = offline_client();
    rp_lock *l;
    rp_op *op;
    void *state;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;

    /* an op without clean-up ends at its next step */
    o.wait_ms = 1000;
    CHECK(rp_lock_new(&l, c, "r", 1, NULL, NULL) == RP_OK);
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(rp_op_feed(op, 0, "$5\r\nother\r\n", 11) == RP_OK); /* busy: the holder's token */
    CHECK(rp_op_step(op, 1) == RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK(rp_op_step(op, 2) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    rp_op_cancel(op); /* after the end: nothing */
    CHECK(rp_op_step(op, 3) == RP_STEP_ERROR);
    rp_op_free(op);
    rp_lock_free(l);

    /* an op that handles it cleans up first */
    CHECK(rp_op__new(&op, c, &tidy_class, 1, &state, NULL) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK(rp_op_step(op, 1) == RP_STEP_IO && request_contains(op, "DEL"));
    CHECK(rp_op_feed(op, 0, ":1\r\n", 4) == RP_OK);
    CHECK(rp_op_step(op, 2) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    CHECK(strstr(rp_op_error(op)->message, "cleaned up") != NULL);
    CHECK(((tidy_state *)state)->cleaned == 1);
    rp_op_free(op);
    rp_op_cancel(NULL); /* a no-op */
    rp_client_free(c);
}

int main(void)
{
    test_acquire_try_once();
    test_acquire_waits_with_backoff();
    test_fenced_acquire_reply();
    test_noscript_falls_back_to_eval();
    test_script_cache();
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
    test_quorum_early_end();
    test_listening_feed();
    test_call_and_resume();
    test_cancel();
    printf("unit_op: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
