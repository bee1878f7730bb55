/* The reply builder under hostile headers (canned bytes, no server): a header announcing
 * more than max_reply_size could hold fails at once, with bounded memory, naming the cap
 * and what came; replies just under the cap are read whole, just over are refused. Each
 * case is fed whole and byte by byte. Memory is counted by the client's own allocator
 * (hiredis' read buffer is not ours: its bound is the frontends' RSS tests). */
#include "unit_util.h"

#include <stdint.h>

/* Any single request above this is a bomb going off: refuse it (NULL) and remember it. */
#define BOMB_REQUEST ((size_t)256 << 20)
#define KIB ((size_t)1024)
#define MIB ((size_t)1 << 20)

typedef struct counting {
    size_t live, peak, biggest;
} counting;

/* Every block carries its size in a header, so free and realloc can count. */
typedef union hdr { size_t size; long double ld; void *p; long long ll; } hdr;

static void *c_malloc(void *ud, size_t size)
{
    counting *c = ud;
    hdr *h;
    if (size > c->biggest)
        c->biggest = size;
    if (size > BOMB_REQUEST || !(h = malloc(sizeof *h + size)))
        return NULL;
    h->size = size;
    c->live += size;
    if (c->live > c->peak)
        c->peak = c->live;
    return h + 1;
}

static void c_free(void *ud, void *p)
{
    counting *c = ud;
    hdr *h;
    if (!p)
        return;
    h = (hdr *)p - 1;
    c->live -= h->size;
    free(h);
}

static void *c_realloc(void *ud, void *p, size_t size)
{
    counting *c = ud;
    hdr *h, *n;
    size_t old;
    if (!p)
        return c_malloc(ud, size);
    h = (hdr *)p - 1;
    old = h->size;
    if (size > c->biggest)
        c->biggest = size;
    if (size > BOMB_REQUEST || !(n = realloc(h, sizeof *n + size)))
        return NULL;
    n->size = size;
    c->live = c->live - old + size;
    if (c->live > c->peak)
        c->peak = c->live;
    return n + 1;
}

typedef struct fixture {
    counting count;
    rp_allocator alloc;
    rp_client *client;
    rp_op *op;
} fixture;

/* A client with max_reply_size cap (0: the default) and a PING in its IO step. */
static void setup(fixture *f, size_t cap)
{
    static const char *const argv[] = { "PING" };
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    memset(f, 0, sizeof *f);
    f->alloc.malloc_fn = c_malloc;
    f->alloc.realloc_fn = c_realloc;
    f->alloc.free_fn = c_free;
    f->alloc.ud = &f->count;
    o.url = "redis://127.0.0.1:1";
    o.allocator = &f->alloc;
    if (cap)
        o.max_reply_size = cap;
    if (rp_client_new(&f->client, &o, NULL) != RP_OK ||
        rp_command_op(&f->op, f->client, 1, argv, NULL, NULL) != RP_OK ||
        rp_op_step(f->op, 0) != RP_STEP_IO)
        abort();
    f->count.peak = f->count.live;
}

static void teardown(fixture *f)
{
    rp_op_free(f->op);
    rp_client_free(f->client);
    CHECK(f->count.live == 0);
}

/* Feeds len bytes whole (step 0) or step bytes at a time; the last feed's status. */
static int feed(fixture *f, const char *buf, size_t len, size_t step)
{
    size_t off = 0;
    int rc = RP_MORE;
    if (step == 0)
        return rp_op_feed(f->op, 0, buf, len);
    while (off < len && rc == RP_MORE) {
        size_t n = len - off < step ? len - off : step;
        rc = rp_op_feed(f->op, 0, buf + off, n);
        off += n;
    }
    return rc;
}

/* After a refused reply: the op ends RP_EPROTOCOL naming the cap and what came. */
static void check_refused(fixture *f, int rc, const char *what)
{
    const rp_error *e;
    CHECK(rc == RP_EPROTOCOL);
    CHECK(rp_op_step(f->op, 0) == RP_STEP_ERROR);
    e = rp_op_error(f->op);
    CHECK(e && e->code == RP_EPROTOCOL);
    CHECK(e && strstr(e->message, "max_reply_size") != NULL);
    CHECK(e && strstr(e->message, what) != NULL);
    if (e && (!strstr(e->message, "max_reply_size") || !strstr(e->message, what)))
        fprintf(stderr, "  message: %s\n", e->message);
}

/* A header alone must fail at once: no allocation near what it announces. */
static void header_bomb(const char *bytes, const char *what)
{
    size_t step;
    for (step = 0; step <= 1; step++) {
        fixture f;
        int rc;
        setup(&f, 0);
        rc = feed(&f, bytes, strlen(bytes), step);
        check_refused(&f, rc, what);
        CHECK(f.count.biggest < MIB);
        CHECK(f.count.peak < MIB);
        if (f.count.peak >= MIB || f.count.biggest >= MIB)
            fprintf(stderr, "  %s (step %zu): peak %zu bytes, biggest request %zu\n", what, step,
                    f.count.peak, f.count.biggest);
        teardown(&f);
    }
}

/* Headers that pass on their own, then a stream of items: refused once the tree reaches
 * the cap, never holding much more than it. */
static void stream_bomb(size_t cap, const char *head, const char *item, const char *what)
{
    size_t step;
    for (step = 0; step <= 1; step++) {
        fixture f;
        size_t sent = 0, ilen = strlen(item);
        int rc;
        setup(&f, cap);
        rc = feed(&f, head, strlen(head), step);
        while (rc == RP_MORE && sent < 64 * MIB) {
            rc = feed(&f, item, ilen, step);
            sent += ilen;
        }
        check_refused(&f, rc, what);
        CHECK(f.count.peak < cap + 64 * KIB);
        if (f.count.peak >= cap + 64 * KIB)
            fprintf(stderr, "  %s: peak %zu bytes for a cap of %zu\n", what, f.count.peak, cap);
        teardown(&f);
    }
}

/* A stream of bytes that never completes an item (a bulk announced huge, a status line
 * without its CRLF): refused once the bytes held for it reach the cap. */
static void endless(size_t cap, const char *head, const char *what)
{
    static char chunk[4096];
    size_t step;
    memset(chunk, 'a', sizeof chunk);
    for (step = 0; step <= 1; step += 1) {
        fixture f;
        size_t sent = 0;
        int rc;
        setup(&f, cap);
        rc = feed(&f, head, strlen(head), step);
        while (rc == RP_MORE && sent < 64 * MIB) {
            /* byte by byte only for a while: the point is the path, not the time */
            rc = feed(&f, chunk, sizeof chunk, step && sent < 4 * cap ? 1 : 0);
            sent += sizeof chunk;
        }
        check_refused(&f, rc, what);
        CHECK(sent <= cap + 2 * sizeof chunk);
        if (sent > cap + 2 * sizeof chunk)
            fprintf(stderr, "  %s: %zu bytes accepted for a cap of %zu\n", what, sent, cap);
        teardown(&f);
    }
}

/* Whether a bulk string of n bytes is read whole under cap (1), or refused naming it (0). */
static int bulk_fits(size_t cap, size_t n, size_t step)
{
    fixture f;
    char head[32];
    char *payload = malloc(n + 2);
    const rp_reply *r = NULL;
    int rc, ok;
    if (!payload)
        abort();
    memset(payload, 'x', n);
    memcpy(payload + n, "\r\n", 2);
    setup(&f, cap);
    snprintf(head, sizeof head, "$%zu\r\n", n);
    rc = feed(&f, head, strlen(head), step);
    if (rc == RP_MORE)
        rc = feed(&f, payload, n + 2, step);
    ok = rc == RP_OK;
    if (ok) {
        CHECK(rp_op_step(f.op, 0) == RP_STEP_DONE);
        CHECK(rp_command_result(f.op, &r) == RP_OK && r && r->type == RP_REPLY_STRING &&
              r->len == n && memcmp(r->str, payload, n) == 0);
    } else {
        check_refused(&f, rc, "string");
    }
    CHECK(f.count.peak < cap + 4 * KIB);
    teardown(&f);
    free(payload);
    return ok;
}

/* The largest bulk string a cap admits is a little under it (the node's own size): just
 * under passes whole, just over is refused. */
static void just_under_and_over(size_t cap)
{
    size_t lo = 0, hi = cap + 1, step;
    /* bulk_fits(lo) and !bulk_fits(hi): bisect the boundary */
    CHECK(bulk_fits(cap, 0, 0) && !bulk_fits(cap, cap + 1, 0));
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (bulk_fits(cap, mid, 0))
            lo = mid;
        else
            hi = mid;
    }
    CHECK(lo + 256 >= cap); /* the overhead is a node, not a fraction of the cap */
    for (step = 0; step <= 1; step++) {
        CHECK(bulk_fits(cap, lo, step));
        CHECK(!bulk_fits(cap, lo + 1, step));
    }
}

/* An array of many small items under the cap is read whole. */
static void big_legit_array(void)
{
    enum { N = 100000 };
    fixture f;
    const rp_reply *r = NULL;
    char *buf = malloc((size_t)N * 8 + 32), *p;
    size_t i;
    int rc;
    if (!buf)
        abort();
    p = buf + sprintf(buf, "*%d\r\n", N);
    for (i = 0; i < N; i++)
        p += sprintf(p, ":%zu\r\n", i % 10);
    setup(&f, 0);
    rc = feed(&f, buf, (size_t)(p - buf), 0);
    CHECK(rc == RP_OK);
    CHECK(rp_op_step(f.op, 0) == RP_STEP_DONE);
    CHECK(rp_command_result(f.op, &r) == RP_OK && r && r->type == RP_REPLY_ARRAY &&
          r->elements == N && r->element[N - 1]->integer == (N - 1) % 10);
    teardown(&f);
    free(buf);
}

static void bad_option(void)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    rp_error e;
    o.max_reply_size = 1023;
    CHECK(rp_client_new(&c, &o, &e) == RP_EINVAL && strstr(e.message, "max_reply_size"));
    o.max_reply_size = 1024;
    CHECK(rp_client_new(&c, &o, &e) == RP_OK);
    rp_client_free(c);
}

int main(void)
{
    header_bomb("*2147483647\r\n", "an array of 2147483647 elements");
    header_bomb("*100000000\r\n", "an array of 100000000 elements");
    header_bomb("$2147483647\r\n", "a string of 2147483647 bytes");
    /* nested: each level fits alone, together they do not */
    header_bomb("*1000000\r\n*1000000\r\n*1000000\r\n*1000000\r\n*1000000\r\n*1000000\r\n"
                "*1000000\r\n",
                "an array of 1000000 elements");
    stream_bomb(64 * KIB, "*1000\r\n*1000\r\n*1000\r\n*1000\r\n", ":1\r\n", "max_reply_size");
    stream_bomb(64 * KIB, "*100000\r\n", "$3\r\nabc\r\n", "max_reply_size");
    endless(KIB, "$2147483\r\n", "string");
    endless(64 * KIB, "+", "bytes");
    endless(64 * KIB, "*3\r\n:1\r\n-ERR ", "bytes");
    just_under_and_over(KIB);
    just_under_and_over(64 * KIB);
    big_legit_array();
    bad_option();
    printf("unit_reply: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
