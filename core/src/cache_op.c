/* Cache ops: get, get_or_load (cache-aside with versioned fills and the stampede modes),
 * set, write-through, delete and tag invalidation, as one state machine. What each mode
 * does is in cache.h; the Redis side is core/scripts/cache_read.lua, cache_store.lua and
 * cache_tag.lua. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cache_internal.h"
#include "cluster_map.h"

/* Lock-mode waiters poll for the value: first after POLL_MIN_MS, doubling up to
 * POLL_MAX_MS, each jittered to [d/2, d]. The cap bounds how late a waiter sees the value
 * (about POLL_MAX_MS / 2 on average, and 10 ms is what the issue asks: the value to every
 * waiter within a few ms of the load) against how many polls 100 waiters cost Redis (about
 * eight scripts each during a 50 ms load). */
#define POLL_MIN_MS 2
#define POLL_MAX_MS 10
/* The read script's fixed reply elements before the tag pairs (cache_read.lua). */
#define READ_FIELDS 9
/* A lock token: 128 random bits in hex. */
#define TOKEN_CHARS 32

typedef enum kind { K_GET, K_LOAD, K_SET, K_WRITE, K_DELETE, K_TAGS } kind;
typedef enum stage {
    S_START, S_PEEK, S_READ, S_TAGS_EXTRA, S_POLL, S_CALL, S_FILL, S_UNLOCK, S_TAG_VERSIONS,
    S_STORE
} stage;

/* What a read found, from the read script's reply or the peek's (HGETALL, PTTL);
 * borrowed from the reply the op keeps (cache_state.read). */
typedef struct entry_view {
    int found, negative, stale;
    int locked;                   /* the script: 1 this op took the lock, 2 Redis refused it */
    const char *value;            /* NULL: none, or not found */
    size_t value_len;
    int64_t pttl, delta, now;     /* now: the server's clock (ms) when read, 0 if not read */
    const char *gen;              /* the generation (the script, when asked), else NULL */
    size_t gen_len;
    size_t ntags;                 /* the tags the entry's fill recorded, with their versions */
    const char *tag[RP_CACHE_TAGS_MAX], *ver[RP_CACHE_TAGS_MAX];
    size_t tag_len[RP_CACHE_TAGS_MAX], ver_len[RP_CACHE_TAGS_MAX];
} entry_view;

typedef struct cache_state {
    rp_cache *c;
    kind kind;
    stage stage;
    rp_buf key, value;            /* set / write: what to store */
    int has_value;                /* 0: a negative entry */
    size_t ntags;
    /* On a cluster the tags' keys are in other slots, so on other masters: each tag's
     * commands go on a node of their own (node 1 + i; an invalidation's tag i: node i),
     * all in the entry's round. On one server they all go on node 0, one pipeline. */
    int spread;
    rp_buf tags[RP_CACHE_TAGS_MAX], tag_keys[RP_CACHE_TAGS_MAX];
    rp_buf versions[RP_CACHE_TAGS_MAX]; /* the tags' versions as last read */
    rp_buf entry, gen_key, lock_key, message;
    char token[TOKEN_CHARS + 1];  /* load: the lock token ("" in mode none) */
    int locked;                   /* this op took the load lock */
    int lock_refused;             /* Redis refused the lock's write (full): load unlocked */
    int as_miss;                  /* re-read: the entry's tags changed */
    double random;                /* xfetch's draw (0: draw one) */
    rp_reply *read;               /* the last read's reply (owned): the view borrows from it */
    entry_view v;
    int early;                    /* xfetch decided on the peek to recompute */
    int peeked;                   /* the extra tag round follows the peek (not the script) */
    rp_buf gen;                   /* the generation the miss read */
    int have_gen;
    int64_t miss_ms;              /* the server's clock at the miss */
    uint64_t near_epoch;
    uint64_t call_start_ms;
    int64_t delta_ms;
    uint64_t poll_ms;
    rp_value call_args[2];
    const char *loaded;           /* the loader's value, borrowed from the op (NULL: none) */
    size_t loaded_len;
    rp_buf near_value;            /* a near hit's copy */
    int call_status;
    char call_message[RP_ERROR_MESSAGE_MAX];
    rp_cache_result r;
} cache_state;

static const rp_allocator *alloc_of(const cache_state *s)
{
    return rp_client__allocator(s->c->client);
}

static void cache_destroy(rp_op *op, void *state)
{
    cache_state *s = state;
    const rp_allocator *a = alloc_of(s);
    size_t i;
    (void)op;
    rp_buf__free(a, &s->key);
    rp_buf__free(a, &s->value);
    for (i = 0; i < RP_CACHE_TAGS_MAX; i++) {
        rp_buf__free(a, &s->tags[i]);
        rp_buf__free(a, &s->tag_keys[i]);
        rp_buf__free(a, &s->versions[i]);
    }
    rp_buf__free(a, &s->entry);
    rp_buf__free(a, &s->gen_key);
    rp_buf__free(a, &s->lock_key);
    rp_buf__free(a, &s->message);
    rp_buf__free(a, &s->gen);
    rp_buf__free(a, &s->near_value);
    rp_reply_free(s->read);
}

static int set_buf(const cache_state *s, rp_buf *b, const void *p, size_t len)
{
    b->len = 0;
    return rp_buf__append(alloc_of(s), b, len ? p : "", len);
}

/* The node tag i's commands go on. */
static size_t tag_node(const cache_state *s, size_t i)
{
    return s->spread ? (s->kind == K_TAGS ? i : 1 + i) : 0;
}

/* The reply of tag i's command of the round just completed; on node 0 they follow the
 * node's own first replies. */
static const rp_reply *tag_reply(const rp_op *op, const cache_state *s, size_t i, size_t first)
{
    return s->spread ? rp_op__reply(op, tag_node(s, i), 0) : rp_op__reply(op, 0, first + i);
}

/* --- the requests ------------------------------------------------------------------ */

/* An integer argument: the decimal text goes into nums[*k] (kept until the request is
 * queued). */
static void num_arg(char nums[][RP_I64_CHARS], size_t *k, int64_t v, const char **argv,
                    size_t *lens, size_t at)
{
    lens[at] = rp_fmt__i64(nums[*k], v);
    argv[at] = nums[(*k)++];
}

static int queue_tag_gets(rp_op *op, cache_state *s)
{
    size_t i;
    int rc;
    for (i = 0; i < s->ntags; i++) {
        const char *argv[2] = { "GET", s->tag_keys[i].data };
        size_t lens[2] = { 3, s->tag_keys[i].len };
        if ((rc = rp_op__command(op, tag_node(s, i), 2, argv, lens)))
            return rc;
    }
    return RP_OK;
}

static int queue_read(rp_op *op, cache_state *s)
{
    enum { FIXED = 7, ARGS = FIXED + 2 * RP_CACHE_TAGS_MAX };
    const char *argv[ARGS];
    size_t lens[ARGS], n = FIXED, i;
    char nums[1][RP_I64_CHARS];
    size_t k = 0;
    int rc;
    const char *genmode = "0";
    if (s->kind == K_LOAD && s->c->o.versioned)
        genmode = s->c->o.stampede == RP_CACHE_XFETCH ? "2" : "1";
    argv[0] = s->entry.data; lens[0] = s->entry.len;
    argv[1] = s->gen_key.data; lens[1] = s->gen_key.len;
    argv[2] = s->lock_key.data; lens[2] = s->lock_key.len;
    argv[3] = s->token; lens[3] = strlen(s->token);
    num_arg(nums, &k, s->c->o.lock_ttl_ms, argv, lens, 4);
    argv[5] = s->as_miss ? "1" : "0"; lens[5] = 1;
    argv[6] = genmode; lens[6] = 1;
    /* re-reading as a miss: the stale entry's recorded tag versions, so the script can tell
     * it from a fill that replaced it meanwhile (that one is answered, not skipped) */
    for (i = 0; s->as_miss && i < s->v.ntags; i++) {
        argv[n] = s->v.tag[i];
        lens[n++] = s->v.tag_len[i];
        argv[n] = s->v.ver[i];
        lens[n++] = s->v.ver_len[i];
    }
    if ((rc = rp_op__script(op, 0, "cache_read", 3, (int)(n - 3), argv, lens)) ||
        (rc = queue_tag_gets(op, s)))
        return rp_op__fail(op, rc, "%s: could not queue the read", rp_op_name(op));
    s->stage = S_READ;
    s->peeked = 0;
    return RP_OK;
}

/* A plain read first: the entry, its TTL and the tags' versions, as commands: a hit costs
 * the server a fraction of a script's call. */
static int queue_peek(rp_op *op, cache_state *s)
{
    const char *hgetall[2] = { "HGETALL", s->entry.data }, *pttl[2] = { "PTTL", s->entry.data };
    size_t hl[2] = { 7, s->entry.len }, pl[2] = { 4, s->entry.len };
    int rc;
    if ((rc = rp_op__command(op, 0, 2, hgetall, hl)) ||
        (rc = rp_op__command(op, 0, 2, pttl, pl)) || (rc = queue_tag_gets(op, s)))
        return rp_op__fail(op, rc, "%s: could not queue the read", rp_op_name(op));
    s->stage = S_PEEK;
    s->peeked = 1;
    return RP_OK;
}

/* The entry's TTL for a store: ttl (or negative_ttl) plus jitter, swr's stale time on top;
 * *stale: swr's stale window (0: none): the entry is stale once its TTL left is at most
 * that, on the server's clock (PTTL), with no TIME to ask. */
static int64_t entry_ttl(const rp_cache *c, int negative, int64_t *stale)
{
    int64_t ttl = (negative ? c->o.negative_ttl_ms : c->o.ttl_ms) +
                  rp_random__between(0, c->o.jitter_ms);
    *stale = 0;
    if (c->o.stampede == RP_CACHE_SWR && !negative) {
        *stale = c->o.stale_ms;
        ttl += c->o.stale_ms;
    }
    return ttl;
}

/* mode 'f' (a fill after a miss), 'w' (set / write) or 'd' (delete): cache_store.lua. */
static int queue_store(rp_op *op, cache_state *s, char mode, const char *value, size_t vlen,
                       int negative)
{
    enum { FIXED = 15, ARGS = FIXED + 2 * RP_CACHE_TAGS_MAX };
    const char *argv[ARGS];
    size_t lens[ARGS], i, n = FIXED, k = 0;
    char nums[5][RP_I64_CHARS];
    char modes[2] = { mode, 0 };
    int64_t stale, ttl = entry_ttl(s->c, negative, &stale);
    int publish = mode != 'f', rc;
    argv[0] = s->entry.data; lens[0] = s->entry.len;
    argv[1] = s->gen_key.data; lens[1] = s->gen_key.len;
    argv[2] = s->lock_key.data; lens[2] = s->lock_key.len;
    argv[3] = modes; lens[3] = 1;
    if (mode == 'f' && s->have_gen) {
        argv[4] = s->gen.data; lens[4] = s->gen.len;
    } else {
        argv[4] = ""; lens[4] = 0;
    }
    num_arg(nums, &k, s->miss_ms, argv, lens, 5);
    num_arg(nums, &k, s->c->o.load_timeout_ms, argv, lens, 6);
    argv[7] = s->locked ? s->token : ""; lens[7] = s->locked ? TOKEN_CHARS : 0;
    num_arg(nums, &k, ttl, argv, lens, 8);
    num_arg(nums, &k, stale, argv, lens, 9);
    num_arg(nums, &k, s->delta_ms, argv, lens, 10);
    argv[11] = negative ? "n" : "v"; lens[11] = 1;
    argv[12] = negative || !value ? "" : value; lens[12] = negative ? 0 : vlen;
    argv[13] = publish ? s->c->channel : ""; lens[13] = publish ? s->c->channel_len : 0;
    argv[14] = publish ? s->message.data : ""; lens[14] = publish ? s->message.len : 0;
    for (i = 0; mode != 'd' && i < s->ntags; i++) {
        argv[n] = s->tags[i].data; lens[n++] = s->tags[i].len;
        argv[n] = s->versions[i].len ? s->versions[i].data : "0";
        lens[n++] = s->versions[i].len ? s->versions[i].len : 1;
    }
    if ((rc = rp_op__script(op, 0, "cache_store", 3, (int)(n - 3), argv, lens)))
        return rp_op__fail(op, rc, "%s: could not queue the store", rp_op_name(op));
    /* a tag's version must outlive the entries that recorded it: extend it (never shortens:
     * it was set to the same lifetime from an earlier time) */
    lens[0] = rp_fmt__i64(nums[0], rp_cache__max_lifetime(s->c)); /* (the script is queued) */
    for (i = 0; mode != 'd' && i < s->ntags; i++) {
        const char *pe[3] = { "PEXPIRE", s->tag_keys[i].data, nums[0] };
        size_t pl[3] = { 7, s->tag_keys[i].len, lens[0] };
        if ((rc = rp_op__command(op, tag_node(s, i), 3, pe, pl)))
            return rp_op__fail(op, rc, "%s: could not queue the store", rp_op_name(op));
    }
    s->stage = mode == 'f' ? S_FILL : S_STORE;
    return RP_OK;
}

/* The load lock's release, an op of its own: whether it reaches Redis or not, what the
 * cache op reports is why it gave the lock back (the loader's error, a cancel); a lock whose
 * release was lost expires after lock_ttl. */
typedef struct unlock_state {
    const rp_allocator *alloc;
    rp_buf lock_key;
    char token[TOKEN_CHARS + 1];
    int sent;
} unlock_state;

static int unlock_advance(rp_op *op, void *state, uint64_t now_ms)
{
    unlock_state *u = state;
    const char *argv[2] = { u->lock_key.data, u->token };
    size_t lens[2] = { u->lock_key.len, TOKEN_CHARS };
    int rc;
    (void)now_ms;
    if (u->sent) {
        rp_op__done(op); /* released, not ours any more, or failed: the same to the caller */
        return RP_OK;
    }
    u->sent = 1;
    if ((rc = rp_op__script(op, 0, "lock_release", 1, 1, argv, lens)))
        return rp_op__fail(op, rc, "cache.unlock: could not queue the lock's release");
    return RP_OK;
}

static void unlock_destroy(rp_op *op, void *state)
{
    unlock_state *u = state;
    (void)op;
    rp_buf__free(u->alloc, &u->lock_key);
}

static const rp_op_class unlock_class = {
    "cache.unlock", sizeof(unlock_state), unlock_advance, unlock_destroy, 1, NULL, 0, 0, 0, 0
};

static int queue_unlock(rp_op *op, cache_state *s)
{
    unlock_state *u;
    rp_op *child;
    rp_error e;
    int rc;
    if ((rc = rp_op__new_on(&child, s->c->client, &unlock_class, 1, 0, (void **)&u, &e)))
        return rp_op__fail(op, rc, "%s: %s", rp_op_name(op), e.message);
    u->alloc = alloc_of(s);
    memcpy(u->token, s->token, sizeof u->token);
    if (set_buf(s, &u->lock_key, s->lock_key.data, s->lock_key.len)) {
        rp_op_free(child);
        return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
    }
    s->stage = S_UNLOCK;
    rp_op__delegate(op, child);
    return RP_OK;
}

static int queue_tag_bumps(rp_op *op, cache_state *s)
{
    char life[RP_I64_CHARS];
    size_t life_len = rp_fmt__i64(life, rp_cache__max_lifetime(s->c)), i;
    int rc;
    for (i = 0; i < s->ntags; i++) {
        const char *argv[4];
        size_t lens[4];
        if ((rc = rp_cache__message(s->c, 't', s->tags[i].data, s->tags[i].len, &s->message)))
            return rp_op__fail(op, rc, "%s: out of memory", rp_op_name(op));
        argv[0] = s->tag_keys[i].data; lens[0] = s->tag_keys[i].len;
        argv[1] = life; lens[1] = life_len;
        argv[2] = s->c->channel; lens[2] = s->c->channel_len;
        argv[3] = s->message.data; lens[3] = s->message.len;
        if ((rc = rp_op__script(op, tag_node(s, i), "cache_tag", 1, 3, argv, lens)))
            return rp_op__fail(op, rc, "%s: could not queue the invalidation", rp_op_name(op));
    }
    s->stage = S_STORE;
    return RP_OK;
}

/* --- reading the replies ------------------------------------------------------------- */

/* versions[i] := the reply of tag i's GET (nil: "0", the version of a tag never
 * invalidated); first: where they start on node 0. */
static int read_versions(rp_op *op, cache_state *s, size_t first)
{
    size_t i;
    for (i = 0; i < s->ntags; i++) {
        const rp_reply *r = tag_reply(op, s, i, first);
        if (!r || (r->type != RP_REPLY_STRING && r->type != RP_REPLY_NIL))
            return rp_op__expected(op, r, "a tag's version (a string) or nil");
        if (set_buf(s, &s->versions[i], r->type == RP_REPLY_NIL ? "0" : r->str,
                    r->type == RP_REPLY_NIL ? 1 : r->len))
            return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
    }
    return RP_OK;
}

static void view_tag(entry_view *v, const rp_reply *tag, size_t skip, const rp_reply *ver)
{
    v->tag[v->ntags] = tag->str + skip;
    v->tag_len[v->ntags] = tag->len - skip;
    v->ver[v->ntags] = ver->str;
    v->ver_len[v->ntags] = ver->len;
    v->ntags++;
}

/* The read script's reply as a view; 0 when it is not of the script's shape and ranges. */
static int view_of_read(const rp_reply *r, int has_token, entry_view *v)
{
    size_t i;
    memset(v, 0, sizeof *v);
    if (!r || r->type != RP_REPLY_ARRAY || r->elements < READ_FIELDS ||
        (r->elements - READ_FIELDS) % 2 != 0 ||
        (r->elements - READ_FIELDS) / 2 > RP_CACHE_TAGS_MAX)
        return 0;
    for (i = 0; i < READ_FIELDS; i++)
        if (i != 1 && i != 7 && r->element[i]->type != RP_REPLY_INTEGER)
            return 0;
    for (i = 1; i < READ_FIELDS; i += 6)
        if (r->element[i]->type != RP_REPLY_STRING && r->element[i]->type != RP_REPLY_NIL)
            return 0;
    for (i = READ_FIELDS; i < r->elements; i++)
        if (r->element[i]->type != RP_REPLY_STRING ||
            ((i - READ_FIELDS) % 2 == 0 && r->element[i]->len == 0)) /* (an empty tag) */
            return 0;
    /* flags in range, and a found entry is either a value or none, never both or neither */
    if ((unsigned long long)r->element[0]->integer > 1 ||
        (unsigned long long)r->element[2]->integer > 1 ||
        (unsigned long long)r->element[5]->integer > 1 ||
        (unsigned long long)r->element[6]->integer > (has_token ? 2u : 0u) ||
        r->element[4]->integer < 0)
        return 0;
    if (r->element[0]->integer == 1 &&
        (r->element[1]->type == RP_REPLY_STRING) == (r->element[2]->integer == 1))
        return 0;
    v->found = r->element[0]->integer == 1;
    v->negative = r->element[2]->integer == 1;
    v->stale = r->element[5]->integer == 1;
    v->locked = (int)r->element[6]->integer;
    v->pttl = r->element[3]->integer;
    v->delta = r->element[4]->integer;
    v->now = r->element[8]->integer;
    if (r->element[1]->type == RP_REPLY_STRING) {
        v->value = r->element[1]->str;
        v->value_len = r->element[1]->len;
    }
    if (r->element[7]->type == RP_REPLY_STRING) {
        v->gen = r->element[7]->str;
        v->gen_len = r->element[7]->len;
    }
    for (i = READ_FIELDS; i + 1 < r->elements; i += 2)
        view_tag(v, r->element[i], 0, r->element[i + 1]);
    return 1;
}

/* A decimal integer >= 0 of a hash field; -1 when it is not one. */
static int64_t field_int(const rp_reply *f)
{
    int64_t x = 0;
    size_t i;
    if (f->len == 0 || f->len > 18)
        return -1;
    for (i = 0; i < f->len; i++) {
        if (f->str[i] < '0' || f->str[i] > '9')
            return -1;
        x = x * 10 + (f->str[i] - '0');
    }
    return x;
}

/* The peek's replies (HGETALL, PTTL) as a view; 0 when they are not of those shapes, or
 * the entry is not one the cache wrote (a value or none, not both). */
static int view_of_peek(const rp_reply *h, const rp_reply *pttl, entry_view *v)
{
    int64_t window = -1; /* swr: the stale window */
    size_t i;
    memset(v, 0, sizeof *v);
    if (!h || h->type != RP_REPLY_ARRAY || h->elements % 2 != 0 || !pttl ||
        pttl->type != RP_REPLY_INTEGER)
        return 0;
    for (i = 0; i < h->elements; i++)
        if (h->element[i]->type != RP_REPLY_STRING)
            return 0;
    v->found = h->elements > 0;
    v->pttl = pttl->integer;
    for (i = 0; i + 1 < h->elements; i += 2) {
        const rp_reply *f = h->element[i], *x = h->element[i + 1];
        if (f->len == 1 && f->str[0] == 'v') {
            v->value = x->str;
            v->value_len = x->len;
        } else if (f->len == 1 && f->str[0] == 'n') {
            v->negative = 1;
        } else if (f->len == 1 && f->str[0] == 'd') {
            v->delta = field_int(x);
        } else if (f->len == 1 && f->str[0] == 's') {
            window = field_int(x);
        } else if (f->len >= 2 && f->str[0] == 't' && f->str[1] == ':') {
            if (v->ntags == RP_CACHE_TAGS_MAX || f->len == 2)
                return 0; /* (tags are 1.. bytes: the cache never writes an empty one) */
            view_tag(v, f, 2, x);
        }
    }
    if (v->found && ((v->value != NULL) == v->negative || v->delta < 0))
        return 0;
    v->stale = window >= 0 && v->pttl >= 0 && v->pttl <= window; /* (as cache_read.lua says) */
    return 1;
}

/* Whether the entry's recorded tag versions are all current. Tags the reader did not name
 * are looked up in one more round first (TAGS_MORE; their versions follow the reader's in
 * versions[ntags..]). */
typedef enum tag_verdict { TAGS_OK, TAGS_STALE, TAGS_MORE } tag_verdict;

static tag_verdict check_tags(cache_state *s, size_t known)
{
    const entry_view *v = &s->v;
    size_t i, j, unknown = 0;
    for (i = 0; i < v->ntags; i++) {
        for (j = 0; j < known; j++)
            if (s->tags[j].len == v->tag_len[i] &&
                memcmp(s->tags[j].data, v->tag[i], v->tag_len[i]) == 0)
                break;
        if (j == known) {
            unknown++;
            continue;
        }
        if (s->versions[j].len != v->ver_len[i] ||
            memcmp(s->versions[j].data, v->ver[i], v->ver_len[i]) != 0)
            return TAGS_STALE;
    }
    return unknown ? TAGS_MORE : TAGS_OK;
}

/* Adds the entry's tags the reader did not name to tags[] (so the extra round reads them
 * and a fill records them). */
static int add_entry_tags(rp_op *op, cache_state *s)
{
    const entry_view *v = &s->v;
    size_t i, j;
    int rc;
    for (i = 0; i < v->ntags; i++) {
        for (j = 0; j < s->ntags; j++)
            if (s->tags[j].len == v->tag_len[i] &&
                memcmp(s->tags[j].data, v->tag[i], v->tag_len[i]) == 0)
                break;
        if (j < s->ntags)
            continue;
        if (s->ntags == RP_CACHE_TAGS_MAX)
            return rp_op__fail(op, RP_EPROTOCOL, "%s: the entry has more than %d tags",
                               rp_op_name(op), RP_CACHE_TAGS_MAX);
        if ((rc = set_buf(s, &s->tags[s->ntags], v->tag[i], v->tag_len[i])) ||
            (rc = rp_cache__key(s->c, v->tag[i], v->tag_len[i], ":tag", &s->tag_keys[s->ntags])))
            return rp_op__fail(op, rc, "%s: out of memory", rp_op_name(op));
        s->ntags++;
    }
    return RP_OK;
}

/* --- outcomes ------------------------------------------------------------------------ */

static int64_t near_ttl(const cache_state *s, int64_t redis_ttl)
{
    int64_t t = s->c->o.near_ttl_ms;
    return redis_ttl > 0 && redis_ttl < t ? redis_ttl : t;
}

static int done_hit(rp_op *op, cache_state *s, uint64_t now_ms)
{
    const entry_view *v = &s->v;
    s->r.hit = 1;
    s->r.negative = v->negative;
    s->r.stale = v->stale;
    s->r.ttl_ms = v->pttl > 0 ? v->pttl : 0;
    if (!v->negative && v->value) {
        s->r.value = v->value;
        s->r.value_len = v->value_len;
    }
    if (s->c->near && !s->r.stale)
        rp_near__put(s->c->near, s->near_epoch, s->key.data, s->key.len, s->r.value,
                     s->r.value_len, s->tags, s->ntags, now_ms, near_ttl(s, s->r.ttl_ms));
    rp_op__done(op);
    return RP_OK;
}

static int done_miss(rp_op *op, cache_state *s)
{
    s->r.negative = 0;
    rp_op__done(op);
    return RP_OK;
}

static int start_load(rp_op *op, cache_state *s, uint64_t now_ms)
{
    const entry_view *v = &s->v;
    int rc;
    s->miss_ms = v->now;
    s->have_gen = v->gen != NULL;
    if (s->have_gen && (rc = set_buf(s, &s->gen, v->gen, v->gen_len)))
        return rp_op__fail(op, rc, "%s: out of memory", rp_op_name(op));
    s->call_args[0] = rp_value_bytes(s->key.data, s->key.len);
    s->call_start_ms = now_ms;
    s->stage = S_CALL;
    rp_op__call_with(op, RP_CACHE_LOADER_ARG, s->call_args, 1);
    return RP_OK;
}

static double draw(const cache_state *s)
{
    uint64_t bits;
    if (s->random > 0)
        return s->random;
    if (rp_random__bytes(&bits, sizeof bits) != RP_OK)
        return 1.0; /* no early recompute without randomness */
    return ((double)(bits >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] in 2^-53 steps */
}

/* An entry with tags the reader did not name: their reads go (S_TAGS_EXTRA). */
static int more_tags(rp_op *op, cache_state *s)
{
    size_t known = s->ntags;
    int rc;
    if ((rc = add_entry_tags(op, s)))
        return rc;
    for (; known < s->ntags; known++) {
        const char *argv[2] = { "GET", s->tag_keys[known].data };
        size_t lens[2] = { 3, s->tag_keys[known].len };
        if ((rc = rp_op__command(op, 0, 2, argv, lens)))
            return rp_op__fail(op, rc, "%s: could not queue the read", rp_op_name(op));
    }
    s->stage = S_TAGS_EXTRA;
    return RP_OK;
}

/* The peek is in (HGETALL, PTTL, the tags' versions). */
static int after_peek(rp_op *op, cache_state *s)
{
    rp_reply *h = rp_op__take_reply(op, 0, 0);
    int rc;
    rp_reply_free(s->read);
    s->read = h;
    if (!view_of_peek(h, rp_op__reply(op, 0, 1), &s->v))
        return rp_op__expected(op, h, "the entry (a hash of the cache's fields) and its PTTL");
    if ((rc = read_versions(op, s, 2)))
        return rc;
    if (s->v.found && check_tags(s, s->ntags) == TAGS_MORE)
        return more_tags(op, s);
    return RP_OK;
}

/* The read script's round is in: keep its reply, the tags' versions and whether this op
 * took the lock. */
static int after_read(rp_op *op, cache_state *s)
{
    rp_reply *r = rp_op__take_reply(op, 0, 0);
    int rc;
    rp_reply_free(s->read);
    s->read = r;
    if (!view_of_read(r, s->token[0] != '\0', &s->v))
        return rp_op__expected(op, r, "the cache read script's reply");
    if ((rc = read_versions(op, s, 1)))
        return rc;
    s->locked = s->v.locked == 1;
    s->lock_refused = s->v.locked == 2;
    if (s->v.found && check_tags(s, s->ntags) == TAGS_MORE)
        return more_tags(op, s);
    return RP_OK;
}

/* The versions of the entry's other tags are in: they are the last of tags[]. */
static int after_extra_tags(rp_op *op, cache_state *s)
{
    size_t n = rp_op__replies(op, 0), i;
    for (i = 0; i < n; i++) {
        const rp_reply *v = rp_op__reply(op, 0, i);
        if (!v || (v->type != RP_REPLY_STRING && v->type != RP_REPLY_NIL))
            return rp_op__expected(op, v, "a tag's version (a string) or nil");
        if (set_buf(s, &s->versions[s->ntags - n + i], v->type == RP_REPLY_NIL ? "0" : v->str,
                    v->type == RP_REPLY_NIL ? 1 : v->len))
            return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
    }
    return RP_OK;
}

/* After the peek: a plain hit ends here (one round, plain commands); what needs the lock,
 * the generation or an atomic re-check goes to the read script. */
static int decide_peek(rp_op *op, cache_state *s, uint64_t now_ms, tag_verdict tags)
{
    const entry_view *v = &s->v;
    if (!v->found)
        return s->kind == K_GET ? done_miss(op, s) : queue_read(op, s);
    if (tags == TAGS_STALE) {
        if (s->kind == K_GET)
            return done_miss(op, s);
        s->as_miss = 1; /* read again as a miss: take the lock, read the generation */
        return queue_read(op, s);
    }
    if (s->kind == K_LOAD && v->stale)
        return queue_read(op, s); /* swr: the script takes the refresh lock if still stale */
    if (s->kind == K_LOAD && s->c->o.stampede == RP_CACHE_XFETCH &&
        rp_cache_xfetch_early(v->delta, s->c->o.beta, v->pttl, draw(s))) {
        s->early = 1; /* recompute: the script reads the generation before the load */
        return queue_read(op, s);
    }
    return done_hit(op, s, now_ms);
}

/* After the read script: a hit, a load, a poll or a miss. */
static int decide(rp_op *op, cache_state *s, uint64_t now_ms, tag_verdict tags)
{
    const entry_view *v = &s->v;
    if (v->found && tags == TAGS_STALE) {
        if (s->kind == K_GET)
            return done_miss(op, s);
        if (s->locked && s->token[0]) /* (the stale-entry lock of swr is released by the fill) */
            return start_load(op, s, now_ms);
        s->as_miss = 1; /* read again as a miss: take the lock, read the generation */
        return queue_read(op, s);
    }
    if (v->found) {
        if (s->kind == K_LOAD && v->stale && s->locked)
            return start_load(op, s, now_ms); /* swr: this caller refreshes */
        if (s->kind == K_LOAD && s->early)
            return start_load(op, s, now_ms); /* xfetch decided it on the peek */
        return done_hit(op, s, now_ms);
    }
    if (s->kind == K_GET)
        return done_miss(op, s);
    if (s->locked || !s->token[0] || s->lock_refused)
        return start_load(op, s, now_ms);
    /* another caller loads: poll for its value (or for its lock's end), reading the entry
     * afresh (one that was stale by its tags may be the loader's new one by then) */
    s->as_miss = 0;
    s->r.waits++;
    s->poll_ms = s->poll_ms ? s->poll_ms * 2 : POLL_MIN_MS;
    if (s->poll_ms > POLL_MAX_MS)
        s->poll_ms = POLL_MAX_MS;
    s->stage = S_POLL;
    rp_op__sleep(op, (uint64_t)rp_random__between((int64_t)(s->poll_ms + 1) / 2,
                                                  (int64_t)s->poll_ms));
    return RP_OK;
}

static int after_call(rp_op *op, cache_state *s, uint64_t now_ms)
{
    const char *bytes;
    size_t len;
    int status = rp_op__call_result(op, &bytes, &len);
    if (status != RP_OK) {
        s->call_status = status;
        if (len > 0)
            snprintf(s->call_message, sizeof s->call_message, "%.*s", (int)len, bytes);
        else /* (a Python ValueError() or a Lua error("") says nothing) */
            snprintf(s->call_message, sizeof s->call_message, "%s: the %s %s", rp_op_name(op),
                     s->kind == K_WRITE ? "writer" : "loader",
                     status == RP_ECANCELED ? "was cancelled" : "failed");
        return s->locked ? queue_unlock(op, s) : rp_op__fail(op, status, "%s", s->call_message);
    }
    if (s->kind == K_WRITE) { /* the database took it: now the cache */
        s->r.negative = !s->has_value;
        s->r.value = s->has_value ? (s->value.data ? s->value.data : "") : NULL;
        s->r.value_len = s->value.len;
        if (rp_cache__message(s->c, 'k', s->key.data, s->key.len, &s->message))
            return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
        if (s->c->near)
            rp_near__drop(s->c->near, s->key.data, s->key.len);
        if (s->ntags) {
            s->stage = S_TAG_VERSIONS;
            if (queue_tag_gets(op, s))
                return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
            return RP_OK;
        }
        return queue_store(op, s, 'w', s->value.data, s->value.len, !s->has_value);
    }
    s->delta_ms = (int64_t)(now_ms - s->call_start_ms);
    s->loaded = bytes;
    s->loaded_len = len;
    s->r.loaded = 1;
    s->r.hit = 0;
    s->r.stale = 0;
    s->r.negative = bytes == NULL;
    s->r.value = bytes;
    s->r.value_len = len;
    if (bytes == NULL && s->c->o.negative_ttl_ms == 0) /* "none" is not cached */
        return s->locked ? queue_unlock(op, s) : (rp_op__done(op), RP_OK);
    return queue_store(op, s, 'f', bytes, len, bytes == NULL);
}

static int after_store(rp_op *op, cache_state *s, uint64_t now_ms)
{
    const rp_reply *r = rp_op__reply(op, 0, 0);
    if (s->kind == K_TAGS) {
        size_t i;
        for (i = 0; i < s->ntags; i++)
            if (!(r = tag_reply(op, s, i, 0)) || r->type != RP_REPLY_STRING)
                return rp_op__expected(op, r, "the tag's new version");
        rp_op__done(op);
        return RP_OK;
    }
    if (r && r->type == RP_REPLY_ERROR && s->stage == S_FILL && r->len >= 3 &&
        memcmp(r->str, "OOM", 3) == 0) {
        /* Redis is full: the value is still the caller's, it is just not kept; the lock
         * goes back at once (its release may run when Redis is full) */
        if (s->locked)
            return queue_unlock(op, s);
        rp_op__done(op);
        return RP_OK;
    }
    if (rp_op__expect_int(op, r, "1 or 0 (stored or not)", 0, 1))
        return RP_EPROTOCOL;
    if (s->kind == K_DELETE) {
        s->r.hit = r->integer == 1;
    } else {
        s->r.stored = r->integer == 1;
        if (s->r.stored && s->c->near && s->kind == K_LOAD)
            rp_near__put(s->c->near, s->near_epoch, s->key.data, s->key.len, s->loaded,
                         s->loaded_len, s->tags, s->ntags, now_ms,
                         near_ttl(s, s->loaded ? s->c->o.ttl_ms : s->c->o.negative_ttl_ms));
    }
    rp_op__done(op);
    return RP_OK;
}

/* The keys of the Redis side, made once the op goes there (a near hit needs none). */
static int make_keys(rp_op *op, cache_state *s)
{
    size_t i;
    int rc = RP_OK;
    for (i = 0; rc == RP_OK && i < s->ntags; i++)
        rc = rp_cache__key(s->c, s->tags[i].data, s->tags[i].len, ":tag", &s->tag_keys[i]);
    if (rc == RP_OK && s->kind != K_TAGS &&
        ((rc = rp_cache__key(s->c, s->key.data, s->key.len, "", &s->entry)) ||
         (rc = rp_cache__key(s->c, s->key.data, s->key.len, ":gen", &s->gen_key)) ||
         (rc = rp_cache__key(s->c, s->key.data, s->key.len, ":lock", &s->lock_key))))
        rc = RP_ENOMEM;
    return rc ? rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op)) : RP_OK;
}

static int start(rp_op *op, cache_state *s, uint64_t now_ms)
{
    rp_cache *c = s->c;
    if (s->kind != K_GET && s->kind != K_LOAD && make_keys(op, s))
        return RP_ENOMEM;
    switch (s->kind) {
    case K_GET:
    case K_LOAD:
        if (c->near) {
            int negative = 0;
            int64_t left = 0;
            s->near_epoch = rp_near__epoch(c->near);
            if (rp_near__get(c->near, s->key.data, s->key.len, now_ms, &s->near_value,
                             &negative, &left)) {
                s->r.hit = s->r.near = 1;
                s->r.negative = negative;
                s->r.value = negative ? NULL : (s->near_value.data ? s->near_value.data : "");
                s->r.value_len = negative ? 0 : s->near_value.len;
                s->r.ttl_ms = left;
                rp_op__done(op);
                return RP_OK;
            }
        }
        if (make_keys(op, s))
            return RP_ENOMEM;
        return queue_peek(op, s);
    case K_SET:
        if (rp_cache__message(c, 'k', s->key.data, s->key.len, &s->message))
            return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
        if (c->near)
            rp_near__drop(c->near, s->key.data, s->key.len);
        s->r.negative = !s->has_value;
        s->r.value = s->has_value ? (s->value.data ? s->value.data : "") : NULL;
        s->r.value_len = s->value.len;
        if (s->ntags) {
            s->stage = S_TAG_VERSIONS;
            if (queue_tag_gets(op, s))
                return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
            return RP_OK;
        }
        return queue_store(op, s, 'w', s->value.data, s->value.len, !s->has_value);
    case K_WRITE:
        s->call_args[0] = rp_value_bytes(s->key.data, s->key.len);
        if (s->has_value)
            s->call_args[1] = rp_value_bytes(s->value.data ? s->value.data : "", s->value.len);
        s->stage = S_CALL;
        rp_op__call_with(op, RP_CACHE_WRITER_ARG, s->call_args, 2);
        return RP_OK;
    case K_DELETE:
        if (rp_cache__message(c, 'k', s->key.data, s->key.len, &s->message))
            return rp_op__fail(op, RP_ENOMEM, "%s: out of memory", rp_op_name(op));
        if (c->near)
            rp_near__drop(c->near, s->key.data, s->key.len);
        return queue_store(op, s, 'd', NULL, 0, 0);
    case K_TAGS:
    default: {
        size_t i;
        for (i = 0; c->near && i < s->ntags; i++)
            rp_near__drop_tag(c->near, s->tags[i].data, s->tags[i].len);
        return queue_tag_bumps(op, s);
    }
    }
}

/* Cancelled (or the loader failed) while this op may hold the load lock: release it. */
static int cancelled(rp_op *op, cache_state *s)
{
    /* what became of a write the cancel broke or followed (as the engine says it for ops
     * that do not clean up) */
    const char *note = "";
    int may_hold;
    size_t i;
    if (s->stage == S_STORE || s->stage == S_FILL) {
        int in_doubt = 0;
        for (i = 0; i < rp_op_nodes(op); i++)
            in_doubt |= rp_op__in_doubt(op, i);
        note = in_doubt ? " with its request in flight: it may have taken effect"
                        : " after Redis answered: it took effect";
    }
    /* the lock may be ours: taken by a read, or by a read the cancel broke (not by a
     * poll's read, which said another holder has it); the release checks the token */
    may_hold = s->token[0] && (s->locked || s->stage == S_READ ||
                               (s->stage == S_TAGS_EXTRA && !s->peeked));
    if (!may_hold || s->lock_key.len == 0)
        return rp_op__fail(op, RP_ECANCELED, "%s: cancelled%s", rp_op_name(op), note);
    s->call_status = RP_ECANCELED;
    snprintf(s->call_message, sizeof s->call_message, "%s: cancelled%s", rp_op_name(op), note);
    return queue_unlock(op, s);
}

static int cache_advance(rp_op *op, void *state, uint64_t now_ms)
{
    cache_state *s = state;
    int rc;
    if (rp_op__cancelled(op) && s->stage != S_UNLOCK &&
        !(s->stage == S_CALL && rp_op__call_running(op)))
        return cancelled(op, s);
    switch (s->stage) {
    case S_START:
        return start(op, s, now_ms);
    case S_PEEK:
        if ((rc = after_peek(op, s)) || s->stage == S_TAGS_EXTRA)
            return rc;
        return decide_peek(op, s, now_ms, s->v.found ? check_tags(s, s->ntags) : TAGS_OK);
    case S_READ:
        if ((rc = after_read(op, s)) || s->stage == S_TAGS_EXTRA)
            return rc;
        return decide(op, s, now_ms, s->v.found ? check_tags(s, s->ntags) : TAGS_OK);
    case S_TAGS_EXTRA:
        if ((rc = after_extra_tags(op, s)))
            return rc;
        return (s->peeked ? decide_peek : decide)(op, s, now_ms, check_tags(s, s->ntags));
    case S_POLL:
        return queue_read(op, s);
    case S_CALL:
        if (rp_op__call_running(op))
            return RP_OK; /* nothing to do meanwhile: the driver waits for the callback */
        return after_call(op, s, now_ms);
    case S_TAG_VERSIONS:
        if ((rc = read_versions(op, s, 0)))
            return rc;
        return queue_store(op, s, 'w', s->value.data, s->value.len, !s->has_value);
    case S_UNLOCK:
        if (s->call_status != RP_OK)
            return rp_op__fail(op, s->call_status, "%s", s->call_message);
        rp_op__done(op); /* "none" not cached: the lock is given back */
        return RP_OK;
    case S_FILL:
    case S_STORE:
    default:
        return after_store(op, s, now_ms);
    }
}

static const rp_op_class cache_class = {
    "cache", sizeof(cache_state), cache_advance, cache_destroy, 0, NULL, 1, 0, 0, 1
};

/* --- beginning ----------------------------------------------------------------------- */

static int check_key(const char *what, const void *p, size_t len, rp_error *err)
{
    if (!p || len == 0 || len > RP_CACHE_KEY_MAX)
        return rp_error__set(err, RP_EINVAL, "%s must be 1..%d bytes (got %zu)", what,
                             RP_CACHE_KEY_MAX, p ? len : 0);
    return RP_OK;
}

static int check_tag_list(const rp_cache_tags *tags, int required, rp_error *err)
{
    size_t i, j, n = tags ? tags->count : 0;
    if (required && n == 0)
        return rp_error__set(err, RP_EINVAL, "tags must have 1..%d items (got 0)",
                             RP_CACHE_TAGS_MAX);
    if (n > RP_CACHE_TAGS_MAX)
        return rp_error__set(err, RP_EINVAL, "tags must have at most %d items (got %zu)",
                             RP_CACHE_TAGS_MAX, n);
    for (i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "tags[%zu]", i);
        if (!tags->items || !tags->lens)
            return rp_error__set(err, RP_EINVAL, "tags: no items for its count");
        if (check_key(what, tags->items[i], tags->lens[i], err))
            return RP_EINVAL;
        for (j = 0; j < i; j++)
            if (tags->lens[j] == tags->lens[i] &&
                memcmp(tags->items[j], tags->items[i], tags->lens[i]) == 0)
                return rp_error__set(err, RP_EINVAL, "tags[%zu] repeats tags[%zu]", i, j);
    }
    return RP_OK;
}

static int begin(rp_op **out, rp_cache *c, kind k, const void *key, size_t len,
                 const rp_cache_tags *tags, cache_state **sp, rp_error *err)
{
    cache_state *s;
    size_t i;
    int rc, spread;
    if (!out)
        return rp_error__set(err, RP_EINVAL, "out must not be NULL");
    *out = NULL;
    if (!c)
        return rp_error__set(err, RP_EINVAL, "cache must not be NULL");
    if ((k != K_TAGS && (rc = check_key("key", key, len, err))) ||
        (rc = check_tag_list(tags, k == K_TAGS, err)))
        return rc;
    /* (an entry may have tags its reader did not name: room for all it may have) */
    spread = tags && tags->count > 0 && rp_client__cluster(c->client, 0) != NULL;
    if ((rc = rp_op__new_on(out, c->client, &cache_class,
                            spread ? (k == K_TAGS ? tags->count : 1 + RP_CACHE_TAGS_MAX) : 1, 0,
                            (void **)&s, err)))
        return rc;
    s->c = c;
    s->spread = spread;
    s->kind = k;
    s->ntags = tags ? tags->count : 0;
    rc = RP_OK;
    if (k != K_TAGS)
        rc = set_buf(s, &s->key, key, len);
    for (i = 0; rc == RP_OK && i < s->ntags; i++)
        rc = set_buf(s, &s->tags[i], tags->items[i], tags->lens[i]);
    if (rc != RP_OK) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory beginning a cache op");
    }
    *sp = s;
    return RP_OK;
}

static void make_token(cache_state *s)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_CHARS / 2];
    size_t i;
    if (rp_random__bytes(raw, sizeof raw) != RP_OK) {
        uint64_t t = rp_monotonic_ms(); /* unique enough to tell holders apart */
        memset(raw, 0, sizeof raw);
        memcpy(raw, &t, sizeof t);
        memcpy(raw + sizeof t, &s, sizeof s < sizeof raw - sizeof t ? sizeof s : 0);
    }
    for (i = 0; i < sizeof raw; i++) {
        s->token[2 * i] = hex[raw[i] >> 4];
        s->token[2 * i + 1] = hex[raw[i] & 15];
    }
    s->token[TOKEN_CHARS] = '\0';
}

int rp_cache_get_op(rp_op **out, rp_cache *c, const void *key, size_t len,
                    const rp_cache_tags *tags, rp_error *err)
{
    cache_state *s;
    return begin(out, c, K_GET, key, len, tags, &s, err);
}

int rp_cache_load_op(rp_op **out, rp_cache *c, const void *key, size_t len,
                     const rp_cache_tags *tags, double random, rp_error *err)
{
    cache_state *s;
    int rc;
    if (out)
        *out = NULL;
    if (!(random >= 0) || random > 1)
        return rp_error__set(err, RP_EINVAL, "random must be in (0, 1], or 0 for a draw of "
                             "the core's (got %g)", random);
    if ((rc = begin(out, c, K_LOAD, key, len, tags, &s, err)))
        return rc;
    s->random = random;
    if (c->o.stampede != RP_CACHE_NONE)
        make_token(s);
    return RP_OK;
}

static int begin_store(rp_op **out, rp_cache *c, kind k, const void *key, size_t len,
                       const void *value, size_t vlen, const rp_cache_tags *tags, rp_error *err)
{
    cache_state *s;
    int rc;
    if (out)
        *out = NULL;
    if (c && !value && c->o.negative_ttl_ms == 0)
        return rp_error__set(err, RP_EINVAL, "value is required: this cache keeps no negative "
                             "entries (negative_ttl 0)");
    if (value && vlen > RP_CACHE_VALUE_MAX)
        return rp_error__set(err, RP_EINVAL, "value must be at most %d bytes (got %zu)",
                             RP_CACHE_VALUE_MAX, vlen);
    if ((rc = begin(out, c, k, key, len, tags, &s, err)))
        return rc;
    s->has_value = value != NULL;
    if (value && set_buf(s, &s->value, value, vlen)) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory beginning a cache op");
    }
    return RP_OK;
}

int rp_cache_set_op(rp_op **out, rp_cache *c, const void *key, size_t len, const void *value,
                    size_t value_len, const rp_cache_tags *tags, rp_error *err)
{
    return begin_store(out, c, K_SET, key, len, value, value_len, tags, err);
}

int rp_cache_write_op(rp_op **out, rp_cache *c, const void *key, size_t len,
                      const void *value, size_t value_len, const rp_cache_tags *tags,
                      rp_error *err)
{
    return begin_store(out, c, K_WRITE, key, len, value, value_len, tags, err);
}

int rp_cache_delete_op(rp_op **out, rp_cache *c, const void *key, size_t len, rp_error *err)
{
    cache_state *s;
    return begin(out, c, K_DELETE, key, len, NULL, &s, err);
}

int rp_cache_invalidate_tags_op(rp_op **out, rp_cache *c, const rp_cache_tags *tags,
                                rp_error *err)
{
    cache_state *s;
    return begin(out, c, K_TAGS, NULL, 0, tags, &s, err);
}

int rp_cache_result_of(const rp_op *op, rp_cache_result *out)
{
    const cache_state *s = rp_op__done_state(op, &cache_class);
    if (!s || !out)
        return RP_ESTATE;
    *out = s->r;
    return RP_OK;
}
