"""``shmx demo``: a producer process publishes a synthetic 640x480 RGB
video; this process reads it with ``wait_frame()``, verifies every byte,
and shows frames, fps, MB/s and latency as it goes.

The picture of frame ``n`` is a fixed colour pattern scrolled by ``n``
pixels, so the consumer can recompute exactly what each frame must hold
from the frame number the producer publishes alongside it.  Each frame
also carries its publish time (CLOCK_MONOTONIC ns, shared by every process
on the machine), which gives the latency, and streams named width, height
and channels, so ``shmx snapshot`` can write it as a PNG without --shape.

Run as ``python -m shmx.cli.demo NAME SECONDS FPS DIR`` it is the producer."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from .util import (EXIT_FAILURE, EXIT_OK, CliError, Progress, Stop, finishing, shm_dir_of,
                       stop_on_sigterm, to_json)
from .._common import DT_U8, DT_U32, DT_U64, create_stream_spec, unlink
from ..errors import ShmxError

WIDTH, HEIGHT, CHANNELS = 640, 480, 3
FRAME_BYTES = WIDTH * HEIGHT * CHANNELS
_PERIOD = 256  # the picture repeats every 256 frames

VIDEO, FRAME_NO, PUBLISH_NS, WIDTH_ID, HEIGHT_ID, CHANNELS_ID = 1, 2, 3, 4, 5, 6
STREAMS = [
    create_stream_spec(VIDEO, "video", DT_U8, CHANNELS, CHANNELS),
    create_stream_spec(FRAME_NO, "frame_no", DT_U64, 1, 8),
    create_stream_spec(PUBLISH_NS, "publish_ns", DT_U64, 1, 8),
    create_stream_spec(WIDTH_ID, "width", DT_U32, 1, 4),
    create_stream_spec(HEIGHT_ID, "height", DT_U32, 1, 4),
    create_stream_spec(CHANNELS_ID, "channels", DT_U32, 1, 4),
]


def make_pattern() -> bytes:
    """Pixels (x, y) -> (x, y, x+y) mod 256, with _PERIOD pixels of spare
    at the end so every frame is one contiguous slice."""
    row_r = bytes(x & 255 for x in range(WIDTH))
    out = bytearray()
    total_pixels = WIDTH * HEIGHT + _PERIOD
    rows = -(-total_pixels // WIDTH)
    for y in range(rows):
        g = y & 255
        pix = bytearray(WIDTH * 3)
        pix[0::3] = row_r
        pix[1::3] = bytes([g]) * WIDTH
        pix[2::3] = bytes((x + y) & 255 for x in range(WIDTH))
        out += pix
    return bytes(out[:total_pixels * 3])


def frame_slice(pattern: Any, frame_no: int) -> Any:
    """The expected pixels of frame ``frame_no``."""
    off = (frame_no % _PERIOD) * CHANNELS
    return pattern[off:off + FRAME_BYTES]


# ----------------------------------------------------------------- producer
def produce(name: str, seconds: float, fps: float, shm_dir: str) -> int:
    """Publish for ``seconds`` once a reader is attached; print a JSON line
    with the count at the end."""
    from ..errors import ShmxError
    from ..server import serve
    pattern = memoryview(make_pattern())
    stop_on_sigterm()
    try:
        server = serve(name, STREAMS, slots=4, frame_bytes_cap=FRAME_BYTES + 64, shm_dir=shm_dir)
    except ShmxError as exc:
        print(f"shmx demo: producer: {exc}", file=sys.stderr, flush=True)
        print(json.dumps({"published": 0}), flush=True)
        return 1
    published = 0
    try:
        deadline = time.monotonic() + 10.0
        while server.get_header_info()["readers_connected"] == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        dims = {WIDTH_ID: WIDTH.to_bytes(4, "little"), HEIGHT_ID: HEIGHT.to_bytes(4, "little"),
                CHANNELS_ID: CHANNELS.to_bytes(4, "little")}
        start = time.monotonic()
        end = start + seconds
        period = 1.0 / fps if fps > 0 else 0.0
        n = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if period:
                due = start + n * period
                if due > now:
                    time.sleep(due - now)
            n += 1
            handle = server.begin_frame()
            if handle is None:
                continue
            # Zero copy: the pixels go straight into the shared slot.
            server.loan(handle, VIDEO, WIDTH * HEIGHT)[:] = frame_slice(pattern, n)
            server.append_stream(handle, FRAME_NO, n.to_bytes(8, "little"), 1)
            for sid, value in dims.items():
                server.append_stream(handle, sid, value, 1)
            server.append_stream(handle, PUBLISH_NS, time.monotonic_ns().to_bytes(8, "little"), 1)
            if server.publish_frame(handle, n / fps if fps > 0 else now - start):
                published += 1
        # Let the consumer take the last frame before the region goes.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            seq = server.get_header_info()["frame_seq"]
            if all(r["last_frame_seen"] >= seq for r in server.snapshot_readers() if r["in_use"]):
                break
            time.sleep(0.002)
    except (KeyboardInterrupt, Stop):
        pass
    finally:
        finishing()
        server.destroy()
        print(json.dumps({"published": published}), flush=True)
    return 0


# ----------------------------------------------------------------- consumer
def _percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(int(q * (len(s) - 1) + 0.5), len(s) - 1)]


def run_demo(seconds: float, fps: float, shm_dir: str, name: str, progress: Progress) -> Dict[str, Any]:
    """Start the producer, consume and verify, return the summary."""
    from ..client import Client
    pattern = make_pattern()  # bytes: its slices compare with memcmp
    env = dict(os.environ, SHMX_DIR=shm_dir)
    producer = subprocess.Popen([sys.executable, "-m", "shmx.cli.demo", name, repr(seconds), repr(fps), shm_dir],
                                stdout=subprocess.PIPE, env=env)
    client = Client()
    received = mismatches = skipped = 0
    latencies: List[float] = []
    nbytes = 0
    last_no = 0
    first_t: Optional[float] = None
    last_t = 0.0
    status = ""
    interrupted = False
    try:
        deadline = time.monotonic() + 15.0
        while not client.open(name, shm_dir=shm_dir):
            if producer.poll() is not None or time.monotonic() > deadline:
                raise CliError(f"the demo producer did not start: {client.last_error}")
            time.sleep(0.005)
        while True:
            frame = client.wait_frame(0.25)
            if frame is None:
                if producer.poll() is not None or client.server_alive() is False:
                    break
                continue
            now_ns = time.monotonic_ns()
            no = int.from_bytes(frame["frame_no"]["data"], "little")
            latencies.append((now_ns - int.from_bytes(frame["publish_ns"]["data"], "little")) / 1e6)
            video = frame["video"]["data"]
            if video.tobytes() != frame_slice(pattern, no):
                mismatches += 1
            if last_no and no > last_no + 1:
                skipped += no - last_no - 1
            last_no = no
            received += 1
            nbytes += frame["video"]["bytes"]
            t = time.monotonic()
            if first_t is None:
                first_t = t
            last_t = t
            span = max(t - first_t, 1e-9)
            status = (f"frames {received:6d}  {received / span if received > 1 else 0:6.1f} fps  "
                      f"{nbytes / span / 1e6 if received > 1 else 0:7.1f} MB/s  "
                      f"latency {latencies[-1]:6.3f} ms  skipped {skipped}  bad {mismatches}")
            progress.update(status)
    except (KeyboardInterrupt, Stop):
        interrupted = True
    finally:
        finishing()
        if status:
            progress.update(status, force=True)  # the final count, also when not a terminal
        progress.done()
        client.close()
        # The producer ends by itself (it destroys its region, then prints
        # its count); stop it only if it does not.
        if interrupted and producer.poll() is None:
            # A SIGINT sent to this process alone (not a terminal's Ctrl-C,
            # which reaches the producer too): stop the producer now.
            producer.terminate()
        try:
            out, _ = producer.communicate(timeout=5 if interrupted else 10)
        except subprocess.TimeoutExpired:
            producer.terminate()
            out, _ = producer.communicate(timeout=15)
        # A producer that died without destroying its region leaves it stale.
        try:
            unlink(name, shm_dir=shm_dir)
        except ShmxError:
            pass  # destroyed after all, or someone else's by now
    try:
        published = json.loads(out.decode().strip().splitlines()[-1])["published"]
    except (ValueError, IndexError, KeyError):
        published = None
    span = max(last_t - (first_t or last_t), 1e-9)
    return {
        "region": name, "seconds": seconds, "width": WIDTH, "height": HEIGHT, "channels": CHANNELS,
        "published": published, "received": received, "skipped": skipped, "mismatches": mismatches,
        "fps": round(received / span, 1) if received > 1 else 0.0,
        "mb_per_s": round(nbytes / span / 1e6, 1) if received > 1 else 0.0,
        "latency_ms": {"p50": round(_percentile(latencies, 0.5), 3),
                       "p99": round(_percentile(latencies, 0.99), 3),
                       "max": round(max(latencies), 3) if latencies else 0.0},
        "removed": not os.path.exists(os.path.join(shm_dir, name)),
        "interrupted": interrupted,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    name = args.name or f"shmx-demo-{os.getpid()}"
    from .util import check_name
    check_name(name)
    stop_on_sigterm()
    print(f"shmx demo: a producer process publishes {WIDTH}x{HEIGHT}x{CHANNELS} video frames into "
          f"'{name}' ({shm_dir}) for {args.seconds:g} s at "
          f"{'full speed' if args.fps == 0 else f'{args.fps:g} fps'}; this process reads them "
          f"with wait_frame() and checks every byte", file=sys.stderr)
    s = run_demo(args.seconds, args.fps, shm_dir, name, Progress(plain_every=1.0))
    if args.json:
        print(to_json(s))
    else:
        lat = s["latency_ms"]
        print(f"published  {s['published'] if s['published'] is not None else '?'} frames "
              f"of {WIDTH}x{HEIGHT}x{CHANNELS} ({FRAME_BYTES} bytes)")
        print(f"received   {s['received']} frames, {s['skipped']} skipped "
              f"(wait_frame returns the newest frame; a slower reader skips)")
        print(f"verified   {s['received']} frames byte for byte, {s['mismatches']} mismatches")
        print(f"throughput {s['fps']} frames/s, {s['mb_per_s']} MB/s")
        print(f"latency    p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
              f"(publish to wake-up)")
        print(f"cleanup    region {name} {'removed' if s['removed'] else 'STILL PRESENT'}")
    if s["mismatches"] or s["received"] == 0 or not s["removed"]:
        print("shmx demo: FAILED: " + ("no frame received" if s["received"] == 0 else
                                       f"{s['mismatches']} frames had wrong bytes" if s["mismatches"] else
                                       "the region was left behind"), file=sys.stderr)
        return EXIT_FAILURE
    if s["interrupted"]:
        print("shmx demo: interrupted", file=sys.stderr)
        return 130  # the shell's code for a SIGINT, as the examples give
    return EXIT_OK


if __name__ == "__main__":
    _name, _seconds, _fps, _dir = sys.argv[1:5]
    sys.exit(produce(_name, float(_seconds), float(_fps), _dir))
