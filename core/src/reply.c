/* Replies in redpat's own model, built directly by hiredis' redisReader through its
 * object callbacks, so no hiredis type outlives the parse and our allocator owns the tree. */
#include <string.h>

#include "reply_internal.h"

/* Each node carries its allocator, so a reply can be freed after the op that made it. */
typedef struct reply_node {
    rp_reply pub;
    rp_allocator alloc;
} reply_node;

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

static rp_reply *node_new(const redisReadTask *task, rp_reply_type type)
{
    const rp_allocator *a = task->privdata;
    reply_node *node = rp_alloc__calloc(a, 1, sizeof *node);
    if (!node)
        return NULL;
    node->alloc = *a;
    node->pub.type = type;
    return &node->pub;
}

/* hiredis hands children to us one by one; we hang each on its parent array. */
static void *attach(const redisReadTask *task, rp_reply *r)
{
    if (r && task->parent) {
        rp_reply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
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
    rp_reply *r = node_new(task, type_of(task->type));
    if (!r)
        return NULL;
    r->str = rp_alloc__memdup(task->privdata, str, len);
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
    rp_reply *r = node_new(task, RP_REPLY_ARRAY);
    if (!r)
        return NULL;
    if (elements > 0) {
        r->element = rp_alloc__calloc(task->privdata, (size_t)elements, sizeof *r->element);
        if (!r->element) {
            rp_reply_free(r);
            return NULL;
        }
        r->elements = (size_t)elements;
    }
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

redisReader *rp_reply__reader_new(const rp_allocator *a)
{
    redisReader *r = redisReaderCreateWithFunctions(&reply_functions);
    if (r)
        r->privdata = (void *)(uintptr_t)a; /* read-only use: see node_new */
    return r;
}

void rp_reply__reader_free(redisReader *r)
{
    if (r)
        redisReaderFree(r);
}
