"""``shmx record -o FILE`` and ``shmx play FILE`` for a ``.shmxrec`` file:
one region's frames to a file and back (MCAP is ``mcap_record`` and
``mcap_play``; ``record`` picks one).

The file format is specified in docs/record-format.md; in short: a 16-byte
file header, then length-prefixed blocks (one schema block, one block per
frame, an end block), all little-endian.  Readers skip block types they do
not know, so the format can grow."""
from __future__ import annotations

import argparse
import os
import stat
import struct
import sys
import time
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .util import (EXIT_FAILURE, EXIT_OK, CliError, Progress, Stop, check_name,
                       code_for_status, finishing, fmt_bytes, shm_dir_of, stop_on_sigterm, to_json)
from .._common import create_stream_spec
from .._shmx import lib
from ..client import Client, connect
from ..errors import ShmxError
from ..server import Server

MAGIC = b"SHMXREC\x00"
VERSION_MAJOR = 1
VERSION_MINOR = 0
FILE_HEADER = struct.Struct("<8sHHI")        # magic, major, minor, header_bytes
BLOCK_HEADER = struct.Struct("<II")          # type, body length
BLOCK_SCHEMA, BLOCK_FRAME, BLOCK_END = 1, 2, 3
SCHEMA_FIXED = struct.Struct("<QQIIIIII")    # start_unix_ns, session_id, slots, reader_slots,
                                             # static_bytes_cap, frame_bytes_cap,
                                             # control_per_reader, flags
STREAM_FIXED = struct.Struct("<IIIIIII")     # id, dtype, components, layout, bytes_per_elem,
                                             # name_len, extra_len
FRAME_FIXED = struct.Struct("<QdQQI")        # frame_id, sim_time, t_ns, dropped, stream_count
FRAME_STREAM = struct.Struct("<III")         # stream_id, elem_count, bytes
END_BODY = struct.Struct("<QQQ")             # frames, dropped, duration_ns
FLAG_LEGACY_SOURCE = 1
MAX_PLAY_SLOTS = 64      # play never makes a ring longer than this (a file can claim any)
MAX_PAUSE_S = 10.0       # nor waits longer than this between two frames
PLAY_RESERVE_BYTES = 64 << 20  # recorded geometry kept up to this much frame memory
_U32 = struct.Struct("<I")


class Schema(NamedTuple):
    start_unix_ns: int
    session_id: int
    slots: int
    reader_slots: int
    static_bytes_cap: int
    frame_bytes_cap: int
    control_per_reader: int
    flags: int
    source: str
    streams: List[Dict[str, Any]]


class RecordedFrame(NamedTuple):
    frame_id: int
    sim_time: float
    t_ns: int
    dropped: int
    streams: List[Tuple[int, int, bytes]]  # (stream_id, elem_count, data)


# ------------------------------------------------------------------ writing
class RecordingWriter:
    """Writes a recording: ``write_schema`` once, ``write_frame`` per frame,
    ``finish`` at the end."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.frames = 0
        self.dropped = 0
        self.bytes = 0
        f.write(FILE_HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, FILE_HEADER.size))

    def _block(self, kind: int, body: bytes) -> None:
        self.f.write(BLOCK_HEADER.pack(kind, len(body)))
        self.f.write(body)

    def write_schema(self, schema: Schema) -> None:
        parts = [SCHEMA_FIXED.pack(schema.start_unix_ns, schema.session_id, schema.slots,
                                   schema.reader_slots, schema.static_bytes_cap,
                                   schema.frame_bytes_cap, schema.control_per_reader, schema.flags)]
        src = schema.source.encode("utf-8")
        parts += [_U32.pack(len(src)), src, _U32.pack(len(schema.streams))]
        for s in schema.streams:
            name = s["name"].encode("utf-8")
            extra = bytes(s.get("extra") or b"")
            parts += [STREAM_FIXED.pack(s["id"], s["dtype_code"], s["components"],
                                        s.get("layout_code", 0), s["bytes_per_elem"],
                                        len(name), len(extra)), name, extra]
        self._block(BLOCK_SCHEMA, b"".join(parts))

    def write_frame(self, frame_id: int, sim_time: float, t_ns: int, dropped: int,
                    streams: Sequence[Tuple[int, int, Any]]) -> None:
        """``streams``: (stream_id, elem_count, buffer); the buffers are
        written straight from shared memory, without a copy in between."""
        views = [(sid, count, memoryview(data).cast("B")) for sid, count, data in streams]
        length = FRAME_FIXED.size + sum(FRAME_STREAM.size + v.nbytes for _, _, v in views)
        self.f.write(BLOCK_HEADER.pack(BLOCK_FRAME, length))
        self.f.write(FRAME_FIXED.pack(frame_id, sim_time, t_ns, dropped, len(views)))
        for sid, count, view in views:
            self.f.write(FRAME_STREAM.pack(sid, count, view.nbytes))
            self.f.write(view)
        self.frames += 1
        self.dropped += dropped
        self.bytes += length

    def finish(self, duration_ns: int) -> None:
        self._block(BLOCK_END, END_BODY.pack(self.frames, self.dropped, duration_ns))
        self.f.flush()


# ------------------------------------------------------------------ reading
class Recording:
    """A recording opened for reading.  ``schema`` is parsed on open;
    ``frames()`` iterates the frame blocks (again on every call); after a
    full pass ``end`` holds the end block's numbers (None when the file was
    cut short) and ``truncated`` says whether the last block was partial."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # O_NONBLOCK: a FIFO (or device) under that name must not hang
            # the open; it is refused below.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CliError(f"no such recording '{path}'") from None
        except IsADirectoryError:
            raise CliError(f"'{path}' is a directory, not a recording") from None
        except OSError as exc:
            raise CliError(f"cannot open '{path}': {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CliError(f"'{path}' is not a regular file (a recording is one)")
        os.set_blocking(fd, True)
        self.f: BinaryIO = os.fdopen(fd, "rb")
        self.size = os.fstat(fd).st_size
        self.end: Optional[Dict[str, int]] = None
        self.truncated = False
        head = self.f.read(FILE_HEADER.size)
        if len(head) < FILE_HEADER.size or head[:8] != MAGIC:
            self.close()
            raise CliError(f"'{path}' is not a shmx recording (bad magic)")
        _magic, major, minor, header_bytes = FILE_HEADER.unpack(head)
        if major != VERSION_MAJOR or header_bytes < FILE_HEADER.size:
            self.close()
            raise CliError(f"'{path}' is a shmx recording of format version {major}.{minor}; "
                           f"this shmx reads {VERSION_MAJOR}.x")
        self.f.seek(header_bytes)
        schema: Optional[Schema] = None
        while schema is None:
            block = self._read_block()
            if block is None:
                self.close()
                raise CliError(f"'{path}' has no schema block (truncated recording?)")
            kind, body = block
            if kind == BLOCK_SCHEMA:
                schema = self._parse_schema(body)
        self.schema = schema
        self.frames_offset = self.f.tell()

    def _read_block(self) -> Optional[Tuple[int, bytes]]:
        head = self.f.read(BLOCK_HEADER.size)
        if not head:
            return None
        if len(head) < BLOCK_HEADER.size:
            self.truncated = True
            return None
        kind, length = BLOCK_HEADER.unpack(head)
        if length > self.size - self.f.tell():  # claims more than the file holds
            self.truncated = True
            return None
        body = self.f.read(length)
        if len(body) < length:
            self.truncated = True
            return None
        return kind, body

    def _parse_schema(self, body: bytes) -> Schema:
        try:
            fixed = SCHEMA_FIXED.unpack_from(body, 0)
            off = SCHEMA_FIXED.size
            (n,) = _U32.unpack_from(body, off)
            source = body[off + 4:off + 4 + n].decode("utf-8", "replace")
            off += 4 + n
            (count,) = _U32.unpack_from(body, off)
            off += 4
            streams = []
            for _ in range(count):
                sid, dtype, comps, layout, bpe, nlen, elen = STREAM_FIXED.unpack_from(body, off)
                off += STREAM_FIXED.size
                name = body[off:off + nlen].decode("utf-8")
                extra = body[off + nlen:off + nlen + elen]
                off += nlen + elen
                if off > len(body):
                    raise struct.error("stream entry runs past the block")
                spec = create_stream_spec(sid, name, dtype, comps, bpe, layout, extra or None)
                streams.append(spec)
        except (struct.error, UnicodeDecodeError) as exc:
            raise CliError(f"'{self.path}' has a damaged schema block: {exc}") from None
        return Schema(*fixed, source, streams)  # type: ignore[call-arg]

    def frames(self) -> Iterator[RecordedFrame]:
        self.f.seek(self.frames_offset)
        self.truncated = False
        while True:
            block = self._read_block()
            if block is None:
                return
            kind, body = block
            if kind == BLOCK_END and len(body) >= END_BODY.size:
                frames, dropped, duration = END_BODY.unpack_from(body)
                self.end = {"frames": frames, "dropped": dropped, "duration_ns": duration}
                return
            if kind != BLOCK_FRAME:
                continue  # a block type from a newer minor version
            try:
                frame_id, sim_time, t_ns, dropped, count = FRAME_FIXED.unpack_from(body)
                off = FRAME_FIXED.size
                streams = []
                for _ in range(count):
                    sid, elems, nbytes = FRAME_STREAM.unpack_from(body, off)
                    off += FRAME_STREAM.size
                    if off + nbytes > len(body):
                        raise struct.error("stream data runs past the block")
                    streams.append((sid, elems, body[off:off + nbytes]))
                    off += nbytes
            except struct.error as exc:
                raise CliError(f"'{self.path}' has a damaged frame block: {exc}") from None
            yield RecordedFrame(frame_id, sim_time, t_ns, dropped, streams)

    def largest_frame(self) -> int:
        """Bytes of stream data in the largest frame block (a pass over the
        block headers only)."""
        self.f.seek(self.frames_offset)
        largest = 0
        while True:
            head = self.f.read(BLOCK_HEADER.size)
            if len(head) < BLOCK_HEADER.size:
                break
            kind, length = BLOCK_HEADER.unpack(head)
            if kind == BLOCK_END:
                break
            if kind == BLOCK_FRAME:
                largest = max(largest, length)
            self.f.seek(length, os.SEEK_CUR)
            if self.f.tell() > self.size:
                break
        return largest

    def close(self) -> None:
        self.f.close()


# ------------------------------------------------------------------- record
def cmd_record(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    check_name(args.name)
    stop_on_sigterm()
    try:
        client = connect(args.name, timeout=args.wait, shm_dir=shm_dir)
    except ShmxError as exc:
        raise CliError(str(exc), code_for_status(exc.status)) from None
    progress = Progress(enabled=not args.quiet)
    try:
        return _record(client, args, progress)
    finally:
        progress.done()
        client.close()


def _record(client: Client, args: argparse.Namespace, progress: Progress) -> int:
    h = client.get_header_info()
    streams = client.get_streams_info()
    legacy = not h["extended"]
    ids = {s["name"]: s["id"] for s in streams}
    session = h["session_id"]
    schema = Schema(time.time_ns(), session, h["slots"], h["reader_slots"], h["static_bytes_cap"],
                    h["frame_bytes_cap"], h["control_per_reader"], FLAG_LEGACY_SOURCE if legacy else 0,
                    args.name, [dict(s, layout_code=lib.SHMX_LAYOUT_AOS_VECTOR if s["layout"] == "vector"
                                     else lib.SHMX_LAYOUT_SOA_SCALAR) for s in streams])
    if legacy:
        print(f"shmx record: '{args.name}' is a shmx 1.0.1 region (no in-order reads): recording "
              f"the newest frame each time; skipped frames are counted as dropped", file=sys.stderr)
    t0 = time.monotonic_ns()
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    stopped_by = "end"
    unknown: Dict[str, int] = {}
    last_id = 0
    with open(args.output, "wb") as f:
        writer = RecordingWriter(f)
        writer.write_schema(schema)
        try:
            while True:
                if args.frames is not None and writer.frames >= args.frames:
                    stopped_by = f"{args.frames} frames"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stopped_by = f"{args.seconds:g} s"
                    break
                timeout = 0.25 if deadline is None else max(min(0.25, deadline - now), 0.0)
                frame = client.wait_frame(timeout) if legacy else client.wait_next(timeout)
                if frame is None:
                    if client.server_alive() is False:
                        stopped_by = "the server went away"
                        break
                    continue
                if client.session_id != session:
                    # A new server took the name; its frames are another stream.
                    stopped_by = "the server was replaced"
                    break
                t_ns = time.monotonic_ns() - t0
                meta = frame["__metadata__"]
                fid = meta["frame_id"]
                dropped = meta.get("dropped", 0) if not legacy else (max(fid - last_id - 1, 0) if last_id else 0)
                last_id = fid
                parts = []
                for key, entry in frame.items():
                    if key == "__metadata__":
                        continue
                    sid = ids.get(key)
                    if sid is None:
                        unknown[key] = unknown.get(key, 0) + 1
                        continue
                    parts.append((sid, entry["elem_count"], entry["data"]))
                writer.write_frame(fid, meta["sim_time"], t_ns, dropped, parts)
                elapsed = max((time.monotonic_ns() - t0) / 1e9, 1e-9)
                progress.update(f"recording {args.name} -> {args.output}: {writer.frames} frames, "
                                f"{fmt_bytes(writer.bytes)}, {writer.frames / elapsed:.1f} fps, "
                                f"dropped {writer.dropped}")
        except (KeyboardInterrupt, Stop):
            stopped_by = "interrupted"
        finishing()
        duration = time.monotonic_ns() - t0
        writer.finish(duration)
    progress.done()
    for key, n in unknown.items():
        print(f"shmx record: stream {key!r} is not in the schema the recording started with; "
              f"left out of {n} frames", file=sys.stderr)
    summary = {"region": args.name, "output": args.output, "frames": writer.frames,
               "dropped": writer.dropped, "bytes": os.path.getsize(args.output),
               "seconds": round(duration / 1e9, 3), "stopped_by": stopped_by}
    if args.json:
        print(to_json(summary))
    else:
        print(f"recorded {writer.frames} frames ({fmt_bytes(summary['bytes'])}) from {args.name} "
              f"to {args.output} in {duration / 1e9:.2f} s; {writer.dropped} dropped; "
              f"stopped: {stopped_by}")
    if writer.frames == 0:
        print("shmx record: no frame was recorded", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# --------------------------------------------------------------------- play
def _publish(server: Server, frame: RecordedFrame) -> None:
    handle = server.begin_frame()
    waited = 0.0
    while handle is None:
        # Every slot pinned by a reader: give them a moment, then give up.
        if waited > 2.0:
            raise CliError(f"cannot publish: {server.last_error}")
        time.sleep(0.001)
        waited += 0.001
        handle = server.begin_frame()
    for sid, elems, data in frame.streams:
        if not server.append_stream(handle, sid, data, elems):
            raise CliError(f"cannot replay frame {frame.frame_id}: {server.last_error}")
    if not server.publish_frame(handle, frame.sim_time):
        raise CliError(f"cannot replay frame {frame.frame_id}: {server.last_error}")


def pace(pass_start: float, since_first_ns: int, rate: float) -> float:
    """Sleep until a frame recorded ``since_first_ns`` after the pass's
    first one is due at ``rate`` x speed; returns the pass start to use
    from now on.  A timestamp far ahead (a damaged or crafted file) costs at
    most MAX_PAUSE_S, not years: the pass start moves up instead."""
    pause = pass_start + since_first_ns / 1e9 / rate - time.monotonic()
    if pause > MAX_PAUSE_S:
        pass_start -= pause - MAX_PAUSE_S
        pause = MAX_PAUSE_S
    if pause > 0:
        time.sleep(pause)
    return pass_start


def _wait_for_readers(server: Server, count: int, deadline: float) -> None:
    while server.get_header_info()["readers_connected"] < count:
        if time.monotonic() >= deadline:
            raise CliError(f"fewer than {count} reader(s) attached before the --wait-timeout")
        time.sleep(0.002)


def _wait_first_read(server: Server, deadline: float) -> None:
    """Hold on until every attached reader has read the first frame.  A
    reader's first read gives it the newest frame; without this pause a
    recorder that attached a moment before would start at frame 2 or 3."""
    while time.monotonic() < deadline:
        if all(r["last_frame_seen"] >= 1 for r in server.snapshot_readers()
               if r["in_use"] and r["alive"] is not False):
            return
        time.sleep(0.001)


def _linger(server: Server, seconds: float) -> None:
    """Give attached readers up to ``seconds`` to read the last frame."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seq = server.get_header_info()["frame_seq"]
        behind = [r for r in server.snapshot_readers()
                  if r["in_use"] and r["alive"] is not False and r["last_frame_seen"] < seq]
        if not behind:
            return
        time.sleep(0.005)


def cmd_play(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    check_name(args.as_name)
    rec = Recording(args.file)
    try:
        return _play(rec, args, shm_dir)
    finally:
        rec.close()


def _play(rec: Recording, args: argparse.Namespace, shm_dir: str) -> int:
    sc = rec.schema
    # The file's schema sizes the region, and a file can claim anything.
    # The recorded geometry is kept (a replay looks like the original)
    # unless it would reserve more than PLAY_RESERVE_BYTES for frames that
    # are smaller: then a slot holds the largest frame the file has.
    slots = args.slots or min(max(sc.slots, 1), MAX_PLAY_SLOTS)
    frame_cap = sc.frame_bytes_cap
    if slots * frame_cap > PLAY_RESERVE_BYTES:
        frame_cap = max(min(frame_cap, rec.largest_frame()), 64)
    server = Server()
    ok = server.create(args.as_name, slots=slots,
                       reader_slots=min(max(sc.reader_slots, 1), lib.SHMX_MAX_READER_SLOTS),
                       static_bytes_cap=min(sc.static_bytes_cap, 1 << 20), frame_bytes_cap=frame_cap,
                       control_per_reader=sc.control_per_reader, streams=sc.streams, shm_dir=shm_dir)
    if not ok:
        raise CliError(server.last_error, code_for_status(server._last_status))
    stop_on_sigterm()
    progress = Progress(enabled=not args.quiet)
    published, passes = 0, 0
    start = time.monotonic()
    interrupted = False
    try:
        deadline = time.monotonic() + args.wait_timeout
        if args.wait_readers > 0:
            _wait_for_readers(server, args.wait_readers, deadline)
        pass_start = time.monotonic()
        while True:
            first_t: Optional[int] = None
            last_t = 0
            count = 0
            for frame in rec.frames():
                if args.rate > 0:
                    if first_t is None:
                        first_t = frame.t_ns
                    pass_start = pace(pass_start, frame.t_ns - first_t, args.rate)
                    last_t = frame.t_ns
                _publish(server, frame)
                published += 1
                count += 1
                if published == 1 and args.wait_readers > 0:
                    _wait_first_read(server, deadline)
                    pass_start = time.monotonic()  # the recorded spacing counts from here
                elapsed = max(time.monotonic() - start, 1e-9)
                progress.update(f"playing {args.file} as {args.as_name}: {published} frames, "
                                f"pass {passes + 1}, {published / elapsed:.1f} fps")
            passes += 1
            if rec.truncated:
                print(f"shmx play: '{args.file}' ends in a partial block (recording cut short); "
                      f"played the {count} complete frames", file=sys.stderr)
            if not args.loop or count == 0:
                break
            # The next pass starts one mean frame interval after the last frame.
            gap = (last_t - (first_t or 0)) / 1e9 / args.rate / max(count - 1, 1) if args.rate > 0 else 0.0
            pass_start = time.monotonic() + gap
        progress.done()
        _linger(server, args.linger)
    except (KeyboardInterrupt, Stop):
        interrupted = True
    finally:
        finishing()
        progress.done()
        server.destroy()
    seconds = time.monotonic() - start
    summary = {"file": args.file, "region": args.as_name, "frames": published, "passes": passes,
               "seconds": round(seconds, 3), "interrupted": interrupted}
    if args.json:
        print(to_json(summary))
    else:
        print(f"played {published} frames from {args.file} as {args.as_name} in {seconds:.2f} s "
              f"({passes} pass{'es' if passes != 1 else ''}){'; interrupted' if interrupted else ''}")
    return EXIT_OK
