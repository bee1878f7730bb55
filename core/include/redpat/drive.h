/* redpat — the blocking driver, with user callbacks (CALL) and messages (EMIT).
 *
 * rp_client_run drives an op with no callback and no message. Ops that run user code
 * (lock.using) or hand out messages (a subscription) go through these instead, which the
 * Python and Lua bindings use too:
 *
 *   - CALL: hooks->call runs the user's callback in the calling thread. Meanwhile a helper
 *     thread keeps stepping the op (its SLEEPs end early when the callback returns; its IO
 *     rounds, such as lock renewals, go over connections of the helper's own, opened only
 *     when the first round comes), so a lock is renewed while the callback works. When the
 *     callback has returned and the helper has stopped, the op is resumed in the calling
 *     thread and driven to its end there.
 *     The helper thread uses the client's allocator too (it must be thread-safe, as
 *     libc's is) and never runs a hook. If no thread can be made, the callback runs with
 *     nobody stepping the op meanwhile (a lock.using renews nothing while fn runs); the op
 *     is resumed as usual afterwards.
 *   - EMIT: rp_client_pump steps a long-lived op until it hands out a message or the
 *     caller's wait runs out. The long-lived op's connections belong to the client given:
 *     give each subscription a client of its own. Between pumps its connection stays in
 *     the client's pool, reserved: the client's other ops never take it (they open one of
 *     their own, closed after use), but one client serves one long-lived op at a time, and
 *     is used for nothing else while it lives (free the client with the op).
 *     rp_client_disconnect drops it too; the op learns it at its next round (a
 *     RP_ETRANSPORT failure of its target: a subscription reconnects and re-subscribes).
 *     When the wait runs out during the op's own SLEEP (a reconnect's backoff), the op is
 *     stepped early at the next pump: it sleeps the rest itself. */
#ifndef REDPAT_DRIVE_H
#define REDPAT_DRIVE_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "describe.h"
#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_drive_hooks {
    /* Waits ms milliseconds between retries: return 0, RP_DRIVE_PAUSE (see below), or
     * any other non-zero value to cancel the op (a signal arrived). NULL: nanosleep. */
    int (*sleep)(void *ud, uint64_t ms);
    /* Runs the callback argument arg of op's descriptor with values[0..count). Fills
     * *result as rp_op_resume takes it (NONE, BYTES, or STATUS RP_ECALLBACK / RP_ECANCELED
     * with a message; the bytes must stay valid until call returns to the driver, which
     * copies them at once). NULL: a CALL fails the op (RP_ESTATE). */
    void (*call)(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                 rp_value *result);
    void *ud;
} rp_drive_hooks;

/* What hooks->sleep returns to stop a drive at the op's SLEEP instead of waiting there:
 * rp_client_drive returns RP_DRIVE_PAUSED at once, the op untouched (no request of it is in
 * flight during a SLEEP). The caller waits the ms the hook was given, then drives the op
 * on with rp_client_drive, over this client or another: a pool lends the connection to
 * other ops meanwhile (a lock acquire waiting between attempts holds none). After a
 * CALL that found no call hook it naps instead (that failure is still to be reported). In
 * rp_client_pump it cancels, as any other non-zero value. */
#define RP_DRIVE_PAUSE 2
/* rp_client_drive's (and rp_client_run_sleeping's) return after RP_DRIVE_PAUSE: > 0, not
 * an error status. */
#define RP_DRIVE_PAUSED 1

/* Drives op to DONE or ERROR over client's connections, running CALLs and sleeps through
 * hooks (NULL: no callbacks, nanosleep). An EMIT fails the op (RP_ESTATE): long-lived ops
 * go through rp_client_pump. Returns RP_OK when DONE, RP_DRIVE_PAUSED when the sleep hook
 * paused it, else the op's error code. */
int rp_client_drive(rp_client *client, rp_op *op, const rp_drive_hooks *hooks,
                    rp_error *err);

/* Steps a long-lived op until it EMITs (RP_OK: read the message with rp_op_message, then
 * pump again), wait_ms passes without one (RP_ETIMEOUT: the op lives on, nothing is lost),
 * or it ends (RP_ESTATE when DONE; the op's error code when it failed). */
int rp_client_pump(rp_client *client, rp_op *op, uint64_t wait_ms,
                   const rp_drive_hooks *hooks, rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
