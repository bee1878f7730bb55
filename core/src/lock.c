/* Locks: SET NX PX with a CSPRNG owner token (or one script that also hands out a fencing
 * token), owner-checked release and extend scripts, and queries. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lock_internal.h"
#include "script.h"

#define RP_NAME_MAX RP_LOCK_NAME_MAX
#define RP_TOKEN_MAX RP_LOCK_TOKEN_MAX
#define RANDOM_TOKEN_BYTES 16

uint64_t rp_lock__acquired_ms(const rp_lock *l) { return l->token ? l->acquired_ms : 0; }
uint64_t rp_lock__renewed_ms(const rp_lock *l) { return l->token ? l->renewed_ms : 0; }

static const rp_allocator *alloc_of(const rp_lock *l) { return rp_client__allocator(l->client); }

void rp_lock__forget_token(rp_lock *l)
{
    rp_alloc__free(alloc_of(l), l->token);
    l->token = NULL;
    l->token_len = 0;
}

int rp_lock__create(rp_lock **out, rp_client *client, const void *name, size_t name_len,
                    int64_t ttl_ms, int fenced, size_t nodes, int64_t node_timeout_ms,
                    const char *what, rp_error *err)
{
    const rp_allocator *a;
    rp_lock *l;
    *out = NULL;
    if (!name || name_len == 0)
        return rp_error__set(err, RP_EINVAL, "%s: lock name must not be empty", what);
    if (name_len > RP_NAME_MAX)
        return rp_error__set(err, RP_EINVAL, "%s: lock name must be at most %d bytes", what,
                             RP_NAME_MAX);
    if (ttl_ms <= 0)
        return rp_error__set(err, RP_EINVAL, "ttl must be > 0 ms (got %" PRId64 "): a lock "
                             "without expiry would outlive a crashed holder", ttl_ms);
    a = rp_client__allocator(client);
    l = rp_alloc__calloc(a, 1, sizeof *l);
    if (!l)
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the lock");
    l->client = client;
    l->ttl_ms = ttl_ms;
    l->ttl_len = rp_fmt__i64(l->ttl_text, ttl_ms);
    l->fenced = fenced != 0;
    l->nodes = nodes;
    l->node_timeout_ms = node_timeout_ms;
    l->name = rp_alloc__memdup(a, name, name_len);
    l->name_len = name_len;
    if (!l->name || rp_key__build(client, "lock", name, name_len, "", &l->key) ||
        rp_key__build(client, "lock", name, name_len, ":fence", &l->fence_key)) {
        rp_lock_free(l);
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the lock");
    }
    *out = l;
    return RP_OK;
}

int rp_lock_new(rp_lock **out, rp_client *client, const void *name, size_t name_len,
                const rp_lock_options *options, rp_error *err)
{
    static const rp_lock_options defaults = RP_LOCK_OPTIONS_INIT;
    const rp_lock_options *o = options ? options : &defaults;
    size_t endpoints;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    *out = NULL;
    /* A lock on one of several independent instances would be no lock at all for the
     * others' users: over several endpoints only the quorum algorithm is safe. */
    if ((endpoints = rp_client_endpoints(client)) > 1)
        return rp_error__set(err, RP_EINVAL, "lock.new: the client has %zu endpoints; a lock "
                             "over several independent Redis instances is a Redlock: make it "
                             "with redlock.new (rp_redlock_new)", endpoints);
    return rp_lock__create(out, client, name, name_len, o->ttl_ms, o->fenced, 1, 0,
                           "lock.new", err);
}

void rp_lock_free(rp_lock *l)
{
    const rp_allocator *a;
    if (!l)
        return;
    a = alloc_of(l);
    rp_lock__forget_token(l);
    rp_buf__free(a, &l->key);
    rp_buf__free(a, &l->fence_key);
    rp_alloc__free(a, l->name);
    rp_alloc__free(a, l);
}

const char *rp_lock_token(const rp_lock *l, size_t *len)
{
    if (len)
        *len = l->token ? l->token_len : 0;
    return l->token;
}

int64_t rp_lock_fence(const rp_lock *l) { return l->fence; }
int64_t rp_lock_ttl_ms(const rp_lock *l) { return l->ttl_ms; }
int rp_lock_fenced(const rp_lock *l) { return l->fenced; }
size_t rp_lock_nodes(const rp_lock *l) { return l->nodes; }
int64_t rp_lock_node_timeout_ms(const rp_lock *l) { return l->node_timeout_ms; }
rp_client *rp_lock_client(const rp_lock *l) { return l->client; }

const char *rp_lock_name(const rp_lock *l, size_t *len)
{
    if (len)
        *len = l->name_len;
    return l->name;
}

/* --- acquire --------------------------------------------------------------------------- */

typedef struct acquire_state {
    rp_lock *lock;
    rp_lock_acquire_options o;
    char *token; /* candidate; moves to the lock on success */
    size_t token_len;
    int started, waiting_reply;
    uint64_t start_ms;
    uint64_t attempt_ms; /* when the attempt in flight was sent */
    int64_t backoff_ms;
    int64_t busy_pttl; /* from the fenced script: how long the holder has left */
    int sent_script;   /* the attempt in flight is the lock_acquire script (a pre-7 node) */
    rp_lock_acquisition result;
    int releasing; /* cancelled, or the attempt in doubt: the release of what the attempt in
                      flight may hold is out */
    int end_code;  /* then why the op ends (RP_ECANCELED, or the node's RP_ETIMEOUT ...) */
    char end_why[RP_ERROR_MESSAGE_MAX]; /* ... and in what words, before the release's outcome */
} acquire_state;

static int send_attempt(rp_op *op, acquire_state *s)
{
    rp_lock *l = s->lock;
    s->waiting_reply = 1;
    s->result.attempts++;
    if (l->fenced) {
        const char *argv[] = { l->key.data, l->fence_key.data, s->token, l->ttl_text };
        size_t lens[] = { l->key.len, l->fence_key.len, s->token_len, l->ttl_len };
        return rp_op__script(op, 0, "lock_acquire_fenced", 2, 2, argv, lens);
    }
    return rp_lock__queue_set(op, l, 0, s->token, s->token_len, &s->sent_script);
}

int rp_lock__queue_set(rp_op *op, const rp_lock *l, size_t node, const char *token,
                       size_t token_len, int *script_out)
{
    int script = rp_script__pre7(rp_client__scripts(l->client), node);
    if (script_out)
        *script_out = script;
    if (script) {
        const char *argv[] = { l->key.data, token, l->ttl_text };
        size_t lens[] = { l->key.len, token_len, l->ttl_len };
        return rp_op__script(op, node, "lock_acquire", 1, 2, argv, lens);
    } else {
        /* GET: a busy key's answer is its value, so a key of another type is WRONGTYPE
         * (an error) instead of looking busy forever */
        const char *argv[] = { "SET", l->key.data, token, "NX", "PX", l->ttl_text, "GET" };
        size_t lens[] = { 3, l->key.len, token_len, 2, 2, l->ttl_len, 3 };
        return rp_op__command(op, node, 7, argv, lens);
    }
}

/* How a Redis older than 7.0 refuses SET with both NX and GET. */
#define PRE7_SET_REFUSAL "ERR syntax error"

int rp_lock__set_answer(const rp_reply *r, int sent_script, char *why, size_t size)
{
    size_t n = sizeof PRE7_SET_REFUSAL - 1;
    if (r && r->type == RP_REPLY_NIL)
        return RP_SET_ACQUIRED;
    if (r && r->type == RP_REPLY_STRING)
        return RP_SET_BUSY;
    if (!sent_script && r && r->type == RP_REPLY_ERROR && r->len >= n &&
        memcmp(r->str, PRE7_SET_REFUSAL, n) == 0) {
        if (why && size)
            snprintf(why, size, "refused SET NX GET (a Redis older than 7.0)");
        return RP_SET_PRE7;
    }
    return rp_reply__expected(r, "nil (acquired) or a string (busy)", why, size);
}

/* RP_SET_ACQUIRED, RP_SET_BUSY, RP_SET_PRE7 (asked again: the same attempt as the
 * script), or < 0 failed. */
static int read_attempt(rp_op *op, acquire_state *s)
{
    const rp_reply *r = rp_op__reply(op, 0, 0);
    int rc;
    s->busy_pttl = -1;
    if (!s->lock->fenced) {
        char why[RP_ERROR_MESSAGE_MAX];
        rc = rp_lock__set_answer(r, s->sent_script, why, sizeof why);
        if (rc == RP_SET_PRE7) {
            rp_script__learn_pre7(rp_client__scripts(s->lock->client), 0);
            s->result.attempts--; /* not a new attempt: the same one, in words 6.2 knows */
            if ((rc = send_attempt(op, s)) < 0)
                return rc;
            return RP_SET_PRE7;
        }
        return rc < 0 ? rp_op__fail(op, rc, "%s: %s", rp_op_name(op), why) : rc;
    }
    /* {1, fence >= 1} acquired; {0, the holder's PTTL: >= 0, or -1 without expiry} busy */
    if ((rc = rp_op__expect_array(op, r, "ii", "{acquired, fence or the holder's ttl}")) ||
        (rc = rp_op__expect_int(op, r->element[0], "acquired", 0, 1)))
        return rc;
    if (r->element[0]->integer == 1) {
        if ((rc = rp_op__expect_int(op, r->element[1], "the fence", 1, LLONG_MAX)))
            return rc;
        s->result.fence = r->element[1]->integer;
        return RP_SET_ACQUIRED;
    }
    if ((rc = rp_op__expect_int(op, r->element[1], "the holder's ttl", -1, LLONG_MAX)))
        return rc;
    s->busy_pttl = r->element[1]->integer;
    return RP_SET_BUSY;
}

/* Whether the reply to a cancelled attempt said "acquired" (a pre-7 refusal or an error:
 * it did not take the key). */
static int attempt_took_it(rp_op *op, acquire_state *s)
{
    char why[RP_ERROR_MESSAGE_MAX];
    if (rp_op__node_status(op, 0) != RP_OK)
        return 0;
    if (!s->lock->fenced)
        return rp_lock__set_answer(rp_op__reply(op, 0, 0), s->sent_script, why, sizeof why) ==
               RP_SET_ACQUIRED;
    return read_attempt(op, s) == RP_SET_ACQUIRED;
}

/* How much of the reason an op ends for (a node's message) leads its final message, so the
 * release's outcome still fits after it. */
#define END_WHY_QUOTE_MAX 120

/* The attempt in flight may have taken the key -- cancelled with it sent and unanswered or
 * answered "acquired", or its node timed out or dropped with the SET unanswered (Redis may
 * have run it) -- : it is released with the token it sent (the release script; on a fresh
 * connection: the driver closed the broken one; within the same per-target timeout). The
 * op then ends with code and message plus what became of the attempt (released). */
static int release_attempt(rp_op *op, acquire_state *s, int code, const char *message)
{
    rp_lock *l = s->lock;
    const char *argv[] = { l->key.data, s->token };
    size_t lens[] = { l->key.len, s->token_len };
    s->releasing = 1;
    s->end_code = code;
    snprintf(s->end_why, sizeof s->end_why, "%s", message);
    return rp_op__script(op, 0, "lock_release", 1, 1, argv, lens);
}

/* The release's round is over: the op fails as release_attempt said, saying what became of
 * the attempt, or exactly what may stay held and why. Cancelled meanwhile: RP_ECANCELED. */
static int released(rp_op *op, acquire_state *s)
{
    rp_lock *l = s->lock;
    const rp_reply *r = rp_op__reply(op, 0, 0);
    char why[RP_ERROR_MESSAGE_MAX / 2];
    int quoted = (int)(l->name_len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : l->name_len);
    int code = rp_op__cancelled(op) ? RP_ECANCELED : s->end_code;
    size_t n = strlen(s->end_why);
    int lead = (int)(n > END_WHY_QUOTE_MAX ? END_WHY_QUOTE_MAX : n);
    if (rp_op__node_status(op, 0) != RP_OK)
        snprintf(why, sizeof why, "%s", rp_op__node_why(op, 0));
    else if (rp_reply__is_int(r, "the release's answer", 0, 1, why, sizeof why) == RP_OK)
        return rp_op__fail(op, code, "%.*s; the attempt in flight %s", lead, s->end_why,
                           r->integer ? "was released" : "had not taken the lock");
    return rp_op__fail(op, code, "%.*s; lock \"%.*s\" may stay held up to its ttl (%" PRId64
                       " ms): releasing it failed: %s", lead, s->end_why, quoted, l->name,
                       l->ttl_ms, why);
}

/* Cancelled (the class handles it): an attempt that may have taken the key is released
 * (release_attempt), and the op ends RP_ECANCELED saying what became of it. Nothing in
 * flight (a busy answer, a backoff sleep, not started): it ends at once. */
static int acquire_cancelled(rp_op *op, acquire_state *s)
{
    if (s->releasing)
        return released(op, s);
    if (s->waiting_reply && (rp_op__in_doubt(op, 0) || attempt_took_it(op, s)))
        return release_attempt(op, s, RP_ECANCELED, "lock.acquire: cancelled");
    return rp_op__fail(op, RP_ECANCELED, "lock.acquire: cancelled");
}

/* The attempt's node failed (the class tolerates it, to see this) with the SET unanswered:
 * Redis may have run it (a waiting acquire does not retry: it reports it).
 * - The connection dropped: the attempt is released over a fresh one before the op fails
 *   with the node's status and words (a server that restarted or killed the connection
 *   answers a new one at once; one that is gone refuses it at once).
 * - It timed out: the op fails at once, saying what may be held. The server is slow or
 *   unreachable, so a release would most likely cost another whole timeout, and a call
 *   ends within its timeout.
 * Anything else -- nothing was written (a refused connect, a failed handshake), or what
 * came was no answer (a protocol error) -- fails at once, as the engine fails an op that
 * does not tolerate it. */
static int attempt_failed(rp_op *op, acquire_state *s)
{
    int st = rp_op__node_status(op, 0);
    const char *why = rp_op__node_why(op, 0);
    if (st == RP_ETRANSPORT && rp_op__in_doubt(op, 0))
        return release_attempt(op, s, st, why);
    if (st == RP_ETIMEOUT && rp_op__in_doubt(op, 0)) {
        const rp_lock *l = s->lock;
        int quoted = (int)(l->name_len > RP_ARG_QUOTE_MAX ? RP_ARG_QUOTE_MAX : l->name_len);
        size_t n = strlen(why);
        return rp_op__fail(op, st, "%.*s; the attempt in flight may have taken lock \"%.*s\": "
                           "it may stay held up to its ttl (%" PRId64 " ms)",
                           (int)(n > END_WHY_QUOTE_MAX ? END_WHY_QUOTE_MAX : n), why, quoted,
                           l->name, l->ttl_ms);
    }
    return rp_op__fail(op, st, "%s", why);
}

static int acquire_advance(rp_op *op, void *state, uint64_t now_ms)
{
    acquire_state *s = state;
    uint64_t elapsed;
    int64_t left, delay;
    int got;
    if (rp_op__cancelled(op))
        return acquire_cancelled(op, s);
    if (s->releasing)
        return released(op, s);
    if (!s->started) {
        s->started = 1;
        s->start_ms = now_ms;
        s->backoff_ms = s->o.retry_min_ms;
        s->attempt_ms = now_ms;
        return send_attempt(op, s);
    }
    if (!s->waiting_reply) {
        s->attempt_ms = now_ms;
        return send_attempt(op, s); /* after a sleep */
    }
    if (rp_op__node_status(op, 0) != RP_OK)
        return attempt_failed(op, s);
    s->waiting_reply = 0;
    if ((got = read_attempt(op, s)) < 0)
        return got;
    if (got == RP_SET_PRE7)
        return RP_OK; /* asked again, as the script */
    if (got) {
        rp_lock *l = s->lock;
        rp_lock__forget_token(l);
        l->token = s->token;
        l->token_len = s->token_len;
        l->fence = s->result.fence;
        l->acquired_ms = l->renewed_ms = s->attempt_ms;
        s->token = NULL;
        s->result.acquired = 1;
        /* the key was set at the latest when its reply came back */
        left = l->ttl_ms - (int64_t)(now_ms - s->attempt_ms);
        s->result.validity_ms = left > 0 ? left : 0;
        rp_op__done(op);
        return RP_OK;
    }
    elapsed = now_ms - s->start_ms;
    if (rp_lock__wait_over(&s->o, elapsed)
        || (delay = rp_lock__next_delay(&s->backoff_ms, &s->o, elapsed, s->busy_pttl))
               == RP_LOCK_GIVE_UP) {
        rp_op__done(op);
        return RP_OK;
    }
    rp_op__sleep(op, (uint64_t)delay);
    return RP_OK;
}

int rp_lock__wait_over(const rp_lock_acquire_options *o, uint64_t elapsed_ms)
{
    return o->wait_ms == 0 || (o->wait_ms != RP_WAIT_FOREVER && elapsed_ms >= (uint64_t)o->wait_ms);
}

int64_t rp_lock__next_delay(int64_t *backoff_ms, const rp_lock_acquire_options *o,
                            uint64_t elapsed_ms, int64_t busy_pttl)
{
    int64_t delay, b = *backoff_ms;
    /* jittered exponential backoff, never past the holder's expiry */
    delay = rp_random__between(b / 2 > 0 ? b / 2 : 1, b);
    if (b < o->retry_max_ms)
        *backoff_ms = b > o->retry_max_ms / 2 ? o->retry_max_ms : b * 2;
    if (busy_pttl >= 0 && busy_pttl < delay)
        delay = busy_pttl; /* 0: the key goes within this millisecond (Redis keeps it
                              through the millisecond its PTTL reads 0): retry in 1 */
    if (delay < 1)
        delay = 1;
    /* an attempt after the deadline would not count: give up now rather than sleep for it
     * (wait_ms > elapsed_ms here: rp_lock__wait_over said so) */
    if (o->wait_ms != RP_WAIT_FOREVER && delay > o->wait_ms - (int64_t)elapsed_ms)
        return RP_LOCK_GIVE_UP;
    return delay;
}

static void acquire_destroy(rp_op *op, void *state)
{
    acquire_state *s = state;
    rp_alloc__free(rp_client__allocator(rp_op__client(op)), s->token);
}

/* It tolerates node failures to see an attempt in doubt (attempt_failed); others fail it
 * as before. */
static const rp_op_class acquire_class = {
    "lock.acquire", sizeof(acquire_state), acquire_advance, acquire_destroy, 1, NULL, 1, 0, 0, 0
};

int rp_lock__make_token(const rp_allocator *a, const rp_lock_acquire_options *o, char **token,
                        size_t *len, rp_error *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[RANDOM_TOKEN_BYTES];
    size_t i;
    if (o->token) {
        *token = rp_alloc__memdup(a, o->token, o->token_len);
        *len = o->token_len;
        return *token ? RP_OK : rp_error__set(err, RP_ENOMEM, "out of memory copying the token");
    }
    if (rp_random__bytes(raw, sizeof raw) != RP_OK)
        return rp_error__set(err, RP_ETRANSPORT, "the OS random generator failed");
    *token = rp_alloc__malloc(a, 2 * sizeof raw + 1);
    if (!*token)
        return rp_error__set(err, RP_ENOMEM, "out of memory making the token");
    for (i = 0; i < sizeof raw; i++) {
        (*token)[2 * i] = hex[raw[i] >> 4];
        (*token)[2 * i + 1] = hex[raw[i] & 15];
    }
    (*token)[2 * sizeof raw] = '\0';
    *len = 2 * sizeof raw;
    return RP_OK;
}

int rp_lock__check_acquire_options(const rp_lock_acquire_options *o, rp_error *err)
{
    if (o->wait_ms < 0)
        return rp_error__set(err, RP_EINVAL, "wait_ms must be >= 0 (got %" PRId64 ")", o->wait_ms);
    if (o->retry_min_ms <= 0)
        return rp_error__set(err, RP_EINVAL, "retry_min_ms must be > 0 (got %" PRId64 ")",
                             o->retry_min_ms);
    if (o->retry_max_ms < o->retry_min_ms)
        return rp_error__set(err, RP_EINVAL, "retry_max_ms must be >= retry_min_ms (got %" PRId64
                             " < %" PRId64 ")", o->retry_max_ms, o->retry_min_ms);
    if (o->token && o->token_len == 0)
        return rp_error__set(err, RP_EINVAL, "token must not be empty");
    if (o->token && o->token_len > RP_TOKEN_MAX)
        return rp_error__set(err, RP_EINVAL, "token must be at most %d bytes", RP_TOKEN_MAX);
    if (!o->token && o->token_len != 0)
        return rp_error__set(err, RP_EINVAL, "token is NULL but token_len is %zu", o->token_len);
    return RP_OK;
}

int rp_lock_acquire_op(rp_op **out, rp_lock *lock, const rp_lock_acquire_options *options,
                       rp_error *err)
{
    static const rp_lock_acquire_options defaults = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    const rp_lock_acquire_options *o = options ? options : &defaults;
    acquire_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if ((rc = rp_lock__check_acquire_options(o, err)))
        return rc;
    if (lock->nodes > 1)
        return rp_redlock__acquire_op(out, lock, o, err);
    if ((rc = rp_op__new(out, lock->client, &acquire_class, 1, (void **)&s, err)))
        return rc;
    s->lock = lock;
    s->o = *o;
    s->o.token = NULL; /* the caller's buffer is not ours to keep */
    if ((rc = rp_lock__make_token(alloc_of(lock), o, &s->token, &s->token_len, err))) {
        rp_op_free(*out);
        *out = NULL;
    }
    return rc;
}

int rp_lock_acquire_result(const rp_op *op, rp_lock_acquisition *out)
{
    const acquire_state *s = rp_op__done_state(op, &acquire_class);
    if (!s)
        return rp_redlock__acquire_result(op, out);
    if (!out)
        return RP_ESTATE;
    *out = s->result;
    return RP_OK;
}

int rp_lock_acquire(rp_lock *lock, const rp_lock_acquire_options *options,
                    rp_lock_acquisition *out, rp_error *err)
{
    rp_op *op;
    int rc = rp_lock_acquire_op(&op, lock, options, err);
    if (rc)
        return rc;
    if ((rc = rp_client_run(lock->client, op, err)) == RP_OK && out)
        rp_lock_acquire_result(op, out);
    rp_op_free(op);
    return rc;
}

/* --- release and extend: owner-checked scripts ------------------------------------------ */

typedef struct owner_state {
    rp_lock *lock;
    int sent;
    int resent; /* release: cancelled with its request in doubt, the script sent again */
} owner_state;

static int not_owned(rp_op *op, rp_lock *l, const char *what)
{
    rp_lock__forget_token(l);
    return rp_op__fail(op, RP_ENOTOWNED, "%s: the lock is no longer owned by this handle "
                       "(it expired or another holder has it)", what);
}

static int send_release(rp_op *op, owner_state *s)
{
    const char *argv[] = { s->lock->key.data, s->lock->token };
    size_t lens[] = { s->lock->key.len, s->lock->token_len };
    s->sent = 1;
    return rp_op__script(op, 0, "lock_release", 1, 1, argv, lens);
}

/* Cancelled (the class handles it), so that the handle says what became of the lock:
 * - nothing was written (not started, or the request never left): still held, token kept;
 * - the reply is in: applied as usual (released, or not held any more: token forgotten);
 * - in doubt (written, unanswered: Redis may have run it): the script is sent again with
 *   the same token over a fresh connection. Whatever the first one did, once the second
 *   has answered this token holds nothing: the token is forgotten. (Should the second
 *   fail too, the token stays: the lock may still be held, and the message says so.)
 * Ends RP_ECANCELED saying which. */
static int release_cancelled(rp_op *op, owner_state *s)
{
    const rp_reply *r;
    char why[RP_ERROR_MESSAGE_MAX / 2];
    if (!s->sent || (rp_op__node_status(op, 0) != RP_OK && !rp_op__in_doubt(op, 0)))
        return rp_op__fail(op, RP_ECANCELED, "lock.release: cancelled before its request "
                           "went out: this handle still holds the lock");
    if (rp_op__node_status(op, 0) != RP_OK) { /* in doubt */
        if (s->resent) /* (the token stays: a release later may still find the lock) */
            return rp_op__fail(op, RP_ECANCELED, "lock.release: cancelled with its request "
                               "in flight, and asking again failed (%.*s): the lock may stay "
                               "held up to its ttl (%" PRId64 " ms)", END_WHY_QUOTE_MAX,
                               rp_op__node_why(op, 0), s->lock->ttl_ms);
        s->resent = 1;
        return send_release(op, s);
    }
    r = rp_op__reply(op, 0, 0);
    if (rp_reply__is_int(r, "the release's answer", 0, 1, why, sizeof why) != RP_OK)
        return rp_op__fail(op, RP_ECANCELED, "lock.release: cancelled; the lock may stay "
                           "held up to its ttl: %s", why);
    rp_lock__forget_token(s->lock);
    return rp_op__fail(op, RP_ECANCELED, "lock.release: cancelled; %s",
                       r->integer == 1 ? "the lock was released"
                       : s->resent ? "this handle's token holds nothing any more (the "
                                     "cancelled request had run, or the lock had expired)"
                       : "the lock was no longer owned by this handle");
}

static int release_advance(rp_op *op, void *state, uint64_t now_ms)
{
    owner_state *s = state;
    const rp_reply *r;
    int rc;
    (void)now_ms;
    if (rp_op__cancelled(op))
        return release_cancelled(op, s);
    if (!s->sent)
        return send_release(op, s);
    r = rp_op__reply(op, 0, 0);
    /* lock_release: DEL's count (1), or 0 when not held with this token */
    if ((rc = rp_op__expect_int(op, r, NULL, 0, 1)))
        return rc;
    if (r->integer != 1)
        return not_owned(op, s->lock, "lock.release");
    rp_lock__forget_token(s->lock);
    rp_op__done(op);
    return RP_OK;
}

typedef struct extend_state {
    owner_state base;
    int64_t ms;
    int replace;
    uint64_t sent_ms;
} extend_state;

static int extend_advance(rp_op *op, void *state, uint64_t now_ms)
{
    extend_state *s = state;
    const rp_reply *r;
    int rc;
    if (!s->base.sent) {
        s->sent_ms = now_ms;
        char ms[RP_I64_CHARS];
        size_t n = rp_fmt__i64(ms, s->ms);
        const char *argv[] = { s->base.lock->key.data, s->base.lock->token, ms,
                               s->replace ? "1" : "0" };
        size_t lens[] = { s->base.lock->key.len, s->base.lock->token_len, n, 1 };
        s->base.sent = 1;
        return rp_op__script(op, 0, "lock_extend", 1, 3, argv, lens);
    }
    r = rp_op__reply(op, 0, 0);
    /* lock_extend: the new TTL (> 0), or 0 when not held with this token */
    if ((rc = rp_op__expect_int(op, r, "the new ttl or 0", 0, LLONG_MAX)))
        return rc;
    if (r->integer <= 0)
        return not_owned(op, s->base.lock, "lock.extend");
    s->base.lock->renewed_ms = s->sent_ms;
    rp_op__done(op);
    return RP_OK;
}

/* It handles its cancellation (release_cancelled): the token follows what happened. */
static const rp_op_class release_class = {
    "lock.release", sizeof(owner_state), release_advance, NULL, 0, NULL, 1, 0, 0, 0
};
static const rp_op_class extend_class = {
    "lock.extend", sizeof(extend_state), extend_advance, NULL, 0, NULL, 0, 0, 0, 0
};

static int require_token(const rp_lock *lock, const char *what, rp_error *err)
{
    if (!lock->token)
        return rp_error__set(err, RP_ENOTOWNED, "%s: this handle does not hold the lock", what);
    return RP_OK;
}

int rp_lock_release_op(rp_op **out, rp_lock *lock, rp_error *err)
{
    owner_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if ((rc = require_token(lock, "lock.release", err)))
        return rc;
    if (lock->nodes > 1)
        return rp_redlock__release_op(out, lock, err);
    if ((rc = rp_op__new(out, lock->client, &release_class, 1, (void **)&s, err)))
        return rc;
    s->lock = lock;
    return RP_OK;
}

int rp_lock_extend_op(rp_op **out, rp_lock *lock, int64_t ms, int replace_ttl, rp_error *err)
{
    extend_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if (ms <= 0)
        return rp_error__set(err, RP_EINVAL, "ms must be > 0 (got %" PRId64 ")", ms);
    if ((rc = require_token(lock, "lock.extend", err)))
        return rc;
    if (lock->nodes > 1)
        return rp_redlock__extend_op(out, lock, ms, replace_ttl, err);
    if ((rc = rp_op__new(out, lock->client, &extend_class, 1, (void **)&s, err)))
        return rc;
    s->base.lock = lock;
    s->ms = ms;
    s->replace = replace_ttl != 0;
    return RP_OK;
}

static int run_and_free(rp_client *c, rp_op *op, rp_error *err)
{
    int rc = rp_client_run(c, op, err);
    rp_op_free(op);
    return rc;
}

int rp_lock_release(rp_lock *lock, rp_error *err)
{
    rp_op *op;
    int rc = rp_lock_release_op(&op, lock, err);
    return rc ? rc : run_and_free(lock->client, op, err);
}

int rp_lock_extend(rp_lock *lock, int64_t ms, int replace_ttl, rp_error *err)
{
    rp_op *op;
    int rc = rp_lock_extend_op(&op, lock, ms, replace_ttl, err);
    return rc ? rc : run_and_free(lock->client, op, err);
}

/* --- queries ------------------------------------------------------------------------- */

typedef struct query_state {
    rp_lock *lock;
    int owned_query; /* 0: locked (EXISTS), 1: owned (GET == token) */
    int sent;
    int value;
} query_state;

static int query_advance(rp_op *op, void *state, uint64_t now_ms)
{
    query_state *s = state;
    const rp_reply *r;
    int rc;
    (void)now_ms;
    if (!s->sent) {
        const char *argv[] = { s->owned_query ? "GET" : "EXISTS", s->lock->key.data };
        size_t lens[] = { s->owned_query ? 3u : 6u, s->lock->key.len };
        if (s->owned_query && !s->lock->token) {
            s->value = 0; /* holding no token, it cannot own the lock */
            rp_op__done(op);
            return RP_OK;
        }
        s->sent = 1;
        return rp_op__command(op, 0, 2, argv, lens);
    }
    r = rp_op__reply(op, 0, 0);
    if (!s->owned_query) { /* EXISTS of one key: 0 or 1 */
        if ((rc = rp_op__expect_int(op, r, NULL, 0, 1)))
            return rc;
        s->value = r->integer == 1;
    } else if (r && r->type == RP_REPLY_NIL) { /* GET */
        s->value = 0;
    } else if (r && r->type == RP_REPLY_STRING) {
        s->value = s->lock->token && r->len == s->lock->token_len &&
                   memcmp(r->str, s->lock->token, r->len) == 0;
    } else {
        return rp_op__expected(op, r, "nil or a string (the holder's token)");
    }
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class locked_class = {
    "lock.locked", sizeof(query_state), query_advance, NULL, 0, NULL, 0, 0, 0, 0
};
static const rp_op_class owned_class = {
    "lock.owned", sizeof(query_state), query_advance, NULL, 0, NULL, 0, 0, 0, 0
};

static int query_op(rp_op **out, rp_lock *lock, int owned_query, rp_error *err)
{
    query_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if (lock->nodes > 1)
        return rp_redlock__query_op(out, lock, owned_query, err);
    if ((rc = rp_op__new(out, lock->client, owned_query ? &owned_class : &locked_class, 1,
                         (void **)&s, err)))
        return rc;
    s->lock = lock;
    s->owned_query = owned_query;
    return RP_OK;
}

int rp_lock_locked_op(rp_op **out, rp_lock *lock, rp_error *err) { return query_op(out, lock, 0, err); }
int rp_lock_owned_op(rp_op **out, rp_lock *lock, rp_error *err) { return query_op(out, lock, 1, err); }

int rp_lock_query_result(const rp_op *op, int *value)
{
    const query_state *s = rp_op__done_state(op, &locked_class);
    if (!s)
        s = rp_op__done_state(op, &owned_class);
    if (!s)
        return rp_redlock__query_result(op, value);
    if (!value)
        return RP_ESTATE;
    *value = s->value;
    return RP_OK;
}

static int query(rp_lock *lock, int owned_query, int *value, rp_error *err)
{
    rp_op *op;
    int rc = query_op(&op, lock, owned_query, err);
    if (rc)
        return rc;
    if ((rc = rp_client_run(lock->client, op, err)) == RP_OK)
        rc = rp_lock_query_result(op, value);
    rp_op_free(op);
    return rc;
}

int rp_lock_locked(rp_lock *lock, int *value, rp_error *err) { return query(lock, 0, value, err); }
int rp_lock_owned(rp_lock *lock, int *value, rp_error *err) { return query(lock, 1, value, err); }

/* --- remaining ----------------------------------------------------------------------- */

/* PTTL's answer for a key that does not exist; the script also returns it when the lock is
 * held with another token. */
#define PTTL_NO_KEY (-2)

typedef struct remaining_state {
    rp_lock *lock;
    int sent;
    rp_lock_remaining result;
} remaining_state;

static int remaining_advance(rp_op *op, void *state, uint64_t now_ms)
{
    remaining_state *s = state;
    const rp_reply *r;
    (void)now_ms;
    if (!s->sent) {
        const char *argv[2];
        size_t lens[2];
        if (!s->lock->token) {
            rp_op__done(op); /* holding no token, it cannot own the lock */
            return RP_OK;
        }
        argv[0] = s->lock->key.data;
        lens[0] = s->lock->key.len;
        argv[1] = s->lock->token;
        lens[1] = s->lock->token_len;
        s->sent = 1;
        return rp_op__script(op, 0, "lock_remaining", 1, 1, argv, lens);
    }
    r = rp_op__reply(op, 0, 0);
    /* A held lock always has a TTL: anything but PTTL > 0 or "not held" is not ours. */
    if (r && r->type == RP_REPLY_INTEGER && r->integer == -1)
        return rp_op__fail(op, RP_EPROTOCOL, "%s: expected the lock's ttl (an integer >= 1) "
                           "or -2 (not held), got the integer -1 (a lock key without expiry)",
                           rp_op_name(op));
    if (!r || r->type != RP_REPLY_INTEGER || (r->integer <= 0 && r->integer != PTTL_NO_KEY))
        return rp_op__expected(op, r, "the lock's ttl (an integer >= 1) or -2 (not held)");
    s->result.owned = r->integer > 0;
    s->result.remaining_ms = r->integer > 0 ? r->integer : 0;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class remaining_class = {
    "lock.remaining", sizeof(remaining_state), remaining_advance, NULL, 0, NULL, 0, 0, 0, 0
};

int rp_lock_remaining_op(rp_op **out, rp_lock *lock, rp_error *err)
{
    remaining_state *s;
    int rc;
    if (!out || !lock)
        return rp_error__set(err, RP_EINVAL, "out and lock must not be NULL");
    *out = NULL;
    if (lock->nodes > 1)
        return rp_redlock__remaining_op(out, lock, err);
    if ((rc = rp_op__new(out, lock->client, &remaining_class, 1, (void **)&s, err)))
        return rc;
    s->lock = lock;
    return RP_OK;
}

int rp_lock_remaining_result(const rp_op *op, rp_lock_remaining *out)
{
    const remaining_state *s = rp_op__done_state(op, &remaining_class);
    if (!s)
        return rp_redlock__remaining_result(op, out);
    if (!out)
        return RP_ESTATE;
    *out = s->result;
    return RP_OK;
}

int rp_lock_remaining_ms(rp_lock *lock, rp_lock_remaining *out, rp_error *err)
{
    rp_op *op;
    int rc = rp_lock_remaining_op(&op, lock, err);
    if (rc)
        return rc;
    if ((rc = rp_client_run(lock->client, op, err)) == RP_OK)
        rc = rp_lock_remaining_result(op, out);
    rp_op_free(op);
    return rc;
}
