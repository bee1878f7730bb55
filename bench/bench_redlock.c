/* bench_redlock URLS ITERATIONS RUNS
 *
 * Redlock over N independent servers (URLS: their redis:// URLs joined by ','; make bench
 * gives it 5) beside redpat's single-node lock on the first of them, from the same process:
 *
 *   redlock cycle   rp_lock_acquire (try once) + rp_lock_release on a Redlock handle
 *                   (rp_redlock_new over a client of all N URLs)
 *   single cycle    the same two calls on a single-node lock (a client over URL 1 alone)
 *   using           rp_lock_using with an empty function, on each of the two locks: the
 *                   cost of the scoped form (CALL, the renewal helper) over a bare cycle
 *
 * The four sides are interleaved in chunks of CHUNK cycles within each run (the order
 * rotates every chunk) so machine noise hits all alike; each figure is the median over RUNS
 * runs of the mean microseconds per cycle, and each ratio the median of the per-run (paired)
 * ratios. The process's own CPU time (getrusage) per cycle is measured the same way.
 *
 * Round trips: a counting pass drives acquire and release ops with a loop of its own over
 * the client's transport and counts the IO rounds each takes (a Redlock round sends to all N
 * servers before reading any reply, so one round is one parallel round trip). INFO
 * commandstats of every server confirms it from the servers' side: the calls each server
 * received per acquire and per release (Redis counts the commands a script runs too), and
 * the server CPU (usec=) a cycle costs, summed over the servers. INFO stats gives the
 * connections the client opened per cycle (a round that ends at its quorum closes the
 * connections still waiting, and the next round opens them again), and DBSIZE the keys a
 * pass of releases left behind (to expire with their TTL).
 *
 * Prints one JSON object on stdout. Exit status 0, or 1 with a message on stderr. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <redpat/redpat.h>

#define BENCH_NAME "bench_redlock"
#include "bench_util.h"

#define TTL_MS 30000
/* Per-node timeout of the Redlock rounds: generous, so a machine busy with other work slows
 * the bench down instead of failing it (it only matters when a node is that late). */
#define NODE_TIMEOUT_MS 1000
#define MAX_SERVERS 16   /* RP_CLIENT_ENDPOINTS_MAX */
#define MAX_CMDS 64
#define MAX_RUNS 1000
#define CHUNK 50         /* cycles per side before switching sides */
#define COUNT_MAX 1000   /* cycles of a counting pass */
#define URLS_MAX 4096    /* bytes of the URL list */

enum side { REDLOCK, SINGLE, USING_REDLOCK, USING_SINGLE, NSIDES };
static const char *const side_name[NSIDES] = {"redlock_cycle", "single_cycle",
                                              "redlock_using", "single_using"};


/* CPU time (user + system) of this process so far, every thread included. */
static double cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) die("getrusage failed");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void check(int rc, const rp_error *e, const char *what)
{
    if (rc != RP_OK) die("%s: %s: %s", what, rp_status_name(rc), e->message);
}

/* ---- the locks ---- */

/* A Redlock handle over every endpoint of client5. */
static rp_lock *redlock_new(rp_client *client5, const char *name)
{
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    ro.ttl_ms = TTL_MS;
    ro.node_timeout_ms = NODE_TIMEOUT_MS;
    rp_lock *l = NULL;
    rp_error e;
    check(rp_redlock_new(&l, client5, name, strlen(name), &ro, &e), &e, "rp_redlock_new");
    return l;
}

static rp_lock *single_new(rp_client *client1, const char *name)
{
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    lo.ttl_ms = TTL_MS;
    rp_lock *l = NULL;
    rp_error e;
    check(rp_lock_new(&l, client1, name, strlen(name), &lo, &e), &e, "rp_lock_new");
    return l;
}

static void cycle(rp_lock *l)
{
    rp_lock_acquisition res;
    rp_error e;
    check(rp_lock_acquire(l, NULL, &res, &e), &e, "rp_lock_acquire");
    if (!res.acquired) die("rp_lock_acquire: busy");
    check(rp_lock_release(l, &e), &e, "rp_lock_release");
}

static int empty_fn(void *ud, rp_error *err)
{
    (void)ud;
    (void)err;
    return RP_OK;
}

static void using_cycle(rp_lock *l)
{
    rp_lock_using_result res;
    rp_error e;
    check(rp_lock_using(l, NULL, empty_fn, NULL, &res, &e), &e, "rp_lock_using");
    if (!res.acquired) die("rp_lock_using: busy");
}

static void run_side(enum side s, rp_lock *const locks[NSIDES], long n)
{
    for (long i = 0; i < n; i++) {
        if (s == USING_REDLOCK || s == USING_SINGLE)
            using_cycle(locks[s]);
        else
            cycle(locks[s]);
    }
}

/* Drives op to its end over client's transport as rp_op_run does, counting its IO rounds.
 * Returns the op's status. */
static int run_counting(rp_client *client, rp_op *op, long *rounds, rp_error *err)
{
    rp_transport *t = rp_client_transport(client);
    if (t == NULL) die("client without a transport");
    for (;;) {
        switch (rp_op_step(op, rp_monotonic_ms())) {
        case RP_STEP_IO: {
            rp_error e;
            (*rounds)++;
            t->cls->round(t, op, 0, &e);
            break;
        }
        case RP_STEP_DONE:
            return RP_OK;
        case RP_STEP_ERROR:
            *err = *rp_op_error(op);
            return err->code;
        default:
            die("%s: unexpected step (a try-once acquire or a release neither sleeps, calls"
                " nor emits)", rp_op_name(op));
        }
    }
}

static void counted_acquire(rp_client *client, rp_lock *l, long *rounds)
{
    rp_op *op = NULL;
    rp_error e;
    check(rp_lock_acquire_op(&op, l, NULL, &e), &e, "rp_lock_acquire_op");
    check(run_counting(client, op, rounds, &e), &e, "acquire");
    rp_lock_acquisition res;
    if (rp_lock_acquire_result(op, &res) != RP_OK || !res.acquired) die("counted acquire: busy");
    rp_op_free(op);
}

static void counted_release(rp_client *client, rp_lock *l, long *rounds)
{
    rp_op *op = NULL;
    rp_error e;
    check(rp_lock_release_op(&op, l, &e), &e, "rp_lock_release_op");
    check(run_counting(client, op, rounds, &e), &e, "release");
    rp_op_free(op);
}

/* ---- the servers' side: INFO commandstats over raw hiredis ---- */

typedef struct cmdstats {
    size_t n;
    char name[MAX_CMDS][48];
    long long calls[MAX_CMDS];
    long long usec[MAX_CMDS]; /* server CPU spent in the command (INFO's usec=) */
} cmdstats;

static redisContext *raw_connect(const char *url)
{
    char host[256];
    int port = 6379, db = 0;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) die("URL must be redis://host:port[/db]: %s", url);
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) p = at + 1;
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= sizeof host) die("bad host in %s", url);
    memcpy(host, p, n);
    host[n] = '\0';
    p += n;
    if (*p == ':') port = (int)strtol(p + 1, (char **)&p, 10);
    if (*p == '/') db = (int)strtol(p + 1, NULL, 10);
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

static size_t find_cmd(const cmdstats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return i;
    return SIZE_MAX;
}

/* after - before without our own INFO calls: the calls per command (in delta) and the
 * server CPU in all (returned, usec). */
static long long diff_stats(const cmdstats *before, const cmdstats *after, cmdstats *delta)
{
    long long usec = 0;
    delta->n = 0;
    for (size_t i = 0; i < after->n; i++) {
        if (strcmp(after->name[i], "info") == 0) continue;
        size_t j = find_cmd(before, after->name[i]);
        long long calls = after->calls[i] - (j != SIZE_MAX ? before->calls[j] : 0);
        long long us = after->usec[i] - (j != SIZE_MAX ? before->usec[j] : 0);
        usec += us;
        if (calls == 0) continue;
        memcpy(delta->name[delta->n], after->name[i], sizeof delta->name[0]);
        delta->calls[delta->n] = calls;
        delta->usec[delta->n++] = us;
    }
    return usec;
}

/* INFO stats total_connections_received: connections the server has accepted. Our own
 * side connections stay open, so a pass's delta is the connections the client opened. */
static long long connections_received(redisContext *side)
{
    redisReply *rep = redisCommand(side, "INFO stats");
    if (rep == NULL || rep->type != REDIS_REPLY_STRING) die("INFO stats failed");
    const char *v = strstr(rep->str, "total_connections_received:");
    if (v == NULL) die("INFO stats has no total_connections_received");
    long long n = strtoll(v + strlen("total_connections_received:"), NULL, 10);
    freeReplyObject(rep);
    return n;
}

static long long keys_all(redisContext **sides, size_t n)
{
    long long keys = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *rep = redisCommand(sides[i], "DBSIZE");
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) die("DBSIZE failed");
        keys += rep->integer;
        freeReplyObject(rep);
    }
    return keys;
}

typedef struct pass {
    cmdstats delta[MAX_SERVERS]; /* per server */
    long long usec;              /* server CPU, all servers */
    long long connections;       /* connections opened, all servers */
    long rounds;                 /* IO rounds the client drove */
} pass;

typedef struct snapshot {
    cmdstats stats[MAX_SERVERS];
    long long connections[MAX_SERVERS];
} snapshot;

static void stats_all(redisContext **sides, size_t n, snapshot *out)
{
    for (size_t i = 0; i < n; i++) {
        read_cmdstats(sides[i], &out->stats[i]);
        out->connections[i] = connections_received(sides[i]);
    }
}

static void end_pass(redisContext **sides, size_t n, const snapshot *before, pass *p)
{
    static snapshot after;
    stats_all(sides, n, &after);
    p->usec = 0;
    p->connections = 0;
    for (size_t i = 0; i < n; i++) {
        p->usec += diff_stats(&before->stats[i], &after.stats[i], &p->delta[i]);
        p->connections += after.connections[i] - before->connections[i];
    }
}

static long long total_calls(const cmdstats *d)
{
    long long t = 0;
    for (size_t i = 0; i < d->n; i++) t += d->calls[i];
    return t;
}

/* The pass's calls per op, server by server: [{"set": 1.000}, ...] */
static void print_pass(const char *key, const pass *p, size_t nservers, long count, int last)
{
    printf("    \"%s\": {", key);
    if (p->rounds > 0) /* counted for the passes driven by run_counting */
        printf("\"rounds_per_op\": %.3f, ", (double)p->rounds / (double)count);
    printf("\"server_usec_per_op\": %.3f, \"connections_per_op\": %.3f,"
           " \"calls_per_op_by_server\": [",
           (double)p->usec / (double)count, (double)p->connections / (double)count);
    for (size_t s = 0; s < nservers; s++) {
        printf("%s{", s ? ", " : "");
        for (size_t i = 0; i < p->delta[s].n; i++)
            printf("%s\"%s\": %.3f", i ? ", " : "", p->delta[s].name[i],
                   (double)p->delta[s].calls[i] / (double)count);
        printf("}");
    }
    printf("], \"usec_per_op_by_server\": [");
    for (size_t s = 0; s < nservers; s++) {
        printf("%s{", s ? ", " : "");
        for (size_t i = 0; i < p->delta[s].n; i++)
            printf("%s\"%s\": %.3f", i ? ", " : "", p->delta[s].name[i],
                   (double)p->delta[s].usec[i] / (double)count);
        printf("}");
    }
    printf("]}%s\n", last ? "" : ",");
}

/* ---- figures ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Median of v[0..n) (n <= MAX_RUNS); v keeps its run order. */
static double median(const double *v, size_t n)
{
    double s[MAX_RUNS];
    memcpy(s, v, n * sizeof v[0]);
    qsort(s, n, sizeof s[0], cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

static double median_ratio(const double *a, const double *b, size_t n)
{
    double r[MAX_RUNS];
    for (size_t i = 0; i < n; i++) r[i] = a[i] / b[i];
    return median(r, n);
}

int main(int argc, char **argv)
{
    if (argc != 4) die("usage: bench_redlock URLS ITERATIONS RUNS (URLS ','-joined)");
    const char *urls = argv[1];
    long iters = strtol(argv[2], NULL, 10);
    long runs = strtol(argv[3], NULL, 10);
    if (iters <= 0 || runs <= 0 || runs > MAX_RUNS) die("ITERATIONS > 0, RUNS 1..%d", MAX_RUNS);
    if (strlen(urls) >= URLS_MAX) die("URLS too long");

    /* One raw connection per server, for INFO; and the first URL alone. */
    char list[URLS_MAX], first[URLS_MAX];
    redisContext *sides[MAX_SERVERS];
    size_t nservers = 0;
    memcpy(list, urls, strlen(urls) + 1);
    for (char *save = NULL, *u = strtok_r(list, ",", &save); u != NULL;
         u = strtok_r(NULL, ",", &save)) {
        if (nservers == MAX_SERVERS) die("at most %d URLs", MAX_SERVERS);
        if (nservers == 0) memcpy(first, u, strlen(u) + 1);
        sides[nservers++] = raw_connect(u);
    }
    if (nservers < 3 || nservers % 2 == 0) die("Redlock needs an odd number >= 3 of URLs");

    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.key_namespace = "rpbench";
    rp_client *client5 = NULL, *client1 = NULL;
    rp_error e;
    o.url = urls;
    check(rp_client_new(&client5, &o, &e), &e, "rp_client_new (all URLs)");
    o.url = first;
    check(rp_client_new(&client1, &o, &e), &e, "rp_client_new (first URL)");

    rp_lock *locks[NSIDES];
    locks[REDLOCK] = redlock_new(client5, "rl-cycle");
    locks[SINGLE] = single_new(client1, "sn-cycle");
    locks[USING_REDLOCK] = redlock_new(client5, "rl-using");
    locks[USING_SINGLE] = single_new(client1, "sn-using");

    /* Warm-up: connections open (all servers), scripts cached, code paged in. */
    long warm = iters / 10 < 100 ? 100 : iters / 10;
    for (int s = 0; s < NSIDES; s++) run_side((enum side)s, locks, warm);

    double *us[NSIDES], *cpu[NSIDES];
    for (int s = 0; s < NSIDES; s++)
        if ((us[s] = calloc((size_t)runs, sizeof(double))) == NULL ||
            (cpu[s] = calloc((size_t)runs, sizeof(double))) == NULL)
            die("out of memory");
    for (long run = 0; run < runs; run++) {
        double t[NSIDES] = {0}, c[NSIDES] = {0};
        for (long done = 0, chunk = 0; done < iters; done += CHUNK, chunk++) {
            long n = iters - done < CHUNK ? iters - done : CHUNK;
            for (int k = 0; k < NSIDES; k++) {
                enum side s = (enum side)((k + chunk) % NSIDES);
                double c0 = cpu_us(), t0 = now_us();
                run_side(s, locks, n);
                t[s] += now_us() - t0;
                c[s] += cpu_us() - c0;
            }
        }
        for (int s = 0; s < NSIDES; s++) {
            us[s][run] = t[s] / (double)iters;
            cpu[s][run] = c[s] / (double)iters;
        }
    }

    /* Counting passes: acquires on distinct handles held through the pass (a release
     * would add its commands), then their releases; then whole cycles for the CPU. */
    long count = iters < COUNT_MAX ? iters : COUNT_MAX;
    static pass p_rl_acq, p_rl_rel, p_sn_acq, p_sn_rel, p_rl_cyc, p_sn_cyc;
    static snapshot before;
    long long rl_keys_left = 0, sn_keys_left = 0;
    rp_lock **many = calloc((size_t)count, sizeof *many);
    if (many == NULL) die("out of memory");
    for (int redlock = 1; redlock >= 0; redlock--) {
        rp_client *c = redlock ? client5 : client1;
        pass *acq = redlock ? &p_rl_acq : &p_sn_acq, *rel = redlock ? &p_rl_rel : &p_sn_rel;
        for (long i = 0; i < count; i++) {
            char name[32];
            snprintf(name, sizeof name, "%s-count-%ld", redlock ? "rl" : "sn", i);
            many[i] = redlock ? redlock_new(client5, name) : single_new(client1, name);
        }
        long long keys0 = keys_all(sides, nservers);
        stats_all(sides, nservers, &before);
        for (long i = 0; i < count; i++) counted_acquire(c, many[i], &acq->rounds);
        end_pass(sides, nservers, &before, acq);
        stats_all(sides, nservers, &before);
        for (long i = 0; i < count; i++) counted_release(c, many[i], &rel->rounds);
        end_pass(sides, nservers, &before, rel);
        /* Keys a release left behind (they expire with their TTL). */
        long long left = keys_all(sides, nservers) - keys0;
        if (redlock) rl_keys_left = left; else sn_keys_left = left;
        for (long i = 0; i < count; i++) rp_lock_free(many[i]);
    }
    free(many);
    stats_all(sides, nservers, &before);
    run_side(REDLOCK, locks, count);
    end_pass(sides, nservers, &before, &p_rl_cyc);
    stats_all(sides, nservers, &before);
    run_side(SINGLE, locks, count);
    end_pass(sides, nservers, &before, &p_sn_cyc);
    static pass p_rl_using, p_sn_using;
    stats_all(sides, nservers, &before);
    run_side(USING_REDLOCK, locks, count);
    end_pass(sides, nservers, &before, &p_rl_using);
    stats_all(sides, nservers, &before);
    run_side(USING_SINGLE, locks, count);
    end_pass(sides, nservers, &before, &p_sn_using);
    p_rl_cyc.rounds = p_rl_acq.rounds + p_rl_rel.rounds;
    p_sn_cyc.rounds = p_sn_acq.rounds + p_sn_rel.rounds;

    /* Every server took exactly one command per acquire, and the client drove one round:
     * one parallel round trip per acquire. */
    double min_calls = 1e300, max_calls = 0;
    for (size_t s = 0; s < nservers; s++) {
        double c = (double)total_calls(&p_rl_acq.delta[s]) / (double)count;
        if (c < min_calls) min_calls = c;
        if (c > max_calls) max_calls = c;
    }

    redisReply *ver = redisCommand(sides[0], "INFO server");
    char redis_version[32] = "unknown";
    if (ver != NULL && ver->type == REDIS_REPLY_STRING) {
        const char *v = strstr(ver->str, "redis_version:");
        if (v != NULL) sscanf(v + 14, "%31[^\r\n]", redis_version);
    }
    freeReplyObject(ver);
    for (size_t s = 0; s < nservers; s++) {
        redisReply *del = redisCommand(sides[s], "EVAL %s 0",
                                       "for _, k in ipairs(redis.call('KEYS', 'rpbench:*')) do "
                                       "redis.call('DEL', k) end return 0");
        freeReplyObject(del);
    }

    double med[NSIDES];
    for (int s = 0; s < NSIDES; s++) med[s] = median(us[s], (size_t)runs);
    printf("{\n");
    printf("  \"bench\": \"c_redlock\",\n");
    printf("  \"redpat_version\": \"%s\",\n", RP_VERSION);
    printf("  \"hiredis_version\": \"%d.%d.%d\",\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    printf("  \"redis_version\": \"%s\",\n", redis_version);
    printf("  \"servers\": %zu,\n", nservers);
    printf("  \"node_timeout_ms\": %d,\n", NODE_TIMEOUT_MS);
    printf("  \"iterations\": %ld,\n  \"runs\": %ld,\n  \"interleave_chunk\": %d,\n", iters,
           runs, CHUNK);
    printf("  \"medians_us\": {");
    for (int s = 0; s < NSIDES; s++) printf("%s\"%s\": %.3f", s ? ", " : "", side_name[s], med[s]);
    printf("},\n");
    printf("  \"client_cpu_us\": {");
    for (int s = 0; s < NSIDES; s++)
        printf("%s\"%s\": %.3f", s ? ", " : "", side_name[s], median(cpu[s], (size_t)runs));
    printf("},\n");
    printf("  \"redlock_over_single_ratio\": %.4f,\n",
           median_ratio(us[REDLOCK], us[SINGLE], (size_t)runs));
    printf("  \"redlock_over_single_ratio_of_medians\": %.4f,\n", med[REDLOCK] / med[SINGLE]);
    printf("  \"single_using_over_cycle_ratio\": %.4f,\n",
           median_ratio(us[USING_SINGLE], us[SINGLE], (size_t)runs));
    printf("  \"redlock_using_over_cycle_ratio\": %.4f,\n",
           median_ratio(us[USING_REDLOCK], us[REDLOCK], (size_t)runs));
    printf("  \"single_using_overhead_us\": %.3f,\n", med[USING_SINGLE] - med[SINGLE]);
    printf("  \"redlock_using_overhead_us\": %.3f,\n", med[USING_REDLOCK] - med[REDLOCK]);
    printf("  \"redlock_rounds_per_acquire\": %.3f,\n",
           (double)p_rl_acq.rounds / (double)count);
    printf("  \"redlock_rounds_per_release\": %.3f,\n",
           (double)p_rl_rel.rounds / (double)count);
    printf("  \"redlock_calls_per_acquire_per_server_min\": %.3f,\n", min_calls);
    printf("  \"redlock_calls_per_acquire_per_server_max\": %.3f,\n", max_calls);
    printf("  \"single_rounds_per_acquire\": %.3f,\n", (double)p_sn_acq.rounds / (double)count);
    printf("  \"redlock_server_usec_per_cycle\": %.3f,\n",
           (double)p_rl_cyc.usec / (double)count);
    printf("  \"single_server_usec_per_cycle\": %.3f,\n", (double)p_sn_cyc.usec / (double)count);
    printf("  \"redlock_connections_per_cycle\": %.3f,\n",
           (double)p_rl_cyc.connections / (double)count);
    printf("  \"single_connections_per_cycle\": %.3f,\n",
           (double)p_sn_cyc.connections / (double)count);
    printf("  \"redlock_keys_left_after_release\": %lld,\n", rl_keys_left);
    printf("  \"single_keys_left_after_release\": %lld,\n", sn_keys_left);
    printf("  \"counted_ops\": %ld,\n", count);
    printf("  \"passes\": {\n");
    print_pass("redlock_acquire", &p_rl_acq, nservers, count, 0);
    print_pass("redlock_release", &p_rl_rel, nservers, count, 0);
    print_pass("redlock_cycle", &p_rl_cyc, nservers, count, 0);
    print_pass("single_acquire", &p_sn_acq, 1, count, 0);
    print_pass("single_release", &p_sn_rel, 1, count, 0);
    print_pass("single_cycle", &p_sn_cyc, 1, count, 0);
    print_pass("redlock_using", &p_rl_using, nservers, count, 0);
    print_pass("single_using", &p_sn_using, 1, count, 1);
    printf("  },\n  \"runs_us\": {\n");
    for (int s = 0; s < NSIDES; s++) {
        printf("    \"%s\": [", side_name[s]);
        for (long i = 0; i < runs; i++) printf("%s%.3f", i ? ", " : "", us[s][i]);
        printf("]%s\n", s + 1 < NSIDES ? "," : "");
    }
    printf("  }\n}\n");

    for (int s = 0; s < NSIDES; s++) {
        free(us[s]);
        free(cpu[s]);
        rp_lock_free(locks[s]);
    }
    rp_client_free(client5);
    rp_client_free(client1);
    for (size_t s = 0; s < nservers; s++) redisFree(sides[s]);
    return 0;
}
