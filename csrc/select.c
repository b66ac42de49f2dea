/* select (Go's select.go). */
#include "runtime.h"

enum { K_RECV = 0, K_RECV_ = 1, K_SEND = 2 };
typedef struct { int kind; ChanObject *c; PyObject *v; } scase;

/* Identify ch.recv / ch.recv_ / ch.send bound to a ChanBase (C or Python method). */
static ChanObject *case_chan(PyObject *m, int *kind) {
    PyObject *self = NULL;
    const char *name = NULL;
    if (PyCFunction_Check(m)) {
        self = PyCFunction_GET_SELF(m);
        name = ((PyCFunctionObject *)m)->m_ml->ml_name;
    } else if (PyMethod_Check(m)) {
        self = PyMethod_GET_SELF(m);
        PyObject *f = PyMethod_GET_FUNCTION(m);
        PyObject *nm = PyObject_GetAttrString(f, "__name__");
        if (!nm) { PyErr_Clear(); return NULL; }
        name = PyUnicode_AsUTF8(nm);
        Py_DECREF(nm);   /* the function keeps its name alive */
        if (!name) { PyErr_Clear(); return NULL; }
    } else {
        return NULL;
    }
    if (!self || !PyObject_TypeCheck(self, &ChanType)) return NULL;
    if (strcmp(name, "recv") == 0) *kind = K_RECV;
    else if (strcmp(name, "recv_") == 0) *kind = K_RECV_;
    else if (strcmp(name, "send") == 0) *kind = K_SEND;
    else return NULL;
    return C_CAST(self);
}

static int cmp_chan(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(ChanObject *const *)a, y = (uintptr_t)*(ChanObject *const *)b;
    return x < y ? -1 : x > y;
}

static void unlock_all(ChanObject **cs, int n) { for (int i = 0; i < n; i++) lk_release(cs[i]->lk); }
static void lock_all(ChanObject **cs, int n) { for (int i = 0; i < n; i++) lk_acquire(cs[i]->lk); }

static PyObject *sel_result(int i, int kind, PyObject *v, int ok) {   /* steals v */
    PyObject *val;
    if (kind == K_RECV_) {
        val = PyTuple_Pack(2, v ? v : Py_None, ok ? Py_True : Py_False);
        Py_XDECREF(v);
    } else if (kind == K_RECV) {
        val = v ? v : Py_NewRef(Py_None);
    } else {
        val = Py_NewRef(Py_None);
    }
    if (!val) return NULL;
    PyObject *idx = PyLong_FromLong(i);
    PyObject *t = idx ? PyTuple_Pack(2, idx, val) : NULL;
    Py_XDECREF(idx);
    Py_DECREF(val);
    return t;
}

#define SEL_STACK 8

PyObject *m_select(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (checkpreempt() < 0) return NULL;    /* a runtime entry: sysmon may have asked us to yield */
    scase cstack[SEL_STACK];
    int ostack[SEL_STACK];
    ChanObject *lstack[SEL_STACK];
    scase *cases = n <= SEL_STACK ? cstack : PyMem_Malloc(sizeof(scase) * n);
    int *order = n <= SEL_STACK ? ostack : PyMem_Malloc(sizeof(int) * n);
    ChanObject **locks = n <= SEL_STACK ? lstack : PyMem_Malloc(sizeof(ChanObject *) * n);
    sudog **sgs = NULL;
    PyObject *result = NULL, *g = NULL;
    if (!cases || !order || !locks) { PyErr_NoMemory(); goto out; }
    int dflt = -1, k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = args[i];
        cases[i].c = NULL;
        cases[i].v = NULL;
        if (c == default_case) {
            if (dflt >= 0) { PyErr_SetString(PyExc_TypeError, "select: multiple default cases"); goto out; }
            dflt = (int)i;
            continue;
        }
        int kind;
        if (PyTuple_CheckExact(c)) {
            if (PyTuple_GET_SIZE(c) != 2) {
                PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), got a %zd-tuple", i, PyTuple_GET_SIZE(c));
                goto out;
            }
            ChanObject *ch = case_chan(PyTuple_GET_ITEM(c, 0), &kind);
            if (!ch || kind != K_SEND) {
                PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), got (%R, ...)", i, PyTuple_GET_ITEM(c, 0));
                goto out;
            }
            cases[i].kind = K_SEND;
            cases[i].c = ch;
            cases[i].v = PyTuple_GET_ITEM(c, 1);
        } else {
            ChanObject *ch = case_chan(c, &kind);
            if (!ch || kind == K_SEND) {
                if (ch)
                    PyErr_Format(PyExc_TypeError, "select: case %zd: a send case is (ch.send, value), not ch.send alone", i);
                else
                    PyErr_Format(PyExc_TypeError, "select: case %zd: not a select case: %R (want ch.recv, ch.recv_, (ch.send, v) or default)", i, c);
                goto out;
            }
            cases[i].kind = kind;
            cases[i].c = ch;
        }
        if (!cases[i].c->isnil) order[k++] = (int)i;
    }
    /* uniformly random poll order (Fisher-Yates) */
    for (int i = k - 1; i > 0; i--) {
        int j = (int)fastrandn((uint32_t)(i + 1));
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
    if (k == 0) {
        if (dflt >= 0) { result = sel_result(dflt, K_SEND, NULL, 0); goto out; }
        PyObject *r = PyObject_CallOneArg(py_park_current, s_select_nocases);
        Py_XDECREF(r);
        if (r) PyErr_SetString(PyExc_AssertionError, "unreachable: empty select woke");
        goto out;
    }
    /* lock order: by address, each channel once */
    int nl = 0;
    for (int i = 0; i < k; i++) locks[nl++] = cases[order[i]].c;
    qsort(locks, nl, sizeof(ChanObject *), cmp_chan);
    int u = 0;
    for (int i = 0; i < nl; i++) if (u == 0 || locks[u - 1] != locks[i]) locks[u++] = locks[i];
    nl = u;

    for (int pass = 0; pass < 2; pass++) {
        lock_all(locks, nl);
        /* pass 1: a ready case in poll order */
        for (int oi = 0; oi < k; oi++) {
            int i = order[oi];
            ChanObject *c = cases[i].c;
            if (cases[i].kind == K_SEND) {
                if (c->closed) {
                    unlock_all(locks, nl);
                    PyErr_SetString(PanicError, "send on closed channel");
                    goto out;
                }
                sudog *s = wq_dequeue(&c->recvq);
                if (s) {
                    s->elem = Py_NewRef(cases[i].v);
                    s->success = 1;
                    PyObject *rg = Py_NewRef(s->g);
                    unlock_all(locks, nl);
                    int r = goready_c(G_CAST(rg));
                    Py_DECREF(rg);
                    if (r == 0) result = sel_result(i, K_SEND, NULL, 1);
                    goto out;
                }
                if (c->len < c->cap) {
                    int r = buf_push(c, cases[i].v);
                    unlock_all(locks, nl);
                    if (r < 0) PyErr_NoMemory(); else result = sel_result(i, K_SEND, NULL, 1);
                    goto out;
                }
            } else {
                sudog *s = wq_dequeue(&c->sendq);
                if (s) {
                    PyObject *v;
                    if (c->len) {
                        v = buf_pop(c);
                        c->buf[(c->head + c->len) % c->bcap] = s->elem;
                        c->len++;
                    } else {
                        v = s->elem;
                    }
                    s->elem = NULL;
                    s->success = 1;
                    PyObject *sg = Py_NewRef(s->g);
                    unlock_all(locks, nl);
                    int r = goready_c(G_CAST(sg));
                    Py_DECREF(sg);
                    if (r < 0) { Py_DECREF(v); goto out; }
                    result = sel_result(i, cases[i].kind, v, 1);
                    goto out;
                }
                if (c->len) {
                    PyObject *v = buf_pop(c);
                    unlock_all(locks, nl);
                    result = sel_result(i, cases[i].kind, v, 1);
                    goto out;
                }
                if (c->closed) {
                    unlock_all(locks, nl);
                    result = sel_result(i, cases[i].kind, NULL, 0);
                    goto out;
                }
            }
        }
        if (dflt >= 0) {
            unlock_all(locks, nl);
            result = sel_result(dflt, K_SEND, NULL, 0);
            goto out;
        }
        if (g) break;
        /* find the current G with the locks dropped (it may call Python), then re-poll */
        unlock_all(locks, nl);
        g = current_g("select");
        if (!g) goto out;
    }
    /* pass 2: enqueue on every channel (locks held) and park.  The parkstate is
       heap memory: wakers write to it, and this greenlet's stack is copied in
       and out of the heap while it is switched out. */
    parkstate *ps = PyMem_Malloc(sizeof(parkstate));
    sgs = PyMem_Malloc(sizeof(sudog *) * k);
    if (!sgs || !ps) { unlock_all(locks, nl); PyMem_Free(ps); PyErr_NoMemory(); goto out; }
    atomic_init(&ps->done, 0);
    ps->win = NULL;
    for (int oi = 0; oi < k; oi++) {
        int i = order[oi];
        int isrecv = cases[i].kind != K_SEND;
        sgs[oi] = sudog_new(g, isrecv ? NULL : cases[i].v, cases[i].c, ps, i, isrecv);
        if (!sgs[oi]) {
            for (int j = 0; j < oi; j++) {
                wq_unlink(sgs[j]->isrecv ? &sgs[j]->c->recvq : &sgs[j]->c->sendq, sgs[j]);
                sudog_free(sgs[j]);
            }
            unlock_all(locks, nl);
            PyMem_Free(sgs); sgs = NULL;
            PyMem_Free(ps);
            goto out;
        }
        wq_push(isrecv ? &cases[i].c->recvq : &cases[i].c->sendq, sgs[oi]);
    }
    G_CAST(g)->status = Gwaiting;
    G_CAST(g)->waitsince = mono();
    unlock_all(locks, nl);
    int pr = gopark_c(G_CAST(g), s_select);
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    if (pr < 0) {
        PyErr_Fetch(&et, &ev, &etb);
        int exp = 0;
        if (!atomic_compare_exchange_strong(&ps->done, &exp, 1)) {
            /* a waker already completed us: take its wake token */
            PyObject *r = PyObject_CallMethodNoArgs(G_CAST(g)->sema, s_acquire);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
    G_CAST(g)->status = Grunning;
    /* pass 3: dequeue from every channel that did not fire */
    lock_all(locks, nl);
    for (int oi = 0; oi < k; oi++) {
        sudog *s = sgs[oi];
        wq_unlink(s->isrecv ? &s->c->recvq : &s->c->sendq, s);
    }
    unlock_all(locks, nl);
    if (pr < 0) {
        PyErr_Restore(et, ev, etb);
    } else {
        sudog *w = ps->win;
        int i = w->idx;
        if (cases[i].kind == K_SEND) {
            if (!w->success) PyErr_SetString(PanicError, "send on closed channel");
            else result = sel_result(i, K_SEND, NULL, 1);
        } else {
            PyObject *v = w->elem;
            w->elem = NULL;
            result = sel_result(i, cases[i].kind, v, w->success);
        }
    }
    for (int oi = 0; oi < k; oi++) sudog_free(sgs[oi]);
    PyMem_Free(ps);
out:
    Py_XDECREF(g);
    if (sgs) PyMem_Free(sgs);
    if (cases != cstack) PyMem_Free(cases);
    if (order != ostack) PyMem_Free(order);
    if (locks != lstack) PyMem_Free(locks);
    return result;
}

