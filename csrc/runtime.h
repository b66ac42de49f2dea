/*
 * runtime.h: the structs and entry points shared by pygmp's C core
 * (the extension module pygmp._hot: every csrc/ C file but the netpoller).
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
} GObject;

typedef struct PObject {
    PyObject_HEAD
    LockObject *lock;
    PyObject **rq;
    Py_ssize_t rqcap, rqhead, rqlen;
    PyObject *runnext;
    Py_ssize_t nmovable;
    long long schedtick;
    int streak;
    char stuck, sleeping, draining;
    PyObject *curg, *g0, *gfree, *timer0, *parker;
    double lastpoll;
    /* sched.c: the worker loop and idle wait.  sleepuntil is guarded by
       p->lock (as rq and sleeping); idlenext/onidle/spinning by the sched lock;
       the counters and nhomed by the owner thread; cpoll by pollmu for threads
       other than the owner (the owner alone clears it, at retirement). */
    double sleepuntil;            /* idle until (monotonic): -1 unknown, +inf no timer */
    struct PObject *idlenext;     /* sched's pidle list */
    char onidle, spinning, ransinceidle;
    Py_ssize_t nhomed;            /* started Gs homed here and not dead */
    void *cpoll;                  /* this P's np_poller (its PollParker's), or NULL */
    PyThread_type_lock pollmu;    /* guards cpoll against retirement (wakers, remote polls) */
    atomic_int notified;          /* wake token posted and not yet consumed (cpoll Ps) */
    atomic_int wakewhy;           /* WAKE_* bits of the unparks since the last look */
    long long stealcount, nparks, nfutile, nemptywakes, npolls, npollready, nremotepolls;
} PObject;

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
    char sysmonidle;
    PyObject *sysmonwake;         /* threading.Event sysmon sleeps on when all is idle */
} SchedObject;

/* why a P was unparked (p->wakewhy): a spin wake (wakep) may be dropped
   without the GIL when no work is visible; any other reason takes the GIL */
#define WAKE_SPIN 1
#define WAKE_WORK 2
#define WAKE_OTHER 4

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

#define G_CAST(o) ((GObject *)(o))
#define P_CAST(o) ((PObject *)(o))
#define C_CAST(o) ((ChanObject *)(o))

extern PyTypeObject LockType, GType, PType, ChanType, SchedType;

/* ------------------------------------------------------------ globals (module.c) */

/* The named points where C calls back into Python (HACKING.md "The C/Python
 * boundary"), set once by init(). */
extern PyObject *py_getg;          /* proc._getg_slow(): the G of a thread with no P */
extern PyObject *py_park_thread;   /* proc._park_thread(g): block a thread G's OS thread */
extern PyObject *py_bind;          /* proc._bind(p, g, glet): home g on p at its first run */
extern PyObject *py_park_current;  /* proc.park_current(reason): park forever (nil channel, empty select) */
extern PyObject *py_freeze;        /* proc._freeze(): block this worker forever (exit) */
extern PyObject *PanicError;
extern PyObject *default_case;     /* the `default` sentinel of select */
extern PyObject *py_glet_for;      /* proc._glet_for(p, g): g's greenlet on g0 (binds it) */
extern PyObject *py_checkdead;     /* proc.checkdead(): the last P goes idle with no timer */
extern SchedObject *sched_c;       /* the running runtime's Sched (sched.c) */
extern atomic_int exiting;         /* the process is exiting: workers freeze at their next park */
extern PyObject *tuple_none;       /* (None,) */
extern PyObject *s_release, *s_acquire, *s_unpark, *s_chan_send, *s_chan_recv,
                *s_select, *s_select_nocases, *s_send_nil, *s_recv_nil,
                *s_park, *s_poll, *s_append, *s_popleft, *s_set;
/* the P this worker thread drives (borrowed; the P outlives its worker) */
extern _Thread_local PyObject *tls_p;
extern _Thread_local uint64_t rng_state;

/* ------------------------------------------------------------ helpers */

static inline double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
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
}
#define lk_release PyThread_release_lock
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

/* ------------------------------------------------------------ entry points */

/* lock.c */
PyObject *Lock_new(PyTypeObject *t, PyObject *a, PyObject *k);

/* proc.c */
int proc_import_greenlet(void);
PyObject *glet_switch(PyObject *glet, PyObject *args);
/* proc.c: runqueues (caller of rq_* holds p->lock) */
int rq_push(PObject *p, PyObject *g);
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

/* sched.c: the worker loop, idle wait, wakep, global queue */
double pymono(void);
int unpark_c(PObject *p, int why);
void wakep_c(void);
int netpoll_own(PObject *p);
PyObject *globrunqget(PObject *p, Py_ssize_t maxn);
int runqputslow(PObject *p);
PyObject *m_schedule(PyObject *m, PyObject *p);
PyObject *m_wakep(PyObject *m, PyObject *u);
PyObject *m_wakep_idle(PyObject *m, PyObject *u);
void wakep_if_none_running(void);
PyObject *m_unpark(PyObject *m, PyObject *p);
PyObject *m_netpoll_poll(PyObject *m, PyObject *p);
PyObject *m_set_sched(PyObject *m, PyObject *s);
PyObject *m_netpoll_setup(PyObject *m, PyObject *const *args, Py_ssize_t n);
PyObject *P_set_cpoll(PObject *p, PyObject *arg);

/* select.c */
PyObject *m_select(PyObject *m, PyObject *const *args, Py_ssize_t n);

/* stackcache.c */
PyObject *m_install_stack_cache(PyObject *m, PyObject *arg);

#endif /* PYGMP_RUNTIME_H */
