/* bench_cache URL ITERATIONS RUNS
 *
 * The cache's C op API (cache.h), each figure beside its floor in the same process and run:
 *  - a near-cache hit: rp_cache_get_op + rp_client_run + rp_cache_result_of + rp_op_free on
 *    an armed near-cache holding the key (no round trip; checked: the server sees no
 *    command during the loop), and the same through rp_cache_load_op (get_or_load) with
 *    rp_client_drive;
 *  - a Redis hit: the same get on a cache without a near-cache (one round trip), beside
 *    raw hiredis GET of a plain key of the same size (the floor of one round trip) and, for
 *    the record, raw hiredis EVALSHA of the cache's read script with the entry's keys (a
 *    read through the script: what a miss costs before its load);
 *  - the commands a Redis hit sends and the server's time for them (INFO commandstats,
 *    every row: a script's own redis.call()s are counted too, and their usec twice, in
 *    their rows and in the EVALSHA's: the EVALSHAs are given apart).
 * The near-cache is armed as its subscriber would arm it (rp_cache_near_apply with kind
 * "subscribe"); nothing publishes during the loops. Medians of RUNS runs; the sides
 * alternate in chunks so load on the machine hits all alike. Prints one JSON object. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <redpat/redpat.h>

#define BENCH_NAME "bench_cache"
#include "bench_util.h"
#include "bench_redis.h"

#define MAX_RUNS 31
#define CHUNK 200
#define KEY "user:42"
/* a small JSON row, as a cache of user rows holds */
#define VALUE "{\"id\":42,\"name\":\"alice\",\"email\":\"alice@example.com\",\"plan\":\"pro\"}"


/* INFO commandstats since the last CONFIG RESETSTAT: every command's calls and usec added up
 * (the bench's own INFO and CONFIG left out), and the EVALSHAs among them. A script's own
 * redis.call()s have rows too (their usec inside the EVALSHA's as well). */
static void stats(redisContext *c, long long *calls, long long *usec, long long *evalsha)
{
    redisReply *r = bench_cmd(c, "INFO commandstats");
    const char *p;
    *calls = *usec = *evalsha = 0;
    for (p = r->str; (p = strstr(p, "cmdstat_")); p++) {
        const char *name = p + 8, *q = strstr(p, ":calls=");
        const char *u = q ? strstr(q, "usec=") : NULL;
        if (!q || !u)
            break;
        if (!strncmp(name, "info:", 5) || !strncmp(name, "config", 6))
            continue;
        *calls += atoll(q + 7);
        *usec += atoll(u + 5);
        if (!strncmp(name, "evalsha:", 8))
            *evalsha += atoll(q + 7);
    }
    freeReplyObject(r);
}

static void loader(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                   rp_value *result)
{
    (void)op;
    (void)values;
    (void)count;
    if (arg == RP_CACHE_LOADER_ARG) {
        ++*(long *)ud;
        *result = rp_value_bytes(VALUE, strlen(VALUE));
    }
}

static rp_cache *cache_with(rp_client *c, const char *name, int64_t near_size)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *cache;
    rp_error e;
    o.ttl_ms = 3600000;
    o.near_size = near_size;
    o.near_ttl_ms = 3600000; /* the loops must not outlive a near entry */
    if (rp_cache_new(&cache, c, name, strlen(name), &o, &e) != RP_OK)
        die("rp_cache_new: %s", e.message);
    return cache;
}

/* One cache.get; returns whether it was a near hit (dies on a miss or an error). */
static int get(rp_client *c, rp_cache *cache)
{
    rp_cache_result r;
    rp_op *op;
    rp_error e;
    int near;
    if (rp_cache_get_op(&op, cache, KEY, strlen(KEY), NULL, &e) != RP_OK ||
        rp_client_run(c, op, &e) != RP_OK)
        die("get: %s", e.message);
    if (rp_cache_result_of(op, &r) != RP_OK || !r.hit || r.value_len != strlen(VALUE))
        die("get: not a hit");
    near = r.near;
    rp_op_free(op);
    return near;
}

static int load(rp_client *c, rp_cache *cache, long *loads)
{
    rp_drive_hooks hooks = { NULL, loader, NULL };
    rp_cache_result r;
    rp_op *op;
    rp_error e;
    int near;
    hooks.ud = loads;
    if (rp_cache_load_op(&op, cache, KEY, strlen(KEY), NULL, 0, &e) != RP_OK ||
        rp_client_drive(c, op, &hooks, &e) != RP_OK)
        die("get_or_load: %s", e.message);
    if (rp_cache_result_of(op, &r) != RP_OK || r.value_len != strlen(VALUE))
        die("get_or_load: no value");
    near = r.near;
    rp_op_free(op);
    return near;
}

int main(int argc, char **argv)
{
    const char *url;
    int iterations, runs, run, i;
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_client *client;
    rp_cache *near, *plain;
    redisContext *raw;
    redisReply *r;
    rp_error e;
    int64_t dropped, entries;
    int cleared, armed, raw_eval_ok;
    long loads = 0;
    long long calls, usec, evalsha;
    double near_get[MAX_RUNS], near_load[MAX_RUNS], redis_get[MAX_RUNS], raw_get[MAX_RUNS],
        raw_eval[MAX_RUNS];
    long long near_commands;
    char sha[41], entry[128], gen[192], lock[192];

    if (argc < 4)
        die("usage: bench_cache URL ITERATIONS RUNS");
    url = argv[1];
    iterations = atoi(argv[2]);
    runs = atoi(argv[3]);
    if (iterations <= 0 || runs <= 0 || runs > MAX_RUNS)
        die("ITERATIONS > 0 and 1 <= RUNS <= %d", MAX_RUNS);

    co.url = url;
    co.key_namespace = "bench";
    if (rp_client_new(&client, &co, &e) != RP_OK)
        die("client: %s", e.message);
    raw = bench_connect(url);
    freeReplyObject(bench_cmd(raw, "FLUSHALL"));
    freeReplyObject(bench_cmd(raw, "SET bench:plain %s", VALUE));

    near = cache_with(client, "near", 1000);
    plain = cache_with(client, "plain", 0);
    /* fill both (one load each), then arm the near-cache as its subscriber would */
    load(client, near, &loads);
    load(client, plain, &loads);
    if (rp_cache_near_apply(near, "subscribe", 9, NULL, 0, &dropped, &cleared, &e) != RP_OK)
        die("near_apply: %s", e.message);
    rp_cache_near_stats(near, &entries, &armed);
    if (!armed)
        die("the near-cache is not armed after a subscribe");
    get(client, near); /* a Redis hit: fills the (now armed) near-cache */
    if (!get(client, near))
        die("the armed near-cache did not answer the second get");
    if (get(client, plain))
        die("a cache without a near-cache answered from it");

    /* the read script as the op sends it: its sha (the op loaded it), its three keys */
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/cache_read.lua", REDPAT_SCRIPTS_DIR);
        bench_script_load(raw, path, sha);
    }
    snprintf(entry, sizeof entry, "bench:cache:{plain:%s}", KEY);
    snprintf(gen, sizeof gen, "%s:gen", entry);
    snprintf(lock, sizeof lock, "%s:lock", entry);
    /* (for the record only: if the script's keys or arguments changed and it no longer finds
     * the entry this way, the row is left out rather than the bench failing) */
    r = redisCommand(raw, "EVALSHA %s 3 %s %s %s %s %s %s %s", sha, entry, gen, lock, "",
                     "5000", "0", "0");
    raw_eval_ok = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
                  r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
    if (!raw_eval_ok)
        fprintf(stderr, "bench_cache: the raw read script did not find %s: its row is left out\n",
                entry);
    if (r)
        freeReplyObject(r);

    for (run = 0; run < runs; run++) {
        double t_near = 0, t_load = 0, t_redis = 0, t_raw = 0, t_eval = 0, t0;
        int n_near = 0, n_redis = 0;
        while (n_near < iterations) {
            int chunk = iterations - n_near < CHUNK ? iterations - n_near : CHUNK;
            /* a round trip costs ~100x a near hit: a tenth as many of those */
            int rchunk = chunk / 10 ? chunk / 10 : 1;
            t0 = now_us();
            for (i = 0; i < chunk; i++)
                if (!get(client, near))
                    die("a near get went to Redis");
            t_near += now_us() - t0;
            t0 = now_us();
            for (i = 0; i < chunk; i++)
                if (!load(client, near, &loads))
                    die("a near get_or_load went to Redis");
            t_load += now_us() - t0;
            t0 = now_us();
            for (i = 0; i < rchunk; i++)
                get(client, plain);
            t_redis += now_us() - t0;
            t0 = now_us();
            for (i = 0; i < rchunk; i++) {
                redisReply *x = redisCommand(raw, "GET bench:plain");
                if (!x || x->type != REDIS_REPLY_STRING)
                    die("raw GET");
                freeReplyObject(x);
            }
            t_raw += now_us() - t0;
            t0 = now_us();
            for (i = 0; raw_eval_ok && i < rchunk; i++) {
                redisReply *x = redisCommand(raw, "EVALSHA %s 3 %s %s %s %s %s %s %s", sha,
                                             entry, gen, lock, "", "5000", "0", "0");
                if (!x || x->type != REDIS_REPLY_ARRAY)
                    die("raw EVALSHA");
                freeReplyObject(x);
            }
            t_eval += now_us() - t0;
            n_near += chunk;
            n_redis += rchunk;
        }
        near_get[run] = t_near / n_near;
        near_load[run] = t_load / n_near;
        redis_get[run] = t_redis / n_redis;
        raw_get[run] = t_raw / n_redis;
        raw_eval[run] = t_eval / n_redis;
    }

    /* the server must see nothing during near hits; what a Redis hit sends */
    freeReplyObject(bench_cmd(raw, "CONFIG RESETSTAT"));
    for (i = 0; i < 1000; i++)
        get(client, near);
    stats(raw, &calls, &usec, &evalsha);
    near_commands = calls;
    freeReplyObject(bench_cmd(raw, "CONFIG RESETSTAT"));
    for (i = 0; i < 1000; i++)
        get(client, plain);
    stats(raw, &calls, &usec, &evalsha);
    if (loads != 2)
        die("the loader ran %ld times (2 expected: one fill per cache)", loads);

    printf("{\n  \"iterations\": %d, \"runs\": %d, \"value_bytes\": %zu,\n", iterations, runs,
           strlen(VALUE));
    printf("  \"near_get_us\": %.3f, \"near_get_or_load_us\": %.3f,\n", bench_median(near_get, runs),
           bench_median(near_load, runs));
    printf("  \"near_commands_per_1000_hits\": %lld,\n", near_commands);
    printf("  \"redis_get_us\": %.2f, \"raw_get_us\": %.2f, ", bench_median(redis_get, runs),
           bench_median(raw_get, runs));
    if (raw_eval_ok)
        printf("\"raw_evalsha_read_us\": %.2f,\n", bench_median(raw_eval, runs));
    else
        printf("\"raw_evalsha_read_us\": null,\n");
    printf("  \"redis_hit_commands_per_hit\": %.3f, \"redis_hit_evalsha_per_hit\": %.3f,\n"
           "  \"redis_hit_server_usec_per_hit\": %.2f\n}\n", (double)calls / 1000.0,
           (double)evalsha / 1000.0, (double)usec / 1000.0);
    rp_cache_free(near);
    rp_cache_free(plain);
    redisFree(raw);
    rp_client_free(client);
    return 0;
}
