/* A holder frozen with SIGSTOP past its TTL loses the lock to another process. After
 * SIGCONT the old holder carries on as if nothing happened: its release must report
 * RP_ENOTOWNED (and leave the new holder's key alone) and its fenced write must be refused
 * by rp_fence_check, while the new holder's fenced write was accepted. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lock_test_util.h"

#define LOCK_NAME "paused"
#define RESOURCE "storage"
#define TTL_MS 1000

typedef struct holder_report {
    int32_t acquire_rc;
    int32_t acquired;
    int64_t fence;
} holder_report;

typedef struct late_report {
    int32_t fence_rc;
    int32_t accepted;
    int64_t highest;
    int32_t release_rc;
    int32_t owned_rc;
    int32_t owned;
} late_report;

/* The old holder: acquire, report, then (after the pause it does not know about) write and
 * release as if it still held the lock. */
static void old_holder(const char *url, int report_fd, int go_fd)
{
    rp_client *c = lt_client(url, 2000);
    rp_lock *l = lt_lock(c, LOCK_NAME, TTL_MS, 1);
    holder_report h;
    memset(&h, 0, sizeof h);
    rp_lock_acquisition res;
    rp_error e;
    h.acquire_rc = rp_lock_acquire(l, NULL, &res, &e);
    h.acquired = h.acquire_rc == RP_OK ? res.acquired : 0;
    h.fence = h.acquire_rc == RP_OK ? res.fence : 0;
    if (lt_write_all(report_fd, &h, sizeof h) != 0) _exit(2);
    if (!h.acquired) _exit(3);

    /* The parent stops us here; this read completes only after SIGCONT. */
    char go;
    if (lt_read_all(go_fd, &go, 1) != 0) _exit(4);

    late_report r;
    memset(&r, 0, sizeof r);
    rp_fence_result fr;
    r.fence_rc = rp_fence_check(c, RESOURCE, strlen(RESOURCE), h.fence, &fr, &e);
    r.accepted = r.fence_rc == RP_OK ? fr.accepted : -1;
    r.highest = r.fence_rc == RP_OK ? fr.highest : -1;
    int owned = -1;
    r.owned_rc = rp_lock_owned(l, &owned, &e);
    r.owned = owned;
    r.release_rc = rp_lock_release(l, &e);
    rp_lock_free(l);
    rp_client_free(c);
    _exit(lt_write_all(report_fd, &r, sizeof r) == 0 ? 0 : 5);
}

int main(void)
{
    rp_harness_watchdog(60);
    rp_hserver srv;
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "cannot start redis-server");

    int report[2], go[2];
    RP_CHECK(pipe(report) == 0 && pipe(go) == 0, "pipe");
    fflush(NULL);
    pid_t a = fork();
    RP_CHECK(a >= 0, "fork");
    if (a == 0) {
        close(report[0]);
        close(go[1]);
        old_holder(srv.url, report[1], go[0]);
    }
    close(report[1]);
    close(go[0]);

    holder_report h;
    RP_CHECK(lt_read_all(report[0], &h, sizeof h) == 0, "old holder did not report");
    RP_CHECK(h.acquire_rc == RP_OK && h.acquired == 1 && h.fence > 0,
             "old holder's acquire: rc %d acquired %d fence %lld", h.acquire_rc, h.acquired,
             (long long)h.fence);

    /* Freeze it while it holds the lock, then let it go on as soon as it wakes up. */
    RP_CHECK(kill(a, SIGSTOP) == 0, "SIGSTOP");
    int status;
    RP_CHECK(waitpid(a, &status, WUNTRACED) == a && WIFSTOPPED(status), "holder not stopped");
    char byte = 'g';
    RP_CHECK(lt_write_all(go[1], &byte, 1) == 0, "go");

    rp_client *c = lt_client(srv.url, 2000);
    rp_lock *l = lt_lock(c, LOCK_NAME, 30000, 1);
    rp_lock_acquisition res;
    rp_error e;
    /* While its TTL runs, the frozen holder still excludes everyone. */
    int rc = rp_lock_acquire(l, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired == 0, "lock taken before the TTL ran out (rc %s)",
             rp_status_name(rc));

    rp_harness_sleep_ms(TTL_MS + 200);
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = 3000;
    rc = rp_lock_acquire(l, &ao, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired == 1, "new holder did not get the expired lock: %s %s",
             rp_status_name(rc), e.message);
    RP_CHECK(res.fence > h.fence, "new fence %lld not above old %lld", (long long)res.fence,
             (long long)h.fence);
    int64_t new_fence = res.fence;
    rp_fence_result fr;
    rc = rp_fence_check(c, RESOURCE, strlen(RESOURCE), new_fence, &fr, &e);
    RP_CHECK(rc == RP_OK && fr.accepted == 1 && fr.highest == new_fence,
             "new holder's fenced write refused: %s accepted %d", rp_status_name(rc),
             fr.accepted);

    RP_CHECK(kill(a, SIGCONT) == 0, "SIGCONT");
    late_report r;
    RP_CHECK(lt_read_all(report[0], &r, sizeof r) == 0, "old holder did not report after SIGCONT");
    RP_CHECK(waitpid(a, &status, 0) == a && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "old holder exited badly (%d)", status);
    RP_CHECK(r.fence_rc == RP_OK, "old holder's fence check failed: %s",
             rp_status_name(r.fence_rc));
    RP_CHECK(r.accepted == 0, "stale fenced write was accepted");
    RP_CHECK(r.highest == new_fence, "highest %lld, expected %lld", (long long)r.highest,
             (long long)new_fence);
    RP_CHECK(r.owned_rc == RP_OK && r.owned == 0, "old holder thinks it owns the lock (%s, %d)",
             rp_status_name(r.owned_rc), r.owned);
    RP_CHECK(r.release_rc == RP_ENOTOWNED, "old holder's release: %s, expected not_owned",
             rp_status_name(r.release_rc));

    /* The old holder's release left the new holder's lock alone. */
    int owned = 0;
    rc = rp_lock_owned(l, &owned, &e);
    RP_CHECK(rc == RP_OK && owned == 1, "new holder lost its lock (%s, %d)", rp_status_name(rc),
             owned);
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "new holder's release: %s %s", rp_status_name(rc), e.message);
    int locked = 1;
    rc = rp_lock_locked(l, &locked, &e);
    RP_CHECK(rc == RP_OK && locked == 0, "lock still held after release");

    rp_lock_free(l);
    rp_client_free(c);
    close(report[0]);
    close(go[1]);
    printf("test_lock_pause: stale holder (fence %lld) refused after pause; new holder "
           "(fence %lld) accepted\n",
           (long long)h.fence, (long long)new_fence);
    rp_hserver_destroy(&srv);
    return 0;
}
