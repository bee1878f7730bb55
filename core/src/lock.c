/* Locks: SET NX PX with a CSPRNG owner token (or one script that also hands out a fencing
 * token), owner-checked release and extend scripts, and queries. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lock_internal.h"

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
    rp_lock_acquisition result;
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
    } else {
        const char *argv[] = { "SET", l->key.data, s->token, "NX", "PX", l->ttl_text };
        size_t lens[] = { 3, l->key.len, s->token_len, 2, 2, l->ttl_len };
        return rp_op__command(op, 0, 6, argv, lens);
    }
}

/* 1 acquired, 0 busy, < 0 failed. */
static int read_attempt(rp_op *op, acquire_state *s)
{
    const rp_reply *r = rp_op__reply(op, 0, 0);
    int rc = rp_op__check_reply(op, r);
    s->busy_pttl = -1;
    if (rc)
        return rc;
    if (!s->lock->fenced) {
        if (r->type == RP_REPLY_STATUS)
            return 1;
        if (r->type == RP_REPLY_NIL)
            return 0;
    } else if (r->type == RP_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == RP_REPLY_INTEGER &&
               r->element[1]->type == RP_REPLY_INTEGER) {
        if (r->element[0]->integer == 1) {
            s->result.fence = r->element[1]->integer;
            return 1;
        }
        s->busy_pttl = r->element[1]->integer;
        return 0;
    }
    return rp_op__fail(op, RP_EPROTOCOL, "lock.acquire: unexpected reply type %d", (int)r->type);
}

static int acquire_advance(rp_op *op, void *state, uint64_t now_ms)
{
    acquire_state *s = state;
    uint64_t elapsed;
    int64_t left;
    int got;
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
    s->waiting_reply = 0;
    if ((got = read_attempt(op, s)) < 0)
        return got;
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
    if (rp_lock__wait_over(&s->o, elapsed)) {
        rp_op__done(op);
        return RP_OK;
    }
    rp_op__sleep(op, (uint64_t)rp_lock__next_delay(&s->backoff_ms, &s->o, elapsed, s->busy_pttl));
    return RP_OK;
}

int rp_lock__wait_over(const rp_lock_acquire_options *o, uint64_t elapsed_ms)
{
    return o->wait_ms == 0 || (o->wait_ms != RP_WAIT_FOREVER && elapsed_ms >= (uint64_t)o->wait_ms);
}

int64_t rp_lock__next_delay(int64_t *backoff_ms, const rp_lock_acquire_options *o,
                            uint64_t elapsed_ms, int64_t busy_pttl)
{
    int64_t delay, left, b = *backoff_ms;
    /* jittered exponential backoff, never past the holder's expiry or our deadline */
    delay = rp_random__between(b / 2 > 0 ? b / 2 : 1, b);
    if (b < o->retry_max_ms)
        *backoff_ms = b > o->retry_max_ms / 2 ? o->retry_max_ms : b * 2;
    if (busy_pttl > 0 && busy_pttl < delay)
        delay = busy_pttl;
    if (o->wait_ms != RP_WAIT_FOREVER) {
        left = o->wait_ms - (int64_t)elapsed_ms;
        if (left < delay)
            delay = left;
    }
    return delay > 0 ? delay : 1;
}

static void acquire_destroy(rp_op *op, void *state)
{
    acquire_state *s = state;
    rp_alloc__free(rp_client__allocator(rp_op__client(op)), s->token);
}

static const rp_op_class acquire_class = {
    "lock.acquire", sizeof(acquire_state), acquire_advance, acquire_destroy, 0, NULL, 0, 0
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
} owner_state;

static int not_owned(rp_op *op, rp_lock *l, const char *what)
{
    rp_lock__forget_token(l);
    return rp_op__fail(op, RP_ENOTOWNED, "%s: the lock is no longer owned by this handle "
                       "(it expired or another holder has it)", what);
}

static int release_advance(rp_op *op, void *state, uint64_t now_ms)
{
    owner_state *s = state;
    const rp_reply *r;
    int rc;
    (void)now_ms;
    if (!s->sent) {
        const char *argv[] = { s->lock->key.data, s->lock->token };
        size_t lens[] = { s->lock->key.len, s->lock->token_len };
        s->sent = 1;
        return rp_op__script(op, 0, "lock_release", 1, 1, argv, lens);
    }
    r = rp_op__reply(op, 0, 0);
    if ((rc = rp_op__check_reply(op, r)))
        return rc;
    if (r->type != RP_REPLY_INTEGER)
        return rp_op__fail(op, RP_EPROTOCOL, "lock.release: unexpected reply type %d", (int)r->type);
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
    if ((rc = rp_op__check_reply(op, r)))
        return rc;
    if (r->type != RP_REPLY_INTEGER)
        return rp_op__fail(op, RP_EPROTOCOL, "lock.extend: unexpected reply type %d", (int)r->type);
    if (r->integer <= 0)
        return not_owned(op, s->base.lock, "lock.extend");
    s->base.lock->renewed_ms = s->sent_ms;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class release_class = {
    "lock.release", sizeof(owner_state), release_advance, NULL, 0, NULL, 0, 0
};
static const rp_op_class extend_class = {
    "lock.extend", sizeof(extend_state), extend_advance, NULL, 0, NULL, 0, 0
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
    if ((rc = rp_op__check_reply(op, r)))
        return rc;
    if (!s->owned_query && r->type == RP_REPLY_INTEGER)
        s->value = r->integer > 0;
    else if (s->owned_query && r->type == RP_REPLY_NIL)
        s->value = 0;
    else if (s->owned_query && r->type == RP_REPLY_STRING)
        s->value = s->lock->token && r->len == s->lock->token_len &&
                   memcmp(r->str, s->lock->token, r->len) == 0;
    else
        return rp_op__fail(op, RP_EPROTOCOL, "%s: unexpected reply type %d", rp_op_name(op),
                           (int)r->type);
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class locked_class = {
    "lock.locked", sizeof(query_state), query_advance, NULL, 0, NULL, 0, 0
};
static const rp_op_class owned_class = {
    "lock.owned", sizeof(query_state), query_advance, NULL, 0, NULL, 0, 0
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
    int rc;
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
    if ((rc = rp_op__check_reply(op, r)))
        return rc;
    /* A held lock always has a TTL: anything but PTTL > 0 or "not held" is not ours. */
    if (r->type != RP_REPLY_INTEGER)
        return rp_op__fail(op, RP_EPROTOCOL, "lock.remaining: expected an integer reply, got "
                           "reply type %d", (int)r->type);
    if (r->integer <= 0 && r->integer != PTTL_NO_KEY)
        return rp_op__fail(op, RP_EPROTOCOL, "lock.remaining: expected a TTL > 0 or -2, got %"
                           PRId64 " (a lock key without expiry?)", (int64_t)r->integer);
    s->result.owned = r->integer > 0;
    s->result.remaining_ms = r->integer > 0 ? r->integer : 0;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class remaining_class = {
    "lock.remaining", sizeof(remaining_state), remaining_advance, NULL, 0, NULL, 0, 0
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
