/* G and P (Go's runtime2.go), the P's runqueue ring and runnext, and the
 * scheduler's switch/park/ready (proc.go: runqput, runqget, gopark, goready). */
#include "runtime.h"

/* greenlet.h keeps its C-API table in a static: each file that switches
   greenlets imports it for itself (only this one does). */
int proc_import_greenlet(void) {
    PyGreenlet_Import();
    return _PyGreenlet_API ? 0 : -1;
}

/* ===================================================================== G */

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
    self->gsidx = -1;
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
    {"preempt", T_BOOL, offsetof(GObject, preempt), 0, NULL},
    {NULL}};
PyTypeObject GType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.G", .tp_basicsize = sizeof(GObject), .tp_repr = (reprfunc)G_repr,
    /* Not tracked by the cyclic GC: a live G is referenced by the runtime (it is
       never garbage), and a finished G drops every reference that could close a
       cycle (greenlet, function, arguments, context, sleep timer) when it dies
       (gbody.c gdestroy).  Spawning 100,000 goroutines ran ~3x faster without GC
       passes over their Gs.  Used as is, not subclassed: a Python subclass
       would be a heap type, and heap types are always GC-tracked. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = G_new, .tp_init = (initproc)G_init, .tp_dealloc = (destructor)G_dealloc,
    .tp_members = G_members, .tp_doc = "C half of a G (see pygmp/runtime/g.py).",
};

/* ===================================================================== P */

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
    self->parker = Py_NewRef(Py_None);
    self->sleepuntil = -1.0;
    self->ts = timers_alloc(self);
    if (!self->gfree) { Py_DECREF(self); return NULL; }
    if (!self->ts) { Py_DECREF(self); return PyErr_NoMemory(); }
    return (PyObject *)self;
}
static int P_traverse(PObject *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < self->rqlen; i++)
        Py_VISIT(self->rq[(self->rqhead + i) % self->rqcap]);
    Py_VISIT(self->runnext); Py_VISIT(self->curg); Py_VISIT(self->g0); Py_VISIT(self->gfree);
    Py_VISIT(self->parker);
    for (Py_ssize_t i = 0; i < self->ngs; i++) Py_VISIT(self->gs[i]);
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
    Py_CLEAR(self->parker);
    while (self->ngs) {
        PyObject *g = self->gs[--self->ngs];
        G_CAST(g)->gsidx = -1;
        Py_DECREF(g);
    }
    return 0;
}
static void P_dealloc(PObject *self) {
    PyObject_GC_UnTrack(self);
    pstate_free(self);
    P_clear(self);
    timers_release(self->ts);
    self->ts = NULL;
    PyMem_RawFree(self->gs);
    Py_CLEAR(self->lock);
    PyMem_RawFree(self->rq);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ring ops: caller holds p->lock->lk.  rq_push steals the reference. */
int rq_push(PObject *p, PyObject *g) {
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
PyObject *rq_pop(PObject *p) {   /* new reference, or NULL if empty */
    if (!p->rqlen) return NULL;
    PyObject *g = p->rq[p->rqhead];
    p->rqhead = (p->rqhead + 1) % p->rqcap;
    p->rqlen--;
    if (G_CAST(g)->home == Py_None) p->nmovable--;
    return g;
}

/* Take up to maxn movable Gs (maxn < 0: half of them, rounded up), and
 * runnext when `withnext`, it is movable and nothing else was taken. */
PyObject *rq_take_movable(PObject *p, Py_ssize_t maxn, int withnext) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    PyObject *overflow = NULL;
    PLOCK(p);
    if (maxn < 0) maxn = p->nmovable - p->nmovable / 2;
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
int put_remote(PObject *p, PyObject *g) {
    Py_INCREF(g);
    PLOCK(p);
    int r = rq_push(p, g);
    int sleeping = p->sleeping;
    PUNLOCK(p);
    if (r < 0) { Py_DECREF(g); PyErr_NoMemory(); return -1; }
    if (sleeping) return parker_unpark(p->parker);
    return 0;
}
static PyObject *P_rq_put_remote(PObject *p, PyObject *g) {
    if (put_remote(p, g) < 0) return NULL;
    Py_RETURN_NONE;
}
/* runqgrab: take half of the victim's movable Gs (rounded up, as Go's
 * n - n/2), oldest first; its movable runnext too while sysmon has marked it
 * stuck and nothing else was movable. */
static PyObject *P_rq_steal(PObject *p, PyObject *unused) {
    PyObject *out = rq_take_movable(p, -1, p->stuck);
    if (out && PyList_GET_SIZE(out) == 0) { Py_DECREF(out); Py_RETURN_NONE; }
    return out;
}
static PyObject *P_rq_grab_movable(PObject *p, PyObject *arg) {
    Py_ssize_t maxn = PyLong_AsSsize_t(arg);
    if (maxn == -1 && PyErr_Occurred()) return NULL;
    return rq_take_movable(p, maxn, 0);
}
/* A list of new references to the Gs of one of p's arrays (`len`, `at`),
 * copied under p->lock into raw memory and built after unlocking: creating a
 * GC-tracked object under a runtime lock could run a collection and with it
 * finalizers that take this lock again.  The caller need not hold the lock. */
PyObject *p_snapshot(PObject *p, Py_ssize_t (*len)(PObject *), PyObject *(*at)(PObject *, Py_ssize_t)) {
    PyObject **tmp = NULL;
    Py_ssize_t n;
    for (;;) {
        n = len(p);
        PyMem_RawFree(tmp);
        tmp = PyMem_RawMalloc(sizeof(PyObject *) * (n ? n : 1));
        if (!tmp) return PyErr_NoMemory();
        PLOCK(p);
        if (len(p) <= n) break;
        PUNLOCK(p);
    }
    n = len(p);
    for (Py_ssize_t i = 0; i < n; i++) tmp[i] = Py_NewRef(at(p, i));
    PUNLOCK(p);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (out) PyList_SET_ITEM(out, i, tmp[i]);
        else Py_DECREF(tmp[i]);
    }
    PyMem_RawFree(tmp);
    return out;
}
static Py_ssize_t rq_len_of(PObject *p) { return p->rqlen; }
static PyObject *rq_at(PObject *p, Py_ssize_t i) { return p->rq[(p->rqhead + i) % p->rqcap]; }
static PyObject *P_rq_snapshot(PObject *p, PyObject *u) { return p_snapshot(p, rq_len_of, rq_at); }
static PyMethodDef P_methods[] = {
    {"rq_len", (PyCFunction)P_rq_len, METH_NOARGS, "runq length (caller holds p.lock for a stable answer)"},
    {"rq_extend", (PyCFunction)P_rq_extend, METH_O, "append Gs at the tail (takes p.lock)"},
    {"rq_append", (PyCFunction)P_rq_append, METH_O, "append one G at the tail (takes p.lock)"},
    {"rq_put_remote", (PyCFunction)P_rq_put_remote, METH_O, "any thread: append and wake the P if it sleeps"},
    {"rq_steal", (PyCFunction)P_rq_steal, METH_NOARGS, "runqgrab: take half of the movable Gs (runnext too if stuck); None if none"},
    {"rq_grab_movable", (PyCFunction)P_rq_grab_movable, METH_O, "take up to n movable Gs"},
    {"rq_snapshot", (PyCFunction)P_rq_snapshot, METH_NOARGS, "list of the Gs in the runq"},
    {"gs_snapshot", (PyCFunction)P_gs_snapshot, METH_NOARGS, "list of the started Gs homed here (takes p.lock)"},
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
    {"g0", T_OBJECT, offsetof(PObject, g0), 0, NULL},
    {"gfree", T_OBJECT, offsetof(PObject, gfree), 0, NULL},
    {"parker", T_OBJECT, offsetof(PObject, parker), 0, NULL},
    {"sleepuntil", T_DOUBLE, offsetof(PObject, sleepuntil), READONLY,
     "idle until (monotonic): -1 not known yet, inf no timer (p.lock)"},
    {"lastpoll", T_DOUBLE, offsetof(PObject, lastpoll), 0, NULL},
    {"nhomed", T_PYSSIZET, offsetof(PObject, nhomed), 0, "started Gs homed here and not dead (owner)"},
    {"ngdelta", T_PYSSIZET, offsetof(PObject, ngdelta), 0, "goroutines created minus exited here (owner)"},
    /* sched.c */
    {"idle", T_BOOL, offsetof(PObject, onidle), READONLY, "on sched's idle list (sched.lock)"},
    {"spinning", T_BOOL, offsetof(PObject, spinning), READONLY, "looking for work (sched.lock)"},
    {"stealcount", T_LONGLONG, offsetof(PObject, stealcount), 0, "Gs this P stole"},
    {"nparks", T_LONGLONG, offsetof(PObject, nparks), READONLY, "idle waits"},
    {"nfutile", T_LONGLONG, offsetof(PObject, nfutile), READONLY,
     "wake-ups of the idle wait dropped without taking the GIL (a spin whose work was gone)"},
    {"nemptywakes", T_LONGLONG, offsetof(PObject, nemptywakes), READONLY,
     "idle waits that took the GIL and then ran nothing"},
    {"npolls", T_LONGLONG, offsetof(PObject, npolls), READONLY, "non-blocking polls of this P's poller by its worker"},
    {NULL}};
/* curg: every write starts a run slice (setcurg) */
static PyObject *P_get_curg(PObject *p, void *u) { return Py_NewRef(p->curg); }
static int P_set_curg(PObject *p, PyObject *g, void *u) {
    if (!g) { PyErr_SetString(PyExc_AttributeError, "cannot delete curg"); return -1; }
    if (g != Py_None && !PyObject_TypeCheck(g, &GType)) {
        PyErr_SetString(PyExc_TypeError, "curg must be a G or None");
        return -1;
    }
    setcurg(p, Py_NewRef(g));
    return 0;
}
static PyObject *P_get_runseq(PObject *p, void *u) {
    return PyLong_FromUnsignedLongLong(atomic_load_explicit(&p->runseq, memory_order_relaxed));
}
static PyGetSetDef P_getset[] = {
    {"timer0", (getter)P_get_timer0, NULL, "when this P's earliest timer fires (monotonic), or None", NULL},
    {"ntimers", (getter)P_get_ntimers, NULL, "pending timers in this P's heap", NULL},
    {"curg", (getter)P_get_curg, (setter)P_set_curg, "the G running on this P (None: the scheduler)", NULL},
    {"runseq", (getter)P_get_runseq, NULL, "run slices started on this P", NULL},
    {NULL}};
PyTypeObject PType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.PBase", .tp_basicsize = sizeof(PObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = P_new, .tp_dealloc = (destructor)P_dealloc,
    .tp_traverse = (traverseproc)P_traverse, .tp_clear = (inquiry)P_clear,
    .tp_members = P_members, .tp_methods = P_methods, .tp_getset = P_getset,
    .tp_doc = "C half of a P: lock, local runqueue ring, runnext (see pygmp/runtime/p.py).",
};

/* ============================================================ scheduling */

/* Owner-only put (runqput).  Steals nothing; INCREFs g. */
int runqput_c(PObject *p, PyObject *g, int nxt) {
    mark_ready(G_CAST(g));
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
    if (spill) return runqputslow(p);
    return 0;
}

/* Owner-only get (runqget, without the fairness tick).  New ref or NULL. */
PyObject *runqget_c(PObject *p) {
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

/* next_local: the next G this P can run without blocking or stealing (Go's
 * runqget plus findRunnable's first checks): every 61st tick one G from the
 * global queue (fairness); the P's own poller if it has not been looked at
 * for NETPOLL_BUSY_INTERVAL; due timers; runnext/the runq;
 * then a batch from the global queue.  New ref, or NULL (none, or an error if
 * PyErr_Occurred()). */
#define NETPOLL_BUSY_INTERVAL 0.002
PyObject *next_local_c(PObject *p) {
    int globwork = glob_runq && Py_SIZE(glob_runq) > 0 && !p->draining;   /* hint */
    if (((p->schedtick + 1) % FAIRNESS_TICKS) == 0) {
        p->schedtick++;
        if (globwork) {                /* fairness: the global queue is not starved */
            PyObject *g = globrunqget(p, 1);
            if (g) { p->streak = 0; return g; }
            if (PyErr_Occurred()) return NULL;
        }
    }
    /* a busy P looks at its own fds every few ms (a clock read per tick; the
       poll keeps the GIL: netpoll.c netpoll_p), well inside sysmon's 10 ms
       after which it would poll them from its own thread */
    double now = mono();
    if (now - p->lastpoll > NETPOLL_BUSY_INTERVAL) {
        p->npolls++;
        if (netpoll_p(p) < 0) return NULL;
    }
    double t0 = atomic_load_explicit(&p->ts->timer0, memory_order_relaxed);
    if (t0 < HUGE_VAL && t0 <= now) {
        runtimers_c(p, now);
        if (PyErr_Occurred()) return NULL;
    }
    PyObject *g = runqget_c(p);
    if (g || !glob_runq || Py_SIZE(glob_runq) == 0 || p->draining) return g;
    return globrunqget(p, 0);
}

/* Switch from the current G to nxt (a new reference, stolen; NULL: to g0).
 * Returns 0 when the current G is resumed, -1 with an exception set. */
int switchto_c(PObject *p, PyObject *nxt) {
    PyObject *r;
    if (nxt) {
        PyObject *glet = G_CAST(nxt)->glet;
        if (glet == Py_None && PyList_GET_SIZE(p->gfree) > 0) {
            Py_ssize_t n = PyList_GET_SIZE(p->gfree);
            glet = Py_NewRef(PyList_GET_ITEM(p->gfree, n - 1));
            if (PyList_SetSlice(p->gfree, n - 1, n, NULL) < 0) { Py_DECREF(glet); Py_DECREF(nxt); return -1; }
            int b = bind_c(p, G_CAST(nxt), glet);
            Py_DECREF(glet);
            if (b < 0) { Py_DECREF(nxt); return -1; }
            glet = G_CAST(nxt)->glet;
            /* a free greenlet waits for the G it is to run: pass it */
            setcurg(p, Py_NewRef(nxt));
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
            setcurg(p, nxt);   /* steals nxt */
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
        setcurg(p, Py_NewRef(Py_None));
        r = PyGreenlet_Switch((PyGreenlet *)p->g0, args, NULL);
        Py_DECREF(args);
    } else {
        setcurg(p, Py_NewRef(Py_None));
        r = PyGreenlet_Switch((PyGreenlet *)p->g0, tuple_none, NULL);
    }
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* gopark: the caller published a waiter and set status = Gwaiting. */
int gopark_c(GObject *g, PyObject *reason) {
    Py_SETREF(g->waitreason, Py_NewRef(reason));
    if (atomic_load_explicit(&trace_on, memory_order_relaxed))
        trace_emit(TR_PARK, g->locked ? NULL : P_CAST(g->home), g->goid, 0, reason);
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
    if (!nxt) {                       /* nothing local: this P's netpoller (netpoll.c) */
        int k = netpoll_p(p);
        if (k < 0) return -1;
        if (k > 0 && !(nxt = next_local_c(p)) && PyErr_Occurred()) return -1;
    }
    if (nxt == (PyObject *)g) {
        g->status = Grunning;
        if (g->readyat) latency_record(g);
        Py_DECREF(nxt);
        return 0;
    }
    Py_INCREF(p);
    int r = switchto_c(p, nxt);
    Py_DECREF(p);
    return r;
}

int goready_c(GObject *g) {
    g->status = Grunnable;
    mark_ready(g);
    if (atomic_load_explicit(&trace_on, memory_order_relaxed))
        trace_emit(TR_READY, tls_p ? P_CAST(tls_p) : NULL, g->goid, 0, NULL);
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
PyObject *getg_c(void) {
    PyObject *p = tls_p;
    if (p) return Py_NewRef(P_CAST(p)->curg);
    return PyObject_CallNoArgs(py_getg);
}

/* module-level wrappers */
PyObject *m_runqput(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "runqput(p, g, nxt)"); return NULL; }
    if (runqput_c(P_CAST(args[0]), args[1], PyObject_IsTrue(args[2])) < 0) return NULL;
    Py_RETURN_NONE;
}
PyObject *m_runqget(PyObject *m, PyObject *p) {
    PyObject *g = runqget_c(P_CAST(p));
    return g ? g : Py_NewRef(Py_None);
}
PyObject *m_next_local(PyObject *m, PyObject *p) {
    PyObject *g = next_local_c(P_CAST(p));
    if (!g && PyErr_Occurred()) return NULL;
    return g ? g : Py_NewRef(Py_None);
}
PyObject *m_gopark(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "gopark(g, reason)"); return NULL; }
    if (gopark_c(G_CAST(args[0]), args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}
PyObject *m_goready(PyObject *m, PyObject *g) {
    if (goready_c(G_CAST(g)) < 0) return NULL;
    Py_RETURN_NONE;
}
PyObject *m_getg(PyObject *m, PyObject *u) { return getg_c(); }
PyObject *m_switchto(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "switchto(p, nxt)"); return NULL; }
    PyObject *nxt = args[1] == Py_None ? NULL : Py_NewRef(args[1]);
    if (switchto_c(P_CAST(args[0]), nxt) < 0) return NULL;
    Py_RETURN_NONE;
}
PyObject *m_set_current_p(PyObject *m, PyObject *p) {
    tls_p = (p == Py_None) ? NULL : p;
    Py_RETURN_NONE;
}

