/* What the C benches that talk to Redis over a raw hiredis side channel share: the channel,
 * a command that must not fail, a script loaded, and medians of their rounds. Include after bench_util.h
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

/* SCRIPT LOAD of the file at path, its SHA1 into sha (41 bytes). */
static inline void bench_script_load(redisContext *raw, const char *path, char sha[41])
{
    FILE *f = fopen(path, "rb");
    redisReply *r;
    char *src;
    long n;
    if (!f)
        die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || !(src = malloc((size_t)n + 1)) || fread(src, 1, (size_t)n, f) != (size_t)n)
        die("read %s", path);
    fclose(f);
    r = bench_cmd(raw, "SCRIPT LOAD %b", src, (size_t)n);
    snprintf(sha, 41, "%s", r->str);
    freeReplyObject(r);
    free(src);
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
