"""libshmx for Windows: cross-built with mingw-w64 (``make -C csrc
TARGET=mingw``) and run under wine64, from the same pytest run.

- the build itself: shmx.dll (exporting exactly the public API), its import
  library and the static library, -Werror clean;
- tests/c/test_win32.c: named pagefile mappings under the bare region name,
  exclusive create, the DACL, file-backed regions, producer and consumer in
  separate processes (lock step over frames and control rings), a reader
  blocked in another process woken by a publish, TerminateProcess of a
  producer (idle and mid-publish) and of a reader;
- tests/c/test_stress_frames.c and test_stress_control.c, unchanged, over
  winpthreads.

wine is not Windows: these tests show that the Win32 calls are used as
documented and that the protocol holds over them, not how a real Windows
kernel schedules.  They skip only when the cross compiler or wine64 is
missing.
"""
from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from _clib import TESTS_C, leftovers, run
from _wine import MINGW_CC, Wine, build_mingw_library, compile_mingw, wine_session

# program -> (seconds it may take, link against the DLL rather than the static library)
PROGRAMS = {"test_win32": (120, True), "test_stress_frames": (120, False),
            "test_stress_control": (120, False)}


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    yield from wine_session(tmp_path_factory)


def test_mingw_build(wine: Wine) -> None:
    build = build_mingw_library(wine)
    for f in ("shmx.dll", "libshmx.dll.a", "libshmx.a"):
        assert (build / f).is_file(), f
    dump = run([MINGW_CC.replace("gcc", "objdump"), "-p", str(build / "shmx.dll")], timeout=60).stdout
    exports = set(re.findall(r"\]\s+(shmx_\w+)", dump))
    header = (Path(__file__).resolve().parent.parent / "csrc/include/shmx.h").read_text()
    declared = set(re.findall(r"SHMX_API[^;(]*?\b(shmx_\w+)\s*\(", header))
    assert declared and exports == declared, (declared ^ exports)
    # Only system DLLs: nothing from the mingw runtime needs to ship with it.
    dlls = {d.lower() for d in re.findall(r"DLL Name: (\S+)", dump)}
    assert dlls <= {"kernel32.dll", "advapi32.dll", "bcrypt.dll", "msvcrt.dll"}, dlls


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_c_program_under_wine(program: str, wine: Wine, tmp_path: Path) -> None:
    seconds, dll = PROGRAMS[program]
    build = build_mingw_library(wine)
    exe = compile_mingw([TESTS_C / f"{program}.c"], tmp_path / f"{program}.exe", build, dll=dll)
    prefix = f"shmxtest-w-{uuid.uuid4().hex[:8]}-"
    proc = wine.run([exe], timeout=seconds, cwd=tmp_path,
                    env={"SHMX_TEST_PREFIX": prefix, "SHMX_TEST_SECONDS": "1.5"})
    print(proc.stdout)
    print(proc.stderr[-4000:])
    assert proc.returncode == 0, (f"{program} exited with {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout}\n--- stderr\n{proc.stderr[-20000:]}")
    assert re.search(rf"^{program}: [1-9]\d* checks, 0 failed$", proc.stdout, re.M), proc.stdout
    assert " 0 failed" in proc.stdout and "FAIL:" not in proc.stderr
    # Children report too; each must have run its checks without a failure.
    for line in re.findall(r"^child \w+: .*$", proc.stderr, re.M):
        assert line.endswith(", 0 failed"), line
    assert not leftovers(prefix)
