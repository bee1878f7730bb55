/* Pub/Sub: PUBLISH, and subscriptions whose long-lived listen op keeps the server's
 * subscriptions equal to what the user wants, EMITs what arrives, and re-subscribes
 * everything after its connection drops. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "op_internal.h"

/* Indexed by rp_pubsub_kind; the first six are also the words of Redis' pushes. */
static const char *const kind_names[] = {
    "message", "pmessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
    "reconnect"
};
#define NKINDS (sizeof kind_names / sizeof kind_names[0])

const char *rp_pubsub_kind_name(rp_pubsub_kind kind)
{
    return (unsigned)kind < NKINDS ? kind_names[kind] : NULL;
}

/* The most of a push's first element quoted in a protocol error. */
#define QUOTE_MAX 32

/* --- publish --------------------------------------------------------------------------- */

typedef struct publish_state {
    int64_t receivers;
} publish_state;

static int publish_advance(rp_op *op, void *state, uint64_t now_ms)
{
    publish_state *s = state;
    const rp_reply *r = rp_op__reply(op, 0, 0);
    int rc;
    (void)now_ms;
    /* the command was queued when the op was made: the first advance only starts it */
    if (rp_op__replies(op, 0) == 0)
        return RP_OK;
    if ((rc = rp_op__expect_int(op, r, "the count of receivers", 0, LLONG_MAX)))
        return rc;
    s->receivers = r->integer;
    rp_op__done(op);
    return RP_OK;
}

static const rp_op_class publish_class = {
    "pubsub.publish", sizeof(publish_state), publish_advance, NULL, 0, NULL, 0, 0, 0, 0
};

/* "<what> must not be empty" / "<what> must be 1..N bytes (got L)", or RP_OK. */
static int check_name(const char *what, const void *p, size_t len, size_t max, rp_error *err)
{
    if (!p || len == 0)
        return rp_error__set(err, RP_EINVAL, "%s must not be empty", what);
    if (len > max)
        return rp_error__set(err, RP_EINVAL, "%s must be 1..%zu bytes (got %zu)", what, max,
                             len);
    return RP_OK;
}

int rp_pubsub_publish_op(rp_op **out, rp_client *client, const void *channel,
                         size_t channel_len, const void *message, size_t message_len,
                         rp_error *err)
{
    publish_state *s;
    const char *argv[3];
    size_t lens[3];
    int rc;
    if (out)
        *out = NULL;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    if ((rc = check_name("channel", channel, channel_len, RP_PUBSUB_CHANNEL_MAX, err)))
        return rc;
    if (!message && message_len > 0)
        return rp_error__set(err, RP_EINVAL, "message: no bytes for its length");
    if ((rc = rp_op__new(out, client, &publish_class, 1, (void **)&s, err)))
        return rc;
    argv[0] = "PUBLISH"; lens[0] = 7;
    argv[1] = channel; lens[1] = channel_len;
    argv[2] = message ? message : ""; lens[2] = message_len;
    /* queued now, copied once: a payload may be large */
    if (rp_op__command(*out, 0, 3, argv, lens) != RP_OK) {
        rp_op_free(*out);
        *out = NULL;
        return rp_error__set(err, RP_ENOMEM, "out of memory queueing PUBLISH");
    }
    return RP_OK;
}

int rp_pubsub_publish_result(const rp_op *op, int64_t *receivers)
{
    const publish_state *s = rp_op__done_state(op, &publish_class);
    if (!s || !receivers)
        return RP_ESTATE;
    *receivers = s->receivers;
    return RP_OK;
}

int rp_pubsub_publish(rp_client *client, const void *channel, size_t channel_len,
                      const void *message, size_t message_len, int64_t *receivers,
                      rp_error *err)
{
    rp_op *op;
    int64_t n = 0;
    int rc = rp_pubsub_publish_op(&op, client, channel, channel_len, message, message_len, err);
    if (rc)
        return rc;
    if ((rc = rp_client_run(client, op, err)) == RP_OK && receivers) {
        rp_pubsub_publish_result(op, &n);
        *receivers = n;
    }
    rp_op_free(op);
    return rc;
}

/* --- sets of names: sorted byte-wise, each name owned ------------------------------------ */

typedef struct name {
    char *p;
    size_t len;
} name;

typedef struct name_set {
    name *v;
    size_t n, cap;
} name_set;

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* The index of p in s, or where it would go (*found 0). */
static size_t set_find(const name_set *s, const char *p, size_t len, int *found)
{
    size_t lo = 0, hi = s->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(s->v[mid].p, s->v[mid].len, p, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* 1: inserted, 0: already there, RP_ENOMEM. */
static int set_insert(const rp_allocator *a, name_set *s, const char *p, size_t len)
{
    int found;
    size_t i = set_find(s, p, len, &found);
    char *copy;
    if (found)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        name *v = rp_alloc__realloc(a, s->v, cap * sizeof *v);
        if (!v)
            return RP_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    /* +1 and a NUL: the bytes can be handed out like reply strings */
    if (!(copy = rp_alloc__malloc(a, len + 1)))
        return RP_ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *s->v);
    s->v[i].p = copy;
    s->v[i].len = len;
    s->n++;
    return 1;
}

/* 1: removed, 0: was not there. */
static int set_remove(const rp_allocator *a, name_set *s, const char *p, size_t len)
{
    int found;
    size_t i = set_find(s, p, len, &found);
    if (!found)
        return 0;
    rp_alloc__free(a, s->v[i].p);
    memmove(s->v + i, s->v + i + 1, (s->n - i - 1) * sizeof *s->v);
    s->n--;
    return 1;
}

static void set_clear(const rp_allocator *a, name_set *s)
{
    size_t i;
    for (i = 0; i < s->n; i++)
        rp_alloc__free(a, s->v[i].p);
    s->n = 0;
}

static void set_free(const rp_allocator *a, name_set *s)
{
    set_clear(a, s);
    rp_alloc__free(a, s->v);
    memset(s, 0, sizeof *s);
}

/* --- subscriptions ------------------------------------------------------------------------ */

struct rp_subscription {
    rp_client *client;
    name_set channels, patterns; /* what the user wants */
    uint64_t version;            /* bumped by every change: listen ops compare it */
};

static const rp_allocator *sub_alloc(const rp_subscription *s)
{
    return rp_client__allocator(s->client);
}

/* One list of names as given: every name checked, "<what>[i]" in messages. */
static int check_names(const char *what, size_t count, const void *const *names,
                       const size_t *lens, size_t max, rp_error *err)
{
    char label[40];
    size_t i;
    int rc;
    if (count > 0 && (!names || !lens))
        return rp_error__set(err, RP_EINVAL, "%s: no names for its count", what);
    if (count > RP_SUBSCRIPTION_NAMES_MAX)
        return rp_error__set(err, RP_EINVAL, "%s must have 0..%d items (got %zu)", what,
                             RP_SUBSCRIPTION_NAMES_MAX, count);
    for (i = 0; i < count; i++) {
        snprintf(label, sizeof label, "%s[%zu]", what, i);
        if ((rc = check_name(label, names[i], lens[i], max, err)))
            return rc;
    }
    return RP_OK;
}

static int check_both(size_t nchannels, const void *const *channels, const size_t *channel_lens,
                      size_t npatterns, const void *const *patterns, const size_t *pattern_lens,
                      rp_error *err)
{
    int rc = check_names("channels", nchannels, channels, channel_lens, RP_PUBSUB_CHANNEL_MAX,
                         err);
    if (rc == RP_OK)
        rc = check_names("patterns", npatterns, patterns, pattern_lens, RP_PUBSUB_PATTERN_MAX,
                         err);
    return rc;
}

int rp_subscription_subscribe(rp_subscription *sub, size_t nchannels,
                              const void *const *channels, const size_t *channel_lens,
                              size_t npatterns, const void *const *patterns,
                              const size_t *pattern_lens, rp_error *err)
{
    const rp_allocator *a;
    unsigned char *added; /* added[i]: input name i (channels, then patterns) was new */
    size_t i, total = nchannels + npatterns;
    int rc = RP_OK, changed = 0;
    if (!sub)
        return rp_error__set(err, RP_EINVAL, "subscription must not be NULL");
    if ((rc = check_both(nchannels, channels, channel_lens, npatterns, patterns, pattern_lens,
                         err)))
        return rc;
    if (total == 0)
        return RP_OK;
    a = sub_alloc(sub);
    if (!(added = rp_alloc__calloc(a, total, 1)))
        return rp_error__set(err, RP_ENOMEM, "out of memory subscribing");
    for (i = 0; i < total && rc >= 0; i++) {
        int is_ch = i < nchannels;
        size_t k = is_ch ? i : i - nchannels;
        rc = set_insert(a, is_ch ? &sub->channels : &sub->patterns,
                        is_ch ? channels[k] : patterns[k], is_ch ? channel_lens[k]
                                                                 : pattern_lens[k]);
        added[i] = rc == 1;
        changed |= rc == 1;
    }
    if (rc < 0)
        rc = rp_error__set(err, RP_ENOMEM, "out of memory subscribing");
    else if (sub->channels.n + sub->patterns.n > RP_SUBSCRIPTION_NAMES_MAX)
        rc = rp_error__set(err, RP_EINVAL, "a subscription wants at most %d channels and "
                           "patterns in all (this would make %zu)", RP_SUBSCRIPTION_NAMES_MAX,
                           sub->channels.n + sub->patterns.n);
    else
        rc = RP_OK;
    if (rc != RP_OK) {
        /* all or nothing: take back what this call added */
        for (i = 0; i < total; i++) {
            size_t k = i < nchannels ? i : i - nchannels;
            if (!added[i])
                continue;
            if (i < nchannels)
                set_remove(a, &sub->channels, channels[k], channel_lens[k]);
            else
                set_remove(a, &sub->patterns, patterns[k], pattern_lens[k]);
        }
        changed = 0;
    }
    rp_alloc__free(a, added);
    if (changed)
        sub->version++;
    return rc;
}

int rp_subscription_unsubscribe(rp_subscription *sub, size_t nchannels,
                                const void *const *channels, const size_t *channel_lens,
                                size_t npatterns, const void *const *patterns,
                                const size_t *pattern_lens, rp_error *err)
{
    const rp_allocator *a;
    size_t i;
    int rc, changed = 0;
    if (!sub)
        return rp_error__set(err, RP_EINVAL, "subscription must not be NULL");
    if ((rc = check_both(nchannels, channels, channel_lens, npatterns, patterns, pattern_lens,
                         err)))
        return rc;
    a = sub_alloc(sub);
    if (nchannels == 0 && npatterns == 0) {
        /* nothing named: everything, as UNSUBSCRIBE / PUNSUBSCRIBE without arguments */
        changed = sub->channels.n > 0 || sub->patterns.n > 0;
        set_clear(a, &sub->channels);
        set_clear(a, &sub->patterns);
    }
    for (i = 0; i < nchannels; i++)
        changed |= set_remove(a, &sub->channels, channels[i], channel_lens[i]);
    for (i = 0; i < npatterns; i++)
        changed |= set_remove(a, &sub->patterns, patterns[i], pattern_lens[i]);
    if (changed)
        sub->version++;
    return RP_OK;
}

int rp_subscription_new(rp_subscription **out, rp_client *client, size_t nchannels,
                        const void *const *channels, const size_t *channel_lens,
                        size_t npatterns, const void *const *patterns,
                        const size_t *pattern_lens, rp_error *err)
{
    rp_subscription *s;
    int rc;
    if (out)
        *out = NULL;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    if ((rc = check_both(nchannels, channels, channel_lens, npatterns, patterns, pattern_lens,
                         err)))
        return rc;
    if (!(s = rp_alloc__calloc(rp_client__allocator(client), 1, sizeof *s)))
        return rp_error__set(err, RP_ENOMEM, "out of memory creating the subscription");
    s->client = client;
    if ((rc = rp_subscription_subscribe(s, nchannels, channels, channel_lens, npatterns,
                                        patterns, pattern_lens, err))) {
        rp_subscription_free(s);
        return rc;
    }
    *out = s;
    return RP_OK;
}

void rp_subscription_free(rp_subscription *sub)
{
    const rp_allocator *a;
    if (!sub)
        return;
    a = sub_alloc(sub);
    set_free(a, &sub->channels);
    set_free(a, &sub->patterns);
    rp_alloc__free(a, sub);
}

rp_client *rp_subscription_client(const rp_subscription *sub) { return sub ? sub->client : NULL; }
size_t rp_subscription_channels(const rp_subscription *sub) { return sub ? sub->channels.n : 0; }
size_t rp_subscription_patterns(const rp_subscription *sub) { return sub ? sub->patterns.n : 0; }

static const char *name_at(const name_set *s, size_t i, size_t *len)
{
    if (i >= s->n) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = s->v[i].len;
    return s->v[i].p;
}

const char *rp_subscription_channel_at(const rp_subscription *sub, size_t i, size_t *len)
{
    static const name_set none;
    return name_at(sub ? &sub->channels : &none, i, len);
}

const char *rp_subscription_pattern_at(const rp_subscription *sub, size_t i, size_t *len)
{
    static const name_set none;
    return name_at(sub ? &sub->patterns : &none, i, len);
}

/* --- the listen op ------------------------------------------------------------------------- */

/* One message waiting to be emitted: its fields point into reply (owned), or nowhere. */
typedef struct queued {
    rp_pubsub_message m;
    rp_reply *reply;
} queued;

/* What the last advance asked the engine for. */
enum { LAST_NONE, LAST_LISTEN, LAST_SLEEP, LAST_EMIT };

typedef struct listen_state {
    rp_subscription *sub;
    const rp_allocator *a;
    name_set sent_channels, sent_patterns; /* what this connection was asked for */
    uint64_t sent_version;                 /* sub->version when they were last compared */
    int synced;                            /* sent_version is meaningful */
    queued *q;                             /* q[head .. head+n): messages to emit, in order */
    size_t head, n, cap;
    queued current;                        /* the message of the last EMIT */
    int last;                              /* LAST_* */
    int broken;        /* the connection failed: back off once the queue is emitted */
    size_t resub_left; /* confirmations of a re-subscription still to swallow; while > 0
                          messages wait in the queue behind the coming reconnect notice */
    int resub_ping;    /* the re-subscription was a PING (nothing was wanted) */
    unsigned attempt;  /* reconnection attempts since the last success */
    uint64_t wake_ms;  /* when the backoff ends (a driver that steps early sleeps again) */
} listen_state;

static void queued_free(queued *e)
{
    rp_reply_free(e->reply);
    memset(e, 0, sizeof *e);
}

static int queue_room(listen_state *s)
{
    queued *p;
    size_t cap;
    if (s->head + s->n < s->cap)
        return RP_OK;
    if (s->head > 0) {
        memmove(s->q, s->q + s->head, s->n * sizeof *s->q);
        s->head = 0;
        return RP_OK;
    }
    cap = s->cap ? s->cap * 2 : 8;
    if (!(p = rp_alloc__realloc(s->a, s->q, cap * sizeof *p)))
        return RP_ENOMEM;
    s->q = p;
    s->cap = cap;
    return RP_OK;
}

static int queue_push(listen_state *s, const queued *e)
{
    if (queue_room(s) != RP_OK)
        return RP_ENOMEM;
    s->q[s->head + s->n++] = *e;
    return RP_OK;
}

/* The reconnect notice goes before the messages that arrived while re-subscribing. */
static int queue_push_front(listen_state *s, const queued *e)
{
    if (s->head == 0) {
        if (queue_room(s) != RP_OK)
            return RP_ENOMEM;
        memmove(s->q + 1, s->q, s->n * sizeof *s->q);
        s->head = 1;
    }
    s->q[--s->head] = *e;
    s->n++;
    return RP_OK;
}

static void listen_destroy(rp_op *op, void *state)
{
    listen_state *s = state;
    size_t i;
    (void)op;
    if (!s->a)
        return;
    for (i = 0; i < s->n; i++)
        queued_free(&s->q[s->head + i]);
    rp_alloc__free(s->a, s->q);
    queued_free(&s->current);
    set_free(s->a, &s->sent_channels);
    set_free(s->a, &s->sent_patterns);
}

/* A reply's first bytes, printable, for error messages. */
static void quote(char out[QUOTE_MAX * 4 + 1], const char *p, size_t len)
{
    size_t i, o = 0;
    for (i = 0; i < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
    }
    out[o] = '\0';
}

static const char *reply_type_word(rp_reply_type t)
{
    switch (t) {
    case RP_REPLY_STRING: return "a string";
    case RP_REPLY_ARRAY: return "an array";
    case RP_REPLY_INTEGER: return "an integer";
    case RP_REPLY_NIL: return "nil";
    case RP_REPLY_STATUS: return "a status";
    case RP_REPLY_ERROR: return "an error";
    case RP_REPLY_DOUBLE: return "a double";
    case RP_REPLY_BOOL: return "a boolean";
    }
    return "an unknown reply";
}

static int unexpected(rp_op *op, const rp_reply *r)
{
    char q[QUOTE_MAX * 4 + 1];
    if (r->type == RP_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == RP_REPLY_STRING) {
        quote(q, r->element[0]->str, r->element[0]->len);
        return rp_op__fail(op, RP_EPROTOCOL, "subscription.listen: unexpected push \"%s\" "
                           "with %zu elements", q, r->elements);
    }
    if (r->type == RP_REPLY_ARRAY)
        return rp_op__fail(op, RP_EPROTOCOL, "subscription.listen: unexpected array of %zu "
                           "elements (not a push)", r->elements);
    if (r->type == RP_REPLY_INTEGER)
        return rp_op__fail(op, RP_EPROTOCOL, "subscription.listen: unexpected integer %lld "
                           "(not a push)", r->integer);
    if (r->str) {
        quote(q, r->str, r->len);
        return rp_op__fail(op, RP_EPROTOCOL, "subscription.listen: unexpected %s \"%s\" "
                           "(not a push)", reply_type_word(r->type), q);
    }
    return rp_op__fail(op, RP_EPROTOCOL, "subscription.listen: unexpected %s (not a push)",
                       reply_type_word(r->type));
}

static int is_word(const rp_reply *r, const char *w)
{
    size_t n = strlen(w);
    return r->type == RP_REPLY_STRING && r->len == n && memcmp(r->str, w, n) == 0;
}

static int is_str(const rp_reply *r) { return r->type == RP_REPLY_STRING; }

/* Parses one push into m (fields pointing into r). 1: a message to queue, 0: nothing to
 * emit (a pong), or a failure of the op. */
static int parse_push(rp_op *op, const rp_reply *r, rp_pubsub_message *m, int *is_pong)
{
    const rp_reply *const *e = (const rp_reply *const *)r->element;
    int k;
    *is_pong = 0;
    memset(m, 0, sizeof *m);
    if (r->type == RP_REPLY_ERROR) {
        int n = (int)(r->len > RP_REPLY_QUOTE_MAX ? RP_REPLY_QUOTE_MAX : r->len);
        return rp_op__fail(op, rp_reply_error_status(r), "subscription.listen: %.*s", n,
                           r->str);
    }
    /* PING's answer: "+PONG" before any subscription, ["pong", ""] in subscribed mode */
    if (r->type == RP_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0) {
        *is_pong = 1;
        return 0;
    }
    if (r->type != RP_REPLY_ARRAY || r->elements == 0)
        return unexpected(op, r);
    if (is_word(e[0], "pong") && r->elements == 2 && is_str(e[1])) {
        *is_pong = 1;
        return 0;
    }
    if (is_word(e[0], "message")) {
        if (r->elements != 3 || !is_str(e[1]) || !is_str(e[2]))
            return unexpected(op, r);
        m->kind = RP_PUBSUB_MESSAGE;
        m->channel = e[1]->str; m->channel_len = e[1]->len;
        m->data = e[2]->str; m->data_len = e[2]->len;
        return 1;
    }
    if (is_word(e[0], "pmessage")) {
        if (r->elements != 4 || !is_str(e[1]) || !is_str(e[2]) || !is_str(e[3]))
            return unexpected(op, r);
        m->kind = RP_PUBSUB_PMESSAGE;
        m->pattern = e[1]->str; m->pattern_len = e[1]->len;
        m->channel = e[2]->str; m->channel_len = e[2]->len;
        m->data = e[3]->str; m->data_len = e[3]->len;
        return 1;
    }
    for (k = RP_PUBSUB_SUBSCRIBE; k <= RP_PUBSUB_PUNSUBSCRIBE; k++)
        if (is_word(e[0], kind_names[k]))
            break;
    if (k > RP_PUBSUB_PUNSUBSCRIBE || r->elements != 3 ||
        !(is_str(e[1]) || e[1]->type == RP_REPLY_NIL) || e[2]->type != RP_REPLY_INTEGER ||
        e[2]->integer < 0) /* the connection's subscriptions: a count */
        return unexpected(op, r);
    m->kind = (rp_pubsub_kind)k;
    m->count = e[2]->integer;
    if (e[1]->type == RP_REPLY_STRING) {
        /* a nil name: UNSUBSCRIBE of nothing; the name stays absent */
        if (k == RP_PUBSUB_SUBSCRIBE || k == RP_PUBSUB_UNSUBSCRIBE) {
            m->channel = e[1]->str; m->channel_len = e[1]->len;
        } else {
            m->pattern = e[1]->str; m->pattern_len = e[1]->len;
        }
    }
    return 1;
}

/* Takes one arrived reply: queued, swallowed (a re-subscription's confirmation) or fatal. */
static int take(rp_op *op, listen_state *s, rp_reply *r)
{
    queued e;
    int pong, rc = parse_push(op, r, &e.m, &pong);
    if (rc < 0) {
        rp_reply_free(r);
        return rc;
    }
    if (s->resub_left > 0 &&
        ((s->resub_ping && pong) ||
         (!s->resub_ping && rc == 1 &&
          (e.m.kind == RP_PUBSUB_SUBSCRIBE || e.m.kind == RP_PUBSUB_PSUBSCRIBE)))) {
        rp_reply_free(r);
        if (--s->resub_left == 0) {
            queued note;
            memset(&note, 0, sizeof note);
            note.m.kind = RP_PUBSUB_RECONNECT;
            s->attempt = 0;
            if (queue_push_front(s, &note) != RP_OK)
                return rp_op__fail(op, RP_ENOMEM, "out of memory queueing a message");
        }
        return RP_OK;
    }
    if (rc == 0) {
        rp_reply_free(r); /* a pong nobody waits for */
        return RP_OK;
    }
    e.reply = r;
    if (queue_push(s, &e) != RP_OK) {
        rp_reply_free(r);
        return rp_op__fail(op, RP_ENOMEM, "out of memory queueing a message");
    }
    return RP_OK;
}

/* Queues cmd (SUBSCRIBE, ...) with names[0..n) for the next round. */
static int send_names(rp_op *op, listen_state *s, const char *cmd, const name *const *names,
                      size_t n)
{
    const char **argv;
    size_t *lens, i;
    int rc;
    if (n == 0)
        return RP_OK;
    argv = rp_alloc__malloc(s->a, (n + 1) * sizeof *argv);
    lens = rp_alloc__malloc(s->a, (n + 1) * sizeof *lens);
    if (!argv || !lens) {
        rp_alloc__free(s->a, argv);
        rp_alloc__free(s->a, lens);
        return rp_op__fail(op, RP_ENOMEM, "out of memory queueing %s", cmd);
    }
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    for (i = 0; i < n; i++) {
        argv[i + 1] = names[i]->p;
        lens[i + 1] = names[i]->len;
    }
    rc = rp_op__command(op, 0, (int)(n + 1), argv, lens);
    rp_alloc__free(s->a, argv);
    rp_alloc__free(s->a, lens);
    return rc;
}

/* Sends what wanted gained (sub_cmd) and lost (unsub_cmd) since sent, then makes sent equal
 * to wanted. *subscribed: how many names went with sub_cmd. */
static int sync_set(rp_op *op, listen_state *s, name_set *sent, const name_set *wanted,
                    const char *sub_cmd, const char *unsub_cmd, size_t *subscribed)
{
    const name **gained = NULL, **lost = NULL;
    size_t ng = 0, nl = 0, i = 0, j = 0;
    name *next = NULL;
    int rc = RP_OK;
    *subscribed = 0;
    if (wanted->n == 0 && sent->n == 0)
        return RP_OK;
    gained = rp_alloc__malloc(s->a, (wanted->n + 1) * sizeof *gained);
    lost = rp_alloc__malloc(s->a, (sent->n + 1) * sizeof *lost);
    next = rp_alloc__calloc(s->a, wanted->n + 1, sizeof *next);
    if (!gained || !lost || !next) {
        rc = rp_op__fail(op, RP_ENOMEM, "out of memory comparing subscriptions");
        goto out;
    }
    /* merge walk of two sorted sets */
    while (i < wanted->n || j < sent->n) {
        int c = i >= wanted->n ? 1 : j >= sent->n ? -1
                : name_cmp(wanted->v[i].p, wanted->v[i].len, sent->v[j].p, sent->v[j].len);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            gained[ng++] = &wanted->v[i++];
        } else {
            lost[nl++] = &sent->v[j++];
        }
    }
    if ((rc = send_names(op, s, sub_cmd, gained, ng)) ||
        (rc = send_names(op, s, unsub_cmd, lost, nl)))
        goto out;
    /* sent := wanted: shared names keep their copies; gained ones are copied first, so a
     * failure leaves sent as it was */
    for (i = 0, j = 0; i < wanted->n; i++) {
        int found;
        size_t at = set_find(sent, wanted->v[i].p, wanted->v[i].len, &found);
        if (found) {
            next[i] = sent->v[at];
            continue;
        }
        next[i].len = wanted->v[i].len;
        if (!(next[i].p = rp_alloc__memdup(s->a, wanted->v[i].p, wanted->v[i].len + 1))) {
            size_t k;
            for (k = 0; k < i; k++) {
                int f;
                set_find(sent, next[k].p, next[k].len, &f);
                if (!f)
                    rp_alloc__free(s->a, next[k].p);
            }
            rc = rp_op__fail(op, RP_ENOMEM, "out of memory recording subscriptions");
            goto out;
        }
    }
    for (j = 0; j < nl; j++)
        rp_alloc__free(s->a, lost[j]->p);
    rp_alloc__free(s->a, sent->v);
    sent->v = next;
    sent->n = wanted->n;
    sent->cap = wanted->n + 1;
    next = NULL;
    *subscribed = ng;
out:
    rp_alloc__free(s->a, gained);
    rp_alloc__free(s->a, lost);
    rp_alloc__free(s->a, next);
    return rc;
}

/* Sends the difference between what the subscription wants and what this connection was
 * asked for. *subscribed: how many SUBSCRIBE / PSUBSCRIBE names were sent. */
static int send_changes(rp_op *op, listen_state *s, size_t *subscribed)
{
    size_t nc = 0, np = 0;
    int rc;
    *subscribed = 0;
    if (s->synced && s->sent_version == s->sub->version)
        return RP_OK;
    if ((rc = sync_set(op, s, &s->sent_channels, &s->sub->channels, "SUBSCRIBE", "UNSUBSCRIBE",
                       &nc)) ||
        (rc = sync_set(op, s, &s->sent_patterns, &s->sub->patterns, "PSUBSCRIBE",
                       "PUNSUBSCRIBE", &np)))
        return rc;
    s->synced = 1;
    s->sent_version = s->sub->version;
    *subscribed = nc + np;
    return RP_OK;
}

/* After the backoff: a fresh connection knows nothing; ask it for everything. */
static int resubscribe(rp_op *op, listen_state *s)
{
    size_t n;
    int rc;
    set_clear(s->a, &s->sent_channels);
    set_clear(s->a, &s->sent_patterns);
    s->synced = 0;
    if ((rc = send_changes(op, s, &n)))
        return rc;
    s->resub_ping = n == 0;
    if (n == 0) {
        /* nothing wanted: a PING proves the new connection works before "reconnect" */
        static const char *const ping[] = { "PING" };
        if ((rc = rp_op__command(op, 0, 1, ping, NULL)))
            return rc;
        n = 1;
    }
    s->resub_left = n;
    rp_op__listen(op, 0);
    s->last = LAST_LISTEN;
    return RP_OK;
}

static uint64_t backoff_ms(listen_state *s)
{
    int64_t d = RP_SUBSCRIPTION_BACKOFF_MIN_MS;
    unsigned i;
    for (i = 0; i < s->attempt && d < RP_SUBSCRIPTION_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > RP_SUBSCRIPTION_BACKOFF_MAX_MS)
        d = RP_SUBSCRIPTION_BACKOFF_MAX_MS;
    if (s->attempt < 32)
        s->attempt++;
    return (uint64_t)rp_random__between(d / 2, d);
}

static int listen_advance(rp_op *op, void *state, uint64_t now_ms)
{
    listen_state *s = state;
    size_t i, n;
    int rc;
    queued_free(&s->current); /* the last EMIT's message was borrowed until this step */
    if (s->last == LAST_LISTEN) {
        int status = rp_op__node_status(op, 0);
        n = rp_op__replies(op, 0);
        /* what arrived before a failure is still good */
        for (i = 0; i < n; i++) {
            rp_reply *r = rp_op__take_reply(op, 0, i);
            if (r && (rc = take(op, s, r)) < 0)
                return rc;
        }
        if (status == RP_ETRANSPORT || status == RP_ETIMEOUT)
            s->broken = 1;
        else if (status != RP_OK)
            /* not a dropped connection (bad bytes, no memory, no endpoint, refused AUTH):
             * reconnecting would not fix it */
            return rp_op__fail(op, status, "subscription.listen: %s",
                               rp_op__node_why(op, 0));
    } else if (s->last == LAST_SLEEP) {
        if (now_ms < s->wake_ms) {
            rp_op__sleep(op, s->wake_ms - now_ms);
            return RP_OK;
        }
        return resubscribe(op, s);
    }
    if (s->n > 0 && s->resub_left == 0) {
        s->current = s->q[s->head];
        memset(&s->q[s->head], 0, sizeof s->q[s->head]);
        s->head++;
        if (--s->n == 0)
            s->head = 0;
        rp_op__emit(op);
        s->last = LAST_EMIT;
        return RP_OK;
    }
    if (s->broken) {
        uint64_t ms = backoff_ms(s);
        s->broken = 0;
        s->wake_ms = now_ms + ms;
        rp_op__sleep(op, ms);
        s->last = LAST_SLEEP;
        return RP_OK;
    }
    if ((rc = send_changes(op, s, &n)))
        return rc;
    rp_op__listen(op, 0);
    s->last = LAST_LISTEN;
    return RP_OK;
}

static const rp_op_class listen_class = {
    "subscription.listen", sizeof(listen_state), listen_advance, listen_destroy,
    1,    /* a dropped connection is the op's business: it reconnects */
    NULL, 0,
    1     /* long-lived */, 0, 0
};

int rp_subscription_listen_op(rp_op **out, rp_subscription *sub, rp_error *err)
{
    listen_state *s;
    int rc;
    if (out)
        *out = NULL;
    if (!out || !sub)
        return rp_error__set(err, RP_EINVAL, "out and subscription must not be NULL");
    if ((rc = rp_op__new(out, sub->client, &listen_class, 1, (void **)&s, err)))
        return rc;
    s->sub = sub;
    s->a = sub_alloc(sub);
    return RP_OK;
}

int rp_subscription_message(const rp_op *op, rp_pubsub_message *out)
{
    const listen_state *s = rp_op__state(op, &listen_class);
    if (!s || !out || !rp_op__emitting(op))
        return RP_ESTATE;
    *out = s->current.m;
    return RP_OK;
}
