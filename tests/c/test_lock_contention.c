/* 60 forked processes contend for one lock. Each waits for it (with a timeout), holds it
 * briefly while doing a read-modify-write of a shared counter, and reports its hold
 * interval [t0, t1] on the monotonic clock through a pipe. Checked: no two intervals
 * overlap, the counter lost no update, every process either got the lock or reported a
 * clean timeout (no error), fencing tokens grow in hold order, and the lock is free at
 * the end. Half the processes use a fenced lock handle on the same name: fenced and plain
 * acquires must exclude each other too. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lock_test_util.h"

#define NPROC 60
#define LOCK_NAME "contended"
#define COUNTER_KEY "rptest:counter"

enum { REC_OK = 0, REC_TIMEOUT = 1, REC_ERROR = 2 };

typedef struct record {
    int32_t idx;
    int32_t kind;
    int32_t rc;
    int32_t fenced;
    uint32_t attempts;
    int64_t fence;
    uint64_t t0, t1;
    char msg[160];
} record;

static void child(const char *url, int idx, int gate_fd, int out_fd)
{
    record r;
    memset(&r, 0, sizeof r);
    r.idx = idx;
    r.fenced = idx % 2;
    char go;
    /* All children start together: the gate's write end is closed by the parent. */
    if (read(gate_fd, &go, 1) < 0) _exit(4);

    rp_client *c = lt_client(url, 5000);
    rp_lock *l = lt_lock(c, LOCK_NAME, 10000, r.fenced);
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = 60000;
    ao.retry_min_ms = 2;
    ao.retry_max_ms = 40;
    rp_lock_acquisition res;
    rp_error e;
    int rc = rp_lock_acquire(l, &ao, &res, &e);
    r.rc = rc;
    if (rc != RP_OK) {
        r.kind = REC_ERROR;
        snprintf(r.msg, sizeof r.msg, "acquire: %s: %.100s", rp_status_name(rc), e.message);
    } else if (!res.acquired) {
        r.kind = REC_TIMEOUT;
        r.attempts = res.attempts;
    } else {
        r.attempts = res.attempts;
        r.fence = res.fence;
        r.t0 = rp_harness_now_ns();
        /* A read-modify-write that loses updates unless the lock excludes everyone. */
        const char *get[] = {"GET", COUNTER_KEY};
        rp_reply *rep = NULL;
        rc = rp_client_command(c, 2, get, NULL, &rep, &e);
        long long n = 0;
        if (rc == RP_OK && rep->type == RP_REPLY_STRING) n = strtoll(rep->str, NULL, 10);
        rp_reply_free(rep);
        rp_harness_sleep_ms(2);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", n + 1);
        const char *set[] = {"SET", COUNTER_KEY, buf};
        rep = NULL;
        int rc2 = rp_client_command(c, 3, set, NULL, &rep, &e);
        rp_reply_free(rep);
        r.t1 = rp_harness_now_ns();
        int rc3 = rp_lock_release(l, &e);
        if (rc != RP_OK || rc2 != RP_OK || rc3 != RP_OK) {
            r.kind = REC_ERROR;
            r.rc = rc3;
            snprintf(r.msg, sizeof r.msg, "get %s / set %s / release %s: %.100s", rp_status_name(rc),
                     rp_status_name(rc2), rp_status_name(rc3), e.message);
        }
    }
    rp_lock_free(l);
    rp_client_free(c);
    _exit(lt_write_all(out_fd, &r, sizeof r) == 0 ? 0 : 3);
}

static int by_start(const void *a, const void *b)
{
    const record *x = a, *y = b;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0 ? 1 : 0;
}

int main(void)
{
    rp_harness_watchdog(180);
    rp_hserver srv;
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "cannot start redis-server");

    int gate[2], out[2];
    RP_CHECK(pipe(gate) == 0 && pipe(out) == 0, "pipe");
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        fflush(NULL);
        pids[i] = fork();
        RP_CHECK(pids[i] >= 0, "fork");
        if (pids[i] == 0) {
            close(gate[1]);
            close(out[0]);
            child(srv.url, i, gate[0], out[1]);
        }
    }
    close(gate[0]);
    close(out[1]);
    close(gate[1]); /* open the gate */

    static record recs[NPROC];
    int n = 0;
    while (n < NPROC && lt_read_all(out[0], &recs[n], sizeof recs[n]) == 0) n++;
    close(out[0]);
    for (int i = 0; i < NPROC; i++) {
        int status;
        RP_CHECK(waitpid(pids[i], &status, 0) == pids[i], "waitpid");
        RP_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d died (status %d)", i,
                 status);
    }
    RP_CHECK(n == NPROC, "only %d of %d children reported", n, NPROC);

    record held[NPROC];
    int nheld = 0, ntimeout = 0;
    uint32_t max_attempts = 0;
    for (int i = 0; i < n; i++) {
        RP_CHECK(recs[i].kind != REC_ERROR, "child %d: %s", recs[i].idx, recs[i].msg);
        if (recs[i].kind == REC_TIMEOUT) ntimeout++;
        else held[nheld++] = recs[i];
        if (recs[i].attempts > max_attempts) max_attempts = recs[i].attempts;
    }
    RP_CHECK(nheld > 0, "nobody got the lock");
    /* Contention really happened: someone had to retry. */
    RP_CHECK(max_attempts > 1, "no process ever found the lock busy");

    qsort(held, (size_t)nheld, sizeof held[0], by_start);
    int64_t last_fence = 0;
    for (int i = 0; i < nheld; i++) {
        RP_CHECK(held[i].t1 >= held[i].t0, "bad interval");
        if (i > 0)
            RP_CHECK(held[i].t0 >= held[i - 1].t1,
                     "hold intervals overlap: child %d [%llu, %llu] and child %d [%llu, %llu]",
                     held[i - 1].idx, (unsigned long long)held[i - 1].t0,
                     (unsigned long long)held[i - 1].t1, held[i].idx,
                     (unsigned long long)held[i].t0, (unsigned long long)held[i].t1);
        if (held[i].fenced) {
            RP_CHECK(held[i].fence > last_fence, "fence %lld after %lld", (long long)held[i].fence,
                     (long long)last_fence);
            last_fence = held[i].fence;
        } else {
            RP_CHECK(held[i].fence == 0, "plain lock returned a fence");
        }
    }

    redisContext *rc = rp_hserver_connect(&srv, 2000);
    RP_CHECK(rc != NULL, "side connection");
    redisReply *r = rp_hcmd(rc, "GET %s", COUNTER_KEY);
    RP_CHECK(r != NULL && r->type == REDIS_REPLY_STRING, "counter missing");
    long long counter = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    RP_CHECK(counter == nheld, "counter %lld != %d holders: an update was lost", counter, nheld);
    r = rp_hcmd(rc, "EXISTS %s:lock:{%s}", LT_NS, LOCK_NAME);
    RP_CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0,
             "lock still held at the end");
    freeReplyObject(r);
    redisFree(rc);

    printf("test_lock_contention: %d processes, %d held the lock, %d timed out cleanly, "
           "max %u attempts, no overlap\n",
           NPROC, nheld, ntimeout, max_attempts);
    rp_hserver_destroy(&srv);
    return 0;
}
