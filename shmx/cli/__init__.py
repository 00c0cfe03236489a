"""The ``shmx`` command (also ``python -m shmx``): see, debug, record and
replay live regions.

    shmx ls                       every shmx region in the directory
    shmx inspect NAME [--json]    header, schema, readers with lag
    shmx top NAME                 live frames/s, MB/s, per-reader progress
    shmx rm NAME | --stale        remove a region, or every dead one
    shmx demo                     a producer and a consumer, live
    shmx bench [ARGS]             the benchmark (tools/bench/)
    shmx snapshot NAME -o F.png   the latest frame of a stream as PNG/.npy
    shmx record NAME... -o F.mcap every frame to MCAP (docs/mcap.md) or .shmxrec
    shmx play FILE --as NAME      publish a recording (.shmxrec, MCAP) again
    shmx foxglove NAME...         live regions in Foxglove (WebSocket)
    shmx bridge out NAME --key K  publish a region on Zenoh (optional extra 'bridge')
    shmx bridge in K --as NAME    mirror a region published on Zenoh

Exit codes: 0 success, 1 runtime failure (no such region, not a shmx
region, permission denied...), 2 usage error.  Errors are one line on
stderr; set SHMX_DEBUG=1 to see a traceback for unexpected ones.

This package is the command only: it uses the library (``shmx.Server``,
``Client``, ``Inspector``, ``shmx.bridge``) like any other program, and no
module of the library imports it (tests/test_layers.py checks that).  This
module holds the parser and the dispatch; each subcommand family lives in
its own module, imported only when that subcommand runs, so ``shmx ls``
never loads zenoh, mcap, foxglove or numpy:

    regions      ls, inspect, rm          top        top
    demo         demo                     bench      bench
    snapshot     snapshot                 bridge     bridge out|in (the parser too)
    record       record, play: picks the format of the file
    shmxrec      the .shmxrec format      mcap       the MCAP message codec
    mcap_record  MCAP recording           mcap_play  MCAP reading and playing
    foxglove     foxglove                 image      which streams are images
    protowire    protobuf messages        cdr        ROS 2 image messages (CDR)
    util         errors, opening a region, formatting: shared by all of them
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, NoReturn, Optional, Sequence

from .._shmx import ffi, lib
from ..errors import ShmxError
from .util import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, Stop


# ---------------------------------------------------------------- parsing
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _number(kind: Callable[[str], Any], zero_ok: bool) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) above 0, or from 0 with ``zero_ok``."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not (v >= 0 if zero_ok else v > 0):  # `not`: NaN is refused too
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero_ok else '>'} 0: {text!r}")
        return v
    return parse


_positive_float = _number(float, zero_ok=False)
_non_negative_float = _number(float, zero_ok=True)
_positive_int = _number(int, zero_ok=False)


def _size(text: str) -> int:
    from .record import parse_size  # imports no mcap
    return parse_size(text)


def build_parser() -> Dict[str, argparse.ArgumentParser]:
    """The parsers: ``{"": main parser, command: its subparser}``."""
    # --dir is accepted before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="shared-memory directory (default: $SHMX_DIR or /dev/shm)")

    main = _Parser(prog="shmx", description="See, debug, record and replay shmx shared-memory streams.",
                   epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage error. "
                          "'shmx COMMAND --help' describes each command.")
    main.add_argument("--dir", metavar="DIR", default=None,
                      help="shared-memory directory (default: $SHMX_DIR or /dev/shm)")
    main.add_argument("--version", action="version", version=f"shmx {_version()}")
    sub: Any = main.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parsers: Dict[str, argparse.ArgumentParser] = {"": main}

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=description)
        parsers[name] = p
        return p

    p = add("ls", "list the shmx regions in the directory",
            "List every shmx region in the directory: name, size, owner pid and liveness, "
            "streams, readers, frames published, legacy (shmx 1.0.1 layout, no extension) or not. "
            "Regions whose owner is dead are marked stale. Other files are not listed.")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_lazy("regions", "cmd_ls"))

    p = add("inspect", "show a region's header, streams and readers",
            "Show a region without disturbing it (read-only, no reader slot): header, "
            "schema, the latest frame, and each reader with its lag in frames and the age "
            "of its heartbeat.")
    p.add_argument("name", help="region name")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_lazy("regions", "cmd_inspect"))

    p = add("top", "live view of a region's throughput and readers",
            "A live view refreshed in place: frames/s, MB/s, and per reader frames read, "
            "dropped and lag. Quit with q or Ctrl-C. When stdout is not a terminal (or with "
            "--json) it prints one line per refresh instead.")
    p.add_argument("name", help="region name")
    p.add_argument("--interval", type=_positive_float, default=1.0, metavar="S",
                   help="seconds between refreshes (default 1)")
    p.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                   help="stop after N refreshes (default: until q or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON object per refresh")
    p.set_defaults(func=_lazy("top", "cmd_top"))

    p = add("rm", "remove a region, or every stale one",
            "Remove regions by name, or with --stale every region whose owner process is "
            "dead. A region of a live server (or a shmx 1.0.1 region, whose owner cannot be "
            "checked) is only removed with --force; files that are not shmx regions never are.")
    p.add_argument("names", nargs="*", metavar="NAME", help="region names")
    p.add_argument("--stale", action="store_true", help="remove every region whose owner is dead")
    p.add_argument("--force", action="store_true", help="remove even when the owner is alive")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.set_defaults(func=_lazy("regions", "cmd_rm"))

    p = add("demo", "run a live producer/consumer demo",
            "Start a producer process publishing a synthetic 640x480 RGB video and read it "
            "here with wait_frame(): a live line shows frames, fps, MB/s and latency; every "
            "frame's bytes are verified; the region is removed at the end.")
    p.add_argument("--seconds", type=_positive_float, default=5.0, metavar="S",
                   help="how long to run (default 5)")
    p.add_argument("--fps", type=_non_negative_float, default=60.0,
                   help="frames per second the producer aims at (0: as fast as it can; default 60)")
    p.add_argument("--name", default=None, help="region name (default: shmx-demo-<pid>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_lazy("demo", "cmd_demo"))

    p = add("bench", "run the benchmark (tools/bench/)",
            "Run tools/bench/ from the source tree, passing every argument through "
            "(e.g. 'shmx bench --quick'; 'shmx bench -- --help' for its own options).")
    p.set_defaults(func=_lazy("bench", "cmd_bench"))

    p = add("snapshot", "write the latest frame of a stream as PNG or .npy",
            "Write the latest frame of a stream to a file, read-only (no reader slot). "
            "PNG for 8-bit image streams (gray, RGB, RGBA by channel count); the shape "
            "comes from --shape, or from streams named width/height (and channels). "
            "--npy (or an -o ending in .npy) writes any stream as a numpy .npy file.")
    p.add_argument("name", help="region name")
    p.add_argument("--stream", "-s", default=None,
                   help="stream name (default: the region's only multi-element stream)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    p.add_argument("--shape", default=None, metavar="HxWxC",
                   help="image shape, e.g. 480x640x3 (or HxW for gray)")
    p.add_argument("--npy", action="store_true", help="write a .npy file instead of PNG")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=_lazy("snapshot", "cmd_snapshot"))

    p = add("record", "record every frame of regions to an MCAP or .shmxrec file",
            "Record frames (schema, frame ids, sim_time, stream data, receive timestamps). "
            "An -o ending in .mcap writes MCAP (needs 'shmx[mcap]'; several regions may go "
            "into one file; images as foxglove.RawImage, see docs/mcap.md), anything else "
            "the format of docs/record-format.md. Reads in order with read_next(), so no "
            "frame is skipped while the recorder keeps up; frames the ring overwrote first "
            "are counted as dropped. Stops after --frames, --seconds, when the servers go "
            "away, or on Ctrl-C.")
    p.add_argument("names", nargs="+", metavar="NAME", help="region name(s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="recording file")
    p.add_argument("--format", choices=("auto", "mcap", "shmxrec"), default="auto",
                   help="file format (default: mcap for an -o ending in .mcap, else shmxrec)")
    p.add_argument("--compression", choices=("none", "lz4", "zstd"), default="none",
                   help="MCAP chunk compression (default none, as rosbag2 records; zstd costs "
                        "more CPU than a 1080p camera at 60 fps leaves on a small machine)")
    p.add_argument("--chunk-size", type=_size, default=4 << 20, metavar="BYTES",
                   help="MCAP chunk size before compression (default 4M)")
    p.add_argument("--split-size", type=_size, default=None, metavar="BYTES",
                   help="MCAP: start a new numbered file (FILE_000.mcap, ...) past this size, e.g. 500M")
    p.add_argument("--split-duration", type=_positive_float, default=None, metavar="S",
                   help="MCAP: start a new numbered file every S seconds")
    p.add_argument("--frames", type=_positive_int, default=None, metavar="N",
                   help="stop after N frames (of each region)")
    p.add_argument("--seconds", type=_positive_float, default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--wait", type=_non_negative_float, default=0.0, metavar="S",
                   help="wait up to S seconds for the region(s) to appear (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_lazy("record", "cmd_record"))

    p = add("play", "publish a recording as a live region",
            "Create region NAME with the recorded schema and publish the recorded frames "
            "again, paced by their recorded timestamps (scaled by --rate; --rate 0: as fast "
            "as possible). At the end it waits (up to --linger seconds) for attached readers "
            "to catch up, then removes the region.")
    p.add_argument("file", help="a .shmxrec or MCAP recording (MCAP from other tools too: "
                                "image and byte channels)")
    p.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                   help="region name to create (an MCAP file of several regions: NAME1,NAME2,...)")
    p.add_argument("--rate", type=_non_negative_float, default=1.0, metavar="X",
                   help="speed factor (2: twice as fast; 0: no pacing; default 1)")
    p.add_argument("--loop", action="store_true", help="start over at the end (until Ctrl-C)")
    p.add_argument("--slots", type=_positive_int, default=None, help="frame slots (default: as recorded)")
    p.add_argument("--wait-readers", type=int, default=0, metavar="N",
                   help="wait until N readers are attached before publishing, and until they "
                        "have read the first frame before publishing the rest (so in-order "
                        "readers such as 'shmx record' see every frame)")
    p.add_argument("--wait-timeout", type=_non_negative_float, default=30.0, metavar="S",
                   help="how long --wait-readers waits (default 30)")
    p.add_argument("--linger", type=_non_negative_float, default=2.0, metavar="S",
                   help="at the end, wait up to S seconds for readers to catch up (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_lazy("record", "cmd_play"))

    p = add("foxglove", "serve live regions to Foxglove over WebSocket",
            "Serve regions over the Foxglove WebSocket protocol (needs 'shmx[foxglove]'): "
            "open Foxglove, 'Open connection', ws://127.0.0.1:PORT. Image streams are sent "
            "as foxglove.RawImage, other streams as shmx.Stream* (see docs/mcap.md).")
    p.add_argument("names", nargs="+", metavar="NAME", help="region name(s)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--max-fps", type=_non_negative_float, default=0.0, metavar="N",
                   help="send at most N frames/s per region (default 0: the newest frame, "
                        "as often as one comes)")
    p.add_argument("--seconds", type=_positive_float, default=None, metavar="S",
                   help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--wait", type=_non_negative_float, default=0.0, metavar="S",
                   help="wait up to S seconds for the region(s) to appear (default 0)")
    p.set_defaults(func=_lazy("foxglove", "cmd_foxglove"))

    from .bridge import register as register_bridge  # imports no zenoh
    register_bridge(add, _positive_float)
    return parsers


def _lazy(module: str, func: str) -> Any:
    """The command ``func`` of ``shmx.cli.<module>``, imported only when run."""

    def run(args: argparse.Namespace) -> int:
        import importlib
        mod = importlib.import_module(f"{__name__}.{module}")
        return getattr(mod, func)(args)

    run.__name__ = func
    return run


def _version() -> str:
    try:
        return ffi.string(lib.shmx_version()).decode()
    except Exception:  # pragma: no cover - the extension always answers
        return "?"


# -------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``shmx`` command; returns the exit code."""
    parsers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    main_parser = parsers[""]
    args, extra = main_parser.parse_known_args(argv)
    if args.command is None:
        main_parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "bench":
        args.passthrough = extra
    elif extra:
        parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    prog = f"shmx {args.command}"
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        _err(prog, str(exc))
        return exc.code
    except ShmxError as exc:
        _err(prog, str(exc))
        return EXIT_FAILURE
    except (KeyboardInterrupt, Stop):
        return 130
    except BrokenPipeError:
        # `shmx ls | head`: the reader went away; that is not an error.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OK
    except OSError as exc:
        where = f" '{exc.filename}'" if exc.filename else ""
        _err(prog, f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Exception as exc:  # a bug: still one line, unless asked for more
        if os.environ.get("SHMX_DEBUG"):
            raise
        _err(prog, f"internal error: {type(exc).__name__}: {exc} (SHMX_DEBUG=1 shows the traceback)")
        return EXIT_FAILURE


def _err(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: {' '.join(message.split())}\n")
    sys.stderr.flush()

