/* Redlock (PATTERNS.md "Locks"): one lock over N independent Redis primaries, quorum
 * Q = N/2 + 1. Every op asks all N nodes in one parallel round with the lock's per-node
 * timeout, and the class's enough() ends the round as soon as the outcome is decided, so a
 * stopped node costs nothing while a majority answers. lock.h states the rules; lock.c
 * dispatches its ops here for handles of more than one node. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lock_internal.h"
#include "script.h"

#define RL_NODES_MIN 3
/* drift = ceil(ttl / 100) + 2 ms: the clock-rate difference allowed between the nodes */
#define RL_DRIFT_DIVISOR 100
#define RL_DRIFT_FLOOR_MS 2

/* What the replies of the round in flight mean (enough() reads them while they arrive). */
enum {
    ROUND_SET,       /* SET NX PX GET (or lock_acquire): nil / the holder's token */
    ROUND_RELEASE,   /* lock_release: 1 deleted / 0 not ours */
    ROUND_CLEANUP,   /* lock_release after a failed acquire or extend: best effort */
    ROUND_EXTEND,    /* redlock_extend: ttl > 0 extended / -ttl re-taken / 0 not ours */
    ROUND_EXISTS,    /* EXISTS: 1 / 0 */
    ROUND_GET,       /* GET: our token / nil or another */
    ROUND_REMAINING  /* lock_remaining: pttl > 0 / -2 not ours */
};

/* One node's answer. RETAKEN (extend only) counts against the quorum, but the node holds
 * our key. FAILED: no answer (timeout, connection, an error reply, a reply of a wrong
 * shape, or abandoned once the round had enough). */
enum { ANS_PENDING, ANS_YES, ANS_NO, ANS_RETAKEN, ANS_FAILED };

/* The head of every Redlock op's state: enough() sees only this. */
typedef struct rl_common {
    rp_lock *lock;
    int round;                                     /* ROUND_* */
    unsigned char must[RP_CLIENT_ENDPOINTS_MAX];   /* ROUND_CLEANUP: nodes waited for */
    unsigned char sent_script[RP_CLIENT_ENDPOINTS_MAX]; /* ROUND_SET: the node was sent the
                                                      lock_acquire script (pre-7) */
} rl_common;

typedef struct rl_tally {
    size_t yes, no, failed, pending;
    int64_t value[RP_CLIENT_ENDPOINTS_MAX]; /* YES / RETAKEN: the node's TTL */
    int answer[RP_CLIENT_ENDPOINTS_MAX];
} rl_tally;

static size_t quorum_of(const rp_lock *l) { return l->nodes / 2 + 1; }

static int64_t drift_of(int64_t ttl_ms)
{
    return (ttl_ms + RL_DRIFT_DIVISOR - 1) / RL_DRIFT_DIVISOR + RL_DRIFT_FLOOR_MS;
}

static const rp_allocator *alloc_of(const rp_op *op) { return rp_client__allocator(rp_op__client(op)); }

/* The node's answer this round; why (may be NULL) says why a node FAILED: a malformed
 * reply is a failed node with its description ("expected ..., got ..."), never a yes. */
static int answer_of(const rp_op *op, const rl_common *c, size_t node, int64_t *value,
                     char *why, size_t size)
{
    const rp_reply *r;
    int64_t v;
    int rc;
    if (rp_op__node_status(op, node) != RP_OK) {
        if (why && size)
            snprintf(why, size, "%s", rp_op__node_why(op, node));
        return ANS_FAILED;
    }
    if (!(r = rp_op__reply(op, node, 0)))
        return ANS_PENDING;
    switch (c->round) {
    case ROUND_SET:
        rc = rp_lock__set_answer(r, c->sent_script[node], why, size);
        return rc == RP_SET_ACQUIRED ? ANS_YES : rc == RP_SET_BUSY ? ANS_NO : ANS_FAILED;
    case ROUND_RELEASE:
    case ROUND_CLEANUP: /* lock_release: 1 deleted, 0 not ours */
    case ROUND_EXISTS:  /* EXISTS of one key */
        if (rp_reply__is_int(r, NULL, 0, 1, why, size) != RP_OK)
            return ANS_FAILED;
        return r->integer == 1 ? ANS_YES : ANS_NO;
    case ROUND_EXTEND: /* redlock_extend: ttl > 0, -ttl re-taken, 0 not ours */
        if (rp_reply__is_int(r, NULL, LLONG_MIN + 1, LLONG_MAX, why, size) != RP_OK)
            return ANS_FAILED;
        v = (int64_t)r->integer;
        if (value)
            *value = v < 0 ? -v : v;
        return v > 0 ? ANS_YES : v < 0 ? ANS_RETAKEN : ANS_NO;
    case ROUND_GET:
        if (r->type == RP_REPLY_NIL)
            return ANS_NO;
        if (r->type != RP_REPLY_STRING) {
            rp_reply__expected(r, "nil or a string (the holder's token)", why, size);
            return ANS_FAILED;
        }
        return c->lock->token && r->len == c->lock->token_len &&
               memcmp(r->str, c->lock->token, r->len) == 0 ? ANS_YES : ANS_NO;
    case ROUND_REMAINING:
    default:
        /* a key of ours without expiry (-1) is no answer we can trust: FAILED */
        if (r->type != RP_REPLY_INTEGER || (r->integer <= 0 && r->integer != -2)) {
            rp_reply__expected(r, "the lock's ttl (an integer >= 1) or -2 (not held)", why, size);
            return ANS_FAILED;
        }
        if (value)
            *value = r->integer;
        return r->integer > 0 ? ANS_YES : ANS_NO;
    }
}

static void tally(const rp_op *op, const rl_common *c, rl_tally *t)
{
    size_t i;
    memset(t, 0, sizeof *t);
    for (i = 0; i < c->lock->nodes; i++) {
        int a = answer_of(op, c, i, &t->value[i], NULL, 0);
        t->answer[i] = a;
        if (a == ANS_YES)
            t->yes++;
        else if (a == ANS_NO || a == ANS_RETAKEN)
            t->no++;
        else if (a == ANS_FAILED)
            t->failed++;
        else
            t->pending++;
    }
}

/* Ends a round once the answers still awaited cannot change its outcome. acquire: taken
 * (Q yes) or not (Q yes no longer possible). extend and the queries have three outcomes: Q
 * yes, Q no, or neither (the unreachable nodes decide: an error), fixed once neither side
 * can still reach Q. A release waits for every node (each within the per-node timeout): any
 * node may hold our key, and a delete not waited for may never go out. A clean-up waits for
 * the nodes that may hold our key (they said yes, or were not waited for). */
static int rl_enough(const rp_op *op, const void *state)
{
    const rl_common *c = state;
    size_t q = quorum_of(c->lock), i;
    rl_tally t;
    if (c->round == ROUND_RELEASE)
        return 0;
    if (c->round == ROUND_CLEANUP) {
        for (i = 0; i < c->lock->nodes; i++)
            if (c->must[i] && answer_of(op, c, i, NULL, NULL, 0) == ANS_PENDING)
                return 0;
        return 1;
    }
    tally(op, c, &t);
    if (t.yes >= q)
        return 1;
    if (c->round == ROUND_SET)
        return t.yes + t.pending < q;
    return t.no >= q || (t.yes + t.pending < q && t.no + t.pending < q);
}

/* How the first node that gave no answer failed (one that failed on its own rather than
 * being abandoned, when there is one), as "node I (address): why"; returns its status. */
static int first_failure(const rp_op *op, const rl_common *c, const rl_tally *t, char *buf,
                         size_t size)
{
    size_t i, pick = c->lock->nodes;
    rp_endpoint ep;
    const rp_reply *r;
    char why[RP_ERROR_MESSAGE_MAX - 64]; /* room for "node I (address): " around it */
    int code;
    for (i = c->lock->nodes; i-- > 0;) /* the first, preferring one not abandoned */
        if (t->answer[i] == ANS_FAILED &&
            (pick == c->lock->nodes || rp_op__node_status(op, i) != RP_ECANCELED ||
             rp_op__node_status(op, pick) == RP_ECANCELED))
            pick = i;
    if (pick == c->lock->nodes) {
        snprintf(buf, size, "no node failed");
        return RP_ESTATE;
    }
    if (rp_op_target(op, pick, &ep) != RP_OK)
        ep.address = "?";
    if ((code = rp_op__node_status(op, pick)) != RP_OK) {
        snprintf(buf, size, "node %zu (%s): %s", pick, ep.address, rp_op__node_why(op, pick));
        return code;
    }
    r = rp_op__reply(op, pick, 0);
    answer_of(op, c, pick, NULL, why, sizeof why);
    snprintf(buf, size, "node %zu (%s): %s", pick, ep.address, why);
    return r && r->type == RP_REPLY_ERROR ? rp_reply_error_status(r) : RP_EPROTOCOL;
}

/* The op fails as its unreachable nodes did: neither a quorum for nor one against. */
static int fail_unreached(rp_op *op, const rl_common *c, const rl_tally *t, const char *what)
{
    char why[RP_ERROR_MESSAGE_MAX];
    int code = first_failure(op, c, t, why, sizeof why);
    return rp_op__fail(op, code, "%s: %zu of %zu nodes said yes, %zu no, %zu could not "
                       "answer (a quorum is %zu); %s", what, t->yes, c->lock->nodes, t->no,
                       t->failed, quorum_of(c->lock), why);
}

/* Queues one command on every node. */
static int queue_all(rp_op *op, rl_common *c, int round, int argc, const char *const *argv,
                     const size_t *lens)
{
    size_t i;
    int rc;
    c->round = round;
    for (i = 0; i < c->lock->nodes; i++)
        if ((rc = rp_op__command(op, i, argc, argv, lens)))
            return rc;
    return RP_OK;
}

/* Queues an embedded script on every node (EVALSHA: a node that forgot it answers NOSCRIPT
 * and the engine sends it the source in a round of its own, waited for like the first, so
 * a restarted node costs one more round trip, never a timeout). */
static int queue_script_all(rp_op *op, rl_common *c, int round, const char *script, int nkeys,
                            int nargs, const char *const *argv, const size_t *lens)
{
    size_t i;
    int rc;
    c->round = round;
    for (i = 0; i < c->lock->nodes; i++)
        if ((rc = rp_op__script(op, i, script, nkeys, nargs, argv, lens)))
            return rc;
    return RP_OK;
}

/* Deletes token on every node (owner-checked); waits only for the nodes in holds[]. */
static int queue_cleanup(rp_op *op, rl_common *c, const unsigned char *holds,
                         const char *token, size_t token_len)
{
    const char *argv[] = { c->lock->key.data, token };
    size_t lens[] = { c->lock->key.len, token_len };
    memcpy(c->must, holds, c->lock->nodes);
    return queue_script_all(op, c, ROUND_CLEANUP, "lock_release", 1, 1, argv, lens);
}

static int new_op(rp_op **out, rp_lock *lock, const rp_op_class *cls, void **state,
                  rp_error *err)
{
    int rc = rp_op__new(out, lock->client, cls, lock->nodes, state, err);
    if (rc)
        return rc;
    ((rl_common *)*state)->lock = lock;
    rp_op__timeout(*out, (uint64_t)lock->node_timeout_ms);
    return RP_OK;
}

/* --- acquire ------------------------------------------------------------------------- */

enum { ACQ_START, ACQ_SENT, ACQ_CLEANING, ACQ_SLEEPING };

typedef struct rl_acquire {
    rl_common c;
    rp_lock_acquire_options o;
    char *token; /* candidate; moves to the lock on success */
    size_t token_len;
    int stage;
    uint64_t start_ms;
    uint64_t attempt_ms; /* when the attempt's requests were sent */
    int64_t backoff_ms;
    int answered;        /* some node answered the last attempt (yes or no) */
    int relearned;       /* some node refused SET NX GET (pre-7): ask again at once */
    int fail_code;       /* else how its first node failed */
    char fail_why[RP_ERROR_MESSAGE_MAX];
    rp_lock_acquisition result;
    int compensating;    /* cancelled: the release of what the attempt may hold is out */
} rl_acquire;

static int acquire_send(rp_op *op, rl_acquire *s, uint64_t now_ms)
{
    rp_lock *l = s->c.lock;
    size_t i;
    int rc, script;
    s->attempt_ms = now_ms;
    s->result.attempts++;
    s->stage = ACQ_SENT;
    s->c.round = ROUND_SET;
    for (i = 0; i < l->nodes; i++) {
        /* the single-instance lock's command (SET NX PX GET, or the script on pre-7) */
        if ((rc = rp_lock__queue_set(op, l, i, s->token, s->token_len, &script)))
            return rc;
        s->c.sent_script[i] = (unsigned char)script;
    }
    return RP_OK;
}

/* After a failed attempt (and its clean-up): give up, fail, or sleep and retry. */
static int acquire_retry(rp_op *op, rl_acquire *s, uint64_t now_ms)
{
    uint64_t elapsed = now_ms - s->start_ms;
    int64_t delay;
    if (rp_op__cancelled(op))
        return rp_op__fail(op, RP_ECANCELED, "lock.acquire: cancelled");
    if (s->relearned) {
        /* the same attempt, in words a Redis older than 7 knows, to the nodes that are */
        s->relearned = 0;
        s->result.attempts--;
        return acquire_send(op, s, now_ms);
    }
    if (!s->answered)
        return rp_op__fail(op, s->fail_code, "%s", s->fail_why);
    if (rp_lock__wait_over(&s->o, elapsed)
        || (delay = rp_lock__next_delay(&s->backoff_ms, &s->o, elapsed, -1)) == RP_LOCK_GIVE_UP) {
        rp_op__done(op);
        return RP_OK;
    }
    s->stage = ACQ_SLEEPING;
    rp_op__sleep(op, (uint64_t)delay);
    return RP_OK;
}

static int acquire_read(rp_op *op, rl_acquire *s, uint64_t now_ms)
{
    rp_lock *l = s->c.lock;
    unsigned char holds[RP_CLIENT_ENDPOINTS_MAX];
    int may_hold = 0, wrong;
    int64_t validity = l->ttl_ms - (int64_t)(now_ms - s->attempt_ms) - drift_of(l->ttl_ms);
    rl_tally t;
    size_t i;
    tally(op, &s->c, &t);
    for (i = 0; i < l->nodes; i++) {
        const rp_reply *r = rp_op__reply(op, i, 0);
        if (rp_op__node_status(op, i) == RP_OK && r &&
            rp_lock__set_answer(r, s->c.sent_script[i], NULL, 0) == RP_SET_PRE7) {
            rp_script__learn_pre7(rp_client__scripts(l->client), i);
            s->relearned = 1;
        }
    }
    if (t.yes >= quorum_of(l) && validity > 0 && !rp_op__cancelled(op)) {
        rp_lock__forget_token(l);
        l->token = s->token;
        l->token_len = s->token_len;
        l->fence = 0;
        l->acquired_ms = l->renewed_ms = s->attempt_ms;
        s->token = NULL;
        s->result.acquired = 1;
        s->result.validity_ms = validity;
        rp_op__done(op);
        return RP_OK;
    }
    s->answered = t.yes + t.no > 0;
    wrong = 0;
    if (s->answered && !s->relearned) {
        /* Nodes that answered with an error (WRONGTYPE) or a malformed reply stood between
         * this attempt and a quorum: that is the outcome, not "busy" (a waiting acquire
         * would retry until its wait ran out) */
        rl_tally bad = t;
        size_t nbad = 0;
        for (i = 0; i < l->nodes; i++) {
            if (t.answer[i] == ANS_FAILED && rp_op__node_status(op, i) == RP_OK)
                nbad++;
            else if (t.answer[i] == ANS_FAILED)
                bad.answer[i] = ANS_NO; /* first_failure: name a node that answered */
        }
        if (nbad > 0 && t.yes + nbad >= quorum_of(l)) {
            char why[RP_ERROR_MESSAGE_MAX - 96];
            s->answered = 0;
            wrong = 1;
            s->fail_code = first_failure(op, &s->c, &bad, why, sizeof why);
            if (snprintf(s->fail_why, sizeof s->fail_why, "lock.acquire: %zu of %zu nodes "
                         "said yes, %zu answered wrongly (a quorum is %zu); %s", t.yes,
                         l->nodes, nbad, quorum_of(l), why) < 0)
                s->fail_why[0] = '\0'; /* (a long description is cut to fit) */
        }
    }
    if (!s->answered && !wrong) {
        char why[RP_ERROR_MESSAGE_MAX - 64];
        s->fail_code = first_failure(op, &s->c, &t, why, sizeof why);
        /* (a node that answered with an error, OOM say, said neither yes nor no) */
        snprintf(s->fail_why, sizeof s->fail_why, "lock.acquire: none of the %zu nodes "
                 "answered yes or no; %s", l->nodes, why);
    }
    /* Every node that said yes holds our key, and one not waited for may: delete it
     * everywhere, waiting for those. One that failed (timed out, refused) may too (its SET
     * may have arrived), but is likely down: it is sent the delete, not waited for. */
    for (i = 0; i < l->nodes; i++) {
        holds[i] = t.answer[i] == ANS_YES || rp_op__node_status(op, i) == RP_ECANCELED;
        const rp_reply *r = rp_op__reply(op, i, 0);
        /* a malformed answer tells nothing: its SET may have run (an error reply: it did not) */
        may_hold |= t.answer[i] == ANS_YES || rp_op__node_status(op, i) != RP_OK ||
                    (t.answer[i] == ANS_FAILED && r && r->type != RP_REPLY_ERROR);
    }
    s->stage = ACQ_CLEANING;
    if (!may_hold)
        return acquire_retry(op, s, now_ms);
    return queue_cleanup(op, &s->c, holds, s->token, s->token_len);
}

/* The compensation's answers: every node sent it said 1 (deleted) or 0 (not ours), or how
 * many may stay held and why. */
static int compensated(rp_op *op, rl_acquire *s)
{
    rp_lock *l = s->c.lock;
    char why[RP_ERROR_MESSAGE_MAX / 2];
    int quoted = (int)(l->name_len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : l->name_len);
    rl_tally t;
    tally(op, &s->c, &t);
    if (t.failed == 0)
        return rp_op__fail(op, RP_ECANCELED, "lock.acquire: cancelled; the attempt in flight "
                           "%s", t.yes > 0 ? "was released" : "had not taken the lock");
    first_failure(op, &s->c, &t, why, sizeof why);
    return rp_op__fail(op, RP_ECANCELED, "lock.acquire: cancelled; lock \"%.*s\" may stay held "
                       "up to its ttl (%" PRId64 " ms) on %zu of %zu nodes: releasing it "
                       "failed: %s", quoted, l->name, l->ttl_ms, t.failed, l->nodes, why);
}

/* Cancelled (the class handles it): the nodes that may hold our key -- they said yes to the
 * attempt, or left it (or the clean-up of a lost one) unanswered -- are sent the release
 * with our token and waited for (fresh connections: the driver closed the broken ones);
 * then the op ends RP_ECANCELED saying what became of it. Nothing out there: at once. */
static int acquire_cancelled(rp_op *op, rl_acquire *s)
{
    rp_lock *l = s->c.lock;
    const char *argv[] = { l->key.data, s->token };
    size_t lens[] = { l->key.len, s->token_len };
    size_t i, n = 0;
    int rc;
    if (s->compensating)
        return compensated(op, s);
    for (i = 0; i < l->nodes; i++) {
        int a = answer_of(op, &s->c, i, NULL, NULL, 0);
        if (s->stage == ACQ_SENT)
            s->c.must[i] = a == ANS_YES || rp_op__in_doubt(op, i);
        else if (s->stage == ACQ_CLEANING) /* its delete not known to have been done */
            s->c.must[i] = s->c.must[i] && a == ANS_FAILED;
        else
            s->c.must[i] = 0; /* sleeping or not started: nothing sent */
        n += s->c.must[i];
    }
    if (n == 0)
        return rp_op__fail(op, RP_ECANCELED, "lock.acquire: cancelled");
    s->compensating = 1;
    s->stage = ACQ_CLEANING;
    s->c.round = ROUND_CLEANUP;
    for (i = 0; i < l->nodes; i++)
        if (s->c.must[i] && (rc = rp_op__script(op, i, "lock_release", 1, 1, argv, lens)))
            return rc;
    return RP_OK;
}

static int acquire_advance(rp_op *op, void *state, uint64_t now_ms)
{
    rl_acquire *s = state;
    if (rp_op__cancelled(op))
        return acquire_cancelled(op, s);
    switch (s->stage) {
    case ACQ_START:
        s->start_ms = now_ms;
        s->backoff_ms = s->o.retry_min_ms;
        return acquire_send(op, s, now_ms);
    case ACQ_SLEEPING:
        return acquire_send(op, s, now_ms);
    case ACQ_SENT:
        return acquire_read(op, s, now_ms);
    case ACQ_CLEANING:
    default:
        return acquire_retry(op, s, now_ms);
    }
}

static void acquire_destroy(rp_op *op, void *state)
{
    rl_acquire *s = state;
    rp_alloc__free(alloc_of(op), s->token);
}

static const rp_op_class acquire_class = {
    "lock.acquire", sizeof(rl_acquire), acquire_advance, acquire_destroy, 1, rl_enough, 1, 0, 0, 0
};

int rp_redlock__acquire_op(rp_op **out, rp_lock *lock, const rp_lock_acquire_options *o,
                           rp_error *err)
{
    rl_acquire *s;
    int rc;
    if ((rc = new_op(out, lock, &acquire_class, (void **)&s, err)))
        return rc;
    s->o = *o;
    s->o.token = NULL; /* the caller's buffer is not ours to keep */
    if ((rc = rp_lock__make_token(rp_client__allocator(lock->client), o, &s->token,
                                  &s->token_len, err))) {
        rp_op_free(*out);
        *out = NULL;
    }
    return rc;
}

int rp_redlock__acquire_result(const rp_op *op, rp_lock_acquisition *out)
{
    const rl_acquire *s = rp_op__done_state(op, &acquire_class);
    if (!s || !out)
        return RP_ESTATE;
    *out = s->result;
    return RP_OK;
}

/* --- release ------------------------------------------------------------------------- */

typedef struct rl_release {
    rl_common c;
    int sent;
} rl_release;

static int release_advance(rp_op *op, void *state, uint64_t now_ms)
{
    rl_release *s = state;
    rp_lock *l = s->c.lock;
    rl_tally t;
    (void)now_ms;
    if (!s->sent) {
        const char *argv[] = { l->key.data, l->token };
        size_t lens[] = { l->key.len, l->token_len };
        s->sent = 1;
        return queue_script_all(op, &s->c, ROUND_RELEASE, "lock_release", 1, 1, argv, lens);
    }
    tally(op, &s->c, &t);
    rp_lock__forget_token(l); /* released, expired, or unknowable: the hold is over */
    if (t.yes >= quorum_of(l)) {
        rp_op__done(op);
        return RP_OK;
    }
    if (t.no >= quorum_of(l))
        return rp_op__fail(op, RP_ENOTOWNED, "lock.release: the lock is no longer owned by "
                           "this handle (it expired or another holder has it): %zu of %zu "
                           "nodes held its token, a quorum is %zu", t.yes, l->nodes,
                           quorum_of(l));
    return fail_unreached(op, &s->c, &t, "lock.release");
}

static const rp_op_class release_class = {
    "lock.release", sizeof(rl_release), release_advance, NULL, 1, rl_enough, 0, 0, 0, 0
};

int rp_redlock__release_op(rp_op **out, rp_lock *lock, rp_error *err)
{
    rl_release *s;
    return new_op(out, lock, &release_class, (void **)&s, err);
}

/* --- extend -------------------------------------------------------------------------- */

enum { EXT_START, EXT_SENT, EXT_CLEANING };

typedef struct rl_extend {
    rl_common c;
    int stage;
    int64_t ms;
    int replace;
    uint64_t sent_ms;
    char why[RP_ERROR_MESSAGE_MAX]; /* why the hold is lost, for after the clean-up */
} rl_extend;

/* The Q-th longest TTL among the nodes holding our key: the hold lasts while Q do. */
static int64_t quorum_ttl(const rl_tally *t, size_t nodes, size_t q, int retaken_too)
{
    int64_t ttls[RP_CLIENT_ENDPOINTS_MAX];
    size_t i, j, n = 0;
    for (i = 0; i < nodes; i++) {
        int64_t v;
        if (t->answer[i] != ANS_YES && !(retaken_too && t->answer[i] == ANS_RETAKEN))
            continue;
        v = t->value[i];
        for (j = n++; j > 0 && ttls[j - 1] < v; j--) /* insertion, longest first */
            ttls[j] = ttls[j - 1];
        ttls[j] = v;
    }
    return n >= q ? ttls[q - 1] : 0;
}

static int extend_read(rp_op *op, rl_extend *s, uint64_t now_ms)
{
    rp_lock *l = s->c.lock;
    size_t q = quorum_of(l), i;
    unsigned char holds[RP_CLIENT_ENDPOINTS_MAX];
    rl_tally t;
    tally(op, &s->c, &t);
    if (t.yes >= q) {
        int64_t ttl = quorum_ttl(&t, l->nodes, q, 1);
        int64_t validity = ttl - (int64_t)(now_ms - s->sent_ms) - drift_of(ttl);
        if (validity > 0) {
            l->renewed_ms = s->sent_ms;
            rp_op__done(op);
            return RP_OK;
        }
        snprintf(s->why, sizeof s->why, "the extension's validity ran out before a quorum "
                 "answered (%" PRId64 " ms)", validity);
    } else if (t.no >= q) {
        snprintf(s->why, sizeof s->why, "only %zu of %zu nodes still held its token, a "
                 "quorum is %zu", t.yes, l->nodes, q);
    } else {
        return fail_unreached(op, &s->c, &t, "lock.extend"); /* it may still be held */
    }
    /* lost: delete what we hold (extended, re-taken, or maybe: not waited for) so nobody
     * waits for it to expire */
    for (i = 0; i < l->nodes; i++)
        holds[i] = t.answer[i] == ANS_YES || t.answer[i] == ANS_RETAKEN ||
                   rp_op__node_status(op, i) == RP_ECANCELED;
    s->stage = EXT_CLEANING;
    return queue_cleanup(op, &s->c, holds, l->token, l->token_len);
}

static int extend_advance(rp_op *op, void *state, uint64_t now_ms)
{
    rl_extend *s = state;
    rp_lock *l = s->c.lock;
    switch (s->stage) {
    case EXT_START: {
        char ms[RP_I64_CHARS];
        size_t n = rp_fmt__i64(ms, s->ms);
        const char *argv[] = { l->key.data, l->token, ms, s->replace ? "1" : "0" };
        size_t lens[] = { l->key.len, l->token_len, n, 1 };
        s->sent_ms = now_ms;
        s->stage = EXT_SENT;
        return queue_script_all(op, &s->c, ROUND_EXTEND, "redlock_extend", 1, 3, argv, lens);
    }
    case EXT_SENT:
        return extend_read(op, s, now_ms);
    case EXT_CLEANING:
    default:
        rp_lock__forget_token(l);
        return rp_op__fail(op, RP_ENOTOWNED, "lock.extend: the lock is no longer owned by "
                           "this handle (it expired or another holder has it): %s", s->why);
    }
}

static const rp_op_class extend_class = {
    "lock.extend", sizeof(rl_extend), extend_advance, NULL, 1, rl_enough, 0, 0, 0, 0
};

int rp_redlock__extend_op(rp_op **out, rp_lock *lock, int64_t ms, int replace, rp_error *err)
{
    rl_extend *s;
    int rc = new_op(out, lock, &extend_class, (void **)&s, err);
    if (rc == RP_OK) {
        s->ms = ms;
        s->replace = replace != 0;
    }
    return rc;
}

/* --- locked, owned, remaining -------------------------------------------------------- */

typedef struct rl_query {
    rl_common c;
    int sent;
    int value;             /* locked / owned */
    rp_lock_remaining rem; /* remaining */
} rl_query;

static int query_send(rp_op *op, rl_query *s)
{
    rp_lock *l = s->c.lock;
    const char *argv[] = { NULL, l->key.data };
    size_t lens[] = { 0, l->key.len };
    s->sent = 1;
    if (s->c.round == ROUND_REMAINING) {
        const char *sargv[] = { l->key.data, l->token };
        size_t slens[] = { l->key.len, l->token_len };
        return queue_script_all(op, &s->c, ROUND_REMAINING, "lock_remaining", 1, 1, sargv,
                                slens);
    }
    argv[0] = s->c.round == ROUND_GET ? "GET" : "EXISTS";
    lens[0] = strlen(argv[0]);
    return queue_all(op, &s->c, s->c.round, 2, argv, lens);
}

static int query_advance(rp_op *op, void *state, uint64_t now_ms)
{
    rl_query *s = state;
    rp_lock *l = s->c.lock;
    size_t q = quorum_of(l);
    rl_tally t;
    (void)now_ms;
    if (!s->sent) {
        if (s->c.round != ROUND_EXISTS && !l->token) {
            rp_op__done(op); /* holding no token, it cannot own the lock */
            return RP_OK;
        }
        return query_send(op, s);
    }
    tally(op, &s->c, &t);
    if (t.yes >= q) {
        s->value = 1;
        s->rem.owned = 1;
        s->rem.remaining_ms = quorum_ttl(&t, l->nodes, q, 0);
    } else if (t.no < q) {
        return fail_unreached(op, &s->c, &t, rp_op_name(op));
    }
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class locked_class = {
    "lock.locked", sizeof(rl_query), query_advance, NULL, 1, rl_enough, 0, 0, 0, 0
};
static const rp_op_class owned_class = {
    "lock.owned", sizeof(rl_query), query_advance, NULL, 1, rl_enough, 0, 0, 0, 0
};
static const rp_op_class remaining_class = {
    "lock.remaining", sizeof(rl_query), query_advance, NULL, 1, rl_enough, 0, 0, 0, 0
};

static int query_op(rp_op **out, rp_lock *lock, const rp_op_class *cls, int round,
                    rp_error *err)
{
    rl_query *s;
    int rc = new_op(out, lock, cls, (void **)&s, err);
    if (rc == RP_OK)
        s->c.round = round;
    return rc;
}

int rp_redlock__query_op(rp_op **out, rp_lock *lock, int owned_query, rp_error *err)
{
    return query_op(out, lock, owned_query ? &owned_class : &locked_class,
                    owned_query ? ROUND_GET : ROUND_EXISTS, err);
}

int rp_redlock__query_result(const rp_op *op, int *value)
{
    const rl_query *s = rp_op__done_state(op, &locked_class);
    if (!s)
        s = rp_op__done_state(op, &owned_class);
    if (!s || !value)
        return RP_ESTATE;
    *value = s->value;
    return RP_OK;
}

int rp_redlock__remaining_op(rp_op **out, rp_lock *lock, rp_error *err)
{
    return query_op(out, lock, &remaining_class, ROUND_REMAINING, err);
}

int rp_redlock__remaining_result(const rp_op *op, rp_lock_remaining *out)
{
    const rl_query *s = rp_op__done_state(op, &remaining_class);
    if (!s || !out)
        return RP_ESTATE;
    *out = s->rem;
    return RP_OK;
}

/* --- the handle ---------------------------------------------------------------------- */

int rp_redlock_new(rp_lock **out, rp_client *client, const void *name, size_t name_len,
                   const rp_redlock_options *options, rp_error *err)
{
    static const rp_redlock_options defaults = RP_REDLOCK_OPTIONS_INIT;
    const rp_redlock_options *o = options ? options : &defaults;
    size_t n;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    *out = NULL;
    n = rp_client_endpoints(client);
    /* an even N survives no more failed nodes than N - 1 and needs a larger majority */
    if (n < RL_NODES_MIN || n % 2 == 0 || n > RP_CLIENT_ENDPOINTS_MAX)
        return rp_error__set(err, RP_EINVAL, "redlock.new: the client must have an odd number "
                             ">= %d of endpoints (independent Redis primaries), got %zu",
                             RL_NODES_MIN, n);
    if (o->ttl_ms > 0 && (o->node_timeout_ms < 1 || o->node_timeout_ms > o->ttl_ms))
        return rp_error__set(err, RP_EINVAL, "node_timeout_ms must be 1..ttl (%" PRId64
                             " ms), got %" PRId64 ": each node must answer well within the "
                             "lock's validity", o->ttl_ms, o->node_timeout_ms);
    return rp_lock__create(out, client, name, name_len, o->ttl_ms, 0, n, o->node_timeout_ms,
                           "redlock.new", err);
}
