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
    /* One IO round for node of op: write the op's request bytes for node, then read and
     * rp_op_feed until it returns RP_OK. Returns RP_OK, or a failure status with details in
     * err; the transport must then be usable again (reconnecting on its next exchange). */
    int (*exchange)(rp_transport *t, rp_op *op, size_t node, rp_error *err);
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
