/* redpat — the embedded Redis-side scripts and their SHA1s. */
#ifndef REDPAT_SCRIPT_H
#define REDPAT_SCRIPT_H

#include <stddef.h>

#include "internal.h"

typedef struct rp_script_source {
    const char *name;   /* file name without .lua */
    const char *source; /* as written: its first line is the Redis 7 shebang (flags) */
    size_t len;
    /* for a Redis older than 7.0 (which rejects the shebang): the same lines with the
     * first replaced by an OOM guard or an empty line (core/scripts/embed.sh says which) */
    const char *legacy;
    size_t legacy_len;
} rp_script_source;

/* Defined in the file core/scripts/embed.sh generates. */
extern const rp_script_source rp_script__sources[];
extern const size_t rp_script__count;

typedef struct rp_script {
    const rp_script_source *src;
    char sha1[41]; /* lowercase hex, NUL-terminated */
    char legacy_sha1[41]; /* of src->legacy: what a pre-7 endpoint is sent (rp_script__pre7) */
    /* bit i: endpoint i of the client is known to have the script (it answered a call of
     * it with anything but NOSCRIPT; for a pre7 endpoint: of the legacy variant). Unknown
     * endpoints get EVAL with the source, which loads it, instead of an EVALSHA bound to
     * fail: a fresh server costs no NOSCRIPT round trip. A cache, shared by the threads that run the client's ops: read and
     * written with atomics (rp_script__known / rp_script__learn). */
    unsigned loaded;
} rp_script;

typedef struct rp_script_registry {
    rp_script *scripts;
    size_t count;
    /* bit i: endpoint i of the client answered like a Redis older than 7.0 (it did not
     * understand a script's "#!lua flags=" line, or SET with both NX and GET). Learned
     * from those answers, never asked for: a Redis 7 costs nothing. Atomics, like loaded. */
    unsigned pre7;
} rp_script_registry;

RP_INTERNAL int rp_script__registry_init(rp_script_registry *r, const rp_allocator *a);
RP_INTERNAL void rp_script__registry_free(rp_script_registry *r, const rp_allocator *a);
/* NULL if there is no script by that name (a build defect; callers report RP_ESTATE). */
RP_INTERNAL const rp_script *rp_script__find(const rp_script_registry *r, const char *name);

/* The variant of s an endpoint is sent: the legacy one if it answered like a Redis < 7. */
RP_INTERNAL const char *rp_script__body(const rp_script *s, int legacy, size_t *len);
RP_INTERNAL const char *rp_script__sha1(const rp_script *s, int legacy);

/* Whether endpoint is known to have s, and recording that it has it (1) or forgot it (0). */
RP_INTERNAL int rp_script__known(const rp_script *s, size_t endpoint);
RP_INTERNAL void rp_script__learn(const rp_script *s, size_t endpoint, int loaded);

/* Whether endpoint answered like a Redis older than 7.0, and recording that it did. */
RP_INTERNAL int rp_script__pre7(const rp_script_registry *r, size_t endpoint);
RP_INTERNAL void rp_script__learn_pre7(const rp_script_registry *r, size_t endpoint);

/* SHA1 of data as 40 lowercase hex digits + NUL. */
RP_INTERNAL void rp_sha1__hex(const void *data, size_t len, char out[41]);

#endif
