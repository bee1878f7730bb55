/* bench_lock URL ITERATIONS RUNS [SCRIPTS_DIR]
 *
 * The C lock cycle (rp_lock_acquire try-once + rp_lock_release) and the fenced acquire,
 * each beside its floor: raw hiredis (redisCommandArgv) sending the same commands from the
 * same process: SET key token NX PX ttl, then EVALSHA of the same release script text; for
 * the fenced acquire, EVALSHA of the same acquire script text (both read from SCRIPTS_DIR
 * and loaded with SCRIPT LOAD). The two sides are interleaved in small chunks within each
 * run; each figure is the median over RUNS runs of the mean microseconds per operation, and
 * each ratio the median of the per-run (paired) ratios. The fenced acquire is timed alone
 * (its release, needed before the next acquire, is not).
 *
 * Round trips per operation come from INFO commandstats. Redis counts the commands a script
 * runs there too, so the deltas of a counting pass hold top-level and in-script calls. The
 * floor's top-level count is known exactly (it sends them), which gives the in-script
 * share; redpat runs the same scripts, so its round trips are its total minus that share.
 * The per-command deltas of both sides are printed too, to be compared by eye.
 *
 * Prints one JSON object on stdout. Exit status 0, or 1 with a message on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redpat/redpat.h>

#define BENCH_NAME "bench_lock"
#include "bench_util.h"

#ifndef REDPAT_SCRIPTS_DIR
#define REDPAT_SCRIPTS_DIR "core/scripts"
#endif

#define TTL_MS 30000
#define TOKEN_HEX 32 /* redpat's default owner token: 128 random bits, hex */
#define MAX_CMDS 64
#define CHUNK 50 /* operations per side before switching sides */


/* ---- the floor: raw hiredis ---- */

typedef struct raw {
    redisContext *c;
    char release_sha[41];
    char acquire_sha[41];
    unsigned long long serial;
} raw;

static char *read_file(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) die("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap * 2 + 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) die("out of memory");
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static redisReply *raw_cmd(raw *r, int argc, const char **argv, const size_t *lens)
{
    redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
    if (rep == NULL) die("hiredis: %s", r->c->errstr);
    if (rep->type == REDIS_REPLY_ERROR) die("redis error: %s", rep->str);
    return rep;
}

static void script_load(raw *r, const char *dir, const char *file, char sha[41])
{
    size_t len;
    char *src = read_file(dir, file, &len);
    const char *argv[] = {"SCRIPT", "LOAD", src};
    size_t lens[] = {6, 4, len};
    redisReply *rep = raw_cmd(r, 3, argv, lens);
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) die("SCRIPT LOAD %s: bad reply", file);
    memcpy(sha, rep->str, 40);
    sha[40] = '\0';
    freeReplyObject(rep);
    free(src);
}

static void parse_url(const char *url, char *host, size_t hostlen, int *port, int *db)
{
    *port = 6379;
    *db = 0;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) die("URL must be redis://host:port[/db]: %s", url);
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) p = at + 1;
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= hostlen) die("bad host in %s", url);
    memcpy(host, p, n);
    host[n] = '\0';
    p += n;
    if (*p == ':') *port = (int)strtol(p + 1, (char **)&p, 10);
    if (*p == '/') *db = (int)strtol(p + 1, NULL, 10);
}

static redisContext *raw_connect(const char *url)
{
    char host[256];
    int port, db;
    parse_url(url, host, sizeof host, &port, &db);
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) die("connect %s: %s", url, c != NULL ? c->errstr : "oom");
    redisSetTimeout(c, tv);
    if (db != 0) {
        redisReply *rep = redisCommand(c, "SELECT %d", db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) die("SELECT %d failed", db);
        freeReplyObject(rep);
    }
    return c;
}

static void next_token(raw *r, char tok[TOKEN_HEX + 1])
{
    snprintf(tok, TOKEN_HEX + 1, "%016llx%016llx", 0x5250ULL, ++r->serial);
}

/* One raw lock cycle: SET NX PX, then EVALSHA release. */
static void raw_cycle(raw *r, const char *key)
{
    char tok[TOKEN_HEX + 1];
    next_token(r, tok);
    const char *set[] = {"SET", key, tok, "NX", "PX", "30000"};
    redisReply *rep = raw_cmd(r, 6, set, NULL);
    if (rep->type != REDIS_REPLY_STATUS) die("raw SET NX did not acquire");
    freeReplyObject(rep);
    const char *rel[] = {"EVALSHA", r->release_sha, "1", key, tok};
    rep = raw_cmd(r, 5, rel, NULL);
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) die("raw release failed");
    freeReplyObject(rep);
}

/* One raw fenced acquire (returned: its duration in µs), then an untimed release. */
static double raw_fenced(raw *r, const char *key, const char *fence_key, int release)
{
    char tok[TOKEN_HEX + 1];
    next_token(r, tok);
    const char *acq[] = {"EVALSHA", r->acquire_sha, "2", key, fence_key, tok, "30000"};
    double t0 = now_us();
    redisReply *rep = raw_cmd(r, 7, acq, NULL);
    double t1 = now_us();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER || rep->element[0]->integer != 1)
        die("raw fenced acquire did not acquire");
    freeReplyObject(rep);
    if (release) {
        const char *rel[] = {"EVALSHA", r->release_sha, "1", key, tok};
        rep = raw_cmd(r, 5, rel, NULL);
        if (rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) die("raw release failed");
        freeReplyObject(rep);
    }
    return t1 - t0;
}

/* ---- redpat ---- */

static void check(int rc, const rp_error *e, const char *what)
{
    if (rc != RP_OK) die("%s: %s: %s", what, rp_status_name(rc), e->message);
}

static void rp_cycle(rp_lock *l)
{
    rp_lock_acquisition res;
    rp_error e;
    check(rp_lock_acquire(l, NULL, &res, &e), &e, "rp_lock_acquire");
    if (!res.acquired) die("rp_lock_acquire: busy");
    check(rp_lock_release(l, &e), &e, "rp_lock_release");
}

static double rp_fenced(rp_lock *l, int release)
{
    rp_lock_acquisition res;
    rp_error e;
    double t0 = now_us();
    int rc = rp_lock_acquire(l, NULL, &res, &e);
    double t1 = now_us();
    check(rc, &e, "rp_lock_acquire (fenced)");
    if (!res.acquired || res.fence <= 0) die("fenced acquire did not acquire");
    if (release) check(rp_lock_release(l, &e), &e, "rp_lock_release");
    return t1 - t0;
}

/* ---- INFO commandstats ---- */

typedef struct cmdstats {
    size_t n;
    char name[MAX_CMDS][48];
    long long calls[MAX_CMDS];
    long long usec[MAX_CMDS]; /* server CPU spent in the command (INFO's usec=) */
} cmdstats;

static void read_cmdstats(redisContext *side, cmdstats *s)
{
    redisReply *rep = redisCommand(side, "INFO commandstats");
    if (rep == NULL || rep->type != REDIS_REPLY_STRING) die("INFO commandstats failed");
    s->n = 0;
    for (char *line = rep->str; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (strncmp(line, "cmdstat_", 8) == 0 && s->n < MAX_CMDS) {
            char *colon = strchr(line, ':');
            char *calls = strstr(line, "calls=");
            if (colon != NULL && calls != NULL && (end == NULL || calls < end)) {
                size_t len = (size_t)(colon - line - 8);
                if (len >= sizeof s->name[0]) len = sizeof s->name[0] - 1;
                memcpy(s->name[s->n], line + 8, len);
                s->name[s->n][len] = '\0';
                const char *usec = strstr(line, "usec=");
                s->calls[s->n] = strtoll(calls + 6, NULL, 10);
                s->usec[s->n] = usec != NULL && (end == NULL || usec < end)
                                    ? strtoll(usec + 5, NULL, 10) : 0;
                s->n++;
            }
        }
        line = end != NULL ? end + 1 : NULL;
    }
    freeReplyObject(rep);
}

static long long calls_of(const cmdstats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return s->calls[i];
    return 0;
}

static long long usec_of(const cmdstats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return s->usec[i];
    return 0;
}

/* Server CPU (us) the counted pass cost, our own INFO calls left out. */
static long long server_usec(const cmdstats *before, const cmdstats *after)
{
    long long total = 0;
    for (size_t i = 0; i < after->n; i++)
        if (strcmp(after->name[i], "info") != 0)
            total += after->usec[i] - usec_of(before, after->name[i]);
    return total;
}

/* after - before, without our own INFO calls; returns the total, fills delta. */
static long long diff_stats(const cmdstats *before, const cmdstats *after, cmdstats *delta)
{
    long long total = 0;
    delta->n = 0;
    for (size_t i = 0; i < after->n; i++) {
        if (strcmp(after->name[i], "info") == 0) continue;
        long long d = after->calls[i] - calls_of(before, after->name[i]);
        if (d == 0) continue;
        memcpy(delta->name[delta->n], after->name[i], sizeof delta->name[0]);
        delta->calls[delta->n++] = d;
        total += d;
    }
    return total;
}

static void print_delta(const cmdstats *d, double per)
{
    printf("{");
    for (size_t i = 0; i < d->n; i++)
        printf("%s\"%s\": %.3f", i ? ", " : "", d->name[i], (double)d->calls[i] / per);
    printf("}");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Median of v[0..n) (n <= 1000); v keeps its run order. */
static double median(const double *v, size_t n)
{
    double s[1000];
    memcpy(s, v, n * sizeof v[0]);
    qsort(s, n, sizeof s[0], cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

static void print_runs(const char *name, const double *v, size_t n, int last)
{
    printf("    \"%s\": [", name);
    for (size_t i = 0; i < n; i++) printf("%s%.3f", i ? ", " : "", v[i]);
    printf("]%s\n", last ? "" : ",");
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) die("usage: bench_lock URL ITERATIONS RUNS [SCRIPTS_DIR]");
    const char *url = argv[1];
    long iters = strtol(argv[2], NULL, 10);
    long runs = strtol(argv[3], NULL, 10);
    const char *dir = argc == 5 ? argv[4] : REDPAT_SCRIPTS_DIR;
    if (iters <= 0 || runs <= 0 || runs > 1000) die("ITERATIONS and RUNS must be > 0");

    raw r;
    memset(&r, 0, sizeof r);
    r.c = raw_connect(url);
    redisContext *side = raw_connect(url);
    script_load(&r, dir, "lock_release.lua", r.release_sha);
    script_load(&r, dir, "lock_acquire_fenced.lua", r.acquire_sha);

    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = "rpbench";
    rp_client *client = NULL;
    rp_error e;
    check(rp_client_new(&client, &o, &e), &e, "rp_client_new");
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    lo.ttl_ms = TTL_MS;
    rp_lock *plain = NULL, *fenced = NULL;
    check(rp_lock_new(&plain, client, "cyc-r", 5, &lo, &e), &e, "rp_lock_new");
    lo.fenced = 1;
    check(rp_lock_new(&fenced, client, "fen-r", 5, &lo, &e), &e, "rp_lock_new");
    /* The floor's keys have the same shape and length as redpat's. */
    const char *raw_key = "rpbench:lock:{cyc-h}";
    const char *raw_fkey = "rpbench:lock:{fen-h}";
    const char *raw_fence = "rpbench:lock:{fen-h}:fence";

    /* Warm-up: connections open, scripts cached, code paged in. */
    long warm = iters / 10 < 100 ? 100 : iters / 10;
    for (long i = 0; i < warm; i++) {
        rp_cycle(plain);
        raw_cycle(&r, raw_key);
        (void)rp_fenced(fenced, 1);
        (void)raw_fenced(&r, raw_fkey, raw_fence, 1);
    }

    double *rc_us = calloc((size_t)runs, sizeof(double));
    double *hc_us = calloc((size_t)runs, sizeof(double));
    double *rf_us = calloc((size_t)runs, sizeof(double));
    double *hf_us = calloc((size_t)runs, sizeof(double));
    if (!rc_us || !hc_us || !rf_us || !hf_us) die("out of memory");
    /* Each run does ITERATIONS operations per side, in chunks of CHUNK that alternate
     * between the sides (and swap which goes first every chunk), so both see the same
     * machine load; a burst of noise hits both rather than one. */
    for (long run = 0; run < runs; run++) {
        double t_rc = 0, t_hc = 0, t_rf = 0, t_hf = 0;
        for (long done = 0, chunk = 0; done < iters; done += CHUNK, chunk++) {
            long n = iters - done < CHUNK ? iters - done : CHUNK;
            for (int k = 0; k < 2; k++) {
                int redpat_turn = (k == 0) == (chunk % 2 == 0);
                double t0 = now_us();
                if (redpat_turn) {
                    for (long i = 0; i < n; i++) rp_cycle(plain);
                    t_rc += now_us() - t0;
                } else {
                    for (long i = 0; i < n; i++) raw_cycle(&r, raw_key);
                    t_hc += now_us() - t0;
                }
            }
            for (int k = 0; k < 2; k++) {
                int redpat_turn = (k == 0) == (chunk % 2 == 0);
                if (redpat_turn)
                    for (long i = 0; i < n; i++) t_rf += rp_fenced(fenced, 1);
                else
                    for (long i = 0; i < n; i++) t_hf += raw_fenced(&r, raw_fkey, raw_fence, 1);
            }
        }
        rc_us[run] = t_rc / (double)iters;
        hc_us[run] = t_hc / (double)iters;
        rf_us[run] = t_rf / (double)iters;
        hf_us[run] = t_hf / (double)iters;
    }

    /* Counting passes. Cycles: the same lock over and over. Fenced acquires: distinct locks,
     * not released inside the pass (a release would add its own commands). */
    long count = iters < 1000 ? iters : 1000;
    cmdstats s0, s1, d_rc, d_hc, d_rf, d_hf;
    read_cmdstats(side, &s0);
    for (long i = 0; i < count; i++) rp_cycle(plain);
    read_cmdstats(side, &s1);
    long long t_rc = diff_stats(&s0, &s1, &d_rc), u_rc = server_usec(&s0, &s1);
    read_cmdstats(side, &s0);
    for (long i = 0; i < count; i++) raw_cycle(&r, raw_key);
    read_cmdstats(side, &s1);
    long long t_hc = diff_stats(&s0, &s1, &d_hc), u_hc = server_usec(&s0, &s1);

    rp_lock **many = calloc((size_t)count, sizeof *many);
    if (many == NULL) die("out of memory");
    for (long i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "cnt-r-%ld", i);
        check(rp_lock_new(&many[i], client, name, strlen(name), &lo, &e), &e, "rp_lock_new");
    }
    read_cmdstats(side, &s0);
    for (long i = 0; i < count; i++) (void)rp_fenced(many[i], 0);
    read_cmdstats(side, &s1);
    long long t_rf = diff_stats(&s0, &s1, &d_rf), u_rf = server_usec(&s0, &s1);
    for (long i = 0; i < count; i++) {
        check(rp_lock_release(many[i], &e), &e, "rp_lock_release");
        rp_lock_free(many[i]);
    }
    free(many);
    read_cmdstats(side, &s0);
    for (long i = 0; i < count; i++) {
        char key[64], fkey[80];
        snprintf(key, sizeof key, "rpbench:lock:{cnt-h-%ld}", i);
        snprintf(fkey, sizeof fkey, "%s:fence", key);
        (void)raw_fenced(&r, key, fkey, 0);
    }
    read_cmdstats(side, &s1);
    long long t_hf = diff_stats(&s0, &s1, &d_hf), u_hf = server_usec(&s0, &s1);

    /* The floor sends 2 commands per cycle and 1 per fenced acquire; the rest of its
     * counts ran inside scripts. */
    double inner_cycle = (double)t_hc / (double)count - 2.0;
    double inner_fenced = (double)t_hf / (double)count - 1.0;
    double rt_cycle = (double)t_rc / (double)count - inner_cycle;
    double rt_fenced = (double)t_rf / (double)count - inner_fenced;

    redisReply *ver = redisCommand(side, "INFO server");
    char redis_version[32] = "unknown";
    if (ver != NULL && ver->type == REDIS_REPLY_STRING) {
        const char *v = strstr(ver->str, "redis_version:");
        if (v != NULL) sscanf(v + 14, "%31[^\r\n]", redis_version);
    }
    freeReplyObject(ver);
    /* Clean up the counting pass's keys and the fence counters. */
    redisReply *del = redisCommand(side, "EVAL %s 0",
                                   "for _, k in ipairs(redis.call('KEYS', 'rpbench:*')) do "
                                   "redis.call('DEL', k) end return 0");
    freeReplyObject(del);

    double m_rc = median(rc_us, (size_t)runs), m_hc = median(hc_us, (size_t)runs);
    double m_rf = median(rf_us, (size_t)runs), m_hf = median(hf_us, (size_t)runs);
    /* The two sides of a run are measured side by side, so their ratio is paired: the
     * median of the per-run ratios is less sensitive to machine load than the ratio of
     * medians (both are printed). */
    double *ratio = calloc((size_t)runs, sizeof(double));
    if (ratio == NULL) die("out of memory");
    for (long i = 0; i < runs; i++) ratio[i] = rc_us[i] / hc_us[i];
    double cycle_ratio = median(ratio, (size_t)runs);
    for (long i = 0; i < runs; i++) ratio[i] = rf_us[i] / hf_us[i];
    double fenced_ratio = median(ratio, (size_t)runs);
    free(ratio);
    printf("{\n");
    printf("  \"bench\": \"c_lock\",\n");
    printf("  \"redpat_version\": \"%s\",\n", RP_VERSION);
    printf("  \"hiredis_version\": \"%d.%d.%d\",\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    printf("  \"redis_version\": \"%s\",\n", redis_version);
    printf("  \"iterations\": %ld,\n  \"runs\": %ld,\n  \"interleave_chunk\": %d,\n", iters,
           runs, CHUNK);
    printf("  \"redpat_cycle_us\": %.3f,\n  \"hiredis_cycle_us\": %.3f,\n", m_rc, m_hc);
    printf("  \"cycle_ratio\": %.4f,\n", cycle_ratio);
    printf("  \"cycle_ratio_of_medians\": %.4f,\n", m_rc / m_hc);
    printf("  \"redpat_fenced_us\": %.3f,\n  \"hiredis_fenced_us\": %.3f,\n", m_rf, m_hf);
    printf("  \"fenced_ratio\": %.4f,\n", fenced_ratio);
    printf("  \"fenced_ratio_of_medians\": %.4f,\n", m_rf / m_hf);
    printf("  \"roundtrips_per_cycle\": %.3f,\n", rt_cycle);
    printf("  \"roundtrips_per_fenced_acquire\": %.3f,\n", rt_fenced);
    printf("  \"hiredis_roundtrips_per_cycle\": 2,\n");
    printf("  \"hiredis_roundtrips_per_fenced_acquire\": 1,\n");
    printf("  \"server_usec_per_cycle\": %.3f,\n  \"hiredis_server_usec_per_cycle\": %.3f,\n",
           (double)u_rc / (double)count, (double)u_hc / (double)count);
    printf("  \"server_usec_per_fenced_acquire\": %.3f,\n", (double)u_rf / (double)count);
    printf("  \"hiredis_server_usec_per_fenced_acquire\": %.3f,\n", (double)u_hf / (double)count);
    printf("  \"commandstats_per_op\": {\n    \"redpat_cycle\": ");
    print_delta(&d_rc, (double)count);
    printf(",\n    \"hiredis_cycle\": ");
    print_delta(&d_hc, (double)count);
    printf(",\n    \"redpat_fenced_acquire\": ");
    print_delta(&d_rf, (double)count);
    printf(",\n    \"hiredis_fenced_acquire\": ");
    print_delta(&d_hf, (double)count);
    printf("\n  },\n  \"counted_ops\": %ld,\n", count);
    printf("  \"runs_us\": {\n");
    print_runs("redpat_cycle", rc_us, (size_t)runs, 0);
    print_runs("hiredis_cycle", hc_us, (size_t)runs, 0);
    print_runs("redpat_fenced", rf_us, (size_t)runs, 0);
    print_runs("hiredis_fenced", hf_us, (size_t)runs, 1);
    printf("  }\n}\n");

    free(rc_us);
    free(hc_us);
    free(rf_us);
    free(hf_us);
    rp_lock_free(plain);
    rp_lock_free(fenced);
    rp_client_free(client);
    redisFree(r.c);
    redisFree(side);
    return 0;
}
