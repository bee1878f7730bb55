/* The client: validated configuration, the script registry, one transport. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster_map.h"
#include "op_internal.h"
#include "script.h"
#include "transport_hiredis.h"
#include "url.h"

#define RP_NAMESPACE_MAX RP_CLIENT_NAMESPACE_MAX
#define RP_CLIENT_TLS_STRINGS 4 /* tls_ca_file, tls_cert_file, tls_key_file, tls_server_name */

struct rp_client {
    rp_allocator alloc;
    char ns[RP_NAMESPACE_MAX + 1];
    rp_script_registry scripts;
    rp_transport *transport; /* NULL: ops only, driven elsewhere */
    rp_client_options options; /* as given (url and allocator not kept; the tls_*
                                  strings point to tls_strings) */
    char *tls_strings[RP_CLIENT_TLS_STRINGS]; /* owned copies */
    rp_url *urls;            /* the endpoints, one per URL */
    size_t nurls;
    rp_cluster_map **maps;   /* per URL: its slot map when it is a cluster, else NULL */
};

rp_cluster_map *rp_client__cluster(const rp_client *c, size_t endpoint)
{
    return c && c->maps && endpoint < c->nurls ? c->maps[endpoint] : NULL;
}

static int make_maps(rp_client *c)
{
    size_t i;
    if (!(c->maps = rp_alloc__calloc(&c->alloc, c->nurls, sizeof *c->maps)))
        return RP_ENOMEM;
    for (i = 0; i < c->nurls; i++)
        if (c->urls[i].cluster && !(c->maps[i] = rp_cluster_map__new(&c->urls[i], &c->alloc)))
            return RP_ENOMEM;
    return RP_OK;
}

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
    if (o->max_reply_size != 0 && o->max_reply_size < RP_CLIENT_MAX_REPLY_SIZE_MIN)
        return rp_error__set(err, RP_EINVAL, "max_reply_size must be >= %zu bytes (got %zu)",
                             RP_CLIENT_MAX_REPLY_SIZE_MIN, o->max_reply_size);
    return RP_OK;
}

/* The tls_* options against the parsed URLs, before any I/O: a file that cannot be read
 * or half a client certificate is named here, and TLS options with no rediss:// URL are a
 * mistake, not something to ignore. */
static int check_tls(const rp_client_options *o, const rp_url *urls, size_t nurls,
                     rp_error *err)
{
    const char *const files[3] = { o->tls_ca_file, o->tls_cert_file, o->tls_key_file };
    static const char *const names[3] = { "tls_ca_file", "tls_cert_file", "tls_key_file" };
    const char *given = NULL;
    size_t i;
    int any_tls = 0;
    for (i = 0; i < nurls; i++)
        any_tls |= urls[i].tls;
    for (i = 0; i < 3 && !given; i++)
        if (files[i])
            given = names[i];
    if (!given && o->tls_server_name)
        given = "tls_server_name";
    if (!given && !o->tls_verify)
        given = "tls_verify";
    if (given && !any_tls)
        return rp_error__set(err, RP_EINVAL, "%s given but no url is rediss://", given);
    if (o->tls_server_name && !*o->tls_server_name)
        return rp_error__set(err, RP_EINVAL, "tls_server_name must not be empty");
    if (!o->tls_cert_file != !o->tls_key_file)
        return rp_error__set(err, RP_EINVAL, o->tls_cert_file
                                 ? "tls_cert_file given without tls_key_file (both or neither)"
                                 : "tls_key_file given without tls_cert_file (both or neither)");
    for (i = 0; i < 3; i++) {
        FILE *f;
        if (!files[i])
            continue;
        if (!*files[i] || !(f = fopen(files[i], "r")))
            return rp_error__set(err, RP_EINVAL, "%s: cannot read \"%.200s\": %s", names[i],
                                 files[i], *files[i] ? strerror(errno) : "empty path");
        fclose(f);
    }
    return RP_OK;
}

/* Copies the tls_* strings into the client's options (a helper transport of drive.c is
 * made from them later). */
static int keep_tls(rp_client *c, const rp_client_options *o)
{
    const char *const from[RP_CLIENT_TLS_STRINGS] = { o->tls_ca_file, o->tls_cert_file,
                                                      o->tls_key_file, o->tls_server_name };
    const char **to[RP_CLIENT_TLS_STRINGS] = { &c->options.tls_ca_file, &c->options.tls_cert_file,
                                               &c->options.tls_key_file,
                                               &c->options.tls_server_name };
    size_t i;
    for (i = 0; i < RP_CLIENT_TLS_STRINGS; i++) {
        *to[i] = NULL;
        if (from[i] && !(c->tls_strings[i] = rp_alloc__memdup(&c->alloc, from[i],
                                                               strlen(from[i]) + 1)))
            return RP_ENOMEM;
        *to[i] = c->tls_strings[i];
    }
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
    c->options = *o;
    c->options.url = NULL;
    c->options.key_namespace = NULL;
    c->options.allocator = NULL;
    if (keep_tls(c, o) != RP_OK) {
        rp_client_free(c);
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the client");
    }
    if (c->options.max_reply_size == 0)
        c->options.max_reply_size = RP_CLIENT_MAX_REPLY_SIZE_DEFAULT;
    if (rp_script__registry_init(&c->scripts, &c->alloc) != RP_OK) {
        rp_client_free(c);
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the client");
    }
    if (use_url && o->url) {
        if ((rc = rp_url__parse_list(&c->urls, &c->nurls, RP_CLIENT_ENDPOINTS_MAX, o->url,
                                     &c->alloc, err))) {
            rp_client_free(c);
            return rc;
        }
        if (make_maps(c) != RP_OK) {
            rp_client_free(c);
            return rp_error__set(err, RP_ENOMEM, "out of memory creating the client");
        }
    }
    if ((rc = check_tls(o, c->urls, c->nurls, err))) {
        rp_client_free(c);
        return rc;
    }
    if (use_url && o->url) {
        if ((rc = rp_transport__hiredis_new(&c->transport, &c->options, &c->alloc, err))) {
            rp_client_free(c);
            return rc;
        }
    }
    *out = c;
    return RP_OK;
}

int rp_client_new(rp_client **out, const rp_client_options *options, rp_error *err)
{
    return client_new(out, options, NULL, 1, err);
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
    for (size_t i = 0; i < RP_CLIENT_TLS_STRINGS; i++)
        rp_alloc__free(&a, c->tls_strings[i]);
    for (size_t i = 0; c->maps && i < c->nurls; i++)
        rp_cluster_map__free(c->maps[i]);
    rp_alloc__free(&a, c->maps);
    for (size_t i = 0; i < c->nurls; i++)
        rp_url__free(&c->urls[i], &a);
    rp_alloc__free(&a, c->urls);
    rp_alloc__free(&a, c);
}

rp_transport *rp_client_transport(rp_client *c)
{
    return c ? c->transport : NULL;
}

void rp_client_disconnect(rp_client *c)
{
    if (c)
        rp_transport__hiredis_disconnect(c->transport);
}

/* rp_client_run and rp_client_run_sleeping: drive.c (thin wrappers of rp_client_drive). */

int rp_client_endpoint(const rp_client *c, rp_endpoint *out)
{
    return rp_client_endpoint_at(c, 0, out);
}

size_t rp_client_endpoints(const rp_client *c) { return c ? c->nurls : 0; }

int rp_client_endpoint_at(const rp_client *c, size_t index, rp_endpoint *out)
{
    if (!c || !out || index >= c->nurls)
        return RP_EINVAL;
    rp_url__endpoint(&c->urls[index], out);
    return RP_OK;
}

const rp_client_options *rp_client__options(const rp_client *c) { return &c->options; }

/* --- the connection handshake as an op, for drivers with their own sockets ---------- */

typedef struct handshake_state {
    int sent;
    rp_endpoint ep;  /* strings point into mem */
    char *mem;
} handshake_state;

static int handshake_advance(rp_op *op, void *state, uint64_t now_ms)
{
    handshake_state *s = state;
    size_t i;
    int rc;
    (void)now_ms;
    if (!s->sent) {
        rp_url_command cmds[RP_HANDSHAKE_MAX];
        size_t n = rp_url__endpoint_handshake(&s->ep, cmds);
        s->sent = 1;
        for (i = 0; i < n; i++)
            if ((rc = rp_op__command(op, 0, cmds[i].argc, cmds[i].argv, cmds[i].lens)))
                return rc;
        if (n == 0)
            rp_op__done(op);
        return RP_OK;
    }
    /* AUTH and SELECT answer exactly +OK: anything else is no success (RP_EAUTH when the
     * credentials were refused). The failure names the command, as the blocking
     * transport's does ("AUTH failed: WRONGPASS ..."). */
    for (i = 0; i < rp_op__replies(op, 0); i++) {
        char why[RP_ERROR_MESSAGE_MAX - 32];
        if ((rc = rp_reply__handshake_status(rp_op__reply(op, 0, i), why, sizeof why))) {
            rp_url_command cmds[RP_HANDSHAKE_MAX];
            size_t n = rp_url__endpoint_handshake(&s->ep, cmds);
            return rp_op__fail(op, rc, "%s: %s failed: %s", rp_op_name(op),
                               i < n ? cmds[i].argv[0] : "a command", why);
        }
    }
    rp_op__done(op);
    return RP_OK;
}

static void handshake_destroy(rp_op *op, void *state)
{
    handshake_state *s = state;
    rp_alloc__free(rp_client__allocator(rp_op__client(op)), s->mem);
}

static const rp_op_class handshake_class = {
    "handshake", sizeof(handshake_state), handshake_advance, handshake_destroy, 0, NULL, 0, 0, 1, 0
};

/* Copies the strings of ep the handshake needs into one block. */
static int keep_endpoint(handshake_state *s, const rp_allocator *a, const rp_endpoint *ep)
{
    const char *parts[2] = { ep->user, ep->password };
    size_t lens[2] = { ep->user ? strlen(ep->user) + 1 : 0, ep->password ? strlen(ep->password) + 1 : 0 };
    char *p;
    s->ep = *ep;
    s->ep.address = s->ep.host = s->ep.path = NULL;
    if (lens[0] + lens[1] == 0)
        return RP_OK;
    if (!(s->mem = p = rp_alloc__malloc(a, lens[0] + lens[1])))
        return RP_ENOMEM;
    memcpy(p, parts[0] ? parts[0] : "", lens[0]);
    s->ep.user = parts[0] ? p : NULL;
    memcpy(p + lens[0], parts[1] ? parts[1] : "", lens[1]);
    s->ep.password = parts[1] ? p + lens[0] : NULL;
    return RP_OK;
}

int rp_endpoint_handshake_op(rp_op **out, rp_client *c, const rp_endpoint *ep, rp_error *err)
{
    void *state;
    int rc;
    if (!out || !c || !ep)
        return rp_error__set(err, RP_EINVAL, "out, client and endpoint must not be NULL");
    *out = NULL;
    if ((rc = rp_op__new(out, c, &handshake_class, 1, &state, err)))
        return rc;
    if (keep_endpoint(state, &c->alloc, ep) != RP_OK) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the handshake");
    }
    return RP_OK;
}

int rp_client_handshake_op(rp_op **out, rp_client *c, rp_error *err)
{
    rp_endpoint ep;
    if (!out || !c)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    *out = NULL;
    if (rp_client_endpoint_at(c, 0, &ep) != RP_OK)
        return rp_error__set(err, RP_EINVAL, "this client was made without a url");
    return rp_endpoint_handshake_op(out, c, &ep, err);
}
