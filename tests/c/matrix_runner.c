/* The C runner of the shared test matrix (tests/matrix/README.md): every case of every
 * *.json file in the given directory, against the server in REDPAT_TEST_URL.
 *
 * It is generic: an op step is performed by name through the core's descriptor table
 * (redpat/describe.h) with one marshaller (JSON -> rp_value by the descriptor's argument
 * types, rp_value -> comparison by its field types). It knows no pattern: a new op needs
 * cases, not runner code. Raw `redis` steps and FLUSHALL go through the generic
 * "client.command" op, and `reply_token_of` reads a lock's token through "lock.info". */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redpat/redpat.h>

#define MAX_HANDLES 64   /* handles one case may make (a multi past its maximum needs 9+) */
#define LABEL_MAX 32     /* bytes in a handle label, NUL included */
#define WHY_MAX 1024     /* a failure's explanation */
#define SHOW_MAX 200     /* bytes of a value shown in a failure */
#define JSON_INT_MAX 9007199254740992.0 /* 2^53: JSON integers beyond it are not exact */

typedef struct handle {
    char label[LABEL_MAX]; /* "" for a handle made without "as" */
    rp_kind kind;
    void *ptr;
} handle;

typedef struct runner {
    const char *url;
    rp_client *client; /* the case's client */
    handle handles[MAX_HANDLES];
    size_t nhandles;
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

/* 1 if v is a matrix byte string: a JSON string, or {"hex": "..."}. */
static int is_bytes(const cJSON *v)
{
    return cJSON_IsString(v) || (cJSON_IsObject(v) && cJSON_IsString(get(v, "hex")) &&
                                 cJSON_GetArraySize(v) == 1);
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

/* Fills vals[0..d->nargs) from a step: handle arguments from its top level by label (a
 * client handle left out is the case's client), the others from its "args". */
static int step_args(runner *r, arena *a, const rp_op_desc *d, const cJSON *step,
                     rp_value *vals)
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
    }
    cJSON_ArrayForEach(item, step) {
        int k = rp_desc_arg_index(d, item->string);
        if (strcmp(item->string, "op") && strcmp(item->string, "args") &&
            strcmp(item->string, "expect") && strcmp(item->string, "as") &&
            (k < 0 || !is_handle_arg(&d->args[k])))
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
                       const rp_error *err)
{
    const cJSON *want = get(expect, "error"), *contains = get(expect, "message_contains");
    const cJSON *names = get(expect, "names_arg"), *item;
    cJSON_ArrayForEach(item, expect) {
        if (strcmp(item->string, "error") && strcmp(item->string, "message_contains") &&
            strcmp(item->string, "names_arg"))
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

/* The expectation of an op step (or of a constructor when op is NULL). */
static int check_op(runner *r, arena *a, const rp_op_desc *d, const cJSON *expect, int rc,
                    const rp_error *err, const rp_op *op)
{
    rp_value fields[RP_DESC_FIELDS_MAX];
    const cJSON *field;
    size_t n, rec;
    if (expect && !cJSON_IsObject(expect))
        return failf(r, "\"expect\" must be an object");
    if (get(expect, "error"))
        return check_error(r, d, expect, rc, err);
    if (rc != RP_OK)
        return failf(r, "failed: %s: %s", rp_status_name(rc), err->message);
    if (cJSON_GetArraySize(expect) == 0)
        return 0;
    if (d->makes != RP_KIND_NONE || d->shape == RP_RESULT_NONE || !op)
        return failf(r, "%s has no result to expect fields of", d->name);
    if (d->nfields > RP_DESC_FIELDS_MAX)
        return failf(r, "%s has more fields than RP_DESC_FIELDS_MAX", d->name);
    n = rp_op_result_count(op);
    if (d->shape == RP_RESULT_RECORD && n != 1)
        return failf(r, "%s: a record result has %zu records", d->name, n);
    cJSON_ArrayForEach(field, expect) {
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
            size_t k = (size_t)rp_desc_field_index(d, field->string);
            const cJSON *want = d->shape == RP_RESULT_LIST ? cJSON_GetArrayItem(field, (int)rec)
                                                            : field;
            if (check_field(r, a, d, &d->fields[k], &fields[k], want, rec))
                return -1;
        }
    }
    return 0;
}

/* --- running ops ------------------------------------------------------------------------ */

/* Begins d from vals and drives it to the end on the case's connection. *op is the op
 * (freed by the caller, also on failure). */
static int run_desc(runner *r, const rp_op_desc *d, const rp_value *vals, rp_op **op,
                    rp_error *err)
{
    int rc;
    *op = NULL;
    rc = rp_desc_begin(op, d, vals, NULL, err);
    if (rc == RP_OK)
        rc = rp_client_run(r->client, *op, err);
    return rc;
}

static const rp_op_desc *need_desc(runner *r, const char *name)
{
    const rp_op_desc *d = rp_desc_find(name, strlen(name));
    if (!d)
        failf(r, "the core describes no op \"%s\"", name);
    return d;
}

static int run_op(runner *r, const cJSON *step)
{
    const cJSON *name = get(step, "op"), *as = get(step, "as");
    const cJSON *expect = get(step, "expect");
    rp_value vals[RP_DESC_ARGS_MAX];
    const rp_op_desc *d;
    arena a = { NULL };
    rp_error err;
    int rc;
    rp_error_clear(&err);
    if (!cJSON_IsString(name))
        return failf(r, "\"op\" must be a string");
    if (!(d = need_desc(r, name->valuestring)))
        return -1;
    if (as && (!cJSON_IsString(as) || d->makes == RP_KIND_NONE))
        return failf(r, "\"as\" labels the handle a constructor makes");
    if (step_args(r, &a, d, step, vals)) {
        arena_free(&a);
        return -1;
    }
    if (d->makes != RP_KIND_NONE) {
        void *made = NULL;
        rc = rp_desc_make(&made, d, vals, NULL, &err);
        if (rc == RP_OK && keep_handle(r, as ? as->valuestring : "", d->makes, made))
            rc = -1;
        else
            rc = check_op(r, &a, d, expect, rc, &err, NULL);
    } else {
        rp_op *op;
        rc = run_desc(r, d, vals, &op, &err);
        rc = check_op(r, &a, d, expect, rc, &err, op);
        rp_op_free(op);
    }
    arena_free(&a);
    return rc;
}

/* --- raw commands, through the generic "client.command" op ---------------------------- */

/* Runs argv (a JSON list of byte strings) on the case's client; *reply borrows from *op. */
static int raw_command(runner *r, arena *a, const cJSON *argv, rp_op **op, const rp_reply **reply)
{
    const rp_op_desc *d = need_desc(r, "client.command");
    rp_value vals[RP_DESC_ARGS_MAX], fields[RP_DESC_FIELDS_MAX];
    const cJSON *item;
    rp_error err;
    int self, arg, field;
    *op = NULL;
    if (!d)
        return -1;
    self = rp_desc_arg_index(d, "client");
    arg = rp_desc_arg_index(d, "argv");
    field = rp_desc_field_index(d, "reply");
    if (self < 0 || arg < 0 || field < 0 || d->nargs > RP_DESC_ARGS_MAX ||
        d->nfields > RP_DESC_FIELDS_MAX)
        return failf(r, "client.command is not described as (client, argv) -> reply");
    if (!cJSON_IsArray(argv))
        return failf(r, "\"redis\" is a list of byte strings");
    cJSON_ArrayForEach(item, argv) {
        if (!is_bytes(item))
            return failf(r, "\"redis\" is a list of byte strings");
    }
    memset(vals, 0, sizeof vals);
    memset(fields, 0, sizeof fields);
    vals[self] = rp_value_handle(RP_KIND_CLIENT, r->client);
    if (json_value(r, a, "argv", argv, RP_TYPE_LIST, RP_TYPE_BYTES, &vals[arg]))
        return -1;
    if (run_desc(r, d, vals, op, &err) != RP_OK)
        return failf(r, "raw command failed: %s: %s", rp_status_name(err.code), err.message);
    if (rp_op_result(*op, 0, fields) != RP_OK || fields[field].type != RP_TYPE_REPLY ||
        !fields[field].reply)
        return failf(r, "client.command gave no reply");
    *reply = fields[field].reply;
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
    int field;
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
    if (run_desc(r, d, vals, op, &err) != RP_OK)
        return failf(r, "lock.info: %s: %s", rp_status_name(err.code), err.message);
    if (rp_op_result(*op, 0, fields) != RP_OK)
        return failf(r, "lock.info: no result");
    *token = fields[field];
    return 0;
}

static int run_redis(runner *r, const cJSON *step)
{
    const cJSON *expect = get(step, "expect"), *item;
    const rp_reply *reply = NULL;
    rp_op *op = NULL, *info = NULL;
    arena a = { NULL };
    char what[SHOW_MAX + 32];
    int bad = 0, rc = 0;
    cJSON_ArrayForEach(item, step) {
        if (strcmp(item->string, "redis") && strcmp(item->string, "expect")) {
            rc = failf(r, "a redis step has no key \"%s\"", item->string);
            goto out;
        }
    }
    if ((rc = raw_command(r, &a, get(step, "redis"), &op, &reply)))
        goto out;
    show_reply(reply, what, sizeof what);
    if (!expect) {
        bad = reply->type == RP_REPLY_ERROR;
    } else if (cJSON_GetArraySize(expect) != 1) {
        bad = 1;
        snprintf(what, sizeof what, "an expectation with one key");
    } else if ((item = get(expect, "reply"))) {
        bad = !reply_equals(&a, reply, item);
    } else if ((item = get(expect, "reply_between"))) {
        int64_t lo, hi;
        bad = cJSON_GetArraySize(item) != 2 || get_int(cJSON_GetArrayItem(item, 0), &lo) ||
              get_int(cJSON_GetArrayItem(item, 1), &hi) || reply->type != RP_REPLY_INTEGER ||
              reply->integer < lo || reply->integer > hi;
    } else if ((item = get(expect, "reply_error"))) {
        bad = !cJSON_IsString(item) || reply->type != RP_REPLY_ERROR ||
              !strstr(reply->str, item->valuestring);
    } else if ((item = get(expect, "reply_token_of"))) {
        rp_value token;
        if (!cJSON_IsString(item)) {
            rc = failf(r, "reply_token_of names a lock label");
            goto out;
        }
        if ((rc = lock_token(r, item->valuestring, &info, &token)))
            goto out;
        bad = token.type != RP_TYPE_BYTES || reply->type != RP_REPLY_STRING ||
              reply->len != token.len || memcmp(reply->str, token.bytes, token.len) != 0;
        if (bad && token.type != RP_TYPE_BYTES)
            snprintf(what, sizeof what, "lock %.40s not held", item->valuestring);
    } else {
        bad = 1;
        snprintf(what, sizeof what, "an unknown expectation");
    }
    if (bad) {
        char want[SHOW_MAX + 1];
        if (expect)
            show_json(expect, want, sizeof want);
        else
            snprintf(want, sizeof want, "no error");
        rc = failf(r, "raw command: expected %s, got %s", want, what);
    }
out:
    rp_op_free(info);
    rp_op_free(op);
    arena_free(&a);
    return rc;
}

/* --- cases ----------------------------------------------------------------------------- */

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* The case's client, made through the generic "client.new". */
static int open_client(runner *r, const char *ns)
{
    const rp_op_desc *d = need_desc(r, "client.new");
    rp_value vals[RP_DESC_ARGS_MAX];
    rp_error err;
    void *made = NULL;
    int url, nsi;
    if (!d)
        return -1;
    url = rp_desc_arg_index(d, "url");
    nsi = rp_desc_arg_index(d, "namespace");
    if (url < 0 || nsi < 0 || d->nargs > RP_DESC_ARGS_MAX)
        return failf(r, "client.new is not described with url and namespace");
    memset(vals, 0, sizeof vals);
    vals[url] = rp_value_bytes(r->url, strlen(r->url));
    vals[nsi] = rp_value_bytes(ns, strlen(ns));
    if (rp_desc_make(&made, d, vals, NULL, &err) != RP_OK)
        return failf(r, "client: %s", err.message);
    r->client = made;
    return 0;
}

static int run_case(runner *r, const char *ns, const cJSON *c)
{
    static const char flush[] = "[\"FLUSHALL\"]";
    const cJSON *step, *steps;
    int n = 0, rc;
    r->nhandles = 0;
    if ((rc = open_client(r, ns)))
        return rc;
    {
        cJSON *argv = cJSON_Parse(flush);
        cJSON *s = cJSON_CreateObject();
        if (!argv || !s) {
            cJSON_Delete(argv);
            cJSON_Delete(s);
            rc = failf(r, "out of memory");
        } else {
            cJSON_AddItemToObject(s, "redis", argv);
            rc = run_redis(r, s);
            cJSON_Delete(s);
        }
    }
    steps = rc ? NULL : get(c, "steps");
    cJSON_ArrayForEach(step, steps) {
        const cJSON *sl = get(step, "sleep");
        int64_t ms;
        n++;
        if (get(step, "op"))
            rc = run_op(r, step);
        else if (get(step, "redis"))
            rc = run_redis(r, step);
        else if (!sl)
            rc = failf(r, "a step has one of \"op\", \"redis\", \"sleep\"");
        else if (cJSON_GetArraySize(step) == 1 && get_int(sl, &ms) == 0 && ms >= 0)
            sleep_ms(ms);
        else
            rc = failf(r, "a sleep step is {\"sleep\": MS} with MS >= 0");
        if (rc) {
            char why[WHY_MAX - 32]; /* room for the "step N: " prefix */
            memcpy(why, r->why, sizeof why - 1); /* truncates a long reason */
            why[sizeof why - 1] = '\0';
            snprintf(r->why, sizeof r->why, "step %d: %s", n, why);
            break;
        }
    }
    while (r->nhandles > 0) { /* latest first: handles made from a handle go before it */
        handle *h = &r->handles[--r->nhandles];
        rp_handle_free(h->kind, h->ptr);
    }
    rp_client_free(r->client);
    r->client = NULL;
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
    cJSON_ArrayForEach(c, get(doc, "cases")) {
        const cJSON *name = get(c, "name");
        const char *label = cJSON_IsString(name) ? name->valuestring : "(unnamed)";
        if (filter && !strstr(label, filter))
            continue;
        if (cJSON_IsString(name) && run_case(r, ns->valuestring, c) == 0) {
            (*passed)++;
        } else {
            (*failed)++;
            printf("FAIL %s: %s\n", label, cJSON_IsString(name) ? r->why : "a case needs a name");
        }
    }
    cJSON_Delete(doc);
}

int main(int argc, char **argv)
{
    static runner r;
    struct dirent **files;
    int nfiles, i, passed = 0, failed = 0;
    const char *dir = argc > 1 ? argv[1] : "tests/matrix";
    const char *filter = argc > 2 ? argv[2] : NULL;
    r.url = getenv("REDPAT_TEST_URL");
    if (!r.url) {
        fprintf(stderr, "REDPAT_TEST_URL is not set (run under tests/harness/harness.py run --)\n");
        return 2;
    }
    nfiles = scandir(dir, &files, NULL, by_name);
    if (nfiles < 0) {
        perror(dir);
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
    printf("matrix[c]: %d passed, %d failed, 0 skipped\n", passed, failed);
    return failed || passed == 0 ? 1 : 0;
}
