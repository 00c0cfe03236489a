"""MCAP recordings: the message codec shared by ``shmx record``, ``shmx play``
and ``shmx foxglove`` (which format a run uses is ``record``'s choice).

Written and read with the ``mcap`` package (extra ``shmx[mcap]``), imported
only when a command runs.  The layout of a file is in docs/mcap.md: per
region a ``shmx.region`` metadata record with the full schema (static bytes
included), a ``/<region>/_frame`` channel (``shmx.Frame``) and one channel
per stream (``foxglove.RawImage`` for images, ``shmx.Stream<T>`` otherwise,
all protobuf), every message of one frame under the same ``sequence``, and a
``shmx.end`` record with the frame and dropped counts.  Recording is in
``shmx.cli.mcap_record``, reading and playing in ``shmx.cli.mcap_play``.
"""
from __future__ import annotations

import math
import struct
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import protowire as pw
from .util import CliError
from .._shmx import ffi, lib

MCAP_MAGIC = b"\x89MCAP0\r\n"
MCAP_MAGIC = b"\x89MCAP0\r\n"
FORMAT = "shmx-mcap"
FORMAT_VERSION = "1"
COMPRESSIONS = ("zstd", "lz4", "none")
MAX_CHUNK_BYTES = 1 << 30        # a chunk that claims more is refused
SMALL_VALUES = 1024              # 8/16-bit streams up to this many values also get plottable `values`
FLUSH_NS = 1_000_000_000         # a chunk is closed at least this often
QUEUE_BYTES = 256 << 20          # frames encoded but not yet written, at most
PROFILE = ""                     # not a ROS profile: our channels are protobuf



class ValueType(NamedTuple):
    name: str                  # protobuf message name in package shmx
    proto_type: Optional[int]  # type of `values`, None: only `raw`
    values_are_raw: bool       # packed `values` is the stream's bytes as they are
    fmt: str                   # struct format of one value (for the plottable copy)
    signed: bool


_VALUE_TYPES = {
    lib.SHMX_DT_F32: ValueType("StreamF32", pw.T_FLOAT, True, "f", False),
    lib.SHMX_DT_F64: ValueType("StreamF64", pw.T_DOUBLE, True, "d", False),
    lib.SHMX_DT_U32: ValueType("StreamU32", pw.T_FIXED32, True, "I", False),
    lib.SHMX_DT_I32: ValueType("StreamI32", pw.T_SFIXED32, True, "i", False),
    lib.SHMX_DT_U64: ValueType("StreamU64", pw.T_FIXED64, True, "Q", False),
    lib.SHMX_DT_I64: ValueType("StreamI64", pw.T_SFIXED64, True, "q", False),
    lib.SHMX_DT_U8: ValueType("StreamU8", pw.T_UINT32, False, "B", False),
    lib.SHMX_DT_I8: ValueType("StreamI8", pw.T_SINT32, False, "b", True),
    lib.SHMX_DT_U16: ValueType("StreamU16", pw.T_UINT32, False, "H", False),
    lib.SHMX_DT_I16: ValueType("StreamI16", pw.T_SINT32, False, "h", True),
    lib.SHMX_DT_BOOL: ValueType("StreamBool", pw.T_BOOL, False, "B", False),
    lib.SHMX_DT_F16: ValueType("StreamF16", pw.T_FLOAT, False, "e", False),
    lib.SHMX_DT_BF16: ValueType("StreamBF16", pw.T_FLOAT, False, "H", False),
}
_BYTES_TYPE = ValueType("StreamBytes", None, False, "B", False)


def require_mcap() -> Any:
    """The ``mcap`` package, or a CliError saying how to get it."""
    try:
        import mcap.writer  # noqa: F401
        import mcap.stream_reader  # noqa: F401
        import mcap.records  # noqa: F401
    except ImportError:
        raise CliError("MCAP needs the 'mcap' package: pip install 'shmx[mcap]'") from None
    import mcap
    return mcap


def value_type(spec: Dict[str, Any]) -> ValueType:
    """How the stream ``spec`` is written as a shmx.Stream* message."""
    vt = _VALUE_TYPES.get(spec["dtype_code"])
    comps = max(int(spec["components"]), 1)
    if vt is None or spec["bytes_per_elem"] != comps * lib.shmx_dtype_size(spec["dtype_code"]):
        return _BYTES_TYPE  # opaque elements (a struct per element): bytes only
    return vt


def _plottable(vt: ValueType, data: memoryview) -> bytes:
    """The packed `values` field body for a type whose bytes are not protobuf."""
    n = len(data) // struct.calcsize(vt.fmt)
    vals = struct.unpack_from(f"<{n}{vt.fmt}", data)
    if vt.name == "StreamF16":
        return struct.pack(f"<{n}f", *vals)
    if vt.name == "StreamBF16":  # bfloat16 is the top half of a float32
        return struct.pack(f"<{n}I", *(v << 16 for v in vals))
    if vt.signed:
        return b"".join(pw.varint(pw.zigzag(v) & 0xFFFFFFFFFFFFFFFF) for v in vals)
    return b"".join(pw.varint(v) for v in vals)


def encode_stream(vt: ValueType, frame_id: int, sim_time: float, elem_count: int, components: int,
                  data: memoryview) -> bytes:
    """A shmx.Stream* message carrying ``data`` unchanged."""
    head = (pw.field_varint(pw.S_FRAME_ID, frame_id) + pw.field_double(pw.S_SIM_TIME, sim_time)
            + pw.field_varint(pw.S_ELEM_COUNT, elem_count) + pw.field_varint(pw.S_COMPONENTS, components))
    n = data.nbytes
    if vt.values_are_raw:
        return b"".join((head, pw.field_len_head(pw.S_VALUES, n), data))
    if vt.proto_type is not None and n // struct.calcsize(vt.fmt) <= SMALL_VALUES:
        head += pw.field_len(pw.S_VALUES, _plottable(vt, data))
    return b"".join((head, pw.field_len_head(pw.S_RAW, n), data))


def decode_stream_bytes(msg: bytes, values_are_raw: bool) -> bytes:
    """The stream bytes a shmx.Stream* message carries."""
    fields = pw.decode_fields(msg)
    v = fields.get(pw.S_VALUES if values_are_raw else pw.S_RAW)
    return bytes(v) if isinstance(v, memoryview) else b""


def encode_frame(frame_id: int, sim_time: float, dropped: int, ids: Sequence[int],
                 counts: Sequence[int]) -> bytes:
    return (pw.field_varint(pw.F_FRAME_ID, frame_id) + pw.field_double(pw.F_SIM_TIME, sim_time)
            + pw.field_varint(pw.F_DROPPED, dropped)
            + pw.field_len(pw.F_STREAM_IDS, b"".join(pw.varint(i) for i in ids))
            + pw.field_len(pw.F_ELEM_COUNTS, b"".join(pw.varint(c) for c in counts)))


def _packed_varints(v: object) -> List[int]:
    out: List[int] = []
    if isinstance(v, memoryview):
        buf, pos = v, 0
        while pos < len(buf):
            x, pos = pw._read_varint(buf, pos)
            out.append(x)
    return out


def decode_frame(msg: bytes) -> Tuple[int, float, int, List[int], List[int]]:
    f = pw.decode_fields(msg)
    sim = f.get(pw.F_SIM_TIME, 0)
    sim_time = struct.unpack("<d", struct.pack("<Q", sim))[0] if isinstance(sim, int) else 0.0
    return (int(f.get(pw.F_FRAME_ID, 0)), sim_time, int(f.get(pw.F_DROPPED, 0)),  # type: ignore
            _packed_varints(f.get(pw.F_STREAM_IDS)), _packed_varints(f.get(pw.F_ELEM_COUNTS)))


def publish_ns(sim_time: float, fallback: int) -> int:
    """sim_time (seconds) as MCAP publish_time (ns), when it fits."""
    if math.isfinite(sim_time) and 0 <= sim_time < 1.8e10:
        return int(round(sim_time * 1e9))
    return fallback


def fnv1a64(data: bytes) -> int:
    """The static directory hash of the wire format (shmx 1.0.1's seed)."""
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def _shmx_version() -> str:
    try:
        return ffi.string(lib.shmx_version()).decode()
    except Exception:  # pragma: no cover
        return "?"


__all__ = ["encode_stream", "decode_stream_bytes", "encode_frame",
           "decode_frame", "value_type", "publish_ns", "fnv1a64", "require_mcap",
           "COMPRESSIONS"]
