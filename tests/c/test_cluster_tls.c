/* Redis Cluster over TLS with AUTH on every node (issue 12): run under `harness.py run
 * --cluster --tls --servers 1` (REDPAT_TEST_URL is rediss+cluster://..., the masters' own
 * rediss:// URLs in REDPAT_TEST_NODES, certificates in REDPAT_TEST_TLS_DIR). The test sets
 * a password on every master itself (CONFIG SET requirepass over each node's own TLS
 * connection), then: a client whose cluster URL carries the password takes locks and
 * checks limiters whose keys live on every master (so each master's connection ran its TLS
 * handshake and AUTH); one without the password, or with a wrong one, fails with RP_EAUTH
 * and nothing else; a client trusting another CA fails the TLS handshake, naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "rp_harness.h"

#define PASSWORD "cluster-s3cret"
#define MASTERS 3
#define NAMES 48

static char tls_dir[512];

static const char *file_of(const char *name)
{
    static char paths[4][600];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", tls_dir, name);
    return p;
}

static int client_new(rp_client **c, const char *url, const char *ca, rp_error *e)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = "ctls";
    o.tls_ca_file = file_of(ca);
    return rp_client_new(c, &o, e);
}

/* "rediss+cluster://h:p,..." with user info "[:PASSWORD@]" put in front of the hosts. */
static void with_password(char *out, size_t size, const char *url, const char *password)
{
    const char *hosts = strstr(url, "://") + 3;
    snprintf(out, size, "%.*s:%s@%s", (int)(hosts - url), url, password, hosts);
}

static int command(rp_client *c, const char *key, int argc, const char **argv, rp_error *e,
                   long long *integer)
{
    rp_op *op;
    const rp_reply *r;
    int rc = rp_command_op_key(&op, c, argc, argv, NULL, key, key ? strlen(key) : 0, e);
    if (rc == RP_OK && (rc = rp_client_run(c, op, e)) == RP_OK && rp_command_result(op, &r) == RP_OK) {
        if (r->type == RP_REPLY_ERROR) {
            snprintf(e->message, sizeof e->message, "%s", r->str);
            rc = RP_EREPLY;
        } else if (integer) {
            *integer = r->integer;
        }
    }
    rp_op_free(op);
    return rc;
}

/* Every master gets requirepass, over its own rediss:// URL. */
static void set_passwords(const char *nodes)
{
    char list[4096], *save = NULL, *url;
    snprintf(list, sizeof list, "%s", nodes);
    for (url = strtok_r(list, " ,", &save); url; url = strtok_r(NULL, " ,", &save)) {
        static const char *argv[] = { "CONFIG", "SET", "requirepass", PASSWORD };
        rp_client *c;
        rp_error e;
        RP_CHECK(client_new(&c, url, "ca.crt", &e) == RP_OK, "%s", e.message);
        RP_CHECK(command(c, "", 4, argv, &e, NULL) == RP_OK, "%s: %s", url, e.message);
        rp_client_free(c);
    }
}

int main(void)
{
    const char *url = getenv("REDPAT_TEST_URL"), *nodes = getenv("REDPAT_TEST_NODES");
    const char *dir = getenv("REDPAT_TEST_TLS_DIR");
    char authed[2048], wrong[2048];
    rp_client *c;
    rp_error e;
    long long owners[MASTERS] = { 0 };
    int i, rc;
    rp_harness_watchdog(120);
    RP_CHECK(url && nodes && dir && strncmp(url, "rediss+cluster://", 17) == 0,
             "run under harness.py run --cluster --tls (REDPAT_TEST_URL=%s)", url ? url : "");
    snprintf(tls_dir, sizeof tls_dir, "%s", dir);
    set_passwords(nodes);
    with_password(authed, sizeof authed, url, PASSWORD);
    with_password(wrong, sizeof wrong, url, "not-it");

    /* the password on every node: locks and limiters on names spread over the masters */
    RP_CHECK(client_new(&c, authed, "ca.crt", &e) == RP_OK, "%s", e.message);
    for (i = 0; i < NAMES; i++) {
        char name[32];
        rp_lock *l;
        rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
        rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
        rp_lock_acquisition acq;
        rp_ratelimit *rl;
        rp_ratelimit_options ro = RP_RATELIMIT_OPTIONS_INIT;
        rp_ratelimit_decision d;
        snprintf(name, sizeof name, "tls-%d", i);
        lo.fenced = 1;
        RP_CHECK(rp_lock_new(&l, c, name, strlen(name), &lo, &e) == RP_OK, "%s", e.message);
        RP_CHECK(rp_lock_acquire(l, &ao, &acq, &e) == RP_OK && acq.acquired && acq.fence == 1,
                 "acquire %s: %s", name, e.message);
        RP_CHECK(rp_lock_release(l, &e) == RP_OK, "release %s: %s", name, e.message);
        rp_lock_free(l);
        ro.limit = 5;
        ro.window_ms = 60000;
        RP_CHECK(rp_ratelimit_new(&rl, c, "tls", 3, &ro, &e) == RP_OK, "%s", e.message);
        RP_CHECK(rp_ratelimit_check(rl, name, strlen(name), 1, &d, &e) == RP_OK && d.allowed &&
                 d.remaining == 4, "check %s: %s", name, e.message);
        rp_ratelimit_free(rl);
    }
    /* every master served some of them: its own DBSIZE (the fence counters stay) */
    {
        char list[4096], *save = NULL, *node;
        snprintf(list, sizeof list, "%s", nodes);
        for (i = 0, node = strtok_r(list, " ,", &save); node && i < MASTERS;
             node = strtok_r(NULL, " ,", &save), i++) {
            static const char *argv[] = { "DBSIZE" };
            char node_url[600];
            rp_client *nc;
            with_password(node_url, sizeof node_url, node, PASSWORD);
            RP_CHECK(client_new(&nc, node_url, "ca.crt", &e) == RP_OK, "%s", e.message);
            RP_CHECK(command(nc, NULL, 1, argv, &e, &owners[i]) == RP_OK, "%s", e.message);
            RP_CHECK(owners[i] > 0, "master %s holds no key of the %d names", node, NAMES);
            rp_client_free(nc);
        }
    }
    printf("tls+auth: %d locks and %d limiter checks over rediss+cluster:// with AUTH; "
           "keys per master: %lld %lld %lld\n", NAMES, NAMES,
           owners[0], owners[1], owners[2]);
    rp_client_free(c);

    /* no password, or a wrong one: RP_EAUTH */
    {
        const char *const bad[2] = { url, wrong };
        for (i = 0; i < 2; i++) {
            rp_lock *l;
            rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
            rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
            rp_lock_acquisition acq;
            RP_CHECK(client_new(&c, bad[i], "ca.crt", &e) == RP_OK, "%s", e.message);
            RP_CHECK(rp_lock_new(&l, c, "tls-x", 5, &lo, &e) == RP_OK, "%s", e.message);
            rc = rp_lock_acquire(l, &ao, &acq, &e);
            RP_CHECK(rc == RP_EAUTH, "%s: expected RP_EAUTH, got %d: %s",
                     i ? "a wrong password" : "no password", rc, e.message);
            printf("tls+auth: %s: %s\n", i ? "a wrong password" : "no password", e.message);
            rp_lock_free(l);
            rp_client_free(c);
        }
    }

    /* another CA: the TLS handshake fails, saying so */
    {
        rp_lock *l;
        rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
        rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
        rp_lock_acquisition acq;
        RP_CHECK(client_new(&c, authed, "other-ca.crt", &e) == RP_OK, "%s", e.message);
        RP_CHECK(rp_lock_new(&l, c, "tls-x", 5, &lo, &e) == RP_OK, "%s", e.message);
        rc = rp_lock_acquire(l, &ao, &acq, &e);
        RP_CHECK(rc != RP_OK && strstr(e.message, "TLS handshake failed"),
                 "another CA: got %d: %s", rc, e.message);
        printf("tls+auth: another CA: %s\n", e.message);
        rp_lock_free(l);
        rp_client_free(c);
    }
    printf("test_cluster_tls: passed\n");
    return 0;
}
