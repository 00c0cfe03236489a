"""Which streams are images, and of what shape: the one place that decides
it for ``shmx record`` (MCAP), ``shmx foxglove`` and ``shmx play``.

A stream is an image in a frame when ``image_geometry`` returns its
(height, width, channels).  Today the shape comes from streams in the same
frame named ``<stream>.width``/``<stream>.height`` (then plain ``width``/
``height``, the convention of ``shmx snapshot``) and an optional
``<stream>.channels``/``channels``; a schema-level ``shape`` entry of the
stream spec, when a producer provides one, takes precedence.  New sources
of shape go into ``image_geometry`` and every user follows.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, NamedTuple, Optional, Sequence

from .._common import DTYPE_FORMATS
from .._shmx import lib

# dtype code -> struct format of one value (for reading width/height): the
# integer and float types.
_SCALAR_FMT: Dict[int, str] = {code: fmt for code, (_, fmt) in DTYPE_FORMATS.items()
                               if code not in (lib.SHMX_DT_BOOL, lib.SHMX_DT_F16, lib.SHMX_DT_BF16)}
# dtypes an image can be made of: code -> bytes per channel value.
_PIXEL_TYPES = {lib.SHMX_DT_U8: 1, lib.SHMX_DT_U16: 2, lib.SHMX_DT_F32: 4}


class ImageGeometry(NamedTuple):
    height: int
    width: int
    channels: int
    bytes_per_value: int  # 1 (8-bit), 2 (16-bit), 4 (float32)
    encoding: str         # a foxglove.RawImage / sensor_msgs encoding: rgb8, mono16...

    @property
    def step(self) -> int:
        return self.width * self.channels * self.bytes_per_value


def scalar_value(frame: Dict[str, Any], specs: Dict[str, Dict[str, Any]], name: str) -> Optional[int]:
    """The first value of stream ``name`` in ``frame`` as an int, if any."""
    entry, spec = frame.get(name), specs.get(name)
    if entry is None or spec is None:
        return None
    fmt = _SCALAR_FMT.get(spec["dtype_code"])
    data = entry["data"]
    if fmt is None or struct.calcsize("<" + fmt) > len(data):
        return None
    value = struct.unpack_from("<" + fmt, data)[0]
    try:
        return int(value)
    except (ValueError, OverflowError):
        return None


def encoding_for(channels: int, bytes_per_value: int, bgr: bool = False) -> Optional[str]:
    """The image encoding of a pixel layout, None when there is no standard one."""
    if bytes_per_value == 1:
        return {1: "mono8", 3: "bgr8" if bgr else "rgb8", 4: "bgra8" if bgr else "rgba8"}.get(channels)
    if bytes_per_value == 2 and channels == 1:
        return "mono16"
    if bytes_per_value == 4 and channels == 1:
        return "32FC1"
    return None


def _first(frame: Dict[str, Any], specs: Dict[str, Dict[str, Any]], names: Sequence[str]) -> Optional[int]:
    for n in names:
        v = scalar_value(frame, specs, n)
        if v is not None:
            return v
    return None


def image_geometry(name: str, spec: Dict[str, Any], frame: Dict[str, Any],
                   specs: Dict[str, Dict[str, Any]]) -> Optional[ImageGeometry]:
    """(height, width, channels...) of stream ``name`` in ``frame``, or None
    when it is not an image there (no shape known, or sizes that do not fit)."""
    value_bytes = _PIXEL_TYPES.get(spec.get("dtype_code", -1))
    entry = frame.get(name)
    if value_bytes is None or entry is None:
        return None
    comps = max(int(spec.get("components", 1)), 1)
    if spec.get("bytes_per_elem") != comps * value_bytes:
        return None  # opaque elements, not pixels
    nbytes = int(entry["bytes"])
    shape = spec.get("shape")
    if shape:  # a schema-level shape (H, W[, C]) wins
        dims = [int(d) for d in shape]
        h, w = dims[0], dims[1]
        c = dims[2] if len(dims) > 2 else comps
    else:
        if name in ("width", "height", "channels") or name.endswith((".width", ".height", ".channels")):
            return None
        h = _first(frame, specs, (f"{name}.height", "height")) or 0
        w = _first(frame, specs, (f"{name}.width", "width")) or 0
        if h <= 0 or w <= 0:
            return None
        c = comps
        if comps == 1:
            c = _first(frame, specs, (f"{name}.channels", "channels")) or 0
            if c <= 0:
                per_pixel, rest = divmod(nbytes, h * w * value_bytes)
                if rest:
                    return None
                c = per_pixel
    if c <= 0 or h * w * c * value_bytes != nbytes:
        return None
    bgr = "bgr" in name.lower() or b"bgr" in bytes(spec.get("extra") or b"").lower()
    enc = encoding_for(c, value_bytes, bgr)
    if enc is None:
        return None
    return ImageGeometry(h, w, c, value_bytes, enc)


# encoding -> (channels, bytes per value, dtype code) for images read from
# other tools' files.
ENCODINGS: Dict[str, tuple] = {
    "mono8": (1, 1, lib.SHMX_DT_U8), "8UC1": (1, 1, lib.SHMX_DT_U8),
    "rgb8": (3, 1, lib.SHMX_DT_U8), "bgr8": (3, 1, lib.SHMX_DT_U8), "8UC3": (3, 1, lib.SHMX_DT_U8),
    "rgba8": (4, 1, lib.SHMX_DT_U8), "bgra8": (4, 1, lib.SHMX_DT_U8), "8UC4": (4, 1, lib.SHMX_DT_U8),
    "mono16": (1, 2, lib.SHMX_DT_U16), "16UC1": (1, 2, lib.SHMX_DT_U16),
    "32FC1": (1, 4, lib.SHMX_DT_F32),
    "bayer_rggb8": (1, 1, lib.SHMX_DT_U8), "bayer_bggr8": (1, 1, lib.SHMX_DT_U8),
    "bayer_gbrg8": (1, 1, lib.SHMX_DT_U8), "bayer_grbg8": (1, 1, lib.SHMX_DT_U8),
    "uyvy": (2, 1, lib.SHMX_DT_U8), "yuyv": (2, 1, lib.SHMX_DT_U8), "yuv422": (2, 1, lib.SHMX_DT_U8),
    "yuv422_yuy2": (2, 1, lib.SHMX_DT_U8),
}

__all__ = ["ImageGeometry", "image_geometry", "scalar_value", "encoding_for", "ENCODINGS"]
