/* Redis Cluster (issue 12) through the blocking C API, on a real 3-master cluster with one
 * replica per master:
 *
 *     python3 tests/harness/harness.py run --cluster --servers 1 --replicas 1 -- test_cluster
 *
 * (REDPAT_TEST_URL: the cluster URL; REDPAT_TEST_NODES / REDPAT_TEST_PIDS: its masters and
 * their pids, ' '-separated.) One client over the cluster URL; a hiredis side channel to
 * each master checks where keys live, moves slots (CLUSTER SETSLOT IMPORTING / MIGRATING,
 * MIGRATE, SETSLOT NODE: what `redis-cli --cluster reshard` does) and reads the errors the
 * nodes answered (INFO errorstats: MOVED, ASK, TRYAGAIN).
 *
 *   routing     locks and limiters (every algorithm) on many names, spread over all three
 *               masters; each key is on its slot's master; every result right
 *   cross-slot  a raw command whose keys span slots, or a keyless one without a key, is
 *               refused RP_EINVAL before any I/O; with a key it runs on that key's master
 *   ask         during the MIGRATING / IMPORTING window, before and after the keys moved:
 *               every call succeeds, the limiter counts on, the lock stays owned
 *   moved       a thread moves the slots of a fenced lock and of a limiter subject between
 *               masters (three times) while the main thread loops lock cycles and checks
 *               (and a lock in the same slot stays held): no error, fence tokens
 *               consecutive, the limiter's remaining exact, the held lock still owned
 *   cache tags  a cache entry and its tag's version on two different masters: a tagged
 *               read sends both in its first round (two targets at once, not one after
 *               the other); invalidating the tag on its master misses the entry on the
 *               other; a load records the new version
 *   failover    SIGKILL the master of a lock's slot: the call right after fails with a
 *               clear error within the command timeout (or succeeds); once the replica is
 *               promoted, calls on the same client succeed (fence tokens still increase)
 */
#define _POSIX_C_SOURCE 200809L /* kill, nanosleep */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <redpat/redpat.h>

#include "lock_test_util.h"
#include "rp_harness.h"

#define TIMEOUT_MS 2000u /* the client's connect and command timeouts */
#define SLACK_MS 500u    /* scheduling on a loaded 2-core machine, on top of a timeout */
/* The core retries TRYAGAIN / CLUSTERDOWN / unsent failures for ~1.6 s (op.c): a call
 * during a failover may take that on top of a timeout. */
#define RETRY_BUDGET_MS 2000u
/* How long the replica's promotion may take: 15 s beyond twice the node timeout. */
#define PROMOTION_MS 15000u
#define NODES_MAX 16
#define NAME_MAX_LEN 64

typedef struct node {
    char host[64];
    int port;
    pid_t pid;
    char id[64];
    redisContext *c; /* the side channel; NULL once the node is killed */
} node;

static node nodes[NODES_MAX]; /* the masters, as REDPAT_TEST_NODES lists them */
static size_t nnodes;
static node replicas[NODES_MAX];
static size_t nreplicas;
static const char *cluster_url;
static int passed;

/* --- the side channel ------------------------------------------------------------------ */

static redisReply *cmd_argv(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, argc, argv, lens);
}

/* Connects the side channel; 1 if the node is a master (ROLE), 0 for a replica. */
static int node_connect(node *n)
{
    struct timeval tv = { 5, 0 };
    redisReply *r;
    n->c = redisConnectWithTimeout(n->host, n->port, tv);
    RP_CHECK(n->c && !n->c->err, "connect to %s:%d: %s", n->host, n->port,
             n->c ? n->c->errstr : "out of memory");
    redisSetTimeout(n->c, tv);
    r = rp_hcmd(n->c, "CLUSTER MYID");
    RP_CHECK(r && r->type == REDIS_REPLY_STRING && r->len < (int)sizeof n->id,
             "CLUSTER MYID on %d", n->port);
    memcpy(n->id, r->str, (size_t)r->len + 1);
    freeReplyObject(r);
    r = rp_hcmd(n->c, "ROLE");
    RP_CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING, "ROLE on %d", n->port);
    if (strcmp(r->element[0]->str, "master") == 0) {
        freeReplyObject(r);
        return 1;
    }
    freeReplyObject(r);
    return 0;
}

/* A live node to ask cluster-wide questions. */
static node *any_node(void)
{
    size_t i;
    for (i = 0; i < nnodes; i++)
        if (nodes[i].c)
            return &nodes[i];
    rp_harness_fail(__FILE__, __LINE__, "any_node", "no live node");
}

static unsigned keyslot(const char *key)
{
    redisReply *r = rp_hcmd(any_node()->c, "CLUSTER KEYSLOT %s", key);
    unsigned slot;
    RP_CHECK(r && r->type == REDIS_REPLY_INTEGER, "CLUSTER KEYSLOT %s", key);
    slot = (unsigned)r->integer;
    freeReplyObject(r);
    return slot;
}

/* The index in nodes[] of the master serving slot (by CLUSTER SLOTS on a live node), or -1
 * when it is none of them (a promoted replica) or nobody serves it. */
static int owner_of(unsigned slot, int *port_out)
{
    redisReply *r = rp_hcmd(any_node()->c, "CLUSTER SLOTS");
    size_t i, k;
    int found = -1, port = 0;
    RP_CHECK(r && r->type == REDIS_REPLY_ARRAY, "CLUSTER SLOTS");
    for (i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
            (unsigned)e->element[0]->integer <= slot && slot <= (unsigned)e->element[1]->integer &&
            e->element[2]->type == REDIS_REPLY_ARRAY && e->element[2]->elements >= 2) {
            port = (int)e->element[2]->element[1]->integer;
            for (k = 0; k < nnodes; k++)
                if (nodes[k].port == port)
                    found = (int)k;
        }
    }
    freeReplyObject(r);
    if (port_out)
        *port_out = port;
    return found;
}

static void expect_ok(redisReply *r, const char *what, int port)
{
    RP_CHECK(r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING),
             "%s on %d: %s", what, port, r && r->type == REDIS_REPLY_ERROR ? r->str : "no OK");
    freeReplyObject(r);
}

/* ASKING first: a node IMPORTING the key's slot answers for it too. */
static void asking(node *n)
{
    expect_ok(rp_hcmd(n->c, "ASKING"), "ASKING", n->port);
}

static int key_exists_on(node *n, const char *key)
{
    redisReply *r;
    int v;
    asking(n);
    r = rp_hcmd(n->c, "EXISTS %s", key);
    RP_CHECK(r && r->type == REDIS_REPLY_INTEGER, "EXISTS %s on %d: %s", key, n->port,
             r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    v = (int)r->integer;
    freeReplyObject(r);
    return v;
}

static long long get_ll_on(node *n, const char *key)
{
    redisReply *r;
    long long v;
    asking(n);
    r = rp_hcmd(n->c, "GET %s", key);
    RP_CHECK(r && r->type == REDIS_REPLY_STRING, "GET %s on %d: %s", key, n->port,
             r && r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
    v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

/* count= of errorstat_<name> in INFO errorstats (0 when the node never answered it). */
static long long errorstat(node *n, const char *name)
{
    redisReply *r = rp_hcmd(n->c, "INFO errorstats");
    char pat[64];
    const char *p;
    long long v = 0;
    RP_CHECK(r && r->type == REDIS_REPLY_STRING, "INFO errorstats on %d", n->port);
    snprintf(pat, sizeof pat, "errorstat_%s:count=", name);
    if ((p = strstr(r->str, pat)))
        v = strtoll(p + strlen(pat), NULL, 10);
    freeReplyObject(r);
    return v;
}

static long long errorstats_all(const char *name)
{
    long long sum = 0;
    size_t i;
    for (i = 0; i < nnodes; i++)
        if (nodes[i].c)
            sum += errorstat(&nodes[i], name);
    return sum;
}

static long long cmdstat_all(const char *command)
{
    long long sum = 0;
    size_t i;
    for (i = 0; i < nnodes; i++)
        if (nodes[i].c)
            sum += rp_hcmdstat_calls(nodes[i].c, command);
    return sum;
}

/* --- moving a slot (what redis-cli --cluster reshard does) ------------------------------ */

static void slot_begin(unsigned slot, node *src, node *dst)
{
    expect_ok(rp_hcmd(dst->c, "CLUSTER SETSLOT %u IMPORTING %s", slot, src->id),
              "SETSLOT IMPORTING", dst->port);
    expect_ok(rp_hcmd(src->c, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst->id),
              "SETSLOT MIGRATING", src->port);
}

/* MIGRATEs every key of slot from src to dst (in batches); returns how many. */
static size_t slot_move_keys(unsigned slot, node *src, node *dst)
{
    size_t moved = 0;
    for (;;) {
        redisReply *keys = rp_hcmd(src->c, "CLUSTER GETKEYSINSLOT %u 100", slot), *r;
        const char *argv[7 + 100];
        size_t lens[7 + 100], i;
        char port[16];
        RP_CHECK(keys && keys->type == REDIS_REPLY_ARRAY, "GETKEYSINSLOT %u", slot);
        if (keys->elements == 0) {
            freeReplyObject(keys);
            return moved;
        }
        snprintf(port, sizeof port, "%d", dst->port);
        argv[0] = "MIGRATE";
        argv[1] = dst->host;
        argv[2] = port;
        argv[3] = "";
        argv[4] = "0";
        argv[5] = "5000"; /* ms MIGRATE may take per batch */
        argv[6] = "KEYS";
        for (i = 0; i < 7; i++)
            lens[i] = strlen(argv[i]);
        for (i = 0; i < keys->elements; i++) {
            argv[7 + i] = keys->element[i]->str;
            lens[7 + i] = keys->element[i]->len;
        }
        r = cmd_argv(src->c, (int)(7 + keys->elements), argv, lens);
        expect_ok(r, "MIGRATE", src->port);
        moved += keys->elements;
        freeReplyObject(keys);
    }
}

/* The slot is dst's: told to dst first, then src, then every other master. */
static void slot_end(unsigned slot, node *src, node *dst)
{
    size_t i;
    expect_ok(rp_hcmd(dst->c, "CLUSTER SETSLOT %u NODE %s", slot, dst->id), "SETSLOT NODE",
              dst->port);
    expect_ok(rp_hcmd(src->c, "CLUSTER SETSLOT %u NODE %s", slot, dst->id), "SETSLOT NODE",
              src->port);
    for (i = 0; i < nnodes; i++)
        if (nodes[i].c && &nodes[i] != src && &nodes[i] != dst)
            expect_ok(rp_hcmd(nodes[i].c, "CLUSTER SETSLOT %u NODE %s", slot, dst->id),
                      "SETSLOT NODE", nodes[i].port);
}

/* Another master than nodes[i] (the next one). */
static node *other_than(int i)
{
    return &nodes[((size_t)i + 1) % nnodes];
}

/* --- the client side --------------------------------------------------------------------- */

static rp_ratelimit *limiter(rp_client *c, const char *name, rp_ratelimit_algorithm algo,
                             int64_t limit, int64_t window_ms)
{
    rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit *l = NULL;
    rp_error e;
    int rc;
    o.algorithm = algo;
    o.limit = limit;
    o.window_ms = window_ms;
    rc = rp_ratelimit_new(&l, c, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_ratelimit_new %s: %s", name, e.message);
    return l;
}

static rp_ratelimit_decision check(rp_ratelimit *l, const char *subject, int64_t cost)
{
    rp_ratelimit_decision d;
    rp_error e;
    int rc = rp_ratelimit_check(l, subject, strlen(subject), cost, &d, &e);
    RP_CHECK(rc == RP_OK, "check %s: %s: %s", subject, rp_status_name(rc), e.message);
    RP_CHECK(!d.degraded, "check %s: degraded", subject);
    return d;
}

static rp_lock_acquisition acquire(rp_lock *l)
{
    rp_lock_acquisition a;
    rp_error e;
    int rc = rp_lock_acquire(l, NULL, &a, &e);
    RP_CHECK(rc == RP_OK, "acquire: %s: %s", rp_status_name(rc), e.message);
    return a;
}

static void release(rp_lock *l)
{
    rp_error e;
    int rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release: %s: %s", rp_status_name(rc), e.message);
}

static int owned(rp_lock *l)
{
    rp_error e;
    int v = -1, rc = rp_lock_owned(l, &v, &e);
    RP_CHECK(rc == RP_OK, "owned: %s: %s", rp_status_name(rc), e.message);
    return v;
}

static int locked(rp_lock *l)
{
    rp_error e;
    int v = -1, rc = rp_lock_locked(l, &v, &e);
    RP_CHECK(rc == RP_OK, "locked: %s: %s", rp_status_name(rc), e.message);
    return v;
}

static void lock_key(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, LT_NS ":lock:{%s}", name);
}

static void limiter_key(char *out, size_t cap, const char *lim, const char *subject)
{
    snprintf(out, cap, LT_NS ":rl:%s:{%s}", lim, subject);
}

/* A name "<prefix>-<i>" whose slot is served by master `want` (searching i upwards). */
static void name_on(char *out, size_t cap, const char *prefix, size_t want)
{
    int i;
    for (i = 0; i < 1000; i++) { /* a third of the names land on each master */
        snprintf(out, cap, "%s-%d", prefix, i);
        if (owner_of(keyslot(out), NULL) == (int)want)
            return;
    }
    rp_harness_fail(__FILE__, __LINE__, "name_on", "no name of master %zu", want);
}

/* --- a: routing ------------------------------------------------------------------------ */

static void test_routing(rp_client *c)
{
    enum { NAMES = 48 };
    size_t per_master[NODES_MAX] = { 0 }, i;
    rp_ratelimit *lims[5];
    int n;
    for (i = 0; i < 5; i++) {
        char lname[32];
        snprintf(lname, sizeof lname, "route%zu", i);
        lims[i] = limiter(c, lname, (rp_ratelimit_algorithm)(i + 1), 2, 60000);
    }
    for (n = 0; n < NAMES; n++) {
        char name[NAME_MAX_LEN], key[128];
        rp_lock *l, *other;
        rp_lock_acquisition a;
        rp_ratelimit_decision d;
        size_t algo = (size_t)n % 5;
        int owner;
        snprintf(name, sizeof name, "route-%d", n);
        owner = owner_of(keyslot(name), NULL);
        RP_CHECK(owner >= 0, "slot of %s has no known master", name);
        per_master[owner]++;
        l = lt_lock(c, name, 10000, n % 2);
        other = lt_lock(c, name, 10000, n % 2);
        a = acquire(l);
        RP_CHECK(a.acquired == 1, "%s: acquired", name);
        RP_CHECK((n % 2) ? a.fence == 1 : a.fence == 0, "%s: fence %" PRId64, name, a.fence);
        lock_key(key, sizeof key, name);
        RP_CHECK(key_exists_on(&nodes[owner], key) == 1, "%s: the lock key is on its master",
                 name);
        RP_CHECK(owned(l) == 1 && locked(l) == 1, "%s: owned and locked", name);
        RP_CHECK(acquire(other).acquired == 0, "%s: a second handle is refused", name);
        RP_CHECK(owned(other) == 0, "%s: not owned by the second handle", name);
        release(l);
        RP_CHECK(locked(l) == 0 && key_exists_on(&nodes[owner], key) == 0, "%s: released",
                 name);
        a = acquire(other);
        RP_CHECK(a.acquired == 1 && ((n % 2) ? a.fence == 2 : a.fence == 0),
                 "%s: the second handle acquires after the release", name);
        release(other);
        rp_lock_free(other);
        rp_lock_free(l);

        /* the limiter of this round, subject = the name: 2 allowed, then refused */
        d = check(lims[algo], name, 1);
        RP_CHECK(d.allowed && d.remaining == 1, "%s %s: 1st allowed, remaining 1 (%" PRId64 ")",
                 rp_ratelimit_algorithm_name((rp_ratelimit_algorithm)(algo + 1)), name,
                 d.remaining);
        d = check(lims[algo], name, 1);
        RP_CHECK(d.allowed && d.remaining == 0, "%s %s: 2nd allowed, remaining 0 (%" PRId64 ")",
                 rp_ratelimit_algorithm_name((rp_ratelimit_algorithm)(algo + 1)), name,
                 d.remaining);
        d = check(lims[algo], name, 1);
        RP_CHECK(!d.allowed && d.retry_after_ms > 0, "%s %s: 3rd refused with a retry_after",
                 rp_ratelimit_algorithm_name((rp_ratelimit_algorithm)(algo + 1)), name);
        {
            char lname[32];
            snprintf(lname, sizeof lname, "route%zu", algo);
            limiter_key(key, sizeof key, lname, name);
        }
        RP_CHECK(key_exists_on(&nodes[owner], key) == 1, "%s: the limiter key is on its master",
                 name);
    }
    for (i = 0; i < 5; i++)
        rp_ratelimit_free(lims[i]);
    printf("routing: %d names, per master:", NAMES);
    for (i = 0; i < nnodes; i++) {
        printf(" %d:%zu", nodes[i].port, per_master[i]);
        RP_CHECK(per_master[i] > 0, "master %d got no name", nodes[i].port);
    }
    printf("; every lock and limiter result right, every key on its slot's master\n");
    passed++;
}

/* --- e: cross-slot refusal, keyless commands -------------------------------------------- */

/* Runs argv routed by key (NULL: none) through rp_command_op_key; *reply borrows from *op
 * (the caller frees *op, made or not). */
static int command(rp_client *c, int argc, const char **argv, const char *key, rp_op **op,
                   const rp_reply **reply, rp_error *e)
{
    int rc = rp_command_op_key(op, c, argc, argv, NULL, key, key ? strlen(key) : 0, e);
    *reply = NULL;
    if (rc == RP_OK && (rc = rp_client_run(c, *op, e)) == RP_OK)
        RP_CHECK(rp_command_result(*op, reply) == RP_OK && *reply, "a command op's reply");
    return rc;
}

static void test_cross_slot(rp_client *c)
{
    const char *mget[] = { "MGET", "crun-x", "crun-y" }, *dbsize[] = { "DBSIZE" };
    const char *mget_tag[] = { "MGET", "{crun}x", "{crun}y" };
    const char *set[] = { "SET", "{crun}x", "1" };
    long long mgets = cmdstat_all("mget"), dbsizes = cmdstat_all("dbsize");
    const rp_reply *r = NULL;
    rp_reply *owned_reply = NULL;
    rp_op *op = NULL;
    rp_error e;
    int rc, owner;
    RP_CHECK(keyslot("crun-x") != keyslot("crun-y"), "crun-x and crun-y share a slot");

    rc = command(c, 3, mget, NULL, &op, &r, &e);
    rp_op_free(op);
    printf("cross-slot: MGET crun-x crun-y: %s: %s\n", rp_status_name(rc), e.message);
    RP_CHECK(rc == RP_EINVAL && strstr(e.message, "crun-x") && strstr(e.message, "crun-y"),
             "MGET over two slots is RP_EINVAL naming the keys");
    rc = rp_client_command(c, 3, mget, NULL, &owned_reply, &e);
    RP_CHECK(rc == RP_EINVAL && !owned_reply, "rp_client_command: the same (%s)",
             rp_status_name(rc));

    rc = command(c, 1, dbsize, NULL, &op, &r, &e);
    rp_op_free(op);
    printf("cross-slot: DBSIZE without key: %s: %s\n", rp_status_name(rc), e.message);
    RP_CHECK(rc == RP_EINVAL && strstr(e.message, "key"), "DBSIZE without a key: RP_EINVAL");
    RP_CHECK(cmdstat_all("mget") == mgets && cmdstat_all("dbsize") == dbsizes,
             "the refused commands reached no node");

    /* a key routes the command whatever its keys: Redis itself then refuses it */
    rc = command(c, 3, mget, "crun-x", &op, &r, &e);
    RP_CHECK(rc == RP_OK && r->type == RP_REPLY_ERROR && strstr(r->str, "CROSSSLOT"),
             "MGET crun-x crun-y with key crun-x: Redis' CROSSSLOT (%s: %s)",
             rp_status_name(rc), rc == RP_OK ? r->str : e.message);
    printf("cross-slot: the same with key=crun-x: sent; Redis answers %s\n", r->str);
    rp_op_free(op);

    /* with a key: that key's master answers */
    rc = command(c, 3, set, NULL, &op, &r, &e);
    RP_CHECK(rc == RP_OK && r->type == RP_REPLY_STATUS, "SET {crun}x: %s", e.message);
    rp_op_free(op);
    rc = command(c, 1, dbsize, "{crun}", &op, &r, &e);
    RP_CHECK(rc == RP_OK && r->type == RP_REPLY_INTEGER, "DBSIZE with key: %s: %s",
             rp_status_name(rc), e.message);
    owner = owner_of(keyslot("{crun}"), NULL);
    RP_CHECK(owner >= 0, "the master of {crun}");
    {
        redisReply *h = rp_hcmd(nodes[owner].c, "DBSIZE");
        RP_CHECK(h && h->type == REDIS_REPLY_INTEGER && h->integer == r->integer && h->integer >= 1,
                 "DBSIZE key {crun} is the DBSIZE of its master (%lld)", r->integer);
        freeReplyObject(h);
    }
    printf("cross-slot: DBSIZE key={crun}: %lld (master %d)\n", r->integer, nodes[owner].port);
    rp_op_free(op);
    rc = command(c, 3, mget_tag, NULL, &op, &r, &e);
    RP_CHECK(rc == RP_OK && r->type == RP_REPLY_ARRAY && r->elements == 2,
             "MGET {crun}x {crun}y: %s", e.message);
    rp_op_free(op);
    passed++;
}

/* --- c: ASK, during the MIGRATING / IMPORTING window --------------------------------------- */

static void test_ask(rp_client *c)
{
    char lname[NAME_MAX_LEN], subject[NAME_MAX_LEN], key[128];
    rp_ratelimit *rl = limiter(c, "ask", RP_RATELIMIT_FIXED_WINDOW, 100, 3600000);
    rp_lock *l;
    node *lsrc, *ldst, *ssrc, *sdst;
    unsigned lslot, sslot;
    long long asks = errorstats_all("ASK"), moved = errorstats_all("MOVED");
    int64_t n = 0, i;
    size_t keys;
    /* the lock on master 0, the subject on master 1: two migrations at once */
    name_on(lname, sizeof lname, "ask-lock", 0);
    name_on(subject, sizeof subject, "ask-subj", 1);
    lslot = keyslot(lname);
    sslot = keyslot(subject);
    lsrc = &nodes[0];
    ldst = other_than(0);
    ssrc = &nodes[1];
    sdst = other_than(1);
    l = lt_lock(c, lname, 30000, 0);
    RP_CHECK(acquire(l).acquired == 1, "ask: acquired");
    for (i = 0; i < 3; i++)
        RP_CHECK(check(rl, subject, 1).remaining == 100 - ++n, "ask: count");

    slot_begin(lslot, lsrc, ldst);
    slot_begin(sslot, ssrc, sdst);
    printf("ask: slots %u (lock %s) %d -> %d and %u (subject %s) %d -> %d MIGRATING / "
           "IMPORTING\n", lslot, lname, lsrc->port, ldst->port, sslot, subject, ssrc->port,
           sdst->port);
    rp_harness_sleep_ms(300); /* the window, keys still on the source */
    RP_CHECK(owned(l) == 1 && locked(l) == 1, "ask: owned in the window (keys on the source)");
    RP_CHECK(check(rl, subject, 1).remaining == 100 - ++n, "ask: count in the window");

    keys = slot_move_keys(lslot, lsrc, ldst) + slot_move_keys(sslot, ssrc, sdst);
    lock_key(key, sizeof key, lname);
    RP_CHECK(key_exists_on(ldst, key) == 1, "ask: the lock key is on the target");
    printf("ask: %zu keys MIGRATEd, slots still MIGRATING / IMPORTING\n", keys);
    rp_harness_sleep_ms(300);
    RP_CHECK(owned(l) == 1, "ask: owned after the keys moved (ASK)");
    {
        rp_lock_remaining rem;
        rp_error e;
        int rc = rp_lock_remaining_ms(l, &rem, &e);
        RP_CHECK(rc == RP_OK && rem.owned && rem.remaining_ms > 0, "ask: remaining: %s",
                 e.message);
        rc = rp_lock_extend(l, 30000, 1, &e);
        RP_CHECK(rc == RP_OK, "ask: extend: %s: %s", rp_status_name(rc), e.message);
    }
    for (i = 0; i < 3; i++)
        RP_CHECK(check(rl, subject, 1).remaining == 100 - ++n, "ask: count after the move");
    release(l);
    RP_CHECK(locked(l) == 0 && key_exists_on(ldst, key) == 0, "ask: released on the target");
    RP_CHECK(acquire(l).acquired == 1, "ask: acquired again in the window");
    RP_CHECK(key_exists_on(ldst, key) == 1, "ask: a new lock key is made on the target");
    release(l);
    printf("ask: in the window: owned, remaining, extend, release, acquire, 4 checks: all "
           "right; the nodes answered ASK %lld times\n", errorstats_all("ASK") - asks);
    RP_CHECK(errorstats_all("ASK") > asks, "ask: the nodes answered ASK");

    slot_end(lslot, lsrc, ldst);
    slot_end(sslot, ssrc, sdst);
    RP_CHECK(acquire(l).acquired == 1 && owned(l) == 1, "ask: acquired after the move (MOVED)");
    release(l);
    RP_CHECK(check(rl, subject, 1).remaining == 100 - ++n, "ask: count after MOVED");
    limiter_key(key, sizeof key, "ask", subject);
    RP_CHECK(get_ll_on(sdst, key) == n, "ask: the counter on the target is %" PRId64, n);
    printf("ask: slots moved; the nodes answered MOVED %lld times since; %" PRId64 " checks, "
           "remaining %" PRId64 "\n", errorstats_all("MOVED") - moved, n, 100 - n);
    rp_lock_free(l);
    rp_ratelimit_free(rl);
    passed++;
}

/* --- b: MOVED, slots moving under a loop ------------------------------------------------ */

typedef struct mover {
    unsigned slots[2];
    int owner[2]; /* index of the current master of each slot */
    int rounds;
    pthread_mutex_t mu;
    int done;
    size_t keys;
} mover;

static void *move_loop(void *arg)
{
    mover *m = arg;
    int round, k;
    for (round = 0; round < m->rounds; round++) {
        rp_harness_sleep_ms(150);
        for (k = 0; k < 2; k++) {
            node *src = &nodes[m->owner[k]], *dst = other_than(m->owner[k]);
            slot_begin(m->slots[k], src, dst);
            rp_harness_sleep_ms(5);
            m->keys += slot_move_keys(m->slots[k], src, dst);
            slot_end(m->slots[k], src, dst);
            m->owner[k] = (int)(dst - nodes);
        }
    }
    rp_harness_sleep_ms(150);
    pthread_mutex_lock(&m->mu);
    m->done = 1;
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void test_moved(rp_client *c)
{
    enum { LIMIT = 100000 };
    char lname[NAME_MAX_LEN], subject[NAME_MAX_LEN], key[128];
    rp_ratelimit *rl = limiter(c, "mv", RP_RATELIMIT_FIXED_WINDOW, LIMIT, 3600000);
    rp_lock *l, *held;
    mover m;
    pthread_t thread;
    long long moved = errorstats_all("MOVED"), asks = errorstats_all("ASK"),
              tryagains = errorstats_all("TRYAGAIN");
    int64_t n = 0, fence = 0, max_ms = 0;
    int done = 0, k;
    name_on(lname, sizeof lname, "mv-lock", 2);
    name_on(subject, sizeof subject, "mv-subj", 0);
    memset(&m, 0, sizeof m);
    m.slots[0] = keyslot(lname);
    m.slots[1] = keyslot(subject);
    m.owner[0] = 2;
    m.owner[1] = 0;
    m.rounds = 3;
    pthread_mutex_init(&m.mu, NULL);
    l = lt_lock(c, lname, 10000, 1);
    {   /* a lock held through every move, in the same slot: Redis' hash tag ends at the
         * first '}', so "<lname>}held" is tagged <lname> (lock.h) */
        char hname[NAME_MAX_LEN + 8];
        snprintf(hname, sizeof hname, "%s}held", lname);
        held = lt_lock(c, hname, 60000, 0);
        snprintf(key, sizeof key, LT_NS ":lock:{%s}", hname);
        RP_CHECK(keyslot(key) == m.slots[0], "moved: the held lock shares the slot");
        RP_CHECK(acquire(held).acquired == 1, "moved: the held lock");
    }
    /* warm: the client knows the map before the moves start */
    fence = acquire(l).fence;
    RP_CHECK(fence == 1, "moved: first fence 1");
    release(l);
    RP_CHECK(check(rl, subject, 1).remaining == LIMIT - ++n, "moved: first check");
    RP_CHECK(pthread_create(&thread, NULL, move_loop, &m) == 0, "pthread_create");
    while (!done) {
        uint64_t t0 = rp_harness_now_ms();
        rp_lock_acquisition a = acquire(l);
        rp_ratelimit_decision d;
        RP_CHECK(a.acquired == 1, "moved: acquired (the lock is free between cycles)");
        RP_CHECK(a.fence == fence + 1, "moved: fence %" PRId64 " after %" PRId64 " (no gap, no "
                 "repeat)", a.fence, fence);
        fence = a.fence;
        d = check(rl, subject, 1);
        n++;
        RP_CHECK(d.allowed && d.remaining == LIMIT - n, "moved: check %" PRId64 ": remaining %"
                 PRId64 ", want %" PRId64, n, d.remaining, LIMIT - n);
        release(l);
        RP_CHECK(owned(held) == 1, "moved: the held lock is still owned (cycle %" PRId64 ")", n);
        if ((int64_t)(rp_harness_now_ms() - t0) > max_ms)
            max_ms = (int64_t)(rp_harness_now_ms() - t0);
        rp_harness_sleep_ms(1);
        pthread_mutex_lock(&m.mu);
        done = m.done;
        pthread_mutex_unlock(&m.mu);
    }
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&m.mu);
    {
        rp_ratelimit_decision d = check(rl, subject, 0); /* a peek consumes nothing */
        RP_CHECK(d.remaining == LIMIT - n, "moved: remaining %" PRId64 " after %" PRId64
                 " checks", d.remaining, n);
    }
    limiter_key(key, sizeof key, "mv", subject);
    RP_CHECK(get_ll_on(&nodes[m.owner[1]], key) == n, "moved: the counter holds every check");
    snprintf(key, sizeof key, LT_NS ":lock:{%s}:fence", lname);
    RP_CHECK(get_ll_on(&nodes[m.owner[0]], key) == fence, "moved: the fence counter is the "
             "last fence");
    for (k = 0; k < 2; k++)
        RP_CHECK(owner_of(m.slots[k], NULL) == m.owner[k], "moved: slot %u moved", m.slots[k]);
    {
        rp_error e;
        int rc = rp_lock_extend(held, 60000, 1, &e);
        RP_CHECK(rc == RP_OK, "moved: the held lock extends: %s: %s", rp_status_name(rc),
                 e.message);
        release(held);
        rp_lock_free(held);
    }
    printf("moved: slots %u and %u moved %d times each (%zu keys MIGRATEd) under %" PRId64
           " cycles (acquire + check + release + owned of a lock held throughout; slowest %" PRId64
           " ms): no error, fences 1..%" PRId64 " consecutive, remaining exactly %d - %" PRId64 "; the nodes answered MOVED "
           "%lld, ASK %lld, TRYAGAIN %lld times\n", m.slots[0], m.slots[1], m.rounds, m.keys,
           n - 1, max_ms, fence, LIMIT, n, errorstats_all("MOVED") - moved,
           errorstats_all("ASK") - asks, errorstats_all("TRYAGAIN") - tryagains);
    RP_CHECK(errorstats_all("MOVED") > moved, "moved: the client met MOVED");
    rp_lock_free(l);
    rp_ratelimit_free(rl);
    passed++;
}

/* --- d: failover ------------------------------------------------------------------------- */


/* A cache's blocking ops with a loader that returns "fresh". */
static void cache_load_call(void *ud, rp_op *op, size_t arg, const rp_value *values,
                            size_t count, rp_value *result)
{
    (void)ud; (void)op; (void)arg; (void)values; (void)count;
    *result = rp_value_bytes("fresh", 5);
}

static rp_cache_result cache_drive(rp_client *c, rp_op *op)
{
    rp_drive_hooks hooks = { NULL, cache_load_call, NULL };
    rp_cache_result r;
    rp_error err;
    RP_CHECK(rp_client_drive(c, op, &hooks, &err) == RP_OK, "cache op: %s", err.message);
    RP_CHECK(rp_cache_result_of(op, &r) == RP_OK, "cache result");
    return r;
}

static void test_cache_tags(rp_client *c)
{
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_cache *cache;
    rp_cache_tags tags;
    rp_cache_result r;
    rp_error err;
    rp_op *op;
    char tag[32], tag_key[96];
    const void *items[1];
    size_t lens[1], i, sending = 0;
    int entry_owner = owner_of(keyslot("rptest:cache:{tc:user:1}"), NULL), t;
    o.ttl_ms = 60000;
    RP_CHECK(rp_cache_new(&cache, c, "tc", 2, &o, &err) == RP_OK, "cache: %s", err.message);
    for (t = 0; t < 100; t++) { /* a tag on another master than the entry */
        snprintf(tag, sizeof tag, "team%d", t);
        snprintf(tag_key, sizeof tag_key, "rptest:cache:{tc:%s}:tag", tag);
        if (owner_of(keyslot(tag_key), NULL) != entry_owner)
            break;
    }
    RP_CHECK(t < 100, "no tag on another master");
    items[0] = tag;
    lens[0] = strlen(tag);
    tags.items = items;
    tags.lens = lens;
    tags.count = 1;
    RP_CHECK(rp_cache_load_op(&op, cache, "user:1", 6, &tags, 0, &err) == RP_OK, "%s", err.message);
    r = cache_drive(c, op);
    RP_CHECK(r.loaded && r.stored, "first load stored");
    rp_op_free(op);
    /* the tagged read's first round (the map is known by now): both masters at once */
    RP_CHECK(rp_cache_get_op(&op, cache, "user:1", 6, &tags, &err) == RP_OK, "%s", err.message);
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO, "a round");
    for (i = 0; i < rp_op_nodes(op); i++) {
        const char *bytes;
        size_t len = 0;
        if (rp_op_request(op, i, &bytes, &len) == RP_OK && len > 0)
            sending++;
    }
    RP_CHECK(sending == 2, "the entry and its tag in one round: %zu targets", sending);
    rp_op_free(op);
    RP_CHECK(rp_cache_get_op(&op, cache, "user:1", 6, &tags, &err) == RP_OK, "%s", err.message);
    r = cache_drive(c, op);
    RP_CHECK(r.hit && r.value_len == 5, "a hit");
    rp_op_free(op);
    RP_CHECK(rp_cache_invalidate_tags_op(&op, cache, &tags, &err) == RP_OK, "%s", err.message);
    cache_drive(c, op);
    rp_op_free(op);
    RP_CHECK(key_exists_on(&nodes[owner_of(keyslot(tag_key), NULL)], tag_key), "tag on its master");
    RP_CHECK(rp_cache_get_op(&op, cache, "user:1", 6, NULL, &err) == RP_OK, "%s", err.message);
    r = cache_drive(c, op);
    RP_CHECK(!r.hit, "invalidated by its tag on another master");
    rp_op_free(op);
    RP_CHECK(rp_cache_load_op(&op, cache, "user:1", 6, &tags, 0, &err) == RP_OK, "%s", err.message);
    r = cache_drive(c, op);
    RP_CHECK(r.loaded && r.stored, "reloaded");
    rp_op_free(op);
    RP_CHECK(rp_cache_get_op(&op, cache, "user:1", 6, &tags, &err) == RP_OK, "%s", err.message);
    r = cache_drive(c, op);
    RP_CHECK(r.hit, "the new version recorded");
    rp_op_free(op);
    rp_cache_free(cache);
    printf("ok cache tags: entry on master %d, tag %s on another, one round\n", entry_owner, tag);
    passed++;
}

static void test_failover(rp_client *c)
{
    char lname[NAME_MAX_LEN], other_name[NAME_MAX_LEN];
    rp_lock *l, *other;
    rp_ratelimit *rl = limiter(c, "fo", RP_RATELIMIT_FIXED_WINDOW, 1000, 3600000);
    rp_lock_acquisition a;
    rp_error e;
    uint64_t t0, took, bound_ms;
    int64_t fence_before, fence_after;
    long long node_timeout = 0;
    int rc, victim, errors = 0, tries = 0, port;
    char last[RP_ERROR_MESSAGE_MAX] = "";
    {
        redisReply *r = rp_hcmd(any_node()->c, "CONFIG GET cluster-node-timeout");
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
            node_timeout = strtoll(r->element[1]->str, NULL, 10);
        freeReplyObject(r);
    }
    snprintf(lname, sizeof lname, "fo-lock");
    victim = owner_of(keyslot(lname), NULL);
    RP_CHECK(victim >= 0 && nodes[victim].pid > 0, "failover: the master of %s and its pid",
             lname);
    name_on(other_name, sizeof other_name, "fo-other", (size_t)(victim + 1) % nnodes);
    l = lt_lock(c, lname, 30000, 1);
    other = lt_lock(c, other_name, 30000, 0);
    for (rc = 0; rc < 3; rc++) {
        a = acquire(l);
        RP_CHECK(a.acquired == 1, "failover: acquired before the kill");
        release(l);
    }
    fence_before = a.fence;
    RP_CHECK(check(rl, lname, 1).allowed, "failover: a check before the kill");
    {   /* the replica has every write before the kill: WAIT for it */
        redisReply *r = rp_hcmd(nodes[victim].c, "WAIT 1 5000");
        RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1,
                 "failover: master %d has a replica in sync (run with --replicas 1)",
                 nodes[victim].port);
        freeReplyObject(r);
    }
    printf("failover: cluster-node-timeout %lld ms; SIGKILL master %d (pid %ld), which "
           "serves slot %u of %s (fence %" PRId64 ")\n", node_timeout, nodes[victim].port,
           (long)nodes[victim].pid, keyslot(lname), lname, fence_before);
    RP_CHECK(kill(nodes[victim].pid, SIGKILL) == 0, "kill: %s", strerror(errno));
    redisFree(nodes[victim].c);
    nodes[victim].c = NULL;

    t0 = rp_harness_now_ms();
    rc = rp_lock_acquire(l, NULL, &a, &e);
    took = rp_harness_now_ms() - t0;
    printf("failover: acquire right after the kill: %s%s%s in %" PRIu64 " ms\n",
           rp_status_name(rc), rc == RP_OK ? "" : ": ", rc == RP_OK ? "" : e.message, took);
    RP_CHECK(took <= TIMEOUT_MS + SLACK_MS, "failover: the first call took %" PRIu64 " ms, "
             "past the command timeout %u ms", took, TIMEOUT_MS);
    RP_CHECK(rc == RP_OK || rc == RP_ETRANSPORT || rc == RP_ETIMEOUT || rc == RP_EREPLY,
             "failover: a transport / timeout / reply error, not %s", rp_status_name(rc));
    if (rc == RP_OK) {
        if (a.acquired)
            release(l);
    } else {
        RP_CHECK(strlen(e.message) > 0, "failover: the error says what failed");
    }
    t0 = rp_harness_now_ms();
    a = acquire(other);
    release(other);
    printf("failover: a lock on another master's slot (%s): acquired %d in %" PRIu64 " ms\n",
           other_name, a.acquired, rp_harness_now_ms() - t0);
    RP_CHECK(a.acquired == 1, "failover: the other masters still serve");

    /* until the replica is promoted: retry the same client, bounded */
    bound_ms = PROMOTION_MS + 2 * (uint64_t)(node_timeout > 0 ? node_timeout : 0);
    t0 = rp_harness_now_ms();
    for (;;) {
        uint64_t c0 = rp_harness_now_ms();
        tries++;
        rc = rp_lock_acquire(l, NULL, &a, &e);
        took = rp_harness_now_ms() - c0;
        RP_CHECK(took <= TIMEOUT_MS + RETRY_BUDGET_MS + SLACK_MS, "failover: a call took %"
                 PRIu64 " ms", took);
        if (rc == RP_OK)
            break;
        errors++;
        if (strcmp(last, e.message) != 0) {
            printf("failover: +%" PRIu64 " ms: %s: %s (%" PRIu64 " ms)\n",
                   rp_harness_now_ms() - t0, rp_status_name(rc), e.message, took);
            snprintf(last, sizeof last, "%s", e.message);
        }
        RP_CHECK(rp_harness_now_ms() - t0 < bound_ms, "failover: no success within %" PRIu64
                 " ms of the kill", bound_ms);
        rp_harness_sleep_ms(100);
    }
    RP_CHECK(a.acquired == 1, "failover: acquired after the promotion");
    fence_after = a.fence;
    owner_of(keyslot(lname), &port);
    printf("failover: acquire succeeded %" PRIu64 " ms after the first, after %d failed "
           "calls; slot %u now on %d; fence %" PRId64 " -> %" PRId64 "\n",
           rp_harness_now_ms() - t0, errors, keyslot(lname), port, fence_before, fence_after);
    RP_CHECK(port != nodes[victim].port, "failover: the slot moved to the replica");
    RP_CHECK(fence_after > fence_before, "failover: fence tokens still increase (%" PRId64
             " after %" PRId64 ")", fence_after, fence_before);
    RP_CHECK(owned(l) == 1, "failover: owned on the new master");
    release(l);
    for (rc = 0; rc < 10; rc++) {
        a = acquire(l);
        RP_CHECK(a.acquired == 1 && a.fence > fence_after, "failover: cycle %d", rc);
        fence_after = a.fence;
        release(l);
        RP_CHECK(check(rl, lname, 1).allowed, "failover: check %d", rc);
    }
    printf("failover: 10 more cycles and checks on the same client: all right (%d tries)\n",
           tries);
    rp_lock_free(other);
    rp_lock_free(l);
    rp_ratelimit_free(rl);
    passed++;
}

/* --- main ------------------------------------------------------------------------------ */

static void read_env(void)
{
    const char *urls = getenv("REDPAT_TEST_NODES"), *pids = getenv("REDPAT_TEST_PIDS");
    const char *p;
    cluster_url = getenv("REDPAT_TEST_URL");
    if (!cluster_url || !strstr(cluster_url, "+cluster://") || !urls || !pids ||
        !getenv("REDPAT_TEST_CLUSTER")) {
        fprintf(stderr, "test_cluster: run under tests/harness/harness.py run --cluster "
                "--servers 1 --replicas 1 -- test_cluster\n");
        exit(2);
    }
    /* the first server's masters: up to the first ',' */
    for (p = urls; *p && *p != ',';) {
        const char *end = p, *colon = NULL, *host;
        node *n;
        while (*end && *end != ' ' && *end != ',')
            end++;
        if (end == p) {
            p++;
            continue;
        }
        RP_CHECK(nnodes < NODES_MAX, "too many nodes");
        n = &nodes[nnodes++];
        host = strstr(p, "://");
        host = host && host < end ? host + 3 : p;
        for (colon = end; colon > host && *colon != ':'; colon--)
            ;
        RP_CHECK(*colon == ':' && (size_t)(colon - host) < sizeof n->host,
                 "REDPAT_TEST_NODES: not host:port: %s", urls);
        memcpy(n->host, host, (size_t)(colon - host));
        n->host[colon - host] = '\0';
        n->port = atoi(colon + 1);
        p = end;
    }
    {
        size_t i = 0;
        for (p = pids; *p && *p != ',' && i < nnodes;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p) {
                p++;
                continue;
            }
            nodes[i++].pid = (pid_t)pid;
            p = end;
        }
        RP_CHECK(i == nnodes, "REDPAT_TEST_PIDS: a pid per node of REDPAT_TEST_NODES");
    }
}

int main(void)
{
    rp_client *c;
    size_t i;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rp_harness_watchdog(240); /* ~10 s normally, ~20 s under ASan; ctest's bound is 300 */
    read_env();
    {   /* REDPAT_TEST_NODES lists the masters first, then the replicas: ROLE tells */
        size_t all = nnodes, m = 0;
        for (i = 0; i < all; i++) {
            node n = nodes[i];
            if (node_connect(&n))
                nodes[m++] = n;
            else
                replicas[nreplicas++] = n;
        }
        nnodes = m;
    }
    RP_CHECK(nnodes >= 3, "3 masters at least (%zu)", nnodes);
    printf("test_cluster: %s, masters", cluster_url);
    for (i = 0; i < nnodes; i++)
        printf(" %s:%d (pid %ld)", nodes[i].host, nodes[i].port, (long)nodes[i].pid);
    printf(", %zu replicas\n", nreplicas);
    expect_ok(rp_hcmd(nodes[0].c, "PING"), "PING", nodes[0].port);
    for (i = 0; i < nnodes; i++)
        expect_ok(rp_hcmd(nodes[i].c, "FLUSHALL"), "FLUSHALL", nodes[i].port);

    c = lt_client(cluster_url, TIMEOUT_MS);
    test_routing(c);
    test_cross_slot(c);
    test_ask(c);
    test_moved(c);
    test_cache_tags(c);
    test_failover(c);
    rp_client_free(c);
    for (i = 0; i < nnodes; i++)
        if (nodes[i].c)
            redisFree(nodes[i].c);
    for (i = 0; i < nreplicas; i++)
        redisFree(replicas[i].c);
    printf("test_cluster: %d passed, 0 failed\n", passed);
    return 0;
}
