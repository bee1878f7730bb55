/* The server stalls (DEBUG SLEEP from another connection, or SIGSTOP) or dies (SIGKILL)
 * while a lock call is in flight. The call must come back with RP_ETIMEOUT or
 * RP_ETRANSPORT within the configured command timeout (plus slack), never hang, and the
 * next call once the server is back must work. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lock_test_util.h"

#define TIMEOUT_MS 500u
#define SLACK_MS 1000u

typedef enum call_kind {
    CALL_ACQUIRE,
    CALL_ACQUIRE_FENCED,
    CALL_ACQUIRE_WAITING,
    CALL_RELEASE,
    CALL_EXTEND,
    CALL_FENCE_CHECK,
    CALL_OWNED
} call_kind;

static const char *call_name(call_kind k)
{
    switch (k) {
    case CALL_ACQUIRE: return "acquire";
    case CALL_ACQUIRE_FENCED: return "fenced acquire";
    case CALL_ACQUIRE_WAITING: return "waiting acquire";
    case CALL_RELEASE: return "release";
    case CALL_EXTEND: return "extend";
    case CALL_FENCE_CHECK: return "fence check";
    case CALL_OWNED: return "owned";
    }
    return "?";
}

static rp_hserver srv;
static rp_client *client;
static unsigned serial;

/* A lock handle that holds a fresh lock (for release/extend/owned), or a free one. */
static rp_lock *prepared_lock(call_kind k)
{
    char name[64];
    snprintf(name, sizeof name, "outage-%u", serial++);
    rp_lock *l = lt_lock(client, name, 60000, k == CALL_ACQUIRE_FENCED);
    if (k == CALL_RELEASE || k == CALL_EXTEND || k == CALL_OWNED) {
        rp_lock_acquisition res;
        rp_error e;
        int rc = rp_lock_acquire(l, NULL, &res, &e);
        RP_CHECK(rc == RP_OK && res.acquired, "setup acquire: %s %s", rp_status_name(rc),
                 e.message);
    }
    return l;
}

static int do_call(call_kind k, rp_lock *l, rp_error *e)
{
    rp_lock_acquisition res;
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_fence_result fr;
    int v;
    switch (k) {
    case CALL_ACQUIRE:
    case CALL_ACQUIRE_FENCED: return rp_lock_acquire(l, NULL, &res, e);
    case CALL_ACQUIRE_WAITING:
        /* A lost server is an error, not "busy": no retrying until the wait runs out. */
        ao.wait_ms = 20000;
        return rp_lock_acquire(l, &ao, &res, e);
    case CALL_RELEASE: return rp_lock_release(l, e);
    case CALL_EXTEND: return rp_lock_extend(l, 1000, 0, e);
    case CALL_FENCE_CHECK: return rp_fence_check(client, "outage-res", 10, 1, &fr, e);
    case CALL_OWNED: return rp_lock_owned(l, &v, e);
    }
    return RP_EINVAL;
}

/* Runs the call, checks it failed cleanly within limit_ms. */
static void expect_failure(call_kind k, rp_lock *l, uint64_t limit_ms, const char *situation)
{
    rp_error e;
    memset(&e, 0, sizeof e);
    uint64_t t0 = rp_harness_now_ms();
    int rc = do_call(k, l, &e);
    uint64_t took = rp_harness_now_ms() - t0;
    RP_CHECK(rc == RP_ETIMEOUT || rc == RP_ETRANSPORT, "%s during %s returned %s (%s)",
             call_name(k), situation, rp_status_name(rc), e.message);
    RP_CHECK(e.code == rc && e.message[0] != '\0', "%s: error record not filled", call_name(k));
    RP_CHECK(took <= limit_ms, "%s during %s took %llu ms (limit %llu)", call_name(k), situation,
             (unsigned long long)took, (unsigned long long)limit_ms);
    printf("  %-16s during %-22s -> %-9s in %4llu ms\n", call_name(k), situation,
           rp_status_name(rc), (unsigned long long)took);
}

/* The server is back: a fresh acquire/release cycle works on the same client. */
static void expect_recovered(const char *after)
{
    rp_lock *l = prepared_lock(CALL_ACQUIRE_FENCED);
    rp_lock_acquisition res;
    rp_error e;
    int rc = rp_lock_acquire(l, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired == 1 && res.fence > 0,
             "acquire after %s: %s %s", after, rp_status_name(rc), e.message);
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release after %s: %s %s", after, rp_status_name(rc), e.message);
    rp_lock_free(l);
}

/* Sends DEBUG SLEEP on its own connection without waiting for the answer. */
static redisContext *start_stall(double seconds)
{
    redisContext *s = rp_hserver_connect(&srv, 20000);
    RP_CHECK(s != NULL, "stall connection");
    redisAppendCommand(s, "DEBUG SLEEP %.3f", seconds);
    int done = 0;
    while (!done) RP_CHECK(redisBufferWrite(s, &done) == REDIS_OK, "writing DEBUG SLEEP");
    rp_harness_sleep_ms(50); /* the server is inside the sleep now */
    return s;
}

static void end_stall(redisContext *s)
{
    void *reply = NULL;
    RP_CHECK(redisGetReply(s, &reply) == REDIS_OK && reply != NULL, "DEBUG SLEEP reply");
    freeReplyObject(reply);
    redisFree(s);
}

static void stalled_cases(void)
{
    static const struct {
        call_kind k;
        double seconds;
    } cases[] = {
        {CALL_ACQUIRE, 5.0},      {CALL_ACQUIRE_FENCED, 2.0}, {CALL_ACQUIRE_WAITING, 2.0},
        {CALL_RELEASE, 2.0},      {CALL_EXTEND, 2.0},         {CALL_FENCE_CHECK, 2.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_lock *l = prepared_lock(cases[i].k);
        redisContext *s = start_stall(cases[i].seconds);
        expect_failure(cases[i].k, l, TIMEOUT_MS + SLACK_MS, "DEBUG SLEEP");
        end_stall(s);
        expect_recovered("DEBUG SLEEP");
        rp_lock_free(l);
    }
}

static void paused_cases(void)
{
    /* A frozen server accepts connections (kernel backlog) but never answers. */
    rp_lock *l = prepared_lock(CALL_OWNED);
    RP_CHECK(rp_hserver_pause(&srv) == 0, "SIGSTOP server");
    expect_failure(CALL_OWNED, l, TIMEOUT_MS + SLACK_MS, "SIGSTOP (open conn)");
    /* The failed call dropped the connection: this one connects anew to the frozen server. */
    expect_failure(CALL_RELEASE, l, 2 * TIMEOUT_MS + SLACK_MS, "SIGSTOP (new conn)");
    RP_CHECK(rp_hserver_resume(&srv) == 0, "SIGCONT server");
    expect_recovered("SIGCONT");
    rp_lock_free(l);
}

static void killed_cases(void)
{
    /* Killed in the middle of a call: the server is busy in DEBUG SLEEP when a helper
     * process kills it; the client sees the connection die. */
    rp_lock *l = prepared_lock(CALL_ACQUIRE_FENCED);
    redisContext *s = start_stall(3.0);
    fflush(NULL);
    pid_t helper = fork();
    RP_CHECK(helper >= 0, "fork");
    if (helper == 0) {
        rp_harness_sleep_ms(150);
        kill(srv.pid, SIGKILL);
        _exit(0);
    }
    expect_failure(CALL_ACQUIRE_FENCED, l, TIMEOUT_MS + SLACK_MS, "SIGKILL");
    int status;
    RP_CHECK(waitpid(helper, &status, 0) == helper, "helper");
    redisFree(s);
    rp_hserver_kill(&srv); /* reaps it */

    /* While it is down: connection refused, at once. */
    expect_failure(CALL_ACQUIRE, l, TIMEOUT_MS + SLACK_MS, "server down");
    expect_failure(CALL_FENCE_CHECK, l, TIMEOUT_MS + SLACK_MS, "server down");

    RP_CHECK(rp_hserver_launch(&srv) == 0, "relaunch on the same port");
    expect_recovered("restart");
    rp_lock_free(l);
}

int main(void)
{
    rp_harness_watchdog(120);
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "cannot start redis-server");
    client = lt_client(srv.url, TIMEOUT_MS);
    printf("test_lock_outage: command timeout %u ms, slack %u ms\n", TIMEOUT_MS, SLACK_MS);

    expect_recovered("start");
    stalled_cases();
    paused_cases();
    killed_cases();

    rp_client_free(client);
    printf("test_lock_outage: ok\n");
    rp_hserver_destroy(&srv);
    return 0;
}
