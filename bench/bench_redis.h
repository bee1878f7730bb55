/* What the C benches that talk to Redis over a raw hiredis side channel share: the channel,
 * a command that must not fail, and medians of their rounds. Include after bench_util.h
 * (die). */
#ifndef REDPAT_BENCH_REDIS_H
#define REDPAT_BENCH_REDIS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v in place). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A side-channel command; an error (or no reply) ends the bench. */
static inline redisReply *bench_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR)
        die("%s: %s", fmt, r ? r->str : c->errstr);
    return r;
}

/* A side channel to the server of url ("redis://host:port..."). */
static inline redisContext *bench_connect(const char *url)
{
    const char *host = strstr(url, "//") + 2;
    int port = atoi(strrchr(url, ':') + 1);
    char h[64];
    redisContext *raw;
    snprintf(h, sizeof h, "%.*s", (int)(strchr(host, ':') - host), host);
    raw = redisConnect(h, port);
    if (!raw || raw->err)
        die("raw connect");
    return raw;
}

#endif
