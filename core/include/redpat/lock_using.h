/* redpat — scoped use of a lock with the watchdog in the core: take the lock, run the
 * user's function while the lock is renewed, release it.
 *
 * The renewal plan (renew every ttl/3, never past a maximum hold time, report a loss) is
 * core logic, in two forms: rp_lock_using_op runs it while the user's function runs (the
 * function is a CALL: drive.h), and rp_lock_renewal_plan tells a frontend's own watchdog
 * (a thread, an asyncio task, an ngx.timer) when to renew a lock it holds and for how long.
 * Both work for single-node locks and Redlocks alike (they go through the lock's own
 * acquire, extend and release). */
#ifndef REDPAT_LOCK_USING_H
#define REDPAT_LOCK_USING_H

#include <stddef.h>
#include <stdint.h>

#include "drive.h"
#include "error.h"
#include "lock.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_lock_using_options {
    rp_lock_acquire_options acquire; /* how to take the lock (wait 0: try once) */
    int64_t max_hold_ms;             /* renew for at most this long in all; 0: no cap */
    int renew;                       /* non-zero: renew at ttl/3 while the function runs */
} rp_lock_using_options;

#define RP_LOCK_USING_OPTIONS_INIT { RP_LOCK_ACQUIRE_OPTIONS_INIT, 0, 1 }

typedef struct rp_lock_using_result {
    int acquired;     /* 0: the lock stayed busy for the whole wait; the function never ran */
    int64_t renewals; /* successful renewals while the function ran */
    int64_t fence;    /* the acquire's fencing token (fenced locks), else 0 */
} rp_lock_using_result;

/* An op that takes lock, CALLs the function (descriptor argument 1, no arguments), renews
 * the lock while the function runs, then releases it (whatever the function did). It ends:
 *   DONE    acquired or not (rp_lock_using_result says);
 *   ERROR   RP_ECALLBACK: the function failed (resumed with a STATUS), the lock released;
 *           RP_ELOST: a renewal failed or the lock had expired by the release: the function
 *           ran without the lock for a while (the message says what failed);
 *           RP_ECANCELED: cancelled (rp_op_cancel), the lock released;
 *           or the acquire's own failure (RP_ETRANSPORT, ...), the function never ran.
 * lock is borrowed: it must outlive the op and not be used by anything else meanwhile. */
int rp_lock_using_op(rp_op **out, rp_lock *lock, const rp_lock_using_options *options,
                     rp_error *err);
int rp_lock_using_result_of(const rp_op *op, rp_lock_using_result *out);

/* Blocking: runs fn(ud) under the lock over the lock's client (a helper thread renews it
 * meanwhile: drive.h). fn returns RP_OK, or a failure (it may fill the message of the error
 * it is given): that failure ends the call with RP_ECALLBACK after the release. */
typedef int (*rp_lock_fn)(void *ud, rp_error *err);
int rp_lock_using(rp_lock *lock, const rp_lock_using_options *options, rp_lock_fn fn,
                  void *ud, rp_lock_using_result *out, rp_error *err);

typedef struct rp_lock_renewal {
    int renew;        /* 0: stop renewing (not held, or the hold cap is reached) */
    int64_t delay_ms; /* wait this long, then renew */
    int64_t ttl_ms;   /* extend with replace to this TTL */
} rp_lock_renewal;

/* The watchdog's next move for a lock this handle holds, at monotonic time now_ms
 * (rp_monotonic_ms): renew ttl/3 after the last acquire or renewal, to the lock's TTL, but
 * never past max_hold_ms after the acquire (0: no cap). No I/O. */
void rp_lock_renewal_plan(const rp_lock *lock, int64_t max_hold_ms, uint64_t now_ms,
                          rp_lock_renewal *out);

#ifdef __cplusplus
}
#endif
#endif
