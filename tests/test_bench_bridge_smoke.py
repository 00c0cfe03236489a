"""Smoke test of the bridge scenario (``python tools/bench --scenarios
bridge``): a quick run of the bridge path (producer, bridge out, bridge in,
consumer: four processes) writes JSON with the documented keys.  Nothing
here looks at the timings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("zenoh", reason="the bridge benchmark needs eclipse-zenoh (pip install 'shmx[bridge]')")

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bridge_run_writes_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "bb.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "bench"), "--quick", "--scenarios", "bridge",
                             "--bridge-peers", "bridge,zenoh", "--bridge-only", "40 B", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    shm = os.environ.get("SHMX_DIR") or "/dev/shm"
    left = [f for f in os.listdir(shm) if f.startswith(f"shmxbench-bridge-{proc.pid}-")]
    assert not left, f"the benchmark left regions: {left}"
    doc = json.loads(out.read_text())["bridge"]
    assert {"schema", "peers", "figures", "targets", "runs", "machine"} <= set(doc)
    assert doc["quick"] is True and doc["peers"] == ["bridge", "zenoh"]
    runs = {(r["scenario"], r["peer"]): r for r in doc["runs"]}
    assert set(runs) == {(s, p) for s in ("40 B throughput", "40 B latency") for p in ("bridge", "zenoh")}
    for key, r in runs.items():
        assert "failed" not in r, (key, r)
        assert r["received"] > 0 and r["rate_hz"] and r["p50_us"] is not None, (key, r)
    assert runs[("40 B throughput", "bridge")]["missed"] < runs[("40 B throughput", "bridge")]["frames"]
    assert "40 B throughput frames/s" in doc["figures"] and "load average" in stdout
    assert "(8) bridge" in stdout
    # A smoke run judges nothing, the bridge's targets included.
    assert all(v is None or v["verdict"] == "not judged: smoke run" for v in doc["targets"].values())
