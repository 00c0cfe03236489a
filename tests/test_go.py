"""The Go binding (go/shmx, cgo, found through pkg-config): ``go test ./...``
against a temporary ``make install`` of libshmx, and the Go demo programs
talking to Python and C peers with every byte checked.

Skipped, with the reason printed, when ``go`` is not installed (Debian:
``apt-get install golang-go``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest

import shmx
from _clib import ROOT, c_examples, have, installed_prefix, run, session_dir
from _demo import demo_streams, finish, publish_all, read_all, start, wait_readers

GO_DIR = ROOT / "go"
FRAMES = 300
PIXELS = 20000


def _require_go() -> None:
    if not have("go"):
        reason = "go is not installed (Debian: apt-get install golang-go)"
        print(f"SKIP {reason}")
        pytest.skip(reason)
    if not have("pkg-config"):
        reason = "pkg-config is not installed (Debian: apt-get install pkg-config)"
        print(f"SKIP {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Environment for the go tool: cgo finds the installed libshmx through
    pkg-config, binaries find libshmx.so through an rpath; no network."""
    _require_go()
    prefix = installed_prefix(tmp_path_factory)
    lib = prefix / "lib"
    env = {
        "PKG_CONFIG_PATH": str(lib / "pkgconfig"),
        "CGO_ENABLED": "1",
        "CGO_LDFLAGS": f"-Wl,-rpath,{lib}",
        "GOTOOLCHAIN": "local",   # never download another toolchain
        "GOPROXY": "off",         # the module has no dependencies
    }
    home = os.environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):
        base = session_dir(tmp_path_factory)
        env.update(GOCACHE=str(base / "gocache"), GOPATH=str(base / "gopath"))
    return env


@pytest.fixture(scope="module")
def go_bins(go_env: Dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = session_dir(tmp_path_factory) / "go-bin"
    out.mkdir(exist_ok=True)
    run(["go", "build", "-o", f"{out}/", "./cmd/..."], cwd=GO_DIR, env=go_env, timeout=600)
    return out


def test_go_test(go_env: Dict[str, str]) -> None:
    proc = run(["go", "test", "-count=1", "./..."], cwd=GO_DIR, env=go_env, timeout=600)
    print(proc.stdout)
    assert "ok  \tshmx.local/shmx" in proc.stdout, proc.stdout + proc.stderr


def test_go_vet_and_gofmt(go_env: Dict[str, str]) -> None:
    run(["go", "vet", "./..."], cwd=GO_DIR, env=go_env, timeout=600)
    gofmt = shutil.which("gofmt")
    if gofmt:
        out = run([gofmt, "-l", "."], cwd=GO_DIR, timeout=60).stdout.strip()
        assert not out, f"not gofmt-formatted: {out}"


def test_go_consumer_reads_python_producer(go_bins: Path, go_env: Dict[str, str],
                                           unique_name: Callable[[str], str]) -> None:
    name = unique_name("go1")
    server = shmx.serve(name, demo_streams(), slots=4, frame_bytes_cap=PIXELS + 16)
    try:
        cons = start([go_bins / "consumer", "-name", name, "-frames", FRAMES, "-send-control", "3",
                      "-quiet", "-timeout", "20s"], env=go_env)
        wait_readers(server, 1, cons)
        messages = publish_all(server, FRAMES, PIXELS)
        c = finish(cons)
        messages += server.poll_control()
    finally:
        server.destroy()
    assert c.returncode == 0, c.stdout + c.stderr
    assert f"..{FRAMES}), " in c.stdout and " 0 bad frames" in c.stdout, c.stdout
    assert [m["data"] for m in messages] == [b"ping 0", b"ping 1", b"ping 2"]


def test_go_producer_read_by_python(go_bins: Path, go_env: Dict[str, str],
                                    unique_name: Callable[[str], str]) -> None:
    name = unique_name("go2")
    prod = start([go_bins / "producer", "-name", name, "-frames", FRAMES, "-bytes", PIXELS,
                  "-rate", "1000", "-wait-readers", "1"], env=go_env)
    try:
        client = shmx.connect(name, timeout=10)
    except Exception:
        prod.kill()
        raise
    try:
        client.send_control(shmx.TLV_CONTROL_USER, b"ping 0")
        seen = read_all(client, FRAMES)
    finally:
        client.close()
    p = finish(prod)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(seen) > FRAMES // 2
    assert 'type 0x3000 "ping 0"' in p.stdout and f"published {FRAMES} frames" in p.stdout


def test_go_producer_read_by_c_consumer(go_bins: Path, go_env: Dict[str, str],
                                        tmp_path_factory: pytest.TempPathFactory,
                                        unique_name: Callable[[str], str]) -> None:
    cbins = c_examples(tmp_path_factory)
    name = unique_name("go3")
    prod = start([go_bins / "producer", "-name", name, "-frames", FRAMES, "-rate", "1000",
                  "-wait-readers", "1"], env=go_env)
    cons = run([cbins / "consumer", "--name", name, "--frames", FRAMES, "--quiet"], timeout=60,
               check=False)
    p = finish(prod)
    assert p.returncode == 0, p.stdout + p.stderr
    assert cons.returncode == 0 and "0 bad frames, 0 bad values" in cons.stdout, cons.stdout + cons.stderr
