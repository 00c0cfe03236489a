"""The consumer side: ``Client`` (the documented shmx 1.0.1 API and more)."""
from __future__ import annotations

import asyncio
import struct
import threading
import time
import warnings
import weakref
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ._aio import check_timeout, wait_readable, wake_all
from ._common import header_dict, open_handle, streams_list, struct_unpacker
from ._shmx import ffi, lib
from .errors import error_for, status_message
from .inspector import Inspector

_latest = lib.shmx_client_latest
_latest_layout = lib.pyshmx_client_latest_layout
_next = lib.shmx_client_next
_wait = lib.pyshmx_client_wait  # releases the GIL (shmx/_gil.h)
_last_error = lib.shmx_last_error
_detail = ffi.string
# cffi refuses None for a handle argument: before open() or after close()
# pass NULL, so the call returns None/False with last_error set instead of
# raising TypeError.
_NULL = ffi.NULL

Frame = Dict[str, Any]
# How often an asyncio wait looks where there is no wake channel (Windows).
_POLL_S = 0.002
# shmx_frame_info's fields in order: struct_size, payload_bytes, tlv_count,
# stream_count, frame_id, sim_time, dropped, layout_id.
_FRAME_INFO = struct_unpacker("shmx_frame_info")
_Entry = Tuple[str, memoryview, int, int, int]

_SLICE_S = 0.05  # waits return to Python this often, so Ctrl-C is honoured


class Client:
    """Reads frames from a region.

    The frame returned by ``get_latest_frame()`` (and the other reads) is
    pinned: its memoryviews stay valid and unchanged until this client's
    next read call or ``close()``.  A ``Client`` is used by one thread at a
    time.
    """

    def __init__(self) -> None:
        self._c: Any = None
        self._owner: Any = None
        self._mv: Optional[memoryview] = None
        self._fi = ffi.new("shmx_frame_info *")
        self._fi.struct_size = ffi.sizeof("shmx_frame_info")
        # One struct.unpack_from reads every field: far cheaper than cdata
        # attribute reads on the hot path.
        self._fibuf = ffi.buffer(self._fi)
        self._fiq = memoryview(self._fibuf).cast("Q")  # [2] is frame_id
        self._fiq[2] = 0
        # The dict get_latest_frame() returned last, and its frame id: an
        # unchanged frame is returned as that same dict (a polling loop
        # then costs one C call, not a new dict per poll).
        self._cur: Optional[Frame] = None
        self._cur_id = 0
        self._layouts: Dict[int, List[_Entry]] = {}
        self._views: Dict[int, Dict[Any, memoryview]] = {}  # per layout: id and name -> view
        self._names: Dict[int, str] = {}
        self._streams: List[Dict[str, Any]] = []
        self._name = ""
        self._shm_dir: Optional[str] = None
        self._history = False
        self._last_status = 0
        self._err: Any = ""  # last_error: str, or the C detail as bytes until read
        # Waits in flight (threads inside the C wait): close() lets them
        # leave before the handle can go.  Async waiters: woken by close().
        self._cv = threading.Condition(threading.Lock())
        self._waiting: Set[int] = set()  # idents of the threads inside a wait
        self._closing = False
        self._async_waiters: Set[Tuple[Any, Any]] = set()

    # ------------------------------------------------------------ lifecycle
    def open(self, name: str, *, shm_dir: Optional[str] = None, history: bool = False) -> bool:
        """Attach to region ``name`` as a reader.  False (reason in
        ``last_error``) when there is no such region, it is not a shmx
        region, permission is denied, or every reader slot is taken.

        ``history=True`` is for late joiners: the first ``read_next()``
        returns the oldest frame still in the ring (not the newest), so
        the client gets every retained frame in order."""
        self.close()
        st, handle, region, error = open_handle(lib.pyshmx_client_open, "shmx_client", name, shm_dir,
                                                bool(history))
        if st != 0:
            self.last_error, self._last_status = error, st
            return False
        self._adopt(handle)
        self._name = region
        self._shm_dir = shm_dir
        self._history = bool(history)
        self.last_error = ""
        return True

    def _adopt(self, c: Any) -> None:
        self._c = c
        self._fiq[2] = 0  # frame ids restart with a new server's session
        size = lib.shmx_client_size(c)
        # Views into the mapping keep it alive; it is unmapped (and the C
        # handle freed) when the last of them is gone.
        self._owner = ffi.gc(ffi.cast("char *", lib.shmx_client_base(c)),
                             lambda _p, c=c: lib.shmx_client_free(c))
        self._mv = memoryview(ffi.buffer(self._owner, size)).toreadonly()
        self._load_schema()
        if type(self).get_latest_stream is Client.get_latest_stream:  # not overridden
            self.get_latest_stream = self._bound_get_latest_stream()  # type: ignore[method-assign]

    def _load_schema(self) -> None:
        self._streams = streams_list(lib.shmx_client_stream_count, lib.shmx_client_stream_info, self._c)
        self._names = {s["id"]: s["name"] for s in self._streams}
        self._forget_layouts()

    def _forget_layouts(self) -> None:
        self._layouts.clear()
        self._views.clear()  # in place: _bound_get_latest_stream holds it
        self._cur, self._cur_id = None, 0

    def close(self) -> None:
        """Leave the region: free the reader slot and the pinned frame.
        Memoryviews already returned stay readable (they keep the mapping)
        but are no longer protected from being overwritten.  Safe from any
        thread: a ``wait_frame``/``wait_next``/``frames`` blocked in another
        thread returns None (close waits for it to leave the C call), an
        ``await_frame``/``aframes`` returns None / ends."""
        c = self._c
        if c is None:
            return
        with self._cv:
            if self._c is not c:
                return  # another thread closed it meanwhile
            self._closing = True
            wake_all(self._async_waiters)
            # Waiters look at _closing at least every _SLICE_S.  A waiter
            # that reconnects (a new server took the name) closes from
            # inside its own wait: do not wait for ourselves.
            me = threading.get_ident()
            self._cv.wait_for(lambda: not (self._waiting - {me}), timeout=5.0)
            self._closing = False
            if self._c is not c:
                return
            self._c = None
        lib.shmx_client_detach(c)
        self.__dict__.pop("get_latest_stream", None)
        self._fiq[2] = 0  # frame_id: no frame read
        self._mv = None
        self._owner = None
        self._forget_layouts()

    def is_open(self) -> bool:
        """True while attached to a region."""
        return self._c is not None

    @property
    def name(self) -> str:
        """The region name ('' before open)."""
        return self._name

    # ---------------------------------------------------------------- reads
    def get_latest_frame(self) -> Optional[Frame]:
        """The newest complete frame, or None (``last_error`` says why: no
        frame yet, not open).  A dict: ``'__metadata__'`` ->
        ``{frame_id, sim_time, payload_bytes, tlv_count}``, and per stream
        name ``{'data': memoryview, 'elem_count': int, 'bytes': int}``.  The
        views point into shared memory (zero copy, read-only) and stay valid
        until this client's next read or ``close()``.  Never torn; never
        older than a frame this client returned before.  While the latest
        frame is unchanged, the same dict is returned again: treat frames
        as read-only."""
        # close() may run in another thread between our steps (the quick C
        # calls keep the GIL, so not during one).  The owner first: held,
        # it keeps the C handle allocated to the end of this method (close
        # clears _c before it drops _owner), and each method reads _c once.
        owner = self._owner  # noqa: F841
        st = _latest(self._c or _NULL, self._fi)
        if st != 0:
            self._fail(st)
            return None
        if self._fiq[2] == self._cur_id:
            return self._cur
        frame = self._cur = self._frame_dict(0)
        self._cur_id = self._fiq[2]
        return frame

    def read_next(self) -> Optional[Frame]:
        """The next frame in publication order after the last one read, or
        None when there is none yet.  ``frame['__metadata__']['dropped']``
        counts frames the ring overwrote before this client could read them
        (0 when none was lost).  The first call returns the latest frame."""
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        st = _next(self._c or _NULL, self._fi)
        if st != 0:
            self._fail(st)
            return None
        self._cur_id = 0  # this dict carries `dropped`: not one to return again
        return self._frame_dict(_FRAME_INFO(self._fibuf)[6])

    def get_latest_stream(self, stream: Any, new_only: bool = False) -> Optional[memoryview]:
        """One stream (id or name) of the newest complete frame, as a
        read-only memoryview into shared memory: the cheapest read (no
        dicts).  None when no frame is there yet, the frame has no such
        stream (``last_error`` says so), or, with ``new_only``, the newest
        frame is the one this client read last (``last_error`` is then
        left alone).  Pinned like
        ``get_latest_frame()``; ``frame_id`` and ``sim_time`` describe it."""
        # While open, the instance's own get_latest_stream (built by
        # _bound_get_latest_stream) shadows this method, unless a subclass
        # overrides it.
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        layout = _latest_layout(self._c or _NULL, self._fi, 1 if new_only else 0)
        if layout > 0:
            return self._stream_view(layout, stream)
        if layout < 0:
            self._fail(layout)
        return None

    def _bound_get_latest_stream(self) -> Callable[..., Optional[memoryview]]:
        """get_latest_stream for this connection, as a closure over what it
        touches (one C call, two dict lookups): the busy-polling read, where
        a method's attribute lookups on ``self`` were most of the cost.
        Checking the header's frame_seq from Python first made an idle poll
        cheaper but a new frame's read slower: one-way latency went from
        2.6 to 2.9 us in an A/B run paced like tools/bench.py's.  It holds the C handle's
        owner, so one kept after close() returns None and never touches
        freed memory, and one kept across a reconnect reads the new
        connection; ``self`` only weakly."""
        c_latest, handle, fi, views, me = _latest_layout, self._c, self._fi, self._views, weakref.ref(self)

        def get_latest_stream(stream: Any, new_only: bool = False) -> Optional[memoryview]:
            layout = c_latest(handle, fi, 1 if new_only else 0)
            if layout > 0:
                streams = views.get(layout)
                if streams is not None:
                    view = streams.get(stream)
                    if view is not None:
                        return view
            client = me()
            if client is None or layout == 0:
                return None
            if layout > 0:
                return client._stream_view(layout, stream)
            if client._c is not handle and client._c is not None:
                return client.get_latest_stream(stream, new_only)  # reconnected since
            client._fail(layout)
            return None
        get_latest_stream.__doc__ = Client.get_latest_stream.__doc__
        get_latest_stream.__qualname__ = "Client.get_latest_stream"
        get_latest_stream._owner = self._owner  # type: ignore[attr-defined]  # keeps `handle` allocated
        return get_latest_stream

    def _stream_view(self, layout: int, stream: Any) -> Optional[memoryview]:
        """get_latest_stream for a layout seen the first time, or a stream
        the frame does not have."""
        views = self._views.get(layout)
        if views is None:
            self._build_layout(layout, self._fiq[1] >> 32)  # [1] high half: stream_count
            views = self._views[layout]
        view = views.get(stream)
        if view is None:
            self._last_status = lib.SHMX_ESTREAM
            self._err = f"get_latest_stream: frame {self._fiq[2]} has no stream {stream!r}"
        return view

    @property
    def frame_id(self) -> int:
        """Id of the frame the last successful read returned (0 before any)."""
        return self._fiq[2]

    @property
    def sim_time(self) -> float:
        """``sim_time`` of the frame the last successful read returned."""
        return self._fi.sim_time

    def wait_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Block until a frame newer than the last one this client saw is
        published, and return the newest; None at the timeout (seconds,
        None = forever), when the server is gone or when ``close()`` is
        called from another thread.  Sleeps in the kernel (futex), releases
        the GIL, honours Ctrl-C.  A NaN or negative timeout raises
        ``InvalidArgumentError``."""
        if self._wait_new(check_timeout("wait_frame", timeout)):
            return self.get_latest_frame()
        return None

    def wait_next(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Like ``read_next()``, but waits up to ``timeout`` for the frame."""
        timeout = check_timeout("wait_next", timeout)
        frame = self.read_next()
        if frame is None and self._last_status == lib.SHMX_EAGAIN and self._wait_new(timeout):
            frame = self.read_next()
        return frame

    def _wait_new(self, timeout: Optional[float]) -> bool:
        with self._cv:
            c = self._c
            if c is None or self._closing:
                self._fail(lib.SHMX_EINVAL)
                return False
            me = threading.get_ident()
            self._waiting.add(me)
            # Keeps the mapping and the C handle allocated while this thread
            # is inside the C wait, whatever close() does meanwhile.
            owner = self._owner  # noqa: F841
        try:
            return self._wait_in(c, timeout)
        finally:
            with self._cv:
                self._waiting.discard(me)
                self._cv.notify_all()

    def _wait_in(self, c: Any, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._c is c and not self._closing:
            left = _SLICE_S if deadline is None else min(_SLICE_S, deadline - time.monotonic())
            st = _wait(c, max(int(left * 1e9), 0))
            if st == 0:
                return True
            if st == lib.SHMX_ECLOSED:
                # The server is gone: follow a new server that has taken the
                # name.  If none has, the wait is over, as documented (None
                # "when the server is gone"): waiting on for a successor made
                # wait_frame() and frames() without a timeout hang forever
                # once the producer had exited.
                if self._follow_new_server():
                    c = self._c
                    continue
                self._fail(st)
                # Say what happened, not why the look for a new server failed.
                self.last_error = (f"the server of '{self._name}' is gone (destroyed, or its "
                                   "process died) and no new server has taken the name")
                return False
            if st != lib.SHMX_ETIMEDOUT:
                self._fail(st)
                return False
            if deadline is not None and time.monotonic() >= deadline:
                # Our own words: the thread's C detail may be another
                # object's old error (a timed-out wait records none).
                self._last_status = st
                self._err = f"wait: no new frame in '{self._name}' within {timeout} s"
                return False
        self._last_status = lib.SHMX_ECLOSED
        self._err = "wait: the client was closed while waiting"
        return False

    def reconnect(self) -> bool:
        """Re-open the region by name, e.g. after its server was replaced:
        the new server's session and schema are picked up.  On failure the
        current connection is kept and False is returned."""
        if not self._name:
            self.last_error = "reconnect: client was never opened"
            return False
        st, handle, _, error = open_handle(lib.pyshmx_client_open, "shmx_client", self._name,
                                           self._shm_dir, self._history)
        if st != 0:
            self.last_error, self._last_status = error, st
            return False
        self.close()
        self._adopt(handle)
        return True

    def _follow_new_server(self) -> bool:
        """Reconnect when a live server with another session holds our name."""
        insp = Inspector()
        try:
            if not insp.open(self._name, shm_dir=self._shm_dir):
                return False
            h = insp.get_header_info()
        finally:
            insp.close()
        if h.get("session_id") == self.session_id or h.get("owner_alive") is False:
            return False
        return self.reconnect()

    @property
    def session_id(self) -> int:
        """Session id of the connected server (changes when it is replaced)."""
        return self.get_header_info().get("session_id", 0)

    def frames(self, timeout: Optional[float] = None) -> Iterator[Frame]:
        """Iterate over new frames as they are published (each once; a slow
        consumer skips to the newest).  Stops after ``timeout`` seconds
        without a new frame, when the server is gone or the client closed."""
        check_timeout("frames", timeout)
        while True:
            frame = self.wait_frame(timeout)
            if frame is None:
                return
            yield frame

    # ------------------------------------------------------- event loops
    def fileno(self) -> int:
        """A file descriptor for any event loop (selectors, asyncio's
        ``add_reader``, trio's ``wait_readable``): it becomes readable, once
        armed, when a frame newer than this client's last read is published,
        and when the server goes away.  ``fileno()`` arms it; after each
        wake call ``arm()`` (it drains the fd): True means read now, False
        means wait for the fd again.  Owned by the client: do not close it;
        unregister it before ``close()``; it changes after a reconnect.
        Raises ``ServerGoneError`` when the server is gone, ``ShmxError``
        where there is no wake channel (not Linux, another network
        namespace)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        fd = ffi.new("int *")
        st = lib.shmx_client_wait_fd(c or _NULL, fd)
        if st != 0:
            self._fail(st)
            raise error_for(st, f"fileno: {self.last_error}")
        lib.shmx_client_arm_fd(c)
        return int(fd[0])

    def arm(self) -> bool:
        """Drain and arm the ``fileno()`` fd.  True: a frame newer than the
        last one read is there (or the server is gone, or the client is
        closed): read now, do not wait.  False: armed; the fd becomes
        readable at the next publish."""
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        st = lib.shmx_client_arm_fd(self._c or _NULL)
        if st == lib.SHMX_EAGAIN:
            return False
        if st != 0:
            self._fail(st)
        return True

    async def await_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """``wait_frame`` for asyncio, on the ``fileno()`` fd with
        ``loop.add_reader``: no thread.  Cancelling it (or
        ``asyncio.wait_for``) ends the wait at once; ``close()`` makes it
        return None."""
        timeout = check_timeout("await_frame", timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            c = self._c
            if c is None or self._closing:
                self._last_status = lib.SHMX_ECLOSED
                self._err = "await_frame: the client is not open or was closed"
                return None
            st = lib.shmx_client_arm_fd(c)
            if st == 0:
                frame = self.get_latest_frame()
                if frame is not None:
                    return frame
                continue
            if st == lib.SHMX_ECLOSED:
                if self._follow_new_server():
                    continue
                self._fail(st)
                self.last_error = (f"the server of '{self._name}' is gone (destroyed, or its "
                                   "process died) and no new server has taken the name")
                return None
            fd = ffi.new("int *")
            no_channel = st == lib.SHMX_ESYS or (st == lib.SHMX_EAGAIN and lib.shmx_client_wait_fd(c, fd) != 0)
            if st not in (lib.SHMX_EAGAIN, lib.SHMX_ESYS):
                self._fail(st)
                return None
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self._last_status = lib.SHMX_ETIMEDOUT
                self._err = f"await_frame: no new frame in '{self._name}' within {timeout} s"
                return None
            if no_channel:
                # No wake channel here (Windows, or another network
                # namespace than the server's): look again soon, still
                # without a thread.
                if lib.shmx_client_wait(c, 0) == 0:
                    frame = self.get_latest_frame()
                    if frame is not None:
                        return frame
                await asyncio.sleep(_POLL_S if left is None else min(_POLL_S, left))
                continue
            await wait_readable(int(fd[0]), left, self._async_waiters)

    async def aframes(self, timeout: Optional[float] = None) -> AsyncIterator[Frame]:
        """``async for frame in client.aframes():`` the asyncio ``frames()``
        (no thread; Ctrl-C and cancellation end it at once)."""
        check_timeout("aframes", timeout)
        while True:
            frame = await self.await_frame(timeout)
            if frame is None:
                return
            yield frame

    def _frame_dict(self, dropped: int) -> Frame:
        _, payload, tlvs, count, fid, sim_time, _, layout_id = _FRAME_INFO(self._fibuf)
        entries = self._layouts.get(layout_id)
        if entries is None:
            entries = self._build_layout(layout_id, count)
        frame: Frame = {"__metadata__": {"frame_id": fid, "sim_time": sim_time,
                                         "payload_bytes": payload, "tlv_count": tlvs,
                                         "dropped": dropped}}
        for name, view, elem_count, nbytes, _sid in entries:
            frame[name] = {"data": view, "elem_count": elem_count, "bytes": nbytes}
        return frame

    def _build_layout(self, layout_id: int, count: int) -> List[_Entry]:
        c, mv = self._c, self._mv
        if c is None or mv is None:
            return []  # closed (from another thread) since the read
        if len(self._layouts) > 256:
            self._layouts.clear()
            self._views.clear()
        sv = ffi.new("shmx_stream_view *")
        entries: List[_Entry] = []
        for i in range(count):
            sv.struct_size = ffi.sizeof("shmx_stream_view")
            if lib.shmx_client_frame_stream(c, i, sv) != 0:
                continue
            sid = sv.stream_id
            if sid not in self._names:
                self._load_schema()
            name = self._names.get(sid, f"stream_{sid}")
            off = sv.offset
            entries.append((name, mv[off:off + sv.bytes], sv.elem_count, sv.bytes, sid))
        self._layouts[layout_id] = entries
        views: Dict[Any, memoryview] = {}
        for name, view, _, _, sid in entries:
            views[sid] = views[name] = view
        self._views[layout_id] = views
        return entries

    def release(self) -> None:
        """Drop the pin on the last frame early (its views may then change)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        if c is not None:
            lib.shmx_client_release(c)

    # ----------------------------------------------------------- numpy view
    def get_latest_arrays(self) -> Optional[Dict[str, Any]]:
        """The latest frame as read-only numpy arrays over shared memory:
        ``{stream name: ndarray}`` (arrays only, as ``as_arrays``); the
        frame's metadata is in ``frame_id``/``sim_time`` after the call.
        Needs numpy."""
        frame = self.get_latest_frame()
        return None if frame is None else self.as_arrays(frame)

    def as_arrays(self, frame: Frame) -> Dict[str, Any]:
        """A frame dict as ``{stream name: ndarray}``: arrays only (the
        metadata stays in ``frame['__metadata__']``), zero copy, read-only,
        typed by the schema and shaped by its ``shape`` when the frame's
        count fits it, else ``(elem_count, components)`` /
        ``(elem_count,)``.  Needs numpy."""
        from ._numpy import stream_array
        specs = {s["name"]: s for s in self._streams}
        out: Dict[str, Any] = {}
        for key, entry in frame.items():
            if key != "__metadata__":
                out[key] = stream_array(entry["data"], entry["elem_count"], specs.get(key))
        return out

    # -------------------------------------------------------------- control
    def send_control(self, type: int, data: Any) -> bool:
        """Send a control message (``type`` != 0, ``data`` any buffer) to the
        server.  False when the ring is full, the message is larger than
        the ring, or the client is not open."""
        try:
            if isinstance(type, bool) or not hasattr(type, "__index__"):
                raise TypeError(f"type must be an int, got {type.__class__.__name__} {type!r}")
            if isinstance(data, str):
                raise TypeError(f"data must be a bytes-like buffer, got str {data[:40]!r} "
                                "(encode text first: data.encode())")
            buf = ffi.from_buffer(data)
            owner = self._owner  # noqa: F841  (see get_latest_frame)
            st = lib.shmx_client_send_control(self._c or _NULL, type, buf, len(buf))
        except (TypeError, ValueError, OverflowError) as exc:
            self.last_error = f"send_control: {exc}"
            self._last_status = lib.SHMX_EINVAL
            return False
        if st != 0:
            self._fail(st)
            return False
        return True

    def send_control_empty(self, type: int) -> bool:
        """Send a control message with no payload."""
        return self.send_control(type, b"")

    # ----------------------------------------------------------------- info
    def get_streams_info(self) -> List[Dict[str, Any]]:
        """The schema: dicts with ``id``, ``name``, ``dtype``, ``dtype_code``,
        ``components``, ``layout``, ``bytes_per_elem`` and ``extra`` when set."""
        return [dict(s) for s in self._streams]

    def get_static_bytes(self) -> Optional[bytes]:
        """The static directory's raw bytes as they are now (the schema's
        TLVs and whatever ``write_static_append`` added), never mixed with
        an append in progress; None when not open (``last_error``)."""
        n = ffi.new("uint32_t *")
        st = lib.shmx_client_copy_static(self._c or _NULL, ffi.NULL, 0, n)
        while st == lib.SHMX_ETOOBIG:
            buf = ffi.new("char[]", max(n[0], 1))
            st = lib.shmx_client_copy_static(self._c, buf, len(buf), n)
            if st == 0:
                return ffi.buffer(buf, n[0])[:]
        if st != 0:
            self._fail(st)
            return None
        return b""

    def refresh_static(self) -> bool:
        """Re-read the static directory (after the server appended to it)."""
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        st = lib.shmx_client_refresh_static(self._c or _NULL)
        if st != 0:
            self._fail(st)
            return False
        self._load_schema()
        return True

    def get_header_info(self) -> Dict[str, Any]:
        """Region header: the shmx 1.0.1 keys plus ours ({} when not open)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        if c is None:
            return {}
        info = ffi.new("shmx_header_info *")
        info.struct_size = ffi.sizeof("shmx_header_info")
        if lib.shmx_client_header_info(c, info) != 0:
            return {}
        return header_dict(info, self._name)

    def server_alive(self) -> Optional[bool]:
        """True/False from the server's liveness lock; None for a shmx 1.0.1
        server (it holds no lock) or when not open."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        if c is None:
            return None
        v = lib.shmx_client_server_alive(c)
        return {lib.SHMX_ALIVE: True, lib.SHMX_DEAD: False}.get(v)

    @property
    def reader_id(self) -> int:
        """This client's reader id (as the server sees it in control messages)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        return int(lib.shmx_client_reader_id(c)) if c is not None else 0

    # -------------------------------------------------------------- helpers
    @property
    def last_error(self) -> str:
        """Why the last call that failed failed ('' after a successful open)."""
        err = self._err
        if err.__class__ is bytes:
            err = self._err = err.decode("utf-8", "replace") or status_message(self._last_status)
        return err

    @last_error.setter
    def last_error(self, text: str) -> None:
        self._err = text

    def _fail(self, st: int) -> None:
        self._last_status = st
        if self._c is None:
            self._err = "client is not open (call open() first) or was closed"
        else:
            # Copied now (the next failing call on this thread overwrites
            # it), decoded only if someone reads it: a poll that finds
            # nothing new stays cheap.
            self._err = _detail(_last_error())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_c", None) is not None:
            warnings.warn(f"shmx.Client {self._name!r} was not closed", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        return f"<shmx.Client {self._name!r} {'open' if self._c is not None else 'closed'}>"


def connect(name: str, timeout: Optional[float] = 0.0, *, shm_dir: Optional[str] = None,
            poll: float = 0.01, history: bool = False) -> Client:
    """Open a client, waiting up to ``timeout`` seconds (None: forever) for
    the server to create the region.  ``history``: as in ``Client.open``.
    Raises ``RegionNotFoundError``, ``ShmxPermissionError``,
    ``CorruptRegionError``, ``BusyError``, ``InvalidArgumentError`` (a NaN
    or negative timeout)..."""
    timeout = check_timeout("connect", timeout)
    check_timeout("connect", poll, "poll")
    deadline = None if timeout is None else time.monotonic() + timeout
    client = Client()
    while True:
        if client.open(name, shm_dir=shm_dir, history=history):
            return client
        retry = client._last_status in (lib.SHMX_ENOENT, lib.SHMX_ECORRUPT)
        if not retry or (deadline is not None and time.monotonic() >= deadline):
            raise error_for(client._last_status, client.last_error)
        time.sleep(poll)
