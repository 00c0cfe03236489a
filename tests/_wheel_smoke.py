"""The smoke test that tests/test_wheel.py runs inside a fresh venv where
shmx was installed from the wheel (never imported from the checkout).

    python _wheel_smoke.py server NAME FRAMES   # publish, one frame per ack; destroy on "quit"
    python _wheel_smoke.py client NAME FRAMES   # read each frame, check every byte, ack it
    python _wheel_smoke.py inspect NAME         # what an Inspector sees, as JSON

Each role first checks that ``shmx`` and its extension come from this
interpreter's environment (``sys.prefix``), prints JSON lines on stdout and
exits non-zero on any mismatch.  Every wait is bounded.  Runs on any
CPython >= 3.8 (the wheel is abi3).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import sysconfig
import time

import shmx

TIMEOUT = 30.0
ACK = 0x5EED


def payload(seq: int) -> bytes:
    """Frame ``seq``'s blob: its length and every byte follow from seq."""
    return hashlib.shake_256(struct.pack("<Q", seq)).digest(1000 + seq * 997)


def where() -> dict:
    ext = shmx._shmx.__file__
    for path in (shmx.__file__, ext):
        if not os.path.realpath(path).startswith(os.path.realpath(sys.prefix) + os.sep):
            sys.exit(f"shmx imported from {path}, outside this venv ({sys.prefix})")
    python_h = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    return {"shmx": shmx.__file__, "extension": os.path.basename(ext), "python": sys.version.split()[0],
            "python_h": python_h}


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def server(name: str, frames: int) -> None:
    streams = [shmx.create_stream_spec(1, "seq", shmx.DT_U64, 1, 8),
               shmx.create_stream_spec(2, "blob", shmx.DT_U8, 1, 1)]
    srv = shmx.Server()
    if not srv.create(name, slots=4, frame_bytes_cap=1 << 17, streams=streams):
        sys.exit(f"create: {srv.last_error}")
    emit(role="server", ready=True, **where())
    try:
        end = time.monotonic() + TIMEOUT
        while srv.get_header_info()["readers_connected"] < 1:
            if time.monotonic() > end:
                sys.exit("no reader connected")
            time.sleep(0.01)
        for seq in range(1, frames + 1):
            frame = srv.begin_frame()
            if frame is None:
                sys.exit(f"begin_frame: {srv.last_error}")
            blob = payload(seq)
            if not (srv.append_stream(frame, 1, struct.pack("<Q", seq), 1)
                    and srv.append_stream(frame, 2, blob, len(blob))
                    and srv.publish_frame(frame, seq * 0.5)):
                sys.exit(f"publish {seq}: {srv.last_error}")
            # Lockstep: the next frame only after the client acknowledged this
            # one, so the ring never overwrites a frame the client has not read.
            acked = False
            end = time.monotonic() + TIMEOUT
            while not acked:
                if time.monotonic() > end:
                    sys.exit(f"no ack for frame {seq}")
                srv.wait_control(timeout=1.0)
                for msg in srv.poll_control():
                    if msg["type"] != ACK or bytes(msg["data"]) != struct.pack("<Q", seq):
                        sys.exit(f"unexpected control message {msg}")
                    acked = True
        emit(role="server", published=frames)
        line = sys.stdin.readline()  # the test inspects the live region, then says quit
        if line.strip() != "quit":
            sys.exit(f"expected quit, got {line!r}")
    finally:
        srv.destroy()
    emit(role="server", destroyed=True)


def client(name: str, frames: int) -> None:
    info = where()
    with shmx.connect(name, timeout=TIMEOUT) as cli:
        names = [s["name"] for s in cli.get_streams_info()]
        if names != ["seq", "blob"]:
            sys.exit(f"streams {names}")
        checked = 0
        for seq in range(1, frames + 1):
            frame = cli.wait_next(timeout=TIMEOUT)
            if frame is None:
                sys.exit(f"no frame {seq}")
            got_seq = struct.unpack("<Q", bytes(frame["seq"]["data"]))[0]
            blob = bytes(frame["blob"]["data"])
            meta = frame["__metadata__"]
            if got_seq != seq or blob != payload(seq) or meta["sim_time"] != seq * 0.5 or meta["dropped"]:
                sys.exit(f"frame {seq}: seq {got_seq}, {len(blob)} bytes, meta {meta}: not what was published")
            checked += len(blob) + 8
            if not cli.send_control(ACK, struct.pack("<Q", seq)):
                sys.exit(f"send_control: {cli.last_error}")
    emit(role="client", frames=frames, bytes_checked=checked, **info)


def inspect(name: str) -> None:
    info = where()
    ins = shmx.Inspector()
    if not ins.open(name):
        sys.exit(f"inspector open: {ins.last_error}")
    try:
        seen = ins.inspect()
    finally:
        ins.close()
    emit(role="inspect", frame_seq=seen["frame_seq"], streams=[s["name"] for s in seen["streams"]],
         owner_alive=seen["header"]["owner_alive"], **info)


if __name__ == "__main__":
    role, region = sys.argv[1], sys.argv[2]
    if role == "server":
        server(region, int(sys.argv[3]))
    elif role == "client":
        client(region, int(sys.argv[3]))
    elif role == "inspect":
        inspect(region)
    else:
        sys.exit(f"unknown role {role!r}")
