/* pygmp netpoller, Linux: epoll (edge-triggered) + eventfd.  See netpoll.h. */
#ifdef __linux__

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "netpoll.h"

#ifndef EPOLLRDHUP
#define EPOLLRDHUP 0x2000
#endif

struct np_poller {
    int epfd;
    int evfd;            /* eventfd that np_break() writes to */
    int wake_pending;    /* 1 while a break is written but not yet consumed */
};

np_poller *np_open(void)
{
    np_poller *p = calloc(1, sizeof *p);
    struct epoll_event ev;
    int saved;

    if (p == NULL)
        return NULL;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        goto fail;
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->evfd < 0)
        goto fail_ep;
    /* Level-triggered on purpose: a pending break can never be missed; it is
     * drained by np_wait() when seen. */
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = NP_TOKEN_RESERVED;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0)
        goto fail_ev;
    return p;

fail_ev:
    saved = errno;
    close(p->evfd);
    errno = saved;
fail_ep:
    saved = errno;
    close(p->epfd);
    errno = saved;
fail:
    saved = errno;
    free(p);
    errno = saved;
    return NULL;
}

void np_close(np_poller *p)
{
    if (p == NULL)
        return;
    close(p->evfd);
    close(p->epfd);
    free(p);
}

int np_add(np_poller *p, int fd, uint64_t token)
{
    struct epoll_event ev;

    if (token == NP_TOKEN_RESERVED) {
        errno = EINVAL;
        return -1;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = token;
    return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int np_del(np_poller *p, int fd)
{
    struct epoll_event ev;   /* kernels before 2.6.9 need a non-NULL pointer */

    memset(&ev, 0, sizeof ev);
    return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}

static void consume_break(np_poller *p)
{
    uint64_t v;
    ssize_t r;

    do {
        r = read(p->evfd, &v, sizeof v);
    } while (r < 0 && errno == EINTR);
    /* Clear the flag only after draining: a break that lands between the two
     * finds the flag still set and skips its write, which is fine because this
     * waiter is returning anyway and its caller re-checks state afterwards.
     * The other order could leave the flag set with nothing in the eventfd,
     * and every later break would be skipped. */
    __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
}

int np_wait(np_poller *p, np_event *evs, int max, int timeout_ms)
{
    struct epoll_event kev[NP_MAX_EVENTS];
    int n, i, out = 0;

    if (max <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (max > NP_MAX_EVENTS)
        max = NP_MAX_EVENTS;
    if (timeout_ms < 0)
        timeout_ms = -1;

    n = epoll_wait(p->epfd, kev, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;

    for (i = 0; i < n; i++) {
        uint32_t e = kev[i].events;
        uint32_t f = 0;

        if (kev[i].data.u64 == NP_TOKEN_RESERVED) {
            consume_break(p);
            continue;
        }
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            f |= NP_READ;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            f |= NP_WRITE;
        if (e & EPOLLERR)
            f |= NP_ERR;
        if (e & (EPOLLHUP | EPOLLRDHUP))
            f |= NP_HUP;
        if (f == 0)
            continue;
        evs[out].token = kev[i].data.u64;
        evs[out].flags = f;
        evs[out]._pad = 0;
        out++;
    }
    return out;
}

int np_break(np_poller *p)
{
    uint64_t one = 1;
    int expected = 0;
    ssize_t r;

    /* Only the first break since the last consumption pays for a syscall. */
    if (!__atomic_compare_exchange_n(&p->wake_pending, &expected, 1, 0,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return 0;
    do {
        r = write(p->evfd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EAGAIN) {
        /* Nothing was signalled: let the next caller try again. */
        int saved = errno;
        __atomic_store_n(&p->wake_pending, 0, __ATOMIC_SEQ_CST);
        errno = saved;
        return -1;
    }
    /* EAGAIN means the counter is saturated, i.e. a wake is already pending. */
    return 0;
}

#endif /* __linux__ */
