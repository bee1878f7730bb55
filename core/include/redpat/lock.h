/* redpat — distributed locks: with fencing tokens on one Redis primary, or Redlock over N
 * independent instances (rp_redlock_new, below).
 *
 * Keys (all in one cluster slot, hash-tagged on the lock name):
 *   <ns>:lock:{<name>}         the lock: owner token, always with a TTL
 *   <ns>:lock:{<name>}:fence   fencing counter; persists (a counter that expired would
 *                              hand out old numbers again)
 *   <ns>:fence:{<resource>}    highest fencing token a resource has seen; persists
 *
 * Redis Cluster takes the hash tag up to the first '}' in the name, so every key of one lock
 * still shares a slot when the name holds a '}' -- unless the name starts with one: then the
 * tag is empty and a fenced lock's two keys may land in different slots.
 *
 * A lock handle remembers the owner token of its last successful acquire. Ops made from a
 * handle borrow it: free the ops before the handle. */
#ifndef REDPAT_LOCK_H
#define REDPAT_LOCK_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_lock rp_lock;

/* Limits, tested at the edge. */
#define RP_LOCK_NAME_MAX 65536       /* bytes in a lock's name */
#define RP_LOCK_TOKEN_MAX 512        /* bytes in an owner token */
#define RP_FENCE_RESOURCE_MAX 65536  /* bytes in a fenced resource's name */

typedef struct rp_lock_options {
    int64_t ttl_ms;  /* > 0: how long a holder keeps the lock without extending it */
    int fenced;      /* non-zero: each acquire also hands out a fencing token (same script) */
} rp_lock_options;

#define RP_LOCK_TTL_MS_DEFAULT 30000
#define RP_LOCK_OPTIONS_INIT { RP_LOCK_TTL_MS_DEFAULT, 0 }

/* Creates a handle for the lock called name (1..65536 bytes, binary-safe). No I/O.
 * The client is borrowed and must outlive the handle. *out belongs to the caller:
 * rp_lock_free. Returns RP_OK, RP_EINVAL (empty name, ttl 0, a client over more than one
 * endpoint: that is a Redlock, rp_redlock_new), RP_ENOMEM. */
int rp_lock_new(rp_lock **out, rp_client *client, const void *name, size_t name_len,
                const rp_lock_options *options, rp_error *err);

/* --- Redlock --------------------------------------------------------------------------
 *
 * A Redlock handle is an rp_lock over all N endpoints of its client (N odd, >= 3: a client
 * made from N comma-separated URLs of independent primaries, no replication between them).
 * Every lock function below takes it and runs the quorum version (quorum Q = N/2 + 1);
 * each op asks all N nodes in ONE parallel round with a per-node timeout (node_timeout,
 * much smaller than the ttl), and the round of acquire, extend and the queries ends as soon
 * as its outcome is decided (Q answers for, or N - Q + 1 against), so a stopped node delays
 * them nothing while a majority is up. Every node holds the same key (<ns>:lock:{<name>})
 * with the same owner token.
 *
 *   acquire   SET key token NX PX ttl on every node. Acquired when Q nodes said yes AND
 *             validity = ttl - elapsed - drift > 0, where elapsed runs from the attempt's
 *             sending to the decision (the op's monotonic clock) and drift = ceil(ttl /
 *             100) + 2 ms (clock-rate differences between the nodes). Otherwise the token
 *             is deleted again on every node (owner-checked; the nodes that said yes or
 *             were not waited for are waited for, a node that timed out or failed is
 *             sent the delete but not waited for),
 *             and the attempt is retried with the same jittered backoff, wait, retry_min
 *             and retry_max as one instance. The op fails (RP_ETIMEOUT, RP_ETRANSPORT,
 *             RP_EREPLY, as its nodes did) only when no node at all answered an attempt.
 *             rp_lock_acquisition.validity_ms reports the validity.
 *   release   owner-checked delete on every node, waiting for each (within node_timeout:
 *             a stopped node costs one node_timeout here, so that no delete is left
 *             unsent). DONE when Q nodes deleted the token; RP_ENOTOWNED when Q nodes
 *             answered that they do not hold it; otherwise (the unreachable nodes decide)
 *             the failure of the first unreachable node. The handle forgets its token in
 *             every case.
 *   extend    on every node, atomically: if the key holds the token, extend its TTL as
 *             one instance does; if the key is absent (a node restarted without it), set
 *             it again with the token and a TTL of ms. DONE when Q nodes still held the
 *             token (re-taken nodes do not count towards Q: only a surviving key proves
 *             the hold went on) AND the validity of the extension > 0 (the Q-th longest
 *             new TTL - elapsed - its drift); the re-taken nodes then belong to the hold.
 *             Otherwise the token is deleted on every node and the op ends RP_ENOTOWNED
 *             (the handle forgets it) -- unless unreachable nodes decide, which gives their
 *             failure and keeps the token (it may still be held).
 *   locked    EXISTS on every node: 1 when Q nodes hold the key (whoever's token: an
 *             acquire now must fail), 0 when Q nodes do not; else the unreachable nodes'
 *             failure.
 *   owned     GET on every node: 1 when Q nodes hold this handle's token, 0 when Q do not
 *             (or without I/O when the handle holds no token); else the failure.
 *   remaining owned as above (one owner-checked script per node); remaining_ms is the
 *             Q-th longest TTL among the nodes that answered with the token (the hold lasts
 *             while a quorum holds it; no drift subtracted); else as owned.
 *
 * Scripts go to the nodes with their source (EVAL), so a node that forgot them (restart,
 * failover) costs no second round trip.
 *
 * A round that ends at its quorum does not wait for the other nodes: they were sent their
 * request and run it a moment later (or, if stopped, when they wake up). So right after an
 * acquire or extend returns, a minority of the nodes may not reflect it yet. A node that
 * was down through a failed acquire's clean-up may keep a key of ours until its TTL: a
 * minority never blocks anyone, and it expires.
 *
 * What Redlock does NOT promise. Its safety rests on timing assumptions: that the nodes'
 * clocks advance at about the same rate (a clock jump on a node -- an operator, NTP
 * stepping it -- expires the key early there), that the holder is not paused longer than
 * its validity (GC, swapping, SIGSTOP, a VM migration: the holder wakes up believing it
 * still holds the lock), and that a node that restarts remembers its keys (without AOF
 * with appendfsync always, a restarted node forgets the key and a second client may gather
 * a majority; delay restarts by a ttl, or fsync every write). It is an efficiency lock:
 * good for avoiding duplicate work. Where a second holder would corrupt data, a fencing
 * token checked by the storage is the answer -- and fencing needs a single counter, so use
 * a fenced lock on one primary (rp_lock_new with fenced, and rp_fence_check) instead.
 * That is also why Redlock has no fenced option: N independent counters give no order. */

typedef struct rp_redlock_options {
    int64_t ttl_ms;          /* > 0: how long a holder keeps the lock without extending it */
    int64_t node_timeout_ms; /* 1..ttl_ms: per-node timeout of every round */
} rp_redlock_options;

#define RP_REDLOCK_NODE_TIMEOUT_MS_DEFAULT 50
#define RP_REDLOCK_OPTIONS_INIT { RP_LOCK_TTL_MS_DEFAULT, RP_REDLOCK_NODE_TIMEOUT_MS_DEFAULT }

/* Creates a Redlock handle called name over every endpoint of client (N odd, >= 3). No
 * I/O. Ownership as rp_lock_new; free it with rp_lock_free. Returns RP_OK, RP_EINVAL (an
 * even or too small number of endpoints, empty name, ttl 0, node_timeout outside 1..ttl),
 * RP_ENOMEM. */
int rp_redlock_new(rp_lock **out, rp_client *client, const void *name, size_t name_len,
                   const rp_redlock_options *options, rp_error *err);

/* Frees the handle; it does not release the lock in Redis (it expires). NULL is a no-op. */
void rp_lock_free(rp_lock *lock);

#define RP_WAIT_FOREVER INT64_MAX

typedef struct rp_lock_acquire_options {
    int64_t wait_ms;       /* 0: try once; > 0: retry while the next attempt comes within
                              this long (one that would come later is not made: the acquire
                              gives up at once); RP_WAIT_FOREVER: until acquired */
    int64_t retry_min_ms;  /* first retry delay (> 0); doubles up to retry_max_ms */
    int64_t retry_max_ms;  /* >= retry_min_ms; each delay is jittered to [d/2, d] */
    const void *token;     /* owner token to use (1..512 bytes); NULL: 128 random bits from
                              the OS CSPRNG, hex-encoded */
    size_t token_len;
} rp_lock_acquire_options;

#define RP_LOCK_RETRY_MIN_MS_DEFAULT 10
#define RP_LOCK_RETRY_MAX_MS_DEFAULT 200
#define RP_LOCK_ACQUIRE_OPTIONS_INIT \
    { 0, RP_LOCK_RETRY_MIN_MS_DEFAULT, RP_LOCK_RETRY_MAX_MS_DEFAULT, NULL, 0 }

typedef struct rp_lock_acquisition {
    int acquired;      /* 1: the handle holds the lock now; 0: busy until the wait ran out */
    int64_t fence;     /* fenced locks: the fencing token of this acquire (> 0), else 0 */
    uint32_t attempts; /* how many times Redis was asked (Redlock: rounds over all nodes) */
    int64_t validity_ms; /* acquired: how long the hold is safe from the op's end: ttl -
                            elapsed since the request was sent (Redlock: - drift too; > 0);
                            0 when not acquired (and, for one instance, when the reply took
                            longer than the ttl) */
} rp_lock_acquisition;

/* Acquire: one round trip per attempt (SET NX PX, or one script when fenced). On success
 * the handle keeps the new owner token; on "busy" it keeps the one it had.
 * Returns RP_OK or RP_EINVAL / RP_ENOMEM before any I/O. */
int rp_lock_acquire_op(rp_op **out, rp_lock *lock, const rp_lock_acquire_options *options,
                       rp_error *err);
/* The result of a DONE acquire op. RP_ESTATE if op is not a DONE acquire. */
int rp_lock_acquire_result(const rp_op *op, rp_lock_acquisition *out);
/* Blocking acquire over the lock's client. options NULL: try once. */
int rp_lock_acquire(rp_lock *lock, const rp_lock_acquire_options *options,
                    rp_lock_acquisition *out, rp_error *err);

/* Release: deletes the lock only if it still holds this handle's token (one script).
 * Ends DONE, or ERROR with RP_ENOTOWNED when the lock expired or belongs to someone else
 * (their key is left untouched). Beginning fails with RP_ENOTOWNED, before any I/O, when
 * the handle holds no token. Either way the handle forgets its token. */
int rp_lock_release_op(rp_op **out, rp_lock *lock, rp_error *err);
int rp_lock_release(rp_lock *lock, rp_error *err);

/* Extend: if the lock still holds this handle's token, add ms to its remaining TTL
 * (replace_ttl == 0) or set its TTL to ms (replace_ttl != 0). RP_ENOTOWNED as release
 * (the handle then forgets its token). ms must be > 0. */
int rp_lock_extend_op(rp_op **out, rp_lock *lock, int64_t ms, int replace_ttl, rp_error *err);
int rp_lock_extend(rp_lock *lock, int64_t ms, int replace_ttl, rp_error *err);

/* Queries, one command each. locked: anyone holds the lock. owned: this handle does.
 * The result is read with rp_lock_query_result (1 or 0). */
int rp_lock_locked_op(rp_op **out, rp_lock *lock, rp_error *err);
int rp_lock_owned_op(rp_op **out, rp_lock *lock, rp_error *err);
int rp_lock_query_result(const rp_op *op, int *value);
int rp_lock_locked(rp_lock *lock, int *value, rp_error *err);
int rp_lock_owned(rp_lock *lock, int *value, rp_error *err);

/* Remaining: how long the lock has left if this handle still holds it (one script, owner
 * checked on the server). DONE without I/O when the handle holds no token. */
typedef struct rp_lock_remaining {
    int owned;            /* 1: the handle holds the lock */
    int64_t remaining_ms; /* owned: the lock's TTL left (> 0); else 0 */
} rp_lock_remaining;

int rp_lock_remaining_op(rp_op **out, rp_lock *lock, rp_error *err);
int rp_lock_remaining_result(const rp_op *op, rp_lock_remaining *out);
int rp_lock_remaining_ms(rp_lock *lock, rp_lock_remaining *out, rp_error *err);

/* The handle's owner token (borrowed until the next acquire/release/free), or NULL with
 * *len 0 when it holds none. */
const char *rp_lock_token(const rp_lock *lock, size_t *len);
/* The fencing token of the handle's last successful fenced acquire, 0 if none. */
int64_t rp_lock_fence(const rp_lock *lock);
/* The lock's name and TTL as given to rp_lock_new (borrowed). */
const char *rp_lock_name(const rp_lock *lock, size_t *len);
int64_t rp_lock_ttl_ms(const rp_lock *lock);
/* Whether the lock hands out fencing tokens, and the client it was made from. */
int rp_lock_fenced(const rp_lock *lock);
rp_client *rp_lock_client(const rp_lock *lock);
/* How many nodes the lock is kept on: 1, or N for a Redlock; and a Redlock's per-node
 * timeout (0 for a lock on one instance). */
size_t rp_lock_nodes(const rp_lock *lock);
int64_t rp_lock_node_timeout_ms(const rp_lock *lock);

/* Fence check, for storage that receives fenced writes: atomically records token as the
 * highest seen for resource if it is >= the highest so far. accepted is 0 for an older
 * token (a stale holder): the write must be refused. */
typedef struct rp_fence_result {
    int accepted;
    int64_t highest; /* the highest token recorded for resource after this check */
} rp_fence_result;

/* resource: 1..65536 bytes, binary-safe; token > 0. */
int rp_fence_check_op(rp_op **out, rp_client *client, const void *resource,
                      size_t resource_len, int64_t token, rp_error *err);
int rp_fence_check_result(const rp_op *op, rp_fence_result *out);
int rp_fence_check(rp_client *client, const void *resource, size_t resource_len,
                   int64_t token, rp_fence_result *out, rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
