/* redpat — the hiredis reader configured to build rp_reply trees. */
#ifndef REDPAT_REPLY_INTERNAL_H
#define REDPAT_REPLY_INTERNAL_H

#include <hiredis/hiredis.h>

#include "internal.h"

/* A reader whose replies are rp_reply trees allocated with a (which must outlive it). */
RP_INTERNAL redisReader *rp_reply__reader_new(const rp_allocator *a);
RP_INTERNAL void rp_reply__reader_free(redisReader *r);

#endif
