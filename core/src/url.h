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
} rp_url;

/* Parses redis://[[user]:password@]host[:port][/db] (rediss://: the same over TLS) and
 * unix://[[user]:password@]/path[?db=N][&password=...] (user and password may be %-encoded). RP_EINVAL names what is wrong. */
RP_INTERNAL int rp_url__parse(rp_url *out, const char *url, const rp_allocator *a,
                              rp_error *err);
RP_INTERNAL void rp_url__free(rp_url *u, const rp_allocator *a);
/* Parses a ','-separated list of URLs into *out (an array of *count, at most max; the
 * caller frees each with rp_url__free and the array with the allocator). Errors name the
 * URL's position when there are several ("url 3 of 5: ..."). */
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
