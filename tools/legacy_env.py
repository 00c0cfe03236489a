#!/usr/bin/env python3
"""Build the shmx 1.0.1 package from PyPI into its own virtual environment.

The compatibility tests (tests/test_legacy.py) run the original shmx 1.0.1
implementation - a pybind11 module over a C++ header library - next to ours,
in separate processes, on the same shared-memory regions.  Both packages are
imported as ``shmx``, so the legacy one lives in a private venv under the
git-ignored folder ``.peers/shmx101`` and legacy code only ever runs in that
venv's interpreter, from a temporary working directory, with ``PYTHONPATH``
unset (see ``legacy_env()``), so our tree can never shadow it.

What the build needs: a C++17 compiler and CMake >= 3.15 on PATH (Debian:
``apt-get install g++ cmake``), the Python headers, and PyPI for
``shmx==1.0.1`` (sdist), ``pybind11``, ``setuptools`` and ``wheel``.
pybind11 goes into the venv and CMake is pointed at it with
``pybind11_DIR`` (otherwise the package's CMakeLists would try to clone
pybind11 from GitHub).  The build runs without pip's build isolation so it
uses the machine's CMake instead of downloading one.

    python tools/legacy_env.py            # build once, print the python path
    python tools/legacy_env.py --rebuild  # throw the venv away and rebuild

``ensure_legacy_python(root)`` does the same from code and raises
``RuntimeError`` with the reason when the package cannot be built.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

LEGACY_VERSION = "1.0.1"
PEER_SUBDIR = pathlib.Path(".peers") / "shmx101"
PYBIND11_REQ = "pybind11>=2.11,<4"
BUILD_REQS = ["setuptools>=45,<81", "wheel", PYBIND11_REQ]
STEP_TIMEOUT_S = 900  # one pip step; the C++ build itself takes well under a minute
STAMP_NAME = "built.json"


def peer_dir(root: pathlib.Path) -> pathlib.Path:
    """Where the legacy venv and its build log live, for repository ``root``."""
    return pathlib.Path(root).resolve() / PEER_SUBDIR


def venv_python(root: pathlib.Path) -> pathlib.Path:
    """Path of the legacy venv's interpreter (it may not exist yet)."""
    return peer_dir(root) / "venv" / "bin" / "python"


def legacy_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """An environment for running the legacy interpreter: no PYTHONPATH, no
    user site, nothing that could put our ``shmx`` in front of theirs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"))
           and k not in ("__PYVENV_LAUNCHER__",)}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def run_legacy(python: pathlib.Path, code: str, *args: str, timeout: float = 60.0,
               input_text: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``code`` in the legacy interpreter (isolated mode, temp cwd)."""
    with tempfile.TemporaryDirectory(prefix="shmx101-run-") as cwd:
        return subprocess.run([str(python), "-I", "-c", code, *args], cwd=cwd, env=legacy_env(),
                              input=input_text, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------- checks

def _tool_version(cmd: List[str]) -> Optional[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() if out.returncode == 0 else None


def check_toolchain() -> Dict[str, str]:
    """Versions of cmake and the C++ compiler; RuntimeError when missing."""
    found: Dict[str, str] = {}
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake is not on PATH (Debian: apt-get install cmake)")
    text = _tool_version([cmake, "--version"]) or ""
    m = re.search(r"(\d+)\.(\d+)", text)
    if not m or (int(m.group(1)), int(m.group(2))) < (3, 15):
        raise RuntimeError(f"shmx 1.0.1 needs CMake >= 3.15, found: {text.splitlines()[:1]}")
    found["cmake"] = text.splitlines()[0]
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler on PATH (Debian: apt-get install g++)")
    found["cxx"] = (_tool_version([cxx, "--version"]) or cxx).splitlines()[0]
    return found


def probe(python: pathlib.Path) -> Optional[str]:
    """None when ``python`` imports a working shmx 1.0.1 of its own venv,
    otherwise what is wrong."""
    if not python.exists():
        return f"{python} does not exist"
    code = ("import shmx, sys\n"
            "s = shmx.Server(); c = shmx.Client(); i = shmx.Inspector()\n"
            "print(shmx.__version__); print(shmx.__file__)\n")
    try:
        out = run_legacy(python, code, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {python}: {exc}"
    if out.returncode != 0:
        return f"import shmx failed in the legacy venv: {out.stderr.strip()[-2000:]}"
    lines = out.stdout.split()
    if len(lines) < 2 or lines[0] != LEGACY_VERSION:
        return f"legacy venv imports shmx {lines[:1]}, expected {LEGACY_VERSION}"
    venv = python.parent.parent.resolve()
    if venv not in pathlib.Path(lines[1]).resolve().parents:
        return f"legacy venv imports shmx from {lines[1]}, outside {venv}"
    return None


# ------------------------------------------------------------------ build

def _step(argv: List[str], log, env: Dict[str, str], cwd: pathlib.Path, what: str,
          hint: str = "") -> None:
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(cwd),
                              timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {STEP_TIMEOUT_S}s (log: {log.name})") from None
    except OSError as exc:
        raise RuntimeError(f"{what}: {exc}") from None
    log.write(f"[{what}: exit {proc.returncode} in {time.monotonic() - t0:.1f}s]\n")
    log.flush()
    if proc.returncode != 0:
        log.flush()
        tail = pathlib.Path(log.name).read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}){hint}; log {log.name}:\n" + "\n".join(tail))


def _build(root: pathlib.Path, log) -> Dict[str, object]:
    d = peer_dir(root)
    venv = d / "venv"
    dist = d / "dist"
    tools = check_toolchain()
    log.write(f"toolchain: {tools}\n")
    if venv.exists():
        shutil.rmtree(venv)
    base_env = legacy_env({"PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    t0 = time.monotonic()
    _step([sys.executable, "-m", "venv", str(venv)], log, base_env, d, "create the venv",
          " (Debian's system Python needs: apt-get install python3-venv)")
    py = venv / "bin" / "python"
    if not py.exists():
        raise RuntimeError(f"venv created without {py}")
    pip = [str(py), "-m", "pip"]
    _step(pip + ["install", *BUILD_REQS], log, base_env, d, "install build requirements")
    dist.mkdir(exist_ok=True)
    sdists = sorted(dist.glob(f"shmx-{LEGACY_VERSION}.tar.gz"))
    if not sdists:
        # --no-binary only for shmx, and no build isolation: pip prepares the
        # sdist's metadata with the venv's setuptools instead of fetching
        # (and, under ":all:", compiling) CMake for a throwaway build env.
        _step(pip + ["download", "--no-deps", "--no-build-isolation", "--no-binary", "shmx",
                     f"shmx=={LEGACY_VERSION}", "-d", str(dist)],
              log, base_env, d, f"download the shmx {LEGACY_VERSION} sdist")
        sdists = sorted(dist.glob(f"shmx-{LEGACY_VERSION}.tar.gz"))
    if not sdists:
        raise RuntimeError(f"pip download left no shmx-{LEGACY_VERSION}.tar.gz in {dist}")
    cmakedir = subprocess.run([str(py), "-m", "pybind11", "--cmakedir"], capture_output=True, text=True,
                              env=base_env, cwd=str(d), timeout=60)
    if cmakedir.returncode != 0 or not cmakedir.stdout.strip():
        raise RuntimeError(f"python -m pybind11 --cmakedir failed: {cmakedir.stderr.strip()}")
    build_env = dict(base_env)
    build_env["pybind11_DIR"] = cmakedir.stdout.strip()
    build_env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    t1 = time.monotonic()
    _step(pip + ["install", "-v", "--no-build-isolation", "--no-deps", "--no-cache-dir", "--no-binary", "shmx",
                 str(sdists[0])],
          log, build_env, d, f"build and install shmx {LEGACY_VERSION}",
          " (it needs the Python headers: Debian's system Python: apt-get install python3-dev)")
    build_s = time.monotonic() - t1
    problem = probe(py)
    if problem:
        raise RuntimeError(problem)
    return {"python": str(py), "version": LEGACY_VERSION, "built_at": time.time(),
            "total_seconds": round(time.monotonic() - t0, 1), "compile_seconds": round(build_s, 1),
            "pybind11_DIR": build_env["pybind11_DIR"], "toolchain": tools}


def ensure_legacy_python(root: pathlib.Path, rebuild: bool = False) -> pathlib.Path:
    """The legacy venv's python, building it first if needed.

    Builds at most once: later calls find the stamp and only re-check the
    import.  Safe to call from several processes at once (a file lock
    serialises the build).  Raises RuntimeError with the reason (missing
    cmake or compiler, no network to PyPI, compile error + log tail) when
    the package cannot be built.
    """
    d = peer_dir(root)
    py = venv_python(root)
    stamp = d / STAMP_NAME
    if not rebuild and stamp.exists() and probe(py) is None:
        return py
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # another process may be building it right now
        try:
            if not rebuild and stamp.exists() and probe(py) is None:
                return py
            if stamp.exists():
                stamp.unlink()
            with open(d / "build.log", "w") as log:
                info = _build(root, log)
            stamp.write_text(json.dumps(info, indent=2) + "\n")
            return py
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)


def ensure_legacy_headers(root: pathlib.Path) -> pathlib.Path:
    """A folder holding shmx 1.0.1's C++ headers (``shmx_server.h``...),
    unpacked from the sdist the build downloaded.  For C++ test drivers of
    the parts its Python module does not bind (``write_static_append``).
    Builds the venv first if needed; RuntimeError when impossible."""
    ensure_legacy_python(root)
    d = peer_dir(root)
    out = d / "include"
    names = ["shmx_common.h", "shmx_server.h", "shmx_client.h", "shmx_inspector.h"]
    if all((out / n).exists() for n in names):
        return out
    sdists = sorted((d / "dist").glob(f"shmx-{LEGACY_VERSION}.tar.gz"))
    if not sdists:
        raise RuntimeError(f"no shmx-{LEGACY_VERSION}.tar.gz in {d / 'dist'} (rebuild with --rebuild)")
    import tarfile
    out.mkdir(exist_ok=True)
    with tarfile.open(sdists[0]) as tar:
        for n in names:
            member = tar.getmember(f"shmx-{LEGACY_VERSION}/src/{n}")
            src = tar.extractfile(member)
            if src is None:
                raise RuntimeError(f"{n} is not a file in {sdists[0]}")
            (out / n).write_bytes(src.read())
    return out


def legacy_stub(root: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """shmx 1.0.1's type stub, ``shmx/__init__.pyi`` from its sdist, copied
    to ``out/shmx/__init__.pyi`` (for mypy's stubtest); returns ``out``.
    Builds the legacy venv first if its sdist is not there yet."""
    sdists = sorted((peer_dir(root) / "dist").glob(f"shmx-{LEGACY_VERSION}.tar.gz"))
    if not sdists:
        ensure_legacy_python(root)
        sdists = sorted((peer_dir(root) / "dist").glob(f"shmx-{LEGACY_VERSION}.tar.gz"))
    if not sdists:
        raise RuntimeError(f"no shmx-{LEGACY_VERSION}.tar.gz in {peer_dir(root) / 'dist'}")
    import tarfile
    with tarfile.open(sdists[0]) as tar:
        member = tar.extractfile(f"shmx-{LEGACY_VERSION}/shmx/__init__.pyi")
        if member is None:
            raise RuntimeError(f"shmx/__init__.pyi is not a file in {sdists[0]}")
        (out / "shmx").mkdir(parents=True, exist_ok=True)
        (out / "shmx" / "__init__.pyi").write_bytes(member.read())
    return out


def build_info(root: pathlib.Path) -> Dict[str, object]:
    """What the last successful build recorded ({} when none)."""
    try:
        return json.loads((peer_dir(root) / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent.parent,
                    help="repository root (default: this file's repository)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if a working venv exists")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        py = ensure_legacy_python(args.root, rebuild=args.rebuild)
    except RuntimeError as exc:
        print(f"cannot build shmx {LEGACY_VERSION}: {exc}", file=sys.stderr)
        return 1
    info = build_info(args.root)
    print(py)
    print(f"(ready in {time.monotonic() - t0:.1f}s; last build took {info.get('total_seconds', '?')}s, "
          f"compile {info.get('compile_seconds', '?')}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
