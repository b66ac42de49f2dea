/* The pygmp._hot module: the core's globals, the callbacks into Python, init. */
#include "runtime.h"

PyObject *py_getg, *py_park_thread, *py_bind, *py_park_current, *py_freeze,
         *py_glet_for, *py_checkdead;
PyObject *PanicError, *default_case, *tuple_none;
atomic_int exiting;
PyObject *s_release, *s_acquire, *s_unpark, *s_chan_send, *s_chan_recv,
         *s_select, *s_select_nocases, *s_send_nil, *s_recv_nil,
         *s_park, *s_poll, *s_append, *s_popleft, *s_set;
_Thread_local PyObject *tls_p;
_Thread_local uint64_t rng_state;

static PyObject *m_init(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"getg", "park_thread", "bind", "park_current", "panic_error",
                          "default", "glet_for", "checkdead", NULL};
    PyObject *a[8];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOO", kwl, &a[0], &a[1], &a[2], &a[3],
                                     &a[4], &a[5], &a[6], &a[7]))
        return NULL;
    Py_XSETREF(py_getg, Py_NewRef(a[0]));
    Py_XSETREF(py_park_thread, Py_NewRef(a[1]));
    Py_XSETREF(py_bind, Py_NewRef(a[2]));
    Py_XSETREF(py_park_current, Py_NewRef(a[3]));
    Py_XSETREF(PanicError, Py_NewRef(a[4]));
    Py_XSETREF(default_case, Py_NewRef(a[5]));
    Py_XSETREF(py_glet_for, Py_NewRef(a[6]));
    Py_XSETREF(py_checkdead, Py_NewRef(a[7]));
    Py_RETURN_NONE;
}
static PyObject *m_set_exiting(PyObject *m, PyObject *f) {
    if (f != Py_None) Py_XSETREF(py_freeze, Py_NewRef(f));
    atomic_store(&exiting, f != Py_None);
    Py_RETURN_NONE;
}
static PyMethodDef mod_methods[] = {
    {"init", (PyCFunction)(void (*)(void))m_init, METH_VARARGS | METH_KEYWORDS, "register the Python side"},
    {"set_sched", (PyCFunction)m_set_sched, METH_O, "the running runtime's Sched (None: none, after fork)"},
    {"netpoll_setup", (PyCFunction)(void (*)(void))m_netpoll_setup, METH_FASTCALL, "netpoll_setup(np_wait, np_break): the C netpoller's entry points (addresses)"},
    {"schedule", (PyCFunction)m_schedule, METH_O, "schedule(p): the worker loop on p's g0; returns when p retires"},
    {"wakep", (PyCFunction)m_wakep, METH_NOARGS, "wake an idle P to look for work unless one is spinning"},
    {"wakep_idle", (PyCFunction)m_wakep_idle, METH_NOARGS, "wakep only when no live P is running (global-queue work from a thread)"},
    {"unpark", (PyCFunction)m_unpark, METH_O, "unpark(p): wake p's idle wait (or make its next one return)"},
    {"netpoll_poll", (PyCFunction)m_netpoll_poll, METH_O, "netpoll_poll(p) (owner): non-blocking poll of p's poller; Gs readied"},
    {"install_stack_cache", (PyCFunction)m_install_stack_cache, METH_O, "cache up to n greenlet data-stack chunks"},
    {"set_exiting", (PyCFunction)m_set_exiting, METH_O, "set_exiting(freeze_fn): workers call it at their next park; None: clear"},
    {"set_current_p", (PyCFunction)m_set_current_p, METH_O, "this worker thread drives P (None: none)"},
    {"runqput", (PyCFunction)(void (*)(void))m_runqput, METH_FASTCALL, "runqput(p, g, nxt) (owner)"},
    {"runqget", (PyCFunction)m_runqget, METH_O, "runqget(p) (owner) -> G or None"},
    {"next_local", (PyCFunction)m_next_local, METH_O, "next_local(p) (owner) -> G or None"},
    {"gopark", (PyCFunction)(void (*)(void))m_gopark, METH_FASTCALL, "gopark(g, reason)"},
    {"goready", (PyCFunction)m_goready, METH_O, "goready(g)"},
    {"getg", (PyCFunction)m_getg, METH_NOARGS, "the current G"},
    {"switchto", (PyCFunction)(void (*)(void))m_switchto, METH_FASTCALL, "switchto(p, nxt): from the current G to nxt (None: g0)"},
    {"select", (PyCFunction)(void (*)(void))m_select, METH_FASTCALL, "Go's select"},
    {NULL}};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pygmp._hot",
    "pygmp's runtime core in C (see csrc/runtime.h).", -1, mod_methods};

PyMODINIT_FUNC PyInit__hot(void) {
    if (proc_import_greenlet() < 0) return NULL;
    if (PyType_Ready(&LockType) < 0 || PyType_Ready(&GType) < 0 || PyType_Ready(&PType) < 0 ||
        PyType_Ready(&ChanType) < 0 || PyType_Ready(&SchedType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return NULL
    INTERN(s_release, "release"); INTERN(s_acquire, "acquire"); INTERN(s_unpark, "unpark");
    INTERN(s_chan_send, "chan send"); INTERN(s_chan_recv, "chan receive");
    INTERN(s_select, "select"); INTERN(s_select_nocases, "select (no cases)");
    INTERN(s_send_nil, "chan send (nil chan)"); INTERN(s_recv_nil, "chan receive (nil chan)");
    INTERN(s_park, "park"); INTERN(s_poll, "poll"); INTERN(s_append, "append");
    INTERN(s_popleft, "popleft"); INTERN(s_set, "set");
    tuple_none = PyTuple_Pack(1, Py_None);
    if (!tuple_none) return NULL;
    Py_INCREF(&LockType); PyModule_AddObject(m, "Lock", (PyObject *)&LockType);
    Py_INCREF(&GType); PyModule_AddObject(m, "GBase", (PyObject *)&GType);
    Py_INCREF(&PType); PyModule_AddObject(m, "PBase", (PyObject *)&PType);
    Py_INCREF(&ChanType); PyModule_AddObject(m, "ChanBase", (PyObject *)&ChanType);
    Py_INCREF(&SchedType); PyModule_AddObject(m, "SchedBase", (PyObject *)&SchedType);
    return m;
}

