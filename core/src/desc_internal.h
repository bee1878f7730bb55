/* redpat — what descriptor files (desc_*.c) share with the generic begin (describe.c). */
#ifndef REDPAT_DESC_INTERNAL_H
#define REDPAT_DESC_INTERNAL_H

#include "op_internal.h"

/* Integers a Lua script computes in doubles stay exact up to 2^53 (DESIGN.md §4). */
#define RP_DESC_EXACT_MAX ((int64_t)1 << 53)

/* The tail of a descriptor that neither EMITs nor lives long. */
#define RP_DESC_PLAIN NULL, 0, NULL, 0

/* Each family's descriptors, in the order the table lists them. */
RP_INTERNAL extern const rp_op_desc rp_desc__client_ops[];
RP_INTERNAL extern const size_t rp_desc__client_count;
RP_INTERNAL extern const rp_op_desc rp_desc__lock_ops[];
RP_INTERNAL extern const size_t rp_desc__lock_count;
RP_INTERNAL extern const rp_op_desc rp_desc__using_ops[];
RP_INTERNAL extern const size_t rp_desc__using_count;
RP_INTERNAL extern const rp_op_desc rp_desc__ratelimit_ops[];
RP_INTERNAL extern const size_t rp_desc__ratelimit_count;
RP_INTERNAL extern const rp_op_desc rp_desc__pubsub_ops[];
RP_INTERNAL extern const size_t rp_desc__pubsub_count;
RP_INTERNAL extern const rp_op_desc rp_desc__cache_ops[];
RP_INTERNAL extern const size_t rp_desc__cache_count;

/* The user's name for argument i of d (the naming's, else the core's). */
RP_INTERNAL const char *rp_desc__arg_name(const rp_naming *nm, const rp_op_desc *d, size_t i);
/* A duration as the user gives it ("1.5 seconds" / "1500 ms") into buf; returns buf. */
#define RP_DESC_DURATION_CHARS 48
RP_INTERNAL const char *rp_desc__duration(const rp_naming *nm, int64_t ms,
                                          char buf[RP_DESC_DURATION_CHARS]);

/* An op that answers from its handle without I/O (lock.info, ratelimit.info): DONE at its
 * first step; rp_desc__local_handle gives the handle back to the result reader. */
RP_INTERNAL int rp_desc__local_op(rp_op **out, rp_client *client, void *handle,
                                  rp_error *err);
RP_INTERNAL void *rp_desc__local_handle(const rp_op *op);

/* Result values. */
RP_INTERNAL rp_value rp_desc__bool(int b);
RP_INTERNAL rp_value rp_desc__enum(int64_t index, const char *const *choices);
RP_INTERNAL rp_value rp_desc__status(int code, const char *message);

#endif
