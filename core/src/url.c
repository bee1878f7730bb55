/* Connection URL parsing, strict: a typo in a URL is an error, not a silent default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies [s, s+len) with %XX decoded; NULL on bad escape or no memory (*bad tells). */
static char *decode(const char *s, size_t len, const rp_allocator *a, int *bad)
{
    char *out = rp_alloc__malloc(a, len + 1), *o = out;
    size_t i;
    *bad = 0;
    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= len) { *bad = 1; break; }
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) { *bad = 1; break; }
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    if (*bad) {
        rp_alloc__free(a, out);
        return NULL;
    }
    *o = '\0';
    return out;
}

static int parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    long v = 0;
    size_t i;
    if (len == 0 || len > 9)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

void rp_url__free(rp_url *u, const rp_allocator *a)
{
    rp_alloc__free(a, u->host);
    rp_alloc__free(a, u->path);
    rp_alloc__free(a, u->user);
    rp_alloc__free(a, u->password);
    rp_alloc__free(a, u->address);
    for (size_t i = 0; u->seed_hosts && i < u->nseeds; i++)
        rp_alloc__free(a, u->seed_hosts[i]);
    rp_alloc__free(a, u->seed_hosts);
    rp_alloc__free(a, u->seed_ports);
    memset(u, 0, sizeof *u);
}

static int oom(rp_url *u, const rp_allocator *a, rp_error *err)
{
    rp_url__free(u, a);
    return rp_error__set(err, RP_ENOMEM, "out of memory parsing the URL");
}

static int invalid(rp_url *u, const rp_allocator *a, rp_error *err, const char *what)
{
    rp_url__free(u, a);
    return rp_error__set(err, RP_EINVAL, "url: %s", what);
}

static int parse_userinfo(rp_url *u, const char *s, size_t len, const rp_allocator *a,
                          rp_error *err)
{
    const char *colon = memchr(s, ':', len);
    int bad = 0;
    if (!colon)
        return invalid(u, a, err, "user info must be [user]:password");
    if (colon > s) {
        u->user = decode(s, (size_t)(colon - s), a, &bad);
        if (!u->user)
            return bad ? invalid(u, a, err, "bad %-escape in user") : oom(u, a, err);
    }
    u->password = decode(colon + 1, len - (size_t)(colon - s) - 1, a, &bad);
    if (!u->password)
        return bad ? invalid(u, a, err, "bad %-escape in password") : oom(u, a, err);
    return RP_OK;
}

/* One "key=value" of a unix:// query (db=N, password=...); each key at most once. */
static int parse_unix_param(rp_url *u, const char *s, size_t len, int *seen_db,
                            const rp_allocator *a, rp_error *err)
{
    int bad = 0;
    if (len > 3 && memcmp(s, "db=", 3) == 0) {
        if ((*seen_db)++)
            return invalid(u, a, err, "unix:// query gives db twice");
        if (!parse_int(s + 3, len - 3, 0, 1000000, &u->db))
            return invalid(u, a, err, "unix:// db must be a number (?db=N)");
        return RP_OK;
    }
    if (len >= 9 && memcmp(s, "password=", 9) == 0) {
        if (u->password)
            return invalid(u, a, err, "unix:// URL gives the password twice (user info and ?password=, "
                                      "or ?password= twice)");
        if (len == 9)
            return invalid(u, a, err, "unix:// ?password= must not be empty");
        u->password = decode(s + 9, len - 9, a, &bad);
        if (!u->password)
            return bad ? invalid(u, a, err, "bad %-escape in password") : oom(u, a, err);
        return RP_OK;
    }
    return invalid(u, a, err, "unix:// accepts only ?db=N and ?password=... (joined with &)");
}

/* unix://[[user]:password@]/path[?db=N][&password=...]: the user info, when there is one,
 * ends at the '@' before the path's first '/' (a path may hold '@' itself). */
static int parse_unix(rp_url *u, const char *rest, const rp_allocator *a, rp_error *err)
{
    const char *q, *slash = strchr(rest, '/'), *at = NULL, *p;
    size_t plen;
    int rc, seen_db = 0;
    u->is_unix = 1;
    if (rest[0] != '/') {
        for (p = rest; slash && p < slash; p++)
            if (*p == '@')
                at = p;
        if (!at || at + 1 != slash)
            return invalid(u, a, err, "unix:// needs an absolute socket path "
                                      "(unix://[[user]:password@]/path)");
        if ((rc = parse_userinfo(u, rest, (size_t)(at - rest), a, err)))
            return rc;
        rest = slash;
    }
    q = strchr(rest, '?');
    plen = q ? (size_t)(q - rest) : strlen(rest);
    if (plen == 0 || rest[0] != '/')
        return invalid(u, a, err, "unix:// needs an absolute socket path (unix:///path)");
    u->path = rp_alloc__memdup(a, rest, plen);
    if (!u->path)
        return oom(u, a, err);
    while (q) {
        const char *next = strchr(q + 1, '&');
        size_t len = next ? (size_t)(next - q - 1) : strlen(q + 1);
        if ((rc = parse_unix_param(u, q + 1, len, &seen_db, a, err)))
            return rc;
        q = next;
    }
    return RP_OK;
}

/* The user info of [rest, end), up to its last '@' (parse_userinfo), if any; *host: what
 * follows it. */
static int parse_user_part(rp_url *u, const char *rest, const char *end, const char **host,
                           const rp_allocator *a, rp_error *err)
{
    const char *at = NULL, *p;
    int rc;
    for (p = rest; p < end; p++)
        if (*p == '@')
            at = p;
    if (at && (rc = parse_userinfo(u, rest, (size_t)(at - rest), a, err)))
        return rc;
    *host = at ? at + 1 : rest;
    return RP_OK;
}

/* "host[:port]" or "[v6]:port" in [s, end): *host a copy, *port the port (6379 when none). */
static int parse_host_port(rp_url *u, const char *s, const char *end, char **host, int *port,
                           const rp_allocator *a, rp_error *err)
{
    const char *hend, *p;
    *port = 6379;
    if (s < end && *s == '[') {
        hend = memchr(s, ']', (size_t)(end - s));
        if (!hend || hend == s + 1)
            return invalid(u, a, err, "bad [IPv6] host");
        p = hend + 1;
        s++;
    } else {
        hend = memchr(s, ':', (size_t)(end - s));
        p = hend ? hend : end;
        hend = p;
        if (p == s)
            return invalid(u, a, err, "missing host");
    }
    if (p < end && (*p != ':' || !parse_int(p + 1, (size_t)(end - p - 1), 1, 65535, port)))
        return invalid(u, a, err, "port must be 1..65535");
    if (!(*host = rp_alloc__memdup(a, s, (size_t)(hend - s))))
        return oom(u, a, err);
    return RP_OK;
}

static int parse_tcp(rp_url *u, const char *rest, const rp_allocator *a, rp_error *err)
{
    const char *end = rest + strcspn(rest, "/?#"), *host;
    int rc;
    if ((rc = parse_user_part(u, rest, end, &host, a, err)) ||
        (rc = parse_host_port(u, host, end, &u->host, &u->port, a, err)))
        return rc;
    if (*end == '/') {
        const char *db = end + 1, *dbend = db + strcspn(db, "?#");
        if (dbend > db && !parse_int(db, (size_t)(dbend - db), 0, 1000000, &u->db))
            return invalid(u, a, err, "database must be a number (redis://host:port/DB)");
        end = dbend;
    }
    if (*end == '?' || *end == '#') /* checked after the db: "/0?x=1" is about the query */
        return invalid(u, a, err, u->tls ? "query strings are not supported in rediss:// URLs "
                                           "(rediss://[[user]:password@]host[:port][/db])"
                                         : "query strings are not supported in redis:// URLs "
                                           "(redis://[[user]:password@]host[:port][/db])");
    return RP_OK;
}

/* One seed "host[:port]" or "[v6]:port" of a cluster URL, [s, end). */
static int parse_seed(rp_url *u, const char *s, const char *end, const rp_allocator *a,
                      rp_error *err)
{
    int rc;
    if (s == end)
        return invalid(u, a, err, "redis+cluster:// has an empty host in its list "
                                  "(redis+cluster://host:port,host:port)");
    if ((rc = parse_host_port(u, s, end, &u->seed_hosts[u->nseeds], &u->seed_ports[u->nseeds],
                              a, err)))
        return rc;
    u->nseeds++;
    return RP_OK;
}

/* redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0]: the seeds a client
 * learns the cluster's topology from. */
static int parse_cluster(rp_url *u, const char *rest, const rp_allocator *a, rp_error *err)
{
    const char *end = rest + strcspn(rest, "/?#"), *p, *host;
    size_t n = 1;
    int rc;
    u->cluster = 1;
    if ((rc = parse_user_part(u, rest, end, &host, a, err)))
        return rc;
    for (p = host; p < end; p++)
        n += *p == ',';
    u->seed_hosts = rp_alloc__calloc(a, n, sizeof *u->seed_hosts);
    u->seed_ports = rp_alloc__calloc(a, n, sizeof *u->seed_ports);
    if (!u->seed_hosts || !u->seed_ports)
        return oom(u, a, err);
    for (p = host; p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if ((rc = parse_seed(u, p, stop, a, err)))
            return rc;
        p = stop + 1;
    }
    if (*end == '/') {
        const char *db = end + 1, *dbend = db + strcspn(db, "?#");
        if (dbend > db && (!parse_int(db, (size_t)(dbend - db), 0, 1000000, &u->db) || u->db))
            return invalid(u, a, err, "a cluster has database 0 only (redis+cluster://host:port[/0])");
        end = dbend;
    }
    if (*end == '?' || *end == '#')
        return invalid(u, a, err, "query strings are not supported in redis+cluster:// URLs "
                                  "(redis+cluster://[[user]:password@]host:port[,host:port...])");
    if (!(u->host = rp_alloc__memdup(a, u->seed_hosts[0], strlen(u->seed_hosts[0]))))
        return oom(u, a, err);
    u->port = u->seed_ports[0];
    return RP_OK;
}

/* "user@host:port/db" / "user@unix:path/db": one pool per server, database and user. */
static int make_address(rp_url *u, const rp_allocator *a, rp_error *err)
{
    size_t len = (u->user ? strlen(u->user) + 1 : 0) + strlen(u->is_unix ? u->path : u->host) +
                 5 /* "unix:" */ + 1 + 12 /* :port */ + 1 + RP_DB_CHARS + 3 /* [] */ + 1;
    u->address = rp_alloc__malloc(a, len);
    if (!u->address)
        return oom(u, a, err);
    if (u->is_unix)
        /* "?db=N" as the URL spells it, and only when not 0: a "/0" read as part of the path */
        snprintf(u->address, len, u->db ? "%s%sunix:%s?db=%d" : "%s%sunix:%s",
                 u->user ? u->user : "", u->user ? "@" : "", u->path, u->db);
    else
        snprintf(u->address, len, strchr(u->host, ':') ? "%s%s[%s]:%d/%d" : "%s%s%s:%d/%d",
                 u->user ? u->user : "", u->user ? "@" : "", u->host, u->port, u->db);
    return RP_OK;
}

static int parse_one(rp_url *out, const char *url, const rp_allocator *a, rp_error *err)
{
    if (strncmp(url, "redis://", 8) == 0)
        return parse_tcp(out, url + 8, a, err);
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(out, url + 7, a, err);
    if (strncmp(url, "rediss://", 9) == 0) {
        out->tls = 1;
        return parse_tcp(out, url + 9, a, err);
    }
    if (strncmp(url, "redis+cluster://", 16) == 0)
        return parse_cluster(out, url + 16, a, err);
    if (strncmp(url, "rediss+cluster://", 17) == 0) {
        out->tls = 1;
        return parse_cluster(out, url + 17, a, err);
    }
    return rp_error__set(err, RP_EINVAL,
                         "url: must start with redis://, rediss://, unix://, redis+cluster:// or "
                         "rediss+cluster:// (got \"%.60s\")",
                         url);
}

int rp_url__parse(rp_url *out, const char *url, const rp_allocator *a, rp_error *err)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (!url || !*url)
        return rp_error__set(err, RP_EINVAL, "url: must not be empty");
    if ((rc = parse_one(out, url, a, err)))
        return rc;
    return make_address(out, a, err);
}

/* Where the URL starting at p ends: at the first ',' followed by a piece with a scheme
 * (a ',' inside a cluster URL separates its seeds). */
static size_t url_length(const char *p)
{
    size_t len = strcspn(p, ",");
    while (p[len] == ',') {
        const char *next = p + len + 1;
        size_t piece = strcspn(next, ",");
        const char *scheme = strstr(next, "://");
        if (scheme && (size_t)(scheme - next) < piece)
            break;
        len += 1 + piece;
    }
    return len;
}

int rp_url__parse_list(rp_url **out, size_t *count, size_t max, const char *urls,
                       const rp_allocator *a, rp_error *err)
{
    size_t n = 0, i;
    const char *p;
    rp_url *list;
    *out = NULL;
    *count = 0;
    if (!urls || !*urls)
        return rp_error__set(err, RP_EINVAL, "url: must not be empty");
    for (p = urls;; p++) {
        size_t len = url_length(p);
        n++;
        p += len;
        if (!*p)
            break;
    }
    if (n > max)
        return rp_error__set(err, RP_EINVAL, "url: at most %zu URLs (got %zu)", max, n);
    list = rp_alloc__calloc(a, n, sizeof *list);
    if (!list)
        return rp_error__set(err, RP_ENOMEM, "out of memory parsing the URL");
    for (i = 0, p = urls; i < n; i++) {
        size_t len = url_length(p);
        char *one = rp_alloc__memdup(a, p, len);
        rp_error e;
        int rc;
        if (!one) {
            rc = rp_error__set(err, RP_ENOMEM, "out of memory parsing the URL");
        } else {
            rp_error_clear(&e);
            rc = rp_url__parse(&list[i], one, a, &e);
            rp_alloc__free(a, one);
            if (rc && n > 1)
                rp_error__set(err, rc, "url %zu of %zu: %s", i + 1, n, e.message);
            else if (rc)
                rp_error__copy(err, &e);
        }
        if (rc) {
            while (i-- > 0)
                rp_url__free(&list[i], a);
            rp_alloc__free(a, list);
            return rc;
        }
        p += len + (p[len] == ',');
    }
    *out = list;
    *count = n;
    return RP_OK;
}

void rp_url__endpoint(const rp_url *u, rp_endpoint *out)
{
    out->address = u->address;
    out->is_unix = u->is_unix;
    out->tls = u->tls;
    out->host = u->host;
    out->port = u->port;
    out->path = u->path;
    out->user = u->user;
    out->password = u->password;
    out->db = u->db;
}

size_t rp_url__handshake(const rp_url *u, rp_url_command *cmds)
{
    rp_endpoint ep;
    rp_url__endpoint(u, &ep);
    return rp_url__endpoint_handshake(&ep, cmds);
}

size_t rp_url__endpoint_handshake(const rp_endpoint *u, rp_url_command *cmds)
{
    size_t n = 0;
    if (u->password) {
        rp_url_command *c = &cmds[n++];
        c->argc = 0;
        c->argv[c->argc] = "AUTH";
        c->lens[c->argc++] = 4;
        if (u->user) {
            c->argv[c->argc] = u->user;
            c->lens[c->argc++] = strlen(u->user);
        }
        c->argv[c->argc] = u->password;
        c->lens[c->argc++] = strlen(u->password);
    }
    if (u->db != 0) {
        rp_url_command *c = &cmds[n++];
        snprintf(c->db, sizeof c->db, "%d", u->db);
        c->argc = 2;
        c->argv[0] = "SELECT";
        c->lens[0] = 6;
        c->argv[1] = c->db;
        c->lens[1] = strlen(c->db);
    }
    return n;
}
