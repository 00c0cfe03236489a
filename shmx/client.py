"""The consumer side: ``Client``, the documented shmx 1.0.1 API and more.

A Client is made of parts, each in its own module: ``_ClientCore`` (the
handle, errors, info: _client_core.py), ``_Layouts`` (frame dicts, stream
views and arrays over cached layouts: _client_layouts.py) and ``_Waits``
(blocking, in-order and event-loop waits: _client_waits.py) and
``_HotReads`` (read_next and get_latest_frame as builtins: _client_hot.py).
This module holds the lifecycle, the reads and control messages.
"""
from __future__ import annotations

import threading
import time
import warnings
import weakref
from typing import Any, Callable, Optional

from ._aio import check_timeout, wake_all
from ._client_core import _FRAME_INFO, _NULL, Frame
from ._client_hot import _HotReads
from ._client_waits import _Waits
from ._common import open_handle
from ._shmx import ffi, lib
from .errors import error_for

_latest = lib.shmx_client_latest
_latest_layout = lib.pyshmx_client_latest_layout
_next = lib.shmx_client_next

__all__ = ["Client", "connect", "Frame"]


class Client(_Waits, _HotReads):
    """Reads frames from a region.

    The frame returned by ``get_latest_frame()`` (and the other reads) is
    pinned: its memoryviews stay valid and unchanged until this client's
    next read call or ``close()``.  A ``Client`` is used by one thread at a
    time.
    """

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
        self._bind_hot()
        if type(self).get_latest_stream is Client.get_latest_stream:  # not overridden
            self.get_latest_stream = self._bound_get_latest_stream()  # type: ignore[method-assign]

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
            # Then look at _waiting: pairs with _wait_new (_client_waits.py),
            # which enters _waiting and then looks at _closing, and leaves it
            # and then looks at _closing again (notifying us if set).
            self._closing = True
            wake_all(self._async_waiters)
            # Waiters look at _closing at least every _SLICE_S.  A waiter
            # that reconnects (a new server took the name) closes from
            # inside its own wait: do not wait for ourselves.
            me = threading.get_ident()
            self._cv.wait_for(lambda: not (self._waiting - {me}), timeout=5.0)
            if self._c is not c:
                self._closing = False
                return
            # _c first: a waiter arriving now sees None, never c.
            self._c = None
            self._closing = False
            self._unbind_hot()
        lib.shmx_client_detach(c)
        self.__dict__.pop("get_latest_stream", None)
        self._fiq[2] = 0  # frame_id: no frame read
        self._mv = None
        self._owner = None
        self._forget_layouts()

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
        cur = self._cur
        if self._fiq[2] == cur[1]:
            return cur[0]
        frame = cur[0] = self._frame_dict(0)
        cur[1] = self._fiq[2]
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
        return self._frame_dict(_FRAME_INFO(self._fibuf)[6])

    def read_next_stream(self, stream: Any) -> Optional[memoryview]:
        """One stream (id or name) of the next frame in publication order,
        as a read-only memoryview into shared memory: ``read_next()``
        without the dicts, the fastest in-order read.  None when no frame
        came after the last one read (``last_error`` is then left alone),
        or the frame has no such stream (``last_error`` says so).
        ``dropped`` counts the frames lost just before this one;
        ``frame_id`` and ``sim_time`` describe it.  Pinned like
        ``read_next()``."""
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        st = _next(self._c or _NULL, self._fi)
        if st == 0:
            layout = self._fiq[5]
            views = self._views.get(layout)
            view = views.get(stream) if views is not None else None
            return view if view is not None else self._next_stream_view(layout, stream)
        if st != lib.SHMX_EAGAIN:
            self._fail(st)
        return None

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
        2.6 to 2.9 us in an A/B run paced like tools/bench's.  It holds the C handle's
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

    def release(self) -> None:
        """Drop the pin on the last frame early (its views may then change)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        if c is not None:
            lib.shmx_client_release(c)

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


Client._hot_surface = Client  # what the hot builtins stand for (_client_hot.py)

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
