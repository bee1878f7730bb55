/* redpat — the slot map a client keeps of one Redis Cluster: which master serves each hash
 * slot, the nodes seen, and whether the map must be read again. Shared by every op of the
 * client, from any thread (a mutex), so a MOVED one op learns serves the next. Nodes are
 * never removed while the map lives: their strings stay valid for the ops that borrow them. */
#ifndef REDPAT_CLUSTER_MAP_H
#define REDPAT_CLUSTER_MAP_H

#include "cluster.h"
#include "url.h"

/* The most nodes one map keeps (Redis Cluster's documented maximum is 1000 nodes). */
#define RP_CLUSTER_NODES_MAX 1024

typedef struct rp_cluster_node {
    char *host;
    int port;
    char *address; /* the pool key: "[user@]host:port/0" (as rp_endpoint.address) */
} rp_cluster_node;

typedef struct rp_cluster_map rp_cluster_map;

/* A map of the cluster url (a redis+cluster:// rp_url, borrowed: it must outlive the map)
 * knowing only its seeds. NULL on no memory. */
RP_INTERNAL rp_cluster_map *rp_cluster_map__new(const rp_url *url, const rp_allocator *a);
RP_INTERNAL void rp_cluster_map__free(rp_cluster_map *m);
RP_INTERNAL const rp_url *rp_cluster_map__url(const rp_cluster_map *m);

/* The node serving slot, or -1 when the map does not know one. */
RP_INTERNAL long rp_cluster_map__owner(rp_cluster_map *m, unsigned slot);
/* Node index (stable while the map lives). */
RP_INTERNAL const rp_cluster_node *rp_cluster_map__node(rp_cluster_map *m, size_t index);
/* The index of host:port, added when new; -1 on no memory or RP_CLUSTER_NODES_MAX nodes. */
RP_INTERNAL long rp_cluster_map__intern(rp_cluster_map *m, const char *host, int port);
/* A MOVED: slot is served by node now. After every RP_CLUSTER_MOVED_REFRESH of them the
 * whole map is read again (rp_cluster_map__stale): a reshard moves many slots. */
#define RP_CLUSTER_MOVED_REFRESH 16
RP_INTERNAL void rp_cluster_map__moved(rp_cluster_map *m, unsigned slot, size_t node);
/* Replaces the map by what a topology reply said. RP_OK, RP_ENOMEM. */
RP_INTERNAL int rp_cluster_map__apply(rp_cluster_map *m, const rp_cluster_topology *t);
/* 1 when no topology was read yet, or after rp_cluster_map__mark_stale. */
RP_INTERNAL int rp_cluster_map__stale(rp_cluster_map *m);
/* Whether a new request should read the topology before it goes: always while none was
 * read; when the map is only stale, one request at a time does (the others go by the map
 * as it is, MOVED answers fixing what it got wrong), a claim lapsing after
 * RP_CLUSTER_REFRESH_CLAIM_MS (its request failed). now_ms: a monotonic clock. */
#define RP_CLUSTER_REFRESH_CLAIM_MS 1000
RP_INTERNAL int rp_cluster_map__claim_refresh(rp_cluster_map *m, uint64_t now_ms);
RP_INTERNAL void rp_cluster_map__mark_stale(rp_cluster_map *m);
/* The attempt-th node to ask for the topology (0, 1, ...): the nodes serving slots first,
 * then the others (seeds, nodes seen before), starting after the last one that failed;
 * -1 past the last. */
RP_INTERNAL long rp_cluster_map__source(rp_cluster_map *m, size_t attempt);
/* The node failed: later topology reads ask it last. */
RP_INTERNAL void rp_cluster_map__node_failed(rp_cluster_map *m, size_t node);
/* Which embedded scripts (bit i: script i of the client's registry) node is known to
 * have, as rp_script's loaded bits are per endpoint: a node that answered a call of it
 * with anything but NOSCRIPT has it; unknown nodes get EVAL with the source. */
RP_INTERNAL int rp_cluster_map__script_known(rp_cluster_map *m, size_t node, size_t script);
RP_INTERNAL void rp_cluster_map__script_learn(rp_cluster_map *m, size_t node, size_t script,
                                              int loaded);
/* Redis < 7.0 answers CLUSTER SHARDS with an error: CLUSTER SLOTS from then on. */
RP_INTERNAL int rp_cluster_map__use_slots(rp_cluster_map *m);
RP_INTERNAL void rp_cluster_map__set_use_slots(rp_cluster_map *m);

/* The map of the client's endpoint index when it is a cluster URL, else NULL (client.c). */
RP_INTERNAL rp_cluster_map *rp_client__cluster(const rp_client *c, size_t endpoint);

#endif
