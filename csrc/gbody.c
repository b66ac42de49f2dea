/* A goroutine's life on its greenlet (Go's execute, goexit0 and the gFree
 * list): g0 runs a G with `execute`; every goroutine greenlet runs `gbody`,
 * which runs the G's function in the G's context, destroys the G, and then
 * runs the next unstarted G in place, so spawning rarely creates a greenlet.
 *
 * C calls back into Python here only for the G's function itself and for
 * how it ended: panic.fatalpanic (an exception escaped), panic.
 * exit_from_goroutine (SystemExit), and proc._freeze (the process exits).
 * Owner: everything here runs on the P's worker thread; p->gs is written
 * under p->lock so that other threads (goroutine dumps) can copy it.
 */
#include "runtime.h"

static PyObject *gbody_fn;   /* the run function of every goroutine greenlet */

/* g's first run: home it on p with greenlet glet (Go: the G is now bound to
 * this P's thread for life).  p->gs holds the runtime's reference to it: an
 * array with the G's index in g->gsidx, so removal is a swap with the last. */
int bind_c(PObject *p, GObject *g, PyObject *glet) {
    Py_SETREF(g->home, Py_NewRef(p));
    Py_SETREF(g->glet, Py_NewRef(glet));
    p->nhomed++;
    PLOCK(p);
    if (p->ngs == p->gscap) {
        Py_ssize_t ncap = p->gscap ? p->gscap * 2 : 64;
        PyObject **n = PyMem_RawRealloc(p->gs, sizeof(PyObject *) * ncap);
        if (!n) { PUNLOCK(p); PyErr_NoMemory(); return -1; }
        p->gs = n;
        p->gscap = ncap;
    }
    p->gs[p->ngs] = Py_NewRef(g);
    g->gsidx = p->ngs++;
    PUNLOCK(p);
    return 0;
}

static Py_ssize_t gs_len(PObject *p) { return p->ngs; }
static PyObject *gs_at(PObject *p, Py_ssize_t i) { return p->gs[i]; }
/* every started G homed on p (p_snapshot copies it under the lock) */
PyObject *P_gs_snapshot(PObject *p, PyObject *u) { return p_snapshot(p, gs_len, gs_at); }

/* A dead G keeps no reference that could close a cycle back to itself (Gs are
 * not GC-tracked): greenlet, function and arguments (dropped by rung), the
 * sleep timer (whose arg is the G), param. */
static void gdestroy(PObject *p, GObject *g) {
    g->status = Gdead;
    Py_SETREF(g->glet, Py_NewRef(Py_None));
    Py_SETREF(g->sleeptimer, Py_NewRef(Py_None));
    Py_SETREF(g->param, Py_NewRef(Py_None));
    p->nhomed--;
    p->ngdelta--;
    PLOCK(p);
    Py_ssize_t i = g->gsidx;
    int in = i >= 0 && i < p->ngs && p->gs[i] == (PyObject *)g;
    if (in) {
        PyObject *last = p->gs[--p->ngs];
        p->gs[i] = last;
        G_CAST(last)->gsidx = i;
        g->gsidx = -1;
    }
    PUNLOCK(p);
    if (in) Py_DECREF(g);   /* not the last reference: the caller holds g */
}

static PyObject *fetch_exc(void) {   /* the raised exception, normalized, with its traceback */
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v) PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

/* Run g's function: ctx.run(fn, *args, **kwargs).  0: it ended (returned,
 * Goexit, or a panic already handled); -1: GreenletExit escaped it (left set:
 * the greenlet ends with it after the G is destroyed). */
static int rung(GObject *g) {
    PyObject *fn = g->fn, *args = g->args, *kw = g->kwargs, *ctx = g->ctx;
    g->fn = Py_NewRef(Py_None);
    g->args = Py_NewRef(Py_None);
    g->kwargs = Py_NewRef(Py_None);
    g->ctx = Py_NewRef(Py_None);
    PyObject *r = NULL;
    if (PyContext_Enter(ctx) == 0) {
        if (PyTuple_Check(args) && (kw == Py_None || (PyDict_Check(kw) && PyDict_GET_SIZE(kw) == 0)))
            r = PyObject_Call(fn, args, NULL);
        else if (PyTuple_Check(args) && PyDict_Check(kw))
            r = PyObject_Call(fn, args, kw);
        else
            PyErr_SetString(PyExc_TypeError, "pygmp: a G's args must be a tuple and kwargs a dict");
        if (PyContext_Exit(ctx) < 0 && r) Py_CLEAR(r);
    }
    Py_DECREF(fn); Py_DECREF(args); Py_DECREF(kw); Py_DECREF(ctx);
    if (r) { Py_DECREF(r); return 0; }
    if (PyErr_ExceptionMatches(PyExc_GreenletExit)) return -1;
    if (py_goexit && PyErr_ExceptionMatches(py_goexit)) { PyErr_Clear(); return 0; }
    PyObject *exc = fetch_exc();
    PyObject *res;
    if (exc && PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_SystemExit))
        res = PyObject_CallOneArg(py_exit_from_goroutine, exc);      /* exits the process */
    else
        res = PyObject_CallFunctionObjArgs(py_fatalpanic, (PyObject *)g, exc ? exc : Py_None, NULL);
    Py_XDECREF(exc);
    if (!res) PyErr_WriteUnraisable((PyObject *)g);
    Py_XDECREF(res);
    return 0;
}

/* The body of every goroutine greenlet: run a G, destroy it, then take the
 * next G of this P: an unstarted one runs here in place; otherwise park this
 * greenlet on p->gfree (or end it when the cache is full) and switch to the
 * next started G, or to g0. */
static PyObject *gbody(PyObject *self, PyObject *arg) {
    stackcache_small_root();   /* before any Python frame: a small data-stack root */
    if (!PyObject_TypeCheck(arg, &GType)) Py_RETURN_NONE;
    PyObject *me = (PyObject *)PyGreenlet_GetCurrent();
    if (!me) return NULL;
    PyObject *g = Py_NewRef(arg);
    for (;;) {
        int killed = rung(G_CAST(g)) < 0;
        PObject *p = (PObject *)Py_NewRef(G_CAST(g)->home);
        gdestroy(p, G_CAST(g));
        Py_CLEAR(g);
        if (killed) {   /* GreenletExit: the G is done, and so is this greenlet */
            setcurg(p, Py_NewRef(Py_None));
            Py_DECREF(p);
            break;
        }
        if (atomic_load_explicit(&exiting, memory_order_relaxed) && py_freeze) {
            PyObject *r = PyObject_CallNoArgs(py_freeze);   /* does not return */
            Py_XDECREF(r);
            Py_DECREF(p);
            break;
        }
        PyObject *nxt = next_local_c(p);
        if (!nxt && PyErr_Occurred()) { Py_DECREF(p); break; }
        if (nxt && G_CAST(nxt)->glet == Py_None) {   /* unstarted: run it on this greenlet */
            if (bind_c(p, G_CAST(nxt), me) < 0) { Py_DECREF(p); Py_DECREF(nxt); break; }
            setcurg(p, Py_NewRef(nxt));
            G_CAST(nxt)->status = Grunning;
            Py_DECREF(p);
            g = nxt;
            continue;
        }
        if (PyList_GET_SIZE(p->gfree) >= GFREE_MAX || PyList_Append(p->gfree, me) < 0) {
            PyErr_Clear();
            int r = nxt ? runqput_c(p, nxt, 1) : 0;
            Py_XDECREF(nxt);
            setcurg(p, Py_NewRef(Py_None));
            Py_DECREF(p);
            Py_DECREF(me);
            if (r < 0) return NULL;
            Py_RETURN_NONE;   /* this greenlet ends; g0 goes on */
        }
        PyObject *r;
        if (nxt) {
            PyObject *glet = Py_NewRef(G_CAST(nxt)->glet);
            setcurg(p, nxt);   /* steals nxt */
            G_CAST(nxt)->status = Grunning;
            r = PyGreenlet_Switch((PyGreenlet *)glet, NULL, NULL);
            Py_DECREF(glet);
        } else {
            setcurg(p, Py_NewRef(Py_None));
            r = PyGreenlet_Switch((PyGreenlet *)p->g0, tuple_none, NULL);
        }
        Py_DECREF(p);
        if (!r) break;   /* GreenletExit thrown in (the P retires), or an error */
        if (!PyObject_TypeCheck(r, &GType)) { Py_DECREF(r); Py_DECREF(me); Py_RETURN_NONE; }
        g = r;   /* popped from p->gfree and handed this G */
    }
    Py_XDECREF(g);
    Py_DECREF(me);
    return NULL;
}
static PyMethodDef gbody_def = {"gbody", (PyCFunction)gbody, METH_O, "the body of a goroutine greenlet"};

/* execute(p, g): g0 runs g, and the Gs that goroutines hand back to g0 to
 * start (new greenlets are created only here, on g0's shallow stack: a
 * greenlet starts at the recursion depth of whoever switches into it). */
PyObject *m_execute(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 2 || !PyObject_TypeCheck(args[0], &PType)) {
        PyErr_SetString(PyExc_TypeError, "execute(p, g)");
        return NULL;
    }
    PObject *p = P_CAST(args[0]);
    PyObject *g = Py_NewRef(args[1]);
    while (PyObject_TypeCheck(g, &GType)) {
        GObject *gp = G_CAST(g);
        if (gp->glet == Py_None) {
            Py_ssize_t k = PyList_GET_SIZE(p->gfree);
            PyObject *glet;
            if (k > 0) {
                glet = Py_NewRef(PyList_GET_ITEM(p->gfree, k - 1));
                if (PyList_SetSlice(p->gfree, k - 1, k, NULL) < 0) { Py_DECREF(glet); glet = NULL; }
            } else {
                glet = (PyObject *)PyGreenlet_New(gbody_fn, (PyGreenlet *)p->g0);
            }
            if (!glet || bind_c(p, gp, glet) < 0) { Py_XDECREF(glet); Py_DECREF(g); return NULL; }
            Py_DECREF(glet);
        }
        PyObject *glet = Py_NewRef(gp->glet);
        setcurg(p, g);   /* steals g */
        gp->status = Grunning;
        PyObject *a = PyTuple_Pack(1, (PyObject *)gp);
        PyObject *r = a ? PyGreenlet_Switch((PyGreenlet *)glet, a, NULL) : NULL;
        Py_XDECREF(a);
        Py_DECREF(glet);
        if (!r) return NULL;
        g = r;
    }
    Py_DECREF(g);
    Py_RETURN_NONE;
}

int gbody_init(void) {
    PyGreenlet_Import();   /* greenlet.h keeps its C-API table per file */
    if (!_PyGreenlet_API) return -1;
    gbody_fn = PyCFunction_New(&gbody_def, NULL);
    return gbody_fn ? 0 : -1;
}
