/* The C runner of the shared test matrix (tests/matrix/README.md): every case of every
 * *.json file in the given directory, against the servers the harness started
 * (REDPAT_TEST_URLS and REDPAT_TEST_PIDS; REDPAT_TEST_URL alone means one server):
 *
 *     python3 tests/harness/harness.py run --servers 5 -- matrix_runner tests/matrix [FILTER]
 *
 * It is generic: an op step is performed by name through the core's descriptor table
 * (redpat/describe.h) with one marshaller (JSON -> rp_value by the descriptor's argument
 * types, rp_value -> comparison by its field types). It knows no pattern: a new op needs
 * cases, not runner code. Ops are driven by rp_client_drive (redpat/drive.h): a CALL runs
 * the step's "call" steps inside the callback; long-lived ops (descriptor long_lived) are
 * pumped by `messages` steps with rp_client_pump and read with rp_op_message, compared by
 * the descriptor's message fields. Raw `redis` steps go through rp_command_op_key (one
 * client per server, routed by the step's "key" on a cluster), and `reply_token_of` reads
 * a lock's token through "lock.info".
 *
 * Cluster mode (REDPAT_TEST_CLUSTER=1, `harness.py run --cluster --servers 5`): each
 * server is a Redis Cluster; REDPAT_TEST_URLS holds their cluster URLs (a ',' followed by
 * "<scheme>://" starts the next URL, any other ',' continues a URL's seed list),
 * REDPAT_TEST_NODES and REDPAT_TEST_PIDS each server's master nodes and their pids
 * (servers by ',', nodes by ' '). The per-case reset (CONFIG SET maxmemory 0, FLUSHALL)
 * then goes to every master of the case's servers directly, stop / cont signal every pid
 * of a server, and the closing line says matrix[c-cluster]. */
#define _POSIX_C_SOURCE 200809L /* kill, strtok_r, strdup, scandir */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <redpat/drive.h>
#include <redpat/redpat.h>

#define MAX_HANDLES 64   /* handles one case may make (a multi past its maximum needs 9+) */
#define MAX_LIVE 16      /* long-lived ops one case may keep at once */
#define LABEL_MAX 32     /* bytes in a handle label, NUL included */
#define WHY_MAX 1024     /* a failure's explanation */
#define SHOW_MAX 200     /* bytes of a value shown in a failure */
#define JSON_INT_MAX 9007199254740992.0 /* 2^53: JSON integers beyond it are not exact */
#define SERVERS_MAX 5    /* a case's "servers": 1..5 (the matrix's contract) */
#define NODES_MAX 16     /* nodes (and pids) of one server in cluster mode */

typedef struct handle {
    char label[LABEL_MAX]; /* "" for a handle made without "as" */
    rp_kind kind;
    void *ptr;
} handle;

/* A long-lived op begun by a step with "as": it keeps a client of its own, whose
 * connections are the op's for its whole life (drive.h: rp_client_pump). */
typedef struct live {
    char label[LABEL_MAX];
    rp_op *op;
    rp_client *client; /* owned: freed after the op */
} live;

typedef struct runner {
    /* the test servers, from the environment (the harness) */
    int cluster;    /* REDPAT_TEST_CLUSTER=1: every server is a Redis Cluster */
    const char *urls[SERVERS_MAX];
    size_t nurls;
    pid_t pids[SERVERS_MAX][NODES_MAX]; /* each server's pids (one, or a cluster's) */
    size_t npids[SERVERS_MAX];
    size_t npidservers;                 /* servers REDPAT_TEST_PIDS names */
    const char *nodes[SERVERS_MAX][NODES_MAX]; /* cluster mode: each server's nodes */
    size_t nnodes[SERVERS_MAX];
    char *env_urls;  /* owned copy of REDPAT_TEST_URLS, which urls[] point into */
    char *env_nodes; /* owned copy of REDPAT_TEST_NODES, which nodes[][] point into */
    /* the current case */
    const char *ns;
    size_t servers;         /* how many servers the case runs on */
    char *url;              /* owned: the first `servers` URLs joined with ',' */
    rp_client *client;      /* the case's client, over url */
    rp_client *raw[SERVERS_MAX]; /* raw-command clients, one per server (made on first use) */
    rp_client *node[SERVERS_MAX][NODES_MAX]; /* cluster mode: a client per node (resets) */
    handle handles[MAX_HANDLES];
    size_t nhandles;
    live lives[MAX_LIVE];
    size_t nlive;
    char why[WHY_MAX];
} runner;

static int failf(runner *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    return -1;
}

/* Prefixes the current failure with where it happened ("step 3: ..."). */
static void prefix_why(runner *r, const char *fmt, ...)
{
    char where[64], why[WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    memcpy(why, r->why, sizeof why);
    why[sizeof why - 1] = '\0';
    snprintf(r->why, sizeof r->why, "%s%.*s", where, (int)(sizeof r->why - strlen(where) - 1), why);
}

/* 1 if obj has a key not in the NULL-terminated list keys (its name in *bad). */
static int unknown_key(const cJSON *obj, const char *const *keys, const char **bad)
{
    const cJSON *item;
    for (item = obj ? obj->child : NULL; item; item = item->next) {
        const char *const *k;
        for (k = keys; *k && strcmp(*k, item->string); k++)
            ;
        if (!*k) {
            *bad = item->string;
            return 1;
        }
    }
    return 0;
}

/* --- a per-step arena for the converted arguments --------------------------------------- */

typedef union align_t {
    long double ld;
    void *p;
    int64_t i;
} align_t;

typedef struct chunk {
    struct chunk *next;
    align_t data[];
} chunk;

typedef struct arena {
    chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
    size_t n = (size + sizeof(align_t) - 1) / sizeof(align_t);
    chunk *c = malloc(sizeof *c + (n ? n : 1) * sizeof(align_t));
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    return c->data;
}

static void arena_free(arena *a)
{
    while (a->head) {
        chunk *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

/* --- JSON values ----------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static const cJSON *get(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* The most bytes a {"repeat": [s, n]} value may make (limits are tested at 64 KiB + 1). */
#define REPEAT_MAX (1u << 24)

/* {"repeat": ["s", n]}: s n times (long names without a long JSON file). */
static int is_repeat(const cJSON *v)
{
    const cJSON *r = cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 ? get(v, "repeat") : NULL;
    return cJSON_IsArray(r) && cJSON_GetArraySize(r) == 2 &&
           cJSON_IsString(cJSON_GetArrayItem(r, 0)) && cJSON_IsNumber(cJSON_GetArrayItem(r, 1)) &&
           cJSON_GetArrayItem(r, 1)->valuedouble >= 0 &&
           cJSON_GetArrayItem(r, 1)->valuedouble <= REPEAT_MAX;
}

/* 1 if v is a matrix byte string: a JSON string, {"hex": "..."} or {"repeat": ["s", n]}. */
static int is_bytes(const cJSON *v)
{
    return cJSON_IsString(v) || (cJSON_IsObject(v) && cJSON_IsString(get(v, "hex")) &&
                                 cJSON_GetArraySize(v) == 1) || is_repeat(v);
}

/* Decodes a matrix byte string into a buffer from a (NUL-terminated after len). */
static int get_bytes(arena *a, const cJSON *v, const char **out, size_t *len)
{
    const char *hex;
    char *buf;
    size_t i, n;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        *len = strlen(v->valuestring);
        return 0;
    }
    if (!is_bytes(v))
        return -1;
    if (is_repeat(v)) {
        const char *unit = cJSON_GetArrayItem(get(v, "repeat"), 0)->valuestring;
        size_t ulen = strlen(unit), times = (size_t)cJSON_GetArrayItem(get(v, "repeat"), 1)->valuedouble;
        if (ulen && times > REPEAT_MAX / ulen)
            return -1;
        if (!(buf = arena_alloc(a, ulen * times + 1)))
            return -1;
        for (i = 0; i < times; i++)
            memcpy(buf + i * ulen, unit, ulen);
        buf[ulen * times] = '\0';
        *out = buf;
        *len = ulen * times;
        return 0;
    }
    hex = get(v, "hex")->valuestring;
    if (strlen(hex) % 2)
        return -1;
    n = strlen(hex) / 2;
    if (!(buf = arena_alloc(a, n + 1)))
        return -1;
    for (i = 0; i < n; i++) {
        int h = hexval(hex[2 * i]), l = hexval(hex[2 * i + 1]);
        if (h < 0 || l < 0)
            return -1;
        buf[i] = (char)(h * 16 + l);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* An exact JSON integer (|x| <= 2^53), else -1. */
static int get_int(const cJSON *v, int64_t *out)
{
    double x;
    if (!cJSON_IsNumber(v))
        return -1;
    x = v->valuedouble;
    if (!(x >= -JSON_INT_MAX && x <= JSON_INT_MAX))
        return -1;
    *out = (int64_t)x;
    return (double)*out == x ? 0 : -1;
}

/* Shows a JSON value in a failure message. */
static void show_json(const cJSON *v, char *out, size_t cap)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(out, cap, "%.*s", SHOW_MAX, s ? s : "(nothing)");
    free(s);
}

/* --- handles by label ------------------------------------------------------------------ */

static const handle *find_handle(runner *r, const char *label)
{
    size_t i = r->nhandles;
    while (i-- > 0) /* the latest of a label wins */
        if (strcmp(r->handles[i].label, label) == 0)
            return &r->handles[i];
    return NULL;
}

static int keep_handle(runner *r, const char *label, rp_kind kind, void *ptr)
{
    handle *h;
    if (r->nhandles == MAX_HANDLES || strlen(label) >= LABEL_MAX) {
        rp_handle_free(kind, ptr);
        return failf(r, "runner: too many handles, or label \"%.40s\" too long", label);
    }
    h = &r->handles[r->nhandles++];
    snprintf(h->label, sizeof h->label, "%s", label);
    h->kind = kind;
    h->ptr = ptr;
    return 0;
}

/* A handle argument given by label ("a") or list of labels (["a", "b"]). */
static int handle_value(runner *r, arena *a, const char *arg, const cJSON *j, rp_value *out)
{
    if (cJSON_IsString(j)) {
        const handle *h = find_handle(r, j->valuestring);
        if (!h)
            return failf(r, "%s: no handle labelled \"%.40s\"", arg, j->valuestring);
        *out = rp_value_handle(h->kind, h->ptr);
        return 0;
    }
    if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j), i = 0;
        rp_value *items = arena_alloc(a, n * sizeof *items);
        const cJSON *item;
        if (!items)
            return failf(r, "out of memory");
        cJSON_ArrayForEach(item, j) {
            if (handle_value(r, a, arg, item, &items[i++]))
                return -1;
        }
        *out = rp_value_list(items, n);
        return 0;
    }
    return failf(r, "%s: a handle is given by label (a string) or a list of labels", arg);
}

/* A JSON argument as the value the descriptor's type asks for. Values are passed as given
 * (a string where the core wants an int reaches the core's validation, as bytes); only
 * JSON the matrix does not define is a runner failure. */
static int json_value(runner *r, arena *a, const char *arg, const cJSON *j, rp_type type,
                      rp_type item_type, rp_value *out)
{
    int64_t i;
    memset(out, 0, sizeof *out);
    if (cJSON_IsNull(j))
        return 0; /* absent: the default */
    if (cJSON_IsBool(j)) {
        *out = rp_value_int(RP_TYPE_BOOL, cJSON_IsTrue(j) ? 1 : 0);
        return 0;
    }
    if (cJSON_IsNumber(j)) {
        if (type == RP_TYPE_FLOAT) {
            *out = rp_value_float(j->valuedouble);
        } else if (get_int(j, &i) == 0) {
            /* an ENUM given as a number is its index */
            *out = rp_value_int(type == RP_TYPE_MS ? RP_TYPE_MS : RP_TYPE_INT, i);
            if (type == RP_TYPE_ENUM)
                out->type = RP_TYPE_ENUM;
        } else if (j->valuedouble >= -JSON_INT_MAX && j->valuedouble <= JSON_INT_MAX) {
            *out = rp_value_float(j->valuedouble); /* 1.5 for an int: the core decides */
        } else {
            return failf(r, "%s: %g is beyond 2^53, not exact in JSON", arg, j->valuedouble);
        }
        return 0;
    }
    if (is_bytes(j)) {
        const char *b;
        size_t len;
        if (get_bytes(a, j, &b, &len))
            return failf(r, "%s: bad {\"hex\": ...} bytes", arg);
        *out = rp_value_bytes(b, len); /* ENUM names are passed as bytes */
        return 0;
    }
    if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j), k = 0;
        rp_value *items = arena_alloc(a, n * sizeof *items);
        const cJSON *item;
        if (!items)
            return failf(r, "out of memory");
        cJSON_ArrayForEach(item, j) {
            if (json_value(r, a, arg, item, item_type, RP_TYPE_NONE, &items[k++]))
                return -1;
        }
        *out = rp_value_list(items, n);
        return 0;
    }
    {
        char got[SHOW_MAX + 1];
        show_json(j, got, sizeof got);
        return failf(r, "%s: the matrix has no value like %s", arg, got);
    }
}

static int is_handle_arg(const rp_arg_desc *a)
{
    return a->type == RP_TYPE_HANDLE || (a->type == RP_TYPE_LIST && a->item_type == RP_TYPE_HANDLE);
}

/* The keys an op step may have besides its handle arguments. */
static const char *const op_keys[] = { "op", "as", "args", "expect", "call", "elapsed_max", NULL };

/* Fills vals[0..d->nargs) from a step: handle arguments from its top level by label (a
 * client handle left out is the case's client), callback arguments from its "call" (their
 * value carries callback, the runner's own state: the core never looks at it), the others
 * from its "args". */
static int step_args(runner *r, arena *a, const rp_op_desc *d, const cJSON *step,
                     void *callback, rp_value *vals)
{
    const cJSON *args = get(step, "args"), *item;
    size_t i;
    if (d->nargs > RP_DESC_ARGS_MAX)
        return failf(r, "%s has %zu args, more than RP_DESC_ARGS_MAX", d->name, d->nargs);
    if (args && !cJSON_IsObject(args))
        return failf(r, "\"args\" must be an object");
    /* every name the step uses must be one the descriptor knows */
    cJSON_ArrayForEach(item, args) {
        int k = rp_desc_arg_index(d, item->string);
        if (k < 0)
            return failf(r, "%s has no argument \"%s\"", d->name, item->string);
        if (is_handle_arg(&d->args[k]))
            return failf(r, "%s: the handle \"%s\" goes at the step's top level", d->name,
                         item->string);
        if (d->args[k].type == RP_TYPE_CALLBACK)
            return failf(r, "%s: the callback \"%s\" is answered by the step's \"call\", not "
                         "given in \"args\"", d->name, item->string);
    }
    cJSON_ArrayForEach(item, step) {
        const char *const *key;
        int k = rp_desc_arg_index(d, item->string);
        for (key = op_keys; *key && strcmp(*key, item->string); key++)
            ;
        if (!*key && (k < 0 || !is_handle_arg(&d->args[k])))
            return failf(r, "%s: unknown step key \"%s\"", d->name, item->string);
    }
    for (i = 0; i < d->nargs; i++) {
        const rp_arg_desc *ad = &d->args[i];
        memset(&vals[i], 0, sizeof vals[i]);
        if (is_handle_arg(ad)) {
            const cJSON *j = get(step, ad->name);
            if (j) {
                if (handle_value(r, a, ad->name, j, &vals[i]))
                    return -1;
            } else if (ad->type == RP_TYPE_HANDLE && ad->kind == RP_KIND_CLIENT) {
                vals[i] = rp_value_handle(RP_KIND_CLIENT, r->client);
            }
        } else if (ad->type == RP_TYPE_CALLBACK) {
            if (callback) { /* absent without "call": a required callback is then refused */
                vals[i].type = RP_TYPE_CALLBACK;
                vals[i].handle = callback;
            }
        } else if ((item = get(args, ad->name)) &&
                   json_value(r, a, ad->name, item, ad->type, ad->item_type, &vals[i])) {
            return -1;
        }
    }
    return 0;
}

/* --- results, compared by the descriptor's field types ------------------------------- */

static int reply_equals(arena *a, const rp_reply *got, const cJSON *want)
{
    if (cJSON_IsNull(want))
        return got->type == RP_REPLY_NIL;
    if (cJSON_IsNumber(want)) {
        int64_t i;
        return get_int(want, &i) == 0 && got->type == RP_REPLY_INTEGER && got->integer == i;
    }
    if (cJSON_IsArray(want)) {
        size_t i = 0;
        const cJSON *item;
        if (got->type != RP_REPLY_ARRAY || got->elements != (size_t)cJSON_GetArraySize(want))
            return 0;
        cJSON_ArrayForEach(item, want) {
            if (!reply_equals(a, got->element[i++], item))
                return 0;
        }
        return 1;
    }
    if (is_bytes(want)) {
        const char *b;
        size_t len;
        if (get_bytes(a, want, &b, &len))
            return 0;
        return (got->type == RP_REPLY_STRING || got->type == RP_REPLY_STATUS) &&
               got->len == len && memcmp(got->str, b, len) == 0;
    }
    return 0;
}

static void show_reply(const rp_reply *r, char *out, size_t cap)
{
    switch (r->type) {
    case RP_REPLY_INTEGER: snprintf(out, cap, "integer %lld", r->integer); break;
    case RP_REPLY_NIL: snprintf(out, cap, "nil"); break;
    case RP_REPLY_ARRAY: snprintf(out, cap, "array of %zu", r->elements); break;
    case RP_REPLY_ERROR: snprintf(out, cap, "error \"%.*s\"", (int)(r->len > SHOW_MAX ? SHOW_MAX : r->len), r->str); break;
    default: snprintf(out, cap, "string \"%.*s\"", (int)(r->len > SHOW_MAX ? SHOW_MAX : r->len), r->str);
    }
}

/* Shows a result value in a failure message. */
static void show_value(const rp_value *v, char *out, size_t cap)
{
    size_t n, k;
    switch (v->type) {
    case RP_TYPE_NONE: snprintf(out, cap, "none"); break;
    case RP_TYPE_BOOL: snprintf(out, cap, "%s", v->i ? "true" : "false"); break;
    case RP_TYPE_INT:
    case RP_TYPE_MS: snprintf(out, cap, "%" PRId64, v->i); break;
    case RP_TYPE_FLOAT: snprintf(out, cap, "%.17g", v->f); break;
    case RP_TYPE_STATUS:
        snprintf(out, cap, "%s \"%.*s\"", rp_status_name((int)v->i),
                 (int)(v->len > SHOW_MAX ? SHOW_MAX : v->len), v->bytes ? v->bytes : "");
        break;
    case RP_TYPE_BYTES:
    case RP_TYPE_ENUM:
        if (cap < 3)
            break;
        n = 0;
        out[n++] = '"';
        for (k = 0; k < v->len && k < SHOW_MAX && n + 6 < cap; k++) {
            unsigned char c = (unsigned char)v->bytes[k];
            n += (size_t)snprintf(out + n, cap - n, isprint(c) && c != '"' ? "%c" : "\\x%02x", c);
        }
        snprintf(out + n, cap - n, "\"");
        break;
    case RP_TYPE_REPLY:
        if (v->reply)
            show_reply(v->reply, out, cap);
        else
            snprintf(out, cap, "no reply");
        break;
    case RP_TYPE_LIST: snprintf(out, cap, "a list of %zu", v->count); break;
    default: snprintf(out, cap, "a %s", rp_type_name(v->type));
    }
}

/* 1 if result value v (of the descriptor's type `type`) matches the expected JSON. */
static int value_matches(arena *a, const rp_value *v, rp_type type, const cJSON *want)
{
    const cJSON *between = cJSON_IsObject(want) ? get(want, "between") : NULL;
    int64_t i;
    if (between) {
        int64_t lo, hi;
        if (cJSON_GetArraySize(between) != 2 || get_int(cJSON_GetArrayItem(between, 0), &lo) ||
            get_int(cJSON_GetArrayItem(between, 1), &hi))
            return 0;
        if (v->type == RP_TYPE_FLOAT)
            return v->f >= (double)lo && v->f <= (double)hi;
        return (v->type == RP_TYPE_INT || v->type == RP_TYPE_MS) && v->i >= lo && v->i <= hi;
    }
    if (cJSON_IsNull(want))
        return v->type == RP_TYPE_NONE;
    if (v->type != type) /* a field is of its declared type, or NONE (no value) */
        return 0;
    switch (type) {
    case RP_TYPE_BOOL:
        return cJSON_IsBool(want) && v->i == (cJSON_IsTrue(want) ? 1 : 0);
    case RP_TYPE_INT:
    case RP_TYPE_MS:
        return get_int(want, &i) == 0 && v->i == i;
    case RP_TYPE_FLOAT:
        return cJSON_IsNumber(want) && v->f == want->valuedouble;
    case RP_TYPE_ENUM:
    case RP_TYPE_BYTES: {
        const char *b;
        size_t len;
        if (type == RP_TYPE_ENUM && cJSON_IsNumber(want)) /* an ENUM by index, else by name */
            return get_int(want, &i) == 0 && v->i == i;
        return is_bytes(want) && get_bytes(a, want, &b, &len) == 0 && len == v->len &&
               (len == 0 || memcmp(b, v->bytes, len) == 0);
    }
    case RP_TYPE_STATUS:
        if (cJSON_IsNumber(want))
            return get_int(want, &i) == 0 && v->i == i;
        return cJSON_IsString(want) && strcmp(rp_status_name((int)v->i), want->valuestring) == 0;
    case RP_TYPE_REPLY:
        return v->reply && reply_equals(a, v->reply, want);
    case RP_TYPE_LIST: {
        size_t k = 0;
        const cJSON *item;
        if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != v->count)
            return 0;
        cJSON_ArrayForEach(item, want) {
            if (!value_matches(a, &v->items[k], v->items[k].type, item))
                return 0;
            k++;
        }
        return 1;
    }
    default:
        return 0;
    }
}

/* 1 if word occurs in text as a whole name (not inside a longer identifier). */
static int contains_name(const char *text, const char *word)
{
    size_t n = strlen(word);
    const char *p = text;
    if (n == 0)
        return 0;
    while ((p = strstr(p, word)) != NULL) {
        int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after = isalnum((unsigned char)p[n]) || p[n] == '_';
        if (!before && !after)
            return 1;
        p++;
    }
    return 0;
}

/* An {"error": ...} expectation against the op's status. */
static int check_error(runner *r, const rp_op_desc *d, const cJSON *expect, int rc,
                       const rp_error *err, int counting)
{
    const cJSON *want = get(expect, "error"), *contains = get(expect, "message_contains");
    const cJSON *names = get(expect, "names_arg"), *item;
    cJSON_ArrayForEach(item, expect) {
        if (strcmp(item->string, "error") && strcmp(item->string, "message_contains") &&
            strcmp(item->string, "names_arg") && !(counting && !strcmp(item->string, "calls")))
            return failf(r, "an error expectation has no key \"%s\"", item->string);
    }
    if (!cJSON_IsString(want) || (contains && !cJSON_IsString(contains)) ||
        (names && !cJSON_IsString(names)))
        return failf(r, "error, message_contains and names_arg are strings");
    if (rc == RP_OK)
        return failf(r, "expected error %s, the operation succeeded", want->valuestring);
    if (strcmp(rp_status_name(rc), want->valuestring) != 0)
        return failf(r, "expected error %s, got %s (%s)", want->valuestring, rp_status_name(rc),
                     err->message);
    if (contains && !strstr(err->message, contains->valuestring))
        return failf(r, "error message \"%s\" does not contain \"%s\"", err->message,
                     contains->valuestring);
    if (names) {
        /* C speaks the core's names: the message must name the argument as the core does */
        int k = rp_desc_arg_index(d, names->valuestring);
        if (k < 0)
            return failf(r, "names_arg: %s has no argument \"%s\"", d->name, names->valuestring);
        if (!contains_name(err->message, d->args[k].name))
            return failf(r, "error message \"%s\" does not name the argument \"%s\"",
                         err->message, d->args[k].name);
    }
    return 0;
}

/* Checks one expected field against record `rec` of a DONE op. */
static int check_field(runner *r, arena *a, const rp_op_desc *d, const rp_field_desc *fd,
                       const rp_value *v, const cJSON *want, size_t rec)
{
    char got[SHOW_MAX + 8], wanted[SHOW_MAX + 1];
    if (value_matches(a, v, fd->type, want))
        return 0;
    show_value(v, got, sizeof got);
    show_json(want, wanted, sizeof wanted);
    if (d->shape == RP_RESULT_LIST)
        return failf(r, "%s[%zu]: expected %s, got %s", fd->name, rec, wanted, got);
    return failf(r, "%s: expected %s, got %s", fd->name, wanted, got);
}

/* "calls" in the expect of a step with a "call": the callback count, not a result field. */
static int is_calls(const cJSON *item, int counting)
{
    return counting && strcmp(item->string, "calls") == 0;
}

/* The expectation of an op step (or of a constructor when op is NULL). counting: the step
 * has a "call", and its expect's "calls" is checked by the caller (skipped here). */
static int check_op(runner *r, arena *a, const rp_op_desc *d, const cJSON *expect, int rc,
                    const rp_error *err, const rp_op *op, int counting)
{
    rp_value fields[RP_DESC_FIELDS_MAX];
    const cJSON *field;
    size_t n, rec, nexpect = 0;
    if (expect && !cJSON_IsObject(expect))
        return failf(r, "\"expect\" must be an object");
    if (get(expect, "error"))
        return check_error(r, d, expect, rc, err, counting);
    if (rc != RP_OK)
        return failf(r, "failed: %s: %s", rp_status_name(rc), err->message);
    cJSON_ArrayForEach(field, expect) {
        if (!is_calls(field, counting))
            nexpect++;
    }
    if (nexpect == 0)
        return 0;
    if (d->makes != RP_KIND_NONE || d->shape == RP_RESULT_NONE || !op)
        return failf(r, "%s has no result to expect fields of", d->name);
    if (d->nfields > RP_DESC_FIELDS_MAX)
        return failf(r, "%s has more fields than RP_DESC_FIELDS_MAX", d->name);
    n = rp_op_result_count(op);
    if (d->shape == RP_RESULT_RECORD && n != 1)
        return failf(r, "%s: a record result has %zu records", d->name, n);
    cJSON_ArrayForEach(field, expect) {
        if (is_calls(field, counting))
            continue;
        if (rp_desc_field_index(d, field->string) < 0)
            return failf(r, "%s has no result field \"%s\"", d->name, field->string);
        /* a list result: each expected field is the list of that field over the records */
        if (d->shape == RP_RESULT_LIST &&
            (!cJSON_IsArray(field) || (size_t)cJSON_GetArraySize(field) != n))
            return failf(r, "%s: %zu records, expected a list of %zu for \"%s\"", d->name, n,
                         cJSON_IsArray(field) ? (size_t)cJSON_GetArraySize(field) : 0,
                         field->string);
    }
    for (rec = 0; rec < n; rec++) {
        memset(fields, 0, sizeof fields); /* a field the core leaves unset reads as none */
        rc = rp_op_result(op, rec, fields);
        if (rc != RP_OK)
            return failf(r, "%s: reading record %zu: %s", d->name, rec, rp_status_name(rc));
        cJSON_ArrayForEach(field, expect) {
            size_t k;
            const cJSON *want;
            if (is_calls(field, counting))
                continue;
            k = (size_t)rp_desc_field_index(d, field->string);
            want = d->shape == RP_RESULT_LIST ? cJSON_GetArrayItem(field, (int)rec) : field;
            if (check_field(r, a, d, &d->fields[k], &fields[k], want, rec))
                return -1;
        }
    }
    return 0;
}

/* --- clients ------------------------------------------------------------------------- */

static const rp_op_desc *need_desc(runner *r, const char *name)
{
    const rp_op_desc *d = rp_desc_find(name, strlen(name));
    if (!d)
        failf(r, "the core describes no op \"%s\"", name);
    return d;
}

/* A client over url with the case's namespace, made through the generic "client.new". No
 * I/O: it connects on first use. */
static int open_client(runner *r, const char *url, rp_client **out)
{
    const rp_op_desc *d = need_desc(r, "client.new");
    rp_value vals[RP_DESC_ARGS_MAX];
    rp_error err;
    void *made = NULL;
    int urli, nsi;
    *out = NULL;
    if (!d)
        return -1;
    urli = rp_desc_arg_index(d, "url");
    nsi = rp_desc_arg_index(d, "namespace");
    if (urli < 0 || nsi < 0 || d->nargs > RP_DESC_ARGS_MAX)
        return failf(r, "client.new is not described with url and namespace");
    memset(vals, 0, sizeof vals);
    vals[urli] = rp_value_bytes(url, strlen(url));
    vals[nsi] = rp_value_bytes(r->ns, strlen(r->ns));
    if (rp_desc_make(&made, d, vals, NULL, &err) != RP_OK)
        return failf(r, "client over %s: %s", url, err.message);
    *out = made;
    return 0;
}

/* The raw-command client of test server i (made on first use). */
static rp_client *raw_client(runner *r, size_t i)
{
    if (!r->raw[i] && open_client(r, r->urls[i], &r->raw[i]))
        return NULL;
    return r->raw[i];
}

/* A server index of the case, from a step: an integer 0..servers-1. */
static int server_index(runner *r, const cJSON *j, const char *what, size_t *out)
{
    int64_t i;
    if (get_int(j, &i) || i < 0)
        return failf(r, "%s: a server is an integer index from 0", what);
    if ((uint64_t)i >= r->servers)
        return failf(r, "%s: server %" PRId64 " is not one of the case's %zu (\"servers\")",
                     what, i, r->servers);
    *out = (size_t)i;
    return 0;
}

/* --- running ops, with their callbacks (CALL) ----------------------------------------- */

static int run_step(runner *r, const cJSON *step);

/* A step's "call": what each CALL of its op does, and what happened in them. */
typedef struct call_state {
    runner *r;
    const rp_op_desc *d;
    const cJSON *call;   /* {"steps": [...], "return": BYTES | "raise": TEXT}, or NULL */
    const char *ret;     /* "return": the value (in the step's arena); NULL: none */
    size_t retlen;
    const char *raise;   /* "raise": the error message; NULL: none */
    int64_t calls;       /* how many times the callback ran */
    int failed;          /* a step inside a callback failed, or a CALL came with no "call" */
    char why[WHY_MAX];   /* ... why (the first failure) */
} call_state;

/* Reads a step's "call" into cs. */
static int parse_call(runner *r, arena *a, const cJSON *call, call_state *cs)
{
    static const char *const keys[] = { "steps", "return", "raise", NULL };
    const cJSON *steps = get(call, "steps"), *ret = get(call, "return");
    const cJSON *raise = get(call, "raise");
    const char *bad;
    if (!cJSON_IsObject(call))
        return failf(r, "\"call\" is an object: {\"steps\": [...], \"return\": BYTES} or "
                     "{\"steps\": [...], \"raise\": TEXT}");
    if (unknown_key(call, keys, &bad))
        return failf(r, "a \"call\" has no key \"%s\"", bad);
    if (steps && !cJSON_IsArray(steps))
        return failf(r, "a \"call\"'s \"steps\" is a list of steps");
    if (ret && raise)
        return failf(r, "a \"call\" either returns or raises, not both");
    if (ret && get_bytes(a, ret, &cs->ret, &cs->retlen))
        return failf(r, "a \"call\"'s \"return\" is bytes");
    if (raise) {
        if (!cJSON_IsString(raise))
            return failf(r, "a \"call\"'s \"raise\" is the error's text (a string)");
        cs->raise = raise->valuestring;
    }
    cs->call = call;
    return 0;
}

/* The CALL hook (drive.h): runs the step's "call" steps in the calling thread (while the
 * driver's helper thread keeps stepping the op), then answers as the "call" says. A failed
 * step ends the callback with an error, so the op still cleans up (releases its lock); the
 * case then fails with that step's reason whatever the op did. */
static void call_hook(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                      rp_value *result)
{
    static const char no_call[] = "matrix runner: the step has no \"call\"";
    static const char nested[] = "matrix runner: a step inside the callback failed";
    call_state *cs = ud;
    const cJSON *step;
    int n = 0;
    (void)op;
    (void)values; /* the matrix's callbacks take no arguments */
    (void)count;
    cs->calls++;
    memset(result, 0, sizeof *result);
    result->type = RP_TYPE_STATUS;
    result->i = RP_ECALLBACK;
    if (!cs->call) {
        if (!cs->failed) {
            cs->failed = 1;
            snprintf(cs->why, sizeof cs->why, "%s CALLs its callback \"%s\" and the step has "
                     "no \"call\" to answer it", cs->d->name,
                     arg < cs->d->nargs ? cs->d->args[arg].name : "?");
        }
        result->bytes = no_call;
        result->len = sizeof no_call - 1;
        return;
    }
    if (cs->failed) { /* an earlier call's step failed: do not run them again */
        result->bytes = nested;
        result->len = sizeof nested - 1;
        return;
    }
    cJSON_ArrayForEach(step, get(cs->call, "steps")) {
        n++;
        if (run_step(cs->r, step)) {
            prefix_why(cs->r, "call %" PRId64 ", step %d: ", cs->calls, n);
            if (!cs->failed) {
                cs->failed = 1;
                memcpy(cs->why, cs->r->why, sizeof cs->why);
            }
            result->bytes = nested;
            result->len = sizeof nested - 1;
            return;
        }
    }
    if (cs->raise) {
        result->bytes = cs->raise;
        result->len = strlen(cs->raise);
    } else if (cs->ret) {
        *result = rp_value_bytes(cs->ret, cs->retlen);
    } else {
        result->type = RP_TYPE_NONE;
    }
}

static int has_callback_arg(const rp_op_desc *d)
{
    size_t i;
    for (i = 0; i < d->nargs; i++)
        if (d->args[i].type == RP_TYPE_CALLBACK)
            return 1;
    return 0;
}

/* --- long-lived ops ---------------------------------------------------------------------- */

static live *find_live(runner *r, const char *label)
{
    size_t i;
    for (i = 0; i < r->nlive; i++)
        if (strcmp(r->lives[i].label, label) == 0)
            return &r->lives[i];
    return NULL;
}

/* Frees lives[i] (the op, then its client: the op's connections go with it). */
static void drop_live(runner *r, size_t i)
{
    rp_op_free(r->lives[i].op);
    rp_client_free(r->lives[i].client);
    memmove(&r->lives[i], &r->lives[i + 1], (r->nlive - i - 1) * sizeof r->lives[0]);
    r->nlive--;
}

/* A long-lived op step: begins the op (no I/O yet: the first `messages` step pumps it) and
 * keeps it under its "as" label with a client of its own. */
static int begin_live(runner *r, arena *a, const rp_op_desc *d, const cJSON *step)
{
    const cJSON *as = get(step, "as"), *expect = get(step, "expect");
    rp_value vals[RP_DESC_ARGS_MAX];
    rp_client *client = NULL;
    rp_op *op = NULL;
    rp_error err;
    live *l;
    int rc, checked;
    rp_error_clear(&err);
    if (get(step, "call") || get(step, "elapsed_max"))
        return failf(r, "%s is long-lived: it takes no \"call\" or \"elapsed_max\"", d->name);
    if (!cJSON_IsString(as) || !as->valuestring[0] || strlen(as->valuestring) >= LABEL_MAX)
        return failf(r, "%s is long-lived: \"as\" labels it for messages and close (1..%d "
                     "bytes)", d->name, LABEL_MAX - 1);
    if (!find_live(r, as->valuestring) && r->nlive == MAX_LIVE)
        return failf(r, "runner: more than %d long-lived ops in one case", MAX_LIVE);
    if (step_args(r, a, d, step, NULL, vals))
        return -1;
    rc = rp_desc_begin(&op, d, vals, NULL, &err);
    if (rc == RP_OK && open_client(r, r->url, &client)) {
        rp_op_free(op);
        return -1;
    }
    checked = check_op(r, a, d, expect, rc, &err, NULL, 0);
    if (rc != RP_OK || checked) {
        rp_op_free(op);
        rp_client_free(client);
        return checked;
    }
    if ((l = find_live(r, as->valuestring)) != NULL) /* a later op with the label replaces it */
        drop_live(r, (size_t)(l - r->lives));
    l = &r->lives[r->nlive++];
    snprintf(l->label, sizeof l->label, "%s", as->valuestring);
    l->op = op;
    l->client = client;
    return 0;
}

static int message_field_index(const rp_op_desc *d, const char *name)
{
    size_t i;
    for (i = 0; i < d->nmessage_fields; i++)
        if (strcmp(d->message_fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Shows a message in a failure: its fields that have a value. */
static void show_message(const rp_op_desc *d, const rp_value *fields, char *out, size_t cap)
{
    size_t i, n = 0;
    n += (size_t)snprintf(out, cap, "{");
    for (i = 0; i < d->nmessage_fields && n < cap; i++) {
        char v[SHOW_MAX + 8];
        if (fields[i].type == RP_TYPE_NONE)
            continue;
        show_value(&fields[i], v, sizeof v);
        n += (size_t)snprintf(out + n, cap - n, "%s%s: %s", n > 1 ? ", " : "",
                              d->message_fields[i].name, v);
    }
    if (n < cap)
        snprintf(out + n, cap - n, "}");
}

/* Compares the current message of l with its expected entry (only the fields listed). */
static int check_message(runner *r, arena *a, const live *l, const rp_op_desc *d,
                         const rp_value *fields, size_t k, const cJSON *want)
{
    char got[WHY_MAX / 2];
    const cJSON *field;
    if (!cJSON_IsObject(want))
        return failf(r, "%s: an expected message is an object of fields", l->label);
    cJSON_ArrayForEach(field, want) {
        int i = message_field_index(d, field->string);
        if (i < 0)
            return failf(r, "%s: %s's messages have no field \"%s\"", l->label, d->name,
                         field->string);
        if (!value_matches(a, &fields[i], d->message_fields[i].type, field)) {
            char wanted[SHOW_MAX + 1];
            show_json(field, wanted, sizeof wanted);
            show_message(d, fields, got, sizeof got);
            return failf(r, "%s: message %zu: %s: expected %s, got %s", l->label, k + 1,
                         field->string, wanted, got);
        }
    }
    return 0;
}

/* {"messages": L, "count": N, "timeout": MS, "expect": [...]}: pumps L until N messages
 * came (each compared with its entry), failing when MS passes first; N = 0: pumps for MS
 * and fails on any message. */
static int run_messages(runner *r, arena *a, const cJSON *step)
{
    static const char *const keys[] = { "messages", "count", "timeout", "expect", NULL };
    const cJSON *label = get(step, "messages"), *expect = get(step, "expect");
    rp_value fields[RP_DESC_FIELDS_MAX];
    const rp_op_desc *d;
    const char *bad;
    int64_t count, timeout, k;
    uint64_t deadline;
    live *l;
    rp_error err;
    int rc;
    if (unknown_key(step, keys, &bad))
        return failf(r, "a messages step has no key \"%s\"", bad);
    if (!cJSON_IsString(label))
        return failf(r, "\"messages\" names a long-lived op by its label");
    if (!(l = find_live(r, label->valuestring)))
        return failf(r, "messages: no long-lived op labelled \"%.40s\"", label->valuestring);
    if (get_int(get(step, "count"), &count) || count < 0)
        return failf(r, "messages: \"count\" is an integer >= 0");
    if (get_int(get(step, "timeout"), &timeout) || timeout < 0)
        return failf(r, "messages: \"timeout\" is an integer >= 0 (ms)");
    if (expect && (!cJSON_IsArray(expect) || cJSON_GetArraySize(expect) != count))
        return failf(r, "messages: \"expect\" is a list of \"count\" (%" PRId64 ") messages",
                     count);
    d = rp_op_desc_of(l->op);
    if (!d || !d->message || d->nmessage_fields > RP_DESC_FIELDS_MAX)
        return failf(r, "%s: %s describes no messages", l->label, d ? d->name : "the op");
    deadline = rp_monotonic_ms() + (uint64_t)timeout;
    for (k = 0; k < count || (count == 0 && k == 0); k++) {
        uint64_t now = rp_monotonic_ms();
        rp_error_clear(&err);
        rc = rp_client_pump(l->client, l->op, now < deadline ? deadline - now : 0, NULL, &err);
        if (rc == RP_ETIMEOUT) {
            if (count == 0)
                return 0;
            return failf(r, "%s: %" PRId64 " of %" PRId64 " messages within %" PRId64 " ms",
                         l->label, k, count, timeout);
        }
        if (rc != RP_OK)
            return failf(r, "%s: %s ended: %s: %s", l->label, d->name, rp_status_name(rc),
                         err.message);
        memset(fields, 0, sizeof fields);
        if ((rc = rp_op_message(l->op, fields)) != RP_OK)
            return failf(r, "%s: reading a message: %s", l->label, rp_status_name(rc));
        if (count == 0) {
            char got[WHY_MAX / 2];
            show_message(d, fields, got, sizeof got);
            return failf(r, "%s: expected no message within %" PRId64 " ms, got %s", l->label,
                         timeout, got);
        }
        if (expect &&
            check_message(r, a, l, d, fields, (size_t)k, cJSON_GetArrayItem(expect, (int)k)))
            return -1;
    }
    return 0;
}

/* {"close": L}: frees a long-lived op and closes its connections. */
static int run_close(runner *r, const cJSON *step)
{
    const cJSON *label = get(step, "close");
    live *l;
    if (cJSON_GetArraySize(step) != 1 || !cJSON_IsString(label))
        return failf(r, "a close step is {\"close\": LABEL}");
    if (!(l = find_live(r, label->valuestring)))
        return failf(r, "close: no long-lived op labelled \"%.40s\"", label->valuestring);
    drop_live(r, (size_t)(l - r->lives));
    return 0;
}

/* --- op steps ---------------------------------------------------------------------------- */

static int run_op(runner *r, const cJSON *step)
{
    const cJSON *name = get(step, "op"), *as = get(step, "as");
    const cJSON *expect = get(step, "expect"), *call = get(step, "call");
    const cJSON *elapsed = get(step, "elapsed_max"), *calls;
    rp_value vals[RP_DESC_ARGS_MAX];
    const rp_op_desc *d;
    arena a = { NULL };
    call_state cs;
    int64_t elapsed_max = -1, want_calls = 0;
    uint64_t start, took;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    memset(&cs, 0, sizeof cs);
    cs.r = r;
    if (!cJSON_IsString(name))
        return failf(r, "\"op\" must be a string");
    if (!(d = need_desc(r, name->valuestring)))
        return -1;
    cs.d = d;
    if (d->long_lived) {
        rc = begin_live(r, &a, d, step);
        arena_free(&a);
        return rc;
    }
    if (as && (!cJSON_IsString(as) || d->makes == RP_KIND_NONE))
        return failf(r, "\"as\" labels the handle a constructor makes, or a long-lived op");
    if (elapsed && (get_int(elapsed, &elapsed_max) || elapsed_max < 0))
        return failf(r, "\"elapsed_max\" is an integer >= 0 (ms)");
    calls = call && cJSON_IsObject(expect) ? get(expect, "calls") : NULL;
    if (calls && (get_int(calls, &want_calls) || want_calls < 0))
        return failf(r, "\"calls\" in expect is an integer >= 0");
    if (call && !has_callback_arg(d))
        rc = failf(r, "%s has no callback argument for \"call\" to answer", d->name);
    else if (call)
        rc = parse_call(r, &a, call, &cs);
    else
        rc = 0;
    if (rc || step_args(r, &a, d, step, call ? &cs : NULL, vals)) {
        arena_free(&a);
        return -1;
    }
    start = rp_monotonic_ms();
    if (d->makes != RP_KIND_NONE) {
        void *made = NULL;
        rc = rp_desc_make(&made, d, vals, NULL, &err);
        if (rc == RP_OK && keep_handle(r, as ? as->valuestring : "", d->makes, made))
            rc = -1;
        else
            rc = check_op(r, &a, d, expect, rc, &err, NULL, call != NULL);
    } else {
        rp_drive_hooks hooks = { NULL, call_hook, NULL };
        rp_op *op = NULL;
        hooks.ud = &cs;
        rc = rp_desc_begin(&op, d, vals, NULL, &err);
        if (rc == RP_OK)
            rc = rp_client_drive(r->client, op, &hooks, &err);
        if (cs.failed) /* a callback's step failed: that is the case's failure */
            rc = failf(r, "%s", cs.why);
        else
            rc = check_op(r, &a, d, expect, rc, &err, op, call != NULL);
        rp_op_free(op);
    }
    took = rp_monotonic_ms() - start;
    if (rc == 0 && calls && cs.calls != want_calls)
        rc = failf(r, "calls: expected %" PRId64 ", the callback ran %" PRId64 " times",
                   want_calls, cs.calls);
    if (rc == 0 && elapsed_max >= 0 && took > (uint64_t)elapsed_max)
        rc = failf(r, "%s took %" PRIu64 " ms, more than elapsed_max %" PRId64 " ms", d->name,
                   took, elapsed_max);
    arena_free(&a);
    return rc;
}

/* --- raw commands, routed by a key on a cluster ----------------------------------------- */

/* Runs argv (a JSON list of byte strings) over client, routed by key (a matrix byte string,
 * or NULL: the keys the core finds in argv) on a cluster; where names the server in
 * failures. *reply borrows from *op. */
static int raw_command(runner *r, arena *a, const cJSON *argv, const cJSON *key,
                       rp_client *client, const char *where, rp_op **op,
                       const rp_reply **reply)
{
    const cJSON *item;
    const char **args, *k = NULL;
    size_t *lens, klen = 0;
    rp_error err;
    int argc, i = 0, rc;
    *op = NULL;
    if (!cJSON_IsArray(argv) || (argc = cJSON_GetArraySize(argv)) < 1)
        return failf(r, "\"redis\" is a non-empty list of byte strings");
    args = arena_alloc(a, (size_t)argc * sizeof *args);
    lens = arena_alloc(a, (size_t)argc * sizeof *lens);
    if (!args || !lens)
        return failf(r, "out of memory");
    cJSON_ArrayForEach(item, argv) {
        if (get_bytes(a, item, &args[i], &lens[i]))
            return failf(r, "\"redis\" is a list of byte strings");
        i++;
    }
    if (key && get_bytes(a, key, &k, &klen))
        return failf(r, "\"key\" is a byte string");
    if (!client)
        return -1;
    rc = rp_command_op_key(op, client, argc, args, lens, k, klen, &err);
    if (rc == RP_OK)
        rc = rp_client_run(client, *op, &err);
    if (rc != RP_OK)
        return failf(r, "raw command to %s failed: %s: %s", where, rp_status_name(rc),
                     err.message);
    if (rp_command_result(*op, reply) != RP_OK || !*reply)
        return failf(r, "the command op gave no reply");
    return 0;
}

/* The current token of lock `label`, read through the generic "lock.info" op (which answers
 * from the handle). *token borrows from *op; type NONE when the lock is not held. */
static int lock_token(runner *r, const char *label, rp_op **op, rp_value *token)
{
    const rp_op_desc *d = need_desc(r, "lock.info");
    const handle *h = find_handle(r, label);
    rp_value vals[RP_DESC_ARGS_MAX], fields[RP_DESC_FIELDS_MAX];
    rp_error err;
    int field, rc;
    *op = NULL;
    memset(token, 0, sizeof *token);
    if (!d)
        return -1;
    if (!h)
        return failf(r, "reply_token_of: no handle labelled \"%.40s\"", label);
    field = rp_desc_field_index(d, "token");
    if (field < 0 || d->nargs == 0 || !(d->args[0].flags & RP_ARG_SELF) ||
        d->nargs > RP_DESC_ARGS_MAX || d->nfields > RP_DESC_FIELDS_MAX)
        return failf(r, "lock.info is not described as (lock) -> token");
    memset(vals, 0, sizeof vals);
    memset(fields, 0, sizeof fields);
    vals[0] = rp_value_handle(h->kind, h->ptr);
    rc = rp_desc_begin(op, d, vals, NULL, &err);
    if (rc == RP_OK)
        rc = rp_client_run(r->client, *op, &err);
    if (rc != RP_OK)
        return failf(r, "lock.info: %s: %s", rp_status_name(err.code), err.message);
    if (rp_op_result(*op, 0, fields) != RP_OK)
        return failf(r, "lock.info: no result");
    *token = fields[field];
    return 0;
}

static int run_redis(runner *r, const cJSON *step)
{
    static const char *const keys[] = { "redis", "server", "key", "expect", NULL };
    const cJSON *expect = get(step, "expect"), *item, *key = get(step, "key");
    const rp_reply *reply = NULL;
    rp_op *op = NULL, *info = NULL;
    arena a = { NULL };
    char what[SHOW_MAX + 32], where[32];
    const char *bad;
    size_t server = 0;
    int rc = 0, mismatch = 0;
    if (unknown_key(step, keys, &bad))
        return failf(r, "a redis step has no key \"%s\"", bad);
    if ((item = get(step, "server")) && server_index(r, item, "redis", &server))
        return -1;
    if (key && !is_bytes(key))
        return failf(r, "a redis step's \"key\" is a byte string");
    snprintf(where, sizeof where, "server %zu", server);
    if ((rc = raw_command(r, &a, get(step, "redis"), key, raw_client(r, server), where, &op,
                          &reply)))
        goto out;
    show_reply(reply, what, sizeof what);
    if (!expect) {
        mismatch = reply->type == RP_REPLY_ERROR;
    } else if (cJSON_GetArraySize(expect) != 1) {
        mismatch = 1;
        snprintf(what, sizeof what, "an expectation with one key");
    } else if ((item = get(expect, "reply"))) {
        mismatch = !reply_equals(&a, reply, item);
    } else if ((item = get(expect, "reply_between"))) {
        int64_t lo, hi;
        mismatch = cJSON_GetArraySize(item) != 2 || get_int(cJSON_GetArrayItem(item, 0), &lo) ||
                   get_int(cJSON_GetArrayItem(item, 1), &hi) ||
                   reply->type != RP_REPLY_INTEGER || reply->integer < lo || reply->integer > hi;
    } else if ((item = get(expect, "reply_error"))) {
        mismatch = !cJSON_IsString(item) || reply->type != RP_REPLY_ERROR ||
                   !strstr(reply->str, item->valuestring);
    } else if ((item = get(expect, "reply_token_of"))) {
        rp_value token;
        if (!cJSON_IsString(item)) {
            rc = failf(r, "reply_token_of names a lock label");
            goto out;
        }
        if ((rc = lock_token(r, item->valuestring, &info, &token)))
            goto out;
        mismatch = token.type != RP_TYPE_BYTES || reply->type != RP_REPLY_STRING ||
                   reply->len != token.len || memcmp(reply->str, token.bytes, token.len) != 0;
        if (mismatch && token.type != RP_TYPE_BYTES)
            snprintf(what, sizeof what, "lock %.40s not held", item->valuestring);
    } else {
        mismatch = 1;
        snprintf(what, sizeof what, "an unknown expectation");
    }
    if (mismatch) {
        char want[SHOW_MAX + 1];
        if (expect)
            show_json(expect, want, sizeof want);
        else
            snprintf(want, sizeof want, "no error");
        rc = failf(r, "raw command to server %zu: expected %s, got %s", server, want, what);
    }
out:
    rp_op_free(info);
    rp_op_free(op);
    arena_free(&a);
    return rc;
}

/* --- stop / cont, sleep ------------------------------------------------------------------ */

/* {"stop": [I, ...]} / {"cont": [I, ...]}: sends sig to those servers of the case (every
 * pid of a server: a cluster's nodes). */
static int run_signal(runner *r, const cJSON *step, const char *key, int sig)
{
    const cJSON *list = get(step, key), *item;
    size_t i, j;
    if (cJSON_GetArraySize(step) != 1 || !cJSON_IsArray(list))
        return failf(r, "a %s step is {\"%s\": [SERVER, ...]}", key, key);
    cJSON_ArrayForEach(item, list) {
        if (server_index(r, item, key, &i))
            return -1;
        if (i >= r->npidservers || r->npids[i] == 0)
            return failf(r, "%s: no pid for server %zu in REDPAT_TEST_PIDS (run under "
                         "tests/harness/harness.py run --servers N)", key, i);
        for (j = 0; j < r->npids[i]; j++)
            if (kill(r->pids[i][j], sig) != 0)
                return failf(r, "%s: signalling server %zu (pid %ld): %s", key, i,
                             (long)r->pids[i][j], strerror(errno));
    }
    return 0;
}

/* SIGCONTs every test server: after each case, whatever happened (a step may have
 * stopped one, and the next case needs them all). */
static void cont_all(runner *r)
{
    size_t i, j;
    for (i = 0; i < r->npidservers; i++)
        for (j = 0; j < r->npids[i]; j++)
            kill(r->pids[i][j], SIGCONT);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One step of any kind (also inside a callback). */
static int run_step(runner *r, const cJSON *step)
{
    static const char *const kinds[] = { "op", "redis", "sleep", "stop", "cont", "messages",
                                         "close", NULL };
    const char *const *k;
    const char *kind = NULL;
    int n = 0;
    if (!cJSON_IsObject(step))
        return failf(r, "a step is an object");
    for (k = kinds; *k; k++) {
        if (get(step, *k)) {
            kind = *k;
            n++;
        }
    }
    if (n != 1)
        return failf(r, "a step has exactly one of \"op\", \"redis\", \"sleep\", \"stop\", "
                     "\"cont\", \"messages\", \"close\"");
    if (!strcmp(kind, "op"))
        return run_op(r, step);
    if (!strcmp(kind, "redis"))
        return run_redis(r, step);
    if (!strcmp(kind, "stop"))
        return run_signal(r, step, kind, SIGSTOP);
    if (!strcmp(kind, "cont"))
        return run_signal(r, step, kind, SIGCONT);
    if (!strcmp(kind, "messages")) {
        arena a = { NULL };
        int rc = run_messages(r, &a, step);
        arena_free(&a);
        return rc;
    }
    if (!strcmp(kind, "close"))
        return run_close(r, step);
    {
        int64_t ms;
        if (cJSON_GetArraySize(step) != 1 || get_int(get(step, "sleep"), &ms) || ms < 0)
            return failf(r, "a sleep step is {\"sleep\": MS} with MS >= 0");
        sleep_ms(ms);
        return 0;
    }
}

/* --- cases ----------------------------------------------------------------------------- */

/* The case's url: the first r->servers test URLs joined with ','. */
static int case_url(runner *r)
{
    size_t i, len = 0;
    for (i = 0; i < r->servers; i++)
        len += strlen(r->urls[i]) + 1;
    if (!(r->url = malloc(len)))
        return failf(r, "out of memory");
    r->url[0] = '\0';
    for (i = 0; i < r->servers; i++) {
        if (i)
            strcat(r->url, ",");
        strcat(r->url, r->urls[i]);
    }
    return 0;
}

/* Opens the case's client and empties each of its servers. */

/* Every case starts from an empty server that accepts writes: a case that failed before
 * its last step may have left maxmemory below the memory in use (tests/matrix/oom.json). */
static const char *const reset_commands[] = {
    "[\"CONFIG\", \"SET\", \"maxmemory\", \"0\"]",
    "[\"FLUSHALL\"]",
};
#define RESET_COMMANDS (sizeof reset_commands / sizeof reset_commands[0])

static int set_up(runner *r, const cJSON *c)
{
    static const char *const keys[] = { "name", "steps", "servers", NULL };
    const cJSON *servers = get(c, "servers");
    const char *bad;
    int64_t n = 1;
    size_t i;
    if (unknown_key(c, keys, &bad))
        return failf(r, "a case has no key \"%s\"", bad);
    if (!cJSON_IsArray(get(c, "steps")))
        return failf(r, "a case has \"steps\": a list");
    if (servers && (get_int(servers, &n) || n < 1 || n > SERVERS_MAX))
        return failf(r, "\"servers\" is an integer 1..%d", SERVERS_MAX);
    if ((size_t)n > r->nurls)
        return failf(r, "the case needs %" PRId64 " servers; the harness started %zu (run "
                     "under tests/harness/harness.py run --servers %d)", n, r->nurls,
                     SERVERS_MAX);
    r->servers = (size_t)n;
    if (case_url(r) || open_client(r, r->url, &r->client))
        return -1;
    for (i = 0; i < r->servers; i++) {
        size_t nodes = r->cluster ? r->nnodes[i] : 1, j, k;
        if (nodes == 0)
            return failf(r, "setting up: REDPAT_TEST_NODES names no node of server %zu", i);
        for (j = 0; j < nodes; j++) {
            rp_client *client;
            char where[SHOW_MAX];
            if (r->cluster) {
                if (!r->node[i][j] && open_client(r, r->nodes[i][j], &r->node[i][j])) {
                    prefix_why(r, "setting up: ");
                    return -1;
                }
                client = r->node[i][j];
                snprintf(where, sizeof where, "server %zu node %.100s", i, r->nodes[i][j]);
            } else {
                client = raw_client(r, i);
                snprintf(where, sizeof where, "server %zu", i);
            }
            for (k = 0; k < RESET_COMMANDS; k++) {
                cJSON *argv = cJSON_Parse(reset_commands[k]);
                const rp_reply *reply;
                rp_op *op = NULL;
                arena a = { NULL };
                int rc = argv ? raw_command(r, &a, argv, NULL, client, where, &op, &reply)
                              : failf(r, "out of memory");
                /* a replica (REDPAT_TEST_NODES may list them after the masters) refuses
                 * FLUSHALL with READONLY: its master's FLUSHALL reaches it */
                if (rc == 0 && reply->type == RP_REPLY_ERROR &&
                    !(r->cluster && strncmp(reply->str, "READONLY", 8) == 0))
                    rc = failf(r, "%s on %s: %.*s", reset_commands[k], where, (int)reply->len,
                               reply->str);
                rp_op_free(op);
                arena_free(&a);
                cJSON_Delete(argv);
                if (rc) {
                    prefix_why(r, "setting up: ");
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* Frees everything the case made (long-lived ops first: they borrow the handles; handles
 * latest first: handles made from a handle go before it) and continues every server. */
static void tear_down(runner *r)
{
    size_t i;
    cont_all(r);
    while (r->nlive > 0)
        drop_live(r, r->nlive - 1);
    while (r->nhandles > 0) {
        handle *h = &r->handles[--r->nhandles];
        rp_handle_free(h->kind, h->ptr);
    }
    for (i = 0; i < SERVERS_MAX; i++) {
        size_t j;
        rp_client_free(r->raw[i]);
        r->raw[i] = NULL;
        for (j = 0; j < NODES_MAX; j++) {
            rp_client_free(r->node[i][j]);
            r->node[i][j] = NULL;
        }
    }
    rp_client_free(r->client);
    r->client = NULL;
    free(r->url);
    r->url = NULL;
    r->servers = 0;
}

static int run_case(runner *r, const cJSON *c)
{
    const cJSON *step;
    int n = 0, rc;
    r->nhandles = 0;
    rc = set_up(r, c);
    if (rc == 0) {
        cJSON_ArrayForEach(step, get(c, "steps")) {
            n++;
            if ((rc = run_step(r, step)) != 0) {
                prefix_why(r, "step %d: ", n);
                break;
            }
        }
    }
    tear_down(r);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *buf;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
        !(buf = malloc((size_t)n + 1))) {
        fclose(f);
        return NULL;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs the cases of one file (those whose name contains filter, if given). */
static void run_file(runner *r, const char *path, const char *filter, int *passed, int *failed)
{
    char *text = slurp(path);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    const cJSON *ns, *c;
    free(text);
    ns = get(doc, "namespace");
    if (!doc || !cJSON_IsString(ns) || !cJSON_IsArray(get(doc, "cases"))) {
        printf("FAIL %s: cannot read or parse (a namespace and cases)\n", path);
        (*failed)++;
        cJSON_Delete(doc);
        return;
    }
    r->ns = ns->valuestring;
    cJSON_ArrayForEach(c, get(doc, "cases")) {
        const cJSON *name = get(c, "name");
        const char *label = cJSON_IsString(name) ? name->valuestring : "(unnamed)";
        if (filter && !strstr(label, filter))
            continue;
        if (cJSON_IsString(name) && run_case(r, c) == 0) {
            (*passed)++;
        } else {
            (*failed)++;
            printf("FAIL %s: %s\n", label, cJSON_IsString(name) ? r->why : "a case needs a name");
        }
        fflush(stdout);
    }
    r->ns = NULL;
    cJSON_Delete(doc);
}

/* Whether p starts a URL ("<scheme>://", scheme as RFC 3986: a letter, then letters,
 * digits, '+', '-', '.'): in a URL list, a ',' before it starts the next URL. */
static int starts_url(const char *p)
{
    if (!isalpha((unsigned char)*p))
        return 0;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return strncmp(p, "://", 3) == 0;
}

/* Splits REDPAT_TEST_URLS (copied into r->env_urls) at each ',' that starts a URL; the
 * other ',' belong to a cluster URL's seed list. */
static void split_urls(runner *r)
{
    char *p;
    r->urls[r->nurls++] = r->env_urls;
    for (p = r->env_urls; *p; p++) {
        if (*p == ',' && starts_url(p + 1)) {
            *p = '\0'; /* past SERVERS_MAX URLs, the rest is cut off */
            if (r->nurls == SERVERS_MAX)
                break;
            r->urls[r->nurls++] = p + 1;
        }
    }
}

/* REDPAT_TEST_PIDS: servers separated by ',', a server's pids (a cluster's nodes) by ' '. */
static int read_pids(runner *r, const char *pids)
{
    const char *p = pids;
    size_t server = 0;
    if (!p || !*p)
        return 0;
    while (*p) {
        char *end;
        long pid;
        while (*p == ' ')
            p++;
        if (*p == ',' || !*p) { /* a server with no pid (or trailing spaces) */
            if (*p == ',' && ++server >= SERVERS_MAX)
                break;
            if (*p)
                p++;
            continue;
        }
        pid = strtol(p, &end, 10);
        if (end == p || pid <= 0 || (*end && *end != ',' && *end != ' ')) {
            fprintf(stderr, "REDPAT_TEST_PIDS: not a list of pids: %s\n", pids);
            return -1;
        }
        if (r->npids[server] == NODES_MAX) {
            fprintf(stderr, "REDPAT_TEST_PIDS: more than %d pids for server %zu\n", NODES_MAX,
                    server);
            return -1;
        }
        r->pids[server][r->npids[server]++] = (pid_t)pid;
        if (server + 1 > r->npidservers)
            r->npidservers = server + 1;
        p = end;
    }
    return 0;
}

/* REDPAT_TEST_NODES (cluster mode): each server's master node URLs, servers by ',', nodes
 * by ' ' (a node URL has no ',' in it). */
static int read_nodes(runner *r, const char *nodes)
{
    char *p, *server, *save = NULL;
    size_t i = 0;
    if (!nodes || !*nodes) {
        fprintf(stderr, "REDPAT_TEST_CLUSTER=1 but REDPAT_TEST_NODES is not set (run under "
                "tests/harness/harness.py run --cluster --servers %d --)\n", SERVERS_MAX);
        return -1;
    }
    if (!(r->env_nodes = strdup(nodes)))
        return -1;
    for (server = strtok_r(r->env_nodes, ",", &save); server && i < SERVERS_MAX;
         server = strtok_r(NULL, ",", &save), i++) {
        char *save2 = NULL;
        for (p = strtok_r(server, " ", &save2); p; p = strtok_r(NULL, " ", &save2)) {
            if (r->nnodes[i] == NODES_MAX) {
                fprintf(stderr, "REDPAT_TEST_NODES: more than %d nodes for server %zu\n",
                        NODES_MAX, i);
                return -1;
            }
            r->nodes[i][r->nnodes[i]++] = p;
        }
    }
    return 0;
}

/* The test servers from the harness's variables: REDPAT_TEST_URLS (else REDPAT_TEST_URL)
 * and REDPAT_TEST_PIDS (optional: without it stop / cont steps fail); in cluster mode
 * (REDPAT_TEST_CLUSTER=1) REDPAT_TEST_NODES too. */
static int read_servers(runner *r)
{
    const char *urls = getenv("REDPAT_TEST_URLS"), *cluster = getenv("REDPAT_TEST_CLUSTER");
    r->cluster = cluster && strcmp(cluster, "1") == 0;
    if (!urls || !*urls)
        urls = getenv("REDPAT_TEST_URL");
    if (!urls || !*urls) {
        fprintf(stderr, "REDPAT_TEST_URLS is not set (run under tests/harness/harness.py run "
                "--servers %d --)\n", SERVERS_MAX);
        return -1;
    }
    if (!(r->env_urls = strdup(urls)))
        return -1;
    split_urls(r);
    if (read_pids(r, getenv("REDPAT_TEST_PIDS")))
        return -1;
    return r->cluster ? read_nodes(r, getenv("REDPAT_TEST_NODES")) : 0;
}

int main(int argc, char **argv)
{
    static runner r;
    struct dirent **files;
    int nfiles, i, passed = 0, failed = 0;
    const char *dir = argc > 1 ? argv[1] : "tests/matrix";
    const char *filter = argc > 2 ? argv[2] : NULL;
    if (read_servers(&r)) {
        free(r.env_urls);
        free(r.env_nodes);
        return 2;
    }
    nfiles = scandir(dir, &files, NULL, by_name);
    if (nfiles < 0) {
        perror(dir);
        free(r.env_urls);
        free(r.env_nodes);
        return 2;
    }
    for (i = 0; i < nfiles; i++) {
        size_t len = strlen(files[i]->d_name);
        if (len >= 5 && strcmp(files[i]->d_name + len - 5, ".json") == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, files[i]->d_name);
            run_file(&r, path, filter, &passed, &failed);
        }
        free(files[i]);
    }
    free(files);
    free(r.env_urls);
    free(r.env_nodes);
    printf("matrix[%s]: %d passed, %d failed, 0 skipped\n", r.cluster ? "c-cluster" : "c",
           passed, failed);
    return failed || passed == 0 ? 1 : 0;
}
