"""``shmx ls``, ``shmx inspect`` and ``shmx rm``: the regions of a directory,
one region's report, and removing regions.  Everything here looks through
an Inspector (read-only, no reader slot); ``rm`` removes through
``shmx._common.unlink``, which refuses a live server's region unless forced
and never touches a file that is not a shmx region."""
from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import Any, Dict, List, Optional

from .._common import unlink
from .._shmx import lib
from ..errors import ShmxError
from ..inspector import Inspector
from .util import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, active_readers, check_name, fmt_age,
                   fmt_bytes, liveness_word, open_inspector, shm_dir_of, table, to_json)


# ---------------------------------------------------------------- scanning
def region_summary(insp: Inspector, name: str, shm_dir: str) -> Dict[str, Any]:
    """What ``ls`` shows about one open region."""
    h = insp.get_header_info()
    streams = insp.get_streams_info()
    readers = [r for r in insp.get_readers_info() if r["in_use"]]
    owner = liveness_word(h["owner_alive"])
    return {
        "name": name,
        "path": os.path.join(shm_dir, name),
        "size": h["total_bytes"],
        "owner_pid": h["owner_pid"] or None,
        "owner": owner,
        "stale": h["owner_alive"] is False,
        "closed": h["closed"],
        "legacy": not h["extended"],
        "streams": [s["name"] for s in streams],
        "readers": len(readers),
        "reader_slots": h["reader_slots"],
        "frames": h["frame_seq"],
        "slots": h["slots"],
        "frame_bytes_cap": h["frame_bytes_cap"],
    }


def scan_regions(shm_dir: str, unreadable: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """Every shmx region in ``shm_dir`` (sorted by name).  Files that are
    not shmx regions, cannot be read, or are still being created (a '~' in
    the name) are left out; the names of those we may not open (they may be
    regions of another user) are added to ``unreadable``."""
    try:
        names = sorted(os.listdir(shm_dir))
    except FileNotFoundError:
        raise CliError(f"no such directory '{shm_dir}'") from None
    except NotADirectoryError:
        raise CliError(f"'{shm_dir}' is not a directory") from None
    except PermissionError:
        raise CliError(f"permission denied reading directory '{shm_dir}'") from None
    out = []
    for name in names:
        if "~" in name:  # a region being created under a temporary name
            continue
        try:
            st = os.lstat(os.path.join(shm_dir, name))
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size < 128:
            continue
        if lib.shmx_check_name(os.fsencode(name)) != 0:
            continue
        insp = Inspector()
        if not insp.open(name, shm_dir=shm_dir):
            if insp._last_status == lib.SHMX_EACCES and unreadable is not None:
                unreadable.append(name)
            continue
        try:
            out.append(region_summary(insp, name, shm_dir))
        finally:
            insp.close()
    return out


# ---------------------------------------------------------------------- ls
def cmd_ls(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    unreadable: List[str] = []
    regions = scan_regions(shm_dir, unreadable)
    if args.json:
        print(to_json(regions))
        return EXIT_OK
    note = ""
    if unreadable:
        note = (f" ({len(unreadable)} file{'s' if len(unreadable) != 1 else ''} not readable by this "
                f"user: {', '.join(unreadable[:5])}{', ...' if len(unreadable) > 5 else ''})")
    if not regions:
        print(f"no shmx regions in {shm_dir}{note}")
        return EXIT_OK
    rows = []
    for r in regions:
        owner = f"{r['owner_pid'] or '?'} {r['owner']}" + (" (stale)" if r["stale"] else "")
        names = ",".join(r["streams"])
        if len(names) > 40:
            names = names[:37] + "..."
        rows.append([r["name"], fmt_bytes(r["size"]), owner, len(r["streams"]),
                     f"{r['readers']}/{r['reader_slots']}", r["frames"],
                     "legacy" if r["legacy"] else "shmx", names])
    print(table(["NAME", "SIZE", "OWNER", "STREAMS", "READERS", "FRAMES", "LAYOUT", "STREAM NAMES"],
                rows, right=(1, 3, 5)))
    stale = sum(1 for r in regions if r["stale"])
    footer = f"{len(regions)} region{'s' if len(regions) != 1 else ''} in {shm_dir}"
    if stale:
        footer += f"; {stale} stale (owner dead): remove with 'shmx rm --stale'"
    print(footer + note)
    return EXIT_OK


# ----------------------------------------------------------------- inspect
def inspect_report(insp: Inspector, shm_dir: str) -> Dict[str, Any]:
    """The Inspector's report, readers reduced to those in use (with lag and
    heartbeat age), plus the latest frame's metadata and stream sizes."""
    now = time.monotonic_ns()
    rep = insp.inspect()
    h = rep["header"]
    h["path"] = os.path.join(shm_dir, h["name"])
    h["owner"] = liveness_word(h["owner_alive"])
    h["owner_heartbeat_age_s"] = (round(max(now - h["owner_heartbeat"], 0) / 1e9, 3)
                                  if h.get("owner_heartbeat") else None)
    rep["readers"] = active_readers(rep["readers"], rep["frame_seq"], now)
    latest = insp.copy_latest()
    if latest is None:
        rep["latest"] = None
    else:
        meta = dict(latest.pop("__metadata__"))
        meta["streams"] = {k: {"elem_count": v["elem_count"], "bytes": v["bytes"]} for k, v in latest.items()}
        rep["latest"] = meta
    return rep


def cmd_inspect(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    insp = open_inspector(args.name, shm_dir)
    try:
        rep = inspect_report(insp, shm_dir)
    finally:
        insp.close()
    if args.json:
        print(to_json(rep))
        return EXIT_OK
    h = rep["header"]
    kind = ("shmx (extension block present)" if h["extended"]
            else "legacy (shmx 1.0.1, no extension block)")
    owner = f"pid {h['owner_pid']}, {h['owner']}" if h["owner_pid"] else h["owner"]
    if h["owner_alive"] is False:
        owner += " (stale: 'shmx rm --stale' removes it)"
    if h["owner_heartbeat_age_s"] is not None:
        owner += f", heartbeat {fmt_age(h['owner_heartbeat_age_s'])} ago"
    lines = [
        ("region", f"{h['name']}  ({h['path']})"),
        ("layout", f"v{h['version_major']}.{h['version_minor']} {kind}"),
        ("owner", owner),
        ("state", "closed by its server" if h["closed"] else "open"),
        ("session", f"0x{h['session_id']:016x}"),
        ("frames", f"{h['frame_seq']} published, {h['overruns']} overruns"),
        ("slots", f"{h['slots']} x {fmt_bytes(h['slot_payload_cap'])} "
                  f"(frame_bytes_cap {h['frame_bytes_cap']})"),
        ("size", f"{h['total_bytes']} bytes ({fmt_bytes(h['total_bytes'])})"),
        ("static", f"gen {h['static_gen']}, {h['static_bytes_used']}/{h['static_bytes_cap']} bytes"),
        ("readers", f"{len(rep['readers'])} attached, {h['reader_slots']} slots, "
                    f"{h['control_per_reader']} control bytes each"),
        ("checksum", h["checksum"]),
    ]
    latest = rep["latest"]
    if latest:
        lines.append(("latest", f"frame {latest['frame_id']}, sim_time {latest['sim_time']:g}, "
                                f"{latest['payload_bytes']} payload bytes"))
    else:
        lines.append(("latest", "no frame published yet"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {v}")
    print()
    print(f"streams ({len(rep['streams'])})")
    if rep["streams"]:
        sizes = latest["streams"] if latest else {}
        rows = []
        for s in rep["streams"]:
            cur = sizes.get(s["name"])
            rows.append([s["id"], s["name"], s["dtype"], s["components"], s["layout"], s["bytes_per_elem"],
                         "x".join(map(str, s["shape"])) if s.get("shape") else "-",
                         cur["elem_count"] if cur else "-", cur["bytes"] if cur else "-",
                         len(s.get("extra", b"")) or ""])
        print(table(["ID", "NAME", "DTYPE", "COMP", "LAYOUT", "BYTES/ELEM", "SHAPE", "LATEST ELEMS",
                     "LATEST BYTES", "EXTRA"], rows, indent="  ", right=(0, 3, 5, 7, 8, 9)))
    print()
    print(f"readers ({len(rep['readers'])})")
    if rep["readers"]:
        rows = [[r["index"], r["pid"] or "-", liveness_word(r["alive"]), "yes" if r["legacy"] else "no",
                 r["last_frame_seen"], r["lag"], r["frames_read"], r["frames_dropped"],
                 fmt_age(r["heartbeat_age_s"]), f"{r['reader_id']:016x}"] for r in rep["readers"]]
        print(table(["SLOT", "PID", "ALIVE", "LEGACY", "LAST SEEN", "LAG", "READ", "DROPPED",
                     "HEARTBEAT AGE", "READER ID"], rows, indent="  ", right=(0, 1, 4, 5, 6, 7, 8)))
    return EXIT_OK


# ---------------------------------------------------------------------- rm
def _unlink(name: str, shm_dir: str, force: bool) -> None:
    try:
        unlink(name, shm_dir=shm_dir, force=force)
    except ShmxError as exc:
        raise CliError(str(exc).replace("; pass force=True", "; use --force to remove it anyway")) from None


def _remove_named(name: str, shm_dir: str, force: bool, dry_run: bool) -> str:
    check_name(name)
    insp = Inspector()
    if not insp.open(name, shm_dir=shm_dir):
        status = insp._last_status
        if status == lib.SHMX_ECORRUPT:
            # Never delete a file we do not recognise, --force or not.
            raise CliError(f"{insp.last_error}; not removing it")
        if not (force and status == lib.SHMX_EVERSION):
            raise CliError(insp.last_error, 1)
        desc = "region of another layout version"
    else:
        try:
            h = insp.get_header_info()
        finally:
            insp.close()
        alive = h["owner_alive"]
        if alive is True and not force:
            raise CliError(f"region '{name}' belongs to a live server (pid {h['owner_pid']}); "
                           f"use --force to remove it anyway")
        if alive is None and not force:
            raise CliError(f"region '{name}' is a shmx 1.0.1 region whose owner cannot be checked; "
                           f"use --force to remove it")
        desc = {True: f"live server pid {h['owner_pid']}", False: f"owner pid {h['owner_pid']} dead",
                None: "legacy region"}[alive]
    if not dry_run:
        _unlink(name, shm_dir, force)
    return f"{'would remove' if dry_run else 'removed'} {name} ({desc})"


def cmd_rm(args: argparse.Namespace) -> int:
    shm_dir = shm_dir_of(args)
    if args.stale == bool(args.names):
        raise CliError("give region names or --stale (not both)", EXIT_USAGE)
    code = EXIT_OK
    if args.stale:
        stale = [r for r in scan_regions(shm_dir) if r["stale"]]
        if not stale:
            print(f"no stale regions in {shm_dir}")
        for r in stale:
            try:
                if not args.dry_run:
                    _unlink(r["name"], shm_dir, False)
                verb = "would remove" if args.dry_run else "removed"
                print(f"{verb} stale region {r['name']} (owner pid {r['owner_pid']} dead)")
            except CliError as exc:
                print(f"shmx rm: {exc}", file=sys.stderr)
                code = EXIT_FAILURE
        return code
    for name in args.names:
        try:
            print(_remove_named(name, shm_dir, args.force, args.dry_run))
        except CliError as exc:
            print(f"shmx rm: {exc}", file=sys.stderr)
            code = max(code, exc.code)
    return code
