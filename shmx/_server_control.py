"""The Server's side of its readers: control messages (polled, waited for,
or awaited on the wake fd from any event loop), waiting for readers, and
the reader table (snapshot, reaping stale readers)."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional

from ._aio import check_timeout, wait_readable
from ._common import readers_list
from ._server_core import _NULL, _ServerCore
from ._shmx import ffi, lib
from .errors import error_for


class _Control(_ServerCore):
    """Control messages, reader waits and the reader table."""

    # -------------------------------------------------------------- control
    def poll_control(self, max_messages: int = 256) -> List[Dict[str, Any]]:
        """Control messages from clients: dicts with ``reader_id``, ``type``,
        ``data`` (bytes), ``reader_index``; at most ``max_messages``."""
        out: List[Dict[str, Any]] = []
        s = self._s
        if s is None:
            self._set_error(lib.SHMX_EINVAL, "poll_control")
            return out
        msg, buf = self._msg, self._msgbuf
        cap = len(buf)
        while len(out) < max_messages:
            msg.struct_size = ffi.sizeof("shmx_control_msg")
            st = lib.shmx_server_next_control(s, msg, buf, cap)
            if st != 0:
                if st != lib.SHMX_EAGAIN:
                    self._set_error(st, "poll_control")
                break
            out.append({"reader_id": msg.reader_id, "type": msg.type,
                        "data": ffi.unpack(buf, msg.length), "reader_index": msg.reader_index})
        return out

    def wait_control(self, timeout: Optional[float] = None) -> bool:
        """Block until a control message may be waiting (True) or the
        timeout in seconds passes (False).  Releases the GIL; Ctrl-C works.
        A NaN or negative timeout raises ``InvalidArgumentError``."""
        timeout = check_timeout("wait_control", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._s is not None:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            st = lib.pyshmx_server_wait_control(self._s, max(int(left * 1e9), 0))
            if st == 0:
                return True
            if st != lib.SHMX_ETIMEDOUT:
                self._set_error(st, "wait_control")
                return False
            if deadline is not None and time.monotonic() >= deadline:
                self._last_status = st
                self.last_error = f"wait_control: no control message within {timeout} s"
                return False
        self._set_error(lib.SHMX_ECLOSED, "wait_control")  # not created, or destroyed: say so
        return False

    # -------------------------------------------------------------- readers
    def wait_readers(self, n: int, timeout: Optional[float] = None) -> bool:
        """Wait until at least ``n`` readers are attached (``readers_connected``):
        True then, False at the timeout (seconds, None: forever) or after
        ``destroy()``.  Honours Ctrl-C."""
        timeout = check_timeout("wait_readers", timeout)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise error_for(lib.SHMX_EINVAL, f"wait_readers: n must be an int >= 0, got {n!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        nap = 0.0005
        while self._s is not None:
            if self.get_header_info().get("readers_connected", 0) >= n:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self._last_status = lib.SHMX_ETIMEDOUT
                self.last_error = f"wait_readers: fewer than {n} readers within {timeout} s"
                return False
            time.sleep(nap if deadline is None else max(min(nap, deadline - now), 0))
            nap = min(nap * 2, 0.01)
        self._set_error(lib.SHMX_ECLOSED, "wait_readers")
        return False

    def snapshot_readers(self) -> List[Dict[str, Any]]:
        """Every reader slot: ``reader_id``, ``heartbeat`` (monotonic ns),
        ``last_frame_seen``, ``in_use``, and ``alive``, ``pid``,
        ``frames_read``, ``frames_dropped``, ``legacy``.  ``[]`` before
        ``create()`` and after ``destroy()`` (``last_error`` says which)."""
        if self._s is None:
            self._set_error(lib.SHMX_EINVAL, "snapshot_readers")
            return []
        return readers_list(lib.shmx_server_readers, self._s, self.get_header_info()["reader_slots"])

    def reap_stale_readers(self, now_ticks: int, timeout_ticks: int) -> int:
        """Free reader slots of dead readers, and evict readers whose
        heartbeat (``time.monotonic_ns()`` units) is older than
        ``timeout_ticks`` at ``now_ticks``: a live client of ours loses its
        pinned frame and its next call reports it was evicted
        (``ReaderEvictedError``); a shmx 1.0.1 reader's slot is freed.  Our
        clients heartbeat on every read and every 100 ms while waiting.
        Returns how many were freed or evicted."""
        out = ffi.new("uint32_t *")
        try:
            st = lib.shmx_server_reap_stale_readers(self._s or _NULL, now_ticks, timeout_ticks, out)
        except (TypeError, OverflowError) as exc:
            self.last_error = f"reap_stale_readers: {exc}"
            return 0
        if st != 0:
            self._set_error(st, "reap_stale_readers")
            return 0
        return int(out[0])

    # ------------------------------------------------------- event loops
    def control_fileno(self) -> int:
        """A file descriptor for any event loop that becomes readable, once
        armed, when a client sends a control message (and, spuriously, when
        a client connects to or leaves the wake channel).  ``control_fileno()``
        arms it; after each wake call ``arm_control()``: True means call
        ``poll_control()`` now, False means wait for the fd again.  Owned by
        the server (closed by ``destroy()``).  Raises ``ServerGoneError``
        after destroy, ``ShmxError`` where there is no wake channel."""
        fd = ffi.new("int *")
        st = lib.shmx_server_control_fd(self._s or _NULL, fd)
        if st != 0:
            self._set_error(st if self._s is not None else lib.SHMX_ECLOSED, "control_fileno")
            raise error_for(lib.SHMX_ECLOSED if self._s is None else st,
                            f"control_fileno: {self.last_error}")
        self.arm_control()
        return int(fd[0])

    def arm_control(self) -> bool:
        """Drain and arm the ``control_fileno()`` fd.  True: a control message
        may be waiting (or the server is destroyed): poll now.  False:
        armed, wait for the fd."""
        st = lib.shmx_server_arm_control_fd(self._s or _NULL)
        if st == lib.SHMX_EAGAIN:
            return False
        if st != 0:
            self._set_error(st, "arm_control")
        return True

    async def await_control(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The asyncio ``wait_control`` + ``poll_control``: the control
        messages waiting (a non-empty list), or ``[]`` at the timeout or
        after ``destroy()``.  Built on ``control_fileno()`` with
        ``loop.add_reader``: no thread; cancellation ends it at once."""
        timeout = check_timeout("await_control", timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._s is not None:
            msgs = self.poll_control()
            if msgs:
                return msgs
            st = lib.shmx_server_arm_control_fd(self._s)
            if st == 0:
                continue
            fd = ffi.new("int *")
            no_channel = st == lib.SHMX_ESYS or (st == lib.SHMX_EAGAIN and
                                                 lib.shmx_server_control_fd(self._s, fd) != 0)
            if st not in (lib.SHMX_EAGAIN, lib.SHMX_ESYS):
                self._set_error(st, "await_control")
                return []
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self._last_status = lib.SHMX_ETIMEDOUT
                self.last_error = f"await_control: no control message within {timeout} s"
                return []
            if no_channel:  # no wake channel here (Windows): look again soon, no thread
                await asyncio.sleep(0.002 if left is None else min(0.002, left))
                continue
            await wait_readable(int(fd[0]), left, self._async_waiters)
        self._set_error(lib.SHMX_ECLOSED, "await_control")
        return []
