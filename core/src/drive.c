/* The blocking driver (drive.h, and rp_op_run / rp_client_run): steps an op, runs its IO
 * rounds on a transport, sleeps, runs its CALLs with a helper thread that keeps stepping
 * the op meanwhile, and pumps long-lived ops for their EMITs.
 *
 * Threads. The calling thread runs every hook (they may enter Python or Lua). During a
 * CALL the op belongs to the helper thread, which steps it until the callback has
 * returned and the op is at a point where it may be resumed (a SLEEP: never between an IO
 * round and the step that reads it); then the calling thread joins it, resumes the op and
 * drives it on over the client's own transport. The helper talks over a transport of its
 * own (opened at its first IO round, closed when it stops), so the client's connections
 * are never used by two threads. No state is shared beyond the one CALL's stepper. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "op_internal.h"
#include "transport_hiredis.h"

/* rp_op_call's values: no op passes its callback more than a descriptor has arguments. */
#define RP_DRIVE_CALL_VALUES_MAX RP_DESC_ARGS_MAX

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static void nap(uint64_t ms)
{
    struct timespec ts, rem;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)((ms % 1000u) * 1000000u);
    while (nanosleep(&ts, &rem) != 0 && errno == EINTR)
        ts = rem;
}

typedef struct driver {
    rp_transport *t;                  /* the caller's transport */
    const rp_client_options *options; /* for the helper's transport (NULL: rp_op_run) */
    const rp_allocator *alloc;
    const rp_drive_hooks *hooks;      /* may be NULL */
} driver;

/* A sleep of the calling thread; non-zero: the hook asked to cancel. */
static int driver_sleep(const driver *d, uint64_t ms)
{
    if (d->hooks && d->hooks->sleep)
        return d->hooks->sleep(d->hooks->ud, ms);
    nap(ms);
    return 0;
}

/* Every target still waiting in the current round fails with status (no round ran). */
static void fail_round(rp_op *op, int status, const char *why)
{
    size_t i, n = rp_op_nodes(op);
    for (i = 0; i < n; i++)
        if (rp_op_pending(op, i))
            rp_op_fail_node(op, i, status, why);
}

/* --- the helper thread of a CALL ----------------------------------------------------- */

typedef struct stepper {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* signalled when the callback returns */
    int returned;         /* under mu */
    rp_op *op;
    const rp_client_options *options;
    const rp_allocator *alloc;
    rp_transport *t;      /* the helper's own, opened at its first IO round */
} stepper;

static int stepper_returned(stepper *s)
{
    int r;
    pthread_mutex_lock(&s->mu);
    r = s->returned;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* Waits ms (RP_SLEEP_UNTIL_RESUMED: no limit) or until the callback returns. */
static void stepper_sleep(stepper *s, uint64_t ms)
{
    struct timespec until;
    uint64_t end_ms;
    clock_gettime(CLOCK_MONOTONIC, &until);
    end_ms = add_sat((uint64_t)until.tv_sec * 1000u + (uint64_t)until.tv_nsec / 1000000u, ms);
    until.tv_sec = (time_t)(end_ms / 1000u);
    until.tv_nsec = (long)((end_ms % 1000u) * 1000000u);
    pthread_mutex_lock(&s->mu);
    while (!s->returned) {
        if (ms == RP_SLEEP_UNTIL_RESUMED || end_ms == UINT64_MAX) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static void *stepper_main(void *arg)
{
    stepper *s = arg;
    /* settled: the op may be resumed now (its last round has been stepped past) */
    int settled = 1;
    for (;;) {
        rp_error e;
        if (settled && stepper_returned(s))
            break;
        rp_error_clear(&e);
        switch (rp_op_step(s->op, rp_monotonic_ms())) {
        case RP_STEP_IO:
            if (!s->t && rp_transport__hiredis_new(&s->t, s->options, s->alloc, &e) != RP_OK)
                fail_round(s->op, e.code, e.message);
            else
                s->t->cls->round(s->t, s->op, 0, &e);
            settled = 0; /* the op must read this round (one more step) before a resume */
            break;
        case RP_STEP_SLEEP:
            settled = 1;
            stepper_sleep(s, rp_op_sleep_ms(s->op));
            break;
        case RP_STEP_CALL:
        case RP_STEP_EMIT:
            /* not while a callback runs: a broken op; make it clean up and fail */
            rp_op_cancel(s->op);
            return NULL;
        default:
            return NULL; /* DONE / ERROR: the op ended by itself while the callback ran */
        }
    }
    return NULL;
}

/* Runs the CALL the op asked for: the callback here, the op's own work in a helper
 * thread; then resumes the op. 1: there was no call hook (the op was told the callback
 * failed and cleans up; the driver reports RP_ESTATE once it has ended). */
static int run_call(const driver *d, rp_op *op)
{
    static const char no_hook[] = "no call hook: drive this op with rp_client_drive and hooks";
    rp_value values[RP_DRIVE_CALL_VALUES_MAX], result, kept;
    size_t arg = 0, count = 0;
    stepper s;
    pthread_t helper;
    pthread_condattr_t ca;
    int started = 0, have_mu = 0, have_cv = 0;
    char *copy = NULL;

    memset(&result, 0, sizeof result);
    if (!d->hooks || !d->hooks->call || !d->options) {
        result.type = RP_TYPE_STATUS;
        result.i = RP_ECALLBACK;
        result.bytes = no_hook;
        result.len = sizeof no_hook - 1;
        rp_op_resume(op, &result);
        return 1;
    }
    if (rp_op_call(op, &arg, values, RP_DRIVE_CALL_VALUES_MAX, &count) != RP_OK)
        count = 0;

    memset(&s, 0, sizeof s);
    s.op = op;
    s.options = d->options;
    s.alloc = d->alloc;
    have_mu = pthread_mutex_init(&s.mu, NULL) == 0;
    if (pthread_condattr_init(&ca) == 0) {
        /* the sleeps are timed on the monotonic clock, like every op's */
        have_cv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&s.cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    /* Without a thread (none could be made) the callback runs with nobody stepping the
     * op: a lock.using renews nothing meanwhile; it is resumed as usual afterwards. An op
     * with nothing to do meanwhile (a cache's load) needs none: no thread per callback. */
    if (have_mu && have_cv && !rp_op__idle_during_call(op))
        started = pthread_create(&helper, NULL, stepper_main, &s) == 0;

    d->hooks->call(d->hooks->ud, op, arg, values, count, &result);

    /* The result's bytes are the hook's only until it returns: keep a copy. */
    kept = result;
    if ((result.type == RP_TYPE_BYTES || result.type == RP_TYPE_STATUS) && result.len > 0) {
        copy = rp_alloc__memdup(d->alloc, result.bytes, result.len);
        if (copy) {
            kept.bytes = copy;
        } else {
            static const char oom[] = "out of memory keeping the callback's result";
            kept.type = RP_TYPE_STATUS;
            kept.i = RP_ECALLBACK;
            kept.bytes = oom;
            kept.len = sizeof oom - 1;
        }
    }
    if (started) {
        pthread_mutex_lock(&s.mu);
        s.returned = 1;
        pthread_cond_signal(&s.cv);
        pthread_mutex_unlock(&s.mu);
        /* a round in progress finishes first: it is bounded by its timeouts */
        pthread_join(helper, NULL);
    }
    if (s.t)
        s.t->cls->destroy(s.t);
    if (have_cv)
        pthread_cond_destroy(&s.cv);
    if (have_mu)
        pthread_mutex_destroy(&s.mu);
    /* RP_ESTATE here means the op ended (or was cancelled) while the callback ran: its
     * next step says how */
    rp_op_resume(op, &kept);
    rp_alloc__free(d->alloc, copy);
    return 0;
}

/* --- the loops ------------------------------------------------------------------------ */

static int drive(const driver *d, rp_op *op, rp_error *err)
{
    int no_hook = 0, rc;
    for (;;) {
        rp_error e;
        switch (rp_op_step(op, rp_monotonic_ms())) {
        case RP_STEP_IO:
            rp_error_clear(&e);
            d->t->cls->round(d->t, op, 0, &e);
            break;
        case RP_STEP_SLEEP: {
            uint64_t ms = rp_op_sleep_ms(op);
            if (ms == RP_SLEEP_UNTIL_RESUMED) /* only while a CALL runs: never here */
                return rp_error__set(err, RP_ESTATE, "%s waits for a callback that is not running",
                                     rp_op_name(op));
            rc = driver_sleep(d, ms);
            if (rc == RP_DRIVE_PAUSE && !no_hook) {
                rp_error_clear(err);
                return RP_DRIVE_PAUSED; /* the caller waits, and drives the op on later */
            }
            if (rc == RP_DRIVE_PAUSE)
                nap(ms); /* the missing hook's failure would be forgotten on the way out */
            else if (rc != 0)
                rp_op_cancel(op); /* it cleans up (if it must) and fails: keep stepping */
            break;
        }
        case RP_STEP_CALL:
            no_hook |= run_call(d, op);
            break;
        case RP_STEP_EMIT:
            return rp_error__set(err, RP_ESTATE, "emitting op: use rp_client_pump");
        case RP_STEP_DONE:
            if (no_hook)
                return rp_error__set(err, RP_ESTATE,
                                     "%s calls a function: drive it with rp_client_drive and a call hook",
                                     rp_op_name(op));
            rp_error_clear(err);
            return RP_OK;
        case RP_STEP_ERROR:
        default:
            if (no_hook)
                return rp_error__set(err, RP_ESTATE,
                                     "%s calls a function: drive it with rp_client_drive and a call hook",
                                     rp_op_name(op));
            return rp_error__copy(err, rp_op_error(op));
        }
    }
}

static int client_driver(driver *d, rp_client *client, rp_op *op, const rp_drive_hooks *hooks,
                         rp_error *err)
{
    if (!client || !op)
        return rp_error__set(err, RP_EINVAL, "client and op must not be NULL");
    d->t = rp_client_transport(client);
    if (!d->t)
        return rp_error__set(err, RP_EINVAL,
                             "this client has no connection (made without a url): drive the op yourself");
    d->options = rp_client__options(client);
    d->alloc = rp_client__allocator(client);
    d->hooks = hooks;
    return RP_OK;
}

int rp_client_drive(rp_client *client, rp_op *op, const rp_drive_hooks *hooks, rp_error *err)
{
    driver d;
    int rc = client_driver(&d, client, op, hooks, err);
    return rc ? rc : drive(&d, op, err);
}

int rp_client_pump(rp_client *client, rp_op *op, uint64_t wait_ms, const rp_drive_hooks *hooks,
                   rp_error *err)
{
    driver d;
    uint64_t deadline;
    int rc = client_driver(&d, client, op, hooks, err);
    if (rc)
        return rc;
    deadline = add_sat(rp_monotonic_ms(), wait_ms);
    for (;;) {
        uint64_t now = rp_monotonic_ms(), left = deadline > now ? deadline - now : 0;
        rp_error e;
        switch (rp_op_step(op, now)) {
        case RP_STEP_EMIT:
            rp_error_clear(err);
            return RP_OK;
        case RP_STEP_IO:
            rp_error_clear(&e);
            if (d.t->cls->round(d.t, op, left, &e) == RP_ETIMEOUT && rp_monotonic_ms() >= deadline)
                return rp_error__copy(err, &e);
            break;
        case RP_STEP_SLEEP: {
            uint64_t ms = rp_op_sleep_ms(op);
            if (ms == RP_SLEEP_UNTIL_RESUMED)
                return rp_error__set(err, RP_ESTATE, "%s waits for a callback that is not running",
                                     rp_op_name(op));
            if (left == 0)
                return rp_error__set(err, RP_ETIMEOUT, "no message within %llu ms",
                                     (unsigned long long)wait_ms);
            /* the op's wait (a reconnect's backoff) may be longer than the caller's: the
             * op is stepped early then, and sleeps the rest at the next pump */
            if (driver_sleep(&d, ms < left ? ms : left) != 0)
                rp_op_cancel(op);
            break;
        }
        case RP_STEP_CALL:
            if (run_call(&d, op))
                return rp_error__set(err, RP_ESTATE, "%s calls a function: give a call hook",
                                     rp_op_name(op));
            break;
        case RP_STEP_DONE:
            return rp_error__set(err, RP_ESTATE, "%s has ended", rp_op_name(op));
        case RP_STEP_ERROR:
        default:
            return rp_error__copy(err, rp_op_error(op));
        }
    }
}

int rp_client_run_sleeping(rp_client *client, rp_op *op, rp_sleep_fn sleep, void *ud,
                           rp_error *err)
{
    rp_drive_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.sleep = sleep;
    hooks.ud = ud;
    return rp_client_drive(client, op, &hooks, err);
}

int rp_client_run(rp_client *client, rp_op *op, rp_error *err)
{
    return rp_client_drive(client, op, NULL, err);
}

int rp_op_run_sleeping(rp_op *op, rp_transport *t, int (*sleep)(void *ud, uint64_t ms),
                       void *ud, rp_error *err)
{
    rp_drive_hooks hooks;
    driver d;
    if (!op || !t)
        return rp_error__set(err, RP_EINVAL, "op and transport must not be NULL");
    memset(&hooks, 0, sizeof hooks);
    hooks.sleep = sleep;
    hooks.ud = ud;
    d.t = t;
    d.options = NULL; /* no client: a CALL has no helper transport to renew over */
    d.alloc = rp_client__allocator(rp_op__client(op));
    d.hooks = &hooks;
    return drive(&d, op, err);
}

int rp_op_run(rp_op *op, rp_transport *t, rp_error *err)
{
    return rp_op_run_sleeping(op, t, NULL, NULL, err);
}
