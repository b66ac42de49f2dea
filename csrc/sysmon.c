/* sysmon (Go's proc.go sysmon/retake): a thread with no P that watches the Ps.
 *
 * Its loop runs here, in C, without the GIL: each round it reads every
 * attached P's counters (runseq, runstart, schedtick, sleeping, lastpoll, the
 * runqueue length; see PObject in runtime.h) and decides what needs doing:
 *
 *   - a run slice older than the time slice (10 ms): preempt it (set the G's
 *     preempt flag and arm the asynchronous hook, csrc/preempt.c);
 *   - a run slice older than the stall bound (100 ms), i.e. a goroutine that
 *     could not be preempted: count it, and report it when GODEBUG=schedstall=1;
 *   - a busy P whose poller nobody polled for 10 ms: poll it;
 *   - movable work queued on a P that has not scheduled since the last look
 *     while another P sleeps: wake a P (Go's "wake an idle P when the global
 *     queue has work and nobody spins");
 *   - GODEBUG=schedtrace=MS: print the SCHED line.
 *
 * Only then does it take the GIL, act (the report, the poll, the wake-up and
 * the trace line are Python: the `act` callback, sysmon._act), and release it.
 * It sleeps from 20 us, doubling after 50 rounds with nothing to do up to
 * 10 ms (Go), but never past the moment a running slice reaches the time slice
 * or the stall bound.  When every P is idle it sleeps until a P starts running
 * a G (setcurg wakes it): an idle process costs it nothing.
 *
 * The registry of Ps is guarded by sm_mu, a pthread mutex that is never held
 * while waiting for the GIL or while running Python.  A P is attached by its
 * worker when it starts and detached by it before it exits, both with the GIL;
 * sysmon touches a P's Python state only with the GIL, after checking that the
 * P is still attached.
 */
#include "runtime.h"
#include <pthread.h>
#include <errno.h>

atomic_int sysmon_deep;

typedef struct {
    PObject *p;           /* strong (taken with the GIL at attach) */
    uint64_t seq;         /* the run slice last looked at */
    int done;             /* what was done for `seq` (DONE_*) */
    long long tick;       /* schedtick at the last look */
    int64_t tickat;       /* when sysmon saw it change */
    int64_t polledat;     /* when sysmon last polled this P's fds */
    int64_t armedat;      /* sysmon armed the async hook for `seq` at this time (0: not) */
    int64_t rearmat;      /* an arm given up unfired: not again before this time */
} smslot;
#define DONE_PREEMPT 1
#define DONE_STALL 2
#define DONE_EARLY 4      /* asked for the GIL one switch interval before the slice ends */

static pthread_mutex_t sm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sm_cond;
static smslot *sm_slots;
static int sm_n, sm_cap;
static int sm_kick;               /* guarded by sm_mu: a wake-up is pending */
static atomic_int sm_stop, sm_running;
static atomic_llong n_rounds, n_netpolls, n_stalls, n_deep, n_wakeps, n_retires;
/* When the oldest idle syscall M passes its keep-alive (mono ns; 0: no idle
   M).  Written by runtime/syscall.py under its pool lock (sysmon_retire_at),
   read by sysmon without the GIL; sysmon clears it before it acts, and the
   act re-arms it from the pool's state under that lock. */
static atomic_llong sm_retire_at;

#define DELAY_MIN 20000LL         /* ns: Go's 20 us */
#define DELAY_MAX 10000000LL      /* ns: 10 ms */
#define NETPOLL_STALE 10000000LL  /* ns: poll a busy P's fds not polled for this long */
#define DISARM_AFTER 10000000LL   /* ns: give up an arm that did not fire (3.12+: the worker
                                     is blocked in a call; the events cost every thread) */
#define STUCK_AFTER 1000000LL     /* ns: queued movable work behind a P that has not
                                     scheduled for this long may go to an idle P */
#define STUCK_RUN 5000000LL       /* ns: ... or whose G has run this long (runstart is the
                                     coarse clock: up to ~4 ms early; so >= 1 ms for sure) */
#define GIL_FREE_NS 1000000LL     /* ns: sysmon got the GIL this fast: nobody was running
                                     Python, so a stuck P is blocked outside it: wake a P */
#define DEEP_MAX 60000000000LL    /* ns: the deep sleep's timeout (robustness only) */
#define DEEP_AFTER 50000000LL     /* ns: every P idle this long (at every look) before the
                                     deep sleep: a P that goes idle and wakes per message
                                     (a cross-thread ping-pong) must not wake sysmon each time */

void sysmon_wake(void) {
    pthread_mutex_lock(&sm_mu);
    sm_kick = 1;
    pthread_cond_signal(&sm_cond);
    pthread_mutex_unlock(&sm_mu);
}

static void sm_child_after_fork(void) {
    /* the child has no sysmon thread; a new runtime starts a new one.  The
       parent's Ps stay referenced (proc._old) and are never attached again. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    sm_mu = m;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&sm_cond, &a);
    pthread_condattr_destroy(&a);
    for (int i = 0; i < sm_n; i++)
        if (sm_slots[i].p->ps) {
            /* its thread state died with the parent's threads */
            PyMem_RawFree(sm_slots[i].p->ps);
            sm_slots[i].p->ps = NULL;
        }
    sm_n = 0;
    sm_kick = 0;
    atomic_store(&sysmon_deep, 0);
    atomic_store(&sm_retire_at, 0);     /* the parent's syscall Ms are gone */
    atomic_store(&sm_stop, 0);
    atomic_store(&sm_running, 0);
}

int sysmon_init(void) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&sm_cond, &a);
    pthread_condattr_destroy(&a);
    pthread_atfork(NULL, NULL, sm_child_after_fork);
    return 0;
}

/* ------------------------------------------------------------ attach/detach */

/* On the P's worker thread, when it starts: record its thread state for the
 * asynchronous hook and let sysmon watch it. */
PyObject *m_sysmon_attach(PyObject *m, PyObject *po) {
    if (!PyObject_TypeCheck(po, &PType)) { PyErr_SetString(PyExc_TypeError, "a P"); return NULL; }
    PObject *p = P_CAST(po);
    if (!p->ps && !(p->ps = pstate_new(p))) return NULL;
    Py_INCREF(p);
    pthread_mutex_lock(&sm_mu);
    if (sm_n == sm_cap) {
        int ncap = sm_cap ? sm_cap * 2 : 8;
        smslot *ns = PyMem_RawRealloc(sm_slots, sizeof(smslot) * ncap);
        if (!ns) { pthread_mutex_unlock(&sm_mu); Py_DECREF(p); return PyErr_NoMemory(); }
        sm_slots = ns;
        sm_cap = ncap;
    }
    smslot *s = &sm_slots[sm_n++];
    memset(s, 0, sizeof(*s));
    s->p = p;
    s->seq = atomic_load(&p->runseq);
    pthread_mutex_unlock(&sm_mu);
    Py_RETURN_NONE;
}

/* On the worker, before it exits. */
PyObject *m_sysmon_detach(PyObject *m, PyObject *po) {
    PObject *found = NULL;
    pthread_mutex_lock(&sm_mu);
    for (int i = 0; i < sm_n; i++)
        if ((PyObject *)sm_slots[i].p == po) {
            found = sm_slots[i].p;
            sm_slots[i] = sm_slots[--sm_n];
            break;
        }
    pthread_mutex_unlock(&sm_mu);
    if (PyObject_TypeCheck(po, &PType)) pstate_free(P_CAST(po));
    Py_XDECREF(found);
    Py_RETURN_NONE;
}

/* With the GIL: is p still attached?  (Then it stays so while we hold the GIL:
 * detaching takes it.) */
static int attached(PObject *p) {
    int ok = 0;
    pthread_mutex_lock(&sm_mu);
    for (int i = 0; i < sm_n; i++)
        if (sm_slots[i].p == p) { ok = 1; break; }
    pthread_mutex_unlock(&sm_mu);
    return ok;
}

/* ------------------------------------------------------------ the loop */

typedef struct {
    PObject *p;
    uint64_t seq;
    int what;              /* W_* */
    int64_t age;
} cand;
#define W_PREEMPT 1
#define W_STALL 2
#define W_NETPOLL 4
#define W_STUCK 8
#define W_DISARM 16
#define W_EARLY 32

static void act_call(PyObject *act, const char *kind, PyObject *p, PyObject *arg, PyObject **res) {
    PyObject *r = PyObject_CallFunction(act, "sOO", kind, p ? p : Py_None, arg ? arg : Py_None);
    if (!r) PyErr_WriteUnraisable(act);
    if (res) *res = r;
    else Py_XDECREF(r);
}

/* sysmon_run(act, slice_us, stall_ms, schedtrace_ms, lead_us, scavenge_ms):
 * the sysmon thread's body (started by runtime/sysmon.py); returns after
 * sysmon_stop().  lead_us: how long before a slice ends sysmon asks for the
 * GIL (the switch interval); scavenge_ms: the data-stack cache's scavenger
 * period (csrc/stackcache.c). */
PyObject *m_sysmon_run(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    long long slice_us, stall_ms, trace_ms, lead_us, scav_ms;
    if (n != 6 || (slice_us = PyLong_AsLongLong(args[1])) < 0 || (stall_ms = PyLong_AsLongLong(args[2])) < 0 ||
        (trace_ms = PyLong_AsLongLong(args[3])) < 0 || (lead_us = PyLong_AsLongLong(args[4])) < 0 ||
        (scav_ms = PyLong_AsLongLong(args[5])) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "sysmon_run(act, slice_us, stall_ms, schedtrace_ms, lead_us, scavenge_ms)");
        return NULL;
    }
    if (atomic_exchange(&sm_running, 1)) { PyErr_SetString(PyExc_RuntimeError, "sysmon is already running"); return NULL; }
    PyObject *act = args[0];
    const int64_t slice = slice_us * 1000, stall = stall_ms * 1000000, tracep = trace_ms * 1000000;
    const int64_t lead = lead_us * 1000 < slice ? lead_us * 1000 : slice / 2;
    const int64_t scav = scav_ms * 1000000;
    int64_t nextscav = mono_ns() + scav;
    int64_t lasttrace = 0;
    int64_t idlesince = 0;            /* every P idle at every look since then (0: not) */
    int64_t delay = DELAY_MIN;
    int idle = 0;
    cand *cs = NULL;
    int ccap = 0;
    Py_INCREF(act);
    PyThreadState *ts = PyEval_SaveThread();
    while (!atomic_load(&sm_stop)) {
        atomic_fetch_add_explicit(&n_rounds, 1, memory_order_relaxed);
        int64_t now = mono_ns();
        int64_t wake = now + delay;
        int nc = 0, nrunning = 0, nsleeping = 0, anyarmed = 0, stuck = 0;
        int doit_trace = tracep > 0 && now - lasttrace >= tracep;
        if (scav > 0 && now >= nextscav) {
            /* the data-stack cache gives idle chunks back (no GIL needed) */
            nextscav = now + scav;
            stackcache_scavenge(0);
        }

        /* ---- look, without the GIL */
        pthread_mutex_lock(&sm_mu);
        if (ccap < sm_n) {
            cand *ncs = PyMem_RawRealloc(cs, sizeof(cand) * sm_n);
            if (ncs) { cs = ncs; ccap = sm_n; }
        }
        int nps = sm_n;
        for (int i = 0; i < sm_n && i < ccap; i++) {
            smslot *s = &sm_slots[i];
            PObject *p = s->p;
            int what = 0;
            if (p->sleeping) nsleeping++;
            int64_t st = atomic_load_explicit(&p->runstart, memory_order_relaxed);
            uint64_t seq = atomic_load_explicit(&p->runseq, memory_order_relaxed);
            long long tick = p->schedtick;
            if (s->armedat) {
                anyarmed = 1;
                if (seq != s->seq) what |= W_DISARM;
                else if (now - s->armedat >= DISARM_AFTER) {
                    /* unfired: give it up, try again one slice later */
                    what |= W_DISARM;
                    s->done &= ~DONE_PREEMPT;
                    s->rearmat = now + slice;
                }
            }
            if (seq != s->seq) { s->seq = seq; s->done = 0; s->rearmat = 0; }
            int64_t age = 0;
            if (st) {
                nrunning++;
                age = now - st;
                if (!(s->done & DONE_PREEMPT)) {
                    /* Taking the GIL from a worker running Python takes one
                       switch interval (the holder drops it only when asked
                       after that long): ask that much before the slice ends,
                       so the hook is armed when it does. */
                    int64_t due = st + slice > s->rearmat ? st + slice : s->rearmat;
                    int64_t early = due - lead;
                    if (now >= due) { what |= W_PREEMPT; s->done |= DONE_PREEMPT; }
                    else if (now >= early && !(s->done & DONE_EARLY)) {
                        what |= W_PREEMPT | W_EARLY;
                        s->done |= DONE_EARLY;
                    }
                    else {
                        int64_t w = (s->done & DONE_EARLY) ? due : early;
                        if (w < wake) wake = w;
                    }
                }
                if (!(s->done & DONE_STALL)) {
                    if (age >= stall) { what |= W_STALL; s->done |= DONE_STALL; }
                    else if (st + stall < wake) wake = st + stall;
                }
                if (p->lastpoll > 0 && now - (int64_t)(p->lastpoll * 1e9) > NETPOLL_STALE &&
                    now - s->polledat > NETPOLL_STALE) {
                    what |= W_NETPOLL;
                    s->polledat = now;
                }
            }
            /* stuck: movable work queued behind a P that has not scheduled for
               STUCK_AFTER, or whose current G has run for STUCK_RUN (a P that
               round-robins long slices under preemption schedules at every
               slice, and sysmon looks at slice ends, yet its queued work
               waits a slice each) */
            if (tick != s->tick) { s->tick = tick; s->tickat = now; }
            if ((p->nmovable > 0 || p->runnext != Py_None) && !p->sleeping &&
                (now - s->tickat >= STUCK_AFTER || (st && now - st >= STUCK_RUN)))
                what |= W_STUCK;
            if (what) {
                cs[nc].p = p;
                cs[nc].seq = seq;
                cs[nc].what = what;
                cs[nc].age = age;
                nc++;
                if (what & W_STUCK) stuck = 1;
            }
        }
        pthread_mutex_unlock(&sm_mu);
        int globwork = glob_runq && Py_SIZE(glob_runq) > 0;
        int wantwake = (stuck || globwork) && nsleeping > 0;
        if (atomic_load_explicit(&exiting, memory_order_relaxed)) {
            /* the process is exiting (workers freeze at their next safe point):
               only preemption goes on, which brings a spinning G to one */
            wantwake = 0;
            doit_trace = 0;
            for (int i = 0; i < nc; i++) cs[i].what &= W_PREEMPT | W_EARLY | W_DISARM;
        }
        if (!wantwake)
            for (int i = 0; i < nc; i++) cs[i].what &= ~W_STUCK;

        /* ---- act, with the GIL */
        int busy = 0, stuckmovable = 0;
        long long ra = atomic_load(&sm_retire_at);
        int doit_retire = ra != 0 && now >= ra;
        if (doit_retire) atomic_store(&sm_retire_at, 0);
        int need = doit_trace || wantwake || doit_retire;
        for (int i = 0; i < nc && !need; i++) if (cs[i].what) need = 1;
        if (need && !atomic_load(&sm_stop)) {
            int64_t gilask = mono_ns();
            PyEval_RestoreThread(ts);
            /* The GIL came at once: nobody was running Python, so the stuck P
               is blocked outside Python (a GIL-releasing call, a plain
               time.sleep) and work queued behind it may go to an idle P.  It
               came late: a worker runs Python, and a second P would only take
               turns with it for the GIL (HACKING.md "Which P runs new work");
               the work waits for its P's next schedule (preemption bounds
               it), and the next look asks again.  Two quick takes in a row:
               one may have fallen in a Python worker's syscall. */
            static int gilfree_runs;      /* sysmon's thread only */
            gilfree_runs = mono_ns() - gilask < GIL_FREE_NS ? gilfree_runs + 1 : 0;
            if (gilfree_runs < 2) {       /* one quick take may be a worker's syscall */
                wantwake = 0;
                for (int i = 0; i < nc; i++) cs[i].what &= ~W_STUCK;
            }
            for (int i = 0; i < nc; i++) {
                PObject *p = cs[i].p;
                int what = cs[i].what;
                if (!what || !attached(p)) continue;
                Py_INCREF(p);
                int same = atomic_load_explicit(&p->runseq, memory_order_relaxed) == cs[i].seq;
                if (what & W_DISARM) {
                    preempt_disarm_stale(p, mono_ns(), DISARM_AFTER);
                    pthread_mutex_lock(&sm_mu);
                    for (int j = 0; j < sm_n; j++) if (sm_slots[j].p == p) sm_slots[j].armedat = 0;
                    pthread_mutex_unlock(&sm_mu);
                }
                if ((what & W_PREEMPT) && same && p->curg != Py_None) {
                    int64_t t = mono_ns();
                    int64_t st = atomic_load_explicit(&p->runstart, memory_order_relaxed);
                    /* early: the GIL came sooner than the slice's end (its
                       holder let it go): leave it to the look at the end */
                    if (!(what & W_EARLY) || t - st >= slice - lead / 2) {
                        G_CAST(p->curg)->preempt = 1;
                        int armed = preempt_arm(p, cs[i].seq) > 0;
                        pthread_mutex_lock(&sm_mu);
                        for (int j = 0; j < sm_n; j++)
                            if (sm_slots[j].p == p && sm_slots[j].seq == cs[i].seq) {
                                sm_slots[j].done |= DONE_PREEMPT;
                                if (armed) sm_slots[j].armedat = t;
                            }
                        pthread_mutex_unlock(&sm_mu);
                    }
                }
                if ((what & W_STALL) && same && p->curg != Py_None) {
                    atomic_fetch_add_explicit(&n_stalls, 1, memory_order_relaxed);
                    PyObject *held = PyFloat_FromDouble((double)cs[i].age * 1e-9);
                    if (held) act_call(act, "stall", (PyObject *)p, held, NULL);
                    Py_XDECREF(held);
                }
                if (what & W_NETPOLL) {
                    PyObject *r = NULL;
                    atomic_fetch_add_explicit(&n_netpolls, 1, memory_order_relaxed);
                    act_call(act, "netpoll", (PyObject *)p, NULL, &r);
                    if (r && PyLong_Check(r) && PyLong_AsLong(r) > 0) busy = 1;
                    Py_XDECREF(r);
                    PyErr_Clear();
                }
                if (what & W_STUCK) {
                    /* runnext may be stolen only from a P marked stuck */
                    PyObject *nx = p->runnext;
                    if (p->nmovable > 0 || (nx != Py_None && G_CAST(nx)->home == Py_None))
                        p->stuck = stuckmovable = 1;
                }
                Py_DECREF(p);
            }
            /* the look saw a runnext: wake only if it (or the queue) is
               movable (a homed runnext is no work for another P: waking one
               would take the GIL to find nothing, round after round) */
            if (wantwake && !stuckmovable && !(glob_runq && Py_SIZE(glob_runq) > 0))
                wantwake = 0;
            if (wantwake) {
                atomic_fetch_add_explicit(&n_wakeps, 1, memory_order_relaxed);
                act_call(act, "wakep", NULL, NULL, NULL);
                busy = 1;
            }
            if (doit_trace) {
                lasttrace = now;
                act_call(act, "schedtrace", NULL, NULL, NULL);
            }
            if (doit_retire) {
                atomic_fetch_add_explicit(&n_retires, 1, memory_order_relaxed);
                act_call(act, "retire", NULL, NULL, NULL);
            }
            ts = PyEval_SaveThread();
        }
        if (tracep > 0 && lasttrace + tracep < wake) wake = lasttrace + tracep;

        /* ---- back off (Go: 20 us, doubling after 50 idle rounds, up to 10 ms) */
        if (busy) { idle = 0; delay = DELAY_MIN; }
        else {
            if (idle > 50) delay = delay * 2 > DELAY_MAX ? DELAY_MAX : delay * 2;
            idle++;
        }

        /* ---- sleep */
        int allidle = nps > 0 && nrunning == 0 && nsleeping == nps;
        if (!allidle) idlesince = 0;
        else if (!idlesince) idlesince = now;
        pthread_mutex_lock(&sm_mu);
        int deep = allidle && now - idlesince >= DEEP_AFTER && tracep == 0 && !anyarmed && !sm_kick;
        if (deep) {
            /* publish, then re-check (pairs with setcurg): either we see a P
               running or its worker sees sysmon_deep and posts sm_kick */
            atomic_store(&sysmon_deep, 1);
            for (int i = 0; i < sm_n; i++)
                if (atomic_load(&sm_slots[i].p->runstart) != 0 || !sm_slots[i].p->sleeping) { deep = 0; break; }
            if (deep) {
                atomic_fetch_add_explicit(&n_deep, 1, memory_order_relaxed);
                wake = mono_ns() + DEEP_MAX;
                /* chunks still to give back: wake for the next scavenge */
                if (scav > 0 && nextscav < wake && stackcache_excess() > 0) wake = nextscav;
            }
        }
        {   /* an idle syscall M reaches its keep-alive: wake to retire it */
            long long r = atomic_load(&sm_retire_at);
            if (r != 0 && r < wake) wake = r;
        }
        if (!sm_kick && !atomic_load(&sm_stop)) {
            struct timespec t = {(time_t)(wake / 1000000000), (long)(wake % 1000000000)};
            int64_t nw = mono_ns();
            if (wake > nw) {
                while (!sm_kick && !atomic_load(&sm_stop)) {
                    int rc = pthread_cond_timedwait(&sm_cond, &sm_mu, &t);
                    if (rc == ETIMEDOUT) break;
                }
            }
        }
        /* woken by a P that started running: look closely again.  A deep
           sleep that merely timed out (the scavenger's period) goes straight
           back to sleep at the next look if everything is still idle. */
        if (sm_kick) { delay = DELAY_MIN; idle = 0; idlesince = 0; }
        sm_kick = 0;
        atomic_store(&sysmon_deep, 0);
        pthread_mutex_unlock(&sm_mu);
    }
    PyEval_RestoreThread(ts);
    PyMem_RawFree(cs);
    Py_DECREF(act);
    atomic_store(&sm_running, 0);
    atomic_store(&sm_stop, 0);
    Py_RETURN_NONE;
}

PyObject *m_sysmon_stop(PyObject *m, PyObject *u) {
    if (atomic_load(&sm_running)) {
        atomic_store(&sm_stop, 1);
        sysmon_wake();
    }
    Py_RETURN_NONE;
}

/* sysmon_retire_at(delay): the oldest idle syscall M reaches its keep-alive
 * in ``delay`` seconds (None: no idle M).  Called by runtime/syscall.py under
 * its pool lock whenever the oldest idle M changes. */
PyObject *m_sysmon_retire_at(PyObject *m, PyObject *arg) {
    long long at = 0;
    if (arg != Py_None) {
        double d = PyFloat_AsDouble(arg);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        if (d < 0) d = 0;
        at = mono_ns() + (long long)(d * 1e9) + 1;
    }
    atomic_store(&sm_retire_at, at);
    if (at && atomic_load(&sysmon_deep)) sysmon_wake();   /* re-time its deep sleep */
    Py_RETURN_NONE;
}

/* Any thread: make sysmon look now (wakep's poke when sysmon sleeps deep). */
PyObject *m_sysmon_wakeup(PyObject *m, PyObject *u) {
    sysmon_wake();
    Py_RETURN_NONE;
}

PyObject *m_sysmon_stats(PyObject *m, PyObject *u) {
    return Py_BuildValue("{sLsLsLsLsLsLsi}",
        "wakeups", (long long)atomic_load(&n_rounds),
        "netpolls", (long long)atomic_load(&n_netpolls),
        "stalls", (long long)atomic_load(&n_stalls),
        "deepsleeps", (long long)atomic_load(&n_deep),
        "wakeps", (long long)atomic_load(&n_wakeps),
        "retires", (long long)atomic_load(&n_retires),
        "deep", atomic_load(&sysmon_deep));
}
