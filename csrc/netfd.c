/* The fd (Go's internal/poll: fd_unix.go's FD, fd_mutex.go's fdMutex): a
 * non-blocking socket owned by its raw fd number, and the I/O loops around
 * the syscall, made here in C: try the syscall; EAGAIN -> park on the
 * pollDesc (netpoll.c pd_wait) and retry when readied; EINTR -> retry; any
 * other error -> OSError with its errno (the subclass socket would raise).
 * The syscalls run with the GIL held: the socket is non-blocking, and giving
 * the GIL up around a call that never blocks would only invite a hand-off.
 *
 * fdMutex (fd->mu guards everything below; a leaf lock):
 *   refs      operations in flight (and set_deadline, getsockname, ...): the
 *             fd number stays open while refs > 0
 *   rlocked   a read operation holds the read lock; others queue FIFO on rq
 *   wlocked   same for writes (wq); a reader and a writer run concurrently
 *   closing   close() began: new operations fail with ErrClosed
 *   state     0 open, 1 being destroyed, 2 destroyed (fd closed)
 *   cq        close() callers waiting for the destruction
 * A waiter parked on rq/wq/cq is a heap fdwaiter; the waker pops it under
 * fd->mu (that is the claim) and readies its G after unlocking; the lock is
 * handed over to a popped rq/wq waiter, never released in between.  A thread
 * G interrupted (Ctrl-C) while queued withdraws if it is still queued, else it
 * consumes the wake token and owns what it was handed.
 *
 * Close (Go's FD.Close): closing = 1 holding a reference, evict the pollDesc
 * (both I/O waiters wake with ErrClosed), drop the reference; whoever drops
 * the last one destroys: unregister from the poller, return the pollDesc to
 * the cache, close(fd), then wake every close() caller, which returns only
 * once the fd is closed.
 */
#include "runtime.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

typedef struct fdwaiter {
    PyObject *g;                /* strong */
    struct fdwaiter *next, *prev;
    char queued;
} fdwaiter;
typedef struct { fdwaiter *head, *tail; } fdwq;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    int sysfd, family, type;
    pollDesc *pd;               /* valid while state < 2; used only under a reference */
    int refs;
    char rlocked, wlocked, closing, state;   /* closing: written under mu, read racily via CLOSING() */
    fdwq rq, wq, cq;
} FDObject;

#define CLOSING(fd) __atomic_load_n(&(fd)->closing, __ATOMIC_RELAXED)

/* ============================================================ fdMutex */

static void q_push(fdwq *q, fdwaiter *w) {
    w->next = NULL; w->prev = q->tail;
    if (q->tail) q->tail->next = w; else q->head = w;
    q->tail = w;
    w->queued = 1;
}
static void q_unlink(fdwq *q, fdwaiter *w) {
    if (!w->queued) return;
    if (w->prev) w->prev->next = w->next; else q->head = w->next;
    if (w->next) w->next->prev = w->prev; else q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = 0;
}
static fdwaiter *q_pop(fdwq *q) {
    fdwaiter *w = q->head;
    if (w) q_unlink(q, w);
    return w;
}

/* Ready a G (reference consumed) preserving a pending exception. */
static void wake_g(PyObject *g) {
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    if (goready_c(G_CAST(g)) < 0) PyErr_WriteUnraisable(NULL);
    Py_DECREF(g);
    PyErr_Restore(et, ev, etb);
}

/* Park the current G on q.  Called with fd->mu held and w pushed; returns with
 * it released.  0: popped and readied; -1: interrupted (exception set), with
 * *handed = 1 if a waker popped it anyway (its token is consumed here). */
static int fdq_park(FDObject *fd, fdwq *q, fdwaiter *w, PyObject *reason, int *handed) {
    GObject *g = G_CAST(w->g);
    g->status = Gwaiting;
    g->waitsince = mono();
    pthread_mutex_unlock(&fd->mu);
    *handed = 0;
    if (gopark_c(g, reason) == 0) {
        g->status = Grunning;
        return 0;
    }
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    pthread_mutex_lock(&fd->mu);
    int withdrew = w->queued;
    q_unlink(q, w);
    pthread_mutex_unlock(&fd->mu);
    if (!withdrew) {
        *handed = 1;
        if (g->locked) {
            PyObject *x = PyObject_CallMethodNoArgs(g->sema, s_acquire);
            Py_XDECREF(x);
            PyErr_Clear();
        }
    }
    g->status = Grunning;
    PyErr_Restore(et, ev, etb);
    return -1;
}

static void fd_destroy(FDObject *fd);

/* Drop a reference, and with `mode` the direction lock (handing it to the next
 * queued op).  The last reference after close destroys.  Preserves a pending
 * exception. */
static void fd_release(FDObject *fd, int mode) {
    PyObject *next = NULL;
    int destroy = 0;
    pthread_mutex_lock(&fd->mu);
    if (mode) {
        fdwaiter *w = q_pop(mode == PD_READ ? &fd->rq : &fd->wq);
        if (w) next = Py_NewRef(w->g);
        else if (mode == PD_READ) fd->rlocked = 0;
        else fd->wlocked = 0;
    }
    if (--fd->refs == 0 && fd->closing && fd->state == 0) {
        fd->state = 1;
        destroy = 1;
    }
    pthread_mutex_unlock(&fd->mu);
    if (next) wake_g(next);
    if (destroy) fd_destroy(fd);
}

/* Take a reference (no direction lock): ErrClosed once closing. */
static int fd_incref(FDObject *fd) {
    pthread_mutex_lock(&fd->mu);
    if (fd->closing) {
        pthread_mutex_unlock(&fd->mu);
        PyErr_SetNone(ErrClosed);
        return -1;
    }
    fd->refs++;
    pthread_mutex_unlock(&fd->mu);
    return 0;
}

/* Start an operation in `mode`: a reference, then the direction lock (parking
 * FIFO behind other readers/writers), then the pollDesc's error check. */
static int fd_lock_op(FDObject *fd, int mode) {
    char *held = mode == PD_READ ? &fd->rlocked : &fd->wlocked;
    pthread_mutex_lock(&fd->mu);
    if (fd->closing) {
        pthread_mutex_unlock(&fd->mu);
        PyErr_SetNone(ErrClosed);
        return -1;
    }
    fd->refs++;
    if (!*held) {
        *held = 1;
        pthread_mutex_unlock(&fd->mu);
    } else {
        pthread_mutex_unlock(&fd->mu);
        PyObject *g = current_g("network I/O");
        fdwaiter *w = g ? PyMem_RawMalloc(sizeof(fdwaiter)) : NULL;
        if (!w) {
            if (g) { Py_DECREF(g); PyErr_NoMemory(); }
            fd_release(fd, 0);
            return -1;
        }
        w->g = g;
        fdwq *q = mode == PD_READ ? &fd->rq : &fd->wq;
        pthread_mutex_lock(&fd->mu);
        if (!*held) {           /* released meanwhile */
            *held = 1;
            pthread_mutex_unlock(&fd->mu);
        } else {
            q_push(q, w);
            int handed;
            int r = fdq_park(fd, q, w, s_io_wait, &handed);
            if (r < 0) {
                Py_DECREF(g);
                PyMem_RawFree(w);
                fd_release(fd, handed ? mode : 0);
                return -1;
            }
            /* the lock was handed to us by fd_release */
        }
        Py_DECREF(g);
        PyMem_RawFree(w);
    }
    if (pd_checkerr(fd->pd, mode) < 0) {
        fd_release(fd, mode);
        return -1;
    }
    return 0;
}

static void fd_destroy(FDObject *fd) {
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    pd_close(fd->pd);           /* unregister before close(fd) */
    int sfd = fd->sysfd;
    Py_BEGIN_ALLOW_THREADS      /* close() may linger (SO_LINGER) */
    close(sfd);
    Py_END_ALLOW_THREADS
    pthread_mutex_lock(&fd->mu);
    fd->pd = NULL;
    fd->sysfd = -1;
    __atomic_store_n(&fd->state, 2, __ATOMIC_RELAXED);
    Py_ssize_t n = 0;
    for (fdwaiter *w = fd->cq.head; w; w = w->next) n++;
    PyObject **gs = n ? PyMem_RawMalloc(sizeof(PyObject *) * n) : NULL;
    Py_ssize_t k = 0;
    fdwaiter *w;
    while ((w = q_pop(&fd->cq))) if (gs) gs[k++] = Py_NewRef(w->g);
    pthread_mutex_unlock(&fd->mu);
    for (Py_ssize_t i = 0; i < k; i++) wake_g(gs[i]);
    PyMem_RawFree(gs);
    PyErr_Restore(et, ev, etb);
}

/* ============================================================ the I/O loop */

typedef struct {
    char *buf;
    Py_ssize_t len;
    int flags;
    struct sockaddr_storage ss;
    socklen_t sslen;
} ioargs;
typedef ssize_t (*iofn)(FDObject *fd, ioargs *a);

static ssize_t sys_recv(FDObject *fd, ioargs *a) { return recv(fd->sysfd, a->buf, a->len, a->flags); }
static ssize_t sys_send(FDObject *fd, ioargs *a) {
    return send(fd->sysfd, a->buf, a->len, a->flags | MSG_NOSIGNAL);
}
static ssize_t sys_recvfrom(FDObject *fd, ioargs *a) {
    a->sslen = sizeof(a->ss);
    memset(&a->ss, 0, sizeof(a->ss));
    return recvfrom(fd->sysfd, a->buf, a->len, a->flags, (struct sockaddr *)&a->ss, &a->sslen);
}
static ssize_t sys_sendto(FDObject *fd, ioargs *a) {
    return sendto(fd->sysfd, a->buf, a->len, a->flags | MSG_NOSIGNAL,
                  (struct sockaddr *)&a->ss, a->sslen);
}

/* Retry `fn` around EINTR and EAGAIN (parking on the pollDesc) with the
 * direction lock held.  The syscall's result, or -1 with an exception. */
static ssize_t fd_retry(FDObject *fd, int mode, iofn fn, ioargs *a) {
    for (;;) {
        ssize_t n = fn(fd, a);
        if (n >= 0) return n;
        int e = errno;
        if (e == EINTR) {
            if (PyErr_CheckSignals() < 0) return -1;
            continue;
        }
        if (e == EAGAIN || e == EWOULDBLOCK) {
            if (pd_wait(fd->pd, mode, 0) < 0) return -1;
            continue;
        }
        errno = e;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}
static ssize_t fd_io(FDObject *fd, int mode, iofn fn, ioargs *a) {
    if (checkpreempt() < 0) return -1;      /* a runtime entry (HACKING.md "Preemption") */
    if (fd_lock_op(fd, mode) < 0) return -1;
    ssize_t n = fd_retry(fd, mode, fn, a);
    fd_release(fd, mode);
    return n;
}

/* ============================================================ addresses */

static PyObject *makesockaddr(struct sockaddr_storage *ss, socklen_t len) {
    char host[INET6_ADDRSTRLEN];
    switch (ss->ss_family) {
    case AF_INET: {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof host)) return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host)) return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    case AF_UNIX: {             /* as socket does: bytes for Linux's abstract names */
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
#ifdef __linux__
        if (plen > 0 && a->sun_path[0] == 0) return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)plen);
#endif
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, plen));
    }
    default:
        return Py_BuildValue("(iy#)", (int)ss->ss_family, ((struct sockaddr *)ss)->sa_data,
                             (Py_ssize_t)sizeof(((struct sockaddr *)ss)->sa_data));
    }
}

/* A Python address (as socket takes it, with a numeric host) -> sockaddr. */
static int getsockaddr(int family, PyObject *addr, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (family == AF_UNIX) {
        PyObject *b;
        if (PyUnicode_Check(addr)) b = PyUnicode_EncodeFSDefault(addr);
        else if (PyBytes_Check(addr)) b = Py_NewRef(addr);
        else if (PyByteArray_Check(addr)) b = PyBytes_FromObject(addr);
        else { PyErr_Format(PyExc_TypeError, "a unix socket address must be str or bytes, not %s", Py_TYPE(addr)->tp_name); return -1; }
        if (!b) return -1;
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        Py_ssize_t n = PyBytes_GET_SIZE(b);
        const char *p = PyBytes_AS_STRING(b);
        int abstract = n > 0 && p[0] == 0;
        if ((abstract && (size_t)n > sizeof a->sun_path) || (!abstract && (size_t)n >= sizeof a->sun_path)) {
            Py_DECREF(b);
            PyErr_SetString(PyExc_OSError, "AF_UNIX path too long");
            return -1;
        }
        a->sun_family = AF_UNIX;
        memcpy(a->sun_path, p, n);
        Py_DECREF(b);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 0 : 1));
        return 0;
    }
    if (family != AF_INET && family != AF_INET6) {
        PyErr_Format(PyExc_OSError, "pygmp.net: address family %d is not supported", family);
        return -1;
    }
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope = 0;
    if (!PyTuple_Check(addr)) {
        PyErr_Format(PyExc_TypeError, "%s address must be a tuple, not %s",
                     family == AF_INET ? "AF_INET" : "AF_INET6", Py_TYPE(addr)->tp_name);
        return -1;
    }
    if (!PyArg_ParseTuple(addr, family == AF_INET ? "si" : "si|II", &host, &port, &flowinfo, &scope))
        return -1;
    if (port < 0 || port > 0xffff) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535.");
        return -1;
    }
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (!host[0]) a->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (!strcmp(host, "<broadcast>")) a->sin_addr.s_addr = htonl(INADDR_BROADCAST);
        else if (inet_pton(AF_INET, host, &a->sin_addr) != 1) goto notnumeric;
        *len = sizeof *a;
        return 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET6;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host[0] ? host : "::", NULL, &hints, &res) != 0 || !res) goto notnumeric;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_flowinfo = htonl(flowinfo);
    if (scope) a->sin6_scope_id = scope;
    *len = sizeof *a;
    return 0;
notnumeric:
    PyErr_Format(PyExc_ValueError, "pygmp.net: %R is not a numeric address (resolve it first)", addr);
    return -1;
}

/* ============================================================ the type */

static int fd_setup(FDObject *fd, int sysfd, int family, int type) {
    int fl = fcntl(sysfd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(sysfd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(sysfd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    fd->pd = pd_open(sysfd);
    if (!fd->pd) return -1;
    fd->sysfd = sysfd;
    fd->family = family;
    fd->type = type;
    return 0;
}

static PyObject *FD_alloc(PyTypeObject *t) {
    FDObject *fd = (FDObject *)t->tp_alloc(t, 0);
    if (!fd) return NULL;
    pthread_mutex_init(&fd->mu, NULL);
    fd->sysfd = -1;
    fd->state = 2;              /* nothing to destroy until fd_setup */
    return (PyObject *)fd;
}

/* FD(fileno, family, type): take over a raw fd number (the FD closes it).
 * FD(sock): a socket.socket someone else keeps: the FD works on a duplicate of
 * its fd (Go's FileConn / FileListener), so closing either leaves the other. */
static PyObject *FD_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
    int sysfd = -1, family = 0, type = 0;
    if (PyTuple_GET_SIZE(args) == 1 && !PyLong_Check(PyTuple_GET_ITEM(args, 0))) {
        PyObject *sock = PyTuple_GET_ITEM(args, 0);
        PyObject *f = PyObject_GetAttrString(sock, "family");
        PyObject *ty = f ? PyObject_GetAttrString(sock, "type") : NULL;
        PyObject *n = ty ? PyObject_CallMethod(sock, "fileno", NULL) : NULL;
        family = f ? (int)PyLong_AsLong(f) : -1;
        type = ty ? (int)PyLong_AsLong(ty) : -1;
        int orig = n ? (int)PyLong_AsLong(n) : -1;
        Py_XDECREF(f);
        Py_XDECREF(ty);
        Py_XDECREF(n);
        if (PyErr_Occurred()) return NULL;
        if (orig < 0 || (sysfd = fcntl(orig, F_DUPFD_CLOEXEC, 0)) < 0) {
            if (orig < 0) errno = EBADF;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    } else if (!PyArg_ParseTuple(args, "iii", &sysfd, &family, &type)) {
        return NULL;
    }
    FDObject *fd = (FDObject *)FD_alloc(t);
    if (!fd || fd_setup(fd, sysfd, family, type) < 0) {
        close(sysfd);           /* ours in both forms now */
        Py_XDECREF(fd);
        return NULL;
    }
    fd->state = 0;
    return (PyObject *)fd;
}

static void FD_dealloc(FDObject *fd) {
    /* refs == 0: every operation holds a reference to the object */
    if (fd->state == 0) {
        fd->closing = 1;
        fd->state = 1;
        fd_destroy(fd);
    }
    pthread_mutex_destroy(&fd->mu);
    Py_TYPE(fd)->tp_free((PyObject *)fd);
}

static PyObject *FD_repr(FDObject *fd) {
    return PyUnicode_FromFormat("<FD %d%s>", fd->sysfd, CLOSING(fd) ? " closing" : "");
}

/* ------------------------------------------------------------ reads */

static int parse_size(PyObject *o, Py_ssize_t *n) {
    *n = PyNumber_AsSsize_t(o, PyExc_OverflowError);
    return (*n == -1 && PyErr_Occurred()) ? -1 : 0;
}
static int parse_flags(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t i, int *flags) {
    *flags = 0;
    if (nargs <= i) return 0;
    *flags = (int)PyLong_AsLong(args[i]);
    return (*flags == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *recv_bytes(FDObject *fd, Py_ssize_t n, int flags) {
    if (n == 0) {
        if (CLOSING(fd)) { PyErr_SetNone(ErrClosed); return NULL; }
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    PyObject *b = rbuf_take(n);
    if (!b) return NULL;
    ioargs a = {.buf = PyBytes_AS_STRING(b), .len = n, .flags = flags};
    ssize_t r = fd_io(fd, PD_READ, sys_recv, &a);
    if (r < 0) { rbuf_put(b); return NULL; }
    if (r == n) return b;
    if (r <= n / 4) {           /* a short read: copy it out, keep the big buffer */
        PyObject *out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(b), r);
        rbuf_put(b);
        return out;
    }
    _PyBytes_Resize(&b, r);
    return b;
}

/* read(n): at most n bytes, as soon as any are there; b"" at EOF (Conn.read) */
static PyObject *FD_read(FDObject *fd, PyObject *arg) {
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "read: n must be an int, not %s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) { PyErr_Format(PyExc_ValueError, "read: negative size %zd", n); return NULL; }
    return recv_bytes(fd, n, 0);
}

/* recv(bufsize, flags=0) (socket.recv) */
static PyObject *FD_recv(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t n;
    int flags;
    if (nargs < 1 || nargs > 2) { PyErr_SetString(PyExc_TypeError, "recv(bufsize, flags=0)"); return NULL; }
    if (parse_size(args[0], &n) < 0 || parse_flags(args, nargs, 1, &flags) < 0) return NULL;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "negative buffersize in recv"); return NULL; }
    return recv_bytes(fd, n, flags);
}

/* recv_into(buffer, nbytes=0, flags=0) -> count (socket.recv_into) */
static PyObject *FD_recv_into(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t n = 0;
    int flags;
    if (nargs < 1 || nargs > 3) { PyErr_SetString(PyExc_TypeError, "recv_into(buffer, nbytes=0, flags=0)"); return NULL; }
    if ((nargs > 1 && parse_size(args[1], &n) < 0) || parse_flags(args, nargs, 2, &flags) < 0) return NULL;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into"); return NULL; }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) return NULL;
    if (n == 0) n = view.len;
    else if (n > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
        return NULL;
    }
    ssize_t r;
    if (n == 0) {
        r = CLOSING(fd) ? (PyErr_SetNone(ErrClosed), -1) : 0;
    } else {
        ioargs a = {.buf = view.buf, .len = n, .flags = flags};
        r = fd_io(fd, PD_READ, sys_recv, &a);
    }
    PyBuffer_Release(&view);
    return r < 0 ? NULL : PyLong_FromSsize_t(r);
}

/* recvfrom(n, flags=0) -> (bytes, address) */
static PyObject *FD_recvfrom(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t n;
    int flags;
    if (nargs < 1 || nargs > 2) { PyErr_SetString(PyExc_TypeError, "recvfrom(bufsize, flags=0)"); return NULL; }
    if (parse_size(args[0], &n) < 0 || parse_flags(args, nargs, 1, &flags) < 0) return NULL;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "negative buffersize in recvfrom"); return NULL; }
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (!b) return NULL;
    ioargs a = {.buf = PyBytes_AS_STRING(b), .len = n, .flags = flags};
    ssize_t r = fd_io(fd, PD_READ, sys_recvfrom, &a);
    if (r < 0) { Py_DECREF(b); return NULL; }
    if (r != n) _PyBytes_Resize(&b, r);
    if (!b) return NULL;
    PyObject *addr = makesockaddr(&a.ss, a.sslen);
    if (!addr) { Py_DECREF(b); return NULL; }
    PyObject *res = PyTuple_Pack(2, b, addr);
    Py_DECREF(b);
    Py_DECREF(addr);
    return res;
}

/* ------------------------------------------------------------ writes */

/* send(data, flags=0) -> bytes sent (at least one unless data is empty) */
static PyObject *FD_send(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    if (nargs < 1 || nargs > 2) { PyErr_SetString(PyExc_TypeError, "send(data, flags=0)"); return NULL; }
    if (parse_flags(args, nargs, 1, &flags) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    ssize_t r;
    if (view.len == 0) {
        r = CLOSING(fd) ? (PyErr_SetNone(ErrClosed), -1) : 0;
    } else {
        ioargs a = {.buf = view.buf, .len = view.len, .flags = flags};
        r = fd_io(fd, PD_WRITE, sys_send, &a);
    }
    PyBuffer_Release(&view);
    return r < 0 ? NULL : PyLong_FromSsize_t(r);
}

static Py_ssize_t sendall_impl(FDObject *fd, PyObject *data, int flags) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return -1;
    Py_ssize_t total = view.len, off = 0;
    if (fd_lock_op(fd, PD_WRITE) < 0) { PyBuffer_Release(&view); return -1; }
    while (off < total) {
        ioargs a = {.buf = (char *)view.buf + off, .len = total - off, .flags = flags};
        ssize_t r = fd_retry(fd, PD_WRITE, sys_send, &a);
        if (r < 0) { off = -1; break; }
        off += r;
    }
    fd_release(fd, PD_WRITE);
    PyBuffer_Release(&view);
    return off < 0 ? -1 : total;
}

/* write(data) -> len(data): write all of it (Conn.write) */
static PyObject *FD_write(FDObject *fd, PyObject *data) {
    Py_ssize_t n = sendall_impl(fd, data, 0);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* sendall(data, flags=0) -> len(data) */
static PyObject *FD_sendall(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    if (nargs < 1 || nargs > 2) { PyErr_SetString(PyExc_TypeError, "sendall(data, flags=0)"); return NULL; }
    if (parse_flags(args, nargs, 1, &flags) < 0) return NULL;
    Py_ssize_t n = sendall_impl(fd, args[0], flags);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* sendto(data, address, flags=0) -> bytes sent (one datagram) */
static PyObject *FD_sendto(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    if (nargs < 2 || nargs > 3) { PyErr_SetString(PyExc_TypeError, "sendto(data, address, flags=0)"); return NULL; }
    if (parse_flags(args, nargs, 2, &flags) < 0) return NULL;
    ioargs a = {.flags = flags};
    if (getsockaddr(fd->family, args[1], &a.ss, &a.sslen) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    a.buf = view.buf;
    a.len = view.len;
    ssize_t r = fd_io(fd, PD_WRITE, sys_sendto, &a);
    PyBuffer_Release(&view);
    return r < 0 ? NULL : PyLong_FromSsize_t(r);
}

/* ------------------------------------------------------------ accept, connect */

/* Park `delay` seconds on the read side (close and a deadline still wake it). */
static int accept_backoff(FDObject *fd, double delay) {
    double until = mono() + delay;
    do {
        if (pd_wait(fd->pd, PD_READ, until) < 0) return -1;
    } while (mono() < until);
    return 0;
}

/* accept() -> (FD, address).  EMFILE/ENFILE and kernel memory shortages back
 * off 5 ms, doubling up to 1 s, as Go's net/http server does; a connection the
 * peer aborted before we took it is skipped.  TCP conns get TCP_NODELAY (Go's
 * default). */
static PyObject *FD_accept(FDObject *fd, PyObject *u) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    int nfd = -1;
    double delay = 0;
    if (fd_lock_op(fd, PD_READ) < 0) return NULL;
    for (;;) {
        sslen = sizeof ss;
        memset(&ss, 0, sizeof ss);
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
        nfd = accept4(fd->sysfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        nfd = accept(fd->sysfd, (struct sockaddr *)&ss, &sslen);
        if (nfd >= 0) fcntl(nfd, F_SETFD, FD_CLOEXEC);
#endif
        if (nfd >= 0) break;
        int e = errno;
        if (e == EINTR) {
            if (PyErr_CheckSignals() < 0) break;
        } else if (e == EAGAIN || e == EWOULDBLOCK) {
            if (pd_wait(fd->pd, PD_READ, 0) < 0) break;
        } else if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            delay = delay == 0 ? 0.005 : (delay * 2 > 1.0 ? 1.0 : delay * 2);
            atomic_fetch_add(&netstat_accept_backoff, 1);
            if (accept_backoff(fd, delay) < 0) break;
        } else if (e == ECONNABORTED || e == EPROTO || e == EPERM) {
            continue;           /* the peer gave up before we accepted */
        } else {
            errno = e;
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
    }
    fd_release(fd, PD_READ);
    if (nfd < 0) return NULL;
    if (fd->family == AF_INET || fd->family == AF_INET6) {
        int one = 1;
        setsockopt(nfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    FDObject *c = (FDObject *)FD_alloc(Py_TYPE(fd));
    if (!c) { close(nfd); return NULL; }
    if (fd_setup(c, nfd, fd->family, fd->type) < 0) { close(nfd); Py_DECREF(c); return NULL; }
    c->state = 0;
    PyObject *addr = makesockaddr(&ss, sslen);
    if (!addr) { Py_DECREF(c); return NULL; }
    PyObject *res = PyTuple_Pack(2, (PyObject *)c, addr);
    Py_DECREF(c);
    Py_DECREF(addr);
    return res;
}

static PyObject *connect_error(int e) {
    PyObject *msg = PyUnicode_FromFormat("connect: %s", strerror(e));
    if (!msg) return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", e, msg);
    Py_DECREF(msg);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* connect(address): non-blocking connect, wait for writability, then SO_ERROR. */
static PyObject *FD_connect(FDObject *fd, PyObject *addr) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (getsockaddr(fd->family, addr, &ss, &sslen) < 0) return NULL;
    if (fd_lock_op(fd, PD_WRITE) < 0) return NULL;
    int e = 0;
    for (;;) {
        if (connect(fd->sysfd, (struct sockaddr *)&ss, sslen) == 0) goto done;
        e = errno;
        if (e == EISCONN) goto done;
        if (e == EINPROGRESS || e == EALREADY || e == EINTR) break;
        goto fail;
    }
    for (;;) {
        if (pd_wait(fd->pd, PD_WRITE, 0) < 0) { fd_release(fd, PD_WRITE); return NULL; }
        socklen_t l = sizeof e;
        if (getsockopt(fd->sysfd, SOL_SOCKET, SO_ERROR, &e, &l) < 0) e = errno;
        if (e == 0) {
            struct sockaddr_storage peer;
            socklen_t pl = sizeof peer;
            if (getpeername(fd->sysfd, (struct sockaddr *)&peer, &pl) == 0) goto done;
            continue;           /* a spurious wake: not connected yet */
        }
        if (e == EINPROGRESS || e == EALREADY || e == EINTR) continue;
        goto fail;
    }
done:
    fd_release(fd, PD_WRITE);
    Py_RETURN_NONE;
fail:
    fd_release(fd, PD_WRITE);
    return connect_error(e);
}

/* ------------------------------------------------------------ the rest */

static PyObject *FD_shutdown(FDObject *fd, PyObject *arg) {
    int how = (int)PyLong_AsLong(arg);
    if (how == -1 && PyErr_Occurred()) return NULL;
    int mode = how == SHUT_WR ? PD_WRITE : PD_READ;
    if (fd_lock_op(fd, mode) < 0) return NULL;
    int r = shutdown(fd->sysfd, how);
    if (r < 0) PyErr_SetFromErrno(PyExc_OSError);
    fd_release(fd, mode);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *sockname(FDObject *fd, int peer) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (fd_incref(fd) < 0) return NULL;
    int r = peer ? getpeername(fd->sysfd, (struct sockaddr *)&ss, &len)
                 : getsockname(fd->sysfd, (struct sockaddr *)&ss, &len);
    if (r < 0) PyErr_SetFromErrno(PyExc_OSError);
    fd_release(fd, 0);
    return r < 0 ? NULL : makesockaddr(&ss, len);
}
static PyObject *FD_getsockname(FDObject *fd, PyObject *u) { return sockname(fd, 0); }
static PyObject *FD_getpeername(FDObject *fd, PyObject *u) { return sockname(fd, 1); }

/* set_deadline(t, read=True, write=True): t an absolute time.time() value or None */
static PyObject *FD_set_deadline(FDObject *fd, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"t", "read", "write", NULL};
    PyObject *t;
    int rd = 1, wr = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|pp", kwl, &t, &rd, &wr)) return NULL;
    double d = 0;
    if (t != Py_None) {
        double wall = PyFloat_AsDouble(t);
        if (wall == -1.0 && PyErr_Occurred()) return NULL;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = mono();
        d = now + (wall - ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9));
        if (d <= now) d = -1;   /* already passed */
    }
    if (fd_incref(fd) < 0) return NULL;
    int r = pd_setdeadline(fd->pd, d, (rd ? PD_READ : 0) | (wr ? PD_WRITE : 0));
    fd_release(fd, 0);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

/* close(): wake everyone blocked on the fd with ErrClosed, wait until the
 * operations in flight are out and the fd is closed.  Idempotent. */
static PyObject *FD_close(FDObject *fd, PyObject *u) {
    pthread_mutex_lock(&fd->mu);
    if (fd->closing) { pthread_mutex_unlock(&fd->mu); Py_RETURN_NONE; }
    __atomic_store_n(&fd->closing, 1, __ATOMIC_RELAXED);
    fd->refs++;                 /* held while evicting (Go's increfAndClose) */
    pthread_mutex_unlock(&fd->mu);
    pd_evict(fd->pd);
    fd_release(fd, 0);          /* the last reference destroys */
    pthread_mutex_lock(&fd->mu);
    int done = fd->state == 2;
    pthread_mutex_unlock(&fd->mu);
    if (done) Py_RETURN_NONE;
    /* operations are still in flight (they are waking with ErrClosed): wait */
    PyObject *g = getg_c();
    if (!g) return NULL;
    if (g == Py_None) { Py_DECREF(g); Py_RETURN_NONE; }   /* g0: the last op destroys */
    fdwaiter *w = PyMem_RawMalloc(sizeof(fdwaiter));
    if (!w) { Py_DECREF(g); return PyErr_NoMemory(); }
    w->g = g;
    pthread_mutex_lock(&fd->mu);
    if (fd->state == 2) {
        pthread_mutex_unlock(&fd->mu);
    } else {
        q_push(&fd->cq, w);
        int handed;
        if (fdq_park(fd, &fd->cq, w, s_io_close, &handed) < 0) {
            Py_DECREF(g);
            PyMem_RawFree(w);
            return NULL;        /* interrupted: the last op still destroys */
        }
    }
    Py_DECREF(g);
    PyMem_RawFree(w);
    Py_RETURN_NONE;
}

/* wait(mode, timeout=None) -> True: park until the fd is ready for `mode`
 * (1 read, 2 write), for code that runs the syscall itself (pygmp.monkey: the
 * stdlib's socket methods, ssl, an epoll fd standing for select/poll).  The
 * pollDesc is edge-triggered, so the caller must have seen EAGAIN (or "not
 * ready") first and must retry after every return.  It takes the direction's
 * lock like the FD's own operations, but never queues for it: if another
 * operation holds it (another goroutine waits in that direction) it returns
 * False at once, and the caller waits some other way (pygmp.monkey: on an FD
 * of its own over another duplicate).  close() wakes it with ErrClosed.
 * timeout: None (the FD's own deadline only) or seconds, the direction's
 * deadline for this wait (TimeoutError when it passes; <= 0: at once),
 * cleared after. */
static PyObject *FD_wait(FDObject *fd, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "wait(mode, timeout=None)");
        return NULL;
    }
    long lmode = PyLong_AsLong(args[0]);
    if (lmode == -1 && PyErr_Occurred()) return NULL;
    if (lmode != PD_READ && lmode != PD_WRITE) {
        PyErr_SetString(PyExc_ValueError, "wait: mode must be 1 (read) or 2 (write)");
        return NULL;
    }
    int mode = (int)lmode;
    int timed = nargs == 2 && args[1] != Py_None;
    double t = 0;
    if (timed) {
        t = PyFloat_AsDouble(args[1]);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
    }
    char *held = mode == PD_READ ? &fd->rlocked : &fd->wlocked;
    pthread_mutex_lock(&fd->mu);
    if (fd->closing) {
        pthread_mutex_unlock(&fd->mu);
        PyErr_SetNone(ErrClosed);
        return NULL;
    }
    if (*held) {
        pthread_mutex_unlock(&fd->mu);
        Py_RETURN_FALSE;
    }
    *held = 1;
    fd->refs++;
    pthread_mutex_unlock(&fd->mu);
    int r = 0;
    if (timed) {
        double now = mono();
        r = pd_setdeadline(fd->pd, t > 0 ? now + t : -1, mode);
    }
    if (r == 0) r = pd_wait(fd->pd, mode, 0);
    if (timed) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (pd_setdeadline(fd->pd, 0, mode) < 0) PyErr_Clear();   /* closing */
        PyErr_Restore(et, ev, etb);
    }
    fd_release(fd, mode);
    if (r < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *FD_fileno(FDObject *fd, PyObject *u) { return PyLong_FromLong(fd->sysfd); }
static PyObject *FD_pdstate(FDObject *fd, PyObject *u) {
    if (fd_incref(fd) < 0) return NULL;
    PyObject *r = pd_state(fd->pd);
    fd_release(fd, 0);
    return r;
}
static PyObject *FD_get_closing(FDObject *fd, void *u) { return PyBool_FromLong(CLOSING(fd)); }
static PyObject *FD_get_closed(FDObject *fd, void *u) {
    return PyBool_FromLong(__atomic_load_n(&fd->state, __ATOMIC_RELAXED) == 2);
}
static PyObject *FD_get_refs(FDObject *fd, void *u) {
    pthread_mutex_lock(&fd->mu);
    int n = fd->refs;
    pthread_mutex_unlock(&fd->mu);
    return PyLong_FromLong(n);
}

#define FAST(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL
static PyMethodDef FD_methods[] = {
    {"read", (PyCFunction)FD_read, METH_O, "read(n): at most n bytes, as soon as any are there; b'' at EOF"},
    {"recv", FAST(FD_recv), "recv(bufsize, flags=0)"},
    {"recv_into", FAST(FD_recv_into), "recv_into(buffer, nbytes=0, flags=0) -> count"},
    {"recvfrom", FAST(FD_recvfrom), "recvfrom(bufsize, flags=0) -> (bytes, address)"},
    {"write", (PyCFunction)FD_write, METH_O, "write(data) -> len(data): write all of it"},
    {"send", FAST(FD_send), "send(data, flags=0) -> bytes sent"},
    {"sendall", FAST(FD_sendall), "sendall(data, flags=0) -> len(data)"},
    {"sendto", FAST(FD_sendto), "sendto(data, address, flags=0) -> bytes sent"},
    {"accept", (PyCFunction)FD_accept, METH_NOARGS, "accept() -> (FD, address)"},
    {"connect", (PyCFunction)FD_connect, METH_O, "connect(address) (numeric)"},
    {"shutdown", (PyCFunction)FD_shutdown, METH_O, "shutdown(how)"},
    {"getsockname", (PyCFunction)FD_getsockname, METH_NOARGS, NULL},
    {"getpeername", (PyCFunction)FD_getpeername, METH_NOARGS, NULL},
    {"set_deadline", (PyCFunction)(void (*)(void))FD_set_deadline, METH_VARARGS | METH_KEYWORDS,
     "set_deadline(t, read=True, write=True): absolute time.time() value, or None"},
    {"wait", FAST(FD_wait), "wait(mode, timeout=None) -> True: park until ready for mode (1 read, 2 write), the caller saw EAGAIN; False at once if another waits in that direction"},
    {"close", (PyCFunction)FD_close, METH_NOARGS, "close(): wake blocked ops with ErrClosed, then close the fd"},
    {"fileno", (PyCFunction)FD_fileno, METH_NOARGS, NULL},
    {"_pdstate", (PyCFunction)FD_pdstate, METH_NOARGS, "tests: (rg, wg, token): None, 'ready' or 'wait'"},
    {NULL}};
static PyMemberDef FD_members[] = {
    {"family", T_INT, offsetof(FDObject, family), READONLY, NULL},
    {"type", T_INT, offsetof(FDObject, type), READONLY, NULL},
    {"sysfd", T_INT, offsetof(FDObject, sysfd), READONLY, NULL},
    {NULL}};
static PyGetSetDef FD_getset[] = {
    {"closing", (getter)FD_get_closing, NULL, "close() has begun", NULL},
    {"closed", (getter)FD_get_closed, NULL, "the fd number is closed", NULL},
    {"refs", (getter)FD_get_refs, NULL, "operations in flight", NULL},
    {NULL}};
PyTypeObject FDType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.FD", .tp_basicsize = sizeof(FDObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = FD_new, .tp_dealloc = (destructor)FD_dealloc, .tp_repr = (reprfunc)FD_repr,
    .tp_methods = FD_methods, .tp_members = FD_members, .tp_getset = FD_getset,
    .tp_doc = "A network fd: fdMutex + the I/O retry loops (csrc/netfd.c) over a pollDesc (csrc/netpoll.c).",
};
