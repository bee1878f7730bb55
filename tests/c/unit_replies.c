/* Strict replies (issue 10, finding 2): every op, fed canned replies, accepts exactly the
 * replies its command or script documents and nothing else. A reply of any other shape or
 * range is RP_EPROTOCOL naming what was expected and what came (never a success); an error
 * reply is RP_EREPLY with Redis' message. Also: plain acquire's SET NX PX GET contract and
 * its pre-7 fallback (finding 6), and a node's own failure kept as the op's cause
 * (finding 3). No server. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#include "internal.h"
#include "lock_internal.h"
#include "script.h"

#define T0 1000u

/* RESP from a compact spec: space-separated tokens, "*N" an array header, "$x" the bulk
 * string x, "$-" nil, "+x" a status, "-X..." an error (an upper-case letter after the
 * dash; it takes the rest of the spec), anything else an integer. */
static const char *resp(const char *spec)
{
    static char out[2048];
    char tok[256];
    size_t o = 0;
    const char *p = spec;
    out[0] = '\0';
    while (*p) {
        size_t n = 0;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (*p == '-' && p[1] >= 'A' && p[1] <= 'Z') { /* an error takes the rest */
            o += (size_t)snprintf(out + o, sizeof out - o, "%s\r\n", p);
            break;
        }
        while (p[n] && p[n] != ' ' && n + 1 < sizeof tok) {
            tok[n] = p[n];
            n++;
        }
        tok[n] = '\0';
        p += n;
        if (tok[0] == '*' || tok[0] == '+')
            o += (size_t)snprintf(out + o, sizeof out - o, "%s\r\n", tok);
        else if (strcmp(tok, "$-") == 0)
            o += (size_t)snprintf(out + o, sizeof out - o, "$-1\r\n");
        else if (tok[0] == '$')
            o += (size_t)snprintf(out + o, sizeof out - o, "$%zu\r\n%s\r\n", n - 1, tok + 1);
        else
            o += (size_t)snprintf(out + o, sizeof out - o, ":%s\r\n", tok);
    }
    return out;
}

static int feed(rp_op *op, size_t node, const char *bytes)
{
    return rp_op_feed(op, node, bytes, strlen(bytes));
}

/* The op ended with code (RP_OK: DONE) and, failing, a message containing every says[i]. */
static void expect_end(const char *label, rp_op *op, rp_step st, int code, const char *says1,
                       const char *says2)
{
    const char *msg = rp_op_error(op)->message;
    checks++;
    if (code == RP_OK ? st != RP_STEP_DONE
                      : (st != RP_STEP_ERROR || rp_op_error(op)->code != code)) {
        failures++;
        fprintf(stderr, "%s: wanted %s, got step %d status %s: \"%s\"\n", label,
                rp_status_name(code), (int)st, rp_status_name(rp_op_error(op)->code), msg);
        return;
    }
    if (code != RP_OK && ((says1 && !strstr(msg, says1)) || (says2 && !strstr(msg, says2)))) {
        failures++;
        fprintf(stderr, "%s: message \"%s\" lacks \"%s\" / \"%s\"\n", label, msg,
                says1 ? says1 : "", says2 ? says2 : "");
    }
}

/* Starts op (one IO step), feeds bytes to node 0, steps, and checks the end. */
static rp_op *one_round(const char *label, rp_op *op, const char *bytes, int code,
                        const char *says1, const char *says2)
{
    rp_step st = rp_op_step(op, T0);
    if (st != RP_STEP_IO) {
        failures++;
        fprintf(stderr, "%s: did not start a round (step %d: %s)\n", label, (int)st,
                rp_op_error(op)->message);
        return op;
    }
    feed(op, 0, bytes);
    expect_end(label, op, rp_op_step(op, T0 + 1), code, says1, says2);
    return op;
}

/* The op's request for node runs script sc (EVALSHA of either variant's SHA-1: a pre-7
 * endpoint is sent the one without the shebang line). */
static int runs(rp_op *op, size_t node, const rp_script *sc)
{
    return unit_request_has(op, node, sc->sha1) || unit_request_has(op, node, sc->legacy_sha1);
}

static rp_lock *lock_of(rp_client *c, int fenced)
{
    rp_lock_options o = RP_LOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    o.ttl_ms = 1000;
    o.fenced = fenced;
    if (rp_lock_new(&l, c, "k", 1, &o, NULL) != RP_OK)
        abort();
    return l;
}

/* A lock this handle holds (a fenced acquire answered {1, 5}). */
static rp_lock *held(rp_client *c)
{
    rp_lock *l = lock_of(c, 1);
    rp_op *op;
    rp_lock_acquisition a;
    if (rp_lock_acquire_op(&op, l, NULL, NULL) != RP_OK || rp_op_step(op, T0) != RP_STEP_IO)
        abort();
    feed(op, 0, resp("*2 1 5"));
    if (rp_op_step(op, T0 + 1) != RP_STEP_DONE || rp_lock_acquire_result(op, &a) != RP_OK ||
        !a.acquired)
        abort();
    rp_op_free(op);
    return l;
}

/* --- locks ----------------------------------------------------------------------------- */

static void test_plain_acquire(void)
{
    static const struct { const char *spec; int code; const char *s1, *s2; int acquired; } cases[] = {
        { "$-", RP_OK, NULL, NULL, 1 },              /* SET NX GET: nil = it was free, now ours */
        { "$holder", RP_OK, NULL, NULL, 0 },         /* the holder's token: busy */
        { "$", RP_OK, NULL, NULL, 0 },               /* an empty token is a token */
        { "+OK", RP_EPROTOCOL, "lock.acquire: expected", "got the status \"OK\"", 0 },
        { "+QUEUED", RP_EPROTOCOL, "expected nil", "got the status \"QUEUED\"", 0 },
        { "+O?", RP_EPROTOCOL, "expected", "\"O?\"", 0 },
        { "1", RP_EPROTOCOL, "expected", "got the integer 1", 0 },
        { "*0", RP_EPROTOCOL, "expected", "got an array of 0 elements", 0 },
        { "-WRONGTYPE Operation against a key holding the wrong kind of value", RP_EREPLY,
          "lock.acquire: WRONGTYPE", NULL, 0 },
        { "-OOM command not allowed", RP_EREPLY, "OOM", NULL, 0 },
        /* Redis closes the connection after it: the node fails (no driver pools it); said
         * before AUTH, it is the missing password (RP_EAUTH), as NOAUTH is */
        { "-ERR Protocol error: unauthenticated multibulk length", RP_EAUTH,
          "ERR Protocol error: unauthenticated multibulk length", NULL, 0 },
        { "-ERR Protocol error: invalid multibulk length", RP_EREPLY,
          "ERR Protocol error: invalid multibulk length", NULL, 0 },
        { "-NOAUTH Authentication required.", RP_EAUTH, "NOAUTH", NULL, 0 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_lock *l = lock_of(c, 0);
        rp_op *op;
        char label[64];
        rp_lock_acquisition a;
        snprintf(label, sizeof label, "plain acquire %s", cases[i].spec);
        CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
        CHECK(rp_op_step(op, T0) == RP_STEP_IO);
        /* one command: SET key token NX PX ttl GET */
        CHECK(unit_request_has(op, 0, "$3\r\nSET\r\n") && unit_request_has(op, 0, "$2\r\nNX\r\n") &&
              unit_request_has(op, 0, "$4\r\n1000\r\n$3\r\nGET\r\n"));
        CHECK(feed(op, 0, resp(cases[i].spec)) ==
              (strstr(cases[i].spec, "Protocol error") ? cases[i].code : RP_OK));
        expect_end(label, op, rp_op_step(op, T0 + 1), cases[i].code, cases[i].s1, cases[i].s2);
        if (cases[i].code == RP_OK) {
            CHECK(rp_lock_acquire_result(op, &a) == RP_OK && a.acquired == cases[i].acquired);
            CHECK((rp_lock_token(l, NULL) != NULL) == cases[i].acquired);
        } else {
            CHECK(rp_lock_token(l, NULL) == NULL);
        }
        rp_op_free(op);
        rp_lock_free(l);
        rp_client_free(c);
    }
}

/* A waiting acquire facing WRONGTYPE fails at once: it does not wait out its timeout. */
static void test_wrongtype_does_not_wait(void)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock_of(c, 0);
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op;
    o.wait_ms = 60000;
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK);
    one_round("waiting acquire, WRONGTYPE", op,
              "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
              RP_EREPLY, "WRONGTYPE", NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* A Redis older than 7 refuses SET NX GET ("ERR syntax error"): the attempt is retried with
 * the lock_acquire script at once, and later attempts to that endpoint use it directly. */
static void test_plain_acquire_pre7(void)
{
    rp_client *c = unit_client(NULL);
    rp_lock *l = lock_of(c, 0);
    const rp_script *sc = rp_script__find(rp_client__scripts(c), "lock_acquire");
    rp_lock_acquisition a;
    rp_op *op;
    CHECK(sc != NULL);
    if (!sc)
        return;
    CHECK(!rp_script__pre7(rp_client__scripts(c), 0));
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && unit_request_has(op, 0, "GET"));
    feed(op, 0, "-ERR syntax error\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO); /* the same attempt, as the script */
    CHECK(rp_script__pre7(rp_client__scripts(c), 0));
    CHECK(runs(op, 0, sc) && !unit_request_has(op, 0, "$3\r\nGET\r\n"));
    feed(op, 0, resp("$-"));
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &a) == RP_OK && a.acquired && a.attempts == 1);
    rp_op_free(op);
    rp_lock__forget_token(l);
    /* the next acquire goes straight to the script; its busy answer is the holder's token */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0 + 3) == RP_STEP_IO && runs(op, 0, sc));
    feed(op, 0, resp("$other"));
    CHECK(rp_op_step(op, T0 + 4) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &a) == RP_OK && !a.acquired);
    rp_op_free(op);
    /* the script's WRONGTYPE error is an error */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    one_round("pre7 script WRONGTYPE", op, "-WRONGTYPE Operation against a key holding the "
              "wrong kind of value\r\n", RP_EREPLY, "WRONGTYPE", NULL);
    rp_op_free(op);
    /* a syntax error from the script path is no reason to retry again */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    one_round("pre7 script syntax error", op, "-ERR syntax error\r\n", RP_EREPLY,
              "syntax error", NULL);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

static void test_fenced_acquire(void)
{
    static const struct { const char *spec; int code; const char *s1, *s2; int acquired; long long fence; } cases[] = {
        { "*2 1 1", RP_OK, NULL, NULL, 1, 1 },
        { "*2 1 9007199254740993", RP_OK, NULL, NULL, 1, 9007199254740993LL },
        { "*2 0 500", RP_OK, NULL, NULL, 0, 0 },  /* busy, the holder's PTTL */
        { "*2 0 0", RP_OK, NULL, NULL, 0, 0 },    /* PTTL rounds down to 0 */
        { "*2 0 -1", RP_OK, NULL, NULL, 0, 0 },   /* a holder's key without expiry */
        { "*2 1 0", RP_EPROTOCOL, "lock.acquire: expected the fence", "got the integer 0", 0, 0 },
        { "*2 1 -42", RP_EPROTOCOL, "expected the fence (an integer >= 1)", "got the integer -42", 0, 0 },
        { "*2 0 -2", RP_EPROTOCOL, "holder's ttl", "got the integer -2", 0, 0 },
        { "*2 2 5", RP_EPROTOCOL, "0 or 1", "got the integer 2", 0, 0 },
        { "*2 -1 5", RP_EPROTOCOL, "0 or 1", "got the integer -1", 0, 0 },
        { "*3 1 5 5", RP_EPROTOCOL, "an array of 2 integers", "got an array of 3 elements", 0, 0 },
        { "*1 1", RP_EPROTOCOL, "an array of 2 integers", "got an array of 1 element", 0, 0 },
        { "*2 $1 5", RP_EPROTOCOL, "element 1 is the string \"1\"", NULL, 0, 0 },
        { "*2 1 $-", RP_EPROTOCOL, "element 2 is nil", NULL, 0, 0 },
        { "+OK", RP_EPROTOCOL, "expected", "got the status \"OK\"", 0, 0 },
        { "$-", RP_EPROTOCOL, "expected", "got nil", 0, 0 },
        { "-WRONGTYPE Operation against a key holding the wrong kind of value", RP_EREPLY,
          "WRONGTYPE", NULL, 0, 0 },
        { "-ERR value is not an integer or out of range", RP_EREPLY, "not an integer", NULL, 0, 0 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_lock *l = lock_of(c, 1);
        rp_op *op;
        char label[64];
        rp_lock_acquisition a;
        snprintf(label, sizeof label, "fenced acquire %s", cases[i].spec);
        CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
        one_round(label, op, resp(cases[i].spec), cases[i].code, cases[i].s1, cases[i].s2);
        if (cases[i].code == RP_OK) {
            CHECK(rp_lock_acquire_result(op, &a) == RP_OK && a.acquired == cases[i].acquired &&
                  a.fence == cases[i].fence);
        } else {
            CHECK(rp_lock_token(l, NULL) == NULL && rp_lock_fence(l) == 0);
        }
        rp_op_free(op);
        rp_lock_free(l);
        rp_client_free(c);
    }
}

typedef int (*lock_op_fn)(rp_op **out, rp_lock *l);
static int release_op(rp_op **out, rp_lock *l) { return rp_lock_release_op(out, l, NULL); }
static int extend_op(rp_op **out, rp_lock *l) { return rp_lock_extend_op(out, l, 500, 0, NULL); }
static int locked_op(rp_op **out, rp_lock *l) { return rp_lock_locked_op(out, l, NULL); }
static int owned_op(rp_op **out, rp_lock *l) { return rp_lock_owned_op(out, l, NULL); }
static int remaining_op(rp_op **out, rp_lock *l) { return rp_lock_remaining_op(out, l, NULL); }

static void test_lock_ops(void)
{
    static const struct { const char *name; lock_op_fn fn; const char *spec; int code; const char *s1, *s2; } cases[] = {
        { "release", release_op, "1", RP_OK, NULL, NULL },
        { "release", release_op, "0", RP_ENOTOWNED, "no longer owned", NULL },
        { "release", release_op, "2", RP_EPROTOCOL, "lock.release: expected the integer 0 or 1", "got the integer 2" },
        { "release", release_op, "-1", RP_EPROTOCOL, "0 or 1", "got the integer -1" },
        { "release", release_op, "+OK", RP_EPROTOCOL, "expected", "got the status \"OK\"" },
        { "release", release_op, "$1", RP_EPROTOCOL, "expected", "got the string \"1\"" },
        { "release", release_op, "-ERR boom", RP_EREPLY, "lock.release: ERR boom", NULL },
        { "extend", extend_op, "1500", RP_OK, NULL, NULL },
        { "extend", extend_op, "0", RP_ENOTOWNED, "no longer owned", NULL },
        { "extend", extend_op, "-5", RP_EPROTOCOL, "lock.extend: expected", "got the integer -5" },
        { "extend", extend_op, "+QUEUED", RP_EPROTOCOL, "expected", "\"QUEUED\"" },
        { "extend", extend_op, "*1 1", RP_EPROTOCOL, "expected", "an array of 1 element" },
        { "locked", locked_op, "1", RP_OK, NULL, NULL },
        { "locked", locked_op, "0", RP_OK, NULL, NULL },
        { "locked", locked_op, "3", RP_EPROTOCOL, "lock.locked: expected the integer 0 or 1", "got the integer 3" },
        { "locked", locked_op, "$1", RP_EPROTOCOL, "expected", "got the string \"1\"" },
        { "owned", owned_op, "$-", RP_OK, NULL, NULL },
        { "owned", owned_op, "$someone", RP_OK, NULL, NULL },
        { "owned", owned_op, "1", RP_EPROTOCOL, "lock.owned: expected", "got the integer 1" },
        { "owned", owned_op, "+tok", RP_EPROTOCOL, "expected", "got the status \"tok\"" },
        { "remaining", remaining_op, "700", RP_OK, NULL, NULL },
        { "remaining", remaining_op, "-2", RP_OK, NULL, NULL },
        { "remaining", remaining_op, "-1", RP_EPROTOCOL, "lock.remaining: expected", "got the integer -1" },
        { "remaining", remaining_op, "0", RP_EPROTOCOL, "expected", "got the integer 0" },
        { "remaining", remaining_op, "$700", RP_EPROTOCOL, "expected", "got the string \"700\"" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_lock *l = held(c);
        rp_op *op;
        char label[64];
        snprintf(label, sizeof label, "%s %s", cases[i].name, cases[i].spec);
        CHECK(cases[i].fn(&op, l) == RP_OK);
        one_round(label, op, resp(cases[i].spec), cases[i].code, cases[i].s1, cases[i].s2);
        rp_op_free(op);
        rp_lock_free(l);
        rp_client_free(c);
    }
}

/* --- Redlock: a malformed reply is a failed node (with its description), never a yes --- */

#define RL_N 3
static const char *const RL_URLS = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3";

static rp_lock *redlock(rp_client *c)
{
    rp_redlock_options o = RP_REDLOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    o.ttl_ms = 10000;
    o.node_timeout_ms = 50;
    if (rp_redlock_new(&l, c, "r", 1, &o, NULL) != RP_OK)
        abort();
    return l;
}

/* Acquire once with the three replies; returns the final step. */
static rp_step rl_acquire(rp_op *op, const char *a, const char *b, const char *c3)
{
    const char *r[RL_N] = { a, b, c3 };
    size_t i;
    rp_step st;
    if (rp_op_step(op, T0) != RP_STEP_IO)
        return RP_STEP_ERROR;
    for (i = 0; i < RL_N; i++)
        if (rp_op_pending(op, i))
            feed(op, i, resp(r[i]));
    st = rp_op_step(op, T0 + 1);
    /* a clean-up round (deleting what a yes node holds): every node answers 1 */
    while (st == RP_STEP_IO) {
        for (i = 0; i < RL_N; i++)
            if (rp_op_pending(op, i))
                feed(op, i, ":1\r\n");
        st = rp_op_step(op, T0 + 2);
    }
    return st;
}

static void test_redlock_acquire(void)
{
    static const struct { const char *a, *b, *c; int code; const char *s1, *s2; int acquired; } cases[] = {
        { "$-", "$-", "$-", RP_OK, NULL, NULL, 1 },
        { "$-", "$-", "+QUEUED", RP_OK, NULL, NULL, 1 },  /* a quorum of yes; one failed */
        { "$-", "$x", "$x", RP_OK, NULL, NULL, 0 },       /* busy */
        { "+OK", "+OK", "+OK", RP_EPROTOCOL, "expected nil (acquired) or a string (busy)",
          "got the status \"OK\"", 0 },
        { "+QUEUED", "+QUEUED", "$-", RP_EPROTOCOL, "node 0", "got the status \"QUEUED\"", 0 },
        { "1", "*0", "+O?", RP_EPROTOCOL, "node 0", "got the integer 1", 0 },
        { "-WRONGTYPE Operation against a key holding the wrong kind of value",
          "-WRONGTYPE Operation against a key holding the wrong kind of value", "$-",
          RP_EREPLY, "WRONGTYPE", NULL, 0 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(RL_URLS);
        rp_lock *l = redlock(c);
        rp_op *op;
        rp_lock_acquisition a;
        char label[96];
        snprintf(label, sizeof label, "redlock acquire %s / %s / %s", cases[i].a, cases[i].b, cases[i].c);
        CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
        expect_end(label, op, rl_acquire(op, cases[i].a, cases[i].b, cases[i].c), cases[i].code,
                   cases[i].s1, cases[i].s2);
        if (cases[i].code == RP_OK)
            CHECK(rp_lock_acquire_result(op, &a) == RP_OK && a.acquired == cases[i].acquired);
        else
            CHECK(rp_lock_token(l, NULL) == NULL);
        rp_op_free(op);
        rp_lock_free(l);
        rp_client_free(c);
    }
}

/* Redlock's per-node SET is the plain lock's: SET NX PX GET. */
static void test_redlock_sends_set_get(void)
{
    rp_client *c = unit_client(RL_URLS);
    rp_lock *l = redlock(c);
    rp_op *op;
    size_t i;
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    for (i = 0; i < RL_N; i++)
        CHECK(unit_request_has(op, i, "$2\r\nNX\r\n") && unit_request_has(op, i, "$3\r\nGET\r\n"));
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* A node that refuses SET NX GET (a Redis older than 7) is asked again with the script in
 * the same acquire; the quorum is reached. */
static void test_redlock_pre7(void)
{
    rp_client *c = unit_client(RL_URLS);
    rp_lock *l = redlock(c);
    const rp_script *sc = rp_script__find(rp_client__scripts(c), "lock_acquire");
    rp_lock_acquisition a;
    rp_op *op;
    rp_step st;
    size_t i;
    unsigned scripted = 0;
    CHECK(sc != NULL);
    if (!sc)
        return;
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, "-ERR syntax error\r\n");
    feed(op, 1, "-ERR syntax error\r\n");
    feed(op, 2, "$-1\r\n");
    st = rp_op_step(op, T0 + 1);
    /* a clean-up of node 2's key, then the same attempt again: the pre-7 nodes get the
     * script, node 2 SET NX GET again */
    for (i = 0; st == RP_STEP_IO && i < 4; i++) {
        size_t n;
        for (n = 0; n < RL_N; n++) {
            if (!rp_op_pending(op, n))
                continue;
            if (runs(op, n, sc)) {
                CHECK(n < 2);
                scripted |= 1u << n;
                feed(op, n, "$-1\r\n");
            } else if (unit_request_has(op, n, "$3\r\nGET\r\n")) {
                feed(op, n, "$-1\r\n");
            } else {
                feed(op, n, ":1\r\n"); /* the clean-up */
            }
        }
        st = rp_op_step(op, T0 + 2 + i);
    }
    CHECK(scripted == 3u);
    CHECK(st == RP_STEP_DONE);
    CHECK(rp_script__pre7(rp_client__scripts(c), 0) && rp_script__pre7(rp_client__scripts(c), 1) &&
          !rp_script__pre7(rp_client__scripts(c), 2));
    CHECK(rp_lock_acquire_result(op, &a) == RP_OK && a.acquired);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* Queries over 3 nodes with one malformed answer: the other two decide; two malformed:
 * neither quorum, the failure names what came. */
static void test_redlock_queries(void)
{
    rp_client *c = unit_client(RL_URLS);
    rp_lock *l = redlock(c);
    rp_op *op;
    int v = -1;
    rp_lock_remaining rem;
    /* hold it: three yes */
    CHECK(rp_lock_acquire_op(&op, l, NULL, NULL) == RP_OK);
    CHECK(rl_acquire(op, "$-", "$-", "$-") == RP_STEP_DONE && rp_lock_token(l, NULL));
    rp_op_free(op);
    if (!rp_lock_token(l, NULL)) { /* failed above: the queries need a held lock */
        rp_lock_free(l);
        rp_client_free(c);
        return;
    }

    CHECK(rp_lock_locked_op(&op, l, NULL) == RP_OK);
    CHECK(rl_acquire(op, "1", "1", "7") == RP_STEP_DONE && rp_lock_query_result(op, &v) == RP_OK && v == 1);
    rp_op_free(op);
    CHECK(rp_lock_locked_op(&op, l, NULL) == RP_OK);
    expect_end("redlock locked 1 / 7 / $1", op, rl_acquire(op, "1", "7", "$1"), RP_EPROTOCOL,
               "lock.locked: ", "got the integer 7");
    rp_op_free(op);
    CHECK(rp_lock_owned_op(&op, l, NULL) == RP_OK);
    expect_end("redlock owned", op, rl_acquire(op, "1", "+OK", "$-"), RP_EPROTOCOL,
               "expected", "got the integer 1");
    rp_op_free(op);
    CHECK(rp_lock_remaining_op(&op, l, NULL) == RP_OK);
    CHECK(rl_acquire(op, "900", "0", "-1") == RP_STEP_ERROR);
    CHECK(strstr(rp_op_error(op)->message, "got the integer 0") != NULL);
    rp_op_free(op);
    CHECK(rp_lock_remaining_op(&op, l, NULL) == RP_OK);
    CHECK(rl_acquire(op, "900", "-1", "800") == RP_STEP_DONE && rp_lock_remaining_result(op, &rem) == RP_OK &&
          rem.owned && rem.remaining_ms == 800);
    rp_op_free(op);
    CHECK(rp_lock_extend_op(&op, l, 1000, 1, NULL) == RP_OK);
    expect_end("redlock extend", op, rl_acquire(op, "+OK", "$5", "1000"), RP_EPROTOCOL,
               "lock.extend: ", "got the status \"OK\"");
    rp_op_free(op);
    CHECK(rp_lock_token(l, NULL) != NULL); /* unknowable: still held */
    CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK);
    expect_end("redlock release", op, rl_acquire(op, "1", "5", "+OK"), RP_EPROTOCOL,
               "lock.release: ", "got the integer 5");
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

/* --- rate limits ----------------------------------------------------------------------- */

static rp_ratelimit *limiter(rp_client *c, const char *name, int64_t limit, rp_ratelimit_on_error p)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl = NULL;
    o.algorithm = RP_RATELIMIT_FIXED_WINDOW;
    o.limit = limit;
    o.window_ms = 1000;
    o.on_error = p;
    if (rp_ratelimit_new(&rl, c, name, strlen(name), &o, NULL) != RP_OK)
        abort();
    return rl;
}

static void test_ratelimit_check(void)
{
    /* {allowed, refused_by, limit, remaining, retry_after, reset_after} */
    static const struct { const char *spec; int code; const char *s1, *s2; } cases[] = {
        { "*6 1 0 5 4 0 1000", RP_OK, NULL, NULL },
        { "*6 1 0 5 0 0 0", RP_OK, NULL, NULL },
        { "*6 0 1 5 0 250 1000", RP_OK, NULL, NULL },
        { "*6 0 1 5 0 0 0", RP_OK, NULL, NULL },
        { "*6 1 0 -5 0 0 1000", RP_EPROTOCOL, "ratelimit.check: expected the limit (an integer >= 1)",
          "got the integer -5" },
        { "*6 1 0 0 0 0 1000", RP_EPROTOCOL, "limit", "got the integer 0" },
        { "*6 1 0 5 999 0 1000", RP_EPROTOCOL, "remaining (an integer in [0, 5])", "got the integer 999" },
        { "*6 1 0 5 -1 0 1000", RP_EPROTOCOL, "remaining", "got the integer -1" },
        { "*6 1 0 5 4 0 -1", RP_EPROTOCOL, "reset_after (an integer >= 0)", "got the integer -1" },
        { "*6 1 0 5 4 7 1000", RP_EPROTOCOL, "retry_after (the integer 0)", "got the integer 7" },
        { "*6 0 1 5 0 -3 1000", RP_EPROTOCOL, "retry_after (an integer >= 0)", "got the integer -3" },
        { "*6 2 0 5 4 0 1000", RP_EPROTOCOL, "allowed (the integer 0 or 1)", "got the integer 2" },
        { "*6 0 2 5 0 1 1000", RP_EPROTOCOL, "refused-by index (the integer 1)", "got the integer 2" },
        { "*6 0 0 5 0 1 1000", RP_EPROTOCOL, "refused-by index", "got the integer 0" },
        { "*6 1 1 5 4 0 1000", RP_EPROTOCOL, "refused-by index (the integer 0)", "got the integer 1" },
        { "*5 1 0 5 4 0", RP_EPROTOCOL, "an array of 6 integers", "got an array of 5 elements" },
        { "*10 1 0 5 4 0 1000 5 4 0 1000", RP_EPROTOCOL, "an array of 6 integers", "got an array of 10" },
        { "*6 1 0 $5 4 0 1000", RP_EPROTOCOL, "element 3 is the string \"5\"", NULL },
        { "*6 1 0 5 4 0 $-", RP_EPROTOCOL, "element 6 is nil", NULL },
        { "+OK", RP_EPROTOCOL, "expected", "got the status \"OK\"" },
        /* one limit: the compact integer (ratelimit.lua; test_ratelimit_compact) */
        { "3", RP_OK, NULL, NULL },
        { "-1", RP_OK, NULL, NULL },
        { "-ERR Error running script: boom", RP_EREPLY, "ratelimit.check: ERR Error running script", NULL },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_ratelimit *rl = limiter(c, "a", 5, RP_RATELIMIT_REPORT);
        rp_op *op;
        char label[96];
        rp_ratelimit_decision d;
        snprintf(label, sizeof label, "check %s", cases[i].spec);
        CHECK(rp_ratelimit_check_op(&op, rl, "s", 1, 1, NULL) == RP_OK);
        one_round(label, op, resp(cases[i].spec), cases[i].code, cases[i].s1, cases[i].s2);
        if (cases[i].code == RP_OK)
            CHECK(rp_ratelimit_check_result(op, &d) == RP_OK && !d.degraded);
        rp_op_free(op);
        rp_ratelimit_free(rl);
        rp_client_free(c);
    }
}

/* The compact reply of one limit decodes to the decision the 6-field reply would say:
 * L = limit + 1 = 6 here, R = window_ms + 2 = 1002; v >= 0 allowed (remaining v % L, reset
 * v / L), v < 0 refused (u = -1 - v, remaining u % L, q = u / L: a fixed window's retry =
 * reset = q, another's retry q % R, reset q / R). */
static void test_ratelimit_compact(void)
{
    static const struct {
        rp_ratelimit_algorithm algo;
        const char *spec;
        int allowed;
        int64_t remaining, retry, reset;
    } cases[] = {
        { RP_RATELIMIT_FIXED_WINDOW, "6009", 1, 3, 0, 1001 },
        { RP_RATELIMIT_FIXED_WINDOW, "0", 1, 0, 0, 0 },
        { RP_RATELIMIT_FIXED_WINDOW, "5", 1, 5, 0, 0 },
        { RP_RATELIMIT_FIXED_WINDOW, "-1", 0, 0, 0, 0 },
        { RP_RATELIMIT_FIXED_WINDOW, "-6007", 0, 0, 1001, 1001 },
        { RP_RATELIMIT_FIXED_WINDOW, "-6012", 0, 5, 1001, 1001 },
        { RP_RATELIMIT_TOKEN_BUCKET, "4805", 1, 5, 0, 800 },
        { RP_RATELIMIT_TOKEN_BUCKET, "-4810802", 0, 1, 200, 800 },
        { RP_RATELIMIT_SLIDING_LOG, "-1", 0, 0, 0, 0 },
        { RP_RATELIMIT_SLIDING_LOG, "-6013", 0, 0, 0, 1 },
        { RP_RATELIMIT_GCRA, "-7", 0, 0, 1, 0 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
        rp_ratelimit *rl = NULL;
        rp_op *op;
        char label[96];
        rp_ratelimit_decision d;
        o.algorithm = cases[i].algo;
        o.limit = 5;
        o.window_ms = 1000;
        CHECK(rp_ratelimit_new(&rl, c, "a", 1, &o, NULL) == RP_OK);
        snprintf(label, sizeof label, "compact %d %s", (int)cases[i].algo, cases[i].spec);
        CHECK(rp_ratelimit_check_op(&op, rl, "s", 1, 1, NULL) == RP_OK);
        one_round(label, op, resp(cases[i].spec), RP_OK, NULL, NULL);
        CHECK(rp_ratelimit_check_result(op, &d) == RP_OK && !d.degraded);
        CHECK(d.allowed == cases[i].allowed && d.limit == 5 && d.remaining == cases[i].remaining &&
              d.retry_after_ms == cases[i].retry && d.reset_after_ms == cases[i].reset &&
              d.refused_by == -1);
        rp_op_free(op);
        rp_ratelimit_free(rl);
        rp_client_free(c);
    }
}

/* With a fail_open / fail_closed policy, a malformed reply is a degraded decision that says
 * what came (not a bare "unexpected reply"). */
static void test_ratelimit_degraded_keeps_cause(void)
{
    static const rp_ratelimit_on_error policies[] = { RP_RATELIMIT_FAIL_OPEN, RP_RATELIMIT_FAIL_CLOSED };
    size_t i;
    for (i = 0; i < 2; i++) {
        rp_client *c = unit_client(NULL);
        rp_ratelimit *rl = limiter(c, "a", 5, policies[i]);
        rp_op *op;
        rp_ratelimit_decision d;
        CHECK(rp_ratelimit_check_op(&op, rl, "s", 1, 1, NULL) == RP_OK);
        one_round("degraded", op, resp("*6 1 0 5 999 0 1000"), RP_OK, NULL, NULL);
        CHECK(rp_ratelimit_check_result(op, &d) == RP_OK && d.degraded &&
              d.error_code == RP_EPROTOCOL && d.allowed == (i == 0));
        CHECK(strstr(d.error_message, "remaining") && strstr(d.error_message, "got the integer 999"));
        rp_op_free(op);
        /* a node failure (a handshake refused) keeps its own status and words */
        CHECK(rp_ratelimit_check_op(&op, rl, "s", 1, 1, NULL) == RP_OK);
        CHECK(rp_op_step(op, T0) == RP_STEP_IO);
        rp_op_fail_node(op, 0, RP_EREPLY, "h:1: AUTH failed: WRONGPASS invalid username-password pair");
        CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
        CHECK(rp_ratelimit_check_result(op, &d) == RP_OK && d.degraded && d.error_code == RP_EREPLY &&
              strstr(d.error_message, "WRONGPASS"));
        rp_op_free(op);
        rp_ratelimit_free(rl);
        rp_client_free(c);
    }
}

/* Finding 3: a check whose handshake failed reports that failure, never "missing reply". */
static void test_ratelimit_node_failure_kept(void)
{
    static const struct { int code; const char *why; } cases[] = {
        { RP_EREPLY, "127.0.0.1:1: AUTH failed: WRONGPASS invalid username-password pair" },
        { RP_ETIMEOUT, "127.0.0.1:1: timed out after 1000 ms in the handshake (AUTH / SELECT)" },
        { RP_EPROTOCOL, "127.0.0.1:1: bad handshake reply: Protocol error, got \"x\"" },
        { RP_ETRANSPORT, "127.0.0.1:1: connection refused" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_ratelimit *rl = limiter(c, "a", 5, RP_RATELIMIT_REPORT);
        const char *subjects[] = { "s", "t" };
        size_t lens[] = { 1, 1 };
        rp_op *op;
        CHECK(rp_ratelimit_check_op(&op, rl, "s", 1, 1, NULL) == RP_OK);
        CHECK(rp_op_step(op, T0) == RP_STEP_IO);
        rp_op_fail_node(op, 0, cases[i].code, cases[i].why);
        expect_end("check, node failed", op, rp_op_step(op, T0 + 1), cases[i].code,
                   cases[i].why, NULL);
        CHECK(!strstr(rp_op_error(op)->message, "missing reply"));
        rp_op_free(op);
        CHECK(rp_ratelimit_batch_op(&op, rl, 2, (const void *const *)subjects, lens, NULL, NULL) == RP_OK);
        CHECK(rp_op_step(op, T0) == RP_STEP_IO);
        rp_op_fail_node(op, 0, cases[i].code, cases[i].why);
        expect_end("batch, node failed", op, rp_op_step(op, T0 + 1), cases[i].code,
                   cases[i].why, NULL);
        rp_op_free(op);
        rp_ratelimit_free(rl);
        rp_client_free(c);
    }
}

static void test_ratelimit_multi_and_batch(void)
{
    rp_client *c = unit_client(NULL);
    rp_ratelimit *a = limiter(c, "a", 5, RP_RATELIMIT_REPORT), *b = limiter(c, "b", 3, RP_RATELIMIT_REPORT);
    rp_ratelimit *both[] = { a, b };
    const char *subjects[] = { "s", "t" };
    size_t lens[] = { 1, 1 };
    rp_ratelimit_decision d;
    rp_op *op;
    CHECK(rp_ratelimit_multi_op(&op, both, 2, "s", 1, 1, NULL) == RP_OK);
    one_round("multi refused by 2", op, resp("*10 0 2 5 4 0 1000 3 0 90 1000"), RP_OK, NULL, NULL);
    CHECK(rp_ratelimit_check_result(op, &d) == RP_OK && !d.allowed && d.refused_by == 1 &&
          d.limit == 3 && d.retry_after_ms == 90);
    rp_op_free(op);
    CHECK(rp_ratelimit_multi_op(&op, both, 2, "s", 1, 1, NULL) == RP_OK);
    one_round("multi refused by 3", op, resp("*10 0 3 5 4 0 1000 3 0 90 1000"), RP_EPROTOCOL,
              "refused-by index (the integer 1 or 2)", "got the integer 3");
    rp_op_free(op);
    CHECK(rp_ratelimit_multi_op(&op, both, 2, "s", 1, 1, NULL) == RP_OK);
    one_round("multi, second limit bad", op, resp("*10 1 0 5 4 0 1000 3 7 0 1000"), RP_EPROTOCOL,
              "remaining of limit 2 (an integer in [0, 3])", "got the integer 7");
    rp_op_free(op);
    CHECK(rp_ratelimit_batch_op(&op, a, 2, (const void *const *)subjects, lens, NULL, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, resp("*6 1 0 5 4 0 1000"));
    feed(op, 0, resp("*6 1 0 5 4 0 -7"));
    expect_end("batch, second bad", op, rp_op_step(op, T0 + 1), RP_EPROTOCOL,
               "ratelimit.batch: expected reset_after", "got the integer -7");
    rp_op_free(op);
    CHECK(rp_ratelimit_reset_op(&op, a, "s", 1, NULL) == RP_OK);
    one_round("reset 2", op, resp("2"), RP_OK, NULL, NULL);
    rp_op_free(op);
    CHECK(rp_ratelimit_reset_op(&op, a, "s", 1, NULL) == RP_OK);
    one_round("reset +OK", op, resp("+OK"), RP_EPROTOCOL, "ratelimit.reset: expected", "got the status \"OK\"");
    rp_op_free(op);
    CHECK(rp_ratelimit_reset_op(&op, a, "s", 1, NULL) == RP_OK);
    one_round("reset 3", op, resp("3"), RP_EPROTOCOL, "expected", "got the integer 3");
    rp_op_free(op);
    rp_ratelimit_free(a);
    rp_ratelimit_free(b);
    rp_client_free(c);
}

/* --- fence, publish, subscription, handshake ------------------------------------------- */

static void test_fence_check(void)
{
    /* token 5 */
    static const struct { const char *spec; int code; const char *s1, *s2; } cases[] = {
        { "*2 1 5", RP_OK, NULL, NULL },
        { "*2 0 9", RP_OK, NULL, NULL },
        { "*2 2 5", RP_EPROTOCOL, "fence.check: expected", "got the integer 2" },
        { "*2 1 0", RP_EPROTOCOL, "expected", "got the integer 0" },
        { "*2 1 4", RP_EPROTOCOL, "expected", "got the integer 4" },   /* accepted: highest is ours */
        { "*2 0 5", RP_EPROTOCOL, "expected", "got the integer 5" },   /* refused: a newer one */
        { "*2 0 -42", RP_EPROTOCOL, "expected", "got the integer -42" },
        { "*3 1 5 5", RP_EPROTOCOL, "an array of 2 integers", "got an array of 3 elements" },
        { "*2 $1 5", RP_EPROTOCOL, "element 1", NULL },
        { "+OK", RP_EPROTOCOL, "expected", "got the status \"OK\"" },
        { "-ERR fence record is not an integer", RP_EREPLY, "fence record", NULL },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_op *op;
        char label[64];
        snprintf(label, sizeof label, "fence %s", cases[i].spec);
        CHECK(rp_fence_check_op(&op, c, "r", 1, 5, NULL) == RP_OK);
        one_round(label, op, resp(cases[i].spec), cases[i].code, cases[i].s1, cases[i].s2);
        rp_op_free(op);
        rp_client_free(c);
    }
}

static void test_publish(void)
{
    static const struct { const char *spec; int code; const char *s1, *s2; } cases[] = {
        { "0", RP_OK, NULL, NULL },
        { "3", RP_OK, NULL, NULL },
        { "-1", RP_EPROTOCOL, "pubsub.publish: expected", "got the integer -1" },
        { "+OK", RP_EPROTOCOL, "expected", "got the status \"OK\"" },
        { "$3", RP_EPROTOCOL, "expected", "got the string \"3\"" },
        { "-ERR nope", RP_EREPLY, "ERR nope", NULL },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client(NULL);
        rp_op *op;
        char label[64];
        snprintf(label, sizeof label, "publish %s", cases[i].spec);
        CHECK(rp_pubsub_publish_op(&op, c, "ch", 2, "m", 1, NULL) == RP_OK);
        one_round(label, op, resp(cases[i].spec), cases[i].code, cases[i].s1, cases[i].s2);
        rp_op_free(op);
        rp_client_free(c);
    }
}

static void test_subscription_counts(void)
{
    rp_client *c = unit_client(NULL);
    rp_subscription *s = NULL;
    const char *ch[] = { "a" };
    size_t chl[] = { 1 };
    rp_op *op;
    CHECK(rp_subscription_new(&s, c, 1, (const void *const *)ch, chl, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, resp("*3 $subscribe $a -1"));
    expect_end("subscribe count -1", op, rp_op_step(op, T0 + 1), RP_EPROTOCOL, "subscription.listen", NULL);
    rp_op_free(op);
    /* a pong's second element is a string */
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    feed(op, 0, resp("*2 $pong 5"));
    expect_end("pong with an integer", op, rp_op_step(op, T0 + 1), RP_EPROTOCOL, "subscription.listen", NULL);
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

static void test_handshake(void)
{
    static const struct { const char *bytes; int code; const char *s1, *s2; } cases[] = {
        { "+OK\r\n+OK\r\n", RP_OK, NULL, NULL },
        { "+QUEUED\r\n+OK\r\n", RP_EPROTOCOL, "handshake: AUTH failed: expected the status \"OK\"", "got the status \"QUEUED\"" },
        { "+OK\r\n+O?\r\n", RP_EPROTOCOL, "SELECT failed: expected the status \"OK\"", "\"O?\"" },
        { "+OK\r\n:1\r\n", RP_EPROTOCOL, "expected", "got the integer 1" },
        { "$2\r\nOK\r\n+OK\r\n", RP_EPROTOCOL, "expected", "got the string \"OK\"" },
        { "-WRONGPASS invalid username-password pair\r\n+OK\r\n", RP_EAUTH, "handshake: AUTH failed: WRONGPASS", NULL },
        { "-NOAUTH Authentication required.\r\n+OK\r\n", RP_EAUTH, "AUTH failed: NOAUTH", NULL },
        { "-ERR invalid password\r\n+OK\r\n", RP_EAUTH, "AUTH failed: ERR invalid password", NULL },
        { "-ERR AUTH <password> called without any password configured for the default user. "
          "Are you sure your configuration is correct?\r\n+OK\r\n", RP_EAUTH,
          "without any password configured", NULL },
        { "-LOADING Redis is loading the dataset in memory\r\n+OK\r\n", RP_EREPLY, "AUTH failed: LOADING", NULL },
        { "+OK\r\n-ERR DB index is out of range\r\n", RP_EREPLY, "DB index", NULL },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = unit_client("redis://u:p@h:1/3");
        rp_op *op;
        char label[64];
        snprintf(label, sizeof label, "handshake %zu", i);
        CHECK(rp_client_handshake_op(&op, c, NULL) == RP_OK);
        one_round(label, op, cases[i].bytes, cases[i].code, cases[i].s1, cases[i].s2);
        rp_op_free(op);
        rp_client_free(c);
    }
}

/* --- the describer --------------------------------------------------------------------- */

static void test_describe(void)
{
    rp_reply s = { RP_REPLY_STRING, 0, 6, (char *)"a\001\"\\z\n", 0, NULL };
    rp_reply st = { RP_REPLY_STATUS, 0, 6, (char *)"QUEUED", 0, NULL };
    rp_reply i = { RP_REPLY_INTEGER, -42, 0, NULL, 0, NULL };
    rp_reply nil = { RP_REPLY_NIL, 0, 0, NULL, 0, NULL };
    rp_reply *els[] = { &i, &nil };
    rp_reply arr = { RP_REPLY_ARRAY, 0, 0, NULL, 2, els };
    char big[600], out[RP_REPLY_DESCRIBE_MAX], why[RP_ERROR_MESSAGE_MAX];
    rp_reply long_s = { RP_REPLY_STRING, 0, sizeof big - 1, big, 0, NULL };
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(strcmp(rp_reply__describe(&s, out, sizeof out), "the string \"a\\x01\\x22\\x5cz\\x0a\"") == 0);
    CHECK(strcmp(rp_reply__describe(&st, out, sizeof out), "the status \"QUEUED\"") == 0);
    CHECK(strcmp(rp_reply__describe(&i, out, sizeof out), "the integer -42") == 0);
    CHECK(strcmp(rp_reply__describe(&nil, out, sizeof out), "nil") == 0);
    CHECK(strcmp(rp_reply__describe(&arr, out, sizeof out), "an array of 2 elements") == 0);
    CHECK(strcmp(rp_reply__describe(NULL, out, sizeof out), "no reply") == 0);
    /* bounded: the first bytes, then "..." */
    rp_reply__describe(&long_s, out, sizeof out);
    CHECK(strlen(out) < 64 && strstr(out, "xxx...\"") != NULL);
    rp_reply__describe(&long_s, out, 10); /* cut to any size, NUL-terminated */
    CHECK(strlen(out) == 9);
    CHECK(rp_reply__is_array(&arr, "ii", "the pair", why, sizeof why) == RP_EPROTOCOL);
    CHECK(strcmp(why, "expected the pair (an array of 2 integers), got an array whose element 2 "
                      "is nil (expected an integer)") == 0);
    CHECK(rp_reply__is_array(&arr, "in", NULL, why, sizeof why) == RP_OK);
    CHECK(rp_reply__is_int(&i, "x", -42, -42, why, sizeof why) == RP_OK);
    CHECK(rp_reply__is_int(&i, NULL, 0, 9, why, sizeof why) == RP_EPROTOCOL &&
          strcmp(why, "expected an integer in [0, 9], got the integer -42") == 0);
    CHECK(rp_reply__is_status(&st, "OK", why, sizeof why) == RP_EPROTOCOL &&
          strcmp(why, "expected the status \"OK\", got the status \"QUEUED\"") == 0);
}

int main(void)
{
    test_describe();
    test_plain_acquire();
    test_wrongtype_does_not_wait();
    test_plain_acquire_pre7();
    test_fenced_acquire();
    test_lock_ops();
    test_redlock_acquire();
    test_redlock_sends_set_get();
    test_redlock_pre7();
    test_redlock_queries();
    test_ratelimit_check();
    test_ratelimit_compact();
    test_ratelimit_degraded_keeps_cause();
    test_ratelimit_node_failure_kept();
    test_ratelimit_multi_and_batch();
    test_fence_check();
    test_publish();
    test_subscription_counts();
    test_handshake();
    printf("unit_replies: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
