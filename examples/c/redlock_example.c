/* The README's Redlock and lock.using example, as a program: redlock_example URL,URL,URL,...
 * (an odd number >= 3 of independent Redis servers). */
#include <stdio.h>
#include <time.h>

#include <redpat/redpat.h>

/* The work done under the lock: longer than the lock's TTL, so it only stays ours because
 * the watchdog renews it meanwhile (from a helper thread of the driver). */
static int slow_work(void *ud, rp_error *err)
{
    struct timespec ts = { 0, 700 * 1000 * 1000 };
    (void)err;
    nanosleep(&ts, NULL);
    ++*(int *)ud;
    return RP_OK;
}

int main(int argc, char **argv)
{
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_lock_using_options uo = RP_LOCK_USING_OPTIONS_INIT;
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_lock_using_result used;
    rp_lock_acquisition got;
    rp_client *client;
    rp_lock *lock;
    rp_error err;
    int done = 0, rc;

    co.url = argc > 1 ? argv[1]
                      : "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003";
    co.key_namespace = "myapp";
    if (rp_client_new(&client, &co, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    ro.ttl_ms = 300;          /* shorter than slow_work: the watchdog must renew it */
    ro.node_timeout_ms = 50;  /* per node, per round: much smaller than the TTL */
    if (rp_redlock_new(&lock, client, "report:daily", 12, &ro, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        rp_client_free(client);
        return 1;
    }
    /* plain acquire / release: one parallel round over every node each */
    ao.wait_ms = 1000;
    if (rp_lock_acquire(lock, &ao, &got, &err) == RP_OK && got.acquired) {
        printf("acquired on a majority of %zu nodes, safe for %lld ms\n",
               rp_lock_nodes(lock), (long long)got.validity_ms);
        rp_lock_release(lock, &err);
    }
    /* scoped: take it, run slow_work while it is renewed every ttl/3, release it */
    rc = rp_lock_using(lock, &uo, slow_work, &done, &used, &err);
    if (rc == RP_OK && used.acquired)
        printf("slow_work ran %d time(s) under the lock, renewed %lld times\n", done,
               (long long)used.renewals);
    else if (rc == RP_ELOST)
        printf("the lock was lost while slow_work ran: %s\n", err.message);
    else
        printf("not run: %s\n", rc == RP_OK ? "busy" : err.message);
    rp_lock_free(lock);
    rp_client_free(client);
    return rc == RP_OK && used.acquired && done == 1 && used.renewals >= 1 ? 0 : 1;
}
