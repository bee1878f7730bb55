/* libFuzzer harness: arbitrary reply bytes fed to the ops of one family (issue 10, finding 8).
 *
 * Built once per family (-DFUZZ_FAMILY=FAMILY_LOCKS ...; mk/fuzz.mk). The input is
 *
 *     h[0..FZ_HDR)  the op and its arguments, how replies are cut into chunks, which
 *                   nodes fail in which round (see "the header" below)
 *     the rest      reply bytes, handed out in order to the op's pending targets through
 *                   rp_op_feed, as a driver would
 *
 * Ops are begun through the descriptor table (describe.h) and stepped offline with a fake
 * clock. Each target of a round is given exactly the bytes of the replies it owes, as an
 * independent RESP parse of the stream finds them (hiredis' redisReader with a tree model of
 * this file's own), cut whole, byte by byte or at random points; a target whose replies are
 * not all in the stream gets the rest and then fails (a timeout), as does a target the header
 * says fails. What the op ends with is then checked against that independent parse:
 *
 *   (a) no crash, leak or undefined behaviour (ASan + UBSan + LeakSanitizer);
 *   (b) memory bounded: every allocation of the core goes through a counting rp_allocator
 *       and the client's max_reply_size is FZ_MAX_REPLY; live bytes must stay below
 *       FZ_MEM_CONST + FZ_MEM_PER_CAP * FZ_MAX_REPLY (and nothing is left once freed);
 *   (c) no success claimed from a reply the op does not fully validate: a DONE op's result,
 *       and every message a subscription EMITs, must follow from replies of exactly the
 *       shape and ranges the op's contract documents (classify(): what each command's and
 *       script's replies mean; fz_validators: what each op may claim from them);
 *   (d) causes kept: an ERROR has a status and a message, never "missing reply" or a bare
 *       "unexpected reply", and one target that timed out is a timeout;
 *   (e) cancellation (H_MODE bit 5): a cancelled op ends RP_ECANCELED (or with the failure
 *       its last round already had); an acquire whose attempt may have taken the key
 *       releases it with its token or says it may stay held, and its words match what the
 *       release answered; other writing ops say they may have written.
 *
 * The cache family's ops CALL (get_or_load its loader, write its writer): the harness checks
 * the callback and its arguments, may step the op while it "runs" (it must wait), then
 * answers as the header says: a value, nothing, a failure (with or without a message), the
 * user's cancel (a STATUS RP_ECANCELED) or the driver's (rp_op_cancel). A cache op may
 * SLEEP (lock-mode polls): the fake clock jumps. Before the op, the header may arm the
 * near-cache and put an entry, and near_apply records from the stream are applied (the op
 * cache.near_apply applies every record of the stream), each checked against the
 * near-cache's stats. A read begins with the peek (HGETALL, PTTL, the tags' GETs: plain
 * commands; get never goes further), get_or_load goes on to the read script only after a
 * peek that is no fresh hit. A DONE record is checked against the peek's replies or the read
 * script's (whichever decided), the store's and the CALL's answer (v_cache); a failure must
 * be a clean status, keep a failed callback's RP_ECALLBACK and message, and give back a
 * load lock its read took.
 *
 * A violation prints what was claimed and from which replies, then aborts (libFuzzer saves
 * the input). For exploring only: FUZZ_STRICT=0 in the environment only prints, and
 * FUZZ_IGNORE=text[|text...] only prints the violations whose message contains one of the
 * texts. The default (and make test) is strict. FUZZ_VERBOSE=1 prints how each op ended. */
#define _GNU_SOURCE /* memmem */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <redpat/redpat.h>

#include "internal.h"
#include "lock_internal.h"
#include "script.h"

#define FAMILY_LOCKS 1
#define FAMILY_REDLOCK 2
#define FAMILY_RATELIMIT 3
#define FAMILY_PUBSUB 4
#define FAMILY_CLIENT 5
#define FAMILY_CACHE 6

#ifndef FUZZ_FAMILY
#error "build with -DFUZZ_FAMILY=FAMILY_LOCKS (or _REDLOCK, _RATELIMIT, _PUBSUB, _CLIENT, _CACHE)"
#endif

#if FUZZ_FAMILY == FAMILY_CACHE
#include "cache_internal.h"
#endif

/* --- the header ------------------------------------------------------------------------ */
enum {
    H_OP,      /* which op of the family (mod the family's count) */
    H_MODE,    /* bits 0-1: chunks (whole, bytewise, random, random); bit 2: scripts known
                  (EVALSHA) else EVAL; bit 3: the lock holds a token before the op;
                  bit 4: the endpoint answered like Redis < 7 before (pre7); bit 5: the
                  op is cancelled once H_D >> 6 rounds are over (rp_op_cancel) */
    H_SEED,    /* the random cuts' seed */
    H_FAIL,    /* bit (3 * round + node) % 8: that node fails (times out) in that round */
    H_A,       /* op arguments: see begin_op */
    H_B,
    H_C,
    H_D,
    FZ_HDR
};

#define FZ_TOKEN "tok"
#define FZ_TOKEN_LEN 3
/* The cap on one reply the harness gives its client (rp_client_options.max_reply_size),
 * small so that a reply bomb shows at once. */
#define FZ_MAX_REPLY 4096
/* Peak live bytes allowed: a few capped replies per node plus the op's own small state. */
#define FZ_MEM_CONST (256u * 1024u)
#define FZ_MEM_PER_CAP 32u
#define FZ_ROUNDS_MAX 64
#define FZ_STEPS_MAX 400     /* then the op is cancelled */
#define FZ_STEPS_HARD 2000   /* an op still running after its cancel: a finding */
#define FZ_NODES 3
#define FZ_REPLIES_MAX 16    /* replies logged per target per round */
#define FZ_FIFO_MAX 512      /* pushes a listen op's stream may hold */

/* --- findings ------------------------------------------------------------------------- */

static int fz_strict = -1;
static int fz_verbose; /* FUZZ_VERBOSE=1: print how each op ended (replaying one input) */

static void fz_violation(const char *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fz_violation(const char *op, const char *fmt, ...)
{
    /* FUZZ_IGNORE=text[|text...] (exploring only): a violation saying one of the texts is
     * printed, not fatal */
    const char *ignore = getenv("FUZZ_IGNORE");
    char msg[1024], one[256];
    int ignored = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FUZZ INVARIANT VIOLATED [%s]: %s\n", op, msg);
    while (ignore && *ignore && !ignored) {
        const char *bar = strchr(ignore, '|');
        size_t n = bar ? (size_t)(bar - ignore) : strlen(ignore);
        snprintf(one, sizeof one, "%.*s", (int)n, ignore);
        ignored = n > 0 && strstr(msg, one) != NULL;
        ignore = bar ? bar + 1 : NULL;
    }
    if (fz_strict && !ignored)
        abort();
}

/* --- counting allocator ------------------------------------------------------------------ */

typedef struct fz_mem {
    size_t live, peak, bound;
    const char *op;
} fz_mem;

typedef union fz_hdr {
    size_t size;
    long double align_ld; /* the payload after it is aligned as malloc's */
    void *align_p;
} fz_hdr;

static void fz_mem_account(fz_mem *m, size_t add)
{
    m->live += add;
    if (m->live > m->peak)
        m->peak = m->live;
    if (m->live > m->bound)
        fz_violation(m->op ? m->op : "setup", "memory: %zu live bytes exceed the bound of %zu "
                     "(an allocation of %zu bytes)", m->live, m->bound, add);
}

static void *fz_malloc(void *ud, size_t size)
{
    fz_mem *m = ud;
    fz_hdr *h;
    if (size > m->bound) { /* refuse before touching the heap: 16 GiB would kill the run */
        fz_violation(m->op ? m->op : "setup", "memory: one allocation of %zu bytes exceeds the "
                     "bound of %zu", size, m->bound);
        return NULL;
    }
    if (!(h = malloc(sizeof *h + size)))
        return NULL;
    h->size = size;
    fz_mem_account(m, size);
    return h + 1;
}

static void fz_free(void *ud, void *p)
{
    fz_mem *m = ud;
    fz_hdr *h;
    if (!p)
        return;
    h = (fz_hdr *)p - 1;
    m->live -= h->size;
    free(h);
}

static void *fz_realloc(void *ud, void *p, size_t size)
{
    fz_mem *m = ud;
    fz_hdr *h, *n;
    size_t old;
    if (!p)
        return fz_malloc(ud, size);
    h = (fz_hdr *)p - 1;
    old = h->size;
    if (size > m->bound) {
        fz_violation(m->op ? m->op : "setup", "memory: a reallocation to %zu bytes exceeds the "
                     "bound of %zu", size, m->bound);
        return NULL;
    }
    if (!(n = realloc(h, sizeof *n + size)))
        return NULL;
    m->live -= old;
    n->size = size;
    fz_mem_account(m, size);
    return n + 1;
}

/* --- the independent reply model ---------------------------------------------------------- */

/* Same type numbers as rp_reply_type (and hiredis' REDIS_REPLY_*). */
typedef struct fzr {
    int type;
    long long integer;
    char *str;
    size_t len;
    struct fzr **el; /* grown as children arrive: a header's count is never trusted */
    size_t n, cap;
} fzr;

static void fzr_free(void *obj)
{
    fzr *r = obj;
    size_t i;
    if (!r)
        return;
    for (i = 0; i < r->n; i++)
        fzr_free(r->el[i]);
    free(r->el);
    free(r->str);
    free(r);
}

static void *fzr_attach(const redisReadTask *task, fzr *r)
{
    if (r && task->parent) {
        fzr *p = task->parent->obj;
        size_t idx = (size_t)task->idx;
        if (idx >= p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 4;
            fzr **el;
            while (cap <= idx)
                cap *= 2;
            if (!(el = realloc(p->el, cap * sizeof *el))) {
                fzr_free(r);
                return NULL;
            }
            memset(el + p->cap, 0, (cap - p->cap) * sizeof *el);
            p->el = el;
            p->cap = cap;
        }
        p->el[idx] = r;
        if (idx + 1 > p->n)
            p->n = idx + 1;
    }
    return r;
}

static fzr *fzr_new(int type)
{
    fzr *r = calloc(1, sizeof *r);
    if (r)
        r->type = type;
    return r;
}

static void *fzr_string(const redisReadTask *task, char *str, size_t len)
{
    int t = task->type == REDIS_REPLY_STATUS ? RP_REPLY_STATUS
            : task->type == REDIS_REPLY_ERROR ? RP_REPLY_ERROR : RP_REPLY_STRING;
    fzr *r = fzr_new(t);
    if (!r || !(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return fzr_attach(task, r);
}

#if HIREDIS_MAJOR >= 1
static void *fzr_array(const redisReadTask *task, size_t elements)
#else
static void *fzr_array(const redisReadTask *task, int elements)
#endif
{
    (void)elements;
    return fzr_attach(task, fzr_new(RP_REPLY_ARRAY));
}

static void *fzr_integer(const redisReadTask *task, long long v)
{
    fzr *r = fzr_new(RP_REPLY_INTEGER);
    if (r)
        r->integer = v;
    return fzr_attach(task, r);
}

static void *fzr_nil(const redisReadTask *task) { return fzr_attach(task, fzr_new(RP_REPLY_NIL)); }

#if HIREDIS_MAJOR >= 1
static void *fzr_double(const redisReadTask *task, double v, char *str, size_t len)
{
    (void)v;
    return fzr_string(task, str, len);
}

static void *fzr_bool(const redisReadTask *task, int v)
{
    fzr *r = fzr_new(RP_REPLY_BOOL);
    if (r)
        r->integer = v != 0;
    return fzr_attach(task, r);
}
#endif

static redisReplyObjectFunctions fzr_functions = {
    .createString = fzr_string,
    .createArray = fzr_array,
    .createInteger = fzr_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = fzr_double,
    .createBool = fzr_bool,
#endif
    .createNil = fzr_nil,
    .freeObject = fzr_free,
};

/* Parses up to want whole replies from buf[0..len): *got of them into out, *used the bytes
 * they take. Returns 0, or -1 for bytes that are no RESP (the replies before them count). */
static int fz_parse(const char *buf, size_t len, size_t want, fzr **out, size_t *got,
                    size_t *used)
{
    redisReader *rd = redisReaderCreateWithFunctions(&fzr_functions);
    int rc = 0;
    *got = 0;
    *used = 0;
    if (!rd)
        abort();
    rd->maxbuf = 0;
    if (len > 0 && redisReaderFeed(rd, buf, len) != REDIS_OK)
        abort();
    while (*got < want) {
        void *obj = NULL;
        if (redisReaderGetReply(rd, &obj) != REDIS_OK) {
            rc = -1;
            break;
        }
        if (!obj)
            break;
        out[(*got)++] = obj;
        *used = len - (rd->len - rd->pos); /* the reader compacts its buffer: count what is left */
    }
    redisReaderFree(rd);
    return rc;
}

static int fzr_is(const fzr *r, int type) { return r && r->type == type; }
static int fzr_status_is(const fzr *r, const char *s)
{
    return fzr_is(r, RP_REPLY_STATUS) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}
static int fzr_error_starts(const fzr *r, const char *s)
{
    return fzr_is(r, RP_REPLY_ERROR) && r->len >= strlen(s) && memcmp(r->str, s, strlen(s)) == 0;
}
static int fzr_bulk_is(const fzr *r, const char *s, size_t n)
{
    return fzr_is(r, RP_REPLY_STRING) && r->len == n && memcmp(r->str, s, n) == 0;
}
/* An array of exactly n integers. */
static int fzr_ints(const fzr *r, size_t n)
{
    size_t i;
    if (!fzr_is(r, RP_REPLY_ARRAY) || r->n != n)
        return 0;
    for (i = 0; i < n; i++)
        if (!fzr_is(r->el[i], RP_REPLY_INTEGER))
            return 0;
    return 1;
}

/* The same reply, as the core built it. */
static int fzr_equals(const fzr *a, const rp_reply *b)
{
    size_t i;
    if (!a || !b || (int)b->type != a->type)
        return 0;
    switch (a->type) {
    case RP_REPLY_ARRAY:
        if (a->n != b->elements)
            return 0;
        for (i = 0; i < a->n; i++)
            if (!fzr_equals(a->el[i], b->element[i]))
                return 0;
        return 1;
    case RP_REPLY_INTEGER:
    case RP_REPLY_BOOL:
        return a->integer == b->integer;
    case RP_REPLY_NIL:
        return 1;
    default:
        return a->len == b->len && (a->len == 0 || memcmp(a->str, b->str, a->len) == 0);
    }
}

/* A short description of r for a finding's report. */
static void fzr_describe(const fzr *r, char *out, size_t size)
{
    if (!r) {
        snprintf(out, size, "(none)");
        return;
    }
    switch (r->type) {
    case RP_REPLY_ARRAY: {
        size_t i, at;
        snprintf(out, size, "[");
        for (i = 0; i < r->n && (at = strlen(out)) + 8 < size; i++) {
            if (i)
                snprintf(out + strlen(out), size - strlen(out), ", ");
            at = strlen(out);
            fzr_describe(r->el[i], out + at, size - at);
        }
        snprintf(out + strlen(out), size - strlen(out), "]");
        return;
    }
    case RP_REPLY_INTEGER: snprintf(out, size, ":%lld", r->integer); return;
    case RP_REPLY_NIL: snprintf(out, size, "nil"); return;
    case RP_REPLY_STATUS: snprintf(out, size, "+%.40s", r->str); return;
    case RP_REPLY_ERROR: snprintf(out, size, "-%.40s", r->str); return;
    default: snprintf(out, size, "\"%.40s\"", r->str); return;
    }
}

/* --- the log: what each target was sent and answered, round by round -------------------- */

typedef struct fz_target {
    int in_round;          /* had a request, or listened */
    int listening;
    fzr *cmds[FZ_REPLIES_MAX];
    size_t ncmds;
    fzr *replies[FZ_REPLIES_MAX]; /* the independent parse of what it was fed */
    size_t nreplies;
    int complete;          /* fed every reply it owed (listening: at least one message) */
    int failed;            /* the harness failed it (a timeout) */
} fz_target;

typedef struct fz_round {
    fz_target t[FZ_NODES];
} fz_round;

typedef struct fz {
    const uint8_t *h;
    const char *data;
    size_t size, pos;
    uint32_t rng;
    fz_mem mem;
    rp_allocator alloc;
    rp_client *client;
    void *handle;
    rp_kind kind;
    void *more[2]; /* extra limiters of a multi check */
    size_t nmore;
    const rp_op_desc *d;
    const char *opname;
    size_t nodes;
    fz_round rounds[FZ_ROUNDS_MAX];
    size_t nrounds;
    int64_t fence_token;     /* fence.check's argument */
    int64_t capacity[3];     /* ratelimit: each limit's capacity (limit, or the burst) */
    size_t algo[3];          /* ratelimit: each limit's algorithm (index in algorithms) */
    size_t nlimits;
    /* listen: the pushes fed, in order, consumed as messages are emitted */
    fzr *fifo[FZ_FIFO_MAX];
    size_t fifo_head, fifo_len;
    uint64_t emitted;
    int drained; /* a long-lived op asked for a round with the stream already ended */
    size_t cancel_round; /* rounds logged when the op was cancelled */
    /* cache: how the op was set up and how its CALLs were answered */
    int ck_kind;             /* index in cache_ops */
    const char *ck_key;
    size_t ck_ntags;
    int ck_has_value;        /* set / write: a value (else a negative entry) */
    int ck_near_armed;       /* the near-cache was armed when the op began */
    int ck_near_put;         /* 0: no near entry of ck_key put; 1: a value; 2: negative */
    int ck_negative_ttl0;    /* negative_ttl 0: none is not cached */
    size_t ck_calls;         /* CALLs the op made */
    size_t ck_call_round;    /* rounds logged at the (last) CALL */
    int ck_answer;           /* how the last CALL was answered (FZ_ANS_*) */
} fz;

static void fz_log_free(fz *z)
{
    size_t r, n, i;
    for (r = 0; r < z->nrounds; r++)
        for (n = 0; n < FZ_NODES; n++) {
            fz_target *t = &z->rounds[r].t[n];
            for (i = 0; i < t->ncmds; i++)
                fzr_free(t->cmds[i]);
            for (i = 0; i < t->nreplies; i++)
                fzr_free(t->replies[i]);
        }
    z->nrounds = 0;
    for (i = 0; i < z->fifo_len; i++)
        fzr_free(z->fifo[z->fifo_head + i]);
    z->fifo_len = 0;
}

static uint32_t fz_rand(fz *z)
{
    uint32_t x = z->rng ? z->rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return z->rng = x;
}

/* --- requests: which command, which script ------------------------------------------------ */

static int arg_is(const fzr *cmd, size_t i, const char *s)
{
    size_t n = strlen(s), k;
    if (!cmd || i >= cmd->n || !fzr_is(cmd->el[i], RP_REPLY_STRING) || cmd->el[i]->len != n)
        return 0;
    for (k = 0; k < n; k++) {
        char c = cmd->el[i]->str[k];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != s[k])
            return 0;
    }
    return 1;
}

/* The name of the embedded script cmd runs (EVAL with its source or its pre-7 variant;
 * EVALSHA with either's SHA), or NULL. */
static const char *script_of(const fz *z, const fzr *cmd)
{
    const rp_script_registry *reg = rp_client__scripts(z->client);
    size_t i;
    int sha = arg_is(cmd, 0, "EVALSHA");
    const fzr *a;
    if (!sha && !arg_is(cmd, 0, "EVAL"))
        return NULL;
    if (cmd->n < 2 || !fzr_is(cmd->el[1], RP_REPLY_STRING))
        return NULL;
    a = cmd->el[1];
    for (i = 0; i < reg->count; i++) {
        const rp_script *s = &reg->scripts[i];
        int legacy;
        for (legacy = 0; legacy <= 1; legacy++) {
            size_t len;
            const char *text = sha ? rp_script__sha1(s, legacy) : rp_script__body(s, legacy, &len);
            if (sha)
                len = strlen(text);
            if (a->len == len && memcmp(a->str, text, len) == 0)
                return s->src->name;
        }
    }
    return NULL;
}

/* --- classifying one reply to one command -------------------------------------------------- */

enum { C_BAD, C_YES, C_NO, C_RETAKEN, C_RETRY };

/* A reply the engine answers by sending again (and that no pattern decides on): NOSCRIPT to
 * an EVALSHA; a pre-7 server's refusal of a script's "#!lua" line or of SET NX GET. */
static int is_retry(const fz *z, const fzr *cmd, const fzr *r)
{
    (void)z;
    if (arg_is(cmd, 0, "EVALSHA") && fzr_error_starts(r, "NOSCRIPT"))
        return 1;
    /* only the variant with the shebang (a pre-7 server's compile error at its line 1) */
    if (arg_is(cmd, 0, "EVAL") && cmd->n > 1 && cmd->el[1]->len >= 2 &&
        memcmp(cmd->el[1]->str, "#!", 2) == 0 && fzr_error_starts(r, "ERR Error compiling script"))
        return memmem(r->str, r->len, ":1: unexpected symbol near '#'", 30) != NULL;
    if (arg_is(cmd, 0, "SET") && cmd->n > 0 && arg_is(cmd, cmd->n - 1, "GET") &&
        fzr_error_starts(r, "ERR syntax error"))
        return 1;
    return 0;
}

/* How r answers cmd, by the contract of the command or script; *value: the number it
 * carries (a fence, a TTL). */
static int classify(const fz *z, const fzr *cmd, const fzr *r, int64_t *value)
{
    const char *script = script_of(z, cmd);
    int64_t v = 0;
    int c = C_BAD;
    if (is_retry(z, cmd, r))
        return C_RETRY;
    if (script == NULL && arg_is(cmd, 0, "SET")) {
        int get = cmd->n >= 1 && arg_is(cmd, cmd->n - 1, "GET");
        if (get) /* SET NX GET: nil = it was free (now ours); the holder's token = busy */
            c = fzr_is(r, RP_REPLY_NIL) ? C_YES : fzr_is(r, RP_REPLY_STRING) ? C_NO : C_BAD;
        else     /* SET NX: exactly +OK = set; nil = busy */
            c = fzr_status_is(r, "OK") ? C_YES : fzr_is(r, RP_REPLY_NIL) ? C_NO : C_BAD;
    } else if (script == NULL && arg_is(cmd, 0, "EXISTS")) {
        c = fzr_is(r, RP_REPLY_INTEGER) && (r->integer == 0 || r->integer == 1)
                ? (r->integer ? C_YES : C_NO) : C_BAD;
    } else if (script == NULL && arg_is(cmd, 0, "GET")) {
        if (fzr_is(r, RP_REPLY_NIL))
            c = C_NO;
        else if (fzr_is(r, RP_REPLY_STRING))
            c = fzr_bulk_is(r, FZ_TOKEN, FZ_TOKEN_LEN) ? C_YES : C_NO;
    } else if (script == NULL && arg_is(cmd, 0, "UNLINK")) {
        c = fzr_is(r, RP_REPLY_INTEGER) && r->integer >= 0 && r->integer <= 2 ? C_YES : C_BAD;
    } else if (script == NULL && arg_is(cmd, 0, "PUBLISH")) {
        if (fzr_is(r, RP_REPLY_INTEGER) && r->integer >= 0) {
            c = C_YES;
            v = r->integer;
        }
    } else if (script == NULL && (arg_is(cmd, 0, "AUTH") || arg_is(cmd, 0, "SELECT"))) {
        c = fzr_status_is(r, "OK") ? C_YES : C_BAD;
    } else if (script && strcmp(script, "lock_acquire") == 0) {
        /* the pre-7 plain acquire answers as SET NX GET: nil acquired, the holder's token busy */
        c = fzr_is(r, RP_REPLY_NIL) ? C_YES : fzr_is(r, RP_REPLY_STRING) ? C_NO : C_BAD;
    } else if (script && strcmp(script, "lock_acquire_fenced") == 0) {
        /* {1, fence >= 1} acquired; {0, pttl} busy (the key exists: its PTTL >= 0, or -1
         * without expiry) */
        if (fzr_ints(r, 2) && r->el[0]->integer == 1 && r->el[1]->integer >= 1) {
            c = C_YES;
            v = r->el[1]->integer;
        } else if (fzr_ints(r, 2) && r->el[0]->integer == 0 &&
                   r->el[1]->integer >= -1) {
            c = C_NO;
        }
    } else if (script && strcmp(script, "lock_release") == 0) {
        c = fzr_is(r, RP_REPLY_INTEGER) && (r->integer == 0 || r->integer == 1)
                ? (r->integer ? C_YES : C_NO) : C_BAD;
    } else if (script && strcmp(script, "lock_extend") == 0) {
        if (fzr_is(r, RP_REPLY_INTEGER) && r->integer >= 0) {
            c = r->integer > 0 ? C_YES : C_NO;
            v = r->integer;
        }
    } else if (script && strcmp(script, "redlock_extend") == 0) {
        if (fzr_is(r, RP_REPLY_INTEGER)) {
            c = r->integer > 0 ? C_YES : r->integer < 0 ? C_RETAKEN : C_NO;
            v = r->integer;
        }
    } else if (script && strcmp(script, "lock_remaining") == 0) {
        if (fzr_is(r, RP_REPLY_INTEGER) && (r->integer > 0 || r->integer == -2)) {
            c = r->integer > 0 ? C_YES : C_NO;
            v = r->integer;
        }
    } else if (script && strcmp(script, "fence_check") == 0) {
        /* {1, token} accepted (the token is now the highest); {0, highest > token} refused */
        if (fzr_ints(r, 2) && r->el[0]->integer == 1 && r->el[1]->integer == z->fence_token)
            c = C_YES;
        else if (fzr_ints(r, 2) && r->el[0]->integer == 0 && r->el[1]->integer > z->fence_token)
            c = C_NO;
        if (c != C_BAD)
            v = r->el[1]->integer;
    } else if (script && strcmp(script, "ratelimit") == 0) {
        /* {allowed, refused_by, then per limit: limit, remaining, retry_after, reset_after} */
        size_t i, n = z->nlimits;
        if (fzr_ints(r, 2 + 4 * n)) {
            long long allowed = r->el[0]->integer, by = r->el[1]->integer;
            int ok = (allowed == 1 && by == 0) || (allowed == 0 && by >= 1 && (size_t)by <= n);
            for (i = 0; ok && i < n; i++) {
                long long lim = r->el[2 + 4 * i]->integer, rem = r->el[3 + 4 * i]->integer;
                long long retry = r->el[4 + 4 * i]->integer, reset = r->el[5 + 4 * i]->integer;
                ok = lim >= 1 && rem >= 0 && rem <= lim && retry >= 0 && reset >= 0 &&
                     (allowed == 0 || retry == 0);
            }
            c = ok ? (allowed ? C_YES : C_NO) : C_BAD;
        } else if (n == 1 && fzr_is(r, RP_REPLY_INTEGER)) {
            /* one limit's compact decision (ratelimit.lua): every integer is one */
            c = r->integer >= 0 ? C_YES : C_NO;
        }
    }
    if (value)
        *value = v;
    return c;
}

static const char *class_name(int c)
{
    static const char *const names[] = { "bad", "yes", "no", "retaken", "retry" };
    return names[c];
}

/* --- checks of a DONE op's result --------------------------------------------------------- */

/* --- logical rounds: a round and the retry rounds that re-sent some of its commands ------ */

/* What each target answered in one logical round: its commands, and for each the reply that
 * stood in the end (a NOSCRIPT'ed EVALSHA's slot holds its EVAL's answer). */
typedef struct fz_view {
    size_t first, last;    /* the rounds it spans */
    int in[FZ_NODES];
    size_t n[FZ_NODES];
    const fzr *cmd[FZ_NODES][FZ_REPLIES_MAX];
    const fzr *rep[FZ_NODES][FZ_REPLIES_MAX]; /* NULL: no whole reply (failed, cut) */
} fz_view;

static size_t retries_in(const fz *z, size_t round, size_t node)
{
    const fz_target *t = &z->rounds[round].t[node];
    size_t i, k = 0;
    for (i = 0; i < t->nreplies && i < t->ncmds; i++)
        if (is_retry(z, t->cmds[i], t->replies[i]))
            k++;
    return k;
}

/* Round r re-sends what round r - 1 was answered "retry" for, and nothing else. */
static int is_retry_round(const fz *z, size_t r)
{
    size_t n;
    int any = 0;
    if (r == 0)
        return 0;
    for (n = 0; n < z->nodes; n++) {
        const fz_target *t = &z->rounds[r].t[n];
        if (!t->in_round)
            continue;
        if (!z->rounds[r - 1].t[n].in_round || t->ncmds == 0 || retries_in(z, r - 1, n) != t->ncmds)
            return 0;
        any = 1;
    }
    return any;
}

/* The logical round starting at round first; returns the round after it. */
static size_t view_at(const fz *z, size_t first, fz_view *v)
{
    size_t r, n, i, j;
    memset(v, 0, sizeof *v);
    v->first = v->last = first;
    for (n = 0; n < z->nodes; n++) {
        const fz_target *t = &z->rounds[first].t[n];
        v->in[n] = t->in_round;
        v->n[n] = t->ncmds;
        for (i = 0; i < t->ncmds; i++) {
            v->cmd[n][i] = t->cmds[i];
            v->rep[n][i] = !t->failed && t->complete && i < t->nreplies ? t->replies[i] : NULL;
        }
    }
    for (r = first + 1; r < z->nrounds && is_retry_round(z, r); r++) {
        v->last = r;
        for (n = 0; n < z->nodes; n++) {
            const fz_target *t = &z->rounds[r].t[n];
            if (!t->in_round)
                continue;
            for (i = 0, j = 0; i < v->n[n] && j < t->ncmds; i++)
                if (v->rep[n][i] && is_retry(z, v->cmd[n][i], v->rep[n][i])) {
                    v->cmd[n][i] = t->cmds[j];
                    v->rep[n][i] = !t->failed && t->complete && j < t->nreplies ? t->replies[j]
                                                                                : NULL;
                    j++;
                }
        }
    }
    return v->last + 1;
}

/* The logical rounds of the log: at most FZ_ROUNDS_MAX. */
static size_t views(const fz *z, fz_view *out)
{
    size_t r = 0, k = 0;
    while (r < z->nrounds && k < FZ_ROUNDS_MAX)
        r = view_at(z, r, &out[k++]);
    return k;
}

static void report_view(const fz_view *v, size_t nodes, const char *what)
{
    size_t n, i;
    char buf[256];
    fprintf(stderr, "  %s (rounds %zu..%zu):\n", what, v->first, v->last);
    for (n = 0; n < nodes; n++) {
        if (!v->in[n])
            continue;
        fprintf(stderr, "    node %zu:", n);
        for (i = 0; i < v->n[n]; i++) {
            fzr_describe(v->rep[n][i], buf, sizeof buf);
            fprintf(stderr, " %s", buf);
        }
        fputc('\n', stderr);
    }
}

static int class_in(const fz *z, const fz_view *v, size_t node, size_t i, int64_t *value)
{
    if (!v->in[node] || i >= v->n[node] || !v->rep[node][i])
        return C_BAD;
    return classify(z, v->cmd[node][i], v->rep[node][i], value);
}

static fz_view fz_views[FZ_ROUNDS_MAX]; /* big: one per process (inputs run one at a time) */

/* One node: the last logical round decides (want is the class the result claims); every one
 * before it was answered "busy" (C_NO), the only answer on which an op goes on. */
static void check_single(const fz *z, int want, int64_t *value)
{
    size_t k = views(z, fz_views), r;
    int c;
    if (k == 0) {
        fz_violation(z->opname, "DONE with a result that needs Redis' answer, without I/O");
        return;
    }
    for (r = 0; r + 1 < k; r++)
        if ((c = class_in(z, &fz_views[r], 0, 0, NULL)) != C_NO) {
            report_view(&fz_views[r], z->nodes, "an earlier round");
            fz_violation(z->opname, "DONE after a round answered %s (not busy)", class_name(c));
        }
    c = class_in(z, &fz_views[k - 1], 0, 0, value);
    if (c != want) {
        report_view(&fz_views[k - 1], z->nodes, "the deciding round");
        fz_violation(z->opname, "DONE claiming \"%s\" from a reply that is %s", class_name(want),
                     class_name(c));
    }
}

/* Redlock: a quorum of the last logical round's nodes gave the claimed answer, each in a
 * valid shape. */
static void check_quorum(const fz *z, int want)
{
    size_t k = views(z, fz_views), n, count = 0, q = z->nodes / 2 + 1;
    if (k == 0) {
        fz_violation(z->opname, "DONE with a result that needs Redis' answer, without I/O");
        return;
    }
    for (n = 0; n < z->nodes; n++)
        if (class_in(z, &fz_views[k - 1], n, 0, NULL) == want)
            count++;
    if (count < q) {
        report_view(&fz_views[k - 1], z->nodes, "the deciding round");
        fz_violation(z->opname, "DONE claiming \"%s\" with %zu valid such answers (a quorum is "
                     "%zu)", class_name(want), count, q);
    }
}

static int field_int(const rp_op_desc *d, const rp_value *f, const char *name, int64_t *out)
{
    int i = rp_desc_field_index(d, name);
    if (i < 0)
        return 0;
    *out = f[i].i;
    return 1;
}

static void check_decision(const fz *z, size_t index, const rp_value *f)
{
    int64_t allowed = 0, limit = 0, remaining = 0, retry = 0, reset = 0, degraded = 0;
    size_t k, i;
    const fz_view *v;
    const fzr *r;
    int c, match = 0;
    field_int(z->d, f, "allowed", &allowed);
    field_int(z->d, f, "limit", &limit);
    field_int(z->d, f, "remaining", &remaining);
    field_int(z->d, f, "retry_after", &retry);
    field_int(z->d, f, "reset_after", &reset);
    field_int(z->d, f, "degraded", &degraded);
    if (degraded) { /* the on_error policy decided: there must be a failure to decide on */
        int e = rp_desc_field_index(z->d, "error");
        if (e < 0 || f[e].i == RP_OK)
            fz_violation(z->opname, "decision %zu degraded without an error", index);
        return;
    }
    k = views(z, fz_views);
    v = k ? &fz_views[k - 1] : NULL;
    if (!v || ((c = class_in(z, v, 0, index, NULL)) != C_YES && c != C_NO)) {
        if (v)
            report_view(v, z->nodes, "the deciding round");
        fz_violation(z->opname, "decision %zu (allowed %" PRId64 ", limit %" PRId64 ", remaining %"
                     PRId64 ", retry_after %" PRId64 ", reset_after %" PRId64 ") not degraded, "
                     "from a reply that is not a valid decision", index, allowed, limit, remaining,
                     retry, reset);
        return;
    }
    r = v->rep[0][index];
    if (fzr_is(r, RP_REPLY_INTEGER)) { /* compact: L = capacity + 1, R = window (1000) + 2 */
        long long l = (long long)z->capacity[0] + 1, u = r->integer >= 0 ? r->integer : -1 - r->integer;
        long long q = u / l, want_retry = 0, want_reset = q;
        if (r->integer < 0 && z->algo[0] != 0) { /* (0: fixed window, retry = reset) */
            want_retry = q % 1002;
            want_reset = q / 1002;
        } else if (r->integer < 0) {
            want_retry = q;
        }
        if (allowed != (r->integer >= 0) || limit != z->capacity[0] || remaining != u % l ||
            retry != want_retry || reset != want_reset) {
            report_view(v, z->nodes, "the deciding round");
            fz_violation(z->opname, "decision %zu (allowed %" PRId64 ", limit %" PRId64 ", remaining %"
                         PRId64 ", retry_after %" PRId64 ", reset_after %" PRId64 ") is not what the "
                         "compact reply %lld said", index, allowed, limit, remaining, retry, reset,
                         r->integer);
        }
        return;
    }
    /* the fields are one limit's entry of that reply, as it said them */
    for (i = 0; i < z->nlimits; i++) {
        const fzr *const *e = (const fzr *const *)r->el + 2 + 4 * i;
        if (e[0]->integer == limit && e[1]->integer == remaining &&
            (allowed ? retry == 0 : e[2]->integer == retry) && e[3]->integer == reset)
            match = 1;
    }
    if (allowed != (r->el[0]->integer == 1) || !match) {
        report_view(v, z->nodes, "the deciding round");
        fz_violation(z->opname, "decision %zu (allowed %" PRId64 ", limit %" PRId64 ", remaining %"
                     PRId64 ", retry_after %" PRId64 ", reset_after %" PRId64 ") is not what the "
                     "reply said", index, allowed, limit, remaining, retry, reset);
    }
}

/* --- the validators: one per op, given the DONE op's first result record f (n records) -- */

typedef void (*fz_validator)(fz *z, rp_op *op, const rp_value *f, size_t n);

static void v_acquire(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    int64_t acquired = 0, fence = 0, said = 0;
    (void)op;
    (void)n;
    field_int(z->d, f, "acquired", &acquired);
    field_int(z->d, f, "fence", &fence);
    if (z->nodes > 1) { /* not acquired: the safe answer, whatever the nodes said */
        if (acquired)
            check_quorum(z, C_YES);
    } else if (acquired) {
        check_single(z, C_YES, &said);
        if (rp_lock_fenced(z->handle) && (fence < 1 || fence != said))
            fz_violation(z->opname, "acquired with fence %" PRId64 " (the reply said %" PRId64
                         ")", fence, said);
    } else {
        check_single(z, C_NO, NULL);
    }
}

/* release, extend, reset, publish: the one answer that means done */
static void v_yes(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    int64_t said = 0, receivers = 0;
    (void)op;
    (void)n;
    if (z->nodes > 1) {
        check_quorum(z, C_YES);
        return;
    }
    check_single(z, C_YES, &said);
    if (field_int(z->d, f, "receivers", &receivers) && receivers != said)
        fz_violation(z->opname, "receivers %" PRId64 " but the reply said %" PRId64, receivers,
                     said);
}

/* locked, owned, remaining */
static void v_query(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    int64_t value = 0, remaining = 0, said = 0;
    (void)op;
    (void)n;
    if (!field_int(z->d, f, "value", &value))
        field_int(z->d, f, "owned", &value);
    field_int(z->d, f, "remaining", &remaining);
    if (strcmp(z->opname, "lock.locked") != 0 && !rp_lock_token(z->handle, NULL)) {
        if (value)
            fz_violation(z->opname, "owned, by a handle without a token");
    } else if (z->nodes > 1) {
        check_quorum(z, value ? C_YES : C_NO);
    } else {
        check_single(z, value ? C_YES : C_NO, &said);
        if (strcmp(z->opname, "lock.remaining") == 0 && value && remaining != said)
            fz_violation(z->opname, "remaining %" PRId64 " but the reply said %" PRId64,
                         remaining, said);
    }
}

static void v_fence(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    int64_t accepted = 0, highest = 0, said = 0;
    (void)op;
    (void)n;
    field_int(z->d, f, "accepted", &accepted);
    field_int(z->d, f, "highest", &highest);
    check_single(z, accepted ? C_YES : C_NO, &said);
    if (highest != said)
        fz_violation(z->opname, "highest %" PRId64 " but the reply said %" PRId64, highest, said);
}

/* check, multi, batch: every decision */
static void v_decisions(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    rp_value g[RP_DESC_FIELDS_MAX];
    size_t i;
    (void)f;
    for (i = 0; i < n; i++) {
        memset(g, 0, sizeof g);
        if (rp_op_result(op, i, g) != RP_OK)
            fz_violation(z->opname, "decision %zu cannot be read", i);
        else
            check_decision(z, i, g);
    }
}

static void v_handshake(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    size_t k = views(z, fz_views), i;
    const fz_view *v = k ? &fz_views[k - 1] : NULL;
    int ok;
    (void)op;
    (void)f;
    (void)n;
    if (!v)
        return; /* nothing to say: no AUTH, no SELECT */
    for (ok = v->n[0] > 0, i = 0; ok && i < v->n[0]; i++)
        ok = class_in(z, v, 0, i, NULL) == C_YES;
    if (!ok || k > 1) {
        report_view(v, z->nodes, "the handshake");
        fz_violation(z->opname, "DONE, but not every AUTH / SELECT was answered exactly +OK");
    }
}

static void v_command(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    size_t k = views(z, fz_views);
    const fz_view *v = k ? &fz_views[k - 1] : NULL;
    (void)op;
    (void)n;
    if (!v || v->n[0] != 1 || !fzr_equals(v->rep[0][0], f[0].reply))
        fz_violation(z->opname, "DONE with a reply that is not the one Redis sent");
}

#if FUZZ_FAMILY == FAMILY_CACHE
static void v_cache(fz *z, rp_op *op, const rp_value *f, size_t n);
static void v_cache_tags(fz *z, rp_op *op, const rp_value *f, size_t n);
#endif

/* Which replies each op may claim success from is classify()'s table (per command and
 * script); what it claims from them is checked here. An op without an entry is a finding
 * too: a new op of a family gets a validator before it is fuzzed. */
static const struct {
    const char *op;
    fz_validator check;
} fz_validators[] = {
    { "lock.acquire", v_acquire },      { "lock.release", v_yes },
    { "lock.extend", v_yes },           { "lock.locked", v_query },
    { "lock.owned", v_query },          { "lock.remaining", v_query },
    { "fence.check", v_fence },         { "ratelimit.check", v_decisions },
    { "ratelimit.multi", v_decisions }, { "ratelimit.batch", v_decisions },
    { "ratelimit.reset", v_yes },       { "pubsub.publish", v_yes },
    { "client.handshake", v_handshake }, { "client.command", v_command },
#if FUZZ_FAMILY == FAMILY_CACHE
    { "cache.get", v_cache },           { "cache.get_or_load", v_cache },
    { "cache.set", v_cache },           { "cache.write", v_cache },
    { "cache.delete", v_cache },        { "cache.invalidate_tags", v_cache_tags },
#endif
};

static void check_done(fz *z, rp_op *op)
{
    rp_value f[RP_DESC_FIELDS_MAX];
    size_t i, n = rp_op_result_count(op);
    memset(f, 0, sizeof f);
    if (z->d->shape != RP_RESULT_NONE && n > 0 && rp_op_result(op, 0, f) != RP_OK)
        fz_violation(z->opname, "DONE but its result cannot be read");
    for (i = 0; i < sizeof fz_validators / sizeof fz_validators[0]; i++)
        if (strcmp(z->d->name, fz_validators[i].op) == 0) {
            fz_validators[i].check(z, op, f, n);
            return;
        }
    fz_violation(z->opname, "DONE, and the harness has no validator for it");
}

/* --- listen: every emitted message is one push of the stream, of the exact shape ---------- */

static const char *const push_words[] = { "message", "pmessage", "subscribe", "unsubscribe",
                                          "psubscribe", "punsubscribe" };

static int bytes_eq(const rp_value *v, const fzr *r)
{
    return v->type == RP_TYPE_BYTES && fzr_is(r, RP_REPLY_STRING) && v->len == r->len &&
           (r->len == 0 || memcmp(v->bytes, r->str, r->len) == 0);
}

/* Whether push p, of the stream, is what the message fields say. */
static int push_matches(const fzr *p, const char *kind, const rp_value *f)
{
    size_t k;
    if (!fzr_is(p, RP_REPLY_ARRAY) || p->n == 0 || !fzr_is(p->el[0], RP_REPLY_STRING))
        return 0;
    if (!fzr_bulk_is(p->el[0], kind, strlen(kind)))
        return 0;
    if (strcmp(kind, "message") == 0)
        return p->n == 3 && bytes_eq(&f[1], p->el[1]) && bytes_eq(&f[3], p->el[2]) &&
               f[2].type == RP_TYPE_NONE;
    if (strcmp(kind, "pmessage") == 0)
        return p->n == 4 && bytes_eq(&f[2], p->el[1]) && bytes_eq(&f[1], p->el[2]) &&
               bytes_eq(&f[3], p->el[3]);
    for (k = 2; k < sizeof push_words / sizeof push_words[0]; k++)
        if (strcmp(kind, push_words[k]) == 0) {
            const rp_value *name = (k == 2 || k == 3) ? &f[1] : &f[2];
            /* [kind, name (nil: unsubscribed from nothing), count >= 0] */
            return p->n == 3 && fzr_is(p->el[2], RP_REPLY_INTEGER) && p->el[2]->integer >= 0 &&
                   p->el[2]->integer == f[4].i &&
                   (fzr_is(p->el[1], RP_REPLY_NIL) ? name->type == RP_TYPE_NONE
                                                   : bytes_eq(name, p->el[1])) &&
                   f[3].type == RP_TYPE_NONE;
        }
    return 0;
}

static void check_emit(fz *z, rp_op *op)
{
    rp_value f[RP_DESC_FIELDS_MAX];
    char kind[32];
    memset(f, 0, sizeof f);
    z->emitted++;
    if (rp_op_message(op, f) != RP_OK) {
        fz_violation(z->opname, "EMIT without a message");
        return;
    }
    snprintf(kind, sizeof kind, "%.*s", (int)f[0].len, f[0].bytes ? f[0].bytes : "");
    if (strcmp(kind, "reconnect") == 0)
        return; /* the op's own note: a new connection is subscribed again */
    /* pushes before it that were not emitted: pongs, a re-subscription's confirmations */
    while (z->fifo_len > 0) {
        fzr *p = z->fifo[z->fifo_head];
        int ok = push_matches(p, kind, f);
        z->fifo_head++;
        z->fifo_len--;
        fzr_free(p);
        if (ok)
            return;
    }
    fz_violation(z->opname, "emitted a \"%s\" message that is no valid push of the stream",
                 kind);
}

/* --- the driver: a round fed from the stream ------------------------------------------------ */

static int fails_now(const fz *z, size_t round, size_t node)
{
    return (z->h[H_FAIL] >> ((3 * round + node) % 8)) & 1;
}

/* Feeds buf[0..len) to node in the header's chunks. Returns the last rp_op_feed result. A
 * listening target takes every byte (feed says RP_OK once one message is in); any other
 * stops at the first answer that is not RP_MORE. */
static int feed_chunks(fz *z, rp_op *op, size_t node, const char *buf, size_t len, int listening)
{
    size_t at = 0;
    int rc = RP_MORE, mode = z->h[H_MODE] & 3;
    if (len == 0)
        return rp_op_feed(op, node, buf, 0);
    while (at < len) {
        size_t n = mode == 0 ? len - at : mode == 1 ? 1 : 1 + fz_rand(z) % 24;
        if (n > len - at)
            n = len - at;
        rc = rp_op_feed(op, node, buf + at, n);
        at += n;
        if (rc != RP_MORE && !(listening && rc == RP_OK))
            break;
    }
    return rc;
}

static void log_requests(rp_op *op, fz_target *t, size_t node)
{
    const char *bytes;
    size_t len, used;
    if (rp_op_request(op, node, &bytes, &len) != RP_OK || len == 0)
        return;
    fz_parse(bytes, len, FZ_REPLIES_MAX, t->cmds, &t->ncmds, &used);
}

static void fifo_push(fz *z, const char *buf, size_t len, size_t count)
{
    fzr *tmp[FZ_REPLIES_MAX];
    size_t got = 0, used, i;
    if (z->fifo_head > 0 && z->fifo_head + z->fifo_len + count > FZ_FIFO_MAX) {
        memmove(z->fifo, z->fifo + z->fifo_head, z->fifo_len * sizeof *z->fifo);
        z->fifo_head = 0;
    }
    fz_parse(buf, len, count, tmp, &got, &used);
    for (i = 0; i < got; i++) {
        if (z->fifo_head + z->fifo_len < FZ_FIFO_MAX)
            z->fifo[z->fifo_head + z->fifo_len++] = tmp[i];
        else
            fzr_free(tmp[i]);
    }
}

static void feed_target(fz *z, rp_op *op, size_t round, size_t node, fz_target *t)
{
    const char *rest = z->data + z->pos;
    size_t left = z->size - z->pos, want, got = 0, used = 0, i;
    fzr *parsed[FZ_REPLIES_MAX];
    int rc;
    if (fails_now(z, round, node)) {
        t->failed = 1;
        rp_op_fail_node(op, node, RP_ETIMEOUT, "fuzz: the node timed out");
        return;
    }
    if (t->listening) /* a few messages at a time */
        want = 1 + (size_t)(z->h[H_C] % 3);
    else
        want = rp_op_replies_owed(op, node);
    if (want > FZ_REPLIES_MAX - t->nreplies)
        want = FZ_REPLIES_MAX - t->nreplies;
    fz_parse(rest, left, want, parsed, &got, &used);
    if (got < want || want == 0) /* not all in the stream: it gets the rest, then times out */
        used = left;
    z->pos += used;
    if (t->listening)
        fifo_push(z, rest, used, got);
    rc = feed_chunks(z, op, node, rest, used, t->listening);
    for (i = 0; i < got; i++)
        t->replies[t->nreplies++] = parsed[i];
    if (rc == RP_OK && got < want && !t->listening)
        fz_violation(z->opname, "rp_op_feed said all replies are in, but the stream holds only "
                     "%zu of the %zu owed", got, want);
    /* a "-ERR Protocol error" reply fails its node (Redis closes the connection after it),
     * yet it is a whole reply: the command did not run (RP_EAUTH when it says
     * "unauthenticated") */
    t->complete = rc == RP_OK || ((rc == RP_EREPLY || rc == RP_EAUTH) && got == want && got > 0 &&
                                  fzr_is(parsed[got - 1], RP_REPLY_ERROR));
    if (rc == RP_MORE) {
        t->failed = 1;
        rp_op_fail_node(op, node, t->listening ? RP_ETRANSPORT : RP_ETIMEOUT,
                        "fuzz: the stream ended");
    }
}

/* One IO round: every target with a request (or listening) is fed or failed, as the driver
 * contract says, until the round is over. */
static void io_round(fz *z, rp_op *op)
{
    size_t round = z->nrounds < FZ_ROUNDS_MAX ? z->nrounds++ : FZ_ROUNDS_MAX - 1, n;
    fz_round *rd = &z->rounds[round];
    if (z->pos >= z->size && rp_op_long_lived(op))
        z->drained = 1; /* its targets fail below; then it is cancelled */
    if (round == FZ_ROUNDS_MAX - 1) { /* the log is full: keep reusing its last slot */
        size_t i;
        for (n = 0; n < FZ_NODES; n++) {
            for (i = 0; i < rd->t[n].ncmds; i++)
                fzr_free(rd->t[n].cmds[i]);
            for (i = 0; i < rd->t[n].nreplies; i++)
                fzr_free(rd->t[n].replies[i]);
        }
        memset(rd, 0, sizeof *rd);
    }
    for (n = 0; n < z->nodes && n < FZ_NODES; n++) {
        fz_target *t = &rd->t[n];
        t->listening = rp_op_listening(op, n);
        t->in_round = t->listening || rp_op_pending(op, n);
        log_requests(op, t, n);
    }
    for (n = 0; n < z->nodes && n < FZ_NODES && !rp_op_round_over(op); n++)
        if (rd->t[n].in_round && (rp_op_pending(op, n) || rd->t[n].listening))
            feed_target(z, op, round, n, &rd->t[n]);
    /* the driver may stop reading once the round is over; a listening target that heard
     * nothing ended the stream above */
}

/* --- the families: handles, and each op's arguments from the header -------------------- */

static rp_value bytes_v(const char *s) { return rp_value_bytes(s, strlen(s)); }

#if FUZZ_FAMILY != FAMILY_CLIENT
static void *make(fz *z, const char *desc, rp_value *a)
{
    const rp_op_desc *d = rp_desc_find(desc, strlen(desc));
    void *h = NULL;
    rp_error e;
    if (!d || rp_desc_make(&h, d, a, NULL, &e) != RP_OK) {
        fprintf(stderr, "fuzz: %s failed: %s\n", desc, d ? e.message : "no such descriptor");
        abort();
    }
    (void)z;
    return h;
}
#endif

static void new_client(fz *z, const char *url)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_error e;
    o.url = url;
    o.key_namespace = "t";
    o.allocator = &z->alloc;
    o.max_reply_size = FZ_MAX_REPLY;
    if (rp_client_new(&z->client, &o, &e) != RP_OK) {
        fprintf(stderr, "fuzz: rp_client_new: %s\n", e.message);
        abort();
    }
    if (z->h[H_MODE] & 4) { /* scripts known: EVALSHA (and the NOSCRIPT path) */
        const rp_script_registry *r = rp_client__scripts(z->client);
        size_t i, n;
        for (i = 0; i < r->count; i++)
            for (n = 0; n < FZ_NODES; n++)
                rp_script__learn(&r->scripts[i], n, 1);
    }
    if (z->h[H_MODE] & 16) {
        size_t n;
        for (n = 0; n < FZ_NODES; n++)
            rp_script__learn_pre7(rp_client__scripts(z->client), n);
    }
}

#if FUZZ_FAMILY == FAMILY_LOCKS || FUZZ_FAMILY == FAMILY_REDLOCK
/* The handle holds FZ_TOKEN, as after an acquire. */
static void hold(fz *z, rp_lock *l)
{
    const rp_allocator *a = rp_client__allocator(z->client);
    rp_lock__forget_token(l);
    l->token = rp_alloc__memdup(a, FZ_TOKEN, FZ_TOKEN_LEN);
    if (!l->token)
        abort();
    l->token_len = FZ_TOKEN_LEN;
    l->fence = l->fenced ? 1 : 0;
}
#endif

/* Arguments the header made that the op refuses (a cost above a limit): no op, no input. */
static void begin(fz *z, rp_op **op, const char *desc, rp_value *a)
{
    rp_error e;
    z->d = rp_desc_find(desc, strlen(desc));
    z->opname = desc;
    z->mem.op = desc;
    if (!z->d)
        abort();
    if (rp_desc_begin(op, z->d, a, NULL, &e) != RP_OK) {
        if (e.code != RP_EINVAL)
            fz_violation(desc, "begin failed: %s", e.message);
        *op = NULL;
    }
}

#if FUZZ_FAMILY == FAMILY_LOCKS || FUZZ_FAMILY == FAMILY_REDLOCK
static const char *const lock_ops[] = { "lock.acquire", "lock.release", "lock.extend",
                                        "lock.locked", "lock.owned", "lock.remaining",
                                        "fence.check" };
static void begin_op(fz *z, rp_op **op)
{
    const uint8_t *h = z->h;
    size_t nops = sizeof lock_ops / sizeof lock_ops[0];
    const char *name;
    rp_value a[RP_DESC_ARGS_MAX];
    memset(a, 0, sizeof a);
#if FUZZ_FAMILY == FAMILY_LOCKS
    new_client(z, NULL);
    z->nodes = 1;
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    a[1] = bytes_v("r");
    a[3] = rp_value_int(RP_TYPE_BOOL, h[H_A] & 1); /* fenced */
    z->handle = make(z, "lock.new", a);
#else
    nops--; /* fence.check is one instance's */
    new_client(z, "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003");
    z->nodes = 3;
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    a[1] = bytes_v("r");
    z->handle = make(z, "redlock.new", a);
#endif
    z->kind = RP_KIND_LOCK;
    name = lock_ops[h[H_OP] % nops];
    if (strcmp(name, "lock.release") == 0 || strcmp(name, "lock.extend") == 0 ||
        (h[H_MODE] & 8))
        hold(z, z->handle);
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_LOCK, z->handle);
    if (strcmp(name, "lock.acquire") == 0) {
        /* wait 0 (try once) or up to 3 * 40 ms of retries with the fake clock */
        a[1] = rp_value_int(RP_TYPE_MS, (h[H_A] >> 1) % 4 * 40);
        a[2] = rp_value_int(RP_TYPE_MS, 5);
        a[3] = rp_value_int(RP_TYPE_MS, 20);
        a[4] = rp_value_bytes(FZ_TOKEN, FZ_TOKEN_LEN);
    } else if (strcmp(name, "lock.extend") == 0) {
        a[1] = rp_value_int(RP_TYPE_MS, 1000 + h[H_B]);
        a[2] = rp_value_int(RP_TYPE_BOOL, (h[H_A] >> 3) & 1);
    } else if (strcmp(name, "fence.check") == 0) {
        z->fence_token = 1 + h[H_B] % 8;
        a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
        a[1] = bytes_v("res");
        a[2] = rp_value_int(RP_TYPE_INT, z->fence_token);
    }
    begin(z, op, name, a);
}
#elif FUZZ_FAMILY == FAMILY_RATELIMIT
static const char *const rl_ops[] = { "ratelimit.check", "ratelimit.multi", "ratelimit.batch",
                                      "ratelimit.reset" };
static const char *const algorithms[] = { "fixed_window", "sliding_log", "sliding_window",
                                          "token_bucket", "gcra" };
static const char *const policies[] = { "report", "fail_open", "fail_closed" };

static void *limiter(fz *z, const char *name, size_t algo, int64_t limit, int64_t burst,
                     size_t policy, size_t slot)
{
    rp_value a[RP_DESC_ARGS_MAX];
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    a[1] = bytes_v(name);
    a[2] = bytes_v(algorithms[algo]);
    a[3] = rp_value_int(RP_TYPE_INT, limit);
    a[4] = rp_value_int(RP_TYPE_MS, 1000);
    a[5] = rp_value_int(RP_TYPE_INT, algo >= 3 ? burst : 0);
    a[6] = bytes_v(policies[policy]);
    z->capacity[slot] = algo >= 3 && burst > 0 ? burst : limit;
    z->algo[slot] = algo;
    return make(z, "ratelimit.new", a);
}

static void begin_op(fz *z, rp_op **op)
{
    const uint8_t *h = z->h;
    const char *name = rl_ops[h[H_OP] % (sizeof rl_ops / sizeof rl_ops[0])];
    size_t policy = (size_t)(h[H_D] % 3), i, n;
    rp_value a[RP_DESC_ARGS_MAX], items[4], costs[4];
    static const char *const subjects[] = { "u1", "u2", "u3", "u4" };
    new_client(z, NULL);
    z->nodes = 1;
    z->handle = limiter(z, "api", (size_t)(h[H_A] % 5), 1 + h[H_B] % 10, (h[H_D] >> 2) % 4 * 3,
                        policy, 0);
    z->kind = RP_KIND_RATELIMIT;
    z->nlimits = 1;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_RATELIMIT, z->handle);
    a[1] = bytes_v("u1");
    a[2] = rp_value_int(RP_TYPE_INT, h[H_C] % 3); /* 0: a peek */
    if (strcmp(name, "ratelimit.multi") == 0) {
        z->more[0] = limiter(z, "burst", (size_t)((h[H_A] >> 3) % 5), 1 + (h[H_B] >> 4),
                             (h[H_D] >> 4) % 4 * 2, policy, 1);
        z->nmore = 1;
        z->nlimits = 2;
        items[0] = rp_value_handle(RP_KIND_RATELIMIT, z->handle);
        items[1] = rp_value_handle(RP_KIND_RATELIMIT, z->more[0]);
        a[0] = rp_value_list(items, 2);
    } else if (strcmp(name, "ratelimit.batch") == 0) {
        n = 1 + (size_t)((h[H_C] >> 2) % 4);
        for (i = 0; i < n; i++) {
            items[i] = bytes_v(subjects[i]);
            costs[i] = rp_value_int(RP_TYPE_INT, (h[H_C] >> (4 + i)) & 1);
        }
        a[1] = rp_value_list(items, n);
        a[2] = (h[H_A] & 128) ? rp_value_list(costs, n) : (rp_value){ 0 };
    } else if (strcmp(name, "ratelimit.reset") == 0) {
        a[2] = (rp_value){ 0 };
    }
    begin(z, op, name, a);
}
#elif FUZZ_FAMILY == FAMILY_PUBSUB
static void begin_op(fz *z, rp_op **op)
{
    const uint8_t *h = z->h;
    rp_value a[RP_DESC_ARGS_MAX], ch[2], pt[1];
    new_client(z, "redis://127.0.0.1:7001");
    z->nodes = 1;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    if (h[H_OP] % 2 == 0) {
        a[1] = bytes_v("ch");
        a[2] = bytes_v("hello");
        begin(z, op, "pubsub.publish", a);
        return;
    }
    /* channels a and b, pattern p*, or both, or neither (PING proves the connection) */
    ch[0] = bytes_v("a");
    ch[1] = bytes_v("b");
    pt[0] = bytes_v("p*");
    if (h[H_A] & 1)
        a[1] = rp_value_list(ch, 1 + (h[H_A] >> 2 & 1));
    if (h[H_A] & 2)
        a[2] = rp_value_list(pt, 1);
    z->handle = make(z, "subscription.new", a);
    z->kind = RP_KIND_SUBSCRIPTION;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_SUBSCRIPTION, z->handle);
    begin(z, op, "subscription.listen", a);
}
#elif FUZZ_FAMILY == FAMILY_CLIENT
static void begin_op(fz *z, rp_op **op)
{
    const uint8_t *h = z->h;
    static const char *const urls[] = { "redis://:pw@127.0.0.1:7001/3",
                                        "redis://user:pw@127.0.0.1:7001",
                                        "redis://127.0.0.1:7001/2",
                                        "redis://user:pw@127.0.0.1:7001/15" };
    rp_value a[RP_DESC_ARGS_MAX], argv[3];
    new_client(z, urls[h[H_A] % 4]);
    z->nodes = 1;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    if (h[H_OP] % 2 == 0) {
        begin(z, op, "client.handshake", a);
        return;
    }
    argv[0] = bytes_v((h[H_B] & 1) ? "MGET" : "GET");
    argv[1] = bytes_v("k1");
    argv[2] = bytes_v("k2");
    a[1] = rp_value_list(argv, (h[H_B] & 1) ? 3 : 2);
    begin(z, op, "client.command", a);
}
#elif FUZZ_FAMILY == FAMILY_CACHE
/* H_OP % 7: the op below. H_A: bits 0-1 stampede (none, lock, swr, xfetch); bit 2 a
 * near-cache (near_size 2); bit 3 negative_ttl 0; bit 4 unversioned; bits 5-6 tags (0..3:
 * t1, t2, t3; invalidate_tags at least 1); bit 7 key "k2" (never in the near-cache), else "k".
 * H_B: bits 0-2 how a CALL is answered (FZ_ANS_*); bit 3 the op is stepped once while its
 * CALL runs; bit 4 set / write carry a value (else a negative entry); bit 5 get_or_load's
 * random 0.5 (else the core draws); bits 6-7 the near-cache before the op: 0 not armed, 1
 * armed, 2 armed with "k" = "nv", 3 armed with "k" negative (with the op's tags).
 * H_C % 8: near_apply records taken from the stream before the op (cache.near_apply: every
 * record of the stream), each [kind byte][length byte][data]: kind % 8 indexes near_kinds
 * (7: the data is the kind, with no data), kind bit 7: no data.
 * H_D: bit 0 jitter 100 ms; bit 1 the near entry is put already expired; bit 2 swr's stale
 * 200 ms (else 0: ttl); bit 3 beta 1e6; bit 4 load_timeout 1 ms (lock_ttl 1 ms). */
static const char *const cache_ops[] = { "cache.get", "cache.get_or_load", "cache.set",
                                         "cache.write", "cache.delete", "cache.invalidate_tags",
                                         "cache.near_apply" };
enum { CK_GET, CK_LOAD, CK_SET, CK_WRITE, CK_DELETE, CK_TAGS, CK_APPLY };
static const char *const stampedes[] = { "none", "lock", "swr", "xfetch" };
static const char *const fz_tag_names[] = { "t1", "t2", "t3" };
static const char *const near_kinds[] = { "message", "pmessage", "subscribe", "psubscribe",
                                          "unsubscribe", "reconnect", "pong" };
#define FZ_LOADED "lv"
#define FZ_NEAR_VALUE "nv"
#define FZ_SET_VALUE "sv"
#define FZ_BIG 8192
static char fz_big[FZ_BIG];

static rp_cache *fz_cache(const fz *z) { return z->handle; }

static int bytes_eq_s(const rp_value *v, const char *s)
{
    return v->type == RP_TYPE_BYTES && v->len == strlen(s) &&
           (v->len == 0 || memcmp(v->bytes, s, v->len) == 0);
}

static int kind_is(const rp_value *v, const char *s) { return bytes_eq_s(v, s); }

/* One near_apply record of the stream, as an op of its own, checked: what it says it did is
 * what the near-cache's stats show. 0 when the stream holds no record. */
static int near_record(fz *z, uint64_t now)
{
    const char *p = z->data + z->pos;
    size_t left = z->size - z->pos, len;
    int64_t before = 0, after = 0, dropped = -1, cleared = -1;
    int armed_before = 0, armed = 0, k;
    rp_value a[RP_DESC_ARGS_MAX], f[RP_DESC_FIELDS_MAX];
    const char *kind;
    rp_op *op = NULL;
    rp_step st;
    if (left < 2)
        return 0;
    k = (uint8_t)p[0];
    len = (uint8_t)p[1];
    if (len > left - 2)
        len = left - 2;
    z->pos += 2 + len;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CACHE, z->handle);
    if (k % 8 == 7) {
        a[1] = rp_value_bytes(p + 2, len);
        kind = "(data)";
    } else {
        kind = near_kinds[k % 8];
        a[1] = bytes_v(kind);
        if (!(k & 0x80))
            a[2] = rp_value_bytes(p + 2, len);
    }
    rp_cache_near_stats(fz_cache(z), &before, &armed_before);
    begin(z, &op, "cache.near_apply", a);
    if (!op)
        return 1; /* refused (an empty kind): checked by begin */
    st = rp_op_step(op, now);
    memset(f, 0, sizeof f);
    if (st != RP_STEP_DONE || rp_op_result(op, 0, f) != RP_OK) {
        fz_violation(z->opname, "a near_apply (%s) did not end DONE with a result (step %d)",
                     kind, (int)st);
        rp_op_free(op);
        return 1;
    }
    field_int(z->d, f, "dropped", &dropped);
    field_int(z->d, f, "cleared", &cleared);
    rp_op_free(op);
    rp_cache_near_stats(fz_cache(z), &after, &armed);
    if (fz_verbose)
        fprintf(stderr, "fuzz: near_apply %s (%zu bytes): dropped %" PRId64 ", cleared %" PRId64
                ", entries %" PRId64 " -> %" PRId64 ", armed %d -> %d\n", kind, len, dropped,
                cleared, before, after, armed_before, armed);
    if (dropped < 0 || dropped > before || (cleared != 0 && cleared != 1))
        fz_violation(z->opname, "%s: dropped %" PRId64 " of %" PRId64 " entries, cleared %"
                     PRId64, kind, dropped, before, cleared);
    if (!fz_cache(z)->near) {
        if (dropped || cleared || after || armed)
            fz_violation(z->opname, "%s without a near-cache: dropped %" PRId64 ", cleared %"
                         PRId64, kind, dropped, cleared);
        return 1;
    }
    if (cleared ? after != 0 : after != before - dropped)
        fz_violation(z->opname, "%s: %" PRId64 " entries -> %" PRId64 ", but it says dropped %"
                     PRId64 ", cleared %" PRId64, kind, before, after, dropped, cleared);
    if (kind_is(&a[1], "subscribe") || kind_is(&a[1], "psubscribe")) {
        if (!armed || cleared || dropped)
            fz_violation(z->opname, "%s: armed %d, cleared %" PRId64 ", dropped %" PRId64, kind,
                         armed, cleared, dropped);
    } else if (kind_is(&a[1], "message") || kind_is(&a[1], "pmessage")) {
        if (armed != armed_before)
            fz_violation(z->opname, "%s changed armed %d -> %d", kind, armed_before, armed);
    } else if (kind_is(&a[1], "reconnect")) {
        /* re-subscribed, with what was published meanwhile missed: it clears (whether it
         * stays armed is the core's call: core-requests.md "py 01:42") */
        if (!cleared)
            fz_violation(z->opname, "reconnect: cleared %" PRId64 " (it must clear)", cleared);
    } else if (armed || !cleared) {
        fz_violation(z->opname, "%s: armed %d, cleared %" PRId64 " (it must disarm and clear)",
                     kind, armed, cleared);
    }
    return 1;
}

static void begin_op(fz *z, rp_op **op)
{
    const uint8_t *h = z->h;
    rp_value a[RP_DESC_ARGS_MAX], tags[3], cb;
    rp_buf tag_bufs[3];
    size_t i, ntags, nrec;
    int near_mode = h[H_B] >> 6, load_timeout_1 = (h[H_D] >> 4) & 1;
    uint64_t now = 1000000;
    rp_cache *c;
    new_client(z, NULL);
    z->nodes = 1;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, z->client);
    a[1] = bytes_v("c");
    a[2] = rp_value_int(RP_TYPE_MS, 1000);
    a[3] = rp_value_int(RP_TYPE_MS, (h[H_A] & 8) ? 0 : 500);
    a[4] = rp_value_int(RP_TYPE_MS, (h[H_D] & 1) ? 100 : 0);
    a[5] = bytes_v(stampedes[h[H_A] & 3]);
    a[6] = rp_value_int(RP_TYPE_MS, load_timeout_1 ? 1 : 50);
    a[7] = rp_value_int(RP_TYPE_MS, (h[H_D] & 4) ? 200 : 0);
    a[8] = rp_value_float((h[H_D] & 8) ? 1e6 : 1.0);
    a[9] = rp_value_int(RP_TYPE_MS, load_timeout_1 ? 1 : 60000);
    a[10] = rp_value_int(RP_TYPE_BOOL, !(h[H_A] & 16));
    a[11] = rp_value_int(RP_TYPE_INT, (h[H_A] & 4) ? 2 : 0);
    a[12] = rp_value_int(RP_TYPE_MS, 1000);
    z->handle = c = make(z, "cache.new", a);
    z->kind = RP_KIND_CACHE;
    z->ck_kind = h[H_OP] % (int)(sizeof cache_ops / sizeof cache_ops[0]);
    z->ck_key = (h[H_A] & 128) ? "k2" : "k";
    z->ck_negative_ttl0 = (h[H_A] & 8) != 0;
    ntags = (size_t)((h[H_A] >> 5) & 3);
    if (z->ck_kind == CK_TAGS && ntags == 0)
        ntags = 1;
    z->ck_ntags = ntags;
    for (i = 0; i < ntags; i++) {
        tags[i] = bytes_v(fz_tag_names[i]);
        tag_bufs[i].data = (char *)fz_tag_names[i];
        tag_bufs[i].len = strlen(fz_tag_names[i]);
        tag_bufs[i].cap = 0;
    }
    /* the near-cache before the op: armed by its subscriber's confirmation, maybe with "k" */
    if (c->near && near_mode > 0) {
        int64_t d;
        int cl;
        rp_cache_near_apply(c, "subscribe", 9, c->channel, c->channel_len, &d, &cl, NULL);
        if (near_mode >= 2) {
            int expired = (h[H_D] >> 1) & 1;
            rp_near__put(c->near, rp_near__epoch(c->near), "k", 1,
                         near_mode == 2 ? FZ_NEAR_VALUE : NULL, near_mode == 2 ? 2 : 0,
                         tag_bufs, ntags, expired ? now - 1 : now, expired ? 1 : 1000);
            z->ck_near_put = near_mode == 2 ? 1 : 2;
        }
    }
    nrec = z->ck_kind == CK_APPLY ? (size_t)-1 : (size_t)(h[H_C] % 8);
    for (i = 0; i < nrec && near_record(z, now); i++)
        ;
    if (z->ck_kind == CK_APPLY) {
        *op = NULL; /* every record was an op of its own */
        return;
    }
    {
        int64_t entries;
        rp_cache_near_stats(c, &entries, &z->ck_near_armed);
    }
    memset(a, 0, sizeof a);
    memset(&cb, 0, sizeof cb);
    cb.type = RP_TYPE_CALLBACK;
    a[0] = rp_value_handle(RP_KIND_CACHE, z->handle);
    a[1] = bytes_v(z->ck_key);
    z->ck_has_value = (h[H_B] >> 4) & 1;
    switch (z->ck_kind) {
    case CK_GET:
        if (ntags)
            a[2] = rp_value_list(tags, ntags);
        break;
    case CK_LOAD:
        a[2] = cb;
        if (ntags)
            a[3] = rp_value_list(tags, ntags);
        if (h[H_B] & 32)
            a[4] = rp_value_float(0.5);
        break;
    case CK_SET:
        if (z->ck_has_value)
            a[2] = bytes_v(FZ_SET_VALUE);
        if (ntags)
            a[3] = rp_value_list(tags, ntags);
        break;
    case CK_WRITE:
        if (z->ck_has_value)
            a[2] = bytes_v(FZ_SET_VALUE);
        a[3] = cb;
        if (ntags)
            a[4] = rp_value_list(tags, ntags);
        break;
    case CK_TAGS:
        a[1] = rp_value_list(tags, ntags);
        break;
    default:
        break;
    }
    begin(z, op, cache_ops[z->ck_kind], a);
}

/* How a CALL is answered (H_B bits 0-2). */
enum { FZ_ANS_VALUE, FZ_ANS_NOTHING, FZ_ANS_FAIL, FZ_ANS_USER_CANCEL, FZ_ANS_DRIVER_CANCEL,
       FZ_ANS_EMPTY, FZ_ANS_BIG, FZ_ANS_FAIL_SILENT };

static int ans_is_failure(int a)
{
    return a == FZ_ANS_FAIL || a == FZ_ANS_FAIL_SILENT || a == FZ_ANS_USER_CANCEL ||
           a == FZ_ANS_DRIVER_CANCEL;
}

/* A CALL: its callback and arguments are checked (the loader gets the key; the writer the
 * key and the value, absent for a negative write), then it is answered as the header says:
 * with a value, nothing, a failure, the user's cancel or the driver's (rp_op_cancel). */
static void answer_call(fz *z, rp_op *op, uint64_t now, int *cancelled)
{
    size_t arg = 99, count = 0;
    rp_value v[4], r;
    int how = z->h[H_B] & 7, rc;
    memset(v, 0, sizeof v);
    memset(&r, 0, sizeof r);
    z->ck_calls++;
    z->ck_call_round = z->nrounds;
    z->ck_answer = how;
    if (rp_op_call(op, &arg, v, 4, &count) != RP_OK) {
        fz_violation(z->opname, "CALL, but rp_op_call says none is waiting");
        return;
    }
    if (z->ck_kind == CK_LOAD) {
        if (arg != RP_CACHE_LOADER_ARG || count != 1 || !bytes_eq_s(&v[0], z->ck_key))
            fz_violation(z->opname, "CALLs arg %zu with %zu values (not the loader with the "
                         "key)", arg, count);
    } else if (z->ck_kind == CK_WRITE) {
        if (arg != RP_CACHE_WRITER_ARG || count != 2 || !bytes_eq_s(&v[0], z->ck_key) ||
            (z->ck_has_value ? !bytes_eq_s(&v[1], FZ_SET_VALUE) : v[1].type != RP_TYPE_NONE))
            fz_violation(z->opname, "CALLs arg %zu with %zu values (not the writer with the key "
                         "and the value)", arg, count);
    } else {
        fz_violation(z->opname, "CALLs arg %zu: this op has no callback", arg);
    }
    if (z->ck_calls > 1)
        fz_violation(z->opname, "CALLs its callback %zu times", z->ck_calls);
    if (z->h[H_B] & 8) { /* the callback takes a while: the op waits for it */
        rp_step st = rp_op_step(op, now);
        if (st != RP_STEP_SLEEP || rp_op_sleep_ms(op) != RP_SLEEP_UNTIL_RESUMED)
            fz_violation(z->opname, "stepped while its CALL runs: step %d (sleep %" PRIu64 ")",
                         (int)st, rp_op_sleep_ms(op));
    }
    switch (how) {
    case FZ_ANS_VALUE: r = bytes_v(FZ_LOADED); break;
    case FZ_ANS_NOTHING: break;
    case FZ_ANS_FAIL: r.type = RP_TYPE_STATUS; r.i = RP_ECALLBACK; r.bytes = "boom"; r.len = 4; break;
    case FZ_ANS_FAIL_SILENT: r.type = RP_TYPE_STATUS; r.i = RP_ECALLBACK; break;
    case FZ_ANS_USER_CANCEL: r.type = RP_TYPE_STATUS; r.i = RP_ECANCELED; r.bytes = "stop"; r.len = 4; break;
    case FZ_ANS_EMPTY: r = rp_value_bytes("", 0); break;
    case FZ_ANS_BIG: r = rp_value_bytes(fz_big, FZ_BIG); break;
    default: break;
    }
    if (how == FZ_ANS_DRIVER_CANCEL || how == FZ_ANS_USER_CANCEL) {
        *cancelled = 1;
        z->cancel_round = z->nrounds;
    }
    if (how == FZ_ANS_DRIVER_CANCEL) {
        rp_op_cancel(op);
        return;
    }
    if ((rc = rp_op_resume(op, how == FZ_ANS_NOTHING ? NULL : &r)) != RP_OK)
        fz_violation(z->opname, "rp_op_resume refused the callback's end: %s",
                     rp_status_name(rc));
}
#endif

#if FUZZ_FAMILY == FAMILY_CACHE
/* --- cache: the replies of its scripts, the record of a DONE op ------------------------- */

/* The last reply (NULL: none whole) to script name in the logical rounds from round `from`
 * on; *sent: how many were sent. */
static const fzr *script_reply(const fz *z, const char *name, size_t from, size_t *sent)
{
    size_t k = views(z, fz_views), v, n, i;
    const fzr *last = NULL;
    *sent = 0;
    for (v = 0; v < k; v++)
        for (n = 0; fz_views[v].first >= from && n < z->nodes; n++)
            for (i = 0; fz_views[v].in[n] && i < fz_views[v].n[n]; i++) {
                const char *s = script_of(z, fz_views[v].cmd[n][i]);
                if (s && strcmp(s, name) == 0) {
                    (*sent)++;
                    last = fz_views[v].rep[n][i];
                }
            }
    return last;
}

/* The read script's reply as cache_read.lua documents it: {found, value, negative, pttl,
 * delta, stale, locked, generation, now, tag, version, ...}. */
static int read_shape(const fzr *r)
{
    size_t i;
    if (!fzr_is(r, RP_REPLY_ARRAY) || r->n < 9 || (r->n - 9) % 2 != 0)
        return 0;
    for (i = 0; i < 9; i++)
        if (i == 1 || i == 7 ? !fzr_is(r->el[i], RP_REPLY_STRING) && !fzr_is(r->el[i], RP_REPLY_NIL)
                             : !fzr_is(r->el[i], RP_REPLY_INTEGER))
            return 0;
    for (i = 9; i < r->n; i++)
        if (!fzr_is(r->el[i], RP_REPLY_STRING))
            return 0;
    return 1;
}

static long long rel(const fzr *r, size_t i) { return r->el[i]->integer; }

/* The op sent a lock token with its reads (get_or_load in the stampede modes). */
static int asks_lock(const fz *z)
{
    return z->ck_kind == CK_LOAD && rp_cache_options_of(z->handle)->stampede != RP_CACHE_NONE;
}

/* ... and in the ranges it documents that decide something (flags 0 / 1, locked 0..2 and 0
 * without a token, delta >= 0; a found entry has a value or is negative). (pttl and now are
 * taken as they come: a TTL below 0 reads "none", and now only goes back to the store.) */
static int read_ranges(const fz *z, const fzr *r)
{
    long long found = rel(r, 0), neg = rel(r, 2);
    if ((found != 0 && found != 1) || (neg != 0 && neg != 1) || rel(r, 5) < 0 || rel(r, 5) > 1 ||
        rel(r, 6) < 0 || rel(r, 6) > (asks_lock(z) ? 2 : 0) || rel(r, 4) < 0)
        return 0;
    if (found == 1 && fzr_is(r->el[1], RP_REPLY_STRING) == (neg == 1))
        return 0; /* a value or none, never both or neither */
    return 1;
}

static int int_is(const fzr *r, long long v) { return fzr_is(r, RP_REPLY_INTEGER) && r->integer == v; }

static int value_is(const rp_value *v, const char *s, size_t len)
{
    return v->type == RP_TYPE_BYTES && v->len == len && (len == 0 || memcmp(v->bytes, s, len) == 0);
}

/* --- the peek: get / get_or_load first send HGETALL <entry>, PTTL <entry> (then the GETs of
 * the reader's tags) on node 0, plain commands; an entry with tags the reader did not name
 * costs one more round of GETs. The peek as cache_op.c's view_of_peek reads it: an even array
 * of strings (fields v value | n negative, d compute time, s swr's stale window, t:<tag> the
 * version its fill recorded; other fields ignored; a field given twice: the last counts),
 * found when not empty, then exactly one of v and n, d a decimal (1..18 digits), at most
 * RP_CACHE_TAGS_MAX tags; s a decimal or no window; stale once 0 <= PTTL <= s. */
typedef struct fz_peek {
    int sent;                 /* the first logical round is HGETALL, PTTL on node 0 */
    int ok;                   /* its replies are of that shape */
    int found, negative, stale;
    const fzr *value;         /* v's reply (found, not negative) */
    long long pttl, delta;
    int tags;                 /* 1: every tag it recorded is current; 0: one is not; -1: the
                                 versions were not all read (a cut round, a bad reply) */
} fz_peek;

/* A decimal of 1..18 digits; -1 otherwise. */
static long long fz_decimal(const fzr *r)
{
    long long x = 0;
    size_t i;
    if (!fzr_is(r, RP_REPLY_STRING) || r->len == 0 || r->len > 18)
        return -1;
    for (i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return -1;
        x = x * 10 + (r->str[i] - '0');
    }
    return x;
}

/* A tag's version as its GET answered it ("0" for nil); NULL for another reply. */
static int version_of(const fzr *r, const char **s, size_t *len)
{
    if (fzr_is(r, RP_REPLY_NIL)) {
        *s = "0";
        *len = 1;
        return 1;
    }
    if (!fzr_is(r, RP_REPLY_STRING))
        return 0;
    *s = r->str;
    *len = r->len;
    return 1;
}

static void peek_of(const fz *z, fz_peek *p)
{
    size_t k = views(z, fz_views), i, j, nt = 0, unknown = 0;
    int pass;
    const fz_view *v = k ? &fz_views[0] : NULL, *x = k > 1 ? &fz_views[1] : NULL;
    const fzr *h, *t, *utag[2 * RP_CACHE_TAGS_MAX];
    long long window = -1;
    int have_v = 0;
    memset(p, 0, sizeof *p);
    if (!v || !v->in[0] || v->n[0] < 2 || !arg_is(v->cmd[0][0], 0, "HGETALL") ||
        !arg_is(v->cmd[0][1], 0, "PTTL"))
        return;
    p->sent = 1;
    h = v->rep[0][0];
    t = v->rep[0][1];
    if (!fzr_is(h, RP_REPLY_ARRAY) || h->n % 2 != 0 || !fzr_is(t, RP_REPLY_INTEGER))
        return;
    for (i = 0; i < h->n; i++)
        if (!fzr_is(h->el[i], RP_REPLY_STRING))
            return;
    p->found = h->n > 0;
    p->pttl = t->integer;
    for (i = 0; i < h->n; i += 2) {
        const fzr *f = h->el[i], *val = h->el[i + 1];
        if (fzr_bulk_is(f, "v", 1)) {
            p->value = val;
            have_v = 1;
        } else if (fzr_bulk_is(f, "n", 1)) {
            p->negative = 1;
        } else if (fzr_bulk_is(f, "d", 1)) {
            p->delta = fz_decimal(val);
        } else if (fzr_bulk_is(f, "s", 1)) {
            window = fz_decimal(val);
        } else if (f->len >= 2 && memcmp(f->str, "t:", 2) == 0) {
            nt++;
        }
    }
    if (nt > RP_CACHE_TAGS_MAX || (p->found && (have_v == p->negative || p->delta < 0)))
        return;
    p->ok = 1;
    p->stale = window >= 0 && p->pttl >= 0 && p->pttl <= window;
    if (p->negative)
        p->value = NULL;
    /* the tags: each recorded version against the version read now (the reader's tags in
     * the peek's round after HGETALL and PTTL, the others in the next round in the order
     * the entry lists them, once each) */
    p->tags = 1;
    /* the reader's own tags' GETs: all answered a version */
    for (j = 0; p->found && j < z->ck_ntags; j++) {
        const char *s;
        size_t sl;
        if (2 + j >= v->n[0] || !version_of(v->rep[0][2 + j], &s, &sl))
            p->tags = -1;
    }
    if (p->tags < 0)
        return;
    /* pass 0: the tags the reader named (one stale: stale, whatever the others say); pass 1:
     * the others, read in the next round */
    for (pass = 0; pass < 2 && p->found && p->tags == 1; pass++)
        for (i = 0; i < h->n; i += 2) {
            const fzr *f = h->el[i], *rec_v = h->el[i + 1], *now_r = NULL;
            const char *name = f->str + 2, *s;
            size_t nl = f->len - 2, sl;
            if (f->len < 2 || memcmp(f->str, "t:", 2) != 0)
                continue;
            for (j = 0; j < z->ck_ntags; j++)
                if (strlen(fz_tag_names[j]) == nl && memcmp(fz_tag_names[j], name, nl) == 0)
                    break;
            if ((j < z->ck_ntags) != (pass == 0))
                continue;
            if (pass == 0) {
                now_r = v->rep[0][2 + j];
            } else {
                size_t u;
                for (u = 0; u < unknown; u++)
                    if (utag[u]->len == f->len && memcmp(utag[u]->str, f->str, f->len) == 0)
                        break;
                if (u == unknown)
                    utag[unknown++] = f;
                now_r = x && x->in[0] && u < x->n[0] && arg_is(x->cmd[0][u], 0, "GET")
                            ? x->rep[0][u] : NULL;
            }
            if (!version_of(now_r, &s, &sl)) {
                p->tags = -1;
                return;
            }
            if (sl != rec_v->len || memcmp(s, rec_v->str, sl) != 0)
                p->tags = 0;
        }
}

/* get_or_load in xfetch with random 0.5: whether this entry is recomputed early
 * (delta * beta * -ln(random) >= its TTL left); -1 when the core draws. */
static int fz_early(const fz *z, const fz_peek *p)
{
    const rp_cache_options *o = rp_cache_options_of(z->handle);
    if (o->stampede != RP_CACHE_XFETCH)
        return 0;
    if (!(z->h[H_B] & 32))
        return -1;
    return (double)p->delta * o->beta * 0.6931471805599453 >= (double)p->pttl;
}

static void v_cache(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    int64_t hit = -1, negative = -1, stale = -1, loaded = -1, stored = -1, near = -1, ttl = -1,
            waits = -1;
    int vi = rp_desc_field_index(z->d, "value");
    const rp_value *value = &f[vi];
    int has = value->type == RP_TYPE_BYTES, k = z->ck_kind;
    size_t reads, stores;
    const fzr *rd = script_reply(z, "cache_read", 0, &reads);
    const fzr *st = script_reply(z, "cache_store", 0, &stores);
    char buf[256];
    fz_peek pk;
    (void)op;
    peek_of(z, &pk);
    (void)n;
    field_int(z->d, f, "hit", &hit);
    field_int(z->d, f, "negative", &negative);
    field_int(z->d, f, "stale", &stale);
    field_int(z->d, f, "loaded", &loaded);
    field_int(z->d, f, "stored", &stored);
    field_int(z->d, f, "near", &near);
    field_int(z->d, f, "ttl", &ttl);
    field_int(z->d, f, "waits", &waits);
#define CK_FAIL(...) do { \
        fzr_describe(rd, buf, sizeof buf); \
        fprintf(stderr, "  last read: %s (%zu sent)\n", buf, reads); \
        fprintf(stderr, "  peek: sent %d, ok %d, found %d, negative %d, stale %d, pttl %lld, " \
                "delta %lld, tags %d\n", pk.sent, pk.ok, pk.found, pk.negative, pk.stale, \
                pk.pttl, pk.delta, pk.tags); \
        fzr_describe(st, buf, sizeof buf); \
        fprintf(stderr, "  last store: %s (%zu sent); calls %zu, answer %d\n", buf, stores, \
                z->ck_calls, z->ck_answer); \
        fprintf(stderr, "  record: value %s, hit %" PRId64 ", negative %" PRId64 ", stale %" \
                PRId64 ", loaded %" PRId64 ", stored %" PRId64 ", near %" PRId64 ", ttl %" \
                PRId64 ", waits %" PRId64 "\n", has ? "present" : "absent", hit, negative, \
                stale, loaded, stored, near, ttl, waits); \
        fz_violation(z->opname, __VA_ARGS__); \
    } while (0)
    if ((hit | negative | stale | loaded | stored | near) & ~(int64_t)1)
        CK_FAIL("a flag of the record is not 0 / 1");
    if (ttl < 0 || waits < 0 || (size_t)waits > reads)
        CK_FAIL("ttl %" PRId64 " / waits %" PRId64 " out of range", ttl, waits);
    if (near && k != CK_GET && k != CK_LOAD)
        CK_FAIL("near for an op that reads nothing");
    if (stored && !(loaded || k == CK_SET || k == CK_WRITE))
        CK_FAIL("stored, but it neither loaded nor wrote");
    if (stored && !int_is(st, 1))
        CK_FAIL("stored, but the store did not answer 1");
    if (hit && loaded)
        CK_FAIL("both a hit and loaded");
    /* (stale in any mode: an entry swr wrote is stale within its stale window whatever
     * the mode of the cache reading it now) */
    if (stale && !hit)
        CK_FAIL("stale, but not a hit");
    if (k == CK_GET || k == CK_LOAD) {
        if (has != (!negative && (hit || loaded)))
            CK_FAIL("the value is present iff not negative and a hit or loaded");
        if (near) {
            if (z->nrounds != 0 || !z->ck_near_armed || !z->ck_near_put || !hit ||
                strcmp(z->ck_key, "k") != 0)
                CK_FAIL("near, but not from an armed near-cache's entry without I/O");
            else if (z->ck_near_put == 1 ? (negative || !value_is(value, FZ_NEAR_VALUE, 2))
                                         : !negative)
                CK_FAIL("near, with another value than the near entry's");
        } else if (z->nrounds == 0) {
            CK_FAIL("DONE without I/O, not from the near-cache");
        }
        if (z->ck_calls && !loaded)
            CK_FAIL("its loader ran, but it did not say loaded");
        if (loaded) {
            int a = z->ck_answer;
            if (k != CK_LOAD || z->ck_calls != 1 || ans_is_failure(a))
                CK_FAIL("loaded, without a loader that returned");
            else if (negative != (a == FZ_ANS_NOTHING) ||
                     (a == FZ_ANS_VALUE && !value_is(value, FZ_LOADED, 2)) ||
                     (a == FZ_ANS_EMPTY && !value_is(value, "", 0)) ||
                     (a == FZ_ANS_BIG && !value_is(value, fz_big, FZ_BIG)))
                CK_FAIL("loaded another value than the loader's");
            if (stored && negative && z->ck_negative_ttl0)
                CK_FAIL("stored a negative entry with negative_ttl 0");
        }
        /* the rounds: a read that is not from the near-cache begins with the peek; get
         * never sends the read script; get_or_load sends it only after a peek that is no
         * plain fresh hit (a miss, stale tags, swr-stale, xfetch early) */
        if (!near && !pk.sent)
            CK_FAIL("a read that did not begin with HGETALL and PTTL of the entry");
        if (k == CK_GET && reads)
            CK_FAIL("get sent the read script (%zu times)", reads);
        if (k == CK_LOAD && reads && pk.ok && pk.found && pk.tags == 1 && !pk.stale &&
            fz_early(z, &pk) == 0)
            CK_FAIL("went on to the read script after a peek that was a fresh hit");
        if (hit && !near && reads) { /* the script decided */
            if (!rd || !read_shape(rd) || rel(rd, 0) != 1)
                CK_FAIL("a hit from a read that is no found entry");
            else if (!read_ranges(z, rd))
                CK_FAIL("a hit from a read reply outside the script's ranges");
            else if (negative != (rel(rd, 2) == 1) || stale != (rel(rd, 5) == 1) ||
                     ttl != (rel(rd, 3) > 0 ? rel(rd, 3) : 0) ||
                     (!negative && (!fzr_is(rd->el[1], RP_REPLY_STRING) ||
                                    !value_is(value, rd->el[1]->str, rd->el[1]->len))))
                CK_FAIL("a hit that is not what the read said");
        } else if (hit && !near) { /* the peek decided */
            if (!pk.ok || !pk.found)
                CK_FAIL("a hit from a peek that is no found entry of the cache's fields");
            else if (pk.tags != 1)
                CK_FAIL("a hit from a peek whose tags are %s", pk.tags ? "not all read"
                                                                     : "not current");
            else if (negative != pk.negative || stale != pk.stale ||
                     ttl != (pk.pttl > 0 ? pk.pttl : 0) ||
                     (!negative && !value_is(value, pk.value->str, pk.value->len)))
                CK_FAIL("a hit that is not what HGETALL / PTTL said");
            else if (k == CK_LOAD && pk.stale)
                CK_FAIL("get_or_load answered an swr-stale entry from the peek (no refresh "
                        "lock asked)");
            else if (k == CK_LOAD && fz_early(z, &pk) == 1)
                CK_FAIL("get_or_load answered from the peek an entry xfetch recomputes early");
        }
        if (!hit && !loaded) {
            if (k != CK_GET || has || negative)
                CK_FAIL("a miss with a value or negative, or from get_or_load");
            else if (!pk.ok)
                CK_FAIL("a miss from a peek whose replies are not HGETALL's / PTTL's shape");
            else if (pk.found && pk.tags != 0)
                CK_FAIL("a miss from a peek that found the entry with %s tags",
                        pk.tags < 0 ? "unread" : "current");
        }
    } else if (k == CK_SET || k == CK_WRITE) {
        if (hit || loaded || near || stale)
            CK_FAIL("a write that says hit / loaded / near / stale");
        if (!int_is(st, 0) && !int_is(st, 1))
            CK_FAIL("DONE, but the store answered no 0 / 1");
        else if (stored != int_is(st, 1))
            CK_FAIL("stored is not what the store answered");
        if (k == CK_WRITE ? z->ck_calls != 1 || ans_is_failure(z->ck_answer) : z->ck_calls != 0)
            CK_FAIL("a write without a writer that returned, or a set that CALLed");
        /* (the record is the value written, or none) */
        if (negative != !z->ck_has_value ||
            (z->ck_has_value ? !value_is(value, FZ_SET_VALUE, 2) : has))
            CK_FAIL("the record is not the value written");
    } else { /* delete */
        if (!int_is(st, 0) && !int_is(st, 1))
            CK_FAIL("DONE, but the delete answered no 0 / 1");
        else if (hit != int_is(st, 1))
            CK_FAIL("hit is not what the delete answered");
        if (loaded || stored || near || negative || stale || has)
            CK_FAIL("a delete that says more than hit");
    }
#undef CK_FAIL
}

static void v_cache_tags(fz *z, rp_op *op, const rp_value *f, size_t n)
{
    size_t k = views(z, fz_views), v, nn, i, sent = 0, ok = 0;
    (void)op;
    (void)f;
    (void)n;
    for (v = 0; v < k; v++)
        for (nn = 0; nn < z->nodes; nn++)
            for (i = 0; fz_views[v].in[nn] && i < fz_views[v].n[nn]; i++) {
                const char *s = script_of(z, fz_views[v].cmd[nn][i]);
                if (s && strcmp(s, "cache_tag") == 0) {
                    sent++;
                    ok += fzr_is(fz_views[v].rep[nn][i], RP_REPLY_STRING) ? 1u : 0u;
                }
            }
    if (sent != z->ck_ntags || ok != sent)
        fz_violation(z->opname, "DONE with %zu of %zu tags bumped (%zu answered a version)",
                     sent, z->ck_ntags, ok);
}

/* A failed cache op: a clean status; a failed callback's failure kept (unless a later round
 * failed on its own); a load lock it took released after a failed or cancelled load. */
static void check_cache_error(fz *z, const rp_error *e)
{
    static const int clean[] = { RP_EPROTOCOL, RP_EREPLY, RP_ECALLBACK, RP_ECANCELED,
                                 RP_ETIMEOUT, RP_ETRANSPORT, RP_EAUTH };
    size_t i, sent;
    int ok = 0, failed_cb;
    const fzr *rd;
    for (i = 0; i < sizeof clean / sizeof clean[0]; i++)
        ok |= e->code == clean[i];
    if (!ok)
        fz_violation(z->opname, "failed with %s: \"%s\"", rp_status_name(e->code), e->message);
    failed_cb = z->ck_calls && (z->ck_answer == FZ_ANS_FAIL || z->ck_answer == FZ_ANS_FAIL_SILENT);
    /* what follows a failed callback is only the lock's release, whose own failure does not
     * matter to the caller (the lock expires): the callback's failure stands */
    if (failed_cb && e->code != RP_ECALLBACK)
        fz_violation(z->opname, "its callback failed, but it failed with %s: \"%s\"",
                     rp_status_name(e->code), e->message);
    if (z->ck_calls && z->ck_answer == FZ_ANS_USER_CANCEL && e->code != RP_ECANCELED)
        fz_violation(z->opname, "its callback was cancelled, but it failed with %s: \"%s\"",
                     rp_status_name(e->code), e->message);
    if (e->code == RP_ECALLBACK && !failed_cb)
        fz_violation(z->opname, "RP_ECALLBACK without a failed callback: \"%s\"", e->message);
    if (e->code == RP_ECALLBACK && z->ck_answer == FZ_ANS_FAIL && !strstr(e->message, "boom"))
        fz_violation(z->opname, "lost the callback's message: \"%s\"", e->message);
    /* the lock the read before the CALL took goes back after a failed / cancelled load */
    if (z->ck_calls && ans_is_failure(z->ck_answer)) {
        size_t k = views(z, fz_views), v, n, j, reads = 0;
        rd = NULL;
        for (v = 0; v < k && fz_views[v].last < z->ck_call_round; v++)
            for (n = 0; n < z->nodes; n++)
                for (j = 0; fz_views[v].in[n] && j < fz_views[v].n[n]; j++) {
                    const char *s = script_of(z, fz_views[v].cmd[n][j]);
                    if (s && strcmp(s, "cache_read") == 0) {
                        reads++;
                        rd = fz_views[v].rep[n][j];
                    }
                }
        script_reply(z, "lock_release", z->ck_call_round, &sent);
        if (asks_lock(z) && rd && read_shape(rd) && rel(rd, 6) == 1 && sent == 0)
            fz_violation(z->opname, "its load failed (%s) with the load lock taken, and it "
                         "sent no release: \"%s\"", rp_status_name(e->code), e->message);
    }
}

/* A cancelled cache op that had sent a write (a store, a tag bump) says it may have written. */
static void check_cache_cancelled(fz *z, const rp_error *e)
{
    size_t r, n, i, len = strlen(e->message);
    int wrote = 0;
    int bare = strcmp(e->message, "cancelled") == 0 ||
               (len >= 11 && strcmp(e->message + len - 11, ": cancelled") == 0);
    for (r = 0; r < z->cancel_round && r < z->nrounds; r++)
        for (n = 0; n < z->nodes; n++)
            for (i = 0; i < z->rounds[r].t[n].ncmds; i++) {
                const char *s = script_of(z, z->rounds[r].t[n].cmds[i]);
                wrote |= s && (strcmp(s, "cache_store") == 0 || strcmp(s, "cache_tag") == 0);
            }
    if (wrote && bare)
        fz_violation(z->opname, "cancelled after its write was sent, and its message does not "
                     "say it may have written: \"%s\"", e->message);
}
#endif

/* Whether text is anywhere in r (a reply may say anything, and messages quote replies). */
static int fzr_contains(const fzr *r, const char *text)
{
    size_t i;
    if (!r)
        return 0;
    if (r->str && memmem(r->str, r->len, text, strlen(text)))
        return 1;
    for (i = 0; i < r->n; i++)
        if (fzr_contains(r->el[i], text))
            return 1;
    return 0;
}

static int stream_says(const fz *z, const char *text)
{
    size_t r, n, i;
    for (r = 0; r < z->nrounds; r++)
        for (n = 0; n < FZ_NODES; n++)
            for (i = 0; i < z->rounds[r].t[n].nreplies; i++)
                if (fzr_contains(z->rounds[r].t[n].replies[i], text))
                    return 1;
    return memmem(z->data, z->size, text, strlen(text)) != NULL;
}

static void check_cancelled(fz *z, const rp_error *e);

/* An op that failed says why, with the first failure's own status and words (decision 3):
 * never "missing reply" nor a bare "unexpected reply" (unless Redis said those words); one
 * target that timed out (the harness failed it) is a timeout. */
static void check_error(fz *z, rp_op *op, int cancelled)
{
    static const char *const lost[] = { "missing reply", "unexpected reply" };
    const rp_error *e = rp_op_error(op);
    const fz_target *t = z->nrounds ? &z->rounds[z->nrounds - 1].t[0] : NULL;
    size_t i;
    if (!e || e->code == RP_OK || e->message[0] == '\0') {
        fz_violation(z->opname, "ERROR without a status and a message");
        return;
    }
    if (cancelled)
        check_cancelled(z, e);
#if FUZZ_FAMILY == FAMILY_CACHE
    check_cache_error(z, e);
    if (cancelled && e->code == RP_ECANCELED)
        check_cache_cancelled(z, e);
#endif
    for (i = 0; i < sizeof lost / sizeof lost[0]; i++)
        if (strstr(e->message, lost[i]) && !stream_says(z, lost[i]))
            fz_violation(z->opname, "ERROR that lost its cause: \"%s\"", e->message);
#if FUZZ_FAMILY == FAMILY_CACHE
    /* (a load lock given back after a failed callback: the callback's failure stands) */
    if (z->ck_calls && ans_is_failure(z->ck_answer))
        t = NULL;
#endif
    if (!cancelled && z->nodes == 1 && t && t->failed && !t->listening && t->nreplies == 0 &&
        e->code != RP_ETIMEOUT && e->code != RP_ECANCELED)
        fz_violation(z->opname, "its only target timed out, but it failed with %s: \"%s\"",
                     rp_status_name(e->code), e->message);
}

/* --- cancellation (decision 7) ------------------------------------------------------------ */

static int is_attempt(const fz *z, const fzr *cmd)
{
    const char *script = script_of(z, cmd);
    return (!script && arg_is(cmd, 0, "SET")) ||
           (script && (strcmp(script, "lock_acquire") == 0 ||
                       strcmp(script, "lock_acquire_fenced") == 0));
}

static int is_release(const fz *z, const fzr *cmd)
{
    const char *script = script_of(z, cmd);
    return script && strcmp(script, "lock_release") == 0 && cmd->n >= 5 &&
           fzr_bulk_is(cmd->el[cmd->n - 1], FZ_TOKEN, FZ_TOKEN_LEN);
}

/* A cancelled op ends RP_ECANCELED. A cancelled acquire whose last attempt may have taken
 * the key (a node said "acquired", or failed with the request sent) releases it with its
 * token afterwards, and its message says how that went: "was released" (a release answered
 * 1), "had not taken the lock" (every release answered 0), or "may stay held". */
static void check_cancelled(fz *z, const rp_error *e)
{
    size_t k = views(z, fz_views), v, n, i, yes = 0, no = 0, asked = 0;
    const fz_view *last = NULL;
    int took = 0;
    if (e->code != RP_ECANCELED) {
        /* a failure that came first (the round before the cancel) may stand instead */
        int failed_first = 0;
        if (z->cancel_round > 0)
            for (n = 0; n < z->nodes; n++) {
                const fz_target *t = &z->rounds[z->cancel_round - 1].t[n];
                for (i = 0; i < t->nreplies; i++)
                    failed_first |= fzr_is(t->replies[i], RP_REPLY_ERROR);
                failed_first |= t->in_round && (t->failed || !t->complete);
            }
        if (!failed_first)
            fz_violation(z->opname, "cancelled, but it failed with %s: \"%s\"",
                         rp_status_name(e->code), e->message);
        return;
    }
    if (strcmp(z->opname, "lock.acquire") != 0) {
        /* "Other ops that may have written say so in their cancelled message" */
        static const char *const writers[] = { "lock.release", "lock.extend", "fence.check",
                                               "ratelimit.check", "ratelimit.multi",
                                               "ratelimit.batch", "ratelimit.reset",
                                               "pubsub.publish" };
        size_t len = strlen(e->message);
        int bare = strcmp(e->message, "cancelled") == 0 ||
                   (len >= 11 && strcmp(e->message + len - 11, ": cancelled") == 0);
        for (i = 0; i < sizeof writers / sizeof writers[0]; i++)
            if (strcmp(z->opname, writers[i]) == 0 && z->cancel_round > 0 && bare)
                fz_violation(z->opname, "cancelled after its write was sent, and its message "
                             "does not say it may have written: \"%s\"", e->message);
        return;
    }
    for (v = 0; v < k && fz_views[v].last < z->cancel_round; v++)
        last = &fz_views[v];
    if (!last)
        return;
    for (n = 0; n < z->nodes; n++)
        for (i = 0; last->in[n] && i < last->n[n]; i++)
            if (is_attempt(z, last->cmd[n][i]))
                took |= !last->rep[n][i] || class_in(z, last, n, i, NULL) == C_YES;
    for (; v < k; v++) /* what the op sent after the cancel */
        for (n = 0; n < z->nodes; n++)
            for (i = 0; fz_views[v].in[n] && i < fz_views[v].n[n]; i++)
                if (is_release(z, fz_views[v].cmd[n][i])) {
                    int c = class_in(z, &fz_views[v], n, i, NULL);
                    asked++;
                    yes += c == C_YES;
                    no += c == C_NO;
                }
    if (took && asked == 0 && !strstr(e->message, "may stay held")) {
        report_view(last, z->nodes, "the attempt before the cancel");
        fz_violation(z->opname, "cancelled after an attempt that may have taken the key, "
                     "without releasing it nor saying so: \"%s\"", e->message);
    }
    /* the op's own words open the message (what follows may quote Redis) */
#define FZ_RELEASED "lock.acquire: cancelled; the attempt in flight was released"
#define FZ_NOT_TAKEN "lock.acquire: cancelled; the attempt in flight had not taken the lock"
    if (strncmp(e->message, FZ_RELEASED, strlen(FZ_RELEASED)) == 0 && yes == 0)
        fz_violation(z->opname, "says \"was released\" but no release answered 1: \"%s\"",
                     e->message);
    if (strncmp(e->message, FZ_NOT_TAKEN, strlen(FZ_NOT_TAKEN)) == 0 &&
        (yes > 0 || no != asked || asked == 0))
        fz_violation(z->opname, "says \"had not taken the lock\" but not every release answered "
                     "0 (%zu asked, %zu said 0, %zu said 1): \"%s\"", asked, no, yes, e->message);
}

/* --- one input ------------------------------------------------------------------------- */

static void fz_cleanup(fz *z, rp_op *op)
{
    size_t i;
    rp_op_free(op);
    for (i = 0; i < z->nmore; i++)
        rp_handle_free(z->kind, z->more[i]);
    rp_handle_free(z->kind, z->handle);
    rp_client_free(z->client);
    fz_log_free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fz z; /* big (the log): static, zeroed per input below */
    rp_op *op = NULL;
    uint64_t now = 1000000;
    size_t steps = 0;
    int cancelled = 0, ended = 0;
    if (fz_strict < 0) {
        const char *s = getenv("FUZZ_STRICT");
        fz_strict = !(s && strcmp(s, "0") == 0);
        fz_verbose = getenv("FUZZ_VERBOSE") != NULL;
    }
    if (size < FZ_HDR)
        return 0;
    memset(&z, 0, sizeof z);
    z.h = data;
    z.data = (const char *)data + FZ_HDR;
    z.size = size - FZ_HDR;
    z.rng = (uint32_t)data[H_SEED] * 2654435761u + 1;
    z.mem.bound = FZ_MEM_CONST + FZ_MEM_PER_CAP * FZ_MAX_REPLY;
    z.alloc.malloc_fn = fz_malloc;
    z.alloc.realloc_fn = fz_realloc;
    z.alloc.free_fn = fz_free;
    z.alloc.ud = &z.mem;
    begin_op(&z, &op);
    while (op && !ended) {
        rp_step st;
        if (++steps > FZ_STEPS_HARD) {
            fz_violation(z.opname, "still running %d steps after it was cancelled",
                         FZ_STEPS_HARD - FZ_STEPS_MAX);
            break;
        }
        /* a long-lived op past the end of the stream, or any op too long: cancel it
         * (between steps, after its round) */
        if (!cancelled && (steps > FZ_STEPS_MAX || z.drained ||
                           ((z.h[H_MODE] & 32) && z.nrounds >= (size_t)(z.h[H_D] >> 6)))) {
            rp_op_cancel(op);
            cancelled = 1;
            z.cancel_round = z.nrounds;
        }
        st = rp_op_step(op, now);
        switch (st) {
        case RP_STEP_IO:
            io_round(&z, op);
            break;
        case RP_STEP_SLEEP: {
            uint64_t ms = rp_op_sleep_ms(op);
            now += ms > 3600000 ? 3600000 : ms;
            break;
        }
        case RP_STEP_EMIT:
            check_emit(&z, op);
            break;
        case RP_STEP_CALL:
#if FUZZ_FAMILY == FAMILY_CACHE
            answer_call(&z, op, now, &cancelled);
#else
            fz_violation(z.opname, "asked for a callback it was not given");
            ended = 1;
#endif
            break;
        case RP_STEP_DONE:
            if (fz_verbose)
                fprintf(stderr, "fuzz: %s ended DONE after %zu rounds\n", z.opname, z.nrounds);
            if (cancelled)
                fz_violation(z.opname, "DONE after it was cancelled");
            check_done(&z, op);
            ended = 1;
            break;
        case RP_STEP_ERROR:
            if (fz_verbose)
                fprintf(stderr, "fuzz: %s ended ERROR %s after %zu rounds: %s\n", z.opname,
                        rp_status_name(rp_op_error(op)->code), z.nrounds,
                        rp_op_error(op)->message);
            check_error(&z, op, cancelled);
            ended = 1;
            break;
        default:
            fz_violation(z.opname, "step returned %d", (int)st);
            ended = 1;
        }
        now += 1;
    }
    fz_cleanup(&z, op);
    if (z.mem.live != 0)
        fz_violation(z.opname, "%zu bytes still allocated after every handle was freed",
                     z.mem.live);
    return 0;
}
