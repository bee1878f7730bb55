/* redpat — rate limiters: fixed window, sliding log, sliding window counter, token bucket
 * and GCRA; single checks, all-or-nothing multi-limit checks, pipelined batches.
 *
 * Every check is one script in one round trip, decided on the Redis server's clock, and
 * every key it writes carries a TTL. Keys (hash-tagged on the subject, so all limits of one
 * subject share a cluster slot):
 *   <ns>:rl:<limiter>:{<subject>}       the limiter's state for the subject
 *   <ns>:rl:<limiter>:{<subject>}:seq   sliding log only: unique member ids
 *
 * Which algorithm:
 *   fixed window    cheapest (one counter); allows up to 2x limit across a window edge
 *   sliding log     exact over any window; memory grows with the limit (one entry/request)
 *   sliding window  O(1) approximation of the sliding log (weighted previous window)
 *   token bucket    smooth rate with bursts up to `burst`
 *   GCRA            token bucket's behaviour in one number; exact retry_after
 */
#ifndef REDPAT_RATELIMIT_H
#define REDPAT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_ratelimit rp_ratelimit;

typedef enum rp_ratelimit_algorithm {
    RP_RATELIMIT_FIXED_WINDOW = 1,
    RP_RATELIMIT_SLIDING_LOG = 2,
    RP_RATELIMIT_SLIDING_WINDOW = 3,
    RP_RATELIMIT_TOKEN_BUCKET = 4,
    RP_RATELIMIT_GCRA = 5
} rp_ratelimit_algorithm;

/* What a check answers when Redis fails (error reply, lost connection, timeout). */
typedef enum rp_ratelimit_on_error {
    RP_RATELIMIT_REPORT = 0,     /* the check fails with the error (the default) */
    RP_RATELIMIT_FAIL_OPEN = 1,  /* allowed, with decision.degraded = 1 */
    RP_RATELIMIT_FAIL_CLOSED = 2 /* refused, with decision.degraded = 1 */
} rp_ratelimit_on_error;

typedef struct rp_ratelimit_options {
    rp_ratelimit_algorithm algorithm;
    int64_t limit;     /* 1..RP_RATELIMIT_COUNT_MAX: requests allowed per window (the
                          sustained rate) */
    int64_t window_ms; /* 1..RP_RATELIMIT_WINDOW_MS_MAX */
    int64_t burst;     /* token bucket and GCRA: most requests at once (the bucket's
                          capacity), 0..RP_RATELIMIT_COUNT_MAX; 0 means limit. Must be 0
                          for the other algorithms. burst * window_ms / limit, the time a
                          full burst takes to refill, is at most RP_RATELIMIT_WINDOW_MS_MAX. */
    rp_ratelimit_on_error on_error;
} rp_ratelimit_options;

/* GCRA by default: exact retry_after, smooth rate, one small key per subject. */
#define RP_RATELIMIT_OPTIONS_INIT { RP_RATELIMIT_GCRA, 0, 0, 0, RP_RATELIMIT_REPORT }

/* Names, shared by every frontend: "fixed_window", "sliding_log", "sliding_window",
 * "token_bucket", "gcra"; "report", "fail_open", "fail_closed". The parsers fail with
 * RP_EINVAL and a message naming the option and its choices. The names are static. */
int rp_ratelimit_algorithm_parse(const char *name, size_t len, rp_ratelimit_algorithm *out,
                                 rp_error *err);
int rp_ratelimit_on_error_parse(const char *name, size_t len, rp_ratelimit_on_error *out,
                                rp_error *err);
const char *rp_ratelimit_algorithm_name(rp_ratelimit_algorithm algorithm); /* NULL: invalid */
const char *rp_ratelimit_on_error_name(rp_ratelimit_on_error on_error);    /* NULL: invalid */

/* Limits on names and batches, tested at the edge. */
#define RP_RATELIMIT_NAME_MAX 128     /* bytes in a limiter's name */
#define RP_RATELIMIT_SUBJECT_MAX 65536 /* bytes in a subject */
#define RP_RATELIMIT_MULTI_MAX 8      /* limiters in one multi check (bounds the script argv) */
/* The most the script (Lua doubles, numbers sent to Redis as "%.17g") computes exactly:
 * counts (limit, burst, cost) and windows; ratelimit.c says why. */
#define RP_RATELIMIT_COUNT_MAX ((int64_t)1 << 52)     /* limit, burst, cost */
#define RP_RATELIMIT_WINDOW_MS_MAX ((int64_t)1 << 40) /* ~34.8 years; also a burst's refill */
#define RP_RATELIMIT_LOG_COST_MAX ((int64_t)1 << 16) /* sliding log: an entry per unit of cost */

/* The name (1..RP_RATELIMIT_NAME_MAX bytes, no '{', '}' or NUL) keeps limiters of one
 * client apart in Redis. No I/O. The client is borrowed and must outlive the limiter. */
int rp_ratelimit_new(rp_ratelimit **out, rp_client *client, const void *name, size_t name_len,
                     const rp_ratelimit_options *options, rp_error *err);
void rp_ratelimit_free(rp_ratelimit *limiter);

/* The limiter's name (borrowed; name_len bytes, not NUL-terminated in general), its options
 * as given (burst 0 when the default was taken) and its client. */
const char *rp_ratelimit_name(const rp_ratelimit *limiter, size_t *name_len);
const rp_ratelimit_options *rp_ratelimit_options_of(const rp_ratelimit *limiter);
rp_client *rp_ratelimit_client(const rp_ratelimit *limiter);

/* A degraded decision's error message, cut to fit: decisions are copied by value. */
#define RP_RATELIMIT_ERROR_MAX 128

typedef struct rp_ratelimit_decision {
    int allowed;
    int64_t limit;          /* the limit that decided (burst for token bucket and GCRA) */
    int64_t remaining;      /* requests of cost 1 still allowed now */
    int64_t retry_after_ms; /* 0 when allowed; else when this request would be allowed */
    int64_t reset_after_ms; /* until the limiter is back to its full allowance */
    int refused_by;         /* multi-limit: index of the limit that refused; else -1 */
    int degraded;           /* 1: Redis failed and the on_error policy decided */
    int error_code;         /* degraded: the rp_status Redis failed with; else RP_OK */
    char error_message[RP_RATELIMIT_ERROR_MAX]; /* degraded: why (NUL-terminated, maybe cut
                                                   short); else "" */
} rp_ratelimit_decision;

/* Check (and consume cost for) subject. cost 0 peeks without consuming: the decision is
 * the one a request of cost 1 would get now (an exhausted subject peeks as refused, with
 * its retry_after). Sleeping retry_after then retrying the same cost is allowed (unless
 * others used the allowance meanwhile). cost above the limit (burst) is rejected as
 * RP_EINVAL, since it could never be allowed; so is a sliding log cost above
 * RP_RATELIMIT_LOG_COST_MAX (one log entry per unit, all added by one script).
 * subject: 1..65536 bytes, binary-safe. */
int rp_ratelimit_check_op(rp_op **out, rp_ratelimit *limiter, const void *subject,
                          size_t subject_len, int64_t cost, rp_error *err);
/* The decision of a DONE check or multi op; RP_ESTATE for any other op. */
int rp_ratelimit_check_result(const rp_op *op, rp_ratelimit_decision *out);
int rp_ratelimit_check(rp_ratelimit *limiter, const void *subject, size_t subject_len,
                       int64_t cost, rp_ratelimit_decision *out, rp_error *err);

/* All-or-nothing: subject is allowed only if every limiter allows it, and then cost is
 * consumed from all; a refusal consumes nothing. The decision is the refusing limit's
 * (refused_by = its index) or, when allowed, the one with the least remaining. 1 to
 * RP_RATELIMIT_MULTI_MAX limiters, sharing one client; the strictest on_error applies
 * (closed > report > open). */
int rp_ratelimit_multi_op(rp_op **out, rp_ratelimit *const *limiters, size_t count,
                          const void *subject, size_t subject_len, int64_t cost,
                          rp_error *err);
int rp_ratelimit_multi(rp_ratelimit *const *limiters, size_t count, const void *subject,
                       size_t subject_len, int64_t cost, rp_ratelimit_decision *out,
                       rp_error *err);

/* Many subjects, one limiter, one pipelined round trip. costs may be NULL (all 1).
 * With RP_RATELIMIT_REPORT the op fails on the first Redis error; otherwise each failed
 * check gets the policy's degraded decision. */
int rp_ratelimit_batch_op(rp_op **out, rp_ratelimit *limiter, size_t count,
                          const void *const *subjects, const size_t *subject_lens,
                          const int64_t *costs, rp_error *err);
/* Decision i of a DONE batch op. */
int rp_ratelimit_batch_result(const rp_op *op, size_t i, rp_ratelimit_decision *out);
size_t rp_ratelimit_batch_count(const rp_op *op);

/* Forgets everything the limiter knows about subject (one command). */
int rp_ratelimit_reset_op(rp_op **out, rp_ratelimit *limiter, const void *subject,
                          size_t subject_len, rp_error *err);
int rp_ratelimit_reset(rp_ratelimit *limiter, const void *subject, size_t subject_len,
                       rp_error *err);

#ifdef __cplusplus
}
#endif
#endif
