"""Example 5 of the shmx documentation: multi-process communication.

One producer process publishes a counter and a value (counter * 3.14);
three consumer processes attach to the same region and read the latest
frame at their own pace.

    python examples/multi_process.py                                 # as documented (~10 s)
    python examples/multi_process.py --frames 20 --interval 0.02    # a short run

``producer_process`` and ``consumer_process`` are the documented functions
with their indentation restored; additions are marked in comments.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import struct
import sys
import time

import shmx

DEFAULT_NAME = "multi_process_test"


def one_line_per_write() -> None:
    """Added: write each printed line in one piece as soon as it ends, so the
    lines of processes sharing a terminal or pipe never interleave (also
    under ``python -u``)."""
    sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[attr-defined]


def producer_process(name: str, frames: int = 100, interval: float = 0.1, readers: int = 0) -> None:
    """Producer process"""
    one_line_per_write()
    streams = [
        shmx.create_stream_spec(1, "counter", shmx.DT_U64, 1, 8),
        shmx.create_stream_spec(2, "value", shmx.DT_F64, 1, 8),
    ]
    server = shmx.Server()
    if not server.create(name, streams=streams):
        print(f"Producer: failed to create '{name}': {server.last_error}")  # added check
        sys.exit(1)
    print(f"Producer: Started on '{name}'")
    try:
        # Added: in a short run the frames could all be gone before the
        # consumers (fresh interpreters) are up; wait for them, within reason.
        deadline = time.monotonic() + 10.0
        while (server.get_header_info()["readers_connected"] < readers
               and time.monotonic() < deadline):
            time.sleep(0.01)
        for i in range(frames):
            frame = server.begin_frame()
            server.append_stream(frame, 1, struct.pack('Q', i), 1)
            server.append_stream(frame, 2, struct.pack('d', i * 3.14), 1)
            server.publish_frame(frame, time.time())
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        server.destroy()
    print("Producer: Done")


def consumer_process(name: str, consumer_id: int, reads: int = 50, interval: float = 0.2) -> None:
    """Consumer process"""
    one_line_per_write()
    client = shmx.Client()
    # The documented consumer sleeps 0.5 s and tries once; a started
    # interpreter may need longer, so retry for a while instead.
    deadline = time.monotonic() + 10.0
    while not client.open(name):
        if time.monotonic() >= deadline:
            print(f"Consumer {consumer_id}: Failed to connect")
            sys.exit(1)  # added: a non-zero exit code, so the parent knows
        time.sleep(0.05)
    print(f"Consumer {consumer_id}: Connected to '{name}'")
    count = 0
    try:
        for _ in range(reads):
            frame = client.get_latest_frame()
            if frame:
                counter = struct.unpack('Q', frame['counter']['data'])[0]
                value = struct.unpack('d', frame['value']['data'])[0]
                print(f"Consumer {consumer_id}: counter={counter}, value={value:.2f}")
                count += 1
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    print(f"Consumer {consumer_id}: Received {count} frames")
    if count == 0:
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="region name (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=100, help="frames to publish (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between frames; consumers read every 2x this (default: %(default)s)")
    parser.add_argument("--consumers", type=int, default=3, help="consumer processes (default: %(default)s)")
    args = parser.parse_args(argv)
    one_line_per_write()
    stream_name = args.name
    reads = max(args.frames // 2, 1)  # as documented: 50 reads at twice the interval

    # Fresh interpreters (spawn), as separate programs would be.
    ctx = multiprocessing.get_context("spawn")
    # Start producer
    producer = ctx.Process(target=producer_process,
                           args=(stream_name, args.frames, args.interval, args.consumers))
    producer.start()
    # Start multiple consumers
    consumers = []
    for i in range(args.consumers):
        consumer = ctx.Process(target=consumer_process, args=(stream_name, i, reads, 2 * args.interval))
        consumer.start()
        consumers.append(consumer)
    # Wait for completion
    try:
        producer.join()
        for consumer in consumers:
            consumer.join()
    except KeyboardInterrupt:
        # Added: a Ctrl-C in a terminal reaches every process of the group,
        # and each cleans up by itself (the producer destroys its region).
        # A SIGINT sent to this parent alone (kill -INT) does not: pass it on
        # to the children still running, then wait for them to finish.
        procs = [producer, *consumers]
        deadline = time.monotonic() + 0.3
        for proc in procs:
            proc.join(timeout=max(deadline - time.monotonic(), 0))
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        print("Interrupted")
        return 130
    print("All processes completed")
    failed = [p.name for p in [producer, *consumers] if p.exitcode != 0]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
