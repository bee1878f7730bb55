/* Descriptors of the lock ops (lock.new, redlock.new, lock.acquire ... lock.info) and
 * fence.check, over the typed API in lock.h. A Redlock handle is a lock: the same lock.*
 * descriptors act on it. */
#include <inttypes.h>
#include <string.h>

#include "desc_internal.h"

#define SELF_LOCK { "lock", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_LOCK, \
                    RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, "the lock" }
#define SELF_CLIENT(doc) { "client", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CLIENT, \
                           RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, doc }
#define N(a) (sizeof a / sizeof a[0])

static rp_lock *lock_of(const rp_value *a) { return a[0].handle; }

/* Positions in rp_desc__lock_ops (the table at the end), for messages naming arguments. */
enum { D_LOCK_NEW, D_REDLOCK_NEW, D_ACQUIRE };

/* --- lock.new ----------------------------------------------------------------------- */

static const rp_arg_desc new_args[] = {
    SELF_CLIENT("the client the lock is made from"),
    { "name", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_LOCK_NAME_MAX, 0, 0, NULL, "the lock's name (binary-safe)" },
    { "ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_TTL_MS_DEFAULT, 1, RP_DESC_EXACT_MAX, 0, 0, NULL,
      "how long a holder keeps the lock without extending it" },
    { "fenced", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, 1, 0, 0, NULL,
      "hand out a fencing token with each acquire" },
};

static int lock_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    rp_lock_options o = RP_LOCK_OPTIONS_INIT;
    (void)nm;
    o.ttl_ms = a[2].i;
    o.fenced = (int)a[3].i;
    return rp_lock_new((rp_lock **)out, a[0].handle, a[1].bytes, a[1].len, &o, err);
}

/* --- redlock.new -------------------------------------------------------------------- */

enum { RL_CLIENT, RL_NAME, RL_TTL, RL_NODE_TIMEOUT };

static const rp_arg_desc redlock_args[] = {
    SELF_CLIENT("the client over the Redlock's nodes: an odd number >= 3 of URLs"),
    { "name", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_LOCK_NAME_MAX, 0, 0, NULL, "the lock's name (binary-safe)" },
    { "ttl", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_TTL_MS_DEFAULT, 1,
      RP_DESC_EXACT_MAX, 0, 0, NULL, "how long a holder keeps the lock without extending it" },
    { "node_timeout", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0,
      RP_REDLOCK_NODE_TIMEOUT_MS_DEFAULT, 1, RP_DESC_EXACT_MAX, 0, 0, NULL,
      "per-node timeout of each round (at most the ttl; much smaller is the point)" },
};

static int redlock_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__lock_ops[D_REDLOCK_NEW];
    rp_redlock_options o = RP_REDLOCK_OPTIONS_INIT;
    char lo[RP_DESC_DURATION_CHARS], hi[RP_DESC_DURATION_CHARS];
    size_t n = rp_client_endpoints(a[RL_CLIENT].handle);
    if (n < 3 || n % 2 == 0)
        return rp_error__set(err, RP_EINVAL, "%s must have an odd number >= 3 of endpoints "
                             "(the URLs of independent Redis primaries) for a Redlock, got %zu",
                             rp_desc__arg_name(nm, d, RL_CLIENT), n);
    if (a[RL_NODE_TIMEOUT].i > a[RL_TTL].i)
        return rp_error__set(err, RP_EINVAL, "%s must be <= %s (got %s > %s): each node must "
                             "answer well within the lock's validity",
                             rp_desc__arg_name(nm, d, RL_NODE_TIMEOUT),
                             rp_desc__arg_name(nm, d, RL_TTL),
                             rp_desc__duration(nm, a[RL_NODE_TIMEOUT].i, hi),
                             rp_desc__duration(nm, a[RL_TTL].i, lo));
    o.ttl_ms = a[RL_TTL].i;
    o.node_timeout_ms = a[RL_NODE_TIMEOUT].i;
    return rp_redlock_new((rp_lock **)out, a[RL_CLIENT].handle, a[RL_NAME].bytes,
                          a[RL_NAME].len, &o, err);
}

/* --- lock.acquire ------------------------------------------------------------------- */

enum { ACQ_WAIT = 1, ACQ_RETRY_MIN, ACQ_RETRY_MAX, ACQ_TOKEN };

static const rp_arg_desc acquire_args[] = {
    SELF_LOCK,
    { "wait", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, RP_WAIT_FOREVER, 0, 0, NULL,
      "0: try once; else retry while the next attempt comes within this long (forever: until "
      "acquired)" },
    { "retry_min", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_RETRY_MIN_MS_DEFAULT, 1,
      RP_DESC_EXACT_MAX, 0, 0,
      NULL, "first retry delay; doubles up to retry_max, each jittered to [d/2, d]" },
    { "retry_max", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_LOCK_RETRY_MAX_MS_DEFAULT, 1,
      RP_DESC_EXACT_MAX, 0, 0,
      NULL, "longest retry delay (>= retry_min)" },
    { "token", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, RP_LOCK_TOKEN_MAX, 0, 0, NULL,
      "owner token to use; absent: 128 random bits from the OS CSPRNG" },
};

static const rp_field_desc acquire_fields[] = {
    { "acquired", RP_TYPE_BOOL, "the handle holds the lock now (false: busy until the wait ran out)" },
    { "fence", RP_TYPE_INT, "fenced locks: this acquire's fencing token (> 0), else 0" },
    { "attempts", RP_TYPE_INT, "how many times Redis was asked (Redlock: rounds over all "
      "nodes)" },
    { "validity", RP_TYPE_MS, "acquired: how long the hold is safe from now (ttl - elapsed; "
      "Redlock: - drift too); 0 when not acquired" },
};

static int acquire_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *d = &rp_desc__lock_ops[D_ACQUIRE];
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    char lo[RP_DESC_DURATION_CHARS], hi[RP_DESC_DURATION_CHARS];
    o.wait_ms = a[ACQ_WAIT].i;
    o.retry_min_ms = a[ACQ_RETRY_MIN].i;
    o.retry_max_ms = a[ACQ_RETRY_MAX].i;
    if (o.retry_max_ms < o.retry_min_ms)
        return rp_error__set(err, RP_EINVAL, "%s must be >= %s (got %s < %s)",
                             rp_desc__arg_name(nm, d, ACQ_RETRY_MAX),
                             rp_desc__arg_name(nm, d, ACQ_RETRY_MIN),
                             rp_desc__duration(nm, o.retry_max_ms, hi),
                             rp_desc__duration(nm, o.retry_min_ms, lo));
    if (a[ACQ_TOKEN].type == RP_TYPE_BYTES) {
        o.token = a[ACQ_TOKEN].bytes;
        o.token_len = a[ACQ_TOKEN].len;
    }
    return rp_lock_acquire_op(out, lock_of(a), &o, err);
}

static int acquire_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_lock_acquisition r;
    int rc = rp_lock_acquire_result(op, &r);
    (void)index;
    if (rc == RP_OK) {
        f[0] = rp_desc__bool(r.acquired);
        f[1] = rp_value_int(RP_TYPE_INT, r.fence);
        f[2] = rp_value_int(RP_TYPE_INT, (int64_t)r.attempts);
        f[3] = rp_value_int(RP_TYPE_MS, r.validity_ms);
    }
    return rc;
}

/* --- release, extend, queries ------------------------------------------------------- */

static const rp_arg_desc self_args[] = { SELF_LOCK };

static int release_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_lock_release_op(out, lock_of(a), err);
}

static const rp_arg_desc extend_args[] = {
    SELF_LOCK,
    { "ms", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, RP_DESC_EXACT_MAX, 0,
      0, NULL, "time to add to the remaining TTL (or the new TTL, with replace)" },
    { "replace", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, 1, 0, 0, NULL,
      "set the TTL to ms instead of adding ms to it" },
};

static int extend_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_lock_extend_op(out, lock_of(a), a[1].i, (int)a[2].i, err);
}

static const rp_field_desc query_fields[] = {
    { "value", RP_TYPE_BOOL, "the answer" },
};

static int locked_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_lock_locked_op(out, lock_of(a), err);
}

static int owned_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_lock_owned_op(out, lock_of(a), err);
}

static int query_result(const rp_op *op, size_t index, rp_value *f)
{
    int value = 0, rc = rp_lock_query_result(op, &value);
    (void)index;
    if (rc == RP_OK)
        f[0] = rp_desc__bool(value);
    return rc;
}

/* --- lock.remaining ----------------------------------------------------------------- */

static const rp_field_desc remaining_fields[] = {
    { "owned", RP_TYPE_BOOL, "this handle holds the lock" },
    { "remaining", RP_TYPE_MS, "owned: the lock's TTL left; else 0" },
};

static int remaining_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_lock_remaining_op(out, lock_of(a), err);
}

static int remaining_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_lock_remaining r;
    int rc = rp_lock_remaining_result(op, &r);
    (void)index;
    if (rc == RP_OK) {
        f[0] = rp_desc__bool(r.owned);
        f[1] = rp_value_int(RP_TYPE_MS, r.remaining_ms);
    }
    return rc;
}

/* --- lock.info: what the handle knows, no I/O ---------------------------------------- */

static const rp_field_desc info_fields[] = {
    { "name", RP_TYPE_BYTES, "the lock's name" },
    { "ttl", RP_TYPE_MS, "the lock's TTL" },
    { "fenced", RP_TYPE_BOOL, "whether acquires hand out fencing tokens" },
    { "token", RP_TYPE_BYTES, "the owner token of the last successful acquire; absent when "
      "not held" },
    { "fence", RP_TYPE_INT, "the fencing token of the last successful fenced acquire, else 0" },
    { "nodes", RP_TYPE_INT, "how many nodes the lock is kept on: 1, or N for a Redlock" },
};

static int info_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_desc__local_op(out, rp_lock_client(lock_of(a)), a[0].handle, err);
}

static int info_result(const rp_op *op, size_t index, rp_value *f)
{
    const rp_lock *l = rp_desc__local_handle(op);
    const char *p;
    size_t len;
    (void)index;
    if (!l)
        return RP_ESTATE;
    p = rp_lock_name(l, &len);
    f[0] = rp_value_bytes(p, len);
    f[1] = rp_value_int(RP_TYPE_MS, rp_lock_ttl_ms(l));
    f[2] = rp_desc__bool(rp_lock_fenced(l));
    if ((p = rp_lock_token(l, &len)) != NULL)
        f[3] = rp_value_bytes(p, len);
    f[4] = rp_value_int(RP_TYPE_INT, rp_lock_fence(l));
    f[5] = rp_value_int(RP_TYPE_INT, (int64_t)rp_lock_nodes(l));
    return RP_OK;
}

/* --- fence.check -------------------------------------------------------------------- */

static const rp_arg_desc fence_args[] = {
    SELF_CLIENT("the client the check runs on"),
    { "resource", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_FENCE_RESOURCE_MAX, 0, 0, NULL, "the storage resource receiving fenced writes" },
    { "token", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_DESC_EXACT_MAX, 0, 0, NULL, "the writer's fencing token" },
};

static const rp_field_desc fence_fields[] = {
    { "accepted", RP_TYPE_BOOL, "false: an older token (a stale holder): refuse the write" },
    { "highest", RP_TYPE_INT, "the highest token recorded for the resource after this check" },
};

static int fence_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_fence_check_op(out, a[0].handle, a[1].bytes, a[1].len, a[2].i, err);
}

static int fence_result(const rp_op *op, size_t index, rp_value *f)
{
    rp_fence_result r;
    int rc = rp_fence_check_result(op, &r);
    (void)index;
    if (rc == RP_OK) {
        f[0] = rp_desc__bool(r.accepted);
        f[1] = rp_value_int(RP_TYPE_INT, r.highest);
    }
    return rc;
}

/* The order is the D_* positions above. */
const rp_op_desc rp_desc__lock_ops[] = {
    { "lock.new", "new", RP_KIND_CLIENT, RP_KIND_LOCK, 0, new_args, N(new_args),
      RP_RESULT_NONE, NULL, 0, "a lock handle on one Redis primary (no I/O); every lock has a "
      "TTL", NULL, lock_make, NULL, NULL, RP_DESC_PLAIN },
    { "redlock.new", "new", RP_KIND_CLIENT, RP_KIND_LOCK, 0, redlock_args, N(redlock_args),
      RP_RESULT_NONE, NULL, 0, "a Redlock handle over the client's N independent primaries "
      "(no I/O): every lock op asks all N at once and decides by majority (lock.h)",
      NULL, redlock_make, NULL, NULL, RP_DESC_PLAIN },
    { "lock.acquire", "acquire", RP_KIND_LOCK, RP_KIND_NONE, 1, acquire_args, N(acquire_args),
      RP_RESULT_RECORD, acquire_fields, N(acquire_fields),
      "takes the lock: SET NX PX (one script when fenced), retried with backoff while busy",
      acquire_begin, NULL, NULL, acquire_result, RP_DESC_PLAIN },
    { "lock.release", "release", RP_KIND_LOCK, RP_KIND_NONE, 1, self_args, N(self_args),
      RP_RESULT_NONE, NULL, 0,
      "deletes the lock if this handle still holds it (not_owned otherwise)",
      release_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "lock.extend", "extend", RP_KIND_LOCK, RP_KIND_NONE, 1, extend_args, N(extend_args),
      RP_RESULT_NONE, NULL, 0, "adds to (or replaces) the TTL if this handle still holds it",
      extend_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "lock.locked", "locked", RP_KIND_LOCK, RP_KIND_NONE, 1, self_args, N(self_args),
      RP_RESULT_RECORD, query_fields, N(query_fields), "whether anyone holds the lock",
      locked_begin, NULL, NULL, query_result, RP_DESC_PLAIN },
    { "lock.owned", "owned", RP_KIND_LOCK, RP_KIND_NONE, 1, self_args, N(self_args),
      RP_RESULT_RECORD, query_fields, N(query_fields), "whether this handle holds the lock",
      owned_begin, NULL, NULL, query_result, RP_DESC_PLAIN },
    { "lock.remaining", "remaining", RP_KIND_LOCK, RP_KIND_NONE, 1, self_args, N(self_args),
      RP_RESULT_RECORD, remaining_fields, N(remaining_fields),
      "how long the lock has left if this handle holds it (owner checked on the server)",
      remaining_begin, NULL, NULL, remaining_result, RP_DESC_PLAIN },
    { "lock.info", "info", RP_KIND_LOCK, RP_KIND_NONE, 0, self_args, N(self_args),
      RP_RESULT_RECORD, info_fields, N(info_fields), "what the handle knows (no I/O)",
      info_begin, NULL, NULL, info_result, RP_DESC_PLAIN },
    { "fence.check", "fence_check", RP_KIND_CLIENT, RP_KIND_NONE, 1, fence_args, N(fence_args),
      RP_RESULT_RECORD, fence_fields, N(fence_fields),
      "records token as the resource's highest if it is not older than the highest seen",
      fence_begin, NULL, NULL, fence_result, RP_DESC_PLAIN },
};

const size_t rp_desc__lock_count = N(rp_desc__lock_ops);
