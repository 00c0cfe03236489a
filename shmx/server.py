"""The producer side: ``Server`` (the documented shmx 1.0.1 API and more)."""
from __future__ import annotations

import asyncio
import collections.abc as _abc
import operator
import time
import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from ._aio import check_timeout, wait_readable, wake_all
from ._common import (CHECKSUM_POLICIES, encode_dir, encode_name, header_dict, readers_list,
                      streams_list)
from ._shmx import ffi, lib
from .errors import error_for, status_message

_append = lib.shmx_server_append
_begin = lib.pyshmx_server_begin  # the frame token (> 0) or a status (< 0)
_publish = lib.shmx_server_publish
_publish_stream = lib.shmx_server_publish_stream
_from_buffer = ffi.from_buffer
# cffi refuses None for a handle argument: calls made before create() or
# after destroy() pass NULL instead, so the C library reports the refusal
# (False/None plus last_error) rather than Python raising TypeError.
_NULL = ffi.NULL

StreamKey = Union[int, str]


def _server_of(me: "weakref.ref[Server]", call: str) -> "Server":
    """The Server behind a kept hot builtin (see _bind_hot)."""
    server = me()
    if server is None:
        raise error_for(lib.SHMX_ECLOSED, f"{call}: its Server was garbage-collected (destroyed)")
    return server


# The calls _hot.h runs as builtins, in its HOT_* order.
_HOT_NAMES = ("begin_frame", "append_stream", "publish_frame", "publish", "publish_stream")
_hot_docs: Optional[tuple] = None


def _hot_doc(fn: Callable[..., Any]) -> bytes:
    """A builtin's __text_signature__ and docstring: the Python method's."""
    import inspect
    sig = inspect.signature(fn)
    params = [p.replace(annotation=p.empty) for p in list(sig.parameters.values())[1:]]
    text = sig.replace(parameters=params, return_annotation=sig.empty)
    return f"{fn.__name__}{text}\n--\n\n{inspect.getdoc(fn)}".encode()


def _slow_call(me: "weakref.ref[Server]", method: Callable[..., Any]) -> Callable[..., Any]:
    """What a hot builtin hands a call it does not take itself to."""
    name = method.__name__.strip("_").replace("_refused", "")

    def slow(*args: Any, **kwargs: Any) -> Any:
        return method(_server_of(me, name), *args, **kwargs)
    return slow


class Server:
    """Publishes frames into a shared-memory region.

    Calls that return ``bool`` leave the reason of a failure in
    ``last_error``.  A ``Server`` is used by one thread at a time.
    """

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
            cfg, keep = self._config(slots, reader_slots, static_bytes_cap, frame_bytes_cap,
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

    def _bind_hot(self) -> None:
        """Shadow the hot calls by this instance's builtins (shmx/_hot.h):
        exact-type calls run in C with no Python frame, everything else goes
        to the methods below.  Made once per Server; they follow it across
        destroy() and create() (``_hot.s`` is the open handle or NULL)."""
        global _hot_docs
        if self._hot is None:
            cls = type(self)
            if _hot_docs is None:
                lib.pyshmx_hot_install()
                _hot_docs = tuple(_hot_doc(getattr(Server, n)) for n in _HOT_NAMES)
            from ._shmx import _hot_bind  # type: ignore[attr-defined]  # put there by pyshmx_hot_install
            me = weakref.ref(self)
            slow = [getattr(cls, n) for n in _HOT_NAMES] + [getattr(cls, f"_{n}_refused") for n in _HOT_NAMES]
            addr, *fns = _hot_bind(tuple(_slow_call(me, fn) for fn in slow), self._ids, _hot_docs)
            self._hot = ffi.cast("pyshmx_hot *", addr)  # alive while the builtins are
            self._hot_fns = fns
            for n, fn in zip(_HOT_NAMES, fns):
                if getattr(cls, n) is getattr(Server, n):  # not overridden by a subclass
                    self.__dict__[n] = fn
        self._hot.s = self._s
        self._hot.loans = 0

    # What a hot builtin calls when the C library refused (status first, then
    # the call's arguments): the methods' own failure handling.
    def _begin_frame_refused(self, st: int) -> None:
        self._set_error(st, "begin_frame")

    def _append_stream_refused(self, st: int, frame_handle: Any, *_: Any) -> bool:
        self._set_error(st, "append_stream")
        self._explain_handle(st, "append_stream", frame_handle)
        return False

    def _publish_frame_refused(self, st: int, frame_handle: Any, *_: Any) -> bool:
        self._set_error(st, "publish_frame")
        self._explain_handle(st, "publish_frame", frame_handle)
        return False

    def _publish_refused(self, st: int, *_: Any) -> None:
        self._raise_if(st, "publish")

    def _publish_stream_refused(self, st: int, *_: Any) -> None:
        self._raise_if(st, "publish_stream")

    def _load_schema(self) -> None:
        # In place: the hot builtins look names up in this very dict.
        streams = self.get_streams_info()
        self._ids.clear()
        self._ids.update({spec["name"]: spec["id"] for spec in streams})
        self._bpe = {spec["id"]: spec["bytes_per_elem"] for spec in streams}

    @staticmethod
    def _config(slots: int, reader_slots: int, static_bytes_cap: int, frame_bytes_cap: int,
                control_per_reader: int, streams: Iterable[Mapping[str, Any]], mode: int,
                checksum: str, shm_dir: Optional[str]) -> Any:
        if checksum not in CHECKSUM_POLICIES:
            raise ValueError(f"checksum must be one of {sorted(CHECKSUM_POLICIES)}, not {checksum!r}")
        for label, v in (("slots", slots), ("reader_slots", reader_slots),
                         ("static_bytes_cap", static_bytes_cap),
                         ("frame_bytes_cap", frame_bytes_cap),
                         ("control_per_reader", control_per_reader), ("mode", mode)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{label} must be an int, not {type(v).__name__}")
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"{label} {v} is out of range 0..2**32-1")
        cfg = ffi.new("shmx_server_config *")
        lib.shmx_server_config_init(cfg)
        cfg.slots, cfg.reader_slots = slots, reader_slots
        cfg.static_bytes_cap, cfg.frame_bytes_cap = static_bytes_cap, frame_bytes_cap
        cfg.control_per_reader, cfg.mode = control_per_reader, mode
        cfg.checksum = CHECKSUM_POLICIES[checksum]
        specs = list(streams or [])
        keep: List[Any] = []
        arr = ffi.new("shmx_stream_spec[]", max(len(specs), 1))
        for i, spec in enumerate(specs):
            if not isinstance(spec, Mapping):
                raise TypeError(f"stream {i} must be a dict from create_stream_spec()")
            for key in ("id", "name", "dtype_code", "components", "bytes_per_elem"):
                if key not in spec:
                    raise KeyError(f"stream {i} has no '{key}'")
            name = spec["name"]
            if not isinstance(name, (str, bytes)):
                raise TypeError(f"stream {i}: name must be a str, got {type(name).__name__}")
            raw = name.encode("utf-8") if isinstance(name, str) else bytes(name)
            if b"\0" in raw:
                raise ValueError(f"stream {i}: name {name!r} contains a NUL character")
            label = f"stream {name!r}" if isinstance(name, str) else f"stream {i}"
            for key, field in (("id", "stream id"), ("dtype_code", "dtype_code"),
                               ("components", "components"), ("bytes_per_elem", "bytes_per_elem"),
                               ("layout_code", "layout_code")):
                v = spec.get(key, 0) if key == "layout_code" else spec[key]
                if v is None and key == "layout_code":
                    continue
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{label}: {field} must be an int, got {type(v).__name__} {v!r}")
                if not 0 <= v <= 0xFFFFFFFF:
                    raise ValueError(f"{label}: {field} {v} is out of range 0..2**32-1")
            nm = ffi.new("char[]", raw)
            keep.append(nm)
            a = arr[i]
            a.stream_id = spec["id"]
            a.dtype = spec["dtype_code"]
            a.components = spec["components"]
            a.layout = spec.get("layout_code", 0) or 0
            a.bytes_per_elem = spec["bytes_per_elem"]
            a.name = nm
            extra = spec.get("extra")
            if spec.get("shape") is not None:
                from ._shape import check_shape, encode_shape
                dims = check_shape("create", str(name), spec["shape"], int(spec["components"]))
                extra = encode_shape(dims, bytes(extra or b""))
            if extra:
                eb = ffi.new("char[]", bytes(extra))
                keep.append(eb)
                a.extra = eb
                a.extra_len = len(bytes(extra))
        cfg.streams = arr
        cfg.stream_count = len(specs)
        keep.append(arr)
        if shm_dir is not None:
            d = ffi.new("char[]", encode_dir(shm_dir))
            keep.append(d)
            cfg.dir = d
        return cfg, keep

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
        if self._hot is not None:
            self._hot.s = _NULL  # before the handle can be freed: kept builtins go the slow way
        self._destroyed = True
        self._s = None
        self._mv = None
        self._owner = None

    close = destroy

    def is_open(self) -> bool:
        """True between a successful ``create()`` and ``destroy()``."""
        return self._s is not None

    @property
    def name(self) -> str:
        """The region name ('' before create)."""
        return self._name

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

    def _explain_handle(self, st: int, call: str, frame_handle: Any) -> None:
        if st == lib.SHMX_EHANDLE:
            self.last_error = (f"{call}: {frame_handle!r} is not an open frame of this server (use the "
                               f"handle begin_frame() returned; it ends at publish_frame or the next "
                               f"begin_frame) [{self.last_error}]")

    def loan(self, frame_handle: Any, stream_id: int, elem_count: int) -> memoryview:
        """Reserve stream ``stream_id`` in the frame and return a writable
        memoryview of its bytes inside shared memory: fill it, then publish
        (zero copy).  The view is released at publish or the next
        begin_frame; using it afterwards raises ``ValueError``."""
        ptr = ffi.new("void **")
        try:
            st = lib.shmx_server_loan(self._s or _NULL, frame_handle, stream_id, elem_count, ptr)
        except (TypeError, OverflowError) as exc:
            raise error_for(lib.SHMX_EINVAL, f"loan: {self._arg_error(exc, frame_handle, b'', stream_id=stream_id, elem_count=elem_count)}") from None
        if st != 0:
            self._set_error(st, "loan")
            self._explain_handle(st, "loan", frame_handle)
            raise error_for(self._last_status, self.last_error)
        assert self._mv is not None
        off = int(ffi.cast("uintptr_t", ptr[0])) - int(ffi.cast("uintptr_t", self._owner))
        view = self._mv[off:off + elem_count * self._bpe.get(stream_id, 0)]
        self._loans.append(view)
        if self._hot is not None:
            self._hot.loans = 1
        return view

    def loan_array(self, frame_handle: Any, stream_id: int, elem_count: int) -> Any:
        """``loan()`` as a writable numpy array shaped by the schema
        (``(elem_count, components)``, or ``(elem_count,)``).  At publish
        the array is made read-only, so a late write raises ``ValueError``
        (views you sliced from it yourself are not tracked).  Needs numpy."""
        from ._numpy import stream_array
        view = self.loan(frame_handle, stream_id, elem_count)
        spec = next((s for s in self.get_streams_info() if s["id"] == stream_id), None)
        arr = stream_array(view, elem_count, spec)
        self._loaned_arrays.append(arr)
        return arr

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

    def _raise_if(self, st: int, call: str) -> None:
        if st != 0:
            self._set_error(st, call)
            raise error_for(self._last_status, self.last_error)

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

    # -------------------------------------------------------------- control
    def poll_control(self, max_messages: int = 256) -> List[Dict[str, Any]]:
        """Control messages from clients: dicts with ``reader_id``, ``type``,
        ``data`` (bytes), ``reader_index``; at most ``max_messages``."""
        out: List[Dict[str, Any]] = []
        s = self._s
        if s is None:
            self._set_error(lib.SHMX_EINVAL, "poll_control")
            return out
        msg, buf = self._msg, self._msgbuf
        cap = len(buf)
        while len(out) < max_messages:
            msg.struct_size = ffi.sizeof("shmx_control_msg")
            st = lib.shmx_server_next_control(s, msg, buf, cap)
            if st != 0:
                if st != lib.SHMX_EAGAIN:
                    self._set_error(st, "poll_control")
                break
            out.append({"reader_id": msg.reader_id, "type": msg.type,
                        "data": ffi.unpack(buf, msg.length), "reader_index": msg.reader_index})
        return out

    def wait_control(self, timeout: Optional[float] = None) -> bool:
        """Block until a control message may be waiting (True) or the
        timeout in seconds passes (False).  Releases the GIL; Ctrl-C works.
        A NaN or negative timeout raises ``InvalidArgumentError``."""
        timeout = check_timeout("wait_control", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._s is not None:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            st = lib.pyshmx_server_wait_control(self._s, max(int(left * 1e9), 0))
            if st == 0:
                return True
            if st != lib.SHMX_ETIMEDOUT:
                self._set_error(st, "wait_control")
                return False
            if deadline is not None and time.monotonic() >= deadline:
                self._last_status = st
                self.last_error = f"wait_control: no control message within {timeout} s"
                return False
        self._set_error(lib.SHMX_ECLOSED, "wait_control")  # not created, or destroyed: say so
        return False

    # -------------------------------------------------------------- readers
    def wait_readers(self, n: int, timeout: Optional[float] = None) -> bool:
        """Wait until at least ``n`` readers are attached (``readers_connected``):
        True then, False at the timeout (seconds, None: forever) or after
        ``destroy()``.  Honours Ctrl-C."""
        timeout = check_timeout("wait_readers", timeout)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise error_for(lib.SHMX_EINVAL, f"wait_readers: n must be an int >= 0, got {n!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = 0.0005
        while self._s is not None:
            if self.get_header_info().get("readers_connected", 0) >= n:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self._last_status = lib.SHMX_ETIMEDOUT
                self.last_error = f"wait_readers: fewer than {n} readers within {timeout} s"
                return False
            time.sleep(nap if deadline is None else max(min(nap, deadline - now), 0))
            nap = min(nap * 2, 0.01)
        self._set_error(lib.SHMX_ECLOSED, "wait_readers")
        return False

    # ------------------------------------------------------- event loops
    def control_fileno(self) -> int:
        """A file descriptor for any event loop that becomes readable, once
        armed, when a client sends a control message (and, spuriously, when
        a client connects to or leaves the wake channel).  ``control_fileno()``
        arms it; after each wake call ``arm_control()``: True means call
        ``poll_control()`` now, False means wait for the fd again.  Owned by
        the server (closed by ``destroy()``).  Raises ``ServerGoneError``
        after destroy, ``ShmxError`` where there is no wake channel."""
        fd = ffi.new("int *")
        st = lib.shmx_server_control_fd(self._s or _NULL, fd)
        if st != 0:
            self._set_error(st if self._s is not None else lib.SHMX_ECLOSED, "control_fileno")
            raise error_for(lib.SHMX_ECLOSED if self._s is None else st,
                            f"control_fileno: {self.last_error}")
        self.arm_control()
        return int(fd[0])

    def arm_control(self) -> bool:
        """Drain and arm the ``control_fileno()`` fd.  True: a control message
        may be waiting (or the server is destroyed): poll now.  False:
        armed, wait for the fd."""
        st = lib.shmx_server_arm_control_fd(self._s or _NULL)
        if st == lib.SHMX_EAGAIN:
            return False
        if st != 0:
            self._set_error(st, "arm_control")
        return True

    async def await_control(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The asyncio ``wait_control`` + ``poll_control``: the control
        messages waiting (a non-empty list), or ``[]`` at the timeout or
        after ``destroy()``.  Built on ``control_fileno()`` with
        ``loop.add_reader``: no thread; cancellation ends it at once."""
        timeout = check_timeout("await_control", timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._s is not None:
            msgs = self.poll_control()
            if msgs:
                return msgs
            st = lib.shmx_server_arm_control_fd(self._s)
            if st == 0:
                continue
            fd = ffi.new("int *")
            no_channel = st == lib.SHMX_ESYS or (st == lib.SHMX_EAGAIN and
                                                 lib.shmx_server_control_fd(self._s, fd) != 0)
            if st not in (lib.SHMX_EAGAIN, lib.SHMX_ESYS):
                self._set_error(st, "await_control")
                return []
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self._last_status = lib.SHMX_ETIMEDOUT
                self.last_error = f"await_control: no control message within {timeout} s"
                return []
            if no_channel:  # no wake channel here (Windows): look again soon, no thread
                await asyncio.sleep(0.002 if left is None else min(0.002, left))
                continue
            await wait_readable(int(fd[0]), left, self._async_waiters)
        self._set_error(lib.SHMX_ECLOSED, "await_control")
        return []

    # -------------------------------------------------------------- readers
    def snapshot_readers(self) -> List[Dict[str, Any]]:
        """Every reader slot: ``reader_id``, ``heartbeat`` (monotonic ns),
        ``last_frame_seen``, ``in_use``, and ``alive``, ``pid``,
        ``frames_read``, ``frames_dropped``, ``legacy``.  ``[]`` before
        ``create()`` and after ``destroy()`` (``last_error`` says which)."""
        if self._s is None:
            self._set_error(lib.SHMX_EINVAL, "snapshot_readers")
            return []
        return readers_list(lib.shmx_server_readers, self._s, self.get_header_info()["reader_slots"])

    def reap_stale_readers(self, now_ticks: int, timeout_ticks: int) -> int:
        """Free reader slots of dead readers, and evict readers whose
        heartbeat (``time.monotonic_ns()`` units) is older than
        ``timeout_ticks`` at ``now_ticks``: a live client of ours loses its
        pinned frame and its next call reports it was evicted
        (``ReaderEvictedError``); a shmx 1.0.1 reader's slot is freed.  Our
        clients heartbeat on every read and every 100 ms while waiting.
        Returns how many were freed or evicted."""
        out = ffi.new("uint32_t *")
        try:
            st = lib.shmx_server_reap_stale_readers(self._s or _NULL, now_ticks, timeout_ticks, out)
        except (TypeError, OverflowError) as exc:
            self.last_error = f"reap_stale_readers: {exc}"
            return 0
        if st != 0:
            self._set_error(st, "reap_stale_readers")
            return 0
        return int(out[0])

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

    def _revoke_loans(self) -> None:
        for arr in self._loaned_arrays:
            arr.flags.writeable = False
        self._loaned_arrays.clear()
        for view in self._loans:
            try:
                view.release()
            except BufferError:
                pass  # exported further (e.g. to numpy): cannot be revoked
        self._loans.clear()
        if self._hot is not None:
            self._hot.loans = 0

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


def serve(name: str, streams: Iterable[Mapping[str, Any]], **kwargs: Any) -> Server:
    """Create a server or raise (``RegionExistsError``, ``InvalidArgumentError``,
    ...).  Keyword arguments are those of ``Server.create``."""
    server = Server()
    if not server.create(name, streams=streams, **kwargs):
        raise error_for(server._last_status, server.last_error)
    return server
