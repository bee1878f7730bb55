/* Unit tests of the cache ops (cache_op.c, cache_near.c, cache.c): every op driven by hand
 * with canned RESP replies and a fake clock, no server. The requests are parsed back into
 * their commands and arguments (the scripts' ARGV as cache_read.lua / cache_store.lua /
 * cache_tag.lua / lock_release.lua read them) and checked field by field. A get and a
 * get_or_load begin with the peek (HGETALL and PTTL of the entry, its tags' GETs: r_peek,
 * PEEK_MISS, peek_miss); a fresh hit ends there, a miss / stale / early entry of a
 * get_or_load goes on to the read script's round (r_read, MISS). Also: XFetch's
 * decision against its formula over a simulated clock, and every bound of the options and
 * arguments (the messages name them). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#include "cluster_map.h"
#include "internal.h"
#include "script.h"

#define CHECK_MSG(e, text)                                                                  \
    do {                                                                                    \
        CHECK(strcmp((e).message, (text)) == 0);                                            \
        if (strcmp((e).message, (text)) != 0)                                               \
            fprintf(stderr, "%s:%d: message \"%s\", wanted \"%s\"\n", __FILE__, __LINE__,   \
                    (e).message, (text));                                                   \
    } while (0)

/* CHECK that also prints the two numbers. */
#define CHECK_EQ(a, b)                                                                      \
    do {                                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                                 \
        CHECK(a_ == b_);                                                                    \
        if (a_ != b_)                                                                       \
            fprintf(stderr, "%s:%d:   %s = %lld, wanted %lld\n", __FILE__, __LINE__, #a,    \
                    a_, b_);                                                                \
    } while (0)

#define CHECK_STEP(op, now, want)                                                           \
    do {                                                                                    \
        rp_step got_ = rp_op_step((op), (now));                                             \
        CHECK(got_ == (want));                                                              \
        if (got_ != (want)) {                                                               \
            fprintf(stderr, "%s:%d:   step %d, wanted %d", __FILE__, __LINE__, (int)got_,   \
                    (int)(want));                                                           \
            if (got_ == RP_STEP_ERROR)                                                      \
                fprintf(stderr, " (%s: %s)", rp_status_name(rp_op_error(op)->code),         \
                        rp_op_error(op)->message);                                          \
            fprintf(stderr, "\n");                                                          \
        }                                                                                   \
    } while (0)

/* --- RESP replies ------------------------------------------------------------------- */

typedef struct resp {
    char b[16384];
    size_t n;
} resp;

static void r_raw(resp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void r_raw(resp *r, const char *fmt, ...)
{
    va_list ap;
    int k;
    va_start(ap, fmt);
    k = vsnprintf(r->b + r->n, sizeof r->b - r->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof r->b - r->n)
        abort();
    r->n += (size_t)k;
}

static void r_int(resp *r, long long v) { r_raw(r, ":%lld\r\n", v); }
static void r_nil(resp *r) { r_raw(r, "$-1\r\n"); }
static void r_str(resp *r, const char *s)
{
    if (!s)
        r_nil(r);
    else
        r_raw(r, "$%zu\r\n%s\r\n", strlen(s), s);
}

/* The read script's reply (cache_read.lua): {found, value, negative, pttl, delta, stale,
 * locked, generation, now, tag, version, ...}; value / gen NULL: false (nil); the tag pairs
 * follow as strings, NULL-terminated. */
static void r_read(resp *r, int found, const char *value, int negative, long long pttl,
                   long long delta, int stale, int locked, const char *gen, long long now, ...)
{
    const char *pairs[64];
    size_t n = 0, i;
    va_list ap;
    va_start(ap, now);
    while (n < 64 && (pairs[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    r_raw(r, "*%zu\r\n", 9 + n);
    r_int(r, found);
    r_str(r, value);
    r_int(r, negative);
    r_int(r, pttl);
    r_int(r, delta);
    r_int(r, stale);
    r_int(r, locked);
    r_str(r, gen);
    r_int(r, now);
    for (i = 0; i < n; i++)
        r_str(r, pairs[i]);
}

static const char *MISS = "*9\r\n:0\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5000\r\n";

/* The peek's replies (HGETALL, PTTL): the entry's hash, fields in this order: v (value not
 * NULL) or n (negative), d (delta), s (window >= 0: swr's stale window), then t:<tag>,
 * version pairs (NULL-terminated); then the PTTL. The tags' GETs follow (the test's). */
static void r_peek(resp *r, const char *value, int negative, long long delta, long long window,
                   long long pttl, ...)
{
    const char *pairs[64];
    char num[32];
    size_t n = 0, i;
    va_list ap;
    va_start(ap, pttl);
    while (n < 64 && (pairs[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    r_raw(r, "*%zu\r\n", (size_t)(window >= 0 ? 6 : 4) + n);
    if (negative) {
        r_str(r, "n");
        r_str(r, "1");
    } else {
        r_str(r, "v");
        r_str(r, value);
    }
    r_str(r, "d");
    snprintf(num, sizeof num, "%lld", delta);
    r_str(r, num);
    if (window >= 0) {
        r_str(r, "s");
        snprintf(num, sizeof num, "%lld", window);
        r_str(r, num);
    }
    for (i = 0; i + 1 < n; i += 2) {
        r_raw(r, "$%zu\r\nt:%s\r\n", strlen(pairs[i]) + 2, pairs[i]);
        r_str(r, pairs[i + 1]);
    }
    r_int(r, pttl);
}

/* The peek of an entry that is not there: an empty hash, PTTL -2. */
static const char *PEEK_MISS = "*0\r\n:-2\r\n";

static int feed(rp_op *op, const char *s) { return rp_op_feed(op, 0, s, strlen(s)); }
static int feed_r(rp_op *op, const resp *r) { return rp_op_feed(op, 0, r->b, r->n); }

/* --- the requests, parsed back --------------------------------------------------------- */

#define ARGS_MAX 64
#define CMDS_MAX 24

typedef struct cmd {
    size_t argc;
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
} cmd;

typedef struct request {
    size_t ncmds;
    cmd cmds[CMDS_MAX];
} request;

/* Parses the op's request bytes for node (arrays of bulk strings) into q; 0 when it
 * cannot. */
static int parse_request_on(const rp_op *op, size_t node, request *q)
{
    const char *p, *end;
    size_t len;
    memset(q, 0, sizeof *q);
    if (rp_op_request(op, node, &p, &len) != RP_OK || len == 0)
        return 0;
    end = p + len;
    while (p < end) {
        cmd *c;
        long n, i;
        char *e;
        if (q->ncmds == CMDS_MAX || *p != '*')
            return 0;
        c = &q->cmds[q->ncmds++];
        n = strtol(p + 1, &e, 10);
        if (n <= 0 || n > ARGS_MAX || e + 2 > end || e[0] != '\r')
            return 0;
        p = e + 2;
        for (i = 0; i < n; i++) {
            long l;
            if (p >= end || *p != '$')
                return 0;
            l = strtol(p + 1, &e, 10);
            if (l < 0 || e + 2 + l + 2 > end)
                return 0;
            c->argv[i] = e + 2;
            c->len[i] = (size_t)l;
            p = e + 2 + l + 2;
        }
        c->argc = (size_t)n;
    }
    return 1;
}

static int parse_request(const rp_op *op, request *q) { return parse_request_on(op, 0, q); }

static int arg_is(const cmd *c, size_t i, const char *want)
{
    int ok = i < c->argc && c->len[i] == strlen(want) && memcmp(c->argv[i], want, c->len[i]) == 0;
    if (!ok)
        fprintf(stderr, "    arg %zu is \"%.*s\", wanted \"%s\"\n", i,
                i < c->argc ? (int)c->len[i] : 0, i < c->argc ? c->argv[i] : "", want);
    return ok;
}

static const char *sha_of(rp_client *c, const char *script)
{
    const rp_script *s = rp_script__find(rp_client__scripts(c), script);
    return s ? s->sha1 : "?";
}

/* Whether c is EVALSHA of script with nkeys keys. */
static int is_script(rp_client *cl, const cmd *c, const char *script, const char *nkeys)
{
    return arg_is(c, 0, "EVALSHA") && arg_is(c, 1, sha_of(cl, script)) && arg_is(c, 2, nkeys);
}

/* The read request's lock token (ARGV[1]), copied into tok (33 bytes). */
static void token_of(const cmd *c, char *tok)
{
    size_t n = c->argc > 6 ? c->len[6] : 0;
    if (n > 32)
        n = 32;
    memcpy(tok, c->argc > 6 ? c->argv[6] : "", n);
    tok[n] = '\0';
}

/* The read request (cmds[0]) for key k of cache "c", with its ARGV 2..4. */
static int read_request_ok(rp_client *cl, const request *q, const char *k, int locking,
                           const char *as_miss, const char *genmode)
{
    char e[128], g[128], l[128];
    const cmd *c = &q->cmds[0];
    int ok;
    snprintf(e, sizeof e, "t:cache:{c:%s}", k);
    snprintf(g, sizeof g, "t:cache:{c:%s}:gen", k);
    snprintf(l, sizeof l, "t:cache:{c:%s}:lock", k);
    /* (10 arguments; a re-read as a miss may add the stale entry's tag, version pairs) */
    ok = is_script(cl, c, "cache_read", "3") &&
         (c->argc == 10 || (strcmp(as_miss, "1") == 0 && c->argc % 2 == 0)) && arg_is(c, 3, e) &&
         arg_is(c, 4, g) && arg_is(c, 5, l) && arg_is(c, 8, as_miss) && arg_is(c, 9, genmode);
    ok = ok && (locking ? c->len[6] == 32 : c->len[6] == 0);
    return ok;
}

/* The peek request for key k of cache "c": HGETALL and PTTL of the entry, then a GET of
 * each tag's version (tags[0..ntags), one server: all on node 0); no script. */
static int peek_request_ok(const request *q, const char *k, size_t ntags, const char *const *tags)
{
    char e[128], t[128];
    size_t i;
    int ok;
    snprintf(e, sizeof e, "t:cache:{c:%s}", k);
    ok = q->ncmds == 2 + ntags && q->cmds[0].argc == 2 && arg_is(&q->cmds[0], 0, "HGETALL") &&
         arg_is(&q->cmds[0], 1, e) && q->cmds[1].argc == 2 && arg_is(&q->cmds[1], 0, "PTTL") &&
         arg_is(&q->cmds[1], 1, e);
    for (i = 0; ok && i < ntags; i++) {
        snprintf(t, sizeof t, "t:cache:{c:%s}:tag", tags[i]);
        ok = q->cmds[2 + i].argc == 2 && arg_is(&q->cmds[2 + i], 0, "GET") &&
             arg_is(&q->cmds[2 + i], 1, t);
    }
    if (!ok)
        fprintf(stderr, "    not the peek of %s (%zu commands)\n", k, q->ncmds);
    return ok;
}

/* Steps op at now to its peek (checked: key k, ntags tags), and answers it: the entry is
 * not there, the tags' versions nil. The op's next step is the read script's round. */
#define peek_miss(op, now, k, ntags, tags) peek_miss_((op), (now), (k), (ntags), (tags), __LINE__)
static void peek_miss_(rp_op *op, uint64_t now, const char *k, size_t ntags,
                       const char *const *tags, int line)
{
    request q;
    size_t i;
    int ok;
    CHECK_STEP(op, now, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(peek_request_ok(&q, k, ntags, tags));
    ok = feed(op, PEEK_MISS) == (ntags ? RP_MORE : RP_OK);
    for (i = 0; i < ntags; i++)
        ok = ok && feed(op, "$-1\r\n") == (i + 1 < ntags ? RP_MORE : RP_OK);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "    (peek_miss at line %d)\n", line);
}

/* --- handles ------------------------------------------------------------------------- */

static rp_cache *mk(rp_client *cl, rp_cache_stampede mode, void (*tweak)(rp_cache_options *))
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    rp_error e;
    o.ttl_ms = 10000;
    o.stampede = mode;
    if (tweak)
        tweak(&o);
    if (rp_cache_new(&c, cl, "c", 1, &o, &e) != RP_OK) {
        fprintf(stderr, "rp_cache_new: %s\n", e.message);
        abort();
    }
    return c;
}

static rp_op *get_op(rp_cache *c, const char *k, const rp_cache_tags *tags)
{
    rp_op *op = NULL;
    rp_error e;
    CHECK(rp_cache_get_op(&op, c, k, strlen(k), tags, &e) == RP_OK);
    return op;
}

static rp_op *load_op(rp_cache *c, const char *k, const rp_cache_tags *tags, double random)
{
    rp_op *op = NULL;
    rp_error e;
    CHECK(rp_cache_load_op(&op, c, k, strlen(k), tags, random, &e) == RP_OK);
    return op;
}

static int value_is(const rp_cache_result *r, const char *want)
{
    if (!want)
        return r->value == NULL;
    return r->value && r->value_len == strlen(want) && memcmp(r->value, want, r->value_len) == 0;
}

static rp_cache_result result(const rp_op *op)
{
    rp_cache_result r;
    memset(&r, 0, sizeof r);
    CHECK(rp_cache_result_of(op, &r) == RP_OK);
    return r;
}

static rp_value status_value(int code, const char *msg)
{
    rp_value v;
    memset(&v, 0, sizeof v);
    v.type = RP_TYPE_STATUS;
    v.i = code;
    v.bytes = msg;
    v.len = strlen(msg);
    return v;
}

/* Steps a load op at now through its read script's round (the reply given) to its CALL;
 * checks the CALL hands the key as the one value. Returns the lock token the read sent. */
static void to_call_read(rp_client *cl, rp_op *op, const char *k, const resp *reply,
                         uint64_t now, char *tok)
{
    request q;
    size_t arg = 99, count = 99;
    rp_value vals[4];
    CHECK_STEP(op, now, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "cache_read", "3"));
    token_of(&q.cmds[0], tok);
    CHECK(feed_r(op, reply) == RP_OK);
    CHECK_STEP(op, now + 1, RP_STEP_CALL);
    memset(vals, 0, sizeof vals);
    CHECK(rp_op_call(op, &arg, vals, 4, &count) == RP_OK);
    CHECK_EQ(arg, RP_CACHE_LOADER_ARG);
    CHECK_EQ(count, 1);
    CHECK(vals[0].type == RP_TYPE_BYTES && vals[0].len == strlen(k) &&
          memcmp(vals[0].bytes, k, vals[0].len) == 0);
}

/* The same from the op's start: its peek finds no entry (peek_miss), then the read. */
static void to_call(rp_client *cl, rp_op *op, const char *k, const resp *reply, uint64_t now,
                    char *tok)
{
    peek_miss(op, now, k, 0, NULL);
    to_call_read(cl, op, k, reply, now, tok);
}

static void swr_opts(rp_cache_options *o) { o->ttl_ms = 1000; }

/* --- get --------------------------------------------------------------------------- */

static void test_get_hit_miss_negative(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_op *op;

    /* hit */
    op = get_op(c, "k", NULL);
    CHECK(rp_cache_result_of(op, &r) == RP_ESTATE);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 2);
    /* a get is plain commands: no script, so no lock, no generation, no lock_ttl */
    CHECK(peek_request_ok(&q, "k", 0, NULL));
    CHECK(q.cmds[0].len[0] == 7 && q.cmds[1].len[0] == 4); /* (HGETALL, PTTL: not EVALSHA) */
    r_peek(&rr, "val", 0, 12, -1, 7000, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 0 && r.stale == 0 && r.loaded == 0 && r.stored == 0 &&
          r.near == 0 && r.waits == 0);
    CHECK(value_is(&r, "val"));
    CHECK_EQ(r.ttl_ms, 7000);
    rp_op_free(op);

    /* miss: the peek's answer, no script */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, PEEK_MISS) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 0 && r.negative == 0 && r.loaded == 0 && r.value == NULL && r.ttl_ms == 0);
    rp_op_free(op);

    /* negative */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, NULL, 1, 0, -1, 300, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 1 && r.value == NULL && r.ttl_ms == 300);
    rp_op_free(op);

    /* found, but expired between HGETALL and PTTL (-2), or without a TTL (-1): a hit, ttl 0 */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "val", 0, 0, -1, -2, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 0 && r.stale == 0 && value_is(&r, "val"));
    CHECK_EQ(r.ttl_ms, 0);
    rp_op_free(op);
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, NULL, 1, 0, -1, -1, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 1 && r.value == NULL);
    CHECK_EQ(r.ttl_ms, 0);
    rp_op_free(op);
    /* a get_or_load of a negative entry: a negative hit from the peek, nothing loaded */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, NULL, 1, 0, -1, 250, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 1 && r.loaded == 0 && r.value == NULL);
    CHECK_EQ(r.ttl_ms, 250);
    rp_op_free(op);
    /* the same for a get_or_load (lock mode): a hit from the peek, no script */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "val", 0, 3, -1, -2, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.loaded == 0 && value_is(&r, "val"));
    CHECK_EQ(r.ttl_ms, 0);
    rp_op_free(op);

    /* an empty value is a value, not none */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "", 0, 0, -1, 300, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.negative == 0 && r.value != NULL && r.value_len == 0);
    rp_op_free(op);

    /* a binary key goes into the key names as it is */
    op = NULL;
    CHECK(rp_cache_get_op(&op, c, "a\0b", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(q.cmds[0].len[1] == 15 && memcmp(q.cmds[0].argv[1], "t:cache:{c:a\0b}", 15) == 0);
    CHECK(q.cmds[1].len[1] == 15 && memcmp(q.cmds[1].argv[1], "t:cache:{c:a\0b}", 15) == 0);
    rp_op_free(op);

    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- get_or_load: the lock mode ----------------------------------------------------------- */

static void test_lock_busy_polls_then_hit(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    uint64_t now = 1000, want_max = 2;
    char tok[33], tok2[33];
    int i;
    rp_op *op = load_op(c, "k", NULL, 0);
    peek_miss(op, now, "k", 0, NULL); /* no entry: on to the read script */
    CHECK_STEP(op, now, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "1"));
    token_of(&q.cmds[0], tok);
    for (i = 0; i < 32; i++)
        CHECK((tok[i] >= '0' && tok[i] <= '9') || (tok[i] >= 'a' && tok[i] <= 'f'));
    /* a miss, the lock taken by another: poll, 2 ms doubling to 10 ms, each in [d/2, d] */
    for (i = 0; i < 6; i++) {
        uint64_t ms;
        CHECK(feed(op, MISS) == RP_OK);
        CHECK_STEP(op, ++now, RP_STEP_SLEEP);
        ms = rp_op_sleep_ms(op);
        CHECK(ms >= (want_max + 1) / 2 && ms <= want_max);
        if (!(ms >= (want_max + 1) / 2 && ms <= want_max))
            fprintf(stderr, "    poll %d slept %" PRIu64 " ms, wanted %" PRIu64 "/2..%" PRIu64 "\n",
                    i, ms, want_max, want_max);
        want_max = want_max * 2 > 10 ? 10 : want_max * 2;
        now += ms;
        CHECK_STEP(op, now, RP_STEP_IO);
        CHECK(parse_request(op, &q));
        CHECK(read_request_ok(cl, &q, "k", 1, "0", "1"));
        token_of(&q.cmds[0], tok2);
        CHECK(strcmp(tok, tok2) == 0); /* one token for the op's whole life */
    }
    /* the holder's value arrives */
    r_read(&rr, 1, "theirs", 0, 9990, 50, 0, 0, NULL, 5100, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, ++now, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 1 && r.loaded == 0 && r.stored == 0 && r.waits == 6);
    CHECK(value_is(&r, "theirs"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* The lock taken: CALL the loader, then the fill with the generation and the token. */
static void lock_taken_fill(int stored)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_value v;
    char tok[33];
    const cmd *f;
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "1700000000000123", 123456, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_cache_result_of(op, &r) == RP_ESTATE);
    /* the callback runs: nothing to do meanwhile */
    CHECK_STEP(op, 1002, RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) == RP_SLEEP_UNTIL_RESUMED);
    v = rp_value_bytes("loaded!", 7);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1051, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 1);
    f = &q.cmds[0];
    CHECK(is_script(cl, f, "cache_store", "3"));
    CHECK_EQ(f->argc, 18);
    CHECK(arg_is(f, 3, "t:cache:{c:k}") && arg_is(f, 4, "t:cache:{c:k}:gen") &&
          arg_is(f, 5, "t:cache:{c:k}:lock"));
    CHECK(arg_is(f, 6, "f"));                /* a fill */
    CHECK(arg_is(f, 7, "1700000000000123")); /* the generation the miss read */
    CHECK(arg_is(f, 8, "123456"));           /* the server's clock at the miss */
    CHECK(arg_is(f, 9, "60000"));            /* load_timeout */
    CHECK(arg_is(f, 10, tok));               /* the lock's token: released by the fill */
    CHECK(arg_is(f, 11, "10000"));           /* ttl */
    CHECK(arg_is(f, 12, "0"));               /* no stale window outside swr */
    CHECK(arg_is(f, 13, "50"));              /* the compute time: CALL at 1001, back at 1051 */
    CHECK(arg_is(f, 14, "v") && arg_is(f, 15, "loaded!"));
    CHECK(arg_is(f, 16, "") && arg_is(f, 17, "")); /* a fill publishes nothing */
    CHECK(feed(op, stored ? ":1\r\n" : ":0\r\n") == RP_OK);
    CHECK_STEP(op, 1052, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit == 0 && r.loaded == 1 && r.negative == 0 && r.stored == stored);
    CHECK(value_is(&r, "loaded!"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_lock_taken_fill(void)
{
    lock_taken_fill(1);
    lock_taken_fill(0); /* refused: a write since the miss, or load_timeout passed */
}

/* The loader says "none": a negative entry (or, with negative_ttl 0, only the unlock). */
static void neg0(rp_cache_options *o) { o->negative_ttl_ms = 0; }
static void neg100(rp_cache_options *o) { o->negative_ttl_ms = 100; }

static void test_loader_none(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, neg100);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "7", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK_STEP(op, 1005, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(arg_is(&q.cmds[0], 6, "f") && arg_is(&q.cmds[0], 11, "100") &&
          arg_is(&q.cmds[0], 14, "n") && arg_is(&q.cmds[0], 15, ""));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1006, RP_STEP_DONE);
    r = result(op);
    CHECK(r.loaded == 1 && r.negative == 1 && r.stored == 1 && r.value == NULL);
    rp_op_free(op);
    rp_cache_free(c);

    /* negative_ttl 0: none is not cached; the lock is given back */
    c = mk(cl, RP_CACHE_LOCK, neg0);
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK_STEP(op, 1005, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1"));
    CHECK(arg_is(&q.cmds[0], 3, "t:cache:{c:k}:lock") && arg_is(&q.cmds[0], 4, tok));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1006, RP_STEP_DONE);
    r = result(op);
    CHECK(r.loaded == 1 && r.negative == 1 && r.stored == 0 && r.value == NULL);
    rp_op_free(op);
    rp_cache_free(c);

    /* an empty value is a value */
    c = mk(cl, RP_CACHE_LOCK, NULL);
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    {
        rp_value v = rp_value_bytes("", 0);
        CHECK(rp_op_resume(op, &v) == RP_OK);
    }
    CHECK_STEP(op, 1005, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(arg_is(&q.cmds[0], 14, "v") && arg_is(&q.cmds[0], 15, ""));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1006, RP_STEP_DONE);
    r = result(op);
    CHECK(r.loaded == 1 && r.negative == 0 && r.value != NULL && r.value_len == 0);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_loader_fails_unlocks(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    request q;
    resp rr = { {0}, 0 };
    rp_value v = status_value(RP_ECALLBACK, "ValueError: db down");
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK(rp_op_resume(op, &v) == RP_ESTATE); /* only once */
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 1);
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && q.cmds[0].argc == 5);
    CHECK(arg_is(&q.cmds[0], 3, "t:cache:{c:k}:lock") && arg_is(&q.cmds[0], 4, tok));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK);
    CHECK(strcmp(rp_op_error(op)->message, "ValueError: db down") == 0);
    rp_op_free(op);

    /* the unlock answered "not ours any more" (it expired): still the loader's error */
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(feed(op, ":0\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK);
    rp_op_free(op);

    /* mode none: no lock, so no unlock: the error at once */
    rp_cache_free(c);
    c = mk(cl, RP_CACHE_NONE, NULL);
    op = load_op(c, "k", NULL, 0);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 0, "0", "1"));
    rr.n = 0;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 0, "9", 100, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK);
    CHECK(strcmp(rp_op_error(op)->message, "ValueError: db down") == 0);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_cancel(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    request q;
    resp rr = { {0}, 0 };
    char tok[33];
    rp_value v = rp_value_bytes("late", 4);
    rp_op *op = load_op(c, "k", NULL, 0);

    /* during the CALL: the lock is released, the op ends cancelled */
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK_STEP(op, 1002, RP_STEP_SLEEP);
    rp_op_cancel(op);
    CHECK_STEP(op, 1003, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1"));
    CHECK(arg_is(&q.cmds[0], 3, "t:cache:{c:k}:lock") && arg_is(&q.cmds[0], 4, tok));
    CHECK(rp_op_resume(op, &v) == RP_ESTATE); /* the callback was abandoned */
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1004, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    CHECK(strstr(rp_op_error(op)->message, "cancelled") != NULL);
    rp_op_free(op);

    /* the user's cancel, reported through the callback's result (Ctrl-C in the loader) */
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    v = status_value(RP_ECANCELED, "KeyboardInterrupt");
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1003, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && arg_is(&q.cmds[0], 4, tok));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1004, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);

    /* during a poll's sleep: a waiter holds no lock (it would be loading), so it may end
     * at once; if it sends a release, that one is token-checked (harmless) */
    op = load_op(c, "k", NULL, 0);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    token_of(&q.cmds[0], tok);
    CHECK(feed(op, MISS) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_SLEEP);
    rp_op_cancel(op);
    if (rp_op_step(op, 1002) == RP_STEP_IO) {
        CHECK(parse_request(op, &q));
        CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && arg_is(&q.cmds[0], 4, tok));
        CHECK(feed(op, ":0\r\n") == RP_OK);
    }
    CHECK_STEP(op, 1003, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);

    /* cancelled during the peek (the driver fails its request in flight first): no lock can
     * be held yet (plain commands), it ends at once */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    /* ... and cancelled during the read script's round after the peek: the lock may be
     * this op's: released (token-checked) */
    op = load_op(c, "k", NULL, 0);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    token_of(&q.cmds[0], tok);
    rp_op_fail_node(op, 0, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && arg_is(&q.cmds[0], 4, tok));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);

    /* a get has no lock: cancelled between its steps, it ends at once */
    op = get_op(c, "k", NULL);
    rp_op_cancel(op);
    CHECK_STEP(op, 1000, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* The holder's lock expired while this caller polled: its next read takes the lock, and it
 * loads itself. */
static void test_poll_takes_expired_lock(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("mine", 4);
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, MISS) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_SLEEP);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "5", 100, NULL);
    to_call_read(cl, op, "k", &rr, 1010, tok); /* the poll is the script (no peek) */
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1020, RP_STEP_IO);
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1021, RP_STEP_DONE);
    r = result(op);
    CHECK(r.loaded && r.stored && r.waits == 1 && value_is(&r, "mine"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* The loader failed and the unlock's connection broke: the loader's error is still the one
 * the caller hears (a frontend re-raises the user's own exception from it). */
static void test_loader_error_survives_unlock_failure(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    resp rr = { {0}, 0 };
    rp_value v = status_value(RP_ECALLBACK, "ValueError: db down");
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "5", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection reset by peer");
    CHECK_STEP(op, 1011, RP_STEP_ERROR);
    CHECK_EQ(rp_op_error(op)->code, RP_ECALLBACK);
    if (rp_op_error(op)->code != RP_ECALLBACK)
        fprintf(stderr, "    the error: %s\n", rp_op_error(op)->message);
    rp_op_free(op);
    /* the same for a cancel: the caller gave up, it hears "cancelled" (asyncio's
     * CancelledError), not the transport's trouble (lock.using does the same) */
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    rp_op_cancel(op);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection reset by peer");
    CHECK_STEP(op, 1011, RP_STEP_ERROR);
    CHECK_EQ(rp_op_error(op)->code, RP_ECANCELED);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* swr: the peek finds an entry stale by its TTL (not by its tags) and goes to the script;
 * meanwhile a tag was invalidated: the script's answer is stale by its tags, and this caller
 * took the lock in it: it loads at once (no third read). */
static void test_swr_tags_stale_locked(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_SWR, swr_opts);
    static const char *const items[] = { "a" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    request q;
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("x", 1);
    rp_op *op = load_op(c, "k", &tags, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(peek_request_ok(&q, "k", 1, items));
    r_peek(&rr, "old", 0, 3, 1000, 500, "a", "1", NULL);
    r_str(&rr, "1");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "1") && q.ncmds == 2);
    rr.n = 0;
    r_read(&rr, 1, "old", 0, 500, 3, 1, 1, "12", 100, "a", "1", NULL);
    r_str(&rr, "2");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(arg_is(&q.cmds[0], 6, "f") && arg_is(&q.cmds[0], 7, "12") && q.cmds[0].len[10] == 32);
    CHECK(arg_is(&q.cmds[0], 18, "a") && arg_is(&q.cmds[0], 19, "2"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* Redis full and older than 7 (the read's lock write refused: locked 2): the caller loads
 * without the lock, and its fill holds no token (nothing to release). */
static void test_lock_refused_loads_unlocked(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("L", 1);
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 2, "9", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "cache_store", "3") && arg_is(&q.cmds[0], 6, "f") &&
          arg_is(&q.cmds[0], 7, "9") && arg_is(&q.cmds[0], 10, ""));
    CHECK(feed(op, "-OOM command not allowed when used memory > 'maxmemory'.\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_DONE); /* no lock of its own to give back */
    r = result(op);
    CHECK(r.loaded && !r.stored && value_is(&r, "L"));
    rp_op_free(op);
    /* a loader failing then: no unlock either */
    op = load_op(c, "k", NULL, 0);
    to_call(cl, op, "k", &rr, 1000, tok);
    v = status_value(RP_ECALLBACK, "boom");
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- swr and xfetch ---------------------------------------------------------------- */

static void test_swr(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_SWR, swr_opts);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    char tok[33];
    rp_value v = rp_value_bytes("fresh", 5);
    rp_op *op;

    /* fresh (more than the stale window left): a hit from the peek, no script */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(peek_request_ok(&q, "k", 0, NULL));
    r_peek(&rr, "old", 0, 20, 1000, 1500, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && !r.stale && !r.loaded && value_is(&r, "old"));
    CHECK_EQ(r.ttl_ms, 1500);
    rp_op_free(op);
    /* the window's edge: 1001 left is fresh, 1000 stale; PTTL -1 / -2 (no TTL, expired
     * between the commands) is not stale */
    {
        static const long long pttls[] = { 1001, 1000, 0, -1, -2 };
        static const int stale[] = { 0, 1, 1, 0, 0 };
        size_t i;
        for (i = 0; i < 5; i++) {
            op = get_op(c, "k", NULL);
            CHECK_STEP(op, 1000, RP_STEP_IO);
            rr.n = 0;
            r_peek(&rr, "old", 0, 20, 1000, pttls[i], NULL);
            CHECK(feed_r(op, &rr) == RP_OK);
            CHECK_STEP(op, 1001, RP_STEP_DONE);
            r = result(op);
            CHECK(r.hit && value_is(&r, "old"));
            CHECK_EQ(r.stale, stale[i]);
            rp_op_free(op);
        }
    }

    /* stale on the peek: the script (which takes the refresh lock if still stale); the
     * lock is another's: the stale value at once */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "old", 0, 20, 1000, 500, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "1") && q.ncmds == 1);
    rr.n = 0;
    r_read(&rr, 1, "old", 0, 500, 20, 1, 0, NULL, 100, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && r.stale && !r.loaded && r.waits == 0 && value_is(&r, "old"));
    rp_op_free(op);

    /* stale on the peek, refreshed by another before the script: the fresh value */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "old", 0, 20, 1000, 500, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_read(&rr, 1, "new", 0, 1990, 20, 0, 0, NULL, 0, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && !r.stale && !r.loaded && value_is(&r, "new"));
    rp_op_free(op);

    /* stale and this caller took the lock: it refreshes */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "old", 0, 20, 1000, 500, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    rr.n = 0;
    r_read(&rr, 1, "old", 0, 500, 20, 1, 1, "33", 100, NULL);
    to_call_read(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1030, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "cache_store", "3"));
    CHECK(arg_is(&q.cmds[0], 6, "f") && arg_is(&q.cmds[0], 7, "33") &&
          arg_is(&q.cmds[0], 10, tok));
    CHECK(arg_is(&q.cmds[0], 11, "2000")); /* ttl + stale (0: ttl) */
    CHECK(arg_is(&q.cmds[0], 12, "1000")); /* the stale window (stored as is): stale (0: ttl) */
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1031, RP_STEP_DONE);
    r = result(op);
    CHECK(!r.hit && !r.stale && r.loaded && r.stored && value_is(&r, "fresh"));
    rp_op_free(op);

    /* a plain get of a stale entry: the stale value, marked so, from the peek (no script) */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "old", 0, 20, 1000, 500, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && r.stale && value_is(&r, "old"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void beta2(rp_cache_options *o) { o->beta = 2.0; }

static void test_xfetch_given_random(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_XFETCH, NULL), *c2 = mk(cl, RP_CACHE_XFETCH, beta2);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    resp pk = { {0}, 0 };
    rp_value v = rp_value_bytes("new", 3);
    rp_op *op;
    /* delta 100, 50 ms left: early when 100 * -ln(random) >= 50, random <= e^-0.5 = 0.6065;
     * decided on the peek (its d and PTTL) */
    r_peek(&pk, "old", 0, 100, -1, 50, NULL);
    r_read(&rr, 1, "old", 0, 50, 100, 0, 0, "44", 100, NULL);

    /* not early: a hit from the peek, no script */
    op = load_op(c, "k", NULL, 0.61);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(peek_request_ok(&q, "k", 0, NULL));
    CHECK(feed_r(op, &pk) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && !r.loaded && value_is(&r, "old"));
    CHECK_EQ(r.ttl_ms, 50);
    rp_op_free(op);

    /* early: the script round, which reads the generation (genmode 2: xfetch may recompute
     * any hit); its answer is a hit, yet the op loads (it decided on the peek) */
    op = load_op(c, "k", NULL, 0.60);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &pk) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "2"));
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1100, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    /* versioned by the generation read with the hit; no lock held, none released */
    CHECK(arg_is(&q.cmds[0], 6, "f") && arg_is(&q.cmds[0], 7, "44") &&
          arg_is(&q.cmds[0], 10, "") && arg_is(&q.cmds[0], 13, "99"));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1101, RP_STEP_DONE);
    r = result(op);
    CHECK(!r.hit && r.loaded && r.stored && value_is(&r, "new"));
    rp_op_free(op);

    /* early, and the entry gone by the script's round: the miss's lock and generation */
    op = load_op(c, "k", NULL, 0.60);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &pk) == RP_OK);
    {
        resp m = { {0}, 0 };
        char tok[33];
        r_read(&m, 0, NULL, 0, 0, 0, 0, 1, "45", 300, NULL);
        to_call_read(cl, op, "k", &m, 1000, tok);
        CHECK(rp_op_resume(op, &v) == RP_OK);
        CHECK_STEP(op, 1100, RP_STEP_IO);
        CHECK(parse_request(op, &q));
        CHECK(arg_is(&q.cmds[0], 7, "45") && arg_is(&q.cmds[0], 8, "300") &&
              arg_is(&q.cmds[0], 10, tok) && q.cmds[0].len[10] == 32);
    }
    rp_op_free(op);

    /* beta 2: early when random <= e^-0.25 = 0.7788 */
    op = load_op(c2, "k", NULL, 0.77);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &pk) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "2"));
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_CALL);
    rp_op_free(op);
    op = load_op(c2, "k", NULL, 0.78);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &pk) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);

    /* a value set (not loaded) has no compute time: never early */
    op = load_op(c, "k", NULL, 1e-300);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "set", 0, 0, -1, 1, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);

    /* a plain get never recomputes: the peek, a hit, even when a load would be early */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(peek_request_ok(&q, "k", 0, NULL));
    rr.n = 0;
    r_peek(&rr, "old", 0, 100000, -1, 1, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    CHECK(result(op).hit && !result(op).loaded);
    rp_op_free(op);

    /* a hard miss locks as the lock mode does */
    op = load_op(c, "k", NULL, 0.5);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "2"));
    CHECK(feed(op, MISS) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_SLEEP);
    rp_op_free(op);
    rp_cache_free(c);
    rp_cache_free(c2);
    rp_client_free(cl);
}

/* --- tags ------------------------------------------------------------------------- */

static void test_tags_mismatch(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a", "bb" };
    static const size_t lens[] = { 1, 2 };
    rp_cache_tags tags = { (const void *const *)items, lens, 2 };
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("re", 2);
    char tok[33];
    const cmd *f;
    rp_op *op;

    /* get: versions match: a hit from the peek (the tags' GETs after HGETALL and PTTL) */
    op = get_op(c, "k", &tags);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 4);
    CHECK(peek_request_ok(&q, "k", 2, items));
    CHECK(arg_is(&q.cmds[2], 0, "GET") && arg_is(&q.cmds[2], 1, "t:cache:{c:a}:tag"));
    CHECK(arg_is(&q.cmds[3], 0, "GET") && arg_is(&q.cmds[3], 1, "t:cache:{c:bb}:tag"));
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", "bb", "0", NULL);
    r_str(&rr, "5");
    r_nil(&rr); /* a tag never invalidated: version "0" */
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && value_is(&r, "v"));
    CHECK_EQ(r.ttl_ms, 900);
    rp_op_free(op);
    /* the same for a get_or_load: a hit from the peek, no script */
    op = load_op(c, "k", &tags, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && !r.loaded && value_is(&r, "v"));
    rp_op_free(op);

    /* get: a tag was invalidated since the fill: a miss (from the peek) */
    op = get_op(c, "k", &tags);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", "bb", "0", NULL);
    r_str(&rr, "6");
    r_nil(&rr);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(!r.hit && !r.negative && r.value == NULL);
    rp_op_free(op);

    /* get_or_load: read again as a miss (which takes the lock and reads the generation),
     * load, and fill with the versions read then */
    op = load_op(c, "k", &tags, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "1", "1")); /* ARGV[3] '1': known stale */
    /* the stale fill's recorded versions (as the peek found them), to tell it from a new one */
    CHECK(q.cmds[0].argc == 14 && arg_is(&q.cmds[0], 10, "a") && arg_is(&q.cmds[0], 11, "5") &&
          arg_is(&q.cmds[0], 12, "bb") && arg_is(&q.cmds[0], 13, "0"));
    CHECK_EQ(q.ncmds, 3);
    token_of(&q.cmds[0], tok);
    rr.n = 0;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "8", 200, NULL);
    r_str(&rr, "7"); /* bumped again meanwhile */
    r_nil(&rr);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 3); /* the fill, then each tag's version's PEXPIRE */
    f = &q.cmds[0];
    CHECK(is_script(cl, f, "cache_store", "3") && f->argc == 22);
    CHECK(arg_is(f, 7, "8") && arg_is(f, 10, tok));
    CHECK(arg_is(f, 18, "a") && arg_is(f, 19, "7") && arg_is(f, 20, "bb") && arg_is(f, 21, "0"));
    CHECK(arg_is(&q.cmds[1], 0, "PEXPIRE") && arg_is(&q.cmds[1], 1, "t:cache:{c:a}:tag"));
    CHECK(arg_is(&q.cmds[1], 2, "30000")); /* the longest an entry lives: max(ttl, negative) */
    CHECK(arg_is(&q.cmds[2], 0, "PEXPIRE") && arg_is(&q.cmds[2], 1, "t:cache:{c:bb}:tag"));
    CHECK(feed(op, ":1\r\n:1\r\n:0\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_DONE);
    r = result(op);
    CHECK(r.loaded && r.stored && value_is(&r, "re"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* A waiter behind another caller's load of a tag-invalidated entry must see that caller's
 * value once it is filled, not keep reading the key as a miss (then load again itself). */
static void test_tags_stale_waiter_sees_fill(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    request q;
    resp rr = { {0}, 0 };
    rp_op *op = load_op(c, "k", &tags, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", NULL);
    r_str(&rr, "6");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO); /* read as a miss: another took the lock */
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "1", "1"));
    rr.n = 0;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 0, NULL, 200, NULL);
    r_str(&rr, "6");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_SLEEP);
    CHECK_STEP(op, 1010, RP_STEP_IO); /* the poll */
    CHECK(parse_request(op, &q));
    /* the poll must read the entry (ARGV[3] '0'): the other caller's fill is there now */
    CHECK(read_request_ok(cl, &q, "k", 1, "0", "1"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_tags_unknown_to_reader(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 }, hit = { {0}, 0 };
    rp_value v = rp_value_bytes("re", 2);
    char tok[33];
    rp_op *op;
    r_peek(&hit, "v", 0, 1, -1, 900, "b", "3", NULL);

    /* current: one extra round of GET after the peek, then a hit */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &hit) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 1);
    CHECK(q.cmds[0].argc == 2 && arg_is(&q.cmds[0], 0, "GET") &&
          arg_is(&q.cmds[0], 1, "t:cache:{c:b}:tag"));
    CHECK(feed(op, "$1\r\n3\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && value_is(&r, "v"));
    rp_op_free(op);

    /* stale: a miss */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &hit) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(feed(op, "$1\r\n4\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(!r.hit && r.value == NULL);
    rp_op_free(op);

    /* the reader's own tag and another: the extra round reads only the other */
    op = get_op(c, "k", &tags);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "1", "b", "3", NULL);
    r_str(&rr, "1");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 1, "t:cache:{c:b}:tag"));
    CHECK(feed(op, "$1\r\n3\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    CHECK(result(op).hit);
    rp_op_free(op);

    /* get_or_load: current by the other tag: a hit after the peek and its extra round */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &hit) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 0, "GET") &&
          arg_is(&q.cmds[0], 1, "t:cache:{c:b}:tag"));
    CHECK(feed(op, "$1\r\n3\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && !r.loaded && value_is(&r, "v"));
    rp_op_free(op);

    /* cancelled in the extra round after the peek: no lock can be this op's: at once */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &hit) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
    CHECK_STEP(op, 1002, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    /* ... in the extra round after the read script (which may have taken the lock): the
     * lock is released */
    op = load_op(c, "k", NULL, 0);
    peek_miss(op, 1000, "k", 0, NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    token_of(&q.cmds[0], tok);
    rr.n = 0;
    r_read(&rr, 1, "v", 0, 900, 1, 0, 0, NULL, 100, "b", "3", NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    rp_op_fail_node(op, 0, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
    CHECK_STEP(op, 1002, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && arg_is(&q.cmds[0], 4, tok));
    CHECK(feed(op, ":0\r\n") == RP_OK);
    CHECK_STEP(op, 1003, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);

    /* get_or_load: stale by the other tag: the re-read and the fill carry it too */
    op = load_op(c, "k", NULL, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &hit) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(feed(op, "$1\r\n4\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(read_request_ok(cl, &q, "k", 1, "1", "1"));
    CHECK(q.cmds[0].argc == 12 && arg_is(&q.cmds[0], 10, "b") && arg_is(&q.cmds[0], 11, "3"));
    CHECK(q.ncmds == 2 && arg_is(&q.cmds[1], 1, "t:cache:{c:b}:tag"));
    token_of(&q.cmds[0], tok);
    rr.n = 0;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "8", 200, NULL);
    r_str(&rr, "4");
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1003, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(q.ncmds == 2 && q.cmds[0].argc == 20 && arg_is(&q.cmds[0], 18, "b") &&
          arg_is(&q.cmds[0], 19, "4"));
    CHECK(feed(op, ":1\r\n:1\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_DONE);
    rp_op_free(op);

    /* an entry with 17 tags (more than a caller may give) is refused, not overrun */
    {
        char names[RP_CACHE_TAGS_MAX + 1][8];
        const char *pairs[2 * (RP_CACHE_TAGS_MAX + 1)];
        size_t i;
        rr.n = 0;
        for (i = 0; i <= RP_CACHE_TAGS_MAX; i++) {
            snprintf(names[i], sizeof names[i], "t%zu", i);
            pairs[2 * i] = names[i];
            pairs[2 * i + 1] = "1";
        }
        /* the peek's hash */
        r_raw(&rr, "*%d\r\n$1\r\nv\r\n$1\r\nv\r\n$1\r\nd\r\n$1\r\n1\r\n",
              4 + 2 * (RP_CACHE_TAGS_MAX + 1));
        for (i = 0; i < RP_CACHE_TAGS_MAX + 1; i++) {
            r_raw(&rr, "$%zu\r\nt:%s\r\n", strlen(pairs[2 * i]) + 2, pairs[2 * i]);
            r_str(&rr, pairs[2 * i + 1]);
        }
        r_int(&rr, 900);
        op = get_op(c, "k", NULL);
        CHECK_STEP(op, 1000, RP_STEP_IO);
        CHECK(feed_r(op, &rr) == RP_OK);
        CHECK_STEP(op, 1001, RP_STEP_ERROR);
        CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
        rp_op_free(op);
        /* the read script's answer the same (a load after its peek missed) */
        rr.n = 0;
        r_raw(&rr, "*%d\r\n:1\r\n$1\r\nv\r\n:0\r\n:900\r\n:1\r\n:0\r\n:0\r\n$-1\r\n:100\r\n",
              9 + 2 * (RP_CACHE_TAGS_MAX + 1));
        for (i = 0; i < 2 * (RP_CACHE_TAGS_MAX + 1); i++)
            r_str(&rr, pairs[i]);
        op = load_op(c, "k", NULL, 0);
        peek_miss(op, 1000, "k", 0, NULL);
        CHECK_STEP(op, 1000, RP_STEP_IO);
        CHECK(feed_r(op, &rr) == RP_OK);
        CHECK_STEP(op, 1001, RP_STEP_ERROR);
        CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
        rp_op_free(op);
    }
    rp_cache_free(c);
    rp_client_free(cl);
}

/* On a cluster each tag's key is in a slot of its own: the peek's tag GETs go on nodes
 * 1 + i (the entry's HGETALL and PTTL on node 0), all in one round; the read script's round
 * the same. (The map: one master serving every slot.) */
static void test_cluster_spread(void)
{
    rp_client *cl = unit_client("redis+cluster://127.0.0.1:23101");
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a", "bb" };
    static const size_t lens[] = { 1, 2 };
    rp_cache_tags tags = { (const void *const *)items, lens, 2 };
    rp_cluster_range range = { 0, 16383, 0 };
    char host[] = "127.0.0.1", *hosts[1];
    int ports[1] = { 23101 };
    rp_cluster_topology t;
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_op *op;
    hosts[0] = host;
    t.ranges = &range;
    t.nranges = 1;
    t.hosts = hosts;
    t.ports = ports;
    t.nnodes = 1;
    CHECK(rp_cluster_map__apply(rp_client__cluster(cl, 0), &t) == RP_OK);

    /* a get: HGETALL, PTTL on node 0; GET of tag i on node 1 + i; a hit */
    op = get_op(c, "k", &tags);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request_on(op, 0, &q));
    CHECK(peek_request_ok(&q, "k", 0, NULL));
    CHECK(parse_request_on(op, 1, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 0, "GET") &&
          arg_is(&q.cmds[0], 1, "t:cache:{c:a}:tag"));
    CHECK(parse_request_on(op, 2, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 0, "GET") &&
          arg_is(&q.cmds[0], 1, "t:cache:{c:bb}:tag"));
    CHECK(!parse_request_on(op, 3, &q)); /* nothing for the others */
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", "bb", "0", NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK(rp_op_feed(op, 1, "$1\r\n5\r\n", 7) == RP_OK);
    CHECK(rp_op_feed(op, 2, "$-1\r\n", 5) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.hit && value_is(&r, "v"));
    CHECK_EQ(r.ttl_ms, 900);
    rp_op_free(op);

    /* a get_or_load of a tag-stale entry: the read script on node 0, the tags' GETs again
     * on nodes 1 and 2 */
    op = load_op(c, "k", &tags, 0);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK(rp_op_feed(op, 1, "$1\r\n6\r\n", 7) == RP_OK);
    CHECK(rp_op_feed(op, 2, "$-1\r\n", 5) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request_on(op, 0, &q));
    CHECK(q.ncmds == 1 && unit_request_has(op, 0, "t:cache:{c:k}:lock"));
    CHECK(parse_request_on(op, 1, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 1, "t:cache:{c:a}:tag"));
    CHECK(parse_request_on(op, 2, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 1, "t:cache:{c:bb}:tag"));
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- malformed replies ---------------------------------------------------------------- */

/* The read script's reply bad ends in ERROR with code: a get_or_load whose peek found no
 * entry (only a load reaches the script now; a get's bad replies: bad_peek), and one whose
 * peek found its entry stale by its tags (the script re-reads it as a miss). */
static void bad_read(rp_client *cl, rp_cache *c, const char *bad, int code, int line)
{
    int k;
    for (k = 0; k < 2; k++) {
        rp_op *op = load_op(c, "k", NULL, 0);
        rp_step st;
        (void)cl;
        if (k == 0) {
            peek_miss(op, 1000, "k", 0, NULL);
        } else {
            resp pk = { {0}, 0 };
            r_peek(&pk, "v", 0, 1, -1, 900, "b", "3", NULL);
            CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
            CHECK(feed_r(op, &pk) == RP_OK);
            CHECK(rp_op_step(op, 1000) == RP_STEP_IO); /* the other tag's version */
            CHECK(feed(op, "$1\r\n4\r\n") == RP_OK);
        }
        CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
        rp_op_feed(op, 0, bad, strlen(bad));
        if (k == 1) /* (the round reads the entry's tag b too) */
            rp_op_feed(op, 0, "$1\r\n4\r\n", 7);
        st = rp_op_step(op, 1001);
        CHECK(st == RP_STEP_ERROR && rp_op_error(op)->code == code);
        if (st != RP_STEP_ERROR || rp_op_error(op)->code != code)
            fprintf(stderr, "    (line %d, %s) step %d, %s: %s\n", line, k ? "tags" : "miss",
                    (int)st, st == RP_STEP_ERROR ? rp_status_name(rp_op_error(op)->code) : "-",
                    st == RP_STEP_ERROR ? rp_op_error(op)->message : "");
        rp_op_free(op);
    }
}

#define BAD_READ(bad, code) bad_read(cl, c, (bad), (code), __LINE__)

/* A get and a get_or_load fed bad as their peek's replies (HGETALL's, then PTTL's, then
 * the tag version's when tagged) end in ERROR with code. */
static void bad_peek(rp_cache *c, const char *bad, int code, const rp_cache_tags *tags, int line)
{
    int k;
    for (k = 0; k < 2; k++) {
        rp_op *op = k ? load_op(c, "k", tags, 0) : get_op(c, "k", tags);
        rp_step st;
        CHECK(rp_op_step(op, 1000) == RP_STEP_IO);
        rp_op_feed(op, 0, bad, strlen(bad));
        st = rp_op_step(op, 1001);
        CHECK(st == RP_STEP_ERROR && rp_op_error(op)->code == code);
        if (st != RP_STEP_ERROR || rp_op_error(op)->code != code)
            fprintf(stderr, "    (line %d, %s) step %d, %s: %s\n", line, k ? "load" : "get",
                    (int)st, st == RP_STEP_ERROR ? rp_status_name(rp_op_error(op)->code) : "-",
                    st == RP_STEP_ERROR ? rp_op_error(op)->message : "");
        rp_op_free(op);
    }
}

#define BAD_PEEK(bad, code) bad_peek(c, (bad), (code), NULL, __LINE__)

static void test_malformed(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("x", 1);
    char tok[33];
    rp_op *op;
    /* the peek: HGETALL's reply */
    BAD_PEEK("-ERR something\r\n:5\r\n", RP_EREPLY);
    BAD_PEEK("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:5\r\n",
             RP_EREPLY);
    BAD_PEEK("+OK\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK(":1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*-1\r\n:5\r\n", RP_EPROTOCOL);
    /* an odd count */
    BAD_PEEK("*1\r\n$1\r\nv\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*3\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n:5\r\n", RP_EPROTOCOL);
    /* an element not a string */
    BAD_PEEK("*2\r\n$1\r\nv\r\n:5\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n:1\r\n$1\r\nx\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n$1\r\nv\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n$1\r\nv\r\n*0\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n:1\r\n:5\r\n", RP_EPROTOCOL);
    /* both v and n; neither (a hash the cache did not write) */
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nn\r\n$1\r\n1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n$1\r\nd\r\n$1\r\n5\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*2\r\n$3\r\nt:a\r\n$1\r\n1\r\n:5\r\n", RP_EPROTOCOL);
    /* d not a decimal integer >= 0 */
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$3\r\nabc\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$2\r\n-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$0\r\n\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$3\r\n1.5\r\n:5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$19\r\n1000000000000000000\r\n:5\r\n",
             RP_EPROTOCOL);
    BAD_PEEK("*4\r\n$1\r\nn\r\n$1\r\n1\r\n$1\r\nd\r\n$2\r\n+1\r\n:5\r\n", RP_EPROTOCOL);
    /* PTTL's reply not an integer */
    BAD_PEEK("*2\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\n5\r\n", RP_EPROTOCOL);
    BAD_PEEK("*0\r\n$-1\r\n", RP_EPROTOCOL);
    BAD_PEEK("*0\r\n*0\r\n", RP_EPROTOCOL);
    /* (d of 18 digits is the most field_int takes: still a hit) */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, "*4\r\n$1\r\nv\r\n$1\r\nx\r\n$1\r\nd\r\n$18\r\n999999999999999999\r\n:5\r\n") ==
          RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    {
        rp_cache_result hr = result(op);
        CHECK(hr.hit && value_is(&hr, "x"));
    }
    rp_op_free(op);
    /* a hash with a field the cache does not know beside a value: read as the value */
    op = get_op(c, "k", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, "*4\r\n$1\r\nv\r\n$1\r\nx\r\n$3\r\nzzz\r\n$1\r\n1\r\n:5\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    CHECK(result(op).hit);
    rp_op_free(op);

    /* the read script's reply: the shape */
    BAD_READ("-ERR something\r\n", RP_EREPLY);
    BAD_READ("+OK\r\n", RP_EPROTOCOL);
    BAD_READ(":1\r\n", RP_EPROTOCOL);
    BAD_READ("$-1\r\n", RP_EPROTOCOL);
    BAD_READ("*-1\r\n", RP_EPROTOCOL);
    BAD_READ("*0\r\n", RP_EPROTOCOL);
    BAD_READ("*8\r\n:0\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n$-1\r\n", RP_EPROTOCOL);
    /* an odd tag part */
    BAD_READ("*10\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n$1\r\na\r\n",
             RP_EPROTOCOL);
    /* each element's type */
    BAD_READ("*9\r\n$1\r\n1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n:5\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n*0\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n$1\r\nv\r\n$-1\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n$1\r\nv\r\n:0\r\n+9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n$1\r\n0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n$-1\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n-E x\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:0\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:7\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:0\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n$-1\r\n$1\r\n5\r\n", RP_EPROTOCOL);
    BAD_READ("*11\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n:1\r\n$1\r\n1\r\n",
             RP_EPROTOCOL);
    BAD_READ("*11\r\n:1\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n$1\r\na\r\n$-1\r\n",
             RP_EPROTOCOL);
    /* the flags out of range: never taken for a success */
    BAD_READ("*9\r\n:2\r\n$1\r\nv\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    BAD_READ("*9\r\n:-1\r\n$-1\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);
    /* found, neither a value nor negative: not an answer */
    BAD_READ("*9\r\n:1\r\n$-1\r\n:0\r\n:9\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:5\r\n", RP_EPROTOCOL);

    /* the tags' versions: in the peek (a get and a load) ... */
    rr.n = 0;
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", NULL);
    r_int(&rr, 5);
    rr.b[rr.n] = 0;
    bad_peek(c, rr.b, RP_EPROTOCOL, &tags, __LINE__);
    rr.n = 0;
    r_peek(&rr, "v", 0, 1, -1, 900, "a", "5", NULL);
    r_raw(&rr, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    rr.b[rr.n] = 0;
    bad_peek(c, rr.b, RP_EREPLY, &tags, __LINE__);
    rr.n = 0;
    r_raw(&rr, "%s*1\r\n:5\r\n", PEEK_MISS); /* (a miss's too) */
    bad_peek(c, rr.b, RP_EPROTOCOL, &tags, __LINE__);
    /* ... and in the read script's round */
    op = load_op(c, "k", &tags, 0);
    peek_miss(op, 1000, "k", 1, items);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_read(&rr, 1, "v", 0, 900, 1, 0, 0, NULL, 100, "a", "5", NULL);
    r_int(&rr, 5);
    rp_op_feed(op, 0, rr.b, rr.n);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    op = load_op(c, "k", &tags, 0);
    peek_miss(op, 1000, "k", 1, items);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rr.n = 0;
    r_read(&rr, 1, "v", 0, 900, 1, 0, 0, NULL, 100, "a", "5", NULL);
    r_raw(&rr, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    rp_op_feed(op, 0, rr.b, rr.n);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EREPLY);
    rp_op_free(op);
    /* the extra round's (after the peek, a get and a load; after the script, a load) */
    {
        int k;
        for (k = 0; k < 3; k++) {
            op = k == 0 ? get_op(c, "k", NULL) : load_op(c, "k", NULL, 0);
            if (k == 2)
                peek_miss(op, 1000, "k", 0, NULL);
            CHECK_STEP(op, 1000, RP_STEP_IO);
            rr.n = 0;
            if (k == 2)
                r_read(&rr, 1, "v", 0, 900, 1, 0, 0, NULL, 100, "b", "5", NULL);
            else
                r_peek(&rr, "v", 0, 1, -1, 900, "b", "5", NULL);
            CHECK(feed_r(op, &rr) == RP_OK);
            CHECK_STEP(op, 1001, RP_STEP_IO);
            CHECK(feed(op, "*0\r\n") == RP_OK);
            CHECK_STEP(op, 1002, RP_STEP_ERROR);
            CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
            rp_op_free(op);
        }
    }

    /* the fill's */
    {
        static const char *const bad_fills[] = { ":2\r\n", ":-1\r\n", "+OK\r\n", "$1\r\n1\r\n",
                                                 "-ERR x\r\n", "*1\r\n:1\r\n" };
        static const int codes[] = { RP_EPROTOCOL, RP_EPROTOCOL, RP_EPROTOCOL, RP_EPROTOCOL,
                                     RP_EREPLY, RP_EPROTOCOL };
        size_t i;
        for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            rp_step st;
            op = load_op(c, "k", NULL, 0);
            rr.n = 0;
            r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
            to_call(cl, op, "k", &rr, 1000, tok);
            CHECK(rp_op_resume(op, &v) == RP_OK);
            CHECK_STEP(op, 1010, RP_STEP_IO);
            rp_op_feed(op, 0, bad_fills[i], strlen(bad_fills[i]));
            st = rp_op_step(op, 1011);
            CHECK(st == RP_STEP_ERROR && rp_op_error(op)->code == codes[i]);
            if (st != RP_STEP_ERROR || rp_op_error(op)->code != codes[i])
                fprintf(stderr, "    fill reply %zu: step %d\n", i, (int)st);
            rp_op_free(op);
        }
    }
    /* delete's and invalidate_tags' */
    op = NULL;
    CHECK(rp_cache_delete_op(&op, c, "k", 1, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, ":2\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    op = NULL;
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed(op, ":2\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* Redis full (maxmemory, noeviction): the fill is refused; the value is still the caller's. */
static void test_oom_fill(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("big", 3);
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    rp_step st;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(feed(op, "-OOM command not allowed when used memory > 'maxmemory'.\r\n") == RP_OK);
    st = rp_op_step(op, 1011);
    if (st == RP_STEP_IO) {
        /* the lock, which the refused fill did not release, is given back */
        CHECK(parse_request(op, &q));
        CHECK(is_script(cl, &q.cmds[0], "lock_release", "1") && arg_is(&q.cmds[0], 4, tok));
        CHECK(feed(op, ":1\r\n") == RP_OK);
        st = rp_op_step(op, 1012);
    }
    CHECK(st == RP_STEP_DONE);
    if (st == RP_STEP_DONE) {
        r = result(op);
        CHECK(r.loaded == 1 && r.stored == 0 && value_is(&r, "big"));
    }
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* The lock of a load whose fill Redis refused (OOM) must not be left to expire: waiters
 * would wait lock_ttl for nothing. */
static void test_oom_fill_releases_lock(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("big", 3);
    char tok[33];
    rp_op *op = load_op(c, "k", NULL, 0);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "k", &rr, 1000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(feed(op, "-OOM command not allowed when used memory > 'maxmemory'.\r\n") == RP_OK);
    CHECK_STEP(op, 1011, RP_STEP_IO); /* a lock_release with the token */
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- set, write-through, delete, invalidate_tags --------------------------------------- */

/* "<16 hex>:<seq>:<what>:<id>" */
static int message_ok(const cmd *c, size_t i, const char *what, const char *id, char *publisher)
{
    char tail[160];
    size_t n, k;
    if (i >= c->argc || c->len[i] < 17)
        return 0;
    for (k = 0; k < 16; k++)
        if (!((c->argv[i][k] >= '0' && c->argv[i][k] <= '9') ||
              (c->argv[i][k] >= 'a' && c->argv[i][k] <= 'f')))
            return 0;
    if (publisher) {
        memcpy(publisher, c->argv[i], 16);
        publisher[16] = 0;
    }
    n = (size_t)snprintf(tail, sizeof tail, ":%s:%s", what, id);
    return c->argv[i][16] == ':' && c->len[i] > 17 + n &&
           memcmp(c->argv[i] + c->len[i] - n, tail, n) == 0;
}

static void test_set(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_SWR, swr_opts);
    static const char *const items[] = { "a" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    rp_cache_result r;
    request q;
    const cmd *f;
    rp_op *op = NULL;
    char pub[17], pub2[17];
    CHECK(rp_cache_set_op(&op, c, "k", 1, "val", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    f = &q.cmds[0];
    CHECK(q.ncmds == 1 && is_script(cl, f, "cache_store", "3") && f->argc == 18);
    CHECK(arg_is(f, 6, "w") && arg_is(f, 7, "") && arg_is(f, 10, ""));
    CHECK(arg_is(f, 11, "2000") && arg_is(f, 12, "1000") && arg_is(f, 13, "0"));
    CHECK(arg_is(f, 14, "v") && arg_is(f, 15, "val"));
    CHECK(arg_is(f, 16, "t:cache:c:inv") && message_ok(f, 17, "k", "k", pub));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    r = result(op);
    CHECK(r.stored == 1 && r.loaded == 0 && r.hit == 0);
    CHECK(value_is(&r, "val") && !r.negative); /* the record carries what was stored */
    rp_op_free(op);

    /* with tags: their versions read first, then recorded */
    op = NULL;
    CHECK(rp_cache_set_op(&op, c, "k", 1, NULL, 0, &tags, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(q.ncmds == 1 && arg_is(&q.cmds[0], 0, "GET") &&
          arg_is(&q.cmds[0], 1, "t:cache:{c:a}:tag"));
    CHECK(feed(op, "$2\r\n42\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    f = &q.cmds[0];
    CHECK(q.ncmds == 2 && f->argc == 20);
    /* negative: negative_ttl, no stale window even in swr */
    CHECK(arg_is(f, 11, "30000") && arg_is(f, 12, "0") && arg_is(f, 14, "n"));
    CHECK(arg_is(f, 18, "a") && arg_is(f, 19, "42"));
    CHECK(message_ok(f, 17, "k", "k", pub2) && strcmp(pub, pub2) == 0);
    CHECK(feed(op, ":1\r\n:1\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(r.stored && r.negative && r.value == NULL);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_write_through(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    rp_cache_result r;
    request q;
    rp_value vals[4], fail = status_value(RP_ECALLBACK, "IntegrityError");
    size_t arg = 0, count = 0;
    rp_op *op = NULL;
    const char *bytes;
    size_t len;

    CHECK(rp_cache_write_op(&op, c, "k", 1, "new", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_CALL); /* the writer first: no I/O before it */
    memset(vals, 0, sizeof vals);
    CHECK(rp_op_call(op, &arg, vals, 4, &count) == RP_OK);
    CHECK_EQ(arg, RP_CACHE_WRITER_ARG);
    CHECK_EQ(count, 2);
    CHECK(vals[0].type == RP_TYPE_BYTES && vals[0].len == 1 && memcmp(vals[0].bytes, "k", 1) == 0);
    CHECK(vals[1].type == RP_TYPE_BYTES && vals[1].len == 3 &&
          memcmp(vals[1].bytes, "new", 3) == 0);
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(is_script(cl, &q.cmds[0], "cache_store", "3") && arg_is(&q.cmds[0], 6, "w") &&
          arg_is(&q.cmds[0], 14, "v") && arg_is(&q.cmds[0], 15, "new"));
    CHECK(message_ok(&q.cmds[0], 17, "k", "k", NULL));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(r.stored && !r.loaded && value_is(&r, "new"));
    rp_op_free(op);

    /* a negative write: the writer hears (key, absent) */
    op = NULL;
    CHECK(rp_cache_write_op(&op, c, "k", 1, NULL, 0, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_CALL);
    memset(vals, 0, sizeof vals);
    CHECK(rp_op_call(op, &arg, vals, 4, &count) == RP_OK);
    CHECK(count == 2 && vals[0].type == RP_TYPE_BYTES && vals[1].type == RP_TYPE_NONE);
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK(arg_is(&q.cmds[0], 14, "n"));
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1002, RP_STEP_DONE);
    r = result(op);
    CHECK(r.stored && r.negative && r.value == NULL);
    rp_op_free(op);

    /* the writer fails: no store request at all, the writer's error */
    op = NULL;
    CHECK(rp_cache_write_op(&op, c, "k", 1, "new", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_CALL);
    CHECK(rp_op_resume(op, &fail) == RP_OK);
    CHECK(rp_op_request(op, 0, &bytes, &len) != RP_OK || len == 0);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECALLBACK &&
          strcmp(rp_op_error(op)->message, "IntegrityError") == 0);
    rp_op_free(op);

    /* cancelled while the writer runs: nothing to release, cancelled at once */
    op = NULL;
    CHECK(rp_cache_write_op(&op, c, "k", 1, "new", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_CALL);
    rp_op_cancel(op);
    CHECK_STEP(op, 1001, RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_delete(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    request q;
    int k;
    for (k = 0; k < 2; k++) {
        rp_op *op = NULL;
        const cmd *f;
        CHECK(rp_cache_delete_op(&op, c, "k", 1, NULL) == RP_OK);
        CHECK_STEP(op, 1000, RP_STEP_IO);
        CHECK(parse_request(op, &q));
        f = &q.cmds[0];
        CHECK(q.ncmds == 1 && is_script(cl, f, "cache_store", "3") && arg_is(f, 6, "d") &&
              arg_is(f, 10, "") && arg_is(f, 16, "t:cache:c:inv") &&
              message_ok(f, 17, "k", "k", NULL));
        CHECK(feed(op, k ? ":1\r\n" : ":0\r\n") == RP_OK);
        CHECK_STEP(op, 1001, RP_STEP_DONE);
        CHECK(result(op).hit == k);
        rp_op_free(op);
    }
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_invalidate_tags(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL);
    static const char *const items[] = { "a", "bb", "c\0c" };
    static const size_t lens[] = { 1, 2, 3 };
    rp_cache_tags tags = { (const void *const *)items, lens, 3 };
    request q;
    rp_op *op = NULL;
    size_t i;
    long long seq[3];
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(parse_request(op, &q));
    CHECK_EQ(q.ncmds, 3);
    for (i = 0; i < 3; i++) {
        const cmd *f = &q.cmds[i];
        char key[64];
        size_t kl = (size_t)snprintf(key, sizeof key, "t:cache:{c:") ;
        memcpy(key + kl, items[i], lens[i]);
        memcpy(key + kl + lens[i], "}:tag", 6);
        CHECK(is_script(cl, f, "cache_tag", "1") && f->argc == 7);
        CHECK(f->len[3] == kl + lens[i] + 5 && memcmp(f->argv[3], key, f->len[3]) == 0);
        CHECK(arg_is(f, 4, "30000")); /* as long as an entry may live: the 30 s negative_ttl */
        CHECK(arg_is(f, 5, "t:cache:c:inv"));
        CHECK(f->len[6] > 17 + 3 + lens[i] && f->argv[6][16] == ':');
        seq[i] = strtoll(f->argv[6] + 17, NULL, 10);
        CHECK(memcmp(f->argv[6] + f->len[6] - lens[i] - 3, ":t:", 3) == 0 &&
              memcmp(f->argv[6] + f->len[6] - lens[i], items[i], lens[i]) == 0);
    }
    CHECK(seq[1] == seq[0] + 1 && seq[2] == seq[1] + 1); /* one sequence per publisher */
    CHECK(feed(op, "$2\r\n17\r\n$2\r\n18\r\n$2\r\n19\r\n") == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- the near-cache --------------------------------------------------------------------- */

static void near_opts(rp_cache_options *o)
{
    o->near_size = 2;
    o->near_ttl_ms = 1000;
}

static int64_t apply(rp_cache *c, const char *kind, const char *data, int *cleared)
{
    int64_t dropped = -1;
    int cl = -1;
    rp_error e;
    CHECK(rp_cache_near_apply(c, kind, strlen(kind), data, data ? strlen(data) : 0, &dropped,
                              &cl, &e) == RP_OK);
    if (cleared)
        *cleared = cl;
    return dropped;
}

static int64_t near_entries(rp_cache *c, int *armed)
{
    int64_t n = -1;
    int a = -1;
    rp_cache_near_stats(c, &n, &a);
    if (armed)
        *armed = a;
    return n;
}

/* A get of k at now: through Redis (the reply a hit of value with pttl) or from the near
 * cache; returns 1 when it went to Redis. */
static int near_get(rp_cache *c, const char *k, const char *value, long long pttl, uint64_t now,
                    rp_cache_result *out)
{
    rp_op *op = get_op(c, k, NULL);
    rp_step st = rp_op_step(op, now);
    int io = st == RP_STEP_IO;
    if (io) {
        resp rr = { {0}, 0 };
        r_peek(&rr, value, value ? 0 : 1, 1, -1, pttl, NULL);
        CHECK(feed_r(op, &rr) == RP_OK);
        st = rp_op_step(op, now);
    }
    CHECK(st == RP_STEP_DONE);
    if (out) {
        static char copy[256]; /* the value is borrowed from the op: keep a copy */
        *out = result(op);
        if (out->value && out->value_len < sizeof copy) {
            memcpy(copy, out->value, out->value_len);
            out->value = copy;
        }
    }
    rp_op_free(op);
    return io;
}

static void test_near(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, near_opts);
    rp_cache_result r;
    int armed, cleared;
    const char *pub = "0123456789abcdef";
    char msg[128];

    /* not armed: never served, never kept */
    CHECK(near_get(c, "a", "1", 9000, 1000, &r) == 1 && !r.near);
    CHECK(near_get(c, "a", "1", 9000, 1001, &r) == 1 && !r.near);
    CHECK(near_entries(c, &armed) == 0 && armed == 0);
    /* a message before the subscribe confirmation arms nothing */
    apply(c, "message", "0123456789abcdef:1:k:zz", NULL);
    CHECK(near_get(c, "a", "1", 9000, 1002, NULL) == 1);

    /* armed: the second get costs no round trip */
    CHECK(apply(c, "subscribe", NULL, &cleared) == 0 && cleared == 0);
    CHECK(near_entries(c, &armed) == 0 && armed == 1);
    CHECK(near_get(c, "a", "1", 9000, 1000, &r) == 1 && !r.near && r.hit);
    CHECK(near_entries(c, NULL) == 1);
    CHECK(near_get(c, "a", "1", 9000, 1010, &r) == 0);
    CHECK(r.near && r.hit && !r.negative && value_is(&r, "1") && r.ttl_ms == 990);
    /* negative entries too */
    CHECK(near_get(c, "n", NULL, 9000, 1010, &r) == 1 && r.negative);
    CHECK(near_get(c, "n", NULL, 9000, 1011, &r) == 0 && r.near && r.negative && !r.value);

    /* a message drops its key */
    snprintf(msg, sizeof msg, "%s:1:k:a", pub);
    CHECK(apply(c, "message", msg, &cleared) == 1 && cleared == 0);
    CHECK(near_entries(c, NULL) == 1);
    CHECK(near_get(c, "a", "2", 9000, 1020, &r) == 1 && value_is(&r, "2"));
    /* a key not held: nothing dropped */
    snprintf(msg, sizeof msg, "%s:2:k:zzz", pub);
    CHECK(apply(c, "message", msg, &cleared) == 0 && cleared == 0);
    CHECK(near_entries(c, NULL) == 2);
    /* a gap in the publisher's sequence (3 missed): clears */
    snprintf(msg, sizeof msg, "%s:4:k:zzz", pub);
    CHECK(apply(c, "message", msg, &cleared) == 2 && cleared == 1);
    CHECK(near_entries(c, &armed) == 0 && armed == 1);
    /* an older sequence (two writers' messages overtook each other): no gap */
    CHECK(near_get(c, "a", "2", 9000, 1030, NULL) == 1);
    snprintf(msg, sizeof msg, "%s:3:k:zzz", pub);
    CHECK(apply(c, "message", msg, &cleared) == 0 && cleared == 0);
    snprintf(msg, sizeof msg, "%s:5:k:zzz", pub);
    CHECK(apply(c, "message", msg, &cleared) == 0 && cleared == 0);
    CHECK(near_entries(c, NULL) == 1);
    /* a second publisher starts anywhere */
    CHECK(apply(c, "message", "fedcba9876543210:77:k:zzz", &cleared) == 0 && cleared == 0);
    /* a message that is not one of ours: it cannot be vouched for: clears (and says how
     * many entries went, as a gap does) */
    CHECK(near_entries(c, NULL) == 1);
    CHECK_EQ(apply(c, "message", "hello", &cleared), 1);
    CHECK(cleared == 1);
    CHECK(near_entries(c, &armed) == 0 && armed == 1);
    /* a reconnect notice (the subscription is live again, messages were missed): clears,
     * stays armed, and forgets the publishers' sequences */
    CHECK(near_get(c, "a", "2", 9000, 1040, NULL) == 1);
    CHECK(near_entries(c, NULL) == 1);
    CHECK(apply(c, "reconnect", NULL, &cleared) == 1 && cleared == 1);
    CHECK(near_entries(c, &armed) == 0 && armed == 1);
    CHECK(near_get(c, "a", "2", 9000, 1041, NULL) == 1);
    CHECK(near_get(c, "a", "2", 9000, 1042, NULL) == 0);
    snprintf(msg, sizeof msg, "%s:1:k:zzz", pub); /* seq 1 again: no gap, a fresh start */
    CHECK(apply(c, "message", msg, &cleared) == 0 && cleared == 0);
    CHECK(near_entries(c, NULL) == 1);
    /* unsubscribe clears and disarms: nothing served, nothing kept */
    CHECK(apply(c, "unsubscribe", NULL, &cleared) == 1 && cleared == 1);
    CHECK(near_entries(c, &armed) == 0 && armed == 0);
    CHECK(near_get(c, "a", "2", 9000, 1043, NULL) == 1);
    CHECK(near_get(c, "a", "2", 9000, 1044, NULL) == 1);
    CHECK(near_entries(c, NULL) == 0);
    /* anything unknown disarms too (it cannot vouch) */
    apply(c, "subscribe", NULL, NULL);
    CHECK(near_get(c, "a", "2", 9000, 1045, NULL) == 1);
    CHECK(apply(c, "pong", NULL, &cleared) == 1 && cleared == 1);
    CHECK(near_entries(c, &armed) == 0 && armed == 0);
    /* re-subscribed: a publisher's sequence is taken afresh */
    apply(c, "subscribe", NULL, NULL);
    snprintf(msg, sizeof msg, "%s:1:k:zzz", pub);
    CHECK(apply(c, "message", msg, &cleared) == 0 && cleared == 0);
    /* the handle's own message (its write already dropped its copy; another thread's read
     * may have refilled it since): drops it again */
    CHECK(near_get(c, "own", "o", 9000, 1046, NULL) == 1);
    {
        rp_op *w = NULL;
        request q;
        char own[160];
        CHECK(rp_cache_set_op(&w, c, "own", 3, "o2", 2, NULL, NULL) == RP_OK);
        CHECK_STEP(w, 1047, RP_STEP_IO);
        CHECK(parse_request(w, &q) && q.cmds[0].argc == 18);
        snprintf(own, sizeof own, "%.*s", (int)q.cmds[0].len[17], q.cmds[0].argv[17]);
        rp_op_free(w);
        CHECK(near_entries(c, NULL) == 0);
        CHECK(near_get(c, "own", "o2", 9000, 1048, NULL) == 1); /* refilled before the echo */
        CHECK(apply(c, "message", own, &cleared) == 1 && cleared == 0);
        CHECK(near_entries(c, NULL) == 0);
    }
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_near_lru_and_expiry(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, near_opts);
    rp_cache_result r;
    apply(c, "subscribe", NULL, NULL);
    /* LRU: a, b in; a used; c in: b (the least recently used) goes */
    CHECK(near_get(c, "a", "A", 9000, 1000, NULL) == 1);
    CHECK(near_get(c, "b", "B", 9000, 1000, NULL) == 1);
    CHECK(near_entries(c, NULL) == 2);
    CHECK(near_get(c, "a", "A", 9000, 1001, NULL) == 0);
    CHECK(near_get(c, "c", "C", 9000, 1002, NULL) == 1);
    CHECK(near_entries(c, NULL) == 2);
    CHECK(near_get(c, "a", "A", 9000, 1003, NULL) == 0);
    CHECK(near_get(c, "c", "C", 9000, 1003, NULL) == 0);
    CHECK(near_get(c, "b", "B", 9000, 1004, NULL) == 1); /* evicted: back in, a goes */
    CHECK(near_get(c, "c", "C", 9000, 1005, NULL) == 0);
    CHECK(near_get(c, "a", "A", 9000, 1006, NULL) == 1);

    /* expiry: near_ttl after the fill ... */
    apply(c, "reconnect", NULL, NULL);
    apply(c, "subscribe", NULL, NULL);
    CHECK(near_get(c, "a", "A", 9000, 5000, NULL) == 1);
    CHECK(near_get(c, "a", "A", 9000, 5999, &r) == 0 && r.ttl_ms == 1);
    CHECK(near_get(c, "a", "A", 9000, 6000, NULL) == 1);
    /* ... or the Redis TTL left, when shorter */
    CHECK(near_get(c, "b", "B", 300, 7000, NULL) == 1);
    CHECK(near_get(c, "b", "B", 300, 7299, &r) == 0 && r.ttl_ms == 1);
    CHECK(near_get(c, "b", "B", 300, 7300, NULL) == 1);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void near_swr(rp_cache_options *o)
{
    o->ttl_ms = 1000;
    o->near_size = 2;
    o->near_ttl_ms = 1000;
}

/* A read that began before an invalidation was applied must not fill the near-cache. */
static void test_near_epoch(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, near_opts);
    resp rr = { {0}, 0 };
    rp_value v = rp_value_bytes("L", 1);
    char tok[33];
    rp_op *op, *w = NULL;
    apply(c, "subscribe", NULL, NULL);
    r_peek(&rr, "old", 0, 1, -1, 9000, NULL);

    /* another key's invalidation lands while the read is out: not kept (it cannot tell) */
    op = get_op(c, "a", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    apply(c, "message", "0123456789abcdef:1:k:other", NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    CHECK(result(op).hit && !result(op).near);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    /* a clear (gap) the same */
    op = get_op(c, "a", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    apply(c, "message", "0123456789abcdef:9:k:other", NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    /* this handle's own write of the key while the read is out */
    op = get_op(c, "a", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(rp_cache_set_op(&w, c, "a", 1, "new", 3, NULL, NULL) == RP_OK);
    CHECK_STEP(w, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);
    rp_op_free(w);
    CHECK(near_entries(c, NULL) == 0);
    /* nothing in between: kept */
    op = get_op(c, "a", NULL);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 1);

    /* a load: an invalidation during the loader: the value is not kept near */
    apply(c, "message", "0123456789abcdef:10:k:a", NULL);
    CHECK(near_entries(c, NULL) == 0);
    op = load_op(c, "a", NULL, 0);
    rr.n = 0;
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "a", &rr, 2000, tok);
    apply(c, "message", "0123456789abcdef:11:k:a", NULL);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 2010, RP_STEP_IO);
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 2011, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    /* ... and without one, it is, and answers the next load */
    op = load_op(c, "a", NULL, 0);
    to_call(cl, op, "a", &rr, 3000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 3010, RP_STEP_IO);
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 3011, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 1);
    op = load_op(c, "a", NULL, 0);
    CHECK_STEP(op, 3012, RP_STEP_DONE);
    {
        rp_cache_result r = result(op);
        CHECK(r.near && r.hit && !r.loaded && value_is(&r, "L"));
    }
    rp_op_free(op);
    /* a fill refused by Redis is not kept near either */
    apply(c, "message", "0123456789abcdef:12:k:a", NULL);
    op = load_op(c, "a", NULL, 0);
    to_call(cl, op, "a", &rr, 4000, tok);
    CHECK(rp_op_resume(op, &v) == RP_OK);
    CHECK_STEP(op, 4010, RP_STEP_IO);
    CHECK(feed(op, ":0\r\n") == RP_OK);
    CHECK_STEP(op, 4011, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    rp_cache_free(c);

    /* a stale swr value is not kept near (the next read must see the refresh); a fresh one
     * is */
    c = mk(cl, RP_CACHE_SWR, near_swr);
    apply(c, "subscribe", NULL, NULL);
    op = get_op(c, "s", NULL);
    CHECK_STEP(op, 5000, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "old", 0, 1, 1000, 900, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 5001, RP_STEP_DONE);
    CHECK(result(op).stale);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    op = get_op(c, "s", NULL);
    CHECK_STEP(op, 5002, RP_STEP_IO);
    rr.n = 0;
    r_peek(&rr, "new", 0, 1, 1000, 1900, NULL);
    CHECK(feed_r(op, &rr) == RP_OK);
    CHECK_STEP(op, 5003, RP_STEP_DONE);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 1);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* A handle's own set / write / delete / invalidate_tags drops its own copy at once (and its
 * message, when it comes back, again: test_near). */
static void test_near_own_writes(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, near_opts);
    static const char *const items[] = { "g" };
    static const size_t lens[] = { 1 };
    rp_cache_tags tags = { (const void *const *)items, lens, 1 };
    rp_op *op = NULL;
    apply(c, "subscribe", NULL, NULL);
    CHECK(near_get(c, "a", "A", 9000, 1000, NULL) == 1);
    CHECK(near_entries(c, NULL) == 1);
    CHECK(rp_cache_set_op(&op, c, "a", 1, "x", 1, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    CHECK(near_get(c, "a", "A", 9000, 1000, NULL) == 1);
    op = NULL;
    CHECK(rp_cache_delete_op(&op, c, "a", 1, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    CHECK(near_get(c, "a", "A", 9000, 1000, NULL) == 1);
    op = NULL;
    CHECK(rp_cache_write_op(&op, c, "a", 1, "x", 1, NULL, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_CALL);
    CHECK(near_entries(c, NULL) == 1); /* not before the writer succeeded */
    CHECK(rp_op_resume(op, NULL) == RP_OK);
    CHECK_STEP(op, 1001, RP_STEP_IO);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 0);
    /* by tag: an entry read with tag g */
    {
        rp_op *g = get_op(c, "t", &tags);
        resp rr = { {0}, 0 };
        CHECK_STEP(g, 1000, RP_STEP_IO);
        r_peek(&rr, "T", 0, 1, -1, 9000, "g", "1", NULL);
        r_str(&rr, "1");
        CHECK(feed_r(g, &rr) == RP_OK);
        CHECK_STEP(g, 1001, RP_STEP_DONE);
        rp_op_free(g);
    }
    CHECK(near_get(c, "a", "A", 9000, 1000, NULL) == 1);
    CHECK(near_entries(c, NULL) == 2);
    op = NULL;
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, NULL) == RP_OK);
    CHECK_STEP(op, 1000, RP_STEP_IO);
    rp_op_free(op);
    CHECK(near_entries(c, NULL) == 1); /* only the tagged one */
    /* a published tag invalidation the same */
    CHECK(apply(c, "message", "0123456789abcdef:1:t:zz", NULL) == 0);
    CHECK(near_entries(c, NULL) == 1);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* A negative entry must not be served near longer than Redis keeps it (negative_ttl). */
static void near_neg(rp_cache_options *o)
{
    o->near_size = 8;
    o->near_ttl_ms = 1000;
    o->negative_ttl_ms = 100;
}

static void test_near_negative_ttl(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, near_neg);
    resp rr = { {0}, 0 };
    char tok[33];
    rp_op *op = load_op(c, "a", NULL, 0);
    apply(c, "subscribe", NULL, NULL);
    r_read(&rr, 0, NULL, 0, 0, 0, 0, 1, "9", 100, NULL);
    to_call(cl, op, "a", &rr, 1000, tok);
    CHECK(rp_op_resume(op, NULL) == RP_OK); /* none: a negative entry, 100 ms in Redis */
    CHECK_STEP(op, 1010, RP_STEP_IO);
    CHECK(feed(op, ":1\r\n") == RP_OK);
    CHECK_STEP(op, 1010, RP_STEP_DONE);
    rp_op_free(op);
    op = get_op(c, "a", NULL);
    /* 500 ms later Redis has long dropped it: the near-cache must not still answer none */
    CHECK_STEP(op, 1510, RP_STEP_IO);
    rp_op_free(op);
    rp_cache_free(c);
    rp_client_free(cl);
}

/* --- XFetch's formula over a simulated clock -------------------------------------------- */

/* A 64-bit LCG (Knuth's MMIX constants), its top 53 bits mapped to (0, 1]. */
static uint64_t lcg_state = 0x853c49e6748fea9bULL;
static double lcg_uniform(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(lcg_state >> 11) + 1.0) / 9007199254740992.0;
}

static void test_xfetch_rate(void)
{
    static const struct { int64_t delta; double beta; int64_t ttl; } cases[] = {
        { 100, 1.0, 50 }, { 100, 1.0, 100 }, { 100, 1.0, 300 }, { 100, 2.0, 300 },
        { 10, 0.5, 1 }, { 1000, 1.0, 4000 }, { 250, 3.0, 100 }, { 50, 1.0, 1 },
    };
    const int draws = 100000;
    size_t i;
    /* the boundaries: none left recomputes at once; no compute time / no draw never does */
    CHECK(rp_cache_xfetch_early(100, 1.0, 0, 0.999) == 1);
    CHECK(rp_cache_xfetch_early(100, 1.0, -5, 0.999) == 1);
    CHECK(rp_cache_xfetch_early(0, 1.0, 1, 1e-300) == 0);
    CHECK(rp_cache_xfetch_early(100, 1.0, 1, 0) == 0);
    CHECK(rp_cache_xfetch_early(100, 1.0, 1, 1.5) == 0);
    CHECK(rp_cache_xfetch_early(100, 1.0, 1, NAN) == 0);
    CHECK(rp_cache_xfetch_early(100, 1.0, 1, 1.0) == 0); /* -ln 1 = 0 < 1 */
    CHECK(rp_cache_xfetch_early(100, 1.0, 100, exp(-1.0) - 1e-12) == 1);
    CHECK(rp_cache_xfetch_early(100, 1.0, 100, exp(-1.0) + 1e-12) == 0);
    /* Each draw is a Bernoulli trial with p = exp(-ttl / (delta * beta)); over n draws the
     * fraction's standard error is sqrt(p (1 - p) / n) (<= 0.00158 at n = 1e5). Accept 5
     * standard errors (a false alarm about 1 in 1.7 million per case for a true uniform
     * source; the LCG is deterministic, so a pass is reproducible), plus a floor of 1e-4
     * for p near 0 or 1. */
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double p = exp(-(double)cases[i].ttl / ((double)cases[i].delta * cases[i].beta));
        double se = sqrt(p * (1 - p) / draws), frac;
        int k, early = 0;
        for (k = 0; k < draws; k++)
            early += rp_cache_xfetch_early(cases[i].delta, cases[i].beta, cases[i].ttl,
                                           lcg_uniform());
        frac = (double)early / draws;
        CHECK(fabs(frac - p) <= 5 * se + 1e-4);
        printf("xfetch delta %4" PRId64 " beta %.1f ttl %4" PRId64 ": %.5f early, "
               "exp(-ttl/(delta*beta)) %.5f, |diff| %.5f <= %.5f\n", cases[i].delta,
               cases[i].beta, cases[i].ttl, frac, p, fabs(frac - p), 5 * se + 1e-4);
    }
}

/* The clock runs toward expiry (an entry with T ms left at t = 0); every ms R readers each
 * draw once; the first early recompute comes at the first ms whose lead l (ms left) has a
 * reader with delta*beta*E >= l, E = -ln(uniform) ~ Exp(1), i.e. with probability
 * q_l = exp(-l / (d b)) per reader. The exact distribution of that lead follows (computed
 * below); in the continuum it is a Gumbel: P(lead < L) = exp(-R d b e^{-L/(d b)}), mean
 * d b (ln(R d b) + 0.5772), sd 1.28 d b: the recompute comes a few delta*beta ahead of
 * expiry, later with fewer readers, never after it. (So "about delta*beta ahead" holds
 * for the spread, sd ~ 1.28 d b, while the mean grows with ln(R d b).) Checked: every run
 * recomputes before expiry, the simulated mean lead is within 5 standard errors
 * (sd / sqrt(runs)) of the exact mean, and the whole empirical distribution is within the
 * 1% Kolmogorov-Smirnov bound of the exact one. */
static void test_xfetch_clock(void)
{
    static const struct { int64_t delta; double beta; int readers; int64_t ttl; } cases[] = {
        { 100, 1.0, 1, 2000 }, { 100, 1.0, 10, 2000 }, { 50, 2.0, 5, 2000 },
        { 200, 0.5, 20, 2000 }, { 20, 1.0, 50, 500 },
    };
    const int runs = 1000;
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double db = (double)cases[i].delta * cases[i].beta, sum = 0, sum2 = 0, mean, sd, se;
        double exact = 0, surv = 1, ks = 0, cdf_exact = 0, cdf_emp = 0;
        double *pmf = calloc((size_t)cases[i].ttl + 1, sizeof *pmf);
        int *hist = calloc((size_t)cases[i].ttl + 1, sizeof *hist);
        int run, before_expiry = 0;
        int64_t L;
        if (!pmf || !hist)
            abort();
        /* the exact distribution of the lead L (ms left at the first recompute): at lead l
         * each of R draws recomputes with q_l = exp(-l / db) (q_0 = 1: at expiry, always) */
        for (L = cases[i].ttl; L >= 0; L--) {
            double q = L == 0 ? 1.0 : exp(-(double)L / db);
            double none = pow(1 - q, cases[i].readers);
            pmf[L] = surv * (1 - none);
            exact += (double)L * pmf[L];
            surv *= none;
        }
        for (run = 0; run < runs; run++) {
            int64_t left = -1, t;
            for (t = 0; t < cases[i].ttl && left < 0; t++) {
                int k;
                for (k = 0; k < cases[i].readers; k++)
                    if (rp_cache_xfetch_early(cases[i].delta, cases[i].beta, cases[i].ttl - t,
                                              lcg_uniform())) {
                        left = cases[i].ttl - t;
                        break;
                    }
            }
            if (left > 0)
                before_expiry++;
            else
                left = 0;
            hist[left]++;
            sum += (double)left;
            sum2 += (double)left * (double)left;
        }
        mean = sum / runs;
        sd = sqrt(sum2 / runs - mean * mean);
        se = sd / sqrt((double)runs);
        /* the whole distribution: Kolmogorov-Smirnov distance of the empirical lead to the
         * exact one (from the largest lead down); 1.63 / sqrt(n) is the 1% critical value
         * (conservative for a discrete distribution) */
        for (L = cases[i].ttl; L >= 0; L--) {
            cdf_exact += pmf[L];
            cdf_emp += (double)hist[L] / runs;
            if (fabs(cdf_emp - cdf_exact) > ks)
                ks = fabs(cdf_emp - cdf_exact);
        }
        CHECK(before_expiry == runs);
        CHECK(fabs(mean - exact) <= 5 * se);
        CHECK(ks <= 1.63 / sqrt((double)runs));
        printf("xfetch clock delta %3" PRId64 " beta %.1f, %2d readers/ms: first recompute "
               "%.1f ms before expiry on average (exact %.1f, Gumbel %.1f; sd %.1f, "
               "delta*beta %.0f); KS %.4f <= %.4f; %d/%d before expiry\n", cases[i].delta,
               cases[i].beta, cases[i].readers, mean, exact,
               db * (log(cases[i].readers * db) + 0.5772), sd, db, ks,
               1.63 / sqrt((double)runs), before_expiry, runs);
        free(pmf);
        free(hist);
    }
}

/* --- bounds --------------------------------------------------------------------------- */

static int make(rp_client *cl, void (*set)(rp_cache_options *, int64_t), int64_t v, rp_error *e)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    int rc;
    o.ttl_ms = 10000;
    set(&o, v);
    rc = rp_cache_new(&c, cl, "c", 1, &o, e);
    CHECK((rc == RP_OK) == (c != NULL));
    rp_cache_free(c);
    return rc;
}

#define SETTER(field) \
    static void set_##field(rp_cache_options *o, int64_t v) { o->field = v; }
SETTER(ttl_ms)
SETTER(negative_ttl_ms)
SETTER(jitter_ms)
SETTER(lock_ttl_ms)
SETTER(stale_ms)
SETTER(load_timeout_ms)
SETTER(near_size)
SETTER(near_ttl_ms)
static void set_stampede(rp_cache_options *o, int64_t v) { o->stampede = (rp_cache_stampede)v; }
static void set_beta_milli(rp_cache_options *o, int64_t v) { o->beta = (double)v / 1000; }
static void set_beta_nan(rp_cache_options *o, int64_t v) { (void)v; o->beta = NAN; }
static void set_beta_inf(rp_cache_options *o, int64_t v) { (void)v; o->beta = INFINITY; }
static void set_lock_long(rp_cache_options *o, int64_t v)
{
    o->lock_ttl_ms = v;
    o->load_timeout_ms = 1000;
}

#define TTL_MAX RP_CACHE_TTL_MS_MAX

static void test_option_bounds(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *c = NULL;
    rp_error e;
    char name[RP_CACHE_NAME_MAX + 2];

    CHECK(make(cl, set_ttl_ms, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "ttl must be 1..1099511627776 ms (got 0)");
    CHECK(make(cl, set_ttl_ms, TTL_MAX + 1, &e) == RP_EINVAL);
    CHECK_MSG(e, "ttl must be 1..1099511627776 ms (got 1099511627777)");
    CHECK(make(cl, set_ttl_ms, TTL_MAX, &e) == RP_OK);
    CHECK(make(cl, set_ttl_ms, 1, &e) == RP_OK);
    CHECK(make(cl, set_negative_ttl_ms, -1, &e) == RP_EINVAL);
    CHECK_MSG(e, "negative_ttl must be 0..1099511627776 ms (got -1)");
    CHECK(make(cl, set_negative_ttl_ms, TTL_MAX + 1, &e) == RP_EINVAL);
    CHECK(make(cl, set_negative_ttl_ms, 0, &e) == RP_OK);
    CHECK(make(cl, set_negative_ttl_ms, TTL_MAX, &e) == RP_OK);
    CHECK(make(cl, set_load_timeout_ms, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "load_timeout must be 1..1099511627776 ms (got 0)");
    CHECK(make(cl, set_load_timeout_ms, TTL_MAX + 1, &e) == RP_EINVAL);
    CHECK(make(cl, set_lock_ttl_ms, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "lock_ttl must be 1..1099511627776 ms (got 0)");
    CHECK(make(cl, set_lock_ttl_ms, 60000, &e) == RP_OK); /* = load_timeout */
    CHECK(make(cl, set_lock_ttl_ms, 60001, &e) == RP_EINVAL);
    CHECK_MSG(e, "lock_ttl must be <= load_timeout (got 60001 ms > 60000 ms): a load the lock "
                 "waits for must be cacheable");
    CHECK(make(cl, set_lock_long, 1001, &e) == RP_EINVAL);
    CHECK(make(cl, set_lock_long, 1000, &e) == RP_OK);
    CHECK(make(cl, set_stale_ms, -1, &e) == RP_EINVAL);
    CHECK_MSG(e, "stale must be 0..1099511627776 ms (got -1)");
    CHECK(make(cl, set_stale_ms, TTL_MAX + 1, &e) == RP_EINVAL);
    CHECK(make(cl, set_near_ttl_ms, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "near_ttl must be 1..1099511627776 ms (got 0)");
    CHECK(make(cl, set_jitter_ms, -1, &e) == RP_EINVAL);
    CHECK_MSG(e, "jitter must be 0..ttl (10000 ms) (got -1 ms)");
    CHECK(make(cl, set_jitter_ms, 10001, &e) == RP_EINVAL);
    CHECK_MSG(e, "jitter must be 0..ttl (10000 ms) (got 10001 ms)");
    CHECK(make(cl, set_jitter_ms, 10000, &e) == RP_OK);
    CHECK(make(cl, set_stampede, 4, &e) == RP_EINVAL);
    CHECK_MSG(e, "stampede must be none, lock, swr or xfetch");
    CHECK(make(cl, set_stampede, -1, &e) == RP_EINVAL);
    CHECK(make(cl, set_stampede, RP_CACHE_XFETCH, &e) == RP_OK);
    CHECK(make(cl, set_beta_milli, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "beta must be a number > 0 and <= 1e6 (got 0)");
    CHECK(make(cl, set_beta_milli, -1000, &e) == RP_EINVAL);
    CHECK(make(cl, set_beta_milli, 1000000001, &e) == RP_EINVAL);
    CHECK(make(cl, set_beta_milli, 1000000000, &e) == RP_OK);
    CHECK(make(cl, set_beta_milli, 1, &e) == RP_OK);
    CHECK(make(cl, set_beta_nan, 0, &e) == RP_EINVAL);
    CHECK(make(cl, set_beta_inf, 0, &e) == RP_EINVAL);
    CHECK(make(cl, set_near_size, -1, &e) == RP_EINVAL);
    CHECK_MSG(e, "near_size must be 0..10000000 entries (got -1)");
    CHECK(make(cl, set_near_size, RP_CACHE_NEAR_MAX + 1, &e) == RP_EINVAL);
    CHECK(make(cl, set_near_size, 1, &e) == RP_OK);

    /* the name, the handle's arguments */
    o.ttl_ms = 1000;
    CHECK(rp_cache_new(NULL, cl, "c", 1, &o, &e) == RP_EINVAL);
    CHECK_MSG(e, "out, client and options must not be NULL");
    CHECK(rp_cache_new(&c, NULL, "c", 1, &o, &e) == RP_EINVAL && c == NULL);
    CHECK(rp_cache_new(&c, cl, "c", 1, NULL, &e) == RP_EINVAL && c == NULL);
    CHECK(rp_cache_new(&c, cl, NULL, 1, &o, &e) == RP_EINVAL && c == NULL);
    CHECK_MSG(e, "cache name must be 1..128 bytes (got 0)");
    CHECK(rp_cache_new(&c, cl, "c", 0, &o, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache name must be 1..128 bytes (got 0)");
    memset(name, 'n', sizeof name);
    CHECK(rp_cache_new(&c, cl, name, RP_CACHE_NAME_MAX + 1, &o, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache name must be 1..128 bytes (got 129)");
    CHECK(rp_cache_new(&c, cl, name, RP_CACHE_NAME_MAX, &o, &e) == RP_OK && c != NULL);
    rp_cache_free(c);
    CHECK(rp_cache_new(&c, cl, "a{b", 3, &o, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache name must not contain '{', '}' or NUL");
    CHECK(rp_cache_new(&c, cl, "a}b", 3, &o, &e) == RP_EINVAL);
    CHECK(rp_cache_new(&c, cl, "a\0b", 3, &o, &e) == RP_EINVAL);
    CHECK(rp_cache_new(&c, cl, "a:b c", 5, &o, &e) == RP_OK);
    CHECK(strcmp(rp_cache_channel(c, NULL), "t:cache:a:b c:inv") == 0);
    {
        size_t len = 0;
        CHECK(rp_cache_name(c, &len) && len == 5 && rp_cache_client(c) == cl);
        CHECK(rp_cache_options_of(c)->ttl_ms == 1000);
    }
    rp_cache_free(c);
    rp_cache_free(NULL);
    CHECK(strcmp(rp_cache_stampede_names[RP_CACHE_SWR], "swr") == 0 &&
          rp_cache_stampede_names[4] == NULL);
    /* swr's stale 0 means ttl inside; the options read back as given */
    o.stampede = RP_CACHE_SWR;
    CHECK(rp_cache_new(&c, cl, "c", 1, &o, &e) == RP_OK);
    CHECK(rp_cache_options_of(c)->stale_ms == 0);
    rp_cache_free(c);
    rp_client_free(cl);
}

static void test_argument_bounds(void)
{
    rp_client *cl = unit_client(NULL);
    rp_cache *c = mk(cl, RP_CACHE_LOCK, NULL), *c0 = mk(cl, RP_CACHE_LOCK, neg0);
    static char big[RP_CACHE_KEY_MAX + 1];
    const void *items[RP_CACHE_TAGS_MAX + 1];
    size_t lens[RP_CACHE_TAGS_MAX + 1], i;
    char names[RP_CACHE_TAGS_MAX + 1][4];
    rp_cache_tags tags;
    rp_op *op = (rp_op *)&big; /* set to NULL by every refusal */
    rp_error e;
    for (i = 0; i <= RP_CACHE_TAGS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "t%zu", i);
        items[i] = names[i];
        lens[i] = strlen(names[i]);
    }
    tags.items = items;
    tags.lens = lens;

    /* keys */
    CHECK(rp_cache_get_op(&op, c, NULL, 1, NULL, &e) == RP_EINVAL && op == NULL);
    CHECK_MSG(e, "key must be 1..65536 bytes (got 0)");
    CHECK(rp_cache_get_op(&op, c, "k", 0, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "key must be 1..65536 bytes (got 0)");
    CHECK(rp_cache_get_op(&op, c, big, RP_CACHE_KEY_MAX + 1, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "key must be 1..65536 bytes (got 65537)");
    CHECK(rp_cache_get_op(&op, c, big, RP_CACHE_KEY_MAX, NULL, &e) == RP_OK);
    rp_op_free(op);
    CHECK(rp_cache_load_op(&op, c, "", 0, NULL, 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "key must be 1..65536 bytes (got 0)");
    CHECK(rp_cache_set_op(&op, c, "", 0, "v", 1, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_write_op(&op, c, "", 0, "v", 1, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_delete_op(&op, c, "", 0, &e) == RP_EINVAL);
    CHECK_MSG(e, "key must be 1..65536 bytes (got 0)");
    /* the handle, out */
    CHECK(rp_cache_get_op(NULL, c, "k", 1, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "out must not be NULL");
    CHECK(rp_cache_get_op(&op, NULL, "k", 1, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache must not be NULL");
    CHECK(rp_cache_set_op(&op, NULL, "k", 1, NULL, 0, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_invalidate_tags_op(&op, NULL, NULL, &e) == RP_EINVAL);
    /* tags */
    tags.count = RP_CACHE_TAGS_MAX + 1;
    CHECK(rp_cache_get_op(&op, c, "k", 1, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags must have at most 16 items (got 17)");
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, &e) == RP_EINVAL);
    tags.count = RP_CACHE_TAGS_MAX;
    CHECK(rp_cache_load_op(&op, c, "k", 1, &tags, 0, &e) == RP_OK);
    rp_op_free(op);
    tags.count = 0;
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags must have 1..16 items (got 0)");
    CHECK(rp_cache_invalidate_tags_op(&op, c, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_get_op(&op, c, "k", 1, &tags, &e) == RP_OK); /* none: fine */
    rp_op_free(op);
    tags.count = 3;
    lens[1] = 0;
    CHECK(rp_cache_set_op(&op, c, "k", 1, "v", 1, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags[1] must be 1..65536 bytes (got 0)");
    lens[1] = RP_CACHE_KEY_MAX + 1;
    items[1] = big;
    CHECK(rp_cache_write_op(&op, c, "k", 1, "v", 1, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags[1] must be 1..65536 bytes (got 65537)");
    items[1] = NULL;
    lens[1] = 1;
    CHECK(rp_cache_get_op(&op, c, "k", 1, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags[1] must be 1..65536 bytes (got 0)");
    items[1] = names[0];
    lens[1] = lens[0];
    CHECK(rp_cache_invalidate_tags_op(&op, c, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags[1] repeats tags[0]");
    items[1] = names[1];
    lens[1] = strlen(names[1]);
    tags.items = NULL;
    CHECK(rp_cache_get_op(&op, c, "k", 1, &tags, &e) == RP_EINVAL);
    CHECK_MSG(e, "tags: no items for its count");
    tags.items = items;
    /* random */
    op = (rp_op *)&big;
    CHECK(rp_cache_load_op(&op, c, "k", 1, NULL, -0.5, &e) == RP_EINVAL);
    CHECK(op == NULL); /* *out NULL on every refusal, as the other ops */
    CHECK_MSG(e, "random must be in (0, 1], or 0 for a draw of the core's (got -0.5)");
    CHECK(rp_cache_load_op(&op, c, "k", 1, NULL, 1.0000001, &e) == RP_EINVAL);
    CHECK(rp_cache_load_op(&op, c, "k", 1, NULL, NAN, &e) == RP_EINVAL);
    CHECK(rp_cache_load_op(&op, c, "k", 1, NULL, 1.0, &e) == RP_OK);
    rp_op_free(op);
    /* values */
    op = (rp_op *)&big;
    CHECK(rp_cache_set_op(&op, c, "k", 1, big, (size_t)RP_CACHE_VALUE_MAX + 1, NULL, &e) ==
          RP_EINVAL);
    CHECK(op == NULL);
    CHECK_MSG(e, "value must be at most 536870912 bytes (got 536870913)");
    CHECK(rp_cache_write_op(&op, c, "k", 1, big, (size_t)RP_CACHE_VALUE_MAX + 1, NULL, &e) ==
          RP_EINVAL);
    CHECK(rp_cache_set_op(&op, c0, "k", 1, NULL, 0, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "value is required: this cache keeps no negative entries (negative_ttl 0)");
    CHECK(rp_cache_write_op(&op, c0, "k", 1, NULL, 0, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_set_op(&op, c, "k", 1, NULL, 0, NULL, &e) == RP_OK);
    rp_op_free(op);
    /* results: only of a DONE op */
    CHECK(rp_cache_result_of(NULL, NULL) == RP_ESTATE);
    /* near_apply */
    CHECK(rp_cache_near_apply(NULL, "subscribe", 9, NULL, 0, NULL, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache and kind must not be NULL");
    CHECK(rp_cache_near_apply(c, NULL, 0, NULL, 0, NULL, NULL, &e) == RP_EINVAL);
    CHECK(rp_cache_near_apply(c, "subscribe", 9, NULL, 0, NULL, NULL, &e) == RP_OK);
    rp_cache_free(c);
    rp_cache_free(c0);
    rp_client_free(cl);
}

/* The descriptors: the cross-argument bounds in the user's words and units. */
static const char *user_name(void *ud, const rp_op_desc *d, size_t i)
{
    (void)ud;
    return d->args[i].name;
}

static void test_described_bounds(void)
{
    rp_client *cl = unit_client(NULL);
    const rp_op_desc *d = rp_desc_find("cache.new", 9), *g = rp_desc_find("cache.get_or_load", 17);
    rp_naming seconds = { user_name, NULL, 1, 0 };
    rp_value a[RP_DESC_ARGS_MAX];
    void *c = NULL;
    rp_op *op = NULL;
    rp_error e;
    CHECK(d != NULL && g != NULL);
    if (!d || !g)
        return;
    memset(a, 0, sizeof a);
    a[0] = rp_value_handle(RP_KIND_CLIENT, cl);
    a[1] = rp_value_bytes("c", 1);
    a[2] = rp_value_int(RP_TYPE_MS, 1000);
    a[rp_desc_arg_index(d, "jitter")] = rp_value_int(RP_TYPE_MS, 1500);
    CHECK(rp_desc_make(&c, d, a, &seconds, &e) == RP_EINVAL);
    CHECK_MSG(e, "jitter must be <= ttl (got 1.5 seconds > 1 seconds)");
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "jitter must be <= ttl (got 1500 ms > 1000 ms)");
    a[rp_desc_arg_index(d, "jitter")] = rp_value_int(RP_TYPE_MS, 0);
    a[rp_desc_arg_index(d, "lock_ttl")] = rp_value_int(RP_TYPE_MS, 2000);
    a[rp_desc_arg_index(d, "load_timeout")] = rp_value_int(RP_TYPE_MS, 1000);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "lock_ttl must be <= load_timeout (got 2000 ms > 1000 ms): a load the lock "
                 "waits for must be cacheable");
    a[rp_desc_arg_index(d, "lock_ttl")] = rp_value_int(RP_TYPE_MS, 500);
    a[rp_desc_arg_index(d, "beta")] = rp_value_float(0);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "beta must be a number > 0 and <= 1e6 (got 0)");
    a[rp_desc_arg_index(d, "beta")] = rp_value_float(NAN);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    a[rp_desc_arg_index(d, "beta")] = rp_value_float(2.0);
    a[rp_desc_arg_index(d, "stampede")] = rp_value_bytes("bogus", 5);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "stampede") != NULL);
    a[rp_desc_arg_index(d, "stampede")] = rp_value_bytes("xfetch", 6);
    a[rp_desc_arg_index(d, "name")] = rp_value_bytes("a{b", 3);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_EINVAL);
    CHECK_MSG(e, "cache name must not contain '{', '}' or NUL");
    a[rp_desc_arg_index(d, "name")] = rp_value_bytes("c", 1);
    CHECK(rp_desc_make(&c, d, a, NULL, &e) == RP_OK && c != NULL);
    if (c) {
        CHECK(rp_cache_options_of(c)->stampede == RP_CACHE_XFETCH &&
              rp_cache_options_of(c)->beta == 2.0 && rp_cache_options_of(c)->lock_ttl_ms == 500);
        memset(a, 0, sizeof a);
        a[0] = rp_value_handle(RP_KIND_CACHE, c);
        a[1] = rp_value_bytes("k", 1);
        a[2].type = RP_TYPE_CALLBACK;
        a[4] = rp_value_float(1.5);
        CHECK(rp_desc_begin(&op, g, a, NULL, &e) == RP_EINVAL);
        CHECK_MSG(e, "random must be in (0, 1] (got 1.5)");
        a[4] = rp_value_float(0);
        CHECK(rp_desc_begin(&op, g, a, NULL, &e) == RP_EINVAL);
        a[4] = rp_value_float(0.5);
        CHECK(rp_desc_begin(&op, g, a, NULL, &e) == RP_OK);
        rp_op_free(op);
        rp_handle_free(RP_KIND_CACHE, c);
    }
    rp_client_free(cl);
}

int main(void)
{
    test_get_hit_miss_negative();
    test_lock_busy_polls_then_hit();
    test_lock_taken_fill();
    test_loader_none();
    test_loader_fails_unlocks();
    test_cancel();
    test_lock_refused_loads_unlocked();
    test_poll_takes_expired_lock();
    test_loader_error_survives_unlock_failure();
    test_swr_tags_stale_locked();
    test_swr();
    test_xfetch_given_random();
    test_tags_mismatch();
    test_tags_stale_waiter_sees_fill();
    test_tags_unknown_to_reader();
    test_cluster_spread();
    test_malformed();
    test_oom_fill();
    test_oom_fill_releases_lock();
    test_set();
    test_write_through();
    test_delete();
    test_invalidate_tags();
    test_near();
    test_near_lru_and_expiry();
    test_near_epoch();
    test_near_own_writes();
    test_near_negative_ttl();
    test_xfetch_rate();
    test_xfetch_clock();
    test_option_bounds();
    test_argument_bounds();
    test_described_bounds();
    printf("unit_cache: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
