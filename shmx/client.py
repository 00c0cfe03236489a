"""The consumer side: ``Client`` (the documented shmx 1.0.1 API and more)."""
from __future__ import annotations

import asyncio
import struct
import time
import warnings
import weakref
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Tuple

from ._common import header_dict, open_handle, streams_list
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
# shmx_frame_info: struct_size, payload_bytes, tlv_count, stream_count,
# frame_id, sim_time, dropped, layout_id (checked against cffi at import).
_FRAME_INFO = struct.Struct("=IIIIQdQQ").unpack_from
assert struct.calcsize("=IIIIQdQQ") == ffi.sizeof("shmx_frame_info")
assert ffi.offsetof("shmx_frame_info", "layout_id") == 40
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
        self._last_status = 0
        self._err: Any = ""  # last_error: str, or the C detail as bytes until read

    # ------------------------------------------------------------ lifecycle
    def open(self, name: str, *, shm_dir: Optional[str] = None) -> bool:
        """Attach to region ``name`` as a reader.  False (reason in
        ``last_error``) when there is no such region, it is not a shmx
        region, permission is denied, or every reader slot is taken."""
        self.close()
        st, handle, region, error = open_handle(lib.pyshmx_client_open, "shmx_client", name, shm_dir)
        if st != 0:
            self.last_error, self._last_status = error, st
            return False
        self._adopt(handle)
        self._name = region
        self._shm_dir = shm_dir
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
        but are no longer protected from being overwritten."""
        c = self._c
        if c is None:
            return
        lib.shmx_client_detach(c)
        self.__dict__.pop("get_latest_stream", None)
        self._c = None
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
        None = forever) or when the server is gone.  Sleeps in the kernel
        (futex), releases the GIL, honours Ctrl-C."""
        if self._wait_new(timeout):
            return self.get_latest_frame()
        return None

    def wait_next(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Like ``read_next()``, but waits up to ``timeout`` for the frame."""
        frame = self.read_next()
        if frame is None and self._last_status == lib.SHMX_EAGAIN and self._wait_new(timeout):
            frame = self.read_next()
        return frame

    def _wait_new(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while self._c is not None:
            left = _SLICE_S if deadline is None else min(_SLICE_S, deadline - time.monotonic())
            st = _wait(self._c, max(int(left * 1e9), 0))
            if st == 0:
                return True
            if st == lib.SHMX_ECLOSED:
                # The server is gone: follow a new server that has taken the
                # name.  If none has, the wait is over, as documented (None
                # "when the server is gone"): waiting on for a successor made
                # wait_frame() and frames() without a timeout hang forever
                # once the producer had exited.
                if self._follow_new_server():
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
                self._fail(st)
                return False
        self._fail(lib.SHMX_EINVAL)
        return False

    def reconnect(self) -> bool:
        """Re-open the region by name, e.g. after its server was replaced:
        the new server's session and schema are picked up.  On failure the
        current connection is kept and False is returned."""
        if not self._name:
            self.last_error = "reconnect: client was never opened"
            return False
        st, handle, _, error = open_handle(lib.pyshmx_client_open, "shmx_client", self._name,
                                           self._shm_dir)
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
        without a new frame, or when the server is gone."""
        while True:
            frame = self.wait_frame(timeout)
            if frame is None:
                return
            yield frame

    async def await_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """``wait_frame`` for asyncio: waits in a worker thread, so the event
        loop keeps running."""
        ok = await asyncio.get_running_loop().run_in_executor(None, self._wait_new, timeout)
        return self.get_latest_frame() if ok else None

    async def aframes(self, timeout: Optional[float] = None) -> AsyncIterator[Frame]:
        """``async for frame in client.aframes():`` the asyncio ``frames()``."""
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
        assert self._mv is not None
        if len(self._layouts) > 256:
            self._layouts.clear()
            self._views.clear()
        sv = ffi.new("shmx_stream_view *")
        entries: List[_Entry] = []
        for i in range(count):
            sv.struct_size = ffi.sizeof("shmx_stream_view")
            if lib.shmx_client_frame_stream(self._c, i, sv) != 0:
                continue
            sid = sv.stream_id
            if sid not in self._names:
                self._load_schema()
            name = self._names.get(sid, f"stream_{sid}")
            off = sv.offset
            entries.append((name, self._mv[off:off + sv.bytes], sv.elem_count, sv.bytes, sid))
        self._layouts[layout_id] = entries
        views: Dict[Any, memoryview] = {}
        for name, view, _, _, sid in entries:
            views[sid] = views[name] = view
        self._views[layout_id] = views
        return entries

    def release(self) -> None:
        """Drop the pin on the last frame early (its views may then change)."""
        if self._c is not None:
            lib.shmx_client_release(self._c)

    # ----------------------------------------------------------- numpy view
    def get_latest_arrays(self) -> Optional[Dict[str, Any]]:
        """The latest frame as read-only numpy arrays over shared memory:
        ``{stream name: ndarray}`` shaped ``(elem_count, components)`` (or
        ``(elem_count,)``), plus ``'__metadata__'``.  Needs numpy."""
        frame = self.get_latest_frame()
        return None if frame is None else self.as_arrays(frame)

    def as_arrays(self, frame: Frame) -> Dict[str, Any]:
        """Turn a frame dict into typed numpy arrays (zero copy)."""
        from ._numpy import stream_array
        specs = {s["name"]: s for s in self._streams}
        out: Dict[str, Any] = {"__metadata__": frame["__metadata__"]}
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
            buf = ffi.from_buffer(data)
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
        st = lib.shmx_client_refresh_static(self._c or _NULL)
        if st != 0:
            self._fail(st)
            return False
        self._load_schema()
        return True

    def get_header_info(self) -> Dict[str, Any]:
        """Region header: the shmx 1.0.1 keys plus ours ({} when not open)."""
        if self._c is None:
            return {}
        info = ffi.new("shmx_header_info *")
        info.struct_size = ffi.sizeof("shmx_header_info")
        if lib.shmx_client_header_info(self._c, info) != 0:
            return {}
        return header_dict(info, self._name)

    def server_alive(self) -> Optional[bool]:
        """True/False from the server's liveness lock; None for a shmx 1.0.1
        server (it holds no lock) or when not open."""
        if self._c is None:
            return None
        v = lib.shmx_client_server_alive(self._c)
        return {lib.SHMX_ALIVE: True, lib.SHMX_DEAD: False}.get(v)

    @property
    def reader_id(self) -> int:
        """This client's reader id (as the server sees it in control messages)."""
        return int(lib.shmx_client_reader_id(self._c)) if self._c is not None else 0

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
            poll: float = 0.01) -> Client:
    """Open a client, waiting up to ``timeout`` seconds (None: forever) for
    the server to create the region.  Raises ``RegionNotFoundError``,
    ``ShmxPermissionError``, ``CorruptRegionError``, ``BusyError``..."""
    deadline = None if timeout is None else time.monotonic() + timeout
    client = Client()
    while True:
        if client.open(name, shm_dir=shm_dir):
            return client
        retry = client._last_status in (lib.SHMX_ENOENT, lib.SHMX_ECORRUPT)
        if not retry or (deadline is not None and time.monotonic() >= deadline):
            raise error_for(client._last_status, client.last_error)
        time.sleep(poll)
