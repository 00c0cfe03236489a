"""SIGINT sent to the parent process alone (kill -INT, not a terminal's
Ctrl-C, which reaches the whole process group): the examples that run their
producer in a child and ``shmx demo`` clean up, leave nothing in the
shared-memory directory and exit 130."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import shmx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def interrupt_after(argv: List[str], marker: str, env=None) -> "tuple[int, str, str, float]":
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith(marker):
                break
        assert any(line.startswith(marker) for line in seen), "".join(seen) + proc.stderr.read()
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # the parent alone
        rest, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(seen) + rest, err, took


def test_multi_process_parent_sigint(unique_name: Callable[[str], str]) -> None:
    name = unique_name("mpint")
    rc, out, err, took = interrupt_after(
        [sys.executable, str(EXAMPLES / "multi_process.py"), "--name", name, "--frames", "100000",
         "--interval", "0.01"], "Consumer 0: counter=")
    print(f"multi_process.py: SIGINT to the parent -> exit {rc} in {took:.2f} s")
    assert rc == 130, out + err
    assert "Producer: Done" in out and "Interrupted" in out, out + err
    assert not [f for f in os.listdir(shmx.default_shm_dir()) if f.startswith(name)]


def test_demo_sigint_exits_130(unique_name: Callable[[str], str], tmp_path: Path) -> None:
    name = unique_name("demoint")
    proc = subprocess.Popen([sys.executable, "-m", "shmx", "demo", "--seconds", "60", "--fps", "100",
                             "--name", name, "--dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 60
        while not os.listdir(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # frames flowing
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # the demo alone, not its producer
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"shmx demo: SIGINT -> exit {proc.returncode} in {took:.2f} s")
    assert proc.returncode == 130, out + err
    assert "received" in out and f"cleanup    region {name} removed" in out, out + err
    assert "interrupted" in err and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


import pytest  # noqa: E402


@pytest.mark.parametrize("script,args,marker", [
    ("video_frames.py", ["--frames", "100000", "--fps", "50"], "Received frame"),
    ("sensors_control.py", ["--frames", "100000", "--reads", "100000"], "T="),
    ("numpy_particles.py", ["--frames", "100000"], "Frame "),
])
def test_examples_parent_sigint(unique_name: Callable[[str], str], script: str, args: List[str],
                                marker: str) -> None:
    name = unique_name("exint")
    rc, out, err, took = interrupt_after([sys.executable, str(EXAMPLES / script), "--name", name, *args],
                                         marker, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    print(f"{script}: SIGINT to the parent -> exit {rc} in {took:.2f} s")
    assert rc == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert not [f for f in os.listdir(shmx.default_shm_dir()) if f.startswith(name)]
