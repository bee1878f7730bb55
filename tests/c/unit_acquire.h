/* What the unit tests of acquires with a request in flight (unit_cancel.c, unit_doubt.c)
 * share: a lock "r" with a known token, its acquire op, canned replies fed by hand. */
#ifndef REDPAT_UNIT_ACQUIRE_H
#define REDPAT_UNIT_ACQUIRE_H

#include "unit_util.h"

#define T0 1000u
#define TTL_MS 30000
#define TOKEN "tok-123"

static const char *const URLS3 = "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3";

static inline int feed(rp_op *op, size_t node, const char *reply)
{
    return rp_op_feed(op, node, reply, strlen(reply));
}

/* The request for node runs lock_release with our token. */
static inline int releases_with_token(rp_op *op, rp_client *c, size_t node)
{
    const rp_script *s = rp_script__find(rp_client__scripts(c), "lock_release");
    return s && unit_request_has(op, node, s->sha1) && unit_request_has(op, node, TOKEN);
}

static inline rp_lock *lock1(rp_client *c, int fenced)
{
    rp_lock_options o = RP_LOCK_OPTIONS_INIT;
    rp_lock *l = NULL;
    o.ttl_ms = TTL_MS;
    o.fenced = fenced;
    if (rp_lock_new(&l, c, "r", 1, &o, NULL) != RP_OK)
        abort();
    return l;
}

static inline rp_op *acquire(rp_lock *l, int64_t wait_ms)
{
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op = NULL;
    o.token = TOKEN;
    o.token_len = strlen(TOKEN);
    o.wait_ms = wait_ms;
    if (rp_lock_acquire_op(&op, l, &o, NULL) != RP_OK)
        abort();
    return op;
}

#endif
