"""``Inspector``: a read-only look at a region, for debugging and tools."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

from ._common import header_dict, open_handle, readers_list, streams_list
from ._shmx import ffi, lib
from .errors import status_message


class Inspector:
    """Maps a region read-only; attaches no reader slot and writes nothing,
    so it never disturbs the producer or its readers."""

    def __init__(self) -> None:
        self._i: Any = None
        self._name = ""
        self._last_status = 0
        self.last_error: str = ""

    def open(self, name: str, *, shm_dir: Optional[str] = None) -> bool:
        """Open region ``name`` read-only.  False (reason in ``last_error``)
        when it does not exist, is not a shmx region, or cannot be read."""
        self.close()
        st, handle, region, error = open_handle(lib.shmx_inspector_open, "shmx_inspector", name,
                                                shm_dir)
        if st != 0:
            self.last_error, self._last_status = error, st
            return False
        self._i = ffi.gc(handle, lib.shmx_inspector_close)
        self._name = region
        self.last_error = ""
        return True

    def close(self) -> None:
        """Unmap the region.  Safe to call twice."""
        if self._i is not None:
            ffi.release(self._i)
            self._i = None

    def is_open(self) -> bool:
        """True while a region is open."""
        return self._i is not None

    def get_header_info(self) -> Dict[str, Any]:
        """Region header: the shmx 1.0.1 keys plus ours ({} when not open)."""
        if self._i is None:
            return {}
        info = ffi.new("shmx_header_info *")
        info.struct_size = ffi.sizeof("shmx_header_info")
        lib.shmx_inspector_header_info(self._i, info)
        return header_dict(info, self._name)

    def get_streams_info(self) -> List[Dict[str, Any]]:
        """The schema (re-read from the region each call)."""
        if self._i is None:
            return []
        lib.shmx_inspector_refresh_static(self._i)
        return streams_list(lib.shmx_inspector_stream_count, lib.shmx_inspector_stream_info, self._i)

    def get_readers_info(self) -> List[Dict[str, Any]]:
        """Every reader slot (``in_use``, ``alive``, ``pid``, counters...)."""
        if self._i is None:
            return []
        return readers_list(lib.shmx_inspector_readers, self._i, self.get_header_info()["reader_slots"])

    def inspect(self) -> Dict[str, Any]:
        """Everything at once: ``session_id``, ``static_gen``, ``frame_seq``,
        ``readers_connected``, ``streams``, ``readers``, and ``header``."""
        if self._i is None:
            return {}
        h = self.get_header_info()
        return {"session_id": h["session_id"], "static_gen": h["static_gen"],
                "frame_seq": h["frame_seq"], "readers_connected": h["readers_connected"],
                "streams": self.get_streams_info(), "readers": self.get_readers_info(),
                "header": h}

    def copy_latest(self) -> Optional[Dict[str, Any]]:
        """A private copy of the latest frame: ``{'__metadata__': {...},
        name: {'data': bytes, 'elem_count', 'bytes'}}``, or None."""
        if self._i is None:
            return None
        h = self.get_header_info()
        buf = ffi.new("char[]", max(h["slot_payload_cap"], 16))
        fi = ffi.new("shmx_frame_info *")
        fi.struct_size = ffi.sizeof("shmx_frame_info")
        st = lib.shmx_inspector_copy_latest(self._i, fi, buf, len(buf))
        if st != 0:
            self.last_error = status_message(st)
            return None
        names = {s["id"]: s["name"] for s in self.get_streams_info()}
        payload = ffi.unpack(buf, fi.payload_bytes)
        frame: Dict[str, Any] = {"__metadata__": {"frame_id": fi.frame_id, "sim_time": fi.sim_time,
                                                  "payload_bytes": fi.payload_bytes,
                                                  "tlv_count": fi.tlv_count}}
        # The payload's streams, decoded (and bounds-checked) by C.
        count = ffi.new("uint32_t *")
        st = lib.shmx_frame_streams(buf, fi.payload_bytes, ffi.NULL, 0, count)
        views = ffi.new("shmx_stream_view[]", max(count[0], 1))
        if st == 0:
            st = lib.shmx_frame_streams(buf, fi.payload_bytes, views, len(views), count)
        if st != 0:
            self.last_error = status_message(st)
            return None
        for v in views[0:min(count[0], len(views))]:
            frame[names.get(v.stream_id, f"stream_{v.stream_id}")] = {
                "data": payload[v.offset:v.offset + v.bytes], "elem_count": v.elem_count, "bytes": v.bytes}
        return frame

    def __enter__(self) -> "Inspector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_i", None) is not None:
            warnings.warn(f"shmx.Inspector {self._name!r} was not closed", ResourceWarning, stacklevel=2)
            self.close()
