/* The C runner of the shared test matrix (tests/matrix/README.md): every case of every
 * *.json file in the given directory, against the server in REDPAT_TEST_URL. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <redpat/redpat.h>

#define MAX_LOCKS 16
#define MAX_ARGS 32

typedef struct bytes {
    char *data;
    size_t len;
} bytes;

typedef struct runner {
    const char *url;
    rp_client *client;
    char labels[MAX_LOCKS][32];
    rp_lock *locks[MAX_LOCKS];
    size_t nlocks;
    char rl_labels[MAX_LOCKS][32];
    rp_ratelimit *limiters[MAX_LOCKS];
    size_t nlimiters;
    char why[512];
} runner;

static int failf(runner *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    return -1;
}

/* A runner-side problem (bad case data), reported through the op's error path. */
static int runner_fail(rp_error *err, const char *msg)
{
    err->code = RP_ESTATE;
    snprintf(err->message, sizeof err->message, "runner: %s", msg);
    return RP_ESTATE;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A matrix byte string: a JSON string, or {"hex": "..."}. Caller frees data. */
static int get_bytes(const cJSON *v, bytes *out)
{
    const cJSON *hex;
    size_t i, n;
    if (cJSON_IsString(v)) {
        out->len = strlen(v->valuestring);
        out->data = malloc(out->len + 1);
        memcpy(out->data, v->valuestring, out->len + 1);
        return 0;
    }
    hex = cJSON_GetObjectItemCaseSensitive(v, "hex");
    if (!cJSON_IsString(hex) || strlen(hex->valuestring) % 2)
        return -1;
    n = strlen(hex->valuestring) / 2;
    out->data = malloc(n + 1);
    for (i = 0; i < n; i++) {
        int h = hexval(hex->valuestring[2 * i]), l = hexval(hex->valuestring[2 * i + 1]);
        if (h < 0 || l < 0) {
            free(out->data);
            return -1;
        }
        out->data[i] = (char)(h * 16 + l);
    }
    out->data[n] = '\0';
    out->len = n;
    return 0;
}

static int64_t get_int(const cJSON *obj, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static int get_bool(const cJSON *obj, const char *name, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static rp_lock *find_lock(runner *r, const cJSON *step)
{
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(step, "lock");
    size_t i;
    if (!cJSON_IsString(label))
        return NULL;
    for (i = 0; i < r->nlocks; i++)
        if (strcmp(r->labels[i], label->valuestring) == 0)
            return r->locks[i];
    return NULL;
}

/* --- results, as name -> JSON value, compared against "expect" ---------------------- */

typedef struct result {
    const char *names[8];
    cJSON *values[8];
    int n;
} result;

static void put(result *res, const char *name, cJSON *value)
{
    res->names[res->n] = name;
    res->values[res->n++] = value;
}

static void result_free(result *res)
{
    int i;
    for (i = 0; i < res->n; i++)
        cJSON_Delete(res->values[i]);
}

static int check_op(runner *r, const cJSON *expect, int rc, const rp_error *err, result *res)
{
    const cJSON *want_err = cJSON_GetObjectItemCaseSensitive(expect, "error");
    const cJSON *field;
    if (cJSON_IsString(want_err)) {
        const cJSON *contains = cJSON_GetObjectItemCaseSensitive(expect, "message_contains");
        if (rc == RP_OK)
            return failf(r, "expected error %s, the operation succeeded", want_err->valuestring);
        if (strcmp(rp_status_name(rc), want_err->valuestring) != 0)
            return failf(r, "expected error %s, got %s (%s)", want_err->valuestring,
                         rp_status_name(rc), err->message);
        if (cJSON_IsString(contains) && !strstr(err->message, contains->valuestring))
            return failf(r, "error message \"%s\" does not contain \"%s\"", err->message,
                         contains->valuestring);
        return 0;
    }
    if (rc != RP_OK)
        return failf(r, "failed: %s: %s", rp_status_name(rc), err->message);
    cJSON_ArrayForEach(field, expect) {
        int i, found = 0;
        for (i = 0; i < res->n; i++) {
            if (strcmp(res->names[i], field->string) == 0) {
                found = 1;
                const cJSON *between = cJSON_GetObjectItemCaseSensitive(field, "between");
                if (cJSON_IsArray(between)) {
                    double v = res->values[i]->valuedouble;
                    if (!cJSON_IsNumber(res->values[i]) ||
                        v < cJSON_GetArrayItem(between, 0)->valuedouble ||
                        v > cJSON_GetArrayItem(between, 1)->valuedouble)
                        return failf(r, "%s: expected between %g and %g, got %g", field->string,
                                     cJSON_GetArrayItem(between, 0)->valuedouble,
                                     cJSON_GetArrayItem(between, 1)->valuedouble, v);
                    continue;
                }
                if (!cJSON_Compare(res->values[i], field, 1)) {
                    char *got = cJSON_PrintUnformatted(res->values[i]);
                    char *want = cJSON_PrintUnformatted(field);
                    failf(r, "%s: expected %s, got %s", field->string, want, got);
                    free(got);
                    free(want);
                    return -1;
                }
            }
        }
        if (!found)
            return failf(r, "operation has no result field \"%s\"", field->string);
    }
    return 0;
}

static rp_ratelimit *find_limiter(runner *r, const cJSON *label)
{
    size_t i;
    if (!cJSON_IsString(label))
        return NULL;
    for (i = 0; i < r->nlimiters; i++)
        if (strcmp(r->rl_labels[i], label->valuestring) == 0)
            return r->limiters[i];
    return NULL;
}

static void put_decision(result *res, const rp_ratelimit_decision *d, int multi)
{
    put(res, "allowed", cJSON_CreateBool(d->allowed));
    put(res, "limit", cJSON_CreateNumber((double)d->limit));
    put(res, "remaining", cJSON_CreateNumber((double)d->remaining));
    put(res, "retry_after", cJSON_CreateNumber((double)d->retry_after_ms));
    put(res, "reset_after", cJSON_CreateNumber((double)d->reset_after_ms));
    put(res, "degraded", cJSON_CreateBool(d->degraded));
    if (multi)
        put(res, "refused_by", cJSON_CreateNumber(d->refused_by));
}

/* Returns the operation's status; fills res on success. */
static int run_ratelimit(runner *r, const char *op, const cJSON *step, const cJSON *args,
                         result *res, rp_error *err)
{
    rp_ratelimit_decision d;
    bytes subject = { NULL, 0 };
    int rc;
    if (strcmp(op, "new") == 0) {
        rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
        const cJSON *as = cJSON_GetObjectItemCaseSensitive(step, "as");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(args, "name");
        rp_ratelimit *rl = NULL;
        if (!cJSON_IsString(as) || !cJSON_IsString(name) || r->nlimiters == MAX_LOCKS)
            return runner_fail(err, "ratelimit.new needs \"as\" and a name");
        const cJSON *algorithm = cJSON_GetObjectItemCaseSensitive(args, "algorithm");
        const cJSON *on_error = cJSON_GetObjectItemCaseSensitive(args, "on_error");
        o.limit = get_int(args, "limit", 0);
        o.window_ms = get_int(args, "window", 0);
        o.burst = get_int(args, "burst", 0);
        if (cJSON_IsString(algorithm) &&
            (rc = rp_ratelimit_algorithm_parse(algorithm->valuestring, strlen(algorithm->valuestring),
                                               &o.algorithm, err)))
            return rc;
        if (cJSON_IsString(on_error) &&
            (rc = rp_ratelimit_on_error_parse(on_error->valuestring, strlen(on_error->valuestring),
                                              &o.on_error, err)))
            return rc;
        rc = rp_ratelimit_new(&rl, r->client, name->valuestring, &o, err);
        if (rc == RP_OK) {
            snprintf(r->rl_labels[r->nlimiters], sizeof r->rl_labels[0], "%s", as->valuestring);
            r->limiters[r->nlimiters++] = rl;
        }
        return rc;
    }
    if (strcmp(op, "multi") == 0) {
        rp_ratelimit *list[8];
        const cJSON *label;
        size_t n = 0;
        cJSON_ArrayForEach(label, cJSON_GetObjectItemCaseSensitive(step, "limiters")) {
            if (n == 8 || !(list[n++] = find_limiter(r, label)))
                return runner_fail(err, "ratelimit.multi: unknown limiter label");
        }
        if (get_bytes(cJSON_GetObjectItemCaseSensitive(args, "subject"), &subject))
            return runner_fail(err, "ratelimit.multi needs a subject");
        rc = rp_ratelimit_multi(list, n, subject.data, subject.len, get_int(args, "cost", 1), &d, err);
        free(subject.data);
        if (rc == RP_OK)
            put_decision(res, &d, 1);
        return rc;
    }
    {
        rp_ratelimit *rl = find_limiter(r, cJSON_GetObjectItemCaseSensitive(step, "limiter"));
        if (!rl)
            return runner_fail(err, "unknown limiter label");
        if (strcmp(op, "batch") == 0) {
            const cJSON *subjects = cJSON_GetObjectItemCaseSensitive(args, "subjects");
            const cJSON *costs = cJSON_GetObjectItemCaseSensitive(args, "costs"), *item;
            size_t n = (size_t)cJSON_GetArraySize(subjects), i = 0;
            bytes *b = calloc(n ? n : 1, sizeof *b);
            const void **ptrs = calloc(n ? n : 1, sizeof *ptrs);
            size_t *lens = calloc(n ? n : 1, sizeof *lens);
            int64_t *cs = calloc(n ? n : 1, sizeof *cs);
            rp_op *bop = NULL;
            cJSON_ArrayForEach(item, subjects) {
                get_bytes(item, &b[i]);
                ptrs[i] = b[i].data;
                lens[i] = b[i].len;
                cs[i] = costs ? (int64_t)cJSON_GetArrayItem(costs, (int)i)->valuedouble : 1;
                i++;
            }
            rc = rp_ratelimit_batch_op(&bop, rl, n, ptrs, lens, cs, err);
            if (rc == RP_OK)
                rc = rp_client_run(r->client, bop, err);
            if (rc == RP_OK) {
                cJSON *allowed = cJSON_CreateArray(), *remaining = cJSON_CreateArray();
                for (i = 0; i < n; i++) {
                    rp_ratelimit_batch_result(bop, i, &d);
                    cJSON_AddItemToArray(allowed, cJSON_CreateBool(d.allowed));
                    cJSON_AddItemToArray(remaining, cJSON_CreateNumber((double)d.remaining));
                }
                put(res, "allowed", allowed);
                put(res, "remaining", remaining);
            }
            rp_op_free(bop);
            for (i = 0; i < n; i++)
                free(b[i].data);
            free(b);
            free(ptrs);
            free(lens);
            free(cs);
            return rc;
        }
        if (get_bytes(cJSON_GetObjectItemCaseSensitive(args, "subject"), &subject))
            return runner_fail(err, "needs a subject");
        if (strcmp(op, "check") == 0) {
            rc = rp_ratelimit_check(rl, subject.data, subject.len, get_int(args, "cost", 1), &d, err);
            if (rc == RP_OK)
                put_decision(res, &d, 0);
        } else if (strcmp(op, "reset") == 0) {
            rc = rp_ratelimit_reset(rl, subject.data, subject.len, err);
            if (rc == RP_OK)
                put(res, "ok", cJSON_CreateTrue());
        } else {
            rc = runner_fail(err, "the C runner does not know this ratelimit op");
        }
        free(subject.data);
        return rc;
    }
}

static int run_op(runner *r, const cJSON *step)
{
    const char *op = cJSON_GetObjectItemCaseSensitive(step, "op")->valuestring;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(step, "args");
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(step, "expect");
    rp_error err;
    result res = { { 0 }, { 0 }, 0 };
    rp_lock *lock = NULL;
    int rc, out;
    rp_error_clear(&err);

    if (strcmp(op, "lock.new") == 0) {
        rp_lock_options o = RP_LOCK_OPTIONS_INIT;
        const cJSON *as = cJSON_GetObjectItemCaseSensitive(step, "as");
        bytes name = { NULL, 0 };
        if (!cJSON_IsString(as) || r->nlocks == MAX_LOCKS)
            return failf(r, "lock.new needs \"as\"");
        if (get_bytes(cJSON_GetObjectItemCaseSensitive(args, "name"), &name))
            return failf(r, "lock.new needs a name");
        o.ttl_ms = get_int(args, "ttl", o.ttl_ms);
        o.fenced = get_bool(args, "fenced", 0);
        rc = rp_lock_new(&lock, r->client, name.data, name.len, &o, &err);
        free(name.data);
        if (rc == RP_OK) {
            snprintf(r->labels[r->nlocks], sizeof r->labels[0], "%s", as->valuestring);
            r->locks[r->nlocks++] = lock;
        }
    } else if (strcmp(op, "fence.check") == 0) {
        rp_fence_result fr;
        bytes resource = { NULL, 0 };
        if (get_bytes(cJSON_GetObjectItemCaseSensitive(args, "resource"), &resource))
            return failf(r, "fence.check needs a resource");
        rc = rp_fence_check(r->client, resource.data, resource.len, get_int(args, "token", 0),
                            &fr, &err);
        free(resource.data);
        if (rc == RP_OK) {
            put(&res, "accepted", cJSON_CreateBool(fr.accepted));
            put(&res, "highest", cJSON_CreateNumber((double)fr.highest));
        }
    } else if (strncmp(op, "ratelimit.", 10) == 0) {
        rc = run_ratelimit(r, op + 10, step, args, &res, &err);
    } else {
        if (!(lock = find_lock(r, step)))
            return failf(r, "%s: unknown lock label", op);
        if (strcmp(op, "lock.acquire") == 0) {
            rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
            rp_lock_acquisition got;
            bytes token = { NULL, 0 };
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(args, "token");
            o.wait_ms = get_int(args, "wait", 0);
            o.retry_min_ms = get_int(args, "retry_min", o.retry_min_ms);
            o.retry_max_ms = get_int(args, "retry_max", o.retry_max_ms);
            if (t && get_bytes(t, &token))
                return failf(r, "bad token");
            o.token = token.data;
            o.token_len = token.len;
            rc = rp_lock_acquire(lock, &o, &got, &err);
            free(token.data);
            if (rc == RP_OK) {
                put(&res, "acquired", cJSON_CreateBool(got.acquired));
                put(&res, "fence", cJSON_CreateNumber((double)got.fence));
            }
        } else if (strcmp(op, "lock.release") == 0) {
            rc = rp_lock_release(lock, &err);
            if (rc == RP_OK)
                put(&res, "ok", cJSON_CreateTrue());
        } else if (strcmp(op, "lock.extend") == 0) {
            rc = rp_lock_extend(lock, get_int(args, "ms", 0), get_bool(args, "replace", 0), &err);
            if (rc == RP_OK)
                put(&res, "ok", cJSON_CreateTrue());
        } else if (strcmp(op, "lock.locked") == 0 || strcmp(op, "lock.owned") == 0) {
            rc = op[5] == 'l' ? rp_lock_locked(lock, &out, &err) : rp_lock_owned(lock, &out, &err);
            if (rc == RP_OK)
                put(&res, "value", cJSON_CreateBool(out));
        } else {
            return failf(r, "the C runner does not know op \"%s\"", op);
        }
    }
    rc = check_op(r, expect, rc, &err, &res);
    result_free(&res);
    return rc;
}

/* --- raw commands ---------------------------------------------------------------------- */

static int reply_equals(const rp_reply *got, const cJSON *want)
{
    if (cJSON_IsNull(want))
        return got->type == RP_REPLY_NIL;
    if (cJSON_IsNumber(want))
        return got->type == RP_REPLY_INTEGER && got->integer == (long long)want->valuedouble;
    if (cJSON_IsArray(want)) {
        size_t i = 0;
        const cJSON *item;
        if (got->type != RP_REPLY_ARRAY || got->elements != (size_t)cJSON_GetArraySize(want))
            return 0;
        cJSON_ArrayForEach(item, want) {
            if (!reply_equals(got->element[i++], item))
                return 0;
        }
        return 1;
    }
    if (cJSON_IsString(want) || cJSON_IsObject(want)) {
        bytes b;
        int same;
        if (get_bytes(want, &b))
            return 0;
        same = (got->type == RP_REPLY_STRING || got->type == RP_REPLY_STATUS) &&
               got->len == b.len && memcmp(got->str, b.data, b.len) == 0;
        free(b.data);
        return same;
    }
    return 0;
}

static void describe(const rp_reply *r, char *out, size_t cap)
{
    switch (r->type) {
    case RP_REPLY_INTEGER: snprintf(out, cap, "integer %lld", r->integer); break;
    case RP_REPLY_NIL: snprintf(out, cap, "nil"); break;
    case RP_REPLY_ARRAY: snprintf(out, cap, "array of %zu", r->elements); break;
    case RP_REPLY_ERROR: snprintf(out, cap, "error \"%.*s\"", (int)r->len, r->str); break;
    default: snprintf(out, cap, "string \"%.*s\"", (int)(r->len > 80 ? 80 : r->len), r->str);
    }
}

static int run_redis(runner *r, const cJSON *step)
{
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(step, "redis"), *item;
    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(step, "expect");
    bytes args[MAX_ARGS];
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int argc = 0, i, rc, bad = 0;
    rp_reply *reply = NULL;
    rp_error err;
    char what[160];
    cJSON_ArrayForEach(item, cmd) {
        if (argc == MAX_ARGS || get_bytes(item, &args[argc]))
            return failf(r, "bad raw command argument");
        argv[argc] = args[argc].data;
        lens[argc] = args[argc].len;
        argc++;
    }
    rc = rp_client_command(r->client, argc, argv, lens, &reply, &err);
    for (i = 0; i < argc; i++)
        free(args[i].data);
    if (rc != RP_OK)
        return failf(r, "raw command failed: %s", err.message);
    describe(reply, what, sizeof what);
    if (!expect) {
        bad = reply->type == RP_REPLY_ERROR;
    } else if ((item = cJSON_GetObjectItemCaseSensitive(expect, "reply"))) {
        bad = !reply_equals(reply, item);
    } else if ((item = cJSON_GetObjectItemCaseSensitive(expect, "reply_between"))) {
        long long lo = (long long)cJSON_GetArrayItem(item, 0)->valuedouble;
        long long hi = (long long)cJSON_GetArrayItem(item, 1)->valuedouble;
        bad = reply->type != RP_REPLY_INTEGER || reply->integer < lo || reply->integer > hi;
    } else if ((item = cJSON_GetObjectItemCaseSensitive(expect, "reply_error"))) {
        bad = reply->type != RP_REPLY_ERROR || !strstr(reply->str, item->valuestring);
    } else if ((item = cJSON_GetObjectItemCaseSensitive(expect, "reply_token_of"))) {
        const cJSON *label = item;
        size_t j, tlen = 0;
        const char *token = NULL;
        for (j = 0; j < r->nlocks; j++)
            if (strcmp(r->labels[j], label->valuestring) == 0)
                token = rp_lock_token(r->locks[j], &tlen);
        bad = !token || reply->type != RP_REPLY_STRING || reply->len != tlen ||
              memcmp(reply->str, token, tlen) != 0;
    } else {
        bad = 1;
        snprintf(what, sizeof what, "an unknown expectation");
    }
    rp_reply_free(reply);
    if (bad) {
        char *want = expect ? cJSON_PrintUnformatted(expect) : NULL;
        failf(r, "raw command: expected %s, got %s", want ? want : "no error", what);
        free(want);
        return -1;
    }
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int run_case(runner *r, const char *ns, const cJSON *c)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    const cJSON *step;
    const char *flush[] = { "FLUSHALL" };
    rp_reply *reply = NULL;
    rp_error err;
    int n = 0, rc = 0;
    size_t i;
    o.url = r->url;
    o.key_namespace = ns;
    r->nlocks = 0;
    r->nlimiters = 0;
    if (rp_client_new(&r->client, &o, &err) != RP_OK)
        return failf(r, "client: %s", err.message);
    if (rp_client_command(r->client, 1, flush, NULL, &reply, &err) != RP_OK) {
        rc = failf(r, "FLUSHALL: %s", err.message);
        goto out;
    }
    rp_reply_free(reply);
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(c, "steps")) {
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(step, "sleep");
        n++;
        if (cJSON_GetObjectItemCaseSensitive(step, "op"))
            rc = run_op(r, step);
        else if (cJSON_GetObjectItemCaseSensitive(step, "redis"))
            rc = run_redis(r, step);
        else if (cJSON_IsNumber(sl))
            sleep_ms((int64_t)sl->valuedouble);
        else
            rc = failf(r, "unknown step kind");
        if (rc) {
            char why[sizeof r->why];
            memcpy(why, r->why, sizeof why);
            snprintf(r->why, sizeof r->why, "step %d: %.480s", n, why);
            break;
        }
    }
out:
    for (i = 0; i < r->nlocks; i++)
        rp_lock_free(r->locks[i]);
    r->nlocks = 0;
    for (i = 0; i < r->nlimiters; i++)
        rp_ratelimit_free(r->limiters[i]);
    r->nlimiters = 0;
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
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
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

int main(int argc, char **argv)
{
    runner r;
    struct dirent **files;
    int nfiles, i, passed = 0, failed = 0;
    const char *dir = argc > 1 ? argv[1] : "tests/matrix";
    const char *filter = argc > 2 ? argv[2] : NULL;
    memset(&r, 0, sizeof r);
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
        char path[4096];
        char *text;
        cJSON *doc, *c;
        size_t len = strlen(files[i]->d_name);
        if (len < 5 || strcmp(files[i]->d_name + len - 5, ".json") != 0) {
            free(files[i]);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, files[i]->d_name);
        free(files[i]);
        text = slurp(path);
        doc = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (!doc) {
            fprintf(stderr, "FAIL %s: cannot read or parse\n", path);
            failed++;
            continue;
        }
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "cases")) {
            const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
            if (filter && !strstr(name, filter))
                continue;
            if (run_case(&r, cJSON_GetObjectItemCaseSensitive(doc, "namespace")->valuestring, c) == 0) {
                passed++;
            } else {
                failed++;
                printf("FAIL %s: %s\n", name, r.why);
            }
        }
        cJSON_Delete(doc);
    }
    free(files);
    printf("matrix[c]: %d passed, %d failed, 0 skipped\n", passed, failed);
    return failed || passed == 0 ? 1 : 0;
}
