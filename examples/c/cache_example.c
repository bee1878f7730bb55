/* The README's cache example, as a program: cache_example URL
 * Reads a "user row" through a cache: the first read loads it (the loader is the database
 * query), the second is a hit; a write through the cache goes to the database first. */
#include <stdio.h>
#include <string.h>

#include <redpat/redpat.h>

/* The database: one row. */
typedef struct db {
    char row[64];
    int queries;
} db;

/* The loader and the writer: CALLs of the cache ops, run by rp_client_drive's hook. arg says
 * which (RP_CACHE_LOADER_ARG: values[0] is the key; RP_CACHE_WRITER_ARG: the key, then the
 * value). Returning nothing (result left NONE) from the loader means "no such row": the
 * cache keeps a negative entry. */
static void call(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                 rp_value *result)
{
    db *d = ud;
    (void)op;
    if (arg == RP_CACHE_LOADER_ARG) {
        d->queries++;
        *result = rp_value_bytes(d->row, strlen(d->row));
    } else if (arg == RP_CACHE_WRITER_ARG && count == 2) {
        snprintf(d->row, sizeof d->row, "%.*s", (int)values[1].len, values[1].bytes);
    }
}

static int read_user(rp_client *client, rp_cache *cache, db *d, rp_error *err)
{
    rp_drive_hooks hooks = { NULL, call, NULL };
    rp_cache_result r;
    rp_op *op;
    int rc;
    hooks.ud = d;
    if ((rc = rp_cache_load_op(&op, cache, "user:42", 7, NULL, 0, err)) != RP_OK)
        return rc;
    if ((rc = rp_client_drive(client, op, &hooks, err)) == RP_OK &&
        (rc = rp_cache_result_of(op, &r)) == RP_OK)
        printf("user:42 = %.*s (%s)\n", (int)r.value_len, r.value ? r.value : "",
               r.hit ? "cache hit" : r.stored ? "loaded and cached" : "loaded");
    rp_op_free(op);
    return rc;
}

int main(int argc, char **argv)
{
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_cache_options o = RP_CACHE_OPTIONS_INIT;
    rp_drive_hooks hooks = { NULL, call, NULL };
    rp_client *client;
    rp_cache *users;
    rp_op *op;
    rp_error err;
    db d = { "alice", 0 };
    int rc = RP_OK;

    co.url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
    co.key_namespace = "myapp";
    if (rp_client_new(&client, &co, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    o.ttl_ms = 60000;           /* entries live a minute ... */
    o.jitter_ms = 5000;         /* ... plus up to 5 s, so they do not all expire at once */
    o.stampede = RP_CACHE_LOCK; /* on a miss one caller loads, the others wait for it */
    if (rp_cache_new(&users, client, "users", 5, &o, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        rp_client_free(client);
        return 1;
    }
    hooks.ud = &d;
    if ((rc = read_user(client, users, &d, &err)) == RP_OK &&
        (rc = read_user(client, users, &d, &err)) == RP_OK &&
        (rc = rp_cache_write_op(&op, users, "user:42", 7, "alice smith", 11, NULL, &err)) == RP_OK) {
        rc = rp_client_drive(client, op, &hooks, &err); /* the database first, then the cache */
        rp_op_free(op);
    }
    if (rc == RP_OK)
        rc = read_user(client, users, &d, &err);
    if (rc != RP_OK)
        fprintf(stderr, "cache: %s\n", err.message);
    printf("%d database queries\n", d.queries);
    rp_cache_free(users);
    rp_client_free(client);
    return rc == RP_OK && d.queries == 1 && strcmp(d.row, "alice smith") == 0 ? 0 : 1;
}
