"""examples/julia: the ccall bindings agree with shmx.h.

Julia is not installed on the project's machines, so the struct mirrors of
examples/julia/shmx.jl are checked here against the C compiler: every
field's offset and every struct's size, computed with the C layout rules
Julia uses for isbits fields, must equal offsetof/sizeof.  The status and
dtype constants and the ccall'd symbol names are checked against the header.
When a ``julia`` binary is found, the Julia producer and consumer also run
against each other and against the C examples.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from _clib import CC, CFLAGS, INCLUDE, ROOT, c_examples, have, installed_prefix, run
from _demo import finish, start

JL_DIR = ROOT / "examples" / "julia"
BINDINGS = JL_DIR / "shmx.jl"

C_NAMES = {"StreamSpec": "shmx_stream_spec", "ServerConfig": "shmx_server_config",
           "HeaderInfo": "shmx_header_info", "FrameInfo": "shmx_frame_info",
           "StreamView": "shmx_stream_view", "ControlMsg": "shmx_control_msg"}

# size and alignment of the field types used (x86-64 / aarch64, LP64)
JL_TYPES = {"UInt32": (4, 4), "Int32": (4, 4), "Cint": (4, 4), "UInt64": (8, 8), "Int64": (8, 8),
            "Float64": (8, 8), "Cdouble": (8, 8)}


def julia_structs() -> Dict[str, List[Tuple[str, str]]]:
    text = BINDINGS.read_text()
    out: Dict[str, List[Tuple[str, str]]] = {}
    for m in re.finditer(r"^(?:mutable )?struct (\w+)\n(.*?)^end", text, flags=re.M | re.S):
        fields = re.findall(r"^\s+(\w+)::([\w{}]+)\s*$", m.group(2), flags=re.M)
        out[m.group(1)] = fields
    return out


def c_layout(fields: List[Tuple[str, str]]) -> Tuple[Dict[str, int], int]:
    """Offsets and size by the C rules (each field at its alignment)."""
    off, align_max, offsets = 0, 1, {}
    for name, jtype in fields:
        size, align = (8, 8) if jtype.startswith("Ptr{") else JL_TYPES[jtype]
        off = (off + align - 1) // align * align
        offsets[name] = off
        off += size
        align_max = max(align_max, align)
    return offsets, (off + align_max - 1) // align_max * align_max


def test_struct_mirrors_match_the_c_layout(tmp_path: Path) -> None:
    structs = julia_structs()
    assert set(structs) == set(C_NAMES), f"structs in shmx.jl: {sorted(structs)}"
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "shmx.h"', "int main(void) {"]
    expected: List[str] = []
    for jl, fields in structs.items():
        c = C_NAMES[jl]
        offsets, size = c_layout(fields)
        lines.append(f'    printf("{c} size %zu\\n", sizeof({c}));')
        expected.append(f"{c} size {size}")
        for name, jtype in fields:
            fsize = 8 if jtype.startswith("Ptr{") else JL_TYPES[jtype][0]
            lines.append(f'    printf("{c}.{name} %zu %zu\\n", offsetof({c}, {name}), '
                         f'sizeof((({c} *)0)->{name}));')
            expected.append(f"{c}.{name} {offsets[name]} {fsize}")
    lines += ["    return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    # A field name of shmx.jl that the C struct lacks fails to compile here.
    run([CC, *CFLAGS, f"-I{INCLUDE}", src, "-o", exe], timeout=60)
    got = run([exe], timeout=30).stdout.split("\n")[:-1]
    assert got == expected


def test_field_lists_are_complete(tmp_path: Path) -> None:
    """Each mirror has every field of its C struct (sizes alone could hide
    a field that happens to fill padding)."""
    header = (INCLUDE / "shmx.h").read_text()
    for jl, fields in julia_structs().items():
        c = C_NAMES[jl]
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (c, c), header, flags=re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        names: List[str] = []
        for decl in body.split(";"):
            m = re.match(r"\s*(?:const\s+)?\w+\s+(.*)", decl, flags=re.S)
            if m:  # "uint32_t a, b" or "const char *name"
                names += [d.strip().lstrip("*").strip() for d in m.group(1).split(",")]
        assert [f for f, _ in fields] == names, f"{jl} vs {c}"


def test_constants_and_symbols_match_the_header() -> None:
    from shmx._shmx import lib

    text = BINDINGS.read_text()
    consts = re.findall(r"^const (SHMX_\w+) = (?:Cint|UInt32)\((-?\w+)\)", text, flags=re.M)
    assert len(consts) >= 10
    for name, value in consts:
        assert getattr(lib, name) == int(value, 0), name
    header_fns = set(re.findall(r"\bSHMX_API\b[^;]*?\b(shmx_\w+)\s*\(", (INCLUDE / "shmx.h").read_text()))
    used = set(re.findall(r"\(:(shmx_\w+), LIBSHMX\)", text))
    for f in ("producer.jl", "consumer.jl"):
        used |= set(re.findall(r"\(:(shmx_\w+), LIBSHMX\)", (JL_DIR / f).read_text()))
    assert used and used <= header_fns, sorted(used - header_fns)


# ------------------------------------------------------- with a julia binary

@pytest.fixture(scope="module")
def julia_env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    if not have("julia"):
        reason = "julia is not installed (the bindings were checked against the C layout above)"
        print(f"SKIP {reason}")
        pytest.skip(reason)
    prefix = installed_prefix(tmp_path_factory)
    return {"SHMX_LIB": str(prefix / "lib" / "libshmx.so.1")}


def test_julia_producer_and_consumer(julia_env: Dict[str, str], unique_name) -> None:
    name = unique_name("jl1")
    prod = start(["julia", JL_DIR / "producer.jl", "--name", name, "--frames", "200", "--rate", "500",
                  "--wait-readers", "1"], env=julia_env)
    cons = start(["julia", JL_DIR / "consumer.jl", "--name", name, "--frames", "200", "--send-control", "2",
                  "--timeout-ms", "60000"], env=julia_env)
    c, p = finish(cons, 300), finish(prod, 300)
    assert c.returncode == 0 and p.returncode == 0, c.stdout + c.stderr + p.stdout + p.stderr
    assert "0 bad frames" in c.stdout and "'ping 1'" in p.stdout


def test_julia_consumer_reads_c_producer(julia_env: Dict[str, str], unique_name,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    bins = c_examples(tmp_path_factory)
    name = unique_name("jl2")
    prod = start([bins / "producer", "--name", name, "--frames", "200", "--rate", "500", "--wait-readers", "1",
                  "--expect-control", "1"])
    c = finish(start(["julia", JL_DIR / "consumer.jl", "--name", name, "--frames", "200", "--send-control", "1",
                      "--timeout-ms", "60000"], env=julia_env), 300)
    p = finish(prod)
    assert c.returncode == 0 and p.returncode == 0, c.stdout + c.stderr + p.stdout + p.stderr
