/* redpat — Pub/Sub: publish, and subscriptions to channels and patterns.
 *
 * Fire-and-forget fan-out: a message reaches whoever is subscribed at that moment and is
 * lost for everyone else (a subscriber that is reconnecting, or not yet subscribed, never
 * sees it). When every message must be processed, use a stream (XADD / XREADGROUP) instead.
 *
 * A subscription is a handle that says what its user WANTS (channels, patterns); it does no
 * I/O. Its listen op is long-lived (rp_op_long_lived): it keeps a connection of its own,
 * sends SUBSCRIBE / PSUBSCRIBE for what is wanted, EMITs every message that arrives, one at
 * a time, and at each step sends whatever the wanted sets gained or lost since. When its
 * connection drops it sleeps with jittered backoff, re-subscribes everything on a fresh
 * connection and, once the server has confirmed, EMITs one RP_PUBSUB_RECONNECT message
 * (messages published meanwhile are lost: that is Pub/Sub). It never ends by itself:
 * the driver frees it.
 *
 *     rp_subscription *s;
 *     const void *ch[] = { "news" }; size_t chl[] = { 4 };
 *     rp_subscription_new(&s, client, 1, ch, chl, 0, NULL, NULL, &err);
 *     rp_subscription_listen_op(&op, s, &err);
 *     while (rp_client_pump(client, op, 1000, NULL, &err) == RP_OK) {  // drive.h
 *         rp_pubsub_message m;
 *         rp_subscription_message(op, &m);   // m.kind, m.channel, m.data, ...
 *     }
 *     rp_op_free(op); rp_subscription_free(s);
 *
 * Everything is binary-safe (pointer and length): channel names, patterns, payloads.
 *
 * Threads: a subscription and its listen ops are one handle group: change what it wants
 * (subscribe / unsubscribe) from the thread that steps its listen op, or between steps
 * under the caller's own lock.
 *
 * Failures: a dropped or timed-out connection is retried forever (that is what a long-lived
 * subscription is for). Anything reconnecting cannot fix ends the op in ERROR: bytes that
 * are not RESP or a push of an unknown shape (RP_EPROTOCOL), an error reply to SUBSCRIBE or
 * a refused handshake (RP_EREPLY: a wrong password, an ACL without channel rights), no
 * endpoint (RP_EINVAL), no memory. */
#ifndef REDPAT_PUBSUB_H
#define REDPAT_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "error.h"
#include "op.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits, tested at the edge. */
#define RP_PUBSUB_CHANNEL_MAX 65536     /* bytes in a channel name (>= 1) */
#define RP_PUBSUB_PATTERN_MAX 65536     /* bytes in a pattern (>= 1) */
#define RP_SUBSCRIPTION_NAMES_MAX 10000 /* channels + patterns one subscription wants */

/* Reconnection backoff of a listen op: the first delay, doubling up to the cap, each
 * jittered to [d/2, d]. */
#define RP_SUBSCRIPTION_BACKOFF_MIN_MS 50
#define RP_SUBSCRIPTION_BACKOFF_MAX_MS 2000

/* --- publish ------------------------------------------------------------------------- */

/* PUBLISH channel message. channel: 1..RP_PUBSUB_CHANNEL_MAX bytes; message: any bytes
 * (message may be NULL when message_len is 0). The result is how many subscribers received
 * it (on this server). */
int rp_pubsub_publish_op(rp_op **out, rp_client *client, const void *channel,
                         size_t channel_len, const void *message, size_t message_len,
                         rp_error *err);
/* The receiver count of a DONE publish op. RP_ESTATE for any other op. */
int rp_pubsub_publish_result(const rp_op *op, int64_t *receivers);
/* Blocking publish over the client; receivers may be NULL. */
int rp_pubsub_publish(rp_client *client, const void *channel, size_t channel_len,
                      const void *message, size_t message_len, int64_t *receivers,
                      rp_error *err);

/* --- subscriptions --------------------------------------------------------------------- */

typedef struct rp_subscription rp_subscription;

/* Creates a subscription wanting channels[0..nchannels) and patterns[0..npatterns) (each
 * names[i] / lens[i]; the arrays may be NULL when their count is 0; duplicates count once).
 * No I/O. The client is borrowed and must outlive the subscription; the names are copied.
 * *out belongs to the caller: rp_subscription_free. RP_EINVAL for an empty or too long
 * name, or more than RP_SUBSCRIPTION_NAMES_MAX names in all; RP_ENOMEM. */
int rp_subscription_new(rp_subscription **out, rp_client *client, size_t nchannels,
                        const void *const *channels, const size_t *channel_lens,
                        size_t npatterns, const void *const *patterns,
                        const size_t *pattern_lens, rp_error *err);
/* Frees the subscription. Its listen ops borrow it: free them first. NULL is a no-op. */
void rp_subscription_free(rp_subscription *sub);
rp_client *rp_subscription_client(const rp_subscription *sub);

/* Adds channels and patterns to what the subscription wants (no I/O: a running listen op
 * sends SUBSCRIBE / PSUBSCRIBE at its next step). Names already wanted are ignored. All or
 * nothing: on RP_EINVAL (a bad name, the total above RP_SUBSCRIPTION_NAMES_MAX) or RP_ENOMEM
 * nothing changes. */
int rp_subscription_subscribe(rp_subscription *sub, size_t nchannels,
                              const void *const *channels, const size_t *channel_lens,
                              size_t npatterns, const void *const *patterns,
                              const size_t *pattern_lens, rp_error *err);
/* Removes channels and patterns from what it wants (no I/O: the listen op sends UNSUBSCRIBE /
 * PUNSUBSCRIBE at its next step); names not wanted are ignored. Nothing given (both counts
 * 0): everything. RP_EINVAL for an empty or too long name (nothing changes). */
int rp_subscription_unsubscribe(rp_subscription *sub, size_t nchannels,
                                const void *const *channels, const size_t *channel_lens,
                                size_t npatterns, const void *const *patterns,
                                const size_t *pattern_lens, rp_error *err);

/* How many channels / patterns the subscription wants now, and the i-th of them in
 * byte-wise order (borrowed until the next subscribe / unsubscribe / free; NULL out of
 * range). */
size_t rp_subscription_channels(const rp_subscription *sub);
size_t rp_subscription_patterns(const rp_subscription *sub);
const char *rp_subscription_channel_at(const rp_subscription *sub, size_t i, size_t *len);
const char *rp_subscription_pattern_at(const rp_subscription *sub, size_t i, size_t *len);

/* The listen op (long-lived, one target: the client's first endpoint). It borrows the
 * subscription: free it first. Several listen ops of one subscription each keep their own
 * connection and get every message. */
int rp_subscription_listen_op(rp_op **out, rp_subscription *sub, rp_error *err);

/* What a listen op EMITs. The values are the names the descriptors use. */
typedef enum rp_pubsub_kind {
    RP_PUBSUB_MESSAGE = 0,      /* a message on a subscribed channel: channel, data */
    RP_PUBSUB_PMESSAGE = 1,     /* a message matched by a pattern: pattern, channel, data */
    RP_PUBSUB_SUBSCRIBE = 2,    /* the server confirmed a channel: channel, count */
    RP_PUBSUB_UNSUBSCRIBE = 3,  /* ... dropped a channel: channel, count */
    RP_PUBSUB_PSUBSCRIBE = 4,   /* ... confirmed a pattern: pattern, count */
    RP_PUBSUB_PUNSUBSCRIBE = 5, /* ... dropped a pattern: pattern, count */
    RP_PUBSUB_RECONNECT = 6     /* the connection dropped and everything wanted is subscribed
                                   again on a new one; messages may have been missed */
} rp_pubsub_kind;

/* "message", "pmessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
 * "reconnect" (static), or NULL for a value out of range. */
const char *rp_pubsub_kind_name(rp_pubsub_kind kind);

typedef struct rp_pubsub_message {
    rp_pubsub_kind kind;
    const char *channel; /* NULL (len 0) for p(un)subscribe and reconnect */
    size_t channel_len;
    const char *pattern; /* NULL (len 0) unless pmessage / p(un)subscribe */
    size_t pattern_len;
    const char *data;    /* NULL (len 0) unless message / pmessage */
    size_t data_len;
    int64_t count;       /* (un)subscribe kinds: the connection's subscriptions now; else 0 */
} rp_pubsub_message;

/* The message of a listen op that has just returned RP_STEP_EMIT. The bytes are borrowed
 * until the op's next step (or rp_op_free). RP_ESTATE otherwise. */
int rp_subscription_message(const rp_op *op, rp_pubsub_message *out);

#ifdef __cplusplus
}
#endif
#endif
