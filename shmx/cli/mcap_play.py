"""``shmx play FILE.mcap``: MCAP files back into live regions, ours
(byte-identical, from the recorded schema) and other tools' (image and byte
channels), read with bounds on every size a hostile file could claim."""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import stat
import struct
import sys
import time
import zlib
from typing import Any, BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Tuple

from . import protowire as pw
from .cdr import IMAGE_TYPES as CDR_IMAGE_TYPES, CdrError, decode_image as decode_cdr_image
from .util import (EXIT_OK, EXIT_USAGE, CliError, Progress, Stop, check_name, code_for_status,
                       finishing, shm_dir_of, stop_on_sigterm, to_json)
from .._common import create_stream_spec
from .image import ENCODINGS
from .mcap import MAX_CHUNK_BYTES, MCAP_MAGIC, decode_frame, decode_stream_bytes, fnv1a64, require_mcap, value_type
from .._shmx import ffi, lib
from ..server import Server

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
    """Whether the regular file ``path`` starts with the MCAP magic (a FIFO
    or device is not opened for reading: that could block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
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
def play_mcap(args: argparse.Namespace) -> int:
    """``shmx play FILE.mcap --as NAME[,NAME...]``."""
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
    from .shmxrec import RecordedFrame, _linger, _publish, _wait_first_read, _wait_for_readers, pace
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
                    pass_start = pace(pass_start, fr.t_ns - first_t, args.rate)
                    last_t = fr.t_ns
                server = servers[fr.region]
                _publish(server, RecordedFrame(fr.frame_id, fr.sim_time, fr.t_ns, 0, fr.streams))
                published += 1
                count += 1
                if passes == 0 and args.wait_readers > 0 and fr.region not in first_read:
                    # Each region's first frame: let its readers take it
                    # before the next one exists (see shmxrec._wait_first_read).
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


__all__ = ["McapError", "Plan", "iter_records", "is_mcap", "play_mcap", "image_pixels"]
