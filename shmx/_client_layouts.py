"""What a Client hands out for a frame: the frame dicts (shmx 1.0.1's
shape), one stream's view, numpy arrays.  Each frame layout (a slot and
its stream arrangement, named by the C library's layout id) is resolved
once through C into memoryviews over the mapping and cached; a read of a
known layout builds only the dicts it returns."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._client_core import _FRAME_INFO, Frame, _ClientCore, _Entry
from ._shmx import ffi, lib


class _Layouts(_ClientCore):
    """Frame dicts, stream views and arrays over cached layouts."""

    def _frame_dict(self, dropped: int) -> Frame:
        _, payload, tlvs, count, fid, sim_time, _, layout_id, _, _ = _FRAME_INFO(self._fibuf)
        entries = self._layouts.get(layout_id)
        if entries is None:
            entries = self._build_layout(layout_id, count)
        frame: Frame = {"__metadata__": {"frame_id": fid, "sim_time": sim_time,
                                         "payload_bytes": payload, "tlv_count": tlvs,
                                         "dropped": dropped}}
        for name, view, elem_count, nbytes, _sid in entries:
            frame[name] = {"data": view, "elem_count": elem_count, "bytes": nbytes}
        return frame

    def _build_layout(self, layout_id: int, count: int) -> List[_Entry]:
        c, mv = self._c, self._mv
        if c is None or mv is None:
            return []  # closed (from another thread) since the read
        if len(self._layouts) > 256:
            self._layouts.clear()
            self._views.clear()
        sv = ffi.new("shmx_stream_view *")
        entries: List[_Entry] = []
        for i in range(count):
            sv.struct_size = ffi.sizeof("shmx_stream_view")
            if lib.shmx_client_frame_stream(c, i, sv) != 0:
                continue
            sid = sv.stream_id
            if sid not in self._names:
                self._load_schema()
            name = self._names.get(sid, f"stream_{sid}")
            off = sv.offset
            entries.append((name, mv[off:off + sv.bytes], sv.elem_count, sv.bytes, sid))
        self._layouts[layout_id] = entries
        views: Dict[Any, memoryview] = {}
        for name, view, _, _, sid in entries:
            views[sid] = views[name] = view
        self._views[layout_id] = views
        return entries

    def _stream_view(self, layout: int, stream: Any, call: str = "get_latest_stream") -> Optional[memoryview]:
        """get_latest_stream (or ``call``) for a layout seen the first
        time, or a stream the frame does not have."""
        views = self._views.get(layout)
        if views is None:
            self._build_layout(layout, self._fiq[1] >> 32)  # [1] high half: stream_count
            views = self._views[layout]
        view = views.get(stream)
        if view is None:
            self._last_status = lib.SHMX_ESTREAM
            self._err = f"{call}: frame {self._fiq[2]} has no stream {stream!r}"
        return view

    def _next_stream_view(self, layout: int, stream: Any) -> Optional[memoryview]:
        """_stream_view for read_next_stream."""
        return self._stream_view(layout, stream, "read_next_stream")

    # ----------------------------------------------------------- numpy view
    def get_latest_arrays(self) -> Optional[Dict[str, Any]]:
        """The latest frame as read-only numpy arrays over shared memory:
        ``{stream name: ndarray}`` (arrays only, as ``as_arrays``); the
        frame's metadata is in ``frame_id``/``sim_time`` after the call.
        Needs numpy."""
        frame = self.get_latest_frame()
        return None if frame is None else self.as_arrays(frame)

    def as_arrays(self, frame: Frame) -> Dict[str, Any]:
        """A frame dict as ``{stream name: ndarray}``: arrays only (the
        metadata stays in ``frame['__metadata__']``), zero copy, read-only,
        typed by the schema and shaped by its ``shape`` when the frame's
        count fits it, else ``(elem_count, components)`` /
        ``(elem_count,)``.  Needs numpy."""
        from ._numpy import stream_array
        specs = {s["name"]: s for s in self._streams}
        out: Dict[str, Any] = {}
        for key, entry in frame.items():
            if key != "__metadata__":
                out[key] = stream_array(entry["data"], entry["elem_count"], specs.get(key))
        return out
