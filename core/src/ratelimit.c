/* Rate limiters: argument checks, keys, and the decision read from the ratelimit script
 * (core/scripts/ratelimit.lua), which does all the deciding on the server's clock. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "op_internal.h"

#define RP_SUBJECT_MAX RP_RATELIMIT_SUBJECT_MAX
#define RP_MULTI_MAX RP_RATELIMIT_MULTI_MAX
#define PATTERN_PREFIX "rl:"
#define PATTERN_PREFIX_LEN 3

struct rp_ratelimit {
    rp_client *client;
    char pattern[RP_RATELIMIT_NAME_MAX + PATTERN_PREFIX_LEN + 1]; /* "rl:<name>" */
    size_t name_len;
    rp_ratelimit_options given;            /* as the caller gave them */
    rp_ratelimit_options o;                /* burst resolved (never 0) */
};

const char *rp_ratelimit_name(const rp_ratelimit *rl, size_t *name_len)
{
    if (name_len)
        *name_len = rl->name_len;
    return rl->pattern + PATTERN_PREFIX_LEN;
}

const rp_ratelimit_options *rp_ratelimit_options_of(const rp_ratelimit *rl) { return &rl->given; }
rp_client *rp_ratelimit_client(const rp_ratelimit *rl) { return rl->client; }

/* The names every frontend uses, NULL-terminated (the descriptors' choices too):
 * algorithm value v is rp_ratelimit__algorithms[v - 1], on_error value v is
 * rp_ratelimit__on_errors[v]. */
const char *const rp_ratelimit__algorithms[] = { "fixed_window", "sliding_log", "sliding_window",
                                                 "token_bucket", "gcra", NULL };
const char *const rp_ratelimit__on_errors[] = { "report", "fail_open", "fail_closed", NULL };

const char *rp_ratelimit_algorithm_name(rp_ratelimit_algorithm a)
{
    return a >= RP_RATELIMIT_FIXED_WINDOW && a <= RP_RATELIMIT_GCRA
               ? rp_ratelimit__algorithms[a - 1] : NULL;
}

const char *rp_ratelimit_on_error_name(rp_ratelimit_on_error p)
{
    return p >= RP_RATELIMIT_REPORT && p <= RP_RATELIMIT_FAIL_CLOSED
               ? rp_ratelimit__on_errors[p] : NULL;
}

/* Index of name in names[first..n), or -1. */
static int find_name(const char *const *names, int first, int n, const char *name, size_t len)
{
    int i;
    for (i = first; name && i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return i;
    return -1;
}

int rp_ratelimit_algorithm_parse(const char *name, size_t len, rp_ratelimit_algorithm *out,
                                 rp_error *err)
{
    int i = find_name(rp_ratelimit__algorithms, 0, 5, name, len);
    if (i < 0)
        return rp_error__set(err, RP_EINVAL, "algorithm must be one of fixed_window, "
                             "sliding_log, sliding_window, token_bucket, gcra (got \"%.*s\")",
                             name ? (int)(len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : len) : 0, name ? name : "");
    *out = (rp_ratelimit_algorithm)(i + 1);
    return RP_OK;
}

int rp_ratelimit_on_error_parse(const char *name, size_t len, rp_ratelimit_on_error *out,
                                rp_error *err)
{
    int i = find_name(rp_ratelimit__on_errors, 0, 3, name, len);
    if (i < 0)
        return rp_error__set(err, RP_EINVAL, "on_error must be one of report, fail_open, "
                             "fail_closed (got \"%.*s\")",
                             name ? (int)(len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : len) : 0, name ? name : "");
    *out = (rp_ratelimit_on_error)i;
    return RP_OK;
}

static int bucket_like(rp_ratelimit_algorithm a)
{
    return a == RP_RATELIMIT_TOKEN_BUCKET || a == RP_RATELIMIT_GCRA;
}

/* Why the bounds (ratelimit.h) are what the script computes exactly. Redis' Lua numbers
 * are doubles (integers exact up to 2^53), redis.call sends a number as "%.17g" (1e17 and
 * up become "1e+17": "value is not an integer"), and an integer reply is the double cast.
 * - Counts: the script adds two counts (used + cost, count + cost, estimate + cost, tokens
 *   against cost): each <= 2^52 keeps every such sum <= 2^53, exact.
 * - Times: the server clock now < 2^42 ms until 2109; the script adds at most two windows
 *   to it (sliding window: the next window's end, a 2-window TTL) or one full-burst refill
 *   (token bucket: the TTL; GCRA: now + interval * burst). Windows and refills <= 2^40 ms
 *   keep every time < 2^43 ms, where a double's step is 2^-10 ms, finer than the clock's
 *   microsecond, and every TTL, retry_after and reset_after an integer <= 2^41, far below
 *   2^53 and what PX / PEXPIRE accept. A count GCRA derives from a time (offset / interval)
 *   is then off by at most refill * 2^-52 <= 2^-12 ms worth of requests: below the clock.
 * - Sliding log: one sorted-set member per unit of cost, all added by one script, which
 *   blocks Redis meanwhile: 2^16 members take ~0.3 s on a loaded 2-core machine, 2^18 ~2 s
 *   (the default command_timeout: the check fails and Redis answers BUSY to everyone). */
#define REFILL_MS_MAX RP_RATELIMIT_WINDOW_MS_MAX

/* Whether burst * window_ms / limit > REFILL_MS_MAX, exactly: the product needs 93 bits,
 * so it is compared as two 64-bit halves (all three are positive and bounded above). */
int rp_ratelimit__refill_too_long(int64_t burst, int64_t window_ms, int64_t limit)
{
    const uint64_t lo32 = 0xffffffffu;
    uint64_t a = (uint64_t)burst, b = (uint64_t)window_ms;
    uint64_t p00 = (a & lo32) * (b & lo32), p01 = (a & lo32) * (b >> 32);
    uint64_t p10 = (a >> 32) * (b & lo32), p11 = (a >> 32) * (b >> 32);
    uint64_t mid = (p00 >> 32) + (p01 & lo32) + (p10 & lo32);
    uint64_t hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), lo = (mid << 32) | (p00 & lo32);
    /* limit * 2^40, REFILL_MS_MAX being 2^40 */
    uint64_t rhi = (uint64_t)limit >> 24, rlo = (uint64_t)limit << 40;
    return hi > rhi || (hi == rhi && lo > rlo);
}

int rp_ratelimit_new(rp_ratelimit **out, rp_client *client, const void *name, size_t len,
                     const rp_ratelimit_options *o, rp_error *err)
{
    rp_ratelimit *rl;
    if (!out || !client || !o)
        return rp_error__set(err, RP_EINVAL, "out, client and options must not be NULL");
    *out = NULL;
    if (!name || len == 0 || len > RP_RATELIMIT_NAME_MAX)
        return rp_error__set(err, RP_EINVAL, "limiter name must be 1..%d bytes (got %zu)",
                             RP_RATELIMIT_NAME_MAX, name ? len : 0);
    /* The name goes into key names as text: a brace would move the hash tag, a NUL end it. */
    if (memchr(name, '{', len) || memchr(name, '}', len))
        return rp_error__set(err, RP_EINVAL, "limiter name must not contain '{' or '}'");
    if (memchr(name, '\0', len))
        return rp_error__set(err, RP_EINVAL, "limiter name must not contain NUL bytes");
    if (!rp_ratelimit_algorithm_name(o->algorithm))
        return rp_error__set(err, RP_EINVAL, "algorithm %d is not a rate limit algorithm", (int)o->algorithm);
    if (o->limit <= 0 || o->limit > RP_RATELIMIT_COUNT_MAX)
        return rp_error__set(err, RP_EINVAL, "limit must be 1..%" PRId64 " (got %" PRId64 ")",
                             RP_RATELIMIT_COUNT_MAX, o->limit);
    if (o->window_ms <= 0 || o->window_ms > RP_RATELIMIT_WINDOW_MS_MAX)
        return rp_error__set(err, RP_EINVAL, "window must be 1..%" PRId64 " ms (got %" PRId64
                             ")", RP_RATELIMIT_WINDOW_MS_MAX, o->window_ms);
    if (o->burst < 0 || o->burst > RP_RATELIMIT_COUNT_MAX ||
        (o->burst > 0 && !bucket_like(o->algorithm)))
        return rp_error__set(err, RP_EINVAL, "burst must be 0..%" PRId64 ", and 0 unless the "
                             "algorithm is token_bucket or gcra (got %" PRId64 ")",
                             RP_RATELIMIT_COUNT_MAX, o->burst);
    if (o->burst > 0 && rp_ratelimit__refill_too_long(o->burst, o->window_ms, o->limit))
        return rp_error__set(err, RP_EINVAL, "burst * window / limit, the time a full burst "
                             "takes to refill, must be <= %" PRId64 " ms (got %" PRId64 " * %"
                             PRId64 " ms / %" PRId64 ")", REFILL_MS_MAX, o->burst,
                             o->window_ms, o->limit);
    if (!rp_ratelimit_on_error_name(o->on_error))
        return rp_error__set(err, RP_EINVAL, "on_error must be report, fail_open or fail_closed");
    rl = rp_alloc__calloc(rp_client__allocator(client), 1, sizeof *rl);
    if (!rl)
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the limiter");
    rl->client = client;
    memcpy(rl->pattern, PATTERN_PREFIX, PATTERN_PREFIX_LEN);
    memcpy(rl->pattern + PATTERN_PREFIX_LEN, name, len);
    rl->pattern[PATTERN_PREFIX_LEN + len] = '\0';
    rl->name_len = len;
    rl->given = *o;
    rl->o = *o;
    if (rl->o.burst == 0)
        rl->o.burst = o->limit;
    *out = rl;
    return RP_OK;
}

void rp_ratelimit_free(rp_ratelimit *rl)
{
    if (rl)
        rp_alloc__free(rp_client__allocator(rl->client), rl);
}

static int64_t capacity(const rp_ratelimit *rl)
{
    return bucket_like(rl->o.algorithm) ? rl->o.burst : rl->o.limit;
}

static int check_subject(const void *subject, size_t len, rp_error *err)
{
    if (!subject || len == 0)
        return rp_error__set(err, RP_EINVAL, "subject must not be empty");
    if (len > RP_SUBJECT_MAX)
        return rp_error__set(err, RP_EINVAL, "subject must be at most %d bytes", RP_SUBJECT_MAX);
    return RP_OK;
}

static int check_cost(const rp_ratelimit *rl, int64_t cost, rp_error *err)
{
    if (cost < 0)
        return rp_error__set(err, RP_EINVAL, "cost must be >= 0 (got %" PRId64 ")", cost);
    if (cost > capacity(rl))
        return rp_error__set(err, RP_EINVAL, "cost %" PRId64 " is above the limit %" PRId64
                             " of limiter %s: it could never be allowed", cost, capacity(rl),
                             rl->pattern + PATTERN_PREFIX_LEN);
    if (rl->o.algorithm == RP_RATELIMIT_SLIDING_LOG && cost > RP_RATELIMIT_LOG_COST_MAX)
        return rp_error__set(err, RP_EINVAL, "cost must be <= %" PRId64 " with sliding_log "
                             "limiter %s, which adds one log entry per unit of cost (got %"
                             PRId64 ")", RP_RATELIMIT_LOG_COST_MAX,
                             rl->pattern + PATTERN_PREFIX_LEN, cost);
    return RP_OK;
}

/* --- one script call: N limits for one subject ---------------------------------------- */

typedef struct check_call {
    size_t nlimits;
    rp_ratelimit *limits[RP_MULTI_MAX];
    rp_ratelimit_on_error policy;
} check_call;

/* Queues the ratelimit script for subject on the op. */
static int queue_check(rp_op *op, const check_call *call, const void *subject, size_t len,
                       int64_t cost)
{
    enum { NUMS = 2 + 4 * RP_MULTI_MAX, KEYS = 2 * RP_MULTI_MAX };
    const char *argv[KEYS + NUMS];
    size_t lens[KEYS + NUMS];
    char nums[NUMS][RP_I64_CHARS];
    size_t numlens[NUMS];
    rp_buf keys[KEYS];
    size_t i, k = 0, a = 0;
    int rc = RP_OK;
    const rp_allocator *al = rp_client__allocator(rp_op__client(op));
    /* Every key and argument costs the server a Lua string per call (the script's time caps
     * a fleet's checks): a single limit sends its sequence key only for a sliding log (its
     * member ids) and its burst only for a bucket whose burst is not its limit (the script
     * reads no other, and takes a burst not sent as the limit); and a single limit's cost,
     * count and algorithm are one argument, the algorithm's letter then the cost unless it
     * is 1 ("f", "t7": ratelimit.lua's ARGV). */
    static const char letters[] = "?flctg";
    char head[1 + RP_I64_CHARS];
    int single = call->nlimits == 1;
    rp_ratelimit_algorithm algo0 = call->limits[0]->o.algorithm;
    size_t nkeys = single && algo0 != RP_RATELIMIT_SLIDING_LOG ? 1 : 2 * call->nlimits;
    int with_burst = !single || (bucket_like(algo0) &&
                                 call->limits[0]->o.burst != call->limits[0]->o.limit);
    memset(keys, 0, sizeof keys);
    for (i = 0; i < call->nlimits && rc == RP_OK; i++) {
        const rp_ratelimit *rl = call->limits[i];
        if (rp_key__build(rl->client, rl->pattern, subject, len, "", &keys[2 * i]) ||
            rp_key__build(rl->client, rl->pattern, subject, len, ":seq", &keys[2 * i + 1]))
            rc = rp_op__fail(op, RP_ENOMEM, "out of memory building keys");
    }
    if (rc == RP_OK) {
        for (i = 0; i < nkeys; i++, k++) {
            argv[k] = keys[i].data;
            lens[k] = keys[i].len;
        }
#define NUM(v) (numlens[a] = rp_fmt__i64(nums[a], (int64_t)(v)), a++)
        if (single) {
            head[0] = letters[algo0];
            argv[k] = head;
            lens[k++] = 1 + (cost == 1 ? 0 : rp_fmt__i64(head + 1, cost));
        } else {
            NUM(cost);
            NUM(call->nlimits);
        }
        for (i = 0; i < call->nlimits; i++) {
            const rp_ratelimit_options *o = &call->limits[i]->o;
            if (!single)
                NUM(o->algorithm);
            NUM(o->limit);
            NUM(o->window_ms);
            if (with_burst)
                NUM(o->burst);
        }
#undef NUM
        for (i = 0; i < a; i++, k++) {
            argv[k] = nums[i];
            lens[k] = numlens[i];
        }
        rc = rp_op__script(op, 0, "ratelimit", (int)nkeys, (int)(k - nkeys), argv, lens);
    }
    for (i = 0; i < KEYS; i++)
        rp_buf__free(al, &keys[i]);
    return rc;
}

static void degraded(rp_ratelimit_decision *d, const check_call *call, int code,
                     const char *why, size_t why_len)
{
    memset(d, 0, sizeof *d);
    d->allowed = call->policy == RP_RATELIMIT_FAIL_OPEN;
    d->limit = capacity(call->limits[0]);
    d->refused_by = -1;
    d->degraded = 1;
    d->error_code = code;
    snprintf(d->error_message, sizeof d->error_message, "%s: %.*s", rp_status_name(code),
             (int)why_len, why); /* snprintf cuts it to fit */
}

/* Checks a ratelimit script reply against its contract (core/scripts/ratelimit.lua):
 * {allowed 0|1, refused-by (0 when allowed, else 1..n), then per limit: limit >= 1,
 * 0 <= remaining <= limit, retry_after >= 0 (0 when allowed), reset_after >= 0}. RP_OK, or
 * RP_EREPLY / RP_EPROTOCOL with why ("expected ..., got ...", naming the field). */
static int check_decision(const check_call *call, const rp_reply *r, char *why, size_t size)
{
    char types[2 + 4 * RP_MULTI_MAX + 1], what[64];
    size_t i, n = 2 + 4 * call->nlimits;
    long long allowed, nl = (long long)call->nlimits;
    int rc;
    memset(types, 'i', n);
    types[n] = '\0';
    if ((rc = rp_reply__is_array(r, types, "a decision", why, size)) ||
        (rc = rp_reply__is_int(r->element[0], "allowed", 0, 1, why, size)))
        return rc;
    allowed = r->element[0]->integer;
    if ((rc = rp_reply__is_int(r->element[1], "the refused-by index", allowed ? 0 : 1,
                               allowed ? 0 : nl, why, size)))
        return rc;
    for (i = 0; i < call->nlimits; i++) {
        const rp_reply *const *e = (const rp_reply *const *)r->element + 2 + 4 * i;
        char f[4][96];
        const char *sfx = what;
        what[0] = '\0';
        if (call->nlimits > 1) /* which limit it was */
            snprintf(what, sizeof what, " of limit %zu", i + 1);
        snprintf(f[0], sizeof f[0], "the limit%s", sfx);
        snprintf(f[1], sizeof f[1], "remaining%s", sfx);
        snprintf(f[2], sizeof f[2], "retry_after%s", sfx);
        snprintf(f[3], sizeof f[3], "reset_after%s", sfx);
        if ((rc = rp_reply__is_int(e[0], f[0], 1, LLONG_MAX, why, size)) ||
            (rc = rp_reply__is_int(e[1], f[1], 0, e[0]->integer, why, size)) ||
            (rc = rp_reply__is_int(e[2], f[2], 0, allowed ? 0 : LLONG_MAX, why, size)) ||
            (rc = rp_reply__is_int(e[3], f[3], 0, LLONG_MAX, why, size)))
            return rc;
    }
    return RP_OK;
}

/* The compact reply of one limit (core/scripts/ratelimit.lua): one integer v, read with
 * what the core sent, L = capacity + 1 and R = window_ms + 2. v >= 0 allowed: remaining
 * v % L, reset_after v / L; v < 0 refused: u = -1 - v, remaining u % L, q = u / L, a fixed
 * window's retry_after = reset_after = q, another's retry_after q % R, reset_after q / R. A
 * table reply costs the server ~1.5 us more per check than an integer (bench/server_cost.py);
 * every v decodes to a decision within the table's ranges (0 <= remaining <= limit, times
 * >= 0, retry_after 0 when allowed), so there is nothing more to check. Fills d. */
static void read_compact(const check_call *call, const rp_reply *r, rp_ratelimit_decision *d)
{
    const rp_ratelimit *rl = call->limits[0];
    long long l = (long long)capacity(rl) + 1, v = r->integer;
    long long u = v >= 0 ? v : -1 - v; /* (no overflow: -1 - LLONG_MIN is LLONG_MAX) */
    long long q = u / l;
    memset(d, 0, sizeof *d);
    d->allowed = v >= 0;
    d->limit = capacity(rl);
    d->remaining = u % l;
    d->refused_by = -1;
    if (d->allowed) {
        d->reset_after_ms = q;
    } else if (rl->o.algorithm == RP_RATELIMIT_FIXED_WINDOW) {
        d->retry_after_ms = d->reset_after_ms = q;
    } else {
        long long rr = (long long)rl->o.window_ms + 2;
        d->retry_after_ms = q % rr;
        d->reset_after_ms = q / rr;
    }
}

/* Reads one script reply into d. Returns RP_OK, or (for policy REPORT) the failure: the
 * node's own (a refused handshake, a timeout, ...) or what was wrong with the reply. */
static int read_decision(rp_op *op, const check_call *call, int node_status,
                         const rp_reply *r, rp_ratelimit_decision *d)
{
    char why[RP_ERROR_MESSAGE_MAX];
    size_t i, pick = 0;
    int code = node_status;
    int compact = code == RP_OK && call->nlimits == 1 && r && r->type == RP_REPLY_INTEGER;
    if (code != RP_OK)
        snprintf(why, sizeof why, "%s", rp_op__node_why(op, 0));
    else if (compact)
        read_compact(call, r, d);
    else
        code = check_decision(call, r, why, sizeof why);
    if (code != RP_OK) {
        if (call->policy != RP_RATELIMIT_REPORT) {
            degraded(d, call, code, why, strlen(why));
            return RP_OK;
        }
        return rp_op__fail(op, code, "%s: %s", rp_op_name(op), why);
    }
    if (compact)
        return RP_OK;
    memset(d, 0, sizeof *d);
    d->allowed = r->element[0]->integer == 1;
    d->refused_by = d->allowed ? -1 : (int)r->element[1]->integer - 1;
    if (!d->allowed)
        pick = (size_t)d->refused_by;
    else
        for (i = 1; i < call->nlimits; i++)
            if (r->element[2 + 4 * i + 1]->integer < r->element[2 + 4 * pick + 1]->integer)
                pick = i;
    d->limit = r->element[2 + 4 * pick]->integer;
    d->remaining = r->element[2 + 4 * pick + 1]->integer;
    d->retry_after_ms = d->allowed ? 0 : r->element[2 + 4 * pick + 2]->integer;
    d->reset_after_ms = r->element[2 + 4 * pick + 3]->integer;
    if (call->nlimits == 1)
        d->refused_by = -1;
    return RP_OK;
}

/* --- check and multi ----------------------------------------------------------------------- */

typedef struct check_state {
    check_call call;
    rp_buf subject;
    int64_t cost;
    int sent;
    rp_ratelimit_decision decision;
} check_state;

static int check_advance(rp_op *op, void *state, uint64_t now_ms)
{
    check_state *s = state;
    int rc;
    (void)now_ms;
    if (rp_op__cancelled(op)) /* never a fail-open decision: the caller gave up */
        return rp_op__fail(op, RP_ECANCELED, s->sent ? "%s: cancelled with its request in "
                           "flight: it may have been counted" : "%s: cancelled", rp_op_name(op));
    if (!s->sent) {
        s->sent = 1;
        return queue_check(op, &s->call, s->subject.data, s->subject.len, s->cost);
    }
    if ((rc = read_decision(op, &s->call, rp_op__node_status(op, 0), rp_op__reply(op, 0, 0),
                            &s->decision)))
        return rc;
    rp_op__done(op);
    return RP_OK;
}

static void check_destroy(rp_op *op, void *state)
{
    rp_buf__free(rp_client__allocator(rp_op__client(op)), &((check_state *)state)->subject);
}

/* Node failures reach advance, so the on_error policy can decide. */
static const rp_op_class check_class = {
    "ratelimit.check", sizeof(check_state), check_advance, check_destroy, 1, NULL, 1, 0, 0, 0
};

static int strictest(rp_ratelimit_on_error a, rp_ratelimit_on_error b)
{
    if (a == RP_RATELIMIT_FAIL_CLOSED || b == RP_RATELIMIT_FAIL_CLOSED)
        return RP_RATELIMIT_FAIL_CLOSED;
    if (a == RP_RATELIMIT_REPORT || b == RP_RATELIMIT_REPORT)
        return RP_RATELIMIT_REPORT;
    return RP_RATELIMIT_FAIL_OPEN;
}

/* One name is one set of keys: a limiter listed twice would be counted two times against the
 * same counter by one script (the second look sees the first's count), so it over-admits. */
int rp_ratelimit__check_distinct(rp_ratelimit *const *limiters, size_t count, const char *arg,
                                 size_t index_base, rp_error *err)
{
    size_t i, j;
    for (i = 1; i < count; i++)
        for (j = 0; j < i; j++)
            if (limiters[i] && limiters[j] && limiters[i]->name_len == limiters[j]->name_len &&
                memcmp(limiters[i]->pattern, limiters[j]->pattern,
                       PATTERN_PREFIX_LEN + limiters[i]->name_len) == 0)
                return rp_error__set(err, RP_EINVAL, "%s[%zu] is the same limiter as %s[%zu] "
                                     "(name \"%.*s\"): one check cannot count it twice", arg,
                                     i + index_base, arg, j + index_base,
                                     (int)(limiters[i]->name_len > RP_ARG_QUOTE_MAX
                                           ? RP_ARG_QUOTE_MAX : limiters[i]->name_len),
                                     limiters[i]->pattern + PATTERN_PREFIX_LEN);
    return RP_OK;
}

int rp_ratelimit_multi_op(rp_op **out, rp_ratelimit *const *limiters, size_t count,
                          const void *subject, size_t subject_len, int64_t cost, rp_error *err)
{
    check_state *s;
    size_t i;
    int rc;
    if (!out || !limiters)
        return rp_error__set(err, RP_EINVAL, "out and limiters must not be NULL");
    *out = NULL;
    if (count == 0 || count > RP_MULTI_MAX)
        return rp_error__set(err, RP_EINVAL, "limits must number 1..%d (got %zu)", RP_MULTI_MAX, count);
    for (i = 0; i < count; i++) {
        if (!limiters[i])
            return rp_error__set(err, RP_EINVAL, "limiters[%zu] is NULL", i);
        if (limiters[i]->client != limiters[0]->client)
            return rp_error__set(err, RP_EINVAL, "limiters of one multi check must share a client");
        if ((rc = check_cost(limiters[i], cost, err)))
            return rc;
    }
    if ((rc = rp_ratelimit__check_distinct(limiters, count, "limiters", 0, err)))
        return rc;
    if ((rc = check_subject(subject, subject_len, err)) ||
        (rc = rp_op__new(out, limiters[0]->client, &check_class, 1, (void **)&s, err)))
        return rc;
    s->call.nlimits = count;
    s->call.policy = limiters[0]->o.on_error;
    for (i = 0; i < count; i++) {
        s->call.limits[i] = limiters[i];
        s->call.policy = (rp_ratelimit_on_error)strictest(s->call.policy, limiters[i]->o.on_error);
    }
    s->cost = cost;
    if (rp_buf__append(rp_client__allocator(limiters[0]->client), &s->subject, subject, subject_len)) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory copying the subject");
    }
    return RP_OK;
}

int rp_ratelimit_check_op(rp_op **out, rp_ratelimit *limiter, const void *subject,
                          size_t subject_len, int64_t cost, rp_error *err)
{
    if (!limiter)
        return rp_error__set(err, RP_EINVAL, "limiter must not be NULL");
    return rp_ratelimit_multi_op(out, &limiter, 1, subject, subject_len, cost, err);
}

static int run_and_read(rp_client *c, rp_op *op, rp_ratelimit_decision *out, rp_error *err)
{
    int rc = rp_client_run(c, op, err);
    if (rc == RP_OK && out)
        rc = rp_ratelimit_check_result(op, out);
    rp_op_free(op);
    return rc;
}

int rp_ratelimit_check(rp_ratelimit *limiter, const void *subject, size_t subject_len,
                       int64_t cost, rp_ratelimit_decision *out, rp_error *err)
{
    rp_op *op;
    int rc = rp_ratelimit_check_op(&op, limiter, subject, subject_len, cost, err);
    return rc ? rc : run_and_read(limiter->client, op, out, err);
}

int rp_ratelimit_multi(rp_ratelimit *const *limiters, size_t count, const void *subject,
                       size_t subject_len, int64_t cost, rp_ratelimit_decision *out,
                       rp_error *err)
{
    rp_op *op;
    int rc = rp_ratelimit_multi_op(&op, limiters, count, subject, subject_len, cost, err);
    return rc ? rc : run_and_read(limiters[0]->client, op, out, err);
}

/* --- reset ---------------------------------------------------------------------------------- */

typedef struct reset_state {
    rp_ratelimit *rl;
    rp_buf subject;
    int sent;
} reset_state;

static int reset_advance(rp_op *op, void *state, uint64_t now_ms)
{
    reset_state *s = state;
    const rp_allocator *a = rp_client__allocator(rp_op__client(op));
    rp_buf key = { NULL, 0, 0 }, seq = { NULL, 0, 0 };
    int rc;
    (void)now_ms;
    if (!s->sent) {
        s->sent = 1;
        if (rp_key__build(s->rl->client, s->rl->pattern, s->subject.data, s->subject.len, "", &key) ||
            rp_key__build(s->rl->client, s->rl->pattern, s->subject.data, s->subject.len, ":seq", &seq)) {
            rc = rp_op__fail(op, RP_ENOMEM, "out of memory building keys");
        } else {
            const char *argv[] = { "UNLINK", key.data, seq.data };
            size_t lens[] = { 6, key.len, seq.len };
            rc = rp_op__command(op, 0, 3, argv, lens);
        }
        rp_buf__free(a, &key);
        rp_buf__free(a, &seq);
        return rc;
    }
    /* UNLINK of the state and sequence keys: how many existed */
    if ((rc = rp_op__expect_int(op, rp_op__reply(op, 0, 0), "the count of keys removed", 0, 2)))
        return rc;
    rp_op__done(op);
    return RP_OK;
}

static void reset_destroy(rp_op *op, void *state)
{
    rp_buf__free(rp_client__allocator(rp_op__client(op)), &((reset_state *)state)->subject);
}

static const rp_op_class reset_class = {
    "ratelimit.reset", sizeof(reset_state), reset_advance, reset_destroy, 0, NULL, 0, 0, 0, 0
};

int rp_ratelimit_reset_op(rp_op **out, rp_ratelimit *limiter, const void *subject,
                          size_t subject_len, rp_error *err)
{
    reset_state *s;
    int rc;
    if (!out || !limiter)
        return rp_error__set(err, RP_EINVAL, "out and limiter must not be NULL");
    *out = NULL;
    if ((rc = check_subject(subject, subject_len, err)) ||
        (rc = rp_op__new(out, limiter->client, &reset_class, 1, (void **)&s, err)))
        return rc;
    s->rl = limiter;
    if (rp_buf__append(rp_client__allocator(limiter->client), &s->subject, subject, subject_len)) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory copying the subject");
    }
    return RP_OK;
}

int rp_ratelimit_reset(rp_ratelimit *limiter, const void *subject, size_t subject_len,
                       rp_error *err)
{
    rp_op *op;
    int rc = rp_ratelimit_reset_op(&op, limiter, subject, subject_len, err);
    if (rc)
        return rc;
    rc = rp_client_run(limiter->client, op, err);
    rp_op_free(op);
    return rc;
}

int rp_ratelimit_check_result(const rp_op *op, rp_ratelimit_decision *out)
{
    const check_state *s = rp_op__done_state(op, &check_class);
    if (!out)
        return RP_EINVAL;
    if (!s)
        return RP_ESTATE;
    *out = s->decision;
    return RP_OK;
}


/* --- batch: one pipelined round trip ---------------------------------------------------- */

typedef struct batch_state {
    check_call call;
    size_t count;
    rp_buf subjects;   /* concatenated */
    size_t *offsets;   /* count + 1 */
    int64_t *costs;
    rp_ratelimit_decision *decisions;
    int sent;
} batch_state;

static int batch_advance(rp_op *op, void *state, uint64_t now_ms)
{
    batch_state *s = state;
    size_t i;
    int rc;
    (void)now_ms;
    if (rp_op__cancelled(op))
        return rp_op__fail(op, RP_ECANCELED, s->sent ? "%s: cancelled with its requests in "
                           "flight: they may have been counted" : "%s: cancelled",
                           rp_op_name(op));
    if (!s->sent) {
        s->sent = 1;
        for (i = 0; i < s->count; i++)
            if ((rc = queue_check(op, &s->call, s->subjects.data + s->offsets[i],
                                  s->offsets[i + 1] - s->offsets[i], s->costs[i])))
                return rc;
        return RP_OK;
    }
    for (i = 0; i < s->count; i++)
        if ((rc = read_decision(op, &s->call, rp_op__node_status(op, 0), rp_op__reply(op, 0, i),
                                &s->decisions[i])))
            return rc;
    rp_op__done(op);
    return RP_OK;
}

static void batch_destroy(rp_op *op, void *state)
{
    batch_state *s = state;
    const rp_allocator *a = rp_client__allocator(rp_op__client(op));
    rp_buf__free(a, &s->subjects);
    rp_alloc__free(a, s->offsets);
    rp_alloc__free(a, s->costs);
    rp_alloc__free(a, s->decisions);
}

static const rp_op_class batch_class = {
    "ratelimit.batch", sizeof(batch_state), batch_advance, batch_destroy, 1, NULL, 1, 0, 0, 0
};

int rp_ratelimit_batch_op(rp_op **out, rp_ratelimit *limiter, size_t count,
                          const void *const *subjects, const size_t *subject_lens,
                          const int64_t *costs, rp_error *err)
{
    batch_state *s;
    const rp_allocator *a;
    size_t i;
    int rc;
    if (!out || !limiter)
        return rp_error__set(err, RP_EINVAL, "out and limiter must not be NULL");
    *out = NULL;
    if (count == 0)
        return rp_error__set(err, RP_EINVAL, "a batch needs at least one subject");
    if (!subjects || !subject_lens)
        return rp_error__set(err, RP_EINVAL, "subjects and subject_lens must not be NULL");
    for (i = 0; i < count; i++) {
        if ((rc = check_subject(subjects[i], subject_lens[i], err)) ||
            (rc = check_cost(limiter, costs ? costs[i] : 1, err))) {
            char msg[RP_ERROR_MESSAGE_MAX];
            if (err) {
                memcpy(msg, err->message, sizeof msg);
                rp_error__set(err, rc, "batch item %zu: %.*s", i, RP_REPLY_QUOTE_MAX, msg);
            }
            return rc;
        }
    }
    if ((rc = rp_op__new(out, limiter->client, &batch_class, 1, (void **)&s, err)))
        return rc;
    a = rp_client__allocator(limiter->client);
    s->call.nlimits = 1;
    s->call.limits[0] = limiter;
    s->call.policy = limiter->o.on_error;
    s->count = count;
    s->offsets = rp_alloc__calloc(a, count + 1, sizeof *s->offsets);
    s->costs = rp_alloc__calloc(a, count, sizeof *s->costs);
    s->decisions = rp_alloc__calloc(a, count, sizeof *s->decisions);
    rc = (s->offsets && s->costs && s->decisions) ? RP_OK : RP_ENOMEM;
    for (i = 0; rc == RP_OK && i < count; i++) {
        s->offsets[i] = s->subjects.len;
        s->costs[i] = costs ? costs[i] : 1;
        rc = rp_buf__append(a, &s->subjects, subjects[i], subject_lens[i]);
    }
    if (rc != RP_OK) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the batch");
    }
    s->offsets[count] = s->subjects.len;
    return RP_OK;
}

int rp_ratelimit_batch_result(const rp_op *op, size_t i, rp_ratelimit_decision *out)
{
    const batch_state *s = rp_op__done_state(op, &batch_class);
    if (!s || !out || i >= s->count)
        return !s ? RP_ESTATE : RP_EINVAL;
    *out = s->decisions[i];
    return RP_OK;
}

size_t rp_ratelimit_batch_count(const rp_op *op)
{
    const batch_state *s = rp_op__done_state(op, &batch_class);
    return s ? s->count : 0;
}

const rp_ratelimit_decision *rp_ratelimit__decision(const rp_op *op, size_t i)
{
    const check_state *c = rp_op__done_state(op, &check_class);
    const batch_state *b;
    if (c)
        return i == 0 ? &c->decision : NULL;
    b = rp_op__done_state(op, &batch_class);
    return b && i < b->count ? &b->decisions[i] : NULL;
}
