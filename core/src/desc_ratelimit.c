/* Descriptors of the rate limit ops (ratelimit.new ... ratelimit.info), over the typed API
 * in ratelimit.h. */
#include <inttypes.h>
#include <string.h>

#include "desc_internal.h"

#define N(a) (sizeof a / sizeof a[0])
#define SELF_LIMITER { "limiter", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_RATELIMIT, \
                       RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, "the limiter" }
#define SUBJECT { "subject", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, \
                  RP_RATELIMIT_SUBJECT_MAX, 0, 0, NULL, "who is limited (a user id, an IP, ...)" }
#define COST { "cost", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, 0, 1, 0, RP_RATELIMIT_COUNT_MAX, \
               0, 0, NULL, "how much the request consumes (0: peek without consuming; sliding_log: " \
               "at most 65536, one log entry each)" }

/* The names ratelimit.c parses: choice i is algorithm value i + 1, on_error value i. */
#define ALGORITHM_GCRA_INDEX (RP_RATELIMIT_GCRA - 1)

/* --- ratelimit.new ------------------------------------------------------------------ */

enum { NEW_NAME = 1, NEW_ALGORITHM, NEW_LIMIT, NEW_WINDOW, NEW_BURST, NEW_ON_ERROR };

static const rp_arg_desc new_args[] = {
    { "client", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CLIENT, RP_ARG_SELF | RP_ARG_REQUIRED, 0,
      0, 0, 0, 0, NULL, "the client the limiter is made from" },
    { "name", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_RATELIMIT_NAME_MAX, 0, 0, NULL, "keeps limiters apart in Redis (no '{', '}' or NUL)" },
    { "algorithm", RP_TYPE_ENUM, RP_TYPE_NONE, RP_KIND_NONE, 0, ALGORITHM_GCRA_INDEX, 0, 0, 0, 0,
      rp_ratelimit__algorithms, "how requests are counted (see ratelimit.h for which to choose)" },
    { "limit", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_RATELIMIT_COUNT_MAX, 0, 0, NULL,
      "requests allowed per window (the sustained rate)" },
    { "window", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_RATELIMIT_WINDOW_MS_MAX, 0, 0, NULL, "the window the limit applies to" },
    { "burst", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_RATELIMIT_COUNT_MAX, 0, 0,
      NULL, "token_bucket and gcra: most requests at once (0: the limit); burst * window / "
      "limit, a full burst's refill, at most 2^40 ms" },
    { "on_error", RP_TYPE_ENUM, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, 0, 0, 0,
      rp_ratelimit__on_errors,
      "what a check answers when Redis fails: raise, or allow / refuse marked degraded" },
};

static int limiter_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__ratelimit_ops[0];
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    o.algorithm = (rp_ratelimit_algorithm)(a[NEW_ALGORITHM].i + 1);
    o.limit = a[NEW_LIMIT].i;
    o.window_ms = a[NEW_WINDOW].i;
    o.burst = a[NEW_BURST].i;
    o.on_error = (rp_ratelimit_on_error)a[NEW_ON_ERROR].i;
    if (o.burst > 0 && o.algorithm != RP_RATELIMIT_TOKEN_BUCKET &&
        o.algorithm != RP_RATELIMIT_GCRA)
        return rp_error__set(err, RP_EINVAL, "%s must be 0 unless %s is token_bucket or gcra "
                             "(got %" PRId64 " with %s)", rp_desc__arg_name(nm, d, NEW_BURST),
                             rp_desc__arg_name(nm, d, NEW_ALGORITHM), o.burst,
                             rp_ratelimit__algorithms[a[NEW_ALGORITHM].i]);
    /* the bound across arguments (ratelimit.c says why), named and in units as given */
    if (o.burst > 0 && rp_ratelimit__refill_too_long(o.burst, o.window_ms, o.limit)) {
        char most[RP_DESC_DURATION_CHARS], window[RP_DESC_DURATION_CHARS];
        return rp_error__set(err, RP_EINVAL, "%s * %s / %s, the time a full burst takes to "
                             "refill, must be <= %s (got %" PRId64 " * %s / %" PRId64 ")",
                             rp_desc__arg_name(nm, d, NEW_BURST),
                             rp_desc__arg_name(nm, d, NEW_WINDOW),
                             rp_desc__arg_name(nm, d, NEW_LIMIT),
                             rp_desc__duration(nm, RP_RATELIMIT_WINDOW_MS_MAX, most), o.burst,
                             rp_desc__duration(nm, o.window_ms, window), o.limit);
    }
    return rp_ratelimit_new((rp_ratelimit **)out, a[0].handle, a[NEW_NAME].bytes,
                            a[NEW_NAME].len, &o, err);
}

/* --- decisions ---------------------------------------------------------------------- */

static const rp_field_desc decision_fields[] = {
    { "allowed", RP_TYPE_BOOL, "the request is allowed (and its cost consumed)" },
    { "limit", RP_TYPE_INT, "the limit that decided (the burst for token_bucket and gcra)" },
    { "remaining", RP_TYPE_INT, "requests of cost 1 still allowed now" },
    { "retry_after", RP_TYPE_MS, "0 when allowed; else when this request would be allowed (a "
      "peek, cost 0, answers for a request of cost 1)" },
    { "reset_after", RP_TYPE_MS, "until the limiter is back to its full allowance" },
    { "refused_by", RP_TYPE_INT, "multi-limit: the index of the limit that refused; else -1" },
    { "degraded", RP_TYPE_BOOL, "Redis failed and the on_error policy decided" },
    { "error", RP_TYPE_STATUS, "degraded: how Redis failed; else ok" },
};

static int decision_result(const rp_op *op, size_t index, rp_value *f)
{
    const rp_ratelimit_decision *d = rp_ratelimit__decision(op, index);
    if (!d)
        return RP_ESTATE;
    f[0] = rp_desc__bool(d->allowed);
    f[1] = rp_value_int(RP_TYPE_INT, d->limit);
    f[2] = rp_value_int(RP_TYPE_INT, d->remaining);
    f[3] = rp_value_int(RP_TYPE_MS, d->retry_after_ms);
    f[4] = rp_value_int(RP_TYPE_MS, d->reset_after_ms);
    f[5] = rp_value_int(RP_TYPE_INT, d->refused_by);
    f[6] = rp_desc__bool(d->degraded);
    if (d->degraded)
        f[7] = rp_desc__status(d->error_code != RP_OK ? d->error_code : RP_ETRANSPORT,
                               d->error_message[0] ? d->error_message
                                                   : rp_status_name(d->error_code));
    else
        f[7] = rp_desc__status(RP_OK, "");
    return RP_OK;
}

static size_t batch_count(const rp_op *op) { return rp_ratelimit_batch_count(op); }

/* --- check, multi, batch, reset ----------------------------------------------------- */

static const rp_arg_desc check_args[] = { SELF_LIMITER, SUBJECT, COST };

static int check_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_ratelimit_check_op(out, a[0].handle, a[1].bytes, a[1].len, a[2].i, err);
}

static const rp_arg_desc multi_args[] = {
    { "limiters", RP_TYPE_LIST, RP_TYPE_HANDLE, RP_KIND_RATELIMIT, RP_ARG_SELF | RP_ARG_REQUIRED,
      0, 1, RP_RATELIMIT_MULTI_MAX, 0, 0, NULL, "the limits, all of one client" },
    SUBJECT,
    COST,
};

enum { MULTI_DESC = 2 }; /* ratelimit.multi's index in rp_desc__ratelimit_ops */

static int multi_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    rp_ratelimit *limiters[RP_RATELIMIT_MULTI_MAX];
    size_t i;
    int rc;
    for (i = 0; i < a[0].count; i++)
        limiters[i] = a[0].items[i].handle;
    /* named here as the user's language names the list and counts its items */
    if ((rc = rp_ratelimit__check_distinct(limiters, a[0].count,
                                           rp_desc__arg_name(nm, &rp_desc__ratelimit_ops[MULTI_DESC], 0),
                                           nm && nm->index_base > 0 ? (size_t)nm->index_base : 0,
                                           err)))
        return rc;
    return rp_ratelimit_multi_op(out, limiters, a[0].count, a[1].bytes, a[1].len, a[2].i, err);
}

enum { BATCH_SUBJECTS = 1, BATCH_COSTS };

static const rp_arg_desc batch_args[] = {
    SELF_LIMITER,
    { "subjects", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, INT64_MAX,
      1, RP_RATELIMIT_SUBJECT_MAX, NULL, "the subjects, one check each" },
    { "costs", RP_TYPE_LIST, RP_TYPE_INT, RP_KIND_NONE, 0, 0, 1, INT64_MAX, 0,
      RP_RATELIMIT_COUNT_MAX, NULL, "one cost per subject (absent: all 1; sliding_log: each at "
      "most 65536)" },
};

static int batch_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__ratelimit_ops[3];
    const rp_allocator *al = rp_client__allocator(rp_ratelimit_client(a[0].handle));
    size_t i, n = a[BATCH_SUBJECTS].count;
    int has_costs = a[BATCH_COSTS].type == RP_TYPE_LIST;
    const void **subjects;
    size_t *lens;
    int64_t *costs = NULL;
    int rc = RP_OK;
    if (has_costs && a[BATCH_COSTS].count != n)
        return rp_error__set(err, RP_EINVAL, "%s must have one item per %s item (got %zu for %zu)",
                             rp_desc__arg_name(nm, d, BATCH_COSTS),
                             rp_desc__arg_name(nm, d, BATCH_SUBJECTS), a[BATCH_COSTS].count, n);
    subjects = rp_alloc__calloc(al, n, sizeof *subjects);
    lens = rp_alloc__calloc(al, n, sizeof *lens);
    if (has_costs)
        costs = rp_alloc__calloc(al, n, sizeof *costs);
    if (!subjects || !lens || (has_costs && !costs))
        rc = rp_error__set(err, RP_ENOMEM, "out of memory for the batch");
    for (i = 0; rc == RP_OK && i < n; i++) {
        subjects[i] = a[BATCH_SUBJECTS].items[i].bytes;
        lens[i] = a[BATCH_SUBJECTS].items[i].len;
        if (costs)
            costs[i] = a[BATCH_COSTS].items[i].i;
    }
    if (rc == RP_OK)
        rc = rp_ratelimit_batch_op(out, a[0].handle, n, subjects, lens, costs, err);
    rp_alloc__free(al, subjects);
    rp_alloc__free(al, lens);
    rp_alloc__free(al, costs);
    return rc;
}

static const rp_arg_desc reset_args[] = { SELF_LIMITER, SUBJECT };

static int reset_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_ratelimit_reset_op(out, a[0].handle, a[1].bytes, a[1].len, err);
}

/* --- ratelimit.info: the limiter's settings, no I/O ---------------------------------- */

static const rp_arg_desc self_args[] = { SELF_LIMITER };

static const rp_field_desc info_fields[] = {
    { "name", RP_TYPE_BYTES, "the limiter's name" },
    { "algorithm", RP_TYPE_ENUM, "its algorithm" },
    { "limit", RP_TYPE_INT, "requests per window" },
    { "window", RP_TYPE_MS, "the window" },
    { "burst", RP_TYPE_INT, "the burst as given (0: the limit)" },
    { "on_error", RP_TYPE_ENUM, "its policy when Redis fails" },
};

static int info_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_desc__local_op(out, rp_ratelimit_client(a[0].handle), a[0].handle, err);
}

static int info_result(const rp_op *op, size_t index, rp_value *f)
{
    const rp_ratelimit *rl = rp_desc__local_handle(op);
    const rp_ratelimit_options *o;
    const char *name;
    size_t len;
    (void)index;
    if (!rl)
        return RP_ESTATE;
    o = rp_ratelimit_options_of(rl);
    name = rp_ratelimit_name(rl, &len);
    f[0] = rp_value_bytes(name, len);
    f[1] = rp_desc__enum((int64_t)o->algorithm - 1, rp_ratelimit__algorithms);
    f[2] = rp_value_int(RP_TYPE_INT, o->limit);
    f[3] = rp_value_int(RP_TYPE_MS, o->window_ms);
    f[4] = rp_value_int(RP_TYPE_INT, o->burst);
    f[5] = rp_desc__enum((int64_t)o->on_error, rp_ratelimit__on_errors);
    return RP_OK;
}

/* The order matters to limiter_make (index 0) and batch_begin (index 3). */
const rp_op_desc rp_desc__ratelimit_ops[] = {
    { "ratelimit.new", "new", RP_KIND_CLIENT, RP_KIND_RATELIMIT, 0, new_args, N(new_args),
      RP_RESULT_NONE, NULL, 0, "a rate limiter (no I/O)", NULL, limiter_make, NULL, NULL, RP_DESC_PLAIN },
    { "ratelimit.check", "check", RP_KIND_RATELIMIT, RP_KIND_NONE, 1, check_args,
      N(check_args), RP_RESULT_RECORD, decision_fields, N(decision_fields),
      "checks (and, when allowed, consumes cost for) subject: one script, one round trip",
      check_begin, NULL, NULL, decision_result, RP_DESC_PLAIN },
    { "ratelimit.multi", "multi", RP_KIND_RATELIMIT, RP_KIND_NONE, 1, multi_args,
      N(multi_args), RP_RESULT_RECORD, decision_fields, N(decision_fields),
      "all-or-nothing check of subject against every limiter; a refusal consumes nothing",
      multi_begin, NULL, NULL, decision_result, RP_DESC_PLAIN },
    { "ratelimit.batch", "batch", RP_KIND_RATELIMIT, RP_KIND_NONE, 1, batch_args,
      N(batch_args), RP_RESULT_LIST, decision_fields, N(decision_fields),
      "many subjects in one pipelined round trip; each decided on its own",
      batch_begin, NULL, batch_count, decision_result, RP_DESC_PLAIN },
    { "ratelimit.reset", "reset", RP_KIND_RATELIMIT, RP_KIND_NONE, 1, reset_args,
      N(reset_args), RP_RESULT_NONE, NULL, 0, "forgets everything the limiter knows about subject",
      reset_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "ratelimit.info", "info", RP_KIND_RATELIMIT, RP_KIND_NONE, 0, self_args, N(self_args),
      RP_RESULT_RECORD, info_fields, N(info_fields), "the limiter's settings (no I/O)",
      info_begin, NULL, NULL, info_result, RP_DESC_PLAIN },
};

const size_t rp_desc__ratelimit_count = N(rp_desc__ratelimit_ops);
