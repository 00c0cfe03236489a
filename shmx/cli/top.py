"""``shmx top``: a live view of one region, read-only (an Inspector, no
reader slot), so watching never changes what it watches.

Rates come from differences between two samples: frames/s from
``frame_seq``, MB/s from that times the size of the latest frame's stream
data, a reader's reads/s from its ``frames_read`` counter."""
from __future__ import annotations

import argparse
import os
import select
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, TextIO

from .util import (EXIT_OK, Stop, active_readers, finishing, fmt_age, fmt_bytes,
                       liveness_word, open_inspector, shm_dir_of, stop_on_sigterm, table, to_json)
from ..inspector import Inspector

# ANSI sequences: alternate screen on/off, cursor hide/show, home, erase.
ALT_ON, ALT_OFF = "\x1b[?1049h", "\x1b[?1049l"
CURSOR_HIDE, CURSOR_SHOW = "\x1b[?25l", "\x1b[?25h"
HOME, CLEAR_EOL, CLEAR_EOS = "\x1b[H", "\x1b[K", "\x1b[J"


class Sample:
    """One look at the region."""

    def __init__(self, insp: Inspector) -> None:
        self.t = time.monotonic()
        self.header = insp.get_header_info()
        self.readers = active_readers(insp.get_readers_info(), self.header["frame_seq"])
        latest = insp.copy_latest()
        if latest is None:
            self.frame_bytes = 0
            self.latest: Optional[Dict[str, Any]] = None
        else:
            meta = latest.pop("__metadata__")
            self.frame_bytes = sum(v["bytes"] for v in latest.values())
            self.latest = meta


def stats(prev: Sample, cur: Sample) -> Dict[str, Any]:
    """The numbers one refresh shows (rates over prev -> cur)."""
    dt = max(cur.t - prev.t, 1e-9)
    h = cur.header
    frames = (h["frame_seq"] - prev.header["frame_seq"]) if h["session_id"] == prev.header["session_id"] else 0
    fps = max(frames, 0) / dt
    before = {(r["index"], r["reader_id"]): r for r in prev.readers}
    readers = []
    for r in cur.readers:
        old = before.get((r["index"], r["reader_id"]))
        rate = (r["frames_read"] - old["frames_read"]) / dt if old else None
        readers.append({"index": r["index"], "pid": r["pid"], "alive": liveness_word(r["alive"]),
                        "legacy": r["legacy"], "frames_read": r["frames_read"],
                        "frames_dropped": r["frames_dropped"], "lag": r["lag"],
                        "reads_per_s": None if rate is None else round(max(rate, 0.0), 2),
                        "heartbeat_age_s": r["heartbeat_age_s"]})
    return {
        "time": round(time.time(), 3),
        "name": h["name"],
        "owner_pid": h["owner_pid"],
        "owner": liveness_word(h["owner_alive"]),
        "closed": h["closed"],
        "frame_seq": h["frame_seq"],
        "fps": round(fps, 2),
        "mb_per_s": round(fps * cur.frame_bytes / 1e6, 3),
        "frame_bytes": cur.frame_bytes,
        "latest_frame_id": cur.latest["frame_id"] if cur.latest else None,
        "sim_time": cur.latest["sim_time"] if cur.latest else None,
        "overruns": h["overruns"],
        "slots": h["slots"],
        "reader_slots": h["reader_slots"],
        "readers": readers,
    }


def plain_line(s: Dict[str, Any]) -> str:
    """One refresh as one line (for pipes and logs)."""
    parts = [f"{s['name']}: frames={s['frame_seq']} fps={s['fps']:.1f} MB/s={s['mb_per_s']:.2f} "
             f"owner={s['owner']} readers={len(s['readers'])}"]
    for r in s["readers"]:
        parts.append(f"[slot{r['index']} pid={r['pid']} read={r['frames_read']} "
                     f"dropped={r['frames_dropped']} lag={r['lag']}]")
    return " ".join(parts)


def screen_lines(s: Dict[str, Any], shm_dir: str, interval: float) -> List[str]:
    """One refresh as a screen."""
    owner = f"pid {s['owner_pid']} {s['owner']}" if s["owner_pid"] else s["owner"]
    state = "  CLOSED by its server" if s["closed"] else ""
    lines = [
        f"shmx top  {s['name']}  ({shm_dir})   owner {owner}{state}   every {interval:g} s   q: quit",
        "",
        f"frames  {s['frame_seq']} published   {s['fps']:.1f} frames/s   {s['mb_per_s']:.2f} MB/s   "
        f"frame {fmt_bytes(s['frame_bytes'])}",
        f"latest  frame {s['latest_frame_id'] if s['latest_frame_id'] is not None else '-'}   "
        f"sim_time {s['sim_time'] if s['sim_time'] is not None else '-'}   slots {s['slots']}   "
        f"overruns {s['overruns']}",
        f"readers {len(s['readers'])} of {s['reader_slots']}",
        "",
    ]
    if s["readers"]:
        rows = [[r["index"], r["pid"] or "-", r["alive"],
                 "-" if r["reads_per_s"] is None else f"{r['reads_per_s']:.1f}",
                 r["frames_read"], r["frames_dropped"], r["lag"], fmt_age(r["heartbeat_age_s"])]
                for r in s["readers"]]
        lines += table(["SLOT", "PID", "ALIVE", "READ/S", "READ", "DROPPED", "LAG", "HEARTBEAT"],
                       rows, right=(0, 1, 3, 4, 5, 6, 7)).splitlines()
    else:
        lines.append("(no reader attached)")
    return lines


class _Terminal:
    """Raw-ish terminal for the in-place view: alternate screen, hidden
    cursor, keys without Enter.  ``restore()`` undoes all of it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.fd: Optional[int] = None
        self.saved: Any = None
        try:
            if sys.stdin.isatty():
                import termios
                import tty
                self.fd = sys.stdin.fileno()
                self.saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)  # keeps ISIG: Ctrl-C still interrupts
        except (ImportError, OSError):
            self.fd = None
        out.write(ALT_ON + CURSOR_HIDE)
        out.flush()

    def draw(self, lines: List[str]) -> None:
        cols, rows = shutil.get_terminal_size((100, 40))
        body = "".join(line[:cols] + CLEAR_EOL + "\r\n" for line in lines[:max(rows - 1, 1)])
        self.out.write(HOME + body + CLEAR_EOS)
        self.out.flush()

    def wait_key(self, timeout: float) -> bool:
        """Sleep up to ``timeout``; True when q was pressed."""
        if self.fd is None:
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data or b"q" in data or b"Q" in data:
                    return True

    def restore(self) -> None:
        try:
            self.out.write(CURSOR_SHOW + ALT_OFF)
            self.out.flush()
        finally:
            if self.fd is not None and self.saved is not None:
                import termios
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _follow(insp: Inspector, name: str, shm_dir: str) -> Inspector:
    """When the server is gone and another took the name, watch the new one."""
    h = insp.get_header_info()
    if not (h["closed"] or h["owner_alive"] is False):
        return insp
    fresh = Inspector()
    if fresh.open(name, shm_dir=shm_dir) and fresh.get_header_info()["session_id"] != h["session_id"]:
        insp.close()
        return fresh
    fresh.close()
    return insp


def cmd_top(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    insp = open_inspector(args.name, shm_dir)
    stop_on_sigterm()
    interactive = sys.stdout.isatty() and not args.json
    term: Optional[_Terminal] = None
    try:
        prev = Sample(insp)
        if interactive:
            term = _Terminal(sys.stdout)
            term.draw([f"shmx top  {args.name}  (first sample in {args.interval:g} s)   q: quit"])
        done = 0
        while args.iterations is None or done < args.iterations:
            if term is not None:
                if term.wait_key(args.interval):
                    break
            else:
                time.sleep(args.interval)
            insp = _follow(insp, args.name, shm_dir)
            cur = Sample(insp)
            s = stats(prev, cur)
            prev = cur
            done += 1
            if term is not None:
                term.draw(screen_lines(s, shm_dir, args.interval))
            elif args.json:
                print(to_json(s, indent=None), flush=True)
            else:
                print(plain_line(s), flush=True)
    except (KeyboardInterrupt, Stop):
        pass  # quitting is the normal way out
    finally:
        finishing()
        if term is not None:
            term.restore()
        insp.close()
    return EXIT_OK
