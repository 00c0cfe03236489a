"""Regions beyond one machine: carry a region's frames over Zenoh.

``BridgeOut`` reads a local region and publishes every frame on Zenoh under
a key; ``BridgeIn``, on another machine (or the same one), creates a local
*mirror* region whose frames are the remote ones: the same schema (later
``write_static_append`` included, byte for byte), the same frame ids and
``sim_time``, identical bytes.  Consumers of the mirror use the ordinary
``Client`` API.  Needs the optional extra: ``pip install 'shmx[bridge]'``
(eclipse-zenoh); ``import shmx`` never imports this module.

Key expressions under ``KEY``:

* ``KEY/frames``: one Zenoh message per frame (the stream bytes as the
  payload, frame id, ``sim_time``, dropped count and stream table in the
  attachment), plus in-band schema and "source gone" messages, in order;
* ``KEY/schema``: a queryable answering with the schema (region config and
  raw static directory), so a late joiner gets it at once;
* ``KEY/alive/bridge`` and ``KEY/alive/source``: liveliness tokens, held
  while the bridge runs and while the source region's server is alive.  Zenoh
  withdraws both when the bridge process dies (``kill -9`` included).

Delivery (``delivery=``):

* ``"latest"``: the bridge reads the newest frame (``get_latest_frame``)
  and publishes it best effort with Zenoh's drop congestion control: a slow
  link or far side loses frames, never backs up the producer or the bridge;
  on the receiving side a small drop-old queue keeps the newest frames.
* ``"reliable"``: the bridge reads every frame in order (``read_next``) and
  publishes it reliably, blocking while the link is congested.  Frames the
  source ring overwrote before the bridge read them are gaps in the frame
  ids, which the mirror keeps (``Server.publish_frame_as``), so the mirror's
  ``read_next`` reports the same ``dropped`` counts.

When the source's server goes away, or the bridge dies, the mirror is
closed with its name kept (``server_alive()`` is False, ``shmx ls`` shows a
dead owner, waiting clients return None); when the source (a new server on
the name) or the bridge comes back, a new mirror server takes the name and
clients that keep calling ``wait_frame()`` follow it without a restart.
"""
from __future__ import annotations

import json
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import zenoh

from ._common import unlink
from ._shmx import ffi, lib
from .client import Client
from .server import Server
from .errors import ShmxError

__all__ = ["BridgeOut", "BridgeIn", "zenoh_config", "DELIVERY_MODES"]

DELIVERY_MODES = ("latest", "reliable")

_MAGIC = b"SHXB"
_VERSION = 1
_FRAME, _SCHEMA, _GONE, _BATCH = ord("F"), ord("S"), ord("G"), ord("B")
# magic, version, kind, stream count / delivery, source session id
_HEAD = struct.Struct("<4sBBHQ")
# + frame id, sim_time, dropped before it, static directory length; then
# (stream id, elem_count, bytes) per stream.  A batch (kind B, stream count
# field = frame count) is a _HEAD followed by that many frame records, its
# payload the frames' bytes one after the other.
_FRAME_HEAD = "<4sBBHQQdQI"
_FRAME_FIXED = struct.calcsize(_FRAME_HEAD)
_STREAM = struct.Struct("<III")
# + slots, reader_slots, frame_bytes_cap, static_bytes_cap,
# control_per_reader, static directory length; then the checksum policy
_SCHEMA_HEAD = struct.Struct("<4sBBHQIIIIII")
_CHECKSUMS = ("auto", "always", "never")
_frame_structs: Dict[int, struct.Struct] = {}
_begin = lib.pyshmx_server_begin  # the frame token (> 0) or a status (< 0)
_append = lib.shmx_server_append
_publish_as = lib.shmx_server_publish_as
_copy_static = lib.shmx_client_copy_static
_from_buffer = ffi.from_buffer


def _frame_struct(n: int) -> struct.Struct:
    s = _frame_structs.get(n)
    if s is None:
        s = _frame_structs[n] = struct.Struct(_FRAME_HEAD + "III" * n)
    return s


def zenoh_config(config: Union[None, str, "zenoh.Config"] = None, *, listen: Sequence[str] = (),
                 connect: Sequence[str] = (), mode: Optional[str] = None,
                 multicast_scouting: Optional[bool] = None) -> "zenoh.Config":
    """A Zenoh configuration: ``config`` (a JSON5 file in Zenoh's own
    format, or a ``zenoh.Config``), then the common parts on top: endpoints
    to listen on / connect to (``tcp/127.0.0.1:7447``), ``mode`` (``peer``
    or ``client``), multicast scouting on or off (None: as configured).
    Raises ``ValueError`` naming the bad argument."""
    if config is None:
        cfg = zenoh.Config()
    elif isinstance(config, zenoh.Config):
        cfg = config
    else:
        try:
            cfg = zenoh.Config.from_file(str(config))
        except Exception as exc:  # zenoh.ZError: say which file
            raise ValueError(f"zenoh config file {config!r}: {exc}") from None
    if mode is not None:
        if mode not in ("peer", "client"):
            raise ValueError(f"mode must be 'peer' or 'client', not {mode!r}")
        cfg.insert_json5("mode", json.dumps(mode))
    for label, endpoints in (("listen", listen), ("connect", connect)):
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if endpoints:
            for e in endpoints:
                if not isinstance(e, str) or "/" not in e:
                    raise ValueError(f"{label}: endpoint {e!r} is not like 'tcp/127.0.0.1:7447'")
            try:
                cfg.insert_json5(f"{label}/endpoints", json.dumps(endpoints))
            except Exception as exc:
                raise ValueError(f"{label}: {exc}") from None
    if multicast_scouting is not None:
        cfg.insert_json5("scouting/multicast/enabled", "true" if multicast_scouting else "false")
    return cfg


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/") \
            or any(c in key for c in "*$?#"):
        raise ValueError(f"key must be a Zenoh key expression without wildcards (e.g. 'cam/front'), "
                         f"not {key!r}")
    return key


def _check_delivery(delivery: str) -> str:
    if delivery not in DELIVERY_MODES:
        raise ValueError(f"delivery must be one of {DELIVERY_MODES}, not {delivery!r}")
    return delivery


class _Runner:
    """start()/stop()/close() for a bridge that runs in a thread or in
    the caller's ``run()``."""

    _stop: threading.Event
    _thread: Optional[threading.Thread] = None

    def run(self, duration: Optional[float] = None) -> Dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> "_Runner":
        """Run in a daemon thread until ``stop()``/``close()``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=type(self).__name__, daemon=True)
            self._thread.start()
        return self

    def stop_soon(self) -> None:
        """Ask ``run()`` to return, without waiting (e.g. from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Ask ``run()`` to return, and wait for a ``start()`` thread."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class BridgeOut(_Runner):
    """Publish every frame of local region ``name`` on Zenoh under ``key``.

    ``config``/``listen``/``connect``/``mode``/``multicast_scouting`` make
    the Zenoh session (see ``zenoh_config``).  ``run()`` blocks; ``start()``
    runs it in a thread.  The region need not exist yet: the bridge waits
    for it, and follows a new server that takes the name.
    """

    def __init__(self, name: str, key: str, *, delivery: str = "latest",
                 config: Union[None, str, "zenoh.Config"] = None, listen: Sequence[str] = (),
                 connect: Sequence[str] = (), mode: Optional[str] = None,
                 multicast_scouting: Optional[bool] = None, shm_dir: Optional[str] = None,
                 log: Optional[Callable[[str], None]] = None) -> None:
        if lib.shmx_check_name(name.encode() if isinstance(name, str) else b"") != 0:
            raise ValueError(f"BridgeOut: name {name!r} is not a region name ([A-Za-z0-9._-], 1..200)")
        self.name, self.key = name, _check_key(key)
        self.delivery = _check_delivery(delivery)
        self.shm_dir = shm_dir
        self._log = log or (lambda msg: None)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._schema: Optional[Tuple[bytes, bytes]] = None  # (attachment, payload) for the queryable
        self._frames = self._bytes = self._dropped = self._schemas = self._sources = 0
        self._batches = 0
        cfg = zenoh_config(config, listen=listen, connect=connect, mode=mode,
                           multicast_scouting=multicast_scouting)
        self.session = zenoh.open(cfg)
        reliable = self.delivery == "reliable"
        self._pub = self.session.declare_publisher(
            f"{key}/frames",
            reliability=zenoh.Reliability.RELIABLE if reliable else zenoh.Reliability.BEST_EFFORT,
            congestion_control=zenoh.CongestionControl.BLOCK if reliable else zenoh.CongestionControl.DROP,
            express=not reliable)
        # Schema and "gone" messages must arrive even in latest mode: a
        # reliable, blocking publisher of their own on the same key.
        self._ctl = self.session.declare_publisher(
            f"{key}/frames", reliability=zenoh.Reliability.RELIABLE,
            congestion_control=zenoh.CongestionControl.BLOCK)
        self._queryable = self.session.declare_queryable(f"{key}/schema", self._on_query)
        self._bridge_token = self.session.liveliness().declare_token(f"{key}/alive/bridge")
        self._source_token: Any = None
        self._client = Client()
        self._buf = bytearray()
        self._nbuf = ffi.new("uint32_t *")

    # ------------------------------------------------------------ zenoh side
    def _on_query(self, query: Any) -> None:
        with self._lock:
            schema = self._schema
        if schema is not None:
            query.reply(f"{self.key}/schema", schema[1], attachment=schema[0])

    def _send_schema(self) -> None:
        c = self._client
        h = c.get_header_info()
        raw = c.get_static_bytes() or b""
        self._session_id = h["session_id"]
        self._static_len = len(raw)
        att = _SCHEMA_HEAD.pack(_MAGIC, _VERSION, _SCHEMA, DELIVERY_MODES.index(self.delivery),
                                h["session_id"], h["slots"], h["reader_slots"], h["frame_bytes_cap"],
                                h["static_bytes_cap"], h["control_per_reader"], len(raw)) \
            + h["checksum"].encode()
        with self._lock:
            self._schema = (att, raw)
        self._ctl.put(raw, attachment=att)
        self._schemas += 1

    def _source_up(self) -> None:
        self._send_schema()
        if self._source_token is None:
            self._source_token = self.session.liveliness().declare_token(f"{self.key}/alive/source")
        self._sources += 1
        self._log(f"bridge out: source '{self.name}' (session {self._session_id:016x}) -> '{self.key}'")

    def _source_down(self) -> None:
        with self._lock:
            self._schema = None
        self._ctl.put(b"", attachment=_HEAD.pack(_MAGIC, _VERSION, _GONE, 0, self._session_id))
        if self._source_token is not None:
            self._source_token.undeclare()
            self._source_token = None
        self._log(f"bridge out: the server of '{self.name}' is gone; waiting for a new one")

    # ------------------------------------------------------------- the loop
    def run(self, duration: Optional[float] = None, frames: Optional[int] = None) -> Dict[str, Any]:
        """Publish frames until ``stop()``, ``duration`` seconds, or
        ``frames`` frames; returns the statistics (``frames``, ``bytes``,
        ``dropped``: frames the source ring overwrote before the bridge read
        them, ``schemas``, ``sources``)."""
        end = None if duration is None else time.monotonic() + duration
        c, stop = self._client, self._stop
        reliable = self.delivery == "reliable"
        handle: Any = None  # the C handle the schema was sent for
        up = False
        limit = frames
        send = self._send_frames if reliable else self._send_frame
        while not stop.is_set() and (end is None or time.monotonic() < end) \
                and (limit is None or self._frames < limit):
            if not c.is_open():
                if not c.open(self.name, shm_dir=self.shm_dir) or c.server_alive() is False:
                    c.close()
                    stop.wait(0.05)
                    continue
            frame = self._next_frame(reliable)
            if c._c is not handle:  # first connection, or the client followed a new server
                if up:
                    self._source_down()
                handle = c._c
                self._source_up()
                up = True
            if frame is None:
                if c.server_alive() is False:
                    if up:
                        self._source_down()
                        up = False
                    stop.wait(0.02)
                elif not up and c.is_open():
                    self._source_up()
                    up = True
                continue
            if not up:
                self._source_up()
                up = True
            send(frame, None if limit is None else limit - self._frames)
        return self.stats

    # After a frame, look again for this long before sleeping on the futex:
    # in a fast stream the next frame is there by then, and the producer
    # need not wake the bridge (a system call and a context switch) once
    # per frame; a slow stream costs at most this much polling per frame.
    SPIN_S = 50e-6

    def _next_frame(self, reliable: bool) -> Optional[Dict[str, Any]]:
        c = self._client
        last = c.frame_id
        read = c.read_next if reliable else c.get_latest_frame
        frame = read()
        if frame is None or (not reliable and frame["__metadata__"]["frame_id"] <= last):
            frame = None
            end = time.perf_counter() + self.SPIN_S
            while time.perf_counter() < end:
                f = read()
                if f is not None and (reliable or f["__metadata__"]["frame_id"] > last):
                    return f
            frame = c.wait_next(0.05) if reliable else c.wait_frame(0.05)
        return frame

    # Reliable delivery of small frames: frames already waiting in the
    # source ring (read without waiting) travel in one Zenoh message, up to
    # this many frames and bytes.  Every put, and every sample on the far
    # side, costs microseconds of Python and pyo3 work, more than a small
    # frame's own bytes; a batch shares that cost.  A batch never waits to
    # fill: a frame that finds no other waiting goes alone, at once.
    BATCH_FRAMES = 64
    BATCH_BYTES = 32768

    def _schema_changed(self) -> bool:
        n = self._nbuf
        _copy_static(self._client._c, ffi.NULL, 0, n)  # only the length: one C call
        return n[0] != self._static_len

    def _send_frame(self, frame: Dict[str, Any], room: Optional[int] = None) -> None:
        """Publish one frame as one Zenoh message."""
        if self._schema_changed():
            self._send_schema()  # the source appended to its schema: before this frame
        att, payload = self._encode(frame)
        self._pub.put(payload, attachment=att)

    def _send_frames(self, frame: Dict[str, Any], room: Optional[int]) -> None:
        """Publish ``frame`` and, while they are small, the frames already
        waiting behind it (at most ``room``), in order, batched."""
        read = self._client.read_next
        atts: List[bytes] = []
        datas: List[Any] = []
        size = 0
        limit = self.BATCH_FRAMES if room is None else max(min(room, self.BATCH_FRAMES), 1)
        while True:
            if self._schema_changed():
                self._flush(atts, datas)  # the frames before the append, then the schema
                size = 0
                self._send_schema()
            att, payload = self._encode(frame)
            if len(payload) >= self.BATCH_BYTES:
                self._flush(atts, datas)
                self._pub.put(payload, attachment=att)
                return
            atts.append(att)
            datas.append(payload)
            size += len(payload)
            if len(atts) >= limit or size >= self.BATCH_BYTES:
                break
            frame = read()  # no wait: only a frame that is already there
            if frame is None:
                break
        self._flush(atts, datas)

    def _flush(self, atts: List[bytes], datas: List[Any]) -> None:
        if len(atts) == 1:
            self._pub.put(datas[0], attachment=atts[0])
        elif atts:
            self._pub.put(b"".join(datas), attachment=_HEAD.pack(_MAGIC, _VERSION, _BATCH, len(atts),
                                                                 self._session_id) + b"".join(atts))
            self._batches += 1
        atts.clear()
        datas.clear()

    def _encode(self, frame: Dict[str, Any]) -> Tuple[bytes, Any]:
        """A frame's attachment and payload (a copy out of shared memory:
        the views change at the client's next read); counted as sent."""
        handle = self._client._c
        ids = self._ids if self._ids_handle is handle else None
        md: Any = None
        table: List[int] = []
        views = []
        total = 0
        for name, entry in frame.items():
            if name == "__metadata__":
                md = entry
                continue
            sid = ids.get(name) if ids is not None else None
            if sid is None:
                sid = self._stream_id(name)
                ids = self._ids
            nbytes = entry["bytes"]
            table += (sid, entry["elem_count"], nbytes)
            views.append(entry["data"])
            total += nbytes
        if total < 65536:
            payload: Any = bytes(views[0]) if len(views) == 1 else b"".join(views)
        else:
            # Large frames: one copy out of shared memory into a reused
            # buffer (Zenoh copies it again as it takes it: this
            # eclipse-zenoh takes only bytes or bytearray, no other buffer),
            # sent before the next read reuses it.
            if len(self._buf) != total:
                self._buf = bytearray(total)
            mv = memoryview(self._buf)
            off = 0
            for v in views:
                mv[off:off + len(v)] = v
                off += len(v)
            payload = self._buf
        dropped = md["dropped"]
        att = _frame_struct(len(views)).pack(_MAGIC, _VERSION, _FRAME, len(views), self._session_id,
                                             md["frame_id"], md["sim_time"], dropped, self._static_len,
                                             *table)
        self._frames += 1
        self._bytes += total
        if dropped:
            self._dropped += dropped
        return att, payload

    @property
    def stats(self) -> Dict[str, Any]:
        """``frames``/``bytes`` published, ``dropped`` (frames the source
        ring overwrote before the bridge read them), ``schemas`` sent,
        ``sources`` (servers followed), ``batches`` (Zenoh messages that
        carried more than one frame)."""
        return {"frames": self._frames, "bytes": self._bytes, "dropped": self._dropped,
                "schemas": self._schemas, "sources": self._sources, "batches": self._batches}

    def _stream_id(self, name: str) -> int:
        ids = self._ids
        sid = ids.get(name) if ids is not None and self._ids_handle is self._client._c else None
        if sid is None:
            c = self._client
            c.refresh_static()
            self._ids = ids = {s["name"]: s["id"] for s in c.get_streams_info()}
            self._ids_handle = c._c
            sid = ids.get(name)
            if sid is None and name.startswith("stream_") and name[7:].isdigit():
                sid = int(name[7:])  # the client names a stream not in its schema this way
            if sid is None:
                raise RuntimeError(f"bridge out: stream {name!r} of '{self.name}' has no id")
        return sid

    _ids: Optional[Dict[str, int]] = None
    _ids_handle: Any = None
    _session_id = 0
    _static_len = -1

    def close(self) -> None:
        """Stop, withdraw the liveliness tokens, close the Zenoh session and
        the region client."""
        self.stop()
        if self.session is None:
            return
        try:
            if self._source_token is not None:
                self._source_token.undeclare()
            self._bridge_token.undeclare()
        finally:
            self.session.close()
            self.session = None
            self._client.close()


class BridgeIn(_Runner):
    """Mirror the frames published under ``key`` as local region ``as_name``.

    The mirror is an ordinary region created with the source's config and
    schema (``slots`` overrides the number of frame slots); local readers
    use ``Client``.  A worker thread publishes the frames into the mirror in
    order: ``delivery="latest"`` feeds it from a small drop-old ring (a
    slow mirror never backs up the link), ``"reliable"`` from a bounded
    FIFO that, when full, stops Zenoh reading the link (pressure goes back
    to the bridge out, nothing is lost).  The bridge out's delivery is
    announced with the schema (``stats["delivery"]``); a different one
    given here is reported in the log.
    """

    def __init__(self, key: str, as_name: str, *, delivery: str = "latest",
                 config: Union[None, str, "zenoh.Config"] = None, listen: Sequence[str] = (),
                 connect: Sequence[str] = (), mode: Optional[str] = None,
                 multicast_scouting: Optional[bool] = None, shm_dir: Optional[str] = None,
                 slots: Optional[int] = None, mode_bits: int = 0o600,
                 log: Optional[Callable[[str], None]] = None) -> None:
        if lib.shmx_check_name(as_name.encode() if isinstance(as_name, str) else b"") != 0:
            raise ValueError(f"BridgeIn: as_name {as_name!r} is not a region name ([A-Za-z0-9._-], 1..200)")
        if slots is not None and (not isinstance(slots, int) or slots < 1):
            raise ValueError(f"BridgeIn: slots must be a positive int, not {slots!r}")
        self.key, self.as_name = _check_key(key), as_name
        self.delivery = _check_delivery(delivery)
        self.shm_dir, self.slots, self.mode_bits = shm_dir, slots, mode_bits
        self._log = log or (lambda msg: None)
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._mirror: Optional[Server] = None
        self._kept: Optional[Server] = None  # closed mirror whose name we keep
        self._source: Optional[Tuple[int, Any]] = None  # (session, config) of the mirror
        self._raw = b""
        self._last_id = 0
        self._querying = False
        self.source_alive = False
        self.bridge_alive = False
        self.state = "waiting"  # waiting / live / source gone / bridge gone
        self.stats: Dict[str, int] = {"frames": 0, "bytes": 0, "skipped": 0, "mirrors": 0,
                                      "source_dropped": 0, "lost": 0}
        cfg = zenoh_config(config, listen=listen, connect=connect, mode=mode,
                           multicast_scouting=multicast_scouting)
        self.session = zenoh.open(cfg)
        # One worker thread publishes into the mirror, fed by a drop-old ring
        # (latest) or a bounded FIFO that stops Zenoh reading the link when
        # full (reliable: pressure goes back to the bridge out, nothing is
        # lost on the way).  A Python callback run straight from Zenoh's
        # receiving thread measured 14x slower here (taking the GIL from a
        # foreign thread per frame).
        handler = (zenoh.handlers.RingChannel(8) if self.delivery == "latest"
                   else zenoh.handlers.FifoChannel(256))
        self._sub = self.session.declare_subscriber(f"{key}/frames", handler)
        self._worker = threading.Thread(target=self._drain, name="BridgeIn-mirror", daemon=True)
        self._worker.start()
        self._alive = self.session.liveliness().declare_subscriber(f"{key}/alive/*", self._on_alive,
                                                                   history=True)
        self._query_schema()

    # ------------------------------------------------------------- messages
    def _drain(self) -> None:
        recv = self._sub.handler.recv
        while not self._stop.is_set():
            try:
                sample = recv()
            except Exception:  # the subscriber was undeclared: closing
                return
            self._on_sample(sample)

    def _on_sample(self, sample: Any) -> None:
        att = sample.attachment
        if att is None:
            return
        head = att.to_bytes()
        if len(head) < _HEAD.size or head[:4] != _MAGIC or head[4] != _VERSION:
            return
        kind = head[5]
        try:
            with self._lock:
                if kind == _FRAME:
                    self._on_frame(_frame_struct(head[6] | head[7] << 8).unpack_from(head),
                                   sample.payload.to_bytes())
                elif kind == _BATCH:
                    self._on_batch(head, sample.payload.to_bytes())
                elif kind == _SCHEMA:
                    self._apply_schema(head, sample.payload.to_bytes())
                elif kind == _GONE:
                    session = _HEAD.unpack_from(head)[4]
                    if self._source is not None and self._source[0] == session:
                        self._mirror_gone("source gone")
        except Exception as exc:  # never let a bad message kill Zenoh's thread
            self._log(f"bridge in: {type(exc).__name__}: {exc}")

    def _on_batch(self, head: bytes, data: bytes) -> None:
        """Frames batched in one message: each record, then its bytes."""
        off, pos = _HEAD.size, 0
        for _ in range(head[6] | head[7] << 8):
            fields = _frame_struct(head[off + 6] | head[off + 7] << 8).unpack_from(head, off)
            off += _FRAME_FIXED + 12 * fields[3]
            total = sum(fields[11::3])
            self._on_frame(fields, data[pos:pos + total])
            pos += total

    def _on_frame(self, fields: Tuple[Any, ...], data: bytes) -> None:
        mirror = self._mirror
        n = fields[3]
        session, fid, sim_time, dropped, static_len = fields[4:9]
        if mirror is None or self._source is None or self._source[0] != session \
                or static_len != len(self._raw):
            self.stats["skipped"] += 1
            self._query_schema()
            return
        if fid <= self._last_id:
            self.stats["skipped"] += 1
            return
        # The C calls straight (the Server methods' checks cost more than
        # the work for small frames); the handle is ours and alive here.
        s = mirror._s
        h = _begin(s)
        if h < 0:
            self.stats["skipped"] += 1  # every mirror slot pinned by its readers
            return
        if n == 1:
            st = _append(s, h, fields[9], data, len(data), fields[10])
        else:
            mv = memoryview(data)
            off, st = 0, 0
            for i in range(9, 9 + 3 * n, 3):
                nbytes = fields[i + 2]
                if st == 0:
                    st = _append(s, h, fields[i], _from_buffer(mv[off:off + nbytes]), nbytes, fields[i + 1])
                off += nbytes
        if st == 0:
            st = _publish_as(s, h, sim_time, fid)
        if st != 0:
            self.stats["skipped"] += 1
            self._log(f"bridge in: frame {fid} refused by the mirror: "
                      f"{ffi.string(lib.shmx_last_error()).decode(errors='replace')}")
            return
        stats = self.stats
        if dropped or fid != self._last_id + 1:
            if self._last_id and fid - self._last_id - 1 > dropped:
                stats["lost"] += fid - self._last_id - 1 - dropped
            stats["source_dropped"] += dropped
        self._last_id = fid
        stats["frames"] += 1
        stats["bytes"] += len(data)

    def _apply_schema(self, head: bytes, raw: bytes) -> None:
        (_, _, _, delivery_code, session, slots, reader_slots, frame_cap, static_cap, control,
         raw_len) = _SCHEMA_HEAD.unpack_from(head)
        checksum = head[_SCHEMA_HEAD.size:].decode("ascii", "replace")
        if len(raw) != raw_len:
            return
        announced = DELIVERY_MODES[delivery_code] if delivery_code < len(DELIVERY_MODES) else "?"
        if self.stats.get("delivery") != announced:
            self.stats["delivery"] = announced  # type: ignore[assignment]
            if announced != self.delivery:
                self._log(f"bridge in: the bridge out uses {announced} delivery, not {self.delivery}")
        config = (slots, reader_slots, frame_cap, static_cap, control, checksum)
        if self._mirror is not None and self._source == (session, config) \
                and raw.startswith(self._raw):
            if len(raw) > len(self._raw):  # the source appended to its schema
                if not self._mirror.write_static_append(raw[len(self._raw):]):
                    self._log(f"bridge in: schema append refused: {self._mirror.last_error}")
                    return
                self._raw = raw
                self._log(f"bridge in: schema of '{self.as_name}' now {len(raw)} bytes")
            return
        # A new source session (or the first): a new mirror server on the name.
        mirror = Server()
        old = self._mirror or self._kept
        if old is not None:
            old.destroy(unlink=False)  # readers see it gone; create() below reclaims the name
        ok = mirror.create(self.as_name, slots=self.slots or slots, reader_slots=reader_slots,
                           static_bytes_cap=static_cap, frame_bytes_cap=frame_cap,
                           control_per_reader=control, mode=self.mode_bits,
                           checksum=checksum if checksum in _CHECKSUMS else "auto",
                           shm_dir=self.shm_dir, static_directory=raw)
        self._mirror, self._kept = (mirror, None) if ok else (None, None)
        if not ok:
            self._log(f"bridge in: cannot create mirror '{self.as_name}': {mirror.last_error}")
            self._source = None
            return
        self._source = (session, config)
        self._raw = raw
        self._last_id = 0
        self.stats["mirrors"] += 1
        self.state = "live"
        self._log(f"bridge in: '{self.key}' (source session {session:016x}) -> region '{self.as_name}'")

    def _mirror_gone(self, why: str) -> None:
        """Close the mirror, keeping its name: readers see the server gone."""
        if self._mirror is not None:
            self._mirror.destroy(unlink=False)
            self._kept = self._mirror
            self._mirror = None
            self._log(f"bridge in: {why}; mirror '{self.as_name}' closed")
        self._source = None
        self._raw = b""
        self.state = why

    def _on_alive(self, sample: Any) -> None:
        which = str(sample.key_expr).rsplit("/", 1)[-1]
        present = sample.kind == zenoh.SampleKind.PUT
        with self._lock:
            if which == "bridge":
                self.bridge_alive = present
            elif which == "source":
                self.source_alive = present
                if present:
                    self._query_schema()
                else:
                    self._mirror_gone("source gone" if self.bridge_alive else "bridge gone")

    def _query_schema(self) -> None:
        with self._lock:
            if self._querying or self.session is None:
                return
            self._querying = True

        def on_reply(reply: Any) -> None:
            sample = reply.ok
            if sample is not None and sample.attachment is not None:
                self._on_sample(sample)

        def done() -> None:
            with self._lock:
                self._querying = False

        try:
            self.session.get(f"{self.key}/schema", zenoh.handlers.Callback(on_reply, done), timeout=2.0)
        except Exception:
            done()

    # ------------------------------------------------------------ lifecycle
    def run(self, duration: Optional[float] = None) -> Dict[str, Any]:
        """Mirror until ``stop()`` or ``duration`` seconds (the work happens
        in Zenoh's threads); returns the statistics (``frames``, ``bytes``,
        ``skipped``, ``mirrors``: servers created, ``source_dropped``: gaps
        the source side reported, ``lost``: frames the link lost)."""
        self._stop.wait(duration)
        return dict(self.stats)

    def close(self) -> None:
        """Stop, close the Zenoh session and remove the mirror region."""
        self._stop.set()
        session, self.session = self.session, None
        if session is not None:
            try:
                self._sub.undeclare()  # ends the worker's recv()
            finally:
                session.close()
        self._worker.join(timeout=5)
        self.stop()
        with self._lock:
            for srv in (self._mirror, self._kept):
                if srv is not None:
                    srv.destroy()
            if self._kept is not None or self._mirror is not None:
                # a kept name (closed mirror) is removed too; a live one by destroy()
                try:
                    unlink(self.as_name, shm_dir=self.shm_dir or None)
                except ShmxError:
                    pass  # already gone, or a live server holds the name now
            self._mirror = self._kept = None
