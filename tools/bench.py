#!/usr/bin/env python3
"""shmx benchmarks, side by side with the peers a user would pick instead.

    python tools/bench.py --setup-peers          # full run (about 20-30 minutes)
    python tools/bench.py --quick --out /tmp/b.json   # CI smoke run: shmx only, seconds

Every scenario runs over shmx and each peer in the same round; producer and
consumers are separate processes; each peer runs under its own virtual
environment in ``.peers/`` (created from PyPI by ``--setup-peers``), through
a small worker script in ``tools/bench_peers/`` that speaks JSON lines on
stdout (see ``tools/bench_peers/common.py``).  Timestamps are
``time.perf_counter_ns()`` (CLOCK_MONOTONIC, the same clock in every process).

Scenarios: (1) 40-byte frames at 1 kHz, one-way latency, busy-polling and
blocking consumer; (2) maximum publish rate and the rate actually delivered;
(3) 1920x1080x3 frames from sources larger than the caches, touching and
copying consumers, publish cost, shmx zero-copy loan; (4) 1, 4 and 16
consumers on one producer; (5) the machine's own limits (memcpy, cross-core
cache-line round trip); (6) call costs (get_latest_frame, 3-stream publish,
the C core's latest()).  Each figure: median over rounds with min-max, and
its ratio to shmx measured in the same round.

Output: a table on stdout (progress on stderr), every raw figure as JSON
(``--out``), PNG charts next to it when matplotlib is importable, and with
``--docs`` the page docs/benchmarks.md plus its pictures in docs/img/.
A peer that cannot be installed or fails is reported as skipped with the
reason; the benchmark itself does not fail because of a peer.
"""
from __future__ import annotations

import argparse
import atexit
import datetime
import glob
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
WORKERS = TOOLS / "bench_peers"
C_DIR = TOOLS / "bench_c"
PEERS_DIR = ROOT / ".peers"
CSRC = ROOT / "csrc"
PID = os.getpid()
PREFIX = f"shmxbench-{PID}-"          # every name this run creates starts with it
FRAME_1080P = 1920 * 1080 * 3
SMALL_BYTES = 40



def _workers_common() -> Any:
    """tools/bench_peers/common.py, loaded by path (its name is generic)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("shmx_bench_common", WORKERS / "common.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


latency_stats = _workers_common().latency_stats  # the workers' percentiles, for pooled parts

# ------------------------------------------------------------------ peers


class Peer:
    """One contender: which worker, which interpreter, how to install it."""

    def __init__(self, name: str, worker: str, title: str, venv: Optional[str] = None,
                 packages: Tuple[str, ...] = (), extra: Optional[Dict[str, Any]] = None,
                 forks_consumers: bool = False, legacy: bool = False) -> None:
        self.name = name
        self.worker = WORKERS / worker
        self.title = title
        self.venv = venv
        self.packages = packages
        self.extra = extra or {}
        self.forks_consumers = forks_consumers
        self.legacy = legacy
        self.python: Optional[Path] = None
        self.env: Optional[Dict[str, str]] = None
        self.status = "pending"
        self.reason = ""
        self.version = ""
        self.modes: Dict[str, str] = {}

    @property
    def ok(self) -> bool:
        return self.status == "ran"

    def argv(self, cfg: Dict[str, Any]) -> List[str]:
        assert self.python is not None
        flags = ["-I"] if self.legacy else []  # isolated: our tree must not shadow shmx 1.0.1
        return [str(self.python), *flags, str(self.worker), json.dumps(cfg)]


def all_peers() -> List[Peer]:
    return [
        Peer("shmx", "shmx_worker.py", "shmx (this repository)"),
        Peer("shmx-1.0.1", "shmx_worker.py", "shmx 1.0.1 (PyPI, pybind11)", venv="shmx101", legacy=True),
        Peer("iceoryx2", "iceoryx2_worker.py", "iceoryx2", venv="iceoryx2", packages=("iceoryx2", "numpy")),
        Peer("ecal", "ecal_worker.py", "Eclipse eCAL (SHM layer)", venv="ecal", packages=("eclipse-ecal", "numpy")),
        Peer("zmq", "zmq_worker.py", "pyzmq PUB/SUB ipc://", venv="zmq", packages=("pyzmq", "numpy")),
        Peer("stdlib-shm", "stdlib_worker.py", "shared_memory + seqlock ring", extra={"variant": "shm"}),
        Peer("mp-pipe", "stdlib_worker.py", "multiprocessing.Pipe", extra={"variant": "pipe"}, forks_consumers=True),
        Peer("mp-queue", "stdlib_worker.py", "multiprocessing.Queue", extra={"variant": "queue"}, forks_consumers=True),
    ]


def _run_quiet(argv: List[str], timeout: float, env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f}s: {' '.join(argv[:4])}"
    except OSError as exc:
        return -1, str(exc)
    return p.returncode, (p.stdout + p.stderr)[-3000:]


def _tail(text: str, lines: int = 3) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip() and "WARNING: Location" not in r]
    return " | ".join(rows[-lines:])[-400:]


def setup_peer(peer: Peer, install: bool, log) -> None:
    """Find (and with ``install`` create) the peer's interpreter."""
    if peer.venv is None:
        peer.python = Path(sys.executable)
        return
    if peer.legacy:
        sys.path.insert(0, str(TOOLS))
        try:
            import legacy_env  # written alongside: builds shmx 1.0.1 into .peers/shmx101
        except ImportError as exc:
            peer.status, peer.reason = "skipped", f"tools/legacy_env.py is not available ({exc})"
            return
        finally:
            sys.path.pop(0)
        peer.env = legacy_env.legacy_env()
        py = legacy_env.venv_python(ROOT)
        if install:
            log(f"building shmx 1.0.1 into {legacy_env.peer_dir(ROOT)} (first time: minutes)")
            try:
                py = legacy_env.ensure_legacy_python(ROOT)
            except Exception as exc:  # RuntimeError with the reason, or anything unexpected
                peer.status, peer.reason = "skipped", f"cannot build shmx 1.0.1: {_tail(str(exc), 2)}"
                return
            # numpy is optional for the workers; it makes the large-frame
            # consumers do their work in C like everyone else's.
            _run_quiet([str(py), "-m", "pip", "install", "-q", "numpy"], 600, env=peer.env)
        elif not py.exists():
            peer.status, peer.reason = "skipped", "not set up (run with --setup-peers)"
            return
        else:
            problem = legacy_env.probe(Path(py))
            if problem:
                peer.status, peer.reason = "skipped", f"legacy venv not usable ({_tail(problem, 1)}); " \
                                                      "run with --setup-peers"
                return
        peer.python = Path(py)
        return
    vdir = PEERS_DIR / peer.venv
    py = vdir / "bin" / "python"
    if install and not py.exists():
        log(f"creating {vdir} with {', '.join(peer.packages)} from PyPI")
        rc, out = _run_quiet([sys.executable, "-m", "venv", str(vdir)], 300)
        if rc != 0:
            peer.status, peer.reason = "skipped", f"venv creation failed: {_tail(out)}"
            return
    if install and py.exists():
        rc, out = _run_quiet([str(py), "-m", "pip", "install", "-q", *peer.packages], 900)
        if rc != 0:
            peer.status, peer.reason = "skipped", f"pip install {' '.join(peer.packages)} failed: {_tail(out)}"
            return
    if not py.exists():
        peer.status, peer.reason = "skipped", "not set up (run with --setup-peers)"
        return
    peer.python = py


def probe_peer(peer: Peer, tmp: str) -> None:
    if peer.status == "skipped":
        return
    cfg = {"role": "probe", **peer.extra}
    try:
        p = subprocess.run(peer.argv(cfg), capture_output=True, text=True, timeout=120, env=peer.env, cwd=tmp)
    except (subprocess.TimeoutExpired, OSError) as exc:
        peer.status, peer.reason = "skipped", f"probe failed: {exc}"
        return
    for line in p.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("ev") == "probe":
            peer.version = str(ev.get("version", "?"))
            if peer.legacy and ev.get("legacy") is not True:
                peer.status, peer.reason = "skipped", "the legacy venv does not import shmx 1.0.1"
                return
            peer.status = "ran"
            return
        if ev.get("ev") == "error":
            peer.status, peer.reason = "skipped", f"import failed: {ev.get('reason')}"
            return
    peer.status, peer.reason = "skipped", f"import failed: {_tail(p.stderr) or 'no answer'}"


# --------------------------------------------------------------- processes

_live: List["Worker"] = []


class Worker:
    """A worker process; its stdout lines go to a shared queue."""

    def __init__(self, peer: Peer, cfg: Dict[str, Any], events: "queue.Queue", tmp: str) -> None:
        self.tag = f"{cfg['role']}{cfg.get('idx', 0)}"
        self.stderr: List[str] = []
        self.proc = subprocess.Popen(peer.argv(cfg), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=peer.env, cwd=tmp,
                                     start_new_session=True)
        _live.append(self)
        threading.Thread(target=self._pump_out, args=(events,), daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self, events: "queue.Queue") -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            events.put(ev)
        events.put({"ev": "exit", "tag": self.tag})

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())
            del self.stderr[:-20]

    def command(self, text: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((text + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(self, grace: float) -> None:
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        if self in _live:
            _live.remove(self)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and what it forked
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def kill_all_workers() -> None:
    for w in list(_live):
        w.kill()
        _live.remove(w)


_ecal_before: set = set()


def cleanup_names() -> None:
    """Remove every file this run left in /dev/shm and /tmp (also after a crash
    or a kill of a worker)."""
    shm_dirs = {"/dev/shm", os.environ.get("SHMX_DIR") or "/dev/shm"}
    patterns = [f"{d}/{PREFIX}*" for d in shm_dirs] + [f"/dev/shm/*{PREFIX}*", f"/tmp/{PREFIX}*",
                f"/tmp/iceoryx2/*/{PREFIX}*", f"/tmp/iceoryx2/{PREFIX}*"]
    for pat in patterns:
        for path in glob.glob(pat):
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass
    # eCAL names some memory files itself ("ecal_<hash>"): remove the ones
    # that appeared during this run.
    for path in glob.glob("/dev/shm/ecal_*"):
        if path not in _ecal_before:
            try:
                os.unlink(path)
            except OSError:
                pass


# ----------------------------------------------------------------- one run

class RunFailed(Exception):
    pass


_counter = [0]


def unique_name() -> str:
    _counter[0] += 1
    return f"{PREFIX}{_counter[0]}"


def run_pair(peer: Peer, scenario: str, mode: str, n_consumers: int, params: Dict[str, Any],
             tmp: str) -> Dict[str, Any]:
    """One producer and ``n_consumers`` consumers; returns their results."""
    name = unique_name()
    base = {"peer": peer.name, "name": name, "iox_prefix": PREFIX + "iox-", "scenario": scenario,
            "n_consumers": n_consumers, **peer.extra, **params}
    if scenario == "big":
        base["frame_bytes"] = params.get("frame_bytes", FRAME_1080P)
    else:
        base["frame_bytes"] = SMALL_BYTES
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if scenario == "scale" and len(cpus) >= 2:
        # The producer gets a CPU to itself and the consumers share the
        # others: the figure is then what each added consumer costs the
        # producer, not how 17 busy processes share 2 cores.
        base["producer_cpus"], base["consumer_cpus"] = cpus[:1], cpus[1:]
    events: "queue.Queue" = queue.Queue()
    workers: List[Worker] = []
    expect_s = float(params.get("duration", 0)) + float(params.get("count", 0)) / float(params.get("hz", 1000))
    pcfg = dict(base, role="producer", consumer_mode=mode, ready_timeout=120, finish_timeout=expect_s + 60,
                run_timeout=expect_s + 30)
    result: Dict[str, Any] = {"peer": peer.name, "scenario": scenario, "mode": mode, "n_consumers": n_consumers,
                              "params": params, "consumers": {}, "producer": None}
    try:
        prod = Worker(peer, pcfg, events, tmp)
        workers.append(prod)
        ready: set = set()
        results: Dict[str, Dict[str, Any]] = {}
        deadline = time.monotonic() + 60 + 3 * n_consumers

        def pump(until: float, done) -> None:
            while not done():
                left = until - time.monotonic()
                if left <= 0:
                    raise RunFailed("timed out waiting for the workers "
                                    f"({_tail(chr(10).join(sum((w.stderr for w in workers), [])), 2)})")
                try:
                    ev = events.get(timeout=min(left, 0.5))
                except queue.Empty:
                    continue
                kind = ev.get("ev")
                key = f"{ev.get('role')}{ev.get('idx', 0)}"
                if kind == "ready":
                    ready.add(key)
                    if ev.get("info"):
                        result.setdefault("info", {})[ev.get("role")] = ev["info"]
                elif kind == "result":
                    results[key] = ev
                elif kind == "unsupported":
                    raise Unsupported(ev.get("reason", "unsupported"))
                elif kind == "error":
                    raise RunFailed(f"{key}: {ev.get('reason')}")
                elif kind == "exit" and ev.get("tag") not in results:
                    who = next((w for w in workers if w.tag == ev.get("tag")), None)
                    time.sleep(0.2)  # let the stderr pump catch up
                    err = _tail("\n".join(who.stderr), 3) if who else ""
                    raise RunFailed(f"{ev.get('tag')} exited without a result: {err or 'no message'}")

        if not peer.forks_consumers:  # consumers retry until the producer's channel exists
            for i in range(n_consumers):
                ccfg = dict(base, role="consumer", idx=i, mode=mode, ready_timeout=120,
                            run_timeout=expect_s + 30)
                workers.append(Worker(peer, ccfg, events, tmp))
        want = {"producer0"} | {f"consumer{i}" for i in range(n_consumers)}
        pump(deadline, lambda: ready >= want)
        prod.command("go")
        pump(time.monotonic() + expect_s + 60, lambda: set(results) >= want)
        result["producer"] = results.pop("producer0")
        result["consumers"] = {k: v for k, v in sorted(results.items())}
    finally:
        for w in workers:
            w.command("stop")
        for w in workers:
            w.finish(grace=10)
        cleanup_names()
    return result


class Unsupported(Exception):
    pass


def run_single(peer: Peer, role: str, params: Dict[str, Any], tmp: str, timeout: float = 120) -> Dict[str, Any]:
    """A one-process measurement (micro, loan) in the peer's interpreter."""
    cfg = {"role": role, "name": unique_name(), **peer.extra, **params}
    try:
        p = subprocess.run(peer.argv(cfg), capture_output=True, text=True, timeout=timeout, env=peer.env,
                           cwd=tmp, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{role} timed out after {timeout:.0f}s") from None
    finally:
        cleanup_names()
    for line in p.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("ev") == "result":
            return ev
        if ev.get("ev") == "unsupported":
            raise Unsupported(ev.get("reason", ""))
        if ev.get("ev") == "error":
            raise RunFailed(ev.get("reason", ""))
    raise RunFailed(f"{role}: no result ({_tail(p.stderr)})")


# --------------------------------------------------------- machine limits

def memcpy_limits(quick: bool) -> Dict[str, float]:
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


def compile_c(build: str, name: str, sources: List[Path], extra: List[str]) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise Unsupported("no C compiler (cc) on PATH")
    out = Path(build) / name
    if out.exists():
        return out
    argv = [cc, "-O2", "-std=gnu99", *extra, "-o", str(out), *map(str, sources), "-pthread"]
    rc, text = _run_quiet(argv, 180)
    if rc != 0:
        raise RunFailed(f"cc failed: {_tail(text)}")
    return out


def cacheline_limits(build: str, quick: bool) -> Dict[str, Any]:
    if (os.cpu_count() or 1) < 2:
        raise Unsupported("one core only")
    exe = compile_c(build, "pingpong", [C_DIR / "pingpong.c"], [])
    trips, batches = (20000, 5) if quick else (200000, 9)
    rc, out = _run_quiet([str(exe), "0", "1", str(trips), str(batches)], 120)
    if rc != 0:
        raise RunFailed(f"pingpong failed: {_tail(out)}")
    per = json.loads(out)["ns_per_round_trip"]
    return {"cacheline_rtt_ns": min(per), "cacheline_rtt_median_ns": statistics.median(per),
            "cacheline_batches_ns": per}


def c_latest(build: str, quick: bool) -> Dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bindings"))
    from build_ffi import c_sources  # csrc/Makefile's list of C files
    srcs = [CSRC / f for f in c_sources()]
    exe = compile_c(build, "latest_micro", [C_DIR / "latest_micro.c", *srcs],
                    [f"-I{CSRC / 'include'}", f"-I{CSRC}"])
    try:
        rc, out = _run_quiet([str(exe), unique_name(), "50000" if quick else "200000"], 120)
    finally:
        cleanup_names()
    if rc != 0:
        raise RunFailed(f"latest_micro failed: {_tail(out)}")
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------ figures

# key: (section, title, unit, better, target for shmx as (op, value) or None)
FIGURES: Dict[str, Tuple[str, str, str, str, Optional[Tuple[str, float]]]] = {}


def _fig(key: str, section: str, title: str, unit: str, better: str,
         target: Optional[Tuple[str, float]] = None) -> None:
    FIGURES[key] = (section, title, unit, better, target)


S1, S2, S3, S3L, S4, S5, S6 = ("(1) 40-byte frames at 1 kHz: one-way latency",
                               "(2) maximum rate, small frames",
                               "(3) 1920x1080x3 frames (6.2 MB), sources larger than the caches",
                               "(3b) publish cost per frame without a reader",
                               "(4) scaling: consumers on one producer (blocking consumers)",
                               "(5) this machine's limits",
                               "(6) call costs")
_fig("latency.poll.p50_us", S1, "busy-poll p50", "us", "lower", ("<", 2))
_fig("latency.poll.p99_us", S1, "busy-poll p99", "us", "lower", ("<", 8))
_fig("latency.poll.p999_us", S1, "busy-poll p99.9", "us", "lower")
_fig("latency.block.p50_us", S1, "blocking p50", "us", "lower", ("<", 5))
_fig("latency.block.p99_us", S1, "blocking p99", "us", "lower", ("<", 25))
_fig("latency.block.p999_us", S1, "blocking p99.9", "us", "lower")
_fig("latency.fd.p50_us", S1, "event-loop fd p50", "us", "lower")
_fig("latency.fd.p99_us", S1, "event-loop fd p99", "us", "lower")
_fig("latency.fd.p999_us", S1, "event-loop fd p99.9", "us", "lower")
_fig("rate.publish_hz", S2, "publish rate", "msg/s", "higher", (">=", 1e6))
_fig("rate.delivered_hz", S2, "received rate", "msg/s", "higher")
_fig("rate.delivered_pct", S2, "delivered / sent", "%", "higher")
for _m, _label in (("touch", "touch"), ("copy", "copy"), ("touch_loan", "loan producer, touch")):
    _fig(f"big.{_m}.gbps", S3, f"{_label} consumer GB/s", "GB/s", "higher", (">=", 20) if _m == "touch" else None)
    _fig(f"big.{_m}.fps", S3, f"{_label} consumer frames/s", "fps", "higher")
    _fig(f"big.{_m}.publish_us", S3, f"publish cost ({_label} run)", "us", "lower")
for _size, _label in ((65536, "64 KiB"), (FRAME_1080P, "6 MB")):
    _fig(f"loan.{_size}.append_us", S3L, f"{_label} append_stream", "us", "lower")
    _fig(f"loan.{_size}.loan_us", S3L, f"{_label} zero-copy loan", "us", "lower")


def _scale_figures(n: int) -> None:
    _fig(f"scale.{n}.producer_hz", S4, f"{n:>2} consumers: producer", "msg/s", "higher")
    _fig(f"scale.{n}.consumer_min_hz", S4, f"{n:>2} consumers: slowest consumer", "msg/s", "higher")
    _fig(f"scale.{n}.consumer_median_hz", S4, f"{n:>2} consumers: median consumer", "msg/s", "higher")


for _n in (1, 4, 16):
    _scale_figures(_n)
_fig("scale.16_vs_1", S4, "producer rate 16 vs 1 consumer", "x", "higher", (">=", 0.9))
_fig("machine.memcpy_cold_gbps", S5, "memcpy 6 MB cold", "GB/s", "higher")
_fig("machine.memcpy_hot_gbps", S5, "memcpy 6 MB hot", "GB/s", "higher")
_fig("machine.cacheline_rtt_ns", S5, "cache-line round trip core 0<->1", "ns", "lower")
_fig("micro.get_latest_frame_ns", S6, "Python get_latest_frame (3 streams)", "ns", "lower", ("<", 1500))
_fig("micro.publish3_ns", S6, "Python 3-stream publish", "ns", "lower", ("<", 1500))
_fig("micro.publish_dict_ns", S6, "Python publish(dict), 3 streams", "ns", "lower")
_fig("micro.cffi_latest_ns", S6, "shmx_client_latest via cffi", "ns", "lower")
_fig("micro.c_latest_ns", S6, "C latest() of an unchanged frame", "ns", "lower", ("<", 100))
_fig("micro.c_publish3_ns", S6, "C 3-stream publish", "ns", "lower")


class Results:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.values: Dict[str, Dict[str, List[Optional[float]]]] = {}
        self.na: Dict[str, Dict[str, str]] = {}
        self.runs: List[Dict[str, Any]] = []
        # Latency samples of the parts of a round so far: (peer, mode, round) -> ns.
        # A str instead: why that round has no figure.
        self.pooled: Dict[Tuple[str, str, int], Any] = {}

    def put(self, key: str, peer: str, rnd: int, value: Optional[float]) -> None:
        row = self.values.setdefault(key, {}).setdefault(peer, [None] * self.rounds)
        row[rnd] = None if value is None else float(value)

    def not_available(self, key: str, peer: str, reason: str) -> None:
        self.na.setdefault(key, {})[peer] = reason

    def summary(self, key: str, peer: str) -> Optional[Dict[str, Any]]:
        vals = [v for v in self.values.get(key, {}).get(peer, []) if v is not None]
        if not vals:
            return None
        out: Dict[str, Any] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
        base = self.values.get(key, {}).get("shmx", [])
        ratios = [v / b for v, b in zip(self.values[key][peer], base) if v is not None and b]
        if ratios:
            out["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        return out


# ------------------------------------------------------------------ progress

class Progress:
    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.width = 0

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total
        bar = "#" * int(frac * 30)
        el = time.monotonic() - self.t0
        eta = f" eta {el / frac * (1 - frac):4.0f}s" if self.done else ""
        text = f"[{bar:<30}] {self.done:>3}/{self.total} {el:5.0f}s{eta}  {label}"
        if self.tty:
            pad = max(self.width - len(text), 0)
            sys.stderr.write("\r" + text + " " * pad)
            self.width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def advance(self) -> None:
        self.done += 1

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r" + " " * self.width + "\r")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


# ------------------------------------------------------------------ plan

def build_plan(peers: List[Peer], args, rnd: int = 0) -> List[Tuple[str, Optional[Peer], Dict[str, Any]]]:
    ok = [p for p in peers if p.ok]
    # Each round starts with another peer: whoever runs first meets a machine
    # that is still settling (caches, CPU clocks, the tests that ran before).
    k = rnd % len(ok) if ok else 0
    ok = ok[k:] + ok[:k]
    plan: List[Tuple[str, Optional[Peer], Dict[str, Any]]] = []
    sc = args.scenarios
    if "latency" in sc:
        # Each peer's messages come in parts, the peers taking turns: the
        # load of this shared machine changes within minutes, and one run
        # per peer in a row compared the peers at different moments (a
        # busy minute decided which p99 was lowest).  The parts of a round
        # are pooled.
        for part in range(args.latency_parts if ok else 0):
            turn = ok[part % len(ok):] + ok[:part % len(ok)]
            for mode in ("poll", "block", "fd"):
                for p in turn:
                    if mode == "fd" and p.name != "shmx":
                        continue  # the others' event-loop waits are their "block" modes
                    plan.append(("latency", p, {"mode": mode, "part": part}))
    if "rate" in sc:
        for p in ok:
            plan.append(("rate", p, {"mode": "poll"}))
    if "big" in sc:
        for mode in ("touch", "copy"):
            for p in ok:
                plan.append(("big", p, {"mode": mode}))
        for p in ok:
            if p.name == "shmx":
                plan.append(("big", p, {"mode": "touch", "loan": True}))
        for p in ok:
            if p.worker.name == "shmx_worker.py":
                plan.append(("loan", p, {}))
    if "scale" in sc:
        for n in args.consumers:
            for p in ok:
                plan.append(("scale", p, {"n": n}))
    if "machine" in sc:
        plan.append(("machine", None, {}))
    if "micro" in sc:
        for p in ok:
            if p.worker.name == "shmx_worker.py":
                plan.append(("micro", p, {}))
        plan.append(("c_micro", None, {}))
    return plan


def execute(step: Tuple[str, Optional[Peer], Dict[str, Any]], rnd: int, args, res: Results, tmp: str,
            build: str) -> None:
    kind, peer, opts = step
    q = args.quick
    if kind == "latency":
        assert peer is not None
        mode, part, parts = opts["mode"], opts["part"], args.latency_parts
        key = (peer.name, mode, rnd)
        if part == 0:
            res.pooled[key] = []
        pooled = res.pooled.get(key)
        if isinstance(pooled, str):
            raise Unsupported(pooled)  # why part 0 (or an earlier one) gave nothing
        assert pooled is not None
        count = args.count // parts + (1 if part < args.count % parts else 0)
        try:
            r = run_pair(peer, "latency", mode, 1, {"count": max(count, 1), "hz": 1000, "raw_samples": True}, tmp)
        except (Unsupported, RunFailed) as exc:
            res.pooled[key] = str(exc)
            raise
        c = r["consumers"]["consumer0"]
        samples = c.pop("samples", [])
        res.runs.append(dict(r, round=rnd, part=part))
        if not samples:
            res.pooled[key] = f"part {part + 1} of round {rnd + 1} received nothing"
            raise RunFailed(res.pooled[key])
        pooled.extend(samples)
        peer.modes[f"latency.{mode}"] = (r.get("info", {}).get("consumer", {}).get("mode", "") +
                                         f" [{c.get('recv')}]")
        if part == parts - 1:
            lat = latency_stats(pooled)
            for p in ("p50", "p99", "p999"):
                res.put(f"latency.{mode}.{p}_us", peer.name, rnd, lat.get(f"{p}_us"))
    elif kind == "rate":
        assert peer is not None
        r = run_pair(peer, "rate", "poll", 1, {"duration": args.duration}, tmp)
        res.runs.append(dict(r, round=rnd))
        pr, c = r["producer"], r["consumers"]["consumer0"]
        peer.modes["rate"] = r.get("info", {}).get("consumer", {}).get("mode", "")
        res.put("rate.publish_hz", peer.name, rnd, pr["rate_hz"])
        res.put("rate.delivered_hz", peer.name, rnd, c["rate_hz"])
        res.put("rate.delivered_pct", peer.name, rnd, 100.0 * c["received"] / max(pr["sent"], 1))
    elif kind == "big":
        assert peer is not None
        mode = opts["mode"]
        params = {"duration": args.duration, "frame_bytes": FRAME_1080P}
        if opts.get("loan"):
            params["loan"] = True
        r = run_pair(peer, "big", mode, 1, params, tmp)
        res.runs.append(dict(r, round=rnd))
        pr, c = r["producer"], r["consumers"]["consumer0"]
        key = f"{mode}_loan" if opts.get("loan") else mode
        peer.modes["big_loan" if opts.get("loan") else "big"] = r.get("info", {}).get("producer", {}).get("mode", "")
        res.put(f"big.{key}.gbps", peer.name, rnd, c["gbps"])
        res.put(f"big.{key}.fps", peer.name, rnd, c["fps"])
        res.put(f"big.{key}.publish_us", peer.name, rnd, pr["publish_us"])
    elif kind == "loan":
        assert peer is not None
        r = run_single(peer, "loan", {"sizes": [65536, FRAME_1080P], "min_s": 0.05 if q else 0.3,
                                            "batch": 10 if q else 100}, tmp)
        res.runs.append({"peer": peer.name, "scenario": "loan", "round": rnd, "result": r})
        for size, row in r["sizes"].items():
            res.put(f"loan.{size}.append_us", peer.name, rnd, row.get("append_us"))
            if "loan_us" in row:
                res.put(f"loan.{size}.loan_us", peer.name, rnd, row["loan_us"])
            else:
                res.not_available(f"loan.{size}.loan_us", peer.name, "no loan() in this version")
    elif kind == "scale":
        assert peer is not None
        n = opts["n"]
        r = run_pair(peer, "scale", "block", n, {"duration": args.duration}, tmp)
        res.runs.append(dict(r, round=rnd))
        rates = [c["rate_hz"] for c in r["consumers"].values()]
        peer.modes["scale"] = (r.get("info", {}).get("consumer", {}).get("mode", "") +
                               f" [{next(iter(r['consumers'].values())).get('recv')}]")
        if f"scale.{n}.producer_hz" not in FIGURES:
            _scale_figures(n)
        res.put(f"scale.{n}.producer_hz", peer.name, rnd, r["producer"]["rate_hz"])
        res.put(f"scale.{n}.consumer_min_hz", peer.name, rnd, min(rates))
        res.put(f"scale.{n}.consumer_median_hz", peer.name, rnd, statistics.median(rates))
        one = res.values.get("scale.1.producer_hz", {}).get(peer.name, [None] * res.rounds)[rnd]
        if n == 16 and one:
            res.put("scale.16_vs_1", peer.name, rnd, r["producer"]["rate_hz"] / one)
    elif kind == "machine":
        out: Dict[str, Any] = memcpy_limits(q)
        try:
            out.update(cacheline_limits(build, q))
        except (Unsupported, RunFailed) as exc:
            out["cacheline_error"] = str(exc)
        res.runs.append({"peer": "machine", "scenario": "machine", "round": rnd, "result": out})
        for key in ("memcpy_cold_gbps", "memcpy_hot_gbps", "cacheline_rtt_ns"):
            if key in out:
                res.put(f"machine.{key}", "machine", rnd, out[key])
    elif kind == "micro":
        assert peer is not None
        r = run_single(peer, "micro", {"min_s": 0.05 if q else 0.3}, tmp)
        res.runs.append({"peer": peer.name, "scenario": "micro", "round": rnd, "result": r})
        for key in ("get_latest_frame_ns", "publish3_ns", "publish_dict_ns", "cffi_latest_ns"):
            if key in r:
                res.put(f"micro.{key}", peer.name, rnd, r[key])
    elif kind == "c_micro":
        r = c_latest(build, q)
        res.runs.append({"peer": "shmx", "scenario": "c_micro", "round": rnd, "result": r})
        res.put("micro.c_latest_ns", "shmx", rnd, r["c_latest_ns"])
        res.put("micro.c_publish3_ns", "shmx", rnd, r["c_publish3_ns"])


# ------------------------------------------------------------------ output

def fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "-"
    a = abs(v)
    if unit in ("msg/s", "fps") or a >= 1e5:
        if a >= 1e6:
            return f"{v / 1e6:.2f}M"
        if a >= 1e3:
            return f"{v / 1e3:.1f}k"
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# Targets against the peers: shmx's median must be the best of all peers' medians.
RANKED = {"latency.poll.p50_us": "lowest", "latency.poll.p99_us": "lowest", "latency.block.p50_us": "lowest",
          "big.touch.gbps": "highest", "big.copy.gbps": "highest"}


def rank_check(res: "Results", key: str) -> Optional[Dict[str, Any]]:
    """Is shmx the best of all peers for ``key``?  Judged by each peer's
    figure divided by shmx's of the same round (median over the rounds):
    on this shared machine the load moves between rounds, so a peer's
    median over rounds says as much about when it ran as about the peer.
    None when shmx or every other peer lacks the figure."""
    want = RANKED.get(key)
    ours = res.summary(key, "shmx")
    if want is None or ours is None:
        return None
    others = [(s["ratio"]["median"], name, s["median"]) for name in res.values.get(key, {}) if name != "shmx"
              for s in [res.summary(key, name)] if s is not None and "ratio" in s]
    if not others:
        return None
    # The closest competitor: the smallest ratio when lower is better.
    ratio, name, value = min(others) if want == "lowest" else max(others)
    met = ratio > 1.0 if want == "lowest" else ratio < 1.0
    return {"want": want, "met": met, "shmx": ours["median"], "best_other": name, "best_value": value,
            "best_ratio": ratio}


def rank_text(res: "Results", key: str, unit: str) -> str:
    r = rank_check(res, key)
    if r is None:
        return ""
    return (f"{r['want']} of all peers: {'met' if r['met'] else 'MISSED'} "
            f"(next: {r['best_other']} {fmt(r['best_value'], unit)}, x{r['best_ratio']:.2f})")


def target_text(target: Optional[Tuple[str, float]], value: Optional[float], unit: str) -> str:
    if target is None or value is None:
        return ""
    op, want = target
    met = value < want if op == "<" else value >= want
    return f"target {op} {fmt(want, unit)}: {'met' if met else 'MISSED'}"


def fd_ratio_text(res: Results, judge: bool) -> str:
    """The event-loop fd wake-up against the futex wait_frame, same run."""
    parts = []
    met = True
    for p in ("p50", "p99"):
        fd, fu = res.summary(f"latency.fd.{p}_us", "shmx"), res.summary(f"latency.block.{p}_us", "shmx")
        if fd is None or fu is None or not fu["median"]:
            return ""
        ratio = fd["median"] / fu["median"]
        met = met and ratio <= 1.2
        parts.append(f"{p} {fmt(fd['median'], 'us')} / {fmt(fu['median'], 'us')} us = {ratio:.2f}x")
    verdict = f" (target <= 1.20x: {'met' if met else 'MISSED'})" if judge else ""
    return "  event-loop fd vs futex wait_frame (shmx): " + ", ".join(parts) + verdict


def render_table(res: Results, peers: List[Peer], machine: Dict[str, Any], judge: bool = True) -> str:
    lines: List[str] = []
    order = [p.name for p in peers] + ["machine"]
    section = None
    tw = max(len(f"{t} ({u})") for _s, t, u, _b, _t in FIGURES.values()) + 1
    head = f"  {'figure':<{tw}} {'peer':<11} {'median':>8} {'[min - max]':>19}  {'x shmx':>17}  note"
    # Figures grouped by section, sections in the order first defined: the
    # scaling figures are registered per consumer count at run time, and
    # printed in definition order they made a second "(4)" after "(6)".
    sections: List[str] = []
    for sec, *_rest in FIGURES.values():
        if sec not in sections:
            sections.append(sec)
    grouped = sorted(FIGURES.items(), key=lambda kv: sections.index(kv[1][0]))
    for key, (sec, title, unit, _better, target) in grouped:
        rows = res.values.get(key, {})
        nas = res.na.get(key, {})
        if not rows and not nas:
            continue
        if sec != section:
            section = sec
            lines.append("")
            lines.append(sec)
            lines.append(head)
        for name in order:
            if name in rows:
                s = res.summary(key, name)
                if s is None:
                    continue
                span = f"[{fmt(s['min'], unit)} - {fmt(s['max'], unit)}]"
                ratio = ""
                if "ratio" in s and name != "shmx":
                    r = s["ratio"]
                    ratio = f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"
                elif name == "shmx":
                    ratio = "1.00"
                note = "; ".join(x for x in (target_text(target, s["median"], unit),
                                             rank_text(res, key, unit)) if x) \
                    if name == "shmx" and judge else ""
                lines.append(f"  {title + ' (' + unit + ')':<{tw}} {name:<11} {fmt(s['median'], unit):>8} "
                             f"{span:>19}  {ratio:>17}  {note}")
            elif name in nas:
                lines.append(f"  {title + ' (' + unit + ')':<{tw}} {name:<11} {'n/a':>8} {'':>19}  {'':>17}  "
                             f"{nas[name][:70]}")
        if key == "latency.fd.p999_us":
            extra = fd_ratio_text(res, judge)
            if extra:
                lines.append(extra)
    return "\n".join(lines)


def render_peers(peers: List[Peer]) -> str:
    out = ["Peers and their modes:"]
    for p in peers:
        if p.status != "ran":
            out.append(f"  {p.name:<11} SKIPPED: {p.reason}")
            continue
        out.append(f"  {p.name:<11} {p.title}, version {p.version}")
        for k, v in sorted(p.modes.items()):
            out.append(f"  {'':<11}   {k}: {v}")
    return "\n".join(out)


def machine_info() -> Dict[str, Any]:
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
    if Path("/sys/hypervisor").exists() or "hypervisor" in Path("/proc/cpuinfo").read_text(errors="ignore"):
        info["virtualized"] = True
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
    caches = ", ".join(f"{k} {v}" for k, v in m.get("caches", {}).items()) or "unknown"
    load = m.get("loadavg_at_start")
    return (f"{m.get('cores')} cores, {m.get('cpu', 'unknown CPU')}"
            f"{' (virtual machine)' if m.get('virtualized') else ''}, caches {caches}, "
            f"{m.get('memory_gib', '?')} GiB; Linux {m.get('kernel')}; Python {m.get('python')}, "
            f"numpy {m.get('numpy')}" + (f"; load average at start {load[0]:.2f}" if load else "")
            + (f", at the end {m['loadavg_at_end'][0]:.2f}" if m.get("loadavg_at_end") else ""))


def make_charts(res: Results, peers: List[Peer], outdir: Path, stem: str) -> List[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: List[str] = []
    names = [p.name for p in peers if p.ok]
    colors = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}

    # Latency distributions: merged histograms of every round.
    hists: Dict[Tuple[str, str], List[int]] = {}
    lo = per = None
    for run in res.runs:
        if run.get("scenario") != "latency":
            continue
        lat = run.get("consumers", {}).get("consumer0", {}).get("latency", {})
        h = lat.get("hist")
        if not h:
            continue
        lo, per = h["lo_ns"], h["per_decade"]
        acc = hists.setdefault((run["mode"], run["peer"]), [0] * len(h["counts"]))
        for i, v in enumerate(h["counts"]):
            acc[i] += v
    if hists:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        used = [i for counts in hists.values() for i, c in enumerate(counts) if c]
        x_lo = lo * 10 ** ((min(used) - 1) / per) / 1000.0 / 1.5
        x_hi = lo * 10 ** (max(used) / per) / 1000.0 * 1.5
        for ax, mode, title in ((axes[0], "poll", "busy-polling consumer"), (axes[1], "block", "blocking consumer")):
            for name in names:
                counts = hists.get((mode, name))
                if not counts or not sum(counts):
                    continue
                total = float(sum(counts))
                xs, ys = [], []
                cum = 0
                for i, cnt in enumerate(counts):
                    cum += cnt
                    xs.append(lo * 10 ** (i / per) / 1000.0)
                    ys.append(1.0 - cum / total)
                ax.step(xs, [max(y, 1e-6) for y in ys], where="post", label=name, color=colors[name])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(1e-5, 1.2)
            ax.set_xlabel("one-way latency (us)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("fraction of frames slower than x")
        axes[0].legend(fontsize=8)
        axes[1].legend(fontsize=8)
        fig.suptitle("40-byte frames at 1 kHz: latency distribution (all rounds)")
        fig.tight_layout()
        path = outdir / f"{stem}_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))

    # GB/s per peer.
    big_modes = ("touch", "copy", "touch_loan")
    bars = [(n, [res.summary(f"big.{m}.gbps", n) for m in big_modes]) for n in names]
    bars = [(n, s) for n, s in bars if any(s)]
    if bars:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.27
        labels = {"touch": "consumer touches each page", "copy": "consumer copies the frame",
                  "touch_loan": "zero-copy loan producer, consumer touches each page"}
        for j, m in enumerate(big_modes):
            xs, ys, err_lo, err_hi = [], [], [], []
            for i, (n, s) in enumerate(bars):
                if s[j] is None:
                    continue
                xs.append(i + (j - 1) * width)
                ys.append(s[j]["median"])
                err_lo.append(s[j]["median"] - s[j]["min"])
                err_hi.append(s[j]["max"] - s[j]["median"])
            if xs:
                ax.bar(xs, ys, width, yerr=[err_lo, err_hi], capsize=3, label=labels[m])
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([n for n, _ in bars])
        ax.set_yscale("log")
        ax.set_ylabel("GB/s received (median, min-max)")
        ax.set_title("1920x1080x3 frames: bandwidth delivered to one consumer")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = outdir / f"{stem}_gbps.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))

    # Scaling.
    ns = sorted({int(k.split(".")[1]) for k in res.values if k.startswith("scale.") and k.split(".")[1].isdigit()})
    if ns:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name in names:
            prod = [res.summary(f"scale.{n}.producer_hz", name) for n in ns]
            cons = [res.summary(f"scale.{n}.consumer_min_hz", name) for n in ns]
            pts = [(n, s["median"]) for n, s in zip(ns, prod) if s]
            if pts:
                axes[0].plot(*zip(*pts), marker="o", label=name, color=colors[name])
            pts = [(n, s["median"]) for n, s in zip(ns, cons) if s]
            if pts:
                axes[1].plot(*zip(*pts), marker="o", label=name, color=colors[name])
        for ax, title in ((axes[0], "producer publish rate"), (axes[1], "slowest consumer's received rate")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_yscale("log")
            ax.set_xlabel("consumer processes")
            ax.set_ylabel("messages/s")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle("One producer, N blocking consumers, 40-byte frames at full speed")
        fig.tight_layout()
        path = outdir / f"{stem}_scaling.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    return made


def targets_report(res: Results) -> List[Dict[str, Any]]:
    out = []
    for key, (_sec, title, unit, _b, target) in FIGURES.items():
        if target is None:
            continue
        s = res.summary(key, "shmx")
        op, want = target
        entry: Dict[str, Any] = {"figure": key, "title": title, "unit": unit, "op": op, "target": want,
                                 "measured": None if s is None else s["median"]}
        if s is not None:
            entry["met"] = s["median"] < want if op == "<" else s["median"] >= want
        out.append(entry)
    for key, want in RANKED.items():
        r = rank_check(res, key)
        if r is not None and key in FIGURES:
            _sec, title, unit, _b, _t = FIGURES[key]
            out.append({"figure": key, "title": title, "unit": unit, "op": f"{want} of all peers",
                        "target": None, "measured": r["shmx"], "met": r["met"],
                        "best_other": r["best_other"], "best_value": r["best_value"],
                        "best_ratio": r["best_ratio"]})
    return out


def write_docs(text_table: str, peers_text: str, machine: Dict[str, Any], charts: List[str],
               command: str, started: str, targets: List[Dict[str, Any]], parts: int) -> Path:
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    rel = []
    for c in charts:
        dest = img / ("bench_" + Path(c).name.split("_", 1)[-1])
        shutil.copy(c, dest)
        rel.append(f"img/{dest.name}")
    tgt = ["| target | measured (median) | |", "| --- | --- | --- |"]
    for t in targets:
        m = t["measured"]
        goal = (f"{t['op']} {fmt(t['target'], t['unit'])} {t['unit']}" if t["target"] is not None else
                f"{t['op']} (next: {t['best_other']} {fmt(t['best_value'], t['unit'])} {t['unit']}, "
                f"x{t['best_ratio']:.2f} shmx)")
        tgt.append(f"| {t['title']} {goal} | "
                   f"{fmt(m, t['unit']) if m is not None else 'n/a'} {t['unit']} | "
                   f"{'met' if t.get('met') else ('missed' if m is not None else '')} |")
    turns = ("" if parts < 2 else
             f"\nThe load of this shared machine moves from minute to minute, so each\n"
             f"peer's latency messages come in {parts} parts per round, the peers taking\n"
             f"turns, and a round's percentiles are over its pooled parts.")
    doc = f"""# Benchmarks

Measured by `tools/bench.py` on {started}. Every figure is the median over
the rounds, with the smallest and largest round in brackets; "x shmx" is the
figure divided by shmx's figure of the same round (median and range of
those ratios), so 0.5 means half of shmx's value: better for rates, worse
for times, and the other way round.  "Lowest (highest) of all peers" is
judged by those same-round ratios: met when every other peer's median
ratio is above (below) 1.{turns}

## Reproduce

```
{command}
```

`--setup-peers` creates one virtual environment per peer under `.peers/`
(from PyPI; shmx 1.0.1 is built from its sdist by `tools/legacy_env.py`).
`--quick` is the seconds-long smoke run CI uses (shmx only, small counts).

## Machine

{machine_text(machine)}.

This is a shared 2-core virtual machine: other jobs ran on it during the
measurement, so the spread (the brackets) matters as much as the medians,
and anything that needs both cores to itself (a busy-polling consumer next
to a spinning producer, 16 consumers) is hit hardest.

## Results

```
{peers_text}
{text_table}
```

### Targets (shmx)

{chr(10).join(tgt)}

## Charts

""" + "\n\n".join(f"![{Path(r).stem}]({r})" for r in rel) + """

## Reading the peers' figures

* **shmx** is used in its fastest documented modes: `publish_stream()`
  (a one-stream frame in one C call) for the small and large frames,
  `get_latest_stream(new_only=True)` (the stream's view of a newer frame, no
  dicts) for busy polling, `read_next()` for the rate scenario (it reports
  drops), `wait_frame()` for blocking.  The 3-stream figures in (6) use the
  documented `begin_frame`/`append_stream`/`publish_frame` and
  `get_latest_frame()`.
* **shmx 1.0.1** is a pybind11 module: its calls do not release the GIL,
  which makes each call cheaper than a plain cffi call (cffi releases and
  retakes the GIL around every C call; our extension keeps it for the
  non-blocking ones), so its small-call figures can beat ours; but it has no blocking read, no
  in-order read and no loan, its `append_stream` takes `bytes` only (a 6 MB
  numpy frame is turned into bytes first, as its own documented example
  does), and its readers verify a checksum over the whole payload.
* **zmq**'s publish cost for large frames is only the hand-over to its I/O
  thread (`copy=False`); the copy through the socket happens there, so look
  at the frames the consumer received.
* **eCAL** hands messages to a callback on its own thread, as `bytes`; it
  has no busy-poll mode, and `send` takes `bytes` only.
* **mp-pipe / mp-queue** never drop: the producer is held back to the
  consumer's pace (or the slowest one's), so "delivered" is 100 % and the
  publish rate is what the consumers can take.
* **stdlib-shm** is the lower bound of a do-it-yourself ring in pure
  Python: no wake-up, no reader tracking, x86-only memory ordering.
* One-way latency is stamped before the whole publish call, so it includes
  the publish (for shmx, `publish_stream`).

## How it measures

* Producer and consumers are separate processes, started by the driver;
  each peer runs under its own interpreter and virtual environment and
  speaks JSON lines to the driver (`tools/bench_peers/`).  Until every
  consumer has received a warm-up message nothing is measured.
* Every message carries its id and the producer's `time.perf_counter_ns()`
  (CLOCK_MONOTONIC, comparable across processes) taken just before the
  publish call; the consumer takes its own stamp as soon as the message is
  in hand (eCAL: first thing in its receive callback).  The garbage
  collector is off during the measured loops, for every peer alike.
* (1) 10,000 messages of 40 bytes, paced at 1 kHz by a sleep-then-spin
  producer.  Busy-poll: the consumer calls the peer's non-blocking receive in
  a loop; blocking: the peer's own wait (shmx `wait_frame`, a futex).
* (2) the producer publishes as fast as it can for a few seconds; "received
  rate" is what one busy-polling consumer got per second, "delivered / sent"
  the share of messages it saw.  For shmx the consumer reads in order with
  `read_next()`, and the sum of its reported `dropped` counts is checked
  against the gaps in the ids it saw (the raw JSON has both).
* (3) 1920x1080x3 uint8 frames, the producer cycling through 8 distinct
  source arrays (50 MB, more than the caches).  "touch" reads one byte of
  every 4 KiB page of each frame in place; "copy" ends with a private copy
  of each frame (for pipes and queues, the receive already is that copy).
  GB/s = frames received x 6,220,800 bytes / s.  Publish cost = the
  producer's time inside the publish call(s), per frame.  (3b) times
  `begin_frame` + `append_stream` (a copy) against `begin_frame` + `loan` +
  `publish_frame` (the producer writes the frame in place) with no reader.
* (4) one producer at full speed, 1, 4 and 16 consumer processes using the
  peer's blocking receive (where a peer has none, polling with a yield).
  The producer runs alone on CPU 0 and the consumers share the other CPUs
  (`sched_setaffinity`, every peer alike): the figure is what each added
  consumer costs the producer, not how 17 busy processes share 2 cores.
* (5) `numpy.copyto` of 6 MB, cold (16 source/destination pairs in turn) and
  hot (one pair again); a C program pins two threads to cores 0 and 1 and
  bounces one cache line between them (the floor of any cross-core hand-off).
* (6) call costs in one process: `get_latest_frame()` of an unchanged frame
  with 3 small streams, a whole 3-stream publish, and the same two in C
  (`tools/bench_c/latest_micro.c`, compiled against `csrc/`).
"""
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text(doc)
    return path


# ------------------------------------------------------------------ main

def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run: shmx only, small counts")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output path (default tools/out/bench.json; --quick: none unless given)")
    ap.add_argument("--setup-peers", action="store_true", help="create/refresh the peers' venvs in .peers/ from PyPI")
    ap.add_argument("--peers", default=None, help="comma-separated subset of peers (shmx always runs)")
    ap.add_argument("--scenarios", default="latency,rate,big,scale,machine,micro",
                    help="comma-separated subset of: latency,rate,big,scale,machine,micro")
    ap.add_argument("--count", type=int, default=None, help="latency messages per peer and round (default 10000)")
    ap.add_argument("--latency-parts", type=int, default=None,
                    help="run each peer's latency messages in this many parts, the peers taking turns "
                         "(default 4; --quick: 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per rate/big/scale run (default 2)")
    ap.add_argument("--consumers", default=None, help="consumer counts for scaling (default 1,4,16)")
    ap.add_argument("--docs", action="store_true", help="also write docs/benchmarks.md and docs/img/*.png")
    ap.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="measure nothing: redraw the table, charts (and --docs) from an earlier --out file")
    args = ap.parse_args(argv)
    if args.from_json:
        return rerender(args)
    if args.out is None and not args.quick:
        args.out = ROOT / "tools" / "out" / "bench.json"
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.count = args.count or (200 if args.quick else 10000)
    if args.latency_parts is None:
        args.latency_parts = 1 if args.quick else 4
    if args.latency_parts < 1:
        ap.error("--latency-parts must be at least 1")
    args.duration = args.duration or (0.2 if args.quick else 2.0)
    args.consumers = [int(x) for x in (args.consumers or ("1,2" if args.quick else "1,4,16")).split(",")]
    args.scenarios = set(args.scenarios.split(","))
    command = "python tools/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup_names)
    atexit.register(kill_all_workers)
    _ecal_before.update(glob.glob("/dev/shm/ecal_*"))

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t_start = time.monotonic()
    machine = machine_info()
    peers = all_peers()
    if args.quick:
        peers = [p for p in peers if p.name == "shmx"]
    elif args.peers:
        wanted = set(args.peers.split(",")) | {"shmx"}
        peers = [p for p in peers if p.name in wanted]
    tmp = tempfile.mkdtemp(prefix=f"shmxbench-work-{PID}-")  # not PREFIX: cleanup_names() would take it
    build = os.path.join(tmp, "build")
    os.makedirs(build)
    progress = Progress(1)
    res = Results(args.rounds)
    interrupted = False
    try:
        for p in peers:
            if args.setup_peers and p.venv:
                progress.note(f"peer {p.name}: setting up")
            setup_peer(p, args.setup_peers, progress.note)
            probe_peer(p, tmp)
            if p.status != "ran":
                progress.note(f"peer {p.name}: skipped ({p.reason})")
        shmx_peer = peers[0]
        if not shmx_peer.ok:
            print(f"shmx itself cannot run: {shmx_peer.reason}", file=sys.stderr)
            return 1
        progress = Progress(len(build_plan(peers, args)) * args.rounds)
        for rnd in range(args.rounds):
            for step in build_plan(peers, args, rnd):
                kind, peer, opts = step
                label = f"round {rnd + 1}/{args.rounds} {kind} {' '.join(f'{v}' for v in opts.values())} " \
                        f"{peer.name if peer else ''}"
                progress.step(label)
                if peer is not None and not peer.ok:
                    progress.advance()
                    continue
                try:
                    execute(step, rnd, args, res, tmp, build)
                except Unsupported as exc:
                    for key in _keys_for(kind, opts):
                        res.not_available(key, peer.name if peer else "shmx", str(exc))
                except RunFailed as exc:
                    who = peer.name if peer else kind
                    res.runs.append({"peer": who, "scenario": kind, "round": rnd, "opts": opts,
                                     "failed": str(exc)})
                    progress.note(f"  {who} {kind} {opts}: failed: {exc}")
                    for key in _keys_for(kind, opts):
                        res.not_available(key, who, f"failed: {str(exc)[:120]}")
                progress.advance()
    except KeyboardInterrupt:
        interrupted = True
        progress.note("interrupted: writing what was measured")
    finally:
        progress.close()
        kill_all_workers()
        cleanup_names()
        shutil.rmtree(tmp, ignore_errors=True)

    # A smoke run (one short round, shmx only) measures too little to judge
    # a target: it says so instead of printing MISSED for a loaded machine.
    targets = [] if args.quick else targets_report(res)
    table = render_table(res, peers, machine, judge=not args.quick)
    peers_text = render_peers(peers)
    doc: Dict[str, Any] = {
        "schema": 1,
        "tool": "tools/bench.py",
        "command": command,
        "started": started,
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "quick": args.quick,
        "rounds": args.rounds,
        "interrupted": interrupted,
        "params": {"latency_count": args.count, "latency_parts": args.latency_parts, "latency_hz": 1000, "duration_s": args.duration,
                   "consumers": args.consumers, "frame_bytes": FRAME_1080P, "small_bytes": SMALL_BYTES},
        "machine": machine,
        "peers": {p.name: {"status": p.status, "reason": p.reason, "title": p.title, "version": p.version,
                           "python": str(p.python) if p.python else None, "modes": p.modes} for p in peers},
        "figures": {k: {"section": FIGURES[k][0], "title": FIGURES[k][1], "unit": FIGURES[k][2],
                        "better": FIGURES[k][3], "target": FIGURES[k][4], "values": v,
                        "summary": {peer: res.summary(k, peer) for peer in v},
                        "not_available": res.na.get(k, {})}
                    for k, v in res.values.items()},
        "not_available": res.na,
        "targets": targets,
        "runs": res.runs,
        "charts": [],
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not args.no_charts:
            doc["charts"] = make_charts(res, peers, args.out.parent, args.out.stem)
    try:
        machine["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if args.quick:
        print("SMOKE RUN (--quick): one short round of shmx alone, to check that every part runs; "
              "no target is judged and the numbers are not benchmark results.")
    print(f"shmx benchmarks - {started} - {machine_text(machine)}")
    print(peers_text)
    print(table)
    if args.out is None:
        chart_note = None
    elif doc["charts"]:
        chart_note = f"; charts: {', '.join(doc['charts'])}"
    elif args.no_charts:
        chart_note = ""
    else:
        import importlib.util
        chart_note = ("; no charts (no scenario with a chart ran)" if importlib.util.find_spec("matplotlib")
                      else "; no charts (matplotlib is not importable)")
    if chart_note is None:
        print("\nNo JSON written (--out PATH writes it).")
    else:
        print(f"\nJSON: {args.out}{chart_note}")
    if args.docs and not args.quick:
        path = write_docs(table, peers_text, machine, doc["charts"], command, started, targets,
                          args.latency_parts)
        print(f"docs: {path}")
    return 130 if interrupted else 0


def rerender(args) -> int:
    """Table, charts and docs again from a saved JSON (no measurement)."""
    doc = json.loads(args.from_json.read_text())
    res = Results(int(doc["rounds"]))
    for key, fig in doc["figures"].items():
        if key not in FIGURES and key.startswith("scale.") and key.split(".")[1].isdigit():
            _scale_figures(int(key.split(".")[1]))
        res.values[key] = fig["values"]
    res.na = doc.get("not_available", {})
    res.runs = doc.get("runs", [])
    peers = []
    for p in all_peers():
        info = doc["peers"].get(p.name)
        if info is None:
            continue
        p.status, p.reason, p.version, p.modes = info["status"], info["reason"], info["version"], info["modes"]
        peers.append(p)
    machine = doc["machine"]
    table = render_table(res, peers, machine)
    peers_text = render_peers(peers)
    out = args.out if args.out != ROOT / "tools" / "out" / "bench.json" else args.from_json
    charts = [] if args.no_charts else make_charts(res, peers, out.parent, out.stem)
    print(f"shmx benchmarks - {doc['started']} - {machine_text(machine)}")
    print(peers_text)
    print(table)
    if args.docs:
        path = write_docs(table, peers_text, machine, charts, doc["command"], doc["started"], targets_report(res),
                          int(doc["params"].get("latency_parts", 1)))
        print(f"docs: {path}")
    return 0


def _keys_for(kind: str, opts: Dict[str, Any]) -> List[str]:
    if kind == "latency":
        return [f"latency.{opts['mode']}.{p}_us" for p in ("p50", "p99", "p999")]
    if kind == "rate":
        return ["rate.publish_hz", "rate.delivered_hz", "rate.delivered_pct"]
    if kind == "big":
        m = f"{opts['mode']}_loan" if opts.get("loan") else opts["mode"]
        return [f"big.{m}.{k}" for k in ("gbps", "fps", "publish_us")]
    if kind == "scale":
        return [f"scale.{opts['n']}.{k}" for k in ("producer_hz", "consumer_min_hz", "consumer_median_hz")]
    if kind == "loan":
        return [f"loan.{s}.{k}" for s in (65536, FRAME_1080P) for k in ("append_us", "loan_us")]
    if kind == "micro":
        return ["micro.get_latest_frame_ns", "micro.publish3_ns"]
    if kind == "c_micro":
        return ["micro.c_latest_ns", "micro.c_publish3_ns"]
    return []


if __name__ == "__main__":
    sys.exit(main())
