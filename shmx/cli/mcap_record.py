"""``shmx record NAME... -o FILE.mcap``: frames of live regions into MCAP
files (layout: shmx.cli.mcap and docs/mcap.md), with a writer thread, chunk
compression, and rolling over to numbered files."""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

from . import protowire as pw
from .util import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, Progress, Stop, check_name,
                       code_for_status, finishing, fmt_bytes, shm_dir_of, stop_on_sigterm, to_json)
from .image import ImageGeometry, image_geometry
from .mcap import (FLUSH_NS, FORMAT, FORMAT_VERSION, PROFILE, QUEUE_BYTES, _shmx_version, encode_frame,
                    encode_stream, fnv1a64, publish_ns, require_mcap, value_type)
from .._shmx import lib
from ..client import Client, connect
from ..errors import ShmxError

# ----------------------------------------------------------------- schema
def static_bytes(client: Client) -> Optional[bytes]:
    """The region's static directory, raw, as the producer wrote it (stream
    TLVs and any ``write_static_append`` bytes), copied out by C."""
    return client.get_static_bytes()


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



__all__ = ["McapRecorder", "cmd_record", "region_schema", "static_bytes", "keep_freed_buffers"]
