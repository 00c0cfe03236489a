"""Helpers for the tests that use libshmx from C (and Go): build the library
with its own Makefile into a temporary directory, install it into a prefix,
compile C programs against it, and find out whether a sanitizer works on
this machine.

Builds are cached per pytest session (several test modules share them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
INCLUDE = CSRC / "include"
TESTS_C = ROOT / "tests" / "c"
EXAMPLES_C = ROOT / "examples" / "c"
SHM_DIR = os.environ.get("SHMX_DIR") or "/dev/shm"

CC = os.environ.get("CC") or "cc"
#: What every C program of ours must compile cleanly with.
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]

#: Sanitizer variants: make's SANITIZE value -> extra compiler flags.
SANITIZERS: Dict[str, List[str]] = {
    "address,undefined": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer"],
    "thread": ["-fsanitize=thread", "-fno-omit-frame-pointer"],
}

#: Runtime options: stop at the first report, with a distinctive exit code.
SANITIZER_ENV: Dict[str, Dict[str, str]] = {
    "address,undefined": {
        "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:exitcode=66:strict_string_checks=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=67",
    },
    "thread": {"TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1"},
}

_lock = threading.Lock()
_builds: Dict[Tuple[str, str], Path] = {}
_probes: Dict[str, Optional[str]] = {}


def run(cmd: Sequence[str], *, timeout: float, env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command bounded in time; on failure raise with its output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"")
        err = (exc.stderr or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        raise AssertionError(f"{' '.join(map(str, cmd))} did not finish in {timeout} s\n"
                             f"--- stdout\n{out}\n--- stderr\n{err}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited with {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def build_library(base: Path, sanitize: Optional[str] = None) -> Path:
    """``make -C csrc BUILD=<dir>`` (with ``SANITIZE=``); returns the build dir.
    Cached: one build per variant and session."""
    key = (str(base), sanitize or "")
    with _lock:
        if key in _builds:
            return _builds[key]
        name = "plain" if not sanitize else sanitize.replace(",", "-")
        build = base / f"build-{name}"
        cmd = ["make", "-C", CSRC, f"BUILD={build}", f"CC={CC}", "-j2"]
        if sanitize:
            cmd.append(f"SANITIZE={sanitize}")
            # UB in the library must stop the program like UB in the test does.
            cmd.append("CFLAGS=" + " ".join(SANITIZERS[sanitize][1:]))
        run(cmd, timeout=300)
        _builds[key] = build
        return build


def install_library(build: Path, prefix: Path) -> Path:
    """``make -C csrc install PREFIX=<prefix>`` from an existing build dir."""
    run(["make", "-C", CSRC, f"BUILD={build}", f"CC={CC}", f"PREFIX={prefix}", "install"],
        timeout=300)
    return prefix


def compile_c(sources: Sequence[Path], out: Path, libdir: Path, *,
              sanitize: Optional[str] = None, extra: Sequence[str] = ()) -> Path:
    """Compile C99 sources against the headers and the shared library in
    ``libdir`` (found at run time through an rpath)."""
    cmd = [CC, *CFLAGS]
    if sanitize:
        cmd += SANITIZERS[sanitize]
    cmd += [f"-I{INCLUDE}", *map(str, sources), "-o", str(out), f"-L{libdir}", "-lshmx",
            f"-Wl,-rpath,{libdir}", "-pthread", *extra]
    run(cmd, timeout=120)
    return out


def sanitizer_problem(sanitize: str, workdir: Path) -> Optional[str]:
    """None when the compiler and its runtime support ``sanitize`` here;
    otherwise why not (the reason a test prints when it skips)."""
    with _lock:
        if sanitize in _probes:
            return _probes[sanitize]
    src = workdir / "probe.c"
    exe = workdir / f"probe-{sanitize.replace(',', '-')}"
    src.write_text("#include <pthread.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
                   "static int n;\nstatic void *f(void *a) { (void)a; __atomic_fetch_add(&n, 1, "
                   "__ATOMIC_SEQ_CST); return NULL; }\n"
                   "int main(void) { pthread_t t; char *p = malloc(4); p[0] = 1; "
                   "pthread_create(&t, NULL, f, NULL); pthread_join(t, NULL); free(p); "
                   "printf(\"%d\\n\", n); return 0; }\n")
    problem: Optional[str] = None
    proc = subprocess.run([CC, *SANITIZERS[sanitize], str(src), "-o", str(exe), "-pthread"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        problem = f"{CC} cannot build with -fsanitize={sanitize}: {proc.stderr.strip()[:300]}"
    else:
        env = dict(os.environ, **SANITIZER_ENV[sanitize])
        proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=env)
        if proc.returncode != 0 or proc.stdout.strip() != "1":
            problem = (f"the -fsanitize={sanitize} runtime does not work here (exit "
                       f"{proc.returncode}): {proc.stderr.strip()[:300]}")
    with _lock:
        _probes[sanitize] = problem
    return problem


def require_sanitizer(sanitize: str, workdir: Path) -> None:
    """Skip the calling test, with the reason, when ``sanitize`` is missing."""
    problem = sanitizer_problem(sanitize, workdir)
    if problem:
        print(f"SKIP sanitizer {sanitize}: {problem}")
        pytest.skip(problem)


def leftovers(prefix: str) -> List[str]:
    """Names in the shm directory starting with ``prefix``; removes them."""
    try:
        names = sorted(f for f in os.listdir(SHM_DIR) if f.startswith(prefix))
    except FileNotFoundError:
        return []
    for f in names:
        try:
            os.unlink(os.path.join(SHM_DIR, f))
        except FileNotFoundError:
            pass
    return names


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


_session_dir: List[Path] = []


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary directory per session for library builds and installs."""
    with _lock:
        if not _session_dir:
            _session_dir.append(tmp_path_factory.mktemp("libshmx"))
        return _session_dir[0]


def installed_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libshmx installed (``make install``) into a session-wide prefix."""
    base = session_dir(tmp_path_factory)
    build = build_library(base)
    prefix = base / "prefix"
    with _lock:
        if not (prefix / "lib" / "pkgconfig" / "shmx.pc").is_file():
            install_library(build, prefix)
    return prefix


def pkg_config_env(prefix: Path) -> Dict[str, str]:
    return {"PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}


def c_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/c built by its own Makefile (pkg-config) against the
    session's installed libshmx, in a copy outside the source tree.
    Returns the directory holding ``producer`` and ``consumer``."""
    if not have("pkg-config"):
        pytest.skip("pkg-config is not installed (Debian: apt-get install pkg-config)")
    prefix = installed_prefix(tmp_path_factory)
    out = session_dir(tmp_path_factory) / "examples-c"
    with _lock:
        if not (out / "consumer").is_file():
            out.mkdir(exist_ok=True)
            for f in ("producer.c", "consumer.c", "Makefile"):
                shutil.copy(EXAMPLES_C / f, out / f)
            run(["make", "-C", out, f"PKG_CONFIG_PATH={prefix / 'lib' / 'pkgconfig'}", f"CC={CC}"],
                timeout=120)
    return out
