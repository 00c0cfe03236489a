"""Corrupt and hostile regions: no crash, no hang, no out-of-bounds read.

* ``test_mutated_regions_never_crash``: deterministic, needs no fuzzer.  Valid
  regions made by our server are mutated field by field (every header word
  set to edge values, TLV lengths in the static directory and the frames,
  reader slots, control rings) and byte by byte; a child process opens each
  one with Inspector and Client and reads everything.  The child must never
  die from a signal or hang.
* ``test_libfuzzer_short_run``: the libFuzzer targets of tools/fuzz/ (built
  with ASan + UBSan) run for a few seconds each from the committed seeds;
  skipped when clang's libFuzzer is not installed.  tools/fuzz/README.md
  describes the long run.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tools" / "fuzz"
SEEDS = FUZZ / "corpus"

# (offset, size) of every header and extension word a reader looks at.
HEADER_FIELDS = [(0, 8), (8, 4), (12, 4), (16, 4), (24, 8), (32, 4), (40, 8)] + \
    [(off, 4) for off in range(48, 104, 4)] + [(104, 8), (112, 4), (116, 4), (120, 4)] + \
    [(128, 8), (136, 4), (140, 4), (144, 8), (152, 8), (160, 8), (168, 4), (172, 4), (176, 4),
     (180, 4), (184, 4), (192, 4), (196, 4), (200, 8)]

CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    import shmx
    d = sys.argv[1]
    for name in sorted(os.listdir(d)):
        print(name, flush=True)
        insp = shmx.Inspector()
        if insp.open(name, shm_dir=d):
            insp.inspect()
            insp.copy_latest()
            insp.close()
        c = shmx.Client()
        if c.open(name, shm_dir=d):
            c.get_streams_info()
            c.get_header_info()
            c.server_alive()
            for _ in range(2):
                for f in (c.get_latest_frame(), c.read_next()):
                    for key, entry in (f or {}).items():
                        if key != "__metadata__":
                            bytes(entry["data"])  # touch every byte of the view
            c.wait_frame(0)
            c.send_control(shmx.TLV_CONTROL_USER, b"x" * 20)
            c.refresh_static()
            c.close()
    print("DONE", flush=True)
""")


def u(data: bytes, off: int, size: int) -> int:
    return int.from_bytes(data[off:off + size], "little")


def put(buf: bytearray, off: int, size: int, value: int) -> None:
    if off + size <= len(buf):
        buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def tlv_offsets(data: bytes, start: int, end: int) -> List[int]:
    """Offsets of the TLV heads in [start, end) (as a writer laid them out)."""
    out, off = [], start
    while off + 8 <= end:
        out.append(off)
        length = u(data, off + 4, 4)
        off += (8 + length + 15) & ~15
    return out


def mutations(seed: bytes, rng: random.Random) -> Iterator[Tuple[str, bytes]]:
    size = len(seed)
    edge = [0, 1, 7, 8, 15, 16, 63, 64, 127, 128, 255, 256, size - 1, size, size + 1,
            size // 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF, (1 << 64) - 1]
    # 1. every header/extension word set to edge values
    for off, width in HEADER_FIELDS:
        for v in rng.sample(edge, 6):
            m = bytearray(seed)
            put(m, off, width, v)
            yield f"hdr{off}={v:x}", bytes(m)
    static_off, static_used = u(seed, 48, 4), u(seed, 56, 4)
    slots, stride, slots_off, readers_off = u(seed, 60, 4), u(seed, 64, 4), u(seed, 68, 4), u(seed, 84, 4)
    control_off, cpr, cstride, nreaders = u(seed, 88, 4), u(seed, 92, 4), u(seed, 96, 4), u(seed, 76, 4)
    # 2. static directory TLVs and stream descriptors
    for t in tlv_offsets(seed, static_off, static_off + static_used):
        for field in range(0, 40, 4):  # tlv type/len + 8 descriptor words
            for v in rng.sample(edge, 4):
                m = bytearray(seed)
                put(m, t + field, 4, v)
                yield f"static{t}+{field}={v:x}", bytes(m)
    # 3. frame headers and frame TLVs
    for s in range(min(slots, 4)):
        base = slots_off + s * stride
        for field, width in ((8, 8), (24, 4), (28, 4), (40, 8), (48, 8)):
            for v in rng.sample(edge, 4):
                m = bytearray(seed)
                put(m, base + field, width, v)
                yield f"slot{s}+{field}={v:x}", bytes(m)
        payload = u(seed, base + 24, 4)
        for t in tlv_offsets(seed, base + 64, base + 64 + min(payload, stride - 64)):
            for field in range(0, 24, 4):  # tlv type/len + stream head
                for v in rng.sample(edge, 4):
                    m = bytearray(seed)
                    put(m, t + field, 4, v)
                    yield f"frame{s}@{t}+{field}={v:x}", bytes(m)
    # 4. reader slots and control rings
    for r in range(min(nreaders, 2)):
        for field, width in ((0, 8), (24, 4), (28, 4), (32, 8)):
            for v in rng.sample(edge, 3):
                m = bytearray(seed)
                put(m, readers_off + r * 64 + field, width, v)
                yield f"reader{r}+{field}={v:x}", bytes(m)
        if cpr:
            ring = control_off + r * cstride
            for field in (0, 8, 16, 20):
                for v in rng.sample(edge, 4):
                    m = bytearray(seed)
                    put(m, ring + field, 8 if field < 16 else 4, v)
                    yield f"ring{r}+{field}={v:x}", bytes(m)
    # 5. random byte flips, single and in bursts; truncations
    for k in range(60):
        m = bytearray(seed)
        for _ in range(1 + k % 8):
            m[rng.randrange(size)] ^= 1 << rng.randrange(8)
        yield f"flip{k}", bytes(m)
    for cut in (0, 1, 64, 127, 128, 200, 256, size // 2, size - 64, size - 1):
        yield f"cut{cut}", seed[:max(cut, 0)]


def test_mutated_regions_never_crash(tmp_path):
    rng = random.Random(20240601)
    seeds = sorted((SEEDS / "region").glob("*.bin"))
    assert seeds, "no seed regions in tools/fuzz/corpus/region"
    d = tmp_path / "regions"
    d.mkdir()
    count = 0
    for seed_file in seeds:
        seed = seed_file.read_bytes()
        for label, data in mutations(seed, rng):
            (d / f"m{count:05d}").write_bytes(data)
            count += 1
    assert count > 1000
    proc = subprocess.run([sys.executable, "-c", CHILD, str(d), str(ROOT)], capture_output=True,
                          text=True, timeout=240)
    done = proc.stdout.splitlines()
    last = done[-1] if done else "(none)"
    assert proc.returncode == 0, (
        f"child died ({'signal ' + signal.Signals(-proc.returncode).name if proc.returncode < 0 else proc.returncode})"
        f" on region {last}\nstderr:\n{proc.stderr[-3000:]}")
    assert last == "DONE", proc.stdout[-2000:]
    assert len(done) == count + 1


# --------------------------------------------------------------- libFuzzer

def have_libfuzzer() -> str:
    clang = shutil.which("clang")
    if clang is None:
        return "clang is not installed (apt-get install clang)"
    probe = subprocess.run([clang, "-fsanitize=fuzzer", "-x", "c", "-", "-o", os.devnull],
                           input="#include <stdint.h>\n#include <stddef.h>\n"
                                 "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                                 "{(void)d;(void)n;return 0;}\n",
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return f"clang cannot link libFuzzer: {probe.stderr.strip()[:200]}"
    return ""


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory) -> Path:
    why = have_libfuzzer()
    if why:
        pytest.skip(why)
    build = tmp_path_factory.mktemp("fuzzbuild")
    proc = subprocess.run(["make", "-j2", "-C", str(FUZZ), f"BUILD={build}"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return build


def test_libfuzzer_short_run(fuzz_build, tmp_path):
    seconds = int(os.environ.get("SHMX_FUZZ_SECONDS", "10"))
    runs = []
    for target, seeds, max_len in (("fuzz_region", "region", 4096), ("fuzz_control", "control", 1024),
                                   ("fuzz_live", "live", 2048)):
        corpus = tmp_path / f"corpus-{target}"
        shutil.copytree(SEEDS / seeds, corpus)
        scratch = tmp_path / f"tmp-{target}"
        scratch.mkdir()
        env = dict(os.environ, SHMX_FUZZ_TMP=str(scratch))
        env.pop("SHMX_DIR", None)
        cmd = [str(fuzz_build / target), f"-max_total_time={seconds}", f"-max_len={max_len}",
               "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/{target}-",
               "-print_final_stats=1", str(corpus)]
        runs.append((target, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)))
    for target, proc in runs:
        out, _ = proc.communicate(timeout=seconds + 120)
        artifacts = sorted(p.name for p in tmp_path.glob(f"{target}-*"))
        assert proc.returncode == 0 and not artifacts, f"{target} found {artifacts}:\n{out[-6000:]}"
        assert "Done" in out and "stat::number_of_executed_units" in out, out[-2000:]
