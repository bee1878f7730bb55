/* redpat — status codes and the caller-owned error record. */
#ifndef REDPAT_ERROR_H
#define REDPAT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Every function that can fail returns one of these. Normal outcomes ("lock busy",
 * "fence refused") are not errors: they come back in the operation's result. */
typedef enum rp_status {
    RP_OK = 0,
    RP_EINVAL = -1,     /* an argument is invalid; detected before any I/O */
    RP_ENOMEM = -2,     /* the allocator returned NULL */
    RP_ETRANSPORT = -3, /* connecting, writing or reading failed; the connection is dropped */
    RP_ETIMEOUT = -4,   /* connect or command timeout; the connection is dropped */
    RP_EPROTOCOL = -5,  /* a reply could not be parsed or had an unexpected shape */
    RP_EREPLY = -6,     /* Redis answered with an error reply (WRONGTYPE, OOM, READONLY, ...) */
    RP_ENOTOWNED = -7,  /* release/extend of a lock this handle does not own (any more) */
    RP_ESTATE = -8,     /* an API was called out of order (e.g. a result read before DONE) */
    RP_ECANCELED = -9,  /* the driver cancelled the op (a signal, a cancelled task); no request
                           was left in flight */
    RP_ECALLBACK = -10, /* the user's callback (a CALL) failed; frontends re-raise its own error */
    RP_ELOST = -11,     /* a held lock was lost (a renewal failed) while its holder worked */
    RP_EAUTH = -12      /* the server refused the connection's AUTH (a wrong or missing password:
                           WRONGPASS, NOAUTH, ...); the connection is dropped */
} rp_status;

#define RP_ERROR_MESSAGE_MAX 256

/* Caller-owned details of the last failure. Functions take it last; NULL is allowed. */
typedef struct rp_error {
    int code;                           /* an rp_status */
    char message[RP_ERROR_MESSAGE_MAX]; /* NUL-terminated, human readable */
} rp_error;

/* A stable machine name for a status: "ok", "invalid_argument", "no_memory", "transport",
 * "timeout", "protocol", "reply", "not_owned", "state", "cancelled", "callback", "lost", "auth";
 * "unknown" otherwise.
 * The returned string is static. The test matrix and every frontend use these names. */
const char *rp_status_name(int code);

/* Resets err to RP_OK with an empty message. err may be NULL. */
void rp_error_clear(rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
