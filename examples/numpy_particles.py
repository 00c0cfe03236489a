"""Example 3 of the shmx documentation: multiple streams with numpy.

One process creates a server and a client on the same region, publishes
particle positions, velocities and ids as numpy arrays, and reads each
frame back as numpy arrays straight over shared memory.

    python examples/numpy_particles.py               # 100 frames, as documented
    python examples/numpy_particles.py --frames 20   # a short run

``numpy_example`` is the documented function with its indentation
restored; additions (options, a check that every frame reads back exactly
as published, clean-up on Ctrl-C) are marked in comments.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import shmx

DEFAULT_NAME = "particles"


def numpy_example(name: str = DEFAULT_NAME, frames: int = 100, num_particles: int = 1000,
                  interval: float = 0.01) -> bool:
    # Server
    streams = [
        shmx.create_stream_spec(1, "positions", shmx.DT_F32, 3, 12),
        shmx.create_stream_spec(2, "velocities", shmx.DT_F32, 3, 12),
        shmx.create_stream_spec(3, "ids", shmx.DT_U32, 1, 4),
    ]
    server = shmx.Server()
    if not server.create(name, frame_bytes_cap=1024 * 1024, streams=streams):
        print(f"Failed to create '{name}': {server.last_error}")  # added check
        return False
    # Client
    client = shmx.Client()
    if not client.open(name):
        print(f"Failed to open '{name}': {client.last_error}")  # added check
        server.destroy()
        return False
    intact = 0  # added: frames that read back exactly as published
    try:
        # Publish
        for i in range(frames):
            positions = np.random.randn(num_particles, 3).astype(np.float32)
            velocities = np.random.randn(num_particles, 3).astype(np.float32)
            ids = np.arange(num_particles, dtype=np.uint32)
            frame = server.begin_frame()
            server.append_stream(frame, 1, positions.tobytes(), num_particles)
            server.append_stream(frame, 2, velocities.tobytes(), num_particles)
            server.append_stream(frame, 3, ids.tobytes(), num_particles)
            server.publish_frame(frame, i * 0.01)
            # Read back
            frame_data = client.get_latest_frame()
            if frame_data:
                # Zero-copy view into shared memory
                pos_view = np.frombuffer(frame_data['positions']['data'], dtype=np.float32)
                pos_array = pos_view.reshape(-1, 3)
                vel_view = np.frombuffer(frame_data['velocities']['data'], dtype=np.float32)
                vel_array = vel_view.reshape(-1, 3)
                print(f"Frame {i}: {len(pos_array)} particles")
                print(f" Position range: [{pos_array.min():.2f}, {pos_array.max():.2f}]")
                # Added: the views must hold exactly what was just published.
                id_array = np.frombuffer(frame_data['ids']['data'], dtype=np.uint32)
                if (np.array_equal(pos_array, positions) and np.array_equal(vel_array, velocities)
                        and np.array_equal(id_array, ids)):
                    intact += 1
                else:
                    print(f" Frame {i} does not match what was published")
                # Drop the views before the next read replaces the frame.
                del pos_view, pos_array, vel_view, vel_array, id_array
            time.sleep(interval)
    finally:
        server.destroy()
        client.close()
    print(f"Read back {intact} of {frames} frames intact")
    return intact == frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="region name (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=100, help="frames to publish (default: %(default)s)")
    parser.add_argument("--particles", type=int, default=1000,
                        help="particles per frame (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=0.01,
                        help="seconds between frames (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        ok = numpy_example(args.name, args.frames, args.particles, args.interval)
    except KeyboardInterrupt:
        print("Interrupted")
        return 130
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
