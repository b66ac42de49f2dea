#include "runtime.h"
#include <sys/mman.h>
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
PyObject *m_install_stack_cache(PyObject *m, PyObject *arg) {
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

