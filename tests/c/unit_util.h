/* What the unit tests (ops fed canned replies, no server) share: CHECK, an offline client,
 * and the script cache told that every endpoint has every script (so ops send EVALSHA and
 * the NOSCRIPT paths can be fed). Each unit test is one translation unit: the counters are
 * its own. */
#ifndef REDPAT_UNIT_UTIL_H
#define REDPAT_UNIT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <redpat/redpat.h>

#include "internal.h"
#include "script.h"

static int failures, checks;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)

static inline void unit_know_scripts(rp_client *c)
{
    const rp_script_registry *r = rp_client__scripts(c);
    size_t i, e;
    for (i = 0; i < r->count; i++)
        for (e = 0; e < RP_CLIENT_ENDPOINTS_MAX; e++)
            rp_script__learn(&r->scripts[i], e, 1);
}

/* A client with namespace "t" over url (NULL: none), its scripts known everywhere. */
static inline rp_client *unit_client(const char *url)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_client *c = NULL;
    o.url = url;
    o.key_namespace = "t";
    if (rp_client_new(&c, &o, NULL) != RP_OK)
        abort();
    unit_know_scripts(c);
    return c;
}

/* Whether the request the op has for node in its IO step contains part. */
static inline int unit_request_has(const rp_op *op, size_t node, const char *part)
{
    const char *bytes;
    size_t len, n = strlen(part), i;
    if (rp_op_request(op, node, &bytes, &len) != RP_OK)
        return 0;
    for (i = 0; i + n <= len; i++)
        if (memcmp(bytes + i, part, n) == 0)
            return 1;
    return 0;
}

#endif
