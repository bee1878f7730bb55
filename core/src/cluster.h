/* redpat — Redis Cluster: the pure parts (no I/O, no shared state): the hash slot of a key,
 * the keys of a command, redirect errors, and topology replies (CLUSTER SHARDS / SLOTS).
 * The slot map a client keeps and the routing of ops are in cluster_map.c and op.c. */
#ifndef REDPAT_CLUSTER_H
#define REDPAT_CLUSTER_H

#include "internal.h"

#define RP_CLUSTER_SLOTS 16384
/* The longest host name or address kept for a node (DNS names are at most 253 bytes). */
#define RP_CLUSTER_HOST_MAX 256

/* The hash slot of a key: CRC16 (XMODEM) of the key mod 16384, or of the part between its
 * first '{' and the first '}' after it when that part is not empty (a hash tag). */
RP_INTERNAL unsigned rp_cluster__slot(const char *key, size_t len);

/* --- the keys of a command ------------------------------------------------------------ */
typedef enum rp_cmd_keys_kind {
    RP_CMD_KEYS_UNKNOWN = 0, /* a command the table does not know */
    RP_CMD_KEYS_NONE,        /* a known command without keys (PING, CONFIG, DBSIZE, ...) */
    RP_CMD_KEYS_LIST,        /* keys at first, first+step, ... up to last (inclusive) */
    RP_CMD_KEYS_CHANNEL      /* pub/sub: route by argv[first] (a channel), no slot check */
} rp_cmd_keys_kind;

typedef struct rp_cmd_keys {
    rp_cmd_keys_kind kind;
    size_t first, last, step; /* argv indices (LIST, CHANNEL: first only) */
} rp_cmd_keys;

/* Which arguments of argv[0..argc) are keys, from a built-in table of Redis commands
 * (case-insensitive names; subcommands for XGROUP, XINFO, OBJECT, MEMORY; numkeys for
 * EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, FCALL, FCALL_RO; STREAMS for XREAD, XREADGROUP; the
 * trailing timeout of BLPOP, BRPOP, BZPOPMIN, BZPOPMAX). A command with too few arguments
 * for its form (EVALSHA with a numkeys past the end, "GET" alone) is LIST with last <
 * first (no keys): Redis then refuses it itself. */
RP_INTERNAL rp_cmd_keys rp_cluster__command_keys(int argc, const char *const *argv,
                                                 const size_t *argvlen);

/* --- redirects ------------------------------------------------------------------------- */
typedef enum rp_redirect_kind {
    RP_REDIRECT_NONE = 0,
    RP_REDIRECT_MOVED,      /* "MOVED <slot> <host>:<port>": the slot lives there now */
    RP_REDIRECT_ASK,        /* "ASK <slot> <host>:<port>": this once, there, after ASKING */
    RP_REDIRECT_TRYAGAIN,   /* "TRYAGAIN ...": a multi-key request during a migration */
    RP_REDIRECT_CLUSTERDOWN /* "CLUSTERDOWN ...": the slot is not served right now */
} rp_redirect_kind;

typedef struct rp_redirect {
    rp_redirect_kind kind;
    unsigned slot;                   /* MOVED, ASK */
    char host[RP_CLUSTER_HOST_MAX];  /* MOVED, ASK; "" when Redis sent none (":6380": the
                                        host of the node that answered) */
    int port;
} rp_redirect;

/* Reads an error reply's redirect (type RP_REPLY_ERROR only; anything else, or a MOVED /
 * ASK whose slot or address does not parse, is RP_REDIRECT_NONE). The host is everything
 * before the last ':' (an IPv6 address keeps its colons), brackets removed. */
RP_INTERNAL rp_redirect rp_cluster__redirect(const rp_reply *r);

/* --- topology -------------------------------------------------------------------------- */
typedef struct rp_cluster_range {
    unsigned start, end; /* inclusive */
    size_t master;       /* index into the topology's nodes */
} rp_cluster_range;

typedef struct rp_cluster_topology {
    rp_cluster_range *ranges;
    size_t nranges;
    char **hosts; /* the masters, owned */
    int *ports;
    size_t nnodes;
} rp_cluster_topology;

/* Parses a CLUSTER SHARDS reply (Redis >= 7.0; RESP2: an array of shards, each a flat
 * key/value array with "slots" (a flat list of start, end pairs) and "nodes" (each a flat
 * key/value array with "ip", "endpoint", "hostname", "port", "tls-port", "role", "health"))
 * into the masters serving slots and their ranges. For each master the address is its
 * "endpoint"; "?" (a hostname preferred, none announced): its "ip"; empty (unknown-endpoint:
 * the address the client reached the cluster by): unknown_host; the port is "tls-port" when tls
 * is non-zero and the node has one, else "port". Shards with no slots, or whose master's
 * health is not "online", are left out; replicas are ignored. unknown_host replaces an
 * empty address (the node that was asked). RP_EPROTOCOL (why filled: what was wrong) on
 * anything else than that shape; RP_ENOMEM. *out belongs to the caller
 * (rp_cluster__topology_free) on RP_OK, else is left empty. */
RP_INTERNAL int rp_cluster__parse_shards(const rp_reply *r, int tls, const char *unknown_host,
                                         const rp_allocator *a, rp_cluster_topology *out,
                                         char *why, size_t whylen);

/* The same from a CLUSTER SLOTS reply (every Redis with cluster support): an array of
 * [start, end, [host, port, id?, ...], replicas...]. An empty host ("" or "?") is
 * unknown_host. */
RP_INTERNAL int rp_cluster__parse_slots(const rp_reply *r, const char *unknown_host,
                                        const rp_allocator *a, rp_cluster_topology *out,
                                        char *why, size_t whylen);

RP_INTERNAL void rp_cluster__topology_free(rp_cluster_topology *t, const rp_allocator *a);

#endif
