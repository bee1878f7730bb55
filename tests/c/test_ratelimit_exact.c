/* Rate limiters against a real server:
 *  - exactness: 16 processes hammer one subject with limit L inside one window; every
 *    algorithm admits exactly L (and the sliding log holds exactly L entries: refused
 *    requests leave none);
 *  - memory per subject (MEMORY USAGE) for each algorithm, printed for the record;
 *  - Redis down: the limiter's on_error policy decides, and says it did. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "lock_test_util.h"

#define PROCS 16
#define LIMIT 300
/* One window spanning the whole test: long enough that refill (token bucket, GCRA) adds
 * well under one request while it runs. */
#define WINDOW_MS 1000000000LL

static const char *const names[] = { "", "fixed_window", "sliding_log", "sliding_window",
                                     "token_bucket", "gcra" };

static rp_ratelimit *limiter(rp_client *c, rp_ratelimit_algorithm a, const char *name,
                             int64_t limit, int64_t window, rp_ratelimit_on_error policy)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    rp_error e;
    int rc;
    o.algorithm = a;
    o.limit = limit;
    o.window_ms = window;
    o.on_error = policy;
    rc = rp_ratelimit_new(&rl, c, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_ratelimit_new: %s", e.message);
    return rl;
}

/* A child: connects, waits at the start line, then ATTEMPTS checks as fast as it can;
 * writes how many were allowed. */
static void hammer(const char *url, rp_ratelimit_algorithm a, int attempts, int go, int fd)
{
    rp_client *c = lt_client(url, 5000);
    rp_ratelimit *rl = limiter(c, a, names[a], LIMIT, WINDOW_MS, RP_RATELIMIT_REPORT);
    int allowed = 0, i;
    char byte;
    rp_ratelimit_decision warm;
    /* a peek opens the connection before the start, so all 16 begin together */
    RP_CHECK(rp_ratelimit_check(rl, "warm-up", 7, 0, &warm, NULL) == RP_OK, "warm-up");
    RP_CHECK(read(go, &byte, 1) == 0, "start line");
    for (i = 0; i < attempts; i++) {
        rp_ratelimit_decision d;
        rp_error e;
        int rc = rp_ratelimit_check(rl, "hot-subject", 11, 1, &d, &e);
        RP_CHECK(rc == RP_OK, "check: %s", e.message);
        allowed += d.allowed;
    }
    RP_CHECK(lt_write_all(fd, &allowed, sizeof allowed) == 0, "write");
    rp_ratelimit_free(rl);
    rp_client_free(c);
    _exit(0);
}

static void exactness(rp_hserver *srv, redisContext *side, rp_ratelimit_algorithm a)
{
    int fds[2], go[2], total = 0, i;
    pid_t kids[PROCS];
    /* each process tries LIMIT/4: together 4x the limit, so the limit is contended */
    int attempts = LIMIT / 4;
    char key[128];
    redisReply *r;
    RP_CHECK(pipe(fds) == 0 && pipe(go) == 0, "pipe");
    for (i = 0; i < PROCS; i++) {
        kids[i] = fork();
        RP_CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            close(fds[0]);
            close(go[1]);
            hammer(srv->url, a, attempts, go[0], fds[1]);
        }
    }
    close(fds[1]);
    close(go[0]);
    rp_harness_sleep_ms(100); /* every child connected and waiting */
    close(go[1]);             /* start: every child's read returns 0 at once */
    for (i = 0; i < PROCS; i++) {
        int allowed = 0, status = 0;
        RP_CHECK(lt_read_all(fds[0], &allowed, sizeof allowed) == 0, "a child died early");
        total += allowed;
        waitpid(kids[i], &status, 0);
        RP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
    }
    close(fds[0]);
    snprintf(key, sizeof key, "rptest:rl:%s:{hot-subject}", names[a]);
    r = rp_hcmd(side, "PTTL %s", key);
    RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0, "%s: key has no TTL", names[a]);
    freeReplyObject(r);
    r = rp_hcmd(side, "MEMORY USAGE %s", key);
    printf("%-15s %d processes x %d attempts, limit %d: %d admitted; MEMORY USAGE %lld bytes\n",
           names[a], PROCS, attempts, LIMIT, total, r ? r->integer : -1LL);
    freeReplyObject(r);
    RP_CHECK(total == LIMIT, "%s admitted %d, not exactly %d", names[a], total, LIMIT);
    if (a == RP_RATELIMIT_SLIDING_LOG) {
        r = rp_hcmd(side, "ZCARD %s", key);
        RP_CHECK(r && r->integer == LIMIT, "sliding log holds %lld entries, not %d (refused "
                 "requests must leave none)", r ? r->integer : -1LL, LIMIT);
        freeReplyObject(r);
    }
}

/* One check per policy with the server gone. */
static void redis_down(const char *url)
{
    rp_client *c = lt_client(url, 300);
    rp_ratelimit *report = limiter(c, RP_RATELIMIT_GCRA, "r", 10, 1000, RP_RATELIMIT_REPORT);
    rp_ratelimit *open = limiter(c, RP_RATELIMIT_FIXED_WINDOW, "o", 10, 1000, RP_RATELIMIT_FAIL_OPEN);
    rp_ratelimit *closed = limiter(c, RP_RATELIMIT_SLIDING_LOG, "c", 10, 1000, RP_RATELIMIT_FAIL_CLOSED);
    rp_ratelimit_decision d;
    rp_error e;
    int rc = rp_ratelimit_check(report, "u", 1, 1, &d, &e);
    RP_CHECK(rc == RP_ETRANSPORT || rc == RP_ETIMEOUT, "report: got %s", rp_status_name(rc));
    rc = rp_ratelimit_check(open, "u", 1, 1, &d, &e);
    RP_CHECK(rc == RP_OK && d.allowed && d.degraded && d.error_code != RP_OK, "fail_open");
    RP_CHECK(strstr(d.error_message, "connect") != NULL, "degraded without a reason: %s",
             d.error_message);
    rc = rp_ratelimit_check(closed, "u", 1, 1, &d, &e);
    RP_CHECK(rc == RP_OK && !d.allowed && d.degraded && d.error_code != RP_OK, "fail_closed");
    printf("redis down: report -> %s, fail_open -> allowed (degraded), fail_closed -> refused (degraded)\n",
           rp_status_name(rp_ratelimit_check(report, "u", 1, 1, &d, &e)));
    rp_ratelimit_free(report);
    rp_ratelimit_free(open);
    rp_ratelimit_free(closed);
    rp_client_free(c);
}

int main(void)
{
    rp_hserver srv;
    redisContext *side;
    int a;
    rp_harness_watchdog(300);
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "start redis-server");
    side = rp_hserver_connect(&srv, 5000);
    RP_CHECK(side != NULL, "side connection");
    for (a = RP_RATELIMIT_FIXED_WINDOW; a <= RP_RATELIMIT_GCRA; a++)
        exactness(&srv, side, (rp_ratelimit_algorithm)a);
    redisFree(side);
    /* the server killed: every policy answers within the timeout, as configured */
    rp_hserver_kill(&srv);
    redis_down(srv.url);
    rp_hserver_destroy(&srv);
    printf("test_ratelimit_exact: ok\n");
    return 0;
}
