/* The script registry: each client knows every embedded script and its SHA1. */
#include <string.h>

#include "script.h"

int rp_script__registry_init(rp_script_registry *r, const rp_allocator *a)
{
    size_t i;
    r->count = 0;
    r->pre7 = 0;
    r->scripts = rp_alloc__calloc(a, rp_script__count, sizeof *r->scripts);
    if (!r->scripts)
        return RP_ENOMEM;
    for (i = 0; i < rp_script__count; i++) {
        r->scripts[i].src = &rp_script__sources[i];
        rp_sha1__hex(rp_script__sources[i].source, rp_script__sources[i].len,
                     r->scripts[i].sha1);
        rp_sha1__hex(rp_script__sources[i].legacy, rp_script__sources[i].legacy_len,
                     r->scripts[i].legacy_sha1);
    }
    r->count = rp_script__count;
    return RP_OK;
}

void rp_script__registry_free(rp_script_registry *r, const rp_allocator *a)
{
    rp_alloc__free(a, r->scripts);
    r->scripts = NULL;
    r->count = 0;
}

const rp_script *rp_script__find(const rp_script_registry *r, const char *name)
{
    size_t i;
    for (i = 0; i < r->count; i++)
        if (strcmp(r->scripts[i].src->name, name) == 0)
            return &r->scripts[i];
    return NULL;
}

const char *rp_script__body(const rp_script *s, int legacy, size_t *len)
{
    *len = legacy ? s->src->legacy_len : s->src->len;
    return legacy ? s->src->legacy : s->src->source;
}

const char *rp_script__sha1(const rp_script *s, int legacy)
{
    return legacy ? s->legacy_sha1 : s->sha1;
}

/* Endpoints past the mask's width are never cached: they always get EVALSHA first. */
#define RP_SCRIPT_KNOWN_BITS (sizeof(unsigned) * 8)

int rp_script__known(const rp_script *s, size_t endpoint)
{
    if (endpoint >= RP_SCRIPT_KNOWN_BITS)
        return 1;
    return (__atomic_load_n(&s->loaded, __ATOMIC_RELAXED) >> endpoint) & 1u;
}

void rp_script__learn(const rp_script *s, size_t endpoint, int loaded)
{
    /* the registry is the client's own (allocated writable): only this cache changes */
    unsigned *bits = (unsigned *)&s->loaded;
    if (endpoint >= RP_SCRIPT_KNOWN_BITS)
        return;
    if (loaded)
        __atomic_fetch_or(bits, 1u << endpoint, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(bits, ~(1u << endpoint), __ATOMIC_RELAXED);
}

int rp_script__pre7(const rp_script_registry *r, size_t endpoint)
{
    if (endpoint >= RP_SCRIPT_KNOWN_BITS)
        return 0; /* never learned: such an endpoint is asked the Redis 7 way every time */
    return (__atomic_load_n(&r->pre7, __ATOMIC_RELAXED) >> endpoint) & 1u;
}

void rp_script__learn_pre7(const rp_script_registry *r, size_t endpoint)
{
    /* the registry is the client's own (allocated writable): only this cache changes */
    unsigned *bits = (unsigned *)&r->pre7;
    if (endpoint < RP_SCRIPT_KNOWN_BITS)
        __atomic_fetch_or(bits, 1u << endpoint, __ATOMIC_RELAXED);
}
