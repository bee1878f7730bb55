/* redpat — the transport interface: how a blocking driver moves an op's bytes.
 *
 * rp_client owns one transport (the hiredis one, made from a URL). Programs with their own
 * I/O drive ops directly (op.h) and need no transport at all; a custom blocking transport
 * implements this class and is handed to rp_client_new_with_transport. */
#ifndef REDPAT_TRANSPORT_H
#define REDPAT_TRANSPORT_H

#include <stddef.h>

#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_transport rp_transport;

typedef struct rp_transport_class {
    const char *name;
    /* One IO round of op over all its targets, as op.h describes: connections from a pool
     * keyed by rp_op_target's address (opened and handshaken as needed), every request
     * written before any reply is read, per-target timeouts, failures reported with
     * rp_op_fail_node, early end at rp_op_round_over (the connections still pending
     * closed, or kept with the replies they owe, which are dropped before their next use). A listening round waits at most listen_wait_ms for a message (0: only what
     * is already there), and returns RP_ETIMEOUT when none came (the op lives on: nothing
     * was lost, the connection stays the op's). Returns RP_OK otherwise: a target's failure
     * is the op's business, not the round's. */
    int (*round)(rp_transport *t, rp_op *op, uint64_t listen_wait_ms, rp_error *err);
    /* Closes connections and frees t. */
    void (*destroy)(rp_transport *t);
} rp_transport_class;

/* Implementations embed this as their first member. */
struct rp_transport {
    const rp_transport_class *cls;
};

/* Drives op to DONE or ERROR with t for every node, sleeping with nanosleep when asked.
 * Returns RP_OK when the op is DONE, else the op's error code (details copied to err). */
int rp_op_run(rp_op *op, rp_transport *t, rp_error *err);

/* As rp_op_run, sleeping with sleep(ud, ms) instead; a non-zero return cancels the op
 * (RP_ECANCELED). sleep NULL: nanosleep. */
int rp_op_run_sleeping(rp_op *op, rp_transport *t, int (*sleep)(void *ud, uint64_t ms),
                       void *ud, rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
