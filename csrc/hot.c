/*
 * pygmp._hot: the scheduler hot path in C, over greenlet's C API.
 *
 * What lives here (DESIGN §3, "the hot path belongs in C"):
 *   GBase   the C half of a G (status, home P, greenlet, wait state)
 *   PBase   the C half of a P: its lock, local runqueue ring, runnext
 *   Lock    the PyThread lock wrapper exposed as p.lock to Python
 *   ChanBase channels (chan.go): buffer ring, sudog wait queues, close
 *   select  (select.go): lock order, uniform random poll order, park on all
 *   runqput / runqget / next_local / gopark / goready / getg
 * Everything else (findrunnable, stealing policy, timers, idle, checkdead) stays
 * in Python (pygmp/runtime/proc.py), which is also the reference
 * implementation of every function here (PYGMP_PUREPY=1 runs it instead).
 *
 * Invariants (see pygmp/HACKING.md):
 *  - p->lk guards rq*, runnext, nmovable, sleeping, sleepuntil; the ring holds a
 *    strong reference to each G in it; runnext holds one too.
 *  - c->lk guards a channel's buffer, closed flag and both wait queues.
 *  - A sudog is heap memory owned by its parked G: wakers touch it only under
 *    the channel lock while it is queued; the owner frees it after waking.
 *  - A sudog with a parkstate (select, or a thread G's interruptible park) may
 *    only be completed by the waker that wins atomic_exchange(&ps->done, 1).
 *  - No Python code runs while a runtime lock is held (no DECREF that can
 *    reach zero, no calls): references are dropped after unlocking.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/mman.h>
#include "greenlet.h"

#define Grunnable 1
#define Grunning 2
#define Gwaiting 4

#define RUNQ_MOVABLE_MAX 256
#define RUNNEXT_STREAK_MAX 3
#define FAIRNESS_TICKS 61

/* Python-side callbacks, set by init() */
static PyObject *py_getg;          /* proc._getg_slow() */
static PyObject *py_park_thread;   /* proc._park_thread(g) */
static PyObject *py_next_local;    /* proc.next_local_slow(p) */
static PyObject *py_bind;          /* proc._bind(p, g, glet) */
static PyObject *py_runqputslow;   /* proc._runqputslow(p) */
static PyObject *py_park_current;  /* proc.park_current(reason) */
static PyObject *py_globrunqget;   /* proc.globrunqget(p, n) */
static PyObject *PanicError;
static PyObject *default_case;     /* the `default` sentinel */
static PyObject *glob_runq;        /* sched.runq deque (hint: non-empty?) */
static PyObject *py_freeze;        /* proc._freeze(): block this worker forever (exit) */
static atomic_int exiting;         /* the process is exiting: workers freeze at their next park */
static PyObject *tuple_none;       /* (None,) */
static PyObject *s_send, *s_recv, *s_recv_, *s_release, *s_acquire, *s_unpark,
                *s_chan_send, *s_chan_recv, *s_select, *s_select_nocases,
                *s_send_nil, *s_recv_nil;

static _Thread_local PyObject *tls_p;   /* the P this worker thread drives (borrowed; the P outlives its worker) */

static inline double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void lk_acquire(PyThread_type_lock lk) {
    if (!PyThread_acquire_lock(lk, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lk, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}
#define lk_release PyThread_release_lock

/* xorshift64*: per-thread, for select's poll order */
static _Thread_local uint64_t rng_state;
static inline uint32_t fastrandn(uint32_t n) {
    uint64_t x = rng_state;
    if (!x) x = ((uint64_t)(uintptr_t)&rng_state) ^ (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    rng_state = x;
    return (uint32_t)(((x * 0x2545F4914F6CDD1Dull) >> 32) * (uint64_t)n >> 32);
}

/* ================================================================== Lock */

typedef struct { PyObject_HEAD PyThread_type_lock lk; int held; } LockObject;

static PyObject *Lock_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    LockObject *self = (LockObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    self->lk = PyThread_allocate_lock();
    if (!self->lk) { Py_DECREF(self); return PyErr_NoMemory(); }
    return (PyObject *)self;
}
static void Lock_dealloc(LockObject *self) {
    if (self->lk) PyThread_free_lock(self->lk);
    Py_TYPE(self)->tp_free((PyObject *)self);
}
static PyObject *Lock_acquire(LockObject *self, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"blocking", NULL};
    int blocking = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwl, &blocking)) return NULL;
    if (!blocking) {
        if (!PyThread_acquire_lock(self->lk, NOWAIT_LOCK)) Py_RETURN_FALSE;
    } else {
        lk_acquire(self->lk);
    }
    self->held = 1;
    Py_RETURN_TRUE;
}
static PyObject *Lock_release(LockObject *self, PyObject *unused) {
    if (!self->held) { PyErr_SetString(PyExc_RuntimeError, "release unlocked lock"); return NULL; }
    self->held = 0;
    lk_release(self->lk);
    Py_RETURN_NONE;
}
static PyObject *Lock_enter(LockObject *self, PyObject *unused) {
    lk_acquire(self->lk);
    self->held = 1;
    Py_RETURN_TRUE;
}
static PyObject *Lock_exit(LockObject *self, PyObject *args) { return Lock_release(self, NULL); }
static PyObject *Lock_locked(LockObject *self, PyObject *unused) { return PyBool_FromLong(self->held); }
static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Lock_acquire, METH_VARARGS | METH_KEYWORDS, NULL},
    {"release", (PyCFunction)Lock_release, METH_NOARGS, NULL},
    {"__enter__", (PyCFunction)Lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Lock_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS, NULL},
    {NULL}};
static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.Lock", .tp_basicsize = sizeof(LockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT, .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc, .tp_methods = Lock_methods,
    .tp_doc = "A runtime lock (PyThread lock) usable with `with`.",
};

/* ===================================================================== G */

typedef struct {
    PyObject_HEAD
    int status;
    char locked;
    int lockedcount;
    long long goid;
    PyObject *glet, *home, *param, *sema, *waitreason;
    PyObject *fn, *args, *kwargs, *ctx, *creator, *sleeptimer, *m;
    double waitsince;
} GObject;

static PyObject *G_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    GObject *self = (GObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    self->status = Grunnable;
    self->glet = Py_NewRef(Py_None);
    self->home = Py_NewRef(Py_None);
    self->param = Py_NewRef(Py_None);
    self->sema = Py_NewRef(Py_None);
    self->waitreason = PyUnicode_FromString("");
    self->fn = Py_NewRef(Py_None);
    self->args = Py_NewRef(Py_None);
    self->kwargs = Py_NewRef(Py_None);
    self->ctx = Py_NewRef(Py_None);
    self->creator = Py_NewRef(Py_None);
    self->sleeptimer = Py_NewRef(Py_None);
    self->m = Py_NewRef(Py_None);
    return (PyObject *)self;
}
/* G(goid, fn, args, kwargs, ctx, creator): the whole constructor in C (go() is hot). */
static int G_init(GObject *self, PyObject *args, PyObject *kw) {
    PyObject *fn, *a, *k, *ctx, *creator;
    long long goid;
    if (!PyArg_ParseTuple(args, "LOOOOO", &goid, &fn, &a, &k, &ctx, &creator)) return -1;
    self->goid = goid;
    Py_SETREF(self->fn, Py_NewRef(fn));
    Py_SETREF(self->args, Py_NewRef(a));
    Py_SETREF(self->kwargs, Py_NewRef(k));
    Py_SETREF(self->ctx, Py_NewRef(ctx));
    Py_SETREF(self->creator, Py_NewRef(creator));
    return 0;
}
static int G_clear(GObject *self) {
    Py_CLEAR(self->glet); Py_CLEAR(self->home); Py_CLEAR(self->param);
    Py_CLEAR(self->sema); Py_CLEAR(self->waitreason);
    Py_CLEAR(self->fn); Py_CLEAR(self->args); Py_CLEAR(self->kwargs); Py_CLEAR(self->ctx);
    Py_CLEAR(self->creator); Py_CLEAR(self->sleeptimer); Py_CLEAR(self->m);
    return 0;
}
static void G_dealloc(GObject *self) {
    G_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}
static PyObject *G_repr(GObject *g) {
    static const char *names[] = {"idle", "runnable", "running", "syscall", "waiting", "?", "dead"};
    const char *st = (g->status >= 0 && g->status <= 6) ? names[g->status] : "preempted";
    return PyUnicode_FromFormat("<G %lld %s>", g->goid, st);
}
static PyMemberDef G_members[] = {
    {"status", T_INT, offsetof(GObject, status), 0, NULL},
    {"locked", T_BOOL, offsetof(GObject, locked), 0, NULL},
    {"glet", T_OBJECT, offsetof(GObject, glet), 0, NULL},
    {"home", T_OBJECT, offsetof(GObject, home), 0, NULL},
    {"param", T_OBJECT, offsetof(GObject, param), 0, NULL},
    {"sema", T_OBJECT, offsetof(GObject, sema), 0, NULL},
    {"waitreason", T_OBJECT, offsetof(GObject, waitreason), 0, NULL},
    {"waitsince", T_DOUBLE, offsetof(GObject, waitsince), 0, NULL},
    {"goid", T_LONGLONG, offsetof(GObject, goid), 0, NULL},
    {"lockedcount", T_INT, offsetof(GObject, lockedcount), 0, NULL},
    {"fn", T_OBJECT, offsetof(GObject, fn), 0, NULL},
    {"args", T_OBJECT, offsetof(GObject, args), 0, NULL},
    {"kwargs", T_OBJECT, offsetof(GObject, kwargs), 0, NULL},
    {"ctx", T_OBJECT, offsetof(GObject, ctx), 0, NULL},
    {"creator", T_OBJECT, offsetof(GObject, creator), 0, NULL},
    {"sleeptimer", T_OBJECT, offsetof(GObject, sleeptimer), 0, NULL},
    {"m", T_OBJECT, offsetof(GObject, m), 0, NULL},
    {NULL}};
static PyTypeObject GType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.G", .tp_basicsize = sizeof(GObject), .tp_repr = (reprfunc)G_repr,
    /* Not tracked by the cyclic GC: a live G is referenced by the runtime (it is
       never garbage), and a finished G drops every reference that could close a
       cycle (greenlet, function, arguments, context, sleep timer) when it dies
       (proc._gdestroy).  Spawning 100,000 goroutines ran ~3x faster without GC
       passes over their Gs.  Used as is, not subclassed: a Python subclass
       would be a heap type, and heap types are always GC-tracked. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = G_new, .tp_init = (initproc)G_init, .tp_dealloc = (destructor)G_dealloc,
    .tp_members = G_members, .tp_doc = "C half of a G (see pygmp/runtime/g.py).",
};
#define G_CAST(o) ((GObject *)(o))

/* ===================================================================== P */

typedef struct {
    PyObject_HEAD
    LockObject *lock;
    PyObject **rq;
    Py_ssize_t rqcap, rqhead, rqlen;
    PyObject *runnext;
    Py_ssize_t nmovable;
    long long schedtick;
    int streak;
    char stuck, sleeping, draining;
    PyObject *curg, *g0, *gfree, *timer0, *parker, *sleepuntil;
    double lastpoll;
} PObject;

static PyTypeObject PType;
#define P_CAST(o) ((PObject *)(o))

static PyObject *P_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    PObject *self = (PObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    self->lock = (LockObject *)Lock_new(&LockType, NULL, NULL);
    self->rqcap = 64;
    self->rq = PyMem_RawMalloc(sizeof(PyObject *) * self->rqcap);
    if (!self->lock || !self->rq) { Py_DECREF(self); return PyErr_NoMemory(); }
    self->runnext = Py_NewRef(Py_None);
    self->curg = Py_NewRef(Py_None);
    self->g0 = Py_NewRef(Py_None);
    self->gfree = PyList_New(0);
    self->timer0 = Py_NewRef(Py_None);
    self->parker = Py_NewRef(Py_None);
    self->sleepuntil = PyFloat_FromDouble(-1.0);
    if (!self->gfree || !self->sleepuntil) { Py_DECREF(self); return NULL; }
    return (PyObject *)self;
}
static int P_traverse(PObject *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->rqlen; i++)
        Py_VISIT(self->rq[(self->rqhead + i) % self->rqcap]);
    Py_VISIT(self->runnext); Py_VISIT(self->curg); Py_VISIT(self->g0); Py_VISIT(self->gfree);
    Py_VISIT(self->timer0); Py_VISIT(self->parker); Py_VISIT(self->sleepuntil);
    Py_VISIT((PyObject *)self->lock);
    return 0;
}
static int P_clear(PObject *self) {
    while (self->rqlen) {
        PyObject *g = self->rq[self->rqhead];
        self->rqhead = (self->rqhead + 1) % self->rqcap;
        self->rqlen--;
        Py_DECREF(g);
    }
    Py_CLEAR(self->runnext); Py_CLEAR(self->curg); Py_CLEAR(self->g0); Py_CLEAR(self->gfree);
    Py_CLEAR(self->timer0); Py_CLEAR(self->parker); Py_CLEAR(self->sleepuntil);
    return 0;
}
static void P_dealloc(PObject *self) {
    PyObject_GC_UnTrack(self);
    P_clear(self);
    Py_CLEAR(self->lock);
    PyMem_RawFree(self->rq);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ring ops: caller holds p->lock->lk.  rq_push steals the reference. */
static int rq_push(PObject *p, PyObject *g) {
    if (p->rqlen == p->rqcap) {
        Py_ssize_t ncap = p->rqcap * 2;
        PyObject **n = PyMem_RawMalloc(sizeof(PyObject *) * ncap);
        if (!n) return -1;
        for (Py_ssize_t i = 0; i < p->rqlen; i++) n[i] = p->rq[(p->rqhead + i) % p->rqcap];
        PyMem_RawFree(p->rq);
        p->rq = n; p->rqcap = ncap; p->rqhead = 0;
    }
    p->rq[(p->rqhead + p->rqlen) % p->rqcap] = g;
    p->rqlen++;
    if (G_CAST(g)->home == Py_None) p->nmovable++;
    return 0;
}
static PyObject *rq_pop(PObject *p) {   /* new reference, or NULL if empty */
    if (!p->rqlen) return NULL;
    PyObject *g = p->rq[p->rqhead];
    p->rqhead = (p->rqhead + 1) % p->rqcap;
    p->rqlen--;
    if (G_CAST(g)->home == Py_None) p->nmovable--;
    return g;
}
#define PLOCK(p) lk_acquire((p)->lock->lk); (p)->lock->held = 1
#define PUNLOCK(p) (p)->lock->held = 0; lk_release((p)->lock->lk)

/* Take up to maxn movable Gs (runnext too when `withnext` and it is movable). */
static PyObject *rq_take_movable(PObject *p, Py_ssize_t maxn, int withnext) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    PyObject *overflow = NULL;
    PLOCK(p);
    Py_ssize_t n = p->rqlen, kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *g = p->rq[(p->rqhead + i) % p->rqcap];
        if (PyList_GET_SIZE(out) < maxn && G_CAST(g)->home == Py_None) {
            if (PyList_Append(out, g) < 0) { overflow = g; }
            Py_DECREF(g);   /* the list holds it now (refcount > 0: the list) */
            p->nmovable--;
        } else {
            p->rq[(p->rqhead + kept) % p->rqcap] = g;
            kept++;
        }
    }
    p->rqlen = kept;
    if (withnext && PyList_GET_SIZE(out) == 0 && p->runnext != Py_None && G_CAST(p->runnext)->home == Py_None) {
        PyObject *nx = p->runnext;
        p->runnext = Py_NewRef(Py_None);
        PyList_Append(out, nx);
        PUNLOCK(p);
        Py_DECREF(nx);
        return out;
    }
    PUNLOCK(p);
    (void)overflow;
    return out;
}

static PyObject *P_rq_len(PObject *p, PyObject *u) { return PyLong_FromSsize_t(p->rqlen); }
static PyObject *P_rq_extend(PObject *p, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "rq_extend needs a sequence");
    if (!fast) return NULL;
    PLOCK(p);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        PyObject *g = PySequence_Fast_GET_ITEM(fast, i);
        Py_INCREF(g);
        if (rq_push(p, g) < 0) { Py_DECREF(g); PUNLOCK(p); Py_DECREF(fast); return PyErr_NoMemory(); }
    }
    PUNLOCK(p);
    Py_DECREF(fast);
    Py_RETURN_NONE;
}
static PyObject *P_rq_append(PObject *p, PyObject *g) {   /* owner: tail put */
    Py_INCREF(g);
    PLOCK(p);
    int r = rq_push(p, g);
    PUNLOCK(p);
    if (r < 0) { Py_DECREF(g); return PyErr_NoMemory(); }
    Py_RETURN_NONE;
}
static int put_remote(PObject *p, PyObject *g) {
    Py_INCREF(g);
    PLOCK(p);
    int r = rq_push(p, g);
    int sleeping = p->sleeping;
    PUNLOCK(p);
    if (r < 0) { Py_DECREF(g); PyErr_NoMemory(); return -1; }
    if (sleeping) {
        PyObject *res = PyObject_CallMethodNoArgs(p->parker, s_unpark);
        if (!res) return -1;
        Py_DECREF(res);
    }
    return 0;
}
static PyObject *P_rq_put_remote(PObject *p, PyObject *g) {
    if (put_remote(p, g) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *P_rq_steal(PObject *p, PyObject *arg) {
    Py_ssize_t maxn = PyLong_AsSsize_t(arg);
    if (maxn == -1 && PyErr_Occurred()) return NULL;
    PyObject *out = rq_take_movable(p, maxn, p->stuck);
    if (out && PyList_GET_SIZE(out) == 0) { Py_DECREF(out); Py_RETURN_NONE; }
    return out;
}
static PyObject *P_rq_grab_movable(PObject *p, PyObject *arg) {
    Py_ssize_t maxn = PyLong_AsSsize_t(arg);
    if (maxn == -1 && PyErr_Occurred()) return NULL;
    return rq_take_movable(p, maxn, 0);
}
static PyObject *P_rq_snapshot(PObject *p, PyObject *u) {   /* caller need not hold the lock */
    /* Copy out under the lock into raw memory, build the list after: creating a
       GC-tracked object under a runtime lock could run a collection and with
       it finalizers that take this lock again. */
    PyObject **tmp = NULL;
    Py_ssize_t n;
    for (;;) {
        n = p->rqlen;
        PyMem_RawFree(tmp);
        tmp = PyMem_RawMalloc(sizeof(PyObject *) * (n ? n : 1));
        if (!tmp) return PyErr_NoMemory();
        PLOCK(p);
        if (p->rqlen <= n) break;
        PUNLOCK(p);
    }
    n = p->rqlen;
    for (Py_ssize_t i = 0; i < n; i++) tmp[i] = Py_NewRef(p->rq[(p->rqhead + i) % p->rqcap]);
    PUNLOCK(p);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (out) PyList_SET_ITEM(out, i, tmp[i]);
        else Py_DECREF(tmp[i]);
    }
    PyMem_RawFree(tmp);
    return out;
}
static PyMethodDef P_methods[] = {
    {"rq_len", (PyCFunction)P_rq_len, METH_NOARGS, "runq length (caller holds p.lock for a stable answer)"},
    {"rq_extend", (PyCFunction)P_rq_extend, METH_O, "append Gs at the tail (takes p.lock)"},
    {"rq_append", (PyCFunction)P_rq_append, METH_O, "append one G at the tail (takes p.lock)"},
    {"rq_put_remote", (PyCFunction)P_rq_put_remote, METH_O, "any thread: append and wake the P if it sleeps"},
    {"rq_steal", (PyCFunction)P_rq_steal, METH_O, "take up to half... of the movable Gs (runnext too if stuck)"},
    {"rq_grab_movable", (PyCFunction)P_rq_grab_movable, METH_O, "take up to n movable Gs"},
    {"rq_snapshot", (PyCFunction)P_rq_snapshot, METH_NOARGS, "list of the Gs in the runq"},
    {NULL}};
static PyMemberDef P_members[] = {
    {"lock", T_OBJECT, offsetof(PObject, lock), READONLY, NULL},
    {"runnext", T_OBJECT, offsetof(PObject, runnext), 0, NULL},
    {"nmovable", T_PYSSIZET, offsetof(PObject, nmovable), 0, NULL},
    {"schedtick", T_LONGLONG, offsetof(PObject, schedtick), 0, NULL},
    {"streak", T_INT, offsetof(PObject, streak), 0, NULL},
    {"stuck", T_BOOL, offsetof(PObject, stuck), 0, NULL},
    {"sleeping", T_BOOL, offsetof(PObject, sleeping), 0, NULL},
    {"draining", T_BOOL, offsetof(PObject, draining), 0, NULL},
    {"curg", T_OBJECT, offsetof(PObject, curg), 0, NULL},
    {"g0", T_OBJECT, offsetof(PObject, g0), 0, NULL},
    {"gfree", T_OBJECT, offsetof(PObject, gfree), 0, NULL},
    {"timer0", T_OBJECT, offsetof(PObject, timer0), 0, NULL},
    {"parker", T_OBJECT, offsetof(PObject, parker), 0, NULL},
    {"sleepuntil", T_OBJECT, offsetof(PObject, sleepuntil), 0, NULL},
    {"lastpoll", T_DOUBLE, offsetof(PObject, lastpoll), 0, NULL},
    {NULL}};
static PyTypeObject PType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.PBase", .tp_basicsize = sizeof(PObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = P_new, .tp_dealloc = (destructor)P_dealloc,
    .tp_traverse = (traverseproc)P_traverse, .tp_clear = (inquiry)P_clear,
    .tp_members = P_members, .tp_methods = P_methods,
    .tp_doc = "C half of a P: lock, local runqueue ring, runnext (see pygmp/runtime/p.py).",
};

/* ============================================================ scheduling */

/* Owner-only put (runqput).  Steals nothing; INCREFs g. */
static int runqput_c(PObject *p, PyObject *g, int nxt) {
    Py_INCREF(g);
    PLOCK(p);
    if (nxt) {
        PyObject *old = p->runnext;
        p->runnext = g;
        if (old == Py_None) { PUNLOCK(p); Py_DECREF(old); return 0; }
        g = old;
    }
    if (rq_push(p, g) < 0) { PUNLOCK(p); Py_DECREF(g); PyErr_NoMemory(); return -1; }
    int spill = p->nmovable > RUNQ_MOVABLE_MAX;
    PUNLOCK(p);
    if (spill) {
        PyObject *r = PyObject_CallOneArg(py_runqputslow, (PyObject *)p);
        if (!r) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* Owner-only get (runqget, without the fairness tick).  New ref or NULL. */
static PyObject *runqget_c(PObject *p) {
    p->schedtick++;
    p->stuck = 0;
    PLOCK(p);
    PyObject *nx = p->runnext;
    if (nx != Py_None && (p->streak < RUNNEXT_STREAK_MAX || p->rqlen == 0)) {
        p->runnext = Py_NewRef(Py_None);   /* nx's reference passes to the caller */
        PUNLOCK(p);
        p->streak++;
        return nx;
    }
    PyObject *g = rq_pop(p);
    PUNLOCK(p);
    if (g) p->streak = 0;
    return g;
}

/* next_local: fast path in C; the fairness tick, due timers and a non-empty
 * global queue go to Python's next_local_slow.  New ref, or NULL (none, or
 * an error if PyErr_Occurred()). */
static PyObject *next_local_c(PObject *p) {
    int slow = ((p->schedtick + 1) % FAIRNESS_TICKS) == 0;
    if (!slow && p->timer0 != Py_None) {
#ifdef __linux__
        double t0 = PyFloat_AS_DOUBLE(p->timer0);
        slow = t0 <= mono();
#else
        slow = 1;
#endif
    }
    if (!slow) {
        PyObject *g = runqget_c(p);
        if (g || !glob_runq || Py_SIZE(glob_runq) == 0) return g;
    }
    PyObject *g = PyObject_CallOneArg(py_next_local, (PyObject *)p);
    if (!g) return NULL;
    if (g == Py_None) { Py_DECREF(g); return NULL; }
    return g;
}

/* Switch from the current G to nxt (a new reference, stolen; NULL: to g0).
 * Returns 0 when the current G is resumed, -1 with an exception set. */
static int switchto_c(PObject *p, PyObject *nxt) {
    PyObject *r;
    if (nxt) {
        PyObject *glet = G_CAST(nxt)->glet;
        if (glet == Py_None && PyList_GET_SIZE(p->gfree) > 0) {
            Py_ssize_t n = PyList_GET_SIZE(p->gfree);
            glet = Py_NewRef(PyList_GET_ITEM(p->gfree, n - 1));
            if (PyList_SetSlice(p->gfree, n - 1, n, NULL) < 0) { Py_DECREF(glet); Py_DECREF(nxt); return -1; }
            PyObject *b = PyObject_CallFunctionObjArgs(py_bind, (PyObject *)p, nxt, glet, NULL);
            Py_DECREF(glet);
            if (!b) { Py_DECREF(nxt); return -1; }
            Py_DECREF(b);
            glet = G_CAST(nxt)->glet;
            /* a free greenlet waits for the G it is to run: pass it */
            Py_SETREF(p->curg, Py_NewRef(nxt));
            G_CAST(nxt)->status = Grunning;
            PyObject *args = PyTuple_Pack(1, nxt);
            Py_DECREF(nxt);
            if (!args) return -1;
            r = PyGreenlet_Switch((PyGreenlet *)glet, args, NULL);
            Py_DECREF(args);
            if (!r) return -1;
            Py_DECREF(r);
            return 0;
        }
        if (glet != Py_None) {
            Py_SETREF(p->curg, nxt);   /* steals nxt */
            G_CAST(nxt)->status = Grunning;
            r = PyGreenlet_Switch((PyGreenlet *)glet, NULL, NULL);
            if (!r) return -1;
            Py_DECREF(r);
            return 0;
        }
        /* unstarted and no cached greenlet: g0 creates one (a greenlet starts at
           the recursion depth of whoever switches to it; g0's is shallow) */
        PyObject *args = PyTuple_Pack(1, nxt);
        Py_DECREF(nxt);
        if (!args) return -1;
        Py_SETREF(p->curg, Py_NewRef(Py_None));
        r = PyGreenlet_Switch((PyGreenlet *)p->g0, args, NULL);
        Py_DECREF(args);
    } else {
        Py_SETREF(p->curg, Py_NewRef(Py_None));
        r = PyGreenlet_Switch((PyGreenlet *)p->g0, tuple_none, NULL);
    }
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* gopark: the caller published a waiter and set status = Gwaiting. */
static int gopark_c(GObject *g, PyObject *reason) {
    Py_SETREF(g->waitreason, Py_NewRef(reason));
    if (atomic_load_explicit(&exiting, memory_order_relaxed) && py_freeze && !g->locked) {
        PyObject *r = PyObject_CallNoArgs(py_freeze);   /* does not return */
        Py_XDECREF(r);
        return -1;
    }
    if (g->locked) {
        PyObject *r = PyObject_CallOneArg(py_park_thread, (PyObject *)g);
        if (!r) return -1;
        Py_DECREF(r);
        return 0;
    }
    PObject *p = P_CAST(g->home);
    PyObject *nxt = next_local_c(p);
    if (!nxt && PyErr_Occurred()) return -1;
    if (nxt == (PyObject *)g) {
        g->status = Grunning;
        Py_DECREF(nxt);
        return 0;
    }
    Py_INCREF(p);
    int r = switchto_c(p, nxt);
    Py_DECREF(p);
    return r;
}

static int goready_c(GObject *g) {
    g->status = Grunnable;
    if (g->locked) {
        PyObject *r = PyObject_CallMethodNoArgs(g->sema, s_release);
        if (!r) return -1;
        Py_DECREF(r);
        return 0;
    }
    PObject *p = P_CAST(g->home);
    if (tls_p == (PyObject *)p)
        return runqput_c(p, (PyObject *)g, 1);
    return put_remote(p, (PyObject *)g);
}

/* The current G (new ref); None in a worker's scheduler greenlet. */
static PyObject *getg_c(void) {
    PyObject *p = tls_p;
    if (p) return Py_NewRef(P_CAST(p)->curg);
    return PyObject_CallNoArgs(py_getg);
}

/* module-level wrappers */
static PyObject *m_runqput(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "runqput(p, g, nxt)"); return NULL; }
    if (runqput_c(P_CAST(args[0]), args[1], PyObject_IsTrue(args[2])) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *m_runqget(PyObject *m, PyObject *p) {
    PyObject *g = runqget_c(P_CAST(p));
    return g ? g : Py_NewRef(Py_None);
}
static PyObject *m_next_local(PyObject *m, PyObject *p) {
    PyObject *g = next_local_c(P_CAST(p));
    if (!g && PyErr_Occurred()) return NULL;
    return g ? g : Py_NewRef(Py_None);
}
static PyObject *m_gopark(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "gopark(g, reason)"); return NULL; }
    if (gopark_c(G_CAST(args[0]), args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *m_goready(PyObject *m, PyObject *g) {
    if (goready_c(G_CAST(g)) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *m_getg(PyObject *m, PyObject *u) { return getg_c(); }
static PyObject *m_set_current_p(PyObject *m, PyObject *p) {
    tls_p = (p == Py_None) ? NULL : p;
    Py_RETURN_NONE;
}

/* ============================================================== channels */

typedef struct parkstate { atomic_int done; struct sudog *win; } parkstate;

typedef struct sudog {
    PyObject *g;          /* strong */
    PyObject *elem;       /* strong or NULL */
    parkstate *ps;        /* NULL: plain goroutine op */
    struct ChanObject *c;
    struct sudog *prev, *next;
    int idx, isrecv, success, queued;
} sudog;

typedef struct { sudog *head, *tail; } waitq;

typedef struct ChanObject {
    PyObject_HEAD
    PyThread_type_lock lk;
    PyObject **buf;
    Py_ssize_t cap, bcap, head, len;
    char closed, isnil;
    waitq recvq, sendq;
    PyObject *weakreflist;
} ChanObject;

static PyTypeObject ChanType;
#define C_CAST(o) ((ChanObject *)(o))

static void wq_push(waitq *q, sudog *s) {
    s->next = NULL; s->prev = q->tail;
    if (q->tail) q->tail->next = s; else q->head = s;
    q->tail = s;
    s->queued = 1;
}
static void wq_unlink(waitq *q, sudog *s) {
    if (!s->queued) return;
    if (s->prev) s->prev->next = s->next; else q->head = s->next;
    if (s->next) s->next->prev = s->prev; else q->tail = s->prev;
    s->prev = s->next = NULL;
    s->queued = 0;
}
/* Pop the first sudog this waker may complete (skips lost select races). */
static sudog *wq_dequeue(waitq *q) {
    for (;;) {
        sudog *s = q->head;
        if (!s) return NULL;
        wq_unlink(q, s);
        if (s->ps) {
            int exp = 0;
            if (!atomic_compare_exchange_strong(&s->ps->done, &exp, 1)) continue;
            s->ps->win = s;
        }
        return s;
    }
}

static sudog *sudog_new(PyObject *g, PyObject *elem, ChanObject *c, parkstate *ps, int idx, int isrecv) {
    sudog *s = PyMem_Malloc(sizeof(sudog));
    if (!s) { PyErr_NoMemory(); return NULL; }
    s->g = Py_NewRef(g);
    s->elem = Py_XNewRef(elem);
    s->ps = ps; s->c = c; s->prev = s->next = NULL;
    s->idx = idx; s->isrecv = isrecv; s->success = 0; s->queued = 0;
    return s;
}
static void sudog_free(sudog *s) {
    Py_DECREF(s->g);
    Py_XDECREF(s->elem);
    PyMem_Free(s);
}

static int buf_push(ChanObject *c, PyObject *v) {   /* INCREFs v */
    if (c->len == c->bcap) {
        Py_ssize_t ncap = c->bcap ? c->bcap * 2 : 8;
        if (ncap > c->cap) ncap = c->cap;
        PyObject **n = PyMem_RawMalloc(sizeof(PyObject *) * ncap);
        if (!n) return -1;
        for (Py_ssize_t i = 0; i < c->len; i++) n[i] = c->buf[(c->head + i) % c->bcap];
        PyMem_RawFree(c->buf);
        c->buf = n; c->bcap = ncap; c->head = 0;
    }
    c->buf[(c->head + c->len) % c->bcap] = Py_NewRef(v);
    c->len++;
    return 0;
}
static PyObject *buf_pop(ChanObject *c) {   /* new ref */
    PyObject *v = c->buf[c->head];
    c->head = (c->head + 1) % c->bcap;
    c->len--;
    return v;
}

static PyObject *Chan_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"size", "_nil", NULL};
    PyObject *size = NULL;
    int isnil = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Op", kwl, &size, &isnil)) return NULL;
    Py_ssize_t cap = 0;
    if (size) {
        if (PyBool_Check(size) || !PyLong_Check(size)) {
            PyErr_Format(PyExc_TypeError, "chan: size must be an int, not %s", Py_TYPE(size)->tp_name);
            return NULL;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(size, &overflow);
        if (overflow > 0 || v > PY_SSIZE_T_MAX / 16) {
            PyErr_SetString(PyExc_ValueError, "chan: size out of range (makechan: size out of range)");
            return NULL;
        }
        if (overflow < 0 || v < 0) {
            PyErr_Format(PyExc_ValueError, "chan: size must be >= 0, got %S (makechan: size out of range)", size);
            return NULL;
        }
        cap = (Py_ssize_t)v;
    }
    ChanObject *c = (ChanObject *)t->tp_alloc(t, 0);
    if (!c) return NULL;
    c->lk = PyThread_allocate_lock();
    if (!c->lk) { Py_DECREF(c); return PyErr_NoMemory(); }
    c->cap = cap;
    c->isnil = (char)isnil;
    return (PyObject *)c;
}
static int Chan_init(PyObject *self, PyObject *args, PyObject *kw) { return 0; }
static int Chan_traverse(ChanObject *c, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < c->len; i++) Py_VISIT(c->buf[(c->head + i) % c->bcap]);
    return 0;   /* queued sudogs' Gs are owned by parked goroutines, which the runtime keeps alive */
}
static int Chan_clear(ChanObject *c) {
    while (c->len) { PyObject *v = buf_pop(c); Py_DECREF(v); }
    return 0;
}
static void Chan_dealloc(ChanObject *c) {
    PyObject_GC_UnTrack(c);
    if (c->weakreflist) PyObject_ClearWeakRefs((PyObject *)c);
    Chan_clear(c);
    /* sudogs still queued belong to Gs parked forever: leave them (leak, as Go) */
    PyMem_RawFree(c->buf);
    if (c->lk) PyThread_free_lock(c->lk);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int park_nil(PyObject *reason) {
    PyObject *r = PyObject_CallOneArg(py_park_current, reason);
    if (!r) return -1;
    Py_DECREF(r);
    PyErr_SetString(PyExc_AssertionError, "unreachable: nil channel operation woke");
    return -1;
}

static PyObject *current_g(const char *what) {
    PyObject *g = getg_c();
    if (!g) return NULL;
    if (g == Py_None) {
        Py_DECREF(g);
        PyErr_Format(PyExc_RuntimeError, "pygmp: %s from the scheduler greenlet", what);
        return NULL;
    }
    return g;
}

/* Park g on sudog s (queued on c); thread Gs can be interrupted: withdraw. */
static int park_one(ChanObject *c, sudog *s, PyObject *reason) {
    GObject *g = G_CAST(s->g);
    if (gopark_c(g, reason) == 0) { g->status = Grunning; return 0; }
    /* an exception while parked (Ctrl-C in a thread G) */
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    int exp = 0;
    if (!s->ps || atomic_compare_exchange_strong(&s->ps->done, &exp, 1)) {
        lk_acquire(c->lk);
        wq_unlink(s->isrecv ? &c->recvq : &c->sendq, s);
        lk_release(c->lk);
    } else {
        PyObject *r = PyObject_CallMethodNoArgs(g->sema, s_acquire);   /* a waker won: take its token */
        Py_XDECREF(r);
        PyErr_Clear();
    }
    g->status = Grunning;
    PyErr_Restore(et, ev, etb);
    return -1;
}

static PyObject *chan_send_impl(ChanObject *c, PyObject *v) {
    if (c->isnil) { park_nil(s_send_nil); return NULL; }
    lk_acquire(c->lk);
    if (c->closed) {
        lk_release(c->lk);
        PyErr_SetString(PanicError, "send on closed channel");
        return NULL;
    }
    sudog *s = wq_dequeue(&c->recvq);
    if (s) {
        s->elem = Py_NewRef(v);
        s->success = 1;
        PyObject *g = s->g;
        Py_INCREF(g);
        lk_release(c->lk);
        int r = goready_c(G_CAST(g));
        Py_DECREF(g);
        if (r < 0) return NULL;
        Py_RETURN_NONE;
    }
    if (c->len < c->cap) {
        int r = buf_push(c, v);
        lk_release(c->lk);
        if (r < 0) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    lk_release(c->lk);
    PyObject *g = current_g("channel send");
    if (!g) return NULL;
    parkstate *ps = NULL;   /* heap, never on a greenlet's stack (see select) */
    if (G_CAST(g)->locked) {
        ps = PyMem_Malloc(sizeof(parkstate));
        if (!ps) { Py_DECREF(g); return PyErr_NoMemory(); }
        atomic_init(&ps->done, 0);
        ps->win = NULL;
    }
    s = sudog_new(g, v, c, ps, 0, 0);
    if (!s) { PyMem_Free(ps); Py_DECREF(g); return NULL; }
    lk_acquire(c->lk);
    /* re-check: state may have changed while the lock was dropped to find g */
    if (c->closed) {
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        PyErr_SetString(PanicError, "send on closed channel");
        return NULL;
    }
    sudog *r0 = wq_dequeue(&c->recvq);
    if (r0) {
        r0->elem = Py_NewRef(v); r0->success = 1;
        PyObject *rg = Py_NewRef(r0->g);
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        int rr = goready_c(G_CAST(rg));
        Py_DECREF(rg);
        if (rr < 0) return NULL;
        Py_RETURN_NONE;
    }
    if (c->len < c->cap) {
        int rr = buf_push(c, v);
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        if (rr < 0) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    wq_push(&c->sendq, s);
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    lk_release(c->lk);
    int r = park_one(c, s, s_chan_send);
    int ok = s->success;
    sudog_free(s);
    PyMem_Free(ps);
    Py_DECREF(g);
    if (r < 0) return NULL;
    if (!ok) { PyErr_SetString(PanicError, "send on closed channel"); return NULL; }
    Py_RETURN_NONE;
}

/* Receive; *ok set; returns new ref (None on closed). */
static PyObject *chan_recv_impl(ChanObject *c, int *ok) {
    if (c->isnil) { park_nil(s_recv_nil); return NULL; }
    PyObject *g = NULL;
    sudog *mine = NULL;
    parkstate *ps = NULL;   /* heap, never on a greenlet's stack (see select) */
    for (int attempt = 0;; attempt++) {
        lk_acquire(c->lk);
        sudog *s = wq_dequeue(&c->sendq);
        if (s) {
            PyObject *v;
            if (c->len) {   /* full buffer: take the head; the sender's value goes to the tail */
                v = buf_pop(c);
                c->buf[(c->head + c->len) % c->bcap] = s->elem;
                c->len++;
                s->elem = NULL;
            } else {
                v = s->elem;
                s->elem = NULL;
            }
            s->success = 1;
            PyObject *sg = Py_NewRef(s->g);
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            int r = goready_c(G_CAST(sg));
            Py_DECREF(sg);
            if (r < 0) { Py_DECREF(v); return NULL; }
            *ok = 1;
            return v;
        }
        if (c->len) {
            PyObject *v = buf_pop(c);
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            *ok = 1;
            return v;
        }
        if (c->closed) {
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            *ok = 0;
            Py_RETURN_NONE;
        }
        if (mine) break;
        lk_release(c->lk);
        g = current_g("channel receive");
        if (!g) return NULL;
        if (G_CAST(g)->locked) {
            ps = PyMem_Malloc(sizeof(parkstate));
            if (!ps) { Py_DECREF(g); return PyErr_NoMemory(); }
            atomic_init(&ps->done, 0);
            ps->win = NULL;
        }
        mine = sudog_new(g, NULL, c, ps, 0, 1);
        if (!mine) { PyMem_Free(ps); Py_DECREF(g); return NULL; }
    }
    wq_push(&c->recvq, mine);
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    lk_release(c->lk);
    int r = park_one(c, mine, s_chan_recv);
    PyObject *v = mine->elem;
    mine->elem = NULL;
    *ok = mine->success;
    sudog_free(mine);
    PyMem_Free(ps);
    Py_DECREF(g);
    if (r < 0) { Py_XDECREF(v); return NULL; }
    return v ? v : Py_NewRef(Py_None);
}

static PyObject *Chan_send(ChanObject *c, PyObject *v) { return chan_send_impl(c, v); }
static PyObject *Chan_recv(ChanObject *c, PyObject *u) { int ok; return chan_recv_impl(c, &ok); }
static PyObject *Chan_recv_(ChanObject *c, PyObject *u) {
    int ok;
    PyObject *v = chan_recv_impl(c, &ok);
    if (!v) return NULL;
    PyObject *t = PyTuple_Pack(2, v, ok ? Py_True : Py_False);
    Py_DECREF(v);
    return t;
}

static PyObject *Chan_close(ChanObject *c, PyObject *u) {
    if (c->isnil) { PyErr_SetString(PanicError, "close of nil channel"); return NULL; }
    lk_acquire(c->lk);
    if (c->closed) {
        lk_release(c->lk);
        PyErr_SetString(PanicError, "close of closed channel");
        return NULL;
    }
    c->closed = 1;
    /* collect every waiter; ready them after unlocking */
    Py_ssize_t n = 0, cap = 16;
    PyObject **gs = PyMem_RawMalloc(sizeof(PyObject *) * cap);
    sudog *s;
    for (int q = 0; q < 2; q++) {
        waitq *wq = q ? &c->sendq : &c->recvq;
        while ((s = wq_dequeue(wq))) {
            Py_CLEAR(s->elem);   /* a sender's value: its sender still holds a ref too */
            s->success = 0;
            if (n == cap) {
                cap *= 2;
                PyObject **ng = PyMem_RawRealloc(gs, sizeof(PyObject *) * cap);
                if (!ng) break;   /* out of memory: the rest stay parked */
                gs = ng;
            }
            if (gs) gs[n++] = Py_NewRef(s->g);
        }
    }
    lk_release(c->lk);
    int err = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!err && goready_c(G_CAST(gs[i])) < 0) err = 1;
        Py_DECREF(gs[i]);
    }
    PyMem_RawFree(gs);
    if (err) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Chan_try_send(ChanObject *c, PyObject *v) {
    lk_acquire(c->lk);
    if (c->closed || c->isnil) { lk_release(c->lk); Py_RETURN_FALSE; }
    sudog *s = wq_dequeue(&c->recvq);
    if (s) {
        s->elem = Py_NewRef(v);
        s->success = 1;
        PyObject *g = Py_NewRef(s->g);
        lk_release(c->lk);
        int r = goready_c(G_CAST(g));
        Py_DECREF(g);
        if (r < 0) return NULL;
        Py_RETURN_TRUE;
    }
    if (c->len < c->cap) {
        int r = buf_push(c, v);
        lk_release(c->lk);
        if (r < 0) return PyErr_NoMemory();
        Py_RETURN_TRUE;
    }
    lk_release(c->lk);
    Py_RETURN_FALSE;
}
static PyObject *Chan_drain(ChanObject *c, PyObject *u) {
    lk_acquire(c->lk);
    Py_ssize_t n = c->len;
    PyObject **vs = n ? PyMem_RawMalloc(sizeof(PyObject *) * n) : NULL;
    for (Py_ssize_t i = 0; i < n; i++) { PyObject *v = buf_pop(c); if (vs) vs[i] = v; }
    lk_release(c->lk);
    for (Py_ssize_t i = 0; i < n && vs; i++) Py_DECREF(vs[i]);
    PyMem_RawFree(vs);
    return PyBool_FromLong(n > 0);
}
static Py_ssize_t Chan_len(ChanObject *c) { return c->len; }
static PyObject *Chan_cap(ChanObject *c, PyObject *u) { return PyLong_FromSsize_t(c->cap); }
static PyObject *Chan_closed(ChanObject *c, void *u) { return PyBool_FromLong(c->closed); }
static PyObject *Chan_isnil(ChanObject *c, void *u) { return PyBool_FromLong(c->isnil); }

static PyMethodDef Chan_methods[] = {
    {"send", (PyCFunction)Chan_send, METH_O, "send(v): block until a receiver takes v or there is buffer room"},
    {"recv", (PyCFunction)Chan_recv, METH_NOARGS, "recv(): receive a value (None once closed and drained)"},
    {"recv_", (PyCFunction)Chan_recv_, METH_NOARGS, "recv_(): (value, ok); ok is False once closed and drained"},
    {"close", (PyCFunction)Chan_close, METH_NOARGS, "close(): wake every waiter"},
    {"cap", (PyCFunction)Chan_cap, METH_NOARGS, "capacity"},
    {"_try_send", (PyCFunction)Chan_try_send, METH_O, NULL},
    {"_drain", (PyCFunction)Chan_drain, METH_NOARGS, NULL},
    {NULL}};
static PyGetSetDef Chan_getset[] = {
    {"_closed", (getter)Chan_closed, NULL, NULL, NULL},
    {"_isnil", (getter)Chan_isnil, NULL, NULL, NULL},
    {NULL}};
static PySequenceMethods Chan_as_seq = {.sq_length = (lenfunc)Chan_len};
static PyTypeObject ChanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.ChanBase", .tp_basicsize = sizeof(ChanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = Chan_new, .tp_init = Chan_init, .tp_dealloc = (destructor)Chan_dealloc,
    .tp_traverse = (traverseproc)Chan_traverse, .tp_clear = (inquiry)Chan_clear,
    .tp_methods = Chan_methods, .tp_getset = Chan_getset, .tp_as_sequence = &Chan_as_seq,
    .tp_weaklistoffset = offsetof(ChanObject, weakreflist),
    .tp_doc = "A Go channel (C implementation; see pygmp/runtime/chan.py).",
};

/* ================================================================ select */

enum { K_RECV = 0, K_RECV_ = 1, K_SEND = 2 };
typedef struct { int kind; ChanObject *c; PyObject *v; } scase;

/* Identify ch.recv / ch.recv_ / ch.send bound to a ChanBase (C or Python method). */
static ChanObject *case_chan(PyObject *m, int *kind) {
    PyObject *self = NULL;
    const char *name = NULL;
    if (PyCFunction_Check(m)) {
        self = PyCFunction_GET_SELF(m);
        name = ((PyCFunctionObject *)m)->m_ml->ml_name;
    } else if (PyMethod_Check(m)) {
        self = PyMethod_GET_SELF(m);
        PyObject *f = PyMethod_GET_FUNCTION(m);
        PyObject *nm = PyObject_GetAttrString(f, "__name__");
        if (!nm) { PyErr_Clear(); return NULL; }
        name = PyUnicode_AsUTF8(nm);
        Py_DECREF(nm);   /* the function keeps its name alive */
        if (!name) { PyErr_Clear(); return NULL; }
    } else {
        return NULL;
    }
    if (!self || !PyObject_TypeCheck(self, &ChanType)) return NULL;
    if (strcmp(name, "recv") == 0) *kind = K_RECV;
    else if (strcmp(name, "recv_") == 0) *kind = K_RECV_;
    else if (strcmp(name, "send") == 0) *kind = K_SEND;
    else return NULL;
    return C_CAST(self);
}

static int cmp_chan(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(ChanObject *const *)a, y = (uintptr_t)*(ChanObject *const *)b;
    return x < y ? -1 : x > y;
}

static void unlock_all(ChanObject **cs, int n) { for (int i = 0; i < n; i++) lk_release(cs[i]->lk); }
static void lock_all(ChanObject **cs, int n) { for (int i = 0; i < n; i++) lk_acquire(cs[i]->lk); }

static PyObject *sel_result(int i, int kind, PyObject *v, int ok) {   /* steals v */
    PyObject *val;
    if (kind == K_RECV_) {
        val = PyTuple_Pack(2, v ? v : Py_None, ok ? Py_True : Py_False);
        Py_XDECREF(v);
    } else if (kind == K_RECV) {
        val = v ? v : Py_NewRef(Py_None);
    } else {
        val = Py_NewRef(Py_None);
    }
    if (!val) return NULL;
    PyObject *idx = PyLong_FromLong(i);
    PyObject *t = idx ? PyTuple_Pack(2, idx, val) : NULL;
    Py_XDECREF(idx);
    Py_DECREF(val);
    return t;
}

#define SEL_STACK 8

static PyObject *m_select(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    scase cstack[SEL_STACK];
    int ostack[SEL_STACK];
    ChanObject *lstack[SEL_STACK];
    scase *cases = n <= SEL_STACK ? cstack : PyMem_Malloc(sizeof(scase) * n);
    int *order = n <= SEL_STACK ? ostack : PyMem_Malloc(sizeof(int) * n);
    ChanObject **locks = n <= SEL_STACK ? lstack : PyMem_Malloc(sizeof(ChanObject *) * n);
    sudog **sgs = NULL;
    PyObject *result = NULL, *g = NULL;
    if (!cases || !order || !locks) { PyErr_NoMemory(); goto out; }
    int dflt = -1, k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = args[i];
        cases[i].c = NULL;
        cases[i].v = NULL;
        if (c == default_case) {
            if (dflt >= 0) { PyErr_SetString(PyExc_TypeError, "select: multiple default cases"); goto out; }
            dflt = (int)i;
            continue;
        }
        int kind;
        if (PyTuple_CheckExact(c)) {
            if (PyTuple_GET_SIZE(c) != 2) {
                PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), got a %zd-tuple", i, PyTuple_GET_SIZE(c));
                goto out;
            }
            ChanObject *ch = case_chan(PyTuple_GET_ITEM(c, 0), &kind);
            if (!ch || kind != K_SEND) {
                PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), got (%R, ...)", i, PyTuple_GET_ITEM(c, 0));
                goto out;
            }
            cases[i].kind = K_SEND;
            cases[i].c = ch;
            cases[i].v = PyTuple_GET_ITEM(c, 1);
        } else {
            ChanObject *ch = case_chan(c, &kind);
            if (!ch || kind == K_SEND) {
                if (ch)
                    PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), not ch.send alone", i);
                else
                    PyErr_Format(PyExc_TypeError, "select: case %zd: not a select case: %R (want ch.recv, ch.recv_, (ch.send, v) or default)", i, c);
                goto out;
            }
            cases[i].kind = kind;
            cases[i].c = ch;
        }
        if (!cases[i].c->isnil) order[k++] = (int)i;
    }
    /* uniformly random poll order (Fisher-Yates) */
    for (int i = k - 1; i > 0; i--) {
        int j = (int)fastrandn((uint32_t)(i + 1));
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    if (k == 0) {
        if (dflt >= 0) { result = sel_result(dflt, K_SEND, NULL, 0); goto out; }
        PyObject *r = PyObject_CallOneArg(py_park_current, s_select_nocases);
        Py_XDECREF(r);
        if (r) PyErr_SetString(PyExc_AssertionError, "unreachable: empty select woke");
        goto out;
    }
    /* lock order: by address, each channel once */
    int nl = 0;
    for (int i = 0; i < k; i++) locks[nl++] = cases[order[i]].c;
    qsort(locks, nl, sizeof(ChanObject *), cmp_chan);
    int u = 0;
    for (int i = 0; i < nl; i++) if (u == 0 || locks[u - 1] != locks[i]) locks[u++] = locks[i];
    nl = u;

    for (int pass = 0; pass < 2; pass++) {
        lock_all(locks, nl);
        /* pass 1: a ready case in poll order */
        for (int oi = 0; oi < k; oi++) {
            int i = order[oi];
            ChanObject *c = cases[i].c;
            if (cases[i].kind == K_SEND) {
                if (c->closed) {
                    unlock_all(locks, nl);
                    PyErr_SetString(PanicError, "send on closed channel");
                    goto out;
                }
                sudog *s = wq_dequeue(&c->recvq);
                if (s) {
                    s->elem = Py_NewRef(cases[i].v);
                    s->success = 1;
                    PyObject *rg = Py_NewRef(s->g);
                    unlock_all(locks, nl);
                    int r = goready_c(G_CAST(rg));
                    Py_DECREF(rg);
                    if (r == 0) result = sel_result(i, K_SEND, NULL, 1);
                    goto out;
                }
                if (c->len < c->cap) {
                    int r = buf_push(c, cases[i].v);
                    unlock_all(locks, nl);
                    if (r < 0) PyErr_NoMemory(); else result = sel_result(i, K_SEND, NULL, 1);
                    goto out;
                }
            } else {
                sudog *s = wq_dequeue(&c->sendq);
                if (s) {
                    PyObject *v;
                    if (c->len) {
                        v = buf_pop(c);
                        c->buf[(c->head + c->len) % c->bcap] = s->elem;
                        c->len++;
                    } else {
                        v = s->elem;
                    }
                    s->elem = NULL;
                    s->success = 1;
                    PyObject *sg = Py_NewRef(s->g);
                    unlock_all(locks, nl);
                    int r = goready_c(G_CAST(sg));
                    Py_DECREF(sg);
                    if (r < 0) { Py_DECREF(v); goto out; }
                    result = sel_result(i, cases[i].kind, v, 1);
                    goto out;
                }
                if (c->len) {
                    PyObject *v = buf_pop(c);
                    unlock_all(locks, nl);
                    result = sel_result(i, cases[i].kind, v, 1);
                    goto out;
                }
                if (c->closed) {
                    unlock_all(locks, nl);
                    result = sel_result(i, cases[i].kind, NULL, 0);
                    goto out;
                }
            }
        }
        if (dflt >= 0) {
            unlock_all(locks, nl);
            result = sel_result(dflt, K_SEND, NULL, 0);
            goto out;
        }
        if (g) break;
        /* find the current G with the locks dropped (it may call Python), then re-poll */
        unlock_all(locks, nl);
        g = current_g("select");
        if (!g) goto out;
    }
    /* pass 2: enqueue on every channel (locks held) and park.  The parkstate is
       heap memory: wakers write to it, and this greenlet's stack is copied in
       and out of the heap while it is switched out. */
    parkstate *ps = PyMem_Malloc(sizeof(parkstate));
    sgs = PyMem_Malloc(sizeof(sudog *) * k);
    if (!sgs || !ps) { unlock_all(locks, nl); PyMem_Free(ps); PyErr_NoMemory(); goto out; }
    atomic_init(&ps->done, 0);
    ps->win = NULL;
    for (int oi = 0; oi < k; oi++) {
        int i = order[oi];
        int isrecv = cases[i].kind != K_SEND;
        sgs[oi] = sudog_new(g, isrecv ? NULL : cases[i].v, cases[i].c, ps, i, isrecv);
        if (!sgs[oi]) {
            for (int j = 0; j < oi; j++) {
                wq_unlink(sgs[j]->isrecv ? &sgs[j]->c->recvq : &sgs[j]->c->sendq, sgs[j]);
                sudog_free(sgs[j]);
            }
            unlock_all(locks, nl);
            PyMem_Free(sgs); sgs = NULL;
            PyMem_Free(ps);
            goto out;
        }
        wq_push(isrecv ? &cases[i].c->recvq : &cases[i].c->sendq, sgs[oi]);
    }
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    unlock_all(locks, nl);
    int pr = gopark_c(G_CAST(g), s_select);
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    if (pr < 0) {
        PyErr_Fetch(&et, &ev, &etb);
        int exp = 0;
        if (!atomic_compare_exchange_strong(&ps->done, &exp, 1)) {
            /* a waker already completed us: take its wake token */
            PyObject *r = PyObject_CallMethodNoArgs(G_CAST(g)->sema, s_acquire);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
    G_CAST(g)->status = Grunning;
    /* pass 3: dequeue from every channel that did not fire */
    lock_all(locks, nl);
    for (int oi = 0; oi < k; oi++) {
        sudog *s = sgs[oi];
        wq_unlink(s->isrecv ? &s->c->recvq : &s->c->sendq, s);
    }
    unlock_all(locks, nl);
    if (pr < 0) {
        PyErr_Restore(et, ev, etb);
    } else {
        sudog *w = ps->win;
        int i = w->idx;
        if (cases[i].kind == K_SEND) {
            if (!w->success) PyErr_SetString(PanicError, "send on closed channel");
            else result = sel_result(i, K_SEND, NULL, 1);
        } else {
            PyObject *v = w->elem;
            w->elem = NULL;
            result = sel_result(i, cases[i].kind, v, w->success);
        }
    }
    for (int oi = 0; oi < k; oi++) sudog_free(sgs[oi]);
    PyMem_Free(ps);
out:
    Py_XDECREF(g);
    if (sgs) PyMem_Free(sgs);
    if (cases != cstack) PyMem_Free(cases);
    if (order != ostack) PyMem_Free(order);
    if (locks != lstack) PyMem_Free(locks);
    return result;
}

/* ======================================================= data-stack cache */
/*
 * Since 3.11 every greenlet that runs Python code gets its own interpreter data
 * stack chunk (16 KiB), which CPython takes from the object arena allocator:
 * an mmap when a goroutine's greenlet first runs and a munmap when it dies, plus
 * page faults on fresh memory.  perf on 100,000 greenlets that start, park and
 * finish: 72% of the time in the kernel, in exactly those calls.  This wraps
 * the arena allocator for blocks of exactly that size (pymalloc's own arenas
 * are 1 MiB and pass straight through): chunks are carved 64 at a time from
 * 1 MiB slabs (one mmap instead of 64), and freed chunks go on a LIFO free list
 * and are reused warm.  Chunks are never unmapped one by one (that splits the
 * slab's mapping: measured as the main cost of greenlet death); past `maxchunks`
 * warm ones, a freed chunk's pages are handed back with MADV_FREE (the kernel
 * reclaims them lazily, the address range stays ours), so resident memory falls
 * after a burst while address space stays at the peak, as Go's stacks do.
 * The arena allocator is only called with the GIL held; on a free-threaded
 * build this is not installed.
 */
#define STACK_CHUNK (16 * 1024)
#define SLAB_CHUNKS 64
static PyObjectArenaAllocator orig_arena;
static void **chunk_free_list;
static Py_ssize_t nchunks, chunkcap, maxchunks;
static char *slab_next;          /* next uncarved chunk of the current slab */
static int slab_left;

static void *cached_arena_alloc(void *ctx, size_t size) {
    if (size != STACK_CHUNK) return orig_arena.alloc(orig_arena.ctx, size);
    if (nchunks > 0) return chunk_free_list[--nchunks];
    if (slab_left == 0) {
        char *slab = orig_arena.alloc(orig_arena.ctx, (size_t)STACK_CHUNK * SLAB_CHUNKS);
        if (!slab) return NULL;
        slab_next = slab;
        slab_left = SLAB_CHUNKS;
    }
    void *p = slab_next;
    slab_next += STACK_CHUNK;
    slab_left--;
    return p;
}
static void cached_arena_free(void *ctx, void *ptr, size_t size) {
    if (size != STACK_CHUNK) { orig_arena.free(orig_arena.ctx, ptr, size); return; }
    if (nchunks == chunkcap) {
        Py_ssize_t ncap = chunkcap * 2;
        void **n = PyMem_RawRealloc(chunk_free_list, sizeof(void *) * ncap);
        if (!n) return;   /* out of memory: leak the chunk rather than split a slab */
        chunk_free_list = n;
        chunkcap = ncap;
    }
#ifdef MADV_FREE
    if (nchunks >= maxchunks) madvise(ptr, STACK_CHUNK, MADV_FREE);
#endif
    chunk_free_list[nchunks++] = ptr;
}
static PyObject *m_install_stack_cache(PyObject *m, PyObject *arg) {
#ifdef Py_GIL_DISABLED
    Py_RETURN_FALSE;
#else
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative cache size"); return NULL; }
    if (chunk_free_list) Py_RETURN_FALSE;   /* once per process */
    chunkcap = n > 64 ? n : 64;
    chunk_free_list = PyMem_RawMalloc(sizeof(void *) * chunkcap);
    if (!chunk_free_list) return PyErr_NoMemory();
    maxchunks = n;
    PyObject_GetArenaAllocator(&orig_arena);
    PyObjectArenaAllocator a = {NULL, cached_arena_alloc, cached_arena_free};
    PyObject_SetArenaAllocator(&a);
    Py_RETURN_TRUE;
#endif
}

/* ================================================================ module */

static PyObject *m_init(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"getg", "park_thread", "next_local", "bind", "runqputslow",
                          "park_current", "globrunqget", "panic_error", "default", NULL};
    PyObject *a[9];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOO", kwl, &a[0], &a[1], &a[2], &a[3],
                                     &a[4], &a[5], &a[6], &a[7], &a[8]))
        return NULL;
    Py_XSETREF(py_getg, Py_NewRef(a[0]));
    Py_XSETREF(py_park_thread, Py_NewRef(a[1]));
    Py_XSETREF(py_next_local, Py_NewRef(a[2]));
    Py_XSETREF(py_bind, Py_NewRef(a[3]));
    Py_XSETREF(py_runqputslow, Py_NewRef(a[4]));
    Py_XSETREF(py_park_current, Py_NewRef(a[5]));
    Py_XSETREF(py_globrunqget, Py_NewRef(a[6]));
    Py_XSETREF(PanicError, Py_NewRef(a[7]));
    Py_XSETREF(default_case, Py_NewRef(a[8]));
    Py_RETURN_NONE;
}
static PyObject *m_set_exiting(PyObject *m, PyObject *f) {
    if (f != Py_None) Py_XSETREF(py_freeze, Py_NewRef(f));
    atomic_store(&exiting, f != Py_None);
    Py_RETURN_NONE;
}
static PyObject *m_set_globrunq(PyObject *m, PyObject *q) {
    Py_XSETREF(glob_runq, q == Py_None ? NULL : Py_NewRef(q));
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"init", (PyCFunction)(void (*)(void))m_init, METH_VARARGS | METH_KEYWORDS, "register the Python side"},
    {"set_globrunq", (PyCFunction)m_set_globrunq, METH_O, "the global runqueue (for its emptiness hint)"},
    {"install_stack_cache", (PyCFunction)m_install_stack_cache, METH_O, "cache up to n greenlet data-stack chunks"},
    {"set_exiting", (PyCFunction)m_set_exiting, METH_O, "set_exiting(freeze_fn): workers call it at their next park; None: clear"},
    {"set_current_p", (PyCFunction)m_set_current_p, METH_O, "this worker thread drives P (None: none)"},
    {"runqput", (PyCFunction)(void (*)(void))m_runqput, METH_FASTCALL, "runqput(p, g, nxt) (owner)"},
    {"runqget", (PyCFunction)m_runqget, METH_O, "runqget(p) (owner) -> G or None"},
    {"next_local", (PyCFunction)m_next_local, METH_O, "next_local(p) (owner) -> G or None"},
    {"gopark", (PyCFunction)(void (*)(void))m_gopark, METH_FASTCALL, "gopark(g, reason)"},
    {"goready", (PyCFunction)m_goready, METH_O, "goready(g)"},
    {"getg", (PyCFunction)m_getg, METH_NOARGS, "the current G"},
    {"select", (PyCFunction)(void (*)(void))m_select, METH_FASTCALL, "Go's select"},
    {NULL}};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pygmp._hot",
    "The scheduler hot path in C (see csrc/hot.c).", -1, mod_methods};

PyMODINIT_FUNC PyInit__hot(void) {
    PyGreenlet_Import();
    if (!_PyGreenlet_API) return NULL;
    if (PyType_Ready(&LockType) < 0 || PyType_Ready(&GType) < 0 || PyType_Ready(&PType) < 0 ||
        PyType_Ready(&ChanType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return NULL
    INTERN(s_send, "send"); INTERN(s_recv, "recv"); INTERN(s_recv_, "recv_");
    INTERN(s_release, "release"); INTERN(s_acquire, "acquire"); INTERN(s_unpark, "unpark");
    INTERN(s_chan_send, "chan send"); INTERN(s_chan_recv, "chan receive");
    INTERN(s_select, "select"); INTERN(s_select_nocases, "select (no cases)");
    INTERN(s_send_nil, "chan send (nil chan)"); INTERN(s_recv_nil, "chan receive (nil chan)");
    tuple_none = PyTuple_Pack(1, Py_None);
    if (!tuple_none) return NULL;
    Py_INCREF(&LockType); PyModule_AddObject(m, "Lock", (PyObject *)&LockType);
    Py_INCREF(&GType); PyModule_AddObject(m, "GBase", (PyObject *)&GType);
    Py_INCREF(&PType); PyModule_AddObject(m, "PBase", (PyObject *)&PType);
    Py_INCREF(&ChanType); PyModule_AddObject(m, "ChanBase", (PyObject *)&ChanType);
    return m;
}
