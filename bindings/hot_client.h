/* Compiled into the cffi extension only (not part of libshmx): the
 * consumer's two dict-returning reads, read_next and get_latest_frame,
 * read_next_stream (one stream's view of the next frame) and wait_frame
 * (the blocking read: its first wait slice and the frame dict), as CPython
 * builtins.  hot.h does the same for the producer and says why a
 * METH_FASTCALL builtin beats a cffi call from a Python method.
 *
 * Why here too: read_next's C work is ~110 ns on the 2-core bench VM, but
 * the method around it took ~900 ns, most of it building the frame dict
 * (three small dicts at ~120 ns each in this interpreter) and unpacking
 * shmx_frame_info with struct.  Built here, a dict costs a few stores.
 *
 * What it does: the C read and, when the frame's layout is already in the
 * Client's cache (the dict layout id -> entries that shmx/_client_layouts.py
 * fills and clears in place), the frame dict.  Anything else goes to
 * Python: a call on a closed Client to the method itself, and a layout not
 * cached yet to the Client's _frame_dict (which builds and caches it); the
 * C read is never made twice.  A refusal by the C library (no frame yet,
 * ...) is recorded as the Client's _fail does: its status and the detail
 * as bytes, set on the Client (through its failure half once it is gone).  A success
 * never touches last_error.
 *
 * Lifetime: as in hot.h.  The state lives in a capsule that each builtin
 * holds as its `self`; the Client holds the builtins.  `c` is the C handle
 * while the Client is open and NULL otherwise (set by open()/reconnect(),
 * cleared by close() before the handle is detached), and the GIL is held
 * from the C read to the end of the dict, so no close() runs in between.
 * The entries' memoryviews keep the mapping alive.  The slow callables
 * reach the Client through a weak reference. */

typedef struct pyshmx_hot_client {
    shmx_client *c;        /* NULL while the Client is not open */
    shmx_frame_info *fi;   /* the Client's _fi (fi_obj keeps it alive) */
    PyObject *fi_obj;
    PyObject *layouts;     /* the Client's layout cache: id -> [(name, view, elem_count, bytes, sid)] */
    PyObject *views;       /* the same views by layout id, then stream name and id: id -> {key: view} */
    PyObject *cur;         /* the Client's [dict, frame id] that get_latest_frame returns again */
    PyObject *slow;        /* Python callables by HOTC_* (see hotc_bind) */
    PyObject *keys;        /* the dict keys and attribute names, by KEY_* */
    PyObject *me;          /* a weak reference to the Client */
} pyshmx_hot_client;

enum { HOTC_NEXT, HOTC_LATEST, HOTC_NEXT_STREAM, HOTC_WAIT, HOTC_N }; /* the builtins */
/* then their failure halves, _frame_dict and _stream_view */
enum { SLOWC_REFUSED = HOTC_N, SLOWC_FRAME_DICT = 2 * HOTC_N, SLOWC_STREAM_VIEW, SLOWC_N };
static const char *const hotc_names[HOTC_N] = {"read_next", "get_latest_frame", "read_next_stream", "wait_frame"};
enum { KEY_META, KEY_FRAME_ID, KEY_SIM_TIME, KEY_PAYLOAD, KEY_TLVS, KEY_DROPPED, KEY_DATA, KEY_ELEMS,
       KEY_BYTES, KEY_STATUS, KEY_ERR, KEY_CLOSING, KEY_WAITING, KEY_OWNER, KEY_LEFT_WAIT, KEY_N };
static const char *const hotc_key_names[KEY_N] = {"__metadata__", "frame_id", "sim_time", "payload_bytes",
                                                  "tlv_count", "dropped", "data", "elem_count", "bytes",
                                                  "_last_status", "_err", "_closing", "_waiting", "_owner",
                                                  "_left_wait"};

static void hotc_free(PyObject *cap)
{
    pyshmx_hot_client *h = (pyshmx_hot_client *)PyCapsule_GetPointer(cap, NULL);
    if (!h) return;
    Py_XDECREF(h->fi_obj);
    Py_XDECREF(h->layouts);
    Py_XDECREF(h->views);
    Py_XDECREF(h->cur);
    Py_XDECREF(h->slow);
    Py_XDECREF(h->keys);
    Py_XDECREF(h->me);
    PyMem_Free(h);
}

/* d[KEY_k] = v, stealing v; -1 on failure (v may be NULL: an error is set). */
static int hotc_put(pyshmx_hot_client *h, PyObject *d, int k, PyObject *v)
{
    int rc = v ? PyDict_SetItem(d, PyTuple_GetItem(h->keys, k), v) : -1;
    Py_XDECREF(v);
    return rc;
}

/* The frame dict of h->fi, or NULL with no error set when its layout is not
 * cached (NULL with an error set: out of memory). */
static PyObject *hotc_frame(pyshmx_hot_client *h, uint64_t dropped)
{
    const shmx_frame_info *fi = h->fi;
    PyObject *key = PyLong_FromUnsignedLongLong(fi->layout_id);
    PyObject *entries = key ? PyDict_GetItem(h->layouts, key) : NULL; /* borrowed; raises nothing */
    PyObject *frame, *meta, *stream;
    Py_ssize_t i, n;
    Py_XDECREF(key);
    if (!entries || !PyList_Check(entries)) return NULL;
    frame = PyDict_New();
    meta = PyDict_New();
    if (!frame || !meta || hotc_put(h, meta, KEY_FRAME_ID, PyLong_FromUnsignedLongLong(fi->frame_id)) ||
        hotc_put(h, meta, KEY_SIM_TIME, PyFloat_FromDouble(fi->sim_time)) ||
        hotc_put(h, meta, KEY_PAYLOAD, PyLong_FromUnsignedLong(fi->payload_bytes)) ||
        hotc_put(h, meta, KEY_TLVS, PyLong_FromUnsignedLong(fi->tlv_count)) ||
        hotc_put(h, meta, KEY_DROPPED, PyLong_FromUnsignedLongLong(dropped))) {
        Py_XDECREF(meta);
        goto fail;
    }
    if (hotc_put(h, frame, KEY_META, meta)) goto fail;
    n = PyList_Size(entries);
    /* No Python code runs in this loop: the cached list stays as it is. */
    for (i = 0; i < n; i++) {
        PyObject *e = PyList_GetItem(entries, i); /* (name, view, elem_count, bytes, sid) */
        if (!PyTuple_Check(e) || PyTuple_Size(e) < 4) goto fail;
        stream = PyDict_New();
        if (!stream) goto fail;
        PyObject *view = PyTuple_GetItem(e, 1), *elems = PyTuple_GetItem(e, 2), *bytes = PyTuple_GetItem(e, 3);
        Py_INCREF(view);
        Py_INCREF(elems);
        Py_INCREF(bytes);
        if (hotc_put(h, stream, KEY_DATA, view) || hotc_put(h, stream, KEY_ELEMS, elems) ||
            hotc_put(h, stream, KEY_BYTES, bytes) || PyDict_SetItem(frame, PyTuple_GetItem(e, 0), stream)) {
            Py_DECREF(stream);
            goto fail;
        }
        Py_DECREF(stream);
    }
    return frame;
fail:
    Py_XDECREF(frame);
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "shmx: a cached frame layout is malformed");
    return NULL;
}

/* Call slow[i] with up to two arguments: `arg` (stolen; NULL: none) and
 * then `also` (borrowed; NULL: none). */
static PyObject *hotc_call2(pyshmx_hot_client *h, int i, PyObject *arg, PyObject *also)
{
    PyObject *r, *fn = PyTuple_GetItem(h->slow, i);
    if (!arg) return also ? PyObject_CallFunctionObjArgs(fn, also, NULL) : PyObject_CallObject(fn, NULL);
    r = PyObject_CallFunctionObjArgs(fn, arg, also, NULL);
    Py_DECREF(arg);
    return r;
}

static PyObject *hotc_call(pyshmx_hot_client *h, int i, PyObject *arg) { return hotc_call2(h, i, arg, NULL); }

/* The C library refused a read on an open Client: what the Client's _fail
 * does (status, and the detail as bytes, decoded only if last_error is
 * read), then None.  Through the failure half when the Client is gone. */
static PyObject *hotc_refused(pyshmx_hot_client *h, int which, shmx_status st)
{
    PyObject *client = PyWeakref_GetObject(h->me); /* borrowed */
    PyObject *v;
    int rc;
    if (!client || client == Py_None) {
        PyErr_Clear();
        return hotc_call(h, SLOWC_REFUSED + which, PyLong_FromLong(st));
    }
    Py_INCREF(client);
    v = PyLong_FromLong(st);
    rc = v ? PyObject_SetAttr(client, PyTuple_GetItem(h->keys, KEY_STATUS), v) : -1;
    Py_XDECREF(v);
    v = rc == 0 ? PyBytes_FromString(shmx_last_error()) : NULL;
    rc = v ? PyObject_SetAttr(client, PyTuple_GetItem(h->keys, KEY_ERR), v) : -1;
    Py_XDECREF(v);
    Py_DECREF(client);
    if (rc != 0) return NULL;
    Py_INCREF(Py_None);
    return Py_None;
}

/* read_next_stream(stream): the next frame in order, as one stream's view.
 * No frame after the last one read is not a failure here (None, and
 * last_error is left alone), as for get_latest_stream(new_only=True). */
static PyObject *hotc_next_stream(pyshmx_hot_client *h, PyObject *stream)
{
    shmx_status st = shmx_client_next(h->c, h->fi);
    PyObject *key, *views, *view;
    if (st == SHMX_EAGAIN) Py_RETURN_NONE;
    if (st != SHMX_OK) return hotc_refused(h, HOTC_NEXT_STREAM, st);
    key = PyLong_FromUnsignedLongLong(h->fi->layout_id);
    if (!key) return NULL;
    views = PyDict_GetItem(h->views, key); /* borrowed; raises nothing */
    view = views && PyDict_CheckExact(views) ? PyDict_GetItemWithError(views, stream) : NULL;
    if (view) {
        Py_DECREF(key);
        Py_INCREF(view);
        return view;
    }
    if (PyErr_Occurred()) { /* an unhashable stream */
        Py_DECREF(key);
        return NULL;
    }
    /* A layout seen the first time, or no such stream: _stream_view says. */
    return hotc_call2(h, SLOWC_STREAM_VIEW, key, stream);
}

static PyObject *hotc_latest(pyshmx_hot_client *h, int which);

static PyObject *hotc_fast(PyObject *self, int which, PyObject *const *a, Py_ssize_t n, PyObject *kwnames)
{
    pyshmx_hot_client *h = (pyshmx_hot_client *)PyCapsule_GetPointer(self, NULL);
    PyObject *frame;
    shmx_status st;
    const Py_ssize_t want = which == HOTC_NEXT_STREAM ? 1 : 0;
    if (!h) return NULL;
    if (n != want || (kwnames && PyTuple_Size(kwnames) != 0)) {
        if (want)
            PyErr_Format(PyExc_TypeError, "%s() takes exactly one positional argument (stream: id or name), %zd given",
                         hotc_names[which], n + (kwnames ? PyTuple_Size(kwnames) : 0));
        else
            PyErr_Format(PyExc_TypeError, "%s() takes no arguments", hotc_names[which]);
        return NULL;
    }
    if (!h->c) return hotc_call2(h, which, NULL, want ? a[0] : NULL); /* not open: the method says so */
    if (which == HOTC_NEXT_STREAM) return hotc_next_stream(h, a[0]);
    if (which == HOTC_NEXT) {
        st = shmx_client_next(h->c, h->fi);
        if (st != SHMX_OK) return hotc_refused(h, which, st);
        frame = hotc_frame(h, h->fi->dropped);
        if (frame || PyErr_Occurred()) return frame;
        return hotc_call(h, SLOWC_FRAME_DICT, PyLong_FromUnsignedLongLong(h->fi->dropped));
    }
    return hotc_latest(h, which);
}

/* get_latest_frame on an open Client (h->c set), for `which` builtin. */
static PyObject *hotc_latest(pyshmx_hot_client *h, int which)
{
    PyObject *frame;
    shmx_status st = shmx_client_latest(h->c, h->fi);
    if (st != SHMX_OK) return hotc_refused(h, which, st);
    /* The same frame as the last call: the same dict (cur = [dict, id]). */
    PyObject *cur_id = PyList_GetItem(h->cur, 1);
    if (cur_id && PyLong_AsUnsignedLongLong(cur_id) == h->fi->frame_id && h->fi->frame_id != 0) {
        frame = PyList_GetItem(h->cur, 0);
        Py_XINCREF(frame);
        if (frame && frame != Py_None) return frame;
        Py_XDECREF(frame);
    }
    PyErr_Clear(); /* an id the list should not hold: rebuild */
    frame = hotc_frame(h, 0);
    if (!frame) {
        if (PyErr_Occurred()) return NULL;
        frame = hotc_call(h, SLOWC_FRAME_DICT, PyLong_FromLong(0));
        if (!frame) return NULL;
    }
    Py_INCREF(frame);
    if (PyList_SetItem(h->cur, 0, frame) != 0 ||
        PyList_SetItem(h->cur, 1, PyLong_FromUnsignedLongLong(h->fi->frame_id)) != 0) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

/* wait_frame's first slice, in C: the Python method's steps without its
 * frames, which run after the wake-up and so add to the latency.  The
 * Client's protocol with close() is kept as _wait_new keeps it: enter
 * _waiting, then look at _closing; leave _waiting, then look at _closing
 * again (and, set, let close() know through _left_wait).  The GIL orders
 * those steps against close()'s, as it does in Python.  close() waits for
 * us to leave, and clears h->c before it detaches the handle; the Client
 * and its _owner (the handle's keeper) are held across the wait as well.
 * Anything but a frame in the first slice goes to _wait_frame_refused with
 * the status and the seconds waited, which goes on as wait_frame would. */
static PyObject *hotc_wait(pyshmx_hot_client *h, PyObject *timeout)
{
    PyObject *client, *flag, *waiting = NULL, *owner = NULL, *ident = NULL, *r = NULL;
    PyThreadState *ts;
    shmx_client *c = h->c;
    int64_t slice_ns = 50000000; /* _client_waits._SLICE_S: Ctrl-C is honoured between slices */
    uint64_t t0;
    shmx_status st;
    int closing;
    if (timeout != Py_None) {
        double secs = PyFloat_CheckExact(timeout) ? PyFloat_AsDouble(timeout)
                      : PyLong_CheckExact(timeout)  ? PyLong_AsDouble(timeout)
                                                    : -1.0;
        if (secs == -1.0 && PyErr_Occurred()) PyErr_Clear();
        if (!(secs >= 0.0)) /* NaN, negative, another type: the method checks it and says */
            return hotc_call2(h, HOTC_WAIT, NULL, timeout);
        if (secs < 0.05) slice_ns = (int64_t)(secs * 1e9);
    }
    client = PyWeakref_GetObject(h->me); /* borrowed */
    if (!client || client == Py_None) {
        PyErr_Clear();
        return hotc_call2(h, HOTC_WAIT, NULL, timeout);
    }
    Py_INCREF(client);
    flag = PyObject_GetAttr(client, PyTuple_GetItem(h->keys, KEY_CLOSING));
    closing = flag ? PyObject_IsTrue(flag) : -1;
    Py_XDECREF(flag);
    if (closing == 0) waiting = PyObject_GetAttr(client, PyTuple_GetItem(h->keys, KEY_WAITING));
    if (waiting) owner = PyObject_GetAttr(client, PyTuple_GetItem(h->keys, KEY_OWNER));
    if (owner) ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (!ident || !PySet_Check(waiting) || PySet_Add(waiting, ident) != 0) {
        /* Closing, or the Client is not as it should be: the method says. */
        if (closing != 0 || !PyErr_Occurred()) r = hotc_call2(h, HOTC_WAIT, NULL, timeout);
        goto out;
    }
    t0 = shmx_now_ns();
    ts = PyEval_SaveThread();
    st = shmx_client_wait(c, slice_ns);
    PyEval_RestoreThread(ts);
    if (PySet_Discard(waiting, ident) < 0) goto out;
    flag = PyObject_GetAttr(client, PyTuple_GetItem(h->keys, KEY_CLOSING));
    closing = flag ? PyObject_IsTrue(flag) : -1;
    Py_XDECREF(flag);
    if (closing < 0) goto out;
    if (closing) { /* close() may be waiting for us */
        flag = PyObject_CallMethodObjArgs(client, PyTuple_GetItem(h->keys, KEY_LEFT_WAIT), NULL);
        if (!flag) goto out;
        Py_DECREF(flag);
    }
    if (st == SHMX_OK && h->c == c) {
        r = hotc_latest(h, HOTC_WAIT);
    } else {
        PyObject *fn = PyTuple_GetItem(h->slow, SLOWC_REFUSED + HOTC_WAIT);
        r = PyObject_CallFunction(fn, "iOd", (int)st, timeout, (double)(shmx_now_ns() - t0) / 1e9);
    }
out:
    Py_XDECREF(ident);
    Py_XDECREF(owner);
    Py_XDECREF(waiting);
    Py_DECREF(client);
    return r;
}

/* wait_frame(timeout=None) */
static PyObject *hotc_f_wait_frame(PyObject *self, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    pyshmx_hot_client *h = (pyshmx_hot_client *)PyCapsule_GetPointer(self, NULL);
    Py_ssize_t nk = kwn ? PyTuple_Size(kwn) : 0;
    PyObject *args, *kw, *r;
    if (!h) return NULL;
    if (h->c && n + nk <= 1) {
        if (nk == 0) return hotc_wait(h, n ? a[0] : Py_None);
        if (PyUnicode_CompareWithASCIIString(PyTuple_GetItem(kwn, 0), "timeout") == 0) return hotc_wait(h, a[0]);
    }
    /* Not open, or other arguments: the method says (or raises). */
    if (!(args = hot_args(a, n, kwn, &kw))) return NULL;
    r = PyObject_Call(PyTuple_GetItem(h->slow, HOTC_WAIT), args, kw);
    Py_DECREF(args);
    Py_XDECREF(kw);
    return r;
}

static PyObject *hotc_f_read_next(PyObject *self, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    return hotc_fast(self, HOTC_NEXT, a, n, kwn);
}

static PyObject *hotc_f_get_latest_frame(PyObject *self, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    return hotc_fast(self, HOTC_LATEST, a, n, kwn);
}

static PyObject *hotc_f_read_next_stream(PyObject *self, PyObject *const *a, Py_ssize_t n, PyObject *kwn)
{
    return hotc_fast(self, HOTC_NEXT_STREAM, a, n, kwn);
}

static PyMethodDef hotc_defs[HOTC_N] = {
    {"read_next", (PyCFunction)(void (*)(void))hotc_f_read_next, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"get_latest_frame", (PyCFunction)(void (*)(void))hotc_f_get_latest_frame, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"read_next_stream", (PyCFunction)(void (*)(void))hotc_f_read_next_stream, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"wait_frame", (PyCFunction)(void (*)(void))hotc_f_wait_frame, METH_FASTCALL | METH_KEYWORDS, NULL},
};
static PyObject *hotc_docs;

/* _hot_client_bind(me, slow, fi, fi_address, layouts, views, cur, docs) ->
 * (address of the state, read_next, get_latest_frame, read_next_stream,
 * wait_frame).
 * me: a weak reference to the Client; slow: those four methods, their
 * failure halves, _frame_dict, _stream_view. */
static PyObject *hotc_bind(PyObject *module, PyObject *args)
{
    PyObject *me, *slow, *fi_obj, *fi_addr, *layouts, *views, *cur, *docs, *cap, *out;
    pyshmx_hot_client *h;
    int i;
    (void)module;
    if (!PyArg_ParseTuple(args, "OO!OO!O!O!O!O!", &me, &PyTuple_Type, &slow, &fi_obj, &PyLong_Type, &fi_addr,
                          &PyDict_Type, &layouts, &PyDict_Type, &views, &PyList_Type, &cur, &PyTuple_Type, &docs))
        return NULL;
    if (PyTuple_Size(slow) != SLOWC_N || PyTuple_Size(docs) != HOTC_N || PyList_Size(cur) != 2) {
        PyErr_SetString(PyExc_ValueError, "_hot_client_bind: slow, docs or cur has the wrong length");
        return NULL;
    }
    if (!hotc_docs) {
        for (i = 0; i < HOTC_N; i++)
            if (!PyBytes_Check(PyTuple_GetItem(docs, i))) {
                PyErr_SetString(PyExc_TypeError, "_hot_client_bind: docs must be bytes");
                return NULL;
            }
        Py_INCREF(docs);
        hotc_docs = docs; /* kept for good: the method table is static */
        for (i = 0; i < HOTC_N; i++) hotc_defs[i].ml_doc = PyBytes_AsString(PyTuple_GetItem(docs, i));
    }
    h = (pyshmx_hot_client *)PyMem_Malloc(sizeof *h);
    if (!h) return PyErr_NoMemory();
    memset(h, 0, sizeof *h);
    h->fi = (shmx_frame_info *)PyLong_AsVoidPtr(fi_addr);
    h->keys = PyTuple_New(KEY_N);
    for (i = 0; h->keys && i < KEY_N; i++) {
        PyObject *k = PyUnicode_InternFromString(hotc_key_names[i]);
        if (!k || PyTuple_SetItem(h->keys, i, k) != 0) Py_CLEAR(h->keys);
    }
    if (!h->fi || !h->keys) {
        Py_XDECREF(h->keys);
        PyMem_Free(h);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "_hot_client_bind: fi_address is NULL");
        return NULL;
    }
    Py_INCREF(me);
    Py_INCREF(slow);
    Py_INCREF(fi_obj);
    Py_INCREF(layouts);
    Py_INCREF(views);
    Py_INCREF(cur);
    h->me = me;
    h->slow = slow;
    h->fi_obj = fi_obj;
    h->layouts = layouts;
    h->views = views;
    h->cur = cur;
    cap = PyCapsule_New(h, NULL, hotc_free);
    if (!cap) {
        Py_DECREF(me);
        Py_DECREF(slow);
        Py_DECREF(fi_obj);
        Py_DECREF(layouts);
        Py_DECREF(views);
        Py_DECREF(cur);
        Py_DECREF(h->keys);
        PyMem_Free(h);
        return NULL;
    }
    out = PyTuple_New(HOTC_N + 1);
    if (out && PyTuple_SetItem(out, 0, PyLong_FromVoidPtr(h)) != 0) Py_CLEAR(out);
    for (i = 0; out && i < HOTC_N; i++) {
        PyObject *fn = PyCFunction_New(&hotc_defs[i], cap);
        if (!fn || PyTuple_SetItem(out, i + 1, fn) != 0) Py_CLEAR(out);
    }
    Py_DECREF(cap);
    return out;
}

static PyMethodDef hotc_bind_def = {"_hot_client_bind", hotc_bind, METH_VARARGS, NULL};

/* Called once through cffi: puts _hot_client_bind into this extension module. */
static int pyshmx_hot_client_install(void) { return hot_install(&hotc_bind_def); }
