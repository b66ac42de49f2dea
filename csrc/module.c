/* The pygmp._hot module: the core's globals, the callbacks into Python, init. */
#include "runtime.h"

PyObject *py_getg, *py_park_thread, *py_checkdead,
         *py_park_current, *py_freeze;
PyObject *py_fatalpanic, *py_exit_from_goroutine, *py_goexit, *py_time_sleep;
PyObject *PanicError, *default_case, *glob_runq, *tuple_none;
atomic_int exiting;
PyObject *s_release, *s_acquire, *s_unpark, *s_chan_send, *s_chan_recv,
         *s_select, *s_select_nocases, *s_send_nil, *s_recv_nil,
         *s_park, *s_append, *s_popleft;
_Thread_local PyObject *tls_p;
_Thread_local uint64_t rng_state;

static PyObject *m_init(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"getg", "park_thread", "checkdead",
                          "park_current", "panic_error", "default",
                          "fatalpanic", "exit_from_goroutine", "goexit", NULL};
    PyObject *a[9];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOO", kwl, &a[0], &a[1], &a[2], &a[3],
                                     &a[4], &a[5], &a[6], &a[7], &a[8]))
        return NULL;
    Py_XSETREF(py_getg, Py_NewRef(a[0]));
    Py_XSETREF(py_park_thread, Py_NewRef(a[1]));
    Py_XSETREF(py_checkdead, Py_NewRef(a[2]));
    Py_XSETREF(py_park_current, Py_NewRef(a[3]));
    Py_XSETREF(PanicError, Py_NewRef(a[4]));
    Py_XSETREF(default_case, Py_NewRef(a[5]));
    Py_XSETREF(py_fatalpanic, Py_NewRef(a[6]));
    Py_XSETREF(py_exit_from_goroutine, Py_NewRef(a[7]));
    Py_XSETREF(py_goexit, Py_NewRef(a[8]));
    Py_RETURN_NONE;
}
static PyObject *m_set_exiting(PyObject *m, PyObject *f) {
    if (f != Py_None) Py_XSETREF(py_freeze, Py_NewRef(f));
    atomic_store(&exiting, f != Py_None);
    Py_RETURN_NONE;
}
static PyObject *m_set_globrunq(PyObject *m, PyObject *q) {
    Py_XSETREF(glob_runq, q == Py_None ? NULL : Py_NewRef(q));
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"init", (PyCFunction)(void (*)(void))m_init, METH_VARARGS | METH_KEYWORDS, "register the Python side"},
    {"set_globrunq", (PyCFunction)m_set_globrunq, METH_O, "the global runqueue (for its emptiness hint)"},
    {"set_sched", (PyCFunction)m_set_sched, METH_O, "the running runtime's Sched (None: none, after fork)"},
    {"schedule", (PyCFunction)m_schedule, METH_O, "schedule(p): the worker loop on p's g0; returns when p retires"},
    {"wakep", (PyCFunction)m_wakep, METH_NOARGS, "wake an idle P to look for work unless one is spinning"},
    {"wakep_idle", (PyCFunction)m_wakep_idle, METH_NOARGS, "wakep only when no live P is running (global-queue work from a thread)"},
    {"install_stack_cache", (PyCFunction)(void (*)(void))m_install_stack_cache, METH_FASTCALL,
     "install_stack_cache(maxwarm, root=0): cache greenlet data-stack chunks (at most maxwarm warm); root: small root slot bytes (0: off)"},
    {"stackcache_scavenge", (PyCFunction)(void (*)(void))m_stackcache_scavenge, METH_FASTCALL,
     "stackcache_scavenge(force=False): give back the pages of data-stack chunks unused since the last call; bytes given back"},
    {"stackcache_stats", (PyCFunction)m_stackcache_stats, METH_NOARGS, "the data-stack cache's counters"},
    {"datastack_used", (PyCFunction)m_datastack_used, METH_NOARGS, "(bytes, chunks, top chunk size) of the calling greenlet's data stack"},
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
    {"execute", (PyCFunction)(void (*)(void))m_execute, METH_FASTCALL, "execute(p, g): g0 runs g (gbody.c)"},
    {"addtimer", (PyCFunction)(void (*)(void))m_addtimer, METH_FASTCALL, "addtimer(t, when, period=0.0) -> seq"},
    {"deltimer", (PyCFunction)m_deltimer, METH_O, "deltimer(t) -> True if it was pending"},
    {"runtimers", (PyCFunction)(void (*)(void))m_runtimers, METH_FASTCALL, "runtimers(p, now=None) -> timers fired"},
    {"movetimers", (PyCFunction)(void (*)(void))m_movetimers, METH_FASTCALL, "movetimers(p, dst): a retiring P's timers"},
    {"chantimer", (PyCFunction)m_chantimer, METH_O, "chantimer(c): an RTimer that sends time.time() on c"},
    {"sleep", (PyCFunction)m_sleep, METH_O, "sleep(d): park the current goroutine for d seconds"},
    {"set_allp", (PyCFunction)m_set_allp, METH_O, "set_allp(ps): the live Ps (timers pick and wake them)"},
    {"_timers_debug", (PyCFunction)(void (*)(void))m_timers_debug, METH_FASTCALL, "test hook (timers.c)"},
    {"netpoll_init", (PyCFunction)(void (*)(void))m_netpoll_init, METH_VARARGS | METH_KEYWORDS, "register the network wait's Python side (runtime/netfd.py)"},
    {"netpoll_inject", (PyCFunction)(void (*)(void))m_netpoll_inject, METH_FASTCALL, "tests: apply one poller event (token, readable, writable)"},
    {"nnetwait", (PyCFunction)m_nnetwait, METH_O, "nnetwait(allp): Gs parked on the network (checkdead)"},
    {"netpoll_stats", (PyCFunction)m_netpoll_stats, METH_NOARGS, "network wait counters"},
    /* preemption and sysmon (csrc/preempt.c, csrc/sysmon.c) */
    {"checkpreempt", (PyCFunction)m_checkpreempt, METH_NOARGS, "cooperative preemption point: yield if sysmon asked the current G to"},
    {"preempt_config", (PyCFunction)(void (*)(void))m_preempt_config, METH_FASTCALL, "preempt_config(unsafe_prefixes, transparent_codes, async_on) -> async available"},
    {"preempt_stats", (PyCFunction)m_preempt_stats, METH_NOARGS, "preemption counters"},
    {"nopreempt", (PyCFunction)m_nopreempt, METH_O, "nopreempt(delta): this thread's no-preemption count += delta; returns it"},
    {"tstate_info", (PyCFunction)m_tstate_info, METH_NOARGS, "this thread's tracing state (tests)"},
    {"latencies", (PyCFunction)m_latencies, METH_NOARGS, "runnable-to-running histogram: (counts, sum_ns)"},
    {"sysmon_attach", (PyCFunction)m_sysmon_attach, METH_O, "sysmon_attach(p): on p's worker, at its start"},
    {"sysmon_detach", (PyCFunction)m_sysmon_detach, METH_O, "sysmon_detach(p): on p's worker, before it exits"},
    {"sysmon_run", (PyCFunction)(void (*)(void))m_sysmon_run, METH_FASTCALL, "sysmon_run(act, slice_us, stall_ms, schedtrace_ms): the sysmon loop"},
    {"sysmon_stop", (PyCFunction)m_sysmon_stop, METH_NOARGS, "make sysmon_run return"},
    {"sysmon_wakeup", (PyCFunction)m_sysmon_wakeup, METH_NOARGS, "make sysmon look now"},
    {"sysmon_stats", (PyCFunction)m_sysmon_stats, METH_NOARGS, "sysmon counters"},
    {"sysmon_retire_at", (PyCFunction)m_sysmon_retire_at, METH_O, "the oldest idle syscall M reaches its keep-alive in d seconds (None: none)"},
    {"trace_start", (PyCFunction)m_trace_start, METH_NOARGS, "start recording the scheduler trace -> start time (ns)"},
    {"trace_stop", (PyCFunction)m_trace_stop, METH_NOARGS, "stop -> (events, dropped)"},
    {"trace_event", (PyCFunction)(void (*)(void))m_trace_event, METH_FASTCALL, "trace_event(kind, p, goid, arg, obj)"},
    {NULL}};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pygmp._hot",
    "pygmp's runtime core in C (see csrc/runtime.h).", -1, mod_methods};

PyMODINIT_FUNC PyInit__hot(void) {
    if (proc_import_greenlet() < 0 || gbody_init() < 0 || timers_init() < 0) return NULL;
    if (preempt_init() < 0 || sysmon_init() < 0) return NULL;
    if (PyType_Ready(&LockType) < 0 || PyType_Ready(&GType) < 0 || PyType_Ready(&PType) < 0 ||
        PyType_Ready(&ChanType) < 0 || PyType_Ready(&TimerType) < 0 ||
        PyType_Ready(&PollerType) < 0 || PyType_Ready(&FDType) < 0 || PyType_Ready(&SchedType) < 0)
        return NULL;
    PyObject *tm = PyImport_ImportModule("time");
    if (!tm) return NULL;
    py_time_sleep = PyObject_GetAttrString(tm, "sleep");
    Py_DECREF(tm);
    if (!py_time_sleep) return NULL;
    if (netpoll_module_init() < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return NULL
    INTERN(s_release, "release"); INTERN(s_acquire, "acquire"); INTERN(s_unpark, "unpark");
    INTERN(s_chan_send, "chan send"); INTERN(s_chan_recv, "chan receive");
    INTERN(s_select, "select"); INTERN(s_select_nocases, "select (no cases)");
    INTERN(s_send_nil, "chan send (nil chan)"); INTERN(s_recv_nil, "chan receive (nil chan)");
    INTERN(s_park, "park"); INTERN(s_append, "append"); INTERN(s_popleft, "popleft");
    tuple_none = PyTuple_Pack(1, Py_None);
    if (!tuple_none) return NULL;
    Py_INCREF(&LockType); PyModule_AddObject(m, "Lock", (PyObject *)&LockType);
    Py_INCREF(&GType); PyModule_AddObject(m, "GBase", (PyObject *)&GType);
    Py_INCREF(&PType); PyModule_AddObject(m, "PBase", (PyObject *)&PType);
    Py_INCREF(&SchedType); PyModule_AddObject(m, "SchedBase", (PyObject *)&SchedType);
    Py_INCREF(&ChanType); PyModule_AddObject(m, "ChanBase", (PyObject *)&ChanType);
    Py_INCREF(&TimerType); PyModule_AddObject(m, "RTimer", (PyObject *)&TimerType);
    PyModule_AddIntConstant(m, "GFREE_MAX", GFREE_MAX);
    Py_INCREF(&PollerType); PyModule_AddObject(m, "Poller", (PyObject *)&PollerType);
    Py_INCREF(&FDType); PyModule_AddObject(m, "FD", (PyObject *)&FDType);
    return m;
}

