/* redpat — connection URLs. */
#ifndef REDPAT_URL_H
#define REDPAT_URL_H

#include "internal.h"

typedef struct rp_url {
    int is_unix;
    char *host;     /* TCP */
    int port;
    char *path;     /* unix socket */
    char *user;     /* NULL: none */
    char *password; /* NULL: none */
    int db;
} rp_url;

/* Parses redis://[[user]:password@]host[:port][/db] and unix:///path[?db=N]
 * (user and password may be %-encoded). RP_EINVAL names what is wrong. */
RP_INTERNAL int rp_url__parse(rp_url *out, const char *url, const rp_allocator *a,
                              rp_error *err);
RP_INTERNAL void rp_url__free(rp_url *u, const rp_allocator *a);

#endif
