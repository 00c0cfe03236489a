"""Waiting on a shmx wake fd from asyncio, with no thread.

``wait_readable(fd, timeout)`` is the one primitive: ``loop.add_reader``
resolves a future, ``loop.remove_reader`` always runs (timeout,
cancellation, Ctrl-C), so nothing is left waiting anywhere.
"""
from __future__ import annotations

import asyncio
import math
import numbers
from typing import Any, Optional, Set, Tuple

from .errors import InvalidArgumentError
from ._shmx import lib


def check_timeout(call: str, timeout: Any, name: str = "timeout") -> Optional[float]:
    """``timeout`` as seconds (None: forever); NaN, negative or a non-number
    raise InvalidArgumentError naming the call."""
    if timeout is None:
        return None
    if type(timeout) is float and timeout >= 0.0:  # the common case, without the ABC check; NaN fails >=
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidArgumentError(f"{call}: {name} must be None or a number of seconds >= 0, "
                                   f"got {type(timeout).__name__}", lib.SHMX_EINVAL)
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise InvalidArgumentError(f"{call}: {name} must be None or a number of seconds >= 0, "
                                   f"got {timeout!r}", lib.SHMX_EINVAL)
    return value


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


def wake_all(waiters: "Set[Tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]") -> None:
    """Resolve every pending wait_readable of an object being closed (from
    any thread)."""
    for loop, fut in list(waiters):
        try:
            loop.call_soon_threadsafe(_resolve, fut)
        except RuntimeError:
            pass  # that loop is closed


async def wait_readable(fd: int, timeout: Optional[float],
                        waiters: "Set[Tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]") -> bool:
    """True once ``fd`` is readable (or ``wake_all(waiters)`` ran), False at
    the timeout (seconds, None: forever).  Cancellation propagates; the
    reader is removed either way."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[None]" = loop.create_future()
    entry = (loop, fut)
    waiters.add(entry)
    loop.add_reader(fd, _resolve, fut)
    try:
        if timeout is None:
            await fut
            return True
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
    finally:
        waiters.discard(entry)
        loop.remove_reader(fd)
