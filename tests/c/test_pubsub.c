/* Pub/Sub against a real redis-server: publish, the listen op's messages, (un)subscribing
 * while it listens, binary names and payloads, the limits at their edge, and reconnection
 * (CLIENT KILL, a server that is down for a while and comes back).
 *
 * The long-lived op is driven by a small poll() loop of this test's own over a plain socket
 * (the op API of op.h, exactly as an event-loop driver would), so the core's op is what is
 * tested here, not a transport. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <redpat/redpat.h>

#include "rp_harness.h"

#define NAMES(a) ((const void *const *)(a))
#define WAIT_MS 3000u /* generous: a message normally arrives within a millisecond */

static rp_hserver srv;

/* --- a tiny driver for one long-lived op ------------------------------------------------ */

typedef struct ll {
    rp_client *client;
    rp_op *op;
    int fd;               /* the op's connection, or -1 */
    int in_round;         /* a listening round is open (its request written) */
    uint64_t sleep_until; /* the op sleeps until then (0: not sleeping) */
    int connects;         /* connection attempts */
    int connected;        /* of which succeeded */
} ll;

static void ll_close(ll *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* Runs a one-target op (the endpoint's handshake) over fd to its end: 0 or -1. */
static int run_on(int fd, rp_op *op)
{
    char buf[4096];
    for (;;) {
        switch (rp_op_step(op, rp_monotonic_ms())) {
        case RP_STEP_DONE:
            return 0;
        case RP_STEP_IO: {
            const char *req;
            size_t len;
            int rc = RP_MORE;
            rp_op_request(op, 0, &req, &len);
            if (len && send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
                return -1;
            while (rc == RP_MORE) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0)
                    return -1;
                rc = rp_op_feed(op, 0, buf, (size_t)n);
            }
            if (rc != RP_OK)
                return -1;
            break;
        }
        default:
            return -1;
        }
    }
}

/* A fresh connection to the op's target, handshaken. */
static int ll_connect(ll *l, rp_error *why)
{
    rp_endpoint ep;
    struct sockaddr_in a;
    rp_op *hs = NULL;
    int fd, rc;
    l->connects++;
    RP_CHECK(rp_op_target(l->op, 0, &ep) == RP_OK && !ep.is_unix, "the op's target");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    RP_CHECK(fd >= 0, "socket: %s", strerror(errno));
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)ep.port);
    inet_pton(AF_INET, ep.host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(why->message, sizeof why->message, "cannot connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    rc = rp_endpoint_handshake_op(&hs, l->client, &ep, why);
    RP_CHECK(rc == RP_OK, "handshake op: %s", why->message);
    rc = run_on(fd, hs);
    rp_op_free(hs);
    if (rc != 0) {
        snprintf(why->message, sizeof why->message, "handshake failed");
        close(fd);
        return -1;
    }
    l->fd = fd;
    l->connected++;
    return 0;
}

static void ll_fail(ll *l, const char *why)
{
    ll_close(l);
    rp_op_fail_node(l->op, 0, RP_ETRANSPORT, why);
    l->in_round = 0;
}

static void ll_init(ll *l, rp_client *c, rp_op *op)
{
    memset(l, 0, sizeof *l);
    l->client = c;
    l->op = op;
    l->fd = -1;
    RP_CHECK(rp_op_long_lived(op) == 1, "a listen op is long-lived");
}

static void ll_free(ll *l)
{
    ll_close(l);
    rp_op_free(l->op);
    l->op = NULL;
}

/* Steps the op until it EMITs (RP_OK), wait_ms passes (RP_ETIMEOUT: the op lives on) or it
 * fails (its code). */
static int ll_pump(ll *l, uint64_t wait_ms)
{
    uint64_t deadline = rp_monotonic_ms() + wait_ms;
    char buf[65536];
    /* an open round: step first (a poll), so changes made since are sent */
    l->in_round = 0;
    for (;;) {
        uint64_t now = rp_monotonic_ms();
        if (l->sleep_until) {
            if (now < l->sleep_until) {
                if (now >= deadline)
                    return RP_ETIMEOUT;
                rp_harness_sleep_ms((l->sleep_until < deadline ? l->sleep_until : deadline) - now);
                continue;
            }
            l->sleep_until = 0;
        } else if (l->in_round) {
            struct pollfd p = { l->fd, POLLIN, 0 };
            ssize_t n;
            int rc;
            if (now >= deadline)
                return RP_ETIMEOUT;
            rc = poll(&p, 1, (int)(deadline - now));
            if (rc == 0)
                return RP_ETIMEOUT;
            if (rc < 0 && errno == EINTR)
                continue;
            n = recv(l->fd, buf, sizeof buf, 0);
            if (n <= 0) {
                ll_fail(l, n == 0 ? "connection closed by the server" : strerror(errno));
                continue;
            }
            rc = rp_op_feed(l->op, 0, buf, (size_t)n);
            if (rc == RP_MORE)
                continue;
            if (rc != RP_OK)
                ll_close(l); /* bad bytes: the op fails at its next step */
            l->in_round = 0;
            continue;
        }
        switch (rp_op_step(l->op, now)) {
        case RP_STEP_IO: {
            const char *req;
            size_t len;
            rp_error why;
            RP_CHECK(rp_op_listening(l->op, 0), "every round of a listen op listens");
            if (l->fd < 0 && ll_connect(l, &why) != 0) {
                rp_op_fail_node(l->op, 0, RP_ETRANSPORT, why.message);
                continue;
            }
            rp_op_request(l->op, 0, &req, &len);
            if (len && send(l->fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
                ll_fail(l, "write failed");
                continue;
            }
            l->in_round = 1;
            break;
        }
        case RP_STEP_SLEEP:
            l->sleep_until = now + rp_op_sleep_ms(l->op);
            break;
        case RP_STEP_EMIT:
            return RP_OK;
        case RP_STEP_DONE:
            return RP_ESTATE;
        case RP_STEP_ERROR:
        default:
            return rp_op_error(l->op)->code;
        }
    }
}

/* --- helpers ----------------------------------------------------------------------------- */

static rp_client *new_client(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_error e;
    o.url = srv.url;
    o.key_namespace = "ps";
    RP_CHECK(rp_client_new(&c, &o, &e) == RP_OK, "client: %s", e.message);
    return c;
}

static rp_subscription *new_sub(rp_client *c, size_t nch, const char *const *ch,
                                const size_t *chl, size_t npt, const char *const *pt,
                                const size_t *ptl)
{
    rp_subscription *s = NULL;
    rp_error e;
    int rc = rp_subscription_new(&s, c, nch, NAMES(ch), chl, npt, NAMES(pt), ptl, &e);
    RP_CHECK(rc == RP_OK, "subscription: %s", e.message);
    return s;
}

static void listen_on(ll *l, rp_client *c, rp_subscription *s)
{
    rp_op *op = NULL;
    rp_error e;
    RP_CHECK(rp_subscription_listen_op(&op, s, &e) == RP_OK, "listen op: %s", e.message);
    ll_init(l, c, op);
}

static int64_t publish(rp_client *c, const void *ch, size_t chl, const void *msg, size_t len)
{
    int64_t n = -1;
    rp_error e;
    int rc = rp_pubsub_publish(c, ch, chl, msg, len, &n, &e);
    RP_CHECK(rc == RP_OK, "publish: %s %s", rp_status_name(rc), e.message);
    return n;
}

static int same(const char *p, size_t len, const void *want, size_t n)
{
    return (p == NULL) == (want == NULL) && len == n && (n == 0 || memcmp(p, want, n) == 0);
}

/* The next message is of kind, with these fields (NULL: absent). */
static void expect_msg(ll *l, rp_pubsub_kind kind, const void *channel, size_t channel_len,
                       const void *pattern, size_t pattern_len, const void *data,
                       size_t data_len, int64_t count, int line)
{
    rp_pubsub_message m;
    int rc = ll_pump(l, WAIT_MS);
    RP_CHECK(rc == RP_OK, "line %d: pump: %s (%s)", line, rp_status_name(rc),
             rc < 0 && rc != RP_ETIMEOUT ? rp_op_error(l->op)->message : "no message");
    RP_CHECK(rp_subscription_message(l->op, &m) == RP_OK, "line %d: message", line);
    RP_CHECK(m.kind == kind, "line %d: kind %s, wanted %s", line, rp_pubsub_kind_name(m.kind),
             rp_pubsub_kind_name(kind));
    RP_CHECK(same(m.channel, m.channel_len, channel, channel_len), "line %d: channel", line);
    RP_CHECK(same(m.pattern, m.pattern_len, pattern, pattern_len), "line %d: pattern", line);
    RP_CHECK(same(m.data, m.data_len, data, data_len), "line %d: data", line);
    RP_CHECK(m.count == count, "line %d: count %lld, wanted %lld", line, (long long)m.count,
             (long long)count);
}

#define S(x) x, strlen(x)
#define EXPECT_MESSAGE(l, ch, data) \
    expect_msg(l, RP_PUBSUB_MESSAGE, S(ch), NULL, 0, S(data), 0, __LINE__)
#define EXPECT_CONFIRM(l, kind, ch, count) \
    expect_msg(l, kind, S(ch), NULL, 0, NULL, 0, count, __LINE__)
#define EXPECT_PCONFIRM(l, kind, pat, count) \
    expect_msg(l, kind, NULL, 0, S(pat), NULL, 0, count, __LINE__)
#define EXPECT_RECONNECT(l) \
    expect_msg(l, RP_PUBSUB_RECONNECT, NULL, 0, NULL, 0, NULL, 0, 0, __LINE__)

static void expect_silence(ll *l, uint64_t ms, int line)
{
    int rc = ll_pump(l, ms);
    rp_pubsub_message m;
    if (rc == RP_OK && rp_subscription_message(l->op, &m) == RP_OK)
        RP_CHECK(0, "line %d: an unexpected %s message", line, rp_pubsub_kind_name(m.kind));
    RP_CHECK(rc == RP_ETIMEOUT, "line %d: pump: %s", line, rp_status_name(rc));
}

static long long numsub(redisContext *side, const char *channel)
{
    redisReply *r = rp_hcmd(side, "PUBSUB NUMSUB %s", channel);
    long long n;
    RP_CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "PUBSUB NUMSUB");
    n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

/* --- the tests ---------------------------------------------------------------------------- */

static void test_publish_without_subscribers(void)
{
    rp_client *c = new_client();
    RP_CHECK(publish(c, S("nobody"), S("hello")) == 0, "no receivers");
    RP_CHECK(publish(c, S("nobody"), "", 0) == 0, "an empty payload is a message too");
    rp_client_free(c);
}

static void test_messages_and_changes(void)
{
    static const char bin_ch[] = "b\0\r\n\xff";
    static const char bin_data[] = "x\0y\r\nz\xfe";
    const char *ch[] = { "a", "b" }, *more[] = { bin_ch }, *pat[] = { "news.*" };
    size_t chl[] = { 1, 1 }, morel[] = { sizeof bin_ch - 1 }, patl[] = { 6 };
    rp_client *pub = new_client(), *c = new_client();
    rp_subscription *s = new_sub(c, 2, ch, chl, 0, NULL, NULL);
    char *big = malloc(1 << 20);
    rp_pubsub_message m;
    ll l;
    size_t i;
    for (i = 0; i < (1u << 20); i++)
        big[i] = (char)(i * 7 + (i >> 9));
    listen_on(&l, c, s);
    EXPECT_CONFIRM(&l, RP_PUBSUB_SUBSCRIBE, "a", 1);
    EXPECT_CONFIRM(&l, RP_PUBSUB_SUBSCRIBE, "b", 2);
    RP_CHECK(publish(pub, S("a"), S("hello")) == 1, "one receiver");
    EXPECT_MESSAGE(&l, "a", "hello");
    RP_CHECK(publish(pub, S("b"), "", 0) == 1, "one receiver");
    expect_msg(&l, RP_PUBSUB_MESSAGE, S("b"), NULL, 0, "", 0, 0, __LINE__);

    /* subscribe more while listening: a binary channel, and a pattern */
    RP_CHECK(rp_subscription_subscribe(s, 1, NAMES(more), morel, 1, NAMES(pat), patl, NULL) ==
             RP_OK, "subscribe more");
    expect_msg(&l, RP_PUBSUB_SUBSCRIBE, bin_ch, sizeof bin_ch - 1, NULL, 0, NULL, 0, 3,
               __LINE__);
    EXPECT_PCONFIRM(&l, RP_PUBSUB_PSUBSCRIBE, "news.*", 4);
    RP_CHECK(publish(pub, bin_ch, sizeof bin_ch - 1, bin_data, sizeof bin_data - 1) == 1,
             "binary publish");
    expect_msg(&l, RP_PUBSUB_MESSAGE, bin_ch, sizeof bin_ch - 1, NULL, 0, bin_data,
               sizeof bin_data - 1, 0, __LINE__);
    RP_CHECK(publish(pub, S("news.today"), S("extra")) == 1, "pattern receiver");
    expect_msg(&l, RP_PUBSUB_PMESSAGE, S("news.today"), S("news.*"), S("extra"), 0, __LINE__);

    /* a payload of 1 MiB arrives over many reads, byte-exact */
    RP_CHECK(publish(pub, S("a"), big, 1 << 20) == 1, "big publish");
    RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_subscription_message(l.op, &m) == RP_OK,
             "big message");
    RP_CHECK(m.kind == RP_PUBSUB_MESSAGE && same(m.data, m.data_len, big, 1 << 20),
             "big message bytes");

    /* several at once are emitted one at a time, in order */
    for (i = 0; i < 50; i++) {
        char d[16];
        snprintf(d, sizeof d, "m%zu", i);
        publish(pub, S("a"), S(d));
    }
    for (i = 0; i < 50; i++) {
        char d[16];
        snprintf(d, sizeof d, "m%zu", i);
        expect_msg(&l, RP_PUBSUB_MESSAGE, S("a"), NULL, 0, S(d), 0, __LINE__);
    }

    /* unsubscribe one channel while listening: confirmed, then nothing comes from it */
    RP_CHECK(rp_subscription_unsubscribe(s, 1, NAMES(ch + 1), chl, 0, NULL, NULL, NULL) == RP_OK,
             "unsubscribe b");
    EXPECT_CONFIRM(&l, RP_PUBSUB_UNSUBSCRIBE, "b", 3);
    RP_CHECK(publish(pub, S("b"), S("lost")) == 0, "nobody hears b now");
    expect_silence(&l, 300, __LINE__);
    RP_CHECK(publish(pub, S("a"), S("still")) == 1, "a still heard");
    EXPECT_MESSAGE(&l, "a", "still");

    /* everything */
    RP_CHECK(rp_subscription_unsubscribe(s, 0, NULL, NULL, 0, NULL, NULL, NULL) == RP_OK, "all");
    for (i = 0; i < 3; i++) {
        RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_subscription_message(l.op, &m) == RP_OK,
                 "unsubscribe confirmation %zu", i);
        RP_CHECK(m.kind == RP_PUBSUB_UNSUBSCRIBE || m.kind == RP_PUBSUB_PUNSUBSCRIBE,
                 "kind %s", rp_pubsub_kind_name(m.kind));
        RP_CHECK(m.count == (int64_t)(2 - i), "count %lld", (long long)m.count);
    }
    RP_CHECK(publish(pub, S("a"), S("x")) == 0 && publish(pub, S("news.x"), S("x")) == 0,
             "nobody subscribed");
    expect_silence(&l, 200, __LINE__);
    ll_free(&l);
    rp_subscription_free(s);
    rp_client_free(c);
    rp_client_free(pub);
    free(big);
}

/* CLIENT KILL: one reconnect notice (no confirmations of the re-subscription), and messages
 * flow again. */
static void test_reconnect_after_kill(void)
{
    const char *ch[] = { "a", "b" }, *pat[] = { "p*" };
    size_t chl[] = { 1, 1 }, patl[] = { 2 };
    rp_client *pub = new_client(), *c = new_client();
    rp_subscription *s = new_sub(c, 2, ch, chl, 1, pat, patl);
    redisContext *side = rp_hserver_connect(&srv, 2000);
    redisReply *r;
    ll l;
    int round;
    RP_CHECK(side != NULL, "side channel");
    listen_on(&l, c, s);
    EXPECT_CONFIRM(&l, RP_PUBSUB_SUBSCRIBE, "a", 1);
    EXPECT_CONFIRM(&l, RP_PUBSUB_SUBSCRIBE, "b", 2);
    EXPECT_PCONFIRM(&l, RP_PUBSUB_PSUBSCRIBE, "p*", 3);
    for (round = 0; round < 3; round++) {
        r = rp_hcmd(side, "CLIENT KILL TYPE pubsub");
        RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "killed one client");
        freeReplyObject(r);
        EXPECT_RECONNECT(&l);
        RP_CHECK(numsub(side, "a") == 1 && numsub(side, "b") == 1, "subscribed again");
        RP_CHECK(publish(pub, S("b"), S("again")) == 1, "one receiver again");
        EXPECT_MESSAGE(&l, "b", "again");
        RP_CHECK(publish(pub, S("pq"), S("pat")) == 1, "the pattern too");
        expect_msg(&l, RP_PUBSUB_PMESSAGE, S("pq"), S("p*"), S("pat"), 0, __LINE__);
        expect_silence(&l, 100, __LINE__); /* no confirmations, no second notice */
    }
    RP_CHECK(l.connected == 4, "one fresh connection per kill (%d)", l.connected);
    redisFree(side);
    ll_free(&l);
    rp_subscription_free(s);
    rp_client_free(c);
    rp_client_free(pub);
}

/* The server is down for a while: the op retries with backoff (not in a tight loop), then
 * subscribes again once it is back. */
static void test_reconnect_after_outage(void)
{
    const char *ch[] = { "a" };
    size_t chl[] = { 1 };
    rp_client *pub, *c = new_client();
    rp_subscription *s = new_sub(c, 1, ch, chl, 0, NULL, NULL);
    uint64_t back;
    int attempts;
    ll l;
    listen_on(&l, c, s);
    EXPECT_CONFIRM(&l, RP_PUBSUB_SUBSCRIBE, "a", 1);
    rp_hserver_stop(&srv);
    expect_silence(&l, 2000, __LINE__);
    attempts = l.connects - 1;
    /* 25..50, 50..100, 100..200, 200..400, 400..800 ms ...: 3 to 7 tries in 2 s */
    RP_CHECK(attempts >= 3 && attempts <= 8, "%d connection attempts in 2 s", attempts);
    RP_CHECK(rp_hserver_launch(&srv) == 0, "server back");
    back = rp_monotonic_ms();
    EXPECT_RECONNECT(&l);
    /* the next try comes within the cap (2 s) of the server's return */
    RP_CHECK(rp_monotonic_ms() - back <= RP_SUBSCRIPTION_BACKOFF_MAX_MS + 500,
             "reconnected %llu ms after the server came back",
             (unsigned long long)(rp_monotonic_ms() - back));
    pub = new_client();
    RP_CHECK(publish(pub, S("a"), S("back")) == 1, "subscribed again");
    EXPECT_MESSAGE(&l, "a", "back");
    ll_free(&l);
    rp_subscription_free(s);
    rp_client_free(c);
    rp_client_free(pub);
}

/* Two listen ops of one subscription: two connections, each gets every message. */
static void test_two_listeners(void)
{
    const char *ch[] = { "a" };
    size_t chl[] = { 1 };
    rp_client *pub = new_client(), *c1 = new_client();
    rp_subscription *s = new_sub(c1, 1, ch, chl, 0, NULL, NULL);
    ll l1, l2;
    listen_on(&l1, c1, s);
    listen_on(&l2, c1, s);
    EXPECT_CONFIRM(&l1, RP_PUBSUB_SUBSCRIBE, "a", 1);
    EXPECT_CONFIRM(&l2, RP_PUBSUB_SUBSCRIBE, "a", 1);
    RP_CHECK(publish(pub, S("a"), S("both")) == 2, "two receivers");
    EXPECT_MESSAGE(&l1, "a", "both");
    EXPECT_MESSAGE(&l2, "a", "both");
    ll_free(&l1);
    ll_free(&l2);
    rp_subscription_free(s);
    rp_client_free(c1);
    rp_client_free(pub);
}

/* The limits at their edge, against the server: RP_SUBSCRIPTION_NAMES_MAX channels in one
 * SUBSCRIBE, and a channel of RP_PUBSUB_CHANNEL_MAX bytes. */
static void test_limits(void)
{
    size_t max = RP_SUBSCRIPTION_NAMES_MAX, i;
    char *names = malloc(max * 8), *longest = malloc(RP_PUBSUB_CHANNEL_MAX + 1);
    const char **p = malloc((max + 1) * sizeof *p);
    size_t *len = malloc((max + 1) * sizeof *len);
    rp_client *pub = new_client(), *c = new_client();
    rp_subscription *s;
    rp_pubsub_message m;
    rp_error e;
    const char *one[1];
    size_t onel[1];
    ll l;
    for (i = 0; i < max; i++) {
        len[i] = (size_t)snprintf(names + i * 8, 8, "c%zu", i);
        p[i] = names + i * 8;
    }
    memset(longest, 'L', RP_PUBSUB_CHANNEL_MAX + 1);
    s = new_sub(c, max, p, len, 0, NULL, NULL);
    listen_on(&l, c, s);
    for (i = 0; i < max; i++) {
        RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_subscription_message(l.op, &m) == RP_OK,
                 "confirmation %zu", i);
        RP_CHECK(m.kind == RP_PUBSUB_SUBSCRIBE && m.count == (int64_t)i + 1, "confirmation");
    }
    RP_CHECK(publish(pub, S("c9999"), S("last")) == 1, "the last channel");
    EXPECT_MESSAGE(&l, "c9999", "last");
    /* one more is refused before any I/O; making room lets the longest name in */
    one[0] = longest;
    onel[0] = RP_PUBSUB_CHANNEL_MAX;
    RP_CHECK(rp_subscription_subscribe(s, 1, NAMES(one), onel, 0, NULL, NULL, &e) == RP_EINVAL,
             "over the limit");
    RP_CHECK(rp_subscription_unsubscribe(s, 1, NAMES(p), len, 0, NULL, NULL, NULL) == RP_OK,
             "make room");
    RP_CHECK(rp_subscription_subscribe(s, 1, NAMES(one), onel, 0, NULL, NULL, &e) == RP_OK,
             "the longest channel: %s", e.message);
    /* the two changes go in one step: the unsubscribe and the subscribe, either order */
    for (i = 0; i < 2; i++) {
        RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_subscription_message(l.op, &m) == RP_OK,
                 "change %zu", i);
        RP_CHECK((m.kind == RP_PUBSUB_SUBSCRIBE && m.channel_len == RP_PUBSUB_CHANNEL_MAX) ||
                 (m.kind == RP_PUBSUB_UNSUBSCRIBE && same(m.channel, m.channel_len, "c0", 2)),
                 "change %zu: %s", i, rp_pubsub_kind_name(m.kind));
    }
    RP_CHECK(publish(pub, longest, RP_PUBSUB_CHANNEL_MAX, S("long")) == 1, "longest channel");
    expect_msg(&l, RP_PUBSUB_MESSAGE, longest, RP_PUBSUB_CHANNEL_MAX, NULL, 0, S("long"), 0,
               __LINE__);
    {
        int64_t n;
        RP_CHECK(rp_pubsub_publish(pub, longest, RP_PUBSUB_CHANNEL_MAX + 1, "x", 1, &n, &e) ==
                 RP_EINVAL, "a channel one byte too long");
    }
    ll_free(&l);
    rp_subscription_free(s);
    rp_client_free(c);
    rp_client_free(pub);
    free(names);
    free(longest);
    free(p);
    free(len);
}

/* The generic path: descriptors make the subscription and begin the op; messages are read
 * with rp_op_message. */
static void test_descriptors(void)
{
    const rp_op_desc *dn = rp_desc_find(S("subscription.new"));
    const rp_op_desc *dl = rp_desc_find(S("subscription.listen"));
    const rp_op_desc *dp = rp_desc_find(S("pubsub.publish"));
    rp_client *pub = new_client(), *c = new_client();
    rp_value args[RP_DESC_ARGS_MAX], items[1], f[RP_DESC_FIELDS_MAX];
    void *h = NULL;
    rp_op *op = NULL;
    rp_error e;
    ll l;
    RP_CHECK(dn && dl && dp && dl->long_lived, "descriptors");
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_CLIENT, c);
    items[0] = rp_value_bytes("p?", 2);
    args[2] = rp_value_list(items, 1);
    RP_CHECK(rp_desc_make(&h, dn, args, NULL, &e) == RP_OK, "subscription.new: %s", e.message);
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_SUBSCRIPTION, h);
    RP_CHECK(rp_desc_begin(&op, dl, args, NULL, &e) == RP_OK, "listen: %s", e.message);
    ll_init(&l, c, op);
    RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_op_message(op, f) == RP_OK, "confirmation");
    RP_CHECK(f[0].type == RP_TYPE_ENUM && same(f[0].bytes, f[0].len, "psubscribe", 10) &&
             f[1].type == RP_TYPE_NONE && same(f[2].bytes, f[2].len, "p?", 2) &&
             f[3].type == RP_TYPE_NONE && f[4].i == 1, "psubscribe fields");
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_CLIENT, pub);
    args[1] = rp_value_bytes("pz", 2);
    args[2] = rp_value_bytes("d\0", 2);
    {
        rp_op *p = NULL;
        RP_CHECK(rp_desc_begin(&p, dp, args, NULL, &e) == RP_OK, "publish: %s", e.message);
        RP_CHECK(rp_client_run(pub, p, &e) == RP_OK, "publish: %s", e.message);
        RP_CHECK(rp_op_result(p, 0, f) == RP_OK && f[0].i == 1, "receivers");
        rp_op_free(p);
    }
    RP_CHECK(ll_pump(&l, WAIT_MS) == RP_OK && rp_op_message(op, f) == RP_OK, "pmessage");
    RP_CHECK(same(f[0].bytes, f[0].len, "pmessage", 8) && same(f[1].bytes, f[1].len, "pz", 2) &&
             same(f[2].bytes, f[2].len, "p?", 2) && same(f[3].bytes, f[3].len, "d\0", 2) &&
             f[4].i == 0, "pmessage fields");
    ll_free(&l);
    rp_handle_free(RP_KIND_SUBSCRIPTION, h);
    rp_client_free(c);
    rp_client_free(pub);
}

/* The blocking driver (drive.h: rp_client_pump) with short waits: a message comes through
 * many pumps that time out first, and after CLIENT KILL the backoff is honoured even though
 * the driver steps the sleeping op early (each pump's wait is shorter than the backoff). */
static void test_blocking_pump(void)
{
    const char *ch[] = { "a" };
    size_t chl[] = { 1 };
    rp_client *pub = new_client(), *c = new_client();
    rp_subscription *s = new_sub(c, 1, ch, chl, 0, NULL, NULL);
    redisContext *side = rp_hserver_connect(&srv, 2000);
    rp_pubsub_message m;
    rp_op *op = NULL;
    rp_error e;
    redisReply *r;
    long long conns;
    uint64_t killed, took;
    int rc, timeouts = 0;
    RP_CHECK(side != NULL, "side channel");
    RP_CHECK(rp_subscription_listen_op(&op, s, &e) == RP_OK, "listen op");
    RP_CHECK(rp_client_pump(c, op, WAIT_MS, NULL, &e) == RP_OK, "pump: %s", e.message);
    RP_CHECK(rp_subscription_message(op, &m) == RP_OK && m.kind == RP_PUBSUB_SUBSCRIBE,
             "confirmation");
    RP_CHECK(rp_client_pump(c, op, 50, NULL, &e) == RP_ETIMEOUT, "nothing yet");
    RP_CHECK(publish(pub, S("a"), S("via pump")) == 1, "one receiver");
    RP_CHECK(rp_client_pump(c, op, WAIT_MS, NULL, &e) == RP_OK &&
             rp_subscription_message(op, &m) == RP_OK &&
             same(m.data, m.data_len, "via pump", 8), "message: %s", e.message);
    conns = rp_hinfo_ll(side, "stats", "total_connections_received");
    r = rp_hcmd(side, "CLIENT KILL TYPE pubsub");
    RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "killed one client");
    freeReplyObject(r);
    killed = rp_monotonic_ms();
    while ((rc = rp_client_pump(c, op, 5, NULL, &e)) == RP_ETIMEOUT)
        timeouts++;
    took = rp_monotonic_ms() - killed;
    RP_CHECK(rc == RP_OK && rp_subscription_message(op, &m) == RP_OK &&
             m.kind == RP_PUBSUB_RECONNECT, "reconnect: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(took >= RP_SUBSCRIPTION_BACKOFF_MIN_MS / 2 && timeouts >= 3,
             "reconnected after %llu ms and %d short pumps: the backoff was cut short",
             (unsigned long long)took, timeouts);
    RP_CHECK(rp_hinfo_ll(side, "stats", "total_connections_received") == conns + 1,
             "one new connection for the reconnect");
    RP_CHECK(publish(pub, S("a"), S("again")) == 1, "subscribed again");
    RP_CHECK(rp_client_pump(c, op, WAIT_MS, NULL, &e) == RP_OK &&
             rp_subscription_message(op, &m) == RP_OK && m.kind == RP_PUBSUB_MESSAGE,
             "message after the reconnect");
    rp_op_free(op);
    redisFree(side);
    rp_subscription_free(s);
    rp_client_free(c);
    rp_client_free(pub);
}

#define RUN(test) (test(), printf("  ok %s\n", #test))

int main(void)
{
    rp_harness_watchdog(120);
    RP_CHECK(rp_hserver_start(&srv, 0) == 0, "redis-server");
    RUN(test_publish_without_subscribers);
    RUN(test_messages_and_changes);
    RUN(test_reconnect_after_kill);
    RUN(test_two_listeners);
    RUN(test_limits);
    RUN(test_descriptors);
    RUN(test_blocking_pump);
    RUN(test_reconnect_after_outage); /* last: it stops and restarts the server */
    rp_hserver_destroy(&srv);
    printf("test_pubsub: all passed\n");
    return 0;
}
