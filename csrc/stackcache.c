#include "runtime.h"
#include <pthread.h>
#include <sys/mman.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
/*
 * The interpreter data stacks of goroutine greenlets (Python 3.11+).
 *
 * CPython keeps a thread's Python frames in a chain of "data-stack chunks"
 * (tstate->datastack_chunk/top/limit, Python/pystate.c push_chunk), taken from
 * the object arena allocator, 16 KiB at a time.  greenlet saves and restores
 * those three pointers on every switch and starts each new greenlet with none,
 * so every greenlet that runs Python code gets its own 16 KiB root chunk: an
 * mmap at start, a munmap at death, and at least one resident 4 KiB page for
 * as long as it lives, although a parked goroutine's frames take a few hundred
 * bytes of it.  This file does three things about that.
 *
 * 1. A chunk cache.  It wraps the arena allocator for blocks of exactly 16 KiB
 *    (pymalloc's own arenas are 1 MiB and pass straight through).  Chunks are
 *    carved 64 at a time from 1 MiB slabs (one mmap instead of 64) and freed
 *    ones go on a LIFO list, `warm`, and are reused warm.  Chunks are never
 *    unmapped one by one (that splits the slab's mapping: measured as the main
 *    cost of greenlet death); their pages are given back with MADV_DONTNEED and
 *    the chunk moves to the `cold` list, address range kept, as Go's stacks.
 *
 * 2. Small roots.  A goroutine greenlet calls stackcache_small_root() first
 *    thing, before any Python frame exists: it points the thread state at a
 *    small root chunk (`ROOT_SLOT` bytes, several to a page, carved from a
 *    16 KiB "root block" taken from the cache) instead of letting CPython
 *    allocate a 16 KiB one.  CPython's own rules keep this safe: frames are
 *    pushed below datastack_limit only; when the next frame does not fit,
 *    push_chunk links a normal 16 KiB chunk after ours, and popping back out of
 *    it frees that chunk (through the arena allocator: this cache) and restores
 *    our root from its header; the root itself is never popped (its first frame
 *    starts at data[1], as push_chunk does for a root), and greenlet frees the
 *    chain through the arena allocator when the greenlet ends or dies, which is
 *    where a small root comes back here (recognised by its size and a tag).
 *    A parked goroutine then pays its frames' bytes, not a page.
 *
 * 3. A scavenger (Go's bgscavenge, simplified): stackcache_scavenge(), called
 *    about once a second by sysmon, gives back the pages of the warm chunks
 *    that nobody used since the previous call (the bottom of the LIFO below
 *    its low-water mark), keeping KEEP_WARM of them.  A steady workload reuses
 *    its chunks within a period and keeps them; after a burst the idle ones go
 *    back within two periods.  The madvise calls run outside the lock, on
 *    chunks that no list holds meanwhile, adjacent chunks merged into one call.
 *    A hard cap (`maxwarm`, install_stack_cache's argument) also bounds the
 *    warm list if nobody scavenges.  The same pass trims C malloc (glibc's
 *    malloc_trim) when its free memory grew by TRIM_STEP since the last trim:
 *    greenlets' saved C stacks are malloc'd, and after a burst glibc keeps
 *    their freed pages (gevent's RSS stays up for that reason too).
 *
 * Locking: every list and counter here is guarded by sc_mu, a pthread mutex
 * that is never held across a system call, across Python code or while
 * waiting for the GIL, so the hooks (called by CPython with the GIL held) and
 * the scavenger (any thread, GIL or not) may run concurrently; the GIL is not
 * relied on.  On a free-threaded build nothing here is installed (the data
 * stacks are then left to CPython; the hooks would be thread-safe, but that
 * combination is untested).
 */
#define STACK_CHUNK (16 * 1024)
#define SLAB_CHUNKS 64
#define KEEP_WARM 64              /* warm chunks the scavenger always keeps (1 MiB) */
#define BLOCK_HDR 64              /* a root block's header */
#define TRIM_STEP (8 << 20)        /* trim malloc when its free bytes grew by this */
#define ROOT_TAG ((uintptr_t)0x9e3779b97f4a7c15ull)

static pthread_mutex_t sc_mu = PTHREAD_MUTEX_INITIALIZER;
static int installed;
static PyObjectArenaAllocator orig_arena;

/* guarded by sc_mu */
static void **warm, **cold;
static Py_ssize_t nwarm, warmcap, ncold, coldcap;
static Py_ssize_t maxwarm;        /* hard cap on warm chunks */
static Py_ssize_t minwarm;        /* low-water mark of nwarm since the last scavenge */
static char *slab_next;           /* next uncarved chunk of the current slab */
static int slab_left;
static int scavenging;
static long long n_carved, n_inuse, n_released, n_scavenges, n_capped, n_trims;
static size_t trim_base;          /* malloc's free bytes after the last trim (or the least since) */

/* Small roots.  A root block is a 16 KiB chunk: header, then nslots slots of
 * root_slot bytes; a slot is [block pointer][tag] then the _PyStackChunk that
 * CPython sees (root_chunk bytes).  Guarded by sc_mu. */
typedef struct rootblock {
    struct rootblock *prev, *next;   /* the list of blocks with a free slot */
    uint32_t freemask;               /* bit i: slot i is free */
    int nfree;
} rootblock;
static Py_ssize_t root_slot, root_chunk;   /* 0: small roots off */
static int root_nslots;
static rootblock *partial;                 /* blocks with at least one free slot */
static long long n_roots, n_rootblocks, n_roots_fallback;

#define LOCK() pthread_mutex_lock(&sc_mu)
#define UNLOCK() pthread_mutex_unlock(&sc_mu)

static int push(void ***arr, Py_ssize_t *n, Py_ssize_t *cap, void *p) {
    if (*n == *cap) {
        Py_ssize_t ncap = *cap ? *cap * 2 : 256;
        void **a = realloc(*arr, sizeof(void *) * (size_t)ncap);   /* not PyMem: no GIL here */
        if (!a) return -1;
        *arr = a;
        *cap = ncap;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

/* A 16 KiB chunk; caller holds sc_mu.  NULL: out of memory. */
static void *chunk_get(void) {
    n_inuse++;
    if (nwarm > 0) {
        void *p = warm[--nwarm];
        if (nwarm < minwarm) minwarm = nwarm;
        return p;
    }
    if (ncold > 0) return cold[--ncold];
    if (slab_left == 0) {
        /* orig_arena.alloc is an mmap (no Python, no GIL needed) */
        char *slab = orig_arena.alloc(orig_arena.ctx, (size_t)STACK_CHUNK * SLAB_CHUNKS);
        if (!slab) { n_inuse--; return NULL; }
        slab_next = slab;
        slab_left = SLAB_CHUNKS;
    }
    void *p = slab_next;
    slab_next += STACK_CHUNK;
    slab_left--;
    n_carved++;
    return p;
}

/* Give a chunk back; caller holds sc_mu.  Returns a chunk that the caller must
 * release (madvise, then chunk_put_cold) after unlocking, or NULL. */
static void *chunk_put(void *p) {
    n_inuse--;
    if (nwarm < maxwarm && push(&warm, &nwarm, &warmcap, p) == 0) return NULL;
    n_capped++;
    return p;
}

static void release_pages(void *p, size_t len) {
#ifdef MADV_DONTNEED
    madvise(p, len, MADV_DONTNEED);
#elif defined(MADV_FREE)
    madvise(p, len, MADV_FREE);
#endif
}

static void chunk_put_cold(void *p) {   /* pages already released; caller holds sc_mu */
    if (push(&cold, &ncold, &coldcap, p) < 0) {
        /* out of memory for the list: keep the chunk out of circulation (its
           pages are gone, its address range stays reserved) */
    }
}

static void *cached_arena_alloc(void *ctx, size_t size) {
    if (size != STACK_CHUNK) return orig_arena.alloc(orig_arena.ctx, size);
    LOCK();
    void *p = chunk_get();
    UNLOCK();
    return p;
}

/* ------------------------------------------------------------ small roots */

static inline int is_root(void *ptr, size_t size) {
    if (!root_chunk || size != (size_t)root_chunk) return 0;
    uintptr_t *h = (uintptr_t *)ptr - 2;
    return h[1] == ((uintptr_t)ptr ^ ROOT_TAG);
}

static inline char *slot_addr(rootblock *b, int i) {
    return (char *)b + BLOCK_HDR + (size_t)i * (size_t)root_slot;
}

static void list_del(rootblock *b) {
    if (b->prev) b->prev->next = b->next; else partial = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = NULL;
}
static void list_add(rootblock *b) {
    b->prev = NULL;
    b->next = partial;
    if (partial) partial->prev = b;
    partial = b;
}

/* A small root chunk for CPython (the pointer it will see); caller holds sc_mu. */
static _PyStackChunk *root_get(void) {
    rootblock *b = partial;
    if (!b) {
        b = chunk_get();
        if (!b) return NULL;
        b->prev = b->next = NULL;
        b->freemask = root_nslots == 32 ? 0xffffffffu : ((1u << root_nslots) - 1);
        b->nfree = root_nslots;
        list_add(b);
        n_rootblocks++;
    }
    int i = __builtin_ctz(b->freemask);
    b->freemask &= ~(1u << i);
    if (--b->nfree == 0) list_del(b);
    uintptr_t *h = (uintptr_t *)slot_addr(b, i);
    char *chunk = (char *)(h + 2);
    h[0] = (uintptr_t)b;
    h[1] = (uintptr_t)chunk ^ ROOT_TAG;
    n_roots++;
    return (_PyStackChunk *)chunk;
}

/* Caller holds sc_mu.  Returns a chunk to release after unlocking, or NULL. */
static void *root_put(void *ptr) {
    uintptr_t *h = (uintptr_t *)ptr - 2;
    rootblock *b = (rootblock *)h[0];
    int i = (int)(((char *)h - ((char *)b + BLOCK_HDR)) / root_slot);
    h[1] = 0;   /* a second free of this root is no longer recognised */
    n_roots--;
    b->freemask |= 1u << i;
    if (b->nfree++ == 0) list_add(b);
    if (b->nfree == root_nslots) {   /* the whole block is free: back to the cache */
        list_del(b);
        n_rootblocks--;
        return chunk_put(b);
    }
    return NULL;
}

static void cached_arena_free(void *ctx, void *ptr, size_t size) {
    void *rel;
    if (size == STACK_CHUNK) {
        LOCK();
        rel = chunk_put(ptr);
    } else if (is_root(ptr, size)) {
        LOCK();
        rel = root_put(ptr);
    } else {
        orig_arena.free(orig_arena.ctx, ptr, size);
        return;
    }
    UNLOCK();
    if (rel) {   /* past the hard cap: give its pages back now */
        release_pages(rel, STACK_CHUNK);
        LOCK();
        n_released++;
        chunk_put_cold(rel);
        UNLOCK();
    }
}

/* First thing in a goroutine greenlet, before any Python frame: give this
 * greenlet a small root chunk.  Needs the GIL (reads this thread's state).
 * Returns 1 if it did, 0 if it left the data stack to CPython (small roots
 * off, the cache not installed, or this greenlet already has frames). */
int stackcache_small_root(void) {
    if (!installed || !root_chunk) return 0;
    PyThreadState *ts = PyThreadState_Get();
    if (ts->datastack_chunk || ts->datastack_top || ts->datastack_limit) return 0;
    LOCK();
    _PyStackChunk *c = root_get();
    if (!c) n_roots_fallback++;
    UNLOCK();
    if (!c) return 0;
    c->previous = NULL;
    c->size = (size_t)root_chunk;
    c->top = 0;
    ts->datastack_chunk = c;
    /* the first frame goes at data[1], as push_chunk places a root's: then
       _PyThreadState_PopFrame never pops (frees) the root */
    ts->datastack_top = &c->data[1];
    ts->datastack_limit = (PyObject **)((char *)c + root_chunk);
    return 1;
}

/* ------------------------------------------------------------ the scavenger */

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* C malloc's free bytes (glibc), or 0 where unknown. */
static size_t malloc_free_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.fordblks;
#else
    return 0;
#endif
}

/* Give C malloc's free pages back when its free memory grew by TRIM_STEP
 * since the last trim (force: whenever it holds TRIM_STEP).  No lock held. */
static void trim_malloc(int force) {
#ifdef __GLIBC__
    size_t fb = malloc_free_bytes();
    LOCK();
    if (fb < trim_base) trim_base = fb;
    int go = fb >= trim_base + TRIM_STEP || (force && fb >= TRIM_STEP);
    UNLOCK();
    if (!go) return;
    malloc_trim(0);
    LOCK();
    trim_base = fb;
    n_trims++;
    UNLOCK();
#else
    (void)force;
#endif
}

/* Give back the pages of the warm chunks that nobody used since the previous
 * call, keeping KEEP_WARM of them (force: every warm chunk beyond KEEP_WARM),
 * then trim C malloc (trim_malloc).  Any thread, with or without the GIL, no
 * runtime lock held; call it about once a second.  Returns the number of
 * bytes of data-stack chunks given back. */
Py_ssize_t stackcache_scavenge(int force) {
    if (!installed) return 0;
    LOCK();
    if (scavenging) { UNLOCK(); return 0; }
    Py_ssize_t idle = force ? nwarm : (minwarm < nwarm ? minwarm : nwarm);
    Py_ssize_t n = idle - KEEP_WARM;
    void **batch = NULL;
    if (n > 0) batch = malloc(sizeof(void *) * (size_t)n);
    if (n <= 0 || !batch) {
        minwarm = nwarm;
        UNLOCK();
        trim_malloc(force);
        return 0;
    }
    /* the bottom of the LIFO is the coldest: take it out of circulation */
    memcpy(batch, warm, sizeof(void *) * (size_t)n);
    memmove(warm, warm + n, sizeof(void *) * (size_t)(nwarm - n));
    nwarm -= n;
    minwarm = nwarm;
    scavenging = 1;
    n_scavenges++;
    UNLOCK();
    qsort(batch, (size_t)n, sizeof(void *), cmp_ptr);
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t j = i + 1;
        while (j < n && (char *)batch[j] == (char *)batch[j - 1] + STACK_CHUNK) j++;
        release_pages(batch[i], (size_t)(j - i) * STACK_CHUNK);
        i = j;
    }
    LOCK();
    for (Py_ssize_t i = n; i-- > 0;) chunk_put_cold(batch[i]);
    n_released += n;
    scavenging = 0;
    UNLOCK();
    free(batch);
    trim_malloc(force);
    return n * STACK_CHUNK;
}

/* Warm chunks beyond what the scavenger keeps (a caller that sleeps while
 * everything is idle should wake within a few seconds while this is > 0). */
Py_ssize_t stackcache_excess(void) {
    LOCK();
    Py_ssize_t n = nwarm - KEEP_WARM;
    UNLOCK();
    return n > 0 ? n : 0;
}

static void sc_prepare(void) { LOCK(); }
static void sc_parent(void) { UNLOCK(); }
static void sc_child(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    sc_mu = m;
    scavenging = 0;   /* a scavenge in flight in another thread: its batch is lost */
}

/* ------------------------------------------------------------ Python face */

PyObject *m_install_stack_cache(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
#ifdef Py_GIL_DISABLED
    Py_RETURN_FALSE;
#else
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "install_stack_cache(maxwarm, root=0)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t root = nargs > 1 ? PyLong_AsSsize_t(args[1]) : 0;
    if (root == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || root < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    if (root) {
        /* a slot holds our two words, the chunk header and at least a few frames */
        if (root < 256 || root > 8192 || root % 16) {
            PyErr_SetString(PyExc_ValueError, "root slot must be 256..8192 bytes, a multiple of 16");
            return NULL;
        }
    }
    if (installed) Py_RETURN_FALSE;   /* once per process */
    maxwarm = n;
    if (root) {
        int ns = (int)((STACK_CHUNK - BLOCK_HDR) / root);
        root_nslots = ns > 32 ? 32 : ns;
        root_slot = root;
        root_chunk = root - 2 * (Py_ssize_t)sizeof(uintptr_t);
    }
    pthread_atfork(sc_prepare, sc_parent, sc_child);
    PyObject_GetArenaAllocator(&orig_arena);
    PyObjectArenaAllocator a = {NULL, cached_arena_alloc, cached_arena_free};
    PyObject_SetArenaAllocator(&a);
    installed = 1;
    Py_RETURN_TRUE;
#endif
}

PyObject *m_stackcache_scavenge(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    int force = nargs > 0 ? PyObject_IsTrue(args[0]) : 0;
    if (force < 0) return NULL;
    Py_ssize_t r;
    Py_BEGIN_ALLOW_THREADS
    r = stackcache_scavenge(force);
    Py_END_ALLOW_THREADS
    return PyLong_FromSsize_t(r);
}

PyObject *m_stackcache_stats(PyObject *m, PyObject *u) {
    LOCK();
    long long v[] = {installed, nwarm, ncold, n_inuse, n_carved, n_released, n_scavenges,
                     n_capped, maxwarm, root_slot, root_nslots, n_roots, n_rootblocks,
                     n_roots_fallback, minwarm, n_trims};
    UNLOCK();
    return Py_BuildValue("{sLsLsLsLsLsLsLsLsLsLsLsLsLsLsLsL}",
        "installed", v[0], "warm", v[1], "cold", v[2], "inuse", v[3], "carved", v[4],
        "released", v[5], "scavenges", v[6], "capped", v[7], "maxwarm", v[8],
        "root_slot", v[9], "root_nslots", v[10], "roots", v[11], "rootblocks", v[12],
        "roots_fallback", v[13], "minwarm", v[14], "malloc_trims", v[15]);
}

/* Bytes of data stack the calling greenlet uses (every chunk of its chain up
 * to the top), and how many chunks: for measurements and tests. */
PyObject *m_datastack_used(PyObject *m, PyObject *u) {
    PyThreadState *ts = PyThreadState_Get();
    _PyStackChunk *c = ts->datastack_chunk;
    Py_ssize_t used = 0, n = 0;
    if (c) {
        used = (char *)ts->datastack_top - (char *)c;
        n = 1;
        for (_PyStackChunk *q = c->previous; q; q = q->previous, n++)
            used += (Py_ssize_t)(offsetof(_PyStackChunk, data) + q->top * sizeof(PyObject *));
    }
    return Py_BuildValue("(nnn)", used, n, c ? (Py_ssize_t)c->size : (Py_ssize_t)0);
}
