/* redpat._core — the one generic marshaller between the C core and python/redpat.
 *
 * It knows no pattern: every op is described by the core's table (redpat/describe.h). Any
 * op is made, begun or called by name; Python values become rp_values by each argument's
 * described type, and a result's described fields become Python values:
 *
 *     BYTES   bytes, str (UTF-8) or a buffer in; bytes out (binary-safe, never char *)
 *     INT     int              BOOL   any truth value in, bool out     ENUM   its name (str)
 *     MS      seconds in (int, float, timedelta; FOREVER), float seconds out
 *     LIST    any iterable but str in, list out      HANDLE  a Handle of the described kind
 *     STATUS  None or the registered exception       REPLY   bytes, int, None, list, errors
 *     CALLBACK  a callable in (the driver runs it when the op CALLs: never the core)
 *
 * None is an absent argument (the core's default). Messages name arguments as Python users
 * know them (configure registers the names from python/redpat/_idiom.py), and the core gets
 * the same names with durations in seconds: "timeout must be > 0 seconds (got -1)". Status
 * codes become the exception classes python/redpat/errors.py registers. Ops run with the
 * GIL released; their sleeps run Python's signal handlers, so Ctrl-C ends a wait promptly.
 *
 * Two types: Handle (a kind and a pointer, freed by rp_handle_free) and Op (one rp_op, for
 * drivers with their own I/O: asyncio). Each keeps a reference to the arguments it was made
 * from, so the handles (and callables) it borrows outlive it. A handle is used by one thread
 * at a time.
 *
 * The blocking path (call, run, pump) drives ops with drive.h's rp_client_drive /
 * rp_client_pump, the GIL released (run stops at an op's SLEEPs: RP_DRIVE_PAUSE). Its call
 * hook takes the GIL and calls the op's callable: what it returns goes back to the op
 * (bytes or str as BYTES, anything else as NONE), what it raises is kept and handed to the
 * op as a STATUS (an Exception: RP_ECALLBACK; KeyboardInterrupt and every other
 * BaseException: RP_ECANCELED), and once the op has cleaned up (a lock.using released its
 * lock) the callable's own exception is re-raised as it was. The asyncio path steps ops
 * itself (step, feed, fail_node, resume, cancel, ...): python/redpat/_aio.py. */
%module(package="redpat") _core

%{
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "redpat/redpat.h"
#include "redpat/drive.h"

/* A Handle: kind and pointer; an Op: kind RP_KIND_NONE and an rp_op. keep: what it was
 * made from (the handles it borrows among them), released after it is freed. */
typedef struct rpy_desc rpy_desc;
typedef struct rpy_handle { rp_kind kind; void *ptr; PyObject *keep; const rpy_desc *e; } rpy_handle;
/* e: the op's descriptor; fn: its CALLBACK arguments' callables (borrowed from keep), for
 * the CALL steps of drivers with their own I/O. */
typedef struct rpy_op { rpy_handle h; PyObject *fn[RP_DESC_ARGS_MAX]; } rpy_op;

/* A descriptor with the Python names of its arguments (the core's until configure) and the
 * class its records are made as (a tuple subclass such as a NamedTuple; NULL: tuples). */
struct rpy_desc {
    const rp_op_desc *d;
    const char *name[RP_DESC_ARGS_MAX];
    PyObject *names; /* the str objects name[] points into */
    PyObject *record;
    PyObject *message; /* the class EMITted messages are made as (NULL: tuples) */
    rp_naming nm;
};

static rpy_desc *rpy_descs = NULL;
static size_t rpy_ndescs = 0;
static PyObject *rpy_index = NULL;                              /* {op name: index} */
static PyObject *rpy_error_map = NULL, *rpy_error_base = NULL;  /* from errors.py */

/* The longest a wait goes without running Python's signal handlers (Ctrl-C). */
#define RPY_SLEEP_SLICE_MS 50
/* The longest a long-lived op's wait for a message (pump) goes without running them: each
 * slice is one rp_client_pump, so idle subscribers wake this often. */
#define RPY_PUMP_SLICE_MS 100
/* The most values a CALL hands its callback (rp_op_call's max). */
#define RPY_CALL_VALUES_MAX 8
/* Room for an argument's name with an item index ("subjects[12]"). */
#define RPY_WHAT_MAX 160
/* Durations of 2^62 ms (146 million years) and more are out of range. */
#define RPY_MS_LIMIT 4611686018427387904.0
#define RPY_UNUSED __attribute__((unused))

static const char *rpy_arg_name(void *ud, const rp_op_desc *d, size_t arg) {
    return arg < d->nargs ? ((const rpy_desc *)ud)->name[arg] : NULL;
}

/* The exception registered for code, made as Class(message, code), not raised. An empty
 * message is the status's name. */
static PyObject *rpy_error_object(int code, const char *message, size_t len) {
    PyObject *cls = NULL, *key, *msg, *exc;
    if (len == 0) len = strlen(message = rp_status_name(code));
    if (rpy_error_map != NULL && (key = PyLong_FromLong(code)) != NULL) {
        cls = PyDict_GetItemWithError(rpy_error_map, key);
        Py_DECREF(key);
    }
    if (PyErr_Occurred()) return NULL;
    if (cls == NULL) cls = rpy_error_base != NULL ? rpy_error_base : PyExc_RuntimeError;
    /* Messages may quote binary arguments: never fail on bytes that are not UTF-8. */
    if ((msg = PyUnicode_DecodeUTF8(message, (Py_ssize_t)len, "backslashreplace")) == NULL)
        return NULL;
    exc = PyObject_CallFunction(cls, "Oi", msg, code);
    Py_DECREF(msg);
    return exc;
}

/* Raises the exception for code (message "": the status's name); returns NULL. */
static PyObject *rpy_raise(int code, const char *message) {
    PyObject *exc = rpy_error_object(code, message, strlen(message));
    if (exc != NULL) PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_XDECREF(exc);
    return NULL;
}

/* An argument's name in messages: name, or name[item] for an item of a list (item >= 0). */
static const char *rpy_what(char buf[RPY_WHAT_MAX], const char *name, Py_ssize_t item) {
    if (item < 0) return name;
    snprintf(buf, RPY_WHAT_MAX, "%s[%zd]", name, item);
    return buf;
}

static int rpy_type_error(const char *name, Py_ssize_t item, const char *expected, PyObject *o) {
    char what[RPY_WHAT_MAX];
    PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", rpy_what(what, name, item),
                 expected, Py_TYPE(o)->tp_name);
    return -1;
}

static int rpy_invalid(const char *format, const char *name, Py_ssize_t item, const char *got) {
    char message[RP_ERROR_MESSAGE_MAX], what[RPY_WHAT_MAX];
    snprintf(message, sizeof message, format, rpy_what(what, name, item), got);
    rpy_raise(RP_EINVAL, message);
    return -1;
}

/* A Redis reply tree as Python objects; error replies become exception instances. */
static PyObject *rpy_reply(const rp_reply *r) {
    PyObject *list, *item, *s;
    size_t i;
    switch (r->type) {
    case RP_REPLY_STRING:
    case RP_REPLY_STATUS: return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    case RP_REPLY_INTEGER: return PyLong_FromLongLong(r->integer);
    case RP_REPLY_NIL: Py_RETURN_NONE;
    case RP_REPLY_BOOL: return PyBool_FromLong(r->integer != 0);
    case RP_REPLY_ERROR: return rpy_error_object(rp_reply_error_status(r), r->str, r->len);
    case RP_REPLY_DOUBLE:
        if ((s = PyUnicode_DecodeUTF8(r->str, (Py_ssize_t)r->len, "replace")) == NULL) return NULL;
        item = PyFloat_FromString(s);
        Py_DECREF(s);
        return item;
    case RP_REPLY_ARRAY:
        if ((list = PyList_New((Py_ssize_t)r->elements)) == NULL) return NULL;
        for (i = 0; i < r->elements; i++) {
            if ((item = rpy_reply(r->element[i])) == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    }
    return PyErr_Format(PyExc_RuntimeError, "redpat: unknown reply type %d", (int)r->type);
}

/* --- Python values in ------------------------------------------------------------------- */

/* The rp_values of one call, and the objects they point into (kept as long as they). */
typedef struct rpy_in {
    rp_value v[RP_DESC_ARGS_MAX];
    PyObject *keep; /* a list, made on first need */
} rpy_in;

/* Keeps o (a new reference, stolen; NULL: fails) as long as in. */
static int rpy_keep(rpy_in *in, PyObject *o) {
    int rc = -1;
    if (o != NULL && (in->keep != NULL || (in->keep = PyList_New(0)) != NULL))
        rc = PyList_Append(in->keep, o);
    Py_XDECREF(o);
    return rc;
}

/* Seconds (int, float, timedelta) as integer ms, the one place they are converted: NaN and
 * infinities are refused naming the argument, a duration below 1 ms but not 0 becomes 1 ms
 * (never silently 0), and FOREVER (INT64_MAX seconds) is the core's "forever". */
static int rpy_ms(PyObject *o, const char *name, Py_ssize_t item, int64_t *out) {
    char got[64];
    double s;
    if (PyLong_Check(o) && !PyBool_Check(o)) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (n == -1 && PyErr_Occurred()) return -1;
        if (n == INT64_MAX) {
            *out = INT64_MAX;
            return 0;
        }
        s = overflow != 0 ? overflow * 1e300 : (double)n;
    } else if (PyFloat_Check(o)) {
        s = PyFloat_AS_DOUBLE(o);
    } else if (PyDelta_Check(o)) {
        PyObject *t = PyObject_CallMethod(o, "total_seconds", NULL);
        s = t != NULL ? PyFloat_AsDouble(t) : -1.0;
        Py_XDECREF(t);
        if (PyErr_Occurred()) return -1;
    } else {
        return rpy_type_error(name, item, "a number of seconds", o);
    }
    if (!isfinite(s) || fabs(s * 1000.0) >= RPY_MS_LIMIT) {
        snprintf(got, sizeof got, "%g", s);
        return rpy_invalid(isfinite(s) ? "%s is out of range (got %s seconds)"
                                       : "%s must be a finite number of seconds (got %s)",
                           name, item, got);
    }
    *out = (int64_t)llround(s * 1000.0);
    if (*out == 0 && s != 0.0) *out = s > 0.0 ? 1 : -1;
    return 0;
}

/* One Python value as an rp_value of type, for the argument called name (item >= 0: its
 * item of that index). */
static int rpy_value(rpy_in *in, const char *name, Py_ssize_t item, rp_type type, rp_kind kind,
                     PyObject *o, rp_value *v) {
    rpy_handle *h = NULL;
    long long n;
    int64_t ms;
    int b = 0;
    switch (type) {
    case RP_TYPE_BYTES:
    case RP_TYPE_ENUM: /* an enum goes by name, parsed by the core */
        if (type == RP_TYPE_BYTES && !PyBytes_Check(o) && !PyUnicode_Check(o) &&
            PyObject_CheckBuffer(o) && rpy_keep(in, o = PyBytes_FromObject(o)) < 0)
            return -1; /* a copy of the buffer (which may change meanwhile), kept */
        if (PyBytes_Check(o)) {
            *v = rp_value_bytes(PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o));
        } else if (PyUnicode_Check(o)) {
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(o, &len);
            if (s == NULL) return -1;
            *v = rp_value_bytes(s, (size_t)len);
        } else {
            return rpy_type_error(name, item, type == RP_TYPE_ENUM ? "a str" : "bytes or str", o);
        }
        return 0;
    case RP_TYPE_INT:
        if (PyBool_Check(o) || !PyIndex_Check(o)) return rpy_type_error(name, item, "an int", o);
        if ((o = PyNumber_Index(o)) == NULL) return -1;
        n = PyLong_AsLongLongAndOverflow(o, &b);
        Py_DECREF(o);
        if (n == -1 && PyErr_Occurred()) return -1;
        if (b) return rpy_invalid("%s is out of range%s", name, item, " (not a 64-bit integer)");
        *v = rp_value_int(RP_TYPE_INT, (int64_t)n);
        return 0;
    case RP_TYPE_MS:
        if (rpy_ms(o, name, item, &ms) < 0) return -1;
        *v = rp_value_int(RP_TYPE_MS, ms);
        return 0;
    case RP_TYPE_FLOAT:
        if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o)))
            return rpy_type_error(name, item, "a number", o);
        *v = rp_value_float(PyFloat_AsDouble(o));
        return PyErr_Occurred() ? -1 : 0;
    case RP_TYPE_BOOL:
        *v = rp_value_int(RP_TYPE_BOOL, b = PyObject_IsTrue(o));
        return b < 0 ? -1 : 0;
    case RP_TYPE_HANDLE:
        if (SWIG_ConvertPtr(o, (void **)&h, SWIGTYPE_p_rpy_handle, 0) < 0 || h == NULL ||
            (kind != RP_KIND_NONE && h->kind != kind)) {
            char expected[64];
            snprintf(expected, sizeof expected, "a %s handle", rp_kind_name(kind));
            return rpy_type_error(name, item, expected, o);
        }
        *v = rp_value_handle(h->kind, h->ptr);
        return 0;
    case RP_TYPE_CALLBACK: /* borrowed: the arguments (kept by the op, or the call) hold it */
        if (!PyCallable_Check(o)) return rpy_type_error(name, item, "callable", o);
        memset(v, 0, sizeof *v);
        v->type = RP_TYPE_CALLBACK;
        v->handle = o;
        return 0;
    default:
        PyErr_Format(PyExc_TypeError, "%s: %s values are not supported", name, rp_type_name(type));
        return -1;
    }
}

/* A LIST argument: any iterable but str and bytes, each item of the described type. */
static int rpy_list(rpy_in *in, const char *name, const rp_arg_desc *a, PyObject *o,
                    rp_value *v) {
    PyObject *t = NULL, *store;
    rp_value *items;
    Py_ssize_t i, n;
    /* A tuple of its own: nobody can take out of it what the op borrows. */
    if (!PyUnicode_Check(o) && !PyBytes_Check(o) && !PyByteArray_Check(o))
        t = PySequence_Tuple(o);
    if (t == NULL) {
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Clear();
        return rpy_type_error(name, -1, "a sequence", o);
    }
    if (rpy_keep(in, t) < 0) return -1;
    n = PyTuple_GET_SIZE(t);
    /* The items' array lives in a bytes object, kept with the rest. */
    store = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(rp_value) * (n + 1));
    if (rpy_keep(in, store) < 0) return -1;
    items = (rp_value *)(void *)PyBytes_AS_STRING(store);
    memset(items, 0, sizeof(rp_value) * (size_t)(n + 1));
    for (i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(t, i) != Py_None &&
            rpy_value(in, name, i, a->item_type, a->kind, PyTuple_GET_ITEM(t, i), &items[i]) < 0)
            return -1;
    *v = rp_value_list(items, (size_t)n);
    return 0;
}

/* args[first..] as the values of e's arguments, in the descriptor's order. */
static int rpy_args(rpy_in *in, const rpy_desc *e, PyObject *args, Py_ssize_t first) {
    Py_ssize_t i, n = PyTuple_GET_SIZE(args) - first;
    if (n > (Py_ssize_t)e->d->nargs) {
        PyErr_Format(PyExc_TypeError, "%s takes at most %zu arguments (%zd given)", e->d->name,
                     e->d->nargs, n);
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(args, first + i);
        const rp_arg_desc *a = &e->d->args[i];
        if (o != Py_None && (a->type == RP_TYPE_LIST
                                 ? rpy_list(in, e->name[i], a, o, &in->v[i])
                                 : rpy_value(in, e->name[i], -1, a->type, a->kind, o, &in->v[i])) < 0)
            return -1;
    }
    return 0;
}

/* --- results out ------------------------------------------------------------------------ */

static PyObject *rpy_out(const rp_value *v) {
    PyObject *list, *item;
    size_t i;
    switch (v->type) {
    case RP_TYPE_NONE: Py_RETURN_NONE;
    case RP_TYPE_BYTES: return PyBytes_FromStringAndSize(v->len ? v->bytes : "", (Py_ssize_t)v->len);
    case RP_TYPE_INT: return PyLong_FromLongLong((long long)v->i);
    case RP_TYPE_MS: return PyFloat_FromDouble((double)v->i / 1000.0);
    case RP_TYPE_FLOAT: return PyFloat_FromDouble(v->f);
    case RP_TYPE_BOOL: return PyBool_FromLong(v->i != 0);
    case RP_TYPE_ENUM: return PyUnicode_FromStringAndSize(v->len ? v->bytes : "", (Py_ssize_t)v->len);
    case RP_TYPE_REPLY:
        if (v->reply != NULL) return rpy_reply(v->reply);
        Py_RETURN_NONE;
    case RP_TYPE_STATUS:
        if (v->i != RP_OK) return rpy_error_object((int)v->i, v->bytes, v->bytes ? v->len : 0);
        Py_RETURN_NONE;
    case RP_TYPE_LIST:
        if ((list = PyList_New((Py_ssize_t)v->count)) == NULL) return NULL;
        for (i = 0; i < v->count; i++) {
            if ((item = rpy_out(&v->items[i])) == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    default:
        return PyErr_Format(PyExc_TypeError, "redpat: %s results are not supported",
                            rp_type_name(v->type));
    }
}

/* Record index of a DONE op as e's record class, fields in the descriptor's order. The
 * class is a tuple subclass: made as tuple.__new__(cls, ...) makes it (a NamedTuple's
 * _make), without the class's slower Python __new__. */
static PyObject *rpy_fields(PyObject *record, const rp_value *f, Py_ssize_t n) {
    PyTypeObject *cls = (PyTypeObject *)record;
    PyObject *t, *item;
    Py_ssize_t i;
    if ((t = cls != NULL ? cls->tp_alloc(cls, n) : PyTuple_New(n)) == NULL) return NULL;
    for (i = 0; i < n; i++) {
        if ((item = rpy_out(&f[i])) == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, item);
    }
    return t;
}

static PyObject *rpy_record(const rpy_desc *e, const rp_op *op, size_t index) {
    rp_value f[RP_DESC_FIELDS_MAX];
    int rc = rp_op_result(op, index, f);
    if (rc != RP_OK) return rpy_raise(rc, "");
    return rpy_fields(e->record, f, (Py_ssize_t)e->d->nfields);
}

/* The message of an op that has just EMITted, as e's message class (fields in the order
 * of the descriptor's message_fields). */
static PyObject *rpy_message(const rpy_desc *e, const rp_op *op) {
    rp_value f[RP_DESC_FIELDS_MAX];
    int rc = rp_op_message(op, f);
    if (rc != RP_OK) return rpy_raise(rc, "no message to read");
    return rpy_fields(e->message, f, (Py_ssize_t)e->d->nmessage_fields);
}

/* The result of a DONE op begun from e: None, one record, or a list of records. */
static PyObject *rpy_result(const rpy_desc *e, const rp_op *op) {
    PyObject *list, *item;
    size_t i, n;
    if (!rp_op_done(op)) return rpy_raise(RP_ESTATE, "the op is not done: no result yet");
    if (e->d->shape == RP_RESULT_NONE) Py_RETURN_NONE;
    if (e->d->shape == RP_RESULT_RECORD) return rpy_record(e, op, 0);
    if ((list = PyList_New((Py_ssize_t)(n = rp_op_result_count(op)))) == NULL) return NULL;
    for (i = 0; i < n; i++) {
        if ((item = rpy_record(e, op, i)) == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* --- running ---------------------------------------------------------------------------- */

/* What a callback's outcome becomes for rp_op_resume (and the call hook's *result):
 * ok: ret is what it returned: bytes-likes and str as BYTES (their bytes held in *hold
 * until the op has copied them), anything else as NONE (the Python layer keeps the value
 * itself); else ret is what it raised: an Exception as STATUS RP_ECALLBACK with its text,
 * any other BaseException (KeyboardInterrupt, SystemExit, asyncio.CancelledError) as
 * STATUS RP_ECANCELED. -1 (an exception set) only when ret cannot be read. */
static int rpy_outcome(PyObject *ret, int ok, rp_value *v, PyObject **hold,
                       char message[RP_ERROR_MESSAGE_MAX]) {
    PyObject *text;
    memset(v, 0, sizeof *v);
    Py_CLEAR(*hold);
    if (ok) {
        if (PyUnicode_Check(ret)) {
            *hold = PyUnicode_AsUTF8String(ret);
        } else if (PyBytes_Check(ret)) {
            Py_INCREF(ret);
            *hold = ret;
        } else if (PyObject_CheckBuffer(ret)) {
            *hold = PyBytes_FromObject(ret);
        } else {
            return 0; /* NONE */
        }
        if (*hold == NULL) return -1;
        *v = rp_value_bytes(PyBytes_AS_STRING(*hold), (size_t)PyBytes_GET_SIZE(*hold));
        return 0;
    }
    v->type = RP_TYPE_STATUS;
    v->i = PyErr_GivenExceptionMatches(ret, PyExc_Exception) ? RP_ECALLBACK : RP_ECANCELED;
    text = PyObject_Str(ret);
    if (text == NULL || PyUnicode_GET_LENGTH(text) == 0) {
        PyErr_Clear();
        Py_XSETREF(text, PyUnicode_FromString(Py_TYPE(ret)->tp_name));
    }
    snprintf(message, RP_ERROR_MESSAGE_MAX, "%s", text != NULL ? PyUnicode_AsUTF8(text) : "?");
    if (text == NULL || PyErr_Occurred()) PyErr_Clear(); /* the message is best effort */
    Py_XDECREF(text);
    v->bytes = message;
    v->len = strlen(message);
    return 0;
}

/* values[0..count) as a tuple of Python values (a CALL's arguments for its callback). */
static PyObject *rpy_values(const rp_value *values, size_t count) {
    PyObject *t = PyTuple_New((Py_ssize_t)count), *item;
    size_t i;
    for (i = 0; t != NULL && i < count; i++) {
        if ((item = rpy_out(&values[i])) == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}

/* One blocking drive (rp_client_drive / rp_client_pump) of an op from a Python call. */
typedef struct rpy_drive {
    PyThreadState *ts;     /* the calling thread's, while it runs without the GIL */
    unsigned long thread;  /* the calling thread (the one whose state ts is) */
    PyObject *fn[RP_DESC_ARGS_MAX]; /* the callables of the op's CALLBACK arguments */
    PyObject *exc[3];      /* what a callable raised (type, value, traceback), re-raised
                              once the op has ended */
    PyObject *hold;        /* the bytes a callable's result points into */
    int called;            /* a callable has run (run(): the op is not paused after it) */
    uint64_t pause_ms;     /* run(): the SLEEP the drive paused at */
    char message[RP_ERROR_MESSAGE_MAX];
} rpy_drive;

static void rpy_clear_exc(rpy_drive *d) {
    Py_CLEAR(d->exc[0]);
    Py_CLEAR(d->exc[1]);
    Py_CLEAR(d->exc[2]);
}

/* Takes the GIL from a hook: the calling thread restores its own state; another thread (a
 * driver's helper, should it call a hook) gets one of its own. */
static int rpy_enter(rpy_drive *d, PyGILState_STATE *g) {
    if (PyThread_get_thread_ident() == d->thread) {
        PyEval_RestoreThread(d->ts);
        return 1;
    }
    *g = PyGILState_Ensure();
    return 0;
}

static void rpy_leave(rpy_drive *d, int mine, PyGILState_STATE g) {
    if (mine) d->ts = PyEval_SaveThread();
    else PyGILState_Release(g);
}

/* The driver's sleep, called with the GIL released: slices of at most RPY_SLEEP_SLICE_MS,
 * Python's signal handlers run (with the GIL) before each. A handler that raised
 * (KeyboardInterrupt) cancels the op, its exception left pending. Signal handlers run in
 * the main thread only: another thread just sleeps. */
static int rpy_sleep(void *ud, uint64_t ms) {
    rpy_drive *d = (rpy_drive *)ud;
    uint64_t end = rp_monotonic_ms() + ms, now;
    struct timespec slice = {0, 0};
    int raised;
    if (PyThread_get_thread_ident() != d->thread) {
        slice.tv_sec = (time_t)(ms / 1000u);
        slice.tv_nsec = (long)(ms % 1000u) * 1000000L;
        nanosleep(&slice, NULL);
        return 0;
    }
    for (;;) {
        PyEval_RestoreThread(d->ts);
        raised = PyErr_CheckSignals();
        d->ts = PyEval_SaveThread();
        if (raised || (now = rp_monotonic_ms()) >= end) return raised;
        slice.tv_nsec = (long)(end - now < RPY_SLEEP_SLICE_MS ? end - now : RPY_SLEEP_SLICE_MS) * 1000000L;
        nanosleep(&slice, NULL); /* a signal ends the slice early: fine */
    }
}

/* The driver's call hook (drive.h): runs the op's callable arg with values, with the GIL.
 * Its exception is kept in d (the latest one) for rpy_finish to re-raise. */
static void rpy_call_hook(void *ud, rp_op *op, size_t arg, const rp_value *values, size_t count,
                          rp_value *result) {
    rpy_drive *d = (rpy_drive *)ud;
    PyGILState_STATE g = PyGILState_UNLOCKED;
    int mine = rpy_enter(d, &g);
    PyObject *fn = NULL, *args, *ret = NULL;
    (void)op;
    d->called = 1;
    if (arg < RP_DESC_ARGS_MAX) fn = d->fn[arg];
    if (PyErr_Occurred())
        ; /* a signal handler raised during a wait (Ctrl-C): that is the call's outcome */
    else if (fn == NULL)
        PyErr_Format(PyExc_RuntimeError, "redpat: the op called argument %zu: no callable", arg);
    else if ((args = rpy_values(values, count)) != NULL) {
        ret = PyObject_CallObject(fn, args);
        Py_DECREF(args);
    }
    if (ret != NULL) {
        if (rpy_outcome(ret, 1, result, &d->hold, d->message) < 0) {
            Py_CLEAR(ret); /* unreadable bytes: a failure of the callable's */
        }
    }
    if (ret == NULL) {
        rpy_clear_exc(d);
        PyErr_Fetch(&d->exc[0], &d->exc[1], &d->exc[2]);
        PyErr_NormalizeException(&d->exc[0], &d->exc[1], &d->exc[2]);
        if (d->exc[2] != NULL) PyException_SetTraceback(d->exc[1], d->exc[2]);
        rpy_outcome(d->exc[1], 0, result, &d->hold, d->message);
    }
    Py_XDECREF(ret);
    rpy_leave(d, mine, g);
}

/* run()'s sleep hook: pauses the drive at the op's SLEEP (its length noted in d) for the
 * caller to wait with the connection back in its pool. Once a callable has run (a
 * lock.using) the op stays on its connection to its end, as call() runs it: what the
 * callable raised is re-raised when the op has ended. */
static int rpy_pause(void *ud, uint64_t ms) {
    rpy_drive *d = (rpy_drive *)ud;
    if (d->called) return rpy_sleep(ud, ms);
    d->pause_ms = ms;
    return RP_DRIVE_PAUSE;
}

/* Starts a drive in the calling thread (which holds the GIL): releases it. fn: the op's
 * callables by argument index (NULL: none). */
static void rpy_drive_begin(rpy_drive *d, PyObject *const *fn, rp_drive_hooks *hooks) {
    memset(d, 0, sizeof *d);
    if (fn != NULL) memcpy(d->fn, fn, sizeof d->fn);
    d->thread = PyThread_get_thread_ident();
    hooks->sleep = rpy_sleep;
    hooks->call = rpy_call_hook;
    hooks->ud = d;
    d->ts = PyEval_SaveThread();
}

/* Ends a drive: takes the GIL back. rc is the drive's status. A callable's exception is
 * re-raised as it was when the op failed for it (RP_ECALLBACK, RP_ECANCELED); a signal
 * handler's pending exception likewise for a cancelled op; else the status's exception.
 * Returns rc with an exception set unless rc is RP_OK or one of pass (RP_OK: none). */
static int rpy_drive_end(rpy_drive *d, int rc, const rp_error *err, int pass) {
    PyEval_RestoreThread(d->ts);
    Py_CLEAR(d->hold);
    if (rc != RP_OK && rc != pass) {
        if (d->exc[1] != NULL && (rc == RP_ECALLBACK || rc == RP_ECANCELED)) {
            PyErr_Restore(d->exc[0], d->exc[1], d->exc[2]); /* the references go with it */
            d->exc[0] = d->exc[1] = d->exc[2] = NULL;
        } else if (rc != RP_ECANCELED || !PyErr_Occurred()) {
            rpy_raise(rc, err->message);
        }
    }
    rpy_clear_exc(d); /* the op carried on after the callable's failure: it said so itself */
    return rc;
}

/* Runs op to the end over conn's connections (conn NULL: an op answered from its handle,
 * DONE at its first step); args: its arguments (for CALLs). 0, or -1 with an exception. */
static int rpy_run(rpy_handle *conn, rp_op *op, const rp_value *args) {
    PyObject *fn[RP_DESC_ARGS_MAX] = {NULL};
    rp_drive_hooks hooks;
    size_t i;
    rpy_drive d;
    rp_error err;
    int rc = RP_ESTATE;
    rp_error_clear(&err);
    if (conn == NULL) {
        rp_step step = rp_op_step(op, rp_monotonic_ms());
        if (step == RP_STEP_DONE) return 0;
        if (step == RP_STEP_ERROR) rc = (err = *rp_op_error(op)).code;
        else snprintf(err.message, sizeof err.message, "%s needs a connection", rp_op_name(op));
        rpy_raise(rc, err.message);
        return -1;
    }
    for (i = 0; i < RP_DESC_ARGS_MAX; i++)
        if (args[i].type == RP_TYPE_CALLBACK) fn[i] = (PyObject *)args[i].handle;
    rpy_drive_begin(&d, fn, &hooks);
    rc = rp_client_drive((rp_client *)conn->ptr, op, &hooks, &err);
    return rpy_drive_end(&d, rc, &err, RP_OK) == RP_OK ? 0 : -1;
}

/* --- the module's functions (METH_VARARGS: every argument is checked here) --------------- */

static rpy_handle *rpy_client_of(PyObject *o, const char *what) {
    rpy_handle *h = NULL;
    if (SWIG_ConvertPtr(o, (void **)&h, SWIGTYPE_p_rpy_handle, 0) >= 0 && h != NULL &&
        h->kind == RP_KIND_CLIENT)
        return h;
    rpy_type_error(what, -1, "a client handle", o);
    return NULL;
}

static rpy_desc *rpy_find_str(const char *name) {
    const rp_op_desc *d = rp_desc_find(name, strlen(name));
    size_t i;
    for (i = 0; d != NULL && i < rpy_ndescs; i++)
        if (rpy_descs[i].d == d) return &rpy_descs[i];
    PyErr_Format(PyExc_ValueError, "redpat: no op called %s", name);
    return NULL;
}

static rpy_desc *rpy_find(PyObject *name) {
    PyObject *ix;
    if (!PyUnicode_Check(name)) {
        rpy_type_error("the op name", -1, "a str", name);
        return NULL;
    }
    if ((ix = PyDict_GetItemWithError(rpy_index, name)) != NULL)
        return &rpy_descs[PyLong_AsSsize_t(ix)];
    if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "redpat: no op called %R", name);
    return NULL;
}

/* Reads (op name, *values) from args[first..] and makes the handle (make: a constructor)
 * or begins the op, into *out. NULL with an exception set on failure. */
static const rpy_desc *rpy_start(PyObject *args, Py_ssize_t first, int make, rpy_in *in,
                                 void **out) {
    const rpy_desc *e = NULL;
    rp_op *op = NULL;
    rp_error err;
    int rc;
    memset(in, 0, sizeof *in);
    *out = NULL;
    if (PyTuple_GET_SIZE(args) <= first) {
        PyErr_SetString(PyExc_TypeError, "the op name is missing");
    } else if ((e = rpy_find(PyTuple_GET_ITEM(args, first))) != NULL &&
               make != (e->d->makes != RP_KIND_NONE)) {
        PyErr_Format(PyExc_TypeError, "%s %s", e->d->name,
                     make ? "makes no handle: begin it" : "makes a handle: use make");
    } else if (e != NULL && rpy_args(in, e, args, first + 1) == 0) {
        rp_error_clear(&err);
        rc = make ? rp_desc_make(out, e->d, in->v, &e->nm, &err)
                  : rp_desc_begin(&op, e->d, in->v, &e->nm, &err);
        if (!make) *out = op;
        if (rc == RP_OK) return e;
        rpy_raise(rc, err.message);
    }
    return NULL;
}

static void rpy_delete(rpy_handle *h) {
    if (h->kind != RP_KIND_NONE) rp_handle_free(h->kind, h->ptr); /* before what it borrows */
    else rp_op_free((rp_op *)h->ptr);
    Py_XDECREF(h->keep);
    PyMem_Free(h);
}

/* make(op name, *args) -> Handle, for constructors ("client.new", "lock.new", ...);
 * begin(op name, *args) -> Op, for the others (no I/O: for drivers with their own). */
/* A Handle (make) or an Op owning ptr, made from descriptor e; keep (a new reference,
 * stolen) is released after ptr is freed; v: the values ptr was made from (an Op notes
 * the callables of its CALLBACK arguments, which keep holds). NULL (ptr freed) on failure. */
static PyObject *rpy_wrap(const rpy_desc *e, int make, void *ptr, PyObject *keep,
                          const rp_value *v) {
    rpy_handle *w = PyMem_Calloc(1, make ? sizeof(rpy_handle) : sizeof(rpy_op));
    PyObject *res;
    size_t i;
    if (w == NULL) {
        if (make) rp_handle_free(e->d->makes, ptr);
        else rp_op_free((rp_op *)ptr);
        Py_XDECREF(keep);
        return PyErr_NoMemory();
    }
    w->kind = make ? e->d->makes : RP_KIND_NONE;
    w->ptr = ptr;
    w->e = e;
    w->keep = keep;
    for (i = 0; !make && v != NULL && i < e->d->nargs && i < RP_DESC_ARGS_MAX; i++)
        if (v[i].type == RP_TYPE_CALLBACK) ((rpy_op *)w)->fn[i] = (PyObject *)v[i].handle;
    res = SWIG_Python_NewPointerObj(NULL, w, make ? SWIGTYPE_p_rpy_handle : SWIGTYPE_p_rpy_op,
                                    SWIG_POINTER_OWN);
    if (res == NULL) rpy_delete(w);
    return res;
}

static PyObject *rpy_new(PyObject *args, int make) {
    rpy_in in;
    void *ptr;
    const rpy_desc *e = rpy_start(args, 0, make, &in, &ptr);
    if (e == NULL) {
        if (ptr != NULL && make) rp_handle_free(e != NULL ? e->d->makes : RP_KIND_NONE, ptr);
        else if (ptr != NULL) rp_op_free((rp_op *)ptr);
        Py_XDECREF(in.keep);
        return NULL;
    }
    /* keep the arguments, and what in kept for them if anything */
    Py_INCREF(args);
    if (in.keep != NULL && rpy_keep(&in, args) < 0) {
        if (make) rp_handle_free(e->d->makes, ptr);
        else rp_op_free((rp_op *)ptr);
        Py_DECREF(in.keep);
        return NULL;
    }
    return rpy_wrap(e, make, ptr, in.keep != NULL ? in.keep : args, in.v);
}

static PyObject *rpy_make(PyObject *self RPY_UNUSED, PyObject *args) { return rpy_new(args, 1); }
static PyObject *rpy_begin(PyObject *self RPY_UNUSED, PyObject *args) { return rpy_new(args, 0); }

/* call(conn, op name, *args) -> result: begins the op, runs it over conn (a connected client
 * handle; None for ops answered from their handle), reads the result and frees the op. The
 * blocking path: one C call per op. */
static PyObject *rpy_call(PyObject *self RPY_UNUSED, PyObject *args) {
    const rpy_desc *e;
    rpy_handle *conn = NULL;
    PyObject *res = NULL;
    void *op = NULL;
    rpy_in in;
    if (PyTuple_GET_SIZE(args) < 1) return PyErr_Format(PyExc_TypeError, "call(conn, op, *args)");
    if (PyTuple_GET_ITEM(args, 0) != Py_None &&
        (conn = rpy_client_of(PyTuple_GET_ITEM(args, 0), "conn")) == NULL)
        return NULL;
    if ((e = rpy_start(args, 1, 0, &in, &op)) != NULL && rpy_run(conn, (rp_op *)op, in.v) == 0)
        res = rpy_result(e, (rp_op *)op);
    rp_op_free((rp_op *)op);
    Py_XDECREF(in.keep);
    return res;
}

/* The op API of drivers with their own I/O (asyncio). RPY_OP_ARGS parses the op (into op)
 * and the rest of the arguments by format. */
#define RPY_OP_ARGS(format, ...)                                                             \
    PyObject *o;                                                                             \
    rpy_op *w = NULL;                                                                        \
    rp_op *op;                                                                               \
    if (!PyArg_ParseTuple(args, "O" format, &o, ##__VA_ARGS__)) return NULL;                 \
    if (SWIG_ConvertPtr(o, (void **)&w, SWIGTYPE_p_rpy_op, 0) < 0 || w == NULL)              \
        return rpy_type_error("op", -1, "a redpat._core.Op", o), NULL;                       \
    op = (rp_op *)w->h.ptr

/* step(op[, now_ms]) advances the op: (STEP_IO, the bytes to write to each node, b"" for
 * none), (STEP_SLEEP, seconds, or None while a CALL runs: until it has returned),
 * (STEP_CALL, (argument index, its callable, the arguments to call it with)), (STEP_EMIT,
 * the message record) or (STEP_DONE, its result); a failed op raises. */
static PyObject *rpy_step(PyObject *self RPY_UNUSED, PyObject *args) {
    unsigned long long now = 0;
    const rp_error *e;
    PyObject *requests, *b;
    const char *p;
    size_t i, n, len;
    rp_step step;
    RPY_OP_ARGS("|K:step", &now);
    step = rp_op_step(op, PyTuple_GET_SIZE(args) < 2 ? rp_monotonic_ms() : (uint64_t)now);
    switch (step) {
    case RP_STEP_IO:
        if ((requests = PyTuple_New((Py_ssize_t)(n = rp_op_nodes(op)))) == NULL) return NULL;
        for (i = 0; i < n; i++) {
            p = NULL;
            len = 0;
            if (rp_op_request(op, i, &p, &len) != RP_OK) len = 0;
            if ((b = PyBytes_FromStringAndSize(len ? p : "", (Py_ssize_t)len)) == NULL) {
                Py_DECREF(requests);
                return NULL;
            }
            PyTuple_SET_ITEM(requests, (Py_ssize_t)i, b);
        }
        return Py_BuildValue("(iN)", (int)step, requests);
    case RP_STEP_SLEEP:
        if (rp_op_sleep_ms(op) == RP_SLEEP_UNTIL_RESUMED)
            return Py_BuildValue("(iO)", (int)step, Py_None);
        return Py_BuildValue("(id)", (int)step, (double)rp_op_sleep_ms(op) / 1000.0);
    case RP_STEP_CALL: {
        rp_value values[RPY_CALL_VALUES_MAX];
        size_t arg = 0, count = 0;
        PyObject *fn;
        if (rp_op_call(op, &arg, values, RPY_CALL_VALUES_MAX, &count) != RP_OK ||
            arg >= RP_DESC_ARGS_MAX || (fn = w->fn[arg]) == NULL)
            return rpy_raise(RP_ESTATE, "the op called an argument that is no callable");
        return Py_BuildValue("(i(nON))", (int)step, (Py_ssize_t)arg, fn, rpy_values(values, count));
    }
    case RP_STEP_EMIT:
        return Py_BuildValue("(iN)", (int)step, rpy_message(w->h.e, op));
    case RP_STEP_DONE:
        return Py_BuildValue("(iN)", (int)step, rpy_result(w->h.e, op));
    default:
        e = rp_op_error(op);
        return rpy_raise(e != NULL ? e->code : RP_ESTATE, e != NULL ? e->message : "");
    }
}

/* feed(op, node, data) -> OK (all the node's replies are in), MORE, or a failure status. */
static PyObject *rpy_feed(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *bytes;
    Py_ssize_t node;
    Py_buffer data;
    int rc;
    RPY_OP_ARGS("nO:feed", &node, &bytes);
    if (PyObject_GetBuffer(bytes, &data, PyBUF_SIMPLE) < 0) return NULL;
    rc = rp_op_feed(op, (size_t)node, (const char *)data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromLong(rc);
}

/* fail_node(op, node, status, why): the driver's I/O with node failed. */
static PyObject *rpy_fail_node(PyObject *self RPY_UNUSED, PyObject *args) {
    const char *why = NULL;
    Py_ssize_t node;
    int status;
    RPY_OP_ARGS("nis:fail_node", &node, &status, &why);
    rp_op_fail_node(op, (size_t)node, status, why);
    Py_RETURN_NONE;
}

/* fail_node_unsent(op, node, status, why): the same, before any byte of node's request was
 * written (a refused connect, a failed handshake): nothing of it can have run. */
static PyObject *rpy_fail_node_unsent(PyObject *self RPY_UNUSED, PyObject *args) {
    const char *why = NULL;
    Py_ssize_t node;
    int status;
    RPY_OP_ARGS("nis:fail_node_unsent", &node, &status, &why);
    rp_op_fail_node_unsent(op, (size_t)node, status, why);
    Py_RETURN_NONE;
}

/* target(op, node) -> (address, is_unix, host, port, path, tls): where node's requests go;
 * address is the key of connection pools; tls: the url is rediss://. */
static PyObject *rpy_target(PyObject *self RPY_UNUSED, PyObject *args) {
    Py_ssize_t node;
    rp_endpoint ep;
    int rc;
    RPY_OP_ARGS("n:target", &node);
    if (node < 0 || (rc = rp_op_target(op, (size_t)node, &ep)) != RP_OK)
        return rpy_raise(RP_EINVAL, "no such target");
    return Py_BuildValue("(sNzizN)", ep.address, PyBool_FromLong(ep.is_unix), ep.host, ep.port,
                         ep.path, PyBool_FromLong(ep.tls));
}

/* handshake(op, node, client) -> Op: what a fresh connection to node's target runs first
 * (AUTH, SELECT), one target (node 0); DONE at once when nothing is needed. client: the
 * client the op was made from (the new op borrows it). */
static PyObject *rpy_handshake(PyObject *self RPY_UNUSED, PyObject *args) {
    static rpy_desc *hs = NULL;
    PyObject *c;
    rpy_handle *h;
    Py_ssize_t node;
    rp_endpoint ep;
    rp_op *out = NULL;
    rp_error err;
    int rc;
    RPY_OP_ARGS("nO:handshake", &node, &c);
    if ((h = rpy_client_of(c, "client")) == NULL) return NULL;
    if (hs == NULL && (hs = rpy_find_str("client.handshake")) == NULL) return NULL;
    if (node < 0 || rp_op_target(op, (size_t)node, &ep) != RP_OK)
        return rpy_raise(RP_EINVAL, "no such target");
    rp_error_clear(&err);
    if ((rc = rp_endpoint_handshake_op(&out, (rp_client *)h->ptr, &ep, &err)) != RP_OK)
        return rpy_raise(rc, err.message);
    Py_INCREF(c);
    return rpy_wrap(hs, 0, out, c, NULL);
}

/* The op's queries: name(op) -> expr, or name(op, node) -> expr (node in range). */
#define RPY_OP_QUERY(name, expr)                                                             \
    static PyObject *rpy_##name(PyObject *self RPY_UNUSED, PyObject *args) {                 \
        RPY_OP_ARGS(":" #name);                                                              \
        return expr;                                                                         \
    }
#define RPY_NODE_QUERY(name, expr)                                                           \
    static PyObject *rpy_##name(PyObject *self RPY_UNUSED, PyObject *args) {                 \
        Py_ssize_t node;                                                                     \
        RPY_OP_ARGS("n:" #name, &node);                                                      \
        if (node < 0 || (size_t)node >= rp_op_nodes(op))                                     \
            return rpy_raise(RP_EINVAL, "no such target");                                   \
        return expr;                                                                         \
    }
/* pending(op, node) -> bool: node has a request in flight whose replies are not all in. */
RPY_NODE_QUERY(pending, PyBool_FromLong(rp_op_pending(op, (size_t)node)))
/* replies_owed(op, node) -> int: how many replies node still owes in the current round
 * (a driver that parks an abandoned target's connection drops that many first). */
RPY_NODE_QUERY(replies_owed, PyLong_FromSize_t(rp_op_replies_owed(op, (size_t)node)))
/* listening(op, node) -> bool: node's round is a listening round (long-lived ops). */
RPY_NODE_QUERY(listening, PyBool_FromLong(rp_op_listening(op, (size_t)node)))
/* round_over(op) -> bool: the IO round may end (abandon the targets still pending). */
RPY_OP_QUERY(round_over, PyBool_FromLong(rp_op_round_over(op)))
/* timeout_ms(op) -> int: the round's per-target timeout (0: the driver's command timeout). */
RPY_OP_QUERY(timeout_ms, PyLong_FromUnsignedLongLong((unsigned long long)rp_op_timeout_ms(op)))
/* long_lived(op) -> bool: the op keeps connections of its own (a subscription). */
RPY_OP_QUERY(long_lived, PyBool_FromLong(rp_op_long_lived(op)))

/* resume(op, outcome, raised=False): the callable of the op's CALL has ended: outcome is
 * what it returned, or (raised) the exception it raised; see rpy_outcome. */
static PyObject *rpy_resume(PyObject *self RPY_UNUSED, PyObject *args) {
    char message[RP_ERROR_MESSAGE_MAX];
    PyObject *outcome, *hold = NULL;
    int raised = 0, rc;
    rp_value v;
    RPY_OP_ARGS("O|p:resume", &outcome, &raised);
    if (raised && !PyExceptionInstance_Check(outcome))
        return rpy_type_error("outcome", -1, "an exception", outcome), NULL;
    if (rpy_outcome(outcome, !raised, &v, &hold, message) < 0) return NULL;
    rc = rp_op_resume(op, &v); /* copies the bytes */
    Py_XDECREF(hold);
    if (rc != RP_OK) return rpy_raise(rc, "no callback of the op is running");
    Py_RETURN_NONE;
}

/* cancel(op): the user cancelled; step on to drive its clean-up (it ends cancelled). */
static PyObject *rpy_cancel(PyObject *self RPY_UNUSED, PyObject *args) {
    RPY_OP_ARGS(":cancel");
    rp_op_cancel(op);
    Py_RETURN_NONE;
}

/* pump(conn, op, timeout=None) -> message or None: steps a long-lived op over conn's
 * connections (its own: one client per long-lived op) until it EMITs (its message record)
 * or timeout seconds pass (None: no limit) with no message (None; the op lives on). The
 * GIL is released; the wait goes in slices with Python's signal handlers run between
 * them, so Ctrl-C ends it. An op that failed raises. */
static PyObject *rpy_pump(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *c, *o, *t = Py_None;
    rpy_handle *conn;
    rpy_op *w = NULL;
    rp_op *op;
    rp_drive_hooks hooks;
    rpy_drive d;
    rp_error err;
    int64_t ms = 0;
    uint64_t end, now, slice;
    int rc;
    if (!PyArg_ParseTuple(args, "OO|O:pump", &c, &o, &t)) return NULL;
    if (SWIG_ConvertPtr(o, (void **)&w, SWIGTYPE_p_rpy_op, 0) < 0 || w == NULL)
        return rpy_type_error("op", -1, "a redpat._core.Op", o), NULL;
    op = (rp_op *)w->h.ptr;
    if ((conn = rpy_client_of(c, "conn")) == NULL ||
        (t != Py_None && rpy_ms(t, "timeout", -1, &ms) < 0))
        return NULL;
    if (ms < 0) return rpy_raise(RP_EINVAL, "timeout must be >= 0 seconds");
    end = t == Py_None || ms == INT64_MAX ? UINT64_MAX : rp_monotonic_ms() + (uint64_t)ms;
    for (;;) {
        now = rp_monotonic_ms();
        slice = end <= now ? 0 : end - now < RPY_PUMP_SLICE_MS ? end - now : RPY_PUMP_SLICE_MS;
        rp_error_clear(&err);
        rpy_drive_begin(&d, w->fn, &hooks);
        rc = rp_client_pump((rp_client *)conn->ptr, op, slice, &hooks, &err);
        if ((rc = rpy_drive_end(&d, rc, &err, RP_ETIMEOUT)) == RP_OK)
            return rpy_message(w->h.e, op);
        if (rc != RP_ETIMEOUT) return NULL;
        if (PyErr_CheckSignals() < 0) return NULL;
        if (rp_monotonic_ms() >= end) Py_RETURN_NONE;
    }
}

/* run(op, conn) -> (STEP_DONE, result) or (STEP_SLEEP, seconds): drives a begun op over
 * conn (a connected client handle) as call() does, the GIL released, but returns at its
 * SLEEPs (retry backoff; no request in flight) for the caller to wait there itself, the
 * connection lent to others meanwhile; run it again (over any connection) to go on. Once
 * its callable has run (a lock.using), the op is driven to its end here. A failure raises
 * as call() does. */
static PyObject *rpy_run_op(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *c;
    rpy_handle *conn;
    rp_drive_hooks hooks;
    rpy_drive d;
    rp_error err;
    uint64_t ms;
    int rc;
    RPY_OP_ARGS("O:run", &c);
    if ((conn = rpy_client_of(c, "conn")) == NULL) return NULL;
    rp_error_clear(&err);
    rpy_drive_begin(&d, w->fn, &hooks);
    hooks.sleep = rpy_pause;
    rc = rp_client_drive((rp_client *)conn->ptr, op, &hooks, &err);
    ms = d.pause_ms;
    rc = rpy_drive_end(&d, rc, &err, RP_DRIVE_PAUSED);
    if (rc == RP_DRIVE_PAUSED) return Py_BuildValue("(id)", (int)RP_STEP_SLEEP, (double)ms / 1000.0);
    if (rc != RP_OK) return NULL;
    return Py_BuildValue("(iN)", (int)RP_STEP_DONE, rpy_result(w->h.e, op));
}

/* descriptors() -> the core's table as a list of dicts (for python/redpat and the stubs). */
static PyObject *rpy_str(const char *s) {
    if (s != NULL) return PyUnicode_FromString(s);
    Py_RETURN_NONE;
}

static PyObject *rpy_kind(rp_kind k) { return rpy_str(k != RP_KIND_NONE ? rp_kind_name(k) : NULL); }

/* Appends item (stolen; NULL: fails) to list; -1 on failure. */
static int rpy_append(PyObject *list, PyObject *item) {
    int rc = item != NULL ? PyList_Append(list, item) : -1;
    Py_XDECREF(item);
    return rc;
}

/* dict[key] = value (stolen; NULL: fails); -1 on failure. */
static int rpy_set(PyObject *dict, const char *key, PyObject *value) {
    int rc = value != NULL ? PyDict_SetItemString(dict, key, value) : -1;
    Py_XDECREF(value);
    return rc;
}

static PyObject *rpy_ref(PyObject *o) {
    Py_INCREF(o);
    return o;
}

/* fields[0..n) as a list of {name, type, doc}. */
static PyObject *rpy_field_list(const rp_field_desc *fields, size_t n) {
    PyObject *list = PyList_New(0);
    size_t i;
    for (i = 0; list != NULL && i < n; i++)
        if (rpy_append(list, Py_BuildValue("{s:s,s:s,s:s}", "name", fields[i].name, "type",
                                           rp_type_name(fields[i].type), "doc",
                                           fields[i].doc != NULL ? fields[i].doc : "")) < 0)
            Py_CLEAR(list);
    return list;
}

static PyObject *rpy_describe(const rp_op_desc *d) {
    static const char *const shapes[] = {"none", "record", "list"};
    PyObject *args = PyList_New(0), *fields = rpy_field_list(d->fields, d->nfields), *choices;
    PyObject *messages = rpy_field_list(d->message_fields, d->nmessage_fields);
    int rc = args != NULL && fields != NULL && messages != NULL ? 0 : -1;
    size_t i, j;
    for (i = 0; rc == 0 && i < d->nargs; i++) {
        const rp_arg_desc *a = &d->args[i];
        choices = a->choices != NULL ? PyList_New(0) : rpy_str(NULL);
        for (j = 0; choices != NULL && a->choices != NULL && a->choices[j] != NULL; j++)
            if (rpy_append(choices, PyUnicode_FromString(a->choices[j])) < 0) Py_CLEAR(choices);
        rc = rpy_append(args, Py_BuildValue(
            "{s:s,s:s,s:s,s:N,s:N,s:N,s:L,s:L,s:L,s:L,s:L,s:N,s:s}", "name", a->name, "type",
            rp_type_name(a->type), "item_type", rp_type_name(a->item_type), "kind",
            rpy_kind(a->kind), "required", PyBool_FromLong((a->flags & RP_ARG_REQUIRED) != 0),
            "self", PyBool_FromLong((a->flags & RP_ARG_SELF) != 0), "default", (long long)a->def,
            "min", (long long)a->min, "max", (long long)a->max, "min_item",
            (long long)a->min_item, "max_item", (long long)a->max_item, "choices", choices,
            "doc", a->doc != NULL ? a->doc : ""));
    }
    if (rc < 0) {
        Py_XDECREF(args);
        Py_XDECREF(fields);
        Py_XDECREF(messages);
        return NULL;
    }
    return Py_BuildValue("{s:s,s:s,s:N,s:N,s:N,s:s,s:s,s:N,s:N,s:N,s:N}", "name", d->name,
                         "verb", d->verb, "kind", rpy_kind(d->kind), "makes", rpy_kind(d->makes),
                         "io", PyBool_FromLong(d->io != 0), "shape", shapes[d->shape % 3], "doc",
                         d->doc != NULL ? d->doc : "", "args", args, "fields", fields,
                         "message_fields", messages, "long_lived",
                         PyBool_FromLong(d->long_lived != 0));
}

static PyObject *rpy_descriptors(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *list;
    size_t i;
    if (!PyArg_ParseTuple(args, ":descriptors") || (list = PyList_New(0)) == NULL) return NULL;
    for (i = 0; i < rpy_ndescs; i++)
        if (rpy_append(list, rpy_describe(rpy_descs[i].d)) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    return list;
}

static int rpy_tuple_class(PyObject *c) {
    return c == Py_None ||
           (PyType_Check(c) && PyType_IsSubtype((PyTypeObject *)c, &PyTuple_Type));
}

/* configure(op name, record class (a tuple subclass) or None, tuple of its arguments'
 * Python names[, message class or None]): called once per op by python/redpat/_records.py
 * at import. */
static PyObject *rpy_configure(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *name, *record, *names, *message = Py_None;
    rpy_desc *e;
    size_t i;
    if (!PyArg_ParseTuple(args, "OOO!|O:configure", &name, &record, &PyTuple_Type, &names,
                          &message) ||
        (e = rpy_find(name)) == NULL)
        return NULL;
    if (!rpy_tuple_class(record) || !rpy_tuple_class(message) ||
        PyTuple_GET_SIZE(names) != (Py_ssize_t)e->d->nargs)
        return PyErr_Format(PyExc_TypeError, "configure(%s, tuple subclass or None, %zu names"
                            "[, tuple subclass or None])", e->d->name, e->d->nargs);
    for (i = 0; i < e->d->nargs; i++) /* each str caches its UTF-8: names keeps them */
        if (PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, (Py_ssize_t)i)) == NULL) return NULL;
    for (i = 0; i < e->d->nargs; i++)
        e->name[i] = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, (Py_ssize_t)i));
    Py_XSETREF(e->names, rpy_ref(names));
    Py_XSETREF(e->record, record == Py_None ? NULL : rpy_ref(record));
    Py_XSETREF(e->message, message == Py_None ? NULL : rpy_ref(message));
    Py_RETURN_NONE;
}

/* set_error_classes(base, {status code: class}). */
static PyObject *rpy_set_error_classes(PyObject *self RPY_UNUSED, PyObject *args) {
    PyObject *base, *mapping;
    if (!PyArg_ParseTuple(args, "OO!:set_error_classes", &base, &PyDict_Type, &mapping))
        return NULL;
    Py_XSETREF(rpy_error_base, rpy_ref(base));
    Py_XSETREF(rpy_error_map, rpy_ref(mapping));
    Py_RETURN_NONE;
}

static PyObject *rpy_status_name(PyObject *self RPY_UNUSED, PyObject *args) {
    int code;
    if (!PyArg_ParseTuple(args, "i:status_name", &code)) return NULL;
    return PyUnicode_FromString(rp_status_name(code));
}

/* The descriptor table, indexed by name; every argument named as the core names it until
 * configure registers the Python names. */
static int rpy_init(void) {
    size_t i, j;
    PyDateTime_IMPORT;
    rpy_ndescs = rp_desc_count();
    if (PyDateTimeAPI == NULL || (rpy_index = PyDict_New()) == NULL ||
        (rpy_descs = PyMem_Calloc(rpy_ndescs + 1, sizeof *rpy_descs)) == NULL)
        return -1;
    for (i = 0; i < rpy_ndescs; i++) {
        rpy_desc *e = &rpy_descs[i];
        e->d = rp_desc_at(i);
        for (j = 0; j < e->d->nargs && j < RP_DESC_ARGS_MAX; j++) e->name[j] = e->d->args[j].name;
        e->nm.arg_name = rpy_arg_name;
        e->nm.ud = e;
        e->nm.ms_in_seconds = 1;
        if (rpy_set(rpy_index, e->d->name, PyLong_FromSize_t(i)) < 0) return -1;
    }
    return 0;
}
%}

%init %{
    if (rpy_init() < 0) return NULL;
%}

%native(make) PyObject *rpy_make(PyObject *self, PyObject *args);
%native(begin) PyObject *rpy_begin(PyObject *self, PyObject *args);
%native(call) PyObject *rpy_call(PyObject *self, PyObject *args);
%native(step) PyObject *rpy_step(PyObject *self, PyObject *args);
%native(feed) PyObject *rpy_feed(PyObject *self, PyObject *args);
%native(fail_node) PyObject *rpy_fail_node(PyObject *self, PyObject *args);
%native(fail_node_unsent) PyObject *rpy_fail_node_unsent(PyObject *self, PyObject *args);
%native(descriptors) PyObject *rpy_descriptors(PyObject *self, PyObject *args);
%native(configure) PyObject *rpy_configure(PyObject *self, PyObject *args);
%native(set_error_classes) PyObject *rpy_set_error_classes(PyObject *self, PyObject *args);
%native(status_name) PyObject *rpy_status_name(PyObject *self, PyObject *args);
%native(target) PyObject *rpy_target(PyObject *self, PyObject *args);
%native(handshake) PyObject *rpy_handshake(PyObject *self, PyObject *args);
%native(pending) PyObject *rpy_pending(PyObject *self, PyObject *args);
%native(round_over) PyObject *rpy_round_over(PyObject *self, PyObject *args);
%native(replies_owed) PyObject *rpy_replies_owed(PyObject *self, PyObject *args);
%native(timeout_ms) PyObject *rpy_timeout_ms(PyObject *self, PyObject *args);
%native(listening) PyObject *rpy_listening(PyObject *self, PyObject *args);
%native(long_lived) PyObject *rpy_long_lived(PyObject *self, PyObject *args);
%native(resume) PyObject *rpy_resume(PyObject *self, PyObject *args);
%native(cancel) PyObject *rpy_cancel(PyObject *self, PyObject *args);
%native(pump) PyObject *rpy_pump(PyObject *self, PyObject *args);
%native(run) PyObject *rpy_run_op(PyObject *self, PyObject *args);

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
%constant int ECANCELED = RP_ECANCELED;
%constant int ECALLBACK = RP_ECALLBACK;
%constant int ELOST = RP_ELOST;
%constant int EAUTH = RP_EAUTH;
%constant int STEP_IO = RP_STEP_IO;
%constant int STEP_SLEEP = RP_STEP_SLEEP;
%constant int STEP_DONE = RP_STEP_DONE;
%constant int STEP_ERROR = RP_STEP_ERROR;
%constant int STEP_CALL = RP_STEP_CALL;
%constant int STEP_EMIT = RP_STEP_EMIT;
/* An MS argument of this many seconds is the core's "forever" (INT64_MAX ms). */
%constant long long FOREVER = INT64_MAX;
%constant const char *VERSION = RP_VERSION;

%rename(Handle) rpy_handle;
%rename(Op) rpy_op;
%nodefaultctor rpy_handle;
%nodefaultctor rpy_op;
typedef struct rpy_handle {} rpy_handle;
typedef struct rpy_op {} rpy_op;
%extend rpy_handle { ~rpy_handle() { rpy_delete($self); } }
%extend rpy_op { ~rpy_op() { rpy_delete(&$self->h); } }
