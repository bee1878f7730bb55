/* Key layout: <namespace>:<pattern>:{<name>}<suffix>. The {hash tag} on the name puts
 * every key of one resource in one cluster slot. */
#include <string.h>

#include "internal.h"

int rp_key__build(const rp_client *c, const char *pattern, const void *name, size_t name_len,
                  const char *suffix, rp_buf *out)
{
    const rp_allocator *a = rp_client__allocator(c);
    const char *ns = rp_client_namespace(c);
    int rc = RP_OK;
    out->len = 0;
    if ((rc = rp_buf__append(a, out, ns, strlen(ns))) ||
        (rc = rp_buf__append(a, out, ":", 1)) ||
        (rc = rp_buf__append(a, out, pattern, strlen(pattern))) ||
        (rc = rp_buf__append(a, out, ":{", 2)) ||
        (rc = rp_buf__append(a, out, name, name_len)) ||
        (rc = rp_buf__append(a, out, "}", 1)) ||
        (rc = rp_buf__append(a, out, suffix, strlen(suffix))))
        return rc;
    return RP_OK;
}
