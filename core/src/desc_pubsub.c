/* Descriptors of Pub/Sub: pubsub.publish, subscription.new, .subscribe, .unsubscribe and the
 * long-lived subscription.listen, over the typed API in pubsub.h. */
#include <string.h>

#include "desc_internal.h"

#define SELF_CLIENT(doc) { "client", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_CLIENT, \
                           RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, doc }
#define SELF_SUB { "subscription", RP_TYPE_HANDLE, RP_TYPE_NONE, RP_KIND_SUBSCRIPTION, \
                   RP_ARG_SELF | RP_ARG_REQUIRED, 0, 0, 0, 0, 0, NULL, "the subscription" }
#define CHANNELS(doc) { "channels", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, 0, 0, 0, \
                        RP_SUBSCRIPTION_NAMES_MAX, 1, RP_PUBSUB_CHANNEL_MAX, NULL, doc }
#define PATTERNS(doc) { "patterns", RP_TYPE_LIST, RP_TYPE_BYTES, RP_KIND_NONE, 0, 0, 0, \
                        RP_SUBSCRIPTION_NAMES_MAX, 1, RP_PUBSUB_PATTERN_MAX, NULL, doc }
#define N(a) (sizeof a / sizeof a[0])

/* --- pubsub.publish ------------------------------------------------------------------- */

static const rp_arg_desc publish_args[] = {
    SELF_CLIENT("the client the message is published on"),
    { "channel", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 1,
      RP_PUBSUB_CHANNEL_MAX, 0, 0, NULL, "the channel (binary-safe)" },
    { "message", RP_TYPE_BYTES, RP_TYPE_NONE, RP_KIND_NONE, RP_ARG_REQUIRED, 0, 0, INT64_MAX,
      0, 0, NULL, "the payload (binary-safe, may be empty)" },
};

static const rp_field_desc publish_fields[] = {
    { "receivers", RP_TYPE_INT, "how many subscribers (channel and pattern ones) received it" },
};

static int publish_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_pubsub_publish_op(out, a[0].handle, a[1].bytes, a[1].len, a[2].bytes, a[2].len,
                                err);
}

static int publish_result(const rp_op *op, size_t index, rp_value *f)
{
    int64_t n = 0;
    int rc = rp_pubsub_publish_result(op, &n);
    (void)index;
    if (rc == RP_OK)
        f[0] = rp_value_int(RP_TYPE_INT, n);
    return rc;
}

/* --- lists of names as the typed API takes them ---------------------------------------- */

typedef struct names {
    size_t count;
    const void **p;
    size_t *lens;
} names;

/* Points n at the items of a LIST argument (absent: none). Free with names_free. */
static int names_of(const rp_allocator *al, const rp_value *v, names *n, rp_error *err)
{
    size_t i;
    memset(n, 0, sizeof *n);
    if (v->type != RP_TYPE_LIST || v->count == 0)
        return RP_OK;
    n->p = rp_alloc__malloc(al, v->count * sizeof *n->p);
    n->lens = rp_alloc__malloc(al, v->count * sizeof *n->lens);
    if (!n->p || !n->lens) {
        rp_alloc__free(al, n->p);
        rp_alloc__free(al, n->lens);
        memset(n, 0, sizeof *n);
        return rp_error__set(err, RP_ENOMEM, "out of memory reading a list of names");
    }
    for (i = 0; i < v->count; i++) {
        n->p[i] = v->items[i].bytes;
        n->lens[i] = v->items[i].len;
    }
    n->count = v->count;
    return RP_OK;
}

static void names_free(const rp_allocator *al, names *n)
{
    rp_alloc__free(al, n->p);
    rp_alloc__free(al, n->lens);
}

enum { ARG_CHANNELS = 1, ARG_PATTERNS };
enum { CHANGE_SUBSCRIBE, CHANGE_UNSUBSCRIBE };

/* subscription.new (sub NULL: makes one of a[0]'s client), .subscribe, .unsubscribe. */
static int with_names(const rp_value *a, int change, rp_subscription **sub, rp_error *err)
{
    rp_client *client = change < 0 ? a[0].handle : rp_subscription_client(*sub);
    const rp_allocator *al = rp_client__allocator(client);
    names ch, pt;
    int rc;
    if ((rc = names_of(al, &a[ARG_CHANNELS], &ch, err)))
        return rc;
    if ((rc = names_of(al, &a[ARG_PATTERNS], &pt, err))) {
        names_free(al, &ch);
        return rc;
    }
    if (change < 0)
        rc = rp_subscription_new(sub, client, ch.count, ch.p, ch.lens, pt.count, pt.p, pt.lens,
                                 err);
    else if (change == CHANGE_SUBSCRIBE)
        rc = rp_subscription_subscribe(*sub, ch.count, ch.p, ch.lens, pt.count, pt.p, pt.lens,
                                       err);
    else
        rc = rp_subscription_unsubscribe(*sub, ch.count, ch.p, ch.lens, pt.count, pt.p,
                                         pt.lens, err);
    names_free(al, &ch);
    names_free(al, &pt);
    return rc;
}

/* --- subscription.new ------------------------------------------------------------------ */

static const rp_arg_desc new_args[] = {
    SELF_CLIENT("the client the subscription is made from (give each one a client of its "
                "own: its listen op keeps a connection)"),
    CHANNELS("channels to subscribe to (binary-safe)"),
    PATTERNS("glob-style patterns to subscribe to (PSUBSCRIBE)"),
};

static int sub_make(void **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    rp_subscription *s = NULL;
    int rc = with_names(a, -1, &s, err);
    (void)nm;
    *out = s;
    return rc;
}

/* --- subscription.subscribe / .unsubscribe: no I/O ----------------------------------------- */

static const rp_arg_desc subscribe_args[] = {
    SELF_SUB,
    CHANNELS("channels to add"),
    PATTERNS("patterns to add"),
};

static const rp_arg_desc unsubscribe_args[] = {
    SELF_SUB,
    CHANNELS("channels to drop (absent, with patterns absent too: everything)"),
    PATTERNS("patterns to drop (absent, with channels absent too: everything)"),
};

static int change_begin(rp_op **out, const rp_value *a, int change, rp_error *err)
{
    rp_subscription *s = a[0].handle;
    int rc = rp_desc__local_op(out, rp_subscription_client(s), s, err);
    if (rc == RP_OK && (rc = with_names(a, change, &s, err)) != RP_OK) {
        rp_op_free(*out);
        *out = NULL;
    }
    return rc;
}

static int subscribe_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return change_begin(out, a, CHANGE_SUBSCRIBE, err);
}

static int unsubscribe_begin(rp_op **out, const rp_value *a, const rp_naming *nm,
                             rp_error *err)
{
    (void)nm;
    return change_begin(out, a, CHANGE_UNSUBSCRIBE, err);
}

/* --- subscription.listen: long-lived, EMITs messages ----------------------------------------- */

static const rp_arg_desc listen_args[] = { SELF_SUB };

static const rp_field_desc message_fields[] = {
    { "kind", RP_TYPE_ENUM, "message, pmessage, subscribe, unsubscribe, psubscribe, "
      "punsubscribe or reconnect" },
    { "channel", RP_TYPE_BYTES, "the channel; absent for p(un)subscribe and reconnect" },
    { "pattern", RP_TYPE_BYTES, "the pattern; absent unless pmessage or p(un)subscribe" },
    { "data", RP_TYPE_BYTES, "the payload; absent unless message or pmessage" },
    { "count", RP_TYPE_INT, "(un)subscribe kinds: the connection's subscriptions now; else 0" },
};

static int listen_begin(rp_op **out, const rp_value *a, const rp_naming *nm, rp_error *err)
{
    (void)nm;
    return rp_subscription_listen_op(out, a[0].handle, err);
}

static int listen_message(const rp_op *op, rp_value *f)
{
    rp_pubsub_message m;
    int rc = rp_subscription_message(op, &m);
    if (rc != RP_OK)
        return rc;
    f[0] = rp_value_int(RP_TYPE_ENUM, m.kind);
    f[0].bytes = rp_pubsub_kind_name(m.kind);
    f[0].len = strlen(f[0].bytes);
    if (m.channel)
        f[1] = rp_value_bytes(m.channel, m.channel_len);
    if (m.pattern)
        f[2] = rp_value_bytes(m.pattern, m.pattern_len);
    if (m.data)
        f[3] = rp_value_bytes(m.data, m.data_len);
    f[4] = rp_value_int(RP_TYPE_INT, m.count);
    return RP_OK;
}

const rp_op_desc rp_desc__pubsub_ops[] = {
    { "pubsub.publish", "publish", RP_KIND_CLIENT, RP_KIND_NONE, 1, publish_args,
      N(publish_args), RP_RESULT_RECORD, publish_fields, N(publish_fields),
      "PUBLISH: fire-and-forget to whoever is subscribed now (use a stream when every "
      "message must be processed)",
      publish_begin, NULL, NULL, publish_result, RP_DESC_PLAIN },
    { "subscription.new", "new", RP_KIND_CLIENT, RP_KIND_SUBSCRIPTION, 0, new_args,
      N(new_args), RP_RESULT_NONE, NULL, 0,
      "a subscription: the channels and patterns it wants (no I/O; listen subscribes)",
      NULL, sub_make, NULL, NULL, RP_DESC_PLAIN },
    { "subscription.subscribe", "subscribe", RP_KIND_SUBSCRIPTION, RP_KIND_NONE, 0,
      subscribe_args, N(subscribe_args), RP_RESULT_NONE, NULL, 0,
      "wants more channels / patterns (no I/O: a running listen sends SUBSCRIBE at its next "
      "step)",
      subscribe_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "subscription.unsubscribe", "unsubscribe", RP_KIND_SUBSCRIPTION, RP_KIND_NONE, 0,
      unsubscribe_args, N(unsubscribe_args), RP_RESULT_NONE, NULL, 0,
      "wants fewer channels / patterns, or none (no I/O: a running listen sends UNSUBSCRIBE "
      "at its next step)",
      unsubscribe_begin, NULL, NULL, NULL, RP_DESC_PLAIN },
    { "subscription.listen", "listen", RP_KIND_SUBSCRIPTION, RP_KIND_NONE, 1, listen_args,
      N(listen_args), RP_RESULT_NONE, NULL, 0,
      "long-lived: subscribes on a connection of its own and emits every message (and each "
      "(un)subscribe confirmation); after a dropped connection it backs off, re-subscribes "
      "and emits one reconnect; never ends by itself",
      listen_begin, NULL, NULL, NULL, message_fields, N(message_fields), listen_message, 1 },
};

const size_t rp_desc__pubsub_count = N(rp_desc__pubsub_ops);
