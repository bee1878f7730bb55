/* redpat — Redis Cluster, the pure parts: hash slots, the keys of a command, redirect
 * errors and topology replies. No I/O and no state: everything here is a function of its
 * arguments (the command table is const). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

/* --- hash slots ------------------------------------------------------------------------ */

/* CRC16-CCITT as XMODEM uses it (poly 0x1021, init 0, no reflection, no final xor): the
 * cluster spec's choice. Bit by bit: keys are short and a table would be 512 more bytes. */
static unsigned crc16_xmodem(const unsigned char *p, size_t len)
{
    unsigned crc = 0;
    size_t i;
    int b;
    for (i = 0; i < len; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (b = 0; b < 8; b++)
            crc = (crc & 0x8000u) ? ((crc << 1) ^ 0x1021u) : (crc << 1);
        crc &= 0xffffu;
    }
    return crc;
}

unsigned rp_cluster__slot(const char *key, size_t len)
{
    const char *open = key ? memchr(key, '{', len) : NULL;
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        /* "{}" is no tag: the whole key is hashed (Redis' rule, so "foo{}{bar}" is not
         * "bar") */
        if (close && close > key + from)
            return crc16_xmodem((const unsigned char *)key + from,
                                (size_t)(close - (key + from))) &
                   (RP_CLUSTER_SLOTS - 1);
    }
    return crc16_xmodem((const unsigned char *)key, key ? len : 0) & (RP_CLUSTER_SLOTS - 1);
}

/* --- the keys of a command ------------------------------------------------------------- */

/* How a table entry finds its keys beyond first/last/step. */
typedef enum cmd_form {
    FORM_NONE,      /* no keys */
    FORM_LIST,      /* first, last (< 0: from the end), step */
    FORM_CHANNEL,   /* pub/sub channel at argv[1] */
    FORM_UNSUB,     /* like CHANNEL, but with no channel it is keyless (all of them) */
    FORM_NUMKEYS,   /* numkeys at argv[first - 1], keys from argv[first] */
    FORM_STREAMS,   /* XREAD, XREADGROUP: the first half after STREAMS */
    FORM_SUB_KEY2   /* a subcommand at argv[1]; see subcommand_key2 */
} cmd_form;

typedef struct cmd_spec {
    const char *name; /* upper case; the table is sorted by it (strcmp order) */
    unsigned char form;
    signed char first, last, step;
} cmd_spec;

#define K1 FORM_LIST, 1, 1, 1 /* the usual single key at argv[1] */
#define K12 FORM_LIST, 1, 2, 1
#define KALL FORM_LIST, 1, -1, 1
#define KNONE FORM_NONE, 0, 0, 0

/* Sorted by name in strcmp order, for the binary search (the unit test looks up every
 * name, so a misplaced one fails it). first/last/step are Redis 7's (COMMAND INFO).
 * Commands whose keys first/last/step cannot express fully (ZUNIONSTORE's destination and
 * its numkeys sources, SORT ... STORE, GEORADIUS ... STORE) give their first key: it routes
 * the command, and Redis itself refuses the rest with CROSSSLOT if they are elsewhere. */
static const cmd_spec cmd_table[] = {
    { "ACL", KNONE },
    { "APPEND", K1 },
    { "ASKING", KNONE },
    { "AUTH", KNONE },
    { "BGREWRITEAOF", KNONE },
    { "BGSAVE", KNONE },
    { "BITCOUNT", K1 },
    { "BITFIELD", K1 },
    { "BITFIELD_RO", K1 },
    { "BITOP", FORM_LIST, 2, -1, 1 }, /* BITOP op dest src... */
    { "BITPOS", K1 },
    { "BLMOVE", K12 },
    { "BLMPOP", FORM_NUMKEYS, 3, 0, 1 }, /* BLMPOP timeout numkeys key... */
    { "BLPOP", FORM_LIST, 1, -2, 1 },    /* the last argument is the timeout */
    { "BRPOP", FORM_LIST, 1, -2, 1 },
    { "BRPOPLPUSH", K12 },
    { "BZMPOP", FORM_NUMKEYS, 3, 0, 1 },
    { "BZPOPMAX", FORM_LIST, 1, -2, 1 },
    { "BZPOPMIN", FORM_LIST, 1, -2, 1 },
    { "CLIENT", KNONE },
    { "CLUSTER", KNONE },
    { "COMMAND", KNONE },
    { "CONFIG", KNONE },
    { "COPY", K12 },
    { "DBSIZE", KNONE },
    { "DEBUG", KNONE },
    { "DECR", K1 },
    { "DECRBY", K1 },
    { "DEL", KALL },
    { "DISCARD", KNONE },
    { "DUMP", K1 },
    { "ECHO", KNONE },
    { "EVAL", FORM_NUMKEYS, 3, 0, 1 }, /* EVAL script numkeys key... arg... */
    { "EVALSHA", FORM_NUMKEYS, 3, 0, 1 },
    { "EVALSHA_RO", FORM_NUMKEYS, 3, 0, 1 },
    { "EVAL_RO", FORM_NUMKEYS, 3, 0, 1 },
    { "EXEC", KNONE },
    { "EXISTS", KALL },
    { "EXPIRE", K1 },
    { "EXPIREAT", K1 },
    { "EXPIRETIME", K1 },
    { "FAILOVER", KNONE },
    { "FCALL", FORM_NUMKEYS, 3, 0, 1 },
    { "FCALL_RO", FORM_NUMKEYS, 3, 0, 1 },
    { "FLUSHALL", KNONE },
    { "FLUSHDB", KNONE },
    { "FUNCTION", KNONE },
    { "GEOADD", K1 },
    { "GEODIST", K1 },
    { "GEOHASH", K1 },
    { "GEOPOS", K1 },
    { "GEORADIUS", K1 },
    { "GEORADIUSBYMEMBER", K1 },
    { "GEORADIUSBYMEMBER_RO", K1 },
    { "GEORADIUS_RO", K1 },
    { "GEOSEARCH", K1 },
    { "GEOSEARCHSTORE", K12 },
    { "GET", K1 },
    { "GETBIT", K1 },
    { "GETDEL", K1 },
    { "GETEX", K1 },
    { "GETRANGE", K1 },
    { "GETSET", K1 },
    { "HDEL", K1 },
    { "HELLO", KNONE },
    { "HEXISTS", K1 },
    { "HGET", K1 },
    { "HGETALL", K1 },
    { "HINCRBY", K1 },
    { "HINCRBYFLOAT", K1 },
    { "HKEYS", K1 },
    { "HLEN", K1 },
    { "HMGET", K1 },
    { "HMSET", K1 },
    { "HRANDFIELD", K1 },
    { "HSCAN", K1 },
    { "HSET", K1 },
    { "HSETNX", K1 },
    { "HSTRLEN", K1 },
    { "HVALS", K1 },
    { "INCR", K1 },
    { "INCRBY", K1 },
    { "INCRBYFLOAT", K1 },
    { "INFO", KNONE },
    { "KEYS", KNONE },
    { "LASTSAVE", KNONE },
    { "LATENCY", KNONE },
    { "LCS", K12 },
    { "LINDEX", K1 },
    { "LINSERT", K1 },
    { "LLEN", K1 },
    { "LMOVE", K12 },
    { "LMPOP", FORM_NUMKEYS, 2, 0, 1 }, /* LMPOP numkeys key... */
    { "LOLWUT", KNONE },
    { "LPOP", K1 },
    { "LPOS", K1 },
    { "LPUSH", K1 },
    { "LPUSHX", K1 },
    { "LRANGE", K1 },
    { "LREM", K1 },
    { "LSET", K1 },
    { "LTRIM", K1 },
    { "MEMORY", FORM_SUB_KEY2, 2, 2, 1 },
    { "MGET", KALL },
    { "MODULE", KNONE },
    { "MONITOR", KNONE },
    { "MSET", FORM_LIST, 1, -1, 2 }, /* key value pairs */
    { "MSETNX", FORM_LIST, 1, -1, 2 },
    { "MULTI", KNONE },
    { "OBJECT", FORM_SUB_KEY2, 2, 2, 1 },
    { "PERSIST", K1 },
    { "PEXPIRE", K1 },
    { "PEXPIREAT", K1 },
    { "PEXPIRETIME", K1 },
    { "PFADD", K1 },
    { "PFCOUNT", KALL },
    { "PFMERGE", KALL },
    { "PING", KNONE },
    { "PSETEX", K1 },
    { "PSUBSCRIBE", FORM_CHANNEL, 1, 1, 1 },
    { "PTTL", K1 },
    { "PUBLISH", FORM_CHANNEL, 1, 1, 1 },
    { "PUBSUB", KNONE },
    { "PUNSUBSCRIBE", FORM_UNSUB, 1, 1, 1 },
    { "QUIT", KNONE },
    { "RANDOMKEY", KNONE },
    { "READONLY", KNONE },
    { "READWRITE", KNONE },
    { "RENAME", K12 },
    { "RENAMENX", K12 },
    { "REPLICAOF", KNONE },
    { "RESET", KNONE },
    { "RESTORE", K1 },
    { "ROLE", KNONE },
    { "RPOP", K1 },
    { "RPOPLPUSH", K12 },
    { "RPUSH", K1 },
    { "RPUSHX", K1 },
    { "SADD", K1 },
    { "SAVE", KNONE },
    { "SCAN", KNONE },
    { "SCARD", K1 },
    { "SCRIPT", KNONE },
    { "SDIFF", KALL },
    { "SDIFFSTORE", KALL },
    { "SELECT", KNONE },
    { "SET", K1 },
    { "SETBIT", K1 },
    { "SETEX", K1 },
    { "SETNX", K1 },
    { "SETRANGE", K1 },
    { "SHUTDOWN", KNONE },
    { "SINTER", KALL },
    { "SINTERCARD", FORM_NUMKEYS, 2, 0, 1 },
    { "SINTERSTORE", KALL },
    { "SISMEMBER", K1 },
    { "SLAVEOF", KNONE },
    { "SLOWLOG", KNONE },
    { "SMEMBERS", K1 },
    { "SMISMEMBER", K1 },
    { "SMOVE", K12 },
    { "SORT", K1 },
    { "SORT_RO", K1 },
    { "SPOP", K1 },
    { "SPUBLISH", FORM_CHANNEL, 1, 1, 1 },
    { "SRANDMEMBER", K1 },
    { "SREM", K1 },
    { "SSCAN", K1 },
    { "SSUBSCRIBE", FORM_CHANNEL, 1, 1, 1 },
    { "STRLEN", K1 },
    { "SUBSCRIBE", FORM_CHANNEL, 1, 1, 1 },
    { "SUBSTR", K1 },
    { "SUNION", KALL },
    { "SUNIONSTORE", KALL },
    { "SUNSUBSCRIBE", FORM_UNSUB, 1, 1, 1 },
    { "SWAPDB", KNONE },
    { "TIME", KNONE },
    { "TOUCH", KALL },
    { "TTL", K1 },
    { "TYPE", K1 },
    { "UNLINK", KALL },
    { "UNSUBSCRIBE", FORM_UNSUB, 1, 1, 1 },
    { "UNWATCH", KNONE },
    { "WAIT", KNONE },
    { "WATCH", KALL },
    { "XACK", K1 },
    { "XADD", K1 },
    { "XAUTOCLAIM", K1 },
    { "XCLAIM", K1 },
    { "XDEL", K1 },
    { "XGROUP", FORM_SUB_KEY2, 2, 2, 1 },
    { "XINFO", FORM_SUB_KEY2, 2, 2, 1 },
    { "XLEN", K1 },
    { "XPENDING", K1 },
    { "XRANGE", K1 },
    { "XREAD", FORM_STREAMS, 1, 0, 1 },
    { "XREADGROUP", FORM_STREAMS, 1, 0, 1 },
    { "XREVRANGE", K1 },
    { "XSETID", K1 },
    { "XTRIM", K1 },
    { "ZADD", K1 },
    { "ZCARD", K1 },
    { "ZCOUNT", K1 },
    { "ZDIFF", FORM_NUMKEYS, 2, 0, 1 },
    { "ZDIFFSTORE", K1 },
    { "ZINCRBY", K1 },
    { "ZINTER", FORM_NUMKEYS, 2, 0, 1 },
    { "ZINTERCARD", FORM_NUMKEYS, 2, 0, 1 },
    { "ZINTERSTORE", K1 },
    { "ZLEXCOUNT", K1 },
    { "ZMPOP", FORM_NUMKEYS, 2, 0, 1 },
    { "ZMSCORE", K1 },
    { "ZPOPMAX", K1 },
    { "ZPOPMIN", K1 },
    { "ZRANDMEMBER", K1 },
    { "ZRANGE", K1 },
    { "ZRANGEBYLEX", K1 },
    { "ZRANGEBYSCORE", K1 },
    { "ZRANGESTORE", K12 },
    { "ZRANK", K1 },
    { "ZREM", K1 },
    { "ZREMRANGEBYLEX", K1 },
    { "ZREMRANGEBYRANK", K1 },
    { "ZREMRANGEBYSCORE", K1 },
    { "ZREVRANGE", K1 },
    { "ZREVRANGEBYLEX", K1 },
    { "ZREVRANGEBYSCORE", K1 },
    { "ZREVRANK", K1 },
    { "ZSCAN", K1 },
    { "ZSCORE", K1 },
    { "ZUNION", FORM_NUMKEYS, 2, 0, 1 },
    { "ZUNIONSTORE", K1 },
};

#define CMD_TABLE_LEN (sizeof cmd_table / sizeof cmd_table[0])

/* The longest command name worth looking up (longer is unknown without comparing). */
#define CMD_NAME_MAX 32

/* A subcommand whose key is argv[2]; any other known one is keyless. */
typedef struct subcmd {
    const char *parent, *name;
    int keyed;
} subcmd;

static const subcmd subcommands[] = {
    { "MEMORY", "USAGE", 1 }, { "MEMORY", "DOCTOR", 0 }, { "MEMORY", "STATS", 0 },
    { "MEMORY", "MALLOC-STATS", 0 }, { "MEMORY", "PURGE", 0 }, { "MEMORY", "HELP", 0 },
    { "OBJECT", "ENCODING", 1 }, { "OBJECT", "FREQ", 1 }, { "OBJECT", "IDLETIME", 1 },
    { "OBJECT", "REFCOUNT", 1 }, { "OBJECT", "HELP", 0 },
    { "XGROUP", "CREATE", 1 }, { "XGROUP", "CREATECONSUMER", 1 },
    { "XGROUP", "DELCONSUMER", 1 }, { "XGROUP", "DESTROY", 1 }, { "XGROUP", "SETID", 1 },
    { "XGROUP", "HELP", 0 },
    { "XINFO", "CONSUMERS", 1 }, { "XINFO", "GROUPS", 1 }, { "XINFO", "STREAM", 1 },
    { "XINFO", "HELP", 0 },
};

static int upper(int ch) { return (ch >= 'a' && ch <= 'z') ? ch - 'a' + 'A' : ch; }

/* strcmp order of (s, len) upper-cased against NUL-terminated upper-case name. */
static int name_cmp(const char *s, size_t len, const char *name)
{
    size_t i;
    for (i = 0; i < len; i++) {
        int a = upper((unsigned char)s[i]), b = (unsigned char)name[i];
        if (b == 0) /* name is a prefix of s */
            return 1;
        if (a != b)
            return a - b;
    }
    return name[len] ? -1 : 0;
}

static const cmd_spec *cmd_find(const char *s, size_t len)
{
    size_t lo = 0, hi = CMD_TABLE_LEN;
    if (len > CMD_NAME_MAX)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(s, len, cmd_table[mid].name);
        if (c == 0)
            return &cmd_table[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static rp_cmd_keys keys_make(rp_cmd_keys_kind kind, size_t first, size_t last, size_t step)
{
    rp_cmd_keys k;
    k.kind = kind;
    k.first = first;
    k.last = last;
    k.step = step;
    return k;
}

/* No keys in a command too short for its form: last < first (first >= 1 always). */
static rp_cmd_keys keys_short(size_t first)
{
    return keys_make(RP_CMD_KEYS_LIST, first, first - 1, 1);
}

/* argv[i] as a non-negative decimal count (digits only, as Redis' numkeys); 0 if not. */
static int parse_count(const char *s, size_t len, size_t *out)
{
    size_t i, v = 0;
    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        d = (unsigned)(s[i] - '0');
        if (v > (SIZE_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static int arg_is(const char *const *argv, const size_t *argvlen, size_t i, const char *name)
{
    size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
    return name_cmp(argv[i], len, name) == 0;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS k... id..., XREADGROUP GROUP g c [COUNT n] [BLOCK ms]
 * [NOACK] STREAMS k... id...: the options are skipped as Redis parses them, so a group or
 * consumer named "STREAMS" is not taken for the token. */
static rp_cmd_keys keys_streams(size_t argc, const char *const *argv, const size_t *argvlen)
{
    size_t i, rest;
    for (i = 1; i < argc; i++) {
        if (arg_is(argv, argvlen, i, "COUNT") || arg_is(argv, argvlen, i, "BLOCK"))
            i++;
        else if (arg_is(argv, argvlen, i, "GROUP"))
            i += 2;
        else if (arg_is(argv, argvlen, i, "NOACK"))
            continue;
        else if (arg_is(argv, argvlen, i, "STREAMS"))
            break;
        else
            return keys_short(1); /* a syntax error: Redis refuses it */
    }
    if (i >= argc)
        return keys_short(1);
    rest = argc - i - 1; /* keys then as many ids */
    if (rest == 0 || rest % 2 != 0)
        return keys_short(i + 1);
    return keys_make(RP_CMD_KEYS_LIST, i + 1, i + rest / 2, 1);
}

rp_cmd_keys rp_cluster__command_keys(int argc, const char *const *argv, const size_t *argvlen)
{
    const cmd_spec *spec;
    size_t n, first, last, i;
    if (argc <= 0 || !argv || !argv[0])
        return keys_make(RP_CMD_KEYS_UNKNOWN, 0, 0, 0);
    n = (size_t)argc;
    for (i = 0; i < n; i++)
        if (!argv[i])
            return keys_make(RP_CMD_KEYS_UNKNOWN, 0, 0, 0);
    spec = cmd_find(argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
    if (!spec)
        return keys_make(RP_CMD_KEYS_UNKNOWN, 0, 0, 0);
    first = (size_t)spec->first;
    switch ((cmd_form)spec->form) {
    case FORM_NONE:
        return keys_make(RP_CMD_KEYS_NONE, 0, 0, 0);
    case FORM_CHANNEL:
        return n > 1 ? keys_make(RP_CMD_KEYS_CHANNEL, 1, 1, 1) : keys_short(1);
    case FORM_UNSUB: /* no channel: from every channel, so from no node in particular */
        return n > 1 ? keys_make(RP_CMD_KEYS_CHANNEL, 1, 1, 1)
                     : keys_make(RP_CMD_KEYS_NONE, 0, 0, 0);
    case FORM_NUMKEYS: {
        size_t numkeys;
        if (n < first || !parse_count(argv[first - 1], argvlen ? argvlen[first - 1]
                                                               : strlen(argv[first - 1]),
                                      &numkeys))
            return keys_short(first);
        if (numkeys == 0)
            return keys_make(RP_CMD_KEYS_NONE, 0, 0, 0);
        if (numkeys > n - first) /* runs past the end: Redis refuses it */
            return keys_short(first);
        return keys_make(RP_CMD_KEYS_LIST, first, first + numkeys - 1, 1);
    }
    case FORM_STREAMS:
        return keys_streams(n, argv, argvlen);
    case FORM_SUB_KEY2: {
        size_t s;
        if (n < 2)
            return keys_short(2);
        for (s = 0; s < sizeof subcommands / sizeof subcommands[0]; s++)
            if (strcmp(subcommands[s].parent, spec->name) == 0 &&
                arg_is(argv, argvlen, 1, subcommands[s].name))
                break;
        if (s == sizeof subcommands / sizeof subcommands[0])
            return keys_make(RP_CMD_KEYS_UNKNOWN, 0, 0, 0);
        if (!subcommands[s].keyed)
            return keys_make(RP_CMD_KEYS_NONE, 0, 0, 0);
        return n > 2 ? keys_make(RP_CMD_KEYS_LIST, 2, 2, 1) : keys_short(2);
    }
    case FORM_LIST:
        break;
    }
    if (spec->last < 0) {
        size_t back = (size_t)(-(int)spec->last); /* -1: the last argument */
        if (back > n)
            return keys_short(first);
        last = n - back;
    } else {
        last = (size_t)spec->last;
        if (last >= n)
            return keys_short(first);
    }
    if (last < first)
        return keys_short(first);
    return keys_make(RP_CMD_KEYS_LIST, first, last, (size_t)spec->step);
}

/* --- redirects ------------------------------------------------------------------------- */

/* The largest port number. */
#define RP_PORT_MAX 65535
/* Digits a slot or a port may have (16383, 65535); more is garbage, not a bigger number. */
#define RP_NUMBER_DIGITS_MAX 5

/* Decimal digits s[0..len) as a number <= max; 0 if not that. */
static int parse_small(const char *s, size_t len, unsigned max, unsigned *out)
{
    size_t i;
    unsigned v = 0;
    if (len == 0 || len > RP_NUMBER_DIGITS_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

/* Whether (s, len) starts with the word w followed by a space or the end. */
static int word_is(const char *s, size_t len, const char *w, size_t *after)
{
    size_t n = strlen(w);
    if (len < n || memcmp(s, w, n) != 0 || (len > n && s[n] != ' '))
        return 0;
    *after = len > n ? n + 1 : n;
    return 1;
}

/* "<slot> <host>:<port>" into r; 0 if it does not parse. */
static int parse_target(const char *s, size_t len, rp_redirect *r)
{
    const char *sp = memchr(s, ' ', len), *addr, *colon = NULL, *host;
    size_t alen, hlen, i;
    unsigned port;
    if (!sp || !parse_small(s, (size_t)(sp - s), RP_CLUSTER_SLOTS - 1, &r->slot))
        return 0;
    addr = sp + 1;
    alen = len - (size_t)(addr - s);
    for (i = 0; i < alen; i++) {
        unsigned char ch = (unsigned char)addr[i];
        if (ch <= ' ' || ch == 0x7f) /* a host has no spaces or controls: garbage */
            return 0;
        if (ch == ':')
            colon = addr + i;
    }
    if (!colon)
        return 0;
    if (!parse_small(colon + 1, alen - (size_t)(colon + 1 - addr), RP_PORT_MAX, &port) ||
        port == 0)
        return 0;
    host = addr;
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') { /* "[::1]:6380" */
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof r->host)
        return 0;
    memcpy(r->host, host, hlen);
    r->host[hlen] = '\0';
    r->port = (int)port;
    return 1;
}

rp_redirect rp_cluster__redirect(const rp_reply *reply)
{
    rp_redirect r;
    size_t at;
    memset(&r, 0, sizeof r);
    if (!reply || reply->type != RP_REPLY_ERROR || !reply->str)
        return r;
    if (word_is(reply->str, reply->len, "MOVED", &at) ||
        word_is(reply->str, reply->len, "ASK", &at)) {
        rp_redirect_kind kind = reply->str[0] == 'M' ? RP_REDIRECT_MOVED : RP_REDIRECT_ASK;
        if (parse_target(reply->str + at, reply->len - at, &r)) {
            r.kind = kind;
            return r;
        }
        memset(&r, 0, sizeof r);
    } else if (word_is(reply->str, reply->len, "TRYAGAIN", &at)) {
        r.kind = RP_REDIRECT_TRYAGAIN;
    } else if (word_is(reply->str, reply->len, "CLUSTERDOWN", &at)) {
        r.kind = RP_REDIRECT_CLUSTERDOWN;
    }
    return r;
}

/* --- topology -------------------------------------------------------------------------- */

/* The parse's state: the topology being built, the slots seen (overlaps are refused),
 * where the why goes. */
typedef struct topo_build {
    const rp_allocator *a;
    rp_cluster_topology t;
    size_t rcap, ncap;
    unsigned char seen[RP_CLUSTER_SLOTS / CHAR_BIT];
    char *why;
    size_t whylen;
    const char *what; /* "CLUSTER SHARDS" or "CLUSTER SLOTS" */
} topo_build;

static int fail(topo_build *b, const char *fmt, ...) RP_PRINTF(2, 3);
static int fail(topo_build *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (!b->why || b->whylen == 0)
        return RP_EPROTOCOL;
    n = snprintf(b->why, b->whylen, "%s reply: ", b->what);
    if (n >= 0 && (size_t)n < b->whylen) {
        va_start(ap, fmt);
        vsnprintf(b->why + n, b->whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return RP_EPROTOCOL;
}

void rp_cluster__topology_free(rp_cluster_topology *t, const rp_allocator *a)
{
    size_t i;
    if (!t)
        return;
    for (i = 0; i < t->nnodes; i++)
        rp_alloc__free(a, t->hosts[i]);
    rp_alloc__free(a, t->hosts);
    rp_alloc__free(a, t->ports);
    rp_alloc__free(a, t->ranges);
    memset(t, 0, sizeof *t);
}

/* Doubles an array of *cap items of size each (first: 4), overflow-checked. */
static int grow(const rp_allocator *a, void **arr, size_t *cap, size_t size)
{
    size_t ncap = *cap ? *cap : 4, bytes;
    void *p;
    if (*cap && !rp_size__mul(*cap, 2, &ncap))
        return RP_ENOMEM;
    if (!rp_size__mul(ncap, size, &bytes) || !(p = rp_alloc__realloc(a, *arr, bytes)))
        return RP_ENOMEM;
    *arr = p;
    *cap = ncap;
    return RP_OK;
}

/* The index of the master host:port, added if new. host is (ptr, len), no NUL inside. */
static int add_node(topo_build *b, const char *host, size_t hlen, int port, size_t *index)
{
    rp_cluster_topology *t = &b->t;
    size_t i;
    char *copy;
    for (i = 0; i < t->nnodes; i++)
        if (t->ports[i] == port && strlen(t->hosts[i]) == hlen &&
            memcmp(t->hosts[i], host, hlen) == 0) {
            *index = i;
            return RP_OK;
        }
    if (t->nnodes == b->ncap) {
        /* hosts and ports share ncap, raised once both have grown (if ports fails, hosts
         * is merely bigger than ncap says: freeing by nnodes stays right) */
        size_t cap = b->ncap, cap2 = b->ncap;
        void *h = t->hosts, *p = t->ports;
        int rc = grow(b->a, &h, &cap, sizeof *t->hosts);
        t->hosts = h;
        if (rc != RP_OK)
            return rc;
        rc = grow(b->a, &p, &cap2, sizeof *t->ports);
        t->ports = p;
        if (rc != RP_OK)
            return rc;
        b->ncap = cap;
    }
    if (!(copy = rp_alloc__malloc(b->a, hlen + 1)))
        return RP_ENOMEM;
    memcpy(copy, host, hlen);
    copy[hlen] = '\0';
    t->hosts[t->nnodes] = copy;
    t->ports[t->nnodes] = port;
    *index = t->nnodes++;
    return RP_OK;
}

static int add_range(topo_build *b, long long start, long long end, size_t master,
                     const char *where)
{
    rp_cluster_topology *t = &b->t;
    unsigned s;
    if (start < 0 || end >= RP_CLUSTER_SLOTS || start > end)
        return fail(b, "%s: slot range %lld-%lld is not within 0-%d", where, start, end,
                    RP_CLUSTER_SLOTS - 1);
    for (s = (unsigned)start; s <= (unsigned)end; s++) {
        if (b->seen[s / CHAR_BIT] & (1u << (s % CHAR_BIT)))
            return fail(b, "%s: slot %u is served twice", where, s);
        b->seen[s / CHAR_BIT] = (unsigned char)(b->seen[s / CHAR_BIT] | (1u << (s % CHAR_BIT)));
    }
    if (t->nranges == b->rcap) {
        void *r = t->ranges;
        int rc = grow(b->a, &r, &b->rcap, sizeof *t->ranges);
        t->ranges = r;
        if (rc != RP_OK)
            return rc;
    }
    t->ranges[t->nranges].start = (unsigned)start;
    t->ranges[t->nranges].end = (unsigned)end;
    t->ranges[t->nranges].master = master;
    t->nranges++;
    return RP_OK;
}

static int range_cmp(const void *x, const void *y)
{
    const rp_cluster_range *a = x, *b = y;
    return a->start < b->start ? -1 : a->start > b->start;
}

static void build_init(topo_build *b, const rp_allocator *a, const char *what, char *why,
                       size_t whylen, rp_cluster_topology *out)
{
    memset(b, 0, sizeof *b);
    b->a = a;
    b->what = what;
    b->why = why;
    b->whylen = whylen;
    if (why && whylen)
        why[0] = '\0';
    memset(out, 0, sizeof *out);
}

/* Hands the topology over (ranges sorted by start), or frees it on a failure. */
static int build_end(topo_build *b, int rc, rp_cluster_topology *out)
{
    if (rc != RP_OK) {
        rp_cluster__topology_free(&b->t, b->a);
        return rc;
    }
    if (b->t.nranges > 1)
        qsort(b->t.ranges, b->t.nranges, sizeof *b->t.ranges, range_cmp);
    *out = b->t;
    return RP_OK;
}

/* The reply is an error or not an array at all (the caller's command was refused). */
static int not_array(topo_build *b, const rp_reply *r)
{
    if (!r)
        return fail(b, "no reply");
    if (r->type == RP_REPLY_ERROR)
        return fail(b, "error %.*s",
                    (int)(r->len < RP_REPLY_QUOTE_MAX ? r->len : RP_REPLY_QUOTE_MAX),
                    r->str ? r->str : "");
    return fail(b, "not an array (type %d)", (int)r->type);
}

static int is_text(const rp_reply *r)
{
    return r && (r->type == RP_REPLY_STRING || r->type == RP_REPLY_STATUS) && r->str;
}

static int text_is(const rp_reply *r, const char *s)
{
    return is_text(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* A node's address as text: no NUL inside (hosts are C strings), at most the host max. */
static int host_ok(const char *s, size_t len)
{
    return len < RP_CLUSTER_HOST_MAX && memchr(s, '\0', len) == NULL;
}

/* One node of a shard: the fields we use, checked for type when present. */
typedef struct shard_node {
    const rp_reply *ip, *endpoint, *role, *health;
    long long port, tls_port;
    int has_port, has_tls_port;
} shard_node;

static int read_shard_node(topo_build *b, const rp_reply *n, size_t si, size_t ni,
                           shard_node *out)
{
    size_t k;
    memset(out, 0, sizeof *out);
    if (!n || n->type != RP_REPLY_ARRAY || n->elements % 2 != 0)
        return fail(b, "shard %zu: node %zu is not a key/value array", si, ni);
    for (k = 0; k < n->elements; k += 2) {
        const rp_reply *key = n->element[k], *val = n->element[k + 1];
        if (!is_text(key))
            return fail(b, "shard %zu: node %zu: key %zu is not a string", si, ni, k / 2);
        if (text_is(key, "port") || text_is(key, "tls-port")) {
            int tls = text_is(key, "tls-port");
            if (!val || val->type != RP_REPLY_INTEGER)
                return fail(b, "shard %zu: node %zu: \"%s\" is not an integer", si, ni,
                            tls ? "tls-port" : "port");
            if (val->integer < 0 || val->integer > RP_PORT_MAX)
                return fail(b, "shard %zu: node %zu: \"%s\" %lld is not a port", si, ni,
                            tls ? "tls-port" : "port", val->integer);
            if (tls) {
                out->tls_port = val->integer;
                out->has_tls_port = 1;
            } else {
                out->port = val->integer;
                out->has_port = 1;
            }
        } else if (text_is(key, "ip") || text_is(key, "endpoint") || text_is(key, "role") ||
                   text_is(key, "health") || text_is(key, "hostname")) {
            if (!is_text(val))
                return fail(b, "shard %zu: node %zu: \"%.*s\" is not a string", si, ni,
                            (int)key->len, key->str);
            if (text_is(key, "ip"))
                out->ip = val;
            else if (text_is(key, "endpoint"))
                out->endpoint = val;
            else if (text_is(key, "role"))
                out->role = val;
            else if (text_is(key, "health"))
                out->health = val;
        } /* other fields (id, replication-offset, newer ones) are not ours to judge */
    }
    if (!out->role)
        return fail(b, "shard %zu: node %zu has no \"role\"", si, ni);
    return RP_OK;
}

static int add_shard_master(topo_build *b, const shard_node *m, int tls, const char *unknown_host,
                            size_t si, size_t *index)
{
    const char *host;
    size_t hlen;
    long long port;
    if (m->endpoint && m->endpoint->len > 0 && !text_is(m->endpoint, "?")) {
        host = m->endpoint->str;
        hlen = m->endpoint->len;
    } else if ((!m->endpoint || m->endpoint->len > 0) && m->ip && m->ip->len > 0) {
        /* "?" (a hostname preferred, none announced): the ip still reaches it. An empty
         * endpoint (unknown-endpoint) means the host the client reached the cluster by, as
         * CLUSTER SLOTS and MOVED say it */
        host = m->ip->str;
        hlen = m->ip->len;
    } else {
        host = unknown_host ? unknown_host : "";
        hlen = strlen(host);
    }
    if (!host_ok(host, hlen))
        return fail(b, "shard %zu: the master's address is not a host name", si);
    if (tls && m->has_tls_port && m->tls_port > 0)
        port = m->tls_port;
    else if (m->has_port && m->port > 0)
        port = m->port;
    else
        return fail(b, "shard %zu: the master has no%s port", si, tls ? " TLS or plain" : "");
    return add_node(b, host, hlen, (int)port, index);
}

static int parse_one_shard(topo_build *b, const rp_reply *s, size_t si, int tls,
                           const char *unknown_host)
{
    const rp_reply *slots = NULL, *nodes = NULL;
    const shard_node *master = NULL;
    shard_node node, online;
    size_t k, ni, index;
    int rc, masters = 0;
    char where[48];
    if (!s || s->type != RP_REPLY_ARRAY || s->elements % 2 != 0)
        return fail(b, "shard %zu is not a key/value array", si);
    for (k = 0; k < s->elements; k += 2) {
        const rp_reply *key = s->element[k];
        if (!is_text(key))
            return fail(b, "shard %zu: key %zu is not a string", si, k / 2);
        if (text_is(key, "slots"))
            slots = s->element[k + 1];
        else if (text_is(key, "nodes"))
            nodes = s->element[k + 1];
    }
    if (!slots || slots->type != RP_REPLY_ARRAY || slots->elements % 2 != 0)
        return fail(b, "shard %zu: \"slots\" is %s", si,
                    slots ? "not an array of start, end pairs" : "missing");
    if (!nodes || nodes->type != RP_REPLY_ARRAY)
        return fail(b, "shard %zu: \"nodes\" is %s", si, nodes ? "not an array" : "missing");
    for (k = 0; k < slots->elements; k++)
        if (!slots->element[k] || slots->element[k]->type != RP_REPLY_INTEGER)
            return fail(b, "shard %zu: slot bound %zu is not an integer", si, k);
    /* every node is checked, the master is the online one with role master (a failed old
     * master may still say "master" until it rejoins as a replica) */
    for (ni = 0; ni < nodes->elements; ni++) {
        if ((rc = read_shard_node(b, nodes->element[ni], si, ni, &node)) != RP_OK)
            return rc;
        if (!text_is(node.role, "master"))
            continue;
        masters++;
        if (!master && node.health && text_is(node.health, "online")) {
            online = node;
            master = &online;
        }
    }
    if (slots->elements == 0)
        return RP_OK; /* an empty master or a lone replica: serves nothing */
    if (masters == 0)
        return fail(b, "shard %zu serves slots but has no master", si);
    if (!master)
        return RP_OK; /* its master is failing: those slots are unserved for now */
    if ((rc = add_shard_master(b, master, tls, unknown_host, si, &index)) != RP_OK)
        return rc;
    snprintf(where, sizeof where, "shard %zu", si);
    for (k = 0; k < slots->elements; k += 2)
        if ((rc = add_range(b, slots->element[k]->integer, slots->element[k + 1]->integer,
                            index, where)) != RP_OK)
            return rc;
    return RP_OK;
}

int rp_cluster__parse_shards(const rp_reply *r, int tls, const char *unknown_host,
                             const rp_allocator *a, rp_cluster_topology *out, char *why,
                             size_t whylen)
{
    topo_build b;
    size_t si;
    int rc = RP_OK;
    build_init(&b, a, "CLUSTER SHARDS", why, whylen, out);
    if (!r || r->type != RP_REPLY_ARRAY)
        return not_array(&b, r);
    for (si = 0; si < r->elements && rc == RP_OK; si++)
        rc = parse_one_shard(&b, r->element[si], si, tls, unknown_host);
    return build_end(&b, rc, out);
}

/* One [start, end, [host, port, id?, meta?], replicas...] entry of CLUSTER SLOTS. */
static int parse_one_slots_entry(topo_build *b, const rp_reply *e, size_t ei,
                                 const char *unknown_host)
{
    const rp_reply *m, *h;
    const char *host;
    size_t hlen, k, index;
    char where[48];
    int rc;
    if (!e || e->type != RP_REPLY_ARRAY || e->elements < 3)
        return fail(b, "entry %zu is not [start, end, master, ...]", ei);
    if (!e->element[0] || e->element[0]->type != RP_REPLY_INTEGER || !e->element[1] ||
        e->element[1]->type != RP_REPLY_INTEGER)
        return fail(b, "entry %zu: the slot range is not two integers", ei);
    for (k = 2; k < e->elements; k++) {
        const rp_reply *n = e->element[k];
        if (!n || n->type != RP_REPLY_ARRAY || n->elements < 2)
            return fail(b, "entry %zu: node %zu is not [host, port, ...]", ei, k - 2);
    }
    m = e->element[2];
    h = m->element[0];
    /* "" or "?" (Redis 7: cluster-preferred-endpoint-type unknown-endpoint, or hostname
     * without one), or a nil (7.0 sends one for unknown-endpoint): the node asked */
    if (h && h->type == RP_REPLY_NIL) {
        host = NULL;
        hlen = 0;
    } else if (is_text(h)) {
        host = h->str;
        hlen = h->len;
    } else {
        return fail(b, "entry %zu: the master's host is not a string", ei);
    }
    if (!host || hlen == 0 || (hlen == 1 && host[0] == '?')) {
        host = unknown_host ? unknown_host : "";
        hlen = strlen(host);
    }
    if (!host_ok(host, hlen))
        return fail(b, "entry %zu: the master's host is not a host name", ei);
    if (!m->element[1] || m->element[1]->type != RP_REPLY_INTEGER)
        return fail(b, "entry %zu: the master's port is not an integer", ei);
    if (m->element[1]->integer < 1 || m->element[1]->integer > RP_PORT_MAX)
        return fail(b, "entry %zu: the master's port %lld is not a port", ei,
                    m->element[1]->integer);
    if ((rc = add_node(b, host, hlen, (int)m->element[1]->integer, &index)) != RP_OK)
        return rc;
    snprintf(where, sizeof where, "entry %zu", ei);
    return add_range(b, e->element[0]->integer, e->element[1]->integer, index, where);
}

int rp_cluster__parse_slots(const rp_reply *r, const char *unknown_host, const rp_allocator *a,
                            rp_cluster_topology *out, char *why, size_t whylen)
{
    topo_build b;
    size_t ei;
    int rc = RP_OK;
    build_init(&b, a, "CLUSTER SLOTS", why, whylen, out);
    if (!r || r->type != RP_REPLY_ARRAY)
        return not_array(&b, r);
    for (ei = 0; ei < r->elements && rc == RP_OK; ei++)
        rc = parse_one_slots_entry(&b, r->element[ei], ei, unknown_host);
    return build_end(&b, rc, out);
}
