/* The network wait (Go's runtime/netpoll.go): the pollDesc of each fd, its
 * per-direction states and deadlines, the per-P kernel poller (Poller, over
 * netpoll.h's np_*) and netpollready, which applies the poller's events in C.
 *
 * pollDesc.  Per direction (rg for reads, wg for writes) the state is Go's:
 *     NULL       pdNil: nobody waits and no readiness is pending
 *     PD_READY   pdReady: an edge arrived with nobody waiting; the next wait
 *                consumes it and returns at once (an edge that lands between
 *                EAGAIN and the park is never lost)
 *     a G        pdWait: that G is parked (the slot holds a reference)
 * Everything in a pollDesc is guarded by its mutex pd->mu, a leaf lock except
 * for pd->mu -> pp->mu (registration) and pd->mu -> reg_mu (picking a poller).
 * A waker (event, deadline timer, close, poller close) takes the G out of the
 * slot under pd->mu and readies it after unlocking: the slot itself is the
 * claim, so a G is readied at most once per park, and a thread G interrupted
 * by Ctrl-C withdraws by finding itself still in the slot (else a waker has
 * its wake token, which it consumes).
 *
 * pollcache.  pollDescs are allocated in chunks that are never freed (Go's
 * pollCache), and an fd's registration token is (index << 32 | fdseq).  Closing
 * bumps fdseq, so an event already fetched from the kernel for a closed fd (whose
 * number, or pollDesc, may have been reused since) finds a different fdseq and
 * is dropped; the memory it points to is always a pollDesc.
 *
 * Registration is lazy: on the first EAGAIN, in the poller of the waiting G's
 * home P (a thread G: a live poller picked by its thread identity), both
 * directions, edge-triggered.  A poller that closes (its P retired) unlinks
 * its pollDescs and wakes their waiters, who register again on their own P.
 * After fork() every poller of the parent is stale (fork_gen) and pollDescs
 * register again in the child's pollers.
 *
 * Deadlines: rd/wd are 0 (none), > 0 (monotonic time, a runtime timer armed)
 * or < 0 (passed: the pending and every later wait fail with ErrTimeout until
 * the deadline moves).  Each pollDesc keeps its own C runtime timers
 * (timers.c timer_new_c: rt, wt and bt for accept's back-off; made on first
 * use, kept for the pollDesc's next lives, as Go's pd.rt/pd.wt).  A firing
 * acts only if the deadline it serves has really passed now (rd/wd > 0 and
 * <= now; bwhen for the back-off), so a stale firing (the deadline moved, the
 * fd closed, the pollDesc reused) does nothing wrong.  Timers are armed and
 * disarmed outside pd->mu, under the pollDesc's armlk (one timer's add and
 * delete calls must not race), each reading the deadline as it is then, so
 * concurrent setters leave the timer armed for the last value.
 *
 * The wait count for checkdead is per P (PObject.nnetwait, for goroutines
 * homed there) plus one counter for thread Gs, summed by nnetwait(allp); no
 * global lock on the I/O path.
 *
 * On a GIL build every critical section here runs with the GIL held and never
 * releases it, so the pthread mutexes are never contended there (and never held
 * across fork()); they keep the structures correct without the GIL.  The only
 * call made without the GIL is np_wait, outside every lock.
 */
#include "runtime.h"
#include "netpoll.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#define PD_READY ((PyObject *)1)
#define NEVENTS 128             /* events fetched per np_wait */

typedef struct PollerObject PollerObject;

struct pollDesc {
    pthread_mutex_t mu;
    uint32_t idx;               /* immutable: index in the pollcache */
    uint32_t fdseq;             /* bumped on close: stale tokens and timers no-op */
    int fd;
    char closing;
    char inlist;                /* on pp's list (guarded by pp->mu) */
    PollerObject *pp;           /* the poller the fd is registered in (strong) */
    pollDesc *pnext, *pprev;    /* pp's list (guarded by pp->mu) */
    pollDesc *freenext;         /* the pollcache free list (guarded by pc_mu) */
    PyObject *rg, *wg;          /* NULL, PD_READY or the parked G (strong) */
    double rd, wd;              /* deadlines: 0 none, > 0 monotonic, < 0 passed */
    double bwhen;               /* accept's back-off sleep ends (0: none) */
    TimerObject *rt, *wt, *bt;  /* deadline and back-off timers (strong; kept across lives) */
    PyThread_type_lock armlk;   /* serializes timer_add/timer_del on those timers (a leaf
                                   but for the timers' own locks; never under pd->mu) */
    unsigned long tgen;         /* fork generation of the timers and armlk */
};

struct PollerObject {
    PyObject_HEAD
    np_poller *np;              /* NULL once closed */
    pthread_mutex_t mu;         /* guards notified, closed, np's life, the pd list */
    atomic_int inwait;          /* 1 while a thread is inside np_wait (park or poll) */
    atomic_int closed;
    char notified;              /* a wake token is posted (np_break sent) */
    unsigned long gen;          /* the fork generation it was opened in */
    PyObject *p;                /* the bound P (strong) */
    PyObject *rbuf;             /* the owner thread's spare read buffer (netfd.c recv_bytes) */
    pollDesc *pds;              /* registered pollDescs */
    atomic_llong npolls;        /* events dispatched (diagnostics) */
};

PyObject *ErrClosed, *ErrTimeout, *s_io_wait, *s_io_close;
static atomic_ulong fork_gen;
static atomic_long netwait_threads;       /* thread Gs parked in pd_wait */
static atomic_llong stat_ready_local, stat_ready_remote;
atomic_llong netstat_accept_backoff;

/* ============================================================ pollcache */

#define PC_CHUNK 256
#define PC_MAXCHUNKS 65536      /* 16M pollDescs */
static pollDesc *pc_chunks[PC_MAXCHUNKS];
static uint32_t pc_nchunks;
static pollDesc *pc_free;
static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;

static pollDesc *pd_lookup(uint32_t idx) {
    uint32_t c = idx / PC_CHUNK;
    if (c >= PC_MAXCHUNKS) return NULL;
    pollDesc *chunk = __atomic_load_n(&pc_chunks[c], __ATOMIC_ACQUIRE);
    return chunk ? &chunk[idx % PC_CHUNK] : NULL;
}

pollDesc *pd_open(int fd) {
    pthread_mutex_lock(&pc_mu);
    if (!pc_free) {
        if (pc_nchunks == PC_MAXCHUNKS) { pthread_mutex_unlock(&pc_mu); goto nomem; }
        pollDesc *chunk = calloc(PC_CHUNK, sizeof(pollDesc));
        if (!chunk) { pthread_mutex_unlock(&pc_mu); goto nomem; }
        for (int i = PC_CHUNK - 1; i >= 0; i--) {
            pthread_mutex_init(&chunk[i].mu, NULL);
            chunk[i].idx = pc_nchunks * PC_CHUNK + (uint32_t)i;
            chunk[i].fd = -1;
            chunk[i].freenext = pc_free;
            pc_free = &chunk[i];
        }
        __atomic_store_n(&pc_chunks[pc_nchunks], chunk, __ATOMIC_RELEASE);
        pc_nchunks++;
    }
    pollDesc *pd = pc_free;
    pc_free = pd->freenext;
    pthread_mutex_unlock(&pc_mu);
    pthread_mutex_lock(&pd->mu);
    pd->fd = fd;
    pd->closing = 0;
    pd->rg = pd->wg = NULL;
    pd->rd = pd->wd = pd->bwhen = 0;
    pthread_mutex_unlock(&pd->mu);
    return pd;
nomem:
    PyErr_NoMemory();
    return NULL;
}

static inline uint64_t pd_token(pollDesc *pd) {   /* caller holds pd->mu */
    return ((uint64_t)pd->idx << 32) | pd->fdseq;
}

/* ============================================================ errors, counters */

/* 0 ok, 1 closing, 2 deadline passed (caller holds pd->mu) */
static int pd_err_locked(pollDesc *pd, int mode) {
    if (pd->closing) return 1;
    double d = mode == PD_READ ? pd->rd : pd->wd;
    if (d != 0 && (d < 0 || d <= mono())) return 2;
    return 0;
}
static int raise_err(int e) {
    PyErr_SetNone(e == 1 ? ErrClosed : ErrTimeout);
    return -1;
}
int pd_checkerr(pollDesc *pd, int mode) {
    pthread_mutex_lock(&pd->mu);
    int e = pd_err_locked(pd, mode);
    pthread_mutex_unlock(&pd->mu);
    return e ? raise_err(e) : 0;
}

static inline atomic_long *netwait_ctr(GObject *g) {
    if (!g->locked && g->home != Py_None) return &P_CAST(g->home)->nnetwait;
    return &netwait_threads;
}

/* Take the parked G out of a slot (NULL if there is none) */
static inline PyObject *slot_take(PyObject **slot) {
    PyObject *s = *slot;
    if (s == NULL || s == PD_READY) return NULL;
    *slot = NULL;
    return s;
}

/* Ready a G woken by the network (its reference is consumed).  On its home P's
 * own thread it goes to the tail of the runqueue (Go injects netpoll's list
 * there); elsewhere it is a remote ready.  Preserves a pending exception. */
static int ready_io(PyObject *g) {
    GObject *gg = G_CAST(g);
    int r;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    if (!gg->locked && tls_p && tls_p == gg->home) {
        atomic_fetch_add_explicit(&stat_ready_local, 1, memory_order_relaxed);
        gg->status = Grunnable;
        r = runqput_c(P_CAST(tls_p), g, 0);
    } else {
        atomic_fetch_add_explicit(&stat_ready_remote, 1, memory_order_relaxed);
        r = goready_c(gg);
    }
    Py_DECREF(g);
    if (et) {
        if (r < 0) PyErr_WriteUnraisable(NULL);
        PyErr_Restore(et, ev, etb);
    }
    return r;
}

/* ============================================================ deadline timers */

/* A deadline timer fired: fail the waiter if the deadline really passed. */
static void dl_fire(pollDesc *pd, int mode) {
    PyObject *g = NULL;
    pthread_mutex_lock(&pd->mu);
    double *d = mode == PD_READ ? &pd->rd : &pd->wd;
    if (!pd->closing && *d > 0 && *d <= mono()) {
        *d = -1;
        g = slot_take(mode == PD_READ ? &pd->rg : &pd->wg);
    }
    pthread_mutex_unlock(&pd->mu);
    if (g && ready_io(g) < 0) PyErr_WriteUnraisable(NULL);
}
static void fire_rd(TimerObject *t, void *carg, long long seq) { dl_fire((pollDesc *)carg, PD_READ); }
static void fire_wd(TimerObject *t, void *carg, long long seq) { dl_fire((pollDesc *)carg, PD_WRITE); }
/* accept's back-off sleep ended: wake the reader if its sleep is over */
static void fire_backoff(TimerObject *t, void *carg, long long seq) {
    pollDesc *pd = (pollDesc *)carg;
    PyObject *g = NULL;
    pthread_mutex_lock(&pd->mu);
    if (pd->bwhen > 0 && pd->bwhen <= mono()) g = slot_take(&pd->rg);
    pthread_mutex_unlock(&pd->mu);
    if (g && ready_io(g) < 0) PyErr_WriteUnraisable(NULL);
}

/* The pollDesc's timer `which` (0 read, 1 write, 2 back-off), made on first
 * use (outside pd->mu: it allocates) and kept for its later lives; in a fork
 * child the parent's timers (in the parent's heaps) and armlk (maybe held by a
 * thread that is gone) are replaced.  Borrowed; NULL with an exception. */
static TimerObject *pd_timer(pollDesc *pd, int which) {
    unsigned long gen = atomic_load(&fork_gen);
    pthread_mutex_lock(&pd->mu);
    TimerObject **slot = which == 0 ? &pd->rt : which == 1 ? &pd->wt : &pd->bt;
    TimerObject *t = pd->tgen == gen && pd->armlk ? *slot : NULL;
    pthread_mutex_unlock(&pd->mu);
    if (t) return t;
    timerfire_fn fn = which == 0 ? fire_rd : which == 1 ? fire_wd : fire_backoff;
    TimerObject *nt = timer_new_c(fn, pd);
    PyThread_type_lock nl = nt ? PyThread_allocate_lock() : NULL;
    if (!nl) { Py_XDECREF(nt); if (!PyErr_Occurred()) PyErr_NoMemory(); return NULL; }
    TimerObject *old[3] = {NULL, NULL, NULL};
    pthread_mutex_lock(&pd->mu);
    if (pd->tgen != gen || !pd->armlk) {
        old[0] = pd->rt; old[1] = pd->wt; old[2] = pd->bt;
        pd->rt = pd->wt = pd->bt = NULL;
        pd->armlk = nl;         /* a parent's lock is leaked, never taken again */
        nl = NULL;
        pd->tgen = gen;
    }
    if (!*slot) { *slot = nt; nt = NULL; }
    t = *slot;
    pthread_mutex_unlock(&pd->mu);
    for (int i = 0; i < 3; i++) Py_XDECREF(old[i]);
    Py_XDECREF(nt);
    if (nl) PyThread_free_lock(nl);
    return t;
}

/* Disarm the pollDesc's timers (close).  Preserves a pending exception. */
static void pd_timers_del(pollDesc *pd) {
    pthread_mutex_lock(&pd->mu);
    TimerObject *ts[3] = {pd->rt, pd->wt, pd->bt};
    PyThread_type_lock lk = pd->tgen == atomic_load(&fork_gen) ? pd->armlk : NULL;
    pthread_mutex_unlock(&pd->mu);
    if (!lk) return;
    lk_acquire(lk);
    for (int i = 0; i < 3; i++) if (ts[i]) timer_del(ts[i]);
    lk_release(lk);
}

/* Arm (or disarm) the deadline timer of `mode` for the deadline as it is now.
 * Every setter updates the deadline first and syncs after, under armlk, so
 * the last one to sync arms the last value. */
static int dl_sync(pollDesc *pd, int mode) {
    TimerObject *t = pd_timer(pd, mode == PD_READ ? 0 : 1);
    if (!t) return -1;
    lk_acquire(pd->armlk);
    pthread_mutex_lock(&pd->mu);
    double d = mode == PD_READ ? pd->rd : pd->wd;
    char closing = pd->closing;
    pthread_mutex_unlock(&pd->mu);
    int r = 0;
    if (d > 0 && !closing) r = timer_add(t, d, 0);
    else timer_del(t);
    lk_release(pd->armlk);
    return r;
}

int pd_setdeadline(pollDesc *pd, double d, int modes) {
    PyObject *wake[2] = {NULL, NULL};
    pthread_mutex_lock(&pd->mu);
    if (pd->closing) { pthread_mutex_unlock(&pd->mu); return raise_err(1); }
    if (modes & PD_READ) {
        pd->rd = d;
        if (d < 0) wake[0] = slot_take(&pd->rg);
    }
    if (modes & PD_WRITE) {
        pd->wd = d;
        if (d < 0) wake[1] = slot_take(&pd->wg);
    }
    pthread_mutex_unlock(&pd->mu);
    int err = 0;
    for (int i = 0; i < 2; i++)
        if (wake[i] && ready_io(wake[i]) < 0) err = -1;
    if (err) return -1;
    if ((modes & PD_READ) && dl_sync(pd, PD_READ) < 0) return -1;
    if ((modes & PD_WRITE) && dl_sync(pd, PD_WRITE) < 0) return -1;
    return 0;
}

/* ============================================================ the poller */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static PollerObject **reg;      /* bound, open pollers (strong), for thread Gs */
static Py_ssize_t nreg, capreg;

static void np_enter(PollerObject *pp) {    /* take inwait (owner: park, close) */
    int exp = 0;
    while (!atomic_compare_exchange_weak(&pp->inwait, &exp, 1)) {
        exp = 0;
        Py_BEGIN_ALLOW_THREADS
        sched_yield();
        Py_END_ALLOW_THREADS
    }
}

/* A live poller for a fd first waited on by g: its home P's, or (thread G) one
 * picked by thread identity.  New reference or NULL (none open). */
static PollerObject *poller_for(GObject *g) {
    if (!g->locked && g->home != Py_None) {
        PyObject *pk = P_CAST(g->home)->parker;
        if (Py_TYPE(pk) == &PollerType && !atomic_load(&((PollerObject *)pk)->closed))
            return (PollerObject *)Py_NewRef(pk);
    }
    unsigned long gen = atomic_load(&fork_gen);
    PollerObject *pick = NULL;
    pthread_mutex_lock(&reg_mu);
    Py_ssize_t live = 0;
    for (Py_ssize_t i = 0; i < nreg; i++)
        if (reg[i]->gen == gen && !atomic_load(&reg[i]->closed)) live++;
    if (live) {
        Py_ssize_t k = (Py_ssize_t)(PyThread_get_thread_ident() % (unsigned long)live);
        for (Py_ssize_t i = 0; i < nreg; i++) {
            if (reg[i]->gen != gen || atomic_load(&reg[i]->closed)) continue;
            if (k-- == 0) { pick = reg[i]; Py_INCREF(pick); break; }
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return pick;
}

static inline int poller_stale(PollerObject *pp) {
    return atomic_load(&pp->closed) || pp->gen != atomic_load(&fork_gen);
}

static void pplist_unlink(PollerObject *pp, pollDesc *pd) {   /* caller holds pp->mu */
    if (!pd->inlist) return;
    if (pd->pprev) pd->pprev->pnext = pd->pnext; else pp->pds = pd->pnext;
    if (pd->pnext) pd->pnext->pprev = pd->pprev;
    pd->pnext = pd->pprev = NULL;
    pd->inlist = 0;
}

/* Register pd (pd->mu held) in g's poller.  0, or an errno (ENXIO: no poller;
 * EAGAIN: that poller closed meanwhile).  drop[0..1] get references to release
 * after unlocking (the previous, closed or stale, poller; a poller that failed). */
static int pd_register_locked(pollDesc *pd, GObject *g, PollerObject **drop) {
    PollerObject *pp = poller_for(g);
    if (!pp) return ENXIO;
    PollerObject *prev = pd->pp;
    if (prev) {                 /* closed, or stale (fork child): leave its kernel side alone */
        pthread_mutex_lock(&prev->mu);
        pplist_unlink(prev, pd);
        pthread_mutex_unlock(&prev->mu);
        pd->pp = NULL;
    }
    drop[0] = prev;
    pthread_mutex_lock(&pp->mu);
    int e = 0;
    if (poller_stale(pp)) e = EAGAIN;
    else if (np_add(pp->np, pd->fd, pd_token(pd)) < 0) e = errno;
    if (e) {
        pthread_mutex_unlock(&pp->mu);
        drop[1] = pp;
        return e;
    }
    pd->pprev = NULL;
    pd->pnext = pp->pds;
    if (pp->pds) pp->pds->pprev = pd;
    pp->pds = pd;
    pd->inlist = 1;
    pthread_mutex_unlock(&pp->mu);
    pd->pp = pp;
    return 0;
}

/* ============================================================ the wait (netpollblock) */

int pd_wait(pollDesc *pd, int mode, double until) {
    PyObject *g = current_g("network I/O");
    if (!g) return -1;
    GObject *gg = G_CAST(g);
    PyObject **slot = mode == PD_READ ? &pd->rg : &pd->wg;
    PollerObject *drop[2] = {NULL, NULL};
    int e, regerr = 0;
    TimerObject *bt = NULL;
    if (until > 0 && !(bt = pd_timer(pd, 2)))
        PyErr_WriteUnraisable(NULL);    /* no timer: a readiness edge or close still wakes it */
    pthread_mutex_lock(&pd->mu);
    if ((e = pd_err_locked(pd, mode))) goto fail;
    if (*slot == PD_READY) {
        *slot = NULL;
        pthread_mutex_unlock(&pd->mu);
        Py_DECREF(g);
        return 0;
    }
    if (*slot) { e = 3; goto fail; }
    if (!pd->pp || poller_stale(pd->pp)) {
        for (int tries = 0; tries < 3; tries++) {
            regerr = pd_register_locked(pd, gg, drop);
            if (regerr != EAGAIN) break;
            /* the poller closed under us: drop the references outside the lock, retry */
            pthread_mutex_unlock(&pd->mu);
            Py_CLEAR(drop[0]);
            Py_CLEAR(drop[1]);
            pthread_mutex_lock(&pd->mu);
            if ((e = pd_err_locked(pd, mode))) goto fail;
            if (*slot == PD_READY) { *slot = NULL; pthread_mutex_unlock(&pd->mu); Py_DECREF(g); return 0; }
            if (*slot) { e = 3; goto fail; }
            if (pd->pp && !poller_stale(pd->pp)) { regerr = 0; break; }
        }
        if (regerr) { e = 4; goto fail; }
    }
    *slot = Py_NewRef(g);
    atomic_long *ctr = netwait_ctr(gg);
    /* counted before the G is visibly waiting: checkdead reads status first */
    atomic_fetch_add(ctr, 1);
    gg->status = Gwaiting;
    gg->waitsince = mono();
    if (bt) pd->bwhen = until;
    pthread_mutex_unlock(&pd->mu);
    Py_XDECREF(drop[0]);
    Py_XDECREF(drop[1]);
    if (bt) {
        lk_acquire(pd->armlk);
        if (timer_add(bt, until, 0) < 0) PyErr_WriteUnraisable(NULL);
        lk_release(pd->armlk);
    }
    int r = gopark_c(gg, s_io_wait);
    if (r < 0) {
        /* a thread G interrupted (Ctrl-C): withdraw, or take the token a waker posted */
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        pthread_mutex_lock(&pd->mu);
        int withdrew = *slot == g;
        if (withdrew) *slot = NULL;
        if (bt) pd->bwhen = 0;
        pthread_mutex_unlock(&pd->mu);
        if (withdrew) Py_DECREF(g);
        else if (gg->locked) {
            PyObject *x = PyObject_CallMethodNoArgs(gg->sema, s_acquire);
            Py_XDECREF(x);
            PyErr_Clear();
        }
        gg->status = Grunning;
        atomic_fetch_sub(ctr, 1);
        if (bt) { lk_acquire(pd->armlk); timer_del(bt); lk_release(pd->armlk); }
        Py_DECREF(g);
        PyErr_Restore(et, ev, etb);
        return -1;
    }
    gg->status = Grunning;
    atomic_fetch_sub(ctr, 1);
    pthread_mutex_lock(&pd->mu);
    if (bt) pd->bwhen = 0;      /* a back-off firing from now on is stale */
    e = pd_err_locked(pd, mode);
    pthread_mutex_unlock(&pd->mu);
    if (bt) { lk_acquire(pd->armlk); timer_del(bt); lk_release(pd->armlk); }
    Py_DECREF(g);
    return e ? raise_err(e) : 0;
fail:
    pthread_mutex_unlock(&pd->mu);
    Py_XDECREF(drop[0]);
    Py_XDECREF(drop[1]);
    Py_DECREF(g);
    if (e == 3) {
        PyErr_SetString(PyExc_RuntimeError, "pygmp: two goroutines waiting on one fd direction");
        return -1;
    }
    if (e == 4) {
        if (regerr == ENXIO)
            PyErr_SetString(PyExc_RuntimeError, "pygmp.net: no netpoller is running");
        else {
            errno = regerr;
            PyErr_SetFromErrno(PyExc_OSError);
        }
        return -1;
    }
    return raise_err(e);
}

/* ============================================================ close */

void pd_evict(pollDesc *pd) {
    pthread_mutex_lock(&pd->mu);
    pd->closing = 1;
    pd->fdseq++;                /* events and timers of this fd's life are stale now */
    PyObject *gr = slot_take(&pd->rg), *gw = slot_take(&pd->wg);
    pd->rg = pd->wg = NULL;
    pthread_mutex_unlock(&pd->mu);
    if (gr) ready_io(gr);
    if (gw) ready_io(gw);
    pd_timers_del(pd);
}

void pd_close(pollDesc *pd) {
    pthread_mutex_lock(&pd->mu);
    PollerObject *pp = pd->pp;
    pd->pp = NULL;
    if (pp) {
        pthread_mutex_lock(&pp->mu);
        pplist_unlink(pp, pd);
        if (!poller_stale(pp)) np_del(pp->np, pd->fd);   /* before close(fd) */
        pthread_mutex_unlock(&pp->mu);
    }
    pd->closing = 1;
    pd->fdseq++;
    PyObject *gr = slot_take(&pd->rg), *gw = slot_take(&pd->wg);
    pd->rg = pd->wg = NULL;
    pd->rd = pd->wd = pd->bwhen = 0;
    pd->fd = -1;
    pthread_mutex_unlock(&pd->mu);
    Py_XDECREF(pp);
    if (gr) ready_io(gr);       /* none expected: no operation is in flight */
    if (gw) ready_io(gw);
    pd_timers_del(pd);
    pthread_mutex_lock(&pc_mu);
    pd->freenext = pc_free;
    pc_free = pd;
    pthread_mutex_unlock(&pc_mu);
}

PyObject *pd_state(pollDesc *pd) {
    pthread_mutex_lock(&pd->mu);
    PyObject *s[2] = {pd->rg, pd->wg};
    uint64_t token = pd_token(pd);
    pthread_mutex_unlock(&pd->mu);
    const char *name[2];
    for (int i = 0; i < 2; i++) name[i] = !s[i] ? NULL : s[i] == PD_READY ? "ready" : "wait";
    return Py_BuildValue("(zzK)", name[0], name[1], (unsigned long long)token);
}

/* ============================================================ netpollready */

/* Apply the poller's events: ready the Gs waiting on them, mark pdReady where
 * nobody waits.  Returns the number of Gs readied, -1 on error (every G is
 * readied anyway). */
static int netpollready(np_event *evs, int n) {
    int cnt = 0, err = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tok = evs[i].token;
        pollDesc *pd = pd_lookup((uint32_t)(tok >> 32));
        if (!pd) continue;
        PyObject *gs[2] = {NULL, NULL};
        pthread_mutex_lock(&pd->mu);
        if (pd->fdseq == (uint32_t)tok && !pd->closing) {
            for (int k = 0; k < 2; k++) {
                if (!(evs[i].flags & (k ? NP_WRITE : NP_READ))) continue;
                PyObject **slot = k ? &pd->wg : &pd->rg;
                if (*slot == NULL) *slot = PD_READY;
                else gs[k] = slot_take(slot);
            }
        }
        pthread_mutex_unlock(&pd->mu);
        for (int k = 0; k < 2; k++) {
            if (!gs[k]) continue;
            cnt++;
            if (ready_io(gs[k]) < 0) {
                if (!err) err = 1;
                else PyErr_WriteUnraisable(NULL);
            }
        }
    }
    return err ? -1 : cnt;
}

PyObject *m_netpoll_inject(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    unsigned long long tok;
    unsigned int flags;
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "netpoll_inject(token, readable, writable)"); return NULL; }
    tok = PyLong_AsUnsignedLongLong(args[0]);
    if (tok == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    flags = (PyObject_IsTrue(args[1]) ? NP_READ : 0) | (PyObject_IsTrue(args[2]) ? NP_WRITE : 0);
    np_event ev = {tok, flags, 0};
    int r = netpollready(&ev, 1);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* ============================================================ Poller (the P's parker) */

static int timeout_ms(PyObject *arg, int *ms) {
    if (arg == Py_None) { *ms = -1; return 0; }
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred()) return -1;
    if (t <= 0) { *ms = 0; return 0; }
    double v = t * 1000.0;
    if (v >= 2147483647.0) { *ms = 2147483647; return 0; }
    int iv = (int)v;
    *ms = iv < v ? iv + 1 : iv;     /* round up: a small timeout never busy-polls */
    return 0;
}

static PyObject *Poller_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    PollerObject *pp = (PollerObject *)t->tp_alloc(t, 0);
    if (!pp) return NULL;
    pthread_mutex_init(&pp->mu, NULL);
    pp->gen = atomic_load(&fork_gen);
    pp->p = Py_NewRef(Py_None);
    pp->np = np_open();
    if (!pp->np) { Py_DECREF(pp); return PyErr_SetFromErrno(PyExc_OSError); }
    return (PyObject *)pp;
}
static int Poller_traverse(PollerObject *pp, visitproc visit, void *arg) {
    Py_VISIT(pp->p);
    return 0;
}
static int Poller_clear(PollerObject *pp) {
    Py_CLEAR(pp->p);
    Py_CLEAR(pp->rbuf);
    return 0;
}
static void Poller_dealloc(PollerObject *pp) {
    PyObject_GC_UnTrack(pp);
    Poller_clear(pp);
    /* no pollDesc refers to it (they hold references) and it left the registry;
       closing a stale (fork child) poller closes only this process's copies */
    if (pp->np) np_close(pp->np);
    pthread_mutex_destroy(&pp->mu);
    Py_TYPE(pp)->tp_free((PyObject *)pp);
}

static PyObject *Poller_bind(PollerObject *pp, PyObject *p) {
    if (!PyObject_TypeCheck(p, &PType)) { PyErr_SetString(PyExc_TypeError, "bind(p): a P"); return NULL; }
    Py_SETREF(pp->p, Py_NewRef(p));
    pthread_mutex_lock(&reg_mu);
    if (nreg == capreg) {
        Py_ssize_t ncap = capreg ? capreg * 2 : 8;
        PollerObject **n = PyMem_RawRealloc(reg, sizeof(PollerObject *) * ncap);
        if (!n) { pthread_mutex_unlock(&reg_mu); return PyErr_NoMemory(); }
        reg = n; capreg = ncap;
    }
    reg[nreg++] = (PollerObject *)Py_NewRef(pp);
    pthread_mutex_unlock(&reg_mu);
    Py_RETURN_NONE;
}

static inline void poller_done(PollerObject *pp) {
    if (pp->p != Py_None) P_CAST(pp->p)->lastpoll = mono();
}

/* park(timeout): owner only.  Sleep in the poller (GIL released) until
 * unpark(), an I/O event or the timeout (seconds; None: forever); the events
 * are applied before it returns. */
static PyObject *Poller_park(PollerObject *pp, PyObject *arg) {
    int ms, n = 0, werr = 0;
    np_event evs[NEVENTS];
    if (timeout_ms(arg, &ms) < 0) return NULL;
    np_enter(pp);
    pthread_mutex_lock(&pp->mu);
    if (atomic_load(&pp->closed)) {
        pthread_mutex_unlock(&pp->mu);
        atomic_store(&pp->inwait, 0);
        Py_RETURN_NONE;
    }
    if (pp->notified) {
        pp->notified = 0;
        ms = 0;                 /* still consume the posted break, and poll */
    }
    pthread_mutex_unlock(&pp->mu);
    if (ms != 0) {
        Py_BEGIN_ALLOW_THREADS
        n = np_wait(pp->np, evs, NEVENTS, ms);
        werr = errno;
        Py_END_ALLOW_THREADS
    } else {
        n = np_wait(pp->np, evs, NEVENTS, 0);
        werr = errno;
    }
    pthread_mutex_lock(&pp->mu);
    pp->notified = 0;
    pthread_mutex_unlock(&pp->mu);
    atomic_store(&pp->inwait, 0);
    poller_done(pp);
    if (n < 0) { errno = werr; return PyErr_SetFromErrno(PyExc_OSError); }
    if (n > 0) {
        atomic_fetch_add_explicit(&pp->npolls, n, memory_order_relaxed);
        if (netpollready(evs, n) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* poll(): any thread, non-blocking: apply ready events, return how many Gs
 * were readied; 0 at once when another thread is inside this poller. */
static int poller_poll(PollerObject *pp) {
    int exp = 0;
    np_event evs[NEVENTS];
    if (!atomic_compare_exchange_strong(&pp->inwait, &exp, 1)) return 0;
    if (atomic_load(&pp->closed)) { atomic_store(&pp->inwait, 0); return 0; }
    int n = np_wait(pp->np, evs, NEVENTS, 0);
    pthread_mutex_lock(&pp->mu);
    if (pp->notified) np_break(pp->np);     /* we may have swallowed the owner's break */
    pthread_mutex_unlock(&pp->mu);
    atomic_store(&pp->inwait, 0);
    poller_done(pp);
    if (n <= 0) return 0;
    atomic_fetch_add_explicit(&pp->npolls, n, memory_order_relaxed);
    return netpollready(evs, n);
}
static PyObject *Poller_poll(PollerObject *pp, PyObject *u) {
    int r = poller_poll(pp);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* A parking goroutine whose P has nothing else to run polls the P's own
 * poller before it leaves for the scheduler (findrunnable's next step, taken in
 * C): a G readied here is switched to directly.  Gs readied; -1 on error. */
int netpoll_p(PObject *p) {
    PyObject *pk = p->parker;
    if (Py_TYPE(pk) != &PollerType) return 0;
    return poller_poll((PollerObject *)pk);
}

/* unpark(): any thread.  The park in progress returns, or the next one returns
 * at once; never lost, sometimes spurious. */
static int poller_unpark_why(PollerObject *pp, int why) {
    /* the reason first (sched.c's idle wait reads it after its wait returns) */
    if (pp->p != Py_None) atomic_fetch_or(&P_CAST(pp->p)->wakewhy, why);
    pthread_mutex_lock(&pp->mu);
    if (!pp->notified && !atomic_load(&pp->closed)) {
        pp->notified = 1;
        np_break(pp->np);       /* under mu: close cannot free np meanwhile */
    }
    pthread_mutex_unlock(&pp->mu);
    return 0;
}
static int poller_unpark(PollerObject *pp) { return poller_unpark_why(pp, WAKE_OTHER); }
static PyObject *Poller_unpark(PollerObject *pp, PyObject *u) {
    poller_unpark(pp);
    Py_RETURN_NONE;
}

/* The worker's idle wait (sched.c park_c): park() that, when a wait ends with
 * no event (a wake-up, or `until`), lets again(p, &until) decide without the
 * GIL whether to wait again (a spin wake-up whose work is gone, a timer that
 * moved or already ran: no GIL).  Gs readied; -1 error; -2 not a Poller. */
int poller_idle_wait(PObject *p, double until, int (*again)(PObject *, double *)) {
    if (Py_TYPE(p->parker) != &PollerType) return -2;
    PollerObject *pp = (PollerObject *)p->parker;
    int n = 0, werr = 0;
    np_event evs[NEVENTS];
    np_enter(pp);
    if (atomic_load(&pp->closed)) {
        atomic_store(&pp->inwait, 0);
        return 0;
    }
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        int ms = -1;
        if (until >= 0) {
            double left = until - mono(), v = left * 1000.0;
            ms = left <= 0 ? 0 : v >= 2147483647.0 ? 2147483647 : (int)v < v ? (int)v + 1 : (int)v;
        }
        pthread_mutex_lock(&pp->mu);
        if (pp->notified) {
            pp->notified = 0;
            ms = 0;             /* consume the posted break, and poll */
        }
        pthread_mutex_unlock(&pp->mu);
        n = np_wait(pp->np, evs, NEVENTS, ms);
        werr = errno;
        pthread_mutex_lock(&pp->mu);
        pp->notified = 0;
        pthread_mutex_unlock(&pp->mu);
        if (n != 0) break;
        if (!again(p, &until)) break;     /* also at the deadline: the timer may have run */
    }
    Py_END_ALLOW_THREADS
    atomic_store(&pp->inwait, 0);
    poller_done(pp);
    if (n < 0) { errno = werr; PyErr_SetFromErrno(PyExc_OSError); return -1; }
    if (n > 0) {
        atomic_fetch_add_explicit(&pp->npolls, n, memory_order_relaxed);
        return netpollready(evs, n);
    }
    return 0;
}

/* close(): the owner, when its P retires.  Waiters on fds registered here are
 * woken and register again on their own P. */
static PyObject *Poller_close(PollerObject *pp, PyObject *u) {
    np_enter(pp);
    pthread_mutex_lock(&pp->mu);
    int was = atomic_exchange(&pp->closed, 1);
    if (!was) np_close(pp->np);
    pp->np = NULL;
    pthread_mutex_unlock(&pp->mu);
    atomic_store(&pp->inwait, 0);
    if (was) Py_RETURN_NONE;
    PollerObject *regref = NULL;
    pthread_mutex_lock(&reg_mu);
    for (Py_ssize_t i = 0; i < nreg; i++) {
        if (reg[i] == pp) {
            regref = reg[i];
            reg[i] = reg[--nreg];
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    Py_XDECREF(regref);
    int err = 0;
    for (;;) {
        pthread_mutex_lock(&pp->mu);
        pollDesc *pd = pp->pds;
        if (pd) pplist_unlink(pp, pd);
        pthread_mutex_unlock(&pp->mu);
        if (!pd) break;
        PyObject *gs[2] = {NULL, NULL};
        int drop = 0;
        pthread_mutex_lock(&pd->mu);
        if (pd->pp == pp) {
            pd->pp = NULL;
            drop = 1;
            gs[0] = slot_take(&pd->rg);
            gs[1] = slot_take(&pd->wg);
        }
        pthread_mutex_unlock(&pd->mu);
        for (int k = 0; k < 2; k++)
            if (gs[k] && ready_io(gs[k]) < 0) err = 1;
        if (drop) Py_DECREF(pp);        /* the pollDesc's reference; `pp` is still ours */
    }
    /* pp->p stays; the cyclic GC frees the P <-> Poller pair */
    if (err) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Poller_get_closed(PollerObject *pp, void *u) {
    return PyBool_FromLong(atomic_load(&pp->closed));
}
static PyObject *Poller_get_p(PollerObject *pp, void *u) {
    return Py_NewRef(pp->p);
}
static PyObject *Poller_get_npolls(PollerObject *pp, void *u) {
    return PyLong_FromLongLong(atomic_load(&pp->npolls));
}
static PyMethodDef Poller_methods[] = {
    {"bind", (PyCFunction)Poller_bind, METH_O, "bind(p): the P whose lastpoll this poller updates"},
    {"park", (PyCFunction)Poller_park, METH_O, "park(timeout): owner: sleep until unpark, an event or timeout"},
    {"unpark", (PyCFunction)Poller_unpark, METH_NOARGS, "unpark(): wake the park in progress or the next one"},
    {"poll", (PyCFunction)Poller_poll, METH_NOARGS, "poll() -> Gs readied (non-blocking; any thread)"},
    {"close", (PyCFunction)Poller_close, METH_NOARGS, "close(): the P retires; its fds' waiters re-register"},
    {NULL}};
static PyGetSetDef Poller_getset[] = {
    {"closed", (getter)Poller_get_closed, NULL, NULL, NULL},
    {"p", (getter)Poller_get_p, NULL, NULL, NULL},
    {"npolls", (getter)Poller_get_npolls, NULL, "events dispatched", NULL},
    {NULL}};
PyTypeObject PollerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.Poller", .tp_basicsize = sizeof(PollerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Poller_new, .tp_dealloc = (destructor)Poller_dealloc,
    .tp_traverse = (traverseproc)Poller_traverse, .tp_clear = (inquiry)Poller_clear,
    .tp_methods = Poller_methods, .tp_getset = Poller_getset,
    .tp_doc = "A P's parker: its kernel poller (epoll/kqueue) and wake token (csrc/netpoll.c).",
};

/* A read buffer: a fresh bytes object of size n, or the spare one of this
 * worker's P.  conn.read(65536) that gets a few bytes then costs a small copy
 * instead of a 64 KiB malloc, realloc and free per call.  Only the P's own
 * worker thread touches its spare (tls_p). */
#define RBUF_MIN 4096
PyObject *rbuf_take(Py_ssize_t n) {
    if (n >= RBUF_MIN && tls_p) {
        PyObject *pk = P_CAST(tls_p)->parker;
        if (Py_TYPE(pk) == &PollerType) {
            PollerObject *pp = (PollerObject *)pk;
            PyObject *b = pp->rbuf;
            if (b && PyBytes_GET_SIZE(b) == n) {
                pp->rbuf = NULL;
                return b;
            }
        }
    }
    return PyBytes_FromStringAndSize(NULL, n);
}
/* Give back a buffer from rbuf_take (reference consumed). */
void rbuf_put(PyObject *b) {
    if (tls_p && Py_REFCNT(b) == 1 && PyBytes_GET_SIZE(b) >= RBUF_MIN) {
        PyObject *pk = P_CAST(tls_p)->parker;
        if (Py_TYPE(pk) == &PollerType && !((PollerObject *)pk)->rbuf) {
            ((PollerObject *)pk)->rbuf = b;
            return;
        }
    }
    Py_DECREF(b);
}

/* wakep's wake-up: WAKE_SPIN (the idle wait may drop it without the GIL) */
int parker_unpark_spin(PObject *p) {
    if (Py_TYPE(p->parker) == &PollerType) return poller_unpark_why((PollerObject *)p->parker, WAKE_SPIN);
    return parker_unpark(p->parker);
}

/* timers.c wake_for_timer's: WAKE_TIMER (the idle wait re-reads the timers
   without the GIL) */
int parker_unpark_timer(PObject *p) {
    if (Py_TYPE(p->parker) == &PollerType) return poller_unpark_why((PollerObject *)p->parker, WAKE_TIMER);
    return parker_unpark(p->parker);
}

/* put_remote's wake-up without a method lookup */
int parker_unpark(PyObject *parker) {
    if (Py_TYPE(parker) == &PollerType) return poller_unpark((PollerObject *)parker);
    PyObject *r = PyObject_CallMethodNoArgs(parker, s_unpark);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* ============================================================ module glue */

PyObject *m_nnetwait(PyObject *m, PyObject *allp) {
    long n = atomic_load(&netwait_threads);
    PyObject *fast = PySequence_Fast(allp, "nnetwait(allp)");
    if (!fast) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        PyObject *p = PySequence_Fast_GET_ITEM(fast, i);
        if (PyObject_TypeCheck(p, &PType)) n += atomic_load(&P_CAST(p)->nnetwait);
    }
    Py_DECREF(fast);
    return PyLong_FromLong(n);
}

PyObject *m_netpoll_stats(PyObject *m, PyObject *u) {
    return Py_BuildValue("{sLsLsL}",
                         "ready_local", (long long)atomic_load(&stat_ready_local),
                         "ready_remote", (long long)atomic_load(&stat_ready_remote),
                         "accept_backoff", (long long)atomic_load(&netstat_accept_backoff));
}

static void after_fork_child(void) { atomic_fetch_add(&fork_gen, 1); }

/* module init: types' interned names and error defaults until netpoll_init */
int netpoll_module_init(void) {
    if (!(s_io_wait = PyUnicode_InternFromString("IO wait"))) return -1;
    if (!(s_io_close = PyUnicode_InternFromString("IO close"))) return -1;
    ErrClosed = Py_NewRef(PyExc_OSError);
    ErrTimeout = Py_NewRef(PyExc_TimeoutError);
    pthread_atfork(NULL, NULL, after_fork_child);
    return 0;
}

PyObject *m_netpoll_init(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"errclosed", "timeouterror", NULL};
    PyObject *a[2];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", kwl, &a[0], &a[1])) return NULL;
    Py_XSETREF(ErrClosed, Py_NewRef(a[0]));
    Py_XSETREF(ErrTimeout, Py_NewRef(a[1]));
    Py_RETURN_NONE;
}
