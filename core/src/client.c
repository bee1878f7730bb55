/* The client: validated configuration, the script registry, one transport. */
#include <string.h>

#include "op_internal.h"
#include "script.h"
#include "transport_hiredis.h"

#define RP_NAMESPACE_MAX 128

struct rp_client {
    rp_allocator alloc;
    char ns[RP_NAMESPACE_MAX + 1];
    rp_script_registry scripts;
    rp_transport *transport; /* NULL: ops only, driven elsewhere */
};

const rp_allocator *rp_client__allocator(const rp_client *c) { return &c->alloc; }
const rp_script_registry *rp_client__scripts(const rp_client *c) { return &c->scripts; }
const char *rp_client_namespace(const rp_client *c) { return c->ns; }

static int check_options(const rp_client_options *o, rp_error *err)
{
    const char *ns = o->key_namespace ? o->key_namespace : "redpat";
    size_t len = strlen(ns);
    if (len == 0 || len > RP_NAMESPACE_MAX)
        return rp_error__set(err, RP_EINVAL, "key_namespace must be 1..%d bytes (got %zu)",
                             RP_NAMESPACE_MAX, len);
    if (strpbrk(ns, "{}"))
        return rp_error__set(err, RP_EINVAL,
                             "key_namespace must not contain '{' or '}' (they would change "
                             "every key's cluster hash slot)");
    if (o->connect_timeout_ms == 0)
        return rp_error__set(err, RP_EINVAL, "connect_timeout_ms must be > 0");
    if (o->command_timeout_ms == 0)
        return rp_error__set(err, RP_EINVAL, "command_timeout_ms must be > 0");
    if (o->allocator && (!o->allocator->malloc_fn || !o->allocator->realloc_fn ||
                         !o->allocator->free_fn))
        return rp_error__set(err, RP_EINVAL, "allocator must set malloc_fn, realloc_fn and free_fn");
    return RP_OK;
}

static int client_new(rp_client **out, const rp_client_options *options, rp_transport *t,
                      int use_url, rp_error *err)
{
    static const rp_client_options defaults = RP_CLIENT_OPTIONS_INIT;
    const rp_client_options *o = options ? options : &defaults;
    const rp_allocator *a;
    rp_client *c;
    int rc;
    if (!out) {
        if (t) t->cls->destroy(t);
        return rp_error__set(err, RP_EINVAL, "out must not be NULL");
    }
    *out = NULL;
    if ((rc = check_options(o, err))) {
        if (t) t->cls->destroy(t);
        return rc;
    }
    a = o->allocator ? o->allocator : rp_allocator_default();
    c = rp_alloc__calloc(a, 1, sizeof *c);
    if (!c) {
        if (t) t->cls->destroy(t);
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the client");
    }
    c->alloc = *a;
    strcpy(c->ns, o->key_namespace ? o->key_namespace : "redpat");
    c->transport = t;
    if (rp_script__registry_init(&c->scripts, &c->alloc) != RP_OK) {
        rp_client_free(c);
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the client");
    }
    if (use_url && o->url &&
        (rc = rp_transport__hiredis_new(&c->transport, o->url, o, &c->alloc, err))) {
        rp_client_free(c);
        return rc;
    }
    *out = c;
    return RP_OK;
}

int rp_client_new(rp_client **out, const rp_client_options *options, rp_error *err)
{
    return client_new(out, options, NULL, 1, err);
}

int rp_client_new_with_transport(rp_client **out, const rp_client_options *options,
                                 rp_transport *transport, rp_error *err)
{
    if (!transport)
        return rp_error__set(err, RP_EINVAL, "transport must not be NULL");
    return client_new(out, options, transport, 0, err);
}

void rp_client_free(rp_client *c)
{
    rp_allocator a;
    if (!c)
        return;
    a = c->alloc;
    if (c->transport)
        c->transport->cls->destroy(c->transport);
    rp_script__registry_free(&c->scripts, &a);
    rp_alloc__free(&a, c);
}

void rp_client_disconnect(rp_client *c)
{
    if (c)
        rp_transport__hiredis_disconnect(c->transport);
}

int rp_client_run(rp_client *c, rp_op *op, rp_error *err)
{
    if (!c || !op)
        return rp_error__set(err, RP_EINVAL, "client and op must not be NULL");
    if (!c->transport)
        return rp_error__set(err, RP_EINVAL,
                             "this client has no connection (made without a url): drive the op yourself");
    if (rp_op__client(op) != c)
        return rp_error__set(err, RP_EINVAL, "op belongs to another client");
    return rp_op_run(op, c->transport, err);
}
