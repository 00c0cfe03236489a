"""Example 2 of the shmx documentation: sensor data with control messages.

A producer publishes temperature, pressure and humidity readings and
listens for control messages; a consumer in another process asks it for a
faster rate (CTRL_SET_RATE), prints the readings, and finally asks for a
reset (CTRL_RESET).

    python examples/sensors_control.py                          # as documented
    python examples/sensors_control.py --frames 100 --reads 30  # a short run

``sensor_server`` and ``sensor_client`` are the documented functions with
their indentation restored; additions are marked in comments.
"""
from __future__ import annotations

import argparse
import multiprocessing
import struct
import sys
import time

import shmx

DEFAULT_NAME = "sensors"

# Control message types
CTRL_SET_RATE = 0x1001
CTRL_RESET = 0x1002


def one_line_per_write() -> None:
    """Added: write each printed line in one piece as soon as it ends, so the
    lines of processes sharing a terminal or pipe never interleave (also
    under ``python -u``)."""
    sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[attr-defined]


def wait_for_readers(server: shmx.Server, count: int, timeout: float = 10.0) -> bool:
    """Added: wait until ``count`` clients are attached."""
    deadline = time.monotonic() + timeout
    while server.get_header_info().get("readers_connected", 0) < count:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# Server with control message handling
def sensor_server(name: str = DEFAULT_NAME, frames: int = 1000, readers: int = 0) -> bool:
    streams = [
        shmx.create_stream_spec(1, "temperature", shmx.DT_F32, 1, 4),
        shmx.create_stream_spec(2, "pressure", shmx.DT_F32, 1, 4),
        shmx.create_stream_spec(3, "humidity", shmx.DT_F32, 1, 4),
    ]
    server = shmx.Server()
    if not server.create(name, streams=streams):
        print(f"Server: failed to create '{name}': {server.last_error}")  # added check
        return False
    try:
        if readers and not wait_for_readers(server, readers):
            print("Server: no consumer attached, publishing anyway")
        rate = 10.0  # Hz
        for i in range(frames):
            # Poll control messages
            msgs = server.poll_control()
            for msg in msgs:
                if msg['type'] == CTRL_SET_RATE:
                    new_rate = struct.unpack('f', msg['data'])[0]
                    print(f"Reader {msg['reader_id']} set rate to {new_rate} Hz")
                    rate = new_rate
                elif msg['type'] == CTRL_RESET:
                    print(f"Reader {msg['reader_id']} requested reset")
            # Publish sensor data
            frame = server.begin_frame()
            server.append_stream(frame, 1, struct.pack('f', 25.0 + i * 0.1), 1)
            server.append_stream(frame, 2, struct.pack('f', 1013.25 + i * 0.01), 1)
            server.append_stream(frame, 3, struct.pack('f', 45.0 + i * 0.05), 1)
            server.publish_frame(frame, time.time())
            # Check reader health
            readers_now = server.snapshot_readers()
            print(f"Active readers: {len([r for r in readers_now if r['in_use']])}")
            time.sleep(1.0 / rate)
        print(f"Server: published {frames} frames")
        return True
    finally:
        server.destroy()  # also on Ctrl-C: nothing is left in /dev/shm


# Client with control messages
def sensor_client(name: str = DEFAULT_NAME, reads: int = 100, connect_timeout: float = 10.0) -> int:
    """Returns how many readings were printed."""
    client = shmx.Client()
    # Added: the consumer may start before the producer has created the region.
    deadline = time.monotonic() + connect_timeout
    while not client.open(name):
        if time.monotonic() >= deadline:
            print(f"Client: cannot open '{name}': {client.last_error}")
            return 0
        time.sleep(0.02)
    shown = 0
    try:
        print("Streams:", client.get_streams_info())
        # Request faster rate
        client.send_control(CTRL_SET_RATE, struct.pack('f', 100.0))
        for i in range(reads):
            # Added: stop when the server is gone (destroyed, e.g. on Ctrl-C
            # of the parent alone), looking every 50 reads.
            if i % 50 == 49 and client.server_alive() is False:
                print("Client: the server is gone")
                break
            frame = client.get_latest_frame()
            if frame:
                temp = struct.unpack('f', frame['temperature']['data'])[0]
                pressure = struct.unpack('f', frame['pressure']['data'])[0]
                humidity = struct.unpack('f', frame['humidity']['data'])[0]
                print(f"T={temp:.1f}°C P={pressure:.2f}hPa H={humidity:.1f}%")
                shown += 1
            time.sleep(0.01)
        # Added: the documented client defines CTRL_RESET but never sends
        # it; a message with no payload exercises the server's other branch.
        client.send_control_empty(CTRL_RESET)
    finally:
        client.close()
    print(f"Client: printed {shown} readings")
    return shown


def _client_process(name: str, reads: int) -> None:
    """Entry point of the consumer process."""
    one_line_per_write()
    try:
        shown = sensor_client(name, reads)
    except KeyboardInterrupt:
        shown = 1
    sys.exit(0 if shown else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="region name (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=1000,
                        help="sensor frames the server publishes (default: %(default)s)")
    parser.add_argument("--reads", type=int, default=100,
                        help="times the client reads the latest frame (default: %(default)s)")
    args = parser.parse_args(argv)
    one_line_per_write()

    ctx = multiprocessing.get_context("spawn")
    consumer = ctx.Process(target=_client_process, args=(args.name, args.reads))
    consumer.start()
    ok = interrupted = False
    try:
        ok = sensor_server(args.name, args.frames, readers=1)
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
