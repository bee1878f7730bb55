/* The rate limiters' numeric bounds (issue 11, item 11): every number passes validation only
 * when the script computes with it exactly (ratelimit.c says why), checked through the C API
 * (milliseconds, C names) and the descriptors (a frontend's names and units), no server. */
#include "unit_util.h"

#define COUNT_MAX RP_RATELIMIT_COUNT_MAX
#define WINDOW_MAX RP_RATELIMIT_WINDOW_MS_MAX

#define CHECK_MSG(e, text)                                                                  \
    do {                                                                                    \
        CHECK(strcmp((e).message, (text)) == 0);                                            \
        if (strcmp((e).message, (text)) != 0)                                               \
            fprintf(stderr, "%s:%d: message \"%s\", wanted \"%s\"\n", __FILE__, __LINE__,   \
                    (e).message, (text));                                                   \
    } while (0)

static int make(rp_client *c, rp_ratelimit_algorithm algo, int64_t limit, int64_t window,
                int64_t burst, rp_error *e)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    int rc;
    o.algorithm = algo;
    o.limit = limit;
    o.window_ms = window;
    o.burst = burst;
    rc = rp_ratelimit_new(&rl, c, "b", 1, &o, e);
    CHECK((rc == RP_OK) == (rl != NULL));
    rp_ratelimit_free(rl);
    return rc;
}

static void c_api(rp_client *c)
{
    rp_error e;
    rp_ratelimit_algorithm a;
    for (a = RP_RATELIMIT_FIXED_WINDOW; a <= RP_RATELIMIT_GCRA; a++) {
        CHECK(make(c, a, COUNT_MAX, WINDOW_MAX, 0, &e) == RP_OK);
        CHECK(make(c, a, COUNT_MAX + 1, 1000, 0, &e) == RP_EINVAL);
        CHECK(make(c, a, 10, WINDOW_MAX + 1, 0, &e) == RP_EINVAL);
        CHECK_MSG(e, "window must be 1..1099511627776 ms (got 1099511627777)");
    }
    CHECK(make(c, RP_RATELIMIT_FIXED_WINDOW, COUNT_MAX + 1, 1000, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "limit must be 1..4503599627370496 (got 4503599627370497)");
    CHECK(make(c, RP_RATELIMIT_GCRA, COUNT_MAX, WINDOW_MAX, COUNT_MAX + 1, &e) == RP_EINVAL);
    CHECK_MSG(e, "burst must be 0..4503599627370496, and 0 unless the algorithm is token_bucket "
                 "or gcra (got 4503599627370497)");
    /* a full burst's refill: 3 * 733007751850 / 2 = 2^40 - 1, one ms more is 2^40 + 0.5 */
    CHECK(make(c, RP_RATELIMIT_TOKEN_BUCKET, 2, 733007751850, 3, &e) == RP_OK);
    CHECK(make(c, RP_RATELIMIT_TOKEN_BUCKET, 2, 733007751851, 3, &e) == RP_EINVAL);
    CHECK_MSG(e, "burst * window / limit, the time a full burst takes to refill, must be <= "
                 "1099511627776 ms (got 3 * 733007751851 ms / 2)");
    CHECK(make(c, RP_RATELIMIT_GCRA, 1048576, 256, COUNT_MAX, &e) == RP_OK);
    CHECK(make(c, RP_RATELIMIT_GCRA, 1048575, 256, COUNT_MAX, &e) == RP_EINVAL);
    CHECK(make(c, RP_RATELIMIT_GCRA, 1, WINDOW_MAX, 1, &e) == RP_OK);
    CHECK(make(c, RP_RATELIMIT_GCRA, 1, WINDOW_MAX, 2, &e) == RP_EINVAL);
}

/* The product compared exactly, where doubles would round: 2^52 * 2^40 against limit * 2^40. */
static void refill_exact(void)
{
    CHECK(!rp_ratelimit__refill_too_long(COUNT_MAX, WINDOW_MAX, COUNT_MAX));
    CHECK(rp_ratelimit__refill_too_long(COUNT_MAX, WINDOW_MAX, COUNT_MAX - 1));
    CHECK(!rp_ratelimit__refill_too_long(COUNT_MAX - 1, WINDOW_MAX, COUNT_MAX - 1));
    /* 2^52 * (2^40 - 1) = (2^52 - 4096) * 2^40 exactly */
    CHECK(!rp_ratelimit__refill_too_long(COUNT_MAX, WINDOW_MAX - 1, COUNT_MAX - 4096));
    CHECK(rp_ratelimit__refill_too_long(COUNT_MAX, WINDOW_MAX - 1, COUNT_MAX - 4097));
    CHECK(!rp_ratelimit__refill_too_long(1, WINDOW_MAX, 1));
    CHECK(rp_ratelimit__refill_too_long(2, WINDOW_MAX, 1));
    CHECK(!rp_ratelimit__refill_too_long(3, 733007751850, 2));
    CHECK(rp_ratelimit__refill_too_long(3, 733007751851, 2));
}

/* A frontend that counts in seconds (Python) hears the bounds in seconds, under its names. */
static const char *py_name(void *ud, const rp_op_desc *d, size_t i)
{
    (void)ud;
    return d->args[i].name;
}

static void described(rp_client *c)
{
    const rp_op_desc *d = rp_desc_find("ratelimit.new", 13);
    rp_naming seconds = { py_name, NULL, 1, 0 };
    rp_value a[RP_DESC_ARGS_MAX];
    void *rl = NULL;
    rp_error e;
    CHECK(d != NULL);
    if (!d)
        return;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, c);
    a[1] = rp_value_bytes("b", 1);
    a[2] = rp_value_bytes("gcra", 4);
    a[3] = rp_value_int(RP_TYPE_INT, 2);
    a[4] = rp_value_int(RP_TYPE_MS, WINDOW_MAX + 1);
    CHECK(rp_desc_make(&rl, d, a, &seconds, &e) == RP_EINVAL);
    CHECK_MSG(e, "window must be <= 1099511627.776 seconds (got 1099511627.777)");
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "window must be <= 1099511627776 ms (got 1099511627777)");
    a[4] = rp_value_int(RP_TYPE_MS, 733007751851);
    a[5] = rp_value_int(RP_TYPE_INT, 3);
    CHECK(rp_desc_make(&rl, d, a, &seconds, &e) == RP_EINVAL);
    CHECK_MSG(e, "burst * window / limit, the time a full burst takes to refill, must be <= "
                 "1099511627.776 seconds (got 3 * 733007751.851 seconds / 2)");
    a[3] = rp_value_int(RP_TYPE_INT, COUNT_MAX + 1);
    a[4] = rp_value_int(RP_TYPE_MS, 1000);
    a[5] = rp_value_int(RP_TYPE_INT, 0);
    CHECK(rp_desc_make(&rl, d, a, &seconds, &e) == RP_EINVAL);
    CHECK_MSG(e, "limit must be <= 4503599627370496 (got 4503599627370497)");
    a[2] = rp_value_bytes("gcra", 4);
    a[3] = rp_value_int(RP_TYPE_INT, COUNT_MAX);
    a[4] = rp_value_int(RP_TYPE_MS, WINDOW_MAX);
    a[5] = rp_value_int(RP_TYPE_INT, COUNT_MAX);
    CHECK(rp_desc_make(&rl, d, a, &seconds, &e) == RP_OK && rl != NULL);
    rp_ratelimit_free(rl);
}

/* A sliding log adds one entry per unit of cost in one script: a cost past 2^16 is refused
 * (checked before any I/O: the client has no connection). */
static void log_cost(rp_client *c)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL, *fw = NULL, *both[2];
    rp_op *op = NULL;
    int64_t costs[2] = { 1, RP_RATELIMIT_LOG_COST_MAX + 1 };
    const void *subjects[2] = { "u", "v" };
    size_t lens[2] = { 1, 1 };
    rp_error e;
    o.algorithm = RP_RATELIMIT_SLIDING_LOG;
    o.limit = COUNT_MAX;
    o.window_ms = WINDOW_MAX;
    CHECK(rp_ratelimit_new(&rl, c, "log", 3, &o, &e) == RP_OK);
    o.algorithm = RP_RATELIMIT_FIXED_WINDOW;
    CHECK(rp_ratelimit_new(&fw, c, "fw", 2, &o, &e) == RP_OK);
    if (!rl || !fw)
        return;
    CHECK(rp_ratelimit_check_op(&op, rl, "u", 1, RP_RATELIMIT_LOG_COST_MAX, &e) == RP_OK);
    rp_op_free(op);
    op = NULL;
    CHECK(rp_ratelimit_check_op(&op, rl, "u", 1, RP_RATELIMIT_LOG_COST_MAX + 1, &e) == RP_EINVAL);
    CHECK_MSG(e, "cost must be <= 65536 with sliding_log limiter log, which adds one log "
                 "entry per unit of cost (got 65537)");
    CHECK(rp_ratelimit_check_op(&op, fw, "u", 1, RP_RATELIMIT_LOG_COST_MAX + 1, &e) == RP_OK);
    rp_op_free(op);
    op = NULL;
    both[0] = fw;
    both[1] = rl;
    CHECK(rp_ratelimit_multi_op(&op, both, 2, "u", 1, RP_RATELIMIT_LOG_COST_MAX + 1, &e) ==
          RP_EINVAL);
    CHECK(rp_ratelimit_batch_op(&op, rl, 2, subjects, lens, costs, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "batch item 1: cost must be <= 65536") == e.message);
    CHECK(op == NULL);
    rp_ratelimit_free(rl);
    rp_ratelimit_free(fw);
}

int main(void)
{
    rp_client *c = unit_client(NULL);
    c_api(c);
    refill_exact();
    described(c);
    log_cost(c);
    rp_client_free(c);
    printf("unit_ratelimit_bounds: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
