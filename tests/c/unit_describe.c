/* Unit tests of the op descriptors: the table's invariants, argument checking and defaults,
 * errors in the user's words (a naming with other names and seconds), and the generic
 * result reader over canned replies. No server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#define CHECK_MSG(err, text)                                                          \
    do {                                                                              \
        checks++;                                                                     \
        if (strcmp((err).message, (text)) != 0) {                                     \
            failures++;                                                               \
            fprintf(stderr, "%s:%d: message \"%s\", wanted \"%s\"\n", __FILE__,       \
                    __LINE__, (err).message, (text));                                 \
        }                                                                             \
    } while (0)

static void test_table(void)
{
    size_t i, j, n = rp_desc_count();
    CHECK(n >= 17);
    for (i = 0; i < n; i++) {
        const rp_op_desc *d = rp_desc_at(i);
        CHECK(d != NULL && rp_desc_find(d->name, strlen(d->name)) == d);
        CHECK(d->nargs <= RP_DESC_ARGS_MAX && d->nfields <= RP_DESC_FIELDS_MAX);
        CHECK((d->makes == RP_KIND_NONE) == (d->begin != NULL));
        CHECK((d->makes != RP_KIND_NONE) == (d->make != NULL));
        CHECK((d->shape != RP_RESULT_NONE) == (d->result != NULL));
        CHECK((d->shape == RP_RESULT_NONE) == (d->nfields == 0));
        CHECK((d->shape == RP_RESULT_LIST) == (d->result_count != NULL));
        CHECK((strchr(d->name, '.') && strcmp(strchr(d->name, '.') + 1, d->verb) == 0) ||
              strcmp(d->name, "fence.check") == 0);
        /* The handle an op acts on is always its first argument. */
        if (d->kind != RP_KIND_NONE)
            CHECK(d->nargs > 0 && (d->args[0].flags & RP_ARG_SELF) && d->args[0].kind == d->kind);
        for (j = 0; j < d->nargs; j++) {
            CHECK(j == 0 || !(d->args[j].flags & RP_ARG_SELF));
            CHECK(d->args[j].doc && d->args[j].doc[0]);
            CHECK(d->args[j].type != RP_TYPE_ENUM || d->args[j].choices);
        }
        for (j = 0; j < d->nfields; j++)
            CHECK(rp_desc_field_index(d, d->fields[j].name) == (int)j);
    }
    CHECK(rp_desc_at(n) == NULL);
    CHECK(rp_desc_find("lock.nope", 9) == NULL);
}

/* Python's words: ttl is "timeout", durations in seconds. */
static const char *python_name(void *ud, const rp_op_desc *d, size_t arg)
{
    (void)ud;
    if (strcmp(d->name, "lock.new") == 0 && strcmp(d->args[arg].name, "ttl") == 0)
        return "timeout";
    if (strcmp(d->name, "lock.acquire") == 0 && strcmp(d->args[arg].name, "retry_max") == 0)
        return "retry_max_s";
    return NULL;
}

static rp_client *offline_client(void) { return unit_client(NULL); }

static void test_lock_args(rp_client *c)
{
    const rp_op_desc *d = rp_desc_find("lock.new", 8);
    rp_naming py = { python_name, NULL, 1, 0 };
    rp_value a[RP_DESC_ARGS_MAX];
    rp_error e;
    void *lock = NULL;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, c);
    CHECK(rp_desc_make(&lock, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "name is required");
    a[1] = rp_value_bytes("", 0);
    CHECK(rp_desc_make(&lock, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "name must not be empty");
    a[1] = rp_value_bytes("r", 1);
    a[2] = rp_value_int(RP_TYPE_MS, -1);
    CHECK(rp_desc_make(&lock, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "ttl must be > 0 ms (got -1)");
    a[2] = rp_value_int(RP_TYPE_MS, -1000);
    CHECK(rp_desc_make(&lock, d, a, &py, &e) == RP_EINVAL);
    CHECK_MSG(e, "timeout must be > 0 seconds (got -1)");
    a[2] = rp_value_bytes("10", 2);
    CHECK(rp_desc_make(&lock, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "ttl must be a duration (got bytes)");
    a[0] = rp_value_handle(RP_KIND_LOCK, c);
    a[2] = rp_value_int(RP_TYPE_MS, 5000);
    CHECK(rp_desc_make(&lock, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "client must be a client (got a lock)");
    CHECK(lock == NULL);
}

static void test_ratelimit_args(rp_client *c)
{
    const rp_op_desc *d = rp_desc_find("ratelimit.new", 13);
    rp_value a[RP_DESC_ARGS_MAX];
    rp_error e;
    void *rl = NULL;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, c);
    a[1] = rp_value_bytes("api", 3);
    a[2] = rp_value_bytes("nope", 4);
    a[3] = rp_value_int(RP_TYPE_INT, 10);
    a[4] = rp_value_int(RP_TYPE_MS, 1000);
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "algorithm must be one of fixed_window, sliding_log, sliding_window, "
                 "token_bucket, gcra (got \"nope\")");
    a[2] = rp_value_bytes("fixed_window", 12);
    a[5] = rp_value_int(RP_TYPE_INT, 3);
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "burst must be 0 unless algorithm is token_bucket or gcra (got 3 with "
                 "fixed_window)");
    a[5] = rp_value_int(RP_TYPE_INT, 0);
    a[3] = rp_value_int(RP_TYPE_INT, (int64_t)1 << 60);
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "limit must be <= 4503599627370496 (got 1152921504606846976)");
    a[3] = rp_value_int(RP_TYPE_INT, 10);
    a[1] = rp_value_bytes("a\0b", 3);
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "NUL") != NULL);
    a[1] = rp_value_bytes("api", 3);
    CHECK(rp_desc_make(&rl, d, a, NULL, &e) == RP_OK && rl != NULL);
    {
        /* One limiter past the most a multi check takes, before any I/O. */
        const rp_op_desc *m = rp_desc_find("ratelimit.multi", 15);
        rp_value items[RP_RATELIMIT_MULTI_MAX + 1], ma[RP_DESC_ARGS_MAX];
        void *more[RP_RATELIMIT_MULTI_MAX];
        char names[RP_RATELIMIT_MULTI_MAX][8];
        rp_op *op = NULL;
        size_t i;
        items[0] = rp_value_handle(RP_KIND_RATELIMIT, rl);
        for (i = 1; i < RP_RATELIMIT_MULTI_MAX + 1; i++) { /* distinct: one name once */
            more[i - 1] = NULL;
            snprintf(names[i - 1], sizeof names[i - 1], "api%zu", i);
            a[1] = rp_value_bytes(names[i - 1], strlen(names[i - 1]));
            CHECK(rp_desc_make(&more[i - 1], d, a, NULL, &e) == RP_OK);
            items[i] = rp_value_handle(RP_KIND_RATELIMIT, more[i - 1]);
        }
        memset(ma, 0, sizeof ma);
        ma[0] = rp_value_list(items, RP_RATELIMIT_MULTI_MAX + 1);
        ma[1] = rp_value_bytes("u", 1);
        CHECK(rp_desc_begin(&op, m, ma, NULL, &e) == RP_EINVAL && op == NULL);
        CHECK_MSG(e, "limiters must have 1..8 items (got 9)");
        ma[0] = rp_value_list(items, RP_RATELIMIT_MULTI_MAX);
        CHECK(rp_desc_begin(&op, m, ma, NULL, &e) == RP_OK && op != NULL);
        CHECK(rp_op_done(op) == 0 && rp_op_result_count(op) == 0);
        rp_op_free(op);
        /* the same limiter twice (or two of one name: the same keys) would be counted
         * twice by one script and over-admit: bad input, before any I/O */
        items[2] = items[0];
        ma[0] = rp_value_list(items, 3);
        CHECK(rp_desc_begin(&op, m, ma, NULL, &e) == RP_EINVAL && op == NULL);
        CHECK_MSG(e, "limiters[2] is the same limiter as limiters[0] (name \"api\"): one "
                     "check cannot count it twice");
        {
            rp_naming lua = { NULL, NULL, 0, 1 }; /* Lua counts items from 1 */
            CHECK(rp_desc_begin(&op, m, ma, &lua, &e) == RP_EINVAL && op == NULL);
            CHECK_MSG(e, "limiters[3] is the same limiter as limiters[1] (name \"api\"): one "
                         "check cannot count it twice");
        }
        {
            rp_ratelimit *direct[2];
            direct[0] = more[0];
            direct[1] = more[0];
            CHECK(rp_ratelimit_multi_op(&op, direct, 2, "u", 1, 1, &e) == RP_EINVAL && op == NULL);
            CHECK_MSG(e, "limiters[1] is the same limiter as limiters[0] (name \"api1\"): one "
                         "check cannot count it twice");
        }
        items[1] = rp_value_handle(RP_KIND_LOCK, rl);
        ma[0] = rp_value_list(items, 2);
        CHECK(rp_desc_begin(&op, m, ma, NULL, &e) == RP_EINVAL);
        CHECK_MSG(e, "limiters[1] must be a rate limiter (got a lock)");
        {
            rp_naming lua = { NULL, NULL, 0, 1 }; /* Lua counts items from 1 */
            CHECK(rp_desc_begin(&op, m, ma, &lua, &e) == RP_EINVAL);
            CHECK_MSG(e, "limiters[2] must be a rate limiter (got a lock)");
        }
        a[1] = rp_value_bytes("api", 3);
        for (i = 0; i < RP_RATELIMIT_MULTI_MAX; i++)
            rp_handle_free(RP_KIND_RATELIMIT, more[i]);
    }
    {
        const rp_op_desc *b = rp_desc_find("ratelimit.batch", 15);
        rp_value subjects[2], costs[1], ba[RP_DESC_ARGS_MAX];
        rp_op *op = NULL;
        subjects[0] = rp_value_bytes("a", 1);
        subjects[1] = rp_value_bytes("b", 1);
        costs[0] = rp_value_int(RP_TYPE_INT, 1);
        memset(ba, 0, sizeof ba);
        ba[0] = rp_value_handle(RP_KIND_RATELIMIT, rl);
        ba[1] = rp_value_list(subjects, 2);
        ba[2] = rp_value_list(costs, 1);
        CHECK(rp_desc_begin(&op, b, ba, NULL, &e) == RP_EINVAL);
        CHECK_MSG(e, "costs must have one item per subjects item (got 1 for 2)");
        ba[1] = rp_value_list(subjects, 0);
        ba[2].type = RP_TYPE_NONE;
        CHECK(rp_desc_begin(&op, b, ba, NULL, &e) == RP_EINVAL);
        CHECK_MSG(e, "subjects must have 1 or more items (got 0)");
        ba[1] = rp_value_list(subjects, 2);
        subjects[1] = rp_value_bytes("", 0);
        ba[2].type = RP_TYPE_NONE;
        CHECK(rp_desc_begin(&op, b, ba, NULL, &e) == RP_EINVAL);
        CHECK_MSG(e, "subjects[1] must not be empty");
    }
    {
        /* ratelimit.info answers from the handle: DONE at the first step, no I/O. */
        const rp_op_desc *info = rp_desc_find("ratelimit.info", 14);
        rp_value ia[RP_DESC_ARGS_MAX], f[RP_DESC_FIELDS_MAX];
        rp_op *op = NULL;
        memset(ia, 0, sizeof ia);
        ia[0] = rp_value_handle(RP_KIND_RATELIMIT, rl);
        CHECK(rp_desc_begin(&op, info, ia, NULL, &e) == RP_OK);
        CHECK(rp_op_step(op, 0) == RP_STEP_DONE && rp_op_result_count(op) == 1);
        CHECK(rp_op_result(op, 0, f) == RP_OK);
        CHECK(f[0].len == 3 && memcmp(f[0].bytes, "api", 3) == 0);
        CHECK(f[1].type == RP_TYPE_ENUM && strcmp(f[1].bytes, "fixed_window") == 0);
        CHECK(f[2].i == 10 && f[3].type == RP_TYPE_MS && f[3].i == 1000);
        CHECK(rp_op_result(op, 1, f) == RP_EINVAL);
        rp_op_free(op);
    }
    rp_handle_free(RP_KIND_RATELIMIT, rl);
}

static void test_acquire_canned(rp_client *c)
{
    rp_value a[RP_DESC_ARGS_MAX], f[RP_DESC_FIELDS_MAX];
    rp_naming py = { python_name, NULL, 1, 0 };
    void *lock = NULL;
    rp_op *op = NULL;
    rp_error e;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, c);
    a[1] = rp_value_bytes("r", 1);
    CHECK(rp_desc_make(&lock, rp_desc_find("lock.new", 8), a, NULL, &e) == RP_OK);
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_LOCK, lock);
    a[2] = rp_value_int(RP_TYPE_MS, 500);
    a[3] = rp_value_int(RP_TYPE_MS, 100);
    CHECK(rp_desc_begin(&op, rp_desc_find("lock.acquire", 12), a, &py, &e) == RP_EINVAL);
    CHECK_MSG(e, "retry_max_s must be >= retry_min (got 0.1 seconds < 0.5 seconds)");
    a[2].type = a[3].type = RP_TYPE_NONE;
    a[4] = rp_value_bytes("tok", 3);
    CHECK(rp_desc_begin(&op, rp_desc_find("lock.acquire", 12), a, NULL, &e) == RP_OK);
    CHECK(rp_op_desc_of(op) == rp_desc_find("lock.acquire", 12));
    CHECK(strcmp(rp_op_name(op), "lock.acquire") == 0);
    CHECK(rp_op_result(op, 0, f) == RP_ESTATE);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(rp_op_feed(op, 0, "$-1\r\n", 5) == RP_OK); /* SET NX GET: nil, it was free */
    CHECK(rp_op_step(op, 1) == RP_STEP_DONE && rp_op_done(op));
    CHECK(rp_op_result_count(op) == 1 && rp_op_result(op, 0, f) == RP_OK);
    CHECK(f[0].type == RP_TYPE_BOOL && f[0].i == 1);
    CHECK(f[1].type == RP_TYPE_INT && f[1].i == 0);
    CHECK(f[2].i == 1);
    rp_op_free(op);
    /* lock.info sees the token the acquire left. */
    CHECK(rp_desc_begin(&op, rp_desc_find("lock.info", 9), a, NULL, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE && rp_op_result(op, 0, f) == RP_OK);
    CHECK(f[3].type == RP_TYPE_BYTES && f[3].len == 3 && memcmp(f[3].bytes, "tok", 3) == 0);
    CHECK(f[1].i == 30000 && f[2].i == 0);
    rp_op_free(op);
    /* release has no result at all, not a made-up one. */
    CHECK(rp_desc_begin(&op, rp_desc_find("lock.release", 12), a, NULL, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO && rp_op_feed(op, 0, ":1\r\n", 4) == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_DONE && rp_op_result_count(op) == 0);
    CHECK(rp_op_result(op, 0, f) == RP_EINVAL);
    rp_op_free(op);
    rp_handle_free(RP_KIND_LOCK, lock);
}

int main(void)
{
    rp_client *c = offline_client();
    test_table();
    test_lock_args(c);
    test_ratelimit_args(c);
    test_acquire_canned(c);
    rp_handle_free(RP_KIND_CLIENT, c);
    printf("unit_describe: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
