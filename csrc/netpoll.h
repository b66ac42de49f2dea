/*
 * pygmp netpoller: one small C API over the platform's readiness facility.
 *
 *   netpoll_epoll.c   Linux: epoll, edge-triggered, eventfd to break a waiter
 *   netpoll_kqueue.c  macOS / *BSD: kqueue with EV_CLEAR, EVFILT_USER (or a
 *                     pipe where EVFILT_USER is missing) to break a waiter
 *
 * Exactly one of them is compiled (netpoll_build.py picks it from
 * sys.platform, and each file is also guarded by #ifdef so compiling the other
 * one produces nothing).
 *
 * Contract
 * --------
 * - A poller is created by np_open() and destroyed by np_close().  np_close()
 *   must not run concurrently with any other call on the same poller.
 * - np_add() registers an fd for BOTH directions at once, edge-triggered: an
 *   event is reported when the fd becomes ready (a new edge), not while it stays
 *   ready.  Callers must keep reading/writing until EAGAIN before relying on a
 *   new event.  The fd should be non-blocking.
 * - Each registered fd carries a caller-chosen 64-bit token, reported back with
 *   its events.  NP_TOKEN_RESERVED (UINT64_MAX) is used internally and rejected
 *   by np_add() with EINVAL.  On platforms where pointers are narrower than 64
 *   bits, kqueue keeps the token in udata and tokens above UINTPTR_MAX are
 *   rejected with EINVAL.
 * - np_wait() fills at most `max` events (capped at NP_MAX_EVENTS per call) and
 *   returns how many; 0 on timeout, on EINTR, or when the only thing that
 *   happened was np_break(); -1 with errno on error.  The break event is
 *   consumed inside np_wait() and never reported.  timeout_ms < 0 blocks
 *   until an event or a break; 0 polls.
 *   Flags are folded as Go does: NP_READ is also set on hang-up / peer
 *   shutdown / error (so a reader wakes and sees EOF or the error), NP_WRITE
 *   is also set on hang-up / error.  NP_ERR and NP_HUP tell the raw cause.
 *   With kqueue, read and write readiness of one fd may come as two events
 *   with the same token in one batch.
 * - np_break() makes the np_wait() in progress on that poller return, or, if
 *   none is in progress, the next one return at once.  It may be called from
 *   any thread, any number of times: breaks that arrive before the waiter has
 *   consumed the pending one coalesce into a single wake-up (one syscall).
 *   A break is a hint: after np_wait() returns the caller re-checks its state.
 * - np_wait() may be called from several threads at once at the C level (its
 *   kernel-side buffer lives on the caller's stack), though a single waiter per
 *   poller is the intended use.
 * - After fork() the child must not use a poller inherited from the parent
 *   (epoll fds are shared with the parent; kqueue fds are not inherited at
 *   all): it opens a new one.
 */
#ifndef PYGMP_NETPOLL_H
#define PYGMP_NETPOLL_H

#include <stdint.h>

#define NP_READ   1u   /* readable (or EOF / hang-up / error: a read will not block) */
#define NP_WRITE  2u   /* writable (or hang-up / error: a write will not block) */
#define NP_ERR    4u   /* the kernel reported an error condition on the fd */
#define NP_HUP    8u   /* hang-up or peer shut down its writing side (EOF) */

#define NP_MAX_EVENTS 256
#define NP_TOKEN_RESERVED UINT64_MAX

typedef struct np_event {
    uint64_t token;
    uint32_t flags;
    uint32_t _pad;
} np_event;

typedef struct np_poller np_poller;

/* Create a poller and its break channel.  NULL with errno on failure. */
np_poller *np_open(void);
/* Close the poller's fds and free it.  NULL is accepted and ignored. */
void np_close(np_poller *p);
/* Register fd for read+write, edge-triggered, with token.  0 or -1/errno. */
int np_add(np_poller *p, int fd, uint64_t token);
/* Unregister fd.  0 or -1/errno (e.g. ENOENT if not registered). */
int np_del(np_poller *p, int fd);
/* Wait for events; see above.  Returns count, 0, or -1/errno. */
int np_wait(np_poller *p, np_event *evs, int max, int timeout_ms);
/* Wake the waiter (current or next).  0 or -1/errno. */
int np_break(np_poller *p);

#endif /* PYGMP_NETPOLL_H */
