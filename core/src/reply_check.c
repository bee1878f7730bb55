/* Strict replies (decision 2 of issue 10): describing a reply for a message, and checking
 * that a reply has exactly the shape and range an op reads. Every pattern reads its replies
 * through these, so a reply of any other shape is RP_EPROTOCOL "<op>: expected <what>, got
 * <the reply described>" and never a success; an error reply is RP_EREPLY with Redis' own
 * message. The rp_reply__* forms fill a buffer instead of failing an op, for quorum
 * patterns that classify each node's answer. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "op_internal.h"

/* The most bytes of a string reply quoted in a description: enough to recognise it, short
 * enough that "<op>: expected <what>, got <description>" fits RP_ERROR_MESSAGE_MAX. */
#define QUOTE_BYTES 32
/* Each quoted byte takes at most 4 characters (\xNN). */
#define QUOTE_CHARS (QUOTE_BYTES * 4 + 4)

/* The first bytes of p, printable and escaped, "..." when cut. */
static void quote(char *out, size_t size, const char *p, size_t len)
{
    size_t i, o = 0;
    if (size == 0)
        return;
    for (i = 0; i < len && i < QUOTE_BYTES && o + 5 < size; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
    }
    if (i < len && o + 4 <= size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < size ? o : size - 1] = '\0';
}

const char *rp_reply__describe(const rp_reply *r, char *out, size_t size)
{
    char q[QUOTE_CHARS];
    if (!out || size == 0)
        return "";
    if (!r) {
        snprintf(out, size, "no reply");
        return out;
    }
    switch (r->type) {
    case RP_REPLY_NIL:
        snprintf(out, size, "nil");
        break;
    case RP_REPLY_INTEGER:
        snprintf(out, size, "the integer %lld", r->integer);
        break;
    case RP_REPLY_BOOL:
        snprintf(out, size, "the boolean %s", r->integer ? "true" : "false");
        break;
    case RP_REPLY_ARRAY:
        snprintf(out, size, "an array of %zu element%s", r->elements,
                 r->elements == 1 ? "" : "s");
        break;
    case RP_REPLY_STRING:
    case RP_REPLY_STATUS:
    case RP_REPLY_ERROR:
    case RP_REPLY_DOUBLE:
        quote(q, sizeof q, r->str ? r->str : "", r->str ? r->len : 0);
        snprintf(out, size, "%s \"%s\"",
                 r->type == RP_REPLY_STRING   ? "the string"
                 : r->type == RP_REPLY_STATUS ? "the status"
                 : r->type == RP_REPLY_ERROR  ? "the error"
                                              : "the double",
                 q);
        break;
    default:
        snprintf(out, size, "a reply of unknown type %d", (int)r->type);
        break;
    }
    return out;
}

static int starts_with(const char *s, size_t len, const char *prefix);

int rp_reply_error_status(const rp_reply *r)
{
    if (!r || r->type != RP_REPLY_ERROR)
        return RP_OK;
    /* NOAUTH answers any command sent before AUTH (the URL has no password for a server
     * that requires one), WRONGPASS an AUTH it refused: the same failure wherever it shows
     * up, as redis-py's AuthenticationError is for both. Redis 7 answers a large request
     * before AUTH with "ERR Protocol error: unauthenticated bulk length" (and closes): the
     * same missing password. */
    return starts_with(r->str, r->len, "NOAUTH") || starts_with(r->str, r->len, "WRONGPASS")
        || starts_with(r->str, r->len, "ERR Protocol error: unauthenticated")
        ? RP_EAUTH : RP_EREPLY;
}

int rp_reply__expected(const rp_reply *r, const char *what, char *why, size_t size)
{
    char d[RP_REPLY_DESCRIBE_MAX];
    if (r && r->type == RP_REPLY_ERROR) {
        /* Redis refused: its own words, not a shape complaint */
        if (why && size)
            snprintf(why, size, "%.*s", (int)(r->len > RP_REPLY_QUOTE_MAX ? RP_REPLY_QUOTE_MAX : r->len),
                     r->str ? r->str : "");
        return rp_reply_error_status(r);
    }
    if (why && size)
        snprintf(why, size, "expected %s, got %s", what, rp_reply__describe(r, d, sizeof d));
    return RP_EPROTOCOL;
}

/* "an integer in [min, max]" and its simpler forms. */
static void int_range(char *out, size_t size, long long min, long long max)
{
    if (min == LLONG_MIN && max == LLONG_MAX)
        snprintf(out, size, "an integer");
    else if (max == LLONG_MAX)
        snprintf(out, size, "an integer >= %lld", min);
    else if (min == LLONG_MIN)
        snprintf(out, size, "an integer <= %lld", max);
    else if (min == max)
        snprintf(out, size, "the integer %lld", min);
    else if (max == min + 1)
        snprintf(out, size, "the integer %lld or %lld", min, max);
    else
        snprintf(out, size, "an integer in [%lld, %lld]", min, max);
}

int rp_reply__is_int(const rp_reply *r, const char *what, long long min, long long max,
                     char *why, size_t size)
{
    char range[96], full[RP_REPLY_DESCRIBE_MAX];
    if (r && r->type == RP_REPLY_INTEGER && r->integer >= min && r->integer <= max)
        return RP_OK;
    int_range(range, sizeof range, min, max);
    if (what)
        snprintf(full, sizeof full, "%s (%s)", what, range);
    else
        snprintf(full, sizeof full, "%s", range);
    return rp_reply__expected(r, full, why, size);
}

int rp_reply__is_status(const rp_reply *r, const char *status, char *why, size_t size)
{
    char what[64];
    size_t n = strlen(status);
    if (r && r->type == RP_REPLY_STATUS && r->len == n && memcmp(r->str, status, n) == 0)
        return RP_OK;
    snprintf(what, sizeof what, "the status \"%s\"", status);
    return rp_reply__expected(r, what, why, size);
}

static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static int contains(const char *s, size_t len, const char *word)
{
    size_t i, n = strlen(word);
    for (i = 0; i + n <= len; i++)
        if (memcmp(s + i, word, n) == 0)
            return 1;
    return 0;
}

int rp_reply__handshake_status(const rp_reply *r, char *why, size_t size)
{
    int rc = rp_reply__is_status(r, "OK", why, size);
    /* Redis refuses credentials with WRONGPASS (6+), NOAUTH (a command before AUTH), or an
     * ERR about the password (< 6: "invalid password"; no requirepass: "AUTH <password>
     * called without any password configured", older "no password is set"). Any other
     * error (LOADING, a proxy's) stays a reply error. */
    if (rc == RP_EREPLY && r && r->type == RP_REPLY_ERROR
        && (starts_with(r->str, r->len, "WRONGPASS") || starts_with(r->str, r->len, "NOAUTH")
            || contains(r->str, r->len, "password")))
        rc = RP_EAUTH;
    return rc;
}



static int type_ok(const rp_reply *e, char t)
{
    switch (t) {
    case 'i': return e->type == RP_REPLY_INTEGER;
    case 's': return e->type == RP_REPLY_STRING;
    case 'n': return e->type == RP_REPLY_NIL;
    case 'S': return e->type == RP_REPLY_STRING || e->type == RP_REPLY_NIL;
    case 'a': return e->type == RP_REPLY_ARRAY;
    default: return 1; /* '?': anything */
    }
}

static const char *type_word(char t)
{
    switch (t) {
    case 'i': return "an integer";
    case 's': return "a string";
    case 'n': return "nil";
    case 'S': return "a string or nil";
    case 'a': return "an array";
    default: return "any reply";
    }
}

int rp_reply__is_array(const rp_reply *r, const char *types, const char *what, char *why,
                       size_t size)
{
    char want[RP_REPLY_DESCRIBE_MAX], d[RP_REPLY_DESCRIBE_MAX];
    size_t n = strlen(types), i;
    const char *all = n > 0 ? type_word(types[0]) : "";
    int same = 1;
    for (i = 1; i < n; i++)
        same &= types[i] == types[0];
    if (what)
        snprintf(want, sizeof want, "%s (an array of %zu %s)", what, n,
                 same ? (n > 0 && types[0] == 'i' ? "integers" : "elements") : "elements");
    else
        snprintf(want, sizeof want, "an array of %zu %s", n,
                 same && n > 0 && types[0] == 'i' ? "integers" : "elements");
    if (!r || r->type != RP_REPLY_ARRAY || r->elements != n)
        return rp_reply__expected(r, want, why, size);
    for (i = 0; i < n; i++) {
        if (!r->element[i] || !type_ok(r->element[i], types[i])) {
            if (why && size)
                snprintf(why, size, "expected %s, got an array whose element %zu is %s "
                         "(expected %s)", want, i + 1,
                         rp_reply__describe(r->element[i], d, sizeof d),
                         same ? all : type_word(types[i]));
            return RP_EPROTOCOL;
        }
    }
    return RP_OK;
}

/* --- the op forms: fail the op with "<op>: <why>" ------------------------------------- */

static int fail_with(rp_op *op, int code, const char *why)
{
    return rp_op__fail(op, code, "%s: %s", rp_op_name(op), why);
}

int rp_op__expected(rp_op *op, const rp_reply *r, const char *what)
{
    char why[RP_ERROR_MESSAGE_MAX];
    return fail_with(op, rp_reply__expected(r, what, why, sizeof why), why);
}

int rp_op__expect_int(rp_op *op, const rp_reply *r, const char *what, long long min,
                      long long max)
{
    char why[RP_ERROR_MESSAGE_MAX];
    int rc = rp_reply__is_int(r, what, min, max, why, sizeof why);
    return rc ? fail_with(op, rc, why) : RP_OK;
}

int rp_op__expect_status(rp_op *op, const rp_reply *r, const char *status)
{
    char why[RP_ERROR_MESSAGE_MAX];
    int rc = rp_reply__is_status(r, status, why, sizeof why);
    return rc ? fail_with(op, rc, why) : RP_OK;
}



int rp_op__expect_array(rp_op *op, const rp_reply *r, const char *types, const char *what)
{
    char why[RP_ERROR_MESSAGE_MAX];
    int rc = rp_reply__is_array(r, types, what, why, sizeof why);
    return rc ? fail_with(op, rc, why) : RP_OK;
}
