/* lock.using: acquire, CALL the user's function while renewing, release — composed of the
 * lock's own ops (rp_op__delegate), so single-node locks and Redlocks share it; and the
 * renewal plan both it and the frontends' watchdogs follow. */
#include <stdio.h>
#include <string.h>

#include "op_internal.h"
#include "redpat/lock_using.h"

/* The lock.using descriptor's callback argument (desc_using.c keeps the same order). */
#define USING_FN_ARG 1

void rp_lock_renewal_plan(const rp_lock *lock, int64_t max_hold_ms, uint64_t now_ms,
                          rp_lock_renewal *out)
{
    uint64_t acquired = rp_lock__acquired_ms(lock), renewed = rp_lock__renewed_ms(lock);
    int64_t ttl = rp_lock_ttl_ms(lock);
    /* a third of the TTL: two renewals can fail in a row before the lock expires */
    uint64_t interval = (uint64_t)(ttl / 3 > 0 ? ttl / 3 : 1), due = renewed + interval;
    memset(out, 0, sizeof *out);
    if (!rp_lock_token(lock, NULL) || acquired == 0)
        return;
    out->delay_ms = due > now_ms ? (int64_t)(due - now_ms) : 0;
    out->ttl_ms = ttl;
    if (max_hold_ms > 0) {
        uint64_t at = now_ms + (uint64_t)out->delay_ms, deadline = acquired + (uint64_t)max_hold_ms;
        if (at >= deadline)
            return; /* the cap is reached: let the lock expire on its own */
        if ((uint64_t)ttl > deadline - at)
            out->ttl_ms = (int64_t)(deadline - at); /* the last renewal ends at the cap */
    }
    out->renew = 1;
}

enum { ACQUIRING, CALLING, RENEWING, RELEASING };

typedef struct using_state {
    rp_lock *lock;
    rp_lock_using_options o;
    int stage;
    rp_lock_using_result result;
    int call_status;            /* how the function ended */
    char call_message[RP_ERROR_MESSAGE_MAX];
    rp_error lost;              /* RP_OK, or the renewal failure */
    int capped;                 /* the plan said stop: wait for the function only */
} using_state;

static int fail_like_child(rp_op *op)
{
    const rp_error *e = rp_op_error(rp_op__child(op));
    return rp_op__fail(op, e->code ? e->code : RP_ESTATE, "%s", e->message);
}

/* While the function runs: renew when due, else wait (for the callback, or the due time). */
static int watch(rp_op *op, using_state *s, uint64_t now_ms)
{
    rp_lock_renewal plan;
    rp_op *child;
    rp_error e;
    int rc;
    if (!s->o.renew || s->lost.code != RP_OK || s->capped)
        return RP_OK; /* nothing to do but wait for the function */
    rp_lock_renewal_plan(s->lock, s->o.max_hold_ms, now_ms, &plan);
    if (!plan.renew) {
        s->capped = 1;
        return RP_OK;
    }
    if (plan.delay_ms > 0) {
        rp_op__sleep(op, (uint64_t)plan.delay_ms);
        return RP_OK;
    }
    rp_error_clear(&e);
    if ((rc = rp_lock_extend_op(&child, s->lock, plan.ttl_ms, 1, &e)))
        return rp_op__fail(op, rc, "%s", e.message);
    s->stage = RENEWING;
    rp_op__delegate(op, child);
    return RP_OK;
}

static int finish(rp_op *op, using_state *s);

/* Cancelled while acquiring: the acquire's own account of what became of its attempt in
 * flight (released, or what may stay held), under this op's name. */
static int cancelled_acquiring(rp_op *op, using_state *s)
{
    static const char prefix[] = "lock.acquire: ";
    const rp_error *e = rp_op_error(rp_op__child(op));
    if (e->code != RP_ECANCELED || strncmp(e->message, prefix, sizeof prefix - 1) != 0)
        return finish(op, s);
    return rp_op__fail(op, RP_ECANCELED, "lock.using: %s", e->message + sizeof prefix - 1);
}

/* Releases the lock if the handle still holds it, else finishes at once. */
static int release(rp_op *op, using_state *s)
{
    rp_op *child;
    rp_error e;
    int rc;
    s->stage = RELEASING;
    if (!rp_lock_token(s->lock, NULL))
        return finish(op, s); /* a failed renewal already found it gone: nothing to delete */
    rp_error_clear(&e);
    if ((rc = rp_lock_release_op(&child, s->lock, &e)))
        return rp_op__fail(op, rc, "%s", e.message);
    rp_op__delegate(op, child);
    return RP_OK;
}

static int finish(rp_op *op, using_state *s)
{
    size_t nlen;
    const char *name = rp_lock_name(s->lock, &nlen);
    int quoted = (int)(nlen > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : nlen);
    if (s->call_status == RP_ECALLBACK)
        return rp_op__fail(op, RP_ECALLBACK, "%s", s->call_message);
    if (s->call_status == RP_ECANCELED || rp_op__cancelled(op))
        return rp_op__fail(op, RP_ECANCELED, "lock.using: cancelled");
    if (s->lost.code != RP_OK)
        return rp_op__fail(op, RP_ELOST, "lock.using: lock \"%.*s\" was lost while the function "
                           "ran: %s", quoted, name, s->lost.message);
    rp_op__done(op);
    return RP_OK;
}

static int using_advance(rp_op *op, void *state, uint64_t now_ms)
{
    using_state *s = state;
    rp_op *child = rp_op__child(op);
    rp_lock_acquisition got;
    rp_error e;
    int rc;
    if (!child) { /* the start */
        rp_error_clear(&e);
        if ((rc = rp_lock_acquire_op(&child, s->lock, &s->o.acquire, &e)))
            return rp_op__fail(op, rc, "%s", e.message);
        s->stage = ACQUIRING;
        rp_op__delegate(op, child);
        return RP_OK;
    }
    switch (s->stage) {
    case ACQUIRING:
        if (rp_op__child_failed(op))
            return rp_op__cancelled(op) ? cancelled_acquiring(op, s) : fail_like_child(op);
        if ((rc = rp_lock_acquire_result(child, &got)))
            return rp_op__fail(op, rc, "lock.using: no acquire result");
        if (!got.acquired)
            return finish(op, s);
        s->result.acquired = 1;
        s->result.fence = got.fence;
        if (rp_op__cancelled(op)) {
            s->call_status = RP_ECANCELED; /* taken as the user gave up: give it back */
            return release(op, s);
        }
        s->stage = CALLING;
        rp_op__call(op, USING_FN_ARG);
        return RP_OK;
    case RENEWING:
        if (!rp_op__child_failed(op)) {
            s->result.renewals++;
        } else if (!rp_op__cancelled(op)) {
            rp_error_clear(&s->lost);
            rp_error__copy(&s->lost, rp_op_error(child));
        }
        s->stage = CALLING;
        /* the function may have ended during the renewal */
        /* fall through */
    case CALLING:
        if (rp_op__call_running(op))
            return watch(op, s, now_ms);
        {
            const char *bytes;
            size_t len;
            s->call_status = rp_op__call_result(op, &bytes, &len);
            if (s->call_status != RP_OK)
                snprintf(s->call_message, sizeof s->call_message, "%.*s", (int)len, bytes);
        }
        return release(op, s);
    case RELEASING:
    default:
        if (rp_op__child_failed(op) && s->lost.code == RP_OK && !rp_op__cancelled(op)) {
            /* not owned at release: the lock expired under the function */
            rp_error__copy(&s->lost, rp_op_error(child));
        }
        return finish(op, s);
    }
}

static const rp_op_class using_class = {
    "lock.using", sizeof(using_state), using_advance, NULL, 0, NULL, 1, 0, 0, 0
};

int rp_lock_using_op(rp_op **out, rp_lock *lock, const rp_lock_using_options *options,
                     rp_error *err)
{
    static const rp_lock_using_options defaults = RP_LOCK_USING_OPTIONS_INIT;
    const rp_lock_using_options *o = options ? options : &defaults;
    using_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if (o->max_hold_ms < 0)
        return rp_error__set(err, RP_EINVAL, "max_hold must be >= 0 ms (got %lld)",
                             (long long)o->max_hold_ms);
    if ((rc = rp_op__new(out, rp_lock_client(lock), &using_class, 1, (void **)&s, err)))
        return rc;
    s->lock = lock;
    s->o = *o;
    return RP_OK;
}

int rp_lock_using_result_of(const rp_op *op, rp_lock_using_result *out)
{
    const using_state *s = rp_op__done_state(op, &using_class);
    if (!s || !out)
        return RP_ESTATE;
    *out = s->result;
    return RP_OK;
}

/* --- blocking ------------------------------------------------------------------------ */

typedef struct c_call {
    rp_lock_fn fn;
    void *ud;
    rp_error err;
} c_call;

static void run_c_fn(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                     rp_value *result)
{
    c_call *c = ud;
    int rc;
    (void)op; (void)arg; (void)values; (void)count;
    rp_error_clear(&c->err);
    rc = c->fn(c->ud, &c->err);
    memset(result, 0, sizeof *result);
    if (rc != RP_OK) {
        if (!c->err.message[0])
            snprintf(c->err.message, sizeof c->err.message, "the function failed (%s)",
                     rp_status_name(rc));
        result->type = RP_TYPE_STATUS;
        result->i = RP_ECALLBACK;
        result->bytes = c->err.message;
        result->len = strlen(c->err.message);
    }
}

int rp_lock_using(rp_lock *lock, const rp_lock_using_options *options, rp_lock_fn fn,
                  void *ud, rp_lock_using_result *out, rp_error *err)
{
    rp_drive_hooks hooks;
    c_call c;
    rp_op *op;
    int rc;
    if (!fn)
        return rp_error__set(err, RP_EINVAL, "fn must not be NULL");
    if ((rc = rp_lock_using_op(&op, lock, options, err)))
        return rc;
    memset(&hooks, 0, sizeof hooks);
    c.fn = fn;
    c.ud = ud;
    hooks.call = run_c_fn;
    hooks.ud = &c;
    rc = rp_client_drive(rp_lock_client(lock), op, &hooks, err);
    if (rc == RP_OK && out)
        rp_lock_using_result_of(op, out);
    rp_op_free(op);
    return rc;
}
