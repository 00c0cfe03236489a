"""MCAP recordings: ``shmx record NAME... -o run.mcap`` and ``shmx play run.mcap``.

Written with the ``mcap`` package (extra ``shmx[mcap]``), imported only
when one of these commands runs.  The layout of a file (docs/mcap.md):

* per region, a metadata record ``shmx.region`` holding the region's full
  schema as JSON (config, streams with ids/dtypes/components/layouts/extra
  bytes, the static directory's raw bytes and hash), so ``shmx play``
  rebuilds the region byte for byte;
* per region a channel ``/<region>/_frame`` (``shmx.Frame``: frame id,
  sim_time, dropped count, the frame's stream ids and element counts in
  order), and per stream ``/<region>/<stream>``: ``foxglove.RawImage`` for
  image streams (see ``shmx._image``), ``shmx.Stream<T>`` otherwise, all
  protobuf, so Foxglove shows images and plots numbers without plugins;
* every message of one frame carries the same ``sequence`` (the frame's
  index in the file), ``log_time`` = when the recorder received it (Unix
  ns), ``publish_time`` = the producer's ``sim_time`` in ns (when it is a
  plausible time, else the log time);
* a metadata record ``shmx.end`` per region at the end: frames, dropped.

``shmx play`` reads these files, and also other tools' files: channels of
``foxglove.RawImage`` (protobuf or JSON), ``sensor_msgs/msg/Image`` or
``foxglove_msgs/msg/RawImage`` (ros2msg/CDR) become pixel streams with
width/height; any other channel becomes a stream of its raw message bytes.
Reading is bounded: no read is larger than the file, no chunk larger than
``MAX_CHUNK_BYTES``; a truncated file plays up to the cut with a warning,
a damaged one is refused with the reason.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import queue
import struct
import sys
import threading
import time
import zlib
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import _protowire as pw
from ._cdr import IMAGE_TYPES as CDR_IMAGE_TYPES, CdrError, decode_image as decode_cdr_image
from ._cliutil import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, Progress, Stop, check_name,
                       code_for_status, finishing, fmt_bytes, shm_dir_of, stop_on_sigterm, to_json)
from ._common import create_stream_spec
from ._image import ENCODINGS, ImageGeometry, image_geometry
from ._shmx import ffi, lib
from .client import Client, connect
from .errors import ShmxError
from .server import Server

MCAP_MAGIC = b"\x89MCAP0\r\n"
FORMAT = "shmx-mcap"
FORMAT_VERSION = "1"
COMPRESSIONS = ("zstd", "lz4", "none")
MAX_CHUNK_BYTES = 1 << 30        # a chunk that claims more is refused
SMALL_VALUES = 1024              # 8/16-bit streams up to this many values also get plottable `values`
FLUSH_NS = 1_000_000_000         # a chunk is closed at least this often
QUEUE_BYTES = 256 << 20          # frames encoded but not yet written, at most
PROFILE = ""                     # not a ROS profile: our channels are protobuf

_ITEMSIZE = {lib.SHMX_DT_BOOL: 1, lib.SHMX_DT_I8: 1, lib.SHMX_DT_U8: 1, lib.SHMX_DT_I16: 2,
             lib.SHMX_DT_U16: 2, lib.SHMX_DT_I32: 4, lib.SHMX_DT_U32: 4, lib.SHMX_DT_I64: 8,
             lib.SHMX_DT_U64: 8, lib.SHMX_DT_F16: 2, lib.SHMX_DT_BF16: 2, lib.SHMX_DT_F32: 4,
             lib.SHMX_DT_F64: 8}


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
    if vt is None or spec["bytes_per_elem"] != comps * _ITEMSIZE[spec["dtype_code"]]:
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


# ----------------------------------------------------------------- schema
def fnv1a64(data: bytes) -> int:
    """The static directory hash of the wire format (shmx 1.0.1's seed)."""
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def _static_hash_of(client: Client) -> Tuple[int, int, int]:
    info = ffi.new("shmx_header_info *")
    info.struct_size = ffi.sizeof("shmx_header_info")
    st = lib.shmx_client_header_info(client._c, info)
    if st != 0:
        raise CliError(f"cannot read the header of '{client.name}': status {st}")
    return int(info.static_hash), int(info.static_bytes_used), int(info.static_gen)


def static_bytes(client: Client) -> Optional[bytes]:
    """The region's static directory, raw, as the producer wrote it (stream
    TLVs and any ``write_static_append`` bytes).  Copied from the mapping
    and accepted only when it matches the header's ``static_hash`` (the
    producer's FNV-1a of exactly those bytes); None if it never does."""
    mv = getattr(client, "_mv", None)
    if mv is None:
        return None
    for _ in range(16):
        want, used, gen = _static_hash_of(client)
        # GlobalHeader.static_offset (@48), as server.py reads frame_bytes_cap (@72).
        offset = struct.unpack_from("<I", mv, 48)[0]
        if offset + used > len(mv):
            return None
        data = bytes(mv[offset:offset + used])
        if fnv1a64(data) == want and _static_hash_of(client)[2] == gen:
            return data
    return None


def region_schema(client: Client, name: str) -> Dict[str, Any]:
    """What the file keeps about a region so that it can be rebuilt."""
    h = client.get_header_info()
    streams = client.get_streams_info()
    raw = static_bytes(client)
    return {
        "region": name, "session_id": h["session_id"], "slots": h["slots"],
        "reader_slots": h["reader_slots"], "static_bytes_cap": h["static_bytes_cap"],
        "frame_bytes_cap": h["frame_bytes_cap"], "control_per_reader": h["control_per_reader"],
        "legacy": not h["extended"], "start_unix_ns": time.time_ns(),
        "streams": [{"id": s["id"], "name": s["name"], "dtype": s["dtype"], "dtype_code": s["dtype_code"],
                     "components": s["components"],
                     "layout_code": lib.SHMX_LAYOUT_AOS_VECTOR if s["layout"] == "vector"
                     else lib.SHMX_LAYOUT_SOA_SCALAR,
                     "bytes_per_elem": s["bytes_per_elem"],
                     "extra": bytes(s.get("extra") or b"").hex()} for s in streams],
        "static_hex": raw.hex() if raw is not None else None,
        "static_hash": fnv1a64(raw) if raw is not None else None,
    }


# ---------------------------------------------------------------- writing
class _Region:
    """A region being recorded: its client, schema and counters."""

    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        self.schema = region_schema(client, name)
        self.specs = {s["name"]: s for s in client.get_streams_info()}
        self.ids = {s["name"]: s["id"] for s in self.specs.values()}
        self.session = client.session_id
        self.legacy = self.schema["legacy"]
        self.frames = 0
        self.dropped = 0
        self.last_id = 0
        self.done: Optional[str] = None
        self.unknown: Dict[str, int] = {}
        self.kinds: Dict[str, str] = {}    # stream -> "image" | "stream", fixed at first sight


class McapRecorder:
    """Writes frames of several regions into MCAP files, rolling over to
    numbered files (``run_000.mcap``, ``run_001.mcap``...) when a part
    passes ``split_bytes`` or ``split_seconds``."""

    def __init__(self, path: str, regions: Sequence[_Region], compression: str = "none",
                 chunk_size: int = 4 << 20, split_bytes: Optional[int] = None,
                 split_seconds: Optional[float] = None) -> None:
        mcap = require_mcap()
        from mcap.writer import CompressionType
        self._mcap = mcap
        self.compression = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                            "none": CompressionType.NONE}[compression]
        self.path = path
        self.regions = list(regions)
        self.chunk_size = chunk_size
        self.split_bytes = split_bytes
        self.split_ns = None if split_seconds is None else int(split_seconds * 1e9)
        self.split = split_bytes is not None or split_seconds is not None
        self.files: List[str] = []
        self.bytes = 0            # message bytes, all parts
        self._writer: Any = None
        self._f: Optional[BinaryIO] = None
        self._part_bytes = 0
        self._part_start = 0
        self._part_frames: Dict[str, Tuple[int, int]] = {}
        self._channels: Dict[Tuple[str, str], Tuple[int, str, Any]] = {}
        self._schemas: Dict[str, int] = {}
        self._seq: Dict[str, int] = {}
        self._last_flush = 0
        self._done: Dict[str, List[int]] = {}      # frames, dropped written (writer thread)
        self._error: Optional[BaseException] = None
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._room = threading.Condition()
        self._queued = 0
        self._open_part(time.time_ns())  # here, so a bad path fails before any frame comes
        self._thread = threading.Thread(target=self._run, name="shmx-mcap-writer", daemon=True)
        self._thread.start()

    def part_name(self, index: int) -> str:
        if not self.split:
            return self.path
        stem, ext = os.path.splitext(self.path)
        return f"{stem}_{index:03d}{ext or '.mcap'}"

    def _open_part(self, now_ns: int) -> None:
        from mcap.writer import IndexType, Writer
        name = self.part_name(len(self.files))
        self._f = open(name, "wb")
        self.files.append(name)
        # No attachment index: we write no attachments, and an empty index
        # group would leave a summary offset pointing at nothing.
        self._writer = Writer(self._f, chunk_size=self.chunk_size, compression=self.compression,
                              index_types=IndexType.CHUNK | IndexType.MESSAGE | IndexType.METADATA)
        self._writer.start(profile=PROFILE, library=f"shmx {_shmx_version()}")
        self._channels.clear()
        self._schemas.clear()
        self._seq = {r.name: 0 for r in self.regions}
        self._part_bytes, self._part_start = 0, now_ns
        self._last_flush = now_ns
        self._part_frames = {r.name: tuple(self._done.get(r.name, (0, 0))) for r in self.regions}
        self._writer.add_metadata("shmx.recording", {
            "format": FORMAT, "version": FORMAT_VERSION, "part": str(len(self.files) - 1),
            "regions": json.dumps([r.name for r in self.regions])})
        for r in self.regions:
            self._writer.add_metadata("shmx.region", {"region": r.name, "schema": json.dumps(r.schema)})
            self._channel(r, "_frame", "frame", None)

    def _close_part(self, stopped_by: str, duration_ns: int) -> None:
        if self._writer is None:
            return
        for r in self.regions:
            f0, d0 = self._part_frames.get(r.name, (0, 0))
            f1, d1 = self._done.get(r.name, (0, 0))
            self._writer.add_metadata("shmx.end", {
                "region": r.name, "frames": str(f1 - f0), "dropped": str(d1 - d0),
                "duration_ns": str(duration_ns), "stopped_by": stopped_by})
        self._writer.finish()
        assert self._f is not None
        self._f.close()
        self._writer, self._f = None, None

    def _schema_id(self, name: str, data: bytes) -> int:
        sid = self._schemas.get(name)
        if sid is None:
            sid = self._schemas[name] = self._writer.register_schema(name, "protobuf", data)
        return sid

    def _channel(self, r: _Region, stream: str, kind: str, spec: Optional[Dict[str, Any]]) -> Tuple[int, str, Any]:
        key = (r.name, stream)
        ch = self._channels.get(key)
        if ch is not None:
            return ch
        meta = {"shmx.region": r.name, "shmx.kind": kind}
        extra: Any = None
        if kind == "frame":
            schema = self._schema_id(pw.FRAME_NAME, pw.FRAME_SCHEMA)
        elif kind == "image":
            schema = self._schema_id(pw.RAW_IMAGE_NAME, pw.RAW_IMAGE_SCHEMA)
        else:
            assert spec is not None
            extra = value_type(spec)
            schema = self._schema_id(f"shmx.{extra.name}", pw.stream_schema(extra.name, extra.proto_type))
        if spec is not None:
            meta.update({"shmx.stream_id": str(spec["id"]), "shmx.dtype": spec["dtype"],
                         "shmx.components": str(spec["components"]),
                         "shmx.bytes_per_elem": str(spec["bytes_per_elem"])})
        cid = self._writer.register_channel(topic=f"/{r.name}/{stream}", message_encoding="protobuf",
                                            schema_id=schema, metadata=meta)
        ch = self._channels[key] = (cid, kind, extra)
        return ch

    def write_frame(self, r: _Region, frame: Dict[str, Any], log_ns: int) -> None:
        """Write one frame of region ``r``.  Its messages are encoded here
        (the only copy out of shared memory: the frame's views are not kept)
        and handed to the writer thread, which does the MCAP writing and the
        file I/O while this thread reads the next frame; a queue of up to
        ``QUEUE_BYTES`` stretches the ring when the disk is slow for a while."""
        if self._error is not None:
            raise self._error
        meta = frame["__metadata__"]
        fid, sim_time = meta["frame_id"], meta["sim_time"]
        pub = publish_ns(sim_time, log_ns)
        dropped = meta.get("dropped", 0)
        if r.legacy:
            dropped = max(fid - r.last_id - 1, 0) if r.last_id else 0
        r.last_id = fid
        parts = []
        for key, entry in frame.items():
            if key == "__metadata__":
                continue
            if key not in r.ids:
                r.unknown[key] = r.unknown.get(key, 0) + 1
                continue
            parts.append((key, entry))
        head = encode_frame(fid, sim_time, dropped, [r.ids[k] for k, _ in parts],
                            [e["elem_count"] for _, e in parts])
        msgs: List[Tuple[str, bytes]] = [("_frame", head)]
        size = len(head)
        for key, entry in parts:
            spec = r.specs[key]
            data = memoryview(entry["data"]).cast("B")
            geo = image_geometry(key, spec, frame, r.specs)
            kind = r.kinds.setdefault(key, "image" if geo else "stream")  # fixed at first sight
            if kind == "image":
                if geo is None:  # the shape no longer fits: keep the bytes, as one row
                    c = max(spec["components"], 1)
                    vb = spec["bytes_per_elem"] // c or 1
                    geo = ImageGeometry(1, data.nbytes // (c * vb), c, vb, "mono8" if c == 1 else "rgb8")
                msg = b"".join((pw.raw_image_head(pub, r.name, geo.width, geo.height, geo.encoding,
                                                  geo.step, data.nbytes), data))
            else:
                msg = encode_stream(value_type(spec), fid, sim_time, entry["elem_count"], spec["components"],
                                    data)
            msgs.append((key, msg))
            size += len(msg)
        r.frames += 1
        r.dropped += dropped
        self.bytes += size
        with self._room:
            while self._queued > 0 and self._queued + size > QUEUE_BYTES and self._error is None:
                self._room.wait(0.5)
            self._queued += size
        self._queue.put((r, log_ns, pub, dropped, msgs, size))

    def _run(self) -> None:
        """The writer thread: every MCAP call happens here."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if self._error is None:
                    self._commit(*item)
            except BaseException as exc:  # disk full...: reported by the reading thread
                self._error = exc
            finally:
                with self._room:
                    self._queued -= item[5]
                    self._room.notify_all()

    def _commit(self, r: _Region, log_ns: int, pub: int, dropped: int, msgs: List[Tuple[str, bytes]],
                size: int) -> None:
        if self._writer is None:
            self._open_part(log_ns)
        elif self.split and ((self.split_bytes is not None and self._part_bytes >= self.split_bytes)
                             or (self.split_ns is not None and log_ns - self._part_start >= self.split_ns)):
            self._close_part("split", log_ns - self._part_start)
            self._open_part(log_ns)
        w = self._writer
        seq = self._seq[r.name] = (self._seq[r.name] + 1) & 0xFFFFFFFF
        for key, msg in msgs:
            cid = self._channels.get((r.name, key))
            if cid is None:
                cid = self._channel(r, key, "frame" if key == "_frame" else r.kinds[key],
                                    None if key == "_frame" else r.specs[key])[0]
            else:
                cid = cid[0]
            w.add_message(channel_id=cid, log_time=log_ns, data=msg, publish_time=pub, sequence=seq)
        done = self._done.setdefault(r.name, [0, 0])
        done[0] += 1
        done[1] += dropped
        self._part_bytes += size
        if log_ns - self._last_flush >= FLUSH_NS and hasattr(w, "flush"):
            # Close the chunk at least once a second: a recorder that is
            # killed loses at most that much (a chunk lives in memory until
            # written), and a reader following the file sees it.
            w.flush()
            self._last_flush = log_ns

    def finish(self, stopped_by: str, duration_ns: int) -> None:
        """Write what is queued, then the last part's summary."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._writer is None:  # nothing came: still leave a valid (empty) file
            self._open_part(time.time_ns())
        self._close_part(stopped_by, duration_ns if len(self.files) == 1
                         else time.time_ns() - self._part_start)


def _shmx_version() -> str:
    try:
        return ffi.string(lib.shmx_version()).decode()
    except Exception:  # pragma: no cover
        return "?"


def parse_size(text: str) -> int:
    """'100M' -> 104857600 (K, M, G: powers of 1024; plain bytes otherwise)."""
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = 1
    if t and t[-1] in "KMG":
        mult = 1 << {"K": 10, "M": 20, "G": 30}[t[-1]]
        t = t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if not v >= 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 byte: {text!r}")
    return int(v)


def cmd_record(args: argparse.Namespace) -> int:
    """``shmx record NAME... -o FILE.mcap``."""
    require_mcap()
    shm_dir = shm_dir_of(args)
    names: List[str] = list(args.names)
    for n in names:
        check_name(n)
    if len(set(names)) != len(names):
        raise CliError("a region is named twice", EXIT_USAGE)
    stop_on_sigterm()
    clients: List[Client] = []
    try:
        for n in names:
            try:
                clients.append(connect(n, timeout=args.wait, shm_dir=shm_dir))
            except ShmxError as exc:
                raise CliError(str(exc), code_for_status(exc.status)) from None
        regions = [_Region(n, c) for n, c in zip(names, clients)]
        for r in regions:
            if r.legacy:
                print(f"shmx record: '{r.name}' is a shmx 1.0.1 region (no in-order reads): recording "
                      f"the newest frame each time; skipped frames are counted as dropped", file=sys.stderr)
        progress = Progress(enabled=not args.quiet)
        try:
            return _record(regions, args, progress)
        finally:
            progress.done()
    finally:
        for c in clients:
            c.close()


def _next_frame(r: _Region, timeout: float) -> Optional[Dict[str, Any]]:
    c = r.client
    if r.legacy:
        return c.wait_frame(timeout) if timeout > 0 else (
            c.get_latest_frame() if c.get_header_info()["frame_seq"] != r.last_id else None)
    return c.wait_next(timeout) if timeout > 0 else c.read_next()


def _record(regions: List[_Region], args: argparse.Namespace, progress: Progress) -> int:
    rec = McapRecorder(args.output, regions, compression=args.compression,
                       chunk_size=args.chunk_size, split_bytes=args.split_size,
                       split_seconds=args.split_duration)
    t0 = time.monotonic_ns()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    stopped_by = "end"
    turn = 0
    try:
        while True:
            live = [r for r in regions if r.done is None]
            if not live:
                stopped_by = regions[0].done or "end" if len(regions) == 1 else "every region ended"
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stopped_by = f"{args.seconds:g} s"
                break
            got = False
            for r in live:  # take what is there from every region, without waiting
                frame = _next_frame(r, 0.0)
                if frame is not None:
                    got = True
                    _take(rec, r, frame, args)
            if not got:
                # Sleep on one region at a time (a short slice when several).
                r = live[turn % len(live)]
                turn += 1
                budget = 0.25 if len(live) == 1 else 0.005
                if deadline is not None:
                    budget = max(min(budget, deadline - now), 0.0)
                frame = _next_frame(r, budget)
                if frame is not None:
                    _take(rec, r, frame, args)
                elif r.client.server_alive() is False:
                    r.done = "the server went away"
            elapsed = max((time.monotonic_ns() - t0) / 1e9, 1e-9)
            frames = sum(r.frames for r in regions)
            progress.update(f"recording {', '.join(r.name for r in regions)} -> {args.output}: "
                            f"{frames} frames, {fmt_bytes(rec.bytes)}, {frames / elapsed:.1f} fps, "
                            f"dropped {sum(r.dropped for r in regions)}")
    except (KeyboardInterrupt, Stop):
        stopped_by = "interrupted"
    finishing()
    duration = time.monotonic_ns() - t0
    rec.finish(stopped_by, duration)
    progress.done()
    for r in regions:
        for key, n in r.unknown.items():
            print(f"shmx record: stream {key!r} of {r.name} is not in the schema the recording started "
                  f"with; left out of {n} frames", file=sys.stderr)
    frames = sum(r.frames for r in regions)
    dropped = sum(r.dropped for r in regions)
    size = sum(os.path.getsize(p) for p in rec.files)
    summary: Dict[str, Any] = {
        "region": regions[0].name if len(regions) == 1 else None,
        "regions": {r.name: {"frames": r.frames, "dropped": r.dropped} for r in regions},
        "output": args.output, "files": rec.files, "format": "mcap", "compression": args.compression,
        "frames": frames, "dropped": dropped, "bytes": size, "seconds": round(duration / 1e9, 3),
        "stopped_by": stopped_by}
    if args.json:
        print(to_json(summary))
    else:
        where = args.output if len(rec.files) == 1 else f"{len(rec.files)} files {rec.files[0]}..{rec.files[-1]}"
        per = "" if len(regions) == 1 else " (" + ", ".join(f"{r.name}: {r.frames}" for r in regions) + ")"
        print(f"recorded {frames} frames{per} ({fmt_bytes(size)}) from {', '.join(r.name for r in regions)} "
              f"to {where} in {duration / 1e9:.2f} s; {dropped} dropped; stopped: {stopped_by}")
    if frames == 0:
        print("shmx record: no frame was recorded", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _take(rec: McapRecorder, r: _Region, frame: Dict[str, Any], args: argparse.Namespace) -> None:
    if r.client.session_id != r.session:
        r.done = "the server was replaced"
        return
    rec.write_frame(r, frame, time.time_ns())
    if args.frames is not None and r.frames >= args.frames:
        r.done = f"{args.frames} frames"


# ---------------------------------------------------------------- reading
class McapError(CliError):
    """A file that is not a readable MCAP file (the message says why)."""


class _BoundedFile:
    """A file whose reads never ask for more than what is left in it, so a
    hostile length field cannot make a huge allocation (a buffered read of
    n bytes allocates n first).  Deliberately not an io.RawIOBase: the
    mcap reader would wrap that in a BufferedReader, whose read(n) does."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        n = left if n is None or n < 0 else min(n, left)
        data = self.f.read(n) if n > 0 else b""
        self.pos += len(data)
        return data


class _Truncated(Exception):
    pass


def _decompress(chunk: Any) -> bytes:
    size = int(chunk.uncompressed_size)
    if size > MAX_CHUNK_BYTES:
        raise McapError(f"a chunk claims {size} uncompressed bytes (more than the "
                        f"{MAX_CHUNK_BYTES >> 20} MiB this reader accepts)")
    comp = chunk.compression
    if comp == "":
        data = bytes(chunk.data)
    elif comp == "zstd":
        import zstandard
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(chunk.data)) as rd:
                data = rd.read(size + 1)  # grows with the real output, capped
        except zstandard.ZstdError as exc:
            raise McapError(f"a zstd chunk does not decompress: {exc}") from None
    elif comp == "lz4":
        import lz4.frame
        try:
            data = lz4.frame.LZ4FrameDecompressor().decompress(bytes(chunk.data), max_length=size + 1)
        except RuntimeError as exc:
            raise McapError(f"an lz4 chunk does not decompress: {exc}") from None
    else:
        raise McapError(f"unsupported chunk compression {comp!r} (zstd, lz4 or none)")
    if len(data) != size:
        raise McapError(f"a chunk holds {len(data)} bytes once decompressed, its header says {size}")
    if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
        raise McapError("a chunk fails its CRC check (the file is damaged)")
    return data


def iter_records(path: str, warn: Optional[List[str]] = None) -> Iterator[Any]:
    """Schema, Channel, Message and Metadata records of an MCAP file, in file
    order.  A file cut short ends the iteration (with a note in ``warn``); a
    damaged one raises McapError."""
    require_mcap()
    from mcap.records import Channel, Chunk, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader, breakup_chunk
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CliError(f"no such recording '{path}'") from None
    except IsADirectoryError:
        raise CliError(f"'{path}' is a directory, not a recording") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        bounded = _BoundedFile(f, size)
        reader = StreamReader(bounded, record_size_limit=max(size, 1),  # type: ignore[arg-type]
                              emit_chunks=True)
        it = reader.records
        while True:
            try:
                rec = next(it)
                if isinstance(rec, Chunk):
                    data = _decompress(rec)
                    inner = breakup_chunk(Chunk(compression="", data=data, message_start_time=0,
                                                message_end_time=0, uncompressed_crc=0,
                                                uncompressed_size=len(data)))
                else:
                    inner = [rec]
            except StopIteration:
                return
            except Exception as exc:  # hostile input can make the reader raise anything
                cut = bounded.pos >= size
                name = type(exc).__name__
                if cut and (isinstance(exc, McapError) or name in ("EndOfFile", "error", "EOFError")):
                    # The last record (often a chunk) runs past the end: a
                    # recorder that was killed.  What came before is good.
                    if warn is not None:
                        warn.append(f"'{path}' ends in the middle of a record (recording cut short)")
                    return
                if isinstance(exc, McapError):  # from _decompress: say which file
                    raise McapError(f"'{path}' is a damaged MCAP file: {exc}") from None
                detail = str(exc) or name
                if name == "InvalidMagic":
                    raise McapError(f"'{path}' is not an MCAP file (bad magic)") from None
                if name == "RecordLengthLimitExceeded":
                    detail = f"a record claims more bytes than the {size}-byte file holds"
                raise McapError(f"'{path}' is a damaged MCAP file: {detail}") from None
            for r in inner:
                if isinstance(r, (Schema, Channel, Message, Metadata)):
                    yield r


def is_mcap(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == MCAP_MAGIC
    except OSError:
        return False


# --------------------------------------------------------- playback plans
class PlayFrame(NamedTuple):
    region: int
    frame_id: int
    sim_time: float
    t_ns: int
    streams: List[Tuple[int, int, bytes]]  # (stream id, elem_count, data)


class _ForeignChannel(NamedTuple):
    kind: str          # "image-proto", "image-json", "image-cdr", "bytes"
    type_name: str
    stream_ids: Tuple[int, ...]  # pixels, width, height, channels | bytes


def _image_dict_from(kind: str, type_name: str, data: bytes) -> Dict[str, Any]:
    if kind == "image-proto":
        return pw.decode_raw_image(data)
    if kind == "image-cdr":
        return decode_cdr_image(type_name, data)
    d = json.loads(bytes(data))
    if not isinstance(d, dict):
        raise ValueError("a JSON RawImage must be an object")
    ts = d.get("timestamp") or {}
    ns = int(ts.get("sec", 0)) * 1_000_000_000 + int(ts.get("nsec", 0)) if isinstance(ts, dict) else 0
    return {"timestamp_ns": ns, "width": int(d.get("width", 0)), "height": int(d.get("height", 0)),
            "encoding": str(d.get("encoding", "")), "step": int(d.get("step", 0)),
            "data": memoryview(base64.b64decode(d.get("data", ""), validate=True))}


def image_pixels(img: Dict[str, Any], where: str) -> Tuple[bytes, int, int, int]:
    """(tight little-endian pixels, width, height, channels) of a decoded
    image message, rows unpadded; ValueError naming ``where`` otherwise."""
    enc = str(img["encoding"])
    w, h, step = int(img["width"]), int(img["height"]), int(img["step"])
    data = img["data"]
    if enc not in ENCODINGS:
        raise ValueError(f"{where}: unsupported image encoding {enc!r}")
    c, vb, _dt = ENCODINGS[enc]
    row = w * c * vb
    if step == 0:
        step = row
    if w < 0 or h < 0 or step < row or len(data) < step * h:
        raise ValueError(f"{where}: {w}x{h} {enc} with step {step} needs {step * h} bytes, "
                         f"the message has {len(data)}")
    if step == row:
        pixels = bytes(data[:row * h])
    else:
        pixels = b"".join(bytes(data[y * step:y * step + row]) for y in range(h))
    if vb > 1 and img.get("is_bigendian"):
        import array
        a = array.array("H" if vb == 2 else "f")
        a.frombytes(pixels)
        a.byteswap()
        pixels = a.tobytes()
    return pixels, w, h, c


class Plan:
    """What ``shmx play`` will do with a file: the regions to create and a
    way to iterate the frames."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.warnings: List[str] = []
        self.regions: List[Dict[str, Any]] = []   # region schemas (ours) or built (foreign)
        self.own = False
        self.frames = 0
        self.foreign: Dict[int, _ForeignChannel] = {}
        self._scan()

    # -- first pass: what is in the file, validated
    def _scan(self) -> None:
        schemas: Dict[int, Any] = {}
        channels: Dict[int, Any] = {}
        max_bytes: Dict[int, int] = {}
        counts: Dict[int, int] = {}
        region_meta: List[Dict[str, Any]] = []
        for rec in iter_records(self.path, self.warnings):
            kind = type(rec).__name__
            if kind == "Schema":
                schemas[rec.id] = rec
            elif kind == "Channel":
                channels[rec.id] = rec
            elif kind == "Metadata" and rec.name == "shmx.region":
                try:
                    region_meta.append(json.loads(rec.metadata["schema"]))
                except (KeyError, ValueError) as exc:
                    raise McapError(f"'{self.path}' has a damaged shmx.region record: {exc}") from None
            elif kind == "Message":
                if rec.channel_id not in channels:
                    raise McapError(f"'{self.path}' is a damaged MCAP file: a message on channel "
                                    f"{rec.channel_id}, which was never defined")
                counts[rec.channel_id] = counts.get(rec.channel_id, 0) + 1
                max_bytes[rec.channel_id] = max(max_bytes.get(rec.channel_id, 0), len(rec.data))
        self._channels, self._schemas = channels, schemas
        if region_meta:
            self.own = True
            self.regions = [self._check_region(m) for m in region_meta]
            self.frames = sum(n for cid, n in counts.items()
                              if channels[cid].metadata.get("shmx.kind") == "frame")
            return
        self._plan_foreign(channels, schemas, counts, max_bytes)

    def _check_region(self, m: Dict[str, Any]) -> Dict[str, Any]:
        try:
            streams = [create_stream_spec(int(s["id"]), str(s["name"]), int(s["dtype_code"]),
                                          int(s["components"]), int(s["bytes_per_elem"]),
                                          int(s.get("layout_code", 0)),
                                          bytes.fromhex(s.get("extra") or "") or None)
                       for s in m["streams"]]
            out = {"region": str(m["region"]), "streams": streams,
                   "static": bytes.fromhex(m["static_hex"]) if m.get("static_hex") else None,
                   "static_hash": m.get("static_hash")}
            for k in ("slots", "reader_slots", "static_bytes_cap", "frame_bytes_cap", "control_per_reader"):
                v = int(m[k])
                if not 0 <= v <= 0xFFFFFFFF:
                    raise ValueError(f"{k} {v} out of range")
                out[k] = v
        except (KeyError, TypeError, ValueError) as exc:
            raise McapError(f"'{self.path}' has a damaged shmx.region record: {exc}") from None
        return out

    def _plan_foreign(self, channels: Dict[int, Any], schemas: Dict[int, Any], counts: Dict[int, int],
                      max_bytes: Dict[int, int]) -> None:
        used = [cid for cid in sorted(channels) if counts.get(cid)]
        if not used:
            raise McapError(f"'{self.path}' has no messages to play")
        images = []
        for cid in used:
            ch = channels[cid]
            sc = schemas.get(ch.schema_id)
            name, enc = (sc.name if sc else ""), ch.message_encoding
            if name == pw.RAW_IMAGE_NAME and enc == "protobuf":
                images.append((cid, "image-proto", name))
            elif name == pw.RAW_IMAGE_NAME and enc == "json":
                images.append((cid, "image-json", name))
            elif name in CDR_IMAGE_TYPES and enc == "cdr":
                images.append((cid, "image-cdr", name))
        image_ids = {cid for cid, _, _ in images}
        streams: List[Dict[str, Any]] = []
        sid = 1
        cap = 0
        for cid in used:
            topic = channels[cid].topic.strip("/") or f"channel{cid}"
            if cid in image_ids:
                kind, tname = next((k, t) for c, k, t in images if c == cid)
                # Pixels' dtype and channels come from the first message (decoded in _frames).
                base = "pixels" if len(images) == 1 else topic
                names = [base, "width", "height", "channels"] if len(images) == 1 else \
                    [base, f"{base}.width", f"{base}.height", f"{base}.channels"]
                ids = tuple(range(sid, sid + 4))
                self.foreign[cid] = _ForeignChannel(kind, tname, ids)
                streams.append({"id": ids[0], "name": names[0], "pending": True})
                for i, n in zip(ids[1:], names[1:]):
                    streams.append(create_stream_spec(i, n, lib.SHMX_DT_U32, 1, 4))
                sid += 4
                cap += max_bytes[cid] + 3 * 4 + 4 * 16
            else:
                self.foreign[cid] = _ForeignChannel("bytes", "", (sid,))
                streams.append(create_stream_spec(sid, topic, lib.SHMX_DT_U8, 1, 1))
                sid += 1
                cap += max_bytes[cid] + 16
        self._foreign_streams = streams
        self.frames = sum(counts.values())
        self.regions = [{"region": os.path.basename(self.path), "streams": streams, "static": None,
                         "slots": 8, "reader_slots": 16, "static_bytes_cap": 0, "frame_bytes_cap": cap,
                         "control_per_reader": 4096}]
        self._resolve_pixel_types()

    def _resolve_pixel_types(self) -> None:
        """The dtype of each image channel's pixel stream, from its first message."""
        pending = {ch.stream_ids[0]: cid for cid, ch in self.foreign.items() if ch.kind != "bytes"}
        found: Dict[int, Tuple[int, int]] = {}
        if pending:
            for rec in iter_records(self.path):
                if type(rec).__name__ != "Message" or rec.channel_id not in self.foreign:
                    continue
                ch = self.foreign[rec.channel_id]
                if ch.kind == "bytes" or ch.stream_ids[0] in found:
                    continue
                img = self._decode_image(ch, rec)
                c, vb, dt = ENCODINGS[str(img["encoding"])]
                found[ch.stream_ids[0]] = (dt, c)
                if len(found) == len(pending):
                    break
        out = []
        for s in self._foreign_streams:
            if s.get("pending"):
                dt, c = found[s["id"]]
                vb = {lib.SHMX_DT_U8: 1, lib.SHMX_DT_U16: 2, lib.SHMX_DT_F32: 4}[dt]
                out.append(create_stream_spec(s["id"], s["name"], dt, c, c * vb))
            else:
                out.append(s)
        self.regions[0]["streams"] = out
        total = sum(len(s["name"].encode()) + 64 for s in out)
        self.regions[0]["static_bytes_cap"] = max(4096, total)

    def _decode_image(self, ch: _ForeignChannel, rec: Any) -> Dict[str, Any]:
        where = f"'{self.path}' channel {self._channels[rec.channel_id].topic!r}"
        try:
            img = _image_dict_from(ch.kind, ch.type_name, rec.data)
            if str(img["encoding"]) not in ENCODINGS:
                raise ValueError(f"unsupported image encoding {img['encoding']!r}")
        except (pw.ProtoError, CdrError, ValueError, TypeError, struct.error) as exc:
            raise McapError(f"{where}: a {ch.type_name} message does not decode: {exc}") from None
        return img

    # -- second pass: the frames
    def frames_iter(self) -> Iterator[PlayFrame]:
        if self.own:
            yield from self._own_frames()
        else:
            yield from self._foreign_frames()

    def _own_frames(self) -> Iterator[PlayFrame]:
        index = {r["region"]: i for i, r in enumerate(self.regions)}
        chans: Dict[int, Tuple[int, str, int, bool]] = {}
        pending: Dict[int, Tuple[int, float, int, List[int], List[int], Dict[int, bytes], int]] = {}
        for rec in iter_records(self.path):
            kind = type(rec).__name__
            if kind == "Channel":
                md = rec.metadata
                region = index.get(md.get("shmx.region", ""))
                if region is None:
                    continue
                try:
                    sid = int(md.get("shmx.stream_id", "0"))
                except ValueError:
                    raise McapError(f"'{self.path}': channel {rec.topic!r} has a bad shmx.stream_id") from None
                spec = next((s for s in self.regions[region]["streams"] if s["id"] == sid), None)
                raw = spec is not None and value_type(spec).values_are_raw
                chans[rec.id] = (region, md.get("shmx.kind", ""), sid, raw)
                continue
            if kind != "Message" or rec.channel_id not in chans:
                continue
            region, ckind, sid, raw = chans[rec.channel_id]
            try:
                if ckind == "frame":
                    fid, sim, _drop, ids, counts = decode_frame(rec.data)
                    if len(ids) != len(counts):
                        raise ValueError("stream_ids and elem_counts differ in length")
                    pending[region] = (fid, sim, rec.log_time, ids, counts, {}, rec.sequence)
                    data = None
                elif ckind == "image":
                    data = bytes(pw.decode_raw_image(rec.data)["data"])  # type: ignore[arg-type]
                else:
                    data = decode_stream_bytes(rec.data, raw)
            except (pw.ProtoError, ValueError, struct.error) as exc:
                raise McapError(f"'{self.path}': a message on {ckind or 'a'} channel does not decode: "
                                f"{exc}") from None
            p = pending.get(region)
            if p is None:
                continue
            if data is not None:
                if rec.sequence != p[6]:
                    continue  # a stream message without its frame (file cut or edited)
                p[5][sid] = data
            if len(p[5]) == len(p[3]):
                fid, sim, t_ns, ids, counts, got, _seq = p
                del pending[region]
                yield PlayFrame(region, fid, sim, t_ns,
                                [(i, c, got[i]) for i, c in zip(ids, counts) if i in got])

    def _foreign_frames(self) -> Iterator[PlayFrame]:
        for rec in iter_records(self.path):
            if type(rec).__name__ != "Message" or rec.channel_id not in self.foreign:
                continue
            ch = self.foreign[rec.channel_id]
            sim = (rec.publish_time or rec.log_time) / 1e9
            if ch.kind == "bytes":
                data = bytes(rec.data)
                yield PlayFrame(0, 0, sim, rec.log_time, [(ch.stream_ids[0], len(data), data)])
                continue
            img = self._decode_image(ch, rec)
            where = f"'{self.path}' channel {self._channels[rec.channel_id].topic!r}"
            try:
                pixels, w, h, c = image_pixels(img, where)
            except ValueError as exc:
                raise McapError(str(exc)) from None
            vb = ENCODINGS[str(img["encoding"])][1]
            spec = next(s for s in self.regions[0]["streams"] if s["id"] == ch.stream_ids[0])
            if spec["components"] != c or spec["bytes_per_elem"] != c * vb:
                raise McapError(f"{where}: encoding changed to {img['encoding']!r} mid-file")
            ids = ch.stream_ids
            yield PlayFrame(0, 0, sim, rec.log_time, [
                (ids[0], w * h, pixels), (ids[1], 1, struct.pack("<I", w)),
                (ids[2], 1, struct.pack("<I", h)), (ids[3], 1, struct.pack("<I", c))])


# -------------------------------------------------------------------- play
def cmd_play(args: argparse.Namespace) -> int:
    """``shmx play FILE``: MCAP files here, ``.shmxrec`` files by _record."""
    if not is_mcap(args.file):
        from . import _record
        return _record.cmd_play(args)
    shm_dir = shm_dir_of(args)
    plan = Plan(args.file)
    names = [n for n in args.as_name.split(",") if n]
    if len(names) != len(plan.regions):
        recorded = ", ".join(r["region"] for r in plan.regions)
        raise CliError(f"'{args.file}' holds {len(plan.regions)} region(s) ({recorded}): give as many "
                       f"names to --as, separated by commas", EXIT_USAGE)
    for n in names:
        check_name(n)
    for w in plan.warnings:
        print(f"shmx play: {w}; playing the complete messages before it", file=sys.stderr)
    servers: List[Server] = []
    try:
        for n, r in zip(names, plan.regions):
            servers.append(_create(n, r, args, shm_dir))
        return _play(plan, servers, names, args)
    finally:
        for s in servers:
            s.destroy()


def _server_static(server: Server) -> Tuple[int, int]:
    info = ffi.new("shmx_header_info *")
    info.struct_size = ffi.sizeof("shmx_header_info")
    if lib.shmx_server_header_info(server._s, info) != 0:
        return 0, 0
    return int(info.static_hash), int(info.static_bytes_used)


def _create(name: str, r: Dict[str, Any], args: argparse.Namespace, shm_dir: str) -> Server:
    """The region as recorded: config, streams, and the static directory
    byte for byte (checked by its hash)."""
    server = Server()
    raw = r.get("static")
    ok = server.create(name, slots=args.slots or max(r["slots"], 1),
                       reader_slots=min(max(r["reader_slots"], 1), lib.SHMX_MAX_READER_SLOTS),
                       static_bytes_cap=max(r["static_bytes_cap"], len(raw or b"")),
                       frame_bytes_cap=max(r["frame_bytes_cap"], 1),
                       control_per_reader=r["control_per_reader"], streams=r["streams"], shm_dir=shm_dir)
    if not ok:
        raise CliError(server.last_error, code_for_status(server._last_status))
    if raw:
        # The streams' TLVs are there from the start (a reader attaching now
        # sees the whole schema); what the producer appended after them with
        # write_static_append() follows, so the directory is the recorded one.
        _hash, used = _server_static(server)
        if raw[:used] and fnv1a64(raw[:used]) == _hash and len(raw) > used:
            server.write_static_append(raw[used:])
        if _server_static(server)[0] != fnv1a64(raw):
            print(f"shmx play: the static directory of '{name}' differs from the recorded one "
                  f"(streams are the same)", file=sys.stderr)
    return server


def _play(plan: Plan, servers: List[Server], names: List[str], args: argparse.Namespace) -> int:
    from ._record import RecordedFrame, _linger, _publish, _wait_first_read, _wait_for_readers
    stop_on_sigterm()
    progress = Progress(enabled=not args.quiet)
    published, passes = 0, 0
    start = time.monotonic()
    interrupted = False
    try:
        deadline = time.monotonic() + args.wait_timeout
        if args.wait_readers > 0:
            for s in servers:
                _wait_for_readers(s, args.wait_readers, deadline)
        pass_start = time.monotonic()
        first_read: set = set()
        while True:
            first_t: Optional[int] = None
            last_t, count = 0, 0
            for fr in plan.frames_iter():
                if args.rate > 0:
                    if first_t is None:
                        first_t = fr.t_ns
                    due = pass_start + (fr.t_ns - first_t) / 1e9 / args.rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    last_t = fr.t_ns
                server = servers[fr.region]
                _publish(server, RecordedFrame(fr.frame_id, fr.sim_time, fr.t_ns, 0, fr.streams))
                published += 1
                count += 1
                if passes == 0 and args.wait_readers > 0 and fr.region not in first_read:
                    # Each region's first frame: let its readers take it
                    # before the next one exists (see _record._wait_first_read).
                    first_read.add(fr.region)
                    _wait_first_read(server, deadline)
                    if count == 1:
                        pass_start = time.monotonic()
                elapsed = max(time.monotonic() - start, 1e-9)
                progress.update(f"playing {args.file} as {','.join(names)}: {published} frames, "
                                f"pass {passes + 1}, {published / elapsed:.1f} fps")
            passes += 1
            if not args.loop or count == 0:
                break
            gap = (last_t - (first_t or 0)) / 1e9 / args.rate / max(count - 1, 1) if args.rate > 0 else 0.0
            pass_start = time.monotonic() + gap
        progress.done()
        for s in servers:
            _linger(s, args.linger)
    except (KeyboardInterrupt, Stop):
        interrupted = True
    finally:
        finishing()
        progress.done()
    seconds = time.monotonic() - start
    summary = {"file": args.file, "region": ",".join(names), "frames": published, "passes": passes,
               "seconds": round(seconds, 3), "interrupted": interrupted, "format": "mcap",
               "source": "shmx" if plan.own else "foreign"}
    if args.json:
        print(to_json(summary))
    else:
        print(f"played {published} frames from {args.file} as {','.join(names)} in {seconds:.2f} s "
              f"({passes} pass{'es' if passes != 1 else ''}){'; interrupted' if interrupted else ''}")
    return EXIT_OK


# -------------------------------------------------------------- dispatching
def keep_freed_buffers() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (no trimming, big
    blocks from the heap rather than fresh mmaps).  A recorder allocates
    and frees several frame-sized buffers per frame (the writer's chunk
    buffers); returned to the kernel each time, every one of them costs a
    page fault per 4 KiB when it comes back, several milliseconds per
    1080p frame (much more on a virtual machine that backs memory lazily).
    Only the recording process is affected; elsewhere this does nothing."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = bool(mallopt(m_mmap_threshold, 32 << 20))   # glibc's maximum
    ok = bool(mallopt(m_trim_threshold, 1 << 30)) and ok
    return bool(mallopt(m_top_pad, 64 << 20)) and ok


def cmd_record_any(args: argparse.Namespace) -> int:
    """``shmx record``: MCAP when the output ends in .mcap (or --format mcap)."""
    keep_freed_buffers()
    fmt = args.format
    if fmt == "auto":
        fmt = "mcap" if args.output.lower().endswith(".mcap") else "shmxrec"
    if fmt == "mcap":
        return cmd_record(args)
    if len(args.names) != 1:
        raise CliError("several regions go into one MCAP file (-o FILE.mcap); a .shmxrec "
                       "recording holds one region", EXIT_USAGE)
    for opt in ("split_size", "split_duration"):
        if getattr(args, opt) is not None:
            raise CliError(f"--{opt.replace('_', '-')} needs MCAP output (-o FILE.mcap)", EXIT_USAGE)
    from . import _record
    args.name = args.names[0]
    return _record.cmd_record(args)


__all__ = ["cmd_record", "cmd_play", "cmd_record_any", "McapRecorder", "Plan", "iter_records",
           "is_mcap", "parse_size", "COMPRESSIONS"]
