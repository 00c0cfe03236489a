"""The machine's own limits, measured in the same run as the peers, and
what the machine is.

Floors: 6 MB memcpy cold and hot, the cross-core cache-line round trip
(``tools/bench_c/pingpong.c``), the one-way hand-off between two processes
through a futex wake (reader on the other core, and unpinned) and through
a cross-core busy-poll (``tools/bench_c/handoff.c``), big frames copied
into a ring by one process and touched in place by another
(``tools/bench_c/copyhand.c``), and the C core's own call costs
(``tools/bench_c/latest_micro.c``, compiled against ``csrc/``).  The bare
cffi call is measured by the shmx worker (``micro``).  Also here: the load
average, and the machine description printed with every table."""
from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import C_DIR, CSRC, FRAME_1080P, RING_SLOTS, RING_SOURCES, ROOT
from .peers import run_quiet, tail
from .workers import RunFailed, Unsupported, cleanup_names, unique_name


def load1() -> Optional[float]:
    """The 1-minute load average, None where the system has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def memcpy_limits(quick: bool) -> Dict[str, Any]:
    """6 MB copies: cold (sources and destinations far larger than the
    caches, visited in turn) and hot (the same pair again and again)."""
    n = FRAME_1080P
    try:
        import numpy as np
    except ImportError:
        np = None
    k = 4 if quick else 16
    if np is not None:
        src = [np.full(n, i, dtype=np.uint8) for i in range(k)]
        dst = [np.empty(n, dtype=np.uint8) for _ in range(k)]
        for d in dst:
            d.fill(1)

        def copy(i: int) -> None:
            np.copyto(dst[i], src[i])
        how = "numpy.copyto"
    else:
        src = [bytearray([i]) * n for i in range(k)]
        dst = [bytearray(n) for _ in range(k)]
        views = [memoryview(d) for d in dst]

        def copy(i: int) -> None:
            views[i][:] = src[i]
        how = "memoryview slice assignment"
    reps = 8 if quick else 60
    samples_cold, samples_hot = [], []
    for r in range(reps):
        i = r % k
        t0 = time.perf_counter_ns()
        copy(i)
        samples_cold.append(time.perf_counter_ns() - t0)
    for _ in range(3):
        copy(0)
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        copy(0)
        samples_hot.append(time.perf_counter_ns() - t0)
    cold, hot = statistics.median(samples_cold), statistics.median(samples_hot)
    return {"memcpy_cold_us": cold / 1000, "memcpy_cold_gbps": n / cold,
            "memcpy_hot_us": hot / 1000, "memcpy_hot_gbps": n / hot, "memcpy_how": how}


def compile_c(build: str, name: str, sources: List[Path], extra: List[str], std: str = "gnu99") -> Path:
    """Compile a C benchmark program into ``build`` once per run."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise Unsupported("no C compiler (cc) on PATH")
    out = Path(build) / name
    if out.exists():
        return out
    argv = [cc, "-O2", f"-std={std}", *extra, "-o", str(out), *map(str, sources), "-pthread"]
    rc, text = run_quiet(argv, 180)
    if rc != 0:
        raise RunFailed(f"cc failed: {tail(text)}")
    return out


def cacheline_limits(build: str, quick: bool) -> Dict[str, Any]:
    """Cross-core cache-line round trip between two pinned threads."""
    if (os.cpu_count() or 1) < 2:
        raise Unsupported("one core only")
    exe = compile_c(build, "pingpong", [C_DIR / "pingpong.c"], [])
    trips, batches = (20000, 5) if quick else (200000, 9)
    rc, out = run_quiet([str(exe), "0", "1", str(trips), str(batches)], 120)
    if rc != 0:
        raise RunFailed(f"pingpong failed: {tail(out)}")
    per = json.loads(out)["ns_per_round_trip"]
    return {"cacheline_rtt_ns": min(per), "cacheline_rtt_median_ns": statistics.median(per),
            "cacheline_batches_ns": per}


def handoff_limits(build: str, quick: bool) -> Dict[str, Any]:
    """One-way hand-off between two processes at 1 kHz, in C
    (``tools/bench_c/handoff.c``), percentiles as the peers' (``latency_stats``):

    * ``futex``: the reader asleep in FUTEX_WAIT on the other core (both
      pinned): the floor of a blocking read whose reader sleeps on another
      core, which is where the peers' blocking readers end up here;
    * ``futex_any``: the same, neither pinned: the scheduler may wake the
      reader on the writer's core, which it does for this tight C pair
      (a few us) but not for the Python peers; printed, not judged against;
    * ``spin``: the reader spinning on the other core: the floor of a
      polling read."""
    if not sys.platform.startswith("linux"):
        raise Unsupported("futex hand-off: Linux only")
    from .stats import latency_stats
    exe = compile_c(build, "handoff", [C_DIR / "handoff.c"], ["-Wall", "-Wextra", "-Werror"], std="c99")
    count = "300" if quick else "2000"
    out: Dict[str, Any] = {}
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
    for key, mode, pinned in (("futex", "futex", True), ("futex_any", "futex", False), ("spin", "spin", True)):
        argv = [str(exe), mode, count, "1000"]
        if pinned:
            if len(cpus) < 2:
                out[f"{key}_error"] = "one core only"
                continue
            argv += [str(cpus[0]), str(cpus[1])]
        try:  # not run_quiet: it keeps only the tail of the output, and this is all samples
            p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"handoff {key} timed out") from None
        if p.returncode != 0:
            raise RunFailed(f"handoff {key} failed: {tail(p.stdout + p.stderr)}")
        try:
            samples = json.loads(p.stdout.strip().splitlines()[-1])["samples_ns"]
        except (ValueError, KeyError, IndexError) as exc:
            raise RunFailed(f"handoff {key}: unreadable output ({exc})") from None
        lat = latency_stats(samples)
        if not lat.get("n"):
            raise RunFailed(f"handoff {key}: no sample")
        for pct in ("p50", "p99", "p999"):
            out[f"{key}_{pct}_us"] = lat[f"{pct}_us"]
        out[f"{key}_n"] = lat["n"]
    return out


def copy_handoff(build: str, seconds: float) -> Dict[str, Any]:
    """1080p frames copied from ``RING_SOURCES`` sources into a ring of
    ``RING_SLOTS`` by one C process as fast as it can, each touched in place
    (a byte a page) by another: the touch row's floor, run in the big
    scenario beside the peers, neither process pinned (as theirs are not).
    Where the L3 holds a hot pair of frames but not the producer's sources
    and slots, hot memcpy runs from the cache and no copying transport
    comes near it; this is the work they all do."""
    exe = compile_c(build, "copyhand", [C_DIR / "copyhand.c"], ["-Wall", "-Wextra", "-Werror"], std="c99")
    rc, out = run_quiet([str(exe), str(FRAME_1080P), str(RING_SOURCES), str(RING_SLOTS), f"{seconds:g}"],
                        60 + 2 * seconds)
    if rc != 0:
        raise RunFailed(f"copyhand failed: {tail(out)}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RunFailed(f"copyhand: unreadable output ({exc})") from None


def c_latest(build: str, quick: bool) -> Dict[str, Any]:
    """The C core's latest() of an unchanged frame and 3-stream publish."""
    if str(ROOT / "bindings") not in sys.path:
        sys.path.insert(0, str(ROOT / "bindings"))
    from build_ffi import c_sources  # csrc/Makefile's list of C files (the one import of it)
    srcs = [CSRC / f for f in c_sources()]
    exe = compile_c(build, "latest_micro", [C_DIR / "latest_micro.c", *srcs],
                    [f"-I{CSRC / 'include'}", f"-I{CSRC}"])
    try:
        rc, out = run_quiet([str(exe), unique_name(), "50000" if quick else "200000"], 120)
    finally:
        cleanup_names()
    if rc != 0:
        raise RunFailed(f"latest_micro failed: {tail(out)}")
    return json.loads(out.strip().splitlines()[-1])


def machine_info() -> Dict[str, Any]:
    """Cores, CPU, caches, memory, kernel, Python, numpy, load at start."""
    info: Dict[str, Any] = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                            "implementation": platform.python_implementation(),
                            "kernel": platform.release(), "system": platform.system(),
                            "machine": platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    caches = {}
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            level = Path(d, "level").read_text().strip()
            kind = Path(d, "type").read_text().strip()
            size = Path(d, "size").read_text().strip()
            caches[f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"] = size
        except OSError:
            continue
    info["caches"] = caches
    try:
        if Path("/sys/hypervisor").exists() or "hypervisor" in Path("/proc/cpuinfo").read_text(errors="ignore"):
            info["virtualized"] = True
    except OSError:
        pass
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    return info


def machine_text(m: Dict[str, Any]) -> str:
    """One line describing the machine (and its load at start and end)."""
    caches = ", ".join(f"{k} {v}" for k, v in m.get("caches", {}).items()) or "unknown"
    load = m.get("loadavg_at_start")
    return (f"{m.get('cores')} cores, {m.get('cpu', 'unknown CPU')}"
            f"{' (virtual machine)' if m.get('virtualized') else ''}, caches {caches}, "
            f"{m.get('memory_gib', '?')} GiB; Linux {m.get('kernel')}; Python {m.get('python')}, "
            f"numpy {m.get('numpy')}" + (f"; load average at start {load[0]:.2f}" if load else "")
            + (f", at the end {m['loadavg_at_end'][0]:.2f}" if m.get("loadavg_at_end") else ""))
