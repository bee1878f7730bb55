/* Replies in redpat's own model, built directly by hiredis' redisReader through its
 * object callbacks, so no hiredis type outlives the parse and our allocator owns the tree.
 *
 * One reply may take at most max_reply_size bytes of the core's memory: its nodes, strings
 * and element arrays, and the bytes the reader holds for it while it is incomplete. Element
 * arrays grow as children arrive (a header is only a promise), and a header announcing more
 * than the rest of the cap could hold fails at once: each announced element will take at
 * least a node and a slot (RP_REPLY_ELEMENT_MIN), so "*2147483647\r\n" costs nothing. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "reply_internal.h"

/* Each node carries its allocator, so a reply can be freed after the op that made it. */
typedef struct reply_node {
    rp_reply pub;
    rp_allocator alloc;
    size_t cap; /* ARRAY: slots allocated in pub.element (pub.elements are filled) */
} reply_node;

/* The least one announced element will take once it arrives. */
#define RP_REPLY_ELEMENT_MIN (sizeof(reply_node) + sizeof(rp_reply *))
/* First element array of a growing array, in slots. */
#define RP_REPLY_ELEMENTS_FIRST 4
/* What broke the cap, kept for the message. */
#define RP_REPLY_WHAT_MAX 96

/* The reader's privdata: the allocator and the current reply's accounting. */
typedef struct reader_ctx {
    rp_allocator alloc;
    size_t max;      /* max_reply_size */
    size_t used;     /* bytes of the reply being built: nodes, strings, element arrays */
    size_t reserved; /* RP_REPLY_ELEMENT_MIN per announced element not arrived yet */
    int over;        /* the cap was hit; what says by what */
    char what[RP_REPLY_WHAT_MAX];
} reader_ctx;

void rp_reply_free(rp_reply *reply)
{
    reply_node *node = (reply_node *)reply;
    rp_allocator a;
    size_t i;
    if (!reply)
        return;
    a = node->alloc;
    if (reply->element) {
        for (i = 0; i < reply->elements; i++)
            rp_reply_free(reply->element[i]);
        rp_alloc__free(&a, reply->element);
    }
    rp_alloc__free(&a, reply->str);
    rp_alloc__free(&a, node);
}

static size_t room(const reader_ctx *x)
{
    size_t taken = x->used + x->reserved; /* never above max: see charge */
    return taken < x->max ? x->max - taken : 0;
}

static void over(reader_ctx *x, const char *fmt, unsigned long long n)
{
    if (!x->over) {
        x->over = 1;
        snprintf(x->what, sizeof x->what, fmt, n);
    }
}

/* Counts n more bytes against the cap; 0 (and the cap marked hit) if they do not fit. */
static int charge(reader_ctx *x, size_t n)
{
    if (n > room(x))
        return 0;
    x->used += n;
    return 1;
}

/* A new item: a root starts a new reply's count; a child takes its parent's promise. */
static reader_ctx *arrive(const redisReadTask *task)
{
    reader_ctx *x = task->privdata;
    if (!task->parent)
        x->used = x->reserved = 0;
    else
        x->reserved = x->reserved > RP_REPLY_ELEMENT_MIN ? x->reserved - RP_REPLY_ELEMENT_MIN : 0;
    return x;
}

static rp_reply *node_new(const redisReadTask *task, rp_reply_type type)
{
    reader_ctx *x = arrive(task);
    reply_node *node;
    if (!charge(x, sizeof *node)) {
        over(x, "more than %llu bytes of items", (unsigned long long)x->max);
        return NULL;
    }
    node = rp_alloc__calloc(&x->alloc, 1, sizeof *node);
    if (!node)
        return NULL;
    node->alloc = x->alloc;
    node->pub.type = type;
    return &node->pub;
}

/* hiredis hands children to us one by one, in order; we hang each on its parent array,
 * growing it (up to the announced count) as they come. On failure r is freed. */
static void *attach(const redisReadTask *task, rp_reply *r)
{
    reader_ctx *x = task->privdata;
    reply_node *p;
    size_t idx;
    if (!r || !task->parent)
        return r;
    p = (reply_node *)task->parent->obj;
    idx = (size_t)task->idx;
    if (idx >= p->cap) {
        size_t announced = (size_t)task->parent->elements;
        size_t cap = p->cap ? p->cap * 2 : RP_REPLY_ELEMENTS_FIRST;
        rp_reply **e;
        if (cap > announced || cap < p->cap)
            cap = announced;
        if (cap <= idx || !charge(x, (cap - p->cap) * sizeof *e)) {
            over(x, "an array of %llu elements", (unsigned long long)announced);
            rp_reply_free(r);
            return NULL;
        }
        e = rp_alloc__realloc(&x->alloc, p->pub.element, cap * sizeof *e);
        if (!e) {
            rp_reply_free(r);
            return NULL;
        }
        p->pub.element = e;
        p->cap = cap;
    }
    p->pub.element[idx] = r;
    p->pub.elements = idx + 1;
    return r;
}

static rp_reply_type type_of(int hiredis_type)
{
    switch (hiredis_type) {
    case REDIS_REPLY_STATUS: return RP_REPLY_STATUS;
    case REDIS_REPLY_ERROR: return RP_REPLY_ERROR;
#if HIREDIS_MAJOR >= 1
    case REDIS_REPLY_DOUBLE: return RP_REPLY_DOUBLE;
#endif
    default: return RP_REPLY_STRING; /* bulk, verbatim, big number */
    }
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    reader_ctx *x = task->privdata;
    rp_reply *r = node_new(task, type_of(task->type));
    if (!r)
        return NULL;
    if (len == SIZE_MAX || !charge(x, len + 1)) {
        over(x, "a string of %llu bytes", (unsigned long long)len);
        rp_reply_free(r);
        return NULL;
    }
    r->str = rp_alloc__memdup(&x->alloc, str, len);
    if (!r->str) {
        rp_reply_free(r);
        return NULL;
    }
    r->len = len;
    return attach(task, r);
}

#if HIREDIS_MAJOR >= 1
static void *create_array(const redisReadTask *task, size_t elements)
#else
static void *create_array(const redisReadTask *task, int elements)
#endif
{
    reader_ctx *x = task->privdata;
    rp_reply *r = node_new(task, RP_REPLY_ARRAY);
    size_t n = elements > 0 ? (size_t)elements : 0;
    if (!r)
        return NULL;
    /* the elements are allocated as they arrive; refuse at once what cannot fit */
    if (n > room(x) / RP_REPLY_ELEMENT_MIN) {
        over(x, "an array of %llu elements", (unsigned long long)n);
        rp_reply_free(r);
        return NULL;
    }
    x->reserved += n * RP_REPLY_ELEMENT_MIN;
    return attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    rp_reply *r = node_new(task, RP_REPLY_INTEGER);
    if (r)
        r->integer = value;
    return attach(task, r);
}

static void *create_nil(const redisReadTask *task)
{
    return attach(task, node_new(task, RP_REPLY_NIL));
}

#if HIREDIS_MAJOR >= 1
static void *create_double(const redisReadTask *task, double value, char *str, size_t len)
{
    (void)value;
    return create_string(task, str, len);
}

static void *create_bool(const redisReadTask *task, int value)
{
    rp_reply *r = node_new(task, RP_REPLY_BOOL);
    if (r)
        r->integer = value != 0;
    return attach(task, r);
}
#endif

static void free_object(void *obj) { rp_reply_free(obj); }

static redisReplyObjectFunctions reply_functions = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = create_double,
    .createBool = create_bool,
#endif
    .createNil = create_nil,
    .freeObject = free_object,
};

redisReader *rp_reply__reader_new(const rp_allocator *a, size_t max_reply_size)
{
    reader_ctx *x = rp_alloc__calloc(a, 1, sizeof *x);
    redisReader *r;
    if (!x)
        return NULL;
    x->alloc = *a;
    x->max = max_reply_size;
    r = redisReaderCreateWithFunctions(&reply_functions);
    if (!r) {
        rp_alloc__free(a, x);
        return NULL;
    }
    r->privdata = x;
    return r;
}

void rp_reply__reader_free(redisReader *r)
{
    reader_ctx *x;
    rp_allocator a;
    if (!r)
        return;
    x = r->privdata;
    redisReaderFree(r); /* frees a half-built reply with x's allocator: x goes last */
    if (x) {
        a = x->alloc;
        rp_alloc__free(&a, x);
    }
}

/* The length in a complete "<n>\r\n" at p (len bytes), or -1. */
static long long bulk_length(const char *p, size_t len)
{
    unsigned long long n = 0;
    size_t i = 0;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        n = n * 10 + (unsigned long long)(p[i] - '0');
        if (n > (unsigned long long)LLONG_MAX / 10)
            return LLONG_MAX; /* more than any cap: the digits need not be read out */
    }
    return i > 0 && i < len && p[i] == '\r' ? (long long)n : -1;
}

/* The type of the innermost item hiredis is reading (its type byte is consumed), or -1. */
static int current_type(const redisReader *r)
{
    if (r->ridx < 0)
        return -1;
#if HIREDIS_MAJOR >= 1
    return r->task[r->ridx]->type;
#else
    return r->rstack[r->ridx].type;
#endif
}

static int is_bulk(int type)
{
#if HIREDIS_MAJOR >= 1
    if (type == REDIS_REPLY_VERB)
        return 1;
#endif
    return type == REDIS_REPLY_STRING;
}

/* The reader is waiting for more bytes of an unfinished reply: what it holds for it
 * counts too, and a bulk string announced larger than the rest of the cap fails now
 * rather than once its bytes have been buffered. */
static int check_pending(redisReader *r, reader_ctx *x)
{
    size_t pending = r->len > r->pos ? r->len - r->pos : 0;
    long long bulk = is_bulk(current_type(r)) ? bulk_length(r->buf + r->pos, pending) : -1;
    if (bulk >= 0) {
        /* it will take a node (a child's is in its parent's promise) and len + 1 bytes */
        size_t avail = room(x) + (r->ridx > 0 ? RP_REPLY_ELEMENT_MIN : 0);
        if ((unsigned long long)bulk >= avail ||
            (size_t)bulk + 1 + sizeof(reply_node) > avail) {
            over(x, "a string of %llu bytes", (unsigned long long)bulk);
            return 0;
        }
    }
    if (pending > room(x)) {
        over(x, "%llu bytes of an unfinished item", (unsigned long long)pending);
        return 0;
    }
    return 1;
}

int rp_reply__reader_next(redisReader *r, void **reply)
{
    reader_ctx *x = r->privdata;
    *reply = NULL;
    if (redisReaderGetReply(r, reply) != REDIS_OK)
        return REDIS_ERR;
    if (*reply) {
        x->used = x->reserved = 0; /* the next reply counts from zero */
    } else if (!check_pending(r, x)) {
        /* the reader is dead from here on, as after any error of its own */
        r->err = REDIS_ERR_PROTOCOL;
        snprintf(r->errstr, sizeof r->errstr, "%s", "reply larger than max_reply_size");
        return REDIS_ERR;
    }
    return REDIS_OK;
}

int rp_reply__reader_why(const redisReader *r, const char *prefix, char *why, size_t size)
{
    const reader_ctx *x = r->privdata;
    if (x->over) {
        snprintf(why, size, "reply larger than max_reply_size (%zu bytes): %s", x->max, x->what);
        return RP_EPROTOCOL;
    }
    snprintf(why, size, "%s: %s", prefix, r->errstr);
    return r->err == REDIS_ERR_OOM ? RP_ENOMEM : RP_EPROTOCOL;
}
