"""Typed numpy arrays over stream memoryviews (numpy is optional)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from ._common import DTYPE_FORMATS
from ._shape import frame_shape
from ._shmx import lib

# bfloat16 has no numpy dtype: its arrays are uint16 bit patterns (shift left
# by 16 and view as float32 to get the values).
_DTYPES = {code: descr for code, (descr, _) in DTYPE_FORMATS.items()}


def numpy_dtype(dtype_code: int) -> Any:
    """The numpy dtype of a ``DT_*`` code (bf16 -> uint16 bit patterns)."""
    import numpy as np
    return np.dtype(_DTYPES.get(dtype_code, "uint8"))


def stream_array(view: Any, elem_count: int, spec: Optional[Dict[str, Any]]) -> Any:
    """A zero-copy array over ``view`` shaped by the stream's schema: its
    ``shape`` when it has one and the frame's count fits it, else
    ``(elem_count, components)``, or ``(elem_count,)`` for one component.
    Streams whose ``bytes_per_elem`` is not ``components * itemsize`` come
    back as ``uint8`` of shape ``(elem_count, bytes_per_elem)``."""
    import numpy as np
    if spec is None:
        return np.frombuffer(view, dtype=np.uint8)
    dt = numpy_dtype(spec["dtype_code"])
    comps = max(int(spec["components"]), 1)
    bpe = int(spec["bytes_per_elem"])
    if elem_count * bpe != len(view):
        # A shmx 1.0.1 producer checks nothing at publish: such a frame is
        # read as it is, but it has no array shape.
        from .errors import CorruptRegionError
        raise CorruptRegionError(
            f"as_arrays: stream {spec.get('name', spec.get('id'))!r} has elem_count {elem_count} x "
            f"{bpe} bytes_per_elem = {elem_count * bpe} bytes, but the frame holds {len(view)}",
            lib.SHMX_ECORRUPT)
    if bpe == dt.itemsize * comps:
        arr = np.frombuffer(view, dtype=dt, count=elem_count * comps)
        shape = frame_shape(spec, elem_count)
        if shape is not None:
            return arr.reshape(shape)
        return arr if comps == 1 else arr.reshape(elem_count, comps)
    return np.frombuffer(view, dtype=np.uint8, count=elem_count * bpe).reshape(elem_count, bpe)
