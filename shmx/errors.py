"""Exceptions of shmx, and the one helper that turns a C status into one.

Each exception also inherits the matching builtin, so ``except
FileExistsError`` works as well as ``except shmx.RegionExistsError``.
"""
from __future__ import annotations

from typing import Dict, Type

from ._shmx import ffi, lib


class ShmxError(Exception):
    """Base of every shmx error.  ``status`` is the C status code, ``name``
    its symbolic name (``"SHMX_EEXIST"``), ``os_errno`` the OS error behind
    it (``errno.EACCES``...; 0 when it had none; also ``errno`` for the
    subclasses that are ``OSError`` subclasses)."""

    def __init__(self, message: str, status: int = -1, os_errno: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.name = ffi.string(lib.shmx_status_name(status)).decode()
        self.os_errno = os_errno
        if isinstance(self, OSError) and os_errno:
            self.errno = os_errno


class RegionExistsError(ShmxError, FileExistsError):
    """The region name is taken by a live server."""


class RegionNotFoundError(ShmxError, FileNotFoundError):
    """No region of that name."""


class ShmxPermissionError(ShmxError, PermissionError):
    """The region's file mode does not let this process open it."""


class InvalidArgumentError(ShmxError, ValueError):
    """A bad name, config, stream id, size or frame handle."""


class CorruptRegionError(ShmxError, ValueError):
    """The region is not a valid shmx region (or is of another version)."""


class NoSpaceError(ShmxError, MemoryError):
    """The shared-memory file system has no room for the region."""


class ShmxTimeoutError(ShmxError, TimeoutError):
    """A wait ran out of time."""


class ServerGoneError(ShmxError, ConnectionError):
    """The server destroyed the region or its process died."""


class BusyError(ShmxError, BlockingIOError):
    """No room right now: every slot pinned, a control ring full, no reader slot."""


class ForkedError(ShmxError, RuntimeError):
    """The object was made before ``os.fork()``: in the child it is dead (it
    never touches the parent's region, pins or locks).  Make a new one in
    the child."""


class ReaderEvictedError(ServerGoneError):
    """The server evicted this reader (``reap_stale_readers``: its heartbeat
    was older than the server's timeout).  Close the client and open a new
    one."""


_BY_STATUS: Dict[int, Type[ShmxError]] = {
    lib.SHMX_EEXIST: RegionExistsError,
    lib.SHMX_ENOENT: RegionNotFoundError,
    lib.SHMX_EACCES: ShmxPermissionError,
    lib.SHMX_EINVAL: InvalidArgumentError,
    lib.SHMX_ENAME: InvalidArgumentError,
    lib.SHMX_ESTREAM: InvalidArgumentError,
    lib.SHMX_ESIZE: InvalidArgumentError,
    lib.SHMX_EDUP: InvalidArgumentError,
    lib.SHMX_EHANDLE: InvalidArgumentError,
    lib.SHMX_ETOOBIG: InvalidArgumentError,
    lib.SHMX_ECORRUPT: CorruptRegionError,
    lib.SHMX_EVERSION: CorruptRegionError,
    lib.SHMX_ENOSPC: NoSpaceError,
    lib.SHMX_ETIMEDOUT: ShmxTimeoutError,
    lib.SHMX_ECLOSED: ServerGoneError,
    lib.SHMX_EBUSY: BusyError,
    lib.SHMX_EFULL: BusyError,
    lib.SHMX_ENOREADER: BusyError,
    lib.SHMX_EFORK: ForkedError,
    lib.SHMX_EEVICTED: ReaderEvictedError,
}


def status_message(status: int) -> str:
    """The detail of the last failure on this thread, or the generic message."""
    detail = ffi.string(lib.shmx_last_error()).decode("utf-8", "replace")
    return detail or ffi.string(lib.shmx_strerror(status)).decode()


def error_for(status: int, message: str | None = None) -> ShmxError:
    """The exception for a C status (message defaults to the C detail)."""
    cls = _BY_STATUS.get(status, ShmxError)
    # The OS cause of this thread's last failure: the one being reported
    # when, as usual, the exception is made right after it.
    return cls(message if message is not None else status_message(status), status,
               int(lib.shmx_last_errno()))
