/* The blocking transport: hiredis opens the connection (TCP or unix, connect timeout,
 * keepalive, AUTH/SELECT); the exchange itself is poll() + send()/recv() on its socket
 * with one deadline, feeding the op's own reader. Any failure drops the connection, so a
 * late reply can never be read as the answer to the next request. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "transport_hiredis.h"

typedef struct conn {
    char *address;     /* the pool key (rp_endpoint.address) */
    redisContext *ctx;
    pid_t pid; /* process that opened ctx: a forked child must not share the socket */
    uint64_t last_used_ms;
} conn;

typedef struct hiredis_transport {
    rp_transport base;
    rp_allocator alloc;
    uint32_t connect_timeout_ms;
    uint32_t command_timeout_ms;
    int keepalive;
    conn *conns;
    size_t nconns;
    /* the connection of the exchange in progress */
    redisContext *ctx;
    const rp_endpoint *ep;
} hiredis_transport;

/* A connection idle at least this long is probed before use (see looks_dead). Back-to-back
 * calls skip the probe: a connection that died within the last few milliseconds fails its
 * call with RP_ETRANSPORT instead, and the next call reconnects. */
#define RP_IDLE_PROBE_MS 50

static void drop(hiredis_transport *t)
{
    if (t->ctx) {
        redisFree(t->ctx);
        t->ctx = NULL;
    }
}

static void drop_all(hiredis_transport *t)
{
    size_t i;
    for (i = 0; i < t->nconns; i++)
        if (t->conns[i].ctx) {
            redisFree(t->conns[i].ctx);
            t->conns[i].ctx = NULL;
        }
}

static struct timeval tv_of(uint32_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    return tv;
}

static int handshake(hiredis_transport *t, rp_error *err)
{
    rp_url_command cmds[RP_HANDSHAKE_MAX];
    size_t i, n = rp_url__endpoint_handshake(t->ep, cmds);
    for (i = 0; i < n; i++) {
        const char *what = cmds[i].argv[0];
        redisReply *r = redisCommandArgv(t->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens);
        if (!r)
            return rp_error__set(err, RP_ETRANSPORT, "%s failed: %s", what, t->ctx->errstr);
        if (r->type == REDIS_REPLY_ERROR) {
            rp_error__set(err, RP_EREPLY, "%s failed: %s", what, r->str);
            freeReplyObject(r);
            return RP_EREPLY;
        }
        freeReplyObject(r);
    }
    return RP_OK;
}

static int connect_now(hiredis_transport *t, rp_error *err)
{
    struct timeval ctv = tv_of(t->connect_timeout_ms), ttv = tv_of(t->command_timeout_ms);
    int rc;
    const rp_endpoint *ep = t->ep;
    t->ctx = ep->is_unix ? redisConnectUnixWithTimeout(ep->path, ctv)
                         : redisConnectWithTimeout(ep->host, ep->port, ctv);
    if (!t->ctx)
        return rp_error__set(err, RP_ENOMEM, "out of memory connecting");
    if (t->ctx->err) {
        int timed_out = t->ctx->err == REDIS_ERR_IO &&
                        (errno == ETIMEDOUT || errno == EAGAIN || errno == EINPROGRESS);
        rc = rp_error__set(err, timed_out ? RP_ETIMEOUT : RP_ETRANSPORT,
                           "cannot connect to %s%s%d: %s",
                           ep->is_unix ? ep->path : ep->host,
                           ep->is_unix ? "" : ":", ep->is_unix ? 0 : ep->port,
                           t->ctx->errstr);
        drop(t);
        return rc;
    }
    /* The command timeout bounds hiredis' own calls (the handshake) and each exchange's
     * first, blocking recv: without it a silent server would hang us. */
    if (redisSetTimeout(t->ctx, ttv) != REDIS_OK) {
        rc = rp_error__set(err, RP_ETRANSPORT, "cannot set the command timeout: %s",
                           t->ctx->errstr);
        drop(t);
        return rc;
    }
    if (t->keepalive && !ep->is_unix)
        redisEnableKeepAlive(t->ctx);
    if ((rc = handshake(t, err))) {
        drop(t);
        return rc;
    }
    return RP_OK;
}

/* A connection the server closed while idle (restart, timeout, CLIENT KILL) shows up as
 * readable-with-EOF: find out before sending, so the request goes on a fresh one. */
static int looks_dead(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    char c;
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
        return 1;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = rp_monotonic_ms();
        struct pollfd p = { fd, events, 0 };
        int n;
        if (now >= deadline)
            return 0;
        n = poll(&p, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int fail(hiredis_transport *t, rp_error *err, int code, const char *what)
{
    int e = errno;
    drop(t);
    if (code == RP_ETIMEOUT)
        return rp_error__set(err, code, "timed out after %u ms %s", t->command_timeout_ms, what);
    return rp_error__set(err, code, "connection lost %s: %s", what, e ? strerror(e) : "closed by peer");
}

static conn *conn_for(hiredis_transport *t, const char *address)
{
    size_t i;
    conn *p;
    for (i = 0; i < t->nconns; i++)
        if (strcmp(t->conns[i].address, address) == 0)
            return &t->conns[i];
    p = rp_alloc__realloc(&t->alloc, t->conns, (t->nconns + 1) * sizeof *p);
    if (!p)
        return NULL;
    t->conns = p;
    p = &t->conns[t->nconns];
    memset(p, 0, sizeof *p);
    if (!(p->address = rp_alloc__memdup(&t->alloc, address, strlen(address) + 1)))
        return NULL;
    t->nconns++;
    return p;
}

static int exchange_on(hiredis_transport *t, rp_op *op, size_t node, rp_error *err)
{
    const char *bytes;
    size_t len, sent = 0;
    uint64_t deadline;
    char buf[16384];
    int rc;

    uint64_t now = rp_monotonic_ms();
    if ((rc = rp_op_request(op, node, &bytes, &len)))
        return rp_error__set(err, rc, "no request to send");
    deadline = now + t->command_timeout_ms;
    while (sent < len) {
        ssize_t n = send(t->ctx->fd, bytes + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(t->ctx->fd, POLLOUT, deadline);
            if (w == 0) { errno = 0; return fail(t, err, RP_ETIMEOUT, "writing"); }
            if (w < 0) return fail(t, err, RP_ETRANSPORT, "writing");
            continue;
        }
        return fail(t, err, RP_ETRANSPORT, "writing");
    }
    for (int first = 1;; first = 0) {
        ssize_t n;
        if (first) {
            /* The reply is rarely there yet: block in recv itself (SO_RCVTIMEO is the command
             * timeout) rather than poll first, saving a system call per exchange. */
            n = recv(t->ctx->fd, buf, sizeof buf, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                errno = 0;
                return fail(t, err, RP_ETIMEOUT, "waiting for the reply");
            }
        } else {
            int w = wait_fd(t->ctx->fd, POLLIN, deadline);
            if (w == 0) { errno = 0; return fail(t, err, RP_ETIMEOUT, "waiting for the reply"); }
            if (w < 0) return fail(t, err, RP_ETRANSPORT, "reading");
            n = recv(t->ctx->fd, buf, sizeof buf, MSG_DONTWAIT);
        }
        if (n == 0) { errno = 0; return fail(t, err, RP_ETRANSPORT, "reading"); }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return fail(t, err, RP_ETRANSPORT, "reading");
        }
        rc = rp_op_feed(op, node, buf, (size_t)n);
        if (rc == RP_OK)
            return RP_OK;
        if (rc != RP_MORE) {
            drop(t); /* the stream is out of step; never reuse it */
            return rp_error__set(err, rc, "%s", rp_op_error(op)->message[0] ? rp_op_error(op)->message : "bad reply");
        }
    }
}

/* Interim: targets one after another (parallel rounds come with the rewrite). */
static int round_all(rp_transport *base, rp_op *op, uint64_t listen_wait_ms, rp_error *err)
{
    hiredis_transport *t = (hiredis_transport *)base;
    size_t node;
    (void)listen_wait_ms;
    for (node = 0; node < rp_op_nodes(op); node++) {
        rp_endpoint ep;
        rp_error e;
        conn *c;
        int rc;
        uint64_t now = rp_monotonic_ms();
        if (!rp_op_pending(op, node))
            continue;
        if (rp_op_target(op, node, &ep) != RP_OK) {
            rp_op_fail_node(op, node, RP_EINVAL, "the op's client has no endpoint for this target");
            continue;
        }
        if (!(c = conn_for(t, ep.address))) {
            rp_op_fail_node(op, node, RP_ENOMEM, "out of memory");
            continue;
        }
        t->ep = &ep;
        t->ctx = c->ctx;
        if (t->ctx && (c->pid != getpid() ||
                       (now - c->last_used_ms >= RP_IDLE_PROBE_MS && looks_dead(t->ctx->fd))))
            drop(t);
        rp_error_clear(&e);
        rc = t->ctx ? RP_OK : connect_now(t, &e);
        if (rc == RP_OK && t->ctx && !c->ctx)
            c->pid = getpid();
        if (rc == RP_OK)
            rc = exchange_on(t, op, node, &e);
        c->ctx = t->ctx;
        c->last_used_ms = rp_monotonic_ms();
        t->ctx = NULL;
        t->ep = NULL;
        if (rc != RP_OK)
            rp_op_fail_node(op, node, rc, e.message);
    }
    (void)err;
    return RP_OK;
}

static void destroy(rp_transport *base)
{
    hiredis_transport *t = (hiredis_transport *)base;
    rp_allocator a = t->alloc;
    size_t i;
    drop_all(t);
    for (i = 0; i < t->nconns; i++)
        rp_alloc__free(&a, t->conns[i].address);
    rp_alloc__free(&a, t->conns);
    rp_alloc__free(&a, t);
}

static const rp_transport_class hiredis_class = { "hiredis", round_all, destroy };

int rp_transport__hiredis_new(rp_transport **out,
                              const rp_client_options *o, const rp_allocator *a, rp_error *err)
{
    hiredis_transport *t;
    *out = NULL;
    t = rp_alloc__calloc(a, 1, sizeof *t);
    if (!t)
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the transport");
    t->base.cls = &hiredis_class;
    t->alloc = *a;
    t->connect_timeout_ms = o->connect_timeout_ms;
    t->command_timeout_ms = o->command_timeout_ms;
    t->keepalive = o->tcp_keepalive;
    *out = &t->base;
    return RP_OK;
}

void rp_transport__hiredis_disconnect(rp_transport *base)
{
    if (base && base->cls == &hiredis_class)
        drop_all((hiredis_transport *)base);
}
