/* The scheduler trace (pygmp.trace): a buffer of fixed-size events recorded at
 * the scheduler's points (a run slice starting and ending on a P, park,
 * ready, preemption; steals and handoffs from Python through trace_event) and
 * turned into Chrome trace-event JSON by pygmp/trace.py.
 *
 * While no trace runs each point costs one relaxed atomic load (trace_on).
 * Events are appended with the GIL held, under tr_mu (so a free-threaded
 * build stays correct). */
#include "runtime.h"
#include <pthread.h>

atomic_int trace_on;

typedef struct {
    int64_t ts;           /* mono ns */
    int kind;
    uintptr_t p;          /* the P (address) or 0 */
    unsigned long tid;    /* the OS thread */
    long long goid, arg;
    PyObject *obj;        /* strong or NULL: a function, a wait reason */
} tevent;

static pthread_mutex_t tr_mu = PTHREAD_MUTEX_INITIALIZER;
static tevent *tr_buf;
static size_t tr_len, tr_cap;
static int tr_dropped;
#define TR_MAX (16u << 20)         /* events kept (16 Mi, ~0.8 GiB): past that, dropped */

void trace_emit(int kind, PObject *p, long long goid, long long arg, PyObject *obj) {
    if (!atomic_load_explicit(&trace_on, memory_order_relaxed)) return;
    int64_t ts = mono_ns();
    pthread_mutex_lock(&tr_mu);
    if (tr_len == tr_cap) {
        size_t ncap = tr_cap ? tr_cap * 2 : 65536;
        tevent *n = ncap <= TR_MAX ? PyMem_RawRealloc(tr_buf, ncap * sizeof(tevent)) : NULL;
        if (!n) { tr_dropped = 1; pthread_mutex_unlock(&tr_mu); return; }
        tr_buf = n;
        tr_cap = ncap;
    }
    tevent *e = &tr_buf[tr_len++];
    e->ts = ts;
    e->kind = kind;
    e->p = (uintptr_t)p;
    e->tid = PyThread_get_thread_ident();
    e->goid = goid;
    e->arg = arg;
    e->obj = Py_XNewRef(obj);
    pthread_mutex_unlock(&tr_mu);
}

/* setcurg's hook: the slice of `old` ends, the slice of `g` begins on p. */
void trace_run(PObject *p, PyObject *old, PyObject *g) {
    if (old != Py_None) trace_emit(TR_RUN_END, p, G_CAST(old)->goid, 0, NULL);
    if (g != Py_None) {
        GObject *gg = G_CAST(g);
        trace_emit(TR_RUN_BEGIN, p, gg->goid, 0, gg->fn != Py_None ? gg->fn : NULL);
    }
}

static void clear_locked(void) {
    for (size_t i = 0; i < tr_len; i++) Py_XDECREF(tr_buf[i].obj);   /* GIL held */
    tr_len = 0;
}

PyObject *m_trace_start(PyObject *m, PyObject *u) {
    pthread_mutex_lock(&tr_mu);
    if (atomic_load(&trace_on)) {
        pthread_mutex_unlock(&tr_mu);
        PyErr_SetString(PyExc_RuntimeError, "pygmp.trace: a trace is already running");
        return NULL;
    }
    clear_locked();
    tr_dropped = 0;
    atomic_store(&trace_on, 1);
    pthread_mutex_unlock(&tr_mu);
    return PyLong_FromLongLong(mono_ns());
}

/* Stop and return (events, dropped): events as tuples
 * (ts_ns, kind, p_address, thread_ident, goid, arg, obj). */
PyObject *m_trace_stop(PyObject *m, PyObject *u) {
    pthread_mutex_lock(&tr_mu);
    if (!atomic_load(&trace_on)) {
        pthread_mutex_unlock(&tr_mu);
        PyErr_SetString(PyExc_RuntimeError, "pygmp.trace: no trace is running");
        return NULL;
    }
    atomic_store(&trace_on, 0);
    tevent *buf = tr_buf;
    size_t n = tr_len;
    int dropped = tr_dropped;
    tr_buf = NULL;
    tr_len = tr_cap = 0;
    pthread_mutex_unlock(&tr_mu);
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        tevent *e = &buf[i];
        PyObject *t = l ? Py_BuildValue("(LiKkLLO)", (long long)e->ts, e->kind,
                                         (unsigned long long)e->p, e->tid, e->goid, e->arg,
                                         e->obj ? e->obj : Py_None) : NULL;
        Py_XDECREF(e->obj);
        if (l && t) PyList_SET_ITEM(l, (Py_ssize_t)i, t);
        else Py_CLEAR(l);
    }
    PyMem_RawFree(buf);
    if (!l) return NULL;
    return Py_BuildValue("(Ni)", l, dropped);
}

/* trace_event(kind, p_or_None, goid, arg, obj): an event from Python (steal, handoff) */
PyObject *m_trace_event(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (!atomic_load_explicit(&trace_on, memory_order_relaxed)) Py_RETURN_NONE;
    if (n != 5) { PyErr_SetString(PyExc_TypeError, "trace_event(kind, p, goid, arg, obj)"); return NULL; }
    int kind = (int)PyLong_AsLong(args[0]);
    long long goid = PyLong_AsLongLong(args[2]), arg = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    PObject *p = (args[1] != Py_None && PyObject_TypeCheck(args[1], &PType)) ? P_CAST(args[1]) : NULL;
    trace_emit(kind, p, goid, arg, args[4] == Py_None ? NULL : args[4]);
    Py_RETURN_NONE;
}
