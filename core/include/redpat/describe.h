/* redpat — every operation described as data.
 *
 * One table describes every op of every pattern, constructors included: its name
 * ("lock.acquire"), the kind of handle it acts on, its named typed arguments (with defaults
 * and bounds) and its named typed result fields. Bindings and matrix runners use it to
 * perform any op by name with ONE generic marshaller per language:
 *
 *     const rp_op_desc *d = rp_desc_find("lock.acquire", 12);
 *     rp_value args[RP_DESC_ARGS_MAX] = {0};      // all absent: the defaults
 *     args[rp_desc_arg_index(d, "lock")] = rp_value_handle(RP_KIND_LOCK, lock);
 *     args[rp_desc_arg_index(d, "wait")] = rp_value_int(RP_TYPE_MS, 2000);
 *     rp_op *op;
 *     if (rp_desc_begin(&op, d, args, NULL, &err) == RP_OK) {
 *         ... drive op to DONE (rp_client_run) ...
 *         rp_value fields[RP_DESC_FIELDS_MAX];
 *         rp_op_result(op, 0, fields);            // fields[i] is d->fields[i]
 *     }
 *
 * Constructors (d->makes != NULL: "client.new", "lock.new", "ratelimit.new") make a handle
 * with rp_desc_make instead; handles are freed with rp_handle_free(kind, handle).
 *
 * The generic begin checks every argument against its descriptor before calling the typed
 * C API (which every descriptor calls, so every frontend exercises it). Error messages name
 * the argument as the *user* wrote it, in their units, through an rp_naming the frontend
 * supplies (Python says `timeout` in seconds where the core says `ttl` in ms). */
#ifndef REDPAT_DESCRIBE_H
#define REDPAT_DESCRIBE_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "error.h"
#include "op.h"
#include "reply.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rp_type {
    RP_TYPE_NONE = 0,   /* an absent argument (take the default), or no value */
    RP_TYPE_BYTES = 1,  /* binary-safe bytes: bytes, len */
    RP_TYPE_INT = 2,    /* int64: i */
    RP_TYPE_MS = 3,     /* a duration in milliseconds: i (INT64_MAX: forever, where allowed) */
    RP_TYPE_FLOAT = 4,  /* double: f */
    RP_TYPE_BOOL = 5,   /* 0 / 1: i */
    RP_TYPE_ENUM = 6,   /* one of the descriptor's choices: i is its index and bytes/len its
                           name. As an argument either is accepted: a BYTES value is parsed
                           by name (the usual way for bindings), an ENUM value by index. */
    RP_TYPE_HANDLE = 7, /* a handle made by a constructor: handle, kind */
    RP_TYPE_LIST = 8,   /* items[0..count): each of the descriptor's item type */
    RP_TYPE_STATUS = 9, /* an rp_status in i (RP_OK: none) with its message in bytes/len */
    RP_TYPE_REPLY = 10, /* a raw Redis reply tree: reply (borrowed) */
    RP_TYPE_CALLBACK = 11 /* an argument only: the user's function. The core never calls it:
                             a CALL step names it (rp_op_call) and the driver runs it. Its
                             value may carry anything in handle (the core ignores it); it
                             must be present when required. */
} rp_type;

/* The kinds of handle. */
typedef enum rp_kind {
    RP_KIND_NONE = 0,
    RP_KIND_CLIENT = 1,   /* rp_client */
    RP_KIND_LOCK = 2,     /* rp_lock */
    RP_KIND_RATELIMIT = 3, /* rp_ratelimit */
    RP_KIND_SUBSCRIPTION = 4, /* rp_subscription (pubsub.h) */
    RP_KIND_CACHE = 5         /* rp_cache (cache.h) */
} rp_kind;

/* One value, argument or result field. Only the members of its type are meaningful; a
 * zeroed rp_value is absent (RP_TYPE_NONE). Result values borrow from the op (or the handle
 * it acts on) until rp_op_free. */
typedef struct rp_value {
    rp_type type;
    int64_t i;
    double f;
    const char *bytes;
    size_t len;
    void *handle;
    rp_kind kind;
    const struct rp_value *items;
    size_t count;
    const rp_reply *reply;
} rp_value;

/* Argument flags. */
#define RP_ARG_REQUIRED 1u /* absent is an error */
#define RP_ARG_SELF 2u     /* the handle the op acts on (always the first argument) */

typedef struct rp_arg_desc {
    const char *name;    /* the core's (and the matrix's) name: "ttl", "wait", "subjects" */
    rp_type type;
    rp_type item_type;   /* RP_TYPE_LIST: the type of each element */
    rp_kind kind;        /* RP_TYPE_HANDLE (or a list of them): the kind expected */
    unsigned flags;      /* RP_ARG_* */
    int64_t def;         /* absent INT / MS / BOOL / ENUM (index) arguments take this */
    int64_t min, max;    /* INT / MS: the value's bounds; BYTES: its length's; LIST: its
                            count's (the bounds of each element are min_item..max_item) */
    int64_t min_item, max_item;
    const char *const *choices; /* RP_TYPE_ENUM: the names, NULL-terminated */
    const char *doc;     /* one line, for generated stubs and docs */
} rp_arg_desc;

typedef struct rp_field_desc {
    const char *name;    /* "acquired", "retry_after", ... */
    rp_type type;        /* RP_TYPE_MS results are milliseconds */
    const char *doc;
} rp_field_desc;

/* What a DONE op's result is. */
typedef enum rp_result_shape {
    RP_RESULT_NONE = 0,   /* nothing beyond success (release, reset) */
    RP_RESULT_RECORD = 1, /* one record of the op's fields */
    RP_RESULT_LIST = 2    /* a list of records (a batch: one per subject) */
} rp_result_shape;

typedef struct rp_naming rp_naming;
typedef struct rp_op_desc rp_op_desc;

struct rp_op_desc {
    const char *name;      /* "lock.acquire": family "." verb */
    const char *verb;      /* "acquire": the method name frontends give it */
    rp_kind kind;          /* the handle it acts on (its RP_ARG_SELF argument);
                              RP_KIND_CLIENT for ops on a client */
    rp_kind makes;         /* constructors: the kind of handle made; else RP_KIND_NONE */
    int io;                /* 1: the op talks to Redis; 0: answered from the handle */
    const rp_arg_desc *args;
    size_t nargs;
    rp_result_shape shape;
    const rp_field_desc *fields;
    size_t nfields;
    const char *doc;
    /* The implementation (the typed C API behind it); bindings call rp_desc_begin /
     * rp_desc_make / rp_op_result, never these. args are checked and defaulted. */
    int (*begin)(rp_op **out, const rp_value *args, const rp_naming *nm, rp_error *err);
    int (*make)(void **out, const rp_value *args, const rp_naming *nm, rp_error *err);
    size_t (*result_count)(const rp_op *op);
    int (*result)(const rp_op *op, size_t index, rp_value *fields);
    /* Ops that EMIT (a subscription's listen): the fields of each message, and how the
     * generic reader reads the current one. NULL / 0 for every other op. */
    const rp_field_desc *message_fields;
    size_t nmessage_fields;
    int (*message)(const rp_op *op, rp_value *fields);
    /* 1: the op is long-lived (rp_op_long_lived): a driver gives it connections of its own */
    int long_lived;
};

/* The most arguments / result fields any op has: size stack arrays with these. */
#define RP_DESC_ARGS_MAX 16
#define RP_DESC_FIELDS_MAX 16

/* How a frontend's users name arguments, so errors speak their words: arg_name returns the
 * user's name for op's argument arg (NULL: the core's own), and ms_in_seconds states
 * durations in seconds ("timeout must be > 0 seconds (got -1)"). NULL naming: the core's
 * names, durations in ms. */
struct rp_naming {
    const char *(*arg_name)(void *ud, const rp_op_desc *op, size_t arg);
    void *ud;
    int ms_in_seconds;
    int index_base; /* the first item of a list as its users count it: 0 (C, Python), 1 (Lua) */
};

/* The table: rp_desc_count() descriptors, rp_desc_at(0..count). Static, never changes. */
size_t rp_desc_count(void);
const rp_op_desc *rp_desc_at(size_t index);
/* The descriptor called name (e.g. "ratelimit.check"), or NULL. */
const rp_op_desc *rp_desc_find(const char *name, size_t len);
/* The index of op's argument called name, or -1. */
int rp_desc_arg_index(const rp_op_desc *op, const char *name);
/* The index of op's result field called name, or -1. */
int rp_desc_field_index(const rp_op_desc *op, const char *name);
/* Static names: "bytes", "int", "ms", ... and "client", "lock", "ratelimit". */
const char *rp_type_name(rp_type type);
const char *rp_kind_name(rp_kind kind);

/* Begins op (d->makes == RP_KIND_NONE) from args[0..d->nargs) (absent ones take their
 * defaults). args[0] is the handle the op acts on (RP_ARG_SELF: a client for ops of kind
 * RP_KIND_CLIENT, a lock, a list of limiters, ...). Every argument is checked first; a bad
 * one fails with RP_EINVAL naming it in the user's words (nm may be NULL). No I/O.
 * The op copies every BYTES argument it keeps (names, tokens, subjects, command arguments),
 * so the caller's bytes may go once begin returns; it borrows the handles it was given:
 * free it before them. */
int rp_desc_begin(rp_op **out, const rp_op_desc *d, const rp_value *args,
                  const rp_naming *nm, rp_error *err);
/* Makes a handle (d->makes != RP_KIND_NONE), checked the same way; args[0] is the client
 * it is made from (none for "client.new"), which it borrows; BYTES arguments are copied.
 * *out belongs to the caller: rp_handle_free. */
int rp_desc_make(void **out, const rp_op_desc *d, const rp_value *args, const rp_naming *nm,
                 rp_error *err);
/* Frees a handle of kind (rp_client_free, rp_lock_free, ...). NULL is a no-op. */
void rp_handle_free(rp_kind kind, void *handle);
/* The client a handle was made from (a client is its own). */
rp_client *rp_handle_client(rp_kind kind, void *handle);

/* 1 when op is DONE (its result may be read), else 0. Never steps the op. */
int rp_op_done(const rp_op *op);
/* The descriptor op was begun from (rp_desc_begin), or NULL for ops of the typed API. */
const rp_op_desc *rp_op_desc_of(const rp_op *op);
/* How many records a DONE op's result has: 0 (RP_RESULT_NONE), 1 (RECORD), n (LIST). */
size_t rp_op_result_count(const rp_op *op);
/* Fills fields[0..d->nfields) with record index of a DONE op begun from descriptor d.
 * Values borrow from the op until rp_op_free. RP_ESTATE if op is not DONE or was not begun
 * by rp_desc_begin; RP_EINVAL for an index out of range. */
int rp_op_result(const rp_op *op, size_t index, rp_value *fields);

/* After RP_STEP_CALL: *arg is the index (in the op's descriptor) of the callback argument to
 * run, and values[0..*count) (at most max) the arguments to pass it, borrowed until
 * rp_op_resume (the op may be stepped meanwhile: it keeps them). RP_ESTATE if no CALL is
 * waiting to start. */
int rp_op_call(const rp_op *op, size_t *arg, rp_value *values, size_t max, size_t *count);
/* The callback of the current CALL has ended: result NULL (or type NONE) when it returned
 * nothing, BYTES for a value (copied), or STATUS when it failed: i is RP_ECALLBACK (it
 * raised; bytes is its message, copied) or RP_ECANCELED (the user cancelled). Call it
 * between steps (not during an IO round); the op then finishes its own work (releases the
 * lock). RP_ESTATE if no CALL is running. */
int rp_op_resume(rp_op *op, const rp_value *result);
/* After RP_STEP_EMIT: the message, fields[0..d->nmessage_fields) (borrowed until the next
 * step). RP_ESTATE otherwise. */
int rp_op_message(const rp_op *op, rp_value *fields);

/* Value constructors, for C callers and runners. */
rp_value rp_value_int(rp_type type, int64_t i);       /* INT, MS, BOOL */
rp_value rp_value_bytes(const void *bytes, size_t len);
rp_value rp_value_float(double f);
rp_value rp_value_handle(rp_kind kind, void *handle);
rp_value rp_value_list(const rp_value *items, size_t count);

#ifdef __cplusplus
}
#endif
#endif
