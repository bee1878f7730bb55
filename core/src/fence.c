/* Fence check: storage that receives fenced writes keeps the highest token per resource
 * and refuses older ones, atomically in one script. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

#include "op_internal.h"

#define RP_RESOURCE_MAX RP_FENCE_RESOURCE_MAX

typedef struct fence_state {
    rp_buf key;
    int64_t token;
    int sent;
    rp_fence_result result;
} fence_state;

static int fence_advance(rp_op *op, void *state, uint64_t now_ms)
{
    fence_state *s = state;
    const rp_reply *r;
    int rc;
    (void)now_ms;
    if (!s->sent) {
        char token[RP_I64_CHARS];
        size_t n = rp_fmt__i64(token, s->token);
        const char *argv[] = { s->key.data, token };
        size_t lens[] = { s->key.len, n };
        s->sent = 1;
        return rp_op__script(op, 0, "fence_check", 1, 1, argv, lens);
    }
    r = rp_op__reply(op, 0, 0);
    /* fence_check: {1, our token} accepted, {0, a newer one} refused */
    if ((rc = rp_op__expect_array(op, r, "ii", "{accepted, highest}")) ||
        (rc = rp_op__expect_int(op, r->element[0], "accepted", 0, 1)))
        return rc;
    if (r->element[0]->integer == 1
            ? (rc = rp_op__expect_int(op, r->element[1], "the highest token (ours, accepted)",
                                      s->token, s->token))
            : (rc = rp_op__expect_int(op, r->element[1], "the highest token (newer than ours)",
                                      s->token + 1, LLONG_MAX)))
        return rc;
    s->result.accepted = r->element[0]->integer == 1;
    s->result.highest = r->element[1]->integer;
    rp_op__done(op);
    return RP_OK;
}

static void fence_destroy(rp_op *op, void *state)
{
    rp_buf__free(rp_client__allocator(rp_op__client(op)), &((fence_state *)state)->key);
}

static const rp_op_class fence_class = {
    "fence.check", sizeof(fence_state), fence_advance, fence_destroy, 0, NULL, 0, 0, 0, 0
};

int rp_fence_check_op(rp_op **out, rp_client *client, const void *resource,
                      size_t resource_len, int64_t token, rp_error *err)
{
    fence_state *s;
    int rc;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    *out = NULL;
    if (!resource || resource_len == 0)
        return rp_error__set(err, RP_EINVAL, "resource must not be empty");
    if (resource_len > RP_RESOURCE_MAX)
        return rp_error__set(err, RP_EINVAL, "resource must be at most %d bytes", RP_RESOURCE_MAX);
    if (token <= 0)
        return rp_error__set(err, RP_EINVAL, "token must be > 0 (got %" PRId64 ")", token);
    if ((rc = rp_op__new(out, client, &fence_class, 1, (void **)&s, err)))
        return rc;
    s->token = token;
    if (rp_key__build(client, "fence", resource, resource_len, "", &s->key)) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory building the fence key");
    }
    return RP_OK;
}

int rp_fence_check_result(const rp_op *op, rp_fence_result *out)
{
    const fence_state *s = rp_op__done_state(op, &fence_class);
    if (!s || !out)
        return RP_ESTATE;
    *out = s->result;
    return RP_OK;
}

int rp_fence_check(rp_client *client, const void *resource, size_t resource_len,
                   int64_t token, rp_fence_result *out, rp_error *err)
{
    rp_op *op;
    int rc = rp_fence_check_op(&op, client, resource, resource_len, token, err);
    if (rc)
        return rc;
    if ((rc = rp_client_run(client, op, err)) == RP_OK && out)
        rp_fence_check_result(op, out);
    rp_op_free(op);
    return rc;
}
