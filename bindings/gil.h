/* Compiled into the cffi extension only (not part of libshmx).
 *
 * cffi releases and re-takes the GIL around every C call.  For shmx's
 * non-blocking calls (latest, begin/append/publish: tens of nanoseconds of
 * C) that round trip costs more than the work, so the extension keeps the
 * GIL for them.  This is not used as a lock: a handle is still used by one
 * thread at a time.  The calls that can block (waits; create/open, which
 * reserve and map memory) go through pyshmx_* wrappers below that release
 * the GIL themselves, so other Python threads and asyncio keep running
 * (tests/test_features.py checks that).  The last two wrappers do not block:
 * they fold a call's results into one return value for Python. */
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }

static shmx_status pyshmx_client_wait(shmx_client *c, int64_t timeout_ns)
{
    PyThreadState *ts = PyEval_SaveThread();
    shmx_status st = shmx_client_wait(c, timeout_ns);
    PyEval_RestoreThread(ts);
    return st;
}

static shmx_status pyshmx_server_wait_control(shmx_server *s, int64_t timeout_ns)
{
    PyThreadState *ts = PyEval_SaveThread();
    shmx_status st = shmx_server_wait_control(s, timeout_ns);
    PyEval_RestoreThread(ts);
    return st;
}

static shmx_status pyshmx_server_create(const char *name, const shmx_server_config *cfg,
                                        shmx_server **out)
{
    PyThreadState *ts = PyEval_SaveThread();
    shmx_status st = shmx_server_create(name, cfg, out);
    PyEval_RestoreThread(ts);
    return st;
}

static shmx_status pyshmx_server_create_with_static(const char *name, const shmx_server_config *cfg,
                                                    const void *static_bytes, uint32_t bytes,
                                                    shmx_server **out)
{
    PyThreadState *ts = PyEval_SaveThread();
    shmx_status st = shmx_server_create_with_static(name, cfg, static_bytes, bytes, out);
    PyEval_RestoreThread(ts);
    return st;
}

static shmx_status pyshmx_client_open(const char *name, const shmx_open_options *opt,
                                      shmx_client **out)
{
    PyThreadState *ts = PyEval_SaveThread();
    shmx_status st = shmx_client_open(name, opt, out);
    PyEval_RestoreThread(ts);
    return st;
}

/* begin_frame in one value, so Python needs no out-parameter: the frame
 * token (> 0: the server uid in its high half is 1..2^31-1) or the failure
 * status (< 0). */
static int64_t pyshmx_server_begin(shmx_server *s)
{
    uint64_t frame = 0;
    shmx_status st = shmx_server_begin_frame(s, &frame);
    return st == SHMX_OK ? (int64_t)frame : (int64_t)st;
}

/* get_latest_stream's C part in one call: the latest frame into *fi, and
 * its layout id (> 0; it names the frame's slot and stream layout, which
 * the binding keys its cached views by), 0 when `new_only` and the frame is
 * the one read last, or the failure status (< 0). */
static int64_t pyshmx_client_latest_layout(shmx_client *c, shmx_frame_info *fi, int new_only)
{
    uint64_t before = fi->frame_id;
    shmx_status st = shmx_client_latest(c, fi);
    if (st != SHMX_OK) return st;
    if (new_only && fi->frame_id == before) return 0;
    return (int64_t)fi->layout_id;
}
