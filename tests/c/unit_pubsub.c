/* Unit tests of Pub/Sub: publish, the subscription's wanted sets, and the listen op driven
 * by hand with canned pushes (rp_op_feed), failures and a fake clock. No server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "unit_util.h"

#define NAMES(a) ((const void *const *)(a))

static rp_client *offline_client(void) { return unit_client(NULL); }

/* The request bytes of the current IO step equal want[0..n). */
static int request_is_n(rp_op *op, const char *want, size_t n)
{
    const char *bytes;
    size_t len;
    if (rp_op_request(op, 0, &bytes, &len) != RP_OK)
        return 0;
    if (len != n || (n && memcmp(bytes, want, n) != 0)) {
        fprintf(stderr, "  request was: %.*s\n", (int)len, bytes ? bytes : "");
        return 0;
    }
    return 1;
}

static int request_is(rp_op *op, const char *want) { return request_is_n(op, want, strlen(want)); }

static int feed_n(rp_op *op, const char *s, size_t n) { return rp_op_feed(op, 0, s, n); }
static int feed(rp_op *op, const char *s) { return feed_n(op, s, strlen(s)); }

static int bytes_eq(const char *p, size_t len, const char *want, size_t n)
{
    return p && len == n && memcmp(p, want, n) == 0;
}

/* The op EMITs next: kind, channel (NULL: absent), pattern, data, count. */
static int emits(rp_op *op, uint64_t now, rp_pubsub_kind kind, const char *channel,
                 const char *pattern, const char *data, size_t data_len, int64_t count)
{
    rp_pubsub_message m;
    rp_step st = rp_op_step(op, now);
    int ok;
    if (st != RP_STEP_EMIT) {
        fprintf(stderr, "  step was %d, not EMIT (%s)\n", (int)st,
                st == RP_STEP_ERROR ? rp_op_error(op)->message : "");
        return 0;
    }
    if (rp_subscription_message(op, &m) != RP_OK)
        return 0;
    ok = m.kind == kind && m.count == count;
    ok = ok && (channel ? bytes_eq(m.channel, m.channel_len, channel, strlen(channel))
                        : m.channel == NULL && m.channel_len == 0);
    ok = ok && (pattern ? bytes_eq(m.pattern, m.pattern_len, pattern, strlen(pattern))
                        : m.pattern == NULL && m.pattern_len == 0);
    ok = ok && (data ? bytes_eq(m.data, m.data_len, data, data_len)
                     : m.data == NULL && m.data_len == 0);
    if (!ok)
        fprintf(stderr, "  emitted kind %s channel %.*s count %lld\n",
                rp_pubsub_kind_name(m.kind), (int)m.channel_len, m.channel ? m.channel : "",
                (long long)m.count);
    return ok;
}

/* The op listens next, sending want (may be ""). */
static int listens(rp_op *op, uint64_t now, const char *want)
{
    rp_step st = rp_op_step(op, now);
    if (st != RP_STEP_IO) {
        fprintf(stderr, "  step was %d, not IO (%s)\n", (int)st,
                st == RP_STEP_ERROR ? rp_op_error(op)->message : "");
        return 0;
    }
    return rp_op_listening(op, 0) && request_is(op, want);
}

/* --- publish ------------------------------------------------------------------------ */

static void test_publish(void)
{
    rp_client *c = offline_client();
    rp_op *op;
    int64_t n = -1;
    rp_error e;
    static const char bin[] = "a\0b\r\nc";
    CHECK(rp_pubsub_publish_op(&op, c, "ch", 2, "hello", 5, &e) == RP_OK);
    CHECK(rp_pubsub_publish_result(op, &n) == RP_ESTATE);
    CHECK(rp_op_long_lived(op) == 0);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_is(op, "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n"));
    CHECK(feed(op, ":") == RP_MORE);
    CHECK(feed(op, "3\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_DONE);
    CHECK(rp_pubsub_publish_result(op, &n) == RP_OK && n == 3);
    rp_op_free(op);

    /* binary channel and payload, byte-exact on the wire; an empty payload is fine */
    CHECK(rp_pubsub_publish_op(&op, c, bin, 6, bin, 6, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_is_n(op, "*3\r\n$7\r\nPUBLISH\r\n$6\r\na\0b\r\nc\r\n$6\r\na\0b\r\nc\r\n", 41));
    rp_op_free(op);
    CHECK(rp_pubsub_publish_op(&op, c, "ch", 2, NULL, 0, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(request_is(op, "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$0\r\n\r\n"));
    CHECK(feed(op, "-ERR nope\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EREPLY);
    rp_op_free(op);
    CHECK(rp_pubsub_publish_op(&op, c, "ch", 2, "x", 1, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_IO);
    CHECK(feed(op, "+OK\r\n") == RP_OK);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    rp_op_free(op);
    rp_client_free(c);
}

static void test_publish_bad_input(void)
{
    rp_client *c = offline_client();
    rp_op *op = (rp_op *)1;
    rp_error e;
    char *big = calloc(1, RP_PUBSUB_CHANNEL_MAX + 1);
    memset(big, 'x', RP_PUBSUB_CHANNEL_MAX + 1);
    CHECK(rp_pubsub_publish_op(&op, c, "", 0, "m", 1, &e) == RP_EINVAL && op == NULL);
    CHECK(strstr(e.message, "channel") != NULL);
    CHECK(rp_pubsub_publish_op(&op, c, big, RP_PUBSUB_CHANNEL_MAX + 1, "m", 1, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "channel must be 1..65536 bytes (got 65537)") != NULL);
    CHECK(rp_pubsub_publish_op(&op, c, big, RP_PUBSUB_CHANNEL_MAX, "m", 1, &e) == RP_OK);
    rp_op_free(op);
    CHECK(rp_pubsub_publish_op(&op, c, "ch", 2, NULL, 3, &e) == RP_EINVAL);
    CHECK(rp_pubsub_publish_op(&op, NULL, "ch", 2, "m", 1, &e) == RP_EINVAL);
    free(big);
    rp_client_free(c);
}

/* --- the wanted sets ----------------------------------------------------------------- */

static int channel_is(const rp_subscription *s, size_t i, const char *want, size_t n)
{
    size_t len = 0;
    const char *p = rp_subscription_channel_at(s, i, &len);
    return bytes_eq(p, len, want, n);
}

static void test_wanted_sets(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = (rp_subscription *)1;
    rp_error e;
    const char *ch[] = { "b", "a", "b", "a\0z" };
    size_t chl[] = { 1, 1, 1, 3 };
    const char *pt[] = { "n*" };
    size_t ptl[] = { 2 };
    const char *p0;
    size_t len;
    CHECK(rp_subscription_new(&s, c, 4, NAMES(ch), chl, 1, NAMES(pt), ptl, &e) == RP_OK);
    CHECK(rp_subscription_client(s) == c);
    /* duplicates count once; byte-wise order, binary-safe */
    CHECK(rp_subscription_channels(s) == 3 && rp_subscription_patterns(s) == 1);
    CHECK(channel_is(s, 0, "a", 1) && channel_is(s, 1, "a\0z", 3) && channel_is(s, 2, "b", 1));
    CHECK(rp_subscription_channel_at(s, 3, &len) == NULL && len == 0);
    p0 = rp_subscription_pattern_at(s, 0, &len);
    CHECK(bytes_eq(p0, len, "n*", 2));

    /* unsubscribe named ones, unknown ones ignored */
    {
        const char *drop[] = { "a", "zzz" };
        size_t dropl[] = { 1, 3 };
        CHECK(rp_subscription_unsubscribe(s, 2, NAMES(drop), dropl, 0, NULL, NULL, &e) == RP_OK);
        CHECK(rp_subscription_channels(s) == 2 && channel_is(s, 0, "a\0z", 3));
        CHECK(rp_subscription_patterns(s) == 1);
    }
    /* nothing given: everything */
    CHECK(rp_subscription_unsubscribe(s, 0, NULL, NULL, 0, NULL, NULL, &e) == RP_OK);
    CHECK(rp_subscription_channels(s) == 0 && rp_subscription_patterns(s) == 0);
    CHECK(rp_subscription_subscribe(s, 1, NAMES(ch), chl, 0, NULL, NULL, &e) == RP_OK);
    CHECK(rp_subscription_channels(s) == 1);

    /* bad names: nothing changes */
    {
        const char *bad[] = { "ok", "" };
        size_t badl[] = { 2, 0 };
        CHECK(rp_subscription_subscribe(s, 2, NAMES(bad), badl, 0, NULL, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "channels[1] must not be empty") != NULL);
        CHECK(rp_subscription_channels(s) == 1);
        CHECK(rp_subscription_subscribe(s, 0, NULL, NULL, 2, NAMES(bad), badl, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "patterns[1]") != NULL);
        CHECK(rp_subscription_subscribe(s, 2, NULL, NULL, 0, NULL, NULL, &e) == RP_EINVAL);
        CHECK(rp_subscription_unsubscribe(s, 2, NAMES(bad), badl, 0, NULL, NULL, &e) == RP_EINVAL);
        CHECK(rp_subscription_channels(s) == 1);
    }
    rp_subscription_free(s);
    s = (rp_subscription *)1;
    CHECK(rp_subscription_new(&s, NULL, 0, NULL, NULL, 0, NULL, NULL, &e) == RP_EINVAL && !s);
    CHECK(rp_subscription_new(&s, c, 0, NULL, NULL, 0, NULL, NULL, &e) == RP_OK);
    rp_subscription_free(s);
    rp_subscription_free(NULL);
    rp_client_free(c);
}

/* The limits, at the edge: name lengths, and the names one subscription may want. */
static void test_limits(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = NULL;
    rp_error e;
    size_t i, max = RP_SUBSCRIPTION_NAMES_MAX;
    char *names = malloc(max * 8 + 8);
    const char **p = malloc((max + 1) * sizeof *p);
    size_t *l = malloc((max + 1) * sizeof *l);
    char *big = malloc(RP_PUBSUB_PATTERN_MAX + 1);
    const char *one[1];
    size_t onel[1];
    memset(big, '*', RP_PUBSUB_PATTERN_MAX + 1);
    for (i = 0; i <= max; i++) {
        l[i] = (size_t)snprintf(names + i * 8, 8, "c%zu", i);
        p[i] = names + i * 8;
    }
    one[0] = big;
    onel[0] = RP_PUBSUB_PATTERN_MAX + 1;
    CHECK(rp_subscription_new(&s, c, 0, NULL, NULL, 1, NAMES(one), onel, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "patterns[0] must be 1..65536 bytes (got 65537)") != NULL);
    onel[0] = RP_PUBSUB_PATTERN_MAX;
    CHECK(rp_subscription_new(&s, c, 1, NAMES(one), onel, 1, NAMES(one), onel, &e) == RP_OK);
    rp_subscription_free(s);

    CHECK(rp_subscription_new(&s, c, max + 1, NAMES(p), l, 0, NULL, NULL, &e) == RP_EINVAL);
    CHECK(rp_subscription_new(&s, c, max, NAMES(p), l, 0, NULL, NULL, &e) == RP_OK);
    CHECK(rp_subscription_channels(s) == max);
    /* one more in all (a pattern) is refused, and nothing is added */
    one[0] = "p*";
    onel[0] = 2;
    CHECK(rp_subscription_subscribe(s, 1, NAMES(p), l, 1, NAMES(one), onel, &e) == RP_EINVAL);
    CHECK(strstr(e.message, "at most 10000") != NULL);
    CHECK(rp_subscription_channels(s) == max && rp_subscription_patterns(s) == 0);
    /* a name already wanted is no addition */
    CHECK(rp_subscription_subscribe(s, 1, NAMES(p), l, 0, NULL, NULL, &e) == RP_OK);
    CHECK(rp_subscription_unsubscribe(s, 1, NAMES(p), l, 0, NULL, NULL, &e) == RP_OK);
    CHECK(rp_subscription_subscribe(s, 0, NULL, NULL, 1, NAMES(one), onel, &e) == RP_OK);
    CHECK(rp_subscription_channels(s) + rp_subscription_patterns(s) == max);
    rp_subscription_free(s);
    free(names);
    free(p);
    free(l);
    free(big);
    rp_client_free(c);
}

/* --- the listen op ------------------------------------------------------------------- */

static rp_subscription *sub_of(rp_client *c, const char *ch1, const char *ch2, const char *pat)
{
    const char *ch[2];
    size_t chl[2], n = 0;
    const char *pt[1];
    size_t ptl[1];
    rp_subscription *s = NULL;
    if (ch1) { ch[n] = ch1; chl[n++] = strlen(ch1); }
    if (ch2) { ch[n] = ch2; chl[n++] = strlen(ch2); }
    if (pat) { pt[0] = pat; ptl[0] = strlen(pat); }
    CHECK(rp_subscription_new(&s, c, n, NAMES(ch), chl, pat ? 1 : 0, NAMES(pt), ptl, NULL) == RP_OK);
    return s;
}

#define SUB_A_B "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"
#define PSUB_P "*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\np*\r\n"
#define CONF_A "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
#define CONF_B "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
#define CONF_P "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n"

/* Takes a fresh listen op on a/b/p* to the point where all three are confirmed. */
static void to_confirmed(rp_op *op)
{
    CHECK(listens(op, 0, SUB_A_B PSUB_P));
    CHECK(feed(op, CONF_A CONF_B CONF_P) == RP_OK);
    CHECK(emits(op, 1, RP_PUBSUB_SUBSCRIBE, "a", NULL, NULL, 0, 1));
    CHECK(emits(op, 1, RP_PUBSUB_SUBSCRIBE, "b", NULL, NULL, 0, 2));
    CHECK(emits(op, 1, RP_PUBSUB_PSUBSCRIBE, NULL, "p*", NULL, 0, 3));
    CHECK(listens(op, 2, ""));
}

static void test_listen_messages(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, "b", "a", "p*");
    rp_op *op;
    rp_pubsub_message m;
    static const char bin_msg[] = "*3\r\n$7\r\nmessage\r\n$3\r\na\0\n\r\n$5\r\nx\r\n\0y\r\n";
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(rp_op_long_lived(op) == 1);
    CHECK(rp_subscription_message(op, &m) == RP_ESTATE);
    to_confirmed(op);

    /* a poll (a step with nothing read) re-arms the listening round */
    CHECK(rp_op_pending(op, 0) == 1 && rp_op_round_over(op) == 0);
    CHECK(listens(op, 3, ""));
    CHECK(listens(op, 4, ""));

    /* a message split anywhere, even across a poll */
    CHECK(feed(op, "*3\r\n$7\r\nmess") == RP_MORE);
    CHECK(listens(op, 5, ""));
    CHECK(feed(op, "age\r\n$1\r\na\r\n$2\r\nhi") == RP_MORE);
    CHECK(feed(op, "\r\n") == RP_OK);
    CHECK(rp_op_round_over(op) == 1);
    CHECK(emits(op, 6, RP_PUBSUB_MESSAGE, "a", NULL, "hi", 2, 0));
    CHECK(listens(op, 7, ""));

    /* several at once: queued, emitted one at a time, in order; binary-safe */
    CHECK(feed_n(op, bin_msg, sizeof bin_msg - 1) == RP_OK);
    CHECK(feed(op, "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npq\r\n$0\r\n\r\n"
                   "*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$1\r\n2\r\n") == RP_OK);
    CHECK(rp_op_step(op, 8) == RP_STEP_EMIT);
    CHECK(rp_subscription_message(op, &m) == RP_OK);
    CHECK(m.kind == RP_PUBSUB_MESSAGE && bytes_eq(m.channel, m.channel_len, "a\0\n", 3) &&
          bytes_eq(m.data, m.data_len, "x\r\n\0y", 5) && m.pattern == NULL && m.count == 0);
    CHECK(emits(op, 8, RP_PUBSUB_PMESSAGE, "pq", "p*", "", 0, 0));
    CHECK(emits(op, 8, RP_PUBSUB_MESSAGE, "b", NULL, "2", 1, 0));
    CHECK(listens(op, 9, ""));
    CHECK(rp_subscription_message(op, &m) == RP_ESTATE);

    /* a pong nobody asked for is dropped */
    CHECK(feed(op, "*2\r\n$4\r\npong\r\n$0\r\n\r\n") == RP_OK);
    CHECK(listens(op, 10, ""));
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

static void test_listen_changes(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, "a", "b", "p*");
    rp_op *op;
    const char *bname[] = { "b" }, *cname[] = { "c", "d" }, *pname[] = { "p*" };
    size_t one[] = { 1 }, two[] = { 1, 1 }, plen[] = { 2 };
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    to_confirmed(op);

    /* the change goes at the next step (a poll), in a listening round */
    CHECK(rp_subscription_unsubscribe(s, 1, NAMES(bname), one, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 3, "*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nb\r\n"));
    CHECK(listens(op, 4, "")); /* sent once */
    CHECK(feed(op, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:2\r\n") == RP_OK);
    CHECK(emits(op, 5, RP_PUBSUB_UNSUBSCRIBE, "b", NULL, NULL, 0, 2));

    /* subscribe more, and take back what was not sent yet: nothing goes */
    CHECK(rp_subscription_subscribe(s, 2, NAMES(cname), two, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(rp_subscription_unsubscribe(s, 1, NAMES(cname + 1), one, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 6, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"));
    CHECK(feed(op, "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:3\r\n") == RP_OK);
    CHECK(emits(op, 7, RP_PUBSUB_SUBSCRIBE, "c", NULL, NULL, 0, 3));

    /* patterns, and a change made while messages are still being emitted waits for them */
    CHECK(listens(op, 7, ""));
    CHECK(feed(op, "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\n1\r\n") == RP_OK);
    CHECK(rp_subscription_unsubscribe(s, 0, NULL, NULL, 1, NAMES(pname), plen, NULL) == RP_OK);
    CHECK(emits(op, 8, RP_PUBSUB_MESSAGE, "c", NULL, "1", 1, 0));
    CHECK(listens(op, 9, "*2\r\n$12\r\nPUNSUBSCRIBE\r\n$2\r\np*\r\n"));
    CHECK(feed(op, "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:2\r\n") == RP_OK);
    CHECK(emits(op, 10, RP_PUBSUB_PUNSUBSCRIBE, NULL, "p*", NULL, 0, 2));

    /* everything: both kinds go, named */
    CHECK(rp_subscription_unsubscribe(s, 0, NULL, NULL, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 11, "*3\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n$1\r\nc\r\n"));
    CHECK(feed(op, "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"
                   "*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n") == RP_OK);
    CHECK(emits(op, 12, RP_PUBSUB_UNSUBSCRIBE, "a", NULL, NULL, 0, 1));
    CHECK(emits(op, 12, RP_PUBSUB_UNSUBSCRIBE, "c", NULL, NULL, 0, 0));
    /* a nil name (UNSUBSCRIBE of nothing) is absent */
    CHECK(listens(op, 13, ""));
    CHECK(feed(op, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n") == RP_OK);
    CHECK(emits(op, 14, RP_PUBSUB_UNSUBSCRIBE, NULL, NULL, NULL, 0, 0));
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

/* Nothing wanted yet: the op just listens, and subscribes once something is wanted. */
static void test_listen_starting_empty(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, NULL, NULL, NULL);
    rp_op *op;
    const char *x[] = { "x" };
    size_t xl[] = { 1 };
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, 0, ""));
    CHECK(listens(op, 1, ""));
    CHECK(rp_subscription_subscribe(s, 1, NAMES(x), xl, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 2, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nx\r\n"));
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

static void test_listen_reconnects(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, "a", "b", "p*");
    rp_op *op;
    uint64_t ms;
    const char *x[] = { "x" };
    size_t xl[] = { 1 };
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    to_confirmed(op);

    /* a message, then the connection drops in the same round: the message still comes */
    CHECK(feed(op, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n1\r\n") == RP_OK);
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection lost reading");
    CHECK(emits(op, 10, RP_PUBSUB_MESSAGE, "a", NULL, "1", 1, 0));
    CHECK(rp_op_step(op, 11) == RP_STEP_SLEEP);
    ms = rp_op_sleep_ms(op);
    CHECK(ms >= RP_SUBSCRIPTION_BACKOFF_MIN_MS / 2 && ms <= RP_SUBSCRIPTION_BACKOFF_MIN_MS);

    /* everything again on the fresh connection, with a change made meanwhile */
    CHECK(rp_subscription_subscribe(s, 1, NAMES(x), xl, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 100, "*4\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nx\r\n" PSUB_P));
    /* a message that comes before the server has confirmed all waits behind the notice */
    CHECK(feed(op, CONF_A "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\n2\r\n") == RP_OK);
    CHECK(listens(op, 101, ""));
    CHECK(feed(op, CONF_B "*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:3\r\n") == RP_OK);
    CHECK(listens(op, 102, ""));
    CHECK(feed(op, "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:4\r\n") == RP_OK);
    /* exactly one reconnect, no confirmations of the re-subscription, then the message */
    CHECK(emits(op, 103, RP_PUBSUB_RECONNECT, NULL, NULL, NULL, 0, 0));
    CHECK(emits(op, 103, RP_PUBSUB_MESSAGE, "a", NULL, "2", 1, 0));
    CHECK(listens(op, 104, ""));
    /* later changes are confirmed as usual */
    CHECK(rp_subscription_unsubscribe(s, 1, NAMES(x), xl, 0, NULL, NULL, NULL) == RP_OK);
    CHECK(listens(op, 105, "*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nx\r\n"));
    CHECK(feed(op, "*3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:3\r\n") == RP_OK);
    CHECK(emits(op, 106, RP_PUBSUB_UNSUBSCRIBE, "x", NULL, NULL, 0, 3));
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

/* Failures in a row: the backoff doubles from 50 ms up to 2 s, each jittered to [d/2, d];
 * a timeout counts as a dropped connection; success starts it over. */
static void test_listen_backoff(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, "a", NULL, NULL);
    rp_op *op;
    uint64_t now = 0, d = RP_SUBSCRIPTION_BACKOFF_MIN_MS;
    int i;
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, now, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
    for (i = 0; i < 9; i++) {
        uint64_t ms;
        rp_op_fail_node(op, 0, i % 2 ? RP_ETIMEOUT : RP_ETRANSPORT, "cannot connect");
        CHECK(rp_op_step(op, now) == RP_STEP_SLEEP);
        ms = rp_op_sleep_ms(op);
        CHECK(ms >= d / 2 && ms <= d);
        now += ms;
        CHECK(listens(op, now, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
        d = d * 2 > RP_SUBSCRIPTION_BACKOFF_MAX_MS ? RP_SUBSCRIPTION_BACKOFF_MAX_MS : d * 2;
    }
    CHECK(d == RP_SUBSCRIPTION_BACKOFF_MAX_MS);
    /* a driver that steps before the backoff is over is told to sleep the rest */
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "cannot connect");
    CHECK(rp_op_step(op, now) == RP_STEP_SLEEP);
    {
        uint64_t ms = rp_op_sleep_ms(op);
        CHECK(ms >= RP_SUBSCRIPTION_BACKOFF_MAX_MS / 2);
        CHECK(rp_op_step(op, now + 10) == RP_STEP_SLEEP && rp_op_sleep_ms(op) == ms - 10);
        now += ms;
    }
    CHECK(listens(op, now, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
    CHECK(feed(op, CONF_A) == RP_OK);
    CHECK(emits(op, now, RP_PUBSUB_RECONNECT, NULL, NULL, NULL, 0, 0));
    CHECK(listens(op, now, ""));
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "closed by peer");
    CHECK(rp_op_step(op, now) == RP_STEP_SLEEP);
    CHECK(rp_op_sleep_ms(op) <= RP_SUBSCRIPTION_BACKOFF_MIN_MS);
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

/* Nothing wanted when the connection drops: a PING proves the new one before "reconnect". */
static void test_listen_reconnect_with_nothing_wanted(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, NULL, NULL, NULL);
    rp_op *op;
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, 0, ""));
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "closed by peer");
    CHECK(rp_op_step(op, 1) == RP_STEP_SLEEP);
    CHECK(listens(op, 100, "*1\r\n$4\r\nPING\r\n"));
    CHECK(feed(op, "+PONG\r\n") == RP_OK);
    CHECK(emits(op, 101, RP_PUBSUB_RECONNECT, NULL, NULL, NULL, 0, 0));
    CHECK(listens(op, 102, ""));
    /* the PING failed too: once more */
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "closed by peer");
    CHECK(rp_op_step(op, 103) == RP_STEP_SLEEP);
    CHECK(listens(op, 200, "*1\r\n$4\r\nPING\r\n"));
    rp_op_fail_node(op, 0, RP_ETRANSPORT, "connection refused");
    CHECK(rp_op_step(op, 201) == RP_STEP_SLEEP);
    /* the second backoff in a row is jittered within [50, 100] ms: step past it */
    CHECK(listens(op, 400, "*1\r\n$4\r\nPING\r\n"));
    CHECK(feed(op, "*2\r\n$4\r\npong\r\n$0\r\n\r\n") == RP_OK);
    CHECK(emits(op, 401, RP_PUBSUB_RECONNECT, NULL, NULL, NULL, 0, 0));
    CHECK(listens(op, 402, ""));
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

/* Whatever is not a push of the expected shape fails the op, naming what came. */
static void test_listen_bad_pushes(void)
{
    static const struct {
        const char *bytes;
        int code;
        const char *says;
    } cases[] = {
        { "*3\r\n$5\r\nhello\r\n$1\r\na\r\n:1\r\n", RP_EPROTOCOL, "unexpected push \"hello\" with 3 elements" },
        { "*2\r\n$7\r\nmessage\r\n$1\r\na\r\n", RP_EPROTOCOL, "\"message\" with 2 elements" },
        { "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n:5\r\n", RP_EPROTOCOL, "\"message\"" },
        { "*4\r\n$8\r\npmessage\r\n$1\r\na\r\n$1\r\nb\r\n*0\r\n", RP_EPROTOCOL, "\"pmessage\"" },
        { "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n$1\r\n1\r\n", RP_EPROTOCOL, "\"subscribe\"" },
        { "*0\r\n", RP_EPROTOCOL, "array of 0 elements" },
        { "*1\r\n:1\r\n", RP_EPROTOCOL, "array of 1 elements" },
        { ":42\r\n", RP_EPROTOCOL, "unexpected integer 42" },
        { "+OK\r\n", RP_EPROTOCOL, "unexpected a status \"OK\"" },
        { "$3\r\na\x01z\r\n", RP_EPROTOCOL, "\"a\\x01z\"" },
        { "$-1\r\n", RP_EPROTOCOL, "unexpected nil" },
        { "-NOPERM no permissions to access a channel\r\n", RP_EREPLY, "NOPERM no permissions" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_client *c = offline_client();
        rp_subscription *s = sub_of(c, "a", NULL, NULL);
        rp_op *op;
        CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
        CHECK(listens(op, 0, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
        CHECK(feed(op, cases[i].bytes) == RP_OK);
        CHECK(rp_op_step(op, 1) == RP_STEP_ERROR);
        CHECK(rp_op_error(op)->code == cases[i].code);
        if (!strstr(rp_op_error(op)->message, cases[i].says)) {
            failures++;
            fprintf(stderr, "case %zu: message \"%s\" lacks \"%s\"\n", i,
                    rp_op_error(op)->message, cases[i].says);
        }
        CHECK(rp_op_step(op, 2) == RP_STEP_ERROR);
        rp_op_free(op);
        rp_subscription_free(s);
        rp_client_free(c);
    }
}

/* Bytes that are not RESP, or a failure that reconnecting cannot fix, fail the op. */
static void test_listen_fatal_node_failures(void)
{
    rp_client *c = offline_client();
    rp_subscription *s = sub_of(c, "a", NULL, NULL);
    rp_op *op;
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, 0, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
    CHECK(feed(op, "@garbage\r\n") == RP_EPROTOCOL);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EPROTOCOL);
    CHECK(strstr(rp_op_error(op)->message, "subscription.listen: bad message") != NULL);
    rp_op_free(op);

    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, 0, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
    rp_op_fail_node(op, 0, RP_EREPLY, "AUTH failed: WRONGPASS");
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_EREPLY);
    CHECK(strstr(rp_op_error(op)->message, "WRONGPASS") != NULL);
    rp_op_free(op);

    /* cancelled: ends at its next step */
    CHECK(rp_subscription_listen_op(&op, s, NULL) == RP_OK);
    CHECK(listens(op, 0, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"));
    rp_op_fail_node(op, 0, RP_ECANCELED, "cancelled");
    rp_op_cancel(op);
    CHECK(rp_op_step(op, 1) == RP_STEP_ERROR && rp_op_error(op)->code == RP_ECANCELED);
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(c);
}

/* --- descriptors ---------------------------------------------------------------------- */

static const rp_op_desc *find(const char *name) { return rp_desc_find(name, strlen(name)); }

static void test_descriptors(void)
{
    rp_client *c = offline_client();
    const rp_op_desc *dn = find("subscription.new"), *dl = find("subscription.listen");
    const rp_op_desc *ds = find("subscription.subscribe"), *du = find("subscription.unsubscribe");
    const rp_op_desc *dp = find("pubsub.publish");
    rp_value args[RP_DESC_ARGS_MAX], items[2], fields[RP_DESC_FIELDS_MAX];
    rp_subscription *s = NULL;
    rp_op *op = NULL;
    rp_error e;
    void *h = NULL;
    CHECK(dn && dl && ds && du && dp);
    if (!dn || !dl || !ds || !du || !dp)
        return;
    CHECK(dn->makes == RP_KIND_SUBSCRIPTION && dn->io == 0);
    CHECK(dl->long_lived == 1 && dl->nmessage_fields == 5 && dl->message != NULL);
    CHECK(strcmp(dl->message_fields[0].name, "kind") == 0 &&
          dl->message_fields[0].type == RP_TYPE_ENUM);
    CHECK(ds->io == 0 && du->io == 0 && ds->kind == RP_KIND_SUBSCRIPTION);
    CHECK(rp_desc_arg_index(ds, "subscription") == 0);

    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_CLIENT, c);
    items[0] = rp_value_bytes("a", 1);
    args[1] = rp_value_list(items, 1);
    CHECK(rp_desc_make(&h, dn, args, NULL, &e) == RP_OK);
    s = h;
    CHECK(rp_handle_client(RP_KIND_SUBSCRIPTION, s) == c);
    CHECK(rp_subscription_channels(s) == 1);

    /* subscribe / unsubscribe: ops without I/O */
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_SUBSCRIPTION, s);
    items[0] = rp_value_bytes("p*", 2);
    args[2] = rp_value_list(items, 1);
    CHECK(rp_desc_begin(&op, ds, args, NULL, &e) == RP_OK);
    CHECK(rp_op_step(op, 0) == RP_STEP_DONE);
    rp_op_free(op);
    CHECK(rp_subscription_patterns(s) == 1);

    /* listen through the generic reader */
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_SUBSCRIPTION, s);
    CHECK(rp_desc_begin(&op, dl, args, NULL, &e) == RP_OK);
    CHECK(rp_op_long_lived(op) == 1);
    CHECK(listens(op, 0, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n" PSUB_P));
    CHECK(rp_op_message(op, fields) == RP_ESTATE);
    {
        static const char pm[] = "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npz\r\n$3\r\nx\0y\r\n";
        CHECK(feed_n(op, pm, sizeof pm - 1) == RP_OK);
    }
    CHECK(rp_op_step(op, 1) == RP_STEP_EMIT);
    CHECK(rp_op_message(op, fields) == RP_OK);
    CHECK(fields[0].type == RP_TYPE_ENUM && fields[0].i == RP_PUBSUB_PMESSAGE &&
          bytes_eq(fields[0].bytes, fields[0].len, "pmessage", 8));
    CHECK(fields[1].type == RP_TYPE_BYTES && bytes_eq(fields[1].bytes, fields[1].len, "pz", 2));
    CHECK(fields[2].type == RP_TYPE_BYTES && bytes_eq(fields[2].bytes, fields[2].len, "p*", 2));
    CHECK(fields[3].type == RP_TYPE_BYTES && bytes_eq(fields[3].bytes, fields[3].len, "x\0y", 3));
    CHECK(fields[4].type == RP_TYPE_INT && fields[4].i == 0);
    CHECK(feed(op, "x") == RP_ESTATE); /* no feeding outside IO */
    CHECK(listens(op, 2, ""));
    CHECK(feed(op, CONF_A) == RP_OK);
    CHECK(rp_op_step(op, 3) == RP_STEP_EMIT && rp_op_message(op, fields) == RP_OK);
    CHECK(fields[0].i == RP_PUBSUB_SUBSCRIBE && fields[2].type == RP_TYPE_NONE &&
          fields[3].type == RP_TYPE_NONE && fields[4].i == 1);

    /* unsubscribe with both lists absent: everything, sent at the listen op's next step */
    {
        rp_op *u = NULL;
        memset(args, 0, sizeof args);
        args[0] = rp_value_handle(RP_KIND_SUBSCRIPTION, s);
        CHECK(rp_desc_begin(&u, du, args, NULL, &e) == RP_OK);
        CHECK(rp_op_step(u, 0) == RP_STEP_DONE);
        rp_op_free(u);
        CHECK(rp_subscription_channels(s) == 0 && rp_subscription_patterns(s) == 0);
    }
    CHECK(listens(op, 4, "*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n"
                         "*2\r\n$12\r\nPUNSUBSCRIBE\r\n$2\r\np*\r\n"));
    rp_op_free(op);

    /* bad input names the argument */
    {
        char *big = malloc(RP_PUBSUB_CHANNEL_MAX + 1);
        memset(big, 'c', RP_PUBSUB_CHANNEL_MAX + 1);
        memset(args, 0, sizeof args);
        args[0] = rp_value_handle(RP_KIND_CLIENT, c);
        args[1] = rp_value_bytes(big, RP_PUBSUB_CHANNEL_MAX + 1);
        args[2] = rp_value_bytes("m", 1);
        CHECK(rp_desc_begin(&op, dp, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "channel must be 1..65536 bytes") != NULL);
        args[1] = rp_value_bytes(big, RP_PUBSUB_CHANNEL_MAX);
        CHECK(rp_desc_begin(&op, dp, args, NULL, &e) == RP_OK);
        rp_op_free(op);
        args[2] = rp_value_int(RP_TYPE_NONE, 0);
        CHECK(rp_desc_begin(&op, dp, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "message is required") != NULL);
        memset(args, 0, sizeof args);
        args[0] = rp_value_handle(RP_KIND_CLIENT, c);
        items[0] = rp_value_bytes("ok", 2);
        items[1] = rp_value_bytes(big, RP_PUBSUB_CHANNEL_MAX + 1);
        args[1] = rp_value_list(items, 2);
        CHECK(rp_desc_make(&h, dn, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "channels[1] must be 1..65536 bytes") != NULL);
        items[1] = rp_value_bytes("", 0);
        args[1] = rp_value_list(items, 2);
        CHECK(rp_desc_make(&h, dn, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "channels[1] must not be empty") != NULL);
        args[1] = rp_value_bytes("a", 1);
        CHECK(rp_desc_make(&h, dn, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "channels must be a list") != NULL);
        memset(args, 0, sizeof args);
        args[0] = rp_value_handle(RP_KIND_CLIENT, c);
        CHECK(rp_desc_begin(&op, dl, args, NULL, &e) == RP_EINVAL);
        CHECK(strstr(e.message, "subscription must be a subscription") != NULL);
        free(big);
    }
    rp_handle_free(RP_KIND_SUBSCRIPTION, s);
    rp_client_free(c);
}

static void test_kind_names(void)
{
    CHECK(strcmp(rp_pubsub_kind_name(RP_PUBSUB_MESSAGE), "message") == 0);
    CHECK(strcmp(rp_pubsub_kind_name(RP_PUBSUB_PUNSUBSCRIBE), "punsubscribe") == 0);
    CHECK(strcmp(rp_pubsub_kind_name(RP_PUBSUB_RECONNECT), "reconnect") == 0);
    CHECK(rp_pubsub_kind_name((rp_pubsub_kind)7) == NULL);
    CHECK(rp_pubsub_kind_name((rp_pubsub_kind)-1) == NULL);
}

int main(void)
{
    test_publish();
    test_publish_bad_input();
    test_wanted_sets();
    test_limits();
    test_listen_messages();
    test_listen_changes();
    test_listen_starting_empty();
    test_listen_reconnects();
    test_listen_backoff();
    test_listen_reconnect_with_nothing_wanted();
    test_listen_bad_pushes();
    test_listen_fatal_node_failures();
    test_descriptors();
    test_kind_names();
    printf("unit_pubsub: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
