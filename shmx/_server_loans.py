"""Zero-copy publishing: ``loan()`` hands out a writable view of a stream
inside the frame being built; publish (or the next begin_frame) revokes
every view it handed out, so a late write raises instead of changing a
published frame."""
from __future__ import annotations

from typing import Any

from ._server_core import _NULL, _ServerCore
from ._shmx import ffi, lib
from .errors import error_for


class _Loans(_ServerCore):
    """loan / loan_array and their revocation."""

    def loan(self, frame_handle: Any, stream_id: int, elem_count: int) -> memoryview:
        """Reserve stream ``stream_id`` in the frame and return a writable
        memoryview of its bytes inside shared memory: fill it, then publish
        (zero copy).  The view is released at publish or the next
        begin_frame; using it afterwards raises ``ValueError``."""
        ptr = ffi.new("void **")
        try:
            st = lib.shmx_server_loan(self._s or _NULL, frame_handle, stream_id, elem_count, ptr)
        except (TypeError, OverflowError) as exc:
            raise error_for(lib.SHMX_EINVAL, f"loan: {self._arg_error(exc, frame_handle, b'', stream_id=stream_id, elem_count=elem_count)}") from None
        if st != 0:
            self._set_error(st, "loan")
            self._explain_handle(st, "loan", frame_handle)
            raise error_for(self._last_status, self.last_error)
        assert self._mv is not None
        off = int(ffi.cast("uintptr_t", ptr[0])) - int(ffi.cast("uintptr_t", self._owner))
        view = self._mv[off:off + elem_count * self._bpe.get(stream_id, 0)]
        self._loans.append(view)
        if self._hot is not None:
            self._hot.loans = 1
        return view

    def loan_array(self, frame_handle: Any, stream_id: int, elem_count: int) -> Any:
        """``loan()`` as a writable numpy array shaped by the schema
        (``(elem_count, components)``, or ``(elem_count,)``).  At publish
        the array is made read-only, so a late write raises ``ValueError``
        (views you sliced from it yourself are not tracked).  Needs numpy."""
        from ._numpy import stream_array
        view = self.loan(frame_handle, stream_id, elem_count)
        spec = next((s for s in self.get_streams_info() if s["id"] == stream_id), None)
        arr = stream_array(view, elem_count, spec)
        self._loaned_arrays.append(arr)
        return arr

    def _revoke_loans(self) -> None:
        for arr in self._loaned_arrays:
            arr.flags.writeable = False
        self._loaned_arrays.clear()
        for view in self._loans:
            try:
                view.release()
            except BufferError:
                pass  # exported further (e.g. to numpy): cannot be revoked
        self._loans.clear()
        if self._hot is not None:
            self._hot.loans = 0
