/* redpat — the replaceable allocator. */
#ifndef REDPAT_ALLOC_H
#define REDPAT_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* All memory redpat owns goes through one of these, set per client (copied at
 * rp_client_new). Each function may return NULL; redpat then fails with RP_ENOMEM and
 * releases what it had. hiredis' formatter and reader buffers use hiredis' allocator. */
typedef struct rp_allocator {
    void *(*malloc_fn)(void *ud, size_t size);
    void *(*realloc_fn)(void *ud, void *ptr, size_t size);
    void (*free_fn)(void *ud, void *ptr);
    void *ud; /* passed to each function unchanged */
} rp_allocator;

/* The libc allocator (malloc/realloc/free). Returned pointer is static. */
const rp_allocator *rp_allocator_default(void);

#ifdef __cplusplus
}
#endif
#endif
