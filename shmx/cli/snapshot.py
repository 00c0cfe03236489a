"""``shmx snapshot``: the latest frame of one stream as a PNG image or a
numpy ``.npy`` file, written with the standard library only (numpy is not
needed).  The frame is copied with ``Inspector.copy_latest()``: read-only,
no reader slot, nothing in the region changes."""
from __future__ import annotations

import argparse
import struct
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .util import (EXIT_OK, EXIT_USAGE, CliError, open_inspector, shm_dir_of, to_json)
from .._common import DTYPE_FORMATS
from .._shape import frame_shape

_DTYPES = DTYPE_FORMATS  # dtype code -> (.npy descr, struct format of one value)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # gray, gray+alpha, RGB, RGBA
_CHANNEL_NAMES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


# ------------------------------------------------------------------ writers
def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + tag + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))


def encode_png(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """An 8-bit PNG of ``height`` rows of ``width`` pixels of ``channels``
    bytes each (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), rows top to bottom."""
    if channels not in _PNG_COLOR_TYPE:
        raise ValueError(f"PNG needs 1 to 4 channels, not {channels}")
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"{len(pixels)} bytes is not {height}x{width}x{channels}")
    # Each scanline starts with its filter type; 0 (none) keeps this simple.
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOR_TYPE[channels], 0, 0, 0)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
            + _png_chunk(b"IEND", b""))


def encode_npy(descr: str, shape: Tuple[int, ...], data: bytes) -> bytes:
    """A version 1.0 ``.npy`` file: magic, header dict padded so the data
    starts on a 64-byte boundary, then the C-order data."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}"
    pad = (-(10 + len(header) + 1)) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data


# -------------------------------------------------------------------- shape
def parse_shape(text: str) -> Tuple[int, ...]:
    """'480x640x3' -> (480, 640, 3); 'HxW' -> (H, W)."""
    try:
        dims = tuple(int(p) for p in text.lower().replace("*", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or any(d <= 0 for d in dims):
        raise CliError(f"--shape must look like HxWxC or HxW with positive numbers, not {text!r}",
                       EXIT_USAGE)
    return dims


def _scalar(frame: Dict[str, Any], specs: Dict[str, Dict[str, Any]], name: str) -> Optional[int]:
    """The first value of a stream such as ``width``, when present."""
    entry, spec = frame.get(name), specs.get(name)
    if entry is None or spec is None or not entry["bytes"]:
        return None
    fmt = _DTYPES.get(spec["dtype_code"], (None, None))[1]
    if fmt is None or struct.calcsize("<" + fmt) > len(entry["data"]):
        return None
    value = struct.unpack_from("<" + fmt, entry["data"])[0]
    try:
        return int(value)
    except (ValueError, OverflowError):
        return None


def image_shape(frame: Dict[str, Any], specs: Dict[str, Dict[str, Any]], nbytes: int,
                shape_arg: Optional[str], bytes_per_value: int,
                schema_shape: Optional[Tuple[int, ...]] = None) -> Optional[Tuple[int, int, int]]:
    """(H, W, C) from --shape, else the stream's schema ``shape`` (2 or 3
    dimensions, when the frame fits it), else the width/height(/channels)
    streams (the convention for streams without a shape); None when
    nothing tells the shape."""
    if shape_arg:
        dims = parse_shape(shape_arg)
        h, w = dims[0], dims[1]
        c = dims[2] if len(dims) == 3 else 1
        source = "--shape"
    elif schema_shape is not None and len(schema_shape) in (2, 3):
        h, w = schema_shape[0], schema_shape[1]
        c = schema_shape[2] if len(schema_shape) == 3 else 1
        source = "the stream's schema shape"
    else:
        sh, sw = _scalar(frame, specs, "height"), _scalar(frame, specs, "width")
        if sh is None or sw is None or sh <= 0 or sw <= 0:
            return None
        h, w = sh, sw
        c = _scalar(frame, specs, "channels") or 0
        source = "the width/height streams"
        if c <= 0:
            per_pixel = nbytes // (h * w * bytes_per_value) if h * w else 0
            if per_pixel * h * w * bytes_per_value != nbytes:
                raise CliError(f"the stream has {nbytes} bytes, not a whole number of "
                               f"{h}x{w} pixels (from {source})")
            c = per_pixel
    if h * w * c * bytes_per_value != nbytes:
        raise CliError(f"shape {h}x{w}x{c} from {source} needs {h * w * c * bytes_per_value} bytes, "
                       f"the stream has {nbytes}")
    return h, w, c


# --------------------------------------------------------------- subcommand
def _pick_stream(frame: Dict[str, Any], specs: Dict[str, Dict[str, Any]], wanted: Optional[str],
                 region: str, png: bool) -> str:
    names = [k for k in frame if k != "__metadata__"]
    if wanted is not None:
        if wanted not in frame:
            raise CliError(f"region '{region}' has no stream {wanted!r} in its latest frame "
                           f"(streams: {', '.join(names) or 'none'})")
        return wanted
    # Without --stream: the one stream that can be what was asked for.
    def eight_bit(k: str) -> bool:
        return k in specs and specs[k]["bytes_per_elem"] == max(specs[k]["components"], 1)

    multi = [k for k in names if frame[k]["elem_count"] > 1 and (eight_bit(k) or not png)]
    if len(multi) == 1:
        return multi[0]
    if len(names) == 1:
        return names[0]
    raise CliError(f"which stream? pass --stream (streams: {', '.join(names) or 'none'})", EXIT_USAGE)


def cmd_snapshot(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    npy = args.npy or args.output.lower().endswith(".npy")
    if args.shape:
        parse_shape(args.shape)  # a usage error before touching the region
    insp = open_inspector(args.name, shm_dir)
    try:
        specs = {s["name"]: s for s in insp.get_streams_info()}
        frame = insp.copy_latest()
        if frame is None:
            raise CliError(f"region '{args.name}' has no frame to snapshot: {insp.last_error}")
    finally:
        insp.close()
    meta = frame["__metadata__"]
    stream = _pick_stream(frame, specs, args.stream, args.name, not npy)
    entry, spec = frame[stream], specs.get(stream)
    data: bytes = entry["data"]
    sch = frame_shape(spec, entry["elem_count"])
    info: Dict[str, Any] = {"region": args.name, "stream": stream, "frame_id": meta["frame_id"],
                            "sim_time": meta["sim_time"], "output": args.output}
    if npy:
        descr, itemsize = "|u1", 1
        shape: Tuple[int, ...] = (len(data),)
        typed = spec is None
        if spec is not None:
            descr = _DTYPES.get(spec["dtype_code"], ("|u1", "B"))[0]
            itemsize = int(descr[2:])
            comps, bpe = max(spec["components"], 1), spec["bytes_per_elem"]
            typed = bpe == comps * itemsize
            if typed and sch is not None:
                shape = sch
            elif typed:
                shape = (entry["elem_count"], comps) if comps > 1 else (entry["elem_count"],)
            else:  # elements that are not `components` values of the dtype
                descr, itemsize, shape = "|u1", 1, (entry["elem_count"], bpe)
        if args.shape:
            img = image_shape(frame, specs, len(data), args.shape, itemsize)
        else:
            # An image-sized stream gets the image's shape; anything else
            # keeps the schema's (elements x components).
            try:
                img = image_shape(frame, specs, len(data), None, itemsize) if typed and sch is None else None
            except CliError:
                img = None
        if img is not None:
            shape = img if img[2] > 1 else img[:2]
        with open(args.output, "wb") as f:
            f.write(encode_npy(descr, shape, data))
        info.update(format="npy", dtype=descr, shape=list(shape))
        summary = f"shape {'x'.join(map(str, shape))} {descr}"
    else:
        if spec is not None and spec["bytes_per_elem"] != max(spec["components"], 1):
            raise CliError(f"stream {stream!r} is {spec['dtype']} ({spec['bytes_per_elem']} bytes per "
                           f"element): PNG needs 8-bit values; use --npy")
        img = image_shape(frame, specs, len(data), args.shape, 1, sch)
        if img is None:
            raise CliError(f"cannot tell the image shape of {stream!r}: pass --shape HxWxC "
                           f"(or give the stream a shape, or publish streams named width and height)",
                           EXIT_USAGE)
        h, w, c = img
        if c not in _PNG_COLOR_TYPE:
            raise CliError(f"{c} channels cannot be a PNG (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA); use --npy")
        with open(args.output, "wb") as f:
            f.write(encode_png(w, h, c, data))
        info.update(format="png", width=w, height=h, channels=c)
        summary = f"{w}x{h} {_CHANNEL_NAMES[c]}"
    if args.json:
        print(to_json(info))
    else:
        print(f"wrote {args.output}: {summary}, stream '{stream}' of {args.name} "
              f"(frame {meta['frame_id']}, sim_time {meta['sim_time']:g})")
    return EXIT_OK


__all__: List[str] = ["encode_png", "encode_npy", "cmd_snapshot"]
