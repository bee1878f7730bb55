/* TLS (issue 11 item 8) through the blocking transport, against real TLS-only servers:
 * run under `harness.py run --tls --servers 3` (REDPAT_TEST_URLS are rediss://, certificates
 * in REDPAT_TEST_TLS_DIR). A lock, a limiter, a Redlock over the three (parallel rounds) and
 * a subscription over TLS; verification on by default (the system's store does not trust
 * the test CA; another CA fails; a wrong server name fails; tls_verify = 0 passes); a
 * client certificate against a server that requires one; plain redis:// against a TLS
 * port and rediss:// against a plain one fail cleanly; bad options fail at rp_client_new
 * naming the option. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "rp_harness.h"

#define TIMEOUT_MS 2000

static char urls[3][128];
static char tls_dir[512];

static const char *file_of(const char *name)
{
    static char paths[8][600];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", tls_dir, name);
    return p;
}

/* A client over url with the options o (url, namespace and timeouts filled here). */
static int client_new(rp_client **c, rp_client_options o, const char *url, rp_error *e)
{
    o.url = url;
    o.key_namespace = "tls";
    o.connect_timeout_ms = TIMEOUT_MS;
    o.command_timeout_ms = TIMEOUT_MS;
    *c = NULL;
    return rp_client_new(c, &o, e);
}

static rp_client_options trusting(const char *ca)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.tls_ca_file = ca ? file_of(ca) : NULL;
    return o;
}

static int ping(rp_client *c, rp_error *e)
{
    const char *argv[] = { "PING" };
    rp_reply *r = NULL;
    int rc = rp_client_command(c, 1, argv, NULL, &r, e);
    if (rc == RP_OK && (r->type != RP_REPLY_STATUS || strcmp(r->str, "PONG") != 0)) {
        rp_reply_free(r);
        return RP_EREPLY;
    }
    rp_reply_free(r);
    return rc;
}

/* Values far larger than a TLS record and the socket's buffers, both ways, several times on
 * one pooled connection: partial writes that wait, replies read record by record. */
static void test_large_values(void)
{
    enum { BIG = 3 << 20 };
    char *value = malloc(BIG);
    const char *set[3] = { "SET", "big", NULL }, *get[2] = { "GET", "big" };
    size_t set_lens[3] = { 3, 3, BIG };
    rp_client *c;
    rp_reply *r = NULL;
    rp_error e;
    int i;
    RP_CHECK(value != NULL, "memory");
    RP_CHECK(client_new(&c, trusting("ca.crt"), urls[0], &e) == RP_OK, "%s", e.message);
    for (i = 0; i < 3; i++) {
        size_t j;
        for (j = 0; j < BIG; j++)
            value[j] = (char)('a' + (j * 7 + (size_t)i) % 26);
        set[2] = value;
        RP_CHECK(rp_client_command(c, 3, set, set_lens, &r, &e) == RP_OK &&
                 r->type == RP_REPLY_STATUS, "SET %d MiB over TLS: %s", BIG >> 20, e.message);
        rp_reply_free(r);
        RP_CHECK(rp_client_command(c, 2, get, NULL, &r, &e) == RP_OK &&
                 r->type == RP_REPLY_STRING && r->len == BIG && memcmp(r->str, value, BIG) == 0,
                 "GET over TLS, round %d: %s", i, e.message);
        rp_reply_free(r);
        RP_CHECK(ping(c, &e) == RP_OK, "PING after: %s", e.message);
    }
    rp_client_free(c);
    free(value);
}

static void test_patterns(void)
{
    rp_client *c;
    rp_lock *l = NULL, *rl = NULL;
    rp_lock_acquisition a;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_redlock_options ro = RP_REDLOCK_OPTIONS_INIT;
    rp_ratelimit *lim = NULL;
    rp_ratelimit_options rlo = RP_RATELIMIT_OPTIONS_INIT;
    rp_ratelimit_decision d;
    rp_error e;
    char all[3 * 128 + 3];
    int i, owned = -1;

    RP_CHECK(client_new(&c, trusting("ca.crt"), urls[0], &e) == RP_OK, "%s", e.message);
    RP_CHECK(ping(c, &e) == RP_OK, "PING over TLS: %s", e.message);
    lo.fenced = 1;
    RP_CHECK(rp_lock_new(&l, c, "res", 3, &lo, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_lock_acquire(l, NULL, &a, &e) == RP_OK && a.acquired && a.fence > 0,
             "acquire over TLS: %s", e.message);
    RP_CHECK(rp_lock_owned(l, &owned, &e) == RP_OK && owned == 1, "owned: %s", e.message);
    RP_CHECK(rp_lock_release(l, &e) == RP_OK, "release over TLS: %s", e.message);
    rp_lock_free(l);

    rlo.algorithm = RP_RATELIMIT_FIXED_WINDOW;
    rlo.limit = 2;
    rlo.window_ms = 60000;
    RP_CHECK(rp_ratelimit_new(&lim, c, "api", 3, &rlo, &e) == RP_OK, "%s", e.message);
    for (i = 0; i < 3; i++) {
        RP_CHECK(rp_ratelimit_check(lim, "u", 1, 1, &d, &e) == RP_OK, "check: %s", e.message);
        RP_CHECK(!d.degraded && d.allowed == (i < 2), "check %d: allowed %d degraded %d", i,
                 d.allowed, d.degraded);
    }
    rp_ratelimit_free(lim);
    rp_client_free(c);

    /* three TLS endpoints, one parallel round each step */
    snprintf(all, sizeof all, "%s,%s,%s", urls[0], urls[1], urls[2]);
    RP_CHECK(client_new(&c, trusting("ca.crt"), all, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_redlock_new(&rl, c, "red", 3, &ro, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_lock_acquire(rl, NULL, &a, &e) == RP_OK && a.acquired, "redlock: %s", e.message);
    RP_CHECK(rp_lock_release(rl, &e) == RP_OK, "redlock release: %s", e.message);
    rp_lock_free(rl);
    rp_client_free(c);
}

static int sleep_past_ttl(void *ud, rp_error *err)
{
    (void)ud, (void)err;
    rp_harness_sleep_ms(700);
    return RP_OK;
}

/* lock.using: while the function runs, the renewals go over the blocking driver's helper
 * transport, made from the client's options: TLS with the same tls_* options. */
static void test_using_over_tls(void)
{
    rp_client_options o = trusting("ca.crt");
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    rp_lock_using_options uo = RP_LOCK_USING_OPTIONS_INIT;
    rp_lock_using_result res;
    rp_client *c;
    rp_lock *l = NULL;
    rp_error e;
    o.tls_server_name = "localhost";
    RP_CHECK(client_new(&c, o, urls[0], &e) == RP_OK, "%s", e.message);
    lo.ttl_ms = 300;
    RP_CHECK(rp_lock_new(&l, c, "using", 5, &lo, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_lock_using(l, &uo, sleep_past_ttl, NULL, &res, &e) == RP_OK && res.acquired &&
             res.renewals >= 1, "using over TLS: %s (renewals %lld)", e.message,
             (long long)res.renewals);
    rp_lock_free(l);
    rp_client_free(c);
}

/* The AUTH / SELECT handshake after the TLS one, in one exchange: server 2 gets a password
 * for a while (CONFIG SET over TLS). */
static void test_auth_over_tls(void)
{
    const char *set[] = { "CONFIG", "SET", "requirepass", "sekret" };
    const char *unset[] = { "CONFIG", "SET", "requirepass", "" };
    const char *db[] = { "CLIENT", "INFO" };
    const char *port = strrchr(urls[1], ':');
    char url[160];
    rp_client *c, *authed;
    rp_reply *r = NULL;
    rp_error e;
    int rc;
    RP_CHECK(client_new(&c, trusting("ca.crt"), urls[1], &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_client_command(c, 4, set, NULL, &r, &e) == RP_OK && r->type == RP_REPLY_STATUS,
             "requirepass: %s", e.message);
    rp_reply_free(r);
    rp_client_free(c);
    snprintf(url, sizeof url, "rediss://:sekret@127.0.0.1%.*s/3", (int)strcspn(port, "/"), port);
    RP_CHECK(client_new(&authed, trusting("ca.crt"), url, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_client_command(authed, 2, db, NULL, &r, &e) == RP_OK &&
             r->type == RP_REPLY_STRING && strstr(r->str, " db=3 "),
             "AUTH and SELECT over TLS: %s", e.message);
    rp_reply_free(r);
    snprintf(url, sizeof url, "rediss://:wrong@127.0.0.1%.*s/0", (int)strcspn(port, "/"), port);
    RP_CHECK(client_new(&c, trusting("ca.crt"), url, &e) == RP_OK, "%s", e.message);
    rc = ping(c, &e);
    RP_CHECK(rc != RP_OK && strstr(e.message, "AUTH failed: WRONGPASS"),
             "wrong password over TLS: %s: %s", rp_status_name(rc), e.message);
    rp_client_free(c);
    RP_CHECK(rp_client_command(authed, 4, unset, NULL, &r, &e) == RP_OK, "%s", e.message);
    rp_reply_free(r);
    rp_client_free(authed);
}

/* A subscription: its connection is the op's between rounds (messages wait in the TLS
 * session as well as in the socket), and closing it QUITs over TLS. */
static void test_pubsub(void)
{
    const void *ch[] = { "news" };
    size_t chl[] = { 4 };
    rp_client *sub, *pub;
    rp_subscription *s = NULL;
    rp_pubsub_message m;
    rp_op *op = NULL;
    rp_error e;
    int64_t receivers = -1;
    int i;
    RP_CHECK(client_new(&sub, trusting("ca.crt"), urls[0], &e) == RP_OK, "%s", e.message);
    RP_CHECK(client_new(&pub, trusting("ca.crt"), urls[0], &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_subscription_new(&s, sub, 1, ch, chl, 0, NULL, NULL, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_subscription_listen_op(&op, s, &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_client_pump(sub, op, 2000, NULL, &e) == RP_OK &&
             rp_subscription_message(op, &m) == RP_OK && m.kind == RP_PUBSUB_SUBSCRIBE,
             "subscribe over TLS: %s", e.message);
    for (i = 0; i < 3; i++)
        RP_CHECK(rp_pubsub_publish(pub, "news", 4, "hello", 5, &receivers, &e) == RP_OK &&
                 receivers == 1, "publish over TLS: %s", e.message);
    for (i = 0; i < 3; i++)
        RP_CHECK(rp_client_pump(sub, op, 2000, NULL, &e) == RP_OK &&
                 rp_subscription_message(op, &m) == RP_OK && m.kind == RP_PUBSUB_MESSAGE &&
                 m.data_len == 5 && memcmp(m.data, "hello", 5) == 0,
                 "message %d over TLS: %s", i, e.message);
    rp_op_free(op);
    rp_subscription_free(s);
    rp_client_free(sub);
    RP_CHECK(rp_pubsub_publish(pub, "news", 4, "bye", 3, &receivers, &e) == RP_OK &&
             receivers == 0, "the subscriber's connection is closed (QUIT over TLS): %lld",
             (long long)receivers);
    rp_client_free(pub);
}

/* A TLS failure: a node failure of the transport, naming the address and what failed. */
static void expect_tls_failure(const char *what, rp_client_options o, const char *url,
                               const char *words)
{
    rp_client *c;
    rp_error e;
    int rc;
    RP_CHECK(client_new(&c, o, url, &e) == RP_OK, "%s: %s", what, e.message);
    rc = ping(c, &e);
    RP_CHECK(rc == RP_ETRANSPORT, "%s: wanted transport, got %s: %s", what, rp_status_name(rc),
             e.message);
    RP_CHECK(strstr(e.message, "127.0.0.1:") && strstr(e.message, words), "%s: %s", what,
             e.message);
    rp_client_free(c);
}

static void test_verification(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c;
    rp_error e;
    /* on by default: the system's store does not know the test CA */
    expect_tls_failure("default store", o, urls[0],
                       "TLS handshake failed: certificate verify failed (");
    expect_tls_failure("other CA", trusting("other-ca.crt"), urls[0],
                       "TLS handshake failed: certificate verify failed (");
    o = trusting("ca.crt");
    o.tls_server_name = "wrong.example";
    expect_tls_failure("wrong server name", o, urls[0],
                       "certificate verify failed (hostname mismatch)");
    /* the certificate names localhost: so does tls_server_name, the URL says 127.0.0.1 */
    o.tls_server_name = "localhost";
    RP_CHECK(client_new(&c, o, urls[0], &e) == RP_OK && ping(c, &e) == RP_OK,
             "tls_server_name localhost: %s", e.message);
    rp_client_free(c);
    o = trusting("other-ca.crt");
    o.tls_verify = 0; /* explicit: no check at all */
    RP_CHECK(client_new(&c, o, urls[0], &e) == RP_OK && ping(c, &e) == RP_OK,
             "tls_verify 0: %s", e.message);
    rp_client_free(c);
}

/* Server 3 is told to require client certificates (a CONFIG SET over TLS). */
static void test_client_certificate(void)
{
    rp_client_options o = trusting("ca.crt");
    rp_client *c;
    rp_reply *r = NULL;
    rp_error e;
    const char *argv[] = { "CONFIG", "SET", "tls-auth-clients", "yes" };
    int rc;
    o.tls_cert_file = file_of("client.crt");
    o.tls_key_file = file_of("client.key");
    RP_CHECK(client_new(&c, o, urls[2], &e) == RP_OK, "%s", e.message);
    RP_CHECK(rp_client_command(c, 4, argv, NULL, &r, &e) == RP_OK && r->type == RP_REPLY_STATUS,
             "CONFIG SET: %s", e.message);
    rp_reply_free(r);
    rp_client_disconnect(c); /* the setting applies to new connections */
    RP_CHECK(ping(c, &e) == RP_OK, "with a client certificate: %s", e.message);
    rp_client_free(c);
    /* without one the server ends the handshake (TLS 1.3: at the first read after it) */
    RP_CHECK(client_new(&c, trusting("ca.crt"), urls[2], &e) == RP_OK, "%s", e.message);
    rc = ping(c, &e);
    RP_CHECK(rc == RP_ETRANSPORT && strstr(e.message, "127.0.0.1:"),
             "no client certificate: %s: %s", rp_status_name(rc), e.message);
    rp_client_free(c);
}

/* redis:// against a TLS port, rediss:// against a plain one: a clean failure within the
 * command timeout (the harness's watchdog catches a hang). */
static void test_wrong_protocol(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c;
    rp_hserver plain;
    rp_error e;
    char url[160];
    const char *port = strrchr(urls[0], ':');
    int rc;
    snprintf(url, sizeof url, "redis://127.0.0.1%s", port);
    RP_CHECK(client_new(&c, o, url, &e) == RP_OK, "%s", e.message);
    rc = ping(c, &e);
    RP_CHECK(rc == RP_ETRANSPORT || rc == RP_ETIMEOUT, "redis:// to a TLS port: %s: %s",
             rp_status_name(rc), e.message);
    rp_client_free(c);

    /* Redis reads the ClientHello as an unfinished inline command: it answers nothing, or
     * an error that is no TLS record */
    RP_CHECK(rp_hserver_start(&plain, 0) == 0, "plain server");
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0", plain.port);
    RP_CHECK(client_new(&c, trusting("ca.crt"), url, &e) == RP_OK, "%s", e.message);
    rc = ping(c, &e);
    RP_CHECK((rc == RP_ETRANSPORT || rc == RP_ETIMEOUT) && strstr(e.message, "TLS handshake"),
             "rediss:// to a plain port: %s: %s", rp_status_name(rc), e.message);
    rp_client_free(c);
    rp_hserver_destroy(&plain);
}

static void expect_einval(const char *what, rp_client_options o, const char *url,
                          const char *words)
{
    rp_client *c = NULL;
    rp_error e;
    int rc = client_new(&c, o, url, &e);
    RP_CHECK(rc == RP_EINVAL && c == NULL, "%s: wanted invalid, got %s", what, rp_status_name(rc));
    RP_CHECK(strstr(e.message, words) != NULL, "%s: %s", what, e.message);
}

static void test_bad_options(void)
{
    rp_client_options o = trusting("ca.crt");
    expect_einval("ca with redis://", o, "redis://127.0.0.1:1/0",
                  "tls_ca_file given but no url is rediss://");
    o = trusting(NULL);
    o.tls_verify = 0;
    expect_einval("verify 0 with redis://", o, "redis://127.0.0.1:1/0",
                  "tls_verify given but no url is rediss://");
    o = trusting("ca.crt");
    o.tls_cert_file = file_of("client.crt");
    expect_einval("cert without key", o, urls[0], "tls_cert_file given without tls_key_file");
    o = trusting("ca.crt");
    o.tls_key_file = file_of("client.key");
    expect_einval("key without cert", o, urls[0], "tls_key_file given without tls_cert_file");
    expect_einval("missing CA file", trusting("nope.crt"), urls[0], "tls_ca_file: cannot read");
    expect_einval("a key as CA file", trusting("client.key"), urls[0], "tls_ca_file \"");
    o = trusting("ca.crt");
    o.tls_cert_file = file_of("client.crt");
    o.tls_key_file = file_of("other-ca.key");
    expect_einval("key of another certificate", o, urls[0], "is not the key of tls_cert_file");
    o = trusting(NULL);
    o.tls_server_name = "";
    expect_einval("empty server name", o, urls[0], "tls_server_name");
}

int main(void)
{
    const char *env = getenv("REDPAT_TEST_URLS"), *dir = getenv("REDPAT_TEST_TLS_DIR");
    int n;
    rp_harness_watchdog(120);
    RP_CHECK(env && dir, "run under harness.py run --tls --servers 3");
    n = sscanf(env, "%127[^,],%127[^,],%127s", urls[0], urls[1], urls[2]);
    RP_CHECK(n == 3 && strncmp(urls[0], "rediss://", 9) == 0, "3 rediss:// URLs (got %s)", env);
    snprintf(tls_dir, sizeof tls_dir, "%s", dir);
    test_bad_options();
    test_patterns();
    test_large_values();
    test_pubsub();
    test_auth_over_tls();
    test_using_over_tls();
    test_verification();
    test_wrong_protocol();
    test_client_certificate();
    printf("test_tls: ok\n");
    return 0;
}
