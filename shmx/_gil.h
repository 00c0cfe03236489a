/* Compiled into the cffi extension only (not part of libshmx).
 *
 * cffi releases and re-takes the GIL around every C call.  For shmx's
 * non-blocking calls (latest, begin/append/publish: tens of nanoseconds of
 * C) that round trip costs more than the work, so the extension keeps the
 * GIL for them.  This is not used as a lock: a handle is still used by one
 * thread at a time.  The calls that can block (waits; create/open, which
 * reserve and map memory) go through the pyshmx_* wrappers below, which
 * release the GIL themselves, so other Python threads and asyncio keep
 * running (tests/test_features.py checks that). */
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
