"""examples/c: built by its Makefile with pkg-config against a temporary
``make install`` of libshmx, then run: producer + consumer checking every
byte, two consumers at once, control messages, Ctrl-C."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

import pytest

from _clib import SHM_DIR, c_examples, run
from _demo import finish, start


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return c_examples(tmp_path_factory)


def test_help(bins: Path) -> None:
    for prog in ("producer", "consumer"):
        proc = run([bins / prog, "--help"], timeout=10)
        assert "usage:" in proc.stderr


def test_producer_and_consumer(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("cex")
    prod = start([bins / "producer", "--name", name, "--frames", "300", "--rate", "1000",
                  "--bytes", "10000", "--wait-readers", "1", "--expect-control", "3"])
    cons = run([bins / "consumer", "--name", name, "--frames", "300", "--send-control", "3",
                "--quiet"], timeout=60)
    p = finish(prod)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "consumer: " in cons.stdout and " 0 bad frames, 0 bad values" in cons.stdout, cons.stdout
    assert "seq 1..300" in cons.stdout or "..300)" in cons.stdout, cons.stdout
    for i in range(3):
        assert f"type 0x3000 'ping {i}'" in p.stdout, p.stdout
    assert "published 300 frames" in p.stdout
    assert not os.path.exists(os.path.join(SHM_DIR, name))


def test_two_consumers_in_order_and_latest(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("cex2")
    prod = start([bins / "producer", "--name", name, "--frames", "400", "--rate", "2000",
                  "--wait-readers", "2", "--expect-control", "4"])
    c1 = start([bins / "consumer", "--name", name, "--frames", "400", "--send-control", "2", "--quiet"])
    c2 = start([bins / "consumer", "--name", name, "--frames", "400", "--send-control", "2", "--quiet",
                "--latest"])
    r1, r2, p = finish(c1), finish(c2), finish(prod)
    for r in (r1, r2, p):
        assert r.returncode == 0, r.stdout + r.stderr
    assert "0 bad frames, 0 bad values" in r1.stdout and "0 bad frames, 0 bad values" in r2.stdout
    # Each consumer numbers its pings from 0; the producer checks the order per sender.
    assert p.stdout.count("'ping 0'") == 2 and p.stdout.count("'ping 1'") == 2
    assert "unexpected" not in p.stdout


def test_consumer_stops_when_the_producer_is_gone(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("cex3")
    prod = start([bins / "producer", "--name", name, "--frames", "50", "--rate", "500",
                  "--wait-readers", "1", "--linger-ms", "0"])
    # No --frames: the consumer reads until the producer has destroyed the region.
    cons = run([bins / "consumer", "--name", name, "--quiet", "--timeout-ms", "10000"], timeout=60)
    assert finish(prod).returncode == 0
    assert "producer gone" in cons.stdout and "..50)" in cons.stdout, cons.stdout


def test_ctrl_c_removes_the_region(bins: Path, unique_name: Callable[[str], str]) -> None:
    name = unique_name("cex4")
    prod = start([bins / "producer", "--name", name, "--frames", "1000000", "--rate", "100"])
    path = os.path.join(SHM_DIR, name)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path)
    time.sleep(0.1)
    prod.send_signal(signal.SIGINT)
    p = finish(prod)
    assert p.returncode == 130, p.stdout + p.stderr
    assert not os.path.exists(path)
