/* pygmp netpoller, macOS / *BSD: kqueue with EV_CLEAR.  See netpoll.h.
 *
 * A waiter is broken with an EVFILT_USER event where the system has one
 * (macOS, FreeBSD, NetBSD >= 10, DragonFly) and with a self-pipe otherwise
 * (or if registering EVFILT_USER fails at run time).  Define NP_NO_EVFILT_USER
 * (e.g. CFLAGS=-DNP_NO_EVFILT_USER) to force the pipe, for testing. */
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__) || \
    defined(PYGMP_NETPOLL_KQUEUE)   /* forced: e.g. Linux with libkqueue */

#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netpoll.h"

#if defined(NP_NO_EVFILT_USER) && defined(EVFILT_USER)
#undef EVFILT_USER
#endif

#define NP_USER_IDENT 0x70676dU   /* ident of our EVFILT_USER event */

struct np_poller {
    int kq;
    int use_user;        /* 1: EVFILT_USER; 0: self-pipe */
    int rfd, wfd;        /* self-pipe ends, -1 when unused */
    int wake_pending;    /* 1 while a break is signalled but not yet consumed */
};

/* udata is `void *` on most systems and `intptr_t` on older NetBSD:
 * convert through uintptr_t and the field's own type. */
#define NP_SET_UDATA(kev, tok) \
    ((kev).udata = (__typeof__((kev).udata))(uintptr_t)(tok))
#define NP_GET_UDATA(kev) ((uint64_t)(uintptr_t)(kev).udata)

static int set_fd_flags(int fd, int nonblock)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    if (nonblock) {
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -1;
    }
    return 0;
}

static int setup_pipe(np_poller *p)
{
    int fds[2];
    struct kevent kev;

    if (pipe(fds) < 0)
        return -1;
    p->rfd = fds[0];
    p->wfd = fds[1];
    if (set_fd_flags(p->rfd, 1) < 0 || set_fd_flags(p->wfd, 1) < 0)
        return -1;
    /* Level-triggered: a pending byte cannot be missed; drained when seen. */
    EV_SET(&kev, p->rfd, EVFILT_READ, EV_ADD, 0, 0, 0);
    NP_SET_UDATA(kev, (uintptr_t)-1);
    return kevent(p->kq, &kev, 1, NULL, 0, NULL) < 0 ? -1 : 0;
}

np_poller *np_open(void)
{
    np_poller *p = calloc(1, sizeof *p);
    int saved;

    if (p == NULL)
        return NULL;
    p->rfd = p->wfd = -1;
    p->kq = kqueue();
    if (p->kq < 0) {
        saved = errno;
        free(p);
        errno = saved;
        return NULL;
    }
    if (set_fd_flags(p->kq, 0) < 0)
        goto fail;
#ifdef EVFILT_USER
    {
        struct kevent kev;
        EV_SET(&kev, NP_USER_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, 0);
        if (kevent(p->kq, &kev, 1, NULL, 0, NULL) == 0) {
            p->use_user = 1;
            return p;
        }
    }
#endif
    if (setup_pipe(p) < 0)
        goto fail;
    return p;

fail:
    saved = errno;
    np_close(p);
    errno = saved;
    return NULL;
}

void np_close(np_poller *p)
{
    if (p == NULL)
        return;
    if (p->rfd >= 0)
        close(p->rfd);
    if (p->wfd >= 0)
        close(p->wfd);
    if (p->kq >= 0)
        close(p->kq);
    free(p);
}

int np_add(np_poller *p, int fd, uint64_t token)
{
    struct kevent ch[2];
    int saved;

    if (token == NP_TOKEN_RESERVED || token > (uint64_t)UINTPTR_MAX) {
        errno = EINVAL;
        return -1;
    }
    EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, 0);
    NP_SET_UDATA(ch[0], token);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, 0);
    NP_SET_UDATA(ch[1], token);
    if (kevent(p->kq, ch, 2, NULL, 0, NULL) == 0)
        return 0;
    /* Processing may have stopped after the first change: undo it. */
    saved = errno;
    EV_SET(&ch[0], fd, EVFILT_READ, EV_DELETE, 0, 0, 0);
    (void)kevent(p->kq, ch, 1, NULL, 0, NULL);
    errno = saved;
    return -1;
}

int np_del(np_poller *p, int fd)
{
    struct kevent ch;
    int r1, r2, saved;

    /* One change per call, so a missing filter does not stop the other. */
    EV_SET(&ch, fd, EVFILT_READ, EV_DELETE, 0, 0, 0);
    r1 = kevent(p->kq, &ch, 1, NULL, 0, NULL);
    saved = errno;
    EV_SET(&ch, fd, EVFILT_WRITE, EV_DELETE, 0, 0, 0);
    r2 = kevent(p->kq, &ch, 1, NULL, 0, NULL);
    if (r1 < 0 && r2 < 0) {
        errno = saved;
        return -1;
    }
    return 0;
}

static void consume_break(np_poller *p)
{
    if (!p->use_user) {
        char buf[64];
        ssize_t r;
        do {
            r = read(p->rfd, buf, sizeof buf);
        } while (r > 0 || (r < 0 && errno == EINTR));
    }
    /* EVFILT_USER was registered with EV_CLEAR: retrieving it reset it.
     * Clear the flag only after draining (see netpoll_epoll.c). */
    __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
}

int np_wait(np_poller *p, np_event *evs, int max, int timeout_ms)
{
    struct kevent kev[NP_MAX_EVENTS];
    struct timespec ts, *tsp = NULL;
    int n, i, out = 0;

    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (max > NP_MAX_EVENTS)
        max = NP_MAX_EVENTS;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }

    n = kevent(p->kq, NULL, 0, kev, max, tsp);
    if (n < 0)
        return errno == EINTR ? 0 : -1;

    for (i = 0; i < n; i++) {
        const struct kevent *k = &kev[i];
        uint32_t f = 0;

#ifdef EVFILT_USER
        if (p->use_user && k->filter == EVFILT_USER &&
            k->ident == (uintptr_t)NP_USER_IDENT) {
            consume_break(p);
            continue;
        }
#endif
        if (!p->use_user && k->filter == EVFILT_READ &&
            k->ident == (uintptr_t)p->rfd) {
            consume_break(p);
            continue;
        }
        if (k->flags & EV_ERROR) {
            /* Only change-list errors carry EV_ERROR and we pass none here;
             * report it as an error on the fd so both waiters retry. */
            f = NP_READ | NP_WRITE | NP_ERR;
        } else if (k->filter == EVFILT_READ) {
            f |= NP_READ;
            if (k->flags & EV_EOF) {
                /* Some systems tell a pipe writer that the reader went away
                 * only through the read filter: wake a writer too; its write
                 * then fails with EPIPE or succeeds. */
                f |= NP_HUP | NP_WRITE;
                if (k->fflags != 0)
                    f |= NP_ERR;   /* socket error code in fflags */
            }
        } else if (k->filter == EVFILT_WRITE) {
            f |= NP_WRITE;
            if (k->flags & EV_EOF) {
                f |= NP_HUP;
                if (k->fflags != 0)
                    f |= NP_ERR | NP_READ;
            }
        } else {
            continue;
        }
        evs[out].token = NP_GET_UDATA(*k);
        evs[out].flags = f;
        evs[out]._pad = 0;
        out++;
    }
    return out;
}

int np_break(np_poller *p)
{
    int expected = 0;
    int r;

    if (!__atomic_compare_exchange_n(&p->wake_pending, &expected, 1, 0,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return 0;   /* a break is already pending: coalesce */
#ifdef EVFILT_USER
    if (p->use_user) {
        struct kevent kev;
        EV_SET(&kev, NP_USER_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, 0);
        do {
            r = kevent(p->kq, &kev, 1, NULL, 0, NULL);
        } while (r < 0 && errno == EINTR);
    } else
#endif
    {
        char c = 0;
        ssize_t w;
        do {
            w = write(p->wfd, &c, 1);
        } while (w < 0 && errno == EINTR);
        /* EAGAIN: the pipe is full, so a wake is already pending. */
        r = (w < 0 && errno != EAGAIN) ? -1 : 0;
    }
    if (r < 0) {
        int saved = errno;
        __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
        errno = saved;
        return -1;
    }
    return 0;
}

#endif /* kqueue platforms */
