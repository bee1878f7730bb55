/* cluster_bench SINGLE_URL CLUSTER_URL CLUSTER_NODES OPS ROUNDS THREADS SECONDS MOVES
 *               [SCRIPTS_DIR]
 *
 * redpat on a Redis Cluster beside one Redis node, same machine, same run (issue 12, item 5).
 * SINGLE_URL is one plain node (redis://host:port), CLUSTER_URL the cluster endpoint
 * (redis+cluster://seed[,seed...]), CLUSTER_NODES the cluster's masters as plain node URLs
 * (redis://host:port, separated by ',' or ' '), which the bench talks to directly with
 * hiredis for INFO, CLUSTER SLOTS, SCRIPT LOAD (the floor's scripts, read from SCRIPTS_DIR)
 * and the slot moves. The bench sends no keyless command over redpat.
 *
 *  1. Single-op latency, one client per side: a lock cycle (rp_lock_acquire try-once +
 *     rp_lock_release) and a GCRA rp_ratelimit_check (limit never reached). Per round OPS
 *     ops per side and kind, the sides interleaved in chunks of CHUNK (which side goes first
 *     swaps every chunk) so both see the same machine load; every op is timed. Per round:
 *     p50 and p99 of each side; figures are medians over ROUNDS rounds, ratios the medians
 *     of the per-round (paired) ratios cluster/single.
 *  2. Aggregate throughput: THREADS threads per side, each with its own rp_client (and its
 *     own lock / subject: no contention), looping on the op for SECONDS (after a 0.3 s ramp
 *     that is not counted); beside it the floor, THREADS threads of raw hiredis sending the
 *     same commands, each connected straight to the node of its key. The two sides of a
 *     pair run back to back, which goes first swapping every round. Per window: ops/s, and
 *     the CPU of every redis-server and of the bench process (/proc/PID/stat utime+stime)
 *     and of the whole machine (/proc/stat): the machine has other load, the bench says how
 *     much.
 *  3. A MOVED: the slot of a lock (or GCRA subject) is moved to another master (CLUSTER
 *     SETSLOT IMPORTING / MIGRATING, MIGRATE of its keys, SETSLOT NODE on every master)
 *     while the client is idle; the next K_AFTER calls are timed one by one beside the
 *     K_BEFORE calls before the move; repeated MOVES times per kind (the slot walks round
 *     the masters). The commands the first call after the move caused on the masters come
 *     from INFO commandstats (rejected_calls: the MOVED replies). The control, before each
 *     move: the same move of another slot of the same two masters, the calls after it
 *     timed alike (what the servers' own work after a move costs, without a MOVED).
 *  4. Server CPU per command (INFO commandstats usec / calls deltas, summed over the
 *     masters for the cluster) during the latency passes and during the throughput windows:
 *     totals, and the median over rounds of each round's usec per call.
 *
 * Prints one JSON object on stdout; exit status 0, or 1 with a message on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <redpat/redpat.h>

#define BENCH_NAME "cluster_bench"
#include "bench_util.h"

#define CHUNK 50
#define MAX_NODES 8
#define MAX_ROUNDS 101
#define MAX_THREADS 512
#define MAX_CMDS 96
#define K_BEFORE 20
#define K_AFTER 20
#define MAX_MOVES 200
#define NS "rpbench"
/* per minute: never reached, and small enough that the script answers its one-integer
 * reply (limit * window below 2^53), as a real check of cost 1 does */
#define RL_LIMIT 1000000000LL
#define RL_LIMIT_S "1000000000"
#define RL_WINDOW_MS 60000
#define RL_WINDOW_S "60000"
#define TTL_S "30000"

#ifndef REDPAT_SCRIPTS_DIR
#define REDPAT_SCRIPTS_DIR "core/scripts"
#endif

enum { LOCK = 0, GCRA = 1, KINDS = 2 };
enum { SINGLE = 0, CLUSTER = 1, SIDES = 2 };
enum { RAW_SINGLE = 2, RAW_CLUSTER = 3, VARIANTS = 4 }; /* throughput: variant % SIDES = side */
static const char *const kind_name[KINDS] = {"lock_cycle", "gcra_check"};
static const char *const side_name[SIDES] = {"single", "cluster"};
static const char *const variant_name[VARIANTS] = {"single", "cluster", "hiredis_single",
                                                   "hiredis_cluster"};


static void sleep_us(double us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1e6);
    ts.tv_nsec = (long)((us - (double)ts.tv_sec * 1e6) * 1e3);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n); sorts v. */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    return v[i];
}

/* Median of v[0..n) without reordering v. */
static double median(const double *v, size_t n)
{
    double s[MAX_ROUNDS > MAX_MOVES ? MAX_ROUNDS : MAX_MOVES];
    if (n == 0) return 0;
    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

static char *read_text(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) die("cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) die("cannot read %s", path);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* ---- nodes (hiredis, direct) ---- */

typedef struct node {
    char host[64];
    int port;
    redisContext *c;
    int pid;
    char id[41];
} node;

static void parse_node_url(const char *url, size_t len, node *n)
{
    char buf[256];
    if (len >= sizeof buf) die("node URL too long");
    memcpy(buf, url, len);
    buf[len] = '\0';
    const char *p = buf;
    if (strncmp(p, "redis://", 8) != 0) die("node URL must be redis://host:port: %s", buf);
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) p = at + 1;
    size_t hn = strcspn(p, ":/");
    if (hn == 0 || hn >= sizeof n->host) die("bad host in %s", buf);
    memcpy(n->host, p, hn);
    n->host[hn] = '\0';
    p += hn;
    n->port = *p == ':' ? atoi(p + 1) : 6379;
}

static redisReply *ncmd(node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(n->c, fmt, ap);
    va_end(ap);
    if (r == NULL) die("%s:%d: %s", n->host, n->port, n->c->errstr);
    if (r->type == REDIS_REPLY_ERROR) die("%s:%d: %s: %s", n->host, n->port, fmt, r->str);
    return r;
}

static void node_connect(node *n)
{
    struct timeval tv = {5, 0};
    n->c = redisConnectWithTimeout(n->host, n->port, tv);
    if (n->c == NULL || n->c->err)
        die("connect %s:%d: %s", n->host, n->port, n->c ? n->c->errstr : "oom");
    redisSetTimeout(n->c, tv);
    redisReply *r = ncmd(n, "INFO server");
    const char *p = strstr(r->str, "process_id:");
    if (p == NULL) die("no process_id in INFO server");
    n->pid = atoi(p + 11);
    freeReplyObject(r);
    n->id[0] = '\0';
}

static size_t parse_nodes(const char *list, node *out)
{
    size_t n = 0;
    for (const char *p = list; *p != '\0';) {
        p += strspn(p, ", ");
        size_t len = strcspn(p, ", ");
        if (len == 0) break;
        if (n == MAX_NODES) die("more than %d nodes", MAX_NODES);
        memset(&out[n], 0, sizeof out[n]);
        parse_node_url(p, len, &out[n]);
        n++;
        p += len;
    }
    return n;
}

/* ---- INFO commandstats ---- */

typedef struct cmdstats {
    size_t n;
    char name[MAX_CMDS][48];
    long long calls[MAX_CMDS], usec[MAX_CMDS], rejected[MAX_CMDS];
} cmdstats;

static long long field(const char *line, const char *end, const char *key)
{
    const char *p = strstr(line, key);
    if (p == NULL || (end != NULL && p > end)) return 0;
    return strtoll(p + strlen(key), NULL, 10);
}

static void read_stats(node *nd, cmdstats *s)
{
    redisReply *rep = ncmd(nd, "INFO commandstats");
    s->n = 0;
    for (char *line = rep->str; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (strncmp(line, "cmdstat_", 8) == 0 && s->n < MAX_CMDS) {
            char *colon = strchr(line, ':');
            if (colon != NULL && (end == NULL || colon < end)) {
                size_t len = (size_t)(colon - line - 8);
                if (len >= sizeof s->name[0]) len = sizeof s->name[0] - 1;
                memcpy(s->name[s->n], line + 8, len);
                s->name[s->n][len] = '\0';
                s->calls[s->n] = field(line, end, "calls=");
                s->usec[s->n] = field(line, end, "usec=");
                s->rejected[s->n] = field(line, end, "rejected_calls=");
                s->n++;
            }
        }
        line = end != NULL ? end + 1 : NULL;
    }
    freeReplyObject(rep);
}

static size_t stat_index(const cmdstats *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return i;
    return (size_t)-1;
}

/* acc += after - before (our own INFO / CLUSTER SLOTS left out). */
static void stats_add_delta(cmdstats *acc, const cmdstats *before, const cmdstats *after)
{
    for (size_t i = 0; i < after->n; i++) {
        if (strcmp(after->name[i], "info") == 0) continue;
        size_t b = stat_index(before, after->name[i]);
        long long dc = after->calls[i] - (b != (size_t)-1 ? before->calls[b] : 0);
        long long du = after->usec[i] - (b != (size_t)-1 ? before->usec[b] : 0);
        long long dr = after->rejected[i] - (b != (size_t)-1 ? before->rejected[b] : 0);
        if (dc == 0 && dr == 0) continue;
        size_t a = stat_index(acc, after->name[i]);
        if (a == (size_t)-1) {
            if (acc->n == MAX_CMDS) continue;
            a = acc->n++;
            memcpy(acc->name[a], after->name[i], sizeof acc->name[0]);
            acc->calls[a] = acc->usec[a] = acc->rejected[a] = 0;
        }
        acc->calls[a] += dc;
        acc->usec[a] += du;
        acc->rejected[a] += dr;
    }
}

/* usec per call of command name in s, 0 when it was not called. */
static double upc_of(const cmdstats *s, const char *name)
{
    size_t i = stat_index(s, name);
    return i == (size_t)-1 || s->calls[i] == 0 ? 0.0 : (double)s->usec[i] / (double)s->calls[i];
}

/* {"set": m, "evalsha": m}: the medians over rounds of the per-round usec per call (one
 * preempted command cannot dominate them, as it can a sum). */
static void print_upc_medians(const cmdstats *rounds_stats, size_t n)
{
    static const char *const names[] = {"set", "evalsha"};
    printf("{");
    for (size_t k = 0; k < 2; k++) {
        double v[MAX_ROUNDS];
        for (size_t r = 0; r < n; r++) v[r] = upc_of(&rounds_stats[r], names[k]);
        printf("%s\"%s\": %.3f", k ? ", " : "", names[k], median(v, n));
    }
    printf("}");
}

static void print_stats(const cmdstats *s, double per)
{
    printf("{");
    for (size_t i = 0; i < s->n; i++)
        printf("%s\"%s\": {\"calls\": %.3f, \"usec_per_call\": %.3f, \"rejected\": %.3f}",
               i ? ", " : "", s->name[i], (double)s->calls[i] / per,
               s->calls[i] ? (double)s->usec[i] / (double)s->calls[i] : 0.0,
               (double)s->rejected[i] / per);
    printf("}");
}

/* ---- CPU ---- */

static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (p == NULL) return 0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The machine: busy CPU seconds (all cores) since boot, and the share of it in irq and
 * softirq (loopback TCP's receive side runs there; /proc/PID/stat may not count it). */
static void machine_cpu_s(double *busy, double *irq)
{
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[10] = {0};
    *busy = *irq = 0;
    if (f == NULL) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        double idle = (double)(v[3] + v[4]);
        double all = 0;
        for (int i = 0; i < 8; i++) all += (double)v[i];
        *irq = (double)(v[5] + v[6]) / hz;
        *busy = (all - idle) / hz;
    }
    fclose(f);
}

/* ---- the two sides ---- */

typedef struct side {
    const char *url;
    size_t nnodes;
    node nodes[MAX_NODES];
    rp_client *client; /* the latency client */
    rp_lock *lock;
    rp_ratelimit *rl;
} side;

static void check(int rc, const rp_error *e, const char *what)
{
    if (rc != RP_OK) die("%s: %s: %s", what, rp_status_name(rc), e->message);
}

static rp_client *new_client(const char *url)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = NS;
    rp_client *c = NULL;
    rp_error e;
    check(rp_client_new(&c, &o, &e), &e, url);
    return c;
}

static rp_lock *new_lock(rp_client *c, const char *name)
{
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    rp_error e;
    check(rp_lock_new(&l, c, name, strlen(name), &lo, &e), &e, "rp_lock_new");
    return l;
}

static rp_ratelimit *new_gcra(rp_client *c, const char *name)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    o.algorithm = RP_RATELIMIT_GCRA;
    o.limit = RL_LIMIT;
    o.window_ms = RL_WINDOW_MS;
    rp_ratelimit *rl = NULL;
    rp_error e;
    check(rp_ratelimit_new(&rl, c, name, strlen(name), &o, &e), &e, "rp_ratelimit_new");
    return rl;
}

/* One op; returns RP_OK or the failure (message in e). */
static int do_op(int kind, rp_lock *l, rp_ratelimit *rl, const char *subject, rp_error *e)
{
    if (kind == LOCK) {
        rp_lock_acquisition a;
        int rc = rp_lock_acquire(l, NULL, &a, e);
        if (rc != RP_OK) return rc;
        if (!a.acquired) {
            snprintf(e->message, sizeof e->message, "lock busy");
            return RP_ESTATE;
        }
        return rp_lock_release(l, e);
    }
    rp_ratelimit_decision d;
    int rc = rp_ratelimit_check(rl, subject, strlen(subject), 1, &d, e);
    if (rc == RP_OK && !d.allowed) {
        snprintf(e->message, sizeof e->message, "check refused");
        return RP_ESTATE;
    }
    return rc;
}

static double timed_op(side *s, int kind, const char *subject)
{
    rp_error e;
    double t0 = now_us();
    int rc = do_op(kind, s->lock, s->rl, subject, &e);
    double t1 = now_us();
    if (rc != RP_OK) die("%s %s: %s: %s", s->url, kind_name[kind], rp_status_name(rc), e.message);
    return t1 - t0;
}

static void snap_all(side *s, cmdstats *st)
{
    for (size_t i = 0; i < s->nnodes; i++) read_stats(&s->nodes[i], &st[i]);
}

static void acc_all(side *s, cmdstats *acc, const cmdstats *before, const cmdstats *after)
{
    for (size_t i = 0; i < s->nnodes; i++) stats_add_delta(acc, &before[i], &after[i]);
}

/* ---- throughput ---- */

typedef struct worker {
    int kind;
    /* the floor: raw hiredis on its own connection to the node of its key (else NULL) */
    redisContext *raw;
    char key[96];           /* the lock: rpbench:rlock:{tp-i} */
    char rlkey[96];         /* GCRA: rpbench:rl:raw:{tp-i} */
    const char *sha[KINDS]; /* lock_release.lua, ratelimit.lua */
    unsigned long long serial;
    rp_client *client;
    rp_lock *lock;
    rp_ratelimit *rl;
    char subject[32];
    atomic_long ops;
    atomic_int *stop;
    int rc;
    char msg[RP_ERROR_MESSAGE_MAX];
    pthread_t th;
    char pad[64];
} worker;

/* The same commands as redpat's op, raw: SET NX PX + EVALSHA of the release script (a lock
 * cycle), or EVALSHA of the rate limit script with a GCRA single limit's arguments. */
static int raw_op(worker *w, rp_error *e)
{
    redisReply *r;
    if (w->kind == LOCK) {
        char tok[40];
        snprintf(tok, sizeof tok, "%016llx%016llx", 0x5250ULL, ++w->serial);
        const char *set[] = {"SET", w->key, tok, "NX", "PX", TTL_S};
        r = redisCommandArgv(w->raw, 6, set, NULL);
        if (r == NULL || r->type != REDIS_REPLY_STATUS) goto bad;
        freeReplyObject(r);
        const char *rel[] = {"EVALSHA", w->sha[LOCK], "1", w->key, tok};
        r = redisCommandArgv(w->raw, 5, rel, NULL);
        if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != 1) goto bad;
    } else {
        const char *chk[] = {"EVALSHA", w->sha[GCRA], "1", w->rlkey, "g", RL_LIMIT_S,
                             RL_WINDOW_S};
        r = redisCommandArgv(w->raw, 7, chk, NULL);
        if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0) goto bad;
    }
    freeReplyObject(r);
    return RP_OK;
bad:
    snprintf(e->message, sizeof e->message, "raw %s: %s", kind_name[w->kind],
             r == NULL ? w->raw->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (r != NULL) freeReplyObject(r);
    return RP_EREPLY;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    rp_error e;
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        int rc = w->raw != NULL ? raw_op(w, &e) : do_op(w->kind, w->lock, w->rl, w->subject, &e);
        if (rc != RP_OK) {
            w->rc = rc;
            snprintf(w->msg, sizeof w->msg, "%s", e.message);
            break;
        }
        atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
    }
    return NULL;
}

typedef struct window {
    double ops_per_s;
    double wall_s;
    double node_cpu[MAX_NODES]; /* fraction of one core */
    double bench_cpu;           /* fraction of one core */
    double machine_busy;        /* cores busy, everything on the machine */
    double other_cpu;           /* cores busy with neither our servers nor the bench */
    double irq_cpu;             /* cores busy in irq + softirq (part of machine_busy) */
    long long node_calls[MAX_NODES];
    cmdstats stats; /* commandstats deltas, all nodes */
} window;

static double all_nodes_cpu(side *sides, double *per)
{
    double sum = 0;
    size_t k = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < sides[s].nnodes; i++) {
            double c = proc_cpu_s(sides[s].nodes[i].pid);
            if (per != NULL) per[k++] = c;
            sum += c;
        }
    return sum;
}

static void run_window(side *sides, int sd, worker *ws, size_t nthreads, int kind,
                       double seconds, window *out)
{
    side *s = &sides[sd];
    atomic_int stop = 0;
    for (size_t i = 0; i < nthreads; i++) {
        ws[i].kind = kind;
        ws[i].stop = &stop;
        ws[i].rc = RP_OK;
        atomic_store(&ws[i].ops, 0);
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) die("pthread_create");
    }
    sleep_us(300e3); /* ramp: every thread running, connections hot */
    cmdstats before[MAX_NODES], after[MAX_NODES];
    if (out != NULL) snap_all(s, before);
    long long ops0 = 0;
    for (size_t i = 0; i < nthreads; i++) ops0 += atomic_load(&ws[i].ops);
    double node0[2 * MAX_NODES], node1[2 * MAX_NODES];
    double all0 = all_nodes_cpu(sides, node0), bench0 = proc_cpu_s(0), mb0, mi0;
    machine_cpu_s(&mb0, &mi0);
    double t0 = now_us();
    sleep_us(seconds * 1e6);
    double t1 = now_us();
    long long ops1 = 0;
    for (size_t i = 0; i < nthreads; i++) ops1 += atomic_load(&ws[i].ops);
    double all1 = all_nodes_cpu(sides, node1), bench1 = proc_cpu_s(0), mb1, mi1;
    machine_cpu_s(&mb1, &mi1);
    atomic_store(&stop, 1);
    for (size_t i = 0; i < nthreads; i++) pthread_join(ws[i].th, NULL);
    for (size_t i = 0; i < nthreads; i++)
        if (ws[i].rc != RP_OK)
            die("%s %s thread %zu: %s: %s", s->url, kind_name[kind], i, rp_status_name(ws[i].rc),
                ws[i].msg);
    if (out == NULL) return;
    snap_all(s, after);
    memset(out, 0, sizeof *out);
    double wall = (t1 - t0) / 1e6;
    out->wall_s = wall;
    out->ops_per_s = (double)(ops1 - ops0) / wall;
    size_t off = sd == SINGLE ? 0 : sides[SINGLE].nnodes;
    for (size_t i = 0; i < s->nnodes; i++) {
        out->node_cpu[i] = (node1[off + i] - node0[off + i]) / wall;
        long long c = 0;
        for (size_t k = 0; k < after[i].n; k++)
            if (strcmp(after[i].name[k], "info") != 0) {
                size_t b = stat_index(&before[i], after[i].name[k]);
                c += after[i].calls[k] - (b != (size_t)-1 ? before[i].calls[b] : 0);
            }
        out->node_calls[i] = c;
    }
    out->bench_cpu = (bench1 - bench0) / wall;
    out->machine_busy = (mb1 - mb0) / wall;
    out->other_cpu = out->machine_busy - out->bench_cpu - (all1 - all0) / wall;
    out->irq_cpu = (mi1 - mi0) / wall;
    acc_all(s, &out->stats, before, after);
}

/* ---- slot moves ---- */

static int key_slot(node *n, const char *key)
{
    redisReply *r = ncmd(n, "CLUSTER KEYSLOT %s", key);
    int slot = (int)r->integer;
    freeReplyObject(r);
    return slot;
}

/* The index of the master that owns slot, from CLUSTER SLOTS of node 0. */
static size_t slot_owner(side *s, int slot)
{
    redisReply *r = ncmd(&s->nodes[0], "CLUSTER SLOTS");
    size_t owner = (size_t)-1;
    for (size_t i = 0; i < r->elements && owner == (size_t)-1; i++) {
        redisReply *e = r->element[i];
        if (e->elements < 3) continue;
        if (slot < e->element[0]->integer || slot > e->element[1]->integer) continue;
        redisReply *m = e->element[2];
        int port = (int)m->element[1]->integer;
        for (size_t k = 0; k < s->nnodes; k++)
            if (s->nodes[k].port == port) owner = k;
    }
    freeReplyObject(r);
    if (owner == (size_t)-1) die("slot %d has no known owner", slot);
    return owner;
}

static void move_slot(side *s, int slot, size_t src, size_t dst)
{
    node *a = &s->nodes[src], *b = &s->nodes[dst];
    freeReplyObject(ncmd(b, "CLUSTER SETSLOT %d IMPORTING %s", slot, a->id));
    freeReplyObject(ncmd(a, "CLUSTER SETSLOT %d MIGRATING %s", slot, b->id));
    for (;;) {
        redisReply *keys = ncmd(a, "CLUSTER GETKEYSINSLOT %d 100", slot);
        size_t n = keys->elements;
        if (n > 0) {
            const char **argv = calloc(n + 7, sizeof *argv);
            size_t *lens = calloc(n + 7, sizeof *lens);
            char port[16];
            if (argv == NULL || lens == NULL) die("out of memory");
            snprintf(port, sizeof port, "%d", b->port);
            const char *head[] = {"MIGRATE", b->host, port, "", "0", "5000", "KEYS"};
            for (size_t i = 0; i < 7; i++) argv[i] = head[i];
            for (size_t i = 0; i < n; i++) {
                argv[7 + i] = keys->element[i]->str;
                lens[7 + i] = keys->element[i]->len;
            }
            for (size_t i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
            redisReply *r = redisCommandArgv(a->c, (int)(n + 7), argv, lens);
            if (r == NULL || r->type == REDIS_REPLY_ERROR)
                die("MIGRATE: %s", r ? r->str : a->c->errstr);
            freeReplyObject(r);
            free(argv);
            free(lens);
        }
        freeReplyObject(keys);
        if (n == 0) break;
    }
    freeReplyObject(ncmd(b, "CLUSTER SETSLOT %d NODE %s", slot, b->id));
    freeReplyObject(ncmd(a, "CLUSTER SETSLOT %d NODE %s", slot, b->id));
    for (size_t k = 0; k < s->nnodes; k++)
        if (k != src && k != dst)
            freeReplyObject(ncmd(&s->nodes[k], "CLUSTER SETSLOT %d NODE %s", slot, b->id));
}

typedef struct moved_result {
    size_t moves;
    double before[MAX_MOVES][K_BEFORE];
    double after[MAX_MOVES][K_AFTER];
    /* the control: the calls after another slot of the same two masters moved (the same
     * server-side work: SETSLOT, nodes.conf, gossip; no MOVED for the client) */
    double control[MAX_MOVES][K_AFTER];
    cmdstats first; /* commands of every first call, summed */
    cmdstats later; /* commands of the calls 2..K_AFTER, summed */
} moved_result;

/* A slot other than not_slot owned by master owner (the slot of tag "mv-ctl-N"). */
static int control_slot(side *s, size_t owner, int not_slot)
{
    for (int n = 0; n < 100000; n++) {
        char tag[32];
        snprintf(tag, sizeof tag, "mv-ctl-%d", n);
        int slot = key_slot(&s->nodes[0], tag);
        if (slot != not_slot && slot_owner(s, slot) == owner) return slot;
    }
    die("no control slot");
}

static void measure_moves(side *s, int kind, const char *tag, size_t moves, moved_result *m)
{
    memset(m, 0, sizeof *m);
    int slot = key_slot(&s->nodes[0], tag);
    for (size_t r = 0; r < moves; r++) {
        for (int i = 0; i < K_BEFORE; i++) m->before[r][i] = timed_op(s, kind, tag);
        size_t src = slot_owner(s, slot), dst = (src + 1) % s->nnodes;
        cmdstats b[MAX_NODES], a[MAX_NODES];
        /* the control first: the same move of another slot, the same pause and INFOs */
        int ctl = control_slot(s, src, slot);
        move_slot(s, ctl, src, dst);
        sleep_us(20e3);
        snap_all(s, b);
        m->control[r][0] = timed_op(s, kind, tag);
        snap_all(s, a);
        for (int i = 1; i < K_AFTER; i++) m->control[r][i] = timed_op(s, kind, tag);
        snap_all(s, b);
        for (int i = 0; i < K_BEFORE; i++) (void)timed_op(s, kind, tag);
        /* the move */
        move_slot(s, slot, src, dst);
        sleep_us(20e3); /* the client idle a moment, as a real one between calls */
        snap_all(s, b);
        m->after[r][0] = timed_op(s, kind, tag);
        snap_all(s, a);
        acc_all(s, &m->first, b, a);
        for (int i = 1; i < K_AFTER; i++) m->after[r][i] = timed_op(s, kind, tag);
        snap_all(s, b);
        acc_all(s, &m->later, a, b);
        m->moves++;
    }
}

/* ---- latency ---- */

static void print_array(const double *v, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) printf("%s%.2f", i ? ", " : "", v[i]);
    printf("]");
}


typedef struct lat_result {
    double p50[KINDS][SIDES][MAX_ROUNDS], p99[KINDS][SIDES][MAX_ROUNDS];
    double mean[KINDS][SIDES][MAX_ROUNDS];
    double r50[KINDS][MAX_ROUNDS], r99[KINDS][MAX_ROUNDS];
    cmdstats stats[KINDS][SIDES];
    cmdstats round_stats[KINDS][SIDES][MAX_ROUNDS];
    long long ops; /* per side and kind, all rounds */
    long rounds;
} lat_result;

static void run_latency(side *sides, long ops, long rounds, lat_result *L)
{
    double *lat[SIDES];
    memset(L, 0, sizeof *L);
    L->rounds = rounds;
    for (int s = 0; s < SIDES; s++)
        if ((lat[s] = calloc((size_t)ops, sizeof(double))) == NULL) die("out of memory");
    for (int i = 0; i < 100; i++) /* settle after a placement change */
        for (int s = 0; s < SIDES; s++)
            for (int k = 0; k < KINDS; k++) (void)timed_op(&sides[s], k, "lat");
    for (long r = 0; r < rounds; r++) {
        for (int k = 0; k < KINDS; k++) {
            cmdstats b[SIDES][MAX_NODES], a[SIDES][MAX_NODES];
            for (int s = 0; s < SIDES; s++) snap_all(&sides[s], b[s]);
            for (long done = 0, chunk = 0; done < ops; done += CHUNK, chunk++) {
                long n = ops - done < CHUNK ? ops - done : CHUNK;
                for (int t = 0; t < SIDES; t++) {
                    int s = (int)((t + chunk) % SIDES);
                    for (long i = 0; i < n; i++) lat[s][done + i] = timed_op(&sides[s], k, "lat");
                }
            }
            for (int s = 0; s < SIDES; s++) snap_all(&sides[s], a[s]);
            for (int s = 0; s < SIDES; s++) {
                acc_all(&sides[s], &L->stats[k][s], b[s], a[s]);
                acc_all(&sides[s], &L->round_stats[k][s][r], b[s], a[s]);
                double sum = 0;
                for (long i = 0; i < ops; i++) sum += lat[s][i];
                L->mean[k][s][r] = sum / (double)ops;
                L->p99[k][s][r] = quantile(lat[s], (size_t)ops, 0.99);
                L->p50[k][s][r] = quantile(lat[s], (size_t)ops, 0.50);
            }
            L->r50[k][r] = L->p50[k][CLUSTER][r] / L->p50[k][SINGLE][r];
            L->r99[k][r] = L->p99[k][CLUSTER][r] / L->p99[k][SINGLE][r];
        }
        L->ops += ops;
    }
    for (int s = 0; s < SIDES; s++) free(lat[s]);
}

static void print_latency(const char *name, const lat_result *L)
{
    size_t rounds = (size_t)L->rounds;
    printf("  \"%s\": {\n", name);
    for (int k = 0; k < KINDS; k++) {
        printf("    \"%s\": {\n", kind_name[k]);
        for (int s = 0; s < SIDES; s++) {
            printf("      \"%s\": {\"p50_us\": %.2f, \"p99_us\": %.2f, \"mean_us\": %.2f,\n",
                   side_name[s], median(L->p50[k][s], rounds), median(L->p99[k][s], rounds),
                   median(L->mean[k][s], rounds));
            printf("        \"p50_runs\": ");
            print_array(L->p50[k][s], rounds);
            printf(", \"p99_runs\": ");
            print_array(L->p99[k][s], rounds);
            printf(",\n        \"server\": ");
            print_stats(&L->stats[k][s], (double)L->ops);
            printf(",\n        \"usec_per_call_median\": ");
            print_upc_medians(L->round_stats[k][s], rounds);
            printf("},\n");
        }
        printf("      \"ratio_p50\": %.4f, \"ratio_p99\": %.4f,\n", median(L->r50[k], rounds),
               median(L->r99[k], rounds));
        printf("      \"ratio_p50_runs\": ");
        print_array(L->r50[k], rounds);
        printf("\n    }%s\n", k + 1 < KINDS ? "," : "");
    }
    printf("  },\n");
}

/* ---- placement (see main) ---- */

static cpu_set_t orig_mask;
static int cpu_a = -1, cpu_b = -1; /* the first two CPUs we may run on */

static void placement_init(void)
{
    if (sched_getaffinity(0, sizeof orig_mask, &orig_mask) != 0) die("sched_getaffinity");
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET((size_t)c, &orig_mask)) {
            if (cpu_a < 0)
                cpu_a = c;
            else if (cpu_b < 0)
                cpu_b = c;
        }
}

static void pin(int pid, int cpu)
{
    cpu_set_t m;
    if (cpu < 0) {
        m = orig_mask;
    } else {
        CPU_ZERO(&m);
        CPU_SET((size_t)cpu, &m);
    }
    if (sched_setaffinity(pid, sizeof m, &m) != 0)
        die("sched_setaffinity(%d, cpu %d): %s", pid, cpu, strerror(errno));
}

/* The bench's calling thread on client_cpu, the main thread of every server on server_cpu
 * (-1: back to the mask the bench started with). Threads made later inherit the caller's. */
static void place(side *sides, int client_cpu, int server_cpu)
{
    pin(0, client_cpu);
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < sides[s].nnodes; i++) pin(sides[s].nodes[i].pid, server_cpu);
}

/* ---- output helpers ---- */


int main(int argc, char **argv)
{
    if (argc != 9 && argc != 10)
        die("usage: cluster_bench SINGLE_URL CLUSTER_URL CLUSTER_NODES OPS ROUNDS THREADS "
            "SECONDS MOVES [SCRIPTS_DIR]");
    const char *scripts_dir = argc == 10 ? argv[9] : REDPAT_SCRIPTS_DIR;
    long ops = strtol(argv[4], NULL, 10);
    long rounds = strtol(argv[5], NULL, 10);
    long nthreads = strtol(argv[6], NULL, 10);
    double seconds = strtod(argv[7], NULL);
    long moves = strtol(argv[8], NULL, 10);
    if (ops < CHUNK || rounds < 1 || rounds > MAX_ROUNDS || nthreads < 1 ||
        nthreads > MAX_THREADS || seconds <= 0 || moves < 0 || moves > MAX_MOVES)
        die("OPS >= %d, ROUNDS 1..%d, THREADS 1..%d, SECONDS > 0, MOVES 0..%d", CHUNK,
            MAX_ROUNDS, MAX_THREADS, MAX_MOVES);

    placement_init();
    side sides[SIDES];
    memset(sides, 0, sizeof sides);
    sides[SINGLE].url = argv[1];
    sides[CLUSTER].url = argv[2];
    char single_node[300];
    snprintf(single_node, sizeof single_node, "%s", argv[1]);
    sides[SINGLE].nnodes = parse_nodes(single_node, sides[SINGLE].nodes);
    sides[CLUSTER].nnodes = parse_nodes(argv[3], sides[CLUSTER].nodes);
    if (sides[SINGLE].nnodes != 1 || sides[CLUSTER].nnodes < 1) die("bad node lists");
    int is_cluster = 0;
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < sides[s].nnodes; i++) node_connect(&sides[s].nodes[i]);
    {
        redisReply *r = redisCommand(sides[CLUSTER].nodes[0].c, "CLUSTER MYID");
        is_cluster = r != NULL && r->type == REDIS_REPLY_STRING;
        freeReplyObject(r);
    }
    if (is_cluster)
        for (size_t i = 0; i < sides[CLUSTER].nnodes; i++) {
            redisReply *r = ncmd(&sides[CLUSTER].nodes[i], "CLUSTER MYID");
            snprintf(sides[CLUSTER].nodes[i].id, sizeof sides[CLUSTER].nodes[i].id, "%s", r->str);
            freeReplyObject(r);
        }
    else if (moves > 0)
        die("the cluster nodes are not in cluster mode (MOVES must be 0)");
    char redis_version[32] = "unknown";
    {
        redisReply *r = ncmd(&sides[SINGLE].nodes[0], "INFO server");
        const char *v = strstr(r->str, "redis_version:");
        if (v != NULL) sscanf(v + 14, "%31[^\r\n]", redis_version);
        freeReplyObject(r);
    }

    for (int s = 0; s < SIDES; s++) {
        sides[s].client = new_client(sides[s].url);
        sides[s].lock = new_lock(sides[s].client, "lat");
        sides[s].rl = new_gcra(sides[s].client, "lat");
    }
    /* Warm-up: the latency clients' connections to every master open, scripts cached on
     * every master, code paged in. Locks and subjects w-0..w-29 spread over the slots. */
    for (int s = 0; s < SIDES; s++)
        for (int i = 0; i < 30; i++) {
            char name[16];
            snprintf(name, sizeof name, "w-%d", i);
            rp_lock *l = new_lock(sides[s].client, name);
            rp_error e;
            int rc = do_op(LOCK, l, NULL, NULL, &e);
            if (rc != RP_OK) die("warm-up lock on %s: %s: %s", sides[s].url, rp_status_name(rc),
                                 e.message);
            rp_lock_free(l);
            (void)timed_op(&sides[s], GCRA, name);
        }
    for (int i = 0; i < 300; i++)
        for (int s = 0; s < SIDES; s++) {
            (void)timed_op(&sides[s], LOCK, NULL);
            (void)timed_op(&sides[s], GCRA, "lat");
        }

    /* ---- 1 + 4: latency, server CPU per command ---- */
    /* Where the scheduler puts the servers decides the latency here: on a VM a round trip
     * to a process on another (idle) vCPU waits for that vCPU to be woken, ~100 us, against
     * ~10 us when client and server share a core; left free, each side's servers land
     * on one or the other by chance, one side of a round pays the wake-ups and the other
     * not (ratios of 0.2x or 5x). So both sides are measured in two fixed placements:
     * every server on the client's core ("same core", the CPU cost of the path, the
     * target's figure) and every server on another core than the client ("cross core",
     * every round trip a wake-up). The throughput windows run unpinned. */
    static lat_result lat_same, lat_cross;
    int have_cross = cpu_b >= 0;
    place(sides, cpu_a, cpu_a);
    run_latency(sides, ops, rounds, &lat_same);
    if (have_cross) {
        place(sides, cpu_a, cpu_b);
        run_latency(sides, ops, rounds, &lat_cross);
    }
    place(sides, -1, -1);

    /* ---- 2: throughput ---- */
    /* Variants: redpat on one node / on the cluster, and the floor, raw hiredis sending the
     * same commands, each thread connected straight to the node of its key (on the
     * cluster: the master of its slot; no routing, no redirects). */
    size_t sha_len[KINDS];
    char *src[KINDS];
    src[LOCK] = read_text(scripts_dir, "lock_release.lua", &sha_len[LOCK]);
    src[GCRA] = read_text(scripts_dir, "ratelimit.lua", &sha_len[GCRA]);
    char sha[KINDS][41];
    for (int s = 0; s < SIDES; s++)
        for (size_t i = 0; i < sides[s].nnodes; i++)
            for (int k = 0; k < KINDS; k++) {
                const char *lv[] = {"SCRIPT", "LOAD", src[k]};
                size_t ll[] = {6, 4, sha_len[k]};
                redisReply *r = redisCommandArgv(sides[s].nodes[i].c, 3, lv, ll);
                if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
                    die("SCRIPT LOAD failed");
                memcpy(sha[k], r->str, 41);
                freeReplyObject(r);
            }
    free(src[LOCK]);
    free(src[GCRA]);
    worker *ws[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) {
        int s = v % SIDES;
        ws[v] = calloc((size_t)nthreads, sizeof(worker));
        if (ws[v] == NULL) die("out of memory");
        for (long i = 0; i < nthreads; i++) {
            worker *w = &ws[v][i];
            char name[32];
            snprintf(name, sizeof name, "tp-%ld", i);
            snprintf(w->subject, sizeof w->subject, "%s", name);
            if (v < SIDES) {
                w->client = new_client(sides[s].url);
                w->lock = new_lock(w->client, name);
                w->rl = new_gcra(w->client, "tp");
                continue;
            }
            size_t owner = 0;
            if (s == CLUSTER && is_cluster)
                owner = slot_owner(&sides[s], key_slot(&sides[s].nodes[0], name));
            node *n = &sides[s].nodes[owner];
            struct timeval tv = {5, 0};
            w->raw = redisConnectWithTimeout(n->host, n->port, tv);
            if (w->raw == NULL || w->raw->err) die("connect %s:%d", n->host, n->port);
            redisSetTimeout(w->raw, tv);
            /* the same tag as the thread's redpat keys: the same slot, the same node */
            snprintf(w->key, sizeof w->key, NS ":rlock:{%s}", name);
            snprintf(w->rlkey, sizeof w->rlkey, NS ":rl:raw:{%s}", name);
            w->sha[LOCK] = sha[LOCK];
            w->sha[GCRA] = sha[GCRA];
        }
    }
    for (int k = 0; k < KINDS; k++)
        for (int v = 0; v < VARIANTS; v++)
            run_window(sides, v % SIDES, ws[v], (size_t)nthreads, k, 0.2, NULL);
    static window win[KINDS][VARIANTS][MAX_ROUNDS];
    double tput_ratio[KINDS][MAX_ROUNDS], raw_ratio[KINDS][MAX_ROUNDS];
    for (long r = 0; r < rounds; r++)
        for (int k = 0; k < KINDS; k++) {
            /* the pairs compared run back to back (redpat single/cluster, then hiredis),
             * which goes first swapping every round */
            for (int t = 0; t < VARIANTS; t++) {
                int v = (t & ~1) | ((t & 1) ^ (int)(r & 1));
                run_window(sides, v % SIDES, ws[v], (size_t)nthreads, k, seconds, &win[k][v][r]);
            }
            tput_ratio[k][r] = win[k][CLUSTER][r].ops_per_s / win[k][SINGLE][r].ops_per_s;
            raw_ratio[k][r] = win[k][RAW_CLUSTER][r].ops_per_s / win[k][RAW_SINGLE][r].ops_per_s;
        }
    for (int v = 0; v < VARIANTS; v++) {
        for (long i = 0; i < nthreads; i++) {
            rp_lock_free(ws[v][i].lock);
            rp_ratelimit_free(ws[v][i].rl);
            rp_client_free(ws[v][i].client);
            if (ws[v][i].raw != NULL) redisFree(ws[v][i].raw);
        }
        free(ws[v]);
    }

    /* ---- 3: MOVED ---- */
    static moved_result mv[KINDS];
    if (moves > 0) {
        place(sides, cpu_a, cpu_a); /* as the latency figures: the CPU cost of the path */
        rp_lock *ml = new_lock(sides[CLUSTER].client, "mv-lock");
        rp_ratelimit *mrl = new_gcra(sides[CLUSTER].client, "mv");
        rp_lock *keep_l = sides[CLUSTER].lock;
        rp_ratelimit *keep_rl = sides[CLUSTER].rl;
        sides[CLUSTER].lock = ml;
        sides[CLUSTER].rl = mrl;
        for (int i = 0; i < 50; i++) {
            (void)timed_op(&sides[CLUSTER], LOCK, NULL);
            (void)timed_op(&sides[CLUSTER], GCRA, "mv-gcra");
        }
        measure_moves(&sides[CLUSTER], LOCK, "mv-lock", (size_t)moves, &mv[LOCK]);
        measure_moves(&sides[CLUSTER], GCRA, "mv-gcra", (size_t)moves, &mv[GCRA]);
        sides[CLUSTER].lock = keep_l;
        sides[CLUSTER].rl = keep_rl;
        rp_lock_free(ml);
        rp_ratelimit_free(mrl);
        place(sides, -1, -1);
    }

    /* ---- output ---- */
    printf("{\n  \"bench\": \"cluster\",\n  \"redpat_version\": \"%s\",\n", RP_VERSION);
    printf("  \"redis_version\": \"%s\",\n  \"cores\": %ld,\n", redis_version,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("  \"single_url\": \"%s\",\n  \"cluster_url\": \"%s\",\n  \"masters\": %zu,\n",
           sides[SINGLE].url, sides[CLUSTER].url, sides[CLUSTER].nnodes);
    printf("  \"cluster_mode\": %s,\n", is_cluster ? "true" : "false");
    printf("  \"ops_per_round\": %ld,\n  \"rounds\": %ld,\n  \"chunk\": %d,\n", ops, rounds, CHUNK);
    printf("  \"threads\": %ld,\n  \"window_s\": %.2f,\n  \"moves\": %ld,\n", nthreads, seconds,
           moves);
    printf("  \"cpus\": [%d, %d],\n", cpu_a, cpu_b);
    print_latency("latency", &lat_same);
    if (have_cross) print_latency("latency_cross_core", &lat_cross);
    printf("  \"throughput\": {\n");
    for (int k = 0; k < KINDS; k++) {
        printf("    \"%s\": {\n", kind_name[k]);
        for (int vi = 0; vi < VARIANTS; vi++) {
            int s = vi % SIDES;
            double v[MAX_ROUNDS], bc[MAX_ROUNDS], mb[MAX_ROUNDS], oc[MAX_ROUNDS], ic[MAX_ROUNDS];
            double nc[MAX_NODES][MAX_ROUNDS];
            for (long r = 0; r < rounds; r++) {
                v[r] = win[k][vi][r].ops_per_s;
                bc[r] = win[k][vi][r].bench_cpu;
                mb[r] = win[k][vi][r].machine_busy;
                oc[r] = win[k][vi][r].other_cpu;
                ic[r] = win[k][vi][r].irq_cpu;
                for (size_t i = 0; i < sides[s].nnodes; i++) nc[i][r] = win[k][vi][r].node_cpu[i];
            }
            printf("      \"%s\": {\"ops_per_s\": %.0f, \"bench_cpu\": %.3f, \"machine_busy\": %.3f,"
                   " \"other_cpu\": %.3f, \"irq_cpu\": %.3f,\n        \"server_cpu\": [",
                   variant_name[vi], median(v, (size_t)rounds), median(bc, (size_t)rounds),
                   median(mb, (size_t)rounds), median(oc, (size_t)rounds),
                   median(ic, (size_t)rounds));
            for (size_t i = 0; i < sides[s].nnodes; i++)
                printf("%s%.3f", i ? ", " : "", median(nc[i], (size_t)rounds));
            printf("],\n        \"server_calls_share\": [");
            long long tot = 0, per[MAX_NODES] = {0};
            for (long r = 0; r < rounds; r++)
                for (size_t i = 0; i < sides[s].nnodes; i++) {
                    per[i] += win[k][vi][r].node_calls[i];
                    tot += win[k][vi][r].node_calls[i];
                }
            for (size_t i = 0; i < sides[s].nnodes; i++)
                printf("%s%.3f", i ? ", " : "", tot ? (double)per[i] / (double)tot : 0.0);
            printf("],\n        \"ops_per_s_runs\": ");
            print_array(v, (size_t)rounds);
            cmdstats all;
            memset(&all, 0, sizeof all);
            double total_ops = 0;
            for (long r = 0; r < rounds; r++) {
                const cmdstats *w = &win[k][vi][r].stats;
                cmdstats zero;
                zero.n = 0;
                stats_add_delta(&all, &zero, w);
                total_ops += win[k][vi][r].ops_per_s * win[k][vi][r].wall_s;
            }
            printf(",\n        \"server\": ");
            print_stats(&all, total_ops > 0 ? total_ops : 1);
            static cmdstats per_round[MAX_ROUNDS];
            for (long r = 0; r < rounds; r++) per_round[r] = win[k][vi][r].stats;
            printf(",\n        \"usec_per_call_median\": ");
            print_upc_medians(per_round, (size_t)rounds);
            printf("},\n");
        }
        printf("      \"ratio\": %.4f,\n      \"ratio_runs\": ", median(tput_ratio[k], (size_t)rounds));
        print_array(tput_ratio[k], (size_t)rounds);
        printf(",\n      \"hiredis_ratio\": %.4f,\n      \"hiredis_ratio_runs\": ",
               median(raw_ratio[k], (size_t)rounds));
        print_array(raw_ratio[k], (size_t)rounds);
        printf("\n    }%s\n", k + 1 < KINDS ? "," : "");
    }
    printf("  }");
    if (moves > 0) {
        printf(",\n  \"moved\": {\n");
        for (int k = 0; k < KINDS; k++) {
            moved_result *m = &mv[k];
            double base[MAX_MOVES * K_BEFORE];
            size_t nb = 0;
            for (size_t r = 0; r < m->moves; r++)
                for (int i = 0; i < K_BEFORE; i++) base[nb++] = m->before[r][i];
            double bp50 = quantile(base, nb, 0.5), bp99 = quantile(base, nb, 0.99);
            double pos[K_AFTER];
            for (int i = 0; i < K_AFTER; i++) {
                double col[MAX_MOVES];
                for (size_t r = 0; r < m->moves; r++) col[r] = m->after[r][i];
                pos[i] = median(col, m->moves);
            }
            /* calls until normal: the calls after the move, from the first on, whose
             * median latency (over the moves) stays above 1.25x the median before them */
            int slow = 0;
            while (slow < K_AFTER && pos[slow] > 1.25 * bp50) slow++;
            printf("    \"%s\": {\"normal_p50_us\": %.2f, \"normal_p99_us\": %.2f,"
                   " \"first_call_us\": %.2f, \"first_call_ratio\": %.3f,"
                   " \"slow_calls\": %d,\n      \"after_move_median_us\": ",
                   kind_name[k], bp50, bp99, pos[0], pos[0] / bp50, slow);
            print_array(pos, K_AFTER);
            double cpos[K_AFTER];
            for (int i = 0; i < K_AFTER; i++) {
                double col[MAX_MOVES];
                for (size_t r = 0; r < m->moves; r++) col[r] = m->control[r][i];
                cpos[i] = median(col, m->moves);
            }
            printf(",\n      \"after_control_move_median_us\": ");
            print_array(cpos, K_AFTER);
            double first[MAX_MOVES];
            for (size_t r = 0; r < m->moves; r++) first[r] = m->after[r][0];
            printf(",\n      \"first_call_runs\": ");
            print_array(first, m->moves);
            printf(",\n      \"first_call_server\": ");
            print_stats(&m->first, (double)m->moves);
            printf(",\n      \"later_calls_server\": ");
            print_stats(&m->later, (double)m->moves);
            printf("}%s\n", k + 1 < KINDS ? "," : "");
        }
        printf("  }");
    }
    printf("\n}\n");

    for (int s = 0; s < SIDES; s++) {
        rp_lock_free(sides[s].lock);
        rp_ratelimit_free(sides[s].rl);
        rp_client_free(sides[s].client);
        for (size_t i = 0; i < sides[s].nnodes; i++) redisFree(sides[s].nodes[i].c);
    }
    return 0;
}
