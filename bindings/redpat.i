/* redpat._core — the SWIG layer between the C core and python/redpat.
 *
 * Only marshalling lives here: bytes in and out (binary-safe, through the buffer protocol
 * and PyBytes_FromStringAndSize, never char*), handles with destructors, status codes
 * turned into the exception classes that python/redpat/errors.py registers, and the GIL
 * released while a call waits on the network. No pattern logic: arguments go to the core
 * as given and the core validates them.
 *
 * Handles:
 *   Client  one rp_client (a connection, or none when made with url None: then it only
 *           makes handles and ops for a driver with its own I/O, e.g. asyncio).
 *   Lock    one rp_lock; keeps a reference to the Client it was made from.
 *   Limiter one rp_ratelimit; keeps a reference to the Client it was made from.
 *   Op      one rp_op; keeps a reference to what it borrows (its Lock, Limiter(s) or Client).
 * A handle is used by one thread at a time (the Python layer sees to it). */
%module(package="redpat") _core

%{
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "redpat/redpat.h"

typedef struct rpy_client { rp_client *c; } rpy_client;
typedef struct rpy_lock { rp_lock *l; PyObject *owner; } rpy_lock;
typedef struct rpy_op { rp_op *op; PyObject *owner; } rpy_op;
typedef struct rpy_limiter { rp_ratelimit *rl; PyObject *owner; } rpy_limiter;

/* Registered by python/redpat/ratelimit.py: the class decisions are built as. */
static PyObject *rpy_decision_class = NULL;

/* Registered by python/redpat/errors.py: status code -> exception class, and the base. */
static PyObject *rpy_error_map = NULL;
static PyObject *rpy_error_base = NULL;

/* The exception registered for code, built as Class(message, code) but not raised; NULL
 * with an exception set if that fails. */
static PyObject *rpy_error_object(int code, const char *message) {
    PyObject *cls = NULL, *key, *exc, *msg;
    if (rpy_error_map != NULL) {
        key = PyLong_FromLong(code);
        if (key == NULL) return NULL;
        cls = PyDict_GetItemWithError(rpy_error_map, key);
        Py_DECREF(key);
        if (cls == NULL && PyErr_Occurred()) return NULL;
    }
    if (cls == NULL) cls = rpy_error_base;
    if (cls == NULL) {
        PyErr_Format(PyExc_RuntimeError, "redpat: %s (%s)", message, rp_status_name(code));
        return NULL;
    }
    /* Messages may quote binary arguments: never fail on bytes that are not UTF-8. */
    msg = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "backslashreplace");
    if (msg == NULL) return NULL;
    exc = PyObject_CallFunction(cls, "Oi", msg, code);
    Py_DECREF(msg);
    return exc;
}

/* Raises the exception registered for code, built as Class(message, code). */
static void rpy_raise(int code, const char *message) {
    PyObject *exc = rpy_error_object(code, message);
    if (exc == NULL) return;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

static PyObject *rpy_fail(const rp_error *err, int code) {
    if (err != NULL && err->code != RP_OK)
        rpy_raise(err->code, err->message);
    else
        rpy_raise(code, rp_status_name(code));
    return NULL;
}

/* Reads one argument as bytes: bytes, str (UTF-8) or any buffer. Fills view when it had
 * to take a buffer (release it with PyBuffer_Release). */
static int rpy_bytes(PyObject *o, const char **p, size_t *n, Py_buffer *view, int *have_view,
                     const char *what) {
    if (PyBytes_Check(o)) {
        *p = PyBytes_AS_STRING(o);
        *n = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(o, &len);
        if (s == NULL) return -1;
        *p = s;
        *n = (size_t)len;
        return 0;
    }
    if (PyObject_CheckBuffer(o)) {
        if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) return -1;
        *have_view = 1;
        *p = (const char *)view->buf;
        *n = (size_t)view->len;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be bytes or str, not %.100s", what,
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* A reply tree as Python objects. Error replies inside arrays become exception instances
 * (as redis-py does); at the top level the caller raises instead. */
static PyObject *rpy_reply(const rp_reply *r) {
    PyObject *list, *item, *cls = NULL, *key;
    size_t i;
    switch (r->type) {
    case RP_REPLY_STRING:
    case RP_REPLY_STATUS:
        return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    case RP_REPLY_INTEGER:
        return PyLong_FromLongLong(r->integer);
    case RP_REPLY_NIL:
        Py_RETURN_NONE;
    case RP_REPLY_BOOL:
        return PyBool_FromLong(r->integer != 0);
    case RP_REPLY_DOUBLE: {
        PyObject *s = PyUnicode_DecodeUTF8(r->str, (Py_ssize_t)r->len, "replace");
        PyObject *f;
        if (s == NULL) return NULL;
        f = PyFloat_FromString(s);
        Py_DECREF(s);
        return f;
    }
    case RP_REPLY_ERROR:
        if (rpy_error_map != NULL) {
            key = PyLong_FromLong(RP_EREPLY);
            if (key == NULL) return NULL;
            cls = PyDict_GetItemWithError(rpy_error_map, key);
            Py_DECREF(key);
            if (cls == NULL && PyErr_Occurred()) return NULL;
        }
        if (cls == NULL) cls = rpy_error_base != NULL ? rpy_error_base : PyExc_RuntimeError;
        {
            PyObject *msg = PyUnicode_DecodeUTF8(r->str, (Py_ssize_t)r->len, "backslashreplace");
            PyObject *exc;
            if (msg == NULL) return NULL;
            exc = PyObject_CallFunction(cls, "Oi", msg, RP_EREPLY);
            Py_DECREF(msg);
            return exc;
        }
    case RP_REPLY_ARRAY:
        if (r->elements > (size_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
        list = PyList_New((Py_ssize_t)r->elements);
        if (list == NULL) return NULL;
        for (i = 0; i < r->elements; i++) {
            item = rpy_reply(r->element[i]);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    }
    PyErr_Format(PyExc_RuntimeError, "redpat: unknown reply type %d", (int)r->type);
    return NULL;
}

/* The top-level reply: an error reply is raised (ResponseError). */
static PyObject *rpy_reply_top(const rp_reply *r) {
    PyObject *o = rpy_reply(r);
    if (o != NULL && r->type == RP_REPLY_ERROR) {
        PyErr_SetObject((PyObject *)Py_TYPE(o), o);
        Py_DECREF(o);
        return NULL;
    }
    return o;
}

/* argv for a raw command from a sequence of bytes / str / buffers. */
typedef struct rpy_argv {
    int argc;
    const char **argv;
    size_t *lens;
    Py_buffer *views;
    int *have;
    PyObject *seq;
} rpy_argv;

static void rpy_argv_free(rpy_argv *a) {
    int i;
    if (a->views != NULL)
        for (i = 0; i < a->argc; i++)
            if (a->have[i]) PyBuffer_Release(&a->views[i]);
    PyMem_Free(a->argv);
    PyMem_Free(a->lens);
    PyMem_Free(a->views);
    PyMem_Free(a->have);
    Py_XDECREF(a->seq);
    memset(a, 0, sizeof *a);
}

/* what: "command arguments must be a sequence"; item names one element in a TypeError. */
static int rpy_argv_init(rpy_argv *a, PyObject *args, const char *what, const char *item) {
    Py_ssize_t n, i;
    memset(a, 0, sizeof *a);
    a->seq = PySequence_Fast(args, what);
    if (a->seq == NULL) return -1;
    n = PySequence_Fast_GET_SIZE(a->seq);
    if (n > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many command arguments");
        rpy_argv_free(a);
        return -1;
    }
    a->argc = (int)n;
    a->argv = PyMem_Calloc((size_t)n + 1, sizeof *a->argv);
    a->lens = PyMem_Calloc((size_t)n + 1, sizeof *a->lens);
    a->views = PyMem_Calloc((size_t)n + 1, sizeof *a->views);
    a->have = PyMem_Calloc((size_t)n + 1, sizeof *a->have);
    if (!a->argv || !a->lens || !a->views || !a->have) {
        rpy_argv_free(a);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (rpy_bytes(PySequence_Fast_GET_ITEM(a->seq, i), &a->argv[i], &a->lens[i],
                      &a->views[i], &a->have[i], item) < 0) {
            rpy_argv_free(a);
            return -1;
        }
    }
    return 0;
}

static rpy_op *rpy_op_wrap(rp_op *op, PyObject *owner) {
    rpy_op *w = PyMem_Malloc(sizeof *w);
    if (w == NULL) {
        rp_op_free(op);
        PyErr_NoMemory();
        return NULL;
    }
    w->op = op;
    w->owner = owner;
    Py_XINCREF(owner);
    return w;
}

/* Wraps a freshly begun op, or raises for a failed begin. */
static rpy_op *rpy_op_result(int rc, rp_op *op, const rp_error *err, PyObject *owner) {
    if (rc != RP_OK) {
        rpy_fail(err, rc);
        return NULL;
    }
    return rpy_op_wrap(op, owner);
}

/* Runs op on conn with the GIL released (the caller keeps op and conn to itself). */
static int rpy_run(rp_client *conn, rp_op *op, rp_error *err) {
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = rp_client_run(conn, op, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/* A Python exception is set (never an rp_status). */
#define RPY_EPYTHON INT_MIN
/* The longest a wait goes without running Python's signal handlers. */
#define RPY_SLEEP_SLICE_MS 50

/* Drives op to DONE or ERROR over conn's connection, as rp_client_run does, but holds the
 * GIL only between steps: each IO round runs with it released, and a SLEEP is slept in
 * slices of at most RPY_SLEEP_SLICE_MS with Python's signal handlers run before each, so
 * Ctrl-C (or any handler that raises) ends a long wait promptly. Returns RP_OK, the op's
 * error code (details in err), or RPY_EPYTHON with the handler's exception set: only ever
 * from a SLEEP, when no request is in flight, so the connection stays in step. */
static int rpy_drive(rp_client *conn, rp_op *op, rp_error *err) {
    rp_transport *t = rp_client_transport(conn);
    if (t == NULL) return rp_client_run(conn, op, err); /* reports the missing connection */
    for (;;) {
        switch (rp_op_step(op, rp_monotonic_ms())) {
        case RP_STEP_IO: {
            size_t i, n = rp_op_nodes(op);
            for (i = 0; i < n; i++) {
                const char *bytes = NULL;
                size_t len = 0;
                rp_error e;
                int rc;
                if (rp_op_request(op, i, &bytes, &len) != RP_OK || len == 0) continue;
                rp_error_clear(&e);
                Py_BEGIN_ALLOW_THREADS
                rc = t->cls->exchange(t, op, i, &e);
                Py_END_ALLOW_THREADS
                if (rc != RP_OK) rp_op_fail_node(op, i, rc, e.message);
            }
            break;
        }
        case RP_STEP_SLEEP: {
            uint64_t end = rp_monotonic_ms() + rp_op_sleep_ms(op), now;
            while (PyErr_CheckSignals() == 0) {
                struct timespec ts;
                uint64_t slice;
                now = rp_monotonic_ms();
                if (now >= end) break;
                slice = end - now < RPY_SLEEP_SLICE_MS ? end - now : RPY_SLEEP_SLICE_MS;
                ts.tv_sec = 0;
                ts.tv_nsec = (long)(slice * 1000000u);
                Py_BEGIN_ALLOW_THREADS
                nanosleep(&ts, NULL); /* EINTR (a signal) ends the slice early: fine */
                Py_END_ALLOW_THREADS
            }
            if (PyErr_Occurred()) return RPY_EPYTHON;
            break;
        }
        case RP_STEP_DONE:
            rp_error_clear(err);
            return RP_OK;
        default: {
            const rp_error *e = rp_op_error(op);
            if (e == NULL || e->code == RP_OK) {
                if (err != NULL) {
                    err->code = RP_ESTATE;
                    snprintf(err->message, sizeof err->message, "op ended without an error");
                }
                return RP_ESTATE;
            }
            if (err != NULL) *err = *e;
            return e->code;
        }
        }
    }
}

/* --- rate limiters ------------------------------------------------------------------- */

/* A str option naming an enum value, parsed by the core (whose message names the option
 * and its choices). 0: parsed; -1: a Python exception is set (TypeError for a non-str). */
typedef int (*rpy_enum_parser)(const char *, size_t, void *, rp_error *);

static int rpy_enum_arg(PyObject *o, rpy_enum_parser parse, const char *what, void *out) {
    const char *s;
    Py_ssize_t len;
    rp_error err;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    s = PyUnicode_AsUTF8AndSize(o, &len);
    if (s == NULL) return -1;
    rp_error_clear(&err);
    if (parse(s, (size_t)len, out, &err) != RP_OK) {
        rpy_raise(err.code, err.message);
        return -1;
    }
    return 0;
}

static int rpy_parse_algorithm(const char *s, size_t len, void *out, rp_error *err) {
    return rp_ratelimit_algorithm_parse(s, len, (rp_ratelimit_algorithm *)out, err);
}

static int rpy_parse_on_error(const char *s, size_t len, void *out, rp_error *err) {
    return rp_ratelimit_on_error_parse(s, len, (rp_ratelimit_on_error *)out, err);
}

/* One decision as the registered class (see set_decision_class), times in seconds. A
 * degraded one carries the exception Redis failed with (as "report" would have raised it). */
static PyObject *rpy_decision(const rp_ratelimit_decision *d) {
    PyObject *error, *args, *res;
    if (d->degraded) {
        error = rpy_error_object(d->error_code != RP_OK ? d->error_code : RP_ETRANSPORT,
                                 d->error_message[0] ? d->error_message
                                                     : rp_status_name(d->error_code));
        if (error == NULL) return NULL;
    } else {
        error = Py_None;
        Py_INCREF(error);
    }
    args = Py_BuildValue("(NLLddNiN)", PyBool_FromLong(d->allowed), (long long)d->limit,
                         (long long)d->remaining, (double)d->retry_after_ms / 1000.0,
                         (double)d->reset_after_ms / 1000.0, PyBool_FromLong(d->degraded),
                         d->refused_by, error);
    if (args == NULL || rpy_decision_class == NULL) return args;
    res = PyObject_Call(rpy_decision_class, args, NULL);
    Py_DECREF(args);
    return res;
}

/* The decisions of a DONE batch op, as a list. */
static PyObject *rpy_batch_decisions(const rp_op *op) {
    size_t i, n = rp_ratelimit_batch_count(op);
    PyObject *list = PyList_New((Py_ssize_t)n), *item;
    rp_ratelimit_decision d;
    if (list == NULL) return NULL;
    for (i = 0; i < n; i++) {
        int rc = rp_ratelimit_batch_result(op, i, &d);
        if (rc != RP_OK || (item = rpy_decision(&d)) == NULL) {
            Py_DECREF(list);
            return rc != RP_OK ? rpy_fail(NULL, rc) : NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* The limiters of a multi check: from a sequence of Limiter handles (kept in seq). */
typedef struct rpy_limiters {
    size_t count;
    rp_ratelimit **list;
    PyObject *seq;
} rpy_limiters;

static void rpy_limiters_free(rpy_limiters *l) {
    PyMem_Free(l->list);
    Py_XDECREF(l->seq);
    memset(l, 0, sizeof *l);
}

static int rpy_limiters_init(rpy_limiters *l, PyObject *limiters) {
    Py_ssize_t n, i;
    memset(l, 0, sizeof *l);
    /* A tuple of its own: an op keeps it, and nobody can take a limiter out of it. */
    l->seq = PySequence_Tuple(limiters);
    if (l->seq == NULL) return -1;
    n = PyTuple_GET_SIZE(l->seq);
    l->list = PyMem_Calloc((size_t)n + 1, sizeof *l->list);
    if (l->list == NULL) {
        rpy_limiters_free(l);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        rpy_limiter *h = NULL;
        if (SWIG_ConvertPtr(PyTuple_GET_ITEM(l->seq, i), (void **)&h,
                            SWIGTYPE_p_rpy_limiter, 0) < 0 || h == NULL) {
            PyErr_Format(PyExc_TypeError, "limiters[%zd] is not a redpat._core.Limiter", i);
            rpy_limiters_free(l);
            return -1;
        }
        l->list[i] = h->rl;
    }
    l->count = (size_t)n;
    return 0;
}

/* The costs of a batch: None (all 1, given as NULL) or a sequence of ints. */
static int rpy_costs_init(PyObject *costs, Py_ssize_t expected, int64_t **out) {
    PyObject *seq;
    Py_ssize_t i, n;
    *out = NULL;
    if (costs == Py_None) return 0;
    seq = PySequence_Fast(costs, "costs must be a sequence of ints or None");
    if (seq == NULL) return -1;
    n = PySequence_Fast_GET_SIZE(seq);
    if (n != expected) {
        Py_DECREF(seq);
        rpy_raise(RP_EINVAL, "costs must have one entry per subject");
        return -1;
    }
    *out = PyMem_Calloc((size_t)n + 1, sizeof **out);
    if (*out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyMem_Free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[i] = (int64_t)v;
    }
    Py_DECREF(seq);
    return 0;
}

/* Begins a batch op for limiter over subjects (a sequence of bytes / str / buffers). */
static int rpy_batch_op(rp_op **op, rp_ratelimit *rl, PyObject *subjects, PyObject *costs,
                        rp_error *err) {
    rpy_argv a;
    int64_t *c = NULL;
    int rc;
    if (rpy_argv_init(&a, subjects, "subjects must be a sequence", "subject") < 0) return RPY_EPYTHON;
    if (rpy_costs_init(costs, a.argc, &c) < 0) {
        rpy_argv_free(&a);
        return RPY_EPYTHON;
    }
    rc = rp_ratelimit_batch_op(op, rl, (size_t)a.argc, (const void *const *)a.argv, a.lens, c, err);
    PyMem_Free(c);
    rpy_argv_free(&a);
    return rc;
}

%}

/* Errors: a wrapper that has set a Python exception makes the call raise it. */
%exception {
    $action
    if (PyErr_Occurred()) SWIG_fail;
}

/* Binary-safe byte arguments: bytes, str (UTF-8) or any buffer (bytearray, memoryview). */
%typemap(in) (const char *BYTES, size_t LEN) (Py_buffer view, int have_view = 0) {
    if (rpy_bytes($input, (const char **)&$1, &$2, &view, &have_view, "$1_name") < 0) SWIG_fail;
}
%typemap(freearg) (const char *BYTES, size_t LEN) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}
%typemap(typecheck) (const char *BYTES, size_t LEN) { $1 = 1; }
/* The same, where None means "none" (NULL, 0). */
%typemap(in) (const char *OPTBYTES, size_t OPTLEN) (Py_buffer view, int have_view = 0) {
    if ($input == Py_None) {
        $1 = NULL;
        $2 = 0;
    } else if (rpy_bytes($input, (const char **)&$1, &$2, &view, &have_view, "$1_name") < 0) {
        SWIG_fail;
    }
}
%typemap(freearg) (const char *OPTBYTES, size_t OPTLEN) {
    if (have_view$argnum) PyBuffer_Release(&view$argnum);
}
/* A Client handle passed together with its Python object (to keep a reference). */
%typemap(in) (rpy_client *OWNER_CLIENT, PyObject *OWNER_OBJ) {
    if (SWIG_ConvertPtr($input, (void **)&$1, $descriptor(rpy_client *), 0) < 0 || $1 == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected a redpat._core.Client");
        SWIG_fail;
    }
    $2 = $input;
}
/* A rate limit cost: an int (the core decides which ones are acceptable). */
%typemap(in) long long cost {
    if (!PyLong_Check($input)) {
        PyErr_Format(PyExc_TypeError, "cost must be an int, not %.100s", Py_TYPE($input)->tp_name);
        SWIG_fail;
    }
    $1 = PyLong_AsLongLong($input);
    if ($1 == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        rpy_raise(RP_EINVAL, "cost is out of range");
        SWIG_fail;
    }
}
/* The same for a Limiter handle (ops made from a limiter borrow it). */
%typemap(in) (rpy_limiter *limiter, PyObject *limiter_obj) {
    if (SWIG_ConvertPtr($input, (void **)&$1, $descriptor(rpy_limiter *), 0) < 0 || $1 == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected a redpat._core.Limiter");
        SWIG_fail;
    }
    $2 = $input;
}
/* The same for a Lock handle (ops made from a lock borrow it). */
%typemap(in) (rpy_lock *lock, PyObject *lock_obj) {
    if (SWIG_ConvertPtr($input, (void **)&$1, $descriptor(rpy_lock *), 0) < 0 || $1 == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected a redpat._core.Lock");
        SWIG_fail;
    }
    $2 = $input;
}

%apply (const char *OPTBYTES, size_t OPTLEN) { (const char *key_namespace, size_t key_namespace_len) };
%apply (const char *OPTBYTES, size_t OPTLEN) { (const char *token, size_t token_len) };
%apply (const char *BYTES, size_t LEN) { (const char *name, size_t name_len) };
%apply (const char *BYTES, size_t LEN) { (const char *resource, size_t resource_len) };
%apply (const char *BYTES, size_t LEN) { (const char *data, size_t data_len) };
%apply (const char *BYTES, size_t LEN) { (const char *subject, size_t subject_len) };
%apply (rpy_client *OWNER_CLIENT, PyObject *OWNER_OBJ) { (rpy_client *client, PyObject *client_obj) };

%nodefaultctor rpy_op;

%constant int OK = RP_OK;
%constant int MORE = RP_MORE;
%constant int EINVAL = RP_EINVAL;
%constant int ENOMEM = RP_ENOMEM;
%constant int ETRANSPORT = RP_ETRANSPORT;
%constant int ETIMEOUT = RP_ETIMEOUT;
%constant int EPROTOCOL = RP_EPROTOCOL;
%constant int EREPLY = RP_EREPLY;
%constant int ENOTOWNED = RP_ENOTOWNED;
%constant int ESTATE = RP_ESTATE;
%constant int STEP_IO = RP_STEP_IO;
%constant int STEP_SLEEP = RP_STEP_SLEEP;
%constant int STEP_DONE = RP_STEP_DONE;
%constant int STEP_ERROR = RP_STEP_ERROR;
%constant long long WAIT_FOREVER = RP_WAIT_FOREVER;
%constant const char *VERSION = RP_VERSION;

%rename(Client) rpy_client;
%rename(Lock) rpy_lock;
%rename(Op) rpy_op;
%rename(Limiter) rpy_limiter;

typedef struct rpy_client {} rpy_client;
typedef struct rpy_lock {} rpy_lock;
typedef struct rpy_op {} rpy_op;
typedef struct rpy_limiter {} rpy_limiter;

%newobject command_op;
%newobject fence_check_op;
%newobject handshake_op;
%newobject lock_acquire_op;
%newobject lock_release_op;
%newobject lock_extend_op;
%newobject lock_query_op;
%newobject ratelimit_check_op;
%newobject ratelimit_multi_op;
%newobject ratelimit_batch_op;
%newobject ratelimit_reset_op;

%extend rpy_client {
    /* url None: no connection (ops only). Timeouts in ms; out-of-range values are
     * reported, never wrapped. */
    rpy_client(PyObject *url, const char *key_namespace, size_t key_namespace_len, long long connect_timeout_ms,
               long long command_timeout_ms, int tcp_keepalive) {
        rp_client_options o = RP_CLIENT_OPTIONS_INIT;
        rp_error err;
        rpy_client *w;
        char *ns = NULL;
        rp_error_clear(&err);
        if (url != Py_None) {
            if (!PyUnicode_Check(url)) {
                PyErr_SetString(PyExc_TypeError, "url must be str or None");
                return NULL;
            }
            o.url = PyUnicode_AsUTF8(url);
            if (o.url == NULL) return NULL;
        }
        if (connect_timeout_ms < 0 || connect_timeout_ms > (long long)UINT32_MAX) {
            rpy_raise(RP_EINVAL, "connect_timeout is out of range");
            return NULL;
        }
        if (command_timeout_ms < 0 || command_timeout_ms > (long long)UINT32_MAX) {
            rpy_raise(RP_EINVAL, "command_timeout is out of range");
            return NULL;
        }
        o.connect_timeout_ms = (uint32_t)connect_timeout_ms;
        o.command_timeout_ms = (uint32_t)command_timeout_ms;
        o.tcp_keepalive = tcp_keepalive;
        if (key_namespace != NULL) {
            /* The core takes a C string: a NUL inside cannot be passed through. */
            if (memchr(key_namespace, 0, key_namespace_len) != NULL) {
                rpy_raise(RP_EINVAL, "namespace must not contain NUL bytes");
                return NULL;
            }
            ns = PyMem_Malloc(key_namespace_len + 1);
            if (ns == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            memcpy(ns, key_namespace, key_namespace_len);
            ns[key_namespace_len] = '\0';
            o.key_namespace = ns;
        }
        w = PyMem_Malloc(sizeof *w);
        if (w == NULL) {
            PyMem_Free(ns);
            PyErr_NoMemory();
            return NULL;
        }
        if (rp_client_new(&w->c, &o, &err) != RP_OK) {
            PyMem_Free(ns);
            PyMem_Free(w);
            rpy_fail(&err, RP_EINVAL);
            return NULL;
        }
        PyMem_Free(ns);
        return w;
    }

    ~rpy_client() {
        rp_client_free($self->c);
        PyMem_Free($self);
    }

    PyObject *key_namespace() {
        const char *ns = rp_client_namespace($self->c);
        return PyBytes_FromStringAndSize(ns, (Py_ssize_t)strlen(ns));
    }

    void disconnect() {
        rp_client_disconnect($self->c);
    }

    /* Where the URL points, for drivers that open their own sockets: (is_unix, host,
     * port, path, user, password, db); strings are None when absent. */
    PyObject *endpoint() {
        rp_endpoint e;
        int rc = rp_client_endpoint($self->c, &e);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return Py_BuildValue("(Nzizzzi)", PyBool_FromLong(e.is_unix), e.host, e.port, e.path,
                             e.user, e.password, e.db);
    }

    /* Runs op over this client's connection (blocking, GIL released). */
    PyObject *run(rpy_op *op) {
        rp_error err;
        rp_error_clear(&err);
        if (op == NULL) return rpy_fail(NULL, RP_ESTATE);
        if (rpy_run($self->c, op->op, &err) != RP_OK) return rpy_fail(&err, RP_ETRANSPORT);
        Py_RETURN_NONE;
    }

    /* A raw command, blocking; returns the reply (an error reply raises ResponseError). */
    PyObject *command(PyObject *args) {
        rpy_argv a;
        rp_reply *reply = NULL;
        rp_error err;
        int rc;
        PyObject *res;
        rp_error_clear(&err);
        if (rpy_argv_init(&a, args, "command arguments must be a sequence", "command argument") < 0) return NULL;
        Py_BEGIN_ALLOW_THREADS
        rc = rp_client_command($self->c, a.argc, a.argv, a.lens, &reply, &err);
        Py_END_ALLOW_THREADS
        rpy_argv_free(&a);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        res = rpy_reply_top(reply);
        rp_reply_free(reply);
        return res;
    }

    /* Fence check over this client's connection: (accepted, highest). */
    PyObject *fence_check(const char *resource, size_t resource_len, long long token) {
        rp_fence_result r;
        rp_error err;
        int rc;
        rp_error_clear(&err);
        Py_BEGIN_ALLOW_THREADS
        rc = rp_fence_check($self->c, resource, resource_len, (int64_t)token, &r, &err);
        Py_END_ALLOW_THREADS
        if (rc != RP_OK) return rpy_fail(&err, rc);
        return Py_BuildValue("(NL)", PyBool_FromLong(r.accepted), (long long)r.highest);
    }

}

%extend rpy_lock {
    /* A lock handle made from client (kept alive by the handle). No I/O. */
    rpy_lock(rpy_client *client, PyObject *client_obj, const char *name, size_t name_len,
             long long ttl_ms, int fenced) {
        rp_lock_options o = RP_LOCK_OPTIONS_INIT;
        rp_error err;
        rpy_lock *w;
        rp_error_clear(&err);
        o.ttl_ms = (int64_t)ttl_ms;
        o.fenced = fenced;
        w = PyMem_Malloc(sizeof *w);
        if (w == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        if (rp_lock_new(&w->l, client->c, name, name_len, &o, &err) != RP_OK) {
            PyMem_Free(w);
            rpy_fail(&err, RP_EINVAL);
            return NULL;
        }
        w->owner = client_obj;
        Py_INCREF(client_obj);
        return w;
    }

    ~rpy_lock() {
        rp_lock_free($self->l);
        Py_XDECREF($self->owner);
        PyMem_Free($self);
    }

    /* Blocking acquire over conn: (acquired, fence). retry_min_ms / retry_max_ms None
     * keep the core's defaults; token None lets the core make a random one. The waits
     * between attempts run Python's signal handlers: KeyboardInterrupt ends them. */
    PyObject *acquire(rpy_client *conn, long long wait_ms, PyObject *retry_min_ms,
                      PyObject *retry_max_ms, const char *token, size_t token_len) {
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
        rp_lock_acquisition r;
        rp_op *op = NULL;
        rp_error err;
        int rc;
        rp_error_clear(&err);
        o.wait_ms = (int64_t)wait_ms;
        if (retry_min_ms != Py_None) {
            o.retry_min_ms = (int64_t)PyLong_AsLongLong(retry_min_ms);
            if (PyErr_Occurred()) return NULL;
        }
        if (retry_max_ms != Py_None) {
            o.retry_max_ms = (int64_t)PyLong_AsLongLong(retry_max_ms);
            if (PyErr_Occurred()) return NULL;
        }
        o.token = token;
        o.token_len = token_len;
        rc = rp_lock_acquire_op(&op, $self->l, &o, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_drive(conn->c, op, &err); /* a signal handler may end the wait */
        if (rc == RP_OK) rc = rp_lock_acquire_result(op, &r);
        rp_op_free(op);
        if (rc == RPY_EPYTHON) return NULL;
        if (rc != RP_OK) return rpy_fail(&err, rc);
        return Py_BuildValue("(NL)", PyBool_FromLong(r.acquired), (long long)r.fence);
    }

    PyObject *release(rpy_client *conn) {
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_op *op = NULL;
        rp_error err;
        int rc;
        rp_error_clear(&err);
        rc = rp_lock_release_op(&op, $self->l, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        rp_op_free(op);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        Py_RETURN_NONE;
    }

    PyObject *extend(rpy_client *conn, long long ms, int replace_ttl) {
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_op *op = NULL;
        rp_error err;
        int rc;
        rp_error_clear(&err);
        rc = rp_lock_extend_op(&op, $self->l, (int64_t)ms, replace_ttl, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        rp_op_free(op);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        Py_RETURN_NONE;
    }

    /* which: 0 locked (anyone holds it), 1 owned (this handle holds it). */
    PyObject *query(rpy_client *conn, int which) {
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_op *op = NULL;
        rp_error err;
        int rc, value = 0;
        rp_error_clear(&err);
        rc = which ? rp_lock_owned_op(&op, $self->l, &err) : rp_lock_locked_op(&op, $self->l, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        if (rc == RP_OK) rc = rp_lock_query_result(op, &value);
        rp_op_free(op);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        return PyBool_FromLong(value);
    }

    PyObject *token() {
        size_t len = 0;
        const char *t = rp_lock_token($self->l, &len);
        if (t == NULL) Py_RETURN_NONE;
        return PyBytes_FromStringAndSize(t, (Py_ssize_t)len);
    }

    long long fence() {
        return (long long)rp_lock_fence($self->l);
    }

    PyObject *name() {
        size_t len = 0;
        const char *n = rp_lock_name($self->l, &len);
        return PyBytes_FromStringAndSize(n, (Py_ssize_t)len);
    }

    long long ttl_ms() {
        return (long long)rp_lock_ttl_ms($self->l);
    }

}

%extend rpy_limiter {
    /* A rate limiter handle made from client (kept alive by the handle). No I/O.
     * algorithm and on_error are names ("gcra", "fail_open", ...); every value is checked
     * by the core, whose message names the argument. */
    rpy_limiter(rpy_client *client, PyObject *client_obj, const char *name, size_t name_len,
                PyObject *algorithm, long long limit, long long window_ms, long long burst,
                PyObject *on_error) {
        rp_ratelimit_options o = RP_RATELIMIT_OPTIONS_INIT;
        rp_error err;
        rpy_limiter *w;
        char *cname;
        int rc;
        rp_error_clear(&err);
        if (rpy_enum_arg(algorithm, rpy_parse_algorithm, "algorithm", &o.algorithm) < 0 ||
            rpy_enum_arg(on_error, rpy_parse_on_error, "on_error", &o.on_error) < 0)
            return NULL;
        o.limit = (int64_t)limit;
        o.window_ms = (int64_t)window_ms;
        o.burst = (int64_t)burst;
        /* The core takes a C string: a NUL inside cannot be passed through. */
        if (memchr(name, 0, name_len) != NULL) {
            rpy_raise(RP_EINVAL, "limiter name must not contain NUL bytes");
            return NULL;
        }
        cname = PyMem_Malloc(name_len + 1);
        w = PyMem_Malloc(sizeof *w);
        if (cname == NULL || w == NULL) {
            PyMem_Free(cname);
            PyMem_Free(w);
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(cname, name, name_len);
        cname[name_len] = '\0';
        rc = rp_ratelimit_new(&w->rl, client->c, cname, &o, &err);
        PyMem_Free(cname);
        if (rc != RP_OK) {
            PyMem_Free(w);
            rpy_fail(&err, RP_EINVAL);
            return NULL;
        }
        w->owner = client_obj;
        Py_INCREF(client_obj);
        return w;
    }

    ~rpy_limiter() {
        rp_ratelimit_free($self->rl);
        Py_XDECREF($self->owner);
        PyMem_Free($self);
    }

    /* Blocking check of subject over conn (GIL released): a decision. */
    PyObject *check(rpy_client *conn, const char *subject, size_t subject_len, long long cost) {
        rp_ratelimit_decision d;
        rp_op *op = NULL;
        rp_error err;
        int rc;
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_error_clear(&err);
        rc = rp_ratelimit_check_op(&op, $self->rl, subject, subject_len, (int64_t)cost, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        if (rc == RP_OK) rc = rp_ratelimit_check_result(op, &d);
        rp_op_free(op);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        return rpy_decision(&d);
    }

    /* Blocking batch over conn: subjects a sequence, costs a sequence or None (all 1);
     * one pipelined round trip; a list of decisions. */
    PyObject *batch(rpy_client *conn, PyObject *subjects, PyObject *costs) {
        rp_op *op = NULL;
        rp_error err;
        PyObject *res;
        int rc;
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_error_clear(&err);
        rc = rpy_batch_op(&op, $self->rl, subjects, costs, &err);
        if (rc == RPY_EPYTHON) return NULL;
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        res = rc == RP_OK ? rpy_batch_decisions(op) : rpy_fail(&err, rc);
        rp_op_free(op);
        return res;
    }

    PyObject *reset(rpy_client *conn, const char *subject, size_t subject_len) {
        rp_op *op = NULL;
        rp_error err;
        int rc;
        if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
        rp_error_clear(&err);
        rc = rp_ratelimit_reset_op(&op, $self->rl, subject, subject_len, &err);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        rc = rpy_run(conn->c, op, &err);
        rp_op_free(op);
        if (rc != RP_OK) return rpy_fail(&err, rc);
        Py_RETURN_NONE;
    }
}

%extend rpy_op {
    ~rpy_op() {
        rp_op_free($self->op);
        Py_XDECREF($self->owner);
        PyMem_Free($self);
    }

    /* Advances the op on the core's monotonic clock; step_at takes the time instead. */
    int step() {
        return (int)rp_op_step($self->op, rp_monotonic_ms());
    }
    int step_at(unsigned long long now_ms) {
        return (int)rp_op_step($self->op, (uint64_t)now_ms);
    }
    size_t nodes() {
        return rp_op_nodes($self->op);
    }
    /* The request bytes for node in this IO step (b"" when none). */
    PyObject *request(size_t node) {
        const char *b = NULL;
        size_t len = 0;
        int rc = rp_op_request($self->op, node, &b, &len);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return PyBytes_FromStringAndSize(len ? b : "", (Py_ssize_t)len);
    }
    /* Feeds bytes read from node: OK, MORE, or a negative status (the node has failed). */
    int feed(size_t node, const char *data, size_t data_len) {
        return rp_op_feed($self->op, node, data, data_len);
    }
    void fail_node(size_t node, int status, const char *why) {
        rp_op_fail_node($self->op, node, status, why);
    }
    unsigned long long sleep_ms() {
        return (unsigned long long)rp_op_sleep_ms($self->op);
    }
    PyObject *name() {
        return PyUnicode_FromString(rp_op_name($self->op));
    }
    /* (code, message) of a failed op. */
    PyObject *error() {
        const rp_error *e = rp_op_error($self->op);
        if (e == NULL) return Py_BuildValue("(is)", RP_ESTATE, "op has not failed");
        return Py_BuildValue("(is)", e->code, e->message);
    }
    /* Raises the exception for a failed op. */
    PyObject *raise_error() {
        const rp_error *e = rp_op_error($self->op);
        if (e == NULL || e->code == RP_OK) return rpy_fail(NULL, RP_ESTATE);
        return rpy_fail(e, e->code);
    }

    PyObject *acquire_result() {
        rp_lock_acquisition r;
        int rc = rp_lock_acquire_result($self->op, &r);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return Py_BuildValue("(NLk)", PyBool_FromLong(r.acquired), (long long)r.fence,
                             (unsigned long)r.attempts);
    }
    PyObject *query_result() {
        int value = 0;
        int rc = rp_lock_query_result($self->op, &value);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return PyBool_FromLong(value);
    }
    PyObject *fence_result() {
        rp_fence_result r;
        int rc = rp_fence_check_result($self->op, &r);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return Py_BuildValue("(NL)", PyBool_FromLong(r.accepted), (long long)r.highest);
    }
    /* The decision of a DONE rate limit check or multi op. */
    PyObject *decision() {
        rp_ratelimit_decision d;
        int rc = rp_ratelimit_check_result($self->op, &d);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return rpy_decision(&d);
    }
    /* The decisions of a DONE rate limit batch op, in the order of its subjects. */
    PyObject *decisions() {
        return rpy_batch_decisions($self->op);
    }
    /* The reply of a DONE command op (an error reply raises ResponseError). */
    PyObject *command_result() {
        const rp_reply *reply = NULL;
        int rc = rp_command_result($self->op, &reply);
        if (rc != RP_OK) return rpy_fail(NULL, rc);
        return rpy_reply_top(reply);
    }
}

%inline %{
/* Registers the exception classes: base (RedpatError) and {status code: class}. */
static PyObject *set_error_classes(PyObject *base, PyObject *mapping) {
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "mapping must be a dict");
        return NULL;
    }
    Py_INCREF(base);
    Py_INCREF(mapping);
    Py_XDECREF(rpy_error_base);
    Py_XDECREF(rpy_error_map);
    rpy_error_base = base;
    rpy_error_map = mapping;
    Py_RETURN_NONE;
}

/* Registers the class rate limit decisions are built as (a NamedTuple's fields: allowed,
 * limit, remaining, retry_after, reset_after, degraded, refused_by, error: None or the
 * exception Redis failed with). */
static PyObject *set_decision_class(PyObject *cls) {
    Py_INCREF(cls);
    Py_XDECREF(rpy_decision_class);
    rpy_decision_class = cls;
    Py_RETURN_NONE;
}

/* Blocking all-or-nothing check of subject against every limiter (a sequence of Limiter
 * handles sharing one client) over conn: a decision (refused_by names the refusing one). */
static PyObject *ratelimit_multi(rpy_client *conn, PyObject *limiters, const char *subject,
                                 size_t subject_len, long long cost) {
    rp_ratelimit_decision d;
    rpy_limiters l;
    rp_op *op = NULL;
    rp_error err;
    int rc;
    if (conn == NULL) return rpy_fail(NULL, RP_ESTATE);
    rp_error_clear(&err);
    if (rpy_limiters_init(&l, limiters) < 0) return NULL;
    rc = rp_ratelimit_multi_op(&op, l.list, l.count, subject, subject_len, (int64_t)cost, &err);
    rpy_limiters_free(&l);
    if (rc != RP_OK) return rpy_fail(&err, rc);
    rc = rpy_run(conn->c, op, &err);
    if (rc == RP_OK) rc = rp_ratelimit_check_result(op, &d);
    rp_op_free(op);
    if (rc != RP_OK) return rpy_fail(&err, rc);
    return rpy_decision(&d);
}

/* The core's stable name for a status code ("not_owned", ...). */
static const char *status_name(int code) {
    return rp_status_name(code);
}

static unsigned long long monotonic_ms(void) {
    return (unsigned long long)rp_monotonic_ms();
}

/* Ops for drivers that do their own I/O (asyncio). Each op keeps a reference to the
 * handle it borrows, so the handle outlives it. */
static rpy_op *command_op(rpy_client *client, PyObject *client_obj, PyObject *args) {
    rpy_argv a;
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    if (rpy_argv_init(&a, args, "command arguments must be a sequence", "command argument") < 0) return NULL;
    rc = rp_command_op(&op, client->c, a.argc, a.argv, a.lens, &err);
    rpy_argv_free(&a);
    return rpy_op_result(rc, op, &err, client_obj);
}

static rpy_op *fence_check_op(rpy_client *client, PyObject *client_obj,
                              const char *resource, size_t resource_len, long long token) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_fence_check_op(&op, client->c, resource, resource_len, (int64_t)token, &err);
    return rpy_op_result(rc, op, &err, client_obj);
}

/* The AUTH / SELECT a fresh connection needs (DONE without I/O when none). */
static rpy_op *handshake_op(rpy_client *client, PyObject *client_obj) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_client_handshake_op(&op, client->c, &err);
    return rpy_op_result(rc, op, &err, client_obj);
}

/* retry_min_ms / retry_max_ms None keep the core's defaults; token None: a random one. */
static rpy_op *lock_acquire_op(rpy_lock *lock, PyObject *lock_obj, long long wait_ms,
                               PyObject *retry_min_ms, PyObject *retry_max_ms,
                               const char *token, size_t token_len) {
    rp_lock_acquire_options o = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    o.wait_ms = (int64_t)wait_ms;
    if (retry_min_ms != Py_None) {
        o.retry_min_ms = (int64_t)PyLong_AsLongLong(retry_min_ms);
        if (PyErr_Occurred()) return NULL;
    }
    if (retry_max_ms != Py_None) {
        o.retry_max_ms = (int64_t)PyLong_AsLongLong(retry_max_ms);
        if (PyErr_Occurred()) return NULL;
    }
    o.token = token;
    o.token_len = token_len;
    rc = rp_lock_acquire_op(&op, lock->l, &o, &err);
    return rpy_op_result(rc, op, &err, lock_obj);
}

static rpy_op *lock_release_op(rpy_lock *lock, PyObject *lock_obj) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_lock_release_op(&op, lock->l, &err);
    return rpy_op_result(rc, op, &err, lock_obj);
}

static rpy_op *lock_extend_op(rpy_lock *lock, PyObject *lock_obj, long long ms,
                              int replace_ttl) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_lock_extend_op(&op, lock->l, (int64_t)ms, replace_ttl, &err);
    return rpy_op_result(rc, op, &err, lock_obj);
}

/* which: 0 locked (anyone holds it), 1 owned (this handle holds it). */
static rpy_op *lock_query_op(rpy_lock *lock, PyObject *lock_obj, int which) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = which ? rp_lock_owned_op(&op, lock->l, &err)
               : rp_lock_locked_op(&op, lock->l, &err);
    return rpy_op_result(rc, op, &err, lock_obj);
}
static rpy_op *ratelimit_check_op(rpy_limiter *limiter, PyObject *limiter_obj,
                                  const char *subject, size_t subject_len, long long cost) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_ratelimit_check_op(&op, limiter->rl, subject, subject_len, (int64_t)cost, &err);
    return rpy_op_result(rc, op, &err, limiter_obj);
}

/* The op keeps a reference to the sequence of limiters it borrows. */
static rpy_op *ratelimit_multi_op(PyObject *limiters, const char *subject, size_t subject_len,
                                  long long cost) {
    rpy_limiters l;
    rp_op *op = NULL;
    rp_error err;
    rpy_op *res;
    int rc;
    rp_error_clear(&err);
    if (rpy_limiters_init(&l, limiters) < 0) return NULL;
    rc = rp_ratelimit_multi_op(&op, l.list, l.count, subject, subject_len, (int64_t)cost, &err);
    res = rpy_op_result(rc, op, &err, l.seq);
    rpy_limiters_free(&l);
    return res;
}

static rpy_op *ratelimit_batch_op(rpy_limiter *limiter, PyObject *limiter_obj,
                                  PyObject *subjects, PyObject *costs) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rpy_batch_op(&op, limiter->rl, subjects, costs, &err);
    if (rc == RPY_EPYTHON) return NULL;
    return rpy_op_result(rc, op, &err, limiter_obj);
}

static rpy_op *ratelimit_reset_op(rpy_limiter *limiter, PyObject *limiter_obj,
                                  const char *subject, size_t subject_len) {
    rp_op *op = NULL;
    rp_error err;
    int rc;
    rp_error_clear(&err);
    rc = rp_ratelimit_reset_op(&op, limiter->rl, subject, subject_len, &err);
    return rpy_op_result(rc, op, &err, limiter_obj);
}
%}
