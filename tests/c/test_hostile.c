/* The blocking client against hostile servers (tests/harness/hostile_server.py, started by
 * its ctest wrapper, ports in REDPAT_HOSTILE_<NAME>): a reply bomb ends at once with
 * RP_EPROTOCOL naming max_reply_size, the process' memory staying bounded; a trickling or
 * silent server (in the handshake too) ends the call as RP_ETIMEOUT within the command
 * timeout + 10% (issue 10's bound), for a lock acquire and a rate-limit check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#define TIMEOUT_MS 1000
#define BOUND_MS (TIMEOUT_MS + TIMEOUT_MS / 10)
#define RSS_GROWTH_MAX_KB (64 * 1024)
#define STREAM_CAP ((size_t)1 << 20) /* bombs that stream need a cap below the RSS bound */

static int failures, checks;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)

/* kB of a /proc/self/status line ("VmRSS", "VmHWM"). */
static long status_kb(const char *field)
{
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

static void url_of(char *buf, size_t size, const char *name, const char *password)
{
    char env[64];
    const char *port;
    size_t i;
    snprintf(env, sizeof env, "REDPAT_HOSTILE_%s", name);
    for (i = 0; env[i]; i++)
        if (env[i] >= 'a' && env[i] <= 'z')
            env[i] = (char)(env[i] - 'a' + 'A');
    port = getenv(env);
    if (!port) {
        fprintf(stderr, "%s is not set: run under tests/harness/hostile_server.py run --\n", env);
        exit(2);
    }
    snprintf(buf, size, "redis://%s%s%s127.0.0.1:%s/0", password ? ":" : "",
             password ? password : "", password ? "@" : "", port);
}

static rp_client *client_for(const char *name, const char *password, size_t cap)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_error e;
    char url[128];
    url_of(url, sizeof url, name, password);
    o.url = url;
    o.key_namespace = "hostile";
    o.command_timeout_ms = TIMEOUT_MS;
    o.connect_timeout_ms = TIMEOUT_MS;
    o.max_reply_size = cap;
    if (rp_client_new(&c, &o, &e) != RP_OK) {
        fprintf(stderr, "client: %s\n", e.message);
        exit(2);
    }
    return c;
}

enum { OP_COMMAND, OP_ACQUIRE, OP_CHECK };
static const char *const op_names[] = { "command", "lock acquire", "ratelimit check" };

/* Runs one op against the server; its status and message into *e. */
static int run_op(rp_client *c, int which, rp_error *e)
{
    static const char *const ping[] = { "PING" };
    int rc;
    if (which == OP_COMMAND) {
        rp_reply *r = NULL;
        rc = rp_client_command(c, 1, ping, NULL, &r, e);
        rp_reply_free(r);
    } else if (which == OP_ACQUIRE) {
        rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
        rp_lock_acquisition got;
        rp_lock *l = NULL;
        lo.ttl_ms = 10000;
        if (rp_lock_new(&l, c, "res", 3, &lo, e) != RP_OK)
            return -100;
        rc = rp_lock_acquire(l, NULL, &got, e);
        rp_lock_free(l);
    } else {
        rp_ratelimit_options ro = RP_RATELIMIT_OPTIONS_INIT;
        rp_ratelimit_decision d;
        rp_ratelimit *rl = NULL;
        ro.limit = 10;
        ro.window_ms = 1000;
        if (rp_ratelimit_new(&rl, c, "api", 3, &ro, e) != RP_OK)
            return -100;
        rc = rp_ratelimit_check(rl, "u", 1, 1, &d, e);
        rp_ratelimit_free(rl);
    }
    return rc;
}

/* A bomb: RP_EPROTOCOL naming max_reply_size, before the timeout (a timeout would be the
 * other status), with bounded memory. */
static void bomb(const char *name, const char *password, size_t cap, const char *what)
{
    int which;
    for (which = 0; which < 3; which++) {
        rp_client *c = client_for(name, password, cap);
        rp_error e;
        long before = status_kb("VmRSS"), peak;
        int rc = run_op(c, which, &e);
        peak = status_kb("VmHWM");
        CHECK(rc == RP_EPROTOCOL, "%s %s: %s (%s)", name, op_names[which], rp_status_name(rc),
              e.message);
        CHECK(strstr(e.message, "max_reply_size") && strstr(e.message, what),
              "%s %s: message \"%s\" lacks max_reply_size / \"%s\"", name, op_names[which],
              e.message, what);
        CHECK(peak - before < RSS_GROWTH_MAX_KB, "%s %s: peak RSS %ld kB, %ld kB before", name,
              op_names[which], peak, before);
        rp_client_free(c);
    }
}

/* A server that never lets the exchange end: RP_ETIMEOUT within the timeout + 10%. */
static void deadline(const char *name, const char *password)
{
    int which;
    for (which = 0; which < 3; which++) {
        rp_client *c = client_for(name, password, 0);
        rp_error e;
        uint64_t t0 = rp_monotonic_ms(), took;
        int rc = run_op(c, which, &e);
        took = rp_monotonic_ms() - t0;
        CHECK(rc == RP_ETIMEOUT, "%s%s %s: %s (%s)", name, password ? " (AUTH)" : "",
              op_names[which], rp_status_name(rc), e.message);
        CHECK(took <= BOUND_MS, "%s%s %s: took %llu ms (timeout %d ms)", name,
              password ? " (AUTH)" : "", op_names[which], (unsigned long long)took, TIMEOUT_MS);
        rp_client_free(c);
    }
}

/* A reply of the wrong shape (+QUEUED) to the handshake or the request: RP_EPROTOCOL naming
 * what was expected, never a success (a raw command hands back whatever came: only its
 * handshake is checked). */
static void strict(const char *password, const char *what)
{
    int which;
    for (which = password ? 0 : 1; which < 3; which++) {
        rp_client *c = client_for("queued", password, 0);
        rp_error e;
        int rc = run_op(c, which, &e);
        CHECK(rc == RP_EPROTOCOL && strstr(e.message, what) &&
                  strstr(e.message, "got the status \"QUEUED\""),
              "queued%s %s: %s (%s)", password ? " (AUTH)" : "", op_names[which],
              rp_status_name(rc), e.message);
        rp_client_free(c);
    }
}

int main(void)
{
    bomb("bomb_array", NULL, 0, "an array of 2147483647 elements");
    bomb("bomb_array", "pw", 0, "an array of 2147483647 elements"); /* AUTH answered +OK */
    bomb("bomb_array_100m", NULL, 0, "an array of 100000000 elements");
    bomb("bomb_bulk", NULL, 0, "a string of 2147483647 bytes");
    bomb("bomb_handshake", "pw", 0, "an array of 2147483647 elements");
    bomb("bomb_nested", NULL, STREAM_CAP, "max_reply_size");
    bomb("bomb_line", NULL, STREAM_CAP, "bytes of an unfinished item");

    deadline("trickle", NULL);
    deadline("trickle", "pw");
    deadline("trickle_handshake", "pw");
    deadline("silent", NULL);
    deadline("silent", "pw");
    deadline("slow_ok", "pw"); /* AUTH and request each under the timeout, not both */

    strict("pw", "AUTH failed: expected the status \"OK\"");
    strict(NULL, "expected");

    printf("test_hostile: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
