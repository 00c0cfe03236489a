"""The C test programs of tests/c/, built against libshmx as its Makefile
builds it and run from pytest: plainly, under AddressSanitizer + UBSan, and
(the threaded ones) under ThreadSanitizer.

Each program prints "<name>: N checks, M failed" and exits non-zero on any
failure; it removes its own regions ("shmxtest-c-<pid>-...") and this test
checks that nothing was left behind either way.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Optional

import pytest

from _clib import (SANITIZER_ENV, TESTS_C, build_library, compile_c, leftovers, require_sanitizer,
                   run, session_dir)

# program -> seconds it may take in a plain build (sanitizers get 4x)
PROGRAMS = {"test_api": 30, "test_stress_frames": 60, "test_stress_control": 60,
            "test_stress_reclaim": 60}
THREADED = {"test_api", "test_stress_frames", "test_stress_control"}
VARIANTS = {"plain": None, "asan-ubsan": "address,undefined", "tsan": "thread"}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_c_program(program: str, variant: str, tmp_path: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> None:
    sanitize: Optional[str] = VARIANTS[variant]
    if sanitize == "thread" and program not in THREADED:
        pytest.skip(f"{program} has no threads")
    if sanitize:
        require_sanitizer(sanitize, tmp_path)
    build = build_library(session_dir(tmp_path_factory), sanitize)
    exe = compile_c([TESTS_C / f"{program}.c"], tmp_path / program, build, sanitize=sanitize)
    env = dict(SANITIZER_ENV.get(sanitize or "", {}))
    prefix = f"shmxtest-c-{uuid.uuid4().hex[:8]}-"
    env["SHMX_TEST_PREFIX"] = prefix
    # Sanitizers slow the stress loops down: fewer seconds, same checks.
    env["SHMX_TEST_SECONDS"] = "1.0" if sanitize else "1.5"
    env["SHMX_TEST_ROUNDS"] = "250" if sanitize else "1000"
    timeout = PROGRAMS[program] * (4 if sanitize else 1)
    proc = run([exe], timeout=timeout, env=env, check=False)
    if (proc.returncode != 0 and sanitize == "address,undefined"
            and "LeakSanitizer has encountered a fatal error" in proc.stderr):
        # LSan cannot stop the world under ptrace (e.g. a debugger or strace):
        # keep the address and UB checks, drop only the leak check.
        print("LeakSanitizer cannot run here; rerunning without leak detection")
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
        proc = run([exe], timeout=timeout, env=env, check=False)
    print(proc.stdout)
    left = leftovers(prefix)
    assert proc.returncode == 0, (f"{program} ({variant}) exited with {proc.returncode}\n"
                                  f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-20000:]}")
    assert f"{program}: " in proc.stdout and ", 0 failed" in proc.stdout
    for marker in ("runtime error:", "ERROR: AddressSanitizer", "WARNING: ThreadSanitizer",
                   "ERROR: LeakSanitizer"):
        assert marker not in proc.stderr, proc.stderr[-20000:]
    assert not left, f"{program} left regions behind: {left}"
