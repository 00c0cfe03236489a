"""shmx: lock-free, zero-copy shared-memory frame streaming.

One producer (``Server``) publishes frames of typed, named streams into a
shared-memory region; many consumers (``Client``) read them as memoryviews
straight over shared memory; ``Inspector`` looks without touching.  The
documented API of shmx 1.0.1 works unchanged; the region layout is
byte-compatible with it.
"""
from ._common import (DT_BF16, DT_BOOL, DT_F16, DT_F32, DT_F64, DT_I8, DT_I16, DT_I32, DT_I64,
                      DT_U8, DT_U16, DT_U32, DT_U64, LAYOUT_AOS_VECTOR, LAYOUT_SOA_SCALAR,
                      TLV_CONTROL_USER, TLV_FRAME_STREAM, TLV_STATIC_DIR, create_stream_spec,
                      default_shm_dir, dtype_to_string, frame_to_numpy, layout_to_string, unlink)
from ._shmx import ffi as _ffi
from ._shmx import lib as _lib
from .client import Client, connect
from .errors import (BusyError, CorruptRegionError, ForkedError, InvalidArgumentError,
                     NoSpaceError, ReaderEvictedError, RegionExistsError, RegionNotFoundError,
                     ServerGoneError, ShmxError, ShmxPermissionError, ShmxTimeoutError)
from .inspector import Inspector
from .server import Server, serve

__version__: str = _ffi.string(_lib.shmx_version()).decode()
VERSION_MAJOR: int = 2  # layout version, as shmx 1.0.1 reports it
VERSION_MINOR: int = 0
LIBRARY_VERSION: str = __version__

__all__ = [
    "Client", "Server", "Inspector", "connect", "serve",
    "DT_BOOL", "DT_I8", "DT_U8", "DT_I16", "DT_U16", "DT_I32", "DT_U32", "DT_I64", "DT_U64",
    "DT_F16", "DT_BF16", "DT_F32", "DT_F64",
    "LAYOUT_SOA_SCALAR", "LAYOUT_AOS_VECTOR",
    "TLV_STATIC_DIR", "TLV_FRAME_STREAM", "TLV_CONTROL_USER",
    "create_stream_spec", "dtype_to_string", "layout_to_string", "default_shm_dir", "frame_to_numpy", "unlink",
    "ShmxError", "RegionExistsError", "RegionNotFoundError", "ShmxPermissionError",
    "InvalidArgumentError", "CorruptRegionError", "NoSpaceError", "ShmxTimeoutError",
    "ServerGoneError", "BusyError", "ForkedError", "ReaderEvictedError",
    "__version__", "VERSION_MAJOR", "VERSION_MINOR",
]
