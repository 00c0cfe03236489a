"""Worker processes and one measured run.

A worker is ``python tools/bench_peers/<peer>_worker.py '<json config>'``
under the peer's interpreter, speaking JSON lines on stdout and reading
``go``/``stop`` on stdin (the protocol is described in
``tools/bench_peers/common.py``).  ``run_pair`` runs one producer and its
consumers, ``run_single`` one in-process measurement.  This module also owns
the names a run creates (all start with ``PREFIX``) and removes every one of
them after each run, after a crash and at exit."""
from __future__ import annotations

import glob
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List

from . import FRAME_1080P, PREFIX, SMALL_BYTES
from .peers import Peer, tail


class RunFailed(Exception):
    """A run gave no result (reported per figure, the bench goes on)."""


class Unsupported(Exception):
    """The peer has no such mode (reported as n/a)."""


_live: List["Worker"] = []
_ecal_before: set = set()
_counter = [0]


def unique_name() -> str:
    """A fresh region/socket name of this run."""
    _counter[0] += 1
    return f"{PREFIX}{_counter[0]}"


def remember_foreign_ecal_files() -> None:
    """eCAL names some files itself: note the ones there before the run."""
    _ecal_before.update(glob.glob("/dev/shm/ecal_*"))


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
        """Send one command line (``go``, ``stop``); a dead worker is ignored."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((text + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(self, grace: float) -> None:
        """Wait for the worker to exit, kill it after ``grace`` seconds."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        if self in _live:
            _live.remove(self)

    def kill(self) -> None:
        """Kill the worker and whatever it forked (its own session)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def kill_all_workers() -> None:
    """Kill every worker this run started that is still alive."""
    for w in list(_live):
        w.kill()
        _live.remove(w)


def cleanup_names() -> None:
    """Remove every file this run left in /dev/shm and /tmp (also after a
    crash or a kill of a worker)."""
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
    for path in glob.glob("/dev/shm/ecal_*"):  # the ones that appeared during this run
        if path not in _ecal_before:
            try:
                os.unlink(path)
            except OSError:
                pass


def _pump(events: "queue.Queue", workers: List[Worker], result: Dict[str, Any], ready: set,
          results: Dict[str, Dict[str, Any]], until: float, done: Callable[[], bool]) -> None:
    """Handle the workers' events until ``done()`` or the deadline."""
    while not done():
        left = until - time.monotonic()
        if left <= 0:
            raise RunFailed("timed out waiting for the workers "
                            f"({tail(chr(10).join(sum((w.stderr for w in workers), [])), 2)})")
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
            err = tail("\n".join(who.stderr), 3) if who else ""
            raise RunFailed(f"{ev.get('tag')} exited without a result: {err or 'no message'}")


def run_pair(peer: Peer, scenario: str, mode: str, n_consumers: int, params: Dict[str, Any],
             tmp: str) -> Dict[str, Any]:
    """One producer and ``n_consumers`` consumers; returns their results."""
    name = unique_name()
    base = {"peer": peer.name, "name": name, "iox_prefix": PREFIX + "iox-", "scenario": scenario,
            "n_consumers": n_consumers, **peer.extra, **params}
    base["frame_bytes"] = params.get("frame_bytes", FRAME_1080P) if scenario == "big" else SMALL_BYTES
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
        if not peer.forks_consumers:  # consumers retry until the producer's channel exists
            for i in range(n_consumers):
                ccfg = dict(base, role="consumer", idx=i, mode=mode, ready_timeout=120,
                            run_timeout=expect_s + 30)
                workers.append(Worker(peer, ccfg, events, tmp))
        want = {"producer0"} | {f"consumer{i}" for i in range(n_consumers)}
        _pump(events, workers, result, ready, results, time.monotonic() + 60 + 3 * n_consumers,
              lambda: ready >= want)
        prod.command("go")
        _pump(events, workers, result, ready, results, time.monotonic() + expect_s + 60,
              lambda: set(results) >= want)
        result["producer"] = results.pop("producer0")
        result["consumers"] = {k: v for k, v in sorted(results.items())}
    finally:
        for w in workers:
            w.command("stop")
        for w in workers:
            w.finish(grace=10)
        cleanup_names()
    return result


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
    raise RunFailed(f"{role}: no result ({tail(p.stderr)})")
