/* Descriptors of the client's own ops: client.new, client.handshake, client.command. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "desc_internal.h"

#define SELF_CLIENT { "client", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CLIENT, \
                      RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, \
                      "the client the op runs on" }
#define NAMESPACE_MAX RP_CLIENT_NAMESPACE_MAX
#define TIMEOUT_MAX ((int64_t)UINT32_MAX)

/* --- client.new --------------------------------------------------------------------- */

enum { NEW_URL, NEW_NAMESPACE, NEW_CONNECT_TIMEOUT, NEW_COMMAND_TIMEOUT, NEW_KEEPALIVE,
       NEW_MAX_REPLY_SIZE, NEW_TLS_CA_FILE, NEW_TLS_CERT_FILE, NEW_TLS_KEY_FILE,
       NEW_TLS_SERVER_NAME, NEW_TLS_VERIFY };
#define TLS_STRING_ARGS 4 /* NEW_TLS_CA_FILE .. NEW_TLS_SERVER_NAME */
#define TLS_STRING_MAX 4096 /* bytes in a path or a server name */
#define MAX_REPLY_SIZE_MAX (SIZE_MAX < INT64_MAX ? (int64_t)SIZE_MAX : INT64_MAX)

static const rp_arg_desc new_args[] = {
    { "url", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, INT64_MAX, 0, 0, NULL,
      "redis://[[user]:password@]host[:port][/db] (rediss://: over TLS) or "
      "unix://[[user]:password@]/path[?db=N][&password=...]; absent: no "
      "connection (ops only, for drivers with their own I/O)" },
    { "namespace", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, NAMESPACE_MAX, 0, 0,
      NULL, "prefix of every key (default \"redpat\"; no '{', '}' or NUL)" },
    { "connect_timeout", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_CLIENT_TIMEOUT_MS_DEFAULT, 1, TIMEOUT_MAX, 0, 0,
      NULL, "how long connecting may take" },
    { "command_timeout", RP_TYPE_MS, RP_TYPE_NONE, RP_KIND_NONE, 0, RP_CLIENT_TIMEOUT_MS_DEFAULT, 1, TIMEOUT_MAX, 0, 0,
      NULL, "how long one request/reply exchange may take" },
    { "tcp_keepalive", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 1, 0, 1, 0, 0, NULL,
      "enable TCP keepalive probes" },
    { "max_reply_size", RP_TYPE_INT, RP_TYPE_NONE, RP_KIND_NONE, 0,
      (int64_t)RP_CLIENT_MAX_REPLY_SIZE_DEFAULT, (int64_t)RP_CLIENT_MAX_REPLY_SIZE_MIN,
      MAX_REPLY_SIZE_MAX, 0, 0, NULL,
      "the most memory one reply may take, in bytes (default 512 MiB); a larger one fails "
      "with a protocol error" },
    { "tls_ca_file", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, TLS_STRING_MAX, 0, 0,
      NULL, "PEM file of the CAs to trust for rediss:// (absent: the system's default store)" },
    { "tls_cert_file", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, TLS_STRING_MAX, 0,
      0, NULL, "PEM client certificate for rediss:// (with tls_key_file)" },
    { "tls_key_file", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, TLS_STRING_MAX, 0, 0,
      NULL, "PEM private key of tls_cert_file (unencrypted)" },
    { "tls_server_name", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 1, TLS_STRING_MAX, 0,
      0, NULL, "name sent as SNI and checked against the server's certificate (absent: the "
      "url's host)" },
    { "tls_verify", RP_TYPE_BOOL, RP_TYPE_NONE, RP_KIND_NONE, 0, 1, 0, 1, 0, 0, NULL,
      "check the server's certificate (false: no check at all)" },
};

static int client_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_op_desc *self = &rp_desc__client_ops[0];
    const rp_allocator *al = rp_allocator_default();
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    char ns[NAMESPACE_MAX + 1];
    char *url = NULL;
    char *tls[TLS_STRING_ARGS] = { NULL, NULL, NULL, NULL };
    const char **tls_to[TLS_STRING_ARGS] = { &o.tls_ca_file, &o.tls_cert_file, &o.tls_key_file,
                                             &o.tls_server_name };
    int rc = RP_OK, i;
    if (a[NEW_NAMESPACE].type == RP_TYPE_BYTES) {
        if (memchr(a[NEW_NAMESPACE].bytes, '\0', a[NEW_NAMESPACE].len))
            return rp_error__set(err, RP_EINVAL, "%s must not contain NUL bytes",
                                 rp_desc__arg_name(nm, self, NEW_NAMESPACE));
        if (memchr(a[NEW_NAMESPACE].bytes, '{', a[NEW_NAMESPACE].len) ||
            memchr(a[NEW_NAMESPACE].bytes, '}', a[NEW_NAMESPACE].len))
            return rp_error__set(err, RP_EINVAL, "%s must not contain '{' or '}' (they would "
                                 "change every key's cluster hash slot)",
                                 rp_desc__arg_name(nm, self, NEW_NAMESPACE));
        memcpy(ns, a[NEW_NAMESPACE].bytes, a[NEW_NAMESPACE].len);
        ns[a[NEW_NAMESPACE].len] = '\0';
        o.key_namespace = ns;
    }
    if (a[NEW_URL].type == RP_TYPE_BYTES) {
        if (memchr(a[NEW_URL].bytes, '\0', a[NEW_URL].len))
            return rp_error__set(err, RP_EINVAL, "%s must not contain NUL bytes",
                                 rp_desc__arg_name(nm, self, NEW_URL));
        if (!(url = rp_alloc__malloc(al, a[NEW_URL].len + 1)))
            return rp_error__set(err, RP_ENOMEM, "out of memory copying the url");
        memcpy(url, a[NEW_URL].bytes, a[NEW_URL].len);
        url[a[NEW_URL].len] = '\0';
        o.url = url;
    }
    o.connect_timeout_ms = (uint32_t)a[NEW_CONNECT_TIMEOUT].i;
    o.command_timeout_ms = (uint32_t)a[NEW_COMMAND_TIMEOUT].i;
    o.tcp_keepalive = (int)a[NEW_KEEPALIVE].i;
    o.max_reply_size = (size_t)a[NEW_MAX_REPLY_SIZE].i;
    o.tls_verify = (int)a[NEW_TLS_VERIFY].i;
    for (i = 0; i < TLS_STRING_ARGS && rc == RP_OK; i++) {
        const rp_value *v = &a[NEW_TLS_CA_FILE + i];
        if (v->type != RP_TYPE_BYTES)
            continue;
        if (memchr(v->bytes, '\0', v->len))
            rc = rp_error__set(err, RP_EINVAL, "%s must not contain NUL bytes",
                               rp_desc__arg_name(nm, self, (size_t)(NEW_TLS_CA_FILE + i)));
        else if (!(tls[i] = rp_alloc__malloc(al, v->len + 1)))
            rc = rp_error__set(err, RP_ENOMEM, "out of memory copying the tls options");
        else
            memcpy(tls[i], v->bytes, v->len), tls[i][v->len] = '\0';
        *tls_to[i] = tls[i];
    }
    if (rc == RP_OK)
        rc = rp_client_new((rp_client **)out, &o, err);
    rp_alloc__free(al, url);
    for (i = 0; i < TLS_STRING_ARGS; i++)
        rp_alloc__free(al, tls[i]);
    return rc;
}

/* --- client.handshake --------------------------------------------------------------- */

static const rp_arg_desc self_args[] = { SELF_CLIENT };

static int handshake_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_client_handshake_op(out, a[0].handle, err);
}

/* --- client.command ----------------------------------------------------------------- */

static const rp_arg_desc command_args[] = {
    SELF_CLIENT,
    { "argv", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1, INT_MAX, 0,
      INT64_MAX, NULL, "the command and its arguments (binary-safe)" },
    { "key", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, 0, 0, 0, INT64_MAX, 0, 0, NULL,
      "on a cluster: send the command to the master of this key's hash slot (absent: the "
      "command's own keys decide; a command without keys needs one); no effect on one node" },
};

static const rp_field_desc command_fields[] = {
    { "reply", RP_TYPE_REPLY, "Redis' reply (an error reply is a value here, not a failure)" },
};

static int command_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    const rp_allocator *al = rp_client__allocator(a[0].handle);
    const rp_value *items = a[1].items;
    size_t i, n = a[1].count;
    const char **argv = rp_alloc__calloc(al, n, sizeof *argv);
    size_t *lens = rp_alloc__calloc(al, n, sizeof *lens);
    int rc;
    (void)nm;
    if (!argv || !lens) {
        rc = rp_error__set(err, RP_ENOMEM, "out of memory for the command's arguments");
    } else {
        for (i = 0; i < n; i++) {
            argv[i] = items[i].bytes ? items[i].bytes : "";
            lens[i] = items[i].len;
        }
        rc = rp_command_op_key(out, a[0].handle, (int)n, argv, lens,
                               a[2].type == RP_TYPE_BYTES ? (a[2].bytes ? a[2].bytes : "") : NULL,
                               a[2].len, err);
    }
    rp_alloc__free(al, argv);
    rp_alloc__free(al, lens);
    return rc;
}

static int command_result(const rp_op *op, size_t index, rp_value *f)
{
    const rp_reply *r = NULL;
    int rc = rp_command_result(op, &r);
    (void)index;
    if (rc == RP_OK) {
        f[0].type = RP_TYPE_REPLY;
        f[0].reply = r;
    }
    return rc;
}

#define N(a) (sizeof a / sizeof a[0])

const rp_op_desc rp_desc__client_ops[] = {
    { "client.new", "new", RP_KIND_NONE, RP_KIND_CLIENT, 0, new_args, N(new_args),
      RP_RESULT_NONE, NULL, 0, "a client: configuration, scripts and (with a url) a connection",
      NULL, client_make, NULL, NULL, RP_DESC_PLAIN },
    { "client.handshake", "handshake", RP_KIND_CLIENT, RP_KIND_NONE, 1, self_args,
      N(self_args), RP_RESULT_NONE, NULL, 0,
      "what a fresh connection needs first (AUTH, SELECT from the url); DONE without I/O "
      "when nothing is needed", handshake_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "client.command", "command", RP_KIND_CLIENT, RP_KIND_NONE, 1, command_args,
      N(command_args), RP_RESULT_RECORD, command_fields, N(command_fields),
      "a raw Redis command", command_begin, NULL, NULL, command_result, RP_DESC_PLAIN },
};

const size_t rp_desc__client_count = N(rp_desc__client_ops);
