/* retry_after is a promise (issue 11, items 10 and 13): for every algorithm, many rounds of
 * exhaust the subject -> sleep the refusal's retry_after -> the next check of the same cost
 * is allowed. Half the rounds (cost 1) take retry_after from a peek (cost 0) instead of the
 * refused check: a peek on an exhausted subject must say refused, with the same promise.
 * Sleeping is "at least" (nanosleep), so a slow machine can only make this easier; a
 * retry_after one millisecond short (fixed_window trusted PTTL, which reads 0 through the
 * key's last millisecond) fails a large share of the rounds. */
#include <stdlib.h>
#include <string.h>

#include "lock_test_util.h"

#define ROUNDS 120
/* most checks one exhaustion may take: the largest burst below plus refill while it runs */
#define EXHAUST_MAX 100

static const char *const names[] = { "", "fixed_window", "sliding_log", "sliding_window",
                                     "token_bucket", "gcra" };

typedef struct {
    rp_ratelimit_algorithm algorithm;
    int64_t limit, window_ms, burst, cost;
} config;

static rp_ratelimit *limiter(rp_client *c, const config *cf, const char *name)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    rp_error e;
    int rc;
    o.algorithm = cf->algorithm;
    o.limit = cf->limit;
    o.window_ms = cf->window_ms;
    o.burst = cf->burst;
    rc = rp_ratelimit_new(&rl, c, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_ratelimit_new: %s", e.message);
    return rl;
}

static void check(rp_ratelimit *rl, int64_t cost, rp_ratelimit_decision *d)
{
    rp_error e;
    int rc = rp_ratelimit_check(rl, "u", 1, cost, d, &e);
    RP_CHECK(rc == RP_OK, "check: %s", e.message);
    RP_CHECK(!d->degraded, "degraded: %s", d->error_message);
}

/* Returns how many of ROUNDS retries were refused. */
static int rounds(rp_client *c, const config *cf, int idx)
{
    char name[32];
    rp_ratelimit *rl;
    int round, refused = 0, short_peeks = 0, zero_retries = 0;
    int64_t longest = 0;
    snprintf(name, sizeof name, "retry%d", idx);
    rl = limiter(c, cf, name);
    for (round = 0; round < ROUNDS; round++) {
        rp_ratelimit_decision d;
        int64_t wait;
        /* a peek answers for cost 1, so the peek rounds exhaust with cost 1 */
        int64_t cost = round % 2 == 1 ? 1 : cf->cost;
        int n = 0, peeked = 0;
        do {
            do { /* exhaust: the first refusal */
                check(rl, cost, &d);
                RP_CHECK(++n <= EXHAUST_MAX, "%s: never refused", names[cf->algorithm]);
            } while (d.allowed);
            if (d.retry_after_ms <= 0)
                zero_retries++; /* refused, yet "retry now" */
            wait = d.retry_after_ms;
            if (round % 2 == 1) { /* the same promise, from a peek */
                rp_ratelimit_decision p;
                check(rl, 0, &p);
                if (!p.allowed) {
                    if (p.retry_after_ms <= 0)
                        zero_retries++;
                    wait = p.retry_after_ms;
                    peeked = 1;
                } else {
                    /* refill since the refusal (a slow machine): legitimate only if a
                     * request now, later still, is allowed too; then exhaust again */
                    check(rl, 1, &d);
                    if (!d.allowed)
                        short_peeks++;
                }
            }
        } while (round % 2 == 1 && !peeked && short_peeks == 0);
        if (wait > longest)
            longest = wait;
        rp_harness_sleep_ms((uint64_t)wait);
        check(rl, cost, &d);
        if (!d.allowed)
            refused++;
    }
    printf("%-15s limit %lld window %lld burst %lld cost %lld (and 1): %d of %d retries after "
           "retry_after refused, %d refusals with retry_after 0, %d peeks said allowed "
           "but a check right after was refused (longest wait %lld ms)\n",
           names[cf->algorithm], (long long)cf->limit, (long long)cf->window_ms,
           (long long)cf->burst, (long long)cf->cost, refused, ROUNDS, zero_retries, short_peeks,
           (long long)longest);
    fflush(stdout);
    rp_ratelimit_free(rl);
    return refused + zero_retries + short_peeks;
}

int main(void)
{
    /* small windows, so many rounds fit; limits that make the float algorithms
     * (sliding window weights, refill rates, emission intervals) land between milliseconds */
    static const config configs[] = {
        { RP_RATELIMIT_FIXED_WINDOW, 1, 15, 0, 1 },
        { RP_RATELIMIT_FIXED_WINDOW, 3, 20, 0, 2 },
        { RP_RATELIMIT_SLIDING_LOG, 1, 15, 0, 1 },
        { RP_RATELIMIT_SLIDING_LOG, 3, 20, 0, 2 },
        { RP_RATELIMIT_SLIDING_WINDOW, 1, 15, 0, 1 },
        { RP_RATELIMIT_SLIDING_WINDOW, 3, 20, 0, 1 },
        { RP_RATELIMIT_SLIDING_WINDOW, 7, 30, 0, 2 },
        { RP_RATELIMIT_TOKEN_BUCKET, 1, 15, 0, 1 },
        { RP_RATELIMIT_TOKEN_BUCKET, 3, 20, 4, 1 },
        { RP_RATELIMIT_TOKEN_BUCKET, 7, 30, 3, 2 },
        { RP_RATELIMIT_GCRA, 1, 15, 0, 1 },
        { RP_RATELIMIT_GCRA, 3, 20, 4, 1 },
        { RP_RATELIMIT_GCRA, 7, 30, 3, 2 },
    };
    rp_hserver srv;
    rp_client *c;
    size_t i;
    int bad = 0;
    rp_harness_watchdog(300);
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "start redis-server");
    c = lt_client(srv.url, 5000);
    for (i = 0; i < sizeof configs / sizeof configs[0]; i++)
        bad += rounds(c, &configs[i], (int)i);
    rp_client_free(c);
    rp_hserver_destroy(&srv);
    RP_CHECK(bad == 0, "%d rounds broke the retry_after promise", bad);
    printf("test_ratelimit_retry: ok\n");
    return 0;
}
