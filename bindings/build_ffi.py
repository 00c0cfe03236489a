"""cffi (API mode) build of the shmx extension: compiles csrc/*.c into shmx._shmx.

The build lives here, apart from the package (pynacl's src/bindings shape):
the wheel ships what runs (shmx/), the sdist also what builds it
(bindings/, csrc/).  setup.py names ``ffibuilder`` (cffi_modules); a
development build in place is

    python bindings/build_ffi.py        # writes shmx/_shmx*.so

The cdef (bindings/cdef.h) is checked by the C compiler against the real
csrc/include/shmx.h, because set_source() includes that header.  The C
files and the warning flags are csrc/Makefile's (PROTOCOL_SRCS, WARN), read
from it, so the extension compiles what libshmx compiles, -Werror included.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CSRC = ROOT / "csrc"
PACKAGE = ROOT / "shmx"


def makefile_words(name: str) -> list:
    """The words of ``NAME := ...`` in csrc/Makefile (continuation lines joined)."""
    text = (CSRC / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(rf"^{name}\s*:=\s*(.*)$", text, flags=re.M)
    if found is None:
        raise RuntimeError(f"csrc/Makefile has no '{name} :=' line")
    return found.group(1).split()


def c_sources() -> list:
    """The C files of libshmx: csrc/Makefile's PROTOCOL_SRCS, one list for
    every build, plus this platform's file."""
    return makefile_words("PROTOCOL_SRCS") + ["platform_posix.c"]


SOURCES = c_sources()
# -std=c99 -Wall -Wextra -Werror ...: the Makefile's WARN, so a warning the
# library build refuses is refused here too (cffi's own generated C is
# clean under them).
WARN = makefile_words("WARN")


def _src(path: Path) -> str:
    # setuptools wants paths relative to the project root (its cwd); a
    # direct run compiles from a temporary directory and needs them absolute.
    direct = __name__ == "__main__"
    return str(path) if direct or Path.cwd().resolve() != ROOT else os.path.relpath(path, ROOT)


# The GIL-releasing wrappers of the blocking calls, and begin_frame and
# get_latest_stream's C part each in one return value (gil.h).
_GIL_CDEF = """
shmx_status pyshmx_client_wait(shmx_client *c, int64_t timeout_ns);
shmx_status pyshmx_server_wait_control(shmx_server *s, int64_t timeout_ns);
shmx_status pyshmx_server_create(const char *name, const shmx_server_config *cfg, shmx_server **out);
shmx_status pyshmx_server_create_with_static(const char *name, const shmx_server_config *cfg,
                                            const void *static_bytes, uint32_t bytes, shmx_server **out);
shmx_status pyshmx_client_open(const char *name, const shmx_open_options *opt, shmx_client **out);
int64_t pyshmx_server_begin(shmx_server *s);
int64_t pyshmx_client_latest_layout(shmx_client *c, shmx_frame_info *fi, int new_only);
"""
# The producer's hot calls as CPython builtins (hot.h), and the consumer's
# dict reads (hot_client.h): the state the Server or Client sets, and the
# calls that put _hot_bind / _hot_client_bind into the module.
_HOT_CDEF = """
typedef struct pyshmx_hot { shmx_server *s; int loans; ...; } pyshmx_hot;
int pyshmx_hot_install(void);
typedef struct pyshmx_hot_client { shmx_client *c; ...; } pyshmx_hot_client;
int pyshmx_hot_client_install(void);
"""

ffibuilder = FFI()
ffibuilder.cdef((HERE / "cdef.h").read_text() + _GIL_CDEF + _HOT_CDEF)
ffibuilder.set_source(
    "shmx._shmx",
    '#include "shmx.h"\n' + (HERE / "gil.h").read_text() + (HERE / "hot.h").read_text() +
    (HERE / "hot_client.h").read_text(),
    sources=[_src(CSRC / s) for s in SOURCES],
    include_dirs=[_src(CSRC / "include"), _src(CSRC)],
    # SHMX_API empty: within the extension the API functions are hidden like
    # the rest, so their calls to each other are direct (no PLT) and inlinable.
    define_macros=[("SHMX_API", "")],
    extra_compile_args=["-O2", "-fvisibility=hidden", *WARN],
)

if __name__ == "__main__":
    # Development build in place: python bindings/build_ffi.py
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        built = ffibuilder.compile(tmpdir=tmp, verbose=False)
        # Replace atomically: processes that have the old file mapped keep it.
        staged = PACKAGE / (Path(built).name + ".new")
        shutil.copy(built, staged)
        os.replace(staged, PACKAGE / Path(built).name)
