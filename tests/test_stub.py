"""Name for name against shmx 1.0.1, checked by a machine: mypy's stubtest
of our package against the type stub shipped in the 1.0.1 sdist
(``shmx/__init__.pyi``, taken from the sdist tools/legacy_env.py fetches).
The only difference allowed is a keyword-only parameter (with a default)
that the stub lacks: anything else (a missing name, a changed positional
parameter or default) fails."""
from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import legacy_env  # noqa: E402

ALLOWED = re.compile(r'^error: (?P<obj>[\w.]+) is inconsistent, stub does not have parameter "(?P<param>\w+)"$')


def runtime_object(path: str):
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


def test_stubtest_against_the_1_0_1_stub(tmp_path: Path) -> None:
    pytest.importorskip("mypy.stubtest", reason="mypy is not installed (pip install mypy; in the test extra)")
    try:
        stubs = legacy_env.legacy_stub(ROOT, tmp_path / "stubs")
    except RuntimeError as exc:
        pytest.skip(f"the shmx 1.0.1 sdist could not be fetched: {exc}")
    env = dict(os.environ, MYPYPATH=str(stubs), PYTHONPATH=str(ROOT))
    (tmp_path / "none.ini").write_text("[mypy]\n")  # not the checkout's config
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "shmx", "--ignore-missing-stub",
                           "--mypy-config-file", str(tmp_path / "none.ini")],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=600)
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    bad = []
    for line in errors:
        m = ALLOWED.match(line)
        if not m:
            bad.append(line)
            continue
        param = inspect.signature(runtime_object(m["obj"])).parameters[m["param"]]
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.default is inspect.Parameter.empty:
            bad.append(line + f"  (runtime: {param.kind.description}, default {param.default!r})")
    assert not bad, "stubtest differences other than keyword-only additions:\n" + "\n".join(bad)
    # frame_to_numpy is named by the stub (1.0.1's own runtime lacked it).
    assert not any("frame_to_numpy" in line for line in errors)


def test_frame_to_numpy() -> None:
    np = pytest.importorskip("numpy")
    import shmx
    frame = {"__metadata__": {"frame_id": 1},
             "pos": {"data": memoryview(np.arange(6, dtype=np.float32).tobytes()), "elem_count": 2,
                     "bytes": 24},
             "raw": {"data": memoryview(b"\x01\x02"), "elem_count": 2, "bytes": 2}}
    out = shmx.frame_to_numpy(frame, {"pos": np.float32})
    assert set(out) == {"pos", "raw"}
    assert out["pos"].tolist() == [0, 1, 2, 3, 4, 5] and out["pos"].dtype == np.float32
    assert out["raw"].dtype == np.uint8 and out["raw"].tolist() == [1, 2]
    assert shmx.frame_to_numpy(frame, {"pos": shmx.DT_F32})["pos"].dtype == np.float32
