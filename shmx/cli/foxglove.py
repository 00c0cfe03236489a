"""``shmx foxglove NAME...``: live regions in Foxglove, over the Foxglove
WebSocket protocol served by the ``foxglove-sdk`` package (extra
``shmx[foxglove]``, imported only when this command runs).

Each region's streams become channels ``/<region>/<stream>`` with the
same messages an MCAP recording holds (``shmx.cli.mcap``): image streams as
``foxglove.RawImage``, others as ``shmx.Stream*``, protobuf with the
schema in the advertisement, so Foxglove needs no plugin.  It is a live
view: each turn sends the newest frame of each region (``--max-fps`` caps
the rate), and a message is encoded only while some client subscribes.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Tuple

from . import protowire as pw
from .util import (EXIT_OK, EXIT_USAGE, CliError, Stop, check_name, code_for_status, finishing,
                       shm_dir_of, stop_on_sigterm)
from .image import image_geometry
from .mcap import encode_stream, publish_ns, value_type
from ..client import Client, connect
from ..errors import ShmxError


def require_foxglove() -> Any:
    """The ``foxglove`` SDK module, or a CliError saying how to get it."""
    try:
        import foxglove
        foxglove.start_server  # noqa: B018 - the WebSocket part is there
    except (ImportError, AttributeError):
        raise CliError("shmx foxglove needs the Foxglove SDK: pip install 'shmx[foxglove]'") from None
    return foxglove


class _LiveRegion:
    """One region and the Foxglove channels of its streams."""

    def __init__(self, fox: Any, name: str, client: Client) -> None:
        self.fox = fox
        self.name = name
        self.client = client
        self.specs = {s["name"]: s for s in client.get_streams_info()}
        self.channels: Dict[str, Tuple[Any, str]] = {}
        self.last_id = 0
        self.sent = 0
        self.next_due = 0.0

    def _channel(self, stream: str, image: bool) -> Tuple[Any, str]:
        ch = self.channels.get(stream)
        if ch is None:
            spec = self.specs[stream]
            if image:
                schema = self.fox.Schema(name=pw.RAW_IMAGE_NAME, encoding="protobuf", data=pw.RAW_IMAGE_SCHEMA)
            else:
                vt = value_type(spec)
                schema = self.fox.Schema(name=f"shmx.{vt.name}", encoding="protobuf",
                                         data=pw.stream_schema(vt.name, vt.proto_type))
            chan = self.fox.Channel(f"/{self.name}/{stream}", schema=schema, message_encoding="protobuf",
                                    metadata={"shmx.region": self.name, "shmx.stream_id": str(spec["id"])})
            ch = self.channels[stream] = (chan, "image" if image else "stream")
        return ch

    def send(self, frame: Dict[str, Any]) -> None:
        meta = frame["__metadata__"]
        now = time.time_ns()
        stamp = publish_ns(meta["sim_time"], now)
        for key, entry in frame.items():
            if key == "__metadata__" or key not in self.specs:
                continue
            spec = self.specs[key]
            geo = image_geometry(key, spec, frame, self.specs)
            chan, kind = self.channels.get(key) or self._channel(key, geo is not None)
            if not chan.has_sinks():
                continue  # nobody looks: do not even encode
            data = memoryview(entry["data"]).cast("B")
            if kind == "image":
                if geo is None:
                    continue  # this frame's shape does not fit: skip the picture
                msg = b"".join((pw.raw_image_head(stamp, self.name, geo.width, geo.height, geo.encoding,
                                                  geo.step, data.nbytes), data))
            else:
                msg = encode_stream(value_type(spec), meta["frame_id"], meta["sim_time"],
                                    entry["elem_count"], spec["components"], data)
            chan.log(msg, log_time=now)
        self.sent += 1


def _port_of(server: Any) -> int:
    """The port the SDK's server listens on (a property in some versions, a method in others)."""
    port = server.port
    return int(port() if callable(port) else port)


def cmd_foxglove(args: argparse.Namespace) -> int:
    fox = require_foxglove()
    shm_dir = shm_dir_of(args)
    for n in args.names:
        check_name(n)
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0..65535, not {args.port}", EXIT_USAGE)
    stop_on_sigterm()
    clients: List[Client] = []
    server = None
    try:
        for n in args.names:
            try:
                clients.append(connect(n, timeout=args.wait, shm_dir=shm_dir))
            except ShmxError as exc:
                raise CliError(str(exc), code_for_status(exc.status)) from None
        regions = [_LiveRegion(fox, n, c) for n, c in zip(args.names, clients)]
        try:
            server = fox.start_server(name="shmx", host=args.host, port=args.port)
        except Exception as exc:  # the SDK raises its own error types
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        print(f"serving {', '.join(args.names)} on ws://{args.host}:{_port_of(server)} "
              f"(Foxglove: Open connection > Foxglove WebSocket)", flush=True)
        _serve(regions, args)
    except (KeyboardInterrupt, Stop):
        pass
    finally:
        finishing()
        if server is not None:
            server.stop()
        for c in clients:
            c.close()
    return EXIT_OK


def _serve(regions: List[_LiveRegion], args: argparse.Namespace) -> None:
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    gap = 1.0 / args.max_fps if args.max_fps > 0 else 0.0
    turn = 0
    while deadline is None or time.monotonic() < deadline:
        sent = False
        for r in regions:
            now = time.monotonic()
            if now < r.next_due:
                continue
            frame = r.client.get_latest_frame()
            if frame is None or frame["__metadata__"]["frame_id"] == r.last_id:
                continue
            r.last_id = frame["__metadata__"]["frame_id"]
            r.next_due = now + gap
            r.send(frame)
            sent = True
        if not sent:
            now = time.monotonic()
            ready = [r for r in regions if r.next_due <= now]
            if not ready:  # every region waits for its --max-fps turn
                time.sleep(min(min(r.next_due for r in regions) - now, 0.05))
                continue
            r = ready[turn % len(ready)]
            turn += 1
            wait = 0.05 if len(regions) == 1 else 0.01
            # Sleep until a frame comes; the next turn sends it.
            if r.client.wait_frame(wait) is None and r.client.server_alive() is False:
                print(f"shmx foxglove: the server of '{r.name}' went away", file=sys.stderr)
                regions.remove(r)
                if not regions:
                    return


__all__ = ["cmd_foxglove"]
