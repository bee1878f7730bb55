/* redpat — the hiredis reader configured to build rp_reply trees. */
#ifndef REDPAT_REPLY_INTERNAL_H
#define REDPAT_REPLY_INTERNAL_H

#include <hiredis/hiredis.h>

#include "internal.h"

/* A reader whose replies are rp_reply trees allocated with a (copied), each reply taking
 * at most max_reply_size bytes (rp_client_options.max_reply_size; see reply.c). */
RP_INTERNAL redisReader *rp_reply__reader_new(const rp_allocator *a, size_t max_reply_size);
RP_INTERNAL void rp_reply__reader_free(redisReader *r);
/* redisReaderGetReply plus the cap's checks of an unfinished reply: REDIS_OK with *reply
 * (NULL: more bytes needed), or REDIS_ERR (the reader is then unusable: see _why). */
RP_INTERNAL int rp_reply__reader_next(redisReader *r, void **reply);
/* After a failed feed or next: the status (RP_EPROTOCOL, RP_ENOMEM) and why into why
 * (size bytes): the cap's message naming it and what came, or "<prefix>: <hiredis' error>". */
RP_INTERNAL int rp_reply__reader_why(const redisReader *r, const char *prefix, char *why,
                                     size_t size);

#endif
