/* Script flags (the "#!lua flags=..." first line of every script) and the fallback for a
 * Redis older than 7.0, with canned replies: a pre-7 answer (the shebang does not compile)
 * costs exactly one EVAL of the legacy variant, after which that endpoint gets the legacy
 * variant (its SHA1 once loaded) and the others keep the flagged one; a Redis 7 answer never
 * leads to the legacy variant. No server. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#include "internal.h"
#include "op_internal.h"
#include "script.h"

#define T0 1000
/* What Redis 6.2.14 answers EVAL of a script whose first line is "#!lua ...". */
#define PRE7_ERROR "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'\r\n"

static const char *const URLS3 = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3";

/* A client whose endpoints are known to have nothing (as a fresh one): scripts go as EVAL. */
static rp_client *fresh_client(const char *url)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    o.url = url;
    o.key_namespace = "t";
    if (rp_client_new(&c, &o, NULL) != RP_OK)
        abort();
    return c;
}

static const rp_script *script(rp_client *c, const char *name)
{
    const rp_script *s = rp_script__find(rp_client__scripts(c), name);
    if (!s)
        abort();
    return s;
}

static int feed(rp_op *op, size_t node, const char *reply)
{
    return rp_op_feed(op, node, reply, strlen(reply));
}

/* How many times part occurs in the request for node. */
static size_t count_in_request(const rp_op *op, size_t node, const char *part)
{
    const char *bytes;
    size_t len, n = strlen(part), i, count = 0;
    if (rp_op_request(op, node, &bytes, &len) != RP_OK)
        return 0;
    for (i = 0; i + n <= len; i++)
        if (memcmp(bytes + i, part, n) == 0)
            count++;
    return count;
}

static int has_request(const rp_op *op, size_t node)
{
    const char *bytes;
    size_t len = 0;
    return rp_op_request(op, node, &bytes, &len) == RP_OK && len > 0;
}

/* The request for node is exactly one EVAL, of s's variant (legacy or flagged) as a whole
 * bulk string: "$<len>\r\n<body>\r\n". */
static int one_eval_of(const rp_op *op, size_t node, const rp_script *s, int legacy)
{
    size_t blen, hlen;
    const char *body = rp_script__body(s, legacy, &blen);
    char *bulk = malloc(blen + 32);
    int ok;
    if (!bulk)
        abort();
    hlen = (size_t)snprintf(bulk, 32, "$%zu\r\n", blen);
    memcpy(bulk + hlen, body, blen);
    memcpy(bulk + hlen + blen, "\r\n", 3);
    ok = count_in_request(op, node, "EVAL") == 1 && count_in_request(op, node, "$4\r\nEVAL\r\n") == 1 &&
         count_in_request(op, node, bulk) == 1 &&
         count_in_request(op, node, "#!lua") == (legacy ? 0u : 1u);
    free(bulk);
    return ok;
}

static int one_evalsha_of(const rp_op *op, size_t node, const char *sha)
{
    return count_in_request(op, node, "EVAL") == 1 && count_in_request(op, node, "$7\r\nEVALSHA\r\n") == 1 &&
           count_in_request(op, node, sha) == 1;
}

static rp_op *fence_op(rp_client *c, int64_t token)
{
    rp_op *op = NULL;
    if (rp_fence_check_op(&op, c, "db", 2, token, NULL) != RP_OK)
        abort();
    return op;
}

/* Every script's flagged variant starts with its shebang; the legacy one has the same
 * number of lines (error line numbers agree) and no shebang; writing scripts get the OOM
 * guard, the allow-oom / no-writes ones an empty first line. */
static void test_variants(void)
{
    rp_client *c = fresh_client(NULL);
    const rp_script_registry *r = rp_client__scripts(c);
    size_t i;
    CHECK(r->count >= 7);
    for (i = 0; i < r->count; i++) {
        const rp_script *s = &r->scripts[i];
        const char *nl = memchr(s->src->source, '\n', s->src->len);
        size_t lines = 0, llines = 0, j;
        int exempt;
        CHECK(s->src->len > 5 && memcmp(s->src->source, "#!lua", 5) == 0 && nl);
        if (!nl)
            continue;
        exempt = memmem(s->src->source, (size_t)(nl - s->src->source), "allow-oom", 9) ||
                 memmem(s->src->source, (size_t)(nl - s->src->source), "no-writes", 9);
        for (j = 0; j < s->src->len; j++)
            lines += s->src->source[j] == '\n';
        for (j = 0; j < s->src->legacy_len; j++)
            llines += s->src->legacy[j] == '\n';
        CHECK(lines == llines);
        CHECK(s->src->legacy_len > 0 && s->src->legacy[0] != '#');
        CHECK(exempt ? s->src->legacy[0] == '\n'
                     : s->src->legacy_len > 8 && memmem(s->src->legacy, s->src->legacy_len, "SETRANGE", 8) != NULL);
        /* the rest is the same bytes */
        CHECK(memcmp(strchr(s->src->legacy, '\n'), nl, s->src->len - (size_t)(nl - s->src->source)) == 0);
        CHECK(strcmp(s->sha1, s->legacy_sha1) != 0 && strlen(s->legacy_sha1) == 40);
        /* a release, an extend and a cache read must work when Redis is full (a full cache
         * still serves its hits; the read's load lock is a few bytes) */
        if (strcmp(s->src->name, "lock_release") == 0 || strcmp(s->src->name, "lock_extend") == 0 ||
            strcmp(s->src->name, "cache_read") == 0)
            CHECK(strncmp(s->src->source, "#!lua flags=allow-oom\n", 22) == 0);
        else if (strcmp(s->src->name, "lock_remaining") == 0)
            CHECK(strncmp(s->src->source, "#!lua flags=no-writes\n", 22) == 0);
        else
            CHECK(strncmp(s->src->source, "#!lua\n", 6) == 0);
    }
    rp_client_free(c);
}

/* A pre-7 endpoint: one legacy EVAL retry, then the legacy SHA1 and legacy bodies only. */
static void test_pre7_learned_once(void)
{
    rp_client *c = fresh_client(NULL);
    const rp_script *fc = script(c, "fence_check"), *rel = script(c, "lock_release");
    rp_fence_result fr;
    rp_op *op = fence_op(c, 7);
    CHECK(!rp_script__pre7(rp_client__scripts(c), 0));
    CHECK(rp_op_step(op, T0) == RP_STEP_IO);
    CHECK(one_eval_of(op, 0, fc, 0));
    CHECK(feed(op, 0, PRE7_ERROR) == RP_OK);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_IO); /* the retry round */
    CHECK(rp_script__pre7(rp_client__scripts(c), 0));
    CHECK(one_eval_of(op, 0, fc, 1));
    CHECK(feed(op, 0, "*2\r\n:1\r\n:7\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_DONE);
    CHECK(rp_fence_check_result(op, &fr) == RP_OK && fr.accepted && fr.highest == 7);
    rp_op_free(op);

    /* the next op: EVALSHA of the legacy SHA1, never the flagged one */
    op = fence_op(c, 8);
    CHECK(rp_op_step(op, T0 + 3) == RP_STEP_IO);
    CHECK(one_evalsha_of(op, 0, fc->legacy_sha1) && count_in_request(op, 0, fc->sha1) == 0);
    CHECK(feed(op, 0, "*2\r\n:1\r\n:8\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 4) == RP_STEP_DONE);
    rp_op_free(op);

    /* it forgot the script (a restart): NOSCRIPT, then EVAL of the legacy body at once */
    op = fence_op(c, 9);
    CHECK(rp_op_step(op, T0 + 5) == RP_STEP_IO && one_evalsha_of(op, 0, fc->legacy_sha1));
    CHECK(feed(op, 0, "-NOSCRIPT No matching script. Please use EVAL.\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 6) == RP_STEP_IO && one_eval_of(op, 0, fc, 1));
    CHECK(feed(op, 0, "*2\r\n:1\r\n:9\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 7) == RP_STEP_DONE);
    rp_op_free(op);

    /* other scripts, never sent there: their legacy body at once, no compile-error round */
    {
        const rp_script *acq = script(c, "lock_acquire_fenced");
        rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
        rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
        rp_lock_acquisition res;
        rp_lock *l = NULL;
        lo.fenced = 1;
        CHECK(rp_lock_new(&l, c, "r", 1, &lo, NULL) == RP_OK);
        o.token = "tok";
        o.token_len = 3;
        CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK && rp_op_step(op, T0 + 8) == RP_STEP_IO);
        CHECK(one_eval_of(op, 0, acq, 1));
        CHECK(feed(op, 0, "*2\r\n:1\r\n:3\r\n") == RP_OK);
        CHECK(rp_op_step(op, T0 + 9) == RP_STEP_DONE);
        CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired && res.fence == 3);
        rp_op_free(op);
        op = NULL;
        CHECK(rp_lock_release_op(&op, l, NULL) == RP_OK && rp_op_step(op, T0 + 10) == RP_STEP_IO);
        CHECK(one_eval_of(op, 0, rel, 1));
        CHECK(feed(op, 0, ":1\r\n") == RP_OK);
        CHECK(rp_op_step(op, T0 + 11) == RP_STEP_DONE);
        rp_op_free(op);
        rp_lock_free(l);
    }
    rp_client_free(c);
}

/* A Redis 7 endpoint: the flagged variant, then its SHA1; the legacy one never. A compile
 * error that is not about the shebang is an error reply, not a retry. */
static void test_redis7_never_legacy(void)
{
    rp_client *c = fresh_client(NULL);
    const rp_script *fc = script(c, "fence_check");
    const rp_error *e;
    rp_op *op = fence_op(c, 7);
    CHECK(rp_op_step(op, T0) == RP_STEP_IO && one_eval_of(op, 0, fc, 0));
    CHECK(feed(op, 0, "*2\r\n:1\r\n:7\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    rp_op_free(op);
    CHECK(!rp_script__pre7(rp_client__scripts(c), 0));

    op = fence_op(c, 8);
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_IO && one_evalsha_of(op, 0, fc->sha1));
    CHECK(count_in_request(op, 0, fc->legacy_sha1) == 0);
    /* under OOM Redis 7 refuses the script up front: an error reply, no retry */
    CHECK(feed(op, 0, "-OOM command not allowed when used memory > 'maxmemory'.\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 3) == RP_STEP_ERROR);
    e = rp_op_error(op);
    CHECK(e->code == RP_EREPLY && strstr(e->message, "OOM command not allowed"));
    rp_op_free(op);

    op = fence_op(c, 9);
    CHECK(rp_op_step(op, T0 + 4) == RP_STEP_IO && one_evalsha_of(op, 0, fc->sha1));
    CHECK(feed(op, 0, "-NOSCRIPT No matching script. Please use EVAL.\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 5) == RP_STEP_IO && one_eval_of(op, 0, fc, 0));
    /* a compile error elsewhere (not line 1's '#'): Redis' error, never the legacy body */
    CHECK(feed(op, 0, "-ERR Error compiling script (new function): user_script:7: unexpected symbol near 'x'\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 6) == RP_STEP_ERROR);
    CHECK(rp_op_error(op)->code == RP_EREPLY);
    rp_op_free(op);
    CHECK(!rp_script__pre7(rp_client__scripts(c), 0));
    rp_client_free(c);
}

/* A quorum round with one pre-7 node: the round does not end on the other nodes' answers
 * (their quorum would abandon it); only that node is asked again, with the legacy body;
 * the others keep the flagged variant afterwards. */
static void test_quorum_waits_for_pre7_node(void)
{
    rp_client *c = fresh_client(URLS3);
    const rp_script *ext = script(c, "redlock_extend"), *rem = script(c, "lock_remaining");
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_lock_acquisition res;
    rp_lock *l = NULL;
    rp_op *op = NULL;
    size_t i;
    ro.ttl_ms = 10000;
    ro.node_timeout_ms = 50;
    CHECK(rp_redlock_new(&l, c, "r", 1, &ro, NULL) == RP_OK);
    o.token = "tok";
    o.token_len = 3;
    CHECK(rp_lock_acquire_op(&op, l, &o, NULL) == RP_OK && rp_op_step(op, T0) == RP_STEP_IO);
    for (i = 0; i < 3; i++)
        feed(op, i, unit_request_has(op, i, "$3\r\nGET\r\n") ? "$-1\r\n" : "+OK\r\n");
    CHECK(rp_op_step(op, T0 + 1) == RP_STEP_DONE);
    CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired);
    rp_op_free(op);

    CHECK(rp_lock_extend_op(&op, l, 10000, 1, NULL) == RP_OK);
    CHECK(rp_op_step(op, T0 + 2) == RP_STEP_IO);
    for (i = 0; i < 3; i++)
        CHECK(one_eval_of(op, i, ext, 0));
    CHECK(feed(op, 0, PRE7_ERROR) == RP_OK);
    CHECK(feed(op, 1, ":10000\r\n") == RP_OK);
    CHECK(feed(op, 2, ":10000\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 3) == RP_STEP_IO); /* node 0 again, alone */
    CHECK(one_eval_of(op, 0, ext, 1));
    CHECK(!has_request(op, 1) && !has_request(op, 2));
    CHECK(rp_script__pre7(rp_client__scripts(c), 0) && !rp_script__pre7(rp_client__scripts(c), 1) &&
          !rp_script__pre7(rp_client__scripts(c), 2));
    CHECK(feed(op, 0, ":10000\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 4) == RP_STEP_DONE);
    rp_op_free(op);

    /* a script new to all three: legacy body to node 0, the flagged one to 1 and 2 */
    CHECK(rp_lock_remaining_op(&op, l, NULL) == RP_OK && rp_op_step(op, T0 + 5) == RP_STEP_IO);
    CHECK(one_eval_of(op, 0, rem, 1) && one_eval_of(op, 1, rem, 0) && one_eval_of(op, 2, rem, 0));
    for (i = 0; i < 3; i++)
        CHECK(feed(op, i, ":9000\r\n") == RP_OK);
    CHECK(rp_op_step(op, T0 + 6) == RP_STEP_DONE);
    rp_op_free(op);
    rp_lock_free(l);
    rp_client_free(c);
}

int main(void)
{
    test_variants();
    test_pre7_learned_once();
    test_redis7_never_legacy();
    test_quorum_waits_for_pre7_node();
    if (failures) {
        fprintf(stderr, "unit_scriptflags: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("unit_scriptflags: %d checks passed\n", checks);
    return 0;
}
