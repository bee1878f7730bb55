/* The README's "Any op by name" example as a program: lists the op table, then takes and
 * releases a lock through the descriptors alone (what the bindings and matrix runners do).
 * Usage: describe_example [redis://host:port/db] */
#include <stdio.h>
#include <string.h>

#include <redpat/redpat.h>

/* Begins op `name` with args, runs it over client and prints its result fields. */
static int run(rp_client *client, const char *name, const rp_value *args)
{
    const rp_op_desc *d = rp_desc_find(name, strlen(name));
    rp_value fields[RP_DESC_FIELDS_MAX];
    rp_op *op = NULL;
    rp_error err;
    size_t i;
    int rc = rp_desc_begin(&op, d, args, NULL, &err);
    if (rc == RP_OK)
        rc = rp_client_run(client, op, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "%s: %s (%s)\n", name, err.message, rp_status_name(rc));
        rp_op_free(op);
        return rc;
    }
    printf("%s:", name);
    if (rp_op_result_count(op) == 1 && rp_op_result(op, 0, fields) == RP_OK)
        for (i = 0; i < d->nfields; i++)
            if (fields[i].type == RP_TYPE_BOOL || fields[i].type == RP_TYPE_INT)
                printf(" %s=%lld", d->fields[i].name, (long long)fields[i].i);
    printf("\n");
    rp_op_free(op);
    return RP_OK;
}

int main(int argc, char **argv)
{
    rp_value args[RP_DESC_ARGS_MAX];
    void *client = NULL, *lock = NULL;
    const char *url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
    rp_error err;
    size_t i;
    int rc;

    for (i = 0; i < rp_desc_count(); i++)
        printf("%-18s %zu args, %s\n", rp_desc_at(i)->name, rp_desc_at(i)->nargs,
               rp_desc_at(i)->doc);

    memset(args, 0, sizeof args);                 /* absent arguments take their defaults */
    args[0] = rp_value_bytes(url, strlen(url));
    args[1] = rp_value_bytes("myapp", 5);
    if (rp_desc_make(&client, rp_desc_find("client.new", 10), args, NULL, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_CLIENT, client);
    args[1] = rp_value_bytes("invoice:42", 10);
    args[2] = rp_value_int(RP_TYPE_MS, -5);       /* refused before any I/O, argument named */
    if (rp_desc_make(&lock, rp_desc_find("lock.new", 8), args, NULL, &err) == RP_EINVAL)
        printf("refused: %s\n", err.message);   /* "ttl must be > 0 ms (got -5)" */
    args[2] = rp_value_int(RP_TYPE_MS, 10000);
    args[3] = rp_value_int(RP_TYPE_BOOL, 1);      /* fenced */
    if (rp_desc_make(&lock, rp_desc_find("lock.new", 8), args, NULL, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        rp_handle_free(RP_KIND_CLIENT, client);
        return 1;
    }
    memset(args, 0, sizeof args);
    args[0] = rp_value_handle(RP_KIND_LOCK, lock);
    rc = run(client, "lock.acquire", args);       /* acquired=1 fence=N attempts=1 */
    if (rc == RP_OK)
        rc = run(client, "lock.release", args);
    rp_handle_free(RP_KIND_LOCK, lock);
    rp_handle_free(RP_KIND_CLIENT, client);
    return rc == RP_OK ? 0 : 1;
}
