/* redpat — what the single-instance lock (lock.c) and Redlock (redlock.c) share: the handle
 * itself and the pieces of acquire both use. Never installed. */
#ifndef REDPAT_LOCK_INTERNAL_H
#define REDPAT_LOCK_INTERNAL_H

#include "op_internal.h"

struct rp_lock {
    rp_client *client;
    char *name;
    size_t name_len;
    rp_buf key;       /* <ns>:lock:{name} (the same key on every node of a Redlock) */
    rp_buf fence_key; /* <ns>:lock:{name}:fence */
    int64_t ttl_ms;
    char ttl_text[RP_I64_CHARS]; /* ttl_ms in decimal, formatted once */
    size_t ttl_len;
    int fenced;
    size_t nodes;            /* 1: one instance; N (odd, >= 3): a Redlock over the client's
                                N endpoints, node i being endpoint i */
    int64_t node_timeout_ms; /* Redlock: each round's per-node timeout; 0 for one instance */
    char *token;      /* NULL: not held by this handle */
    size_t token_len;
    int64_t fence;
    uint64_t acquired_ms; /* monotonic: when the successful acquire was sent */
    uint64_t renewed_ms;  /* ... and the last successful extend (or the acquire) */
};

/* Makes a handle with everything but the checks of its constructor (rp_lock_new,
 * rp_redlock_new: name and ttl are checked here). */
RP_INTERNAL int rp_lock__create(rp_lock **out, rp_client *client, const void *name,
                                size_t name_len, int64_t ttl_ms, int fenced, size_t nodes,
                                int64_t node_timeout_ms, const char *what, rp_error *err);
RP_INTERNAL void rp_lock__forget_token(rp_lock *l);
/* A copy of the caller's token, or 128 random bits from the OS CSPRNG in hex. */
RP_INTERNAL int rp_lock__make_token(const rp_allocator *a, const rp_lock_acquire_options *o,
                                    char **token, size_t *len, rp_error *err);
RP_INTERNAL int rp_lock__check_acquire_options(const rp_lock_acquire_options *o, rp_error *err);
/* rp_lock__next_delay's answer when sleeping the next delay would pass the wait's end. */
#define RP_LOCK_GIVE_UP (-1)
/* The next retry delay of a busy acquire (jittered exponential backoff: [d/2, d], d
 * doubling from retry_min up to retry_max), never past busy_pttl (>= 0: when the holder's
 * key expires; -1: unknown); advances *backoff_ms. >= 1; RP_LOCK_GIVE_UP when the attempt after it
 * would come after the wait's end (as redis-py's Lock: a wait gives up rather than sleep
 * past its blocking_timeout). */
RP_INTERNAL int64_t rp_lock__next_delay(int64_t *backoff_ms, const rp_lock_acquire_options *o,
                                        uint64_t elapsed_ms, int64_t busy_pttl);
/* 1 when a busy acquire that began elapsed_ms ago must give up now (its wait ran out). */
RP_INTERNAL int rp_lock__wait_over(const rp_lock_acquire_options *o, uint64_t elapsed_ms);

/* One plain acquire attempt of l with token on node (= the client's endpoint node):
 * SET key token NX PX ttl GET (Redis >= 7.0), or on an endpoint known to be older
 * (rp_script__pre7) the lock_acquire script, which answers the same way. *script_out (may
 * be NULL) is set to whether the script was queued. Replies: see rp_lock__set_answer. */
RP_INTERNAL int rp_lock__queue_set(rp_op *op, const rp_lock *l, size_t node, const char *token,
                                   size_t token_len, int *script_out);
/* What an attempt's reply means. */
enum {
    RP_SET_ACQUIRED = 1, /* nil: the key was free and is ours now */
    RP_SET_BUSY = 0,     /* a string (the holder's token): someone else holds it */
    RP_SET_PRE7 = 2      /* SET NX GET refused with "ERR syntax error" (Redis < 7): the
                            endpoint is now known pre7; ask again (the script) */
};
/* Classifies the reply r to an attempt queued by rp_lock__queue_set (sent_script: it was
 * the script, so a syntax error is no pre-7 sign). Returns an RP_SET_* value, or RP_EREPLY
 * (an error reply: WRONGTYPE, OOM, ...) / RP_EPROTOCOL (any other reply) with why filled
 * (Redis' words, or "expected ..., got ..."). On RP_SET_PRE7 the caller learns pre7 for the
 * node (rp_script__learn_pre7) and asks again. */
RP_INTERNAL int rp_lock__set_answer(const rp_reply *r, int sent_script, char *why, size_t size);

/* Redlock versions of the lock ops (redlock.c); lock.c dispatches to them for handles of
 * more than one node, and its *_result functions fall back to these readers. */
RP_INTERNAL int rp_redlock__acquire_op(rp_op **out, rp_lock *lock,
                                       const rp_lock_acquire_options *o, rp_error *err);
RP_INTERNAL int rp_redlock__acquire_result(const rp_op *op, rp_lock_acquisition *out);
RP_INTERNAL int rp_redlock__release_op(rp_op **out, rp_lock *lock, rp_error *err);
RP_INTERNAL int rp_redlock__extend_op(rp_op **out, rp_lock *lock, int64_t ms, int replace,
                                      rp_error *err);
/* owned_query 0: locked, 1: owned */
RP_INTERNAL int rp_redlock__query_op(rp_op **out, rp_lock *lock, int owned_query,
                                     rp_error *err);
RP_INTERNAL int rp_redlock__query_result(const rp_op *op, int *value);
RP_INTERNAL int rp_redlock__remaining_op(rp_op **out, rp_lock *lock, rp_error *err);
RP_INTERNAL int rp_redlock__remaining_result(const rp_op *op, rp_lock_remaining *out);

#endif
