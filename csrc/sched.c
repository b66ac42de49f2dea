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
#include "netpoll.h"
#include <math.h>

#define GLOBRUNQ_BATCH_MAX 128   /* Gs one globrunqget takes at most */
#define NETPOLL_STALE 0.010      /* an awake idle P polls a running P's fds not polled for this long */
#define POLL_EVENTS 128          /* events one poll dispatches */
#define SLEEP_UNKNOWN (-1.0)

SchedObject *sched_c;
static int (*np_wait_p)(np_poller *, np_event *, int, int);
static int (*np_break_p)(np_poller *);
static PyObject *py_netpollready;   /* netfd.netpollready, imported at the first event */
static PyObject *py_runtimers;      /* timers.runtimers (until timers are in C) */

/* The runtime's clock, time.monotonic().  With the GIL. */
double pymono(void) {
#ifdef __linux__
    return mono();
#else
    static PyObject *py_monotonic;
    if (!py_monotonic) {
        PyObject *t = PyImport_ImportModule("time");
        if (!t) return 0.0;
        py_monotonic = PyObject_GetAttrString(t, "monotonic");
        Py_DECREF(t);
        if (!py_monotonic) return 0.0;
    }
    PyObject *r = PyObject_CallNoArgs(py_monotonic);
    double d = r ? PyFloat_AsDouble(r) : 0.0;
    Py_XDECREF(r);
    return d;
#endif
}

/* ------------------------------------------------------------ locks */

static inline void slock(SchedObject *s) { lk_acquire(s->lock->lk); s->lock->held = 1; }
static inline void sunlock(SchedObject *s) { s->lock->held = 0; lk_release(s->lock->lk); }
/* without the GIL: a plain blocking acquire (holders never wait for the GIL
   while they hold a runtime lock for C work; Python code holding sched.lock
   may, but then the thread with the GIL does not need this lock) */
static inline void slock_nogil(SchedObject *s) { PyThread_acquire_lock(s->lock->lk, WAIT_LOCK); s->lock->held = 1; }
#define PLOCK_NOGIL(p) PyThread_acquire_lock((p)->lock->lk, WAIT_LOCK); (p)->lock->held = 1

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

/* ------------------------------------------------------------ wake and poll */

/* Wake p's idle wait, or make its next one return at once (a wake-up is never
 * lost, only ever spurious).  Any thread; the GIL is needed only for a P
 * without a C poller (its Python parker is called). */
int unpark_c(PObject *p, int why) {
    if (!p->cpoll) {
        PyObject *parker = p->parker;
        if (parker == Py_None) return 0;
        PyObject *r = PyObject_CallMethodNoArgs(parker, s_unpark);
        if (!r) return -1;
        Py_DECREF(r);
        return 0;
    }
    atomic_fetch_or(&p->wakewhy, why);
    if (!atomic_exchange(&p->notified, 1)) {
        PyThread_acquire_lock(p->pollmu, WAIT_LOCK);
        if (p->cpoll) np_break_p(p->cpoll);
        PyThread_release_lock(p->pollmu);
    }
    return 0;
}

/* Hand np_wait's events to netfd (Python: pollDesc is not in C yet). */
static int dispatch(np_event *evs, int n) {
    if (!py_netpollready) {
        PyObject *mod = PyImport_ImportModule("pygmp.runtime.netfd");
        if (!mod) return -1;
        py_netpollready = PyObject_GetAttrString(mod, "netpollready");
        Py_DECREF(mod);
        if (!py_netpollready) return -1;
    }
    PyObject *lst = PyList_New(n);
    if (!lst) return -1;
    for (int i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(KOO)", (unsigned long long)evs[i].token,
                                    (evs[i].flags & NP_READ) ? Py_True : Py_False,
                                    (evs[i].flags & NP_WRITE) ? Py_True : Py_False);
        if (!t) { Py_DECREF(lst); return -1; }
        PyList_SET_ITEM(lst, i, t);
    }
    PyObject *r = PyObject_CallOneArg(py_netpollready, lst);
    Py_DECREF(lst);
    if (!r) return -1;
    long k = PyLong_AsLong(r);
    Py_DECREF(r);
    return (int)k;
}

/* Non-blocking poll of p's own poller by its owner, with the GIL kept.
 * Returns the Gs readied, or -1 with an exception. */
int netpoll_own(PObject *p) {
    if (!p->cpoll) {
        if (p->parker == Py_None) return 0;
        PyObject *r = PyObject_CallMethodNoArgs(p->parker, s_poll);
        if (!r) return -1;
        long k = PyLong_AsLong(r);
        Py_DECREF(r);
        return (int)k;
    }
    np_event evs[POLL_EVENTS];
    int n = np_wait_p(p->cpoll, evs, POLL_EVENTS, 0);
    p->lastpoll = pymono();
    p->npolls++;
    if (n <= 0) return 0;
    int k = dispatch(evs, n);
    if (k > 0) p->npollready += k;
    return k;
}

/* Poll another P's poller (it has not been polled for NETPOLL_STALE while it
 * runs): its waiters are readied onto their home P from here. */
static int netpoll_remote(PObject *q) {
    if (!q->cpoll) {
        if (q->parker == Py_None) return 0;
        PyObject *r = PyObject_CallMethodNoArgs(q->parker, s_poll);
        if (!r) return -1;
        long k = PyLong_AsLong(r);
        Py_DECREF(r);
        return (int)k;
    }
    np_event evs[POLL_EVENTS];
    int n = 0;
    if (!PyThread_acquire_lock(q->pollmu, NOWAIT_LOCK)) return 0;
    if (q->cpoll) {
        n = np_wait_p(q->cpoll, evs, POLL_EVENTS, 0);
        /* we may have consumed the owner's wake-up: post it again */
        if (atomic_load(&q->notified)) np_break_p(q->cpoll);
    }
    PyThread_release_lock(q->pollmu);
    q->lastpoll = pymono();
    if (n <= 0) return 0;
    return dispatch(evs, n);
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
    if (unpark_c(p, WAKE_SPIN) < 0) PyErr_WriteUnraisable((PyObject *)p);
    if (s->sysmonidle && s->sysmonwake) {
        PyObject *r = PyObject_CallMethodNoArgs(s->sysmonwake, s_set);
        if (!r) PyErr_WriteUnraisable(s->sysmonwake);
        Py_XDECREF(r);
    }
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

static int runtimers(PObject *q) {
    if (!py_runtimers) {
        PyObject *mod = PyImport_ImportModule("pygmp.runtime.timers");
        if (!mod) return -1;
        py_runtimers = PyObject_GetAttrString(mod, "runtimers");
        Py_DECREF(mod);
        if (!py_runtimers) return -1;
    }
    PyObject *r = PyObject_CallOneArg(py_runtimers, (PyObject *)q);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static int timer_due(PObject *q, double now) {
    PyObject *t0 = q->timer0;
    return t0 != Py_None && PyFloat_Check(t0) && PyFloat_AS_DOUBLE(t0) <= now;
}

/* Look at every other P in a random order: run its due timers, poll its
 * poller if it runs and has not polled for NETPOLL_STALE, and take half of
 * its movable Gs (Go's stealWork).  New ref, or NULL. */
static PyObject *stealwork(PObject *p) {
    SchedObject *s = sched_c;
    PObject **v;
    Py_ssize_t n = allp_snapshot(s, &v, 1);
    if (!v) return PyErr_NoMemory();
    PyObject *got = NULL;
    if (n < 2 && p->timer0 == Py_None) goto done;
    double now = pymono();
    Py_ssize_t start = n ? (Py_ssize_t)fastrandn((uint32_t)n) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PObject *q = v[(start + i) % n];
        if (q == p) continue;
        if (timer_due(q, now) && runtimers(q) < 0) goto done;
        if (!q->sleeping && now - q->lastpoll > NETPOLL_STALE) {
            int k = netpoll_remote(q);
            if (k < 0) goto done;
            if (k > 0) p->nremotepolls++;
        }
        if (q->nmovable || (q->stuck && q->runnext != Py_None)) {
            PyObject *taken = rq_take_movable(q, -1, q->stuck);
            if (!taken) goto done;
            Py_ssize_t k = PyList_GET_SIZE(taken);
            if (k > 0) {
                p->stealcount += k;
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
 * global queue, another P's movable Gs (a hint: stealing re-checks). */
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
    for (Py_ssize_t i = 0; i < n && !any; i++)
        if (v[i] != p && v[i]->nmovable) any = 1;
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

/* Sleep in p's poller until an unpark, an I/O event, or `timeout` seconds
 * (< 0: none).  The GIL is released for the whole wait and taken again only
 * to hand over events, or when the wake-up was for something other than a
 * spin (wakep) or a spin found work.  Returns -1 with an exception. */
static int park_c(PObject *p, double timeout) {
    p->nparks++;
    if (!p->cpoll) {
        if (p->parker == Py_None) return 0;
        PyObject *t = timeout < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(timeout);
        if (!t) return -1;
        PyObject *r = PyObject_CallMethodOneArg(p->parker, s_park, t);
        Py_DECREF(t);
        if (!r) return -1;
        Py_DECREF(r);
        return 0;
    }
    np_event evs[POLL_EVENTS];
    int n = 0;
    Py_BEGIN_ALLOW_THREADS
    double until = timeout < 0 ? -1.0 : mono() + timeout;
    for (;;) {
        int ms = -1;
        if (until >= 0) {
            double left = until - mono();
            ms = left <= 0 ? 0 : (int)ceil(left * 1000.0);
            if (left > 0 && ms < 1) ms = 1;
        }
        if (atomic_exchange(&p->notified, 0)) ms = 0;   /* a token is posted: just consume the break */
        n = np_wait_p(p->cpoll, evs, POLL_EVENTS, ms);
        if (n != 0) break;                               /* events (or an error: look with the GIL) */
        if (until >= 0 && mono() >= until) break;         /* a timer is due */
        int why = atomic_exchange(&p->wakewhy, 0);
        if (why != WAKE_SPIN) {
            if (why == 0 && ms == 0 && !atomic_load(&p->notified)) {
                /* consumed a stale break: nothing new; sleep on */
                continue;
            }
            break;           /* work readied here, a timer change, exit, resize, EINTR */
        }
        if (atomic_load(&exiting) || p->draining || work_visible_nogil(p)) break;
        /* woken to spin, and the work is gone: idle again, look once more */
        reidle_nogil(p);
        if (work_visible_nogil(p)) break;
        p->nfutile++;        /* owner-written; read by diagnostics */
    }
    Py_END_ALLOW_THREADS
    p->lastpoll = pymono();
    if (n < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (n > 0) {
        int k = dispatch(evs, n);
        if (k < 0) return -1;
        p->npollready += k;
    }
    return 0;
}

/* the earliest timer of any P (+inf: none); with the GIL */
static double next_deadline(PObject **v, Py_ssize_t n) {
    double d = INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = v[i]->timer0;
        if (t != Py_None && PyFloat_Check(t) && PyFloat_AS_DOUBLE(t) < d) d = PyFloat_AS_DOUBLE(t);
    }
    return d;
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
    p->sleepuntil = SLEEP_UNKNOWN;
    PUNLOCK(p);
    PObject **v;
    Py_ssize_t n = allp_snapshot(s, &v, 1);
    if (!v) { r = -1; PyErr_NoMemory(); goto out; }
    if (sleep && !p->draining) {
        if (Py_SIZE(s->runq) > 0) sleep = 0;
        for (Py_ssize_t i = 0; i < n && sleep; i++)
            if (v[i] != p && v[i]->nmovable) sleep = 0;
    }
    if (sleep) {
        double deadline = next_deadline(v, n);
        PLOCK(p);
        p->sleepuntil = deadline;
        PUNLOCK(p);
        if (isinf(deadline)) {
            if (alldead && py_checkdead) {
                PyObject *c = PyObject_CallNoArgs(py_checkdead);   /* exits if dead */
                if (!c) r = -1;
                Py_XDECREF(c);
            }
            if (r == 0) r = park_c(p, -1);
        } else {
            double now = pymono(), t = deadline - now;
            if (t > 0) {
                r = park_c(p, t);
            } else {
                /* a timer is already due (another P's: ours ran in
                   next_local): fire it here rather than come round again
                   with the GIL held while its P is busy or draining */
                for (Py_ssize_t i = 0; i < n && r == 0; i++)
                    if (timer_due(v[i], now)) r = runtimers(v[i]);
            }
        }
    }
    PyMem_RawFree(v);
out:
    PLOCK(p);
    p->sleeping = 0;
    p->sleepuntil = SLEEP_UNKNOWN;
    PUNLOCK(p);
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
        int k = netpoll_own(p);
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
        while (g != Py_None) {
            PyObject *glet = G_CAST(g)->glet;
            if (glet == Py_None) {
                glet = PyObject_CallFunctionObjArgs(py_glet_for, (PyObject *)p, g, NULL);
                if (!glet) { Py_DECREF(g); return NULL; }
            } else {
                Py_INCREF(glet);
            }
            Py_SETREF(p->curg, Py_NewRef(g));
            G_CAST(g)->status = Grunning;
            PyObject *args = PyTuple_Pack(1, g);
            Py_DECREF(g);
            if (!args) { Py_DECREF(glet); return NULL; }
            PyObject *r = glet_switch(glet, args);
            Py_DECREF(args);
            Py_DECREF(glet);
            if (!r) return NULL;
            g = r;           /* None, or an unstarted G handed to g0 */
        }
        Py_DECREF(g);
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

PyObject *m_unpark(PyObject *m, PyObject *p) {
    if (!PyObject_TypeCheck(p, &PType)) { PyErr_SetString(PyExc_TypeError, "unpark(p)"); return NULL; }
    if (unpark_c(P_CAST(p), WAKE_OTHER) < 0) return NULL;
    Py_RETURN_NONE;
}

PyObject *m_netpoll_poll(PyObject *m, PyObject *p) {
    if (!PyObject_TypeCheck(p, &PType)) { PyErr_SetString(PyExc_TypeError, "netpoll_poll(p)"); return NULL; }
    int k = netpoll_own(P_CAST(p));
    if (k < 0) return NULL;
    return PyLong_FromLong(k);
}

PyObject *m_set_sched(PyObject *m, PyObject *s) {
    if (s != Py_None && !PyObject_TypeCheck(s, &SchedType)) { PyErr_SetString(PyExc_TypeError, "set_sched(Sched or None)"); return NULL; }
    SchedObject *old = sched_c;
    sched_c = s == Py_None ? NULL : (SchedObject *)Py_NewRef(s);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

PyObject *m_netpoll_setup(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "netpoll_setup(np_wait, np_break)"); return NULL; }
    void *w = PyLong_AsVoidPtr(args[0]), *b = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred()) return NULL;
    np_wait_p = (int (*)(np_poller *, np_event *, int, int))w;
    np_break_p = (int (*)(np_poller *))b;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ P methods */

/* p.set_cpoll(addr): the worker's idle wait and polls use this np_poller
 * directly (0: none, back to the Python parker).  Clearing waits for wakers
 * and remote pollers to let go of the old one. */
PyObject *P_set_cpoll(PObject *p, PyObject *arg) {
    void *np = PyLong_AsVoidPtr(arg);
    if (PyErr_Occurred()) return NULL;
    if (np && !np_wait_p) { PyErr_SetString(PyExc_RuntimeError, "netpoll_setup() first"); return NULL; }
    if (!PyThread_acquire_lock(p->pollmu, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(p->pollmu, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    p->cpoll = np;
    PyThread_release_lock(p->pollmu);
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
    self->sysmonwake = Py_NewRef(Py_None);
    if (!self->lock || !self->allp || !self->everp) { Py_DECREF(self); return NULL; }
    return (PyObject *)self;
}
static int Sched_traverse(SchedObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->lock); Py_VISIT(self->runq); Py_VISIT(self->allp);
    Py_VISIT(self->everp); Py_VISIT(self->sysmonwake);
    return 0;
}
static int Sched_clear(SchedObject *self) {
    Py_CLEAR(self->runq); Py_CLEAR(self->allp); Py_CLEAR(self->everp); Py_CLEAR(self->sysmonwake);
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
/* idle Ps, a list (takes s.lock: not with it held) */
static PyObject *Sched_get_pidle(SchedObject *s, void *c) {
    PObject *buf[64];
    PObject **v = buf;
    Py_ssize_t n;
    slock(s);
    n = s->npidle;
    if (n > 64) v = PyMem_RawMalloc(sizeof(PObject *) * n);
    Py_ssize_t k = 0;
    if (v) for (PObject *p = s->pidle; p && k < n; p = p->idlenext) v[k++] = p;
    sunlock(s);
    if (!v) return PyErr_NoMemory();
    PyObject *out = PyList_New(k);
    for (Py_ssize_t i = 0; out && i < k; i++) PyList_SET_ITEM(out, i, Py_NewRef((PyObject *)v[i]));
    if (v != buf) PyMem_RawFree(v);
    return out;
}
static PyGetSetDef Sched_getset[] = {
    {"allp", (getter)Sched_get_allp, (setter)Sched_set_allp, "live Ps (copy-on-write; assign under sched.lock)", NULL},
    {"pidle", (getter)Sched_get_pidle, NULL, "idle Ps (a snapshot; takes sched.lock)", NULL},
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
        PyObject *d = Py_BuildValue("{sLsLsLsLsLsLsLsn}", "parks", p->nparks, "futile_nogil", p->nfutile,
                                    "empty_wakes", p->nemptywakes, "polls", p->npolls,
                                    "poll_readied", p->npollready, "remote_polls", p->nremotepolls,
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
    {"sysmonidle", T_BOOL, offsetof(SchedObject, sysmonidle), 0, "sysmon is in its deep sleep (hint)"},
    {"sysmonwake", T_OBJECT, offsetof(SchedObject, sysmonwake), 0, NULL},
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
