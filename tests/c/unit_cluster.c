/* The pure parts of Redis Cluster support (core/src/cluster.c), no server: hash slots
 * (expected values from CLUSTER KEYSLOT of Redis 7.0.15), the keys of commands, redirect
 * errors, and topology replies captured byte for byte from real clusters (Redis 7.0.15:
 * 3 masters, with replicas, during a failover, with host names; Redis 6.2.14: CLUSTER
 * SLOTS only), plus hostile shapes and every allocation failing in turn (no leaks). */
#include "unit_util.h"

#include "cluster.h"
#include "reply_internal.h"

/* --- a counting allocator that can fail the n-th allocation ----------------------------- */
typedef struct counting {
    long live;   /* blocks not freed */
    long calls;  /* allocations so far */
    long fail_at; /* the allocation (0-based) that fails; < 0: none */
} counting;

static void *c_malloc(void *ud, size_t size)
{
    counting *c = ud;
    void *p;
    if (c->fail_at >= 0 && c->calls++ == c->fail_at)
        return NULL;
    if ((p = malloc(size)))
        c->live++;
    return p;
}

static void *c_realloc(void *ud, void *p, size_t size)
{
    counting *c = ud;
    void *n;
    if (c->fail_at >= 0 && c->calls++ == c->fail_at)
        return NULL;
    n = realloc(p, size);
    if (n && !p)
        c->live++;
    return n;
}

static void c_free(void *ud, void *p)
{
    counting *c = ud;
    if (p)
        c->live--;
    free(p);
}

static rp_allocator counting_allocator(counting *c)
{
    rp_allocator a;
    memset(c, 0, sizeof *c);
    c->fail_at = -1;
    a.malloc_fn = c_malloc;
    a.realloc_fn = c_realloc;
    a.free_fn = c_free;
    a.ud = c;
    return a;
}

/* --- replies: from RESP bytes (the core's own reader), or built by hand ---------------- */
/* Plenty for a canned reply (the reader wants a cap). */
#define CANNED_REPLY_MAX ((size_t)1 << 20)
static rp_reply *from_resp(const char *bytes, size_t len)
{
    redisReader *rd = rp_reply__reader_new(rp_allocator_default(), CANNED_REPLY_MAX);
    void *obj = NULL;
    if (!rd || redisReaderFeed(rd, bytes, len) != REDIS_OK ||
        rp_reply__reader_next(rd, &obj) != REDIS_OK || !obj) {
        fprintf(stderr, "could not read a canned reply\n");
        abort();
    }
    rp_reply__reader_free(rd);
    return obj;
}
#define RESP(lit) from_resp(lit, sizeof lit - 1)

/* Hand-built trees (hostile shapes): plain malloc, freed by tree_free. */
static rp_reply *node_new(rp_reply_type type)
{
    rp_reply *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->type = type;
    return r;
}

static rp_reply *T(rp_reply_type type, const char *s, size_t len)
{
    rp_reply *r = node_new(type);
    r->str = malloc(len + 1);
    if (!r->str)
        abort();
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}
static rp_reply *S(const char *s) { return T(RP_REPLY_STRING, s, strlen(s)); }
static rp_reply *ERR(const char *s) { return T(RP_REPLY_ERROR, s, strlen(s)); }
static rp_reply *I(long long v)
{
    rp_reply *r = node_new(RP_REPLY_INTEGER);
    r->integer = v;
    return r;
}
static rp_reply *NIL(void) { return node_new(RP_REPLY_NIL); }
static rp_reply *A(size_t n, ...)
{
    rp_reply *r = node_new(RP_REPLY_ARRAY);
    va_list ap;
    size_t i;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    if (!r->element)
        abort();
    va_start(ap, n);
    for (i = 0; i < n; i++)
        r->element[i] = va_arg(ap, rp_reply *);
    va_end(ap);
    return r;
}

static void tree_free(rp_reply *r)
{
    size_t i;
    if (!r)
        return;
    for (i = 0; i < r->elements; i++)
        tree_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* A CLUSTER SHARDS node and shard, as Redis 7.0 sends them (tls_port 0: none). */
static rp_reply *NODE(const char *ip, const char *endpoint, long long port, long long tls_port,
                      const char *role, const char *health)
{
    if (tls_port)
        return A(16, S("id"), S("0123"), S("port"), I(port), S("tls-port"), I(tls_port),
                 S("ip"), S(ip), S("endpoint"), S(endpoint), S("role"), S(role),
                 S("replication-offset"), I(0), S("health"), S(health));
    return A(14, S("id"), S("0123"), S("port"), I(port), S("ip"), S(ip), S("endpoint"),
             S(endpoint), S("role"), S(role), S("replication-offset"), I(0), S("health"),
             S(health));
}
static rp_reply *SHARD(rp_reply *slots, rp_reply *nodes)
{
    return A(4, S("slots"), slots, S("nodes"), nodes);
}
static rp_reply *MASTER(long long port)
{
    return NODE("127.0.0.1", "127.0.0.1", port, 0, "master", "online");
}
/* A slot range [start, end] as SHARDS lists it; one shard with one node. */
static rp_reply *R2(long long start, long long end) { return A(2, I(start), I(end)); }
static rp_reply *SH1(rp_reply *slots, rp_reply *node) { return A(1, SHARD(slots, A(1, node))); }

/* --- expected topologies ---------------------------------------------------------------- */
typedef struct want_range {
    unsigned start, end;
    const char *host;
    int port;
} want_range;

/* t has exactly these ranges (sorted by start), each naming its master, and nnodes masters
 * without duplicates. */
static void check_topology(const char *name, const rp_cluster_topology *t, const want_range *w,
                           size_t n, size_t nnodes)
{
    size_t i, j;
    int ok = t->nranges == n && t->nnodes == nnodes;
    for (i = 0; ok && i < n; i++) {
        const rp_cluster_range *r = &t->ranges[i];
        ok = r->start == w[i].start && r->end == w[i].end && r->master < t->nnodes &&
             strcmp(t->hosts[r->master], w[i].host) == 0 && t->ports[r->master] == w[i].port;
    }
    for (i = 0; ok && i < t->nnodes; i++)
        for (j = i + 1; ok && j < t->nnodes; j++)
            ok = !(t->ports[i] == t->ports[j] && strcmp(t->hosts[i], t->hosts[j]) == 0);
    CHECK(ok);
    if (!ok) {
        fprintf(stderr, "  %s: got %zu ranges, %zu nodes:\n", name, t->nranges, t->nnodes);
        for (i = 0; i < t->nranges; i++)
            fprintf(stderr, "    %u-%u %s:%d\n", t->ranges[i].start, t->ranges[i].end,
                    t->ranges[i].master < t->nnodes ? t->hosts[t->ranges[i].master] : "?",
                    t->ranges[i].master < t->nnodes ? t->ports[t->ranges[i].master] : -1);
    }
}

#define NWANT(w) (sizeof w / sizeof w[0])

/* --- CLUSTER SHARDS / SLOTS replies captured from real servers (redis-server 7.0.15 and 6.2.14,
 * started by hand on 127.0.0.1; the ports are theirs) ---------------------------------------- */
/* 3 masters, Redis 7.0.15 */
static const char M3_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\n"
    "id\r\n$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    "master\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n"
    "$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n:49286\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS */
static const char M3_SLOTS[] =
    "*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*0\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:49286\r\n$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*0\r\n*3\r\n"
    ":10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:35319\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n*0\r\n";
/* slot 100 moved to the 2nd master, cluster-announce-hostname set */
static const char M3H_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\n"
    "id\r\n$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:101\r\n"
    ":5460\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-33581.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n:100\r\n:100\r\n:5461\r\n"
    ":10922\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n:49286\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS (hostname in the metadata map) */
static const char M3H_SLOTS[] =
    "*5\r\n*3\r\n:0\r\n:99\r\n*4\r\n$9\r\n127.0.0.1\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-33581.example\r\n*3\r\n:100\r\n:100\r\n*4\r\n$9\r\n127.0.0.1\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n*3\r\n:101\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-33581.example\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:49286\r\n"
    "$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:35319\r\n"
    "$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n";
/* cluster-preferred-endpoint-type hostname */
static const char M3HN_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\n"
    "id\r\n$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$18\r\nnode-35319.example\r\n$8\r\n"
    "hostname\r\n$18\r\nnode-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n"
    ":0\r\n:99\r\n:101\r\n:5460\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$18\r\nnode-33581.example\r\n$8\r\nhostname\r\n$18\r\n"
    "node-33581.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n:100\r\n:100\r\n:5461\r\n"
    ":10922\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n:49286\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$18\r\nnode-49286.example\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS */
static const char M3HN_SLOTS[] =
    "*5\r\n*3\r\n:0\r\n:99\r\n*4\r\n$18\r\nnode-33581.example\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":100\r\n:100\r\n*4\r\n$18\r\nnode-49286.example\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":101\r\n:5460\r\n*4\r\n$18\r\nnode-33581.example\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":5461\r\n:10922\r\n*4\r\n$18\r\nnode-49286.example\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":10923\r\n:16383\r\n*4\r\n$18\r\nnode-35319.example\r\n:35319\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";
/* preferred endpoint hostname, one node without one: its endpoint is "?" */
static const char M3Q_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:101\r\n:5460\r\n$5\r\nnodes\r\n*1\r\n"
    "*14\r\n$2\r\nid\r\n$40\r\n1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n"
    ":33581\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n"
    "$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    "*4\r\n$5\r\nslots\r\n*4\r\n:100\r\n:100\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n"
    "*16\r\n$2\r\nid\r\n$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n"
    ":49286\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$18\r\nnode-49286.example\r\n"
    "$8\r\nhostname\r\n$18\r\nnode-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$18\r\nnode-35319.example\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS */
static const char M3Q_SLOTS[] =
    "*5\r\n*3\r\n:0\r\n:99\r\n*4\r\n$1\r\n?\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":100\r\n:100\r\n*4\r\n$18\r\nnode-49286.example\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":101\r\n:5460\r\n*4\r\n$1\r\n?\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":5461\r\n:10922\r\n*4\r\n$18\r\nnode-49286.example\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":10923\r\n:16383\r\n*4\r\n$18\r\nnode-35319.example\r\n:35319\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";
/* cluster-preferred-endpoint-type unknown-endpoint: endpoint "" */
static const char M3U_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\n"
    "id\r\n$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:101\r\n"
    ":5460\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$8\r\nhostname\r\n$18\r\nnode-33581.example\r\n"
    "$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\n"
    "online\r\n*4\r\n$5\r\nslots\r\n*4\r\n:100\r\n:100\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n"
    "*1\r\n*16\r\n$2\r\nid\r\n$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\n"
    "port\r\n:49286\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$8\r\n"
    "hostname\r\n$18\r\nnode-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS: the host is a nil */
static const char M3U_SLOTS[] =
    "*5\r\n*3\r\n:0\r\n:99\r\n*4\r\n$-1\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\n"
    "hostname\r\n$18\r\nnode-33581.example\r\n*3\r\n:100\r\n:100\r\n*4\r\n$-1\r\n:49286\r\n"
    "$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    "$8\r\nhostname\r\n$18\r\nnode-49286.example\r\n*3\r\n:101\r\n:5460\r\n*4\r\n$-1\r\n"
    ":33581\r\n$40\r\n1fb6b98d9777a0e809eef934120f274198e14e50\r\n*4\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nhostname\r\n$18\r\nnode-33581.example\r\n*3\r\n:5461\r\n:10922\r\n"
    "*4\r\n$-1\r\n:49286\r\n$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*4\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\nnode-49286.example\r\n*3\r\n:10923\r\n"
    ":16383\r\n*4\r\n$-1\r\n:35319\r\n$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n"
    "*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\nnode-35319.example\r\n";
/* a 4th master that serves no slots */
static const char M4E_SHARDS[] =
    "*4\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "09b4062f9a2f3d11c6c5dbc0f3443117f83832db\r\n$4\r\nport\r\n:43309\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:101\r\n"
    ":5460\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n"
    ":100\r\n:100\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n:49286\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the master of 10923-16383 stopped: health "fail" */
static const char M4F_SHARDS[] =
    "*4\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "09b4062f9a2f3d11c6c5dbc0f3443117f83832db\r\n$4\r\nport\r\n:43309\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n$4\r\nport\r\n:35319\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$4\r\nfail\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:101\r\n:5460\r\n"
    "$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n$4\r\nport\r\n:33581\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*4\r\n"
    ":100\r\n:100\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*16\r\n$2\r\nid\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n$4\r\nport\r\n:49286\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n"
    "$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS (still lists it) */
static const char M4F_SLOTS[] =
    "*5\r\n*3\r\n:0\r\n:99\r\n*4\r\n$9\r\n127.0.0.1\r\n:33581\r\n$40\r\n"
    "1fb6b98d9777a0e809eef934120f274198e14e50\r\n*0\r\n*3\r\n:100\r\n:100\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:49286\r\n$40\r\n095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$8\r\n"
    "hostname\r\n$18\r\nnode-49286.example\r\n*3\r\n:101\r\n:5460\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:33581\r\n$40\r\n1fb6b98d9777a0e809eef934120f274198e14e50\r\n*0\r\n*3\r\n"
    ":5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:49286\r\n$40\r\n"
    "095adc0ba09e6e88a263d346095b8a8ff508bf03\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-49286.example\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:35319\r\n"
    "$40\r\n247692d4ce915bf11e8ebb84135d2d9bde395eaf\r\n*2\r\n$8\r\nhostname\r\n$18\r\n"
    "node-35319.example\r\n";
/* 3 masters with a replica each */
static const char R6_SHARDS[] =
    "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\n"
    "id\r\n$40\r\n5f98959aec1019df27990508cde88dbfefdfdf62\r\n$4\r\nport\r\n:33435\r\n$2\r\n"
    "ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    "master\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n"
    "$2\r\nid\r\n$40\r\nf17f23f759cffcd571519fa57c9f4a026702849a\r\n$4\r\nport\r\n:48402\r\n"
    "$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\n"
    "replica\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n"
    "$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "62679cc2a2b6b9a674275ac72d94403dcc2bd2df\r\n$4\r\nport\r\n:41360\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "84d68eb029b658e88d2f93dc203ee3ecb15dd550\r\n$4\r\nport\r\n:31409\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\n"
    "replication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "42ab90aaa662afde89052d7ac243c57b9e0c97b9\r\n$4\r\nport\r\n:29175\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "5669b169945580444823cc9fee0047c938f550ad\r\n$4\r\nport\r\n:33333\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\n"
    "replication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS */
static const char R6_SLOTS[] =
    "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:29175\r\n$40\r\n"
    "42ab90aaa662afde89052d7ac243c57b9e0c97b9\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:33333\r\n"
    "$40\r\n5669b169945580444823cc9fee0047c938f550ad\r\n*0\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n"
    "$9\r\n127.0.0.1\r\n:41360\r\n$40\r\n62679cc2a2b6b9a674275ac72d94403dcc2bd2df\r\n*0\r\n"
    "*4\r\n$9\r\n127.0.0.1\r\n:31409\r\n$40\r\n84d68eb029b658e88d2f93dc203ee3ecb15dd550\r\n"
    "*0\r\n*4\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:33435\r\n$40\r\n"
    "5f98959aec1019df27990508cde88dbfefdfdf62\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:48402\r\n"
    "$40\r\nf17f23f759cffcd571519fa57c9f4a026702849a\r\n*0\r\n";
/* after the master of 0-5460 died and its replica took over */
static const char R6F_SHARDS[] =
    "*4\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n"
    "$40\r\n5669b169945580444823cc9fee0047c938f550ad\r\n$4\r\nport\r\n:33333\r\n$2\r\nip\r\n"
    "$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
    "$18\r\nreplication-offset\r\n:42\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\n"
    "slots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "5f98959aec1019df27990508cde88dbfefdfdf62\r\n$4\r\nport\r\n:33435\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "f17f23f759cffcd571519fa57c9f4a026702849a\r\n$4\r\nport\r\n:48402\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\n"
    "replication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*0\r\n"
    "$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "42ab90aaa662afde89052d7ac243c57b9e0c97b9\r\n$4\r\nport\r\n:29175\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:42\r\n$6\r\nhealth\r\n$4\r\nfail\r\n*4\r\n$5\r\nslots\r\n*2\r\n"
    ":5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "62679cc2a2b6b9a674275ac72d94403dcc2bd2df\r\n$4\r\nport\r\n:41360\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n"
    "replication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    "84d68eb029b658e88d2f93dc203ee3ecb15dd550\r\n$4\r\nport\r\n:31409\r\n$2\r\nip\r\n$9\r\n"
    "127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\n"
    "replication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
/* the same, CLUSTER SLOTS */
static const char R6F_SLOTS[] =
    "*3\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:33333\r\n$40\r\n"
    "5669b169945580444823cc9fee0047c938f550ad\r\n*0\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:41360\r\n$40\r\n62679cc2a2b6b9a674275ac72d94403dcc2bd2df\r\n*0\r\n*4\r\n"
    "$9\r\n127.0.0.1\r\n:31409\r\n$40\r\n84d68eb029b658e88d2f93dc203ee3ecb15dd550\r\n*0\r\n"
    "*4\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:33435\r\n$40\r\n"
    "5f98959aec1019df27990508cde88dbfefdfdf62\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:48402\r\n"
    "$40\r\nf17f23f759cffcd571519fa57c9f4a026702849a\r\n*0\r\n";
/* 3 masters, Redis 6.2.14 */
static const char O3_SLOTS[] =
    "*3\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:29215\r\n$40\r\n"
    "64aeffbd704f9fe0e5cba195de8606bce7fd00b3\r\n*3\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n"
    "127.0.0.1\r\n:31119\r\n$40\r\n48d32bf93a52a79fb7c2f1131061754d6401ba6c\r\n*3\r\n"
    ":10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:42848\r\n$40\r\n"
    "a160994a0283dcc2133cc587e88fe718c2aa83de\r\n";
/* Redis 6.2.14 has no CLUSTER SHARDS */
static const char O3_SHARDS[] =
    "-ERR Unknown subcommand or wrong number of arguments for 'SHARDS'. Try CLUSTER HELP.\r\n";

/* --- hash slots ------------------------------------------------------------------------- */
static void test_slots(void)
{
    /* CLUSTER KEYSLOT of Redis 7.0.15 */
    static const struct {
        const char *key;
        size_t len;
        unsigned slot;
    } cases[] = {
        { "foo", 3, 12182 },
        { "123456789", 9, 0x31C3 % RP_CLUSTER_SLOTS }, /* CRC16-XMODEM's check value */
        { "{user1000}.following", 20, 3443 },
        { "{user1000}.followers", 20, 3443 },
        { "foo{}{bar}", 10, 8363 },   /* "{}" is no tag: the whole key */
        { "foo{{bar}}zap", 13, 4015 }, /* the tag is "{bar" */
        { "{bar", 4, 4015 },
        { "foo{bar}{zap}", 13, 5061 }, /* the first tag only */
        { "bar", 3, 5061 },
        { "zap", 3, 6469 },
        { "", 0, 0 },
        { "{}", 2, 15257 },
        { "{", 1, 4092 },
        { "}", 1, 12090 },
        { "a{b", 3, 13340 },  /* no closing brace: the whole key */
        { "a}b{c}", 6, 7365 }, /* a '}' before the '{' does not count */
        { "{}x", 3, 10595 },
        { "a\0b", 3, 8383 },   /* binary-safe */
        { "{\xff\0}", 4, 1023 }, /* a binary tag hashes like the bare bytes */
        { "\xff\0", 2, 1023 },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = rp_cluster__slot(cases[i].key, cases[i].len);
        CHECK(got == cases[i].slot);
        if (got != cases[i].slot)
            fprintf(stderr, "  slot of case %zu: %u, want %u\n", i, got, cases[i].slot);
    }
    CHECK(rp_cluster__slot(NULL, 0) == 0);
    /* the tag decides: anything around it does not */
    CHECK(rp_cluster__slot("t:lock:{name}", 13) == rp_cluster__slot("name", 4));
    CHECK(rp_cluster__slot("t:lock:{name}:fence", 19) == rp_cluster__slot("x{name}y", 8));
}

/* --- the keys of a command ---------------------------------------------------------------- */
#define ARGS_MAX 32

typedef struct args {
    int argc;
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    char buf[512];
} args;

/* Splits line at spaces into argv (each length given, so no NUL is needed). */
static void split(args *a, const char *line)
{
    char *p = a->buf, *start;
    size_t n = strlen(line);
    if (n >= sizeof a->buf)
        abort();
    memcpy(a->buf, line, n + 1);
    a->argc = 0;
    while (*p) {
        if (a->argc == ARGS_MAX)
            abort();
        start = p;
        while (*p && *p != ' ')
            p++;
        a->argv[a->argc] = start;
        a->len[a->argc] = (size_t)(p - start);
        a->argc++;
        if (*p)
            p++;
    }
}

static void check_keys_at(int line_no, const char *line, rp_cmd_keys_kind kind, size_t first,
                          size_t last, size_t step)
{
    args a;
    rp_cmd_keys k;
    int ok;
    split(&a, line);
    k = rp_cluster__command_keys(a.argc, a.argv, a.len);
    ok = k.kind == kind;
    if (ok && (kind == RP_CMD_KEYS_LIST))
        ok = k.first == first && k.last == last && k.step == step;
    if (ok && kind == RP_CMD_KEYS_CHANNEL)
        ok = k.first == first;
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr,
                "%s:%d: keys of \"%s\": kind %d %zu..%zu step %zu, want kind %d %zu..%zu "
                "step %zu\n",
                __FILE__, line_no, line, (int)k.kind, k.first, k.last, k.step, (int)kind, first,
                last, step);
    }
}
#define KEYS(line, first, last, step) \
    check_keys_at(__LINE__, line, RP_CMD_KEYS_LIST, first, last, step)
#define NOKEYS(line) check_keys_at(__LINE__, line, RP_CMD_KEYS_NONE, 0, 0, 0)
#define UNKNOWN(line) check_keys_at(__LINE__, line, RP_CMD_KEYS_UNKNOWN, 0, 0, 0)
#define CHANNEL(line) check_keys_at(__LINE__, line, RP_CMD_KEYS_CHANNEL, 1, 1, 1)
/* too short for its form: no keys (last < first) */
#define SHORT(line, first) check_keys_at(__LINE__, line, RP_CMD_KEYS_LIST, first, (first) - 1, 1)

/* Every name of each group, with four arguments after it ("a b c d"): a name missing from
 * the table or out of its sorted order is not found (UNKNOWN), so this also checks the
 * binary search's order. */
static void check_group(const char *const *names, size_t n, rp_cmd_keys_kind kind, size_t first,
                        size_t last, size_t step)
{
    size_t i;
    char line[64];
    for (i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%s a b c d", names[i]);
        check_keys_at(__LINE__, line, kind, first, last, step);
    }
}
#define GROUP(names, kind, first, last, step) \
    check_group(names, sizeof names / sizeof names[0], kind, first, last, step)

static void test_command_groups(void)
{
    static const char *const one[] = {
        "APPEND", "BITCOUNT", "BITFIELD", "BITFIELD_RO", "BITPOS", "DECR", "DECRBY", "DUMP",
        "EXPIRE", "EXPIREAT", "EXPIRETIME", "GEOADD", "GEODIST", "GEOHASH", "GEOPOS",
        "GEORADIUS", "GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO", "GEORADIUS_RO", "GEOSEARCH",
        "GET", "GETBIT", "GETDEL", "GETEX", "GETRANGE", "GETSET", "HDEL", "HEXISTS", "HGET",
        "HGETALL", "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET", "HRANDFIELD",
        "HSCAN", "HSET", "HSETNX", "HSTRLEN", "HVALS", "INCR", "INCRBY", "INCRBYFLOAT",
        "LINDEX", "LINSERT", "LLEN", "LPOP", "LPOS", "LPUSH", "LPUSHX", "LRANGE", "LREM",
        "LSET", "LTRIM", "PERSIST", "PEXPIRE", "PEXPIREAT", "PEXPIRETIME", "PFADD", "PSETEX",
        "PTTL", "RESTORE", "RPOP", "RPUSH", "RPUSHX", "SADD", "SCARD", "SET", "SETBIT",
        "SETEX", "SETNX", "SETRANGE", "SISMEMBER", "SMEMBERS", "SMISMEMBER", "SORT",
        "SORT_RO", "SPOP", "SRANDMEMBER", "SREM", "SSCAN", "STRLEN", "SUBSTR", "TTL", "TYPE",
        "XACK", "XADD", "XAUTOCLAIM", "XCLAIM", "XDEL", "XLEN", "XPENDING", "XRANGE",
        "XREVRANGE", "XSETID", "XTRIM", "ZADD", "ZCARD", "ZCOUNT", "ZDIFFSTORE", "ZINCRBY",
        "ZINTERSTORE", "ZLEXCOUNT", "ZMSCORE", "ZPOPMAX", "ZPOPMIN", "ZRANDMEMBER", "ZRANGE",
        "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANK", "ZREM", "ZREMRANGEBYLEX", "ZREMRANGEBYRANK",
        "ZREMRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYLEX", "ZREVRANGEBYSCORE", "ZREVRANK",
        "ZSCAN", "ZSCORE", "ZUNIONSTORE",
    };
    static const char *const two[] = {
        "BLMOVE", "BRPOPLPUSH", "COPY", "GEOSEARCHSTORE", "LCS", "LMOVE", "RENAME",
        "RENAMENX", "RPOPLPUSH", "SMOVE", "ZRANGESTORE",
    };
    static const char *const all[] = {
        "DEL", "EXISTS", "MGET", "PFCOUNT", "PFMERGE", "SDIFF", "SDIFFSTORE", "SINTER",
        "SINTERSTORE", "SUNION", "SUNIONSTORE", "TOUCH", "UNLINK", "WATCH",
    };
    static const char *const but_timeout[] = { "BLPOP", "BRPOP", "BZPOPMAX", "BZPOPMIN" };
    static const char *const pairs[] = { "MSET", "MSETNX" };
    static const char *const none[] = {
        "ACL", "ASKING", "AUTH", "BGREWRITEAOF", "BGSAVE", "CLIENT", "CLUSTER", "COMMAND",
        "CONFIG", "DBSIZE", "DEBUG", "DISCARD", "ECHO", "EXEC", "FAILOVER", "FLUSHALL",
        "FLUSHDB", "FUNCTION", "HELLO", "INFO", "KEYS", "LASTSAVE", "LATENCY", "LOLWUT",
        "MODULE", "MONITOR", "MULTI", "PING", "PUBSUB", "QUIT", "RANDOMKEY", "READONLY",
        "READWRITE", "REPLICAOF", "RESET", "ROLE", "SAVE", "SCAN", "SCRIPT", "SELECT",
        "SHUTDOWN", "SLAVEOF", "SLOWLOG", "SWAPDB", "TIME", "UNWATCH", "WAIT",
    };
    static const char *const channel[] = {
        "PSUBSCRIBE", "PUBLISH", "PUNSUBSCRIBE", "SPUBLISH", "SSUBSCRIBE", "SUBSCRIBE",
        "SUNSUBSCRIBE", "UNSUBSCRIBE",
    };
    GROUP(one, RP_CMD_KEYS_LIST, 1, 1, 1);
    GROUP(two, RP_CMD_KEYS_LIST, 1, 2, 1);
    GROUP(all, RP_CMD_KEYS_LIST, 1, 4, 1);
    GROUP(but_timeout, RP_CMD_KEYS_LIST, 1, 3, 1);
    GROUP(pairs, RP_CMD_KEYS_LIST, 1, 4, 2); /* keys at 1 and 3 */
    GROUP(none, RP_CMD_KEYS_NONE, 0, 0, 0);
    GROUP(channel, RP_CMD_KEYS_CHANNEL, 1, 1, 1);
}

static void test_command_keys(void)
{
    args a;
    rp_cmd_keys k;
    static const char *const get[] = { "GET", "k" };
    static const char bin_get[] = { 'g', 'E', 't', 'x' };
    const char *bin_argv[2];
    size_t bin_len[2];

    /* names: case-insensitive, compared with their length (binary-safe) */
    KEYS("get k", 1, 1, 1);
    KEYS("GeT k", 1, 1, 1);
    KEYS("EvalSha sha 1 k a", 3, 3, 1);
    UNKNOWN("GETX k");
    UNKNOWN("GE k");
    UNKNOWN("NOSUCHCOMMAND k");
    UNKNOWN("ZZZZ k");
    UNKNOWN("AAA k");
    UNKNOWN("GET_ k");
    UNKNOWN("AVERYVERYVERYLONGCOMMANDNAMETHATISNOTACOMMAND k");
    bin_argv[0] = bin_get; /* "gEt" then a byte past its length: not "gEtx" */
    bin_len[0] = 3;
    bin_argv[1] = "k";
    bin_len[1] = 1;
    k = rp_cluster__command_keys(2, bin_argv, bin_len);
    CHECK(k.kind == RP_CMD_KEYS_LIST && k.first == 1 && k.last == 1);
    bin_len[0] = 4;
    CHECK(rp_cluster__command_keys(2, bin_argv, bin_len).kind == RP_CMD_KEYS_UNKNOWN);
    {
        static const char nul_get[] = { 'G', 'E', 'T', '\0', 'X' }; /* a NUL inside */
        bin_argv[0] = nul_get;
        bin_len[0] = sizeof nul_get;
        CHECK(rp_cluster__command_keys(2, bin_argv, bin_len).kind == RP_CMD_KEYS_UNKNOWN);
        bin_len[0] = 3;
        CHECK(rp_cluster__command_keys(2, bin_argv, bin_len).kind == RP_CMD_KEYS_LIST);
    }
    /* argvlen NULL: NUL-terminated arguments */
    k = rp_cluster__command_keys(2, get, NULL);
    CHECK(k.kind == RP_CMD_KEYS_LIST && k.first == 1 && k.last == 1 && k.step == 1);
    /* nothing to look at */
    CHECK(rp_cluster__command_keys(0, get, NULL).kind == RP_CMD_KEYS_UNKNOWN);
    CHECK(rp_cluster__command_keys(-1, get, NULL).kind == RP_CMD_KEYS_UNKNOWN);
    CHECK(rp_cluster__command_keys(1, NULL, NULL).kind == RP_CMD_KEYS_UNKNOWN);
    split(&a, "");
    CHECK(a.argc == 0);

    /* strings */
    KEYS("SET k v", 1, 1, 1);
    KEYS("SET k v PX 100 NX", 1, 1, 1);
    KEYS("MGET a", 1, 1, 1);
    KEYS("MGET a b c", 1, 3, 1);
    KEYS("MSET a 1 b 2", 1, 4, 2); /* a at 1, b at 3 */
    KEYS("MSETNX a 1", 1, 2, 2);
    KEYS("MSET a 1 b", 1, 3, 2);   /* odd: Redis refuses it, the keys are still these */
    /* keys */
    KEYS("DEL a", 1, 1, 1);
    KEYS("UNLINK a b", 1, 2, 1);
    KEYS("EXISTS a b c", 1, 3, 1);
    KEYS("RENAME a b", 1, 2, 1);
    KEYS("COPY a b DB 0 REPLACE", 1, 2, 1);
    KEYS("RESTORE k 0 payload", 1, 1, 1);
    /* lists, sorted sets: the trailing timeout is no key */
    KEYS("BLPOP a 0", 1, 1, 1);
    KEYS("BRPOP a b c 1.5", 1, 3, 1);
    KEYS("BZPOPMIN z 0", 1, 1, 1);
    KEYS("BZPOPMAX z y 0", 1, 2, 1);
    KEYS("LMOVE src dst LEFT RIGHT", 1, 2, 1);
    KEYS("RPOPLPUSH src dst", 1, 2, 1);
    KEYS("ZRANGESTORE dst src 0 -1", 1, 2, 1);
    KEYS("GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km", 1, 2, 1);
    KEYS("BITOP AND dst a b", 2, 4, 1);
    KEYS("BITOP NOT dst a", 2, 3, 1);
    KEYS("PFMERGE dst a b", 1, 3, 1);
    KEYS("WATCH a b", 1, 2, 1);

    /* too short for the form: no keys, Redis refuses the command itself */
    SHORT("GET", 1);
    SHORT("DEL", 1);
    SHORT("RENAME a", 1);    /* its second key is missing */
    SHORT("BLPOP a", 1);     /* only the timeout (or only a key): no key before a timeout */
    SHORT("BLPOP", 1);
    SHORT("MSET", 1);
    SHORT("BITOP AND", 2);
    SHORT("BITOP", 2);
    KEYS("BITOP AND dst", 2, 2, 1); /* no source: Redis refuses, dst is still the key */

    /* scripts and functions: numkeys at argv[2] */
    KEYS("EVAL s 1 k", 3, 3, 1);
    KEYS("EVAL s 2 k1 k2 a1 a2", 3, 4, 1);
    KEYS("EVALSHA sha 3 k1 k2 k3", 3, 5, 1);
    KEYS("EVAL_RO s 1 k a", 3, 3, 1);
    KEYS("EVALSHA_RO sha 1 k", 3, 3, 1);
    KEYS("FCALL f 2 k1 k2 a", 3, 4, 1);
    KEYS("FCALL_RO f 1 k", 3, 3, 1);
    NOKEYS("EVAL s 0");
    NOKEYS("EVALSHA sha 0 a1 a2");
    NOKEYS("FCALL f 0");
    NOKEYS("EVAL s 00");
    SHORT("EVALSHA sha 2 k1", 3);    /* numkeys past the end */
    SHORT("EVALSHA sha 99999999999999999999999 k", 3); /* does not fit */
    SHORT("EVAL s x k", 3);          /* not a number */
    SHORT("EVAL s -1 k", 3);
    SHORT("EVAL s +1 k", 3);
    SHORT("EVAL s 1x k", 3);
    SHORT("EVAL s", 3);
    SHORT("EVAL", 3);
    {
        static const char *const empty_numkeys[] = { "EVAL", "s", "", "k" };
        k = rp_cluster__command_keys(4, empty_numkeys, NULL);
        CHECK(k.kind == RP_CMD_KEYS_LIST && k.last < k.first);
    }
    /* numkeys at argv[1] (or [2] after a timeout) */
    KEYS("ZUNION 2 a b WEIGHTS 1 2", 2, 3, 1);
    KEYS("ZINTER 1 a", 2, 2, 1);
    KEYS("ZDIFF 2 a b", 2, 3, 1);
    KEYS("ZINTERCARD 2 a b LIMIT 1", 2, 3, 1);
    KEYS("SINTERCARD 1 a", 2, 2, 1);
    KEYS("LMPOP 2 a b LEFT", 2, 3, 1);
    KEYS("ZMPOP 1 z MIN", 2, 2, 1);
    KEYS("BLMPOP 0 2 a b LEFT", 3, 4, 1);
    KEYS("BZMPOP 1.5 1 z MAX", 3, 3, 1);
    SHORT("ZUNION 3 a b", 2);
    SHORT("ZUNION", 2);

    /* streams */
    KEYS("XADD s * f v", 1, 1, 1);
    KEYS("XREAD STREAMS s 0", 2, 2, 1);
    KEYS("xread count 10 block 0 streams s1 s2 0 0", 6, 7, 1);
    KEYS("XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 > >", 7, 8, 1);
    KEYS("XREADGROUP GROUP STREAMS STREAMS NOACK STREAMS s >", 6, 6, 1); /* group, consumer
                                                                           named STREAMS */
    KEYS("XREADGROUP GROUP g c BLOCK 100 NOACK STREAMS s >", 8, 8, 1);
    SHORT("XREAD STREAMS s1 s2 0", 2); /* odd: Redis refuses */
    SHORT("XREAD STREAMS", 2);
    SHORT("XREAD COUNT 1", 1);         /* no STREAMS */
    SHORT("XREAD", 1);
    SHORT("XREAD BOGUS 1 STREAMS s 0", 1); /* an unknown option: a syntax error */
    KEYS("XGROUP CREATE s g $ MKSTREAM", 2, 2, 1);
    KEYS("xgroup createconsumer s g c", 2, 2, 1);
    KEYS("XGROUP DELCONSUMER s g c", 2, 2, 1);
    KEYS("XGROUP DESTROY s g", 2, 2, 1);
    KEYS("XGROUP SETID s g 0", 2, 2, 1);
    NOKEYS("XGROUP HELP");
    KEYS("XINFO STREAM s FULL", 2, 2, 1);
    KEYS("XINFO GROUPS s", 2, 2, 1);
    KEYS("XINFO CONSUMERS s g", 2, 2, 1);
    NOKEYS("XINFO help");
    UNKNOWN("XINFO NOSUCH s");
    SHORT("XINFO", 2);
    SHORT("XINFO STREAM", 2);

    /* OBJECT, MEMORY: a key at 2 for some subcommands */
    KEYS("OBJECT ENCODING k", 2, 2, 1);
    KEYS("object freq k", 2, 2, 1);
    KEYS("OBJECT IDLETIME k", 2, 2, 1);
    KEYS("OBJECT REFCOUNT k", 2, 2, 1);
    NOKEYS("OBJECT HELP");
    UNKNOWN("OBJECT NOSUCH k");
    SHORT("OBJECT", 2);
    KEYS("MEMORY USAGE k SAMPLES 5", 2, 2, 1);
    NOKEYS("MEMORY STATS");
    NOKEYS("MEMORY DOCTOR");
    NOKEYS("MEMORY MALLOC-STATS");
    NOKEYS("MEMORY PURGE");
    NOKEYS("MEMORY HELP");
    SHORT("MEMORY USAGE", 2);

    /* pub/sub: route by the channel; an unsubscribe from everything is keyless */
    CHANNEL("SUBSCRIBE ch");
    CHANNEL("SUBSCRIBE a b");
    CHANNEL("PSUBSCRIBE news.*");
    CHANNEL("SSUBSCRIBE ch");
    CHANNEL("PUBLISH ch msg");
    CHANNEL("SPUBLISH ch msg");
    CHANNEL("UNSUBSCRIBE ch");
    CHANNEL("SUNSUBSCRIBE ch");
    NOKEYS("UNSUBSCRIBE");
    NOKEYS("PUNSUBSCRIBE");
    NOKEYS("SUNSUBSCRIBE");
    SHORT("SUBSCRIBE", 1);
    SHORT("PUBLISH", 1);

    /* keyless */
    NOKEYS("PING");
    NOKEYS("CONFIG SET maxmemory 1");
    NOKEYS("SCRIPT LOAD s");
    NOKEYS("FUNCTION LOAD code");
    NOKEYS("CLUSTER KEYSLOT k");
    NOKEYS("KEYS *");
    NOKEYS("SCAN 0 MATCH x*");
}

/* --- redirects ---------------------------------------------------------------------------- */
static void check_redirect_at(int line_no, rp_reply_type type, const char *text,
                              rp_redirect_kind kind, unsigned slot, const char *host, int port)
{
    rp_reply *r = T(type, text, strlen(text));
    rp_redirect d = rp_cluster__redirect(r);
    int ok = d.kind == kind;
    if (ok && (kind == RP_REDIRECT_MOVED || kind == RP_REDIRECT_ASK))
        ok = d.slot == slot && strcmp(d.host, host) == 0 && d.port == port;
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "%s:%d: redirect of \"%s\": kind %d slot %u host \"%s\" port %d\n",
                __FILE__, line_no, text, (int)d.kind, d.slot, d.host, d.port);
    }
    tree_free(r);
}
#define REDIRECT(text, kind, slot, host, port) \
    check_redirect_at(__LINE__, RP_REPLY_ERROR, text, kind, slot, host, port)
#define NOREDIRECT(text) \
    check_redirect_at(__LINE__, RP_REPLY_ERROR, text, RP_REDIRECT_NONE, 0, "", 0)

static void test_redirects(void)
{
    char big[RP_CLUSTER_HOST_MAX + 32];
    rp_reply *r;
    rp_redirect d;
    REDIRECT("MOVED 12182 127.0.0.1:35319", RP_REDIRECT_MOVED, 12182, "127.0.0.1", 35319);
    REDIRECT("MOVED 3999 127.0.0.1:6381", RP_REDIRECT_MOVED, 3999, "127.0.0.1", 6381);
    REDIRECT("ASK 3999 127.0.0.1:6381", RP_REDIRECT_ASK, 3999, "127.0.0.1", 6381);
    REDIRECT("MOVED 3999 ::1:6381", RP_REDIRECT_MOVED, 3999, "::1", 6381);
    REDIRECT("MOVED 3999 [::1]:6381", RP_REDIRECT_MOVED, 3999, "::1", 6381);
    REDIRECT("MOVED 3999 2001:db8::7:6381", RP_REDIRECT_MOVED, 3999, "2001:db8::7", 6381);
    REDIRECT("MOVED 3999 :6381", RP_REDIRECT_MOVED, 3999, "", 6381);
    REDIRECT("ASK 0 node-1.example:1", RP_REDIRECT_ASK, 0, "node-1.example", 1);
    REDIRECT("MOVED 16383 h:65535", RP_REDIRECT_MOVED, 16383, "h", 65535);
    REDIRECT("TRYAGAIN Multiple keys request during rehashing of slot",
             RP_REDIRECT_TRYAGAIN, 0, "", 0);
    REDIRECT("TRYAGAIN", RP_REDIRECT_TRYAGAIN, 0, "", 0);
    REDIRECT("CLUSTERDOWN The cluster is down", RP_REDIRECT_CLUSTERDOWN, 0, "", 0);
    REDIRECT("CLUSTERDOWN Hash slot not served", RP_REDIRECT_CLUSTERDOWN, 0, "", 0);
    NOREDIRECT("MOVED 16384 127.0.0.1:6381"); /* no such slot */
    NOREDIRECT("MOVED 99999999999 127.0.0.1:6381");
    NOREDIRECT("MOVED -1 127.0.0.1:6381");
    NOREDIRECT("MOVED 3999 127.0.0.1:0");     /* no such port */
    NOREDIRECT("MOVED 3999 127.0.0.1:65536");
    NOREDIRECT("MOVED 3999 127.0.0.1:6381x");
    NOREDIRECT("MOVED 3999 127.0.0.1:");
    NOREDIRECT("MOVED 3999 127.0.0.1");       /* no port at all */
    NOREDIRECT("MOVED 3999");
    NOREDIRECT("MOVED 3999 ");
    NOREDIRECT("MOVED");
    NOREDIRECT("MOVED x 127.0.0.1:6381");
    NOREDIRECT("MOVED  3999 127.0.0.1:6381"); /* two spaces */
    NOREDIRECT("MOVED 3999 127.0.0.1:6381 extra");
    NOREDIRECT("MOVEDX 3999 127.0.0.1:6381");
    NOREDIRECT("moved 3999 127.0.0.1:6381");  /* Redis sends them in upper case */
    NOREDIRECT("ASKING 3999 127.0.0.1:6381");
    NOREDIRECT("TRYAGAINX");
    NOREDIRECT("CLUSTERDOWNX");
    NOREDIRECT("ERR MOVED 3999 127.0.0.1:6381");
    NOREDIRECT("NOSCRIPT No matching script");
    NOREDIRECT("");
    check_redirect_at(__LINE__, RP_REPLY_STATUS, "MOVED 3999 127.0.0.1:6381", RP_REDIRECT_NONE,
                      0, "", 0);
    check_redirect_at(__LINE__, RP_REPLY_STRING, "ASK 3999 127.0.0.1:6381", RP_REDIRECT_NONE,
                      0, "", 0);
    check_redirect_at(__LINE__, RP_REPLY_STRING, "TRYAGAIN", RP_REDIRECT_NONE, 0, "", 0);
    d = rp_cluster__redirect(NULL);
    CHECK(d.kind == RP_REDIRECT_NONE);
    r = I(3999);
    CHECK(rp_cluster__redirect(r).kind == RP_REDIRECT_NONE);
    tree_free(r);
    /* a host just fitting, one byte too long */
    memset(big, 0, sizeof big);
    memcpy(big, "MOVED 1 ", 8);
    memset(big + 8, 'h', RP_CLUSTER_HOST_MAX - 1);
    memcpy(big + 8 + RP_CLUSTER_HOST_MAX - 1, ":6379", 5);
    r = ERR(big);
    d = rp_cluster__redirect(r);
    CHECK(d.kind == RP_REDIRECT_MOVED && strlen(d.host) == RP_CLUSTER_HOST_MAX - 1 &&
          d.port == 6379);
    tree_free(r);
    memset(big + 8, 'h', RP_CLUSTER_HOST_MAX);
    memcpy(big + 8 + RP_CLUSTER_HOST_MAX, ":6379", 5);
    r = ERR(big);
    CHECK(rp_cluster__redirect(r).kind == RP_REDIRECT_NONE);
    tree_free(r);
    /* a NUL inside the address: not a host */
    r = T(RP_REPLY_ERROR, "MOVED 1 a\0b:6379", 16);
    CHECK(rp_cluster__redirect(r).kind == RP_REDIRECT_NONE);
    tree_free(r);
}

/* --- topology: real replies ---------------------------------------------------------------- */
typedef int (*parse_fn)(const rp_reply *r, int tls, const char *unknown_host,
                        const rp_allocator *a, rp_cluster_topology *out, char *why,
                        size_t whylen);

static int parse_shards(const rp_reply *r, int tls, const char *unknown_host,
                        const rp_allocator *a, rp_cluster_topology *out, char *why,
                        size_t whylen)
{
    return rp_cluster__parse_shards(r, tls, unknown_host, a, out, why, whylen);
}

static int parse_slots(const rp_reply *r, int tls, const char *unknown_host,
                       const rp_allocator *a, rp_cluster_topology *out, char *why,
                       size_t whylen)
{
    (void)tls;
    return rp_cluster__parse_slots(r, unknown_host, a, out, why, whylen);
}

static int topology_empty(const rp_cluster_topology *t)
{
    return !t->ranges && !t->nranges && !t->hosts && !t->ports && !t->nnodes;
}

/* Parses r and checks the result; then again with each allocation failing in turn: every
 * failure is RP_ENOMEM, leaves *out empty and leaks nothing. */
static void check_parse_at(int line_no, const char *name, parse_fn fn, const rp_reply *r,
                           int tls, const want_range *w, size_t n, size_t nnodes)
{
    counting c;
    rp_allocator a = counting_allocator(&c);
    rp_cluster_topology t;
    char why[256] = "";
    int rc = fn(r, tls, "seed.example", &a, &t, why, sizeof why);
    long fail_at;
    CHECK(rc == RP_OK);
    if (rc != RP_OK) {
        fprintf(stderr, "%s:%d: %s: %d, %s\n", __FILE__, line_no, name, rc, why);
        return;
    }
    check_topology(name, &t, w, n, nnodes);
    rp_cluster__topology_free(&t, &a);
    CHECK(topology_empty(&t));
    CHECK(c.live == 0);
    for (fail_at = 0;; fail_at++) {
        c.calls = 0;
        c.fail_at = fail_at;
        memset(&t, 0x5a, sizeof t); /* garbage in: out must come back empty */
        rc = fn(r, tls, "seed.example", &a, &t, why, sizeof why);
        if (rc == RP_OK) {
            check_topology(name, &t, w, n, nnodes);
            rp_cluster__topology_free(&t, &a);
            CHECK(c.live == 0);
            break;
        }
        CHECK(rc == RP_ENOMEM);
        CHECK(topology_empty(&t));
        CHECK(c.live == 0);
        if (rc != RP_ENOMEM || c.live != 0)
            fprintf(stderr, "%s:%d: %s: allocation %ld failing: %d, %ld blocks live\n",
                    __FILE__, line_no, name, fail_at, rc, c.live);
        if (fail_at > 1000) { /* never succeeding: a bug */
            CHECK(0);
            break;
        }
    }
}
#define PARSE_RESP(fn, lit, tls, w, nnodes)                                    \
    do {                                                                      \
        rp_reply *r_ = RESP(lit);                                             \
        check_parse_at(__LINE__, #lit, fn, r_, tls, w, NWANT(w), nnodes);     \
        rp_reply_free(r_);                                                    \
    } while (0)

#define LO "127.0.0.1"
static void test_real_replies(void)
{
    static const want_range m3[] = {
        { 0, 5460, LO, 33581 }, { 5461, 10922, LO, 49286 }, { 10923, 16383, LO, 35319 },
    };
    static const want_range m3h[] = {
        { 0, 99, LO, 33581 },         { 100, 100, LO, 49286 },      { 101, 5460, LO, 33581 },
        { 5461, 10922, LO, 49286 },   { 10923, 16383, LO, 35319 },
    };
    static const want_range m3hn[] = {
        { 0, 99, "node-33581.example", 33581 },
        { 100, 100, "node-49286.example", 49286 },
        { 101, 5460, "node-33581.example", 33581 },
        { 5461, 10922, "node-49286.example", 49286 },
        { 10923, 16383, "node-35319.example", 35319 },
    };
    /* "?": the shard's ip, or (SLOTS has no other) the node that was asked */
    static const want_range m3q_shards[] = {
        { 0, 99, LO, 33581 },
        { 100, 100, "node-49286.example", 49286 },
        { 101, 5460, LO, 33581 },
        { 5461, 10922, "node-49286.example", 49286 },
        { 10923, 16383, "node-35319.example", 35319 },
    };
    static const want_range m3q_slots[] = {
        { 0, 99, "seed.example", 33581 },
        { 100, 100, "node-49286.example", 49286 },
        { 101, 5460, "seed.example", 33581 },
        { 5461, 10922, "node-49286.example", 49286 },
        { 10923, 16383, "node-35319.example", 35319 },
    };
    static const want_range m3u_slots[] = {
        { 0, 99, "seed.example", 33581 },       { 100, 100, "seed.example", 49286 },
        { 101, 5460, "seed.example", 33581 },   { 5461, 10922, "seed.example", 49286 },
        { 10923, 16383, "seed.example", 35319 },
    };
    /* the failing master's slots are left out (SLOTS still lists them) */
    static const want_range m4f_shards[] = {
        { 0, 99, LO, 33581 }, { 100, 100, LO, 49286 }, { 101, 5460, LO, 33581 },
        { 5461, 10922, LO, 49286 },
    };
    static const want_range r6[] = {
        { 0, 5460, LO, 29175 }, { 5461, 10922, LO, 41360 }, { 10923, 16383, LO, 33435 },
    };
    static const want_range r6f[] = {
        { 0, 5460, LO, 33333 }, { 5461, 10922, LO, 41360 }, { 10923, 16383, LO, 33435 },
    };
    static const want_range o3[] = {
        { 0, 5460, LO, 29215 }, { 5461, 10922, LO, 31119 }, { 10923, 16383, LO, 42848 },
    };
    PARSE_RESP(parse_shards, M3_SHARDS, 0, m3, 3);
    PARSE_RESP(parse_shards, M3_SHARDS, 1, m3, 3); /* tls: no tls-port, so the port */
    PARSE_RESP(parse_slots, M3_SLOTS, 0, m3, 3);
    PARSE_RESP(parse_shards, M3H_SHARDS, 0, m3h, 3);
    PARSE_RESP(parse_slots, M3H_SLOTS, 0, m3h, 3);
    PARSE_RESP(parse_shards, M3HN_SHARDS, 0, m3hn, 3);
    PARSE_RESP(parse_slots, M3HN_SLOTS, 0, m3hn, 3);
    PARSE_RESP(parse_shards, M3Q_SHARDS, 0, m3q_shards, 3);
    PARSE_RESP(parse_slots, M3Q_SLOTS, 0, m3q_slots, 3);
    PARSE_RESP(parse_shards, M3U_SHARDS, 0, m3u_slots, 3); /* endpoint "": the node asked, as SLOTS */
    PARSE_RESP(parse_slots, M3U_SLOTS, 0, m3u_slots, 3);
    PARSE_RESP(parse_shards, M4E_SHARDS, 0, m3h, 3); /* the empty master is left out */
    PARSE_RESP(parse_shards, M4F_SHARDS, 0, m4f_shards, 2);
    PARSE_RESP(parse_slots, M4F_SLOTS, 0, m3h, 3);
    PARSE_RESP(parse_shards, R6_SHARDS, 0, r6, 3);
    PARSE_RESP(parse_slots, R6_SLOTS, 0, r6, 3);
    PARSE_RESP(parse_shards, R6F_SHARDS, 0, r6f, 3);
    PARSE_RESP(parse_slots, R6F_SLOTS, 0, r6f, 3);
    PARSE_RESP(parse_slots, O3_SLOTS, 0, o3, 3);
    {
        /* Redis 6.2 refuses CLUSTER SHARDS: RP_EPROTOCOL quoting the error */
        rp_reply *r = RESP(O3_SHARDS);
        rp_cluster_topology t;
        char why[256];
        CHECK(rp_cluster__parse_shards(r, 0, "seed", rp_allocator_default(), &t, why,
                                       sizeof why) == RP_EPROTOCOL);
        CHECK(topology_empty(&t));
        CHECK(strstr(why, "CLUSTER SHARDS") && strstr(why, "Unknown subcommand"));
        rp_reply_free(r);
    }
}

/* --- topology: hand-made shapes ------------------------------------------------------------ */

/* A parse that must succeed with these ranges; takes (and frees) r. */
static void hand_ok_at(int line_no, const char *name, parse_fn fn, rp_reply *r, int tls,
                       const want_range *w, size_t n, size_t nnodes)
{
    check_parse_at(line_no, name, fn, r, tls, w, n, nnodes);
    tree_free(r);
}
#define HAND_OK(fn, r, tls, w, nnodes) hand_ok_at(__LINE__, #r, fn, r, tls, w, NWANT(w), nnodes)

/* A parse that must fail with RP_EPROTOCOL, why naming what; takes (and frees) r. With
 * each allocation failing in turn, it is RP_ENOMEM or the same RP_EPROTOCOL; never a leak. */
static void hand_bad_at(int line_no, parse_fn fn, rp_reply *r, const char *what)
{
    counting c;
    rp_allocator a = counting_allocator(&c);
    rp_cluster_topology t;
    char why[256] = "";
    long fail_at;
    int rc = fn(r, 0, "seed.example", &a, &t, why, sizeof why);
    int ok = rc == RP_EPROTOCOL && strstr(why, what) != NULL && topology_empty(&t) &&
             c.live == 0;
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "%s:%d: want RP_EPROTOCOL naming \"%s\": %d, \"%s\", %ld live\n",
                __FILE__, line_no, what, rc, why, c.live);
    }
    for (fail_at = 0; fail_at < 64; fail_at++) {
        c.calls = 0;
        c.fail_at = fail_at;
        rc = fn(r, 0, "seed.example", &a, &t, why, sizeof why);
        CHECK(rc == RP_ENOMEM || rc == RP_EPROTOCOL);
        CHECK(topology_empty(&t));
        CHECK(c.live == 0);
        if (c.calls <= fail_at)
            break; /* it failed before reaching that allocation */
    }
    /* no why buffer, or a tiny one: still the status, nothing written past it */
    c.fail_at = -1;
    CHECK(fn(r, 0, "seed.example", &a, &t, NULL, 0) == RP_EPROTOCOL);
    memset(why, 'x', sizeof why);
    CHECK(fn(r, 0, "seed.example", &a, &t, why, 4) == RP_EPROTOCOL);
    CHECK(strlen(why) == 3 && why[4] == 'x');
    CHECK(c.live == 0);
    tree_free(r);
}
#define HAND_BAD(fn, r, what) hand_bad_at(__LINE__, fn, r, what)

static void test_hand_shards(void)
{
    static const want_range one[] = { { 0, 16383, LO, 7000 } };
    static const want_range tls_port[] = { { 0, 16383, LO, 7100 } };
    static const want_range seed[] = { { 0, 16383, "seed.example", 7000 } };
    static const want_range ipv6[] = { { 0, 16383, "::1", 7000 } };
    static const want_range sorted[] = {
        { 0, 0, LO, 7001 }, { 1, 16000, LO, 7000 }, { 16001, 16383, LO, 7001 },
    };
    static const want_range nothing[] = { { 0, 0, "", 0 } };
    char longhost[RP_CLUSTER_HOST_MAX + 1];
    rp_reply *r;

    /* the smallest valid reply; unknown fields anywhere are ignored */
    HAND_OK(parse_shards, SH1(R2(0, 16383), MASTER(7000)), 0, one, 1);
    r = A(1, A(6, S("future"), A(0), S("slots"), R2(0, 16383), S("nodes"),
               A(1, A(10, S("role"), S("master"), S("port"), I(7000), S("ip"), S(LO),
                      S("health"), S("online"), S("shiny-new"), I(1)))));
    HAND_OK(parse_shards, r, 0, one, 1);
    /* TLS: the tls-port when asked for and present */
    r = SH1(R2(0, 16383), NODE(LO, LO, 7000, 7100, "master", "online"));
    HAND_OK(parse_shards, r, 1, tls_port, 1);
    r = SH1(R2(0, 16383), NODE(LO, LO, 7000, 7100, "master", "online"));
    HAND_OK(parse_shards, r, 0, one, 1);
    /* endpoint and ip empty, or "?" and "": the node that was asked */
    HAND_OK(parse_shards, SH1(R2(0, 16383), NODE("", "", 7000, 0, "master", "online")), 0,
            seed, 1);
    HAND_OK(parse_shards, SH1(R2(0, 16383), NODE("", "?", 7000, 0, "master", "online")), 0,
            seed, 1);
    HAND_OK(parse_shards, SH1(R2(0, 16383), NODE("::1", "::1", 7000, 0, "master", "online")),
            0, ipv6, 1);
    /* ranges come back sorted by start; one master serving several is one node */
    r = A(2, SHARD(R2(1, 16000), A(1, MASTER(7000))),
          SHARD(A(4, I(16001), I(16383), I(0), I(0)),
                A(2, NODE(LO, LO, 7002, 0, "replica", "online"), MASTER(7001))));
    HAND_OK(parse_shards, r, 0, sorted, 2);
    /* a failed old master beside the online one (mid-failover): the online one */
    r = A(1, SHARD(R2(0, 16383), A(2, NODE(LO, LO, 6999, 0, "master", "fail"), MASTER(7000))));
    HAND_OK(parse_shards, r, 0, one, 1);
    /* nothing served at all: an empty topology, no error */
    r = A(2, SHARD(R2(0, 16383), A(1, NODE(LO, LO, 7000, 0, "master", "loading"))),
          SHARD(A(0), A(1, NODE(LO, LO, 7001, 0, "replica", "online"))));
    check_parse_at(__LINE__, "nothing served", parse_shards, r, 0, nothing, 0, 0);
    tree_free(r);
    r = A(0);
    check_parse_at(__LINE__, "no shards", parse_shards, r, 0, nothing, 0, 0);
    tree_free(r);
    /* a host of the longest length kept */
    memset(longhost, 'h', sizeof longhost);
    longhost[RP_CLUSTER_HOST_MAX - 1] = '\0';
    {
        rp_cluster_topology t;
        char why[128];
        r = SH1(R2(0, 16383), NODE(LO, longhost, 7000, 0, "master", "online"));
        CHECK(rp_cluster__parse_shards(r, 0, "seed", rp_allocator_default(), &t, why,
                                       sizeof why) == RP_OK);
        CHECK(t.nnodes == 1 && strcmp(t.hosts[0], longhost) == 0);
        rp_cluster__topology_free(&t, rp_allocator_default());
        tree_free(r);
    }
    longhost[RP_CLUSTER_HOST_MAX - 1] = 'h';
    longhost[RP_CLUSTER_HOST_MAX] = '\0';

    /* the wrong shapes */
    HAND_BAD(parse_shards, NULL, "no reply");
    HAND_BAD(parse_shards, I(1), "not an array");
    HAND_BAD(parse_shards, ERR("ERR This instance has cluster support disabled"),
             "cluster support disabled");
    HAND_BAD(parse_shards, A(1, I(1)), "shard 0 is not a key/value array");
    HAND_BAD(parse_shards, A(1, A(1, S("slots"))), "shard 0 is not a key/value array");
    HAND_BAD(parse_shards, A(1, A(2, I(1), I(2))), "shard 0: key 0 is not a string");
    HAND_BAD(parse_shards, A(1, A(2, S("nodes"), A(1, MASTER(7000)))), "\"slots\" is missing");
    HAND_BAD(parse_shards, A(1, A(2, S("slots"), R2(0, 1))), "\"nodes\" is missing");
    HAND_BAD(parse_shards, A(1, SHARD(R2(0, 1), S("nodes"))), "\"nodes\" is not an array");
    HAND_BAD(parse_shards, SH1(I(0), MASTER(7000)), "\"slots\" is not an array");
    HAND_BAD(parse_shards, SH1(A(3, I(0), I(1), I(2)), MASTER(7000)), "\"slots\" is not an array");
    HAND_BAD(parse_shards, SH1(A(2, S("0"), I(1)), MASTER(7000)), "slot bound 0 is not an integer");
    HAND_BAD(parse_shards, SH1(A(2, I(0), NIL()), MASTER(7000)), "slot bound 1 is not an integer");
    HAND_BAD(parse_shards, SH1(R2(0, 16384), MASTER(7000)), "slot range 0-16384");
    HAND_BAD(parse_shards, SH1(R2(-1, 5), MASTER(7000)), "slot range -1-5");
    HAND_BAD(parse_shards, SH1(R2(9, 5), MASTER(7000)), "slot range 9-5");
    HAND_BAD(parse_shards, SH1(A(4, I(0), I(9), I(5), I(20)), MASTER(7000)),
             "slot 5 is served twice");
    r = A(2, SHARD(R2(0, 100), A(1, MASTER(7000))), SHARD(R2(100, 200), A(1, MASTER(7001))));
    HAND_BAD(parse_shards, r, "shard 1: slot 100 is served twice");
    HAND_BAD(parse_shards, SH1(R2(0, 1), I(7)), "shard 0: node 0 is not a key/value array");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(1, S("role"))), "node 0 is not a key/value array");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(2, I(1), S("master"))),
             "node 0: key 0 is not a string");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), S("master"), S("port"), S("7000"))),
             "\"port\" is not an integer");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), S("master"), S("port"), I(70000))),
             "\"port\" 70000 is not a port");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), S("master"), S("tls-port"), I(-1))),
             "\"tls-port\" -1 is not a port");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), I(1), S("port"), I(7000))),
             "\"role\" is not a string");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), S("master"), S("ip"), NIL())),
             "\"ip\" is not a string");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(2, S("port"), I(7000))), "node 0 has no \"role\"");
    HAND_BAD(parse_shards, SH1(R2(0, 1), NODE(LO, LO, 7000, 0, "replica", "online")),
             "shard 0 serves slots but has no master");
    HAND_BAD(parse_shards, SH1(R2(0, 1), A(4, S("role"), S("master"), S("health"), S("online"))),
             "shard 0: the master has no port");
    /* only a TLS port, without TLS */
    HAND_BAD(parse_shards, SH1(R2(0, 1), NODE(LO, LO, 0, 7100, "master", "online")),
             "shard 0: the master has no port");
    HAND_BAD(parse_shards, SH1(R2(0, 1), NODE(LO, longhost, 7000, 0, "master", "online")),
             "shard 0: the master's address is not a host name");
    r = SH1(R2(0, 1), A(8, S("role"), S("master"), S("port"), I(7000), S("health"), S("online"),
                        S("endpoint"), T(RP_REPLY_STRING, "a\0b", 3)));
    HAND_BAD(parse_shards, r, "the master's address is not a host name");
    /* a later shard wrong, after earlier ones were taken: nothing leaks (checked inside) */
    r = A(3, SHARD(R2(0, 10), A(1, MASTER(7000))), SHARD(R2(11, 20), A(1, MASTER(7001))),
          SHARD(R2(21, 30), A(1, A(2, S("port"), I(7002)))));
    HAND_BAD(parse_shards, r, "shard 2: node 0 has no \"role\"");
}

/* A CLUSTER SLOTS entry: [start, end, master]; a node [host, port]. */
static rp_reply *ENTRY(long long start, long long end, rp_reply *master)
{
    return A(3, I(start), I(end), master);
}
static rp_reply *HP(rp_reply *host, long long port) { return A(2, host, I(port)); }

static void test_hand_slots(void)
{
    static const want_range one[] = { { 0, 16383, LO, 7000 } };
    static const want_range seed[] = { { 0, 16383, "seed.example", 7000 } };
    static const want_range two[] = { { 0, 99, "a", 7000 }, { 100, 16383, "b", 7000 } };
    char longhost[RP_CLUSTER_HOST_MAX + 1];
    rp_reply *r;

    HAND_OK(parse_slots, A(1, ENTRY(0, 16383, HP(S(LO), 7000))), 0, one, 1);
    r = A(1, A(5, I(0), I(16383), A(3, S(LO), I(7000), S("id")), HP(S(LO), 7001),
               HP(S(LO), 7002)));
    HAND_OK(parse_slots, r, 0, one, 1);
    HAND_OK(parse_slots, A(1, ENTRY(0, 16383, HP(S(""), 7000))), 0, seed, 1);
    HAND_OK(parse_slots, A(1, ENTRY(0, 16383, HP(S("?"), 7000))), 0, seed, 1);
    HAND_OK(parse_slots, A(1, ENTRY(0, 16383, HP(NIL(), 7000))), 0, seed, 1);
    /* same port, other hosts: two nodes; out of order: sorted */
    r = A(2, ENTRY(100, 16383, HP(S("b"), 7000)), ENTRY(0, 99, HP(S("a"), 7000)));
    HAND_OK(parse_slots, r, 0, two, 2);
    /* NULL unknown_host: "" */
    {
        rp_cluster_topology t;
        r = A(1, ENTRY(0, 16383, HP(S(""), 7000)));
        CHECK(rp_cluster__parse_slots(r, NULL, rp_allocator_default(), &t, NULL, 0) == RP_OK);
        CHECK(t.nnodes == 1 && t.hosts[0][0] == '\0' && t.ports[0] == 7000);
        rp_cluster__topology_free(&t, rp_allocator_default());
        rp_cluster__topology_free(NULL, rp_allocator_default());
        tree_free(r);
    }
    memset(longhost, 'h', sizeof longhost);
    longhost[RP_CLUSTER_HOST_MAX] = '\0';

    HAND_BAD(parse_slots, NULL, "CLUSTER SLOTS reply: no reply");
    HAND_BAD(parse_slots, S("x"), "not an array");
    HAND_BAD(parse_slots, ERR("CLUSTERDOWN The cluster is down"),
             "CLUSTERDOWN The cluster is down");
    HAND_BAD(parse_slots, A(1, I(0)), "entry 0 is not [start, end, master, ...]");
    HAND_BAD(parse_slots, A(1, A(2, I(0), I(1))), "entry 0 is not");
    HAND_BAD(parse_slots, A(1, A(3, S("0"), I(1), HP(S(LO), 7000))),
             "the slot range is not two integers");
    HAND_BAD(parse_slots, A(1, A(3, I(0), NIL(), HP(S(LO), 7000))),
             "the slot range is not two integers");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 16384, HP(S(LO), 7000))), "slot range 0-16384");
    HAND_BAD(parse_slots, A(1, ENTRY(5, 4, HP(S(LO), 7000))), "slot range 5-4");
    r = A(2, ENTRY(0, 10, HP(S(LO), 7000)), ENTRY(10, 20, HP(S(LO), 7001)));
    HAND_BAD(parse_slots, r, "entry 1: slot 10 is served twice");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, S(LO))), "entry 0: node 0 is not [host, port, ...]");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, A(1, S(LO)))), "entry 0: node 0 is not");
    HAND_BAD(parse_slots, A(1, A(4, I(0), I(1), HP(S(LO), 7000), I(3))), "entry 0: node 1 is not");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, HP(I(1), 7000))), "the master's host is not a string");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, HP(S(longhost), 7000))),
             "the master's host is not a host name");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, HP(T(RP_REPLY_STRING, "a\0b", 3), 7000))),
             "not a host name");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, A(2, S(LO), S("7000")))),
             "the master's port is not an integer");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, HP(S(LO), 0))), "the master's port 0 is not a port");
    HAND_BAD(parse_slots, A(1, ENTRY(0, 1, HP(S(LO), 65536))), "port 65536 is not a port");
    r = A(3, ENTRY(0, 10, HP(S("a"), 7000)), ENTRY(11, 20, HP(S("b"), 7000)),
          ENTRY(21, 30, HP(S("c"), 0)));
    HAND_BAD(parse_slots, r, "entry 2: the master's port 0");
}

/* Many ranges and masters: the arrays grow past their first sizes. */
static void test_many(void)
{
    enum { N = 1000 };
    rp_reply *r = A(0);
    rp_cluster_topology t;
    counting c;
    rp_allocator a = counting_allocator(&c);
    char host[32], why[128];
    size_t i;
    int ok = 1;
    free(r->element);
    r->elements = N;
    r->element = calloc(N, sizeof *r->element);
    for (i = 0; i < N; i++) {
        snprintf(host, sizeof host, "10.0.%zu.%zu", i / 256, i % 256);
        /* slots 16*i .. 16*i+15, served by master i % 300 (so masters repeat) */
        r->element[N - 1 - i] = ENTRY((long long)(16 * i), (long long)(16 * i + 15),
                                      A(2, S(host), I((long long)(7000 + i % 300))));
    }
    CHECK(rp_cluster__parse_slots(r, "seed", &a, &t, why, sizeof why) == RP_OK);
    CHECK(t.nranges == N);
    for (i = 0; ok && i < t.nranges; i++)
        ok = t.ranges[i].start == 16 * i && t.ranges[i].end == 16 * i + 15 &&
             t.ports[t.ranges[i].master] == (int)(7000 + i % 300);
    CHECK(ok);
    CHECK(t.nnodes == N); /* host differs each time */
    rp_cluster__topology_free(&t, &a);
    CHECK(c.live == 0);
    tree_free(r);
}

int main(void)
{
    test_slots();
    test_command_groups();
    test_command_keys();
    test_redirects();
    test_real_replies();
    test_hand_shards();
    test_hand_slots();
    test_many();
    printf("unit_cluster: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
