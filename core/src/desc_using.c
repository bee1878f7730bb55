/* Descriptors of lock.using and lock.renewal, over lock_using.h. */
#include <string.h>

#include "desc_internal.h"
#include "redpat/lock_using.h"

#define SELF_LOCK { "lock", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_LOCK, \
                    RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, "the lock" }
#define N(a) (sizeof a / sizeof a[0])

/* --- lock.using ---------------------------------------------------------------------- */

/* USING_FN must stay 1: lock_using.c CALLs that argument. */
enum { USING_FN = 1, USING_WAIT, USING_RETRY_MIN, USING_RETRY_MAX, USING_MAX_HOLD, USING_RENEW };

static const rp_arg_desc using_args[] = {
    SELF_LOCK,
    { "fn", RP_TYPE_CALLBACK, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL,
      "the function to run while holding the lock (called with no arguments)" },
    { "wait", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_WAIT_FOREVER, 0, 0, NULL,
      "0: try once; else retry the acquire while the next attempt comes within this long" },
    { "retry_min", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_RETRY_MIN_MS_DEFAULT, 1,
      RP_DESC_EXACT_MAX, 0, 0, NULL, "first retry delay of the acquire (as lock.acquire)" },
    { "retry_max", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_RETRY_MAX_MS_DEFAULT, 1,
      RP_DESC_EXACT_MAX, 0, 0, NULL, "longest retry delay of the acquire (>= retry_min)" },
    { "max_hold", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_DESC_EXACT_MAX, 0, 0, NULL,
      "renew for at most this long after the acquire (0: no cap); past it the lock expires" },
    { "renew", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 1, 0, 1, 0, 0, NULL,
      "renew the lock every ttl/3 while the function runs" },
};

static const rp_field_desc using_fields[] = {
    { "acquired", RP_TYPE_BOOL, "the lock was taken and the function ran (false: busy until "
      "the wait ran out; the function never ran)" },
    { "renewals", RP_TYPE_INT, "how many times the lock was renewed while the function ran" },
    { "fence", RP_TYPE_INT, "fenced locks: the acquire's fencing token, else 0" },
};

static int using_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__using_ops[0];
    rp_lock_using_options o = RP_LOCK_USING_OPTIONS_INIT;
    char lo[RP_DESC_DURATION_CHARS], hi[RP_DESC_DURATION_CHARS];
    o.acquire.wait_ms = a[USING_WAIT].i;
    o.acquire.retry_min_ms = a[USING_RETRY_MIN].i;
    o.acquire.retry_max_ms = a[USING_RETRY_MAX].i;
    o.max_hold_ms = a[USING_MAX_HOLD].i;
    o.renew = (int)a[USING_RENEW].i;
    if (o.acquire.retry_max_ms < o.acquire.retry_min_ms)
        return rp_error__set(err, RP_EINVAL, "%s must be >= %s (got %s < %s)",
                             rp_desc__arg_name(nm, d, USING_RETRY_MAX),
                             rp_desc__arg_name(nm, d, USING_RETRY_MIN),
                             rp_desc__duration(nm, o.acquire.retry_max_ms, hi),
                             rp_desc__duration(nm, o.acquire.retry_min_ms, lo));
    return rp_lock_using_op(out, a[0].handle, &o, err);
}

static int using_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_lock_using_result r;
    int rc = rp_lock_using_result_of(op, &r);
    (void)index;
    if (rc == RP_OK) {
        f[0] = rp_desc__bool(r.acquired);
        f[1] = rp_value_int(RP_TYPE_INT, r.renewals);
        f[2] = rp_value_int(RP_TYPE_INT, r.fence);
    }
    return rc;
}

/* --- lock.renewal -------------------------------------------------------------------- */

static const rp_arg_desc renewal_args[] = {
    SELF_LOCK,
    { "max_hold", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_DESC_EXACT_MAX, 0, 0, NULL,
      "renew for at most this long after the acquire (0: no cap)" },
};

static const rp_field_desc renewal_fields[] = {
    { "renew", RP_TYPE_BOOL, "false: stop renewing (not held, or the hold cap is reached)" },
    { "delay", RP_TYPE_MS, "wait this long, then renew" },
    { "ttl", RP_TYPE_MS, "extend with replace to this TTL" },
};

/* The plan is made when the op is begun (no I/O: it is DONE at its first step). */
typedef struct renewal_state {
    rp_lock_renewal plan;
} renewal_state;

static int renewal_advance(rp_op *op, void *state, uint64_t now_ms)
{
    (void)state;
    (void)now_ms;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class renewal_class = {
    "lock.renewal", sizeof(renewal_state), renewal_advance, NULL, 0, NULL, 0, 0, 0, 0
};

static int renewal_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_lock *lock = a[0].handle;
    renewal_state *s;
    int rc;
    (void)nm;
    if ((rc = rp_op__new(out, rp_lock_client(lock), &renewal_class, 1, (void **)&s, err)))
        return rc;
    rp_lock_renewal_plan(lock, a[1].i, rp_monotonic_ms(), &s->plan);
    return RP_OK;
}

static int renewal_result(const rp_op *op, size_t index, rp_value *f)
{
    const renewal_state *s = rp_op__done_state(op, &renewal_class);
    (void)index;
    if (!s)
        return RP_ESTATE;
    f[0] = rp_desc__bool(s->plan.renew);
    f[1] = rp_value_int(RP_TYPE_MS, s->plan.delay_ms);
    f[2] = rp_value_int(RP_TYPE_MS, s->plan.ttl_ms);
    return RP_OK;
}

const rp_op_desc rp_desc__using_ops[] = {
    { "lock.using", "using", RP_KIND_LOCK, RP_KIND_NONE, 1, using_args, N(using_args),
      RP_RESULT_RECORD, using_fields, N(using_fields),
      "takes the lock, runs fn while renewing it every ttl/3, releases it (whatever fn did)",
      using_begin, NULL, NULL, using_result, RP_DESC_PLAIN },
    { "lock.renewal", "renewal", RP_KIND_LOCK, RP_KIND_NONE, 0, renewal_args, N(renewal_args),
      RP_RESULT_RECORD, renewal_fields, N(renewal_fields),
      "the watchdog's next move for a held lock: when to renew and to what TTL (no I/O)",
      renewal_begin, NULL, NULL, renewal_result, RP_DESC_PLAIN },
};

const size_t rp_desc__using_count = N(rp_desc__using_ops);
