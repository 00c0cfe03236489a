"""Helpers for the Windows tests: the mingw-w64 cross compiler and wine64.

One wine prefix serves the whole pytest session (creating one takes ~10 s),
with ``WINEDEBUG=-all`` and a persistent wineserver so each program does not
pay for a server start; the server is shut down when the session ends.
Everything skips, with the reason, when the cross compiler or wine64 is
missing (Debian: ``apt-get install gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64
wine64``; ``.ci/run`` installs them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import pytest

from _clib import CSRC, INCLUDE, run

MINGW_CC = "x86_64-w64-mingw32-gcc"
MINGW_CXX = "x86_64-w64-mingw32-g++"
#: C flags of every Windows test program (C99 printf from mingw's stdio).
MINGW_CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-D__USE_MINGW_ANSI_STDIO=1"]
WIN_LIBS = ["-lbcrypt", "-ladvapi32"]


def _find(names: Sequence[str]) -> Optional[str]:
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


def wine64_path() -> Optional[str]:
    """Debian's wine64 package installs /usr/lib/wine/wine64, off PATH."""
    return _find(["wine64", "/usr/lib/wine/wine64", "/usr/lib/wine/wine"])


def wineserver_path() -> Optional[str]:
    return _find(["wineserver", "/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver"])


def missing_tools(cxx: bool = False) -> Optional[str]:
    """Why the Windows tests cannot run here, or None."""
    if not shutil.which(MINGW_CC):
        return f"{MINGW_CC} is not installed (Debian: apt-get install gcc-mingw-w64-x86-64)"
    if cxx and not shutil.which(MINGW_CXX):
        return f"{MINGW_CXX} is not installed (Debian: apt-get install g++-mingw-w64-x86-64)"
    if not wine64_path():
        return "wine64 is not installed (Debian: apt-get install wine64)"
    if not wineserver_path():
        return "wineserver is not installed (Debian: apt-get install wine64)"
    return None


class Wine:
    """A wine prefix for the session; ``run`` executes a Windows program."""

    def __init__(self, prefix: Path, base: Path) -> None:
        self.prefix = prefix
        self.base = base  # session scratch directory (builds)
        self.wine = wine64_path() or "wine64"
        self.server = wineserver_path() or "wineserver"
        self.env: Dict[str, str] = {
            "WINEPREFIX": str(prefix),
            "WINEDEBUG": "-all",
            # No Mono/Gecko installers: nothing here needs .NET or HTML.
            "WINEDLLOVERRIDES": "mscoree,mshtml=",
            "DISPLAY": "",
        }

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        # Persistent (-p) until stop(): programs then find a running server.
        self._server = subprocess.Popen([self.server, "-f", "-p"], env={**os.environ, **self.env},
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.run(["cmd", "/c", "exit"], timeout=300, check=True)

    def stop(self) -> None:
        env = {**os.environ, **self.env}
        subprocess.run([self.server, "-k"], env=env, timeout=60, capture_output=True)
        server = getattr(self, "_server", None)
        if server is not None:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)

    def run(self, cmd: Sequence[str], *, timeout: float, env: Optional[Dict[str, str]] = None,
            cwd: Optional[Path] = None, check: bool = False) -> subprocess.CompletedProcess:
        """Run a Windows program; output goes through files, not pipes: wine's
        own helper processes (services.exe, ...) inherit the standard handles
        and live as long as the persistent wineserver, so a pipe would never
        reach end-of-file."""
        full = {**os.environ, **self.env, **(env or {})}
        args = [self.wine, *map(str, cmd)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full,
                                    cwd=str(cwd) if cwd else None)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            out.seek(0)
            err.seek(0)
            # The CRT writes CRLF line ends.
            stdout = out.read().decode(errors="replace").replace("\r\n", "\n")
            stderr = err.read().decode(errors="replace").replace("\r\n", "\n")
        if code is None:
            raise AssertionError(f"{' '.join(args)} did not finish in {timeout} s\n"
                                 f"--- stdout\n{stdout}\n--- stderr\n{stderr[-20000:]}")
        if check and code != 0:
            raise AssertionError(f"{' '.join(args)} exited with {code}\n--- stdout\n{stdout}\n"
                                 f"--- stderr\n{stderr[-20000:]}")
        return subprocess.CompletedProcess(args, code, stdout, stderr)


def wine_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    """Body of the session fixture (see conftest.py)."""
    problem = missing_tools()
    if problem:
        pytest.skip(problem)
    base = tmp_path_factory.mktemp("windows")
    wine = Wine(base / "wineprefix", base)
    try:
        wine.start()
        yield wine
    finally:
        wine.stop()


def build_mingw_library(wine: Wine) -> Path:
    """``make -C csrc TARGET=mingw`` into the session directory (once)."""
    build = wine.base / "build-mingw"
    if not (build / "shmx.dll").is_file():
        run(["make", "-C", CSRC, "TARGET=mingw", f"BUILD={build}", "-j2"], timeout=300)
    return build


def compile_mingw(sources: Sequence[Path], out: Path, build: Path, *, dll: bool = False,
                  extra: Sequence[str] = ()) -> Path:
    """A Windows executable: against shmx.dll (its import library; the DLL is
    copied beside the exe) or, by default, the static library."""
    cmd: List[str] = [MINGW_CC, *MINGW_CFLAGS, f"-I{INCLUDE}", *map(str, sources), "-o", str(out)]
    if dll:
        cmd += [str(build / "libshmx.dll.a")]
        shutil.copy(build / "shmx.dll", out.parent / "shmx.dll")
    else:
        cmd += [str(build / "libshmx.a")]
    cmd += ["-static", "-pthread", *extra, *WIN_LIBS]
    run(cmd, timeout=180)
    return out
