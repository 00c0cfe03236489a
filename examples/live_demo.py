"""Live demo: a synthetic 640x480 RGB video stream through shared memory.

This process is the producer: it writes each frame's pixels straight into
the shared-memory slot (``loan_array``, no copy) as a pattern derived from
the frame number, and stamps the frame with ``time.perf_counter()`` as its
``sim_time``.  A consumer process blocks in ``wait_frame()``, checks every
byte of every frame it gets, and shows a live line: frames received, rate,
MB/s, publish-to-receive latency in microseconds, frames dropped (the
producer never waits for it; a slower consumer skips to the newest frame).

    python examples/live_demo.py                  # 5 seconds at 500 fps
    python examples/live_demo.py --seconds 10 --fps 0   # flat out: watch the consumer skip frames

Ctrl-C stops both sides cleanly; nothing is left in /dev/shm.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

import shmx

DEFAULT_NAME = "live_demo"
WIDTH, HEIGHT = 640, 480

STREAM_FRAME_NO = 1   # u64: the frame number the pixels were made from
STREAM_SIZE = 2       # u32 x 2: width, height
STREAM_PIXELS = 3     # u8 x 3 per pixel (RGB), width * height elements

_patterns: Dict[Tuple[int, int], np.ndarray] = {}


def base_pattern(width: int, height: int) -> np.ndarray:
    """A fixed, position-dependent byte pattern: ``(width*height, 3)`` uint8."""
    key = (width, height)
    if key not in _patterns:
        n = width * height * 3
        idx = np.arange(n, dtype=np.uint32)
        _patterns[key] = ((idx * 7 + (idx >> 11)) & 0xFF).astype(np.uint8).reshape(-1, 3)
    return _patterns[key]


def fill_pixels(frame_no: int, out: np.ndarray) -> np.ndarray:
    """Write frame ``frame_no``'s pixels into ``out``: the base pattern
    shifted by the low byte and xor-ed with the next byte of the number, so
    frames that differ by less than 65536 never share a picture."""
    base = base_pattern(WIDTH, HEIGHT) if out.shape[0] == WIDTH * HEIGHT else None
    if base is None:
        raise ValueError(f"unexpected pixel count {out.shape[0]}")
    np.add(base, np.uint8(frame_no & 0xFF), out=out)
    np.bitwise_xor(out, np.uint8((frame_no >> 8) & 0xFF), out=out)
    return out


def region_leftovers(name: str) -> List[str]:
    """Files of region ``name`` still in the shared-memory directory."""
    d = shmx.default_shm_dir()
    try:
        return [f for f in os.listdir(d) if f == name or f.startswith(name + "~")]
    except FileNotFoundError:
        return []


def remove_if_stale(name: str) -> None:
    """Remove region ``name`` if its producer died without removing it
    (e.g. ``kill -9``).  A region with a live producer is left alone."""
    insp = shmx.Inspector()
    if not insp.open(name):
        return
    try:
        alive = insp.get_header_info().get("owner_alive")
    finally:
        insp.close()
    if alive is False:
        try:
            os.unlink(os.path.join(shmx.default_shm_dir(), name))
        except FileNotFoundError:
            pass


# --------------------------------------------------------------- consumer
class Stats:
    """What the consumer has seen, and the live line drawn from it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.frames = 0
        self.bytes = 0
        self.dropped = 0
        self.bad = 0
        self.latencies_us: List[float] = []
        self.last_id = 0
        # the window the live line's rates are computed over
        self.win_start = self.start
        self.win_frames = 0
        self.win_bytes = 0
        self.win_lat: List[float] = []

    def add(self, frame_id: int, nbytes: int, latency_us: float, ok: bool) -> None:
        if self.last_id and frame_id > self.last_id + 1:
            self.dropped += frame_id - self.last_id - 1
        self.last_id = frame_id
        self.frames += 1
        self.bytes += nbytes
        self.bad += not ok
        self.latencies_us.append(latency_us)
        self.win_frames += 1
        self.win_bytes += nbytes
        self.win_lat.append(latency_us)

    def live_line(self) -> str:
        now = time.perf_counter()
        span = max(now - self.win_start, 1e-9)
        lat = sorted(self.win_lat)
        med = lat[len(lat) // 2] if lat else 0.0
        line = (f"frames {self.frames:7d} | {self.win_frames / span:7.1f} fps | "
                f"{self.win_bytes / span / 1e6:8.1f} MB/s | latency {med:7.1f} us | "
                f"dropped {self.dropped:6d} | bad {self.bad}")
        self.win_start, self.win_frames, self.win_bytes, self.win_lat = now, 0, 0, []
        return line

    def summary(self) -> List[str]:
        span = max(time.perf_counter() - self.start, 1e-9)
        lat = sorted(self.latencies_us)

        def pct(p: float) -> float:
            return lat[min(int(p * len(lat)), len(lat) - 1)] if lat else 0.0

        mean = sum(lat) / len(lat) if lat else 0.0
        return [
            f"Consumer: received {self.frames} frames ({self.bytes / 1e6:.1f} MB) in {span:.2f} s: "
            f"{self.frames / span:.1f} fps, {self.bytes / span / 1e6:.1f} MB/s",
            f"Consumer: latency publish->receive: mean {mean:.1f} us, p50 {pct(0.5):.1f} us, "
            f"p99 {pct(0.99):.1f} us, max {lat[-1] if lat else 0.0:.1f} us",
            f"Consumer: dropped {self.dropped} frames (skipped while busy), "
            f"verified {self.frames - self.bad} frames byte for byte, {self.bad} bad",
        ]


def run_consumer(name: str, max_seconds: float) -> int:
    """Read frames until the producer is gone; exit status 0 when at least
    one frame arrived and every frame's bytes were right."""
    # Ctrl-C belongs to the producer: it removes the region, and we notice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        client = shmx.connect(name, timeout=10.0)
    except shmx.ShmxError as exc:
        print(f"Consumer: cannot connect to '{name}': {exc}", flush=True)
        return 1
    expected = np.empty((WIDTH * HEIGHT, 3), dtype=np.uint8)
    fill_pixels(0, expected)  # builds the base pattern now, not on the first frame
    stats = Stats()
    tty = sys.stdout.isatty()
    next_line = time.monotonic() + (0.25 if tty else 1.0)
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            frame = client.wait_frame(timeout=0.25)
            now = time.perf_counter()
            if frame is None:
                if client.server_alive() is not True:
                    break  # the producer finished (or died)
            else:
                meta = frame["__metadata__"]
                latency_us = (now - meta["sim_time"]) * 1e6
                frame_no = int.from_bytes(frame["frame_no"]["data"], "little")
                width, height = np.frombuffer(frame["size"]["data"], dtype="<u4")
                pixels = np.frombuffer(frame["pixels"]["data"], dtype=np.uint8).reshape(-1, 3)
                ok = (frame_no == meta["frame_id"] and (width, height) == (WIDTH, HEIGHT)
                      and np.array_equal(pixels, fill_pixels(frame_no, expected)))
                if not ok and stats.bad < 5:
                    print(f"\nConsumer: frame {meta['frame_id']} (number {frame_no}) has wrong bytes",
                          flush=True)
                stats.add(meta["frame_id"], frame["pixels"]["bytes"], latency_us, ok)
                del pixels  # the view must not outlive the frame it points into
            if time.monotonic() >= next_line:
                line = stats.live_line()
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
                next_line = time.monotonic() + (0.25 if tty else 1.0)
    finally:
        client.close()
        remove_if_stale(name)  # only if the producer died without cleaning up
    if tty:
        print()
    for line in stats.summary():
        print(line, flush=True)
    return 0 if stats.frames and not stats.bad else 1


# --------------------------------------------------------------- producer
def run_producer(name: str, seconds: float, fps: float) -> int:
    streams = [
        shmx.create_stream_spec(STREAM_FRAME_NO, "frame_no", shmx.DT_U64, 1, 8),
        shmx.create_stream_spec(STREAM_SIZE, "size", shmx.DT_U32, 2, 8, shmx.LAYOUT_AOS_VECTOR),
        shmx.create_stream_spec(STREAM_PIXELS, "pixels", shmx.DT_U8, 3, 3, shmx.LAYOUT_AOS_VECTOR),
    ]
    # SIGTERM/SIGHUP end the run like Ctrl-C does, through the finally below.
    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _stop)

    remove_if_stale(name)
    server = shmx.Server()
    if not server.create(name, slots=4, frame_bytes_cap=WIDTH * HEIGHT * 3 + 16, streams=streams):
        print(f"Producer: cannot create '{name}': {server.last_error}")
        return 1
    consumer: Optional[subprocess.Popen] = None
    published = 0
    interrupted = False
    elapsed = 0.0
    try:
        # The consumer runs in its own session, so a Ctrl-C in the terminal
        # reaches only us: we remove the region and it sees that and stops.
        consumer = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--consumer", "--name", name,
             "--seconds", str(seconds + 30.0)],
            start_new_session=True)
        print(f"Producer: streaming {WIDTH}x{HEIGHT} RGB frames on '{name}' for {seconds:g} s"
              f" ({'as fast as possible' if fps <= 0 else f'{fps:g} fps'})", flush=True)
        deadline = time.monotonic() + 10.0
        while server.get_header_info()["readers_connected"] < 1:
            if consumer.poll() is not None or time.monotonic() > deadline:
                print("Producer: the consumer did not attach")
                return 1
            time.sleep(0.005)

        size = np.array([WIDTH, HEIGHT], dtype="<u4")
        period = 1.0 / fps if fps > 0 else 0.0
        start = time.perf_counter()
        next_t = start
        end = start + seconds
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if period:
                if now < next_t:
                    time.sleep(next_t - now)
                next_t += period
            frame = server.begin_frame()
            if frame is None:  # every slot pinned: cannot happen with 4 slots, 1 reader
                continue
            frame_no = published + 1  # frame ids count publishes from 1
            server.append_stream(frame, STREAM_FRAME_NO, frame_no.to_bytes(8, "little"), 1)
            server.append_stream(frame, STREAM_SIZE, size, 1)
            fill_pixels(frame_no, server.loan_array(frame, STREAM_PIXELS, WIDTH * HEIGHT))
            server.publish_frame(frame, time.perf_counter())
            published += 1
        elapsed = time.perf_counter() - start
    except KeyboardInterrupt:
        interrupted = True
        elapsed = time.perf_counter() - start if published else 0.0
    finally:
        overruns = server.get_header_info().get("overruns", 0)
        server.destroy()
        if consumer is not None:
            try:
                consumer.wait(timeout=10)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                consumer.kill()
                consumer.wait()
        remove_if_stale(name)
    if interrupted:
        print("Producer: interrupted, stopped early")
    rate = published / elapsed if elapsed else 0.0
    print(f"Producer: published {published} frames in {elapsed:.2f} s ({rate:.1f} fps, "
          f"{published * WIDTH * HEIGHT * 3 / max(elapsed, 1e-9) / 1e6:.1f} MB/s), "
          f"{overruns} overruns")
    left = region_leftovers(name)
    print(f"Cleanup: {'left ' + ', '.join(left) if left else 'nothing left'} in {shmx.default_shm_dir()}")
    if interrupted:
        return 130
    return 0 if consumer is not None and consumer.returncode == 0 and not left else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to stream (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=500.0,
                        help="frames per second; 0 = as fast as the producer can (default: %(default)s)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="region name (default: %(default)s)")
    parser.add_argument("--consumer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Each printed line in one write, so the two processes' lines never mix.
    sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[attr-defined]
    if args.consumer:
        return run_consumer(args.name, args.seconds)
    return run_producer(args.name, args.seconds, args.fps)


if __name__ == "__main__":
    sys.exit(main())
