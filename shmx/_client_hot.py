"""The Client's hot reads as builtins (the C side is bindings/hot_client.h).

``read_next``, ``get_latest_frame``, ``read_next_stream`` and ``wait_frame``
are, while open, this instance's own METH_FASTCALL builtins: the C read and
the frame dict (or the stream's view) in one call with no Python frame, when
the frame's layout is cached; ``wait_frame``'s first wait slice as well (the
rest of a wait goes on in ``_wait_frame_refused``).  A refusal by the C
library is recorded as ``_fail`` would (``_<name>_refused`` does it once
the Client is gone); a layout seen the first time goes to ``_frame_dict``.  The
builtins reach the Client through a weak reference; one kept after
``close()`` gets the method's answer for a closed client.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

from ._aio import check_timeout
from ._client_core import _NULL, Frame
from ._client_layouts import _Layouts
from ._shmx import ffi, lib
from .errors import error_for

_HOT_NAMES = ("read_next", "get_latest_frame", "read_next_stream", "wait_frame")
_hot_docs: Optional[tuple] = None
# The API-mode extension has them; the ABI-mode library (shmx/_abi_lib.py) has not.
_HAVE_HOT = hasattr(lib, "pyshmx_hot_client_install")


def _client_call(me: "weakref.ref[Any]", method: Callable[..., Any]) -> Callable[..., Any]:
    """What a builtin hands a call it does not finish itself to."""
    def slow(*args: Any, **kwargs: Any) -> Any:
        client = me()
        if client is None:
            raise error_for(lib.SHMX_ECLOSED, "read: its Client was garbage-collected (closed)")
        return method(client, *args, **kwargs)
    return slow


class _HotReads(_Layouts):
    """Binds the hot reads (open() and reconnect() call ``_bind_hot``)."""

    # The class whose methods the builtins stand for (set by shmx.client).
    _hot_surface: Any = None

    def _bind_hot(self) -> None:
        """Shadow the hot reads by this instance's builtins,
        unless a subclass overrides them.  Made once per Client; they follow
        it across close() and open() (``_hotc.c`` is the open handle or NULL)."""
        global _hot_docs
        if not _HAVE_HOT:  # ABI mode (Windows): the Python methods serve every call
            return
        if self._hotc is None:
            from ._server_hot import _hot_doc
            cls = type(self)
            if _hot_docs is None:
                lib.pyshmx_hot_client_install()
                _hot_docs = tuple(_hot_doc(getattr(self._hot_surface, n)) for n in _HOT_NAMES)
            from ._shmx import _hot_client_bind  # type: ignore[attr-defined]  # put there by the install
            me = weakref.ref(self)
            slow = [getattr(cls, n) for n in _HOT_NAMES] + [getattr(cls, f"_{n}_refused") for n in _HOT_NAMES]
            slow += [cls._frame_dict, cls._next_stream_view]
            addr, *fns = _hot_client_bind(me, tuple(_client_call(me, fn) for fn in slow), self._fi,
                                          int(ffi.cast("uintptr_t", self._fi)), self._layouts, self._views,
                                          self._cur, _hot_docs)
            self._hotc = ffi.cast("pyshmx_hot_client *", addr)  # alive while the builtins are
            self._hotc_fns = fns
            for n, fn in zip(_HOT_NAMES, fns):
                if getattr(cls, n) is getattr(self._hot_surface, n):  # not overridden by a subclass
                    self.__dict__[n] = fn
        self._hotc.c = self._c

    def _unbind_hot(self) -> None:
        """close(): before the handle is detached, kept builtins go the slow
        way (the methods then say the client is not open)."""
        if self._hotc is not None:
            self._hotc.c = _NULL

    # What a builtin calls when the C library refused (with the status).
    def _read_next_refused(self, st: int) -> Optional[Frame]:
        self._fail(st)
        return None

    _get_latest_frame_refused = _read_next_stream_refused = _read_next_refused

    def _wait_frame_refused(self, st: int, timeout: Optional[float], waited: float) -> Optional[Frame]:
        """The builtin's first slice of ``wait_frame(timeout)`` ended with
        status ``st`` after ``waited`` seconds and no frame taken: go on as
        the method would have after that slice."""
        if self._c is None or self._closing:  # closed while it waited
            self._last_status = lib.SHMX_ECLOSED
            self._err = "wait: the client was closed while waiting"
            return None
        if self._wait_new(check_timeout("wait_frame", timeout), st, waited):
            return self.get_latest_frame()
        return None
