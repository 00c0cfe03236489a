"""cffi out-of-line ABI-mode build of the binding, for Windows.

Linux (and any platform with a C compiler for the target Python) uses the
API-mode extension of ``build_ffi.py``.  For Windows this project cross-
compiles the library with mingw-w64 into ``shmx.dll`` and does not compile
a Python extension at all: building one needs the target CPython's headers
and import library, which neither the embeddable CPython distribution nor a
Linux machine has.  Instead this module turns the same cdef
(``bindings/cdef.h``) into a pure-Python out-of-line module
(``_shmx_ffi.py``) that only needs ``_cffi_backend`` from cffi's Windows
wheel at run time, and the package's ``shmx/_abi_lib.py`` (run time, not
build) loads ``shmx.dll`` through it behind the names the API-mode extension
offers (``ffi``, ``lib``).  The Python layer above is the same.

ABI mode cannot ask a compiler for the values the cdef leaves as ``...``;
they are taken from the API-mode extension built from the same header
(``values_from_extension``), so the two cannot disagree.

    python bindings/build_abi.py OUT_DIR    # writes OUT_DIR/_shmx_ffi.py

(with the checkout's shmx, whose extension is built, importable: an
editable install, or ``python bindings/build_ffi.py`` first).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, Mapping

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODULE = "shmx._shmx_ffi"


def cdef_names() -> list:
    """The constants the cdef leaves to the compiler (``#define X ...`` and
    the members of every enum)."""
    text = (HERE / "cdef.h").read_text()
    names = re.findall(r"#define\s+(\w+)\s+\.\.\.", text)
    for body in re.findall(r"enum\s+\w+\s*\{([^}]*)\}", text):
        names += [n for n in re.findall(r"\b(SHMX_\w+)\b", body)]
    return names


def values_from_extension() -> Dict[str, int]:
    """Every constant of the cdef, read from the built API-mode extension."""
    from shmx._shmx import lib  # the Linux build of the same header
    return {n: int(getattr(lib, n)) for n in cdef_names()}


def concrete_cdef(values: Mapping[str, int]) -> str:
    """``cdef.h`` with each ``...`` replaced by its value."""
    text = (HERE / "cdef.h").read_text()
    text = re.sub(r"(#define\s+(\w+)\s+)\.\.\.", lambda m: f"{m.group(1)}{values[m.group(2)]}", text)

    def enum(m: "re.Match[str]") -> str:
        members = [n for n in re.findall(r"\b(SHMX_\w+)\b", m.group(2))]
        return f"{m.group(1)}{{ " + ", ".join(f"{n} = {values[n]}" for n in members) + " }"

    return re.sub(r"(enum\s+\w+\s*)\{([^}]*)\}", enum, text)


def emit(out_dir: Path, values: Mapping[str, int]) -> Path:
    """Write ``_shmx_ffi.py`` (the out-of-line ABI module) into out_dir."""
    from cffi import FFI
    ffi = FFI()
    ffi.cdef(concrete_cdef(values))
    ffi.set_source(MODULE, None)
    out = Path(out_dir) / "_shmx_ffi.py"
    ffi.emit_python_code(str(out))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the checkout's shmx, as `python -m` from the root had it
    print(emit(Path(sys.argv[1]), values_from_extension()))
