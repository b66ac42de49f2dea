/* Preemption (Go's preempt.go, proc.go gopreempt_m): cooperative and
 * asynchronous.
 *
 * Cooperative: sysmon sets g->preempt on a G that has run one time slice;
 * every runtime entry calls checkpreempt() (runtime.h), which yields the G to
 * the tail of its P's runqueue (gopreempt_c).
 *
 * Asynchronous: a G in a pure-Python loop never enters the runtime, so sysmon
 * also arms a one-shot hook on that worker's thread state (preempt_arm):
 *   - 3.11: a C trace function installed on the worker's tstate with
 *     _PyEval_SetTrace (the user's tracer, if any, is saved and put back);
 *   - 3.12+: a sys.monitoring tool whose JUMP/PY_START/PY_RESUME callbacks
 *     are C functions; the events are switched on only while some P is armed.
 * Nothing is installed while no P is armed, so it costs nothing then.  At the
 * worker's next event the hook disarms itself and, if this is a safe point
 * (decide()), switches to the scheduler greenlet from inside the callback;
 * when the G is resumed the callback returns and the interrupted instruction
 * goes on as if nothing happened.  pygmp/HACKING.md "Preemption" has the
 * safe-point rules; research/preemption.md the measurements behind the design.
 *
 * All state here is touched with the GIL held: sysmon arms with the GIL, the
 * worker's callbacks run with it.  (A free-threaded build needs a per-P lock
 * around arm/disarm instead: see HACKING.md.)
 */
#include "runtime.h"
#include <frameobject.h>

#if PY_VERSION_HEX < 0x030C0000
#define PREEMPT_SETTRACE 1      /* 3.11: per-thread C tracer */
#define WHAT_FIELD tracing_what
#else
#define PREEMPT_SETTRACE 0      /* 3.12+: sys.monitoring tool */
#define WHAT_FIELD what_event
#endif

/* greenlet.h keeps its C-API table per file */
static int preempt_import_greenlet(void) {
    PyGreenlet_Import();
    return _PyGreenlet_API ? 0 : -1;
}

_Thread_local int tls_nopreempt;
_Thread_local unsigned tls_readytick;
atomic_llong n_preempt_coop, n_preempt_async, n_preempt_refused, n_preempt_stale, n_preempt_armed;

#define RETRIES_MAX 64           /* refused events before the arm is given up (sysmon re-arms) */

typedef struct pstate {
    PyThreadState *tstate;       /* the worker's; NULL once detached */
    int armed;
    uint64_t armseq;             /* the run slice the arm is for */
    int64_t armedat;             /* mono ns */
    int retries;
    PyObject *resume;            /* refused in unsafe code: the safe caller to wait for */
#if PREEMPT_SETTRACE
    Py_tracefunc saved_func;     /* the user's tracer, displaced while armed */
    PyObject *saved_obj;
#endif
} pstate;

/* -------------------------------------------------------------- config */

static PyObject *cfg_prefixes;     /* tuple of str: files whose frames are never preempted */
static PyObject *cfg_transparent;  /* set of code objects: runtime frames that call user code
                                      holding nothing (the goroutine body, Once.do, ...) */
static PyObject *verdicts;         /* dict co_filename -> True (unsafe) / False */
static PyObject *s_del;
/* Python's own trampolines behind sys.settrace/sys.setprofile with a Python
 * function: any other C tracer or profiler (coverage's CTracer, cProfile)
 * keeps per-thread stacks of frames */
static Py_tracefunc tramp_trace, tramp_prof;
static int async_on = 1;
#if !PREEMPT_SETTRACE
static PyObject *mon_set_events;   /* sys.monitoring.set_events */
static int mon_tool = -1;
static long mon_events;
static int mon_narmed;             /* Ps armed now: events are on while > 0 */
#endif

int preempt_async_available(void) {
#if PREEMPT_SETTRACE
    return async_on;
#else
    return async_on && mon_tool >= 0;
#endif
}

/* -------------------------------------------------------------- latency histogram
 * /sched/latencies:seconds: bucket i counts samples <= 2**i us (i < 25), the
 * last one the rest. */
#define LAT_NB 26
static atomic_llong lat_counts[LAT_NB];
static atomic_llong lat_sum_ns;

void latency_record(GObject *g) {
    int64_t d = mono_ns() - g->readyat;
    g->readyat = 0;
    if (d < 0) d = 0;
    int i = 0;
    int64_t bound = 1000;
    while (i < LAT_NB - 1 && d > bound) { i++; bound <<= 1; }
    atomic_fetch_add_explicit(&lat_counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lat_sum_ns, d, memory_order_relaxed);
}

PyObject *m_latencies(PyObject *m, PyObject *u) {
    PyObject *l = PyList_New(LAT_NB);
    if (!l) return NULL;
    for (int i = 0; i < LAT_NB; i++)
        PyList_SET_ITEM(l, i, PyLong_FromLongLong(atomic_load(&lat_counts[i])));
    return Py_BuildValue("(NL)", l, (long long)atomic_load(&lat_sum_ns));
}

/* -------------------------------------------------------------- yield */

/* The current G of p goes to the tail of p's runqueue and the worker switches
 * to its scheduler greenlet (Go's gopreempt_m -> goschedImpl -> schedule).
 * Returns 0 when the G runs again. */
int gopreempt_c(PObject *p, int async) {
    PyObject *g = p->curg;
    if (g == Py_None) return 0;
    GObject *gg = G_CAST(g);
    gg->preempt = 0;
    /* Gs whose I/O became ready during the slice go ahead of the hog (in Go
       it joins the global queue, behind every local G): poll first */
    if (netpoll_p(p) < 0) PyErr_WriteUnraisable(NULL);
    gg->status = Grunnable;
    mark_ready(gg);
    Py_INCREF(g);
    PLOCK(p);
    int r = rq_push(p, g);
    PUNLOCK(p);
    if (r < 0) { gg->status = Grunning; Py_DECREF(g); PyErr_NoMemory(); return -1; }
    atomic_fetch_add_explicit(async ? &n_preempt_async : &n_preempt_coop, 1, memory_order_relaxed);
    if (atomic_load_explicit(&trace_on, memory_order_relaxed))
        trace_emit(async ? TR_PREEMPT_ASYNC : TR_PREEMPT_COOP, p, gg->goid, 0, NULL);
    /* Go puts a preempted G on the global queue, behind the Gs waiting there;
       a homed G must stay on its P, so instead the next pick is this P's
       fairness tick: the global queue first (and a stale poller polled). */
    p->schedtick += (FAIRNESS_TICKS - (p->schedtick + 1) % FAIRNESS_TICKS) % FAIRNESS_TICKS;
    Py_INCREF(p);
    r = switchto_c(p, NULL);
    Py_DECREF(p);
    return r;
}

PyObject *m_checkpreempt(PyObject *m, PyObject *u) {
    if (checkpreempt() < 0) return NULL;
    Py_RETURN_NONE;
}

PyObject *m_nopreempt(PyObject *m, PyObject *arg) {
    long d = PyLong_AsLong(arg);
    if (d == -1 && PyErr_Occurred()) return NULL;
    tls_nopreempt += (int)d;
    return PyLong_FromLong(tls_nopreempt);
}

/* -------------------------------------------------------------- safe points */

/* 1: frames of this file may never be interrupted; 0: they may. */
static int file_unsafe(PyObject *filename) {
    PyObject *v = PyDict_GetItemWithError(verdicts, filename);
    if (v) return v == Py_True;
    if (PyErr_Occurred()) { PyErr_Clear(); return 1; }
    int unsafe = 0;
    if (cfg_prefixes && PyUnicode_Check(filename)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(cfg_prefixes); i++) {
            Py_ssize_t r = PyUnicode_Tailmatch(filename, PyTuple_GET_ITEM(cfg_prefixes, i),
                                               0, PY_SSIZE_T_MAX, -1);
            if (r == 1) { unsafe = 1; break; }
            if (r < 0) { PyErr_Clear(); unsafe = 1; break; }
        }
    }
    if (PyDict_GET_SIZE(verdicts) > 4096) PyDict_Clear(verdicts);
    if (PyDict_SetItem(verdicts, filename, unsafe ? Py_True : Py_False) < 0) PyErr_Clear();
    return unsafe;
}

/* Walk the stack from the innermost frame.  Unsafe: a frame of the runtime or
 * of a module that holds locks that are not goroutine-aware (threading, queue,
 * logging, the import machinery, ...; the prefixes given by preempt_config),
 * or a __del__.  Runtime frames listed as transparent (the goroutine body,
 * frames that call user code while holding nothing) are allowed below the
 * innermost frame, never as the innermost one.  When unsafe, *resume is set
 * to a new reference to the caller of the outermost unsafe frame if every
 * frame above it is safe: once the unsafe code returns there, the stack is
 * safe again (NULL when there is no such frame). */
static int stack_safe(PyFrameObject *f, PyObject **resume) {
    Py_XINCREF(f);
    int safe = 1, innermost = 1, lastbad = 0;
    *resume = NULL;
    while (f) {
        PyCodeObject *co = PyFrame_GetCode(f);
        int bad = 0;
        if (co->co_name == s_del || PyUnicode_Compare(co->co_name, s_del) == 0) bad = 1;
        else if (!innermost && cfg_transparent && PySet_Contains(cfg_transparent, (PyObject *)co) == 1) bad = 0;
        else bad = file_unsafe(co->co_filename);
        Py_DECREF(co);
        if (bad) {
            safe = 0;
            Py_CLEAR(*resume);              /* an unsafe frame further out: not yet */
            lastbad = 1;
        } else if (lastbad) {
            *resume = Py_NewRef((PyObject *)f);   /* the caller of that unsafe frame */
            lastbad = 0;
        }
        PyFrameObject *b = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = b;
        innermost = 0;
    }
    if (PyErr_Occurred()) PyErr_Clear();
    if (safe) Py_CLEAR(*resume);
    return safe;
}

enum { D_PREEMPT, D_RETRY, D_STALE, D_UNSAFE };

/* coverage.py's CTracer run with --concurrency=greenlet keeps one stack of
 * frames per greenlet (its concur_id_func is greenlet.getcurrent): a switch
 * at any event leaves its records right. */
static int greenlet_aware(PyObject *tracer) {
    if (!tracer) return 0;
    PyObject *f = PyObject_GetAttrString(tracer, "concur_id_func");
    if (!f) { PyErr_Clear(); return 0; }
    int ok = f != Py_None;
    Py_DECREF(f);
    return ok;
}

/* On the worker, in its running greenlet, with the GIL. */
/* D_UNSAFE: refused for an unsafe stack; *resume as stack_safe's (a new
 * reference or NULL).  Other decisions leave *resume NULL. */
static int decide(PObject *p, pstate *ps, PyThreadState *ts, PyFrameObject *frame, int is_call, int ok_event,
                  PyObject **resume) {
    *resume = NULL;
    if (atomic_load_explicit(&p->runseq, memory_order_relaxed) != ps->armseq) return D_STALE;
    PyObject *g = p->curg;
    if (g == Py_None || G_CAST(g)->status != Grunning) return D_STALE;
    PyGreenlet *cur = PyGreenlet_GetCurrent();
    int same = (PyObject *)cur == G_CAST(g)->glet;
    Py_XDECREF(cur);
    if (!same) return D_STALE;                  /* the scheduler greenlet, or another G */
    if (!ok_event) return D_RETRY;
    /* a C tracer or profiler (coverage's CTracer, cProfile) keeps a per-thread
       stack of frames that assumes switches happen at calls: only switch at a
       function entry there */
#if PREEMPT_SETTRACE
    Py_tracefunc tf = ps->saved_func;
    PyObject *tobj = ps->saved_obj;
#else
    Py_tracefunc tf = ts->c_tracefunc;
    PyObject *tobj = ts->c_traceobj;
#endif
    if (!is_call && ((tf && tf != tramp_trace && !greenlet_aware(tobj)) ||
                     (ts->c_profilefunc && ts->c_profilefunc != tramp_prof)))
        return D_RETRY;
    if (tls_nopreempt > 0) return D_RETRY;
    if (!stack_safe(frame, resume)) return D_UNSAFE;
    return D_PREEMPT;
}

/* Refused in unsafe code (logging's handler lock, ...): rather than spend the
 * retries on every event inside it, wait, with one pointer comparison an
 * event, for an event in the safe caller it returns to (ps->resume), and
 * decide again there.  A switch away (another slice) ends the wait. */
static int waiting_resume(PObject *p, pstate *ps, PyFrameObject *frame, int is_call) {
    if (!ps->resume) return 0;
    if (atomic_load_explicit(&p->runseq, memory_order_relaxed) == ps->armseq &&
        ((PyObject *)frame != ps->resume || is_call))
        return 1;
    Py_CLEAR(ps->resume);
    return 0;
}

/* The verdict after a refusal: D_UNSAFE with a safe caller to wait for keeps
 * the arm (not a retry); without one it is a retry. */
static int after_unsafe(pstate *ps, int dec, PyObject *resume) {
    if (dec != D_UNSAFE) return dec;
    if (resume) {
        Py_XSETREF(ps->resume, resume);
        return D_UNSAFE;
    }
    return D_RETRY;
}

/* Switch away from inside a trace/monitoring callback.  The interpreter keeps
 * tstate->tracing raised while a callback runs, and greenlet does not save it
 * per greenlet: without resetting it every other greenlet on this thread would
 * run with tracing suppressed (no sys.settrace events, no second preemption). */
static int async_yield(PObject *p, PyThreadState *ts) {
    int tracing = ts->tracing, what = ts->WHAT_FIELD;
    ts->tracing = 0;
#if PREEMPT_SETTRACE
    /* greenlet copies this into the next greenlet's frame ("continuity") */
    ts->cframe->use_tracing = (ts->c_tracefunc || ts->c_profilefunc) ? 255 : 0;
#endif
    Py_INCREF(p);
    int r = gopreempt_c(p, 1);
    Py_DECREF(p);
    ts = PyThreadState_Get();
    ts->tracing = tracing;
    ts->WHAT_FIELD = what;
    return r;
}

/* -------------------------------------------------------------- backend: 3.11 settrace */
#if PREEMPT_SETTRACE
static int preempt_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);

static void settrace_disarm(pstate *ps, PyThreadState *ts, Py_tracefunc *uf, PyObject **uo) {
    *uf = ps->saved_func;
    *uo = ps->saved_obj;          /* the caller owns this reference */
    ps->saved_func = NULL;
    ps->saved_obj = NULL;
    ps->armed = 0;
    Py_CLEAR(ps->resume);
    _PyEval_SetTrace(ts, *uf, *uo);
    if (PyErr_Occurred()) PyErr_Clear();
}

static int arm_backend(pstate *ps) {
    PyThreadState *ts = ps->tstate;
    if (ps->armed && ts->c_tracefunc == preempt_trace) return 0;   /* already: retargeted */
    if (ps->armed) {              /* sys.settrace replaced us meanwhile: forget that arm */
        ps->armed = 0;
        ps->saved_func = NULL;
        Py_CLEAR(ps->saved_obj);
    }
    ps->saved_func = ts->c_tracefunc;
    ps->saved_obj = Py_XNewRef(ts->c_traceobj);
    /* c_traceobj stays the user's: sys.gettrace() on the worker is unchanged */
    if (_PyEval_SetTrace(ts, preempt_trace, ps->saved_obj) < 0) {
        PyErr_Clear();
        ps->saved_func = NULL;
        Py_CLEAR(ps->saved_obj);
        return -1;
    }
    ps->armed = 1;
    return 1;
}

static int preempt_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
    PyThreadState *ts = PyThreadState_Get();
    PObject *p = (PObject *)tls_p;
    pstate *ps = p ? p->ps : NULL;
    if (!ps || !ps->armed || ps->tstate != ts) {
        /* not ours to handle (should not happen): leave the user's tracer alone */
        return 0;
    }
    if (waiting_resume(p, ps, frame, what == PyTrace_CALL))
        return ps->saved_func ? ps->saved_func(ps->saved_obj, frame, what, arg) : 0;
    PyObject *resume;
    int dec = decide(p, ps, ts, frame, what == PyTrace_CALL, what == PyTrace_CALL || what == PyTrace_LINE,
                     &resume);
    dec = after_unsafe(ps, dec, resume);
    if (dec == D_UNSAFE) {
        atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
        return ps->saved_func ? ps->saved_func(ps->saved_obj, frame, what, arg) : 0;
    }
    if (dec == D_RETRY && ++ps->retries < RETRIES_MAX) {
        atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
        return ps->saved_func ? ps->saved_func(ps->saved_obj, frame, what, arg) : 0;
    }
    Py_tracefunc uf;
    PyObject *uo;
    settrace_disarm(ps, ts, &uf, &uo);
    int rc = 0;
    if (dec == D_PREEMPT) rc = async_yield(p, ts);
    else if (dec == D_STALE) atomic_fetch_add_explicit(&n_preempt_stale, 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
    /* the user's tracer still sees the event we intercepted, after the resume */
    if (rc == 0 && uf) rc = uf(uo, frame, what, arg);
    Py_XDECREF(uo);
    return rc;
}

static void detach_backend(pstate *ps) {
    if (ps->armed && ps->tstate && ps->tstate->c_tracefunc == preempt_trace) {
        Py_tracefunc uf;
        PyObject *uo;
        settrace_disarm(ps, ps->tstate, &uf, &uo);
        Py_XDECREF(uo);
    }
    ps->armed = 0;
    ps->saved_func = NULL;
    Py_CLEAR(ps->saved_obj);
    Py_CLEAR(ps->resume);
}

void preempt_disarm_stale(PObject *p, int64_t now, int64_t after_ns) {
    /* 3.11: only the callback disarms (greenlet's use_tracing continuity would
       leave a greenlet tracing with no tracer otherwise); a stale arm costs only
       the worker's next event. */
    (void)p; (void)now; (void)after_ns;
}

static int backend_init(void) { return 0; }

/* -------------------------------------------------------------- backend: 3.12+ sys.monitoring */
#else

static int mon_set(long ev) {
    PyObject *r = PyObject_CallFunction(mon_set_events, "il", mon_tool, ev);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static int arm_backend(pstate *ps) {
    if (mon_tool < 0) return -1;
    if (ps->armed) return 0;
    ps->armed = 1;
    if (mon_narmed++ == 0 && mon_set(mon_events) < 0) {
        PyErr_Clear();
        ps->armed = 0;
        mon_narmed--;
        return -1;
    }
    return 1;
}

static void mon_disarm(pstate *ps) {
    Py_CLEAR(ps->resume);
    if (!ps->armed) return;
    ps->armed = 0;
    if (--mon_narmed == 0 && mon_set(0) < 0) PyErr_Clear();
}

static PyObject *mon_cb(int is_call) {
    PObject *p = (PObject *)tls_p;
    pstate *ps = p ? p->ps : NULL;
    if (!ps || !ps->armed) Py_RETURN_NONE;      /* other threads, or this one not armed */
    PyThreadState *ts = PyThreadState_Get();
    PyFrameObject *f = PyEval_GetFrame();       /* borrowed */
    if (waiting_resume(p, ps, f, is_call)) Py_RETURN_NONE;
    PyObject *resume;
    int dec = decide(p, ps, ts, f, is_call, 1, &resume);
    dec = after_unsafe(ps, dec, resume);
    if (dec == D_UNSAFE) {
        atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
        Py_RETURN_NONE;
    }
    if (dec == D_RETRY && ++ps->retries < RETRIES_MAX) {
        atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
        Py_RETURN_NONE;
    }
    mon_disarm(ps);
    if (dec == D_STALE) atomic_fetch_add_explicit(&n_preempt_stale, 1, memory_order_relaxed);
    if (dec != D_PREEMPT) {
        if (dec == D_RETRY) atomic_fetch_add_explicit(&n_preempt_refused, 1, memory_order_relaxed);
        Py_RETURN_NONE;
    }
    if (async_yield(p, ts) < 0) return NULL;    /* an exception thrown into the G */
    Py_RETURN_NONE;
}
static PyObject *mon_cb_start(PyObject *s, PyObject *const *a, Py_ssize_t n) { return mon_cb(1); }
static PyObject *mon_cb_other(PyObject *s, PyObject *const *a, Py_ssize_t n) { return mon_cb(0); }
static PyMethodDef mon_start_def = {"_preempt_start", (PyCFunction)(void (*)(void))mon_cb_start, METH_FASTCALL, NULL};
static PyMethodDef mon_other_def = {"_preempt_event", (PyCFunction)(void (*)(void))mon_cb_other, METH_FASTCALL, NULL};

static void detach_backend(pstate *ps) { mon_disarm(ps); }

/* An arm that has not fired within after_ns: the worker is blocked in a call
 * (the GIL released) or idle.  The events are interpreter-wide, so every other
 * thread pays for them meanwhile: give the arm up (the G's preempt flag stays
 * set; the stall report covers a G that holds its worker). */
void preempt_disarm_stale(PObject *p, int64_t now, int64_t after_ns) {
    pstate *ps = p->ps;
    if (!ps || !ps->armed) return;
    if (now - ps->armedat < after_ns && atomic_load_explicit(&p->runseq, memory_order_relaxed) == ps->armseq)
        return;
    mon_disarm(ps);
    atomic_fetch_add_explicit(&n_preempt_stale, 1, memory_order_relaxed);
}

static int backend_init(void) {
    PyObject *sys_mon = PySys_GetObject("monitoring");   /* borrowed */
    if (!sys_mon) return 0;
    PyObject *events = PyObject_GetAttrString(sys_mon, "events");
    if (!events) { PyErr_Clear(); return 0; }
    long ev = 0;
    const char *names[] = {"JUMP", "PY_START", "PY_RESUME"};
    long evs[3];
    for (int i = 0; i < 3; i++) {
        PyObject *v = PyObject_GetAttrString(events, names[i]);
        if (!v) { Py_DECREF(events); PyErr_Clear(); return 0; }
        evs[i] = PyLong_AsLong(v);
        Py_DECREF(v);
        ev |= evs[i];
    }
    Py_DECREF(events);
    /* a free tool id: 0-2 and 5-7 are taken by convention (debugger, coverage,
       profiler, optimizer, sys.setprofile, sys.settrace) */
    int tools[] = {4, 3};
    for (int i = 0; i < 2 && mon_tool < 0; i++) {
        PyObject *r = PyObject_CallMethod(sys_mon, "use_tool_id", "is", tools[i], "pygmp-preempt");
        if (r) { Py_DECREF(r); mon_tool = tools[i]; }
        else PyErr_Clear();
    }
    if (mon_tool < 0) return 0;
    PyObject *cb_start = PyCFunction_New(&mon_start_def, NULL);
    PyObject *cb_other = PyCFunction_New(&mon_other_def, NULL);
    if (!cb_start || !cb_other) return -1;
    for (int i = 0; i < 3; i++) {
        PyObject *r = PyObject_CallMethod(sys_mon, "register_callback", "ilO", mon_tool, evs[i],
                                          i == 1 ? cb_start : cb_other);
        if (!r) { Py_DECREF(cb_start); Py_DECREF(cb_other); return -1; }
        Py_DECREF(r);
    }
    Py_DECREF(cb_start);
    Py_DECREF(cb_other);
    mon_set_events = PyObject_GetAttrString(sys_mon, "set_events");
    if (!mon_set_events) return -1;
    mon_events = ev;
    return 0;
}
#endif

/* -------------------------------------------------------------- per-P state */

struct pstate *pstate_new(PObject *p) {
    pstate *ps = PyMem_RawCalloc(1, sizeof(pstate));
    if (!ps) { PyErr_NoMemory(); return NULL; }
    ps->tstate = PyThreadState_Get();
    return ps;
}

/* The worker detaches before it exits (sysmon_detach), or P_dealloc. */
void pstate_free(PObject *p) {
    pstate *ps = p->ps;
    if (!ps) return;
    p->ps = NULL;
    detach_backend(ps);
    PyMem_RawFree(ps);
}

/* Sysmon, GIL held: p's current run slice `seq` is over its time.  Returns 1
 * if the asynchronous hook was armed, 0 if not (off, unavailable, stale). */
int preempt_arm(PObject *p, uint64_t seq) {
    pstate *ps = p->ps;
    if (!ps || !ps->tstate || !async_on) return 0;
    if (atomic_load_explicit(&p->runseq, memory_order_relaxed) != seq) return 0;
    ps->armseq = seq;
    ps->armedat = mono_ns();
    ps->retries = 0;
    int r = arm_backend(ps);
    if (r > 0) atomic_fetch_add_explicit(&n_preempt_armed, 1, memory_order_relaxed);
    return r >= 0;
}

/* -------------------------------------------------------------- module functions */

/* preempt_config(prefixes, transparent_codes, async_on) */
PyObject *m_preempt_config(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 3 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "preempt_config(prefixes: tuple, transparent: set, async_on)");
        return NULL;
    }
    Py_XSETREF(cfg_prefixes, Py_NewRef(args[0]));
    Py_XSETREF(cfg_transparent, PySet_New(args[1]));
    if (!cfg_transparent) return NULL;
    async_on = PyObject_IsTrue(args[2]);
    PyDict_Clear(verdicts);
    return PyBool_FromLong(preempt_async_available());
}

PyObject *m_preempt_stats(PyObject *m, PyObject *u) {
    return Py_BuildValue("{sLsLsLsLsLsi}",
        "cooperative", (long long)atomic_load(&n_preempt_coop),
        "async", (long long)atomic_load(&n_preempt_async),
        "armed", (long long)atomic_load(&n_preempt_armed),
        "refused", (long long)atomic_load(&n_preempt_refused),
        "stale", (long long)atomic_load(&n_preempt_stale),
        "async_available", preempt_async_available());
}

/* For tests: (tracing, use_tracing or -1, our tracer installed, c_tracefunc set,
 * c_profilefunc set, nopreempt) of the calling thread. */
PyObject *m_tstate_info(PyObject *m, PyObject *u) {
    PyThreadState *ts = PyThreadState_Get();
#if PREEMPT_SETTRACE
    int ut = ts->cframe->use_tracing;
    int ours = ts->c_tracefunc == preempt_trace;
#else
    int ut = -1, ours = 0;
#endif
    return Py_BuildValue("(iiiiii)", ts->tracing, ut, ours, ts->c_tracefunc != NULL,
                         ts->c_profilefunc != NULL, tls_nopreempt);
}

/* Learn the address of Python's trace and profile trampolines: set a Python
 * tracer (and profiler) on this thread for a moment, if it has none. */
static PyObject *noop_tracer(PyObject *self, PyObject *args) { Py_RETURN_NONE; }
static PyMethodDef noop_def = {"_noop_tracer", noop_tracer, METH_VARARGS, NULL};
static void learn_trampolines(void) {
    PyThreadState *ts = PyThreadState_Get();
    PyObject *noop = PyCFunction_New(&noop_def, NULL);
    if (!noop) { PyErr_Clear(); return; }
    const char *set[] = {"settrace", "setprofile"};
    for (int i = 0; i < 2; i++) {
        if (i == 0 ? ts->c_tracefunc != NULL : ts->c_profilefunc != NULL) continue;
        PyObject *f = PySys_GetObject(set[i]);    /* borrowed */
        if (!f) continue;
        PyObject *r = PyObject_CallOneArg(f, noop);
        if (!r) { PyErr_Clear(); continue; }
        Py_DECREF(r);
        if (i == 0) tramp_trace = ts->c_tracefunc; else tramp_prof = ts->c_profilefunc;
        r = PyObject_CallOneArg(f, Py_None);
        if (!r) PyErr_Clear(); else Py_DECREF(r);
    }
    Py_DECREF(noop);
}

int preempt_init(void) {
    if (preempt_import_greenlet() < 0) return -1;
    learn_trampolines();
    verdicts = PyDict_New();
    s_del = PyUnicode_InternFromString("__del__");
    if (!verdicts || !s_del) return -1;
    return backend_init();
}
