/* redpat — TLS for the blocking transport: OpenSSL over a socket the transport connected.
 *
 * One job: a client's TLS configuration (an SSL_CTX made from the tls_* options) and, per
 * connection, a non-blocking TLS session whose reads and writes never block and never
 * raise SIGPIPE, so the transport drives them in its own poll loop under its own deadlines.
 * OpenSSL types stay in tls.c. */
#ifndef REDPAT_TLS_H
#define REDPAT_TLS_H

#include <sys/types.h>

#include "internal.h"

typedef struct rp_tls rp_tls;           /* a client's configuration (owned by the transport) */
typedef struct rp_tls_conn rp_tls_conn; /* one connection's session (owned by its conn) */

/* What a session call returns besides a byte count (> 0) or 0 (closed by the peer). */
#define RP_TLS_WANT_READ (-1)  /* wait for POLLIN, then call again with the same arguments */
#define RP_TLS_WANT_WRITE (-2) /* wait for POLLOUT, then call again */
#define RP_TLS_FAILED (-3)     /* why says what happened; the connection is unusable */

/* Makes the configuration from o's tls_* options, reading the files now: a bad file fails
 * here with RP_EINVAL naming the option. *out belongs to the caller (rp_tls__free). */
RP_INTERNAL int rp_tls__new(rp_tls **out, const rp_client_options *o, const rp_allocator *a,
                            rp_error *err);
RP_INTERNAL void rp_tls__free(rp_tls *tls);

/* A client session over the connected socket fd to host (the name checked and sent as SNI
 * unless tls_server_name says otherwise). The socket stays the caller's (never closed
 * here). RP_OK, or RP_ENOMEM / RP_ETRANSPORT with why filled. */
RP_INTERNAL int rp_tls__conn_new(rp_tls_conn **out, rp_tls *tls, int fd, const char *host,
                                 char *why, size_t whylen);
/* Frees the session without writing anything (safe in a forked child). NULL is a no-op. */
RP_INTERNAL void rp_tls__conn_free(rp_tls_conn *c);

/* Advances the handshake: 0 when it is done, RP_TLS_WANT_*, or RP_TLS_FAILED ("certificate
 * verify failed (hostname mismatch)", ...). */
RP_INTERNAL int rp_tls__handshake(rp_tls_conn *c, char *why, size_t whylen);
/* Reads / writes at most len bytes: > 0 done, 0 closed by the peer, RP_TLS_WANT_*, or
 * RP_TLS_FAILED. A write that must wait is repeated with the same remaining bytes. */
RP_INTERNAL ssize_t rp_tls__read(rp_tls_conn *c, void *buf, size_t len, char *why,
                                 size_t whylen);
RP_INTERNAL ssize_t rp_tls__write(rp_tls_conn *c, const void *buf, size_t len, char *why,
                                  size_t whylen);
/* 1 when decrypted bytes wait inside the session (poll cannot see them). */
RP_INTERNAL int rp_tls__pending(const rp_tls_conn *c);

#endif
