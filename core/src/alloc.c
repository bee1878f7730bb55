/* The replaceable allocator, overflow-checked sizes, and the byte buffer built on them. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A buffer's first allocation: keys and small requests fit without growing. */
#define BUF_FIRST_CAP 64

static void *libc_malloc(void *ud, size_t size) { (void)ud; return malloc(size); }
static void *libc_realloc(void *ud, void *p, size_t size) { (void)ud; return realloc(p, size); }
static void libc_free(void *ud, void *p) { (void)ud; free(p); }

static const rp_allocator libc_allocator = { libc_malloc, libc_realloc, libc_free, NULL };

const rp_allocator *rp_allocator_default(void) { return &libc_allocator; }

int rp_size__add(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b)
        return 0;
    *out = a + b;
    return 1;
}

int rp_size__mul(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b)
        return 0;
    *out = a * b;
    return 1;
}

/* Zero-size requests are served as 1 byte so NULL always means "out of memory". */
void *rp_alloc__malloc(const rp_allocator *a, size_t size)
{
    return a->malloc_fn(a->ud, size ? size : 1);
}

void *rp_alloc__calloc(const rp_allocator *a, size_t n, size_t size)
{
    size_t total;
    void *p;
    if (!rp_size__mul(n, size, &total))
        return NULL;
    p = rp_alloc__malloc(a, total);
    if (p)
        memset(p, 0, total ? total : 1);
    return p;
}

void *rp_alloc__realloc(const rp_allocator *a, void *ptr, size_t size)
{
    return a->realloc_fn(a->ud, ptr, size ? size : 1);
}

void rp_alloc__free(const rp_allocator *a, void *ptr)
{
    if (ptr)
        a->free_fn(a->ud, ptr);
}

void *rp_alloc__memdup(const rp_allocator *a, const void *src, size_t len)
{
    size_t size;
    char *p;
    if (!rp_size__add(len, 1, &size))
        return NULL;
    p = rp_alloc__malloc(a, size);
    if (p) {
        if (len)
            memcpy(p, src, len);
        p[len] = '\0';
    }
    return p;
}

int rp_buf__append(const rp_allocator *a, rp_buf *b, const void *src, size_t len)
{
    size_t need;
    if (!rp_size__add(b->len, len, &need))
        return RP_ENOMEM;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : BUF_FIRST_CAP;
        char *p;
        while (cap < need) {
            if (!rp_size__mul(cap, 2, &cap))
                return RP_ENOMEM;
        }
        p = rp_alloc__realloc(a, b->data, cap);
        if (!p)
            return RP_ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, src, len);
    b->len = need;
    return RP_OK;
}

void rp_buf__free(const rp_allocator *a, rp_buf *b)
{
    rp_alloc__free(a, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t rp_fmt__i64(char out[RP_I64_CHARS], int64_t v)
{
    char tmp[RP_I64_CHARS];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + (u % 10u));
        u /= 10u;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}
