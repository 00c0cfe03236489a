"""The Server's hot calls as builtins (the C side is bindings/hot.h).

``begin_frame``, ``append_stream``, ``publish_frame``, ``publish`` and
``publish_stream`` are, after ``create()``, this instance's own
METH_FASTCALL builtins: a call with exact types (int ids and handles,
bytes data, a float sim_time, a dict for publish) on an open server runs
in C with no Python frame.  Anything else goes to the Server's method of
the same name; a refusal by the C library goes with its status to the
method's ``_<name>_refused`` half, which builds ``last_error`` or the
exception.  The builtins reach the Server through a weak reference, so
one kept after the Server is gone raises ``ServerGoneError``, and one
kept after ``destroy()`` gets the method's answer for a destroyed server.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

from ._server_core import _NULL, _ServerCore
from ._shmx import ffi, lib
from .errors import error_for


def _server_of(me: "weakref.ref[Any]", call: str) -> Any:
    """The Server behind a kept hot builtin (see _bind_hot)."""
    server = me()
    if server is None:
        raise error_for(lib.SHMX_ECLOSED, f"{call}: its Server was garbage-collected (destroyed)")
    return server


# The calls bindings/hot.h runs as builtins, in its HOT_* order.
_HOT_NAMES = ("begin_frame", "append_stream", "publish_frame", "publish", "publish_stream")
_hot_docs: Optional[tuple] = None
# The API-mode extension has them; the ABI-mode library (shmx/_abi_lib.py) has not.
_HAVE_HOT = hasattr(lib, "pyshmx_hot_install")


def _hot_doc(fn: Callable[..., Any]) -> bytes:
    """A builtin's __text_signature__ and docstring: the Python method's."""
    import inspect
    sig = inspect.signature(fn)
    params = [p.replace(annotation=p.empty) for p in list(sig.parameters.values())[1:]]
    text = sig.replace(parameters=params, return_annotation=sig.empty)
    return f"{fn.__name__}{text}\n--\n\n{inspect.getdoc(fn)}".encode()


def _slow_call(me: "weakref.ref[Any]", method: Callable[..., Any]) -> Callable[..., Any]:
    """What a hot builtin hands a call it does not take itself to."""
    name = method.__name__.strip("_").replace("_refused", "")

    def slow(*args: Any, **kwargs: Any) -> Any:
        return method(_server_of(me, name), *args, **kwargs)
    return slow


class _HotCalls(_ServerCore):
    """Binds the hot builtins (create() calls ``_bind_hot``)."""

    # The class whose methods the builtins stand for (set by shmx.server).
    _hot_surface: Any = None

    def _bind_hot(self) -> None:
        """Shadow the hot calls by this instance's builtins (bindings/hot.h):
        exact-type calls run in C with no Python frame, everything else goes
        to the methods below.  Made once per Server; they follow it across
        destroy() and create() (``_hot.s`` is the open handle or NULL)."""
        global _hot_docs
        if not _HAVE_HOT:  # ABI mode (Windows): the Python methods serve every call
            return
        if self._hot is None:
            cls = type(self)
            if _hot_docs is None:
                lib.pyshmx_hot_install()
                _hot_docs = tuple(_hot_doc(getattr(self._hot_surface, n)) for n in _HOT_NAMES)
            from ._shmx import _hot_bind  # type: ignore[attr-defined]  # put there by pyshmx_hot_install
            me = weakref.ref(self)
            slow = [getattr(cls, n) for n in _HOT_NAMES] + [getattr(cls, f"_{n}_refused") for n in _HOT_NAMES]
            addr, *fns = _hot_bind(tuple(_slow_call(me, fn) for fn in slow), self._ids, _hot_docs)
            self._hot = ffi.cast("pyshmx_hot *", addr)  # alive while the builtins are
            self._hot_fns = fns
            for n, fn in zip(_HOT_NAMES, fns):
                if getattr(cls, n) is getattr(self._hot_surface, n):  # not overridden by a subclass
                    self.__dict__[n] = fn
        self._hot.s = self._s
        self._hot.loans = 0

    def _unbind_hot(self) -> None:
        """destroy(): before the handle can be freed, kept builtins go the
        slow way (the methods then say the server was destroyed)."""
        if self._hot is not None:
            self._hot.s = _NULL

    # What a hot builtin calls when the C library refused (status first, then
    # the call's arguments): the methods' own failure handling.
    def _begin_frame_refused(self, st: int) -> None:
        self._set_error(st, "begin_frame")

    def _append_stream_refused(self, st: int, frame_handle: Any, *_: Any) -> bool:
        self._set_error(st, "append_stream")
        self._explain_handle(st, "append_stream", frame_handle)
        return False

    def _publish_frame_refused(self, st: int, frame_handle: Any, *_: Any) -> bool:
        self._set_error(st, "publish_frame")
        self._explain_handle(st, "publish_frame", frame_handle)
        return False

    def _publish_refused(self, st: int, *_: Any) -> None:
        self._raise_if(st, "publish")

    def _publish_stream_refused(self, st: int, *_: Any) -> None:
        self._raise_if(st, "publish_stream")
