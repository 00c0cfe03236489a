"""MCAP recordings and the Foxglove live view (docs/mcap.md), end to end:
real producer processes, the ``shmx`` command as a subprocess, files read
back with the ``mcap`` package's own reader and decoded with the reference
protobuf library from the schemas stored in the file, an independent MCAP
validator (pymcap-cli), and a WebSocket client talking to ``shmx foxglove``.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import shmx

mcap = pytest.importorskip("mcap", reason="the 'mcap' package (extra shmx[mcap]) is not installed")
pytest.importorskip("zstandard", reason="'zstandard' (extra shmx[mcap]) is not installed")
pytest.importorskip("lz4", reason="'lz4' (extra shmx[mcap]) is not installed")
from mcap.reader import make_reader  # noqa: E402
from mcap.writer import Writer  # noqa: E402

CLI = [sys.executable, "-m", "shmx"]
TIMEOUT = 90
W, H = 32, 24          # the "img" stream (width/height streams)
DW, DH = 16, 12        # the "depth" stream (depth.width/depth.height)
STATIC_EXTRA = b"raw:calibration-blob"

PRODUCER = r"""
import struct, sys, time, shmx
name, shm_dir, frames, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
W, H, DW, DH = 32, 24, 16, 12
streams = [shmx.create_stream_spec(1, "img", shmx.DT_U8, 3, 3),
           shmx.create_stream_spec(2, "width", shmx.DT_U32, 1, 4),
           shmx.create_stream_spec(3, "height", shmx.DT_U32, 1, 4),
           shmx.create_stream_spec(4, "depth", shmx.DT_U16, 1, 2),
           shmx.create_stream_spec(5, "depth.width", shmx.DT_U32, 1, 4),
           shmx.create_stream_spec(6, "depth.height", shmx.DT_U32, 1, 4),
           shmx.create_stream_spec(7, "pos", shmx.DT_F32, 3, 12, extra=b"units=m"),
           shmx.create_stream_spec(8, "flags", shmx.DT_I16, 1, 2),
           shmx.create_stream_spec(9, "blob", shmx.DT_U8, 5, 5)]
s = shmx.serve(name, streams, slots=32, frame_bytes_cap=8192, shm_dir=shm_dir)
s.write_static_append(b"raw:calibration-blob")
print("ready", flush=True)
def frame(i):
    return {"img": bytes((i * 7 + k) & 255 for k in range(W * H * 3)),
            "width": struct.pack("<I", W), "height": struct.pack("<I", H),
            "depth": struct.pack(f"<{DW * DH}H", *[(i * 1000 + k) & 0xFFFF for k in range(DW * DH)]),
            "depth.width": struct.pack("<I", DW), "depth.height": struct.pack("<I", DH),
            "pos": struct.pack(f"<{3 * (i % 3 + 1)}f", *[i + k * 0.25 for k in range(3 * (i % 3 + 1))]),
            "flags": struct.pack("<2h", -i, i), "blob": bytes((i + k) & 255 for k in range(5 * (i % 4)))}
if frames == 0:  # live: publish until terminated (60 s at most), then remove the region
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    end, i = time.monotonic() + 60, 0
    try:
        while time.monotonic() < end:
            i += 1
            s.publish(frame(i), sim_time=i * 0.01)
            time.sleep(interval)
    finally:
        s.destroy()
    sys.exit(0)
end = time.monotonic() + 30
while s.get_header_info()["readers_connected"] < 1 and time.monotonic() < end:
    time.sleep(0.002)
def readers_at(n):
    return all(r["last_frame_seen"] >= n for r in s.snapshot_readers() if r["in_use"])
for i in range(1, frames + 1):
    s.publish(frame(i), sim_time=i * 0.01 + 1 / 3)
    end = time.monotonic() + 10
    while i == 1 and not readers_at(1) and time.monotonic() < end:
        time.sleep(0.001)
    time.sleep(interval)
end = time.monotonic() + 10
while not readers_at(frames) and time.monotonic() < end:
    time.sleep(0.002)
s.destroy()
"""


def start_producer(name: str, shm_dir: str, frames: int, interval: float = 0.002) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PRODUCER, name, shm_dir, str(frames), str(interval)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def run(*args: str, timeout: float = TIMEOUT, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


def assert_error(r: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def expected_frame(i: int) -> Dict[str, bytes]:
    return {"img": bytes((i * 7 + k) & 255 for k in range(W * H * 3)),
            "width": struct.pack("<I", W), "height": struct.pack("<I", H),
            "depth": struct.pack(f"<{DW * DH}H", *[(i * 1000 + k) & 0xFFFF for k in range(DW * DH)]),
            "depth.width": struct.pack("<I", DW), "depth.height": struct.pack("<I", DH),
            "pos": struct.pack(f"<{3 * (i % 3 + 1)}f", *[i + k * 0.25 for k in range(3 * (i % 3 + 1))]),
            "flags": struct.pack("<2h", -i, i), "blob": bytes((i + k) & 255 for k in range(5 * (i % 4)))}


def record(names: List[str], out: Path, shm_dir: str, frames: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "record", *names, "-o", str(out), "--frames", str(frames), "--wait", "30",
                             "--dir", shm_dir, "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen) -> Dict[str, Any]:
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    return json.loads(out)


@pytest.fixture
def shm_dir(tmp_path: Path) -> str:
    d = tmp_path / "shm"
    d.mkdir()
    return str(d)


def proto_class(schema_data: bytes, name: str) -> Any:
    """A message class built by the reference protobuf library from the
    FileDescriptorSet stored in the file."""
    pb = pytest.importorskip("google.protobuf", reason="'protobuf' is not installed")
    del pb
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    fds = descriptor_pb2.FileDescriptorSet.FromString(schema_data)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def read_file(path: Path) -> Dict[str, Any]:
    """Everything in one of our MCAP files, decoded independently of shmx:
    the region schemas, the channels, and the frames rebuilt from the
    messages (protobuf decoded by google.protobuf)."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        meta = list(reader.iter_metadata())
        classes = {sid: proto_class(s.data, s.name) for sid, s in summary.schemas.items()}
        frames: Dict[Tuple[str, int], Dict[str, Any]] = {}
        order: List[Tuple[str, int]] = []
        messages = []
        for schema, channel, msg in reader.iter_messages(log_time_order=False):
            assert schema is not None and schema.encoding == "protobuf"
            assert channel.message_encoding == "protobuf"
            messages.append((channel.topic, msg))
            region = channel.metadata["shmx.region"]
            key = (region, msg.sequence)
            m = classes[schema.id].FromString(msg.data)
            if channel.metadata["shmx.kind"] == "frame":
                frames[key] = {"frame_id": m.frame_id, "sim_time": m.sim_time, "dropped": m.dropped,
                               "ids": list(m.stream_ids), "counts": list(m.elem_counts), "streams": {},
                               "log_time": msg.log_time, "publish_time": msg.publish_time}
                order.append(key)
                continue
            name = channel.topic[len(region) + 2:]
            if schema.name == "foxglove.RawImage":
                frames[key]["streams"][name] = bytes(m.data)
                frames[key].setdefault("images", {})[name] = (m.width, m.height, m.encoding, m.step)
            else:
                raw = bytes(m.raw) if m.raw else b""
                if not raw and hasattr(m, "values"):
                    vals = list(m.values)
                    fmt = {"shmx.StreamF32": "f", "shmx.StreamU32": "I", "shmx.StreamU8": "B"}[schema.name]
                    raw = struct.pack(f"<{len(vals)}{fmt}", *vals)
                frames[key]["streams"][name] = raw
                frames[key].setdefault("values", {})[name] = list(getattr(m, "values", []))
            assert msg.log_time == frames[key]["log_time"]
    return {"summary": summary, "meta": meta, "frames": [frames[k] for k in order], "messages": messages}


def _frame_topics(info: Dict[str, Any]) -> List[Tuple[str, int]]:
    """(region, index) of each frame in ``info["frames"]`` order."""
    return [(t[1:-len("/_frame")], i) for i, (t, _m) in enumerate(
        [x for x in info["messages"] if x[0].endswith("/_frame")])]


def region_meta(info: Dict[str, Any], name: str) -> Dict[str, Any]:
    for m in info["meta"]:
        if m.name == "shmx.region" and m.metadata["region"] == name:
            return json.loads(m.metadata["schema"])
    raise AssertionError(f"no shmx.region record for {name}")


def end_meta(info: Dict[str, Any], name: str) -> Dict[str, str]:
    return next(m.metadata for m in info["meta"] if m.name == "shmx.end" and m.metadata["region"] == name)


# ------------------------------------------------------------------- tests
def test_import_shmx_loads_no_optional_package() -> None:
    code = ("import sys, shmx, shmx.cli, shmx.cli.mcap, shmx.cli.mcap_record, shmx.cli.mcap_play\n"
            "import shmx.cli.record, shmx.cli.foxglove, shmx.cli.cdr, shmx.cli.protowire\n"
            "shmx.cli.build_parser()\n"
            "bad = [m for m in ('mcap', 'foxglove', 'zstandard', 'lz4', 'websockets', 'google.protobuf')\n"
            "       if m in sys.modules]\n"
            "print(','.join(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_record_mcap_holds_every_frame_schema_and_channel(shm_dir: str, tmp_path: Path,
                                                          unique_name: Callable[[str], str]) -> None:
    name, n = unique_name("mcap"), 30
    out = tmp_path / "run.mcap"
    rec = record([name], out, shm_dir, n, "--compression", "zstd")
    producer = start_producer(name, shm_dir, n)
    s = finish(rec)
    assert producer.wait(timeout=TIMEOUT) == 0
    assert s["frames"] == n and s["dropped"] == 0 and s["files"] == [str(out)]
    info = read_file(out)
    summary = info["summary"]
    topics = {c.topic: (summary.schemas[c.schema_id].name, c.metadata.get("shmx.stream_id"))
              for c in summary.channels.values()}
    assert topics == {
        f"/{name}/_frame": ("shmx.Frame", None), f"/{name}/img": ("foxglove.RawImage", "1"),
        f"/{name}/width": ("shmx.StreamU32", "2"), f"/{name}/height": ("shmx.StreamU32", "3"),
        f"/{name}/depth": ("foxglove.RawImage", "4"), f"/{name}/depth.width": ("shmx.StreamU32", "5"),
        f"/{name}/depth.height": ("shmx.StreamU32", "6"), f"/{name}/pos": ("shmx.StreamF32", "7"),
        f"/{name}/flags": ("shmx.StreamI16", "8"), f"/{name}/blob": ("shmx.StreamU8", "9")}
    # Every message of every frame, in order, with the producer's bytes.
    assert summary.statistics.message_count == n * 10
    assert len(info["frames"]) == n
    last_log = 0
    for i, fr in enumerate(info["frames"], start=1):
        assert fr["frame_id"] == i and fr["dropped"] == 0
        assert fr["sim_time"] == i * 0.01 + 1 / 3
        assert fr["publish_time"] == round((i * 0.01 + 1 / 3) * 1e9)
        assert fr["log_time"] >= last_log and abs(fr["log_time"] - time.time_ns()) < 600e9
        last_log = fr["log_time"]
        assert fr["ids"] == list(range(1, 10))
        assert fr["streams"] == expected_frame(i)
        assert fr["images"] == {"img": (W, H, "rgb8", W * 3), "depth": (DW, DH, "mono16", DW * 2)}
        # 16-bit values are also there as numbers, for Foxglove's plots.
        assert fr["values"]["flags"] == [-i, i]
    # The region's schema, static bytes included, and the dropped count.
    m = region_meta(info, name)
    assert [(x["id"], x["name"], x["dtype_code"], x["components"], x["bytes_per_elem"]) for x in m["streams"]][6] \
        == (7, "pos", shmx.DT_F32, 3, 12)
    assert bytes.fromhex(m["streams"][6]["extra"]) == b"units=m"
    assert bytes.fromhex(m["static_hex"]).endswith(STATIC_EXTRA)
    assert end_meta(info, name)["dropped"] == "0" and end_meta(info, name)["frames"] == str(n)
    # Chunked, compressed and indexed: a time range read seeks to the chunks.
    assert summary.chunk_indexes and all(ci.compression == "zstd" for ci in summary.chunk_indexes)
    mid = info["frames"][n // 2]["log_time"]
    with open(out, "rb") as f:
        reader = make_reader(f)
        try:
            later = list(reader.iter_messages(topics=[f"/{name}/_frame"], starting_at=mid))
        except TypeError:  # mcap before 1.3 names it start_time
            later = list(reader.iter_messages(topics=[f"/{name}/_frame"], start_time=mid))
    assert len(later) == n - n // 2


def _replay_and_record(src: Path, as_names: str, record_names: List[str], out: Path, shm_dir: str,
                       frames: int, *play_args: str) -> Dict[str, Any]:
    rec = record(record_names, out, shm_dir, frames, "-q")
    play = run("play", str(src), "--as", as_names, "--dir", shm_dir, "--rate", "0", "--wait-readers", "1",
               "--slots", "64", "--json", *play_args)
    assert play.returncode == 0, play.stderr
    s = finish(rec)
    return {"play": json.loads(play.stdout), "record": s}


def test_mcap_replay_is_byte_identical(shm_dir: str, tmp_path: Path, unique_name: Callable[[str], str]) -> None:
    name, again, n = unique_name("orig"), unique_name("again"), 25
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    rec = record([name], first, shm_dir, n, "--compression", "lz4")
    producer = start_producer(name, shm_dir, n)
    finish(rec)
    assert producer.wait(timeout=TIMEOUT) == 0
    r = _replay_and_record(first, again, [again], second, shm_dir, n)
    assert r["play"]["frames"] == n and r["record"]["dropped"] == 0
    a, b = read_file(first), read_file(second)
    assert all(ci.compression == "lz4" for ci in a["summary"].chunk_indexes)
    ma, mb = region_meta(a, name), region_meta(b, again)
    for key in ("streams", "static_hex", "static_hash", "frame_bytes_cap", "static_bytes_cap",
                "control_per_reader", "reader_slots"):
        assert ma[key] == mb[key], key
    assert len(a["frames"]) == len(b["frames"]) == n
    for fa, fb in zip(a["frames"], b["frames"]):
        for key in ("frame_id", "sim_time", "ids", "counts", "streams", "publish_time"):
            assert fa[key] == fb[key], key
    assert os.listdir(shm_dir) == []


def test_several_regions_into_one_file_and_back(shm_dir: str, tmp_path: Path,
                                                unique_name: Callable[[str], str]) -> None:
    a, b, n = unique_name("ra"), unique_name("rb"), 12
    out = tmp_path / "two.mcap"
    rec = record([a, b], out, shm_dir, n)
    pa, pb = start_producer(a, shm_dir, n), start_producer(b, shm_dir, n)
    s = finish(rec)
    assert pa.wait(timeout=TIMEOUT) == 0 and pb.wait(timeout=TIMEOUT) == 0
    assert s["regions"] == {a: {"frames": n, "dropped": 0}, b: {"frames": n, "dropped": 0}}
    info = read_file(out)
    for region in (a, b):
        region_meta(info, region)
        assert len([t for t, _ in info["messages"] if t == f"/{region}/_frame"]) == n
    # Replayed into two regions at once; the wrong number of names is a usage error.
    assert_error(run("play", str(out), "--as", "only-one", "--dir", shm_dir), 2, "2 region", a, b)
    x, y = unique_name("x"), unique_name("y")
    r = _replay_and_record(out, f"{x},{y}", [x, y], tmp_path / "back.mcap", shm_dir, n)
    assert r["play"]["frames"] == 2 * n
    assert r["record"]["regions"] == {x: {"frames": n, "dropped": 0}, y: {"frames": n, "dropped": 0}}
    back = read_file(tmp_path / "back.mcap")
    for orig, new in ((a, x), (b, y)):
        assert region_meta(back, new)["static_hex"] == region_meta(info, orig)["static_hex"]
        want = [f["streams"] for f, (t, _) in zip(info["frames"], _frame_topics(info)) if t == orig]
        got = [f["streams"] for f, (t, _) in zip(back["frames"], _frame_topics(back)) if t == new]
        assert want == got and len(got) == n
    assert os.listdir(shm_dir) == []


def test_split_size_and_duration_roll_over(shm_dir: str, tmp_path: Path,
                                           unique_name: Callable[[str], str]) -> None:
    name, n = unique_name("split"), 40
    out = tmp_path / "parts.mcap"
    rec = record([name], out, shm_dir, n, "--split-size", "20K", "--compression", "none")
    producer = start_producer(name, shm_dir, n)
    s = finish(rec)
    assert producer.wait(timeout=TIMEOUT) == 0
    files = [Path(p) for p in s["files"]]
    assert len(files) >= 3
    assert [p.name for p in files] == [f"parts_{i:03d}.mcap" for i in range(len(files))]
    assert not out.exists()
    ids: List[int] = []
    for p in files:
        info = read_file(p)
        region_meta(info, name)  # every part carries the schema
        part_ids = [f["frame_id"] for f in info["frames"]]
        assert end_meta(info, name)["frames"] == str(len(part_ids))
        ids += part_ids
        for f in info["frames"]:
            assert f["streams"] == expected_frame(f["frame_id"])
    assert ids == list(range(1, n + 1))
    # By duration: a producer publishing for ~1.2 s, parts of 0.3 s.
    name2 = unique_name("splitd")
    rec = record([name2], tmp_path / "timed.mcap", shm_dir, 60, "--split-duration", "0.3")
    producer = start_producer(name2, shm_dir, 60, interval=0.02)
    s = finish(rec)
    assert producer.wait(timeout=TIMEOUT) == 0
    assert len(s["files"]) >= 2 and s["frames"] == 60
    # A split needs MCAP; a .shmxrec holds one region.
    assert_error(run("record", name, "-o", str(tmp_path / "x.shmxrec"), "--split-size", "1M"), 2, "mcap")
    assert_error(run("record", name, name2, "-o", str(tmp_path / "x.shmxrec")), 2, "one region")
    assert_error(run("record", name, "-o", str(tmp_path / "x.mcap"), "--split-size", "lots"), 2, "size")


def test_independent_validator_accepts_the_files(shm_dir: str, tmp_path: Path,
                                                 unique_name: Callable[[str], str]) -> None:
    exe = shutil.which("pymcap-cli") or (str(Path(sys.executable).with_name("pymcap-cli"))
                                         if Path(sys.executable).with_name("pymcap-cli").exists() else None)
    if exe is None:
        pytest.skip("pymcap-cli (an independent MCAP validator, in extra shmx[mcap-test]) is not installed")
    name, n = unique_name("doc"), 10
    files = []
    for comp in ("zstd", "lz4", "none"):
        out = tmp_path / f"{comp}.mcap"
        rec = record([name], out, shm_dir, n, "--compression", comp)
        producer = start_producer(name, shm_dir, n)
        finish(rec)
        assert producer.wait(timeout=TIMEOUT) == 0
        files.append(out)
    for f in files:
        r = subprocess.run([exe, "doctor", str(f), "--strict-message-order", "--format", "jsonl"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, (f, r.stdout, r.stderr)
        findings = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        bad = [x for x in findings if str(x.get("severity", "")).lower() in ("error", "warning")]
        assert not bad, (f, bad)
    # ...and says so when a file is damaged (the check can fail).
    damaged = tmp_path / "damaged.mcap"
    data = bytearray(files[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data[:-40]))
    r = subprocess.run([exe, "doctor", str(damaged)], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0


# ------------------------------------------------------- other tools' files
def _foreign_file(path: Path) -> Dict[str, Any]:
    """An MCAP file as another tool writes it, with the mcap writer alone:
    a foxglove.RawImage channel encoded by the Foxglove SDK, a ROS 2
    sensor_msgs/msg/Image channel in CDR (padded rows, big-endian mono16)
    and a schemaless byte channel."""
    fox = pytest.importorskip("foxglove", reason="foxglove-sdk (extra shmx[foxglove]) is not installed")
    from foxglove.messages import RawImage, Timestamp
    del fox
    fw, fh = 6, 4
    rgb = [bytes((i * 11 + k) & 255 for k in range(fw * fh * 3)) for i in range(3)]
    ros_w, ros_h, step = 5, 3, 12  # mono16: 10 bytes a row, padded to 12
    depth_vals = [[(i * 300 + k) for k in range(ros_w * ros_h)] for i in range(3)]

    def cdr_image(i: int) -> bytes:
        def s(text: str) -> bytes:
            raw = text.encode() + b"\x00"
            return struct.pack("<I", len(raw)) + raw
        body = struct.pack("<iI", 100 + i, 5) + s("cam")            # header: stamp, frame_id
        body += b"\x00" * (-len(body) % 4) + struct.pack("<II", ros_h, ros_w) + s("mono16")
        body += b"\x01"                                             # is_bigendian
        body += b"\x00" * (-len(body) % 4) + struct.pack("<I", step)
        rows = b"".join(struct.pack(f">{ros_w}H", *depth_vals[i][y * ros_w:(y + 1) * ros_w]) + b"\xee\xee"
                        for y in range(ros_h))
        return b"\x00\x01\x00\x00" + body + struct.pack("<I", len(rows)) + rows

    with open(path, "wb") as f:
        w = Writer(f)
        w.start(profile="ros2", library="test")
        sc = RawImage.get_schema()
        s1 = w.register_schema(sc.name, sc.encoding, sc.data)
        c1 = w.register_channel("/camera/color", "protobuf", s1)
        s2 = w.register_schema("sensor_msgs/msg/Image", "ros2msg", b"std_msgs/Header header\n...")
        c2 = w.register_channel("/camera/depth", "cdr", s2)
        c3 = w.register_channel("/log", "", 0)
        t = 1_700_000_000_000_000_000
        for i in range(3):
            img = RawImage(timestamp=Timestamp(1, i), frame_id="cam", width=fw, height=fh, encoding="rgb8",
                           step=fw * 3, data=rgb[i])
            w.add_message(c1, log_time=t + i * 3_000_000, data=img.encode(), publish_time=t + i)
            w.add_message(c2, log_time=t + i * 3_000_000 + 1_000_000, data=cdr_image(i), publish_time=t + i)
            w.add_message(c3, log_time=t + i * 3_000_000 + 2_000_000, data=f"line {i}".encode(), publish_time=0)
        w.finish()
    return {"rgb": rgb, "depth": [struct.pack(f"<{len(v)}H", *v) for v in depth_vals], "size": (fw, fh),
            "depth_size": (ros_w, ros_h)}


def _read_frames(name: str, shm_dir: str, count: int) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    client = shmx.connect(name, timeout=30, shm_dir=shm_dir)
    try:
        specs = {s["name"]: s for s in client.get_streams_info()}
        out: List[Dict[str, Any]] = []
        end = time.monotonic() + 30
        while len(out) < count and time.monotonic() < end:
            f = client.wait_next(0.5)
            if f is not None:
                out.append({k: bytes(v["data"]) for k, v in f.items() if k != "__metadata__"})
        return out, specs
    finally:
        client.close()


def test_play_reads_other_tools_image_and_byte_channels(shm_dir: str, tmp_path: Path,
                                                       unique_name: Callable[[str], str]) -> None:
    path = tmp_path / "robot.mcap"
    want = _foreign_file(path)
    name = unique_name("robot")
    # --rate 0 with a ring larger than the file: the reader cannot fall behind.
    play = subprocess.Popen([*CLI, "play", str(path), "--as", name, "--dir", shm_dir, "--rate", "0",
                             "--wait-readers", "1", "--slots", "16", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    frames, specs = _read_frames(name, shm_dir, 9)
    out, err = play.communicate(timeout=TIMEOUT)
    assert play.returncode == 0, err
    assert json.loads(out)["frames"] == 9 and json.loads(out)["source"] == "foreign"
    color, depth = "camera/color", "camera/depth"
    assert (specs[color]["dtype_code"], specs[color]["components"]) == (shmx.DT_U8, 3)
    assert (specs[depth]["dtype_code"], specs[depth]["components"]) == (shmx.DT_U16, 1)
    assert specs["log"]["dtype_code"] == shmx.DT_U8
    assert len(frames) == 9
    for i in range(3):
        c, d, log = frames[3 * i], frames[3 * i + 1], frames[3 * i + 2]
        assert c[color] == want["rgb"][i]
        assert struct.unpack("<2I", c[f"{color}.width"] + c[f"{color}.height"]) == want["size"]
        assert c[f"{color}.channels"] == struct.pack("<I", 3)
        # Rows unpadded, big-endian pixels turned little-endian.
        assert d[depth] == want["depth"][i]
        assert struct.unpack("<2I", d[f"{depth}.width"] + d[f"{depth}.height"]) == want["depth_size"]
        assert log == {"log": f"line {i}".encode()}
    assert os.listdir(shm_dir) == []


def test_foreign_single_image_channel_is_pixels_width_height(shm_dir: str, tmp_path: Path,
                                                            unique_name: Callable[[str], str]) -> None:
    path = tmp_path / "one.mcap"
    with open(path, "wb") as f:
        w = Writer(f)
        w.start()
        from shmx.cli.protowire import RAW_IMAGE_NAME, RAW_IMAGE_SCHEMA, raw_image_head
        sid = w.register_schema(RAW_IMAGE_NAME, "protobuf", RAW_IMAGE_SCHEMA)
        cid = w.register_channel("/cam", "protobuf", sid)
        px = bytes(range(2 * 2))
        w.add_message(cid, log_time=1, data=raw_image_head(0, "", 2, 2, "mono8", 2, 4) + px, publish_time=1)
        w.finish()
    name = unique_name("one")
    play = subprocess.Popen([*CLI, "play", str(path), "--as", name, "--dir", shm_dir, "--rate", "0",
                             "--wait-readers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames, specs = _read_frames(name, shm_dir, 1)
    _out, err = play.communicate(timeout=TIMEOUT)
    assert play.returncode == 0, err
    assert sorted(specs) == ["channels", "height", "pixels", "width"]
    assert frames[0]["pixels"] == px and frames[0]["width"] == struct.pack("<I", 2)
    # The JSON form of foxglove.RawImage (pixels base64), as JSON-encoding tools write it.
    import base64
    jpath = tmp_path / "json.mcap"
    with open(jpath, "wb") as f:
        w = Writer(f)
        w.start()
        sid = w.register_schema("foxglove.RawImage", "jsonschema", b'{"type": "object"}')
        cid = w.register_channel("/cam", "json", sid)
        msg = {"timestamp": {"sec": 1, "nsec": 2}, "frame_id": "c", "width": 3, "height": 1,
               "encoding": "rgb8", "step": 9, "data": base64.b64encode(bytes(range(9))).decode()}
        w.add_message(cid, log_time=1, data=json.dumps(msg).encode(), publish_time=1)
        w.finish()
    name2 = unique_name("json")
    play = subprocess.Popen([*CLI, "play", str(jpath), "--as", name2, "--dir", shm_dir, "--rate", "0",
                             "--wait-readers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames, specs = _read_frames(name2, shm_dir, 1)
    _out, err = play.communicate(timeout=TIMEOUT)
    assert play.returncode == 0, err
    assert specs["pixels"]["components"] == 3 and frames[0]["pixels"] == bytes(range(9))


# ------------------------------------------------------------ hostile input
def _limited() -> None:
    # 1.5 GiB of address space: a reader that believed a hostile size
    # would fail here instead of quietly allocating it.
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))


def _play_hostile(path: Path, shm_dir: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "play", str(path), "--as", name, "--dir", shm_dir, "--rate", "0",
                           "--linger", "0"], capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_limited)


def test_hostile_mcap_input_is_a_clear_error(shm_dir: str, tmp_path: Path,
                                             unique_name: Callable[[str], str]) -> None:
    src, n = unique_name("good"), 6
    good = tmp_path / "good.mcap"
    rec = record([src], good, shm_dir, n, "--compression", "none")
    producer = start_producer(src, shm_dir, n)
    finish(rec)
    assert producer.wait(timeout=TIMEOUT) == 0
    data = good.read_bytes()
    name = unique_name("hostile")
    cases: List[Tuple[str, bytes, Optional[str]]] = []
    # Truncated anywhere: plays what is complete (with a warning) or says why not.
    for cut in (4, 8, 30, len(data) // 3, len(data) // 2, len(data) - 9):
        cases.append((f"cut{cut}", data[:cut], None))
    # A record claiming 2**62 bytes right after the header record.
    hdr_len = struct.unpack_from("<Q", data, 9)[0]
    at = 8 + 9 + hdr_len
    cases.append(("huge-record", data[:at + 1] + struct.pack("<Q", 1 << 62) + data[at + 9:],
                  "more bytes than"))
    # A chunk claiming 2**40 uncompressed bytes.
    chunk_at = data.index(b"\x06", at)  # opcode CHUNK
    while data[chunk_at] != 0x06 or struct.unpack_from("<Q", data, chunk_at + 1)[0] > len(data):
        chunk_at = data.index(b"\x06", chunk_at + 1)
    hostile = bytearray(data)
    struct.pack_into("<Q", hostile, chunk_at + 9 + 16, 1 << 40)
    cases.append(("huge-chunk", bytes(hostile), "claims"))
    # Bytes flipped inside the chunk: its CRC says so.
    flipped = bytearray(data)
    flipped[chunk_at + 200] ^= 0x55
    cases.append(("flipped", bytes(flipped), "crc"))
    # A channel record whose topic claims 4 GiB (inside a record of sane length).
    chan = struct.pack("<HHI", 1, 0, 0xFFFFFFF0) + b"/t" + b"\x00" * 20
    cases.append(("huge-field", data[:at] + b"\x04" + struct.pack("<Q", len(chan)) + chan, None))
    cases.append(("not-mcap", b"\x89MCAP0\r\n" + b"\xff" * 64, None))
    cases.append(("empty-magic", b"\x89MCAP0\r\n", None))
    for label, body, word in cases:
        p = tmp_path / f"{label}.mcap"
        p.write_bytes(body)
        r = _play_hostile(p, shm_dir, name)
        assert "Traceback" not in r.stderr, (label, r.stderr)
        assert "MemoryError" not in r.stderr, (label, r.stderr)
        if r.returncode == 0:
            assert "cut short" in r.stderr, (label, r.stderr)
        else:
            assert_error(r, 1, *([word] if word else []))
            assert str(p) in r.stderr or "region" in r.stderr, (label, r.stderr)
    assert os.listdir(shm_dir) == []


def test_hostile_messages_in_other_tools_files(shm_dir: str, tmp_path: Path,
                                               unique_name: Callable[[str], str]) -> None:
    from shmx.cli.protowire import RAW_IMAGE_NAME, RAW_IMAGE_SCHEMA, field_len_head, raw_image_head
    bad_msgs = {
        # RawImage whose data field claims 4 GiB.
        "proto-huge": (RAW_IMAGE_NAME, "protobuf", RAW_IMAGE_SCHEMA,
                       raw_image_head(0, "", 4, 4, "mono8", 4, 16)[:-len(field_len_head(6, 16))]
                       + field_len_head(6, (1 << 32) - 1) + b"\x00" * 16, "claims"),
        # Pixels fewer than width x height.
        "proto-short": (RAW_IMAGE_NAME, "protobuf", RAW_IMAGE_SCHEMA,
                        raw_image_head(0, "", 1000, 1000, "rgb8", 3000, 3) + b"abc", "needs"),
        "proto-encoding": (RAW_IMAGE_NAME, "protobuf", RAW_IMAGE_SCHEMA,
                           raw_image_head(0, "", 1, 1, "h264", 1, 1) + b"a", "encoding"),
        # CDR with a data sequence claiming 2**31 bytes.
        "cdr-huge": ("sensor_msgs/msg/Image", "cdr", b"",
                     b"\x00\x01\x00\x00" + struct.pack("<iII", 0, 0, 1) + b"\x00\x00\x00\x00"
                     + struct.pack("<II", 1, 1) + struct.pack("<I", 6) + b"mono8\x00"
                     + b"\x00" + b"\x00"  # is_bigendian, then padding to step's 4-byte alignment
                     + struct.pack("<I", 1) + struct.pack("<I", 1 << 31), "data"),
        "cdr-garbage": ("sensor_msgs/msg/Image", "cdr", b"", b"\x07\x07", "cdr"),
    }
    name = unique_name("badmsg")
    for label, (sname, enc, sdata, msg, word) in bad_msgs.items():
        p = tmp_path / f"{label}.mcap"
        with open(p, "wb") as f:
            w = Writer(f)
            w.start()
            sid = w.register_schema(sname, "protobuf" if enc == "protobuf" else "ros2msg", sdata)
            cid = w.register_channel("/cam", enc, sid)
            w.add_message(cid, log_time=1, data=msg, publish_time=1)
            w.finish()
        r = _play_hostile(p, shm_dir, name)
        assert_error(r, 1, word, "/cam")
    assert os.listdir(shm_dir) == []


# ------------------------------------------------------------------ pieces
def test_raw_image_schema_matches_foxglove_and_decodes() -> None:
    from shmx.cli import protowire as pw
    ours = pw.descriptor_messages(pw.RAW_IMAGE_SCHEMA)["foxglove.RawImage"]
    fox = pytest.importorskip("foxglove", reason="foxglove-sdk is not installed")
    from foxglove.messages import RawImage, Timestamp
    del fox
    theirs = pw.descriptor_messages(RawImage.get_schema().data)["foxglove.RawImage"]
    assert sorted(ours) == sorted(theirs)
    # The SDK's encoding decodes with our decoder, and ours with protobuf.
    sdk = RawImage(timestamp=Timestamp(3, 4), frame_id="f", width=2, height=1, encoding="rgb8", step=6,
                   data=b"abcdef").encode()
    d = pw.decode_raw_image(sdk)
    assert (d["timestamp_ns"], d["width"], d["height"], d["encoding"], bytes(d["data"])) == \
        (3_000_000_004, 2, 1, "rgb8", b"abcdef")
    cls = proto_class(pw.RAW_IMAGE_SCHEMA, "foxglove.RawImage")
    m = cls.FromString(pw.raw_image_head(3_000_000_004, "f", 2, 1, "rgb8", 6, 6) + b"abcdef")
    assert (m.timestamp.seconds, m.timestamp.nanos, m.width, m.data) == (3, 4, 2, b"abcdef")


def test_cdr_decoder_bounds() -> None:
    from shmx.cli.cdr import CdrError, decode_image, encode_sensor_image
    msg = encode_sensor_image(5_000_000_007, "cam", 2, 3, "rgb8", 9, bytes(18))
    d = decode_image("sensor_msgs/msg/Image", msg)
    assert (d["timestamp_ns"], d["frame_id"], d["height"], d["width"], d["step"]) == (5_000_000_007, "cam", 2, 3, 9)
    for cut in range(0, len(msg) - 1, 7):
        with pytest.raises(CdrError):
            decode_image("sensor_msgs/msg/Image", msg[:cut])
    with pytest.raises(CdrError, match="no CDR decoder"):
        decode_image("std_msgs/msg/String", msg)


def test_image_geometry_rules() -> None:
    from shmx.cli.image import image_geometry
    u8c3 = {"dtype_code": shmx.DT_U8, "components": 3, "bytes_per_elem": 3}
    u8 = {"dtype_code": shmx.DT_U8, "components": 1, "bytes_per_elem": 1}
    u32 = {"dtype_code": shmx.DT_U32, "components": 1, "bytes_per_elem": 4}

    def e(data: bytes) -> Dict[str, Any]:
        return {"data": data, "bytes": len(data), "elem_count": len(data)}
    specs = {"cam": u8c3, "width": u32, "height": u32, "ir": u8, "ir.width": u32, "ir.height": u32}
    frame = {"cam": e(bytes(4 * 2 * 3)), "width": e(struct.pack("<I", 4)), "height": e(struct.pack("<I", 2)),
             "ir": e(bytes(3 * 5)), "ir.width": e(struct.pack("<I", 3)), "ir.height": e(struct.pack("<I", 5))}
    assert image_geometry("cam", u8c3, frame, specs)[:3] == (2, 4, 3)
    assert image_geometry("ir", u8, frame, specs).encoding == "mono8"
    assert image_geometry("width", u32, frame, specs) is None
    frame["cam"] = e(bytes(7))
    assert image_geometry("cam", u8c3, frame, specs) is None          # size does not fit
    shaped = dict(u8c3, shape=(1, 7 // 3))
    frame["cam"] = e(bytes(6))
    assert image_geometry("cam", shaped, frame, specs)[:3] == (1, 2, 3)  # a schema shape wins


# ----------------------------------------------------------------- foxglove
def test_foxglove_live_view_sends_decodable_images(shm_dir: str, unique_name: Callable[[str], str]) -> None:
    pytest.importorskip("foxglove", reason="foxglove-sdk (extra shmx[foxglove]) is not installed")
    websockets = pytest.importorskip("websockets", reason="'websockets' is not installed")
    name = unique_name("live")
    producer = start_producer(name, shm_dir, 0, interval=0.02)
    fox = subprocess.Popen([*CLI, "foxglove", name, "--port", "0", "--dir", shm_dir, "--seconds", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fox.stdout is not None
        line = fox.stdout.readline()
        assert line.startswith(f"serving {name} on ws://127.0.0.1:"), (line, fox.stderr.read() if not line else "")
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])

        async def client() -> Dict[str, Any]:
            # The SDK's subprotocol, and the ws-protocol spec's older name.
            protocols = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
            async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=protocols,
                                          max_size=None, open_timeout=20) as ws:
                channels: Dict[int, Dict[str, Any]] = {}
                got: Dict[str, Any] = {}
                while "message" not in got:
                    m = await asyncio.wait_for(ws.recv(), 20)
                    if isinstance(m, str):
                        d = json.loads(m)
                        if d["op"] == "serverInfo":
                            got["serverInfo"] = d
                        if d["op"] == "advertise":
                            subs = []
                            for c in d["channels"]:
                                channels[c["id"]] = c
                                if c["topic"] == f"/{name}/img":
                                    subs.append({"id": 7, "channelId": c["id"]})
                            if subs:
                                await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
                                got["channel"] = next(c for c in d["channels"] if c["topic"] == f"/{name}/img")
                    else:
                        op, sub, _ts = struct.unpack_from("<BIQ", m)
                        if op == 1 and sub == 7:
                            got["message"] = bytes(m[13:])
                return got

        got = asyncio.run(asyncio.wait_for(client(), 60))
    finally:
        fox.terminate()
        producer.terminate()
        fox.communicate(timeout=TIMEOUT)
        producer.wait(timeout=TIMEOUT)
    assert os.listdir(shm_dir) == []
    ch = got["channel"]
    assert (ch["encoding"], ch["schemaName"], ch["schemaEncoding"]) == ("protobuf", "foxglove.RawImage", "protobuf")
    import base64
    cls = proto_class(base64.b64decode(ch["schema"]), "foxglove.RawImage")
    img = cls.FromString(got["message"])
    assert (img.width, img.height, img.encoding, img.step) == (W, H, "rgb8", W * 3)
    data = bytes(img.data)
    assert len(data) == W * H * 3
    start = data[0]  # the producer's pattern: byte k of frame i is (7 i + k) mod 256
    assert data == bytes((start + k) & 255 for k in range(W * H * 3))
    assert fox.returncode in (0, -15)


def test_a_killed_recorder_leaves_a_playable_file(shm_dir: str, tmp_path: Path,
                                                  unique_name: Callable[[str], str]) -> None:
    name = unique_name("killed")
    out = tmp_path / "killed.mcap"
    producer = start_producer(name, shm_dir, 0, interval=0.01)
    try:
        rec = subprocess.Popen([*CLI, "record", name, "-o", str(out), "--dir", shm_dir, "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Chunks are closed at least once a second: wait for the first one.
        end = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < 20000) and time.monotonic() < end:
            time.sleep(0.05)
        rec.kill()
        rec.communicate(timeout=TIMEOUT)
    finally:
        producer.terminate()
        producer.wait(timeout=TIMEOUT)
    r = run("play", str(out), "--as", unique_name("again"), "--dir", shm_dir, "--rate", "0", "--linger", "0",
            "--json")
    assert r.returncode == 0, r.stderr
    assert "cut short" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["frames"] >= 1
    assert os.listdir(shm_dir) == []


def test_cli_help_and_errors_of_the_new_commands(tmp_path: Path) -> None:
    for cmd in ("record", "play", "foxglove"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and f"usage: shmx {cmd}" in r.stdout, r.stderr
    assert "--split-duration" in run("record", "--help").stdout
    assert_error(run("foxglove", "shmxtest-nothing-here", "--dir", str(tmp_path)), 1, "shmxtest-nothing-here")
    assert_error(run("foxglove", "x", "--port", "70000", "--dir", str(tmp_path)), 2, "port")
    assert_error(run("foxglove", "bad/name", "--dir", str(tmp_path)), 2, "invalid region name")
    assert_error(run("record", "x", "-o", str(tmp_path / "a.mcap"), "--compression", "brotli"), 2, "compression")
    assert_error(run("play", str(tmp_path / "none.mcap"), "--as", "x"), 1, "no such recording")
