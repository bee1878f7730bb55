/* For unit tests with canned replies: the client's script cache told that every endpoint
 * already has every script, so ops send EVALSHA (and the NOSCRIPT paths can be fed). */
#ifndef REDPAT_UNIT_SCRIPTS_H
#define REDPAT_UNIT_SCRIPTS_H

#include "script.h"

static inline void unit_know_scripts(rp_client *c)
{
    const rp_script_registry *r = rp_client__scripts(c);
    size_t i, e;
    for (i = 0; i < r->count; i++)
        for (e = 0; e < RP_CLIENT_ENDPOINTS_MAX; e++)
            rp_script__learn(&r->scripts[i], e, 1);
}

#endif
