/* Channels (Go's chan.go): buffer ring, FIFO sudog wait queues, close. */
#include "runtime.h"

void wq_push(waitq *q, sudog *s) {
    s->next = NULL; s->prev = q->tail;
    if (q->tail) q->tail->next = s; else q->head = s;
    q->tail = s;
    s->queued = 1;
}
void wq_unlink(waitq *q, sudog *s) {
    if (!s->queued) return;
    if (s->prev) s->prev->next = s->next; else q->head = s->next;
    if (s->next) s->next->prev = s->prev; else q->tail = s->prev;
    s->prev = s->next = NULL;
    s->queued = 0;
}
/* Pop the first sudog this waker may complete (skips lost select races). */
sudog *wq_dequeue(waitq *q) {
    for (;;) {
        sudog *s = q->head;
        if (!s) return NULL;
        wq_unlink(q, s);
        if (s->ps) {
            int exp = 0;
            if (!atomic_compare_exchange_strong(&s->ps->done, &exp, 1)) continue;
            s->ps->win = s;
        }
        return s;
    }
}

sudog *sudog_new(PyObject *g, PyObject *elem, ChanObject *c, parkstate *ps, int idx, int isrecv) {
    sudog *s = PyMem_Malloc(sizeof(sudog));
    if (!s) { PyErr_NoMemory(); return NULL; }
    s->g = Py_NewRef(g);
    s->elem = Py_XNewRef(elem);
    s->ps = ps; s->c = c; s->prev = s->next = NULL;
    s->idx = idx; s->isrecv = isrecv; s->success = 0; s->queued = 0;
    return s;
}
void sudog_free(sudog *s) {
    Py_DECREF(s->g);
    Py_XDECREF(s->elem);
    PyMem_Free(s);
}

int buf_push(ChanObject *c, PyObject *v) {   /* INCREFs v */
    if (c->len == c->bcap) {
        Py_ssize_t ncap = c->bcap ? c->bcap * 2 : 8;
        if (ncap > c->cap) ncap = c->cap;
        PyObject **n = PyMem_RawMalloc(sizeof(PyObject *) * ncap);
        if (!n) return -1;
        for (Py_ssize_t i = 0; i < c->len; i++) n[i] = c->buf[(c->head + i) % c->bcap];
        PyMem_RawFree(c->buf);
        c->buf = n; c->bcap = ncap; c->head = 0;
    }
    c->buf[(c->head + c->len) % c->bcap] = Py_NewRef(v);
    c->len++;
    return 0;
}
PyObject *buf_pop(ChanObject *c) {   /* new ref */
    PyObject *v = c->buf[c->head];
    c->head = (c->head + 1) % c->bcap;
    c->len--;
    return v;
}

static PyObject *Chan_new(PyTypeObject *t, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"size", "_nil", NULL};
    PyObject *size = NULL;
    int isnil = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Op", kwl, &size, &isnil)) return NULL;
    Py_ssize_t cap = 0;
    if (size) {
        if (PyBool_Check(size) || !PyLong_Check(size)) {
            PyErr_Format(PyExc_TypeError, "chan: size must be an int, not %s", Py_TYPE(size)->tp_name);
            return NULL;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(size, &overflow);
        if (overflow > 0 || v > PY_SSIZE_T_MAX / 16) {
            PyErr_SetString(PyExc_ValueError, "chan: size out of range (makechan: size out of range)");
            return NULL;
        }
        if (overflow < 0 || v < 0) {
            PyErr_Format(PyExc_ValueError, "chan: size must be >= 0, got %S (makechan: size out of range)", size);
            return NULL;
        }
        cap = (Py_ssize_t)v;
    }
    ChanObject *c = (ChanObject *)t->tp_alloc(t, 0);
    if (!c) return NULL;
    c->lk = PyThread_allocate_lock();
    if (!c->lk) { Py_DECREF(c); return PyErr_NoMemory(); }
    c->cap = cap;
    c->isnil = (char)isnil;
    return (PyObject *)c;
}
static int Chan_init(PyObject *self, PyObject *args, PyObject *kw) { return 0; }
static int Chan_traverse(ChanObject *c, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < c->len; i++) Py_VISIT(c->buf[(c->head + i) % c->bcap]);
    return 0;   /* queued sudogs' Gs are owned by parked goroutines, which the runtime keeps alive */
}
static int Chan_clear(ChanObject *c) {
    while (c->len) { PyObject *v = buf_pop(c); Py_DECREF(v); }
    return 0;
}
static void Chan_dealloc(ChanObject *c) {
    PyObject_GC_UnTrack(c);
    if (c->weakreflist) PyObject_ClearWeakRefs((PyObject *)c);
    Chan_clear(c);
    /* sudogs still queued belong to Gs parked forever: leave them (leak, as Go) */
    PyMem_RawFree(c->buf);
    if (c->lk) PyThread_free_lock(c->lk);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

int park_nil(PyObject *reason) {
    PyObject *r = PyObject_CallOneArg(py_park_current, reason);
    if (!r) return -1;
    Py_DECREF(r);
    PyErr_SetString(PyExc_AssertionError, "unreachable: nil channel operation woke");
    return -1;
}

PyObject *current_g(const char *what) {
    PyObject *g = getg_c();
    if (!g) return NULL;
    if (g == Py_None) {
        Py_DECREF(g);
        PyErr_Format(PyExc_RuntimeError, "pygmp: %s from the scheduler greenlet", what);
        return NULL;
    }
    return g;
}

/* Park g on sudog s (queued on c); thread Gs can be interrupted: withdraw. */
static int park_one(ChanObject *c, sudog *s, PyObject *reason) {
    GObject *g = G_CAST(s->g);
    if (gopark_c(g, reason) == 0) { g->status = Grunning; return 0; }
    /* an exception while parked (Ctrl-C in a thread G) */
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    int exp = 0;
    if (!s->ps || atomic_compare_exchange_strong(&s->ps->done, &exp, 1)) {
        lk_acquire(c->lk);
        wq_unlink(s->isrecv ? &c->recvq : &c->sendq, s);
        lk_release(c->lk);
    } else {
        PyObject *r = PyObject_CallMethodNoArgs(g->sema, s_acquire);   /* a waker won: take its token */
        Py_XDECREF(r);
        PyErr_Clear();
    }
    g->status = Grunning;
    PyErr_Restore(et, ev, etb);
    return -1;
}

static PyObject *chan_send_impl(ChanObject *c, PyObject *v) {
    if (checkpreempt() < 0) return NULL;    /* a runtime entry: sysmon may have asked us to yield */
    if (c->isnil) { park_nil(s_send_nil); return NULL; }
    lk_acquire(c->lk);
    if (c->closed) {
        lk_release(c->lk);
        PyErr_SetString(PanicError, "send on closed channel");
        return NULL;
    }
    sudog *s = wq_dequeue(&c->recvq);
    if (s) {
        s->elem = Py_NewRef(v);
        s->success = 1;
        PyObject *g = s->g;
        Py_INCREF(g);
        lk_release(c->lk);
        int r = goready_c(G_CAST(g));
        Py_DECREF(g);
        if (r < 0) return NULL;
        Py_RETURN_NONE;
    }
    if (c->len < c->cap) {
        int r = buf_push(c, v);
        lk_release(c->lk);
        if (r < 0) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    lk_release(c->lk);
    PyObject *g = current_g("channel send");
    if (!g) return NULL;
    parkstate *ps = NULL;   /* heap, never on a greenlet's stack (see select) */
    if (G_CAST(g)->locked) {
        ps = PyMem_Malloc(sizeof(parkstate));
        if (!ps) { Py_DECREF(g); return PyErr_NoMemory(); }
        atomic_init(&ps->done, 0);
        ps->win = NULL;
    }
    s = sudog_new(g, v, c, ps, 0, 0);
    if (!s) { PyMem_Free(ps); Py_DECREF(g); return NULL; }
    lk_acquire(c->lk);
    /* re-check: state may have changed while the lock was dropped to find g */
    if (c->closed) {
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        PyErr_SetString(PanicError, "send on closed channel");
        return NULL;
    }
    sudog *r0 = wq_dequeue(&c->recvq);
    if (r0) {
        r0->elem = Py_NewRef(v); r0->success = 1;
        PyObject *rg = Py_NewRef(r0->g);
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        int rr = goready_c(G_CAST(rg));
        Py_DECREF(rg);
        if (rr < 0) return NULL;
        Py_RETURN_NONE;
    }
    if (c->len < c->cap) {
        int rr = buf_push(c, v);
        lk_release(c->lk); sudog_free(s); PyMem_Free(ps); Py_DECREF(g);
        if (rr < 0) return PyErr_NoMemory();
        Py_RETURN_NONE;
    }
    wq_push(&c->sendq, s);
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    lk_release(c->lk);
    int r = park_one(c, s, s_chan_send);
    int ok = s->success;
    sudog_free(s);
    PyMem_Free(ps);
    Py_DECREF(g);
    if (r < 0) return NULL;
    if (!ok) { PyErr_SetString(PanicError, "send on closed channel"); return NULL; }
    Py_RETURN_NONE;
}

/* Receive; *ok set; returns new ref (None on closed). */
static PyObject *chan_recv_impl(ChanObject *c, int *ok) {
    if (checkpreempt() < 0) return NULL;    /* a runtime entry: sysmon may have asked us to yield */
    if (c->isnil) { park_nil(s_recv_nil); return NULL; }
    PyObject *g = NULL;
    sudog *mine = NULL;
    parkstate *ps = NULL;   /* heap, never on a greenlet's stack (see select) */
    for (int attempt = 0;; attempt++) {
        lk_acquire(c->lk);
        sudog *s = wq_dequeue(&c->sendq);
        if (s) {
            PyObject *v;
            if (c->len) {   /* full buffer: take the head; the sender's value goes to the tail */
                v = buf_pop(c);
                c->buf[(c->head + c->len) % c->bcap] = s->elem;
                c->len++;
                s->elem = NULL;
            } else {
                v = s->elem;
                s->elem = NULL;
            }
            s->success = 1;
            PyObject *sg = Py_NewRef(s->g);
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            int r = goready_c(G_CAST(sg));
            Py_DECREF(sg);
            if (r < 0) { Py_DECREF(v); return NULL; }
            *ok = 1;
            return v;
        }
        if (c->len) {
            PyObject *v = buf_pop(c);
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            *ok = 1;
            return v;
        }
        if (c->closed) {
            lk_release(c->lk);
            if (mine) sudog_free(mine);
            PyMem_Free(ps);
            Py_XDECREF(g);
            *ok = 0;
            Py_RETURN_NONE;
        }
        if (mine) break;
        lk_release(c->lk);
        g = current_g("channel receive");
        if (!g) return NULL;
        if (G_CAST(g)->locked) {
            ps = PyMem_Malloc(sizeof(parkstate));
            if (!ps) { Py_DECREF(g); return PyErr_NoMemory(); }
            atomic_init(&ps->done, 0);
            ps->win = NULL;
        }
        mine = sudog_new(g, NULL, c, ps, 0, 1);
        if (!mine) { PyMem_Free(ps); Py_DECREF(g); return NULL; }
    }
    wq_push(&c->recvq, mine);
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    lk_release(c->lk);
    int r = park_one(c, mine, s_chan_recv);
    PyObject *v = mine->elem;
    mine->elem = NULL;
    *ok = mine->success;
    sudog_free(mine);
    PyMem_Free(ps);
    Py_DECREF(g);
    if (r < 0) { Py_XDECREF(v); return NULL; }
    return v ? v : Py_NewRef(Py_None);
}

static PyObject *Chan_send(ChanObject *c, PyObject *v) { return chan_send_impl(c, v); }
static PyObject *Chan_recv(ChanObject *c, PyObject *u) { int ok; return chan_recv_impl(c, &ok); }
static PyObject *Chan_recv_(ChanObject *c, PyObject *u) {
    int ok;
    PyObject *v = chan_recv_impl(c, &ok);
    if (!v) return NULL;
    PyObject *t = PyTuple_Pack(2, v, ok ? Py_True : Py_False);
    Py_DECREF(v);
    return t;
}

static PyObject *Chan_close(ChanObject *c, PyObject *u) {
    if (c->isnil) { PyErr_SetString(PanicError, "close of nil channel"); return NULL; }
    lk_acquire(c->lk);
    if (c->closed) {
        lk_release(c->lk);
        PyErr_SetString(PanicError, "close of closed channel");
        return NULL;
    }
    c->closed = 1;
    /* collect every waiter; ready them after unlocking */
    Py_ssize_t n = 0, cap = 16;
    PyObject **gs = PyMem_RawMalloc(sizeof(PyObject *) * cap);
    sudog *s;
    for (int q = 0; q < 2; q++) {
        waitq *wq = q ? &c->sendq : &c->recvq;
        while ((s = wq_dequeue(wq))) {
            Py_CLEAR(s->elem);   /* a sender's value: its sender still holds a ref too */
            s->success = 0;
            if (n == cap) {
                cap *= 2;
                PyObject **ng = PyMem_RawRealloc(gs, sizeof(PyObject *) * cap);
                if (!ng) break;   /* out of memory: the rest stay parked */
                gs = ng;
            }
            if (gs) gs[n++] = Py_NewRef(s->g);
        }
    }
    lk_release(c->lk);
    int err = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!err && goready_c(G_CAST(gs[i])) < 0) err = 1;
        Py_DECREF(gs[i]);
    }
    PyMem_RawFree(gs);
    if (err) return NULL;
    Py_RETURN_NONE;
}

/* Non-blocking send: 1 sent, 0 not (full, closed or nil), -1 error. */
int chan_trysend_c(ChanObject *c, PyObject *v) {
    lk_acquire(c->lk);
    if (c->closed || c->isnil) { lk_release(c->lk); return 0; }
    sudog *s = wq_dequeue(&c->recvq);
    if (s) {
        s->elem = Py_NewRef(v);
        s->success = 1;
        PyObject *g = Py_NewRef(s->g);
        lk_release(c->lk);
        int r = goready_c(G_CAST(g));
        Py_DECREF(g);
        return r < 0 ? -1 : 1;
    }
    if (c->len < c->cap) {
        int r = buf_push(c, v);
        lk_release(c->lk);
        if (r < 0) { PyErr_NoMemory(); return -1; }
        return 1;
    }
    lk_release(c->lk);
    return 0;
}
static PyObject *Chan_try_send(ChanObject *c, PyObject *v) {
    int r = chan_trysend_c(c, v);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}
/* Drop the buffered values; 1 if there were any. */
int chan_drain_c(ChanObject *c) {
    lk_acquire(c->lk);
    Py_ssize_t n = c->len;
    PyObject **vs = n ? PyMem_RawMalloc(sizeof(PyObject *) * n) : NULL;
    for (Py_ssize_t i = 0; i < n; i++) { PyObject *v = buf_pop(c); if (vs) vs[i] = v; }
    lk_release(c->lk);
    for (Py_ssize_t i = 0; i < n && vs; i++) Py_DECREF(vs[i]);
    PyMem_RawFree(vs);
    return n > 0;
}
static PyObject *Chan_drain(ChanObject *c, PyObject *u) { return PyBool_FromLong(chan_drain_c(c)); }
static Py_ssize_t Chan_len(ChanObject *c) { return c->len; }
static PyObject *Chan_cap(ChanObject *c, PyObject *u) { return PyLong_FromSsize_t(c->cap); }
static PyObject *Chan_closed(ChanObject *c, void *u) { return PyBool_FromLong(c->closed); }
static PyObject *Chan_isnil(ChanObject *c, void *u) { return PyBool_FromLong(c->isnil); }

static PyMethodDef Chan_methods[] = {
    {"send", (PyCFunction)Chan_send, METH_O, "send(v): block until a receiver takes v or there is buffer room"},
    {"recv", (PyCFunction)Chan_recv, METH_NOARGS, "recv(): receive a value (None once closed and drained)"},
    {"recv_", (PyCFunction)Chan_recv_, METH_NOARGS, "recv_(): (value, ok); ok is False once closed and drained"},
    {"close", (PyCFunction)Chan_close, METH_NOARGS, "close(): wake every waiter"},
    {"cap", (PyCFunction)Chan_cap, METH_NOARGS, "capacity"},
    {"_try_send", (PyCFunction)Chan_try_send, METH_O, NULL},
    {"_drain", (PyCFunction)Chan_drain, METH_NOARGS, NULL},
    {NULL}};
static PyGetSetDef Chan_getset[] = {
    {"_closed", (getter)Chan_closed, NULL, NULL, NULL},
    {"_isnil", (getter)Chan_isnil, NULL, NULL, NULL},
    {NULL}};
static PySequenceMethods Chan_as_seq = {.sq_length = (lenfunc)Chan_len};
PyTypeObject ChanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.ChanBase", .tp_basicsize = sizeof(ChanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = Chan_new, .tp_init = Chan_init, .tp_dealloc = (destructor)Chan_dealloc,
    .tp_traverse = (traverseproc)Chan_traverse, .tp_clear = (inquiry)Chan_clear,
    .tp_methods = Chan_methods, .tp_getset = Chan_getset, .tp_as_sequence = &Chan_as_seq,
    .tp_weaklistoffset = offsetof(ChanObject, weakreflist),
    .tp_doc = "A Go channel (C implementation; see pygmp/runtime/chan.py).",
};

