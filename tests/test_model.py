"""The Promela models in tools/model/, checked by spin.

slots.pml (the frame slots): the safety check with 3 and with 2 slots (2
readers), the no-starvation check (non-progress cycles under weak
fairness), and the same model without the seq_cst ordering, where spin must
find the torn read (proof that the model can see the bug it rules out).
wake.pml (waking waiters): no lost wake-up with 2 and 3 waiters, and the
separate-flag protocol this replaced, where spin must find one.
wakefd.pml (the event-loop wake fd): no lost wake-up and one record per
arm, and without the re-check after arming spin must find the lost one.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

MODELS = Path(__file__).resolve().parent.parent / "tools" / "model"
MODEL = MODELS / "slots.pml"
CC = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")

pytestmark = [
    pytest.mark.skipif(shutil.which("spin") is None,
                       reason="spin is not installed (apt-get install spin)"),
    pytest.mark.skipif(CC is None, reason="no C compiler to build spin's verifier"),
]


def verify(tmp_path: Path, defines: List[str], pan_cflags: List[str],
           pan_args: List[str], model: Path = MODEL) -> Tuple[int, str]:
    """spin -a, compile pan.c, run it; returns (errors, output)."""
    work = tmp_path / ("run" + "".join(d.replace("=", "") for d in defines + pan_cflags))
    work.mkdir()
    shutil.copy(model, work / model.name)
    subprocess.run(["spin", *defines, "-a", model.name], cwd=work, check=True,
                   capture_output=True, timeout=60)
    subprocess.run([CC, "-O1", "-w", *pan_cflags, "-o", "pan", "pan.c"], cwd=work, check=True,
                   capture_output=True, timeout=120)
    out = subprocess.run(["./pan", "-m3000000", *pan_args], cwd=work, capture_output=True,
                         text=True, timeout=240).stdout
    m = re.search(r"errors: (\d+)", out)
    assert m, f"pan printed no verdict:\n{out}"
    return int(m.group(1)), out


def unreached(out: str) -> List[str]:
    """Statements spin never reached, except the ends of the endless loops."""
    return [line.strip() for line in out.splitlines()
            if re.match(r"\s+\w+\.pml:\d+, state \d+", line) and '"-end-"' not in line]


def test_model_safety_three_slots(tmp_path):
    errors, out = verify(tmp_path, [], ["-DSAFETY"], [])
    assert errors == 0, out
    assert "Search not completed" not in out, out
    assert unreached(out) == [], out


def test_model_safety_two_slots_reaches_busy(tmp_path):
    # With as many slots as readers, "every slot pinned" happens: the busy
    # branch must be reached (and its assertion hold).
    errors, out = verify(tmp_path, ["-DNSLOTS=2"], ["-DSAFETY"], [])
    assert errors == 0, out
    assert unreached(out) == [], out


def test_model_writer_never_waits(tmp_path):
    # Non-progress cycles under weak fairness: there is no execution in which
    # the writer keeps running without ever finishing a begin_frame (with a
    # publish or a "busy").
    errors, out = verify(tmp_path, ["-DNSLOTS=2"], ["-DNP"], ["-l", "-f"])
    assert errors == 0, out
    assert "non-progress cycles" in out and "fairness enabled" in out, out


def test_model_without_fences_finds_the_torn_read(tmp_path):
    errors, out = verify(tmp_path, ["-DNOFENCE"], ["-DSAFETY"], [])
    assert errors >= 1, out
    assert "assertion violated" in out, out


@pytest.mark.parametrize("size", [[], ["-DNWAITERS=3", "-DNFRAMES=4"]], ids=["2x3", "3x4"])
def test_wake_model_loses_no_wake_up(tmp_path, size):
    # A waiter blocked for ever after the producer stopped is an invalid end
    # state; every statement (sleeping and waking included) is reached.
    errors, out = verify(tmp_path, size, ["-DSAFETY"], [], MODELS / "wake.pml")
    assert errors == 0, out
    assert "Search not completed" not in out, out
    assert unreached(out) == [], out


def test_wake_model_finds_the_lost_wake_up_of_a_separate_flag(tmp_path):
    errors, out = verify(tmp_path, ["-DFLAG"], ["-DSAFETY"], [], MODELS / "wake.pml")
    assert errors >= 1 and "invalid end state" in out, out


@pytest.mark.parametrize("size", [[], ["-DNFRAMES=4"]], ids=["2x3", "2x4"])
def test_wakefd_model_loses_no_wake_up(tmp_path, size):
    errors, out = verify(tmp_path, size, ["-DSAFETY"], [], MODELS / "wakefd.pml")
    assert errors == 0, out
    assert "Search not completed" not in out, out
    assert unreached(out) == [], out


def test_wakefd_model_without_the_recheck_loses_a_wake_up(tmp_path):
    errors, out = verify(tmp_path, ["-DNORECHECK"], ["-DSAFETY"], [], MODELS / "wakefd.pml")
    assert errors >= 1 and "invalid end state" in out, out
