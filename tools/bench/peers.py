"""The contenders: each peer's worker script, interpreter and virtual
environment (``.peers/<venv>``, created from PyPI by ``--setup-peers``; shmx
1.0.1 built from its sdist by ``tools/legacy_env.py``), and the probe that
says whether a peer can run at all.  A peer that cannot be installed or
imported is reported as skipped with the reason; it never fails the run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import PEERS_DIR, ROOT, TOOLS, WORKERS


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
        """True once the probe succeeded (the peer takes part)."""
        return self.status == "ran"

    def argv(self, cfg: Dict[str, Any]) -> List[str]:
        """The command line of one worker process with config ``cfg``."""
        assert self.python is not None
        flags = ["-I"] if self.legacy else []  # isolated: our tree must not shadow shmx 1.0.1
        return [str(self.python), *flags, str(self.worker), json.dumps(cfg)]


def all_peers() -> List[Peer]:
    """Every peer, shmx first (the others' ratios are to it)."""
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


def run_quiet(argv: List[str], timeout: float, env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    """Run a command to completion; (exit code, the tail of its output)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f}s: {' '.join(argv[:4])}"
    except OSError as exc:
        return -1, str(exc)
    return p.returncode, (p.stdout + p.stderr)[-3000:]


def tail(text: str, lines: int = 3) -> str:
    """The last few meaningful lines of a tool's output, on one line."""
    rows = [r for r in text.strip().splitlines() if r.strip() and "WARNING: Location" not in r]
    return " | ".join(rows[-lines:])[-400:]


def _setup_legacy(peer: Peer, install: bool, log: Callable[[str], None]) -> None:
    sys.path.insert(0, str(TOOLS))
    try:
        import legacy_env  # builds shmx 1.0.1 into .peers/shmx101
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
            peer.status, peer.reason = "skipped", f"cannot build shmx 1.0.1: {tail(str(exc), 2)}"
            return
        # numpy is optional for the workers; it makes the large-frame
        # consumers do their work in C like everyone else's.
        run_quiet([str(py), "-m", "pip", "install", "-q", "numpy"], 600, env=peer.env)
    elif not py.exists():
        peer.status, peer.reason = "skipped", "not set up (run with --setup-peers)"
        return
    else:
        problem = legacy_env.probe(Path(py))
        if problem:
            peer.status, peer.reason = "skipped", f"legacy venv not usable ({tail(problem, 1)}); " \
                                                  "run with --setup-peers"
            return
    peer.python = Path(py)


def setup_peer(peer: Peer, install: bool, log: Callable[[str], None]) -> None:
    """Find (and with ``install`` create) the peer's interpreter."""
    if peer.venv is None:
        peer.python = Path(sys.executable)
        return
    if peer.legacy:
        _setup_legacy(peer, install, log)
        return
    vdir = PEERS_DIR / peer.venv
    py = vdir / "bin" / "python"
    if install and not py.exists():
        log(f"creating {vdir} with {', '.join(peer.packages)} from PyPI")
        rc, out = run_quiet([sys.executable, "-m", "venv", str(vdir)], 300)
        if rc != 0:
            peer.status, peer.reason = "skipped", f"venv creation failed: {tail(out)}"
            return
    if install and py.exists():
        rc, out = run_quiet([str(py), "-m", "pip", "install", "-q", *peer.packages], 900)
        if rc != 0:
            peer.status, peer.reason = "skipped", f"pip install {' '.join(peer.packages)} failed: {tail(out)}"
            return
    if not py.exists():
        peer.status, peer.reason = "skipped", "not set up (run with --setup-peers)"
        return
    peer.python = py


def probe_peer(peer: Peer, tmp: str) -> None:
    """Ask the peer's worker for its version; a failure marks it skipped."""
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
    peer.status, peer.reason = "skipped", f"import failed: {tail(p.stderr) or 'no answer'}"
