/* redpat — the hiredis-backed blocking transport behind rp_client. */
#ifndef REDPAT_TRANSPORT_HIREDIS_H
#define REDPAT_TRANSPORT_HIREDIS_H

#include "internal.h"
#include "url.h"

/* A transport to the client's parsed url (borrowed: the client owns both and frees the
 * transport first); connects lazily on the first exchange. */
RP_INTERNAL int rp_transport__hiredis_new(rp_transport **out,
                                          const rp_client_options *o, const rp_allocator *a,
                                          rp_error *err);
/* Closes the connection if base is a hiredis transport (reopened on next use). */
RP_INTERNAL void rp_transport__hiredis_disconnect(rp_transport *base);

#endif
