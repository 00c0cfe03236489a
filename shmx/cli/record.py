"""``shmx record`` and ``shmx play``: which file format a run uses, and the
size option both take.  The formats themselves live apart and are imported
only once the choice is made: ``mcap_record``/``mcap_play`` (MCAP, needs the
``mcap`` extra) and ``shmxrec`` (the format of docs/record-format.md,
standard library only)."""
from __future__ import annotations

import argparse

from .util import EXIT_USAGE, CliError


def parse_size(text: str) -> int:
    """'100M' -> 104857600 (K, M, G: powers of 1024; plain bytes otherwise)."""
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = 1
    if t and t[-1] in "KMG":
        mult = 1 << {"K": 10, "M": 20, "G": 30}[t[-1]]
        t = t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if not v >= 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1 byte: {text!r}")
    return int(v)


def cmd_play(args: argparse.Namespace) -> int:
    """``shmx play FILE``: MCAP files by ``mcap_play``, ``.shmxrec`` files by ``shmxrec``."""
    from .mcap_play import is_mcap, play_mcap
    if not is_mcap(args.file):
        from . import shmxrec
        return shmxrec.cmd_play(args)
    return play_mcap(args)


def cmd_record(args: argparse.Namespace) -> int:
    """``shmx record``: MCAP when the output ends in .mcap (or --format mcap),
    else one region to a .shmxrec file."""
    from .mcap_record import cmd_record as record_mcap, keep_freed_buffers
    keep_freed_buffers()
    fmt = args.format
    if fmt == "auto":
        fmt = "mcap" if args.output.lower().endswith(".mcap") else "shmxrec"
    if fmt == "mcap":
        return record_mcap(args)
    if len(args.names) != 1:
        raise CliError("several regions go into one MCAP file (-o FILE.mcap); a .shmxrec "
                       "recording holds one region", EXIT_USAGE)
    for opt in ("split_size", "split_duration"):
        if getattr(args, opt) is not None:
            raise CliError(f"--{opt.replace('_', '-')} needs MCAP output (-o FILE.mcap)", EXIT_USAGE)
    from . import shmxrec
    args.name = args.names[0]
    return shmxrec.cmd_record(args)


__all__ = ["cmd_play", "cmd_record", "parse_size"]
