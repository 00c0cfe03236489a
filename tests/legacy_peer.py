"""A shmx 1.0.1 peer driven over stdin/stdout, for tests/test_legacy.py.

Runs ONLY in the legacy venv's interpreter (tools/legacy_env.py), started
with ``-I`` from a temporary directory, so ``import shmx`` is the PyPI
shmx 1.0.1 pybind11 module, never this repository's package.

Protocol: one JSON object per line in, ``{"op": NAME, ...arguments}``; one
JSON object per line out, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``.  Bytes travel as hex strings.  The peer
holds at most one Server, one Client and one Inspector of the legacy
package at a time.
"""
import json
import sys
import traceback

import shmx  # the legacy package (see the module docstring)

state = {"server": None, "client": None, "inspector": None}


def _hexify(obj):
    """JSON-safe copy: bytes and memoryviews become hex strings."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    if isinstance(obj, memoryview):
        return obj.tobytes().hex()
    if isinstance(obj, dict):
        return {str(k): _hexify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_hexify(v) for v in obj]
    return obj


def _specs(streams):
    out = []
    for s in streams:
        spec = {k: v for k, v in s.items() if k != "extra_hex"}
        if s.get("extra_hex") is not None:
            spec["extra"] = bytes.fromhex(s["extra_hex"])
        out.append(spec)
    return out


def _need(kind):
    obj = state[kind]
    if obj is None:
        raise RuntimeError(f"no legacy {kind} (call {kind}_create/{kind}_open first)")
    return obj


# ------------------------------------------------------------------ server

def op_server_create(name, slots=3, reader_slots=16, static_bytes_cap=4096, frame_bytes_cap=65536,
                     control_per_reader=4096, streams=()):
    srv = shmx.Server()
    ok = srv.create(name, slots, reader_slots, static_bytes_cap, frame_bytes_cap,
                    control_per_reader, _specs(streams))
    if ok:
        state["server"] = srv
    return ok


def op_server_publish(streams, sim_time):
    """streams: [[stream_id, data_hex, elem_count], ...] -> list of bools
    (one per append) and the publish result."""
    srv = _need("server")
    frame = srv.begin_frame()
    appended = [srv.append_stream(frame, sid, bytes.fromhex(data), count) for sid, data, count in streams]
    return {"appended": appended, "published": srv.publish_frame(frame, sim_time)}


def op_server_publish_burst(count, stream_id, nbytes, elem_bytes=1, interval_s=0.0):
    """Publish ``count`` frames of one stream, frame k filled with byte
    k % 251, as fast as possible (or ``interval_s`` apart)."""
    import time
    srv = _need("server")
    for k in range(1, count + 1):
        frame = srv.begin_frame()
        if not srv.append_stream(frame, stream_id, bytes([k % 251]) * nbytes, nbytes // elem_bytes):
            return False
        if not srv.publish_frame(frame, float(k)):
            return False
        if interval_s:
            time.sleep(interval_s)
    return True


def burst_message(i):
    """Message i of a control burst (tests/test_legacy.py has the same)."""
    return 0x3000 + i % 256, bytes((i * 7 + j) % 256 for j in range(i % 61))


def op_server_poll_until(count, timeout_s=60.0):
    """Poll until ``count`` messages arrived (or the time is up)."""
    import time
    srv = _need("server")
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        batch = srv.poll_control(256)
        if not batch:
            time.sleep(0.0005)
        got.extend(batch)
    return got


def op_client_send_burst(count, timeout_s=60.0):
    """Send burst messages 0..count-1, retrying while the ring is full."""
    import time
    cli = _need("client")
    deadline = time.monotonic() + timeout_s
    full = 0
    for i in range(count):
        typ, data = burst_message(i)
        while not (cli.send_control(typ, data) if data else cli.send_control_empty(typ)):
            full += 1
            if time.monotonic() > deadline:
                return {"sent": i, "full": full}
            time.sleep(0.0002)
    return {"sent": count, "full": full}


def op_server_header():
    return _need("server").get_header_info()


def op_server_poll_control(max_messages=256):
    return _need("server").poll_control(max_messages)


def op_server_readers():
    return _need("server").snapshot_readers()


def op_server_reap_stale_readers(now_ticks, timeout_ticks):
    return _need("server").reap_stale_readers(now_ticks, timeout_ticks)


def op_server_destroy():
    srv = state["server"]
    if srv is not None:
        srv.destroy()  # note: shmx 1.0.1 does not unlink the region
    state["server"] = None
    return True


# ------------------------------------------------------------------ client

def op_client_open(name):
    cli = shmx.Client()
    ok = cli.open(name)
    if ok:
        state["client"] = cli
    return ok


def op_client_latest():
    return _need("client").get_latest_frame()


def op_client_streams():
    return _need("client").get_streams_info()


def op_client_header():
    return _need("client").get_header_info()


def op_client_refresh_static():
    return _need("client").refresh_static()


def op_client_send_control(type, data_hex):
    return _need("client").send_control(type, bytes.fromhex(data_hex))


def op_client_send_control_empty(type):
    return _need("client").send_control_empty(type)


def op_client_close():
    cli = state["client"]
    if cli is not None:
        cli.close()
    state["client"] = None
    return True


# --------------------------------------------------------------- inspector

def op_inspector_open(name):
    ins = shmx.Inspector()
    ok = ins.open(name)
    if ok:
        state["inspector"] = ins
    return ok


def op_inspector_header():
    return _need("inspector").get_header_info()


def op_inspector_streams():
    return _need("inspector").get_streams_info()


def op_inspector_readers():
    return _need("inspector").get_readers_info()


def op_inspector_inspect():
    return _need("inspector").inspect()


def op_inspector_close():
    ins = state["inspector"]
    if ins is not None:
        ins.close()
    state["inspector"] = None
    return True


# ------------------------------------------------------------------- misc

def op_version():
    return {"version": shmx.__version__, "file": shmx.__file__,
            "layout": [shmx.VERSION_MAJOR, shmx.VERSION_MINOR]}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.pop("op")
            if op == "exit":
                for kind in ("client", "inspector", "server"):
                    globals()[f"op_{kind}_{'destroy' if kind == 'server' else 'close'}"]()
                print(json.dumps({"ok": True, "result": None}), flush=True)
                return
            fn = globals().get(f"op_{op}")
            if fn is None:
                raise ValueError(f"unknown op {op!r}")
            reply = {"ok": True, "result": _hexify(fn(**req))}
        except Exception:  # report every failure to the test, keep serving
            reply = {"ok": False, "error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
