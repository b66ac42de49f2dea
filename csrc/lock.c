/* Lock: a PyThread lock usable from Python with `with` (p.lock). */
#include "runtime.h"

PyObject *Lock_new(PyTypeObject *t, PyObject *a, PyObject *k) {
    LockObject *self = (LockObject *)t->tp_alloc(t, 0);
    if (!self) return NULL;
    self->lk = PyThread_allocate_lock();
    if (!self->lk) { Py_DECREF(self); return PyErr_NoMemory(); }
    return (PyObject *)self;
}
static void Lock_dealloc(LockObject *self) {
    if (self->lk) PyThread_free_lock(self->lk);
    Py_TYPE(self)->tp_free((PyObject *)self);
}
static PyObject *Lock_acquire(LockObject *self, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"blocking", NULL};
    int blocking = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwl, &blocking)) return NULL;
    if (!blocking) {
        if (!PyThread_acquire_lock(self->lk, NOWAIT_LOCK)) Py_RETURN_FALSE;
        tls_nopreempt++;
    } else {
        lk_acquire(self->lk);
    }
    self->held = 1;
    Py_RETURN_TRUE;
}
static PyObject *Lock_release(LockObject *self, PyObject *unused) {
    if (!self->held) { PyErr_SetString(PyExc_RuntimeError, "release unlocked lock"); return NULL; }
    self->held = 0;
    lk_release(self->lk);
    Py_RETURN_NONE;
}
static PyObject *Lock_enter(LockObject *self, PyObject *unused) {
    lk_acquire(self->lk);
    self->held = 1;
    Py_RETURN_TRUE;
}
static PyObject *Lock_exit(LockObject *self, PyObject *args) { return Lock_release(self, NULL); }
static PyObject *Lock_locked(LockObject *self, PyObject *unused) { return PyBool_FromLong(self->held); }
static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Lock_acquire, METH_VARARGS | METH_KEYWORDS, NULL},
    {"release", (PyCFunction)Lock_release, METH_NOARGS, NULL},
    {"__enter__", (PyCFunction)Lock_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Lock_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS, NULL},
    {NULL}};
PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pygmp._hot.Lock", .tp_basicsize = sizeof(LockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT, .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc, .tp_methods = Lock_methods,
    .tp_doc = "A runtime lock (PyThread lock) usable with `with`.",
};

