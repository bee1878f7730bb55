/* redpat — connection URLs. */
#ifndef REDPAT_URL_H
#define REDPAT_URL_H

#include "internal.h"

typedef struct rp_url {
    int is_unix;
    int tls;        /* rediss:// (TCP only) */
    char *host;     /* TCP */
    int port;
    char *path;     /* unix socket */
    char *user;     /* NULL: none */
    char *password; /* NULL: none */
    int db;
    char *address;  /* canonical, the pool key (rp_endpoint.address) */
    /* redis+cluster:// (rediss+cluster://): host and port above are the first seed */
    int cluster;
    size_t nseeds;
    char **seed_hosts; /* all the seeds, the first included */
    int *seed_ports;
} rp_url;

/* Parses redis://[[user]:password@]host[:port][/db] (rediss://: the same over TLS),
 * unix://[[user]:password@]/path[?db=N][&password=...] and the cluster form
 * redis+cluster://[[user]:password@]host:port[,host:port...][/0] (rediss+cluster://: TLS;
 * the hosts are seeds; a cluster has database 0 only). User and password may be
 * %-encoded. RP_EINVAL names what is wrong. */
RP_INTERNAL int rp_url__parse(rp_url *out, const char *url, const rp_allocator *a,
                              rp_error *err);
RP_INTERNAL void rp_url__free(rp_url *u, const rp_allocator *a);
/* Parses a ','-separated list of URLs into *out (an array of *count, at most max; the
 * caller frees each with rp_url__free and the array with the allocator). A ',' starts a new
 * URL only when what follows it has a scheme ("...://"); otherwise it continues a cluster
 * URL's list of seeds. Errors name the URL's position when there are several ("url 3 of
 * 5: ..."). */
RP_INTERNAL int rp_url__parse_list(rp_url **out, size_t *count, size_t max, const char *urls,
                                   const rp_allocator *a, rp_error *err);
/* Fills an endpoint from u (borrowing its strings). */
RP_INTERNAL void rp_url__endpoint(const rp_url *u, rp_endpoint *out);

/* The commands a fresh connection to u needs before use, in order: AUTH (with the user when
 * the URL names one) and SELECT. The one place that decides them, for the blocking
 * transport and for the handshake op that drivers with their own sockets run. */
#define RP_HANDSHAKE_MAX 2
#define RP_DB_CHARS 12 /* a database number in decimal */
typedef struct rp_url_command {
    int argc;
    const char *argv[3];
    size_t lens[3];
    char db[RP_DB_CHARS];
} rp_url_command;
/* Fills cmds (RP_HANDSHAKE_MAX) and returns how many there are (0: none needed). The
 * strings are borrowed from u, except db, which lives in the command itself. */
RP_INTERNAL size_t rp_url__handshake(const rp_url *u, rp_url_command *cmds);
/* The same from an endpoint's user, password and db (strings borrowed from ep). */
RP_INTERNAL size_t rp_url__endpoint_handshake(const rp_endpoint *ep, rp_url_command *cmds);

#endif
