/* redpat — the sans-IO operation model.
 *
 * Every pattern operation is an rp_op: a small state machine that never touches a socket.
 * It asks its driver for I/O, for a sleep, and ends DONE (read the typed result with the
 * pattern's *_result function) or ERROR. One driver loop serves every pattern:
 *
 *     for (;;) switch (rp_op_step(op, rp_monotonic_ms())) {
 *     case RP_STEP_IO:    a parallel round over the op's targets (below)
 *     case RP_STEP_SLEEP: sleep rp_op_sleep_ms(op) milliseconds (while a CALL is running:
 *                         until then or until the callback returns, whichever is first)
 *     case RP_STEP_CALL:  start the user callback the op names (describe.h: rp_op_call);
 *                         keep stepping; rp_op_resume(...) once it has returned
 *     case RP_STEP_EMIT:  hand the user one message (describe.h: rp_op_message)
 *     case RP_STEP_DONE:  read the result; rp_op_free(op).
 *     case RP_STEP_ERROR: rp_op_error(op); rp_op_free(op).
 *     }
 *
 * Targets and rounds. An op talks to rp_op_nodes(op) targets ("nodes"); rp_op_target says
 * where each one is (an endpoint of the client, or an address the core resolved), and its
 * `address` is the key of the driver's connection pool. In an IO round, first write every
 * target's rp_op_request() bytes (those with *len > 0), then read all of them as replies
 * arrive, feeding each target's bytes to rp_op_feed until it returns RP_OK; a target whose
 * connection fails, or that has not answered within its timeout (rp_op_timeout_ms, or the
 * driver's own command timeout when 0), is reported with rp_op_fail_node. After each feed
 * or failure check rp_op_round_over(): once it is 1 the round is over even if targets are
 * still pending (a quorum op has enough answers): step, and never read a late reply of the
 * targets for which rp_op_pending() is still 1 as the answer to a later request — close
 * their connections, or keep each one with the number of replies it still owes
 * (rp_op_replies_owed) and read and drop those before its next request's replies (the
 * blocking transport and the cosocket driver do that: no reconnect per quorum round, and
 * one server's requests stay in order on one connection). A connection half written or
 * half read is always closed. Every other connection goes back to its pool.
 *
 * Long-lived ops (rp_op_long_lived: a subscription) keep one connection per target for
 * themselves for their whole life. Their rounds may be listening rounds
 * (rp_op_listening): write the request bytes if any, then read with no deadline from the
 * core; feed returns RP_OK as soon as at least one whole message is in. The driver may
 * step a listening op at any time, even with nothing read (to pick up new requests: the
 * op then returns IO again), and may stop reading when its user's own wait runs out.
 *
 * The core formats the requests (RESP) and parses the replies, so a driver only moves
 * bytes. An op belongs to one thread at a time (while a CALL runs, the thread that steps
 * it may be another than the one running the callback: the driver hands it over). */
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
    RP_STEP_ERROR = 4, /* failed; rp_op_error() says why */
    RP_STEP_CALL = 5,  /* start the user callback (rp_op_call); rp_op_resume when it ends */
    RP_STEP_EMIT = 6   /* one message for the user (rp_op_message); then step again */
} rp_step;

/* A SLEEP while a CALL is running that has no limit of its own: wait for the callback. */
#define RP_SLEEP_UNTIL_RESUMED UINT64_MAX

/* Returned by rp_op_feed while a node's replies are still incomplete. */
#define RP_MORE 1

/* Advances the op. now_ms is a monotonic clock reading in milliseconds (rp_monotonic_ms()
 * or the driver's own); only differences between readings matter, so tests may fake it.
 * After IO, call again once every node that had a request has been fed to RP_OK or failed.
 * After DONE or ERROR it keeps returning the same value. */
rp_step rp_op_step(rp_op *op, uint64_t now_ms);

/* Number of targets the op talks to (1 for every single-instance pattern; N for Redlock). */
size_t rp_op_nodes(const rp_op *op);

/* Where node's requests go. A client made from several URLs has one endpoint per URL;
 * each target of an op is one of them (or, later, an address the core resolved). The
 * strings are borrowed until rp_op_free. address is canonical ("127.0.0.1:6379/0",
 * "unix:/tmp/r.sock/0", with the user when there is one): pool connections by it. A fresh
 * connection runs the handshake of its endpoint first (rp_endpoint_handshake_op). */
struct rp_endpoint;
int rp_op_target(const rp_op *op, size_t node, struct rp_endpoint *out);

/* Per-target timeout of the current round in ms, or 0: the driver's command timeout. */
uint64_t rp_op_timeout_ms(const rp_op *op);

/* 1 while node has a request in flight in the current IO round whose replies are not all
 * in and that has not failed; else 0. */
int rp_op_pending(const rp_op *op, size_t node);

/* How many replies node still owes in the current IO round (0 when it is not pending). */
size_t rp_op_replies_owed(const rp_op *op, size_t node);

/* 1 once the current IO round may end: every target with a request has been fed to RP_OK
 * or failed, or the op says it has enough (a Redlock majority). Targets still pending then
 * are abandoned: close their connections. 0 while the driver must keep reading. */
int rp_op_round_over(const rp_op *op);

/* 1 for a long-lived op (a subscription): it keeps its connections to itself. */
int rp_op_long_lived(const rp_op *op);

/* 1 when node's round is a listening round (see above). */
int rp_op_listening(const rp_op *op, size_t node);

/* Cancels op (the user's task was cancelled, Ctrl-C, an aborted request): what it waits
 * for (a sleep, a callback) is abandoned and the op runs its clean-up (a lock.using
 * releases the lock), then ends in ERROR with RP_ECANCELED. Call it between steps (with no
 * request in flight: fail the pending targets first); keep stepping until ERROR. */
void rp_op_cancel(rp_op *op);

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

/* The same, for a node that failed before any byte of its request of this round was
 * written (the connect refused or timed out, the handshake failed): nothing of the request
 * can have reached Redis. A failure reported with rp_op_fail_node after the request (or a
 * part of it) went out leaves its commands in doubt -- Redis may have run them -- and an op
 * may compensate (a lock.acquire releases what its SET may have taken, on a fresh
 * connection); one reported with this call is not in doubt. A driver that cannot tell calls
 * rp_op_fail_node (the safe side). */
void rp_op_fail_node_unsent(rp_op *op, size_t node, int status, const char *why);

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
