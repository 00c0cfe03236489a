"""The Server's core: the C handle, its errors, and what every part uses.

``_ServerCore`` holds the state a Server is made of, turns the C
library's statuses into ``last_error`` text or exceptions (naming the
call the user made and the argument at fault), and answers the header and
schema questions.  The parts of ``Server`` (shmx/server.py, _server_*.py)
build on it; none of them computes the region's layout.
"""
from __future__ import annotations

import operator
from typing import Any, Dict, List, Optional, Union

from ._common import header_dict, streams_list
from ._shmx import ffi, lib
from .errors import error_for, status_message

_publish_stream = lib.shmx_server_publish_stream
_from_buffer = ffi.from_buffer
# cffi refuses None for a handle argument: calls made before create() or
# after destroy() pass NULL instead, so the C library reports the refusal
# (False/None plus last_error) rather than Python raising TypeError.
_NULL = ffi.NULL

StreamKey = Union[int, str]


class _ServerCore:
    """State, error plumbing and info of a Server (see shmx.server.Server)."""

    def __init__(self) -> None:
        self._s: Any = None
        self._owner: Any = None
        self._mv: Optional[memoryview] = None
        self._msg = ffi.new("shmx_control_msg *")
        self._msgbuf: Any = None
        self._ids: Dict[str, int] = {}
        self._bpe: Dict[int, int] = {}
        self._loans: List[memoryview] = []
        self._loaned_arrays: List[Any] = []
        self._stream_data: Any = None  # publish()'s shmx_stream_data array, reused
        self._name = ""
        self.last_error: str = ""
        self._async_waiters: set = set()

    def is_open(self) -> bool:
        """True between a successful ``create()`` and ``destroy()``."""
        return self._s is not None

    @property
    def name(self) -> str:
        """The region name ('' before create)."""
        return self._name

    def get_header_info(self) -> Dict[str, Any]:
        """Region header: the shmx 1.0.1 keys plus ours.  ``{}`` before
        ``create()`` and after ``destroy()``, as in shmx 1.0.1 (``last_error``
        then says which; ``is_open()`` is the direct question)."""
        if self._s is None:
            self._set_error(lib.SHMX_EINVAL, "get_header_info")
            return {}
        info = ffi.new("shmx_header_info *")
        info.struct_size = ffi.sizeof("shmx_header_info")
        if lib.shmx_server_header_info(self._s, info) != 0:
            return {}
        return header_dict(info, self._name)

    def get_streams_info(self) -> List[Dict[str, Any]]:
        """The schema, as ``Client.get_streams_info()`` shows it (``[]``
        before ``create()`` and after ``destroy()``)."""
        if self._s is None:
            self._set_error(lib.SHMX_EINVAL, "get_streams_info")
            return []
        return streams_list(lib.shmx_server_stream_count, lib.shmx_server_stream_info, self._s)

    def _load_schema(self) -> None:
        # In place: the hot builtins look names up in this very dict.
        streams = self.get_streams_info()
        self._ids.clear()
        self._ids.update({spec["name"]: spec["id"] for spec in streams})
        self._bpe = {spec["id"]: spec["bytes_per_elem"] for spec in streams}

    # ------------------------------------------------------------- helpers
    _last_status: int = 0
    _destroyed = False
    _hot: Any = None  # the hot builtins' state (pyshmx_hot *), from the first create()

    def _set_error(self, st: int, call: Optional[str] = None) -> None:
        detail = status_message(st)
        # The C detail starts with the C call's name ("publish_stream: ..."):
        # say the call the user made instead.
        head, sep, rest = detail.partition(": ")
        if call is None:
            call = head if sep and head.replace("_", "").isalpha() else "server"
        elif sep and head.replace("_", "").isalpha() and head != call:
            detail = rest
        self._last_status = st
        if self._s is None and self._destroyed:
            self._last_status = lib.SHMX_ECLOSED
            self.last_error = (f"{call}: the server of '{self._name}' was destroyed "
                               "(create() makes a new region)")
        elif self._s is None:
            self.last_error = f"{call}: server is not created (call create() first)"
        else:
            self.last_error = detail if detail.startswith(call + ":") else f"{call}: {detail}"

    def _arg_error(self, exc: Exception, frame_handle: Any, data: Any, **ints: Any) -> str:
        self._last_status = lib.SHMX_EINVAL
        if not isinstance(frame_handle, int):
            return f"frame handle must come from begin_frame(), got {type(frame_handle).__name__}"
        for arg, v in ints.items():
            if isinstance(v, bool) or not hasattr(v, "__index__"):
                return f"{arg} must be an int, got {type(v).__name__} {v!r}"
        if isinstance(exc, (TypeError, BufferError)) and not isinstance(data, (bytes, bytearray, memoryview)):
            return f"data must be a C-contiguous buffer (bytes, bytearray, memoryview, numpy array): {exc}"
        return str(exc)

    def _raise_if(self, st: int, call: str) -> None:
        if st != 0:
            self._set_error(st, call)
            raise error_for(self._last_status, self.last_error)

    def _explain_handle(self, st: int, call: str, frame_handle: Any) -> None:
        if st == lib.SHMX_EHANDLE:
            self.last_error = (f"{call}: {frame_handle!r} is not an open frame of this server (use the "
                               f"handle begin_frame() returned; it ends at publish_frame or the next "
                               f"begin_frame) [{self.last_error}]")

    def _stream_id(self, key: Any, what: str) -> int:
        if isinstance(key, str):
            sid = self._ids.get(key)
            if sid is None:
                raise error_for(lib.SHMX_ESTREAM, f"{what}: no stream named {key!r}")
            return sid
        if hasattr(key, "__index__") and not isinstance(key, bool):
            return operator.index(key)  # int, numpy integers
        raise error_for(lib.SHMX_EINVAL, f"{what}: a stream is named by its id (int) or name (str), "
                                         f"not {type(key).__name__}")

    def _publish_stream_any(self, stream: StreamKey, data: Any, sim_time: float, handle: Any,
                            call: str = "publish_stream") -> int:
        sid = self._stream_id(stream, call)
        try:
            buf = data if data.__class__ is bytes else _from_buffer(data)
            return _publish_stream(handle or _NULL, sid, buf, len(buf), sim_time)
        except (TypeError, ValueError, OverflowError, BufferError) as exc:
            if isinstance(sim_time, bool) or not isinstance(sim_time, (int, float)):
                msg = f"sim_time must be a number, got {type(sim_time).__name__}"
            else:
                msg = self._arg_error(exc, 0, data)
            label = f"stream {stream!r}: " if call == "publish" else ""
            raise error_for(lib.SHMX_EINVAL, f"{call}: {label}{msg}") from None
