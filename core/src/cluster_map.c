/* The slot map of one Redis Cluster, shared by a client's ops (see cluster_map.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cluster_map.h"

typedef struct node_entry {
    rp_cluster_node pub;
    size_t serving;   /* slots the map gives it */
    int failed;       /* a connection to it failed since the last topology read */
    unsigned scripts; /* bit i: it has script i (rp_cluster_map__script_known) */
} node_entry;

struct rp_cluster_map {
    pthread_mutex_t mu;
    rp_allocator alloc;
    const rp_url *url;
    uint16_t owner[RP_CLUSTER_SLOTS]; /* node index + 1; 0: not known */
    node_entry **nodes;               /* each allocated once: pointers stay valid */
    size_t nnodes, cap;
    int loaded;    /* a topology was read */
    int stale;     /* read it again before the next op */
    int use_slots; /* CLUSTER SHARDS unknown there */
    int claimed;   /* a request is reading the topology (since claimed_ms) */
    unsigned moved; /* MOVED answers seen */
    uint64_t claimed_ms;
};

static long intern_locked(rp_cluster_map *m, const char *host, int port)
{
    const rp_url *u = m->url;
    node_entry *e;
    size_t i, len;
    for (i = 0; i < m->nnodes; i++)
        if (m->nodes[i]->pub.port == port && strcmp(m->nodes[i]->pub.host, host) == 0)
            return (long)i;
    if (m->nnodes >= RP_CLUSTER_NODES_MAX)
        return -1;
    if (m->nnodes == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        node_entry **p = rp_alloc__realloc(&m->alloc, m->nodes, cap * sizeof *p);
        if (!p)
            return -1;
        m->nodes = p;
        m->cap = cap;
    }
    if (!(e = rp_alloc__calloc(&m->alloc, 1, sizeof *e)))
        return -1;
    /* the same pool key as a redis:// URL of that node would get ("/0": a cluster has
     * database 0 only) */
    len = (u->user ? strlen(u->user) + 1 : 0) + strlen(host) + 2 /* [] */ + 1 + 12 + 3 + 1;
    e->pub.host = rp_alloc__memdup(&m->alloc, host, strlen(host));
    e->pub.address = rp_alloc__malloc(&m->alloc, len);
    if (!e->pub.host || !e->pub.address) {
        rp_alloc__free(&m->alloc, e->pub.host);
        rp_alloc__free(&m->alloc, e->pub.address);
        rp_alloc__free(&m->alloc, e);
        return -1;
    }
    snprintf(e->pub.address, len, strchr(host, ':') ? "%s%s[%s]:%d/0" : "%s%s%s:%d/0",
             u->user ? u->user : "", u->user ? "@" : "", host, port);
    e->pub.port = port;
    m->nodes[m->nnodes] = e;
    return (long)m->nnodes++;
}

rp_cluster_map *rp_cluster_map__new(const rp_url *url, const rp_allocator *a)
{
    rp_cluster_map *m = rp_alloc__calloc(a, 1, sizeof *m);
    size_t i;
    if (!m)
        return NULL;
    m->alloc = *a;
    m->url = url;
    m->stale = 1;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        rp_alloc__free(a, m);
        return NULL;
    }
    for (i = 0; i < url->nseeds; i++)
        if (intern_locked(m, url->seed_hosts[i], url->seed_ports[i]) < 0) {
            rp_cluster_map__free(m);
            return NULL;
        }
    return m;
}

void rp_cluster_map__free(rp_cluster_map *m)
{
    size_t i;
    if (!m)
        return;
    for (i = 0; i < m->nnodes; i++) {
        rp_alloc__free(&m->alloc, m->nodes[i]->pub.host);
        rp_alloc__free(&m->alloc, m->nodes[i]->pub.address);
        rp_alloc__free(&m->alloc, m->nodes[i]);
    }
    rp_alloc__free(&m->alloc, m->nodes);
    pthread_mutex_destroy(&m->mu);
    rp_alloc__free(&m->alloc, m);
}

const rp_url *rp_cluster_map__url(const rp_cluster_map *m) { return m->url; }

long rp_cluster_map__owner(rp_cluster_map *m, unsigned slot)
{
    long node;
    if (slot >= RP_CLUSTER_SLOTS)
        return -1;
    pthread_mutex_lock(&m->mu);
    node = (long)m->owner[slot] - 1;
    pthread_mutex_unlock(&m->mu);
    return node;
}

const rp_cluster_node *rp_cluster_map__node(rp_cluster_map *m, size_t index)
{
    const rp_cluster_node *n = NULL;
    pthread_mutex_lock(&m->mu);
    if (index < m->nnodes)
        n = &m->nodes[index]->pub;
    pthread_mutex_unlock(&m->mu);
    return n;
}

long rp_cluster_map__intern(rp_cluster_map *m, const char *host, int port)
{
    long i;
    pthread_mutex_lock(&m->mu);
    i = intern_locked(m, host, port);
    pthread_mutex_unlock(&m->mu);
    return i;
}

static void set_owner(rp_cluster_map *m, unsigned slot, size_t node)
{
    size_t old = m->owner[slot];
    if (old)
        m->nodes[old - 1]->serving--;
    m->owner[slot] = (uint16_t)(node + 1);
    m->nodes[node]->serving++;
}

void rp_cluster_map__moved(rp_cluster_map *m, unsigned slot, size_t node)
{
    pthread_mutex_lock(&m->mu);
    if (slot < RP_CLUSTER_SLOTS && node < m->nnodes) {
        set_owner(m, slot, node);
        /* one slot moved is fixed here; many moving (a reshard) are read at once */
        if (++m->moved % RP_CLUSTER_MOVED_REFRESH == 0)
            m->stale = 1;
    }
    pthread_mutex_unlock(&m->mu);
}

int rp_cluster_map__apply(rp_cluster_map *m, const rp_cluster_topology *t)
{
    long index[RP_CLUSTER_NODES_MAX];
    size_t i, s;
    int rc = RP_OK;
    if (t->nnodes > RP_CLUSTER_NODES_MAX)
        return RP_ENOMEM;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < t->nnodes && rc == RP_OK; i++)
        if ((index[i] = intern_locked(m, t->hosts[i], t->ports[i])) < 0)
            rc = RP_ENOMEM;
    if (rc == RP_OK) {
        /* slots no shard claims are not served: a request for them is refused before
         * I/O until a later read finds them served */
        memset(m->owner, 0, sizeof m->owner);
        for (i = 0; i < m->nnodes; i++) {
            m->nodes[i]->serving = 0;
            m->nodes[i]->failed = 0;
        }
        for (i = 0; i < t->nranges; i++)
            for (s = t->ranges[i].start; s <= t->ranges[i].end && s < RP_CLUSTER_SLOTS; s++)
                set_owner(m, (unsigned)s, (size_t)index[t->ranges[i].master]);
        m->loaded = 1;
        m->stale = 0;
        m->claimed = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

int rp_cluster_map__stale(rp_cluster_map *m)
{
    int stale;
    pthread_mutex_lock(&m->mu);
    stale = !m->loaded || m->stale;
    pthread_mutex_unlock(&m->mu);
    return stale;
}

int rp_cluster_map__claim_refresh(rp_cluster_map *m, uint64_t now_ms)
{
    int want;
    pthread_mutex_lock(&m->mu);
    want = !m->loaded ||
           (m->stale && (!m->claimed || now_ms - m->claimed_ms >= RP_CLUSTER_REFRESH_CLAIM_MS));
    if (want && m->loaded) {
        m->claimed = 1;
        m->claimed_ms = now_ms;
    }
    pthread_mutex_unlock(&m->mu);
    return want;
}

void rp_cluster_map__mark_stale(rp_cluster_map *m)
{
    pthread_mutex_lock(&m->mu);
    m->stale = 1;
    pthread_mutex_unlock(&m->mu);
}

long rp_cluster_map__source(rp_cluster_map *m, size_t attempt)
{
    long found = -1;
    size_t pass, i, k = 0;
    pthread_mutex_lock(&m->mu);
    /* pass 0: healthy nodes serving slots; 1: healthy others; 2: those that failed */
    for (pass = 0; pass < 3 && found < 0; pass++)
        for (i = 0; i < m->nnodes && found < 0; i++) {
            const node_entry *e = m->nodes[i];
            int p = e->failed ? 2 : e->serving ? 0 : 1;
            if ((size_t)p == pass && k++ == attempt)
                found = (long)i;
        }
    pthread_mutex_unlock(&m->mu);
    return found;
}

void rp_cluster_map__node_failed(rp_cluster_map *m, size_t node)
{
    pthread_mutex_lock(&m->mu);
    if (node < m->nnodes)
        m->nodes[node]->failed = 1;
    m->stale = 1;
    pthread_mutex_unlock(&m->mu);
}

int rp_cluster_map__script_known(rp_cluster_map *m, size_t node, size_t script)
{
    int known = 0;
    pthread_mutex_lock(&m->mu);
    if (node < m->nnodes && script < sizeof(unsigned) * 8)
        known = (m->nodes[node]->scripts >> script) & 1u;
    pthread_mutex_unlock(&m->mu);
    return known;
}

void rp_cluster_map__script_learn(rp_cluster_map *m, size_t node, size_t script, int loaded)
{
    pthread_mutex_lock(&m->mu);
    if (node < m->nnodes && script < sizeof(unsigned) * 8) {
        if (loaded)
            m->nodes[node]->scripts |= 1u << script;
        else
            m->nodes[node]->scripts &= ~(1u << script);
    }
    pthread_mutex_unlock(&m->mu);
}

int rp_cluster_map__use_slots(rp_cluster_map *m)
{
    int v;
    pthread_mutex_lock(&m->mu);
    v = m->use_slots;
    pthread_mutex_unlock(&m->mu);
    return v;
}

void rp_cluster_map__set_use_slots(rp_cluster_map *m)
{
    pthread_mutex_lock(&m->mu);
    m->use_slots = 1;
    pthread_mutex_unlock(&m->mu);
}
