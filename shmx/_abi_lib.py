"""``ffi`` and ``lib`` over ``shmx.dll`` in cffi's out-of-line ABI mode (the
Windows build; see ``bindings/build_abi.py``).  Installed as ``shmx/_shmx.py``
beside ``shmx.dll`` and the generated ``_shmx_ffi.py``; the modules of the
package import ``ffi`` and ``lib`` from ``._shmx`` on every platform.
"""
from __future__ import annotations

import os
from typing import Any

from ._shmx_ffi import ffi  # type: ignore[import-not-found]

_DLL = ffi.dlopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), "shmx.dll"))


class _Lib:
    """shmx.dll's functions and constants, plus the ``pyshmx_*`` helpers the
    API-mode extension compiles from ``bindings/gil.h``.  Here they are Python:
    cffi's ABI mode releases the GIL around every C call by itself, so the
    blocking ones are the plain functions."""

    def __getattr__(self, name: str) -> Any:
        value = getattr(_DLL, name)
        setattr(self, name, value)  # found once, then a plain attribute
        return value

    def __init__(self) -> None:
        self.pyshmx_client_wait = _DLL.shmx_client_wait
        self.pyshmx_server_wait_control = _DLL.shmx_server_wait_control
        self.pyshmx_server_create = _DLL.shmx_server_create
        self.pyshmx_client_open = _DLL.shmx_client_open

    @staticmethod
    def pyshmx_server_begin(s: Any) -> int:
        """begin_frame folded into one value: the token (> 0) or the status (< 0)."""
        frame = ffi.new("uint64_t *")
        st = _DLL.shmx_server_begin_frame(s, frame)
        return int(frame[0]) if st == 0 else int(st)

    @staticmethod
    def pyshmx_client_latest_layout(c: Any, fi: Any, new_only: int) -> int:
        """latest plus its layout id (> 0), 0 when new_only and not newer, or the status."""
        before = fi.frame_id
        st = _DLL.shmx_client_latest(c, fi)
        if st != 0:
            return int(st)
        if new_only and fi.frame_id == before:
            return 0
        return int(fi.layout_id)


lib = _Lib()
