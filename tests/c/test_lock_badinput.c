/* Bad input is rejected with RP_EINVAL, an error message that names the argument, and no
 * I/O. Two proofs of "no I/O": every call is made both on a client pointed at a port where
 * nothing listens (I/O would give RP_ETRANSPORT, not RP_EINVAL) and on a client connected
 * to a live server, whose INFO counters must not move. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock_test_util.h"

static int checks;

/* rc must be RP_EINVAL and err.message must contain one of the '|'-separated names. */
static void expect_einval(int rc, const rp_error *e, const char *names, const char *what)
{
    RP_CHECK(rc == RP_EINVAL, "%s: expected invalid_argument, got %s (%s)", what,
             rp_status_name(rc), e->message);
    RP_CHECK(e->code == RP_EINVAL, "%s: err.code %d", what, e->code);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", names);
    int found = 0;
    for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok != NULL;
         tok = strtok_r(NULL, "|", &save))
        if (strcasestr(e->message, tok) != NULL) found = 1;
    RP_CHECK(found, "%s: message \"%s\" does not name the argument (%s)", what, e->message,
             names);
    if (getenv("RP_TEST_VERBOSE") != NULL) printf("  %-40s -> %s\n", what, e->message);
    checks++;
}

static void client_options_cases(void)
{
    static const struct {
        const char *url, *ns;
        uint32_t connect_ms, command_ms;
        const char *names, *what;
    } cases[] = {
        {"http://127.0.0.1:6379/0", NULL, 1000, 1000, "url|scheme", "bad URL scheme"},
        {"redis://127.0.0.1:99999/0", NULL, 1000, 1000, "url|port", "URL port out of range"},
        {"redis://127.0.0.1:6379/x", NULL, 1000, 1000, "url|db", "URL db not a number"},
        {"redis://127.0.0.1:abc/0", NULL, 1000, 1000, "url|port", "URL port not a number"},
        {"", NULL, 1000, 1000, "url", "empty URL"},
        {"unix://", NULL, 1000, 1000, "url|path", "unix URL without a path"},
        {"redis://127.0.0.1:6379/0", "", 1000, 1000, "namespace", "empty namespace"},
        {"redis://127.0.0.1:6379/0", "a\tb", 1000, 1000, NULL, NULL}, /* allowed: any bytes */
        {"redis://127.0.0.1:6379/0", NULL, 0, 1000, "connect_timeout", "connect timeout 0"},
        {"redis://127.0.0.1:6379/0", NULL, 1000, 0, "command_timeout", "command timeout 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client_options o = RP_CLIENT_OPTIONS_INIT;
        o.url = cases[i].url;
        o.key_namespace = cases[i].ns;
        o.connect_timeout_ms = cases[i].connect_ms;
        o.command_timeout_ms = cases[i].command_ms;
        rp_client *c = NULL;
        rp_error e;
        int rc = rp_client_new(&c, &o, &e);
        if (cases[i].names == NULL) {
            RP_CHECK(rc == RP_OK, "valid options refused: %s", e.message);
            rp_client_free(c);
            continue;
        }
        expect_einval(rc, &e, cases[i].names, cases[i].what);
        RP_CHECK(c == NULL, "%s: a client came out of a failed rp_client_new", cases[i].what);
    }
    /* Namespace longer than 128 bytes. */
    char ns[130];
    memset(ns, 'n', sizeof ns - 1);
    ns[sizeof ns - 1] = '\0';
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = "redis://127.0.0.1:6379/0";
    o.key_namespace = ns;
    rp_client *c = NULL;
    rp_error e;
    expect_einval(rp_client_new(&c, &o, &e), &e, "namespace", "namespace of 129 bytes");
    RP_CHECK(c == NULL, "client from a failed rp_client_new");
}

/* Every lock-level bad input, on client c. */
static void lock_cases(rp_client *c, const char *label)
{
    rp_error e;
    rp_lock *l = NULL;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    char what[128];
#define WHAT(s) (snprintf(what, sizeof what, "%s: %s", label, s), what)

    expect_einval(rp_lock_new(&l, c, "", 0, &lo, &e), &e, "name", WHAT("empty name"));
    RP_CHECK(l == NULL, "lock from a failed rp_lock_new");
    size_t big = 65537;
    char *huge = malloc(big);
    RP_CHECK(huge != NULL, "malloc");
    memset(huge, 'x', big);
    expect_einval(rp_lock_new(&l, c, huge, big, &lo, &e), &e, "name", WHAT("name > 64 KiB"));
    lo.ttl_ms = 0;
    expect_einval(rp_lock_new(&l, c, "n", 1, &lo, &e), &e, "ttl", WHAT("ttl 0"));
    lo.ttl_ms = -5;
    expect_einval(rp_lock_new(&l, c, "n", 1, &lo, &e), &e, "ttl", WHAT("ttl < 0"));
    RP_CHECK(l == NULL, "lock from a failed rp_lock_new");

    lo.ttl_ms = 10000;
    lo.fenced = 1;
    int rc = rp_lock_new(&l, c, "badinput", 8, &lo, &e);
    RP_CHECK(rc == RP_OK, "valid lock refused: %s", e.message);

    rp_lock_acquisition res;
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = -1;
    expect_einval(rp_lock_acquire(l, &ao, &res, &e), &e, "wait", WHAT("negative wait"));
    ao = (rp_lock_acquire_options)RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = 1000;
    ao.retry_min_ms = 0;
    expect_einval(rp_lock_acquire(l, &ao, &res, &e), &e, "retry_min", WHAT("retry_min 0"));
    ao.retry_min_ms = 100;
    ao.retry_max_ms = 50;
    expect_einval(rp_lock_acquire(l, &ao, &res, &e), &e, "retry_max",
                  WHAT("retry_max < retry_min"));
    ao = (rp_lock_acquire_options)RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.token = "t";
    ao.token_len = 0;
    expect_einval(rp_lock_acquire(l, &ao, &res, &e), &e, "token", WHAT("empty token"));
    ao.token = huge;
    ao.token_len = 513;
    expect_einval(rp_lock_acquire(l, &ao, &res, &e), &e, "token", WHAT("token of 513 bytes"));
    rp_op *op = NULL;
    expect_einval(rp_lock_acquire_op(&op, l, &ao, &e), &e, "token", WHAT("acquire_op token"));
    RP_CHECK(op == NULL, "op from a failed rp_lock_acquire_op");

    expect_einval(rp_lock_extend(l, 0, 0, &e), &e, "ms|extend", WHAT("extend by 0"));
    expect_einval(rp_lock_extend(l, -10, 1, &e), &e, "ms|extend", WHAT("extend by < 0"));

    rp_fence_result fr;
    expect_einval(rp_fence_check(c, "res", 3, 0, &fr, &e), &e, "token", WHAT("fence token 0"));
    expect_einval(rp_fence_check(c, "res", 3, -7, &fr, &e), &e, "token",
                  WHAT("fence token < 0"));
    expect_einval(rp_fence_check(c, "", 0, 5, &fr, &e), &e, "resource",
                  WHAT("empty fence resource"));
    expect_einval(rp_fence_check(c, huge, big, 5, &fr, &e), &e, "resource",
                  WHAT("fence resource > 64 KiB"));

    /* Not invalid, but also decided before any I/O: releasing a lock never acquired. */
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_ENOTOWNED, "%s: release without a token: %s", label, rp_status_name(rc));
    checks++;

    rp_lock_free(l);
    free(huge);
#undef WHAT
}

int main(void)
{
    rp_harness_watchdog(60);
    rp_hserver srv;
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "cannot start redis-server");

    client_options_cases();

    /* 1. Nothing listens on this port: any I/O attempt would surface as RP_ETRANSPORT. */
    int dead_port = rp_harness_free_port();
    char dead_url[64];
    snprintf(dead_url, sizeof dead_url, "redis://127.0.0.1:%d/0", dead_port);
    rp_client *dead = lt_client(dead_url, 500);
    lock_cases(dead, "no server");
    rp_client_free(dead);

    /* 2. A live server, an open connection: the server's counters must not move. */
    rp_client *live = lt_client(srv.url, 2000);
    rp_lock *warm = lt_lock(live, "warm", 1000, 0);
    int locked = -1;
    rp_error e;
    RP_CHECK(rp_lock_locked(warm, &locked, &e) == RP_OK, "warm-up call: %s", e.message);
    rp_lock_free(warm);
    redisContext *side = rp_hserver_connect(&srv, 2000);
    RP_CHECK(side != NULL, "side connection");
    long long cmds0 = rp_hinfo_ll(side, "stats", "total_commands_processed");
    long long conns0 = rp_hinfo_ll(side, "stats", "total_connections_received");
    lock_cases(live, "live server");
    long long cmds1 = rp_hinfo_ll(side, "stats", "total_commands_processed");
    long long conns1 = rp_hinfo_ll(side, "stats", "total_connections_received");
    /* The two INFO calls between the readings are the only commands. */
    RP_CHECK(cmds1 - cmds0 == 2, "bad input reached the server: %lld commands",
             cmds1 - cmds0 - 2);
    RP_CHECK(conns1 == conns0, "bad input opened a connection");
    rp_client_free(live);
    redisFree(side);

    printf("test_lock_badinput: %d rejections checked, no I/O\n", checks);
    rp_hserver_destroy(&srv);
    return 0;
}
