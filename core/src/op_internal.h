/* redpat — the operation engine, as seen by pattern implementations.
 *
 * A pattern is an rp_op_class whose advance() is called at the start, after every
 * completed IO round and after every sleep. advance() reads the last round's replies and
 * then either queues commands (-> IO), asks for a sleep (-> SLEEP), calls rp_op__done
 * (-> DONE), or returns rp_op__fail(...) (-> ERROR). The engine formats, sends, parses and
 * handles NOSCRIPT (re-sending the script with EVAL) without the pattern noticing. */
#ifndef REDPAT_OP_INTERNAL_H
#define REDPAT_OP_INTERNAL_H

#include "internal.h"
#include "reply_check.h"

typedef struct rp_op_class {
    const char *name;
    size_t state_size;
    int (*advance)(rp_op *op, void *state, uint64_t now_ms);
    void (*destroy)(rp_op *op, void *state); /* may be NULL */
    /* non-zero: a node failure is reported to advance (rp_op__node_status) instead of
     * failing the whole op (quorum patterns) */
    int tolerates_node_failures;
    /* Quorum ops: called after each target of a round is complete (fed or failed); return
     * 1 when the round has enough (the driver then abandons the targets still pending,
     * which advance sees failed with RP_ECANCELED). NULL: wait for every target. */
    int (*enough)(const rp_op *op, const void *state);
    /* non-zero: rp_op_cancel is handled by advance (rp_op__cancelled) to clean up; else a
     * cancelled op ends in ERROR RP_ECANCELED at its next step. Once cancelled, such an op
     * reads the round the cancel broke itself, even if it does not tolerate node failures
     * (rp_op__in_doubt: what may have been applied). */
    int handles_cancel;
    /* non-zero: the op is long-lived (rp_op_long_lived) */
    int long_lived;
    /* non-zero: the op talks to the connection its driver gives it (a handshake), never
     * routed to a cluster's nodes */
    int direct;
    /* non-zero: while its CALL runs the op has nothing to do (no renewal): a blocking
     * driver runs the callback without a helper thread stepping the op meanwhile */
    int idle_during_call;
} rp_op_class;

/* Creates an op of cls for client over nodes nodes; *state_out is zeroed state. */
RP_INTERNAL int rp_op__new(rp_op **out, rp_client *client, const rp_op_class *cls,
                           size_t nodes, void **state_out, rp_error *err);
/* The same, with every node talking to the client's endpoint (instead of node i to endpoint
 * i): on a cluster each node is routed on its own, so commands bound for several masters go
 * to all of them in one parallel round (one node each) instead of one master after the
 * other. */
RP_INTERNAL int rp_op__new_on(rp_op **out, rp_client *client, const rp_op_class *cls,
                              size_t nodes, size_t endpoint, void **state_out, rp_error *err);
/* The op's state if op is of class cls and DONE, else NULL. */
RP_INTERNAL const void *rp_op__done_state(const rp_op *op, const rp_op_class *cls);
RP_INTERNAL rp_client *rp_op__client(const rp_op *op);
/* The op's state if op is of class cls (any phase: an EMITting op's message), else NULL. */
RP_INTERNAL void *rp_op__state(const rp_op *op, const rp_op_class *cls);
/* Records the descriptor the generic begin made op from (read by rp_op_result). */
RP_INTERNAL void rp_op__set_desc(rp_op *op, const rp_op_desc *desc);

/* Queue a command for node in the next round. argv is copied. */
RP_INTERNAL int rp_op__command(rp_op *op, size_t node, int argc, const char *const *argv,
                               const size_t *argvlen);
/* On a cluster, node's commands go to the master of key's slot (the key is copied),
 * whatever keys they have: raw commands the core cannot read the keys of. No effect on a
 * plain endpoint. */
RP_INTERNAL int rp_op__route_key(rp_op *op, size_t node, const char *key, size_t len);
/* Queue an embedded script (by file name) with keys then args, as EVALSHA. */
RP_INTERNAL int rp_op__script(rp_op *op, size_t node, const char *script, int nkeys,
                              int nargs, const char *const *argv, const size_t *argvlen);

/* Replies of the round just completed, in queue order (borrowed until advance returns). */
RP_INTERNAL size_t rp_op__replies(const rp_op *op, size_t node);
RP_INTERNAL const rp_reply *rp_op__reply(const rp_op *op, size_t node, size_t index);
/* Moves a reply out of the op; the caller then owns it. */
RP_INTERNAL rp_reply *rp_op__take_reply(rp_op *op, size_t node, size_t index);
/* RP_OK, or how node failed in the round just completed (tolerant classes only). */
RP_INTERNAL int rp_op__node_status(const rp_op *op, size_t node);
/* Why node failed (empty string when it did not). */
RP_INTERNAL const char *rp_op__node_why(const rp_op *op, size_t node);

RP_INTERNAL void rp_op__sleep(rp_op *op, uint64_t ms);
/* Per-target timeout for the next round (0: the driver's command timeout). Sticks until
 * changed. */
RP_INTERNAL void rp_op__timeout(rp_op *op, uint64_t ms);
/* The node's next round listens (long-lived ops): commands queued for it are sent but owe
 * no reply each; whatever whole replies arrive are the round's replies
 * (rp_op__replies / rp_op__reply), possibly none when the driver steps early. */
RP_INTERNAL void rp_op__listen(rp_op *op, size_t node);
/* Hand the user a message (-> EMIT); the descriptor's message() reads it from the state. */
RP_INTERNAL void rp_op__emit(rp_op *op);
/* Ask the driver to start the callback argument arg (-> CALL). advance is then called as
 * usual after every round and sleep while it runs (rp_op__call_running), and once more
 * after it has ended (rp_op__call_result). With nothing else to do while it runs, advance
 * just returns: the driver waits for the callback. */
RP_INTERNAL void rp_op__call(rp_op *op, size_t arg);
/* The same, handing the callback values[0..count) (borrowed: the op's state keeps them
 * until the callback has ended). */
RP_INTERNAL void rp_op__call_with(rp_op *op, size_t arg, const rp_value *values, size_t count);
/* 1 when the op whose CALL is waiting (op, or the child it delegated to) has nothing to do
 * while the callback runs (its class's idle_during_call). */
RP_INTERNAL int rp_op__idle_during_call(const rp_op *op);
/* 1 while the callback started by rp_op__call has not ended. */
RP_INTERNAL int rp_op__call_running(const rp_op *op);
/* Once it has ended: RP_OK (*bytes / *len: what it returned, NULL when nothing), or
 * RP_ECALLBACK / RP_ECANCELED with *bytes the message. Borrowed until rp_op_free. */
RP_INTERNAL int rp_op__call_result(const rp_op *op, const char **bytes, size_t *len);
/* 1 once rp_op_cancel was called (classes with handles_cancel clean up, then fail with
 * RP_ECANCELED). */
RP_INTERNAL int rp_op__cancelled(const rp_op *op);
/* 1 when node failed in the round just completed (cancelled, timed out, dropped) with some
 * of its requests unanswered: they may have been sent and applied by Redis, nobody knows.
 * 0 when the driver said nothing was written (rp_op_fail_node_unsent). What a cancelled or
 * failed op compensates for (a lock.acquire releases what its SET may have taken). */
RP_INTERNAL int rp_op__in_doubt(const rp_op *op, size_t node);
/* Hands the driver to child (an op of the same client, owned by op from now on): op's steps
 * are child's until it ends; then op's advance runs again and reads it with rp_op__child
 * (valid until the next delegation or rp_op_free). Lets an op reuse whole ops (lock.using
 * runs lock.acquire, lock.extend, lock.release, whatever kind of lock it has). */
RP_INTERNAL void rp_op__delegate(rp_op *op, rp_op *child);
/* The ended child (NULL while it runs or when there is none). */
RP_INTERNAL rp_op *rp_op__child(const rp_op *op);
/* 1 when the ended child failed (its rp_op_error says why). */
RP_INTERNAL int rp_op__child_failed(const rp_op *op);
/* 1 right after an EMIT step (the current message may be read). */
RP_INTERNAL int rp_op__emitting(const rp_op *op);
RP_INTERNAL void rp_op__done(rp_op *op);
/* Records the failure and returns code (negative). */
RP_INTERNAL int rp_op__fail(rp_op *op, int code, const char *fmt, ...) RP_PRINTF(3, 4);

/* --- strict replies (reply_check.c; the reply forms are in reply_check.h) ------------
 * An op reads only replies of exactly the shape and range it documents; anything else is
 * RP_EPROTOCOL "<op>: expected <what>, got <the reply described>", never a success. An
 * error reply is RP_EREPLY "<op>: <Redis' message>". These fail op with it. */
RP_INTERNAL int rp_op__expected(rp_op *op, const rp_reply *r, const char *what);
RP_INTERNAL int rp_op__expect_int(rp_op *op, const rp_reply *r, const char *what,
                                  long long min, long long max);
RP_INTERNAL int rp_op__expect_status(rp_op *op, const rp_reply *r, const char *status);
RP_INTERNAL int rp_op__expect_array(rp_op *op, const rp_reply *r, const char *types,
                                    const char *what);

#endif
