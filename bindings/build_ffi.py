"""cffi (API mode) build of the shmx extension: compiles csrc/*.c into shmx._shmx.

The cdef (shmx/_cdef.h) is checked by the C compiler against the real
csrc/include/shmx.h, because set_source() includes that header.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CSRC = ROOT / "csrc"
def c_sources() -> list:
    """The C files of libshmx: csrc/Makefile's PROTOCOL_SRCS, one list for
    every build, plus this platform's file."""
    text = (CSRC / "Makefile").read_text().replace("\\\n", " ")
    names = re.search(r"^PROTOCOL_SRCS\s*:=\s*(.*)$", text, flags=re.M).group(1).split()
    return names + ["platform_posix.c"]


SOURCES = c_sources()


def _src(path: Path) -> str:
    # setuptools wants paths relative to the project root (its cwd); a
    # direct run compiles from a temporary directory and needs them absolute.
    direct = __name__ == "__main__"
    return str(path) if direct or Path.cwd().resolve() != ROOT else os.path.relpath(path, ROOT)


# The GIL-releasing wrappers of the blocking calls, and begin_frame and
# get_latest_stream's C part each in one return value (shmx/_gil.h).
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
# The producer's hot calls as CPython builtins (shmx/_hot.h): the state the
# Server sets, and the call that puts _hot_bind into the module.
_HOT_CDEF = """
typedef struct pyshmx_hot { shmx_server *s; int loans; ...; } pyshmx_hot;
int pyshmx_hot_install(void);
"""

ffibuilder = FFI()
ffibuilder.cdef((HERE / "_cdef.h").read_text() + _GIL_CDEF + _HOT_CDEF)
ffibuilder.set_source(
    "shmx._shmx",
    '#include "shmx.h"\n' + (HERE / "_gil.h").read_text() + (HERE / "_hot.h").read_text(),
    sources=[_src(CSRC / s) for s in SOURCES],
    include_dirs=[_src(CSRC / "include"), _src(CSRC)],
    # SHMX_API empty: within the extension the API functions are hidden like
    # the rest, so their calls to each other are direct (no PLT) and inlinable.
    define_macros=[("SHMX_API", "")],
    extra_compile_args=["-std=c99", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wstrict-prototypes"],
)

if __name__ == "__main__":
    # Development build in place: python shmx/_build_ffi.py
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        built = ffibuilder.compile(tmpdir=tmp, verbose=False)
        # Replace atomically: processes that have the old file mapped keep it.
        staged = HERE / (Path(built).name + ".new")
        shutil.copy(built, staged)
        os.replace(staged, HERE / Path(built).name)
