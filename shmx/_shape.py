"""Stream shapes, stored in a stream's ``extra`` bytes.

The wire format has no place for a shape, and shmx 1.0.1 peers must still
read the schema, so a shape travels in the stream's ``extra`` (opaque bytes
to every reader) as a tagged prefix::

    b"\\x89SHMXSHP" | u8 version=1 | u8 ndim (1..8) | u16 reserved=0
                   | ndim x u32 little-endian dims | the user's own extra

A 1.0.1 reader sees this prefix as part of ``extra``; ours strip it and
report ``shape`` and the user's ``extra`` apart.  A prefix that does not
parse exactly (wrong version, zero dims, truncated) is left as plain
``extra``: regions made by others are read as they are.

``shape`` is the array shape of one frame's data of that stream: its
product is ``elem_count * components``.  A frame whose count does not fit
it comes back flat, ``(elem_count, components)``.
"""
from __future__ import annotations

import math
import struct
from typing import Any, Dict, Optional, Sequence, Tuple

MAGIC = b"\x89SHMXSHP"
_HEAD = struct.Struct("<8sBBH")
MAX_NDIM = 8


def encode_shape(shape: Sequence[int], extra: bytes = b"") -> bytes:
    """The ``extra`` bytes carrying ``shape`` followed by ``extra``."""
    dims = tuple(shape)
    return _HEAD.pack(MAGIC, 1, len(dims), 0) + struct.pack(f"<{len(dims)}I", *dims) + extra


def decode_shape(extra: bytes) -> Tuple[Optional[Tuple[int, ...]], bytes]:
    """``(shape or None, the user's extra)`` from a stream's ``extra``."""
    if len(extra) < _HEAD.size or not extra.startswith(MAGIC):
        return None, extra
    _, version, ndim, reserved = _HEAD.unpack_from(extra)
    end = _HEAD.size + 4 * ndim
    if version != 1 or reserved != 0 or not 1 <= ndim <= MAX_NDIM or len(extra) < end:
        return None, extra
    dims = struct.unpack_from(f"<{ndim}I", extra, _HEAD.size)
    if any(d == 0 for d in dims):
        return None, extra
    return tuple(dims), extra[end:]


def check_shape(call: str, stream: str, shape: Any, components: int) -> Tuple[int, ...]:
    """A shape as a tuple of ints, or ValueError/TypeError naming the call,
    the stream and the argument."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{call}: stream {stream!r}: shape must be a tuple of ints, "
                        f"got {type(shape).__name__}")
    dims = tuple(shape)
    if not 1 <= len(dims) <= MAX_NDIM:
        raise ValueError(f"{call}: stream {stream!r}: shape must have 1..{MAX_NDIM} dimensions, "
                         f"got {len(dims)}")
    for d in dims:
        if isinstance(d, bool) or not hasattr(d, "__index__"):
            raise TypeError(f"{call}: stream {stream!r}: shape {dims!r} holds {d!r}, not an int")
        if not 1 <= int(d) <= 0xFFFFFFFF:
            raise ValueError(f"{call}: stream {stream!r}: shape {dims!r} has a dimension of {d}")
    dims = tuple(int(d) for d in dims)
    total = math.prod(dims)
    if components > 0 and total % components:
        raise ValueError(f"{call}: stream {stream!r}: shape {dims!r} holds {total} values, not a "
                         f"multiple of components={components}")
    return dims


def frame_shape(spec: Optional[Dict[str, Any]], elem_count: int) -> Optional[Tuple[int, ...]]:
    """The shape of one frame's array of a stream: the schema's ``shape``
    when the frame's ``elem_count * components`` fits it, else None (the
    caller shapes it flat).  The helper the recorder and other tools call."""
    if not spec or not spec.get("shape"):
        return None
    shape = tuple(spec["shape"])
    comps = max(int(spec.get("components", 1)), 1)
    return shape if math.prod(shape) == elem_count * comps else None
