"""The producer side: ``Server``, the documented shmx 1.0.1 API and more.

A Server is made of parts, each in its own module: ``_ServerCore`` (the
handle, errors, info: _server_core.py), ``_HotCalls`` (the hot calls as
builtins: _server_hot.py over bindings/hot.h), ``_Loans`` (zero-copy:
_server_loans.py) and ``_Control`` (control messages, readers, event
loops: _server_control.py); create()'s config is built by
_server_config.py.  This module holds the lifecycle and the publishing
surface.
"""
from __future__ import annotations

import collections.abc as _abc
import warnings
from typing import Any, Iterable, Mapping, Optional

from ._aio import wake_all
from ._common import encode_name
from ._server_config import server_config
from ._server_control import _Control
from ._server_core import _NULL, StreamKey, _from_buffer
from ._server_hot import _HotCalls
from ._server_loans import _Loans
from ._shmx import ffi, lib
from .errors import error_for, status_message

_append = lib.shmx_server_append
_begin = lib.pyshmx_server_begin  # the frame token (> 0) or a status (< 0)
_publish = lib.shmx_server_publish

__all__ = ["Server", "serve", "StreamKey"]


class Server(_Control, _Loans, _HotCalls):
    """Publishes frames into a shared-memory region.

    Calls that return ``bool`` leave the reason of a failure in
    ``last_error``.  A ``Server`` is used by one thread at a time.
    """

    # ------------------------------------------------------------ lifecycle
    def create(self, name: str, slots: int = 3, reader_slots: int = 16,
               static_bytes_cap: int = 4096, frame_bytes_cap: int = 65536,
               control_per_reader: int = 4096,
               streams: Iterable[Mapping[str, Any]] = [],  # noqa: B006 - only read; 1.0.1's default
               *, mode: int = 0o600, checksum: str = "auto",
               shm_dir: Optional[str] = None, static_directory: Any = None) -> bool:
        """Create the region ``name`` and become its producer.

        ``frame_bytes_cap`` is the user data one frame may hold (framing is
        added on top).  ``mode`` is the region's file mode (0600: this user
        only).  ``checksum`` is when the shmx 1.0.1 checksum is written:
        ``"auto"`` (while a legacy reader is attached), ``"always"``,
        ``"never"``.  ``shm_dir`` overrides ``$SHMX_DIR``/``/dev/shm``.
        ``static_directory`` (any buffer, with no ``streams``): the static
        directory's raw bytes to start with, as ``Client.get_static_bytes()``
        returns them, instead of one built from ``streams``; a mirror copies
        its source's schema byte for byte this way.
        Returns False (reason in ``last_error``) when the name is taken by a
        live server, the config is invalid, there is no room, or this Server
        already holds a region (``destroy()`` it first to re-create).
        """
        if self._s is not None:
            self._last_status = lib.SHMX_EINVAL
            self.last_error = (f"create: this Server already holds region '{self._name}'; "
                               "call destroy() first to re-create it")
            return False
        try:
            cfg, keep = server_config(slots, reader_slots, static_bytes_cap, frame_bytes_cap,
                                       control_per_reader, streams, mode, checksum, shm_dir)
            raw_name = encode_name(name)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            self.last_error = f"create: {exc}"
            self._last_status = lib.SHMX_EINVAL
            return False
        out = ffi.new("shmx_server **")
        if static_directory is None:
            st = lib.pyshmx_server_create(raw_name, cfg, out)  # releases the GIL
        else:
            try:
                raw = _from_buffer(static_directory)
            except TypeError as exc:
                self.last_error = f"create: static_directory must be a buffer (bytes...): {exc}"
                self._last_status = lib.SHMX_EINVAL
                return False
            st = lib.pyshmx_server_create_with_static(raw_name, cfg, raw, len(raw), out)
        del keep
        if st != 0:
            msg = status_message(st)
            self.last_error = msg if msg.startswith("create") else f"create: {msg}"
            self._last_status = st
            return False
        s = out[0]
        self._destroyed = False
        self._s = s
        size = lib.shmx_server_size(s)
        # The mapping is freed when the last view into it is gone.
        self._owner = ffi.gc(ffi.cast("char *", lib.shmx_server_base(s)),
                             lambda _p, s=s: lib.shmx_server_free(s))
        self._mv = memoryview(ffi.buffer(self._owner, size))
        self._name = raw_name.decode("utf-8", "replace").lstrip("/")
        self._load_schema()
        self._msgbuf = ffi.new("char[]", max(self.get_header_info()["control_per_reader"], 16))
        self._bind_hot()
        self.last_error = ""
        return True

    def destroy(self, *, unlink: bool = True) -> None:
        """Mark the region closed, remove its name, release it.  Readers keep
        a valid mapping and learn the server is gone.  Safe to call twice.
        With ``unlink=False`` the name stays: listings (``shmx ls``) show the
        region with a dead owner until a new ``create()`` of the name
        reclaims it or ``shmx rm`` removes it (a bridge mirror whose source
        went away)."""
        s = self._s
        if s is None:
            return
        self._revoke_loans()
        wake_all(self._async_waiters)
        if unlink:
            lib.shmx_server_close(s)
        else:
            lib.shmx_server_close_keep_name(s)
        self._unbind_hot()
        self._destroyed = True
        self._s = None
        self._mv = None
        self._owner = None

    close = destroy

    # -------------------------------------------------------------- publish
    def begin_frame(self) -> Optional[int]:
        """Start a frame; returns its handle, or None (``last_error`` says
        why, e.g. every slot is pinned by readers).  An earlier frame that
        was never published is abandoned."""
        if self._loans:
            self._revoke_loans()
        frame = _begin(self._s or _NULL)
        if frame < 0:
            self._set_error(frame, "begin_frame")
            return None
        return frame

    def append_stream(self, frame_handle: Any, stream_id: int, data: Any, elem_count: int) -> bool:
        """Copy ``data`` (bytes, bytearray, memoryview, numpy array: any
        C-contiguous buffer, no intermediate copy) into the frame as stream
        ``stream_id`` with ``elem_count`` elements.  False when the stream id
        is not in the schema, the size is not ``elem_count * bytes_per_elem``,
        the frame would exceed ``frame_bytes_cap``, the stream is already in
        the frame, or the handle is finished or foreign."""
        try:
            if data.__class__ is bytes:  # cffi passes bytes as a pointer, no copy
                st = _append(self._s or _NULL, frame_handle, stream_id, data, len(data), elem_count)
            else:
                buf = _from_buffer(data)
                st = _append(self._s or _NULL, frame_handle, stream_id, buf, len(buf), elem_count)
        except (TypeError, ValueError, OverflowError, BufferError) as exc:
            self.last_error = (f"append_stream: "
                               f"{self._arg_error(exc, frame_handle, data, stream_id=stream_id, elem_count=elem_count)}")
            return False
        if st != 0:
            self._set_error(st, "append_stream")
            self._explain_handle(st, "append_stream", frame_handle)
            return False
        return True

    def publish_frame(self, frame_handle: Any, sim_time: float) -> bool:
        """Make the frame visible to readers and wake waiting ones.  Never
        blocks.  False when the handle is finished or foreign."""
        try:
            st = _publish(self._s or _NULL, frame_handle, sim_time)
        except (TypeError, OverflowError) as exc:
            if isinstance(sim_time, bool) or not isinstance(sim_time, (int, float)):
                self.last_error = f"publish_frame: sim_time must be a number, got {type(sim_time).__name__}"
            else:
                self.last_error = f"publish_frame: {self._arg_error(exc, frame_handle, b'')}"
            return False
        if self._loans:
            self._revoke_loans()
        if st != 0:
            self._set_error(st, "publish_frame")
            self._explain_handle(st, "publish_frame", frame_handle)
            return False
        return True

    def publish_frame_as(self, frame_handle: Any, sim_time: float, frame_id: int) -> bool:
        """``publish_frame()`` with the frame id given instead of the next
        one: a mirror repeats another region's ids, so its readers see the
        same ids and ``read_next()`` reports the same gaps.  False (the
        frame stays open) unless ``frame_id`` is greater than the last
        published id."""
        try:
            st = lib.shmx_server_publish_as(self._s or _NULL, frame_handle, sim_time, frame_id)
        except (TypeError, OverflowError) as exc:
            self.last_error = f"publish_frame_as: {self._arg_error(exc, frame_handle, b'')}"
            return False
        if st != 0:
            self._set_error(st)
            return False
        if self._loans:
            self._revoke_loans()
        return True

    def publish(self, streams: Mapping[StreamKey, Any], sim_time: float = 0.0) -> None:
        """Publish one frame in one call: ``{stream id or name: buffer}``;
        element counts follow from each stream's ``bytes_per_elem``.
        Raises a ``ShmxError`` subclass on any refusal (``ServerGoneError``
        after ``destroy()``)."""
        if self._s is None:
            self._set_error(lib.SHMX_EINVAL, "publish")
            raise error_for(self._last_status, self.last_error)
        if streams.__class__ is not dict and not isinstance(streams, _abc.Mapping):
            raise error_for(lib.SHMX_EINVAL, f"publish: streams must be a dict {{stream id or name: "
                                             f"buffer}}, got {type(streams).__name__}")
        if len(streams) == 1:
            for key, data in streams.items():
                if self._loans:
                    self._revoke_loans()
                self._raise_if(self._publish_stream_any(key, data, sim_time, self._s, "publish"), "publish")
                return
        # One C call checks every stream, then claims a slot and publishes:
        # a refusal never costs a published frame.
        n = len(streams)
        arr = self._stream_data
        if arr is None or len(arr) < n:
            arr = self._stream_data = ffi.new("shmx_stream_data[]", max(n, 4))
        keep = []
        for i, (key, data) in enumerate(streams.items()):
            sid = key if key.__class__ is int else self._stream_id(key, "publish")
            try:  # any buffer, without a copy
                buf = _from_buffer(data)
                d = arr[i]
                d.stream_id = sid
                d.data = buf
                d.bytes = len(buf)
            except (TypeError, ValueError, BufferError, OverflowError) as exc:
                raise error_for(lib.SHMX_EINVAL, f"publish: stream {key!r}: "
                                                 f"{self._arg_error(exc, 0, data)}") from None
            keep.append(buf)
        if self._loans:
            self._revoke_loans()
        st = lib.shmx_server_publish_streams(self._s, arr, n, sim_time)
        del keep
        if st != 0:
            self._set_error(st, "publish")
            raise error_for(self._last_status, self.last_error)

    def publish_stream(self, stream: StreamKey, data: Any, sim_time: float = 0.0) -> None:
        """Publish a frame holding one stream (id or name), in one C call:
        the fastest way to send a camera image or a sensor sample.  ``data``
        is any C-contiguous buffer; its element count follows from the
        stream's ``bytes_per_elem``.  A frame left open by ``begin_frame()``
        is abandoned.  Raises a ``ShmxError`` subclass on any refusal."""
        if self._loans:
            self._revoke_loans()
        self._raise_if(self._publish_stream_any(stream, data, sim_time, self._s), "publish_stream")

    def write_static_append(self, data: Any, size: Optional[int] = None) -> bool:
        """Append raw bytes to the static directory (``refresh_static()``
        on clients re-reads it).  ``size`` defaults to ``len(data)``."""
        try:
            buf = _from_buffer(data)
            n = len(buf) if size is None else size
            if not 0 <= n <= len(buf):
                raise ValueError(f"size {n} is outside the {len(buf)}-byte buffer")
            st = lib.shmx_server_write_static(self._s or _NULL, buf, n)
        except (TypeError, ValueError, OverflowError) as exc:
            self.last_error = f"write_static_append: {exc}"
            return False
        if st != 0:
            self._set_error(st, "write_static_append")
            return False
        self._load_schema()  # streams it described can be published by name now
        return True

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    def __del__(self) -> None:
        if getattr(self, "_s", None) is not None:
            warnings.warn(f"shmx.Server {self._name!r} was not destroyed", ResourceWarning, stacklevel=2)
            self.destroy()

    def __repr__(self) -> str:
        return f"<shmx.Server {self._name!r} {'open' if self._s is not None else 'closed'}>"


Server._hot_surface = Server


def serve(name: str, streams: Iterable[Mapping[str, Any]], **kwargs: Any) -> Server:
    """Create a server or raise (``RegionExistsError``, ``InvalidArgumentError``,
    ...).  Keyword arguments are those of ``Server.create``."""
    server = Server()
    if not server.create(name, streams=streams, **kwargs):
        raise error_for(server._last_status, server.last_error)
    return server
