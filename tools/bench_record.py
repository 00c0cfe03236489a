#!/usr/bin/env python3
"""Record throughput: ``shmx record`` to MCAP (each chunk compression) beside
``.shmxrec``, for 640x480 and 1920x1080 RGB, at 60 frames/s and flat out.

    python tools/bench_record.py                 # about 2 minutes
    python tools/bench_record.py --seconds 2 --sizes 640x480 --out /tmp/rec.json

Each run is a real producer process (a region with an RGB stream and
width/height streams, ``--slots`` frame slots) and the real recorder
(``python -m shmx record NAME -o FILE``) writing to a tmpfs directory, so
the figures are the recorder's own: frames/s read (over the publishing
span) and written (until the file was closed), MB/s of stream data written,
the frames it dropped (the ring overwrote them before it read them), the
file size.  "60 fps" paces the producer at 60 frames/s, the
target being 0 dropped; "flat out" lets the producer run only as far
ahead of the recorder as the ring allows (it waits while the recorder is
``slots - 2`` frames behind), so nothing is dropped and the rate is what
the recorder sustains.  The ratio is the written rate over ``.shmxrec``'s in
the same run.  Output: a table on stdout, all figures as JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("shmxrec", "mcap-none", "mcap-lz4", "mcap-zstd", "sdk-none", "sdk-zstd")

# The peer: the same recording loop writing through the Foxglove SDK's MCAP
# writer (Rust), i.e. what a user would write with foxglove.open_mcap():
# the same foxglove.RawImage messages, one channel per stream.
SDK_RECORDER = r"""
import json, sys, time, foxglove, shmx
from foxglove.mcap import MCAPWriteOptions, MCAPCompression
from shmx.cli import protowire as pw
name, out, comp = sys.argv[1], sys.argv[2], sys.argv[3]
opts = MCAPWriteOptions(compression=None if comp == "none" else MCAPCompression.Zstd)
c = shmx.connect(name, timeout=10)
t0 = time.monotonic()
frames = dropped = 0
with foxglove.open_mcap(out, allow_overwrite=True, writer_options=opts):
    schema = foxglove.Schema(name=pw.RAW_IMAGE_NAME, encoding="protobuf", data=pw.RAW_IMAGE_SCHEMA)
    chans = {}
    while True:
        f = c.wait_next(0.25)
        if f is None:
            if c.server_alive() is False:
                break
            continue
        now = time.time_ns()
        dropped += f["__metadata__"]["dropped"]
        frames += 1
        w, h = (int.from_bytes(f[k]["data"], "little") for k in ("width", "height"))
        # The image stream (width/height are 8 bytes a frame: left out).
        ch = chans.get("image")
        if ch is None:
            ch = chans["image"] = foxglove.Channel(f"/{name}/image", schema=schema, message_encoding="protobuf")
        data = f["image"]["data"]
        ch.log(b"".join((pw.raw_image_head(now, name, w, h, "rgb8", w * 3, len(data)), data)), log_time=now)
print(json.dumps({"frames": frames, "dropped": dropped, "seconds": time.monotonic() - t0}))
"""

PRODUCER = r"""
import struct, sys, time, shmx
name, w, h, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[6])
fps, seconds = float(sys.argv[4]), float(sys.argv[5])
size = w * h * 3
streams = [shmx.create_stream_spec(1, "image", shmx.DT_U8, 3, 3),
           shmx.create_stream_spec(2, "width", shmx.DT_U32, 1, 4),
           shmx.create_stream_spec(3, "height", shmx.DT_U32, 1, 4)]
s = shmx.serve(name, streams, slots=slots, frame_bytes_cap=size + 4096)
# Eight distinct camera-like frames, made once (the producer's cost stays
# small): a gradient with 2 bits of sensor noise per byte, which zstd
# shrinks about as much as real footage, not the 100x of a flat picture.
import os
base = bytes(range(256)) * (size // 256 + 2)
low2 = bytes(i & 3 for i in range(256))
frames = []
for k in range(8):
    noise = os.urandom(size).translate(low2)
    mixed = int.from_bytes(base[k * 37:k * 37 + size], "little") ^ int.from_bytes(noise, "little")
    frames.append(mixed.to_bytes(size, "little"))
wh = {"width": struct.pack("<I", w), "height": struct.pack("<I", h)}
print("ready", flush=True)
end = time.monotonic() + 30
while s.get_header_info()["readers_connected"] < 1 and time.monotonic() < end:
    time.sleep(0.001)
def reader_seen():
    seen = [r["last_frame_seen"] for r in s.snapshot_readers() if r["in_use"]]
    return min(seen) if seen else 0
# The recorder's first read gives it the newest frame: hand it frame 1 first.
s.publish(dict(wh, image=frames[0]), sim_time=0.0)
end = time.monotonic() + 10
while reader_seen() < 1 and time.monotonic() < end:
    time.sleep(0.0005)
start = time.monotonic()
n = 1
while time.monotonic() - start < seconds:
    if fps > 0:
        due = start + n / fps
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    else:
        stuck = time.monotonic() + 10
        while n - reader_seen() >= slots - 2:  # back-pressure: stay inside the ring
            if time.monotonic() > stuck:  # the recorder stopped reading
                print(n, time.monotonic() - start, flush=True)
                s.destroy()
                sys.exit(1)
            time.sleep(0.0002)
    n += 1
    s.publish(dict(wh, image=frames[n % 8]), sim_time=n / 60.0)
span = time.monotonic() - start
end = time.monotonic() + 20
while reader_seen() < n and time.monotonic() < end:
    time.sleep(0.002)
print(n, span, start, flush=True)
s.destroy()
"""


def run_one(fmt: str, w: int, h: int, fps: float, seconds: float, slots: int, outdir: Path,
            python: str) -> Dict[str, Any]:
    name = f"shmxbench-rec-{os.getpid()}-{fmt}-{w}x{h}"
    ext = ".shmxrec" if fmt == "shmxrec" else ".mcap"
    out = outdir / f"{fmt}-{w}x{h}{ext}"
    prod = subprocess.Popen([python, "-c", PRODUCER, name, str(w), str(h), str(fps), str(seconds), str(slots)],
                            stdout=subprocess.PIPE, text=True)
    assert prod.stdout is not None
    if prod.stdout.readline().strip() != "ready":
        raise RuntimeError("the producer did not start")
    if fmt.startswith("sdk-"):
        cmd = [python, "-c", SDK_RECORDER, name, str(out), fmt.split("-")[1]]
    else:
        cmd = [python, "-m", "shmx", "record", name, "-o", str(out), "--json", "-q", "--wait", "10"]
        if fmt != "shmxrec":
            cmd += ["--compression", fmt.split("-")[1]]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rec = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    line = prod.stdout.readline().split()
    if len(line) != 3:
        raise RuntimeError("the producer did not finish")
    published, span, started = int(line[0]), max(float(line[1]), 1e-9), float(line[2])
    prod.wait(timeout=60)
    stdout, stderr = rec.communicate(timeout=120)
    # CLOCK_MONOTONIC is one clock for every process: from the first publish
    # to the recorder's exit, its queue written out and the file closed.
    to_disk = max(time.monotonic() - started, 1e-9)
    if rec.returncode != 0:
        raise RuntimeError(f"shmx record failed: {stderr.strip()}")
    s = json.loads(stdout)
    size = os.path.getsize(out)
    out.unlink()
    frames = s["frames"]
    # "fps": frames read over the publishing span; "fps_to_disk": frames over
    # the time until the recorder had written and closed the file (it
    # includes noticing the producer's end, up to 0.25 s, and its exit), the
    # sustained rate: the MCAP recorder queues up to 256 MiB between reading
    # and writing, which a short run at 60 fps can hide a slow disk in.
    return {"format": fmt, "size": f"{w}x{h}", "mode": "60 fps" if fps > 0 else "flat out",
            "published": published, "frames": frames,
            "dropped": max(s["dropped"], published - frames), "seconds": round(span, 3),
            "to_disk_seconds": round(to_disk, 3), "fps": frames / span, "fps_to_disk": frames / to_disk,
            "mb_s": frames * w * h * 3 / 1e6 / span, "mb_s_to_disk": frames * w * h * 3 / 1e6 / to_disk,
            "file_mb": size / 1e6}


def tmpfs_write_rate(directory: Path, total: int, block: int = 8 << 20) -> float:
    """MB/s of writing ``total`` bytes to a new file in ``directory`` (then removed)."""
    path = directory / "warmup.bin"
    buf = b"\x00" * block
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(total // block, 1)):
            f.write(buf)
    rate = total / (time.perf_counter() - t) / 1e6
    path.unlink()
    return rate


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="publishing time per run (default 4)")
    ap.add_argument("--sizes", default="640x480,1920x1080", help="WxH list (default 640x480,1920x1080)")
    ap.add_argument("--formats", default=",".join(FORMATS),
                    help=f"subset of {','.join(FORMATS)} (sdk-*: the Foxglove SDK's MCAP writer, "
                         "skipped when foxglove-sdk is not installed)")
    ap.add_argument("--modes", default="60,0", help="producer rates: 60 (fps) and 0 (flat out)")
    ap.add_argument("--slots", type=int, default=8, help="frame slots of the producer's ring (default 8)")
    ap.add_argument("--dir", default="/dev/shm", help="tmpfs directory for the files (default /dev/shm)")
    ap.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    args = ap.parse_args(argv)
    formats = args.formats.split(",")
    try:
        import foxglove.mcap  # noqa: F401
    except ImportError:
        formats = [f for f in formats if not f.startswith("sdk-")]
        print("foxglove-sdk is not installed: the sdk-* peers are skipped", file=sys.stderr)
    outdir = Path(tempfile.mkdtemp(prefix="shmxbench-rec-", dir=args.dir))
    results: List[Dict[str, Any]] = []
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    # A virtual machine backs guest memory lazily: the first write to pages
    # never touched since boot is several times slower than any later one.
    # Warm them (as much as the biggest run writes), and say how fast new
    # files on this tmpfs are written, cold and warm.
    biggest = max(int(x.split("x")[0]) * int(x.split("x")[1]) * 3 for x in args.sizes.lower().split(","))
    warm_bytes = int(biggest * 62 * (args.seconds + 1))
    machine_rates = [round(tmpfs_write_rate(outdir, warm_bytes), 1) for _ in range(2)]
    print(f"writing a new {warm_bytes / 1e6:.0f} MB file to {args.dir}: {machine_rates[0]:.0f} MB/s, "
          f"then {machine_rates[1]:.0f} MB/s", file=sys.stderr)
    try:
        for size in args.sizes.split(","):
            w, h = (int(x) for x in size.lower().split("x"))
            for mode in args.modes.split(","):
                for fmt in formats:
                    print(f"... {fmt} {w}x{h} {'flat out' if float(mode) == 0 else mode + ' fps'}",
                          file=sys.stderr, flush=True)
                    try:
                        results.append(run_one(fmt, w, h, float(mode), args.seconds, args.slots, outdir,
                                               sys.executable))
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        results.append({"format": fmt, "size": size, "mode": mode, "error": str(exc)})
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    load_after = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    # Ratios to .shmxrec in the same (size, mode) group.
    base = {(r["size"], r["mode"]): r for r in results if r.get("format") == "shmxrec" and "error" not in r}
    for r in results:
        b = base.get((r["size"], r["mode"]))
        if b and "error" not in r:
            r["fps_vs_shmxrec"] = r["fps_to_disk"] / b["fps_to_disk"] if b["fps_to_disk"] else None
    print(f"{'size':<10} {'mode':<9} {'format':<10} {'frames':>7} {'dropped':>7} {'read fps':>9} "
          f"{'disk fps':>9} {'disk MB/s':>9} {'file MB':>8} {'vs shmxrec':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['size']:<10} {r['mode']:<9} {r['format']:<10} failed: {r['error']}")
            continue
        ratio = r.get("fps_vs_shmxrec")
        print(f"{r['size']:<10} {r['mode']:<9} {r['format']:<10} {r['frames']:>7} {r['dropped']:>7} "
              f"{r['fps']:>9.1f} {r['fps_to_disk']:>9.1f} {r['mb_s_to_disk']:>9.1f} {r['file_mb']:>8.1f} "
              f"{(f'{ratio:.2f}x' if ratio else '-'):>10}")
    print(f"machine: a new file on {args.dir} is written at {machine_rates[0]:.0f} MB/s "
          f"(first touch of the memory), {machine_rates[1]:.0f} MB/s after")
    doc = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "tmpfs_new_file_mb_s": machine_rates,
                       "loadavg_before": load_before, "loadavg_after": load_after},
           "seconds": args.seconds, "slots": args.slots, "results": results}
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
