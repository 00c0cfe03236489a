/* Compiled into the cffi extension only (not part of libshmx): the
 * producer's five hot calls as CPython builtins.
 *
 * Why: a cffi call with more than one argument goes through a tuple and
 * PyArg_UnpackTuple (~60 ns for two arguments, ~110 ns for append's six, on
 * the 2-core bench VM, against ~20 ns for a one-argument call), and a
 * Python method around it adds ~80 ns more.  begin_frame + 3 x
 * append_stream + publish_frame was ~990 ns that way, where the C work is
 * ~46 ns.  A METH_FASTCALL builtin takes its arguments from the caller's
 * stack with no tuple and no Python frame.
 *
 * What it does: only the common case, with exact types (int ids and
 * handles, bytes data, a float or int sim_time, a dict for publish), on an
 * open server with no loans out.  Anything else - another buffer type, a
 * keyword argument, a bad value, any refusal by the C library, a destroyed
 * server - is handed, with the same arguments, to the Python method, which
 * does the call with every check and message of shmx/server.py; a refusal
 * by the C library goes with its status to the method's failure half,
 * which builds last_error or the exception.  A success never touches
 * last_error: the message is made only for a failure.
 *
 * Lifetime: the hot state lives in a capsule that each builtin holds as its
 * `self`; the Server holds the builtins.  `s` is the C handle while the
 * Server's region is open and NULL otherwise (the Server sets it at
 * create() and clears it at destroy(), before the handle can be freed), so
 * a builtin kept after destroy() never touches freed memory.  The slow
 * callables reach the Server through a weak reference: no cycle keeps the
 * mapping alive, and the GIL is held throughout (cffi calls in this
 * extension keep it, see gil.h), so no other thread changes `s` or `loans`
 * during a call. */

typedef struct pyshmx_hot {
    shmx_server *s;   /* NULL before create() and after destroy() */
    int loans;        /* nonzero while loan() views are out: every call goes the slow way */
    PyObject *slow;   /* the Python methods by HOT_*, then their failure halves */
    PyObject *ids;    /* the Server's dict stream name -> id, updated in place */
} pyshmx_hot;

enum { HOT_BEGIN, HOT_APPEND, HOT_PUBLISH_FRAME, HOT_PUBLISH, HOT_PUBLISH_STREAM, HOT_N };

#ifndef METH_FASTCALL
#define METH_FASTCALL 0x0080
#endif
#define HOT_MAX_STREAMS 16    /* publish() of more streams takes the Python way */

static void hot_free(PyObject *cap)
{
    pyshmx_hot *h = (pyshmx_hot *)PyCapsule_GetPointer(cap, NULL);
    if (!h) return;
    Py_XDECREF(h->slow);
    Py_XDECREF(h->ids);
    PyMem_Free(h);
}

static pyshmx_hot *hot_of(PyObject *self)
{
    return (pyshmx_hot *)PyCapsule_GetPointer(self, NULL);
}

/* An exact int in 0..max, or -1 (no Python error left set). */
static int hot_u64(PyObject *o, uint64_t max, uint64_t *out)
{
    if (!PyLong_CheckExact(o)) return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* A stream key: an exact int id, or a name in the schema. */
static int hot_stream(pyshmx_hot *h, PyObject *key, uint32_t *out)
{
    uint64_t v;
    if (PyUnicode_CheckExact(key)) {
        key = PyDict_GetItem(h->ids, key); /* borrowed; no error raised */
        if (!key) return -1;
    }
    if (hot_u64(key, UINT32_MAX, &v) != 0) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int hot_bytes(PyObject *o, const char **p, uint64_t *n)
{
    Py_ssize_t len;
    char *buf;
    if (!PyBytes_CheckExact(o) || PyBytes_AsStringAndSize(o, &buf, &len) != 0) return -1;
    *p = buf;
    *n = (uint64_t)len;
    return 0;
}

static int hot_time(PyObject *o, double *out)
{
    if (PyFloat_CheckExact(o)) {
        *out = PyFloat_AsDouble(o);
        return 0;
    }
    if (!PyLong_CheckExact(o)) return -1;
    *out = PyLong_AsDouble(o);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* The fast paths: a new reference, or NULL (no error set) for "take the
 * Python way". */
static PyObject *hot_try(pyshmx_hot *h, int which, PyObject *const *a, Py_ssize_t n, int *st)
{
    shmx_server *s = h->s;
    uint64_t frame = 0, bytes = 0, v = 0;
    uint32_t sid = 0;
    const char *p = NULL;
    double t = 0.0;
    if (!s) return NULL;
    switch (which) {
    case HOT_BEGIN:
        if (n != 0 || h->loans || (*st = shmx_server_begin_frame(s, &frame)) != SHMX_OK) return NULL;
        return PyLong_FromUnsignedLongLong(frame);
    case HOT_APPEND:
        if (n != 4 || hot_u64(a[0], UINT64_MAX, &frame) || hot_u64(a[1], UINT32_MAX, &v) ||
            hot_bytes(a[2], &p, &bytes))
            return NULL;
        sid = (uint32_t)v;
        if (hot_u64(a[3], UINT32_MAX, &v) ||
            (*st = shmx_server_append(s, frame, sid, p, bytes, (uint32_t)v)) != SHMX_OK)
            return NULL;
        Py_INCREF(Py_True);
        return Py_True;
    case HOT_PUBLISH_FRAME:
        if (n != 2 || h->loans || hot_u64(a[0], UINT64_MAX, &frame) || hot_time(a[1], &t) ||
            (*st = shmx_server_publish(s, frame, t)) != SHMX_OK)
            return NULL;
        Py_INCREF(Py_True);
        return Py_True;
    case HOT_PUBLISH_STREAM:
        if (n < 2 || n > 3 || h->loans || hot_stream(h, a[0], &sid) || hot_bytes(a[1], &p, &bytes) ||
            (n == 3 && hot_time(a[2], &t)) || (*st = shmx_server_publish_stream(s, sid, p, bytes, t)) != SHMX_OK)
            return NULL;
        Py_INCREF(Py_None);
        return Py_None;
    case HOT_PUBLISH: {
        shmx_stream_data d[HOT_MAX_STREAMS];
        Py_ssize_t pos = 0, i = 0, count;
        PyObject *key, *val;
        if (n < 1 || n > 2 || h->loans || !PyDict_CheckExact(a[0]) || (n == 2 && hot_time(a[1], &t)))
            return NULL;
        count = PyDict_Size(a[0]);
        if (count < 1 || count > HOT_MAX_STREAMS) return NULL;
        /* No Python code runs in this loop, so the dict and its bytes stay
         * as they are until the C call returns. */
        while (PyDict_Next(a[0], &pos, &key, &val)) {
            if (i >= count || hot_stream(h, key, &d[i].stream_id) || hot_bytes(val, &p, &d[i].bytes))
                return NULL;
            d[i].reserved = 0;
            d[i].data = p;
            i++;
        }
        if (i != count || (*st = shmx_server_publish_streams(s, d, (uint32_t)count, t)) != SHMX_OK) return NULL;
        Py_INCREF(Py_None);
        return Py_None;
    }
    }
    return NULL;
}

/* The Python way: the method itself (slow[which]) when the C call was not
 * made, or its failure half (slow[HOT_N + which], given the status first)
 * when the C library refused: that builds last_error or the exception from
 * the refusal just made, without making the call twice (a refused
 * begin_frame counts an overrun). */
static PyObject *hot_slow(pyshmx_hot *h, int which, int st, PyObject *args, PyObject *kw)
{
    PyObject *r, *full;
    Py_ssize_t i, n;
    if (st == SHMX_OK) return PyObject_Call(PyTuple_GetItem(h->slow, which), args, kw);
    n = PyTuple_Size(args);
    full = PyTuple_New(n + 1);
    if (!full) return NULL;
    PyTuple_SetItem(full, 0, PyLong_FromLong(st));
    for (i = 0; i < n; i++) {
        PyObject *o = PyTuple_GetItem(args, i);
        Py_INCREF(o);
        PyTuple_SetItem(full, i + 1, o);
    }
    r = PyObject_Call(PyTuple_GetItem(h->slow, HOT_N + which), full, kw);
    Py_DECREF(full);
    return r;
}

/* A METH_FASTCALL call's arguments as a tuple and (*kw, NULL when there
 * are none) a dict, for a call the slow way; NULL with an error set. */
static PyObject *hot_args(PyObject *const *a, Py_ssize_t n, PyObject *kwnames, PyObject **kw)
{
    Py_ssize_t i, nk = kwnames ? PyTuple_Size(kwnames) : 0;
    PyObject *args = PyTuple_New(n);
    *kw = NULL;
    if (!args) return NULL;
    for (i = 0; i < n; i++) {
        Py_INCREF(a[i]);
        PyTuple_SetItem(args, i, a[i]);
    }
    if (nk) {
        *kw = PyDict_New();
        for (i = 0; *kw && i < nk; i++)
            if (PyDict_SetItem(*kw, PyTuple_GetItem(kwnames, i), a[n + i]) != 0) Py_CLEAR(*kw);
        if (!*kw) Py_CLEAR(args);
    }
    return args;
}

/* The METH_FASTCALL entry: arguments from the caller's stack.  The flag
 * and this calling convention are CPython's since 3.7 and unchanged since
 * (the limited API names them from 3.10; this package needs >= 3.8). */
static PyObject *hot_fast(PyObject *self, int which, PyObject *const *a, Py_ssize_t n, PyObject *kwnames)
{
    pyshmx_hot *h = hot_of(self);
    PyObject *r, *args, *kw = NULL;
    Py_ssize_t nk = kwnames ? PyTuple_Size(kwnames) : 0;
    int st = SHMX_OK;
    if (!h) return NULL;
    if (nk == 0 && (r = hot_try(h, which, a, n, &st)) != NULL) return r;
    if (!(args = hot_args(a, n, kwnames, &kw))) return NULL;
    r = hot_slow(h, which, st, args, kw);
    Py_DECREF(args);
    Py_XDECREF(kw);
    return r;
}

#define HOT_ENTRIES(name, which)                                                                    \
    static PyObject *hot_f_##name(PyObject *self, PyObject *const *a, Py_ssize_t n, PyObject *kwn)  \
    {                                                                                               \
        return hot_fast(self, which, a, n, kwn);                                                    \
    }
HOT_ENTRIES(begin_frame, HOT_BEGIN)
HOT_ENTRIES(append_stream, HOT_APPEND)
HOT_ENTRIES(publish_frame, HOT_PUBLISH_FRAME)
HOT_ENTRIES(publish, HOT_PUBLISH)
HOT_ENTRIES(publish_stream, HOT_PUBLISH_STREAM)

#define HOT_DEF(name) {#name, (PyCFunction)(void (*)(void))hot_f_##name, METH_FASTCALL | METH_KEYWORDS, NULL}
static PyMethodDef hot_defs[HOT_N] = {
    HOT_DEF(begin_frame), HOT_DEF(append_stream), HOT_DEF(publish_frame), HOT_DEF(publish),
    HOT_DEF(publish_stream),
};
/* _hot_bind(slow, ids, docs) -> (address of the state, builtin, ...): the
 * five builtins over one new state, in HOT_* order.  `docs` (bytes: each
 * builtin's text signature and docstring) is kept for good at the first
 * bind, since the method table is static. */
static PyObject *hot_docs;

static PyObject *hot_bind(PyObject *module, PyObject *args)
{
    PyObject *slow, *ids, *docs, *cap, *out;
    pyshmx_hot *h;
    int i;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &slow, &PyDict_Type, &ids, &PyTuple_Type, &docs))
        return NULL;
    if (PyTuple_Size(slow) != 2 * HOT_N || PyTuple_Size(docs) != HOT_N) {
        PyErr_SetString(PyExc_ValueError, "_hot_bind: slow and docs need one entry per hot call");
        return NULL;
    }
    if (!hot_docs) {
        for (i = 0; i < HOT_N; i++)
            if (!PyBytes_Check(PyTuple_GetItem(docs, i))) {
                PyErr_SetString(PyExc_TypeError, "_hot_bind: docs must be bytes");
                return NULL;
            }
        Py_INCREF(docs);
        hot_docs = docs;
        for (i = 0; i < HOT_N; i++) hot_defs[i].ml_doc = PyBytes_AsString(PyTuple_GetItem(docs, i));
    }
    h = (pyshmx_hot *)PyMem_Malloc(sizeof *h);
    if (!h) return PyErr_NoMemory();
    memset(h, 0, sizeof *h);
    Py_INCREF(slow);
    Py_INCREF(ids);
    h->slow = slow;
    h->ids = ids;
    cap = PyCapsule_New(h, NULL, hot_free);
    if (!cap) {
        Py_DECREF(slow);
        Py_DECREF(ids);
        PyMem_Free(h);
        return NULL;
    }
    out = PyTuple_New(HOT_N + 1);
    if (out && PyTuple_SetItem(out, 0, PyLong_FromVoidPtr(h)) != 0) Py_CLEAR(out);
    for (i = 0; out && i < HOT_N; i++) {
        PyObject *fn = PyCFunction_New(&hot_defs[i], cap);
        if (!fn || PyTuple_SetItem(out, i + 1, fn) != 0) Py_CLEAR(out);
    }
    Py_DECREF(cap);
    return out;
}

static PyMethodDef hot_bind_def = {"_hot_bind", hot_bind, METH_VARARGS, NULL};

/* Put a module-level builtin into this extension module (0, or -1 with no
 * Python error left set). */
static int hot_install(PyMethodDef *def)
{
    PyObject *m = PyImport_AddModule("shmx._shmx"); /* borrowed */
    PyObject *fn = m ? PyCFunction_New(def, NULL) : NULL;
    int rc = fn ? PyObject_SetAttrString(m, def->ml_name, fn) : -1;
    Py_XDECREF(fn);
    if (rc != 0) PyErr_Clear();
    return rc;
}

/* Called once through cffi: puts _hot_bind into this extension module. */
static int pyshmx_hot_install(void) { return hot_install(&hot_bind_def); }
