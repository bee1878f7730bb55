/* redpat — Redis replies, in redpat's own model (no hiredis types leak out). */
#ifndef REDPAT_REPLY_H
#define REDPAT_REPLY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rp_reply_type {
    RP_REPLY_STRING = 1,  /* bulk string: str/len, binary-safe */
    RP_REPLY_ARRAY = 2,   /* element[0..elements) */
    RP_REPLY_INTEGER = 3, /* integer */
    RP_REPLY_NIL = 4,
    RP_REPLY_STATUS = 5,  /* +OK style: str/len */
    RP_REPLY_ERROR = 6,   /* -ERR style: str/len */
    RP_REPLY_DOUBLE = 7,  /* RESP3 only (hiredis >= 1.0): str/len holds the text */
    RP_REPLY_BOOL = 8     /* RESP3 only (hiredis >= 1.0): integer is 0 or 1 */
} rp_reply_type;

typedef struct rp_reply {
    rp_reply_type type;
    long long integer;          /* INTEGER, BOOL */
    size_t len;                 /* STRING, STATUS, ERROR, DOUBLE */
    char *str;                  /* same; always NUL-terminated after len bytes */
    size_t elements;            /* ARRAY (RESP3 maps, sets and pushes arrive flattened) */
    struct rp_reply **element;  /* ARRAY */
} rp_reply;

/* What an error reply stands for, as a status of error.h: RP_EAUTH when Redis wants other
 * credentials (NOAUTH: a command before AUTH; WRONGPASS), RP_EREPLY for any other error,
 * RP_OK when reply is not an error (or NULL). Frontends use it for raw commands' replies. */
int rp_reply_error_status(const rp_reply *reply);

/* Frees a reply tree that the caller owns (see the function that handed it out).
 * NULL is a no-op. */
void rp_reply_free(rp_reply *reply);

#ifdef __cplusplus
}
#endif
#endif
