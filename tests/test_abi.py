"""The C library's contract with its users: the header, the cffi cdef, the
exported symbols, the SONAME, the versions and the installed files agree.

(a) every SHMX_API function of shmx.h is in bindings/cdef.h and vice versa;
    every status, enumerator and constant of the header is in the cdef with
    the header's value;
(b) libshmx.so exports exactly the header's functions (version script and
    -fvisibility=hidden), and libshmx.a defines nothing outside ``shmx_``;
(c) the SONAME is libshmx.so.<major>;
(d) SHMX_VERSION_* == shmx_version()/shmx_version_number() == shmx.__version__;
(e) ``make install PREFIX=`` installs the header, both libraries and shmx.pc,
    and ``pkg-config --cflags --libs shmx`` builds a program that runs.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Dict, Set

import pytest

from _clib import CC, CFLAGS, CSRC, INCLUDE, ROOT, build_library, have, install_library, run, session_dir

HEADER = INCLUDE / "shmx.h"
CDEF = ROOT / "bindings" / "cdef.h"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_functions() -> Set[str]:
    text = _strip_comments(HEADER.read_text())
    return set(re.findall(r"\bSHMX_API\b[^;{}]*?\b(shmx_\w+)\s*\(", text))


def header_since() -> Dict[str, str]:
    """function -> the release that added it: "Since 1.x" in the comment
    right before its declaration, else 1.0."""
    text = HEADER.read_text()
    out: Dict[str, str] = {}
    for m in re.finditer(r"\bSHMX_API\b[^;{}]*?\b(shmx_\w+)\s*\(", text):
        comment = re.search(r"/\*((?:(?!\*/).)*)\*/\s*$", text[:m.start()], flags=re.S)
        since = re.search(r"Since (\d+\.\d+)", comment.group(1)) if comment else None
        out[m.group(1)] = since.group(1) if since else "1.0"
    return out


def cdef_functions() -> Set[str]:
    return set(re.findall(r"\b(shmx_\w+)\s*\(", _strip_comments(CDEF.read_text())))


def header_statuses() -> Dict[str, int]:
    text = HEADER.read_text()
    body = text[text.index("#define SHMX_STATUS_LIST"):]
    body = body[:body.index("\n\n")]
    return {f"SHMX_{n}": int(v) for n, v in re.findall(r"X\((\w+),\s*(-?\d+),", body)}


def header_enums() -> Dict[str, Dict[str, int]]:
    """enum name -> {enumerator: value} for the plain enums of the header."""
    out: Dict[str, Dict[str, int]] = {}
    text = _strip_comments(HEADER.read_text())
    for name, body in re.findall(r"enum\s+(shmx_\w+)\s*\{([^}]*)\}", text):
        if name == "shmx_status":
            continue
        values: Dict[str, int] = {}
        for item in body.split(","):
            m = re.match(r"\s*(SHMX_\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)\s*$", item)
            if m:
                values[m.group(1)] = int(m.group(2), 0)
        out[name] = values
    return out


def header_int_defines() -> Dict[str, int]:
    text = _strip_comments(HEADER.read_text())
    return {n: int(v) for n, v in re.findall(r"#define\s+(SHMX_[A-Z_]+)\s+(\d+)\s*$", text, flags=re.M)}


# ------------------------------------------------------------------- (a)

def test_header_and_cdef_declare_the_same_functions() -> None:
    hdr, cdef = header_functions(), cdef_functions()
    assert len(hdr) > 50
    assert not hdr - cdef, f"in shmx.h but not in bindings/cdef.h: {sorted(hdr - cdef)}"
    assert not cdef - hdr, f"in bindings/cdef.h but not SHMX_API in shmx.h: {sorted(cdef - hdr)}"


def _tokens(text: str) -> list:
    return re.findall(r"\w+|\*", text)


def _param_types(params: str) -> tuple:
    out = []
    for p in params.split(","):
        toks = _tokens(p)
        if len(toks) >= 2 and re.match(r"^\w+$", toks[-1]):
            toks = toks[:-1]  # the parameter's name
        out.append(" ".join(toks))
    return tuple(out)


def prototypes(text: str, exported_only: bool) -> Dict[str, tuple]:
    """name -> (return type, parameter types), names and spacing dropped."""
    text = _strip_comments(text)
    if exported_only:
        pattern = r"\bSHMX_API\b([^;{}()]*?)\b(shmx_\w+)\s*\(([^)]*)\)\s*;"
    else:
        pattern = r"(?:^|[;}\n])\s*([^;{}()#]*?)\b(shmx_\w+)\s*\(([^)]*)\)\s*;"
    return {name: (" ".join(_tokens(ret)), _param_types(params))
            for ret, name, params in re.findall(pattern, text)}


def test_cdef_prototypes_match_the_header() -> None:
    """Every prototype of the cdef is the header's, type for type: an
    integer width or a pointer type changed in one only is caught here
    (the compiler would only warn, or convert silently)."""
    hdr = prototypes(HEADER.read_text(), exported_only=True)
    cdef = prototypes(CDEF.read_text(), exported_only=False)
    assert len(hdr) > 50 and set(hdr) == set(cdef)
    differ = {n: (hdr[n], cdef[n]) for n in hdr if hdr[n] != cdef[n]}
    assert not differ, f"header vs cdef: {differ}"


def _field_list(body: str) -> list:
    out = []
    for decl in _strip_comments(body).split(";"):
        decl = decl.strip()
        if not decl:
            continue
        names = [n.strip() for n in decl.split(",")]
        first = _tokens(names[0])
        base = [t for t in first[:-1] if t != "*"]
        out.append(" ".join(first))
        for more in names[1:]:
            out.append(" ".join(base + _tokens(more)))
    return out


def test_cdef_structs_match_the_header() -> None:
    pat = r"typedef\s+struct\s+(shmx_\w+)\s*\{([^}]*)\}\s*\1\s*;"
    hdr = {n: _field_list(b) for n, b in re.findall(pat, _strip_comments(HEADER.read_text()))}
    cdef = {n: _field_list(b) for n, b in re.findall(pat, _strip_comments(CDEF.read_text()))}
    assert len(hdr) >= 9 and set(hdr) == set(cdef), (sorted(hdr), sorted(cdef))
    differ = {n: (hdr[n], cdef[n]) for n in hdr if hdr[n] != cdef[n]}
    assert not differ, f"header vs cdef: {differ}"


def test_every_status_is_in_the_cdef_with_the_header_value() -> None:
    from shmx._shmx import lib

    statuses = header_statuses()
    assert statuses["SHMX_OK"] == 0 and len(statuses) >= 23
    # Values are fixed forever: 0, -1, -2, ... without gaps or reuse.
    assert sorted(statuses.values(), reverse=True) == list(range(0, -len(statuses), -1))
    enum_text = _strip_comments(CDEF.read_text())
    enum_body = re.search(r"typedef\s+enum\s+shmx_status\s*\{([^}]*)\}", enum_text).group(1)
    in_cdef = set(re.findall(r"\bSHMX_\w+\b", enum_body))
    assert not set(statuses) - in_cdef, f"missing from the cdef enum: {sorted(set(statuses) - in_cdef)}"
    for name, value in statuses.items():
        assert getattr(lib, name) == value, name


def test_enums_and_constants_match_the_header() -> None:
    from shmx._shmx import lib

    enums = header_enums()
    assert {"shmx_dtype", "shmx_layout", "shmx_tlv", "shmx_checksum_policy", "shmx_liveness"} <= set(enums)
    for values in enums.values():
        for name, value in values.items():
            assert getattr(lib, name) == value, name
    defines = header_int_defines()
    for name in ("SHMX_VERSION_MAJOR", "SHMX_VERSION_MINOR", "SHMX_VERSION_PATCH",
                 "SHMX_FRAMING_PER_STREAM", "SHMX_NAME_MAX", "SHMX_MAX_READER_SLOTS",
                 "SHMX_STREAM_NAME_MAX"):
        assert getattr(lib, name) == defines[name], name


def test_header_compiles_alone_in_strict_c99_and_in_cpp(tmp_path: Path) -> None:
    src = tmp_path / "only_header.c"
    src.write_text('#include "shmx.h"\nint main(void) { return shmx_version_number() ? 0 : 1; }\n')
    run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-fsyntax-only",
         src], timeout=60)
    if have("c++"):
        cpp = tmp_path / "only_header.cpp"
        cpp.write_text('#include "shmx.h"\nint main() { return shmx_version_number() ? 0 : 1; }\n')
        run(["c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}", "-fsyntax-only", cpp],
            timeout=60)


# ------------------------------------------------------------- (b), (c)

@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(session_dir(tmp_path_factory))


def _version() -> str:
    d = header_int_defines()
    return f"{d['SHMX_VERSION_MAJOR']}.{d['SHMX_VERSION_MINOR']}.{d['SHMX_VERSION_PATCH']}"


def test_shared_library_exports_exactly_the_header_functions(build: Path) -> None:
    if not have("nm"):
        pytest.skip("nm (binutils) is not installed")
    so = build / f"libshmx.so.{_version()}"
    out = run(["nm", "-D", "--defined-only", so], timeout=60).stdout
    exported: Dict[str, str] = {}
    nodes: Set[str] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        kind, sym = parts[1], parts[2]
        if kind == "A":  # a version node itself (SHMX_1.0), not a symbol
            nodes.add(sym.strip("@"))
            continue
        name, _, ver = sym.partition("@")
        exported[name] = ver.lstrip("@")
    hdr = header_functions()
    assert set(exported) == hdr, (f"exported but not in the header: {sorted(set(exported) - hdr)}; "
                                  f"in the header but not exported: {sorted(hdr - set(exported))}")
    # Each function sits in the node of the release that introduced it.
    since = header_since()
    wrong = {n: (v, f"SHMX_{since[n]}") for n, v in exported.items() if v != f"SHMX_{since[n]}"}
    assert not wrong, f"function: (its node, the node its 'Since' says): {wrong}"
    assert nodes == {f"SHMX_{v}" for v in since.values()}, nodes
    # No function claims a release newer than this library's.
    major, minor = map(int, _version().split(".")[:2])
    assert all(tuple(map(int, v.split("."))) <= (major, minor) for v in since.values())


def test_version_nodes_inherit_in_release_order() -> None:
    text = (CSRC / "libshmx.map").read_text()
    heads = re.findall(r"^(SHMX_[\d.]+)\s*\{", text, flags=re.M)
    tails = re.findall(r"^\}\s*(SHMX_[\d.]+)?\s*;", text, flags=re.M)
    assert heads[0] == "SHMX_1.0" and tails[0] == ""
    assert tails[1:] == heads[:-1], (heads, tails)  # each node inherits the one before
    listed = re.findall(r"^\s+(shmx_\w+);", text, flags=re.M)
    assert sorted(listed) == sorted(header_functions()), "every symbol listed, by name, once"


def test_static_library_defines_only_prefixed_symbols(build: Path) -> None:
    if not have("nm"):
        pytest.skip("nm (binutils) is not installed")
    out = run(["nm", "-g", "--defined-only", build / "libshmx.a"], timeout=60).stdout
    defined = {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}
    assert header_functions() <= defined
    stray = sorted(s for s in defined if not s.startswith("shmx_"))
    assert not stray, f"libshmx.a would clash with its users on: {stray}"


def test_soname_and_symlinks(build: Path) -> None:
    major = _version().split(".")[0]
    so = build / f"libshmx.so.{_version()}"
    assert so.is_file()
    assert (build / f"libshmx.so.{major}").resolve() == so.resolve()
    assert (build / "libshmx.so").resolve() == so.resolve()
    if not have("readelf"):
        pytest.skip("readelf (binutils) is not installed")
    dyn = run(["readelf", "-d", so], timeout=60).stdout
    assert re.search(rf"\(SONAME\)\s+Library soname: \[libshmx\.so\.{major}\]", dyn), dyn


# ------------------------------------------------------------------- (d)

VERSION_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "shmx.h"
int main(void)
{
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", SHMX_VERSION_MAJOR, SHMX_VERSION_MINOR, SHMX_VERSION_PATCH);
    printf("%s %u %s %d\n", built, shmx_version_number(), shmx_version(), SHMX_VERSION_NUMBER);
    return strcmp(built, shmx_version()) == 0 && shmx_version_number() == SHMX_VERSION_NUMBER ? 0 : 1;
}
"""


def test_compile_time_and_run_time_versions_agree(build: Path, tmp_path: Path) -> None:
    import shmx

    src = tmp_path / "version.c"
    src.write_text(VERSION_PROGRAM)
    exe = tmp_path / "version"
    run([CC, *CFLAGS, f"-I{INCLUDE}", src, "-o", exe, f"-L{build}", "-lshmx", f"-Wl,-rpath,{build}"],
        timeout=60)
    built, number, runtime, macro = run([exe], timeout=30).stdout.split()
    assert built == runtime == _version() == shmx.__version__
    major, minor, patch = map(int, built.split("."))
    assert int(number) == int(macro) == major * 10000 + minor * 100 + patch
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(built)}"', pyproject, flags=re.M), \
        "pyproject.toml's version differs from SHMX_VERSION_*"


# ------------------------------------------------------------------- (e)

PKG_PROGRAM = r"""
#include <stdio.h>
#include "shmx.h"
int main(void)
{
    shmx_server *s = NULL;
    shmx_status st = shmx_check_name("pkg-config-ok");
    printf("%s %s %s\n", shmx_version(), shmx_status_name(st), s ? "?" : "ok");
    return st == SHMX_OK ? 0 : 1;
}
"""


def test_install_and_pkg_config(build: Path, tmp_path: Path) -> None:
    prefix = install_library(build, tmp_path / "prefix")
    version = _version()
    major = version.split(".")[0]
    lib = prefix / "lib"
    assert (prefix / "include" / "shmx.h").read_text() == HEADER.read_text()
    assert (lib / f"libshmx.so.{version}").is_file()
    assert (lib / f"libshmx.so.{major}").resolve() == (lib / f"libshmx.so.{version}").resolve()
    assert (lib / "libshmx.so").resolve() == (lib / f"libshmx.so.{version}").resolve()
    assert (lib / "libshmx.a").is_file()
    pc = lib / "pkgconfig" / "shmx.pc"
    assert f"prefix={prefix}" in pc.read_text(), "shmx.pc must name the install prefix"
    if not have("pkg-config"):
        pytest.skip("pkg-config is not installed (Debian: apt-get install pkg-config)")
    env = {"PKG_CONFIG_PATH": str(lib / "pkgconfig")}
    assert run(["pkg-config", "--modversion", "shmx"], env=env, timeout=30).stdout.strip() == version
    flags = run(["pkg-config", "--cflags", "--libs", "shmx"], env=env, timeout=30).stdout.split()
    assert f"-I{prefix}/include" in flags and f"-L{lib}" in flags and "-lshmx" in flags
    src = tmp_path / "use_shmx.c"
    src.write_text(PKG_PROGRAM)
    exe = tmp_path / "use_shmx"
    run([CC, *CFLAGS, src, "-o", exe, *flags], timeout=60)
    out = run([exe], env={"LD_LIBRARY_PATH": str(lib)}, timeout=30).stdout.split()
    assert out == [version, "SHMX_OK", "ok"]
    # Static linking with --static picks up Libs.private.
    sflags = run(["pkg-config", "--static", "--cflags", "--libs", "shmx"], env=env, timeout=30).stdout.split()
    exe_static = tmp_path / "use_shmx_static"
    run([CC, *CFLAGS, src, "-o", exe_static, *[f for f in sflags if f != "-lshmx"], str(lib / "libshmx.a"),
         *[f for f in sflags if f.startswith("-l") and f != "-lshmx"]], timeout=60)
    needed = subprocess.run(["ldd", str(exe_static)], capture_output=True, text=True).stdout
    assert "libshmx" not in needed
    assert run([exe_static], timeout=30).stdout.split() == [version, "SHMX_OK", "ok"]


def test_makefile_builds_warning_clean_under_c99(build: Path) -> None:
    """The Makefile's own flags are the contract: -std=c99 -Wall -Wextra -Werror."""
    text = (CSRC / "Makefile").read_text()
    for flag in ("-std=c99", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
                 "--version-script=libshmx.map", "-soname"):
        assert flag in text, flag
    assert (build / "libshmx.a").is_file() and (build / "shmx.pc").is_file()


def test_extension_builds_with_the_makefiles_warning_flags() -> None:
    """bindings/build_ffi.py compiles the Makefile's C files with the
    Makefile's WARN flags (-Werror among them), read from the Makefile."""
    import runpy
    pytest.importorskip("cffi")
    text = (CSRC / "Makefile").read_text().replace("\\\n", " ")
    warn = re.search(r"^WARN\s*:=\s*(.*)$", text, flags=re.M).group(1).split()
    srcs = re.search(r"^PROTOCOL_SRCS\s*:=\s*(.*)$", text, flags=re.M).group(1).split()
    assert {"-std=c99", "-Wall", "-Wextra", "-Werror"} <= set(warn)
    build = runpy.run_path(str(ROOT / "bindings" / "build_ffi.py"))  # defines, does not compile
    kwds = build["ffibuilder"]._assigned_source[3]  # what set_source() was given
    args = kwds["extra_compile_args"]
    assert args[-len(warn):] == warn, args  # last: nothing after them turns a warning off
    assert [Path(s).name for s in kwds["sources"]] == srcs + ["platform_posix.c"]
