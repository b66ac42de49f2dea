/* Timers (Go's time.go, runtime half): a 4-ary min-heap of timers per P,
 * timer objects, firing, and sleep.
 *
 * A timer is armed on the adder's P (a thread with no P picks one by its
 * thread id) and stays in that P's heap until it runs or the P retires
 * (movetimers).  Each timer is in at most one heap, once, at t->idx.
 *   - add on a timer already in a heap modifies its entry in place (sift up or
 *     down); otherwise it is pushed on the picked P's heap;
 *   - delete is lazy (Go's zombies): the timer is marked not pending and left
 *     in the heap; zombies are dropped when they reach the head, and the heap
 *     is compacted when they are more than a quarter of it;
 *   - runtimers pops the due head (re-sifts it when periodic) and fires it
 *     after the heap lock is released.
 * Invariants: see runtime.h and pygmp/HACKING.md "Timers".
 */
#include "runtime.h"
#include <math.h>
#include <pthread.h>
#include <sched.h>

#define FIRE_BATCH 64         /* due timers taken per heap-lock hold */
#define COMPACT_MIN 16        /* heaps smaller than this are never compacted */

/* rarely taken global spin locks: the timers free list and the allp snapshot */
static atomic_flag tsfree_lk = ATOMIC_FLAG_INIT, allp_lk = ATOMIC_FLAG_INIT;
static timers *tsfree;
static PyObject *allp_tuple;  /* tuple of the live Ps (proc.py sets it on every change) */
static PyObject *s_sleep;

static inline void spin_lock(atomic_flag *f) {
    while (atomic_flag_test_and_set_explicit(f, memory_order_acquire)) sched_yield();
}
static inline void spin_unlock(atomic_flag *f) { atomic_flag_clear_explicit(f, memory_order_release); }

static PyObject *time_module, *s_time;

/* The value a channel timer sends: now(), i.e. time.time() looked up at each
 * firing as pygmp.time.now() does (a builtin: no Python code runs, unless the
 * program replaced it).  Called before any lock is taken. */
static PyObject *now_value(void) {
    PyObject *f = PyObject_GetAttr(time_module, s_time);
    PyObject *v = f ? PyObject_CallNoArgs(f) : NULL;
    Py_XDECREF(f);
    if (!v) {
        PyErr_WriteUnraisable(time_module);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    }
    return v;
}

/* ------------------------------------------------------------ deferred DECREFs */

/* References dropped under ts->mu are collected here and released after. */
typedef struct { PyObject **v; Py_ssize_t n, cap; PyObject *inl[8]; } reflist;
static void rl_init(reflist *rl) { rl->v = rl->inl; rl->n = 0; rl->cap = 8; }
static void rl_add(reflist *rl, PyObject *o) {
    if (rl->n == rl->cap) {
        Py_ssize_t ncap = rl->cap * 2;
        PyObject **nv = PyMem_RawMalloc(sizeof(PyObject *) * ncap);
        if (!nv) { Py_INCREF(o); return; }   /* out of memory: leak rather than DECREF here */
        memcpy(nv, rl->v, sizeof(PyObject *) * rl->n);
        if (rl->v != rl->inl) PyMem_RawFree(rl->v);
        rl->v = nv; rl->cap = ncap;
    }
    rl->v[rl->n++] = o;
}
static void rl_drop(reflist *rl) {
    for (Py_ssize_t i = 0; i < rl->n; i++) Py_DECREF(rl->v[i]);
    if (rl->v != rl->inl) PyMem_RawFree(rl->v);
    rl_init(rl);
}

/* ------------------------------------------------------------ the heap (caller holds ts->mu) */

static inline void tset(timers *ts, Py_ssize_t i, timerwhen e) { ts->heap[i] = e; e.t->idx = i; }

static void siftup(timers *ts, Py_ssize_t i) {
    timerwhen e = ts->heap[i];
    while (i > 0) {
        Py_ssize_t up = (i - 1) / 4;
        if (!(e.when < ts->heap[up].when)) break;
        tset(ts, i, ts->heap[up]);
        i = up;
    }
    tset(ts, i, e);
}

static void siftdown(timers *ts, Py_ssize_t i) {
    timerwhen e = ts->heap[i];
    Py_ssize_t n = ts->len;
    for (;;) {
        Py_ssize_t c = 4 * i + 1, m = c;
        if (c >= n) break;
        double w = ts->heap[c].when;
        for (Py_ssize_t k = c + 1; k < c + 4 && k < n; k++)
            if (ts->heap[k].when < w) { w = ts->heap[k].when; m = k; }
        if (!(w < e.when)) break;
        tset(ts, i, ts->heap[m]);
        i = m;
    }
    tset(ts, i, e);
}

/* Remove the head; the heap's reference to it passes to the caller. */
static TimerObject *pophead(timers *ts) {
    TimerObject *t = ts->heap[0].t;
    ts->len--;
    if (ts->len > 0) {
        tset(ts, 0, ts->heap[ts->len]);
        siftdown(ts, 0);
    }
    atomic_store(&t->ts, NULL);
    return t;
}

/* Drop zombies from the head, so heap[0] is pending (or the heap empty). */
static void cleanhead(timers *ts, reflist *rl) {
    while (ts->len && !ts->heap[0].t->pending) {
        rl_add(rl, (PyObject *)pophead(ts));
        ts->zombies--;
    }
}

/* Rebuild without zombies (Go: when they are over a quarter of the heap). */
static void compact(timers *ts, reflist *rl) {
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < ts->len; i++) {
        TimerObject *t = ts->heap[i].t;
        if (t->pending) {
            tset(ts, j++, ts->heap[i]);
        } else {
            atomic_store(&t->ts, NULL);
            rl_add(rl, (PyObject *)t);
        }
    }
    ts->len = j;
    ts->zombies = 0;
    for (Py_ssize_t i = (j - 2) / 4; j > 1 && i >= 0; i--) siftdown(ts, i);
}

static inline void upd0(timers *ts) {
    atomic_store(&ts->timer0, ts->len ? ts->heap[0].when : INFINITY);
}

static int heap_grow(timers *ts) {
    if (ts->len < ts->cap) return 0;
    Py_ssize_t ncap = ts->cap ? ts->cap * 2 : 64;
    timerwhen *nh = PyMem_RawRealloc(ts->heap, sizeof(timerwhen) * ncap);
    if (!nh) return -1;
    ts->heap = nh;
    ts->cap = ncap;
    return 0;
}

/* ------------------------------------------------------------ per-P timers */

timers *timers_alloc(PObject *p) {
    spin_lock(&tsfree_lk);
    timers *ts = tsfree;
    if (ts) tsfree = ts->nextfree;
    spin_unlock(&tsfree_lk);
    if (!ts) {
        ts = PyMem_RawCalloc(1, sizeof(timers));
        if (!ts) return NULL;
        ts->mu = PyThread_allocate_lock();
        if (!ts->mu) { PyMem_RawFree(ts); return NULL; }
    }
    lk_acquire(ts->mu);   /* a recycled one may still be locked by a thread that read a stale t->ts */
    ts->p = p;
    ts->dead = 0;
    ts->len = ts->zombies = 0;
    ts->nextfree = NULL;
    atomic_store(&ts->timer0, INFINITY);
    lk_release(ts->mu);
    return ts;
}

void timers_release(timers *ts) {
    if (!ts) return;
    reflist rl;
    rl_init(&rl);
    lk_acquire(ts->mu);
    ts->dead = 1;
    ts->p = NULL;
    for (Py_ssize_t i = 0; i < ts->len; i++) {
        TimerObject *t = ts->heap[i].t;
        atomic_store(&t->ts, NULL);
        t->pending = 0;
        rl_add(&rl, (PyObject *)t);
    }
    ts->len = ts->zombies = 0;
    atomic_store(&ts->timer0, INFINITY);
    lk_release(ts->mu);
    rl_drop(&rl);
    spin_lock(&tsfree_lk);
    ts->nextfree = tsfree;
    tsfree = ts;
    spin_unlock(&tsfree_lk);
}

PyObject *P_get_timer0(PObject *p, void *u) {
    double t0 = p->ts ? atomic_load(&p->ts->timer0) : INFINITY;
    if (isinf(t0)) Py_RETURN_NONE;
    return PyFloat_FromDouble(t0);
}
PyObject *P_get_ntimers(PObject *p, void *u) {
    timers *ts = p->ts;
    if (!ts) return PyLong_FromLong(0);
    lk_acquire(ts->mu);
    Py_ssize_t n = ts->len - ts->zombies;
    lk_release(ts->mu);
    return PyLong_FromSsize_t(n);
}

/* ------------------------------------------------------------ which P, and waking it */

PyObject *m_set_allp(PyObject *m, PyObject *allp) {
    PyObject *t = PySequence_Tuple(allp);
    if (!t) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++)
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(t, i), &PType)) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "set_allp: Ps only");
            return NULL;
        }
    spin_lock(&allp_lk);
    PyObject *old = allp_tuple;
    allp_tuple = t;
    spin_unlock(&allp_lk);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *get_allp(void) {   /* new ref, never NULL */
    spin_lock(&allp_lk);
    PyObject *a = allp_tuple;
    Py_XINCREF(a);
    spin_unlock(&allp_lk);
    return a ? a : PyTuple_New(0);
}

/* A thread with no P arming the process's first timer starts the runtime
 * (proc.start, through getg): done before any lock is taken. */
static int ensure_started(void) {
    if (tls_p) return 0;
    spin_lock(&allp_lk);
    int empty = !allp_tuple || PyTuple_GET_SIZE(allp_tuple) == 0;
    spin_unlock(&allp_lk);
    if (!empty) return 0;
    PyObject *g = getg_c();
    if (!g) return -1;
    Py_DECREF(g);
    return 0;
}

/* The P a new timer goes on (new ref): the caller's own P, else (a thread
 * with no P, or a draining P) a live P chosen by thread id. */
static PObject *pick_p(void) {
    PObject *me = P_CAST(tls_p);
    if (me && !me->draining) return (PObject *)Py_NewRef(me);
    PyObject *a = get_allp();
    if (!a) return NULL;
    if (PyTuple_GET_SIZE(a) == 0 && !me) {   /* runtime not started: getg starts it */
        Py_DECREF(a);
        PyObject *g = getg_c();
        if (!g) return NULL;
        Py_DECREF(g);
        a = get_allp();
        if (!a) return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(a), nlive = 0;
    for (Py_ssize_t i = 0; i < n; i++) nlive += !P_CAST(PyTuple_GET_ITEM(a, i))->draining;
    PObject *p = me;
    if (n) {
        /* thread ids are aligned addresses: mix them before taking the modulo */
        uint64_t k = (uint64_t)PyThread_get_thread_ident() * 0x9E3779B97F4A7C15ull;
        Py_ssize_t want = (Py_ssize_t)((k >> 32) % (uint64_t)(nlive ? nlive : n));
        for (Py_ssize_t i = 0; i < n; i++) {
            PObject *q = P_CAST(PyTuple_GET_ITEM(a, i));
            if (nlive && q->draining) continue;
            if (want-- == 0) { p = q; break; }
        }
    }
    Py_XINCREF(p);
    Py_DECREF(a);
    if (!p) PyErr_SetString(PyExc_RuntimeError, "pygmp: no P to put a timer on");
    return p;
}

/* Caller holds q->lock: q sleeps past `when` (or with no known deadline). */
static int sleeps_past(PObject *q, double when) {
    if (!q->sleeping) return 0;
    double d = q->sleepuntil;                  /* +inf: no deadline */
    return d < 0 || d > when;                  /* < 0: not known yet */
}

/* WAKE_TIMER: the idle wait re-reads every timer0 without the GIL (sched.c) */
static int unpark(PObject *q) {
    return parker_unpark_timer(q);
}

/* A new earliest timer on p: make sure some worker wakes by `when` (HACKING.md
 * "Sleeping without losing a wake-up").  Wake p if it sleeps past it;
 * otherwise (p running: it checks its timers unless it blocks) wake one
 * sleeping P whose sleep would overshoot. */
static int wake_for_timer(PObject *p, double when) {
    if ((PyObject *)p != tls_p) {
        PLOCK(p);
        int late = sleeps_past(p, when);
        PUNLOCK(p);
        if (late) return unpark(p);
    }
    PyObject *a = get_allp();
    if (!a) return -1;
    int r = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(a); i++) {
        PObject *q = P_CAST(PyTuple_GET_ITEM(a, i));
        if (q == p) continue;
        PLOCK(q);
        int sleeping = q->sleeping, late = sleeps_past(q, when);
        PUNLOCK(q);
        if (!sleeping) continue;
        if (late) r = unpark(q);
        break;
    }
    Py_DECREF(a);
    return r;
}

/* ------------------------------------------------------------ add, delete */

/* Arm t at `when` (every `period` if > 0) on `onp` (NULL: pick_p).  Sets
 * *wake (new ref) to the P to pass to wake_for_timer when t became its
 * earliest timer.  Caller holds t->sendlock for a chan timer. */
static int timer_add_nowake(TimerObject *t, double when, double period, PObject *onp, PObject **wake) {
    *wake = NULL;
    if (isnan(when) || isnan(period) || period < 0 || isinf(period)) {
        PyErr_SetString(PyExc_ValueError, "timer: bad when or period");
        return -1;
    }
    reflist rl;
    rl_init(&rl);
    timers *ts = atomic_load(&t->ts);
    for (;;) {
        PObject *p = NULL;
        if (!ts) {
            p = onp ? (PObject *)Py_NewRef(onp) : pick_p();
            if (!p) return -1;
            ts = p->ts;
        }
        lk_acquire(ts->mu);
        if (p && ts->dead) {   /* retired under us: pick again */
            lk_release(ts->mu);
            Py_DECREF(p);
            ts = NULL;
            if (onp) { PyErr_SetString(PyExc_RuntimeError, "timer: P retired"); return -1; }
            continue;
        }
        if (!p && atomic_load(&t->ts) != ts) {   /* moved or run meanwhile */
            lk_release(ts->mu);
            ts = atomic_load(&t->ts);
            continue;
        }
        double old0 = atomic_load(&ts->timer0);
        if (p) {   /* not in a heap: push */
            if (heap_grow(ts) < 0) { lk_release(ts->mu); Py_DECREF(p); PyErr_NoMemory(); return -1; }
            Py_INCREF(t);
            ts->heap[ts->len].when = when;
            ts->heap[ts->len].t = t;
            t->idx = ts->len++;
            atomic_store(&t->ts, ts);
            t->pending = 1;
            t->seq++;
            t->when = when;
            t->period = period;
            siftup(ts, t->idx);
        } else {   /* in this heap (maybe a zombie): modify in place */
            if (!t->pending) { t->pending = 1; ts->zombies--; }
            t->seq++;
            t->when = when;
            t->period = period;
            double old = ts->heap[t->idx].when;
            ts->heap[t->idx].when = when;
            if (when < old) siftup(ts, t->idx); else siftdown(ts, t->idx);
            cleanhead(ts, &rl);
        }
        upd0(ts);
        if (ts->heap[0].t == t && when < old0 && ts->p) *wake = (PObject *)Py_NewRef(ts->p);
        lk_release(ts->mu);
        Py_XDECREF(p);
        rl_drop(&rl);
        return 0;
    }
}

/* The timer is armed whatever happens here: a failed wake-up is reported,
 * not raised (the caller would think the timer unarmed). */
static void finish_wake(PObject *wake, double when) {
    if (!wake) return;
    if (wake_for_timer(wake, when) < 0) PyErr_WriteUnraisable((PyObject *)wake);
    Py_DECREF(wake);
}

int timer_add(TimerObject *t, double when, double period) {
    PObject *wake;
    if (timer_add_nowake(t, when, period, NULL, &wake) < 0) return -1;
    finish_wake(wake, when);
    return 0;
}

/* Disarm: 1 if t was pending.  bump: bump seq even if it was not (a chan
 * timer's stop/reset, under its sendlock). */
static int timer_del_(TimerObject *t, int bump) {
    reflist rl;
    rl_init(&rl);
    timers *ts = atomic_load(&t->ts);
    for (;;) {
        if (!ts) {   /* in no heap: only its owner (us) touches it */
            if (bump) t->seq++;
            return 0;
        }
        lk_acquire(ts->mu);
        if (atomic_load(&t->ts) != ts) {
            lk_release(ts->mu);
            ts = atomic_load(&t->ts);
            continue;
        }
        int pending = t->pending;
        if (pending) {
            t->pending = 0;
            ts->zombies++;
            t->seq++;
            if (t->idx == 0) cleanhead(ts, &rl);
            else if (ts->len >= COMPACT_MIN && ts->zombies * 4 > ts->len) compact(ts, &rl);
            upd0(ts);
        } else if (bump) {
            t->seq++;
        }
        lk_release(ts->mu);
        rl_drop(&rl);
        return pending;
    }
}

int timer_del(TimerObject *t) { return timer_del_(t, 0); }

/* Go 1.23 stop/reset of a chan timer: under its sendlock, bump seq (an
 * in-flight send is then dropped), count a popped-but-unsent value as
 * pending, drain the channel, and (add) re-arm. */
static int chan_modify(TimerObject *t, int add, double when, double period) {
    PObject *wake = NULL;
    if (add && ensure_started() < 0) return -1;
    lk_acquire(t->sendlock);
    int pending = timer_del_(t, 1);
    if (atomic_load(&t->sending) > 0) pending = 1;
    if (chan_drain_c(C_CAST(t->arg))) pending = 1;
    int r = add ? timer_add_nowake(t, when, period, NULL, &wake) : 0;
    lk_release(t->sendlock);
    if (r < 0) return -1;
    finish_wake(wake, when);
    return pending;
}

/* ------------------------------------------------------------ running timers */

static void timer_fire(TimerObject *t, long long seq) {
    switch (t->kind) {
    case TK_GOREADY:
        if (goready_c(G_CAST(t->arg)) < 0) PyErr_WriteUnraisable((PyObject *)t);
        break;
    case TK_PY: {
        PyObject *s = PyLong_FromLongLong(seq);
        PyObject *r = s ? PyObject_CallFunctionObjArgs(t->f, t->arg, s, NULL) : NULL;
        Py_XDECREF(s);
        if (!r) PyErr_WriteUnraisable(t->f);
        Py_XDECREF(r);
        break;
    }
    case TK_CHAN: {
        PyObject *v = now_value();
        lk_acquire(t->sendlock);
        if (t->period == 0) atomic_fetch_sub(&t->sending, 1);
        /* send only if not stopped or reset since it was popped */
        if (t->seq == seq && (!v || chan_trysend_c(C_CAST(t->arg), v) < 0))
            PyErr_WriteUnraisable((PyObject *)t);
        lk_release(t->sendlock);
        Py_XDECREF(v);
        break;
    }
    case TK_C:
        t->cfire(t, t->carg, seq);
        break;
    }
}

/* Fire p's timers due at `now`, from any thread: pop under the heap lock,
 * fire after releasing it, FIRE_BATCH at a time. */
Py_ssize_t runtimers_c(PObject *p, double now) {
    timers *ts = p->ts;
    Py_ssize_t total = 0;
    struct { TimerObject *t; long long seq; } fire[FIRE_BATCH];
    while (ts && atomic_load(&ts->timer0) <= now) {
        int nf = 0;
        reflist rl;
        rl_init(&rl);
        lk_acquire(ts->mu);
        while (ts->len && ts->heap[0].when <= now && nf < FIRE_BATCH) {
            TimerObject *t = ts->heap[0].t;   /* pending: the head is never a zombie */
            fire[nf].t = t;
            fire[nf].seq = t->seq;
            nf++;
            if (t->period > 0) {
                double nxt = t->when + t->period;
                if (nxt <= now)   /* fell behind: skip the missed periods (tickers drop ticks) */
                    nxt = now + t->period - fmod(now - t->when, t->period);
                t->when = ts->heap[0].when = nxt;
                siftdown(ts, 0);
                Py_INCREF(t);
            } else {
                pophead(ts);   /* its heap reference passes to fire[] */
                t->pending = 0;
                if (t->kind == TK_CHAN) atomic_fetch_add(&t->sending, 1);
            }
            cleanhead(ts, &rl);
        }
        upd0(ts);
        lk_release(ts->mu);
        rl_drop(&rl);
        for (int i = 0; i < nf; i++) {
            timer_fire(fire[i].t, fire[i].seq);
            Py_DECREF(fire[i].t);
        }
        total += nf;
        if (nf < FIRE_BATCH) break;
    }
    return total;
}

/* A retiring P hands its timers to dst (Go's moveTimers).  Holds p's heap
 * lock, then dst's: only this nests two heap locks, and dst is never
 * retiring, so there is no cycle. */
static int movetimers_c(PObject *p, PObject *dst) {
    timers *ts = p->ts, *to = dst ? dst->ts : NULL;
    reflist rl;
    rl_init(&rl);
    int wake = 0;
    double when = INFINITY;
    lk_acquire(ts->mu);
    ts->dead = 1;
    if (to) {
        lk_acquire(to->mu);
        double old0 = atomic_load(&to->timer0);
        for (Py_ssize_t i = 0; i < ts->len; i++) {
            TimerObject *t = ts->heap[i].t;
            if (!t->pending) { atomic_store(&t->ts, NULL); rl_add(&rl, (PyObject *)t); continue; }
            if (heap_grow(to) < 0) {   /* keep it here, disarmed, rather than lose the heap */
                atomic_store(&t->ts, NULL); t->pending = 0; rl_add(&rl, (PyObject *)t);
                continue;
            }
            to->heap[to->len] = ts->heap[i];
            t->idx = to->len++;
            atomic_store(&t->ts, to);
            siftup(to, t->idx);
        }
        ts->len = ts->zombies = 0;
        upd0(to);
        when = atomic_load(&to->timer0);
        wake = when < old0;
        lk_release(to->mu);
        upd0(ts);
    }
    lk_release(ts->mu);
    rl_drop(&rl);
    if (wake) finish_wake((PObject *)Py_NewRef(dst), when);
    return 0;
}

/* ------------------------------------------------------------ the Timer type */

static TimerObject *timer_alloc(int kind, PyObject *f, PyObject *arg) {
    TimerObject *t = PyObject_GC_New(TimerObject, &TimerType);
    if (!t) return NULL;
    t->when = t->period = 0;
    t->seq = 0;
    atomic_init(&t->ts, NULL);
    t->idx = 0;
    t->pending = 0;
    t->kind = (char)kind;
    atomic_init(&t->sending, 0);
    t->f = Py_XNewRef(f);
    t->arg = Py_XNewRef(arg);
    t->cfire = NULL;
    t->carg = NULL;
    t->sendlock = NULL;
    t->weakreflist = NULL;
    if (kind == TK_CHAN && !(t->sendlock = PyThread_allocate_lock())) {
        Py_DECREF(t);
        PyErr_NoMemory();
        return NULL;
    }
    /* Tracked only when it holds Python objects that may close a cycle: a G's
       sleep timer is not (the G is not; it drops the timer when it dies), nor
       is a C timer (no Python references). */
    if (kind == TK_PY || kind == TK_CHAN) PyObject_GC_Track((PyObject *)t);
    return t;
}

TimerObject *timer_new_c(timerfire_fn fire, void *carg) {
    TimerObject *t = timer_alloc(TK_C, NULL, NULL);
    if (t) { t->cfire = fire; t->carg = carg; }
    return t;
}

static PyObject *Timer_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    PyObject *f, *arg;
    if (kw && PyDict_GET_SIZE(kw)) { PyErr_SetString(PyExc_TypeError, "RTimer(f, arg)"); return NULL; }
    if (!PyArg_UnpackTuple(args, "RTimer", 2, 2, &f, &arg)) return NULL;
    if (!PyCallable_Check(f)) { PyErr_SetString(PyExc_TypeError, "RTimer: f must be callable"); return NULL; }
    return (PyObject *)timer_alloc(TK_PY, f, arg);
}
static int Timer_traverse(TimerObject *t, visitproc visit, void *arg) {
    Py_VISIT(t->f);
    Py_VISIT(t->arg);
    return 0;
}
static int Timer_clear(TimerObject *t) {
    Py_CLEAR(t->f);
    Py_CLEAR(t->arg);
    return 0;
}
static void Timer_dealloc(TimerObject *t) {
    /* in no heap: a heap holds a reference */
    PyObject_GC_UnTrack(t);
    if (t->weakreflist) PyObject_ClearWeakRefs((PyObject *)t);
    Timer_clear(t);
    if (t->sendlock) PyThread_free_lock(t->sendlock);
    PyObject_GC_Del(t);
}
static PyObject *Timer_repr(TimerObject *t) {
    static const char *kinds[] = {"py", "goready", "chan", "c"};
    char buf[64];
    PyOS_snprintf(buf, sizeof buf, "%.6f", t->when);
    return PyUnicode_FromFormat("<RTimer %s when=%s seq=%lld%s>", kinds[(int)t->kind], buf, t->seq,
                                t->pending ? " pending" : "");
}

static int parse_when(PyObject *const *args, Py_ssize_t n, Py_ssize_t at, double *when, double *period) {
    *period = 0;
    if (n < at + 1 || n > at + 2) { PyErr_SetString(PyExc_TypeError, "expected (when, period=0.0)"); return -1; }
    *when = PyFloat_AsDouble(args[at]);
    if (*when == -1.0 && PyErr_Occurred()) return -1;
    if (n == at + 2) {
        *period = PyFloat_AsDouble(args[at + 1]);
        if (*period == -1.0 && PyErr_Occurred()) return -1;
    }
    return 0;
}

static PyObject *Timer_stop(TimerObject *t, PyObject *u) {
    int r = t->kind == TK_CHAN ? chan_modify(t, 0, 0, 0) : timer_del(t);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}
/* reset(when, period=0.0) -> bool: re-arm; whether it was pending (Go 1.23). */
static PyObject *Timer_reset(TimerObject *t, PyObject *const *args, Py_ssize_t n) {
    double when, period;
    if (parse_when(args, n, 0, &when, &period) < 0) return NULL;
    if (isinf(when) && when < 0) { PyErr_SetString(PyExc_ValueError, "timer: bad when"); return NULL; }
    int r;
    if (t->kind == TK_CHAN) {
        r = chan_modify(t, 1, when, period);
    } else {
        r = timer_del(t);
        if (timer_add(t, when, period) < 0) return NULL;
    }
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}
static PyObject *Timer_active(TimerObject *t, void *u) { return PyBool_FromLong(t->pending); }
static PyObject *Timer_seq(TimerObject *t, void *u) { return PyLong_FromLongLong(t->seq); }

static PyMethodDef Timer_methods[] = {
    {"stop", (PyCFunction)Timer_stop, METH_NOARGS, "disarm; True if it was pending (Go 1.23 for channel timers)"},
    {"reset", (PyCFunction)(void (*)(void))Timer_reset, METH_FASTCALL, "reset(when, period=0.0) -> was it pending"},
    {NULL}};
static PyMemberDef Timer_members[] = {
    {"when", T_DOUBLE, offsetof(TimerObject, when), READONLY, "monotonic time of the pending (or last) arming"},
    {"period", T_DOUBLE, offsetof(TimerObject, period), READONLY, NULL},
    {"f", T_OBJECT, offsetof(TimerObject, f), READONLY, NULL},
    {"arg", T_OBJECT, offsetof(TimerObject, arg), READONLY, NULL},
    {NULL}};
static PyGetSetDef Timer_getset[] = {
    {"active", (getter)Timer_active, NULL, "armed and not yet run", NULL},
    {"seq", (getter)Timer_seq, NULL, "bumped by every arming and every delete of a pending arming", NULL},
    {NULL}};
PyTypeObject TimerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.RTimer", .tp_basicsize = sizeof(TimerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Timer_new, .tp_dealloc = (destructor)Timer_dealloc, .tp_repr = (reprfunc)Timer_repr,
    .tp_traverse = (traverseproc)Timer_traverse, .tp_clear = (inquiry)Timer_clear,
    .tp_methods = Timer_methods, .tp_members = Timer_members, .tp_getset = Timer_getset,
    .tp_weaklistoffset = offsetof(TimerObject, weakreflist),
    .tp_doc = "RTimer(f, arg): a runtime timer that calls f(arg, seq) when it fires "
              "(outside every lock; f must not block).  See csrc/timers.c.",
};

/* ------------------------------------------------------------ module functions */

static TimerObject *as_timer(PyObject *o) {
    if (!PyObject_TypeCheck(o, &TimerType)) {
        PyErr_Format(PyExc_TypeError, "expected an RTimer, not %s", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return (TimerObject *)o;
}
static PObject *as_p(PyObject *o) {
    if (!PyObject_TypeCheck(o, &PType)) {
        PyErr_Format(PyExc_TypeError, "expected a P, not %s", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return P_CAST(o);
}

/* addtimer(t, when, period=0.0) -> seq: arm (or re-arm) t at monotonic `when`. */
PyObject *m_addtimer(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    double when, period;
    if (n < 1) { PyErr_SetString(PyExc_TypeError, "addtimer(t, when, period=0.0)"); return NULL; }
    TimerObject *t = as_timer(args[0]);
    if (!t || parse_when(args, n, 1, &when, &period) < 0) return NULL;
    int r;
    if (t->kind == TK_CHAN) r = chan_modify(t, 1, when, period);
    else r = timer_add(t, when, period);
    if (r < 0) return NULL;
    return PyLong_FromLongLong(t->seq);
}
/* deltimer(t) -> bool: disarm; True if it was pending. */
PyObject *m_deltimer(PyObject *m, PyObject *o) {
    TimerObject *t = as_timer(o);
    if (!t) return NULL;
    int r = t->kind == TK_CHAN ? chan_modify(t, 0, 0, 0) : timer_del(t);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}
/* runtimers(p, now=None) -> int: fire p's due timers (now: the clock, for tests). */
PyObject *m_runtimers(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n < 1 || n > 2) { PyErr_SetString(PyExc_TypeError, "runtimers(p, now=None)"); return NULL; }
    PObject *p = as_p(args[0]);
    if (!p) return NULL;
    double now;
    if (n == 2 && args[1] != Py_None) {
        now = PyFloat_AsDouble(args[1]);
        if (now == -1.0 && PyErr_Occurred()) return NULL;
    } else {
        now = mono();
    }
    Py_ssize_t k = runtimers_c(p, now);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromSsize_t(k);
}
/* movetimers(p, dst): retiring p hands its timers to dst (None: drop them). */
PyObject *m_movetimers(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "movetimers(p, dst)"); return NULL; }
    PObject *p = as_p(args[0]), *dst = NULL;
    if (!p) return NULL;
    if (args[1] != Py_None && !(dst = as_p(args[1]))) return NULL;
    if (dst == p) { PyErr_SetString(PyExc_ValueError, "movetimers: dst is p"); return NULL; }
    if (movetimers_c(p, dst) < 0) return NULL;
    Py_RETURN_NONE;
}
/* chantimer(c) -> RTimer that sends time.time() on c when it fires, with Go
 * 1.23's stop/reset (no stale value after they return). */
PyObject *m_chantimer(PyObject *m, PyObject *c) {
    if (!PyObject_TypeCheck(c, &ChanType)) { PyErr_SetString(PyExc_TypeError, "chantimer(c): a channel"); return NULL; }
    return (PyObject *)timer_alloc(TK_CHAN, NULL, c);
}
/* Test hooks: _timers_debug(p) -> ([(when, timer, pending)...] in heap order,
 * zombies, timer0); _timers_debug(p, t, when, period): arm t on p, no wake. */
PyObject *m_timers_debug(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n < 1) { PyErr_SetString(PyExc_TypeError, "_timers_debug(p[, t, when, period])"); return NULL; }
    PObject *p = as_p(args[0]);
    if (!p) return NULL;
    if (n > 1) {
        double when, period;
        TimerObject *t = as_timer(args[1]);
        if (!t || parse_when(args, n, 2, &when, &period) < 0) return NULL;
        PObject *wake;
        if (timer_add_nowake(t, when, period, p, &wake) < 0) return NULL;
        Py_XDECREF(wake);
        return PyLong_FromLongLong(t->seq);
    }
    timers *ts = p->ts;
    Py_ssize_t len;
    PyObject *out = NULL;
    for (;;) {   /* size the list outside the lock (no allocation of GC objects under it) */
        len = ts->len;
        Py_XDECREF(out);
        out = PyList_New(len);
        if (!out) return NULL;
        for (Py_ssize_t i = 0; i < len; i++) {
            PyObject *e = PyTuple_New(3);
            if (!e) { Py_DECREF(out); return NULL; }
            PyList_SET_ITEM(out, i, e);
        }
        lk_acquire(ts->mu);
        if (ts->len == len) break;
        lk_release(ts->mu);
    }
    timerwhen *cp = PyMem_RawMalloc(sizeof(timerwhen) * (len ? len : 1));
    char *pend = PyMem_RawMalloc(len ? len : 1);
    if (!cp || !pend) {
        lk_release(ts->mu);
        PyMem_RawFree(cp); PyMem_RawFree(pend); Py_DECREF(out);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        cp[i] = ts->heap[i];
        Py_INCREF(cp[i].t);
        pend[i] = cp[i].t->pending;
    }
    Py_ssize_t zombies = ts->zombies;
    double t0 = atomic_load(&ts->timer0);
    lk_release(ts->mu);
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *e = PyList_GET_ITEM(out, i);
        PyTuple_SET_ITEM(e, 0, PyFloat_FromDouble(cp[i].when));
        PyTuple_SET_ITEM(e, 1, (PyObject *)cp[i].t);
        PyTuple_SET_ITEM(e, 2, PyBool_FromLong(pend[i]));
    }
    PyMem_RawFree(cp);
    PyMem_RawFree(pend);
    return Py_BuildValue("(Nnd)", out, zombies, t0);
}

/* ------------------------------------------------------------ sleep */

static int duration_of(PyObject *d, const char *who, double *out) {
    if (PyFloat_CheckExact(d)) {
        *out = PyFloat_AS_DOUBLE(d);
    } else if (PyBool_Check(d) || !(PyFloat_Check(d) || PyLong_Check(d))) {
        PyErr_Format(PyExc_TypeError, "%s: duration must be a number of seconds, not %s", who,
                     Py_TYPE(d)->tp_name);
        return -1;
    } else {
        *out = PyFloat_Check(d) ? PyFloat_AsDouble(d) : PyLong_AsDouble(d);
        if (*out == -1.0 && PyErr_Occurred()) return -1;
    }
    if (isnan(*out)) { PyErr_Format(PyExc_ValueError, "%s: duration is NaN", who); return -1; }
    return 0;
}

/* sleep(d): park the current goroutine for d seconds on its own timer, which
 * readies it when it fires (no Python on this path).  A thread with no P
 * (main, plain, go_locked threads) sleeps its OS thread. */
PyObject *m_sleep(PyObject *m, PyObject *arg) {
    double d;
    if (duration_of(arg, "sleep", &d) < 0) return NULL;
    if (!(d > 0)) {
        if (checkpreempt() < 0) return NULL;    /* a runtime entry (HACKING.md "Preemption") */
        Py_RETURN_NONE;
    }
    PObject *p = P_CAST(tls_p);
    if (!p) {
        PyObject *f = PyFloat_FromDouble(d);
        PyObject *r = f ? PyObject_CallOneArg(py_time_sleep, f) : NULL;
        Py_XDECREF(f);
        return r;
    }
    PyObject *g = p->curg;
    if (g == Py_None) { PyErr_SetString(PyExc_RuntimeError, "pygmp: sleep from the scheduler greenlet"); return NULL; }
    GObject *gp = G_CAST(g);
    if (gp->sleeptimer == Py_None) {
        TimerObject *t = timer_alloc(TK_GOREADY, NULL, g);   /* cycle broken when the G dies */
        if (!t) return NULL;
        Py_SETREF(gp->sleeptimer, (PyObject *)t);
    }
    Py_INCREF(g);
    gp->status = Gwaiting;
    double now = mono();
    gp->waitsince = now;
    int r = timer_add((TimerObject *)gp->sleeptimer, now + d, 0);
    if (r < 0) gp->status = Grunning;
    else r = gopark_c(gp, s_sleep);
    Py_DECREF(g);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

/* A forked child: a spin lock held by another thread at fork() stays held,
 * and a recycled heap's lock could be: start both afresh. */
static void timers_atfork_child(void) {
    atomic_flag_clear(&tsfree_lk);
    atomic_flag_clear(&allp_lk);
    tsfree = NULL;   /* leaked, never locked again */
}

int timers_init(void) {
    s_sleep = PyUnicode_InternFromString("sleep");
    s_time = PyUnicode_InternFromString("time");
    if (!s_sleep || !s_time || !(time_module = PyImport_ImportModule("time"))) return -1;
    return pthread_atfork(NULL, NULL, timers_atfork_child) == 0 ? 0 : -1;
}
