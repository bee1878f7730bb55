/* The blocking transport's parallel rounds and the blocking driver (drive.h), against five
 * real redis-server processes:
 *   - a 5-target round costs its slowest target, not the sum (connects included);
 *   - a SIGSTOPped target times out at its per-target timeout, the others succeed;
 *   - a quorum round returns without waiting for 2 stopped servers; their connections are
 *     parked owing a reply, reused only once it has been read and dropped (the next reply
 *     is never the late one), and closed when it does not come in the next round's time;
 *   - a listening round times out with RP_ETIMEOUT and keeps its connection (and its
 *     subscription); rp_client_pump; a client's other ops never take it; disconnect is
 *     reported to the long-lived op;
 *   - rp_client_drive runs a CALL's callback in the calling thread while a helper thread
 *     steps the op over a connection of its own.
 * The ops here are test-only, built with the pattern API (op_internal.h). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <redpat/redpat.h>

#include "op_internal.h"
#include "rp_harness.h"

#define NSERVERS 5
#define URLS_MAX (NSERVERS * 64 + 8)
#define TEXT_MAX 1024 /* a CLIENT INFO line */

static rp_hserver srv[NSERVERS];

static rp_client *client_of(const char *url, uint32_t command_timeout_ms)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_error e;
    int rc;
    o.url = url;
    o.key_namespace = "rptest";
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = command_timeout_ms;
    rc = rp_client_new(&c, &o, &e);
    RP_CHECK(rc == RP_OK, "rp_client_new(%s): %s (%s)", url, rp_status_name(rc), e.message);
    return c;
}

static rp_client *client_over(size_t n, uint32_t command_timeout_ms)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    char list[URLS_MAX] = "";
    rp_client *c = NULL;
    rp_error e;
    size_t i;
    int rc;
    for (i = 0; i < n; i++) {
        if (i) strcat(list, ",");
        strcat(list, srv[i].url);
    }
    o.url = list;
    o.key_namespace = "rptest";
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = command_timeout_ms;
    rc = rp_client_new(&c, &o, &e);
    RP_CHECK(rc == RP_OK, "rp_client_new: %s (%s)", rp_status_name(rc), e.message);
    return c;
}

/* --- a test op: one command to every endpoint of its client, optionally a quorum ------ */

typedef struct each_state {
    int argc;
    const char *argv[4];
    uint64_t timeout_ms; /* per-target timeout (0: the client's command timeout) */
    size_t quorum;       /* 0: wait for every target */
    int sent;
    int status[NSERVERS];
    char why[NSERVERS][RP_ERROR_MESSAGE_MAX];
    int type[NSERVERS];
    long long integer[NSERVERS];
    char text[NSERVERS][TEXT_MAX];
} each_state;

static int each_advance(rp_op *op, void *state, uint64_t now_ms)
{
    each_state *s = state;
    size_t i, n = rp_op_nodes(op);
    int rc;
    (void)now_ms;
    if (!s->sent) {
        s->sent = 1;
        rp_op__timeout(op, s->timeout_ms);
        for (i = 0; i < n; i++)
            if ((rc = rp_op__command(op, i, s->argc, s->argv, NULL)))
                return rc;
        return RP_OK;
    }
    for (i = 0; i < n && i < NSERVERS; i++) {
        const rp_reply *r = rp_op__reply(op, i, 0);
        s->status[i] = rp_op__node_status(op, i);
        snprintf(s->why[i], sizeof s->why[i], "%s", rp_op__node_why(op, i));
        if (r) {
            s->type[i] = r->type;
            s->integer[i] = r->integer;
            if (r->str)
                snprintf(s->text[i], sizeof s->text[i], "%s", r->str);
        }
    }
    rp_op__done(op);
    return RP_OK;
}

/* Enough once quorum targets have answered (a reply is in for them). */
static int each_enough(const rp_op *op, const void *state)
{
    const each_state *s = state;
    size_t i, answered = 0;
    if (s->quorum == 0)
        return 0;
    for (i = 0; i < rp_op_nodes(op); i++)
        answered += rp_op__reply(op, i, 0) != NULL;
    return answered >= s->quorum;
}

static const rp_op_class each_class = {
    .name = "test.each",
    .state_size = sizeof(each_state),
    .advance = each_advance,
    .tolerates_node_failures = 1,
    .enough = each_enough,
};

/* Runs the command on every endpoint of c; fills *out; returns the elapsed ms. */
static uint64_t run_each(rp_client *c, int argc, const char *const *argv, uint64_t timeout_ms,
                         size_t quorum, each_state *out)
{
    rp_op *op;
    each_state *s;
    void *state;
    rp_error e;
    uint64_t t0;
    int rc, i;
    rc = rp_op__new(&op, c, &each_class, rp_client_endpoints(c), &state, &e);
    RP_CHECK(rc == RP_OK, "rp_op__new: %s", e.message);
    s = state;
    s->argc = argc;
    for (i = 0; i < argc; i++)
        s->argv[i] = argv[i];
    s->timeout_ms = timeout_ms;
    s->quorum = quorum;
    t0 = rp_harness_now_ms();
    rc = rp_client_run(c, op, &e);
    t0 = rp_harness_now_ms() - t0;
    RP_CHECK(rc == RP_OK, "test.each: %s (%s)", rp_status_name(rc), e.message);
    *out = *(const each_state *)rp_op__done_state(op, &each_class);
    rp_op_free(op);
    return t0;
}

static const char *const client_id[] = { "CLIENT", "ID" };

/* --- 1. a round costs its slowest target ---------------------------------------------- */

static void test_round_costs_the_slowest(void)
{
    static const char *const debug_sleep[] = { "DEBUG", "SLEEP", "0.1" };
    rp_client *c = client_over(NSERVERS, 2000);
    each_state s;
    uint64_t ms;
    int pass, i;
    /* Each target's own request takes 0.1 s: one after another would be >= 0.5 s. The
     * first pass also opens the five connections (in parallel too). */
    for (pass = 0; pass < 2; pass++) {
        ms = run_each(c, 3, debug_sleep, 0, 0, &s);
        for (i = 0; i < NSERVERS; i++)
            RP_CHECK(s.status[i] == RP_OK && s.type[i] == RP_REPLY_STATUS,
                     "pass %d server %d: %s %s", pass, i, rp_status_name(s.status[i]), s.why[i]);
        RP_CHECK(ms >= 95 && ms < 250, "pass %d: a round of five 0.1 s requests took %llu ms",
                 pass, (unsigned long long)ms);
        printf("round of 5 x DEBUG SLEEP 0.1 (%s connections): %llu ms\n",
               pass ? "pooled" : "fresh", (unsigned long long)ms);
    }
    /* Servers stalled from another connection just before: the round waits for them all
     * at once. */
    {
        redisContext *side[NSERVERS];
        for (i = 0; i < NSERVERS; i++) {
            int done = 0;
            side[i] = rp_hserver_connect(&srv[i], 5000);
            RP_CHECK(side[i] != NULL, "side connection %d", i);
            redisAppendCommand(side[i], "DEBUG SLEEP 0.1");
            while (!done)
                RP_CHECK(redisBufferWrite(side[i], &done) == REDIS_OK, "writing DEBUG SLEEP");
        }
        rp_harness_sleep_ms(10); /* every server is inside its sleep now */
        ms = run_each(c, 2, client_id, 0, 0, &s);
        for (i = 0; i < NSERVERS; i++) {
            void *reply = NULL;
            RP_CHECK(s.status[i] == RP_OK && s.type[i] == RP_REPLY_INTEGER, "stalled %d", i);
            RP_CHECK(redisGetReply(side[i], &reply) == REDIS_OK && reply, "DEBUG SLEEP reply");
            freeReplyObject(reply);
            redisFree(side[i]);
        }
        RP_CHECK(ms >= 50 && ms < 250, "stalled servers: %llu ms", (unsigned long long)ms);
    }
    rp_client_free(c);
}

/* --- 2. a stopped target times out, the others answer --------------------------------- */

static void test_stopped_target_times_out(void)
{
    rp_client *c = client_over(NSERVERS, 2000), *c300 = client_over(NSERVERS, 300);
    char port[16];
    each_state s;
    uint64_t ms;
    int i;
    run_each(c, 2, client_id, 0, 0, &s); /* pooled connections, so only the reply waits */
    RP_CHECK(rp_hserver_pause(&srv[2]) == 0, "SIGSTOP");
    snprintf(port, sizeof port, ":%d", srv[2].port);

    /* the op's per-target timeout */
    ms = run_each(c, 2, client_id, 200, 0, &s);
    RP_CHECK(ms >= 195 && ms < 700, "per-target timeout 200 ms: the round took %llu ms",
             (unsigned long long)ms);
    for (i = 0; i < NSERVERS; i++) {
        if (i == 2) {
            RP_CHECK(s.status[i] == RP_ETIMEOUT, "stopped server: %s", rp_status_name(s.status[i]));
            RP_CHECK(strstr(s.why[i], port) && strstr(s.why[i], "timed out after 200 ms"),
                     "the failure names the address: %s", s.why[i]);
        } else {
            RP_CHECK(s.status[i] == RP_OK && s.type[i] == RP_REPLY_INTEGER, "server %d: %s", i,
                     s.why[i]);
        }
    }
    /* no per-target timeout: the client's command timeout; fresh connections this time */
    ms = run_each(c300, 2, client_id, 0, 0, &s);
    RP_CHECK(ms >= 295 && ms < 800, "command timeout 300 ms: the round took %llu ms",
             (unsigned long long)ms);
    RP_CHECK(s.status[2] == RP_ETIMEOUT && strstr(s.why[2], "timed out after 300 ms"),
             "stopped server: %s %s", rp_status_name(s.status[2]), s.why[2]);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(i == 2 || s.status[i] == RP_OK, "server %d: %s", i, s.why[i]);

    RP_CHECK(rp_hserver_resume(&srv[2]) == 0, "SIGCONT");
    run_each(c, 2, client_id, 0, 0, &s);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(s.status[i] == RP_OK, "after SIGCONT, server %d: %s", i, s.why[i]);
    rp_client_free(c300);
    rp_client_free(c);
}

/* --- 3. a quorum round does not wait for the stopped --------------------------------- */

/* Connections the server has accepted so far (side: a connection of the test's own, kept
 * open so that asking does not count). */
static long long connections_received(redisContext *side)
{
    return rp_hinfo_ll(side, "stats", "total_connections_received");
}

static void reset_counter(void)
{
    int i;
    for (i = 0; i < NSERVERS; i++) {
        redisContext *side = rp_hserver_connect(&srv[i], 5000);
        RP_CHECK(side != NULL, "side connection %d", i);
        freeReplyObject(rp_hcmd(side, "DEL rp-par-n"));
        redisFree(side);
    }
}

static void test_quorum_abandons_the_stopped(void)
{
    static const char *const incr[] = { "INCR", "rp-par-n" };
    rp_client *c = client_over(NSERVERS, 2000);
    redisContext *side[NSERVERS];
    long long conns[NSERVERS];
    each_state s;
    uint64_t ms;
    int i;
    reset_counter();
    run_each(c, 2, client_id, 0, 0, &s); /* five pooled connections */
    for (i = 0; i < NSERVERS; i++) {
        side[i] = rp_hserver_connect(&srv[i], 5000);
        RP_CHECK(side[i] != NULL, "side connection %d", i);
        conns[i] = connections_received(side[i]);
    }

    /* 3 of 5 answer at once: the round ends there, 2 stopped servers delay nothing */
    RP_CHECK(rp_hserver_pause(&srv[3]) == 0 && rp_hserver_pause(&srv[4]) == 0, "SIGSTOP");
    ms = run_each(c, 2, incr, 1500, 3, &s);
    RP_CHECK(ms < 150, "quorum of 3 with 2 stopped took %llu ms (per-target timeout 1500)",
             (unsigned long long)ms);
    for (i = 0; i < NSERVERS; i++) {
        if (i < 3)
            RP_CHECK(s.status[i] == RP_OK && s.integer[i] == 1, "answered %d: %s", i, s.why[i]);
        else
            RP_CHECK(s.status[i] == RP_ECANCELED && strstr(s.why[i], "not waited for"),
                     "abandoned %d: %s %s", i, rp_status_name(s.status[i]), s.why[i]);
    }
    /* Their connections owe a reply: they are used again only once it has been read and
     * dropped, so the next round's reply is the next round's (2), never the late one (1),
     * and no reconnect is needed. */
    RP_CHECK(rp_hserver_resume(&srv[3]) == 0 && rp_hserver_resume(&srv[4]) == 0, "SIGCONT");
    run_each(c, 2, incr, 0, 0, &s);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(s.status[i] == RP_OK && s.integer[i] == 2, "server %d: %s, INCR gave %lld", i,
                 s.why[i], s.integer[i]);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(connections_received(side[i]) == conns[i], "server %d: no new connection", i);

    /* Still stopped at the next round: its request goes out behind the owed one, neither
     * reply comes, the target times out at its per-target timeout and the connection is
     * closed; after SIGCONT, a fresh one. */
    RP_CHECK(rp_hserver_pause(&srv[3]) == 0, "SIGSTOP");
    run_each(c, 2, incr, 1500, 3, &s); /* 3 is parked owing this INCR (-> 3) */
    RP_CHECK(s.status[3] == RP_ECANCELED, "abandoned again: %s", rp_status_name(s.status[3]));
    ms = run_each(c, 2, incr, 200, 0, &s);
    RP_CHECK(ms >= 195 && ms < 700, "waited %llu ms for the stopped one", (unsigned long long)ms);
    RP_CHECK(s.status[3] == RP_ETIMEOUT && strstr(s.why[3], "timed out after 200 ms") &&
             strstr(s.why[3], "behind the replies of an abandoned request"), "timed out: %s %s",
             rp_status_name(s.status[3]), s.why[3]);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(i == 3 || (s.status[i] == RP_OK && s.integer[i] == 4), "server %d: %s", i,
                 s.why[i]);
    RP_CHECK(rp_hserver_resume(&srv[3]) == 0, "SIGCONT");
    run_each(c, 2, incr, 0, 0, &s);
    /* server 3 ran both written INCRs (3, 4) once it woke, then this one */
    RP_CHECK(s.status[3] == RP_OK && s.integer[3] == 5, "server 3 after SIGCONT: %s %lld",
             s.why[3], s.integer[3]);
    RP_CHECK(connections_received(side[3]) == conns[3] + 1, "server 3: reconnected once");
    for (i = 0; i < NSERVERS; i++)
        redisFree(side[i]);
    rp_client_free(c);
}

/* --- 4. listening rounds ------------------------------------------------------------- */

typedef struct listen_state {
    int subscribed;
    int emit;       /* EMIT after each round that brought messages (for rp_client_pump) */
    int emitted;
    size_t messages; /* every reply so far (the subscribe confirmation included) */
    char last[TEXT_MAX];
    int done_on_quit;
} listen_state;

static int listen_advance(rp_op *op, void *state, uint64_t now_ms)
{
    static const char *const sub[] = { "SUBSCRIBE", "rp-test-chan" };
    listen_state *s = state;
    size_t i, n;
    (void)now_ms;
    if (!s->subscribed) {
        s->subscribed = 1;
        rp_op__listen(op, 0);
        return rp_op__command(op, 0, 2, sub, NULL);
    }
    if (s->emitted) {
        s->emitted = 0;
        rp_op__listen(op, 0);
        return RP_OK;
    }
    n = rp_op__replies(op, 0);
    for (i = 0; i < n; i++) {
        const rp_reply *r = rp_op__reply(op, 0, i);
        s->messages++;
        if (r && r->type == RP_REPLY_ARRAY && r->elements == 3 && r->element[2]->str) {
            snprintf(s->last, sizeof s->last, "%s", r->element[2]->str);
            if (strcmp(s->last, "quit") == 0) {
                rp_op__done(op);
                return RP_OK;
            }
        }
    }
    if (n > 0 && s->emit) {
        s->emitted = 1;
        rp_op__emit(op);
        return RP_OK;
    }
    rp_op__listen(op, 0);
    return RP_OK;
}

static const rp_op_class listen_class = {
    .name = "test.listen",
    .state_size = sizeof(listen_state),
    .advance = listen_advance,
    .long_lived = 1,
};

static rp_op *listen_op(rp_client *c, int emit, listen_state **st)
{
    rp_op *op;
    void *state;
    rp_error e;
    int rc = rp_op__new(&op, c, &listen_class, 1, &state, &e);
    RP_CHECK(rc == RP_OK, "rp_op__new: %s", e.message);
    *st = state;
    (*st)->emit = emit;
    return op;
}

static long long numsub(redisContext *side)
{
    redisReply *r = rp_hcmd(side, "PUBSUB NUMSUB rp-test-chan");
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

static void publish(redisContext *side, const char *msg)
{
    redisReply *r = rp_hcmd(side, "PUBLISH rp-test-chan %s", msg);
    RP_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "PUBLISH %s: one receiver",
             msg);
    freeReplyObject(r);
}

static void ping_on(rp_client *c)
{
    const char *argv[] = { "PING" };
    rp_reply *reply = NULL;
    rp_error e;
    int rc = rp_client_command(c, 1, argv, NULL, &reply, &e);
    RP_CHECK(rc == RP_OK && reply && reply->type == RP_REPLY_STATUS && strcmp(reply->str, "PONG") == 0,
             "PING beside a long-lived op: %s %s", rp_status_name(rc), e.message);
    rp_reply_free(reply);
}

static void test_listening_rounds(void)
{
    rp_client *c = client_over(1, 2000);
    rp_transport *t = rp_client_transport(c);
    redisContext *side = rp_hserver_connect(&srv[0], 5000);
    listen_state *s;
    rp_op *op = listen_op(c, 0, &s);
    rp_error e;
    uint64_t t0, ms;
    int rc;
    RP_CHECK(side != NULL, "side connection");

    /* by hand over the transport: subscribe (the confirmation is a message) */
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO && rp_op_listening(op, 0), "listen");
    rc = t->cls->round(t, op, 1000, &e);
    RP_CHECK(rc == RP_OK, "subscribe round: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO && s->messages == 1, "confirmed");
    /* nothing published: the round gives up after the caller's wait, op and connection live on */
    t0 = rp_harness_now_ms();
    rc = t->cls->round(t, op, 100, &e);
    ms = rp_harness_now_ms() - t0;
    RP_CHECK(rc == RP_ETIMEOUT, "a silent listening round: %s", rp_status_name(rc));
    RP_CHECK(ms >= 95 && ms < 400, "listened %llu ms for a 100 ms wait", (unsigned long long)ms);
    RP_CHECK(numsub(side) == 1, "the subscribed connection stays open");
    /* wait 0: only what is there already */
    t0 = rp_harness_now_ms();
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO, "stepped early: listens again");
    RP_CHECK(t->cls->round(t, op, 0, &e) == RP_ETIMEOUT && rp_harness_now_ms() - t0 < 50, "wait 0");
    /* the client's other ops get a connection of their own, never the subscriber's */
    ping_on(c);
    RP_CHECK(numsub(side) == 1, "still subscribed after a PING on the same client");
    publish(side, "hello");
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO, "listen");
    rc = t->cls->round(t, op, 1000, &e);
    RP_CHECK(rc == RP_OK, "the message arrives on the kept connection: %s", rp_status_name(rc));
    RP_CHECK(rp_op_step(op, rp_monotonic_ms()) == RP_STEP_IO && s->messages == 2 &&
             strcmp(s->last, "hello") == 0, "got %zu, last '%s'", s->messages, s->last);
    rp_op_free(op);
    rp_client_free(c);

    /* rp_client_pump: EMIT -> RP_OK, a silent wait -> RP_ETIMEOUT, DONE -> RP_ESTATE */
    c = client_over(1, 2000);
    op = listen_op(c, 1, &s);
    rc = rp_client_pump(c, op, 1000, NULL, &e);
    RP_CHECK(rc == RP_OK && s->messages == 1, "pump: the confirmation: %s %s", rp_status_name(rc),
             e.message);
    t0 = rp_harness_now_ms();
    rc = rp_client_pump(c, op, 150, NULL, &e);
    ms = rp_harness_now_ms() - t0;
    RP_CHECK(rc == RP_ETIMEOUT && ms >= 145 && ms < 500, "pump 150 ms: %s after %llu ms",
             rp_status_name(rc), (unsigned long long)ms);
    ping_on(c);
    publish(side, "again");
    rc = rp_client_pump(c, op, 1000, NULL, &e);
    RP_CHECK(rc == RP_OK && strcmp(s->last, "again") == 0, "pump: %s '%s'", rp_status_name(rc),
             s->last);
    publish(side, "quit");
    rc = rp_client_pump(c, op, 1000, NULL, &e);
    RP_CHECK(rc == RP_ESTATE, "pump after the op ended: %s", rp_status_name(rc));
    rp_op_free(op);
    rp_client_free(c);

    /* rp_client_disconnect under a live long-lived op is reported to it at its next round */
    c = client_over(1, 2000);
    op = listen_op(c, 1, &s);
    RP_CHECK(rp_client_pump(c, op, 1000, NULL, &e) == RP_OK, "subscribed");
    rp_client_disconnect(c);
    rc = rp_client_pump(c, op, 500, NULL, &e);
    RP_CHECK(rc == RP_ETRANSPORT && strstr(e.message, "dropped"), "after disconnect: %s %s",
             rp_status_name(rc), e.message);
    rp_op_free(op);

    /* an emitting op is not for rp_client_drive */
    op = listen_op(c, 1, &s);
    rc = rp_client_drive(c, op, NULL, &e);
    RP_CHECK(rc == RP_ESTATE && strstr(e.message, "rp_client_pump"), "drive an emitter: %s %s",
             rp_status_name(rc), e.message);
    rp_op_free(op);
    rp_client_free(c);
    redisFree(side);
}

/* --- 5. CALL: the callback here, the op's rounds in a helper thread ------------------- */

#define TICK_MS 50
#define CALLBACK_MS 300
#define IDS_MAX 64

typedef struct call_state {
    int stage;
    int inflight;       /* a CLIENT ID of the call's rounds is out */
    uint64_t next_ms;
    long long id_before, id_after;
    long long ids[IDS_MAX];
    size_t nids;
    int call_status;
    char call_text[TEXT_MAX];
} call_state;

static int call_advance(rp_op *op, void *state, uint64_t now_ms)
{
    call_state *s = state;
    const char *bytes;
    size_t len;
    const rp_reply *r;
    switch (s->stage) {
    case 0:
        s->stage = 1;
        return rp_op__command(op, 0, 2, client_id, NULL);
    case 1:
        r = rp_op__reply(op, 0, 0);
        s->id_before = r ? r->integer : -1;
        s->stage = 2;
        rp_op__call(op, 0);
        return RP_OK;
    case 2:
        if (s->inflight) {
            r = rp_op__reply(op, 0, 0);
            if (s->nids < IDS_MAX)
                s->ids[s->nids++] = r ? r->integer : -1;
            s->inflight = 0;
        }
        if (rp_op__call_running(op)) {
            if (now_ms >= s->next_ms) {
                s->next_ms = now_ms + TICK_MS;
                s->inflight = 1;
                return rp_op__command(op, 0, 2, client_id, NULL);
            }
            rp_op__sleep(op, s->next_ms - now_ms);
            return RP_OK;
        }
        s->call_status = rp_op__call_result(op, &bytes, &len);
        snprintf(s->call_text, sizeof s->call_text, "%.*s", (int)len, bytes ? bytes : "");
        if (s->call_status != RP_OK)
            return rp_op__fail(op, s->call_status, "%s", s->call_text);
        s->stage = 3;
        return rp_op__command(op, 0, 2, client_id, NULL);
    default:
        r = rp_op__reply(op, 0, 0);
        s->id_after = r ? r->integer : -1;
        rp_op__done(op);
        return RP_OK;
    }
}

static const rp_op_class call_class = {
    .name = "test.call",
    .state_size = sizeof(call_state),
    .advance = call_advance,
};

typedef struct hook_ud {
    pthread_t caller;
    int same_thread;
    int calls;
    long long clients_during; /* CLIENT LIST lines seen from the side while the callback ran */
    redisContext *side;
    int raise;
} hook_ud;

static long long client_count(redisContext *side)
{
    redisReply *r = rp_hcmd(side, "CLIENT LIST");
    long long n = 0;
    const char *p;
    if (r && r->type == REDIS_REPLY_STRING)
        for (p = r->str; (p = strchr(p, '\n')) != NULL; p++)
            n++;
    freeReplyObject(r);
    return n;
}

static void test_hook(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                      rp_value *result)
{
    static const char done[] = "done", boom[] = "boom";
    hook_ud *h = ud;
    (void)op; (void)values; (void)count;
    h->calls++;
    h->same_thread = pthread_equal(pthread_self(), h->caller) && arg == 0;
    rp_harness_sleep_ms(CALLBACK_MS / 2);
    h->clients_during = client_count(h->side);
    rp_harness_sleep_ms(CALLBACK_MS / 2);
    memset(result, 0, sizeof *result);
    if (h->raise) {
        result->type = RP_TYPE_STATUS;
        result->i = RP_ECALLBACK;
        result->bytes = boom;
        result->len = 4;
    } else {
        result->type = RP_TYPE_BYTES;
        result->bytes = done;
        result->len = 4;
    }
}

static rp_op *call_op(rp_client *c, call_state **st)
{
    rp_op *op;
    void *state;
    rp_error e;
    int rc = rp_op__new(&op, c, &call_class, 1, &state, &e);
    RP_CHECK(rc == RP_OK, "rp_op__new: %s", e.message);
    *st = state;
    return op;
}

static void test_call_runs_beside_the_op(void)
{
    rp_client *c = client_over(1, 2000);
    hook_ud h;
    rp_drive_hooks hooks;
    call_state *s;
    rp_op *op;
    rp_error e;
    size_t i;
    long long after = -1;
    int rc, tries;

    memset(&h, 0, sizeof h);
    h.caller = pthread_self();
    h.side = rp_hserver_connect(&srv[0], 5000);
    RP_CHECK(h.side != NULL, "side connection");
    memset(&hooks, 0, sizeof hooks);
    hooks.call = test_hook;
    hooks.ud = &h;

    op = call_op(c, &s);
    rc = rp_client_drive(c, op, &hooks, &e);
    RP_CHECK(rc == RP_OK, "drive: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(h.calls == 1 && h.same_thread, "the callback ran once, in the calling thread");
    RP_CHECK(s->call_status == RP_OK && strcmp(s->call_text, "done") == 0,
             "the op saw the callback's value: '%s'", s->call_text);
    RP_CHECK(s->nids >= 4, "only %zu rounds while a %d ms callback ran (one per %d ms)", s->nids,
             CALLBACK_MS, TICK_MS);
    for (i = 0; i < s->nids; i++)
        RP_CHECK(s->ids[i] == s->ids[0] && s->ids[i] != s->id_before,
                 "round %zu of the call on the helper's connection (%lld; client's %lld)", i,
                 s->ids[i], s->id_before);
    RP_CHECK(s->id_after == s->id_before, "after the call the client's own connection again");
    RP_CHECK(h.clients_during == 3, "CLIENT LIST during the callback: %lld (side, client, helper)",
             h.clients_during);
    for (tries = 0; tries < 100 && (after = client_count(h.side)) != 2; tries++)
        rp_harness_sleep_ms(10);
    RP_CHECK(after == 2, "the helper's connection is closed after the call (%lld clients)", after);
    printf("CALL of %d ms: %zu rounds on the helper's connection\n", CALLBACK_MS, s->nids);
    rp_op_free(op);

    /* the callback raised: the op sees RP_ECALLBACK with its message */
    h.raise = 1;
    op = call_op(c, &s);
    rc = rp_client_drive(c, op, &hooks, &e);
    RP_CHECK(rc == RP_ECALLBACK && strcmp(e.message, "boom") == 0, "raised: %s %s",
             rp_status_name(rc), e.message);
    rp_op_free(op);

    /* no call hook: RP_ESTATE, and the op was told (it ends instead of waiting forever) */
    op = call_op(c, &s);
    rc = rp_client_run(c, op, &e);
    RP_CHECK(rc == RP_ESTATE && strstr(e.message, "call hook"), "no hook: %s %s",
             rp_status_name(rc), e.message);
    RP_CHECK(s->call_status == RP_ECALLBACK, "the op was resumed with a failure");
    rp_op_free(op);
    redisFree(h.side);
    rp_client_free(c);
}

/* --- 6. a sleep hook that cancels ----------------------------------------------------- */

static int cancel_sleep(void *ud, uint64_t ms)
{
    int *n = ud;
    (void)ms;
    return ++*n >= 2;
}

static void test_sleep_hook_cancels(void)
{
    rp_client *c = client_over(1, 2000);
    rp_lock *a = NULL, *b = NULL;
    rp_lock_acquisition res;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op;
    rp_error e;
    int sleeps = 0, rc;
    RP_CHECK(rp_lock_new(&a, c, "par-cancel", 10, NULL, &e) == RP_OK, "lock a");
    RP_CHECK(rp_lock_new(&b, c, "par-cancel", 10, NULL, &e) == RP_OK, "lock b");
    RP_CHECK(rp_lock_acquire(a, NULL, &res, &e) == RP_OK && res.acquired, "a holds it");
    o.wait_ms = 10000;
    RP_CHECK(rp_lock_acquire_op(&op, b, &o, &e) == RP_OK, "acquire op");
    rc = rp_client_run_sleeping(c, op, cancel_sleep, &sleeps, &e);
    RP_CHECK(rc == RP_ECANCELED && sleeps == 2, "cancelled at the second sleep: %s (%d sleeps)",
             rp_status_name(rc), sleeps);
    rp_op_free(op);
    RP_CHECK(rp_lock_release(a, &e) == RP_OK, "release");
    rp_lock_free(a);
    rp_lock_free(b);
    rp_client_free(c);
}

/* A sleep hook that pauses the drive (RP_DRIVE_PAUSE): the caller waits itself. */
static int pause_sleep(void *ud, uint64_t ms)
{
    uint64_t *asked = ud;
    *asked = ms;
    return RP_DRIVE_PAUSE;
}

/* A paused acquire goes on later over another client's connections (a pool lends its
 * connection out while the op waits between attempts). */
static void test_sleep_hook_pauses(void)
{
    rp_client *c = client_over(1, 2000), *c2 = client_over(1, 2000);
    rp_lock *a = NULL, *b = NULL;
    rp_lock_acquisition res;
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op;
    rp_error e;
    uint64_t asked = 0;
    int rc;
    RP_CHECK(rp_lock_new(&a, c, "par-pause", 10, NULL, &e) == RP_OK, "lock a");
    RP_CHECK(rp_lock_new(&b, c, "par-pause", 10, NULL, &e) == RP_OK, "lock b");
    RP_CHECK(rp_lock_acquire(a, NULL, &res, &e) == RP_OK && res.acquired, "a holds it");
    o.wait_ms = 10000;
    RP_CHECK(rp_lock_acquire_op(&op, b, &o, &e) == RP_OK, "acquire op");
    rc = rp_client_run_sleeping(c, op, pause_sleep, &asked, &e);
    RP_CHECK(rc == RP_DRIVE_PAUSED && asked > 0, "paused at its first sleep: %d (%llu ms)", rc,
             (unsigned long long)asked);
    RP_CHECK(rp_lock_release(a, &e) == RP_OK, "release");
    rp_harness_sleep_ms(asked);
    rc = rp_client_run(c2, op, &e); /* on over c2's connection, nanosleeps from here */
    RP_CHECK(rc == RP_OK, "the paused acquire ends: %s", e.message);
    RP_CHECK(rp_lock_acquire_result(op, &res) == RP_OK && res.acquired && res.attempts == 2,
             "acquired at its second attempt (%d)", (int)res.attempts);
    rp_op_free(op);
    RP_CHECK(rp_lock_release(b, &e) == RP_OK, "release b");
    rp_lock_free(a);
    rp_lock_free(b);
    rp_client_free(c2);
    rp_client_free(c);
}

/* --- 7. handshakes, unix sockets, refused connects, all in one round ------------------ */

/* A redis-server on a unix socket only (the harness's servers are TCP), killed at exit. */
static pid_t unix_server;
static char unix_dir[64], unix_path[96], unix_log[96];

static void stop_unix_server(void)
{
    char cmd[128];
    if (unix_server > 0) {
        kill(unix_server, SIGKILL);
        waitpid(unix_server, NULL, 0);
        unix_server = 0;
    }
    if (unix_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", unix_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", unix_dir);
    }
}

static void start_unix_server(void)
{
    const char *bin = getenv("REDPAT_REDIS_SERVER");
    int tries;
    snprintf(unix_dir, sizeof unix_dir, "/tmp/rp-par-XXXXXX");
    RP_CHECK(mkdtemp(unix_dir) != NULL, "mkdtemp");
    snprintf(unix_path, sizeof unix_path, "%s/r.sock", unix_dir);
    snprintf(unix_log, sizeof unix_log, "%s/redis.log", unix_dir);
    unix_server = fork();
    RP_CHECK(unix_server >= 0, "fork");
    if (unix_server == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp(bin ? bin : "redis-server", "redis-server", "--port", "0", "--unixsocket",
               unix_path, "--dir", unix_dir, "--logfile", unix_log, "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    atexit(stop_unix_server);
    for (tries = 0; tries < 500; tries++) {
        redisContext *c = redisConnectUnix(unix_path);
        if (c && !c->err) {
            redisFree(c);
            return;
        }
        if (c)
            redisFree(c);
        rp_harness_sleep_ms(10);
    }
    RP_CHECK(0, "the unix-socket server did not come up at %s", unix_path);
}

static void test_handshakes(void)
{
    static const char *const client_info[] = { "CLIENT", "INFO" };
    redisContext *side = rp_hserver_connect(&srv[1], 5000);
    redisReply *r;
    char url[512];
    rp_client *c;
    each_state s;
    uint64_t ms;
    int i, port = rp_harness_free_port();

    RP_CHECK(side != NULL, "side connection");
    r = rp_hcmd(side, "ACL SETUSER rpuser on >s3cret ~* &* +@all");
    RP_CHECK(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER");
    freeReplyObject(r);
    start_unix_server();

    /* AUTH user password + SELECT; SELECT alone on a unix socket; nothing to say */
    snprintf(url, sizeof url, "redis://rpuser:s3cret@127.0.0.1:%d/2,unix://%s?db=3,%s",
             srv[1].port, unix_path, srv[0].url);
    c = client_of(url, 2000);
    for (i = 0; i < 2; i++) { /* fresh connections, then pooled ones */
        run_each(c, 2, client_info, 0, 0, &s);
        RP_CHECK(s.status[0] == RP_OK && strstr(s.text[0], " db=2 ") &&
                 strstr(s.text[0], " user=rpuser"), "AUTH + SELECT: %s %s", s.why[0], s.text[0]);
        RP_CHECK(s.status[1] == RP_OK && strstr(s.text[1], " db=3 "), "unix + SELECT: %s %s",
                 s.why[1], s.text[1]);
        RP_CHECK(s.status[2] == RP_OK && strstr(s.text[2], " db=0 ") &&
                 strstr(s.text[2], " user=default"), "plain: %s %s", s.why[2], s.text[2]);
    }
    rp_client_free(c);

    /* refused handshakes and connects fail their own target only, naming it */
    snprintf(url, sizeof url, "redis://rpuser:wrong@127.0.0.1:%d,redis://127.0.0.1:%d/99,"
             "redis://127.0.0.1:%d,%s", srv[1].port, srv[0].port, port, srv[2].url);
    c = client_of(url, 2000);
    ms = run_each(c, 2, client_id, 0, 0, &s);
    RP_CHECK(ms < 1000, "failures are quick: %llu ms", (unsigned long long)ms);
    RP_CHECK(s.status[0] == RP_EAUTH && strstr(s.why[0], "AUTH failed") &&
             strstr(s.why[0], "rpuser@127.0.0.1:"), "wrong password: %s %s",
             rp_status_name(s.status[0]), s.why[0]);
    RP_CHECK(s.status[1] == RP_EREPLY && strstr(s.why[1], "SELECT failed"), "bad db: %s %s",
             rp_status_name(s.status[1]), s.why[1]);
    RP_CHECK(s.status[2] == RP_ETRANSPORT && strstr(s.why[2], "cannot connect"),
             "nothing listening: %s %s", rp_status_name(s.status[2]), s.why[2]);
    RP_CHECK(s.status[3] == RP_OK, "the good one: %s", s.why[3]);
    rp_client_free(c);
    stop_unix_server();
    redisFree(side);
}

int main(void)
{
    int i;
    rp_harness_watchdog(120);
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < NSERVERS; i++)
        RP_CHECK(rp_hserver_start(&srv[i], 0) == 0, "cannot start redis-server %d", i);
    test_round_costs_the_slowest();
    test_stopped_target_times_out();
    test_quorum_abandons_the_stopped();
    test_listening_rounds();
    test_call_runs_beside_the_op();
    test_sleep_hook_cancels();
    test_sleep_hook_pauses();
    test_handshakes();
    for (i = 0; i < NSERVERS; i++)
        rp_hserver_destroy(&srv[i]);
    printf("test_parallel: all passed\n");
    return 0;
}
