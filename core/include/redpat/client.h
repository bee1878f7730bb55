/* redpat — the client: configuration (namespace, allocator, timeouts), the embedded
 * scripts, and one connection driven by the blocking driver. */
#ifndef REDPAT_CLIENT_H
#define REDPAT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "error.h"
#include "op.h"
#include "reply.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_client rp_client;

#define RP_CLIENT_NAMESPACE_MAX 128 /* bytes in a key namespace */
#define RP_CLIENT_ENDPOINTS_MAX 16  /* URLs in one client (Redlock deployments use 3..7) */

typedef struct rp_client_options {
    /* redis://[[user]:password@]host[:port][/db] (rediss://...: the same over TLS),
     * unix://[[user]:password@]/path/to.sock[?db=N][&password=...], or a Redis Cluster:
     * redis+cluster://[[user]:password@]host:port[,host:port...] (rediss+cluster://: TLS),
     * whose hosts are seeds: the client reads the topology from one of them (CLUSTER
     * SHARDS; CLUSTER SLOTS before Redis 7), sends each op to the master of its keys' hash
     * slot, follows MOVED / ASK, retries TRYAGAIN / CLUSTERDOWN and reads the topology
     * again after a failure. Several URLs separated by ',' (a ',' followed by a scheme
     * starts the next) make a client over independent endpoints (Redlock: at most
     * RP_CLIENT_ENDPOINTS_MAX; patterns of one instance use the first). NULL: no endpoint
     * at all; the client then only makes ops that need none (local ones). No I/O either
     * way: connections are opened on first use. */
    const char *url;
    /* Prefix of every key ("<namespace>:<pattern>:..."). NULL means "redpat".
     * 1..RP_CLIENT_NAMESPACE_MAX bytes, no NUL, '{' or '}'. */
    const char *key_namespace;
    uint32_t connect_timeout_ms; /* > 0 */
    uint32_t command_timeout_ms; /* > 0; bounds each exchange: handshake + request + reply */
    int tcp_keepalive;           /* non-zero: enable TCP keepalive probes */
    const rp_allocator *allocator; /* NULL: libc; copied */
    /* The most memory one reply may take in the core (its nodes, strings, element arrays
     * and the bytes buffered for it), in bytes: a larger one (or a header announcing one,
     * such as "*2147483647") fails the target with RP_EPROTOCOL "reply larger than
     * max_reply_size (N bytes): <what came>". 0: the default, 512 MiB (Redis' own
     * proto-max-bulk-len, so anything Redis can hold is readable); else >= 1024. */
    size_t max_reply_size;
    /* TLS, for the endpoints whose URL is rediss:// (giving any of these without one is
     * RP_EINVAL). Files are PEM, read at rp_client_new (a missing or bad one fails there,
     * naming the option). */
    const char *tls_ca_file;     /* CA bundle to trust; NULL: the system's default store */
    const char *tls_cert_file;   /* client certificate; with tls_key_file, both or neither */
    const char *tls_key_file;    /* its private key (unencrypted) */
    const char *tls_server_name; /* sent as SNI and checked against the certificate; NULL:
                                    the URL's host (an IP address is checked as one) */
    int tls_verify;              /* non-zero (the default): check the server's certificate
                                    chain and name; 0: no check at all (explicit only) */
} rp_client_options;

#define RP_CLIENT_TIMEOUT_MS_DEFAULT 2000
#define RP_CLIENT_MAX_REPLY_SIZE_DEFAULT ((size_t)512 << 20)
#define RP_CLIENT_MAX_REPLY_SIZE_MIN ((size_t)1024)
#define RP_CLIENT_OPTIONS_INIT \
    { NULL, NULL, RP_CLIENT_TIMEOUT_MS_DEFAULT, RP_CLIENT_TIMEOUT_MS_DEFAULT, 1, NULL, \
      RP_CLIENT_MAX_REPLY_SIZE_DEFAULT, NULL, NULL, NULL, NULL, 1 }

/* Creates a client. Validates the options and the URL; does no I/O (the connection is
 * opened on first use, and opened afresh after a broken one or after fork()).
 * *out belongs to the caller: rp_client_free. Returns RP_OK, RP_EINVAL, RP_ENOMEM. */
int rp_client_new(rp_client **out, const rp_client_options *options, rp_error *err);

/* Frees the client and closes its connection. NULL is a no-op. Every op, lock and reply
 * made from the client must be freed first. */
void rp_client_free(rp_client *client);

/* The key namespace (borrowed, lives as long as the client). */
const char *rp_client_namespace(const rp_client *client);

/* Drives op to the end over the client's connection (blocking). Returns RP_OK when the
 * op is DONE, else its error code with details in err. RP_EINVAL if the client has no
 * connection (made with url NULL). op may have been made from another client over the
 * same URL (its maker supplies the namespace, scripts and allocator, and the endpoints its
 * targets name, and must outlive it): this client only lends its connections, so a pool of
 * clients can run ops made from one client shared by threads. */
int rp_client_run(rp_client *client, rp_op *op, rp_error *err);

/* A driver's own wait, for rp_client_run_sleeping: sleep ms milliseconds and return 0, or
 * return non-zero to cancel the op (e.g. a signal arrived), or RP_DRIVE_PAUSE (drive.h) to
 * have rp_client_run_sleeping return RP_DRIVE_PAUSED there and wait itself. */
typedef int (*rp_sleep_fn)(void *ud, uint64_t ms);

/* As rp_client_run, but SLEEP steps (retry backoff) call sleep(ud, ms) instead of
 * nanosleep. When sleep returns non-zero the op fails with RP_ECANCELED; no request is in
 * flight during a sleep, so the connection stays usable. */
int rp_client_run_sleeping(rp_client *client, rp_op *op, rp_sleep_fn sleep, void *ud,
                           rp_error *err);

/* Where a client made from a URL connects, for drivers that open their own sockets
 * (asyncio, OpenResty cosockets). All strings are borrowed from the client. */
typedef struct rp_endpoint {
    const char *address;  /* canonical, the key of connection pools: "host:port/db" or
                             "unix:path/db", prefixed "user@" when the URL names a user */
    int is_unix;          /* 1: path is a unix socket; 0: host and port */
    const char *host;     /* NULL for unix sockets */
    int port;
    const char *path;     /* NULL for TCP */
    const char *user;     /* NULL: none (AUTH with password only, or no AUTH) */
    const char *password; /* NULL: no AUTH */
    int db;               /* 0: no SELECT needed */
    int tls;              /* 1: rediss:// (speak TLS, with the client's tls_* options) */
} rp_endpoint;

/* Fills out from the client's (first) URL. RP_EINVAL if the client was made without one. */
int rp_client_endpoint(const rp_client *client, rp_endpoint *out);
/* How many endpoints (URLs) the client has: 0 without a url. */
size_t rp_client_endpoints(const rp_client *client);
/* Endpoint index (0..rp_client_endpoints) of the client. RP_EINVAL out of range. */
int rp_client_endpoint_at(const rp_client *client, size_t index, rp_endpoint *out);
/* The handshake (AUTH, SELECT) a fresh connection to ep needs, as an op of one target (ep
 * itself), pipelined in one round trip; DONE without I/O when none is needed. ep's strings
 * are copied. For drivers with their own sockets: run it on each new connection. */
int rp_endpoint_handshake_op(rp_op **out, rp_client *client, const rp_endpoint *ep,
                             rp_error *err);

/* The commands a fresh connection to the client's first endpoint needs before use (AUTH,
 * SELECT from the URL), as one op that pipelines them in one round trip. Ends DONE without
 * any I/O when none is needed; ERROR with RP_EREPLY if Redis refuses (wrong password, bad
 * database). */
int rp_client_handshake_op(rp_op **out, rp_client *client, rp_error *err);

/* The client's transport (borrowed, lives as long as the client), or NULL for a client made
 * without a url. For drivers that run the op loop themselves over the client's connection,
 * e.g. to sleep interruptibly between retries: IO rounds go to transport->cls->round. */
rp_transport *rp_client_transport(rp_client *client);

/* Drops the client's connections (they are reopened on next use). */
void rp_client_disconnect(rp_client *client);

/* A raw Redis command as an op (argv binary-safe; argvlen NULL means strlen). A Redis
 * error reply is a normal result here (type RP_REPLY_ERROR), not an op failure. */
int rp_command_op(rp_op **out, rp_client *client, int argc, const char *const *argv,
                  const size_t *argvlen, rp_error *err);
/* The same, routed on a cluster by key (keylen bytes, binary-safe): to the master of its
 * hash slot, whatever keys the command has. NULL key: as rp_command_op, which on a cluster
 * routes by the command's own keys (a built-in table of Redis commands) and refuses, before
 * any I/O (RP_EINVAL), a command whose keys span hash slots, one without keys and one the
 * table does not know. On a single node the key changes nothing. */
int rp_command_op_key(rp_op **out, rp_client *client, int argc, const char *const *argv,
                      const size_t *argvlen, const char *key, size_t keylen, rp_error *err);
/* The reply of a DONE command op; borrowed until rp_op_free. */
int rp_command_result(const rp_op *op, const rp_reply **reply);
/* Blocking: runs a raw command; *reply belongs to the caller (rp_reply_free). */
int rp_client_command(rp_client *client, int argc, const char *const *argv,
                      const size_t *argvlen, rp_reply **reply, rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
