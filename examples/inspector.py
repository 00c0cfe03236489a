"""Example 4 of the shmx documentation: the inspector, for debugging.

Prints what a running stream looks like (session, frame sequence, schema,
attached readers) without attaching to it as a reader and without writing
anything into it.

    python examples/inspector.py my_stream     # inspect a running producer's region
    python examples/inspector.py --demo        # start a small producer + reader here, then inspect it

``inspect_stream`` is the documented function with its indentation
restored; it now also returns whether the region could be opened, so the
script's exit status says so.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time

import shmx


def inspect_stream(name: str) -> bool:
    """Inspect a running stream without interfering"""
    inspector = shmx.Inspector()
    if not inspector.open(name):
        print(f"Failed to open stream '{name}'")
        return False
    # Get complete report
    report = inspector.inspect()
    print(f"\n=== Stream Inspection: {name} ===")
    print(f"Session ID: {report['session_id']}")
    print(f"Frame Sequence: {report['frame_seq']}")
    print(f"Readers Connected: {report['readers_connected']}")
    print(f"Static Generation: {report['static_gen']}")
    print("\nStreams:")
    for stream in report['streams']:
        print(f" [{stream['id']}] {stream['name']}")
        print(f" Type: {stream['dtype']} x {stream['components']}")
        print(f" Layout: {stream['layout']}")
        print(f" Bytes/elem: {stream['bytes_per_elem']}")
    print("\nReaders:")
    for reader in report['readers']:
        if reader['in_use']:
            print(f" Reader {reader['reader_id']}")
            print(f" Last frame: {reader['last_frame_seen']}")
            print(f" Heartbeat: {reader['heartbeat']}")
    inspector.close()
    return True


def demo(name: str, frames: int = 5) -> bool:
    """Added: a producer with one reader in this process, so the inspector
    has something to show without a second terminal."""
    streams = [
        shmx.create_stream_spec(1, "frame_id", shmx.DT_U64, 1, 8),
        shmx.create_stream_spec(2, "position", shmx.DT_F32, 3, 12, shmx.LAYOUT_AOS_VECTOR),
    ]
    with shmx.Server() as server, shmx.Client() as client:
        if not server.create(name, streams=streams):
            print(f"Failed to create '{name}': {server.last_error}")
            return False
        if not client.open(name):
            print(f"Failed to open '{name}': {client.last_error}")
            return False
        for i in range(frames):
            frame = server.begin_frame()
            server.append_stream(frame, 1, struct.pack('Q', i), 1)
            server.append_stream(frame, 2, struct.pack('3f', i, 2.0 * i, 3.0 * i), 1)
            server.publish_frame(frame, time.time())
            client.get_latest_frame()  # the reader's "Last frame" follows
        return inspect_stream(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", default=None,
                        help="region to inspect (default: my_stream, or inspector_demo with --demo)")
    parser.add_argument("--demo", action="store_true",
                        help="create a region with a reader first, inspect it, remove it")
    args = parser.parse_args(argv)
    if args.demo:
        ok = demo(args.name or "inspector_demo")
    else:
        ok = inspect_stream(args.name or "my_stream")
    return 0 if ok else 1


# Usage
if __name__ == '__main__':
    sys.exit(main())
