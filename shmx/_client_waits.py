"""The Client's waits: blocking (a futex in C, the GIL released, Ctrl-C
honoured between short slices), in order (``wait_next``), iterating
(``frames``) and for event loops (``fileno``/``arm``, ``await_frame``,
``aframes``); and following a server that was replaced under the name."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Iterator, Optional

from ._aio import check_timeout, wait_readable
from ._client_core import _NULL, Frame, _ClientCore
from ._shmx import ffi, lib
from .errors import error_for
from .inspector import Inspector

_wait = lib.pyshmx_client_wait  # releases the GIL (bindings/gil.h)
# How often an asyncio wait looks where there is no wake channel (Windows).
_POLL_S = 0.002
_SLICE_S = 0.05  # waits return to Python this often, so Ctrl-C is honoured


class _Waits(_ClientCore):
    """Blocking, in-order, iterating and event-loop waits."""

    def wait_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Block until a frame newer than the last one this client saw is
        published, and return the newest; None at the timeout (seconds,
        None = forever), when the server is gone or when ``close()`` is
        called from another thread.  Sleeps in the kernel (futex), releases
        the GIL, honours Ctrl-C.  A NaN or negative timeout raises
        ``InvalidArgumentError``."""
        if self._wait_new(check_timeout("wait_frame", timeout)):
            return self.get_latest_frame()
        return None

    def wait_next(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Like ``read_next()``, but waits up to ``timeout`` for the frame."""
        timeout = check_timeout("wait_next", timeout)
        frame = self.read_next()
        if frame is None and self._last_status == lib.SHMX_EAGAIN and self._wait_new(timeout):
            frame = self.read_next()
        return frame

    def _left_wait(self) -> None:
        """A waiter has left while close() was under way: let it know."""
        with self._cv:
            self._cv.notify_all()

    def _wait_new(self, timeout: Optional[float], first: Optional[int] = None, waited: float = 0.0) -> bool:
        # No lock on the way in or out: the GIL orders these steps against
        # close()'s.  We enter _waiting and then look at _closing; close()
        # sets _closing and then looks at _waiting (and clears _c before
        # _closing).  So either close() sees us and waits until we have
        # left, or we see it closing.  On the way out we leave _waiting and
        # then look at _closing: set, close() may be waiting for us, so we
        # notify it.  Taking the lock both ways cost ~0.7 us per wait, half
        # of it after the wake-up, where it adds to the latency.
        c = self._c
        me = threading.get_ident()
        self._waiting.add(me)
        # Keeps the mapping and the C handle allocated while this thread is
        # inside the C wait, whatever close() does meanwhile.
        owner = self._owner  # noqa: F841
        try:
            if c is None or self._c is not c or self._closing:
                self._fail(lib.SHMX_EINVAL)
                return False
            return self._wait_in(c, timeout, first, waited)
        finally:
            self._waiting.discard(me)
            if self._closing:
                self._left_wait()

    def _wait_in(self, c: Any, timeout: Optional[float], first: Optional[int], waited: float) -> bool:
        # first: the status of a first slice already waited (``waited``
        # seconds) by the wait_frame builtin (bindings/hot_client.h).
        deadline = None if timeout is None else time.monotonic() + timeout - waited
        # The first slice straight from the timeout: the wake-up usually
        # ends the wait there, and every step after it adds to the latency.
        left = _SLICE_S if timeout is None or timeout > _SLICE_S else timeout
        st = first
        while self._c is c and not self._closing:
            if st is None:
                st = _wait(c, int(left * 1e9))
            if st == 0:
                return True
            if st == lib.SHMX_ECLOSED:
                # The server is gone: follow a new server that has taken the
                # name.  If none has, the wait is over, as documented (None
                # "when the server is gone"): waiting on for a successor made
                # wait_frame() and frames() without a timeout hang forever
                # once the producer had exited.
                if self._follow_new_server():
                    c = self._c
                    if deadline is not None:
                        left = max(min(_SLICE_S, deadline - time.monotonic()), 0.0)
                    st = None
                    continue
                self._fail(st)
                # Say what happened, not why the look for a new server failed.
                self.last_error = (f"the server of '{self._name}' is gone (destroyed, or its "
                                   "process died) and no new server has taken the name")
                return False
            if st != lib.SHMX_ETIMEDOUT:
                self._fail(st)
                return False
            if deadline is not None:
                left = min(_SLICE_S, deadline - time.monotonic())
                if left <= 0:
                    # Our own words: the thread's C detail may be another
                    # object's old error (a timed-out wait records none).
                    self._last_status = st
                    self._err = f"wait: no new frame in '{self._name}' within {timeout} s"
                    return False
            st = None
        self._last_status = lib.SHMX_ECLOSED
        self._err = "wait: the client was closed while waiting"
        return False

    def _follow_new_server(self) -> bool:
        """Reconnect when a live server with another session holds our name."""
        insp = Inspector()
        try:
            if not insp.open(self._name, shm_dir=self._shm_dir):
                return False
            h = insp.get_header_info()
        finally:
            insp.close()
        if h.get("session_id") == self.session_id or h.get("owner_alive") is False:
            return False
        return self.reconnect()

    def frames(self, timeout: Optional[float] = None) -> Iterator[Frame]:
        """Iterate over new frames as they are published (each once; a slow
        consumer skips to the newest).  Stops after ``timeout`` seconds
        without a new frame, when the server is gone or the client closed."""
        check_timeout("frames", timeout)
        while True:
            frame = self.wait_frame(timeout)
            if frame is None:
                return
            yield frame

    # ------------------------------------------------------- event loops
    def fileno(self) -> int:
        """A file descriptor for any event loop (selectors, asyncio's
        ``add_reader``, trio's ``wait_readable``): it becomes readable, once
        armed, when a frame newer than this client's last read is published,
        and when the server goes away.  ``fileno()`` arms it; after each
        wake call ``arm()`` (it drains the fd): True means read now, False
        means wait for the fd again.  Owned by the client: do not close it;
        unregister it before ``close()``; it changes after a reconnect.
        Raises ``ServerGoneError`` when the server is gone, ``ShmxError``
        where there is no wake channel (not Linux, another network
        namespace)."""
        owner, c = self._owner, self._c  # noqa: F841  (see get_latest_frame)
        fd = ffi.new("int *")
        st = lib.shmx_client_wait_fd(c or _NULL, fd)
        if st != 0:
            self._fail(st)
            raise error_for(st, f"fileno: {self.last_error}")
        lib.shmx_client_arm_fd(c)
        return int(fd[0])

    def arm(self) -> bool:
        """Drain and arm the ``fileno()`` fd.  True: a frame newer than the
        last one read is there (or the server is gone, or the client is
        closed): read now, do not wait.  False: armed; the fd becomes
        readable at the next publish."""
        owner = self._owner  # noqa: F841  (see get_latest_frame)
        st = lib.shmx_client_arm_fd(self._c or _NULL)
        if st == lib.SHMX_EAGAIN:
            return False
        if st != 0:
            self._fail(st)
        return True

    async def await_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """``wait_frame`` for asyncio, on the ``fileno()`` fd with
        ``loop.add_reader``: no thread.  Cancelling it (or
        ``asyncio.wait_for``) ends the wait at once; ``close()`` makes it
        return None."""
        timeout = check_timeout("await_frame", timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            c = self._c
            if c is None or self._closing:
                self._last_status = lib.SHMX_ECLOSED
                self._err = "await_frame: the client is not open or was closed"
                return None
            st = lib.shmx_client_arm_fd(c)
            if st == 0:
                frame = self.get_latest_frame()
                if frame is not None:
                    return frame
                continue
            if st == lib.SHMX_ECLOSED:
                if self._follow_new_server():
                    continue
                self._fail(st)
                self.last_error = (f"the server of '{self._name}' is gone (destroyed, or its "
                                   "process died) and no new server has taken the name")
                return None
            fd = ffi.new("int *")
            no_channel = st == lib.SHMX_ESYS or (st == lib.SHMX_EAGAIN and lib.shmx_client_wait_fd(c, fd) != 0)
            if st not in (lib.SHMX_EAGAIN, lib.SHMX_ESYS):
                self._fail(st)
                return None
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self._last_status = lib.SHMX_ETIMEDOUT
                self._err = f"await_frame: no new frame in '{self._name}' within {timeout} s"
                return None
            if no_channel:
                # No wake channel here (Windows, or another network
                # namespace than the server's): look again soon, still
                # without a thread.
                if lib.shmx_client_wait(c, 0) == 0:
                    frame = self.get_latest_frame()
                    if frame is not None:
                        return frame
                await asyncio.sleep(_POLL_S if left is None else min(_POLL_S, left))
                continue
            await wait_readable(int(fd[0]), left, self._async_waiters)

    async def aframes(self, timeout: Optional[float] = None) -> AsyncIterator[Frame]:
        """``async for frame in client.aframes():`` the asyncio ``frames()``
        (no thread; Ctrl-C and cancellation end it at once)."""
        check_timeout("aframes", timeout)
        while True:
            frame = await self.await_frame(timeout)
            if frame is None:
                return
            yield frame
