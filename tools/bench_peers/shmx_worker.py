"""Benchmark worker for shmx: this repository's package, or shmx 1.0.1 when run
by the interpreter of the legacy virtual environment (same documented API;
what 1.0.1 lacks - wait_frame, read_next, loan - is reported as n/a).

Modes: producer begin_frame / append_stream / publish_frame; consumer
get_latest_frame busy-poll, wait_frame (futex) blocking, read_next_stream (in
order, with the dropped count) for the rate scenario.
"""
from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import SMALL, Unsupported, emit, make_sources, time_loop  # noqa: E402

import shmx  # noqa: E402

LEGACY = not hasattr(shmx.Client, "wait_frame")
STREAM = 1


def _region_args(cfg):
    n = int(cfg.get("n_consumers", 1))
    if cfg["scenario"] == "big":
        return {"slots": 4, "frame_bytes_cap": int(cfg["frame_bytes"]) + 4096,
                "reader_slots": max(16, n + 2)}
    if cfg["scenario"] == "latency":
        return {"slots": 8, "frame_bytes_cap": 256, "reader_slots": max(16, n + 2)}
    return {"slots": max(64, 2 * n + 4), "frame_bytes_cap": 256, "reader_slots": max(16, n + 2)}


class Sender:
    lossy = True

    def __init__(self, cfg):
        self.server = shmx.Server()
        elem = 1
        specs = [shmx.create_stream_spec(STREAM, "msg", shmx.DT_U8, 1, elem)]
        if not self.server.create(cfg["name"], streams=specs, **_region_args(cfg)):
            raise RuntimeError(f"Server.create failed: {getattr(self.server, 'last_error', '')}")
        s = self.server
        begin, append, publish = s.begin_frame, s.append_stream, s.publish_frame

        def send(msg):
            f = begin()
            append(f, STREAM, msg, len(msg))
            publish(f, 0.0)

        self.info = {"mode": "begin_frame + append_stream + publish_frame (copy into the slot)",
                     "slots": _region_args(cfg)["slots"]}
        if hasattr(s, "publish_stream"):
            # Ours: the whole one-stream frame in one C call.
            send = functools.partial(s.publish_stream, STREAM)
            self.info["mode"] = "publish_stream (one call: begin + copy into the slot + publish)"

        self.send = send
        if cfg.get("loan"):
            if LEGACY:
                raise Unsupported("shmx 1.0.1 has no loan()")
            loan = s.loan
            size = int(cfg["frame_bytes"])

            def send_loaned(src):
                # Zero-copy publish: the frame is produced in place (a camera
                # or renderer writing into the loan); here only its header
                # is written, so this measures the transport alone.
                f = begin()
                view = loan(f, STREAM, size)
                view[:24] = memoryview(src)[:24]
                publish(f, 0.0)

            self.send_big = send_loaned
            self.info = {"mode": "begin_frame + loan (written in place: header only) + publish_frame"}
        elif LEGACY:
            # 1.0.1's append_stream takes bytes only (its documented video
            # example calls pixels.tobytes()): that copy is part of its cost.
            self.send_big = lambda src: send(src.tobytes() if hasattr(src, "tobytes") else bytes(src))
        else:
            self.send_big = send

    def close(self):
        self.server.destroy()


class Receiver:
    can_poll = True
    can_block = not LEGACY
    no_block_reason = "shmx 1.0.1 has no blocking read (no wait_frame)"

    def __init__(self, cfg):
        self.client = shmx.Client()
        if not self.client.open(cfg["name"]):
            raise RuntimeError(f"Client.open failed: {getattr(self.client, 'last_error', '')}")
        self.stamp = 0
        self.dropped = None
        self.last = -1
        c = self.client
        latest = c.get_latest_frame
        in_order = cfg["scenario"] == "rate" and not LEGACY

        if in_order:
            # The one stream's view of the next frame in order (no dicts);
            # the client keeps the dropped count, read at the ends of the run.
            poll = functools.partial(c.read_next_stream, STREAM)
            self.dropped_total = lambda: (c.dropped_total, c.dropped)
            self.info = {"mode": "read_next_stream busy-poll (in order, dropped count)"}
        elif hasattr(c, "get_latest_stream"):
            # Ours: the one stream's view of the newest frame, None unless
            # it is newer than the last one read (no dict per frame).
            poll = functools.partial(c.get_latest_stream, STREAM, True)
            self.info = {"mode": "get_latest_stream(new_only=True) busy-poll"}
        else:
            def poll():
                f = latest()
                if f is None:
                    return None
                fid = f["__metadata__"]["frame_id"]
                if fid == self.last:
                    return None
                self.last = fid
                return f["msg"]["data"]
            self.info = {"mode": "get_latest_frame busy-poll"}
        self.poll = poll
        if not LEGACY:
            wait_frame = c.wait_frame

            def wait(timeout):
                f = wait_frame(timeout)
                if f is None:
                    return None
                return f["msg"]["data"]
            self.wait = wait
            self.block_info = {"mode": "wait_frame (futex sleep), newest frame"}
        if hasattr(c, "fileno"):
            # The event-loop fd: a selector sleeps on Client.fileno(), the
            # producer's publish wakes it only when armed (Client.arm()).
            import selectors
            sel = selectors.DefaultSelector()
            sel.register(c.fileno(), selectors.EVENT_READ)
            select, arm, latest = sel.select, c.arm, c.get_latest_stream

            def wait_fd(timeout):
                if not arm():
                    select(timeout)
                    if not arm():
                        return None
                return latest(STREAM, True)
            self.wait_fd = wait_fd
            self.fd_info = {"mode": "selectors on Client.fileno(), arm(), get_latest_stream"}
        else:
            self.wait_fd = None
            self.no_fd_reason = "shmx 1.0.1 has no event-loop fd"


    def release(self):
        return True  # the frame stays pinned until our next read

    def close(self):
        self.client.close()


def probe():
    return {"version": getattr(shmx, "__version__", "?"), "legacy": LEGACY,
            "features": {"wait_frame": not LEGACY, "read_next": hasattr(shmx.Client, "read_next"),
                         "loan": hasattr(shmx.Server, "loan")}}


# ----------------------------------------------------------- in-process roles

def micro(cfg):
    """Call costs in one process: get_latest_frame() of an unchanged frame
    with 3 small streams, and a whole 3-stream publish."""
    import struct
    specs = [shmx.create_stream_spec(1, "frame_id", shmx.DT_U64, 1, 8),
             shmx.create_stream_spec(2, "timestamp", shmx.DT_F64, 1, 8),
             shmx.create_stream_spec(3, "data", shmx.DT_F32, 1, 4)]
    server = shmx.Server()
    if not server.create(cfg["name"], slots=4, streams=specs):
        raise RuntimeError(f"Server.create failed: {getattr(server, 'last_error', '')}")
    client = shmx.Client()
    try:
        if not client.open(cfg["name"]):
            raise RuntimeError(f"Client.open failed: {getattr(client, 'last_error', '')}")
        a, b, c = struct.pack("<Q", 7), struct.pack("<d", 1.5), struct.pack("<10f", *range(10))
        begin, append, publish = server.begin_frame, server.append_stream, server.publish_frame

        def publish3():
            f = begin()
            append(f, 1, a, 1)
            append(f, 2, b, 1)
            append(f, 3, c, 10)
            publish(f, 0.0)

        min_s = float(cfg.get("min_s", 0.3))
        publish_ns = time_loop(publish3, min_s)
        publish3()
        assert client.get_latest_frame() is not None
        latest_ns = time_loop(client.get_latest_frame, min_s)
        res = {"publish3_ns": publish_ns, "get_latest_frame_ns": latest_ns}
        if hasattr(server, "publish"):
            data, pub = {1: a, 2: b, 3: c}, server.publish

            def publish_dict():  # shaped like publish3: a bound method in a local
                pub(data, 0.0)
            res["publish_dict_ns"] = time_loop(publish_dict, min_s)
        if not LEGACY:
            # The C call alone, through cffi (what the Python layer adds is
            # the difference to get_latest_frame_ns).
            from shmx._shmx import ffi, lib
            fi = ffi.new("shmx_frame_info *")
            fi.struct_size = ffi.sizeof("shmx_frame_info")
            h = client._c
            fn = lib.shmx_client_latest
            res["cffi_latest_ns"] = time_loop(lambda: fn(h, fi), min_s)
            # A bare cffi call (no arguments): the floor of any Python call into C.
            res["cffi_call_ns"] = time_loop(lib.shmx_version_number, min_s)
            # One append_stream: begin + append less begin (each begin_frame
            # abandons the frame the one before opened).
            res["begin_frame_ns"] = time_loop(begin, min_s)

            def begin_append():
                append(begin(), 3, c, 10)
            res["append_stream_ns"] = max(time_loop(begin_append, min_s) - res["begin_frame_ns"], 0.0)
        emit(ev="result", role="micro", idx=0, **res)
    finally:
        client.close()
        server.destroy()


def loan(cfg):
    """Publish cost per frame without a reader: copy (append_stream from
    sources larger than the cache) and, where available, zero-copy loan."""
    min_s = float(cfg.get("min_s", 0.3))
    out = {}
    for size in cfg["sizes"]:
        server = shmx.Server()
        specs = [shmx.create_stream_spec(1, "pixels", shmx.DT_U8, 1, 1)]
        if not server.create(f"{cfg['name']}-{size}", slots=4, frame_bytes_cap=size + 4096, streams=specs):
            raise RuntimeError(f"Server.create failed: {getattr(server, 'last_error', '')}")
        try:
            sources = make_sources(8, size)
            state = [0]
            begin, append, publish = server.begin_frame, server.append_stream, server.publish_frame

            def copy_publish():
                i = state[0] = state[0] + 1
                f = begin()
                src = sources[i & 7]
                append(f, 1, src.tobytes() if LEGACY else src, size)
                publish(f, 0.0)

            batch = int(cfg.get("batch", 100)) if size > 1_000_000 else 1000
            row = {"append_us": time_loop(copy_publish, min_s, batch) / 1000.0}
            if hasattr(server, "loan"):
                stamp = SMALL.pack(1, 0.0, 0)[:24]

                def loan_publish():
                    f = begin()
                    view = server.loan(f, 1, size)
                    view[:24] = stamp  # a producer writes its frame here
                    publish(f, 0.0)

                row["loan_us"] = time_loop(loan_publish, min_s, batch) / 1000.0
            out[str(size)] = row
        finally:
            server.destroy()
    emit(ev="result", role="loan", idx=0, sizes=out)


if __name__ == "__main__":
    common.main(Sender, Receiver, probe, {"micro": micro, "loan": loan})
