/* redpat — the sans-IO operation model.
 *
 * Every pattern operation is an rp_op: a small state machine that never touches a socket.
 * It asks its driver for I/O, for a sleep, and ends DONE (read the typed result with the
 * pattern's *_result function) or ERROR. One driver loop serves every pattern:
 *
 *     for (;;) switch (rp_op_step(op, rp_monotonic_ms())) {
 *     case RP_STEP_IO:    for each node with a request: write rp_op_request() bytes,
 *                         then rp_op_feed() what is read until it returns RP_OK;
 *                         on a socket failure call rp_op_fail_node() instead.
 *     case RP_STEP_SLEEP: sleep rp_op_sleep_ms(op) milliseconds.
 *     case RP_STEP_DONE:  read the result; rp_op_free(op).
 *     case RP_STEP_ERROR: rp_op_error(op); rp_op_free(op).
 *     }
 *
 * The core formats the requests (RESP) and parses the replies, so a driver only moves
 * bytes. An op belongs to one thread at a time. */
#ifndef REDPAT_OP_H
#define REDPAT_OP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "reply.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_op rp_op;

typedef enum rp_step {
    RP_STEP_IO = 1,    /* send rp_op_request() to each node that has one; feed the replies */
    RP_STEP_SLEEP = 2, /* wait rp_op_sleep_ms() milliseconds, then step again */
    RP_STEP_DONE = 3,  /* finished; the pattern's *_result function reads the outcome */
    RP_STEP_ERROR = 4  /* failed; rp_op_error() says why */
} rp_step;

/* Returned by rp_op_feed while a node's replies are still incomplete. */
#define RP_MORE 1

/* Advances the op. now_ms is a monotonic clock reading in milliseconds (rp_monotonic_ms()
 * or the driver's own); only differences between readings matter, so tests may fake it.
 * After IO, call again once every node that had a request has been fed to RP_OK or failed.
 * After DONE or ERROR it keeps returning the same value. */
rp_step rp_op_step(rp_op *op, uint64_t now_ms);

/* Number of Redis nodes the op talks to (1 for every single-instance pattern). */
size_t rp_op_nodes(const rp_op *op);

/* The RESP bytes to write to node in the current IO step; *len == 0 means nothing for that
 * node this time. The bytes are borrowed from the op until the next rp_op_step or
 * rp_op_free. Returns RP_OK, or RP_EINVAL for a bad node index / RP_ESTATE outside IO. */
int rp_op_request(const rp_op *op, size_t node, const char **bytes, size_t *len);

/* Feeds bytes read from node. Returns RP_OK once all the replies the node owes are in,
 * RP_MORE if more bytes are needed, or a negative status (RP_EPROTOCOL, RP_ENOMEM,
 * RP_ESTATE) on failure, which also fails the node. Bytes past the last owed reply are a
 * protocol error (requests and replies go in lock-step). */
int rp_op_feed(rp_op *op, size_t node, const char *buf, size_t len);

/* Tells the op that node failed during this IO step (connection lost, timeout, ...).
 * status is an rp_status (RP_ETRANSPORT, RP_ETIMEOUT, ...); why is copied (may be NULL). */
void rp_op_fail_node(rp_op *op, size_t node, int status, const char *why);

/* How long to sleep, valid after RP_STEP_SLEEP. */
uint64_t rp_op_sleep_ms(const rp_op *op);

/* Why the op failed, valid after RP_STEP_ERROR; borrowed until rp_op_free. */
const rp_error *rp_op_error(const rp_op *op);

/* The operation's name, e.g. "lock.acquire" (static string). */
const char *rp_op_name(const rp_op *op);

/* Frees the op and everything it owns. NULL is a no-op. Ops may be freed in any state. */
void rp_op_free(rp_op *op);

/* A monotonic clock in milliseconds, for drivers that have none of their own. */
uint64_t rp_monotonic_ms(void);

#ifdef __cplusplus
}
#endif
#endif
