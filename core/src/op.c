/* The operation engine: queues commands, formats them (hiredis' formatter), parses the
 * replies (hiredis' reader into rp_reply), retries scripts Redis forgot, and moves the op
 * between IO, SLEEP, DONE and ERROR for whichever driver is stepping it. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster_map.h"
#include "op_internal.h"
#include "reply_internal.h"
#include "script.h"

typedef struct rp_cmd {
    const rp_script *script; /* NULL: a plain command */
    int as_eval;             /* Redis answered NOSCRIPT: send the source with EVAL */
    int legacy;              /* sent as the script's pre-7 variant (encode_cmd) */
    int argc;
    const char **argv;       /* points into mem, like argvlen */
    size_t *argvlen;
    void *mem;
    rp_reply *reply;
    /* Redis Cluster (the node's endpoint is a cluster) */
    long slot;               /* the hash slot of its keys; -1: none (goes with the others) */
    long ask;                /* the node an ASK sent it to (-1: none): ASKING first */
    unsigned redirects;      /* MOVED / ASK followed for it */
} rp_cmd;

typedef struct rp_node_io {
    rp_cmd *cmds;
    size_t ncmds, capcmds;
    size_t first_new;    /* cmds before this index belong to the completed round */
    rp_buf out;          /* request bytes of the current round */
    size_t *inflight;    /* indices into cmds, in the order they were sent */
    size_t ninflight, capinflight;
    size_t received;
    redisReader *reader;
    int status;          /* RP_OK, or why the node failed this round */
    char why[RP_ERROR_MESSAGE_MAX];
    int unsent;          /* it failed before its request was written (not in doubt) */
    int listen;          /* the next round listens (rp_op__listen) */
    int listening;       /* the current round listens */
    rp_reply **msgs;     /* a listening round's replies, in arrival order */
    size_t nmsgs, capmsgs;
    /* Redis Cluster: the node's endpoint is the cluster of map (NULL: a plain endpoint).
     * Each round goes to one node of the map (target); the engine's own commands of the
     * round (CLUSTER SHARDS, ASKING) are in sys, marked in inflight with RP_SYS_CMD. */
    rp_cluster_map *map;
    long target;            /* the map's node this round goes to (-1: none yet) */
    int refreshing;         /* this round reads the topology; the op's commands wait */
    int relisten;           /* a listening round waits for that read (its commands held) */
    uint64_t refresh_since; /* monotonic ms the read began: all its tries share one
                               command timeout */
    uint64_t own_timeout;   /* the op's per-target timeout, while a read overrides it */
    int timeout_overridden;
    int want_refresh;       /* read the topology before sending them again */
    size_t refresh_attempt; /* nodes asked for it so far */
    unsigned retries;       /* TRYAGAIN / CLUSTERDOWN / unsent failures retried */
    uint64_t retry_since;   /* monotonic ms of the request's first retry pause */
    int may_wait;           /* this pass: another pause still fits (retries and time) */
    char last_why[RP_ERROR_MESSAGE_MAX]; /* the last failure retried, for when time runs out */
    int wake;               /* its commands go again when the retry sleep ends */
    rp_cmd *sys;
    size_t nsys, capsys;
    rp_buf route_key;       /* given: the key whose slot routes the node's commands */
    int has_route_key;
    size_t endpoint;        /* the client's endpoint the node talks to */
} rp_node_io;

/* An inflight entry naming one of the node's sys commands instead of one of its cmds. */
#define RP_SYS_CMD ((size_t)1 << (sizeof(size_t) * 8 - 1))

enum { PHASE_START, PHASE_IO, PHASE_SLEEP, PHASE_CALL, PHASE_EMIT, PHASE_CHILD, PHASE_DONE,
       PHASE_ERROR, PHASE_RETRY_SLEEP /* the engine's own wait (TRYAGAIN, CLUSTERDOWN) */ };

/* A CALL's life: none, asked (CALL step pending), running (driver started it), ended. */
enum { CALL_NONE, CALL_ASKED, CALL_RUNNING, CALL_ENDED };

struct rp_op {
    const rp_op_class *cls;
    rp_client *client;
    const rp_allocator *alloc;
    int phase;
    int finished;          /* advance called rp_op__done */
    int emit;              /* advance called rp_op__emit */
    int enough;            /* the class said the round has enough answers */
    int cancelled;         /* rp_op_cancel was called */
    uint64_t sleep_ms;     /* advance asked for a sleep */
    uint64_t timeout_ms;   /* per-target timeout of rounds (0: the driver's) */
    int call;              /* CALL_* */
    size_t call_arg;
    const rp_value *call_values; /* the callback's arguments (the pattern's state owns them) */
    size_t call_count;
    int call_status;       /* the ended callback's status */
    rp_buf call_bytes;     /* what it returned, or its message */
    int call_has_value;
    size_t nnodes;
    rp_node_io *nodes;
    void *state;
    rp_error err;
    const rp_op_desc *desc; /* set by rp_desc_begin: how the generic reader reads it */
    rp_op *child;          /* the op delegated to (rp_op__delegate), owned */
    int child_active;      /* the driver is talking to child */
    rp_step child_end;     /* how child ended (DONE / ERROR) */
};

/* The op a driver is really talking to: the innermost active child. */
static rp_op *live(rp_op *op)
{
    while (op->child_active)
        op = op->child;
    return op;
}

static const rp_op *live_c(const rp_op *op)
{
    while (op->child_active)
        op = op->child;
    return op;
}

/* The cap of one reply (decision: rp_client_options.max_reply_size), for the readers. */
static size_t max_reply(const rp_client *client)
{
    return rp_client__options(client)->max_reply_size;
}

/* NO_ENDPOINT: node i talks to endpoint i (rp_op__new); else every node to that one. */
#define NO_ENDPOINT ((size_t)-1)

static int op_new(rp_op **out, rp_client *client, const rp_op_class *cls, size_t nodes,
                  size_t endpoint, void **state_out, rp_error *err)
{
    const rp_allocator *a = rp_client__allocator(client);
    rp_op *op;
    size_t i;
    *out = NULL;
    op = rp_alloc__calloc(a, 1, sizeof *op);
    if (!op)
        return rp_error__set(err, RP_ENOMEM, "out of memory creating %s", cls->name);
    op->cls = cls;
    op->client = client;
    op->alloc = a;
    op->nnodes = nodes;
    op->nodes = rp_alloc__calloc(a, nodes, sizeof *op->nodes);
    op->state = rp_alloc__calloc(a, 1, cls->state_size);
    if (!op->nodes || !op->state)
        goto oom;
    for (i = 0; i < nodes; i++) {
        op->nodes[i].reader = rp_reply__reader_new(a, max_reply(client));
        if (!op->nodes[i].reader)
            goto oom;
        /* a handshake talks to the connection it is given: never routed */
        op->nodes[i].endpoint = endpoint == NO_ENDPOINT ? i : endpoint;
        op->nodes[i].map = cls->direct ? NULL : rp_client__cluster(client, op->nodes[i].endpoint);
        op->nodes[i].target = -1;
    }
    *state_out = op->state;
    *out = op;
    return RP_OK;
oom:
    op->cls = NULL; /* no destroy: the state was never set up */
    rp_op_free(op);
    return rp_error__set(err, RP_ENOMEM, "out of memory creating %s", cls->name);
}

int rp_op__new(rp_op **out, rp_client *client, const rp_op_class *cls, size_t nodes,
               void **state_out, rp_error *err)
{
    return op_new(out, client, cls, nodes, NO_ENDPOINT, state_out, err);
}

int rp_op__new_on(rp_op **out, rp_client *client, const rp_op_class *cls, size_t nodes,
                  size_t endpoint, void **state_out, rp_error *err)
{
    return op_new(out, client, cls, nodes, endpoint, state_out, err);
}

static void cmd_clear(const rp_allocator *a, rp_cmd *c)
{
    rp_alloc__free(a, c->mem);
    rp_reply_free(c->reply);
    memset(c, 0, sizeof *c);
}

void rp_op_free(rp_op *op)
{
    size_t i, j;
    if (!op)
        return;
    if (op->cls && op->cls->destroy && op->state)
        op->cls->destroy(op, op->state);
    rp_op_free(op->child);
    for (i = 0; op->nodes && i < op->nnodes; i++) {
        rp_node_io *n = &op->nodes[i];
        for (j = 0; j < n->ncmds; j++)
            cmd_clear(op->alloc, &n->cmds[j]);
        rp_alloc__free(op->alloc, n->cmds);
        rp_alloc__free(op->alloc, n->inflight);
        rp_buf__free(op->alloc, &n->out);
        rp_reply__reader_free(n->reader);
        for (j = 0; j < n->nmsgs; j++)
            rp_reply_free(n->msgs[j]);
        rp_alloc__free(op->alloc, n->msgs);
        for (j = 0; j < n->nsys; j++)
            cmd_clear(op->alloc, &n->sys[j]);
        rp_alloc__free(op->alloc, n->sys);
        rp_buf__free(op->alloc, &n->route_key);
    }
    rp_buf__free(op->alloc, &op->call_bytes);
    rp_alloc__free(op->alloc, op->nodes);
    rp_alloc__free(op->alloc, op->state);
    rp_alloc__free(op->alloc, op);
}

/* --- queueing --------------------------------------------------------------------- */

/* Makes room for one more command in *cmds (of *n, capacity *cap). */
static int grow_cmds(rp_op *op, rp_cmd **cmds, size_t n, size_t *cap)
{
    if (n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        rp_cmd *p = rp_alloc__realloc(op->alloc, *cmds, c * sizeof *p);
        if (!p)
            return rp_op__fail(op, RP_ENOMEM, "out of memory queueing a command");
        *cmds = p;
        *cap = c;
    }
    return RP_OK;
}

/* Fills c with a copy of argv. */
static int fill_cmd(rp_op *op, rp_cmd *c, const rp_script *script, int argc,
                    const char *const *argv, const size_t *argvlen)
{
    size_t total = 0, fixed, i;
    char *bytes;
    for (i = 0; i < (size_t)argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        if (!rp_size__add(total, len, &total) || !rp_size__add(total, 1, &total))
            return rp_op__fail(op, RP_ENOMEM, "command too large");
    }
    fixed = (size_t)argc * (sizeof(char *) + sizeof(size_t));
    if (!rp_size__add(total, fixed, &total))
        return rp_op__fail(op, RP_ENOMEM, "command too large");
    memset(c, 0, sizeof *c);
    c->mem = rp_alloc__malloc(op->alloc, total);
    if (!c->mem)
        return rp_op__fail(op, RP_ENOMEM, "out of memory queueing a command");
    c->argv = (const char **)c->mem;
    c->argvlen = (size_t *)(c->argv + argc);
    bytes = (char *)(c->argvlen + argc);
    for (i = 0; i < (size_t)argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(bytes, argv[i], len);
        bytes[len] = '\0';
        c->argv[i] = bytes;
        c->argvlen[i] = len;
        bytes += len + 1;
    }
    c->argc = argc;
    c->script = script;
    c->slot = -1;
    c->ask = -1;
    return RP_OK;
}

static int push_cmd(rp_op *op, size_t node, const rp_script *script, int argc,
                    const char *const *argv, const size_t *argvlen)
{
    rp_node_io *n;
    int rc;
    if (node >= op->nnodes || argc <= 0)
        return rp_op__fail(op, RP_ESTATE, "%s: bad command slot", op->cls->name);
    n = &op->nodes[node];
    if ((rc = grow_cmds(op, &n->cmds, n->ncmds, &n->capcmds)) ||
        (rc = fill_cmd(op, &n->cmds[n->ncmds], script, argc, argv, argvlen)))
        return rc;
    n->ncmds++;
    return RP_OK;
}

int rp_op__route_key(rp_op *op, size_t node, const char *key, size_t len)
{
    rp_node_io *n;
    if (node >= op->nnodes)
        return rp_op__fail(op, RP_ESTATE, "%s: bad node", op->cls->name);
    n = &op->nodes[node];
    n->route_key.len = 0;
    if (rp_buf__append(op->alloc, &n->route_key, key, len))
        return rp_op__fail(op, RP_ENOMEM, "out of memory keeping the routing key");
    n->has_route_key = 1;
    return RP_OK;
}

int rp_op__command(rp_op *op, size_t node, int argc, const char *const *argv,
                   const size_t *argvlen)
{
    return push_cmd(op, node, NULL, argc, argv, argvlen);
}

#define RP_SCRIPT_MAX_ARGS 64

int rp_op__script(rp_op *op, size_t node, const char *script, int nkeys, int nargs,
                  const char *const *argv, const size_t *argvlen)
{
    const rp_script *s = rp_script__find(rp_client__scripts(op->client), script);
    const char *full[RP_SCRIPT_MAX_ARGS + 3];
    size_t lens[RP_SCRIPT_MAX_ARGS + 3];
    char numkeys[RP_I64_CHARS];
    int i, rc, total = nkeys + nargs;
    if (!s)
        return rp_op__fail(op, RP_ESTATE, "script %s is not embedded in this build", script);
    if (nkeys < 0 || nargs < 0 || total > RP_SCRIPT_MAX_ARGS)
        return rp_op__fail(op, RP_ESTATE, "script %s: bad argument count", script);
    full[0] = "EVALSHA"; lens[0] = 7;
    full[1] = s->sha1; lens[1] = 40;
    full[2] = numkeys; lens[2] = rp_fmt__i64(numkeys, nkeys);
    for (i = 0; i < total; i++) {
        full[3 + i] = argv[i];
        lens[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    if ((rc = push_cmd(op, node, s, total + 3, full, lens)))
        return rc;
    /* a target not known to have the script gets its source at once (EVAL); a cluster's
     * node is known once the command is routed (cluster_dispatch) */
    op->nodes[node].cmds[op->nodes[node].ncmds - 1].as_eval =
        !op->nodes[node].map && !rp_script__known(s, op->nodes[node].endpoint);
    return RP_OK;
}

/* --- rounds ----------------------------------------------------------------------- */

static int encode_cmd(rp_op *op, rp_node_io *n, rp_cmd *c)
{
    char *cmd = NULL;
    long long len;
    int rc;
    /* an endpoint that rejected a script's shebang gets every script's legacy variant */
    c->legacy = c->script &&
                rp_script__pre7(rp_client__scripts(op->client), n->endpoint);
    if (c->script) {
        /* same arguments, with the variant's source (EVAL) or SHA1 (EVALSHA) at argv[1] */
        const char *sha = c->argv[1];
        size_t shalen = c->argvlen[1];
        if (c->as_eval) {
            c->argv[0] = "EVAL"; c->argvlen[0] = 4;
            c->argv[1] = rp_script__body(c->script, c->legacy, &c->argvlen[1]);
        } else {
            c->argv[1] = rp_script__sha1(c->script, c->legacy);
        }
        len = redisFormatCommandArgv(&cmd, c->argc, c->argv, c->argvlen);
        c->argv[0] = "EVALSHA"; c->argvlen[0] = 7;
        c->argv[1] = sha; c->argvlen[1] = shalen;
    } else {
        len = redisFormatCommandArgv(&cmd, c->argc, c->argv, c->argvlen);
    }
    if (len < 0 || !cmd)
        return rp_op__fail(op, RP_ENOMEM, "out of memory formatting a command");
    rc = rp_buf__append(op->alloc, &n->out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc)
        return rp_op__fail(op, RP_ENOMEM, "out of memory formatting a command");
    return RP_OK;
}

static int mark_inflight(rp_op *op, rp_node_io *n, size_t index)
{
    if (n->ninflight == n->capinflight) {
        size_t cap = n->capinflight ? n->capinflight * 2 : 4;
        size_t *p = rp_alloc__realloc(op->alloc, n->inflight, cap * sizeof *p);
        if (!p)
            return rp_op__fail(op, RP_ENOMEM, "out of memory queueing a command");
        n->inflight = p;
        n->capinflight = cap;
    }
    n->inflight[n->ninflight++] = index;
    return RP_OK;
}

static void clear_msgs(rp_node_io *n)
{
    size_t j;
    for (j = 0; j < n->nmsgs; j++)
        rp_reply_free(n->msgs[j]);
    n->nmsgs = 0;
}

static int reset_status(rp_op *op, rp_node_io *n)
{
    if (n->status != RP_OK) {
        /* the reader may hold half a reply from the failed connection */
        rp_reply__reader_free(n->reader);
        n->reader = rp_reply__reader_new(op->alloc, max_reply(op->client));
        n->status = RP_OK;
        n->why[0] = '\0';
        n->unsent = 0;
        if (!n->reader)
            return rp_op__fail(op, RP_ENOMEM, "out of memory creating a reader");
    }
    return RP_OK;
}

static int reset_round(rp_op *op, rp_node_io *n)
{
    n->out.len = 0;
    n->ninflight = 0;
    n->received = 0;
    n->listening = n->listen;
    n->listen = 0;
    clear_msgs(n);
    return reset_status(op, n);
}

static int cmd_slot(rp_op *op, const rp_node_io *n, rp_cmd *c);
static int cluster_dispatch(rp_op *op, rp_node_io *n);
static int is_noscript(const rp_cmd *c);

/* The index of c's script in the client's registry. */
static size_t script_index(const rp_op *op, const rp_cmd *c)
{
    return (size_t)(c->script - rp_client__scripts(op->client)->scripts);
}

/* Records what node's target said of c's script: per endpoint, or per cluster node. */
static void learn_script(const rp_op *op, const rp_node_io *n, const rp_cmd *c)
{
    if (n->map && n->target >= 0)
        rp_cluster_map__script_learn(n->map, (size_t)n->target, script_index(op, c),
                                     !is_noscript(c));
    else if (!n->map)
        rp_script__learn(c->script, n->endpoint, !is_noscript(c));
}

/* What a listening round sends owes no reply of its own (pub/sub answers with messages):
 * nothing is kept to match replies to. */
static void forget_listened(rp_op *op, rp_node_io *n)
{
    size_t j;
    for (j = 0; j < n->ncmds; j++)
        cmd_clear(op->alloc, &n->cmds[j]);
    n->ncmds = n->first_new = 0;
    n->ninflight = 0;
}

/* After advance: drop the completed round's commands, send the new ones. */
static int start_round(rp_op *op, int *any)
{
    size_t i, j;
    *any = 0;
    for (i = 0; i < op->nnodes; i++) {
        rp_node_io *n = &op->nodes[i];
        size_t fresh = n->ncmds - n->first_new;
        int rc;
        for (j = 0; j < n->first_new; j++)
            cmd_clear(op->alloc, &n->cmds[j]);
        if (fresh > 0 && n->first_new > 0) /* cmds may be NULL (never used): no memmove */
            memmove(n->cmds, n->cmds + n->first_new, fresh * sizeof *n->cmds);
        n->ncmds = fresh;
        n->first_new = fresh;
        if ((rc = reset_round(op, n)))
            return rc;
        if (n->map && fresh > 0) {
            /* a new request: its commands' slots, then the node serving them */
            n->retries = 0;
            n->last_why[0] = '\0';
            n->refresh_attempt = 0;
            n->want_refresh = rp_cluster_map__claim_refresh(n->map, rp_monotonic_ms());
            if (n->want_refresh && n->listening) {
                /* the read is a plain round; the listening one follows it */
                n->listening = 0;
                n->relisten = 1;
            }
            for (j = 0; j < fresh; j++)
                if ((rc = cmd_slot(op, n, &n->cmds[j])))
                    return rc;
            if ((rc = cluster_dispatch(op, n)))
                return rc;
            *any = 1;
        }
        for (j = 0; !n->map && j < fresh; j++) {
            if ((rc = encode_cmd(op, n, &n->cmds[j])) || (rc = mark_inflight(op, n, j)))
                return rc;
            *any = 1;
        }
        if (n->listening) {
            forget_listened(op, n);
            *any = 1;
        }
    }
    return RP_OK;
}

static int is_noscript(const rp_cmd *c)
{
    return c->script && !c->as_eval && c->reply && c->reply->type == RP_REPLY_ERROR &&
           c->reply->len >= 8 && memcmp(c->reply->str, "NOSCRIPT", 8) == 0;
}

/* A Redis older than 7.0 compiling a script's "#!lua ..." first line. Redis 6.2 says
 * "ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'"
 * (5.0 and 6.0 the same); only the variant with the shebang can cause it. */
#define RP_SHEBANG_ERROR "ERR Error compiling script"
#define RP_SHEBANG_WHERE ":1: unexpected symbol near '#'"

static int is_shebang_refused(const rp_cmd *c)
{
    const rp_reply *r = c->reply;
    size_t plen = sizeof RP_SHEBANG_ERROR - 1, wlen = sizeof RP_SHEBANG_WHERE - 1, i;
    if (!c->script || !c->as_eval || c->legacy || !r || r->type != RP_REPLY_ERROR ||
        r->len < plen || memcmp(r->str, RP_SHEBANG_ERROR, plen) != 0)
        return 0;
    for (i = plen; i + wlen <= r->len; i++)
        if (memcmp(r->str + i, RP_SHEBANG_WHERE, wlen) == 0)
            return 1;
    return 0;
}

/* The answer stands for no real one: the command goes again in a retry round. */
static int needs_resend(const rp_cmd *c) { return is_noscript(c) || is_shebang_refused(c); }

/* Scripts Redis did not know (after SCRIPT FLUSH, a restart, a failover) go again with
 * their source; scripts a Redis < 7 could not compile (the shebang) go again as their
 * legacy variant, which that endpoint gets from then on (rp_script__pre7). Returns 1 if a
 * new round was started. */
static int retry_noscript(rp_op *op, int *rc)
{
    size_t i, j;
    int again = 0;
    *rc = RP_OK;
    for (i = 0; i < op->nnodes; i++) {
        rp_node_io *n = &op->nodes[i];
        size_t k = 0, *redo;
        if (n->status != RP_OK || n->listening || n->map)
            continue;
        for (j = 0; j < n->ninflight; j++)
            if (!(n->inflight[j] & RP_SYS_CMD) && needs_resend(&n->cmds[n->inflight[j]]))
                n->inflight[k++] = n->inflight[j];
        if (k == 0)
            continue;
        redo = n->inflight;
        n->out.len = 0;
        n->received = 0;
        n->ninflight = k;
        for (j = 0; j < k; j++) {
            rp_cmd *c = &n->cmds[redo[j]];
            if (is_shebang_refused(c)) {
                rp_script__learn_pre7(rp_client__scripts(op->client), n->endpoint);
                rp_script__learn(c->script, n->endpoint, 0); /* it loaded nothing */
            }
            rp_reply_free(c->reply);
            c->reply = NULL;
            c->as_eval = 1;
            if ((*rc = encode_cmd(op, n, c)))
                return 0;
        }
        again = 1;
    }
    return again;
}

static int node_fail(rp_node_io *n, int status, const char *why);

/* --- Redis Cluster: routing, topology reads, redirects --------------------------------
 * A node whose endpoint is a cluster sends each command to the master of its keys' slot,
 * as the client's shared map says. Commands of one round going to several masters go in
 * consecutive internal rounds, one master each; MOVED (map updated), ASK (ASKING first,
 * map unchanged), NOSCRIPT and, after a sleep, TRYAGAIN / CLUSTERDOWN and failures before
 * anything was written send the commands concerned again. advance() sees none of it: the
 * replies it reads are the final ones, in queue order. */

/* Where classic pub/sub goes on a cluster (see cmd_slot). */
#define RP_PUBSUB_SLOT 0
/* MOVED / ASK followed for one command: a reshard moves a slot once, more is a loop. */
#define RP_CLUSTER_REDIRECTS_MAX 5
/* TRYAGAIN, CLUSTERDOWN and failures before sending retried per request, waiting 10, 20,
 * 40, ... up to 500 ms (about 1.6 s in all, and never past one command timeout): a
 * migration's keys move in milliseconds, a failover takes the cluster's node timeout
 * (1-2 s is usual) plus an election; past that the caller hears the error. */
#define RP_CLUSTER_RETRIES_MAX 8
#define RP_CLUSTER_RETRY_MIN_MS 10
#define RP_CLUSTER_RETRY_MAX_MS 500

/* A key or command name quoted in a message: printable ASCII, others as '?', cut. */
static const char *quote(char *out, size_t size, const char *s, size_t len)
{
    size_t i, n = len < RP_ARG_QUOTE_MAX ? len : RP_ARG_QUOTE_MAX;
    if (n + 4 > size)
        n = size - 4;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* The hash slot c's keys share (c->slot; -1 for none), or RP_EINVAL when they span slots
 * or the command's keys are not known: refused before any I/O. */
static int cmd_slot(rp_op *op, const rp_node_io *n, rp_cmd *c)
{
    char q1[RP_ARG_QUOTE_MAX + 4], q2[RP_ARG_QUOTE_MAX + 4];
    rp_cmd_keys k;
    size_t i, first = 0;
    c->slot = -1;
    c->ask = -1;
    c->redirects = 0;
    if (n->has_route_key) {
        c->slot = (long)rp_cluster__slot(n->route_key.data, n->route_key.len);
        return RP_OK;
    }
    k = rp_cluster__command_keys(c->argc, c->argv, c->argvlen);
    switch (k.kind) {
    case RP_CMD_KEYS_UNKNOWN:
        return rp_op__fail(op, RP_EINVAL,
                           "%s: cannot tell the keys of %s on a cluster: give the key to route "
                           "it by (key)", rp_op_name(op),
                           quote(q1, sizeof q1, c->argv[0], c->argvlen[0]));
    case RP_CMD_KEYS_NONE:
        if (op->cls->long_lived) /* a subscription's PING: its own connection */
            return RP_OK;
        return rp_op__fail(op, RP_EINVAL,
                           "%s: %s has no key to route it by on a cluster: give one (key)",
                           rp_op_name(op), quote(q1, sizeof q1, c->argv[0], c->argvlen[0]));
    case RP_CMD_KEYS_CHANNEL:
        /* classic pub/sub reaches every node, but what PUBLISH, PUBSUB NUMSUB and CLIENT
         * LIST count is one node's: all of it goes to one master, slot 0's (the slot of
         * the key ""), so publishers and subscribers meet there (a live subscription
         * stays where it is) */
        if (!(op->cls->long_lived && n->target >= 0))
            c->slot = RP_PUBSUB_SLOT;
        return RP_OK;
    case RP_CMD_KEYS_LIST:
        break;
    }
    for (i = k.first; i <= k.last && i < (size_t)c->argc; i += k.step ? k.step : 1) {
        long s = (long)rp_cluster__slot(c->argv[i], c->argvlen[i]);
        if (c->slot < 0) {
            c->slot = s;
            first = i;
        } else if (s != c->slot) {
            return rp_op__fail(op, RP_EINVAL,
                               "%s: keys in different hash slots: '%s' (slot %ld) and '%s' "
                               "(slot %ld); the keys of one command must share a {hash tag} "
                               "on a cluster", rp_op_name(op),
                               quote(q1, sizeof q1, c->argv[first], c->argvlen[first]),
                               c->slot, quote(q2, sizeof q2, c->argv[i], c->argvlen[i]), s);
        }
    }
    return RP_OK;
}

/* The key c is routed by, quoted into out (the routing key, else its first key). */
static const char *first_key(const rp_node_io *n, const rp_cmd *c, char *out, size_t size)
{
    rp_cmd_keys k;
    if (n->has_route_key)
        return quote(out, size, n->route_key.data, n->route_key.len);
    k = rp_cluster__command_keys(c->argc, c->argv, c->argvlen);
    if ((k.kind == RP_CMD_KEYS_LIST || k.kind == RP_CMD_KEYS_CHANNEL) && k.first < (size_t)c->argc)
        return quote(out, size, c->argv[k.first], c->argvlen[k.first]);
    return quote(out, size, c->argv[0], c->argvlen[0]);
}

static void clear_sys(rp_op *op, rp_node_io *n)
{
    size_t j;
    for (j = 0; j < n->nsys; j++)
        cmd_clear(op->alloc, &n->sys[j]);
    n->nsys = 0;
}

/* Queues one of the engine's own commands in the node's round. */
static int push_sys(rp_op *op, rp_node_io *n, int argc, const char *const *argv)
{
    int rc;
    if ((rc = grow_cmds(op, &n->sys, n->nsys, &n->capsys)) ||
        (rc = fill_cmd(op, &n->sys[n->nsys], NULL, argc, argv, NULL)))
        return rc;
    n->nsys++; /* owned from here: freed with the others even if the rest fails */
    if ((rc = encode_cmd(op, n, &n->sys[n->nsys - 1])))
        return rc;
    return mark_inflight(op, n, RP_SYS_CMD | (n->nsys - 1));
}

/* A command of the round still without its final reply (a listening round's all are). */
static int cmd_pending(const rp_node_io *n, const rp_cmd *c)
{
    return n->listening || !c->reply;
}

/* Where c goes now; -1: the map does not know (read it first). */
static long cmd_target(rp_node_io *n, const rp_cmd *c, long keyless)
{
    if (c->ask >= 0)
        return c->ask;
    return c->slot >= 0 ? rp_cluster_map__owner(n->map, (unsigned)c->slot) : keyless;
}

/* Builds the node's next round: the topology read when it is wanted, else the pending
 * commands bound for one master (the first pending command's; the others wait). */
static int cluster_dispatch(rp_op *op, rp_node_io *n)
{
    long target = -1, keyless;
    size_t j;
    int rc;
    n->out.len = 0;
    n->ninflight = 0;
    n->received = 0;
    n->refreshing = 0;
    clear_sys(op, n);
    /* where keyless commands go: the node's last target, else the first node to ask (only
     * looked up when needed: it scans the map's nodes) */
    keyless = n->target;
    for (j = 0; !n->want_refresh && target < 0 && j < n->first_new; j++) {
        const rp_cmd *c = &n->cmds[j];
        if (!cmd_pending(n, c) || (c->slot < 0 && c->ask < 0))
            continue;
        if ((target = cmd_target(n, c, keyless)) < 0) {
            char q[RP_ARG_QUOTE_MAX + 4];
            n->want_refresh = n->retries < RP_CLUSTER_RETRIES_MAX; /* read the map (again) */
            if (!n->want_refresh)
                return rp_op__fail(op, RP_ETRANSPORT,
                                   "%s: no master of the cluster serves hash slot %ld (of "
                                   "'%s'): the cluster is down or the slot is unassigned",
                                   rp_op_name(op), c->slot, first_key(n, c, q, sizeof q));
        }
    }
    if (n->want_refresh && !n->listening) {
        static const char *const shards[2] = { "CLUSTER", "SHARDS" };
        static const char *const slots[2] = { "CLUSTER", "SLOTS" };
        long src = rp_cluster_map__source(n->map, n->refresh_attempt);
        if (src < 0)
            return rp_op__fail(op, RP_ETRANSPORT, "%s: no node of the cluster to ask for its "
                                                  "topology", rp_op_name(op));
        if (n->refresh_attempt == 0) {
            n->refresh_since = rp_monotonic_ms();
        } else {
            /* the next node gets what is left of one command timeout, not one more */
            uint64_t budget = rp_client__options(op->client)->command_timeout_ms;
            uint64_t spent = rp_monotonic_ms() - n->refresh_since;
            if (!n->timeout_overridden) {
                n->own_timeout = op->timeout_ms;
                n->timeout_overridden = 1;
            }
            op->timeout_ms = spent < budget ? budget - spent : 1;
        }
        n->target = src;
        n->refreshing = 1;
        return push_sys(op, n, 2, rp_cluster_map__use_slots(n->map) ? slots : shards);
    }
    if (target < 0)
        target = keyless >= 0 ? keyless : rp_cluster_map__source(n->map, 0);
    if (target < 0)
        return rp_op__fail(op, RP_ETRANSPORT, "%s: no node of the cluster to send to",
                           rp_op_name(op));
    n->target = target;
    for (j = 0; j < n->first_new; j++) {
        static const char *const asking[1] = { "ASKING" };
        rp_cmd *c = &n->cmds[j];
        if (!cmd_pending(n, c) || cmd_target(n, c, target) != target)
            continue;
        if (c->ask >= 0 && (rc = push_sys(op, n, 1, asking)))
            return rc;
        if (c->script && !c->as_eval)
            c->as_eval = !rp_cluster_map__script_known(n->map, (size_t)target, script_index(op, c));
        if ((rc = encode_cmd(op, n, c)) || (rc = mark_inflight(op, n, j)))
            return rc;
    }
    return RP_OK;
}

static int contains(const rp_reply *r, const char *what)
{
    size_t n = strlen(what), i;
    for (i = 0; r->len >= n && i + n <= r->len; i++)
        if (strncasecmp(r->str + i, what, n) == 0)
            return 1;
    return 0;
}

/* 1 when every pending command of n has a master in the map. */
static int all_served(rp_node_io *n)
{
    size_t j;
    for (j = 0; j < n->first_new; j++)
        if (cmd_pending(n, &n->cmds[j]) && cmd_target(n, &n->cmds[j], 0) < 0)
            return 0;
    return 1;
}

/* The topology read is over: the op's own timeout again, its listening round next. */
static void refresh_over(rp_op *op, rp_node_io *n)
{
    if (n->timeout_overridden) {
        op->timeout_ms = n->own_timeout;
        n->timeout_overridden = 0;
    }
    if (n->relisten) {
        n->listening = 1;
        n->relisten = 0;
    }
}

/* The topology read of node i came back: apply it (and wait when it still leaves a slot
 * of the request unserved: a failover under way), or ask the next node. */
static int after_refresh(rp_op *op, size_t i, rp_node_io *n, int *again, int *wait)
{
    const rp_url *u = rp_cluster_map__url(n->map);
    const rp_cluster_node *asked = rp_cluster_map__node(n->map, (size_t)n->target);
    const rp_reply *r = n->nsys > 0 ? n->sys[0].reply : NULL;
    char why[RP_ERROR_MESSAGE_MAX];
    rp_cluster_topology t;
    int rc;
    (void)i;
    *again = 1;
    if (n->status == RP_EAUTH && !op->cls->enough) {
        /* the url's credentials are every node's: no other node will take them either */
        return rp_op__fail(op, RP_EAUTH, "%s: %s", rp_op_name(op), n->why);
    } else if (n->status != RP_OK || !r) {
        snprintf(why, sizeof why, "%s", n->status != RP_OK ? n->why : "no reply");
    } else if (r->type == RP_REPLY_ERROR && !rp_cluster_map__use_slots(n->map) &&
               contains(r, "unknown subcommand")) {
        rp_cluster_map__set_use_slots(n->map); /* Redis < 7.0: ask the same node again */
        return RP_OK;
    } else if (r->type == RP_REPLY_ERROR && contains(r, "cluster support disabled")) {
        return rp_op__fail(op, RP_EINVAL, "%s: %s:%d is not a Redis Cluster node (%.*s): a "
                           "redis+cluster:// url needs one", rp_op_name(op),
                           asked ? asked->host : "?", asked ? asked->port : 0,
                           RP_REPLY_QUOTE_MAX, r->str);
    } else if (r->type == RP_REPLY_ERROR && rp_reply_error_status(r) == RP_EAUTH) {
        /* the url's credentials are every node's: no other node will take them either */
        return rp_op__fail(op, RP_EAUTH, "%s: %s:%d: %.*s", rp_op_name(op),
                           asked ? asked->host : "?", asked ? asked->port : 0,
                           RP_REPLY_QUOTE_MAX, r->str);
    } else if (r->type == RP_REPLY_ERROR) {
        snprintf(why, sizeof why, "%.*s", RP_REPLY_QUOTE_MAX, r->str);
    } else {
        rc = rp_cluster_map__use_slots(n->map)
                 ? rp_cluster__parse_slots(r, asked ? asked->host : "", op->alloc, &t, why,
                                           sizeof why)
                 : rp_cluster__parse_shards(r, u->tls, asked ? asked->host : "", op->alloc, &t,
                                            why, sizeof why);
        if (rc == RP_ENOMEM)
            return rp_op__fail(op, RP_ENOMEM, "out of memory reading the cluster's topology");
        if (rc == RP_OK && t.nranges == 0) {
            snprintf(why, sizeof why, "it serves no slots");
            rc = RP_EPROTOCOL;
        } else if (rc == RP_OK) {
            rc = rp_cluster_map__apply(n->map, &t);
            rp_cluster__topology_free(&t, op->alloc);
            if (rc)
                return rp_op__fail(op, RP_ENOMEM, "out of memory keeping the cluster's topology");
            n->want_refresh = 0;
            n->refresh_attempt = 0;
            refresh_over(op, n);
            if (!all_served(n)) {
                if (n->may_wait) {
                    n->want_refresh = 1;
                    *again = 0;
                    *wait = 1;
                } else {
                    /* out of pauses: the slot is still unserved (a failover not over) */
                    char q[RP_ARG_QUOTE_MAX + 4];
                    size_t j;
                    for (j = 0; j < n->first_new && !cmd_pending(n, &n->cmds[j]); j++)
                        ;
                    if (j < n->first_new)
                        first_key(n, &n->cmds[j], q, sizeof q);
                    else
                        snprintf(q, sizeof q, "?");
                    node_fail(n, RP_ETRANSPORT, n->last_why[0] ? n->last_why : "the cluster is down");
                    snprintf(n->why + strlen(n->why), sizeof n->why - strlen(n->why),
                             " (no master of the cluster serves hash slot %ld (of '%s') after "
                             "%u tries: the cluster is down, failing over, or the slot is "
                             "unassigned)", j < n->first_new ? n->cmds[j].slot : -1L, q,
                             n->retries);
                    n->unsent = 1;
                    *again = 0;
                }
            }
            return RP_OK;
        }
        rp_cluster__topology_free(&t, op->alloc);
    }
    if (op->cls->enough) {
        /* a quorum op does not wait for a second try: the node failed this round, none of
         * its own commands sent (its cluster is asked again next time) */
        if (n->target >= 0 && n->status != RP_ECANCELED)
            rp_cluster_map__node_failed(n->map, (size_t)n->target);
        refresh_over(op, n);
        n->listening = 0;
        n->refreshing = 0;
        node_fail(n, n->status != RP_OK ? n->status : RP_EPROTOCOL, why);
        n->unsent = 1;
        *again = 0;
        return RP_OK;
    }
    /* that node could not say: the next one, within one command timeout in all */
    n->refresh_attempt++;
    if (rp_cluster_map__source(n->map, n->refresh_attempt) < 0 ||
        rp_monotonic_ms() - n->refresh_since >=
            rp_client__options(op->client)->command_timeout_ms)
        return rp_op__fail(op, n->status != RP_OK ? n->status : RP_EPROTOCOL,
                           "%s: no node of the cluster told its topology (asked %zu; the "
                           "last, %s:%d: %s)", rp_op_name(op), n->refresh_attempt,
                           asked ? asked->host : "?", asked ? asked->port : 0, why);
    return RP_OK;
}

/* Node i's connection failed: the map is read again before the next request; a request
 * that never left is sent again after a pause (the failover may be under way). */
static int after_failure(rp_op *op, rp_node_io *n, int *wait)
{
    if (n->status == RP_ECANCELED)
        return RP_OK; /* not waited for (a quorum had its answers): nothing is wrong there */
    if (n->target >= 0)
        rp_cluster_map__node_failed(n->map, (size_t)n->target);
    if (op->cls->long_lived)
        n->target = -1; /* it reconnects wherever the map says then */
    /* only a connection that could not be made is worth another try (a refused handshake,
     * RP_EAUTH, or no memory stay); quorum ops (enough) and subscriptions decide themselves */
    if (!n->unsent || (n->status != RP_ETRANSPORT && n->status != RP_ETIMEOUT) ||
        op->cls->enough || op->cls->long_lived || !n->may_wait)
        return RP_OK;
    snprintf(n->last_why, sizeof n->last_why, "%s", n->why);
    {
        size_t j; /* an ASK is good for one try: after the read, by the map */
        for (j = 0; j < n->first_new; j++)
            n->cmds[j].ask = -1;
    }
    n->want_refresh = 1;
    n->refresh_attempt = 0;
    *wait = 1;
    return RP_OK;
}

/* Node i answered: its redirected commands go again (at once, or after a pause). */
static int after_replies(rp_op *op, rp_node_io *n, int *again, int *wait)
{
    size_t j;
    for (j = 0; j < n->first_new; j++) {
        rp_cmd *c = &n->cmds[j];
        rp_redirect rd;
        if (!c->reply) {
            *again = 1; /* bound for another master: its round comes */
            continue;
        }
        if (needs_resend(c)) {
            if (is_shebang_refused(c))
                rp_script__learn_pre7(rp_client__scripts(op->client), n->endpoint);
            c->as_eval = 1;
            rp_reply_free(c->reply);
            c->reply = NULL;
            *again = 1;
            continue;
        }
        rd = rp_cluster__redirect(c->reply);
        if (rd.kind == RP_REDIRECT_MOVED || rd.kind == RP_REDIRECT_ASK) {
            const rp_cluster_node *from = rp_cluster_map__node(n->map, (size_t)n->target);
            long to;
            if (++c->redirects > RP_CLUSTER_REDIRECTS_MAX)
                return rp_op__fail(op, RP_EREPLY, "%s: more than %d cluster redirects for "
                                   "one command (the last: %.*s)", rp_op_name(op),
                                   RP_CLUSTER_REDIRECTS_MAX, RP_REPLY_QUOTE_MAX, c->reply->str);
            to = rp_cluster_map__intern(n->map, rd.host[0] || !from ? rd.host : from->host,
                                        rd.port);
            if (to < 0)
                return rp_op__fail(op, RP_ENOMEM, "out of memory following a cluster redirect");
            if (rd.kind == RP_REDIRECT_MOVED) {
                rp_cluster_map__moved(n->map, rd.slot, (size_t)to);
                c->ask = -1;
            } else {
                c->ask = to;
            }
        } else if ((rd.kind == RP_REDIRECT_TRYAGAIN || rd.kind == RP_REDIRECT_CLUSTERDOWN) &&
                   n->may_wait) {
            *wait = 1;
            if (rd.kind == RP_REDIRECT_CLUSTERDOWN) {
                n->want_refresh = 1;
                n->refresh_attempt = 0;
                c->ask = -1;
            }
        } else {
            continue; /* a final answer (TRYAGAIN past the retries: Redis' words stand) */
        }
        rp_reply_free(c->reply);
        c->reply = NULL;
        *again = 1;
    }
    return RP_OK;
}

/* After every round: what the cluster nodes need before advance() may read their replies.
 * Returns 0 (nothing: go on), RP_STEP_IO (a new round is ready), RP_STEP_SLEEP (the
 * engine's own wait) or a negative status (the op failed). */
static int cluster_after_round(rp_op *op)
{
    uint64_t delay = 0;
    size_t i;
    int io = 0, rc;
    if (op->cancelled)
        return 0; /* the op's own clean-up reads the round as it is */
    for (i = 0; i < op->nnodes; i++) {
        rp_node_io *n = &op->nodes[i];
        int again = 0, wait = 0;
        uint64_t d = (uint64_t)RP_CLUSTER_RETRY_MIN_MS << (n->retries < 16 ? n->retries : 16);
        uint64_t now = rp_monotonic_ms();
        if (!n->map || n->listening || n->ninflight == 0)
            continue;
        /* the pauses of one request: at most RP_CLUSTER_RETRIES_MAX, within one command
         * timeout */
        d = d > RP_CLUSTER_RETRY_MAX_MS ? RP_CLUSTER_RETRY_MAX_MS : d;
        n->may_wait = n->retries < RP_CLUSTER_RETRIES_MAX &&
                      (n->retries ? now - n->retry_since : 0) + d <=
                          rp_client__options(op->client)->command_timeout_ms;
        if (n->refreshing)
            rc = after_refresh(op, i, n, &again, &wait);
        else if (n->status != RP_OK)
            rc = after_failure(op, n, &wait);
        else
            rc = after_replies(op, n, &again, &wait);
        if (rc < 0)
            return rc;
        if (wait) {
            if (n->retries == 0)
                n->retry_since = now;
            n->retries++;
            n->wake = 1;
            delay = d > delay ? d : delay;
        } else if (again) {
            if ((rc = reset_status(op, n)) || (rc = cluster_dispatch(op, n)))
                return rc;
            if (n->listening)
                forget_listened(op, n);
            io = 1;
        }
    }
    if (io) {
        /* a node waiting for its pause goes now too (the others' round is due anyway) */
        for (i = 0; i < op->nnodes; i++)
            if (op->nodes[i].wake) {
                op->nodes[i].wake = 0;
                if ((rc = reset_status(op, &op->nodes[i])) ||
                    (rc = cluster_dispatch(op, &op->nodes[i])))
                    return rc;
            }
        op->enough = 0; /* the new round is waited for */
        return RP_STEP_IO;
    }
    if (delay) {
        op->sleep_ms = delay;
        op->phase = PHASE_RETRY_SLEEP;
        return RP_STEP_SLEEP;
    }
    return 0;
}

/* The engine's pause is over: the nodes that waited send again. Returns RP_STEP_IO, or
 * 0 when the op was cancelled meanwhile (their commands then count as never sent). */
static int cluster_wake(rp_op *op)
{
    size_t i;
    int rc;
    op->phase = PHASE_IO;
    for (i = 0; i < op->nnodes; i++) {
        rp_node_io *n = &op->nodes[i];
        if (!n->wake)
            continue;
        n->wake = 0;
        if (op->cancelled) {
            /* whatever the round ended with (an unsent failure too): it was cancelled */
            if ((rc = reset_status(op, n)))
                return rc;
            node_fail(n, RP_ECANCELED, "cancelled while waiting to retry on the cluster");
            n->unsent = 1; /* what was refused (TRYAGAIN, CLUSTERDOWN) did not run */
            continue;
        }
        if ((rc = reset_status(op, n)) || (rc = cluster_dispatch(op, n)))
            return rc;
    }
    if (op->cancelled)
        return 0;
    op->enough = 0;
    return RP_STEP_IO;
}


static int fail_op(rp_op *op, int code, const char *why)
{
    rp_error__set(&op->err, code, "%s", why);
    op->phase = PHASE_ERROR;
    return RP_STEP_ERROR;
}

/* A cancelled op that cleans up nothing says what its last round may have done: the
 * caller must know whether a write may have happened. Only a round that the cancel broke
 * counts (a cancel during a sleep leaves nothing in flight). */
static int fail_cancelled(rp_op *op)
{
    size_t i;
    int in_doubt = 0, answered = 0;
    for (i = 0; op->phase == PHASE_IO && i < op->nnodes; i++) {
        if (rp_op__in_doubt(op, i))
            in_doubt = 1;
        else if (op->nodes[i].first_new > 0 && op->nodes[i].status == RP_OK)
            answered = 1;
    }
    rp_error__set(&op->err, RP_ECANCELED, "%s: cancelled%s", rp_op_name(op),
                  in_doubt   ? " with its request in flight: it may have taken effect"
                  : answered ? " after Redis answered: it took effect"
                             : "");
    op->phase = PHASE_ERROR;
    return RP_STEP_ERROR;
}

static rp_step run_advance(rp_op *op, uint64_t now_ms)
{
    int rc, any;
    op->sleep_ms = 0;
    op->finished = 0;
    op->emit = 0;
    op->enough = 0;
    rp_error_clear(&op->err);
    if (op->cancelled && !op->cls->handles_cancel)
        return (rp_step)fail_cancelled(op);
    rc = op->cls->advance(op, op->state, now_ms);
    if (rc < 0) {
        if (op->err.code == RP_OK)
            rp_error__set(&op->err, rc, "%s failed", op->cls->name);
        op->phase = PHASE_ERROR;
        return RP_STEP_ERROR;
    }
    if (op->finished) {
        op->phase = PHASE_DONE;
        return RP_STEP_DONE;
    }
    if (op->emit) {
        op->phase = PHASE_EMIT;
        return RP_STEP_EMIT;
    }
    if (op->child_active) {
        op->phase = PHASE_CHILD;
        return rp_op_step(op, now_ms);
    }
    if (op->call == CALL_ASKED) {
        op->call = CALL_RUNNING;
        op->phase = PHASE_CALL;
        return RP_STEP_CALL;
    }
    if ((rc = start_round(op, &any)) < 0) {
        op->phase = PHASE_ERROR;
        return RP_STEP_ERROR;
    }
    if (any) {
        op->phase = PHASE_IO;
        return RP_STEP_IO;
    }
    if (op->sleep_ms > 0 || op->call == CALL_RUNNING) {
        /* with a callback running and nothing else to do: wait for the callback */
        if (op->sleep_ms == 0)
            op->sleep_ms = RP_SLEEP_UNTIL_RESUMED;
        op->phase = PHASE_SLEEP;
        return RP_STEP_SLEEP;
    }
    return (rp_step)fail_op(op, RP_ESTATE, "operation made no progress");
}

/* A node has all it is owed this round (or a listening node has messages). */
static int node_complete(const rp_node_io *n)
{
    if (n->status != RP_OK)
        return 1;
    if (n->listening)
        return n->nmsgs > 0;
    return n->received >= n->ninflight;
}

static int node_in_round(const rp_node_io *n)
{
    return n->ninflight > 0 || n->listening;
}

/* A cluster node's reply that the engine follows (a redirect, or a retryable refusal
 * while retries remain): not the node's answer. */
static int cluster_resend(const rp_node_io *n, const rp_cmd *c)
{
    rp_redirect_kind k;
    if (!n->map || !c->reply || c->reply->type != RP_REPLY_ERROR)
        return 0;
    k = rp_cluster__redirect(c->reply).kind;
    return k == RP_REDIRECT_MOVED || k == RP_REDIRECT_ASK ||
           ((k == RP_REDIRECT_TRYAGAIN || k == RP_REDIRECT_CLUSTERDOWN) &&
            n->retries < RP_CLUSTER_RETRIES_MAX);
}

/* A node answered NOSCRIPT (or rejected a shebang) in this round, or a cluster node's
 * reply is to be followed: its real answer comes in a later round. */
static int any_noscript(const rp_op *op)
{
    size_t i, j;
    for (i = 0; i < op->nnodes; i++) {
        const rp_node_io *n = &op->nodes[i];
        for (j = 0; !n->listening && j < n->received; j++)
            if (!(n->inflight[j] & RP_SYS_CMD) && (needs_resend(&n->cmds[n->inflight[j]]) ||
                                                  cluster_resend(n, &n->cmds[n->inflight[j]])))
                return 1;
    }
    return 0;
}

/* After a node completes: may the round end before the others? Not while a NOSCRIPT
 * answer stands for a node's real one: every target is then waited for, and those that
 * forgot the script are asked again (a node abandoned now would never be asked again). */
static void check_enough(rp_op *op)
{
    if (!op->enough && op->cls->enough && !any_noscript(op) && op->cls->enough(op, op->state))
        op->enough = 1;
}

/* A round is complete: resend what needs it (cluster redirects, NOSCRIPT), or hand the
 * replies to advance(). */
static rp_step end_of_round(rp_op *op, uint64_t now_ms)
{
    size_t i;
    int rc, cluster = cluster_after_round(op), again;
    if (cluster < 0) {
        op->phase = PHASE_ERROR;
        return RP_STEP_ERROR;
    }
    again = retry_noscript(op, &rc);
    if (rc < 0) {
        op->phase = PHASE_ERROR;
        return RP_STEP_ERROR;
    }
    if (again) {
        /* the plain nodes' retry round goes now: a cluster node's pause is cut short */
        if (cluster == RP_STEP_SLEEP && (rc = cluster_wake(op)) < 0) {
            op->phase = PHASE_ERROR;
            return RP_STEP_ERROR;
        }
        op->phase = PHASE_IO;
        op->enough = 0; /* the retried targets are waited for in their new round */
        return RP_STEP_IO;
    }
    if (cluster == RP_STEP_IO || cluster == RP_STEP_SLEEP)
        return (rp_step)cluster;
    /* a cancelled op that handles cancel reads its broken round itself: a request may
     * have been sent and left unanswered (rp_op__in_doubt), and it may compensate */
    if (!op->cls->tolerates_node_failures && !(op->cancelled && op->cls->handles_cancel)) {
        for (i = 0; i < op->nnodes; i++)
            if (op->nodes[i].status != RP_OK)
                return (rp_step)fail_op(op, op->nodes[i].status, op->nodes[i].why);
    }
    return run_advance(op, now_ms);
}

rp_step rp_op_step(rp_op *op, uint64_t now_ms)
{
    size_t i;
    int rc;
    if (op->child_active) {
        rp_step st = rp_op_step(op->child, now_ms);
        if (st != RP_STEP_DONE && st != RP_STEP_ERROR)
            return st;
        op->child_active = 0;
        op->child_end = st;
        return run_advance(op, now_ms);
    }
    switch (op->phase) {
    case PHASE_DONE:
        return RP_STEP_DONE;
    case PHASE_ERROR:
        return RP_STEP_ERROR;
    case PHASE_IO:
        for (i = 0; i < op->nnodes; i++) {
            rp_node_io *n = &op->nodes[i];
            if (!node_in_round(n) || node_complete(n))
                continue;
            if (n->listening)
                continue; /* a poll: the driver may step a listening op at any time */
            if (!op->enough)
                return (rp_step)fail_op(op, RP_ESTATE,
                                        "stepped before every reply was fed");
            node_fail(n, RP_ECANCELED, "not waited for: the round had enough answers");
        }
        return end_of_round(op, now_ms);
    case PHASE_RETRY_SLEEP:
        if ((rc = cluster_wake(op)) < 0) {
            op->phase = PHASE_ERROR;
            return RP_STEP_ERROR;
        }
        return rc == RP_STEP_IO ? RP_STEP_IO : end_of_round(op, now_ms);
    case PHASE_CALL:
        /* the driver has started the callback and steps on meanwhile */
        return run_advance(op, now_ms);
    default:
        return run_advance(op, now_ms);
    }
}

/* --- driver side -------------------------------------------------------------------- */

size_t rp_op_nodes(const rp_op *op) { return live_c(op)->nnodes; }

int rp_op_request(const rp_op *op, size_t node, const char **bytes, size_t *len)
{
    op = live_c(op);
    *bytes = NULL;
    *len = 0;
    if (node >= op->nnodes)
        return RP_EINVAL;
    if (op->phase != PHASE_IO)
        return RP_ESTATE;
    /* only a target still waited for has something to send: in a NOSCRIPT retry round the
     * others keep their last request, which must not go out again. A listening round keeps
     * no inflight list, but sends what was queued all the same. */
    if (rp_op_pending(op, node) && (op->nodes[node].ninflight > 0 || op->nodes[node].listening)) {
        *bytes = op->nodes[node].out.data;
        *len = op->nodes[node].out.len;
    }
    return RP_OK;
}

static int node_fail(rp_node_io *n, int status, const char *why)
{
    if (n->status == RP_OK) {
        n->status = status < 0 ? status : RP_ETRANSPORT;
        snprintf(n->why, sizeof n->why, "%s", why ? why : rp_status_name(n->status));
    }
    return n->status;
}

static int feed_listening(rp_op *op, rp_node_io *n, const char *buf, size_t len)
{
    if (len > 0 && redisReaderFeed(n->reader, buf, len) != REDIS_OK)
        return node_fail(n, RP_ENOMEM, "out of memory buffering a message");
    for (;;) {
        void *obj = NULL;
        if (rp_reply__reader_next(n->reader, &obj) != REDIS_OK) {
            char why[RP_ERROR_MESSAGE_MAX];
            int st = rp_reply__reader_why(n->reader, "bad message", why, sizeof why);
            return node_fail(n, st, why);
        }
        if (!obj)
            break;
        if (n->nmsgs == n->capmsgs) {
            size_t cap = n->capmsgs ? n->capmsgs * 2 : 8;
            rp_reply **p = rp_alloc__realloc(op->alloc, n->msgs, cap * sizeof *p);
            if (!p) {
                rp_reply_free(obj);
                return node_fail(n, RP_ENOMEM, "out of memory buffering a message");
            }
            n->msgs = p;
            n->capmsgs = cap;
        }
        n->msgs[n->nmsgs++] = obj;
    }
    if (n->nmsgs == 0)
        return RP_MORE;
    check_enough(op);
    return RP_OK;
}

/* Redis answers a request it could not parse (or, unauthenticated, one of more than 10
 * arguments) with "-ERR Protocol error: ..." and then closes the connection: the node fails
 * with Redis' words, so no driver pools a connection about to be closed. */
#define RP_PROTOCOL_ERROR "ERR Protocol error"

static int closes_connection(const rp_reply *r)
{
    size_t n = sizeof RP_PROTOCOL_ERROR - 1;
    return r->type == RP_REPLY_ERROR && r->len >= n && memcmp(r->str, RP_PROTOCOL_ERROR, n) == 0;
}

int rp_op_feed(rp_op *op, size_t node, const char *buf, size_t len)
{
    rp_node_io *n;
    int rc;
    op = live(op);
    if (node >= op->nnodes)
        return RP_EINVAL;
    n = &op->nodes[node];
    if (op->phase == PHASE_IO && n->listening)
        return n->status != RP_OK ? n->status : feed_listening(op, n, buf, len);
    if (op->phase != PHASE_IO || n->received >= n->ninflight)
        return op->phase != PHASE_IO ? RP_ESTATE
                                     : node_fail(n, RP_EPROTOCOL, "bytes after the last reply");
    if (n->status != RP_OK)
        return n->status;
    if (len > 0 && redisReaderFeed(n->reader, buf, len) != REDIS_OK)
        return node_fail(n, RP_ENOMEM, "out of memory buffering a reply");
    while (n->received < n->ninflight) {
        void *obj = NULL;
        if (rp_reply__reader_next(n->reader, &obj) != REDIS_OK) {
            char why[RP_ERROR_MESSAGE_MAX];
            int st = rp_reply__reader_why(n->reader, "bad reply", why, sizeof why);
            return node_fail(n, st, why);
        }
        if (!obj)
            return RP_MORE;
        {
            size_t at = n->inflight[n->received++];
            rp_cmd *c = at & RP_SYS_CMD ? &n->sys[at & ~RP_SYS_CMD] : &n->cmds[at];
            c->reply = obj;
            if (closes_connection(obj)) {
                /* a failed node's connection is closed by every driver, never pooled */
                rc = node_fail(n, rp_reply_error_status(c->reply), c->reply->str);
                check_enough(op);
                return rc;
            }
            if (c->script) /* what the target knows of the script, for the next calls */
                learn_script(op, n, c);
        }
    }
    if (n->reader->pos < n->reader->len)
        rc = node_fail(n, RP_EPROTOCOL, "bytes after the last reply");
    else
        rc = RP_OK;
    check_enough(op);
    return rc;
}

void rp_op_fail_node(rp_op *op, size_t node, int status, const char *why)
{
    op = live(op);
    if (op->phase == PHASE_IO && node < op->nnodes) {
        node_fail(&op->nodes[node], status, why);
        check_enough(op);
    }
}

void rp_op_fail_node_unsent(rp_op *op, size_t node, int status, const char *why)
{
    op = live(op);
    if (op->phase == PHASE_IO && node < op->nnodes && op->nodes[node].status == RP_OK) {
        node_fail(&op->nodes[node], status, why);
        op->nodes[node].unsent = 1; /* only when this is the node's first failure */
        check_enough(op);
    }
}

uint64_t rp_op_timeout_ms(const rp_op *op) { return live_c(op)->timeout_ms; }

int rp_op_pending(const rp_op *op, size_t node)
{
    const rp_node_io *n;
    op = live_c(op);
    if (op->phase != PHASE_IO || node >= op->nnodes)
        return 0;
    n = &op->nodes[node];
    return node_in_round(n) && !node_complete(n);
}

size_t rp_op_replies_owed(const rp_op *op, size_t node)
{
    const rp_node_io *n;
    if (!rp_op_pending(op, node))
        return 0;
    n = &live_c(op)->nodes[node];
    return n->listening ? 0 : n->ninflight - n->received;
}

int rp_op_round_over(const rp_op *op)
{
    size_t i;
    int listening = 0, heard = 0;
    op = live_c(op);
    if (op->phase != PHASE_IO)
        return 1;
    if (op->enough)
        return 1;
    for (i = 0; i < op->nnodes; i++) {
        const rp_node_io *n = &op->nodes[i];
        if (n->listening) {
            listening = 1;
            heard |= node_complete(n);
        } else if (node_in_round(n) && !node_complete(n)) {
            return 0;
        }
    }
    return !listening || heard;
}

int rp_op_long_lived(const rp_op *op) { return op->cls && op->cls->long_lived; }

int rp_op_listening(const rp_op *op, size_t node)
{
    op = live_c(op);
    return op->phase == PHASE_IO && node < op->nnodes && op->nodes[node].listening;
}

int rp_op_target(const rp_op *op, size_t node, rp_endpoint *out)
{
    const rp_node_io *n;
    const rp_cluster_node *cn;
    op = live_c(op);
    if (node >= op->nnodes)
        return RP_EINVAL;
    n = &op->nodes[node];
    if (n->map && n->target >= 0 && (cn = rp_cluster_map__node(n->map, (size_t)n->target))) {
        const rp_url *u = rp_cluster_map__url(n->map);
        memset(out, 0, sizeof *out);
        out->address = cn->address;
        out->host = cn->host;
        out->port = cn->port;
        out->user = u->user;
        out->password = u->password;
        out->tls = u->tls;
        return RP_OK;
    }
    return rp_client_endpoint_at(op->client, n->endpoint, out);
}

void rp_op_cancel(rp_op *op)
{
    if (!op || op->phase == PHASE_DONE || op->phase == PHASE_ERROR)
        return;
    /* a child's wait is abandoned too; its I/O is not (a clean-up may be running), unless
     * the child handles cancel itself (an acquire releases what its attempt may have
     * taken) */
    if (op->child_active && (live(op)->phase == PHASE_SLEEP ||
                             live(op)->phase == PHASE_RETRY_SLEEP || live(op)->cls->handles_cancel))
        rp_op_cancel(op->child);
    op->cancelled = 1;
    if (op->call == CALL_RUNNING) {
        op->call = CALL_ENDED;
        op->call_status = RP_ECANCELED;
        op->call_has_value = 0;
        op->call_bytes.len = 0;
        rp_buf__append(op->alloc, &op->call_bytes, "cancelled", 9);
    }
}

/* --- CALL and EMIT, driver side ------------------------------------------------------ */

int rp_op_call(const rp_op *op, size_t *arg, rp_value *values, size_t max, size_t *count)
{
    size_t i, n;
    if (op)
        op = live_c(op);
    if (!op || op->phase != PHASE_CALL)
        return RP_ESTATE;
    if (arg)
        *arg = op->call_arg;
    n = op->call_count < max ? op->call_count : max;
    for (i = 0; values && i < n; i++)
        values[i] = op->call_values[i];
    if (count)
        *count = values ? n : 0;
    return RP_OK;
}

int rp_op_resume(rp_op *op, const rp_value *result)
{
    const char *bytes = NULL;
    size_t len = 0;
    int status = RP_OK;
    if (!op || (live(op)->phase == PHASE_IO && !rp_op_round_over(op)))
        return RP_ESTATE;
    while (op->call != CALL_RUNNING && op->child_active)
        op = op->child; /* the op whose callback it was */
    if (op->call != CALL_RUNNING)
        return RP_ESTATE;
    if (result && result->type == RP_TYPE_STATUS) {
        status = result->i == RP_ECANCELED ? RP_ECANCELED : RP_ECALLBACK;
        bytes = result->bytes;
        len = result->len;
    } else if (result && result->type == RP_TYPE_BYTES) {
        bytes = result->bytes;
        len = result->len;
    } else if (result && result->type != RP_TYPE_NONE) {
        return RP_EINVAL;
    }
    op->call_bytes.len = 0;
    if (len > 0 && rp_buf__append(op->alloc, &op->call_bytes, bytes, len) != RP_OK)
        return RP_ENOMEM;
    op->call_has_value = status == RP_OK && result && result->type == RP_TYPE_BYTES;
    op->call_status = status;
    op->call = CALL_ENDED;
    if (status == RP_ECANCELED)
        op->cancelled = 1;
    return RP_OK;
}

uint64_t rp_op_sleep_ms(const rp_op *op)
{
    op = live_c(op);
    return op->phase == PHASE_SLEEP || op->phase == PHASE_RETRY_SLEEP ? op->sleep_ms : 0;
}

/* The phase as the last step reported it (describe.c reads EMIT messages only then). */
int rp_op__emitting(const rp_op *op) { return op && op->phase == PHASE_EMIT; }

const rp_error *rp_op_error(const rp_op *op) { return &op->err; }

const char *rp_op_name(const rp_op *op)
{
    if (op->desc)
        return op->desc->name;
    return op->cls ? op->cls->name : "op";
}

/* --- pattern side ------------------------------------------------------------------- */

const void *rp_op__done_state(const rp_op *op, const rp_op_class *cls)
{
    return (op && op->cls == cls && op->phase == PHASE_DONE) ? op->state : NULL;
}

void *rp_op__state(const rp_op *op, const rp_op_class *cls)
{
    return (op && op->cls == cls) ? op->state : NULL;
}

rp_client *rp_op__client(const rp_op *op) { return op->client; }

void rp_op__set_desc(rp_op *op, const rp_op_desc *desc) { op->desc = desc; }
const rp_op_desc *rp_op_desc_of(const rp_op *op) { return op ? op->desc : NULL; }
int rp_op_done(const rp_op *op) { return op && op->phase == PHASE_DONE; }

size_t rp_op__replies(const rp_op *op, size_t node)
{
    if (node >= op->nnodes)
        return 0;
    return op->nodes[node].listening ? op->nodes[node].nmsgs : op->nodes[node].first_new;
}

const rp_reply *rp_op__reply(const rp_op *op, size_t node, size_t index)
{
    const rp_node_io *n;
    if (node >= op->nnodes)
        return NULL;
    n = &op->nodes[node];
    if (n->listening)
        return index < n->nmsgs ? n->msgs[index] : NULL;
    if (index >= n->first_new)
        return NULL;
    return n->cmds[index].reply;
}

rp_reply *rp_op__take_reply(rp_op *op, size_t node, size_t index)
{
    rp_node_io *n;
    rp_reply *r;
    if (node >= op->nnodes)
        return NULL;
    n = &op->nodes[node];
    if (n->listening) {
        if (index >= n->nmsgs)
            return NULL;
        r = n->msgs[index];
        n->msgs[index] = NULL;
        return r;
    }
    if (index >= n->first_new)
        return NULL;
    r = n->cmds[index].reply;
    n->cmds[index].reply = NULL;
    return r;
}

int rp_op__node_status(const rp_op *op, size_t node)
{
    return node < op->nnodes ? op->nodes[node].status : RP_EINVAL;
}

const char *rp_op__node_why(const rp_op *op, size_t node)
{
    return node < op->nnodes ? op->nodes[node].why : "";
}

void rp_op__sleep(rp_op *op, uint64_t ms) { op->sleep_ms = ms ? ms : 1; }

void rp_op__done(rp_op *op) { op->finished = 1; }

void rp_op__timeout(rp_op *op, uint64_t ms) { op->timeout_ms = ms; }

void rp_op__listen(rp_op *op, size_t node)
{
    if (node < op->nnodes)
        op->nodes[node].listen = 1;
}

void rp_op__emit(rp_op *op) { op->emit = 1; }

void rp_op__call(rp_op *op, size_t arg)
{
    rp_op__call_with(op, arg, NULL, 0);
}

void rp_op__call_with(rp_op *op, size_t arg, const rp_value *values, size_t count)
{
    op->call = CALL_ASKED;
    op->call_arg = arg;
    op->call_values = values;
    op->call_count = values ? count : 0;
}

int rp_op__idle_during_call(const rp_op *op) { return live_c(op)->cls->idle_during_call; }

int rp_op__call_running(const rp_op *op) { return op->call == CALL_RUNNING || op->call == CALL_ASKED; }

int rp_op__call_result(const rp_op *op, const char **bytes, size_t *len)
{
    *bytes = NULL;
    *len = 0;
    if (op->call != CALL_ENDED)
        return RP_ESTATE;
    if (op->call_status != RP_OK || op->call_has_value) {
        *bytes = op->call_bytes.data ? op->call_bytes.data : "";
        *len = op->call_bytes.len;
    }
    return op->call_status;
}

int rp_op__cancelled(const rp_op *op) { return op->cancelled; }

int rp_op__in_doubt(const rp_op *op, size_t node)
{
    const rp_node_io *n;
    size_t j;
    if (node >= op->nnodes)
        return 0;
    n = &op->nodes[node];
    if (n->status == RP_OK || n->listening || n->unsent)
        return 0;
    for (j = 0; j < n->first_new; j++)
        if (!n->cmds[j].reply)
            return 1;
    return 0;
}

void rp_op__delegate(rp_op *op, rp_op *child)
{
    rp_op_free(op->child);
    op->child = child;
    op->child_active = 1;
    op->child_end = RP_STEP_IO;
}

rp_op *rp_op__child(const rp_op *op) { return op->child_active ? NULL : op->child; }

int rp_op__child_failed(const rp_op *op) { return !op->child_active && op->child && op->child_end == RP_STEP_ERROR; }

int rp_op__fail(rp_op *op, int code, const char *fmt, ...)
{
    va_list ap;
    op->err.code = code;
    va_start(ap, fmt);
    vsnprintf(op->err.message, sizeof op->err.message, fmt, ap);
    va_end(ap);
    return code;
}


/* --- the clock (the blocking driver is drive.c) ------------------------------------- */

uint64_t rp_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
