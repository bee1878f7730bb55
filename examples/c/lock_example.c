/* The README's lock example, as a program: lock_example URL */
#include <stdio.h>

#include <redpat/redpat.h>

int main(int argc, char **argv)
{
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_lock_acquisition got;
    rp_client *client;
    rp_lock *lock;
    rp_error err;
    int rc;

    co.url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
    co.key_namespace = "myapp";
    if (rp_client_new(&client, &co, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    lo.ttl_ms = 10000; /* every lock expires: no TTL, no lock */
    lo.fenced = 1;     /* hand out a fencing token with each acquire */
    if (rp_lock_new(&lock, client, "invoice:42", 10, &lo, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        rp_client_free(client);
        return 1;
    }
    ao.wait_ms = 2000; /* retry with jittered backoff for up to 2 s */
    rc = rp_lock_acquire(lock, &ao, &got, &err);
    if (rc == RP_OK && got.acquired) {
        rp_fence_result fr;
        printf("acquired invoice:42 with fencing token %lld\n", (long long)got.fence);
        /* storage checks the token before it writes */
        if (rp_fence_check(client, "invoice-db", 10, got.fence, &fr, &err) == RP_OK)
            printf("storage %s the write (highest token seen: %lld)\n",
                   fr.accepted ? "accepts" : "refuses", (long long)fr.highest);
        rc = rp_lock_release(lock, &err);
        printf("release: %s\n", rc == RP_OK ? "ok" : rp_status_name(rc));
    } else if (rc == RP_OK) {
        printf("busy: someone else holds invoice:42\n");
    } else {
        fprintf(stderr, "acquire failed: %s: %s\n", rp_status_name(rc), err.message);
    }
    rp_lock_free(lock);
    rp_client_free(client);
    return rc == RP_OK ? 0 : 1;
}
