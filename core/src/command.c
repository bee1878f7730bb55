/* Raw commands as ops: for arranging and inspecting state, and for drivers' own needs. */
#include "op_internal.h"

typedef struct command_state {
    int sent;
    rp_reply *reply;
} command_state;

static int command_advance(rp_op *op, void *state, uint64_t now_ms)
{
    command_state *s = state;
    (void)now_ms;
    if (s->sent) {
        s->reply = rp_op__take_reply(op, 0, 0);
        if (!s->reply)
            return rp_op__fail(op, RP_EPROTOCOL, "command: missing reply");
        rp_op__done(op);
        return RP_OK;
    }
    s->sent = 1;
    return RP_OK;
}

static void command_destroy(rp_op *op, void *state)
{
    (void)op;
    rp_reply_free(((command_state *)state)->reply);
}

static const rp_op_class command_class = {
    "command", sizeof(command_state), command_advance, command_destroy, 0, NULL, 0, 0, 0, 0
};

int rp_command_op(rp_op **out, rp_client *client, int argc, const char *const *argv,
                  const size_t *argvlen, rp_error *err)
{
    return rp_command_op_key(out, client, argc, argv, argvlen, NULL, 0, err);
}

int rp_command_op_key(rp_op **out, rp_client *client, int argc, const char *const *argv,
                      const size_t *argvlen, const char *key, size_t keylen, rp_error *err)
{
    void *state;
    int rc, i;
    if (!out || !client)
        return rp_error__set(err, RP_EINVAL, "out and client must not be NULL");
    *out = NULL;
    if (argc <= 0 || !argv)
        return rp_error__set(err, RP_EINVAL, "argc must be > 0 and argv set");
    for (i = 0; i < argc; i++)
        if (!argv[i])
            return rp_error__set(err, RP_EINVAL, "argv[%d] is NULL", i);
    if ((rc = rp_op__new(out, client, &command_class, 1, &state, err)))
        return rc;
    if ((key && (rc = rp_op__route_key(*out, 0, key, keylen))) ||
        (rc = rp_op__command(*out, 0, argc, argv, argvlen))) {
        rp_error__copy(err, rp_op_error(*out));
        rp_op_free(*out);
        *out = NULL;
        return rc;
    }
    return RP_OK;
}

int rp_command_result(const rp_op *op, const rp_reply **reply)
{
    const command_state *s = rp_op__done_state(op, &command_class);
    if (!s)
        return RP_ESTATE;
    *reply = s->reply;
    return RP_OK;
}

int rp_client_command(rp_client *client, int argc, const char *const *argv,
                      const size_t *argvlen, rp_reply **reply, rp_error *err)
{
    rp_op *op;
    int rc;
    if (!reply)
        return rp_error__set(err, RP_EINVAL, "reply must not be NULL");
    *reply = NULL;
    if ((rc = rp_command_op(&op, client, argc, argv, argvlen, err)))
        return rc;
    if ((rc = rp_client_run(client, op, err)) == RP_OK) {
        command_state *s = (command_state *)rp_op__done_state(op, &command_class);
        *reply = s->reply;
        s->reply = NULL;
    }
    rp_op_free(op);
    return rc;
}
