/* bench_ratelimit URL CHECKS RUNS [SCRIPTS_DIR]
 *
 * Rate limiters, each figure beside its floor in the same process and run:
 *  - single checks per algorithm: rp_ratelimit_check vs raw hiredis sending the same
 *    EVALSHA (same script text, same arguments);
 *  - a batch of 1000 checks (1000 subjects) in one round trip: rp_ratelimit_batch_op vs raw
 *    hiredis pipelining the same 1000 EVALSHAs (redisAppendCommandArgv, then the replies);
 *  - round trips per single check, from INFO commandstats;
 *  - MEMORY USAGE of one subject's state after 100 checks, per algorithm.
 * Medians of RUNS runs; prints one JSON object. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redpat/redpat.h>

#define BENCH_NAME "bench_ratelimit"
#include "bench_util.h"
#include "bench_redis.h"

#define BATCH 1000
#define CHUNK 50
#define MAX_RUNS 31

static const char *const algos[] = { "", "fixed_window", "sliding_log", "sliding_window",
                                     "token_bucket", "gcra" };



static long long evalsha_calls(redisContext *c)
{
    redisReply *r = bench_cmd(c, "INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = p ? atoll(p + 22) : 0;
    freeReplyObject(r);
    return n;
}

/* The floor's arguments for one check: exactly what redpat sends for a single limit of
 * cost 1 (core/scripts/ratelimit.lua's ARGV: the algorithm's letter, limit, window; the
 * sequence key only for a sliding log, the burst only for a bucket whose burst is not its
 * limit), answered by one integer (>= 0: allowed). */
typedef struct raw_check {
    char key[120], seq[128], args[3][24];
    const char *argv[11];
    size_t lens[11];
    int argc;
} raw_check;

static void raw_prepare(raw_check *rc, const char *sha, int algo, const char *subject)
{
    int i;
    snprintf(rc->key, sizeof rc->key, "bench:rl:raw-%s:{%s}", algos[algo], subject);
    snprintf(rc->seq, sizeof rc->seq, "%s:seq", rc->key);
    snprintf(rc->args[0], 24, "%c", "?flctg"[algo]);
    snprintf(rc->args[1], 24, "1000000000");
    snprintf(rc->args[2], 24, "60000");
    rc->argc = 0;
    rc->argv[rc->argc++] = "EVALSHA";
    rc->argv[rc->argc++] = sha;
    rc->argv[rc->argc++] = algo == 2 ? "2" : "1";
    rc->argv[rc->argc++] = rc->key;
    if (algo == 2)
        rc->argv[rc->argc++] = rc->seq;
    for (i = 0; i < 3; i++) /* (the burst is the limit here: not sent) */
        rc->argv[rc->argc++] = rc->args[i];
    for (i = 0; i < rc->argc; i++)
        rc->lens[i] = strlen(rc->argv[i]);
}

/* limit per minute: the timing passes use one never reached, so every check does the full
 * work of an allowed request, as the floor's does */
static rp_ratelimit *limiter_with(rp_client *c, int algo, const char *name, int64_t limit)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *rl;
    rp_error e;
    o.algorithm = (rp_ratelimit_algorithm)algo;
    o.limit = limit;
    o.window_ms = 60000;
    if (rp_ratelimit_new(&rl, c, name, strlen(name), &o, &e) != RP_OK)
        die("rp_ratelimit_new: %s", e.message);
    return rl;
}

static rp_ratelimit *limiter(rp_client *c, int algo, const char *name)
{
    return limiter_with(c, algo, name, 1000000000);
}

int main(int argc, char **argv)
{
    const char *url, *dir;
    int checks, runs, run, a, i;
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_client *client;
    redisContext *raw;
    rp_error e;
    char sha[41], path[4096];
    redisReply *r;
    double single_rp[6][MAX_RUNS], single_raw[6][MAX_RUNS], rt[6];
    double batch_rp[MAX_RUNS], batch_raw[MAX_RUNS];
    long long mem[6];
    const void *subjects[BATCH];
    size_t subject_lens[BATCH];
    char names[BATCH][16];
    raw_check *batch_raw_args;

    if (argc < 4)
        die("usage: bench_ratelimit URL CHECKS RUNS [SCRIPTS_DIR]");
    url = argv[1];
    checks = atoi(argv[2]);
    runs = atoi(argv[3]);
    dir = argc > 4 ? argv[4] : "core/scripts";
    if (checks <= 0 || runs <= 0 || runs > MAX_RUNS)
        die("CHECKS > 0 and 1 <= RUNS <= %d", MAX_RUNS);

    co.url = url;
    co.key_namespace = "bench";
    if (rp_client_new(&client, &co, &e) != RP_OK)
        die("client: %s", e.message);
    raw = bench_connect(url);
    snprintf(path, sizeof path, "%s/ratelimit.lua", dir);
    bench_script_load(raw, path, sha);

    for (i = 0; i < BATCH; i++) {
        snprintf(names[i], sizeof names[i], "s%d", i);
        subjects[i] = names[i];
        subject_lens[i] = strlen(names[i]);
    }
    batch_raw_args = calloc(BATCH, sizeof *batch_raw_args);
    for (i = 0; i < BATCH; i++)
        raw_prepare(&batch_raw_args[i], sha, RP_RATELIMIT_GCRA, names[i]);

    for (run = 0; run < runs; run++) {
        for (a = 1; a <= 5; a++) {
            rp_ratelimit *rl = limiter(client, a, algos[a]);
            raw_check rc;
            rp_ratelimit_decision d;
            double t0, t1, t2;
            double rp_total = 0, raw_total = 0;
            int done = 0;
            raw_prepare(&rc, sha, a, "one");
            /* the two sides alternate in chunks, so load on this machine hits both alike */
            while (done < checks) {
                int chunk = checks - done < CHUNK ? checks - done : CHUNK;
                t0 = now_us();
                for (i = 0; i < chunk; i++)
                    if (rp_ratelimit_check(rl, "one", 3, 1, &d, &e) != RP_OK)
                        die("check: %s", e.message);
                t1 = now_us();
                for (i = 0; i < chunk; i++) {
                    redisReply *x = redisCommandArgv(raw, rc.argc, rc.argv, rc.lens);
                    if (!x || x->type != REDIS_REPLY_INTEGER || x->integer < 0)
                        die("raw check failed (not an allowed decision's integer)");
                    freeReplyObject(x);
                }
                t2 = now_us();
                rp_total += t1 - t0;
                raw_total += t2 - t1;
                done += chunk;
            }
            single_rp[a][run] = rp_total / checks;
            single_raw[a][run] = raw_total / checks;
            rp_ratelimit_free(rl);
        }
        {
            rp_ratelimit *rl = limiter(client, RP_RATELIMIT_GCRA, "batch");
            rp_op *op;
            double t0, t1, t2;
            t0 = now_us();
            if (rp_ratelimit_batch_op(&op, rl, BATCH, subjects, subject_lens, NULL, &e) != RP_OK ||
                rp_client_run(client, op, &e) != RP_OK)
                die("batch: %s", e.message);
            rp_op_free(op);
            t1 = now_us();
            for (i = 0; i < BATCH; i++)
                redisAppendCommandArgv(raw, batch_raw_args[i].argc, batch_raw_args[i].argv,
                                       batch_raw_args[i].lens);
            for (i = 0; i < BATCH; i++) {
                void *x;
                if (redisGetReply(raw, &x) != REDIS_OK)
                    die("raw pipeline failed");
                freeReplyObject(x);
            }
            t2 = now_us();
            batch_rp[run] = t1 - t0;
            batch_raw[run] = t2 - t1;
            rp_ratelimit_free(rl);
        }
    }

    /* round trips: EVALSHA calls per check (the script runs no EVALSHA itself) */
    for (a = 1; a <= 5; a++) {
        char name[32], key[64];
        rp_ratelimit *rl;
        rp_ratelimit_decision d;
        snprintf(name, sizeof name, "count-%s", algos[a]);
        snprintf(key, sizeof key, "bench:rl:%s:{m}", name);
        rl = limiter_with(client, a, name, 1000); /* 100 checks leave state that lasts */
        long long before = evalsha_calls(raw);
        for (i = 0; i < 100; i++)
            if (rp_ratelimit_check(rl, "m", 1, 1, &d, &e) != RP_OK)
                die("check: %s", e.message);
        rt[a] = (double)(evalsha_calls(raw) - before) / 100.0;
        r = bench_cmd(raw, "MEMORY USAGE %s", key);
        mem[a] = r->integer;
        freeReplyObject(r);
        if (a == RP_RATELIMIT_SLIDING_LOG) {
            r = bench_cmd(raw, "MEMORY USAGE %s:seq", key);
            mem[a] += r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
            freeReplyObject(r);
        }
        rp_ratelimit_free(rl);
    }

    printf("{\n  \"checks\": %d, \"runs\": %d, \"batch\": %d,\n  \"single\": {", checks, runs, BATCH);
    for (a = 1; a <= 5; a++) {
        double rp_med = bench_median(single_rp[a], runs), raw_med = bench_median(single_raw[a], runs);
        printf("%s\n    \"%s\": {\"redpat_us\": %.2f, \"hiredis_us\": %.2f, \"ratio\": %.3f, "
               "\"roundtrips\": %.3f, \"memory_bytes_per_subject_after_100\": %lld}",
               a > 1 ? "," : "", algos[a], rp_med, raw_med, rp_med / raw_med, rt[a], mem[a]);
    }
    {
        double rp_med = bench_median(batch_rp, runs), raw_med = bench_median(batch_raw, runs);
        printf("\n  },\n  \"batch_1000\": {\"redpat_us\": %.1f, \"pipelined_floor_us\": %.1f, "
               "\"throughput_vs_floor\": %.3f}\n}\n", rp_med, raw_med, raw_med / rp_med);
    }
    free(batch_raw_args);
    redisFree(raw);
    rp_client_free(client);
    return 0;
}
