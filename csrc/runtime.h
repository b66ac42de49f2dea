/*
 * runtime.h: the structs and entry points shared by pygmp's C core
 * (the extension module pygmp._hot, built from every csrc/ C file).
 *
 * One file per concern, as Go's runtime:
 *   lock.c        Lock: the PyThread lock exposed to Python as p.lock
 *   proc.c        G and P (runqueue ring, runnext), runqput/runqget,
 *                 next_local, switch/gopark/goready/getg
 *   sched.c       the worker's schedule loop (findrunnable, stealing, wakep,
 *                 spinning, GOMAXPROCS draining), the idle wait, the global
 *                 queue and the Sched base
 *   chan.c        channels (chan.go): buffer ring, sudog wait queues, close
 *   select.c      select (select.go): lock order, random poll order, park on all
 *   stackcache.c  cache of greenlets' interpreter data-stack chunks
 *   timers.c      timers (time.go): per-P 4-ary heaps, timer objects, sleep
 *   gbody.c       a goroutine's life on its greenlet: execute, the body loop,
 *                 bind (home), destroy, gFree reuse
 *   netpoll.c     the network wait (netpoll.go): pollDesc per-direction states,
 *                 deadlines, the per-P poller (Poller) and netpollready
 *   netfd.c       the fd (internal/poll fd_unix.go, fd_mutex.go): FD, fdMutex,
 *                 the read/write/accept/connect retry loops around the syscall
 *   netpoll_epoll.c / netpoll_kqueue.c  the kernel poller (np_*; netpoll.h)
 *   preempt.c     preemption: the per-G flag checked at runtime entries, the
 *                 asynchronous hook (settrace on 3.11, sys.monitoring on 3.12+),
 *                 gopreempt, the safe-point rules, the latency histogram
 *   sysmon.c      sysmon: a thread with no P whose loop reads the Ps' counters
 *                 without the GIL and takes it only to act
 *   module.c      the module: globals, callbacks into Python, init
 *
 * Invariants (pygmp/HACKING.md has the full list):
 *  - p->lock guards rq*, runnext, nmovable, sleeping, sleepuntil; the ring holds
 *    a strong reference to each G in it; runnext holds one too.
 *  - c->lk guards a channel's buffer, closed flag and both wait queues.
 *  - A sudog is heap memory owned by its parked G: wakers touch it only under
 *    the channel lock while it is queued; the owner frees it after waking.
 *  - A sudog with a parkstate (select, or a thread G's interruptible park) may
 *    only be completed by the waker that wins atomic_exchange(&ps->done, 1).
 *  - No Python code runs while a runtime lock is held (no DECREF that can
 *    reach zero, no calls): references are dropped after unlocking.
 *  - ts->mu guards a timers heap and, while a timer is in that heap (t->ts ==
 *    ts), the timer's when/period/seq/pending/idx; a timer in no heap is
 *    touched only by its owner (calls on one timer are serialized by the
 *    caller).  heap[0] is never a zombie; ts->timer0 == heap[0].when (or
 *    +inf) and is read without any lock.  A chan timer's seq only changes with
 *    its sendlock held too (Go's sendLock): lock order sendlock -> ts->mu ->
 *    the channel's lock is never taken under ts->mu.
 */
#ifndef PYGMP_RUNTIME_H
#define PYGMP_RUNTIME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdatomic.h>
#include <time.h>
#include "greenlet.h"

/* G statuses (Go's _Grunnable, _Grunning, _Gwaiting; pygmp/runtime/g.py) */
#define Grunnable 1
#define Grunning 2
#define Gwaiting 4

#define RUNQ_MOVABLE_MAX 256     /* more movable Gs in a local runq spill half to the global queue */
#define RUNNEXT_STREAK_MAX 3     /* runnext picks in a row while the runq has work (Tokio's LIFO cap) */
#define FAIRNESS_TICKS 61        /* every 61st schedtick looks at the global queue (Go) */
#define GFREE_MAX 1024           /* per-P cache of finished goroutines' greenlets */
#define Gdead 6

/* ------------------------------------------------------------ structs */

typedef struct { PyObject_HEAD PyThread_type_lock lk; int held; } LockObject;

typedef struct {
    PyObject_HEAD
    int status;
    char locked;
    int lockedcount;
    long long goid;
    PyObject *glet, *home, *param, *sema, *waitreason;
    PyObject *fn, *args, *kwargs, *ctx, *creator, *sleeptimer, *m;
    double waitsince;
    Py_ssize_t gsidx;             /* gbody.c: index in its home P's gs (-1: none) */
    /* preemption (csrc/preempt.c) */
    char preempt;              /* Go's gp.preempt: sysmon asks this G to yield at its
                                  next runtime entry; cleared when it starts a run */
    long long readyat;         /* mono ns it became runnable, for the latency
                                  histogram (sampled: 0 = not sampled) */
} GObject;

typedef struct PObject_ {
    PyObject_HEAD
    LockObject *lock;
    PyObject **rq;
    Py_ssize_t rqcap, rqhead, rqlen;
    PyObject *runnext;
    Py_ssize_t nmovable;
    long long schedtick;
    int streak;
    char stuck, sleeping, draining;
    PyObject *curg, *g0, *gfree, *parker;
    double sleepuntil;            /* idle until (monotonic): -1 not known yet, +inf no timer (p->lock) */
    double lastpoll;
    /* gbody.c: goroutine life (owner thread; gs is written under p->lock) */
    Py_ssize_t nhomed, ngdelta;
    PyObject **gs;                /* every started G homed here (strong refs: the runtime's reference) */
    Py_ssize_t ngs, gscap;        /* under p->lock; a G knows its index (g->gsidx) */
    /* timers.c */
    struct timers *ts;            /* this P's timer heap (never NULL while the P lives) */
    atomic_long nnetwait;     /* Gs homed here parked in pd_wait (netpoll.c); summed by checkdead */
    /* sysmon and preemption.  Written by the P's worker (setcurg), read by
       sysmon without the GIL (csrc/sysmon.c). */
    _Atomic uint64_t runseq;   /* +1 each time curg changes: names one run slice */
    _Atomic int64_t runstart;  /* coarse mono ns the current G started running; 0: none */
    struct pstate *ps;         /* preemption state (csrc/preempt.c); NULL until the
                                  worker attaches (sysmon_attach) */
    /* sched.c: the worker loop and its idle wait.  idlenext/onidle/spinning
       are guarded by the sched lock; wakewhy is atomic; the counters are
       written by the owner (read racily by diagnostics). */
    struct PObject_ *idlenext;    /* sched's pidle list */
    char onidle, spinning, ransinceidle;
    atomic_int wakewhy;           /* WAKE_* bits of the unparks since the idle wait last looked */
    long long stealcount, nparks, nfutile, nemptywakes, npolls;
} PObject;

/* Why a P was unparked (p->wakewhy): the idle wait drops a wake-up without
 * taking the GIL only when no unpark but wakep's (WAKE_SPIN) came and it sees
 * no work; every other unpark (netpoll.c poller_unpark) sets WAKE_OTHER. */
#define WAKE_SPIN 1
#define WAKE_OTHER 2
#define WAKE_TIMER 4      /* a new earlier timer (timers.c wake_for_timer): the wait re-reads timer0 */

/* Go's schedt: what the worker loop needs from the global scheduler state,
 * readable without the GIL under `lock` (sched.lock).  The Python Sched
 * (runtime/proc.py) subclasses it and keeps the rest. */
typedef struct {
    PyObject_HEAD
    LockObject *lock;
    PyObject *runq;               /* global queue: a deque of movable Gs (lock) */
    PyObject *allp;               /* list of live Ps, copy-on-write (lock to replace) */
    PObject **allpv;              /* the same, for C (lock); Ps are kept alive by everp */
    Py_ssize_t nallp;
    PObject *pidle;               /* idle Ps, linked by idlenext (lock) */
    Py_ssize_t npidle, nspinning, nidle;   /* (lock) */
    PyObject *everp;              /* every P ever made: borrowed P pointers stay valid */
} SchedObject;

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

/* ------------------------------------------------------------ timers (timers.c) */

typedef struct TimerObject TimerObject;
/* a C fire function: called with the GIL, outside every runtime lock */
typedef void (*timerfire_fn)(TimerObject *t, void *carg, long long seq);

enum { TK_PY = 0, TK_GOREADY = 1, TK_CHAN = 2, TK_C = 3 };

typedef struct { double when; TimerObject *t; } timerwhen;   /* a heap entry (holds a ref to t) */

/* Go's `timers`: one per P.  Allocated apart from the P and never freed (a
 * retired P's goes on a free list for the next P), so a thread that read
 * t->ts may always lock it and re-check. */
typedef struct timers {
    PyThread_type_lock mu;
    timerwhen *heap;              /* 4-ary min-heap on when */
    Py_ssize_t len, cap, zombies; /* zombies: entries whose timer was deleted */
    _Atomic double timer0;        /* heap[0].when, +inf when empty: read without mu */
    PObject *p;                   /* borrowed; NULL once retired */
    int dead;                     /* retired (movetimers): adders pick another P */
    struct timers *nextfree;
} timers;

struct TimerObject {
    PyObject_HEAD
    double when, period;          /* when the pending arming fires; period > 0: repeat */
    long long seq;                /* bumped by every arming and by every delete of a pending one */
    _Atomic(timers *) ts;         /* the heap it is in (NULL: none) */
    Py_ssize_t idx;               /* its index in ts->heap */
    char pending;                 /* armed and not yet run (in a heap; !pending in a heap = zombie) */
    char kind;                    /* TK_*: what firing does */
    atomic_int sending;           /* TK_CHAN one-shot: popped, send not done yet (Go's isSending) */
    PyObject *f, *arg;            /* TK_PY: f(arg, seq); TK_GOREADY: arg = the G; TK_CHAN: arg = the channel */
    timerfire_fn cfire;           /* TK_C: cfire(t, carg, seq) */
    void *carg;
    PyThread_type_lock sendlock;  /* TK_CHAN: Go's sendLock */
    PyObject *weakreflist;
};

#define G_CAST(o) ((GObject *)(o))
#define P_CAST(o) ((PObject *)(o))
#define C_CAST(o) ((ChanObject *)(o))

extern PyTypeObject LockType, GType, PType, ChanType, TimerType, SchedType;

/* ------------------------------------------------------------ globals (module.c) */

/* The named points where C calls back into Python (HACKING.md "The C/Python
 * boundary"), set once by init(). */
extern PyObject *py_getg;          /* proc._getg_slow(): the G of a thread with no P */
extern PyObject *py_park_thread;   /* proc._park_thread(g): block a thread G's OS thread */
extern PyObject *py_checkdead;     /* proc.checkdead(): the last P goes idle with no timer */
extern PyObject *py_fatalpanic;    /* panic.fatalpanic(g, exc): an exception escaped a goroutine */
extern PyObject *py_exit_from_goroutine;  /* panic.exit_from_goroutine(exc): SystemExit in a goroutine */
extern PyObject *py_goexit;        /* panic.Goexit: raised by goexit() to end a goroutine */
extern PyObject *py_time_sleep;    /* time.sleep: a thread G's sleep blocks its thread */
extern PyObject *py_park_current;  /* proc.park_current(reason): park forever (nil channel, empty select) */
extern PyObject *py_freeze;        /* proc._freeze(): block this worker forever (exit) */
extern PyObject *PanicError;
extern PyObject *default_case;     /* the `default` sentinel of select */
extern PyObject *glob_runq;        /* sched.runq deque (hint: non-empty?) */
extern SchedObject *sched_c;       /* the running runtime's Sched (sched.c) */
extern atomic_int exiting;         /* the process is exiting: workers freeze at their next park */
extern PyObject *tuple_none;       /* (None,) */
extern PyObject *s_release, *s_acquire, *s_unpark, *s_chan_send, *s_chan_recv,
                *s_select, *s_select_nocases, *s_send_nil, *s_recv_nil,
                *s_park, *s_append, *s_popleft;
/* the P this worker thread drives (borrowed; the P outlives its worker) */
extern _Thread_local PyObject *tls_p;
extern _Thread_local uint64_t rng_state;
/* Go's m.locks: runtime locks (and other critical sections) this thread is
 * inside.  Asynchronous preemption never fires while it is > 0. */
extern _Thread_local int tls_nopreempt;
/* preempt.c / sysmon.c: see setcurg() */
extern atomic_int sysmon_deep;        /* sysmon sleeps until a P runs a G */
extern _Thread_local unsigned tls_readytick;
void sysmon_wake(void);
void latency_record(GObject *g);
/* trace.c: pygmp.trace.  Each point costs one relaxed load while no trace runs. */
extern atomic_int trace_on;
enum { TR_RUN_BEGIN = 1, TR_RUN_END, TR_PARK, TR_READY, TR_PREEMPT_ASYNC, TR_PREEMPT_COOP,
       TR_STEAL, TR_SYSCALL_BEGIN, TR_SYSCALL_END, TR_GO };
void trace_emit(int kind, struct PObject_ *p, long long goid, long long arg, PyObject *obj);
void trace_run(struct PObject_ *p, PyObject *old, PyObject *g);

/* ------------------------------------------------------------ helpers */

/* The clock of Python's time.monotonic() (timers, waitsince). */
static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* The kernel's coarse clock (~6 ns here against ~29 ns, resolution 4 ms): the
 * stamp of a run slice's start, taken on every switch. */
static inline int64_t coarse_ns(void) {
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double mono(void) {
    struct timespec ts;
#ifdef __APPLE__
    clock_gettime(CLOCK_UPTIME_RAW, &ts);   /* mach_absolute_time, as time.monotonic */
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Take a runtime lock: uncontended without releasing the GIL, else wait with
 * the GIL released (the holder may need it to finish). */
static inline void lk_acquire(PyThread_type_lock lk) {
    if (!PyThread_acquire_lock(lk, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lk, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    tls_nopreempt++;
}
static inline void lk_release(PyThread_type_lock lk) {
    tls_nopreempt--;
    PyThread_release_lock(lk);
}
#define PLOCK(p) lk_acquire((p)->lock->lk); (p)->lock->held = 1
#define PUNLOCK(p) (p)->lock->held = 0; lk_release((p)->lock->lk)

/* xorshift64*: per-thread, for select's poll order and random victims */
static inline uint32_t fastrandn(uint32_t n) {
    uint64_t x = rng_state;
    if (!x) x = ((uint64_t)(uintptr_t)&rng_state) ^ (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    rng_state = x;
    return (uint32_t)(((x * 0x2545F4914F6CDD1Dull) >> 32) * (uint64_t)n >> 32);
}

/* Sample 1 in 8 runnable transitions for /sched/latencies:seconds (Go tracks
 * 1 G in 8 the same way). */
static inline void mark_ready(GObject *g) {
    if ((++tls_readytick & 7) == 0) g->readyat = mono_ns();
}

/* Every change of p->curg goes through here: it starts a new run slice (the
 * unit sysmon preempts), clears the new G's preempt flag (Go's execute), and
 * wakes sysmon out of its deep sleep when an idle P starts running.  Steals g. */
static inline void setcurg(PObject *p, PyObject *g) {
    PyObject *old = p->curg;
    if (atomic_load_explicit(&trace_on, memory_order_relaxed)) trace_run(p, old, g);
    p->curg = g;
    atomic_store_explicit(&p->runseq, atomic_load_explicit(&p->runseq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (g != Py_None) {
        GObject *gg = G_CAST(g);
        gg->preempt = 0;
        if (gg->readyat) latency_record(gg);
        if (old == Py_None) {
            /* idle -> running: pairs with sysmon's deep-sleep check (sysmon.c) */
            atomic_store(&p->runstart, coarse_ns());
            if (atomic_load(&sysmon_deep)) sysmon_wake();
        } else {
            atomic_store_explicit(&p->runstart, coarse_ns(), memory_order_relaxed);
        }
    } else {
        atomic_store_explicit(&p->runstart, 0, memory_order_relaxed);
    }
    Py_DECREF(old);
}

/* ------------------------------------------------------------ entry points */

/* lock.c */
PyObject *Lock_new(PyTypeObject *t, PyObject *a, PyObject *k);

/* proc.c */
int proc_import_greenlet(void);
/* proc.c: runqueues (caller of rq_* holds p->lock) */
int rq_push(PObject *p, PyObject *g);
PyObject *p_snapshot(PObject *p, Py_ssize_t (*len)(PObject *), PyObject *(*at)(PObject *, Py_ssize_t));
PyObject *rq_pop(PObject *p);
PyObject *rq_take_movable(PObject *p, Py_ssize_t maxn, int withnext);
int put_remote(PObject *p, PyObject *g);
int runqput_c(PObject *p, PyObject *g, int nxt);
PyObject *runqget_c(PObject *p);
PyObject *next_local_c(PObject *p);
/* proc.c: park and ready */
int switchto_c(PObject *p, PyObject *nxt);
int gopark_c(GObject *g, PyObject *reason);
int goready_c(GObject *g);
PyObject *getg_c(void);
PyObject *m_runqput(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_runqget(PyObject *m, PyObject *p);
PyObject *m_next_local(PyObject *m, PyObject *p);
PyObject *m_gopark(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_goready(PyObject *m, PyObject *g);
PyObject *m_getg(PyObject *m, PyObject *u);
PyObject *m_switchto(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_set_current_p(PyObject *m, PyObject *p);

/* chan.c */
void wq_push(waitq *q, sudog *s);
void wq_unlink(waitq *q, sudog *s);
sudog *wq_dequeue(waitq *q);
sudog *sudog_new(PyObject *g, PyObject *elem, ChanObject *c, parkstate *ps, int idx, int isrecv);
void sudog_free(sudog *s);
int buf_push(ChanObject *c, PyObject *v);
PyObject *buf_pop(ChanObject *c);
PyObject *current_g(const char *what);

/* chan.c: non-blocking send (1 sent, 0 not, -1 error) and drain (1 if it held values) */
int chan_trysend_c(ChanObject *c, PyObject *v);
int chan_drain_c(ChanObject *c);

/* timers.c: the runtime timers.  Every call needs the GIL; none holds a lock
 * when it returns, and firing (f, goready, a channel send, cfire) runs outside
 * every timer lock. */
TimerObject *timer_new_c(timerfire_fn fire, void *carg);   /* a C-fired timer (TK_C); new ref; carg is the caller's */
int timer_add(TimerObject *t, double when, double period);  /* arm (re-arm) on monotonic `when`; 0 or -1;
                                                                the firing passes t->seq as it is now */
int timer_del(TimerObject *t);     /* disarm: 1 if it was pending, 0 if not (a firing already popped still runs:
                                      compare its seq) */
Py_ssize_t runtimers_c(PObject *p, double now);   /* fire p's due timers (any thread); how many */
timers *timers_alloc(PObject *p);
void timers_release(timers *ts);   /* the P is gone: drop what is left, recycle ts */
PyObject *m_addtimer(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_deltimer(PyObject *m, PyObject *t);
PyObject *m_runtimers(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_movetimers(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_chantimer(PyObject *m, PyObject *c);
PyObject *m_sleep(PyObject *m, PyObject *d);
PyObject *m_set_allp(PyObject *m, PyObject *allp);
PyObject *m_timers_debug(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *P_get_timer0(PObject *p, void *u);
PyObject *P_get_ntimers(PObject *p, void *u);

/* gbody.c */
int gbody_init(void);
int timers_init(void);
int bind_c(PObject *p, GObject *g, PyObject *glet);   /* g's first run: home it on p */
PyObject *m_execute(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *P_gs_snapshot(PObject *p, PyObject *u);

/* sched.c: the worker loop, idle wait, wakep, global queue */
void wakep_c(void);
void wakep_if_none_running(void);
PyObject *globrunqget(PObject *p, Py_ssize_t maxn);
int runqputslow(PObject *p);
PyObject *m_schedule(PyObject *m, PyObject *p);
PyObject *m_wakep(PyObject *m, PyObject *u);
PyObject *m_wakep_idle(PyObject *m, PyObject *u);
PyObject *m_set_sched(PyObject *m, PyObject *s);

/* select.c */
PyObject *m_select(PyObject *m, PyObject *const *args, Py_ssize_t n);

/* stackcache.c: goroutine greenlets' interpreter data stacks */
int stackcache_small_root(void);            /* a new goroutine greenlet's first call (GIL held) */
Py_ssize_t stackcache_scavenge(int force);  /* any thread, GIL or not: ~once a second (sysmon) */
Py_ssize_t stackcache_excess(void);         /* warm chunks the scavenger would still give back */
PyObject *m_install_stack_cache(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_stackcache_scavenge(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_stackcache_stats(PyObject *m, PyObject *u);
PyObject *m_datastack_used(PyObject *m, PyObject *u);

/* netpoll.c: the network wait (see the comment at its top) */
#define PD_READ 1
#define PD_WRITE 2
typedef struct pollDesc pollDesc;
extern PyTypeObject PollerType;
extern PyObject *ErrClosed, *ErrTimeout;   /* pygmp.net.ErrClosed, pygmp.net.TimeoutError */
extern PyObject *s_io_wait, *s_io_close;   /* wait reasons */
int netpoll_module_init(void);
int parker_unpark(PyObject *parker);       /* p.parker.unpark(), in C for the Poller */
int parker_unpark_spin(PObject *p);        /* wakep's unpark: WAKE_SPIN, not WAKE_OTHER */
int parker_unpark_timer(PObject *p);       /* timers.c's: WAKE_TIMER */
/* the worker's idle wait in p's Poller (sched.c): sleep until `until` (mono;
   < 0: none) with the GIL released; when a wait ends with no event and before
   `until`, again(p, &until) decides without the GIL whether to wait again.
   Gs readied by the events, -1 on error, -2: p's parker is not a Poller. */
int poller_idle_wait(PObject *p, double until, int (*again)(PObject *, double *));
int netpoll_p(PObject *p);                 /* non-blocking poll of p's poller: Gs readied, -1 error */
PyObject *rbuf_take(Py_ssize_t n);         /* a bytes object of size n to read into */
void rbuf_put(PyObject *b);                /* give it back (reference consumed) */
extern atomic_llong netstat_accept_backoff;
pollDesc *pd_open(int fd);                 /* NULL with an exception */
int pd_checkerr(pollDesc *pd, int mode);   /* -1 with ErrClosed/ErrTimeout set */
int pd_wait(pollDesc *pd, int mode, double until);  /* park until ready; 0: retry the syscall */
int pd_setdeadline(pollDesc *pd, double d, int modes);  /* d: 0 none, < 0 passed, else monotonic */
void pd_evict(pollDesc *pd);               /* closing: wake both waiters with ErrClosed */
void pd_close(pollDesc *pd);               /* unregister and return to the cache (before close(fd)) */
PyObject *pd_state(pollDesc *pd);          /* tests: (rg, wg, token) */
PyObject *m_netpoll_init(PyObject *m, PyObject *args, PyObject *kw);
PyObject *m_netpoll_inject(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_nnetwait(PyObject *m, PyObject *allp);
PyObject *m_netpoll_stats(PyObject *m, PyObject *u);

/* netfd.c */
extern PyTypeObject FDType;
/* preempt.c */
struct pstate;
int preempt_init(void);
int gopreempt_c(PObject *p, int async);     /* yield the current G to the tail of p's runq */
/* Cooperative preemption: called at every runtime entry (channel ops, select,
 * and through _hot.checkpreempt the Python ones).  0, or -1 with an exception. */
static inline int checkpreempt(void) {
    PyObject *p = tls_p;
    if (!p) return 0;
    PyObject *g = P_CAST(p)->curg;
    if (g == Py_None || !G_CAST(g)->preempt) return 0;
    /* not while the G is parking (runtime code run from gopark: timers fired
       by next_local) or finished, nor inside a runtime critical section */
    if (G_CAST(g)->status != Grunning || tls_nopreempt > 0) return 0;
    return gopreempt_c(P_CAST(p), 0);
}
struct pstate *pstate_new(PObject *p);
void pstate_free(PObject *p);
int preempt_arm(PObject *p, uint64_t seq);  /* sysmon, GIL held */
void preempt_disarm_stale(PObject *p, int64_t now, int64_t after_ns);  /* sysmon, GIL held */
int preempt_async_available(void);
extern atomic_llong n_preempt_coop, n_preempt_async, n_preempt_refused, n_preempt_stale, n_preempt_armed;
PyObject *m_preempt_config(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_preempt_stats(PyObject *m, PyObject *u);
PyObject *m_checkpreempt(PyObject *m, PyObject *u);
PyObject *m_latencies(PyObject *m, PyObject *u);
PyObject *m_nopreempt(PyObject *m, PyObject *arg);
PyObject *m_tstate_info(PyObject *m, PyObject *u);

/* trace.c */
PyObject *m_trace_start(PyObject *m, PyObject *u);
PyObject *m_trace_stop(PyObject *m, PyObject *u);
PyObject *m_trace_event(PyObject *m, PyObject *const *args, Py_ssize_t n);

/* sysmon.c */
int sysmon_init(void);
PyObject *m_sysmon_attach(PyObject *m, PyObject *p);
PyObject *m_sysmon_detach(PyObject *m, PyObject *p);
PyObject *m_sysmon_run(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *m_sysmon_stop(PyObject *m, PyObject *u);
PyObject *m_sysmon_stats(PyObject *m, PyObject *u);
PyObject *m_sysmon_wakeup(PyObject *m, PyObject *u);
PyObject *m_sysmon_retire_at(PyObject *m, PyObject *arg);

#endif /* PYGMP_RUNTIME_H */
