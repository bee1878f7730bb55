/* The README's rate limiter example, as a program: ratelimit_example URL
 * Sends 25 requests for one user against 100/minute with bursts of 20 and prints the
 * decisions that matter. */
#include <stdio.h>

#include <redpat/redpat.h>

int main(int argc, char **argv)
{
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_ratelimit_options ro = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit_decision d;
    rp_ratelimit *api;
    rp_client *client;
    rp_error err;
    int i, allowed = 0;

    co.url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
    co.key_namespace = "myapp";
    if (rp_client_new(&client, &co, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    ro.algorithm = RP_RATELIMIT_GCRA;
    ro.limit = 100;                       /* 100 requests ... */
    ro.window_ms = 60000;                 /* ... per minute */
    ro.burst = 20;                        /* at most 20 at once */
    ro.on_error = RP_RATELIMIT_FAIL_OPEN; /* Redis down: allow, marked degraded */
    if (rp_ratelimit_new(&api, client, "api", 3, &ro, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        rp_client_free(client);
        return 1;
    }
    for (i = 1; i <= 25; i++) {
        if (rp_ratelimit_check(api, "user:42", 7, 1, &d, &err) != RP_OK) {
            fprintf(stderr, "check failed: %s\n", err.message);
            break;
        }
        allowed += d.allowed;
        if (!d.allowed) {
            printf("request %d: 429, retry in %lld ms (limit %lld, remaining %lld)\n", i,
                   (long long)d.retry_after_ms, (long long)d.limit, (long long)d.remaining);
            break;
        }
    }
    printf("%d requests allowed in a burst before the limiter refused\n", allowed);
    rp_ratelimit_free(api);
    rp_client_free(client);
    return allowed == 20 ? 0 : 1;
}
