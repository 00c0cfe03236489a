"""Pieces shared by the ``shmx`` command's subcommands: the error type that
becomes one line on stderr, opening a region for a look, and formatting."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .._shmx import lib
from ..inspector import Inspector

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Statuses that mean the user typed something wrong (exit 2), not that the
# world is in a bad state (exit 1).
_USAGE_STATUSES = (lib.SHMX_ENAME, lib.SHMX_EINVAL)


class CliError(Exception):
    """A failure the command reports as one line on stderr, then exits with
    ``code`` (1: runtime failure, 2: usage)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Stop(Exception):
    """Raised by the SIGTERM handler so long-running commands clean up."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into ``Stop`` so regions and files are finished cleanly."""

    def handler(_sig: int, _frame: Any) -> None:
        raise Stop()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling main() in a thread)
        pass


def finishing() -> None:
    """Cleanup has begun: a further SIGTERM must not cut it short (it would
    leave a half-written file or a region behind)."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:
        pass


def code_for_status(status: int) -> int:
    """Exit code for a failed C status."""
    return EXIT_USAGE if status in _USAGE_STATUSES else EXIT_FAILURE


def check_name(name: str) -> None:
    """Refuse an invalid region name up front (exit 2)."""
    if lib.shmx_check_name(name.encode("utf-8", "surrogateescape")) != 0:
        raise CliError(f"invalid region name {name!r}: allowed characters are A-Z a-z 0-9 . _ - "
                       f"(at most {lib.SHMX_NAME_MAX})", EXIT_USAGE)


def open_inspector(name: str, shm_dir: Optional[str]) -> Inspector:
    """An open Inspector on ``name`` or a ``CliError`` saying why not."""
    check_name(name)
    insp = Inspector()
    if not insp.open(name, shm_dir=shm_dir):
        raise CliError(insp.last_error or f"cannot open region {name!r}",
                       code_for_status(insp._last_status))
    return insp


def shm_dir_of(args: Any) -> str:
    """The directory the command works in (``--dir``, ``$SHMX_DIR``, ``/dev/shm``)."""
    d = getattr(args, "dir", None)
    return d or os.environ.get("SHMX_DIR") or "/dev/shm"


def liveness_word(alive: Optional[bool]) -> str:
    """``True/False/None`` -> ``alive/dead/unknown``."""
    return {True: "alive", False: "dead"}.get(alive, "unknown")  # type: ignore[arg-type]


def active_readers(readers: Iterable[Dict[str, Any]], frame_seq: int,
                   now_ns: Optional[int] = None) -> List[Dict[str, Any]]:
    """Reader slots in use, each with ``lag`` (frames behind the newest) and
    ``heartbeat_age_s`` (seconds since its last heartbeat) added."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    out = []
    for r in readers:
        if not r.get("in_use"):
            continue
        r = dict(r)
        seen = int(r.get("last_frame_seen") or 0)
        r["lag"] = max(int(frame_seq) - seen, 0)
        hb = int(r.get("heartbeat") or 0)
        r["heartbeat_age_s"] = round(max(now - hb, 0) / 1e9, 3) if hb else None
        out.append(r)
    return out


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_age(seconds: Optional[float]) -> str:
    """Seconds -> '12 ms', '3.4 s', '5 min'; '-' for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "",
          right: Sequence[int] = ()) -> str:
    """A plain text table; columns listed in ``right`` are right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_json(data: Any, indent: Optional[int] = 2) -> str:
    """JSON text; bytes (stream ``extra``) become hex strings."""
    return json.dumps(data, indent=indent, default=_json_default, sort_keys=False)


class Progress:
    """One status line on stderr: rewritten in place on a terminal, printed
    as a plain line at most every ``plain_every`` seconds otherwise."""

    def __init__(self, enabled: bool = True, plain_every: float = 1.0) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.plain_every = plain_every
        self._last = time.monotonic()  # the first line once there is something to say
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if not force and now - self._last < 0.1:
                return
            pad = max(self._width - len(text), 0)
            sys.stderr.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            if not force and now - self._last < self.plain_every:
                return
            sys.stderr.write(text + "\n")
        sys.stderr.flush()
        self._last = now

    def done(self) -> None:
        """End the in-place line so what follows starts on a fresh one."""
        if self.enabled and self.tty and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0
