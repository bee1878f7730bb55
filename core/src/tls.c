/* TLS with OpenSSL directly over the transport's socket (hiredis only connects: Debian's
 * hiredis 0.14 has no TLS, and hiredis_ssl would own the socket's reads and writes, which
 * the transport does itself in one poll loop for all the round's targets). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

struct rp_tls {
    rp_allocator alloc;
    SSL_CTX *ctx;
    BIO_METHOD *bio;       /* our socket BIO: send/recv with MSG_NOSIGNAL | MSG_DONTWAIT */
    int verify;
    char *server_name;     /* tls_server_name, owned; NULL: each URL's host */
};

struct rp_tls_conn {
    rp_tls *tls;           /* borrowed: the transport frees its sessions first */
    SSL *ssl;
    int fd;
    int sys_errno;         /* errno of the BIO's last failed send/recv (0: none, or EOF) */
};

/* --- the socket BIO ----------------------------------------------------------------- */

/* OpenSSL's own socket BIO writes with write(): a peer that closed would raise SIGPIPE in
 * the caller's process, which the plain path avoids with MSG_NOSIGNAL. So: our own. */
static int bio_write(BIO *b, const char *buf, int len)
{
    rp_tls_conn *c = BIO_get_data(b);
    ssize_t n = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    BIO_clear_retry_flags(b);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_write(b);
        else
            c->sys_errno = errno;
        return -1;
    }
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    rp_tls_conn *c = BIO_get_data(b);
    ssize_t n = recv(c->fd, buf, (size_t)len, MSG_DONTWAIT);
    BIO_clear_retry_flags(b);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        else
            c->sys_errno = errno;
        return -1;
    }
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* --- the configuration -------------------------------------------------------------- */

/* OpenSSL's reason for the first error of this thread ("no start line"): the cause, where
 * the last one is what gave up ("PEM lib"). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

void rp_tls__free(rp_tls *tls)
{
    if (!tls)
        return;
    SSL_CTX_free(tls->ctx);
    if (tls->bio)
        BIO_meth_free(tls->bio);
    rp_alloc__free(&tls->alloc, tls->server_name);
    rp_alloc__free(&tls->alloc, tls);
}

static int fail_new(rp_tls *tls, rp_error *err, int code, const char *what, const char *file)
{
    if (file)
        rp_error__set(err, code, "%s \"%.200s\": %s", what, file, ssl_reason());
    else
        rp_error__set(err, code, "%s: %s", what, ssl_reason());
    ERR_clear_error();
    rp_tls__free(tls);
    return code;
}

int rp_tls__new(rp_tls **out, const rp_client_options *o, const rp_allocator *a, rp_error *err)
{
    rp_tls *tls = rp_alloc__calloc(a, 1, sizeof *tls);
    *out = NULL;
    if (!tls)
        return rp_error__set(err, RP_ENOMEM, "out of memory setting up TLS");
    tls->alloc = *a;
    tls->verify = o->tls_verify;
    ERR_clear_error();
    if (o->tls_server_name &&
        !(tls->server_name = rp_alloc__memdup(a, o->tls_server_name, strlen(o->tls_server_name) + 1))) {
        rp_tls__free(tls);
        return rp_error__set(err, RP_ENOMEM, "out of memory setting up TLS");
    }
    if (!(tls->ctx = SSL_CTX_new(TLS_client_method())))
        return fail_new(tls, err, RP_ENOMEM, "TLS setup failed", NULL);
    if (!(tls->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "redpat socket")) ||
        !BIO_meth_set_write(tls->bio, bio_write) || !BIO_meth_set_read(tls->bio, bio_read) ||
        !BIO_meth_set_ctrl(tls->bio, bio_ctrl) || !BIO_meth_set_create(tls->bio, bio_create))
        return fail_new(tls, err, RP_ENOMEM, "TLS setup failed", NULL);
    SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
    /* the transport repeats a waiting write from where it stopped */
    SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* RESP delimits every reply itself: an EOF is "closed by peer", never a short read */
    SSL_CTX_set_options(tls->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(tls->ctx, tls->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->tls_ca_file) {
        if (SSL_CTX_load_verify_locations(tls->ctx, o->tls_ca_file, NULL) != 1)
            return fail_new(tls, err, RP_EINVAL, "tls_ca_file", o->tls_ca_file);
    } else if (tls->verify && SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
        return fail_new(tls, err, RP_EINVAL, "TLS: cannot load the system's CA store", NULL);
    }
    if (o->tls_cert_file) {
        if (SSL_CTX_use_certificate_chain_file(tls->ctx, o->tls_cert_file) != 1)
            return fail_new(tls, err, RP_EINVAL, "tls_cert_file", o->tls_cert_file);
        if (SSL_CTX_use_PrivateKey_file(tls->ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
                return fail_new(tls, err, RP_EINVAL, "tls_key_file", o->tls_key_file);
            rp_error__set(err, RP_EINVAL, "tls_key_file \"%.200s\" is not the key of "
                          "tls_cert_file", o->tls_key_file);
            ERR_clear_error();
            rp_tls__free(tls);
            return RP_EINVAL;
        }
        if (SSL_CTX_check_private_key(tls->ctx) != 1)
            return fail_new(tls, err, RP_EINVAL, "tls_key_file does not match tls_cert_file",
                            NULL);
    }
    *out = tls;
    return RP_OK;
}

/* --- sessions ----------------------------------------------------------------------- */

static int is_ip_address(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

void rp_tls__conn_free(rp_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl); /* no SSL_shutdown: it would write, also from a forked child */
    rp_alloc__free(&c->tls->alloc, c);
}

int rp_tls__conn_new(rp_tls_conn **out, rp_tls *tls, int fd, const char *host, char *why,
                     size_t whylen)
{
    const char *name = tls->server_name ? tls->server_name : host;
    rp_tls_conn *c = rp_alloc__calloc(&tls->alloc, 1, sizeof *c);
    BIO *bio;
    int ip = is_ip_address(name), ok;
    *out = NULL;
    if (!c) {
        snprintf(why, whylen, "out of memory starting TLS");
        return RP_ENOMEM;
    }
    c->tls = tls;
    c->fd = fd;
    ERR_clear_error();
    if (!(c->ssl = SSL_new(tls->ctx)) || !(bio = BIO_new(tls->bio))) {
        snprintf(why, whylen, "TLS setup failed: %s", ssl_reason());
        rp_tls__conn_free(c);
        return RP_ENOMEM;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio);
    ok = 1;
    if (tls->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) : X509_VERIFY_PARAM_set1_host(param, name, 0);
    }
    /* SNI carries host names only (RFC 6066): never an address */
    if (ok && !ip)
        ok = SSL_set_tlsext_host_name(c->ssl, name) == 1;
    if (!ok) {
        snprintf(why, whylen, "TLS setup failed for server name \"%.100s\": %s", name, ssl_reason());
        ERR_clear_error();
        rp_tls__conn_free(c);
        return RP_ETRANSPORT;
    }
    SSL_set_connect_state(c->ssl);
    *out = c;
    return RP_OK;
}

/* Classifies a failed SSL call (ret <= 0). */
static int ssl_outcome(rp_tls_conn *c, int ret, int handshake, char *why, size_t whylen)
{
    int e = SSL_get_error(c->ssl, ret);
    long v;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return RP_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return RP_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (c->sys_errno == 0 && ERR_peek_error() == 0) {
            if (!handshake)
                return 0; /* EOF */
            snprintf(why, whylen, "connection closed by the server (does it speak TLS on this port?)");
        } else {
            snprintf(why, whylen, "%s", c->sys_errno ? strerror(c->sys_errno) : ssl_reason());
        }
        break;
    default:
        v = SSL_get_verify_result(c->ssl);
        if (handshake && v != X509_V_OK)
            snprintf(why, whylen, "certificate verify failed (%s)", X509_verify_cert_error_string(v));
        else
            snprintf(why, whylen, "%s", ssl_reason());
        break;
    }
    ERR_clear_error();
    return RP_TLS_FAILED;
}

int rp_tls__handshake(rp_tls_conn *c, char *why, size_t whylen)
{
    int ret;
    ERR_clear_error();
    c->sys_errno = 0;
    ret = SSL_connect(c->ssl);
    if (ret == 1)
        return 0;
    ret = ssl_outcome(c, ret, 1, why, whylen);
    if (ret == 0) {
        snprintf(why, whylen, "connection closed by the server during the handshake");
        return RP_TLS_FAILED;
    }
    return ret;
}

ssize_t rp_tls__read(rp_tls_conn *c, void *buf, size_t len, char *why, size_t whylen)
{
    size_t n = 0;
    ERR_clear_error();
    c->sys_errno = 0;
    if (SSL_read_ex(c->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    return ssl_outcome(c, 0, 0, why, whylen);
}

ssize_t rp_tls__write(rp_tls_conn *c, const void *buf, size_t len, char *why, size_t whylen)
{
    size_t n = 0;
    int ret;
    ERR_clear_error();
    c->sys_errno = 0;
    if (SSL_write_ex(c->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    ret = ssl_outcome(c, 0, 0, why, whylen);
    if (ret == 0) {
        snprintf(why, whylen, "closed by peer");
        return RP_TLS_FAILED;
    }
    return ret;
}

int rp_tls__pending(const rp_tls_conn *c)
{
    return SSL_pending(c->ssl) > 0;
}
