/* The worker's schedule loop and its idle wait (Go's proc.go: schedule,
 * findRunnable, stealWork, wakep, resetspinning, globrunqget, runqputslow),
 * and the part of the global scheduler state (Go's schedt) they need.
 *
 * GIL rules (pygmp/HACKING.md "The worker loop and the GIL"):
 *  - The loop runs with the GIL, except inside park_c, which waits in the P's
 *    own poller with the GIL released and, when what woke it was only a spin
 *    wake-up (wakep) and no work is visible, goes back to sleep without ever
 *    taking the GIL: a worker with nothing to run never takes the GIL from one
 *    that has work.  Without the GIL it touches only C fields, under the
 *    sched lock or a P lock taken with plain PyThread_acquire_lock (never
 *    lk_acquire, which releases a GIL it does not hold), and never a refcount.
 *  - Non-blocking polls of a poller (np_wait with timeout 0) keep the GIL: a
 *    release there hands the GIL to any waiting thread, and the caller then
 *    waits up to the switch interval to get it back (HACKING.md, the tail
 *    latency finding).
 *  - No Python code runs under a runtime lock: deque append/popleft are
 *    called through vectorcall (no bound method is allocated, so no GC can
 *    run finalizers there), and callbacks run after unlocking.
 */
#include "runtime.h"
#include <math.h>

#define GLOBRUNQ_BATCH_MAX 128   /* Gs one globrunqget takes at most */
#define SLEEP_UNKNOWN (-1.0)

SchedObject *sched_c;

/* ------------------------------------------------------------ locks */

static inline void slock(SchedObject *s) { lk_acquire(s->lock->lk); s->lock->held = 1; }
static inline void sunlock(SchedObject *s) { s->lock->held = 0; lk_release(s->lock->lk); }
/* without the GIL: a plain blocking acquire (holders never wait for the GIL
   while they hold a runtime lock for C work; Python code holding sched.lock
   may, but then the thread with the GIL does not need this lock) */
static inline void lk_acquire_nogil(PyThread_type_lock lk) {   /* pairs with lk_release */
    PyThread_acquire_lock(lk, WAIT_LOCK);
    tls_nopreempt++;
}
static inline void slock_nogil(SchedObject *s) { lk_acquire_nogil(s->lock->lk); s->lock->held = 1; }
#define PLOCK_NOGIL(p) lk_acquire_nogil((p)->lock->lk); (p)->lock->held = 1

/* Copy the live Ps out under the sched lock (borrowed: every P stays alive in
   s->everp).  Returns the count; *out is PyMem_Raw memory the caller frees. */
static Py_ssize_t allp_snapshot(SchedObject *s, PObject ***out, int gil) {
    PObject **v = NULL;
    Py_ssize_t n;
    for (;;) {
        n = s->nallp;
        PyMem_RawFree(v);
        v = PyMem_RawMalloc(sizeof(PObject *) * (n ? n : 1));
        if (!v) { *out = NULL; return 0; }
        if (gil) slock(s); else slock_nogil(s);
        if (s->nallp <= n) break;
        sunlock(s);
    }
    n = s->nallp;
    memcpy(v, s->allpv, sizeof(PObject *) * n);
    sunlock(s);
    *out = v;
    return n;
}

/* pidle (caller holds the sched lock) */
static void pidle_push(SchedObject *s, PObject *p) {
    if (p->onidle) return;
    p->idlenext = s->pidle;
    s->pidle = p;
    p->onidle = 1;
    s->npidle++;
}
static PObject *pidle_pop(SchedObject *s) {
    PObject *p = s->pidle;
    if (!p) return NULL;
    s->pidle = p->idlenext;
    p->idlenext = NULL;
    p->onidle = 0;
    s->npidle--;
    return p;
}
static void pidle_remove(SchedObject *s, PObject *p) {
    if (!p->onidle) return;
    PObject **pp = &s->pidle;
    while (*pp && *pp != p) pp = &(*pp)->idlenext;
    if (*pp) { *pp = p->idlenext; s->npidle--; }
    p->idlenext = NULL;
    p->onidle = 0;
}

/* ------------------------------------------------------------ global queue */

/* Take a batch from the global queue: one to return (new ref), the rest to
 * p's runq.  NULL: empty (or an error if PyErr_Occurred()). */
PyObject *globrunqget(PObject *p, Py_ssize_t maxn) {
    SchedObject *s = sched_c;
    PyObject *batch[GLOBRUNQ_BATCH_MAX];
    Py_ssize_t k = 0;
    if (!s) return NULL;
    slock(s);
    Py_ssize_t n = Py_SIZE(s->runq);
    if (n > 0) {
        Py_ssize_t np = s->nallp > 0 ? s->nallp : 1;
        k = n / np + 1;
        if (k > n) k = n;
        if (k > GLOBRUNQ_BATCH_MAX) k = GLOBRUNQ_BATCH_MAX;
        if (maxn > 0 && k > maxn) k = maxn;
        for (Py_ssize_t i = 0; i < k; i++) {
            batch[i] = PyObject_CallMethodNoArgs(s->runq, s_popleft);
            if (!batch[i]) { k = i; break; }
        }
    }
    sunlock(s);
    if (k == 0) return NULL;
    if (k > 1) {
        PLOCK(p);
        for (Py_ssize_t i = 1; i < k; i++)
            if (rq_push(p, batch[i]) < 0) { PUNLOCK(p); for (; i < k; i++) Py_DECREF(batch[i]); Py_DECREF(batch[0]); return PyErr_NoMemory(); }
        PUNLOCK(p);
    }
    return batch[0];
}

/* Append Gs (a list) to the global queue. */
static int globrunqputbatch(PyObject *lst) {
    SchedObject *s = sched_c;
    if (!s || PyList_GET_SIZE(lst) == 0) return 0;
    int err = 0;
    slock(s);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lst); i++) {
        PyObject *r = PyObject_CallMethodOneArg(s->runq, s_append, PyList_GET_ITEM(lst, i));
        if (!r) { err = -1; break; }
        Py_DECREF(r);
    }
    sunlock(s);
    return err;
}

/* More than RUNQ_MOVABLE_MAX movable Gs in p's runq: half to the global queue. */
int runqputslow(PObject *p) {
    PyObject *batch = rq_take_movable(p, RUNQ_MOVABLE_MAX / 2, 0);
    if (!batch) return -1;
    int r = globrunqputbatch(batch);
    Py_DECREF(batch);
    return r;
}

/* ------------------------------------------------------------ spinning */

/* New movable work: wake one idle P to look for it, unless one already looks.
 * With the GIL. */
void wakep_c(void) {
    SchedObject *s = sched_c;
    if (!s || !s->npidle || s->nspinning) return;
    slock(s);
    if (!s->npidle || s->nspinning) { sunlock(s); return; }
    PObject *p = pidle_pop(s);
    p->spinning = 1;
    s->nspinning++;
    sunlock(s);
    if (parker_unpark_spin(p) < 0) PyErr_WriteUnraisable((PyObject *)p);
}

/* Work went to the global queue from a thread without a P: wake an idle P
 * only when no live P is running (one that runs will get to it, and sysmon
 * wakes a P for work that waits past its bound: on a GIL build a second P
 * running Python buys nothing and costs GIL hand-offs). */
void wakep_if_none_running(void) {
    SchedObject *s = sched_c;
    if (!s || !s->npidle || s->nspinning) return;
    slock(s);
    Py_ssize_t live = 0;
    for (Py_ssize_t i = 0; i < s->nallp; i++) live += !s->allpv[i]->draining;
    int none = s->npidle >= live;
    sunlock(s);
    if (none) wakep_c();
}

/* p found work while spinning: stop spinning, and if more may be waiting let
 * another idle P look (Go's resetspinning). */
static void resetspinning(PObject *p) {
    SchedObject *s = sched_c;
    slock(s);
    if (p->spinning) { p->spinning = 0; s->nspinning--; }
    int more = Py_SIZE(s->runq) > 0;
    sunlock(s);
    if (more) wakep_c();
}

/* A removed P gives away its movable Gs and then runs only its homed Gs. */
static int drain(PObject *p) {
    PyObject *moved = rq_take_movable(p, PY_SSIZE_T_MAX, 0);
    if (!moved) return -1;
    PyObject *nx = NULL;
    PLOCK(p);
    if (p->runnext != Py_None && G_CAST(p->runnext)->home == Py_None) {
        nx = p->runnext;
        p->runnext = Py_NewRef(Py_None);
    }
    PUNLOCK(p);
    if (nx) {
        int r = PyList_Append(moved, nx);
        Py_DECREF(nx);
        if (r < 0) { Py_DECREF(moved); return -1; }
    }
    int any = PyList_GET_SIZE(moved) > 0;
    int r = globrunqputbatch(moved);
    Py_DECREF(moved);
    if (any) wakep_c();
    return r;
}

/* ------------------------------------------------------------ stealing */

static inline double timer0_of(PObject *q) {   /* +inf: none; any thread, no lock */
    return atomic_load_explicit(&q->ts->timer0, memory_order_relaxed);
}

/* Look at every other P in a random order: run its due timers and take half
 * of its movable Gs (Go's stealWork).  (A running P's poller that nobody
 * polled for 10 ms is sysmon's to poll.)  New ref, or NULL. */
static PyObject *stealwork(PObject *p) {
    SchedObject *s = sched_c;
    PObject **v;
    Py_ssize_t n = allp_snapshot(s, &v, 1);
    if (!v) return PyErr_NoMemory();
    PyObject *got = NULL;
    if (n < 2 && timer0_of(p) == HUGE_VAL) goto done;
    double now = mono();
    Py_ssize_t start = n ? (Py_ssize_t)fastrandn((uint32_t)n) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PObject *q = v[(start + i) % n];
        if (q == p) continue;
        if (timer0_of(q) <= now) {
            runtimers_c(q, now);
            if (PyErr_Occurred()) goto done;
        }
        if (q->nmovable || (q->stuck && q->runnext != Py_None)) {
            PyObject *taken = rq_take_movable(q, -1, q->stuck);
            if (!taken) goto done;
            Py_ssize_t k = PyList_GET_SIZE(taken);
            if (k > 0) {
                p->stealcount += k;
                if (atomic_load_explicit(&trace_on, memory_order_relaxed))
                    trace_emit(TR_STEAL, p, 0, k, (PyObject *)q);
                got = Py_NewRef(PyList_GET_ITEM(taken, 0));
                if (k > 1) {
                    PLOCK(p);
                    for (Py_ssize_t j = 1; j < k; j++) {
                        PyObject *g = Py_NewRef(PyList_GET_ITEM(taken, j));
                        if (rq_push(p, g) < 0) { Py_DECREF(g); break; }
                    }
                    PUNLOCK(p);
                }
                Py_DECREF(taken);
                goto done;
            }
            Py_DECREF(taken);
        }
    }
    got = runqget_c(p);        /* other Ps' timers may have readied Gs homed here */
done:
    PyMem_RawFree(v);
    return got;
}

/* ------------------------------------------------------------ idle */

/* Work this idle P could take, seen without the GIL: its own queue, the
 * global queue, another P's movable Gs or a stuck P's runnext (hints read
 * without the victim's lock: stealing re-checks under it). */
static int work_visible_nogil(PObject *p) {
    SchedObject *s = sched_c;
    PLOCK_NOGIL(p);
    int mine = p->rqlen > 0 || p->runnext != Py_None;
    PUNLOCK(p);
    if (mine) return 1;
    if (p->draining) return 0;
    PObject **v;
    slock_nogil(s);
    int glob = Py_SIZE(s->runq) > 0;
    sunlock(s);
    if (glob) return 1;
    Py_ssize_t n = allp_snapshot(s, &v, 0);
    if (!v) return 1;        /* no memory: let the GIL path look */
    int any = 0;
    for (Py_ssize_t i = 0; i < n && !any; i++)   /* a stuck P's runnext may be stolen too */
        if (v[i] != p && (v[i]->nmovable || (v[i]->stuck && v[i]->runnext != Py_None))) any = 1;
    PyMem_RawFree(v);
    return any;
}

/* A spin wake-up found nothing: back on the idle list, not spinning (the
 * caller then looks again before sleeping: Go's "drop spinning, re-check"). */
static void reidle_nogil(PObject *p) {
    SchedObject *s = sched_c;
    slock_nogil(s);
    if (p->spinning) { p->spinning = 0; s->nspinning--; }
    if (!p->draining) pidle_push(s, p);
    sunlock(s);
}

/* The earliest timer of any P (+inf: none); any thread, no GIL. */
static double next_deadline_nogil(PObject *p) {
    PObject **v;
    Py_ssize_t n = allp_snapshot(sched_c, &v, 0);
    if (!v) return mono();     /* no memory: look now, with the GIL */
    double d = HUGE_VAL;
    for (Py_ssize_t i = 0; i < n; i++) {
        double t = timer0_of(v[i]);
        if (t < d) d = t;
    }
    PyMem_RawFree(v);
    return d;
}

static void publish_sleepuntil_nogil(PObject *p, double d) {
    PLOCK_NOGIL(p);
    p->sleepuntil = d;
    PUNLOCK(p);
}

/* The idle wait's decision, without the GIL, after a wait that ended with no
 * event (a wake-up, or its deadline): 1 to wait again (*until: the new
 * deadline, < 0 none), 0 to take the GIL and look.  Dropped without the GIL:
 * a spin wake-up (wakep) whose work is gone, a timer wake-up or deadline
 * whose timer moved or already ran, EINTR.  Any other unpark set WAKE_OTHER. */
static int idle_again(PObject *p, double *until) {
    int why = atomic_exchange(&p->wakewhy, 0);
    if (why & WAKE_OTHER) return 0;
    if (atomic_load(&exiting) || p->draining || work_visible_nogil(p)) return 0;
    /* the deadline: publish "unknown" first, then read the timers, then
       publish what was read (a timer added meanwhile sees "unknown" and
       wakes us: HACKING.md "Sleeping without losing a wake-up") */
    publish_sleepuntil_nogil(p, SLEEP_UNKNOWN);
    double d = next_deadline_nogil(p);
    if (d <= mono()) return 0;               /* a timer is due: fire it with the GIL */
    publish_sleepuntil_nogil(p, d);
    *until = d == HUGE_VAL ? -1.0 : d;
    if (p->spinning) {
        /* woken to spin, and the work is gone: idle again, look once more */
        reidle_nogil(p);
        if (work_visible_nogil(p)) return 0;
    }
    p->nfutile++;            /* owner-written; read by diagnostics */
    return 1;
}

/* Sleep until an unpark, an I/O event, or `timeout` seconds (< 0: none). */
static int park_c(PObject *p, double timeout) {
    p->nparks++;
    atomic_store(&p->wakewhy, 0);      /* reasons from before this wait are seen by its re-checks */
    int k = poller_idle_wait(p, timeout < 0 ? -1.0 : mono() + timeout, idle_again);
    if (k != -2) return k < 0 ? -1 : 0;
    if (p->parker == Py_None) return 0;
    PyObject *t = timeout < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(timeout);
    if (!t) return -1;
    PyObject *r = PyObject_CallMethodOneArg(p->parker, s_park, t);
    Py_DECREF(t);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static void set_sleepuntil(PObject *p, double d) {
    PLOCK(p);
    p->sleepuntil = d;
    PUNLOCK(p);
}

/* Publish "sleeping, deadline unknown", re-check, read every P's earliest
 * timer, publish it, then park until it (HACKING.md "Sleeping without losing
 * a wake-up"). */
static int idle_sleep(PObject *p, int alldead) {
    SchedObject *s = sched_c;
    int r = 0;
    PLOCK(p);
    int sleep = p->rqlen == 0 && p->runnext == Py_None;
    p->sleeping = (char)sleep;
    PUNLOCK(p);
    set_sleepuntil(p, SLEEP_UNKNOWN);
    PObject **v;
    Py_ssize_t n = allp_snapshot(s, &v, 1);
    if (!v) { r = -1; PyErr_NoMemory(); goto out; }
    if (sleep && !p->draining) {
        if (Py_SIZE(s->runq) > 0) sleep = 0;
        for (Py_ssize_t i = 0; i < n && sleep; i++)
            if (v[i] != p && v[i]->nmovable) sleep = 0;
    }
    if (sleep) {
        double deadline = HUGE_VAL;
        for (Py_ssize_t i = 0; i < n; i++) {
            double t = timer0_of(v[i]);
            if (t < deadline) deadline = t;
        }
        if (deadline == HUGE_VAL) {
            set_sleepuntil(p, HUGE_VAL);
            if (alldead && py_checkdead) {
                PyObject *c = PyObject_CallNoArgs(py_checkdead);   /* exits if dead */
                if (!c) r = -1;
                Py_XDECREF(c);
            }
            if (r == 0) r = park_c(p, -1);
        } else {
            set_sleepuntil(p, deadline);
            double now = mono(), t = deadline - now;
            if (t > 0) {
                r = park_c(p, t);
            } else {
                /* a timer is already due (another P's: ours ran in
                   next_local): fire it here rather than come round again
                   with the GIL held while its P is busy or draining */
                for (Py_ssize_t i = 0; i < n && r == 0; i++)
                    if (timer0_of(v[i]) <= now) {
                        runtimers_c(v[i], now);
                        if (PyErr_Occurred()) r = -1;
                    }
            }
        }
    }
    PyMem_RawFree(v);
out:
    PLOCK(p);
    p->sleeping = 0;
    PUNLOCK(p);
    set_sleepuntil(p, SLEEP_UNKNOWN);
    return r;
}

/* Nothing to run: publish idleness, re-check everything, sleep. */
static int idle(PObject *p) {
    SchedObject *s = sched_c;
    if (!p->ransinceidle && p->nparks) p->nemptywakes++;
    p->ransinceidle = 0;
    slock(s);
    if (Py_SIZE(s->runq) > 0 && !p->draining) { sunlock(s); return 0; }   /* go round again */
    if (p->spinning) { p->spinning = 0; s->nspinning--; }
    if (!p->draining) pidle_push(s, p);
    s->nidle++;
    int alldead = s->nidle == s->nallp;
    sunlock(s);
    int r = idle_sleep(p, alldead);
    slock(s);
    s->nidle--;
    pidle_remove(s, p);
    sunlock(s);
    return r;
}

/* ------------------------------------------------------------ the loop */

static int freeze_if_exiting(void) {
    if (atomic_load(&exiting) && py_freeze) {
        PyObject *r = PyObject_CallNoArgs(py_freeze);   /* does not return */
        Py_XDECREF(r);
        return -1;
    }
    return 0;
}

/* Find a G to run (Go's findRunnable); new ref.  NULL without an exception:
 * a draining P has run its last homed G and retires. */
static PyObject *findrunnable(PObject *p) {
    for (;;) {
        if (freeze_if_exiting() < 0) return NULL;
        if (p->draining) {
            if (p->spinning) resetspinning(p);
            if (drain(p) < 0) return NULL;
            if (p->nhomed == 0) return NULL;
        }
        PyObject *g = next_local_c(p);
        if (!g && PyErr_Occurred()) return NULL;
        if (g) {
            if (p->spinning) resetspinning(p);
            p->ransinceidle = 1;
            return g;
        }
        p->npolls++;
        int k = netpoll_p(p);           /* non-blocking, the GIL kept */
        if (k < 0) return NULL;
        if (k > 0) continue;
        if (!p->draining) {
            g = stealwork(p);
            if (!g && PyErr_Occurred()) return NULL;
            if (g) {
                if (p->spinning) resetspinning(p);
                p->ransinceidle = 1;
                return g;
            }
        }
        if (idle(p) < 0) return NULL;
    }
}

static int trace_pulse(void) {
    static PyObject *pulse;
    if (!pulse) {
        PyObject *mod = PyImport_ImportModule("pygmp.runtime.proc");
        if (!mod) return -1;
        pulse = PyObject_GetAttrString(mod, "_trace_pulse");
        Py_DECREF(mod);
        if (!pulse) return -1;
    }
    PyObject *r = PyObject_CallNoArgs(pulse);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* schedule(p): the worker loop, on p's g0 (the worker thread's scheduler
 * greenlet).  A G that switches back to g0 may hand over an unstarted G: new
 * greenlets are created only here, on g0's shallow stack. */
PyObject *m_schedule(PyObject *m, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &PType)) { PyErr_SetString(PyExc_TypeError, "schedule(p)"); return NULL; }
    PObject *p = P_CAST(arg);
    for (;;) {
        PyObject *g = findrunnable(p);
        if (!g) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        /* A line tracer that keeps a stack per greenlet (coverage.py with
           concurrency=greenlet) re-reads the current greenlet only at call
           and return events: give it one on g0 between two Gs, as the
           Python loop did, or the next G's first lines count against the
           previous G's file.  Only while a trace function is set. */
        if (PyThreadState_Get()->c_tracefunc && trace_pulse() < 0) { Py_DECREF(g); return NULL; }
        /* g0 runs g, and the unstarted Gs goroutines hand back to it (new
           greenlets are only ever created on g0's shallow stack: gbody.c) */
        PyObject *args[2] = {arg, g};
        PyObject *r = m_execute(NULL, args, 2);
        Py_DECREF(g);
        if (!r) return NULL;
        Py_DECREF(r);
    }
}

PyObject *m_wakep(PyObject *m, PyObject *u) {
    wakep_c();
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyObject *m_wakep_idle(PyObject *m, PyObject *u) {
    wakep_if_none_running();
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyObject *m_set_sched(PyObject *m, PyObject *s) {
    if (s != Py_None && !PyObject_TypeCheck(s, &SchedType)) { PyErr_SetString(PyExc_TypeError, "set_sched(Sched or None)"); return NULL; }
    SchedObject *old = sched_c;
    sched_c = s == Py_None ? NULL : (SchedObject *)Py_NewRef(s);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ SchedBase */

static PyObject *Sched_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    SchedObject *self = (SchedObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    self->lock = (LockObject *)Lock_new(&LockType, NULL, NULL);
    self->allp = PyList_New(0);
    self->everp = PyList_New(0);
    self->runq = Py_NewRef(Py_None);
    if (!self->lock || !self->allp || !self->everp) { Py_DECREF(self); return NULL; }
    return (PyObject *)self;
}
static int Sched_traverse(SchedObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->lock); Py_VISIT(self->runq); Py_VISIT(self->allp);
    Py_VISIT(self->everp);
    return 0;
}
static int Sched_clear(SchedObject *self) {
    Py_CLEAR(self->runq); Py_CLEAR(self->allp); Py_CLEAR(self->everp);
    return 0;
}
static void Sched_dealloc(SchedObject *self) {
    PyObject_GC_UnTrack(self);
    Sched_clear(self);
    Py_CLEAR(self->lock);
    PyMem_RawFree(self->allpv);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Sched_get_allp(SchedObject *s, void *c) { return Py_NewRef(s->allp); }
/* s.allp = list: the caller holds s.lock (copy-on-write: the list is never
   mutated after this).  Every P in it joins everp for good. */
static int Sched_set_allp(SchedObject *s, PyObject *v, void *c) {
    if (!v || !PyList_Check(v)) { PyErr_SetString(PyExc_TypeError, "allp must be a list"); return -1; }
    Py_ssize_t n = PyList_GET_SIZE(v);
    PObject **nv = PyMem_RawMalloc(sizeof(PObject *) * (n ? n : 1));
    if (!nv) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(v, i);
        if (!PyObject_TypeCheck(p, &PType)) { PyMem_RawFree(nv); PyErr_SetString(PyExc_TypeError, "allp: Ps only"); return -1; }
        int known = PySequence_Contains(s->everp, p);
        if (known < 0 || (!known && PyList_Append(s->everp, p) < 0)) { PyMem_RawFree(nv); return -1; }
        nv[i] = P_CAST(p);
    }
    PObject **old = s->allpv;
    s->allpv = nv;
    s->nallp = n;
    PyMem_RawFree(old);
    Py_SETREF(s->allp, Py_NewRef(v));
    return 0;
}
/* idle Ps, a list.  Takes no lock (callers may hold sched.lock; hold it for
   an exact answer): a walk racing with changes is bounded and sees each P at
   most once, and every P it can reach stays alive (everp). */
static PyObject *Sched_get_pidle(SchedObject *s, void *c) {
    PyObject *out = PyList_New(0);
    Py_ssize_t bound = s->nallp + 1;
    for (PObject *p = s->pidle; out && p && bound-- > 0; p = p->idlenext) {
        int dup = PySequence_Contains(out, (PyObject *)p);
        if (dup < 0 || (!dup && PyList_Append(out, (PyObject *)p) < 0)) Py_CLEAR(out);
    }
    return out;
}
static PyGetSetDef Sched_getset[] = {
    {"allp", (getter)Sched_get_allp, (setter)Sched_set_allp, "live Ps (copy-on-write; assign under sched.lock)", NULL},
    {"pidle", (getter)Sched_get_pidle, NULL, "idle Ps (a snapshot; exact under sched.lock)", NULL},
    {NULL}};

/* s.unidle_locked(p): p leaves the idle list and stops spinning (it retires
   or drains); the caller holds s.lock. */
static PyObject *Sched_unidle_locked(SchedObject *s, PyObject *p) {
    if (!PyObject_TypeCheck(p, &PType)) { PyErr_SetString(PyExc_TypeError, "unidle_locked(p)"); return NULL; }
    PObject *q = P_CAST(p);
    if (q->spinning) { q->spinning = 0; s->nspinning--; }
    pidle_remove(s, q);
    Py_RETURN_NONE;
}
/* s.runq_put(g): a movable G onto the global queue (takes s.lock). */
static PyObject *Sched_runq_put(SchedObject *s, PyObject *g) {
    slock(s);
    PyObject *r = PyObject_CallMethodOneArg(s->runq, s_append, g);
    sunlock(s);
    return r;
}
static PyObject *Sched_stats(SchedObject *s, PyObject *u) {
    PObject **v;
    Py_ssize_t n = allp_snapshot(s, &v, 1);
    if (!v) return PyErr_NoMemory();
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PObject *p = v[i];
        PyObject *d = Py_BuildValue("{sLsLsLsLsLsn}", "parks", p->nparks, "futile_nogil", p->nfutile,
                                    "empty_wakes", p->nemptywakes, "polls", p->npolls,
                                    "steals", p->stealcount, "homed", p->nhomed);
        if (!d || PyList_Append(out, d) < 0) Py_CLEAR(out);
        Py_XDECREF(d);
    }
    PyMem_RawFree(v);
    return out;
}
static PyMethodDef Sched_methods[] = {
    {"unidle_locked", (PyCFunction)Sched_unidle_locked, METH_O, "p leaves pidle and stops spinning (caller holds lock)"},
    {"runq_put", (PyCFunction)Sched_runq_put, METH_O, "append a movable G to the global queue"},
    {"p_stats", (PyCFunction)Sched_stats, METH_NOARGS, "per-P scheduler counters (diagnostics)"},
    {NULL}};
static PyMemberDef Sched_members[] = {
    {"lock", T_OBJECT, offsetof(SchedObject, lock), READONLY, "sched.lock"},
    {"runq", T_OBJECT, offsetof(SchedObject, runq), 0, "the global queue (a deque; mutate under lock)"},
    {"npidle", T_PYSSIZET, offsetof(SchedObject, npidle), READONLY, NULL},
    {"nspinning", T_PYSSIZET, offsetof(SchedObject, nspinning), READONLY, NULL},
    {"nidle", T_PYSSIZET, offsetof(SchedObject, nidle), READONLY, "Ps in their idle wait, draining ones too"},
    {NULL}};
PyTypeObject SchedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.SchedBase", .tp_basicsize = sizeof(SchedObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = Sched_new, .tp_dealloc = (destructor)Sched_dealloc,
    .tp_traverse = (traverseproc)Sched_traverse, .tp_clear = (inquiry)Sched_clear,
    .tp_members = Sched_members, .tp_methods = Sched_methods, .tp_getset = Sched_getset,
    .tp_doc = "C half of the scheduler's global state (see pygmp/runtime/proc.py Sched).",
};
