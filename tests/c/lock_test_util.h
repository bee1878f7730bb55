/* Small helpers shared by the C lock reliability tests (header-only, test code). */
#ifndef REDPAT_LOCK_TEST_UTIL_H
#define REDPAT_LOCK_TEST_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <redpat/redpat.h>

#include "rp_harness.h"

/* A client for url; the test fails if it cannot be made. */
static inline rp_client *lt_client(const char *url, uint32_t command_timeout_ms)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = "rptest";
    o.connect_timeout_ms = command_timeout_ms;
    o.command_timeout_ms = command_timeout_ms;
    rp_client *c = NULL;
    rp_error e;
    int rc = rp_client_new(&c, &o, &e);
    RP_CHECK(rc == RP_OK, "rp_client_new: %s (%s)", rp_status_name(rc), e.message);
    return c;
}

static inline rp_lock *lt_lock(rp_client *c, const char *name, int64_t ttl_ms, int fenced)
{
    rp_lock_options o = RP_LOCK_OPTIONS_INIT;
    o.ttl_ms = ttl_ms;
    o.fenced = fenced;
    rp_lock *l = NULL;
    rp_error e;
    int rc = rp_lock_new(&l, c, name, strlen(name), &o, &e);
    RP_CHECK(rc == RP_OK, "rp_lock_new: %s (%s)", rp_status_name(rc), e.message);
    return l;
}

/* Writes all of buf (pipes: records up to PIPE_BUF bytes are written atomically). */
static inline int lt_write_all(int fd, const void *buf, size_t len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes; returns 0, or -1 on EOF/error. */
static inline int lt_read_all(int fd, void *buf, size_t len)
{
    char *p = (char *)buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Redis key names the core uses (lock.h), for inspecting state from the side channel. */
#define LT_NS "rptest"

#endif
