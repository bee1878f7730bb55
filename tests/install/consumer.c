/* Built against an *installed* redpat (pkg-config and CMake package): proves the install. */
#include <stdio.h>
#include <string.h>

#include <redpat/redpat.h>

int main(void)
{
    rp_client *c;
    rp_lock *l;
    rp_error err;
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    if (rp_client_new(&c, &o, &err) != RP_OK)
        return 1;
    lo.ttl_ms = 0;
    if (rp_lock_new(&l, c, "x", 1, &lo, &err) != RP_EINVAL || !strstr(err.message, "ttl"))
        return 1;
    printf("consumer: linked redpat %s, namespace %s\n", RP_VERSION, rp_client_namespace(c));
    rp_client_free(c);
    return 0;
}
