/* The blocking transport: parallel rounds over a pool of connections keyed by address.
 *
 * hiredis only opens the sockets (redisConnectNonBlock / redisConnectUnixNonBlock: name
 * resolution, TCP_NODELAY, keepalive); everything after that is ours: one poll() over all
 * the round's sockets drives each target through connect -> handshake (AUTH / SELECT of its
 * endpoint) -> write the request -> read the replies, feeding the op's own reader. So a
 * round costs about its slowest target, not the sum, and connects do not serialize their
 * waits either (name resolution does: getaddrinfo blocks, and is fast for the addresses
 * Redis deployments use).
 *
 * rediss:// endpoints speak TLS over that same socket (tls.c: OpenSSL with a BIO of our own
 * sends and receives, never blocking): the TLS handshake is one more phase between connect
 * and AUTH, inside the exchange's deadline, and every read and write of the connection goes
 * through its session, which may ask to wait for the other direction (conn.tls_wait).
 *
 * Any failure closes the connection: a late reply can never be read as the answer to the
 * next request. The early end of a quorum round leaves targets whose replies are still on
 * their way (a Redlock minority that was merely a little slower): closing those would cost
 * a reconnect and a handshake at every round, and let two rounds' requests to one node
 * arrive on two connections in either order. So a connection whose request went out whole
 * and of whose replies nothing was read yet is *parked* instead: it goes back to the pool
 * owing that many replies (one per command of the request: Redis answers every command,
 * in order). Its next round writes at once as usual (every request goes out before any
 * reply is read), and the first `owed` replies read from it are parsed and thrown away
 * before any byte reaches the op: the op only ever sees its own replies. A connection that
 * fails or times out meanwhile is closed like any other; anything else still pending at an
 * early end (half written, half read) is closed.
 *
 * The pool keeps one idle connection per address (a transport is used by one thread at a
 * time, so a round rarely needs two to one address; an extra one is closed after use). A
 * long-lived op's connection goes back to the pool between its rounds *reserved*: only a
 * long-lived op takes it again (the client that pumps one is used for nothing else, see
 * drive.h; an op that is not long-lived gets a connection of its own, closed after its
 * round, so misuse is slow but never mixes a request into a subscription). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "reply_check.h"
#include "reply_internal.h"
#include "tls.h"
#include "transport_hiredis.h"

/* A connection idle at least this long is probed before use (see looks_dead). Back-to-back
 * calls skip the probe: a connection that died within the last few milliseconds fails its
 * call with RP_ETRANSPORT instead, and the next call reconnects. */
#define RP_IDLE_PROBE_MS 50
/* One recv() reads at most this much; replies of locks and limiters are far smaller. */
#define RP_READ_CHUNK 16384
/* poll() takes an int of milliseconds: wait in slices of at most this long. */
#define RP_POLL_SLICE_MS 60000

/* One connection and what we know of its socket. */
typedef struct conn {
    redisContext *ctx;     /* NULL: none */
    pid_t pid;             /* process that opened ctx: a forked child must not share it */
    uint64_t last_used_ms;
    uint32_t rcvtimeo_ms;  /* SO_RCVTIMEO set on the socket now (0: none) */
    int blocking;          /* the socket is in blocking mode (see read_target) */
    size_t owed;           /* replies of an abandoned request still to come (parked) */
    redisReader *drain;    /* parses them, to be thrown away (NULL until needed) */
    rp_tls_conn *tls;      /* rediss://: the TLS session over ctx's socket (NULL: plain) */
    short tls_wait;        /* what the session waits for (POLLIN / POLLOUT), 0: the phase's */
} conn;

/* A pool slot: the idle connection of one address. */
typedef struct slot {
    char *address;         /* rp_endpoint.address, owned */
    conn idle;
    int reserved;          /* the connection is a long-lived op's (idle, or in its round) */
} slot;

/* Where a target of the round is. */
enum {
    T_CONNECT,  /* non-blocking connect in progress: wait for POLLOUT */
    T_TLS,      /* the TLS handshake (rediss://), within the exchange's deadline */
    T_HS_WRITE, /* writing the handshake (AUTH / SELECT) */
    T_HS_READ,  /* reading its replies */
    T_WRITE,    /* writing the op's request */
    T_READ,     /* feeding the replies to the op */
    T_DONE      /* fed to RP_OK, or failed (conn closed) */
};

typedef struct target {
    size_t node;
    size_t slot;           /* index into t->slots (not a pointer: slots may move) */
    conn c;                /* the connection this round uses, owned by the round */
    int phase;
    int listening;
    uint64_t deadline;     /* of the current phase (connect, or the exchange: handshake and
                              request share one); UINT64_MAX: none */
    uint64_t limit_ms;     /* the timeout behind deadline, for the message */
    const char *out;       /* bytes being written (handshake or request) */
    size_t outlen, sent;
    const char *req;       /* the op's request (borrowed until the next step) */
    size_t reqlen;
    rp_buf hs;             /* the formatted handshake, kept for reuse */
    size_t hs_expected, hs_got;
    const char *hs_names[RP_HANDSHAKE_MAX]; /* "AUTH", "SELECT" (static strings) */
    redisReader *hs_reader;
    int own;               /* a long-lived op's connection (its slot is reserved) */
    size_t fed;            /* bytes fed to the op this round */
} target;

typedef struct hiredis_transport {
    rp_transport base;
    rp_allocator alloc;
    uint32_t connect_timeout_ms;
    uint32_t command_timeout_ms;
    int keepalive;
    size_t max_reply;      /* rp_client_options.max_reply_size, for the handshake's reader */
    const rp_client_options *options; /* borrowed from the client: its tls_* strings */
    rp_tls *tls;           /* TLS configuration, made at creation when tls_* options are
                              given, else at the first rediss:// connect (NULL: none yet) */
    slot *slots;
    size_t nslots;
    /* per-round scratch, kept between rounds so a round allocates nothing */
    target *tg;
    struct pollfd *pfd;
    size_t *pfd_tg;        /* pfd[i] belongs to tg[pfd_tg[i]] */
    size_t captg;
    pid_t pid;             /* this process, read once per round (fork check of the pool) */
} hiredis_transport;

/* --- connections ---------------------------------------------------------------------- */

static void conn_close(conn *c)
{
    rp_tls__conn_free(c->tls); /* before the socket closes; writes nothing */
    if (c->ctx)
        redisFree(c->ctx);
    if (c->drain)
        rp_reply__reader_free(c->drain);
    memset(c, 0, sizeof *c);
}

/* How many commands (so replies) a request holds: it is RESP arrays of bulk strings, as
 * the core formats them. 0 if it is anything else (then the connection is closed, not
 * parked). */
static size_t count_commands(const char *p, size_t len)
{
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned long long args = 0, a;
        if (p[i++] != '*')
            return 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && args < SIZE_MAX / 10)
            args = args * 10 + (unsigned long long)(p[i++] - '0');
        if (i + 2 > len || p[i] != '\r' || p[i + 1] != '\n' || args == 0)
            return 0;
        i += 2;
        for (a = 0; a < args; a++) {
            unsigned long long blen = 0;
            if (i >= len || p[i++] != '$')
                return 0;
            while (i < len && p[i] >= '0' && p[i] <= '9' && blen < SIZE_MAX / 10)
                blen = blen * 10 + (unsigned long long)(p[i++] - '0');
            if (i + 2 > len || p[i] != '\r' || p[i + 1] != '\n' || blen > len - i - 2)
                return 0;
            i += 2 + (size_t)blen;
            if (i + 2 > len || p[i] != '\r' || p[i + 1] != '\n')
                return 0;
            i += 2;
        }
        n++;
    }
    return n;
}

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* A connection the server closed while idle (restart, timeout, CLIENT KILL) shows up as
 * readable-with-EOF, and bytes nobody asked for mean the stream is out of step: find out
 * before sending, so the request goes on a fresh one. */
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

static int slot_for(hiredis_transport *t, const char *address, size_t *index)
{
    size_t i;
    slot *p;
    for (i = 0; i < t->nslots; i++)
        if (strcmp(t->slots[i].address, address) == 0) {
            *index = i;
            return RP_OK;
        }
    p = rp_alloc__realloc(&t->alloc, t->slots, (t->nslots + 1) * sizeof *p);
    if (!p)
        return RP_ENOMEM;
    t->slots = p;
    p = &t->slots[t->nslots];
    memset(p, 0, sizeof *p);
    if (!(p->address = rp_alloc__memdup(&t->alloc, address, strlen(address) + 1)))
        return RP_ENOMEM;
    *index = t->nslots++;
    return RP_OK;
}

static int grow_scratch(hiredis_transport *t, size_t n)
{
    target *tg;
    struct pollfd *pfd;
    size_t *pfd_tg;
    if (n <= t->captg)
        return RP_OK;
    tg = rp_alloc__realloc(&t->alloc, t->tg, n * sizeof *tg);
    if (!tg)
        return RP_ENOMEM;
    memset(tg + t->captg, 0, (n - t->captg) * sizeof *tg);
    t->tg = tg;
    pfd = rp_alloc__realloc(&t->alloc, t->pfd, n * sizeof *pfd);
    if (!pfd)
        return RP_ENOMEM;
    t->pfd = pfd;
    pfd_tg = rp_alloc__realloc(&t->alloc, t->pfd_tg, n * sizeof *pfd_tg);
    if (!pfd_tg)
        return RP_ENOMEM;
    t->pfd_tg = pfd_tg;
    t->captg = n;
    return RP_OK;
}

/* --- one target's life in a round ------------------------------------------------------- */

static void phase_deadline(target *tg, uint64_t now, uint64_t limit_ms, uint64_t overall,
                           uint64_t op_timeout_ms)
{
    uint64_t d = add_sat(now, limit_ms);
    tg->limit_ms = limit_ms;
    if (overall < d) {
        /* the op's per-target timeout bounds the whole exchange, connect included */
        d = overall;
        tg->limit_ms = op_timeout_ms;
    }
    tg->deadline = d;
}

/* Closes the target's connection. A long-lived op's slot is no longer reserved: the op is
 * told (a failure, or RP_ECANCELED when abandoned) and starts afresh. */
static void lose(hiredis_transport *t, target *tg)
{
    conn_close(&tg->c);
    if (tg->own)
        t->slots[tg->slot].reserved = 0;
}

static void target_fail(hiredis_transport *t, rp_op *op, target *tg, int status,
                        const char *fmt, ...) RP_PRINTF(5, 6);

/* Closes the target's connection and reports the failure, naming the address. */
static void target_fail(hiredis_transport *t, rp_op *op, target *tg, int status,
                        const char *fmt, ...)
{
    char why[RP_ERROR_MESSAGE_MAX];
    /* before the first byte of the op's request went out (connect, handshake): nothing of
     * it can have run, and the op is told so (no compensation for what was never sent) */
    int unsent = tg->phase < T_WRITE || (tg->phase == T_WRITE && tg->sent == 0);
    int n;
    va_list ap;
    n = snprintf(why, sizeof why, "%s: ", t->slots[tg->slot].address);
    if (n < 0 || (size_t)n >= sizeof why)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(why + n, sizeof why - (size_t)n, fmt, ap);
    va_end(ap);
    lose(t, tg);
    tg->phase = T_DONE;
    if (unsent)
        rp_op_fail_node_unsent(op, tg->node, status, why);
    else
        rp_op_fail_node(op, tg->node, status, why);
}

static const char *phase_doing(int phase)
{
    switch (phase) {
    case T_CONNECT: return "connecting";
    case T_TLS: return "in the TLS handshake";
    case T_HS_WRITE: case T_HS_READ: return "in the handshake (AUTH / SELECT)";
    case T_WRITE: return "writing the request";
    default: return "waiting for the reply";
    }
}

static void fail_timeout(hiredis_transport *t, rp_op *op, target *tg)
{
    target_fail(t, op, tg, RP_ETIMEOUT, "timed out after %llu ms %s%s",
                (unsigned long long)tg->limit_ms, phase_doing(tg->phase),
                tg->c.owed ? " (behind the replies of an abandoned request)" : "");
}

static void start_request(target *tg, uint64_t now, uint64_t tmo, uint64_t overall,
                          uint64_t op_timeout_ms)
{
    tg->out = tg->req;
    tg->outlen = tg->reqlen;
    tg->sent = 0;
    tg->phase = T_WRITE;
    phase_deadline(tg, now, tmo, overall, op_timeout_ms);
}

/* After the handshake: the request, within what is left of the exchange's deadline (one
 * deadline from the moment the socket connected: a server trickling its handshake replies
 * must not earn the request a timeout of its own). */
static void continue_request(target *tg)
{
    tg->out = tg->req;
    tg->outlen = tg->reqlen;
    tg->sent = 0;
    tg->phase = T_WRITE;
}

/* The socket has connected: set it up, then the handshake (if the endpoint needs one) or
 * straight to the request. */
static int connected(hiredis_transport *t, target *tg, const rp_endpoint *ep)
{
    rp_url_command cmds[RP_HANDSHAKE_MAX];
    size_t i, n;
    int flags = fcntl(tg->c.ctx->fd, F_GETFL);
    /* blocking mode lets a lone target wait for its reply inside recv (SO_RCVTIMEO) and
     * save a poll per round; everything else passes MSG_DONTWAIT */
    if (flags >= 0 && fcntl(tg->c.ctx->fd, F_SETFL, flags & ~O_NONBLOCK) == 0)
        tg->c.blocking = 1;
    if (t->keepalive && !ep->is_unix)
        redisEnableKeepAlive(tg->c.ctx);
    n = rp_url__endpoint_handshake(ep, cmds);
    tg->hs.len = 0;
    tg->hs_expected = n;
    tg->hs_got = 0;
    for (i = 0; i < n; i++) {
        char *cmd = NULL;
        long long len = redisFormatCommandArgv(&cmd, cmds[i].argc, cmds[i].argv, cmds[i].lens);
        int rc;
        if (len < 0 || !cmd)
            return RP_ENOMEM;
        tg->hs_names[i] = cmds[i].argv[0];
        rc = rp_buf__append(&t->alloc, &tg->hs, cmd, (size_t)len);
        redisFreeCommand(cmd);
        if (rc)
            return RP_ENOMEM;
    }
    if (n > 0 && !(tg->hs_reader = rp_reply__reader_new(&t->alloc, t->max_reply)))
        return RP_ENOMEM;
    return RP_OK;
}

/* Reads the handshake's replies; RP_OK once all are in and fine, RP_MORE, or a failure
 * (reported). */
static int feed_handshake(hiredis_transport *t, rp_op *op, target *tg, const char *buf,
                          size_t len)
{
    if (redisReaderFeed(tg->hs_reader, buf, len) != REDIS_OK) {
        target_fail(t, op, tg, RP_ENOMEM, "out of memory reading the handshake");
        return RP_ENOMEM;
    }
    while (tg->hs_got < tg->hs_expected) {
        void *obj = NULL;
        rp_reply *r;
        if (rp_reply__reader_next(tg->hs_reader, &obj) != REDIS_OK) {
            char why[RP_ERROR_MESSAGE_MAX];
            int st = rp_reply__reader_why(tg->hs_reader, "bad handshake reply", why, sizeof why);
            target_fail(t, op, tg, st, "%s", why);
            return st;
        }
        if (!obj)
            return RP_MORE;
        r = obj;
        tg->hs_got++;
        {
            /* exactly +OK: anything else (an error, +QUEUED) is not a done AUTH / SELECT;
             * refused credentials are RP_EAUTH */
            char why[RP_ERROR_MESSAGE_MAX - 32];
            int st = rp_reply__handshake_status(r, why, sizeof why);
            rp_reply_free(r);
            if (st != RP_OK) {
                target_fail(t, op, tg, st, "%s failed: %s", tg->hs_names[tg->hs_got - 1], why);
                return st;
            }
        }
    }
    if (tg->hs_reader->pos < tg->hs_reader->len) {
        target_fail(t, op, tg, RP_EPROTOCOL, "bytes after the handshake replies");
        return RP_EPROTOCOL;
    }
    rp_reply__reader_free(tg->hs_reader);
    tg->hs_reader = NULL;
    return RP_OK;
}

typedef struct round_ctx {
    uint64_t tmo;           /* the exchange's timeout: handshake and request together */
    uint64_t overall;       /* round start + the op's per-target timeout, or UINT64_MAX */
    uint64_t op_timeout_ms;
} round_ctx;

/* TLS says what it waits for: the poll events (0 when it waits for nothing). */
static short tls_wait_of(ssize_t n)
{
    return n == RP_TLS_WANT_READ ? POLLIN : n == RP_TLS_WANT_WRITE ? POLLOUT : 0;
}

/* Sends what it can of the target's remaining bytes (through TLS when the connection has
 * it): > 0 bytes sent, 0 it must wait (for tg->c.tls_wait, or POLLOUT), -1 it failed
 * (reported). */
static ssize_t send_some(hiredis_transport *t, rp_op *op, target *tg)
{
    ssize_t n;
    if (tg->c.tls) {
        char why[RP_ERROR_MESSAGE_MAX / 2];
        n = rp_tls__write(tg->c.tls, tg->out + tg->sent, tg->outlen - tg->sent, why, sizeof why);
        tg->c.tls_wait = tls_wait_of(n); /* 0 once it moved: the phase says what is next */
        if (n > 0 || tg->c.tls_wait)
            return n > 0 ? n : 0;
        target_fail(t, op, tg, RP_ETRANSPORT, "connection lost %s: %s", phase_doing(tg->phase), why);
        return -1;
    }
    for (;;) {
        n = send(tg->c.ctx->fd, tg->out + tg->sent, tg->outlen - tg->sent,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        target_fail(t, op, tg, RP_ETRANSPORT, "connection lost %s: %s", phase_doing(tg->phase),
                    n < 0 ? strerror(errno) : "closed by peer");
        return -1;
    }
}

/* Writes what the target has to write; 1 if it must wait for POLLOUT. */
static int write_target(hiredis_transport *t, rp_op *op, target *tg)
{
    while (tg->sent < tg->outlen) {
        ssize_t n = send_some(t, op, tg);
        if (n <= 0)
            return n == 0;
        tg->sent += (size_t)n;
    }
    if (tg->phase == T_HS_WRITE) {
        tg->phase = T_HS_READ;
    } else {
        tg->phase = T_READ;
        if (tg->listening)
            tg->deadline = UINT64_MAX; /* a listening read waits only as long as its caller */
    }
    return 0;
}

static void feed_op(hiredis_transport *t, rp_op *op, target *tg, const char *buf, size_t n);

/* Bytes from a parked connection: the replies it owes are parsed and dropped; what follows
 * them is the op's. */
static void drain(hiredis_transport *t, rp_op *op, target *tg, const char *buf, size_t n)
{
    redisReader *r = tg->c.drain;
    if (!r && !(r = tg->c.drain = rp_reply__reader_new(&t->alloc, t->max_reply))) {
        target_fail(t, op, tg, RP_ENOMEM, "out of memory reading an abandoned request's replies");
        return;
    }
    if (redisReaderFeed(r, buf, n) != REDIS_OK) {
        target_fail(t, op, tg, RP_ENOMEM, "out of memory reading an abandoned request's replies");
        return;
    }
    while (tg->c.owed > 0) {
        void *obj = NULL;
        if (rp_reply__reader_next(r, &obj) != REDIS_OK) {
            char why[RP_ERROR_MESSAGE_MAX];
            int st = rp_reply__reader_why(r, "bad reply to an abandoned request", why, sizeof why);
            target_fail(t, op, tg, st, "%s", why);
            return;
        }
        if (!obj)
            return;
        rp_reply_free(obj);
        tg->c.owed--;
    }
    tg->c.drain = NULL;
    if (r->pos < r->len)
        feed_op(t, op, tg, r->buf + r->pos, r->len - r->pos);
    rp_reply__reader_free(r);
}

/* Reads once and feeds the bytes. blocking: wait inside recv, whose SO_RCVTIMEO is the
 * time left (read_lone; never with TLS). */
static void read_once(hiredis_transport *t, rp_op *op, target *tg, int blocking)
{
    char buf[RP_READ_CHUNK];
    ssize_t n;
    if (tg->c.tls) {
        char why[RP_ERROR_MESSAGE_MAX / 2];
        n = rp_tls__read(tg->c.tls, buf, sizeof buf, why, sizeof why);
        if ((tg->c.tls_wait = tls_wait_of(n)) != 0)
            return;
        if (n < 0) {
            target_fail(t, op, tg, RP_ETRANSPORT, "connection lost %s: %s",
                        phase_doing(tg->phase), why);
            return;
        }
    } else {
        do
            n = recv(tg->c.ctx->fd, buf, sizeof buf, blocking ? 0 : MSG_DONTWAIT);
        while (n < 0 && errno == EINTR && !blocking); /* blocking: back to the loop's clock */
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        /* SO_RCVTIMEO rounds to the kernel's tick: allow a millisecond */
        if (blocking && errno != EINTR && rp_monotonic_ms() + 1 >= tg->deadline)
            fail_timeout(t, op, tg);
        return;
    }
    if (n <= 0) {
        target_fail(t, op, tg, RP_ETRANSPORT, "connection lost %s: %s", phase_doing(tg->phase),
                    n < 0 ? strerror(errno) : "closed by peer");
        return;
    }
    if (tg->phase == T_HS_READ) {
        if (feed_handshake(t, op, tg, buf, (size_t)n) == RP_OK)
            continue_request(tg);
        return;
    }
    if (tg->c.owed > 0) {
        drain(t, op, tg, buf, (size_t)n);
        return;
    }
    feed_op(t, op, tg, buf, (size_t)n);
}

/* Reads and feeds; with TLS, also what the session holds already decrypted (poll cannot
 * see it). */
static void read_target(hiredis_transport *t, rp_op *op, target *tg, int blocking)
{
    int phase;
    do {
        phase = tg->phase;
        read_once(t, op, tg, blocking);
    } while (tg->c.tls && tg->phase == phase && (phase == T_HS_READ || phase == T_READ) &&
             rp_tls__pending(tg->c.tls));
}

/* Bytes of the op's own replies. */
static void feed_op(hiredis_transport *t, rp_op *op, target *tg, const char *buf, size_t n)
{
    int fr;
    tg->fed += n;
    fr = rp_op_feed(op, tg->node, buf, n);
    if (fr == RP_OK) {
        tg->phase = T_DONE;
    } else if (fr != RP_MORE) {
        /* the op failed the node itself (a bad reply, out of memory): the stream is out of
         * step, never reuse it */
        lose(t, tg);
        tg->phase = T_DONE;
    }
}

/* After the TLS handshake: the AUTH / SELECT handshake or the request, within what is left
 * of the exchange's deadline (it began when the socket connected). */
static void after_tls(target *tg)
{
    if (tg->hs_expected > 0) {
        tg->out = tg->hs.data;
        tg->outlen = tg->hs.len;
        tg->sent = 0;
        tg->phase = T_HS_WRITE;
    } else {
        continue_request(tg);
    }
}

/* rediss://: a TLS session over the connected socket; its handshake shares the exchange's
 * deadline with the AUTH handshake and the request, as the AUTH handshake does. */
static void start_tls(hiredis_transport *t, rp_op *op, target *tg, const rp_endpoint *ep,
                      const round_ctx *rc)
{
    char why[RP_ERROR_MESSAGE_MAX / 2];
    int st;
    if (!t->tls) {
        rp_error e;
        rp_error_clear(&e);
        if ((st = rp_tls__new(&t->tls, t->options, &t->alloc, &e)) != RP_OK) {
            target_fail(t, op, tg, st, "%s", e.message);
            return;
        }
    }
    if ((st = rp_tls__conn_new(&tg->c.tls, t->tls, tg->c.ctx->fd, ep->host, why, sizeof why))) {
        target_fail(t, op, tg, st, "%s", why);
        return;
    }
    tg->c.blocking = 0; /* reads go through the session, never a blocking recv */
    tg->c.tls_wait = POLLOUT;
    tg->phase = T_TLS;
    phase_deadline(tg, rp_monotonic_ms(), rc->tmo, rc->overall, rc->op_timeout_ms);
}

/* Moves the TLS handshake on. */
static void tls_step(hiredis_transport *t, rp_op *op, target *tg)
{
    char why[RP_ERROR_MESSAGE_MAX / 2];
    int r = rp_tls__handshake(tg->c.tls, why, sizeof why);
    if ((tg->c.tls_wait = tls_wait_of(r)) != 0)
        return;
    if (r != 0) {
        target_fail(t, op, tg, RP_ETRANSPORT, "TLS handshake failed: %s", why);
        return;
    }
    after_tls(tg);
}

/* The socket of a T_CONNECT target is writable: did the connect succeed? */
static void finish_connect(hiredis_transport *t, rp_op *op, target *tg, const round_ctx *rc)
{
    rp_endpoint ep;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(tg->c.ctx->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr != 0) {
        target_fail(t, op, tg, RP_ETRANSPORT, "cannot connect: %s", strerror(soerr));
        return;
    }
    if (rp_op_target(op, tg->node, &ep) != RP_OK) {
        target_fail(t, op, tg, RP_EINVAL, "the op has no endpoint for this target");
        return;
    }
    if (connected(t, tg, &ep) != RP_OK) {
        target_fail(t, op, tg, RP_ENOMEM, "out of memory preparing the handshake");
        return;
    }
    if (ep.tls) {
        start_tls(t, op, tg, &ep, rc);
        return;
    }
    if (tg->hs_expected > 0) {
        tg->out = tg->hs.data;
        tg->outlen = tg->hs.len;
        tg->sent = 0;
        tg->phase = T_HS_WRITE;
        phase_deadline(tg, rp_monotonic_ms(), rc->tmo, rc->overall, rc->op_timeout_ms);
    } else {
        start_request(tg, rp_monotonic_ms(), rc->tmo, rc->overall, rc->op_timeout_ms);
    }
}

/* Moves the target on as far as it goes without waiting, from poll's revents. */
static void progress(hiredis_transport *t, rp_op *op, target *tg, short revents,
                     const round_ctx *rc)
{
    for (;;) {
        int before = tg->phase;
        switch (before) {
        case T_CONNECT:
            if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
                return;
            finish_connect(t, op, tg, rc);
            revents = POLLOUT; /* a fresh socket has room: write at once */
            break;
        case T_TLS:
            if (!(revents & (tg->c.tls_wait | POLLERR | POLLHUP)))
                return;
            tls_step(t, op, tg);
            if (tg->phase == before)
                return; /* the server's answer is not there yet: poll again */
            revents = POLLOUT;
            break;
        case T_HS_WRITE:
        case T_WRITE:
            if (write_target(t, op, tg))
                return;
            revents = 0; /* the reply is not there yet: poll for it */
            break;
        case T_HS_READ:
        case T_READ:
            if (!(revents & ((tg->c.tls_wait ? tg->c.tls_wait : POLLIN) | POLLERR | POLLHUP)))
                return;
            read_target(t, op, tg, 0);
            if (tg->phase == before)
                return; /* more to read: poll again */
            revents = POLLOUT; /* the handshake is done: write the request at once */
            break;
        default:
            return;
        }
    }
}

/* --- the round -------------------------------------------------------------------------- */

/* Opens a fresh non-blocking connection for tg (or fails the target). */
static void start_connect(hiredis_transport *t, rp_op *op, target *tg, const rp_endpoint *ep,
                          const round_ctx *rc, uint64_t now)
{
    redisContext *ctx = ep->is_unix ? redisConnectUnixNonBlock(ep->path)
                                    : redisConnectNonBlock(ep->host, ep->port);
    memset(&tg->c, 0, sizeof tg->c);
    tg->phase = T_CONNECT;
    phase_deadline(tg, now, t->connect_timeout_ms, rc->overall, rc->op_timeout_ms);
    if (!ctx) {
        target_fail(t, op, tg, RP_ENOMEM, "out of memory connecting");
        return;
    }
    tg->c.ctx = ctx;
    tg->c.pid = t->pid;
    if (ctx->err)
        target_fail(t, op, tg, RP_ETRANSPORT, "cannot connect: %s", ctx->errstr);
}

/* Takes the pooled connection of tg's slot if this op may use it (else tg->c stays
 * empty: connect). RP_ETRANSPORT: a long-lived op's own connection is gone. */
static int take_pooled(hiredis_transport *t, target *tg, uint64_t now)
{
    slot *s = &t->slots[tg->slot];
    memset(&tg->c, 0, sizeof tg->c);
    if (s->idle.ctx && s->idle.pid != t->pid)
        conn_close(&s->idle); /* opened before a fork: the parent's socket */
    if (tg->own && s->reserved && !s->idle.ctx)
        return RP_ETRANSPORT; /* dropped between its rounds (rp_client_disconnect, fork) */
    if (!s->idle.ctx || (s->reserved && !tg->own))
        return RP_OK;
    /* a long-lived op's connection has its pushed messages waiting, a parked one its owed
     * replies: never probe those (a closed one shows when it is read) */
    if (!tg->own && s->idle.owed == 0 && now - s->idle.last_used_ms >= RP_IDLE_PROBE_MS &&
        looks_dead(s->idle.ctx->fd)) {
        conn_close(&s->idle);
        return RP_OK;
    }
    tg->c = s->idle;
    memset(&s->idle, 0, sizeof s->idle);
    return RP_OK;
}

/* Back to the pool, or closed when the slot is not free for it. */
static void give_back(hiredis_transport *t, target *tg, uint64_t now)
{
    slot *s = &t->slots[tg->slot];
    if (tg->own) {
        conn_close(&s->idle); /* an ordinary idle connection yields to the op's own */
        s->reserved = 1;
    } else if (s->idle.ctx || s->reserved) {
        conn_close(&tg->c); /* one idle connection per address; a reserved slot is not ours */
        return;
    }
    tg->c.last_used_ms = now;
    s->idle = tg->c;
    memset(&tg->c, 0, sizeof tg->c);
}

/* Sets up a target for every pending node, writing at once where a pooled connection
 * is ready; returns how many there are. */
static size_t begin_targets(hiredis_transport *t, rp_op *op, const round_ctx *rc, uint64_t now)
{
    size_t node, k = 0, nodes = rp_op_nodes(op);
    int long_lived = rp_op_long_lived(op);
    for (node = 0; node < nodes; node++) {
        target *tg;
        rp_endpoint ep;
        if (!rp_op_pending(op, node))
            continue;
        tg = &t->tg[k++];
        tg->node = node;
        tg->listening = rp_op_listening(op, node);
        tg->own = long_lived;
        tg->phase = T_DONE;
        tg->hs_reader = NULL;
        tg->fed = 0;
        memset(&tg->c, 0, sizeof tg->c);
        if (rp_op_target(op, node, &ep) != RP_OK) {
            rp_op_fail_node_unsent(op, node, RP_EINVAL, "the op's client has no endpoint for this target");
            continue;
        }
        if (slot_for(t, ep.address, &tg->slot) != RP_OK) {
            rp_op_fail_node_unsent(op, node, RP_ENOMEM, "out of memory");
            continue;
        }
        rp_op_request(op, node, &tg->req, &tg->reqlen);
        if (take_pooled(t, tg, now) != RP_OK) {
            target_fail(t, op, tg, RP_ETRANSPORT,
                        "connection dropped between rounds (disconnect or fork)");
            continue;
        }
        if (!tg->c.ctx) {
            start_connect(t, op, tg, &ep, rc, now);
            continue;
        }
        start_request(tg, now, rc->tmo, rc->overall, rc->op_timeout_ms);
        progress(t, op, tg, POLLOUT, rc); /* most requests fit the socket's buffer */
    }
    return k;
}

/* A lone target waits for its reply inside recv (one system call instead of poll + recv).
 * 0: the socket cannot (no SO_RCVTIMEO): poll it instead. */
static int read_lone(hiredis_transport *t, rp_op *op, target *tg, uint64_t now)
{
    uint64_t left = tg->deadline > now ? tg->deadline - now : 0;
    uint32_t ms = left > RP_POLL_SLICE_MS ? RP_POLL_SLICE_MS : (uint32_t)left;
    if (ms == 0)
        ms = 1; /* 0 would mean "no timeout" */
    /* within a millisecond either way is close enough: the clock's tick between rounds
     * must not cost a setsockopt each time (a timeout that comes early is re-armed) */
    if (tg->c.rcvtimeo_ms == 0 || tg->c.rcvtimeo_ms > ms + 1 || tg->c.rcvtimeo_ms + 1 < ms) {
        struct timeval tv;
        tv.tv_sec = (time_t)(ms / 1000u);
        tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
        if (setsockopt(tg->c.ctx->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
            tg->c.blocking = 0;
            return 0;
        }
        tg->c.rcvtimeo_ms = ms;
    }
    read_target(t, op, tg, 1);
    return 1;
}

static int round_all(rp_transport *base, rp_op *op, uint64_t listen_wait_ms, rp_error *err)
{
    hiredis_transport *t = (hiredis_transport *)base;
    uint64_t now = rp_monotonic_ms(), listen_deadline = add_sat(now, listen_wait_ms);
    size_t nodes = rp_op_nodes(op), ntg, i, k;
    int last_look = 0, timed_out;
    round_ctx rc;

    t->pid = getpid();
    rc.op_timeout_ms = rp_op_timeout_ms(op);
    rc.tmo = rc.op_timeout_ms ? rc.op_timeout_ms : t->command_timeout_ms;
    rc.overall = rc.op_timeout_ms ? add_sat(now, rc.op_timeout_ms) : UINT64_MAX;
    if (grow_scratch(t, nodes) != RP_OK) {
        for (i = 0; i < nodes; i++)
            if (rp_op_pending(op, i))
                rp_op_fail_node_unsent(op, i, RP_ENOMEM, "out of memory starting a round");
        return RP_OK;
    }
    ntg = begin_targets(t, op, &rc, now);

    for (;;) {
        size_t np = 0, active = 0, lone = 0;
        int unsettled = 0, only_listening = 1, n;
        uint64_t wake = UINT64_MAX, wait;
        for (i = 0; i < ntg; i++) {
            const target *tg = &t->tg[i];
            if (tg->phase == T_DONE)
                continue;
            active++;
            lone = i;
            if (!tg->listening || tg->phase != T_READ)
                only_listening = 0;
            if (tg->listening && tg->phase != T_READ)
                unsettled = 1; /* its request goes out whole before the round may end */
        }
        if (active == 0 || (rp_op_round_over(op) && !unsettled))
            break;
        if (only_listening && last_look)
            break; /* waited the caller's time and had a last look: no message */
        now = rp_monotonic_ms();
        if (active == 1 && t->tg[lone].phase == T_READ && !t->tg[lone].listening &&
            t->tg[lone].c.blocking && read_lone(t, op, &t->tg[lone], now))
            continue;
        for (i = 0; i < ntg; i++) {
            target *tg = &t->tg[i];
            if (tg->phase == T_DONE)
                continue;
            t->pfd[np].fd = tg->c.ctx->fd;
            t->pfd[np].events = tg->c.tls_wait ? tg->c.tls_wait
                                : tg->phase == T_HS_READ || tg->phase == T_READ ? POLLIN : POLLOUT;
            t->pfd[np].revents = 0;
            t->pfd_tg[np++] = i;
            wake = min_u64(wake, tg->listening && tg->phase == T_READ ? listen_deadline
                                                                       : tg->deadline);
        }
        wait = wake > now ? wake - now : 0;
        n = poll(t->pfd, (nfds_t)np, (int)min_u64(wait, RP_POLL_SLICE_MS));
        if (n < 0 && errno != EINTR) {
            int e = errno;
            for (i = 0; i < ntg; i++)
                if (t->tg[i].phase != T_DONE)
                    target_fail(t, op, &t->tg[i], RP_ETRANSPORT, "poll failed: %s", strerror(e));
            break;
        }
        for (i = 0; n > 0 && i < np; i++)
            if (t->pfd[i].revents)
                progress(t, op, &t->tg[t->pfd_tg[i]], t->pfd[i].revents, &rc);
        now = rp_monotonic_ms();
        for (i = 0; i < ntg; i++) {
            target *tg = &t->tg[i];
            if (tg->phase != T_DONE && !(tg->listening && tg->phase == T_READ) &&
                now >= tg->deadline)
                fail_timeout(t, op, tg);
        }
        if (only_listening && now >= listen_deadline)
            last_look = 1; /* the poll just made was the last look (no wait left) */
    }

    /* Hand the connections back; the ones still waiting for replies are closed. A
     * listening connection is the op's whatever it has read: it stays. */
    timed_out = !rp_op_round_over(op);
    now = rp_monotonic_ms();
    for (i = 0; i < ntg; i++) {
        target *tg = &t->tg[i];
        if (tg->hs_reader) {
            rp_reply__reader_free(tg->hs_reader);
            tg->hs_reader = NULL;
        }
        if (!tg->c.ctx)
            continue;
        if (tg->listening || (tg->phase == T_DONE && !rp_op_pending(op, tg->node))) {
            give_back(t, tg, now);
        } else if (tg->own) {
            lose(t, tg);
        } else if (tg->phase == T_WRITE && tg->sent == 0) {
            give_back(t, tg, now); /* this round's request never went out: as it was */
        } else if (tg->phase == T_READ && tg->fed == 0 && (k = count_commands(tg->req,
                                                                              tg->reqlen)) > 0) {
            tg->c.owed += k; /* parked: its replies are read and dropped first */
            give_back(t, tg, now);
        } else {
            lose(t, tg); /* abandoned mid-way: nobody knows what it still owes */
        }
    }
    if (timed_out)
        return rp_error__set(err, RP_ETIMEOUT, "no message within %llu ms",
                             (unsigned long long)listen_wait_ms);
    return RP_OK;
}

/* How long closing a subscriber's connection waits for the server to let go of it. */
#define RP_SUBSCRIBER_QUIT_MS 100

/* A subscriber's connection is closed by QUIT, waiting (briefly) for the server's EOF:
 * Redis unsubscribes a client before it closes its socket, so once EOF is read a PUBLISH
 * sent next can no longer count it (a bare close races that PUBLISH). */
static void quit_subscriber(conn *c)
{
    static const char quit[] = "*1\r\n$4\r\nQUIT\r\n";
    uint64_t deadline = rp_monotonic_ms() + RP_SUBSCRIBER_QUIT_MS;
    char buf[4096];
    if (!c->ctx || c->pid != getpid())
        return;
    char why[RP_ERROR_MESSAGE_MAX / 2];
    if ((c->tls ? rp_tls__write(c->tls, quit, sizeof quit - 1, why, sizeof why)
                : send(c->ctx->fd, quit, sizeof quit - 1, MSG_NOSIGNAL | MSG_DONTWAIT)) !=
        (ssize_t)(sizeof quit - 1))
        return;
    for (;;) {
        uint64_t now = rp_monotonic_ms();
        struct pollfd p = { c->ctx->fd, POLLIN, 0 };
        ssize_t n;
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) <= 0)
            return;
        if (c->tls) {
            n = rp_tls__read(c->tls, buf, sizeof buf, why, sizeof why);
            if (n == 0 || n == RP_TLS_FAILED)
                return;
            continue;
        }
        n = recv(c->ctx->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return; /* EOF (or the connection is gone anyway) */
    }
}

static void drop_all(hiredis_transport *t)
{
    size_t i;
    /* a reserved slot stays reserved with no connection: the long-lived op's next round
     * is told its connection is gone (it re-subscribes) instead of silently getting a
     * fresh one */
    for (i = 0; i < t->nslots; i++) {
        if (t->slots[i].reserved)
            quit_subscriber(&t->slots[i].idle);
        conn_close(&t->slots[i].idle);
    }
}

static void destroy(rp_transport *base)
{
    hiredis_transport *t = (hiredis_transport *)base;
    rp_allocator a = t->alloc;
    size_t i;
    drop_all(t);
    rp_tls__free(t->tls); /* after its sessions */
    for (i = 0; i < t->nslots; i++)
        rp_alloc__free(&a, t->slots[i].address);
    for (i = 0; i < t->captg; i++)
        rp_buf__free(&a, &t->tg[i].hs);
    rp_alloc__free(&a, t->slots);
    rp_alloc__free(&a, t->tg);
    rp_alloc__free(&a, t->pfd);
    rp_alloc__free(&a, t->pfd_tg);
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
    t->max_reply = o->max_reply_size ? o->max_reply_size : RP_CLIENT_MAX_REPLY_SIZE_DEFAULT;
    t->options = o;
    /* options given: read their files now, so a bad one fails rp_client_new (without any,
     * the system's store is loaded at the first rediss:// connect) */
    if (o->tls_ca_file || o->tls_cert_file || o->tls_key_file || o->tls_server_name ||
        !o->tls_verify) {
        int rc = rp_tls__new(&t->tls, o, a, err);
        if (rc) {
            rp_alloc__free(a, t);
            return rc;
        }
    }
    *out = &t->base;
    return RP_OK;
}

void rp_transport__hiredis_disconnect(rp_transport *base)
{
    if (base && base->cls == &hiredis_class)
        drop_all((hiredis_transport *)base);
}
