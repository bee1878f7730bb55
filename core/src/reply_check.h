/* redpat — strict replies: describing a reply for a message and checking its exact shape
 * (reply_check.c). The transport's handshake and the patterns share them. */
#ifndef REDPAT_REPLY_CHECK_H
#define REDPAT_REPLY_CHECK_H

#include <stddef.h>

#include "internal.h"
#include "redpat/reply.h"

/* Each check returns RP_OK when the reply fits; else RP_EREPLY (an error reply: why gets
 * Redis' message) or RP_EPROTOCOL (why gets "expected <what>, got <the reply described>").
 * For callers that classify answers instead of failing an op (a Redlock's nodes, the
 * transport's handshake); ops use the rp_op__expect_* forms (op_internal.h). NULL r is
 * "no reply". */
/* Room for a description, and for "expected <what>, got <description>" parts. */
#define RP_REPLY_DESCRIBE_MAX 160
/* r for a message: "nil", "the integer 42", "the status \"QUEUED\"", "the string \"ab\\x01\"",
 * "an array of 3 elements", "no reply" (strings: their first bytes, printable, quoted,
 * "..." when cut). Writes out (NUL-terminated, cut to size) and returns it. */
RP_INTERNAL const char *rp_reply__describe(const rp_reply *r, char *out, size_t size);
/* r is not what was expected: rp_reply_error_status (error replies: RP_EREPLY, or RP_EAUTH
 * for NOAUTH) or RP_EPROTOCOL, why filled. */
RP_INTERNAL int rp_reply__expected(const rp_reply *r, const char *what, char *why, size_t size);
/* An integer in [min, max] (LLONG_MIN / LLONG_MAX: unbounded); what names it (may be NULL). */
RP_INTERNAL int rp_reply__is_int(const rp_reply *r, const char *what, long long min,
                                 long long max, char *why, size_t size);
/* Exactly the status reply status (e.g. "OK"). */
RP_INTERNAL int rp_reply__is_status(const rp_reply *r, const char *status, char *why,
                                    size_t size);
/* A handshake command's reply (AUTH, SELECT): RP_OK for exactly +OK; RP_EAUTH when the
 * server refused the connection's credentials (WRONGPASS, NOAUTH, "invalid password", "AUTH
 * ... called without any password configured": why gets Redis' message); else as
 * rp_reply__is_status. */
RP_INTERNAL int rp_reply__handshake_status(const rp_reply *r, char *why, size_t size);
/* An array of exactly strlen(types) elements, element i of type types[i]: 'i' integer, 's'
 * bulk string, 'n' nil, 'S' string or nil, 'a' array, '?' anything. what names it (may be
 * NULL). Ranges of elements are checked after, with rp_reply__is_int on each. */
RP_INTERNAL int rp_reply__is_array(const rp_reply *r, const char *types, const char *what,
                                   char *why, size_t size);
#endif
