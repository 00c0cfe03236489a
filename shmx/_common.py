"""Constants, stream specs and small helpers shared by the Python layer."""
from __future__ import annotations

import os
import struct
from typing import Any, Dict, List, Optional, Tuple

from ._shape import decode_shape
from ._shmx import ffi, lib
from .errors import status_message

DT_BOOL: int = lib.SHMX_DT_BOOL
DT_I8: int = lib.SHMX_DT_I8
DT_U8: int = lib.SHMX_DT_U8
DT_I16: int = lib.SHMX_DT_I16
DT_U16: int = lib.SHMX_DT_U16
DT_I32: int = lib.SHMX_DT_I32
DT_U32: int = lib.SHMX_DT_U32
DT_I64: int = lib.SHMX_DT_I64
DT_U64: int = lib.SHMX_DT_U64
DT_F16: int = lib.SHMX_DT_F16
DT_BF16: int = lib.SHMX_DT_BF16
DT_F32: int = lib.SHMX_DT_F32
DT_F64: int = lib.SHMX_DT_F64

LAYOUT_SOA_SCALAR: int = lib.SHMX_LAYOUT_SOA_SCALAR
LAYOUT_AOS_VECTOR: int = lib.SHMX_LAYOUT_AOS_VECTOR

TLV_STATIC_DIR: int = lib.SHMX_TLV_STATIC_DIR
TLV_FRAME_STREAM: int = lib.SHMX_TLV_FRAME_STREAM
TLV_CONTROL_USER: int = lib.SHMX_TLV_CONTROL_USER

CHECKSUM_POLICIES = {"auto": lib.SHMX_CHECKSUM_AUTO, "always": lib.SHMX_CHECKSUM_ALWAYS,
                     "never": lib.SHMX_CHECKSUM_NEVER}
_POLICY_NAMES = {v: k for k, v in CHECKSUM_POLICIES.items()}
_LIVENESS = {lib.SHMX_ALIVE: True, lib.SHMX_DEAD: False, lib.SHMX_UNKNOWN: None}


def dtype_to_string(dtype_code: int) -> str:
    """Name of a ``DT_*`` code (``"float32"``), ``"unknown"`` otherwise."""
    try:
        return ffi.string(lib.shmx_dtype_name(dtype_code)).decode()
    except OverflowError:
        return "unknown"


def layout_to_string(layout_code: int) -> str:
    """Name of a ``LAYOUT_*`` code (``"scalar"``/``"vector"``), ``"unknown"`` otherwise."""
    try:
        return ffi.string(lib.shmx_layout_name(layout_code)).decode()
    except OverflowError:
        return "unknown"


def create_stream_spec(stream_id: int, name: str, dtype_code: int, components: int,
                       bytes_per_elem: int, layout_code: Optional[int] = None,
                       extra: Optional[bytes] = None, *,
                       shape: Optional[Tuple[int, ...]] = None) -> Dict[str, Any]:
    """A stream specification for ``Server.create(streams=[...])``.

    ``bytes_per_elem`` is the size of one element (all its components:
    ``dtype size * components``, checked by ``create``); ``extra`` is opaque
    metadata readers get back in ``get_streams_info()``.  ``shape``
    (keyword, since 1.1) is the array shape of one frame's data of the
    stream, e.g. ``(480, 640, 3)`` for an RGB image: readers get it in
    ``get_streams_info()`` and ``as_arrays()`` shapes frames by it (its
    product is ``elem_count * components``).  It is stored in ``extra``
    (see ``shmx/_shape.py``), so shmx 1.0.1 peers still read the schema.
    Raises ``InvalidArgumentError`` for a bad shape.
    """
    if shape is not None:
        from ._shape import check_shape
        from .errors import InvalidArgumentError
        comps = components if isinstance(components, int) and not isinstance(components, bool) else 0
        try:
            shape = check_shape("create_stream_spec", str(name), shape, comps)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(str(exc), lib.SHMX_EINVAL) from None
    spec: Dict[str, Any] = {"id": stream_id, "name": name, "dtype_code": dtype_code,
                            "components": components, "bytes_per_elem": bytes_per_elem}
    if layout_code is not None:
        spec["layout_code"] = layout_code
    if extra is not None:
        spec["extra"] = extra if isinstance(extra, bytes) else bytes(extra)
    if shape is not None:
        spec["shape"] = tuple(shape)
    return spec


def frame_to_numpy(frame_dict: Dict[str, Any],
                   dtype_map: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A frame dict (``get_latest_frame()``) as ``{stream name: ndarray}``,
    zero copy over the frame's memoryviews (``'__metadata__'`` is left out).
    ``dtype_map`` gives a stream's numpy dtype (or ``DT_*`` code) by name;
    streams it does not name come back as ``uint8``.  For arrays typed and
    shaped by the schema, use ``Client.as_arrays(frame)``.  Needs numpy.
    Named in shmx 1.0.1's type stub (its runtime lacked it)."""
    import numpy as np
    from ._numpy import numpy_dtype
    out: Dict[str, Any] = {}
    for key, entry in frame_dict.items():
        if key == "__metadata__":
            continue
        data = entry["data"] if isinstance(entry, dict) else entry
        want = (dtype_map or {}).get(key, np.uint8)
        dt = numpy_dtype(want) if isinstance(want, int) and not isinstance(want, bool) else np.dtype(want)
        out[key] = np.frombuffer(data, dtype=dt, count=len(memoryview(data).cast("B")) // dt.itemsize)
    return out


def default_shm_dir() -> str:
    """The directory regions live in: ``$SHMX_DIR`` or ``/dev/shm``."""
    return os.environ.get("SHMX_DIR") or "/dev/shm"


# dtype code -> (numpy/.npy descr, struct format of one value), little-endian
# as the wire format is.  bfloat16 has no numpy dtype: its values are kept
# as uint16 bit patterns.  (Sizes: lib.shmx_dtype_size.)
DTYPE_FORMATS: Dict[int, Tuple[str, str]] = {
    DT_BOOL: ("|b1", "?"), DT_I8: ("|i1", "b"), DT_U8: ("|u1", "B"),
    DT_I16: ("<i2", "h"), DT_U16: ("<u2", "H"), DT_I32: ("<i4", "i"),
    DT_U32: ("<u4", "I"), DT_I64: ("<i8", "q"), DT_U64: ("<u8", "Q"),
    DT_F16: ("<f2", "e"), DT_BF16: ("<u2", "H"), DT_F32: ("<f4", "f"), DT_F64: ("<f8", "d"),
}

_FIELD_CODES = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q", "int32_t": "i",
                "int64_t": "q", "double": "d", "float": "f"}


def struct_unpacker(ctype: str) -> Any:
    """``unpack_from`` for a C struct of numbers, laid out as the C compiler
    laid it out (cffi tells each field's offset and type; native byte
    order): fields in declaration order.  One call reads them all, far
    cheaper than one cdata attribute access per field."""
    fmt, pos = "=", 0
    for _name, field in ffi.typeof(ctype).fields:
        if field.offset > pos:
            fmt += f"{field.offset - pos}x"
        fmt += _FIELD_CODES[field.type.cname]
        pos = field.offset + ffi.sizeof(field.type)
    if ffi.sizeof(ctype) > pos:
        fmt += f"{ffi.sizeof(ctype) - pos}x"
    return struct.Struct(fmt).unpack_from


def unlink(name: str, *, shm_dir: Optional[str] = None, force: bool = False) -> None:
    """Remove the region ``name`` whose server is dead (a stale region: the
    server crashed or exited without ``destroy()``); ``force=True`` removes
    it even when its server lives (its processes keep their mappings).  The
    check and the removal are one act: a region a live server holds is
    never removed without ``force``.  Raises ``RegionNotFoundError``,
    ``RegionExistsError`` (its server lives), ``CorruptRegionError`` (not a
    shmx region: use ``force``), ``InvalidArgumentError``."""
    from .errors import error_for
    try:
        raw = encode_name(name)
        d = encode_dir(shm_dir) if shm_dir is not None else None
    except (TypeError, ValueError) as exc:
        raise error_for(lib.SHMX_EINVAL, f"unlink: {exc}") from None
    st = lib.shmx_unlink(raw, d if d is not None else ffi.NULL, 1 if force else 0)
    if st != 0:
        raise error_for(st, status_message(st).replace("; use force", "; pass force=True"))


def header_dict(info: Any, name: str) -> Dict[str, Any]:
    """``get_header_info()``: the shmx 1.0.1 keys first, then ours."""
    return {
        "magic": info.magic,
        "version_major": info.version_major,
        "version_minor": info.version_minor,
        "session_id": info.session_id,
        "slots": info.slots,
        "frame_bytes_cap": info.frame_bytes_cap,
        "reader_slots": info.reader_slots,
        "control_per_reader": info.control_per_reader,
        "frame_seq": info.frame_seq,
        "readers_connected": info.readers_connected,
        "name": name,
        "static_gen": info.static_gen,
        "static_bytes_used": info.static_bytes_used,
        "static_bytes_cap": info.static_bytes_cap,
        "slot_payload_cap": info.slot_payload_cap,
        "total_bytes": info.total_bytes,
        "extended": bool(info.extended),
        "closed": bool(info.closed),
        "owner_pid": info.owner_pid,
        "owner_alive": _LIVENESS.get(info.owner_alive),
        "owner_heartbeat": info.owner_heartbeat,
        "checksum": _POLICY_NAMES.get(info.checksum_policy, "unknown"),
        "overruns": info.overruns,
    }


def stream_dict(si: Any) -> Dict[str, Any]:
    """One entry of ``get_streams_info()``."""
    d: Dict[str, Any] = {
        "id": si.stream_id,
        "name": ffi.unpack(si.name, si.name_len).decode("utf-8", "replace"),
        "dtype": dtype_to_string(si.dtype),
        "dtype_code": si.dtype,
        "components": si.components,
        "layout": layout_to_string(si.layout),
        "bytes_per_elem": si.bytes_per_elem,
    }
    if si.extra_len:
        shape, extra = decode_shape(ffi.unpack(ffi.cast("char *", si.extra), si.extra_len))
        if shape is not None:
            d["shape"] = shape
        if extra:
            d["extra"] = extra
    return d


def streams_list(count_fn: Any, info_fn: Any, handle: Any) -> List[Dict[str, Any]]:
    """Every stream of a handle's schema as dicts."""
    if handle is None:
        return []
    si = ffi.new("shmx_stream_info *")
    out = []
    for i in range(count_fn(handle)):
        si.struct_size = ffi.sizeof("shmx_stream_info")
        if info_fn(handle, i, si) == 0:
            out.append(stream_dict(si))
    return out


def readers_list(fn: Any, handle: Any, capacity: int) -> List[Dict[str, Any]]:
    """Every reader slot as dicts (the shmx 1.0.1 keys first)."""
    if handle is None:
        return []
    arr = ffi.new("shmx_reader_info[]", max(capacity, 1))
    for i in range(len(arr)):
        arr[i].struct_size = ffi.sizeof("shmx_reader_info")
    count = ffi.new("uint32_t *")
    if fn(handle, arr, len(arr), count) != 0:
        return []
    return [{
        "reader_id": r.reader_id,
        "heartbeat": r.heartbeat,
        "last_frame_seen": r.last_frame_seen,
        "in_use": bool(r.in_use),
        "index": r.index,
        "alive": _LIVENESS.get(r.alive),
        "legacy": bool(r.legacy),
        "pid": r.pid,
        "frames_read": r.frames_read,
        "frames_dropped": r.frames_dropped,
    } for r in arr[0:min(count[0], len(arr))]]


def encode_name(name: Any) -> bytes:
    """A region name as bytes for C (str or bytes accepted)."""
    if isinstance(name, bytes):
        raw = name
    elif isinstance(name, str):
        raw = name.encode("utf-8")
    else:
        raise TypeError(f"region name must be str, not {type(name).__name__}")
    # C sees the name only up to the first NUL: "cam\0x" would silently
    # become "cam", so refuse it here.
    if b"\0" in raw:
        raise ValueError(f"region name {name!r} contains a NUL character")
    return raw


def encode_dir(shm_dir: Any) -> bytes:
    """``shm_dir`` as the bytes C gets; refuses what C would misread."""
    if not isinstance(shm_dir, (str, bytes, os.PathLike)):
        raise TypeError(f"shm_dir must be a path (str), not {type(shm_dir).__name__}")
    raw = os.fsencode(shm_dir)
    # C sees the path only up to the first NUL: "/tmp\0x" would silently
    # become "/tmp".
    if b"\0" in raw:
        raise ValueError(f"shm_dir {shm_dir!r} contains a NUL character")
    return raw


def open_options(shm_dir: Optional[str], history: bool = False) -> Any:
    """A filled ``shmx_open_options`` (kept alive with its dir string)."""
    opt = ffi.new("shmx_open_options *")
    lib.shmx_open_options_init(opt)
    opt.history = 1 if history else 0
    keep = None
    if shm_dir is not None:
        keep = ffi.new("char[]", encode_dir(shm_dir))
        opt.dir = keep
    return opt, keep


def open_handle(open_fn: Any, handle_type: str, name: Any,
                shm_dir: Optional[str], history: bool = False) -> Tuple[int, Any, str, str]:
    """Call a C open function (``shmx_client_open``/``shmx_inspector_open``).
    Returns ``(status, handle or None, region name, error message)``."""
    try:
        raw = encode_name(name)
        opt, keep = open_options(shm_dir, history)
    except (TypeError, ValueError) as exc:
        return lib.SHMX_EINVAL, None, "", f"open: {exc}"
    out = ffi.new(handle_type + " **")
    st = open_fn(raw, opt, out)
    del keep
    if st != 0:
        return st, None, "", status_message(st)
    return 0, out[0], raw.decode("utf-8", "replace").lstrip("/"), ""
