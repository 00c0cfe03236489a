"""Example 1 of the shmx documentation: video frame streaming.

A producer publishes 1920x1080 RGB frames (random pixels standing in for a
camera) with their width and height; a consumer in another process reads the
newest frame, views its pixels as a numpy array and reports it.

    python examples/video_frames.py                 # 1000 frames at 30 fps, as documented
    python examples/video_frames.py --frames 30     # a short run

``video_server`` and ``video_client`` are the documented functions with
their indentation restored; what this script adds (a bounded run, a region
name option, waiting for the consumer, running the two in separate
processes, clean shutdown on Ctrl-C) is marked in comments.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

import numpy as np

import shmx

DEFAULT_NAME = "video_stream"


def one_line_per_write() -> None:
    """Added: write each printed line in one piece as soon as it ends, so the
    lines of processes sharing a terminal or pipe never interleave (also
    under ``python -u``)."""
    sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[attr-defined]


def wait_for_readers(server: shmx.Server, count: int, timeout: float = 10.0) -> bool:
    """Added: wait until ``count`` clients are attached, so a short run does
    not publish its frames before anyone is looking."""
    deadline = time.monotonic() + timeout
    while server.get_header_info().get("readers_connected", 0) < count:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# Server: Publish video frames
def video_server(name: str = DEFAULT_NAME, frames: int = 1000, fps: float = 30.0,
                 readers: int = 0) -> bool:
    streams = [
        shmx.create_stream_spec(1, "width", shmx.DT_U32, 1, 4),
        shmx.create_stream_spec(2, "height", shmx.DT_U32, 1, 4),
        shmx.create_stream_spec(3, "pixels", shmx.DT_U8, 1, 1),
    ]
    server = shmx.Server()
    # frame_bytes_cap is exactly one 1920x1080 RGB image, as documented.
    if not server.create(name, slots=4, frame_bytes_cap=1920 * 1080 * 3, streams=streams):
        print(f"Server: failed to create '{name}': {server.last_error}")  # added check
        return False
    try:
        if readers and not wait_for_readers(server, readers):
            print("Server: no consumer attached, publishing anyway")
        width, height = 1920, 1080
        for frame_num in range(frames):
            # Generate dummy frame (would be real camera data)
            pixels = np.random.randint(0, 255, (height, width, 3), dtype=np.uint8)
            frame = server.begin_frame()
            server.append_stream(frame, 1, width.to_bytes(4, 'little'), 1)
            server.append_stream(frame, 2, height.to_bytes(4, 'little'), 1)
            # Added: the documented call ignores the result; a refused stream
            # would leave consumers without pixels, so say so.
            if not server.append_stream(frame, 3, pixels.tobytes(), width * height * 3):
                print(f"Server: pixels refused: {server.last_error}")
                return False
            server.publish_frame(frame, time.time())
            time.sleep(1 / fps)  # 30 FPS by default
        print(f"Server: published {frames} frames")
        return True
    finally:
        server.destroy()  # also on Ctrl-C: nothing is left in /dev/shm


# Client: Consume video frames
def video_client(name: str = DEFAULT_NAME, last_frame: int = 0, fps: float = 30.0,
                 connect_timeout: float = 10.0) -> int:
    """Returns how many distinct frames were received.  Stops after frame
    ``last_frame`` (0: never) or once the server is gone."""
    client = shmx.Client()
    # Added: the consumer may start before the producer has created the region.
    deadline = time.monotonic() + connect_timeout
    while not client.open(name):
        if time.monotonic() >= deadline:
            print(f"Client: cannot open '{name}': {client.last_error}")
            return 0
        time.sleep(0.02)
    received = 0
    last_id = -1
    try:
        while True:
            # Added: a bounded run ends once the producer is gone and its
            # last frame was read (looked at before the read, so a frame
            # published just before it left is not missed).
            producer_gone = client.server_alive() is False
            new_frame = False
            frame = client.get_latest_frame()
            if frame:
                frame_id = frame['__metadata__']['frame_id']
                # Added: the documented loop prints the same frame again when
                # no new one arrived in the meantime; print each frame once.
                if frame_id != last_id:
                    new_frame = True
                    width = int.from_bytes(frame['width']['data'], 'little')
                    height = int.from_bytes(frame['height']['data'], 'little')
                    # Zero-copy access to pixel data
                    pixels_view = frame['pixels']['data']
                    # A numpy array over the same shared memory (no copy)
                    pixels = np.frombuffer(pixels_view, dtype=np.uint8).reshape((height, width, 3))
                    print(f"Received frame {frame_id}: {width}x{height}")
                    # Process frame...
                    received += 1
                    last_id = frame_id
                    if last_frame and frame_id >= last_frame:
                        break
            if producer_gone and not new_frame:
                break
            time.sleep(1 / fps)
    finally:
        client.close()
    print(f"Client: received {received} frames, last frame id {last_id}")
    return received


def _client_process(name: str, last_frame: int, fps: float) -> None:
    """Entry point of the consumer process."""
    one_line_per_write()
    try:
        received = video_client(name, last_frame, fps)
    except KeyboardInterrupt:
        received = 1  # Ctrl-C: a normal way to stop
    sys.exit(0 if received else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="region name (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=1000, help="frames to publish (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=30.0, help="publish rate (default: %(default)s)")
    args = parser.parse_args(argv)
    one_line_per_write()

    # The consumer runs in its own process, started fresh (spawn), as it
    # would be in a real deployment; the producer runs here.
    ctx = multiprocessing.get_context("spawn")
    consumer = ctx.Process(target=_client_process, args=(args.name, args.frames, args.fps))
    consumer.start()
    ok = interrupted = False
    try:
        ok = video_server(args.name, args.frames, args.fps, readers=1)
    except KeyboardInterrupt:
        interrupted = True  # the server is already destroyed (its finally)
        print("Interrupted")
    # The consumer stops by itself once it is done or sees the server gone
    # (after a Ctrl-C too); if the server never started, it has nothing to
    # wait for.
    consumer.join(timeout=30 if ok or interrupted else 0)
    if consumer.is_alive():
        consumer.terminate()
        consumer.join()
    if interrupted:
        return 130
    return 0 if ok and consumer.exitcode == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
