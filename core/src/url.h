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

#endif
