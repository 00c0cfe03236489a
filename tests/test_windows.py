"""libshmx for Windows: cross-built with mingw-w64 (``make -C csrc
TARGET=mingw``) and run under wine64, from the same pytest run.

- the build itself: shmx.dll (exporting exactly the public API), its import
  library and the static library, -Werror clean;
- tests/c/test_win32.c: named pagefile mappings under the bare region name,
  exclusive create, the DACL, file-backed regions, producer and consumer in
  separate processes (lock step over frames and control rings), a reader
  blocked in another process woken by a publish, TerminateProcess of a
  producer (idle and mid-publish) and of a reader;
- tests/c/test_api.c with regions as files in SHMX_DIR (its fork() parts
  are POSIX-only; test_win32.c has the process tests for Windows), and
  tests/c/test_stress_frames.c and test_stress_control.c, unchanged, over
  winpthreads;
- a shmx 1.0.1 C++ peer (tests/legacy_cpp/win_peer.cpp, built with the
  mingw C++ compiler from the 1.0.1 sdist's headers) exchanging frames,
  schema and control messages with ours in both directions;
- the Python package under the embeddable Windows CPython (below).

wine is not Windows: these tests show that the Win32 calls are used as
documented and that the protocol holds over them, not how a real Windows
kernel schedules.  They skip only when the cross compiler or wine64 is
missing.
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from _clib import TESTS_C, leftovers, run
from _wine import (MINGW_CC, MINGW_CXX, WinPython, Wine, build_mingw_library, compile_mingw,
                   legacy_headers, missing_tools, win_path, windows_python, wine_session)

# program -> (seconds it may take, link against the DLL rather than the static library,
# regions as files in a directory (SHMX_DIR) rather than named mappings)
PROGRAMS = {"test_win32": (120, True, False), "test_api": (120, False, True),
            "test_stress_frames": (120, False, False), "test_stress_control": (120, False, False)}


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
    seconds, dll, in_dir = PROGRAMS[program]
    build = build_mingw_library(wine)
    exe = compile_mingw([TESTS_C / f"{program}.c"], tmp_path / f"{program}.exe", build, dll=dll)
    prefix = f"shmxtest-w-{uuid.uuid4().hex[:8]}-"
    env = {"SHMX_TEST_PREFIX": prefix, "SHMX_TEST_SECONDS": "1.5"}
    shm = tmp_path / "shm"
    if in_dir:
        # test_api checks its regions as files (stat, junk files under a
        # region's name): file-backed mode, the rest as on Linux.
        shm.mkdir()
        env["SHMX_DIR"] = win_path(shm)
    proc = wine.run([exe], timeout=seconds, cwd=tmp_path, env=env)
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
    if in_dir:
        assert sorted(p.name for p in shm.iterdir()) == [], "regions or temporaries left behind"


def test_legacy_cpp_peer_under_wine(wine: Wine, tmp_path: Path) -> None:
    problem = missing_tools(cxx=True)
    if problem:
        pytest.skip(problem)
    build = build_mingw_library(wine)
    include = legacy_headers()
    peer = tmp_path / "win_peer.exe"
    run([MINGW_CXX, "-std=c++17", "-O1", "-Wall", "-Werror", f"-I{include}",
         str(TESTS_C.parent / "legacy_cpp" / "win_peer.cpp"), "-o", str(peer), "-static"], timeout=300)
    exe = compile_mingw([TESTS_C / "test_win32.c"], tmp_path / "test_win32.exe", build)
    proc = wine.run([exe, "legacy", win_path(peer)], timeout=180, cwd=tmp_path,
                    env={"SHMX_TEST_PREFIX": f"shmxtest-w-{uuid.uuid4().hex[:8]}-"})
    print(proc.stdout, proc.stderr[-4000:])
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-20000:]}"
    assert re.search(r"^test_win32_legacy: [1-9]\d* checks, 0 failed$", proc.stdout, re.M), proc.stdout


# ------------------------------------------------- the Python package on wine

#: Tests of the Linux suite that state POSIX facts, with the Windows fact
#: that replaces each (README, "Windows").
WINDOWS_DIFFERS = {
    "test_api.py::test_create_returns_true_and_header_describes_region":
        "asserts a file in /dev/shm; on Windows the region is a named mapping",
    "test_features.py::test_get_latest_stream_new_only_frame_id_and_same_dict_while_unchanged":
        "re-creates the name while the test still holds views of the old region; on Windows "
        "a mapping lives as long as any view of it, so the name is still taken",
    "test_features.py::test_ctrl_c_interrupts_a_blocked_wait": "sends SIGINT with os.kill (POSIX)",
    "test_features.py::test_publish_stream_kept_past_destroy_fails_cleanly":
        "re-creates the name while the destroyed server's mapping is still referenced; on "
        "Windows the name lives as long as the mapping",
}
#: What runs under the Windows CPython: the core API (numpy included), the
#: extended features, multi-process with kills, the CLI's ls and inspect.
PYTHON_FILES = ["test_api.py", "test_features.py", "test_multiprocess_portable.py", "test_cli.py"]
CLI_SUBSET = "not test_cli.py or test_ls_uses_shmx_dir_env or test_inspect"


@pytest.fixture(scope="module")
def winpy(wine: Wine) -> WinPython:
    return windows_python(wine)


def test_python_import_under_wine(winpy) -> None:
    import shmx
    code = ("import sys, json, shmx; print(json.dumps({'all': sorted(shmx.__all__), "
            "'version': shmx.__version__, 'numpy': 'numpy' in sys.modules, "
            "'lib': type(shmx._lib).__module__, 'platform': sys.platform}))")
    proc = winpy.run(["-c", code], timeout=120)
    assert proc.returncode == 0, proc.stdout
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["platform"] == "win32"
    assert got["all"] == sorted(shmx.__all__)  # the same API as on Linux
    assert got["version"] == shmx.__version__
    assert got["numpy"] is False  # optional extras stay unimported
    assert got["lib"] == "shmx._shmx"  # the ABI-mode loader (_abi_lib.py), not an extension


def test_python_suite_under_wine(winpy) -> None:
    tests = Path(__file__).resolve().parent
    keep = " and ".join(f"not {t.split('::')[1]}" for t in WINDOWS_DIFFERS)
    args = ["pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-k", f"({CLI_SUBSET}) and {keep}"]
    args += [win_path(tests / f) for f in PYTHON_FILES]
    proc = winpy.run(args, timeout=900)
    print(proc.stdout[-6000:])
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", summary)}
    assert proc.returncode == 0 and not counts.get("failed") and not counts.get("error") \
        and not counts.get("errors"), proc.stdout[-20000:]
    assert counts.get("passed", 0) >= 100, summary
    assert counts.get("deselected", 0) >= len(WINDOWS_DIFFERS), summary
