/* redpat — declarations shared between core files; never installed, never exported. */
#ifndef REDPAT_INTERNAL_H
#define REDPAT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "redpat/redpat.h"

#if defined(__GNUC__)
#define RP_INTERNAL __attribute__((visibility("hidden")))
#define RP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RP_INTERNAL
#define RP_PRINTF(f, a)
#endif

/* --- errors --- */
/* The most of a Redis error reply quoted in a message (room is left in RP_ERROR_MESSAGE_MAX
 * for the context around it). */
#define RP_REPLY_QUOTE_MAX 200
/* The most of a user's value (an unknown name) quoted back in a message. */
#define RP_ARG_QUOTE_MAX 64
/* Fills err (if any) and returns code, so callers can `return rp_error__set(...)`. */
RP_INTERNAL int rp_error__set(rp_error *err, int code, const char *fmt, ...) RP_PRINTF(3, 4);
RP_INTERNAL int rp_error__copy(rp_error *dst, const rp_error *src);

/* --- allocation --- */
RP_INTERNAL void *rp_alloc__malloc(const rp_allocator *a, size_t size);
RP_INTERNAL void *rp_alloc__calloc(const rp_allocator *a, size_t n, size_t size);
RP_INTERNAL void *rp_alloc__realloc(const rp_allocator *a, void *ptr, size_t size);
RP_INTERNAL void rp_alloc__free(const rp_allocator *a, void *ptr);
RP_INTERNAL void *rp_alloc__memdup(const rp_allocator *a, const void *src, size_t len);
/* Overflow-checked size arithmetic: return 0 on overflow. */
RP_INTERNAL int rp_size__add(size_t a, size_t b, size_t *out);
RP_INTERNAL int rp_size__mul(size_t a, size_t b, size_t *out);

/* --- growable byte buffer --- */
typedef struct rp_buf {
    char *data;
    size_t len;
    size_t cap;
} rp_buf;
RP_INTERNAL int rp_buf__append(const rp_allocator *a, rp_buf *b, const void *src, size_t len);
RP_INTERNAL void rp_buf__free(const rp_allocator *a, rp_buf *b);

/* --- integers as decimal text (hot paths: snprintf costs more than the rest of an op) --- */
#define RP_I64_CHARS 21
/* Writes v in decimal to out (no NUL); returns the length. */
RP_INTERNAL size_t rp_fmt__i64(char out[RP_I64_CHARS], int64_t v);

/* --- randomness (OS CSPRNG) --- */
RP_INTERNAL int rp_random__bytes(void *out, size_t len);
/* Uniform in [lo, hi]; falls back to hi if the CSPRNG fails (jitter is best effort). */
RP_INTERNAL int64_t rp_random__between(int64_t lo, int64_t hi);

/* --- keys: <ns>:<pattern>:{<name>}<suffix> --- */
RP_INTERNAL int rp_key__build(const rp_client *c, const char *pattern, const void *name,
                              size_t name_len, const char *suffix, rp_buf *out);

/* --- rate limits: the algorithm and on_error names (see ratelimit.c) --- */
RP_INTERNAL extern const char *const rp_ratelimit__algorithms[];
RP_INTERNAL extern const char *const rp_ratelimit__on_errors[];
/* --- rate limits: decision i of a DONE check, multi or batch op (borrowed), or NULL --- */
RP_INTERNAL const rp_ratelimit_decision *rp_ratelimit__decision(const rp_op *op, size_t i);
/* RP_EINVAL naming arg[i] (i counted from index_base, the user's language's first index) when
 * two of the limiters share a name, so their keys: a multi check may count each only once. */
RP_INTERNAL int rp_ratelimit__check_distinct(rp_ratelimit *const *limiters, size_t count,
                                             const char *arg, size_t index_base, rp_error *err);
/* Whether burst * window_ms / limit (a full burst's refill) exceeds
 * RP_RATELIMIT_WINDOW_MS_MAX; all three > 0 and within their bounds (ratelimit.h). */
RP_INTERNAL int rp_ratelimit__refill_too_long(int64_t burst, int64_t window_ms, int64_t limit);

/* --- locks: when the handle's hold began and was last renewed (monotonic ms of the
 * requests' sending; 0 when not held), for the renewal plan --- */
RP_INTERNAL uint64_t rp_lock__acquired_ms(const rp_lock *l);
RP_INTERNAL uint64_t rp_lock__renewed_ms(const rp_lock *l);

/* --- client internals used by ops --- */
RP_INTERNAL const rp_allocator *rp_client__allocator(const rp_client *c);
/* The options the client was made with (timeouts, keepalive; url and allocator unset). */
RP_INTERNAL const rp_client_options *rp_client__options(const rp_client *c);
struct rp_script_registry;
RP_INTERNAL const struct rp_script_registry *rp_client__scripts(const rp_client *c);

#endif
