"""The Client's core: the C handle, its errors, and the region's info.

``_ClientCore`` holds the state a Client is made of (the handle and its
mapping, the frame-info struct the reads fill, the caches of views), turns
C statuses into ``last_error`` (copied as bytes when the call fails,
decoded only when read) and answers the header, schema and static
questions.  The parts of ``Client`` (shmx/client.py, _client_*.py) build on
it; none of them computes the region's layout.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from ._common import header_dict, streams_list, struct_unpacker
from ._shmx import ffi, lib
from .errors import status_message

_last_error = lib.shmx_last_error
_detail = ffi.string
# cffi refuses None for a handle argument: before open() or after close()
# pass NULL, so the call returns None/False with last_error set instead of
# raising TypeError.
_NULL = ffi.NULL

Frame = Dict[str, Any]
# shmx_frame_info's fields in order: struct_size, payload_bytes, tlv_count,
# stream_count, frame_id, sim_time, dropped, layout_id.
_FRAME_INFO = struct_unpacker("shmx_frame_info")
_Entry = Tuple[str, memoryview, int, int, int]


class _ClientCore:
    """State, error plumbing and info of a Client (see shmx.client.Client)."""

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
        # [the dict get_latest_frame() returned last, its frame id]: an
        # unchanged frame is returned as that same dict (a polling loop
        # then costs one C call, not a new dict per poll).  One list, changed
        # in place: the hot builtins (_client_hot.py) share it.
        self._cur: List[Any] = [None, 0]
        self._hotc: Any = None  # the hot builtins' state (_client_hot.py)
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
        self._cv = threading.Condition(threading.Lock())  # close() waits on it for the waiters
        self._waiting: Set[int] = set()  # idents of the threads inside a wait
        self._closing = False
        self._async_waiters: Set[Tuple[Any, Any]] = set()

    if TYPE_CHECKING:  # the reads the parts build on (shmx/client.py)
        def get_latest_frame(self) -> Optional[Frame]: ...
        def read_next(self) -> Optional[Frame]: ...
        def reconnect(self) -> bool: ...

    def is_open(self) -> bool:
        """True while attached to a region."""
        return self._c is not None

    @property
    def name(self) -> str:
        """The region name ('' before open)."""
        return self._name

    def _load_schema(self) -> None:
        self._streams = streams_list(lib.shmx_client_stream_count, lib.shmx_client_stream_info, self._c)
        self._names = {s["id"]: s["name"] for s in self._streams}
        self._forget_layouts()

    def _forget_layouts(self) -> None:
        self._layouts.clear()
        self._views.clear()  # in place: _bound_get_latest_stream holds it
        self._cur[0], self._cur[1] = None, 0

    # ----------------------------------------------------------------- info
    @property
    def frame_id(self) -> int:
        """Id of the frame the last successful read returned (0 before any)."""
        return self._fiq[2]

    @property
    def dropped(self) -> int:
        """Frames the ring overwrote before this client could read them,
        just before the frame the last ``read_next()`` or
        ``read_next_stream()`` returned (0 after the other reads)."""
        return self._fiq[4]

    @property
    def dropped_total(self) -> int:
        """The sum of ``dropped`` over every read since ``open()`` (or a
        ``reconnect()`` to a new server): what an in-order reader lost in all."""
        return self._fiq[6]

    @property
    def backlog(self) -> int:
        """Frames published after the one the last read returned, as that
        read saw the producer's count: how far an in-order reader is
        behind (0 when it is up to date, or after a latest read)."""
        published, fid = self._fiq[7], self._fiq[2]
        return published - fid if published > fid else 0

    @property
    def sim_time(self) -> float:
        """``sim_time`` of the frame the last successful read returned."""
        return self._fi.sim_time

    @property
    def session_id(self) -> int:
        """Session id of the connected server (changes when it is replaced)."""
        return self.get_header_info().get("session_id", 0)

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
